"""The elemental evaluator and loop kernels (loop fusions and single elementwise/data ops).

`Evaluator.value(instr, index)` emits the IR computing `instr` at one index of its
result -- or, in vector code, at `width` consecutive indices along the kernel's last
dim -- by looking up `ELEMENTAL[instr.opcode]`, the rule table of this backend:

    elementwise ops     operands at the same index, then kernels_elementwise
    broadcast_in_dim, reshape, transpose, slice, reverse
                        the operand at the index `kernels_data.INDEX_MAPS` gives
    concatenate, pad    a branch choosing the operand (or the padding value)
    iota                the index itself, converted
    constant            an immediate (splat constants) or a read of a private global
    tuple / get_tuple_element   plumbing of tuple values (variadic reduce results)

Values that are no instruction of the computation being evaluated are *leaves*
(`Leaf`: a pointer and strides, read with the load the lanes allow: a vector load,
a scalar load splat over the lanes, a reversed vector load, or a masked gather) or
*bound* (a reduce's result, a GEMM tile: a value the kernel computed itself). Results
are memoized per (instruction, index) -- the index by its affine form, so one element
reached along several paths is computed once -- in scopes that follow the control
flow: a value computed inside one branch of a pad is never reused after it.

Loop kernels (`emit_loop_kernel`): one loop nest over the output, the outer dims as
"units" handed to the thread pool, the last dim as a vector loop (width from the host
CPU) plus one masked iteration for the remainder. When the lanes of some read do not
move affinely (`NotVectorizable`, found by a dry run of the evaluator into a scratch
module) the same nest is emitted with scalar code. A fusion whose ops are all
elementwise over one shape runs as one flat loop over all its elements.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import numpy as np
from llvmlite import ir

from ...compiler import dtypes, ops
from ...compiler.dtypes import DType
from ...compiler.ir import Computation, Instruction
from . import loops as L
from .kernels_data import (INDEX_MAPS, Ix, IndexMath, NotVectorizable, check_uniform_choice,
                           concatenate_pieces, pad_operand_index, row_major_strides)
from .kernels_elementwise import (I32, I64, PTR, Emit, convert, emit_elementwise, from_storage, intrinsic,
                                  register_bytes, register_type, round_to, storage_type, suffix, to_storage)

_BYTES = {"i8": 1, "i16": 2, "i32": 4, "i64": 8, "half": 2, "float": 4, "double": 8}   # by str(type)
from .mathlib import MathLib


# ----------------------------------------------------------------------------- leaves

@dataclass
class Leaf:
    """A buffer read by index: `ptr` (valid in the function being emitted), the element
    type, and the stride in elements of each dim of the index used to read it; values
    read are converted to `as_dtype` when given (an f32 GEMM product of a bf16 dot)."""
    ptr: ir.Value
    dtype: DType
    strides: list[int]
    as_dtype: DType | None = None


# ----------------------------------------------------------------------------- the evaluator

class Evaluator:
    """Emits the value of instructions at indices, memoized (see the module docstring).

    width   lanes of every value (1: scalar code)
    leaves  instruction -> Leaf it is read from
    bound   instruction -> value (or tuple of values) computed elsewhere in the kernel
    tail    active lanes (i64 or int) of a masked last iteration, else None
    dry     analysis only: follow the index maps (raising NotVectorizable), emit no math
    constants(instr) -> Leaf reading a constant from a private global
    """

    def __init__(self, builder: ir.IRBuilder, width: int, mathlib: MathLib, *,
                 leaves: dict | None = None, bound: dict | None = None,
                 tail=None, dry: bool = False, constants: Callable | None = None):
        self.b = builder
        self.width = width
        self.e = Emit(builder, width, mathlib)
        self.ix = IndexMath(builder, width)
        self.leaves = dict(leaves or {})
        self.bound = dict(bound or {})
        self.tail = tail
        self.dry = dry
        self.constants = constants
        self._scopes: list[dict] = [{}]
        # made here, not on first use: a first use inside a branch would not dominate the rest
        self.mask = lane_mask(builder, tail, width) if tail is not None and not dry else None

    # ------------------------------------------------------------ values

    def value(self, instr: Instruction, index) -> ir.Value:
        index = tuple(index)
        key = (instr, tuple(x.key() for x in index))
        for scope in reversed(self._scopes):
            if key in scope:
                return scope[key]
        result = self._compute(instr, index)
        self._scopes[-1][key] = result
        return result

    def _compute(self, instr: Instruction, index):
        if instr in self.bound:
            return self._splat_bound(self.bound[instr])
        if instr in self.leaves:
            return self.read(self.leaves[instr], index)
        try:
            rule = ELEMENTAL[instr.opcode]
        except KeyError:
            raise NotImplementedError(f"CPU backend: no elemental rule for {instr.opcode} "
                                      f"({instr.name}, from {instr.loc_text})") from None
        return rule(self, instr, index)

    def _splat_bound(self, value):
        if isinstance(value, tuple):
            return tuple(self._splat_bound(v) for v in value)
        return self.e.splat(value) if not self.dry else value

    def placeholder(self, dtype: DType) -> ir.Value:
        return ir.Constant(self.e.reg(dtype), ir.Undefined)

    @contextmanager
    def scope(self):
        """Values computed inside stay inside (a branch, a loop body)."""
        self._scopes.append({})
        try:
            yield
        finally:
            self._scopes.pop()

    def branch(self, condition, then: Callable, otherwise: Callable) -> ir.Value:
        """`condition ? then() : otherwise()` (condition: i1 or a Python bool)."""
        if condition is True or condition is False:
            return then() if condition else otherwise()
        if self.dry:
            value = then()
            otherwise()
            return value
        b = self.b
        with b.if_else(condition) as (then_block, else_block):
            with then_block, self.scope():
                a = then()
                a_end = b.block
            with else_block, self.scope():
                c = otherwise()
                c_end = b.block
        phi = b.phi(a.type)
        phi.add_incoming(a, a_end)
        phi.add_incoming(c, c_end)
        return phi

    # ------------------------------------------------------------ memory

    def _lane_pointers(self, leaf: Leaf, ptr: ir.Value, step: int) -> ir.Value:
        """<width x ptr>: lane l at ptr + l * step elements."""
        elem = storage_type(leaf.dtype)
        steps = ir.Constant(ir.VectorType(I64, self.width), [lane * step for lane in range(self.width)])
        pointers = self.b.gep(ptr, [steps], source_etype=elem)
        pointers.type = ir.VectorType(PTR, self.width)    # llvmlite types a vector GEP as one ptr
        return pointers

    def _all_lanes(self) -> ir.Value:
        return self.mask if self.mask is not None else lane_mask(self.b, self.width, self.width)

    @staticmethod
    def _reversed(b, vector, width):
        return b.shuffle_vector(vector, vector, ir.Constant(ir.VectorType(I32, width), list(range(width))[::-1]))

    def read(self, leaf: Leaf, index) -> ir.Value:
        value = self._load(leaf, index)
        if leaf.as_dtype is not None and not self.dry:
            value = convert(self.e, leaf.dtype, leaf.as_dtype, value)
        return value

    def _load(self, leaf: Leaf, index) -> ir.Value:
        offset = self.ix.linear(index, leaf.strides)
        if offset.step is None:
            raise NotVectorizable("a read whose lanes do not move affinely")
        if self.dry:
            return self.placeholder(leaf.dtype)
        b, e = self.b, self.e
        elem = storage_type(leaf.dtype)
        ptr = L.gep(b, leaf.ptr, elem, offset.value)
        if self.width == 1 or offset.step == 0:
            value = from_storage(Emit(b, 1, e.mathlib), leaf.dtype, L.load(b, ptr, elem))
            return e.splat(value)
        if offset.step == 1:
            ty = ir.VectorType(elem, self.width)
            raw = (L.load_vector(b, ptr, ty) if self.tail is None
                   else L.masked_load(b, ptr, ty, self.mask))
            return from_storage(e, leaf.dtype, raw)
        ty = ir.VectorType(elem, self.width)
        if offset.step == -1:        # a reversed row: one load, lanes reversed
            first = L.gep(b, ptr, elem, 1 - self.width)
            mask = None if self.tail is None else self._reversed(b, self.mask, self.width)
            raw = L.load_vector(b, first, ty) if mask is None else L.masked_load(b, first, ty, mask)
            return from_storage(e, leaf.dtype, self._reversed(b, raw, self.width))
        align = ir.Constant(I32, _BYTES[str(elem)])
        raw = intrinsic(b, f"llvm.masked.gather.{suffix(ty)}.v{self.width}p0", ty,
                        [self._lane_pointers(leaf, ptr, offset.step), align, self._all_lanes(),
                         ir.Constant(ty, ir.Undefined)])
        return from_storage(e, leaf.dtype, raw)

    def write(self, leaf: Leaf, index, value: ir.Value) -> None:
        """Store a register value at `index` of the buffer `leaf` describes."""
        offset = self.ix.linear(index, leaf.strides)
        if offset.step is None:
            raise NotVectorizable("a store whose lanes do not move affinely")
        if self.dry:
            return
        b, e = self.b, self.e
        elem = storage_type(leaf.dtype)
        raw = to_storage(e, leaf.dtype, value)
        ptr = L.gep(b, leaf.ptr, elem, offset.value)
        if self.width == 1:
            L.store(b, raw, ptr)
        elif offset.step == 0:       # every lane holds the same value
            L.store(b, b.extract_element(raw, L.const(0, I32)), ptr)
        elif offset.step == 1:
            if self.tail is None:
                L.store_vector(b, raw, ptr)
            else:
                L.masked_store(b, raw, ptr, self.mask)
        else:
            align = ir.Constant(I32, _BYTES[str(elem)])
            intrinsic(b, f"llvm.masked.scatter.{suffix(raw.type)}.v{self.width}p0", ir.VoidType(),
                      [raw, self._lane_pointers(leaf, ptr, offset.step), align, self._all_lanes()])

    def lane_iota(self, x: Ix) -> ir.Value:
        """The i64 index value of every lane of dim `x`."""
        b = self.b
        base = x.value if isinstance(x.value, ir.Value) else L.const(x.value)
        if self.width == 1:
            return base
        steps = ir.Constant(ir.VectorType(I64, self.width), [lane * (x.step or 0) for lane in range(self.width)])
        return b.add(self.e.splat(base), steps)


def lane_mask(b: ir.IRBuilder, count, width: int) -> ir.Value:
    """<width x i1>, lane l set iff l < count: a constant when count is known."""
    if isinstance(count, ir.Constant):
        count = count.constant
    if isinstance(count, int):
        return ir.Constant(ir.VectorType(ir.IntType(1), width), [lane < count for lane in range(width)])
    lanes = ir.Constant(ir.VectorType(I32, width), list(range(width)))
    limit = Emit(b, width, None).splat(b.trunc(count, I32))
    return b.icmp_signed("<", lanes, limit)


# ----------------------------------------------------------------------------- elemental rules

def operand_index(instr: Instruction, k: int, index):
    """The index of operand k of an elementwise op: the same one, or () for the scalar
    bounds of clamp."""
    operand = instr.operands[k].shape
    return () if operand.rank == 0 and instr.shape.rank > 0 else index


def _elementwise(ev: Evaluator, instr: Instruction, index):
    if instr.opcode == "power":
        exponent = small_integer_constant(instr.operands[1])
        if exponent is not None and instr.shape.dtype.is_float:
            return _integer_power(ev, instr, index, exponent)
    values = [ev.value(o, operand_index(instr, k, index)) for k, o in enumerate(instr.operands)]
    if ev.dry:
        return ev.placeholder(instr.shape.dtype)
    return emit_elementwise(ev.e, instr, values)


def small_integer_constant(instr: Instruction, limit: int = 4) -> int | None:
    """n when `instr` is (a broadcast/reshape of) a constant whose every element is the
    integer n, |n| <= limit."""
    while instr.opcode in ("broadcast_in_dim", "reshape"):
        instr = instr.operands[0]
    if instr.opcode != "constant":
        return None
    array = instr.attrs["value"].array
    if array.size == 0 or array.dtype.kind != "f":
        return None
    first = array.flat[0]
    if not np.all(array == first) or first != np.round(first) or abs(first) > limit:
        return None
    return int(first)


def _integer_power(ev: Evaluator, instr: Instruction, index, n: int):
    """x ** n for a small integer constant n by multiplications (x**0 = 1, NaN too)."""
    x = ev.value(instr.operands[0], index)
    dtype = instr.shape.dtype
    if ev.dry:
        return ev.placeholder(dtype)
    b, e = ev.b, ev.e
    one = e.dconst(dtype, 1.0)
    result, power, m = one, x, abs(n)
    while m:
        if m & 1:
            result = power if result is one else b.fmul(result, power)
        m >>= 1
        if m:
            power = b.fmul(power, power)
    if n < 0:
        result = b.fdiv(one, result)
    return round_to(e, dtype, result)


def _index_map(ev: Evaluator, instr: Instruction, index):
    mapped = INDEX_MAPS[instr.opcode](ev.ix, instr, index)
    return ev.value(instr.operands[0], mapped)


def _concatenate(ev: Evaluator, instr: Instruction, index):
    dim = instr.attrs["dimension"]
    pieces = concatenate_pieces(instr)
    x = index[dim]
    check_uniform_choice(ev.ix, x, [start for start, _ in pieces])

    def piece(k):
        start, end = pieces[k]
        shifted = list(index)
        shifted[dim] = ev.ix.add_const(x, -start)
        read = lambda: ev.value(instr.operands[k], shifted)  # noqa: E731
        if k == len(pieces) - 1:
            return read()
        return ev.branch(ev.ix.less(x, end), read, lambda: piece(k + 1))

    nonempty = [k for k, (s, t) in enumerate(pieces) if t > s]
    return piece(nonempty[0]) if len(nonempty) == 1 and nonempty[0] == len(pieces) - 1 else piece(0)


def _pad(ev: Evaluator, instr: Instruction, index):
    inner, inside = pad_operand_index(ev.ix, instr, index)
    return ev.branch(inside, lambda: ev.value(instr.operands[0], inner),
                     lambda: ev.value(instr.operands[1], ()))


def _iota(ev: Evaluator, instr: Instruction, index):
    dtype = instr.shape.dtype
    if ev.dry:
        return ev.placeholder(dtype)
    value = ev.lane_iota(index[instr.attrs["iota_dimension"]])
    return convert(ev.e, dtypes.s64, dtype, value)


def _constant(ev: Evaluator, instr: Instruction, index):
    dtype = instr.shape.dtype
    value = splat_value(instr.attrs["value"].array)
    if value is not None:
        return ev.placeholder(dtype) if ev.dry else immediate(ev.e, dtype, value)
    if ev.constants is None:
        raise NotImplementedError(f"CPU backend: constant {instr.name} has no storage here")
    return ev.read(ev.constants(instr), index)


def splat_value(array: np.ndarray):
    """The one value every element of `array` holds (NaN included), else None."""
    if array.size == 0:
        return None
    first = array.flat[0]
    if array.dtype.kind == "f" and np.isnan(first):
        return first if np.all(np.isnan(array)) else None
    return first if np.all(array == first) else None


def immediate(e: Emit, dtype: DType, scalar) -> ir.Value:
    """A constant value in registers (NaN and infinities included)."""
    if dtype.is_float:
        value = e.const(register_type(dtype), float(scalar))
        return value
    return e.dconst(dtype, int(scalar))


def _tuple(ev: Evaluator, instr: Instruction, index):
    return tuple(ev.value(o, index) for o in instr.operands)


def _get_tuple_element(ev: Evaluator, instr: Instruction, index):
    return ev.value(instr.operands[0], index)[instr.attrs["index"]]


# opcode -> rule(evaluator, instr, index) -> value at that index.
ELEMENTAL: dict[str, Callable] = {
    **{name: _elementwise for name, d in ops.OPS.items() if d.elementwise},
    **{name: _index_map for name in INDEX_MAPS},
    "concatenate": _concatenate,
    "pad": _pad,
    "iota": _iota,
    "constant": _constant,
    "tuple": _tuple,
    "get_tuple_element": _get_tuple_element,
}


# ----------------------------------------------------------------------------- kernel shapes

def root_leaves(comp: Computation) -> list[Instruction]:
    """The instructions whose values are the computation's array results, in order."""
    root = comp.root
    return list(root.operands) if root.opcode == "tuple" else [root]


def computed(comp: Computation) -> list[Instruction]:
    return [i for i in comp.instructions if i.opcode != "parameter"]


def vector_width(target, instrs) -> int:
    """Lanes of the widest register type among `instrs` at the host's vector width."""
    widest = max((register_bytes(leaf.dtype) for i in instrs for leaf in i.shape.leaves()), default=4)
    return target.vector_lanes(max(widest, 1))


# Loop hints (loops.for_range): loops whose body is vector code already are not
# vectorized again by LLVM; outer loops are left entirely as written. Both save compile
# time and code size, and LLVM would gain nothing there.
VECTOR_LOOP = {"vectorize": False}
OUTER_LOOP = {"unroll": False, "vectorize": False}

# Cost of one element of an op relative to an add (for the parallel split).
TRANSCENDENTAL_COST = 20


def element_cost(instrs) -> int:
    cost = 1
    for i in instrs:
        if i.opcode in ("exp", "log", "log1p", "expm1", "tanh", "logistic", "sin", "cos",
                        "erf", "power", "atan2"):
            cost += TRANSCENDENTAL_COST
        elif ops.OPS[i.opcode].elementwise:
            cost += 1
    return cost


def flat_elementwise(comp: Computation, dims) -> bool:
    """Whether every op of `comp` is elementwise over `dims` (or a scalar broadcast), so
    the kernel may run as one flat loop over all elements."""
    for instr in comp.instructions:
        if instr.opcode in ("parameter", "constant"):
            ok = instr.shape.rank == 0 or instr.shape.dims == tuple(dims)
        elif instr.opcode == "broadcast_in_dim":
            ok = instr.operands[0].shape.rank == 0
        elif instr.opcode == "tuple":
            ok = True
        else:
            ok = ops.OPS[instr.opcode].elementwise and instr.shape.dims == tuple(dims)
        if not ok:
            return False
    return True


def flat_strides(shape) -> list[int]:
    """Strides of a buffer read by the flat index of a flat kernel (0-d: none)."""
    return [] if shape.rank == 0 else [1]


# ----------------------------------------------------------------------------- loop kernels

@dataclass
class LoopNest:
    """The iteration space of a loop kernel: `outer` dims enumerated as units (with the
    last dim cut into `blocks` pieces when there are few rows), `inner` the vector dim."""
    outer: list[int]
    inner: int
    blocks: int
    block: int
    scalar: bool = False        # a 0-d kernel: one element, index ()

    @property
    def units(self) -> int:
        return math.prod(self.outer) * self.blocks


def plan_nest(dims, width: int, threads: int, element_cost_: int) -> LoopNest:
    if not dims:
        return LoopNest([], 1, 1, 1, scalar=True)
    dims = list(dims)
    outer, inner = dims[:-1], dims[-1]
    rows = math.prod(outer)
    blocks = 1
    if threads > 1 and rows < 4 * threads and inner * element_cost_ >= 2 * MIN_UNIT_COST:
        blocks = max(1, min(4 * threads, inner // max(width, 1) // 4))
    block = -(-inner // blocks)
    block = -(-block // width) * width
    blocks = -(-inner // block) if inner else 1
    return LoopNest(outer, inner, blocks, block)


# A unit (row, block) smaller than this many add-equivalents is not worth a thread alone.
MIN_UNIT_COST = 16_384


def emit_loop_kernel(kc, comp: Computation, outputs: list, operands: list) -> None:
    """Loop fusion (or one elementwise/data op wrapped as a computation): every result
    of `comp` over its dims, stored to `outputs` (entry pointers, one per root leaf)."""
    results = root_leaves(comp)
    dims = list(results[0].shape.dims)
    flat = flat_elementwise(comp, dims) and bool(dims)
    params = sorted(comp.parameters, key=lambda p: p.attrs["index"])

    def make_point(ptrs):
        outs = [Leaf(ptr, r.shape.dtype, [1] if flat else row_major_strides(dims))
                for r, ptr in zip(results, ptrs)]
        leaves = {p: Leaf(ptr, p.shape.dtype, flat_strides(p.shape) if flat else row_major_strides(p.shape.dims))
                  for p, ptr in zip(params, ptrs[len(results):])}

        def point(ev: Evaluator, index):
            for result, out in zip(results, outs):
                ev.write(out, index, ev.value(result, index))
        return leaves, point

    work = computed(comp)
    emit_elemental_kernel(kc, f"loop.{kc.name_hint(results[0])}", [math.prod(dims)] if flat else dims,
                          outputs + operands, make_point, work + params, element_cost(work),
                          flat_shape=dims if flat else None)


def emit_elemental_kernel(kc, hint: str, dims, pointers: list, make_point: Callable, instrs,
                          cost: int, flat_shape=None, scalar: bool = False) -> None:
    """A loop nest over `dims` computing one (vector of) element(s) at a time:
    `make_point(ptrs) -> (leaves, point)`, ptrs being `pointers` inside the kernel, and
    `point(evaluator, index)` emits the work at an index. Vectorized (width from the
    widest type of `instrs`) when a dry run finds every read affine, else scalar."""
    if math.prod(dims) == 0:
        return
    constants = kc.constant_provider(flat_shape=flat_shape)
    width = vector_width(kc.target, instrs)

    def dry(b, lanes, index):
        leaves, point = make_point([ir.Constant(PTR, None)] * len(pointers))
        point(Evaluator(b, lanes, kc.mathlib, leaves=leaves, dry=True, constants=constants), index)

    if scalar or not kc.vectorizable(dry, dims, width):
        width = 1
    nest = plan_nest(dims, width, kc.threads, cost)

    def body(b: ir.IRBuilder, ptrs: list, row_index, j0, j1):
        leaves, point = make_point(ptrs)
        emit_inner_loop(b, kc, width, j0, j1, row_index, point, leaves, constants)

    kc.run_nest(hint, nest, pointers, body, cost)


def emit_inner_loop(b: ir.IRBuilder, kc, width: int, j0, j1, row_index: list, point: Callable,
                    leaves: dict, constants, bound: dict | None = None):
    """for j in [j0, j1): point(evaluator, row_index + (j,)) -- vectors of `width` from
    j0 (a multiple of the width) and one masked vector for the rest; scalar code when
    width is 1. `point` emits the work of one (vector of) element(s)."""
    def evaluator(lanes, tail=None):
        return Evaluator(b, lanes, kc.mathlib, leaves=leaves, bound=bound, tail=tail,
                         constants=constants)

    def at(j, step):
        if isinstance(j, ir.Constant):
            j = j.constant
        return list(row_index) + [Ix(j, step, width if step else 1)]

    if row_index is None:       # a 0-d kernel
        point(evaluator(1), [])
        return
    if width == 1:
        with L.for_range(b, j1, start=j0, name="j") as j:
            point(evaluator(1), at(j, 0))
        return
    span = L.sub(b, j1, j0)
    main_end = L.add(b, j0, L.floor_multiple(b, span, width))
    static = isinstance(main_end, ir.Constant) and isinstance(j1, ir.Constant)
    with L.for_range(b, main_end, start=j0, step=width, name="jv", **VECTOR_LOOP) as j:
        point(evaluator(width), at(j, 1))
    count = L.sub(b, j1, main_end)
    if static and count.constant == 0:
        return
    with b.if_then(b.icmp_signed(">", count, L.const(0))) if not static else _nothing():
        point(evaluator(width, tail=count), at(main_end, 1))


@contextmanager
def _nothing():
    yield
