"""CPU codegen, convolution: an implicit GEMM (backends/cpu/conv_gemm.py) for f32/f64, else
lowered onto the GEMM by the convolution expander (im2col patches . reshaped kernel,
compiler/passes/convolution_expander.py), against the interpreter: any dim_labels, strides, padding (negative too), lhs_dilation (transposed
convolution), rhs_dilation, feature and batch groups, empty shapes, the dtypes, both
gradient forms, and a fused epilogue."""
from __future__ import annotations

import numpy as np
import pytest

import tessel
from tessel import lax
from tessel.backends.cpu import conv_gemm
from tessel.backends.interpreter import evaluate
from tessel.backends.interpreter.testing import one_op_module
from tessel.compiler import dtypes
from tessel.compiler.ir import Shape
from tessel.compiler.pipeline import optimize
from tessel.runtime import backends

from op_cases import CONV_GRADIENT_CASES, CONVS, filter_gradient_attrs, forward_conv_attrs, input_gradient_attrs

# The shared cases and more the code generator takes its own paths for (larger, NCHW strided,
# depthwise NHWC, 1x1, no spatial dims, an empty window).
CONVS = {
    **CONVS,
    "2d_nhwc_same": ((2, 9, 11, 16), (3, 3, 16, 37), dict(dim_labels="b01f_01io->b01f",
                                                         padding=((1, 1), (1, 1)))),
    "2d_nchw_strided": ((3, 5, 12, 10), (7, 5, 3, 3), dict(dim_labels="bf01_oi01->bf01", window_strides=(2, 2),
                                                          padding=((1, 0), (1, 1)))),
    "depthwise_nhwc": ((2, 6, 7, 8), (3, 3, 1, 8), dict(dim_labels="b01f_01io->b01f", feature_group_count=8,
                                                        padding=((1, 1), (1, 1)))),
    "0d_spatial": ((3, 4), (4, 5), dict(dim_labels="bf_io->bf")),
    "1x1": ((2, 4, 4, 8), (1, 1, 8, 3), dict(dim_labels="b01f_01io->b01f")),
    "empty_window": ((2, 3, 5), (2, 3, 0), dict(dim_labels="bf0_oi0->bf0")),
}


def sample(dtype, shape, seed):
    dt = dtypes.from_any(dtype)
    rng = np.random.default_rng(seed)
    if dt.is_integer:
        return rng.integers(-20, 20, shape).astype(dt.storage)
    return dtypes.canonicalize(rng.uniform(-2, 2, shape), dt)


def run_both(lhs, rhs, attrs, dtype):
    module = one_op_module("convolution", [Shape(dtype, lhs.shape), Shape(dtype, rhs.shape)], attrs)
    want = evaluate(module, [lhs, rhs])
    optimized, _ = optimize(module, "cpu")
    kept = any(i.opcode == "convolution" for c in optimized.computations for i in c.instructions)
    assert kept == conv_gemm.applies(module.entry.root)     # implicit GEMM, else expanded
    (got,) = backends.get("cpu").compile(optimized)([lhs, rhs])
    assert got.shape == want.shape and got.dtype == want.dtype
    return got, want


def check(got, want, dtype):
    dt = dtypes.from_any(dtype)
    if dt.is_integer:
        np.testing.assert_array_equal(got, want)
    else:
        tol = {"f64": 1e-12, "f32": 2e-5, "f16": 2e-2, "bf16": 5e-2}[dtype]
        scale = max(1.0, float(np.max(np.abs(want.astype(np.float64)), initial=0)))
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=tol, atol=tol * scale)


@pytest.mark.parametrize("case", sorted(CONVS))
@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_convolution_matches_interpreter(case, dtype):
    lshape, rshape, attrs = CONVS[case]
    check(*run_both(sample(dtype, lshape, 1), sample(dtype, rshape, 2), attrs, dtype), dtype)


@pytest.mark.parametrize("dtype", ["s32", "s8", "bf16", "f16"])
@pytest.mark.parametrize("case", ["2d_nhwc", "feature_groups", "batch_groups"])
def test_convolution_dtypes(case, dtype):
    lshape, rshape, attrs = CONVS[case]
    check(*run_both(sample(dtype, lshape, 3), sample(dtype, rshape, 4), attrs, dtype), dtype)


# ----------------------------------------------------------------------------- gradient forms

@pytest.mark.parametrize("xs,ws,strides,padding,rhs_dil,groups", CONV_GRADIENT_CASES)
def test_gradient_convolutions(xs, ws, strides, padding, rhs_dil, groups):
    """The input gradient (a transposed convolution: lhs_dilation = strides, reversed
    kernel with 'io' labels) and the filter gradient (batch and features swapped, a
    feature-grouped forward becomes batch_group_count), as JAX builds them."""
    x, w = sample("f32", xs, 5), sample("f32", ws, 6)
    y, _ = run_both(x, w, forward_conv_attrs(strides, padding, rhs_dil, groups), "f32")
    g = sample("f32", y.shape, 7)
    dw, want = run_both(x, g, filter_gradient_attrs(xs[2:], ws[2:], g.shape[2:], strides, padding, rhs_dil,
                                                    groups), "f32")
    assert dw.shape == w.shape
    check(dw, want, "f32")
    if groups == 1:
        flipped = np.ascontiguousarray(np.flip(w, tuple(range(2, w.ndim))))
        dx, want = run_both(g, flipped, input_gradient_attrs(xs[2:], ws[2:], g.shape[2:], strides, padding,
                                                             rhs_dil), "f32")
        assert dx.shape == x.shape
        check(dx, want, "f32")


# ----------------------------------------------------------------------------- in programs

def test_conv_bias_relu_through_jit():
    def f(x, w, b):
        y = lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return tessel.numpy.maximum(y + b, 0)
    x, w, b = sample("f32", (2, 10, 9, 8), 8), sample("f32", (3, 3, 8, 16), 9), sample("f32", (16,), 10)
    got = tessel.jit(f, backend="cpu")(x, w, b)
    want = tessel.jit(f, backend="interpreter")(x, w, b)
    check(np.asarray(got), np.asarray(want), "f32")


def random_config(rng):
    """A random valid convolution: rank, layout, window, groups (seeded)."""
    n = int(rng.integers(1, 3))
    sp = "".join(map(str, range(n)))
    lhs_labels = "".join(rng.permutation(list("bf" + sp)))
    rhs_labels = "".join(rng.permutation(list("io" + sp)))
    out_labels = "".join(rng.permutation(list("bf" + sp)))
    groups = int(rng.integers(1, 3))
    by_batch = bool(rng.integers(0, 2)) and groups > 1
    kernel = [int(k) for k in rng.integers(1, 4, n)]
    spatial = [int(s) for s in rng.integers(1, 7, n)]
    attrs = dict(dim_labels=f"{lhs_labels}_{rhs_labels}->{out_labels}",
                 window_strides=tuple(int(s) for s in rng.integers(1, 3, n)),
                 padding=tuple((int(lo), int(hi)) for lo, hi in rng.integers(-1, 3, (n, 2))),
                 lhs_dilation=tuple(int(d) for d in rng.integers(1, 3, n)),
                 rhs_dilation=tuple(int(d) for d in rng.integers(1, 3, n)),
                 feature_group_count=1 if by_batch else groups, batch_group_count=groups if by_batch else 1)
    i, o = int(rng.integers(1, 4)), groups * int(rng.integers(1, 3))
    sizes = {"b": 2 * (groups if by_batch else 1), "f": i * (1 if by_batch else groups)}
    lshape = tuple(sizes[c] if c in "bf" else spatial[int(c)] for c in lhs_labels)
    rshape = tuple({"i": i, "o": o}[c] if c in "io" else kernel[int(c)] for c in rhs_labels)
    return lshape, rshape, attrs


@pytest.mark.parametrize("seed", range(24))
def test_random_convolutions(seed):
    rng = np.random.default_rng(seed)
    lshape, rshape, attrs = random_config(rng)
    try:
        one_op_module("convolution", [Shape("f32", lshape), Shape("f32", rshape)], attrs)
    except Exception:           # e.g. the padding crops the whole input: not a valid program
        pytest.skip("invalid configuration")
    check(*run_both(sample("f32", lshape, seed), sample("f32", rshape, seed + 1), attrs, "f32"), "f32")


@pytest.mark.parametrize("case", ["2d_nhwc", "batch_groups", "empty_window"])
def test_unexpanded_convolution_compiles_as_a_nested_function(case):
    """A module that skipped the CPU pipeline still lowers its convolutions (kernels_conv.py)."""
    lshape, rshape, attrs = CONVS[case]
    x, w = sample("f32", lshape, 11), sample("f32", rshape, 12)
    module = one_op_module("convolution", [Shape("f32", lshape), Shape("f32", rshape)], attrs)
    (got,) = backends.get("cpu").compile(module)([x, w])
    check(got, evaluate(module, [x, w]), "f32")
