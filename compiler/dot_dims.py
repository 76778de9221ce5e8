"""A dot_general's dimension numbers, and what a transpose next to the dot does to them.

The result of a dot_general is (batch dims in lhs_batching order, lhs free dims in
operand order, rhs free dims in operand order), where an operand's free dims are those
neither batch nor contracting.

- A transpose feeding an operand only relabels its dims: the dot may read the
  transpose's input instead, with that operand's batch and contracting dims mapped
  through the permutation (dim d of `transpose(x, p)` is dim p[d] of x). When `p` keeps
  the free dims in order the folded dot computes the same result (`keeps_order`);
  otherwise it produces them in another order, and `output_permutation` is the
  transpose that restores the original order.
- A transpose of the result is itself a dot when it only reorders the batch dims and
  perhaps puts the rhs free dims before the lhs ones, by swapping the operands
  (`(a b)^T = b^T a^T`): `dims_for_output_permutation`.

The algebraic simplifier folds the transposes that keep the order; layout assignment
also weighs the others, and folds transposes of results.
"""
from __future__ import annotations

from dataclasses import dataclass

from .ir import Instruction


@dataclass(frozen=True)
class DotDims:
    """A dot's dimension numbers, with the operand ranks."""
    lhs_batch: tuple[int, ...]
    rhs_batch: tuple[int, ...]
    lhs_contract: tuple[int, ...]
    rhs_contract: tuple[int, ...]
    lhs_rank: int
    rhs_rank: int

    @classmethod
    def of(cls, dot: Instruction) -> "DotDims":
        a = dot.attrs
        return cls(tuple(a["lhs_batching_dims"]), tuple(a["rhs_batching_dims"]),
                   tuple(a["lhs_contracting_dims"]), tuple(a["rhs_contracting_dims"]),
                   dot.operands[0].shape.rank, dot.operands[1].shape.rank)

    def attrs(self) -> dict:
        return {"lhs_batching_dims": self.lhs_batch, "rhs_batching_dims": self.rhs_batch,
                "lhs_contracting_dims": self.lhs_contract, "rhs_contracting_dims": self.rhs_contract}

    def free(self, side: int) -> list[int]:
        """The free (neither batch nor contracting) dims of operand `side`, in operand order."""
        rank, batch, contract = ((self.lhs_rank, self.lhs_batch, self.lhs_contract) if side == 0
                                 else (self.rhs_rank, self.rhs_batch, self.rhs_contract))
        return [d for d in range(rank) if d not in batch and d not in contract]

    def map_side(self, side: int, perm: tuple[int, ...]) -> "DotDims":
        """Read operand `side` through `transpose(x, perm)` folded away: dim d becomes perm[d]."""
        if side == 0:
            return DotDims(tuple(perm[d] for d in self.lhs_batch), self.rhs_batch,
                           tuple(perm[d] for d in self.lhs_contract), self.rhs_contract,
                           len(perm), self.rhs_rank)
        return DotDims(self.lhs_batch, tuple(perm[d] for d in self.rhs_batch),
                       self.lhs_contract, tuple(perm[d] for d in self.rhs_contract),
                       self.lhs_rank, len(perm))

    def swapped(self) -> "DotDims":
        return DotDims(self.rhs_batch, self.lhs_batch, self.rhs_contract, self.lhs_contract,
                       self.rhs_rank, self.lhs_rank)

    def with_batch_order(self, order: list[int]) -> "DotDims":
        return DotDims(tuple(self.lhs_batch[i] for i in order), tuple(self.rhs_batch[i] for i in order),
                       self.lhs_contract, self.rhs_contract, self.lhs_rank, self.rhs_rank)

    def canonical(self) -> "DotDims":
        """The (lhs, rhs) contracting pairs sorted by lhs dim."""
        pairs = sorted(zip(self.lhs_contract, self.rhs_contract))
        return DotDims(self.lhs_batch, self.rhs_batch, tuple(l for l, _ in pairs),
                       tuple(r for _, r in pairs), self.lhs_rank, self.rhs_rank)


def _is_increasing(values) -> bool:
    return all(a < b for a, b in zip(values, values[1:]))


# ----------------------------------------------------------------------------- transposed operands

@dataclass(frozen=True)
class OperandTranspose:
    """A transpose feeding operand `side` of a dot."""
    side: int
    transpose: Instruction
    free_in_output_order: tuple[int, ...]   # the transpose input's free dims, as the dot's result has them

    @property
    def keeps_order(self) -> bool:
        """Folding it leaves the result's dims in place: no output transpose needed."""
        return _is_increasing(self.free_in_output_order)


def operand_transposes(dot: Instruction) -> list[OperandTranspose]:
    """The dot's operands that are transposes, lhs first."""
    dims = DotDims.of(dot)
    found = []
    for side, operand in enumerate(dot.operands):
        if operand.opcode == "transpose":
            perm = operand.attrs["permutation"]
            found.append(OperandTranspose(side, operand, tuple(perm[d] for d in dims.free(side))))
    return found


def fold(dot: Instruction, folds: list[OperandTranspose]) -> tuple[list[Instruction], DotDims]:
    """The operands and dimension numbers of `dot` reading through the transposes of `folds`.
    Its result is the dot's, up to `output_permutation(dot, folds)`."""
    operands, dims = list(dot.operands), DotDims.of(dot)
    for f in folds:
        operands[f.side] = f.transpose.operands[0]
        dims = dims.map_side(f.side, f.transpose.attrs["permutation"])
    return operands, dims


def output_permutation(dot: Instruction, folds: list[OperandTranspose]) -> tuple[int, ...]:
    """The transpose that takes the folded dot's result back to the dot's dim order."""
    dims = DotDims.of(dot)
    batch = len(dims.lhs_batch)
    perm = list(range(batch))
    offset = batch
    for side in (0, 1):
        f = next((f for f in folds if f.side == side), None)
        free = list(f.free_in_output_order) if f else list(range(len(dims.free(side))))
        ordered = sorted(free)
        perm += [offset + ordered.index(d) for d in free]
        offset += len(free)
    return tuple(perm)


# ----------------------------------------------------------------------------- transposed results

def dims_for_output_permutation(dims: DotDims, perm: tuple[int, ...]) -> tuple[DotDims, bool] | None:
    """Dot dims producing `transpose(dot, perm)` directly, and whether to swap the operands;
    None when no dot produces that order."""
    batch, lhs_free, rhs_free = len(dims.lhs_batch), len(dims.free(0)), len(dims.free(1))
    head, tail = list(perm[:batch]), list(perm[batch:])
    if sorted(head) != list(range(batch)):
        return None
    reordered = dims.with_batch_order(head)
    lhs_block = list(range(batch, batch + lhs_free))
    rhs_block = list(range(batch + lhs_free, batch + lhs_free + rhs_free))
    if tail == lhs_block + rhs_block:
        return reordered, False
    if tail == rhs_block + lhs_block:
        return reordered.swapped(), True
    return None
