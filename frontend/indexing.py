"""NumPy indexing of traced arrays: `x[index]` and `take`.

An index is lowered in two static steps, NumPy's rules applied at trace time:

1. Basic indexing (ints, slices of any step, `...`, `None`) becomes at most one
   `reverse` (negative steps), one `slice` and one `reshape` (drop integer-indexed dims,
   insert `None` dims).
2. Advanced (integer-array) indexing then becomes ONE `gather` over the sliced array.
   Index arrays may be lists, ranges, NumPy arrays, static boolean masks (turned into
   integer arrays with `np.nonzero`) or traced integer arrays; they broadcast together,
   and the broadcast dims go where NumPy puts them: in place of the indexed dims if the
   advanced indices are adjacent in the index, else at the front. With an advanced index
   present, plain integers count as (0-d) advanced indices, as in NumPy.

Bounds: static indices out of range raise IndexError, like NumPy, naming the user's
line. Traced indices cannot be checked at trace time: negative ones are wrapped once
(`i + n`), and any still out of range are CLAMPED into [0, n - 1] by the gather (XLA's
semantics: a gather never faults and never reads out of bounds). So `x[t]` with t = n + 5
returns x[n - 1], not an error.

Traced boolean masks are refused: the result's shape would depend on the data.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field

import numpy as np

from ..compiler import dtypes
from . import core, errors, lax_ops


class IndexingError(errors.TesselError, IndexError):
    """An index NumPy would reject (out of bounds, too many indices ...)."""


def _index_error(message: str) -> IndexingError:
    return errors.trace_error(message, cls=IndexingError)


INDEX_DTYPE = dtypes.s32   # gather start indices (XLA's usual s32)

_VALID_INDICES = ("only integers, slices (`:`), ellipsis (`...`), numpy.newaxis (`None`) "
                  "and integer or boolean arrays are valid indices")


# ----------------------------------------------------------------------------- index items

@dataclass
class _Item:
    """One entry of the index tuple, classified. `pos` is its place in the tuple."""
    kind: str          # slice, int, array, mask, newaxis, bool, ellipsis
    value: object
    pos: int

    @property
    def consumed(self) -> int:
        """How many dims of the indexed array this entry uses up."""
        if self.kind in ("slice", "int", "array"):
            return 1
        if self.kind == "mask":
            return self.value.ndim
        return 0


def _has_tracer(seq) -> bool:
    return any(core.is_tracer(v) or (isinstance(v, (list, tuple)) and _has_tracer(v)) for v in seq)


def _stack_traced(seq) -> core.Tracer:
    """A (nested) list holding tracers, as one traced integer array."""
    parts = [_stack_traced(v) if isinstance(v, (list, tuple)) else core.lift(v) for v in seq]
    parts = [lax_ops.convert_element_type(p, INDEX_DTYPE) for p in parts]
    if len({p.shape for p in parts}) != 1:
        raise _index_error(f"index list elements have different shapes: "
                           f"{', '.join(str(p.shape) for p in parts)}")
    return lax_ops.concatenate([lax_ops.reshape(p, (1,) + p.shape) for p in parts], 0)


def _sequence(seq) -> object:
    """A list/tuple/range inside an index, as an array (NumPy treats it as one)."""
    if isinstance(seq, range):
        return np.arange(seq.start, seq.stop, seq.step)
    if _has_tracer(seq):
        return _stack_traced(seq)
    array = np.asarray(seq)
    if array.size == 0:
        array = array.astype(np.intp)   # `x[[]]` indexes with an empty integer array
    return array


def _classify_array(value, pos: int) -> _Item:
    if core.is_tracer(value):
        if value.tdtype.is_pred:
            raise _index_error(
                f"boolean mask indexing with a traced mask {value.aval} is not supported: "
                f"the result's shape would depend on the data, and tessel needs static "
                f"shapes. Use tessel.numpy.where(mask, x, fill) to select elementwise, or "
                f"sum with the mask as weights")
        if not value.tdtype.is_integer:
            raise _index_error(f"arrays used as indices must be of integer (or boolean) type, "
                               f"got a traced {value.aval}")
        return _Item("array", value, pos)
    if value.dtype == np.bool_:
        return _Item("mask", value, pos)
    if not np.issubdtype(value.dtype, np.integer):
        raise _index_error(f"arrays used as indices must be of integer (or boolean) type, "
                           f"got {value.dtype}")
    if value.ndim == 0:   # NumPy treats a 0-d integer array as an integer
        return _Item("int", int(value), pos)
    return _Item("array", value, pos)


def _classify(entry, pos: int) -> _Item:
    if entry is Ellipsis:
        return _Item("ellipsis", None, pos)
    if entry is None:
        return _Item("newaxis", None, pos)
    if isinstance(entry, slice):
        if any(core.is_tracer(v) for v in (entry.start, entry.stop, entry.step)):
            raise _index_error("slice bounds must be static Python ints; for a window at a "
                               "traced position use tessel.lax.dynamic_slice(x, starts, sizes)")
        return _Item("slice", entry, pos)
    if isinstance(entry, (bool, np.bool_)):
        return _Item("bool", bool(entry), pos)
    if isinstance(entry, (int, np.integer)):
        return _Item("int", int(entry), pos)
    if isinstance(entry, (list, tuple, range)):
        entry = _sequence(entry)
    if core.is_tracer(entry) or isinstance(entry, np.ndarray):
        return _classify_array(entry, pos)
    raise _index_error(f"{_VALID_INDICES}; got {type(entry).__name__} {entry!r}")


def _items(index, ndim: int) -> list[_Item]:
    """The index as classified items, with `...` expanded to full slices."""
    entries = index if isinstance(index, tuple) else (index,)
    items = [_classify(e, pos) for pos, e in enumerate(entries)]
    ellipses = [it for it in items if it.kind == "ellipsis"]
    if len(ellipses) > 1:
        raise _index_error("an index can only have a single ellipsis ('...')")
    consumed = sum(it.consumed for it in items)
    if consumed > ndim:
        raise _index_error(f"too many indices for array: array is {ndim}-dimensional, "
                           f"but {consumed} were indexed")
    if not ellipses:   # an implicit trailing `...`; being last, it separates nothing
        ellipses = [_Item("ellipsis", None, len(items))]
        items.append(ellipses[0])
    at = items.index(ellipses[0])
    fill = [_Item("slice", slice(None), ellipses[0].pos) for _ in range(ndim - consumed)]
    return items[:at] + fill + items[at + 1:]


# ----------------------------------------------------------------------------- the plan

@dataclass
class _Advanced:
    dim: int           # dim of the sliced-and-reshaped array it indexes
    value: object      # np.ndarray (normalized, in bounds) or Tracer
    pos: int           # entry position in the index tuple (for NumPy's adjacency rule)


@dataclass
class _Plan:
    """What the index does, worked out statically from the array's shape."""
    reversed_dims: list = field(default_factory=list)
    starts: list = field(default_factory=list)
    limits: list = field(default_factory=list)
    strides: list = field(default_factory=list)
    dims: list = field(default_factory=list)        # after slice and reshape
    advanced: list = field(default_factory=list)    # [_Advanced]

    def slice_dim(self, start: int, limit: int, stride: int = 1) -> None:
        self.starts.append(start)
        self.limits.append(limit)
        self.strides.append(stride)

    def index_dim(self, size: int, value, pos: int) -> None:
        """Keep a dim of `size` whole for the gather to index with `value`."""
        self.slice_dim(0, size)
        self.advanced.append(_Advanced(len(self.dims), value, pos))
        self.dims.append(size)


def _static_index(values: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Normalize negative static indices; out of range is an IndexError, as in NumPy."""
    values = np.asarray(values, dtype=np.int64)
    bad = (values < -size) | (values >= size)
    if bad.any():
        raise _index_error(f"index {values[bad].flat[0]} is out of bounds for axis {axis} "
                           f"with size {size}")
    return np.where(values < 0, values + size, values)


def _slice_bounds(s: slice, size: int) -> tuple[int, int, int, bool]:
    """A slice as (start, limit, stride, reversed) on a dim of `size` (reversed first)."""
    start, stop, step = s.indices(size)
    count = len(range(start, stop, step))
    if count == 0:
        return 0, 0, 1, False
    reverse = step < 0
    if reverse:   # walk the reversed dim forwards: index i becomes size - 1 - i
        start, step = size - 1 - start, -step
    return start, start + (count - 1) * step + 1, step, reverse


# One rule per item kind: rule(plan, item, shape, axis), `axis` the first dim it uses.

def _plan_slice(plan: _Plan, it: _Item, shape, axis: int) -> None:
    start, limit, stride, reverse = _slice_bounds(it.value, shape[axis])
    if reverse:
        plan.reversed_dims.append(axis)
    plan.slice_dim(start, limit, stride)
    plan.dims.append(len(range(start, limit, stride)))


def _plan_int(plan: _Plan, it: _Item, shape, axis: int) -> None:
    """A basic integer: a size-1 slice, dropped by the reshape."""
    i = int(_static_index(it.value, shape[axis], axis))
    plan.slice_dim(i, i + 1)


def _plan_array(plan: _Plan, it: _Item, shape, axis: int) -> None:
    value = it.value if core.is_tracer(it.value) else _static_index(it.value, shape[axis], axis)
    plan.index_dim(shape[axis], value, it.pos)


def _plan_mask(plan: _Plan, it: _Item, shape, axis: int) -> None:
    """A static mask over dims axis.. : one integer index array per dim (np.nonzero)."""
    mask, sizes = it.value, shape[axis:axis + it.value.ndim]
    for k, (m, s) in enumerate(zip(mask.shape, sizes)):
        if m != s:
            raise _index_error(f"boolean index did not match indexed array along axis "
                               f"{axis + k}; size of axis is {s} but size of corresponding "
                               f"boolean axis is {m}")
    for coords, size in zip(np.nonzero(mask), sizes):
        plan.index_dim(size, coords.astype(np.int64), it.pos)


def _plan_newaxis(plan: _Plan, it: _Item, shape, axis: int) -> None:
    plan.dims.append(1)


def _plan_bool(plan: _Plan, it: _Item, shape, axis: int) -> None:
    """A scalar bool is a 0-d mask: a new length-1 dim, indexed by [0] (True) or [] (False)."""
    plan.advanced.append(_Advanced(len(plan.dims), np.zeros(int(it.value), np.int64), it.pos))
    plan.dims.append(1)


_PLAN_RULES = {
    "slice": _plan_slice, "int": _plan_int, "array": _plan_array, "mask": _plan_mask,
    "newaxis": _plan_newaxis, "bool": _plan_bool,
}


def _plan(items: list[_Item], shape: tuple[int, ...]) -> _Plan:
    plan, axis = _Plan(), 0
    for it in items:
        _PLAN_RULES[it.kind](plan, it, shape, axis)
        axis += it.consumed
    return plan


# ----------------------------------------------------------------------------- lowering

def _apply_basic(x: core.Tracer, plan: _Plan) -> core.Tracer:
    y = lax_ops.rev(x, plan.reversed_dims)
    y = lax_ops.slice(y, plan.starts, plan.limits, plan.strides)
    return lax_ops.reshape(y, plan.dims)


def _broadcast_shape(advanced: list[_Advanced]) -> tuple[int, ...]:
    shapes = [tuple(a.value.shape) for a in advanced]
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        given = " ".join(str(s) for s in shapes)
        raise _index_error(f"shape mismatch: indexing arrays could not be broadcast "
                           f"together with shapes {given}") from None


def _batch_position(plan: _Plan) -> int:
    """Where the broadcast index dims go in the result (NumPy's rule)."""
    positions = sorted({a.pos for a in plan.advanced})
    adjacent = positions[-1] - positions[0] + 1 == len(positions)
    # Adjacent entries index adjacent dims, so the kept dims before them are those
    # before the first indexed dim.
    return plan.advanced[0].dim if adjacent else 0


def _traced_index(t: core.Tracer, size: int, batch: tuple[int, ...]) -> core.Tracer:
    """A traced index as s32, negatives wrapped once (`i + size`), broadcast to `batch`."""
    ctx = core.current_context()
    t = lax_ops.convert_element_type(t, INDEX_DTYPE)
    if t.tdtype.kind == "signed":
        zero = lax_ops.full(t.shape, 0, INDEX_DTYPE)
        n = lax_ops.full(t.shape, size, INDEX_DTYPE)
        negative = ctx.emit("compare", [t, zero], {"direction": "LT"})
        t = lax_ops.select(negative, ctx.emit("add", [t, n]), t)
    return lax_ops.broadcast_in_dim(t, batch, range(len(batch) - t.ndim, len(batch)))


def _start_indices(plan: _Plan, sizes, batch: tuple[int, ...]) -> core.Tracer:
    """The gather's indices, shape batch + (k,): one column per advanced index."""
    if not any(core.is_tracer(a.value) for a in plan.advanced):
        columns = [np.broadcast_to(a.value, batch) for a in plan.advanced]
        return core.lift(np.stack(columns, axis=-1).astype(INDEX_DTYPE.storage))
    columns = []
    for a, size in zip(plan.advanced, sizes):
        if core.is_tracer(a.value):
            column = _traced_index(a.value, size, batch)
        else:
            column = lax_ops.broadcast_in_dim(core.lift(a.value.astype(INDEX_DTYPE.storage)),
                                              batch, range(len(batch) - a.value.ndim, len(batch)))
        columns.append(lax_ops.reshape(column, batch + (1,)))
    return lax_ops.concatenate(columns, len(batch))


def _gather(y: core.Tracer, plan: _Plan) -> core.Tracer:
    batch = _broadcast_shape(plan.advanced)
    indexed = [a.dim for a in plan.advanced]
    kept = [d for d in range(y.ndim) if d not in indexed]
    p = _batch_position(plan)
    out_shape = tuple(y.shape[d] for d in kept[:p]) + batch + tuple(y.shape[d] for d in kept[p:])
    if int(np.prod(out_shape)) == 0:   # nothing to read (and a gather could not index a size-0 dim)
        return lax_ops.full(out_shape, 0, y.tdtype)
    for d in indexed:
        if y.shape[d] == 0:
            raise _index_error("cannot index a dim of size 0 with a non-empty traced index")
    sizes = [y.shape[d] for d in indexed]
    dn = lax_ops.GatherDimensionNumbers(
        offset_dims=tuple(range(p)) + tuple(range(p + len(batch), len(out_shape))),
        collapsed_slice_dims=tuple(indexed), start_index_map=tuple(indexed))
    slice_sizes = [1 if d in indexed else n for d, n in enumerate(y.shape)]
    return lax_ops.gather(y, _start_indices(plan, sizes, batch), dn, slice_sizes)


@core.traceable
def getitem(x, index) -> core.Tracer:
    """`x[index]` with NumPy's semantics (see the module docstring for bounds)."""
    x = core.lift(x)
    items = _items(index, x.ndim)
    if any(it.kind in ("array", "mask", "bool") for it in items):
        # With an advanced index present, NumPy treats integers as 0-d index arrays
        # (which matters for where the broadcast dims go: x[0, :, [1, 2]]).
        items = [_Item("array", np.asarray(it.value), it.pos) if it.kind == "int" else it
                 for it in items]
    plan = _plan(items, x.shape)
    y = _apply_basic(x, plan)
    return _gather(y, plan) if plan.advanced else y


# ----------------------------------------------------------------------------- take

def _wrap_mode(t: core.Tracer, n: int) -> core.Tracer:
    ctx = core.current_context()
    t = lax_ops.convert_element_type(t, INDEX_DTYPE)
    size = lax_ops.full(t.shape, n, INDEX_DTYPE)
    r = ctx.emit("remainder", [t, size])   # C-style: the sign follows the dividend
    negative = ctx.emit("compare", [r, lax_ops.full(t.shape, 0, INDEX_DTYPE)], {"direction": "LT"})
    return lax_ops.select(negative, ctx.emit("add", [r, size]), r)


def _clip_mode(t: core.Tracer, n: int) -> core.Tracer:
    t = lax_ops.convert_element_type(t, INDEX_DTYPE)
    return lax_ops.clamp(np.int32(0), t, np.int32(n - 1))


_TAKE_MODES = {  # mode -> (static transform, traced transform); None = getitem's rules
    None: None, "raise": None,
    "wrap": (lambda v, n: np.mod(v, n), _wrap_mode),
    "clip": (lambda v, n: np.clip(v, 0, n - 1), _clip_mode),
}


def _take_indices(indices, n: int, mode):
    if mode not in _TAKE_MODES:
        raise errors.trace_error(f"take mode must be 'raise', 'wrap' or 'clip', got {mode!r}")
    if isinstance(indices, (list, tuple, range)):
        indices = _sequence(indices)
    transform = _TAKE_MODES[mode]
    if transform is None or n == 0:
        return indices
    if core.is_tracer(indices):
        return transform[1](indices, n)
    return transform[0](np.asarray(indices), n)


@core.traceable
def take(a, indices, axis=None, mode=None) -> core.Tracer:
    """`numpy.take`: elements of `a` at `indices` along `axis` (flattened `a` if None).

    mode None/'raise': static indices out of range raise IndexError; traced ones wrap
    negatives once and are then clamped (see the module docstring), i.e. they behave as
    NumPy's mode='clip' beyond that. 'wrap' and 'clip' are NumPy's modes, for static
    and traced indices alike.
    """
    a = core.lift(a)
    if axis is None:
        a, axis = lax_ops.reshape(a, (a.size,)), 0
    try:
        axis = operator.index(axis)
    except TypeError:
        raise errors.trace_error(f"take axis must be an integer or None, got {axis!r}") from None
    if not -a.ndim <= axis < a.ndim:
        raise errors.trace_error(f"axis {axis} is out of bounds for array of dimension {a.ndim}",
                                 cls=IndexingError)
    axis %= a.ndim
    indices = _take_indices(indices, a.shape[axis], mode)
    if not core.is_tracer(indices):
        indices = np.asarray(indices)
        if indices.dtype == np.bool_ or not np.issubdtype(indices.dtype, np.integer):
            raise _index_error(f"take indices must be integers, got {indices.dtype}")
    return getitem(a, (slice(None),) * axis + (indices,))


__all__ = ["getitem", "take", "IndexingError"]
