"""Dot layout for the matrix unit: operands in the order the machine streams them.

The systolic code generator reads a dot_general's operands straight from memory in
row-major order, so it wants

    lhs   [batch..., free..., contracting...]   rows of K streamed through the array
    rhs   [batch..., contracting..., free...]   a weight tile read row by row, or
          [batch..., free..., contracting...]   read transposed (LOAD_W's transpose flag)

with the batch and contracting dims in the same order on both sides. This pass inserts
the transposes that put a dot's operands in that order (and reorders the dims of the
dot to match); a dot already in that form is left alone. It runs after layout assignment
and simplification, which would fold these transposes back into the dot.
"""
from __future__ import annotations

from ...compiler.dot_dims import DotDims
from ...compiler.ir import Instruction
from ...compiler.rewrite import Pat, RewriteContext, RewritePass, Rule, RuleTable


def _lhs_order(d: DotDims) -> tuple[int, ...]:
    return d.lhs_batch + tuple(d.free(0)) + d.lhs_contract


def _rhs_orders(d: DotDims) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(contracting-major, free-major) orders of the rhs with the lhs's dim pairing."""
    free = tuple(d.free(1))
    return d.rhs_batch + d.rhs_contract + free, d.rhs_batch + free + d.rhs_contract


def is_canonical(dot: Instruction) -> bool:
    d = DotDims.of(dot)
    identity = tuple(range(d.lhs_rank)), tuple(range(d.rhs_rank))
    return _lhs_order(d) == identity[0] and identity[1] in _rhs_orders(d)


def _transposed(ctx: RewriteContext, x: Instruction, order: tuple[int, ...]) -> Instruction:
    if order == tuple(range(len(order))):
        return x
    return ctx.emit("transpose", [x], {"permutation": order})


def canonicalize_dot(ctx: RewriteContext, dot: Instruction) -> Instruction | None:
    if is_canonical(dot):
        return None
    d = DotDims.of(dot)
    nb, nc = len(d.lhs_batch), len(d.lhs_contract)
    lhs_order = _lhs_order(d)
    rhs_order = _rhs_orders(d)[0]
    lhs = _transposed(ctx, dot.operands[0], lhs_order)
    rhs = _transposed(ctx, dot.operands[1], rhs_order)
    nm = d.lhs_rank - nb - nc
    dims = {"lhs_batching_dims": tuple(range(nb)), "rhs_batching_dims": tuple(range(nb)),
            "lhs_contracting_dims": tuple(range(nb + nm, d.lhs_rank)),
            "rhs_contracting_dims": tuple(range(nb, nb + nc))}
    return ctx.rebuild(dot, operands=[lhs, rhs], attrs=dims)


class DotLayout(RewritePass):
    name = "systolic-dot-layout"
    table = RuleTable([
        # Operands in streaming order (module docstring); the free-dim order of each side
        # is kept, so the result is the same array.
        Rule("dot_operands_in_stream_order", Pat("dot_general", name="dot"), canonicalize_dot),
    ])
