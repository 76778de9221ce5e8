"""Data movement: parameter, constant, iota, broadcast, reshape, transpose, slices,
concatenate, pad, reverse. (gather and scatter are in gather_scatter.py.)"""
from __future__ import annotations

import numpy as np

from .table import rule


@rule("parameter")
def _parameter(frame, instr):
    return frame.args[instr.attrs["index"]]


@rule("constant")
def _constant(frame, instr):
    return instr.attrs["value"].array


@rule("iota")
def _iota(frame, instr):
    dims, axis = instr.shape.dims, instr.attrs["iota_dimension"]
    return np.broadcast_to(along(np.arange(dims[axis]), axis, len(dims)), dims)


def along(vector: np.ndarray, axis: int, rank: int) -> np.ndarray:
    """`vector` reshaped to lie along `axis` of a rank-`rank` array (size 1 elsewhere)."""
    shape = [1] * rank
    shape[axis] = vector.size
    return vector.reshape(shape)


@rule("broadcast_in_dim")
def _broadcast_in_dim(frame, instr, x):
    # Operand dim i becomes result dim bdims[i]; the bdims need not be increasing, so
    # first put the operand's dims in result order, then insert the new size-1 dims.
    bdims = instr.attrs["broadcast_dimensions"]
    order = sorted(range(x.ndim), key=lambda i: bdims[i])
    shape = [1] * len(instr.shape.dims)
    for i in order:
        shape[bdims[i]] = x.shape[i]
    return np.broadcast_to(np.transpose(x, order).reshape(shape), instr.shape.dims)


@rule("reshape")
def _reshape(frame, instr, x):
    return x.reshape(instr.shape.dims)              # row-major


@rule("transpose")
def _transpose(frame, instr, x):
    return np.transpose(x, instr.attrs["permutation"])   # result dim i = operand dim perm[i]


@rule("slice")
def _slice(frame, instr, x):
    a = instr.attrs
    strides = a["strides"] or (1,) * x.ndim
    return x[tuple(slice(s, l, st) for s, l, st in zip(a["start_indices"], a["limit_indices"], strides))]


def clamped_starts(starts, operand_dims, window_dims) -> list[int]:
    """XLA clamps dynamic start indices so that the whole window lies in the operand."""
    return [min(max(int(s), 0), d - w) for s, d, w in zip(starts, operand_dims, window_dims)]


@rule("dynamic_slice")
def _dynamic_slice(frame, instr, x, *starts):
    sizes = instr.attrs["slice_sizes"]
    begin = clamped_starts(starts, x.shape, sizes)
    return x[tuple(slice(b, b + n) for b, n in zip(begin, sizes))]


@rule("dynamic_update_slice")
def _dynamic_update_slice(frame, instr, x, update, *starts):
    begin = clamped_starts(starts, x.shape, update.shape)
    out = x.copy()
    out[tuple(slice(b, b + n) for b, n in zip(begin, update.shape))] = update
    return out


@rule("concatenate")
def _concatenate(frame, instr, *xs):
    return np.concatenate(xs, axis=instr.attrs["dimension"])


@rule("pad")
def _pad(frame, instr, x, value):
    a = instr.attrs
    interior = a["interior_padding"] or (0,) * x.ndim
    return pad(x, value, a["edge_padding_low"], a["edge_padding_high"], interior)


def pad(x: np.ndarray, value, low, high, interior) -> np.ndarray:
    """XLA pad: `interior` values between neighbours, then `low`/`high` at the edges;
    a negative edge padding removes elements instead. Also dilates (interior = d - 1)."""
    spread = [n + max(n - 1, 0) * k for n, k in zip(x.shape, interior)]
    full = [max(lo, 0) + n + max(hi, 0) for lo, n, hi in zip(low, spread, high)]
    out = np.full(full, value, dtype=x.dtype)
    out[tuple(slice(max(lo, 0), max(lo, 0) + n, k + 1)
              for lo, n, k in zip(low, spread, interior))] = x
    return out[tuple(slice(-min(lo, 0), size + min(hi, 0))
                     for lo, hi, size in zip(low, high, full))]


@rule("reverse")
def _reverse(frame, instr, x):
    dims = instr.attrs["dimensions"]
    return np.flip(x, axis=tuple(dims)) if dims else x
