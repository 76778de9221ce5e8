"""GEMM benchmark: tessel's blocked f32 GEMM against NumPy (OpenBLAS), in GFLOP/s.

    python bench/gemm_bench.py [--sizes 256 1024 2048] [--repeat 9] [--threads 1 2]

For each size n (C = A @ B, all n x n, f32) and each thread count t it prints the
median GFLOP/s of tessel (kernel compiled for t threads) and of np.matmul on the same
inputs and output buffer, timed in the same process in alternating rounds, and their
ratio. NumPy's thread count cannot be changed in-process without extra packages,
so the 1-thread columns come from a child process run with OPENBLAS_NUM_THREADS=1 and
TESSEL_NUM_THREADS=1. The last column is tessel's speed-up of 2 threads over 1.

Timings are wall-clock medians: on a shared machine they move with the load average,
which is printed with the table.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

SINGLE_THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
                     "MKL_NUM_THREADS": "1"}
ROUNDS = 3
WARMUP_SECONDS = 0.3        # > OpenBLAS's idle-thread spin (2^28 cycles by default)


def operands(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(n)
    return (rng.uniform(-1, 1, (n, n)).astype(np.float32),
            rng.uniform(-1, 1, (n, n)).astype(np.float32))


def gflops(n: int, seconds: float) -> float:
    return 2 * n ** 3 / seconds / 1e9


def timed(fn, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def in_rounds(fns, repeat: int, rounds: int = ROUNDS) -> list[float]:
    """Median seconds of each function over `rounds` rounds of `repeat` back-to-back
    runs, the functions taking turns round by round (so load changes hit all alike).
    Each turn starts with WARMUP_SECONDS of untimed runs: OpenBLAS's idle threads spin
    for a while after a call and would steal a core from the next function, and a
    freshly woken thread may share its waker's core until the scheduler moves it."""
    samples = [[] for _ in fns]
    for _ in range(rounds):
        for fn, times in zip(fns, samples):
            start = time.perf_counter()
            while time.perf_counter() - start < WARMUP_SECONDS:
                fn()
            times += timed(fn, repeat)
    return [statistics.median(times) for times in samples]


def measure(sizes, threads: int, repeat: int) -> dict[int, tuple[float, float, float]]:
    """{n: (tessel seconds, numpy seconds, tessel compile seconds)}, checking results."""
    from tessel.backends.cpu.gemm import GemmSpec, compile_gemm
    out = {}
    for n in sizes:
        a, b = operands(n)
        start = time.perf_counter()
        kernel = compile_gemm(GemmSpec("f32", n, n, n), threads=threads)
        compile_s = time.perf_counter() - start
        np.testing.assert_allclose(kernel(a, b), np.matmul(a, b), rtol=1e-4,
                                   atol=1e-4 * n ** 0.5)
        c = np.empty((n, n), np.float32)
        tessel_s, numpy_s = in_rounds([lambda: kernel(a, b, out=c),
                                       lambda: np.matmul(a, b, out=c)], repeat)
        out[n] = (tessel_s, numpy_s, compile_s)
    return out


def single_thread_child(sizes, repeat) -> dict[int, tuple[float, float, float]]:
    """`measure` for one thread in a child process with one OpenBLAS thread."""
    cmd = [sys.executable, os.path.abspath(__file__), "--single-thread-child",
           "--repeat", str(repeat), "--sizes", *map(str, sizes)]
    env = {**os.environ, **SINGLE_THREAD_ENV, "TESSEL_NUM_THREADS": "1"}
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return {int(k): tuple(v) for k, v in json.loads(result.stdout).items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 2048])
    parser.add_argument("--repeat", type=int, default=5, help="runs per round")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--single-thread-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.single_thread_child:
        print(json.dumps(measure(args.sizes, 1, args.repeat)))
        return 0

    from tessel.backends.cpu import runtime_support
    runtime_support.init_pool(max(args.threads))
    results = {}
    for t in args.threads:
        results[t] = (single_thread_child(args.sizes, args.repeat) if t == 1
                      else measure(args.sizes, t, args.repeat))
    report(args.sizes, results)
    return 0


def report(sizes, results) -> None:
    threads = sorted(results)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"f32 GEMM C = A @ B (n x n), GFLOP/s (median of {ROUNDS} rounds); load {load}; "
          f"{os.cpu_count()} CPUs")
    head = f"{'n':>6}"
    for t in threads:
        head += f" | {f'tessel {t}T':>10} {f'numpy {t}T':>10} {'ratio':>6}"
    if 1 in threads and len(threads) > 1:
        head += f" | {f'{threads[-1]}T/1T':>7}"
    print(head)
    print("-" * len(head))
    for n in sizes:
        line = f"{n:>6}"
        for t in threads:
            ours, theirs, _ = (gflops(n, s) for s in results[t][n])
            line += f" | {ours:>10.1f} {theirs:>10.1f} {ours / theirs:>5.2f}x"
        if 1 in threads and len(threads) > 1:
            line += f" | {results[1][n][0] / results[threads[-1]][n][0]:>6.2f}x"
        print(line)
    if 1 in threads:
        print("1T columns: a child process with OPENBLAS_NUM_THREADS=1 and TESSEL_NUM_THREADS=1.")
    compile_times = ", ".join(f"n={n}: " + "/".join(f"{results[t][n][2]:.2f}" for t in threads)
                              for n in sizes)
    print(f"tessel compile seconds ({'/'.join(f'{t}T' for t in threads)}): {compile_times}")


if __name__ == "__main__":
    raise SystemExit(main())
