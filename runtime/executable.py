"""Executable: a compiled program that runs on one backend.

An Executable takes and returns pytrees of arrays. It validates every argument against
the signature it was compiled for before any backend code runs, and reports every
mismatch at once (argument path, expected, given).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..compiler import dtypes
from ..compiler.ir import Module, Shape
from . import backends, pytree


@dataclass(frozen=True)
class ArgSpec:
    """One flat argument: where it sits in the user's pytree and its abstract value."""
    path: str
    aval: Shape
    weak: bool = False      # given as a Python scalar: NEP 50 treats it as weakly typed


def _format_aval(aval: Shape) -> str:
    return f"{aval.dtype.name}{list(aval.dims)}"


def as_argument_array(x, path: str) -> np.ndarray:
    """A leaf of the user's arguments as an ndarray, or a TypeError naming it."""
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, int) and not isinstance(x, bool) and not -2 ** 63 <= x < 2 ** 64:
        raise TypeError(f"argument {path}: a Python int of {x.bit_length()} bits does not fit "
                        f"in 64 (s64 or u64); pass a float or a NumPy array")
    if isinstance(x, (bool, int, float, np.generic)):
        return np.asarray(x)
    if hasattr(x, "__array__") and hasattr(x, "shape") and hasattr(x, "dtype"):
        return np.asarray(x)
    raise TypeError(f"argument {path} must be an array or a number, given {type(x).__name__} {x!r:.60}")


@dataclass(frozen=True)
class Signature:
    """What a program takes and returns: pytree structures and flat abstract values."""
    in_tree: pytree.TreeDef
    in_specs: tuple[ArgSpec, ...]
    out_tree: pytree.TreeDef
    out_avals_flat: tuple[Shape, ...]

    @property
    def in_avals(self):
        return pytree.unflatten(self.in_tree, [s.aval for s in self.in_specs])

    @property
    def out_avals(self):
        return pytree.unflatten(self.out_tree, list(self.out_avals_flat))


class Executable:
    """A compiled program: call it with the same pytree structure it was compiled for."""

    def __init__(self, module: Module, backend: str, signature: Signature, name: str = "main"):
        self.module = module
        self.backend = backend
        self.signature = signature
        self.name = name
        self._run = backends.get(backend).compile(module)

    in_avals = property(lambda self: self.signature.in_avals)
    out_avals = property(lambda self: self.signature.out_avals)

    def as_text(self) -> str:
        return str(self.module)

    def cost_analysis(self):
        """Flops, transcendentals and bytes of the optimized program (compiler/cost.py)."""
        from ..compiler.cost import cost_analysis
        return cost_analysis(self.module)

    def memory_analysis(self):
        """Argument, output, temporary and peak bytes under the buffer plan."""
        from ..compiler.buffer_assignment import memory_analysis
        return memory_analysis(self.module)

    @property
    def backend_runner(self):
        """The backend's own compiled object behind `run` (e.g. the systolic program and
        its timing report), or None when the backend returns a plain function."""
        return getattr(self._run, "__self__", None)

    def systolic_report(self):
        """The timing model's report of a systolic program (backends/systolic)."""
        return self._systolic_runner().report()

    def program_text(self) -> str:
        """The systolic program as assembly text."""
        return self._systolic_runner().program.text()

    def _systolic_runner(self):
        if self.backend != "systolic":
            raise ValueError(f"{self.name} was compiled for the {self.backend} backend; systolic "
                             f"reports and programs exist for backend='systolic' only")
        return self.backend_runner

    def validate(self, leaves: Sequence, treedef: pytree.TreeDef) -> list[np.ndarray]:
        """Check structure, shapes and dtypes; return the leaves as canonical arrays."""
        return validate_arguments(self.signature, self.name, leaves, treedef)

    def call_flat(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        return list(self._run(list(arrays)))

    def call_leaves(self, leaves: Sequence, treedef: pytree.TreeDef):
        """Validate flat argument leaves, run, and return the result pytree."""
        arrays = self.validate(leaves, treedef)
        return pytree.unflatten(self.signature.out_tree, self.call_flat(arrays))

    def __call__(self, *args):
        return self.call_leaves(*pytree.flatten(args))

    def fast_call(self, arrays: tuple):
        """Run on positional ndarrays already known to match the signature exactly
        (`Jitted` indexes them by dtype and shape): no flattening or re-validation here;
        the backend's own checks (shape, dtype, layout) still run before native code."""
        outputs = self._run(list(arrays))
        if self._single_output:
            return outputs[0]
        return pytree.unflatten(self.signature.out_tree, list(outputs))

    @functools.cached_property
    def _single_output(self) -> bool:
        return self.signature.out_tree.kind == "leaf"


def validate_arguments(signature: Signature, name: str, leaves: Sequence,
                       treedef: pytree.TreeDef) -> list[np.ndarray]:
    """Check a call's argument leaves against `signature` (structure, shapes, dtypes;
    every mismatch reported at once); return them as canonical arrays."""
    problems = pytree.structure_diff(signature.in_tree, treedef, "args")
    if problems:
        raise TypeError(f"{name}: arguments do not match the compiled signature:\n  "
                        + "\n  ".join(problems))
    arrays, problems = [], []
    for spec, leaf in zip(signature.in_specs, leaves):
        array = as_argument_array(leaf, spec.path)
        problem = _aval_mismatch(spec, array)
        if problem:
            problems.append(problem)
        else:
            arrays.append(dtypes.canonicalize(array, spec.aval.dtype))
    if problems:
        raise TypeError(f"{name}: {len(problems)} argument(s) do not match the compiled "
                        f"signature:\n  " + "\n  ".join(problems))
    return arrays


def _aval_mismatch(spec: ArgSpec, array: np.ndarray) -> str | None:
    expected = spec.aval
    try:
        given_dtype = dtypes.from_numpy(array.dtype)
    except TypeError:
        return f"{spec.path}: expected {_format_aval(expected)}, given unsupported dtype {array.dtype}"
    dtype_ok = given_dtype == expected.dtype or (expected.dtype is dtypes.bf16 and given_dtype is dtypes.f32)
    if not dtype_ok or tuple(array.shape) != expected.dims:
        return (f"{spec.path}: expected {_format_aval(expected)}, "
                f"given {given_dtype.name}{list(array.shape)}")
    return None
