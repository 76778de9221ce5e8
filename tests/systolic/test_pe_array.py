"""The PE-level simulator: right numbers (NumPy) and the timing contract's cycles.

The key claim: on >= 200 random MATMUL sequences on arrays from 1x1 to 16x16 the PE
simulator's start/end cycles equal mxu_timing's exactly, while its numbers equal a
NumPy model of bf16 operands with in-order fp32 accumulation.
"""

import numpy as np
import pytest

from tessel.compiler import dtypes
from tessel.runtime.systolic.mxu_timing import MxuOp, cold_matmul_cycles, mxu_schedule
from tessel.runtime.systolic.pe_array import PeArray, PeMatmul, reference_outputs


def _random_sequence(rng, rows, cols):
    """1-4 MATMULs; the first swaps weights, later ones swap or reuse; random ready times."""
    ops, k = [], None
    for i in range(int(rng.integers(1, 5))):
        swap = i == 0 or rng.random() < 0.6
        if swap:
            k, n = int(rng.integers(1, rows + 1)), int(rng.integers(1, cols + 1))
            weights = rng.standard_normal((k, n)).astype(np.float32)
        t = int(rng.integers(1, 9))
        late = rng.random() < 0.3
        ops.append(PeMatmul(rng.standard_normal((t, k)).astype(np.float32),
                            weights if swap else None,
                            ready=int(rng.integers(0, 40)) if late else 0,
                            weights_ready=int(rng.integers(0, 30)) if swap and late else 0))
    return ops


def _contract(rows, cols, ops):
    return mxu_schedule(rows, cols, [MxuOp(op.inputs.shape[0], op.weights is not None,
                                            op.ready, op.weights_ready) for op in ops])


def _dims(rng, case):
    """Arrays from 1x1 to 16x16, both extremes always included."""
    if case == 0:
        return 1, 1
    if case == 1:
        return 16, 16
    return int(rng.integers(1, 17)), int(rng.integers(1, 17))


def test_pe_cycles_equal_timing_contract_on_random_sequences():
    rng = np.random.default_rng(2026)
    cases = 210
    matmuls, waits = 0, set()
    for case in range(cases):
        rows, cols = _dims(rng, case)
        ops = _random_sequence(rng, rows, cols)
        result = PeArray(rows, cols).run(ops)
        expected = _contract(rows, cols, ops)
        assert result.starts == [t.start for t in expected], (rows, cols, case)
        assert result.ends == [t.end for t in expected], (rows, cols, case)
        assert result.shift_starts == [t.shift.start for t in expected if t.shift], (rows, cols, case)
        for got, want in zip(result.outputs, reference_outputs(ops)):
            np.testing.assert_array_equal(got, want)
        matmuls += len(ops)
        waits |= {t.waited_for for t in expected}
    assert matmuls >= cases
    # Every kind of stall was exercised: weights, a busy input port, late inputs.
    assert {"weights", "input port", "ready"} <= waits


def test_single_matmul_from_cold_takes_scalesim_fold_cycles():
    rng = np.random.default_rng(1)
    for rows, cols, t in [(1, 1, 1), (3, 3, 3), (16, 4, 7), (4, 16, 1), (16, 16, 16)]:
        op = PeMatmul(rng.standard_normal((t, rows)), rng.standard_normal((rows, cols)))
        result = PeArray(rows, cols).run([op])
        assert result.total_cycles == 2 * rows + cols + t - 2 == cold_matmul_cycles(rows, cols, t)


def test_results_match_numpy_matmul_of_bf16_operands():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((12, 10)).astype(np.float32)
    w = rng.standard_normal((10, 9)).astype(np.float32)
    (got,) = PeArray(16, 12).run([PeMatmul(x, w)]).outputs
    xb, wb = dtypes.round_to_bf16(x), dtypes.round_to_bf16(w)
    exact = xb.astype(np.float64) @ wb.astype(np.float64)
    # fp32 accumulation of exact products: error within K * eps32 * sum|terms|.
    bound = 10 * np.finfo(np.float32).eps * (np.abs(xb) @ np.abs(wb))
    assert np.all(np.abs(got - exact) <= bound)
    # And bf16 rounding really happened: unrounded f32 operands give other numbers.
    assert not np.array_equal(got, (x @ w).astype(np.float32))


def test_truncate_rounding_and_f32_multiply_modes():
    # bf16 spacing at 1 is 2**-7; 1 + 2**-8 + 2**-10 is above the midpoint.
    x = np.array([[1 + 2 ** -8 + 2 ** -10]], np.float32)
    w = np.array([[1.0]], np.float32)
    nearest = PeArray(1, 1).run([PeMatmul(x, w)]).outputs[0][0, 0]
    truncate = PeArray(1, 1, rounding="truncate").run([PeMatmul(x, w)]).outputs[0][0, 0]
    full = PeArray(1, 1, multiply="f32").run([PeMatmul(x, w)]).outputs[0][0, 0]
    assert nearest == np.float32(1.0078125) and truncate == np.float32(1.0)
    assert full == x[0, 0]


def test_weight_reuse_and_swap_back_to_back():
    # Two tiles, each used by two MATMULs; the second tile shifts in while tile 1 runs.
    rng = np.random.default_rng(3)
    w1, w2 = rng.standard_normal((4, 4)), rng.standard_normal((4, 4))
    ops = [PeMatmul(rng.standard_normal((6, 4)), w1), PeMatmul(rng.standard_normal((6, 4))),
           PeMatmul(rng.standard_normal((6, 4)), w2), PeMatmul(rng.standard_normal((6, 4)))]
    result = PeArray(4, 4).run(ops)
    # Starts 4, 10, 16, 22: the port is the only limit (shift of w2 at 4+3=7 .. 11 < 16).
    assert result.starts == [4, 10, 16, 22] and result.shift_starts == [0, 7]
    assert result.total_cycles == 22 + 6 + 4 + 4 - 2
    for got, want in zip(result.outputs, reference_outputs(ops)):
        np.testing.assert_array_equal(got, want)


def test_bad_programs_are_refused():
    with pytest.raises(ValueError, match="no tile is active"):
        PeArray(2, 2).run([PeMatmul(np.ones((1, 2)))])
    with pytest.raises(ValueError, match="1 <= K <= 2"):
        PeArray(2, 2).run([PeMatmul(np.ones((1, 3)), np.ones((3, 2)))])
    with pytest.raises(ValueError, match="weights must be K x N"):
        PeArray(2, 2).run([PeMatmul(np.ones((1, 2)), np.ones((2, 3)))])
    with pytest.raises(ValueError, match="positive integers"):
        PeArray(0, 2)
    with pytest.raises(ValueError, match="rounding must be one of nearest_even, truncate"):
        PeArray(2, 2, rounding="nearest")


def _tiled_gemm(x, w, rows, cols):
    """(M x K) @ (K x N) as the machine runs it: per N tile, per K tile, swap the tile in
    and stream all M rows (K tiles add up in the accumulators)."""
    ops, blocks = [], []
    for n0 in range(0, w.shape[1], cols):
        for k0 in range(0, w.shape[0], rows):
            ops.append(PeMatmul(x[:, k0:k0 + rows], w[k0:k0 + rows, n0:n0 + cols]))
            blocks.append((n0, k0))
    return ops, blocks


def test_pe_cycles_equal_timing_contract_on_random_tiled_gemms():
    rng = np.random.default_rng(11)
    for case in range(200):
        rows, cols = _dims(rng, case)
        m = int(rng.integers(1, 13))
        k = int(rng.integers(1, 2 * rows + 1))
        n = int(rng.integers(1, 2 * cols + 1))
        x = rng.standard_normal((m, k)).astype(np.float32)
        w = rng.standard_normal((k, n)).astype(np.float32)
        ops, blocks = _tiled_gemm(x, w, rows, cols)
        result = PeArray(rows, cols).run(ops)
        expected = _contract(rows, cols, ops)
        assert result.ends == [t.end for t in expected], (rows, cols, m, k, n)
        # Accumulate the K tiles like the accumulators do (fp32), compare with NumPy.
        y = np.zeros((m, n), np.float32)
        for (n0, _), out in zip(blocks, result.outputs):
            y[:, n0:n0 + out.shape[1]] += out
        xb, wb = dtypes.round_to_bf16(x).astype(np.float64), dtypes.round_to_bf16(w).astype(np.float64)
        bound = 4 * k * np.finfo(np.float32).eps * (np.abs(xb) @ np.abs(wb)) + 1e-30
        assert np.all(np.abs(y - xb @ wb) <= bound), (rows, cols, m, k, n)


def test_observer_sees_each_cycle_as_its_own_snapshot():
    """The observer gets every cycle once, in order, with copies of the registers (a
    later cycle does not rewrite an earlier snapshot): input row t of a cold MATMUL sits
    in PE(r, c) at cycle R + t + r + c, and the summed outputs leave exactly once."""
    R = C = 3
    x = np.arange(1, 7, dtype=np.float32).reshape(2, 3)
    w = np.arange(1, 10, dtype=np.float32).reshape(3, 3)
    seen = []
    result = PeArray(R, C).run([PeMatmul(x, w)], observer=seen.append)
    assert [s.cycle for s in seen] == list(range(result.total_cycles))
    for t in range(2):
        for r in range(R):
            for c in range(C):
                state = seen[R + t + r + c]
                assert state.x_op[r, c] == 0 and state.x_t[r, c] == t
                assert state.x[r, c] == x[t, r]
    assert seen[0].shift_started == 0 and seen[R].started == 0
    assert sum(len(s.leaving) for s in seen) == 2 * C
    np.testing.assert_array_equal(seen[-1].active, w)
    assert not seen[0].active.any()
