"""tessel.optim against closed-form NumPy updates over several steps, eager and jitted."""
import numpy as np
import pytest

import tessel
from tessel import optim

rng = np.random.default_rng(0)


def numpy_sgd(lr):
    def update(g, state, p):
        return p - lr * g, state
    return (lambda p: None), update


def numpy_momentum(lr, beta):
    def update(g, v, p):
        v = beta * v + g
        return p - lr * v, v
    return np.zeros_like, update


def numpy_adam(lr, b1, b2, eps):
    def update(g, state, p):
        t, m, v = state
        t, m, v = t + 1, b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        return p - lr * m_hat / (np.sqrt(v_hat) + eps), (t, m, v)
    return (lambda p: (0, np.zeros_like(p), np.zeros_like(p))), update


CASES = {
    "sgd": (lambda: optim.sgd(0.1), lambda: numpy_sgd(0.1)),
    "momentum": (lambda: optim.momentum(0.05, 0.8), lambda: numpy_momentum(0.05, 0.8)),
    "adam": (lambda: optim.adam(0.01, 0.9, 0.99, 1e-6), lambda: numpy_adam(0.01, 0.9, 0.99, 1e-6)),
}


def run_numpy(make, params, grads_seq):
    init, update = make()
    leaves = {k: v.copy() for k, v in params.items()}
    states = {k: init(v) for k, v in leaves.items()}
    for grads in grads_seq:
        for k in leaves:
            leaves[k], states[k] = update(grads[k], states[k], leaves[k])
    return leaves


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("jitted", [False, True])
def test_optimizer_matches_closed_form(name, jitted):
    make_tessel, make_numpy = CASES[name]
    params = {"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)}
    grads_seq = [{"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)} for _ in range(4)]
    opt = make_tessel()
    update = tessel.jit(opt.update, backend="interpreter") if jitted else opt.update
    p, state = params, opt.init(params)
    for grads in grads_seq:
        p, state = update(grads, state, p)
    want = run_numpy(make_numpy, params, grads_seq)
    for k in params:
        np.testing.assert_allclose(p[k], want[k], rtol=1e-12, err_msg=k)


def test_float32_parameters_stay_float32():
    opt = optim.adam(1e-3)
    p = {"w": np.ones(3, np.float32)}
    p, state = opt.update({"w": np.ones(3, np.float32)}, opt.init(p), p)
    assert p["w"].dtype == np.float32 and state["mu"]["w"].dtype == np.float32


def test_grads_must_match_params_structure():
    opt = optim.sgd(0.1)
    with pytest.raises(ValueError, match="structure of params"):
        opt.update({"w": np.ones(2)}, opt.init({"w": np.ones(2), "b": np.ones(2)}),
                   {"w": np.ones(2), "b": np.ones(2)})
