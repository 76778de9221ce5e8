"""A processing-element-level, cycle-by-cycle simulator of the weight-stationary array.

The reference the timing contract (`mxu_timing.py`) is proved against. It moves every
operand one PE per cycle and decides nothing from the contract's formulas: a sequencer
starts a MATMUL when the input port is free and its tile sits in the shadow buffer, the
weight shifter starts a tile when column 0's shadow registers have all been swapped
out, and a MATMUL is done when its last partial sum has left the bottom row. Hazard
checks (a shift overwriting a tile not yet swapped in everywhere, a swap of a partly
shifted tile, misaligned partial sums) raise, so a wrong timing rule shows up as an
error or as wrong numbers, both checked against NumPy.

Per PE (r, c): an active weight, a shadow weight, the input passing through (moving
right) and the partial sum it produced (moving down). Each cycle, in order:
  1. the sequencer may start the next MATMUL; column 0 takes the skewed feed (array
     row r gets input row t of a MATMUL started at s at cycle s + t + r);
  2. a PE whose input is row 0 of a swapping MATMUL copies shadow -> active;
  3. the weight shifter may start the next tile (column c runs c cycles behind);
  4. every PE with an input multiplies bf16(weight) * bf16(input) (exact in fp32) and
     adds the partial sum from the PE above (fp32); bottom-row sums leave the array;
  5. weight columns that are shifting move down one row (tile row R-1 enters first);
  6. inputs move one PE right, partial sums one PE down.
Arrays are small (<= 16 x 16 is what the tests use), so each cycle is a few NumPy ops
over all PEs at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Callable

import numpy as np

from .config import ROUNDINGS
from .functional import round_bf16

NO_OP = -1


@dataclass(frozen=True)
class PeMatmul:
    """One MATMUL: `inputs` (T x K) streamed against the active tile.

    `weights` (K x N, K <= R, N <= C) makes this a swapping MATMUL whose tile is shifted
    in first; None reuses the active tile. `ready` / `weights_ready` are the earliest
    cycles the input rows / the tile are available.
    """

    inputs: np.ndarray
    weights: np.ndarray | None = None
    ready: int = 0
    weights_ready: int = 0


@dataclass
class PeRegisters:
    """The registers of every PE (arrays are R x C).

    active / shadow: the weights; x: the input value; x_op / x_t: which MATMUL and input
    row each PE is processing (NO_OP: idle); psum: the partial sum each PE produced.
    """

    active: np.ndarray
    shadow: np.ndarray
    x: np.ndarray
    x_op: np.ndarray
    x_t: np.ndarray
    psum: np.ndarray

    def snapshot(self) -> dict[str, np.ndarray]:
        """A copy of each register array, by field name."""
        return {name: getattr(self, name).copy() for name in _REGISTERS}


_REGISTERS = tuple(f.name for f in fields(PeRegisters))


@dataclass(kw_only=True)
class PeCycle(PeRegisters):
    """What the array holds during one cycle (handed to an observer): the registers,
    the cycle, the results leaving the bottom row as (op, t, c, value), the MATMUL
    started and the tile whose shift started this cycle (None: none)."""

    cycle: int
    leaving: list[tuple[int, int, int, float]]
    started: int | None
    shift_started: int | None


@dataclass
class PeRunResult:
    """Outputs (T x N per MATMUL, fp32), per-MATMUL start/end cycles (end = one past the
    cycle its last result left), per-tile shift start cycles, and the total cycle count."""

    outputs: list[np.ndarray]
    starts: list[int]
    ends: list[int]
    shift_starts: list[int]
    total_cycles: int


@dataclass
class _Shift:
    tile: int          # index into the swapping MATMULs
    start: int         # cycle column 0 shifts its first row


@dataclass
class _State(PeRegisters):
    # Which MATMUL and input row each partial sum belongs to.
    p_op: np.ndarray
    p_t: np.ndarray
    # Per column: which tile its shadow registers hold (NO_OP: none yet), how many rows
    # of it were shifted in, and how many rows already swapped it into active.
    col_tile: np.ndarray
    col_shifted: np.ndarray
    col_swapped: np.ndarray
    has_active: bool = False
    shifts: list[_Shift] = field(default_factory=list)


class PeArray:
    """An R x C weight-stationary array simulated PE by PE, cycle by cycle."""

    def __init__(self, rows: int, cols: int, *, multiply: str = "bf16",
                 rounding: str = "nearest_even") -> None:
        if not (isinstance(rows, int) and isinstance(cols, int) and rows >= 1 and cols >= 1):
            raise ValueError(f"array dimensions must be positive integers, got {rows}x{cols}")
        if multiply not in ("bf16", "f32"):
            raise ValueError(f"multiply dtype must be 'bf16' or 'f32', got {multiply!r}")
        if rounding not in ROUNDINGS:
            raise ValueError(f"bf16 rounding must be one of {', '.join(ROUNDINGS)}, got {rounding!r}")
        self.rows, self.cols = rows, cols
        self.multiply, self.rounding = multiply, rounding

    # -- operand preparation -------------------------------------------------------
    def _operand(self, values) -> np.ndarray:
        values = np.asarray(values, np.float32)
        if self.multiply == "bf16":
            return round_bf16(values, self.rounding)
        return values

    def _check_ops(self, ops) -> None:
        if not ops:
            raise ValueError("need at least one MATMUL")
        for i, op in enumerate(ops):
            inputs = np.asarray(op.inputs)
            if inputs.ndim != 2 or inputs.shape[0] < 1 or not 1 <= inputs.shape[1] <= self.rows:
                raise ValueError(f"MATMUL {i}: inputs must be T x K with T >= 1 and "
                                 f"1 <= K <= {self.rows}, got shape {inputs.shape}")
            if op.weights is None:
                continue
            weights = np.asarray(op.weights)
            if weights.ndim != 2 or weights.shape[0] != inputs.shape[1] \
                    or not 1 <= weights.shape[1] <= self.cols:
                raise ValueError(f"MATMUL {i}: weights must be K x N with K = {inputs.shape[1]} "
                                 f"and 1 <= N <= {self.cols}, got shape {weights.shape}")
        if ops[0].weights is None:
            raise ValueError("MATMUL 0 has no weights and no tile is active")

    # -- the simulation -------------------------------------------------------------
    def run(self, ops: list[PeMatmul], observer: Callable[[PeCycle], None] | None = None,
            max_cycles: int | None = None) -> PeRunResult:
        self._check_ops(ops)
        if max_cycles is None:   # generous: every MATMUL cold, after the latest ready time
            latest = max(max(op.ready, op.weights_ready) for op in ops)
            max_cycles = latest + sum(np.shape(op.inputs)[0] + 3 * (self.rows + self.cols)
                                      for op in ops)
        C = self.cols
        inputs = [self._operand(op.inputs) for op in ops]
        k_of = [x.shape[1] for x in inputs]
        tiles, tile_ready, tile_of_op, n_of = self._tiles(ops)
        swaps = np.array([t is not None for t in tile_of_op])
        outputs = [np.zeros((x.shape[0], n), np.float32) for x, n in zip(inputs, n_of)]
        remaining = [x.shape[0] * n for x, n in zip(inputs, n_of)]
        starts, ends, shift_starts = [None] * len(ops), [None] * len(ops), []
        st = self._empty_state()
        feed: dict[int, tuple[int, int]] = {}   # cycle -> (op, t) entering array row 0
        next_op, port_free, next_tile = 0, 0, 0
        cols_idx = np.arange(C)
        cycle = 0
        while any(e is None for e in ends):
            if cycle >= max_cycles:
                raise RuntimeError(f"PE simulation did not finish within {max_cycles} cycles "
                                   "(a MATMUL waits for weights that never arrive)")
            started = None
            # 1. sequencer: start the next MATMUL when port, inputs and weights allow.
            if next_op < len(ops) and self._may_start(st, ops[next_op], tile_of_op[next_op],
                                                       cycle, port_free):
                started, starts[next_op] = next_op, cycle
                for t in range(inputs[next_op].shape[0]):
                    feed[cycle + t] = (next_op, t)
                port_free = cycle + inputs[next_op].shape[0]
                next_op += 1
            self._feed_column0(st, feed, inputs, k_of, cycle)
            # 2. swaps travel with row 0 of a swapping MATMUL.
            self._swap(st, swaps, tile_of_op)
            # 3. the weight shifter starts the next tile once column 0 is free.
            shift_started = None
            if next_tile < len(tiles) and tile_ready[next_tile] <= cycle and self._column_free(st, 0):
                st.shifts.append(_Shift(next_tile, cycle))
                shift_starts.append(cycle)
                shift_started = next_tile
                next_tile += 1
            # 4. multiply-accumulate; bottom-row results leave.
            leaving = self._mac(st)
            for op, t, c, value in leaving:
                if c < n_of[op]:
                    outputs[op][t, c] = value
                    remaining[op] -= 1
                if t == inputs[op].shape[0] - 1 and c == C - 1:
                    ends[op] = cycle + 1
            if observer is not None:
                observer(PeCycle(cycle=cycle, leaving=leaving, started=started,
                                 shift_started=shift_started, **st.snapshot()))
            # 5. weights shift down (end of cycle); 6. operands move.
            self._shift_weights(st, tiles, cycle, cols_idx)
            self._move(st)
            cycle += 1
        assert all(r == 0 for r in remaining), "some results never left the array"
        return PeRunResult(outputs, starts, ends, shift_starts, max(ends))

    def _tiles(self, ops):
        """Each swapping MATMUL's tile, rounded and zero-padded to R x C, in FIFO order;
        when it is available; which tile each MATMUL swaps in (None: reuses); its N."""
        tiles, tile_ready, tile_of_op, n_of = [], [], [], []
        for op in ops:
            if op.weights is None:
                tile_of_op.append(None)
                n_of.append(n_of[-1])
                continue
            w = self._operand(op.weights)
            padded = np.zeros((self.rows, self.cols), np.float32)
            padded[:w.shape[0], :w.shape[1]] = w
            tile_of_op.append(len(tiles))
            tiles.append(padded)
            tile_ready.append(op.weights_ready)
            n_of.append(w.shape[1])
        return tiles, tile_ready, tile_of_op, n_of

    def _empty_state(self) -> _State:
        R, C = self.rows, self.cols
        weights = lambda: np.zeros((R, C), np.float32)   # noqa: E731
        return _State(active=weights(), shadow=weights(), x=weights(),
                      x_op=np.full((R, C), NO_OP), x_t=np.zeros((R, C), int),
                      psum=weights(), p_op=np.full((R, C), NO_OP), p_t=np.zeros((R, C), int),
                      col_tile=np.full(C, NO_OP), col_shifted=np.zeros(C, int),
                      col_swapped=np.zeros(C, int))

    def _may_start(self, st: _State, op: PeMatmul, tile, cycle: int, port_free: int) -> bool:
        if cycle < port_free or cycle < op.ready:
            return False
        if tile is None:
            return True
        # The tile must be entirely in column 0's shadow registers (the other columns
        # lag by the same skew as the inputs, which the swap travels with).
        return st.col_tile[0] == tile and st.col_shifted[0] == self.rows

    def _feed_column0(self, st: _State, feed, inputs, k_of, cycle: int) -> None:
        for r in range(self.rows):
            entry = feed.get(cycle - r)
            if entry is None:
                st.x_op[r, 0] = NO_OP
                st.x[r, 0] = 0.0
                continue
            op, t = entry
            st.x_op[r, 0], st.x_t[r, 0] = op, t
            st.x[r, 0] = inputs[op][t, r] if r < k_of[op] else 0.0

    def _swap(self, st: _State, swaps: np.ndarray, tile_of_op) -> None:
        valid = st.x_op != NO_OP
        mask = valid & (st.x_t == 0) & swaps[np.where(valid, st.x_op, 0)]
        if not mask.any():
            return
        for r, c in zip(*np.nonzero(mask)):
            wanted = tile_of_op[st.x_op[r, c]]
            if st.col_tile[c] != wanted or st.col_shifted[c] != self.rows:
                raise RuntimeError(f"hazard: PE({r},{c}) swaps in tile {wanted} but its column "
                                   f"holds tile {st.col_tile[c]} with {st.col_shifted[c]} rows")
        st.active[mask] = st.shadow[mask]
        st.col_swapped += mask.sum(axis=0)
        st.has_active = True

    def _column_free(self, st: _State, c: int) -> bool:
        """Column c's shadow registers may be overwritten: empty, or swapped out by all rows."""
        return st.col_tile[c] == NO_OP or st.col_swapped[c] == self.rows

    def _mac(self, st: _State) -> list[tuple[int, int, int, float]]:
        R = self.rows
        valid = st.x_op != NO_OP
        above = np.zeros_like(st.psum)
        above[1:] = st.psum[:-1]
        # The partial sum from above must belong to the same (MATMUL, row) as the input.
        inner = valid[1:]
        if not (np.array_equal(st.p_op[:-1][inner], st.x_op[1:][inner])
                and np.array_equal(st.p_t[:-1][inner], st.x_t[1:][inner])):
            raise RuntimeError("hazard: partial sums and inputs out of step")
        product = st.active * st.x     # bf16 x bf16 is exact in fp32
        st.psum = np.where(valid, above + product, np.float32(0)).astype(np.float32)
        st.p_op, st.p_t = st.x_op.copy(), st.x_t.copy()
        bottom = np.nonzero(valid[R - 1])[0]
        return [(int(st.x_op[R - 1, c]), int(st.x_t[R - 1, c]), int(c), float(st.psum[R - 1, c]))
                for c in bottom]

    def _shift_weights(self, st: _State, tiles, cycle: int, cols_idx) -> None:
        R = self.rows
        for shift in list(st.shifts):
            step = cycle - shift.start - cols_idx           # row step of each column
            cols = np.nonzero((step >= 0) & (step < R))[0]
            if cols.size == 0:
                continue
            for c in cols[step[cols] == 0]:                 # a column starts a new tile
                if not self._column_free(st, c):
                    raise RuntimeError(f"hazard: column {c} shifts tile {shift.tile} over tile "
                                       f"{st.col_tile[c]} before all rows swapped it in")
                st.col_tile[c], st.col_shifted[c], st.col_swapped[c] = shift.tile, 0, 0
            st.shadow[1:, cols] = st.shadow[:-1, cols]
            st.shadow[0, cols] = tiles[shift.tile][R - 1 - step[cols], cols]
            st.col_shifted[cols] += 1
            if step[-1] == R - 1:
                st.shifts.remove(shift)

    def _move(self, st: _State) -> None:
        st.x[:, 1:] = st.x[:, :-1]
        st.x_op[:, 1:] = st.x_op[:, :-1]
        st.x_t[:, 1:] = st.x_t[:, :-1]


def reference_outputs(ops: list[PeMatmul], multiply: str = "bf16",
                      rounding: str = "nearest_even") -> list[np.ndarray]:
    """NumPy reference: bf16-rounded operands, fp32 sums accumulated over k in order
    (the order partial sums flow down a column), so results match the array exactly."""
    results, weights = [], None
    for op in ops:
        if op.weights is not None:
            weights = np.asarray(op.weights, np.float32)
        x = np.asarray(op.inputs, np.float32)
        w = weights
        if multiply == "bf16":
            x, w = round_bf16(x, rounding), round_bf16(w, rounding)
        acc = np.zeros((x.shape[0], w.shape[1]), np.float32)
        for k in range(x.shape[1]):
            acc = (acc + x[:, k, None] * w[None, k, :]).astype(np.float32)
        results.append(acc)
    return results
