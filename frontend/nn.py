"""`tessel.nn`: neural-network functions built from `tessel.numpy` and a few ops.

Every function is traceable (works eagerly and under `jit`) and numerically stable:
softmax, log_softmax and logsumexp subtract the maximum along the reduced axes first,
and a maximum that is not finite (a row of all -inf, or +inf) is replaced by 0 so the
shift itself never computes inf - inf = NaN: logsumexp of a row of all -inf is -inf.
softmax and log_softmax of such a row are NaN, as in JAX: there is no distribution to
normalize (0 / 0). Integer inputs are promoted to float32 (as JAX does).

Pooling helpers use flax's layout: `(batch, *spatial, features)`, the window over the
spatial dims.
"""
from __future__ import annotations

import math

import numpy as np

from ..compiler import dtypes
from . import core, lax_ops
from .errors import trace_error


def _tnp():
    from . import numpy_api
    return numpy_api


def _float(x) -> core.Tracer:
    x = core.lift(x)
    return x if x.tdtype.is_float else lax_ops.convert_element_type(x, dtypes.f32)


def _unary(opcode: str, x: core.Tracer) -> core.Tracer:
    return core.current_context().emit(opcode, [x])


# ----------------------------------------------------------------------------- activations

@core.traceable
def relu(x):
    return _tnp().maximum(x, 0)


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


@core.traceable
def gelu(x, approximate: bool = True):
    """GELU. approximate=True (default, as JAX): the tanh form
    0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); False: the exact 0.5 x (1 + erf(x / sqrt 2))."""
    tnp, x = _tnp(), _float(x)
    if approximate:
        inner = _SQRT_2_OVER_PI * (x + 0.044715 * (x * x * x))
        return 0.5 * x * (1.0 + tnp.tanh(inner))
    return 0.5 * x * (1.0 + _unary("erf", x * (1.0 / math.sqrt(2.0))))


@core.traceable
def sigmoid(x):
    return _unary("logistic", _float(x))


# ----------------------------------------------------------------------------- normalizers

def _stable_max(x: core.Tracer, axis) -> core.Tracer:
    """max over `axis` (dims kept), with non-finite maxima replaced by 0."""
    tnp = _tnp()
    m = tnp.max(x, axis=axis, keepdims=True)
    return tnp.where(tnp.isfinite(m), m, 0.0)


@core.traceable
def softmax(x, axis=-1):
    tnp, x = _tnp(), _float(x)
    e = tnp.exp(x - _stable_max(x, axis))
    return e / tnp.sum(e, axis=axis, keepdims=True)


@core.traceable
def log_softmax(x, axis=-1):
    tnp, x = _tnp(), _float(x)
    shifted = x - _stable_max(x, axis)
    return shifted - tnp.log(tnp.sum(tnp.exp(shifted), axis=axis, keepdims=True))


@core.traceable
def logsumexp(x, axis=None, keepdims: bool = False):
    """log(sum(exp(x), axis)) without overflow; all -inf gives -inf, not NaN."""
    tnp, x = _tnp(), _float(x)
    m = _stable_max(x, axis)
    total = tnp.sum(tnp.exp(x - m), axis=axis, keepdims=keepdims)
    return tnp.log(total) + tnp.reshape(m, total.shape)


@core.traceable
def layer_norm(x, gamma=None, beta=None, axis=-1, eps: float = 1e-5):
    """(x - mean) / sqrt(var + eps) over `axis` (int or tuple), then * gamma + beta."""
    tnp, x = _tnp(), _float(x)
    centered = x - tnp.mean(x, axis=axis, keepdims=True)
    var = tnp.mean(centered * centered, axis=axis, keepdims=True)
    y = centered * _unary("rsqrt", var + eps)
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return y


@core.traceable
def one_hot(indices, num_classes: int, dtype="float32", axis: int = -1):
    """1 where the new axis equals the index, else 0; out-of-range indices give all 0."""
    tnp, idx = _tnp(), core.lift(indices)
    if not idx.tdtype.is_integer:
        raise trace_error(f"one_hot indices must be integers, got {idx.aval}")
    expanded = tnp.expand_dims(idx, axis)
    shape = [1] * expanded.ndim
    shape[axis] = num_classes
    classes = lax_ops.reshape(lax_ops.iota(idx.tdtype, num_classes), shape)
    return tnp.equal(expanded, classes).astype(dtype)


# ----------------------------------------------------------------------------- pooling

def _window(x: core.Tracer, window_shape, strides, padding):
    """Window attributes over the spatial dims of (batch, *spatial, features)."""
    window = tuple(window_shape)
    strides = tuple(strides) if strides is not None else (1,) * len(window)
    if not isinstance(padding, str):
        padding = ((0, 0),) + tuple(tuple(p) for p in padding) + ((0, 0),)
    return (1,) + window + (1,), (1,) + strides + (1,), padding


def _lowest(dt) -> object:
    return -np.inf if dt.is_float else np.iinfo(dt.storage).min


@core.traceable
def max_pool(x, window_shape, strides=None, padding="VALID"):
    x = core.lift(x)
    window, strides, padding = _window(x, window_shape, strides, padding)
    return lax_ops.reduce_window(x, _lowest(x.tdtype), "max", window, strides, padding)


@core.traceable
def avg_pool(x, window_shape, strides=None, padding="VALID", count_include_pad: bool = True):
    """Window means. count_include_pad=True (flax's default) divides by the window size;
    False divides by the number of real (unpadded) elements in each window."""
    x = _float(x)
    window, strides, padding = _window(x, window_shape, strides, padding)
    total = lax_ops.reduce_window(x, 0.0, "add", window, strides, padding)
    if count_include_pad:
        return total / float(np.prod(window))
    ones = lax_ops.full(x.shape, 1.0, x.tdtype)
    return total / lax_ops.reduce_window(ones, 0.0, "add", window, strides, padding)


__all__ = ["relu", "gelu", "sigmoid", "softmax", "log_softmax", "logsumexp", "layer_norm",
           "one_hot", "max_pool", "avg_pool"]
