"""The GEMM tiling planner: closed-form counts and coverage of every output element."""
from __future__ import annotations

import math

import numpy as np
import pytest

from tessel.backends.systolic.tiling import Gemm, TilingError, gemm_of, ideal_matmul_cycles, plan_gemm
from tessel.compiler.parser import parse_module


def dot_of(text: str):
    m = parse_module("HloModule m\nENTRY main {\n" + text + "\n}\n")
    return m.entry.root


def test_gemm_of_collapses_batch_free_and_contracting_dims():
    dot = dot_of("""
  a = f32[2,3,5,7,4] parameter(0)
  b = f32[2,3,4,7,6] parameter(1)
  ROOT d = f32[2,3,5,6] dot_general(a, b), lhs_batching_dims={0,1}, rhs_batching_dims={0,1}, lhs_contracting_dims={3,4}, rhs_contracting_dims={3,2}""")
    assert gemm_of(dot) == Gemm(batch=6, m=5, k=28, n=6)


@pytest.mark.parametrize("m,k,n,R,C,acc", [(1, 1, 1, 4, 4, 8), (37, 50, 29, 8, 8, 16),
                                          (100, 7, 300, 16, 4, 64), (64, 64, 64, 8, 16, 1024)])
def test_every_output_element_gets_every_k_exactly_once(m, k, n, R, C, acc):
    plan = plan_gemm(Gemm(1, m, k, n), R, C, acc_rows=acc, ub_budget_rows=10 ** 6, lanes=max(R, C))
    covered = np.zeros((m, k, n), np.int32)
    for t in plan.all_tiles():
        assert t.rows <= acc // 2 and t.depth <= R and t.width <= C
        assert t.accumulate == (t.k0 > 0)          # the first k tile overwrites
        covered[t.m0:t.m0 + t.rows, t.k0:t.k0 + t.depth, t.n0:t.n0 + t.width] += 1
    assert (covered == 1).all()
    assert plan.weight_loads == math.ceil(m / plan.m_chunk) * plan.k_tiles * math.ceil(n / C)
    if R >= C:
        assert plan.k_tiles == math.ceil(k / R)


def test_k_tiles_of_one_output_tile_are_consecutive_and_end_with_last_k():
    plan = plan_gemm(Gemm(1, 10, 50, 20), 16, 8, acc_rows=64, ub_budget_rows=10 ** 6)
    tiles = list(plan.all_tiles())
    for start in range(0, len(tiles), plan.k_tiles):
        group = tiles[start:start + plan.k_tiles]
        assert len({(t.m0, t.n0) for t in group}) == 1
        assert [t.last_k for t in group] == [False] * (plan.k_tiles - 1) + [True]


def test_m_chunk_respects_accumulators_and_unified_buffer():
    g = Gemm(1, 1000, 256, 384)                       # 2 + 3 blocks of 128 lanes per row
    # everything fits: two chunks anyway, so the second's load hides behind the first
    assert plan_gemm(g, 128, 128, acc_rows=4096, ub_budget_rows=10 ** 6).m_chunk == 500
    assert plan_gemm(Gemm(1, 200, 64, 64), 128, 128, acc_rows=4096, ub_budget_rows=10 ** 6).m_chunk == 200
    assert plan_gemm(g, 128, 128, acc_rows=512, ub_budget_rows=10 ** 6).m_chunk == 256
    # double-buffered lhs blocks + one output tile: 2 * (2 + 1) = 6 UB rows per GEMM row
    assert plan_gemm(g, 128, 128, acc_rows=4096, ub_budget_rows=600).m_chunk == 100


def test_a_layer_whose_single_row_does_not_fit_is_refused():
    with pytest.raises(TilingError, match="needs 6 unified-buffer rows per lhs row"):
        plan_gemm(Gemm(1, 8, 256, 384), 128, 128, acc_rows=64, ub_budget_rows=5)


def test_k_tiles_stay_inside_a_lane_block():
    # R = 48 on 64 lanes: each 64-wide block splits 48 + 16, the last (partial) 48 + 2
    plan = plan_gemm(Gemm(1, 8, 178, 8), 48, 64, acc_rows=64, ub_budget_rows=10 ** 6)
    assert plan.k_list == [(0, 48), (48, 16), (64, 48), (112, 16), (128, 48), (176, 2)]


def test_ideal_cycles_are_rows_times_weight_tiles():
    plan = plan_gemm(Gemm(3, 1024, 1024, 1024), 128, 128, acc_rows=4096, ub_budget_rows=10 ** 6)
    assert ideal_matmul_cycles(plan) == 3 * 1024 * 8 * 8
