"""dot_general and output fusions: one (batched) GEMM from backends/cpu/gemm.py.

    out = epilogue(dot_general(view(lhs), view(rhs)))

Canonical form: dot_general's result dims are (batch dims, lhs free dims, rhs free
dims); seen as C[b, m, n] = sum_k A[b, m, k] B[b, k, n] with every group of dims
(batch, M = lhs free, K = contracting, N = rhs free) collapsed to one. An operand is
passed to the GEMM as its *strided view*: a parameter read through the fusion's
transposes, slices, reverses, broadcasts and reshapes is a base pointer plus one
stride per dim (`strided_view`), and when each group's dims collapse to one stride
the GEMM reads the operand where it lies, whatever the contracting layout. Otherwise
(a convert, a reshape that does not collapse, bf16/f16 operands) a loop kernel first
materializes the operand in canonical [batch, M, K] / [batch, K, N] order in the
kernel's private scratch.

The epilogue (the fusion's elementwise chain after the product) runs inside the GEMM
through its epilogue hook, on each finished tile while it is in cache: the evaluator
computes the root at the tile's output indices with the dot bound to the tile. When
that is not possible (a result dtype other than the GEMM's, several rhs free dims
splitting a vector, f16/bf16 products to round) the GEMM writes an f32/f64 product to
scratch and a loop kernel applies the epilogue from there.

GEMMs exist for f32 and f64 (f16/bf16 multiply in f32, as the interpreter's float32
matmul does, and round the product). Integer dots run a plain loop nest that
accumulates with wrapping arithmetic (slow; they are rare).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from llvmlite import ir

from ...compiler import dtypes
from ...compiler.ir import Computation, Instruction
from . import gemm
from . import loops as L
from .kernels_data import Ix, IndexMath, NotVectorizable, ZERO, reshape_groups, reshape_index, row_major_strides
from .kernels_elementwise import I8, PTR, convert
from .kernels_loop import (Evaluator, Leaf, computed, element_cost, emit_elemental_kernel, vector_width)


# ----------------------------------------------------------------------------- dims

@dataclass(frozen=True)
class DotDims:
    """dot_general's dims by role: batch, contracting and free dims of each operand."""
    lb: tuple
    lc: tuple
    lf: tuple
    rb: tuple
    rc: tuple
    rf: tuple
    lhs: tuple          # operand dims
    rhs: tuple

    @classmethod
    def of(cls, dot: Instruction) -> "DotDims":
        a = dot.attrs
        lhs, rhs = dot.operands[0].shape.dims, dot.operands[1].shape.dims
        lb, lc = tuple(a["lhs_batching_dims"]), tuple(a["lhs_contracting_dims"])
        rb, rc = tuple(a["rhs_batching_dims"]), tuple(a["rhs_contracting_dims"])
        lf = tuple(d for d in range(len(lhs)) if d not in lb + lc)
        rf = tuple(d for d in range(len(rhs)) if d not in rb + rc)
        return cls(lb, lc, lf, rb, rc, rf, lhs, rhs)

    def sizes(self, dims, of) -> list[int]:
        return [of[d] for d in dims]

    @property
    def batch(self) -> int:
        return math.prod(self.sizes(self.lb, self.lhs))

    @property
    def M(self) -> int:
        return math.prod(self.sizes(self.lf, self.lhs))

    @property
    def K(self) -> int:
        return math.prod(self.sizes(self.lc, self.lhs))

    @property
    def N(self) -> int:
        return math.prod(self.sizes(self.rf, self.rhs))

    def canonical_groups(self, side: str) -> list[tuple]:
        """The operand's dims in canonical order: lhs (batch, M, K), rhs (batch, K, N)."""
        if side == "lhs":
            return [self.lb, self.lf, self.lc]
        return [self.rb, self.rc, self.rf]


# ----------------------------------------------------------------------------- strided views

@dataclass(frozen=True)
class View:
    """An array that is `param`'s memory at element `offset` with these strides."""
    param: Instruction
    offset: int
    strides: tuple


def strided_view(instr: Instruction) -> View | None:
    """`instr` as a strided view of a parameter's memory, or None."""
    rule = VIEW_RULES.get(instr.opcode)
    if rule is None:
        return None
    if instr.opcode == "parameter":
        return rule(instr, None)
    inner = strided_view(instr.operands[0])
    return rule(instr, inner) if inner is not None else None


def _view_parameter(instr, _):
    return View(instr, 0, tuple(row_major_strides(instr.shape.dims)))


def _view_transpose(instr, v: View):
    return View(v.param, v.offset, tuple(v.strides[p] for p in instr.attrs["permutation"]))


def _view_slice(instr, v: View):
    a = instr.attrs
    steps = a["strides"] or (1,) * len(v.strides)
    offset = v.offset + sum(s * st for s, st in zip(a["start_indices"], v.strides))
    return View(v.param, offset, tuple(st * k for st, k in zip(v.strides, steps)))


def _view_reverse(instr, v: View):
    dims = set(instr.attrs["dimensions"])
    sizes = instr.shape.dims
    offset = v.offset + sum((sizes[d] - 1) * v.strides[d] for d in dims if sizes[d])
    return View(v.param, offset, tuple(-s if d in dims else s for d, s in enumerate(v.strides)))


def _view_broadcast(instr, v: View):
    strides = [0] * instr.shape.rank
    operand = instr.operands[0].shape.dims
    for i, d in enumerate(instr.attrs["broadcast_dimensions"]):
        strides[d] = v.strides[i] if operand[i] != 1 else 0
    return View(v.param, v.offset, tuple(strides))


def _view_reshape(instr, v: View):
    to_dims, from_dims = instr.shape.dims, instr.operands[0].shape.dims
    strides = [0] * len(to_dims)
    for src, dst in reshape_groups(from_dims, to_dims):
        stride = collapsed_stride(src, from_dims, v.strides)
        if stride is None:
            return None
        for d, s in zip(dst, row_major_strides([to_dims[d] for d in dst])):
            strides[d] = s * stride
    return View(v.param, v.offset, tuple(strides))


VIEW_RULES = {
    "parameter": _view_parameter, "transpose": _view_transpose, "slice": _view_slice,
    "reverse": _view_reverse, "broadcast_in_dim": _view_broadcast, "reshape": _view_reshape,
}


def collapsed_stride(dims, sizes, strides) -> int | None:
    """The stride of `dims` (in this order) as one flat dim, or None when they do not
    lie in memory as one row-major block. Size-1 dims do not matter."""
    moving = [d for d in dims if sizes[d] != 1]
    if not moving:
        return 0
    for outer, inner in zip(moving, moving[1:]):
        if strides[outer] != strides[inner] * sizes[inner]:
            return None
    return strides[moving[-1]]


def gemm_strides(view: View, groups, sizes) -> tuple | None:
    """(batch, row, col) element strides of a view in canonical group order, or None."""
    out = []
    for group in groups:
        stride = collapsed_stride(group, sizes, view.strides)
        if stride is None:
            return None
        out.append(stride)
    return tuple(out)


# ----------------------------------------------------------------------------- the kernel

GEMM_DTYPES = {"f32": dtypes.f32, "f64": dtypes.f64, "f16": dtypes.f32, "bf16": dtypes.f32}


def emit_dot_kernel(kc, comp: Computation, outputs: list, operands: list) -> None:
    dots = [i for i in comp.instructions if i.opcode == "dot_general"]
    if len(dots) != 1 or comp.root.shape.is_tuple:
        raise NotImplementedError(f"CPU backend: output fusion {kc.name_hint()} must hold one "
                                  f"dot_general and one result (from {kc.instr.loc_text})")
    (dot,) = dots
    if math.prod(comp.root.shape.dims) == 0:
        return
    if dot.shape.dtype.name not in GEMM_DTYPES:
        return emit_integer_dot(kc, comp, dot, outputs, operands)
    DotKernel(kc, comp, dot, outputs, operands).emit()


class DotKernel:
    def __init__(self, kc, comp, dot, outputs, operands):
        self.kc, self.comp, self.dot = kc, comp, dot
        self.outputs, self.operands = outputs, operands
        self.params = sorted(comp.parameters, key=lambda p: p.attrs["index"])
        self.pointer_of = dict(zip(self.params, operands))
        self.dims = DotDims.of(dot)
        self.gemm_dtype = GEMM_DTYPES[dot.shape.dtype.name]
        self.itemsize = self.gemm_dtype.itemsize

    def emit(self) -> None:
        d = self.dims
        (a, a_strides), (b, b_strides) = self._operand("lhs"), self._operand("rhs")
        root = self.comp.root
        fused = root is self.dot and self.dot.shape.dtype == self.gemm_dtype
        epilogue = None
        if root is not self.dot and root.shape.dtype == self.gemm_dtype and self._epilogue_vectorizes():
            epilogue, fused = self._epilogue, True
        c = self.outputs[0] if fused else self.kc.temp(d.batch * d.M * d.N * self.itemsize)
        spec = gemm.GemmSpec(self.gemm_dtype.name, d.M, d.N, d.K, d.batch, a_strides=a_strides,
                             b_strides=b_strides, c_strides=None, epilogue=epilogue,
                             epilogue_operands=len(self.params) if epilogue else 0)
        kc = self.kc
        fn = kc.reusable(lambda: gemm.emit_gemm(kc.module, spec, kc.codegen.unique(f"tessel.gemm.{kc.name_hint()}"),
                                                target=kc.target, threads=kc.threads),
                         key=self._gemm_key(spec))
        scratch = self.kc.temp(max(gemm.scratch_bytes(spec, target=self.kc.target, threads=self.kc.threads), 1))
        extra = list(self.operands) if epilogue else []
        self.kc.entry.call(fn, [a, b, c, scratch] + extra)
        if not fused:
            self._epilogue_pass(c)

    def _gemm_key(self, spec: gemm.GemmSpec) -> tuple:
        """What the GEMM function's code depends on: the spec, and the epilogue's part
        of the computation (operand views only move the pointers the entry passes)."""
        from .codegen import computation_key
        shape = (spec.dtype, spec.M, spec.N, spec.K, spec.batch, spec.a_strides, spec.b_strides,
                 spec.c_strides, spec.epilogue_operands)
        if spec.epilogue is None:
            return ("gemm", shape)
        views = _dependencies(self.dot.operands) - set(self.params)
        return ("gemm", shape, computation_key(self.comp, leave_out=views))

    # ------------------------------------------------------------ operands

    def _operand(self, side: str):
        """(entry pointer, GEMM strides) of one operand: its view, or a canonical copy."""
        d = self.dims
        instr = self.dot.operands[0 if side == "lhs" else 1]
        sizes = d.lhs if side == "lhs" else d.rhs
        groups = d.canonical_groups(side)
        view = strided_view(instr) if instr.shape.dtype == self.gemm_dtype else None
        strides = gemm_strides(view, groups, sizes) if view is not None else None
        if strides is not None:
            base = self.pointer_of[view.param]
            return L.gep(self.kc.entry, base, I8, view.offset * self.itemsize), strides
        return self._materialize(instr, groups, sizes), None

    def _materialize(self, instr: Instruction, groups, sizes) -> ir.Value:
        """Copy (and convert to the GEMM's dtype) an operand into canonical order."""
        canon = [math.prod(sizes[x] for x in g) for g in groups]
        order = [x for g in groups for x in g]
        target = self.kc.temp(math.prod(canon) * self.itemsize)
        params, gemm_dtype = self.params, self.gemm_dtype

        def make_point(ptrs):
            out = Leaf(ptrs[0], gemm_dtype, row_major_strides(canon))
            leaves = {p: Leaf(ptr, p.shape.dtype, row_major_strides(p.shape.dims))
                      for p, ptr in zip(params, ptrs[1:])}

            def point(ev: Evaluator, index):
                grouped = reshape_index(ev.ix, index, canon, [sizes[x] for x in order])
                operand_index = [ZERO] * len(sizes)
                for position, x in zip(order, grouped):
                    operand_index[position] = x
                value = ev.value(instr, operand_index)
                ev.write(out, index, _convert_value(ev, instr.shape.dtype, gemm_dtype, value))
            return leaves, point

        instrs = computed(self.comp) + params
        emit_elemental_kernel(self.kc, f"operand_copy.{self.kc.name_hint()}", canon, [target] + list(self.operands),
                              make_point, instrs, 2)
        return target

    # ------------------------------------------------------------ epilogue

    def _output_index(self, ix: IndexMath, row: Ix, col: Ix) -> list[Ix]:
        """The dot's result index of C[row, col], row flattened over batch and M."""
        d = self.dims
        left = d.sizes(d.lb, d.lhs) + d.sizes(d.lf, d.lhs)
        right = d.sizes(d.rf, d.rhs)
        return (reshape_index(ix, [row], [d.batch * d.M], left) +
                reshape_index(ix, [col], [d.N], right))

    def _leaves(self, ptrs) -> dict:
        return {p: Leaf(ptr, p.shape.dtype, row_major_strides(p.shape.dims))
                for p, ptr in zip(self.params, ptrs)}

    def _epilogue_value(self, ev: Evaluator, tile_value, row, col):
        index = self._output_index(ev.ix, Ix(row, 0, 1), Ix(col, 1 if ev.width > 1 else 0, 1))
        ev.bound[self.dot] = tile_value
        return ev.value(self.comp.root, index)

    def _epilogue(self, b, tile, row, col, operands) -> list:
        """The gemm hook: the fusion's root at each piece of a finished tile."""
        leaves = self._leaves(operands)
        out = []
        for i, values in enumerate(tile):
            r, start, row_out = L.add(b, row, i), col, []
            for v in values:
                width = v.type.count if isinstance(v.type, ir.VectorType) else 1
                ev = Evaluator(b, width, self.kc.mathlib, leaves=leaves,
                               constants=self.kc.constant_provider())
                row_out.append(_at_width_one(b, v, lambda s: self._epilogue_value(ev, s, r, start)))
                start = L.add(b, start, width)
            out.append(row_out)
        return out

    def _epilogue_vectorizes(self) -> bool:
        """Whether the epilogue can run on tiles: a dry run at full vector width."""
        width = vector_width(self.kc.target, [self.dot])
        scratch = ir.Module()
        fn = ir.Function(scratch, ir.FunctionType(ir.VoidType(), [L.INDEX, L.INDEX]), name="dry")
        b = ir.IRBuilder(fn.append_basic_block())
        leaves = self._leaves([ir.Constant(PTR, None)] * len(self.params))
        try:
            for lanes in (width, 1):
                ev = Evaluator(b, lanes, self.kc.mathlib, leaves=leaves, dry=True,
                               constants=self.kc.constant_provider())
                self._epilogue_value(ev, None, fn.args[0], fn.args[1])
        except NotVectorizable:
            return False
        return True

    def _product_strides(self) -> list[int]:
        """Element strides of the product as the GEMM left it in scratch."""
        return row_major_strides(self.dot.shape.dims)

    def _epilogue_pass(self, product: ir.Value) -> None:
        """The root over the output dims, the dot read from the product in scratch."""
        dot, root, params = self.dot, self.comp.root, self.params
        gemm_dtype = self.gemm_dtype
        dims = list(root.shape.dims)

        def make_point(ptrs):
            out = Leaf(ptrs[0], root.shape.dtype, row_major_strides(dims))
            leaves = {p: Leaf(ptr, p.shape.dtype, row_major_strides(p.shape.dims))
                      for p, ptr in zip(params, ptrs[2:])}
            leaves[dot] = Leaf(ptrs[1], gemm_dtype, self._product_strides(),
                               as_dtype=dot.shape.dtype)

            def point(ev: Evaluator, index):
                ev.write(out, index, ev.value(root, index))
            return leaves, point

        work = computed(self.comp)
        emit_elemental_kernel(self.kc, f"epilogue.{self.kc.name_hint()}", dims,
                              [self.outputs[0], product] + list(self.operands), make_point,
                              work + params, element_cost(work))


def _dependencies(starts) -> set:
    """`starts` and everything they are computed from."""
    seen, stack = set(), list(starts)
    while stack:
        instr = stack.pop()
        if instr not in seen:
            seen.add(instr)
            stack.extend(instr.operands)
    return seen


def _convert_value(ev: Evaluator, src, dst, value):
    if ev.dry or src == dst:
        return value
    return convert(ev.e, src, dst, value)


# ----------------------------------------------------------------------------- integer dots

def emit_integer_dot(kc, comp: Computation, dot: Instruction, outputs: list, operands: list) -> None:
    """Integer dot_general (and its epilogue): per output element a loop over the
    contracting dims, wrapping multiply-add in the operand type. Scalar code."""
    d = DotDims.of(dot)
    params = sorted(comp.parameters, key=lambda p: p.attrs["index"])
    root = comp.root
    dims = list(root.shape.dims)
    contracting = d.sizes(d.lc, d.lhs)
    lhs, rhs = dot.operands
    n_batch, n_lf = len(d.lb), len(d.lf)

    def make_point(ptrs):
        out = Leaf(ptrs[0], root.shape.dtype, row_major_strides(dims))
        leaves = {p: Leaf(ptr, p.shape.dtype, row_major_strides(p.shape.dims)) for p, ptr in zip(params, ptrs[1:])}

        def point(ev: Evaluator, index):
            b = ev.b
            batch, lfree, rfree = index[:n_batch], index[n_batch:n_batch + n_lf], index[n_batch + n_lf:]
            acc = L.alloca_once(b, ev.e.reg(dot.shape.dtype), name="dot")
            L.store(b, ev.e.dconst(dot.shape.dtype, 0), acc)
            with L.loop_nest(b, contracting, name="k") as ks:
                inner = Evaluator(b, 1, kc.mathlib, leaves=leaves, constants=kc.constant_provider())
                kix = [Ix(k, 0, 1) for k in ks]
                li, ri = [ZERO] * len(d.lhs), [ZERO] * len(d.rhs)
                for dims_, values, target in ((d.lb, batch, li), (d.lf, lfree, li), (d.lc, kix, li),
                                              (d.rb, batch, ri), (d.rf, rfree, ri), (d.rc, kix, ri)):
                    for x, v in zip(dims_, values):
                        target[x] = v
                product = b.mul(inner.value(lhs, li), inner.value(rhs, ri))
                L.store(b, b.add(L.load(b, acc, product.type), product), acc)
            ev.bound[dot] = L.load(b, acc, ev.e.reg(dot.shape.dtype))
            ev.write(out, index, ev.value(root, index))
        return leaves, point

    work = computed(comp)
    # width 1: the vectorizability dry run is skipped for integer dots (scalar loops)
    emit_elemental_kernel(kc, f"idot.{kc.name_hint()}", dims, outputs[:1] + list(operands), make_point,
                          [], 2 * math.prod(contracting) + element_cost(work), scalar=True)


def _at_width_one(b: ir.IRBuilder, value: ir.Value, compute) -> ir.Value:
    """compute(value), where a one-lane vector tile piece (the tiny GEMM's last column
    chunk when N leaves one over, e.g. a 0-d dot) is evaluated as the scalar the
    Evaluator uses at width 1 and put back into its <1 x T> for the GEMM's stores."""
    if not (isinstance(value.type, ir.VectorType) and value.type.count == 1):
        return compute(value)
    lane = L.const(0, L.I32)
    scalar = compute(b.extract_element(value, lane))
    return b.insert_element(ir.Constant(L.vector(scalar.type, 1), ir.Undefined), scalar, lane)
