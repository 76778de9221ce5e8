"""Cycles and MXU utilization of whole models on the simulated systolic machine.

    python bench/systolic_models.py                 # MLP, CNN, GPT block, GEMM on 128x128 and 256x256
    python bench/systolic_models.py --arrays 128    # one array size
    python bench/systolic_models.py --check         # also run the functional simulator and
                                                    # compare with the bf16 NumPy model
    python bench/systolic_models.py --json out.json
    python bench/systolic_models.py --trace DIR     # Chrome/Perfetto timelines (one track per unit)

For each model (tests/backends/systolic/systolic_models.py: MLP 784-512-512-10 batch 256,
CNN 28x28 batch 64, GPT-2 block seq 256 width 512 8 heads) and for a 1024^3 GEMM, the
program is compiled for each array size (SystolicConfig(rows=n, cols=n), other fields
default) and timed by the timing model (runtime/systolic/timing.py). Cycles do not depend
on the data and the model is deterministic, so one run is the measurement; the wall
times printed are the compiler's and the simulators', on this (noisy, shared) host.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "backends" / "systolic"))

import systolic_models as sm  # noqa: E402

import tessel  # noqa: E402
from tessel.backends.systolic.executable import (SystolicExecutable, simulate, time_program,  # noqa: E402
                                                 using_config)
from tessel.compiler import pipeline  # noqa: E402
from tessel.compiler.parser import parse_module  # noqa: E402
from tessel.runtime import pytree  # noqa: E402
from tessel.runtime.systolic.config import SystolicConfig  # noqa: E402


def gemm_module(m: int, k: int, n: int):
    return parse_module(f"HloModule gemm\nENTRY main {{\n  a = f32[{m},{k}] parameter(0)\n"
                        f"  b = f32[{k},{n}] parameter(1)\n"
                        f"  d = f32[{m},{n}] dot_general(a, b), lhs_contracting_dims={{1}}, rhs_contracting_dims={{0}}\n"
                        f"  ROOT t = (f32[{m},{n}]) tuple(d)\n}}\n")


def workloads(rng):
    """name -> (traced module, flat inputs, bf16-model function or None)."""
    out = {}
    for name, (model, static, params, x, _) in sm.bench_models(rng).items():
        lowered = tessel.jit(sm.traced(model, **static), backend="interpreter").lower(params, x)
        flat = pytree.flatten((params, x))[0]
        out[name] = (lowered.module, flat, lambda p=params, x=x, m=model, s=static: sm.reference(m, sm.BF16, **s)(p, x))
    a = rng.standard_normal((1024, 1024)).astype(np.float32)
    b = rng.standard_normal((1024, 1024)).astype(np.float32)
    out["gemm 1024x1024x1024"] = (gemm_module(1024, 1024, 1024), [a, b], None)
    return out


def measure(name, module, inputs, model_fn, config, check: bool, trace_dir: str = "") -> dict:
    t0 = time.perf_counter()
    with using_config(config):
        optimized, _ = pipeline.optimize(module, "systolic")
        exe = SystolicExecutable(optimized, config, check_races=False)
    t1 = time.perf_counter()
    report = time_program(exe.program)
    t2 = time.perf_counter()
    if trace_dir:
        from tessel.runtime.systolic.report import write_chrome_trace
        slug = "".join(c if c.isalnum() else "_" for c in name.split()[0] + f"_{config.rows}x{config.cols}")
        Path(trace_dir).mkdir(parents=True, exist_ok=True)
        write_chrome_trace(report, Path(trace_dir) / f"{slug}.json", labels=exe.program.origins)
    row = {"model": name, "array": f"{config.rows}x{config.cols}", "cycles": report.total_cycles,
           "microseconds": report.seconds * 1e6, "mxu_utilization": report.mxu_utilization,
           "macs": report.macs, "instructions": len(exe.program.instructions),
           "busy": {u: report.busy_fraction(u) for u in report.busy},
           "bytes_moved": dict(report.bytes_moved), "compile_s": t1 - t0, "timing_s": t2 - t1}
    if check:
        memory = exe.program.memory_with(inputs)
        t3 = time.perf_counter()
        simulate(exe.program, memory)
        row["simulate_s"] = time.perf_counter() - t3
        got = exe.program.outputs_from(memory)[0]
        if model_fn is not None:
            want = model_fn()
            row["max_abs_diff_vs_bf16_model"] = float(np.max(np.abs(got - want)))
            row["max_abs_bf16_model"] = float(np.max(np.abs(want)))
    return row


def print_row(row: dict) -> None:
    busy = " ".join(f"{u}={100 * f:.0f}%" for u, f in row["busy"].items())
    moved = sum(row["bytes_moved"].values())
    line = (f"{row['model']:<38} {row['array']:>8} {row['cycles']:>11,} cyc {row['microseconds']:>9.1f} us "
            f"MXU {100 * row['mxu_utilization']:5.1f}%  instr {row['instructions']:>6}  "
            f"{moved / 1e6:7.1f} MB moved  busy: {busy}  (compile {row['compile_s']:.1f}s, timing {row['timing_s']:.1f}s")
    if "simulate_s" in row:
        line += f", simulate {row['simulate_s']:.1f}s"
    line += ")"
    if "max_abs_diff_vs_bf16_model" in row:
        line += (f"  max|machine - bf16 model| = {row['max_abs_diff_vs_bf16_model']:.2e}"
                 f" (max|model| = {row['max_abs_bf16_model']:.2f})")
    print(line, flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arrays", default="128,256", help="array sizes n (n x n), comma separated")
    parser.add_argument("--only", default="", help="substring of the model names to run")
    parser.add_argument("--check", action="store_true", help="also run the functional simulator")
    parser.add_argument("--json", default="", help="write the rows as JSON to this file")
    parser.add_argument("--trace", default="", help="write a Chrome-trace timeline per run into this folder")
    args = parser.parse_args(argv)
    rows = []
    for name, (module, inputs, model_fn) in workloads(np.random.default_rng(0)).items():
        if args.only and args.only not in name:
            continue
        for n in (int(v) for v in args.arrays.split(",")):
            row = measure(name, module, inputs, model_fn, SystolicConfig(rows=n, cols=n), args.check, args.trace)
            print_row(row)
            rows.append(row)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
