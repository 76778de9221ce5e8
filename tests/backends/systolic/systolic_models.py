"""The acceptance models of the systolic backend, written once in plain NumPy style.

Each model takes an `ops` namespace for the operations whose numerics differ between
the machine and NumPy: `mm` (matrix product), `conv` (NHWC x HWIO, SAME, stride 1) and
`max_pool` (2x2, stride 2). Traced through tessel.jit they are the tracers' own ops
(`TRACED`); `F32` computes them in float32 NumPy (the interpreter's semantics) and
`BF16` is the machine's numeric model: bf16-rounded operands, fp32 accumulation
(tessel.backends.systolic.reference). Everything else is the same NumPy code.
"""
from __future__ import annotations

import operator
from types import SimpleNamespace

import numpy as np

import tessel
from tessel.backends.systolic import reference as ref

F = np.float32


# ----------------------------------------------------------------------------- ops

def _im2col(x, kh, kw):
    b, h, w, c = x.shape
    padded = np.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    taps = [padded[:, i:i + h, j:j + w, :] for i in range(kh) for j in range(kw)]
    return np.concatenate(taps, axis=-1).reshape(b * h * w, kh * kw * c)


def _numpy_conv(mm):
    def conv(x, k):
        kh, kw, c, o = k.shape
        b, h, w, _ = x.shape
        return mm(_im2col(x, kh, kw), k.reshape(kh * kw * c, o)).reshape(b, h, w, o)
    return conv


def _numpy_max_pool(x):
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def _traced_conv(x, k):
    return tessel.lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                           dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _f32_mm(a, b):
    return np.matmul(a, b, dtype=F)


TRACED = SimpleNamespace(mm=operator.matmul, conv=_traced_conv,
                         max_pool=lambda x: tessel.nn.max_pool(x, (2, 2), (2, 2)))
F32 = SimpleNamespace(mm=_f32_mm, conv=_numpy_conv(_f32_mm), max_pool=_numpy_max_pool)
BF16 = SimpleNamespace(mm=ref.bf16_dot, conv=_numpy_conv(ref.bf16_dot), max_pool=_numpy_max_pool)


# ----------------------------------------------------------------------------- layers

def softmax(x):
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def layer_norm(x, gamma, beta, eps=F(1e-5)):
    mu = np.mean(x, axis=-1, keepdims=True)
    var = np.mean((x - mu) * (x - mu), axis=-1, keepdims=True)
    return gamma * (x - mu) / np.sqrt(var + eps) + beta


def gelu(x):
    return F(0.5) * x * (F(1) + np.tanh(F(np.sqrt(2 / np.pi)) * (x + F(0.044715) * x * x * x)))


# ----------------------------------------------------------------------------- models

def mlp(params, x, ops):
    """784-512-512-10 style: dense+relu, dense+relu, dense, softmax."""
    h = x
    for w, b in params[:-1]:
        h = np.maximum(ops.mm(h, w) + b, F(0))
    w, b = params[-1]
    return softmax(ops.mm(h, w) + b)


def mlp_params(rng, sizes=(784, 512, 512, 10)):
    return [((rng.standard_normal((i, o)) / np.sqrt(i)).astype(F), (rng.standard_normal(o) * 0.1).astype(F))
            for i, o in zip(sizes[:-1], sizes[1:])]


def cnn(params, x, ops):
    """conv3x3+relu, max-pool, conv3x3+relu, max-pool, dense, softmax (NHWC)."""
    h = np.maximum(ops.conv(x, params["k1"]) + params["b1"], F(0))
    h = ops.max_pool(h)
    h = np.maximum(ops.conv(h, params["k2"]) + params["b2"], F(0))
    h = ops.max_pool(h)
    h = h.reshape(h.shape[0], -1)
    return softmax(ops.mm(h, params["w"]) + params["b"])


def cnn_params(rng, size=28, channels=(1, 8, 16), classes=10):
    c0, c1, c2 = channels
    flat = (size // 4) * (size // 4) * c2
    return {"k1": (rng.standard_normal((3, 3, c0, c1)) / np.sqrt(9 * c0)).astype(F),
            "b1": (rng.standard_normal(c1) * 0.1).astype(F),
            "k2": (rng.standard_normal((3, 3, c1, c2)) / np.sqrt(9 * c1)).astype(F),
            "b2": (rng.standard_normal(c2) * 0.1).astype(F),
            "w": (rng.standard_normal((flat, classes)) / np.sqrt(flat)).astype(F),
            "b": (rng.standard_normal(classes) * 0.1).astype(F)}


def gpt_block(p, x, ops, heads):
    """A GPT-2 block: pre-norm causal self-attention and MLP, residual adds."""
    seq, width = x.shape
    mask = ((F(1) - np.tri(seq, dtype=F)) * F(-1e9)).astype(F)
    h = layer_norm(x, p["ln1_g"], p["ln1_b"])
    qkv = ops.mm(h, p["w_qkv"]) + p["b_qkv"]
    q, k, v = qkv[:, :width], qkv[:, width:2 * width], qkv[:, 2 * width:]
    d = width // heads
    outs = []
    for i in range(heads):
        qh, kh, vh = q[:, i * d:(i + 1) * d], k[:, i * d:(i + 1) * d], v[:, i * d:(i + 1) * d]
        scores = ops.mm(qh, kh.T) / F(np.sqrt(d)) + mask
        outs.append(ops.mm(softmax(scores), vh))
    x = x + ops.mm(np.concatenate(outs, axis=-1), p["w_out"]) + p["b_out"]
    h = gelu(ops.mm(layer_norm(x, p["ln2_g"], p["ln2_b"]), p["w_fc"]) + p["b_fc"])
    return x + ops.mm(h, p["w_proj"]) + p["b_proj"]


def gpt_params(rng, width=512):
    def normal(*shape, scale):
        return (rng.standard_normal(shape) * scale).astype(F)
    return {"ln1_g": 1 + normal(width, scale=0.1), "ln1_b": normal(width, scale=0.1),
            "ln2_g": 1 + normal(width, scale=0.1), "ln2_b": normal(width, scale=0.1),
            "w_qkv": normal(width, 3 * width, scale=width ** -0.5), "b_qkv": normal(3 * width, scale=0.1),
            "w_out": normal(width, width, scale=width ** -0.5), "b_out": normal(width, scale=0.1),
            "w_fc": normal(width, 4 * width, scale=width ** -0.5), "b_fc": normal(4 * width, scale=0.1),
            "w_proj": normal(4 * width, width, scale=(4 * width) ** -0.5), "b_proj": normal(width, scale=0.1)}


# ----------------------------------------------------------------------------- the sets

def traced(model, **static):
    """`model` with the traced ops bound, for tessel.jit."""
    def fn(params, x):
        return model(params, x, TRACED, **static)
    fn.__name__ = model.__name__
    return fn


def reference(model, ops, **static):
    def fn(params, x):
        return model(params, x, ops, **static)
    return fn


def small_models(rng):
    """name -> (model, static kwargs, params, input, matrix-unit layers on the longest path)."""
    return {
        "mlp": (mlp, {}, mlp_params(rng, (64, 48, 40, 10)), rng.standard_normal((24, 64)).astype(F), 3),
        "cnn": (cnn, {}, cnn_params(rng, size=12, channels=(2, 4, 8)),
                rng.standard_normal((3, 12, 12, 2)).astype(F), 3),
        "gpt_block": (gpt_block, {"heads": 4}, gpt_params(rng, width=32),
                      rng.standard_normal((16, 32)).astype(F), 6),
    }


def bench_models(rng):
    """The sizes the acceptance note reports (bench/systolic_models.py)."""
    return {
        "mlp 784-512-512-10 batch 256": (mlp, {}, mlp_params(rng), rng.standard_normal((256, 784)).astype(F), 3),
        "cnn 28x28 batch 64": (cnn, {}, cnn_params(rng, size=28, channels=(1, 16, 32)),
                               rng.standard_normal((64, 28, 28, 1)).astype(F), 3),
        "gpt block seq 256 width 512 heads 8": (gpt_block, {"heads": 8}, gpt_params(rng, width=512),
                                                rng.standard_normal((256, 512)).astype(F), 6),
    }
