"""Reduction fusion: producers and the "normalize" step fuse around a `reduce`.

The kernel an input fusion describes (what the CPU and systolic backends emit for it):

    for each row (the reduce input's kept dims):
        1. one loop over the row's reduced dims: compute the prologue (elementwise and
           index-only producers of the reduce's inputs) and accumulate the reduction;
        2. row epilogue: elementwise ops and size-1 reshapes on the row's results
           (mean = sum / n; sqrt(var + eps)), computed once per row;
        3. normalize (optional): a second loop over the same row that broadcasts the row
           values back (broadcast_in_dim onto the kept dims) and combines them elementwise
           with prologue values and other operands; its result is the fusion's output.

One reduction level per fusion: no reduce reads another reduce of the same fusion, and
every value derived from the reduction is consumed in its own row, so rows stay
independent (a backend may split them across threads). The root is the normalize
output, the last row-epilogue value, or the reduce itself.

Reductions are visited latest first, so a later reduction takes the producers it needs
(its prologue) before an earlier one chooses how far its normalize step may reach. With
that order a row softmax becomes two kernels:

    kernel 1: m = max(x)                                (a lone reduce stays unfused)
    kernel 2: e = exp(x - m); s = sum(e); out = e / s   (input fusion, root = the divide)

and a layer norm (mean, then var = mean((x - mean)^2)) two as well:

    kernel 1: s = sum(x)
    kernel 2: d = x - s / n; v = sum(d * d) / n; out = gamma * d / sqrt(v + eps) + beta

Kernel 2 reads x and writes the output once: the row is re-read from cache, not memory.
"""
from __future__ import annotations

from ..fusion_utils import (FusionGraph, FusionPass, Group, can_fuse, fuse, is_elementwise, is_loop_fusible,
                            pull_producers, single_output_chain)
from ..ir import Computation, Instruction, Module


class ReductionFusion(FusionPass):
    name = "reduction-fusion"

    def fuse_computation(self, module: Module, comp: Computation) -> bool:
        graph = FusionGraph(comp)
        changed = False
        for reduce in reversed([i for i in comp.instructions if i.opcode == "reduce"]):
            if graph.is_dead(reduce):
                continue
            group = Group([reduce])
            if not reduce.shape.is_tuple:
                group.moved |= normalize_step(graph, reduce, Rows(reduce))
            pull_producers(graph, group, is_loop_fusible)
            if any(m is not reduce and m.opcode != "constant" for m in group.members):
                fuse(module, comp, group, "input")
                graph.refresh()
                changed = True
        return changed


class Rows:
    """The rows of a reduction: its input's kept dims, size-1 dims aside."""

    def __init__(self, reduce: Instruction):
        self.full_dims = reduce.operands[0].shape.dims
        reduced = set(reduce.attrs["dimensions"])
        self.kept = [d for d, size in enumerate(self.full_dims) if d not in reduced and size != 1]
        self.sizes = [self.full_dims[d] for d in self.kept]

    def holds_rows(self, instr: Instruction) -> bool:
        return not instr.shape.is_tuple and [d for d in instr.shape.dims if d != 1] == self.sizes

    def broadcasts_back(self, instr: Instruction) -> bool:
        """A broadcast_in_dim of row values over the full input, each row onto itself."""
        if instr.opcode != "broadcast_in_dim" or instr.shape.dims != self.full_dims:
            return False
        operand_dims = instr.operands[0].shape.dims
        mapped = [t for d, t in zip(operand_dims, instr.attrs["broadcast_dimensions"]) if d != 1]
        return mapped == self.kept

    def is_full(self, instr: Instruction) -> bool:
        return not instr.shape.is_tuple and instr.shape.dims == self.full_dims


def normalize_step(graph: FusionGraph, reduce: Instruction, rows: Rows) -> set[Instruction]:
    """The reduce and the longest row-epilogue/normalize chain after it with one output:
    row-space ops, a broadcast back over the rows, then full-space elementwise ops."""
    holds_rows = {reduce: True}       # chain member -> whether it holds row values (else full rows)

    def admit(instr: Instruction) -> bool:
        sources = [holds_rows[o] for o in instr.operands if o in holds_rows]
        if not can_fuse(instr) or not sources or len(set(sources)) > 1:
            return False
        space = _epilogue_space(instr, sources[0], rows)
        if space is not None:
            holds_rows[instr] = space
        return space is not None

    return single_output_chain(graph, reduce, admit)


def _epilogue_space(user: Instruction, from_rows: bool, rows: Rows) -> bool | None:
    """True: `user` computes row values; False: full-row values; None: not in the epilogue."""
    if from_rows:
        if (is_elementwise(user) or user.opcode == "reshape") and rows.holds_rows(user):
            return True
        return False if rows.broadcasts_back(user) else None
    return False if is_elementwise(user) and rows.is_full(user) else None
