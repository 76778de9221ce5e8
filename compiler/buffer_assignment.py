"""Buffer assignment: where every value of the entry computation lives while it runs.

An analysis, not a pass. `assign_buffers(module)` plans the memory of the ENTRY
computation in its current instruction order (run the `schedule` pass first: it picks
the order whose plan has the lowest peak). The CPU backend's single native entry
`entry(args, results, scratch)` runs the kernels in that order over the planned
buffers and allocates one scratch arena of `scratch_bytes`. `plan_computation(comp,
order)` plans any computation in any order (its parameters are the arguments, its
root the outputs); `memory_analysis(module)` summarizes the entry's plan.

    ba = assign_buffers(module, reuse=True, donated_parameters=())
    ba.buffer_of(instr)      # Slice(kind, index, size), or a list of them for a tuple
    ba.scratch_bytes, ba.peak_bytes, ba.in_place, ba.output_aliases, ba.to_text()

Logical buffers and aliasing
    A logical buffer is one array leaf of a value some instruction defines. Most ops
    define one buffer per leaf of their result. The ops of `ALIAS_RULES` define none and
    point at buffers their operands already hold:
        tuple               the buffers of its elements
        get_tuple_element   the buffers of the selected element
        reshape             its operand's buffer, when both shapes are row-major (a bitcast)
    A bitcast reshape aliases its operand whether or not the operand is still live:
    values are immutable, and liveness is tracked per buffer, so the shared buffer lives
    as long as either name is used.

Liveness
    Number the instructions 0..n-1 in order. A buffer is live from the step that defines
    it to the last step that reads it; alias ops read nothing, their users do. A buffer
    nobody reads lives for its defining step only. Buffers of the root live to step n,
    past the end. At a step, the operands read and the result written are both live.

Storage kinds (`Slice.kind`) and what `Slice.index` means for each
    argument  caller memory of a parameter leaf; index = flat argument number
              (parameters by index, tuple parameters flattened leaf by leaf)
    output    caller memory of a root leaf; index = flat output number
    constant  the read-only constant section; index = byte offset
    scratch   the scratch arena; index = byte offset, a multiple of ALIGNMENT
    An alias op's `buffer_of` is the storage of the buffer it points at (what a backend
    needs to form a pointer); `is_alias` tells that it allocates nothing.

In place (reuse on)
    An op that writes elementwise -- an elementwise op, or a loop fusion whose root is
    elementwise and which reads the operand only through same-shaped elementwise ops --
    may write its result into an operand's storage when that storage dies at this step
    and has the result's byte size, dims and layout. So may a dynamic_update_slice into
    its operand 0 (XLA's in-place update: only the update window is written; a kernel
    whose result shares its operand's storage skips copying the operand). Never into a
    constant, never into an argument unless its parameter is in `donated_parameters`
    (as JAX's donate_argnums). Output and input fusions never write in place: a
    blocked GEMM accumulates partial sums in its result buffer before the epilogue
    reads the epilogue operands.

Loop-carried state (`plan_computation(body, carried=True)`, for a while body)
    The body's parameter leaves and root leaves are the same loop state: leaf k of the
    parameter is iteration i's value, leaf k of the root iteration i+1's. A leaf is
    *carried in place* when its next value can live in its current value's storage:
    the root returns the parameter leaf unchanged (xs of a scan), or a chain of
    in-place writes starting at parameter leaf k (which must die there) ends at root
    leaf k (the stacked ys of a scan, updated by dynamic_update_slice). For those
    leaves the caller passes the same pointer as argument and result and copies
    nothing; the others are written to separate output buffers and copied back after
    the body (`carried_in_place` names the in-place leaves). In-place writes into a
    parameter leaf are allowed only on such chains; when a chain ends elsewhere the
    plan is redone without it, so a leaf's storage never holds an intermediate.

Reuse (reuse on)
    Scratch allocations whose live ranges do not overlap share arena bytes. Placement is
    best fit, biggest allocation first: each allocation goes into the smallest gap (in
    the address space, among allocations live at the same time) that holds it, or above
    them all. `reuse=False` gives every temporary its own slot and writes nothing in
    place: the baseline the reuse is measured against.

Outputs
    The storage of a root leaf's buffer becomes that output's buffer, so the producing
    kernel writes straight into caller memory. When the leaf's buffer is an argument
    (the program returns a parameter, or a donated parameter was updated in place), a
    constant, or already the buffer of an earlier output (the same value returned
    twice), no output buffer is written: `output_aliases[i]` names where output i's
    value is, and the runtime copies or shares it.

Sizes are the IR's (`Shape.nbytes`: bf16 and f16 take 2 bytes). `peak_bytes` is the
memory the program holds while it runs under the plan: arguments + constants + the
output buffers it writes + the scratch arena (the arena and the output buffers exist
for the whole call). `live_peak_bytes` is the same with the arena replaced by the most
scratch bytes live at one step, the bound a perfect packing would reach.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, NamedTuple

import numpy as np

from . import ops
from .ir import Computation, Instruction, Module, Shape, TupleShape

ALIGNMENT = 64   # bytes; every scratch and constant offset is a multiple of it

ARGUMENT, OUTPUT, CONSTANT, SCRATCH = "argument", "output", "constant", "scratch"


def aligned(nbytes: int) -> int:
    return -(-nbytes // ALIGNMENT) * ALIGNMENT


# ----------------------------------------------------------------------------- logical buffers

class LogicalBuffer:
    """One array leaf of the value `instr` defines; `size` in bytes."""
    __slots__ = ("instr", "leaf", "shape", "size")

    def __init__(self, instr: Instruction, leaf: int, shape: Shape):
        self.instr, self.leaf, self.shape = instr, leaf, shape
        self.size = shape.nbytes

    def __repr__(self) -> str:
        suffix = f"{{{self.leaf}}}" if self.instr.shape.is_tuple else ""
        return f"<buffer {self.instr.name}{suffix} {self.shape}>"


def element_leaves(shape: TupleShape, index: int) -> range:
    """The leaf numbers that element `index` of a tuple shape covers."""
    start = sum(len(e.leaves()) for e in shape.elements[:index])
    return range(start, start + len(shape.elements[index].leaves()))


def is_bitcast(instr: Instruction) -> bool:
    """A reshape between row-major shapes moves no bytes: its result is its operand's memory."""
    return (instr.opcode == "reshape" and instr.shape.layout is None
            and instr.operands[0].shape.layout is None)


def _alias_tuple(instr, points_to):
    return [b for operand in instr.operands for b in points_to[operand]]


def _alias_get_tuple_element(instr, points_to):
    operand = instr.operands[0]
    leaves = points_to[operand]
    return [leaves[k] for k in element_leaves(operand.shape, instr.attrs["index"])]


def _alias_reshape(instr, points_to):
    return list(points_to[instr.operands[0]]) if is_bitcast(instr) else None


# op -> rule(instr, points_to) -> the buffers its value is made of, or None to define its own.
ALIAS_RULES: dict[str, Callable] = {
    "tuple": _alias_tuple,
    "get_tuple_element": _alias_get_tuple_element,
    "reshape": _alias_reshape,
}

PINNED_OPS = ("parameter", "constant")   # their buffers exist for the whole call


@dataclass
class Values:
    """Which buffers each instruction defines, reads, and which buffers each value is."""
    computation: Computation
    buffers: list[LogicalBuffer]
    defined: dict[Instruction, list[LogicalBuffer]]
    points_to: dict[Instruction, list[LogicalBuffer]]   # one per leaf of the result
    reads: dict[Instruction, list[LogicalBuffer]]       # distinct; empty for alias ops
    readers: dict[LogicalBuffer, list[Instruction]]
    live_out: set[LogicalBuffer]
    aliases: set[Instruction]

    def pinned(self, buffer: LogicalBuffer) -> bool:
        """Held for the whole call whatever the order: arguments, constants, outputs."""
        return buffer.instr.opcode in PINNED_OPS or buffer in self.live_out


def _distinct(buffers: Iterable[LogicalBuffer]) -> list[LogicalBuffer]:
    return list(dict.fromkeys(buffers))


def analyze_values(comp: Computation) -> Values:
    """The aliasing analysis of one computation (independent of the instruction order)."""
    defined, points_to, aliases = {}, {}, set()
    for instr in comp.instructions:
        rule = ALIAS_RULES.get(instr.opcode)
        shared = rule(instr, points_to) if rule else None
        if shared is None:
            shared = [LogicalBuffer(instr, k, s) for k, s in enumerate(instr.shape.leaves())]
            defined[instr] = shared
        else:
            defined[instr] = []
            aliases.add(instr)
        points_to[instr] = shared
    reads = {instr: [] if instr in aliases else
             _distinct(b for operand in instr.operands for b in points_to[operand])
             for instr in comp.instructions}
    buffers = [b for instr in comp.instructions for b in defined[instr]]
    readers = {b: [] for b in buffers}
    for instr, bs in reads.items():
        for b in bs:
            readers[b].append(instr)
    return Values(comp, buffers, defined, points_to, reads, readers,
                  set(points_to[comp.root]), aliases)


# ----------------------------------------------------------------------------- liveness

def live_ranges(values: Values, order: list[Instruction]) -> dict[LogicalBuffer, tuple[int, int]]:
    """buffer -> (first step, last step) it is live, inclusive; live-out buffers end at n."""
    step = {instr: t for t, instr in enumerate(order)}
    ranges = {}
    for b in values.buffers:
        start = step[b.instr]
        end = max((step[r] for r in values.readers[b]), default=start)
        ranges[b] = (start, len(order) if b in values.live_out else end)
    return ranges


def _max_overlap(intervals: Iterable[tuple[int, int, int]], steps: int) -> int:
    """The largest sum of sizes of (start, end, size) intervals covering one step."""
    delta = [0] * (steps + 2)
    for start, end, size in intervals:
        delta[start] += size
        delta[min(end, steps) + 1] -= size
    peak = live = 0
    for change in delta:
        live += change
        peak = max(peak, live)
    return peak


def peak_live_bytes(comp: Computation, order: list[Instruction] | None = None,
                    values: Values | None = None) -> int:
    """The most bytes live at one step of `order` (default: the computation's order),
    without in-place sharing. Arguments, constants and outputs count at every step."""
    order = comp.instructions if order is None else order
    values = values or analyze_values(comp)
    ranges = live_ranges(values, order)
    pinned = sum(b.size for b in values.buffers if values.pinned(b))
    moving = ((*ranges[b], b.size) for b in values.buffers if not values.pinned(b))
    return pinned + _max_overlap(moving, len(order))


# ----------------------------------------------------------------------------- the plan

class Slice(NamedTuple):
    """Where a buffer lives: (kind, index or byte offset, size in bytes)."""
    kind: str
    index: int
    size: int

    def __str__(self) -> str:
        where = f"@{self.index}" if self.kind in (SCRATCH, CONSTANT) else f"#{self.index}"
        return f"{self.kind} {where} ({self.size} B)"


@dataclass(eq=False)
class Allocation:
    """Storage shared by logical buffers that follow each other through in-place writes."""
    buffers: list[LogicalBuffer]
    start: int
    end: int
    kind: str = SCRATCH
    index: int = -1

    @property
    def size(self) -> int:
        return self.buffers[0].size     # in-place sharing needs equal sizes

    @property
    def origin(self) -> str:
        return self.buffers[0].instr.opcode

    def overlaps(self, other: "Allocation") -> bool:
        return self.start <= other.end and other.start <= self.end

    def slice(self) -> Slice:
        return Slice(self.kind, self.index, self.size)


@dataclass
class BufferAssignment:
    """The memory plan of one computation in one instruction order."""
    computation: Computation
    order: list[Instruction]
    values: Values
    ranges: dict[LogicalBuffer, tuple[int, int]]
    allocation_of: dict[LogicalBuffer, Allocation]
    in_place: dict[Instruction, Instruction]      # writer -> the operand whose storage it reuses
    output_aliases: dict[int, Slice]              # output number -> storage it shares
    scratch_bytes: int
    constant_bytes: int
    reuse: bool
    donated_parameters: frozenset[int] = frozenset()
    carried_in_place: frozenset[int] = frozenset()  # state leaves updated in place (loop bodies)
    _by_name: dict[str, Instruction] = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self._by_name = {instr.name: instr for instr in self.computation.instructions}

    def _instr(self, instr: Instruction | str) -> Instruction:
        if isinstance(instr, str):
            try:
                return self._by_name[instr]
            except KeyError:
                raise KeyError(f"computation {self.computation.name} has no instruction "
                               f"named {instr!r}") from None
        return instr

    def slices_of(self, instr: Instruction | str) -> list[Slice]:
        """The storage of each leaf of `instr`'s value, in leaf order."""
        slices = []
        for b in self.values.points_to[self._instr(instr)]:
            alloc = self.allocation_of[b]
            slices.append(Slice(alloc.kind, alloc.index, b.size))
        return slices

    def buffer_of(self, instr: Instruction | str) -> Slice | list[Slice]:
        """(kind, index/offset, size) of an array value; a list of them for a tuple value."""
        instr = self._instr(instr)
        slices = self.slices_of(instr)
        return slices if instr.shape.is_tuple else slices[0]

    def is_alias(self, instr: Instruction | str) -> bool:
        """True when `instr` allocates nothing: its value is buffers its operands hold."""
        return self._instr(instr) in self.values.aliases

    @property
    def allocations(self) -> list[Allocation]:
        return list(dict.fromkeys(self.allocation_of.values()))

    @property
    def argument_bytes(self) -> int:
        return sum(p.shape.nbytes for p in self.computation.parameters)

    @property
    def output_bytes(self) -> int:
        return self.computation.root.shape.nbytes

    @property
    def alias_bytes(self) -> int:
        return sum(s.size for s in self.output_aliases.values())

    @property
    def peak_bytes(self) -> int:
        return (self.argument_bytes + self.constant_bytes + self.output_bytes
                - self.alias_bytes + self.scratch_bytes)

    @property
    def live_peak_bytes(self) -> int:
        scratch = ((a.start, a.end, a.size) for a in self.allocations if a.kind == SCRATCH)
        return (self.argument_bytes + self.constant_bytes + self.output_bytes - self.alias_bytes
                + _max_overlap(scratch, len(self.order)))

    def to_text(self) -> str:
        return _format_assignment(self)

    __str__ = to_text


def assign_buffers(module: Module, reuse: bool = True,
                   donated_parameters: Iterable[int] = ()) -> BufferAssignment:
    """Plan the buffers of `module`'s entry computation in its current order."""
    if module.entry is None:
        raise ValueError(f"module {module.name} has no entry computation to assign buffers for")
    return plan_computation(module.entry, reuse=reuse, donated_parameters=donated_parameters)


def plan_computation(comp: Computation, order: list[Instruction] | None = None, reuse: bool = True,
                     donated_parameters: Iterable[int] = (), values: Values | None = None,
                     carried: bool = False) -> BufferAssignment:
    """Plan the buffers of any computation, in `order` (default: its current order).

    Its parameters are the arguments and its root the outputs; the scheduler plans each
    candidate order with this to compare them. `carried`: the computation is a loop
    body whose root leaves are the next values of its parameter leaves (module
    docstring, loop-carried state).
    """
    donated = _check_donated(comp, donated_parameters)
    order = list(comp.instructions if order is None else order)
    values = values or analyze_values(comp)
    ranges = live_ranges(values, order)
    params = [b for p in comp.parameters for b in values.defined[p]]
    writable = {b for b in params if b.instr.attrs["index"] in donated}
    carry = _carried_candidates(values, params) if carried and reuse else {}
    while True:
        allocation_of = {b: Allocation([b], *ranges[b]) for b in values.buffers}
        in_place = (_share_in_place(order, values, allocation_of, writable | set(carry.values()))
                    if reuse else {})
        reached = {k: p for k, p in carry.items()
                   if allocation_of[p] is allocation_of[values.points_to[comp.root][k]]}
        if reached == carry:
            break
        carry = reached        # a chain from parameter leaf k ended elsewhere: plan without it
    allocations = list(dict.fromkeys(allocation_of.values()))
    _place_arguments(comp, values, allocation_of)
    constant_bytes = _pack_in_order([a for a in allocations if a.origin == "constant"], CONSTANT)
    output_aliases = _place_outputs(values, allocation_of)
    scratch = [a for a in allocations if a.kind == SCRATCH]
    scratch_bytes = _pack_best_fit(scratch) if reuse else _pack_in_order(scratch, SCRATCH)
    in_place_leaves = frozenset(k for k, where in output_aliases.items()
                                if carried and where.kind == ARGUMENT and where.index == k)
    return BufferAssignment(comp, order, values, ranges, allocation_of, in_place, output_aliases,
                            scratch_bytes, constant_bytes, reuse, donated, in_place_leaves)


def _carried_candidates(values: Values, params: list[LogicalBuffer]) -> dict[int, LogicalBuffer]:
    """State leaf k -> its parameter buffer, for the leaves whose next value may take the
    current one's storage: the root leaf is a buffer of its own (returned once, not a
    parameter or constant) of the same size."""
    root = values.points_to[values.computation.root]
    if len(root) != len(params):
        raise ValueError(f"loop body {values.computation.name}: {len(params)} state leaves in, "
                         f"{len(root)} out")
    counts = {b: root.count(b) for b in root}
    return {k: p for k, (p, b) in enumerate(zip(params, root))
            if counts[b] == 1 and b.instr.opcode not in PINNED_OPS and b.size == p.size}


def _check_donated(comp: Computation, donated: Iterable[int]) -> frozenset[int]:
    donated = frozenset(donated)
    known = {p.attrs["index"] for p in comp.parameters}
    unknown = sorted(d for d in donated if d not in known)
    if unknown:
        raise ValueError(f"donated_parameters {unknown} are not parameters of {comp.name}, "
                         f"which has parameters 0..{len(known) - 1}")
    return donated


# ----------------------------------------------------------------------------- in place

def writes_elementwise(instr: Instruction) -> bool:
    """Whether result element i depends only on element i of each same-shaped operand."""
    if ops.OPS[instr.opcode].elementwise:
        return True
    if instr.opcode == "fusion" and instr.attrs["kind"] == "loop":
        root = instr.attrs["calls"].root
        return not root.shape.is_tuple and ops.OPS[root.opcode].elementwise
    return False


def fused_parameter_read_elementwise(fused: Computation, number: int) -> bool:
    """Whether fused parameter `number` reaches the root only through elementwise ops of the root's dims."""
    dims = fused.root.shape.dims
    users = fused.users()
    stack = [p for p in fused.parameters if p.attrs["index"] == number]
    while stack:
        value = stack.pop()
        if value.shape.is_tuple or value.shape.dims != dims:
            return False
        for user in users.get(value, ()):
            if not ops.OPS[user.opcode].elementwise:
                return False
            stack.append(user)
    return True


def _reads_safely(instr: Instruction, k: int) -> bool:
    """Whether operand k of an elementwise writer may share storage with its result."""
    operand, result = instr.operands[k].shape, instr.shape
    if operand.is_tuple or operand.dims != result.dims or operand.layout != result.layout:
        return False
    if instr.opcode == "fusion":
        return fused_parameter_read_elementwise(instr.attrs["calls"], k)
    return True


def _may_overwrite(alloc: Allocation, step: int, writable: set[LogicalBuffer]) -> bool:
    if alloc.end != step:         # still read later, or an output (live to the end)
        return False
    if alloc.origin == "constant":
        return False
    if alloc.origin == "parameter":
        return alloc.buffers[0] in writable
    return True


def _in_place_candidates(instr: Instruction) -> list[int]:
    """The operands whose storage `instr` could write its result into (if they die)."""
    if instr.shape.is_tuple:
        return []
    if instr.opcode == "dynamic_update_slice":
        return [0]
    return list(range(len(instr.operands))) if writes_elementwise(instr) else []


def _in_place_operand(instr: Instruction, step: int, values: Values,
                      allocation_of: dict, writable: set[LogicalBuffer]) -> int | None:
    """The number of the operand whose storage `instr` can write its result into, or None."""
    result = values.defined[instr]
    if len(result) != 1:
        return None
    for k in _in_place_candidates(instr):
        operand = instr.operands[k]
        if operand.shape.is_tuple or operand.shape.nbytes != result[0].size:
            continue
        target = allocation_of[values.points_to[operand][0]]
        if not _may_overwrite(target, step, writable):
            continue
        readers = [j for j, o in enumerate(instr.operands)
                   if any(allocation_of[b] is target for b in values.points_to[o])]
        if instr.opcode == "dynamic_update_slice":
            if readers == [0]:        # the update and the starts must not be in the storage
                return k
        elif all(_reads_safely(instr, j) for j in readers):
            return k
    return None


def _share_in_place(order, values: Values, allocation_of: dict,
                    writable: set[LogicalBuffer]) -> dict[Instruction, Instruction]:
    in_place = {}
    for step, instr in enumerate(order):
        k = _in_place_operand(instr, step, values, allocation_of, writable)
        if k is None:
            continue
        operand = instr.operands[k]
        target = allocation_of[values.points_to[operand][0]]
        (buffer,) = values.defined[instr]
        target.buffers.append(buffer)
        target.end = allocation_of[buffer].end
        allocation_of[buffer] = target
        in_place[instr] = operand
    return in_place


# ----------------------------------------------------------------------------- placement

def _place_arguments(comp: Computation, values: Values, allocation_of: dict) -> None:
    number = 0
    for param in comp.parameters:
        for b in values.defined[param]:
            alloc = allocation_of[b]
            alloc.kind, alloc.index = ARGUMENT, number
            number += 1


def _place_outputs(values: Values, allocation_of: dict) -> dict[int, Slice]:
    aliases = {}
    for i, b in enumerate(values.points_to[values.computation.root]):
        alloc = allocation_of[b]
        if alloc.kind == SCRATCH:
            alloc.kind, alloc.index = OUTPUT, i
        else:
            aliases[i] = Slice(alloc.kind, alloc.index, b.size)
    return aliases


def _pack_in_order(allocations: list[Allocation], kind: str) -> int:
    """Each allocation its own aligned slot, one after another; returns the total size."""
    offset = 0
    for alloc in allocations:
        alloc.kind, alloc.index = kind, offset
        offset += aligned(alloc.size)
    return offset


def _pack_best_fit(allocations: list[Allocation]) -> int:
    """Offsets in one arena, sharing bytes between allocations not live at once."""
    n = len(allocations)
    start, end, lo, hi = (np.zeros(n, np.int64) for _ in range(4))   # of the placed ones
    for count, alloc in enumerate(sorted(allocations, key=lambda a: (-a.size, a.start))):
        size = aligned(alloc.size)
        live = (start[:count] <= alloc.end) & (alloc.start <= end[:count])
        alloc.index = _best_gap(lo[:count][live], hi[:count][live], size)
        start[count], end[count], lo[count], hi[count] = alloc.start, alloc.end, alloc.index, alloc.index + size
    return int(hi.max(initial=0))


def _best_gap(lo: np.ndarray, hi: np.ndarray, size: int) -> int:
    """The start of the smallest free gap between busy ranges [lo, hi) that holds `size`
    bytes (the lowest such gap on a tie), or the end of the busy space."""
    by_offset = np.argsort(lo, kind="stable")
    lo, hi = lo[by_offset], hi[by_offset]
    free_from = np.concatenate(([0], np.maximum.accumulate(hi)))   # busy space ends before range i
    gaps = lo - free_from[:-1]
    fits = np.flatnonzero(gaps >= size)
    if fits.size == 0:
        return int(free_from[-1])
    return int(free_from[fits[np.argmin(gaps[fits])]])


# ----------------------------------------------------------------------------- reports

def _format_bytes(n: int) -> str:
    for unit, scale in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= scale:
            return f"{n:,} B ({n / scale:.1f} {unit})"
    return f"{n:,} B"


def _live_text(ba: BufferAssignment, instr: Instruction) -> str:
    own = ba.values.defined[instr]
    if not own:
        return ""
    start = min(ba.ranges[b][0] for b in own)
    end = max(ba.ranges[b][1] for b in own)
    return f"[{start}, {'end' if end == len(ba.order) else end}]"


def _note(ba: BufferAssignment, instr: Instruction) -> str:
    if instr in ba.in_place:
        return f"in place of {ba.in_place[instr].name}"
    if instr in ba.values.aliases:
        return "alias of " + ", ".join(o.name for o in instr.operands)
    return ""


def _storage_text(ba: BufferAssignment, instr: Instruction) -> str:
    text = ", ".join(f"{s.kind} {'@' if s.kind in (SCRATCH, CONSTANT) else '#'}{s.index}"
                     for s in ba.slices_of(instr))
    return f"({text})" if instr.shape.is_tuple else text


def _format_assignment(ba: BufferAssignment) -> str:
    rows = [(str(step), instr.name, _storage_text(ba, instr), _live_text(ba, instr), _note(ba, instr))
            for step, instr in enumerate(ba.order)]
    header = ("step", "instruction", "storage", "live", "note")
    widths = [max(len(r[k]) for r in rows + [header]) for k in range(4)]
    lines = [f"buffer assignment of {ba.computation.name}: {len(ba.order)} instructions, "
             f"reuse {'on' if ba.reuse else 'off'}"
             + (f", donated parameters {sorted(ba.donated_parameters)}" if ba.donated_parameters else ""),
             f"  scratch arena {_format_bytes(ba.scratch_bytes)}; constants "
             f"{_format_bytes(ba.constant_bytes)}; peak {_format_bytes(ba.peak_bytes)}"]
    for row in [header] + rows:
        cells = [row[0].rjust(widths[0])] + [c.ljust(w) for c, w in zip(row[1:4], widths[1:])]
        lines.append(("  " + "  ".join(cells) + "  " + row[4]).rstrip())
    lines.append("  outputs:")
    root = ba.computation.root
    for i, (b, shape) in enumerate(zip(ba.values.points_to[root], root.shape.leaves())):
        alias = ba.output_aliases.get(i)
        where = f"shares {alias}" if alias else f"written by {b.instr.name}"
        if i in ba.carried_in_place:
            where = f"carried in place ({b.instr.name})"
        lines.append(f"    #{i} {shape}: {where}")
    return "\n".join(lines)


@dataclass(frozen=True)
class MemoryAnalysis:
    """Bytes the entry computation needs under its buffer plan (see the module docstring)."""
    argument_bytes: int
    output_bytes: int
    temporary_bytes: int      # the scratch arena
    constant_bytes: int
    peak_bytes: int
    alias_bytes: int          # output bytes that share an argument's, a constant's or another output's storage
    live_peak_bytes: int

    def __str__(self) -> str:
        rows = [("arguments", self.argument_bytes), ("outputs", self.output_bytes),
                ("  of which aliased", self.alias_bytes), ("temporaries (arena)", self.temporary_bytes),
                ("constants", self.constant_bytes), ("peak", self.peak_bytes),
                ("peak of live values", self.live_peak_bytes)]
        return "memory analysis\n" + "\n".join(f"  {name:<22}{_format_bytes(n)}" for name, n in rows)


def memory_analysis(module: Module, reuse: bool = True,
                    donated_parameters: Iterable[int] = ()) -> MemoryAnalysis:
    """Argument, output, temporary, constant, alias and peak bytes of the buffer plan."""
    ba = assign_buffers(module, reuse=reuse, donated_parameters=donated_parameters)
    return MemoryAnalysis(ba.argument_bytes, ba.output_bytes, ba.scratch_bytes, ba.constant_bytes,
                          ba.peak_bytes, ba.alias_bytes, ba.live_peak_bytes)
