"""Building an instruction stream: dependency tokens from a scoreboard, and the UB allocator.

The code generator emits instructions in program order without thinking about the
units; `Emitter` orders them. Each unit (dma, weight, matrix, vector) runs its own
instructions in order and the units run concurrently, so whenever an instruction
touches memory another unit's instruction touched before -- read after write, write
after read, write after write; UB and accumulator rows, or host bytes -- it must wait
for it. The scoreboard keeps, per UB/accumulator row, the last writer and each unit's
last reader (host memory: the stores and the weight unit's host reads), and turns each
such hazard into a dependency token (runtime/systolic/isa.py: `push`/`pop`).

Tokens between two units pair up in order (the n-th pop of B from A takes the n-th
token A pushed to B). The emitter keeps that sound by only ever asking for a token
from an instruction later than the last one B already waited for: `waited[(A, B)]`.
Waiting for that later instruction also covers every earlier instruction of A (A runs
in order), and an instruction B already waited for needs no second token. The push is
set on the producer after the fact (instructions are kept as field dicts until
`finish`), so every token pushed is popped exactly once. The weight FIFO orders LOAD_W
before the MATMUL that swaps its tile in by itself.

`UBAllocator` hands out contiguous UB row ranges, first fit from a moving start so
freed rows are not reused at once (reuse would add write-after-read waits).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...runtime.systolic import isa
from ...runtime.systolic.config import SystolicConfig

UNITS = isa.UNITS


class UBOverflow(RuntimeError):
    """A request for more unified-buffer rows than are free."""


class Emitter:
    def __init__(self, config: SystolicConfig):
        self.config = config
        self.ops: list[tuple[str, dict]] = []          # (opcode, fields), pop/push added later
        self.units: list[str] = []
        self.last_write = {"ub": np.full(config.ub_rows, -1, np.int64),
                           "acc": np.full(config.acc_rows, -1, np.int64)}
        self.last_read = {space: {u: np.full(rows.shape, -1, np.int64) for u in UNITS}
                          for space, rows in self.last_write.items()}
        self.host_stores: list[tuple[int, int, int]] = []       # (lo, hi, index), DMA_STORE
        self.host_weight_reads: list[tuple[int, int, int]] = []  # (lo, hi, index), LOAD_W host
        self.waited = {(a, b): -1 for a in UNITS for b in UNITS if a != b}
        self.pops: dict[int, set[str]] = {}
        self.pushes: dict[int, set[str]] = {}
        self.counts: dict[str, int] = {}
        self.origin = ""                        # the HLO instruction being lowered
        self.origins: list[str] = []            # per emitted instruction

    # ------------------------------------------------------------ emitting

    def emit(self, name: str, **fields) -> int:
        ins = isa.make(name, **fields)              # field checks now, with the op's name
        unit = ins.unit
        index = len(self.ops)
        needs = self._hazards(ins, unit)
        for source, producer in needs.items():
            if producer > self.waited[(source, unit)]:
                self.waited[(source, unit)] = producer
                self.pushes.setdefault(producer, set()).add(unit)
                self.pops.setdefault(index, set()).add(source)
        self._record(ins, unit, index)
        self.ops.append((name, fields))
        self.units.append(unit)
        self.origins.append(self.origin)
        self.counts[name] = self.counts.get(name, 0) + 1
        return index

    def _hazards(self, ins, unit: str) -> dict[str, int]:
        """unit -> the latest instruction of that unit this one must wait for."""
        need: dict[str, int] = {}

        def wait(index: int):
            if index >= 0 and self.units[index] != unit:
                u = self.units[index]
                need[u] = max(need.get(u, -1), index)

        for a in ins.accesses(self.config):
            lo, hi = a.extent
            if a.space == "host":
                self._host_hazards(a, lo, hi, unit, wait)
                continue
            wait(int(self.last_write[a.space][lo:hi].max(initial=-1)))
            if a.write:
                for u, reads in self.last_read[a.space].items():
                    if u != unit:
                        wait(int(reads[lo:hi].max(initial=-1)))
        return need

    def _host_hazards(self, a, lo, hi, unit, wait):
        # Host memory is written only by DMA_STORE (dma unit) and read across units only
        # by LOAD_W (weight unit): DMA_LOAD/DMA_STORE share the dma unit's order.
        if unit == "weight" and not a.write:
            wait(_latest_overlap(self.host_stores, lo, hi, self.waited[("dma", "weight")]))
        elif unit == "dma" and a.write:
            wait(_latest_overlap(self.host_weight_reads, lo, hi, self.waited[("weight", "dma")]))

    def _record(self, ins, unit: str, index: int):
        for a in ins.accesses(self.config):
            lo, hi = a.extent
            if a.space == "host":
                if a.write:
                    self.host_stores.append((lo, hi, index))
                elif unit == "weight":
                    self.host_weight_reads.append((lo, hi, index))
            elif a.write:
                self.last_write[a.space][lo:hi] = index
            else:
                self.last_read[a.space][unit][lo:hi] = index

    def finish(self) -> list:
        """The program: every instruction with its tokens, then HALT."""
        program = []
        for index, (name, fields) in enumerate(self.ops):
            tokens = {}
            if index in self.pops:
                tokens["pop"] = tuple(u for u in UNITS if u in self.pops[index])
            if index in self.pushes:
                tokens["push"] = tuple(u for u in UNITS if u in self.pushes[index])
            program.append(isa.make(name, **fields, **tokens))
        program.append(isa.make("HALT"))
        self.origins.append("")
        return program


def _latest_overlap(regions: list[tuple[int, int, int]], lo: int, hi: int, floor: int) -> int:
    """The latest region overlapping [lo, hi) newer than `floor` (already waited for)."""
    for rlo, rhi, index in reversed(regions):
        if index <= floor:
            break
        if rlo < hi and lo < rhi:
            return index
    return -1


# ----------------------------------------------------------------------------- UB rows

@dataclass
class UBAllocator:
    rows: int
    cursor: int = 0

    def __post_init__(self):
        self.free: list[tuple[int, int]] = [(0, self.rows)]      # sorted (start, end)
        self.peak = 0
        self.used = 0

    def alloc(self, n: int) -> int:
        """A contiguous range of n rows: the first free range at or after the cursor that
        holds it, else the first from the bottom."""
        if n > self.rows:
            raise UBOverflow(f"{n} unified-buffer rows requested, the buffer has {self.rows}")
        order = sorted(self.free, key=lambda r: (r[0] < self.cursor, r[0]))
        for start, end in order:
            lo = max(start, self.cursor) if start < self.cursor < end and end - self.cursor >= n else start
            if end - lo >= n:
                self._take(lo, lo + n)
                self.cursor = lo + n
                self.used += n
                self.peak = max(self.peak, self.used)
                return lo
        raise UBOverflow(f"{n} unified-buffer rows requested, {self.rows - self.used} free "
                         f"in pieces of at most {max((e - s for s, e in self.free), default=0)}")

    def release(self, start: int, n: int) -> None:
        self.used -= n
        self.free.append((start, start + n))
        self.free.sort()
        merged: list[tuple[int, int]] = []
        for s, e in self.free:
            if merged and merged[-1][1] == s:
                merged[-1] = (merged[-1][0], e)
            else:
                merged.append((s, e))
        self.free = merged

    def _take(self, lo: int, hi: int) -> None:
        for k, (s, e) in enumerate(self.free):
            if s <= lo and hi <= e:
                pieces = [(s, lo)] * (lo > s) + [(hi, e)] * (e > hi)
                self.free[k:k + 1] = pieces
                return
        raise AssertionError("allocating rows that are not free")


def pipelined(items, load, compute) -> None:
    """Emit load(item i + 1) before compute(item i, loaded i): each unit runs its
    instructions in order, so the DMA unit can only fetch the next piece while this one
    computes if its loads come first in the program (software pipelining, depth 2)."""
    items = list(items)
    if not items:
        return
    pending = load(items[0])
    for i, item in enumerate(items):
        following = load(items[i + 1]) if i + 1 < len(items) else None
        compute(item, pending)
        pending = following
