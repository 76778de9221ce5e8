"""XLA-level operations with explicit semantics, like `jax.lax` (re-exported as `tessel.lax`).

Each function is a thin, checked wrapper over one op of `compiler/ops.py`: no implicit
broadcasting or dtype promotion (that is `tessel.numpy`'s job), attributes spelled the
way a JAX user spells them and translated here to the op's XLA attributes:

- `dot_general` takes JAX's `((lhs_contract, rhs_contract), (lhs_batch, rhs_batch))`.
- `conv_general_dilated` takes JAX's dimension numbers (`None` = NCHW/OIHW/NCHW, or
  strings like `('NHWC', 'HWIO', 'NHWC')`) and emits the op's `dim_labels` string
  ('b01f_01io->b01f'); `'SAME'` padding follows JAX's rule (`padtype_to_pads`).
- `reduce_window` accepts the reducer as a name ('add', 'max', ...), a known function
  (`tnp.add`, `np.maximum`, `operator.add`, `max` ...) or any scalar function, which is
  traced into a reducer computation.

Index semantics are XLA's: `gather` and `dynamic_slice` clamp start indices so the
slice stays inside the operand; they never fault and never read out of bounds.
"""
from __future__ import annotations

import builtins
import operator
from typing import NamedTuple

import numpy as np

from ..compiler import dtypes
from ..compiler.ir import Shape
from . import core
from .errors import trace_error


# ----------------------------------------------------------------------------- small helpers

def _ctx() -> core.TraceContext:
    return core.current_context()


def _ints(values, what: str) -> tuple[int, ...]:
    """A static sequence of Python ints (an int alone is a 1-sequence)."""
    if isinstance(values, (int, np.integer)):
        values = (values,)
    try:
        return tuple(operator.index(v) for v in values)
    except TypeError:
        raise trace_error(f"{what} must be a sequence of static integers, got {values!r}") from None


def _axis(axis: int, rank: int, what: str) -> int:
    if not -rank <= axis < rank:
        raise trace_error(f"{what} {axis} is out of range for an array of rank {rank}")
    return axis % rank


def _same_dtype(opname: str, *tracers: core.Tracer) -> None:
    first = tracers[0].tdtype
    if any(t.tdtype != first for t in tracers[1:]):
        given = ", ".join(str(t.aval) for t in tracers)
        raise trace_error(f"{opname} operands must share a dtype, got {given}; "
                          f"cast one with .astype(...) first")


def _index_scalar(value) -> core.Tracer:
    """A start index as an s32 scalar (XLA's dynamic_slice wants integer scalars)."""
    t = core.lift(value) if core.is_tracer(value) else core.lift(np.int32(value))
    if t.ndim != 0 or not t.tdtype.is_integer:
        raise trace_error(f"start indices must be integer scalars, got {t.aval}")
    return convert_element_type(t, dtypes.s32)


# ----------------------------------------------------------------------------- data movement

@core.traceable
def convert_element_type(x, new_dtype) -> core.Tracer:
    x = core.lift(x)
    dt = dtypes.from_any(new_dtype)
    if x.tdtype == dt:
        return x
    return _ctx().emit("convert", [x], shape=Shape(dt, x.shape))


@core.traceable
def reshape(x, new_sizes) -> core.Tracer:
    x = core.lift(x)
    sizes = _ints(new_sizes, "reshape new_sizes")
    if sizes == x.shape:
        return x
    return _ctx().emit("reshape", [x], shape=Shape(x.tdtype, sizes))


@core.traceable
def broadcast_in_dim(x, shape, broadcast_dimensions) -> core.Tracer:
    x = core.lift(x)
    shape = _ints(shape, "broadcast_in_dim shape")
    bdims = _ints(broadcast_dimensions, "broadcast_dimensions")
    if shape == x.shape and bdims == tuple(range(x.ndim)):
        return x
    return _ctx().emit("broadcast_in_dim", [x], {"broadcast_dimensions": bdims},
                       shape=Shape(x.tdtype, shape))


@core.traceable
def full(shape, fill_value, dtype) -> core.Tracer:
    """An array of one value: a scalar constant broadcast (no large literal)."""
    scalar = core.lift(np.asarray(fill_value), dtypes.from_any(dtype))
    return broadcast_in_dim(scalar, shape, ())


@core.traceable
def slice(x, start_indices, limit_indices, strides=None) -> core.Tracer:  # noqa: A001 (jax.lax name)
    x = core.lift(x)
    starts = _ints(start_indices, "slice start_indices")
    limits = _ints(limit_indices, "slice limit_indices")
    steps = _ints(strides, "slice strides") if strides is not None else (1,) * x.ndim
    if starts == (0,) * x.ndim and limits == x.shape and steps == (1,) * x.ndim:
        return x
    return _ctx().emit("slice", [x], {"start_indices": starts, "limit_indices": limits,
                                      "strides": steps})


@core.traceable
def rev(x, dimensions) -> core.Tracer:
    x = core.lift(x)
    dims = tuple(_axis(d, x.ndim, "rev dimension") for d in _ints(dimensions, "rev dimensions"))
    if not dims:
        return x
    return _ctx().emit("reverse", [x], {"dimensions": dims})


@core.traceable
def concatenate(operands, dimension: int) -> core.Tracer:
    parts = [core.lift(x) for x in operands]
    if not parts:
        raise trace_error("concatenate needs at least one operand")
    if len(parts) == 1:
        return parts[0]
    dim = _axis(dimension, parts[0].ndim, "concatenate dimension")
    return _ctx().emit("concatenate", parts, {"dimension": dim})


@core.traceable
def select(pred, on_true, on_false) -> core.Tracer:
    return _ctx().emit("select", [core.lift(pred), core.lift(on_true), core.lift(on_false)])


@core.traceable
def clamp(min, x, max) -> core.Tracer:  # noqa: A002 (jax.lax argument names)
    """Elementwise min(max(x, min), max); Python/NumPy scalar bounds take x's dtype."""
    x = core.lift(x)
    lo, hi = (core.lift(b) if core.is_tracer(b) else core.lift(np.asarray(b), x.tdtype)
              for b in (min, max))
    return _ctx().emit("clamp", [lo, x, hi])


@core.traceable
def iota(dtype, size: int) -> core.Tracer:
    return broadcasted_iota(dtype, (size,), 0)


@core.traceable
def broadcasted_iota(dtype, shape, dimension: int) -> core.Tracer:
    shape = _ints(shape, "iota shape")
    dim = _axis(dimension, len(shape), "iota dimension")
    return _ctx().emit("iota", [], {"iota_dimension": dim}, shape=Shape(dtypes.from_any(dtype), shape))


@core.traceable
def dynamic_slice(operand, start_indices, slice_sizes) -> core.Tracer:
    """`operand[s0:s0+n0, s1:s1+n1, ...]` with traced starts, clamped into bounds (XLA)."""
    x = core.lift(operand)
    starts = [_index_scalar(s) for s in start_indices]
    return _ctx().emit("dynamic_slice", [x, *starts],
                       {"slice_sizes": _ints(slice_sizes, "dynamic_slice slice_sizes")})


@core.traceable
def dynamic_update_slice(operand, update, start_indices) -> core.Tracer:
    """`operand` with `update` written at traced starts, clamped so it fits (XLA)."""
    x, u = core.lift(operand), core.lift(update)
    starts = [_index_scalar(s) for s in start_indices]
    return _ctx().emit("dynamic_update_slice", [x, u, *starts])


class GatherDimensionNumbers(NamedTuple):
    """XLA gather dimension numbers (the index vector is the last dim of the indices)."""
    offset_dims: tuple
    collapsed_slice_dims: tuple
    start_index_map: tuple


@core.traceable
def gather(operand, start_indices, dimension_numbers: GatherDimensionNumbers, slice_sizes,
           indices_are_sorted: bool = False, index_vector_dim: int | None = None) -> core.Tracer:
    """XLA gather. Out-of-range start indices are clamped so each slice fits the operand.

    `index_vector_dim` defaults to the last dim of `start_indices` (JAX's convention);
    pass `start_indices.ndim` for one implicit index component per element.
    """
    x, idx = core.lift(operand), core.lift(start_indices)
    dn = dimension_numbers
    attrs = {"offset_dims": _ints(dn.offset_dims, "offset_dims"),
             "collapsed_slice_dims": _ints(dn.collapsed_slice_dims, "collapsed_slice_dims"),
             "start_index_map": _ints(dn.start_index_map, "start_index_map"),
             "index_vector_dim": idx.ndim - 1 if index_vector_dim is None else index_vector_dim,
             "slice_sizes": _ints(slice_sizes, "slice_sizes"),
             "indices_are_sorted": bool(indices_are_sorted)}
    return _ctx().emit("gather", [x, idx], attrs)


# ----------------------------------------------------------------------------- dot_general

def _dims(dims, rank: int, what: str) -> tuple[int, ...]:
    return tuple(_axis(d, rank, what) for d in _ints(dims, what))


@core.traceable
def dot_general(lhs, rhs, dimension_numbers, preferred_element_type=None) -> core.Tracer:
    """Contract `lhs` with `rhs`: dimension_numbers = ((lhs_contract, rhs_contract),
    (lhs_batch, rhs_batch)). Result dims: batch, then lhs free, then rhs free.

    `preferred_element_type` is the result (and accumulation) dtype: both operands are
    converted to it first, which is exact for the usual widenings (int8 -> int32,
    bf16 -> f32).
    """
    lhs, rhs = core.lift(lhs), core.lift(rhs)
    try:
        (lc, rc), (lb, rb) = dimension_numbers
    except (TypeError, ValueError):
        raise trace_error("dot_general dimension_numbers must be ((lhs_contracting, "
                          "rhs_contracting), (lhs_batch, rhs_batch)), got "
                          f"{dimension_numbers!r}") from None
    if preferred_element_type is not None:
        lhs = convert_element_type(lhs, preferred_element_type)
        rhs = convert_element_type(rhs, preferred_element_type)
    _same_dtype("dot_general", lhs, rhs)
    attrs = {"lhs_contracting_dims": _dims(lc, lhs.ndim, "lhs contracting dim"),
             "rhs_contracting_dims": _dims(rc, rhs.ndim, "rhs contracting dim"),
             "lhs_batching_dims": _dims(lb, lhs.ndim, "lhs batch dim"),
             "rhs_batching_dims": _dims(rb, rhs.ndim, "rhs batch dim")}
    return _ctx().emit("dot_general", [lhs, rhs], attrs)


# ----------------------------------------------------------------------------- padding rules

def padtype_to_pads(in_shape, window_shape, strides, padding: str) -> list[tuple[int, int]]:
    """JAX's rule for string padding. 'SAME': output size ceil(in / stride), the padding
    split evenly with the odd element at the end; 'SAME_LOWER': odd element at the start."""
    kind = padding.upper()
    if kind == "VALID":
        return [(0, 0)] * len(in_shape)
    if kind not in ("SAME", "SAME_LOWER"):
        raise trace_error(f"padding must be 'SAME', 'SAME_LOWER', 'VALID' or a list of "
                          f"(low, high) pairs, got {padding!r}")
    pads = []
    for size, window, stride in zip(in_shape, window_shape, strides):
        out = -(-size // stride)
        total = builtins.max((out - 1) * stride + window - size, 0)
        lo = total // 2 if kind == "SAME" else total - total // 2
        pads.append((lo, total - lo))
    return pads


def _pairs(padding, n: int, what: str) -> tuple[tuple[int, int], ...]:
    try:
        pairs = tuple((operator.index(lo), operator.index(hi)) for lo, hi in padding)
    except (TypeError, ValueError):
        raise trace_error(f"{what} padding must be a string or a sequence of (low, high) "
                          f"integer pairs, got {padding!r}") from None
    if len(pairs) != n:
        raise trace_error(f"{what} padding needs {n} (low, high) pairs, got {len(pairs)}")
    return pairs


def _dilate(size: int, dilation: int) -> int:
    return 0 if size == 0 else (size - 1) * dilation + 1


# ----------------------------------------------------------------------------- convolution

_LHS, _RHS, _OUT = ("N", "C"), ("O", "I"), ("N", "C")   # JAX's letters for the non-spatial dims
_LABELS = {"N": "b", "C": "f", "O": "o", "I": "i"}


def _spec_labels(spec: str, pair, spatial: str) -> str:
    """One part of dim_labels: 'NHWC' with spatial order 'HW' -> 'b01f'."""
    return "".join(_LABELS[c] if c in pair else str(spatial.index(c)) for c in spec)


def _specs_to_labels(lhs_spec: str, rhs_spec: str, out_spec: str) -> str:
    """JAX string dimension numbers -> the op's dim_labels.

    As in JAX, the kernel spec fixes the order of the spatial dims: spatial dim k is the
    k-th spatial letter of `rhs_spec`, in all three specs and in strides/padding.
    """
    for spec, pair in ((lhs_spec, _LHS), (rhs_spec, _RHS), (out_spec, _OUT)):
        if not (isinstance(spec, str) and len(set(spec)) == len(spec)
                and all(spec.count(c) == 1 for c in pair)):
            raise trace_error(f"conv dimension spec {spec!r} must name each dim once, with "
                              f"exactly one {pair[0]!r} and one {pair[1]!r}")
    spatial = "".join(c for c in rhs_spec if c not in _RHS)
    if not (set(lhs_spec) - set(_LHS) == set(spatial) == set(out_spec) - set(_OUT)):
        raise trace_error(f"conv dimension specs {lhs_spec!r}, {rhs_spec!r}, {out_spec!r} "
                          f"must use the same spatial letters")
    return (f"{_spec_labels(lhs_spec, _LHS, spatial)}_{_spec_labels(rhs_spec, _RHS, spatial)}"
            f"->{_spec_labels(out_spec, _OUT, spatial)}")


def _perm_to_labels(spec, letters: str) -> str:
    """JAX's ConvDimensionNumbers tuple form (batch/out dim, feature/in dim, spatial...)."""
    labels = [""] * len(spec)
    labels[spec[0]], labels[spec[1]] = letters[0], letters[1]
    for k, d in enumerate(spec[2:]):
        labels[d] = str(k)
    return "".join(labels)


def conv_dim_labels(dimension_numbers, rank: int) -> str:
    """The op's dim_labels for JAX-style `dimension_numbers` of rank-`rank` operands."""
    if dimension_numbers is None:   # JAX's default: NCHW, OIHW, NCHW
        spatial = "".join(str(k) for k in range(rank - 2))
        return f"bf{spatial}_oi{spatial}->bf{spatial}"
    if isinstance(dimension_numbers, str):   # already 'b01f_01io->b01f'
        return dimension_numbers
    try:
        lhs, rhs, out = dimension_numbers
    except (TypeError, ValueError):
        raise trace_error("conv dimension_numbers must be None, (lhs_spec, rhs_spec, out_spec) "
                          f"strings like ('NHWC', 'HWIO', 'NHWC'), got {dimension_numbers!r}") from None
    if all(isinstance(s, str) for s in (lhs, rhs, out)):
        labels = _specs_to_labels(lhs, rhs, out)
    else:
        labels = f"{_perm_to_labels(lhs, 'bf')}_{_perm_to_labels(rhs, 'oi')}->{_perm_to_labels(out, 'bf')}"
    if len(lhs) != rank:
        raise trace_error(f"conv dimension_numbers {dimension_numbers!r} are for rank "
                          f"{len(lhs)} operands, given rank {rank}")
    return labels


def _spatial_sizes(labels_part: str, dims) -> list[int]:
    n = len(labels_part) - 2
    return [dims[labels_part.index(str(k))] for k in range(n)]


@core.traceable
def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count: int = 1,
                         batch_group_count: int = 1, precision=None,
                         preferred_element_type=None) -> core.Tracer:
    """N-d convolution with JAX's signature. `precision` is accepted and ignored."""
    lhs, rhs = core.lift(lhs), core.lift(rhs)
    if preferred_element_type is not None:
        lhs = convert_element_type(lhs, preferred_element_type)
        rhs = convert_element_type(rhs, preferred_element_type)
    _same_dtype("conv_general_dilated", lhs, rhs)
    labels = conv_dim_labels(dimension_numbers, lhs.ndim)
    n = lhs.ndim - 2
    strides = _ints(window_strides, "window_strides")
    lhs_dil = _ints(lhs_dilation, "lhs_dilation") if lhs_dilation is not None else (1,) * n
    rhs_dil = _ints(rhs_dilation, "rhs_dilation") if rhs_dilation is not None else (1,) * n
    if isinstance(padding, str):
        if lhs_dil != (1,) * n:
            # As JAX: 'SAME' is ambiguous for a transposed (lhs-dilated) convolution.
            raise trace_error("string padding is not supported with lhs_dilation; "
                              "give explicit (low, high) pairs")
        lhs_part, rhs_part = labels.split("->")[0].split("_")
        window = [_dilate(k, d) for k, d in zip(_spatial_sizes(rhs_part, rhs.shape), rhs_dil)]
        pads = padtype_to_pads(_spatial_sizes(lhs_part, lhs.shape), window, strides, padding)
    else:
        pads = _pairs(padding, n, "conv_general_dilated")
    attrs = {"window_strides": strides, "padding": tuple(pads), "lhs_dilation": lhs_dil,
             "rhs_dilation": rhs_dil, "feature_group_count": int(feature_group_count),
             "batch_group_count": int(batch_group_count), "dim_labels": labels}
    return _ctx().emit("convolution", [lhs, rhs], attrs)


# ----------------------------------------------------------------------------- reduce_window

_REDUCER_NAMES = {  # name -> opcode of the scalar reducer
    "add": "add", "sum": "add", "mul": "multiply", "multiply": "multiply", "prod": "multiply",
    "max": "maximum", "maximum": "maximum", "min": "minimum", "minimum": "minimum",
    "and": "and", "or": "or",
}
_KNOWN_FUNCTIONS: dict | None = None


def _known_functions() -> dict:
    """Functions that mean a standard reducer, by identity (built on first use)."""
    global _KNOWN_FUNCTIONS
    if _KNOWN_FUNCTIONS is None:
        from . import numpy_api as tnp
        table = {operator.add: "add", operator.mul: "multiply", builtins.max: "maximum",
                 builtins.min: "minimum", operator.and_: "and", operator.or_: "or"}
        for name, opcode in (("add", "add"), ("multiply", "multiply"), ("maximum", "maximum"),
                             ("minimum", "minimum"), ("logical_and", "and"), ("logical_or", "or")):
            for module in (tnp, np):
                fn = getattr(module, name, None)
                if fn is not None:
                    table[fn] = opcode
        _KNOWN_FUNCTIONS = table
    return _KNOWN_FUNCTIONS


def _traced_reducer(fn, dtype):
    """Trace `fn(a, b)` on two scalars of `dtype` into a reducer computation."""
    ctx = _ctx()
    sub = core.TraceContext(ctx.module, getattr(fn, "__name__", "reducer"), parent=ctx)
    with sub:
        a = sub.parameter(Shape(dtype, ()), "a")
        b = sub.parameter(Shape(dtype, ()), "b")
        out = core.lift(fn(a, b))
        if out.aval != Shape(dtype, ()) or sub.captures:
            raise trace_error(f"reduce_window computation {fn!r} must map two {dtype} scalars to "
                              f"a {dtype} scalar using only its arguments; it returned {out.aval}"
                              + (" and used values from outside" if sub.captures else ""))
        comp = sub.builder.build(out.instr)
    sub.finished = True
    return comp


def reducer_computation(computation, dtype):
    """The scalar reducer for `computation` (a name, a known function or any function)."""
    ctx = _ctx()
    if isinstance(computation, str):
        if computation not in _REDUCER_NAMES:
            raise trace_error(f"unknown reduce_window computation {computation!r}; use one of "
                              f"{', '.join(sorted(_REDUCER_NAMES))} or a function")
        return ctx.reducer(_REDUCER_NAMES[computation], dtype)
    try:
        opcode = _known_functions().get(computation)
    except TypeError:   # unhashable callable
        opcode = None
    if opcode is not None:
        return ctx.reducer(opcode, dtype)
    if callable(computation):
        return _traced_reducer(computation, dtype)
    raise trace_error(f"reduce_window computation must be a name or a function, got {computation!r}")


def _init_value(init_value, dtype) -> core.Tracer:
    if core.is_tracer(init_value):
        init = core.lift(init_value)
        if init.aval != Shape(dtype, ()):
            raise trace_error(f"reduce_window init_value must be a {dtype} scalar, got {init.aval}")
        return init
    return core.lift(np.asarray(init_value), dtype)


@core.traceable
def reduce_window(operand, init_value, computation, window_dimensions, window_strides=None,
                  padding="VALID", base_dilation=None, window_dilation=None) -> core.Tracer:
    """Reduce every window of `operand` with `computation`, starting from `init_value`.

    Padding positions hold `init_value`. String padding follows JAX's rule applied to
    the dilated operand and window sizes.
    """
    x = core.lift(operand)
    rank = x.ndim
    window = _ints(window_dimensions, "window_dimensions")
    strides = _ints(window_strides, "window_strides") if window_strides is not None else (1,) * rank
    base = _ints(base_dilation, "base_dilation") if base_dilation is not None else (1,) * rank
    wdil = _ints(window_dilation, "window_dilation") if window_dilation is not None else (1,) * rank
    if isinstance(padding, str):
        sizes = [_dilate(d, b) for d, b in zip(x.shape, base)]
        pads = padtype_to_pads(sizes, [_dilate(w, d) for w, d in zip(window, wdil)], strides, padding)
    else:
        pads = _pairs(padding, rank, "reduce_window")
    attrs = {"window_dimensions": window, "window_strides": strides, "padding": tuple(pads),
             "base_dilations": base, "window_dilations": wdil,
             "to_apply": reducer_computation(computation, x.tdtype)}
    return _ctx().emit("reduce_window", [x, _init_value(init_value, x.tdtype)], attrs)


__all__ = ["convert_element_type", "reshape", "broadcast_in_dim", "full", "slice", "rev",
           "concatenate", "select", "clamp", "iota", "broadcasted_iota", "dynamic_slice",
           "dynamic_update_slice", "GatherDimensionNumbers", "gather", "dot_general",
           "padtype_to_pads", "conv_general_dilated", "reduce_window"]
