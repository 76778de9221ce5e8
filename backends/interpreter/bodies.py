"""Applying nested computations (reducers, comparators, scatter combiners) to arrays.

Nested scalar computations are applied the general way -- by evaluating them -- but
many elements at a time: a body made only of elementwise ops is evaluated once on whole
arrays (`apply`). Bodies that are exactly a known NumPy ufunc of their two parameters
(`lambda a, b: add(a, b)`, ...) are recognized so reductions and scatters can use the
ufunc's own vectorized `reduce` / `at` (`fast_ufunc`).
"""
from __future__ import annotations

import numpy as np

from ...compiler import dtypes, ops
from ...compiler.ir import Computation, Instruction

REDUCER_UFUNCS = {
    "add": np.add, "multiply": np.multiply, "maximum": np.maximum, "minimum": np.minimum,
    "and": np.bitwise_and, "or": np.bitwise_or, "xor": np.bitwise_xor,
}
_STRUCTURAL = ("parameter", "constant", "tuple", "get_tuple_element")


# ----------------------------------------------------------------------------- recognizing bodies

def _is_parameter(instr: Instruction, index: int) -> bool:
    return instr.opcode == "parameter" and instr.attrs["index"] == index


def binary_opcode(comp: Computation) -> str | None:
    """The opcode of `comp` when it is `(a, b) -> op(a, b)` (or `op(b, a)`) for a
    commutative op of REDUCER_UFUNCS, else None."""
    root = comp.root
    if len(comp.parameters) != 2 or root.opcode not in REDUCER_UFUNCS:
        return None
    params = {instr.attrs["index"] for instr in root.operands if instr.opcode == "parameter"}
    return root.opcode if params == {0, 1} else None


def fast_ufunc(comp: Computation, dtype: dtypes.DType, ctx):
    """The NumPy ufunc equivalent to reducer `comp` on `dtype` values, or None.

    add and multiply of f16/bf16 are left to the general path: NumPy accumulates f16
    sums in float32 and bf16 lives in float32 arrays, so neither would round every
    partial result to the type the way the IR's per-op semantics do.
    """
    if not ctx.fast_paths:
        return None
    opcode = binary_opcode(comp)
    if opcode in ("add", "multiply") and dtype in (dtypes.f16, dtypes.bf16):
        return None
    return REDUCER_UFUNCS.get(opcode)


def returns_second_parameter(comp: Computation) -> bool:
    """`(old, new) -> new`: a scatter that overwrites."""
    return len(comp.parameters) == 2 and _is_parameter(comp.root, 1)


def compare_of_parameters(comp: Computation) -> str | None:
    """'LT' for `(a, b, ...) -> compare(a, b, LT)` on parameters 0 and 1, similarly for the
    other directions; a compare of (b, a) reports the mirrored direction. Else None."""
    root = comp.root
    if root.opcode != "compare" or len(root.operands) != 2:
        return None
    lhs, rhs = root.operands
    direction = root.attrs["direction"]
    if _is_parameter(lhs, 0) and _is_parameter(rhs, 1):
        return direction
    if _is_parameter(lhs, 1) and _is_parameter(rhs, 0):
        return {"LT": "GT", "GT": "LT", "LE": "GE", "GE": "LE"}.get(direction, direction)
    return None


def is_scalar_elementwise(comp: Computation) -> bool:
    """True when every instruction is elementwise (or structural) on scalars: then the
    computation means the same applied elementwise to arrays of any shape."""
    for instr in comp.instructions:
        if instr.opcode not in _STRUCTURAL and not ops.OPS[instr.opcode].elementwise:
            return False
        if any(leaf.rank != 0 for leaf in instr.shape.leaves()):
            return False
    return True


# ----------------------------------------------------------------------------- applying bodies

def apply(frame, comp: Computation, args) -> tuple:
    """`comp` applied elementwise to broadcast-compatible arrays; one array per result."""
    args = np.broadcast_arrays(*[np.asarray(a) for a in args])
    shape = args[0].shape if args else ()
    if is_scalar_elementwise(comp):
        out = frame.call(comp, args, check_shapes=False)
        leaves = out if isinstance(out, tuple) else (out,)
        return tuple(np.broadcast_to(leaf, shape) for leaf in leaves)
    results = [np.empty(shape, leaf.dtype.storage) for leaf in comp.root.shape.leaves()]
    for index in np.ndindex(shape):                 # one evaluation per element
        out = frame.call(comp, [np.asarray(a[index]) for a in args])
        for array, value in zip(results, out if isinstance(out, tuple) else (out,)):
            array[index] = value
    return tuple(results)


def tree_reduce(frame, comp: Computation, columns: list[np.ndarray], inits: list[np.ndarray]) -> list[np.ndarray]:
    """Reduce each row of the (M, K) arrays `columns` with reducer `comp`, all M rows at once.

    The K elements are combined pairwise, neighbours first (a balanced tree that keeps
    left operands left), so K elements take log2(K) vectorized steps; the init value is
    combined last, as the accumulator. Every partial result is stored in the reducer's
    type, so f16/bf16 sums round at every step like the IR says.
    """
    while columns[0].shape[1] > 1:
        half = columns[0].shape[1] // 2
        left = [c[:, 0:2 * half:2] for c in columns]
        right = [c[:, 1:2 * half:2] for c in columns]
        pairs = apply(frame, comp, left + right)
        columns = [np.concatenate([p, c[:, 2 * half:]], axis=1) for p, c in zip(pairs, columns)]
    rows = columns[0].shape[0]
    acc = [np.full(rows, init, dtype=init.dtype) for init in inits]
    if columns[0].shape[1] == 1:
        acc = list(apply(frame, comp, acc + [c[:, 0] for c in columns]))
    return acc


def combine_at(frame, comp: Computation, out: np.ndarray, targets: np.ndarray, values: np.ndarray) -> None:
    """out[t] = comp(out[t], v) for each (t, v) in order (flat `out`, in place).

    Repeated targets are combined one after another in the given order. The general path
    runs in rounds: round r applies every value that is the r-th one for its target, so
    each round touches distinct elements and is one vectorized `apply`.
    """
    if frame.ctx.fast_paths and returns_second_parameter(comp):
        last = len(targets) - 1 - np.unique(targets[::-1], return_index=True)[1]
        out[targets[last]] = values[last]           # the last write wins
        return
    ufunc = fast_ufunc(comp, comp.parameters[0].shape.dtype, frame.ctx)
    if ufunc is not None:
        ufunc.at(out, targets, values)              # unbuffered: repeats apply in order
        return
    rank = occurrence_rank(targets)
    for r in range(int(rank.max(initial=-1)) + 1):
        chosen = rank == r
        t = targets[chosen]
        out[t] = apply(frame, comp, [out[t], values[chosen]])[0]


def occurrence_rank(targets: np.ndarray) -> np.ndarray:
    """For each position, how many earlier positions have the same target."""
    order = np.argsort(targets, kind="stable")
    sorted_targets = targets[order]
    starts = np.r_[True, sorted_targets[1:] != sorted_targets[:-1]] if len(targets) else np.zeros(0, bool)
    run_start = np.maximum.accumulate(np.where(starts, np.arange(len(targets)), 0))
    rank = np.empty(len(targets), dtype=np.int64)
    rank[order] = np.arange(len(targets)) - run_start
    return rank
