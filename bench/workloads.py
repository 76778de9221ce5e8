"""The benchmark workloads: one small definition each, in one table (`WORKLOADS`).

Each workload's math is written once against an array namespace `xp` and bound to
NumPy (the reference and the NumPy column), to `jax.numpy` (the jax.jit column) and,
again to NumPy, for tessel: tessel traces the plain NumPy code unmodified.

The GPT-2 block is `tests/models/numpy_models.py`'s (its parameters come from
`gpt2_params`), ported line for line to `xp` with one change: the constants
`np.sqrt(2 / np.pi)` in gelu and `np.sqrt(head_dim)` in attention are Python floats
here. As NumPy scalars they are float64 and, under NumPy 2's promotion rules, turn the
f32 block into float64 math from the first gelu/attention score on (in NumPy and, the
same rules, in tessel), which would time float64 against jax's float32.

NumPy has no convolution, so the conv workload's NumPy column sums nine shifted
matmuls; tessel and jax call their own `lax.conv_general_dilated` with the same
dimension numbers.

Importing this module imports neither jax nor tessel.
"""
from __future__ import annotations

import functools
import importlib
import math
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np


class LazyModule:
    """A module imported on first attribute access (jax is optional)."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr):
        return getattr(importlib.import_module(self._name), attr)


jnp = LazyModule("jax.numpy")
jax_module = LazyModule("jax")
tessel_module = LazyModule("tessel")
jax_lax = LazyModule("jax.lax")
tessel_lax = LazyModule("tessel.lax")


def _numpy_models():
    """tests/models/numpy_models.py, loaded by path (tests/ is not a package)."""
    path = Path(__file__).resolve().parents[1] / "tests" / "models" / "numpy_models.py"
    spec = importlib.util.spec_from_file_location("tessel_bench_numpy_models", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


nm = _numpy_models()


@dataclass(frozen=True)
class Workload:
    name: str                   # the key for --only
    label: str                  # shown in the table; formatted with the sizes
    make_inputs: Callable       # (rng, **size) -> tuple of arguments (arrays, dicts of arrays)
    size: dict                  # the sizes of issue 4
    quick: dict                 # the sizes of --quick
    numpy_fn: Callable | None   # the reference
    jax_fn: Callable | None     # jax.numpy code, run under jax.jit
    tessel_fn: Callable | None  # run under tessel.jit
    flops: Callable | None = None   # (**size) -> floating-point operations per call
    kind: str = "run"           # "run": time per call; "compile": fresh jit, time to first result
    static: Callable | None = None  # (**size) -> keyword arguments baked into the trace

    def sizes(self, quick: bool) -> dict:
        return self.quick if quick else self.size

    def function(self, framework: str, quick: bool) -> Callable | None:
        """The workload's function for 'numpy', 'jax' or 'tessel', static arguments bound."""
        fn = getattr(self, f"{framework}_fn")
        if fn is None or self.static is None:
            return fn
        return functools.partial(fn, **self.static(**self.sizes(quick)))

    def title(self, quick: bool) -> str:
        shown = {k: "-".join(map(str, v)) if isinstance(v, tuple) else v
                 for k, v in self.sizes(quick).items()}
        return self.label.format(**shown)


def same_code(fn) -> dict:
    """numpy_fn, jax_fn, tessel_fn of a function `fn(xp, *args)` written once."""
    return {"numpy_fn": functools.partial(fn, np), "jax_fn": functools.partial(fn, jnp),
            "tessel_fn": functools.partial(fn, np)}


def normal(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


# ----------------------------------------------------------------------------- the math

def sigmoid(xp, x):
    return 1.0 / (1.0 + xp.exp(-x))


def elementwise_chain(xp, x):
    return xp.tanh(0.5 * x + 1.0) * sigmoid(xp, x) + x * x


def matmul(xp, a, b):
    return a @ b


def mlp_forward(xp, params, x):
    h = xp.maximum(x @ params["w1"] + params["b1"], 0.0)
    h = xp.maximum(h @ params["w2"] + params["b2"], 0.0)
    return h @ params["w3"] + params["b3"]


def tiny(xp, x):
    return x * 2.0 + 1.0


# numpy_models' GPT-2 pieces (gelu, softmax, layer_norm, dense, attention, block) on `xp`,
# with Python-float constants (see the module docstring).

def gelu_xp(xp, x):
    return 0.5 * x * (1.0 + xp.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def softmax_xp(xp, x):
    shifted = xp.exp(x - xp.max(x, axis=-1, keepdims=True))
    return shifted / xp.sum(shifted, axis=-1, keepdims=True)


def layer_norm_xp(xp, x, gamma, beta, eps=1e-5):
    mu = xp.mean(x, axis=-1, keepdims=True)
    var = xp.var(x, axis=-1, keepdims=True)
    return gamma * (x - mu) / xp.sqrt(var + eps) + beta


def dense_xp(xp, x, w, b):
    return x @ w + b


def attention_xp(xp, x, qkv, out, n_heads):
    seq = x.shape[0]
    mask = (1.0 - xp.tri(seq, dtype=x.dtype)) * -1e9
    q, k, v = xp.split(dense_xp(xp, x, **qkv), 3, axis=-1)
    heads = []
    for qh, kh, vh in zip(xp.split(q, n_heads, axis=-1), xp.split(k, n_heads, axis=-1),
                          xp.split(v, n_heads, axis=-1)):
        scores = qh @ kh.T / math.sqrt(qh.shape[-1]) + mask
        heads.append(softmax_xp(xp, scores) @ vh)
    return dense_xp(xp, xp.hstack(heads), **out)


def block_xp(xp, x, block, n_heads):
    x = x + attention_xp(xp, layer_norm_xp(xp, x, **block["ln1"]), block["qkv"], block["out"], n_heads)
    h = gelu_xp(xp, dense_xp(xp, layer_norm_xp(xp, x, **block["ln2"]), **block["fc"]))
    return x + dense_xp(xp, h, **block["proj"])


def layer_norm_gelu_xp(xp, x, gamma, beta):
    return gelu_xp(xp, layer_norm_xp(xp, x, gamma, beta))


# The MLP training step: softmax cross-entropy of mlp_forward, its gradient, one SGD
# step. NumPy has no autodiff, so its column is the backward written out by hand; jax
# and tessel differentiate the same loss code (jax.grad / tessel.grad) inside their jit.
TRAIN_LR = 0.01


def mlp_loss_xp(xp, params, x, labels_onehot):
    logits = mlp_forward(xp, params, x)
    shifted = logits - xp.max(logits, axis=1, keepdims=True)
    log_probs = shifted - xp.log(xp.sum(xp.exp(shifted), axis=1, keepdims=True))
    return -xp.mean(xp.sum(labels_onehot * log_probs, axis=1))


def _sgd(params, grads):
    return {k: params[k] - TRAIN_LR * grads[k] for k in params}


def mlp_train_numpy(params, x, labels_onehot):
    """Forward, hand-written backward, SGD: returns (loss, grads, new params)."""
    acts, h = [x], x
    for k in (1, 2):
        h = np.maximum(h @ params[f"w{k}"] + params[f"b{k}"], 0.0)
        acts.append(h)
    logits = h @ params["w3"] + params["b3"]
    shifted = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    loss = -np.mean(np.sum(labels_onehot * np.log(probs), axis=1))
    delta = (probs - labels_onehot) / x.shape[0]
    grads = {}
    for k in (3, 2, 1):
        grads[f"w{k}"], grads[f"b{k}"] = acts[k - 1].T @ delta, delta.sum(0)
        if k > 1:
            delta = (delta @ params[f"w{k}"].T) * (acts[k - 1] > 0)
    return np.float32(loss), grads, _sgd(params, grads)


def mlp_train_autodiff(grad_module, xp, params, x, labels_onehot):
    loss, grads = grad_module.value_and_grad(functools.partial(mlp_loss_xp, xp))(params, x, labels_onehot)
    return loss, grads, _sgd(params, grads)


def mlp_train_inputs(rng, batch, sizes):
    params, x = mlp_inputs(rng, batch, sizes)
    labels = np.eye(sizes[-1], dtype=np.float32)[rng.integers(0, sizes[-1], batch)]
    return params, x, labels


def mlp_train_flops(batch, sizes):
    return 3 * mlp_flops(batch, sizes)     # forward + two GEMMs per layer backward


def conv_numpy(x, w):
    """3x3 'SAME' convolution, NHWC x HWIO -> NHWC, as nine shifted matmuls."""
    n, h, wd, c = x.shape
    kh, kw, _, co = w.shape
    padded = np.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    out = np.zeros((n * h * wd, co), x.dtype)
    for i in range(kh):
        for j in range(kw):
            out += padded[:, i:i + h, j:j + wd, :].reshape(-1, c) @ w[i, j]
    return out.reshape(n, h, wd, co)


def conv_lax(lax, x, w):
    return lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


# ----------------------------------------------------------------------------- inputs

def vector_inputs(rng, n):
    return (normal(rng, n),)


def rows_inputs(rng, rows, cols):
    return (normal(rng, rows, cols),)


def layer_norm_inputs(rng, rows, cols):
    return normal(rng, rows, cols), 1 + normal(rng, cols, scale=0.1), normal(rng, cols, scale=0.1)


def gemm_inputs(rng, n):
    return (rng.uniform(-1, 1, (n, n)).astype(np.float32),
            rng.uniform(-1, 1, (n, n)).astype(np.float32))


def mlp_inputs(rng, batch, sizes):
    params = {}
    for k, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:]), start=1):
        params[f"w{k}"] = normal(rng, fan_in, fan_out, scale=np.sqrt(2.0 / fan_in))
        params[f"b{k}"] = normal(rng, fan_out, scale=0.01)
    return params, normal(rng, batch, sizes[0])


def conv_inputs(rng, batch, hw, cin, cout):
    return normal(rng, batch, hw, hw, cin), normal(rng, 3, 3, cin, cout, scale=np.sqrt(2.0 / (9 * cin)))


def block_inputs(rng, seq, width, heads):
    params = nm.gpt2_params(rng, ctx=seq, width=width, layers=1, dtype=np.float32)
    return normal(rng, seq, width), params["blocks"][0]


# ----------------------------------------------------------------------------- flops

def gemm_flops(n):
    return 2.0 * n ** 3


def mlp_flops(batch, sizes):
    return sum(2.0 * batch * a * b for a, b in zip(sizes, sizes[1:]))


def conv_flops(batch, hw, cin, cout):
    return 2.0 * batch * hw * hw * cin * cout * 9


# ----------------------------------------------------------------------------- the table

MLP_SIZES = (784, 512, 512, 10)
GPT = {"size": {"seq": 256, "width": 512, "heads": 8}, "quick": {"seq": 16, "width": 32, "heads": 4}}


def _mlp(name: str, label: str, kind: str) -> Workload:
    return Workload(name, label, mlp_inputs, {"batch": 256, "sizes": MLP_SIZES},
                    {"batch": 8, "sizes": (784, 64, 64, 10)}, **same_code(mlp_forward),
                    flops=mlp_flops if kind == "run" else None, kind=kind)


def _gemm(n: int) -> Workload:
    return Workload(f"gemm{n}", "f32 GEMM {n}³", gemm_inputs, {"n": n}, {"n": max(8, n // 32)},
                    **same_code(matmul), flops=gemm_flops)


WORKLOADS = [
    Workload("chain", "tanh(0.5x+1)*sigmoid(x)+x*x, {n:_} f32", vector_inputs,
             {"n": 16 * 2 ** 20}, {"n": 1000}, **same_code(elementwise_chain)),
    Workload("layernorm_gelu", "layer norm + gelu {rows}x{cols} f32", layer_norm_inputs,
             {"rows": 4096, "cols": 1024}, {"rows": 8, "cols": 32}, **same_code(layer_norm_gelu_xp)),
    Workload("softmax", "row softmax {rows}x{cols} f32", rows_inputs,
             {"rows": 4096, "cols": 1024}, {"rows": 8, "cols": 32}, **same_code(softmax_xp)),
    _gemm(256),
    _gemm(1024),
    _gemm(2048),
    _mlp("mlp", "MLP fwd {sizes}, batch {batch}", "run"),
    Workload("mlp_train", "MLP train step (grad + SGD) {sizes}, batch {batch}", mlp_train_inputs,
             {"batch": 256, "sizes": MLP_SIZES}, {"batch": 8, "sizes": (784, 64, 64, 10)},
             numpy_fn=mlp_train_numpy, jax_fn=functools.partial(mlp_train_autodiff, jax_module, jnp),
             tessel_fn=functools.partial(mlp_train_autodiff, tessel_module, np),
             flops=mlp_train_flops),
    Workload("conv", "conv 3x3 {cin}->{cout}, {hw}x{hw}, batch {batch}, NHWC", conv_inputs,
             {"batch": 8, "hw": 56, "cin": 64, "cout": 64}, {"batch": 1, "hw": 6, "cin": 4, "cout": 4},
             numpy_fn=conv_numpy, jax_fn=functools.partial(conv_lax, jax_lax),
             tessel_fn=functools.partial(conv_lax, tessel_lax), flops=conv_flops),
    Workload("gpt2_block", "GPT-2 block fwd, seq {seq}, width {width}, {heads} heads", block_inputs,
             GPT["size"], GPT["quick"], **same_code(block_xp),
             static=lambda seq, width, heads: {"n_heads": heads}),
    Workload("dispatch", "dispatch: x*2+1 on {n} f32", vector_inputs, {"n": 4}, {"n": 4},
             **same_code(tiny)),
    _mlp("compile_mlp", "cold compile: MLP {sizes} (fresh jit, to 1st result)", "compile"),
]
