"""Shared checks for the fusion pass tests: run passes on HLO text, read the printed
result back by computation, and compare interpreter results before and after."""
import re

import numpy as np

from tessel.backends.interpreter import evaluate
from tessel.compiler import verifier
from tessel.compiler.parser import parse_module
from tessel.compiler.printer import print_module


def run(text: str, *passes):
    """(module before, printed module after, whether the last pass changed it)."""
    before, after = parse_module(text), parse_module(text)
    changed = [p.run(after) for p in passes]
    verifier.verify(after)
    return before, print_module(after, full_constants=True), changed[-1]


def blocks(printed: str) -> dict[str, str]:
    """Computation name -> its printed text; the entry is under 'ENTRY'."""
    found = {}
    for match in re.finditer(r"^(ENTRY )?(\S+) \{\n(.*?)^\}", printed, re.S | re.M):
        found["ENTRY" if match.group(1) else match.group(2)] = match.group(3)
    return found


def fusion_lines(printed: str) -> list[str]:
    return [line for line in blocks(printed)["ENTRY"].splitlines() if " fusion(" in line]


def body(printed: str, fusion_line: str) -> str:
    return blocks(printed)[re.search(r"calls=([\w.\-]+)", fusion_line).group(1)]


def root_of(text: str) -> str:
    return next(line for line in text.splitlines() if line.lstrip().startswith("ROOT "))


def random_args(module, rng):
    args = []
    for p in module.entry.parameters:
        dt = p.shape.dtype
        if dt.is_pred:
            args.append(rng.random(p.shape.dims) < 0.5)
        elif dt.is_integer:
            args.append(rng.integers(-5, 5, p.shape.dims).astype(dt.storage))
        else:
            args.append(rng.standard_normal(p.shape.dims).astype(dt.storage))
    return args


def assert_same_results(before, printed_after, rng, rtol=0.0):
    after = parse_module(printed_after)
    args = random_args(before, rng)
    want, got = evaluate(before, args), evaluate(after, args)
    for w, g in zip(want if isinstance(want, tuple) else (want,), got if isinstance(got, tuple) else (got,)):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=0)
