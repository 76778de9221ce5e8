"""Everything that is not a dot: the vector unit and the DMA unit.

A kernel reads its operands as matrices (views.py: leading dims are rows, the last dim
lanes) and works in steps of (a chunk of rows) x (a lanes-wide block of columns): DMA
the operands' pieces into the unified buffer, run VEC_* instructions, DMA the result
out. Steps are software pipelined (emitter.pipelined) so loads overlap compute.

How an operand piece gets into the unified buffer (`load_tile`):
    a compile-time splat        no load: an immediate (VEC_IMM)
    a row broadcast (bias)      one row, used by every row (the *_bcast flags)
    a lane broadcast (x[r])     one value per row into lane 0, then VEC_RED over 1 lane
                                broadcasts it across the row
    contiguous lanes            DMA row runs (views.py)
    strided lanes (transposed)  per row: a column DMA and a VEC_TRANS into a row

`ELEMENTWISE` maps each elementwise op to how it is computed; `CHECKS` refuses at
compile time what the kernels below cannot do (the error names the op and source line).
Reductions: along the last dim with VEC_RED over lanes (blocks combined with VEC_BIN),
along leading dims with VEC_RED over rows. reduce_window (max-pool) combines one
strided view per window position, the same way elementwise ops combine operands.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...compiler import ops
from ...compiler.ir import Instruction
from .emitter import pipelined
from .views import View, lane_blocks

MAX_CHUNK_ROWS = 2048
STRIDE_LIMIT = 1 << 22      # DMA/LOAD_W stride field (bytes)


@dataclass(frozen=True)
class Tile:
    row: int
    rows: int           # rows allocated (1 for a broadcast row)
    bcast: bool = False


@dataclass(frozen=True)
class Imm:
    value: float


def zeros_row(lanes: int) -> np.ndarray:
    return np.zeros(lanes, np.float32)


def chunk_rows(lw, total: int, tiles_per_row: int) -> int:
    """Rows per step: a quarter of the unified buffer for one step's tiles (two steps
    are in flight, and the rest is headroom for the allocator's moving cursor)."""
    budget = lw.ub.rows // 4 // max(1, tiles_per_row)
    return max(1, min(total, budget, MAX_CHUNK_ROWS))


# ----------------------------------------------------------------------------- DMA

def load_block(lw, view: View, r0: int, n: int, c0: int, w: int, dst: int) -> None:
    """Rows [r0, r0+n), columns [c0, c0+w) of `view` into UB rows dst.. (lanes 0..w)."""
    e = lw.emitter
    if view.lanes_contiguous or w == 1:
        for run in view.runs(r0, n):
            host = run.host + c0 * view.lane_stride
            for sub_offset, sub_host, sub_rows, stride in _stride_split(run, host):
                e.emit("DMA_LOAD", host=sub_host, ub=dst + sub_offset, rows=sub_rows, cols=w,
                       stride=stride, fmt=view.fmt)
        return
    column = lw.ub.alloc(w)            # strided lanes: gather each row as a column, transpose it
    for r in range(n):
        host = view.row_address(r0 + r) + c0 * view.lane_stride
        e.emit("DMA_LOAD", host=host, ub=column, rows=w, cols=1, stride=view.lane_stride, fmt=view.fmt)
        e.emit("VEC_TRANS", dst=dst + r, src=column, rows=w, lanes=1)
    lw.ub.release(column, w)


def store_block(lw, src: int, view: View, r0: int, n: int, c0: int, w: int) -> None:
    """UB rows src.. (lanes 0..w) into rows [r0, r0+n), columns [c0, c0+w) of `view`."""
    for run in view.runs(r0, n):
        host = run.host + c0 * view.lane_stride
        for sub_offset, sub_host, sub_rows, stride in _stride_split(run, host):
            lw.emitter.emit("DMA_STORE", host=sub_host, ub=src + sub_offset, rows=sub_rows, cols=w,
                            stride=stride if sub_rows > 1 else w * view.esize, fmt=view.fmt)


def _stride_split(run, host):
    """A run whose stride does not fit the 22-bit field goes row by row."""
    if run.stride < STRIDE_LIMIT:
        return [(run.offset, host, run.rows, run.stride)]
    return [(run.offset + r, host + r * run.stride, 1, 0) for r in range(run.rows)]


def load_tile(lw, operand, r0: int, n: int, c0: int, w: int):
    """One operand's piece in the unified buffer (module docstring), or an Imm."""
    if isinstance(operand, Imm):
        return operand
    view = operand
    if view.lane_broadcast:
        per_row = view.with_(dims=view.dims[:-1] + (1,), strides=view.strides[:-1] + (view.esize,))
        tile = load_tile(lw, per_row, r0, n, 0, 1)
        lw.emitter.emit("VEC_RED", op="sum", axis="lanes", dst=tile.row, src=tile.row,
                        rows=tile.rows, lanes=1)
        return tile
    if view.rows > 1 and view.row_broadcast:
        row = lw.ub.alloc(1)
        load_block(lw, view, 0, 1, c0, w, row)
        return Tile(row, 1, bcast=True)
    row = lw.ub.alloc(n)
    load_block(lw, view, r0, n, c0, w, row)
    return Tile(row, n)


def release(lw, tiles) -> None:
    for t in tiles:
        if isinstance(t, Tile):
            lw.ub.release(t.row, t.rows)


def full(lw, tile, n: int) -> Tile:
    """`tile` as n rows of its own (expanding a broadcast row or an immediate)."""
    if isinstance(tile, Tile) and not tile.bcast:
        return tile
    row = lw.ub.alloc(n)
    if isinstance(tile, Imm):
        zero = lw.ub.alloc(1)
        lw.emitter.emit("DMA_LOAD", host=lw.zeros, ub=zero, rows=1, cols=lw.lanes, stride=0, fmt="f32")
        lw.emitter.emit("VEC_IMM", op="add", dst=row, src=zero, rows=n, imm=tile.value, src_bcast=1)
        lw.ub.release(zero, 1)
    else:
        lw.emitter.emit("VEC_UN", op="copy", dst=row, src=tile.row, rows=n, src_bcast=1)
    return Tile(row, n)


# ----------------------------------------------------------------------------- row kernels

def rowwise(lw, out: View, inputs: list, body, tiles_per_row: int | None = None) -> None:
    """out = body(input pieces) step by step over (row chunk, lane block); body gets the
    loaded pieces and the row count and returns the Tile holding the result."""
    rows, cols = out.rows, out.cols
    n = chunk_rows(lw, rows, tiles_per_row or sum(isinstance(i, View) for i in inputs) + 2)
    steps = [(r0, min(n, rows - r0), c0, w) for r0 in range(0, rows, n) for c0, w in lane_blocks(cols, lw.lanes)]

    def load(step):
        r0, count, c0, w = step
        return [load_tile(lw, op, r0, count, c0, w) for op in inputs]

    def compute(step, tiles):
        r0, count, c0, w = step
        result = full(lw, body(tiles, count), count)
        store_block(lw, result.row, out, r0, count, c0, w)
        release(lw, set(tiles) | {result})

    pipelined(steps, load, compute)


def operand(lw, instr: Instruction):
    """How an elementwise op reads `instr`: an immediate for a splat, else its view."""
    value = lw.splat(instr)
    if value is not None:
        return Imm(value)
    return lw.view_of(instr)


def leaf_operands(lw, tree: "Tree") -> list:
    """How the tree reads its leaves. A 0-d leaf of a tree with dims (clamp's scalar
    bounds: the one elementwise op whose operands may be scalars) is read broadcast."""
    dims = tree.root.shape.dims
    inputs = []
    for leaf in tree.leaves:
        read = operand(lw, leaf)
        if leaf.shape.rank == 0 and dims and not isinstance(read, Imm):
            read = read.broadcast(dims, ())
        inputs.append(read)
    return inputs


# ----------------------------------------------------------------------------- expression trees

@dataclass
class Tree:
    """An elementwise expression evaluated in the unified buffer: `root` and the
    producers inlined into it (codegen places them: single-use elementwise values of the
    same shape), reading `leaves` -- the other values -- from host memory. A whole
    GELU or normalization chain is then one load per input and one store, not one
    round trip through host memory per op."""
    root: Instruction
    leaves: list
    nodes: list         # inlined producers and the root, operands first

    @property
    def tiles_per_row(self) -> int:
        return len(self.leaves) + len(self.nodes) + 1


def tree_of(lw, root: Instruction, computed: bool = True) -> Tree:
    """The tree computing `root` (its kernel's own value: computed; a reduce's operand:
    computed only when inlined, else read as it is)."""
    inlined = lw.inlined
    leaves, nodes = [], []

    def visit(instr, is_root):
        if not is_root and instr not in inlined:
            if instr not in leaves:
                leaves.append(instr)
            return
        for o in instr.operands:
            visit(o, False)
        if instr not in nodes:
            nodes.append(instr)

    if computed or root in inlined:
        visit(root, True)
    else:
        leaves.append(root)
    return Tree(root, leaves, nodes)


def evaluate(lw, tree: Tree, tiles: list, n: int):
    """The root's piece from its leaves' pieces; intermediates are released on use."""
    value = dict(zip(tree.leaves, tiles))
    for node in tree.nodes:
        args = [value[o] for o in node.operands]
        result = ELEMENTWISE[node.opcode](lw, node, args, n)
        value[node] = result
        done = {value[o] for o in node.operands if o in tree.nodes} - {result}
        release(lw, done)
    return value[tree.root]


def inlined_producers(lw, users) -> set:
    """Elementwise values computed inside their only user's kernel instead of being
    stored: the user is elementwise of the same dims, or a reduce over the last dim."""
    inlined = set()
    for instr in lw.order:
        if (instr.opcode not in ELEMENTWISE or instr in lw.fused or instr in lw.root_leaves
                or instr.shape.is_tuple or _identity_convert(instr)):
            continue
        readers = set(users.get(instr, ()))
        if len(readers) != 1:
            continue
        (user,) = readers
        if user in lw.fused or _identity_convert(user) or instr in lw.grouped or user in lw.grouped:
            continue
        same_dims = user.shape.dims == instr.shape.dims
        if user.opcode in ELEMENTWISE and same_dims:
            inlined.add(instr)
        elif (user.opcode == "reduce" and user.operands[0] is instr and instr.shape.rank >= 1
              and tuple(user.attrs["dimensions"]) == (instr.shape.rank - 1,)):
            inlined.add(instr)
    return inlined


def _identity_convert(instr: Instruction) -> bool:
    return instr.opcode == "convert" and instr.operands[0].shape.dtype == instr.shape.dtype


def _unary(op: str):
    def body(lw, instr, tiles, n):
        (x,) = tiles
        given = x
        x = full(lw, x, n) if isinstance(x, Imm) else x
        dst = lw.ub.alloc(n)
        lw.emitter.emit("VEC_UN", op=op, dst=dst, src=x.row, rows=n, src_bcast=int(x.bcast))
        if x is not given:
            lw.ub.release(x.row, x.rows)
        return Tile(dst, n)
    return body


def _binary(op: str):
    def body(lw, instr, tiles, n):
        return binary(lw, op, tiles[0], tiles[1], n)
    return body


def binary(lw, op: str, a, b, n: int) -> Tile:
    e = lw.emitter
    if isinstance(a, Imm) and isinstance(b, Imm):
        expanded = full(lw, a, n)
        out = binary(lw, op, expanded, b, n)
        lw.ub.release(expanded.row, expanded.rows)
        return out
    dst = lw.ub.alloc(n)
    if isinstance(b, Imm):
        e.emit("VEC_IMM", op=op, dst=dst, src=a.row, rows=n, imm=b.value, src_bcast=int(a.bcast))
    elif isinstance(a, Imm):
        e.emit("VEC_IMM", op=op, dst=dst, src=b.row, rows=n, imm=a.value, rev=1, src_bcast=int(b.bcast))
    else:
        e.emit("VEC_BIN", op=op, dst=dst, src0=a.row, src1=b.row, rows=n,
               src0_bcast=int(a.bcast), src1_bcast=int(b.bcast))
    return Tile(dst, n)


def _compare(lw, instr, tiles, n):
    return binary(lw, COMPARE_OPS[instr.attrs["direction"]], tiles[0], tiles[1], n)


def _select(lw, instr, tiles, n):
    mask, a, b = (full(lw, t, n) for t in tiles)
    dst = lw.ub.alloc(n)
    lw.emitter.emit("VEC_SEL", dst=dst, mask=mask.row, src0=a.row, src1=b.row, rows=n)
    release(lw, {t for t, given in zip((mask, a, b), tiles) if t is not given})
    return Tile(dst, n)


def _clamp(lw, instr, tiles, n):
    lo, x, hi = tiles
    low = binary(lw, "max", x, lo, n)
    out = binary(lw, "min", low, hi, n)
    lw.ub.release(low.row, low.rows)
    return out


def _convert(lw, instr, tiles, n):
    (x,) = tiles
    if instr.shape.dtype.name == "pred":      # x != 0, as 1.0 / 0.0
        return binary(lw, "ne", x, Imm(0.0), n)
    return _unary("copy")(lw, instr, tiles, n)


def _is_finite(lw, instr, tiles, n):
    """x - x is 0 exactly when x is finite (inf - inf and NaN - NaN are NaN)."""
    (x,) = tiles
    diff = binary(lw, "sub", x, x, n)
    out = binary(lw, "eq", diff, Imm(0.0), n)
    lw.ub.release(diff.row, diff.rows)
    return out


COMPARE_OPS = {"EQ": "eq", "NE": "ne", "LT": "lt", "LE": "le", "GT": "gt", "GE": "ge"}

# opcode -> body(lw, instr, tiles, rows) -> Tile
ELEMENTWISE = {
    "negate": _unary("neg"), "abs": _unary("abs"), "exp": _unary("exp"), "log": _unary("log"),
    "sqrt": _unary("sqrt"), "rsqrt": _unary("rsqrt"), "tanh": _unary("tanh"),
    "logistic": _unary("sigmoid"),
    "add": _binary("add"), "subtract": _binary("sub"), "multiply": _binary("mul"),
    "divide": _binary("div"), "maximum": _binary("max"), "minimum": _binary("min"),
    "power": _binary("pow"),
    "compare": _compare, "select": _select, "clamp": _clamp, "convert": _convert,
    "is_finite": _is_finite,
}


def lower_elementwise(lw, instr: Instruction) -> None:
    tree = tree_of(lw, instr)
    inputs = leaf_operands(lw, tree)
    rowwise(lw, lw.view_of(instr), inputs, lambda tiles, n: evaluate(lw, tree, tiles, n),
            tiles_per_row=tree.tiles_per_row)


def copy(lw, src: View, dst: View) -> None:
    """dst = src through the unified buffer (views of equal dims)."""
    rowwise(lw, dst, [src], lambda tiles, n: tiles[0])


def lower_copy(lw, instr: Instruction) -> None:
    """A view op no view could express: copy its operand's elements in its order."""
    a = instr.attrs
    source = lw.view_of(instr.operands[0])
    out = lw.view_of(instr)
    if instr.opcode == "reshape":      # row-major element order is kept: copy flat
        source = _materialize_flat(lw, source)
        copy(lw, source.reshape(instr.shape.dims), out)
        return
    from .codegen import VIEWS
    copy(lw, VIEWS[instr.opcode](source, instr), out)


def _materialize_flat(lw, view: View) -> View:
    if view.is_row_major():
        return view
    target = View.row_major(lw.image.region(int(np.prod(view.dims)) * 4), view.dims)
    copy(lw, view, target)
    return target


# ----------------------------------------------------------------------------- reductions

REDUCERS = {"add": "sum", "maximum": "max", "minimum": "min"}
IDENTITY = {"sum": 0.0, "max": -math.inf, "min": math.inf}
COMBINE = {"sum": "add", "max": "max", "min": "min"}


def reducer_of(comp) -> str | None:
    """sum / max / min for a two-parameter computation applying that op to them."""
    root = comp.root
    if (root is None or root.opcode not in REDUCERS or len(comp.parameters) != 2
            or set(root.operands) != set(comp.parameters)):
        return None
    return REDUCERS[root.opcode]


def _check_reduce(instr: Instruction) -> str | None:
    if len(instr.operands) != 2:
        return "variadic reduce (several inputs) is not supported"
    if reducer_of(instr.attrs["to_apply"]) is None:
        return "only add / maximum / minimum reducers run on the vector unit"
    return None


def _finish(lw, kind: str, acc: Tile, init, n: int) -> None:
    """Combine the init value once, as the reduce semantics say (skipped if identity)."""
    if init is None or init == IDENTITY[kind]:
        return
    lw.emitter.emit("VEC_IMM", op=COMBINE[kind], dst=acc.row, src=acc.row, rows=n, imm=init)


def lower_reduce(lw, instr: Instruction) -> None:
    x, init_instr = instr.operands
    kind = reducer_of(instr.attrs["to_apply"])
    init = lw.splat(init_instr)
    if init is None:
        raise NotImplementedError(f"systolic backend: reduce {instr.name} ({instr.loc_text}) needs a "
                                  f"constant init value")
    dims = sorted(instr.attrs["dimensions"])
    rank = x.shape.rank
    out = lw.view_of(instr)
    if rank == 0 or not dims:
        copy(lw, lw.view_of(x), out)
        return
    leading = [d for d in dims if d != rank - 1]
    if rank - 1 in dims:
        # when the row reduction below also reduces the lane result's own last dim (a
        # reduce over every dim of a matrix), that result keeps a unit last dim: rows of
        # one lane, since the rows kernel keeps the last dim it is given
        unit = (1,) if rank - 2 in leading else ()
        target = out if not leading else _scratch(lw, tuple(x.shape.dims[:-1]) + unit)
        _reduce_lanes(lw, kind, tree_of(lw, x, computed=False), target, init if not leading else None)
        if not leading:
            return
        view, init_left = target, init
    else:
        view, init_left = lw.view_of(x), init
    _reduce_rows(lw, kind, view, leading, out, init_left)


def _scratch(lw, dims) -> View:
    return View.row_major(lw.image.region(max(1, int(np.prod(dims))) * 4), dims)


def _reduce_lanes(lw, kind: str, tree: Tree, out: View, init) -> None:
    """Reduce the last dim of the tree's value into out (its leading dims), chunk by chunk."""
    e = lw.emitter
    dims = tree.root.shape.dims
    rows, cols = math.prod(dims[:-1]), dims[-1]
    out_col = out.with_(dims=(rows, 1), strides=(out.esize, out.esize))
    blocks = lane_blocks(cols, lw.lanes)
    inputs = leaf_operands(lw, tree)
    n = chunk_rows(lw, rows, len(blocks) * tree.tiles_per_row + 2)

    def load(r0):
        count = min(n, rows - r0)
        return [[load_tile(lw, op, r0, count, c0, w) for op in inputs] for c0, w in blocks]

    def compute(r0, pieces):
        count = min(n, rows - r0)
        acc = None
        for (c0, w), leaf_tiles in zip(blocks, pieces):
            value = evaluate(lw, tree, leaf_tiles, count)
            tile = full(lw, value, count)
            red = lw.ub.alloc(count)
            e.emit("VEC_RED", op=kind, axis="lanes", dst=red, src=tile.row, rows=count, lanes=w)
            if acc is None:
                acc = Tile(red, count)
            else:
                e.emit("VEC_BIN", op=COMBINE[kind], dst=acc.row, src0=acc.row, src1=red, rows=count)
                lw.ub.release(red, count)
            release(lw, set(leaf_tiles) | {value, tile})
        _finish(lw, kind, acc, init, count)
        store_block(lw, acc.row, out_col, r0, count, 0, 1)
        release(lw, {acc})

    pipelined(range(0, rows, n), load, compute)


def _reduce_rows(lw, kind: str, view: View, dims: list[int], out: View, init) -> None:
    """Reduce leading dims: put them just before the last dim, so each output row is a
    contiguous range of the view's rows, and VEC_RED over rows."""
    e = lw.emitter
    rank = len(view.dims)
    kept = [d for d in range(rank - 1) if d not in dims]
    moved = view.transpose(kept + dims + [rank - 1])
    per_out = math.prod(view.dims[d] for d in dims)
    outputs = math.prod(view.dims[d] for d in kept)
    out_rows = out.with_(dims=(outputs, view.cols), strides=(view.cols * out.esize, out.esize))
    n = chunk_rows(lw, per_out, 2)
    for k in range(outputs):
        for c0, w in lane_blocks(view.cols, lw.lanes):
            acc = lw.ub.alloc(1)
            for i, r0 in enumerate(range(0, per_out, n)):
                count = min(n, per_out - r0)
                tile = full(lw, load_tile(lw, moved, k * per_out + r0, count, c0, w), count)
                red = acc if i == 0 else lw.ub.alloc(1)
                e.emit("VEC_RED", op=kind, axis="rows", dst=red, src=tile.row, rows=count, lanes=w)
                if red != acc:
                    e.emit("VEC_BIN", op=COMBINE[kind], dst=acc, src0=acc, src1=red, rows=1)
                    lw.ub.release(red, 1)
                lw.ub.release(tile.row, tile.rows)
            _finish(lw, kind, Tile(acc, 1), init, 1)
            store_block(lw, acc, out_rows, k, 1, c0, w)
            lw.ub.release(acc, 1)


# ----------------------------------------------------------------------------- windows

def _check_reduce_window(instr: Instruction) -> str | None:
    problem = _check_reduce(instr)
    if problem:
        return problem
    rank = instr.shape.rank
    dims, strides, padding, base_dil, win_dil = ops.window_params(instr.attrs, rank)
    if dims[-1] != 1 or strides[-1] != 1:
        return "a window along the last dim is not supported (windows over leading dims only)"
    if any(lo or hi for lo, hi in padding):
        return "padded windows are not supported (pad explicitly first)"
    if any(d != 1 for d in base_dil) or any(d != 1 for d in win_dil):
        return "dilated windows are not supported"
    return None


def lower_reduce_window(lw, instr: Instruction) -> None:
    x, init_instr = instr.operands
    kind = reducer_of(instr.attrs["to_apply"])
    init = lw.splat(init_instr)
    rank = instr.shape.rank
    dims, strides, _, _, _ = ops.window_params(instr.attrs, rank)
    view = lw.view_of(x)
    out_dims = instr.shape.dims
    taps = []
    for offset in np.ndindex(*dims):
        limit = [o + (d - 1) * s + 1 for o, d, s in zip(offset, out_dims, strides)]
        taps.append(view.slice(offset, limit, strides))

    def body(tiles, n):
        acc = binary(lw, COMBINE[kind], tiles[0], tiles[1], n) if len(tiles) > 1 else full(lw, tiles[0], n)
        for t in tiles[2:]:
            lw.emitter.emit("VEC_BIN", op=COMBINE[kind], dst=acc.row, src0=acc.row, src1=t.row, rows=n,
                            src1_bcast=int(t.bcast))
        _finish(lw, kind, acc, init, n)
        return acc

    rowwise(lw, lw.view_of(instr), taps, body)


# ----------------------------------------------------------------------------- concatenate, pad

def lower_concatenate(lw, instr: Instruction) -> None:
    d = instr.attrs["dimension"]
    out = lw.view_of(instr)
    offset = 0
    for o in instr.operands:
        start = [0] * instr.shape.rank
        limit = list(instr.shape.dims)
        start[d], limit[d] = offset, offset + o.shape.dims[d]
        copy(lw, lw.view_of(o), out.slice(start, limit, [1] * len(start)))
        offset += o.shape.dims[d]


def _check_pad(instr: Instruction) -> str | None:
    a = instr.attrs
    if a["interior_padding"] and a["interior_padding"][-1] != 0:
        return "interior padding of the last dim is not supported"
    return None


def lower_pad(lw, instr: Instruction) -> None:
    """Fill, then copy the operand into its strided place. Negative edge padding crops:
    the pad with the negative edges at 0 goes to scratch and the cropped window of it
    is copied out (the convolution expander makes these from negative conv padding)."""
    x, value = instr.operands
    fill = lw.splat(value)
    out = lw.view_of(instr)
    if fill is None:
        raise NotImplementedError(f"systolic backend: pad {instr.name} ({instr.loc_text}) needs a "
                                  f"constant padding value")
    a = instr.attrs
    low, high = list(a["edge_padding_low"]), list(a["edge_padding_high"])
    crop_low, crop_high = [max(-v, 0) for v in low], [max(-v, 0) for v in high]
    if not any(crop_low + crop_high):
        _pad_into(lw, x, fill, out, low, a["interior_padding"])
        return
    dims = [d + c0 + c1 for d, c0, c1 in zip(instr.shape.dims, crop_low, crop_high)]
    whole = _scratch(lw, tuple(dims))
    _pad_into(lw, x, fill, whole, [max(v, 0) for v in low], a["interior_padding"])
    copy(lw, whole.slice(crop_low, [d - c for d, c in zip(dims, crop_high)], [1] * len(dims)), out)


def _pad_into(lw, x: Instruction, fill: float, out: View, low, interior) -> None:
    """out = pad(x) with non-negative edge padding `low` (out's dims say the rest)."""
    rowwise(lw, out, [Imm(fill)], lambda tiles, n: tiles[0])
    interior = interior or (0,) * x.shape.rank
    step = [i + 1 for i in interior]
    limit = [s + (d - 1) * st + 1 for s, d, st in zip(low, x.shape.dims, step)]
    if x.shape.size:
        copy(lw, lw.view_of(x), out.slice(low, limit, step))


def _check_compare(instr: Instruction) -> str | None:
    return None if instr.attrs["direction"] in COMPARE_OPS else "unknown comparison"


CHECKS = {"reduce": _check_reduce, "reduce_window": _check_reduce_window, "pad": _check_pad,
          "compare": _check_compare}
