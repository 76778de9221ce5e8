"""dot_general on the matrix unit, with its epilogue in ACTIVATE.

The loop nest is tiling.py's: per batch, per m chunk (lhs rows DMA'd into the unified
buffer one lanes-wide block of K after another), per n tile, per k tile: LOAD_W the
weight tile straight from host memory (rhs rows, or rhs columns with transpose=1), and
MATMUL the chunk's rows against it, overwriting on the first k tile and accumulating
on the rest. Then one ACTIVATE moves the finished accumulator rows to the unified
buffer through the epilogue and a DMA_STORE writes them to the result.

Overlap comes from the emission order, since each unit runs its instructions in order:
- LOAD_Ws are emitted up to weight_fifo_depth tiles ahead of the MATMUL that swaps them
  in, so the next tile shifts into the shadow buffer while the current one computes;
- the next m chunk's lhs DMA is emitted before this chunk's MATMULs (`pipelined`), so
  the DMA unit loads it while the array works;
- n tiles alternate between two accumulator regions, so ACTIVATE of one overlaps the
  MATMULs of the next.

Epilogue (`match_epilogue`, also for convolution.py): the chain dot -> multiply/divide
by a constant (scale) -> add a broadcast [N] along the lanes' dim or a constant (bias)
-> an activation (fn), each link the only user of the one before, becomes ACTIVATE's
scale, bias row and fn: fn(acc * scale + bias). The activation is relu / tanh /
logistic as one op, or any elementwise subgraph of the value and constants that
computes one of ACTIVATE's functions -- GELU (tanh form) however it is written --
recognised by evaluating it on sample points with the interpreter's rules. The dot's
code then runs where the chain ends.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...compiler import ops
from ...compiler.dot_dims import DotDims
from ...compiler.ir import Instruction
from .emitter import pipelined
from .tiling import gemm_of, plan_gemm
from .views import View, ViewError

ACTIVATIONS = {"tanh": "tanh", "logistic": "sigmoid"}


@dataclass
class Epilogue:
    members: list                   # [dot, ..., end]
    scale: float = 1.0
    bias: Instruction | None = None     # a row broadcast of [N] added after scaling
    bias_value: float | None = None     # or a constant added
    fn: str = "identity"

    @property
    def end(self) -> Instruction:
        return self.members[-1]

    @property
    def extra_operands(self) -> list:
        return [self.bias] if self.bias is not None else []


def _only_user(lw, instr: Instruction, users) -> Instruction | None:
    found = set(users.get(instr, ()))
    if instr in lw.root_leaves or len(found) != 1:
        return None
    user = found.pop()
    return user if user.shape == instr.shape else None


def _other(user: Instruction, instr: Instruction) -> Instruction | None:
    a, b = user.operands
    if a is instr and b is not instr:
        return b
    if b is instr and a is not instr:
        return a
    return None


def _scale_of(lw, user, cur) -> float | None:
    other = _other(user, cur)
    value = lw.splat(other) if other is not None else None
    if value is None or value == 0:
        return None
    if user.opcode == "multiply":
        return value
    if user.opcode == "divide" and user.operands[0] is cur:
        return float(np.float32(1) / np.float32(value))
    return None


def _lane_dim(producer: Instruction) -> int | None:
    """The result dim the accumulator lanes hold: the one rhs free dim of a dot, the
    output feature dim of a convolution."""
    if producer.opcode == "convolution":
        return ops.parse_dim_labels(producer.attrs["dim_labels"]).output_feature
    return producer.shape.rank - 1 if len(DotDims.of(producer).free(1)) == 1 else None


def _is_row_bias(other: Instruction, producer: Instruction) -> bool:
    """A broadcast of a vector along the lanes' dim (a bias per output feature)."""
    lane = _lane_dim(producer)
    return (lane is not None and other.opcode == "broadcast_in_dim" and other.operands[0].shape.rank == 1
            and tuple(other.attrs["broadcast_dimensions"]) == (lane,))


def _activation(lw, user, cur) -> str | None:
    if user.opcode in ACTIVATIONS:
        return ACTIVATIONS[user.opcode]
    if user.opcode == "maximum":
        other = _other(user, cur)
        if other is not None and lw.splat(other) == 0.0:
            return "relu"
    return None


# ACTIVATE's functions, in float64: what an elementwise subgraph must compute to become one.
ACTIVATE_FUNCTIONS = {
    "gelu_tanh": lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3))),
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0),
}
SAMPLES = np.linspace(-6, 6, 97).astype(np.float32)
MAX_SUBGRAPH = 24


def _closure(lw, cur: Instruction, users) -> tuple[list, Instruction] | None:
    """The elementwise instructions computed from `cur` and constants alone, in schedule
    order, and the one among them read from outside (the subgraph's result); None if
    there is no such single-result subgraph."""
    from .vector import ELEMENTWISE
    members: set = set()
    queue = [cur]
    while queue:
        v = queue.pop()
        for u in users.get(v, ()):
            if u in members or u.opcode not in ELEMENTWISE or u.shape.dims != cur.shape.dims:
                continue
            if all(o is cur or o in members or lw.splat(o) is not None for o in u.operands):
                members.add(u)
                queue.append(u)
                if len(members) > MAX_SUBGRAPH:
                    return None
    inside = members | {cur}
    exits = [m for m in members
             if m in lw.root_leaves or any(u not in inside for u in users.get(m, ()))]
    if len(exits) != 1 or cur in lw.root_leaves or any(u not in inside for u in users.get(cur, ())):
        return None
    return sorted(members, key=lw.step.get), exits[0]


def _evaluate(lw, order, cur, x: np.ndarray) -> np.ndarray | None:
    """The subgraph's result for cur = x, with the interpreter's rules."""
    from ..interpreter import IMPL
    from ..interpreter.evaluator import store
    values = {cur: x}
    try:
        with np.errstate(all="ignore"):
            for instr in order:
                args = [values[o] if o in values else np.float32(lw.splat(o)) for o in instr.operands]
                values[instr] = store(IMPL[instr.opcode](None, instr, *args), instr.shape.dtype)
    except Exception:           # an op the samples cannot go through: not an activation
        return None
    return values[order[-1]]


def _activation_subgraph(lw, cur: Instruction, users):
    """(fn, members) when the elementwise subgraph fed by `cur` computes one of
    ACTIVATE's functions -- recognised by evaluating it (GELU is written many ways)."""
    found = _closure(lw, cur, users)
    if found is None:
        return None
    members, end = found
    order = members[:members.index(end) + 1] if end in members else members
    got = _evaluate(lw, order, cur, SAMPLES)
    if got is None or got.shape != SAMPLES.shape:
        return None
    for fn, reference in ACTIVATE_FUNCTIONS.items():
        want = reference(SAMPLES.astype(np.float64))
        if np.allclose(got, want, rtol=1e-5, atol=1e-6):
            return fn, order
    return None


def match_epilogue(lw, dot: Instruction, users) -> Epilogue:
    epi = Epilogue([dot])
    cur = dot
    user = _only_user(lw, cur, users)
    while user is not None and user.opcode in ("multiply", "divide") and epi.bias is None:
        scale = _scale_of(lw, user, cur)
        if scale is None:
            break
        epi.scale *= scale
        epi.members.append(user)
        cur, user = user, _only_user(lw, user, users)
    if user is not None and user.opcode == "add":
        other = _other(user, cur)
        if other is not None and lw.splat(other) is not None:
            epi.bias_value = lw.splat(other)
        elif other is not None and _is_row_bias(other, dot):
            epi.bias = other
        if epi.bias is not None or epi.bias_value is not None:
            epi.members.append(user)
            cur, user = user, _only_user(lw, user, users)
    if user is not None:
        fn = _activation(lw, user, cur)
        if fn is not None:
            epi.fn = fn
            epi.members.append(user)
            return epi
    subgraph = _activation_subgraph(lw, cur, users)
    if subgraph is not None:
        epi.fn, members = subgraph
        epi.members += members
    return epi


# ----------------------------------------------------------------------------- operands

@dataclass
class Operands:
    lhs: View       # [B, M, K]
    rhs: View       # [B, K, N], or [B, N, K] when transposed
    transposed: bool


def _operands(lw, dot: Instruction, g) -> Operands:
    dims = DotDims.of(dot)
    lhs = _as(lw, dot.operands[0], (g.batch, g.m, g.k))
    transposed = tuple(range(dims.rhs_rank)) != dims.rhs_batch + dims.rhs_contract + tuple(dims.free(1))
    rhs_dims = (g.batch, g.n, g.k) if transposed else (g.batch, g.k, g.n)
    rhs = _as(lw, dot.operands[1], rhs_dims)
    if not rhs.lanes_contiguous:            # LOAD_W reads rows of contiguous elements
        rhs = _materialized(lw, rhs)
    return Operands(lhs, rhs, transposed)


def _as(lw, operand: Instruction, dims) -> View:
    view = lw.view_of(operand)
    try:
        return view.reshape(dims)
    except ViewError:
        return _materialized(lw, view).reshape(dims)


def _materialized(lw, view: View) -> View:
    """A row-major copy of a view in a fresh host region (for operands no DMA/LOAD_W
    pattern can read directly)."""
    from .vector import copy
    target = View.row_major(lw.image.region(int(np.prod(view.dims)) * 4), view.dims)
    copy(lw, view, target)
    return target


# ----------------------------------------------------------------------------- the loop nest

@dataclass
class WeightStream:
    """The LOAD_Ws of one GEMM in MATMUL order, emitted up to the FIFO depth ahead."""
    lw: object
    tiles: list = field(default_factory=list)       # LOAD_W fields, in swap order
    emitted: int = 0

    def before_matmul(self, i: int) -> None:
        depth = self.lw.config.weight_fifo_depth
        while self.emitted < len(self.tiles) and self.emitted <= i + depth - 1:
            self.lw.emitter.emit("LOAD_W", **self.tiles[self.emitted])
            self.emitted += 1


def _weight_tile(ops: Operands, b: int, k0: int, depth: int, n0: int, width: int) -> dict:
    v = ops.rhs
    if ops.transposed:      # rows along N, elements along K
        addr = v.base + b * v.strides[0] + n0 * v.strides[1] + k0 * v.esize
    else:                   # rows along K, elements along N
        addr = v.base + b * v.strides[0] + k0 * v.strides[1] + n0 * v.esize
    return dict(src="host", addr=addr, k=depth, n=width, stride=v.strides[1],
                transpose=int(ops.transposed), fmt=v.fmt)


def lower_dot(lw, dot: Instruction) -> None:
    from .vector import load_block, store_block
    cfg, e = lw.config, lw.emitter
    epi = lw.epilogues[dot]
    g = gemm_of(dot)
    if g.m == 0 or g.n == 0 or g.batch == 0:
        return
    if g.k == 0:
        raise NotImplementedError(f"systolic backend: a dot with nothing to contract ({dot.name})")
    ops = _operands(lw, dot, g)
    out = lw.view_of(epi.end).reshape((g.batch, g.m, g.n))
    plan = plan_gemm(g, cfg.rows, cfg.cols, cfg.acc_rows, lw.ub.rows // 2, lanes=lw.lanes)
    blocks = [(c0, min(lw.lanes, g.k - c0)) for c0 in range(0, g.k, lw.lanes)]
    n_tiles = [(n0, min(cfg.cols, g.n - n0)) for n0 in range(0, g.n, cfg.cols)]
    bias_rows = load_bias_rows(lw, epi, n_tiles)
    weights = WeightStream(lw)
    for b in range(g.batch):
        for m0, rows in plan.chunks():
            for t in plan.tiles(m0, rows):
                weights.tiles.append(_weight_tile(ops, b, t.k0, t.depth, t.n0, t.width))
    state = {"matmul": 0, "region": 0}

    def load(item):
        b, m0, rows = item
        lhs_b = ops.lhs.with_(ops.lhs.base + b * ops.lhs.strides[0], ops.lhs.dims[1:], ops.lhs.strides[1:])
        base = lw.ub.alloc(rows * len(blocks))
        for j, (c0, w) in enumerate(blocks):
            load_block(lw, lhs_b, m0, rows, c0, w, base + j * rows)
        return base

    def compute(item, base):
        b, m0, rows = item
        out_b = out.with_(out.base + b * out.strides[0], out.dims[1:], out.strides[1:])
        for j, (n0, width) in enumerate(n_tiles):
            acc = state["region"] * plan.m_chunk
            state["region"] ^= 1
            for i, (k0, depth) in enumerate(plan.k_list):
                weights.before_matmul(state["matmul"])
                state["matmul"] += 1
                e.emit("MATMUL", ub=base + (k0 // lw.lanes) * rows, acc=acc, rows=rows, lane=k0 % lw.lanes,
                       mode="accumulate" if i else "overwrite", swap=1)
            tile = lw.ub.alloc(rows)
            bias = dict(bias=1, bias_ub=bias_rows + j) if bias_rows is not None else {}
            e.emit("ACTIVATE", acc=acc, ub=tile, rows=rows, fn=epi.fn, scale=epi.scale, **bias)
            store_block(lw, tile, out_b, m0, rows, n0, width)
            lw.ub.release(tile, rows)
        lw.ub.release(base, rows * len(blocks))

    items = [(b, m0, rows) for b in range(g.batch) for m0, rows in plan.chunks()]
    pipelined(items, load, compute)
    if bias_rows is not None:
        lw.ub.release(bias_rows, len(n_tiles))


def load_bias_rows(lw, epi: Epilogue, n_tiles) -> int | None:
    """One UB row per n tile holding that tile's bias, for ACTIVATE's bias operand."""
    if epi.bias is None and epi.bias_value is None:
        return None
    if epi.bias is not None:
        vector_view = lw.view_of(epi.bias.operands[0])
    else:
        n = sum(w for _, w in n_tiles)
        vector_view = View.row_major(lw.image.add_constant(np.full(n, epi.bias_value, np.float32)), (n,))
    from .vector import load_block
    row = lw.ub.alloc(len(n_tiles))
    as_matrix = vector_view.with_(dims=(1,) + vector_view.dims, strides=(0,) + vector_view.strides)
    for j, (n0, width) in enumerate(n_tiles):
        load_block(lw, as_matrix, 0, 1, n0, width, row + j)
    return row
