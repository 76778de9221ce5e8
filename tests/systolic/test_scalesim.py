"""SCALE-Sim compatibility mode: the published AlexNet conv1 number and hand derivations."""

import pytest

from tessel.runtime.systolic import mxu_timing
from tessel.runtime.systolic.scalesim import (ConvLayer, compute_cycles, gemm_layer,
                                              network_cycles, spatio_temporal)

ALEXNET_CONV1 = ConvLayer(ifmap_h=224, ifmap_w=224, filter_h=11, filter_w=11, channels=3,
                          num_filters=96, stride_h=4, name="Conv1")


def test_alexnet_conv1_on_32x32_ws_reproduces_scalesim():
    # ofmap = ceil((224 - 11 + 4) / 4) = ceil(54.25) = 55 -> 55 * 55 = 3025 pixels;
    # window = 11 * 11 * 3 = 363; ws: Sr = 363, Sc = 96, T = 3025;
    # folds = ceil(363/32) * ceil(96/32) = 12 * 3 = 36; per fold 2*32 + 32 + 3025 - 2 = 3119;
    # total = 36 * 3119 - 1 = 112283 (SCALE-Sim's published compute cycles).
    result = compute_cycles(ALEXNET_CONV1, 32, 32, "ws")
    assert ALEXNET_CONV1.ofmap_dims == (55, 55)
    assert (result.sr, result.sc, result.t_time) == (363, 96, 3025)
    assert (result.row_folds, result.col_folds, result.cycles_per_fold) == (12, 3, 3119)
    assert result.total_cycles == 112283


def test_alexnet_conv1_other_dataflows_by_hand():
    # os: Sr = 3025 px, Sc = 96, T = 363: folds ceil(3025/32)=95 * 3 = 285,
    #     per fold 32 + 32 + 363 - 2 = 425 -> 285 * 425 - 1 = 121124.
    os_ = compute_cycles(ALEXNET_CONV1, 32, 32, "os")
    assert (os_.sr, os_.sc, os_.t_time, os_.folds, os_.cycles_per_fold) == (3025, 96, 363, 285, 425)
    assert os_.total_cycles == 121124
    # is: Sr = 363, Sc = 3025, T = 96: folds 12 * 95 = 1140, per fold 64 + 32 + 96 - 2 = 190
    #     -> 1140 * 190 - 1 = 216599.
    is_ = compute_cycles(ALEXNET_CONV1, 32, 32, "is")
    assert (is_.folds, is_.cycles_per_fold, is_.total_cycles) == (1140, 190, 216599)


def test_gemm_in_all_three_dataflows():
    # M = 100, N = 40, K = 70 on 16 x 8.  As SCALE-Sim's mnk topology: ifmap 100 x 70,
    # filter 1 x 70, 1 channel, 40 filters -> 100 ofmap pixels, window 70.
    layer = gemm_layer(m=100, n=40, k=70)
    assert (layer.ofmap_pixels, layer.window, layer.macs) == (100, 70, 100 * 40 * 70)
    # ws: Sr=K=70 -> ceil(70/16)=5, Sc=N=40 -> ceil(40/8)=5, T=M=100;
    #     per fold 32 + 8 + 100 - 2 = 138; 25 * 138 - 1 = 3449.
    assert compute_cycles(layer, 16, 8, "ws").total_cycles == 3449
    # os: Sr=M=100 -> 7, Sc=N=40 -> 5, T=K=70; per fold 16 + 8 + 70 - 2 = 92; 35*92-1 = 3219.
    assert compute_cycles(layer, 16, 8, "os").total_cycles == 3219
    # is: Sr=K=70 -> 5, Sc=M=100 -> 13, T=N=40; per fold 32 + 8 + 40 - 2 = 78; 65*78-1 = 5069.
    assert compute_cycles(layer, 16, 8, "is").total_cycles == 5069


def test_small_conv_stride_and_ceil():
    # 7x7 input, 3x3 filter, stride 2: ofmap ceil((7 - 3 + 2)/2) = 3 -> 9 px; 2 channels,
    # 5 filters: window 18.  ws on 4x4: Sr=18 -> 5 folds, Sc=5 -> 2 folds, T=9;
    # per fold 8 + 4 + 9 - 2 = 19; 10 * 19 - 1 = 189.
    layer = ConvLayer(7, 7, 3, 3, 2, 5, stride_h=2)
    assert layer.ofmap_dims == (3, 3)
    result = compute_cycles(layer, 4, 4, "ws")
    assert (result.folds, result.cycles_per_fold, result.total_cycles) == (10, 19, 189)
    # 8x8, stride 3: ceil((8 - 3 + 3)/3) = ceil(2.67) = 3: SCALE-Sim rounds up.
    assert ConvLayer(8, 8, 3, 3, 1, 1, stride_h=3).ofmap_dims == (3, 3)
    # Separate strides: width stride 1 -> 6 columns.
    assert ConvLayer(8, 8, 3, 3, 1, 1, stride_h=3, stride_w=1).ofmap_dims == (3, 6)


def test_ws_fold_is_the_native_cold_matmul_and_utilization():
    # One fold exactly filling the array: ws per fold = our cold MATMUL 2R + C + T - 2.
    layer = gemm_layer(m=50, n=8, k=16)
    result = compute_cycles(layer, 16, 8, "ws")
    assert result.folds == 1
    assert result.total_cycles == mxu_timing.cold_matmul_cycles(16, 8, 50) - 1
    assert result.utilization == pytest.approx(50 * 8 * 16 / (16 * 8 * result.total_cycles))
    assert result.mapping_efficiency == 1.0
    assert compute_cycles(gemm_layer(50, 4, 16), 16, 8, "ws").mapping_efficiency == 0.5


def test_network_and_bad_input():
    results = network_cycles([ALEXNET_CONV1, gemm_layer(4, 4, 4)], 32, 32)
    assert [r.total_cycles for r in results] == [112283, 2 * 32 + 32 + 4 - 2 - 1]
    assert spatio_temporal(ALEXNET_CONV1, "os") == (3025, 96, 363)
    with pytest.raises(ValueError, match="dataflow must be one of ws, os, is"):
        compute_cycles(ALEXNET_CONV1, 32, 32, "rs")
    with pytest.raises(ValueError, match="larger than the ifmap"):
        ConvLayer(4, 4, 5, 5, 1, 1)
    with pytest.raises(ValueError, match="channels must be a positive int"):
        ConvLayer(4, 4, 3, 3, 0, 1)
    with pytest.raises(ValueError, match="positive integers"):
        compute_cycles(ALEXNET_CONV1, 0, 32)


def test_config_selects_array_and_dataflow():
    from tessel.runtime.systolic.config import SystolicConfig
    from tessel.runtime.systolic.scalesim import config_cycles
    assert config_cycles(ALEXNET_CONV1, SystolicConfig(rows=32, cols=32)).total_cycles == 112283
    os_cfg = SystolicConfig(rows=32, cols=32, dataflow="os")
    assert config_cycles(ALEXNET_CONV1, os_cfg).total_cycles == 121124
