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

Packed mode is the same with the kernel positions packed into K: kernel position t's
shifted rows are DMA'd from the zero-padded input (materialized in host memory) into
lanes [t*C, (t+1)*C) of the chunk's rows -- im2col built by DMA inside the unified
buffer, one DMA per kernel position and chunk -- and one MATMUL per k tile of
K = KH*KW*C covers every position. It streams KH*KW times fewer rows than shifted mode
when C is small (a 1-channel image fills 9 of the array's rows instead of 1).

`choose_mode(conv)` picks shifted, packed, or im2col + dot_general (the CPU's expansion,
for strided, dilated or grouped convolutions, or when it is cheaper) by
`estimated_cycles`; the pipeline's SystolicConvolutionExpander expands the im2col ones.
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


# What one DMA instruction costs beyond its bytes in these estimates (issue, descriptor,
# and the dependency waits that many small transfers add up to).
DMA_OVERHEAD_CYCLES = 8


def _shape(conv: Instruction):
    """(batch, channels, kernel positions, padded pixels per image, output pixels per
    image, image rows, output rows)."""
    dn = ops.parse_dim_labels(conv.attrs["dim_labels"])
    x, k = conv.operands[0].shape.dims, conv.operands[1].shape.dims
    padding = ops.conv_window(conv.attrs, len(dn.input_spatial))[1]
    return (x[dn.input_batch], x[dn.input_feature], math.prod(k[d] for d in dn.kernel_spatial),
            math.prod(x[d] + lo + hi for d, (lo, hi) in zip(dn.input_spatial, padding)),
            math.prod(conv.shape.dims[d] for d in dn.output_spatial),
            x[dn.input_spatial[0]] if dn.input_spatial else 1,
            conv.shape.dims[dn.output_spatial[0]] if dn.output_spatial else 1)


def estimated_cycles(conv: Instruction, config) -> dict[str, float]:
    """Rough cycles per output-feature tile of each way to run a convolution: rows the
    array streams, host bytes moved at the host bandwidth, and DMA instructions (per image
    row: the image read, the padding copy, im2col's strided slices, the stores).

    shifted   every padded pixel once per kernel position, K = C (input read once)
    packed    every padded pixel once, K = KH*KW*C packed in the UB lanes (input read
              once per kernel position, by DMA into lane offsets)
    im2col    every output pixel once, K = KH*KW*C, the patch matrix written to and read
              back from host memory (compiler/passes/convolution_expander.py)
    """
    b, c, taps, padded, out, h, oh = _shape(conv)
    bw, r, dma = config.host_bytes_per_cycle, config.rows, DMA_OVERHEAD_CYCLES
    return {"shifted": taps * math.ceil(c / r) * b * padded + b * padded * c * 4 / bw + dma * b * (h + oh),
            "packed": (math.ceil(taps * c / r) * b * padded + (taps + 2) * b * padded * c * 4 / bw
                       + dma * b * (2 * h + oh)),
            "im2col": (math.ceil(taps * c / r) * b * out + (2 * taps + 2) * b * out * c * 4 / bw
                       + dma * b * (2 * taps * oh + 2 * h))}


def choose_mode(conv: Instruction, config=None) -> str:
    """The cheapest way (`estimated_cycles`) among those that apply: shifted and packed
    need a stride-1, undilated, ungrouped 2-D convolution. The machine is `config`, by
    default the configured one (default_config)."""
    if not supported(conv):
        return "im2col"
    if config is None:
        from .executable import default_config
        config = default_config()
    costs = estimated_cycles(conv, config)
    return min(costs, key=costs.get)


def _expand_if_im2col(ctx, conv):
    return expand_convolution(ctx, conv) if choose_mode(conv) == "im2col" else None


class SystolicConvolutionExpander(RewritePass):
    name = "systolic-convolution-expander"
    table = RuleTable([
        # Convolutions the code generator runs as shifted or packed matmuls stay; the
        # others become im2col + dot_general as on the CPU (`choose_mode`).
        Rule("convolution_to_gemm_unless_direct", Pat("convolution", name="conv"), _expand_if_im2col),
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


class _Conv:
    """The geometry of one convolution on the tall flattened padded image."""

    def __init__(self, lw, conv: Instruction, mode: str):
        self.lw, self.mode = lw, mode
        self.x, self.k, self.out, self.transpose_after = _views(lw, conv)
        self.B, self.H, self.W, self.C = self.x.dims
        self.KH, self.KW, _, self.O = self.k.dims
        (self.plh, phh), (self.plw, phw) = ops.conv_window(conv.attrs, 2)[1]
        self.Hp, self.Wp = self.H + self.plh + phh, self.W + self.plw + phw
        self.OH, self.OW = self.out.dims[1], self.out.dims[2]
        cfg, L = lw.config, lw.lanes
        self.K = self.C if mode == "shifted" else self.KH * self.KW * self.C      # lanes of one input row
        self.blocks = [(c0, min(L, self.K - c0)) for c0 in range(0, self.K, L)]
        self.pieces = k_pieces(self.K, cfg.rows, L)
        self.n_tiles = [(n0, min(cfg.cols, self.O - n0)) for n0 in range(0, self.O, cfg.cols)]
        self.tall = self.B * self.Hp - self.KH + 1                # output rows of the tall image
        per_row = self.Wp * (len(self.blocks) + 1)
        rows = min(self.tall, (cfg.acc_rows // 2) // self.Wp, (lw.ub.rows // 4) // per_row - self.KH)
        self.rows = max(1, min(rows, 65535 // self.Wp))

    def chunks(self):
        chunks = [(y0, min(self.rows, self.tall - y0)) for y0 in range(0, self.tall, self.rows)]
        return [c for c in chunks if _valid_rows(c, self.Hp, self.OH)]

    def in_rows(self, count: int) -> int:
        """UB rows one block of a chunk's input takes."""
        if self.mode == "shifted":
            return (count + self.KH - 1) * self.Wp + self.KW - 1
        return count * self.Wp

    def taps(self):
        return [(i, j) for i in range(self.KH) for j in range(self.KW)]

    def matmuls(self):
        """(row offset, k0, depth, kernel position) of each MATMUL of one n tile."""
        if self.mode == "shifted":
            return [(i * self.Wp + j, k0, d, (i, j)) for i, j in self.taps() for k0, d in self.pieces]
        return [(0, k0, d, None) for k0, d in self.pieces]

    def weight_tile(self, where, k0, depth, n0, width) -> dict:
        k = self.k
        if where is not None:           # shifted: the kernel position's [I, O] slice
            i, j = where
            base, row_stride = k.base + i * k.strides[0] + j * k.strides[1], k.strides[2]
        else:                           # packed: rows of the [KH*KW*I, O] matrix
            base, row_stride = k.base, k.strides[2]
        return dict(src="host", addr=base + k0 * row_stride + n0 * k.esize, k=depth, n=width,
                    stride=row_stride, transpose=0, fmt=k.fmt)


def lower_convolution(lw, conv: Instruction) -> None:
    """Shifted or packed matmuls over the tall flattened padded image (module docstring)."""
    from .gemm import WeightStream, load_bias_rows
    from .vector import store_block
    costs = estimated_cycles(conv, lw.config)      # the pipeline kept it: shifted or packed
    mode = "packed" if choose_mode(conv, lw.config) == "packed" or costs["packed"] < costs["shifted"] else "shifted"
    g = _Conv(lw, conv, mode)
    _prepare_operands(lw, g)
    cfg, e, L = lw.config, lw.emitter, lw.lanes
    epi = lw.epilogues[conv]
    bias_rows = load_bias_rows(lw, epi, g.n_tiles)
    weights = WeightStream(lw)
    chunks = g.chunks()
    for _ in chunks:
        for n0, width in g.n_tiles:
            for _, k0, depth, where in g.matmuls():
                weights.tiles.append(g.weight_tile(where, k0, depth, n0, width))
    state = {"matmul": 0, "region": 0}

    def load(chunk):
        base = lw.ub.alloc(g.in_rows(chunk[1]) * len(g.blocks))
        (_load_shifted if g.mode == "shifted" else _load_packed)(lw, g, chunk, base)
        return base

    def compute(chunk, base):
        y0, count = chunk
        n_in, T = g.in_rows(count), count * g.Wp
        for j_n, (n0, width) in enumerate(g.n_tiles):
            acc = state["region"] * (cfg.acc_rows // 2)
            state["region"] ^= 1
            for m, (offset, k0, depth, _) in enumerate(g.matmuls()):
                weights.before_matmul(state["matmul"])
                state["matmul"] += 1
                e.emit("MATMUL", ub=base + (k0 // L) * n_in + offset, acc=acc, rows=T, lane=k0 % L,
                       mode="accumulate" if m else "overwrite", swap=1)
            tile = lw.ub.alloc(T)
            bias = dict(bias=1, bias_ub=bias_rows + j_n) if bias_rows is not None else {}
            e.emit("ACTIVATE", acc=acc, ub=tile, rows=T, fn=epi.fn, scale=epi.scale, **bias)
            for yt in range(y0, y0 + count):
                b, y = divmod(yt, g.Hp)
                if y < g.OH:
                    out = g.out
                    out_row = out.with_(out.base + b * out.strides[0] + y * out.strides[1], (g.OW, g.O), out.strides[2:])
                    store_block(lw, tile + (yt - y0) * g.Wp, out_row, 0, g.OW, n0, width)
            lw.ub.release(tile, T)
        lw.ub.release(base, n_in * len(g.blocks))

    pipelined(chunks, load, compute)
    if bias_rows is not None:
        lw.ub.release(bias_rows, len(g.n_tiles))
    if g.transpose_after is not None:
        from .vector import copy
        copy(lw, *g.transpose_after)


def _prepare_operands(lw, g: _Conv) -> None:
    """Kernel rows with contiguous output features (and for packed mode, the kernel as a
    [KH*KW*I, O] matrix and the zero-padded input in host memory, row-major)."""
    from .gemm import _materialized
    k = g.k
    if not k.lanes_contiguous or (g.mode == "packed" and not k.is_row_major()):
        g.k = _materialized(lw, k)
    if g.mode == "packed":
        g.padded = _padded_input(lw, g)


def _padded_input(lw, g: _Conv) -> View:
    """[B*Hp*Wp (+ KW - 1 spare rows), C] in host memory: the input inside zeros."""
    from .vector import Imm, copy, rowwise
    x = g.x
    pad_free = g.Hp == g.H and g.Wp == g.W and x.is_row_major()
    if pad_free:
        return x.reshape((g.B * g.H * g.W, g.C))
    rows = g.B * g.Hp * g.Wp
    flat = View.row_major(lw.image.region(rows * g.C * x.esize), (rows, g.C), x.esize)
    rowwise(lw, flat, [Imm(0.0)], lambda tiles, n: tiles[0])
    image = flat.reshape((g.B, g.Hp, g.Wp, g.C))
    copy(lw, x, image.slice((0, g.plh, g.plw, 0), (g.B, g.plh + g.H, g.plw + g.W, g.C), (1, 1, 1, 1)))
    return flat


def _load_shifted(lw, g: _Conv, chunk, base: int) -> None:
    """The chunk's padded input rows (and KH - 1 more), channels as lanes, zeros around."""
    from .vector import load_block
    y0, count = chunk
    n_in, x = g.in_rows(count), g.x
    for bi, (c0, w) in enumerate(g.blocks):
        _zero(lw, base + bi * n_in, n_in)
        for yt in range(y0, min(y0 + count + g.KH - 1, g.B * g.Hp)):
            b, yp = divmod(yt, g.Hp)
            y = yp - g.plh
            if 0 <= y < g.H:
                image_row = x.with_(x.base + b * x.strides[0] + y * x.strides[1], (g.W, g.C), x.strides[2:])
                load_block(lw, image_row, 0, g.W, c0, w, base + bi * n_in + (yt - y0) * g.Wp + g.plw)


def _load_packed(lw, g: _Conv, chunk, base: int) -> None:
    """The chunk's patch rows: kernel position t's input rows (the padded image shifted
    by i*Wp + j rows) into lanes [t*C, (t+1)*C), split where a lane block ends."""
    from .vector import load_block
    y0, count = chunk
    T, L, flat = count * g.Wp, lw.lanes, g.padded
    total = flat.dims[0]
    for t, (i, j) in enumerate(g.taps()):
        start = (y0 + i) * g.Wp + j
        rows = max(0, min(T, total - start))        # past the last image: only garbage rows read it
        if rows == 0:
            continue
        lane = t * g.C
        while lane < (t + 1) * g.C:
            block, offset = divmod(lane, L)
            width = min((t + 1) * g.C - lane, L - offset)
            source = flat.slice((start, lane - t * g.C), (start + rows, lane - t * g.C + width), (1, 1))
            _load_lanes(lw, source, base + block * T, offset)
            lane += width


def _load_lanes(lw, view: View, dst: int, lane: int) -> None:
    for run in view.runs(0, view.rows):
        lw.emitter.emit("DMA_LOAD", host=run.host, ub=dst + run.offset, rows=run.rows, cols=view.cols,
                        lane=lane, stride=run.stride, fmt=view.fmt)


def _valid_rows(chunk, Hp, OH) -> bool:
    y0, count = chunk
    return any((yt % Hp) < OH for yt in range(y0, y0 + count))


def _zero(lw, row: int, count: int) -> None:
    for r0 in range(0, count, 4095):
        lw.emitter.emit("DMA_LOAD", host=lw.zeros, ub=row + r0, rows=min(4095, count - r0), cols=lw.lanes,
                        stride=0, fmt="f32")


def conv_tiles(conv: Instruction, config) -> int:
    """MATMULs of one convolution (for tests and reports)."""
    dn = ops.parse_dim_labels(conv.attrs["dim_labels"])
    kh, kw = (conv.operands[1].shape.dims[d] for d in dn.kernel_spatial)
    c = conv.operands[1].shape.dims[dn.kernel_in]
    o = conv.operands[1].shape.dims[dn.kernel_out]
    return kh * kw * len(k_pieces(c, config.rows, config.lanes)) * math.ceil(o / config.cols)
