"""CPU backend on real traced programs (tessel.jit(f, backend="cpu")): the benchmark
kernels at small sizes, the repository's NumPy models, and the coverage contract --
which ops lower, and the error for the ones that do not yet."""
from __future__ import annotations

import os
import re
import sys

import numpy as np
import pytest

import tessel
import tessel.numpy as tnp
from tessel import lax
from tessel.backends.cpu import codegen
from tessel.compiler import ops
from tessel.compiler.pipeline import optimize

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "models"))
import numpy_models as nm  # noqa: E402  (plain NumPy models live in tests/models)


def assert_cpu_matches_interpreter(f, *args, rtol=2e-6, static_argnums=()):
    got = tessel.jit(f, backend="cpu", static_argnums=static_argnums)(*args)
    want = tessel.jit(f, backend="interpreter", static_argnums=static_argnums)(*args)
    for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * float(np.max(np.abs(w), initial=1.0)))


def chain(x):
    return tnp.tanh(0.5 * x + 1) * (1 / (1 + tnp.exp(-x))) + x * x


def softmax(x):
    e = tnp.exp(x - tnp.max(x, axis=-1, keepdims=True))
    return e / tnp.sum(e, axis=-1, keepdims=True)


def layer_norm_gelu(x, gamma, beta):
    mu = tnp.mean(x, axis=-1, keepdims=True)
    var = tnp.mean((x - mu) ** 2, axis=-1, keepdims=True)
    y = (x - mu) / tnp.sqrt(var + 1e-5) * gamma + beta
    return 0.5 * y * (1 + tnp.tanh(0.7978845608 * (y + 0.044715 * y ** 3)))


def mlp(x, w1, b1, w2, b2, w3, b3):
    h = tnp.maximum(x @ w1 + b1, 0)
    h = tnp.maximum(h @ w2 + b2, 0)
    return h @ w3 + b3


RNG = np.random.default_rng(0)


def normal(*shape, dtype=np.float32, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_elementwise_chain(dtype):
    assert_cpu_matches_interpreter(chain, normal(1001, dtype=dtype), rtol=4e-6 if dtype == np.float32 else 1e-14)


@pytest.mark.parametrize("shape", [(64, 1000), (3, 7), (1, 1)])
def test_softmax(shape):
    assert_cpu_matches_interpreter(softmax, normal(*shape, scale=5.0), rtol=3e-6)


def test_layer_norm_gelu():
    assert_cpu_matches_interpreter(layer_norm_gelu, normal(33, 100), normal(100), normal(100), rtol=1e-5)


def test_mlp_forward():
    sizes = (78, 51, 51, 10)
    weights = [a for n_in, n_out in zip(sizes, sizes[1:])
               for a in (normal(n_in, n_out, scale=0.1), normal(n_out))]
    assert_cpu_matches_interpreter(mlp, normal(17, 78), *weights, rtol=1e-5)


def test_column_statistics_and_broadcasting():
    def normalize_columns(x):
        mu = tnp.mean(x, axis=0)
        return (x - mu) / (tnp.std(x, axis=0) + 1e-3), tnp.max(x, axis=0), tnp.argmax(x, axis=1)
    assert_cpu_matches_interpreter(normalize_columns, normal(40, 23), rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_models_mlp_loss_and_lstm(dtype):
    rng = np.random.default_rng(1)
    params = nm.mlp_params(rng, dtype=dtype)
    x = rng.standard_normal((16, 20)).astype(dtype)
    labels = np.eye(5, dtype=dtype)[rng.integers(0, 5, 16)]
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert_cpu_matches_interpreter(nm.mlp_loss, params, x, labels, rtol=rtol)
    lstm = nm.lstm_params(rng, dtype=dtype)
    xs = rng.standard_normal((5, 3, 6)).astype(dtype)
    h0 = np.zeros((3, 8), dtype)
    assert_cpu_matches_interpreter(nm.lstm_run, lstm, xs, h0, h0, rtol=rtol)


def test_transformer_block():
    block = nm.gpt2_params(np.random.default_rng(0), layers=1, dtype=np.float32, width=32, ctx=8)["blocks"][0]
    x = np.random.default_rng(1).standard_normal((8, 32)).astype(np.float32)
    assert_cpu_matches_interpreter(nm.transformer_block, x, block, 2, static_argnums=(2,), rtol=1e-5)


def test_identical_kernels_share_their_code():
    """Per-head kernels differ only in the slices they read: heads share GEMM and softmax
    code (the entry calls it with different pointers). A kernel whose parameters come
    in another order has a key of its own, so sharing is counted, not made exact."""
    heads, d = 4, 16

    def attention_scores(x, w):
        return tuple(softmax(x[:, h * d:(h + 1) * d] @ w[h * d:(h + 1) * d, :] * 0.25) for h in range(heads))

    x, w = normal(32, heads * d), normal(heads * d, 40)
    assert_cpu_matches_interpreter(attention_scores, x, w, rtol=1e-5)
    low = tessel.jit(attention_scores, backend="cpu").lower(x, w)
    program = codegen.compile_program(optimize(low.module, "cpu")[0])
    functions = set(re.findall(r'define (?:internal |external )?void @"([^"]+)"', program.ir))
    gemms = {f for f in functions if f.startswith("tessel.gemm.") and f.endswith(".task")}
    reductions = {f for f in functions if f.startswith("tessel.reduce.")}
    assert len(program.kernels) == 2 * heads                        # GEMM; softmax (max, exp / sum)
    assert len(gemms) < heads and len(reductions) < heads


# ----------------------------------------------------------------------------- coverage

# Every op lowers: directly (codegen.KERNELS), or through an expander of the CPU pipeline
# (codegen.EXPANDED, compiler/pipeline.py cpu_expanders). custom_call runs registered
# emitters only (tests/backends/cpu/test_codegen_misc.py).
def test_every_op_is_covered():
    assert set(codegen.covered_ops()) == set(ops.OPS)
