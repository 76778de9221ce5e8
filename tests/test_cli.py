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
