"""Random HLO programs the systolic backend can run (docs/systolic-backend.md).

The same generators as hlo_programs.py under the `SYSTOLIC` profile: f32 values only
(pred masks made by compares, never parameters or results), the elementwise ops and
reducers the vector unit has (backends/systolic/vector.py ELEMENTWISE, REDUCERS), views,
concatenate, pad and windows in the shapes its checks admit (constant pad value, no
cropping, last dim not interior-padded; windows over leading dims without padding or
dilation), and dot_general / convolution on the matrix unit. Every instruction the
generator emits must pass the backend's own per-instruction predicate
(`codegen.unsupported_reason`, which placement uses too); the backend's check of the
whole program after the systolic pipeline (`check_supported`) still decides: what it
refuses is counted and printed by the test, not compared.

Matrix-unit rounding. The machine multiplies bf16-rounded operands, so a dot's result
may differ from the f32 interpreter's by the bound of docs/systolic-backend.md
("Accuracy"): dot_relative_bound(K) * (|A| |B|). Matrix ops read only values both sides
compute bit for bit (hlo_programs.matrix_operands_exact), and a value carrying that error
is read only by ops that do not amplify it (`MATRIX_ERROR_OK`: each output element moves
by at most the sum of its operands' errors), so the error of every output is at most the
sum, over the matrix ops it depends on, of their bounds (checks.matrix_error_bound).
"""
from __future__ import annotations

from hypothesis import strategies as st

import hlo_programs as hp
from hlo_programs import F32, GENERATORS, ProgramBuilder, Profile
from tessel.backends.systolic import vector
from tessel.backends.systolic.codegen import unsupported_reason

# Elementwise ops of the op table the vector unit computes.
UNARY = tuple(op for op in hp.ELEMENTWISE_UNARY if op in vector.ELEMENTWISE)
BINARY = tuple(op for op in hp.ELEMENTWISE_BINARY if op in vector.ELEMENTWISE)
REDUCERS = tuple(vector.REDUCERS)              # add, maximum, minimum

# Ops whose result error is at most the sum of their operands' errors (1-Lipschitz in
# each operand, elementwise or moving data): they may read matrix-unit results. Not:
# multiply, divide, power, exp, log, sqrt, rsqrt (amplify), compare, is_finite (flip),
# reduce add (sums many errors).
MATRIX_ERROR_OK = frozenset({
    "negate", "abs", "tanh", "logistic", "add", "subtract", "maximum", "minimum", "clamp",
    "select", "convert", "broadcast_in_dim", "reshape", "transpose", "slice", "concatenate",
    "pad", "reduce_maximum", "reduce_minimum", "reduce_window_maximum", "reduce_window_minimum"})


def gen_pad(g: ProgramBuilder):
    """pad with a constant value, no cropping, the last dim not interior-padded."""
    x = g.operand(rank=g.draw(st.integers(1, hp.MAX_RANK)), for_op="pad")
    value = g.scalar_constant(g.draw(st.sampled_from((0.0, -1.5, 2.0))), F32)
    rank = x.shape.rank
    lo = tuple(g.draw(st.integers(0, 2)) for _ in range(rank))
    hi = tuple(g.draw(st.integers(0, 2)) for _ in range(rank))
    interior = tuple(g.draw(st.integers(0, 2)) if d < rank - 1 else 0 for d in range(rank))
    g.emit("pad", [x, value], attrs={"edge_padding_low": lo, "edge_padding_high": hi,
                                     "interior_padding": interior})


def gen_reduce_window(g: ProgramBuilder):
    """A max/min/sum pool over leading dims: the last dim has window 1 and stride 1."""
    reducer = g.draw(st.sampled_from(REDUCERS))
    x = g.operand(rank=g.draw(st.integers(2, hp.MAX_RANK)), for_op=f"reduce_window_{reducer}")
    rank = x.shape.rank
    comp, init, rounds = hp.draw_reducer(g, F32, reducer)
    window = tuple(g.draw(st.integers(1, 3)) if d < rank - 1 else 1 for d in range(rank))
    strides = tuple(g.draw(st.integers(1, 2)) if d < rank - 1 else 1 for d in range(rank))
    g.emit("reduce_window", [x, init], inexact=g.is_inexact(x) or rounds,
           attrs={"window_dimensions": window, "window_strides": strides,
                  "padding": ((0, 0),) * rank, "to_apply": comp})


GENERATORS_SYSTOLIC = {**{k: GENERATORS[k] for k in (
    "unary", "binary", "compare", "select", "clamp", "convert", "constant", "broadcast_in_dim",
    "reshape", "transpose", "slice", "concatenate", "reduce", "dot_general", "convolution")},
    "pad": gen_pad, "reduce_window": gen_reduce_window}

SYSTOLIC = Profile(
    value_dtypes=(F32,), unary=UNARY, binary=BINARY, reducers=REDUCERS,
    # the matrix ops and elementwise chains are what the backend is for: weighted up
    kinds=tuple(["unary", "binary", "dot_general"] * 3 + ["convolution"] * 2 + sorted(GENERATORS_SYSTOLIC)),
    matrix_error_ok=MATRIX_ERROR_OK, name="systolic", unsupported_reason=unsupported_reason)


def systolic_programs(max_steps: int = 8):
    return hp.programs(max_steps=max_steps, profile=SYSTOLIC, generators=GENERATORS_SYSTOLIC)


def systolic_op_set() -> set[str]:
    """The opcodes systolic programs contain (the campaign's coverage target): the
    backend's op set but get_tuple_element, which only reads tuple-valued ops (none in
    this profile: the root tuple is read by the caller)."""
    from tessel.backends.systolic.codegen import supported_ops
    return set(supported_ops()) & hp.generated_op_set() - {"get_tuple_element"}
