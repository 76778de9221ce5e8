"""Checks a module against the IR's invariants and the op table's rules.

Every failure names the computation, the instruction, the rule it broke and the user's
source line it came from.
"""
from __future__ import annotations

from . import ops
from .ir import Computation, Instruction, Module


class VerifyError(ValueError):
    """The module breaks an IR invariant or an op's rule."""


def _where(comp: Computation, instr: Instruction | None) -> str:
    if instr is None:
        return f"in computation {comp.name}"
    return f"in computation {comp.name}, instruction {instr.name} ({instr.opcode}) at {instr.loc_text}"


def verify_computation(comp: Computation, module_computations: set[int]) -> None:
    def broken(instr, rule):
        raise VerifyError(f"{_where(comp, instr)}: {rule}")

    defined: set[int] = set()
    names: set[str] = set()
    for instr in comp.instructions:
        if instr.name in names:
            broken(instr, f"name {instr.name!r} is defined twice")
        names.add(instr.name)
        for i, operand in enumerate(instr.operands):
            if id(operand) not in defined:
                broken(instr, f"operand {i} ({operand.name}) is not defined earlier in this computation")
        for callee in instr.called_computations():
            if id(callee) not in module_computations:
                broken(instr, f"calls computation {callee.name}, which is not in the module")
        try:
            ops.infer_shape(instr.opcode, [o.shape for o in instr.operands], instr.attrs, instr.shape)
        except ops.ShapeError as e:
            raise VerifyError(f"{_where(comp, instr)}: {e}") from e
        defined.add(id(instr))

    indices = [p.attrs["index"] for p in comp.parameters]
    if indices != list(range(len(indices))):
        broken(None, f"parameter indices must be 0..{len(indices) - 1}, got {indices}")
    if comp.root is None:
        broken(None, "has no root instruction")
    if id(comp.root) not in defined:
        broken(comp.root, "the root is not an instruction of this computation")


def verify(module: Module) -> None:
    """Raise VerifyError on the first broken rule; return None when the module is valid."""
    if module.entry is None:
        raise VerifyError(f"module {module.name} has no entry computation")
    names = [c.name for c in module.computations]
    for name in names:
        if names.count(name) > 1:
            raise VerifyError(f"module {module.name} has two computations named {name!r}")
    if module.entry not in module.computations:
        raise VerifyError(f"module {module.name}: the entry {module.entry.name} is not among its computations")
    known = {id(c) for c in module.computations}
    for comp in module.computations:
        verify_computation(comp, known)
