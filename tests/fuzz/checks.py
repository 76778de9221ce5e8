"""The properties every fuzzed program must have, and the tolerances they use.

Tolerances per op class (docs/reliability.md repeats this table):

| result computed through | compared |
|---|---|
| exact ops only: IEEE +, -, *, /, sqrt, min/max, select, compare, data movement, gathers, control flow, integer and pred ops, rng_bit_generator | bit for bit (NaN positions equal, payloads ignored) |
| a transcendental (exp log log1p expm1 tanh logistic sin cos erf power atan2 rsqrt): CPU within 1-2 ulp of the true value per call (docs/cpu-math.md) | `INEXACT_RTOL[dtype]` relative to the element plus the same times the program's largest finite magnitude |
| an unordered sum (reduce add/multiply, dot_general, convolution, reduce_window, scatter-add): reassociation | as above |

The absolute part is relative to the largest finite magnitude of any value in the entry
computation (`magnitude`), because a few ulps of a large intermediate survive a
cancellation as an absolute, not a relative, error. NaN and inf positions (and inf
signs) must match exactly in every case: the generator never feeds an inexact value to
an op where a small difference could legitimately create or remove one
(hlo_programs.NEEDS_EXACT_OPERANDS).
"""
from __future__ import annotations

import numpy as np

from tessel.backends.interpreter import evaluate
from tessel.compiler import verifier
from tessel.compiler.ir import Instruction, clone_module
from tessel.compiler.parser import parse_module
from tessel.compiler.pipeline import optimize
from tessel.compiler.printer import print_module
from tessel.compiler.structural import first_difference, module_structure
from tessel.runtime import backends

# Relative tolerance for inexact results: a chain of up to ~10 inexact ops of a few ulps
# each, amplified modestly, in the result's own dtype.
INEXACT_RTOL = {"f64": 1e-9, "f32": 1e-4, "f16": 2e-2, "bf16": 5e-2}


def leaves(value) -> list[np.ndarray]:
    if isinstance(value, (tuple, list)):
        return [leaf for v in value for leaf in leaves(v)]
    return [np.asarray(value)]


def magnitude(module, args) -> float:
    """The largest finite |value| of any array the entry computation produces."""
    probe = clone_module(module, "magnitude_probe")
    entry = probe.entry
    arrays = [i for i in entry.instructions if not i.shape.is_tuple and i.opcode != "tuple"]
    from tessel.compiler import ops
    root = Instruction(probe.unique_name("all_values"), "tuple", arrays, ops.infer_shape("tuple", [a.shape for a in arrays], {}))
    entry.add(root)
    entry.root = root
    biggest = 1.0
    for leaf in leaves(evaluate(probe, args)):
        if leaf.dtype.kind in "fc" and leaf.size:
            finite = np.abs(leaf[np.isfinite(leaf)])
            if finite.size:
                biggest = max(biggest, float(finite.max()))
    return biggest


def mismatch(got, want, inexact: list[bool], scale: float, what: str, atol=None) -> str | None:
    """Why `got` differs from `want` beyond the tolerances, or None. `atol`: per result,
    an absolute allowance on top (a backend's documented rounding, matrix_error_bound)."""
    got, want = leaves(got), leaves(want)
    if len(got) != len(want):
        return f"{what}: {len(got)} results, expected {len(want)}"
    atol = atol or [0.0] * len(want)
    for k, (g, w, loose, extra) in enumerate(zip(got, want, inexact, atol)):
        if g.shape != w.shape or g.dtype != w.dtype:
            return f"{what}: result {k} is {g.dtype}{list(g.shape)}, expected {w.dtype}{list(w.shape)}"
        if w.dtype.kind != "f":
            if not np.array_equal(g, w):
                return f"{what}: result {k} differs at {_first(g != w)}: {_at(g, w)}"
            continue
        if not np.array_equal(np.isnan(g), np.isnan(w)):
            return f"{what}: result {k} NaN positions differ at {_first(np.isnan(g) != np.isnan(w))}: {_at(g, w)}"
        inf_g, inf_w = np.where(np.isinf(g), np.sign(g), 0), np.where(np.isinf(w), np.sign(w), 0)
        if not np.array_equal(inf_g, inf_w):
            return f"{what}: result {k} inf positions differ at {_first(inf_g != inf_w)}: {_at(g, w)}"
        finite = np.isfinite(w)
        gf, wf = g[finite].astype(np.float64), w[finite].astype(np.float64)
        if not loose:
            bad = gf != wf
        else:
            # `loose` is True or the tolerance of the least precise dtype on the path
            rtol = max(INEXACT_RTOL[_dtype_name(w)], 0.0 if loose is True else float(loose))
            bad = np.abs(gf - wf) > rtol * np.abs(wf) + rtol * scale + extra
        if bad.any():
            i = int(np.argmax(bad))
            return (f"{what}: result {k} ({'inexact' if loose else 'exact'}) differs: "
                    f"got {gf[i]!r}, expected {wf[i]!r} (finite element {i}, scale {scale:g}"
                    f"{f', matrix-unit allowance {extra:g}' if extra else ''})")
    return None


def _dtype_name(array) -> str:
    return {np.dtype(np.float16): "f16", np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}[array.dtype]


def _first(mask) -> tuple:
    return tuple(int(i) for i in np.argwhere(mask)[0]) if mask.ndim else ()


def _at(g, w) -> str:
    return f"got {g.ravel()[:8]}, expected {w.ravel()[:8]}"


# ----------------------------------------------------------------------------- properties

def check_verifies(program):
    verifier.verify(program.module)


def check_round_trip(program):
    text = print_module(program.module, full_constants=True)
    parsed = parse_module(text)
    difference = first_difference(module_structure(program.module), module_structure(parsed))
    assert difference is None, f"parse(print(m)) differs at {difference}\n{text}"


def check_pipelines(program, backends_to_optimize=("interpreter", "cpu")) -> dict:
    """The optimized modules compute on the interpreter what the unoptimized one does.
    Returns the reference result, the scale and each optimized module."""
    want = evaluate(program.module, program.args)
    scale = magnitude(program.module, program.args)
    optimized = {}
    for backend in backends_to_optimize:
        module, _ = optimize(program.module, backend)
        got = evaluate(module, program.args)
        problem = mismatch(got, want, program.inexact, scale, f"{backend} pipeline on the interpreter")
        assert problem is None, f"{problem}\n{program.reproduction()}"
        optimized[backend] = module
    return {"want": want, "scale": scale, "optimized": optimized}


def check_backend(program, backend: str, reference: dict):
    """`backend` runs its optimized module like the interpreter runs the unoptimized one."""
    module = reference["optimized"][backend]
    got = backends.get(backend).compile(module)([np.array(a, copy=True) for a in program.args])
    problem = mismatch(got, reference["want"], program.inexact, reference["scale"], f"{backend} backend")
    assert problem is None, f"{problem}\n{program.reproduction()}"


# ----------------------------------------------------------------------------- systolic

def matrix_error_bound(program, mode: str = "nearest") -> list[float]:
    """Per result: how far the systolic machine may be from the interpreter because its
    matrix unit multiplies bf16-rounded operands (docs/systolic-backend.md, "Accuracy").

    Each dot_general / convolution is within dot_relative_bound(K, against="f32") of
    |A| |B| (the same op on the operands' absolute values, evaluated here); a result
    carries the errors of the matrix ops it depends on through ops that do not amplify
    them (systolic_programs.MATRIX_ERROR_OK), so its bound is their sum, each op counted
    as often as it reaches the result (Program.matrix_terms), taking the op's largest
    finite |A| |B|. Elements whose |A| |B| overflows are inf or NaN on both sides (the
    NaN/inf positions are compared exactly)."""
    from tessel.backends.systolic.reference import dot_relative_bound
    names = sorted({name for terms in program.matrix_terms for name in terms})
    if not names:
        return [0.0] * len(program.inexact)
    probe = clone_module(program.module, "matrix_magnitudes")
    entry = probe.entry
    by_name = {i.name: i for i in entry.instructions}
    magnitudes = []
    for name in names:
        op = by_name[name]
        absolute = [_emit(probe, entry, "abs", [o]) for o in op.operands]
        magnitudes.append(_emit(probe, entry, op.opcode, absolute, op.attrs, op.shape))
    root = _emit(probe, entry, "tuple", magnitudes)
    entry.root = root
    bound = {}
    for name, value in zip(names, leaves(evaluate(probe, program.args))):
        finite = value[np.isfinite(value)]
        largest = float(finite.max()) if finite.size else 0.0
        bound[name] = dot_relative_bound(_contraction_depth(by_name[name]), mode, "f32") * largest
    return [sum(count * bound[name] for name, count in terms.items()) for terms in program.matrix_terms]


def _emit(module, computation, opcode, operands, attrs=None, shape=None):
    from tessel.compiler import ops
    shape = shape or ops.infer_shape(opcode, [o.shape for o in operands], attrs or {})
    instr = Instruction(module.unique_name(f"probe_{opcode}"), opcode, list(operands), shape, attrs or {})
    computation.add(instr)
    return instr


def _contraction_depth(op) -> int:
    """K: how many products one result element sums."""
    from tessel.compiler import ops
    lhs, rhs = (o.shape for o in op.operands)
    if op.opcode == "dot_general":
        return int(np.prod([lhs.dims[d] for d in op.attrs["lhs_contracting_dims"]], dtype=np.int64))
    dn = ops.parse_dim_labels(op.attrs["dim_labels"])
    taps = np.prod([rhs.dims[d] for d in dn.kernel_spatial], dtype=np.int64)
    return int(taps * rhs.dims[dn.kernel_in])


def systolic_rounding_mode() -> str:
    from tessel.backends.systolic.executable import default_config
    return {"nearest_even": "nearest", "truncate": "truncate"}[default_config().bf16_rounding]


def refusal_kind(reason: str) -> str:
    """'pad: negative (cropping) padding is not supported' from UnsupportedOp's text."""
    head, _, why = reason.partition(" cannot run on the machine: ")
    opcode = head.removeprefix("systolic backend: ").split(" (")[0]
    return f"{opcode}: {why.split('. Supported ops')[0]}"


def check_systolic(program, reference: dict) -> str | None:
    """The systolic backend runs its optimized module like the interpreter runs the
    unoptimized one, within the matrix-unit bound. Returns the backend's refusal
    (UnsupportedOp: check_supported's reason) instead when it cannot run the program."""
    from tessel.backends.systolic.codegen import UnsupportedOp
    module = reference["optimized"]["systolic"]
    try:
        run = backends.get("systolic").compile(module)
    except UnsupportedOp as e:
        return str(e)
    got = run([np.array(a, copy=True) for a in program.args])
    atol = matrix_error_bound(program, systolic_rounding_mode())
    problem = mismatch(got, reference["want"], program.inexact, reference["scale"], "systolic backend", atol)
    assert problem is None, f"{problem}\n{program.reproduction()}"
    return None
