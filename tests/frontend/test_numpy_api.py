"""tessel.numpy against NumPy: elementwise ops, type promotion (NEP 50, bf16), errors
at the user's line, reductions. Every check runs twice: eagerly (NumPy arrays in, the
interpreter runs a throwaway module) and traced (the arrays are parameters)."""
from __future__ import annotations

import inspect
import os

import numpy as np
import pytest

import tessel.numpy as tnp
from tessel.backends import interpreter
from tessel.compiler import dtypes
from tessel.compiler.ir import Module, Shape
from tessel.frontend import core, errors
from tessel.runtime import pytree

THIS_FILE = os.path.basename(__file__)
RNG = np.random.default_rng(0)


# ----------------------------------------------------------------------------- helpers

class BF16:
    """Marks an argument as a bf16 parameter (its data: bf16-rounded float32)."""

    def __init__(self, values):
        self.array = dtypes.round_to_bf16(np.asarray(values, np.float32))


def run_traced(fn, *arrays):
    """Trace fn with `arrays` as parameters (as core.run_eagerly does), then interpret."""
    module = Module("test")
    with core.TraceContext(module, "main") as ctx:
        params = [ctx.parameter(Shape(dtypes.bf16, a.array.shape) if isinstance(a, BF16)
                                else Shape(dtypes.from_numpy(a.dtype), a.shape)) for a in arrays]
        leaves, treedef = pytree.flatten(fn(*params))
        root = ctx.emit("tuple", [core.lift(leaf) for leaf in leaves])
        ctx.builder.build(root.instr, entry=True)
    ctx.finished = True
    data = [a.array if isinstance(a, BF16) else a for a in arrays]
    values = interpreter.evaluate(module, data)
    return pytree.unflatten(treedef, [np.asarray(v) for v in values])


def traced(fn, *args):
    """fn(*args) traced, with every ndarray argument a parameter (the rest constants)."""
    slots = [i for i, a in enumerate(args) if isinstance(a, (np.ndarray, BF16))]

    def with_params(*params):
        full = list(args)
        for i, p in zip(slots, params):
            full[i] = p
        return fn(*full)
    return run_traced(with_params, *[args[i] for i in slots])


RTOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-6, np.dtype(np.float16): 1e-3}


def assert_same(got, want, rtol=None, dtype=None):
    """Same structure, shape and dtype; floats within the dtype's tolerance."""
    if isinstance(want, (tuple, list)):
        assert isinstance(got, (tuple, list)) and len(got) == len(want)
        for g, w in zip(got, want):
            assert_same(g, w, rtol, dtype)
        return
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert got.dtype == (np.dtype(dtype) if dtype is not None else want.dtype), (got.dtype, want.dtype)
    if want.dtype.kind == "f":
        tol = rtol if rtol is not None else RTOL[want.dtype]
        finite = np.abs(want[np.isfinite(want)])
        scale = max(1.0, float(finite.max())) if finite.size else 1.0
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale)
    else:
        np.testing.assert_array_equal(got, want)


def check(tnp_fn, np_fn, *args, rtol=None, want_dtype=None):
    """tnp_fn agrees with np_fn on args, eagerly and traced."""
    with np.errstate(all="ignore"):
        want = np_fn(*args)
    assert_same(tnp_fn(*args), want, rtol, want_dtype)
    assert_same(traced(tnp_fn, *args), want, rtol, want_dtype)


def check_np(name, *args, rtol=None, want_dtype=None, **kwargs):
    """tnp.<name>(*args, **kwargs) agrees with np.<name>(*args, **kwargs)."""
    check(lambda *a: getattr(tnp, name)(*a, **kwargs), lambda *a: getattr(np, name)(*a, **kwargs),
          *args, rtol=rtol, want_dtype=want_dtype)


def data(shape, dtype, low=-5, high=5):
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return RNG.random(shape) < 0.5
    if dtype.kind in "iu":
        low = max(low, np.iinfo(dtype).min)
        return RNG.integers(low, high, shape).astype(dtype)
    return RNG.uniform(low, high, shape).astype(dtype)


def error_line() -> int:
    """Two lines below the caller's `line = error_line()`, past the `with pytest.raises`:
    where the statement that must fail is written."""
    return inspect.currentframe().f_back.f_lineno + 2


# ----------------------------------------------------------------------------- unary

FLOAT_UNARY = ["exp", "log", "log1p", "expm1", "sqrt", "tanh", "sin", "cos", "rint", "log2", "log10",
               "exp2"]


@pytest.mark.parametrize("name", FLOAT_UNARY)
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "int32", "int8", "uint8", "bool"])
def test_float_unary(name, dtype):
    x = data((2, 3), dtype, low=1, high=4)
    if dtype.startswith("float"):
        x = (x + 0.25).astype(dtype)
    with np.errstate(all="ignore"):
        half = getattr(np, name)(x).dtype == np.float16
    check_np(name, x, rtol=2e-3 if half else None)


UNARY = ["negative", "positive", "absolute", "abs", "sign", "floor", "ceil", "trunc", "fix", "square",
         "invert", "logical_not", "isnan", "isinf", "isfinite", "signbit"]


def supported_by_numpy(name, x) -> bool:
    try:
        getattr(np, name)(x)
    except TypeError:
        return False
    return True


@pytest.mark.parametrize("name", UNARY)
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "int64", "int32", "int8", "uint8",
                                   "uint32", "bool"])
def test_unary(name, dtype):
    x = data((3, 4), dtype)
    if dtype.startswith("float"):
        x[0, :3] = [np.nan, np.inf, -np.inf]
        x[1, 0] = -0.5
    if supported_by_numpy(name, x):
        check_np(name, x)
    else:
        with pytest.raises(TypeError, match=name if name != "abs" else "absolute"):
            getattr(tnp, name)(x)


def test_unary_0d_and_empty():
    for x in (np.float32(2.5), np.array(-3.0), np.zeros((0, 3), np.float32), np.array(7, np.int32)):
        for name in ("negative", "exp", "sign", "square", "isnan", "floor"):
            check_np(name, np.asarray(x))


def test_reciprocal_of_floats():
    check_np("reciprocal", np.array([0.5, -4.0, 0.0, np.inf]))
    check_np("reciprocal", np.array([0.5, -4.0], np.float32))


def test_round_half_to_even_and_decimals():
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 1.2345, -2.675, 1e300, np.nan])
    for decimals in (0, 1, 2, -1):
        check_np("round", x, decimals=decimals)
        check_np("round", x[:-2].astype(np.float32), decimals=decimals)
    ints = np.array([15, 25, -15, -25, 14, 16, 0], np.int32)
    check_np("round", ints)
    check_np("round", ints, decimals=-1)
    check_np("around", ints.astype(np.int64), decimals=-1)


# ----------------------------------------------------------------------------- binary

BINARY = ["add", "subtract", "multiply", "divide", "true_divide", "power", "maximum", "minimum",
          "arctan2", "bitwise_and", "bitwise_or", "bitwise_xor", "floor_divide", "remainder", "mod",
          "fmod", "fmax", "fmin", "equal", "not_equal", "less", "less_equal", "greater",
          "greater_equal", "logical_and", "logical_or", "logical_xor"]

DTYPE_PAIRS = [("float64", "float64"), ("float32", "float32"), ("float32", "float64"),
               ("float16", "float32"), ("int32", "int32"), ("int64", "int32"), ("int8", "uint8"),
               ("uint8", "uint8"), ("uint32", "int32"), ("int32", "float32"), ("bool", "bool"),
               ("bool", "int8")]


def binary_operands(name, dt1, dt2):
    x = data((3, 4), dt1, low=-4, high=5)
    y = data((4,), dt2, low=1 if name == "power" else -4, high=4 if name == "power" else 5)
    if name == "power" and np.dtype(dt2).kind in "iu":
        y = np.abs(y).astype(dt2)
    if name in ("floor_divide", "remainder", "mod", "fmod", "divide", "true_divide"):
        y = np.where(y == 0, np.array(3).astype(dt2), y).astype(dt2)   # no zero divisors here
    if name == "power":   # no negative integer exponents (NumPy raises) when swapped below
        x = np.abs(x).astype(dt1)
    return x, y


@pytest.mark.parametrize("name", BINARY)
@pytest.mark.parametrize("dt1,dt2", DTYPE_PAIRS)
def test_binary(name, dt1, dt2):
    x, y = binary_operands(name, dt1, dt2)
    if _np_binary_fails(name, x, y):
        with pytest.raises(TypeError):
            getattr(tnp, name)(x, y)
        return
    want_dtype = getattr(np, name)(x, y).dtype
    # tessel has no int16: uint8 op int8 computes in s32 (the nearest wider type)
    dtype = np.int32 if want_dtype == np.int16 else None
    rtol = 3e-3 if want_dtype == np.float16 else None
    check_np(name, x, y, rtol=rtol, want_dtype=dtype)
    check_np(name, y, x[1], rtol=rtol, want_dtype=dtype)


def _np_binary_fails(name, x, y) -> bool:
    try:
        with np.errstate(all="ignore"):
            getattr(np, name)(x, y)
    except TypeError:
        return True
    return False


@pytest.mark.parametrize("shapes", [((3, 1), (4,)), ((), (2, 3)), ((0, 3), (1, 3)), ((2, 1, 3), (4, 1)),
                                    ((), ())])
def test_binary_broadcasting(shapes):
    x, y = data(shapes[0], np.float32), data(shapes[1], np.float32)
    for name in ("add", "multiply", "less", "maximum", "arctan2", "floor_divide"):
        check_np(name, x, y)


def test_floor_divide_and_remainder_edge_cases():
    a = np.array([7, -7, 7, -7, 0, 5, -5, 6], np.int32)
    b = np.array([2, 2, -2, -2, 3, 0, 0, -3], np.int32)
    for name in ("floor_divide", "remainder", "fmod", "divmod"):
        check_np(name, a, b)
        check_np(name, a.astype(np.uint8) % 9, np.abs(b).astype(np.uint8))
    f = np.array([7.0, -7.0, 1.0, -1.0, 1.0, np.inf, 3.0, 0.0, -0.0, 5.5, 1.0])
    g = np.array([2.0, 2.0, 0.1, np.inf, -np.inf, 2.0, 0.0, 0.0, 3.0, -2.5, -1e-300])
    for name in ("floor_divide", "remainder", "fmod", "divmod"):
        check_np(name, f, g)
        check_np(name, f.astype(np.float32), g.astype(np.float32))
        check_np(name, f.astype(np.float16), g.astype(np.float16))


def test_operators_on_tracers():
    x, y = data((2, 3), np.float32), data((3,), np.float32) + 6
    i, j = data((2, 3), np.int32), data((3,), np.int32, low=1)
    ops = [lambda a, b: a + b, lambda a, b: a - b, lambda a, b: a * b, lambda a, b: a / b,
           lambda a, b: a // b, lambda a, b: a % b, lambda a, b: a ** 2, lambda a, b: 2.0 - a,
           lambda a, b: 1 / b, lambda a, b: a < b, lambda a, b: a >= b, lambda a, b: a == b,
           lambda a, b: a != b, lambda a, b: -a, lambda a, b: +a, lambda a, b: abs(a)]
    for op in ops:
        check(op, op, x, y)
        check(op, op, i, j)
    for op in (lambda a, b: a & b, lambda a, b: a | b, lambda a, b: a ^ b, lambda a, b: ~a,
               lambda a, b: 3 & a):
        check(op, op, i, j)


def test_clip():
    x = data((3, 4), np.float32)
    check_np("clip", x, -1, 2)
    check_np("clip", x, None, 0.5)
    check_np("clip", x, -0.5, None)
    check_np("clip", x, np.full(4, -1, np.float32), np.float32(1))
    check_np("clip", data((5,), np.int32), 0.5, 3)          # NEP 50: int array, float bound -> f64
    check_np("clip", data((5,), np.uint8, 0, 10), 2, 7)
    check(lambda a: tnp.clip(a, min=0), lambda a: np.clip(a, min=0), x)
    check(lambda a: a.clip(0, 1), lambda a: a.clip(0, 1), x)


def test_where():
    c = data((3, 4), np.bool_)
    x, y = data((3, 4), np.float32), data((4,), np.float64)
    check_np("where", c, x, y)
    check_np("where", c, x, 0.0)
    check_np("where", c, 1, 2.5)
    check_np("where", c[0], data((4,), np.int32), 7)
    check_np("where", data((4,), np.int32), x, y)            # a non-bool condition: != 0
    with pytest.raises(NotImplementedError, match="data-dependent"):
        tnp.where(c)


# ----------------------------------------------------------------------------- type promotion

@pytest.mark.parametrize("x,y,want", [
    (np.ones(3, np.float32), 1.5, np.float32),              # a Python float is weak
    (np.ones(3, np.int32), 1.5, np.float64),
    (np.ones(3, np.uint8), 1, np.uint8),
    (np.ones(3, np.float32), np.ones(3, np.float64), np.float64),
    (np.ones(3, np.int8), np.ones(3, np.uint8), np.int32),   # NumPy: int16 (tessel has none)
    (np.ones(3, np.float16), 2, np.float16),
    (np.ones(3, np.bool_), 1, np.int64),
    (np.ones(3, np.int32), np.int64(2), np.int64),          # NumPy scalars are strong
    (np.ones(3, np.float32), np.float64(2), np.float64),
    (3, 4.0, np.float64),
])
def test_nep50_promotion(x, y, want):
    for got in (tnp.add(x, y), tnp.add(y, x), traced(tnp.add, x, y)):
        assert got.dtype == want
    assert tnp.result_type(x, y) == want


def test_true_divide_and_comparison_dtypes():
    i = np.arange(1, 5, dtype=np.int32)
    assert tnp.true_divide(i, i).dtype == np.float64
    assert traced(lambda a: a / a, i).dtype == np.float64
    assert tnp.less(i, 2.5).dtype == np.bool_
    assert tnp.add(np.array([True]), np.array([True])).dtype == np.bool_


def test_python_int_out_of_range():
    u = np.array([3, 200], np.uint8)
    line = error_line()
    with pytest.raises(OverflowError, match="Python integer 300 out of bounds for uint8") as info:
        tnp.add(u, 300)
    assert f"{THIS_FILE}:{line}" in str(info.value)
    # comparisons answer correctly, as NumPy's do
    check(lambda a: tnp.less(a, 300), lambda a: np.less(a, 300), u)
    check(lambda a: tnp.greater(a, -1), lambda a: np.greater(a, -1), u)


def test_bf16_promotion_and_rounding():
    values = np.array([1.0, 2.5, 3.140625, -7.0], np.float32)
    b = BF16(values)
    cases = [
        (lambda t: t + np.ones(4, np.float16), dtypes.f32),
        (lambda t: t + np.ones(4, np.float32), dtypes.f32),
        (lambda t: t + np.ones(4, np.float64), dtypes.f64),
        (lambda t: t + np.ones(4, np.int32), dtypes.bf16),
        (lambda t: t * 1.5, dtypes.bf16),
        (lambda t: t + t, dtypes.bf16),
        (lambda t: tnp.exp(t), dtypes.bf16),
        (lambda t: t < 2, dtypes.pred),
        (lambda t: tnp.sum(t), dtypes.bf16),
        (lambda t: tnp.mean(t), dtypes.bf16),
    ]
    for fn, want in cases:
        module = Module("bf16")
        with core.TraceContext(module, "main") as ctx:
            out = fn(ctx.parameter(Shape(dtypes.bf16, (4,))))
        assert out.tdtype is want, (out.tdtype, want)
    got = traced(lambda t: tnp.exp(t), b)
    np.testing.assert_array_equal(got, dtypes.round_to_bf16(np.exp(values.astype(np.float64)).astype(np.float32)))
    assert tnp.result_type(tnp.bfloat16, np.float16) == np.float32
    assert tnp.result_type(tnp.bfloat16, np.int32, 1.5) is tnp.bfloat16
    assert tnp.promote_types("bfloat16", "float64") == np.float64
    assert tnp.issubdtype(tnp.bfloat16, tnp.floating) and not tnp.issubdtype(tnp.bfloat16, np.integer)
    assert tnp.finfo(tnp.bfloat16).eps == 2.0 ** -7
    converted = traced(lambda a: tnp.astype(a, tnp.bfloat16), np.array([1.00390625, 3.0], np.float32))
    np.testing.assert_array_equal(converted, [1.0, 3.0])


def test_result_type_matches_numpy():
    cases = [(np.float32, 1.5), (np.int32, 1.5), ("uint8", 1), (np.int32, np.float32), (True, 1),
             (np.ones(2, np.int8), np.uint32), (np.bool_, np.int8)]
    for args in cases:
        assert tnp.result_type(*args) == np.result_type(*args)


# ----------------------------------------------------------------------------- errors

def test_broadcast_error_names_user_line_eagerly():
    line = error_line()
    with pytest.raises(ValueError) as info:
        tnp.add(np.ones(3), np.ones(4))
    text = str(info.value)
    assert "add: operands could not be broadcast together with shapes (3,) (4,)" in text
    assert f"{THIS_FILE}:{line}" in text
    assert isinstance(info.value, errors.TesselError)


def test_broadcast_error_names_user_line_traced():
    line = error_line()
    with pytest.raises(ValueError) as info:
        traced(lambda a, b: a * b, np.ones((2, 3)), np.ones((2, 4)))
    assert "multiply: operands could not be broadcast together with shapes (2,3) (2,4)" in str(info.value)
    assert f"{THIS_FILE}:{line}" in str(info.value)


def test_axis_errors():
    x = np.ones((2, 3))
    line = error_line()
    with pytest.raises(np.exceptions.AxisError, match="axis 2 is out of bounds for array of dimension 2") as info:
        tnp.sum(x, axis=2)
    assert f"{THIS_FILE}:{line}" in str(info.value)
    with pytest.raises(np.exceptions.AxisError, match="axis -3 is out of bounds"):
        traced(lambda a: tnp.mean(a, axis=-3), x)
    with pytest.raises(ValueError, match="duplicate value in 'axis'"):
        tnp.sum(x, axis=(0, -2))


def test_type_errors_are_numpys():
    with pytest.raises(TypeError, match="numpy boolean subtract"):
        tnp.subtract(np.array([True]), np.array([False]))
    with pytest.raises(TypeError, match="bitwise_and"):
        traced(lambda a: a & a, np.ones(3))
    with pytest.raises(TypeError, match="unsupported dtype"):
        tnp.zeros(3, dtype=np.complex64)


def test_out_argument_is_refused():
    with pytest.raises(NotImplementedError, match="out= is not supported"):
        tnp.add(np.ones(2), np.ones(2), out=np.ones(2))


def test_unsupported_where_argument():
    with pytest.raises(NotImplementedError, match="where= is not supported"):
        tnp.sum(np.ones(3), where=np.array([True, False, True]))


# ----------------------------------------------------------------------------- reductions

AXES = [None, 0, -1, (0, 2), (), (-1, 0, 1)]


@pytest.mark.parametrize("name", ["sum", "prod", "max", "min", "amax", "amin", "mean", "any", "all"])
@pytest.mark.parametrize("dtype", ["float64", "float32", "int32", "uint8", "bool", "int8"])
def test_reductions(name, dtype):
    x = data((2, 3, 4), dtype, low=-3, high=4)
    want_dtype = getattr(np, name)(x).dtype
    dtype_override = np.uint32 if want_dtype == np.uint64 else None   # tessel has no uint64
    for axis in AXES:
        for keepdims in (False, True):
            check_np(name, x, axis=axis, keepdims=keepdims, want_dtype=dtype_override)


@pytest.mark.parametrize("dtype", ["float64", "float32", "int32", "bool"])
def test_var_std(dtype):
    x = data((3, 5), dtype)
    for name in ("var", "std"):
        for axis in (None, 0, -1):
            for ddof in (0, 1):
                check_np(name, x, axis=axis, ddof=ddof, rtol=1e-5 if dtype == "float32" else None)
        check_np(name, x, axis=1, keepdims=True, rtol=1e-5 if dtype == "float32" else None)


@pytest.mark.parametrize("name", ["var", "std"])
def test_var_std_correction_and_unsupported_options(name):
    x = data((3, 5), "float64")
    check_np(name, x, axis=0, correction=1)
    for option, message in [({"out": np.ones(5)}, "out="), ({"where": x > 0}, "where="),
                            ({"mean": x.mean(0)}, "mean=")]:
        with pytest.raises(NotImplementedError, match=f"{name}.*{message}|{message}.*{name}"):
            getattr(tnp, name)(x, axis=0, **option)


def test_reduction_dtypes_and_options():
    x = data((4, 3), np.int32)
    check_np("sum", x, dtype=np.float32)
    check_np("sum", x, axis=0, initial=10)
    check_np("max", x, axis=1, initial=3)
    check_np("mean", x, axis=0, dtype=np.float32)
    check_np("mean", data((5,), np.float16), rtol=2e-3)
    check_np("prod", data((3, 4), np.bool_), axis=1)
    assert tnp.sum(np.ones(3, np.uint8)).dtype == np.uint32   # NumPy: uint64


def test_reductions_of_empty_and_0d():
    empty = np.zeros((0, 3), np.float32)
    check_np("sum", empty, axis=0)
    check_np("prod", empty)
    check_np("any", empty, axis=1)
    check_np("all", empty)
    check_np("max", empty, axis=1)                         # nothing reduced per output: fine
    check_np("max", empty, axis=0, initial=-1.0)
    check_np("sum", np.array(2.5))
    check_np("max", np.array(3, np.int8))
    with pytest.raises(ValueError, match="zero-size array to reduction operation maximum"):
        tnp.max(empty, axis=0)
    with pytest.raises(ValueError, match="attempt to get argmax of an empty sequence"):
        tnp.argmax(empty)


@pytest.mark.parametrize("dtype", ["float64", "float32", "int32", "uint8", "bool"])
def test_argmax_argmin(dtype):
    x = data((3, 4, 5), dtype, low=-2, high=3)                # many ties
    for name in ("argmax", "argmin"):
        for axis in (None, 0, 1, -1):
            check_np(name, x, axis=axis)
            check_np(name, x, axis=axis, keepdims=True)


def test_argmax_first_occurrence_nan_and_infinities():
    x = np.array([[1.0, np.nan, 3.0, np.nan], [-np.inf, -np.inf, -np.inf, -np.inf],
                  [2.0, 5.0, 5.0, 1.0], [np.inf, 0.0, np.inf, np.nan]])
    for name in ("argmax", "argmin"):
        check_np(name, x, axis=1)
        check_np(name, x.T, axis=0)
        check_np(name, x)
    ints = np.array([np.iinfo(np.int32).min, 4, np.iinfo(np.int32).max, 4], np.int32)
    check_np("argmax", ints)
    check_np("argmin", ints)


def test_cumsum_cumprod():
    x = data((3, 4), np.int32)
    for axis in (None, 0, 1, -1):
        check_np("cumsum", x, axis=axis)
        check_np("cumprod", x, axis=axis)
        check_np("cumsum", x.astype(np.float64), axis=axis)
    check_np("cumsum", data((6,), np.bool_))
    check_np("cumsum", np.array([2 ** 40, 2 ** 40 + 1, -3], np.int64))   # exact for big ints
    check_np("cumsum", np.zeros((0, 3)), axis=0)
    check_np("cumsum", data((5,), np.float32), dtype=np.float64)
    check(lambda a: a.cumsum(0), lambda a: a.cumsum(0), x)


def test_methods_on_tracers():
    x = data((2, 3, 4), np.float32)
    methods = [lambda a: a.sum(axis=0), lambda a: a.sum(), lambda a: a.mean(-1), lambda a: a.max(0),
               lambda a: a.min(axis=(0, 1)), lambda a: a.prod(1), lambda a: a.var(), lambda a: a.std(0),
               lambda a: a.argmax(), lambda a: a.argmin(axis=2), lambda a: a.any(), lambda a: a.all(0),
               lambda a: a.round(), lambda a: a.astype("float64"), lambda a: a.astype(np.int32)]
    for m in methods:
        check(m, m, x, rtol=1e-5)


def test_logaddexp_isclose_nan_to_num():
    x = np.array([1.0, np.inf, -np.inf, 2.0, np.nan, 700.0, -3.0])
    y = np.array([1.0, np.inf, -np.inf, -1000.0, 1.0, 700.0, np.inf])
    check_np("logaddexp", x, y)
    check_np("logaddexp", x.astype(np.float32), y.astype(np.float32))
    check_np("logaddexp", data((2, 3), np.int32), 1.5)
    check_np("isclose", x, y)
    check_np("isclose", x, x, equal_nan=True)
    check_np("isclose", data((3,), np.float32), 1)
    check_np("isclose", np.array([1, 2], np.int32), np.array([1, 3], np.int32), atol=1)
    assert bool(tnp.allclose(np.ones(3), np.ones(3) + 1e-9))
    assert not bool(tnp.allclose(np.ones(3), np.ones(3) + 1e-3))
    check_np("nan_to_num", x)
    check_np("nan_to_num", x.astype(np.float32), nan=-1.0, posinf=9.0)
    check_np("nan_to_num", data((3,), np.int32))


def test_reductions_of_half_precision():
    x = data((3, 8), np.float16, low=0, high=2)
    for name in ("sum", "mean", "max", "min", "var", "std", "prod"):
        check_np(name, x, axis=1, rtol=1e-2)
