"""Multi-output fusion: siblings that read the same array share one pass over it.

Two instructions are siblings when both read an operand X in full (X has as many
elements as their iteration space) and neither depends on the other. They merge into
one fusion whose root is a tuple of both results; their users read them through
get_tuple_element. Candidates are loop and input fusions, plain reduces and plain
elementwise ops; output fusions (GEMM kernels) never merge.

Iteration spaces must agree: the same dims, and when both reduce, the same reduced
dims (e.g. sum(x) and sum(x * x) over the same rows, or a loop fusion over x next to a
row reduction of x). The merged kernel is an input fusion if either side reduces, a
loop fusion otherwise; the one-reduction-level rule of input fusions still holds
because siblings are independent.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..fusion_utils import (FusionGraph, FusionPass, Group, can_fuse, fuse, fusion_kind, is_elementwise,
                            pull_producers)
from ..ir import Computation, Instruction, Module


class MultiOutputFusion(FusionPass):
    name = "multi-output-fusion"

    def fuse_computation(self, module: Module, comp: Computation) -> bool:
        """Merge sibling pairs until none is left. A merge can make new siblings (the merged
        fusion reads the operands of both), so the search restarts after each; every merge
        removes a kernel, which bounds the loop."""
        graph = FusionGraph(comp)
        changed = False
        while (pair := _find_siblings(graph)) is not None:
            a, b = pair
            # `reduced` is () for a reduce over no dims: still a reduce, so an input fusion.
            reduces = iteration_space(a).reduced is not None or iteration_space(b).reduced is not None
            kind = "input" if reduces else "loop"
            group = Group(pair)
            pull_producers(graph, group, _is_small_constant)   # e.g. the init values of reduces
            fuse(module, comp, group, kind)
            graph.refresh()
            changed = True
        return changed


@dataclass(frozen=True)
class Space:
    """What a kernel iterates over: dims, and the reduced dims if it reduces."""
    dims: tuple[int, ...]
    reduced: tuple[int, ...] | None = None

    def agrees(self, other: "Space") -> bool:
        return self.dims == other.dims and (self.reduced is None or other.reduced is None
                                            or self.reduced == other.reduced)


def iteration_space(instr: Instruction) -> Space | None:
    kind = fusion_kind(instr)
    if instr.opcode == "reduce" and not instr.shape.is_tuple:
        return Space(instr.operands[0].shape.dims, tuple(sorted(instr.attrs["dimensions"])))
    if kind == "input":
        spaces = {iteration_space(i) for i in instr.attrs["calls"].instructions if i.opcode == "reduce"}
        return spaces.pop() if len(spaces) == 1 else None
    if kind == "loop":
        return Space(instr.shape.leaves()[0].dims)
    if kind is None and can_fuse(instr) and is_elementwise(instr):
        return Space(instr.shape.dims)
    return None


def _find_siblings(graph: FusionGraph) -> tuple[Instruction, Instruction] | None:
    for shared in graph.comp.instructions:
        pair = _mergeable_pair(graph, shared)
        if pair is not None:
            return pair
    return None


def _mergeable_pair(graph: FusionGraph, shared: Instruction) -> tuple[Instruction, Instruction] | None:
    readers = [u for u in graph.distinct_users(shared) if not graph.is_dead(u) and _reads_in_full(u, shared)]
    for i, a in enumerate(readers):
        for b in readers[i + 1:]:
            if iteration_space(a).agrees(iteration_space(b)) and _independent(graph, a, b):
                return a, b
    return None


def _reads_in_full(user: Instruction, operand: Instruction) -> bool:
    space = iteration_space(user)
    if space is None or operand.shape.is_tuple or operand.shape.size != math.prod(space.dims):
        return False
    if user.opcode == "reduce":     # the input, not the init value
        return operand in user.operands[:len(user.operands) // 2]
    return True


def _is_small_constant(instr: Instruction) -> bool:
    return instr.opcode == "constant" and can_fuse(instr)


def _independent(graph: FusionGraph, a: Instruction, b: Instruction) -> bool:
    first, second = sorted((a, b), key=graph.position.get)
    return not graph.reaches(first, second)
