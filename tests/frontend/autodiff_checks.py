"""Shared helpers of the autodiff tests: central finite differences in float64."""
from __future__ import annotations

import numpy as np

import tessel
from tessel.runtime import pytree


def projected(f, seed: int = 0):
    """x -> sum(f(x) * w) for a fixed random w of f's output shape: a scalar loss whose
    gradient exercises every output element with a different weight."""
    weights = {}

    def loss(*args):
        out = f(*args)
        shape = np.shape(out) if not hasattr(out, "aval") else out.shape
        if shape not in weights:
            weights[shape] = np.random.default_rng(seed).standard_normal(shape)
        return (out * weights[shape]).sum()
    return loss


def numeric_grad(loss, args, argnum: int, eps: float = 1e-6, elements=None):
    """Central differences of the scalar `loss(*args)` w.r.t. args[argnum]: every element,
    or only those listed in `elements` (the others stay 0)."""
    x = np.array(args[argnum], dtype=np.float64)
    g = np.zeros_like(x)
    for i in (np.ndindex(x.shape) if elements is None else elements):
        def at(delta):
            moved = x.copy()
            moved[i] += delta
            new = list(args)
            new[argnum] = moved
            return float(loss(*new))
        g[i] = (at(eps) - at(-eps)) / (2 * eps)
    return g


def check_grad(f, *args, argnums=None, rtol=1e-6, atol=1e-7, seed=0):
    """tessel.grad of a random projection of f matches central differences, for every
    float argument (or those in argnums). f is run through tessel.jit (interpreter) for
    the differences, so f may use tessel.numpy or NumPy calls."""
    loss = projected(f, seed)
    nums = argnums if argnums is not None else tuple(
        i for i, a in enumerate(args) if np.issubdtype(np.asarray(a).dtype, np.floating))
    grads = tessel.grad(loss, argnums=tuple(nums))(*args)
    forward = tessel.jit(loss, backend="interpreter")
    for g, i in zip(grads, nums):
        want = numeric_grad(forward, args, i)
        assert np.shape(g) == np.shape(args[i]), (np.shape(g), np.shape(args[i]))
        np.testing.assert_allclose(g, want, rtol=rtol, atol=atol, err_msg=f"argument {i}")
    return grads


def tree_directional_fd(loss, tree, eps=1e-6, seed=0):
    """For each leaf of `tree`: the derivative of loss along a random direction (by central
    differences), as a list in leaf order."""
    leaves, treedef = pytree.flatten(tree)
    rng = np.random.default_rng(seed)
    out = []
    for k, leaf in enumerate(leaves):
        v = rng.standard_normal(np.shape(leaf))

        def at(sign):
            moved = list(leaves)
            moved[k] = leaf + sign * eps * v
            return float(loss(pytree.unflatten(treedef, moved)))
        out.append(((at(1) - at(-1)) / (2 * eps), v))
    return out
