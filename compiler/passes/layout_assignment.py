"""Layout assignment: fold transposes into dot_general and convolution dimension numbers.

A `dot_general` or `convolution` does not care in which order its operands' dimensions
come: its dimension numbers say which dimension plays which role. A `transpose` feeding
one of them (or consuming a convolution's result) is therefore only a relabelling, and
folding it into the dimension numbers saves a whole pass over memory.

Rewrites (the table `RULES`, run by the driver of compiler/rewrite.py; the dimension
arithmetic is compiler/dot_dims.py's):

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

Transposes made dead by a fold are removed with it (the test of a fold is that the
transpose disappears); other dead code is left to DCE. A dot or convolution that a fold
only changes keeps its name.

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

from .. import dot_dims
from ..dot_dims import DotDims
from ..ir import Instruction
from ..rewrite import Pat, RewritePass, Rule, RuleTable, merged_locs


# ----------------------------------------------------------------------------- dot_general

def _live_transpose_bytes(ctx, dot: Instruction, folded_sides: set[int]) -> int:
    """Bytes of the dot's operand transposes that stay alive when `folded_sides` are folded."""
    alive = 0
    for t in {id(o): o for o in dot.operands if o.opcode == "transpose"}.values():
        read_elsewhere = ctx.only_user(t) is not dot
        unfolded = any(o is t and side not in folded_sides for side, o in enumerate(dot.operands))
        if read_elsewhere or unfolded:
            alive += t.shape.nbytes
    return alive


def fold_dot_operand_transposes(ctx, dot):
    folds = dot_dims.operand_transposes(dot)
    exact = [f for f in folds if f.keeps_order]
    # Folding the reordering ones too costs a transpose of the output: worth it only when
    # it moves fewer bytes than the operand transposes it leaves behind.
    cost_exact = _live_transpose_bytes(ctx, dot, {f.side for f in exact})
    cost_all = _live_transpose_bytes(ctx, dot, {f.side for f in folds}) + dot.shape.nbytes
    chosen = folds if len(exact) < len(folds) and cost_all < cost_exact else exact
    if not chosen:
        return None
    operands, dims = dot_dims.fold(dot, chosen)
    out_perm = dot_dims.output_permutation(dot, chosen)
    if out_perm == tuple(sorted(out_perm)):
        return ctx.rebuild(dot, operands=operands, attrs=dims.attrs())
    folded = ctx.emit("dot_general", operands, dims.attrs(), name=dot.name)
    return ctx.emit("transpose", [folded], {"permutation": out_perm}, dot.shape)


def canonicalize_contracting_order(ctx, dot):
    dims = DotDims.of(dot)
    canonical = dims.canonical()
    return None if canonical == dims else ctx.rebuild(dot, attrs=canonical.attrs())


def fold_transpose_of_dot(ctx, transpose, dot):
    if ctx.only_user(dot) is not transpose:
        return None
    plan = dot_dims.dims_for_output_permutation(DotDims.of(dot), transpose.attrs["permutation"])
    if plan is None:
        return None
    dims, swap = plan
    return ctx.rebuild(dot, operands=dot.operands[::-1] if swap else None, attrs=dims.attrs(),
                       shape=transpose.shape, locs=merged_locs([dot, transpose]))


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


def fold_conv_operand_transposes(ctx, conv):
    parts = _split_labels(conv.attrs["dim_labels"])
    operands = list(conv.operands)
    changed = False
    for side, operand in enumerate(conv.operands):
        if operand.opcode == "transpose":
            parts[side] = _labels_through(parts[side], operand.attrs["permutation"])
            operands[side] = operand.operands[0]
            changed = True
    if not changed:
        return None
    return ctx.rebuild(conv, operands=operands, attrs={"dim_labels": _join_labels(parts)})


def fold_transpose_of_conv(ctx, transpose, conv):
    if ctx.only_user(conv) is not transpose:
        return None
    parts = _split_labels(conv.attrs["dim_labels"])
    parts[2] = "".join(parts[2][p] for p in transpose.attrs["permutation"])
    return ctx.rebuild(conv, attrs={"dim_labels": _join_labels(parts)}, shape=transpose.shape,
                       locs=merged_locs([conv, transpose]))


# ----------------------------------------------------------------------------- the table

RULES = RuleTable([
    Rule("fold_dot_operand_transposes", Pat("dot_general", name="dot"), fold_dot_operand_transposes),
    Rule("canonicalize_contracting_order", Pat("dot_general", name="dot"), canonicalize_contracting_order),
    Rule("fold_conv_operand_transposes", Pat("convolution", name="conv"), fold_conv_operand_transposes),
    Rule("fold_transpose_of_dot", Pat("transpose", Pat("dot_general", name="dot"), name="transpose"),
         fold_transpose_of_dot),
    Rule("fold_transpose_of_conv", Pat("transpose", Pat("convolution", name="conv"), name="transpose"),
         fold_transpose_of_conv),
])


class LayoutAssignment(RewritePass):
    """Folds transposes into dot_general / convolution dimension numbers (see module doc)."""
    name = "layout-assignment"
    tags = ("layout",)
    table = RULES
