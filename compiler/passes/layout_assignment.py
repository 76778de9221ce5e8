"""Layout assignment: fold transposes into dot_general and convolution dimension numbers.

A `dot_general` or `convolution` does not care in which order its operands' dimensions
come: its dimension numbers say which dimension plays which role. A `transpose` feeding
one of them (or consuming a convolution's result) is therefore only a relabelling, and
folding it into the dimension numbers saves a whole pass over memory.

Rewrites (a table keyed by opcode, `RULES`, run by one driver with a sweep cap):

- dot operand transpose: `dot(transpose(x, p), y)` reads `x` with its batching and
  contracting dims mapped through `p`. The dot's output is (batch dims in lhs_batching
  order, lhs free dims in operand order, rhs free dims in operand order), so the fold is
  exact when `p` keeps the relative order of the free dims. When it does not, the folded
  dot produces its free dims in another order and needs a transpose of its OUTPUT. The
  pass then compares bytes moved (a transpose reads and writes its result once): it keeps
  the operand transpose (no fold) unless the folded operand transposes that become dead
  are larger than the dot's output, in which case it folds and transposes the smaller
  output instead. A transpose that other instructions still read is never worth that.
- transpose of a dot: `transpose(dot(a, b), p)`, when the dot has no other user, becomes
  a dot whose batch pairs are reordered by `p`, and whose operands are swapped when `p`
  puts the rhs free dims before the lhs free dims (`(a b)^T = b^T a^T`); any other `p`
  would need a free-dim order a dot cannot produce, and is left alone.
- contracting order: the (lhs, rhs) contracting pairs are sorted by lhs dim, so equal dots
  look equal to CSE and a row-major lhs contracts its dims in memory order.
- convolution: `dim_labels` ('b01f_01io->b01f') already describe each operand's layout, so
  a transpose of the input or the kernel permutes that operand's label letters, and a
  transpose of the result (when the convolution has no other user) permutes the output
  labels. Window attributes are indexed by spatial dim number, not position: unchanged.

Transposes made dead by a fold are removed here (the test of a fold is that the transpose
disappears); other dead code is left to DCE.

Why no `Shape.layout` annotations (e.g. a "k-major" rhs for GEMM packing): values are
logical arrays everywhere (the interpreter ignores layouts) and no backend reads layouts
yet; a layout belongs to a value, so it would apply to every user of that value, and the
op table compares the shapes of fusion/call/while/conditional operands with their
callee's parameters layout included, so annotating a value that also feeds such an
instruction makes the module fail verification; an entry parameter's layout is the
calling convention. And the CPU GEMM packs its operand panels whatever their layout, so
"k-major" is a decision inside the kernel, not a property of the IR value. Until a
backend consumes physical layouts, this pass limits itself to transpose folding and
dimension-number canonicalization, which every backend benefits from.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .. import ops
from ..ir import Computation, Instruction, Module

# Sweeps over one computation before the driver gives up; each rewrite removes a
# transpose or moves one to a strictly smaller tensor, so a handful always suffices.
MAX_SWEEPS = 8


class LayoutAssignment:
    """Folds transposes into dot_general / convolution dimension numbers (see module doc)."""
    name = "layout-assignment"
    tags = ("layout",)

    def run(self, module: Module) -> bool:
        changed = False
        for comp in module.computations:
            changed |= _Rewriter(module, comp).run()
        return changed


# ----------------------------------------------------------------------------- the driver

class _Rewriter:
    """Applies `RULES` to one computation: sweeps in order until nothing fires (or the cap)."""

    def __init__(self, module: Module, comp: Computation):
        self.module = module
        self.comp = comp
        self._users: dict[Instruction, list[Instruction]] | None = None
        self._removed: set[Instruction] = set()   # taken out by this rewriter

    def run(self) -> bool:
        changed = False
        for _ in range(MAX_SWEEPS):
            if not self._sweep():
                break
            changed = True
        return changed

    def _sweep(self) -> bool:
        changed = False
        for instr in list(self.comp.instructions):
            for rule in RULES.get(instr.opcode, ()):
                if instr in self._removed:
                    break
                changed |= rule(self, instr)
        return changed

    # -- queries

    def users(self, instr: Instruction) -> list[Instruction]:
        if self._users is None:
            self._users = self.comp.users()
        return self._users.get(instr, [])

    def only_user(self, instr: Instruction, user: Instruction) -> bool:
        """`user` is the one instruction reading `instr` (once or more), and it is not the root."""
        users = self.users(instr)
        return instr is not self.comp.root and bool(users) and all(u is user for u in users)

    # -- edits (each invalidates the users table)

    def insert_before(self, anchor: Instruction, new: Instruction) -> Instruction:
        self.comp.instructions.insert(self.comp.instructions.index(anchor), new)
        self._users = None
        return new

    def replace(self, old: Instruction, new: Instruction) -> None:
        """Every use of `old` (and the root) now reads `new`; `old` leaves the computation."""
        self.comp.replace_all_uses(old, new)
        self._remove(old)

    def update(self, instr: Instruction, operands=None, attrs=None, shape=None, locs=None) -> None:
        """Change `instr` in place (type-checked by the op table); drop transposes it no longer reads."""
        operands = list(instr.operands if operands is None else operands)
        attrs = ops.normalize_attrs(instr.opcode, instr.attrs.replace(**(attrs or {})))
        shape = ops.infer_shape(instr.opcode, [o.shape for o in operands], attrs,
                                instr.shape if shape is None else shape)
        old = instr.operands
        instr.operands, instr.attrs, instr.shape = operands, attrs, shape
        if locs is not None:
            instr.locs = locs
        self._users = None
        for operand in old:
            self.drop_if_dead(operand)

    def drop_if_dead(self, instr: Instruction) -> None:
        """Remove a transpose nothing reads any more (one this pass folded away)."""
        if instr.opcode == "transpose" and instr is not self.comp.root and not self.users(instr) \
                and instr not in self._removed:
            self._remove(instr)

    def _remove(self, instr: Instruction) -> None:
        self.comp.remove(instr)
        self._removed.add(instr)
        self._users = None

    def new_instruction(self, like: Instruction, opcode: str, operands, attrs, shape,
                        locs=None) -> Instruction:
        """A type-checked instruction named after `like`, placed just before it."""
        attrs = ops.normalize_attrs(opcode, attrs)
        shape = ops.infer_shape(opcode, [o.shape for o in operands], attrs, shape)
        name = self.module.unique_name(like.name if opcode == like.opcode else opcode)
        new = Instruction(name, opcode, operands, shape, attrs, like.locs if locs is None else locs)
        return self.insert_before(like, new)


def _merged_locs(*instrs: Instruction) -> tuple:
    """The source locations of several instructions, in order, without repeats."""
    return tuple(dict.fromkeys(loc for instr in instrs for loc in instr.locs))


def _is_increasing(values) -> bool:
    return all(a < b for a, b in zip(values, values[1:]))


# ----------------------------------------------------------------------------- dot_general

@dataclass(frozen=True)
class DotDims:
    """A dot's dimension numbers as lists, with the operand ranks."""
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
        pairs = sorted(zip(self.lhs_contract, self.rhs_contract))
        return DotDims(self.lhs_batch, self.rhs_batch, tuple(l for l, _ in pairs),
                       tuple(r for _, r in pairs), self.lhs_rank, self.rhs_rank)


@dataclass
class _OperandFold:
    side: int
    transpose: Instruction
    keeps_order: bool                 # the free dims stay in order: no output transpose
    free_in_output_order: list[int]   # the source operand's free dims, as the output has them


def _operand_folds(dot: Instruction, dims: DotDims) -> list[_OperandFold]:
    folds = []
    for side, operand in enumerate(dot.operands):
        if operand.opcode != "transpose":
            continue
        perm = operand.attrs["permutation"]
        mapped = [perm[d] for d in dims.free(side)]
        folds.append(_OperandFold(side, operand, _is_increasing(mapped), mapped))
    return folds


def _output_permutation(dims: DotDims, folds: list[_OperandFold]) -> list[int]:
    """The transpose that takes the folded dot's output back to the original dot's order."""
    batch = len(dims.lhs_batch)
    perm = list(range(batch))
    offset = batch
    for side in (0, 1):
        fold = next((f for f in folds if f.side == side), None)
        free = fold.free_in_output_order if fold else list(range(len(dims.free(side))))
        ordered = sorted(free)
        perm += [offset + ordered.index(d) for d in free]
        offset += len(free)
    return perm


def _live_transpose_bytes(rw: _Rewriter, dot: Instruction, folded_sides: set[int]) -> int:
    """Bytes of the dot's operand transposes that stay alive when `folded_sides` are folded."""
    alive = 0
    for t in {id(o): o for o in dot.operands if o.opcode == "transpose"}.values():
        read_elsewhere = not rw.only_user(t, dot)
        unfolded = any(o is t and side not in folded_sides for side, o in enumerate(dot.operands))
        if read_elsewhere or unfolded:
            alive += t.shape.nbytes
    return alive


def fold_dot_operand_transposes(rw: _Rewriter, dot: Instruction) -> bool:
    dims = DotDims.of(dot)
    folds = _operand_folds(dot, dims)
    exact = [f for f in folds if f.keeps_order]
    # Folding the reordering ones too costs a transpose of the output: worth it only when
    # it moves fewer bytes than the operand transposes it leaves behind.
    everything = {f.side for f in folds}
    cost_exact = _live_transpose_bytes(rw, dot, {f.side for f in exact})
    cost_all = _live_transpose_bytes(rw, dot, everything) + dot.shape.nbytes
    chosen = folds if len(exact) < len(folds) and cost_all < cost_exact else exact
    if not chosen:
        return False
    for fold in chosen:
        dims = dims.map_side(fold.side, fold.transpose.attrs["permutation"])
    operands = list(dot.operands)
    for fold in chosen:
        operands[fold.side] = fold.transpose.operands[0]
    out_perm = _output_permutation(DotDims.of(dot), chosen)
    if out_perm == sorted(out_perm):
        rw.update(dot, operands, dims.attrs())
        return True
    folded = rw.new_instruction(dot, "dot_general", operands, dims.attrs(), None)
    restore = rw.new_instruction(dot, "transpose", [folded], {"permutation": tuple(out_perm)}, dot.shape)
    rw.replace(dot, restore)
    for fold in chosen:
        rw.drop_if_dead(fold.transpose)
    return True


def canonicalize_contracting_order(rw: _Rewriter, dot: Instruction) -> bool:
    dims = DotDims.of(dot)
    canonical = dims.canonical()
    if canonical == dims:
        return False
    rw.update(dot, attrs=canonical.attrs())
    return True


def _dot_dims_for_output_perm(dims: DotDims, perm: tuple[int, ...]) -> tuple[DotDims, bool] | None:
    """Dot dims producing `transpose(dot, perm)` directly, and whether to swap the operands."""
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


def fold_transpose_of_dot(rw: _Rewriter, transpose: Instruction) -> bool:
    dot = transpose.operands[0]
    if dot.opcode != "dot_general" or not rw.only_user(dot, transpose):
        return False
    plan = _dot_dims_for_output_perm(DotDims.of(dot), transpose.attrs["permutation"])
    if plan is None:
        return False
    dims, swap = plan
    rw.update(dot, dot.operands[::-1] if swap else None, dims.attrs(), transpose.shape,
              _merged_locs(dot, transpose))
    rw.replace(transpose, dot)
    return True


# ----------------------------------------------------------------------------- convolution

def _split_labels(labels: str) -> list[str]:
    """'b01f_01io->b01f' -> ['b01f', '01io', 'b01f'] (input, kernel, output)."""
    operands, output = labels.split("->")
    lhs, rhs = operands.split("_")
    return [lhs, rhs, output]


def _join_labels(parts: list[str]) -> str:
    return f"{parts[0]}_{parts[1]}->{parts[2]}"


def _labels_through(labels: str, perm: tuple[int, ...]) -> str:
    """The labels of `x` when `labels` describe `transpose(x, perm)` (dim i is x's perm[i])."""
    letters = [""] * len(perm)
    for i, p in enumerate(perm):
        letters[p] = labels[i]
    return "".join(letters)


def fold_conv_operand_transposes(rw: _Rewriter, conv: Instruction) -> bool:
    parts = _split_labels(conv.attrs["dim_labels"])
    operands = list(conv.operands)
    changed = False
    for side, operand in enumerate(conv.operands):
        if operand.opcode == "transpose":
            parts[side] = _labels_through(parts[side], operand.attrs["permutation"])
            operands[side] = operand.operands[0]
            changed = True
    if changed:
        rw.update(conv, operands, {"dim_labels": _join_labels(parts)})
    return changed


def fold_transpose_of_conv(rw: _Rewriter, transpose: Instruction) -> bool:
    conv = transpose.operands[0]
    if conv.opcode != "convolution" or not rw.only_user(conv, transpose):
        return False
    parts = _split_labels(conv.attrs["dim_labels"])
    parts[2] = "".join(parts[2][p] for p in transpose.attrs["permutation"])
    rw.update(conv, attrs={"dim_labels": _join_labels(parts)}, shape=transpose.shape,
              locs=_merged_locs(conv, transpose))
    rw.replace(transpose, conv)
    return True


# ----------------------------------------------------------------------------- the table

RULES: dict[str, tuple[Callable[[_Rewriter, Instruction], bool], ...]] = {
    "dot_general": (fold_dot_operand_transposes, canonicalize_contracting_order),
    "convolution": (fold_conv_operand_transposes,),
    "transpose": (fold_transpose_of_dot, fold_transpose_of_conv),
}
