"""Row lookups as one-hot matmuls: the gather of table rows by integer indices (an
embedding lookup, `table[tokens]`) and its gradient, the scatter-add of rows back into
the table, become a one-hot matrix and a dot_general.

    gather(table f32[V, D], idx s32[..., 1])      -> dot(one_hot(clamp(idx, 0, V-1)), table)
    scatter(init f32[V, D], idx, upd f32[..., D]) -> init + dot(one_hot(idx)^T, upd)    (add)

one_hot(i)[..., v] = (i == v), in the table's dtype. gather clamps a start index so
the row fits (hence the clamp); scatter skips out-of-bounds indices, whose one-hot rows
are all zero. Repeated indices add up in the scatter, as the dot sums them.

Why: a machine with a matrix unit and no data-dependent addressing (the systolic
machine's DMA addresses are static) computes lookups as matmuls, as TPUs do for small
vocabularies; the integer one-hot is computed wherever integer ops run (the CPU, under
soft placement) and only the matmul needs the array. The dot multiplies each row by
exactly one 1 and adds zeros, so it is the lookup except where a table entry is inf or
NaN (0 * inf is NaN) and within the matrix unit's operand rounding (bf16 on the
systolic machine). It moves V times more multiply work than a copy: meant for tables
of a few thousand rows at most, so only tables up to `max_rows` rows are rewritten.

Matched forms (what tessel's indexing and its VJP emit): a rank-2 table, one index per
lookup (index_vector_dim the last dim of size 1, or implicit), whole rows
(slice_sizes (1, D), collapsed dim 0, the row dims last in the result); the scatter
with the add computation and the matching window dims.
"""
from __future__ import annotations

from ..ir import Instruction, Shape
from ..rewrite import Pat, RewriteContext, RewritePass, Rule, RuleTable

MAX_TABLE_ROWS = 4096


def _lookup_indices(ctx: RewriteContext, idx: Instruction, ivd: int) -> Instruction:
    """The indices without their index-vector dim: [...]."""
    if ivd == idx.shape.rank:
        return idx
    return ctx.emit("reshape", [idx], shape=Shape(idx.shape.dtype, idx.shape.dims[:-1]))


def _one_hot(ctx: RewriteContext, idx: Instruction, rows: int, dtype) -> Instruction:
    """[..., rows] with 1 where the last index equals idx."""
    dims = idx.shape.dims + (rows,)
    classes = ctx.emit("iota", [], {"iota_dimension": len(dims) - 1}, shape=Shape(idx.shape.dtype, dims))
    spread = ctx.emit("broadcast_in_dim", [idx], {"broadcast_dimensions": tuple(range(idx.shape.rank))},
                      shape=Shape(idx.shape.dtype, dims))
    hits = ctx.emit("compare", [spread, classes], {"direction": "EQ"})
    return ctx.emit("convert", [hits], shape=Shape(dtype, dims))


def _one_index_per_lookup(idx: Instruction, ivd: int) -> bool:
    return ivd == idx.shape.rank or (ivd == idx.shape.rank - 1 and idx.shape.dims[-1] == 1)


def is_row_gather(g: Instruction, max_rows: int) -> bool:
    table, idx = g.operands
    a = g.attrs
    return (table.shape.rank == 2 and table.shape.dims[0] <= max_rows
            and tuple(a["collapsed_slice_dims"]) == (0,) and tuple(a["start_index_map"]) == (0,)
            and tuple(a["slice_sizes"]) == (1, table.shape.dims[1])
            and tuple(a["offset_dims"]) == (g.shape.rank - 1,)
            and _one_index_per_lookup(idx, a["index_vector_dim"]))


def is_row_scatter_add(s: Instruction, max_rows: int) -> bool:
    table, idx, updates = s.operands
    a, comp = s.attrs, s.attrs["to_apply"]
    adds = (comp.root is not None and comp.root.opcode == "add" and len(comp.parameters) == 2
            and set(comp.root.operands) == set(comp.parameters))
    return (adds and table.shape.rank == 2 and table.shape.dims[0] <= max_rows
            and tuple(a["inserted_window_dims"]) == (0,) and tuple(a["scatter_dims_to_operand_dims"]) == (0,)
            and tuple(a["update_window_dims"]) == (updates.shape.rank - 1,)
            and updates.shape.dims[-1] == table.shape.dims[1]
            and _one_index_per_lookup(idx, a["index_vector_dim"]))


def gather_rows(ctx: RewriteContext, g: Instruction) -> Instruction:
    table, idx = g.operands
    rows = table.shape.dims[0]
    idx = _lookup_indices(ctx, idx, g.attrs["index_vector_dim"])
    low, high = ctx.splat(0, idx.shape), ctx.splat(rows - 1, idx.shape)
    idx = ctx.emit("clamp", [low, idx, high])
    one_hot = _one_hot(ctx, idx, rows, table.shape.dtype)
    return ctx.emit("dot_general", [one_hot, table], {"lhs_contracting_dims": (idx.shape.rank,),
                                                      "rhs_contracting_dims": (0,)})


def scatter_add_rows(ctx: RewriteContext, s: Instruction) -> Instruction:
    table, idx, updates = s.operands
    idx = _lookup_indices(ctx, idx, s.attrs["index_vector_dim"])
    one_hot = _one_hot(ctx, idx, table.shape.dims[0], table.shape.dtype)
    lookups = tuple(range(idx.shape.rank))
    summed = ctx.emit("dot_general", [one_hot, updates], {"lhs_contracting_dims": lookups,
                                                          "rhs_contracting_dims": lookups})
    return ctx.emit("add", [table, summed])


class RowLookupToDot(RewritePass):
    """`max_rows`: the largest table whose lookups become matmuls."""
    name = "row-lookup-to-dot"

    def __init__(self, max_rows: int = MAX_TABLE_ROWS):
        super().__init__(RuleTable([
            # table[idx] = one_hot(clamped idx) . table (module docstring).
            Rule("gather_rows_to_dot", Pat("gather", name="g", where=lambda g: is_row_gather(g, max_rows)),
                 gather_rows),
            # scatter-add of rows = table + one_hot(idx)^T . updates (module docstring).
            Rule("scatter_add_rows_to_dot",
                 Pat("scatter", name="s", where=lambda s: is_row_scatter_add(s, max_rows)), scatter_add_rows),
        ]))
