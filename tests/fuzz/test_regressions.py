"""Minimized programs the fuzzer (test_hlo_fuzz.py) found miscompiled: HLO text in, the
check that failed out. Each names the bug and the fix."""
from __future__ import annotations

import numpy as np
import pytest

import checks
from tessel.backends.interpreter import evaluate
from tessel.compiler.parser import parse_module
from tessel.compiler.pipeline import optimize
from tessel.runtime import backends


def assert_backends_agree(text: str, args, inexact=None, backend: str = "cpu"):
    """The interpreter's and `backend`'s pipelines (on the interpreter) and `backend`
    compute what the interpreter computes on the unoptimized module."""
    module = parse_module(text)
    want = evaluate(module, args)
    inexact = inexact or [False] * len(checks.leaves(want))
    for pipeline in ("interpreter", backend):
        optimized, _ = optimize(module, pipeline)
        got = evaluate(optimized, args)
        assert checks.mismatch(got, want, inexact, 1.0, f"{pipeline} pipeline") is None
    got = backends.get(backend).compile(optimized)([np.array(a, copy=True) for a in args])
    problem = checks.mismatch(got, want, inexact, 1.0, f"{backend} backend")
    assert problem is None, problem


# Multi-output fusion took a reduce over no dimensions (reduced dims = ()) for a plain
# elementwise op and built a loop fusion around it, which the CPU backend cannot emit
# ("no elemental rule for reduce"). Fixed in compiler/passes/multi_output_fusion.py: any
# reduce makes the merged kernel an input fusion.
REDUCE_OVER_NO_DIMS_WITH_SIBLING = """
HloModule fuzz

add_f32 {
  a = f32[] parameter(0)
  b = f32[] parameter(1)
  ROOT add = f32[] add(a, b)
}

ENTRY main {
  p0 = f32[3] parameter(0)
  constant = f32[] constant(0.5)
  reduce = f32[3] reduce(p0, constant), dimensions={}, to_apply=add_f32
  abs = f32[3] abs(p0)
  ROOT tuple = (f32[3], f32[3]) tuple(reduce, abs)
}
"""


def test_reduce_over_no_dims_fused_with_a_sibling():
    assert_backends_agree(REDUCE_OVER_NO_DIMS_WITH_SIBLING, [np.array([1, -2, 3], np.float32)])


# The op table accepted a gather collapsing a dim whose slice size is 0 (an empty slice)
# while the result shape, which drops the dim, still had elements; the interpreter then
# indexed the empty operand (IndexError). Fixed in compiler/ops.py: collapsed dims must
# have slice size exactly 1, and the parser/verifier now reject this module.
GATHER_COLLAPSING_AN_EMPTY_DIM = """
HloModule fuzz

ENTRY main {
  p0 = f32[0] parameter(0)
  p1 = s32[4] parameter(1)
  ROOT gather = f32[4] gather(p0, p1), offset_dims={}, collapsed_slice_dims={0}, start_index_map={0}, index_vector_dim=1, slice_sizes={0}
}
"""


def test_gather_collapsing_an_empty_dim_is_rejected():
    with pytest.raises(ValueError, match=r"gather collapsed_slice_dims must have size 1: collapsed \[0\], slice_sizes \[0\]"):
        parse_module(GATHER_COLLAPSING_AN_EMPTY_DIM)


# A 0-d dot (M = N = 1) with an epilogue fused into the GEMM: the tiny GEMM path hands
# the epilogue its last column chunk as a one-lane vector <1 x T>, while the epilogue's
# Evaluator at width 1 works on scalars, so LLVM refused `fmul <1 x double>, double`
# ("Operands must be the same type") and the clamp's maxnum ("Intrinsic has incorrect
# argument type"). Fixed in backends/cpu/kernels_dot.py (_at_width_one): the lane is
# extracted, the epilogue runs on the scalar, and the result goes back into the vector.
SCALAR_DOT_WITH_EPILOGUE = """
HloModule fuzz

ENTRY main {
  p0 = {dt}[3] parameter(0)
  p1 = {dt}[3] parameter(1)
  dot = {dt}[] dot_general(p0, p1), lhs_contracting_dims={0}, rhs_contracting_dims={0}
  p2 = {dt}[] parameter(2)
  p3 = {dt}[] parameter(3)
  ROOT result = {dt}[] {epilogue}
}
"""


@pytest.mark.parametrize("epilogue", ["multiply(dot, p2)", "clamp(p2, dot, p3)"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scalar_dot_feeding_multiply_or_clamp(dtype, epilogue):
    text = SCALAR_DOT_WITH_EPILOGUE.replace("{dt}", np.dtype(dtype).name.replace("float", "f"))
    args = [np.array([1.5, -2, 0.25], dtype), np.array([2, 0.5, -4], dtype),
            np.array(-0.75, dtype), np.array(3, dtype)]
    assert_backends_agree(text.replace("{epilogue}", epilogue), args, inexact=[True])


# A convolution with a dtype-changing epilogue (convert f64 -> f32) in its output fusion:
# the implicit GEMM fused the epilogue and stored f64 words into the f32 output, writing
# past its end (heap corruption, a later crash) and in the wrong places. The dot kernel
# already kept such epilogues out of the GEMM; fixed in backends/cpu/kernels_conv.py the
# same way: the convert runs in the epilogue pass over the product in scratch.
CONVOLUTION_THEN_CONVERT = """
HloModule fuzz

ENTRY main {
  p0 = f64[2,6,3] parameter(0)
  p1 = f64[2,3,4] parameter(1)
  convolution = f64[2,5,4] convolution(p0, p1), window_strides={1}, padding={{0,0}}, dim_labels="b0f_0io->b0f"
  ROOT convert = f32[2,5,4] convert(convolution)
}
"""


def test_convolution_with_a_converting_epilogue():
    rng = np.random.default_rng(0)
    args = [rng.standard_normal((2, 6, 3)), rng.standard_normal((2, 3, 4))]
    assert_backends_agree(CONVOLUTION_THEN_CONVERT, args, inexact=[True])


# The systolic backend emitted DMA transfers of zero columns (refused by its validator:
# "cols=0, expected >= 1") for every array with no elements -- a width-0 slice, a
# reshape of an empty parameter, an empty result -- and refused a dot contracting a
# size-0 dim ("a dot with nothing to contract"). Fixed by compiler/passes/zero_elements.py
# in the systolic pipeline (empty values become constants; empty contractions, reductions
# and pads become the splat they compute; concatenate drops empty parts) and by
# backends/systolic/codegen.py emitting no code for empty values or outputs.
EMPTY_VALUES_ON_SYSTOLIC = """
HloModule fuzz

add_f32 {
  a = f32[] parameter(0)
  b = f32[] parameter(1)
  ROOT add = f32[] add(a, b)
}

ENTRY main {
  p0 = f32[4,0,5] parameter(0)
  reshape = f32[0] reshape(p0)
  subtract = f32[0] subtract(reshape, reshape)
  p1 = f32[3,4] parameter(1)
  slice = f32[3,0] slice(p1), start_indices={0,2}, limit_indices={3,2}, strides={1,1}
  p2 = f32[0,2] parameter(2)
  dot = f32[3,2] dot_general(slice, p2), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  zero = f32[] constant(0)
  reduce = f32[3] reduce(slice, zero), dimensions={1}, to_apply=add_f32
  concatenate = f32[3,6] concatenate(p1, slice, dot), dimension=1
  ROOT tuple = (f32[0], f32[3,2], f32[3], f32[3,6], f32[4,0,5]) tuple(subtract, dot, reduce, concatenate, p0)
}
"""


def assert_systolic_agrees(text: str, args):
    """Bit for bit: these programs have no matrix-unit rounding (their dots multiply
    zeros, nothing, or small integers)."""
    assert_backends_agree(text, args, backend="systolic")


def test_empty_values_on_the_systolic_backend():
    assert_systolic_agrees(EMPTY_VALUES_ON_SYSTOLIC, [
        np.zeros((4, 0, 5), np.float32), np.arange(12, dtype=np.float32).reshape(3, 4),
        np.zeros((0, 2), np.float32)])


# clamp with 0-d bounds on an array: the systolic vector kernel read each bound as if it
# had the array's dims (a DMA of 4 words from a scalar's address: the neighbouring
# arguments, so element 1 on came out wrong). Fixed in backends/systolic/vector.py
# (leaf_operands): 0-d leaves of an elementwise tree with dims are read broadcast.
CLAMP_WITH_SCALAR_BOUNDS = """
HloModule fuzz

max_f32 {
  a = f32[] parameter(0)
  b = f32[] parameter(1)
  ROOT maximum = f32[] maximum(a, b)
}

ENTRY main {
  x = f32[2,4] parameter(0)
  lo = f32[] parameter(1)
  hi = f32[] parameter(2)
  clamp = f32[2,4] clamp(lo, x, hi)
  clamp.1 = f32[2,4] clamp(lo, x, hi)
  init = f32[] constant(-inf)
  reduce = f32[2] reduce(clamp.1, init), dimensions={1}, to_apply=max_f32
  ROOT tuple = (f32[2,4], f32[2]) tuple(clamp, reduce)
}
"""


def test_clamp_with_scalar_bounds_on_the_systolic_backend():
    x = np.array([[-3, -1, 1, 3], [5, -5, 0.5, 1.5]], np.float32)
    assert_systolic_agrees(CLAMP_WITH_SCALAR_BOUNDS, [x, np.float32(-2), np.float32(1)])


# The convolution expander turns negative convolution padding into a cropping pad, which
# the systolic backend refused ("negative (cropping) padding is not supported"): 6% of
# the systolic fuzz programs, every one with a convolution it claims to run. Fixed in
# backends/systolic/vector.py (lower_pad): the pad without the crops goes to scratch and
# the cropped window is copied out. Small integers keep the matrix unit exact here.
CROPPING_PAD_AND_CONVOLUTION = """
HloModule fuzz

ENTRY main {
  x = f32[3,4] parameter(0)
  value = f32[] constant(-7)
  pad = f32[7,3] pad(x, value), edge_padding_low={1,-1}, edge_padding_high={-1,0}, interior_padding={2,0}
  lhs = f32[1,6,2] parameter(1)
  rhs = f32[2,2,3] parameter(2)
  convolution = f32[1,4,3] convolution(lhs, rhs), window_strides={1}, padding={{-1,0}}, dim_labels="b0f_0io->b0f"
  ROOT tuple = (f32[7,3], f32[1,4,3]) tuple(pad, convolution)
}
"""


def test_cropping_pad_and_convolution_on_the_systolic_backend():
    rng = np.random.default_rng(0)
    assert_systolic_agrees(CROPPING_PAD_AND_CONVOLUTION, [
        np.arange(12, dtype=np.float32).reshape(3, 4),
        rng.integers(-3, 4, (1, 6, 2)).astype(np.float32), rng.integers(-3, 4, (2, 2, 3)).astype(np.float32)])


# Not a compiler bug: the fuzzer's own tolerance. An f32 cos (within 1-2 ulp on the CPU,
# docs/cpu-math.md) converted to f64 was compared with the f64 tolerance (1e-9), so a
# one-ulp f32 difference failed. An inexact value now keeps the tolerance of the least
# precise float dtype on its path (hlo_programs.ProgramBuilder.emit, checks.mismatch).
F32_COS_CONVERTED_TO_F64 = """
HloModule fuzz

ENTRY main {
  iota = f32[1,4,5] iota(), iota_dimension=1
  cos = f32[1,4,5] cos(iota)
  ROOT convert = f64[1,4,5] convert(cos)
}
"""


def test_an_f32_inexact_value_converted_to_f64_keeps_the_f32_tolerance():
    import hlo_programs
    from tessel.compiler import dtypes
    from tessel.compiler.ir import Module, Shape
    g = hlo_programs.ProgramBuilder(None, Module("m"), "main")
    x = g.parameter(Shape(dtypes.f32, (3,)))
    wide = g.emit("convert", [g.emit("cos", [x])], shape=Shape(dtypes.f64, (3,)))
    assert g.is_inexact(x) == 0.0 and g.is_inexact(wide) == checks.INEXACT_RTOL["f32"]
    assert_backends_agree(F32_COS_CONVERTED_TO_F64, [], inexact=[g.is_inexact(wide)])


# A reduce over the last dim and the one before it (dimensions={2,1} of f32[5,2,4]):
# the systolic backend reduced the last dim over lanes into a partial result whose last
# dim is x's dim 1, then reduced that dim as if it were a row dim, reading the partial
# result with the wrong strides. Fixed in backends/systolic/vector.py (lower_reduce: the
# partial result keeps a unit lane dim, so every dim left to reduce is a row dim), on
# main at the same time from placement's tests (a reduce over every dim of a matrix).
REDUCE_OVER_THE_LAST_TWO_DIMS = """
HloModule fuzz

add_f32 {
  a = f32[] parameter(0)
  b = f32[] parameter(1)
  ROOT add = f32[] add(a, b)
}

min_f32 {
  a = f32[] parameter(0)
  b = f32[] parameter(1)
  ROOT minimum = f32[] minimum(a, b)
}

ENTRY main {
  x = f32[5,2,4] parameter(0)
  zero = f32[] constant(0)
  sum = f32[5] reduce(x, zero), dimensions={2,1}, to_apply=add_f32
  y = f32[2,3,4,5] parameter(1)
  inf = f32[] constant(inf)
  min = f32[2] reduce(y, inf), dimensions={1,2,3}, to_apply=min_f32
  ROOT tuple = (f32[5], f32[2]) tuple(sum, min)
}
"""


def test_reduce_over_the_last_two_dims_on_the_systolic_backend():
    rng = np.random.default_rng(0)   # small integers: every order of summation is exact
    assert_systolic_agrees(REDUCE_OVER_THE_LAST_TWO_DIMS, [
        rng.integers(-5, 5, (5, 2, 4)).astype(np.float32), rng.integers(-5, 5, (2, 3, 4, 5)).astype(np.float32)])


# A module whose only constants have no elements (f64[0]) has no constant section, and
# the CPU code generator used that missing section (None) as the base pointer of the
# empty constant passed to a call: LLVM IR printing failed ("'NoneType' object has no
# attribute 'type'"). Fixed in backends/cpu/codegen.py: the section is then a null
# pointer (empty buffers are never read).
EMPTY_CONSTANT_INTO_A_CALL = """
HloModule fuzz

callee {
  p0.1 = f64[0] parameter(0)
  subtract = f64[0] subtract(p0.1, p0.1)
  ROOT add = f64[0] add(subtract, p0.1)
}

ENTRY main {
  constant = f64[0] constant({})
  call = f64[0] call(constant), to_apply=callee
  ROOT tuple = (f64[0]) tuple(call)
}
"""


def test_an_empty_constant_passed_to_a_call():
    assert_backends_agree(EMPTY_CONSTANT_INTO_A_CALL, [])


# The tessel.numpy campaign compared an f64 result computed from an f32 tanh against
# NumPy at the f64 tolerance: tessel's f32 tanh and NumPy's may differ by an ulp, which
# the f64 product keeps (found at 13:21 on 2026-11-22, 3 of 500 programs). Not a
# backend bug: each output is now held to the tolerance of the least precise float
# dtype on its path (tnp_programs.least_precise_on_path), as the HLO checks already do.
def test_an_f32_tanh_promoted_into_an_f64_product_keeps_the_f32_tolerance():
    from test_tnp_fuzz import check_tnp_program
    from tnp_programs import Step, TnpProgram
    steps = [Step("reduce", "prod", (1,), (("axis", 1), ("keepdims", False))),
             Step("slice", "slice", (0,), (("start", 2), ("step", 2))),
             Step("binary", "maximum", (2, 1)), Step("unary", "tanh", (4,)),
             Step("binary", "multiply", (2, 6)), Step("where", "where", (1, 1), (("condition", 1),)),
             Step("transpose", "transpose", (7,))]
    for seed in (1, 4):     # both differ by more than the f64 tolerance from NumPy's f32 tanh
        program = TnpProgram([(3,), (1, 3), (3, 3)], ["float32", "float32", "float64"], steps, (6, 7, 9), seed)
        check_tnp_program(program, ("interpreter", "cpu"))
