"""CPU codegen, index kernels (kernels_gather.py): dynamic_slice, dynamic_update_slice,
gather and scatter against the interpreter -- XLA's clamping of starts, general
dimension numbers, out-of-bounds scatter windows skipped, repeated scatter targets in
order, every combiner, index dtypes, empty shapes, bf16 rounding at every combine."""
from __future__ import annotations

import numpy as np
import pytest

import tessel
from tessel.backends.interpreter.testing import one_op_module, reducer
from tessel.compiler.ir import Builder, Shape

from cpu_checks import assert_matches_interpreter
from op_cases import GATHERS, SCATTERS, assign_computation


def scalar(value, dtype=np.int32):
    return np.array(value, dtype)


# ----------------------------------------------------------------------------- dynamic slices

@pytest.mark.parametrize("starts", [(0, 0), (2, 3), (-4, 1), (9, 99), (1, -1)])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64, np.uint32, np.int8])
def test_dynamic_slice_clamps(starts, index_dtype):
    x = np.arange(6 * 7, dtype=np.float32).reshape(6, 7)
    if np.dtype(index_dtype).kind == "u":
        starts = tuple(abs(s) for s in starts)
    args = [x] + [scalar(s, index_dtype) for s in starts]
    module = one_op_module("dynamic_slice", [Shape("f32", x.shape)] + [Shape(np.dtype(index_dtype).name.replace(
        "int", "s").replace("us", "u"), ())] * 2, {"slice_sizes": (3, 4)})
    assert_matches_interpreter(module, args)


@pytest.mark.parametrize("dtype", ["f64", "s8", "pred", "bf16", "f16"])
def test_dynamic_slice_dtypes_and_ranks(dtype):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((3, 4, 5)) > 0) if dtype == "pred" else rng.integers(-9, 9, (3, 4, 5)).astype(
        {"f64": np.float64, "s8": np.int8, "bf16": np.float32, "f16": np.float16}[dtype])
    module = one_op_module("dynamic_slice", [Shape(dtype, (3, 4, 5))] + [Shape("s32", ())] * 3,
                           {"slice_sizes": (2, 1, 5)})
    assert_matches_interpreter(module, [x, scalar(1), scalar(3), scalar(2)])


def test_dynamic_slice_0d_and_empty():
    module = one_op_module("dynamic_slice", [Shape("f32", ())], {"slice_sizes": ()})
    assert_matches_interpreter(module, [np.array(2.5, np.float32)])
    module = one_op_module("dynamic_slice", [Shape("f32", (5,)), Shape("s32", ())], {"slice_sizes": (0,)})
    assert_matches_interpreter(module, [np.arange(5, dtype=np.float32), scalar(3)])


@pytest.mark.parametrize("starts", [(0, 0), (2, 3), (-4, 1), (9, 99)])
def test_dynamic_update_slice_clamps(starts):
    x = np.arange(6 * 7, dtype=np.float32).reshape(6, 7)
    u = -np.arange(3 * 4, dtype=np.float32).reshape(3, 4)
    module = one_op_module("dynamic_update_slice", [Shape("f32", x.shape), Shape("f32", u.shape)]
                           + [Shape("s32", ())] * 2)
    assert_matches_interpreter(module, [x, u] + [scalar(s) for s in starts])


def test_dynamic_update_slice_0d_empty_and_whole():
    module = one_op_module("dynamic_update_slice", [Shape("f32", ()), Shape("f32", ())])
    assert_matches_interpreter(module, [np.array(1.0, np.float32), np.array(2.0, np.float32)])
    module = one_op_module("dynamic_update_slice", [Shape("s32", (4,)), Shape("s32", (0,)), Shape("s32", ())])
    assert_matches_interpreter(module, [np.arange(4, dtype=np.int32), np.zeros(0, np.int32), scalar(2)])
    module = one_op_module("dynamic_update_slice", [Shape("f64", (4, 3)), Shape("f64", (4, 3))]
                           + [Shape("s64", ())] * 2)
    assert_matches_interpreter(module, [np.zeros((4, 3)), np.ones((4, 3)), scalar(5, np.int64), scalar(-1, np.int64)])


# ----------------------------------------------------------------------------- gather

# The shared cases and one large enough for the vectorized row copy.
GATHERS = {**GATHERS, "large_rows": ((300, 70), np.arange(0, 3000, 7) % 300,
                                     dict(offset_dims=(1,), collapsed_slice_dims=(0,), start_index_map=(0,),
                                          index_vector_dim=1, slice_sizes=(1, 70)))}


@pytest.mark.parametrize("case", sorted(GATHERS))
@pytest.mark.parametrize("index_dtype", ["s32", "s64", "u8"])
def test_gather(case, index_dtype):
    shape, indices, attrs = GATHERS[case]
    if index_dtype == "u8":
        indices = np.abs(indices) % 256
    indices = indices.astype({"s32": np.int32, "s64": np.int64, "u8": np.uint8}[index_dtype])
    operand = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    module = one_op_module("gather", [Shape("f32", shape), Shape(index_dtype, indices.shape)], attrs)
    assert_matches_interpreter(module, [operand, indices])


# ----------------------------------------------------------------------------- scatter

def affine(dtype):
    """old * 2 + new: neither commutative nor associative, so order matters."""
    def build(module):
        b = Builder(module, "affine")
        s = Shape(dtype, ())
        old, new = b.parameter(s, "old"), b.parameter(s, "new")
        two = b.emit("add", [old, old])
        return b.build(b.emit("add", [two, new]))
    return build


COMBINERS = {"add": lambda d: reducer("add", d), "multiply": lambda d: reducer("multiply", d),
             "maximum": lambda d: reducer("maximum", d), "minimum": lambda d: reducer("minimum", d),
             "assign": assign_computation, "affine": affine}


@pytest.mark.parametrize("case", sorted(SCATTERS))
@pytest.mark.parametrize("combine", sorted(COMBINERS))
def test_scatter(case, combine):
    shape, indices, upd_shape, attrs = SCATTERS[case]
    rng = np.random.default_rng(0)
    operand = rng.integers(-5, 5, shape).astype(np.float32)
    updates = rng.integers(-5, 5, upd_shape).astype(np.float32)
    indices = indices.astype(np.int32)
    module = one_op_module("scatter", [Shape("f32", shape), Shape("s32", indices.shape), Shape("f32", upd_shape)],
                           {**attrs, "to_apply": COMBINERS[combine]("f32")})
    assert_matches_interpreter(module, [operand, indices, updates])


@pytest.mark.parametrize("dtype", ["s32", "bf16", "f64", "pred"])
def test_scatter_dtypes(dtype):
    shape, indices, upd_shape, attrs = SCATTERS["rows_repeated"]
    rng = np.random.default_rng(1)
    np_dtype = {"s32": np.int32, "bf16": np.float32, "f64": np.float64, "pred": bool}[dtype]
    operand = (rng.integers(0, 2, shape) if dtype == "pred" else rng.integers(-5, 300, shape)).astype(np_dtype)
    updates = (rng.integers(0, 2, upd_shape) if dtype == "pred" else rng.integers(-5, 5, upd_shape)).astype(np_dtype)
    if dtype == "bf16":
        operand[...] = 256.0
    reduce = reducer("or" if dtype == "pred" else "add", dtype)
    module = one_op_module("scatter", [Shape(dtype, shape), Shape("u32", indices.shape), Shape(dtype, upd_shape)],
                           {**attrs, "to_apply": reduce})
    assert_matches_interpreter(module, [operand, indices.astype(np.uint32), updates])


# ----------------------------------------------------------------------------- in programs

def test_indexing_programs_through_jit():
    def f(x, i, k):
        rows = x[i % 5]                                     # gather
        window = tessel.lax.dynamic_slice(x, (k, 1), (2, 3))
        y = tessel.lax.dynamic_update_slice(x, window * 2, (k + 1, k))
        return rows.sum(axis=0) + y[0, :1], y
    x = np.arange(35, dtype=np.float32).reshape(5, 7)
    i, k = np.array([3, 0, 7, 2], np.int32), np.array(2, np.int32)
    got = tessel.jit(f, backend="cpu")(x, i, k)
    want = tessel.jit(f, backend="interpreter")(x, i, k)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w))
