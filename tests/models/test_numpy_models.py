"""Acceptance: plain-NumPy models trace unmodified through @tessel.jit and match NumPy."""
import numpy as np
import pytest

import tessel

import numpy_models as nm

TOLERANCE = {np.float64: 1e-10, np.float32: 1e-4}
DTYPES = [np.float64, np.float32]


def assert_close(got, want, dtype):
    np.testing.assert_allclose(got, want, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype] * 1e-2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gpt2_forward_matches_numpy(dtype):
    params = nm.gpt2_params(np.random.default_rng(0), dtype=dtype)
    tokens = (3, 1, 4, 1, 5, 9, 2, 6)
    forward = tessel.jit(nm.gpt2_logits, static_argnums=(1, 2))
    got = forward(params, tokens, 4)
    want = nm.gpt2_logits(params, tokens, 4)
    assert got.shape == (len(tokens), 50)
    assert got.dtype == want.dtype
    assert_close(got, want, dtype)


def test_gpt2_hlo_shows_the_traced_structure():
    params = nm.gpt2_params(np.random.default_rng(0), layers=1)
    lowered = tessel.jit(nm.gpt2_logits, static_argnums=(1, 2)).lower(params, (3, 1, 4), 2)
    text = lowered.as_text()
    for op in ("gather", "dot_general", "tanh", "reduce", "exp", "divide", "concatenate"):
        assert f" {op}(" in text, op
    assert "numpy_models.py:" in text      # user source lines are recorded


@pytest.mark.parametrize("dtype", DTYPES)
def test_mlp_softmax_cross_entropy_matches_numpy(dtype):
    rng = np.random.default_rng(1)
    params = nm.mlp_params(rng, dtype=dtype)
    x = rng.standard_normal((16, 20)).astype(dtype)
    labels = np.eye(5, dtype=dtype)[rng.integers(0, 5, 16)]
    got_loss, got_acc = tessel.jit(nm.mlp_loss)(params, x, labels)
    want_loss, want_acc = nm.mlp_loss(params, x, labels)
    assert_close(got_loss, want_loss, dtype)
    assert got_acc == want_acc


@pytest.mark.parametrize("dtype", DTYPES)
def test_lstm_python_loop_matches_numpy(dtype):
    rng = np.random.default_rng(2)
    params = nm.lstm_params(rng, dtype=dtype)
    xs = rng.standard_normal((5, 3, 6)).astype(dtype)
    h0 = np.zeros((3, 8), dtype)
    c0 = np.zeros((3, 8), dtype)
    got_h, got_c = tessel.jit(nm.lstm_run)(params, xs, h0, c0)
    want_h, want_c = nm.lstm_run(params, xs, h0, c0)
    assert_close(got_h, want_h, dtype)
    assert_close(got_c, want_c, dtype)
