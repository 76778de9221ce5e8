"""Plain NumPy code on traced arrays: ufuncs and array functions route to tessel.numpy;
unsupported functions are named, with the user's line."""
from __future__ import annotations

import os

import numpy as np
import pytest

from tessel.backends import interpreter
from tessel.frontend import errors
from tessel.runtime import pytree

from tracing import trace

THIS_FILE = os.path.basename(__file__)
RNG = np.random.default_rng(0)


def run(fn, *args):
    """Trace fn with the arrays `args` as parameters and evaluate with the interpreter."""
    module, treedef = trace(fn, *args)
    values = interpreter.evaluate(module, list(args))
    return pytree.unflatten(treedef, [np.asarray(v) for v in values])


def same_as_numpy(fn, *args, rtol=1e-6):
    """fn traced on parameters gives what fn gives on the NumPy arrays themselves."""
    got = run(fn, *args)
    want = fn(*args)
    got_leaves, want_leaves = pytree.flatten(got)[0], pytree.flatten(want)[0]
    assert len(got_leaves) == len(want_leaves)
    for g, w in zip(got_leaves, want_leaves):
        w = np.asarray(w)
        assert g.shape == w.shape and g.dtype == w.dtype, (g.shape, g.dtype, w.shape, w.dtype)
        np.testing.assert_allclose(g, w, rtol=rtol)


X = RNG.normal(size=(4, 6)).astype(np.float32)
Y = RNG.normal(size=(4, 6)).astype(np.float32)


# ----------------------------------------------------------------------------- ufuncs

def test_tanh():
    same_as_numpy(np.tanh, X)


def test_maximum_with_python_scalar():
    same_as_numpy(lambda x: np.maximum(x, 0), X)


@pytest.mark.parametrize("ufunc", [np.add, np.subtract, np.multiply, np.true_divide, np.divide,
                                   np.maximum, np.minimum, np.less, np.greater_equal, np.equal,
                                   np.power])
def test_binary_ufuncs(ufunc):
    same_as_numpy(lambda a, b: ufunc(np.abs(a) + 0.5, b), X, Y)


@pytest.mark.parametrize("ufunc", [np.negative, np.exp, np.abs, np.absolute, np.sqrt, np.log, np.sin,
                                   np.isfinite])
def test_unary_ufuncs(ufunc):
    same_as_numpy(lambda a: ufunc(np.abs(a) + 0.5), X)


def test_matmul():
    same_as_numpy(np.matmul, X, Y.T.copy())


def test_ndarray_plus_tracer_is_reflected_through_the_ufunc():
    const = RNG.normal(size=(6,)).astype(np.float32)
    same_as_numpy(lambda x: const + x, X)
    same_as_numpy(lambda x: const * x - const, X)
    same_as_numpy(lambda x: const < x, X)


def test_softmax_written_in_numpy():
    same_as_numpy(lambda x: np.exp(x) / np.sum(np.exp(x), axis=-1, keepdims=True), X)


def test_ufunc_reduce():
    same_as_numpy(lambda x: (np.add.reduce(x), np.maximum.reduce(x, axis=1),
                             np.multiply.reduce(x, axis=0, keepdims=True)), X)
    same_as_numpy(lambda m: np.logical_and.reduce(m, axis=-1), X > 0)


def test_ufunc_out_and_where_are_refused():
    buf = np.empty_like(X)
    with pytest.raises(errors.UnsupportedNumpyFunction, match=rf"{THIS_FILE}:\d+: .*out="):
        trace(lambda x: np.add(x, 1, out=buf), X)
    with pytest.raises(errors.UnsupportedNumpyFunction, match=rf"{THIS_FILE}:\d+: .*where="):
        trace(lambda x: np.exp(x, where=X > 0), X)


def test_ufunc_accumulate_is_refused_with_a_hint():
    with pytest.raises(errors.UnsupportedNumpyFunction, match="numpy.add.accumulate.*cumsum"):
        trace(lambda x: np.add.accumulate(x), X)


# ----------------------------------------------------------------------------- array functions

def test_split():
    same_as_numpy(lambda x: np.split(x, 3, axis=-1), X)


def test_hstack_and_concatenate():
    same_as_numpy(lambda x, y: np.hstack([x, y, x]), X, Y)
    same_as_numpy(lambda x, y: np.concatenate([x, y], axis=0), X, Y)


def test_var_and_mean():
    same_as_numpy(lambda x: np.var(x, axis=-1, keepdims=True), X, rtol=1e-5)
    same_as_numpy(lambda x: np.mean(x, axis=0), X)


def test_tri_with_tracer_dtype():
    # np.tri itself sees no tracer (it runs in NumPy and becomes a constant).
    same_as_numpy(lambda x: x[:, :4] * np.tri(4, dtype=x.dtype), X)


def test_reshape_transpose_where():
    same_as_numpy(lambda x: np.reshape(x, (6, 4)), X)
    same_as_numpy(lambda x: np.transpose(x), X)
    same_as_numpy(lambda x, y: np.where(x > y, x, y), X, Y)


def test_einsum():
    same_as_numpy(lambda x, y: np.einsum("ij,kj->ik", x, y), X, Y, rtol=1e-5)


# ----------------------------------------------------------------------------- unsupported

def test_linalg_inv_names_the_function_and_the_line():
    def f(x):
        return np.linalg.inv(x)   # the reported line

    with pytest.raises(errors.UnsupportedNumpyFunction) as info:
        trace(f, X[:, :4].copy())
    message = str(info.value)
    assert "numpy.linalg.inv" in message
    assert f"{THIS_FILE}:{f.__code__.co_firstlineno + 1}:" in message


def test_fft_and_unique_are_refused():
    with pytest.raises(errors.UnsupportedNumpyFunction, match=r"numpy\.fft\.fft"):
        trace(lambda x: np.fft.fft(x), X)
    with pytest.raises(errors.UnsupportedNumpyFunction, match=r"numpy\.unique.*shape depends on the data"):
        trace(lambda x: np.unique(x), X)


def test_unsupported_message_suggests_similar_functions():
    from tessel.frontend import numpy_dispatch
    error = numpy_dispatch.unsupported("numpy", "cumsum_x")
    assert "tessel.numpy.cumsum" in str(error)
