"""GEMM in LLVM IR: cache-blocked, packed, register-tiled, with fused epilogues.

    C[b] = epilogue(A[b] @ B[b])      b < batch, A[b]: M x K, B[b]: K x N, C[b]: M x N

Every operand is a base pointer plus (batch, row, column) strides in elements, all
compile-time constants (shapes are static, XLA-style: one kernel per shape), so any
contracting layout -- transposed operands, dot_general after the backend canonicalizes
it to batch x rows x contracting -- goes through the same packing routines.

The large-shape kernel follows BLIS's loop structure:

    for jc in N step nc:                        B block kc x nc lives in L3
      for pc in K step kc:
        pack B[pc:pc+kc, jc:jc+nc]  -> Bp       panels of nr columns, k-major, zero-padded
        for ic in M step mc:                    A block mc x kc lives in L2
          pack A[ic:ic+mc, pc:pc+kc] -> Ap      panels of mr rows, k-major, zero-padded
          for jr in nc step nr:                 B micro-panel kc x nr stays in L1
            for ir in mc step mr:
              micro-kernel: an mr x nr tile of C in vector registers, one broadcast of
              A and nr/lanes vector FMAs per row per k; then add/epilogue/store.

The mr x nr tile is sized to the vector register file (`micro_tile`), the block sizes
to the caches (`CACHES`, `blocking`). Partial tiles (M, N not multiples of mr, nr) are
computed in full on zero-padded panels and stored through a scalar edge path. The
epilogue (e.g. bias add + relu from output fusion) runs on each tile after the last K
block, before the store.

Small problems take other paths (`choose_path`): straight loops when every dimension is
tiny, a streaming dot/axpy kernel without packing when M == 1 or N == 1, and a plain
fill (C = epilogue(0)) when K == 0.

Parallelism: the (batch, M-part, N-part) grid of the output is cut into tasks
(`partition`, a small cost model); each task runs the loop nest above on its part with
its own packing buffers (A and B blocks are packed per task: no sharing, no barriers;
the cost is re-packing B once per M-part and A once per N-part, which the cost model
charges). Tasks run on tessel's thread pool (`runtime_support.parallel_for`) when the
work is above `PARALLEL_MIN_FLOPS`; below it, or with one thread, the entry calls the
task function directly.

C ABI of the generated entry:  void name(ptr A, ptr B, ptr C, ptr scratch, ptr op0, ...)
where scratch holds `scratch_bytes(spec)` bytes (any alignment) and op0... are the
spec's `epilogue_operands` extra buffers, handed to the epilogue callback.
"""
from __future__ import annotations

import ctypes
import itertools
import os
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np
from llvmlite import ir

from . import loops as L
from .llvm_target import JitModule, TargetInfo, host

KiB, MiB = 1024, 1024 * 1024


# --------------------------------------------------------------------------- hardware data

@dataclass(frozen=True)
class Caches:
    """Data cache sizes one core can count on, in bytes."""
    l1d: int
    l2: int
    l3: int


# Keyed by LLVM's CPU name (`TargetInfo.cpu`). L1d and L2 are per core; L3 is what one
# core's working set may occupy (the shared L3 of a CCD / socket).
CACHES = {
    "znver4": Caches(32 * KiB, 1 * MiB, 32 * MiB),          # AMD Zen 4
    "znver3": Caches(32 * KiB, 512 * KiB, 32 * MiB),        # AMD Zen 3
    "skylake-avx512": Caches(32 * KiB, 1 * MiB, 8 * MiB),   # Intel Skylake-SP
    "icelake-server": Caches(48 * KiB, 1280 * KiB, 16 * MiB),
    "sapphirerapids": Caches(48 * KiB, 2 * MiB, 32 * MiB),
    "apple-m1": Caches(64 * KiB, 4 * MiB, 8 * MiB),
}
DEFAULT_CACHES = Caches(32 * KiB, 256 * KiB, 8 * MiB)      # conservative for unknown CPUs

# Share of each cache level the blocked kernel plans to fill with one packed block:
#   L1: the B micro-panel, kc x nr, reused by every A micro-panel of the block (kc is
#       chosen from it; A micro-panels stream through from L2 -- measured on Zen 4,
#       a full L1 of B, kc = 256 for 14 x 32 f32, beats half of it, kc = 128, by ~5%)
#   L2: the packed A block, mc x kc        (mc is chosen from it)
#   L3: the packed B block, kc x nc        (nc is chosen from it)
CACHE_SHARE = {"l1d": 1.0, "l2": 0.5, "l3": 0.5}

# Problems below this many flops (2*M*N*K per batch element, summed) run on the calling
# thread: handing work to the pool costs a few microseconds, which is what ~100 kflop
# of this kernel takes on one core. Measured with bench/gemm_bench.py.
PARALLEL_MIN_FLOPS = 4_000_000
# Work of one task is at least this many flops (keeps per-task packing overhead low).
MIN_TASK_FLOPS = 1_000_000
# A dimension counts as tiny (straight loops, no packing) up to this size.
TINY_DIM = 16
# The tiny kernel accumulates this many rows of C at once (independent FMA chains to
# cover the FMA latency).
TINY_ROWS_AT_ONCE = 4
# The axpy form of matrix-vector products adds this many columns per pass over C.
AXPY_COLUMNS = 4


# --------------------------------------------------------------------------- the spec

_DTYPES = {"f32": (ir.FloatType(), 4, np.float32), "f64": (ir.DoubleType(), 8, np.float64)}

Epilogue = Callable[[ir.IRBuilder, list, ir.Value, ir.Value, tuple], list]


def _dtype_name(dtype) -> str:
    """"f32" / "f64" from an IR name, a tessel DType or anything NumPy takes as a dtype."""
    name = str(dtype)
    if name not in _DTYPES:
        try:
            name = {"float32": "f32", "float64": "f64"}.get(np.dtype(dtype).name, name)
        except TypeError:
            pass
    if name not in _DTYPES:
        raise ValueError(f"GEMM supports f32 and f64, got {dtype!r}")
    return name


def _strides(given, rows: int, cols: int) -> tuple[int, int, int]:
    """(batch, row, col) element strides; default: contiguous row-major batches."""
    if given is None:
        return (rows * cols, cols, 1)
    given = tuple(int(s) for s in given)
    if len(given) == 2:
        return (_span(given, rows, cols),) + given
    if len(given) != 3:
        raise ValueError(f"strides must be (row, col) or (batch, row, col), got {given}")
    return given


def _span(strides2, rows, cols) -> int:
    """Batch stride for 2-D strides: one past the last element of a matrix."""
    return (rows - 1) * abs(strides2[0]) + (cols - 1) * abs(strides2[1]) + 1 if rows and cols else 0


@dataclass(frozen=True)
class GemmSpec:
    """One static GEMM: C[b] = epilogue(A[b] @ B[b]).

    Strides are in elements, (row, col) or (batch, row, col); the default is contiguous
    row-major. `epilogue(builder, tile_values, row_index, col_index, operands)` emits IR
    that maps a finished C tile to the values to store:
      - tile_values[i][j] is a vector (or a scalar: width 1) holding
        C[row_index + i, col_index + j*w : col_index + (j+1)*w], w its width;
      - row_index is the flattened row `b*M + m` (the row of C seen as (batch*M) x N),
        col_index the column; both i64 values;
      - operands are the `epilogue_operands` extra pointer arguments of the kernel.
    It returns values of the same structure and types. It is applied exactly once to
    every element of C (after the last K block), also when K == 0.
    """
    dtype: str
    M: int
    N: int
    K: int
    batch: int = 1
    a_strides: tuple | None = None
    b_strides: tuple | None = None
    c_strides: tuple | None = None
    epilogue: Epilogue | None = field(default=None, compare=False)
    epilogue_operands: int = 0

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("dtype", _dtype_name(self.dtype))
        if min(self.M, self.N, self.K, self.batch) < 0:
            raise ValueError(f"negative GEMM dimension in {self}")
        set_("a_strides", _strides(self.a_strides, self.M, self.K))
        set_("b_strides", _strides(self.b_strides, self.K, self.N))
        set_("c_strides", _strides(self.c_strides, self.M, self.N))

    @property
    def itemsize(self) -> int:
        return _DTYPES[self.dtype][1]

    @property
    def flops(self) -> int:
        return 2 * self.batch * self.M * self.N * self.K


# --------------------------------------------------------------------------- planning

@dataclass(frozen=True)
class Blocking:
    mr: int          # rows of the register tile (A broadcasts)
    nr: int          # columns of the register tile (nr // lanes vectors)
    lanes: int
    kc: int          # K block
    mc: int          # M block (multiple of mr)
    nc: int          # N block (multiple of nr)


def micro_tile(target: TargetInfo, itemsize: int, n: int | None = None) -> tuple[int, int]:
    """(mr, nr) of the register tile for this target, element size and N.

    Each k step broadcasts mr elements of A against nv vectors of B into mr x nv
    accumulators: mr*nv + nv + 1 <= registers. nv = 2 (nr = 2 lanes) and the largest
    mr that fits: AVX-512 (32 registers) 14 x 32 f32 / 14 x 16 f64 (28 accumulators,
    4 FMA latencies x 2 FMA pipes = 8 needed to stay busy), AVX2 (16) 6 x 16 f32.
    Wider tiles (9 x 48, 6 x 64 f32) measured the same on Zen 4 and waste more at the
    N edge. Narrow outputs (N <= lanes) take nv = 1 with the same mr (so the A
    packing kernel is shared): 256x10x512 f32 runs 1.6x faster than with nv = 2.
    """
    lanes = target.vector_lanes(itemsize)
    mr = (target.vector_registers - 3) // 2
    nv = 1 if n is not None and n <= lanes else 2
    return mr, nv * lanes


def blocking(spec: GemmSpec, target: TargetInfo | None = None,
             tile: tuple[int, int] | None = None) -> Blocking:
    """Register tile and cache blocks for `spec` on `target` (see CACHE_SHARE)."""
    target = target or host()
    caches = CACHES.get(target.cpu, DEFAULT_CACHES)
    size = spec.itemsize
    mr, nr = tile or micro_tile(target, size, spec.N)
    kc = _round_down(int(caches.l1d * CACHE_SHARE["l1d"]) // (nr * size), 8, 64)
    mc = _round_down(int(caches.l2 * CACHE_SHARE["l2"]) // (kc * size), mr, mr)
    nc = _round_down(int(caches.l3 * CACHE_SHARE["l3"]) // (kc * size), nr, nr)
    return Blocking(mr, nr, target.vector_lanes(size), kc, mc, nc)


def _balanced(extent: int, block: int, multiple: int) -> int:
    """The block size that covers `extent` in as many blocks as `block` would, evenly
    (a multiple of `multiple`): 1024 by 504 -> 3 blocks of 350 (mr 14), not 504+504+16."""
    if extent <= 0:
        return block
    blocks = _ceil_div(extent, block)
    return min(block, _round_up(_ceil_div(extent, blocks), multiple))


def _round_down(x: int, multiple: int, minimum: int) -> int:
    return max(minimum, x // multiple * multiple)


def _round_up(x: int, multiple: int) -> int:
    return -(-x // multiple) * multiple


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def choose_path(spec: GemmSpec) -> str:
    """Which kernel computes `spec`: empty | fill | tiny | gemv | blocked."""
    if spec.batch == 0 or spec.M == 0 or spec.N == 0:
        return "empty"
    if spec.K == 0:
        return "fill"
    if max(spec.M, spec.N, spec.K) <= TINY_DIM:
        return "tiny"
    if spec.M == 1 or spec.N == 1:
        return "gemv"
    return "blocked"


@dataclass(frozen=True)
class Partition:
    """The output cut into tasks: pb groups of bt batch elements x pm row parts of mt
    rows x pn column parts of nt columns."""
    pb: int
    pm: int
    pn: int
    bt: int
    mt: int
    nt: int

    @property
    def tasks(self) -> int:
        return self.pb * self.pm * self.pn


def partition(spec: GemmSpec, blk: Blocking, threads: int) -> Partition:
    """Cut the output into tasks for `threads` threads (cost model).

    A task's time ~ its FMAs (rows rounded up to whole tiles) plus its packing: it packs
    A (mt x K) and B (K x nt) for each of its bt batch elements, PACK_COST FMA-lanes per
    element. The parallel time is ceil(tasks / threads) task times; the cheapest grid
    of at most 4 x threads tasks wins (more tasks than threads lets the pool balance a
    busy machine). One task when the problem is below PARALLEL_MIN_FLOPS.
    """
    whole = Partition(1, 1, 1, spec.batch, spec.M, spec.N)
    if threads <= 1 or spec.flops < PARALLEL_MIN_FLOPS:
        return whole
    best, max_tasks = (None, whole), 4 * threads
    for pb, pm, pn in itertools.product(range(1, max_tasks + 1), repeat=3):
        tasks = pb * pm * pn
        bt = _ceil_div(spec.batch, pb)
        mt = _round_up(_ceil_div(spec.M, pm), blk.mr)
        nt = _round_up(_ceil_div(spec.N, pn), blk.nr)
        if tasks > max_tasks or _idle_part(spec.batch, bt, pb) or _idle_part(
                spec.M, mt, pm) or _idle_part(spec.N, nt, pn):
            continue
        if tasks > 1 and 2 * bt * mt * nt * spec.K < MIN_TASK_FLOPS:
            continue
        task_time = bt * (mt * nt * spec.K + PACK_COST * spec.K * (mt + nt) * blk.lanes)
        cost = _ceil_div(tasks, threads) * task_time
        if best[0] is None or cost < best[0]:
            best = (cost, Partition(pb, pm, pn, bt, min(mt, spec.M), min(nt, spec.N)))
    return best[1]


def _idle_part(extent: int, size: int, parts: int) -> bool:
    return (parts - 1) * size >= extent


# One packed element costs about as much as PACK_COST vector FMAs' worth of lanes.
PACK_COST = 0.5


@dataclass(frozen=True)
class Plan:
    """How `spec` is computed: the kernel path, and for `blocked` the blocks and tasks."""
    path: str
    blocking: Blocking | None = None
    partition: Partition | None = None


def plan(spec: GemmSpec, target: TargetInfo | None = None, threads: int | None = None,
         tile: tuple[int, int] | None = None) -> Plan:
    path = choose_path(spec)
    if path != "blocked":
        return Plan(path)
    blk = blocking(spec, target, tile)
    parts = partition(spec, blk, threads or _default_threads())
    blk = replace(blk, kc=_balanced(spec.K, blk.kc, 1),
                  mc=_balanced(parts.mt, blk.mc, blk.mr),
                  nc=_balanced(parts.nt, blk.nc, blk.nr))
    return Plan(path, blk, parts)


def _default_threads() -> int:
    try:
        from . import runtime_support
        return int(runtime_support.num_threads())
    except (ImportError, AttributeError):
        return int(os.environ.get("TESSEL_NUM_THREADS", 0)) or os.cpu_count() or 1


def _thread_pool_ready() -> bool:
    """Start tessel's thread pool and make `tessel_parallel_for` resolvable by JIT code
    (the runtime registers it with LLVM's process symbol table); False without one."""
    try:
        from . import runtime_support
    except ImportError:
        return False
    runtime_support.parallel_for_address()
    return True


def _parallel_for(module: ir.Module) -> ir.Function:
    """`void tessel_parallel_for(void (*fn)(ctx, begin, end), ptr ctx, i64 n, i64 grain)`
    (runtime_support): runs fn over chunks of [0, n) on the pool, returns when done."""
    fn = module.globals.get("tessel_parallel_for")
    if fn is None:
        fnty = ir.FunctionType(ir.VoidType(), [L.PTR, L.PTR, L.INDEX, L.INDEX])
        fn = ir.Function(module, fnty, name="tessel_parallel_for")
    return fn


# --------------------------------------------------------------------------- scratch

ALIGN = 64      # bytes; packed panels are aligned for full-width vector loads


def _slot_bytes(spec: GemmSpec, blk: Blocking) -> int:
    """Packing buffers of one task: Ap (mc x kc) and Bp (kc x nc), each aligned."""
    a = _round_up(blk.mc * blk.kc * spec.itemsize, ALIGN)
    b = _round_up(blk.kc * blk.nc * spec.itemsize, ALIGN)
    return a + b


def scratch_bytes(spec: GemmSpec, target: TargetInfo | None = None,
                  threads: int | None = None, tile=None) -> int:
    """Bytes of scratch the kernel for `spec` needs (its pointer needs no alignment).
    Pass the `target`, `threads` and `tile` given to `emit_gemm`."""
    return _scratch_bytes(spec, plan(spec, target, threads, tile))


def _scratch_bytes(spec: GemmSpec, how: Plan) -> int:
    if how.path == "blocked":
        return ALIGN + how.partition.tasks * _slot_bytes(spec, how.blocking)
    if how.path == "gemv":
        return ALIGN + max(spec.M, spec.N) * spec.itemsize
    return 0


# --------------------------------------------------------------------------- emission

def emit_gemm(module: ir.Module, spec: GemmSpec, name: str, *,
              target: TargetInfo | None = None, threads: int | None = None,
              tile: tuple[int, int] | None = None) -> ir.Function:
    """Define `void name(ptr A, ptr B, ptr C, ptr scratch, ptr op...)` in `module`.

    `threads` caps the tasks the kernel is cut into (default: the thread pool's size);
    `tile` overrides the register tile (mr, nr), for tuning.
    """
    return _Emitter(module, spec, name, target or host(),
                    threads or _default_threads(), tile).emit()


class _Emitter:
    def __init__(self, module, spec, name, target, threads, tile):
        self.module, self.spec, self.name, self.target = module, spec, name, target
        self.elem, self.size, _ = _DTYPES[spec.dtype]
        how = plan(spec, target, threads, tile)
        self.path, self.blk, self.parts = how.path, how.blocking, how.partition
        lanes = target.vector_lanes(self.size)
        self.lanes = lanes
        self.vec = L.vector(self.elem, lanes)

    # ---------------------------------------------------------------- functions

    def _function(self, name, args, linkage="internal") -> tuple[ir.Function, ir.IRBuilder]:
        fn = ir.Function(self.module, ir.FunctionType(ir.VoidType(), args), name=name)
        fn.linkage = linkage
        return fn, ir.IRBuilder(fn.append_basic_block("entry"))

    def emit(self) -> ir.Function:
        nops = self.spec.epilogue_operands
        fn, b = self._function(self.name, [L.PTR] * (4 + nops), linkage="external")
        a_ptr, b_ptr, c_ptr, scratch = fn.args[:4]
        for arg, name_ in zip(fn.args, ["A", "B", "C", "scratch"] +
                              [f"op{i}" for i in range(nops)]):
            arg.name = name_
        for arg in fn.args[:2]:
            arg.add_attribute("noalias")     # read only: may overlap each other
        c_ptr.add_attribute("noalias")
        scratch.add_attribute("noalias")
        ctx = self._make_context(b, fn.args, _align_up(b, scratch))
        {"empty": lambda: None,
         "fill": lambda: self._emit_fill(b, ctx),
         "tiny": lambda: self._emit_tiny(b, ctx),
         "gemv": lambda: self._emit_gemv(b, ctx),
         "blocked": lambda: self._emit_blocked(b, ctx)}[self.path]()
        b.ret_void()
        return fn

    def _make_context(self, b, args, scratch) -> ir.Value:
        """The kernel's pointers in a stack array: A, B, C, scratch (aligned), op..."""
        ctx = L.alloca_once(b, ir.ArrayType(L.PTR, len(args)), name="ctx")
        values = [args[0], args[1], args[2], scratch, *args[4:]]
        for i, value in enumerate(values):
            L.store(b, value, L.gep(b, ctx, L.PTR, i))
        return ctx

    def _ctx(self, b, ctx) -> tuple:
        """(A, B, C, scratch, operands) loaded from a context array."""
        loaded = [L.load(b, L.gep(b, ctx, L.PTR, i), L.PTR)
                  for i in range(4 + self.spec.epilogue_operands)]
        return loaded[0], loaded[1], loaded[2], loaded[3], tuple(loaded[4:])

    # ---------------------------------------------------------------- element access

    def _at(self, b, base, strides, batch, row, col):
        """&X[batch, row, col] for strides (batch, row, col)."""
        return L.gep(b, base, self.elem,
                     L.offset(b, (batch, strides[0]), (row, strides[1]), (col, strides[2])))

    def _finish(self, b, values, row, col, operands, accumulate_from=None):
        """Apply the epilogue to a tile (list of rows of values)."""
        if self.spec.epilogue is None:
            return values
        out = self.spec.epilogue(b, values, row, col, operands)
        if len(out) != len(values) or any(len(o) != len(v) for o, v in zip(out, values)):
            raise ValueError("the GEMM epilogue must return a tile shaped like its input")
        return out

    def _flat_row(self, b, batch, row):
        return L.add(b, L.mul(b, batch, self.spec.M), row)

    # ---------------------------------------------------------------- K == 0: fill

    def _emit_fill(self, b, ctx):
        spec = self.spec
        _, _, c, _, ops = self._ctx(b, ctx)
        zero = L.zeros(self.elem)
        with L.loop_nest(b, (spec.batch, spec.M, spec.N), name="fill", **AS_WRITTEN) as (bi, i, j):
            (v,), = self._finish(b, [[zero]], self._flat_row(b, bi, i), j, ops)
            L.store(b, v, self._at(b, c, spec.c_strides, bi, i, j))

    # ---------------------------------------------------------------- tiny: straight loops

    def _emit_tiny(self, b, ctx):
        """Every dimension <= TINY_DIM: no packing; each row of C is accumulated in
        vectors across N (chunks of `lanes`, the last of exactly the remaining width),
        one broadcast of A[i, k] times a row of B per k."""
        spec = self.spec
        a, bm, c, _, ops = self._ctx(b, ctx)
        chunks = [(j, min(self.lanes, spec.N - j)) for j in range(0, spec.N, self.lanes)]
        rows = TINY_ROWS_AT_ONCE
        with L.for_range(b, spec.batch, name="t") as bi:
            for i0 in range(0, spec.M, rows):      # rows at once: independent FMA chains
                group = range(i0, min(i0 + rows, spec.M))
                accs = {(i, j): L.zeros(L.vector(self.elem, w)) for i in group for j, w in chunks}
                for k in range(spec.K):             # K <= TINY_DIM: straight-line code
                    b_row = {j: self._load_row(b, bm, spec.b_strides, bi, k, j, w)
                             for j, w in chunks}
                    for i in group:
                        x = L.load(b, self._at(b, a, spec.a_strides, bi, i, k), self.elem)
                        for j, w in chunks:
                            accs[i, j] = L.fma(b, L.splat(b, x, w), b_row[j], accs[i, j])
                for (i, j), acc in accs.items():
                    (v,), = self._finish(b, [[acc]], self._flat_row(b, bi, i), L.const(j), ops)
                    self._store_row(b, v, c, spec.c_strides, bi, i, j)

    def _load_row(self, b, base, strides, batch, row, col, width):
        """X[batch, row, col : col + width] as a <width x T> vector."""
        if strides[2] == 1:
            return L.load_vector(b, self._at(b, base, strides, batch, row, col),
                                 L.vector(self.elem, width))
        v = ir.Constant(L.vector(self.elem, width), ir.Undefined)
        for lane in range(width):
            x = L.load(b, self._at(b, base, strides, batch, row, col + lane), self.elem)
            v = b.insert_element(v, x, L.const(lane, L.I32))
        return v

    def _store_row(self, b, value, base, strides, batch, row, col):
        """X[batch, row, col : col + width] = value."""
        if strides[2] == 1:
            L.store_vector(b, value, self._at(b, base, strides, batch, row, col))
            return
        for lane in range(value.type.count):
            L.store(b, b.extract_element(value, L.const(lane, L.I32)),
                    self._at(b, base, strides, batch, row, col + lane))

    # ---------------------------------------------------------------- gemv

    def _emit_gemv(self, b, ctx):
        """M == 1 or N == 1: out[r] = sum_k X[r, k] y[k], streaming, no packing.

        N == 1: X = A, y = B[:, 0], out = C[:, 0].  M == 1: X = B^T, y = A[0, :],
        out = C[0, :]. With X's k stride 1 each output is a vector dot product; with
        X's r stride 1 the kernel streams axpys over k into a contiguous accumulator
        in scratch; otherwise it falls back to scalar dots.
        """
        spec = self.spec
        a, bm, c, scratch, ops = self._ctx(b, ctx)
        if spec.N == 1:
            rows, x, xs = spec.M, a, (spec.a_strides[0], spec.a_strides[1], spec.a_strides[2])
            y, ys = bm, (spec.b_strides[0], spec.b_strides[1])
            out_stride = spec.c_strides[1]
        else:
            rows, x, xs = spec.N, bm, (spec.b_strides[0], spec.b_strides[2], spec.b_strides[1])
            y, ys = a, (spec.a_strides[0], spec.a_strides[2])
            out_stride = spec.c_strides[2]

        def position(bi, r):   # (row_index, col_index) of out[r] in C
            if spec.N == 1:
                return self._flat_row(b, bi, r), L.const(0)
            return self._flat_row(b, bi, 0), r

        with L.for_range(b, spec.batch, name="batch", **AS_WRITTEN) as bi:
            xb = L.gep(b, x, self.elem, L.mul(b, bi, xs[0]))
            yb = L.gep(b, y, self.elem, L.mul(b, bi, ys[0]))
            cb = L.gep(b, c, self.elem, L.mul(b, bi, spec.c_strides[0]))
            if xs[1] == 1 and xs[2] != 1:
                self._gemv_axpy(b, xb, xs, yb, ys[1], rows, scratch)
                source = lambda r: L.load(b, L.gep(b, scratch, self.elem, r), self.elem)  # noqa: E731
            else:
                source = lambda r: self._dot(b, L.gep(b, xb, self.elem, L.mul(b, r, xs[1])),  # noqa: E731
                                             xs[2], yb, ys[1])
            with L.for_range(b, rows, name="r", **AS_WRITTEN) as r:
                row, col = position(bi, r)
                (v,), = self._finish(b, [[source(r)]], row, col, ops)
                L.store(b, v, L.gep(b, cb, self.elem, L.mul(b, r, out_stride)))

    def _dot(self, b, x, x_stride, y, y_stride) -> ir.Value:
        """sum_k x[k] y[k] over K: four vector accumulators when both are contiguous."""
        K, lanes = self.spec.K, self.lanes
        if x_stride != 1 or y_stride != 1 or K < lanes:
            acc = L.alloca_once(b, self.elem, name="dot")
            L.store(b, L.zeros(self.elem), acc)
            with L.for_range(b, K, name="k", **AS_WRITTEN) as k:
                xv = L.load(b, L.gep(b, x, self.elem, L.mul(b, k, x_stride)), self.elem)
                yv = L.load(b, L.gep(b, y, self.elem, L.mul(b, k, y_stride)), self.elem)
                L.store(b, L.fma(b, xv, yv, L.load(b, acc, self.elem)), acc)
            return L.load(b, acc, self.elem)
        unroll = 4
        accs = [L.alloca_once(b, self.vec, name=f"dot{u}") for u in range(unroll)]
        for slot in accs:
            L.store(b, L.zeros(self.vec), slot)
        step = unroll * lanes
        with L.for_range(b, K // step * step, step=step, name="k", **AS_WRITTEN) as k:
            for u, slot in enumerate(accs):
                kk = L.add(b, k, u * lanes)
                xv = L.load_vector(b, L.gep(b, x, self.elem, kk), self.vec)
                yv = L.load_vector(b, L.gep(b, y, self.elem, kk), self.vec)
                L.store(b, L.fma(b, xv, yv, L.load(b, slot, self.vec)), slot)
        with L.for_range(b, K // lanes * lanes, start=K // step * step, step=lanes,
                         name="kv", **AS_WRITTEN) as k:
            xv = L.load_vector(b, L.gep(b, x, self.elem, k), self.vec)
            yv = L.load_vector(b, L.gep(b, y, self.elem, k), self.vec)
            L.store(b, L.fma(b, xv, yv, L.load(b, accs[0], self.vec)), accs[0])
        if K % lanes:
            mask = L.lane_mask(b, K % lanes, lanes)
            tail = K // lanes * lanes
            xv = L.masked_load(b, L.gep(b, x, self.elem, tail), self.vec, mask)
            yv = L.masked_load(b, L.gep(b, y, self.elem, tail), self.vec, mask)
            L.store(b, L.fma(b, xv, yv, L.load(b, accs[1], self.vec)), accs[1])
        total = L.load(b, accs[0], self.vec)
        for slot in accs[1:]:
            total = b.fadd(total, L.load(b, slot, self.vec))
        return L.reduce_add(b, total)

    def _gemv_axpy(self, b, x, xs, y, y_stride, rows, out):
        """out[0:rows] = sum_k X[:, k] * y[k], X's rows contiguous (stride 1): passes
        over `out` adding AXPY_COLUMNS columns of X each (one load and store of out per
        AXPY_COLUMNS FMAs)."""
        K, step = self.spec.K, AXPY_COLUMNS
        L.memset_zero(b, out, rows * self.size)
        with L.for_range(b, K // step * step, step=step, name="k", **AS_WRITTEN) as k:
            self._axpy_pass(b, x, xs[2], y, y_stride, rows, out,
                            [L.add(b, k, u) for u in range(step)])
        with L.for_range(b, K, start=K // step * step, name="kt", **AS_WRITTEN) as k:
            self._axpy_pass(b, x, xs[2], y, y_stride, rows, out, [k])

    def _axpy_pass(self, b, x, x_col_stride, y, y_stride, rows, out, ks):
        """out[0:rows] += sum over k in ks of X[:, k] * y[k]."""
        lanes = self.lanes
        scales = [L.load(b, L.gep(b, y, self.elem, L.mul(b, k, y_stride)), self.elem)
                  for k in ks]
        splats = [L.splat(b, s, lanes) for s in scales]
        columns = [L.gep(b, x, self.elem, L.mul(b, k, x_col_stride)) for k in ks]
        vector_rows = rows // lanes * lanes
        with L.for_range(b, vector_rows, step=lanes, name="r", **AS_WRITTEN) as r:
            dst = L.gep(b, out, self.elem, r)
            acc = L.load_vector(b, dst, self.vec)
            for column, scale in zip(columns, splats):
                acc = L.fma(b, L.load_vector(b, L.gep(b, column, self.elem, r), self.vec),
                            scale, acc)
            L.store_vector(b, acc, dst)
        with L.for_range(b, rows, start=vector_rows, name="rt", **AS_WRITTEN) as r:
            dst = L.gep(b, out, self.elem, r)
            acc = L.load(b, dst, self.elem)
            for column, scale in zip(columns, scales):
                acc = L.fma(b, L.load(b, L.gep(b, column, self.elem, r), self.elem), scale, acc)
            L.store(b, acc, dst)

    # ---------------------------------------------------------------- blocked

    def _emit_blocked(self, b, ctx):
        task = self._emit_task()
        n = self.parts.tasks
        if n == 1 or not _thread_pool_ready():
            b.call(task, [ctx, L.const(0), L.const(n)])
            return
        b.call(_parallel_for(self.module), [task, ctx, L.const(n), L.const(1)])

    def _emit_task(self) -> ir.Function:
        """`void name.task(ptr ctx, i64 begin, i64 end)`: tasks [begin, end) of the grid,
        each with its own packing buffers in scratch."""
        spec, blk, parts = self.spec, self.blk, self.parts
        fn, b = self._function(f"{self.name}.task", [L.PTR, L.INDEX, L.INDEX],
                               linkage="external")
        ctx, begin, end = fn.args
        macro = self._emit_macro()
        a, bm, c, scratch, _ = self._ctx(b, ctx)
        a_bytes = _round_up(blk.mc * blk.kc * spec.itemsize, ALIGN)
        per_group = parts.pm * parts.pn
        with L.for_range(b, end, start=begin, name="task", **AS_WRITTEN) as t:
            group = b.sdiv(t, L.const(per_group))
            rest = b.srem(t, L.const(per_group))
            m0 = L.mul(b, b.sdiv(rest, L.const(parts.pn)), parts.mt)
            n0 = L.mul(b, b.srem(rest, L.const(parts.pn)), parts.nt)
            slot = L.gep(b, scratch, ir.IntType(8), L.mul(b, t, _slot_bytes(spec, blk)))
            ap, bp = slot, L.gep(b, slot, ir.IntType(8), a_bytes)
            b0 = L.mul(b, group, parts.bt)
            with L.for_range(b, L.minimum(b, L.add(b, b0, parts.bt), spec.batch), start=b0,
                             name="batch", **AS_WRITTEN) as bi:
                part = _Part(
                    a=L.gep(b, a, self.elem, L.mul(b, bi, spec.a_strides[0])),
                    b=L.gep(b, bm, self.elem, L.mul(b, bi, spec.b_strides[0])),
                    c=L.gep(b, c, self.elem, L.mul(b, bi, spec.c_strides[0])),
                    m0=m0, m1=L.minimum(b, L.add(b, m0, parts.mt), spec.M),
                    n0=n0, n1=L.minimum(b, L.add(b, n0, parts.nt), spec.N),
                    row_base=L.mul(b, bi, spec.M))
                self._block_loops(b, macro, ctx, part, ap, bp)
        b.ret_void()
        return fn

    def _block_loops(self, b, macro, ctx, part, ap, bp):
        """The jc / pc / ic loops over one task's part of C."""
        spec, blk = self.spec, self.blk
        pack_a, pack_b = self._packer(blk.mr), self._packer(blk.nr)
        a_rs, a_cs = spec.a_strides[1:]
        b_rs, b_cs = spec.b_strides[1:]
        k_blocks = _ceil_div(spec.K, blk.kc)
        with L.for_range(b, part.n1, start=part.n0, step=blk.nc, name="jc", **AS_WRITTEN) as jc:
            ncur = L.minimum(b, blk.nc, L.sub(b, part.n1, jc))
            with L.for_range(b, k_blocks, name="pcb", **AS_WRITTEN) as pcb:
                pc = L.mul(b, pcb, blk.kc)
                kcur = L.minimum(b, blk.kc, L.sub(b, spec.K, pc))
                b_src = L.gep(b, part.b, self.elem, L.offset(b, (pc, b_rs), (jc, b_cs)))
                # B block: panels of nr columns; k steps along B's rows.
                b.call(pack_b, [bp, b_src, L.const(b_rs), L.const(b_cs), kcur, ncur])
                with L.for_range(b, part.m1, start=part.m0, step=blk.mc, name="ic", **AS_WRITTEN) as ic:
                    mcur = L.minimum(b, blk.mc, L.sub(b, part.m1, ic))
                    a_src = L.gep(b, part.a, self.elem, L.offset(b, (ic, a_rs), (pc, a_cs)))
                    # A block: panels of mr rows; k steps along A's columns.
                    b.call(pack_a, [ap, a_src, L.const(a_cs), L.const(a_rs), kcur, mcur])
                    c_blk = L.gep(b, part.c, self.elem,
                                  L.offset(b, (ic, spec.c_strides[1]), (jc, spec.c_strides[2])))
                    b.call(macro, [ctx, ap, bp, c_blk, mcur, ncur, kcur, pcb,
                                   L.add(b, part.row_base, ic), jc])

    # ---------------------------------------------------------------- macro kernel

    def _emit_macro(self) -> ir.Function:
        """`name.macro(ctx, Ap, Bp, C, mcur, ncur, kcur, k_block, row, col)`: every
        mr x nr tile of a packed A block times a packed B block, into the C block at
        `C` (flat row `row`, column `col`); the epilogue after the last K block."""
        spec, blk = self.spec, self.blk
        args = [L.PTR] * 4 + [L.INDEX] * 6
        fn, b = self._function(f"{self.name}.macro", args)
        ctx, ap, bp, c, mcur, ncur, kcur, k_block, row, col = fn.args
        ukernel = self._ukernel()
        *_, ops = self._ctx(b, ctx)
        rs, cs = spec.c_strides[1:]
        accumulate = b.icmp_signed(">", k_block, L.const(0))
        last = b.icmp_signed("==", k_block, L.const(_ceil_div(spec.K, blk.kc) - 1))
        with L.for_range(b, ncur, step=blk.nr, name="jr", **AS_WRITTEN) as jr:
            b_panel = L.gep(b, bp, self.elem, L.mul(b, jr, kcur))
            n_valid = L.minimum(b, blk.nr, L.sub(b, ncur, jr))
            with L.for_range(b, mcur, step=blk.mr, name="ir", **AS_WRITTEN) as i_r:
                a_panel = L.gep(b, ap, self.elem, L.mul(b, i_r, kcur))
                m_valid = L.minimum(b, blk.mr, L.sub(b, mcur, i_r))
                tile = L.gep(b, c, self.elem, L.offset(b, (i_r, rs), (jr, cs)))
                b.call(ukernel, [kcur, a_panel, b_panel, tile, L.const(rs), L.const(cs),
                                 m_valid, n_valid, accumulate])
                if spec.epilogue is not None:
                    with b.if_then(last):
                        self._epilogue_pass(b, tile, m_valid, n_valid, L.add(b, row, i_r),
                                            L.add(b, col, jr), ops)
        b.ret_void()
        return fn

    def _epilogue_pass(self, b, c, rows, cols, row, col, ops):
        """C[:rows, :cols] = epilogue(C[:rows, :cols]) for the tile at `c` (L1-hot):
        whole vectors along the row, then a scalar tail."""
        lanes = self.lanes
        rs, cs = self.spec.c_strides[1:]
        full = L.mul(b, b.sdiv(cols, L.const(lanes)), lanes) if cs == 1 else L.const(0)
        with L.for_range(b, rows, name="er", **AS_WRITTEN) as i:
            c_row = L.gep(b, c, self.elem, L.mul(b, i, rs))
            flat_row = L.add(b, row, i)
            with L.for_range(b, full, step=lanes, name="ev", **AS_WRITTEN) as j:
                ptr = L.gep(b, c_row, self.elem, j)
                (v,), = self._finish(b, [[L.load_vector(b, ptr, self.vec)]], flat_row,
                                     L.add(b, col, j), ops)
                L.store_vector(b, v, ptr)
            with L.for_range(b, cols, start=full, name="es", **AS_WRITTEN) as j:
                ptr = L.gep(b, c_row, self.elem, L.mul(b, j, cs))
                (v,), = self._finish(b, [[L.load(b, ptr, self.elem)]], flat_row,
                                     L.add(b, col, j), ops)
                L.store(b, v, ptr)

    # ---------------------------------------------------------------- shared kernels

    def _shared(self, name, args, emit) -> ir.Function:
        """A shape-independent kernel, emitted once per module and reused by every GEMM
        in it (they depend on dtype and tile only, so LLVM optimizes them once)."""
        existing = self.module.globals.get(name)
        if existing is not None:
            return existing
        fn, b = self._function(name, args)
        fn.attributes.add("noinline")
        emit(fn, b)
        b.ret_void()
        return fn

    def _packer(self, width) -> ir.Function:
        """`pack(dst, src, k_stride, x_stride, kcur, xcur)`: panels of `width`:
        dst[p][k][x] = src[k*k_stride + (p*width + x)*x_stride], zero-padded past xcur."""
        def emit(fn, b):
            dst, src, k_stride, x_stride, kcur, xcur = fn.args
            for arg in (dst, src):
                arg.add_attribute("noalias")
            panel = L.mul(b, kcur, width)           # elements of one packed panel
            full = b.sdiv(xcur, L.const(width))
            with L.for_range(b, full, name="p", **AS_WRITTEN) as p:
                self._pack_full_panel(b, L.gep(b, dst, self.elem, L.mul(b, p, panel)),
                                      L.gep(b, src, self.elem,
                                            L.mul(b, L.mul(b, p, width), x_stride)),
                                      k_stride, x_stride, kcur, width)
            rem = b.srem(xcur, L.const(width))
            with b.if_then(b.icmp_signed(">", rem, L.const(0))):
                self._pack_edge_panel(b, L.gep(b, dst, self.elem, L.mul(b, full, panel)),
                                      L.gep(b, src, self.elem,
                                            L.mul(b, L.mul(b, full, width), x_stride)),
                                      k_stride, x_stride, kcur, rem, width)
        name = f"tessel.gemm.pack.{self.spec.dtype}.{width}"
        return self._shared(name, [L.PTR, L.PTR] + [L.INDEX] * 4, emit)

    def _pack_full_panel(self, b, dst, src, k_stride, x_stride, kcur, width):
        """dst[k*width + x] = src[k*k_stride + x*x_stride] for x < width, k < kcur.

        x contiguous (A column-major, B row-major): one <width x T> copy per k.
        k contiguous (A row-major, B column-major): blocks of lanes x lanes transposed
        in registers. Otherwise: `width` scalar copies per k.
        """
        x_contiguous = b.icmp_signed("==", x_stride, L.const(1))
        k_contiguous = b.icmp_signed("==", k_stride, L.const(1))
        with b.if_else(x_contiguous) as (copy_rows, other):
            with copy_rows:
                row = L.vector(self.elem, width)
                with L.for_range(b, kcur, name="kv", **AS_WRITTEN) as k:
                    x = L.load_vector(b, L.gep(b, src, self.elem, L.mul(b, k, k_stride)), row)
                    L.store_vector(b, x, L.gep(b, dst, self.elem, L.mul(b, k, width)))
            with other:
                k_main = L.mul(b, b.sdiv(kcur, L.const(self.lanes)), self.lanes)
                k_main = b.select(k_contiguous, k_main, L.const(0))
                self._pack_transposing(b, dst, src, x_stride, k_main, width)
                self._pack_gather(b, dst, src, k_stride, x_stride, k_main, kcur, width)

    def _pack_transposing(self, b, dst, src, x_stride, k_end, width):
        """k < k_end of a panel whose source is contiguous along k: per lanes-wide step
        of k, load each source row (x) as a vector, transpose lanes x lanes blocks, and
        store the columns (one per k) as <width x T> slices of the packed panel."""
        lanes = self.lanes
        with L.for_range(b, k_end, step=lanes, name="kb", **AS_WRITTEN) as k0:
            for x0 in range(0, width, lanes):
                count = min(lanes, width - x0)
                rows = [L.load_vector(b, L.gep(b, src, self.elem, L.add(
                            b, L.mul(b, x0 + x, x_stride), k0)), self.vec)
                        if x < count else L.zeros(self.vec) for x in range(lanes)]
                for k, column in enumerate(L.transpose(b, rows)):
                    at = L.add(b, L.mul(b, L.add(b, k0, k), width), x0)
                    L.store_vector(b, L.prefix(b, column, count), L.gep(b, dst, self.elem, at))

    def _pack_gather(self, b, dst, src, k_stride, x_stride, k_start, k_end, width):
        """k in [k_start, k_end) of a full panel, element by element."""
        offsets = [L.mul(b, x, x_stride) for x in range(width)]
        with L.for_range(b, k_end, start=k_start, name="ks", **AS_WRITTEN) as k:
            row_src = L.gep(b, src, self.elem, L.mul(b, k, k_stride))
            row_dst = L.gep(b, dst, self.elem, L.mul(b, k, width))
            for x, offset in enumerate(offsets):
                value = L.load(b, L.gep(b, row_src, self.elem, offset), self.elem)
                L.store(b, value, L.gep(b, row_dst, self.elem, x))

    def _pack_edge_panel(self, b, dst, src, k_stride, x_stride, kcur, count, width):
        """The last panel, count < width valid columns: copy them, zero the rest."""
        with L.for_range(b, kcur, name="ke", **AS_WRITTEN) as k:
            row_src = L.gep(b, src, self.elem, L.mul(b, k, k_stride))
            row_dst = L.gep(b, dst, self.elem, L.mul(b, k, width))
            with L.for_range(b, count, name="x", **AS_WRITTEN) as x:
                value = L.load(b, L.gep(b, row_src, self.elem, L.mul(b, x, x_stride)),
                               self.elem)
                L.store(b, value, L.gep(b, row_dst, self.elem, x))
            with L.for_range(b, width, start=count, name="z", **AS_WRITTEN) as x:
                L.store(b, L.zeros(self.elem), L.gep(b, row_dst, self.elem, x))

    def _ukernel(self) -> ir.Function:
        """`ukernel(kc, Ap, Bp, C, rs, cs, m_valid, n_valid, accumulate)`: the mr x nr
        register tile Ap @ Bp over kc steps, then C[:m_valid, :n_valid] (+)= tile."""
        blk = self.blk
        name = f"tessel.gemm.ukernel.{self.spec.dtype}.{blk.mr}x{blk.nr}"

        def emit(fn, b):
            kc, ap, bp, c, rs, cs, m_valid, n_valid, accumulate = fn.args
            for arg in (ap, bp, c):
                arg.add_attribute("noalias")
            tile = self._tile_product(b, ap, bp, kc)
            full = b.and_(b.and_(b.icmp_signed("==", m_valid, L.const(blk.mr)),
                                 b.icmp_signed("==", n_valid, L.const(blk.nr))),
                          b.icmp_signed("==", cs, L.const(1)))
            with b.if_else(full, likely=True) as (then, otherwise):
                with then:
                    self._store_full(b, tile, c, rs, accumulate)
                with otherwise:
                    self._store_edge(b, tile, c, rs, cs, m_valid, n_valid, accumulate)

        return self._shared(name, [L.INDEX, L.PTR, L.PTR, L.PTR, L.INDEX, L.INDEX,
                                   L.INDEX, L.INDEX, L.I1], emit)

    def _tile_product(self, b, a_panel, b_panel, kc) -> list[list[ir.Value]]:
        """sum over k < kc of A panel column k (broadcast) times B panel row k (vectors),
        accumulated in mr x nv vector registers (entry-block allocas, promoted)."""
        blk = self.blk
        nv = blk.nr // blk.lanes
        accs = [[L.alloca_once(b, self.vec, name=f"c{i}_{j}") for j in range(nv)]
                for i in range(blk.mr)]
        for slot in (s for row in accs for s in row):
            L.store(b, L.zeros(self.vec), slot)

        def step(k):
            bk = L.gep(b, b_panel, self.elem, L.mul(b, k, blk.nr))
            bvals = [L.load_vector(b, L.gep(b, bk, self.elem, j * blk.lanes), self.vec,
                                   align=ALIGN) for j in range(nv)]
            ak = L.gep(b, a_panel, self.elem, L.mul(b, k, blk.mr))
            for i in range(blk.mr):
                ai = L.splat(b, L.load(b, L.gep(b, ak, self.elem, i), self.elem), blk.lanes)
                for j in range(nv):
                    slot = accs[i][j]
                    L.store(b, L.fma(b, ai, bvals[j], L.load(b, slot, self.vec)), slot)

        main = b.and_(kc, L.const(-K_UNROLL))
        with L.for_range(b, main, step=K_UNROLL, name="k", **AS_WRITTEN) as k:
            for u in range(K_UNROLL):
                step(L.add(b, k, u))
        with L.for_range(b, kc, start=main, name="kt", **AS_WRITTEN) as k:
            step(k)
        return [[L.load(b, slot, self.vec) for slot in row] for row in accs]

    def _store_full(self, b, tile, c, rs, accumulate):
        lanes = self.lanes
        ptrs = [L.gep(b, c, self.elem, L.add(b, L.mul(b, i, rs), j * lanes))
                for i in range(len(tile)) for j in range(len(tile[0]))]
        flat = [v for row in tile for v in row]
        flat = L.branch_values(
            b, accumulate,
            lambda: [b.fadd(v, L.load_vector(b, p, self.vec)) for v, p in zip(flat, ptrs)],
            lambda: flat)
        for v, p in zip(flat, ptrs):
            L.store_vector(b, v, p)

    def _store_edge(self, b, tile, c, rs, cs, m_valid, n_valid, accumulate):
        """Partial tiles (or a C with non-unit column stride): spill, then scalar loops."""
        blk = self.blk
        buf = L.alloca_once(b, ir.ArrayType(self.elem, blk.mr * blk.nr), name="edge",
                            align=ALIGN)
        for i, values in enumerate(tile):
            for j, v in enumerate(values):
                L.store_vector(b, v, L.gep(b, buf, self.elem, i * blk.nr + j * blk.lanes),
                               align=ALIGN)
        with L.loop_nest(b, (m_valid, n_valid), name="e", **AS_WRITTEN) as (i, j):
            ptr = L.gep(b, c, self.elem, L.add(b, L.mul(b, i, rs), L.mul(b, j, cs)))
            v = L.load(b, L.gep(b, buf, self.elem, L.add(b, L.mul(b, i, blk.nr), j)),
                       self.elem)
            old = L.load(b, ptr, self.elem)     # C is valid memory: select, no branch
            L.store(b, b.select(accumulate, b.fadd(v, old), v), ptr)


@dataclass
class _Part:
    """One task's share of a batch element: rows [m0, m1), columns [n0, n1)."""
    a: ir.Value
    b: ir.Value
    c: ir.Value
    m0: ir.Value
    m1: ir.Value
    n0: ir.Value
    n1: ir.Value
    row_base: ir.Value      # flat row of this batch element's row 0


K_UNROLL = 4

# Loops this generator already vectorized / unrolled itself, or cold ones: LLVM leaves
# them as written (unrolling and re-vectorizing them only costs compile time).
AS_WRITTEN = {"unroll": False, "vectorize": False}


def _unflatten(flat, width):
    return [flat[i:i + width] for i in range(0, len(flat), width)]


def _align_up(b: ir.IRBuilder, ptr: ir.Value) -> ir.Value:
    """`ptr` rounded up to ALIGN bytes."""
    address = b.ptrtoint(ptr, L.INDEX)
    aligned = b.and_(b.add(address, L.const(ALIGN - 1)), L.const(-ALIGN))
    return b.inttoptr(aligned, L.PTR, name="scratch")


# --------------------------------------------------------------------------- convenience

class CompiledGemm:
    """A JIT-compiled GEMM callable on NumPy arrays (for tests and benchmarks)."""

    def __init__(self, spec: GemmSpec, threads: int | None = None, tile=None):
        self.spec = spec
        module = ir.Module(name="gemm")
        emit_gemm(module, spec, "gemm", threads=threads, tile=tile)
        self.jit = JitModule(str(module))
        n = 4 + spec.epilogue_operands
        self._fn = self.jit.function("gemm", None, *[ctypes.c_void_p] * n)
        self._np = _DTYPES[spec.dtype][2]
        self._scratch = np.empty(scratch_bytes(spec, threads=threads, tile=tile), np.uint8)

    def __call__(self, a: np.ndarray, b: np.ndarray, *operands: np.ndarray,
                 out: np.ndarray | None = None) -> np.ndarray:
        """C for operands laid out as the spec's strides describe, starting at a[0] / b[0]."""
        spec = self.spec
        for x in (a, b):
            if x.dtype != self._np:
                raise TypeError(f"expected {self._np.__name__} operands, got {x.dtype}")
        if out is None:
            out = np.empty(max(_extent(spec.c_strides, spec.batch, spec.M, spec.N), 1),
                           self._np)
        ptrs = [x.ctypes.data for x in (a, b, out, self._scratch) + tuple(operands)]
        self._fn(*ptrs)
        return out

    def assembly(self) -> str:
        return self.jit.assembly()


def _extent(strides, batch, rows, cols) -> int:
    if 0 in (batch, rows, cols):
        return 0
    return (batch - 1) * strides[0] + (rows - 1) * strides[1] + (cols - 1) * strides[2] + 1


def compile_gemm(spec: GemmSpec, threads: int | None = None, tile=None) -> Callable:
    """`f(A, B) -> C` for contiguous (batch, M, K) @ (batch, K, N) NumPy arrays (2-D when
    batch == 1), or any arrays whose memory matches the spec's strides (then the result
    is the flat C buffer). JIT-compiles one kernel for `spec`."""
    kernel = CompiledGemm(spec, threads=threads, tile=tile)

    def run(a: np.ndarray, b: np.ndarray, *operands: np.ndarray) -> np.ndarray:
        flat = kernel(a, b, *operands)
        if spec.c_strides == _strides(None, spec.M, spec.N):
            shape = (spec.M, spec.N) if spec.batch == 1 else (spec.batch, spec.M, spec.N)
            return flat[:spec.batch * spec.M * spec.N].reshape(shape)
        return flat

    run.kernel = kernel
    return run
