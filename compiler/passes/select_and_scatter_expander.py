"""select_and_scatter expander: the gradient of a max-pool (or min-pool) written with
strided slices, compares, selects and pads, for a backend without the op.

For window offset k (row-major over the window, k = 0 .. T-1) the elements of every
window at that offset form one strided slice v_k of the operand, shaped like the
source. XLA's select scans a window in that order and keeps its current pick while
select(current, candidate) holds, so with

    best = v_0,   pick = 0
    keep = compare(best, v_k, dir);  best = select(keep, best, v_k);  pick = select(keep, pick, k)

`pick` is the offset each window picked, and the result is

    init + sum_k pad(select(pick == k, source, 0), low = k's offset, interior = stride - 1)

which puts each window's source value at its picked element (add-scatter: overlapping
windows add up, in another order than the interpreter's, which is float rounding only).
`pick` is held in the operand's dtype (offsets are small integers, exact in any float).

Expanded: select computations that are one compare of the two parameters (GE/GT: max
pools, LE/LT: min pools), the add scatter, windows without padding (every element of
every window is in bounds). Anything else is left as it is (the backend refuses it).
"""
from __future__ import annotations

import itertools

from .. import ops
from ..ir import Computation, Instruction, Shape
from ..rewrite import Pat, RewriteContext, RewritePass, Rule, RuleTable

MIRRORED = {"LT": "GT", "GT": "LT", "LE": "GE", "GE": "LE", "EQ": "EQ", "NE": "NE"}


def select_direction(comp: Computation) -> str | None:
    """dir for `(a, b) -> compare(a, b, dir)` (a compare of (b, a): the mirrored dir)."""
    root = comp.root
    if root is None or root.opcode != "compare" or len(comp.parameters) != 2:
        return None
    a, b = comp.parameters
    if root.operands == [a, b]:
        return root.attrs["direction"]
    if root.operands == [b, a]:
        return MIRRORED[root.attrs["direction"]]
    return None


def _is_add(comp: Computation) -> bool:
    root = comp.root
    return (root is not None and root.opcode == "add" and len(comp.parameters) == 2
            and set(root.operands) == set(comp.parameters))


def expandable(instr: Instruction) -> bool:
    window, strides, padding, base, wdil = ops.window_params(instr.attrs, instr.shape.rank)
    return (select_direction(instr.attrs["select"]) in ("GE", "GT", "LE", "LT")
            and _is_add(instr.attrs["scatter"]) and not any(lo or hi for lo, hi in padding)
            and all(d == 1 for d in base + wdil))


def _at_offset(ctx: RewriteContext, x: Instruction, offset, strides, dims) -> Instruction:
    """Element `offset` of every window: [offset + i * stride for i < dims] along each dim."""
    limits = [o + (n - 1) * s + 1 for o, n, s in zip(offset, dims, strides)]
    return ctx.emit("slice", [x], {"start_indices": offset, "limit_indices": limits, "strides": strides})


def expand(ctx: RewriteContext, sas: Instruction) -> Instruction:
    operand, source, init = sas.operands
    window, strides, _, _, _ = ops.window_params(sas.attrs, operand.shape.rank)
    direction = select_direction(sas.attrs["select"])
    dims, dtype = source.shape.dims, operand.shape.dtype
    if source.shape.size == 0 or operand.shape.size == 0:
        return ctx.emit("broadcast_in_dim", [init], {"broadcast_dimensions": ()}, shape=sas.shape)
    offsets = list(itertools.product(*map(range, window)))
    best = _at_offset(ctx, operand, offsets[0], strides, dims)
    pick = ctx.splat(0, Shape(dtype, dims))
    for k, offset in enumerate(offsets[1:], start=1):
        candidate = _at_offset(ctx, operand, offset, strides, dims)
        keep = ctx.emit("compare", [best, candidate], {"direction": direction})
        best = ctx.emit("select", [keep, best, candidate])
        pick = ctx.emit("select", [keep, pick, ctx.splat(k, Shape(dtype, dims))])
    zero = ctx.constant(0, dtype)
    zeros = ctx.emit("broadcast_in_dim", [zero], {"broadcast_dimensions": ()}, shape=source.shape)
    total = ctx.emit("broadcast_in_dim", [init], {"broadcast_dimensions": ()}, shape=sas.shape)
    for k, offset in enumerate(offsets):
        picked = ctx.emit("compare", [pick, ctx.splat(k, Shape(dtype, dims))], {"direction": "EQ"})
        part = ctx.emit("select", [picked, source, zeros])
        high = [size - (o + (n - 1) * s + 1) for size, o, n, s in zip(operand.shape.dims, offset, dims, strides)]
        placed = ctx.emit("pad", [part, zero], {"edge_padding_low": offset, "edge_padding_high": high,
                                                "interior_padding": [s - 1 for s in strides]})
        total = ctx.emit("add", [total, placed])
    return total


class SelectAndScatterExpander(RewritePass):
    name = "select-and-scatter-expander"
    table = RuleTable([
        # select_and_scatter = picks by compare/select, source placed by pads (docstring).
        Rule("select_and_scatter_to_pads", Pat("select_and_scatter", name="sas", where=expandable), expand),
    ])
