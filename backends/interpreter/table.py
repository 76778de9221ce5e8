"""The interpreter's rule table: opcode -> rule.

A rule is `rule(frame, instr, *operand_values) -> value`. `frame` is the running
computation's `Frame` (its arguments, the shared `Context`, and `frame.call` for nested
computations); `instr` gives the attributes and the declared result shape. A rule may
return any array-like of the right shape: the evaluator stores it in the result dtype
(bf16 rounding included) and checks its shape.

Rules live next to their helpers in the sibling modules and register with `@rule(...)`;
the package `__init__` imports them all, so `IMPL` is complete once the package is loaded.
"""
from __future__ import annotations

from typing import Callable

IMPL: dict[str, Callable] = {}


def rule(*opcodes: str):
    """Decorator: register the decorated function as the rule of `opcodes`."""
    def register(fn):
        for opcode in opcodes:
            assert opcode not in IMPL, f"two interpreter rules for {opcode}"
            IMPL[opcode] = fn
        return fn
    return register
