"""Random tessel.numpy programs, jitted for the CPU and the interpreter, against NumPy.

Each program (tnp_programs.py) runs eagerly in NumPy (the reference) and under
`tessel.jit` on both backends; results must have NumPy's shapes and dtypes and agree
within checks.INEXACT_RTOL relative to the program's largest magnitude, with NaN and inf
in the same places.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import checks
import tnp_programs
import tessel
import tessel.numpy as tnp


def check_tnp_program(program, backends_to_check=("interpreter", "cpu")):
    inputs = program.inputs()
    with np.errstate(all="ignore"):
        want = tnp_programs.run(np, program, inputs)
    scale = max([1.0] + [float(np.max(np.abs(v[np.isfinite(v)]), initial=0.0))
                         for v in checks.leaves(want) + inputs])
    for backend in backends_to_check:
        got = tessel.jit(lambda xs: tnp_programs.run(tnp, program, xs), backend=backend)(inputs)
        got = got if isinstance(got, tuple) else (got,)
        problem = checks.mismatch([np.asarray(g) for g in got], [np.asarray(w) for w in want],
                                  [True] * len(want), scale, f"tnp program on {backend}")
        assert problem is None, f"{problem}\n--- program ---\n{program.describe()}"


@pytest.mark.no_round_trip   # jit's modules: the round-trip fixture would re-print them all
@settings(max_examples=10, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(tnp_programs.tnp_programs())
def test_random_tnp_programs_match_numpy(program):
    check_tnp_program(program)


@pytest.mark.fuzz
@pytest.mark.no_round_trip
@settings(max_examples=500, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(tnp_programs.tnp_programs())
def test_fuzz_tnp_campaign(program):
    check_tnp_program(program)
