"""The backend registry: name -> how to turn a module into a callable on flat arrays.

A backend's `compile(module)` returns `run(arrays) -> sequence of arrays` for a module
whose entry returns a flat tuple. Backends register themselves here; the registry
imports them lazily so loading one backend never imports the others.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

DEFAULT_BACKEND = "cpu"


@dataclass(frozen=True)
class Backend:
    name: str
    compile: Callable        # module -> run(list[np.ndarray]) -> list[np.ndarray]
    description: str = ""


def _interpreter() -> Backend:
    from ..backends import interpreter

    def compile(module):
        def run(arrays):
            return interpreter.evaluate(module, arrays)
        return run

    return Backend("interpreter", compile, "NumPy reference interpreter (the ops' definition)")


def _cpu() -> Backend:
    from ..backends.cpu.executable import backend
    return backend()


def _systolic() -> Backend:
    from ..backends.systolic.executable import backend
    return backend()


def _systolic_config():
    from ..backends.systolic.executable import default_config
    return default_config()


# name -> what a backend's compiled programs depend on besides the module (a hashable
# value read at each call): part of every jit cache key, so programs compiled under
# two systolic configs (TESSEL_SYSTOLIC_CONFIG, using_config) are never shared.
CONTEXT: dict[str, Callable[[], object]] = {"systolic": _systolic_config}

# name -> factory; factories import their backend only when first asked for.
_FACTORIES: dict[str, Callable[[], Backend]] = {"interpreter": _interpreter, "cpu": _cpu,
                                                "systolic": _systolic}
_LOADED: dict[str, Backend] = {}


def register(name: str, factory: Callable[[], Backend]) -> None:
    _FACTORIES[name] = factory
    _LOADED.pop(name, None)


def available() -> list[str]:
    return sorted(_FACTORIES)


def get(name: str) -> Backend:
    if name not in _FACTORIES:
        raise ValueError(f"unknown backend {name!r}; available backends: {', '.join(available())}")
    if name not in _LOADED:
        _LOADED[name] = _FACTORIES[name]()
    return _LOADED[name]


def check_name(name: str) -> str:
    if not isinstance(name, str) or name not in _FACTORIES:
        raise ValueError(f"unknown backend {name!r}; available backends: {', '.join(available())}")
    return name
