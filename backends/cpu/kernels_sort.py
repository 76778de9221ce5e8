"""sort: a stable bottom-up merge sort of each row, by the comparator computation.

Semantics are the interpreter's (backends/interpreter/reductions.py): every operand is
sorted along `dimension` by one order; the comparator takes (lhs0, rhs0, lhs1, rhs1,
...) and is true when lhs goes before rhs; sorting is always stable.

Per row (all dims but `dimension`): a permutation of 0..n-1 is merge-sorted in runs of
1, 2, 4, ... between two i64 arrays of the kernel's private scratch, taking from the
right run only when comparator(right, left) holds (so equal keys keep their order);
then each operand's row is written in the permutation's order. Rows run one after
another on the calling thread (the scratch holds one row's permutations). The
comparator is emitted inline as scalar code (kernels_loop.Evaluator). O(n log n)
comparisons per row.
"""
from __future__ import annotations

from contextlib import contextmanager

from llvmlite import ir

from ...compiler.ir import Computation
from . import loops as L
from .kernels_data import row_major_strides
from .kernels_elementwise import I1, I64, PTR
from .kernels_gather import copy_element, digits
from .kernels_window import apply, load_value


@contextmanager
def while_true(b: ir.IRBuilder, condition, name: str):
    """`while (condition(b)) { body }`; the builder is after the loop on exit."""
    header = b.append_basic_block(f"{name}.cond")
    body = b.append_basic_block(f"{name}.body")
    done = b.append_basic_block(f"{name}.end")
    b.branch(header)
    b.position_at_end(header)
    b.cbranch(condition(b), body, done)
    b.position_at_end(body)
    yield
    b.branch(header)
    b.position_at_end(done)


def emit_sort(kc, comp: Computation, outputs: list, operands: list) -> None:
    sort = comp.root
    dim, comparator = sort.attrs["dimension"], sort.attrs["comparator"]
    inputs = sort.operands
    dims = inputs[0].shape.dims
    n = dims[dim]
    if inputs[0].shape.size == 0:
        return
    strides = row_major_strides(dims)
    stride = strides[dim]
    row_dims = [d for d in range(len(dims)) if d != dim]
    rows = inputs[0].shape.size // n
    k = len(inputs)
    perm_a, perm_b = kc.temp(8 * n), kc.temp(8 * n)

    fn, b = kc.function(kc.name_hint() + ".sort", [PTR] * (2 * k + 2))
    ins, outs, pa, pb = fn.args[:k], fn.args[k:2 * k], fn.args[2 * k], fn.args[2 * k + 1]
    src_slot, dst_slot = L.alloca_once(b, PTR, name="src"), L.alloca_once(b, PTR, name="dst")
    width_slot, lo_slot = L.alloca_once(b, I64, name="width"), L.alloca_once(b, I64, name="lo")
    i_slot, j_slot, k_slot = (L.alloca_once(b, I64, name=x) for x in "ijk")
    right_slot = L.alloca_once(b, I1, name="take_right")

    def element(b, row_base, position):
        return L.add(b, row_base, L.mul(b, position, stride))

    def before(b, row_base, first, second) -> ir.Value:
        """comparator(elements at positions first, second of the row)."""
        args = []
        for x, t in zip(ins, inputs):
            dt = t.shape.dtype
            args += [load_value(b, x, dt, element(b, row_base, first)),
                     load_value(b, x, dt, element(b, row_base, second))]
        (result,) = apply(kc, b, comparator, args)
        return result

    with L.for_range(b, rows, name="row") as row:
        row_base = L.offset(b, *zip(digits(b, row, [dims[d] for d in row_dims]), [strides[d] for d in row_dims]))
        with L.for_range(b, n, name="init") as j:
            L.store(b, j, L.gep(b, pa, I64, j))
        L.store(b, pa, src_slot)
        L.store(b, pb, dst_slot)
        L.store(b, L.const(1), width_slot)
        with while_true(b, lambda b: b.icmp_signed("<", L.load(b, width_slot, I64), L.const(n)), "pass"):
            width = L.load(b, width_slot, I64)
            src, dst = L.load(b, src_slot, PTR), L.load(b, dst_slot, PTR)
            L.store(b, L.const(0), lo_slot)
            with while_true(b, lambda b: b.icmp_signed("<", L.load(b, lo_slot, I64), L.const(n)), "run"):
                lo = L.load(b, lo_slot, I64)
                mid = L.minimum(b, L.add(b, lo, width), n)
                hi = L.minimum(b, L.add(b, lo, L.add(b, width, width)), n)
                L.store(b, lo, i_slot)
                L.store(b, mid, j_slot)
                L.store(b, lo, k_slot)
                with while_true(b, lambda b: b.icmp_signed("<", L.load(b, k_slot, I64), hi), "merge"):
                    i, j = L.load(b, i_slot, I64), L.load(b, j_slot, I64)
                    L.store(b, ir.Constant(I1, 0), right_slot)
                    with b.if_then(b.icmp_signed("<", j, hi)):
                        with b.if_else(b.icmp_signed(">=", i, mid)) as (left_done, both):
                            with left_done:
                                L.store(b, ir.Constant(I1, 1), right_slot)
                            with both:
                                pi = L.load(b, L.gep(b, src, I64, i), I64)
                                pj = L.load(b, L.gep(b, src, I64, j), I64)
                                L.store(b, before(b, row_base, pj, pi), right_slot)
                    take_right = L.load(b, right_slot, I1)
                    i, j = L.load(b, i_slot, I64), L.load(b, j_slot, I64)
                    taken = b.select(take_right, j, i)
                    L.store(b, L.load(b, L.gep(b, src, I64, taken), I64), L.gep(b, dst, I64, L.load(b, k_slot, I64)))
                    L.store(b, b.select(take_right, i, L.add(b, i, 1)), i_slot)
                    L.store(b, b.select(take_right, L.add(b, j, 1), j), j_slot)
                    L.store(b, L.add(b, L.load(b, k_slot, I64), 1), k_slot)
                L.store(b, hi, lo_slot)
            L.store(b, dst, src_slot)
            L.store(b, src, dst_slot)
            L.store(b, L.add(b, width, width), width_slot)
        order = L.load(b, src_slot, PTR)
        with L.for_range(b, n, name="out") as j:
            source = L.load(b, L.gep(b, order, I64, j), I64)
            for x, out, t in zip(ins, outs, inputs):
                copy_element(b, t.shape.dtype, x, element(b, row_base, source), out, element(b, row_base, j))
    b.ret_void()
    kc.entry.call(fn, [*operands, *outputs, perm_a, perm_b])
