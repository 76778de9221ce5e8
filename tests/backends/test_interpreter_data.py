"""Interpreter: data-movement ops against NumPy."""
import numpy as np
import pytest

from tessel.backends.interpreter import evaluate
from tessel.backends.interpreter.testing import run_op
from tessel.compiler import dtypes
from tessel.compiler.ir import Builder, Module, Shape


def exact(got, want):
    want = np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, got.shape, want.dtype, want.shape)
    np.testing.assert_array_equal(got, want)


def arange(shape, dtype=np.float32):
    return np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape)


# ----------------------------------------------------------------------------- parameter, constant, iota

@pytest.mark.parametrize("value", [np.float32(2.5), np.arange(6, dtype=np.int8).reshape(2, 3),
                                   np.zeros((0, 4), np.uint32), np.array([True, False])])
def test_constant_and_parameter(value):
    m = Module("c")
    b = Builder(m, "main")
    p = b.parameter(Shape(dtypes.from_numpy(np.asarray(value).dtype), np.shape(value)))
    c = b.constant(value)
    b.build(b.emit("tuple", [p, c]), entry=True)
    got_p, got_c = evaluate(m, [np.asarray(value)])
    exact(got_p, np.asarray(value))
    exact(got_c, np.asarray(value))
    got_c[...] = 0 if got_c.size else got_c          # results are writable copies
    exact(evaluate(m, [np.asarray(value)])[1], np.asarray(value))


def test_bf16_constant_is_rounded():
    m = Module("c")
    b = Builder(m, "main")
    b.build(b.constant(np.array([1.00390625, 3.14159], np.float32), "bf16"), entry=True)
    exact(evaluate(m, []), np.array([1.0, 3.140625], np.float32))


@pytest.mark.parametrize("dtype", ["s32", "u8", "f32", "bf16"])
@pytest.mark.parametrize("shape,dim", [((5,), 0), ((2, 3), 1), ((2, 3, 4), 0), ((0, 3), 1), ((4, 0), 0)])
def test_iota(dtype, shape, dim):
    got = run_op("iota", attrs={"iota_dimension": dim}, shape=Shape(dtype, shape))
    want = np.broadcast_to(np.arange(shape[dim]).reshape([-1 if d == dim else 1 for d in range(len(shape))]), shape)
    exact(got, want.astype(dtypes.from_any(dtype).storage))


# ----------------------------------------------------------------------------- broadcast, reshape, transpose

@pytest.mark.parametrize("in_shape,bdims,out_shape", [
    ((), (), (2, 3)),
    ((3,), (1,), (2, 3)),
    ((2,), (0,), (2, 3)),
    ((1, 3), (0, 1), (4, 3)),
    ((3, 2), (1, 0), (2, 3)),           # unsorted broadcast_dimensions = a transpose
    ((4, 2), (2, 0), (2, 3, 4)),
    ((0,), (1,), (2, 0)),
    ((3,), (0,), (3, 0)),
])
def test_broadcast_in_dim(in_shape, bdims, out_shape):
    x = arange(in_shape)
    got = run_op("broadcast_in_dim", x, attrs={"broadcast_dimensions": bdims}, shape=Shape("f32", out_shape))
    # Reference: for each result index, the operand index is (out[bdims[i]] or 0 if size 1).
    want = np.empty(out_shape, np.float32)
    for idx in np.ndindex(*out_shape):
        want[idx] = x[tuple(idx[d] if x.shape[i] != 1 else 0 for i, d in enumerate(bdims))]
    exact(got, want)


@pytest.mark.parametrize("in_shape,out_shape", [((2, 3), (3, 2)), ((6,), (1, 2, 3)), ((), (1, 1)),
                                                ((2, 0), (0, 5)), ((4, 1), (4,))])
def test_reshape_is_row_major(in_shape, out_shape):
    x = arange(in_shape, np.int32)
    exact(run_op("reshape", x, shape=Shape("s32", out_shape)), x.reshape(out_shape))


@pytest.mark.parametrize("shape,perm", [((2, 3), (1, 0)), ((2, 3, 4), (2, 0, 1)), ((2, 3, 4), (0, 1, 2)),
                                        ((), ()), ((0, 3), (1, 0))])
def test_transpose(shape, perm):
    x = arange(shape)
    exact(run_op("transpose", x, attrs={"permutation": perm}), np.transpose(x, perm))


# ----------------------------------------------------------------------------- slicing

@pytest.mark.parametrize("shape,start,limit,strides", [
    ((10,), (2,), (8,), None), ((10,), (1,), (10,), (3,)), ((4, 5), (1, 0), (3, 5), (1, 2)),
    ((4, 5), (2, 2), (2, 4), None), ((), (), (), None), ((3, 0), (1, 0), (3, 0), (2, 1)),
])
def test_slice(shape, start, limit, strides):
    x = arange(shape)
    attrs = {"start_indices": start, "limit_indices": limit}
    if strides is not None:
        attrs["strides"] = strides
    want = x[tuple(slice(s, l, st) for s, l, st in zip(start, limit, strides or (1,) * len(shape)))]
    exact(run_op("slice", x, attrs=attrs), want)


def _scalar(v, dtype=np.int32):
    return np.array(v, dtype=dtype)


@pytest.mark.parametrize("starts,want_starts", [((1, 2), (1, 2)), ((-3, 0), (0, 0)), ((9, 9), (2, 3)),
                                                ((2, -1), (2, 0))])
def test_dynamic_slice_clamps_starts(starts, want_starts):
    x = arange((4, 5))
    r, c = want_starts
    for index_dtype in (np.int32, np.int64, np.uint8):
        if index_dtype == np.uint8 and min(starts) < 0:
            continue                                # unsigned starts are never negative
        got = run_op("dynamic_slice", x, *(_scalar(s, index_dtype) for s in starts),
                     attrs={"slice_sizes": (2, 2)})
        exact(got, x[r:r + 2, c:c + 2])


@pytest.mark.parametrize("starts,want_starts", [((1, 1), (1, 1)), ((-5, 7), (0, 3)), ((3, 0), (2, 0))])
def test_dynamic_update_slice_clamps_starts(starts, want_starts):
    x = arange((4, 5))
    u = -np.ones((2, 2), np.float32)
    got = run_op("dynamic_update_slice", x, u, *(_scalar(s) for s in starts))
    want = x.copy()
    r, c = want_starts
    want[r:r + 2, c:c + 2] = u
    exact(got, want)


def test_dynamic_slice_of_size_zero_and_0d_update():
    x = arange((3,))
    exact(run_op("dynamic_slice", x, _scalar(2), attrs={"slice_sizes": (0,)}), x[:0])
    s = np.array(7.0, np.float32)
    exact(run_op("dynamic_update_slice", np.array(1.0, np.float32), s), s)


# ----------------------------------------------------------------------------- concatenate, pad, reverse

@pytest.mark.parametrize("shapes,dim", [([(2, 3), (4, 3)], 0), ([(2, 1), (2, 0), (2, 3)], 1), ([(5,)], 0),
                                        ([(0, 2), (0, 2)], 0)])
def test_concatenate(shapes, dim):
    xs = [arange(s) + 100 * i for i, s in enumerate(shapes)]
    exact(run_op("concatenate", *xs, attrs={"dimension": dim}), np.concatenate(xs, axis=dim))


def pad_reference(x, value, lo, hi, interior):
    """Element by element: operand index i lands at lo + i * (interior + 1)."""
    out_shape = [l + h + n + max(n - 1, 0) * k for n, l, h, k in zip(x.shape, lo, hi, interior)]
    out = np.full(out_shape, value, x.dtype)
    for idx in np.ndindex(*x.shape):
        pos = tuple(l + i * (k + 1) for i, l, k in zip(idx, lo, interior))
        if all(0 <= p < n for p, n in zip(pos, out_shape)):
            out[pos] = x[idx]
    return out


@pytest.mark.parametrize("shape,lo,hi,interior", [
    ((3,), (1,), (2,), (0,)), ((3,), (0,), (0,), (2,)), ((2, 3), (1, -1), (-1, 2), (1, 0)),
    ((4,), (-2,), (-1,), (1,)), ((3,), (-4,), (0,), (1,)), ((0,), (2,), (1,), (3,)),
    ((2, 2), (0, 0), (0, 0), (0, 0)), ((), (), (), ()),
])
def test_pad(shape, lo, hi, interior):
    x = arange(shape, np.int32) + 1
    got = run_op("pad", x, np.array(-7, np.int32), attrs={
        "edge_padding_low": lo, "edge_padding_high": hi, "interior_padding": interior})
    exact(got, pad_reference(x, -7, lo, hi, interior))


@pytest.mark.parametrize("shape,dims", [((5,), (0,)), ((2, 3), (1,)), ((2, 3, 4), (0, 2)), ((2, 3), ()),
                                        ((0, 3), (0, 1))])
def test_reverse(shape, dims):
    x = arange(shape)
    exact(run_op("reverse", x, attrs={"dimensions": dims}), np.flip(x, dims) if dims else x)


@pytest.mark.parametrize("axis", [-1, -2, 0])
def test_negative_axes_normalized_by_the_caller(axis):
    # The IR only holds non-negative dims; a frontend turns NumPy's axis=-1 into rank-1.
    x = arange((2, 3, 4))
    dim = axis % x.ndim
    exact(run_op("concatenate", x, x, attrs={"dimension": dim}), np.concatenate([x, x], axis=axis))
    exact(run_op("reverse", x, attrs={"dimensions": (dim,)}), np.flip(x, axis))
    perm = (dim,) + tuple(d for d in range(x.ndim) if d != dim)
    exact(run_op("transpose", x, attrs={"permutation": perm}), np.moveaxis(x, axis, 0))
