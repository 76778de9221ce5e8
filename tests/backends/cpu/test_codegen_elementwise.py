"""CPU codegen, elementwise ops: every op on every dtype it accepts, against the interpreter.

One module per (dtype, shape) computes every unary and binary op, every compare
direction and every convert of the same two arguments, so each case is one compile.
Shapes cover scalar code (0-d), vector code with a masked tail (37 = 2 x 16 + 5 lanes
of f32) and an outer loop, and empty arrays. Edge values (NaN, infinities, signed
zeros, integer extremes, zero divisors) are planted in the arguments.
"""
from __future__ import annotations

import numpy as np
import pytest

from tessel.compiler import dtypes, ops
from tessel.compiler.ir import Builder, Module, Shape
from tessel.compiler.pipeline import optimize

from cpu_checks import assert_matches_interpreter, run_cpu

# Relative tolerance per dtype: f32/f64 transcendental functions come from mathlib
# (a few ulp); f16/bf16 results are rounded after every op like the interpreter's.
RTOL = {"f16": 2e-3, "bf16": 1.6e-2, "f32": 3e-6, "f64": 1e-14}


def arguments(dtype, shape, rng):
    """Two arrays of `dtype` with edge values planted at the front."""
    if dtype.is_pred:
        return [rng.random(shape) < 0.5, rng.random(shape) < 0.5]
    if dtype.is_integer:
        info = np.iinfo(dtype.storage)
        x = rng.integers(max(info.min, -100), min(info.max, 100), shape).astype(dtype.storage)
        y = rng.integers(max(info.min, -9), min(info.max, 9), shape).astype(dtype.storage)
        edges_x, edges_y = [info.min, info.max, 7, info.min, 0], [0, 3, 0, -1 if info.min else 2, 0]
    else:
        x = dtypes.canonicalize((rng.standard_normal(shape) * 3).astype(np.float32), dtype)
        y = dtypes.canonicalize((rng.standard_normal(shape) * 3).astype(np.float32), dtype)
        edges_x = [np.nan, np.inf, -np.inf, -0.0, 0.0, 1e30 if dtype.bits > 16 else 6e4, 2.5, -2.5]
        edges_y = [1.0, np.nan, 2.0, 0.0, -0.0, 3.0, 0.0, 2.0]
    for array, edges in ((x, edges_x), (y, edges_y)):
        n = min(array.size, len(edges))
        array.reshape(-1)[:n] = np.asarray(edges[:n]).astype(dtype.storage)
    return [x, y]


def accepts(opname: str, kind: str, dtype) -> bool:
    try:
        ops.check_dtype_class(Shape(dtype, ()), kind, opname)
    except ops.ShapeError:
        return False
    return True


def all_elementwise_module(dtype, shape) -> Module:
    module = Module(f"elementwise_{dtype.name}")
    b = Builder(module, "main")
    x, y = b.parameter(Shape(dtype, shape), "x"), b.parameter(Shape(dtype, shape), "y")
    results = [b.emit(name, [x]) for name, kind in {**ops.UNARY, "is_finite": "float"}.items()
               if accepts(name, kind, dtype)]
    results += [b.emit(name, [x, y]) for name, (kind, _) in ops.BINARY.items() if accepts(name, kind, dtype)]
    results += [b.emit("compare", [x, y], attrs={"direction": d}) for d in ops.COMPARE_DIRECTIONS]
    results += [b.emit("convert", [x], shape=Shape(target, shape)) for target in dtypes.ALL]
    pred = b.emit("compare", [x, y], attrs={"direction": "LT"})
    results += [b.emit("select", [pred, x, y])]
    if not dtype.is_pred:
        results += [b.emit("clamp", [y, x, b.emit("add", [y, y])])]
    b.build(b.emit("tuple", results), entry=True)
    return module


@pytest.mark.parametrize("shape", [(), (2, 37)], ids=["0d", "2x37"])
@pytest.mark.parametrize("dtype", dtypes.ALL, ids=lambda d: d.name)
def test_every_elementwise_op_matches_the_interpreter(dtype, shape):
    rng = np.random.default_rng([dtypes.ALL.index(dtype), len(shape)])
    module = all_elementwise_module(dtype, shape)
    assert_matches_interpreter(module, arguments(dtype, shape, rng), rtol=RTOL.get(dtype.name, 0))


@pytest.mark.parametrize("dtype", [dtypes.f32, dtypes.s32, dtypes.bf16], ids=lambda d: d.name)
def test_empty_arrays(dtype):
    b = Builder(module := Module("empty"), "main")
    x, y = b.parameter(Shape(dtype, (0, 5)), "x"), b.parameter(Shape(dtype, (0, 5)), "y")
    b.build(b.emit("tuple", [b.emit("add", [x, y]), b.emit("maximum", [x, y])]), entry=True)
    got = run_cpu(module, [np.zeros((0, 5), dtype.storage)] * 2)
    assert [g.shape for g in got] == [(0, 5), (0, 5)]


def test_scalar_clamp_bounds_broadcast():
    b = Builder(module := Module("clamp"), "main")
    lo, x, hi = (b.parameter(Shape(dtypes.f32, s), n) for s, n in (((), "lo"), ((3, 21), "x"), ((), "hi")))
    b.build(b.emit("tuple", [b.emit("clamp", [lo, x, hi])]), entry=True)
    x = np.random.default_rng(0).standard_normal((3, 21)).astype(np.float32)
    x[0, 0] = np.nan
    assert_matches_interpreter(module, [np.float32(-0.5), x, np.float32(0.25)])


def test_a_fused_chain_of_every_float_op_is_one_vectorized_kernel():
    """Unary ops chained through one loop fusion compute what the unfused ops do."""
    b = Builder(module := Module("chain"), "main")
    x = b.parameter(Shape(dtypes.f32, (3, 45)), "x")
    value = x
    for name in ("tanh", "logistic", "exp", "log1p", "sqrt", "sin", "cos", "erf", "expm1", "negate",
                 "abs", "floor", "ceil", "round", "rsqrt", "log"):
        value = b.emit(name, [value])
    value = b.emit("add", [value, b.emit("power", [x, x])])
    b.build(b.emit("tuple", [value]), entry=True)
    optimized, _ = optimize(module, "cpu")
    assert sum(i.opcode == "fusion" for i in optimized.entry.instructions) == 1
    x = np.random.default_rng(1).uniform(0.1, 2.0, (3, 45)).astype(np.float32)
    assert_matches_interpreter(optimized, [x], rtol=2e-5)


def test_power_by_a_small_integer_constant_is_exact_enough():
    """x**2 and x**3 (layer norm, gelu) become multiplications, x**-1 a division."""
    b = Builder(module := Module("powers"), "main")
    x = b.parameter(Shape(dtypes.f32, (50,)), "x")
    results = []
    for n in (0.0, 1.0, 2.0, 3.0, -1.0, 2.5):
        exponent = b.emit("broadcast_in_dim", [b.constant(np.float32(n))], attrs={"broadcast_dimensions": ()},
                          shape=Shape(dtypes.f32, (50,)))
        results.append(b.emit("power", [x, exponent]))
    b.build(b.emit("tuple", results), entry=True)
    optimized, _ = optimize(module, "cpu")
    x = np.random.default_rng(2).standard_normal(50).astype(np.float32)
    x[:3] = [np.nan, 0.0, -np.inf]
    assert_matches_interpreter(optimized, [x], rtol=4e-7)


def test_integer_division_follows_xla():
    b = Builder(module := Module("div"), "main")
    x, y = b.parameter(Shape(dtypes.s32, (6,)), "x"), b.parameter(Shape(dtypes.s32, (6,)), "y")
    b.build(b.emit("tuple", [b.emit("divide", [x, y]), b.emit("remainder", [x, y])]), entry=True)
    x = np.array([7, -7, 5, np.iinfo(np.int32).min, 3, -3], np.int32)
    y = np.array([2, 2, 0, -1, -2, 0], np.int32)
    quotient, remainder = run_cpu(module, [x, y])
    np.testing.assert_array_equal(quotient, [3, -3, -1, np.iinfo(np.int32).min, -1, -1])
    np.testing.assert_array_equal(remainder, [1, -1, 5, 0, 1, -3])
