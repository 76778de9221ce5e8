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
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import checks
import tnp_programs
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
        want = tnp_programs.run(np, program, inputs)
    scale = max([1.0] + [float(np.max(np.abs(v[np.isfinite(v)]), initial=0.0))
                         for v in checks.leaves(want) + inputs])
    with np.errstate(all="ignore"):
        least = tnp_programs.least_precise_on_path(program, inputs)
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
    count, seen, refused, failures, systolic_compared = [0], Counter(), Counter(), [], [0]
    log = os.environ.get("TESSEL_FUZZ_LOG")

    @settings(max_examples=TNP_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(tnp_programs.tnp_programs())
    def run(program):
        count[0] += 1
        seen.update(functions_of(program))
        chosen = backends_for(program)
        try:
            refusals = check_tnp_program(program, chosen)
            systolic_compared[0] += SYSTOLIC in chosen and SYSTOLIC not in refusals
            refused.update(checks.refusal_kind(reason) for reason in refusals.values())
        except Exception as e:   # noqa: BLE001 -- every failure is a finding, recorded below
            failures.append(f"{type(e).__name__}: {str(e).splitlines()[0][:300]}")
            if log:
                with open(log, "a") as f:
                    f.write(f"FAILURE {failures[-1]}\n{program.describe()}\n\n")
    run()
    every = set(tnp_programs.FUNCTIONS)
    summary = (f"tnp campaign: {count[0]} programs generated, {len(failures)} mismatches, "
               f"{len(set(seen) & every)} of {len(every)} functions covered; systolic compared on "
               f"{systolic_compared[0]}, refused {sum(refused.values())} ({dict(refused)})")
    if log:
        with open(log, "a") as f:
            f.write(summary + "\n")
    print(f"\n{summary}")
    assert not failures, "\n".join(Counter(failures))
    assert set(seen) >= every, sorted(every - set(seen))
