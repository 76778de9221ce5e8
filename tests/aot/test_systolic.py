"""Systolic artifacts: the MLP, CNN and GPT-2 block of the systolic backend's acceptance
tests saved as .tsl, loaded (in a fresh process too, without the frontend, the passes
or the systolic compiler) and run on the functional simulator: every output equals the
JIT's systolic output bit for bit (same program, same simulator)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import systolic_models as sm
import tessel
from tessel import aot
from tessel.backends.systolic import reference as ref
from tessel.backends.systolic.executable import using_config
from tessel.compiler.parser import parse_module
from tessel.runtime import pytree
from tessel.runtime.systolic.config import SystolicConfig

MODELS = sm.small_models(np.random.default_rng(0))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """name -> (artifact path, compiled, (params, x), JIT systolic output)."""
    root = tmp_path_factory.mktemp("systolic")
    out = {}
    for name, (model, static, params, x, _) in MODELS.items():
        compiled = tessel.jit(sm.traced(model, **static), backend="systolic").lower(params, x).compile()
        path = aot.save(compiled, str(root / f"{name}.tsl"))
        out[name] = (path, compiled, (params, x), compiled(params, x))
    return out


FRESH_PROCESS = r"""
import json, os, sys
import numpy as np
import tessel.aot
from tessel.runtime import pytree
root = sys.argv[1]
cycles = {}
for name in json.loads(sys.argv[2]):
    artifact = tessel.aot.load(os.path.join(root, name + ".tsl"))
    leaves = [np.load(os.path.join(root, f"{name}.in{k}.npy"), allow_pickle=False)
              for k in range(len(artifact.signature.in_specs))]
    *args, kwargs = pytree.unflatten(artifact.signature.in_tree, leaves)
    out, _ = pytree.flatten(artifact(*args, **kwargs))
    for k, value in enumerate(out):
        np.save(os.path.join(root, f"{name}.out{k}.npy"), value, allow_pickle=False)
    cycles[name] = artifact.report().total_cycles
forbidden = sorted(m for m in sys.modules if m.startswith(("tessel.frontend", "tessel.compiler.passes",
                                                          "tessel.compiler.pipeline", "tessel.backends.systolic")))
print(json.dumps({"forbidden": forbidden, "cycles": cycles}))
"""


def test_fresh_process_runs_the_models_without_the_compiler(saved, tmp_path):
    for name, (path, _, args, _) in saved.items():
        os.link(path, tmp_path / f"{name}.tsl")
        for k, leaf in enumerate(pytree.flatten(tuple(args) + ({},))[0]):
            np.save(tmp_path / f"{name}.in{k}.npy", leaf, allow_pickle=False)
    run = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(tmp_path), json.dumps(list(saved))],
                         capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["forbidden"] == []            # no frontend, no passes, no systolic compiler
    for name, (_, compiled, _, expected) in saved.items():
        got = np.load(tmp_path / f"{name}.out0.npy", allow_pickle=False)
        assert got.dtype == expected.dtype == np.float32 and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected, err_msg=name)
        assert result["cycles"][name] == compiled.systolic_report().total_cycles


@pytest.mark.parametrize("name", list(MODELS))
def test_round_trip_in_process(saved, name):
    path, compiled, (params, x), expected = saved[name]
    artifact = aot.load(path)
    assert isinstance(artifact, aot.SystolicArtifact)
    np.testing.assert_array_equal(artifact(params, x), expected)
    want = tessel.jit(sm.traced(MODELS[name][0], **MODELS[name][1]), backend="interpreter")(params, x)
    assert 0 < np.max(np.abs(artifact(params, x) - want)) <= ref.model_tolerance(want, MODELS[name][4])
    in_params, in_x, kwargs = artifact.in_avals
    assert pytree.flatten(in_params)[1] == pytree.flatten(params)[1] and kwargs == {}
    assert in_x.dims == x.shape and artifact.out_avals.dims == expected.shape
    assert artifact.program_text() == compiled.program_text()
    assert artifact.origins == compiled.executable.backend_runner.program.origins
    report, jit_report = artifact.report(), compiled.systolic_report()
    assert (report.total_cycles, report.macs) == (jit_report.total_cycles, jit_report.macs)
    assert artifact.config == SystolicConfig()
    assert "dot_general" in artifact.as_text() or "convolution" in artifact.as_text()


def test_manifest_holds_config_layout_and_hashed_npy_constants(saved):
    path, compiled, _, _ = saved["mlp"]
    program = compiled.executable.backend_runner.program
    with zipfile.ZipFile(path) as z:
        manifest = json.loads(z.read("manifest.json"))
        section = manifest["program"]
        assert manifest["backend"] == "systolic" and manifest["format_version"] == 2
        assert SystolicConfig(**section["config"]) == program.config
        assert z.read(manifest["files"]["program"]) == program.binary()
        assert len(program.binary()) == 16 * len(program.instructions) == 16 * section["instructions"]
        assert z.read(manifest["files"]["assembly"]).decode() == program.text()
        assert [r["address"] for r in section["inputs"]] == program.image.arguments
        assert [r["fmt"] for r in section["inputs"]] == program.image.argument_formats
        assert [r["name"] for r in section["inputs"]][-1] == "x"
        assert section["host_bytes"] == program.host_bytes
        assert len(section["constants"]) == len(program.image.constants) > 0
        for entry, (address, array) in zip(section["constants"], program.image.constants):
            stored = np.load(z.open(entry["file"]), allow_pickle=False)
            assert entry["address"] == address and stored.dtype == array.dtype
            np.testing.assert_array_equal(stored, array)
        assert set(manifest["members"]) == set(z.namelist()) - {"manifest.json"}


def test_export_for_another_machine_and_check_inputs(tmp_path):
    model, static, params, x, _ = MODELS["mlp"]
    fn = sm.traced(model, **static)
    shapes = pytree.unflatten(pytree.flatten(params)[1],
                              [tessel.ShapeDtype(a.shape, "float32") for a in pytree.flatten(params)[0]])
    path = aot.export(fn, shapes, tessel.ShapeDtype(x.shape, "float32"), path=str(tmp_path / "m16.tsl"),
                      backend="systolic", config=["rows=16", "cols=16", "dtype=f32"])
    artifact = aot.load(path)
    machine = SystolicConfig(rows=16, cols=16, dtype="f32")
    assert artifact.config == machine
    with using_config(machine):
        expected = tessel.jit(fn, backend="systolic")(params, x)
    np.testing.assert_array_equal(artifact(params, x), expected)
    with pytest.raises(TypeError, match=r"x: expected f32\[24, 64\], given f32\[24, 63\]"):
        artifact(params, x[:, :63])
    with pytest.raises(aot.ArtifactBackendError, match="not a CPU: target="):
        aot.export(fn, params, x, path=str(tmp_path / "t.tsl"), backend="systolic", cpu="x86-64")
    with pytest.raises(aot.ArtifactBackendError, match="config= describes the systolic machine"):
        aot.export(fn, params, x, path=str(tmp_path / "c.tsl"), config=["rows=16"])


def test_timing_fields_may_be_overridden_layout_fields_may_not(saved):
    path, _, (params, x), expected = saved["gpt_block"]
    artifact = aot.load(path)
    base = artifact.report()
    faster_clock = artifact.report(["clock_hz=1.88GHz"])
    assert faster_clock.total_cycles == base.total_cycles
    assert faster_clock.seconds == pytest.approx(base.seconds / 2)
    slow_memory = artifact.report({"host_bytes_per_cycle": 8, "host_latency_cycles": 2000})
    assert slow_memory.total_cycles > base.total_cycles
    for field in ("rows=64", "ub_bytes=1MiB", "dtype=f32", "weight_fifo_depth=2"):
        with pytest.raises(aot.ArtifactConfigError, match=f"cannot override {field.split('=')[0]}.*only timing"):
            artifact.report([field])
    with pytest.raises(aot.ArtifactConfigError, match="clock_hz"):
        artifact.report(["clock_hz=-1"])
    with pytest.raises(aot.ArtifactConfigError, match="no field 'clock'"):
        artifact.report(["clock=1GHz"])
    np.testing.assert_array_equal(artifact(params, x), expected)        # unchanged by any of it


def test_placed_programs_are_refused(tmp_path):
    def placed(w, x):
        with tessel.device("systolic"):
            h = x @ w
        return np.tanh(h)

    w, x = np.ones((8, 4), np.float32), np.ones((2, 8), np.float32)
    compiled = tessel.jit(placed).lower(w, x).compile()
    assert compiled.executable.placed
    with pytest.raises(aot.ArtifactBackendError, match=r"placed on a device \(cpu, systolic\): it cannot be saved"):
        aot.save(compiled, str(tmp_path / "placed.tsl"))
    with pytest.raises(aot.ArtifactBackendError, match="placed on a device"):
        aot.export(placed, w, x, path=str(tmp_path / "placed.tsl"))
    assert not (tmp_path / "placed.tsl").exists()
    module = parse_module("""
HloModule placed
ENTRY main {
  x = f32[4] parameter(0)
  s = () send(x), channel_id=1, device="systolic"
  r = f32[4] recv(s), channel_id=1, device="cpu"
  ROOT t = (f32[4]) tuple(r)
}""")
    from tessel.aot import systolic
    with pytest.raises(aot.ArtifactBackendError, match="placed on a device.*cannot be saved as artifacts"):
        systolic.refuse_placed(module, "placed")
