"""The validator: rejects an ill-formed program before it runs, naming the instruction.

`check(program, config)` returns every problem found; `validate(...)` raises
`ValidationError` listing them. What is checked:

- operands: counts >= 1, lane ranges within a row, tile extents within the array, host
  addresses and strides aligned to the element size, operand overlap rules (isa.py);
- addresses: every UB / accumulator row and host byte touched lies inside the memory of
  `config` (UB `config.ub_rows`, accumulators `config.acc_rows`, host `host_bytes`);
- the weight FIFO: no LOAD_W beyond `config.weight_fifo_depth` waiting tiles, no MATMUL
  without an active tile or swapping from an empty FIFO, no tile left unused at HALT;
- tokens: no pop of a token that was not pushed earlier in program order, no token left
  in a queue at HALT;
- HALT is the last instruction, and only there;
- races (`races=True`): two instructions of different units that touch the same UB or
  accumulator row or host byte, at least one writing, must be ordered by the program's
  synchronization (tokens, the weight FIFO, SYNC); otherwise the result would depend on
  timing. UB and accumulators are tracked per row, host memory per byte range.

A program that passes runs the same on any schedule the synchronization allows, so the
functional simulator (program order) and the timing model (concurrent units) agree.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from . import isa
from .config import SystolicConfig
from .isa import HOST_FORMATS, UNITS, Access, Instruction, IsaError

MAX_LISTED = 20


@dataclass(frozen=True)
class Problem:
    index: int            # instruction (word) index in the program, -1: the whole program
    text: str             # the instruction's assembly text (or its word in hex)
    message: str

    def __str__(self):
        if self.index < 0:
            return f"program: {self.message}"
        return f"instruction {self.index} `{self.text}`: {self.message}"


# The race check is costly on long programs: compiles and artifact loads run it when this is "1".
RACES_ENV = "TESSEL_SYSTOLIC_CHECK_RACES"

class ValidationError(ValueError):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        lines = [str(p) for p in problems[:MAX_LISTED]]
        if len(problems) > MAX_LISTED:
            lines.append(f"... and {len(problems) - MAX_LISTED} more")
        super().__init__(f"invalid systolic program ({len(problems)} problem"
                         f"{'s' if len(problems) != 1 else ''}):\n  " + "\n  ".join(lines))


def validate(program: Sequence[Instruction], config: SystolicConfig,
             host_bytes: int | None = None, races: bool = True) -> None:
    problems = check(program, config, host_bytes, races)
    if problems:
        raise ValidationError(problems)


def validate_binary(blob: bytes, config: SystolicConfig, host_bytes: int | None = None,
                    races: bool = True) -> list[Instruction]:
    """Decode and validate; an undecodable word (unknown opcode...) is a Problem too."""
    program, problems = [], []
    for index in range(0, len(blob) - len(blob) % isa.WORD_BYTES, isa.WORD_BYTES):
        word = blob[index:index + isa.WORD_BYTES]
        try:
            program.append(isa.decode(word, index // isa.WORD_BYTES))
        except IsaError as e:
            problems.append(Problem(index // isa.WORD_BYTES,
                                    f"0x{int.from_bytes(word, 'little'):032x}", str(e)))
    if len(blob) % isa.WORD_BYTES:
        problems.append(Problem(-1, "", f"{len(blob)} bytes is not a whole number of "
                                        f"{isa.WORD_BYTES}-byte words"))
    if problems:
        raise ValidationError(problems)
    validate(program, config, host_bytes, races)
    return program


def check(program: Sequence[Instruction], config: SystolicConfig,
          host_bytes: int | None = None, races: bool = True) -> list[Problem]:
    host_bytes = config.host_bytes if host_bytes is None else host_bytes
    state = _State(config, host_bytes, races, len(program))
    if config.dataflow != "ws":
        state.problems.append(Problem(-1, "", f"config.dataflow={config.dataflow!r}: programs "
                                      "run on the weight-stationary machine (dataflow='ws'); "
                                      "'os'/'is' only select the SCALE-Sim timing model"))
    for index, ins in enumerate(program):
        if not isinstance(ins, Instruction):
            return [Problem(index, repr(ins)[:80], f"expected an isa.Instruction (isa.make, "
                            f"asm.assemble), got {type(ins).__name__}")]
        state.step(index, ins)
    state.finish(len(program))
    return state.problems


# ----------------------------------------------------------------------------- operand rules

def _at_least_one(ins, *names):
    return [f"{n}={getattr(ins, n)}, expected >= 1" for n in names if getattr(ins, n) < 1]


def _lanes_fit(cfg, first, count, what):
    if first + count > cfg.lanes:
        return [f"{what} lanes [{first}, {first + count}) exceed the {cfg.lanes} lanes of a row"]
    return []


def _aligned(ins, esize, *names):
    return [f"{n}={getattr(ins, n)} is not a multiple of the {esize}-byte element ({ins.fmt})"
            for n in names if getattr(ins, n) % esize]


def _dma(ins, cfg):
    return (_at_least_one(ins, "rows", "cols") + _lanes_fit(cfg, ins.lane, ins.cols, "UB")
            + _aligned(ins, HOST_FORMATS[ins.fmt], "host", "stride"))


def _dma_store(ins, cfg):
    problems = _dma(ins, cfg)
    row_bytes = ins.cols * HOST_FORMATS[ins.fmt]
    if ins.rows > 1 and ins.stride < row_bytes:
        problems.append(f"stride={ins.stride} < {row_bytes} bytes per row: stored rows would "
                        "overlap")
    return problems


def _load_w(ins, cfg):
    problems = _at_least_one(ins, "k", "n")
    if ins.k > cfg.rows:
        problems.append(f"k={ins.k} exceeds the array's {cfg.rows} rows")
    if ins.n > cfg.cols:
        problems.append(f"n={ins.n} exceeds the array's {cfg.cols} columns")
    if ins.src == "host":
        problems += _aligned(ins, HOST_FORMATS[ins.fmt], "addr", "stride")
    elif ins.fmt != "f32":
        problems.append(f"fmt={ins.fmt} applies to host sources only; UB rows are f32 "
                        "(leave fmt=f32)")
    return problems


def _rows_only(ins, cfg):
    return _at_least_one(ins, "rows")


def _activate(ins, cfg):
    problems = _at_least_one(ins, "rows")
    if not ins.bias and ins.bias_ub:
        problems.append(f"bias_ub={ins.bias_ub} without bias=1")
    if ins.bias and ins.ub <= ins.bias_ub < ins.ub + ins.rows:
        problems.append(f"the bias row {ins.bias_ub} lies inside the rows written "
                        f"[{ins.ub}, {ins.ub + ins.rows})")
    return problems


def _same_or_disjoint(dst, sources):
    """Vector ops stream row by row: a source must be the destination rows or apart."""
    problems = []
    lo, hi = dst
    for name, (slo, shi) in sources:
        if (slo, shi) != (lo, hi) and slo < hi and lo < shi:
            problems.append(f"{name} rows [{slo}, {shi}) overlap the destination rows "
                            f"[{lo}, {hi}) without being the same rows")
    return problems


def _span(start, rows, bcast=0):
    return start, start + (1 if bcast else rows)


def _vec_bin(ins, cfg):
    return _rows_only(ins, cfg) + _same_or_disjoint(
        _span(ins.dst, ins.rows),
        [("src0", _span(ins.src0, ins.rows, ins.src0_bcast)),
         ("src1", _span(ins.src1, ins.rows, ins.src1_bcast))])


def _vec_unary(ins, cfg):
    return _rows_only(ins, cfg) + _same_or_disjoint(
        _span(ins.dst, ins.rows), [("src", _span(ins.src, ins.rows, ins.src_bcast))])


def _vec_sel(ins, cfg):
    return _rows_only(ins, cfg) + _same_or_disjoint(
        _span(ins.dst, ins.rows),
        [(n, _span(getattr(ins, n), ins.rows)) for n in ("mask", "src0", "src1")])


def _vec_red(ins, cfg):
    problems = _at_least_one(ins, "rows", "lanes") + _lanes_fit(cfg, 0, ins.lanes, "reduced")
    if ins.axis == "lanes":
        problems += _same_or_disjoint(_span(ins.dst, ins.rows), [("src", _span(ins.src, ins.rows))])
    return problems


def _vec_trans(ins, cfg):
    problems = _at_least_one(ins, "rows", "lanes")
    for name in ("rows", "lanes"):
        if getattr(ins, name) > cfg.lanes:
            problems.append(f"{name}={getattr(ins, name)} exceeds the {cfg.lanes} lanes of a row")
    src, dst = _span(ins.src, ins.rows), _span(ins.dst, ins.lanes)
    if src[0] < dst[1] and dst[0] < src[1]:
        problems.append(f"source rows [{src[0]}, {src[1]}) and destination rows "
                        f"[{dst[0]}, {dst[1]}) overlap")
    return problems


OPERAND_RULES = {
    "DMA_LOAD": _dma, "DMA_STORE": _dma_store, "LOAD_W": _load_w, "MATMUL": _rows_only,
    "ACTIVATE": _activate, "VEC_BIN": _vec_bin, "VEC_IMM": _vec_unary, "VEC_UN": _vec_unary,
    "VEC_SEL": _vec_sel, "VEC_RED": _vec_red, "VEC_TRANS": _vec_trans,
    "SYNC": lambda ins, cfg: [], "HALT": lambda ins, cfg: [],
}
assert set(OPERAND_RULES) == set(isa.OPCODES)


# ----------------------------------------------------------------------------- program state

class _State:
    """Walks the program in order: memory bounds, weight FIFO, tokens, races."""

    def __init__(self, config: SystolicConfig, host_bytes: int, races: bool, length: int):
        self.config, self.host_bytes = config, host_bytes
        self.problems: list[Problem] = []
        self.fifo: deque[int] = deque()           # indices of LOAD_Ws waiting in the FIFO
        self.tile_k: dict[int, int] = {}          # LOAD_W index -> its tile's k
        self.active_k: int | None = None          # k of the active weight tile
        self.tokens = {(s, d): deque() for s in UNITS for d in UNITS if s != d}
        self.halted_at: int | None = None
        self.sizes = {"ub": config.ub_rows, "acc": config.acc_rows, "host": host_bytes}
        self.races = _RaceChecker(config, length) if races else None

    def report(self, index, ins, message):
        self.problems.append(Problem(index, str(ins), message))

    def step(self, index: int, ins: Instruction):
        if self.halted_at is not None:
            self.report(index, ins, f"follows HALT (instruction {self.halted_at}): "
                        "HALT must be the last instruction")
        for message in OPERAND_RULES[ins.name](ins, self.config):
            self.report(index, ins, message)
        accesses = ins.accesses(self.config)
        for access in accesses:
            self._bounds(index, ins, access)
        pops = self._pop_tokens(index, ins)
        fifo_source = self._weights(index, ins)
        if ins.name == "HALT":
            self.halted_at = index
        if self.races is not None:
            for message in self.races.step(index, ins, accesses, pops, fifo_source):
                self.report(index, ins, message)
        self._push_tokens(index, ins)

    def _bounds(self, index, ins, access: Access):
        lo, hi = access.extent
        size = self.sizes[access.space]
        if hi > size:
            unit = "bytes" if access.space == "host" else "rows"
            what = {"ub": "UB", "acc": "accumulator", "host": "host"}[access.space]
            verb = "writes" if access.write else "reads"
            self.report(index, ins, f"{verb} {what} {unit} [{lo}, {hi}), beyond the "
                        f"{size} {unit} of {what} memory")

    def _weights(self, index, ins) -> int | None:
        """Tracks the FIFO; returns the LOAD_W a swapping MATMUL takes its tile from."""
        cfg = self.config
        if ins.name == "LOAD_W":
            self.fifo.append(index)
            self.tile_k[index] = ins.k
            if len(self.fifo) > cfg.weight_fifo_depth:
                self.report(index, ins, f"weight FIFO overflow: {len(self.fifo)} tiles would "
                            f"wait (depth {cfg.weight_fifo_depth}); swap one in with "
                            "MATMUL swap=1 first")
            return None
        if ins.name != "MATMUL":
            return None
        source = None
        if ins.swap:
            if not self.fifo:
                self.report(index, ins, "swap=1 but no weight tile is waiting in the FIFO "
                            "(no LOAD_W since the last swap)")
            else:
                source = self.fifo.popleft()
                self.active_k = self.tile_k[source]
        if self.active_k is None:
            if not ins.swap:
                self.report(index, ins, "no weights loaded: the array has no active tile "
                            "(LOAD_W, then MATMUL swap=1)")
        elif ins.lane + self.active_k > cfg.lanes:
            self.report(index, ins, f"input lanes [{ins.lane}, {ins.lane + self.active_k}) "
                        f"(k={self.active_k} of the active tile) exceed the {cfg.lanes} lanes")
        return source

    def _pop_tokens(self, index, ins) -> list[int]:
        pushes = []
        for source in ins.args.get("pop", ()):
            queue = self.tokens[(source, ins.unit)]
            if not queue:
                self.report(index, ins, f"pops a token from the {source} unit that was never "
                            f"pushed (no earlier {source} instruction has push={ins.unit} "
                            "left unconsumed)")
            else:
                pushes.append(queue.popleft())
        return pushes

    def _push_tokens(self, index, ins):
        for target in ins.args.get("push", ()):
            self.tokens[(ins.unit, target)].append(index)

    def finish(self, length: int):
        if self.halted_at is None:
            self.problems.append(Problem(-1, "", f"missing HALT: the last of {length} "
                                         "instructions must be HALT"))
        for (source, target), queue in self.tokens.items():
            if queue:
                self.problems.append(Problem(-1, "", f"{len(queue)} token(s) from {source} to "
                                             f"{target} never popped (the first pushed by "
                                             f"instruction {queue[0]})"))
        if self.fifo:
            self.problems.append(Problem(-1, "", f"{len(self.fifo)} weight tile(s) loaded but "
                                         f"never swapped in (the first by instruction "
                                         f"{self.fifo[0]})"))


# ----------------------------------------------------------------------------- races

class _RaceChecker:
    """Happens-before by vector clocks: clock[u] = the number of unit u's instructions
    ordered before (or at) this one. Edges: program order within a unit, token push ->
    pop, LOAD_W -> the MATMUL that swaps its tile in, and SYNC barriers. Shadow memory
    keeps, per UB / accumulator row, the last writer and each unit's last reader (checking
    those suffices: earlier accesses were checked against them); host memory keeps the
    stores and the host weight reads (only the dma and weight units touch the host), in
    unit order, so only those not yet ordered before the checker are scanned."""

    def __init__(self, config: SystolicConfig, length: int):
        self.unit_index = {u: i for i, u in enumerate(UNITS)}
        # per instruction: its unit and its sequence number on that unit. Index -1 (no
        # access yet) reads the extra last slot: unit 0, seq 0, ordered before everything.
        self.unit_of = np.zeros(length + 1, np.int64)
        self.seq_of = np.zeros(length + 1, np.int64)
        self.clock_of: dict[int, tuple[int, ...]] = {}   # small tuples: faster than arrays
        zero = (0,) * len(UNITS)
        self.unit_clock = [zero] * len(UNITS)
        self.barrier = zero
        self.joined = zero                               # join of every clock so far
        rows = {"ub": config.ub_rows, "acc": config.acc_rows}
        self.last_write = {s: np.full(n, -1, np.int64) for s, n in rows.items()}
        self.last_read = {s: np.full((len(UNITS), n), -1, np.int64) for s, n in rows.items()}
        self.host = {True: _Regions(), False: _Regions()}   # stores, host weight reads

    def step(self, index, ins, accesses, pops, fifo_source) -> list[str]:
        if ins.unit == isa.CONTROL:
            if ins.name == "SYNC":
                self.barrier = self.joined
            return []
        u = self.unit_index[ins.unit]
        clock = list(map(max, self.unit_clock[u], self.barrier))
        for source in pops + ([fifo_source] if fifo_source is not None else []):
            clock = list(map(max, clock, self.clock_of[source]))
        clock[u] += 1
        self.unit_clock[u] = self.clock_of[index] = tuple(clock)
        self.unit_of[index], self.seq_of[index] = u, clock[u]
        self.joined = tuple(map(max, self.joined, clock))
        clock = np.array(clock)
        messages = []
        for access in accesses:
            messages += self._check(u, clock, access)
        for access in accesses:
            self._record(index, u, access)
        return messages

    def _unordered(self, earlier: np.ndarray, u: int, clock) -> np.ndarray:
        """The instructions among `earlier` (indices, -1 = none) of other units that are
        not ordered before an instruction of unit u with this clock."""
        units, seqs = self.unit_of[earlier], self.seq_of[earlier]
        bad = (units != u) & (clock[units] < seqs)
        return np.unique(earlier[bad]) if bad.any() else ()

    def _rows(self, access: Access, size: int):
        if access.stride == 1:
            return slice(access.start, min(access.start + access.count, size))
        rows = access.start + access.stride * np.arange(access.count)
        return rows[rows < size]

    def _check(self, u, clock, access) -> list[str]:
        if access.space == "host":
            return self._check_host(u, clock, access)
        rows = self._rows(access, len(self.last_write[access.space]))
        conflicts = [(w, "wrote") for w in
                     self._unordered(self.last_write[access.space][rows], u, clock)]
        if access.write:
            readers = self.last_read[access.space][:, rows]
            conflicts += [(r, "read") for r in self._unordered(readers.ravel(), u, clock)]
        return [_race_message(access, how, int(other), UNITS[self.unit_of[other]])
                for other, how in conflicts]

    def _check_host(self, u, clock, access) -> list[str]:
        against = self.host[not access.write]
        if not against.count:
            return []
        other_unit = int(self.unit_of[against.index[0]])
        if other_unit == u:
            return []
        how = "read" if access.write else "wrote"
        lo, hi = access.extent
        return [_race_message(access, how, other, UNITS[other_unit])
                for other, region in against.unordered_overlaps(lo, hi, clock[other_unit])
                if regions_overlap(access, region)]

    def _record(self, index, u, access: Access):
        if access.space == "host":
            if access.write or UNITS[u] == "weight":
                self.host[access.write].append(int(self.seq_of[index]), index, access)
            return
        rows = self._rows(access, len(self.last_write[access.space]))
        if access.write:
            self.last_write[access.space][rows] = index
        else:
            self.last_read[access.space][u, rows] = index


class _Regions:
    """Host regions of one unit, in its order, with their bounding intervals in arrays so
    the candidates for an overlap are found without a Python loop over all of them."""

    def __init__(self):
        self.count = 0
        self.lo = self.hi = self.seq = self.index = np.zeros(0, np.int64)
        self.accesses: list[Access] = []

    def append(self, seq: int, index: int, access: Access):
        if self.count == len(self.lo):
            size = max(16, 2 * self.count)
            self.lo, self.hi, self.seq, self.index = (np.resize(a, size) for a in
                                                      (self.lo, self.hi, self.seq, self.index))
        lo, hi = access.extent
        n = self.count
        self.lo[n], self.hi[n], self.seq[n], self.index[n] = lo, hi, seq, index
        self.accesses.append(access)
        self.count += 1

    def unordered_overlaps(self, lo: int, hi: int, ordered_up_to: int):
        """(instruction index, access) of the regions after sequence number
        `ordered_up_to` whose bounding interval meets [lo, hi)."""
        n = self.count
        hits = np.flatnonzero((self.seq[:n] > ordered_up_to) & (self.lo[:n] < hi)
                              & (self.hi[:n] > lo))
        return [(int(self.index[k]), self.accesses[k]) for k in hits]


def _race_message(access: Access, how: str, other: int, other_unit: str) -> str:
    what = {"ub": "UB rows", "acc": "accumulator rows", "host": "host bytes"}[access.space]
    lo, hi = access.extent
    verb = "writes" if access.write else "reads"
    return (f"race: {verb} {what} in [{lo}, {hi}) that instruction {other} "
            f"({other_unit} unit) {how}, with no token, FIFO or SYNC ordering them "
            f"(push a token from {other_unit} and pop it here)")


def regions_overlap(a: Access, b: Access) -> bool:
    """Whether two strided byte regions share a byte (exact, O(min(count)))."""
    (alo, ahi), (blo, bhi) = a.extent, b.extent
    if a.count == 0 or b.count == 0 or ahi <= blo or bhi <= alo:
        return False
    a, b = _single_if_repeated(a), _single_if_repeated(b)
    if a.count > b.count:
        a, b = b, a
    for i in range(a.count):
        lo = a.start + i * a.stride
        hi = lo + a.width                       # bytes [lo, hi) against b's items
        first = max(0, -(-(lo - b.start - b.width + 1) // b.stride))
        last = min(b.count - 1, (hi - 1 - b.start) // b.stride)
        if first <= last:
            return True
    return False


def _single_if_repeated(a: Access) -> Access:
    """A stride-0 region touches its one item `count` times: the same bytes as one item."""
    return Access(a.space, a.write, a.start, 1, 1, a.width) if a.stride == 0 else a
