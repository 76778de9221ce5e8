"""The numeric model of the matrix unit, and the error bound it implies.

The machine multiplies bf16-rounded operands and accumulates in fp32; everything else
(activations, vector-unit arithmetic) is fp32. `bf16_dot` is that model in NumPy: it is
what the systolic backend's results are compared against "to f32 rounding", and the
bounds below say how far they may be from an f32 (or exact) computation.

Derivation (docs/systolic-backend.md, "Accuracy"). bf16 keeps p = 8 significant bits:
rounding to nearest has unit roundoff u = 2^-8, truncation ("mask off the low 16 bits")
u = 2^-7. A product of two rounded operands is

    fl(a) fl(b) = a b (1 + d1)(1 + d2),   |(1 + d1)(1 + d2) - 1| <= 2u + u^2,

and is exact in fp32 (8 + 8 significant bits <= 24). Summing K such products in fp32,
in any order, adds at most gamma_K = K u32 / (1 - K u32) (u32 = 2^-24) of the sum of
their magnitudes. So for every element of C = A B with contraction depth K:

    |C_machine - C_exact| <= ((2u + u^2)(1 + gamma_K) + gamma_K) * (|A| |B|)
    |C_machine - C_model| <= 2 gamma_K * (|fl(A)| |fl(B)|)        (model: bf16_dot)

The f32 interpreter is itself within gamma_K (|A| |B|) of exact, which the first bound
absorbs by adding gamma_K once more (`dot_tolerance(..., against="f32")`).
"""
from __future__ import annotations

import numpy as np

from ...compiler.dtypes import round_to_bf16

U32 = 2.0 ** -24
UNIT_ROUNDOFF = {"nearest": 2.0 ** -8, "truncate": 2.0 ** -7}   # bf16, p = 8 bits


def round_operand(x, mode: str = "nearest") -> np.ndarray:
    """`x` as float32 holding bf16 values (what the matrix unit multiplies)."""
    return round_to_bf16(np.asarray(x, dtype=np.float32), mode)


def bf16_dot(a, b, mode: str = "nearest") -> np.ndarray:
    """a @ b with bf16-rounded operands and fp32 accumulation (batched like np.matmul)."""
    return np.matmul(round_operand(a, mode), round_operand(b, mode), dtype=np.float32)


def gamma(k: int) -> float:
    """Higham's gamma_k for fp32: the relative error bound of a k-term fp32 sum."""
    return k * U32 / (1 - k * U32)


def product_error(mode: str = "nearest") -> float:
    """Relative error of one product of two bf16-rounded operands."""
    u = UNIT_ROUNDOFF[mode]
    return 2 * u + u * u


def dot_relative_bound(k: int, mode: str = "nearest", against: str = "exact") -> float:
    """The factor of |A||B| that bounds |machine - reference| for contraction depth k.

    against: "exact" (true product), "f32" (the f32 interpreter), "model" (bf16_dot).
    """
    g = gamma(k)
    if against == "model":
        return 2 * g
    bound = product_error(mode) * (1 + g) + g
    return bound + g if against == "f32" else bound


def dot_tolerance(a, b, mode: str = "nearest", against: str = "exact") -> np.ndarray:
    """Elementwise bound on |machine(a @ b) - reference(a @ b)| (module docstring)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if against == "model":
        a, b = round_operand(a, mode).astype(np.float64), round_operand(b, mode).astype(np.float64)
    k = a.shape[-1]
    return dot_relative_bound(k, mode, against) * np.matmul(np.abs(a), np.abs(b))


def model_tolerance(reference, dots_on_path: int, mode: str = "nearest") -> float:
    """Absolute tolerance for a whole model's output against the f32 interpreter.

    A first-order estimate, not a proof: each matrix-unit layer perturbs its result by
    at most product_error(mode) relative to |A||B| (the dominant term above); through
    layers whose activations do not amplify (relu, gelu, softmax, max-pool, layer norm
    of well-conditioned rows) the perturbations add, so the output moves by at most
    dots_on_path * product_error * scale. The scale is max|reference|, doubled to cover
    |A||B| exceeding |AB| by cancellation in random-sign data.
    """
    scale = float(np.max(np.abs(reference))) if np.size(reference) else 0.0
    return dots_on_path * product_error(mode) * 2 * scale
