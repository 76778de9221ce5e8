"""Differential fuzzing of random HLO programs (docs/reliability.md, "Fuzzing").

For every program hlo_programs.programs() draws: the verifier accepts it, it round-trips
through HLO text, the interpreter and CPU pipelines' optimized modules compute on the
interpreter what the unoptimized module computes, and the CPU backend computes it too
(tolerances in checks.py). Programs systolic_programs.systolic_programs() draws (what the
systolic machine runs) go through the systolic pipeline and backend the same way, within
the matrix unit's bf16 bound. The default suite runs fixed-seed samples; `-m fuzz` runs
the long randomized campaigns and prints what they generated, covered and found.
"""
from __future__ import annotations

import os
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings

import checks
import hlo_programs
from campaign import Campaign, campaign_settings
import systolic_programs

FUZZ_EXAMPLES = int(os.environ.get("TESSEL_FUZZ_EXAMPLES", "5000"))
SYSTOLIC_EXAMPLES = int(os.environ.get("TESSEL_FUZZ_SYSTOLIC_EXAMPLES", "1500"))
_QUICK = dict(derandomize=True, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# The generator stays inside what the systolic backend runs; the backend's own check
# (after the systolic pipeline) may still refuse a program: that must stay rare.
MAX_SYSTOLIC_REFUSED = 0.05


def run_all_properties(program, cpu=True):
    checks.check_verifies(program)
    checks.check_round_trip(program)
    reference = checks.check_pipelines(program)
    if cpu:
        checks.check_backend(program, "cpu", reference)


def run_systolic_properties(program) -> str | None:
    """Every property on the systolic path; the backend's refusal reason, or None."""
    checks.check_verifies(program)
    checks.check_round_trip(program)
    reference = checks.check_pipelines(program, ("interpreter", "systolic"))
    return checks.check_systolic(program, reference)


def program_ops(program) -> set:
    return {i.opcode for c in program.module.computations for i in c.instructions}


# The modules here are checked explicitly (round trip, pipeline semantics) and hypothesis
# builds hundreds per test: the suite-wide fixtures would only repeat that work.
@pytest.mark.no_round_trip
def test_random_programs_verify_round_trip_survive_the_pipelines_and_cover_the_ops():
    seen = Counter()

    @settings(max_examples=300, **_QUICK)
    @given(hlo_programs.programs())
    def check(program):
        run_all_properties(program, cpu=False)
        seen.update(program_ops(program))
    check()
    # Every structured op appears in this small sample; the elementwise ones are drawn
    # from the op table one at a time (the campaign asserts all of them), so here each
    # must at least be admitted by some dtype the generator uses.
    elementwise = set(hlo_programs.ELEMENTWISE_UNARY + hlo_programs.ELEMENTWISE_BINARY)
    missing = hlo_programs.generated_op_set() - set(seen) - elementwise
    assert not missing, f"never generated: {sorted(missing)}"
    assert all(any(hlo_programs.op_admits(op, d) for d in hlo_programs.ALL_DTYPES) for op in elementwise)
    print(f"{len(set(seen) & hlo_programs.generated_op_set())} ops generated")


@pytest.mark.no_round_trip
@settings(max_examples=100, **_QUICK)
@given(hlo_programs.programs(max_steps=6))
def test_cpu_backend_agrees_with_the_interpreter(program):
    run_all_properties(program)


@pytest.mark.no_round_trip
def test_systolic_backend_agrees_with_the_interpreter():
    outcomes = Counter()

    @settings(max_examples=100, **_QUICK)
    @given(systolic_programs.systolic_programs(max_steps=6))
    def check(program):
        refused = run_systolic_properties(program)
        outcomes["refused" if refused else "compared"] += 1
    check()
    total = sum(outcomes.values())
    print(f"systolic: {outcomes['compared']} of {total} programs compared, {outcomes['refused']} refused")
    assert outcomes["refused"] <= MAX_SYSTOLIC_REFUSED * total, outcomes


def test_the_systolic_generator_keeps_to_the_backends_op_set():
    from tessel.backends.systolic.codegen import supported_ops
    generated = set(systolic_programs.UNARY + systolic_programs.BINARY) | {
        "compare", "select", "clamp", "convert", "constant", "broadcast_in_dim", "reshape", "transpose",
        "slice", "concatenate", "reduce", "dot_general", "convolution", "pad", "reduce_window"}
    assert generated <= set(supported_ops())
    assert generated == systolic_programs.systolic_op_set() - {"parameter", "tuple"}


# ----------------------------------------------------------------------------- campaigns

@pytest.mark.fuzz
@pytest.mark.no_round_trip
def test_fuzz_campaign():
    campaign = Campaign("hlo (interpreter pipelines + cpu)", hlo_programs.generated_op_set(),
                        program_ops, lambda program: program.reproduction())
    never = "\n".join(f"  {op}: {why}" for op, why in sorted(hlo_programs.NOT_GENERATED.items()))
    print(f"\nops of compiler/ops.py never generated:\n{never}")

    @campaign_settings(FUZZ_EXAMPLES)
    @given(hlo_programs.programs())
    def run(program):
        campaign.run(program, run_all_properties)
    run()
    campaign.finish()


@pytest.mark.fuzz
@pytest.mark.no_round_trip
def test_fuzz_systolic_campaign():
    campaign = Campaign("systolic", systolic_programs.systolic_op_set(),
                        program_ops, lambda program: program.reproduction())

    @campaign_settings(SYSTOLIC_EXAMPLES)
    @given(systolic_programs.systolic_programs())
    def run(program):
        campaign.run(program, run_systolic_properties)
    run()
    campaign.finish()
    assert sum(campaign.refused.values()) <= MAX_SYSTOLIC_REFUSED * campaign.count, campaign.refused
