"""reduce, reduce_window, select_and_scatter and sort.

Each has a general path that evaluates its nested computation (vectorized across rows
with `bodies.apply`, so variadic reducers such as argmax work) and, when the body is a
plain ufunc or compare of its parameters, a NumPy shortcut with the same result.
"""
from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ...compiler.ops import window_params
from .bodies import apply, combine_at, compare_of_parameters, fast_ufunc, tree_reduce
from .data import pad
from .table import rule


def _single_or_tuple(values):
    return values[0] if len(values) == 1 else tuple(values)


# ----------------------------------------------------------------------------- reduce

@rule("reduce")
def _reduce(frame, instr, *operands):
    half = len(operands) // 2
    inputs, inits = operands[:half], operands[half:]
    dims = tuple(instr.attrs["dimensions"])
    comp = instr.attrs["to_apply"]
    kept = [d for d in range(inputs[0].ndim) if d not in dims]
    count = math.prod(inputs[0].shape[d] for d in dims)
    ufunc = fast_ufunc(comp, comp.parameters[0].shape.dtype, frame.ctx) if half == 1 else None
    if ufunc is not None and count > 0:
        return ufunc(inits[0], ufunc.reduce(inputs[0], axis=dims, dtype=inputs[0].dtype))
    # Rows of the reduced elements, one row per result element.
    out_shape = [inputs[0].shape[d] for d in kept]
    rows = [np.transpose(x, kept + list(dims)).reshape(math.prod(out_shape), count) for x in inputs]
    results = tree_reduce(frame, comp, rows, list(inits))
    return _single_or_tuple([r.reshape(out_shape) for r in results])


# ----------------------------------------------------------------------------- windows

def windows(x: np.ndarray, window, strides, padding, base_dilation, window_dilation, fill):
    """All windows of `x`: an array out_dims + window_dims, or None when there are none.

    The input is dilated and padded with `fill` first (XLA: base-dilation holes and
    padding hold the init value), then each window takes every window_dilation-th element.
    """
    padded = pad(x, np.asarray(fill, dtype=x.dtype), [lo for lo, _ in padding], [hi for _, hi in padding],
                 [d - 1 for d in base_dilation])
    extent = [(w - 1) * d + 1 for w, d in zip(window, window_dilation)]
    if any(size < e for size, e in zip(padded.shape, extent)):
        return None
    view = sliding_window_view(padded, extent)
    return view[tuple(slice(None, None, s) for s in strides)
                + tuple(slice(None, None, d) for d in window_dilation)]


@rule("reduce_window")
def _reduce_window(frame, instr, *operands):
    half = len(operands) // 2
    inputs, inits = operands[:half], operands[half:]
    comp = instr.attrs["to_apply"]
    window, strides, padding, base, wdil = window_params(instr.attrs, inputs[0].ndim)
    out_dims = (instr.shape.elements[0] if half > 1 else instr.shape).dims
    views = [windows(x, window, strides, padding, base, wdil, init) for x, init in zip(inputs, inits)]
    if views[0] is None or 0 in out_dims:
        return _single_or_tuple([np.full(out_dims, init) for init in inits])
    axes = tuple(range(len(out_dims), 2 * len(out_dims)))
    ufunc = fast_ufunc(comp, comp.parameters[0].shape.dtype, frame.ctx) if half == 1 else None
    if ufunc is not None:
        return ufunc(inits[0], ufunc.reduce(views[0], axis=axes, dtype=inputs[0].dtype))
    rows = [v.reshape(math.prod(out_dims), -1) for v in views]
    results = tree_reduce(frame, comp, rows, list(inits))
    return _single_or_tuple([r.reshape(out_dims) for r in results])


# ----------------------------------------------------------------------------- select_and_scatter

@rule("select_and_scatter")
def _select_and_scatter(frame, instr, operand, source, init):
    """XLA semantics: in each window, `select` scans the in-bounds elements in row-major
    order, keeping the current pick while select(current, candidate) is true; the
    window's source value is then combined with `scatter` into the output (initialized
    to `init`) at the picked position. Padding is never picked."""
    a = instr.attrs
    window, strides, padding, _, _ = window_params(a, operand.ndim)
    ones = (1,) * operand.ndim
    positions = np.arange(operand.size, dtype=np.int64).reshape(operand.shape)
    pos_windows = windows(positions, window, strides, padding, ones, ones, -1)
    out = np.full(operand.size, init, dtype=operand.dtype)
    if pos_windows is None or source.size == 0 or operand.size == 0:
        return out.reshape(operand.shape)
    pos = pos_windows.reshape(source.size, -1)
    vals = operand.reshape(-1)[np.maximum(pos, 0)]
    picked = np.full(source.size, -1, dtype=np.int64)
    best = np.zeros(source.size, dtype=operand.dtype)
    for k in range(pos.shape[1]):
        keep = apply(frame, a["select"], [best, vals[:, k]])[0]
        take = (pos[:, k] >= 0) & ((picked < 0) | ~keep)
        picked = np.where(take, pos[:, k], picked)
        best = np.where(take, vals[:, k], best)
    chosen = picked >= 0
    combine_at(frame, a["scatter"], out, picked[chosen], source.reshape(-1)[chosen])
    return out.reshape(operand.shape)


# ----------------------------------------------------------------------------- sort

@rule("sort")
def _sort(frame, instr, *operands):
    """Sort along `dimension` by the comparator (true when lhs goes before rhs); all
    operands are permuted by the same order. Sorting is always stable."""
    dim, comp = instr.attrs["dimension"], instr.attrs["comparator"]
    moved = [np.moveaxis(x, dim, -1) for x in operands]
    rows = [m.reshape(math.prod(m.shape[:-1]), m.shape[-1]) for m in moved]
    order = _fast_sort_order(frame, comp, rows[0])
    if order is None:
        order = np.array([_row_order(frame, comp, [r[i] for r in rows]) for i in range(rows[0].shape[0])],
                         dtype=np.int64).reshape(rows[0].shape)
    return _single_or_tuple([np.moveaxis(np.take_along_axis(r, order, axis=1).reshape(m.shape), -1, dim)
                             for r, m in zip(rows, moved)])


def _fast_sort_order(frame, comp, keys: np.ndarray):
    """np.argsort for `compare(lhs0, rhs0, LT)` (ascending) or GT (descending).
    NaN placement is unspecified for such comparators (NaN is unordered); here NaNs
    go last when ascending and first when descending."""
    if not frame.ctx.fast_paths:
        return None
    direction = compare_of_parameters(comp)
    if direction == "LT":
        return np.argsort(keys, axis=1, kind="stable")
    if direction == "GT":
        # Stable descending: sort the reversed rows ascending, then reverse back; equal
        # keys come out in their original order.
        width = keys.shape[1]
        return (width - 1 - np.argsort(keys[:, ::-1], axis=1, kind="stable"))[:, ::-1]
    return None


class _Before:
    """A sort key ordering row positions by the comparator (sorted() only asks `<`)."""
    __slots__ = ("index", "less")

    def __init__(self, index, less):
        self.index, self.less = index, less

    def __lt__(self, other):
        return self.less(self.index, other.index)


def _row_order(frame, comp, row: list[np.ndarray]) -> list[int]:
    def less(i, j):
        args = [np.asarray(v) for x in row for v in (x[i], x[j])]
        return bool(frame.call(comp, args))
    return sorted(range(len(row[0])), key=lambda i: _Before(i, less))
