"""The bf16-operand / fp32-accumulation model and its error bounds (docs/systolic-backend.md)."""
from __future__ import annotations

import numpy as np
import pytest

from tessel.backends.systolic import reference as ref


def test_operands_are_rounded_to_8_significant_bits():
    x = np.float32(1 + 2 ** -8 + 2 ** -10)            # just above the halfway point
    assert ref.round_operand(x) == np.float32(1 + 2 ** -7)
    assert ref.round_operand(x, "truncate") == np.float32(1.0)


def test_products_of_bf16_values_are_exact_in_float32():
    rng = np.random.default_rng(0)
    a = ref.round_operand(rng.standard_normal(1000))
    b = ref.round_operand(rng.standard_normal(1000))
    assert np.array_equal((a * b).astype(np.float64), a.astype(np.float64) * b.astype(np.float64))


@pytest.mark.parametrize("mode", ["nearest", "truncate"])
@pytest.mark.parametrize("k", [1, 7, 128, 1000])
def test_bf16_dot_is_within_the_derived_bound_of_the_exact_product(mode, k):
    rng = np.random.default_rng(k)
    a = rng.standard_normal((16, k)).astype(np.float32)
    b = rng.standard_normal((k, 12)).astype(np.float32)
    exact = a.astype(np.float64) @ b.astype(np.float64)
    err = np.abs(ref.bf16_dot(a, b, mode) - exact)
    bound = ref.dot_tolerance(a, b, mode)
    assert (err <= bound).all()
    # and the bound is not vacuous: the worst element uses a visible part of it
    assert (err / bound).max() > 0.02


def test_the_bound_is_tight_for_a_worst_case_product():
    # every operand 1 + 2^-8 (exactly halfway, rounds to even: 1): relative error 2u - u^2
    a = np.full((1, 4), 1 + 2 ** -8, np.float32)
    got = ref.bf16_dot(a, a.T)
    exact = 4 * (1 + 2 ** -8) ** 2
    assert abs(got[0, 0] - exact) <= ref.dot_tolerance(a, a.T)[0, 0]
    assert abs(got[0, 0] - exact) / exact > 0.9 * ref.product_error()


def test_model_bound_is_f32_accumulation_only():
    assert ref.dot_relative_bound(128, against="model") == pytest.approx(2 * 128 * 2 ** -24, rel=1e-4)
    assert ref.dot_relative_bound(128, against="f32") > ref.dot_relative_bound(128)
    assert ref.product_error("truncate") > ref.product_error("nearest")
