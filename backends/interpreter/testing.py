"""Building small modules to run one op: used by the interpreter's tests and by the
other backends' differential tests against the interpreter."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ...compiler import dtypes
from ...compiler.ir import AnyShape, Builder, Computation, Module, Shape
from .evaluator import Context, evaluate


def shape_of(value) -> AnyShape:
    if isinstance(value, tuple):
        from ...compiler.ir import TupleShape
        return TupleShape([shape_of(v) for v in value])
    array = np.asarray(value)
    return Shape(dtypes.from_numpy(array.dtype), array.shape)


def one_op_module(opcode: str, arg_shapes: Sequence[AnyShape], attrs: Mapping | None = None,
                  shape: AnyShape | None = None, name: str = "one_op") -> Module:
    """A module whose entry applies `opcode` to its parameters.

    An attribute given as a function is called with the module to build the value
    (nested computations must belong to the module): `{"to_apply": reducer("add", "f32")}`.
    """
    module = Module(name)
    attrs = {k: v(module) if callable(v) else v for k, v in (attrs or {}).items()}
    b = Builder(module, "main")
    params = [b.parameter(s, name=f"x{i}") for i, s in enumerate(arg_shapes)]
    b.build(b.emit(opcode, params, attrs=attrs, shape=shape), entry=True)
    return module


def run_op(opcode: str, *args, attrs: Mapping | None = None, shape: AnyShape | None = None,
           dtype=None, ctx: Context | None = None):
    """Evaluate `opcode` on `args` (arrays, or tuples for tuple operands).

    `shape` declares the result for ops that need it; `dtype` is the IR dtype of the
    array arguments when NumPy's cannot say it (bf16).
    """
    arg_shapes = [shape_of(a) if dtype is None else Shape(dtype, np.shape(a)) for a in args]
    return evaluate(one_op_module(opcode, arg_shapes, attrs, shape), list(args), ctx)


def scalar_computation(module: Module, opcode: str, dtype, name: str | None = None,
                       **attrs) -> Computation:
    """`(a, b) -> opcode(a, b)` on scalars of `dtype`, added to `module` (a reducer)."""
    b = Builder(module, name or opcode)
    s = Shape(dtype, ())
    x, y = b.parameter(s, "a"), b.parameter(s, "b")
    return b.build(b.emit(opcode, [x, y], attrs=attrs or None))


def reducer(opcode: str, dtype, **attrs):
    """An attribute builder for one_op_module/run_op: `(a, b) -> opcode(a, b)`."""
    return lambda module: scalar_computation(module, opcode, dtype, **attrs)
