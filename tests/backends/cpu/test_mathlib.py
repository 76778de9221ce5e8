"""backends/cpu/mathlib.py against NumPy: every function, f32 and f64, measured in ulps.

Each function is compiled into a kernel `void apply_<op>_<dtype>(ptr in, [ptr in2,]
ptr out, i64 n)` that walks the array in vectors of the host's width and finishes with
a scalar tail, so both code paths are exercised by every test. References:
- f32: NumPy (or `math` for erf) in float64, rounded to float32;
- f64: NumPy in long double (x87 80-bit: 11 more bits than float64), rounded to
  float64; erf uses `math.erf` (glibc, within 1 ulp), so f64 erf bounds include that.
The ulp distance is taken on the ordered integer representation (so subnormals, the
two zeros and infinities are handled); NaN against NaN counts as 0.
"""
from __future__ import annotations

import ctypes
import math
import re
from typing import Callable

import numpy as np
import pytest
from llvmlite import ir

from tessel.backends.cpu import llvm_target
from tessel.backends.cpu.mathlib import ARITY, FUNCTIONS, MathLib

DTYPES = {"f32": np.float32, "f64": np.float64}
IR_TYPES = {"f32": ir.FloatType(), "f64": ir.DoubleType()}


# --------------------------------------------------------------------------- kernels

def _counted_loop(builder: ir.IRBuilder, start, stop, step: int, body):
    """for (i = start; i < stop; i += step) body(i); returns the final i."""
    pre = builder.block
    head = builder.append_basic_block("head")
    loop = builder.append_basic_block("body")
    done = builder.append_basic_block("done")
    builder.branch(head)
    builder.position_at_end(head)
    i = builder.phi(ir.IntType(64))
    i.add_incoming(start, pre)
    builder.cbranch(builder.icmp_signed("<", i, stop), loop, done)
    builder.position_at_end(loop)
    body(i)
    following = builder.add(i, ir.Constant(ir.IntType(64), step), flags=["nsw"])
    i.add_incoming(following, builder.block)
    builder.branch(head)
    builder.position_at_end(done)
    return i


def build_kernel(module: ir.Module, mathlib: MathLib, op: str, dtype: str, lanes: int) -> str:
    """Define `apply_<op>_<dtype>` in `module`; returns its name."""
    element = IR_TYPES[dtype]
    vector = ir.VectorType(element, lanes)
    arity = ARITY[op]
    i64 = ir.IntType(64)
    ptr = ir.PointerType()
    name = f"apply_{op}_{dtype}"
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [ptr] * (arity + 1) + [i64]), name)
    *inputs, out, n = fn.args
    builder = ir.IRBuilder(fn.append_basic_block("entry"))
    align = np.dtype(DTYPES[dtype]).itemsize
    n_vector = builder.sub(n, builder.srem(n, ir.Constant(i64, lanes)))

    def apply(ty):
        def body(i):
            args = []
            for source in inputs:
                load = builder.load(builder.gep(source, [i], source_etype=element), typ=ty)
                load.align = align
                args.append(load)
            result = mathlib.call(builder, op, *args)
            store = builder.store(result, builder.gep(out, [i], source_etype=element))
            store.align = align
        return body

    i = _counted_loop(builder, ir.Constant(i64, 0), n_vector, lanes, apply(vector))
    _counted_loop(builder, i, n, 1, apply(element))
    builder.ret_void()
    return name


class Kernels:
    """All functions for one dtype in one JIT module (compiled once per test session)."""

    def __init__(self, dtype: str):
        self.dtype = dtype
        self.lanes = llvm_target.host().vector_lanes(np.dtype(DTYPES[dtype]).itemsize)
        module = ir.Module(name=f"mathlib_{dtype}")
        mathlib = MathLib(module)
        names = {op: build_kernel(module, mathlib, op, dtype, self.lanes) for op in FUNCTIONS}
        self.ir_text = str(module)
        self.jit = llvm_target.JitModule(self.ir_text)
        self.functions = {
            op: self.jit.function(name, None, *[ctypes.c_void_p] * (ARITY[op] + 1), ctypes.c_int64)
            for op, name in names.items()}

    def __call__(self, op: str, *arrays: np.ndarray) -> np.ndarray:
        arrays = [np.ascontiguousarray(a, dtype=DTYPES[self.dtype]) for a in arrays]
        out = np.empty_like(arrays[0])
        self.functions[op](*[a.ctypes.data for a in arrays], out.ctypes.data, out.size)
        return out


_KERNELS: dict[str, Kernels] = {}


def kernels(dtype: str) -> Kernels:
    if dtype not in _KERNELS:
        _KERNELS[dtype] = Kernels(dtype)
    return _KERNELS[dtype]


# ------------------------------------------------------------------------- references

def _logistic(x):
    return 1 / (1 + np.exp(-x))


_erf = np.vectorize(math.erf, otypes=[np.float64])

REFERENCE_UFUNC = {
    "exp": np.exp, "expm1": np.expm1, "log": np.log, "log1p": np.log1p, "tanh": np.tanh,
    "logistic": _logistic, "sin": np.sin, "cos": np.cos, "power": np.power,
    "atan2": np.arctan2, "remainder": np.fmod,
}


def reference(op: str, dtype: str, *arrays: np.ndarray) -> np.ndarray:
    """op in more precision than dtype, rounded to dtype."""
    with np.errstate(all="ignore"):
        if op == "erf":
            return _erf(arrays[0].astype(np.float64)).astype(DTYPES[dtype])
        wide = np.float64 if dtype == "f32" else np.longdouble
        return REFERENCE_UFUNC[op](*[a.astype(wide) for a in arrays]).astype(DTYPES[dtype])


def ordered(values: np.ndarray) -> np.ndarray:
    """Integers in the order of the floats: adjacent floats differ by 1, -0 == +0."""
    ints = values.view(np.int32 if values.dtype == np.float32 else np.int64).astype(np.int64)
    magnitude = ints & np.int64(np.iinfo(ints.dtype).max if values.dtype == np.float64
                                else 0x7FFFFFFF)
    return np.where(ints < 0, -magnitude, magnitude)


def ulp_error(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Per element ulps between got and want; NaN vs NaN is 0, NaN vs number is huge."""
    with np.errstate(over="ignore"):
        distance = np.abs(ordered(got) - ordered(want)).astype(np.float64)
    nan_got, nan_want = np.isnan(got), np.isnan(want)
    distance[nan_got & nan_want] = 0
    distance[nan_got ^ nan_want] = np.inf
    return distance


def check(op: str, dtype: str, bound: float, *arrays: np.ndarray) -> float:
    got = kernels(dtype)(op, *arrays)
    want = reference(op, dtype, *arrays)
    errors = ulp_error(got, want)
    worst = int(np.argmax(errors))
    inputs = ", ".join(repr(a.flat[worst]) for a in arrays)
    assert errors[worst] <= bound, (
        f"{op} {dtype}: {errors[worst]} ulp at x = {inputs}: got {got[worst]!r}, "
        f"want {want[worst]!r}")
    return float(errors[worst])


# ---------------------------------------------------------------------------- samples

def all_finite_bits(dtype: str, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` values spread over every finite bit pattern (both signs, every binade,
    subnormals and zeros), plus every power of two and its neighbours."""
    np_type = DTYPES[dtype]
    int_type = np.uint32 if dtype == "f32" else np.uint64
    bits = rng.integers(0, np.iinfo(int_type).max, size=count, dtype=int_type, endpoint=True)
    values = bits.view(np_type)
    values = values[np.isfinite(values)]
    info = np.finfo(np_type)
    exponents = np.arange(int(np.log2(info.smallest_subnormal)), info.maxexp, dtype=np.float64)
    powers = np.ldexp(1.0, exponents.astype(int)).astype(np_type)
    around = np.concatenate([powers, np.nextafter(powers, np_type(0)),
                             np.nextafter(powers, np_type(np.inf))])
    around = around[np.isfinite(around)]
    return np.concatenate([values, around, -around, np.array([0.0, -0.0], np_type)])


def uniform(dtype: str, low: float, high: float, count: int, rng) -> np.ndarray:
    return rng.uniform(low, high, count).astype(DTYPES[dtype])


def log_uniform(dtype: str, low_exp: float, high_exp: float, count: int, rng,
                signed: bool = True) -> np.ndarray:
    """|x| = 2^u, u uniform in [low_exp, high_exp]: every scale equally represented."""
    x = np.exp2(rng.uniform(low_exp, high_exp, count))
    if signed:
        x *= rng.choice([-1.0, 1.0], count)
    return x.astype(DTYPES[dtype])


# ------------------------------------------------------------------- accuracy bounds

def everywhere_and(low: float, high: float, count: int) -> Callable:
    """Sampler: `count` finite bit patterns and `count` uniform values in [low, high]
    (bit patterns alone rarely land where these functions are interesting)."""
    def sample(dtype, rng):
        return np.concatenate([all_finite_bits(dtype, count, rng),
                               uniform(dtype, low, high, count, rng)])
    return sample


# The four functions NumPy users see most: whole finite domain, f32 and f64.
FULL_DOMAIN = {("exp", "f32"): 1, ("log", "f32"): 1, ("logistic", "f32"): 2,
               ("tanh", "f32"): 2, ("exp", "f64"): 1, ("log", "f64"): 1,
               ("logistic", "f64"): 2, ("tanh", "f64"): 2}


@pytest.mark.parametrize("op, dtype", sorted(FULL_DOMAIN))
def test_full_domain(op, dtype, rng):
    count = 800_000 if dtype == "f32" else 300_000
    check(op, dtype, FULL_DOMAIN[op, dtype], everywhere_and(-30, 30, count)(dtype, rng))


@pytest.mark.slow
@pytest.mark.parametrize("op", ["exp", "log", "logistic", "tanh"])
def test_full_domain_every_f32(op):
    """Every one of the 2^32 float32 bit patterns, in chunks."""
    step = 1 << 26
    for start in range(0, 1 << 32, step):
        values = np.arange(start, start + step, dtype=np.uint64).astype(np.uint32).view(np.float32)
        check(op, "f32", FULL_DOMAIN[op, "f32"], values)


@pytest.mark.slow
@pytest.mark.parametrize("op, dtype", sorted(FULL_DOMAIN))
def test_full_domain_dense(op, dtype):
    rng = np.random.default_rng(1)
    for _ in range(8):
        check(op, dtype, FULL_DOMAIN[op, dtype], everywhere_and(-30, 30, 4_000_000)(dtype, rng))


# Functions with a documented range: (op, dtype) -> (bound in ulps, sampler).
RANGES = {
    ("expm1", "f32"): (1, everywhere_and(-5, 5, 200_000)),
    ("expm1", "f64"): (1, everywhere_and(-5, 5, 100_000)),
    ("log1p", "f32"): (1, everywhere_and(-1, 5, 200_000)),
    ("log1p", "f64"): (1, everywhere_and(-1, 5, 100_000)),
    ("erf", "f32"): (1, everywhere_and(-5, 5, 100_000)),
    ("erf", "f64"): (2, everywhere_and(-7, 7, 100_000)),
    ("sin", "f32"): (2, lambda d, r: log_uniform(d, -30, 17, 400_000, r)),
    ("cos", "f32"): (2, lambda d, r: log_uniform(d, -30, 17, 400_000, r)),
    ("sin", "f64"): (2, lambda d, r: log_uniform(d, -40, 30, 200_000, r)),
    ("cos", "f64"): (2, lambda d, r: log_uniform(d, -40, 30, 200_000, r)),
}


@pytest.mark.parametrize("op, dtype", sorted(RANGES))
def test_documented_range(op, dtype, rng):
    bound, sample = RANGES[op, dtype]
    check(op, dtype, bound, sample(dtype, rng))


@pytest.mark.parametrize("dtype", ["f32", "f64"])
@pytest.mark.parametrize("op", ["sin", "cos"])
def test_trig_huge_arguments(op, dtype, rng):
    """Beyond the fast reduction's range the exact (Payne-Hanek) path takes over, up
    to the largest finite value; mixed vectors exercise the per-lane merge."""
    top = 127 if dtype == "f32" else 1023
    x = np.concatenate([log_uniform(dtype, 16, top, 50_000, rng),
                        all_finite_bits(dtype, 50_000, rng)])
    rng.shuffle(x)
    check(op, dtype, 2, x)


def _power_sample(dtype, rng, count):
    x = log_uniform(dtype, -20, 20, count, rng, signed=False)
    y = uniform(dtype, -30, 30, count, rng)
    # whole-range pairs that stay finite: |y log2 x| < 120
    x2 = all_finite_bits(dtype, count, rng)
    x2 = np.abs(x2[x2 != 0])
    limit = 120 / np.maximum(np.abs(np.log2(x2.astype(np.float64))), 1e-3)
    y2 = (rng.uniform(-1, 1, x2.size) * limit).astype(DTYPES[dtype])
    # negative bases with integer exponents
    x3 = -log_uniform(dtype, -4, 4, count, rng, signed=False)
    y3 = rng.integers(-40, 40, count).astype(DTYPES[dtype])
    return np.concatenate([x, x2, x3]), np.concatenate([y, y2, y3])


@pytest.mark.parametrize("dtype, bound", [("f32", 1), ("f64", 2)])
def test_power(dtype, bound, rng):
    check("power", dtype, bound, *_power_sample(dtype, rng, 100_000))


# ------------------------------------------------------------------ special values

SPECIALS = {
    "exp": [(np.inf, np.inf), (-np.inf, 0.0), (1e4, np.inf), (-1e4, 0.0), (0.0, 1.0),
            (-0.0, 1.0), (np.nan, np.nan)],
    "log": [(0.0, -np.inf), (-0.0, -np.inf), (-1.0, np.nan), (-np.inf, np.nan),
            (np.inf, np.inf), (1.0, 0.0), (np.nan, np.nan)],
    "log1p": [(-1.0, -np.inf), (-2.0, np.nan), (np.inf, np.inf), (-0.0, -0.0), (0.0, 0.0),
              (np.nan, np.nan)],
    "expm1": [(np.inf, np.inf), (-np.inf, -1.0), (-0.0, -0.0), (1e4, np.inf), (np.nan, np.nan)],
    "tanh": [(np.inf, 1.0), (-np.inf, -1.0), (-0.0, -0.0), (1e30, 1.0), (np.nan, np.nan)],
    "logistic": [(np.inf, 1.0), (-np.inf, 0.0), (0.0, 0.5), (-1e4, 0.0), (np.nan, np.nan)],
    "erf": [(np.inf, 1.0), (-np.inf, -1.0), (-0.0, -0.0), (np.nan, np.nan)],
    "sin": [(np.inf, np.nan), (-np.inf, np.nan), (-0.0, -0.0), (np.nan, np.nan)],
    "cos": [(np.inf, np.nan), (-np.inf, np.nan), (0.0, 1.0), (np.nan, np.nan)],
}


def _same(got, want) -> bool:
    if np.isnan(want):
        return bool(np.isnan(got))
    return got == want and np.signbit(got) == np.signbit(want)


@pytest.mark.parametrize("dtype", ["f32", "f64"])
@pytest.mark.parametrize("op", sorted(SPECIALS))
def test_special_values(op, dtype):
    inputs = np.array([x for x, _ in SPECIALS[op]], DTYPES[dtype])
    lanes = kernels(dtype).lanes
    for padded in (inputs, np.resize(inputs, 3 * lanes + 1)):   # vector and tail paths
        got = kernels(dtype)(op, padded)
        want = np.resize(np.array([w for _, w in SPECIALS[op]], DTYPES[dtype]), padded.size)
        bad = [(x, g, w) for x, g, w in zip(padded, got, want) if not _same(g, w)]
        assert not bad, f"{op} {dtype}: (input, got, want) {bad}"


_POWER_OPERANDS = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0, -3.0, 2.5, -2.5,
                   np.inf, -np.inf, np.nan, 1e-30, -1e-30, 1e30]


@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_power_special_cases(dtype):
    """Every pair of special operands against NumPy's (C99) pow."""
    x, y = np.meshgrid(np.array(_POWER_OPERANDS, DTYPES[dtype]),
                       np.array(_POWER_OPERANDS, DTYPES[dtype]))
    x, y = x.ravel(), y.ravel()
    got = kernels(dtype)("power", x, y)
    with np.errstate(all="ignore"):
        want = np.power(x, y)
    bad = [(a, b, g, w) for a, b, g, w in zip(x, y, got, want)
           if not (_same(g, w) or (np.isfinite(w) and w != 0 and ulp_error(
               np.array([g]), np.array([w]))[0] <= 2))]
    assert not bad, f"power {dtype}: (x, y, got, want) {bad}"


# ------------------------------------------------------------------ atan2, remainder

def _pairs(dtype, rng, count):
    """(y, x): random bit patterns against each other and against 1, uniform pairs,
    and pairs of nearly equal magnitude (around the octant and reduction boundaries)."""
    a, b = all_finite_bits(dtype, count, rng), all_finite_bits(dtype, count, rng)
    n = min(a.size, b.size)
    a, b = a[:n], b[:n]
    u, v = uniform(dtype, -10, 10, count, rng), uniform(dtype, -10, 10, count, rng)
    near = log_uniform(dtype, -30, 30, count, rng)
    ratio = rng.uniform(0.3, 1.2, count) * rng.choice([-1.0, 1.0], count)
    close = (near.astype(np.float64) * ratio).astype(DTYPES[dtype])
    ones = np.ones_like(a)
    return np.concatenate([a, a, ones, u, close]), np.concatenate([b, ones, a, v, near])


@pytest.mark.parametrize("dtype, bound", [("f32", 1), ("f64", 2)])
def test_atan2(dtype, bound, rng):
    check("atan2", dtype, bound, *_pairs(dtype, rng, 100_000))


@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_remainder_is_exact(dtype, rng):
    """fmod is exact: 0 ulp everywhere, also for exponent gaps of the whole range
    (the loop's many steps) and tiny quotients (one step)."""
    x, y = _pairs(dtype, rng, 100_000)
    check("remainder", dtype, 0, x, y)
    top = 127 if dtype == "f32" else 1023
    big = log_uniform(dtype, top - 40, top, 20_000, rng)
    small = log_uniform(dtype, -top - 20, -top + 40, 20_000, rng)
    check("remainder", dtype, 0, big, small)
    check("remainder", dtype, 0, uniform(dtype, -1e6, 1e6, 50_000, rng),
          uniform(dtype, -7, 7, 50_000, rng))


_EDGE = [0.0, -0.0, 1.0, -1.0, 2.5, -2.5, 1e-30, -1e-30, 1e30, -1e30, np.inf, -np.inf, np.nan]


@pytest.mark.parametrize("dtype", ["f32", "f64"])
@pytest.mark.parametrize("op", ["atan2", "remainder"])
def test_binary_special_cases(op, dtype):
    """Every pair of signed zeros, infinities, NaN, tiny, huge and ordinary operands,
    signs included, in the vector body and the scalar tail, against NumPy (C99)."""
    np_type = DTYPES[dtype]
    edge = np.array(_EDGE + [np.finfo(np_type).max, np.finfo(np_type).smallest_subnormal,
                             -np.finfo(np_type).tiny], np_type)
    y, x = (v.ravel() for v in np.meshgrid(edge, edge))
    got = kernels(dtype)(op, y, x)
    with np.errstate(all="ignore"):
        want = reference(op, dtype, y, x)
    bad = [(a, b, g, w) for a, b, g, w in zip(y, x, got, want)
           if not (_same(g, w) or (op == "atan2" and np.isfinite(w) and w != 0
                                   and ulp_error(np.array([g]), np.array([w]))[0] <= 1))]
    assert not bad, f"{op} {dtype}: (operand 0, operand 1, got, want) {bad}"


def test_subnormal_results_f32():
    """exp and logistic round into the subnormal range once (no double rounding)."""
    x = np.linspace(-103.9, -87.0, 200_001).astype(np.float32)
    check("exp", "f32", 1, x)
    check("logistic", "f32", 2, x)


# -------------------------------------------------------------------------- the IR

_ALLOWED_CALLEE = re.compile(r"llvm\.(fma|fabs|rint|trunc|copysign)\.(v\d+)?f(32|64)|tessel\.[\w.]+")


@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_no_libm_calls(dtype):
    """The IR calls only FMA/fabs/rint/trunc/copysign intrinsics and mathlib's own functions:
    no `@exp`, `@expf`, `@llvm.exp.*`, `@llvm.sin.*`, ... anywhere in the module."""
    text = kernels(dtype).ir_text
    callees = set(re.findall(r'(?:call|declare)[^@\n]*@"?([\w.$]+)', text))
    assert {"llvm.fma.v16f32" if dtype == "f32" else "llvm.fma.v8f64"} <= callees
    assert all(_ALLOWED_CALLEE.fullmatch(name) for name in callees), sorted(callees)


_LIBM_INTRINSIC = re.compile(r"llvm\.(exp|exp2|exp10|log|log2|log10|pow|powi|sin|cos|tan|"
                             r"sinh|cosh|tanh|asin|acos|atan|atan2|ldexp|frexp)\.")


@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_optimized_code_has_no_libm_calls(dtype):
    """LLVM's O3 does not turn the polynomials back into libm calls: the only callees
    left are instruction-like intrinsics and the cold Payne-Hanek routine of sin/cos."""
    text = str(kernels(dtype).jit.module)
    callees = set(re.findall(r'call[^@\n]*@"?([\w.$]+)', text))
    assert callees, "no calls at all: the pattern is stale"
    libm = {name for name in callees
            if _LIBM_INTRINSIC.match(name) or not name.startswith(("llvm.", "tessel."))}
    assert not libm, sorted(libm)


def test_mathlib_defines_functions_once():
    module = ir.Module(name="m")
    mathlib = MathLib(module)
    vector = ir.VectorType(ir.FloatType(), 16)
    fn = mathlib.function("exp", vector)
    assert fn.name == "tessel.exp.v16f32" and fn.linkage == "internal"
    assert "alwaysinline" in fn.attributes
    assert mathlib.function("exp", vector) is fn
    assert mathlib.function("exp", ir.DoubleType()).name == "tessel.exp.f64"
    with pytest.raises(KeyError, match="no 'gamma'"):
        mathlib.function("gamma", vector)
    with pytest.raises(TypeError, match="float, double or a vector"):
        mathlib.function("exp", ir.IntType(32))


def test_table_is_keyed_by_ir_opcodes():
    from tessel.compiler import ops
    for op, arity in ARITY.items():
        assert ops.get(op).arity == (arity, arity), op


def test_object_for_another_target():
    """Nothing in the IR is tied to the host: it compiles for AArch64 (4 f32 lanes)."""
    module = ir.Module(name="mathlib_aarch64")
    mathlib = MathLib(module)
    for op in FUNCTIONS:
        build_kernel(module, mathlib, op, "f32", 4)
    info = llvm_target.TargetInfo("aarch64-unknown-linux-gnu", "generic", "+neon")
    assert llvm_target.emit_object(str(module), info)
