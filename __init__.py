"""tessel: an XLA-style tensor compiler.

    import tessel
    import tessel.numpy as tnp

    @tessel.jit
    def predict(params, x):
        return tessel.nn.softmax(tnp.maximum(x @ params["w"] + params["b"], 0))

The public API is resolved lazily, so that loading a compiled artifact later never
imports the tracing frontend or the compiler passes.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

# Public name -> (module, attribute); attribute None means the module itself.
_PUBLIC = {
    "jit": ("tessel.frontend.api", "jit"),
    "ShapeDtype": ("tessel.frontend.api", "ShapeDtype"),
    "numpy": ("tessel.frontend.numpy_api", None),
    "nn": ("tessel.frontend.nn", None),
    "lax": ("tessel.frontend.lax", None),
    "aot": ("tessel.aot", None),
    "grad": ("tessel.frontend.autodiff", "grad"),
    "value_and_grad": ("tessel.frontend.autodiff", "value_and_grad"),
    "vjp": ("tessel.frontend.autodiff", "vjp"),
    "optim": ("tessel.frontend.optim", None),
    "distributed": ("tessel.distributed", None),
    "device": ("tessel.frontend.device_scope", "device"),
}

# `import tessel.numpy` etc. must work although no tessel/numpy.py exists: a file named
# numpy.py at the repository root would shadow the real NumPy for anything run there.
_SUBMODULE_ALIASES = {f"tessel.{name}": target for name, (target, attr) in _PUBLIC.items()
                      if attr is None and target != f"tessel.{name}"}


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec):
        return importlib.import_module(self.target)

    def exec_module(self, module):
        pass


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname in _SUBMODULE_ALIASES:
            return importlib.util.spec_from_loader(fullname, _AliasLoader(_SUBMODULE_ALIASES[fullname]))
        return None


if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
    sys.meta_path.append(_AliasFinder())


def __getattr__(name):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'tessel' has no attribute {name!r}")
    module_name, attr = _PUBLIC[name]
    value = importlib.import_module(module_name)
    if attr is not None:
        value = getattr(value, attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + list(_PUBLIC))


__all__ = ["ShapeDtype", "aot", "device", "distributed", "grad", "jit", "lax", "nn", "numpy", "optim", "value_and_grad", "vjp"]
