"""The functional simulator: each instruction against NumPy, bf16 rounding bit-exact in
both modes, int8/f32 modes, and hand-written tiled programs."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from tessel.runtime.systolic import asm, functional
from tessel.runtime.systolic.config import SystolicConfig
from tessel.runtime.systolic.functional import Machine, MachineError, round_bf16
from tessel.runtime.systolic.isa import make
from tessel.runtime.systolic.validate import validate

CFG = SystolicConfig(rows=8, cols=8, ub_bytes=64 * 32, acc_bytes=16 * 32, host_bytes=1 << 16)


# ----------------------------------------------------------------------------- bf16 rounding

def _bf16_reference(value: float, mode: str) -> float:
    """bf16 rounding by arithmetic on the bf16 grid (8 significant bits, subnormal step
    2^-133), independent of the bit tricks under test."""
    if math.isnan(value) or math.isinf(value) or value == 0:
        return value
    _, e = math.frexp(abs(value))
    grid = 2.0 ** max(e - 8, -133)
    steps = abs(value) / grid                         # exact: a power-of-two division
    steps = math.floor(steps) if mode == "truncate" else float(np.rint(steps))  # half-even
    result = math.copysign(steps * grid, value)
    return math.copysign(math.inf, value) if abs(result) >= 2.0 ** 128 else result


def _interesting_f32(rng) -> np.ndarray:
    bits = rng.integers(0, 1 << 32, 20000, dtype=np.uint64).astype(np.uint32)
    ties = (bits & np.uint32(0xFFFF0000)) | np.uint32(0x8000)          # exactly halfway
    near = (bits & np.uint32(0xFFFF0000)) | np.uint32(0x7FFF)
    special = np.array([0, 0x80000000, 1, 0x8000, 0x18000, 0x7F7F8000, 0x7F7FFFFF, 0x7F7F7FFF,
                        0xFF7FFFFF, 0x7F800000, 0xFF800000, 0x3F808000, 0x3F818000,
                        0x007FFFFF, 0x00808000], np.uint32)
    return np.concatenate([bits, ties, near, special]).view(np.float32)


@pytest.mark.parametrize("mode", ["nearest_even", "truncate"])
def test_bf16_rounding_is_bit_exact(mode):
    values = _interesting_f32(np.random.default_rng(0))
    values = values[~np.isnan(values)]
    got = round_bf16(values, mode)
    want = np.array([_bf16_reference(float(v), mode) for v in values], np.float32)
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
    assert not (got.view(np.uint32) & 0xFFFF).any()


@pytest.mark.parametrize("mode", ["nearest_even", "truncate"])
def test_bf16_rounding_keeps_nan(mode):
    nans = np.array([0x7FC00000, 0x7F800001, 0xFF800001, 0x7FBFFFFF], np.uint32).view(np.float32)
    out = round_bf16(nans, mode)
    assert np.isnan(out).all() and not (out.view(np.uint32) & 0xFFFF).any()
    assert np.array_equal(np.signbit(out), np.signbit(nans))


def test_bf16_conversions():
    values = np.array([1.0, -2.5, 3.14159, 1e-40, 65504.0], np.float32)
    bits = functional.bf16_bits(values)
    assert bits.dtype == np.uint16
    assert np.array_equal(functional.bf16_to_f32(bits), round_bf16(values))


# ----------------------------------------------------------------------------- helpers

def machine(config=CFG) -> Machine:
    return Machine(config, np.zeros(config.host_bytes, np.uint8))


def put_host(m: Machine, address: int, array: np.ndarray):
    raw = np.ascontiguousarray(array).view(np.uint8).ravel()
    m.memory[address:address + raw.size] = raw


def get_host(m: Machine, address: int, shape, dtype) -> np.ndarray:
    count = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return m.memory[address:address + count].view(dtype).reshape(shape).copy()


def fill_ub(m: Machine, rng, rows=None):
    m.ub[:rows] = rng.standard_normal(m.ub[:rows].shape).astype(np.float32)
    return m.ub.copy()


# ----------------------------------------------------------------------------- DMA

@pytest.mark.parametrize("fmt, dtype", [("f32", np.float32), ("i8", np.int8), ("i32", np.int32)])
def test_dma_load_strided_rows_into_lanes(fmt, dtype, rng):
    m = machine()
    host = (rng.standard_normal((6, 10)) * 50).astype(dtype)
    put_host(m, 256, host)
    before = fill_ub(m, rng)
    row = host.dtype.itemsize * 10
    m.run([make("DMA_LOAD", host=256 + row, ub=3, rows=2, cols=4, lane=2, stride=2 * row, fmt=fmt)])
    expected = before.copy()
    expected[3:5, 2:6] = host[[1, 3], 0:4].astype(np.float32)
    assert np.array_equal(m.ub, expected)


def test_dma_load_bf16_and_broadcast_and_overlapping_rows(rng):
    m = machine()
    bits = functional.bf16_bits(rng.standard_normal(12).astype(np.float32))
    put_host(m, 100, bits)
    m.run([make("DMA_LOAD", host=100, ub=0, rows=3, cols=8, stride=0, fmt="bf16"),
           make("DMA_LOAD", host=100, ub=3, rows=3, cols=8, stride=2, fmt="bf16")])
    values = functional.bf16_to_f32(bits)
    assert np.array_equal(m.ub[0:3], np.tile(values[:8], (3, 1)))          # stride 0
    assert np.array_equal(m.ub[3:6], np.stack([values[r:r + 8] for r in range(3)]))  # windows


@pytest.mark.parametrize("mode", ["nearest_even", "truncate"])
def test_dma_store_formats_round_and_saturate(mode):
    m = machine(CFG.with_(bf16_rounding=mode))
    values = np.array([1.5, 2.5, -3.5, 200.0, -1e10, np.nan, np.inf, 1.0 + 2 ** -9], np.float32)
    m.ub[7] = values
    m.run([make("DMA_STORE", host=0, ub=7, rows=1, cols=8, stride=0, fmt="i8"),
           make("DMA_STORE", host=64, ub=7, rows=1, cols=8, stride=0, fmt="i32"),
           make("DMA_STORE", host=128, ub=7, rows=1, cols=8, stride=0, fmt="bf16"),
           make("DMA_STORE", host=192, ub=7, rows=1, cols=4, lane=4, stride=0, fmt="f32")])
    assert get_host(m, 0, 8, np.int8).tolist() == [2, 2, -4, 127, -128, 0, 127, 1]
    assert get_host(m, 64, 8, np.int32).tolist() == [2, 2, -4, 200, -2 ** 31, 0, 2 ** 31 - 1, 1]
    assert np.array_equal(get_host(m, 128, 8, np.uint16), functional.bf16_bits(values, mode))
    assert np.array_equal(get_host(m, 192, 4, np.float32), values[4:], equal_nan=True)


def test_dma_store_strided_rows(rng):
    m = machine()
    before = fill_ub(m, rng)
    m.run([make("DMA_STORE", host=1000, ub=2, rows=3, cols=5, lane=1, stride=40, fmt="f32")])
    out = get_host(m, 1000, (3, 10), np.float32)
    assert np.array_equal(out[:, :5], before[2:5, 1:6]) and not out[:, 5:].any()


# ----------------------------------------------------------------------------- weights + MATMUL

@pytest.mark.parametrize("mode", ["nearest_even", "truncate"])
def test_matmul_rounds_operands_and_accumulates_in_f32(mode, rng):
    cfg = CFG.with_(bf16_rounding=mode)
    m = machine(cfg)
    w = rng.standard_normal((5, 6)).astype(np.float32)           # k=5, n=6 on an 8x8 array
    put_host(m, 0, w)
    before = fill_ub(m, rng)
    m.acc[:] = rng.standard_normal(m.acc.shape).astype(np.float32)
    acc0 = m.acc.copy()
    m.run([make("LOAD_W", src="host", addr=0, k=5, n=6, stride=24),
           make("MATMUL", ub=10, acc=2, rows=4, lane=3, mode="overwrite", swap=1),
           make("MATMUL", ub=20, acc=9, rows=3, mode="accumulate")])
    wr = round_bf16(w, mode)
    y1 = round_bf16(before[10:14, 3:8], mode) @ wr
    y2 = round_bf16(before[20:23, 0:5], mode) @ wr
    expected = acc0.copy()
    expected[2:6, :6], expected[2:6, 6:8] = y1, 0                  # overwrite zeroes n..C
    expected[9:12, :6] += y2                                       # accumulate leaves n..C
    assert np.array_equal(m.acc, expected)
    assert m.macs == (4 + 3) * 5 * 6


def test_matmul_products_are_exact_bf16_products(rng):
    # one-term dot products: the result is exactly the product of the rounded operands
    m = machine()
    w = rng.standard_normal((1, 8)).astype(np.float32)
    put_host(m, 0, w)
    fill_ub(m, rng)
    m.run([make("LOAD_W", src="host", addr=0, k=1, n=8, stride=32),
           make("MATMUL", ub=0, acc=0, rows=16, mode="overwrite", swap=1)])
    exact = round_bf16(m.ub[:16, :1]).astype(np.float64) * round_bf16(w).astype(np.float64)
    assert np.array_equal(m.acc[:16], exact.astype(np.float32))
    assert np.array_equal(exact.astype(np.float32).astype(np.float64), exact)


def test_load_w_transposed_from_host_and_from_ub(rng):
    m = machine()
    wt = rng.standard_normal((6, 4)).astype(np.float32)           # n x k: the tile transposed
    put_host(m, 512, functional.bf16_bits(wt))
    ub = fill_ub(m, rng)
    m.run([make("LOAD_W", src="host", addr=512, k=4, n=6, stride=8, transpose=1, fmt="bf16"),
           make("LOAD_W", src="ub", addr=30, k=3, n=7, stride=2),
           make("LOAD_W", src="ub", addr=40, k=2, n=5, stride=1, transpose=1)])
    tiles = list(m.fifo)
    assert np.array_equal(tiles[0], round_bf16(wt).T)
    assert np.array_equal(tiles[1], round_bf16(ub[[30, 32, 34], :7]))
    assert np.array_equal(tiles[2], round_bf16(ub[40:45, :2]).T)


def test_double_buffering_swaps_tiles_in_fifo_order(rng):
    m = machine()
    tiles = [rng.standard_normal((8, 8)).astype(np.float32) for _ in range(3)]
    for j, t in enumerate(tiles):
        put_host(m, 1024 * j, t)
    ub = fill_ub(m, rng)
    m.run([make("LOAD_W", src="host", addr=1024 * j, k=8, n=8, stride=32) for j in range(3)]
          + [make("MATMUL", ub=8 * j, acc=0, rows=8, mode="accumulate", swap=1) for j in range(3)]
          + [make("MATMUL", ub=0, acc=8, rows=8, mode="overwrite")])          # reuses tile 2
    expected = np.zeros((8, 8), np.float32)
    for j in range(3):
        expected += round_bf16(ub[8 * j:8 * j + 8]) @ round_bf16(tiles[j])
    assert np.array_equal(m.acc[:8], expected)
    assert np.array_equal(m.acc[8:16], round_bf16(ub[:8]) @ round_bf16(tiles[2]))


def test_f32_mode_does_not_round(rng):
    m = machine(CFG.with_(dtype="f32"))
    w = rng.standard_normal((8, 8)).astype(np.float32)
    put_host(m, 0, w)
    ub = fill_ub(m, rng)
    m.run([make("LOAD_W", src="host", addr=0, k=8, n=8, stride=32),
           make("MATMUL", ub=0, acc=0, rows=8, mode="overwrite", swap=1)])
    assert np.array_equal(m.acc[:8], ub[:8] @ w)
    assert not np.array_equal(m.acc[:8], round_bf16(ub[:8]) @ round_bf16(w))


def test_int8_mode_multiplies_int8_and_wraps_int32(rng):
    cfg = CFG.with_(dtype="int8")
    m = machine(cfg)
    w = rng.integers(-128, 128, (8, 8)).astype(np.int8)
    put_host(m, 0, w)
    m.ub[:4] = rng.integers(-300, 300, (4, 8)).astype(np.float32) + 0.5   # rounds + saturates
    m.acc[:4] = 2 ** 31 - 1 - rng.integers(0, 1000, (4, 8)).astype(np.int32)
    acc0 = m.acc[:4].astype(np.int64)
    m.run([make("LOAD_W", src="host", addr=0, k=8, n=8, stride=8, fmt="i8"),
           make("MATMUL", ub=0, acc=0, rows=4, mode="accumulate", swap=1),
           make("ACTIVATE", acc=0, ub=10, rows=4, fn="identity", scale=0.5)])
    x = np.clip(np.rint(m.ub[:4]), -128, 127).astype(np.int64)
    expected = acc0 + x @ w.astype(np.int64)
    expected = ((expected + 2 ** 31) % 2 ** 32 - 2 ** 31).astype(np.int32)
    assert m.acc.dtype == np.int32 and np.array_equal(m.acc[:4], expected)
    assert np.array_equal(m.ub[10:14], expected.astype(np.float32) * np.float32(0.5))


def test_machine_errors_without_validation():
    m = machine()
    with pytest.raises(MachineError, match="no active weight tile"):
        m.run([make("MATMUL", ub=0, acc=0, rows=1, mode="overwrite")])
    with pytest.raises(MachineError, match="empty weight FIFO"):
        m.run([make("MATMUL", ub=0, acc=0, rows=1, mode="overwrite", swap=1)])
    with pytest.raises(MachineError, match="outside the 65536-byte host memory"):
        m.run([make("DMA_LOAD", host=65532, ub=0, rows=1, cols=2, stride=0, fmt="f32")])


# ----------------------------------------------------------------------------- activation + vector

def _f64_round(fn):
    return lambda x: np.array([fn(float(v)) for v in x.ravel()]).reshape(x.shape).astype(np.float32)


def _math_sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v)) if v > -700 else 0.0


def _math_gelu(v):
    return 0.5 * v * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * (v + 0.044715 * v ** 3)))


ACTIVATION_REFERENCE = {
    "identity": lambda x: x, "relu": lambda x: np.maximum(x, 0),
    "sigmoid": _f64_round(_math_sigmoid), "tanh": _f64_round(math.tanh),
    "gelu_tanh": _f64_round(_math_gelu),
}


@pytest.mark.parametrize("fn", sorted(ACTIVATION_REFERENCE))
def test_activate_scales_adds_bias_and_applies_fn(fn, rng):
    m = machine()
    ub = fill_ub(m, rng)
    m.acc[:] = (rng.standard_normal(m.acc.shape) * 8).astype(np.float32)
    m.run([make("ACTIVATE", acc=3, ub=20, rows=5, fn=fn, scale=0.25, bias=1, bias_ub=60),
           make("ACTIVATE", acc=0, ub=40, rows=2, fn=fn)])
    pre = m.acc[3:8] * np.float32(0.25) + ub[60]
    assert np.array_equal(m.ub[20:25], ACTIVATION_REFERENCE[fn](pre))
    assert np.array_equal(m.ub[40:42], ACTIVATION_REFERENCE[fn](m.acc[0:2]))
    assert np.array_equal(m.ub[25:40], ub[25:40])


BINARY_REFERENCE = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
    "max": np.maximum, "min": np.minimum,
    "pow": lambda a, b: (np.abs(a).astype(np.float64) ** b.astype(np.float64)).astype(np.float32),
    "eq": lambda a, b: (a == b) * np.float32(1), "ne": lambda a, b: (a != b) * np.float32(1),
    "lt": lambda a, b: (a < b) * np.float32(1), "le": lambda a, b: (a <= b) * np.float32(1),
    "gt": lambda a, b: (a > b) * np.float32(1), "ge": lambda a, b: (a >= b) * np.float32(1),
}


@pytest.mark.parametrize("op", sorted(BINARY_REFERENCE))
def test_vec_bin_and_imm(op, rng):
    m = machine()
    ub = fill_ub(m, rng)
    if op == "pow":
        m.ub[:] = np.abs(m.ub)
        ub = m.ub.copy()
    ub[30:34, :3] = ub[40:44, :3]            # some equal lanes for the comparisons
    m.ub[:] = ub
    ref = BINARY_REFERENCE[op]
    imm = np.float32(ub[50, 0])
    m.run([make("VEC_BIN", op=op, dst=0, src0=30, src1=40, rows=4),
           make("VEC_BIN", op=op, dst=4, src0=30, src1=50, rows=4, src1_bcast=1),
           make("VEC_BIN", op=op, dst=8, src0=50, src1=40, rows=4, src0_bcast=1),
           make("VEC_IMM", op=op, dst=12, src=30, rows=4, imm=imm),
           make("VEC_IMM", op=op, dst=16, src=30, rows=4, imm=imm, rev=1),
           make("VEC_BIN", op=op, dst=30, src0=30, src1=40, rows=4)])      # in place
    a, b = ub[30:34], ub[40:44]
    with np.errstate(all="ignore"):
        assert np.array_equal(m.ub[0:4], ref(a, b), equal_nan=True)
        assert np.array_equal(m.ub[4:8], ref(a, np.tile(ub[50], (4, 1))), equal_nan=True)
        assert np.array_equal(m.ub[8:12], ref(np.tile(ub[50], (4, 1)), b), equal_nan=True)
        assert np.array_equal(m.ub[12:16], ref(a, np.full_like(a, imm)), equal_nan=True)
        assert np.array_equal(m.ub[16:20], ref(np.full_like(a, imm), a), equal_nan=True)
        assert np.array_equal(m.ub[30:34], ref(a, b), equal_nan=True)


UNARY_REFERENCE = {
    "copy": lambda x: x, "neg": lambda x: -x, "abs": np.abs,
    "exp": _f64_round(math.exp), "log": _f64_round(lambda v: math.log(v) if v > 0 else
                                                   (-math.inf if v == 0 else math.nan)),
    "sqrt": _f64_round(lambda v: math.sqrt(v) if v >= 0 else math.nan),
    "rsqrt": _f64_round(lambda v: 1 / math.sqrt(v) if v > 0 else math.nan),
    "recip": lambda x: np.float32(1) / x,
    "tanh": _f64_round(math.tanh), "sigmoid": _f64_round(_math_sigmoid),
    "relu": lambda x: np.maximum(x, 0), "gelu_tanh": _f64_round(_math_gelu),
}


@pytest.mark.parametrize("op", sorted(UNARY_REFERENCE))
def test_vec_un(op, rng):
    m = machine()
    ub = fill_ub(m, rng)
    if op in ("log", "sqrt", "rsqrt"):
        m.ub[:] = ub = np.abs(ub) + np.float32(0.01)
    m.run([make("VEC_UN", op=op, dst=0, src=20, rows=6),
           make("VEC_UN", op=op, dst=10, src=63, rows=3, src_bcast=1)])
    with np.errstate(all="ignore"):
        assert np.array_equal(m.ub[0:6], UNARY_REFERENCE[op](ub[20:26]))
        assert np.array_equal(m.ub[10:13], np.tile(UNARY_REFERENCE[op](ub[63:64]), (3, 1)))


def test_vec_sel(rng):
    m = machine()
    ub = fill_ub(m, rng)
    m.ub[10:13] = ub[10:13] = (ub[10:13] > 0) * np.float32(2)
    m.run([make("VEC_SEL", dst=0, mask=10, src0=20, src1=30, rows=3)])
    assert np.array_equal(m.ub[0:3], np.where(ub[10:13] != 0, ub[20:23], ub[30:33]))


def _sequential(fn, block, axis):
    block = np.moveaxis(block, axis, 0)
    out = block[0].copy()
    for row in block[1:]:
        out = fn(out, row)
    return out


@pytest.mark.parametrize("op, fn", [("sum", np.add), ("max", np.maximum), ("min", np.minimum)])
def test_vec_red_along_rows_and_lanes(op, fn, rng):
    m = machine()
    ub = fill_ub(m, rng)
    m.ub[:] = ub = (ub * 1000).astype(np.float32)     # large values: summation order shows
    m.run([make("VEC_RED", op=op, axis="rows", dst=40, src=0, rows=30, lanes=6),
           make("VEC_RED", op=op, axis="lanes", dst=50, src=10, rows=5, lanes=7)])
    expected = ub[40].copy()
    expected[:6] = _sequential(fn, ub[0:30, :6], 0)
    assert np.array_equal(m.ub[40], expected)
    lanes = _sequential(fn, ub[10:15, :7], 1)
    assert np.array_equal(m.ub[50:55], np.tile(lanes[:, None], (1, 8)))


def test_vec_trans(rng):
    m = machine()
    ub = fill_ub(m, rng)
    m.run([make("VEC_TRANS", dst=30, src=0, rows=3, lanes=5)])
    expected = ub.copy()
    expected[30:35, :3] = ub[0:3, :5].T
    assert np.array_equal(m.ub, expected)


# ----------------------------------------------------------------------------- whole programs

def test_run_validates_first():
    with pytest.raises(ValueError, match="no weights loaded"):
        functional.run(asm.assemble("MATMUL ub=0 acc=0 rows=1 mode=overwrite\nHALT"), CFG)
    with pytest.raises(ValueError, match="race"):
        functional.run(asm.assemble("DMA_LOAD host=0 ub=0 rows=1 cols=8 stride=0 fmt=f32\n"
                                    "VEC_UN op=exp dst=1 src=0 rows=1\nHALT"), CFG, races=True)
    with pytest.raises(ValueError, match="weight-stationary"):
        functional.Machine(CFG.with_(dataflow="os"))


def tiled_gemm_program(M, K, N, R, C, x_at, w_at, y_at) -> str:
    """y[M, N] = x[M, K] @ w[K, N], f32 in host memory, on an R x C array: per N tile, the
    K tiles accumulate; x's K tiles sit in UB rows [kt*M, kt*M + M)."""
    k_tiles, n_tiles = -(-K // R), -(-N // C)
    lines = []
    for kt in range(k_tiles):
        k = min(R, K - kt * R)
        last = kt == k_tiles - 1
        lines.append(f"DMA_LOAD host={x_at + 4 * kt * R} ub={kt * M} rows={M} cols={k} "
                     f"stride={4 * K} fmt=f32" + (" push=matrix" if last else ""))
    out_ub = k_tiles * M
    for nt in range(n_tiles):
        n = min(C, N - nt * C)
        for kt in range(k_tiles):
            k = min(R, K - kt * R)
            lines.append(f"LOAD_W src=host addr={w_at + 4 * (kt * R * N + nt * C)} k={k} n={n} "
                         f"stride={4 * N} fmt=f32")
            mode = "overwrite" if kt == 0 else "accumulate"
            tokens = ""
            if nt == 0 and kt == 0:
                tokens += " pop=dma"
            if kt == k_tiles - 1:
                tokens += " push=vector"
            if nt > 0 and kt == 0:
                tokens += " pop=vector"          # ACTIVATE read the accumulators
            lines.append(f"MATMUL ub={kt * M} acc=0 rows={M} mode={mode} swap=1{tokens}")
        tokens = " pop=matrix" + (" push=dma,matrix" if nt < n_tiles - 1 else " push=dma")
        lines.append(f"ACTIVATE acc=0 ub={out_ub + nt * M} rows={M} fn=identity{tokens}")
        lines.append(f"DMA_STORE host={y_at + 4 * nt * C} ub={out_ub + nt * M} rows={M} cols={n} "
                     f"stride={4 * N} fmt=f32 pop=vector")
    lines.append("HALT")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("mode", ["nearest_even", "truncate"])
def test_tiled_gemm_program_matches_bf16_numpy(mode, rng):
    M, K, N = 12, 29, 19                          # 4 K tiles and 3 N tiles on an 8x8 array
    cfg = CFG.with_(bf16_rounding=mode, ub_bytes=128 * 32)
    x = rng.standard_normal((M, K)).astype(np.float32)
    w = rng.standard_normal((K, N)).astype(np.float32)
    x_at, w_at, y_at = 0, 4096, 16384
    program = asm.assemble(tiled_gemm_program(M, K, N, 8, 8, x_at, w_at, y_at))
    memory = np.zeros(cfg.host_bytes, np.uint8)
    memory[x_at:x_at + x.nbytes] = x.view(np.uint8).ravel()
    memory[w_at:w_at + w.nbytes] = w.view(np.uint8).ravel()
    machine = functional.run(program, cfg, memory, races=True)
    y = memory[y_at:y_at + 4 * M * N].view(np.float32).reshape(M, N)
    xr, wr = round_bf16(x, mode), round_bf16(w, mode)
    # bit-exact against the same tiles summed in the same order ...
    expected = np.zeros((M, N), np.float32)
    for kt in range(0, K, 8):
        expected += xr[:, kt:kt + 8] @ wr[kt:kt + 8]
    assert np.array_equal(y, expected)
    # ... and within f32 summation error of the exact product of the rounded operands
    exact = xr.astype(np.float64) @ wr.astype(np.float64)
    bound = K * np.finfo(np.float32).eps * (np.abs(xr).astype(np.float64) @ np.abs(wr))
    assert np.all(np.abs(y - exact) <= bound)
    assert machine.macs == M * K * N


def test_the_documented_mlp_example_runs(rng):
    doc = (Path(__file__).resolve().parents[2] / "docs" / "systolic-isa.md").read_text()
    text = doc.split("<!-- example-program -->\n```\n", 1)[1].split("```", 1)[0]
    cfg = SystolicConfig(rows=8, cols=8, ub_bytes=4096, acc_bytes=1024, host_bytes=4096)
    x, w1, b1 = (rng.standard_normal(s).astype(np.float32) for s in [(16, 12), (12, 8), (8,)])
    w2, b2 = (rng.standard_normal(s).astype(np.float32) for s in [(8, 4), (4,)])
    memory = np.zeros(cfg.host_bytes, np.uint8)
    for address, array in [(0, x), (1024, w1), (1536, b1), (1600, w2), (1792, b2)]:
        memory[address:address + array.nbytes] = array.view(np.uint8).ravel()
    functional.run(asm.assemble(text), cfg, memory, races=True)
    y = memory[2048:2048 + 16 * 4 * 4].view(np.float32).reshape(16, 4)
    r = round_bf16
    h = np.maximum(r(x[:, :8]) @ r(w1[:8]) + r(x[:, 8:]) @ r(w1[8:]) + b1, 0)
    assert np.array_equal(y, r(h) @ r(w2) + b2)


def test_blas_threads_are_restored():
    functions = functional._openblas()
    if functions is None:
        pytest.skip("NumPy's BLAS is not a bundled OpenBLAS: blas_threads is a no-op here")
    get, _ = functions
    before = get()
    with functional.blas_threads(1):
        assert get() == 1
    assert get() == before


def test_the_speed_benchmark_computes_the_product():
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))   # `bench` is a top-level folder
    from bench import systolic_sim
    result = systolic_sim.bench(40, 16, "bf16", repeat=1)        # 3 K tiles x 3 N tiles
    assert result["macs"] == 40 ** 3 and result["rel_error"] < 1e-6
    assert systolic_sim.bench(24, 8, "int8", repeat=1)["rel_error"] == 0


def test_the_machine_loads_without_the_compiler_or_frontend():
    import subprocess
    import sys
    code = ("import sys, tessel.runtime.systolic.functional, tessel.runtime.systolic.asm; "
            "print(sorted(m for m in sys.modules if m.startswith(('tessel.compiler', "
            "'tessel.frontend', 'tessel.backends'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_vector_programs_for_softmax_layer_norm_and_max_pool(rng):
    """The vector ops compose into the model pieces a compiler needs (8 rows of 10 valid
    lanes in 16-lane rows; the padding lanes hold garbage that must not leak in)."""
    cfg = SystolicConfig(rows=16, cols=16, ub_bytes=128 * 64, acc_bytes=16 * 64, host_bytes=4096)
    program = asm.assemble("""
        VEC_RED op=max axis=lanes dst=20 src=0 rows=8 lanes=10       # softmax
        VEC_BIN op=sub dst=30 src0=0 src1=20 rows=8
        VEC_UN op=exp dst=30 src=30 rows=8
        VEC_RED op=sum axis=lanes dst=40 src=30 rows=8 lanes=10
        VEC_BIN op=div dst=50 src0=30 src1=40 rows=8
        VEC_RED op=sum axis=lanes dst=60 src=0 rows=8 lanes=10       # layer norm
        VEC_IMM op=mul dst=60 src=60 rows=8 imm=0.1
        VEC_BIN op=sub dst=70 src0=0 src1=60 rows=8
        VEC_BIN op=mul dst=80 src0=70 src1=70 rows=8
        VEC_RED op=sum axis=lanes dst=90 src=80 rows=8 lanes=10
        VEC_IMM op=mul dst=90 src=90 rows=8 imm=0.1
        VEC_IMM op=add dst=90 src=90 rows=8 imm=1e-5
        VEC_UN op=rsqrt dst=90 src=90 rows=8
        VEC_BIN op=mul dst=100 src0=70 src1=90 rows=8
        VEC_BIN op=mul dst=100 src0=100 src1=8 rows=8 src1_bcast=1  # gamma
        VEC_BIN op=add dst=100 src0=100 src1=9 rows=8 src1_bcast=1  # beta
        VEC_BIN op=max dst=110 src0=0 src1=4 rows=4                 # max-pool rows i, i+4
        HALT
    """)
    machine = Machine(cfg)
    x = (rng.standard_normal((8, 16)) * 3).astype(np.float32)
    x[:, 10:] = 1e30                                            # padding garbage
    gamma, beta = (rng.standard_normal(16).astype(np.float32) for _ in range(2))
    machine.ub[0:8], machine.ub[8], machine.ub[9] = x, gamma, beta
    validate(program, cfg, races=True)
    ub = machine.run(program).ub
    v = x[:, :10].astype(np.float64)
    softmax = np.exp(v - v.max(1, keepdims=True))
    softmax /= softmax.sum(1, keepdims=True)
    assert np.allclose(ub[50:58, :10], softmax, rtol=1e-6, atol=1e-7)
    centered = v - v.mean(1, keepdims=True)
    norm = centered / np.sqrt((centered ** 2).mean(1, keepdims=True) + 1e-5)
    assert np.allclose(ub[100:108, :10], norm * gamma[:10] + beta[:10], rtol=1e-5, atol=1e-5)
    assert np.array_equal(ub[110:114], np.maximum(x[0:4], x[4:8]))
