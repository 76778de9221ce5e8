"""Convolution as an implicit GEMM: the GEMM packs its A panels straight from the input.

For an f32/f64 convolution (any dim_labels, strides, padding, dilations, feature and
batch groups), with G = feature_group_count * batch_group_count groups:

    C[g][m, n] = sum_k A[g][m, k] B[g][k, n]
      m = output position: the output's non-feature dims in memory order   (M = B/bgc * Y...)
      k = (kernel position t..., input feature i), i fastest                (K = T * I)
      n = output feature within group g                                     (N = O / G)
    A[g][m, k] = the (zero-padded, dilated) input element output position m multiplies
                 with kernel position t for feature i of group g
    B[g][k, n] = kernel[t..., i, g * N + n]                  (read in place when its dims
                 collapse, else copied to [T..., I, O] first: kernels are small)
    C[g][m, n] = output[m..., g * N + n]                     (row stride O, column stride 1;
                 an output whose feature dim is not last gets C in scratch, and the
                 epilogue pass writes it out in the output's layout)

The im2col expander (compiler/passes/convolution_expander.py) writes A to memory, T
times the input; here A never exists: the GEMM's A packer is replaced by `ImplicitPatches`,
which fills each mr-row panel of an L2-resident A block from the input (zeros where the
window hangs over the padding or between lhs_dilation rows), so the input is read from
cache and the GEMM's register tiles, blocking, tasks and epilogue are unchanged.

Packing a panel (mr output positions x the block's k range), per kernel position t:
- rows consecutive along a unit-stride input dim (a filter gradient's batch, which is
  the input's channels; an NCHW input's x under window stride 1), when the panel does
  not wrap: one masked vector load per column from the first row's address, a lane
  off where its row is past the end or its window position is padding;
- otherwise each row's address and validity (integer math on mr rows), then its run
  of I features: with unit feature stride (NHWC) lanes x lanes blocks loaded masked (an
  invalid row loads nothing: zeros), transposed in registers and stored k-major; with
  another feature stride, element by element.

`plan(conv)` says whether a convolution takes this path (`applies`); the CPU pipeline
keeps such convolutions unexpanded (compiler/pipeline.py) and kernels_conv.py emits them.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
from dataclasses import dataclass

from llvmlite import ir

from ...compiler import ops
from ...compiler.ir import Instruction
from . import loops as L

DTYPES = ("f32", "f64")


@dataclass(frozen=True)
class Spatial:
    """One spatial dim of the window: output position y and kernel position t read the
    dilated, padded input at q = y*stride + t*rhs_dilation - low, which is input element
    q / lhs_dilation when that divides and lies in [0, size)."""
    stride: int
    rhs_dilation: int
    low: int
    lhs_dilation: int
    size: int           # input extent
    kernel: int         # kernel extent


@dataclass(frozen=True)
class ConvGemm:
    """A convolution's implicit GEMM (module docstring), from its shapes and attributes."""
    dtype: str
    groups: int                 # G
    by_batch: bool              # batch_group_count > 1: groups cut the input batch
    M: int
    N: int                      # output features per group
    K: int
    I: int                      # input features per group
    rows: tuple                 # output non-feature dims in memory order: ("b", size) | (j, size)
    spatial: tuple              # Spatial per spatial dim j
    out_features: int           # O
    feature_last: bool          # C is the output itself (else a feature-last copy of it)


def plan(conv: Instruction) -> ConvGemm | None:
    """The implicit GEMM of `conv`, or None when the path does not apply: other dtypes,
    or an empty operand or result."""
    lhs, rhs = (o.shape for o in conv.operands)
    out = conv.shape
    if out.dtype.name not in DTYPES or 0 in (lhs.size, rhs.size, out.size):
        return None
    dn = ops.parse_dim_labels(conv.attrs["dim_labels"])
    n = len(dn.input_spatial)
    strides, padding, lhs_dil, rhs_dil = ops.conv_window(conv.attrs, n)
    fgc, bgc = conv.attrs["feature_group_count"], conv.attrs["batch_group_count"]
    groups = fgc * bgc
    spatial = tuple(Spatial(strides[j], rhs_dil[j], padding[j][0], lhs_dil[j],
                            lhs.dims[dn.input_spatial[j]], rhs.dims[dn.kernel_spatial[j]])
                    for j in range(n))
    where = {dn.output_batch: "b", **{d: j for j, d in enumerate(dn.output_spatial)}}
    rows = tuple((where[d], out.dims[d]) for d in range(out.rank) if d != dn.output_feature)
    I, O = rhs.dims[dn.kernel_in], rhs.dims[dn.kernel_out]
    taps = math.prod(s.kernel for s in spatial)
    return ConvGemm(out.dtype.name, groups, bgc > 1, math.prod(size for _, size in rows), O // groups,
                    taps * I, I, rows, spatial, O, dn.output_feature == out.rank - 1)


def applies(conv: Instruction) -> bool:
    return plan(conv) is not None


# ----------------------------------------------------------------------------- the A packer

@dataclass(frozen=True)
class ImplicitPatches:
    """The GEMM's A packer for a convolution (`GemmSpec.a_packer`): the input is read at
    `a` (one group's base) with `batch_stride`, `feature_stride` and `spatial_strides`
    (elements, per spatial dim j)."""
    geometry: ConvGemm
    batch_stride: int
    feature_stride: int
    spatial_strides: tuple

    def function(self, gemm) -> ir.Function:
        """`pack(dst, a, m0, mcur, k0, kcur)` in the GEMM emitter's module (once per
        geometry, tile and dtype)."""
        digest = hashlib.sha1(repr(self).encode()).hexdigest()[:12]
        name = f"tessel.conv.pack.{gemm.spec.dtype}.{gemm.blk.mr}.{digest}"
        return gemm._shared(name, [L.PTR, L.PTR] + [L.INDEX] * 4,
                            lambda fn, b: _PackEmitter(self, gemm, b).emit(*fn.args))


@dataclass
class _Row:
    """One packed row (output position) of a panel: whether it exists, the input offset
    of its batch element, its window origin per spatial dim (dilated coordinates)."""
    valid: ir.Value
    offset: ir.Value
    origin: list


class _PackEmitter:
    def __init__(self, packer: ImplicitPatches, gemm, b: ir.IRBuilder):
        self.p, self.g, self.b = packer, packer.geometry, b
        self.mr, self.lanes, self.elem = gemm.blk.mr, gemm.lanes, gemm.elem
        self.vec = L.vector(self.elem, self.lanes)

    def emit(self, dst, a, m0, mcur, k0, kcur):
        b, mr, I = self.b, self.mr, self.g.I
        for arg in (dst, a):
            arg.add_attribute("noalias")
        panels = b.sdiv(L.add(b, mcur, mr - 1), L.const(mr))
        end = L.add(b, k0, kcur)
        taps = (b.sdiv(k0, L.const(I)), b.sdiv(L.add(b, end, I - 1), L.const(I)))
        along = self._contiguous_rows()
        with L.for_range(b, panels, name="panel", unroll=False, vectorize=False) as p:
            top = L.mul(b, p, mr)
            panel = L.gep(b, dst, self.elem, L.mul(b, top, kcur))
            args = (panel, a, m0, mcur, top, k0, end, taps)
            if along is None:
                self._general_panel(*args)
            else:
                self._panel_along(*args, along)

    def _contiguous_rows(self):
        """(kind, size) of the innermost row dim when consecutive rows along it read
        consecutive input elements (a filter gradient's unit-stride batch, an NCHW
        input's x under window stride 1), else None."""
        kind, size = self.g.rows[-1]
        if size == 1:
            return None
        if kind == "b":
            return (kind, size) if self.p.batch_stride == 1 else None
        s = self.g.spatial[kind]
        unit = s.stride * self.p.spatial_strides[kind] == 1 and s.lhs_dilation == 1
        return (kind, size) if unit else None

    def _panel_along(self, panel, a, m0, mcur, top, k0, end, taps, along):
        """A panel whose rows differ only along `along` takes `_uniform_panel`."""
        b = self.b
        kind, size = along
        args = (panel, a, m0, mcur, top, k0, end, taps)
        count = _smin(b, L.sub(b, mcur, top), L.const(self.mr))
        first = L.add(b, m0, top)
        last = L.sub(b, L.add(b, first, count), L.const(1))
        same = b.icmp_unsigned("==", b.udiv(first, L.const(size)), b.udiv(last, L.const(size)))
        with b.if_else(same, likely=True) as (uniform, general):
            with uniform:
                self._uniform_panel(*args, count, kind)
            with general:
                self._general_panel(*args)

    @contextlib.contextmanager
    def _tap_loop(self, k0, end, taps):
        """Kernel positions t overlapping columns [k0, end): (its position per spatial
        dim, features [i_lo, i_hi), packed column of feature i_lo), inside the loop."""
        b, I = self.b, self.g.I
        with L.for_range(b, taps[1], start=taps[0], name="tap", unroll=False, vectorize=False) as t:
            start = L.mul(b, t, I)
            i_lo = _smax(b, L.sub(b, k0, start), L.const(0))
            i_hi = _smin(b, L.sub(b, end, start), L.const(I))
            position = []
            for s in reversed(self.g.spatial):
                position.append(b.urem(t, L.const(s.kernel)))
                t = b.udiv(t, L.const(s.kernel))
            yield position[::-1], i_lo, i_hi, L.sub(b, L.add(b, start, i_lo), k0)

    def _general_panel(self, panel, a, m0, mcur, top, k0, end, taps):
        """Each row's address and validity per kernel position, then its features."""
        b = self.b
        rows = [self._row(L.add(b, top, x), m0, mcur) for x in range(self.mr)]
        copy = self._copy_vector if self.p.feature_stride == 1 else self._copy_scalar
        with self._tap_loop(k0, end, taps) as (tap, i_lo, i_hi, col):
            pointers, valid = [], []
            for row in rows:
                offset, ok, _ = self._address(row, tap)
                pointers.append(L.gep(b, a, self.elem, b.select(ok, offset, L.const(0))))
                valid.append(ok)
            copy(panel, col, pointers, valid, i_lo, i_hi)

    def _uniform_panel(self, panel, a, m0, mcur, top, k0, end, taps, count, along):
        """`count` rows from m0+top, consecutive along `along` (unit input stride): per
        column one masked vector load from the first row's address; a lane is off past
        `count` and, along a spatial dim, where its window position is padding."""
        b, lanes, mr = self.b, self.lanes, self.mr
        row = self._row(top, m0, mcur)
        lane = ir.Constant(L.vector(L.INDEX, lanes), list(range(lanes)))
        with self._tap_loop(k0, end, taps) as (tap, i_lo, i_hi, col):
            skip = None if along == "b" else along
            offset, ok, q = self._address(row, tap, skip)
            pointer = b.gep(a, [offset], source_etype=self.elem)    # may lie outside: masked
            masks = []
            for x0 in range(0, mr, lanes):
                mask = b.and_(L.lane_mask(b, L.sub(b, count, L.const(x0)), lanes), L.splat(b, ok, lanes))
                if skip is not None:
                    at = b.add(L.splat(b, L.add(b, q, x0), lanes), lane)
                    size = L.splat(b, L.const(self.g.spatial[skip].size), lanes)
                    mask = b.and_(mask, b.icmp_unsigned("<", at, size))
                masks.append(mask)
            with L.for_range(b, i_hi, start=i_lo, name="f", unroll=False, vectorize=False) as i:
                source = b.gep(pointer, [L.mul(b, i, self.p.feature_stride)], source_etype=self.elem)
                column = L.gep(b, panel, self.elem, L.mul(b, L.add(b, col, L.sub(b, i, i_lo)), mr))
                for x0, mask in zip(range(0, mr, lanes), masks):
                    lanes_at = b.gep(source, [L.const(x0)], source_etype=self.elem)
                    v = L.masked_load(b, lanes_at, self.vec, mask)
                    L.store_vector(b, L.prefix(b, v, min(lanes, mr - x0)), L.gep(b, column, self.elem, x0))

    # ------------------------------------------------------------ addresses

    def _row(self, r, m0, mcur) -> _Row:
        """Row r of the block: output position m0 + r decomposed (r < mcur, else a
        zero row)."""
        b = self.b
        valid = b.icmp_signed("<", r, mcur)
        m = b.select(valid, L.add(b, m0, r), m0)
        offset, origin = L.const(0), [None] * len(self.g.spatial)
        for kind, size in reversed(self.g.rows):
            position = b.urem(m, L.const(size))
            m = b.udiv(m, L.const(size))
            if kind == "b":
                offset = L.add(b, offset, L.mul(b, position, self.p.batch_stride))
            else:
                s = self.g.spatial[kind]
                origin[kind] = L.sub(b, L.mul(b, position, s.stride), L.const(s.low))
        return _Row(valid, offset, origin)

    def _address(self, row: _Row, tap, skip=None):
        """(input offset of feature 0, whether it exists, q along `skip`) for a row under
        kernel position `tap`. Spatial dim `skip` (unit lhs dilation) is left out of the
        validity, for the caller to test per lane on its q."""
        b = self.b
        ok, offset, skipped = row.valid, row.offset, None
        for j, (s, stride, tj, origin) in enumerate(zip(self.g.spatial, self.p.spatial_strides, tap, row.origin)):
            q = L.add(b, origin, L.mul(b, tj, s.rhs_dilation))
            if j == skip:
                skipped = q
            else:
                if s.lhs_dilation > 1:
                    ok = b.and_(ok, b.icmp_signed(">=", q, L.const(0)))
                    ok = b.and_(ok, b.icmp_signed("==", b.srem(q, L.const(s.lhs_dilation)), L.const(0)))
                    q = b.sdiv(q, L.const(s.lhs_dilation))
                ok = b.and_(ok, b.icmp_unsigned("<", q, L.const(s.size)))     # 0 <= q < size
            offset = L.add(b, offset, L.mul(b, q, stride))
        return offset, ok, skipped

    # ------------------------------------------------------------ copies

    def _copy_scalar(self, panel, col, pointers, valid, i_lo, i_hi):
        """panel[(col + i - i_lo)*mr + x] = row x's feature i (or 0), one at a time."""
        b, mr = self.b, self.mr
        zero = L.zeros(self.elem)
        with L.for_range(b, i_hi, start=i_lo, name="f", unroll=False, vectorize=False) as i:
            column = L.gep(b, panel, self.elem, L.mul(b, L.add(b, col, L.sub(b, i, i_lo)), mr))
            at = L.mul(b, i, self.p.feature_stride)
            for x, (ptr, ok) in enumerate(zip(pointers, valid)):
                value = b.select(ok, L.load(b, L.gep(b, ptr, self.elem, at), self.elem), zero)
                L.store(b, value, L.gep(b, column, self.elem, x))

    def _copy_vector(self, panel, col, pointers, valid, i_lo, i_hi):
        """Unit feature stride: lanes features of every row at once, transposed in
        registers; whole blocks, then one block of the remaining features."""
        b, lanes = self.b, self.lanes
        count = L.sub(b, i_hi, i_lo)
        full = L.floor_multiple(b, count, lanes)
        masks = [L.splat(b, ok, lanes) for ok in valid]
        with L.for_range(b, full, step=lanes, name="fv", unroll=False, vectorize=False) as c:
            self._block(panel, L.add(b, col, c), pointers, masks, L.add(b, i_lo, c), lanes)
        rest = L.sub(b, count, full)
        with b.if_then(b.icmp_signed(">", rest, L.const(0))):
            tail = L.lane_mask(b, rest, lanes)
            self._block(panel, L.add(b, col, full), pointers, [b.and_(m, tail) for m in masks],
                        L.add(b, i_lo, full), rest)

    def _block(self, panel, col, pointers, masks, i, columns):
        """Features [i, i + columns) of every row into packed columns [col, col + columns);
        `columns` is lanes or an i64 below it (then each column is stored under a test)."""
        b, lanes, mr = self.b, self.lanes, self.mr
        for x0 in range(0, mr, lanes):
            width = min(lanes, mr - x0)
            loads = [L.masked_load(b, L.gep(b, pointers[x], self.elem, i), self.vec, masks[x])
                     if x < x0 + width else L.zeros(self.vec) for x in range(x0, x0 + lanes)]
            for k, column in enumerate(L.transpose(b, loads)):
                at = L.add(b, L.mul(b, L.add(b, col, k), mr), x0)
                store = lambda: L.store_vector(b, L.prefix(b, column, width),  # noqa: E731
                                               L.gep(b, panel, self.elem, at))
                if isinstance(columns, int):
                    store()
                else:
                    with b.if_then(b.icmp_signed("<", L.const(k), columns)):
                        store()


def _smax(b, x, y):
    return b.select(b.icmp_signed(">", x, y), x, y)


def _smin(b, x, y):
    return b.select(b.icmp_signed("<", x, y), x, y)
