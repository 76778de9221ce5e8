"""Update-slice expander: a `dynamic_update_slice` whose starts are constants becomes
static slices of the operand around the update, concatenated.

    dus(x f32[T, B, H], u f32[1, B, H], 2, 0, 0)
        -> concatenate(slice(x, [0:2]), u, slice(x, [3:T]), dimension=0)

Along the first dim where the update is smaller than the operand the result is the
part of x before the window, the window, and the part after; the window itself is the
same expansion of x's band over the remaining dims (the update when it covers the band).
Starts are clamped as dynamic_update_slice clamps them, so the update always fits.

Why: after loops are unrolled (while_unroll.py) the stacking of a scan's per-step
outputs is a chain of dynamic_update_slices at constant rows. A backend without the op
(the systolic machine) runs slices and concatenates; the simplifier's slice/concatenate
rules then collapse the chain into one concatenate of the steps' rows. Backends that
update in place (CPU) do not run this pass.
"""
from __future__ import annotations

from ..ir import Instruction
from ..rewrite import Pat, RewriteContext, RewritePass, Rule, RuleTable, const_value


def _constant_starts(dus: Instruction) -> bool:
    return all(const_value(s) is not None for s in dus.operands[2:])


def _band(ctx: RewriteContext, x: Instruction, dim: int, lo: int, hi: int) -> Instruction:
    """x restricted to [lo, hi) along `dim`."""
    starts = [0] * x.shape.rank
    limits = list(x.shape.dims)
    starts[dim], limits[dim] = lo, hi
    return ctx.emit("slice", [x], {"start_indices": starts, "limit_indices": limits})


def expand(ctx: RewriteContext, x: Instruction, update: Instruction, starts: list[int]) -> Instruction:
    """x with `update` written at `starts` (clamped), from slices and concatenates."""
    for dim, (size, n) in enumerate(zip(x.shape.dims, update.shape.dims)):
        if n == size:
            continue
        start = min(max(starts[dim], 0), size - n)
        window = expand(ctx, _band(ctx, x, dim, start, start + n), update, starts[:dim] + [0] + starts[dim + 1:])
        parts = ([_band(ctx, x, dim, 0, start)] if start else []) + [window] + \
                ([_band(ctx, x, dim, start + n, size)] if start + n < size else [])
        return parts[0] if len(parts) == 1 else ctx.emit("concatenate", parts, {"dimension": dim})
    return update


def expand_update_slice(ctx: RewriteContext, dus: Instruction) -> Instruction:
    x, update = dus.operands[:2]
    return expand(ctx, x, update, [int(const_value(s)) for s in dus.operands[2:]])


class UpdateSliceExpander(RewritePass):
    name = "update-slice-expander"
    table = RuleTable([
        # dynamic_update_slice at constant starts = concatenated static slices (docstring).
        Rule("update_slice_to_concatenate", Pat("dynamic_update_slice", name="dus", where=_constant_starts),
             expand_update_slice),
    ])
