"""`tessel.device(name)`: place the ops traced inside a `with` block on a device.

    @tessel.jit
    def mlp(params, x):
        with tessel.device("systolic"):
            h = x @ params["w1"]               # dot_general carries device="systolic"
        h = tnp.maximum(h + params["b1"], 0)   # unscoped: the jit's backend (or placement)
        ...

Every instruction emitted while a scope is open carries the attribute `device` (printed
by `as_text()`); nested scopes: the innermost wins. Gradients of a scoped op are placed
on the op's device (frontend/autodiff.py opens the op's scope around its VJP rule, as
TensorFlow's colocate_gradients_with_ops does). What happens to the attribute at
compile time: compiler/passes/placement.py, docs/placement.md.

The scope stack is per thread, so two threads tracing at once do not see each other's
scopes. A device name must be a registered backend (runtime/backends.py).
"""
from __future__ import annotations

import contextlib
import threading

from ..runtime import backends

_local = threading.local()


def _stack() -> list[str]:
    if not hasattr(_local, "stack"):
        _local.stack = []
    return _local.stack


def check_device(name) -> str:
    """`name` if it is a device ops can be placed on; ValueError listing them if not."""
    if not isinstance(name, str) or name not in backends.available():
        raise ValueError(f"unknown device {name!r}; available devices: {', '.join(backends.available())}")
    return name


def current_device() -> str | None:
    """The innermost open scope's device, or None outside every scope."""
    stack = _stack()
    return stack[-1] if stack else None


@contextlib.contextmanager
def device(name: str | None):
    """Place the ops traced inside the block on device `name` ("cpu", "systolic").
    `None` opens no scope (handy for code that places conditionally)."""
    if name is None:
        yield None
        return
    check_device(name)
    stack = _stack()
    stack.append(name)
    try:
        yield name
    finally:
        stack.pop()


__all__ = ["check_device", "current_device", "device"]
