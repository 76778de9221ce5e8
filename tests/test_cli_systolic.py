"""`tessel compile/run/inspect/sim` on systolic artifacts, run as subprocesses."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tessel
from tessel import cli
from tessel.backends.systolic.executable import using_config
from tessel.runtime.systolic.config import SystolicConfig

TESSEL = Path(sys.executable).parent / "tessel"
MACHINE = ("rows=16", "cols=16")

USER_CODE = '''
import numpy as np

def layer(x, w, b):
    h = np.maximum(x @ w + b, 0)
    return {"h": h, "total": h.sum(axis=1)}
'''
ARGS = ("--arg", "f32[8,24]", "--arg", "f32[24,16]", "--arg", "f32[16]")


def run(*argv) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def layer(x, w, b):
    h = np.maximum(x @ w + b, 0)
    return {"h": h, "total": h.sum(axis=1)}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """(directory, model.tsl, inputs, the JIT's systolic outputs on the same machine)."""
    tmp = tmp_path_factory.mktemp("clisys")
    (tmp / "model.py").write_text(USER_CODE)
    result = run(TESSEL, "compile", f"{tmp / 'model.py'}:layer", *ARGS, "-o", tmp / "m.tsl",
                 "--backend", "systolic", "--config", *MACHINE)
    assert result.returncode == 0, result.stderr
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal(s).astype(np.float32) for s in ((8, 24), (24, 16), (16,))]
    for name, value in zip("xwb", inputs):
        np.save(tmp / f"{name}.npy", value)
    with using_config(SystolicConfig.from_overrides(MACHINE)):
        expected = tessel.jit(layer, backend="systolic")(*inputs)
    return tmp, tmp / "m.tsl", inputs, expected


def _inputs(tmp):
    return [a for name in "xwb" for a in ("--input", tmp / f"{name}.npy")]


def test_compile_writes_a_systolic_artifact_and_inspect_shows_it(compiled):
    tmp, model, _, _ = compiled
    result = run(TESSEL, "inspect", model, "--asm")
    assert result.returncode == 0, result.stderr
    for text in ("backend    systolic", "machine    16x16 array, bf16 multiplies", "rows=16",
                 "  input    x ", "  output   output['h']", "program/layer.bin", "program/layer.s",
                 "constants/c0.npy", "\nprogram\n", "MATMUL", "HALT", "optimized HLO", "ENTRY"):
        assert text in result.stdout, text
    assert "target" not in result.stdout


def test_run_gives_the_jits_systolic_outputs(compiled):
    tmp, model, _, expected = compiled
    result = run(TESSEL, "run", model, *_inputs(tmp), "--output", tmp / "run")
    assert result.returncode == 0, result.stderr
    assert "output['h']: float32[8, 16]" in result.stdout
    np.testing.assert_array_equal(np.load(tmp / "run" / "output0.npy"), expected["h"])
    np.testing.assert_array_equal(np.load(tmp / "run" / "output1.npy"), expected["total"])


def test_sim_an_artifact_prints_cycles_and_writes_outputs_trace_and_plot(compiled):
    tmp, model, _, expected = compiled
    result = run(TESSEL, "sim", model, *_inputs(tmp), "--output", tmp / "sim",
                 "--trace", tmp / "t.json", "--plot", tmp / "t.png")
    assert result.returncode == 0, result.stderr
    cycles = tessel.aot.load(model).report().total_cycles
    assert f"total: {cycles} cycles" in result.stdout and "16x16 array" in result.stdout
    np.testing.assert_array_equal(np.load(tmp / "sim" / "output0.npy"), expected["h"])
    trace = json.loads((tmp / "t.json").read_text())
    assert trace["otherData"]["total_cycles"] == cycles
    ops = {e["args"].get("op") for e in trace["traceEvents"] if e.get("name") == "MATMUL"}
    assert ops and all(op and "dot" in op for op in ops), ops     # labelled with the HLO it implements
    assert (tmp / "t.png").read_bytes().startswith(b"\x89PNG")


def test_sim_an_artifact_with_timing_overrides(compiled):
    tmp, model, _, _ = compiled
    base = tessel.aot.load(model).report()
    result = run(TESSEL, "sim", model, *_inputs(tmp), "--config", "clock_hz=470MHz", "host_bytes_per_cycle=16")
    assert result.returncode == 0, result.stderr
    slower = tessel.aot.load(model).report(["clock_hz=470MHz", "host_bytes_per_cycle=16"])
    assert slower.total_cycles > base.total_cycles
    assert f"total: {slower.total_cycles} cycles" in result.stdout and "470 MHz" in result.stdout


@pytest.mark.parametrize("argv, message", [
    (("--config", "rows=32"), "--config: {model}: cannot override rows: the program was compiled for rows=16"),
    (("--config", "clock_hz=fast"), "SystolicConfig.clock_hz = 'fast' is not allowed"),
    (("--config", "colour=red"), "SystolicConfig has no field 'colour'; the timing fields that may change"),
])
def test_sim_an_artifact_refuses_layout_overrides(compiled, argv, message):
    tmp, model, _, _ = compiled
    result = run(TESSEL, "sim", model, *_inputs(tmp), *argv)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("tessel sim: error: ") and message.format(model=model) in result.stderr


def test_sim_refuses_a_cpu_artifact_clearly(compiled, capsys):
    tmp, _, _, _ = compiled
    cpu_model = tmp / "cpu.tsl"
    assert cli.main(["compile", f"{tmp / 'model.py'}:layer", *ARGS, "-o", str(cpu_model)]) == 0
    capsys.readouterr()
    result = run(TESSEL, "sim", cpu_model, *_inputs(tmp))
    assert result.returncode == 1 and result.stdout == ""
    assert f"{cpu_model} is a cpu artifact: `tessel sim` simulates systolic artifacts" in result.stderr
    assert "tessel run" in result.stderr


def test_sim_and_run_check_artifact_inputs(compiled, capsys):
    tmp, model, _, _ = compiled
    assert cli.main(["sim", str(model), "--input", str(tmp / "x.npy")]) == 1
    assert "takes 3 inputs (x f32[8, 24]" in capsys.readouterr().err
    assert cli.main(["run", str(model), *[str(a) for a in _inputs(tmp)[:4]], "--input", str(tmp / "x.npy")]) == 1
    assert "expected f32[16], given f32[8, 24]" in capsys.readouterr().err


def test_sim_a_damaged_artifact_is_an_error_not_a_traceback(compiled, tmp_path):
    _, model, _, _ = compiled
    data = model.read_bytes()
    (tmp_path / "cut.tsl").write_bytes(data[:len(data) // 2])
    result = run(TESSEL, "sim", tmp_path / "cut.tsl")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "truncated or damaged" in result.stderr
