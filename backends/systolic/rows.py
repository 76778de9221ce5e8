"""Row kernels: softmax, layer norm and other row-wise chains as one kernel each.

A reduction over the last dim turns each row of a matrix into one value per row, which
the following ops broadcast back over the row (x - max(x), x / sum(e), (x - mean) /
sqrt(var)). Lowered op by op, every step is a round trip through host memory. A
`RowGroup` instead keeps all of a chunk of rows in the unified buffer -- every lanes-wide
block of each full value, one tile per per-row value -- and runs the whole chain on it:
one load of each input, one store of each result.

Values of a group are classified by how they sit on the group's rows R (the leading
dims shared by all members):

    full      dims R + (c,), c > 1: one tile per lanes-wide block
    per-row   dims R or R + (1,): one tile whose every lane holds the row's value --
              which is what VEC_RED over lanes writes, so a per-row value needs no
              broadcast to meet a full one lane by lane

Members: elementwise ops, reduce over the last dim (add / maximum / minimum, constant
init), broadcast_in_dim of a per-row value along the last dim, and reshapes between
R and R + (1,). `row_groups` forms groups greedily in schedule order: an eligible
instruction joins the open group(s) its operands belong to (merging them), or opens one;
a non-member reading a member closes that group, so the group's code -- placed at its
last member -- runs before every outside reader. Only groups with a reduction are kept
(elementwise chains alone are vector.py's trees).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ...compiler.ir import Instruction
from .emitter import pipelined
from .vector import (COMBINE, ELEMENTWISE, IDENTITY, Imm, Tile, full, lane_blocks, load_tile, operand,
                     reducer_of, release, store_block)


@dataclass(eq=False)
class RowGroup:
    rows: tuple                                   # R, the leading dims
    members: list = field(default_factory=list)   # in schedule order
    kinds: dict = field(default_factory=dict)     # member -> "full" | "per-row"
    closed: bool = False                          # a non-member has read a member

    @property
    def last(self) -> Instruction:
        return self.members[-1]

    def inputs(self) -> list:
        seen = []
        for m in self.members:
            for o in m.operands:
                if o not in self.kinds and o not in seen:
                    seen.append(o)
        return seen

    def has_reduce(self) -> bool:
        return any(m.opcode == "reduce" for m in self.members)


def _drop_one(dims: tuple) -> tuple:
    return dims[:-1] if dims and dims[-1] == 1 else dims


def _classify(instr: Instruction, lw) -> list[tuple[tuple, str]]:
    """The (rows, kind) placements an instruction could have in a group."""
    if instr.shape.is_tuple or instr in lw.fused or instr.shape.rank == 0:
        return []
    dims = instr.shape.dims
    op = instr.opcode
    if op in ELEMENTWISE and not _identity_convert(instr):
        out = [(dims[:-1], "full")] if dims[-1] > 1 else []       # a new group: rows of a matrix
        return out + [(_drop_one(dims), "per-row")]
    if op == "reduce" and len(instr.operands) == 2 and reducer_of(instr.attrs["to_apply"]):
        x = instr.operands[0]
        if x.shape.rank >= 1 and tuple(instr.attrs["dimensions"]) == (x.shape.rank - 1,) \
                and lw.splat(instr.operands[1]) is not None and x.shape.dims[-1] > 1:
            return [(x.shape.dims[:-1], "per-row")]
        return []
    if op == "broadcast_in_dim":
        src = instr.operands[0].shape.dims
        rows = dims[:-1]
        if dims[-1] > 1 and _drop_one(src) == rows and \
                tuple(instr.attrs["broadcast_dimensions"])[:len(rows)] == tuple(range(len(rows))):
            return [(rows, "full")]
        return []
    if op == "reshape" and _drop_one(instr.operands[0].shape.dims) == _drop_one(dims):
        return [(_drop_one(dims), "per-row")]
    return []


def _identity_convert(instr: Instruction) -> bool:
    return instr.opcode == "convert" and instr.operands[0].shape.dtype == instr.shape.dtype


def _fits(instr: Instruction, rows: tuple, kind: str, group: RowGroup) -> bool:
    """Whether `instr` as (rows, kind) agrees with how its member operands sit."""
    op = instr.opcode
    for o in instr.operands:
        if o not in group.kinds:
            continue
        okind = group.kinds[o]
        if op == "reduce" and okind != "full":
            return False
        if op in ("broadcast_in_dim", "reshape") and okind != "per-row":
            return False
        if op in ELEMENTWISE and kind == "per-row" and okind == "full":
            return False
    return True


def row_groups(lw, users) -> list[RowGroup]:
    """Greedy grouping in schedule order (module docstring); groups with a reduce."""
    open_groups: list[RowGroup] = []
    closed: list[RowGroup] = []
    member_of: dict[Instruction, RowGroup] = {}
    for instr in lw.order:
        groups = list(dict.fromkeys(member_of[o] for o in instr.operands if o in member_of))
        placement = _placement(instr, groups, lw)
        if placement is None:
            for g in groups:                      # an outside reader: those groups end here
                if g in open_groups:
                    open_groups.remove(g)
                    g.closed = True
                    closed.append(g)
            continue
        rows, kind = placement
        group = _merge([g for g in groups if g in open_groups and g.rows == rows], open_groups, member_of,
                       lw.step)
        if group is None:
            group = RowGroup(rows)
            open_groups.append(group)
        group.members.append(instr)
        group.kinds[instr] = kind
        member_of[instr] = group
    closed += open_groups
    return [g for g in closed if g.has_reduce()]


def _placement(instr, groups, lw):
    """How `instr` joins the open groups of its operands, or None if it cannot (it is
    not eligible, an operand's group is closed, or its operands sit on other rows)."""
    options = _classify(instr, lw)
    if not options or any(g.closed for g in groups) or any(g.rows != groups[0].rows for g in groups):
        return None
    for rows, kind in options:
        if groups and groups[0].rows != rows:
            continue
        merged = RowGroup(rows, [], {k: v for g in groups for k, v in g.kinds.items()})
        if _fits(instr, rows, kind, merged):
            return rows, kind
    return None


def _merge(groups, open_groups, member_of, step):
    if not groups:
        return None
    first = groups[0]
    for g in groups[1:]:
        for m in g.members:
            first.kinds[m] = g.kinds[m]
            member_of[m] = first
        first.members = sorted(first.members + g.members, key=step.get)
        open_groups.remove(g)
    return first


# ----------------------------------------------------------------------------- lowering

def lower_row_group(lw, group: RowGroup) -> None:
    rows = math.prod(group.rows)
    inputs = group.inputs()
    sources = {i: _source(lw, i, group) for i in inputs}
    widths = {m: m.shape.dims[-1] for m in group.members if group.kinds[m] == "full"}
    outputs = [m for m in group.members if lw.stored(m)]
    blocks_of = {m: lane_blocks(c, lw.lanes) for m, c in widths.items()}
    per_chunk = sum(len(b) for b in blocks_of.values()) + len(group.members) + \
        sum(len(lane_blocks(_cols(i), lw.lanes)) for i in inputs) + 2
    n = _chunk(lw, rows, per_chunk)

    def load(r0):
        count = min(n, rows - r0)
        loaded = {}
        for i in inputs:
            src = sources[i]
            if isinstance(src, Imm):
                loaded[i] = src
            elif _is_per_row_input(i, group) or i.shape.rank == 0:
                loaded[i] = [_per_row_tile(lw, src, r0, count)]
            else:
                loaded[i] = [load_tile(lw, src, r0, count, c0, w) for c0, w in lane_blocks(_cols(i), lw.lanes)]
        return loaded

    def compute(r0, loaded):
        count = min(n, rows - r0)
        values = dict(loaded)
        temps = []
        for m in group.members:
            values[m] = _member(lw, group, m, values, count, temps)
        for m in outputs:
            _store(lw, m, group.kinds[m], values[m], r0, count)
        release(lw, {t for v in loaded.values() if not isinstance(v, Imm) for t in v} | set(temps))

    pipelined(range(0, rows, n), load, compute)


def _source(lw, instr: Instruction, group: RowGroup):
    """How the group reads an input: a 0-d one (clamp's bounds) as a per-row value
    broadcast over the group's rows."""
    src = operand(lw, instr)
    if instr.shape.rank == 0 and group.rows and not isinstance(src, Imm):
        src = src.broadcast(group.rows, ())
    return src


def _chunk(lw, rows: int, tiles: int) -> int:
    from .vector import chunk_rows
    return chunk_rows(lw, rows, tiles)


def _cols(instr: Instruction) -> int:
    return instr.shape.dims[-1] if instr.shape.rank else 1


def _is_per_row_input(instr: Instruction, group: RowGroup) -> bool:
    return _drop_one(instr.shape.dims) == group.rows and (instr.shape.rank == len(group.rows)
                                                          or instr.shape.dims[-1] == 1)


def _per_row_tile(lw, view, r0, count) -> Tile:
    """A per-row input (dims R or R + (1,)): its values spread over every lane."""
    column = view if view.cols == 1 else view.reshape(view.dims + (1,))
    tile = load_tile(lw, column, r0, count, 0, 1)
    lw.emitter.emit("VEC_RED", op="sum", axis="lanes", dst=tile.row, src=tile.row, rows=tile.rows, lanes=1)
    return tile


def _member(lw, group, m, values, n, temps):
    """The tiles of member m: a list (one per block; per-row: one) or an Imm."""
    kind = group.kinds[m]
    op = m.opcode
    if op == "reshape":
        return values[m.operands[0]]
    if op == "broadcast_in_dim":                 # per-row -> full: the same all-lanes tile per block
        (tile,) = values[m.operands[0]]
        return [tile] * len(lane_blocks(m.shape.dims[-1], lw.lanes))
    if op == "reduce":
        return [_reduce(lw, m, values[m.operands[0]], n, temps)]
    nblocks = 1 if kind == "per-row" else len(lane_blocks(m.shape.dims[-1], lw.lanes))
    out = []
    for b in range(nblocks):
        args = [_pick(values[o], b) for o in m.operands]
        result = ELEMENTWISE[op](lw, m, args, n)
        tile = full(lw, result, n)
        temps += [result, tile] if isinstance(result, Tile) else [tile]
        out.append(tile)
    return out


def _pick(value, block):
    if isinstance(value, Imm):
        return value
    return value[block] if len(value) > 1 else value[0]


def _reduce(lw, m, tiles, n, temps) -> Tile:
    e = lw.emitter
    kind = reducer_of(m.attrs["to_apply"])
    acc = None
    for (c0, w), given in zip(lane_blocks(m.operands[0].shape.dims[-1], lw.lanes), tiles):
        tile = full(lw, given, n)
        if tile is not given:
            temps.append(tile)
        red = lw.ub.alloc(n)
        temps.append(Tile(red, n))
        e.emit("VEC_RED", op=kind, axis="lanes", dst=red, src=tile.row, rows=n, lanes=w)
        if acc is None:
            acc = Tile(red, n)
        else:
            e.emit("VEC_BIN", op=COMBINE[kind], dst=acc.row, src0=acc.row, src1=red, rows=n)
    init = lw.splat(m.operands[1])
    if init != IDENTITY[kind]:
        e.emit("VEC_IMM", op=COMBINE[kind], dst=acc.row, src=acc.row, rows=n, imm=init)
    return acc


def _store(lw, m, kind, tiles, r0, n) -> None:
    view = lw.view_of(m)
    if kind == "per-row":
        column = view.with_(dims=(view.rows * view.cols, 1), strides=(view.esize, view.esize))
        store_block(lw, tiles[0].row, column, r0, n, 0, 1)
        return
    for (c0, w), tile in zip(lane_blocks(m.shape.dims[-1], lw.lanes), tiles):
        store_block(lw, tile.row, view, r0, n, c0, w)
