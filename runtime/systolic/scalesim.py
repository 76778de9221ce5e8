"""SCALE-Sim compatibility mode: SCALE-Sim's compute-cycle model, for comparison.

SCALE-Sim (Samajdar et al., "A Systematic Methodology for Characterizing Scalability of
DNN Accelerators using SCALE-Sim", ISPASS 2020; scale-sim-v2) costs a layer on an R x C
array in CALC mode (no memory stalls) as follows; everything here is those published
conventions, reimplemented:

- A convolution is lowered to a GEMM: ofmap pixels E_h x E_w with
  E = ceil((ifmap - filter + stride) / stride) (no padding; the topology file gives the
  already padded input), window = filter_h * filter_w * channels, and `num_filters`
  output channels. A GEMM of M x K by K x N is the convolution with ifmap M x K, a
  1 x K filter, one channel and N filters (so E_h = M, E_w = 1, window = K).
- Each dataflow maps two GEMM dimensions onto the array (Sr rows, Sc columns) and streams
  the third over time (T):
      ws: Sr = window,      Sc = filters,      T = ofmap pixels
      os: Sr = ofmap px,    Sc = filters,      T = window
      is: Sr = window,      Sc = ofmap px,     T = filters
- folds = ceil(Sr / R) * ceil(Sc / C), run one after another, each costing
      ws, is: 2R + C + T - 2   (R cycles to preload the stationary operand, then
                                T + R + C - 2 to stream, skew and drain)
      os:     R + C + T - 2
  and the layer's compute cycles = folds * per_fold - 1.

The weight-stationary fold cost equals this machine's cold MATMUL (`mxu_timing`); the
native timing model then overlaps weight loads with compute, which SCALE-Sim does not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from . import mxu_timing

DATAFLOWS = ("ws", "os", "is")


@dataclass(frozen=True)
class ConvLayer:
    """One convolution in SCALE-Sim's topology terms (ifmap already padded)."""

    ifmap_h: int
    ifmap_w: int
    filter_h: int
    filter_w: int
    channels: int
    num_filters: int
    stride_h: int = 1
    stride_w: int | None = None     # None: same as stride_h (as SCALE-Sim fills it in)
    name: str = ""

    def __post_init__(self):
        for field in ("ifmap_h", "ifmap_w", "filter_h", "filter_w", "channels",
                      "num_filters", "stride_h"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ConvLayer {self.name!r}: {field} must be a positive int, "
                                 f"got {value!r}")
        if self.stride_w is not None and (not isinstance(self.stride_w, int) or self.stride_w < 1):
            raise ValueError(f"ConvLayer {self.name!r}: stride_w must be a positive int, "
                             f"got {self.stride_w!r}")
        if self.filter_h > self.ifmap_h or self.filter_w > self.ifmap_w:
            raise ValueError(f"ConvLayer {self.name!r}: filter {self.filter_h}x{self.filter_w} "
                             f"is larger than the ifmap {self.ifmap_h}x{self.ifmap_w}")

    @property
    def ofmap_dims(self) -> tuple[int, int]:
        stride_w = self.stride_h if self.stride_w is None else self.stride_w
        return (math.ceil((self.ifmap_h - self.filter_h + self.stride_h) / self.stride_h),
                math.ceil((self.ifmap_w - self.filter_w + stride_w) / stride_w))

    @property
    def ofmap_pixels(self) -> int:
        h, w = self.ofmap_dims
        return h * w

    @property
    def window(self) -> int:
        return self.filter_h * self.filter_w * self.channels

    @property
    def macs(self) -> int:
        return self.ofmap_pixels * self.window * self.num_filters


def gemm_layer(m: int, n: int, k: int, name: str = "") -> ConvLayer:
    """An (M x K) @ (K x N) GEMM as SCALE-Sim's mnk topology files describe it."""
    return ConvLayer(ifmap_h=m, ifmap_w=k, filter_h=1, filter_w=k, channels=1,
                     num_filters=n, stride_h=1, name=name)


def spatio_temporal(layer: ConvLayer, dataflow: str) -> tuple[int, int, int]:
    """(Sr, Sc, T) of `layer` under `dataflow`."""
    pixels, window, filters = layer.ofmap_pixels, layer.window, layer.num_filters
    table = {"ws": (window, filters, pixels),
             "os": (pixels, filters, window),
             "is": (window, pixels, filters)}
    if dataflow not in table:
        raise ValueError(f"dataflow must be one of {', '.join(DATAFLOWS)}, got {dataflow!r}")
    return table[dataflow]


def fold_cycles(rows: int, cols: int, t_time: int, dataflow: str) -> int:
    """Cycles of one fold: preload (ws/is only), stream T, skew and drain."""
    if dataflow == "os":
        return rows + cols + t_time - 2
    if dataflow in ("ws", "is"):
        return mxu_timing.cold_matmul_cycles(rows, cols, t_time)
    raise ValueError(f"dataflow must be one of {', '.join(DATAFLOWS)}, got {dataflow!r}")


@dataclass(frozen=True)
class ScaleSimResult:
    """One layer's SCALE-Sim compute cycles and how they were counted."""

    layer: ConvLayer
    dataflow: str
    rows: int
    cols: int
    sr: int
    sc: int
    t_time: int
    row_folds: int
    col_folds: int
    cycles_per_fold: int
    total_cycles: int

    @property
    def folds(self) -> int:
        return self.row_folds * self.col_folds

    @property
    def utilization(self) -> float:
        """Useful MACs over R * C * cycles."""
        return self.layer.macs / (self.rows * self.cols * self.total_cycles)

    @property
    def mapping_efficiency(self) -> float:
        """Average fraction of the array a fold maps (SCALE-Sim's mapping efficiency)."""
        return (self.sr * self.sc) / (self.folds * self.rows * self.cols)


def compute_cycles(layer: ConvLayer, rows: int, cols: int, dataflow: str = "ws") -> ScaleSimResult:
    """SCALE-Sim's CALC-mode compute cycles of `layer` on an R x C array."""
    if not (isinstance(rows, int) and isinstance(cols, int) and rows >= 1 and cols >= 1):
        raise ValueError(f"array dimensions must be positive integers, got {rows}x{cols}")
    sr, sc, t_time = spatio_temporal(layer, dataflow)
    row_folds, col_folds = math.ceil(sr / rows), math.ceil(sc / cols)
    per_fold = fold_cycles(rows, cols, t_time, dataflow)
    total = row_folds * col_folds * per_fold - 1
    return ScaleSimResult(layer, dataflow, rows, cols, sr, sc, t_time, row_folds, col_folds,
                          per_fold, total)


def network_cycles(layers, rows: int, cols: int, dataflow: str = "ws") -> list[ScaleSimResult]:
    """Each layer costed on its own, as SCALE-Sim reports them (one row per layer)."""
    return [compute_cycles(layer, rows, cols, dataflow) for layer in layers]


def config_cycles(layer: ConvLayer, config) -> ScaleSimResult:
    """`compute_cycles` on a `SystolicConfig`'s array, with its `dataflow` (ws/os/is)."""
    return compute_cycles(layer, config.rows, config.cols, config.dataflow)
