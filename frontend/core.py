"""Tracing: Tracer values that record IR instructions as user code runs.

A `TraceContext` owns an `ir.Builder` for one computation. Nested contexts (bodies of
`lax.cond`, loops, reducers) have a parent; a tracer of an enclosing context used in
a nested one is *captured*: it becomes an extra parameter of the nested computation,
and the control-flow op passes the outer value in (closure conversion).

Outside any trace, tessel.numpy functions run eagerly: the call is traced into a
throwaway module and evaluated by the interpreter, so eager and compiled code share
one definition of every op.
"""
from __future__ import annotations

import functools
import sys
import threading
from typing import Any, Callable, Sequence

import numpy as np

from ..compiler import dtypes, ops
from ..compiler.dtypes import DType
from ..compiler.ir import Builder, Instruction, Module, Shape, TupleShape
from . import errors
from .device_scope import current_device
from .errors import CONTROL_FLOW_HINT, ConcretizationError, trace_error

_state = threading.local()


def _stack() -> list["TraceContext"]:
    if not hasattr(_state, "stack"):
        _state.stack = []
    return _state.stack


def current_context() -> "TraceContext | None":
    stack = _stack()
    return stack[-1] if stack else None


class TraceContext:
    """Records instructions into one computation of `module`."""

    def __init__(self, module: Module, name: str, parent: "TraceContext | None" = None,
                 probe: bool = False):
        self.module = module
        self.probe = probe          # a probe only learns output types: it never captures upward
        self.builder = Builder(module, name)
        self.parent = parent
        self.captures: list[tuple[Tracer, Tracer]] = []   # (outer value, inner parameter)
        self._capture_index: dict[int, Tracer] = {}
        self._reducers: dict[tuple[str, str], Any] = {} if parent is None else parent._reducers
        self.finished = False

    # -- context management
    def __enter__(self) -> "TraceContext":
        _stack().append(self)
        return self

    def __exit__(self, kind, value, tb) -> None:
        popped = _stack().pop()
        assert popped is self, "trace contexts must nest"
        if kind is RecursionError and self.parent is None:
            raise trace_error(
                f"tracing exceeded Python's recursion limit ({sys.getrecursionlimit()}): the traced "
                f"code recurses without end, or nests calls (recursive helpers, lax.cond/scan "
                f"bodies inside each other) too deeply to trace. Bound the recursion, express it "
                f"as a loop (tessel.lax.fori_loop / scan), or raise sys.setrecursionlimit") from value

    # -- values
    def parameter(self, shape, name: str = "p", weak: bool = False) -> "Tracer":
        loc = errors.user_location()
        self.builder.loc = (loc,) if loc else ()
        return Tracer(self, self.builder.parameter(shape, name), weak)

    def constant(self, value, dtype: DType | None = None) -> "Tracer":
        self._set_loc()
        return Tracer(self, self.builder.constant(value, dtype))

    def emit(self, opcode: str, operands: Sequence["Tracer"], attrs=None, shape=None) -> "Tracer":
        self._set_loc()
        instrs = [self.own(t).instr for t in operands]
        attrs = _placed(opcode, attrs)
        try:
            instr = self.builder.emit(opcode, instrs, attrs, shape)
        except ops.ShapeError as e:
            given = ", ".join(str(i.shape) for i in instrs)
            raise trace_error(f"{opcode}({given}): {e}") from e
        return Tracer(self, instr)

    def emit_multi(self, opcode, operands, attrs=None, shape=None) -> list["Tracer"]:
        """Emit an op with a tuple result and return one tracer per element."""
        whole = self.emit(opcode, operands, attrs, shape)
        n = len(whole.instr.shape.elements)
        return [self.emit("get_tuple_element", [whole], {"index": i}) for i in range(n)]

    def _set_loc(self) -> None:
        loc = errors.user_location()
        self.builder.loc = (loc,) if loc else ()

    # -- closure conversion
    def own(self, t: "Tracer") -> "Tracer":
        """`t` as a value of this context, capturing it from an enclosing one if needed."""
        if t.ctx is self:
            return t
        if t.ctx.finished or not self._is_ancestor(t.ctx):
            raise trace_error(
                "a traced value escaped from the function that computed it (for example "
                "it was stored in a global or a list during an earlier trace) and is used "
                "in another trace; pass it as an argument instead", cls=errors.TraceError)
        if id(t) in self._capture_index:
            return self._capture_index[id(t)]
        outer = t if (t.ctx is self.parent or self.probe) else self.parent.own(t)
        inner = Tracer(self, self.builder.parameter(t.aval, name="captured"))
        self.captures.append((outer, inner))
        self._capture_index[id(t)] = inner
        return inner

    def _is_ancestor(self, ctx: "TraceContext") -> bool:
        node = self.parent
        while node is not None:
            if node is ctx:
                return True
            node = node.parent
        return False

    # -- shared scalar reducer computations (add, max, ...) per module
    def reducer(self, opcode: str, dtype: DType):
        key = (opcode, dtype.name)
        if key not in self._reducers:
            b = Builder(self.module, f"{opcode}.{dtype.name}")
            a = b.parameter(Shape(dtype, ()), "a")
            c = b.parameter(Shape(dtype, ()), "b")
            self._reducers[key] = b.build(b.emit(opcode, [a, c]))
        return self._reducers[key]


def _placed(opcode: str, attrs):
    """`attrs` with the open `tessel.device` scope's device, unless already placed."""
    device = current_device()
    if device is None or opcode == "parameter" or (attrs and ops.DEVICE_ATTR in attrs):
        return attrs
    return {**(attrs or {}), ops.DEVICE_ATTR: device}


def _np_dtype(dt: DType):
    """What `tracer.dtype` returns: a NumPy dtype (bf16 has none, so the DType itself)."""
    return dt if dt is dtypes.bf16 else dt.storage


class Tracer:
    """An abstract array (shape + dtype) standing for a value computed by the program."""

    __array_priority__ = 1000
    __slots__ = ("ctx", "instr", "weak")

    def __init__(self, ctx: TraceContext, instr: Instruction, weak: bool = False):
        self.ctx = ctx
        self.instr = instr
        # A weak tracer stands for a Python scalar (a jit argument given as 2.0, or
        # Python arithmetic on such): under NEP 50 it takes the other operand's dtype.
        self.weak = weak

    # -- abstract value
    @property
    def aval(self) -> Shape:
        return self.instr.shape

    @property
    def shape(self) -> tuple[int, ...]:
        return self.aval.dims

    @property
    def ndim(self) -> int:
        return len(self.aval.dims)

    @property
    def size(self) -> int:
        return self.aval.size

    @property
    def dtype(self):
        return _np_dtype(self.aval.dtype)

    @property
    def tdtype(self) -> DType:
        return self.aval.dtype

    def __len__(self) -> int:
        if not self.shape:
            raise trace_error("len() of a 0-d traced array")
        return self.shape[0]

    def __iter__(self):
        if not self.shape:
            raise trace_error("iteration over a 0-d traced array")
        return (self[i] for i in range(self.shape[0]))

    def __repr__(self) -> str:
        return f"Tracer<{self.aval}>({self.instr.name})"

    # -- Python needs a concrete value: refuse, pointing at the line and the way out
    def _concrete(self, what: str):
        raise trace_error(f"{what} on a traced value {self.aval}: {CONTROL_FLOW_HINT}",
                          cls=ConcretizationError)

    def __bool__(self):
        self._concrete("Python if/while/bool()")

    def __int__(self):
        self._concrete("int()")

    def __float__(self):
        self._concrete("float()")

    def __complex__(self):
        self._concrete("complex()")

    def __index__(self):
        self._concrete("use as a Python index")

    def item(self):
        self._concrete(".item()")

    def tolist(self):
        self._concrete(".tolist()")

    def __array__(self, dtype=None, copy=None):
        self._concrete("conversion to a NumPy array (np.asarray)")

    def __hash__(self):
        return id(self)

    # -- NumPy protocols: route NumPy's functions and ufuncs to tessel.numpy
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        from . import numpy_dispatch
        return numpy_dispatch.array_ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        from . import numpy_dispatch
        return numpy_dispatch.array_function(func, args, kwargs)


def _tnp():
    from . import numpy_api
    return numpy_api


def _binary(name, reflected=False):
    def method(self, other):
        fn = getattr(_tnp(), name)
        return fn(other, self) if reflected else fn(self, other)
    method.__name__ = name
    return method


def _unary(name):
    def method(self):
        return getattr(_tnp(), name)(self)
    return method


def _method(name):
    def method(self, *args, **kwargs):
        return getattr(_tnp(), name)(self, *args, **kwargs)
    method.__name__ = name
    return method


_OPERATORS = {  # dunder -> tessel.numpy function
    "add": "add", "sub": "subtract", "mul": "multiply", "truediv": "true_divide",
    "floordiv": "floor_divide", "mod": "remainder", "pow": "power", "matmul": "matmul",
    "and": "bitwise_and", "or": "bitwise_or", "xor": "bitwise_xor", "divmod": "divmod",
}
for _dunder, _fn in _OPERATORS.items():
    setattr(Tracer, f"__{_dunder}__", _binary(_fn))
    setattr(Tracer, f"__r{_dunder}__", _binary(_fn, reflected=True))
for _dunder, _fn in {"lt": "less", "le": "less_equal", "gt": "greater", "ge": "greater_equal",
                     "eq": "equal", "ne": "not_equal"}.items():
    setattr(Tracer, f"__{_dunder}__", _binary(_fn))
for _dunder, _fn in {"neg": "negative", "pos": "positive", "abs": "abs", "invert": "invert"}.items():
    setattr(Tracer, f"__{_dunder}__", _unary(_fn))
for _name in ("reshape", "transpose", "sum", "mean", "max", "min", "prod", "var", "std",
              "argmax", "argmin", "any", "all", "astype", "squeeze", "ravel", "swapaxes",
              "cumsum", "cumprod", "clip", "dot", "round", "flatten", "repeat", "take",
              "sort", "argsort", "diagonal", "trace"):
    setattr(Tracer, _name, _method(_name))
Tracer.__getitem__ = lambda self, index: _tnp().getitem(self, index)
Tracer.__round__ = lambda self, ndigits=None: _tnp().round(self, ndigits or 0)
Tracer.T = property(lambda self: _tnp().transpose(self))
Tracer.mT = property(lambda self: _tnp().swapaxes(self, -1, -2))
Tracer.real = property(lambda self: self)


# ----------------------------------------------------------------------------- lifting values

def is_tracer(x) -> bool:
    return isinstance(x, Tracer)


def is_weak_scalar(x) -> bool:
    """Python scalars are 'weak' under NEP 50: they take the other operand's dtype.

    A weak tracer (a Python scalar passed to a jitted function) is weak too.
    """
    if isinstance(x, Tracer):
        return x.weak
    return isinstance(x, (bool, int, float)) and not isinstance(x, np.generic)


_WEAK_PROXIES = {"pred": False, "signed": 0, "unsigned": 0, "float": 0.0}


def weak_proxy(x):
    """A Python scalar standing in for a weak value in NumPy's type resolution."""
    if isinstance(x, Tracer):
        return _WEAK_PROXIES[x.aval.dtype.kind]
    return x


def lift(x, dtype=None) -> Tracer:
    """`x` as a tracer of the current context (NumPy data becomes a constant)."""
    ctx = current_context()
    if isinstance(x, Tracer):
        t = ctx.own(x)
        return t if dtype is None else _tnp().astype(t, dtype)
    if isinstance(x, (list, tuple)) and _contains_tracer(x):
        return _tnp().asarray(x, dtype=dtype)       # stacks the pieces, like np.asarray
    try:
        array = np.asarray(x) if dtype is None else np.asarray(x, dtype=dtypes.from_any(dtype).storage)
    except (TypeError, ValueError) as e:
        raise trace_error(f"cannot use {type(x).__name__} value {x!r} as an array: {e}") from e
    if array.dtype == object:
        raise trace_error(f"cannot use {type(x).__name__} value as an array (it has no numeric dtype)")
    dt = dtypes.from_any(dtype) if dtype is not None else _dtype_of_numpy(array)
    return ctx.constant(array, dt)


def _contains_tracer(seq) -> bool:
    return any(isinstance(v, Tracer) or isinstance(v, (list, tuple)) and _contains_tracer(v)
               for v in seq)


def _dtype_of_numpy(array: np.ndarray) -> DType:
    try:
        return dtypes.from_numpy(array.dtype)
    except TypeError as e:
        raise trace_error(str(e)) from e


def aval_of(x) -> Shape:
    """The abstract value (shape and dtype) of a tracer or concrete value."""
    if isinstance(x, Tracer):
        return x.aval
    array = np.asarray(x)
    return Shape(_dtype_of_numpy(array), array.shape)


# ----------------------------------------------------------------------------- eager mode

def traceable(fn: Callable) -> Callable:
    """Make a tessel.numpy-level function usable outside of a trace (eager mode)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if current_context() is not None:
            return fn(*args, **kwargs)
        return run_eagerly(fn, args, kwargs)
    return wrapper


def run_eagerly(fn: Callable, args, kwargs):
    from ..backends import interpreter
    from ..runtime import pytree
    module = Module(getattr(fn, "__name__", "eager"))
    with TraceContext(module, "main") as ctx:
        out = fn(*args, **kwargs)
        leaves, treedef = pytree.flatten(out)
        tracers = [lift(leaf) for leaf in leaves]
        root = ctx.emit("tuple", tracers)
        ctx.builder.build(root.instr, entry=True)
    ctx.finished = True
    values = interpreter.evaluate(module, [])
    return pytree.unflatten(treedef, [np.asarray(v) for v in values])
