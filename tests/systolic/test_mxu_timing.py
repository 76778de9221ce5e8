"""The MXU timing contract: closed-form cycle counts of MATMUL sequences.

Each expected number is derived by hand in the test from the contract in
runtime/systolic/mxu_timing.py (the PE-level simulator checks the contract itself).
"""

import pytest

from tessel.runtime.systolic import mxu_timing as mt
from tessel.runtime.systolic.mxu_timing import MxuOp, mxu_schedule


def test_single_matmul_from_cold_is_scalesim_ws_fold():
    # shift R=4 cycles [0, 4); start 4; end 4 + T + R + C - 2 = 4 + 10 + 4 + 3 - 2 = 19.
    (t,) = mxu_schedule(4, 3, [MxuOp(10, swap_weights=True)])
    assert (t.shift.start, t.shift.end, t.start, t.end) == (0, 4, 4, 19)
    assert t.end == 2 * 4 + 3 + 10 - 2 == mt.cold_matmul_cycles(4, 3, 10)
    assert t.waited_for == "weights"


def test_skew_and_exit_cycles():
    # Row t reaches PE(r, c) at s+t+r+c; result (t, c) leaves at s+t+R-1+c.
    assert mt.input_arrival_cycle(5, 2, 3, 1) == 11
    assert mt.result_exit_cycle(4, 5, 2, 1) == 5 + 2 + 3 + 1
    # Completion = last exit + 1.
    rows, cols, start, t_rows = 4, 3, 5, 6
    last = mt.result_exit_cycle(rows, start, t_rows - 1, cols - 1)
    assert last + 1 == start + mt.matmul_cycles(rows, cols, t_rows)


def test_matmuls_on_one_tile_pipeline_back_to_back():
    # After the cold MATMUL (start R=8), each next one starts when the port frees:
    # starts 8, 8+5, 8+5+7; the last ends 20 + 3 + 8 + 8 - 2 = 37.
    ops = [MxuOp(5, swap_weights=True), MxuOp(7), MxuOp(3)]
    starts = [t.start for t in mxu_schedule(8, 8, ops)]
    assert starts == [8, 13, 20]
    assert mxu_schedule(8, 8, ops)[-1].end == 37 == mt.pipelined_matmul_cycles(8, 8, [5, 7, 3])
    assert [t.waited_for for t in mxu_schedule(8, 8, ops)[1:]] == ["input port", "input port"]


def test_double_buffering_hides_weight_shift_when_t_is_long():
    # R=4: tile 2 may shift once MATMUL 1 started + R-1 = 4+3 = 7, shift [7, 11);
    # MATMUL 1 holds the port until 4+20 = 24 > 11, so MATMUL 2 starts at 24: no gap.
    ops = [MxuOp(20, swap_weights=True), MxuOp(20, swap_weights=True)]
    first, second = mxu_schedule(4, 4, ops)
    assert second.shift == mt.ShiftTiming(7, 11)
    assert second.start == first.start + 20 == 24
    assert second.waited_for == "input port"


def test_short_matmuls_with_swaps_wait_for_weights():
    # R=4, T=1 each: swap MATMUL k starts at s_k; next shift starts s_k + 3, ends s_k + 7.
    # s = 4, 11, 18: each step costs 2R - 1 = 7 cycles, weight bound.
    ops = [MxuOp(1, swap_weights=True)] * 3
    timings = mxu_schedule(4, 4, ops)
    assert [t.start for t in timings] == [4, 11, 18]
    assert timings[-1].end == 18 + 1 + 4 + 4 - 2
    assert [t.waited_for for t in timings] == ["weights"] * 3


def test_ready_times_delay_inputs_and_weights():
    # Inputs ready at 30 dominate; the tile arrives at 2 -> shift [2, 6).
    (t,) = mxu_schedule(4, 4, [MxuOp(3, swap_weights=True, ready=30, weights_ready=2)])
    assert (t.shift.start, t.start, t.end, t.waited_for) == (2, 30, 30 + 3 + 6, "ready")
    # The tile arrives late: shift [50, 54) then start 54.
    (t,) = mxu_schedule(4, 4, [MxuOp(3, swap_weights=True, ready=30, weights_ready=50)])
    assert (t.start, t.waited_for) == (54, "weights")


def test_one_by_one_array():
    # R=C=1: shift 1 cycle, MATMUL of T ends T cycles after it starts; shadow frees at
    # once (R-1 = 0), so swaps cost 1 cycle each: starts 1, 2, 3.
    timings = mxu_schedule(1, 1, [MxuOp(1, swap_weights=True)] * 3)
    assert [(t.start, t.end) for t in timings] == [(1, 2), (2, 3), (3, 4)]


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="no weight tile is active"):
        mxu_schedule(4, 4, [MxuOp(3)])
    with pytest.raises(ValueError, match="at least one row"):
        mxu_schedule(4, 4, [MxuOp(0, swap_weights=True)])
    with pytest.raises(ValueError, match="positive integers"):
        mt.matmul_cycles(0, 4, 3)


def test_swapping_every_matmul_is_free_exactly_when_t_at_least_2r_minus_1():
    # Next shift starts R-1 after a swap and takes R: the port (T) is the limit iff
    # T >= 2R - 1.  R = 8: T = 15 never waits for weights, T = 14 waits 1 cycle each time.
    for t_rows, step in ((15, 15), (14, 15), (40, 40)):
        timings = mxu_schedule(8, 8, [MxuOp(t_rows, swap_weights=True)] * 5)
        assert [b.start - a.start for a, b in zip(timings, timings[1:])] == [step] * 4
