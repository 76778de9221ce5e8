"""Fixtures shared by the whole test suite.

The round-trip check (ARCHITECTURE.md §3): every Module a test creates is, at the end of
the test, printed in full and parsed back, and must be structurally equal to itself.
Modules that have no entry or do not verify (deliberately broken, half built) are skipped.
Mark a test `@pytest.mark.no_round_trip` to opt out (say why next to the marker).
"""
from __future__ import annotations

import numpy as np
import pytest

from tessel.compiler import ir, verifier
from tessel.compiler.parser import parse_module
from tessel.compiler.printer import print_module
from tessel.compiler.structural import first_difference, module_structure


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "no_round_trip: do not check that the modules this test builds "
                   "survive print -> parse (give the reason in a comment)")


def _verifies(module: ir.Module) -> bool:
    if module.entry is None:
        return False
    try:
        verifier.verify(module)
    except Exception:   # broken on purpose or half built: the verifier's tests cover these
        return False
    return True


def round_trip_failure(module: ir.Module) -> str | None:
    """Why `module` does not survive print(full_constants=True) -> parse, or None."""
    text = print_module(module, full_constants=True)
    try:
        parsed = parse_module(text)
    except ValueError as e:
        return f"its printed text does not parse:\n{e}\n--- text ---\n{_clip(text)}"
    difference = first_difference(module_structure(module), module_structure(parsed))
    if difference is not None:
        return f"it parses back different at {difference}\n--- text ---\n{_clip(text)}"
    return None


def _clip(text: str, limit: int = 4000) -> str:
    return text if len(text) <= limit else text[:limit] + "\n... (truncated)"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # Remember whether the test body failed: its modules are then not worth checking.
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.test_body_failed = report.failed


@pytest.fixture(autouse=True)
def check_round_trip(request):
    created: list[ir.Module] = []
    hook = created.append
    ir.module_created_hooks.append(hook)
    try:
        yield
    finally:
        ir.module_created_hooks.remove(hook)
    if request.node.get_closest_marker("no_round_trip") or getattr(request.node, "test_body_failed", True):
        return
    for module in created:
        if _verifies(module):
            failure = round_trip_failure(module)
            if failure is not None:
                pytest.fail(f"module {module.name!r} does not round-trip through HLO text: {failure}",
                            pytrace=False)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
