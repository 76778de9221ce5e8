"""NumPy's protocols for traced arrays: plain NumPy code traces unmodified.

`Tracer.__array_ufunc__` and `Tracer.__array_function__` (core.py) land here, so
`np.tanh(x)`, `ndarray + tracer`, `np.split(x, 3)` and `np.var(x, axis=-1)` call the
`tessel.numpy` function of the same name. The tables are NumPy's names resolved in
`tessel.numpy` on first use, plus a short alias table where NumPy's `__name__`
differs from tessel's (np.true_divide is named 'divide', np.amax 'amax' ...).

Anything tessel cannot trace raises `UnsupportedNumpyFunction` naming the function
with its module ("numpy.linalg.inv"), the user's file:line, and similar tessel
functions when there are any.
"""
from __future__ import annotations

import difflib
from typing import Callable

from . import errors

# NumPy name -> other names the same function may have in tessel.numpy.
_ALIASES = {
    "divide": ("true_divide",), "true_divide": ("divide",),
    "absolute": ("abs",), "fabs": ("abs", "absolute"), "abs": ("absolute",),
    "invert": ("bitwise_not", "bitwise_invert"), "conjugate": ("conj",),
    "power": ("pow",), "remainder": ("mod",), "mod": ("remainder",),
    "arccos": ("acos",), "arcsin": ("asin",), "arctan": ("atan",), "arctan2": ("atan2",),
    "arccosh": ("acosh",), "arcsinh": ("asinh",), "arctanh": ("atanh",),
    "amax": ("max",), "amin": ("min",), "around": ("round",), "round": ("around",),
    "rint": ("round",), "concatenate": ("concat",), "transpose": ("permute_dims",),
    "row_stack": ("vstack",),
}

# ufunc.reduce -> the tessel.numpy reduction it means.
_UFUNC_REDUCTIONS = {
    "add": "sum", "multiply": "prod", "maximum": "max", "minimum": "min",
    "logical_and": "all", "logical_or": "any",
}

# Hints for ufunc methods tessel does not trace.
_UFUNC_METHOD_HINTS = {
    ("add", "accumulate"): "tessel.numpy.cumsum",
    ("multiply", "accumulate"): "tessel.numpy.cumprod",
}

# Functions whose result shape depends on the values: never traceable with static shapes.
_DATA_DEPENDENT = ("unique", "unique_values", "unique_counts", "unique_inverse", "unique_all",
                   "nonzero", "argwhere", "flatnonzero", "extract", "compress", "trim_zeros")

# Unsupported NumPy function -> tessel functions that do related work.
_RELATED = {
    "numpy.logaddexp": ("tessel.nn.logsumexp",),
    "numpy.linalg.norm": ("tessel.numpy.sqrt", "tessel.numpy.sum"),
    "numpy.sort": ("tessel.numpy.max", "tessel.numpy.argmax"),
}

_STATE_KWARGS = ("out", "where")   # would write into or mask a NumPy buffer


def _tnp():
    from . import numpy_api
    return numpy_api


# ----------------------------------------------------------------------------- lookup

def _namespace(module_name: str):
    """The tessel.numpy counterpart of a NumPy module ('numpy.linalg' -> tnp.linalg)."""
    space = _tnp()
    for part in module_name.split(".")[1:]:
        space = getattr(space, part, None)
        if space is None:
            return None
    return space


def _is_tessel_function(fn) -> bool:
    # A NumPy function re-exported under a tessel name would dispatch straight back here.
    return callable(fn) and not getattr(fn, "__module__", "numpy").split(".")[0] == "numpy"


_RESOLVED: dict[tuple[str, str], Callable | None] = {}


def _resolve(module_name: str, name: str) -> Callable | None:
    key = (module_name, name)
    if key not in _RESOLVED:
        space = _namespace(module_name)
        found = None
        if space is not None:
            for candidate in (name, *_ALIASES.get(name, ())):
                fn = getattr(space, candidate, None)
                if _is_tessel_function(fn):
                    found = fn
                    break
        _RESOLVED[key] = found
    return _RESOLVED[key]


def _public_name(module_name: str, name: str) -> str:
    return f"{module_name}.{name}"


def _tessel_name(module_name: str) -> str:
    return "tessel.numpy" + module_name[len("numpy"):]


def _similar(module_name: str, name: str) -> list[str]:
    """tessel functions a user of `name` may want: hand-picked ones first, then names
    that contain each other (nanmean/mean, arccos/cos) or are spelled alike (median/mean)."""
    found = list(_RELATED.get(_public_name(module_name, name), ()))
    space = _namespace(module_name)
    if space is not None:
        public = [n for n in dir(space) if not n.startswith("_") and callable(getattr(space, n))]
        nested = [n for n in public if len(n) >= 3 and (n in name or name in n)]
        alike = difflib.get_close_matches(name, public, n=3, cutoff=0.8)
        prefix = _tessel_name(module_name)
        found += [f"{prefix}.{n}" for n in dict.fromkeys(nested + alike)]
    return found[:4]


def unsupported(module_name: str, name: str, extra: str = "") -> errors.UnsupportedNumpyFunction:
    """The error for a NumPy function tessel cannot trace, with suggestions."""
    message = f"{_public_name(module_name, name)} is not supported on traced arrays"
    if name in _DATA_DEPENDENT:
        message += (": its result's shape depends on the data, and tessel compiles for "
                    "static shapes (tessel.numpy.where(cond, x, y) selects without "
                    "changing the shape)")
    elif extra:
        message += f"; {extra}"
    else:
        similar = _similar(module_name, name)
        message += (f"; similar tessel functions: {', '.join(similar)}" if similar
                    else f"; tessel has no {_tessel_name(module_name)}.{name}")
    return errors.trace_error(message, cls=errors.UnsupportedNumpyFunction)


def _refuse_state_kwargs(what: str, kwargs: dict) -> None:
    for key in _STATE_KWARGS:
        value = kwargs.get(key)
        if value is not None and not (key == "where" and value is True):
            raise errors.trace_error(
                f"{what}({key}=...) is not supported on traced arrays: traced values are "
                f"immutable, so use the return value"
                + (" and tessel.numpy.where for masking" if key == "where" else ""),
                cls=errors.UnsupportedNumpyFunction)


# ----------------------------------------------------------------------------- ufuncs

def _ufunc_call(ufunc, inputs, kwargs):
    name = ufunc.__name__
    fn = _resolve("numpy", name)
    if fn is None:
        raise unsupported("numpy", name)
    extra = sorted(kwargs)
    if extra:
        raise errors.trace_error(f"numpy.{name}: keyword arguments {', '.join(extra)} are not "
                                 f"supported on traced arrays", cls=errors.UnsupportedNumpyFunction)
    return fn(*inputs)


def _ufunc_reduce(ufunc, inputs, kwargs):
    name = ufunc.__name__
    if name not in _UFUNC_REDUCTIONS or len(inputs) != 1:
        raise unsupported("numpy", f"{name}.reduce")
    extra = sorted(set(kwargs) - {"axis", "keepdims", "dtype"})
    if extra:
        raise errors.trace_error(f"numpy.{name}.reduce: keyword arguments {', '.join(extra)} are "
                                 f"not supported on traced arrays", cls=errors.UnsupportedNumpyFunction)
    reduction = _resolve("numpy", _UFUNC_REDUCTIONS[name])
    if reduction is None:
        raise unsupported("numpy", f"{name}.reduce")
    options = {"axis": kwargs.get("axis", 0), "keepdims": kwargs.get("keepdims", False)}
    if kwargs.get("dtype") is not None:
        options["dtype"] = kwargs["dtype"]
    return reduction(inputs[0], **options)   # ufunc.reduce's axis defaults to 0, not None


_UFUNC_METHODS = {"__call__": _ufunc_call, "reduce": _ufunc_reduce}


def array_ufunc(ufunc, method: str, inputs, kwargs):
    """`ufunc.method(*inputs, **kwargs)` with a traced input, via tessel.numpy."""
    _refuse_state_kwargs(f"numpy.{ufunc.__name__}", kwargs)
    kwargs = {k: v for k, v in kwargs.items() if k not in _STATE_KWARGS}
    handler = _UFUNC_METHODS.get(method)
    if handler is None:
        hint = _UFUNC_METHOD_HINTS.get((ufunc.__name__, method))
        extra = (f"use {hint}" if hint else
                 "broadcast with x[:, None] and y[None, :] instead" if method == "outer" else
                 "only calls and reduce are traced")
        raise unsupported("numpy", f"{ufunc.__name__}.{method}", extra)
    return handler(ufunc, inputs, kwargs)


# ----------------------------------------------------------------------------- functions

def array_function(func, args, kwargs):
    """`func(*args, **kwargs)` for a NumPy function given a traced argument."""
    module_name = getattr(func, "__module__", None) or "numpy"
    name = func.__name__
    fn = _resolve(module_name, name)
    if fn is None:
        raise unsupported(module_name, name)
    _refuse_state_kwargs(_public_name(module_name, name), kwargs)
    kwargs = {k: v for k, v in kwargs.items() if k != "like"}
    return fn(*args, **kwargs)


__all__ = ["array_ufunc", "array_function", "unsupported"]
