"""Where a workload's time goes, kernel by kernel (tessel's CPU backend only).

    python -m bench.kernel_profile mlp gpt2_block [--quick] [--calls N]

Compiles each workload of `bench/workloads.py` with TESSEL_PROFILE_KERNELS=1 (the
code generator's cycle counters around every kernel, backends/cpu/codegen.py), runs it
N times and prints each kernel's share of the counted cycles and its milliseconds per
call (the shares applied to the measured wall time). A debugging aid, not a benchmark:
compare its shares, and take speeds from `python -m bench`.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.workloads import WORKLOADS
else:
    from .workloads import WORKLOADS


def profile(workload, quick: bool, calls: int) -> str:
    import tessel
    from tessel.backends.cpu import codegen
    from tessel.backends.cpu.executable import CpuExecutable
    from tessel.runtime import pytree

    args = workload.make_inputs(np.random.default_rng(0), **workload.sizes(quick))
    compiled = tessel.jit(workload.function("tessel", quick)).lower(*args).compile()
    leaves = [np.asarray(a) for a in pytree.flatten(args)[0]]
    os.environ[codegen.PROFILE_FLAG] = "1"
    try:
        executable = CpuExecutable(compiled.module)
    finally:
        del os.environ[codegen.PROFILE_FLAG]
    executable.run(leaves)                      # warm up, then count from zero
    executable.program.kernel_cycles[:] = 0
    start = time.perf_counter()
    for _ in range(calls):
        executable.run(leaves)
    per_call = (time.perf_counter() - start) / calls
    table = codegen.kernel_profile(executable.program, per_call)
    return f"{workload.title(quick)}: {per_call * 1e3:.3f} ms per call\n{table}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", help="workload names (bench/workloads.py)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--calls", type=int, default=50)
    options = parser.parse_args(argv)
    by_name = {w.name: w for w in WORKLOADS}
    for name in options.names:
        if name not in by_name:
            parser.error(f"unknown workload {name!r}; known: {', '.join(by_name)}")
        print(profile(by_name[name], options.quick, options.calls))


if __name__ == "__main__":
    main()
