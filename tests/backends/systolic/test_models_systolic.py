"""Acceptance: whole models run end to end with tessel.jit(backend="systolic").

Each model (systolic_models.py, small sizes) must match
  (a) the f32 interpreter within the bf16 tolerance derived in docs/systolic-backend.md
      (reference.model_tolerance: layers x (2u + u^2) x 2 max|y|), and
  (b) the NumPy model of the machine -- bf16-rounded operands, fp32 accumulation -- to
      f32 rounding (rtol 1e-4, atol 1e-4 max|y|: f32 differences of a few ulps, plus the
      occasional bf16 rounding they flip in a later layer's operand; see the doc).
"""
from __future__ import annotations

import numpy as np
import pytest

import tessel
from tessel.backends.systolic import reference as ref

import systolic_models as sm


def _matmuls_with_tiles(program):
    """(MATMUL, the LOAD_W of its active tile) pairs, following the weight FIFO."""
    fifo, active, out = [], None, []
    for ins in program:
        if ins.name == "LOAD_W":
            fifo.append(ins)
        elif ins.name == "MATMUL":
            if ins.swap:
                active = fifo.pop(0)
            out.append((_Tile(ins.rows, active.k, active.n), active))
    return out


class _Tile:
    def __init__(self, rows, k, n):
        self.rows, self.k, self.n = rows, k, n

MODELS = sm.small_models(np.random.default_rng(0))


@pytest.fixture(scope="module")
def results():
    out = {}
    for name, (model, static, params, x, layers) in MODELS.items():
        fn = sm.traced(model, **static)
        out[name] = (tessel.jit(fn, backend="systolic")(params, x),
                     tessel.jit(fn, backend="interpreter")(params, x))
    return out


@pytest.mark.parametrize("name", list(MODELS))
def test_model_matches_the_interpreter_within_the_bf16_tolerance(name, results):
    got, want = results[name]
    layers = MODELS[name][4]
    tolerance = ref.model_tolerance(want, layers)
    assert got.shape == want.shape and got.dtype == np.float32
    error = np.max(np.abs(got - want))
    assert error <= tolerance, (error, tolerance)
    assert error > 0          # bf16 multiplies really happened (an f32 run would be ~1e-7)


@pytest.mark.parametrize("name", list(MODELS))
def test_model_matches_the_bf16_numpy_model_to_f32_rounding(name, results):
    model, static, params, x, _ = MODELS[name]
    got, want = results[name]
    machine_model = sm.reference(model, sm.BF16, **static)(params, x)
    scale = float(np.max(np.abs(machine_model)))
    np.testing.assert_allclose(got, machine_model, rtol=1e-4, atol=1e-4 * scale)
    # and the bf16 model is measurably further from the f32 interpreter than the machine is from it
    assert np.max(np.abs(got - machine_model)) < 0.1 * np.max(np.abs(want - machine_model))


def test_f32_multiply_mode_matches_the_interpreter_to_f32_rounding(monkeypatch):
    monkeypatch.setenv("TESSEL_SYSTOLIC_CONFIG", "dtype=f32")
    model, static, params, x, _ = MODELS["mlp"]
    fn = sm.traced(model, **static)
    got = tessel.jit(fn, backend="systolic")(params, x)
    want = tessel.jit(fn, backend="interpreter")(params, x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_compiled_program_is_inspectable():
    model, static, params, x, _ = MODELS["mlp"]
    compiled = tessel.jit(sm.traced(model, **static), backend="systolic").lower(params, x).compile()
    text = compiled.program_text()
    assert text.splitlines()[-1].startswith("HALT") and "MATMUL" in text and "ACTIVATE" in text
    report = compiled.systolic_report()
    program = compiled.executable.backend_runner.program
    assert report.macs == sum(i.rows * i.k * i.n for i, w in _matmuls_with_tiles(program.instructions))
    assert report.macs == sum(w.shape[0] * w.shape[1] for w, _ in params) * x.shape[0]   # M*K*N per layer
    assert 0 < report.mxu_utilization < 1 and report.total_cycles > 0
    with pytest.raises(ValueError, match="backend='systolic' only"):
        tessel.jit(sm.traced(model, **static), backend="interpreter").lower(params, x).compile().program_text()
