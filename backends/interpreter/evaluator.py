"""The evaluator loop: an environment from instructions to values, one rule per opcode.

`evaluate(module, args)` runs a module's entry on NumPy arrays; `evaluate_computation`
runs any computation (loop bodies, reducers, branches) and is what rules call, through
`Frame.call`, for their nested computations.
"""
from __future__ import annotations

import time

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ...compiler import dtypes
from ...compiler.dtypes import DType
from ...compiler.ir import AnyShape, Computation, Instruction, Module, Shape, TupleShape
from .table import IMPL


class InterpreterError(RuntimeError):
    """The program did something the interpreter cannot give a value to (e.g. a recv
    with no matching send), or a rule produced a value of the wrong shape."""


# ----------------------------------------------------------------------------- context

class SingleProcessCollectives:
    """Collectives of a single process: every all-reduce sees one participant.

    The distributed runtime plugs in an object with the same `all_reduce` method that
    runs the reduction across processes (MPI).
    """

    process_index = 0
    process_count = 1

    def all_reduce(self, value: np.ndarray, reduction: str) -> np.ndarray:
        return value   # sum, max, min and mean of one value are that value

    def all_gather(self, value: np.ndarray, participants: int) -> np.ndarray:
        if participants != 1:
            raise InterpreterError(f"all_gather was traced for {participants} processes, "
                                   f"but this is a single process")
        return value[None]

    def broadcast(self, value: np.ndarray, root: int) -> np.ndarray:
        if root != 0:
            raise InterpreterError(f"collective_broadcast from root {root}, but this is a single "
                                   f"process (its index is 0)")
        return value


def default_collectives():
    """The collectives of this process: MPI's once `tessel.distributed.initialize()` ran."""
    from ...distributed import runtime
    return runtime.collectives()


@dataclass
class Context:
    """State shared by every computation of one evaluation.

    collectives:  executes all_reduce (replace it to run across processes)
    channels:     channel_id -> FIFO of values sent and not yet received
    custom_calls: call_target_name -> target(instr, *operand_values) -> value
    fast_paths:   use NumPy shortcuts for recognized reducers and comparators; False
                  forces the general path that evaluates the nested computations
                  (the tests run both and compare)
    """
    collectives: Any = field(default_factory=default_collectives)
    channels: dict[int, deque] = field(default_factory=dict)
    custom_calls: dict[str, Callable] = field(default_factory=dict)
    fast_paths: bool = True


@dataclass
class Frame:
    """One running computation: its arguments and the shared context."""
    ctx: Context
    args: Sequence

    def call(self, comp: Computation, args: Sequence, check_shapes: bool = True):
        return evaluate_computation(comp, args, self.ctx, check_shapes=check_shapes)


# ----------------------------------------------------------------------------- storing values

def store(value, dtype: DType) -> np.ndarray:
    """`value` as an array of `dtype`'s storage type (bf16: float32 rounded to bf16)."""
    array = np.asarray(value)
    if dtype is dtypes.bf16 and array.dtype not in _EXACT_IN_FLOAT32:
        array = _float32_round_to_odd(array.astype(np.float64))
    return dtypes.canonicalize(array, dtype)


_EXACT_IN_FLOAT32 = {np.dtype(t) for t in (np.bool_, np.int8, np.uint8, np.int16, np.uint16,
                                             np.float16, np.float32)}


def _float32_round_to_odd(x: np.ndarray) -> np.ndarray:
    """float64 -> float32 rounding toward zero with the last bit set when inexact.

    Rounding a wide value to float32 and then to bf16 could round twice; rounding to
    odd first makes the second (nearest-even) rounding exact, so f64 -> bf16 converts
    in one correct step.
    """
    f = np.asarray(x.astype(np.float32))
    back = f.astype(np.float64)
    inexact = (back != x) & ~np.isnan(x)
    away = inexact & (np.abs(back) > np.abs(x))
    f = np.where(away, np.nextafter(f, np.float32(0)), f).astype(np.float32)
    return (f.view(np.uint32) | inexact.astype(np.uint32)).view(np.float32)


def _store_result(value, shape: AnyShape, instr: Instruction, check_shapes: bool):
    if isinstance(shape, TupleShape):
        if not isinstance(value, tuple) or len(value) != len(shape.elements):
            raise InterpreterError(f"rule for {instr.opcode} returned {type(value).__name__}, "
                                   f"but {instr.name} declares the tuple {shape}")
        return tuple(_store_result(v, s, instr, check_shapes) for v, s in zip(value, shape.elements))
    array = store(value, shape.dtype)
    if check_shapes and array.shape != shape.dims:
        raise InterpreterError(f"rule for {instr.opcode} produced shape {array.shape}, "
                               f"but {instr.name} declares {shape}")
    return array


# ----------------------------------------------------------------------------- the loop

def evaluate_computation(comp: Computation, args: Sequence, ctx: Context,
                         check_shapes: bool = True):
    """Run `comp` on `args` (values, unchecked) and return the root's value.

    check_shapes=False runs a scalar body on arrays of any (common) shape, elementwise;
    `bodies.apply` uses it to apply a reducer to many elements at once.
    """
    with np.errstate(all="ignore"):   # integer wrap-around, inf and NaN are defined results
        return _run(comp, args, ctx, check_shapes)


def _run(comp: Computation, args: Sequence, ctx: Context, check_shapes: bool):
    frame = Frame(ctx, args)
    env: dict[Instruction, Any] = {}

    def read(operand: Instruction, user: Instruction):
        try:
            return env[operand]
        except KeyError:
            raise InterpreterError(f"{user.name} ({user.opcode}, from {user.loc_text}) uses {operand.name}, "
                                   f"which computation {comp.name} does not compute before it; "
                                   f"the module does not verify") from None

    for instr in comp.instructions:
        values = [read(o, instr) for o in instr.operands]
        try:
            result = IMPL[instr.opcode](frame, instr, *values)
        except Exception as e:
            e.add_note(f"while evaluating {instr.name} ({instr.opcode}) in computation "
                       f"{comp.name}, from {instr.loc_text}")
            raise
        env[instr] = _store_result(result, instr.shape, instr, check_shapes)
    return env[comp.root]


def evaluate(module: Module, args: Sequence, ctx: Context | None = None):
    """Run the module's entry on `args`; an ndarray, or a tuple for a tuple-shaped root.

    Arguments must match the entry's parameters: NumPy arrays of the parameter's storage
    dtype and dims (bf16: float32 arrays, rounded to bf16 here), Python scalars for 0-d
    parameters, tuples for tuple-shaped ones. Anything else raises TypeError.
    """
    entry = module.entry
    if entry is None:
        raise ValueError(f"module {module.name} has no entry computation")
    checked = check_arguments(entry, args)
    start = time.perf_counter()
    result = _fresh(evaluate_computation(entry, checked, ctx or Context()))
    for hook in evaluation_hooks:
        hook(module, checked, ctx, result, time.perf_counter() - start)
    return result


# Callbacks run after every top-level evaluation, with (module, checked args, ctx, result,
# seconds); the test suite uses this to re-run every program after the optimizer.
evaluation_hooks: list = []


def _fresh(value):
    """Writable copies, so callers cannot alter constants or each other's results."""
    if isinstance(value, tuple):
        return tuple(_fresh(v) for v in value)
    return np.array(value)


# ----------------------------------------------------------------------------- argument checks

def check_arguments(comp: Computation, args: Sequence) -> list:
    params = comp.parameters
    if isinstance(args, np.ndarray) or len(args) != len(params):
        given = "an array" if isinstance(args, np.ndarray) else f"{len(args)}"
        raise TypeError(f"computation {comp.name} takes {len(params)} arguments "
                        f"({', '.join(str(p.shape) for p in params)}), given {given}")
    return [_check_argument(p.name, p.attrs["index"], p.shape, a) for p, a in zip(params, args)]


def _check_argument(name: str, index: int, shape: AnyShape, arg):
    where = f"parameter {index} ({name})"
    if isinstance(shape, TupleShape):
        if not isinstance(arg, (tuple, list)) or len(arg) != len(shape.elements):
            raise TypeError(f"{where}: expected a tuple {shape}, given {_describe(arg)}")
        return tuple(_check_argument(f"{name}[{i}]", index, s, a)
                     for i, (s, a) in enumerate(zip(shape.elements, arg)))
    if isinstance(arg, (bool, int, float)) and shape.rank == 0:
        if not _scalar_fits(arg, shape.dtype):
            raise TypeError(f"{where}: expected {shape}, given the Python scalar {arg!r}")
        return store(arg, shape.dtype)   # a Python scalar takes the parameter's type
    if not isinstance(arg, (np.ndarray, np.generic)):
        raise TypeError(f"{where}: expected an ndarray {shape}, given {_describe(arg)}")
    array = np.asarray(arg)
    if array.dtype != shape.dtype.storage or array.shape != shape.dims:
        raise TypeError(f"{where}: expected {shape} ({_numpy_spelling(shape)}), "
                        f"given {array.dtype}{list(array.shape)}")
    return store(array, shape.dtype)


def _scalar_fits(value, dtype: DType) -> bool:
    """Python scalars are weakly typed (as in JAX): bool -> pred, int -> any number type
    that holds it, float -> float types."""
    if isinstance(value, bool):
        return dtype.is_pred
    if isinstance(value, int):
        if dtype.is_integer:
            info = np.iinfo(dtype.storage)
            return info.min <= value <= info.max
        return dtype.is_float
    return dtype.is_float


def _numpy_spelling(shape: Shape) -> str:
    return f"{shape.dtype.storage}{list(shape.dims)}"


def _describe(arg) -> str:
    if isinstance(arg, np.ndarray):
        return f"{arg.dtype}{list(arg.shape)}"
    if isinstance(arg, (tuple, list)):
        return f"a {type(arg).__name__} of {len(arg)}"
    return type(arg).__name__
