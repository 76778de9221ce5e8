"""Hypothesis strategy for random `tessel.numpy` programs.

A program is a list of steps over a pool of arrays; each step calls one NumPy function
(unary, broadcasting binary, reduction, matmul, transpose, reshape, concatenate, slicing,
where). `run(namespace, inputs)` executes it with `numpy` or with `tessel.numpy`, so the
same program is NumPy's reference and, under `tessel.jit`, a traced function. Steps are
drawn against shape-only NumPy dry runs, so every program is valid NumPy.

All functions used are continuous in their float inputs except `where`, whose condition
compares program inputs only (never computed values), so a few ulps of difference
between implementations stay a few ulps (checks.INEXACT_RTOL, relative to the largest
magnitude).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

SHAPES = ((), (3,), (1, 3), (2, 3), (2, 1), (4, 2, 3), (0, 3), (3, 3))
UNARY = ("tanh", "sin", "cos", "abs", "negative", "exp", "square", "logaddexp_self")
BINARY = ("add", "subtract", "multiply", "maximum", "minimum")
REDUCTIONS = ("sum", "max", "min", "mean", "prod")
STRUCTURAL = ("matmul", "transpose", "reshape", "concatenate", "slice", "where")
FUNCTIONS = UNARY + BINARY + REDUCTIONS + STRUCTURAL     # every step name a program can use


@dataclass(frozen=True)
class Step:
    kind: str
    name: str
    operands: tuple[int, ...]
    options: tuple = ()


@dataclass
class TnpProgram:
    input_shapes: list[tuple]
    input_dtypes: list[str]
    steps: list[Step]
    outputs: tuple[int, ...]
    seed: int

    def inputs(self) -> list[np.ndarray]:
        rng = np.random.default_rng(self.seed)
        return [rng.standard_normal(s).astype(d) for s, d in zip(self.input_shapes, self.input_dtypes)]

    def describe(self) -> str:
        lines = [f"inputs {list(zip(self.input_shapes, self.input_dtypes))}"]
        lines += [f"v{len(self.input_shapes) + k} = {s.name}{s.operands} {dict(s.options)}"
                  for k, s in enumerate(self.steps)]
        return "\n".join(lines + [f"outputs {self.outputs}"])


def apply(ns, step: Step, values: list, n_inputs: int):
    args = [values[i] for i in step.operands]
    opts = dict(step.options)
    if step.kind == "unary":
        if step.name == "logaddexp_self":
            return ns.logaddexp(args[0], args[0])
        return getattr(ns, step.name)(args[0])
    if step.kind == "binary":
        return getattr(ns, step.name)(args[0], args[1])
    if step.kind == "reduce":
        return getattr(ns, step.name)(args[0], axis=opts["axis"], keepdims=opts["keepdims"])
    if step.kind == "matmul":
        return ns.matmul(args[0], args[1])
    if step.kind == "transpose":
        return ns.transpose(args[0])
    if step.kind == "reshape":
        return ns.reshape(args[0], opts["shape"])
    if step.kind == "concatenate":
        return ns.concatenate(args, axis=opts["axis"])
    if step.kind == "slice":
        return args[0][opts["start"]::opts["step"]]
    if step.kind == "where":
        return ns.where(values[opts["condition"]] > 0, args[0], args[1])
    raise ValueError(f"unknown step kind {step.kind!r}")


def run_values(ns, program: TnpProgram, inputs) -> list:
    """Every value of the program: its inputs, then one per step."""
    values = list(inputs)
    for step in program.steps:
        values.append(apply(ns, step, values, len(inputs)))
    return values


def run(ns, program: TnpProgram, inputs) -> tuple:
    values = run_values(ns, program, inputs)
    return tuple(values[i] for i in program.outputs)


_PRECISION = {np.dtype(np.float16): 0, np.dtype(np.float32): 1, np.dtype(np.float64): 2}


def least_precise_on_path(program: TnpProgram, values: list) -> list[np.dtype]:
    """Per output, the least precise float dtype among the values it is computed from
    (`values`: run_values' result): an f32 tanh promoted into an f64 product carries the
    f32 rounding, so it is held to the f32 tolerance (NumPy's f32 kernels and tessel's
    may differ by an ulp)."""
    n_inputs = len(values) - len(program.steps)
    least = [np.asarray(v).dtype for v in values[:n_inputs]]
    for step, value in zip(program.steps, values[n_inputs:]):
        path = [least[i] for i in step.operands] + [np.asarray(value).dtype]
        least.append(min(path, key=lambda d: _PRECISION.get(d, 3)))
    return [least[i] for i in program.outputs]


def _dry(shape, dtype):
    return np.zeros(shape, dtype)


@st.composite
def tnp_programs(draw, max_steps: int = 8) -> TnpProgram:
    n_inputs = draw(st.integers(1, 3))
    shapes = [draw(st.sampled_from(SHAPES)) for _ in range(n_inputs)]
    dts = [draw(st.sampled_from(("float32", "float32", "float64"))) for _ in range(n_inputs)]
    dry = [_dry(s, d) for s, d in zip(shapes, dts)]
    steps: list[Step] = []
    for _ in range(draw(st.integers(1, max_steps))):
        kind = draw(st.sampled_from(("unary", "binary", "binary", "reduce", "matmul", "transpose",
                                     "reshape", "concatenate", "slice", "where")))
        pick = lambda: draw(st.integers(0, len(dry) - 1))  # noqa: E731
        a = pick()
        x = dry[a]
        operands, options = (a,), ()
        if kind == "unary":
            name = draw(st.sampled_from(UNARY))
        elif kind in ("binary", "matmul", "where"):
            name = draw(st.sampled_from(BINARY)) if kind == "binary" else kind
            operands = (a, pick())
            if kind == "where":
                inputs_only = [i for i in range(n_inputs)]
                options = (("condition", draw(st.sampled_from(inputs_only))),)
        elif kind == "reduce":
            name = draw(st.sampled_from(REDUCTIONS))
            axis = None if x.ndim == 0 or draw(st.booleans()) else draw(st.integers(-x.ndim, x.ndim - 1))
            options = (("axis", axis), ("keepdims", draw(st.booleans())))
        elif kind == "reshape":
            name = kind
            options = (("shape", draw(st.sampled_from(((-1,), (x.size, 1), (1, -1))))),)
        elif kind == "concatenate":
            name = kind
            operands = (a, pick())
            options = (("axis", draw(st.integers(0, max(x.ndim - 1, 0)))),)
        elif kind == "slice":
            name = kind
            options = (("start", draw(st.integers(0, 2))), ("step", draw(st.sampled_from((1, 2, -1)))))
        else:
            name = kind
        step = Step(kind, name, operands, options)
        try:
            with np.errstate(all="ignore"):
                result = apply(np, step, dry, n_inputs)
        except (ValueError, IndexError, TypeError, np.exceptions.AxisError):
            continue              # not valid NumPy for these shapes: draw another step
        if np.ndim(result) > 4 or np.size(result) > 512:
            continue
        steps.append(step)
        dry.append(np.asarray(result))
    n_values = len(dry)
    outputs = tuple(sorted({n_values - 1} | {i for i in range(n_inputs, n_values - 1) if draw(st.booleans())}))
    return TnpProgram(shapes, dts, steps, outputs, draw(st.integers(0, 2**32 - 1)))
