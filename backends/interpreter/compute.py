"""dot_general and convolution.

Both accumulate in the operand type, like XLA on CPU: float32 products are summed in
float32 (NumPy's matmul / BLAS), integer products wrap.
"""
from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ...compiler.ops import conv_window, parse_dim_labels
from .data import pad
from .table import rule


@rule("dot_general")
def _dot_general(frame, instr, lhs, rhs):
    a = instr.attrs
    lb, rb = list(a["lhs_batching_dims"]), list(a["rhs_batching_dims"])
    lc, rc = list(a["lhs_contracting_dims"]), list(a["rhs_contracting_dims"])
    lf = [d for d in range(lhs.ndim) if d not in lb + lc]
    rf = [d for d in range(rhs.ndim) if d not in rb + rc]
    batch = [lhs.shape[d] for d in lb]
    m, k, n = (math.prod(lhs.shape[d] for d in lf), math.prod(lhs.shape[d] for d in lc),
               math.prod(rhs.shape[d] for d in rf))
    # (batch, m, k) @ (batch, k, n): one batched matmul whatever the dimension numbers.
    x = np.transpose(lhs, lb + lf + lc).reshape([math.prod(batch), m, k])
    y = np.transpose(rhs, rb + rc + rf).reshape([math.prod(batch), k, n])
    out = np.matmul(x, y) if k else np.zeros((x.shape[0], m, n), lhs.dtype)
    return out.reshape(batch + [lhs.shape[d] for d in lf] + [rhs.shape[d] for d in rf])


# ----------------------------------------------------------------------------- convolution

@rule("convolution")
def _convolution(frame, instr, lhs, rhs):
    """StableHLO convolution. Groups follow StableHLO's definition: with
    feature_group_count G the input features and the kernel's output features are cut
    into G contiguous groups, group g of the output uses group g of the input; with
    batch_group_count G the same holds for the input batch instead of its features."""
    a = instr.attrs
    dn = parse_dim_labels(a["dim_labels"])
    n = len(dn.input_spatial)
    strides, padding, lhs_dil, rhs_dil = conv_window(a, n)
    fgc, bgc = a["feature_group_count"], a["batch_group_count"]
    x = np.transpose(lhs, (dn.input_batch, dn.input_feature) + dn.input_spatial)   # b f s...
    w = np.transpose(rhs, (dn.kernel_out, dn.kernel_in) + dn.kernel_spatial)       # o i k...
    # Dilate the input (lhs_dilation holes are zeros) and pad it (negative = crop).
    x = pad(x, np.zeros((), x.dtype), (0, 0) + tuple(lo for lo, _ in padding),
            (0, 0) + tuple(hi for _, hi in padding), (0, 0) + tuple(d - 1 for d in lhs_dil))
    groups = fgc * bgc
    xg = _split_groups(x, fgc, bgc)                                 # g b i s...
    wg = w.reshape((groups, w.shape[0] // groups) + w.shape[1:])   # g o i k...
    out_batch, out_features = x.shape[0] // bgc, w.shape[0]
    out_spatial = [instr.shape.dims[d] for d in dn.output_spatial]
    if 0 in out_spatial or math.prod(wg.shape[2:]) == 0 or out_batch * out_features == 0:
        out = np.zeros([out_batch, out_features] + out_spatial, dtype=lhs.dtype)
    else:
        out = _grouped_conv(xg, wg, strides, rhs_dil).reshape([out_batch, out_features] + out_spatial)
    # out is b f s...; put its dims where the output labels say.
    return np.transpose(out, np.argsort((dn.output_batch, dn.output_feature) + dn.output_spatial))


def _split_groups(x: np.ndarray, fgc: int, bgc: int) -> np.ndarray:
    """b f s... -> g b' f' s... (contiguous groups of features, or of the batch)."""
    b, f = x.shape[:2]
    if fgc > 1:
        return np.swapaxes(x.reshape((b, fgc, f // fgc) + x.shape[2:]), 0, 1)
    return x.reshape((bgc, b // bgc) + x.shape[1:])


def _grouped_conv(xg, wg, strides, rhs_dil) -> np.ndarray:
    """out[b, g, o, y...] = sum over i, k... of xg[g, b, i, y*stride + k*dilation] * wg[g, o, i, k]."""
    n = len(strides)
    kernel = wg.shape[3:]
    extent = [(k - 1) * d + 1 for k, d in zip(kernel, rhs_dil)]
    windows = sliding_window_view(xg, extent, axis=tuple(range(3, 3 + n)))   # g b i y... k...
    windows = windows[(slice(None),) * 3 + tuple(slice(None, None, s) for s in strides)
                      + tuple(slice(None, None, d) for d in rhs_dil)]
    spatial, taps = "pqrstuvw"[:n], "PQRSTUVW"[:n]      # output positions, kernel taps
    return np.einsum(f"gbi{spatial}{taps},goi{taps}->bgo{spatial}", windows, wg, optimize=True)
