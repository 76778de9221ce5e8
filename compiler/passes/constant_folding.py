"""Constant folding: an instruction whose operands are all constants becomes a constant.

The value comes from the interpreter's own rule for the op (`backends.interpreter.IMPL`),
so a folded constant holds exactly what the program would have computed (bf16 rounding,
integer wrap-around and XLA's conventions included). Folding is one rule run by the
rewrite driver (compiler/rewrite.py); the folded constant takes the folded
instruction's source locations.

What is folded:
- Any op whose operands are all constants (iota has none) and whose result is one
  array -- except the ops in NEVER_FOLD and ops with side effects.
- Size policy, so folding never makes the program bigger: the constant has at most
  `max_elements` elements, and no more than its operand constants together unless it
  is small (rewrite.SMALL_CONSTANT_ELEMENTS). So iota, a broadcast of a scalar or a
  pad only fold into small constants; elementwise ops, slices and reductions of
  constants always qualify.
- Ops that call a computation (reduce, reduce_window, sort, scatter,
  select_and_scatter) only when the called computations have no side effects and
  their operands hold at most `max_nested_elements` elements together (the
  interpreter may evaluate the body once per element).
- An op the interpreter cannot evaluate (it raises) is left for run time, where it
  raises the same error.
"""
from __future__ import annotations

import numpy as np

from ...backends.interpreter import IMPL, Context, Frame, store
from .. import ops
from ..ir import Instruction
from ..rewrite import SMALL_CONSTANT_ELEMENTS, Pat, RewritePass, Rule, RuleTable, const_value

NEVER_FOLD = {
    "parameter": "a value known only at run time",
    "constant": "already folded",
    "rng_bit_generator": "random bits stay an op, as random number generators do in XLA",
    "tuple": "there are no tuple constants",
    "get_tuple_element": "its operand is a tuple, never a constant",
    "while": "may run for long (or forever); control flow is not folded",
    "conditional": "control flow is not folded (the simplifier picks constant branches)",
    "call": "control flow is not folded",
    "fusion": "fused computations are the backends' business, not values to precompute",
}

FOLDABLE = tuple(name for name, opdef in ops.OPS.items()
                 if name not in NEVER_FOLD and not opdef.side_effects)


def _operands_are_constants(instr: Instruction) -> bool:
    return all(o.opcode == "constant" for o in instr.operands)


def _small_enough(ctx, instr: Instruction) -> bool:
    size = instr.shape.size
    operand_size = sum(o.shape.size for o in instr.operands)
    if size > ctx.options.max_elements:
        return False
    if size > SMALL_CONSTANT_ELEMENTS and size > operand_size:
        return False                                    # folding would expand the program
    if instr.called_computations():
        return operand_size <= ctx.options.max_nested_elements
    return True


def _evaluate(instr: Instruction) -> np.ndarray | None:
    """The instruction's value on its constant operands, as the interpreter computes it."""
    values = [const_value(o) for o in instr.operands]
    try:
        with np.errstate(all="ignore"):   # wrap-around, inf and NaN are defined results
            value = store(IMPL[instr.opcode](Frame(Context(), ()), instr, *values), instr.shape.dtype)
    except Exception:   # noqa: BLE001 -- whatever the op raises, it raises again at run time
        return None
    return value if value.shape == instr.shape.dims else None


def fold(ctx, instr):
    # Exact by construction: the constant is the interpreter's value for this instruction.
    if instr.shape.is_tuple or not _small_enough(ctx, instr):
        return None
    value = _evaluate(instr)
    if value is None:
        return None
    return ctx.constant(value, instr.shape.dtype)


RULES = RuleTable([
    Rule("fold", Pat(FOLDABLE, name="instr", where=_operands_are_constants), fold),
])


class ConstantFolding(RewritePass):
    """Folds constant subexpressions, within the size limits above."""
    name = "constant-folding"
    tags = ("simplify",)
    table = RULES

    def __init__(self, max_elements: int = 65536, max_nested_elements: int = 4096):
        super().__init__()
        self.max_elements = max_elements
        self.max_nested_elements = max_nested_elements
