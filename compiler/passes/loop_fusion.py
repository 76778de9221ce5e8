"""Loop fusion: chains of elementwise and index-only ops become one loop nest.

Each instruction that a loop nest can compute (elementwise ops, broadcast_in_dim,
reshape, transpose, slice, reverse, concatenate, pad, iota, small constants, and loop
fusions) is a consumer, latest first; it pulls in every producer of that kind it can,
under the cost rule of `fusion_utils` (a producer with other users is copied only when
cheap, an expensive one never; an expensive value that a broadcast would repeat stays
out) and without creating a cycle. The group becomes one `fusion` of kind `loop` whose
root is the consumer, or, when the consumer is a loop fusion already, that fusion grows.

Producers the fusions of other kinds left outside (operands of an output or input
fusion) are fused here among themselves; this pass never merges into those kinds.
"""
from __future__ import annotations

from ..fusion_utils import FusionGraph, FusionPass, Group, fuse, is_loop_fusible, pull_producers
from ..ir import Computation, Module


class LoopFusion(FusionPass):
    name = "loop-fusion"

    def fuse_computation(self, module: Module, comp: Computation) -> bool:
        graph = FusionGraph(comp)
        changed = False
        for consumer in reversed(list(comp.instructions)):
            if consumer not in graph or graph.is_dead(consumer) or not _starts_loop(consumer):
                continue
            group = Group([consumer])
            pull_producers(graph, group, is_loop_fusible)
            if len(group) > 1:
                fuse(module, comp, group, "loop")
                graph.refresh()
                changed = True
        return changed


def _starts_loop(instr) -> bool:
    # A lone constant or iota is not a loop of its own; it joins its consumers.
    return is_loop_fusible(instr) and instr.opcode not in ("constant", "iota")
