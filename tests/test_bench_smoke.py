"""Smoke test of `python -m bench`: every workload runs at --quick sizes under NumPy and
tessel's interpreter and agrees with NumPy. Nothing here asserts on a timing."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))          # `bench` is a top-level folder, not part of the package

from bench import run, workloads  # noqa: E402


def test_every_workload_runs_and_agrees_with_numpy(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert run.main(["--quick", "--repeat", "1", "--frameworks", "numpy,tessel",
                     "--tessel-backend", "interpreter", "--json", str(out)]) == 0
    results = json.loads(out.read_text())["workloads"]
    assert [r["name"] for r in results] == [w.name for w in workloads.WORKLOADS]
    for r in results:
        tessel = r["frameworks"]["tessel"]
        assert tessel["status"] == "ok" and tessel["agrees"], (r["name"], tessel)
        assert tessel["median_s"] > 0
    printed = capsys.readouterr().out
    assert "load average" in printed and "tessel (interpreter)" in printed


def test_a_workload_tessel_cannot_compile_is_reported_not_raised():
    def untraceable(x):
        raise NotImplementedError("no rule for this op")

    w = workloads.Workload("broken", "broken {n}", workloads.vector_inputs, {"n": 4}, {"n": 4},
                           numpy_fn=np.negative, jax_fn=None, tessel_fn=untraceable)
    options = run.parse_args(["--quick", "--repeat", "1", "--tessel-backend", "interpreter"])
    outcomes = run.run_workload(w, ["numpy", "tessel"], options)
    assert outcomes["numpy"].timed
    assert outcomes["tessel"].status == "unsupported"
    assert outcomes["tessel"].note.startswith("not supported yet (NotImplementedError: no rule")


@pytest.mark.parametrize("got, agrees", [(np.float32([1, 2, 3.00001]), True),
                                         (np.float32([1, 2, 3.1]), False),
                                         (np.float64([1, 2, 3]), False)])
def test_check_is_dtype_aware(got, agrees):
    outcome = run.Outcome()
    run.check(outcome, got, np.float32([1, 2, 3]))
    assert outcome.agrees is agrees
    assert (outcome.note.startswith("✗") or "gives" in outcome.note) is not agrees


def test_cpu_tessel_runs_with_the_pool_and_on_one_thread_side_by_side(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TESSEL_NUM_THREADS", "2")
    out = tmp_path / "bench.json"
    assert run.main(["--quick", "--repeat", "1", "--only", "chain,softmax", "--frameworks",
                     "numpy,tessel,tessel1", "--json", str(out)]) == 0
    for r in json.loads(out.read_text())["workloads"]:
        for name in ("tessel", "tessel1"):
            outcome = r["frameworks"][name]
            assert outcome["status"] == "ok" and outcome["agrees"], (r["name"], name, outcome)
    printed = capsys.readouterr().out
    assert "tessel 1T" in printed and "2T/1T speed-up" in printed and "tessel (cpu, 2T)" in printed


def test_one_thread_column_is_dropped_when_the_pool_has_one_thread(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TESSEL_NUM_THREADS", "1")
    assert run.main(["--quick", "--repeat", "1", "--only", "dispatch", "--frameworks",
                     "numpy,tessel,tessel1"]) == 0
    printed = capsys.readouterr().out
    assert "tessel 1T" not in printed and "tessel (cpu, 1T)" in printed


def test_cold_compiles_bypass_the_persistent_compile_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TESSEL_CACHE_DIR", str(tmp_path))
    options = run.parse_args(["--quick", "--repeat", "2"])
    x = np.ones(4, np.float32)
    outcome = run.cold_compiles(run.FRAMEWORKS["tessel"], lambda x: x * 3.0 - 1.0, (x,), x * 3.0 - 1.0, options)
    assert outcome.status == "ok" and outcome.agrees and len(outcome.samples) == 2
    assert not any(tmp_path.iterdir()), "a cold compile read or wrote the disk cache"
    import os
    assert os.environ["TESSEL_CACHE_DIR"] == str(tmp_path)      # restored afterwards
