"""tessel.numpy: NumPy's API for traced arrays (`import tessel.numpy as tnp`).

Every public function works in two modes. Inside a trace it takes tracers or array-likes
(NumPy data and Python scalars become constants of the current trace) and records IR;
outside any trace (`core.traceable`) the call is traced into a throwaway module and run
by the interpreter, so `tnp.add(np_a, np_b)` returns a NumPy array.

Semantics are NumPy's, made explicit for the IR, which has none of NumPy's implicit rules:
- broadcasting is a `broadcast_in_dim` per operand (elementwise ops need equal shapes);
- type promotion is NumPy 2's (NEP 50): Python scalars are weak (`f32 array + 1.5` stays
  f32), arrays and NumPy scalars are strong; NumPy's own ufunc type resolution decides
  every elementwise result, so `int / int -> f64`, `exp(int8) -> f16`, `bool + bool -> bool`.
  bfloat16 (which NumPy lacks) joins as JAX's lattice has it: with f16 -> f32, with
  f32/f64 -> that type, with integers, bools or Python scalars -> bf16;
- reductions take `axis=None|int|tuple` (negative axes allowed) and `keepdims`; sums and
  products of bools and small integers accumulate in int64 like NumPy's on 64-bit Linux.

Where tessel's dtypes cannot hold NumPy's answer the nearest wider supported type is
used: int16 -> s32 (e.g. `uint8 + int8`), and sums/products of unsigned integers are u32
(NumPy: uint64). Errors are NumPy's messages, prefixed with the user's file:line.
"""
from __future__ import annotations

import builtins
import functools
import math
import operator
import types
import weakref
from typing import Sequence

import numpy as np

from ..compiler import dtypes
from ..compiler.dtypes import DType
from ..compiler.ir import Builder, Shape
from . import core, errors
from .core import Tracer, traceable

# ----------------------------------------------------------------------------- dtypes and constants

bool_ = np.bool_
int8 = np.int8
int32 = np.int32
int64 = np.int64
uint8 = np.uint8
uint32 = np.uint32
float16 = np.float16
float32 = np.float32
float64 = np.float64
bfloat16 = dtypes.bf16

# Abstract scalar kinds, for issubdtype.
number, integer, signedinteger, unsignedinteger = np.number, np.integer, np.signedinteger, np.unsignedinteger
inexact, floating = np.inexact, np.floating

pi, e, inf, nan, newaxis = np.pi, np.e, np.inf, np.nan, None


# ----------------------------------------------------------------------------- errors

# Each is a TraceError (what tessel raises for code that cannot be traced) and the
# exception NumPy raises in the same situation, so either kind of `except` catches it.

class TracedValueError(errors.TraceError, ValueError):
    """A NumPy ValueError (shape mismatch, bad argument) raised while tracing."""


class TracedAxisError(np.exceptions.AxisError, errors.TraceError):
    """An axis argument is out of range for the array. (AxisError first: its __init__
    and __str__ must win over TypeError's.)"""


class TracedOverflowError(errors.TraceError, OverflowError):
    """A Python integer does not fit the dtype it must take (NEP 50)."""


class TracedZeroDivisionError(errors.TraceError, ZeroDivisionError):
    """A static argument divides by zero (arange with step 0)."""


def _value_error(message: str) -> errors.TesselError:
    return errors.trace_error(message, cls=TracedValueError)


def _type_error(message: str) -> errors.TesselError:
    return errors.trace_error(message, cls=errors.TraceError)


def _unsupported(message: str) -> errors.TesselError:
    return errors.trace_error(message, cls=errors.UnsupportedNumpyFunction)


def _check_out(out, name: str) -> None:
    if out is not None:
        raise _unsupported(f"{name}: out= is not supported (traced arrays are immutable); "
                           f"use the returned array")


# ----------------------------------------------------------------------------- tracers and IR

def _ctx() -> core.TraceContext:
    return core.current_context()


def _emit(opcode: str, operands: Sequence[Tracer] = (), attrs=None, shape: Shape | None = None) -> Tracer:
    return _ctx().emit(opcode, list(operands), attrs, shape)


def _as_dtype(dtype) -> DType:
    """Anything `dtypes.from_any` accepts, plus Python's bool/int/float types."""
    try:
        return dtypes.from_any(dtype)
    except TypeError as e:
        raise _type_error(str(e)) from e


def _public_dtype(dt: DType):
    """What users see as a dtype: NumPy's, or tessel's bf16 (NumPy has none)."""
    return dt if dt is dtypes.bf16 else dt.storage


def _dtype_of(x) -> DType:
    return x.tdtype if isinstance(x, Tracer) else core.aval_of(x).dtype


def _tracer(x, dtype: DType | None = None) -> Tracer:
    """`x` as a tracer of the current trace, converted to `dtype` if one is given."""
    if isinstance(x, Tracer):
        t = _ctx().own(x)
        return t if dtype is None else _convert(t, dtype)
    if dtype is None:
        return core.lift(x)
    if core.is_weak_scalar(x):
        _check_weak_fits(x, dtype)
    return core.lift(x, dtype)


def _check_weak_fits(x, dt: DType) -> None:
    if isinstance(x, int) and not isinstance(x, bool) and dt.is_integer:
        info = np.iinfo(dt.storage)
        if not info.min <= x <= info.max:
            raise errors.trace_error(f"Python integer {x} out of bounds for {dt.storage}",
                                     cls=TracedOverflowError)


def _scalar(value, dt: DType) -> Tracer:
    return _ctx().constant(np.asarray(value, dtype=dt.storage), dt)


def _full_like_t(t: Tracer, value) -> Tracer:
    """A tracer of t's shape and dtype holding `value` everywhere."""
    return _broadcast_to_shape(_scalar(value, t.tdtype), t.shape)


def _convert(t: Tracer, dt: DType) -> Tracer:
    if t.tdtype == dt:
        return t
    if dt.is_pred:   # NumPy's bool(x) is x != 0 (NaN is True)
        return _cmp(t, _full_like_t(t, 0), "NE")
    return _emit("convert", [t], shape=Shape(dt, t.shape))


def _op(opcode: str, *operands: Tracer) -> Tracer:
    """An elementwise op on tracers of equal shape and dtype."""
    return _emit(opcode, operands)


def _cmp(a: Tracer, b: Tracer, direction: str) -> Tracer:
    return _emit("compare", [a, b], {"direction": direction})


def _select(pred: Tracer, a: Tracer, b: Tracer) -> Tracer:
    return _emit("select", [pred, a, b])


def _iota(dt: DType, dims: Sequence[int], dimension: int) -> Tracer:
    return _emit("iota", [], {"iota_dimension": dimension}, Shape(dt, tuple(dims)))


def _reshape(t: Tracer, dims: Sequence[int]) -> Tracer:
    dims = tuple(dims)
    return t if t.shape == dims else _emit("reshape", [t], shape=Shape(t.tdtype, dims))


def _transpose(t: Tracer, perm: Sequence[int]) -> Tracer:
    perm = tuple(perm)
    return t if perm == tuple(range(t.ndim)) else _emit("transpose", [t], {"permutation": perm})


def _slice_axis(t: Tracer, axis: int, start: int, stop: int) -> Tracer:
    if (start, stop) == (0, t.shape[axis]):
        return t
    starts = [0] * t.ndim
    limits = list(t.shape)
    starts[axis], limits[axis] = start, stop
    return _emit("slice", [t], {"start_indices": tuple(starts), "limit_indices": tuple(limits)})


def _concat(ts: Sequence[Tracer], axis: int) -> Tracer:
    return ts[0] if len(ts) == 1 else _emit("concatenate", ts, {"dimension": axis})


# ----------------------------------------------------------------------------- type promotion

def _weak_kind(x):
    """How NumPy's type resolution sees a weak Python scalar: its type (bool is just bool)."""
    x = core.weak_proxy(x)
    return np.dtype(np.bool_) if isinstance(x, bool) else type(x)


def _nearest_supported(npdtype) -> DType:
    """NumPy's dtype as a tessel dtype, widened where tessel lacks it (int16 -> s32 ...)."""
    widened = {np.dtype(np.int16): dtypes.s32, np.dtype(np.uint16): dtypes.u32,
               np.dtype(np.uint64): dtypes.s64}
    npdtype = np.dtype(npdtype)
    if npdtype in widened:
        return widened[npdtype]
    try:
        return dtypes.from_numpy(npdtype)
    except TypeError as e:
        raise _type_error(str(e)) from e


def _promote_dtypes(strong: Sequence[DType], weak: Sequence = ()) -> DType:
    """NumPy's result_type of strong dtypes and weak Python scalars, extended to bf16."""
    if dtypes.bf16 in strong:
        others = [d.storage for d in strong if d is not dtypes.bf16]
        joined = np.result_type(*others) if others else None
        if joined is not None and joined.kind == "f":
            return dtypes.f32 if joined == np.float16 else _nearest_supported(joined)
        return dtypes.bf16
    try:
        return _nearest_supported(np.result_type(*[d.storage for d in strong], *weak))
    except TypeError as e:
        raise _type_error(str(e)) from e


def _promote(*args) -> DType:
    """The common dtype of values (tracers, arrays, Python scalars) under NEP 50."""
    strong = [_dtype_of(a) for a in args if not core.is_weak_scalar(a)]
    weak = [core.weak_proxy(a) for a in args if core.is_weak_scalar(a)]
    return _promote_dtypes(strong, weak)


def _resolve(ufunc: np.ufunc, args, dtype=None) -> tuple[list[DType], DType]:
    """NumPy's loop for `ufunc` on `args`: (dtype each input is cast to, output dtype)."""
    if dtype is not None:
        kinds = [_as_dtype(dtype)] * len(args)
    else:
        kinds = [_weak_kind(a) if core.is_weak_scalar(a) else _dtype_of(a) for a in args]
    strong = [k for k in kinds if isinstance(k, DType)]
    common = None
    views = [k.storage if isinstance(k, DType) else k for k in kinds]
    if dtypes.bf16 in strong:   # NumPy has no bf16: resolve as the bf16 lattice's join
        common = _promote_dtypes(strong)
        proxy = np.dtype(np.float32) if common is dtypes.bf16 else common.storage
        views = [proxy if isinstance(k, DType) else k for k in kinds]
    try:
        resolved = ufunc.resolve_dtypes(tuple(views) + (None,) * ufunc.nout)
    except TypeError as e:
        raise _type_error(f"{ufunc.__name__}: {e}") from e

    def back(npdtype) -> DType:
        if common is dtypes.bf16 and npdtype == np.float32:
            return dtypes.bf16
        return _nearest_supported(npdtype)

    return [back(d) for d in resolved[:ufunc.nin]], back(resolved[ufunc.nin])


def _is_dtype_like(x) -> bool:
    return isinstance(x, (str, np.dtype, DType, type))


def result_type(*arrays_and_dtypes):
    """NumPy's result_type (NEP 50), accepting tessel arrays and bfloat16."""
    strong, weak = [], []
    for x in arrays_and_dtypes:
        if core.is_weak_scalar(x):
            weak.append(core.weak_proxy(x))
        elif _is_dtype_like(x):
            strong.append(_as_dtype(x))
        else:
            strong.append(_dtype_of(x))
    if not strong and not weak:
        raise _value_error("at least one array or dtype is required")
    return _public_dtype(_promote_dtypes(strong, weak))


def promote_types(type1, type2):
    return result_type(_as_dtype(type1), _as_dtype(type2))


def _is_bf16(x) -> bool:
    return x is dtypes.bf16 or (isinstance(x, str) and x in ("bf16", "bfloat16"))


def issubdtype(arg1, arg2) -> bool:
    """np.issubdtype, with bfloat16 a floating type of its own."""
    if _is_bf16(arg2):
        return _is_bf16(arg1)
    if _is_bf16(arg1):
        return np.issubdtype(np.floating, arg2)
    return np.issubdtype(arg1, arg2)


class _BF16Info:
    """finfo for bfloat16: 8 exponent bits like f32, 7 mantissa bits."""
    bits = 16
    dtype = dtypes.bf16
    eps = float(2.0 ** -7)
    max = float(np.float32(3.3895313892515355e38))
    min = -max
    tiny = smallest_normal = float(2.0 ** -126)
    resolution = 0.01


def finfo(dtype):
    """np.finfo of a dtype or an array's dtype, including bfloat16."""
    dt = _as_dtype(dtype) if _is_dtype_like(dtype) else _dtype_of(dtype)
    return _BF16Info() if dt is dtypes.bf16 else np.finfo(dt.storage)


iinfo = np.iinfo


# ----------------------------------------------------------------------------- shapes and axes

def _dims(shape) -> tuple[int, ...]:
    """A shape argument (int or sequence of ints) as a tuple."""
    dims = (operator.index(shape),) if np.ndim(shape) == 0 else tuple(operator.index(d) for d in shape)
    if builtins.any(d < 0 for d in dims):
        raise _value_error("negative dimensions are not allowed")
    return dims


def _axis(axis, ndim: int) -> int:
    try:
        a = operator.index(axis)
    except TypeError:
        raise _type_error(f"an axis must be an integer, got {axis!r}") from None
    if not -ndim <= a < ndim:
        raise errors.trace_error(f"axis {a} is out of bounds for array of dimension {ndim}",
                                 cls=TracedAxisError)
    return a % ndim


def _axes(axis, ndim: int, what: str = "'axis'") -> tuple[int, ...]:
    """axis=None|int|sequence as sorted, non-negative, distinct axes (None = all)."""
    if axis is None:
        return tuple(range(ndim))
    raw = (axis,) if np.ndim(axis) == 0 else tuple(axis)
    axes = [_axis(a, ndim) for a in raw]
    if len(set(axes)) != len(axes):
        raise _value_error(f"duplicate value in {what}")
    return tuple(sorted(axes))


def _axis_list(axis, ndim: int) -> list[int]:
    """Like _axes, keeping the given order (for moveaxis, expand_dims ...)."""
    raw = (axis,) if np.ndim(axis) == 0 else tuple(axis)
    return [_axis(a, ndim) for a in raw]


def _shape_text(dims) -> str:
    """A shape as NumPy's messages spell it: (3,) or (2,3)."""
    dims = tuple(dims)
    return "(" + ",".join(str(d) for d in dims) + ("," if len(dims) == 1 else "") + ")"


def broadcast_shapes(*shapes) -> tuple[int, ...]:
    """NumPy's broadcast of shapes; the error names all of them, like NumPy's."""
    return _broadcast_dims(shapes)


def _broadcast_dims(shapes, name: str | None = None) -> tuple[int, ...]:
    """broadcast_shapes, with the error naming the function `name` that broadcasts."""
    shapes = [_dims(s) for s in shapes]
    ndim = builtins.max((len(s) for s in shapes), default=0)
    result = []
    for i in range(-ndim, 0):
        sizes = {s[i] for s in shapes if len(s) >= -i} - {1}
        if len(sizes) > 1:
            raise _value_error((f"{name}: " if name else "")
                               + "operands could not be broadcast together with shapes "
                               + " ".join(_shape_text(s) for s in shapes))
        result.append(sizes.pop() if sizes else 1)
    return tuple(result)


def _broadcast_to_shape(t: Tracer, dims: Sequence[int]) -> Tracer:
    """`t` broadcast to `dims` by NumPy's rules (trailing dims align; size 1 stretches)."""
    dims = tuple(dims)
    if t.shape == dims:
        return t
    lead = len(dims) - t.ndim
    if lead < 0 or builtins.any(d not in (1, dims[lead + i]) for i, d in enumerate(t.shape)):
        raise _value_error(f"cannot broadcast an array of shape {_shape_text(t.shape)} "
                           f"to shape {_shape_text(dims)}")
    return _emit("broadcast_in_dim", [t], {"broadcast_dimensions": tuple(range(lead, len(dims)))},
                 Shape(t.tdtype, dims))


def _broadcast_all(name: str, ts: Sequence[Tracer]) -> list[Tracer]:
    dims = _broadcast_dims([t.shape for t in ts], name)
    return [_broadcast_to_shape(t, dims) for t in ts]


def _operands(name: str, args, dts: Sequence[DType]) -> list[Tracer]:
    """Arguments of function `name` as tracers of the given dtypes, broadcast to their
    common shape."""
    _broadcast_dims([core.aval_of(a).dims for a in args], name)   # fail before emitting
    return _broadcast_all(name, [_tracer(a, d) for a, d in zip(args, dts)])


def _restore_dims(t: Tracer, in_shape: Sequence[int], axes: Sequence[int]) -> Tracer:
    """A reduction's result with the reduced axes kept as size 1 (keepdims)."""
    return _reshape(t, [1 if d in axes else n for d, n in enumerate(in_shape)])


# ----------------------------------------------------------------------------- elementwise: ufuncs by table

def _finish(fn, name: str, doc: str):
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    return traceable(_keeps_weakness(fn))


def _keeps_weakness(fn):
    """Arithmetic on weak values only (Python scalars passed to jit) stays weak, as
    Python arithmetic on Python scalars does in eager NumPy code."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        result = fn(*args, **kwargs)
        if (isinstance(result, Tracer) and builtins.any(isinstance(a, Tracer) for a in args)
                and builtins.all(core.is_weak_scalar(a) for a in args)):
            result = Tracer(result.ctx, result.instr, weak=True)
        return result
    return wrapper


def _binary(name: str, opcode: str, bool_opcode: str | None = None):
    """A binary ufunc that maps to one IR op (`bool_opcode` for bool results: add -> or)."""
    ufunc = getattr(np, name)

    def fn(x1, x2, /, out=None, *, dtype=None):
        _check_out(out, name)
        in_dts, out_dt = _resolve(ufunc, (x1, x2), dtype)
        a, b = _operands(name, (x1, x2), in_dts)
        opcode_used = bool_opcode if in_dts[0].is_pred and bool_opcode else opcode
        return _convert(_op(opcode_used, a, b), out_dt)
    return _finish(fn, name, f"NumPy's `{name}`, elementwise with broadcasting (IR `{opcode}`).")


def _comparison(name: str, direction: str):
    ufunc = getattr(np, name)

    def fn(x1, x2, /, out=None):
        _check_out(out, name)
        in_dts, _ = _resolve(ufunc, (x1, x2))
        in_dts = [_fit_weak_ints(in_dts[0], (x1, x2))] * 2
        a, b = _operands(name, (x1, x2), in_dts)
        return _cmp(a, b, direction)
    return _finish(fn, name, f"NumPy's `{name}`: compare({direction}) with broadcasting, bool result.")


def _fit_weak_ints(dt: DType, args) -> DType:
    """NumPy compares an integer array with an out-of-range Python int correctly: widen."""
    ints = [a for a in args if isinstance(a, int) and not isinstance(a, bool)]
    if not dt.is_integer or not ints:
        return dt
    info = np.iinfo(dt.storage)
    if builtins.all(info.min <= a <= info.max for a in ints):
        return dt
    fits_s64 = builtins.all(-2 ** 63 <= a < 2 ** 63 for a in ints)
    return dtypes.s64 if fits_s64 else dtypes.f64


def _logical(name: str, opcode: str):
    def fn(x1, x2, /, out=None):
        _check_out(out, name)
        a, b = _operands(name, (x1, x2), (dtypes.pred, dtypes.pred))
        return _op(opcode, a, b)
    return _finish(fn, name, f"NumPy's `{name}`: truth values combined with `{opcode}`.")


def _float_unary(name: str, opcode: str):
    """A unary ufunc whose loop is floating point (ints are cast as NumPy casts them)."""
    ufunc = getattr(np, name)

    def fn(x, /, out=None, *, dtype=None):
        _check_out(out, name)
        (in_dt,), out_dt = _resolve(ufunc, (x,), dtype)
        return _convert(_op(opcode, _tracer(x, in_dt)), out_dt)
    return _finish(fn, name, f"NumPy's `{name}` (IR `{opcode}`).")


add = _binary("add", "add", bool_opcode="or")
subtract = _binary("subtract", "subtract")
multiply = _binary("multiply", "multiply", bool_opcode="and")
divide = _binary("divide", "divide")
true_divide = divide
power = _binary("power", "power")
pow = power
maximum = _binary("maximum", "maximum")
minimum = _binary("minimum", "minimum")
arctan2 = _binary("arctan2", "atan2")
bitwise_and = _binary("bitwise_and", "and")
bitwise_or = _binary("bitwise_or", "or")
bitwise_xor = _binary("bitwise_xor", "xor")

equal = _comparison("equal", "EQ")
not_equal = _comparison("not_equal", "NE")
less = _comparison("less", "LT")
less_equal = _comparison("less_equal", "LE")
greater = _comparison("greater", "GT")
greater_equal = _comparison("greater_equal", "GE")

logical_and = _logical("logical_and", "and")
logical_or = _logical("logical_or", "or")
logical_xor = _logical("logical_xor", "xor")

exp = _float_unary("exp", "exp")
log = _float_unary("log", "log")
log1p = _float_unary("log1p", "log1p")
expm1 = _float_unary("expm1", "expm1")
sqrt = _float_unary("sqrt", "sqrt")
tanh = _float_unary("tanh", "tanh")
sin = _float_unary("sin", "sin")
cos = _float_unary("cos", "cos")
rint = _float_unary("rint", "round")


# ----------------------------------------------------------------------------- elementwise: special cases

def _unary_prologue(ufunc, x, dtype=None) -> tuple[Tracer, DType]:
    """`x` cast to the input dtype of NumPy's loop for `ufunc`, and the output dtype."""
    (in_dt,), out_dt = _resolve(ufunc, (x,), dtype)
    return _tracer(x, in_dt), out_dt


@traceable
def negative(x, /, out=None):
    _check_out(out, "negative")
    t, _ = _unary_prologue(np.negative, x)
    if t.tdtype.kind == "unsigned":   # wraps around, like NumPy
        return _op("subtract", _full_like_t(t, 0), t)
    return _op("negate", t)


@traceable
def positive(x, /, out=None):
    _check_out(out, "positive")
    return _unary_prologue(np.positive, x)[0]


@traceable
def absolute(x, /, out=None):
    _check_out(out, "absolute")
    t, _ = _unary_prologue(np.absolute, x)
    return t if t.tdtype.is_pred or t.tdtype.kind == "unsigned" else _op("abs", t)


abs = absolute


@traceable
def sign(x, /, out=None):
    _check_out(out, "sign")
    t, _ = _unary_prologue(np.sign, x)
    if t.tdtype.kind == "unsigned":
        return _convert(_convert(t, dtypes.pred), t.tdtype)
    return _op("sign", t)


def _rounding(name: str, opcode: str):
    """floor/ceil: the identity on bools and integers (NumPy 2 keeps their dtype)."""
    ufunc = getattr(np, name)

    def fn(x, /, out=None):
        _check_out(out, name)
        t, out_dt = _unary_prologue(ufunc, x)
        return _convert(_op(opcode, t) if t.tdtype.is_float else t, out_dt)
    return _finish(fn, name, f"NumPy's `{name}` (IR `{opcode}`).")


floor = _rounding("floor", "floor")
ceil = _rounding("ceil", "ceil")


@traceable
def trunc(x, /, out=None):
    _check_out(out, "trunc")
    t, _ = _unary_prologue(np.trunc, x)
    if not t.tdtype.is_float:
        return t
    return _select(_cmp(t, _full_like_t(t, 0), "LT"), _op("ceil", t), _op("floor", t))


fix = trunc


@traceable
def round(a, decimals=0, out=None):
    """NumPy's round: half to even, scaling by 10**decimals like NumPy does."""
    _check_out(out, "round")
    decimals = operator.index(decimals)
    t = _tracer(a)
    if t.tdtype.is_pred:
        t = _convert(t, _unary_prologue(np.rint, a)[1])
    if t.tdtype.is_integer:
        return t if decimals >= 0 else _round_int(t, 10 ** -decimals)
    if decimals == 0:
        return _op("round", t)
    scale = _full_like_t(t, 10.0 ** builtins.abs(decimals))
    if decimals > 0:
        return _op("divide", _op("round", _op("multiply", t, scale)), scale)
    return _op("multiply", _op("round", _op("divide", t, scale)), scale)


around = round


def _round_int(t: Tracer, unit: int) -> Tracer:
    """Integers rounded to a multiple of `unit`, halves to even (NumPy's round(x, -d))."""
    u = _full_like_t(t, unit)
    q, r = _int_divmod(t, u)
    twice = _op("add", r, r)
    odd = _cmp(_op("remainder", q, _full_like_t(q, 2)), _full_like_t(q, 0), "NE")
    up = _op("or", _cmp(twice, u, "GT"), _op("and", _cmp(twice, u, "EQ"), odd))
    q = _select(up, _op("add", q, _full_like_t(q, 1)), q)
    return _op("multiply", q, u)


@traceable
def square(x, /, out=None):
    _check_out(out, "square")
    t, _ = _unary_prologue(np.square, x)
    return _op("multiply", t, t)


@traceable
def reciprocal(x, /, out=None):
    _check_out(out, "reciprocal")
    t, _ = _unary_prologue(np.reciprocal, x)
    return _op("divide", _full_like_t(t, 1), t)


@traceable
def log2(x, /, out=None):
    _check_out(out, "log2")
    t, _ = _unary_prologue(np.log2, x)
    return _op("divide", _op("log", t), _full_like_t(t, math.log(2.0)))


@traceable
def log10(x, /, out=None):
    _check_out(out, "log10")
    t, _ = _unary_prologue(np.log10, x)
    return _op("divide", _op("log", t), _full_like_t(t, math.log(10.0)))


@traceable
def exp2(x, /, out=None):
    _check_out(out, "exp2")
    t, _ = _unary_prologue(np.exp2, x)
    return _op("power", _full_like_t(t, 2), t)


@traceable
def logical_not(x, /, out=None):
    _check_out(out, "logical_not")
    return _op("not", _tracer(x, dtypes.pred))


@traceable
def invert(x, /, out=None):
    _check_out(out, "invert")
    t, _ = _unary_prologue(np.invert, x)
    return _op("not", t)


bitwise_not = bitwise_invert = invert


@traceable
def isnan(x, /, out=None):
    _check_out(out, "isnan")
    t = _tracer(x)
    if not t.tdtype.is_float:
        return _broadcast_to_shape(_scalar(False, dtypes.pred), t.shape)
    return _cmp(t, t, "NE")


@traceable
def isinf(x, /, out=None):
    _check_out(out, "isinf")
    t = _tracer(x)
    if not t.tdtype.is_float:
        return _broadcast_to_shape(_scalar(False, dtypes.pred), t.shape)
    return _cmp(_op("abs", t), _full_like_t(t, np.inf), "EQ")


@traceable
def isfinite(x, /, out=None):
    _check_out(out, "isfinite")
    t = _tracer(x)
    if not t.tdtype.is_float:
        return _broadcast_to_shape(_scalar(True, dtypes.pred), t.shape)
    return _op("is_finite", t)


@traceable
def signbit(x, /, out=None):
    _check_out(out, "signbit")
    t, _ = _unary_prologue(np.signbit, x)
    if t.tdtype.kind != "float":
        return _cmp(t, _full_like_t(t, 0), "LT")
    # x < 0, or x is -0.0 (1 / -0.0 == -inf); the sign of a NaN is not seen
    negative_zero = _op("and", _cmp(t, _full_like_t(t, 0), "EQ"),
                        _cmp(_op("divide", _full_like_t(t, 1), t), _full_like_t(t, 0), "LT"))
    return _op("or", _cmp(t, _full_like_t(t, 0), "LT"), negative_zero)


def _int_divmod(a: Tracer, b: Tracer) -> tuple[Tracer, Tracer]:
    """Floor division and modulo of integers, as NumPy: x // 0 == x % 0 == 0."""
    zero = _full_like_t(b, 0)
    b_zero = _cmp(b, zero, "EQ")
    safe_b = _select(b_zero, _full_like_t(b, 1), b)
    q, r = _op("divide", a, safe_b), _op("remainder", a, safe_b)   # truncating, C-like
    if a.tdtype.kind == "signed":
        fix = _op("and", _cmp(r, zero, "NE"),
                  _cmp(_cmp(r, zero, "LT"), _cmp(safe_b, zero, "LT"), "NE"))
        q = _select(fix, _op("subtract", q, _full_like_t(q, 1)), q)
        r = _select(fix, _op("add", r, safe_b), r)
    return _select(b_zero, zero, q), _select(b_zero, zero, r)


def _float_divmod(a: Tracer, b: Tracer) -> tuple[Tracer, Tracer]:
    """NumPy's npy_divmod: floor division and a modulo with the divisor's sign."""
    zero = _full_like_t(a, 0)
    mod = _op("remainder", a, b)   # fmod: the dividend's sign
    div = _op("divide", _op("subtract", a, mod), b)
    fix = _op("and", _cmp(mod, zero, "NE"),
              _cmp(_cmp(b, zero, "LT"), _cmp(mod, zero, "LT"), "NE"))
    mod = _select(fix, _op("add", mod, b), mod)
    div = _select(fix, _op("subtract", div, _full_like_t(a, 1)), div)
    signed_zero = _select(_cmp(b, zero, "LT"), _full_like_t(a, -0.0), zero)
    mod = _select(_cmp(mod, zero, "EQ"), signed_zero, mod)
    floordiv = _op("floor", div)
    half_up = _cmp(_op("subtract", div, floordiv), _full_like_t(a, 0.5), "GT")
    floordiv = _select(half_up, _op("add", floordiv, _full_like_t(a, 1)), floordiv)
    quotient = _op("divide", a, b)
    floordiv = _select(_cmp(div, zero, "EQ"), _op("multiply", quotient, zero), floordiv)
    floordiv = _select(_cmp(b, zero, "EQ"), quotient, floordiv)
    return floordiv, mod


def _divmod_tracers(ufunc, x1, x2) -> tuple[Tracer, Tracer]:
    in_dts, out_dt = _resolve(ufunc, (x1, x2))
    a, b = _operands(ufunc.__name__, (x1, x2), in_dts)
    dt = a.tdtype   # never pred: NumPy's loops for bools are int8
    if not dt.is_float:
        q, r = _int_divmod(a, b)
    elif dt.bits == 16:   # NumPy computes half-precision divmod in float32
        q, r = _float_divmod(_convert(a, dtypes.f32), _convert(b, dtypes.f32))
    else:
        q, r = _float_divmod(a, b)
    return _convert(q, out_dt), _convert(r, out_dt)


@traceable
def floor_divide(x1, x2, /, out=None):
    _check_out(out, "floor_divide")
    return _divmod_tracers(np.floor_divide, x1, x2)[0]


@traceable
def remainder(x1, x2, /, out=None):
    _check_out(out, "remainder")
    return _divmod_tracers(np.remainder, x1, x2)[1]


mod = remainder


@traceable
def divmod(x1, x2, /, out1=None, out2=None):
    _check_out(out1 if out1 is not None else out2, "divmod")
    return _divmod_tracers(np.divmod, x1, x2)


@traceable
def fmod(x1, x2, /, out=None):
    """C's fmod: the result has the dividend's sign (x % 0 is 0 for integers, like NumPy)."""
    _check_out(out, "fmod")
    in_dts, out_dt = _resolve(np.fmod, (x1, x2))
    a, b = _operands("fmod", (x1, x2), in_dts)
    if a.tdtype.is_float:
        return _op("remainder", a, b)
    b_zero = _cmp(b, _full_like_t(b, 0), "EQ")
    r = _op("remainder", a, _select(b_zero, _full_like_t(b, 1), b))
    return _select(b_zero, _full_like_t(r, 0), r)


@traceable
def where(condition, x=None, y=None, /):
    if x is None or y is None:
        raise _unsupported("where(condition) with one argument has a data-dependent shape; "
                           "tessel supports where(condition, x, y)")
    dt = _promote(x, y)
    c, a, b = _operands("where", (condition, x, y), (dtypes.pred, dt, dt))
    return _select(c, a, b)


@traceable
def clip(a, a_min=None, a_max=None, out=None, *, min=None, max=None):
    """NumPy's clip: minimum(maximum(a, a_min), a_max); either bound may be None."""
    _check_out(out, "clip")
    lo = a_min if a_min is not None else min
    hi = a_max if a_max is not None else max
    bounds = [v for v in (lo, hi) if v is not None]
    dt = _promote(a, *bounds)
    x, *ts = _operands("clip", (a, *bounds), [dt] * (1 + len(bounds)))
    if lo is not None and hi is not None:
        return _emit("clamp", [ts[0], x, ts[1]])
    if lo is not None:
        return _op("maximum", x, ts[0])
    return _op("minimum", x, ts[0]) if hi is not None else x


@traceable
def fmax(x1, x2, /, out=None):
    """maximum that ignores NaNs (returns the other operand)."""
    _check_out(out, "fmax")
    return _nan_ignoring(np.fmax, "maximum", x1, x2)


@traceable
def fmin(x1, x2, /, out=None):
    _check_out(out, "fmin")
    return _nan_ignoring(np.fmin, "minimum", x1, x2)


def _nan_ignoring(ufunc, opcode, x1, x2) -> Tracer:
    in_dts, _ = _resolve(ufunc, (x1, x2))
    a, b = _operands(ufunc.__name__, (x1, x2), in_dts)
    result = _op(opcode, a, b)
    if a.tdtype.is_float:
        result = _select(_cmp(a, a, "NE"), b, _select(_cmp(b, b, "NE"), a, result))
    return result


@traceable
def logaddexp(x1, x2, /, out=None):
    """log(exp(x1) + exp(x2)) without overflow: max + log1p(exp(-|x1 - x2|))."""
    _check_out(out, "logaddexp")
    in_dts, out_dt = _resolve(np.logaddexp, (x1, x2))
    a, b = _operands("logaddexp", (x1, x2), in_dts)
    if a.tdtype.bits == 16:   # NumPy computes half precision in float32
        a, b = _convert(a, dtypes.f32), _convert(b, dtypes.f32)
    gap = _op("negate", _op("abs", _op("subtract", a, b)))
    result = _op("add", _op("maximum", a, b), _op("log1p", _op("exp", gap)))
    same = _op("add", a, _full_like_t(a, math.log(2.0)))   # also equal infinities
    return _convert(_select(_cmp(a, b, "EQ"), same, result), out_dt)


@traceable
def isclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    """NumPy's isclose: |a - b| <= atol + rtol * |b| for finite b, else a == b."""
    if not core.is_weak_scalar(b):
        b = astype(b, _promote(b, 1.0))
    close = less_equal(absolute(subtract(a, b)), add(atol, multiply(rtol, absolute(b))))
    result = logical_or(logical_and(close, isfinite(b)), equal(a, b))
    if equal_nan:
        result = logical_or(result, logical_and(isnan(a), isnan(b)))
    return result


@traceable
def allclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    """all(isclose(...)) as a 0-d bool array (a Python bool needs a concrete value)."""
    return all(isclose(a, b, rtol, atol, equal_nan))


@traceable
def nan_to_num(x, copy=True, nan=0.0, posinf=None, neginf=None):
    t = _tracer(x)
    if not t.tdtype.is_float:
        return t
    info = finfo(t.tdtype)
    t = _select(_cmp(t, t, "NE"), _full_like_t(t, nan), t)
    t = _select(_cmp(t, _full_like_t(t, np.inf), "EQ"), _full_like_t(t, info.max if posinf is None else posinf), t)
    return _select(_cmp(t, _full_like_t(t, -np.inf), "EQ"),
                   _full_like_t(t, info.min if neginf is None else neginf), t)


# ----------------------------------------------------------------------------- reductions

def _reducer_opcode(opcode: str, dt: DType) -> str:
    return {"add": "or", "multiply": "and"}.get(opcode, opcode) if dt.is_pred else opcode


def _reduce(x: Tracer, opcode: str, init, axes: Sequence[int], keepdims: bool) -> Tracer:
    """A reduce over `axes` with the shared scalar reducer for `opcode`."""
    dt = x.tdtype
    opcode = _reducer_opcode(opcode, dt)
    out = _emit("reduce", [x, _scalar(init, dt)],
                {"dimensions": tuple(axes), "to_apply": _ctx().reducer(opcode, dt)})
    return _restore_dims(out, x.shape, axes) if keepdims else out


def _lowest(dt: DType):
    if dt.is_float:
        return -np.inf
    return False if dt.is_pred else np.iinfo(dt.storage).min


def _highest(dt: DType):
    if dt.is_float:
        return np.inf
    return True if dt.is_pred else np.iinfo(dt.storage).max


def _accumulator_dtype(dt: DType) -> DType:
    """The default dtype of sum/prod/cumsum: NumPy's platform ints for bools and small ints."""
    if dt.is_pred or dt.kind == "signed":
        return dtypes.s64
    if dt.kind == "unsigned":
        return dtypes.u32   # NumPy: uint64, which tessel does not have
    return dt


def _reduced_count(shape, axes) -> int:
    return math.prod(shape[a] for a in axes)


def _no_where(where, name: str) -> None:
    if where is not None and where is not True:
        raise _unsupported(f"{name}: where= is not supported; use tessel.numpy.where on the "
                           f"input instead")


def _sum_like(opcode, identity, a, axis, dtype, keepdims, initial) -> Tracer:
    x = _tracer(a)
    dt = _as_dtype(dtype) if dtype is not None else _accumulator_dtype(x.tdtype)
    x = _convert(x, dt)
    result = _reduce(x, opcode, identity, _axes(axis, x.ndim), keepdims)
    if initial is not None:
        result = _op(_reducer_opcode(opcode, dt), result, _full_like_t(result, initial))
    return result


@traceable
def sum(a, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=None):
    _check_out(out, "sum")
    _no_where(where, "sum")
    return _sum_like("add", 0, a, axis, dtype, keepdims, initial)


@traceable
def prod(a, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=None):
    _check_out(out, "prod")
    _no_where(where, "prod")
    return _sum_like("multiply", 1, a, axis, dtype, keepdims, initial)


def _extreme(opcode: str, a, axis, keepdims, initial) -> Tracer:
    x = _tracer(a)
    axes = _axes(axis, x.ndim)
    if initial is None and builtins.any(x.shape[d] == 0 for d in axes):
        raise _value_error(f"zero-size array to reduction operation {opcode} which has no identity")
    if initial is None:
        initial = _lowest(x.tdtype) if opcode == "maximum" else _highest(x.tdtype)
    return _reduce(x, opcode, initial, axes, keepdims)


@traceable
def max(a, axis=None, out=None, keepdims=False, initial=None, where=None):
    _check_out(out, "max")
    _no_where(where, "max")
    return _extreme("maximum", a, axis, keepdims, initial)


@traceable
def min(a, axis=None, out=None, keepdims=False, initial=None, where=None):
    _check_out(out, "min")
    _no_where(where, "min")
    return _extreme("minimum", a, axis, keepdims, initial)


amax, amin = max, min


def _moment_dtypes(x: Tracer, dtype) -> tuple[DType, DType]:
    """(accumulation dtype, result dtype) of mean/var: NumPy's f64 for ints, f32 for halves."""
    if dtype is not None:
        out_dt = _as_dtype(dtype)
    elif x.tdtype.is_float:
        out_dt = x.tdtype
    else:
        out_dt = dtypes.f64
    acc = dtypes.f32 if out_dt.is_float and out_dt.bits == 16 else out_dt
    return (acc if acc.is_float else dtypes.f64), out_dt


def _mean(x: Tracer, axes, acc: DType, keepdims: bool) -> Tracer:
    total = _reduce(_convert(x, acc), "add", 0, axes, keepdims)
    return _op("divide", total, _full_like_t(total, _reduced_count(x.shape, axes)))


@traceable
def mean(a, axis=None, dtype=None, out=None, keepdims=False, *, where=None):
    _check_out(out, "mean")
    _no_where(where, "mean")
    x = _tracer(a)
    acc, out_dt = _moment_dtypes(x, dtype)
    return _convert(_mean(x, _axes(axis, x.ndim), acc, keepdims), out_dt)


def _variance(name, a, axis, dtype, out, ddof, keepdims, where, mean, correction) -> Tracer:
    """var (name "var") or its square root (name "std")."""
    _check_out(out, name)
    _no_where(where, name)
    if mean is not None:
        raise _unsupported(f"{name}: mean= is not supported")
    x = _tracer(a)
    if correction is not None:
        ddof = correction
    axes = _axes(axis, x.ndim)
    acc, out_dt = _moment_dtypes(x, dtype)
    xc = _convert(x, acc)
    centered = _op("subtract", xc, _broadcast_to_shape(_mean(xc, axes, acc, True), xc.shape))
    squares = _reduce(_op("multiply", centered, centered), "add", 0, axes, keepdims)
    denom = builtins.max(_reduced_count(x.shape, axes) - ddof, 0)
    result = _op("divide", squares, _full_like_t(squares, denom))
    return _convert(_op("sqrt", result) if name == "std" else result, out_dt)


@traceable
def var(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, where=None, mean=None,
        correction=None):
    return _variance("var", a, axis, dtype, out, ddof, keepdims, where, mean, correction)


@traceable
def std(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, where=None, mean=None,
        correction=None):
    return _variance("std", a, axis, dtype, out, ddof, keepdims, where, mean, correction)


@traceable
def any(a, axis=None, out=None, keepdims=False, *, where=None):
    _check_out(out, "any")
    _no_where(where, "any")
    x = _tracer(a, dtypes.pred)
    return _reduce(x, "or", False, _axes(axis, x.ndim), keepdims)


@traceable
def all(a, axis=None, out=None, keepdims=False, *, where=None):
    _check_out(out, "all")
    _no_where(where, "all")
    x = _tracer(a, dtypes.pred)
    return _reduce(x, "and", True, _axes(axis, x.ndim), keepdims)


# Scalar computations this module builds (argmax reducers, sort comparators), per
# module, so each is built once: {module: {key: computation}}.
_COMPUTATIONS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _cached_computation(key, build):
    module = _ctx().module
    cache = _COMPUTATIONS.setdefault(module, {})
    if key not in cache:
        cache[key] = build(module)
    return cache[key]


def _arg_reducer(direction: str, dt: DType):
    """(value, index) pairs -> the better one: larger (GT) or smaller (LT) value, NaN
    beating every number, the smaller index on ties. A total order, so the reduction
    may combine in any order and still returns NumPy's first occurrence."""
    def build(module):
        b = Builder(module, f"{'argmax' if direction == 'GT' else 'argmin'}.{dt.name}")
        acc_v, acc_i = b.parameter(Shape(dt, ()), "acc_v"), b.parameter(Shape(dtypes.s64, ()), "acc_i")
        v, i = b.parameter(Shape(dt, ()), "v"), b.parameter(Shape(dtypes.s64, ()), "i")

        def cmp(x, y, d):
            return b.emit("compare", [x, y], {"direction": d})

        better, tie = cmp(v, acc_v, direction), cmp(v, acc_v, "EQ")
        if dt.is_float:
            v_nan, acc_nan = cmp(v, v, "NE"), cmp(acc_v, acc_v, "NE")
            better = b.emit("or", [better, b.emit("and", [v_nan, b.emit("not", [acc_nan])])])
            tie = b.emit("or", [tie, b.emit("and", [v_nan, acc_nan])])
        take = b.emit("or", [better, b.emit("and", [tie, cmp(i, acc_i, "LT")])])
        root = b.emit("tuple", [b.emit("select", [take, v, acc_v]), b.emit("select", [take, i, acc_i])])
        return b.build(root)
    return _cached_computation(("arg", direction, dt.name), build)


def _arg_extreme(name: str, direction: str, a, axis, keepdims) -> Tracer:
    x = _tracer(a)
    if axis is None:
        result = _arg_extreme(name, direction, _reshape(x, (x.size,)), 0, False)
        return _reshape(result, (1,) * x.ndim) if keepdims else result
    ax = _axis(axis, x.ndim)
    if x.shape[ax] == 0:
        raise _value_error(f"attempt to get {name} of an empty sequence")
    init = _lowest(x.tdtype) if direction == "GT" else _highest(x.tdtype)
    operands = [x, _iota(dtypes.s64, x.shape, ax), _scalar(init, x.tdtype),
                _scalar(np.iinfo(np.int64).max, dtypes.s64)]
    _, index = _ctx().emit_multi("reduce", operands, {"dimensions": (ax,),
                                                      "to_apply": _arg_reducer(direction, x.tdtype)})
    return _restore_dims(index, x.shape, (ax,)) if keepdims else index


@traceable
def argmax(a, axis=None, out=None, *, keepdims=False):
    _check_out(out, "argmax")
    return _arg_extreme("argmax", "GT", a, axis, keepdims)


@traceable
def argmin(a, axis=None, out=None, *, keepdims=False):
    _check_out(out, "argmin")
    return _arg_extreme("argmin", "LT", a, axis, keepdims)


def _cumulative(opcode: str, identity, a, axis, dtype) -> Tracer:
    """A running reduction: reduce_window with a window of the whole axis, padded in front."""
    x = _tracer(a)
    if axis is None:
        x, axis = _reshape(x, (x.size,)), 0
    ax = _axis(axis, x.ndim)
    dt = _as_dtype(dtype) if dtype is not None else _accumulator_dtype(x.tdtype)
    x = _convert(x, dt)
    n = x.shape[ax]
    if n <= 1:
        return x
    window, padding = [1] * x.ndim, [(0, 0)] * x.ndim
    window[ax], padding[ax] = n, (n - 1, 0)
    reducer = _ctx().reducer(_reducer_opcode(opcode, dt), dt)
    return _emit("reduce_window", [x, _scalar(identity, dt)],
                 {"window_dimensions": tuple(window), "padding": tuple(padding), "to_apply": reducer})


@traceable
def cumsum(a, axis=None, dtype=None, out=None):
    _check_out(out, "cumsum")
    return _cumulative("add", 0, a, axis, dtype)


@traceable
def cumprod(a, axis=None, dtype=None, out=None):
    _check_out(out, "cumprod")
    return _cumulative("multiply", 1, a, axis, dtype)


# ----------------------------------------------------------------------------- sorting

def _less_than(dt: DType, with_index: bool):
    """Sort comparator on (lhs, rhs[, lhs index, rhs index]): lhs < rhs, NaNs after every
    number (NumPy's order), so the order is defined on every backend."""
    def build(module):
        b = Builder(module, f"less.{dt.name}")
        lhs, rhs = b.parameter(Shape(dt, ()), "lhs"), b.parameter(Shape(dt, ()), "rhs")
        if with_index:
            b.parameter(Shape(dtypes.s64, ()), "lhs_index")
            b.parameter(Shape(dtypes.s64, ()), "rhs_index")
        less = b.emit("compare", [lhs, rhs], {"direction": "LT"})
        if dt.is_float:
            rhs_nan = b.emit("compare", [rhs, rhs], {"direction": "NE"})
            lhs_number = b.emit("compare", [lhs, lhs], {"direction": "EQ"})
            less = b.emit("or", [less, b.emit("and", [rhs_nan, lhs_number])])
        return b.build(less)
    return _cached_computation(("less", dt.name, with_index), build)


def _sort_axis(a, axis) -> tuple[Tracer, int]:
    x = _tracer(a)
    if axis is None:
        return _reshape(x, (x.size,)), 0
    return x, _axis(axis, x.ndim)


@traceable
def sort(a, axis=-1, kind=None, order=None, *, stable=None):
    """Sorted along `axis` (None: flattened), NaNs last; the sort is stable."""
    x, ax = _sort_axis(a, axis)
    return _emit("sort", [x], {"dimension": ax, "is_stable": True,
                               "comparator": _less_than(x.tdtype, False)})


@traceable
def argsort(a, axis=-1, kind=None, order=None, *, stable=None):
    """Indices that sort `a` along `axis` (a stable sort: ties keep their order)."""
    x, ax = _sort_axis(a, axis)
    attrs = {"dimension": ax, "is_stable": True, "comparator": _less_than(x.tdtype, True)}
    _, indices = _ctx().emit_multi("sort", [x, _iota(dtypes.s64, x.shape, ax)], attrs)
    return indices


# ----------------------------------------------------------------------------- linear algebra

def _dot_general(a: Tracer, b: Tracer, contracting, batching=((), ())) -> Tracer:
    """dot_general of two tracers of one dtype; bools go through int32 (NumPy: or of ands)."""
    attrs = {"lhs_contracting_dims": tuple(contracting[0]), "rhs_contracting_dims": tuple(contracting[1]),
             "lhs_batching_dims": tuple(batching[0]), "rhs_batching_dims": tuple(batching[1])}
    if a.tdtype.is_pred:
        product = _emit("dot_general", [_convert(a, dtypes.s32), _convert(b, dtypes.s32)], attrs)
        return _convert(product, dtypes.pred)
    return _emit("dot_general", [a, b], attrs)


def _promoted(*args) -> list[Tracer]:
    """Arguments as tracers of their common dtype (no broadcasting)."""
    dt = _promote(*args)
    return [_tracer(a, dt) for a in args]


_MATMUL_SIGNATURE = "with gufunc signature (n?,k),(k,m?)->(n?,m?)"


@traceable
def matmul(x1, x2, /, out=None):
    """NumPy's matmul: 1-D operands promoted to matrices, batch dims broadcast."""
    _check_out(out, "matmul")
    a, b = _promoted(x1, x2)
    for i, t in enumerate((a, b)):
        if t.ndim == 0:
            raise _value_error(f"matmul: Input operand {i} does not have enough dimensions "
                               f"(has 0, gufunc core {_MATMUL_SIGNATURE} requires 1)")
    ka, kb = a.shape[-1], b.shape[-2 if b.ndim > 1 else 0]
    if ka != kb:
        raise _value_error(f"matmul: Input operand 1 has a mismatch in its core dimension 0, "
                           f"{_MATMUL_SIGNATURE} (size {kb} is different from {ka})")
    if b.ndim <= 2:   # (..., n, k) @ (k[, m]): the lhs batch dims stay free dims
        return _dot_general(a, b, ([a.ndim - 1], [0]))
    if a.ndim == 1:   # (k) @ (..., k, m)
        return _dot_general(a, b, ([0], [b.ndim - 2]))
    if a.ndim == 2:   # (n, k) @ (..., k, m) -> (n, ..., m) -> (..., n, m)
        out = _dot_general(a, b, ([1], [b.ndim - 2]))
        return _transpose(out, [*range(1, b.ndim - 1), 0, b.ndim - 1])
    try:
        batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except TracedValueError:
        raise _value_error(f"matmul: batch dimensions of shapes {_shape_text(a.shape)} and "
                           f"{_shape_text(b.shape)} could not be broadcast together") from None
    a = _broadcast_to_shape(a, batch + a.shape[-2:])
    b = _broadcast_to_shape(b, batch + b.shape[-2:])
    nb = len(batch)
    return _dot_general(a, b, ([nb + 1], [nb]), (range(nb), range(nb)))


@traceable
def dot(a, b, out=None):
    """NumPy's dot: a product with a scalar, else a sum over a's last and b's second-to-last axis."""
    _check_out(out, "dot")
    x, y = _promoted(a, b)
    if x.ndim == 0 or y.ndim == 0:
        return multiply(x, y)
    ax, ay = x.ndim - 1, builtins.max(y.ndim - 2, 0)
    if x.shape[ax] != y.shape[ay]:
        raise _value_error(f"shapes {_shape_text(x.shape)} and {_shape_text(y.shape)} not aligned: "
                           f"{x.shape[ax]} (dim {ax}) != {y.shape[ay]} (dim {ay})")
    return _dot_general(x, y, ([ax], [ay]))


@traceable
def vdot(a, b, /):
    x, y = _promoted(a, b)
    x, y = _reshape(x, (x.size,)), _reshape(y, (y.size,))
    if x.size != y.size:
        raise _value_error("vdot: input arrays must have the same number of elements, got "
                           f"{x.size} and {y.size}")
    return _dot_general(x, y, ([0], [0]))


@traceable
def inner(a, b, /):
    x, y = _promoted(a, b)
    if x.ndim == 0 or y.ndim == 0:
        return multiply(x, y)
    if x.shape[-1] != y.shape[-1]:
        raise _value_error(f"shapes {_shape_text(x.shape)} and {_shape_text(y.shape)} not aligned: "
                           f"{x.shape[-1]} (dim {x.ndim - 1}) != {y.shape[-1]} (dim {y.ndim - 1})")
    return _dot_general(x, y, ([x.ndim - 1], [y.ndim - 1]))


@traceable
def outer(a, b, out=None):
    _check_out(out, "outer")
    x, y = _promoted(a, b)
    return multiply(_reshape(x, (x.size, 1)), _reshape(y, (1, y.size)))


@traceable
def tensordot(a, b, axes=2):
    """Sum over `axes` (n: a's last n and b's first n; or a pair of axis lists)."""
    x, y = _promoted(a, b)
    if np.ndim(axes) == 0:
        n = operator.index(axes)
        if n < 0 or n > builtins.min(x.ndim, y.ndim):
            raise _value_error(f"tensordot: cannot contract {n} axes of arrays of shapes "
                               f"{_shape_text(x.shape)} and {_shape_text(y.shape)}")
        ax, ay = list(range(x.ndim - n, x.ndim)), list(range(n))
    else:
        ax_raw, ay_raw = axes
        ax, ay = _axis_list(ax_raw, x.ndim), _axis_list(ay_raw, y.ndim)
    if len(ax) != len(ay) or builtins.any(x.shape[i] != y.shape[j] for i, j in zip(ax, ay)):
        raise _value_error("shape-mismatch for sum")
    return _dot_general(x, y, (ax, ay))


def _diagonal_mask(dims: Sequence[int], row: int, col: int, offset: int) -> Tracer:
    """pred[dims]: true where index[col] - index[row] == offset."""
    diff = _op("subtract", _iota(dtypes.s64, dims, col), _iota(dtypes.s64, dims, row))
    return _cmp(diff, _broadcast_to_shape(_scalar(offset, dtypes.s64), dims), "EQ")


def _take_diagonal(x: Tracer, p: int, q: int) -> Tracer:
    """x[..., i (at p), ..., i (at q), ...] with axis q removed (masked sum over q)."""
    masked = _select(_diagonal_mask(x.shape, p, q, 0), x, _full_like_t(x, 0))
    return _reduce(masked, "add", 0, (q,), False)


@traceable
def diagonal(a, offset=0, axis1=0, axis2=1):
    """NumPy's diagonal: the diagonal becomes the last axis."""
    x = _tracer(a)
    if x.ndim < 2:
        raise _value_error("diag requires an array of at least two dimensions")
    ax1, ax2 = _axis(axis1, x.ndim), _axis(axis2, x.ndim)
    if ax1 == ax2:
        raise _value_error("axis1 and axis2 cannot be the same")
    x = moveaxis(x, (ax1, ax2), (-2, -1))
    n, m = x.shape[-2:]
    masked = _select(_diagonal_mask(x.shape, x.ndim - 2, x.ndim - 1, offset), x, _full_like_t(x, 0))
    if offset >= 0:
        length, along = builtins.max(0, builtins.min(n, m - offset)), x.ndim - 1
    else:
        length, along = builtins.max(0, builtins.min(n + offset, m)), x.ndim - 2
    summed = _reduce(masked, "add", 0, (along,), False)
    return _slice_axis(summed, summed.ndim - 1, 0, length)


@traceable
def trace(a, offset=0, axis1=0, axis2=1, dtype=None, out=None):
    _check_out(out, "trace")
    return sum(diagonal(a, offset, axis1, axis2), axis=-1, dtype=dtype)


@traceable
def diag(v, k=0):
    """The k-th diagonal of a 2-D array, or a 2-D array with v on its k-th diagonal."""
    x = _tracer(v)
    if x.ndim == 2:
        return diagonal(x, k)
    if x.ndim != 1:
        raise _value_error("Input must be 1- or 2-d.")
    n = x.shape[0] + builtins.abs(k)
    padded = pad(x, (0, builtins.abs(k)))
    along = 0 if k >= 0 else 1   # row i holds v[i] (k >= 0); column j holds v[j] (k < 0)
    spread = _emit("broadcast_in_dim", [padded], {"broadcast_dimensions": (along,)},
                   Shape(x.tdtype, (n, n)))
    return _select(_diagonal_mask((n, n), 0, 1, k), spread, _full_like_t(spread, 0))


# -- einsum

_ELLIPSIS_LABEL = "..."


def _parse_einsum(subscripts: str, ranks: Sequence[int]) -> tuple[list[list[str]], list[str]]:
    """Subscripts -> one label list per operand and the output labels. Ellipsis dims get
    labels '...0', '...1' ... aligned from the right, as NumPy broadcasts them."""
    spec = subscripts.replace(" ", "")
    lhs, arrow, out = spec.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise _value_error(f"einsum: subscripts {subscripts!r} name {len(terms)} operands, "
                           f"given {len(ranks)}")
    ell_rank = 0
    for term, rank in zip(terms, ranks):
        ell_rank = builtins.max(ell_rank, rank - len(term.replace(_ELLIPSIS_LABEL, "")))
    ell_labels = [f"...{i}" for i in range(ell_rank)]
    inputs = [_einsum_term(term, rank, i, ell_labels) for i, (term, rank) in enumerate(zip(terms, ranks))]
    if arrow:
        output = _einsum_term(out, None, "output", ell_labels)
        if len(set(output)) != len(output):
            raise _value_error(f"einsum: output subscripts {out!r} repeat an index")
        missing = [l for l in output if not builtins.any(l in term for term in inputs)]
        if missing:
            raise _value_error(f"einsum: output index {missing[0]!r} does not appear in any operand")
        extra_ell = [l for t in inputs for l in t if l.startswith(_ELLIPSIS_LABEL) and l not in output]
        if extra_ell and _ELLIPSIS_LABEL not in out:
            raise _value_error("einsum: output has more dimensions than subscripts given, but no "
                               "'...' ellipsis provided to broadcast the extra dimensions")
    else:
        counts: dict[str, int] = {}
        for term in inputs:
            for label in term:
                counts[label] = counts.get(label, 0) + 1
        used_ell = [l for l in ell_labels if l in counts]
        output = used_ell + sorted(l for l, c in counts.items() if c == 1 and l not in ell_labels)
    return inputs, output


def _einsum_term(term: str, rank: int | None, which, ell_labels: list[str]) -> list[str]:
    head, ell, tail = term.partition(_ELLIPSIS_LABEL)
    for label in head + tail:
        if not label.isalpha():
            raise _value_error(f"einsum: invalid subscript {label!r} in {term!r}; "
                               f"use letters and '...'")
    if not ell:
        if rank is not None and len(term) != rank:
            raise _value_error(f"einsum: operand {which} has {rank} dimensions but its "
                               f"subscripts {term!r} name {len(term)}")
        return list(term)
    n_ell = len(ell_labels) if rank is None else rank - len(head) - len(tail)
    if n_ell < 0:
        raise _value_error(f"einsum: operand {which} has {rank} dimensions, fewer than its "
                           f"subscripts {term!r} name")
    return list(head) + ell_labels[len(ell_labels) - n_ell:] + list(tail)


def _einsum_sizes(ts: Sequence[Tracer], terms: Sequence[list[str]]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for k, (t, labels) in enumerate(zip(ts, terms)):
        for label, n in zip(labels, t.shape):
            known = sizes.get(label, 1)
            if n != known and 1 not in (n, known):
                what = "ellipsis dimension" if label.startswith(_ELLIPSIS_LABEL) else f"index {label!r}"
                raise _value_error(f"einsum: operand {k} has size {n} for {what}, other operands "
                                   f"have {known}")
            sizes[label] = builtins.max(known, n) if label in sizes else n
    return sizes


def _sum_out(t: Tracer, labels: list[str], keep: set) -> tuple[Tracer, list[str]]:
    axes = [i for i, l in enumerate(labels) if l not in keep]
    if not axes:
        return t, labels
    return _reduce(t, "add", 0, axes, False), [l for l in labels if l in keep]


def _contract(x, xl, y, yl, keep: set) -> tuple[Tracer, list[str]]:
    """One dot_general: shared labels still needed are batch dims, the others contract."""
    shared = [l for l in xl if l in yl]
    batch = [l for l in shared if l in keep]
    summed = [l for l in shared if l not in keep]
    out = _dot_general(x, y, ([xl.index(l) for l in summed], [yl.index(l) for l in summed]),
                       ([xl.index(l) for l in batch], [yl.index(l) for l in batch]))
    return out, batch + [l for l in xl if l not in shared] + [l for l in yl if l not in shared]


@traceable
def einsum(subscripts, *operands, dtype=None, optimize=None, out=None, casting=None, order=None):
    """Einstein summation: diagonals by masking, indices private to one operand summed
    out by reduce, then one dot_general per further operand (left to right) and a final
    transpose into the output order."""
    _check_out(out, "einsum")
    if not isinstance(subscripts, str):
        raise _unsupported("einsum: only the subscripts-string form is supported")
    if not operands:
        raise _value_error("einsum: at least one operand is required")
    dt = _as_dtype(dtype) if dtype is not None else _promote(*operands)
    work_dt = dtypes.s32 if dt.is_pred else dt
    ts = [_tracer(o, work_dt) for o in operands]
    terms, output = _parse_einsum(subscripts, [t.ndim for t in ts])
    sizes = _einsum_sizes(ts, terms)
    prepared = [_einsum_operand(t, labels, sizes) for t, labels in zip(ts, terms)]
    result, labels = prepared[0]
    for k, (t, t_labels) in enumerate(prepared[1:], 1):
        later = {l for _, ls in prepared[k + 1:] for l in ls} | set(output)
        result, labels = _sum_out(result, labels, later | set(t_labels))
        t, t_labels = _sum_out(t, t_labels, later | set(labels))
        result, labels = _contract(result, labels, t, t_labels, later)
    result, labels = _sum_out(result, labels, set(output))
    result = _transpose(result, [labels.index(l) for l in output])
    return _convert(result, dt)


def _einsum_operand(t: Tracer, labels: list[str], sizes: dict[str, int]) -> tuple[Tracer, list[str]]:
    """One operand with its diagonals taken (a label repeated within it) and its size-1
    dims broadcast to the sizes other operands give those labels."""
    labels = list(labels)
    for label in dict.fromkeys(labels):
        while labels.count(label) > 1:
            p = labels.index(label)
            q = labels.index(label, p + 1)
            if t.shape[p] != t.shape[q]:
                raise _value_error(f"einsum: index {label!r} repeats in one operand with "
                                   f"different sizes {t.shape[p]} and {t.shape[q]}")
            t = _take_diagonal(t, p, q)
            del labels[q]
    return _broadcast_to_shape(t, [sizes[l] for l in labels]), labels


# ----------------------------------------------------------------------------- shape manipulation

def _shape_arg(args, keyword, name: str):
    """reshape(a, 2, 3) / reshape(a, (2, 3)) / reshape(a, shape=(2, 3))."""
    if len(args) == 1:
        return args[0]
    if args:
        return args
    if keyword is None:
        raise _type_error(f"{name}() missing the new shape")
    return keyword


def _infer_shape(size: int, shape) -> tuple[int, ...]:
    raw = (operator.index(shape),) if np.ndim(shape) == 0 else tuple(operator.index(d) for d in shape)
    unknown = [i for i, d in enumerate(raw) if d == -1]
    if len(unknown) > 1:
        raise _value_error("can only specify one unknown dimension")
    if builtins.any(d < -1 for d in raw):
        raise _value_error("negative dimensions not allowed")
    known = math.prod(d for d in raw if d != -1)
    dims = list(raw)
    if unknown:
        if known == 0 or size % known:
            raise _value_error(f"cannot reshape array of size {size} into shape {_shape_text(raw)}")
        dims[unknown[0]] = size // known
    if math.prod(dims) != size:
        raise _value_error(f"cannot reshape array of size {size} into shape {_shape_text(raw)}")
    return tuple(dims)


@traceable
def reshape(a, *args, shape=None, order="C", newshape=None, copy=None):
    x = _tracer(a)
    dims = _infer_shape(x.size, _shape_arg(args, shape if shape is not None else newshape, "reshape"))
    if order == "F":   # column-major: reverse the axes around a row-major reshape
        flipped = _reshape(_transpose(x, range(x.ndim - 1, -1, -1)), dims[::-1])
        return _transpose(flipped, range(len(dims) - 1, -1, -1))
    if order not in ("C", "A"):
        raise _value_error(f"reshape: order must be 'C', 'F' or 'A', got {order!r}")
    return _reshape(x, dims)


@traceable
def ravel(a, order="C"):
    return reshape(a, (-1,), order="F" if order == "F" else "C")


@traceable
def flatten(a, order="C"):
    return ravel(a, order)


@traceable
def transpose(a, *args, axes=None):
    """transpose(a), transpose(a, (1, 0)), a.transpose(1, 0): reverse or permute the axes."""
    x = _tracer(a)
    if len(args) == 1:
        axes = args[0]
    elif args:
        axes = args
    if axes is None:
        return _transpose(x, range(x.ndim - 1, -1, -1))
    perm = _axis_list(axes, x.ndim)
    if len(perm) != x.ndim:
        raise _value_error("axes don't match array")
    if len(set(perm)) != len(perm):
        raise _value_error("repeated axis in transpose")
    return _transpose(x, perm)


permute_dims = transpose


@traceable
def swapaxes(a, axis1, axis2):
    x = _tracer(a)
    i, j = _axis(axis1, x.ndim), _axis(axis2, x.ndim)
    perm = list(range(x.ndim))
    perm[i], perm[j] = j, i
    return _transpose(x, perm)


@traceable
def moveaxis(a, source, destination):
    x = _tracer(a)
    src, dst = _axis_list(source, x.ndim), _axis_list(destination, x.ndim)
    if len(src) != len(dst):
        raise _value_error("`source` and `destination` arguments must have the same number of elements")
    for what, axes in (("source", src), ("destination", dst)):
        if len(set(axes)) != len(axes):
            raise _value_error(f"repeated axis in `{what}` argument")
    order = [d for d in range(x.ndim) if d not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return _transpose(x, order)


@traceable
def expand_dims(a, axis):
    x = _tracer(a)
    n_new = 1 if np.ndim(axis) == 0 else len(axis)
    axes = _axes(axis, x.ndim + n_new, "'axis'")
    dims = iter(x.shape)
    return _reshape(x, [1 if d in axes else next(dims) for d in range(x.ndim + n_new)])


@traceable
def squeeze(a, axis=None):
    x = _tracer(a)
    if axis is None:
        axes = [d for d, n in enumerate(x.shape) if n == 1]
    else:
        axes = _axes(axis, x.ndim)
        if builtins.any(x.shape[d] != 1 for d in axes):
            raise _value_error("cannot select an axis to squeeze out which has size not equal to one")
    return _reshape(x, [n for d, n in enumerate(x.shape) if d not in axes])


@traceable
def broadcast_to(array, shape):
    return _broadcast_to_shape(_tracer(array), _dims(shape))


@traceable
def broadcast_arrays(*args):
    return tuple(_broadcast_all("broadcast_arrays", [_tracer(a) for a in args]))


def _at_least(arys, ndim: int, place):
    ts = [_tracer(a) for a in arys]
    out = [t if t.ndim >= ndim else _reshape(t, place(t.shape)) for t in ts]
    return out[0] if len(out) == 1 else tuple(out)


@traceable
def atleast_1d(*arys):
    return _at_least(arys, 1, lambda s: (1,))


@traceable
def atleast_2d(*arys):
    return _at_least(arys, 2, lambda s: (1, *s, *(1,) * (1 - len(s))))


@traceable
def atleast_3d(*arys):
    return _at_least(arys, 3, lambda s: {0: (1, 1, 1), 1: (1, *s, 1), 2: (*s, 1)}[len(s)])


def _same_dtype(arrays, dtype=None) -> list[Tracer]:
    if dtype is None:
        dt = _promote_dtypes([_dtype_of(a) for a in arrays])
    else:
        dt = _as_dtype(dtype)
    return [_tracer(a, dt) for a in arrays]


@traceable
def concatenate(arrays, axis=0, out=None, *, dtype=None, casting=None):
    _check_out(out, "concatenate")
    arrays = list(arrays)
    if not arrays:
        raise _value_error("need at least one array to concatenate")
    ts = _same_dtype([core.lift(a) if not isinstance(a, Tracer) else a for a in arrays], dtype)
    if axis is None:
        return _concat([_reshape(t, (t.size,)) for t in ts], 0)
    first = ts[0]
    if first.ndim == 0:
        raise _value_error("zero-dimensional arrays cannot be concatenated")
    ax = _axis(axis, first.ndim)
    for i, t in enumerate(ts[1:], 1):
        if t.ndim != first.ndim:
            raise _value_error("all the input arrays must have same number of dimensions, but the "
                               f"array at index 0 has {first.ndim} dimension(s) and the array at "
                               f"index {i} has {t.ndim} dimension(s)")
        for d in range(t.ndim):
            if d != ax and t.shape[d] != first.shape[d]:
                raise _value_error("all the input array dimensions except for the concatenation "
                                   f"axis must match exactly, but along dimension {d}, the array "
                                   f"at index 0 has size {first.shape[d]} and the array at index "
                                   f"{i} has size {t.shape[d]}")
    nonempty = [t for t in ts if t.shape[ax] > 0] or ts[:1]
    return _concat(nonempty, ax)


concat = concatenate


@traceable
def stack(arrays, axis=0, out=None, *, dtype=None, casting=None):
    _check_out(out, "stack")
    ts = _same_dtype([a if isinstance(a, Tracer) else core.lift(a) for a in arrays], dtype)
    if not ts:
        raise _value_error("need at least one array to stack")
    if builtins.any(t.shape != ts[0].shape for t in ts):
        raise _value_error("all input arrays must have the same shape")
    ax = _axis(axis, ts[0].ndim + 1)
    return _concat([expand_dims(t, ax) for t in ts], ax)


@traceable
def hstack(tup, *, dtype=None, casting=None):
    ts = [atleast_1d(t) for t in tup]
    return concatenate(ts, axis=0 if ts and ts[0].ndim == 1 else 1, dtype=dtype)


@traceable
def vstack(tup, *, dtype=None, casting=None):
    return concatenate([atleast_2d(t) for t in tup], axis=0, dtype=dtype)


row_stack = vstack


@traceable
def dstack(tup):
    return concatenate([atleast_3d(t) for t in tup], axis=2)


@traceable
def column_stack(tup):
    ts = [_tracer(t) for t in tup]
    return concatenate([_reshape(t, (t.size, 1)) if t.ndim < 2 else t for t in ts], axis=1)


def _split_points(n: int, indices_or_sections, even: bool) -> list[tuple[int, int]]:
    """[(start, stop)] of each piece, by NumPy's rules for split/array_split."""
    if np.ndim(indices_or_sections) == 0:
        sections = operator.index(indices_or_sections)
        if sections <= 0:
            raise _value_error("number sections must be larger than 0.")
        if even and n % sections:
            raise _value_error("array split does not result in an equal division")
        each, extras = builtins.divmod(n, sections)
        sizes = [each + 1] * extras + [each] * (sections - extras)
        bounds = np.cumsum([0] + sizes).tolist()
        return list(zip(bounds[:-1], bounds[1:]))
    points = [0] + [operator.index(i) for i in indices_or_sections] + [n]
    pieces = []
    for start, stop in zip(points[:-1], points[1:]):
        lo, hi, _ = slice(start, stop).indices(n)
        pieces.append((lo, builtins.max(lo, hi)))
    return pieces


@traceable
def array_split(ary, indices_or_sections, axis=0):
    x = _tracer(ary)
    ax = _axis(axis, x.ndim)
    return [_slice_axis(x, ax, lo, hi) for lo, hi in _split_points(x.shape[ax], indices_or_sections, False)]


@traceable
def split(ary, indices_or_sections, axis=0):
    x = _tracer(ary)
    ax = _axis(axis, x.ndim)
    return [_slice_axis(x, ax, lo, hi) for lo, hi in _split_points(x.shape[ax], indices_or_sections, True)]


@traceable
def hsplit(ary, indices_or_sections):
    x = _tracer(ary)
    if x.ndim == 0:
        raise _value_error("hsplit only works on arrays of 1 or more dimensions")
    return split(x, indices_or_sections, axis=1 if x.ndim > 1 else 0)


@traceable
def vsplit(ary, indices_or_sections):
    x = _tracer(ary)
    if x.ndim < 2:
        raise _value_error("vsplit only works on arrays of 2 or more dimensions")
    return split(x, indices_or_sections, axis=0)


@traceable
def flip(m, axis=None):
    x = _tracer(m)
    axes = _axes(axis, x.ndim)
    return _emit("reverse", [x], {"dimensions": axes}) if axes else x


@traceable
def fliplr(m):
    return flip(m, 1)


@traceable
def flipud(m):
    return flip(m, 0)


@traceable
def roll(a, shift, axis=None):
    x = _tracer(a)
    if axis is None:
        return _reshape(roll(_reshape(x, (x.size,)), shift, 0), x.shape)
    shifts = [shift] if np.ndim(shift) == 0 else list(shift)
    axes = _axis_list(axis, x.ndim)
    if len(shifts) == 1:
        shifts = shifts * len(axes)
    elif len(axes) == 1:
        axes = axes * len(shifts)
    if len(shifts) != len(axes):
        raise _value_error("'shift' and 'axis' should be scalars or 1D sequences of the same length")
    for s, ax in zip(shifts, axes):
        n = x.shape[ax]
        k = operator.index(s) % n if n else 0
        if k:
            x = _concat([_slice_axis(x, ax, n - k, n), _slice_axis(x, ax, 0, n - k)], ax)
    return x


def _gather_along(x: Tracer, indices: np.ndarray, axis: int) -> Tracer:
    """x with axis `axis` replaced by x[..., indices, ...] (static indices)."""
    idx = _ctx().constant(np.asarray(indices, np.int64).reshape(-1, 1), dtypes.s64)
    attrs = {"offset_dims": tuple(d for d in range(x.ndim) if d != axis),
             "collapsed_slice_dims": (axis,), "start_index_map": (axis,), "index_vector_dim": 1,
             "slice_sizes": tuple(1 if d == axis else n for d, n in enumerate(x.shape))}
    return _emit("gather", [x, idx], attrs)


@traceable
def repeat(a, repeats, axis=None):
    x = _tracer(a)
    if axis is None:
        x, axis = _reshape(x, (x.size,)), 0
    ax = _axis(axis, x.ndim)
    n = x.shape[ax]
    counts = np.asarray(repeats)
    if counts.dtype.kind not in "iub":
        raise _type_error(f"repeat: repeats must be integers, got {counts.dtype}")
    if (counts < 0).any():
        raise _value_error("repeats may not contain negative values.")
    if counts.ndim == 0 or counts.size == 1:
        r = int(counts.reshape(()))
        dims = list(x.shape)
        spread = dims[:ax + 1] + [r] + dims[ax + 1:]
        bdims = tuple(d if d <= ax else d + 1 for d in range(x.ndim))
        b = _emit("broadcast_in_dim", [x], {"broadcast_dimensions": bdims}, Shape(x.tdtype, spread))
        dims[ax] = n * r
        return _reshape(b, dims)
    if counts.shape != (n,):
        raise _value_error(f"operands could not be broadcast together with shape ({n},) "
                           f"{_shape_text(counts.shape)}")
    return _gather_along(x, np.repeat(np.arange(n), counts), ax)


@traceable
def tile(A, reps):
    x = _tracer(A)
    reps = (operator.index(reps),) if np.ndim(reps) == 0 else tuple(operator.index(r) for r in reps)
    rank = builtins.max(len(reps), x.ndim)
    reps = (1,) * (rank - len(reps)) + reps
    dims = (1,) * (rank - x.ndim) + x.shape
    x = _reshape(x, dims)
    interleaved = [size for pair in zip(reps, dims) for size in pair]
    b = _emit("broadcast_in_dim", [x], {"broadcast_dimensions": tuple(range(1, 2 * rank, 2))},
              Shape(x.tdtype, interleaved))
    return _reshape(b, [r * d for r, d in zip(reps, dims)])


def _as_pairs(value, ndim: int, what: str, as_index: bool) -> list[tuple]:
    """NumPy's pad argument forms: v, (v,), (before, after), ((b0, a0), (b1, a1), ...)."""
    array = np.asarray(value)
    if as_index:
        if array.dtype.kind not in "iub":
            raise _type_error(f"`{what}` must be of integral type.")
        if (array < 0).any():
            raise _value_error("index can't contain negative values")
    if array.size == 1:
        v = array.reshape(()).item()
        return [(v, v)] * ndim
    if array.shape in ((2,), (1, 2)):
        pair = tuple(array.reshape(2).tolist())
        return [pair] * ndim
    try:
        return [tuple(p) for p in np.broadcast_to(array, (ndim, 2)).tolist()]
    except ValueError:
        raise _value_error(f"pad: `{what}` of shape {_shape_text(array.shape)} does not fit an "
                           f"array of {ndim} dimensions") from None


_PAD_MODES = ("constant", "empty", "edge", "reflect", "symmetric", "wrap")


@traceable
def pad(array, pad_width, mode="constant", **kwargs):
    """np.pad for modes constant/empty (pad op) and edge/reflect/symmetric/wrap (slices)."""
    x = _tracer(array)
    if mode not in _PAD_MODES:
        raise _unsupported(f"pad: mode {mode!r} is not supported; tessel supports "
                           + ", ".join(_PAD_MODES))
    if kwargs.get("reflect_type", "even") != "even":
        raise _unsupported("pad: reflect_type='odd' is not supported")
    widths = _as_pairs(pad_width, x.ndim, "pad_width", as_index=True)
    if mode in ("constant", "empty"):
        values = kwargs.get("constant_values", 0)
        return _pad_constant(x, widths, values)
    for ax, (lo, hi) in enumerate(widths):
        x = _pad_axis_from_data(x, ax, lo, hi, mode)
    return x


def _pad_constant(x: Tracer, widths, values) -> Tracer:
    if isinstance(values, Tracer):
        value = _tracer(values, x.tdtype)
        if value.ndim != 0:
            raise _unsupported("pad: a traced constant_values must be a scalar")
        pairs = None
    else:
        pairs = _as_pairs(values, x.ndim, "constant_values", as_index=False)
        uniform = len({v for pair in pairs for v in pair}) <= 1
        value = _scalar(pairs[0][0] if pairs else 0, x.tdtype) if uniform else None
    if value is not None:
        lo, hi = [w[0] for w in widths], [w[1] for w in widths]
        return _emit("pad", [x, value], {"edge_padding_low": tuple(lo), "edge_padding_high": tuple(hi)})
    for ax, ((lo, hi), (v_lo, v_hi)) in enumerate(zip(widths, pairs)):   # later axes win corners
        for width, v, low in ((lo, v_lo, True), (hi, v_hi, False)):
            if width:
                edge = [0] * x.ndim
                edge[ax] = width
                zeros = [0] * x.ndim
                attrs = {"edge_padding_low": tuple(edge if low else zeros),
                         "edge_padding_high": tuple(zeros if low else edge)}
                x = _emit("pad", [x, _scalar(v, x.tdtype)], attrs)
    return x


def _pad_axis_from_data(x: Tracer, ax: int, lo: int, hi: int, mode: str) -> Tracer:
    n = x.shape[ax]
    if not lo and not hi:
        return x
    if n == 0:
        raise _value_error(f"can't extend empty axis {ax} using modes other than 'constant' or 'empty'")
    if mode == "reflect" and n == 1:
        mode = "edge"
    limit = {"edge": None, "reflect": n - 1, "symmetric": n, "wrap": n}[mode]
    if limit is not None and builtins.max(lo, hi) > limit:
        raise _unsupported(f"pad: mode {mode!r} with a pad width larger than the axis "
                           f"({builtins.max(lo, hi)} > {limit} on axis {ax}) is not supported")

    def reverse(t):
        return _emit("reverse", [t], {"dimensions": (ax,)})

    def piece(start, stop):
        return _slice_axis(x, ax, start, stop)

    if mode == "edge":
        def edge(index, width):
            dims = list(x.shape)
            dims[ax] = width
            return _broadcast_to_shape(piece(index, index + 1), dims)
        left, right = edge(0, lo), edge(n - 1, hi)
    elif mode == "reflect":
        left, right = reverse(piece(1, lo + 1)), reverse(piece(n - 1 - hi, n - 1))
    elif mode == "symmetric":
        left, right = reverse(piece(0, lo)), reverse(piece(n - hi, n))
    else:  # wrap
        left, right = piece(n - lo, n), piece(0, hi)
    parts = ([left] if lo else []) + [x] + ([right] if hi else [])
    return _concat(parts, ax)


# ----------------------------------------------------------------------------- creation

def _contains_tracer(obj) -> bool:
    if isinstance(obj, Tracer):
        return True
    return isinstance(obj, (list, tuple)) and builtins.any(_contains_tracer(o) for o in obj)


@traceable
def array(object, dtype=None, *, copy=True, order="K", ndmin=0, subok=False, like=None):
    """A tracer of `object` (NumPy data becomes a constant; lists of tracers are stacked)."""
    dt = _as_dtype(dtype) if dtype is not None else None
    if isinstance(object, (list, tuple)) and _contains_tracer(object):
        t = stack([array(o) for o in object])
        t = t if dt is None else _convert(t, dt)
    else:
        t = _tracer(object, dt)
    if t.ndim < ndmin:
        t = _reshape(t, (1,) * (ndmin - t.ndim) + t.shape)
    return t


@traceable
def asarray(a, dtype=None, order=None, *, copy=None, like=None):
    return array(a, dtype)


asanyarray = ascontiguousarray = asarray


@traceable
def copy(a, order="K", subok=False):
    return _tracer(a)


@traceable
def astype(x, dtype, /, *, copy=True, order=None, casting=None, subok=None):
    return _convert(_tracer(x), _as_dtype(dtype))


def _dtype_or_default(dtype, default: DType) -> DType:
    return _as_dtype(dtype) if dtype is not None else default


@traceable
def full(shape, fill_value, dtype=None, order="C", *, like=None):
    dims = _dims(shape)
    dt = _as_dtype(dtype) if dtype is not None else _dtype_of(fill_value)
    return _broadcast_to_shape(_tracer(fill_value, dt), dims)


@traceable
def zeros(shape, dtype=None, order="C", *, like=None):
    return full(shape, 0, _dtype_or_default(dtype, dtypes.f64))


@traceable
def ones(shape, dtype=None, order="C", *, like=None):
    return full(shape, 1, _dtype_or_default(dtype, dtypes.f64))


empty = zeros


def _like(a, dtype, shape) -> tuple[tuple[int, ...], DType]:
    aval = core.aval_of(a)
    return (aval.dims if shape is None else _dims(shape)), _dtype_or_default(dtype, aval.dtype)


@traceable
def full_like(a, fill_value, dtype=None, order="K", subok=True, shape=None):
    dims, dt = _like(a, dtype, shape)
    return full(dims, fill_value, dt)


@traceable
def zeros_like(a, dtype=None, order="K", subok=True, shape=None):
    dims, dt = _like(a, dtype, shape)
    return full(dims, 0, dt)


@traceable
def ones_like(a, dtype=None, order="K", subok=True, shape=None):
    dims, dt = _like(a, dtype, shape)
    return full(dims, 1, dt)


empty_like = zeros_like


def _offset_compare(n: int, m: int, k: int, direction: str, batch=()) -> Tracer:
    """pred[*batch, n, m]: (column - row) <direction> k, from iotas (no big constants)."""
    dims = (*batch, n, m)
    return _cmp(_op("subtract", _iota(dtypes.s64, dims, len(dims) - 1), _iota(dtypes.s64, dims, len(dims) - 2)),
                _broadcast_to_shape(_scalar(k, dtypes.s64), dims), direction)


@traceable
def eye(N, M=None, k=0, dtype=None, order="C", *, like=None):
    n = operator.index(N)
    m = n if M is None else operator.index(M)
    return _convert(_offset_compare(n, m, operator.index(k), "EQ"), _dtype_or_default(dtype, dtypes.f64))


@traceable
def identity(n, dtype=None, *, like=None):
    return eye(n, dtype=dtype)


@traceable
def tri(N, M=None, k=0, dtype=None, *, like=None):
    n = operator.index(N)
    m = n if M is None else operator.index(M)
    return _convert(_offset_compare(n, m, operator.index(k), "LE"), _dtype_or_default(dtype, dtypes.f64))


def _triangle(m, k, direction: str) -> Tracer:
    x = _tracer(m)
    if x.ndim == 0:
        raise _value_error("tril/triu needs an array of at least one dimension")
    rows, cols = x.shape[-2:] if x.ndim >= 2 else (x.shape[0], x.shape[0])
    mask = _offset_compare(rows, cols, operator.index(k), direction)
    return where(mask, x, 0)


@traceable
def tril(m, k=0):
    return _triangle(m, k, "LE")


@traceable
def triu(m, k=0):
    return _triangle(m, k, "GE")


@traceable
def arange(start, stop=None, step=None, dtype=None, *, like=None):
    """NumPy's arange from an iota: values start + i * (second - start), as NumPy fills them."""
    if stop is None:
        start, stop = 0, start
    step = 1 if step is None else step
    if step == 0:
        raise errors.trace_error("arange: step must not be zero", cls=TracedZeroDivisionError)
    if dtype is not None:
        dt = _as_dtype(dtype)
    else:   # NumPy's arange answers f64 or s64, whatever the scalars' own types
        floats = builtins.any(np.asarray(v).dtype.kind == "f" for v in (start, stop, step))
        dt = dtypes.f64 if floats else dtypes.s64
    n = builtins.max(0, math.ceil((stop - start) / step))
    if not dt.is_float:
        index = _iota(dtypes.s64, (n,), 0)
        values = _op("add", _op("multiply", index, _full_like_t(index, step)), _full_like_t(index, start))
        return _convert(values, dt)
    compute = dtypes.f32 if dt.bits == 16 else dt
    first = np.asarray(start, dtype=dt.storage).astype(compute.storage)
    delta = np.asarray(start + step, dtype=dt.storage).astype(compute.storage) - first
    index = _iota(compute, (n,), 0)
    values = _op("add", _op("multiply", index, _full_like_t(index, delta)), _full_like_t(index, first))
    return _convert(values, dt)


@traceable
def linspace(start, stop, num=50, endpoint=True, retstep=False, dtype=None, axis=0):
    num = operator.index(num)
    if num < 0:
        raise _value_error(f"Number of samples, {num}, must be non-negative.")
    div = num - 1 if endpoint else num
    result_dt = _promote(start, stop, float(num))
    compute = dtypes.f32 if result_dt.bits == 16 else result_dt
    lo, hi = _tracer(start, compute), _tracer(stop, compute)
    lo, hi = _broadcast_all("linspace", [lo, hi])
    delta = _op("subtract", hi, lo)
    index = _reshape(_iota(compute, (num,), 0), (num,) + (1,) * delta.ndim)
    dims = (num,) + delta.shape
    index = _broadcast_to_shape(index, dims)
    if div > 0:
        step = _op("divide", delta, _full_like_t(delta, div))
        y = _op("multiply", index, _broadcast_to_shape(step, dims))
    else:
        step = _full_like_t(delta, np.nan)
        y = _op("multiply", index, _broadcast_to_shape(delta, dims))
    y = _op("add", y, _broadcast_to_shape(lo, dims))
    if endpoint and num > 1:
        y = _concat([_slice_axis(y, 0, 0, num - 1), _reshape(hi, (1,) + hi.shape)], 0)
    y = moveaxis(y, 0, axis) if y.ndim > 1 else y
    out_dt = _as_dtype(dtype) if dtype is not None else result_dt
    if out_dt.is_integer:
        y = _op("floor", y)
    y = _convert(y, out_dt)
    return (y, step) if retstep else y


@traceable
def meshgrid(*xi, copy=True, sparse=False, indexing="xy"):
    if indexing not in ("xy", "ij"):
        raise _value_error("Valid values for `indexing` are 'xy' and 'ij'.")
    ts = [_reshape(t, (t.size,)) for t in (_tracer(x) for x in xi)]
    axes = list(range(len(ts)))   # the output axis each input runs along
    if indexing == "xy" and len(ts) > 1:
        axes[0], axes[1] = 1, 0
    dims = [0] * len(ts)
    for t, axis in zip(ts, axes):
        dims[axis] = t.size
    out = []
    for t, axis in zip(ts, axes):
        target = [n if d == axis or not sparse else 1 for d, n in enumerate(dims)]
        out.append(_emit("broadcast_in_dim", [t], {"broadcast_dimensions": (axis,)},
                         Shape(t.tdtype, target)))
    return tuple(out)


# ----------------------------------------------------------------------------- static queries

def shape(a) -> tuple[int, ...]:
    return core.aval_of(a).dims


def ndim(a) -> int:
    return core.aval_of(a).rank


def size(a, axis=None) -> int:
    aval = core.aval_of(a)
    return aval.size if axis is None else aval.dims[_axis(axis, aval.rank)]


# ----------------------------------------------------------------------------- indexing (frontend/indexing.py)

@traceable
def getitem(x, index):
    """x[index]: basic and integer-array indexing, implemented in frontend/indexing.py."""
    from .indexing import getitem as indexing_getitem
    return indexing_getitem(x, index)


@traceable
def take(a, indices, axis=None, *args, **kwargs):
    from .indexing import take as indexing_take
    return indexing_take(a, indices, axis, *args, **kwargs)


# ----------------------------------------------------------------------------- exports

def __getattr__(name: str):
    """`tessel.numpy.X` for an X tessel lacks: say so, and whether NumPy has it."""
    if name.startswith("__"):
        raise AttributeError(f"module 'tessel.numpy' has no attribute {name!r}")
    known = f" (numpy.{name} exists; tessel does not support it yet)" if hasattr(np, name) else ""
    raise AttributeError(f"tessel.numpy has no function or attribute {name!r}{known}; "
                         f"tessel.numpy.__all__ lists what it has")


_NOT_EXPORTED = {"annotations", "Builder", "DType", "Sequence", "Shape", "Tracer", "traceable"}
__all__ = sorted(name for name, value in globals().items()
                 if not name.startswith("_") and name not in _NOT_EXPORTED
                 and not isinstance(value, types.ModuleType))
