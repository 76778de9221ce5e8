"""CPU codegen, data movement: iota, constants, broadcast, reshape, transpose, slice,
concatenate, pad, reverse -- alone (copy kernels) and fused into a loop nest (index
maps), vector code and the scalar fallback, against the interpreter."""
from __future__ import annotations

import numpy as np
import pytest

from tessel.backends.cpu import codegen
from tessel.compiler import dtypes
from tessel.compiler.ir import Builder, Module, Shape
from tessel.compiler.pipeline import optimize

from cpu_checks import assert_matches_interpreter, run_cpu


def values(dtype, shape, rng):
    if dtype.is_pred:
        return rng.random(shape) < 0.5
    if dtype.is_integer:
        return rng.integers(-100, 100, shape).astype(dtype.storage)
    return dtypes.canonicalize(rng.standard_normal(shape).astype(np.float32), dtype)


def f(shape, dtype=dtypes.f32):
    return Shape(dtype, shape)


# (name, operand shapes, build(builder, *params) -> instruction)
CASES = [
    ("broadcast_rows", [(5,)], lambda b, x: b.emit(
        "broadcast_in_dim", [x], attrs={"broadcast_dimensions": (1,)}, shape=f((3, 5), x.shape.dtype))),
    ("broadcast_columns", [(5,)], lambda b, x: b.emit(
        "broadcast_in_dim", [x], attrs={"broadcast_dimensions": (0,)}, shape=f((5, 37), x.shape.dtype))),
    ("broadcast_scalar", [()], lambda b, x: b.emit(
        "broadcast_in_dim", [x], attrs={"broadcast_dimensions": ()}, shape=f((4, 33), x.shape.dtype))),
    ("broadcast_size1", [(3, 1)], lambda b, x: b.emit(
        "broadcast_in_dim", [x], attrs={"broadcast_dimensions": (0, 2)}, shape=f((3, 2, 19), x.shape.dtype))),
    ("transpose", [(7, 33)], lambda b, x: b.emit("transpose", [x], attrs={"permutation": (1, 0)})),
    ("transpose_outer", [(4, 6, 35)], lambda b, x: b.emit("transpose", [x], attrs={"permutation": (1, 0, 2)})),
    ("reshape_split", [(6, 64)], lambda b, x: b.emit("reshape", [x], shape=f((6, 4, 16), x.shape.dtype))),
    ("reshape_merge", [(6, 4, 16)], lambda b, x: b.emit("reshape", [x], shape=f((6, 64), x.shape.dtype))),
    ("reshape_regroup", [(6, 35)], lambda b, x: b.emit("reshape", [x], shape=f((5, 42), x.shape.dtype))),
    ("reshape_to_scalar", [(1, 1)], lambda b, x: b.emit("reshape", [x], shape=f((), x.shape.dtype))),
    ("slice", [(9, 40)], lambda b, x: b.emit("slice", [x], attrs={
        "start_indices": (1, 3), "limit_indices": (8, 39), "strides": (2, 1)})),
    ("slice_strided_last", [(9, 40)], lambda b, x: b.emit("slice", [x], attrs={
        "start_indices": (0, 1), "limit_indices": (9, 40), "strides": (1, 3)})),
    ("reverse", [(5, 37)], lambda b, x: b.emit("reverse", [x], attrs={"dimensions": (0, 1)})),
    ("concatenate_rows", [(2, 20), (3, 20)], lambda b, x, y: b.emit("concatenate", [x, y], attrs={"dimension": 0})),
    ("concatenate_columns", [(3, 17), (3, 20)], lambda b, x, y: b.emit("concatenate", [x, y], attrs={"dimension": 1})),
    ("concatenate_aligned", [(3, 32), (3, 16), (3, 0)], lambda b, x, y, z: b.emit(
        "concatenate", [x, y, z], attrs={"dimension": 1})),
    ("pad", [(4, 19), ()], lambda b, x, v: b.emit("pad", [x, v], attrs={
        "edge_padding_low": (1, 2), "edge_padding_high": (2, -3), "interior_padding": (1, 0)})),
    ("pad_rows", [(4, 32), ()], lambda b, x, v: b.emit("pad", [x, v], attrs={
        "edge_padding_low": (1, 0), "edge_padding_high": (2, 0)})),
    ("pad_interior_last", [(3, 9), ()], lambda b, x, v: b.emit("pad", [x, v], attrs={
        "edge_padding_low": (0, -1), "edge_padding_high": (0, 4), "interior_padding": (0, 2)})),
    ("iota", [(3, 21)], lambda b, x: b.emit("add", [x, b.emit(
        "iota", [], attrs={"iota_dimension": 1}, shape=f((3, 21), x.shape.dtype))])),
    ("iota_rows", [(3, 21)], lambda b, x: b.emit("add", [x, b.emit(
        "iota", [], attrs={"iota_dimension": 0}, shape=f((3, 21), x.shape.dtype))])),
]


def build(cases, dtype, fused):
    """One module computing every case from its own parameters."""
    module = Module("data")
    b = Builder(module, "main")
    results = []
    for name, in_shapes, make in cases:
        params = [b.parameter(f(s, dtype), f"{name}{i}") for i, s in enumerate(in_shapes)]
        value = make(b, *params)
        if fused:       # an elementwise consumer pulls the op into a loop fusion
            value = b.emit("multiply", [value, value]) if not dtype.is_pred else b.emit("not", [value])
        results.append(value)
    b.build(b.emit("tuple", results), entry=True)
    return optimize(module, "cpu")[0] if fused else module


@pytest.mark.parametrize("fused", [False, True], ids=["alone", "fused"])
@pytest.mark.parametrize("dtype", [dtypes.f32, dtypes.s8, dtypes.bf16, dtypes.f64, dtypes.pred],
                         ids=lambda d: d.name)
def test_data_movement_matches_the_interpreter(dtype, fused):
    rng = np.random.default_rng(dtypes.ALL.index(dtype))
    cases = [c for c in CASES if not (c[0].startswith("iota") and dtype.is_pred)]
    module = build(cases, dtype, fused)
    assert_matches_interpreter(module, [values(dtype, s, rng) for _, shapes, _ in cases for s in shapes])


def test_constants_inside_fusions_splat_or_global():
    b = Builder(module := Module("constants"), "main")
    x = b.parameter(f((4, 16)), "x")
    table = b.constant(np.arange(16, dtype=np.float32).reshape(1, 16))    # small: joins the fusion
    row = b.emit("broadcast_in_dim", [b.emit("reshape", [table], shape=f((16,)))],
                 attrs={"broadcast_dimensions": (1,)}, shape=f((4, 16)))
    nan = b.emit("broadcast_in_dim", [b.constant(np.float32(np.nan))], attrs={"broadcast_dimensions": ()},
                 shape=f((4, 16)))
    big = b.constant(np.linspace(-1, 1, 64, dtype=np.float32).reshape(4, 16))  # large: an operand
    b.build(b.emit("tuple", [b.emit("add", [b.emit("multiply", [x, row]), big]),
                             b.emit("maximum", [x, nan])]), entry=True)
    optimized, _ = optimize(module, "cpu")
    assert_matches_interpreter(optimized, [np.random.default_rng(3).standard_normal((4, 16)).astype(np.float32)])


def vector_ir(module) -> str:
    return codegen.compile_program(optimize(module, "cpu")[0]).ir


def test_contiguous_loop_fusions_use_host_vectors_and_a_masked_tail():
    b = Builder(module := Module("vectors"), "main")
    x = b.parameter(f((8, 1000)), "x")
    bias = b.emit("broadcast_in_dim", [b.parameter(f((1000,)), "bias")], attrs={"broadcast_dimensions": (1,)},
                  shape=f((8, 1000)))
    b.build(b.emit("tuple", [b.emit("multiply", [b.emit("add", [x, bias]), x])]), entry=True)
    text = vector_ir(module)
    lanes = codegen.host().vector_lanes(4)
    assert f"<{lanes} x float>" in text
    assert "llvm.masked.store" in text      # 1000 = 62 x 16 + 8


def test_a_read_whose_lanes_wrap_falls_back_to_scalar_code():
    """A reshape that regroups the last dim (6 x 35 -> 5 x 42) cannot be read by vectors."""
    b = Builder(module := Module("regroup"), "main")
    x = b.parameter(f((6, 35)), "x")
    y = b.emit("reshape", [x], shape=f((5, 42)))
    b.build(b.emit("tuple", [b.emit("multiply", [y, y])]), entry=True)
    text = vector_ir(module)
    assert "<16 x float>" not in text and "<8 x float>" not in text


def test_transposed_reads_stay_vectorized_with_per_lane_loads():
    b = Builder(module := Module("transposed"), "main")
    x, y = b.parameter(f((33, 40)), "x"), b.parameter(f((40, 33)), "y")
    t = b.emit("transpose", [y], attrs={"permutation": (1, 0)})
    b.build(b.emit("tuple", [b.emit("add", [x, t])]), entry=True)
    lanes = codegen.host().vector_lanes(4)
    assert f"<{lanes} x float>" in vector_ir(module)
    rng = np.random.default_rng(4)
    assert_matches_interpreter(optimize(module, "cpu")[0], [rng.standard_normal((33, 40)).astype(np.float32),
                                                             rng.standard_normal((40, 33)).astype(np.float32)])


def test_a_stencil_reaches_each_index_once():
    """y = y[1:] + y[:-1], 14 times, in one loop fusion: the same element of an earlier
    y is reached along many paths; the evaluator computes it once (affine index forms),
    so the kernel holds d(d+1)/2 additions per vector body, not 2^d."""
    depth, n = 14, 4096
    b = Builder(module := Module("stencil"), "main")
    y = b.parameter(f((n,)), "x")
    for k in range(depth):
        size = n - k
        y = b.emit("add", [b.emit("slice", [y], attrs={"start_indices": (1,), "limit_indices": (size,)}),
                           b.emit("slice", [y], attrs={"start_indices": (0,), "limit_indices": (size - 1,)})])
    b.build(b.emit("tuple", [y]), entry=True)
    module, _ = optimize(module, "cpu")
    text = codegen.compile_program(module).ir
    assert text.count(" = fadd ") <= 2 * depth * (depth + 1) // 2     # vector body and masked tail
    x = np.random.default_rng(5).standard_normal(n).astype(np.float32)
    (got,) = run_cpu(module, [x])
    want = x.astype(np.float64)
    for _ in range(depth):
        want = want[1:] + want[:-1]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)
