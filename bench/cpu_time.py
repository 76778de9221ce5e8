"""CPU time per call, tessel vs jax.jit, both on one thread: a measure for a busy machine.

    python -m bench.cpu_time mlp gpt2_block softmax layernorm_gelu [--calls 30]

On a machine shared with other work, wall-clock times swing with the load (the main
bench's `±`). The CPU time of a call (`time.process_time`) counts only the cycles the
process itself ran, so it barely moves with the load; with both frameworks on one
thread (TESSEL_NUM_THREADS=1; XLA's Eigen pool off) it measures the work each does per
call. It says nothing about two-thread scaling: take that from `python -m bench` on a
quiet machine. Calls alternate between the frameworks; the table shows the minimum,
10th percentile and median of each, and their ratios.
"""
from __future__ import annotations

import os

# before jax or tessel start their thread pools
os.environ["TESSEL_NUM_THREADS"] = "1"
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.workloads import WORKLOADS
else:
    from .workloads import WORKLOADS


def cpu_times(workload, calls: int) -> dict:
    import jax
    import tessel
    args = workload.make_inputs(np.random.default_rng(0), **workload.size)
    tf = tessel.jit(workload.function("tessel", False))
    jf = jax.jit(workload.function("jax", False))
    jargs = jax.device_put(args)
    tf(*args)
    jax.block_until_ready(jf(*jargs))
    times = {"tessel": [], "jax": []}
    for _ in range(calls):
        start = time.process_time()
        tf(*args)
        times["tessel"].append(time.process_time() - start)
        start = time.process_time()
        jax.block_until_ready(jf(*jargs))
        times["jax"].append(time.process_time() - start)
    return {k: np.array(v) for k, v in times.items()}


def row(name: str, times: dict) -> str:
    t, j = times["tessel"], times["jax"]
    stats = [("min", np.min), ("p10", lambda x: np.percentile(x, 10)), ("med", np.median)]
    cells = [f"{label} {f(t) * 1e3:.3f}/{f(j) * 1e3:.3f} ({f(t) / f(j):.2f})" for label, f in stats]
    return f"{name:16s} " + "  ".join(cells)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", help="workload names (bench/workloads.py)")
    parser.add_argument("--calls", type=int, default=30)
    options = parser.parse_args(argv)
    by_name = {w.name: w for w in WORKLOADS}
    print("CPU ms per call, tessel/jax (ratio), one thread each")
    for name in options.names:
        if name not in by_name or by_name[name].kind != "run":
            parser.error(f"unknown or non-timing workload {name!r}")
        print(row(name, cpu_times(by_name[name], options.calls)), flush=True)


if __name__ == "__main__":
    main()
