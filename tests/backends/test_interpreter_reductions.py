"""Interpreter: reduce, reduce_window, select_and_scatter and sort.

Each is checked against NumPy or a naive loop, on both the NumPy fast path (recognized
reducers / comparators) and the general path that evaluates the nested computation
(Context(fast_paths=False)).
"""
import functools

import numpy as np
import pytest

from tessel.backends.interpreter import Context, evaluate
from tessel.backends.interpreter.testing import one_op_module, reducer, run_op, scalar_computation
from tessel.compiler import dtypes
from tessel.compiler.ir import Builder, Shape

from op_cases import SELECT_CASES, WINDOWS, argmax_reducer

UFUNC = {"add": np.add, "multiply": np.multiply, "maximum": np.maximum, "minimum": np.minimum,
         "and": np.bitwise_and, "or": np.bitwise_or}
PY_OP = {"add": lambda a, b: a + b, "multiply": lambda a, b: a * b, "maximum": np.maximum,
         "minimum": np.minimum, "and": lambda a, b: a & b, "or": lambda a, b: a | b}
IDENTITY = {"add": 0, "multiply": 1, "maximum": -np.inf, "minimum": np.inf, "and": True, "or": False}
PATHS = [pytest.param(True, id="fast"), pytest.param(False, id="general")]


def exact(got, want):
    want = np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, got.shape, want.dtype, want.shape)
    np.testing.assert_array_equal(got, want)


def ints(shape, dtype=np.int32, seed=0, low=-4, high=5):
    return np.random.default_rng(seed).integers(low, high, shape).astype(dtype)


# ----------------------------------------------------------------------------- reduce

@pytest.mark.parametrize("fast", PATHS)
@pytest.mark.parametrize("op", ["add", "multiply", "maximum", "minimum"])
@pytest.mark.parametrize("dtype", ["s32", "u8", "f32", "f64"])
@pytest.mark.parametrize("shape,dims", [((3, 4), (1,)), ((3, 4), (0, 1)), ((2, 3, 4), (2, 0)), ((5,), ()),
                                        ((), ()), ((0, 3), (0,)), ((3, 0), (0,)), ((2, 0, 3), (1, 2))])
def test_reduce_single(fast, op, dtype, shape, dims):
    dt = dtypes.from_any(dtype)
    x = ints(shape, dt.storage, low=0 if dt.kind == "unsigned" else -4)
    init = np.array(3 if op in ("add", "multiply") else (5 if op == "minimum" else 1), dt.storage)
    got = run_op("reduce", x, init, attrs={"dimensions": dims, "to_apply": reducer(op, dtype)},
                 ctx=Context(fast_paths=fast))
    exact(got, _reduce_ref(x, init, dims, PY_OP[op], dt))


def _reduce_ref(x, init, dims, fn, dt):
    kept = [d for d in range(x.ndim) if d not in dims]
    rows = np.transpose(x, kept + list(dims)).reshape(int(np.prod([x.shape[d] for d in kept])),
                                                      int(np.prod([x.shape[d] for d in dims])))
    with np.errstate(over="ignore"):                     # integers wrap
        out = [functools.reduce(fn, row, init) for row in rows]
    return np.array(out, dtype=dt.storage).reshape([x.shape[d] for d in kept])


@pytest.mark.parametrize("fast", PATHS)
@pytest.mark.parametrize("op", ["and", "or", "maximum", "minimum"])
def test_reduce_pred(fast, op):
    x = np.random.default_rng(1).random((4, 5)) < 0.3
    init = np.array(IDENTITY[op] if op in ("and", "or") else (op == "minimum"))
    got = run_op("reduce", x, init, attrs={"dimensions": (1,), "to_apply": reducer(op, "pred")},
                 ctx=Context(fast_paths=fast))
    exact(got, UFUNC[op].reduce(x, axis=1))


@pytest.mark.parametrize("fast", PATHS)
def test_reduce_max_propagates_nan_and_float_sum_is_close(fast):
    x = np.random.default_rng(2).standard_normal((3, 50)).astype(np.float32)
    ctx = Context(fast_paths=fast)
    got = run_op("reduce", x, np.float32(0) * np.ones((), np.float32),
                 attrs={"dimensions": (1,), "to_apply": reducer("add", "f32")}, ctx=ctx)
    np.testing.assert_allclose(got, x.astype(np.float64).sum(1), rtol=1e-5, atol=1e-5)
    x[1, 7] = np.nan
    got = run_op("reduce", x, np.array(-np.inf, np.float32), attrs={"dimensions": (1,), "to_apply": reducer("maximum", "f32")}, ctx=ctx)
    exact(got, np.array([x[0].max(), np.nan, x[2].max()], np.float32))


def test_reduce_bf16_sum_rounds_every_step():
    module = one_op_module("reduce", [Shape("bf16", (3,)), Shape("bf16", ())],
                           {"dimensions": (0,), "to_apply": reducer("add", "bf16")})
    got = evaluate(module, [np.array([256.0, 1.0, 1.0], np.float32), np.zeros((), np.float32)])
    exact(got, np.array(256.0, np.float32))


@pytest.mark.parametrize("axis", [0, 1])
def test_variadic_reduce_argmax(axis):
    x = ints((5, 6), np.float32, seed=3)          # small ints: plenty of ties
    idx = np.broadcast_to(np.arange(x.shape[axis], dtype=np.int32).reshape((-1, 1) if axis == 0 else (1, -1)), x.shape)
    values, indices = run_op("reduce", x, np.ascontiguousarray(idx), np.array(-np.inf, np.float32), np.array(0, np.int32),
                             attrs={"dimensions": (axis,), "to_apply": argmax_reducer("f32")})
    exact(values, x.max(axis))
    exact(indices, x.argmax(axis).astype(np.int32))


def call_wrapped(opcode, dtype):
    """(a, b) -> call(opcode)(a, b): not elementwise, so applied one element at a time."""
    def build(module):
        inner = scalar_computation(module, opcode, dtype, name=f"inner_{opcode}")
        b = Builder(module, f"outer_{opcode}")
        s = Shape(dtype, ())
        x, y = b.parameter(s, "a"), b.parameter(s, "b")
        return b.build(b.emit("call", [x, y], attrs={"to_apply": inner}))
    return build


def test_reduce_with_a_body_that_is_not_elementwise():
    x = ints((3, 4), np.int64, seed=4)
    got = run_op("reduce", x, np.array(0, np.int64), attrs={"dimensions": (1,), "to_apply": call_wrapped("add", "s64")})
    exact(got, x.sum(1))


# ----------------------------------------------------------------------------- reduce_window

def reduce_window_reference(x, init, fn, window_dimensions, window_strides=None, padding=None,
                            base_dilations=None, window_dilations=None):
    n = x.ndim
    strides = window_strides or (1,) * n
    padding = padding or ((0, 0),) * n
    base = base_dilations or (1,) * n
    wdil = window_dilations or (1,) * n
    padded = [(s - 1) * b + 1 + lo + hi if s else lo + hi for s, b, (lo, hi) in zip(x.shape, base, padding)]
    extent = [(w - 1) * d + 1 for w, d in zip(window_dimensions, wdil)]
    out_shape = [max(0, (p - e) // st + 1) if p >= e else 0 for p, e, st in zip(padded, extent, strides)]
    out = np.empty(out_shape, x.dtype)
    for o in np.ndindex(*out_shape):
        acc = init
        for k in np.ndindex(*window_dimensions):
            q = [o[j] * strides[j] + k[j] * wdil[j] - padding[j][0] for j in range(n)]
            real = all(qj % base[j] == 0 and 0 <= qj // base[j] < x.shape[j] for j, qj in enumerate(q))
            acc = fn(acc, x[tuple(qj // base[j] for j, qj in enumerate(q))] if real else init)
        out[o] = acc
    return out


@pytest.mark.parametrize("fast", PATHS)
@pytest.mark.parametrize("op", ["add", "maximum", "minimum"])
@pytest.mark.parametrize("case", sorted(WINDOWS))
def test_reduce_window(fast, op, case):
    shape, attrs = WINDOWS[case]
    x = ints(shape, np.float32, seed=5)
    init = np.array({"add": 0.5, "maximum": -10.0, "minimum": 10.0}[op], np.float32)
    got = run_op("reduce_window", x, init, attrs={**attrs, "to_apply": reducer(op, "f32")},
                 ctx=Context(fast_paths=fast))
    exact(got, reduce_window_reference(x, init, PY_OP[op], **attrs))


@pytest.mark.parametrize("case", ["maxpool_2x2", "padded", "window_dilated"])
def test_variadic_reduce_window_argmax(case):
    shape, attrs = WINDOWS[case]
    x = ints(shape, np.float32, seed=6)
    pos = np.arange(x.size, dtype=np.int32).reshape(shape)
    values, where = run_op("reduce_window", x, pos, np.array(-np.inf, np.float32), np.array(-1, np.int32),
                           attrs={**attrs, "to_apply": argmax_reducer("f32")})
    exact(values, reduce_window_reference(x, np.float32(-np.inf), np.maximum, **attrs))
    flat = x.reshape(-1)
    assert np.all(flat[where[where >= 0]] == values[where >= 0])


# ----------------------------------------------------------------------------- select_and_scatter

def select_and_scatter_reference(operand, source, init, select, combine, window_dimensions,
                                 window_strides=None, padding=None):
    n = operand.ndim
    strides = window_strides or (1,) * n
    padding = padding or ((0, 0),) * n
    out = np.full(operand.shape, init, operand.dtype)
    for s in np.ndindex(*source.shape):
        best = None
        for k in np.ndindex(*window_dimensions):
            q = tuple(s[j] * strides[j] + k[j] - padding[j][0] for j in range(n))
            if not all(0 <= qj < operand.shape[j] for j, qj in enumerate(q)):
                continue                      # padding is never selected
            if best is None or not select(operand[best], operand[q]):
                best = q
        if best is not None:
            out[best] = combine(out[best], source[s])
    return out


def ge_select(dtype, direction="GE"):
    return reducer("compare", dtype, direction=direction)


@pytest.mark.parametrize("fast", PATHS)
@pytest.mark.parametrize("direction", ["GE", "GT", "LE"])
@pytest.mark.parametrize("case", sorted(SELECT_CASES))
def test_select_and_scatter(fast, direction, case):
    shape, attrs = SELECT_CASES[case]
    operand = ints(shape, np.float32, seed=7, low=0, high=3)      # many ties
    out_shape = run_op("reduce_window", operand, np.array(0, np.float32),
                       attrs={**attrs, "to_apply": reducer("add", "f32")}).shape
    source = ints(out_shape, np.float32, seed=8, low=1, high=9)
    init = np.array(0.25, np.float32)
    got = run_op("select_and_scatter", operand, source, init,
                 attrs={**attrs, "select": ge_select("f32", direction), "scatter": reducer("add", "f32")},
                 ctx=Context(fast_paths=fast))
    select = {"GE": np.greater_equal, "GT": np.greater, "LE": np.less_equal}[direction]
    exact(got, select_and_scatter_reference(operand, source, init, select, PY_OP["add"], **attrs))


def test_select_and_scatter_is_the_max_pool_gradient():
    x = np.array([[1, 5, 2, 0], [3, 4, 8, 8]], np.float32)
    g = np.array([[10, 20]], np.float32)
    got = run_op("select_and_scatter", x, g, np.array(0, np.float32),
                 attrs={"window_dimensions": (2, 2), "window_strides": (2, 2), "select": ge_select("f32"),
                        "scatter": reducer("add", "f32")})
    exact(got, np.array([[0, 10, 0, 0], [0, 0, 20, 0]], np.float32))   # ties: the first max


def test_select_and_scatter_with_bodies_that_are_not_elementwise():
    shape, attrs = SELECT_CASES["overlapping_padded"]
    operand = ints(shape, np.int32, seed=9, low=0, high=3)
    source = ints((5, 5), np.int32, seed=10, low=1, high=9)

    def call_compare(module):
        inner = scalar_computation(module, "compare", "s32", name="ge", direction="GE")
        b = Builder(module, "select")
        s = Shape("s32", ())
        x, y = b.parameter(s, "a"), b.parameter(s, "b")
        return b.build(b.emit("call", [x, y], attrs={"to_apply": inner}))

    got = run_op("select_and_scatter", operand, source, np.array(0, np.int32),
                 attrs={**attrs, "select": call_compare, "scatter": call_wrapped("add", "s32")})
    exact(got, select_and_scatter_reference(operand, source, 0, np.greater_equal, PY_OP["add"], **attrs))


# ----------------------------------------------------------------------------- sort

def comparator(dtypes_, direction="LT", key=0):
    """compare(lhs_key, rhs_key, direction) over 2N parameters (lhs_i, rhs_i pairs)."""
    def build(module):
        b = Builder(module, "comparator")
        params = [b.parameter(Shape(d, ()), f"{side}{i}") for i, d in enumerate(dtypes_) for side in "lr"]
        return b.build(b.emit("compare", [params[2 * key], params[2 * key + 1]], {"direction": direction}))
    return build


def sort_module(shapes, dimension, comp):
    return one_op_module("sort", shapes, {"dimension": dimension, "is_stable": True, "comparator": comp},
                         name="sort")


@pytest.mark.parametrize("fast", PATHS)
@pytest.mark.parametrize("direction", ["LT", "GT"])
@pytest.mark.parametrize("dtype", ["s32", "u8", "f32"])
@pytest.mark.parametrize("shape,dim", [((7,), 0), ((3, 6), 1), ((6, 3), 0), ((0, 4), 1), ((4, 0), 1), ((2, 3, 4), 1)])
def test_sort_single_key_is_stable(fast, direction, dtype, shape, dim):
    dt = dtypes.from_any(dtype)
    keys = ints(shape, dt.storage, seed=11, low=0, high=4)                 # many ties
    ids = np.arange(keys.size, dtype=np.int32).reshape(shape)
    module = sort_module([Shape(dtype, shape), Shape("s32", shape)], dim, comparator([dtype, "s32"], direction))
    got_keys, got_ids = evaluate(module, [keys, ids], Context(fast_paths=fast))
    sign = 1 if direction == "LT" else -1
    order = np.argsort(sign * keys.astype(np.int64), axis=dim, kind="stable")
    exact(got_keys, np.take_along_axis(keys, order, dim))
    exact(got_ids, np.take_along_axis(ids, order, dim))


def test_sort_descending_handles_extreme_integers():
    x = np.array([0, np.iinfo(np.int32).min, 5, np.iinfo(np.int32).max, -1], np.int32)
    got = evaluate(sort_module([Shape("s32", (5,))], 0, comparator(["s32"], "GT")), [x])
    exact(got, np.sort(x)[::-1])


def lexicographic(module):
    """(a0 < b0) or (a0 == b0 and a1 > b1): by the first key up, then the second down."""
    b = Builder(module, "lexicographic")
    a0, b0, a1, b1 = (b.parameter(Shape("s32", ()), n) for n in ("a0", "b0", "a1", "b1"))
    lt = b.emit("compare", [a0, b0], {"direction": "LT"})
    eq = b.emit("compare", [a0, b0], {"direction": "EQ"})
    gt = b.emit("compare", [a1, b1], {"direction": "GT"})
    return b.build(b.emit("or", [lt, b.emit("and", [eq, gt])]))


def test_sort_with_a_general_comparator():
    k0, k1 = ints((3, 8), seed=12, low=0, high=3), ints((3, 8), seed=13, low=0, high=5)
    module = sort_module([Shape("s32", (3, 8))] * 2, 1, lexicographic)
    got0, got1 = evaluate(module, [k0, k1])
    order = np.array([np.lexsort((-k1[i], k0[i])) for i in range(3)])
    exact(got0, np.take_along_axis(k0, order, 1))
    exact(got1, np.take_along_axis(k1, order, 1))


def test_sort_nan_placement_on_the_fast_path():
    x = np.array([3.0, np.nan, -1.0, 2.0], np.float32)
    got = evaluate(sort_module([Shape("f32", (4,))], 0, comparator(["f32"], "LT")), [x])
    exact(got, np.array([-1.0, 2.0, 3.0, np.nan], np.float32))


def test_general_reduce_combines_neighbours_pairwise():
    # 2^14 ones in f16: a balanced tree of pairs is exact; a left-to-right f16 fold would
    # stop growing at 2048 (2048 + 1 rounds back to 2048). The tree is also what keeps
    # this path fast: log2(K) vectorized steps.
    module = one_op_module("reduce", [Shape("f16", (3, 2 ** 14)), Shape("f16", ())],
                           {"dimensions": (1,), "to_apply": reducer("add", "f16")})
    got = evaluate(module, [np.ones((3, 2 ** 14), np.float16), np.zeros((), np.float16)])
    exact(got, np.full(3, 2 ** 14, np.float16))


def test_general_reduce_keeps_left_operands_left():
    # (acc, x) -> acc * 10 + x is not associative; with neighbours paired left first,
    # [1, 2, 3, 4] from init 0 is ((1*10+2)*10 + (3*10+4)) combined into 0*10 + that.
    def digits(module):
        b = Builder(module, "digits")
        s = Shape("s64", ())
        acc, x = b.parameter(s, "acc"), b.parameter(s, "x")
        return b.build(b.emit("add", [b.emit("multiply", [acc, b.constant(np.int64(10))]), x]))
    got = run_op("reduce", np.array([1, 2, 3, 4], np.int64), np.array(0, np.int64),
                 attrs={"dimensions": (0,), "to_apply": digits})
    exact(got, np.array((1 * 10 + 2) * 10 + (3 * 10 + 4), np.int64))
