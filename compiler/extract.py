"""Cut a group of entry instructions out into a module of its own.

    module, inputs = extract(module, "m.part0", group, outputs, crossing_error=...)

Used where a program runs as several modules with something in between: the CPU
backend's native segments around collectives (backends/cpu/segments.py) and the
per-device parts of a placed program (runtime/placed.py). The new entry computation
has a parameter for every value the group reads that it does not compute (`inputs`, in
first-use order), the group's instructions in their order (same names, shapes,
attributes and source locations), and a root tuple of `outputs`. Computations the group
calls come along. Only arrays can cross: `crossing_error(value)` is raised for a tuple.
"""
from __future__ import annotations

from typing import Callable, Iterable

from .ir import Attrs, Computation, Instruction, Module, TupleShape


def extract(module: Module, name: str, group: list[Instruction], outputs: list[Instruction],
            crossing_error: Callable[[Instruction], Exception], copy_constants: bool = False,
            attrs_of: Callable[[Instruction], Attrs] = lambda instr: instr.attrs
            ) -> tuple[Module, list[Instruction]]:
    """The group as a module, and the outside values its parameters stand for.
    `copy_constants`: constants from outside are copied in rather than passed."""
    comp = Computation(name)
    twins: dict[Instruction, Instruction] = {}
    inputs: list[Instruction] = []

    def operand(value: Instruction) -> Instruction:
        if value in twins:
            return twins[value]
        if copy_constants and value.opcode == "constant":
            twins[value] = comp.add(Instruction(value.name, "constant", [], value.shape, value.attrs, value.locs))
        else:                       # made before the group: a parameter
            if isinstance(value.shape, TupleShape):
                raise crossing_error(value)
            twins[value] = comp.add(Instruction(f"in.{value.name}", "parameter", [], value.shape,
                                                Attrs({"index": len(inputs)}), value.locs))
            inputs.append(value)
        return twins[value]

    for instr in group:
        operands = [operand(o) for o in instr.operands]
        twins[instr] = comp.add(Instruction(instr.name, instr.opcode, operands, instr.shape,
                                            attrs_of(instr), instr.locs))
    comp.root = comp.add(Instruction(f"{name}.out", "tuple", [twins[i] for i in outputs],
                                     TupleShape([i.shape for i in outputs])))
    result = Module(name)
    result.optimized_for = module.optimized_for
    for callee in callees(group):
        result.add_computation(callee)
    result.add_computation(comp, entry=True)
    for c in result.computations:
        for i in c.instructions:
            result.reserve_name(i.name)
    return result, inputs


def callees(group: Iterable[Instruction]) -> list[Computation]:
    """Computations the instructions call, callees before callers, each once."""
    order: list[Computation] = []
    seen: set[int] = set()

    def visit(comp: Computation):
        if id(comp) not in seen:
            seen.add(id(comp))
            for instr in comp.instructions:
                for callee in instr.called_computations():
                    visit(callee)
            order.append(comp)

    for instr in group:
        for callee in instr.called_computations():
            visit(callee)
    return order


__all__ = ["callees", "extract"]
