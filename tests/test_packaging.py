"""Packaging: the wheel ships the whole package and only the package.

The repository root is the `tessel` package (ARCHITECTURE.md §2) and pyproject lists
its subpackages by hand, so a new subpackage left out of that list would work in an
editable install and vanish from the wheel. These tests build a real wheel and compare
it, and the list, with the directories on disk.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10; pytest itself depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

# Top-level directories that are part of the repository but not of the package.
NOT_SHIPPED = {"tests", "samples", "bench"}
# Top-level build and environment debris that is never looked at.
DEBRIS = {"build", "dist", "venv"}


def _debris(rel: Path) -> bool:
    """Hidden, cache, build and virtual-environment directories: never source."""
    name = rel.name
    return (
        name.startswith(".")
        or name == "__pycache__"
        or name.endswith(".egg-info")
        or (len(rel.parts) == 1 and name in DEBRIS)
        or (ROOT / rel / "pyvenv.cfg").exists()
    )


def _skipped(rel: Path) -> bool:
    return _debris(rel) or (len(rel.parts) == 1 and rel.name in NOT_SHIPPED)


def source_dirs() -> list[Path]:
    """Directories of the package tree (relative to the root, root first)."""
    found = []
    for here, dirs, _ in os.walk(ROOT):
        rel = Path(here).relative_to(ROOT)
        dirs[:] = sorted(d for d in dirs if not _skipped(rel / d))
        found.append(rel)
    return found


def package_dirs() -> list[Path]:
    return [d for d in source_dirs() if (ROOT / d / "__init__.py").exists()]


def dotted(rel: Path) -> str:
    return ".".join(("tessel", *rel.parts))


def in_wheel(rel: Path, filename: str) -> str:
    return "/".join(("tessel", *rel.parts, filename))


def test_every_directory_of_python_modules_is_a_package():
    missing = [
        str(d) or "."
        for d in source_dirs()
        if any((ROOT / d).glob("*.py")) and not (ROOT / d / "__init__.py").exists()
    ]
    assert not missing, f"directories with modules but no __init__.py (not shipped): {missing}"


def test_pyproject_lists_exactly_the_packages_on_disk():
    on_disk = {dotted(d) for d in package_dirs()}
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    assert not on_disk - listed, (
        f"add to [tool.setuptools] packages in pyproject.toml: {sorted(on_disk - listed)}"
    )
    assert not listed - on_disk, f"listed but not on disk: {sorted(listed - on_disk)}"


def test_console_script_is_declared():
    assert PYPROJECT["project"]["scripts"]["tessel"] == "tessel.cli:main"


# --- the built wheel ---------------------------------------------------------------


def _build_isolation_args() -> list[str]:
    """Build offline with the running setuptools when it is new enough, else isolated."""
    try:
        import setuptools
    except ImportError:
        return []
    major = int(setuptools.__version__.split(".")[0])
    return ["--no-build-isolation"] if major >= 77 else []


def _copy_source(dest: Path) -> Path:
    """A clean copy of the checkout (tests/ and samples/ included, as in a clone), so
    the build neither writes build/ and *.egg-info into it nor races another run."""

    def ignore(here: str, names: list[str]) -> set[str]:
        rel = Path(here).relative_to(ROOT)
        return {n for n in names if n.endswith(".pyc") or (Path(here, n).is_dir() and _debris(rel / n))}

    return Path(shutil.copytree(ROOT, dest / "src", ignore=ignore))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    tmp = tmp_path_factory.mktemp("wheel")
    src = _copy_source(tmp)
    cmd = [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-w", str(tmp / "out")]
    cmd += _build_isolation_args()
    result = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"
    (built,) = (tmp / "out").glob("tessel-*.whl")
    with zipfile.ZipFile(built) as zf:
        yield zf


def test_wheel_contains_every_subpackage(wheel):
    names = set(wheel.namelist())
    missing = [in_wheel(d, "__init__.py") for d in package_dirs()]
    missing = [name for name in missing if name not in names]
    assert not missing, f"missing from the wheel: {missing}"


def test_wheel_contains_every_module(wheel):
    names = set(wheel.namelist())
    modules = [
        in_wheel(d, py.name)
        for d in package_dirs()
        for py in sorted((ROOT / d).glob("*.py"))
    ]
    assert "tessel/cli.py" in modules
    assert not [m for m in modules if m not in names]


def test_wheel_contains_the_hlo_grammar(wheel):
    assert (ROOT / "compiler" / "hlo.lark").exists(), "the text-format grammar is missing"
    assert "tessel/compiler/hlo.lark" in wheel.namelist()


def test_wheel_contains_the_declared_package_data(wheel):
    names = set(wheel.namelist())
    for package, patterns in PYPROJECT["tool"]["setuptools"]["package-data"].items():
        rel = Path(*package.split(".")[1:])
        for pattern in patterns:
            for path in sorted((ROOT / rel).glob(pattern)):
                assert in_wheel(rel, path.name) in names


def test_wheel_ships_the_package_only(wheel):
    tops = {name.split("/")[0] for name in wheel.namelist()}
    assert tops == {"tessel", f"tessel-{PYPROJECT['project']['version']}.dist-info"}
    for name in sorted(NOT_SHIPPED) + [".ci", "docs"]:
        assert not [n for n in wheel.namelist() if n.startswith(f"tessel/{name}/")], name


def test_wheel_declares_the_console_script(wheel):
    (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    text = wheel.read(entry_points).decode()
    assert "[console_scripts]" in text
    assert "tessel = tessel.cli:main" in text
