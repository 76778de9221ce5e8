"""Elementwise ops: unary, binary, compare, select, clamp, convert.

Arithmetic (+ - * /, remainder, min/max, bitwise) runs in the storage dtype: NumPy's
IEEE float ops are correctly rounded and its integer ops wrap like two's complement
hardware. Transcendental functions run in float64 and round once to the result type,
so the reference does not depend on NumPy's SIMD approximations of f16/f32 functions.
"""
from __future__ import annotations

import numpy as np

from ...compiler import dtypes
from . import special
from .table import rule


def _in_float64(fn):
    """`fn` computed in float64; the evaluator rounds the result to the op's type."""
    return lambda *xs: fn(*(np.asarray(x, dtype=np.float64) for x in xs))


def _logistic(x):
    # 1/(1+exp(-x)) overflows exp for very negative x; with e = exp(-|x|) <= 1 both
    # branches are stable: x >= 0 -> 1/(1+e), x < 0 -> e/(1+e).
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _sign(x):
    if x.dtype.kind != "f":
        return np.sign(x)
    # StableHLO: -1, -0.0, +0.0, 1, or NaN for NaN (copysign keeps zeros' and NaN's sign bits).
    return np.where((x == 0) | np.isnan(x), x, np.copysign(np.ones_like(x), x))


UNARY = {
    "negate": np.negative, "abs": np.abs, "sign": _sign,
    "exp": _in_float64(np.exp), "log": _in_float64(np.log), "log1p": _in_float64(np.log1p),
    "expm1": _in_float64(np.expm1), "sqrt": _in_float64(np.sqrt),
    "rsqrt": _in_float64(lambda x: 1.0 / np.sqrt(x)), "tanh": _in_float64(np.tanh),
    "logistic": _in_float64(_logistic), "sin": _in_float64(np.sin), "cos": _in_float64(np.cos),
    "erf": _in_float64(special.erf),
    "floor": np.floor, "ceil": np.ceil,
    "round": np.rint,            # half to even (docs/decisions.md)
    "not": np.invert,            # logical for pred, bitwise for integers
    "is_finite": np.isfinite,
}


def _unary_rule(fn):
    return lambda frame, instr, x: fn(x)


for _name, _fn in UNARY.items():
    rule(_name)(_unary_rule(_fn))


# ----------------------------------------------------------------------------- integer division

def _all_ones(dtype: np.dtype) -> np.ndarray:
    return np.invert(np.zeros((), dtype))          # -1 signed, max unsigned


def _int_divmod(x: np.ndarray, y: np.ndarray):
    """C (truncating) quotient and remainder with XLA's answers where C has none:
    x / 0 = -1 (all ones), x % 0 = x, and MIN / -1 = MIN, MIN % -1 = 0 (wrap-around)."""
    by_zero = y == 0
    overflow = np.zeros_like(by_zero)
    if x.dtype.kind == "i":
        overflow = (x == np.iinfo(x.dtype).min) & (y == -1)
    safe = np.where(by_zero | overflow, np.ones_like(y), y)
    remainder = np.fmod(x, safe)                    # C remainder: the dividend's sign
    quotient = (x - remainder) // safe              # exact, so floor == truncation
    quotient = np.where(by_zero, _all_ones(x.dtype), quotient)
    remainder = np.where(by_zero, x, remainder)
    return quotient, remainder


def _divide(x, y):
    if x.dtype.kind == "f":
        return np.true_divide(x, y)
    return _int_divmod(x, y)[0]


def _remainder(x, y):
    if x.dtype.kind == "f":
        return np.fmod(x, y)                        # C fmod: the dividend's sign
    return _int_divmod(x, y)[1]


# ----------------------------------------------------------------------------- power

def _int_power(base: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """Wrapping exponentiation by squaring. A negative exponent gives 1/base^n truncated:
    1 for base 1, +-1 for base -1, and 0 otherwise (base 0 included)."""
    negative = exponent < 0
    e = np.where(negative, 0, exponent).astype(np.uint64)
    result, square = np.ones_like(base), base.copy()
    while np.any(e):
        result = np.where(e & 1, result * square, result)
        square = square * square
        e = e >> np.uint64(1)
    if base.dtype.kind == "i":
        odd = (exponent & 1).astype(bool)
        reciprocal = np.where(base == 1, 1, np.where(base == -1, np.where(odd, -1, 1), 0))
        result = np.where(negative, reciprocal.astype(base.dtype), result)
    return result


def _power(x, y):
    if x.dtype.kind == "f":
        return np.power(x.astype(np.float64), y.astype(np.float64))
    return _int_power(x, y)


BINARY = {
    "add": np.add, "subtract": np.subtract, "multiply": np.multiply,
    "divide": _divide, "remainder": _remainder, "power": _power,
    "maximum": np.maximum, "minimum": np.minimum,   # both propagate NaN
    "atan2": _in_float64(np.arctan2),
    "and": np.bitwise_and, "or": np.bitwise_or, "xor": np.bitwise_xor,  # logical on pred
}


def _binary_rule(fn):
    return lambda frame, instr, x, y: fn(x, y)


for _name, _fn in BINARY.items():
    rule(_name)(_binary_rule(_fn))


COMPARE = {"EQ": np.equal, "NE": np.not_equal, "LT": np.less, "LE": np.less_equal,
           "GT": np.greater, "GE": np.greater_equal}


@rule("compare")
def _compare(frame, instr, x, y):
    return COMPARE[instr.attrs["direction"]](x, y)


@rule("select")
def _select(frame, instr, pred, on_true, on_false):
    return np.where(pred, on_true, on_false)


@rule("clamp")
def _clamp(frame, instr, lo, x, hi):
    return np.minimum(np.maximum(x, lo), hi)        # min(max(x, lo), hi), NaN propagates


# ----------------------------------------------------------------------------- convert

@rule("convert")
def _convert(frame, instr, x):
    target = instr.shape.dtype
    if target.is_pred:
        return x != 0                               # NaN converts to true
    if target.is_integer and x.dtype.kind == "f":
        return float_to_int(x, target)
    return x      # int->int wraps, everything else rounds to nearest: done by `store`


def float_to_int(x: np.ndarray, target: dtypes.DType) -> np.ndarray:
    """Truncate toward zero, saturate out-of-range values, NaN -> 0.

    (XLA leaves these cases implementation-defined; saturation is what most hardware
    conversion instructions and JAX on CPU give.)
    """
    info = np.iinfo(target.storage)
    t = np.trunc(x.astype(np.float64))
    t = np.where(np.isnan(t), 0.0, t)
    too_low = t <= float(info.min)                  # float(min) is exact: -2^(bits-1) or 0
    too_high = t >= float(info.max) + 1.0           # max + 1 = 2^k is exact, max may not be
    inside = np.where(too_low | too_high, 0.0, t).astype(target.storage)
    return np.where(too_low, info.min, np.where(too_high, info.max, inside)).astype(target.storage)
