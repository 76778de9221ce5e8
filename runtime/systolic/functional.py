"""The functional simulator: executes a systolic program instruction by instruction with
NumPy, in program order (the validator guarantees that is the order every dependency
allows; docs/systolic-isa.md has the semantics).

    memory = np.zeros(host_bytes, np.uint8)        # the host image, changed in place
    machine = run(program, config, memory)         # validates first
    machine.ub, machine.acc                        # final on-chip state

Numerics, exactly:
- bf16 mode: LOAD_W rounds the tile and MATMUL rounds each input row to bf16
  (`round_bf16`, by `config.bf16_rounding`). A bf16 x bf16 product is exact in f32, so
  MATMUL is one f32 NumPy matmul over its T rows; only the order of the k-term f32
  summation is BLAS's. The result is added to (or stored in) the f32 accumulators.
- f32 mode: the same without rounding (f32 products round once, as an FMA-free array would).
- int8 mode: operands round half to even and saturate to [-128, 127]; products and sums
  are exact (an f64 matmul of integers below 2^53), accumulators are int32 and wrap.
- The vector unit computes in f32: + - * / min max exactly as IEEE f32; exp, log, tanh,
  sigmoid, gelu_tanh, rsqrt, pow in f64 rounded once to f32 (not NumPy's f32 SIMD
  approximations, which differ between CPUs); sums in order.
"""
from __future__ import annotations

import contextlib
import ctypes
from collections import deque
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from .config import SystolicConfig
from .isa import (ACTIVATIONS, BINARY_OPS, HOST_FORMATS, REDUCE_OPS, UNARY_OPS,
                  Instruction)
from .validate import validate

HOST_DTYPES = {"f32": np.float32, "bf16": np.uint16, "i8": np.int8, "i32": np.int32}
assert set(HOST_DTYPES) == set(HOST_FORMATS)


class MachineError(RuntimeError):
    """A program did something the validator would have refused (run with check=False)."""


# ----------------------------------------------------------------------------- rounding

def round_bf16(x, mode: str = "nearest_even") -> np.ndarray:
    """f32 values rounded to bf16 precision, as f32. "nearest_even": to nearest, ties to
    even; "truncate": the low 16 bits masked off. NaN stays NaN (quieted) in both modes;
    overflow past the largest bf16 rounds to inf (nearest_even)."""
    a = np.asarray(x, dtype=np.float32)
    bits = a.view(np.uint32) if a.flags.c_contiguous else np.ascontiguousarray(a).view(np.uint32)
    if mode == "nearest_even":
        out = (bits + (np.uint32(0x7FFF) + (bits >> 16 & np.uint32(1)))) & np.uint32(0xFFFF0000)
    elif mode == "truncate":
        out = bits & np.uint32(0xFFFF0000)
    else:
        raise ValueError(f"bf16 rounding mode {mode!r}: expected 'nearest_even' or 'truncate'")
    nan = np.isnan(a)
    if nan.any():
        out = np.where(nan, (bits | np.uint32(0x00400000)) & np.uint32(0xFFFF0000), out)
    return out.view(np.float32).reshape(a.shape)


def bf16_bits(x, mode: str = "nearest_even") -> np.ndarray:
    """f32 values -> uint16 bf16 bit patterns."""
    return (round_bf16(x, mode).view(np.uint32) >> 16).astype(np.uint16)


def bf16_to_f32(bits) -> np.ndarray:
    return (np.asarray(bits, np.uint16).astype(np.uint32) << 16).view(np.float32)


def round_int(x, lo: int, hi: int) -> np.ndarray:
    """Round half to even and saturate to [lo, hi]; NaN -> 0. Returns float64 integers."""
    v = np.rint(np.asarray(x, np.float64))
    v[np.isnan(v)] = 0.0
    return np.clip(v, lo, hi)


def operand_rounder(config: SystolicConfig):
    """The matrix unit's operand conversion for the configured multiply dtype."""
    if config.dtype == "bf16":
        mode = config.bf16_rounding
        return lambda x: round_bf16(x, mode)
    if config.dtype == "int8":
        return lambda x: round_int(x, -128, 127)
    return lambda x: np.asarray(x, np.float32)


# ----------------------------------------------------------------------------- f32 math

def _f64_once(fn):
    """An f32 function computed in f64 and rounded once: within a hair of 0.5 ulp of the
    exact value, and independent of NumPy's CPU-specific f32 SIMD approximations."""
    def f32_fn(*args):
        with np.errstate(all="ignore"):
            return fn(*(np.asarray(a, np.float64) for a in args)).astype(np.float32)
    return f32_fn


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))            # exp overflow -> inf -> 0: still right


def _gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def _compare(fn):
    return lambda a, b: fn(a, b).astype(np.float32)


UNARY = {
    "copy": lambda x: x.copy(), "identity": lambda x: x.copy(),
    "neg": np.negative, "abs": np.abs,
    "exp": _f64_once(np.exp), "log": _f64_once(np.log),
    "sqrt": np.sqrt,                                  # IEEE: correctly rounded in f32
    "rsqrt": _f64_once(lambda x: 1.0 / np.sqrt(x)),
    "recip": lambda x: np.float32(1) / x,
    "tanh": _f64_once(np.tanh), "sigmoid": _f64_once(_sigmoid),
    "relu": lambda x: np.maximum(x, np.float32(0)),
    "gelu_tanh": _f64_once(_gelu_tanh),
}
BINARY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
    "max": np.maximum, "min": np.minimum, "pow": _f64_once(np.power),
    "eq": _compare(np.equal), "ne": _compare(np.not_equal), "lt": _compare(np.less),
    "le": _compare(np.less_equal), "gt": _compare(np.greater), "ge": _compare(np.greater_equal),
}
# Reductions in order: cumulative sums are sequential in NumPy (np.sum is pairwise).
REDUCE = {
    "sum": lambda x, axis: np.cumsum(x, axis=axis, dtype=np.float32).take(-1, axis=axis),
    "max": lambda x, axis: np.max(x, axis=axis),
    "min": lambda x, axis: np.min(x, axis=axis),
}

assert set(ACTIVATIONS) | set(UNARY_OPS) <= set(UNARY)
assert set(BINARY_OPS) == set(BINARY) and set(REDUCE_OPS) == set(REDUCE)


# ----------------------------------------------------------------------------- BLAS threads

@lru_cache(maxsize=1)
def _openblas():
    """(get, set) thread-count functions of the OpenBLAS NumPy wheels bundle, or None."""
    libs = Path(np.__file__).resolve().parent.parent / "numpy.libs"
    for path in sorted(libs.glob("libscipy_openblas*.so*")) + sorted(libs.glob("libopenblas*.so*")):
        try:
            lib = ctypes.CDLL(str(path))
        except OSError:
            continue
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("64_", ""):
                get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                put = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                if get is not None and put is not None:
                    put.argtypes = [ctypes.c_int]
                    return get, put
    return None


@contextlib.contextmanager
def blas_threads(count: int | None):
    """Run NumPy's BLAS on `count` threads inside the block (process-wide; restored after).
    The simulator's products are many small matmuls (T x k x n with k, n <= 128..256):
    thread wake-ups cost more than they save, ruinously so on a loaded machine. A no-op
    when count is None or NumPy's BLAS is not a bundled OpenBLAS."""
    functions = _openblas() if count is not None else None
    if functions is None:
        yield
        return
    get, put = functions
    before = get()
    put(count)
    try:
        yield
    finally:
        put(before)


# ----------------------------------------------------------------------------- the machine

class Machine:
    """On-chip state (UB, accumulators, weight FIFO, active tile) over a host image."""

    def __init__(self, config: SystolicConfig, memory: np.ndarray | None = None,
                 blas_thread_count: int | None = 1):
        if config.dataflow != "ws":
            raise ValueError(f"config.dataflow={config.dataflow!r}: programs run on the "
                             "weight-stationary machine; 'os'/'is' are SCALE-Sim timing modes")
        self.config = config
        if memory is None:
            memory = np.zeros(config.host_bytes, np.uint8)
        if not (isinstance(memory, np.ndarray) and memory.dtype == np.uint8 and memory.ndim == 1
                and memory.flags.c_contiguous and memory.flags.writeable):
            raise TypeError("host memory must be a writable, contiguous 1-d uint8 NumPy array, "
                            f"got {type(memory).__name__} {getattr(memory, 'dtype', '')}")
        self.memory = memory
        self.ub = np.zeros((config.ub_rows, config.lanes), np.float32)
        acc_dtype = np.int32 if config.dtype == "int8" else np.float32
        self.acc = np.zeros((config.acc_rows, config.lanes), acc_dtype)
        self.fifo: deque[np.ndarray] = deque()
        self.active: np.ndarray | None = None      # the active tile, k x n, rounded
        self.round_operand = operand_rounder(config)
        self.tile_dtype = np.float64 if config.dtype == "int8" else np.float32
        self.blas_thread_count = blas_thread_count
        self.macs = 0                              # useful multiply-adds executed (T*k*n)
        self.executed = 0

    def run(self, program: Sequence[Instruction]) -> "Machine":
        # inf/NaN follow IEEE silently; small matmuls run best on one BLAS thread
        with np.errstate(all="ignore"), blas_threads(self.blas_thread_count):
            for ins in program:
                EXECUTE[ins.name](self, ins)
                self.executed += 1
                if ins.name == "HALT":
                    break
        return self

    # --- host memory views ----------------------------------------------------------
    def host_view(self, address: int, rows: int, stride: int, count: int, fmt: str):
        """rows x count elements of `fmt`, row r at byte address + r*stride (a view)."""
        dtype = np.dtype(HOST_DTYPES[fmt])
        try:
            return np.ndarray((rows, count), dtype, buffer=self.memory, offset=address,
                              strides=(stride, dtype.itemsize))
        except (TypeError, ValueError) as e:
            raise MachineError(f"host access at byte {address} ({rows} rows x {count} {fmt}, "
                               f"stride {stride}) outside the {self.memory.size}-byte host "
                               "memory") from e

    def read_host(self, address, rows, stride, count, fmt) -> np.ndarray:
        """The elements as f32 (bf16/i8/i32 convert; i32 rounds to nearest beyond 2^24)."""
        raw = self.host_view(address, rows, stride, count, fmt)
        return bf16_to_f32(raw) if fmt == "bf16" else raw.astype(np.float32)

    def write_host(self, address, stride, values: np.ndarray, fmt: str):
        view = self.host_view(address, values.shape[0], stride, values.shape[1], fmt)
        view[...] = encode_host(values, fmt, self.config.bf16_rounding)

    def _rows(self, start: int, rows: int, broadcast: int = 0) -> np.ndarray:
        if broadcast:
            return np.broadcast_to(self.ub[start], (rows, self.ub.shape[1]))
        return self.ub[start:start + rows]


def encode_host(values: np.ndarray, fmt: str, bf16_rounding: str = "nearest_even") -> np.ndarray:
    """f32 values in a host format: bf16 rounds by mode; i8/i32 round half to even and
    saturate (NaN -> 0)."""
    if fmt == "f32":
        return values.astype(np.float32)
    if fmt == "bf16":
        return bf16_bits(values, bf16_rounding)
    info = np.iinfo(HOST_DTYPES[fmt])
    return round_int(values, info.min, info.max).astype(HOST_DTYPES[fmt])


# ----------------------------------------------------------------------------- semantics

def _dma_load(m: Machine, i):
    m.ub[i.ub:i.ub + i.rows, i.lane:i.lane + i.cols] = \
        m.read_host(i.host, i.rows, i.stride, i.cols, i.fmt)


def _dma_store(m: Machine, i):
    m.write_host(i.host, i.stride, m.ub[i.ub:i.ub + i.rows, i.lane:i.lane + i.cols], i.fmt)


def _load_w(m: Machine, i):
    rows, per_row = (i.n, i.k) if i.transpose else (i.k, i.n)
    if i.src == "host":
        source = m.read_host(i.addr, rows, i.stride, per_row, i.fmt)
    else:
        source = m.ub[i.addr + i.stride * np.arange(rows), :per_row]
    tile = source.T if i.transpose else source
    if len(m.fifo) >= m.config.weight_fifo_depth:
        raise MachineError(f"LOAD_W: the weight FIFO already holds "
                           f"{m.config.weight_fifo_depth} tiles")
    m.fifo.append(np.ascontiguousarray(m.round_operand(tile), dtype=m.tile_dtype))


def _matmul(m: Machine, i):
    if i.swap:
        if not m.fifo:
            raise MachineError("MATMUL swap=1 with an empty weight FIFO")
        m.active = m.fifo.popleft()
    if m.active is None:
        raise MachineError("MATMUL with no active weight tile")
    k, n = m.active.shape
    x = m.round_operand(m.ub[i.ub:i.ub + i.rows, i.lane:i.lane + k])
    y = np.matmul(x.astype(m.tile_dtype, copy=False), m.active)
    out = m.acc[i.acc:i.acc + i.rows]
    if m.config.dtype == "int8":
        y = y.astype(np.int64)
        if i.mode == "accumulate":
            y += out[:, :n]
        out[:, :n] = y.astype(np.int32)             # int32 wraps, as the hardware's adders
    elif i.mode == "accumulate":
        out[:, :n] += y
    else:
        out[:, :n] = y
    if i.mode == "overwrite":
        out[:, n:m.config.cols] = 0
    m.macs += i.rows * k * n


def _activate(m: Machine, i):
    cols = m.config.cols
    v = m.acc[i.acc:i.acc + i.rows, :cols].astype(np.float32) * np.float32(i.scale)
    if i.bias:
        v += m.ub[i.bias_ub, :cols]
    m.ub[i.ub:i.ub + i.rows, :cols] = UNARY[i.fn](v)


def _vec_bin(m: Machine, i):
    a = m._rows(i.src0, i.rows, i.src0_bcast)
    b = m._rows(i.src1, i.rows, i.src1_bcast)
    m.ub[i.dst:i.dst + i.rows] = BINARY[i.op](a, b)


def _vec_imm(m: Machine, i):
    x = m._rows(i.src, i.rows, i.src_bcast)
    imm = np.float32(i.imm)
    m.ub[i.dst:i.dst + i.rows] = BINARY[i.op](imm, x) if i.rev else BINARY[i.op](x, imm)


def _vec_un(m: Machine, i):
    m.ub[i.dst:i.dst + i.rows] = UNARY[i.op](m._rows(i.src, i.rows, i.src_bcast))


def _vec_sel(m: Machine, i):
    mask = m._rows(i.mask, i.rows)
    m.ub[i.dst:i.dst + i.rows] = np.where(mask != 0, m._rows(i.src0, i.rows),
                                          m._rows(i.src1, i.rows))


def _vec_red(m: Machine, i):
    block = m.ub[i.src:i.src + i.rows, :i.lanes]
    if i.axis == "rows":
        m.ub[i.dst, :i.lanes] = REDUCE[i.op](block, 0)
    else:
        m.ub[i.dst:i.dst + i.rows] = REDUCE[i.op](block, 1)[:, None]


def _vec_trans(m: Machine, i):
    block = m.ub[i.src:i.src + i.rows, :i.lanes].copy()
    m.ub[i.dst:i.dst + i.lanes, :i.rows] = block.T


def _nothing(m: Machine, i):
    pass


EXECUTE = {
    "DMA_LOAD": _dma_load, "DMA_STORE": _dma_store, "LOAD_W": _load_w, "MATMUL": _matmul,
    "ACTIVATE": _activate, "VEC_BIN": _vec_bin, "VEC_IMM": _vec_imm, "VEC_UN": _vec_un,
    "VEC_SEL": _vec_sel, "VEC_RED": _vec_red, "VEC_TRANS": _vec_trans,
    "SYNC": _nothing, "HALT": _nothing,
}


def run(program: Sequence[Instruction], config: SystolicConfig,
        memory: np.ndarray | None = None, check: bool = True, races: bool = False) -> Machine:
    """Validate (unless check=False) and execute `program`; `memory` (uint8 host image,
    default zeros of config.host_bytes) is updated in place. Returns the machine."""
    machine = Machine(config, memory)
    if check:
        validate(program, config, host_bytes=machine.memory.size, races=races)
    return machine.run(program)
