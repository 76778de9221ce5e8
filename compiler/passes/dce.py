"""Dead-code elimination: instructions and computations nothing needs.

An instruction is live when the root of its computation uses it (directly or through
other instructions), or when it has side effects (or calls a computation that has
them) -- those run for their effect, and their operands with them. Parameters always
stay: they are the computation's signature, which callers and fusions rely on.
After that, computations no longer reachable from the entry are removed.
"""
from __future__ import annotations

from ..ir import Computation, Instruction, Module
from ..rewrite import has_side_effects


def live_instructions(comp: Computation) -> set[Instruction]:
    roots = [i for i in comp.instructions if i.opcode == "parameter" or has_side_effects(i)]
    if comp.root is not None:
        roots.append(comp.root)
    live: set[Instruction] = set()
    stack = roots
    while stack:
        instr = stack.pop()
        if instr not in live:
            live.add(instr)
            stack.extend(instr.operands)
    return live


def remove_dead_instructions(comp: Computation) -> bool:
    live = live_instructions(comp)
    kept = [i for i in comp.instructions if i in live]
    if len(kept) == len(comp.instructions):
        return False
    comp.instructions = kept
    return True


def remove_dead_computations(module: Module) -> bool:
    reachable = {id(c) for c in module.reachable_computations()}
    kept = [c for c in module.computations if id(c) in reachable]
    if len(kept) == len(module.computations):
        return False
    module.computations = kept
    return True


class DCE:
    name = "dce"

    def run(self, module: Module) -> bool:
        changed = False
        for comp in module.computations:
            changed |= remove_dead_instructions(comp)
        return remove_dead_computations(module) or changed
