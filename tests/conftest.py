"""Fixtures shared by the whole test suite.

The round-trip check (ARCHITECTURE.md §3): every Module a test creates is, at the end of
the test, printed in full and parsed back, and must be structurally equal to itself.
Modules that have no entry or do not verify (deliberately broken, half built) are skipped.
Mark a test `@pytest.mark.no_round_trip` to opt out (say why next to the marker).
"""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from tessel.compiler import ir, verifier
from tessel.compiler.parser import parse_module
from tessel.compiler.printer import print_module
from tessel.compiler.structural import first_difference, module_structure


# Tests compile afresh: no entry of a user's persistent compile cache (and no other
# test's) is reused. tests/runtime/test_compile_cache.py turns the cache on where it
# tests it.
os.environ["TESSEL_CACHE_DIR"] = "off"

# Case tables shared across test folders (op_cases.py) are imported by name.
sys.path.insert(0, os.path.dirname(__file__))


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


# ----------------------------------------------------------------------------- pipeline semantics
#
# Every module the suite runs on the interpreter is, at the end of the test, optimized by
# the whole pipeline and run again on the same arguments: the results must agree (bit for
# bit on integers, within float reassociation tolerance on floats; NaN/inf in the same
# places). Real inputs, recorded as the test ran them, keep data-dependent loops finite.

import tessel.backends.interpreter as _interpreter
from tessel.backends.interpreter import evaluator as _evaluator

_PIPELINE_TOLERANCE = {"f64": 1e-9, "f32": 2e-4, "f16": 2e-2, "bf16": 2e-2}
_MAX_RECORDS_PER_TEST = 12
_MAX_RECORDED_SECONDS = 0.5


def _copy(args):
    return [tuple(_copy(a)) if isinstance(a, tuple) else np.array(a, copy=True) for a in args]


def _leaves(value):
    if isinstance(value, tuple):
        return [leaf for v in value for leaf in _leaves(v)]
    return [np.asarray(value)]


def pipeline_mismatch(module: ir.Module, args, expected) -> str | None:
    from tessel.compiler import pipeline
    optimized, _ = pipeline.optimize(module, "interpreter")
    got = _interpreter.evaluate(optimized, args)
    want_leaves, got_leaves = _leaves(expected), _leaves(got)
    if len(want_leaves) != len(got_leaves):
        return f"{len(got_leaves)} results after optimization, {len(want_leaves)} before"
    roots = module.entry.root.shape
    shapes = roots.leaves()
    for i, (w, g, shape) in enumerate(zip(want_leaves, got_leaves, shapes)):
        if w.shape != g.shape or w.dtype != g.dtype:
            return f"result {i}: {g.dtype}{list(g.shape)} after, {w.dtype}{list(w.shape)} before"
        rtol = _PIPELINE_TOLERANCE.get(shape.dtype.name)
        if rtol is None:
            if not np.array_equal(w, g):
                return f"result {i} differs (exact dtype {shape.dtype.name})"
        elif not np.allclose(g, w, rtol=rtol, atol=rtol * 1e-3, equal_nan=True) or \
                not np.array_equal(np.isinf(g), np.isinf(w)):
            return f"result {i} differs beyond rtol {rtol}: max |diff| {np.nanmax(np.abs(g - w))}"
    return None


@pytest.fixture(autouse=True)
def check_pipeline_semantics(request):
    records = []

    def record(module, args, ctx, result, seconds):
        if (ctx is None and module.optimized_for is None and seconds < _MAX_RECORDED_SECONDS
                and len(records) < _MAX_RECORDS_PER_TEST):
            records.append((module, _copy(args), _copy([result])[0]))   # tests may mutate results

    _evaluator.evaluation_hooks.append(record)
    try:
        yield
    finally:
        _evaluator.evaluation_hooks.remove(record)
    if request.node.get_closest_marker("no_round_trip") or getattr(request.node, "test_body_failed", True):
        return
    for module, args, result in records:
        if not _verifies(module):
            continue
        problem = pipeline_mismatch(module, args, result)
        if problem is not None:
            pytest.fail(f"module {module.name!r} computes something else after the optimization "
                        f"pipeline: {problem}\n--- module ---\n{_clip(print_module(module))}",
                        pytrace=False)
