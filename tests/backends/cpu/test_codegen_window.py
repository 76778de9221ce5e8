"""CPU codegen, window ops (kernels_window.py): reduce_window (padding, base and window
dilation, variadic argmax, empty shapes, dtypes) and select_and_scatter (ties, overlapping
and padded windows, windows of padding only) against the interpreter."""
from __future__ import annotations

import numpy as np
import pytest

import tessel
from tessel import lax
from tessel.backends.interpreter import evaluate
from tessel.backends.interpreter.testing import one_op_module, reducer
from tessel.compiler.ir import Builder, Shape

from cpu_checks import assert_matches_interpreter
from op_cases import SELECT_CASES, WINDOWS, argmax_reducer


def ints(shape, dtype=np.float32, seed=0, low=-4, high=5):
    return np.random.default_rng(seed).integers(low, high, shape).astype(dtype)


# The shared cases, padding around an empty input, and a strided, padded NHWC pool.
WINDOWS = {
    **WINDOWS,
    "empty_input_padded": ((0, 3), dict(window_dimensions=(1, 2), padding=((1, 1), (0, 0)))),
    "nhwc_pool": ((2, 9, 9, 5), dict(window_dimensions=(1, 3, 3, 1), window_strides=(1, 2, 2, 1),
                                     padding=((0, 0), (1, 1), (1, 1), (0, 0)))),
}


@pytest.mark.parametrize("op", ["add", "maximum", "minimum", "multiply"])
@pytest.mark.parametrize("case", sorted(WINDOWS))
def test_reduce_window(op, case):
    shape, attrs = WINDOWS[case]
    x = ints(shape, low=-2, high=3) if op == "multiply" else ints(shape)
    init = np.array({"add": 0.5, "maximum": -10.0, "minimum": 10.0, "multiply": 1.0}[op], np.float32)
    module = one_op_module("reduce_window", [Shape("f32", shape), Shape("f32", ())],
                           {**attrs, "to_apply": reducer(op, "f32")})
    assert_matches_interpreter(module, [x, init])


@pytest.mark.parametrize("dtype", ["s32", "s8", "f64", "bf16", "pred"])
def test_reduce_window_dtypes(dtype):
    shape, attrs = WINDOWS["padded"]
    np_dtype = {"s32": np.int32, "s8": np.int8, "f64": np.float64, "bf16": np.float32, "pred": bool}[dtype]
    x = ints(shape, np_dtype, low=0 if dtype == "pred" else -4, high=2 if dtype == "pred" else 5)
    op = "or" if dtype == "pred" else "add"
    module = one_op_module("reduce_window", [Shape(dtype, shape), Shape(dtype, ())],
                           {**attrs, "to_apply": reducer(op, dtype)})
    assert_matches_interpreter(module, [x, np.array(0, np_dtype)])


@pytest.mark.parametrize("case", ["maxpool_2x2", "padded", "window_dilated"])
def test_variadic_reduce_window_argmax(case):
    shape, attrs = WINDOWS[case]
    x = ints(shape, seed=6)
    pos = np.arange(x.size, dtype=np.int32).reshape(shape)
    module = one_op_module("reduce_window", [Shape("f32", shape), Shape("s32", shape), Shape("f32", ()),
                                             Shape("s32", ())], {**attrs, "to_apply": argmax_reducer("f32")})
    assert_matches_interpreter(module, [x, pos, np.array(-np.inf, np.float32), np.array(-1, np.int32)])


def test_max_pool_through_jit():
    x = np.random.default_rng(0).standard_normal((2, 12, 11, 8)).astype(np.float32)
    f = lambda x: lax.reduce_window(x, -np.inf, max, (1, 3, 3, 1), (1, 2, 2, 1), "SAME")  # noqa: E731
    np.testing.assert_array_equal(np.asarray(tessel.jit(f, backend="cpu")(x)),
                                  np.asarray(tessel.jit(f, backend="interpreter")(x)))


# ----------------------------------------------------------------------------- select_and_scatter

@pytest.mark.parametrize("direction", ["GE", "GT", "LE"])
@pytest.mark.parametrize("case", sorted(SELECT_CASES))
def test_select_and_scatter(direction, case):
    shape, attrs = SELECT_CASES[case]
    operand = ints(shape, seed=7, low=0, high=3)      # many ties
    out_shape = evaluate(one_op_module("reduce_window", [Shape("f32", shape), Shape("f32", ())],
                                       {**attrs, "to_apply": reducer("add", "f32")}),
                         [operand, np.array(0, np.float32)]).shape
    source = ints(out_shape, seed=8, low=1, high=9)
    module = one_op_module("select_and_scatter", [Shape("f32", shape), Shape("f32", out_shape), Shape("f32", ())],
                           {**attrs, "select": reducer("compare", "f32", direction=direction),
                            "scatter": reducer("add", "f32")})
    assert_matches_interpreter(module, [operand, source, np.array(0.25, np.float32)])


def test_select_and_scatter_integers():
    shape, attrs = SELECT_CASES["overlapping_padded"]
    operand, source = ints(shape, np.int32, seed=9, low=0, high=3), ints((5, 5), np.int32, seed=10, low=1, high=9)
    module = one_op_module("select_and_scatter", [Shape("s32", shape), Shape("s32", (5, 5)), Shape("s32", ())],
                           {**attrs, "select": reducer("compare", "s32", direction="GE"),
                            "scatter": reducer("add", "s32")})
    assert_matches_interpreter(module, [operand, source, np.array(0, np.int32)])


def test_select_with_a_call_inside():
    shape, attrs = SELECT_CASES["overlapping_padded"]
    operand, source = ints(shape, np.int32, seed=9, low=0, high=3), ints((5, 5), np.int32, seed=10, low=1, high=9)

    def call_compare(module):
        inner = reducer("compare", "s32", direction="GE")(module)
        b = Builder(module, "select")
        s = Shape("s32", ())
        x, y = b.parameter(s, "a"), b.parameter(s, "b")
        return b.build(b.emit("call", [x, y], attrs={"to_apply": inner}))

    module = one_op_module("select_and_scatter", [Shape("s32", shape), Shape("s32", (5, 5)), Shape("s32", ())],
                           {**attrs, "select": call_compare, "scatter": reducer("add", "s32")})
    assert_matches_interpreter(module, [operand, source, np.array(0, np.int32)])
