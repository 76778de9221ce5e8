"""Index maps: where data-movement ops read their operand, as index arithmetic in IR.

A fused loop nest never materializes a broadcast, transpose, slice, reshape or reverse:
it computes, for the element it is producing, which element of each operand to read.
`INDEX_MAPS[opcode](ix, instr, index)` maps an index of `instr`'s result to the index of
its operand (`broadcast_in_dim reshape transpose slice reverse`); `concatenate` and `pad`
choose *which* operand to read and live in the evaluator (kernels_loop.py), on top of
the helpers here.

An index is one `Ix` per dim. In vector code one index stands for `lanes` consecutive
elements of the output's last dim, and each `Ix` says how its dim moves across them:

    Ix(value, step, align)   lane l reads value + l * step;  value % align == 0

`value` is a Python int when it is known at compile time (folded: no IR), else an i64.
`step` is None when the lanes do not move affinely (a reshape that may wrap a row in the
middle of a vector): such a kernel cannot be vectorized, and `NotVectorizable` tells
the evaluator to emit scalar code instead. `align` is what lets a reshape or a
concatenate along the vectorized dim stay vectorized: the vector loop starts lanes at
multiples of the width, and a vector never straddles a row of W-multiple length.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable

from llvmlite import ir

from .kernels_elementwise import I64


class NotVectorizable(Exception):
    """The lanes of a vector would not read affinely (emit scalar code instead)."""


@dataclass(frozen=True)
class Ix:
    value: int | ir.Value
    step: int | None = 0
    align: int = 1
    form: tuple | None = field(default=None, compare=False)

    def __post_init__(self):
        if self.form is None:     # an IR value the index math did not derive: an atom of its own
            object.__setattr__(self, "form", _const_form(self.value) if isinstance(self.value, int)
                               else (frozenset({(self.value, 1)}), 0))

    @property
    def static(self) -> bool:
        return isinstance(self.value, int)

    def key(self):
        """For memoization: equal affine forms are equal indices, however the IR got
        there (a stencil reaches i + 2 along many paths; one computation serves them)."""
        return (self.form, self.step)


# A canonical affine form: (frozenset of (atom, coefficient), constant). Atoms are IR
# values (loop indices, loads) or ("div" | "mod", form, divisor) for derived ones.

def _const_form(value: int) -> tuple:
    return (frozenset(), value)


def _combine(fx: tuple, fy: tuple, scale: int = 1) -> tuple:
    terms = dict(fx[0])
    for atom, coefficient in fy[0]:
        terms[atom] = terms.get(atom, 0) + scale * coefficient
    return (frozenset((a, c) for a, c in terms.items() if c), fx[1] + scale * fy[1])


def _scaled(f: tuple, c: int) -> tuple:
    return (frozenset((a, k * c) for a, k in f[0]), f[1] * c) if c else _const_form(0)


def const_ix(value: int) -> Ix:
    return Ix(value, 0, abs(value))


ZERO = const_ix(0)


class IndexMath:
    """Index arithmetic on `Ix` values: folds static ints, tracks steps and alignment,
    marks IR with nsw/nuw (indices are array offsets: they never wrap)."""

    def __init__(self, builder: ir.IRBuilder, lanes: int):
        self.b = builder
        self.lanes = lanes

    def _ir(self, v) -> ir.Value:
        return v if isinstance(v, ir.Value) else ir.Constant(I64, v)

    def add(self, x: Ix, y: Ix) -> Ix:
        step = None if x.step is None or y.step is None else x.step + y.step
        align = math.gcd(x.align, y.align)
        form = _combine(x.form, y.form)
        if x.static and y.static:
            return Ix(x.value + y.value, step, abs(x.value + y.value))
        if y.static and y.value == 0:
            return Ix(x.value, step, align, form)
        if x.static and x.value == 0:
            return Ix(y.value, step, align, form)
        return Ix(self.b.add(self._ir(x.value), self._ir(y.value), flags=["nsw"]), step, align, form)

    def add_const(self, x: Ix, c: int) -> Ix:
        return self.add(x, const_ix(c))

    def scale(self, x: Ix, c: int) -> Ix:
        step = None if x.step is None else x.step * c
        if x.static:
            return Ix(x.value * c, step, abs(x.value * c))
        if c == 0:
            return ZERO
        if c == 1:
            return x
        return Ix(self.b.mul(x.value, ir.Constant(I64, c), flags=["nsw"]), step, x.align * abs(c),
                  _scaled(x.form, c))

    def sub_from(self, c: int, x: Ix) -> Ix:
        """c - x."""
        return self.add_const(self.scale(x, -1), c)

    def linear(self, index, strides) -> Ix:
        """sum(index[d] * strides[d])."""
        total = ZERO
        for x, s in zip(index, strides):
            if s:
                total = self.add(total, self.scale(x, s))
        return total

    def divmod(self, x: Ix, d: int) -> tuple[Ix, Ix]:
        """(x // d, x % d) for x >= 0; steps 0 when x is uniform across lanes."""
        if x.static:
            q, r = divmod(x.value, d)
            return const_ix(q), const_ix(r)
        if d == 1:
            return x, ZERO
        uniform = 0 if x.step == 0 else None
        q = self.b.udiv(x.value, ir.Constant(I64, d))
        r = self.b.urem(x.value, ir.Constant(I64, d))
        return (Ix(q, uniform, 1, (frozenset({(("div", x.form, d), 1)}), 0)),
                Ix(r, uniform, math.gcd(x.align, d), (frozenset({(("mod", x.form, d), 1)}), 0)))

    def less(self, x: Ix, bound: int) -> ir.Value | bool:
        """x < bound, compared as signed (lane 0; uniform conditions only)."""
        if x.static:
            return x.value < bound
        return self.b.icmp_signed("<", x.value, ir.Constant(I64, bound))

    def at_least(self, x: Ix, bound: int) -> ir.Value | bool:
        if x.static:
            return x.value >= bound
        return self.b.icmp_signed(">=", x.value, ir.Constant(I64, bound))

    def lanes_within(self, x: Ix, extent: int) -> bool:
        """Whether the lanes of x (step 1) never cross a multiple of `extent`."""
        return self.lanes == 1 or (x.step == 1 and x.align % self.lanes == 0
                                   and extent % self.lanes == 0)


def row_major_strides(dims) -> list[int]:
    strides, acc = [], 1
    for d in reversed(dims):
        strides.append(acc)
        acc *= d
    return strides[::-1]


# ----------------------------------------------------------------------------- index maps

def _broadcast_in_dim(ix: IndexMath, instr, index) -> list:
    operand = instr.operands[0].shape
    bdims = instr.attrs["broadcast_dimensions"]
    return [ZERO if size == 1 else index[d] for size, d in zip(operand.dims, bdims)]


def _transpose(ix: IndexMath, instr, index) -> list:
    perm = instr.attrs["permutation"]
    out = [ZERO] * len(perm)
    for i, p in enumerate(perm):
        out[p] = index[i]           # result dim i is operand dim perm[i]
    return out


def _slice(ix: IndexMath, instr, index) -> list:
    a = instr.attrs
    strides = a["strides"] or (1,) * len(index)
    return [ix.add_const(ix.scale(x, st), s) for x, s, st in zip(index, a["start_indices"], strides)]


def _reverse(ix: IndexMath, instr, index) -> list:
    dims = set(instr.attrs["dimensions"])
    sizes = instr.shape.dims
    return [ix.sub_from(n - 1, x) if d in dims else x for d, (x, n) in enumerate(zip(index, sizes))]


def _reshape(ix: IndexMath, instr, index) -> list:
    return reshape_index(ix, index, instr.shape.dims, instr.operands[0].shape.dims)


def reshape_index(ix: IndexMath, index, from_dims, to_dims) -> list:
    """The index into `to_dims` of the element at `index` of `from_dims` (same elements,
    row-major). Dims are matched in groups of equal products; a group's flat index is
    split with div/mod only when its target side has several dims."""
    out = [ZERO] * len(to_dims)
    for src, dst in reshape_groups(from_dims, to_dims):
        sizes = [from_dims[d] for d in src]
        flat = ix.linear([index[d] for d in src], row_major_strides(sizes))
        _split_flat(ix, flat, [to_dims[d] for d in dst], dst, out)
    return out


def _split_flat(ix: IndexMath, flat: Ix, sizes, positions, out) -> None:
    if len(positions) == 1:
        out[positions[0]] = flat
        return
    if flat.step is None:
        raise NotVectorizable("a reshape of lanes that do not move affinely")
    moving = flat.step != 0
    if moving and not ix.lanes_within(flat, sizes[-1]):
        raise NotVectorizable("a reshape splits the vectorized dim where a vector may wrap")
    lane0 = replace(flat, step=0)                # div/mod on lane 0; lanes move in the last dim
    strides = row_major_strides(sizes)
    for k, (pos, size, stride) in enumerate(zip(positions, sizes, strides)):
        q = ix.divmod(lane0, stride)[0] if stride > 1 else lane0
        value = q if k == 0 else ix.divmod(q, size)[1]
        if moving and k == len(positions) - 1:
            value = replace(value, step=flat.step)
        out[pos] = value


def reshape_groups(from_dims, to_dims) -> list[tuple[list[int], list[int]]]:
    """Pairs (dims of from, dims of to) with equal element counts, size-1 dims left out
    (their index is 0), in order."""
    src = [d for d, n in enumerate(from_dims) if n != 1]
    dst = [d for d, n in enumerate(to_dims) if n != 1]
    groups, i, j = [], 0, 0
    while i < len(src) and j < len(dst):
        a, b = [src[i]], [dst[j]]
        pa, pb = from_dims[src[i]], to_dims[dst[j]]
        i, j = i + 1, j + 1
        while pa != pb:
            if pa < pb:
                a.append(src[i])
                pa *= from_dims[src[i]]
                i += 1
            else:
                b.append(dst[j])
                pb *= to_dims[dst[j]]
                j += 1
        groups.append((a, b))
    return groups


# opcode -> map(ix, instr, result_index) -> operand index (for single-operand views).
INDEX_MAPS: dict[str, Callable] = {
    "broadcast_in_dim": _broadcast_in_dim,
    "transpose": _transpose,
    "slice": _slice,
    "reverse": _reverse,
    "reshape": _reshape,
}


# ----------------------------------------------------------------------------- piecewise ops

def concatenate_pieces(instr) -> list[tuple[int, int]]:
    """(start, end) along the concatenated dim of each operand."""
    dim = instr.attrs["dimension"]
    pieces, start = [], 0
    for operand in instr.operands:
        n = operand.shape.dims[dim]
        pieces.append((start, start + n))
        start += n
    return pieces


def check_uniform_choice(ix: IndexMath, x: Ix, boundaries) -> None:
    """A choice made on lane 0 of `x` holds for every lane: the lanes are uniform, or
    move by 1 from a width-aligned start and every boundary is a multiple of the width."""
    if ix.lanes == 1 or x.step == 0:
        return
    if x.step == 1 and x.align % ix.lanes == 0 and all(bd % ix.lanes == 0 for bd in boundaries):
        return
    raise NotVectorizable("a concatenate/pad boundary falls inside a vector")


def pad_operand_index(ix: IndexMath, instr, index):
    """(operand index, condition): the element of the operand at `index` of the padded
    result, and the IR i1 / Python bool saying it is not padding. Negative edge padding
    (cropping) falls out of the same formula."""
    a = instr.attrs
    operand = instr.operands[0].shape.dims
    interior = a["interior_padding"] or (0,) * len(operand)
    conditions, out = [], []
    for x, n, lo, hi, k in zip(index, operand, a["edge_padding_low"], a["edge_padding_high"], interior):
        if lo == 0 and hi == 0 and k == 0:
            out.append(x)
            continue
        check_uniform_choice(ix, x, [lo, lo + n] if k == 0 else [1])
        shifted = ix.add_const(x, -lo)
        if k:
            q, r = ix.divmod(ix.add_const(shifted, (k + 1) * (abs(lo) + 1)), k + 1)
            q = ix.add_const(q, -(abs(lo) + 1))
            conditions.append(_is_zero(ix, r))
        else:
            q = shifted
        conditions += [ix.at_least(q, 0), ix.less(q, n)]
        out.append(replace(q, step=0 if x.step == 0 else q.step))
    return out, _all(ix, conditions)


def _is_zero(ix: IndexMath, x: Ix):
    if x.static:
        return x.value == 0
    return ix.b.icmp_signed("==", x.value, ir.Constant(I64, 0))


def _all(ix: IndexMath, conditions):
    result = True
    for c in conditions:
        if c is False:
            return False
        if c is True:
            continue
        result = c if result is True else ix.b.and_(result, c)
    return result
