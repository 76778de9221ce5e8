"""Programs that need the systolic pipeline's expanders run on the machine and match the
interpreter: a scan (unrolled; its stacked outputs a concatenate) and its gradient
within the bf16 model tolerance, a max-pool gradient (compares, selects and pads on the
vector unit, no multiplies: exact) and a kernel reversal (copies: exact)."""
from __future__ import annotations

import numpy as np
import pytest

import tessel
import tessel.numpy as tnp
from tessel.backends.systolic import reference as ref

RNG = np.random.default_rng(1)


def rnn(w, xs):
    def step(h, x):
        h = tnp.tanh(x @ w + h)
        return h, h
    _, hs = tessel.lax.scan(step, tnp.zeros((4, 8), dtype=np.float32), xs)
    return hs


def rnn_loss(w, xs):
    return tnp.sum(rnn(w, xs) ** 2)


def both(fn, *args):
    return tessel.jit(fn, backend="systolic")(*args), tessel.jit(fn, backend="interpreter")(*args)


@pytest.mark.parametrize("fn, matmul_layers", [(rnn, 3), (tessel.grad(rnn_loss, argnums=(0, 1)), 6)])
def test_scan_runs_unrolled_on_the_array(fn, matmul_layers):
    w = (RNG.standard_normal((8, 8)) / 3).astype(np.float32)
    xs = RNG.standard_normal((3, 4, 8)).astype(np.float32)
    got, want = both(fn, w, xs)
    for g, v in zip(got if isinstance(got, tuple) else [got], want if isinstance(want, tuple) else [want]):
        error = np.max(np.abs(np.asarray(g) - v))
        assert error <= ref.model_tolerance(v, matmul_layers), error
        assert error > 0              # the steps' matmuls ran in bf16 on the array


def test_max_pool_gradient_runs_exactly():
    def loss(x, c):
        return tnp.sum(tessel.nn.max_pool(x, (2, 2), strides=(2, 2)) * c)
    x = RNG.standard_normal((2, 4, 6, 3)).astype(np.float32)
    c = RNG.standard_normal((2, 2, 3, 3)).astype(np.float32)
    got, want = both(tessel.grad(loss), x, c)
    np.testing.assert_array_equal(np.asarray(got), want)


def test_reversed_kernel_runs_exactly():
    k = RNG.standard_normal((3, 3, 2, 4)).astype(np.float32)
    got, want = both(lambda k: tnp.flip(k, axis=(0, 1)) * 2.0, k)
    np.testing.assert_array_equal(np.asarray(got), want)
