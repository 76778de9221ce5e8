"""Compile a function for the systolic machine, validate the program (races included)
and run it on the functional simulator; shared by the systolic backend's tests."""
from __future__ import annotations

import numpy as np

import tessel
from tessel.backends import interpreter
from tessel.backends.systolic.executable import SystolicExecutable, using_config
from tessel.compiler import pipeline
from tessel.runtime.systolic.config import SystolicConfig

SMALL = SystolicConfig(rows=8, cols=8, ub_bytes=1 << 17, acc_bytes=1 << 12)


def compile_fn(fn, *args, config=SMALL, static_argnums=()):
    """(SystolicExecutable, optimized module) for fn at these arguments."""
    lowered = tessel.jit(fn, backend="interpreter", static_argnums=static_argnums).lower(*args)
    with using_config(config):
        module, _ = pipeline.optimize(lowered.module, "systolic")
        return SystolicExecutable(module, config, check_races=True), module


def run_both(fn, *args, config=SMALL):
    """(machine outputs, interpreter outputs on the same optimized module)."""
    exe, module = compile_fn(fn, *args, config=config)
    flat = [np.asarray(a, np.float32) for a in _leaves(args)]
    got = exe.run(flat)
    want = interpreter.evaluate(module, flat)
    return got, list(want), exe


def _leaves(args):
    from tessel.runtime import pytree
    return pytree.flatten(args)[0]
