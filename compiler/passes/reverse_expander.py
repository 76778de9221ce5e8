"""Reverse expander: `reverse` of short dims becomes its slices in reverse order,
concatenated, for a backend without the op.

    reverse(k f32[3, 3, 16, 32], dimensions={0, 1})
        -> concatenate(k[2], k[1], k[0]) along 0, then the same along 1

Each reversed dim is one concatenate of its size-1 slices, last first, so the element
at i ends up at n - 1 - i: exactly what reverse computes. This is how a convolution's
input gradient reverses its kernel (its spatial dims are a few elements long). The
copies grow with the dim's length, so only dims up to `max_extent` elements are
expanded; a longer reverse is left as it is (the backend refuses it).
"""
from __future__ import annotations

from ..ir import Instruction
from ..rewrite import Pat, RewriteContext, RewritePass, Rule, RuleTable

MAX_REVERSED_EXTENT = 16


def _reverse_along(ctx: RewriteContext, x: Instruction, dim: int) -> Instruction:
    dims = x.shape.dims
    if dims[dim] <= 1:
        return x
    pieces = []
    for i in reversed(range(dims[dim])):
        starts = [0] * len(dims)
        limits = list(dims)
        starts[dim], limits[dim] = i, i + 1
        pieces.append(ctx.emit("slice", [x], {"start_indices": starts, "limit_indices": limits}))
    return ctx.emit("concatenate", pieces, {"dimension": dim})


class ReverseExpander(RewritePass):
    """`max_extent`: the longest dim a reverse may have and still be expanded."""
    name = "reverse-expander"

    def __init__(self, max_extent: int = MAX_REVERSED_EXTENT):
        def short(instr: Instruction) -> bool:
            return all(instr.shape.dims[d] <= max_extent for d in instr.attrs["dimensions"])

        def expand(ctx: RewriteContext, rev: Instruction) -> Instruction:
            x = rev.operands[0]
            for dim in sorted(rev.attrs["dimensions"]):
                x = _reverse_along(ctx, x, dim)
            return x

        super().__init__(RuleTable([
            # reverse = size-1 slices concatenated last first, per reversed dim (docstring).
            Rule("reverse_to_concatenate", Pat("reverse", name="rev", where=short), expand),
        ]))
