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

Every value derived from a reduction is consumed in its own row, so rows stay
independent (a backend may split them across threads). The root is the normalize
output, the last row-epilogue value, or the reduce itself.

Reductions are visited latest first, so a later reduction takes the producers it needs
(its prologue) before an earlier one chooses how far its normalize step may reach. With
that order a row softmax first becomes

    m = max(x)                                (a lone reduce: nothing to fuse into it)
    e = exp(x - m); s = sum(e); out = e / s   (input fusion, root = the divide)

Then row levels merge (`merge_row_levels`): a reduce (or an input fusion ending in row
values) whose only reader is an input fusion over the same rows -- same input dims,
same reduced dims -- joins it as a lower *level*. The fusion's kernel makes one pass
over the row per level, the levels below bound (kernels_reduce.py): a softmax is ONE
kernel that reads each row from memory once,

    pass 1: m = max(x);  pass 2: s = sum(exp(x - m));  pass 3: out = exp(x - m) / s

and so is a layer norm (pass 1: the sum; pass 2: the variance of x - mean; pass 3:
gamma * (x - mean) / sqrt(var + eps) + beta); passes 2 and 3 re-read the row from cache.
Reductions over different rows (a row sum, then the total of the row sums) stay
separate kernels.
"""
from __future__ import annotations

from ..fusion_utils import (FusionGraph, FusionPass, Group, can_fuse, fuse, fusion_kind, is_elementwise,
                            is_loop_fusible, pull_producers, single_output_chain)
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
        return merge_row_levels(module, comp) or changed


def merge_row_levels(module: Module, comp: Computation) -> bool:
    """Merge lone reduces and row-valued input fusions into the input fusion over the
    same rows that alone reads them (module docstring)."""
    changed = False
    merged = True
    while merged:
        merged = False
        graph = FusionGraph(comp)
        for consumer in reversed(list(comp.instructions)):
            producer = _lower_level(graph, consumer)
            if producer is not None:
                group = Group([consumer, producer])
                pull_producers(graph, group, _is_small_constant, start=[producer])   # its init value
                fuse(module, comp, group, "input")
                merged = changed = True
                break
    return changed


def _lower_level(graph: FusionGraph, consumer: Instruction) -> Instruction | None:
    """An operand of the input fusion `consumer` that may join it as a lower level."""
    if fusion_kind(consumer) != "input":
        return None
    space = row_space(consumer)
    if space is None:
        return None
    for operand in dict.fromkeys(consumer.operands):
        if (operand.opcode == "reduce" or fusion_kind(operand) == "input") and not operand.shape.is_tuple \
                and graph.distinct_users(operand) == [consumer] and operand is not graph.comp.root \
                and row_space(operand) == space and Rows(_reduces(operand)[0]).holds_rows(operand) \
                and not graph.creates_cycle({consumer, operand}):
            return operand
    return None


def _is_small_constant(instr: Instruction) -> bool:
    return instr.opcode == "constant" and can_fuse(instr)


def _reduces(instr: Instruction) -> list[Instruction]:
    if instr.opcode == "reduce":
        return [instr]
    return [i for i in instr.attrs["calls"].instructions if i.opcode == "reduce"]


def row_space(instr: Instruction) -> tuple | None:
    """(input dims, reduced dims) shared by every reduce of `instr`, or None."""
    spaces = {(r.operands[0].shape.dims, tuple(sorted(r.attrs["dimensions"]))) for r in _reduces(instr)}
    return spaces.pop() if len(spaces) == 1 else None


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
