"""GEMM in LLVM IR: cache-blocked, packed, register-tiled, with fused epilogues.

    C[b] = epilogue(A[b] @ B[b])      b < batch, A[b]: M x K, B[b]: K x N, C[b]: M x N

Every operand is a base pointer plus (batch, row, column) strides in elements, all
compile-time constants (shapes are static, XLA-style: one kernel per shape), so any
contracting layout -- transposed operands, dot_general after the backend canonicalizes
it to batch x rows x contracting -- goes through the same code.

The large-shape kernel ("blocked") follows BLIS's loop structure:

    for jc in N step nc:                        B block kc x nc lives in L3
      for pc in K step kc:
        pack B[pc:pc+kc, jc:jc+nc]  -> Bp       panels of nr columns, k-major, zero-padded
        for ic in M step mc:                    A block mc x kc lives in L2
          pack A[ic:ic+mc, pc:pc+kc] -> Ap      panels of mr rows, k-major, zero-padded
          for jr in nc step nr:                 B micro-panel kc x nr stays in L1
            for ir in mc step mr:
              micro-kernel: an mr x nr tile of C in vector registers, per k one
              broadcast of A and nr/lanes vector FMAs per row; C tile (+)= it
              after the last K block: C tile = epilogue(C tile), while it is in L1

A row-major A (contiguous along K) is not packed: the micro-kernel broadcasts its mr
rows in place (`_reads_a_directly`; a partial last row panel is still packed), unless
the rows would crowd into one L1 set.

The tile is sized to the vector registers (`micro_tile`: 14 x 32 f32 with AVX-512),
the blocks to the caches (`CACHES`, `blocking`). Partial tiles (M, N not multiples of
mr, nr) are computed in full on the zero-padded panels and stored by a scalar edge
path. The micro-kernel and the packing routines depend on dtype and tile only: they
are emitted once per LLVM module and shared by every GEMM in it (which is also why the
epilogue runs as a pass over the finished tile rather than inside the micro-kernel:
per-shape code stays small and cheap to compile).

An implicit A (`GemmSpec.a_packer`: a convolution's patch matrix, never materialized)
is packed by the packer's own routine from wherever its elements lie (backends/cpu/
conv_gemm.py); everything else is unchanged. Such a spec always takes the blocked path.

Small problems take other paths (`choose_path`): unrolled vector code when every
dimension is tiny, a streaming dot / axpy kernel without packing when M == 1 or N == 1,
and a fill (C = epilogue(0)) when K == 0.

Parallelism: the output is cut into tasks over (batch, rows, columns) (`partition`, a
small cost model). A task runs its path's loop nest on its part with its own packing
buffers in scratch: A and B blocks are packed per task, no sharing and no barriers;
the price, re-packing B once per row part and A once per column part, is in the cost
model. Packed panels are never shared between threads: on the 2-vCPU host a thread
writing lines the other core read in the previous call waits for cross-core
invalidations, and a shared packing phase ran at ~5 GB/s (docs/cpu-perf.md). Tasks
run on tessel's thread pool (`runtime_support`, `tessel_parallel_for`) when the work
is at least `PARALLEL_MIN_FLOPS`; otherwise the entry calls the task function directly.

C ABI of the generated entry:  void name(ptr A, ptr B, ptr C, ptr scratch, ptr op0, ...)
where scratch holds `scratch_bytes(spec)` bytes (any alignment) and op0... are the
spec's `epilogue_operands` extra buffers, handed to the epilogue callback. C must not
overlap A, B or scratch (A and B may overlap: they are only read). Concurrent calls
need separate scratch.
"""
from __future__ import annotations

import ctypes
import itertools
import os
from dataclasses import dataclass, field, replace
from typing import Callable

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


# Keyed by LLVM's CPU name (`TargetInfo.cpu`). L1d and L2 are per core; L3 is the
# shared last-level cache of the core's CCD / socket.
CACHES = {
    "znver4": Caches(32 * KiB, 1 * MiB, 32 * MiB),           # AMD Zen 4 (this host)
    "znver3": Caches(32 * KiB, 512 * KiB, 32 * MiB),         # AMD Zen 3
    "skylake-avx512": Caches(32 * KiB, 1 * MiB, 8 * MiB),    # Intel Skylake-SP
    "icelake-server": Caches(48 * KiB, 1280 * KiB, 16 * MiB),
    "sapphirerapids": Caches(48 * KiB, 2 * MiB, 32 * MiB),
    "apple-m1": Caches(64 * KiB, 4 * MiB, 8 * MiB),
}
DEFAULT_CACHES = Caches(32 * KiB, 256 * KiB, 8 * MiB)       # conservative for unknown CPUs

# How much of each cache level the blocked kernel fills with one packed block:
#   L1: the B micro-panel, kc x nr, reused by every A micro-panel of the block (kc is
#       chosen from it). Twice L1: the panel streams from L2 (Zen 4's L2 returns a
#       line per cycle, more than the micro-kernel asks for) and a longer k loop
#       means fewer passes over C; measured f32 1024^3-2048^3 on Zen 4: kc = 512 is
#       ~4% faster than kc = 256 (one L1) and ~10% faster than kc = 128 (half).
#   L2: the packed A block, mc x kc        (mc is chosen from it)
#   L3: the packed B block, kc x nc        (nc is chosen from it; one per thread)
CACHE_SHARE = {"l1d": 2.0, "l2": 0.5, "l3": 0.25}


# --------------------------------------------------------------------------- tuning

# Problems below this many flops (2*batch*M*N*K) run on the calling thread. Measured
# on the 2-core Zen 4 host: 64^3 (0.5 Mflop) 7.5 us on one thread vs 8.6 us on two;
# 96^3 (1.8 Mflop) 20 us vs 12 us.
PARALLEL_MIN_FLOPS = 1_500_000
# ... and no task gets less than this (the pool's hand-off costs a few microseconds).
MIN_TASK_FLOPS = 500_000
# Packing one element costs about as much as PACK_COST vector FMAs (cost model).
# Measured f32 256 x 784 x 512 on one Zen 4 core, kernels with a packer stubbed out:
# packing A (200 k elements) 150 us, B (400 k) 150 us, the FMAs 1.85 ms (56 scalar
# FMAs/ns): ~1.3-2.7 elements/ns, i.e. 20-40 scalar FMAs, 2 vector FMAs of 16 lanes.
PACK_COST = 2.0
# Threads do not run at the same speed (a core shared with another process, turbo):
# the pool hands out tasks dynamically and the last thread finishes about this many
# task times after the others, which favours several smaller tasks per thread. On the
# quiet 2-core host one task per thread is ~5% faster at 256^3 than four (more packing,
# smaller blocks); under load, more tasks win. With PACK_COST, 0.1 picks 2 tasks for
# the M = 256 GEMMs of the MLP and GPT-2 block, 4 at 1024^3, 6 at 2048^3.
UNEVEN_TAIL = 0.1
# The register tile's rows may shrink below the widest when that wastes more than this
# share of the computed rows (`micro_tile`). Measured f32 on Zen 4, one thread, CPU time:
# 256 x 512 x 512 8 x 32 110 GFLOP/s, 14 x 32 103; 256 x 512 x 2048 97 vs 93.
TILE_WASTE_LIMIT = 0.03
# Row-major A is read in place by the micro-kernel (`_reads_a_directly`), without
# packing, unless its mr rows crowd into one L1 set: the rows' addresses modulo
# L1_SET_SPAN (one way of the L1: 4 KiB on every x86 L1d, whose index bits lie within
# a page) may put at most DIRECT_A_ROWS_PER_SET rows in one set (the L1's ways, 8 on
# the CPUs in CACHES). Measured f32 on Zen 4, two threads: 256 x 784 x 512 0.96x the
# time of packing A, 256 x 512 x 1536 (4 rows a set) 0.92x, 256 x 2048 x 512 (8 rows
# a set) 0.93x; 1024^3 (14 rows 4 KiB apart in one set) 1.5x, hence the limit.
DIRECT_A = True
L1_SET_SPAN = 4096
DIRECT_A_ROWS_PER_SET = 8
# Every dimension at most this: the tiny path (unrolled, no packing).
TINY_DIM = 16
# Rows of C the tiny path accumulates at once (independent FMA chains hide latency).
TINY_ROWS_AT_ONCE = 4
# The axpy form of matrix-vector products adds this many columns per pass over C.
AXPY_COLUMNS = 4
# Vector accumulators of the dot form of matrix-vector products.
DOT_ACCUMULATORS = 4
# The micro-kernel's k loop is unrolled this many times (a power of two).
K_UNROLL = 4
# Packed panels and the scratch arena are aligned to this many bytes (a zmm register).
ALIGN = 64
# Loops this generator vectorized or unrolled itself, and cold ones: LLVM leaves them
# as written (re-unrolling and re-vectorizing them costs compile time, gains nothing).
AS_WRITTEN = {"unroll": False, "vectorize": False}


# --------------------------------------------------------------------------- the spec

_DTYPES = {"f32": (ir.FloatType(), 4, np.float32), "f64": (ir.DoubleType(), 8, np.float64)}

Epilogue = Callable[[ir.IRBuilder, list, ir.Value, ir.Value, tuple], list]


@dataclass(frozen=True)
class GemmSpec:
    """One static GEMM: C[b] = epilogue(A[b] @ B[b]).

    Strides are in elements, (row, col) or (batch, row, col); default: contiguous
    row-major (2-D strides put the batch elements one after another).

    `epilogue(builder, tile_values, row_index, col_index, operands)` emits IR mapping a
    finished piece of C to the values to store, and returns them in the same structure:
      - tile_values[i][j]: a vector (or a scalar, width 1) holding
        C[row_index + i, col_index + j*w : col_index + (j+1)*w], w its width;
      - row_index: the flattened row b*M + m (C seen as (batch*M) x N); col_index the
        column; both i64;
      - operands: the kernel's `epilogue_operands` extra pointer arguments.
    It is applied exactly once to every element of C, also when K == 0.
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
    # A's packer when A is implicit (e.g. a convolution's patches), else None: an object
    # with `function(emitter) -> ir.Function` defining `pack(dst, a, m0, mcur, k0, kcur)`,
    # which packs rows [m0, m0+mcur) x columns [k0, k0+kcur) of the A of the batch
    # element at `a` as the A packer does (panels of mr rows, k-major, zero-padded).
    # Only a_strides[0] (batch) applies then.
    a_packer: object | None = None

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("dtype", _dtype_name(self.dtype))
        if min(self.M, self.N, self.K, self.batch, self.epilogue_operands) < 0:
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
    if given is None:
        return (rows * cols, cols, 1)
    given = tuple(int(s) for s in given)
    if len(given) == 2:
        span = (rows - 1) * abs(given[0]) + (cols - 1) * abs(given[1]) + 1
        return (span if rows and cols else 0,) + given
    if len(given) != 3:
        raise ValueError(f"strides must be (row, col) or (batch, row, col), got {given}")
    return given


# --------------------------------------------------------------------------- planning

@dataclass(frozen=True)
class Blocking:
    mr: int          # rows of the register tile (broadcasts of A)
    nr: int          # columns of the register tile (nr / lanes vectors of B)
    lanes: int
    kc: int          # K block
    mc: int          # M block, a multiple of mr
    nc: int          # N block, a multiple of nr


def micro_tile(target: TargetInfo, itemsize: int, n: int | None = None,
               m: int | None = None) -> tuple[int, int]:
    """(mr, nr) of the register tile for this target, element size, N and M.

    Each k step broadcasts mr elements of A against nv vectors of B into mr x nv
    accumulators: mr*nv + nv + 1 <= registers. nv = 2 and the largest mr that fits:
    AVX-512 (32 registers) 14 x 32 f32 / 14 x 16 f64 (28 accumulators; 4 cycles FMA
    latency x 2 FMA pipes = 8 needed to stay busy), AVX2 (16) 6 x 16 f32. Wider tiles
    (9 x 48, 6 x 64 f32) measured the same on Zen 4 and waste more at the N edge.
    Narrow outputs (N <= lanes) take nv = 1 with the same mr (so the A packing kernel
    is shared): 256 x 10 x 512 f32 runs 1.6x faster than with nv = 2.
    When the widest mr leaves more than TILE_WASTE_LIMIT of the rows it computes
    empty (M = 256, mr = 14: 266 rows, the last panel 4/14 full), mr is the one of
    [widest / 2, widest] that wastes the fewest rows (ties: the wider): 8 for M = 256.
    """
    lanes = target.vector_lanes(itemsize)
    widest = (target.vector_registers - 3) // 2
    nv = 1 if n is not None and n <= lanes else 2
    mr = widest
    if m and _row_waste(m, widest) > TILE_WASTE_LIMIT:
        mr = min(range(widest, widest // 2 - 1, -1), key=lambda r: _row_waste(m, r))
    return mr, nv * lanes


def _row_waste(m: int, mr: int) -> float:
    """The share of computed rows past M when M is cut into panels of mr rows."""
    return (_round_up(m, mr) - m) / _round_up(m, mr)


def blocking(spec: GemmSpec, target: TargetInfo | None = None,
             tile: tuple[int, int] | None = None) -> Blocking:
    """Register tile and cache blocks for `spec` on `target` (see CACHE_SHARE)."""
    target = target or host()
    caches = CACHES.get(target.cpu, DEFAULT_CACHES)
    size = spec.itemsize
    mr, nr = tile or micro_tile(target, size, spec.N, spec.M)
    kc = _round_down(int(caches.l1d * CACHE_SHARE["l1d"]) // (nr * size), 8, 64)
    mc = _round_down(int(caches.l2 * CACHE_SHARE["l2"]) // (kc * size), mr, mr)
    nc = _round_down(int(caches.l3 * CACHE_SHARE["l3"]) // (kc * size), nr, nr)
    return Blocking(mr, nr, target.vector_lanes(size), kc, mc, nc)


def choose_path(spec: GemmSpec) -> str:
    """Which kernel computes `spec`: empty | fill | tiny | gemv | blocked."""
    if spec.batch == 0 or spec.M == 0 or spec.N == 0:
        return "empty"
    if spec.K == 0:
        return "fill"
    if spec.a_packer is not None:         # only the blocked path packs A
        return "blocked"
    if max(spec.M, spec.N, spec.K) <= TINY_DIM:
        return "tiny"
    if spec.M == 1 or spec.N == 1:
        return "gemv"
    return "blocked"


@dataclass(frozen=True)
class Partition:
    """The output cut into pb x pm x pn tasks: groups of bt batch elements, parts of mt
    rows, parts of nt columns (task t: group t // (pm*pn), row part (t // pn) % pm,
    column part t % pn)."""
    pb: int
    pm: int
    pn: int
    bt: int
    mt: int
    nt: int

    @property
    def tasks(self) -> int:
        return self.pb * self.pm * self.pn


def partition(spec: GemmSpec, threads: int, grain: tuple[int, int] = (1, 1),
              pack_cost: float = 0.0) -> Partition:
    """Cut the output into tasks for `threads` threads (cost model).

    Row and column parts are multiples of `grain` (the register tile). A task's time
    is its FMAs plus `pack_cost` per element of A (mt x K) and B (K x nt) it packs;
    the parallel time is ceil(tasks / threads) + UNEVEN_TAIL task times. The cheapest
    grid of at most 4 x threads tasks wins. One task below PARALLEL_MIN_FLOPS.
    """
    whole = Partition(1, 1, 1, spec.batch, spec.M, spec.N)
    if threads <= 1 or spec.flops < PARALLEL_MIN_FLOPS:
        return whole
    best, best_cost, max_tasks = whole, None, 4 * threads
    for pb, pm, pn in itertools.product(range(1, max_tasks + 1), repeat=3):
        bt = _ceil_div(spec.batch, pb)
        mt = min(_round_up(_ceil_div(spec.M, pm), grain[0]), spec.M)
        nt = min(_round_up(_ceil_div(spec.N, pn), grain[1]), spec.N)
        tasks = pb * pm * pn
        if (tasks > max_tasks or (pb - 1) * bt >= spec.batch or (pm - 1) * mt >= spec.M
                or (pn - 1) * nt >= spec.N or 2 * bt * mt * nt * spec.K < MIN_TASK_FLOPS):
            continue
        fmas = _round_up(mt, grain[0]) * _round_up(nt, grain[1]) * spec.K
        task = bt * (fmas + pack_cost * spec.K * (mt + nt))
        cost = (_ceil_div(tasks, threads) + UNEVEN_TAIL) * task
        if best_cost is None or cost < best_cost:
            best, best_cost = Partition(pb, pm, pn, bt, mt, nt), cost
    return best


@dataclass(frozen=True)
class Plan:
    """How a spec is computed: its path, tasks, and for `blocked` the blocking."""
    path: str
    partition: Partition
    blocking: Blocking | None = None


def plan(spec: GemmSpec, target: TargetInfo | None = None, threads: int | None = None,
         tile: tuple[int, int] | None = None) -> Plan:
    target, threads = target or host(), threads or _default_threads()
    path = choose_path(spec)
    lanes = target.vector_lanes(spec.itemsize)
    if path == "blocked":
        blk = blocking(spec, target, tile)
        parts = partition(spec, threads, (blk.mr, blk.nr), PACK_COST * blk.lanes)
        # Even blocks inside a task: 1024 rows by mc 504 -> 3 x 350, not 504+504+16.
        blk = replace(blk, kc=_balanced(spec.K, blk.kc, 1),
                      mc=_balanced(parts.mt, blk.mc, blk.mr),
                      nc=_balanced(parts.nt, blk.nc, blk.nr))
        return Plan(path, parts, blk)
    if path == "gemv":      # split the batch and the output vector
        return Plan(path, partition(spec, threads, (lanes, lanes)))
    if path in ("tiny", "fill"):      # split the batch only
        return Plan(path, partition(spec, threads, (spec.M, spec.N)))
    return Plan(path, Partition(1, 1, 1, spec.batch, spec.M, spec.N))


def _balanced(extent: int, block: int, multiple: int) -> int:
    """The block size covering `extent` in as many blocks as `block` needs, evenly."""
    blocks = _ceil_div(extent, block)
    return min(block, _round_up(_ceil_div(extent, blocks), multiple)) if blocks else block


def _round_down(x: int, multiple: int, minimum: int) -> int:
    return max(minimum, x // multiple * multiple)


def _round_up(x: int, multiple: int) -> int:
    return -(-x // multiple) * multiple


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# --------------------------------------------------------------------------- runtime

def _default_threads() -> int:
    """The thread pool's size ($TESSEL_NUM_THREADS, else the CPUs)."""
    try:
        from . import runtime_support
    except ImportError:
        return os.cpu_count() or 1
    return runtime_support.num_threads()


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

def scratch_bytes(spec: GemmSpec, target: TargetInfo | None = None,
                  threads: int | None = None, tile=None) -> int:
    """Bytes of scratch the kernel for `spec` needs (the pointer needs no alignment).
    Pass the `target`, `threads` and `tile` given to `emit_gemm`."""
    how = plan(spec, target, threads, tile)
    slot = _slot_bytes(spec, how)
    return ALIGN + how.partition.tasks * slot if slot else 0


def _slot_bytes(spec: GemmSpec, how: Plan) -> int:
    """Scratch of one task: packed A and B blocks, or a gemv accumulator."""
    if how.path == "blocked":
        blk = how.blocking
        return _a_block_bytes(spec, blk) + _round_up(blk.kc * blk.nc * spec.itemsize, ALIGN)
    if how.path == "gemv" and _gemv_operands(spec)[0].axpy:
        parts = how.partition
        return _round_up((parts.mt if spec.N == 1 else parts.nt) * spec.itemsize, ALIGN)
    return 0


def _a_block_bytes(spec: GemmSpec, blk: Blocking) -> int:
    return _round_up(blk.mc * blk.kc * spec.itemsize, ALIGN)


@dataclass(frozen=True)
class _GemvView:
    """A matrix-vector product out[r] = sum_k X[r, k] y[k] seen in the GEMM's operands:
    which operand is X, its (batch, r, k) strides, and y's and out's strides."""
    x_is_a: bool
    x_strides: tuple[int, int, int]
    y_strides: tuple[int, int]         # (batch, k)
    out_stride: int                    # along r

    @property
    def axpy(self) -> bool:
        """Stream columns of X (r contiguous) rather than dot its rows."""
        return self.x_strides[1] == 1 and self.x_strides[2] != 1


def _gemv_operands(spec: GemmSpec) -> tuple[_GemvView, int]:
    """(view, rows): N == 1: X = A, y = B[:, 0], out = C[:, 0]; M == 1: X = B^T,
    y = A[0, :], out = C[0, :]."""
    a, b, c = spec.a_strides, spec.b_strides, spec.c_strides
    if spec.N == 1:
        return _GemvView(True, a, (b[0], b[1]), c[1]), spec.M
    return _GemvView(False, (b[0], b[2], b[1]), (a[0], a[2]), c[2]), spec.N


# --------------------------------------------------------------------------- emission

def emit_gemm(module: ir.Module, spec: GemmSpec, name: str, *,
              target: TargetInfo | None = None, threads: int | None = None,
              tile: tuple[int, int] | None = None) -> ir.Function:
    """Define `void name(ptr A, ptr B, ptr C, ptr scratch, ptr op...)` in `module`.

    `threads`: plan the tasks for this many threads (default: the thread pool's size);
    `tile`: override the register tile (mr, nr), for tuning.
    """
    return _Emitter(module, spec, name, target or host(), threads, tile).emit()


@dataclass
class _Part:
    """What one task computes for one batch element: rows [m0, m1), columns [n0, n1),
    with its slice of scratch."""
    a: ir.Value             # this batch element's A, B, C
    b: ir.Value
    c: ir.Value
    m0: ir.Value
    m1: ir.Value
    n0: ir.Value
    n1: ir.Value
    row_base: ir.Value      # flat row (b*M) of this batch element's row 0
    scratch: ir.Value
    operands: tuple


class _Emitter:
    def __init__(self, module, spec, name, target, threads, tile):
        self.module, self.spec, self.name = module, spec, name
        self.elem, self.size, _ = _DTYPES[spec.dtype]
        self.plan = plan(spec, target, threads, tile)
        self.blk, self.parts = self.plan.blocking, self.plan.partition
        self.lanes = target.vector_lanes(self.size)
        self.vec = L.vector(self.elem, self.lanes)

    def _function(self, name, args, linkage="internal") -> tuple[ir.Function, ir.IRBuilder]:
        fn = ir.Function(self.module, ir.FunctionType(ir.VoidType(), args), name=name)
        fn.linkage = linkage
        return fn, ir.IRBuilder(fn.append_basic_block("entry"))

    # ---------------------------------------------------------------- entry and tasks

    def emit(self) -> ir.Function:
        names = ["A", "B", "C", "scratch"] + [f"op{i}" for i in range(self.spec.epilogue_operands)]
        fn, b = self._function(self.name, [L.PTR] * len(names), linkage="external")
        for arg, name in zip(fn.args, names):
            arg.name = name
            if name in ("A", "B", "C", "scratch"):
                arg.add_attribute("noalias")        # A and B may overlap: both read only
        if self.plan.path != "empty":
            ctx = L.alloca_once(b, ir.ArrayType(L.PTR, len(names)), name="ctx")
            args = [*fn.args[:3], _align_up(b, fn.args[3]), *fn.args[4:]]
            for i, value in enumerate(args):
                L.store(b, value, L.gep(b, ctx, L.PTR, i))
            self._run(b, self._emit_task(), ctx, self.parts.tasks, 1)
        b.ret_void()
        return fn

    def _run(self, b, fn, ctx, n: int, grain: int) -> None:
        """fn(ctx, 0, n) on the thread pool (or on this thread when there is no pool)."""
        if n > 1 and _thread_pool_ready():
            b.call(_parallel_for(self.module), [fn, ctx, L.const(n), L.const(grain)])
        else:
            b.call(fn, [ctx, L.const(0), L.const(n)])

    def _emit_task(self) -> ir.Function:
        """`void name.task(ptr ctx, i64 begin, i64 end)`: tasks [begin, end) of the
        partition, each on its own slice of scratch; ctx = [A, B, C, scratch, op...]."""
        spec, parts = self.spec, self.parts
        fn, b = self._function(f"{self.name}.task", [L.PTR, L.INDEX, L.INDEX])
        ctx, begin, end = fn.args
        a, bm, c, scratch, *operands = [L.load(b, L.gep(b, ctx, L.PTR, i), L.PTR)
                                        for i in range(4 + spec.epilogue_operands)]
        body = {"fill": self._fill, "tiny": self._tiny, "gemv": self._gemv,
                "blocked": self._blocked}[self.plan.path]
        with L.for_range(b, end, start=begin, name="task", **AS_WRITTEN) as t:
            per_group = parts.pm * parts.pn
            rest = b.srem(t, L.const(per_group))
            m0 = L.mul(b, b.sdiv(rest, L.const(parts.pn)), parts.mt)
            n0 = L.mul(b, b.srem(rest, L.const(parts.pn)), parts.nt)
            b0 = L.mul(b, b.sdiv(t, L.const(per_group)), parts.bt)
            slot = L.gep(b, scratch, ir.IntType(8), L.mul(b, t, _slot_bytes(spec, self.plan)))
            b1 = L.minimum(b, L.add(b, b0, parts.bt), spec.batch)
            with L.for_range(b, b1, start=b0, name="batch", **AS_WRITTEN) as bi:
                body(b, _Part(
                    a=L.gep(b, a, self.elem, L.mul(b, bi, spec.a_strides[0])),
                    b=L.gep(b, bm, self.elem, L.mul(b, bi, spec.b_strides[0])),
                    c=L.gep(b, c, self.elem, L.mul(b, bi, spec.c_strides[0])),
                    m0=m0, m1=L.minimum(b, L.add(b, m0, parts.mt), spec.M),
                    n0=n0, n1=L.minimum(b, L.add(b, n0, parts.nt), spec.N),
                    row_base=L.mul(b, bi, spec.M), scratch=slot, operands=tuple(operands)))
        b.ret_void()
        return fn

    # ---------------------------------------------------------------- shared helpers

    def _epilogue(self, b, values, row, col, operands) -> list:
        """The spec's epilogue on a tile (list of rows of values); identity without."""
        if self.spec.epilogue is None:
            return values
        out = self.spec.epilogue(b, values, row, col, operands)
        if len(out) != len(values) or any(len(o) != len(v) for o, v in zip(out, values)):
            raise ValueError("the GEMM epilogue must return a tile shaped like its input")
        return out

    def _at(self, b, base, rs, cs, row, col):
        """&X[row, col] for row and column strides rs, cs."""
        return L.gep(b, base, self.elem, L.offset(b, (row, rs), (col, cs)))

    # ---------------------------------------------------------------- K == 0: fill

    def _fill(self, b, part):
        """C = epilogue(0)."""
        _, rs, cs = self.spec.c_strides
        with L.loop_nest(b, (self.spec.M, self.spec.N), name="fill", **AS_WRITTEN) as (i, j):
            (v,), = self._epilogue(b, [[L.zeros(self.elem)]], L.add(b, part.row_base, i), j,
                                   part.operands)
            L.store(b, v, self._at(b, part.c, rs, cs, i, j))

    # ---------------------------------------------------------------- tiny

    def _tiny(self, b, part):
        """Every dimension <= TINY_DIM: straight-line code, no packing. Rows of C are
        accumulated in vectors across N (chunks of `lanes`, the last one exactly as
        wide as what is left), TINY_ROWS_AT_ONCE rows at a time; per k one broadcast
        of A[i, k] times a row of B."""
        spec = self.spec
        (_, a_rs, a_cs), (_, b_rs, b_cs), (_, c_rs, c_cs) = (
            spec.a_strides, spec.b_strides, spec.c_strides)
        chunks = [(j, min(self.lanes, spec.N - j)) for j in range(0, spec.N, self.lanes)]
        for i0 in range(0, spec.M, TINY_ROWS_AT_ONCE):
            rows = range(i0, min(i0 + TINY_ROWS_AT_ONCE, spec.M))
            acc = {(i, j): L.zeros(L.vector(self.elem, w)) for i in rows for j, w in chunks}
            for k in range(spec.K):
                b_row = {j: self._load_row(b, part.b, b_rs, b_cs, k, j, w) for j, w in chunks}
                for i in rows:
                    x = L.load(b, self._at(b, part.a, a_rs, a_cs, i, k), self.elem)
                    for j, w in chunks:
                        acc[i, j] = L.fma(b, L.splat(b, x, w), b_row[j], acc[i, j])
            for (i, j), value in acc.items():
                (value,), = self._epilogue(b, [[value]], L.add(b, part.row_base, i),
                                           L.const(j), part.operands)
                self._store_row(b, value, part.c, c_rs, c_cs, i, j)

    def _load_row(self, b, base, rs, cs, row, col, width) -> ir.Value:
        """X[row, col : col + width] as a <width x T> vector."""
        ty = L.vector(self.elem, width)
        if cs == 1:
            return L.load_vector(b, self._at(b, base, rs, cs, row, col), ty)
        v = ir.Constant(ty, ir.Undefined)
        for lane in range(width):
            x = L.load(b, self._at(b, base, rs, cs, row, col + lane), self.elem)
            v = b.insert_element(v, x, L.const(lane, L.I32))
        return v

    def _store_row(self, b, value, base, rs, cs, row, col):
        """X[row, col : col + width] = value."""
        if cs == 1:
            L.store_vector(b, value, self._at(b, base, rs, cs, row, col))
            return
        for lane in range(value.type.count):
            L.store(b, b.extract_element(value, L.const(lane, L.I32)),
                    self._at(b, base, rs, cs, row, col + lane))

    # ---------------------------------------------------------------- gemv

    def _gemv(self, b, part):
        """M == 1 or N == 1: out[r] = sum_k X[r, k] y[k] over this task's rows r, no
        packing. X contiguous along r: axpy passes into a contiguous accumulator in
        scratch; otherwise a dot product per output (vector accumulators when X and y
        are contiguous along k)."""
        spec = self.spec
        view, _ = _gemv_operands(spec)
        x, y = (part.a, part.b) if view.x_is_a else (part.b, part.a)
        r0, r1 = (part.m0, part.m1) if spec.N == 1 else (part.n0, part.n1)
        _, x_rs, x_ks = view.x_strides
        y_ks = view.y_strides[1]
        rows = L.sub(b, r1, r0)
        if view.axpy:
            self._gemv_axpy(b, L.gep(b, x, self.elem, r0), x_ks, y, y_ks, rows, part.scratch)
        with L.for_range(b, r1, start=r0, name="r", **AS_WRITTEN) as r:
            if view.axpy:
                value = L.load(b, L.gep(b, part.scratch, self.elem, L.sub(b, r, r0)), self.elem)
            else:
                value = self._dot(b, L.gep(b, x, self.elem, L.mul(b, r, x_rs)), x_ks, y, y_ks)
            row, col = (r, L.const(0)) if spec.N == 1 else (L.const(0), r)
            (value,), = self._epilogue(b, [[value]], L.add(b, part.row_base, row), col,
                                       part.operands)
            L.store(b, value, L.gep(b, part.c, self.elem, L.mul(b, r, view.out_stride)))

    def _dot(self, b, x, x_stride, y, y_stride) -> ir.Value:
        """sum over k < K of x[k] y[k]: DOT_ACCUMULATORS vectors when both are
        contiguous (then a masked tail), else a scalar loop."""
        K, lanes = self.spec.K, self.lanes
        if x_stride != 1 or y_stride != 1 or K < lanes:
            acc = L.alloca_once(b, self.elem, name="dot")
            L.store(b, L.zeros(self.elem), acc)
            with L.for_range(b, K, name="k", **AS_WRITTEN) as k:
                xk = L.load(b, L.gep(b, x, self.elem, L.mul(b, k, x_stride)), self.elem)
                yk = L.load(b, L.gep(b, y, self.elem, L.mul(b, k, y_stride)), self.elem)
                L.store(b, L.fma(b, xk, yk, L.load(b, acc, self.elem)), acc)
            return L.load(b, acc, self.elem)
        accs = [L.alloca_once(b, self.vec, name=f"dot{u}") for u in range(DOT_ACCUMULATORS)]
        for slot in accs:
            L.store(b, L.zeros(self.vec), slot)

        def step(k, slot, mask=None):
            load = ((lambda p: L.load_vector(b, p, self.vec)) if mask is None
                    else (lambda p: L.masked_load(b, p, self.vec, mask)))
            xv, yv = (load(L.gep(b, p, self.elem, k)) for p in (x, y))
            L.store(b, L.fma(b, xv, yv, L.load(b, slot, self.vec)), slot)

        step_k = DOT_ACCUMULATORS * lanes
        with L.for_range(b, K // step_k * step_k, step=step_k, name="k", **AS_WRITTEN) as k:
            for u, slot in enumerate(accs):
                step(L.add(b, k, u * lanes), slot)
        with L.for_range(b, K // lanes * lanes, start=K // step_k * step_k, step=lanes,
                         name="kv", **AS_WRITTEN) as k:
            step(k, accs[0])
        if K % lanes:
            step(L.const(K // lanes * lanes), accs[1], L.lane_mask(b, K % lanes, lanes))
        total = L.load(b, accs[0], self.vec)
        for slot in accs[1:]:
            total = b.fadd(total, L.load(b, slot, self.vec))
        return L.reduce_add(b, total)

    def _gemv_axpy(self, b, x, x_col_stride, y, y_stride, rows, out):
        """out[0:rows] = sum over k of X[:, k] y[k], X's rows contiguous: passes over
        `out` adding AXPY_COLUMNS columns of X each (one load and store of out per
        AXPY_COLUMNS FMAs)."""
        K, step = self.spec.K, AXPY_COLUMNS
        L.memset_zero(b, out, L.mul(b, rows, self.size))
        with L.for_range(b, K // step * step, step=step, name="k", **AS_WRITTEN) as k:
            ks = [L.add(b, k, u) for u in range(step)]
            self._axpy_pass(b, x, x_col_stride, y, y_stride, rows, out, ks)
        with L.for_range(b, K, start=K // step * step, name="kt", **AS_WRITTEN) as k:
            self._axpy_pass(b, x, x_col_stride, y, y_stride, rows, out, [k])

    def _axpy_pass(self, b, x, x_col_stride, y, y_stride, rows, out, ks):
        """out[0:rows] += sum over k in ks of X[:, k] y[k]."""
        lanes = self.lanes
        scales = [L.load(b, L.gep(b, y, self.elem, L.mul(b, k, y_stride)), self.elem)
                  for k in ks]
        splats = [L.splat(b, s, lanes) for s in scales]
        columns = [L.gep(b, x, self.elem, L.mul(b, k, x_col_stride)) for k in ks]
        vector_rows = L.floor_multiple(b, rows, lanes)
        with L.for_range(b, vector_rows, step=lanes, name="r", **AS_WRITTEN) as r:
            dst = L.gep(b, out, self.elem, r)
            acc = L.load_vector(b, dst, self.vec)
            for column, scale in zip(columns, splats):
                xv = L.load_vector(b, L.gep(b, column, self.elem, r), self.vec)
                acc = L.fma(b, xv, scale, acc)
            L.store_vector(b, acc, dst)
        with L.for_range(b, rows, start=vector_rows, name="rt", **AS_WRITTEN) as r:
            dst = L.gep(b, out, self.elem, r)
            acc = L.load(b, dst, self.elem)
            for column, scale in zip(columns, scales):
                acc = L.fma(b, L.load(b, L.gep(b, column, self.elem, r), self.elem), scale, acc)
            L.store(b, acc, dst)

    # ---------------------------------------------------------------- blocked

    def _blocked(self, b, part):
        """The jc / pc / ic loops over this task's part of C (module docstring)."""
        spec, blk = self.spec, self.blk
        pack_a, pack_b, macro = self._packer(blk.mr), self._packer(blk.nr), self._macro()
        ap = part.scratch
        bp = L.gep(b, part.scratch, ir.IntType(8), _a_block_bytes(spec, blk))
        (_, a_rs, a_cs), (_, b_rs, b_cs), (_, c_rs, c_cs) = (
            spec.a_strides, spec.b_strides, spec.c_strides)
        k_blocks = _ceil_div(spec.K, blk.kc)
        ops = list(part.operands)
        with L.for_range(b, part.n1, start=part.n0, step=blk.nc, name="jc",
                         **AS_WRITTEN) as jc:
            ncur = L.minimum(b, blk.nc, L.sub(b, part.n1, jc))
            with L.for_range(b, k_blocks, name="pcb", **AS_WRITTEN) as pcb:
                pc = L.mul(b, pcb, blk.kc)
                kcur = L.minimum(b, blk.kc, L.sub(b, spec.K, pc))
                # B block: panels of nr columns (x), k along B's rows.
                b.call(pack_b, [bp, self._at(b, part.b, b_rs, b_cs, pc, jc),
                                L.const(b_rs), L.const(b_cs), kcur, ncur])
                with L.for_range(b, part.m1, start=part.m0, step=blk.mc, name="ic",
                                 **AS_WRITTEN) as ic:
                    mcur = L.minimum(b, blk.mc, L.sub(b, part.m1, ic))
                    c_block = self._at(b, part.c, c_rs, c_cs, ic, jc)
                    rest = [mcur, ncur, kcur, pcb, L.add(b, part.row_base, ic), jc, *ops]
                    if self._reads_a_directly():
                        # whole mr-row panels read in place; a partial last panel is packed
                        whole = b.icmp_signed("==", b.srem(mcur, L.const(blk.mr)), L.const(0))
                        with b.if_else(whole, likely=True) as (direct, packed):
                            with direct:
                                b.call(self._macro(direct=True),
                                       [self._at(b, part.a, a_rs, a_cs, ic, pc), bp, c_block, *rest])
                            with packed:
                                b.call(pack_a, [ap, self._at(b, part.a, a_rs, a_cs, ic, pc),
                                                L.const(a_cs), L.const(a_rs), kcur, mcur])
                                b.call(macro, [ap, bp, c_block, *rest])
                    else:
                        # A block: panels of mr rows (x), k along A's columns.
                        if spec.a_packer is not None:
                            b.call(spec.a_packer.function(self), [ap, part.a, ic, mcur, pc, kcur])
                        else:
                            b.call(pack_a, [ap, self._at(b, part.a, a_rs, a_cs, ic, pc),
                                            L.const(a_cs), L.const(a_rs), kcur, mcur])
                        b.call(macro, [ap, bp, c_block, *rest])

    def _reads_a_directly(self) -> bool:
        """Whether the micro-kernel reads A in place, unpacked: an explicit A contiguous
        along k (row-major), whose mr rows the kernel broadcasts from like a packed
        panel's. Packing A cost a task 4-8% at M = 256 on two threads (each thread
        packs all of A for its columns); B stays packed (its panel is reused by every
        row panel and must stay in L1)."""
        spec, mr = self.spec, self.blk.mr
        if not (DIRECT_A and spec.a_packer is None and spec.a_strides[2] == 1
                and spec.a_strides[1] > 0):
            return False
        line = 64
        sets = [(i * spec.a_strides[1] * self.size) % L1_SET_SPAN // line for i in range(mr)]
        return max(sets.count(x) for x in sets) <= DIRECT_A_ROWS_PER_SET

    def _macro(self, direct: bool = False) -> ir.Function:
        """`name.macro(Ap, Bp, C, mcur, ncur, kcur, k_block, row, col, op...)`: every
        mr x nr tile of a packed A block times a packed B block into the C block at `C`
        (whose first element is C[row, col], row flattened); after the last K block
        each finished tile goes through the epilogue. `direct`: Ap is &A[row, k0] of
        A itself (`_reads_a_directly`), mcur a multiple of mr."""
        spec, blk = self.spec, self.blk
        nops = spec.epilogue_operands
        name = f"{self.name}.macro" + (".direct" if direct else "")
        existing = self.module.globals.get(name)
        if existing is not None:
            return existing
        fn, b = self._function(name, [L.PTR] * 3 + [L.INDEX] * 6 + [L.PTR] * nops)
        ap, bp, c, mcur, ncur, kcur, k_block, row, col, *ops = fn.args
        ukernel = self._ukernel(direct)
        a_rows = spec.a_strides[1]
        _, rs, cs = spec.c_strides
        accumulate = b.icmp_signed(">", k_block, L.const(0))
        last = b.icmp_signed("==", k_block, L.const(_ceil_div(spec.K, blk.kc) - 1))
        with L.for_range(b, ncur, step=blk.nr, name="jr", **AS_WRITTEN) as jr:
            b_panel = L.gep(b, bp, self.elem, L.mul(b, jr, kcur))
            n_valid = L.minimum(b, blk.nr, L.sub(b, ncur, jr))
            with L.for_range(b, mcur, step=blk.mr, name="ir", **AS_WRITTEN) as ir_:
                a_panel = L.gep(b, ap, self.elem, L.mul(b, ir_, a_rows if direct else kcur))
                m_valid = L.minimum(b, blk.mr, L.sub(b, mcur, ir_))
                tile = self._at(b, c, rs, cs, ir_, jr)
                b.call(ukernel, [kcur, a_panel, b_panel, tile, L.const(rs), L.const(cs),
                                 m_valid, n_valid, accumulate])
                if spec.epilogue is not None:
                    with b.if_then(last):
                        self._epilogue_pass(b, tile, m_valid, n_valid, L.add(b, row, ir_),
                                            L.add(b, col, jr), tuple(ops))
        b.ret_void()
        return fn

    def _epilogue_pass(self, b, c, rows, cols, row, col, operands):
        """C[:rows, :cols] = epilogue(C[:rows, :cols]) for the tile at `c` (in L1):
        whole vectors along each row, then a scalar tail."""
        lanes = self.lanes
        _, rs, cs = self.spec.c_strides
        full = L.floor_multiple(b, cols, lanes) if cs == 1 else L.const(0)
        with L.for_range(b, rows, name="er", **AS_WRITTEN) as i:
            c_row = L.gep(b, c, self.elem, L.mul(b, i, rs))
            flat_row = L.add(b, row, i)
            with L.for_range(b, full, step=lanes, name="ev", **AS_WRITTEN) as j:
                ptr = L.gep(b, c_row, self.elem, j)
                (v,), = self._epilogue(b, [[L.load_vector(b, ptr, self.vec)]], flat_row,
                                       L.add(b, col, j), operands)
                L.store_vector(b, v, ptr)
            with L.for_range(b, cols, start=full, name="es", **AS_WRITTEN) as j:
                ptr = L.gep(b, c_row, self.elem, L.mul(b, j, cs))
                (v,), = self._epilogue(b, [[L.load(b, ptr, self.elem)]], flat_row,
                                       L.add(b, col, j), operands)
                L.store(b, v, ptr)

    # ---------------------------------------------------------------- shared kernels

    def _shared(self, name, args, emit) -> ir.Function:
        """A kernel that depends on dtype and tile only: emitted once per module and
        called by every GEMM in it, so LLVM optimizes and compiles it once."""
        existing = self.module.globals.get(name)
        if existing is not None:
            return existing
        fn, b = self._function(name, args)
        fn.attributes.add("noinline")
        emit(fn, b)
        b.ret_void()
        return fn

    def _packer(self, width) -> ir.Function:
        """`pack(dst, src, k_stride, x_stride, kcur, xcur)`: panels of `width`,
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
                                            L.mul(b, p, L.mul(b, x_stride, width))),
                                      k_stride, x_stride, kcur, width)
            rem = b.srem(xcur, L.const(width))
            with b.if_then(b.icmp_signed(">", rem, L.const(0))):
                self._pack_edge_panel(b, L.gep(b, dst, self.elem, L.mul(b, full, panel)),
                                      L.gep(b, src, self.elem,
                                            L.mul(b, full, L.mul(b, x_stride, width))),
                                      k_stride, x_stride, kcur, rem, width)

        name = f"tessel.gemm.pack.{self.spec.dtype}.{width}"
        return self._shared(name, [L.PTR, L.PTR] + [L.INDEX] * 4, emit)

    def _pack_full_panel(self, b, dst, src, k_stride, x_stride, kcur, width):
        """dst[k*width + x] = src[k*k_stride + x*x_stride] for x < width, k < kcur.

        x contiguous (A column-major, B row-major): one <width x T> copy per k.
        k contiguous (A row-major, B column-major): lanes x lanes blocks transposed in
        registers, the k tail element by element. Otherwise element by element.
        """
        with b.if_else(b.icmp_signed("==", x_stride, L.const(1))) as (copy_rows, other):
            with copy_rows:
                row = L.vector(self.elem, width)
                with L.for_range(b, kcur, name="kv", **AS_WRITTEN) as k:
                    x = L.load_vector(b, L.gep(b, src, self.elem, L.mul(b, k, k_stride)), row)
                    L.store_vector(b, x, L.gep(b, dst, self.elem, L.mul(b, k, width)))
            with other:
                k_contiguous = b.icmp_signed("==", k_stride, L.const(1))
                k_main = b.select(k_contiguous, L.floor_multiple(b, kcur, self.lanes),
                                  L.const(0))
                self._pack_transposing(b, dst, src, x_stride, k_main, width)
                self._pack_gather(b, dst, src, k_stride, x_stride, k_main, kcur, width)

    def _pack_transposing(self, b, dst, src, x_stride, k_end, width):
        """k < k_end (a multiple of lanes) of a panel whose source is contiguous along
        k: load lanes k-values of each source row x, transpose the lanes x lanes blocks,
        store each column (one k) as a slice of the packed row k."""
        lanes = self.lanes
        with L.for_range(b, k_end, step=lanes, name="kb", **AS_WRITTEN) as k0:
            for x0 in range(0, width, lanes):
                count = min(lanes, width - x0)
                rows = [L.load_vector(b, self._at(b, src, x_stride, 1, x0 + x, k0), self.vec)
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
        """The last panel, with count < width columns: copy them, zero the rest."""
        with L.for_range(b, kcur, name="ke", **AS_WRITTEN) as k:
            row_src = L.gep(b, src, self.elem, L.mul(b, k, k_stride))
            row_dst = L.gep(b, dst, self.elem, L.mul(b, k, width))
            with L.for_range(b, count, name="x", **AS_WRITTEN) as x:
                value = L.load(b, L.gep(b, row_src, self.elem, L.mul(b, x, x_stride)),
                               self.elem)
                L.store(b, value, L.gep(b, row_dst, self.elem, x))
            with L.for_range(b, width, start=count, name="z", **AS_WRITTEN) as x:
                L.store(b, L.zeros(self.elem), L.gep(b, row_dst, self.elem, x))

    def _ukernel(self, direct: bool = False) -> ir.Function:
        """`ukernel(kc, Ap, Bp, C, rs, cs, m_valid, n_valid, accumulate)`: the mr x nr
        register tile Ap @ Bp over kc steps, then C[:m_valid, :n_valid] (+)= tile.
        Ap is a packed panel (k-major, mr per k), or with `direct` mr rows of A itself,
        a_strides[1] apart, contiguous along k (a kernel per row stride)."""
        blk = self.blk
        a_step = (self.spec.a_strides[1], 1) if direct else (1, blk.mr)   # (row, k) strides

        def emit(fn, b):
            kc, ap, bp, c, rs, cs, m_valid, n_valid, accumulate = fn.args
            for arg in (ap, bp, c):
                arg.add_attribute("noalias")
            tile = self._tile_product(b, ap, bp, kc, a_step)
            full = b.and_(b.and_(b.icmp_signed("==", m_valid, L.const(blk.mr)),
                                 b.icmp_signed("==", n_valid, L.const(blk.nr))),
                          b.icmp_signed("==", cs, L.const(1)))
            with b.if_else(full, likely=True) as (whole, edge):
                with whole:
                    self._store_full(b, tile, c, rs, accumulate)
                with edge:
                    self._store_edge(b, tile, c, rs, cs, m_valid, n_valid, accumulate)

        name = f"tessel.gemm.ukernel.{self.spec.dtype}.{blk.mr}x{blk.nr}" + (
            f".a{a_step[0]}" if direct else "")
        return self._shared(name, [L.INDEX, L.PTR, L.PTR, L.PTR, L.INDEX, L.INDEX,
                                   L.INDEX, L.INDEX, L.I1], emit)

    def _tile_product(self, b, a_panel, b_panel, kc, a_step) -> list[list[ir.Value]]:
        """sum over k < kc of A panel column k (broadcasts; element (i, k) at
        i*a_step[0] + k*a_step[1]) times B panel row k (vectors), in mr x nv accumulators
        (entry-block allocas, promoted to registers); the k loop unrolled K_UNROLL times."""
        blk = self.blk
        nv = blk.nr // blk.lanes
        accs = [[L.alloca_once(b, self.vec, name=f"c{i}_{j}") for j in range(nv)]
                for i in range(blk.mr)]
        for slot in (s for row in accs for s in row):
            L.store(b, L.zeros(self.vec), slot)

        def step(k):
            b_row = L.gep(b, b_panel, self.elem, L.mul(b, k, blk.nr))
            bk = [L.load_vector(b, L.gep(b, b_row, self.elem, j * blk.lanes), self.vec,
                                align=ALIGN) for j in range(nv)]
            a_col = L.gep(b, a_panel, self.elem, L.mul(b, k, a_step[1]))
            for i in range(blk.mr):
                aik = L.splat(b, L.load(b, L.gep(b, a_col, self.elem, i * a_step[0]), self.elem),
                              blk.lanes)
                for j in range(nv):
                    slot = accs[i][j]
                    L.store(b, L.fma(b, aik, bk[j], L.load(b, slot, self.vec)), slot)

        main = L.floor_multiple(b, kc, K_UNROLL)
        with L.for_range(b, main, step=K_UNROLL, name="k", **AS_WRITTEN) as k:
            for u in range(K_UNROLL):
                step(L.add(b, k, u))
        with L.for_range(b, kc, start=main, name="kt", **AS_WRITTEN) as k:
            step(k)
        return [[L.load(b, slot, self.vec) for slot in row] for row in accs]

    def _store_full(self, b, tile, c, rs, accumulate):
        """C tile (+)= tile, whole vectors (C's columns contiguous)."""
        ptrs = [self._at(b, c, rs, 1, i, j * self.lanes)
                for i, row in enumerate(tile) for j in range(len(row))]
        flat = [v for row in tile for v in row]
        flat = L.branch_values(
            b, accumulate,
            lambda: [b.fadd(v, L.load_vector(b, p, self.vec)) for v, p in zip(flat, ptrs)],
            lambda: flat)
        for v, p in zip(flat, ptrs):
            L.store_vector(b, v, p)

    def _store_edge(self, b, tile, c, rs, cs, m_valid, n_valid, accumulate):
        """C[:m_valid, :n_valid] (+)= tile for partial tiles (or C with non-unit column
        stride): spill the tile to the stack, then element by element."""
        blk = self.blk
        buf = L.alloca_once(b, ir.ArrayType(self.elem, blk.mr * blk.nr), name="edge",
                            align=ALIGN)
        for i, values in enumerate(tile):
            for j, v in enumerate(values):
                L.store_vector(b, v, L.gep(b, buf, self.elem, i * blk.nr + j * blk.lanes),
                               align=ALIGN)
        with L.loop_nest(b, (m_valid, n_valid), name="e", **AS_WRITTEN) as (i, j):
            ptr = self._at(b, c, rs, cs, i, j)
            v = L.load(b, L.gep(b, buf, self.elem, L.add(b, L.mul(b, i, blk.nr), j)),
                       self.elem)
            old = L.load(b, ptr, self.elem)     # inside C: a select, not a branch
            L.store(b, b.select(accumulate, b.fadd(v, old), v), ptr)


def _align_up(b: ir.IRBuilder, ptr: ir.Value) -> ir.Value:
    """`ptr` rounded up to ALIGN bytes."""
    address = b.ptrtoint(ptr, L.INDEX)
    aligned = b.and_(b.add(address, L.const(ALIGN - 1)), L.const(-ALIGN))
    return b.inttoptr(aligned, L.PTR, name="scratch")


# --------------------------------------------------------------------------- convenience

class CompiledGemm:
    """A JIT-compiled GEMM called on NumPy arrays (tests, benchmarks): operands are
    passed by their data pointers, so their memory must match the spec's strides."""

    def __init__(self, spec: GemmSpec, threads: int | None = None, tile=None,
                 target: TargetInfo | None = None):
        self.spec = spec
        module = ir.Module(name="gemm")
        emit_gemm(module, spec, "gemm", target=target, threads=threads, tile=tile)
        self.jit = JitModule(str(module))
        self._fn = self.jit.function("gemm", None,
                                     *[ctypes.c_void_p] * (4 + spec.epilogue_operands))
        self._dtype = np.dtype(_DTYPES[spec.dtype][2])
        self._scratch = np.empty(scratch_bytes(spec, target, threads, tile), np.uint8)

    def __call__(self, a: np.ndarray, b: np.ndarray, *operands: np.ndarray,
                 out: np.ndarray | None = None) -> np.ndarray:
        """Run on `a`, `b` (and the epilogue's operands) into `out`, by default a fresh
        contiguous (batch, M, N) array (2-D when batch == 1)."""
        spec = self.spec
        for x in (a, b, out):
            if x is not None and x.dtype != self._dtype:
                raise TypeError(f"expected {self._dtype} operands, got {x.dtype}")
        if out is None:
            if spec.c_strides != _strides(None, spec.M, spec.N):
                raise ValueError("pass `out` for a C with non-default strides")
            shape = (spec.M, spec.N) if spec.batch == 1 else (spec.batch, spec.M, spec.N)
            out = np.empty(shape, self._dtype)
        self._fn(*(x.ctypes.data for x in (a, b, out, self._scratch, *operands)))
        return out

    def assembly(self) -> str:
        return self.jit.assembly()


def compile_gemm(spec: GemmSpec, threads: int | None = None, tile=None,
                 target: TargetInfo | None = None) -> CompiledGemm:
    """`f(A, B) -> C` for NumPy arrays laid out as `spec` says (contiguous by default),
    JIT-compiled for this host (`target`: plan vector widths and blocks for another CPU;
    the host must be able to run its vectors)."""
    return CompiledGemm(spec, threads=threads, tile=tile, target=target)
