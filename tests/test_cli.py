"""The `tessel` command line, run the way a user runs it: as a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tessel import cli

TESSEL = Path(sys.executable).parent / "tessel"


def run(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


def test_console_script_is_installed():
    assert TESSEL.exists(), f"no console script next to the interpreter: {TESSEL}"


def test_help_lists_every_subcommand():
    result = run(TESSEL, "--help")
    assert result.returncode == 0, result.stderr
    for name in ("version", "dump", "compile", "run", "inspect", "sim"):
        assert name in result.stdout
    assert "coming" not in result.stdout


def test_version_prints_the_installed_version():
    from importlib.metadata import version

    result = run(TESSEL, "version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"tessel {version('tessel')}"
    assert result.stderr == ""


def test_python_dash_m_tessel():
    result = run(sys.executable, "-m", "tessel", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: tessel")


def test_unknown_subcommand_is_an_error_on_stderr():
    result = run(TESSEL, "frobnicate")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "invalid choice: 'frobnicate'" in result.stderr


def test_no_subcommand_is_an_error_on_stderr():
    result = run(TESSEL)
    assert result.returncode == 2
    assert "usage: tessel" in result.stderr


def test_main_returns_exit_codes_instead_of_exiting(capsys):
    assert cli.main(["version"]) == 0
    assert capsys.readouterr().out.startswith("tessel ")
    assert cli.main(["--help"]) == 0
    assert cli.main(["frobnicate"]) == 2
    assert "invalid choice" in capsys.readouterr().err


# ----------------------------------------------------------------------------- dump, compile, run, inspect

USER_CODE = '''
import numpy as np

def predict(x, w, b):
    return {"probs": np.tanh(x @ w + b), "total": (x @ w).sum()}
'''


@pytest.fixture(scope="module")
def user_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "model.py"
    path.write_text(USER_CODE)
    return path


ARGS = ("--arg", "f32[4,3]", "--arg", "f32[3,2]", "--arg", "f32[2]")


@pytest.mark.parametrize("name", ["dump", "compile", "run", "inspect", "sim"])
def test_every_subcommand_has_help(name, capsys):
    assert cli.main([name, "--help"]) == 0
    assert f"usage: tessel {name}" in capsys.readouterr().out


def test_dump_prints_traced_and_optimized_hlo_and_writes_dot_and_svg(user_file, tmp_path):
    result = run(TESSEL, "dump", f"{user_file}:predict", *ARGS, "--stage", "all")
    assert result.returncode == 0, result.stderr
    traced, optimized = result.stdout.split("# optimized")
    assert "ENTRY" in traced and "dot_general" in traced and "tanh" in traced
    assert "fusion" in optimized
    result = run(TESSEL, "dump", f"{user_file}:predict", *ARGS, "--format", "svg", "-o", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "predict.traced.svg").read_text().lstrip().startswith(("<?xml", "<svg"))
    result = run(TESSEL, "dump", f"{user_file}:predict", *ARGS, "--format", "dot", "--stage", "optimized")
    assert result.returncode == 0 and "digraph" in result.stdout


def test_compile_inspect_run_round_trip(user_file, tmp_path):
    import numpy as np
    model = tmp_path / "model.tsl"
    result = run(TESSEL, "compile", f"{user_file}:predict", *ARGS, "-o", model)
    assert result.returncode == 0, result.stderr
    assert model.exists() and f"wrote {model}" in result.stdout

    result = run(TESSEL, "inspect", model)
    assert result.returncode == 0, result.stderr
    for text in ("function   predict", "backend    cpu", "  x ", "f32[4, 3]", "code/predict.o",
                 "optimized HLO", "ENTRY"):
        assert text in result.stdout, text

    rng = np.random.default_rng(0)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((4, 3), (3, 2), (2,)))
    inputs = []
    for name, value in zip("xwb", (x, w, b)):
        np.save(tmp_path / f"{name}.npy", value)
        inputs += ["--input", tmp_path / f"{name}.npy"]
    result = run(TESSEL, "run", model, *inputs, "--output", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "output['probs']: float32[4, 2]" in result.stdout and "min" in result.stdout
    np.testing.assert_allclose(np.load(tmp_path / "out" / "output0.npy"), np.tanh(x @ w + b), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.load(tmp_path / "out" / "output1.npy"), (x @ w).sum(), rtol=1e-5)


def test_compile_for_another_target_and_inspect_it(user_file, tmp_path):
    model = tmp_path / "arm.tsl"
    result = run(TESSEL, "compile", f"{user_file}:predict", *ARGS, "-o", model,
                 "--target", "aarch64-unknown-linux-gnu", "--cpu", "generic")
    assert result.returncode == 0, result.stderr
    result = run(TESSEL, "inspect", model, "--no-hlo")
    assert result.returncode == 0 and "aarch64-unknown-linux-gnu, CPU generic" in result.stdout
    assert "optimized HLO" not in result.stdout


@pytest.mark.parametrize("argv, message", [
    (("dump", "{file}:predict", "--arg", "f32(4,3)"), "expected DTYPE[DIMS]"),
    (("dump", "{file}:nothing", "--arg", "f32[4,3]"), "has no function 'nothing'"),
    (("dump", "missing.py:predict"), "missing.py: no such file"),
    (("compile", "{file}:predict", "--arg", "f32[4,3]", "-o", "{tmp}/x.tsl"), "compiling"),
    (("compile", "{file}:predict", *ARGS, "-o", "{tmp}/x.tsl", "--backend", "systolic", "--cpu", "x86-64"),
     "not a CPU: target=, cpu= and features= do not apply"),
    (("compile", "{file}:predict", *ARGS, "-o", "{tmp}/x.tsl", "--backend", "systolic", "--config", "rows=0"),
     "--config: SystolicConfig.rows = 0 is not allowed"),
    (("compile", "{file}:predict", *ARGS, "-o", "{tmp}/x.tsl", "--backend", "gpu"), "given backend 'gpu'"),
    (("run", "{tmp}/not-an-artifact.tsl"), "ArtifactFormatError"),
    (("inspect", "{tmp}/not-an-artifact.tsl"), "not a tessel artifact"),
])
def test_errors_go_to_stderr_with_a_nonzero_exit(user_file, tmp_path, capsys, argv, message):
    """In-process (the subprocess path is the same `main`, tested above)."""
    (tmp_path / "not-an-artifact.tsl").write_text("hello")
    assert cli.main([a.format(file=user_file, tmp=tmp_path) for a in argv]) == 1
    captured = capsys.readouterr()
    assert message in captured.err and captured.err.startswith(f"tessel {argv[0]}: error: ")


def test_run_checks_the_number_and_shapes_of_inputs(user_file, tmp_path, capsys):
    import numpy as np
    model = str(tmp_path / "m.tsl")
    assert cli.main(["compile", f"{user_file}:predict", *ARGS, "-o", model]) == 0
    np.save(tmp_path / "x.npy", np.ones((4, 4), np.float32))
    capsys.readouterr()
    assert cli.main(["run", model, "--input", str(tmp_path / "x.npy")]) == 1
    assert "takes 3 inputs (x f32[4, 3]" in capsys.readouterr().err
    assert cli.main(["run", model, *["--input", str(tmp_path / "x.npy")] * 3]) == 1
    assert "expected f32[4, 3], given f32[4, 4]" in capsys.readouterr().err


# ----------------------------------------------------------------------------- sim

GEMM = """\
# y = x @ w on an 8 x 8 array; K = 12 runs as two K tiles (8 + 4 rows) that accumulate
#! config rows=8 cols=8 ub_bytes=4096 acc_bytes=1024 host_bytes=4096
#! input  x f32[16,12] at 0
#! input  w f32[12,8]  at 1024
#! output y f32[16,8]  at 2048
DMA_LOAD host=0 ub=0 rows=16 cols=8 stride=48 fmt=f32
DMA_LOAD host=32 ub=16 rows=16 cols=4 stride=48 fmt=f32 push=matrix
LOAD_W src=host addr=1024 k=8 n=8 stride=32 fmt=f32
LOAD_W src=host addr=1280 k=4 n=8 stride=32 fmt=f32
MATMUL ub=0 acc=0 rows=16 mode=overwrite swap=1 pop=dma
MATMUL ub=16 acc=0 rows=16 mode=accumulate swap=1 push=vector
ACTIVATE acc=0 ub=32 rows=16 fn=identity pop=matrix push=dma
DMA_STORE host=2048 ub=32 rows=16 cols=8 stride=32 fmt=f32 pop=vector
HALT
"""


@pytest.fixture
def gemm(tmp_path):
    import numpy as np
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, 12)).astype(np.float32)
    w = rng.standard_normal((12, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "w.npy", w)
    (tmp_path / "gemm.s").write_text(GEMM)
    return tmp_path, x, w


def bf16(a):
    """Round-to-nearest-even to bf16, written out here as the test's own reference."""
    import numpy as np
    bits = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return bits.astype(np.uint32).view(np.float32)


def test_sim_runs_a_gemm_and_writes_outputs_trace_and_plot(gemm):
    import json

    import numpy as np

    from tessel.runtime.systolic import asm, config, timing
    tmp, x, w = gemm
    result = run(TESSEL, "sim", tmp / "gemm.s", "--input", tmp / "x.npy", "--input", tmp / "w.npy",
                 "--output", tmp / "out", "--trace", tmp / "trace.json", "--plot", tmp / "t.png")
    assert result.returncode == 0, result.stderr
    y = np.load(tmp / "out" / "y.npy")
    expected = bf16(x).astype(np.float64) @ bf16(w).astype(np.float64)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    assert not np.allclose(y, x @ w, rtol=1e-5, atol=1e-5), "operands were not rounded to bf16"

    cfg = config.SystolicConfig(rows=8, cols=8, ub_bytes=4096, acc_bytes=1024, host_bytes=4096)
    cycles = timing.simulate_timing(asm.assemble(GEMM), cfg).total_cycles
    assert f"total: {cycles} cycles" in result.stdout and "8x8 array" in result.stdout
    assert "y: float32[16, 8]" in result.stdout
    trace = json.loads((tmp / "trace.json").read_text())
    assert trace["otherData"]["total_cycles"] == cycles
    assert sorted(e["name"] for e in trace["traceEvents"] if e.get("cat") == "matrix") == ["MATMUL"] * 2
    assert (tmp / "t.png").read_bytes().startswith(b"\x89PNG")


def test_sim_config_overrides_apply_after_the_programs_own(gemm, capsys):
    import numpy as np
    tmp, x, w = gemm
    argv = ["sim", str(tmp / "gemm.s"), "--input", str(tmp / "x.npy"), "--input", str(tmp / "w.npy"),
            "--output", str(tmp / "f32"), "--config", "dtype=f32", "clock_hz=1GHz"]
    assert cli.main(argv) == 0
    assert "at 1 GHz" in capsys.readouterr().out
    np.testing.assert_allclose(np.load(tmp / "f32" / "y.npy"), x @ w, rtol=1e-5, atol=1e-5)


def test_sim_bad_program_exits_nonzero_with_line_and_column(tmp_path):
    bad = GEMM.replace("MATMUL ub=16", "MATMUL ubb=16")
    (tmp_path / "bad.s").write_text(bad)
    result = run(TESSEL, "sim", tmp_path / "bad.s")
    assert result.returncode == 1 and result.stdout == ""
    assert f"{tmp_path / 'bad.s'}:11:8: MATMUL has no field 'ubb'" in result.stderr


@pytest.mark.parametrize("change, argv, message", [
    ((), ("--config", "rows=0"), "--config: SystolicConfig.rows = 0 is not allowed"),
    ((), ("--config", "colour=red"), "--config: SystolicConfig has no field 'colour'"),
    ((), ("--config", "rows"), "expected key=value"),
    (("rows=8 cols=8", "rows=8 cols=eight"), (), "`#! config`: SystolicConfig.cols = 'eight'"),
    (("#! input  w", "#! inputs w"), (), "4:1: unknown directive 'inputs'"),
    (("w f32[12,8]", "w f32[12,8"), (), "4:1: expected NAME FMT[DIMS] at ADDR"),
    (("stride=32 fmt=f32 pop", "stride=16 fmt=f32 pop"), (), "stored rows would overlap"),
    (("host=2048", "host=4000"), (), "writes host bytes [4000, 4512), beyond the 4096 bytes"),
    (("y f32[16,8]  at 2048", "y f32[16,8]  at 4000"), (), "y f32[16, 8] at 4000: bytes [4000, 4512) lie outside"),
    (("x f32[16,12] at 0", "x f32[16,12] at 2"), (), "3:1: x: address 2 is not a multiple of 4"),
    (("push=vector\n", "\n"), (), "invalid systolic program"),
    ((), ("--input", "{tmp}/x.npy"), "takes 2 inputs (x f32[16, 12] at 0, w f32[12, 8] at 1024); given 1"),
    ((), ("--input", "{tmp}/w.npy", "--input", "{tmp}/x.npy"), "input x: expected shape [16, 12], given [12, 8]"),
    ((), ("--input", "{tmp}/missing.npy"), "cannot read it as .npy"),
])
def test_sim_errors_go_to_stderr(gemm, capsys, change, argv, message):
    tmp, _, _ = gemm
    if change:
        assert change[0] in GEMM
        (tmp / "gemm.s").write_text(GEMM.replace(change[0], change[1]))
    inputs = () if "--input" in argv else ("--input", "{tmp}/x.npy", "--input", "{tmp}/w.npy")
    assert cli.main(["sim", str(tmp / "gemm.s"), *[a.format(tmp=tmp) for a in (*inputs, *argv)]]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("tessel sim: error: ") and message in captured.err, captured.err
