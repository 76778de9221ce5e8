"""Convolution benchmark: the convolutions of a conv layer's forward and backward pass,
and a CNN block, under tessel (implicit GEMM), tessel's im2col path and jax.jit.

    python bench/conv_bench.py [--only NAME[,NAME]] [--repeat 9] [--batch 8 --hw 56 --channels 64]

Rows: the forward convolution, its input gradient and its filter gradient (the
convolutions JAX's VJP builds: lhs-dilated with the reversed kernel, and the one with
the input's batch and features swapped), for NHWC/HWIO and NCHW/OIHW; and a CNN block
(conv 3x3 + bias + relu + 2x2 max pool, NHWC). The im2col column compiles the same
program with every convolution expanded first (compiler/passes/convolution_expander.py,
what the CPU backend did before the implicit GEMM); "fails" when it does not compile.
Results are checked against jax.jit. Times are medians of `repeat` calls in 3
interleaved rounds; ratios < 1: tessel faster. On a shared machine the times move with
the load average, printed with the table.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

ROUNDS = 3


def cases(batch: int, hw: int, channels: int) -> dict:
    """name -> (lhs, rhs, (lhs, rhs, out) dimension numbers, pooled block?)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, hw, hw, channels)).astype(np.float32)
    w = (rng.standard_normal((3, 3, channels, channels)) * 0.05).astype(np.float32)
    g = rng.standard_normal((batch, hw, hw, channels)).astype(np.float32)
    nchw = lambda a: np.ascontiguousarray(a.transpose(0, 3, 1, 2))     # noqa: E731
    wn = np.ascontiguousarray(w.transpose(3, 2, 0, 1))
    flipped = np.ascontiguousarray(w[::-1, ::-1])
    return {
        "nhwc_forward": (x, w, ("NHWC", "HWIO", "NHWC"), False),
        "nhwc_input_grad": (g, flipped, ("NHWC", "HWOI", "NHWC"), False),
        "nhwc_filter_grad": (x, g, ("CHWN", "IHWO", "HWNC"), False),
        "nchw_forward": (nchw(x), wn, ("NCHW", "OIHW", "NCHW"), False),
        "nchw_input_grad": (nchw(g), np.ascontiguousarray(wn[:, :, ::-1, ::-1]), ("NCHW", "IOHW", "NCHW"), False),
        "nchw_filter_grad": (nchw(x), nchw(g), ("CNHW", "IOHW", "NCHW"), False),
        "cnn_block": (x, w, ("NHWC", "HWIO", "NHWC"), True),
    }


def program(lax, nn_relu, max_pool, dims, pooled):
    """The benchmarked function for one framework's lax / relu / max pool."""
    def conv(a, b):
        return lax.conv_general_dilated(a, b, (1, 1), ((1, 1), (1, 1)), dimension_numbers=dims)

    def block(a, b, bias):
        return max_pool(nn_relu(conv(a, b) + bias))
    return block if pooled else conv


def tessel_callables(dims, pooled, args):
    """(implicit-GEMM jit, im2col-path callable or None)."""
    import tessel
    from tessel import lax, nn
    from tessel.compiler.pass_manager import PassManager
    from tessel.compiler.passes.convolution_expander import ConvolutionExpander
    from tessel.compiler.pipeline import optimize
    from tessel.runtime import backends

    fn = program(lax, nn.relu, lambda y: nn.max_pool(y, (2, 2), (2, 2)), dims, pooled)
    jitted = tessel.jit(fn)
    try:
        module = jitted.lower(*args).module
        PassManager("expand-all-convolutions", [ConvolutionExpander()]).run(module)
        run = backends.get("cpu").compile(optimize(module, "cpu")[0])
        im2col = lambda *a: run(list(a))        # noqa: E731
    except RecursionError:                      # e.g. a 56 x 56 window: 3136 slices
        im2col = None
    return jitted, im2col


def jax_callable(dims, pooled):
    import jax
    import jax.numpy as jnp
    pool = lambda y: jax.lax.reduce_window(y, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")  # noqa: E731
    fn = jax.jit(program(jax.lax, jax.nn.relu, pool, dims, pooled))
    return lambda *a: jax.block_until_ready(fn(*a))


def median_times(calls: dict, repeat: int) -> dict:
    times = {name: [] for name in calls}
    for r in range(ROUNDS):
        for name, call in calls.items():
            call()                                  # warm: caches, pool, pages
            for _ in range(repeat // ROUNDS + (r < repeat % ROUNDS)):
                start = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", type=lambda s: s.split(","), default=None)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--hw", type=int, default=56)
    parser.add_argument("--channels", type=int, default=64)
    options = parser.parse_args(argv)
    import jax.numpy as jnp
    table = cases(options.batch, options.hw, options.channels)
    print(f"conv {options.batch}x{options.hw}x{options.hw}, {options.channels}->{options.channels}, 3x3 SAME, f32; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'convolution':18} {'tessel':>10} {'im2col':>10} {'jax.jit':>10} {'tessel/jax':>11} {'im2col/jax':>11}  max err")
    for name in options.only or table:
        lhs, rhs, dims, pooled = table[name]
        args = (lhs, rhs) + ((np.linspace(-1, 1, rhs.shape[-1], dtype=np.float32),) if pooled else ())
        tessel_fn, im2col = tessel_callables(dims, pooled, args)
        jax_fn = jax_callable(dims, pooled)
        jax_args = [jnp.asarray(a) for a in args]
        want = np.asarray(jax_fn(*jax_args))
        error = float(np.max(np.abs(np.asarray(tessel_fn(*args)) - want)) / max(1e-30, np.max(np.abs(want))))
        calls = {"tessel": lambda: tessel_fn(*args), "jax": lambda: jax_fn(*jax_args)}
        if im2col is not None:
            calls["im2col"] = lambda: im2col(*args)
        t = median_times(calls, options.repeat)
        old = "fails" if im2col is None else f"{t['im2col'] * 1e3:.3g} ms"
        old_ratio = "-" if im2col is None else f"{t['im2col'] / t['jax']:.2f}"
        print(f"{name:18} {t['tessel'] * 1e3:>7.3g} ms {old:>10} {t['jax'] * 1e3:>7.3g} ms "
              f"{t['tessel'] / t['jax']:11.2f} {old_ratio:>11}  {error:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
