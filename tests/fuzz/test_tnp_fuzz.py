"""Random tessel.numpy programs, jitted for the interpreter, the CPU and the systolic
machine, against NumPy.

Each program (tnp_programs.py) runs eagerly in NumPy (the reference) and under
`tessel.jit` on each backend; results must have NumPy's shapes and dtypes and agree
within checks.INEXACT_RTOL relative to the program's largest magnitude, with NaN and inf
in the same places. The systolic backend takes the programs without matmul (backends_for)
and may refuse one it cannot run (f64 inputs, sin/cos: UnsupportedOp), which the
campaign counts.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import checks
import tnp_programs
from campaign import Campaign, campaign_settings
import tessel
import tessel.numpy as tnp

TNP_EXAMPLES = int(os.environ.get("TESSEL_FUZZ_TNP_EXAMPLES", "500"))


SYSTOLIC = "systolic"
FLOAT_NAMES = {"float16": "f16", "float32": "f32", "float64": "f64"}


def check_tnp_program(program, backends_to_check=("interpreter", "cpu")) -> dict:
    """Each backend agrees with NumPy; returns {backend: refusal reason} for backends
    that refused the program (only the systolic backend may: UnsupportedOp)."""
    from tessel.backends.systolic.codegen import UnsupportedOp
    inputs = program.inputs()
    with np.errstate(all="ignore"):
        values = tnp_programs.run_values(np, program, inputs)
    want = tuple(values[i] for i in program.outputs)
    scale = max([1.0] + [float(np.max(np.abs(v[np.isfinite(v)]), initial=0.0))
                         for v in checks.leaves(want) + inputs])
    least = tnp_programs.least_precise_on_path(program, values)
    loose = [checks.INEXACT_RTOL[FLOAT_NAMES[d.name]] if d.name in FLOAT_NAMES else True for d in least]
    refused = {}
    for backend in backends_to_check:
        try:
            got = tessel.jit(lambda xs: tnp_programs.run(tnp, program, xs), backend=backend)(inputs)
        except UnsupportedOp as e:
            if backend != SYSTOLIC:
                raise
            refused[backend] = str(e)
            continue
        got = got if isinstance(got, tuple) else (got,)
        problem = checks.mismatch([np.asarray(g) for g in got], [np.asarray(w) for w in want],
                                  loose, scale, f"tnp program on {backend}")
        assert problem is None, f"{problem}\n--- program ---\n{program.describe()}"
    return refused


def backends_for(program) -> tuple:
    """The systolic backend joins for programs without matmul: its bf16 matrix unit is
    held to the derived bound by the HLO fuzzer (systolic_programs.py), which these
    programs, feeding products into exp or square, would not respect."""
    uses_matmul = any(step.kind == "matmul" for step in program.steps)
    return ("interpreter", "cpu") + (() if uses_matmul else (SYSTOLIC,))


@pytest.mark.no_round_trip   # jit's modules: the round-trip fixture would re-print them all
@settings(max_examples=60, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(tnp_programs.tnp_programs())
def test_random_tnp_programs_match_numpy(program):
    check_tnp_program(program, backends_for(program))


def functions_of(program) -> set:
    return {step.name for step in program.steps}


@pytest.mark.fuzz
@pytest.mark.no_round_trip
def test_fuzz_tnp_campaign():
    campaign = Campaign("tnp", set(tnp_programs.FUNCTIONS), functions_of, lambda program: program.describe())
    systolic_compared = [0]

    def check(program) -> str | None:
        chosen = backends_for(program)
        refusals = check_tnp_program(program, chosen)
        systolic_compared[0] += SYSTOLIC in chosen and SYSTOLIC not in refusals
        return refusals.get(SYSTOLIC)

    @campaign_settings(TNP_EXAMPLES)
    @given(tnp_programs.tnp_programs())
    def run(program):
        campaign.run(program, check)
    run()
    campaign.finish(f"systolic compared on {systolic_compared[0]} programs")
