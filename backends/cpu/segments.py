"""Cut a program at its collectives: native segments, collectives run between them.

    run = SegmentedProgram(module, compile_segment).run      # executable.compile uses it

A collective (`ops.COLLECTIVES`: all_reduce, all_gather, collective_broadcast) needs
every process at the same point; native code cannot wait for MPI. So the optimized,
scheduled entry is cut at each top-level collective:

    segment 0 (native) -> collective 0 (tessel.distributed, mpi4py) -> segment 1 -> ...

Each segment is a module of its own: its parameters are the values it reads that an
earlier step made (entry parameters, earlier segments' outputs, collective results),
its root a tuple of the values a later step reads (collective operands included). The
instructions keep their schedule order, so side effects keep theirs; fusion never
crosses a collective (`fusion_utils.NEVER_FUSED`), so no cut splits a fusion.

Collectives nested in loops, branches or calls stay in the native code, where they are
single-process copies (kernels_misc.py); with more than one process that is an error
here, at compile time, naming the instruction.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ...compiler import dtypes
from ...compiler.extract import bind_arguments, extract, reads_after
from ...compiler.ir import Instruction, Module
from ...compiler.ops import COLLECTIVES


def top_level_collectives(module: Module) -> list[Instruction]:
    return [i for i in module.entry.instructions if i.opcode in COLLECTIVES]


def nested_collectives(module: Module) -> list[Instruction]:
    return [i for comp in module.reachable_computations() if comp is not module.entry
            for i in comp.instructions if i.opcode in COLLECTIVES]


@dataclass
class Segment:
    """One native step: reads `inputs` (original instructions), writes `outputs`."""
    module: Module
    inputs: list[Instruction]
    outputs: list[Instruction]
    run: Callable | None = None


def split(module: Module) -> list[Segment | Instruction]:
    """The entry as steps in order: Segments and (top-level) collective instructions."""
    entry = module.entry
    groups: list[list[Instruction] | Instruction] = [[]]
    home: dict[Instruction, list] = {}     # instruction -> the group that computes it
    for instr in entry.instructions:
        if instr.opcode in COLLECTIVES:
            groups += [instr, []]
        elif instr.opcode != "parameter" and instr is not entry.root:
            # an element of a tuple (a multi-output fusion's) is taken where the tuple is
            # made: only arrays cross a cut
            group = home.get(instr.operands[0], groups[-1]) if instr.opcode == "get_tuple_element" \
                else groups[-1]
            group.append(instr)
            home[instr] = group
    needed_after = reads_after([[g] if isinstance(g, Instruction) else g for g in groups], results_of(entry))
    steps = []
    for k, group in enumerate(groups):
        if isinstance(group, Instruction):
            steps.append(group)
        elif group:
            n = sum(isinstance(s, Segment) for s in steps)
            steps.append(_segment(module, f"{module.name}.segment{n}", group, needed_after[k]))
    return steps


def results_of(entry) -> list[Instruction]:
    """The values the entry returns (the elements of a root tuple, else the root)."""
    root = entry.root
    return list(root.operands) if root.opcode == "tuple" else [root]


def _segment(module: Module, name: str, group: list[Instruction], needed_after: set[Instruction]) -> Segment:
    outputs = [i for i in group if i in needed_after]
    seg, inputs = extract(module, name, group, outputs, _tuple_across_collective)
    return Segment(seg, inputs, outputs)


def _tuple_across_collective(value: Instruction) -> Exception:
    return NotImplementedError(f"CPU backend: the tuple {value.name} (from {value.loc_text}) is read across "
                               f"a collective; only arrays flow between the native segments")


# ----------------------------------------------------------------------------- running

class SegmentedProgram:
    """Native segments compiled by `compile_segment(module) -> run(arrays) -> arrays`,
    collectives run by this process's `tessel.distributed` collectives between them."""

    def __init__(self, module: Module, compile_segment: Callable):
        from ...distributed import runtime
        self.module = module
        self.collectives = runtime.collectives
        nested = nested_collectives(module)
        if nested and runtime.collectives().process_count > 1:
            i = nested[0]
            raise NotImplementedError(
                f"CPU backend: {i.opcode} {i.name} (from {i.loc_text}) sits inside a loop, branch or "
                f"call; across processes the CPU backend runs collectives only at the top level of "
                f"the jitted function (move it out, or use backend='interpreter')")
        self.steps = split(module)
        for step in self.steps:
            if isinstance(step, Segment):
                step.run = compile_segment(step.module)
        self.results = results_of(module.entry)

    def run(self, arrays) -> list[np.ndarray]:
        env = bind_arguments(self.module, arrays)
        collectives = self.collectives()
        for step in self.steps:
            if isinstance(step, Segment):
                env.update(zip(step.outputs, step.run([env[i] for i in step.inputs])))
            else:
                env[step] = _collective(collectives, step, env[step.operands[0]])
        return [np.asarray(env[r]) for r in self.results]


def _collective(collectives, instr: Instruction, x: np.ndarray) -> np.ndarray:
    try:
        if instr.opcode == "all_reduce":
            value = collectives.all_reduce(x, instr.attrs["reduction"])
        elif instr.opcode == "all_gather":
            value = collectives.all_gather(x, instr.attrs["participants"])
        else:
            value = collectives.broadcast(x, instr.attrs["root"])
    except Exception as e:
        e.add_note(f"in {instr.opcode} {instr.name} (from {instr.loc_text})")
        raise
    return dtypes.canonicalize(np.asarray(value), instr.shape.dtype)
