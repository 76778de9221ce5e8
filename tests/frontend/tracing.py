"""Tracing helpers shared by the frontend tests: a function traced with arrays as the
parameters of a fresh module (as core.run_eagerly traces, but with parameters instead of
constants), and that module evaluated by the interpreter."""
from __future__ import annotations

import numpy as np

from tessel.backends import interpreter
from tessel.compiler import dtypes
from tessel.compiler.ir import Module, Shape
from tessel.frontend import core
from tessel.runtime import pytree


def trace(fn, *arrays) -> tuple[Module, object]:
    """fn traced with `arrays` as parameters: (the module, unevaluated; the output treedef)."""
    module = Module("test")
    with core.TraceContext(module, "main") as ctx:
        params = [ctx.parameter(Shape(dtypes.from_numpy(a.dtype), a.shape)) for a in arrays]
        leaves, treedef = pytree.flatten(fn(*params))
        root = ctx.emit("tuple", [core.lift(leaf) for leaf in leaves])
        ctx.builder.build(root.instr, entry=True)
    ctx.finished = True
    return module, treedef


def run(fn, *arrays) -> list[np.ndarray]:
    """Trace fn with the arrays as parameters, evaluate with the interpreter; return the
    output leaves as a list."""
    module, _ = trace(fn, *arrays)
    return [np.asarray(v) for v in interpreter.evaluate(module, list(arrays))]
