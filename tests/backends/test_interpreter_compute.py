"""Interpreter: dot_general and convolution against einsum and a naive loop.

The convolution tests also check the two gradient forms XLA users rely on (as JAX
builds them): the input gradient is a convolution with lhs_dilation (a transposed
convolution), the filter gradient of a grouped convolution uses batch_group_count.
Each must be the adjoint of the forward convolution: <conv(x, w), g> = <x, dx(g)> = <w, dw(g)>.
"""
import itertools

import numpy as np
import pytest

from tessel.backends.interpreter.testing import run_op
from tessel.compiler import dtypes
from tessel.compiler.ops import parse_dim_labels, window_output_size

from op_cases import CONV_GRADIENT_CASES, CONVS, filter_gradient_attrs, forward_conv_attrs, input_gradient_attrs


def exact(got, want):
    want = np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, got.shape, want.dtype, want.shape)
    np.testing.assert_array_equal(got, want)


def sample(dtype, shape, seed):
    dt = dtypes.from_any(dtype)
    rng = np.random.default_rng(seed)
    if dt.is_integer:
        return rng.integers(-100 if dt.kind == "signed" else 0, 100, shape).astype(dt.storage)
    return dtypes.canonicalize(rng.uniform(-2, 2, shape), dt)


# ----------------------------------------------------------------------------- dot_general

DOTS = {  # name -> lhs shape, rhs shape, attrs, einsum spec
    "matmul": ((2, 3), (3, 4), dict(lhs_contracting_dims=(1,), rhs_contracting_dims=(0,)), "mk,kn->mn"),
    "vector": ((5,), (5,), dict(lhs_contracting_dims=(0,), rhs_contracting_dims=(0,)), "k,k->"),
    "outer": ((2,), (3,), dict(lhs_contracting_dims=(), rhs_contracting_dims=()), "m,n->mn"),
    "batched": ((4, 2, 3), (4, 3, 5), dict(lhs_batching_dims=(0,), rhs_batching_dims=(0,),
                                           lhs_contracting_dims=(2,), rhs_contracting_dims=(1,)), "bmk,bkn->bmn"),
    "batch_in_middle": ((2, 4, 3), (3, 4, 5), dict(lhs_batching_dims=(1,), rhs_batching_dims=(1,),
                                                   lhs_contracting_dims=(2,), rhs_contracting_dims=(0,)),
                        "mbk,kbn->bmn"),
    "two_contracting": ((3, 2, 4), (4, 5, 3), dict(lhs_contracting_dims=(0, 2), rhs_contracting_dims=(2, 0)),
                        "kmj,jnk->mn"),
    "transposed_rhs": ((2, 3), (4, 3), dict(lhs_contracting_dims=(1,), rhs_contracting_dims=(1,)), "mk,nk->mn"),
    "empty_contraction": ((2, 0), (0, 3), dict(lhs_contracting_dims=(1,), rhs_contracting_dims=(0,)), "mk,kn->mn"),
    "empty_free": ((0, 3), (3, 4), dict(lhs_contracting_dims=(1,), rhs_contracting_dims=(0,)), "mk,kn->mn"),
}


@pytest.mark.parametrize("case", sorted(DOTS))
@pytest.mark.parametrize("dtype", ["f16", "bf16", "f32", "f64", "s8", "s32", "u8"])
def test_dot_general(case, dtype):
    lshape, rshape, attrs, spec = DOTS[case]
    x, y = sample(dtype, lshape, 1), sample(dtype, rshape, 2)
    got = run_op("dot_general", x, y, attrs=attrs, dtype=dtype)
    dt = dtypes.from_any(dtype)
    if dt.is_integer:    # wraps: the exact sum reduced modulo 2^bits
        exact(got, np.einsum(spec, x.astype(np.int64), y.astype(np.int64)).astype(dt.storage))
    else:
        want = dtypes.canonicalize(np.einsum(spec, x.astype(np.float64), y.astype(np.float64)), dt)
        tol = {"f16": 1e-2, "bf16": 3e-2, "f32": 1e-5, "f64": 1e-12}[dtype]
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=tol, atol=tol)
        assert got.dtype == want.dtype


# ----------------------------------------------------------------------------- convolution

def conv_reference(lhs, rhs, dim_labels, window_strides=None, padding=None, lhs_dilation=None,
                   rhs_dilation=None, feature_group_count=1, batch_group_count=1):
    """Direct transcription: out[b, o, y] = sum over i, k of x[b', f, s] * w[o, i, k] where
    position y*stride + k*rhs_dilation - pad_lo, when a multiple of lhs_dilation, is s."""
    dn = parse_dim_labels(dim_labels)
    n = len(dn.input_spatial)
    strides, padding = window_strides or (1,) * n, padding or ((0, 0),) * n
    lhs_dil, rhs_dil = lhs_dilation or (1,) * n, rhs_dilation or (1,) * n
    x = np.transpose(lhs, (dn.input_batch, dn.input_feature) + dn.input_spatial).astype(np.float64)
    w = np.transpose(rhs, (dn.kernel_out, dn.kernel_in) + dn.kernel_spatial).astype(np.float64)
    B, O, I = x.shape[0], w.shape[0], w.shape[1]
    S, K = x.shape[2:], w.shape[2:]
    Y = [window_output_size(S[j], K[j], strides[j], *padding[j], lhs_dil[j], rhs_dil[j]) for j in range(n)]
    out = np.zeros([B // batch_group_count, O] + Y)
    for b, o in itertools.product(range(B // batch_group_count), range(O)):
        f_group = o // (O // feature_group_count)
        batch = o // (O // batch_group_count) * (B // batch_group_count) + b
        for y in itertools.product(*map(range, Y)):
            total = 0.0
            for i, k in itertools.product(range(I), itertools.product(*map(range, K))):
                p = [y[j] * strides[j] + k[j] * rhs_dil[j] - padding[j][0] for j in range(n)]
                if any(pj % lhs_dil[j] or not 0 <= pj // lhs_dil[j] < S[j] for j, pj in enumerate(p)):
                    continue
                s = tuple(pj // lhs_dil[j] for j, pj in enumerate(p))
                total += x[(batch, f_group * I + i) + s] * w[(o, i) + k]
            out[(b, o) + y] = total
    return np.transpose(out, np.argsort((dn.output_batch, dn.output_feature) + dn.output_spatial))


@pytest.mark.parametrize("case", sorted(CONVS))
def test_convolution_matches_naive_loop(case):
    lshape, rshape, attrs = CONVS[case]
    x, w = sample("f64", lshape, 3), sample("f64", rshape, 4)
    got = run_op("convolution", x, w, attrs=attrs)
    want = conv_reference(x, w, **attrs)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", ["s8", "s32", "f32", "bf16"])
def test_convolution_dtypes(dtype):
    lshape, rshape, attrs = CONVS["2d_nhwc"]
    x, w = sample(dtype, lshape, 5), sample(dtype, rshape, 6)
    got = run_op("convolution", x, w, attrs=attrs, dtype=dtype)
    dt = dtypes.from_any(dtype)
    want = conv_reference(x, w, **attrs)
    if dt.is_integer:
        exact(got, want.astype(np.int64).astype(dt.storage))       # wraps modulo 2^bits
    else:
        np.testing.assert_allclose(got, want, rtol=2e-2 if dtype == "bf16" else 1e-5, atol=0.1 if dtype == "bf16" else 1e-5)


def test_convolution_1d_matches_numpy_correlate():
    x, w = sample("f64", (10,), 7), sample("f64", (3,), 8)
    got = run_op("convolution", x.reshape(1, 1, 10), w.reshape(1, 1, 3), attrs=dict(dim_labels="bf0_oi0->bf0"))
    np.testing.assert_allclose(got.reshape(-1), np.correlate(x, w, mode="valid"), rtol=1e-12)


# ----------------------------------------------------------------------------- gradient forms

@pytest.mark.parametrize("xs,ws,strides,padding,rhs_dil,groups", CONV_GRADIENT_CASES)
def test_gradient_convolutions_are_adjoints(xs, ws, strides, padding, rhs_dil, groups):
    # Integer-valued float64 data: every sum is exact, so the identities hold exactly.
    rng = np.random.default_rng(9)
    x = rng.integers(-3, 4, xs).astype(np.float64)
    w = rng.integers(-3, 4, ws).astype(np.float64)
    y = run_op("convolution", x, w, attrs=forward_conv_attrs(strides, padding, rhs_dil, groups))
    g = rng.integers(-3, 4, y.shape).astype(np.float64)
    dw = run_op("convolution", x, g,
                attrs=filter_gradient_attrs(xs[2:], ws[2:], g.shape[2:], strides, padding, rhs_dil, groups))
    assert dw.shape == w.shape
    assert np.sum(y * g) == np.sum(w * dw)
    if groups == 1:
        flipped = np.flip(w, tuple(range(2, w.ndim)))
        dx = run_op("convolution", g, flipped,
                    attrs=input_gradient_attrs(xs[2:], ws[2:], g.shape[2:], strides, padding, rhs_dil))
        assert dx.shape == x.shape
        assert np.sum(y * g) == np.sum(x * dx)
