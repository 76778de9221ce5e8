"""Index kernels: dynamic_slice, dynamic_update_slice, gather, scatter.

Semantics are the interpreter's (backends/interpreter/data.py, gather_scatter.py):

    dynamic_slice         out[i] = x[clamp(s) + i]; each start clamped to [0, dim - size]
    dynamic_update_slice  out = x; out[clamp(s) + i] = update[i] (same clamping)
    gather                per batch element: starts from the index vector, clamped so the
                          whole slice lies in the operand; the slice copied to the
                          result's offset dims
    scatter               out = operand; every update element, in row-major order of the
                          updates, combined into out by the `to_apply` computation -- unless
                          its window does not lie entirely inside the operand (then the
                          whole window is skipped, as XLA does)

Copies move storage values (no conversion); index values of any integer type are
widened to i64 (sign- or zero-extended by their dtype). dynamic_slice, the update
writes of dynamic_update_slice and gather run on the thread pool over rows / batch
elements; scatter runs on one thread in order (several updates may hit one element,
and the combiner need not commute). The combiner is the `to_apply` computation emitted
inline as scalar code by the loop evaluator (kernels_loop.Evaluator), its two
parameters bound to the current value and the update (`apply_scalar`, which also
inlines calls inside it).

A dynamic_update_slice whose operand dies at it is updated in place (buffer
assignment gives the result the operand's storage; the kernel sees the same pointer
and copies nothing): a scan's stacked outputs cost the update, not the whole array,
per step. Otherwise outputs never share storage with operands here, so the operand
copy is a plain memcpy.
"""
from __future__ import annotations

import math

from llvmlite import ir

from ...compiler.dtypes import DType
from ...compiler.ir import Computation, Instruction
from . import loops as L
from .kernels_data import row_major_strides
from .kernels_elementwise import I1, I64, PTR, Emit, from_storage, storage_type, to_storage
from .kernels_loop import Evaluator

# Work of copying one element, in the add-equivalents of kernels' unit costs.
COPY_COST = 2

_BYTES = {"i8": 1, "i16": 2, "i32": 4, "i64": 8, "half": 2, "float": 4, "double": 8}


def element_bytes(dtype: DType) -> int:
    return _BYTES[str(storage_type(dtype))]


# ----------------------------------------------------------------------------- helpers

def load_index(b: ir.IRBuilder, ptr: ir.Value, dtype: DType, offset) -> ir.Value:
    """Element `offset` of an integer buffer of `dtype`, as i64."""
    value = L.load(b, L.gep(b, ptr, storage_type(dtype), offset), storage_type(dtype))
    if value.type.width == 64:
        return value
    return b.zext(value, I64) if dtype.kind == "unsigned" else b.sext(value, I64)


def clamp(b: ir.IRBuilder, value: ir.Value, high: int) -> ir.Value:
    """`value` clamped to [0, high] (high >= 0)."""
    value = b.select(b.icmp_signed("<", value, L.const(0)), L.const(0), value)
    return b.select(b.icmp_signed(">", value, L.const(high)), L.const(high), value)


def digits(b: ir.IRBuilder, flat: ir.Value, sizes) -> list:
    """`flat` as row-major digits over `sizes` (i64 values)."""
    out, rest = [], flat
    for stride in row_major_strides(sizes):
        out.append(b.udiv(rest, L.const(stride)) if stride > 1 else rest)
        rest = b.urem(rest, L.const(stride)) if stride > 1 else L.const(0)
    return out


def copy_element(b: ir.IRBuilder, dtype: DType, src: ir.Value, src_offset, dst: ir.Value, dst_offset) -> None:
    ty = storage_type(dtype)
    L.store(b, L.load(b, L.gep(b, src, ty, src_offset), ty), L.gep(b, dst, ty, dst_offset))


def memcpy(b: ir.IRBuilder, dst: ir.Value, src: ir.Value, nbytes: int) -> None:
    if nbytes <= 0:
        return
    fn = b.module.globals.get("llvm.memcpy.p0.p0.i64")
    if fn is None:
        fn = ir.Function(b.module, ir.FunctionType(ir.VoidType(), [PTR, PTR, I64, I1]),
                         name="llvm.memcpy.p0.p0.i64")
    b.call(fn, [dst, src, L.const(nbytes), ir.Constant(I1, 0)])


def window_rows(b: ir.IRBuilder, dims, begin, end):
    """Context manager over rows [begin, end) of `dims` (all but the last dim; a 0-d
    array is one row): yields (row digits, the row's flat offset)."""
    return _Rows(b, dims, begin, end)


class _Rows:
    def __init__(self, b, dims, begin, end):
        self.b, self.dims, self.begin, self.end = b, list(dims), begin, end

    def __enter__(self):
        self._loop = L.for_range(self.b, self.end, start=self.begin, name="row")
        row = self._loop.__enter__()
        return digits(self.b, row, self.dims[:-1]), L.mul(self.b, row, self.dims[-1] if self.dims else 1)

    def __exit__(self, *exc):
        return self._loop.__exit__(*exc)


def row_count(dims) -> int:
    return math.prod(dims[:-1]) if dims else 1


def apply_scalar(kc, b: ir.IRBuilder, comp: Computation, values: list) -> list:
    """A nested computation (a combiner, comparator, selector) on scalar register values,
    emitted inline by the loop evaluator; `call`s inside it are inlined the same way."""
    params = sorted(comp.parameters, key=lambda p: p.attrs["index"])
    bound = dict(zip(params, values))
    for instr in comp.instructions:
        if instr.opcode == "call":
            ev = Evaluator(b, 1, kc.mathlib, bound=bound, constants=kc.constant_provider())
            results = apply_scalar(kc, b, instr.attrs["to_apply"], [ev.value(o, ()) for o in instr.operands])
            bound[instr] = tuple(results) if instr.shape.is_tuple else results[0]
    ev = Evaluator(b, 1, kc.mathlib, bound=bound, constants=kc.constant_provider())
    result = ev.value(comp.root, ())
    return list(result) if isinstance(result, tuple) else [result]


def load_starts(b, ptrs, instrs: list[Instruction], dims, sizes) -> list:
    """Scalar start operands, clamped so the window of `sizes` lies inside `dims`."""
    return [clamp(b, load_index(b, p, s.shape.dtype, 0), d - n) for p, s, d, n in zip(ptrs, instrs, dims, sizes)]


# ----------------------------------------------------------------------------- dynamic slices

def emit_dynamic_slice(kc, comp: Computation, outputs: list, operands: list) -> None:
    ds = comp.root
    x, starts = ds.operands[0], ds.operands[1:]
    out_dims, x_dims = ds.shape.dims, x.shape.dims
    if ds.shape.size == 0:
        return
    dtype, xs = ds.shape.dtype, row_major_strides(x_dims)
    last = out_dims[-1] if out_dims else 1

    def body(b, ptrs, begin, end):
        xp, op, sp = ptrs[0], ptrs[1], ptrs[2:]
        begins = load_starts(b, sp, starts, x_dims, out_dims)
        with window_rows(b, out_dims, begin, end) as (row, out_base):
            src = L.offset(b, *((L.add(b, s, r), st) for s, r, st in zip(begins, row, xs)))
            inner_start = begins[-1] if out_dims else L.const(0)
            with L.for_range(b, last, name="j") as j:
                copy_element(b, dtype, xp, L.add(b, src, L.add(b, inner_start, j)), op, L.add(b, out_base, j))

    kc.run_units(kc.name_hint() + ".dynamic_slice", row_count(out_dims), [operands[0], outputs[0], *operands[1:]],
                 last * COPY_COST, body)


def emit_dynamic_update_slice(kc, comp: Computation, outputs: list, operands: list) -> None:
    dus = comp.root
    x, update, starts = dus.operands[0], dus.operands[1], dus.operands[2:]
    x_dims, u_dims, dtype = x.shape.dims, update.shape.dims, dus.shape.dtype
    if outputs[0] is not operands[0]:       # else buffer assignment updates x in place
        memcpy(kc.entry, outputs[0], operands[0], x.shape.size * element_bytes(dtype))
    if update.shape.size == 0:
        return
    xs = row_major_strides(x_dims)
    last = u_dims[-1] if u_dims else 1

    def body(b, ptrs, begin, end):
        up, op, sp = ptrs[0], ptrs[1], ptrs[2:]
        begins = load_starts(b, sp, starts, x_dims, u_dims)
        with window_rows(b, u_dims, begin, end) as (row, u_base):
            dst = L.offset(b, *((L.add(b, s, r), st) for s, r, st in zip(begins, row, xs)))
            inner_start = begins[-1] if u_dims else L.const(0)
            with L.for_range(b, last, name="j") as j:
                copy_element(b, dtype, up, L.add(b, u_base, j), op, L.add(b, dst, L.add(b, inner_start, j)))

    kc.run_units(kc.name_hint() + ".dynamic_update_slice", row_count(u_dims),
                 [operands[1], outputs[0], *operands[2:]], last * COPY_COST, body)


# ----------------------------------------------------------------------------- gather

def index_vector_offsets(indices: Instruction, index_vector_dim: int, batch_digits) -> tuple:
    """(flat offset of a batch element's index vector as (digit, stride) terms, the stride
    between its components) in the indices buffer."""
    strides = row_major_strides(indices.shape.dims)
    batch_dims = [d for d in range(indices.shape.rank) if d != index_vector_dim]
    terms = [(digit, strides[d]) for digit, d in zip(batch_digits, batch_dims)]
    component = strides[index_vector_dim] if index_vector_dim < indices.shape.rank else 0
    return terms, component


def full_starts(b, ip, indices: Instruction, index_vector_dim: int, batch_digits, dims_map) -> dict:
    """Operand dim -> start index (i64) picked from the batch element's index vector."""
    terms, component = index_vector_offsets(indices, index_vector_dim, batch_digits)
    base = L.offset(b, *terms)
    starts = {}
    for c, dim in enumerate(dims_map):
        starts[dim] = load_index(b, ip, indices.shape.dtype, L.add(b, base, c * component))
    return starts


def emit_gather(kc, comp: Computation, outputs: list, operands: list) -> None:
    g = comp.root
    a = g.attrs
    x, indices = g.operands
    out_dims, x_dims, sizes = g.shape.dims, x.shape.dims, a["slice_sizes"]
    if g.shape.size == 0:
        return
    offset_dims = list(a["offset_dims"])
    batch_out = [d for d in range(len(out_dims)) if d not in offset_dims]
    window = [d for d in range(len(x_dims)) if d not in a["collapsed_slice_dims"]]
    os, xs = row_major_strides(out_dims), row_major_strides(x_dims)
    batch_sizes = [out_dims[d] for d in batch_out]
    window_sizes = [out_dims[d] for d in offset_dims]
    dtype = g.shape.dtype

    def body(b, ptrs, begin, end):
        xp, ip, op = ptrs
        with L.for_range(b, end, start=begin, name="batch") as unit:
            bd = digits(b, unit, batch_sizes)
            starts = full_starts(b, ip, indices, a["index_vector_dim"], bd, a["start_index_map"])
            src = L.offset(b, *((clamp(b, s, x_dims[d] - sizes[d]), xs[d]) for d, s in starts.items()))
            dst = L.offset(b, *((digit, os[d]) for digit, d in zip(bd, batch_out)))
            with L.loop_nest(b, window_sizes, name="w") as w:
                copy_element(b, dtype,
                             xp, L.add(b, src, L.offset(b, *((k, xs[d]) for k, d in zip(w, window)))),
                             op, L.add(b, dst, L.offset(b, *((k, os[d]) for k, d in zip(w, offset_dims)))))

    kc.run_units(kc.name_hint() + ".gather", math.prod(batch_sizes), [operands[0], operands[1], outputs[0]],
                 max(1, math.prod(window_sizes)) * COPY_COST + 8, body)


# ----------------------------------------------------------------------------- scatter

def emit_scatter(kc, comp: Computation, outputs: list, operands: list) -> None:
    s = comp.root
    a = s.attrs
    x, indices, updates = s.operands
    x_dims, u_dims, dtype = x.shape.dims, updates.shape.dims, s.shape.dtype
    memcpy(kc.entry, outputs[0], operands[0], x.shape.size * element_bytes(dtype))
    if updates.shape.size == 0:
        return
    window_dims = list(a["update_window_dims"])
    scatter_dims = [d for d in range(len(u_dims)) if d not in window_dims]
    operand_window = [d for d in range(len(x_dims)) if d not in a["inserted_window_dims"]]
    window_size = [1] * len(x_dims)
    for ud, od in zip(window_dims, operand_window):
        window_size[od] = u_dims[ud]
    xs = row_major_strides(x_dims)
    combiner = a["to_apply"]

    def body(b, ptrs, begin, end):
        xp, ip, up = ptrs
        ty = storage_type(dtype)
        e = Emit(b, 1, kc.mathlib)
        with L.for_range(b, end, start=begin, name="u") as flat:
            ud = digits(b, flat, u_dims)
            starts = full_starts(b, ip, indices, a["index_vector_dim"], [ud[d] for d in scatter_dims],
                                 a["scatter_dims_to_operand_dims"])
            inside = ir.Constant(I1, 1)
            for d, start in starts.items():
                ok = b.and_(b.icmp_signed(">=", start, L.const(0)),
                            b.icmp_signed("<=", start, L.const(x_dims[d] - window_size[d])))
                inside = b.and_(inside, ok)
            with b.if_then(inside):
                position = [starts.get(d, L.const(0)) for d in range(len(x_dims))]
                for ud_dim, od in zip(window_dims, operand_window):
                    position[od] = L.add(b, position[od], ud[ud_dim])
                target = L.gep(b, xp, ty, L.offset(b, *zip(position, xs)))
                update = L.gep(b, up, ty, flat)
                old = from_storage(e, dtype, L.load(b, target, ty))
                new = from_storage(e, dtype, L.load(b, update, ty))
                (combined,) = apply_scalar(kc, b, combiner, [old, new])
                L.store(b, to_storage(e, dtype, combined), target)

    # One unit: updates apply in order on the calling thread.
    fn, b = kc.function(kc.name_hint() + ".scatter", [PTR, I64, I64])
    ctx, begin, end = fn.args
    ptrs = [L.load(b, L.gep(b, ctx, PTR, k), PTR) for k in range(3)]
    body(b, ptrs, begin, end)
    b.ret_void()
    e = kc.entry
    ctx_slot = L.alloca_once(e, ir.ArrayType(PTR, 3), name="ctx")
    for k, p in enumerate([outputs[0], operands[1], operands[2]]):
        L.store(e, p, L.gep(e, ctx_slot, PTR, k))
    e.call(fn, [ctx_slot, L.const(0), L.const(updates.shape.size)])
