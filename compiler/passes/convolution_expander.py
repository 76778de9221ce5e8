"""Convolution expander: every `convolution` becomes im2col data movement plus one
`dot_general`, so a backend with a GEMM (the CPU backend) needs no convolution kernel.

    x   = transpose(lhs) to [B, S..., F]             feature last: the GEMM's K is contiguous
    x   = pad(x, 0, low=lo, high=hi, interior=lhs_dilation - 1)   transposed conv, cropping
    tap = slice(x, start=k*rhs_dilation, step=window_strides)      one per kernel position k
    p   = concatenate(taps, last dim) -> reshape [B, Y..., T, G, I]   (T = kernel positions)
    w   = transpose(rhs) to [K..., I, O] -> reshape [T, I, G, O/G]
    out = dot_general(p, w, contracting (T, I), batch G) -> [B, Y..., O] -> output layout

Groups follow StableHLO (as the interpreter does, backends/interpreter/compute.py):
feature_group_count G cuts the input features and the kernel's output features into G
contiguous groups; batch_group_count G cuts the input batch instead, p is then
reshaped [G, B/G, Y..., T, F]. With G = 1 the dot has no batch dim: one GEMM of
M = B*Y..., K = T*I, N = O.

Every intermediate is an ordinary op with the interpreter's semantics, so the expanded
program computes what the convolution computes (the summation order of the contraction
aside, which dot_general leaves unspecified). A convolution with an empty output, or an
empty kernel (no window positions or no input features), is a broadcast zero.

A backend that computes some convolutions better itself passes `keep` (the CPU backend:
its implicit GEMM, backends/cpu/conv_gemm.py); those are left as they are.
"""
from __future__ import annotations

import itertools
from typing import Callable

from .. import ops
from ..ir import Instruction, Shape
from ..rewrite import Pat, RewriteContext, RewritePass, Rule, RuleTable


def expand_convolution(ctx: RewriteContext, conv: Instruction) -> Instruction:
    a = conv.attrs
    lhs, rhs = conv.operands
    dn = ops.parse_dim_labels(a["dim_labels"])
    n = len(dn.input_spatial)
    strides, padding, lhs_dil, rhs_dil = ops.conv_window(a, n)
    fgc, bgc = a["feature_group_count"], a["batch_group_count"]
    dtype = conv.shape.dtype
    kernel = [rhs.shape.dims[d] for d in dn.kernel_spatial]
    out_spatial = [conv.shape.dims[d] for d in dn.output_spatial]
    if conv.shape.size == 0 or rhs.shape.size == 0:      # nothing to compute, or nothing to sum
        return ctx.splat(0, conv.shape)

    x = ctx.emit("transpose", [lhs], {"permutation": (dn.input_batch,) + dn.input_spatial + (dn.input_feature,)})
    if any(lo or hi for lo, hi in padding) or any(d > 1 for d in lhs_dil):
        zero = ctx.constant(0, dtype)
        x = ctx.emit("pad", [x, zero], {
            "edge_padding_low": (0,) + tuple(lo for lo, _ in padding) + (0,),
            "edge_padding_high": (0,) + tuple(hi for _, hi in padding) + (0,),
            "interior_padding": (0,) + tuple(d - 1 for d in lhs_dil) + (0,)})
    B, F = x.shape.dims[0], x.shape.dims[-1]
    taps = [_tap(ctx, x, k, strides, rhs_dil, out_spatial) for k in itertools.product(*map(range, kernel))]
    T = len(taps)
    patches = taps[0] if T == 1 else ctx.emit("concatenate", taps, {"dimension": n + 1})

    w = ctx.emit("transpose", [rhs], {"permutation": dn.kernel_spatial + (dn.kernel_in, dn.kernel_out)})
    I, O = rhs.shape.dims[dn.kernel_in], rhs.shape.dims[dn.kernel_out]
    G = fgc * bgc
    Y = tuple(out_spatial)
    if G == 1:
        p = ctx.emit("reshape", [patches], shape=Shape(dtype, (B,) + Y + (T, F)))
        w = ctx.emit("reshape", [w], shape=Shape(dtype, (T, I, O)))
        out = ctx.emit("dot_general", [p, w], {"lhs_contracting_dims": (n + 1, n + 2),
                                               "rhs_contracting_dims": (0, 1)})
    else:
        w = ctx.emit("reshape", [w], shape=Shape(dtype, (T, I, G, O // G)))
        if fgc > 1:     # [B, Y..., T, G, I], batch dim n + 2
            p = ctx.emit("reshape", [patches], shape=Shape(dtype, (B,) + Y + (T, G, I)))
            dims = {"lhs_batching_dims": (n + 2,), "lhs_contracting_dims": (n + 1, n + 3)}
        else:           # [G, B/G, Y..., T, F], batch dim 0
            p = ctx.emit("reshape", [patches], shape=Shape(dtype, (G, B // G) + Y + (T, F)))
            dims = {"lhs_batching_dims": (0,), "lhs_contracting_dims": (n + 2, n + 3)}
        out = ctx.emit("dot_general", [p, w], {**dims, "rhs_batching_dims": (2,), "rhs_contracting_dims": (0, 1)})
        # out: [G, B', Y..., O/G] -> [B', Y..., G, O/G] -> [B', Y..., O]
        out = ctx.emit("transpose", [out], {"permutation": tuple(range(1, n + 2)) + (0, n + 2)})
        out = ctx.emit("reshape", [out], shape=Shape(dtype, out.shape.dims[:n + 1] + (O,)))
    # out is [b, y..., f]; put each dim where the output labels say.
    where = {dn.output_batch: 0, dn.output_feature: n + 1, **{d: 1 + i for i, d in enumerate(dn.output_spatial)}}
    perm = tuple(where[d] for d in range(n + 2))
    if perm != tuple(range(n + 2)):
        out = ctx.emit("transpose", [out], {"permutation": perm})
    return out


def _tap(ctx: RewriteContext, x: Instruction, k, strides, rhs_dil, out_spatial) -> Instruction:
    """The input elements kernel position `k` multiplies, for every output position:
    [B, Y..., F] (a strided slice of the padded, dilated input)."""
    start = [kj * d for kj, d in zip(k, rhs_dil)]
    limit = [s + (y - 1) * st + 1 for s, y, st in zip(start, out_spatial, strides)]
    dims = x.shape.dims
    return ctx.emit("slice", [x], {"start_indices": (0, *start, 0), "limit_indices": (dims[0], *limit, dims[-1]),
                                   "strides": (1, *strides, 1)})


class ConvolutionExpander(RewritePass):
    """`keep(conv)`: convolutions the backend computes itself (left alone)."""
    name = "convolution-expander"

    def __init__(self, keep: Callable[[Instruction], bool] | None = None):
        def expand(ctx: RewriteContext, conv: Instruction) -> Instruction | None:
            return None if keep is not None and keep(conv) else expand_convolution(ctx, conv)
        super().__init__(RuleTable([
            # convolution = im2col patches . reshaped kernel (module docstring).
            Rule("convolution_to_gemm", Pat("convolution", name="conv"), expand),
        ]))
