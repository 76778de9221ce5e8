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


def test_help_lists_version_and_the_planned_commands_as_coming():
    result = run(TESSEL, "--help")
    assert result.returncode == 0, result.stderr
    assert "version" in result.stdout
    epilog = result.stdout.split("coming")[1]
    for name in cli.PLANNED_COMMANDS:
        assert name in epilog


@pytest.mark.parametrize("name", sorted(cli.PLANNED_COMMANDS))
def test_planned_commands_are_not_registered(name):
    result = run(TESSEL, name)
    assert result.returncode != 0
    assert "invalid choice" in result.stderr


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


@pytest.mark.parametrize("name", ["dump", "compile", "run", "inspect"])
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
    (("compile", "{file}:predict", *ARGS, "-o", "{tmp}/x.tsl", "--backend", "systolic"), "not supported yet"),
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
