"""tessel.optim: gradient-descent optimizers as pure functions over pytrees.

    opt = tessel.optim.adam(1e-3)
    state = opt.init(params)
    params, state = opt.update(grads, state, params)

`init` and `update` are pure (no hidden state), so a whole training step
`grad + update` can be jitted as one program. Outside a trace each call runs eagerly as
one interpreter program. Learning rates and betas are Python numbers (weak scalars:
float32 parameters stay float32).

Update rules (t counts steps from 1):
- sgd:      p <- p - lr * g
- momentum: v <- beta * v + g;  p <- p - lr * v            (PyTorch / optax 'trace' form)
- adam:     m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
            p <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from ..runtime import pytree
from . import core
from . import numpy_api as tnp


class Optimizer(NamedTuple):
    """init(params) -> state;  update(grads, state, params) -> (new_params, new_state)."""
    init: Callable
    update: Callable


def _check_same_structure(grads, params, name: str) -> None:
    (g_leaves, g_tree), (p_leaves, p_tree) = pytree.flatten(grads), pytree.flatten(params)
    problems = pytree.structure_diff(p_tree, g_tree, "grads")
    if problems:
        raise ValueError(f"{name}.update: grads must have the structure of params: "
                         + "; ".join(problems))
    paths = pytree.leaf_paths(p_tree, "params")
    problems = [f"{path}: param shape {list(np.shape(p))}, grad shape {list(np.shape(g))}"
                for path, p, g in zip(paths, p_leaves, g_leaves) if np.shape(p) != np.shape(g)]
    if problems:
        raise ValueError(f"{name}.update: each grad must have its param's shape: " + "; ".join(problems))


def _check_hyperparameters(name: str, **values) -> None:
    """Hyperparameters are real Python/NumPy numbers (baked into the traced program)."""
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not np.isfinite(value):
            raise TypeError(f"tessel.optim.{name}: {key} must be a finite real number, "
                            f"given {type(value).__name__} {value!r:.40}")


def _zeros_like_tree(params):
    return pytree.tree_map(lambda p: tnp.zeros_like(p), params)


def sgd(lr: float) -> Optimizer:
    _check_hyperparameters("sgd", lr=lr)

    def init(params):
        return ()

    @core.traceable
    def update(grads, state, params):
        _check_same_structure(grads, params, "sgd")
        return pytree.tree_map(lambda p, g: p - lr * g, params, grads), state

    return Optimizer(init, update)


def momentum(lr: float, beta: float = 0.9) -> Optimizer:
    _check_hyperparameters("momentum", lr=lr, beta=beta)

    @core.traceable
    def init(params):
        return {"velocity": _zeros_like_tree(params)}

    @core.traceable
    def update(grads, state, params):
        _check_same_structure(grads, params, "momentum")
        velocity = pytree.tree_map(lambda v, g: beta * v + g, state["velocity"], grads)
        new_params = pytree.tree_map(lambda p, v: p - lr * v, params, velocity)
        return new_params, {"velocity": velocity}

    return Optimizer(init, update)


def adam(lr: float = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Optimizer:
    _check_hyperparameters("adam", lr=lr, b1=b1, b2=b2, eps=eps)

    @core.traceable
    def init(params):
        return {"step": tnp.zeros((), dtype=np.int32), "mu": _zeros_like_tree(params),
                "nu": _zeros_like_tree(params)}

    @core.traceable
    def update(grads, state, params):
        _check_same_structure(grads, params, "adam")
        step = state["step"] + 1
        mu = pytree.tree_map(lambda m, g: b1 * m + (1 - b1) * g, state["mu"], grads)
        nu = pytree.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, state["nu"], grads)

        def apply(p, m, v):
            t = tnp.astype(step, p.dtype)
            m_hat = m / (1 - tnp.power(tnp.asarray(b1, dtype=p.dtype), t))
            v_hat = v / (1 - tnp.power(tnp.asarray(b2, dtype=p.dtype), t))
            return p - lr * m_hat / (tnp.sqrt(v_hat) + eps)

        new_params = pytree.tree_map(apply, params, mu, nu)
        return new_params, {"step": step, "mu": mu, "nu": nu}

    return Optimizer(init, update)


__all__ = ["Optimizer", "adam", "momentum", "sgd"]
