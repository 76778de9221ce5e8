"""Zero-element folding: arrays with no elements become constants, and ops that read
one but produce elements become the splat they compute.

A backend that moves data in rows and tiles (the systolic machine: DMA transfers of at
least one column) has nothing to do for an empty array, yet a program may hold them
(a slice of width 0, a reshape of an empty parameter, a dot contracting a size-0 dim).
Rewrites (the table `RULES`, run by compiler/rewrite.py's driver):

- empty result: any side-effect-free instruction whose array result has zero elements
  becomes an empty constant (no storage, no code);
- empty contraction: a dot_general, or a convolution whose kernel or input features are
  empty, with a non-empty result sums no products: zeros. (A convolution whose input is
  empty only spatially still multiplies its padding zeros by the kernel, which gives NaN
  against an inf weight, so it is left alone.)
- reduce of an empty operand (one input) with a non-empty result: the init value.
- pad of an empty operand: every element is padding: the padding value.
- concatenate: empty operands are dropped.

Each is exactly what the interpreter computes for the original instruction.
"""
from __future__ import annotations

import numpy as np

from .. import ops
from ..ir import Instruction
from ..rewrite import Pat, RewritePass, Rule, RuleTable, has_side_effects

# Parameters and constants already cost nothing; tuples are not arrays.
_KEPT = ("parameter", "constant", "tuple")


def _empty_result(instr: Instruction) -> bool:
    return (instr.opcode not in _KEPT and not instr.shape.is_tuple and instr.shape.size == 0
            and not has_side_effects(instr))


def _empty_operand(instr: Instruction) -> bool:
    return any(not o.shape.is_tuple and o.shape.size == 0 for o in instr.operands)


def to_empty_constant(ctx, instr):
    return ctx.constant(np.zeros(instr.shape.dims), instr.shape.dtype)


def _contracts_nothing(instr: Instruction) -> bool:
    if instr.shape.size == 0 or not _empty_operand(instr):
        return False
    if instr.opcode == "dot_general":
        return True          # a non-empty result with an empty operand: a size-0 contracting dim
    dn = ops.parse_dim_labels(instr.attrs["dim_labels"])
    lhs, rhs = (o.shape for o in instr.operands)
    return rhs.size == 0 or lhs.dims[dn.input_feature] == 0


def to_zeros(ctx, instr):
    return ctx.splat(0, instr.shape)


def _reduces_nothing(instr: Instruction) -> bool:
    return (len(instr.operands) == 2 and not instr.shape.is_tuple and instr.shape.size > 0
            and instr.operands[0].shape.size == 0)


def _init_splat(ctx, instr):
    """The second operand (reduce's init value, pad's padding value) everywhere."""
    return ctx.emit("broadcast_in_dim", [instr.operands[1]], {"broadcast_dimensions": ()},
                    instr.shape)


def _concatenates_empty(instr: Instruction) -> bool:
    return instr.shape.size > 0 and _empty_operand(instr)


def drop_empty_parts(ctx, instr):
    parts = [o for o in instr.operands if o.shape.size > 0]
    if len(parts) == 1:
        return parts[0]
    return ctx.rebuild(instr, operands=parts)


RULES = RuleTable([
    Rule("empty_result", Pat(tuple(op for op in ops.OPS if op not in _KEPT), name="instr",
                             where=_empty_result), to_empty_constant),
    Rule("empty_contraction", Pat(("dot_general", "convolution"), name="instr", where=_contracts_nothing),
         to_zeros),
    Rule("reduce_of_empty", Pat("reduce", name="instr", where=_reduces_nothing), _init_splat),
    Rule("pad_of_empty", Pat("pad", name="instr", where=lambda i: i.shape.size > 0 and _empty_operand(i)),
         _init_splat),
    Rule("concatenate_empty_parts", Pat("concatenate", name="instr", where=_concatenates_empty),
         drop_empty_parts),
])


class ZeroElementFolding(RewritePass):
    """Folds empty arrays and what reads them (module docstring)."""
    name = "zero-elements"
    table = RULES
