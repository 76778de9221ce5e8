"""Cost analysis: flops, transcendentals and bytes moved, per instruction and in total.

    cost_analysis(module) -> CostAnalysis
    ca["flops"], ca["transcendentals"], ca["bytes accessed"], ca["bytes read"], ca["bytes written"]
    ca.per_instruction   # one InstructionCost per entry instruction, in order

Work (`WORK`, a table keyed by op; `NO_WORK` names the ops that do none and why):
- Elementwise ops: one flop per result element -- compare, select, clamp, convert and the
  bitwise ops too. The transcendental ops (`TRANSCENDENTAL`: exp log log1p expm1 sqrt
  rsqrt tanh logistic sin cos erf atan2 power, as XLA counts them) count one
  transcendental per element and no flop; power of integers counts flops.
- dot_general: 2 x result elements x contracted size (batch dims are in the result).
- convolution: 2 x result elements x kernel spatial size x input features per group
  (padding, dilation holes and strides are not discounted: an upper bound).
- reduce: input elements x the reducer's work (it is applied once per input element,
  the init value included); reduce_window: result elements x window size x reducer;
  scatter: update elements x combiner; select_and_scatter: source elements x window
  size x select + source elements x scatter; sort: elements x ceil(log2(n)) x comparator.
- fusion and call: the work of the called computation. while and conditional: one
  iteration of condition + body, the most expensive branch; marked `estimated`, since
  the trip count or branch is not known before running. custom_call: unknown work,
  marked `estimated`.

Bytes (`BYTES`, defaulting to `operands_and_result`):
- bytes read = the sizes of the operands, bytes written = the size of the result. A
  fusion thus counts only what crosses its boundary -- the point of fusing.
- parameter, constant, tuple, get_tuple_element and bitcast reshapes move nothing (their
  consumers count the reads). slice, dynamic_slice and gather read only what they select
  (plus the indices). call, while and conditional move what their callees move.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Callable, Iterator

from . import ops
from .buffer_assignment import is_bitcast
from .ir import Computation, Instruction, Module, TupleShape


@dataclass(frozen=True)
class Work:
    flops: int = 0
    transcendentals: int = 0
    estimated: bool = False

    def __add__(self, other: "Work") -> "Work":
        return Work(self.flops + other.flops, self.transcendentals + other.transcendentals,
                    self.estimated or other.estimated)

    def times(self, n: int) -> "Work":
        return Work(self.flops * n, self.transcendentals * n, self.estimated)


@dataclass(frozen=True)
class InstructionCost:
    name: str
    opcode: str
    flops: int
    transcendentals: int
    bytes_read: int
    bytes_written: int
    estimated: bool = False

    @property
    def bytes_accessed(self) -> int:
        return self.bytes_read + self.bytes_written

    @property
    def work(self) -> Work:
        return Work(self.flops, self.transcendentals, self.estimated)


@dataclass(frozen=True)
class Totals:
    work: Work
    bytes_read: int
    bytes_written: int


class _Bodies:
    """Totals of called computations, each computed once per analysis."""

    def __init__(self):
        self._totals: dict[int, Totals] = {}

    def total(self, comp: Computation) -> Totals:
        if id(comp) not in self._totals:
            costs = computation_costs(comp, self)
            work = sum((c.work for c in costs), Work())
            self._totals[id(comp)] = Totals(work, sum(c.bytes_read for c in costs),
                                            sum(c.bytes_written for c in costs))
        return self._totals[id(comp)]

    def work(self, comp: Computation) -> Work:
        return self.total(comp).work


# ----------------------------------------------------------------------------- work rules

def _size(instr: Instruction, k: int | None = None) -> int:
    """Elements of the result (k None) or of operand k."""
    shape = instr.shape if k is None else instr.operands[k].shape
    return shape.size


def per_element(instr, bodies) -> Work:
    return Work(flops=_size(instr))


def transcendental(instr, bodies) -> Work:
    if not instr.shape.dtype.is_float:
        return per_element(instr, bodies)
    return Work(transcendentals=_size(instr))


def dot_general(instr, bodies) -> Work:
    lhs = instr.operands[0].shape
    contracted = math.prod(lhs.dims[d] for d in instr.attrs["lhs_contracting_dims"])
    return Work(flops=2 * _size(instr) * contracted)


def convolution(instr, bodies) -> Work:
    dn = ops.parse_dim_labels(instr.attrs["dim_labels"])
    kernel = instr.operands[1].shape
    window = math.prod(kernel.dims[d] for d in dn.kernel_spatial)
    return Work(flops=2 * _size(instr) * window * kernel.dims[dn.kernel_in])


def reduce(instr, bodies) -> Work:
    return bodies.work(instr.attrs["to_apply"]).times(_size(instr, 0))


def _result_elements(instr) -> int:
    shape = instr.shape.elements[0] if isinstance(instr.shape, TupleShape) else instr.shape
    return shape.size


def reduce_window(instr, bodies) -> Work:
    window = math.prod(instr.attrs["window_dimensions"])
    return bodies.work(instr.attrs["to_apply"]).times(_result_elements(instr) * window)


def select_and_scatter(instr, bodies) -> Work:
    source = _size(instr, 1)
    window = math.prod(instr.attrs["window_dimensions"])
    return (bodies.work(instr.attrs["select"]).times(source * window)
            + bodies.work(instr.attrs["scatter"]).times(source))


def scatter(instr, bodies) -> Work:
    return bodies.work(instr.attrs["to_apply"]).times(_size(instr, 2))


def sort(instr, bodies) -> Work:
    n = instr.operands[0].shape.dims[instr.attrs["dimension"]]
    depth = math.ceil(math.log2(n)) if n > 1 else 0
    return bodies.work(instr.attrs["comparator"]).times(_size(instr, 0) * depth)


def fusion(instr, bodies) -> Work:
    return bodies.work(instr.attrs["calls"])


def call(instr, bodies) -> Work:
    return bodies.work(instr.attrs["to_apply"])


def while_loop(instr, bodies) -> Work:
    one_trip = bodies.work(instr.attrs["condition"]) + bodies.work(instr.attrs["body"])
    return one_trip + Work(estimated=True)


def _costliest_branch(instr, bodies) -> Computation:
    return max(instr.attrs["branch_computations"],
               key=lambda c: (bodies.work(c).flops + bodies.work(c).transcendentals))


def conditional(instr, bodies) -> Work:
    return bodies.work(_costliest_branch(instr, bodies)) + Work(estimated=True)


def rng_bit_generator(instr, bodies) -> Work:
    # Nominal: one (integer) op per generated word; Philox's rounds are not itemized.
    return Work(flops=instr.shape.elements[1].size)


def unknown(instr, bodies) -> Work:
    return Work(estimated=True)


def no_work(instr, bodies) -> Work:
    return Work()


TRANSCENDENTAL = ("exp", "log", "log1p", "expm1", "sqrt", "rsqrt", "tanh", "logistic",
                  "sin", "cos", "erf", "atan2", "power")

# op -> why it does no arithmetic
NO_WORK: dict[str, str] = {
    "parameter": "an input",
    "constant": "a value in the constant section",
    "iota": "writes indices: data movement",
    "broadcast_in_dim": "data movement",
    "reshape": "data movement (or a bitcast)",
    "transpose": "data movement",
    "slice": "data movement",
    "dynamic_slice": "data movement",
    "dynamic_update_slice": "data movement",
    "concatenate": "data movement",
    "pad": "data movement",
    "reverse": "data movement",
    "gather": "data movement",
    "tuple": "groups values, moves nothing",
    "get_tuple_element": "selects a value, moves nothing",
    "send": "a transfer",
    "recv": "a transfer",
}

WORK: dict[str, Callable] = {
    **{name: per_element for name, d in ops.OPS.items()
       if d.elementwise and name not in TRANSCENDENTAL},
    **{name: transcendental for name in TRANSCENDENTAL},
    **{name: no_work for name in NO_WORK},
    "dot_general": dot_general,
    "convolution": convolution,
    "reduce": reduce,
    "reduce_window": reduce_window,
    "select_and_scatter": select_and_scatter,
    "scatter": scatter,
    "sort": sort,
    "fusion": fusion,
    "call": call,
    "while": while_loop,
    "conditional": conditional,
    "rng_bit_generator": rng_bit_generator,
    "all_reduce": per_element,       # one combine per element (per extra participant)
    "all_gather": no_work,           # communication: moves values, combines none
    "collective_broadcast": no_work,
    "custom_call": unknown,
}


# ----------------------------------------------------------------------------- byte rules

def operands_and_result(instr, bodies) -> tuple[int, int]:
    return sum(o.shape.nbytes for o in instr.operands), instr.shape.nbytes


def moves_nothing(instr, bodies) -> tuple[int, int]:
    return 0, 0


def reshape_bytes(instr, bodies) -> tuple[int, int]:
    return (0, 0) if is_bitcast(instr) else operands_and_result(instr, bodies)


def selected_part(instr, bodies) -> tuple[int, int]:
    """Reads the selected elements (the result's size) and the index operands."""
    indices = sum(o.shape.nbytes for o in instr.operands[1:])
    return instr.shape.nbytes + indices, instr.shape.nbytes


def _callee_bytes(*comps: Computation, bodies) -> tuple[int, int]:
    totals = [bodies.total(c) for c in comps]
    return sum(t.bytes_read for t in totals), sum(t.bytes_written for t in totals)


BYTES: dict[str, Callable] = {
    "parameter": moves_nothing,
    "constant": moves_nothing,
    "tuple": moves_nothing,
    "get_tuple_element": moves_nothing,
    "reshape": reshape_bytes,
    "slice": selected_part,
    "dynamic_slice": selected_part,
    "gather": selected_part,
    "call": lambda instr, bodies: _callee_bytes(instr.attrs["to_apply"], bodies=bodies),
    "while": lambda instr, bodies: _callee_bytes(instr.attrs["condition"], instr.attrs["body"],
                                                 bodies=bodies),
    "conditional": lambda instr, bodies: _callee_bytes(_costliest_branch(instr, bodies),
                                                       bodies=bodies),
}


# ----------------------------------------------------------------------------- the loop

def instruction_cost(instr: Instruction, bodies: _Bodies) -> InstructionCost:
    work = WORK[instr.opcode](instr, bodies)
    read, written = BYTES.get(instr.opcode, operands_and_result)(instr, bodies)
    return InstructionCost(instr.name, instr.opcode, work.flops, work.transcendentals,
                           read, written, work.estimated)


def computation_costs(comp: Computation, bodies: _Bodies | None = None) -> list[InstructionCost]:
    bodies = bodies or _Bodies()
    return [instruction_cost(instr, bodies) for instr in comp.instructions]


KEYS = ("flops", "transcendentals", "bytes accessed", "bytes read", "bytes written")


@dataclass(frozen=True, eq=False)
class CostAnalysis(Mapping):
    """Totals readable like JAX's `cost_analysis()` dict, plus the per-instruction rows."""
    per_instruction: list[InstructionCost] = field(default_factory=list)

    @property
    def flops(self) -> int:
        return sum(c.flops for c in self.per_instruction)

    @property
    def transcendentals(self) -> int:
        return sum(c.transcendentals for c in self.per_instruction)

    @property
    def bytes_read(self) -> int:
        return sum(c.bytes_read for c in self.per_instruction)

    @property
    def bytes_written(self) -> int:
        return sum(c.bytes_written for c in self.per_instruction)

    @property
    def bytes_accessed(self) -> int:
        return self.bytes_read + self.bytes_written

    @property
    def estimated(self) -> bool:
        """True when a while, conditional or custom_call made a count a guess."""
        return any(c.estimated for c in self.per_instruction)

    def __getitem__(self, key: str) -> int:
        if key not in KEYS:
            raise KeyError(f"cost analysis has no {key!r}; keys: {', '.join(KEYS)}")
        return getattr(self, key.replace(" ", "_"))

    def __iter__(self) -> Iterator[str]:
        return iter(KEYS)

    def __len__(self) -> int:
        return len(KEYS)

    def __str__(self) -> str:
        lines = [f"{'instruction':<28}{'op':<20}{'flops':>14}{'transc.':>12}"
                 f"{'read B':>14}{'written B':>14}"]
        for c in self.per_instruction:
            mark = " ~" if c.estimated else ""
            lines.append(f"{c.name:<28}{c.opcode:<20}{c.flops:>14,}{c.transcendentals:>12,}"
                         f"{c.bytes_read:>14,}{c.bytes_written:>14,}{mark}")
        lines.append(f"{'total':<48}{self.flops:>14,}{self.transcendentals:>12,}"
                     f"{self.bytes_read:>14,}{self.bytes_written:>14,}")
        if self.estimated:
            lines.append("~ estimated: one loop iteration, the costliest branch, or unknown custom_call work")
        return "\n".join(lines)


def cost_analysis(module: Module) -> CostAnalysis:
    """Per-instruction and total cost of `module`'s entry computation."""
    if module.entry is None:
        raise ValueError(f"module {module.name} has no entry computation to analyze")
    return CostAnalysis(computation_costs(module.entry))
