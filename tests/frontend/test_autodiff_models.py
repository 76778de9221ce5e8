"""Gradients of whole models: the plain-NumPy GPT-2 and LSTM of tests/models (traced
unmodified through NumPy dispatch) against finite differences leaf by leaf, and an MLP
training loop against a hand-written NumPy backward."""
import os
import sys

import numpy as np

import tessel
from tessel.runtime import pytree

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "models"))
import numpy_models as nm  # noqa: E402

from autodiff_checks import numeric_grad  # noqa: E402


def sample_elements(shape, limit, rng):
    """All indices of a small leaf; `limit` random ones of a big leaf."""
    every = list(np.ndindex(shape))
    if len(every) <= limit:
        return every
    return [every[i] for i in rng.choice(len(every), limit, replace=False)]


def assert_grads_match_differences(loss, params, grads, rtol=1e-6, atol=1e-8, limit=40):
    """Every leaf against central differences of the NumPy loss (all elements of small
    leaves, `limit` random elements of big ones)."""
    rng = np.random.default_rng(0)
    leaves, treedef = pytree.flatten(params)
    got, got_tree = pytree.flatten(grads)
    assert got_tree == treedef
    paths = pytree.leaf_paths(treedef, "params")
    for k, (leaf, g, path) in enumerate(zip(leaves, got, paths)):
        def leaf_loss(value):
            moved = list(leaves)
            moved[k] = value
            return loss(pytree.unflatten(treedef, moved))
        elements = sample_elements(np.shape(leaf), limit, rng)
        want = numeric_grad(leaf_loss, [leaf], 0, elements=elements)
        picked = np.array([np.asarray(g)[i] for i in elements])
        expected = np.array([want[i] for i in elements])
        np.testing.assert_allclose(picked, expected, rtol=rtol, atol=atol, err_msg=path)


def gpt_loss(params, tokens, targets):
    logits = nm.gpt2_logits(params, tokens, 2)
    shifted = logits - np.max(logits, axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))
    return -np.mean(log_probs[np.arange(len(tokens)), targets])


def test_gpt2_gradients_match_finite_differences_leaf_by_leaf():
    params = nm.gpt2_params(np.random.default_rng(0), vocab=11, ctx=6, width=8, layers=1)
    tokens, targets = (3, 1, 4, 1, 5), np.array([1, 4, 1, 5, 9])
    grads = tessel.grad(gpt_loss)(params, tokens, targets)
    assert_grads_match_differences(lambda p: gpt_loss(p, tokens, targets), params, grads)
    jitted = tessel.jit(tessel.grad(gpt_loss), static_argnums=(1,), backend="interpreter")(
        params, tokens, targets)
    for a, b in zip(pytree.flatten(jitted)[0], pytree.flatten(grads)[0]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def lstm_loss(params, xs, h, c, w_h, w_c):
    h, c = nm.lstm_run(params, xs, h, c)
    return np.sum(h * w_h) + np.sum(c * w_c)


def test_lstm_gradients_match_finite_differences_leaf_by_leaf():
    rng = np.random.default_rng(1)
    params = nm.lstm_params(rng, n_in=3, n_hidden=4)
    xs, h, c = rng.standard_normal((5, 2, 3)), rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
    w_h, w_c = rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
    grads = tessel.grad(lstm_loss, argnums=(0, 1, 2, 3))(params, xs, h, c, w_h, w_c)
    everything = (params, xs, h, c)
    assert_grads_match_differences(lambda t: lstm_loss(*t, w_h, w_c), everything, grads)


# ----------------------------------------------------------------------------- MLP training

def mlp_forward_backward(params, x, labels):
    """Softmax cross-entropy MLP with its backward written out by hand."""
    z1 = x @ params["w1"] + params["b1"]
    h = np.maximum(z1, 0)
    logits = h @ params["w2"] + params["b2"]
    shifted = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    n = x.shape[0]
    loss = -np.log(probs[np.arange(n), labels]).mean()
    d_logits = probs.copy()
    d_logits[np.arange(n), labels] -= 1
    d_logits /= n
    d_h = d_logits @ params["w2"].T
    d_z1 = d_h * (z1 > 0)
    grads = {"w2": h.T @ d_logits, "b2": d_logits.sum(0), "w1": x.T @ d_z1, "b1": d_z1.sum(0)}
    return loss, grads


def mlp_loss(params, x, labels):
    h = np.maximum(x @ params["w1"] + params["b1"], 0)
    logits = h @ params["w2"] + params["b2"]
    log_probs = tessel.nn.log_softmax(logits, axis=1)
    return -np.mean(log_probs[np.arange(x.shape[0]), labels])


def test_mlp_training_matches_a_hand_written_numpy_backward_over_20_steps(backend="interpreter"):
    rng = np.random.default_rng(2)
    params = nm.mlp_params(rng, sizes=(10, 16, 4))
    params["b1"] = rng.standard_normal(16) * 0.1
    x, labels = rng.standard_normal((32, 10)), rng.integers(0, 4, 32)
    opt = tessel.optim.sgd(0.5)

    @tessel.jit(backend=backend)
    def step(params, state, x, labels):
        loss, grads = tessel.value_and_grad(mlp_loss)(params, x, labels)
        params, state = opt.update(grads, state, params)
        return params, state, loss

    reference = {k: v.copy() for k, v in params.items()}
    state = opt.init(params)
    losses = []
    for _ in range(20):
        ref_loss, ref_grads = mlp_forward_backward(reference, x, labels)
        reference = {k: reference[k] - 0.5 * ref_grads[k] for k in reference}
        params, state, loss = step(params, state, x, labels)
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-10)
        losses.append(float(loss))
    for k in reference:
        np.testing.assert_allclose(params[k], reference[k], rtol=1e-9, atol=1e-12, err_msg=k)
    assert losses[-1] < 0.5 * losses[0]


def lstm_scan_loss(params, xs, h, c, w_h, w_c):
    """The same LSTM as a tessel.lax.scan (one traced step, a reversed loop in the VJP)."""
    import tessel.numpy as tnp

    def step(carry, x):
        h, c = carry
        z = x @ params["wx"] + h @ params["wh"] + params["b"]
        i, f, g, o = tnp.split(z, 4, axis=-1)
        c = tessel.nn.sigmoid(f) * c + tessel.nn.sigmoid(i) * tnp.tanh(g)
        h = tessel.nn.sigmoid(o) * tnp.tanh(c)
        return (h, c), h
    (h, c), hs = tessel.lax.scan(step, (h, c), xs)
    return tnp.sum(h * w_h) + tnp.sum(c * w_c) + 0.1 * tnp.sum(hs ** 2)


def lstm_scan_reference(params, xs, h, c, w_h, w_c):
    hs = []
    for t in range(xs.shape[0]):
        h, c = nm.lstm_run(params, xs[t:t + 1], h, c)
        hs.append(h)
    return np.sum(h * w_h) + np.sum(c * w_c) + 0.1 * np.sum(np.array(hs) ** 2)


def test_lstm_as_a_scan_gradients_match_finite_differences_and_jit():
    rng = np.random.default_rng(3)
    params = nm.lstm_params(rng, n_in=3, n_hidden=4)
    xs, h, c = rng.standard_normal((6, 2, 3)), rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
    w_h, w_c = rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
    args = (params, xs, h, c, w_h, w_c)
    grads = tessel.grad(lstm_scan_loss, argnums=(0, 1, 2, 3))(*args)
    assert_grads_match_differences(lambda t: lstm_scan_reference(*t, w_h, w_c), (params, xs, h, c), grads)
    jitted = tessel.jit(tessel.grad(lstm_scan_loss, argnums=(0, 1, 2, 3)))(*args)
    for a, b in zip(pytree.flatten(jitted)[0], pytree.flatten(grads)[0]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
