"""Window kernels: reduce_window and select_and_scatter (scalar loop nests).

Semantics are the interpreter's (backends/interpreter/reductions.py). Position k of
the window of output element o reads, along each dim,

    p = o * stride + k * window_dilation - padding_low

of the base-dilated input: an input element when p >= 0, p < (n - 1) * base + 1 and
p % base == 0 (index p / base), else padding.

    reduce_window       per output element (the thread pool's units): accumulators
                        start at the init values; every window position, padding
                        included (padding holds the init value), is combined in by the
                        `to_apply` computation, in row-major window order. Variadic
                        (several inputs and inits) like reduce. The interpreter combines
                        pairwise instead: float sums may differ in the last bits.
    select_and_scatter  the output starts as `init`; for each source element, in
                        row-major order, the window's in-bounds elements are scanned in
                        row-major order keeping the current pick while select(pick,
                        candidate) is true, and the source value is combined into the
                        output at the pick by `scatter`. One thread (picks collide).

Nested computations are emitted inline as scalar code by the loop evaluator
(kernels_loop.Evaluator) with their parameters bound.
"""
from __future__ import annotations

import math

from llvmlite import ir

from ...compiler.ops import window_params
from ...compiler.ir import Computation
from . import loops as L
from .kernels_data import row_major_strides
from .kernels_elementwise import I1, I64, PTR, Emit, from_storage, register_type, storage_type, to_storage
from .kernels_gather import apply_scalar, digits


def apply(kc, b, comp: Computation, values: list) -> list:
    """`comp` on scalar register values (its parameters in order); its results as a list."""
    return apply_scalar(kc, b, comp, values)


def load_value(b, ptr, dtype, offset):
    return from_storage(Emit(b, 1, None), dtype, L.load(b, L.gep(b, ptr, storage_type(dtype), offset),
                                                         storage_type(dtype)))


def store_value(b, value, ptr, dtype, offset):
    L.store(b, to_storage(Emit(b, 1, None), dtype, value), L.gep(b, ptr, storage_type(dtype), offset))


def input_position(b, o, k, n, stride, low, base, wdil):
    """(valid, index) of window position k of output position o along one dim."""
    p = L.sub(b, L.add(b, L.mul(b, o, stride), L.mul(b, k, wdil)), low)
    extent = (n - 1) * base + 1 if n > 0 else 0
    valid = b.and_(b.icmp_signed(">=", p, L.const(0)), b.icmp_signed("<", p, L.const(extent)))
    if base == 1:
        return valid, p
    valid = b.and_(valid, b.icmp_signed("==", b.srem(p, L.const(base)), L.const(0)))
    return valid, b.sdiv(p, L.const(base))


# ----------------------------------------------------------------------------- reduce_window

def emit_reduce_window(kc, comp: Computation, outputs: list, operands: list) -> None:
    rw = comp.root
    half = len(rw.operands) // 2
    inputs, inits = rw.operands[:half], rw.operands[half:]
    rank = inputs[0].shape.rank
    window, strides, padding, base, wdil = window_params(rw.attrs, rank)
    out_dims = (rw.shape.elements[0] if half > 1 else rw.shape).dims
    if math.prod(out_dims) == 0:
        return
    in_dims = inputs[0].shape.dims
    in_strides = row_major_strides(in_dims)
    dtypes = [x.shape.dtype for x in inputs]
    empty = inputs[0].shape.size == 0
    body_comp = rw.attrs["to_apply"]

    def body(b, ptrs, begin, end):
        xs, ivs, outs = ptrs[:half], ptrs[half:2 * half], ptrs[2 * half:]
        init_values = [load_value(b, p, dt, 0) for p, dt in zip(ivs, dtypes)]
        slots = [L.alloca_once(b, register_type(dt), name="acc") for dt in dtypes]
        with L.for_range(b, end, start=begin, name="out") as flat:
            o = digits(b, flat, out_dims)
            for slot, v in zip(slots, init_values):
                L.store(b, v, slot)
            with L.loop_nest(b, window, name="k") as k:
                valid, index = ir.Constant(I1, 1), []
                for d in range(rank):
                    ok, i = input_position(b, o[d], k[d], in_dims[d], strides[d], padding[d][0], base[d], wdil[d])
                    valid = b.and_(valid, ok)
                    index.append(i)
                if empty:
                    values = init_values
                else:
                    offset = b.select(valid, L.offset(b, *zip(index, in_strides)), L.const(0))
                    values = [b.select(valid, load_value(b, x, dt, offset), v)
                              for x, dt, v in zip(xs, dtypes, init_values)]
                accs = [L.load(b, s, register_type(dt)) for s, dt in zip(slots, dtypes)]
                for slot, value in zip(slots, apply(kc, b, body_comp, accs + values)):
                    L.store(b, value, slot)
            for slot, out, dt in zip(slots, outs, dtypes):
                store_value(b, L.load(b, slot, register_type(dt)), out, dt, flat)

    kc.run_units(kc.name_hint() + ".reduce_window", math.prod(out_dims), [*operands, *outputs],
                 4 * math.prod(window), body)


# ----------------------------------------------------------------------------- select_and_scatter

def emit_select_and_scatter(kc, comp: Computation, outputs: list, operands: list) -> None:
    ss = comp.root
    a = ss.attrs
    operand, source = ss.operands[0], ss.operands[1]
    rank, dtype = operand.shape.rank, operand.shape.dtype
    window, strides, padding, _, _ = window_params(a, rank)
    dims, src_dims = operand.shape.dims, source.shape.dims
    xs = row_major_strides(dims)
    fn, b = kc.function(kc.name_hint() + ".select_and_scatter", [PTR, PTR, PTR, PTR])
    xp, sp, ip, out = fn.args
    init = load_value(b, ip, dtype, 0)
    with L.for_range(b, operand.shape.size, name="fill") as i:
        store_value(b, init, out, dtype, i)
    if source.shape.size and operand.shape.size:
        picked = L.alloca_once(b, I64, name="picked")
        best = L.alloca_once(b, register_type(dtype), name="best")
        with L.for_range(b, source.shape.size, name="src") as flat:
            o = digits(b, flat, src_dims)
            L.store(b, L.const(-1), picked)
            L.store(b, init, best)
            with L.loop_nest(b, window, name="k") as k:
                valid, index = ir.Constant(I1, 1), []
                for d in range(rank):
                    ok, i = input_position(b, o[d], k[d], dims[d], strides[d], padding[d][0], 1, 1)
                    valid = b.and_(valid, ok)
                    index.append(i)
                with b.if_then(valid):
                    offset = L.offset(b, *zip(index, xs))
                    candidate = load_value(b, xp, dtype, offset)
                    current = L.load(b, best, register_type(dtype))
                    (keep,) = apply(kc, b, a["select"], [current, candidate])
                    none_yet = b.icmp_signed("<", L.load(b, picked, I64), L.const(0))
                    with b.if_then(b.or_(none_yet, b.not_(keep))):
                        L.store(b, offset, picked)
                        L.store(b, candidate, best)
            target = L.load(b, picked, I64)
            with b.if_then(b.icmp_signed(">=", target, L.const(0))):
                old = load_value(b, out, dtype, target)
                (new,) = apply(kc, b, a["scatter"], [old, load_value(b, sp, dtype, flat)])
                store_value(b, new, out, dtype, target)
    b.ret_void()
    kc.entry.call(fn, [operands[0], operands[1], operands[2], outputs[0]])
