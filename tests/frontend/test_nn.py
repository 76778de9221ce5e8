"""tessel.nn against NumPy formulas in float64, including inputs large enough to
overflow a naive implementation, and rows of -inf."""
from __future__ import annotations

import math

import numpy as np
import pytest

from tessel.frontend import nn

from tracing import run, trace

RNG = np.random.default_rng(0)


def run1(fn, *args):
    return run(fn, *args)[0]


def opcodes(fn, *args) -> list[str]:
    module, _ = trace(fn, *args)
    return [i.opcode for i in module.entry.instructions]


# ----------------------------------------------------------------------------- references

def np_softmax(x, axis=-1):
    with np.errstate(over="ignore"):   # -1e308 - 1e308 is -inf, which exp takes to 0
        e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def np_logsumexp(x, axis=None, keepdims=False):
    m = np.max(x, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


def np_erf(x):
    return np.vectorize(math.erf)(x)


X = RNG.normal(size=(4, 7)) * 3.0
BIG = np.array([[1000.0, 1001.0, 1002.0], [-1000.0, -1001.0, -1002.0], [1e308, -1e308, 0.0]])


# ----------------------------------------------------------------------------- activations

def test_relu():
    np.testing.assert_array_equal(run1(nn.relu, X), np.maximum(X, 0))
    ints = np.array([-3, 0, 4], np.int32)
    got = run1(nn.relu, ints)
    assert got.dtype == np.int32 and list(got) == [0, 0, 4]


def test_gelu_tanh_form_is_default():
    want = 0.5 * X * (1 + np.tanh(np.sqrt(2 / np.pi) * (X + 0.044715 * X ** 3)))
    np.testing.assert_allclose(run1(nn.gelu, X), want, rtol=1e-12, atol=1e-15)


def test_gelu_exact_uses_erf():
    want = 0.5 * X * (1 + np_erf(X / np.sqrt(2)))
    np.testing.assert_allclose(run1(lambda x: nn.gelu(x, approximate=False), X), want, rtol=1e-12, atol=1e-15)
    assert "erf" in opcodes(lambda x: nn.gelu(x, approximate=False), X)


def test_sigmoid_uses_logistic_and_saturates():
    x = np.concatenate([X.ravel(), [-800.0, 800.0]])
    got = run1(nn.sigmoid, x)
    with np.errstate(over="ignore"):
        want = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-300)
    assert got[-2] >= 0 and got[-1] == 1.0
    assert "logistic" in opcodes(nn.sigmoid, x)


def test_integer_input_is_promoted_to_float32():
    got = run1(nn.sigmoid, np.array([0, 1], np.int32))
    assert got.dtype == np.float32


# ----------------------------------------------------------------------------- softmax family

@pytest.mark.parametrize("axis", [-1, 0, (0, 1)])
def test_softmax_and_log_softmax(axis):
    np.testing.assert_allclose(run1(lambda x: nn.softmax(x, axis=axis), X), np_softmax(X, axis), rtol=1e-12)
    np.testing.assert_allclose(run1(lambda x: nn.log_softmax(x, axis=axis), X),
                               np.log(np_softmax(X, axis)), rtol=1e-12, atol=1e-12)


def test_softmax_large_magnitudes_do_not_overflow():
    got = run1(nn.softmax, BIG)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, np_softmax(BIG), rtol=1e-12)
    np.testing.assert_allclose(got.sum(-1), 1.0, rtol=1e-12)
    lsm = run1(nn.log_softmax, BIG)
    np.testing.assert_allclose(lsm[:2], np.log(np_softmax(BIG[:2])), rtol=1e-12)


def test_float32_softmax_of_large_logits():
    x = np.array([[88.0, 89.0, 90.0]], np.float32) * 10   # exp overflows float32 without the shift
    got = run1(nn.softmax, x)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, np_softmax(x.astype(np.float64)), rtol=1e-6)


@pytest.mark.parametrize("axis, keepdims", [(None, False), (-1, False), (0, True), ((0, 1), False), (1, True)])
def test_logsumexp(axis, keepdims):
    got = run1(lambda x: nn.logsumexp(x, axis=axis, keepdims=keepdims), X)
    want = np_logsumexp(X, axis, keepdims)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(run1(lambda x: nn.logsumexp(x, axis=-1), BIG[:2]),
                               np_logsumexp(BIG[:2], -1), rtol=1e-12)


def test_all_minus_inf_row_gives_minus_inf_without_nan():
    x = np.array([[-np.inf, -np.inf, -np.inf], [0.0, -np.inf, 1.0]])
    lse = run1(lambda t: nn.logsumexp(t, axis=-1), x)
    assert lse[0] == -np.inf and not np.isnan(lse).any()
    np.testing.assert_allclose(lse[1], np.log(1 + np.e), rtol=1e-12)
    # No distribution over an all -inf row: softmax and log_softmax are NaN there (as JAX).
    lsm, sm = run(lambda t: (nn.log_softmax(t), nn.softmax(t)), x)
    assert np.isnan(lsm[0]).all() and np.isnan(sm[0]).all()
    np.testing.assert_allclose(sm[1], np_softmax(x[1:])[0], rtol=1e-12)
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(lsm[1], np.log(np_softmax(x[1:])[0]), rtol=1e-12)


def test_logsumexp_with_plus_inf():
    x = np.array([[np.inf, 0.0, 1.0]])
    assert run1(lambda t: nn.logsumexp(t, axis=-1), x)[0] == np.inf


# ----------------------------------------------------------------------------- layer norm, one hot

@pytest.mark.parametrize("axis", [-1, (1, 2)])
def test_layer_norm(axis):
    x = RNG.normal(size=(2, 3, 8)) * 5 + 100
    gamma, beta = RNG.normal(size=(3, 8)), RNG.normal(size=(3, 8))
    if axis == -1:
        gamma, beta = gamma[0], beta[0]
    got = run1(lambda t, g, b: nn.layer_norm(t, g, b, axis=axis), x, gamma, beta)
    mean = x.mean(axis=axis, keepdims=True)
    var = x.var(axis=axis, keepdims=True)
    want = (x - mean) / np.sqrt(var + 1e-5) * gamma + beta
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_layer_norm_without_affine_and_eps():
    x = RNG.normal(size=(3, 5))
    got = run1(lambda t: nn.layer_norm(t, eps=1e-3), x)
    want = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-3)
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_one_hot():
    idx = np.array([[0, 3], [2, 5]], np.int32)   # 5 is out of range: an all-zero row
    got = run1(lambda i: nn.one_hot(i, 4), idx)
    assert got.dtype == np.float32 and got.shape == (2, 2, 4)
    np.testing.assert_array_equal(got, (idx[..., None] == np.arange(4)).astype(np.float32))
    got = run1(lambda i: nn.one_hot(i, 4, dtype="int32", axis=0), idx)
    np.testing.assert_array_equal(got, (idx[None] == np.arange(4)[:, None, None]).astype(np.int32))


# ----------------------------------------------------------------------------- pooling

def test_max_and_avg_pool_nhwc():
    x = RNG.normal(size=(2, 6, 6, 3))
    got = run1(lambda t: nn.max_pool(t, (2, 2), (2, 2)), x)
    np.testing.assert_allclose(got, x.reshape(2, 3, 2, 3, 2, 3).max(axis=(2, 4)))
    got = run1(lambda t: nn.avg_pool(t, (2, 2), (2, 2)), x)
    np.testing.assert_allclose(got, x.reshape(2, 3, 2, 3, 2, 3).mean(axis=(2, 4)), rtol=1e-12)


def test_avg_pool_padding_counts():
    x = np.ones((1, 3, 3, 1))
    incl = run1(lambda t: nn.avg_pool(t, (2, 2), padding="SAME"), x)[0, :, :, 0]
    excl = run1(lambda t: nn.avg_pool(t, (2, 2), padding="SAME", count_include_pad=False), x)[0, :, :, 0]
    np.testing.assert_allclose(incl, [[1, 1, 0.5], [1, 1, 0.5], [0.5, 0.5, 0.25]])
    np.testing.assert_allclose(excl, np.ones((3, 3)))


# ----------------------------------------------------------------------------- eager

def test_functions_run_eagerly():
    np.testing.assert_allclose(nn.softmax(X), np_softmax(X), rtol=1e-12)
