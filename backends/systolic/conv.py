"""Convolution on the matrix unit as shifted matmuls, without im2col.

For a stride-1, undilated, ungrouped 2-D convolution, stack the zero-padded images of
the batch into one tall image of B*Hp rows of Wp pixels and flatten it: pixel (y, x) is
row y*Wp + x of a matrix with the C input channels as lanes. Output pixel (y, x) is

    out[y*Wp + x] = sum over kernel positions (i, j) of  in[(y + i)*Wp + (x + j)] @ K[i, j]

so the kernel position (i, j) contributes the *same* matrix of input rows shifted by
i*Wp + j rows: one MATMUL per kernel position (and k/n tile) over a contiguous range of
unified-buffer rows, all accumulating into the same accumulator rows. No patch matrix
is built; the input is read from host memory once. The rows whose x >= OW (or whose
window crosses into the next image) are computed and dropped: only valid rows are
stored. XLA on TPUs lowers convolutions to the MXU the same way.

Chunks are ranges of output rows of the tall image: `rows` rows (T = rows*Wp MATMUL
rows, at most half the accumulators) need rows + KH - 1 padded input rows in the UB.

`prefer_shifted(conv)` says which convolutions take this path: stride-1 2-D ones whose
input is deep enough that streaming every padded pixel once per kernel position costs
less than building im2col patches in host memory (`estimated_cycles`). The rest are
expanded to im2col + dot_general by the pipeline (SystolicConvolutionExpander).
"""
from __future__ import annotations

import math

from ...compiler import ops
from ...compiler.ir import Instruction
from ...compiler.passes.convolution_expander import expand_convolution
from ...compiler.rewrite import Pat, RewritePass, Rule, RuleTable
from .emitter import pipelined
from .tiling import k_pieces
from .views import View


def supported(conv: Instruction) -> bool:
    a = conv.attrs
    dn = ops.parse_dim_labels(a["dim_labels"])
    n = len(dn.input_spatial)
    strides, padding, lhs_dil, rhs_dil = ops.conv_window(a, n)
    return (n == 2 and all(s == 1 for s in strides) and all(d == 1 for d in lhs_dil + rhs_dil)
            and a["feature_group_count"] == 1 and a["batch_group_count"] == 1
            and all(lo >= 0 and hi >= 0 for lo, hi in padding) and conv.shape.size > 0
            and conv.operands[1].shape.size > 0)


def estimated_cycles(conv: Instruction, config) -> tuple[float, float]:
    """(shifted matmuls, im2col + dot) cycles per output-feature tile, roughly: rows the
    array streams, plus for im2col the patch matrix written and read back through host
    memory. Shifted matmuls stream every padded pixel once per kernel position with
    K = C; im2col streams every output pixel once with K = KH*KW*C packed densely."""
    dn = ops.parse_dim_labels(conv.attrs["dim_labels"])
    x, k = conv.operands[0].shape.dims, conv.operands[1].shape.dims
    b, c = x[dn.input_batch], x[dn.input_feature]
    taps = math.prod(k[d] for d in dn.kernel_spatial)
    padding = ops.conv_window(conv.attrs, len(dn.input_spatial))[1]
    padded = math.prod(x[d] + lo + hi for d, (lo, hi) in zip(dn.input_spatial, padding))
    out = math.prod(conv.shape.dims[d] for d in dn.output_spatial)
    shifted = taps * math.ceil(c / config.rows) * b * padded
    patch_bytes = b * out * taps * c * 4
    im2col = math.ceil(taps * c / config.rows) * b * out + 2 * patch_bytes / config.host_bytes_per_cycle
    return shifted, im2col


def prefer_shifted(conv: Instruction) -> bool:
    """Shifted matmuls when supported and cheaper (`estimated_cycles`): deep inputs,
    whose im2col patches would be large; shallow ones (a 1-channel image) fill more of
    the array through im2col. The machine is the configured one (default_config)."""
    if not supported(conv):
        return False
    from .executable import default_config
    shifted, im2col = estimated_cycles(conv, default_config())
    return shifted <= im2col


def _expand_unless_shifted(ctx, conv):
    return None if prefer_shifted(conv) else expand_convolution(ctx, conv)


class SystolicConvolutionExpander(RewritePass):
    name = "systolic-convolution-expander"
    table = RuleTable([
        # Deep stride-1 2-D convolutions run as shifted matmuls (module docstring); the
        # others become im2col + dot_general as on the CPU (`prefer_shifted`).
        Rule("convolution_to_gemm_unless_shifted", Pat("convolution", name="conv"), _expand_unless_shifted),
    ])


def _views(lw, conv: Instruction):
    """Input [B, H, W, C], kernel [KH, KW, I, O], output [B, OH, OW, O], and the copy to
    make at the end when the output's features are not contiguous (an NCHW result is
    computed NHWC into a scratch region, then transposed into place)."""
    dn = ops.parse_dim_labels(conv.attrs["dim_labels"])
    x = lw.view_of(conv.operands[0]).transpose((dn.input_batch,) + dn.input_spatial + (dn.input_feature,))
    k = lw.view_of(conv.operands[1]).transpose(dn.kernel_spatial + (dn.kernel_in, dn.kernel_out))
    final = lw.view_of(lw.epilogues[conv].end)
    perm = (dn.output_batch,) + dn.output_spatial + (dn.output_feature,)
    out = final.transpose(perm)
    if out.lanes_contiguous:
        return x, k, out, None
    scratch = View.row_major(lw.image.region(final.rows * final.cols * 4), out.dims)
    inverse = tuple(perm.index(d) for d in range(len(perm)))
    return x, k, scratch, (scratch.transpose(inverse), final)


def lower_convolution(lw, conv: Instruction) -> None:
    from .gemm import WeightStream, load_bias_rows
    from .vector import load_block, store_block
    cfg, e, L = lw.config, lw.emitter, lw.lanes
    x, k, out, transpose_after = _views(lw, conv)
    B, H, W, C = x.dims
    KH, KW, _, O = k.dims
    (plh, phh), (plw, phw) = ops.conv_window(conv.attrs, 2)[1]
    Hp, Wp = H + plh + phh, W + plw + phw
    OH, OW = out.dims[1], out.dims[2]
    if not (k.lanes_contiguous or k.strides[2] == k.esize):
        from .gemm import _materialized
        k = _materialized(lw, k)
    transposed = not k.lanes_contiguous          # kernel stored [.., O, I]: read tiles transposed
    blocks = [(c0, min(L, C - c0)) for c0 in range(0, C, L)]
    pieces = k_pieces(C, cfg.rows, L)
    n_tiles = [(n0, min(cfg.cols, O - n0)) for n0 in range(0, O, cfg.cols)]
    tall = B * Hp - KH + 1                          # output rows of the tall image
    rows = max(1, min(tall, (cfg.acc_rows // 2) // Wp, (lw.ub.rows // 4) // (Wp * (len(blocks) + 1)) - KH))
    if rows * Wp > 65535:
        rows = max(1, 65535 // Wp)
    epi = lw.epilogues[conv]
    bias_rows = load_bias_rows(lw, epi, n_tiles)
    weights = WeightStream(lw)
    chunks = [(y0, min(rows, tall - y0)) for y0 in range(0, tall, rows)]
    chunks = [c for c in chunks if _valid_rows(c, Hp, OH)]
    for _ in chunks:
        for n0, width in n_tiles:
            for i in range(KH):
                for j in range(KW):
                    for k0, depth in pieces:
                        weights.tiles.append(_weight_tile(k, i, j, k0, depth, n0, width, transposed))
    state = {"matmul": 0, "region": 0}
    in_rows = lambda count: (count + KH - 1) * Wp + KW - 1

    def load(chunk):
        y0, count = chunk
        n_in = in_rows(count)
        base = lw.ub.alloc(n_in * len(blocks))
        for bi, (c0, w) in enumerate(blocks):
            _zero(lw, base + bi * n_in, n_in)
            for yt in range(y0, min(y0 + count + KH - 1, B * Hp)):
                b, yp = divmod(yt, Hp)
                y = yp - plh
                if 0 <= y < H:
                    image_row = x.with_(x.base + b * x.strides[0] + y * x.strides[1], (W, C), x.strides[2:])
                    load_block(lw, image_row, 0, W, c0, w, base + bi * n_in + (yt - y0) * Wp + plw)
        return base

    def compute(chunk, base):
        y0, count = chunk
        n_in, T = in_rows(count), count * Wp
        for j_n, (n0, width) in enumerate(n_tiles):
            acc = state["region"] * (cfg.acc_rows // 2)
            state["region"] ^= 1
            first = True
            for i in range(KH):
                for j in range(KW):
                    for k0, depth in pieces:
                        weights.before_matmul(state["matmul"])
                        state["matmul"] += 1
                        e.emit("MATMUL", ub=base + (k0 // L) * n_in + i * Wp + j, acc=acc, rows=T,
                               lane=k0 % L, mode="overwrite" if first else "accumulate", swap=1)
                        first = False
            tile = lw.ub.alloc(T)
            bias = dict(bias=1, bias_ub=bias_rows + j_n) if bias_rows is not None else {}
            e.emit("ACTIVATE", acc=acc, ub=tile, rows=T, fn=epi.fn, scale=epi.scale, **bias)
            for yt in range(y0, y0 + count):
                b, y = divmod(yt, Hp)
                if y < OH:
                    out_row = out.with_(out.base + b * out.strides[0] + y * out.strides[1], (OW, O), out.strides[2:])
                    store_block(lw, tile + (yt - y0) * Wp, out_row, 0, OW, n0, width)
            lw.ub.release(tile, T)
        lw.ub.release(base, n_in * len(blocks))

    pipelined(chunks, load, compute)
    if bias_rows is not None:
        lw.ub.release(bias_rows, len(n_tiles))
    if transpose_after is not None:
        from .vector import copy
        copy(lw, *transpose_after)


def _valid_rows(chunk, Hp, OH) -> bool:
    y0, count = chunk
    return any((yt % Hp) < OH for yt in range(y0, y0 + count))


def _zero(lw, row: int, count: int) -> None:
    for r0 in range(0, count, 4095):
        lw.emitter.emit("DMA_LOAD", host=lw.zeros, ub=row + r0, rows=min(4095, count - r0), cols=lw.lanes,
                        stride=0, fmt="f32")


def _weight_tile(k, i, j, k0, depth, n0, width, transposed) -> dict:
    base = k.base + i * k.strides[0] + j * k.strides[1]
    if transposed:      # rows along O, elements along I
        addr, stride = base + n0 * k.strides[3] + k0 * k.esize, k.strides[3]
    else:               # rows along I, elements along O
        addr, stride = base + k0 * k.strides[2] + n0 * k.esize, k.strides[2]
    return dict(src="host", addr=addr, k=depth, n=width, stride=stride, transpose=int(transposed), fmt=k.fmt)


def conv_tiles(conv: Instruction, config) -> int:
    """MATMULs of one convolution (for tests and reports)."""
    dn = ops.parse_dim_labels(conv.attrs["dim_labels"])
    kh, kw = (conv.operands[1].shape.dims[d] for d in dn.kernel_spatial)
    c = conv.operands[1].shape.dims[dn.kernel_in]
    o = conv.operands[1].shape.dims[dn.kernel_out]
    return kh * kw * len(k_pieces(c, config.rows, config.lanes)) * math.ceil(o / config.cols)
