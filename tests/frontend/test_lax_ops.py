"""tessel.lax operations against naive NumPy loops: dot_general, convolution (strides,
padding, dilations, groups, layouts), reduce_window, and the thin data-movement ops."""
from __future__ import annotations

import itertools
import operator
import os

import numpy as np
import pytest

from tessel.frontend import core, lax_ops
from tessel.frontend import numpy_api as tnp

from tracing import run, trace

THIS_FILE = os.path.basename(__file__)
RNG = np.random.default_rng(0)


def first_instr(fn, opcode, *args):
    module, _ = trace(fn, *args)
    return next(i for i in module.entry.instructions if i.opcode == opcode)


def normal(*shape, dtype=np.float64):
    return RNG.normal(size=shape).astype(dtype)


# ----------------------------------------------------------------------------- dot_general

@pytest.mark.parametrize("lhs_shape, rhs_shape, dn, spec", [
    ((3, 4), (4, 5), (([1], [0]), ([], [])), "ij,jk->ik"),
    ((2, 3, 4), (2, 4, 5), (([2], [1]), ([0], [0])), "bij,bjk->bik"),
    ((4, 3), (5, 4), (([0], [1]), ([], [])), "ji,kj->ik"),
    ((2, 3, 4, 6), (6, 2, 4), (([3, 2], [0, 2]), ([0], [1])), "bikl,lbk->bi"),
    ((3,), (3,), (([0], [0]), ([], [])), "i,i->"),
    ((2, 3), (4,), (([], []), ([], [])), "ij,k->ijk"),
])
def test_dot_general_matches_einsum(lhs_shape, rhs_shape, dn, spec):
    a, b = normal(*lhs_shape), normal(*rhs_shape)
    got = run(lambda x, y: lax_ops.dot_general(x, y, dn), a, b)[0]
    np.testing.assert_allclose(got, np.einsum(spec, a, b), rtol=1e-12)


def test_dot_general_preferred_element_type_widens_int8():
    a = RNG.integers(-128, 128, (4, 8)).astype(np.int8)
    b = RNG.integers(-128, 128, (8, 3)).astype(np.int8)
    got = run(lambda x, y: lax_ops.dot_general(x, y, (([1], [0]), ([], [])), preferred_element_type="int32"), a, b)[0]
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, a.astype(np.int32) @ b.astype(np.int32))


def test_dot_general_dtype_mismatch_names_the_line():
    with pytest.raises(TypeError, match=rf"{THIS_FILE}:\d+: dot_general operands must share a dtype"):
        trace(lambda x, y: lax_ops.dot_general(x, y, (([1], [0]), ([], []))),
              normal(2, 3), normal(3, 2, dtype=np.float32))


# ----------------------------------------------------------------------------- convolution

def dilate(x: np.ndarray, dilation, axes) -> np.ndarray:
    """Insert dilation - 1 zeros between elements along `axes`."""
    shape = list(x.shape)
    index = [slice(None)] * x.ndim
    for ax, d in zip(axes, dilation):
        shape[ax] = (x.shape[ax] - 1) * d + 1 if x.shape[ax] else 0
        index[ax] = slice(None, None, d)
    out = np.zeros(shape, x.dtype)
    out[tuple(index)] = x
    return out


def conv_reference(lhs, rhs, strides, padding, lhs_dil, rhs_dil):
    """Plain convolution (no groups), NCHW x OIHW -> NCHW, as loops over output positions."""
    n = lhs.ndim - 2
    spatial = tuple(range(2, n + 2))
    x = dilate(lhs, lhs_dil, spatial)
    x = np.pad(x, [(0, 0), (0, 0)] + [tuple(p) for p in padding])
    k = dilate(rhs, rhs_dil, spatial)
    out_sizes = [(x.shape[2 + i] - k.shape[2 + i]) // strides[i] + 1 for i in range(n)]
    out = np.zeros((lhs.shape[0], rhs.shape[0], *out_sizes), lhs.dtype)
    for pos in itertools.product(*(range(s) for s in out_sizes)):
        window = tuple(slice(p * s, p * s + kk) for p, s, kk in zip(pos, strides, k.shape[2:]))
        patch = x[(slice(None), slice(None)) + window]          # N, C, *K
        axes = list(range(1, lhs.ndim))                         # C and the window
        out[(slice(None), slice(None)) + pos] = np.tensordot(patch, k, axes=(axes, axes))
    return out


def grouped_conv_reference(lhs, rhs, strides, padding, lhs_dil, rhs_dil, fgc=1, bgc=1):
    """StableHLO's definition: split, convolve the groups, concatenate output features."""
    if fgc > 1:
        parts = zip(np.split(lhs, fgc, axis=1), np.split(rhs, fgc, axis=0))
    elif bgc > 1:
        parts = zip(np.split(lhs, bgc, axis=0), np.split(rhs, bgc, axis=0))
    else:
        parts = [(lhs, rhs)]
    return np.concatenate([conv_reference(a, b, strides, padding, lhs_dil, rhs_dil)
                           for a, b in parts], axis=1)


CONV_CASES = [  # lhs shape (NCHW), rhs shape (OIHW), strides, padding, lhs_dil, rhs_dil, fgc, bgc
    ((2, 3, 7, 6), (4, 3, 3, 2), (1, 1), "VALID", None, None, 1, 1),
    ((2, 3, 7, 6), (4, 3, 3, 3), (2, 1), "SAME", None, None, 1, 1),
    ((1, 2, 8, 9), (3, 2, 2, 4), (3, 2), "SAME", None, None, 1, 1),
    ((1, 2, 8, 9), (3, 2, 2, 4), (3, 2), "SAME_LOWER", None, None, 1, 1),
    ((2, 2, 6, 5), (2, 2, 3, 2), (1, 2), [(1, 2), (0, 3)], None, None, 1, 1),
    ((1, 2, 9, 9), (3, 2, 3, 3), (1, 1), "SAME", None, (2, 3), 1, 1),
    ((1, 2, 5, 4), (3, 2, 3, 3), (1, 1), [(2, 2), (2, 1)], (2, 3), None, 1, 1),
    ((2, 6, 7, 7), (4, 3, 3, 3), (2, 2), "SAME", None, None, 2, 1),
    ((1, 4, 6, 6), (8, 1, 3, 3), (1, 1), "VALID", None, (2, 1), 4, 1),
    ((4, 3, 5, 5), (6, 3, 2, 2), (1, 1), "VALID", None, None, 1, 2),
    ((2, 3, 11), (5, 3, 4), (3,), "SAME", None, (2,), 1, 1),
    ((1, 2, 4, 5, 3), (2, 2, 2, 3, 2), (1, 2, 1), "SAME", None, None, 1, 1),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"{c[0]}*{c[1]}/{c[2]}/{c[3]}/g{c[6]},{c[7]}")
def test_conv_matches_naive_loops(case):
    lhs_shape, rhs_shape, strides, padding, lhs_dil, rhs_dil, fgc, bgc = case
    lhs, rhs = normal(*lhs_shape), normal(*rhs_shape)
    got = run(lambda x, w: lax_ops.conv_general_dilated(
        x, w, strides, padding, lhs_dilation=lhs_dil, rhs_dilation=rhs_dil,
        feature_group_count=fgc, batch_group_count=bgc), lhs, rhs)[0]
    n = lhs.ndim - 2
    ones = (1,) * n
    if isinstance(padding, str):
        window = [(k - 1) * d + 1 for k, d in zip(rhs_shape[2:], rhs_dil or ones)]
        padding = lax_ops.padtype_to_pads(lhs_shape[2:], window, strides, padding)
    want = grouped_conv_reference(lhs, rhs, strides, padding, lhs_dil or ones, rhs_dil or ones, fgc, bgc)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_same_padding_keeps_size_at_stride_one_and_ceil_divides():
    assert lax_ops.padtype_to_pads([7, 6], [3, 4], [1, 1], "SAME") == [(1, 1), (1, 2)]
    assert lax_ops.padtype_to_pads([7], [3], [2], "SAME") == [(1, 1)]     # out 4: (4-1)*2+3-7 = 2
    assert lax_ops.padtype_to_pads([8], [3], [3], "SAME") == [(0, 1)]     # out 3: 6+3-8 = 1
    assert lax_ops.padtype_to_pads([5], [4], [1], "SAME_LOWER") == [(2, 1)]
    assert lax_ops.padtype_to_pads([5], [4], [1], "VALID") == [(0, 0)]


def test_nhwc_dimension_numbers_become_dim_labels():
    x = normal(2, 7, 6, 3)          # NHWC
    w = normal(3, 2, 3, 4)          # HWIO
    conv = first_instr(lambda a, b: lax_ops.conv_general_dilated(
        a, b, (1, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")), "convolution", x, w)
    assert conv.attrs["dim_labels"] == "b01f_01io->b01f"
    got = run(lambda a, b: lax_ops.conv_general_dilated(
        a, b, (1, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")), x, w)[0]
    pads = lax_ops.padtype_to_pads([7, 6], [3, 2], [1, 2], "SAME")
    want = conv_reference(x.transpose(0, 3, 1, 2), w.transpose(3, 2, 0, 1), (1, 2), pads, (1, 1), (1, 1))
    np.testing.assert_allclose(got, want.transpose(0, 2, 3, 1), rtol=1e-10)


@pytest.mark.parametrize("dn, rank, labels", [
    (None, 4, "bf01_oi01->bf01"),
    (None, 3, "bf0_oi0->bf0"),
    (("NCHW", "OIHW", "NCHW"), 4, "bf01_oi01->bf01"),
    (("NHWC", "HWIO", "NHWC"), 4, "b01f_01io->b01f"),
    (("NWC", "WIO", "NCW"), 3, "b0f_0io->bf0"),
    (("NCHW", "WHIO", "NHWC"), 4, "bf10_01io->b10f"),     # the kernel spec orders spatial dims
    (("NDHWC", "DHWIO", "NDHWC"), 5, "b012f_012io->b012f"),
    (((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2)), 4, "b01f_01io->b01f"),
])
def test_conv_dim_labels(dn, rank, labels):
    assert lax_ops.conv_dim_labels(dn, rank) == labels


def test_conv_bad_specs_name_the_line():
    x, w = normal(1, 4, 4, 2), normal(2, 2, 2, 3)
    with pytest.raises(TypeError, match=rf"{THIS_FILE}:\d+: conv dimension spec"):
        trace(lambda a, b: lax_ops.conv_general_dilated(a, b, (1, 1), "VALID",
                                                        dimension_numbers=("NHWW", "HWIO", "NHWC")), x, w)
    with pytest.raises(TypeError, match="lhs_dilation"):
        trace(lambda a, b: lax_ops.conv_general_dilated(a, b, (1, 1), "SAME", lhs_dilation=(2, 2),
                                                        dimension_numbers=("NHWC", "HWIO", "NHWC")), x, w)


# ----------------------------------------------------------------------------- reduce_window

def reduce_window_reference(x, init, fn, window, strides, padding):
    xp = np.pad(x, padding, constant_values=init)
    out_sizes = [(xp.shape[i] - window[i]) // strides[i] + 1 for i in range(x.ndim)]
    out = np.empty(out_sizes, x.dtype)
    for pos in itertools.product(*(range(s) for s in out_sizes)):
        patch = xp[tuple(slice(p * s, p * s + w) for p, s, w in zip(pos, strides, window))]
        acc = init
        for v in patch.flat:
            acc = fn(acc, v)
        out[pos] = acc
    return out


@pytest.mark.parametrize("computation, init, fn", [
    ("max", -np.inf, max), ("add", 0.0, operator.add), ("min", np.inf, min), ("mul", 1.0, operator.mul),
])
@pytest.mark.parametrize("window, strides, padding", [
    ((2, 2), (2, 2), "VALID"),
    ((3, 2), (1, 1), "SAME"),
    ((3, 3), (2, 2), "SAME"),
    ((1, 3), (1, 2), [(1, 0), (2, 1)]),
    ((2, 4), None, "VALID"),
])
def test_reduce_window_matches_loops(computation, init, fn, window, strides, padding):
    x = normal(5, 7)
    got = run(lambda a: lax_ops.reduce_window(a, init, computation, window, strides, padding), x)[0]
    steps = strides or (1, 1)
    pads = lax_ops.padtype_to_pads(x.shape, window, steps, padding) if isinstance(padding, str) else padding
    np.testing.assert_allclose(got, reduce_window_reference(x, init, fn, window, steps, pads), rtol=1e-12)


def test_reduce_window_computation_as_function():
    x = normal(4, 6)
    want = reduce_window_reference(x, -np.inf, max, (2, 3), (2, 3), [(0, 0), (0, 0)])
    for computation in (np.maximum, tnp.maximum, max, "maximum"):
        module, _ = trace(lambda a: lax_ops.reduce_window(a, -np.inf, computation, (2, 3), (2, 3)), x)
        reducer = module.entry.root.operands[0].attrs["to_apply"]
        assert [i.opcode for i in reducer.instructions] == ["parameter", "parameter", "maximum"]
        got = run(lambda a: lax_ops.reduce_window(a, -np.inf, computation, (2, 3), (2, 3)), x)[0]
        np.testing.assert_allclose(got, want)
    # An arbitrary scalar function is traced into its own reducer computation.
    got = run(lambda a: lax_ops.reduce_window(a, -np.inf, lambda u, v: lax_ops.select(
        core.current_context().emit("compare", [u, v], {"direction": "GT"}), u, v), (2, 3), (2, 3)), x)[0]
    np.testing.assert_allclose(got, want)


def test_reduce_window_integer_sum_with_padding():
    x = RNG.integers(-5, 5, (6, 5)).astype(np.int32)
    got = run(lambda a: lax_ops.reduce_window(a, 0, "add", (3, 3), (2, 2), "SAME"), x)[0]
    pads = lax_ops.padtype_to_pads(x.shape, (3, 3), (2, 2), "SAME")
    want = reduce_window_reference(x, 0, operator.add, (3, 3), (2, 2), pads)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, want)


def test_reduce_window_unknown_name():
    with pytest.raises(TypeError, match=rf"{THIS_FILE}:\d+: unknown reduce_window computation 'avg'"):
        trace(lambda a: lax_ops.reduce_window(a, 0.0, "avg", (2,), (1,)), normal(4))


# ----------------------------------------------------------------------------- data movement

def test_dynamic_slice_clamps_like_xla():
    x = normal(5, 6)
    i, j = np.array(3, np.int32), np.array(-2, np.int64)
    got = run(lambda a, s, t: (lax_ops.dynamic_slice(a, (s, 1), (2, 3)),
                               lax_ops.dynamic_slice(a, (s, t), (3, 2))), x, i, j)
    np.testing.assert_array_equal(got[0], x[3:5, 1:4])
    np.testing.assert_array_equal(got[1], x[2:5, 0:2])     # 3 -> 2 and -2 -> 0: clamped to fit


def test_dynamic_update_slice():
    x, u = normal(4, 5), normal(2, 2)
    got = run(lambda a, b, s: lax_ops.dynamic_update_slice(a, b, (s, 3)), x, u, np.array(1, np.int32))[0]
    want = x.copy()
    want[1:3, 3:5] = u
    np.testing.assert_array_equal(got, want)


def test_gather_with_jax_convention():
    x = normal(5, 4)
    idx = np.array([[3], [0], [4]], np.int32)
    dn = lax_ops.GatherDimensionNumbers(offset_dims=(1,), collapsed_slice_dims=(0,), start_index_map=(0,))
    got = run(lambda a, i: lax_ops.gather(a, i, dn, (1, 4)), x, idx)[0]
    np.testing.assert_array_equal(got, x[[3, 0, 4]])


def test_thin_wrappers():
    x = normal(2, 3)
    got = run(lambda a: (lax_ops.rev(a, (1,)), lax_ops.reshape(a, (3, 2)),
                         lax_ops.broadcast_in_dim(a, (4, 2, 3), (1, 2)),
                         lax_ops.slice(a, (0, 1), (2, 3), (1, 2)), lax_ops.concatenate([a, a], 0),
                         lax_ops.convert_element_type(a, "int32"),
                         lax_ops.broadcasted_iota("int32", (2, 3), 1),
                         lax_ops.clamp(-0.5, a, 0.5)), x)
    np.testing.assert_array_equal(got[0], x[:, ::-1])
    np.testing.assert_array_equal(got[1], x.reshape(3, 2))
    np.testing.assert_array_equal(got[2], np.broadcast_to(x, (4, 2, 3)))
    np.testing.assert_array_equal(got[3], x[0:2, 1:3:2])
    np.testing.assert_array_equal(got[4], np.concatenate([x, x]))
    np.testing.assert_array_equal(got[5], x.astype(np.int32))
    np.testing.assert_array_equal(got[6], np.broadcast_to(np.arange(3), (2, 3)))
    np.testing.assert_array_equal(got[7], np.clip(x, -0.5, 0.5))
