"""Convolution as an implicit GEMM (backends/cpu/conv_gemm.py): the GEMM packs its A panels
from the input, no im2col buffer. Differential tests against the interpreter: odd sizes,
padding (negative too), strides, dilations, groups, 1x1 and tiny shapes, NCHW and
permuted layouts (feature-first outputs, inputs whose features are not contiguous),
both gradient forms as JAX builds them for NHWC, fused epilogues, f32/f64; empty
convolutions and integer ones stay on the expander; and the packer alone against
NumPy, on blocks that cut kernel positions apart."""
from __future__ import annotations

import numpy as np
import pytest

import tessel
from tessel import lax
from tessel.backends.cpu import conv_gemm, gemm
from tessel.backends.interpreter import evaluate
from tessel.backends.interpreter.testing import one_op_module
from tessel.compiler.ir import Shape
from tessel.compiler.pipeline import optimize
from tessel.runtime import backends

NHWC = "b01f_01io->b01f"
CASES = {  # name -> lhs shape, rhs shape, attrs
    "same_3x3": ((2, 9, 11, 16), (3, 3, 16, 20), dict(dim_labels=NHWC, padding=((1, 1), (1, 1)))),
    "odd_sizes": ((3, 7, 5, 19), (3, 2, 19, 35), dict(dim_labels=NHWC, padding=((2, 0), (1, 1)))),
    "strided": ((2, 13, 10, 8), (3, 3, 8, 16), dict(dim_labels=NHWC, window_strides=(2, 3), padding=((1, 1), (0, 1)))),
    "rhs_dilation": ((1, 12, 12, 5), (3, 3, 5, 7), dict(dim_labels=NHWC, rhs_dilation=(2, 3), padding=((2, 2), (0, 3)))),
    "lhs_dilation": ((2, 4, 5, 6), (3, 2, 6, 5), dict(dim_labels=NHWC, lhs_dilation=(2, 3), padding=((2, 1), (1, 0)))),
    "negative_padding": ((1, 9, 8, 4), (2, 2, 4, 3), dict(dim_labels=NHWC, padding=((-2, 1), (-1, -1)))),
    "feature_groups": ((2, 6, 7, 12), (3, 3, 4, 9), dict(dim_labels=NHWC, feature_group_count=3, padding=((1, 1), (1, 1)))),
    "depthwise": ((2, 6, 7, 8), (3, 3, 1, 16), dict(dim_labels=NHWC, feature_group_count=8, padding=((1, 1), (1, 1)))),
    "batch_groups": ((4, 5, 6, 3), (2, 3, 3, 6), dict(dim_labels=NHWC, batch_group_count=2)),
    "1x1": ((2, 5, 7, 33), (1, 1, 33, 17), dict(dim_labels=NHWC)),
    "1x1_strided": ((2, 9, 9, 16), (1, 1, 16, 8), dict(dim_labels=NHWC, window_strides=(2, 2))),
    "tiny": ((1, 1, 1, 1), (1, 1, 1, 1), dict(dim_labels=NHWC)),
    "window_covers_input": ((2, 3, 3, 2), (3, 3, 2, 3), dict(dim_labels=NHWC)),
    "nchw_input": ((2, 5, 8, 7), (4, 5, 3, 3), dict(dim_labels="bf01_oi01->b01f", padding=((1, 1), (1, 1)))),
    # feature-first outputs: C is a feature-last copy, written out by the epilogue pass
    "nchw": ((2, 5, 8, 19), (4, 5, 3, 3), dict(dim_labels="bf01_oi01->bf01", padding=((1, 1), (2, 1)))),
    "nchw_strided": ((3, 4, 12, 10), (6, 4, 3, 3), dict(dim_labels="bf01_oi01->bf01", window_strides=(2, 2),
                                                       padding=((1, 0), (1, 1)))),
    "nchw_rhs_dilation": ((1, 3, 9, 20), (4, 3, 2, 3), dict(dim_labels="bf01_oi01->bf01", rhs_dilation=(2, 2),
                                                            padding=((1, 1), (2, 2)))),
    "permuted_everything": ((6, 2, 5, 7), (3, 5, 2, 4), dict(dim_labels="0bf1_1i0o->1b0f", window_strides=(1, 2))),
    "1d": ((3, 17, 6), (4, 6, 10), dict(dim_labels="b0f_0io->b0f", window_strides=(2,), padding=((3, 1),))),
    "3d": ((1, 4, 5, 3, 2), (2, 2, 2, 2, 3), dict(dim_labels="b012f_012io->b012f", padding=((1, 0), (0, 1), (1, 1)))),
    "0d_spatial": ((5, 6), (6, 7), dict(dim_labels="bf_io->bf")),
    "k_blocks_cut_taps": ((1, 6, 6, 100), (3, 3, 100, 24), dict(dim_labels=NHWC, padding=((1, 1), (1, 1)))),
}
EMPTY = {  # taken by the expander (a broadcast zero)
    "empty_batch": ((0, 3, 5, 2), (2, 2, 2, 3), dict(dim_labels=NHWC)),
    "empty_window": ((2, 3, 5, 2), (0, 2, 2, 3), dict(dim_labels=NHWC)),
    "empty_features": ((2, 3, 5, 0), (2, 2, 0, 3), dict(dim_labels=NHWC)),
}


def sample(dtype, shape, seed):
    return np.random.default_rng(seed).uniform(-2, 2, shape).astype({"f32": np.float32, "f64": np.float64}[dtype])


def check(got, want, dtype):
    tol = {"f64": 1e-12, "f32": 2e-5}[dtype]
    scale = max(1.0, float(np.max(np.abs(want), initial=0)))
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale)


def run(lhs, rhs, attrs, dtype, implicit=True):
    module = one_op_module("convolution", [Shape(dtype, lhs.shape), Shape(dtype, rhs.shape)], attrs)
    assert conv_gemm.applies(module.entry.root) == implicit
    optimized, _ = optimize(module, "cpu")
    kept = [i for c in optimized.computations for i in c.instructions if i.opcode == "convolution"]
    assert len(kept) == (1 if implicit else 0)
    (got,) = backends.get("cpu").compile(optimized)([lhs, rhs])
    check(got, evaluate(module, [lhs, rhs]), dtype)
    return got


F64_CASES = ["odd_sizes", "lhs_dilation", "feature_groups", "batch_groups", "nchw", "1d"]


@pytest.mark.parametrize("case,dtype", [(c, "f32") for c in sorted(CASES)] + [(c, "f64") for c in F64_CASES])
def test_implicit_gemm_matches_interpreter(case, dtype):
    lshape, rshape, attrs = CASES[case]
    run(sample(dtype, lshape, 1), sample(dtype, rshape, 2), attrs, dtype)


@pytest.mark.parametrize("case", sorted(EMPTY))
def test_empty_convolutions_are_expanded(case):
    lshape, rshape, attrs = EMPTY[case]
    run(sample("f32", lshape, 1), sample("f32", rshape, 2), attrs, "f32", implicit=False)


def test_integer_convolution_is_expanded():
    module = one_op_module("convolution", [Shape("s32", (2, 5, 5, 3)), Shape("s32", (2, 2, 3, 4))],
                           dict(dim_labels=NHWC))
    assert not conv_gemm.applies(module.entry.root)


def test_unfused_convolution_without_the_pipeline():
    """A module compiled without the CPU pipeline: the bare convolution kernel."""
    lshape, rshape, attrs = CASES["strided"]
    x, w = sample("f32", lshape, 3), sample("f32", rshape, 4)
    module = one_op_module("convolution", [Shape("f32", lshape), Shape("f32", rshape)], attrs)
    (got,) = backends.get("cpu").compile(module)([x, w])
    check(got, evaluate(module, [x, w]), "f32")


# ----------------------------------------------------------------------------- gradient forms

def _dilate(sizes, dilation):
    return np.array([(s - 1) * d + 1 for s, d in zip(sizes, dilation)])


GRADIENTS = [  # x (N, H, W, C), w (KH, KW, C/G, O), strides, padding, rhs dilation, groups
    ((2, 9, 8, 6), (3, 3, 6, 5), (1, 1), ((1, 1), (1, 1)), (1, 1), 1),
    ((2, 11, 9, 4), (3, 2, 4, 6), (2, 2), ((1, 1), (0, 1)), (1, 1), 1),
    ((1, 10, 10, 3), (2, 3, 3, 4), (1, 2), ((0, 1), (2, 0)), (2, 1), 1),
    ((2, 7, 6, 6), (3, 3, 2, 9), (1, 1), ((1, 1), (1, 1)), (1, 1), 3),
    ((2, 6, 5, 37), (3, 3, 37, 8), (1, 1), ((1, 1), (1, 1)), (1, 1), 1),    # panels within one tap
]


@pytest.mark.parametrize("xs,ws,strides,padding,rhs_dil,groups", GRADIENTS)
def test_gradient_convolutions_nhwc(xs, ws, strides, padding, rhs_dil, groups):
    """The convolutions JAX's VJP of an NHWC/HWIO convolution builds: the filter gradient
    (input's batch and features swapped, 'f01b_i01o->01bf', feature groups become batch
    groups) and the input gradient (lhs_dilation = strides, reversed kernel read as
    '01oi'). Both take the implicit GEMM."""
    x, w = sample("f32", xs, 5), sample("f32", ws, 6)
    forward = dict(dim_labels=NHWC, window_strides=strides, padding=padding, rhs_dilation=rhs_dil,
                   feature_group_count=groups)
    y = run(x, w, forward, "f32")
    g = sample("f32", y.shape, 7)
    lo = np.array([p for p, _ in padding])
    hi = (_dilate(g.shape[1:3], strides) - np.array(xs[1:3])) + (_dilate(ws[:2], rhs_dil) - lo - 1)
    filter_grad = dict(dim_labels="f01b_i01o->01bf", padding=tuple(zip(lo.tolist(), hi.tolist())),
                       window_strides=tuple(rhs_dil), rhs_dilation=tuple(strides), batch_group_count=groups)
    dw = run(x, g, filter_grad, "f32")
    assert dw.shape == w.shape
    if groups == 1:
        k = _dilate(ws[:2], rhs_dil)
        before = k - lo - 1
        after = np.array(xs[1:3]) + k - 1 - _dilate(g.shape[1:3], strides) - before
        input_grad = dict(dim_labels="b01f_01oi->b01f", padding=tuple(zip(before.tolist(), after.tolist())),
                          lhs_dilation=tuple(strides), rhs_dilation=tuple(rhs_dil))
        dx = run(g, np.ascontiguousarray(w[::-1, ::-1]), input_grad, "f32")
        assert dx.shape == x.shape


# ----------------------------------------------------------------------------- in programs

def _conv(x, w):
    return lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_bias_relu_fuse_into_the_convolution(dtype):
    def f(x, w, b):
        return tessel.numpy.maximum(_conv(x, w) + b, 0)
    x, w, b = sample(dtype, (2, 10, 9, 8), 8), sample(dtype, (3, 3, 8, 40), 9), sample(dtype, (40,), 10)
    compiled = tessel.jit(f, backend="cpu").lower(x, w, b).compile()
    check(np.asarray(compiled(x, w, b)), np.asarray(tessel.jit(f, backend="interpreter")(x, w, b)), dtype)
    fusions = [i for i in compiled.module.entry.instructions if i.opcode == "fusion"]
    assert len(fusions) == 1 and fusions[0].attrs["kind"] == "output"
    assert {i.opcode for i in fusions[0].attrs["calls"].instructions} >= {"convolution", "maximum", "add"}


def test_residual_epilogue_and_converted_input():
    """An epilogue reading another full-size operand, and an input that reaches the
    convolution through a convert (copied before packing)."""
    def f(x16, w, r):
        return _conv(x16.astype(np.float32), w) * 0.5 + r
    x = sample("f32", (1, 7, 6, 5), 11).astype(np.float16)
    w, r = sample("f32", (3, 3, 5, 6), 12), sample("f32", (1, 7, 6, 6), 13)
    got = tessel.jit(f, backend="cpu")(x, w, r)
    check(np.asarray(got), np.asarray(tessel.jit(f, backend="interpreter")(x, w, r)), "f32")


# ----------------------------------------------------------------------------- the packer alone

@pytest.mark.parametrize("threads", [1, 2])
def test_implicit_patches_gemm_against_numpy(threads):
    """The GEMM with the implicit A against NumPy's im2col matmul, for a shape whose K
    blocks (kc) cut kernel positions apart and whose rows end in a partial panel."""
    n, h, wd, c, o = 2, 9, 7, 70, 33
    conv = one_op_module("convolution", [Shape("f32", (n, h, wd, c)), Shape("f32", (3, 3, c, o))],
                         dict(dim_labels=NHWC, padding=((1, 1), (1, 1)))).entry.root
    geometry = conv_gemm.plan(conv)
    packer = conv_gemm.ImplicitPatches(geometry, h * wd * c, 1, (wd * c, c))
    spec = gemm.GemmSpec("f32", geometry.M, geometry.N, geometry.K, a_strides=(0, 0, 0), b_strides=(0, o, 1),
                         c_strides=(o, o, 1), a_packer=packer)
    how = gemm.plan(spec, threads=threads)
    assert how.path == "blocked" and geometry.K > how.blocking.kc and how.blocking.kc % c
    x, w = sample("f32", (n, h, wd, c), 14), sample("f32", (3, 3, c, o), 15)
    got = gemm.compile_gemm(spec, threads=threads)(x, w, out=np.empty((geometry.M, o), np.float32))
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))).astype(np.float64)
    patches = np.concatenate([padded[:, i:i + h, j:j + wd] for i in range(3) for j in range(3)], axis=3)
    want = patches.reshape(-1, 9 * c) @ w.reshape(9 * c, o).astype(np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
