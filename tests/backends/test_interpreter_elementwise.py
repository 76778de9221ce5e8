"""Interpreter: elementwise ops against NumPy (or Python where NumPy's semantics differ)."""
import math

import numpy as np
import pytest

from tessel.backends.interpreter import evaluate
from tessel.backends.interpreter.testing import one_op_module, run_op
from tessel.compiler import dtypes
from tessel.compiler.ir import Builder, Module, Shape

FLOATS = ["f16", "bf16", "f32", "f64"]
SIGNED = ["s8", "s32", "s64"]
UNSIGNED = ["u8", "u32"]
INTS = SIGNED + UNSIGNED
SHAPES = [(), (0,), (2, 3), (3, 0, 2)]
RTOL = {"f16": 2e-3, "bf16": 1e-2, "f32": 2e-6, "f64": 1e-13}


def sample(dtype, shape, seed=0, low=None, high=None):
    """Random values of `dtype` (as its storage type; bf16 rounded)."""
    dt = dtypes.from_any(dtype)
    rng = np.random.default_rng(seed)
    if dt.is_pred:
        return rng.random(shape) < 0.5
    if dt.is_integer:
        info = np.iinfo(dt.storage)
        lo = info.min if low is None else low
        hi = info.max if high is None else high
        return rng.integers(lo, hi, size=shape, dtype=dt.storage, endpoint=True)
    lo, hi = (-4.0 if low is None else low), (4.0 if high is None else high)
    return dtypes.canonicalize(rng.uniform(lo, hi, size=shape), dt)


def run(opcode, *args, dtype=None, **kw):
    return run_op(opcode, *args, dtype=dtype, **kw)


def close(got, want, dtype):
    want = dtypes.canonicalize(np.asarray(want), dtypes.from_any(dtype))
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64),
                               rtol=RTOL[dtype], atol=RTOL[dtype] * 1e-3, equal_nan=True)


def exact(got, want):
    want = np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape, (got, want)
    np.testing.assert_array_equal(got, want)


# ----------------------------------------------------------------------------- unary floats

UNARY_FLOAT = {  # opcode -> (NumPy reference, sample range)
    "exp": (np.exp, (-5, 5)), "log": (np.log, (0.01, 10)), "log1p": (np.log1p, (-0.9, 10)),
    "expm1": (np.expm1, (-5, 5)), "sqrt": (np.sqrt, (0, 10)),
    "rsqrt": (lambda x: 1 / np.sqrt(x), (0.01, 10)), "tanh": (np.tanh, (-5, 5)),
    "logistic": (lambda x: 1 / (1 + np.exp(-x)), (-10, 10)), "sin": (np.sin, (-7, 7)),
    "cos": (np.cos, (-7, 7)), "floor": (np.floor, (-5, 5)), "ceil": (np.ceil, (-5, 5)),
    "round": (np.round, (-5, 5)), "negate": (np.negative, (-5, 5)), "abs": (np.abs, (-5, 5)),
    "sign": (np.sign, (-5, 5)),
    "erf": (np.vectorize(math.erf, otypes=[np.float64]), (-4, 4)),
}


@pytest.mark.parametrize("opcode", sorted(UNARY_FLOAT))
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", SHAPES)
def test_unary_float(opcode, dtype, shape):
    ref, (lo, hi) = UNARY_FLOAT[opcode]
    x = sample(dtype, shape, low=lo, high=hi)
    close(run(opcode, x, dtype=dtype), ref(x.astype(np.float64)), dtype)


@pytest.mark.parametrize("opcode", ["negate", "abs", "sign"])
@pytest.mark.parametrize("dtype", SIGNED)
def test_unary_signed_int_wraps(opcode, dtype):
    x = sample(dtype, (50,))
    x[:3] = [np.iinfo(x.dtype).min, 0, -1]
    exact(run(opcode, x), {"negate": np.negative, "abs": np.abs, "sign": np.sign}[opcode](x))


def test_negate_and_abs_of_int_min_wrap():
    m = np.array([np.iinfo(np.int32).min], np.int32)
    exact(run("negate", m), m)
    exact(run("abs", m), m)


def test_sign_special_values():
    x = np.array([-2.5, -0.0, 0.0, 3.0, np.nan, -np.inf, np.inf], np.float32)
    got = run("sign", x)
    np.testing.assert_array_equal(got, [-1, 0, 0, 1, np.nan, -1, 1])
    assert np.signbit(got[1]) and not np.signbit(got[2])


def test_round_is_half_to_even():
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4999999], np.float64)
    exact(run("round", x), np.array([0, 2, 2, -0.0, -2, -2, 2], np.float64))


def test_logistic_is_stable_at_extremes():
    x = np.array([-1000.0, -80.0, 0.0, 80.0, 1000.0, np.nan], np.float32)
    got = run("logistic", x)
    np.testing.assert_allclose(got[:5], [0.0, 1.8048513e-35, 0.5, 1.0, 1.0], rtol=1e-6)
    assert np.isnan(got[5])


def test_erf_matches_math_erf_within_2_ulp():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.uniform(-6, 6, 3000), np.geomspace(1e-300, 1, 200),
                        [0.0, 0.999999, 1.0, 1.000001, 5.9, 27.0, 1e300]])
    got = run("erf", x)
    want = np.array([math.erf(v) for v in x])
    ulps = np.abs(got - want) / np.spacing(np.abs(want))
    assert ulps.max() <= 2


def test_erf_special_values():
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan], np.float64)
    got = run("erf", x)
    np.testing.assert_array_equal(got, [0.0, -0.0, 1.0, -1.0, np.nan])
    assert np.signbit(got[1])


def test_is_finite():
    x = np.array([1.0, np.inf, -np.inf, np.nan, 0.0], np.float16)
    exact(run("is_finite", x), np.array([True, False, False, False, True]))


@pytest.mark.parametrize("dtype", ["pred"] + INTS)
def test_not(dtype):
    x = sample(dtype, (4, 5))
    exact(run("not", x), np.invert(x))   # logical for pred, bitwise for integers


def test_bf16_results_are_rounded():
    x = dtypes.round_to_bf16(np.array([1.0, 3.0, 10.0], np.float32))
    got = run("exp", x, dtype="bf16")
    exact(got, dtypes.round_to_bf16(np.exp(x.astype(np.float64)).astype(np.float32)))
    assert np.all(dtypes.round_to_bf16(got) == got)


# ----------------------------------------------------------------------------- binary

ARITH = {"add": np.add, "subtract": np.subtract, "multiply": np.multiply,
         "maximum": np.maximum, "minimum": np.minimum}


@pytest.mark.parametrize("opcode", sorted(ARITH))
@pytest.mark.parametrize("dtype", FLOATS + INTS)
@pytest.mark.parametrize("shape", SHAPES)
def test_binary_arithmetic(opcode, dtype, shape):
    x, y = sample(dtype, shape, 1), sample(dtype, shape, 2)
    got = run(opcode, x, y, dtype=dtype)
    if dtypes.from_any(dtype).is_integer:
        exact(got, ARITH[opcode](x, y))          # wraps exactly like NumPy's integers
    else:
        close(got, ARITH[opcode](x.astype(np.float64), y.astype(np.float64)), dtype)


@pytest.mark.parametrize("opcode", ["maximum", "minimum"])
def test_maximum_minimum_on_pred_and_nan(opcode):
    p, q = np.array([True, False, True, False]), np.array([True, True, False, False])
    exact(run(opcode, p, q), ARITH[opcode](p, q))
    x, y = np.array([1.0, np.nan, 2.0], np.float32), np.array([np.nan, 0.0, 3.0], np.float32)
    exact(run(opcode, x, y), ARITH[opcode](x, y))
    assert np.isnan(run(opcode, x, y)[:2]).all()


def c_divmod(a, b, bits, signed):
    """Reference integer divide/remainder: C truncation plus XLA's special cases."""
    if b == 0:
        return (-1 if signed else 2 ** bits - 1), a
    q = abs(a) // abs(b) * (1 if (a >= 0) == (b >= 0) else -1)
    r = a - q * b
    if signed and q >= 2 ** (bits - 1):      # MIN / -1 wraps to MIN
        q -= 2 ** bits
    return q, r


@pytest.mark.parametrize("dtype", INTS)
def test_integer_divide_and_remainder(dtype):
    dt = dtypes.from_any(dtype)
    x = sample(dtype, (200,), 3)
    y = sample(dtype, (200,), 4, low=-5 if dt.kind == "signed" else 0, high=5)
    info = np.iinfo(dt.storage)
    x[:4] = [info.min, info.max, 7, info.min]
    y[:4] = [0, 0, 0, -1 if dt.kind == "signed" else 1]
    ref = [c_divmod(int(a), int(b), dt.bits, dt.kind == "signed") for a, b in zip(x, y)]
    exact(run("divide", x, y), np.array([q for q, _ in ref], dtype=np.int64).astype(dt.storage))
    exact(run("remainder", x, y), np.array([r for _, r in ref], dtype=np.int64).astype(dt.storage))


def test_integer_divide_by_zero_values():
    exact(run("divide", np.array([5, -5, 0], np.int32), np.zeros(3, np.int32)), np.array([-1, -1, -1], np.int32))
    exact(run("divide", np.array([5], np.uint8), np.zeros(1, np.uint8)), np.array([255], np.uint8))
    exact(run("remainder", np.array([5, -5], np.int8), np.zeros(2, np.int8)), np.array([5, -5], np.int8))


@pytest.mark.parametrize("dtype", FLOATS)
def test_float_divide_and_remainder(dtype):
    x = sample(dtype, (3, 4), 5, -10, 10)
    y = sample(dtype, (3, 4), 6, 0.5, 3) * np.where(np.arange(12).reshape(3, 4) % 2, 1, -1).astype(x.dtype)
    y = dtypes.canonicalize(y, dtypes.from_any(dtype))
    close(run("divide", x, y, dtype=dtype), x.astype(np.float64) / y.astype(np.float64), dtype)
    close(run("remainder", x, y, dtype=dtype), np.fmod(x.astype(np.float64), y.astype(np.float64)), dtype)


def test_float_remainder_takes_the_dividend_sign():
    x = np.array([5.5, -5.5, 5.5, -5.5], np.float64)
    y = np.array([2.0, 2.0, -2.0, -2.0], np.float64)
    exact(run("remainder", x, y), np.array([1.5, -1.5, 1.5, -1.5]))
    exact(run("divide", np.array([1.0, 0.0]), np.array([0.0, 0.0]))[:1], np.array([np.inf]))


def int_pow(base, exp, bits, signed):
    if exp < 0:
        return 1 if base == 1 else (-1) ** (-exp) if base == -1 else 0
    r = pow(base, exp, 2 ** bits)
    return r - 2 ** bits if signed and r >= 2 ** (bits - 1) else r


@pytest.mark.parametrize("dtype", INTS)
def test_integer_power(dtype):
    dt = dtypes.from_any(dtype)
    signed = dt.kind == "signed"
    x = sample(dtype, (60,), 7, low=-4 if signed else 0, high=4)
    y = sample(dtype, (60,), 8, low=-3 if signed else 0, high=40)
    if signed:
        x[:6] = [1, -1, -1, 0, 2, 5]
        y[:6] = [-5, -3, -4, -1, -1, 0]
    want = np.array([int_pow(int(a), int(b), dt.bits, signed) for a, b in zip(x, y)], np.int64)
    exact(run("power", x, y), want.astype(dt.storage))


@pytest.mark.parametrize("dtype", FLOATS)
def test_float_power_and_atan2(dtype):
    x, y = sample(dtype, (2, 5), 9, 0.1, 3), sample(dtype, (2, 5), 10, -2, 2)
    close(run("power", x, y, dtype=dtype), np.power(x.astype(np.float64), y.astype(np.float64)), dtype)
    close(run("atan2", y, x, dtype=dtype), np.arctan2(y.astype(np.float64), x.astype(np.float64)), dtype)


@pytest.mark.parametrize("opcode,ref", [("and", np.bitwise_and), ("or", np.bitwise_or), ("xor", np.bitwise_xor)])
@pytest.mark.parametrize("dtype", ["pred"] + INTS)
def test_logical_ops(opcode, ref, dtype):
    x, y = sample(dtype, (3, 4), 11), sample(dtype, (3, 4), 12)
    exact(run(opcode, x, y), ref(x, y))


# ----------------------------------------------------------------------------- compare, select, clamp

DIRECTIONS = {"EQ": np.equal, "NE": np.not_equal, "LT": np.less, "LE": np.less_equal,
              "GT": np.greater, "GE": np.greater_equal}


@pytest.mark.parametrize("direction", sorted(DIRECTIONS))
@pytest.mark.parametrize("dtype", ["pred", "s32", "u8", "f16", "f32", "f64"])
def test_compare(direction, dtype):
    x, y = sample(dtype, (30,), 13), sample(dtype, (30,), 14)
    y[:10] = x[:10]
    if dtypes.from_any(dtype).is_float:
        x[10], y[11] = np.nan, np.nan
    exact(run("compare", x, y, attrs={"direction": direction}), DIRECTIONS[direction](x, y))


@pytest.mark.parametrize("shape", SHAPES)
def test_select(shape):
    p = sample("pred", shape)
    x, y = sample("f32", shape, 1), sample("f32", shape, 2)
    exact(run("select", p, x, y), np.where(p, x, y))


@pytest.mark.parametrize("dtype", ["s8", "u32", "f32", "bf16"])
def test_clamp_with_scalar_and_array_bounds(dtype):
    x = sample(dtype, (4, 5), 15)
    lo, hi = np.array(x.dtype.type(-1 if dtype != "u32" else 10)), np.array(x.dtype.type(3 if dtype != "u32" else 1000))
    exact(run("clamp", lo, x, hi, dtype=dtype), np.clip(x, lo, hi))
    los, his = np.full_like(x, lo), np.full_like(x, hi)
    exact(run("clamp", los, x, his, dtype=dtype), np.clip(x, lo, hi))


def test_clamp_propagates_nan():
    x = np.array([np.nan, 5.0, -5.0], np.float32)
    got = run("clamp", np.float32(-1.0) * np.ones((), np.float32), x, np.ones((), np.float32))
    np.testing.assert_array_equal(got, [np.nan, 1.0, -1.0])


# ----------------------------------------------------------------------------- convert

def convert(x, to, dtype=None):
    return run("convert", x, shape=Shape(to, np.shape(x)), dtype=dtype)


@pytest.mark.parametrize("src", ["pred", "s8", "s32", "s64", "u8", "u32", "f16", "bf16", "f32", "f64"])
@pytest.mark.parametrize("dst", ["pred", "s8", "s32", "s64", "u8", "u32", "f16", "bf16", "f32", "f64"])
def test_convert_in_range_values(src, dst):
    sdt, ddt = dtypes.from_any(src), dtypes.from_any(dst)
    x = sample(src, (2, 6), 16, low=0 if sdt.kind == "unsigned" else -100, high=100)
    got = convert(x, dst, dtype=src)
    if ddt.is_pred:
        want = x != 0
    elif sdt.is_float and ddt.is_integer:
        want = np.clip(np.trunc(x.astype(np.float64)), *(np.iinfo(ddt.storage).min, np.iinfo(ddt.storage).max)).astype(ddt.storage)
    else:
        want = dtypes.canonicalize(x.astype(np.float64) if sdt.is_float else x, ddt)
    exact(got, want)


def test_convert_float_to_int_saturates_and_maps_nan_to_zero():
    x = np.array([np.nan, np.inf, -np.inf, 1e10, -1e10, 2.9, -2.9, 127.5, -128.9, 2147483647.0], np.float64)
    exact(convert(x, "s8"), np.array([0, 127, -128, 127, -128, 2, -2, 127, -128, 127], np.int8))
    exact(convert(x, "u8"), np.array([0, 255, 0, 255, 0, 2, 0, 127, 0, 255], np.uint8))
    big = np.array([9.3e18, -9.3e18, 2.0 ** 63, -(2.0 ** 63), 2.0 ** 62], np.float64)
    exact(convert(big, "s64"), np.array([2 ** 63 - 1, -2 ** 63, 2 ** 63 - 1, -2 ** 63, 2 ** 62], np.int64))
    exact(convert(np.array([4294967296.0, 4294967295.0, -1.0], np.float64), "u32"),
          np.array([4294967295, 4294967295, 0], np.uint32))


def test_convert_int_to_int_wraps():
    exact(convert(np.array([300, -1, 128], np.int32), "s8"), np.array([44, -1, -128], np.int8))
    exact(convert(np.array([-1, 256], np.int32), "u8"), np.array([255, 0], np.uint8))
    exact(convert(np.array([-1], np.int8), "u32"), np.array([4294967295], np.uint32))


def test_convert_to_pred_and_back():
    exact(convert(np.array([0.0, -0.0, 0.5, np.nan], np.float32), "pred"), np.array([False, False, True, True]))
    exact(convert(np.array([True, False]), "f32"), np.array([1.0, 0.0], np.float32))


def test_convert_f64_to_bf16_rounds_once():
    # 1 + 2^-8 + 2^-30 is just above the halfway point between two bf16 values: the
    # correct result rounds up; rounding to f32 first (tie) and then to bf16 would not.
    x = np.array([1 + 2.0 ** -8 + 2.0 ** -30, 1 + 2.0 ** -8, 1e300, -1e300], np.float64)
    got = convert(x, "bf16")
    exact(got, np.array([1 + 2.0 ** -7, 1.0, np.inf, -np.inf], np.float32))


def test_convert_f32_to_f16_overflows_to_inf():
    exact(convert(np.array([70000.0, 1.0], np.float32), "f16"), np.array([np.inf, 1.0], np.float16))


def test_scalar_python_arguments_take_the_parameter_type():
    module = one_op_module("add", [Shape("f32", ()), Shape("f32", ())])
    got = evaluate(module, [1.5, 2])
    assert got.dtype == np.float32 and got == 3.5


# ----------------------------------------------------------------------------- NumPy broadcasting

def broadcast_binary_module(opcode, x_shape, y_shape, dtype):
    """NumPy broadcasting made explicit, as the frontend does: broadcast_in_dim each
    operand to the common shape (right-aligned dims), then the elementwise op."""
    out = np.broadcast_shapes(x_shape, y_shape)
    m = Module(f"broadcast_{opcode}")
    b = Builder(m, "main")
    operands = []
    for i, shape in enumerate((x_shape, y_shape)):
        p = b.parameter(Shape(dtype, shape), f"x{i}")
        # Size-1 dims are squeezed (a reshape) so every remaining dim maps to a result dim.
        kept = [d for d, n in enumerate(shape) if n != 1 or out[d - len(shape) + len(out)] == 1]
        squeezed = b.emit("reshape", [p], shape=Shape(dtype, [shape[d] for d in kept]))
        bdims = tuple(d - len(shape) + len(out) for d in kept)
        operands.append(b.emit("broadcast_in_dim", [squeezed], {"broadcast_dimensions": bdims},
                               shape=Shape(dtype, out)))
    b.build(b.emit(opcode, operands), entry=True)
    return m


@pytest.mark.parametrize("opcode", ["add", "multiply", "maximum", "subtract", "divide"])
@pytest.mark.parametrize("x_shape,y_shape", [((2, 3), (3,)), ((2, 1), (1, 4)), ((), (2, 2)), ((4, 1, 3), (5, 1)),
                                             ((0, 3), (3,)), ((2, 1), (2, 0))])
def test_numpy_broadcasting_through_broadcast_in_dim(opcode, x_shape, y_shape):
    x, y = sample("f32", x_shape, 20), sample("f32", y_shape, 21, 0.5, 3)
    got = evaluate(broadcast_binary_module(opcode, x_shape, y_shape, "f32"), [x, y])
    want = {"add": np.add, "multiply": np.multiply, "maximum": np.maximum, "subtract": np.subtract,
            "divide": np.divide}[opcode](x, y)
    close(got, want, "f32")
