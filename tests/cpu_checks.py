"""The CPU backend against the interpreter (the definition of every op), shared by the
code generator's tests (tests/backends/cpu/). Imported by name (tests/conftest.py puts
this folder on sys.path)."""
from __future__ import annotations

import numpy as np

from tessel.backends.interpreter import evaluate
from tessel.compiler.pipeline import optimize
from tessel.runtime import backends


def run_cpu(module, args):
    return backends.get("cpu").compile(module)(args)


def assert_matches_interpreter(module, args, rtol=0.0, atol=0.0, optimized=False):
    """The CPU backend's outputs for `args` are the interpreter's: as many, same shapes
    and dtypes, equal values -- within rtol/atol for floats when a tolerance is given
    (NaNs match NaNs). `optimized` compiles the module after the CPU pipeline."""
    want = evaluate(module, args)
    want = list(want) if isinstance(want, tuple) else [want]
    got = run_cpu(optimize(module, "cpu")[0] if optimized else module, args)
    assert len(got) == len(want), (len(got), len(want))
    for k, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape and g.dtype == w.dtype, (k, g.shape, w.shape, g.dtype, w.dtype)
        if w.dtype.kind in "fc" and (rtol or atol):
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, equal_nan=True, err_msg=f"output {k}")
        else:
            np.testing.assert_array_equal(g, w, err_msg=f"output {k}")
