"""CPU codegen, sort (kernels_sort.py): stable merge sort by the comparator against the
interpreter -- ascending and descending, along any dim, ties kept in order, several
operands permuted together (argsort), custom comparators, odd and trivial lengths."""
from __future__ import annotations

import numpy as np
import pytest

import tessel
import tessel.numpy as tnp
from tessel.backends.interpreter.testing import one_op_module, reducer
from tessel.compiler.ir import Builder, Shape

from cpu_checks import assert_matches_interpreter


@pytest.mark.parametrize("shape,dim", [((37,), 0), ((5, 33), 1), ((33, 5), 0), ((3, 4, 17), 1), ((1,), 0),
                                       ((4, 0), 1), ((0, 4), 1), ((2, 1000), 1)])
@pytest.mark.parametrize("direction", ["LT", "GT"])
def test_sort(shape, dim, direction):
    x = np.random.default_rng(0).integers(-20, 20, shape).astype(np.float32)     # ties
    comparator = reducer("compare", "f32", direction=direction)
    module = one_op_module("sort", [Shape("f32", shape)], {"dimension": dim, "is_stable": True, "comparator": comparator})
    assert_matches_interpreter(module, [x])


def key_only_comparator(module):
    """(k0, k1, v0, v1) -> k0 < k1: the values follow the keys; equal keys keep order."""
    b = Builder(module, "by_key")
    k, v = Shape("s32", ()), Shape("f64", ())
    k0, k1 = b.parameter(k, "k0"), b.parameter(k, "k1")
    b.parameter(v, "v0"), b.parameter(v, "v1")
    return b.build(b.emit("compare", [k0, k1], {"direction": "LT"}))


def test_sort_two_operands_is_stable():
    rng = np.random.default_rng(1)
    keys = rng.integers(0, 4, (3, 50)).astype(np.int32)
    values = np.broadcast_to(np.arange(50, dtype=np.float64), (3, 50)).copy()
    module = one_op_module("sort", [Shape("s32", (3, 50)), Shape("f64", (3, 50))],
                           {"dimension": 1, "comparator": key_only_comparator})
    assert_matches_interpreter(module, [keys, values])


@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.float64])
def test_sort_and_argsort_through_jit(dtype):
    x = np.random.default_rng(2).standard_normal((6, 45)).astype(dtype) * 10
    for f in (lambda x: tnp.sort(x), lambda x: tnp.argsort(x, axis=0), lambda x: tnp.sort(x, axis=None)):
        np.testing.assert_array_equal(np.asarray(tessel.jit(f, backend="cpu")(x)),
                                      np.asarray(tessel.jit(f, backend="interpreter")(x)))


@pytest.mark.parametrize("dtype", ["s8", "u8", "u32", "s64", "bf16", "f16", "pred"])
def test_sort_window_and_gather_kernels_on_every_dtype(dtype):
    np_dtype = {"s8": np.int8, "u8": np.uint8, "u32": np.uint32, "s64": np.int64, "bf16": np.float32,
                "f16": np.float16, "pred": bool}[dtype]
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2 if dtype == "pred" else 100, (3, 17)).astype(np_dtype)
    combine = "or" if dtype == "pred" else "maximum"
    assert_matches_interpreter(one_op_module("sort", [Shape(dtype, (3, 17))], {
        "dimension": 1, "comparator": reducer("compare", dtype, direction="LT")}), [x])
    assert_matches_interpreter(one_op_module("reduce_window", [Shape(dtype, (3, 17)), Shape(dtype, ())], {
        "window_dimensions": (2, 3), "to_apply": reducer(combine, dtype)}), [x, np.array(0, np_dtype)])
    gather = dict(offset_dims=(1,), collapsed_slice_dims=(0,), start_index_map=(0,), index_vector_dim=1,
                  slice_sizes=(1, 17))
    assert_matches_interpreter(one_op_module("gather", [Shape(dtype, (3, 17)), Shape("s32", (4, 1))], gather),
                               [x, np.array([[2], [0], [5], [-1]], np.int32)])
