"""Functional-simulator speed: multiply-accumulates simulated per second of wall time.

    python bench/systolic_sim.py [--sizes 256 1024 2048] [--array 128] [--repeat 5]
                                 [--dtype bf16|f32|int8]

For each n it builds a weight-stationary GEMM program y = x @ w (n x n x n, f32 in host
memory): x's K tiles are DMA'd into the unified buffer once, then for every N tile the K
tiles' weights are loaded and their MATMULs (T = n rows each) accumulate, ACTIVATE
drains the accumulators and a DMA stores the tile. It prints the median wall time of
`Machine.run` (validation excluded, it is timed on its own), the MACs simulated per
second (the useful T*k*n multiply-adds of every MATMUL), NumPy's f32 `x @ w` on the same
operands with its default BLAS threads and with one thread (as the simulator runs it),
the ratios simulator/NumPy, and the validator's time without and with the race check. The result is checked against NumPy (bf16-rounded operands, fp32 sums).

Wall-clock medians on a shared machine move with the load; the load average is printed.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

from tessel.runtime.systolic import functional, isa, validate
from tessel.runtime.systolic.config import SystolicConfig


def gemm_program(n: int, R: int, C: int, x_at: int, w_at: int, y_at: int) -> list:
    """The instructions of y = x @ w (all n x n f32, row-major in host memory)."""
    k_tiles, n_tiles = -(-n // R), -(-n // C)
    out_ub = k_tiles * n
    program = [isa.make("DMA_LOAD", host=x_at + 4 * kt * R + 4 * n * r0, ub=kt * n + r0,
                        rows=min(4095, n - r0), cols=min(R, n - kt * R), stride=4 * n,
                        fmt="f32", push=("matrix",) if (kt, r0) == (k_tiles - 1, _last_chunk(n)) else ())
               for kt in range(k_tiles) for r0 in range(0, n, 4095)]
    for nt in range(n_tiles):
        cols = min(C, n - nt * C)
        for kt in range(k_tiles):
            pop = ("dma",) if (nt, kt) == (0, 0) else ("vector",) if kt == 0 else ()
            program.append(isa.make("LOAD_W", src="host", addr=w_at + 4 * (kt * R * n + nt * C),
                                    k=min(R, n - kt * R), n=cols, stride=4 * n))
            program.append(isa.make("MATMUL", ub=kt * n, acc=0, rows=n, swap=1, pop=pop,
                                    mode="overwrite" if kt == 0 else "accumulate",
                                    push=("vector",) if kt == k_tiles - 1 else ()))
        push = ("dma", "matrix") if nt < n_tiles - 1 else ("dma",)
        program.append(isa.make("ACTIVATE", acc=0, ub=out_ub + nt * n, rows=n, fn="identity",
                                pop=("matrix",), push=push))
        program.append(isa.make("DMA_STORE", host=y_at + 4 * nt * C, ub=out_ub + nt * n,
                                rows=n, cols=cols, stride=4 * n, fmt="f32", pop=("vector",)))
    program.append(isa.make("HALT"))
    return program


def _last_chunk(n: int) -> int:
    return (n - 1) // 4095 * 4095


def machine_for(n: int, array: int, dtype: str) -> tuple[SystolicConfig, int, int, int]:
    k_tiles = -(-n // array)
    ub_rows = 2 * k_tiles * n
    config = SystolicConfig(rows=array, cols=array, dtype=dtype, ub_bytes=ub_rows * array * 4,
                            acc_bytes=max(n, 1) * array * 4, host_bytes=3 * 4 * n * n + 4096)
    return config, 0, 4 * n * n, 8 * n * n


def expected(x, w, config):
    if config.dtype == "bf16":
        return functional.round_bf16(x, config.bf16_rounding) @ functional.round_bf16(w, config.bf16_rounding)
    return x @ w


def bench(n: int, array: int, dtype: str, repeat: int):
    config, x_at, w_at, y_at = machine_for(n, array, dtype)
    rng = np.random.default_rng(n)
    x = rng.uniform(-1, 1, (n, n)).astype(np.float32)
    w = rng.uniform(-1, 1, (n, n)).astype(np.float32)
    if dtype == "int8":
        x, w = np.rint(x * 100).astype(np.float32), np.rint(w * 100).astype(np.float32)
    program = gemm_program(n, array, array, x_at, w_at, y_at)
    memory = np.zeros(config.host_bytes, np.uint8)
    memory[x_at:x_at + x.nbytes] = x.view(np.uint8).ravel()
    memory[w_at:w_at + w.nbytes] = w.view(np.uint8).ravel()
    checks = {}
    for races in (False, True):
        start = time.perf_counter()
        validate.validate(program, config, host_bytes=memory.size, races=races)
        checks[races] = time.perf_counter() - start
    sim_times, np_times, np1_times = [], [], []
    for _ in range(repeat):
        start = time.perf_counter()
        machine = functional.Machine(config, memory).run(program)
        sim_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        x @ w
        np_times.append(time.perf_counter() - start)
        with functional.blas_threads(1):
            start = time.perf_counter()
            x @ w
            np1_times.append(time.perf_counter() - start)
    y = memory[y_at:y_at + 4 * n * n].view(np.float32).reshape(n, n)
    reference = expected(x, w, config)
    error = float(np.max(np.abs(y - reference)) / max(1.0, float(np.max(np.abs(reference)))))
    sim, ref = statistics.median(sim_times), statistics.median(np_times)
    ref1 = statistics.median(np1_times)
    return {"n": n, "instructions": len(program), "macs": machine.macs, "sim_s": sim,
            "macs_per_s": machine.macs / sim, "numpy_s": ref, "ratio": sim / ref,
            "numpy_1t_s": ref1, "ratio_1t": sim / ref1,
            "validate_s": checks[False], "validate_races_s": checks[True], "rel_error": error}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 2048])
    parser.add_argument("--array", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dtype", default="bf16", choices=["bf16", "f32", "int8"])
    args = parser.parse_args(argv)
    print(f"systolic functional simulator, {args.array}x{args.array} array, {args.dtype}; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'n':>6} {'instrs':>7} {'GMAC':>8} {'sim s':>8} {'GMAC/s':>8} {'numpy s':>8} "
          f"{'sim/np':>7} {'np 1T s':>8} {'sim/np1T':>8} {'valid s':>8} {'+races s':>8} "
          f"{'max rel err':>11}")
    for n in args.sizes:
        r = bench(n, args.array, args.dtype, args.repeat)
        print(f"{r['n']:>6} {r['instructions']:>7} {r['macs'] / 1e9:>8.3f} {r['sim_s']:>8.4f} "
              f"{r['macs_per_s'] / 1e9:>8.2f} {r['numpy_s']:>8.4f} {r['ratio']:>7.2f} "
              f"{r['numpy_1t_s']:>8.4f} {r['ratio_1t']:>8.2f} "
              f"{r['validate_s']:>8.4f} {r['validate_races_s']:>8.4f} {r['rel_error']:>11.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
