"""Cut a group of entry instructions out into a module of its own.

    module, inputs = extract(module, "m.part0", group, outputs, crossing_error=...)

Used where a program runs as several modules with something in between: the CPU
backend's native segments around collectives (backends/cpu/segments.py) and the
per-device parts of a placed program (runtime/placed.py). The new entry computation
has a parameter for every value the group reads that it does not compute (`inputs`, in
first-use order), the group's instructions in their order (same names, shapes,
attributes and source locations), and a root tuple of `outputs`. Computations the group
calls come along. Only arrays can cross: `crossing_error(value)` is raised for a tuple.

Both cut the same way around `extract`: `reads_after` says which of a group's values a
later group or the result reads (the group's outputs), and at run time `bind_arguments`
starts the environment of values the groups read and write.
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


def reads_after(groups: list[list[Instruction]], results: Iterable[Instruction],
                read: Callable[[Instruction], Instruction] = lambda value: value) -> list[set[Instruction]]:
    """For each group, the values some later group or the program's `results` read.
    `read(operand)` is the value an operand stands for (a recv: what its send sent)."""
    later = {read(r) for r in results}
    after = []
    for group in reversed(groups):
        after.append(set(later))
        for instr in group:
            later.update(read(o) for o in instr.operands)
    return after[::-1]


def bind_arguments(module: Module, arrays) -> dict[Instruction, object]:
    """The entry's parameters bound to `arrays`: where running the cut groups starts."""
    parameters = module.entry.parameters
    if len(arrays) != len(parameters):
        raise TypeError(f"{module.name}: expected {len(parameters)} arguments, given {len(arrays)}")
    return dict(zip(parameters, arrays))


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


__all__ = ["bind_arguments", "callees", "extract", "reads_after"]
