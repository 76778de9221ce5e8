"""The timing model: how many cycles a systolic program takes, and where they went.

`simulate_timing(program, config)` walks the program once. Each unit (DMA, weight,
matrix, vector; isa.UNITS) executes its own instructions in program order; units run
concurrently and wait only for what the program says: dependency tokens (an
instruction's `pop` waits for the matching `push`, which is sent when the pushing
instruction finishes), the weight FIFO (a swapping MATMUL needs its tile; a LOAD_W needs
a free FIFO slot) and SYNC barriers. Every dependency points backwards in program order
(the validator's token and FIFO rules guarantee it), so one pass in program order
schedules everything; the model is deterministic and linear in program length.

Per unit (hardware facts from `SystolicConfig`):

- dma: DMA_LOAD / DMA_STORE take latency + ceil(bytes / bandwidth) cycles. The channel
  is pipelined: the next transfer may start when the previous one's bytes have gone
  (its latency overlaps), so back-to-back DMAs cost latency once plus their bytes.
- weight: LOAD_W from host memory works like a DMA on the weight path (TPU v1 has a
  weight memory of its own: the weight unit does not share the DMA channel); from the
  UB it reads one UB row per cycle. The tile enters the weight FIFO when the load ends;
  a load needs a free slot (`weight_fifo_depth` tiles; a slot frees when its tile has
  shifted into the array's shadow buffer).
- matrix: the MXU timing contract (`mxu_timing.MxuPipeline`): skew, fill and drain
  (T + R + C - 2 per MATMUL), R-cycle weight shift into the shadow buffer overlapping
  the running MATMUL, back-to-back MATMULs pipelined on the input port.
- vector: ACTIVATE and VEC_* stream one UB row of `lanes` words per cycle
  (isa's `stream_rows`: rows, or max(rows, lanes) for a transpose).
- control: SYNC waits for every earlier instruction to finish (and takes no cycles);
  HALT ends the program when all units have drained.

Not modelled: UB / accumulator bank conflicts, instruction fetch and issue, DMA
descriptor overheads, host-side contention between the DMA and weight paths, power and
clock throttling. Memory stalls inside SCALE-Sim-style folds are not modelled either
(see docs/systolic-timing.md).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

from . import isa
from .config import WORD_BYTES, SystolicConfig
from .mxu_timing import MxuPipeline

UNITS = isa.UNITS                      # dma, weight, matrix, vector
TRACKS = UNITS + ("weight shift",)     # the shift into the array's shadow buffer

# Where each instruction's bytes go (key of TimingResult.bytes_moved).
BYTE_DIRECTIONS = ("host->ub", "ub->host", "host->weights", "ub->weights")


class TimingError(ValueError):
    """A program the timing model cannot schedule (names the instruction)."""


class Event(NamedTuple):   # a tuple: cheap to make by the hundred thousand
    """One instruction's execution: [start, end) on `unit`.

    stall: cycles the unit sat idle before it because of `reason` ("" if none):
    "token from <unit>", "sync", "weights" (tile not yet in the shadow buffer) or
    "weight FIFO full". macs: useful multiply-accumulates (MATMUL: T * k * n).
    """

    index: int
    unit: str
    name: str
    start: int
    end: int
    stall: int = 0
    reason: str = ""
    macs: int = 0


@dataclass
class TimingResult:
    """What `simulate_timing` returns; `report.py` renders it."""

    config: SystolicConfig
    program: list
    events: list[Event]
    shifts: list[Event]                 # weight-tile shifts (unit "weight shift")
    total_cycles: int
    macs: int                           # useful multiply-accumulates (T * k * n per MATMUL)
    streamed_rows: int                  # MATMUL input rows: cycles the input port was busy
    busy: dict[str, int]                # per track: cycles with at least one event running
    stalls: dict[str, dict[str, int]]   # per unit: reason -> idle cycles
    bytes_moved: dict[str, int] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.total_cycles / self.config.clock_hz

    @property
    def mxu_utilization(self) -> float:
        """Useful MACs over (R * C * total cycles)."""
        if self.total_cycles == 0:
            return 0.0
        return self.macs / (self.config.rows * self.config.cols * self.total_cycles)

    def busy_fraction(self, unit: str) -> float:
        return self.busy.get(unit, 0) / self.total_cycles if self.total_cycles else 0.0

    def events_of(self, unit: str) -> list[Event]:
        return [e for e in self.events if e.unit == unit]

    def summary(self) -> dict:
        """The headline numbers as plain data (JSON-ready)."""
        return {"rows": self.config.rows, "cols": self.config.cols,
                "clock_hz": self.config.clock_hz, "instructions": len(self.program),
                "total_cycles": self.total_cycles, "seconds": self.seconds,
                "macs": self.macs, "mxu_utilization": self.mxu_utilization,
                "busy_cycles": dict(self.busy),
                "stall_cycles": {u: dict(r) for u, r in self.stalls.items()},
                "bytes_moved": dict(self.bytes_moved)}


def transfer_cycles(num_bytes: int, bytes_per_cycle: float) -> int:
    """Cycles a channel is occupied moving `num_bytes`."""
    return math.ceil(num_bytes / bytes_per_cycle)


def dma_cycles(num_bytes: int, config: SystolicConfig) -> int:
    """One DMA on its own: latency + bytes / bandwidth."""
    return config.host_latency_cycles + transfer_cycles(num_bytes, config.host_bytes_per_cycle)


class _Scheduler:
    """The state of all units while walking the program in order."""

    def __init__(self, config: SystolicConfig):
        self.config = config
        self.mxu = MxuPipeline(config.rows, config.cols)
        self.unit_free = {u: 0 for u in UNITS}        # when each unit may issue its next
        self.tokens = {(s, d): deque() for s in UNITS for d in UNITS if s != d}
        self.barrier = 0                               # start of everything after a SYNC
        self.latest_end = 0                            # end of everything so far
        self.fifo: deque[tuple[int, int]] = deque()    # (LOAD_W end, k * n) per waiting tile
        self.loads = 0                                 # LOAD_Ws so far
        self.tile_left: list[int] = []                 # per tile (load order): shift end
        self.active_kn: int | None = None
        self.events: list[Event] = []
        self.shifts: list[Event] = []
        self.macs = 0
        self.streamed_rows = 0
        self.bytes_moved = dict.fromkeys(BYTE_DIRECTIONS, 0)
        self.halted = False

    # -- dependencies --------------------------------------------------------------
    def _dependencies(self, index: int, ins) -> dict[str, int]:
        """Earliest start allowed by each dependency of `ins`, by stall reason."""
        deps = {"sync": self.barrier}
        for source in ins.args.get("pop", ()):
            queue = self.tokens[(source, ins.unit)]
            if not queue:
                raise TimingError(f"instruction {index} `{ins}`: pops a token from the {source} "
                                  f"unit that no earlier {source} instruction pushed")
            deps[f"token from {source}"] = queue.popleft()   # one token per source unit
        return deps

    def _finish(self, index: int, ins, start: int, end: int, earliest: int,
                deps: dict[str, int], macs: int = 0) -> None:
        stall, reason = start - earliest, ""
        if stall > 0:
            # The dependency that released the instruction last (a SYNC only when
            # nothing more specific ties with it).
            reason = max(deps, key=lambda k: (deps[k], k != "sync"))
        self.events.append(Event(index, ins.unit, ins.name, start, end, max(stall, 0), reason,
                                 macs))
        for target in ins.args.get("push", ()):
            self.tokens[(ins.unit, target)].append(end)
        self.latest_end = max(self.latest_end, end)

    # -- units -----------------------------------------------------------------------
    def dma(self, index: int, ins) -> None:
        deps = self._dependencies(index, ins)
        num_bytes = ins.host_bytes(self.config)
        direction = "host->ub" if ins.name == "DMA_LOAD" else "ub->host"
        self.bytes_moved[direction] += num_bytes
        earliest = self.unit_free["dma"]
        start = max(earliest, *deps.values())
        occupy = transfer_cycles(num_bytes, self.config.host_bytes_per_cycle)
        self.unit_free["dma"] = start + occupy
        self._finish(index, ins, start, start + self.config.host_latency_cycles + occupy,
                     earliest, deps)

    def load_w(self, index: int, ins) -> None:
        cfg = self.config
        deps = self._dependencies(index, ins)
        oldest = self.loads - cfg.weight_fifo_depth    # the tile whose slot this one takes
        if oldest >= 0:
            if oldest >= len(self.tile_left):
                raise TimingError(f"instruction {index} `{ins}`: weight FIFO overflow: "
                                  f"{len(self.fifo)} tiles already wait (depth "
                                  f"{cfg.weight_fifo_depth}); swap one in with MATMUL swap=1 first")
            deps["weight FIFO full"] = self.tile_left[oldest]
        self.loads += 1
        earliest = self.unit_free["weight"]
        start = max(earliest, *deps.values())
        rows, per_row = isa.load_w_source_shape(ins)
        if ins.src == "host":
            num_bytes = ins.host_bytes(cfg)
            self.bytes_moved["host->weights"] += num_bytes
            occupy = transfer_cycles(num_bytes, cfg.host_bytes_per_cycle)
            end = start + cfg.host_latency_cycles + occupy
        else:
            self.bytes_moved["ub->weights"] += rows * per_row * WORD_BYTES
            occupy = rows                 # one UB row per cycle
            end = start + occupy
        self.unit_free["weight"] = start + occupy
        self.fifo.append((end, ins.k * ins.n))
        self._finish(index, ins, start, end, earliest, deps)

    def matmul(self, index: int, ins) -> None:
        deps = self._dependencies(index, ins)
        weights_ready = 0
        if ins.swap:
            if not self.fifo:
                raise TimingError(f"instruction {index} `{ins}`: swap=1 but no weight tile was "
                                  "loaded (LOAD_W) since the last swap")
            weights_ready, self.active_kn = self.fifo.popleft()
        elif self.active_kn is None:
            raise TimingError(f"instruction {index} `{ins}`: no weights loaded (LOAD_W, then "
                              "MATMUL swap=1)")
        earliest = self.mxu.input_free
        timing = self.mxu.matmul(ins.rows, swap_weights=bool(ins.swap),
                                 ready=max(deps.values()), weights_ready=weights_ready)
        if timing.shift is not None:
            self.shifts.append(Event(index, "weight shift", "SHIFT", timing.shift.start,
                                     timing.shift.end))
            self.tile_left.append(timing.shift.end)
            self.latest_end = max(self.latest_end, timing.shift.end)
        if timing.waited_for == "weights":
            deps["weights"] = timing.start
        self.macs += ins.rows * self.active_kn
        self.streamed_rows += ins.rows
        self.unit_free["matrix"] = self.mxu.input_free
        self._finish(index, ins, timing.start, timing.end, earliest, deps,
                     macs=ins.rows * self.active_kn)

    def vector(self, index: int, ins) -> None:
        deps = self._dependencies(index, ins)
        earliest = self.unit_free["vector"]
        start = max(earliest, *deps.values())
        end = start + ins.stream_rows          # one row of `lanes` words per cycle
        self.unit_free["vector"] = end
        self._finish(index, ins, start, end, earliest, deps)

    def sync(self, index: int, ins) -> None:
        self.barrier = max(self.barrier, self.latest_end)

    def halt(self, index: int, ins) -> None:
        self.halted = True


_HANDLERS = {"DMA_LOAD": "dma", "DMA_STORE": "dma", "LOAD_W": "load_w", "MATMUL": "matmul",
             "SYNC": "sync", "HALT": "halt"}


def _handler(state: _Scheduler, ins):
    """The scheduler's method for `ins` (every vector-unit opcode streams rows alike)."""
    name = _HANDLERS.get(ins.name) or ("vector" if ins.unit == "vector" else None)
    if name is None:
        raise TimingError(f"no timing rule for {ins.name} (unit {ins.unit})")
    return getattr(state, name)


def _as_program(program) -> list:
    if isinstance(program, str):
        from .asm import assemble
        return assemble(program)
    if isinstance(program, (bytes, bytearray)):
        return isa.decode_program(bytes(program))
    return list(program)


def _busy_cycles(events: list[Event]) -> int:
    """Length of the union of [start, end) over events sorted by start."""
    total, cover_end = 0, None
    for e in sorted(events, key=lambda e: e.start):
        if cover_end is None or e.start >= cover_end:
            total += e.end - e.start
            cover_end = e.end
        elif e.end > cover_end:
            total += e.end - cover_end
            cover_end = e.end
    return total


def simulate_timing(program, config: SystolicConfig | None = None, *,
                    check: bool = False) -> TimingResult:
    """Cycles, utilization, busy time, stalls and bytes moved of a systolic program.

    `program`: a list of isa.Instruction, assembly text, or the binary encoding.
    `check`: run the validator first (without the race check), so an ill-formed program
    is refused with every problem listed; otherwise only what timing needs is checked.
    """
    config = SystolicConfig() if config is None else config
    program = _as_program(program)
    if check:
        from .validate import validate
        validate(program, config, races=False)
    state = _Scheduler(config)
    handlers = {}
    for index, ins in enumerate(program):
        if state.halted:
            raise TimingError(f"instruction {index} `{ins}` follows HALT")
        handler = handlers.get(ins.name)
        if handler is None:
            handler = handlers[ins.name] = _handler(state, ins)
        handler(index, ins)
    events = state.events
    by_unit = {u: [e for e in events if e.unit == u] for u in UNITS}
    by_unit["weight shift"] = state.shifts
    stalls = {u: {} for u in UNITS}
    for e in events:
        if e.stall:
            stalls[e.unit][e.reason] = stalls[e.unit].get(e.reason, 0) + e.stall
    return TimingResult(
        config=config, program=program, events=events, shifts=state.shifts,
        total_cycles=state.latest_end, macs=state.macs, streamed_rows=state.streamed_rows,
        busy={u: _busy_cycles(evs) for u, evs in by_unit.items()}, stalls=stalls,
        bytes_moved=state.bytes_moved)
