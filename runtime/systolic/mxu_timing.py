"""The matrix unit's timing contract, in closed form.

The matrix unit (MXU) is a weight-stationary systolic array of R rows and C columns
(ARCHITECTURE.md §7). Everything else that times the machine (the program timing
model, the SCALE-Sim comparison, the reports) takes the MXU's cycles from here, and the
processing-element simulator (`pe_array.py`) reproduces them operand by operand.

The contract (cycle numbers are absolute; a MATMUL "starts" at cycle s when its first
input row enters the array):

- Input row t of a MATMUL reaches PE(r, c) at cycle s + t + r + c: the rows are skewed
  from the left (array row r sees its input r cycles late) and move one PE per cycle.
- Partial sums flow down; the result for (t, column c) leaves the bottom row at cycle
  s + t + (R - 1) + c.
- So a MATMUL of T rows holds the input port for T cycles ([s, s + T)) and completes
  T + R + C - 2 cycles after it starts (its last result leaves at s + T + R + C - 3).
  Timing always uses the full array: a K < R or N < C tile costs as much (SCALE-Sim
  counts the same way).
- A weight tile shifts into the shadow buffer one row per cycle: R cycles, column c
  c cycles after column 0 (the weights travel the same diagonal as the inputs). Its
  shift starts once the tile is available and the shadow buffer is free.
- A MATMUL with swap_weights makes the shadow tile active; the swap travels with its
  first input row, so PE(r, c) swaps at s + r + c. It can start only when its tile is
  entirely in the shadow buffer (shift start + R).
- The shadow buffer is free again R - 1 cycles after the swapping MATMUL starts: by
  then column 0's bottom PE has swapped (a shift writes at the end of its cycle, a swap
  reads at the start of its cycle), and every other column lags by the same skew.
- Consecutive MATMULs pipeline: the next starts as soon as the previous released the
  input port, its inputs are ready, and (with swap_weights) its tile is in the shadow
  buffer. Weight shifting overlaps the running MATMUL (double buffering).

A single MATMUL from cold therefore takes R (shift) + T + R + C - 2 = 2R + C + T - 2
cycles: SCALE-Sim's weight-stationary cycles per fold.
"""

from __future__ import annotations

from dataclasses import dataclass


def _check_dims(rows: int, cols: int) -> None:
    if not (isinstance(rows, int) and isinstance(cols, int) and rows >= 1 and cols >= 1):
        raise ValueError(f"systolic array dimensions must be positive integers, got {rows}x{cols}")


def input_arrival_cycle(start: int, t: int, r: int, c: int) -> int:
    """Cycle at which input row t of a MATMUL started at `start` reaches PE(r, c)."""
    return start + t + r + c


def result_exit_cycle(rows: int, start: int, t: int, c: int) -> int:
    """Cycle at which the result for input row t, column c leaves the bottom row."""
    return start + t + rows - 1 + c


def matmul_cycles(rows: int, cols: int, t_rows: int) -> int:
    """Start-to-completion cycles of one MATMUL of `t_rows` input rows."""
    _check_dims(rows, cols)
    if t_rows < 1:
        raise ValueError(f"a MATMUL streams at least one row, got T={t_rows}")
    return t_rows + rows + cols - 2


def weight_shift_cycles(rows: int) -> int:
    """Cycles to shift one weight tile into the shadow buffer (one row per cycle)."""
    return rows


def shadow_free_delay(rows: int) -> int:
    """Cycles after a swapping MATMUL starts until the shadow buffer may be refilled."""
    return rows - 1


def cold_matmul_cycles(rows: int, cols: int, t_rows: int) -> int:
    """One MATMUL from an empty array, weight shift included: 2R + C + T - 2."""
    return weight_shift_cycles(rows) + matmul_cycles(rows, cols, t_rows)


def pipelined_matmul_cycles(rows: int, cols: int, t_rows: list[int] | tuple[int, ...]) -> int:
    """MATMULs back to back on one resident tile (no swaps after the first): cold start,
    then each further MATMUL adds only its T rows."""
    if not t_rows:
        raise ValueError("need at least one MATMUL")
    return cold_matmul_cycles(rows, cols, t_rows[0]) + sum(t_rows[1:])


@dataclass(frozen=True)
class MxuOp:
    """One MATMUL as the MXU sees it.

    rows: T, the number of input rows streamed. swap_weights: make the next tile active
    (its tile shift is scheduled by the MXU). ready: earliest cycle its input rows can
    enter. weights_ready: earliest cycle its tile can start shifting in (when it reached
    the weight FIFO); only meaningful with swap_weights.
    """

    rows: int
    swap_weights: bool = False
    ready: int = 0
    weights_ready: int = 0


@dataclass(frozen=True)
class ShiftTiming:
    """A weight tile's shift into the shadow buffer: cycles [start, end)."""

    start: int
    end: int


@dataclass(frozen=True)
class MatmulTiming:
    """One scheduled MATMUL: input port held [start, start + rows), results done at `end`.

    `shift` is its weight tile's shift (None when it reuses the active tile).
    `waited_for` says what set its start beyond the earliest possible cycle: "ready"
    (its inputs), "input port" (the previous MATMUL still streaming), "weights" (its tile
    not yet in the shadow buffer) or "" (started at cycle 0 / nothing held it).
    """

    start: int
    end: int
    rows: int
    shift: ShiftTiming | None
    waited_for: str


class MxuPipeline:
    """The MXU's state between instructions: input port, active and shadow tiles.

    Call `matmul` in program order; each call returns its timing. The weight tile shift
    of a swapping MATMUL is scheduled inside that call (it may start long before the
    MATMUL, overlapping earlier MATMULs, as double buffering allows).
    """

    def __init__(self, rows: int, cols: int) -> None:
        _check_dims(rows, cols)
        self.rows = rows
        self.cols = cols
        self.input_free = 0        # first cycle the input port is free
        self.shadow_free = 0       # first cycle a new tile may start shifting in
        self.has_active = False
        self.busy_end = 0          # completion of the latest MATMUL

    def shift_tile(self, weights_ready: int) -> ShiftTiming:
        """Shift the next tile into the shadow buffer as early as allowed: once it is
        available and the previous shadow tile has been swapped in everywhere."""
        start = max(weights_ready, self.shadow_free)
        return ShiftTiming(start, start + weight_shift_cycles(self.rows))

    def matmul(self, t_rows: int, *, swap_weights: bool, ready: int = 0,
               weights_ready: int = 0) -> MatmulTiming:
        if t_rows < 1:
            raise ValueError(f"a MATMUL streams at least one row, got T={t_rows}")
        if not swap_weights and not self.has_active:
            raise ValueError("MATMUL without swap_weights but no weight tile is active")
        shift = self.shift_tile(weights_ready) if swap_weights else None
        candidates = {"ready": ready, "input port": self.input_free}
        if shift is not None:
            candidates["weights"] = shift.end
        start = max(candidates.values())
        waited_for = ""
        if start > 0:
            # Name the binding constraint; ties go to the first in this order.
            waited_for = next(k for k in ("weights", "input port", "ready")
                              if candidates.get(k) == start)
        end = start + matmul_cycles(self.rows, self.cols, t_rows)
        self.input_free = start + t_rows
        if swap_weights:
            self.has_active = True
            self.shadow_free = start + shadow_free_delay(self.rows)
        self.busy_end = max(self.busy_end, end)
        return MatmulTiming(start, end, t_rows, shift, waited_for)


def mxu_schedule(rows: int, cols: int, ops: list[MxuOp] | tuple[MxuOp, ...]) -> list[MatmulTiming]:
    """Start/end cycles of a sequence of MATMULs on an R x C array from cold."""
    pipeline = MxuPipeline(rows, cols)
    return [pipeline.matmul(op.rows, swap_weights=op.swap_weights, ready=op.ready,
                            weights_ready=op.weights_ready) for op in ops]


def mxu_total_cycles(rows: int, cols: int, ops: list[MxuOp] | tuple[MxuOp, ...]) -> int:
    """Cycle at which the last MATMUL of the sequence completes."""
    timings = mxu_schedule(rows, cols, ops)
    return max((t.end for t in timings), default=0)
