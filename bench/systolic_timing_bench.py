"""Speed of the systolic timing models: instructions and PE-cycles costed per second.

    python bench/systolic_timing_bench.py [--instructions 100000] [--repeat 5]

Times, as wall-clock medians of --repeat runs (the load average is printed with them):
- `simulate_timing` on a program of N instructions (repeating DMA_LOAD, LOAD_W, MATMUL,
  ACTIVATE, DMA_STORE with tokens, 128 x 128 array): instructions per second;
- the PE-level simulator on one 16 x 16 MATMUL of T = 256 rows: PE-cycles per second
  (R * C * cycles) and cycles per second.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from tessel.runtime.systolic import isa
from tessel.runtime.systolic.config import SystolicConfig
from tessel.runtime.systolic.pe_array import PeArray, PeMatmul
from tessel.runtime.systolic.timing import simulate_timing


def pipeline_program(instructions: int) -> list:
    group = [
        isa.make("DMA_LOAD", host=0, ub=0, rows=128, cols=128, stride=512, fmt="f32",
                 push=("matrix",)),
        isa.make("LOAD_W", src="host", addr=0, k=128, n=128, stride=256, fmt="bf16"),
        isa.make("MATMUL", ub=0, acc=0, rows=128, mode="overwrite", swap=1, pop=("dma",),
                 push=("vector",)),
        isa.make("ACTIVATE", acc=0, ub=0, rows=128, fn="relu", pop=("matrix",),
                 push=("dma",)),
        isa.make("DMA_STORE", host=0, ub=0, rows=128, cols=128, stride=512, fmt="f32",
                 pop=("vector",)),
    ]
    return group * (instructions // len(group)) + [isa.make("HALT")]


def median_seconds(call, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instructions", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    program, config = pipeline_program(args.instructions), SystolicConfig()
    seconds = median_seconds(lambda: simulate_timing(program, config), args.repeat)
    print(f"timing model: {len(program)} instructions in {seconds:.3f} s = "
          f"{len(program) / seconds:,.0f} instructions/s")

    rng = np.random.default_rng(0)
    op = PeMatmul(rng.standard_normal((256, 16)), rng.standard_normal((16, 16)))
    array = PeArray(16, 16)
    cycles = array.run([op]).total_cycles
    seconds = median_seconds(lambda: array.run([op]), args.repeat)
    print(f"PE simulator: 16x16, T=256: {cycles} cycles in {seconds:.3f} s = "
          f"{cycles / seconds:,.0f} cycles/s, {16 * 16 * cycles / seconds:,.0f} PE-cycles/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
