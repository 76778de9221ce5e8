"""User-facing errors that point at the user's own source line.

The frontend walks the Python stack to the first frame outside tessel's internals
(and outside NumPy, whose dispatch machinery sits between user code and our tracers),
so messages and IR source locations name the line the user wrote.
"""
from __future__ import annotations

import os
import sys

import numpy as np

from ..compiler.ir import SourceLoc

_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_INTERNAL_DIRS = tuple(os.path.join(_PACKAGE_ROOT, d) + os.sep
                       for d in ("frontend", "compiler", "backends", "runtime", "distributed"))
_INTERNAL_FILES = (os.path.join(_PACKAGE_ROOT, "__init__.py"),)
_NUMPY_DIR = os.path.dirname(os.path.abspath(np.__file__)) + os.sep
_SKIP_MODULES = ("functools.py", "contextlib.py", "threading.py")


def _is_internal(filename: str) -> bool:
    return (filename.startswith(_INTERNAL_DIRS) or filename in _INTERNAL_FILES
            or filename.startswith(_NUMPY_DIR) or filename.endswith(_SKIP_MODULES)
            or filename.startswith("<frozen"))


def user_frame():
    """The innermost stack frame that belongs to the user's code (or None)."""
    frame = sys._getframe(1)
    while frame is not None:
        if not _is_internal(os.path.abspath(frame.f_code.co_filename)):
            return frame
        frame = frame.f_back
    return None


def user_location() -> SourceLoc | None:
    frame = user_frame()
    if frame is None:
        return None
    return SourceLoc(_display_path(frame.f_code.co_filename), frame.f_lineno)


def _display_path(filename: str) -> str:
    """A path relative to the working directory when that is shorter, else absolute."""
    try:
        rel = os.path.relpath(filename)
    except ValueError:
        return filename
    return rel if not rel.startswith(".." + os.sep + "..") else filename


def where() -> str:
    loc = user_location()
    return f"{loc}" if loc is not None else "<unknown location>"


class TesselError(Exception):
    """Base class of tessel's user-facing errors."""


class TraceError(TesselError, TypeError):
    """The traced code did something that cannot be compiled (wrong shapes, dtypes ...)."""


class ConcretizationError(TesselError, TypeError):
    """Python needed a concrete value (if/while/bool/int) from a traced one."""


class UnsupportedNumpyFunction(TesselError, NotImplementedError):
    """A NumPy function tessel cannot trace."""


def trace_error(message: str, cls=TraceError) -> TesselError:
    """An exception whose message starts with the user's file:line."""
    return cls(f"{where()}: {message}")


CONTROL_FLOW_HINT = (
    "the value is only known when the compiled program runs. Use "
    "tessel.numpy.where(cond, a, b) for an elementwise choice, "
    "tessel.lax.cond(pred, true_fn, false_fn, *operands) for a branch, "
    "tessel.lax.fori_loop / tessel.lax.while_loop / tessel.lax.scan for a loop, "
    "or make the argument static with jit(static_argnums=...)")
