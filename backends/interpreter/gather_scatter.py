"""gather and scatter, with XLA's general dimension numbers.

Both work element by element: for every element of the result (gather) or of the
updates (scatter) compute the operand index it reads or writes -- the start index
picked from `indices` plus the offset inside the window -- then index with NumPy.
"""
from __future__ import annotations

import numpy as np

from .bodies import combine_at
from .data import along
from .table import rule


def index_vectors(indices: np.ndarray, index_vector_dim: int) -> np.ndarray:
    """The start indices as an int64 array batch_shape + (index vector length,)."""
    if index_vector_dim == indices.ndim:            # a scalar index per batch element
        return indices.astype(np.int64)[..., None]
    return np.moveaxis(indices, index_vector_dim, -1).astype(np.int64)


def full_starts(vectors: np.ndarray, dims_map, operand_rank: int) -> np.ndarray:
    """Scatter each index vector's components to the operand dims they index (0 elsewhere)."""
    full = np.zeros(vectors.shape[:-1] + (operand_rank,), dtype=np.int64)
    for component, dim in enumerate(dims_map):
        full[..., dim] = vectors[..., component]
    return full


# ----------------------------------------------------------------------------- gather

@rule("gather")
def _gather(frame, instr, operand, indices):
    a = instr.attrs
    out_dims, offset_dims, sizes = instr.shape.dims, a["offset_dims"], a["slice_sizes"]
    starts = full_starts(index_vectors(indices, a["index_vector_dim"]), a["start_index_map"], operand.ndim)
    # XLA clamps each start so the whole slice lies inside the operand.
    starts = np.clip(starts, 0, np.array(operand.shape, dtype=np.int64) - np.array(sizes, dtype=np.int64))
    window_dims = [d for d in range(operand.ndim) if d not in a["collapsed_slice_dims"]]
    index = []
    for d in range(operand.ndim):
        position = np.expand_dims(starts[..., d], tuple(offset_dims))   # batch dims of the result
        if d in window_dims:
            out_dim = offset_dims[window_dims.index(d)]
            position = position + along(np.arange(sizes[d]), out_dim, len(out_dims))
        index.append(position)
    return np.broadcast_to(operand[tuple(index)], out_dims)


# ----------------------------------------------------------------------------- scatter

@rule("scatter")
def _scatter(frame, instr, operand, indices, updates):
    a = instr.attrs
    window_dims = a["update_window_dims"]
    starts = full_starts(index_vectors(indices, a["index_vector_dim"]),
                         a["scatter_dims_to_operand_dims"], operand.ndim)
    operand_window_dims = [d for d in range(operand.ndim) if d not in a["inserted_window_dims"]]
    window_size = np.ones(operand.ndim, dtype=np.int64)
    for u_dim, o_dim in zip(window_dims, operand_window_dims):
        window_size[o_dim] = updates.shape[u_dim]
    # XLA skips an update window entirely unless all of it lands inside the operand.
    inside = np.all((starts >= 0) & (starts + window_size <= np.array(operand.shape)), axis=-1)
    targets = np.zeros(updates.shape, dtype=np.int64)    # flat operand index of each update
    for d in range(operand.ndim):
        position = np.expand_dims(starts[..., d], tuple(window_dims))
        if d in operand_window_dims:
            u_dim = window_dims[operand_window_dims.index(d)]
            position = position + along(np.arange(updates.shape[u_dim]), u_dim, updates.ndim)
        targets = targets * operand.shape[d] + position
    keep = np.broadcast_to(np.expand_dims(inside, tuple(window_dims)), updates.shape)
    out = operand.copy().reshape(-1)
    combine_at(frame, a["to_apply"], out, targets[keep], updates[keep])   # row-major order
    return out.reshape(operand.shape)
