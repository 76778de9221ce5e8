"""CPU GEMM (backends/cpu/gemm.py) against NumPy.

Operands are NumPy views (transposed, strided, batched); the spec takes their strides,
so every layout runs through the same packing. Shapes are chosen to hit each path
(tiny, gemv dot/axpy, blocked) and each edge of the blocked kernel: M, N not multiples
of the register tile, K not a multiple of the unroll, several K / M / N blocks, and
size-0 dimensions. The epilogue is tested with bias + relu (a column operand) and a
residual add (a row-and-column operand, checking the flattened batch row index).
"""
import numpy as np
import pytest
from llvmlite import ir

from tessel.backends.cpu import gemm as G
from tessel.backends.cpu import loops as L
from tessel.backends.cpu.llvm_target import JitModule, TargetInfo, host


# ----------------------------------------------------------------------------- helpers

def elements(x: np.ndarray) -> tuple:
    return tuple(s // x.itemsize for s in x.strides)


def spec_for(a, b, c, **kw) -> G.GemmSpec:
    """The spec of C = A @ B for (batched) NumPy views."""
    *batch, m, k = a.shape
    n = b.shape[-1]
    strides = [elements(x) if x.ndim == 3 else (0,) + elements(x) for x in (a, b, c)]
    return G.GemmSpec(a.dtype.name, m, n, k, batch=batch[0] if batch else 1,
                      a_strides=strides[0], b_strides=strides[1], c_strides=strides[2], **kw)


def run(a, b, c=None, threads=1, operands=(), **kw):
    """C = A @ B through a compiled kernel, written into the view `c` (fresh if None)."""
    if c is None:
        c = np.full(a.shape[:-1] + b.shape[-1:], np.nan, a.dtype)
    kernel = G.CompiledGemm(spec_for(a, b, c, **kw), threads=threads)
    kernel(a, b, *operands, out=c)
    return c


def sample(shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(dtype)


def check(got, want, k):
    want = np.asarray(want, np.float64)
    if got.dtype == np.float64:
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14 * max(k, 1))
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * max(k, 1))


def reference(a, b):
    return np.matmul(a.astype(np.float64), b.astype(np.float64))


# ----------------------------------------------------------------------------- shapes

SHAPES = [            # (M, N, K): the path each takes is asserted below
    (1, 1, 1), (7, 13, 5), (16, 16, 16),                         # tiny
    (100, 1, 50), (1, 100, 50), (1, 1, 300), (3000, 1, 7),       # gemv
    (33, 65, 17), (17, 17, 17), (14, 32, 64),                    # blocked, one tile / edges
    (131, 97, 300), (600, 45, 33), (29, 700, 513),               # several K / M / N blocks
]


def test_paths():
    path = lambda m, n, k: G.choose_path(G.GemmSpec("f32", m, n, k))  # noqa: E731
    assert [path(*s) for s in SHAPES[:7]] == ["tiny"] * 3 + ["gemv"] * 4
    assert {path(*s) for s in SHAPES[7:]} == {"blocked"}
    assert path(0, 5, 5) == path(5, 0, 5) == "empty" and path(5, 5, 0) == "fill"


@pytest.mark.parametrize("m,n,k", SHAPES)
def test_shapes_f32(m, n, k):
    a, b = sample((m, k)), sample((k, n), seed=1)
    check(run(a, b), reference(a, b), k)


@pytest.mark.parametrize("m,n,k", [(7, 13, 5), (100, 1, 50), (1, 100, 50), (131, 97, 300)])
def test_shapes_f64(m, n, k):
    a, b = sample((m, k), np.float64), sample((k, n), np.float64, seed=1)
    check(run(a, b), reference(a, b), k)


@pytest.mark.parametrize("m,n,k", [(0, 5, 7), (5, 0, 7), (0, 0, 0), (5, 7, 0), (40, 50, 0)])
def test_size_zero(m, n, k):
    a, b = sample((m, k)), sample((k, n))
    got = run(a, b)
    assert got.shape == (m, n)
    np.testing.assert_array_equal(got, np.zeros((m, n), np.float32))


# ----------------------------------------------------------------------------- layouts

def views(m, n, k, layout, dtype=np.float32):
    """A (m x k) and B (k x n) in the named layout: row-major, transposed or strided."""
    a, b = sample((m, k), dtype), sample((k, n), dtype, seed=1)
    if "At" in layout:
        a = np.ascontiguousarray(a.T).T
    if "Bt" in layout:
        b = np.ascontiguousarray(b.T).T
    if "strided" in layout:     # every other column, rows padded
        a = np.repeat(np.pad(a, ((0, 0), (0, 3))), 2, axis=1)[:, ::2][:, :k]
        b = np.repeat(b, 2, axis=1)[:, ::2]
    return a, b


@pytest.mark.parametrize("m,n,k,layout", [
    *[(75, 90, 300, layout) for layout in ("At", "Bt", "At,Bt", "strided")],   # packing
    (9, 11, 13, "At,Bt"), (9, 11, 13, "strided"),                             # tiny
    (70, 1, 40, "At"), (70, 1, 40, "strided"),                                # gemv axpy / dot
    (1, 70, 40, "Bt"), (1, 70, 40, "strided")])                               # gemv dot / axpy
def test_layouts(m, n, k, layout):
    a, b = views(m, n, k, layout)
    check(run(a, b), reference(a, b), k)


@pytest.mark.parametrize("m,n,k", [(9, 11, 13), (75, 90, 60), (80, 1, 20)])
def test_output_layouts(m, n, k):
    a, b = sample((m, k)), sample((k, n), seed=1)
    transposed = np.full((n, m), np.nan, np.float32).T
    check(run(a, b, transposed), reference(a, b), k)
    padded = np.full((m, n + 5), np.nan, np.float32)
    run(a, b, padded[:, :n])
    check(padded[:, :n], reference(a, b), k)
    assert np.isnan(padded[:, n:]).all(), "wrote outside C"


def test_reversed_strides():
    a, b = sample((40, 30)), sample((30, 50), seed=1)
    a, b = a[::-1], b[:, ::-1]
    check(run(a, b), reference(a, b), 30)


@pytest.mark.parametrize("m,n,k", [(5, 6, 7), (40, 1, 30), (60, 70, 300)])
def test_batched(m, n, k):
    a, b = sample((3, m, k)), sample((3, k, n), seed=1)
    check(run(a, b), reference(a, b), k)
    bt = np.ascontiguousarray(b.transpose(2, 0, 1)).transpose(1, 2, 0)   # batch strided
    check(run(a, bt), reference(a, bt), k)


def test_broadcast_batch_operand():
    """A batch stride of 0 shares one B across the batch."""
    a, b = sample((4, 30, 20)), sample((20, 25), seed=1)
    b3 = np.lib.stride_tricks.as_strided(b, (4, 20, 25), (0,) + b.strides)
    check(run(a, b3), reference(a, b), 20)


# ----------------------------------------------------------------------------- threads

@pytest.mark.parametrize("shape", [(300, 200, 100), (2, 150, 160, 120), (40, 600, 200),
                                   (200, 16, 16, 16), (3000, 1, 300), (1, 3000, 300),
                                   (4, 1, 1000, 200)])
def test_threads(shape):
    *batch, m, n, k = shape
    a, b = sample((*batch, m, k)), sample((*batch, k, n), seed=1)
    spec = spec_for(a, b, np.empty((*batch, m, n), np.float32))
    assert G.plan(spec, threads=2).partition.tasks > 1
    check(run(a, b, threads=2), reference(a, b), k)


def test_threads_sum_like_one_thread():
    """Tasks cut C, never K: every element is summed in the same order."""
    a, b = sample((300, 200)), sample((200, 100), seed=1)
    np.testing.assert_array_equal(run(a, b, threads=1), run(a, b, threads=2))


def test_partition_cost_model():
    tasks = lambda spec, threads: G.plan(spec, threads=threads).partition  # noqa: E731
    big = G.GemmSpec("f32", 1024, 1024, 1024)
    assert tasks(big, 1).tasks == 1
    assert tasks(big, 2).tasks % 2 == 0
    assert tasks(G.GemmSpec("f32", 64, 64, 64), 2).tasks == 1     # < PARALLEL_MIN_FLOPS
    tiny = tasks(G.GemmSpec("f32", 16, 16, 16, batch=1000), 2)
    assert 1 < tiny.tasks <= 8 and tiny.pm == tiny.pn == 1         # batch split only
    gemv = tasks(G.GemmSpec("f32", 4096, 1, 4096), 2)
    assert gemv.pm > 1 and gemv.mt % 16 == 0


# ----------------------------------------------------------------------------- mid sizes on threads

# Odd sizes: M and N not multiples of the tile, parts of uneven size (the last row or
# column part shorter), several K blocks, and a narrow N (nv = 1 tile).
MID = [(256, 512, 784), (256, 10, 512), (257, 129, 513), (33, 65, 1100), (500, 900, 40),
       (100, 300, 700)]


@pytest.mark.parametrize("threads", [2, 3])
def test_mid_sizes_split_into_whole_tiles_each_packing_its_own(threads):
    """Every part of C is whole register tiles (but the last), the parts cover C
    exactly, and each task has its own packing slot in scratch (nothing shared)."""
    for m, n, k in MID:
        spec = G.GemmSpec("f32", m, n, k)
        how = G.plan(spec, threads=threads)
        parts, blk = how.partition, how.blocking
        assert how.path == "blocked" and 1 < parts.tasks <= 4 * threads
        assert parts.mt % blk.mr == 0 or parts.mt == m
        assert parts.nt % blk.nr == 0 or parts.nt == n
        assert (parts.pm - 1) * parts.mt < m <= parts.pm * parts.mt
        assert (parts.pn - 1) * parts.nt < n <= parts.pn * parts.nt
        assert G.scratch_bytes(spec, threads=threads) == G.ALIGN + parts.tasks * G._slot_bytes(spec, how)


def test_cost_model_counts_repacking():
    """A task packs all of A for its columns and all of B for its rows: at M = 256 the
    cheapest cut on two threads is two column halves (A packed twice), not four or
    eight parts (the MLP's and GPT-2 block's GEMMs)."""
    for m, n, k in [(256, 512, 784), (256, 512, 512), (256, 512, 2048)]:
        parts = G.plan(G.GemmSpec("f32", m, n, k), threads=2).partition
        assert (parts.pm, parts.pn) == (1, 2)


@pytest.mark.parametrize("m,n,k", MID)
@pytest.mark.parametrize("layout,threads", [("", 2), ("At", 2), ("Bt", 2), ("strided", 2),
                                            ("", 3)])         # 3: uneven parts per thread
def test_mid_sizes_on_threads(m, n, k, layout, threads):
    a, b = views(m, n, k, layout)
    check(run(a, b, threads=threads), reference(a, b), k)


def test_mid_size_sums_like_one_thread_and_applies_the_epilogue_once():
    a, b = sample((257, 513)), sample((513, 129), seed=1)
    np.testing.assert_array_equal(run(a, b, threads=2), run(a, b, threads=1))
    np.testing.assert_array_equal(run(a, b, threads=3), run(a, b, threads=1))
    bias = sample((129,), seed=2)
    got = run(a, b, operands=(bias,), epilogue=bias_relu, epilogue_operands=1, threads=2)
    check(got, np.maximum(reference(a, b) + bias, 0), 513)


def test_tile_rows_follow_m():
    """The widest tile unless it wastes more than TILE_WASTE_LIMIT of its rows; then
    the row count in [widest / 2, widest] that wastes the fewest."""
    widest, nr = G.micro_tile(host(), 4)
    assert G.micro_tile(host(), 4, 512, 1024) == (widest, nr)
    for m in (256, 100, 33, 257, 64, 70, 777):
        mr, _ = G.micro_tile(host(), 4, 512, m)
        waste = lambda r: (-(-m // r) * r - m) / (-(-m // r) * r)  # noqa: E731
        if waste(widest) <= G.TILE_WASTE_LIMIT:
            assert mr == widest
        else:
            assert widest // 2 <= mr <= widest
            assert waste(mr) == min(waste(r) for r in range(widest // 2, widest + 1))
    if widest == 14:
        assert G.micro_tile(host(), 4, 512, 256)[0] == 8


@pytest.mark.parametrize("m", [256, 100, 33, 257, 70])
def test_adapted_tiles_compute_the_product(m):
    a, b = sample((m, 300)), sample((300, 70), seed=1)
    check(run(a, b), reference(a, b), 300)


# ----------------------------------------------------------------------------- epilogues

def bias_relu(builder, tile, row, col, operands):
    """max(C + bias[col], 0); works on vectors and scalars alike."""
    bias, = operands
    out = []
    for values in tile:
        out.append([])
        for j, v in enumerate(values):
            vector = isinstance(v.type, ir.VectorType)
            elem = v.type.element if vector else v.type
            width = v.type.count if vector else 1
            ptr = L.gep(builder, bias, elem, L.add(builder, col, j * width))
            bv = L.load_vector(builder, ptr, v.type) if vector else L.load(builder, ptr, elem)
            out[-1].append(L.maxnum(builder, builder.fadd(v, bv), L.zeros(v.type)))
    return out


def residual(n_cols):
    """C + R[row, col] for R of shape (batch * M, N) row-major: checks row_index."""
    def epilogue(builder, tile, row, col, operands):
        res, = operands
        out = []
        for i, values in enumerate(tile):
            out.append([])
            for j, v in enumerate(values):
                vector = isinstance(v.type, ir.VectorType)
                elem = v.type.element if vector else v.type
                width = v.type.count if vector else 1
                index = L.add(builder, L.mul(builder, L.add(builder, row, i), n_cols),
                              L.add(builder, col, j * width))
                ptr = L.gep(builder, res, elem, index)
                rv = (L.load_vector(builder, ptr, v.type) if vector
                      else L.load(builder, ptr, elem))
                out[-1].append(builder.fadd(v, rv))
        return out
    return epilogue


@pytest.mark.parametrize("m,n,k,dtype", [
    (7, 13, 5, np.float32), (100, 1, 50, np.float32), (1, 100, 50, np.float32),
    (33, 65, 17, np.float32), (131, 97, 300, np.float32), (20, 37, 0, np.float32),
    (7, 13, 5, np.float64), (1, 100, 50, np.float64), (131, 97, 300, np.float64)])
def test_epilogue_bias_relu(m, n, k, dtype):
    a, b = sample((m, k), dtype), sample((k, n), dtype, seed=1)
    bias = sample((n,), dtype, seed=2)
    got = run(a, b, operands=(bias,), epilogue=bias_relu, epilogue_operands=1)
    check(got, np.maximum(reference(a, b) + bias, 0), k)


@pytest.mark.parametrize("m,n,k", [(5, 6, 7), (40, 50, 300), (60, 1, 20), (1, 60, 20)])
def test_epilogue_row_index(m, n, k):
    a, b = sample((2, m, k)), sample((2, k, n), seed=1)
    r = sample((2 * m, n), seed=3)
    got = run(a, b, operands=(r,), epilogue=residual(n), epilogue_operands=1, threads=2)
    check(got, reference(a, b) + r.reshape(2, m, n), k)


def test_epilogue_applied_once_with_several_k_blocks():
    a, b = sample((30, 700)), sample((700, 40), seed=1)
    assert G.plan(spec_for(a, b, np.empty((30, 40), np.float32))).blocking.kc < 700
    bias = sample((40,), seed=2)
    got = run(a, b, operands=(bias,), epilogue=bias_relu, epilogue_operands=1)
    check(got, np.maximum(reference(a, b) + bias, 0), 700)


# ----------------------------------------------------------------------------- codegen

def test_shared_kernels_are_emitted_once():
    """One packed-panel micro-kernel per tile, one A-in-place variant per A row stride."""
    module = ir.Module()
    G.emit_gemm(module, G.GemmSpec("f32", 100, 100, 100), "g1", threads=1)
    G.emit_gemm(module, G.GemmSpec("f32", 100, 70, 300), "g2", threads=1)
    G.emit_gemm(module, G.GemmSpec("f32", 100, 40, 300), "g3", threads=1)
    names = sorted(f.name for f in module.functions if f.name.startswith("tessel.gemm.ukernel"))
    mr, nr = G.micro_tile(host(), 4, 100, 100)
    assert len(set(names)) == len(names) == 3
    assert sorted(n.rsplit(".", 1)[-1] for n in names) == sorted(["a100", "a300", f"{mr}x{nr}"])
    JitModule(str(module))      # verifies


@pytest.mark.parametrize("m,n,k", [(256, 512, 784), (100, 70, 300), (33, 65, 1100), (40, 50, 1024),
                                   (256, 40, 2048)])
def test_a_read_in_place_or_packed(m, n, k):
    """Row-major A is read in place (whole row panels; a partial last panel packed)
    unless more than DIRECT_A_ROWS_PER_SET of its mr rows index one L1 set (K = 1024
    or 2048 f32: every row 4 KiB apart in the same set): same result either way, bit
    for bit (the same FMAs in the same order)."""
    a, b = sample((m, k)), sample((k, n), seed=1)
    spec = spec_for(a, b, np.empty((m, n), np.float32))
    emitter = G._Emitter(ir.Module(), spec, "g", host(), 1, None)
    same_set = k % 1024 == 0
    assert emitter._reads_a_directly() == (not same_set or emitter.blk.mr <= G.DIRECT_A_ROWS_PER_SET)
    got = run(a, b, threads=2)
    check(got, reference(a, b), k)
    G.DIRECT_A = False
    try:
        np.testing.assert_array_equal(run(a, b, threads=2), got)
    finally:
        G.DIRECT_A = True


@pytest.mark.skipif(not host().has("avx512f"), reason="checks AVX-512 code")
def test_micro_kernel_is_zmm_fmas_without_spills():
    kernel = G.CompiledGemm(G.GemmSpec("f32", 64, 64, 64), threads=1)
    asm = kernel.assembly()
    body = asm[asm.index("tessel.gemm.ukernel"):]
    loop = max(body.split(".LBB"), key=lambda block: block.count("vfmadd"))
    mr, nr = G.micro_tile(host(), 4)
    assert loop.count("vfmadd231ps\t%zmm") >= mr * nr // 16
    assert "(%rsp)" not in loop, "accumulators spilled"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_avx2_target(dtype):
    """Planned for a 16-register AVX2 CPU (6 x 16 f32 tile, 8 lanes), run on this host."""
    avx2 = TargetInfo("x86_64-unknown-linux-gnu", "haswell", "+avx,+avx2,+fma")
    assert G.micro_tile(avx2, 4) == (6, 16)
    for m, n, k in [(75, 90, 300), (9, 11, 13), (1, 70, 40)]:
        a, b = np.asfortranarray(sample((m, k), dtype)), sample((k, n), dtype, seed=1)
        c = np.empty((m, n), dtype)
        G.CompiledGemm(spec_for(a, b, c), threads=2, target=avx2)(a, b, out=c)
        check(c, reference(a, b), k)


def test_scratch_bytes():
    assert G.scratch_bytes(G.GemmSpec("f32", 5, 5, 5)) == 0
    assert G.scratch_bytes(G.GemmSpec("f32", 500, 1, 5)) == 0        # dot products
    assert G.scratch_bytes(G.GemmSpec("f32", 1, 500, 5)) >= 500 * 4  # axpy accumulator
    spec = G.GemmSpec("f32", 1024, 1024, 1024)
    how = G.plan(spec, threads=2)
    slot = (how.blocking.mc + how.blocking.nc) * how.blocking.kc * 4
    assert G.scratch_bytes(spec, threads=2) >= how.partition.tasks * slot


def test_spec_validation():
    with pytest.raises(ValueError, match="f32 and f64"):
        G.GemmSpec("s32", 2, 2, 2)
    with pytest.raises(ValueError, match="negative"):
        G.GemmSpec("f32", -1, 2, 2)
    assert G.GemmSpec(np.float64, 2, 3, 4).a_strides == (8, 4, 1)


def test_compile_gemm():
    f = G.compile_gemm(G.GemmSpec("f32", 20, 30, 40, batch=2))
    a, b = sample((2, 20, 40)), sample((2, 40, 30), seed=1)
    check(f(a, b), reference(a, b), 40)


# ----------------------------------------------------------------------------- loops.py

def test_loop_helpers():
    """loop_nest + alloca_once + masked vector tail: sum of x[i, j] * (i + j)."""
    module = ir.Module()
    f32 = ir.FloatType()
    fn = ir.Function(module, ir.FunctionType(f32, [L.PTR]), name="weighted")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    acc = L.alloca_once(b, f32, name="acc")
    L.store(b, L.zeros(f32), acc)
    with L.loop_nest(b, (3, 5)) as (i, j):
        x = L.load(b, L.gep(b, fn.args[0], f32, L.add(b, L.mul(b, i, 5), j)), f32)
        w = b.sitofp(L.add(b, i, j), f32)
        L.store(b, L.fma(b, x, w, L.load(b, acc, f32)), acc)
    vec = L.vector(f32, 8)
    tail = L.masked_load(b, fn.args[0], vec, L.lane_mask(b, L.const(3), 8))
    b.ret(b.fadd(L.load(b, acc, f32), L.reduce_add(b, tail)))
    import ctypes
    jit = JitModule(str(module))
    weighted = jit.function("weighted", ctypes.c_float, ctypes.c_void_p)
    x = sample((3, 5))
    want = (x * np.add.outer(np.arange(3), np.arange(5))).sum() + x.flat[:3].sum()
    assert weighted(x.ctypes.data) == pytest.approx(want, rel=1e-5)
