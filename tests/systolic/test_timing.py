"""The program timing model: closed-form cycle counts of hand-written programs, and the
matrix unit's cycles against the PE-level simulator."""

import numpy as np
import pytest

from tessel.runtime.systolic import validate
from tessel.runtime.systolic.asm import assemble
from tessel.runtime.systolic.config import SystolicConfig
from tessel.runtime.systolic.pe_array import PeArray, PeMatmul
from tessel.runtime.systolic.timing import TimingError, dma_cycles, simulate_timing

# 8 x 8 array, 16 bytes/cycle, 10 cycles latency: small numbers to derive by hand.
CFG = SystolicConfig(rows=8, cols=8, host_bytes_per_cycle=16, host_latency_cycles=10)
# A bf16 8 x 8 tile is 128 bytes: 8 cycles on the channel + 10 latency = 18 cycles.
TILE = "LOAD_W src=host addr={addr} k=8 n=8 stride=16 fmt=bf16"


def _run(text, config=CFG):
    program = assemble(text)
    validate.validate(program, config)      # the programs here are well-formed
    return simulate_timing(program, config)


def test_single_matmul():
    # LOAD_W [0, 18); shift [18, 26); MATMUL T=20 starts 26, ends 26 + 20 + 8 + 8 - 2 = 60.
    result = _run(f"""
        {TILE.format(addr=0)}
        MATMUL ub=0 acc=0 rows=20 mode=overwrite swap=1
        HALT""")
    (load, matmul), (shift,) = result.events, result.shifts
    assert (load.start, load.end) == (0, 18) == (0, dma_cycles(128, CFG))
    assert (shift.start, shift.end) == (18, 26)
    assert (matmul.start, matmul.end, matmul.stall, matmul.reason) == (26, 60, 26, "weights")
    assert result.total_cycles == 60
    assert result.macs == 20 * 8 * 8
    assert result.mxu_utilization == pytest.approx(1280 / (64 * 60))
    assert result.bytes_moved["host->weights"] == 128
    assert result.busy["matrix"] == 34 and result.busy["weight"] == 18
    summary = result.summary()
    assert summary["total_cycles"] == 60 and summary["macs"] == 1280
    assert summary["stall_cycles"]["matrix"] == {"weights": 26}
    assert summary["seconds"] == pytest.approx(60 / CFG.clock_hz)


def test_pipelined_matmuls_hide_the_second_weight_load():
    # LOAD_Ws: [0, 18) and, the channel free at 8, [8, 26). Shift 1 [18, 26), MATMUL 1
    # [26, 26+50+14=90). Shift 2 waits for MATMUL 1's swap to pass: 26 + 7 = 33 -> [33, 41).
    # MATMUL 2 starts when the port frees, 26 + 50 = 76 (> 41: the load is hidden), ends 140.
    result = _run(f"""
        {TILE.format(addr=0)}
        {TILE.format(addr=128)}
        MATMUL ub=0 acc=0 rows=50 mode=overwrite swap=1
        MATMUL ub=0 acc=50 rows=50 mode=overwrite swap=1
        HALT""")
    assert [(e.start, e.end) for e in result.events] == [(0, 18), (8, 26), (26, 90), (76, 140)]
    assert [(s.start, s.end) for s in result.shifts] == [(18, 26), (33, 41)]
    assert result.events[3].stall == 0
    assert result.total_cycles == 140
    assert result.streamed_rows == 100
    assert result.mxu_utilization == pytest.approx(100 * 64 / (64 * 140))


def test_dma_bound_program():
    # Five DMA_LOADs of 4 rows x 8 f32 = 128 bytes: 8 cycles each on the channel, latency
    # overlapped: starts 0, 8, 16, 24, 32; the last ends 32 + 10 + 8 = 50 = 10 + 5 * 8.
    # The MATMUL needs the last one (token): starts 50 (weights were ready at 26), stalls
    # 50 cycles on "token from dma", ends 50 + 4 + 14 = 68.
    loads = "\n".join(f"DMA_LOAD host={128 * i} ub={4 * i} rows=4 cols=8 stride=32 fmt=f32"
                      + (" push=matrix" if i == 4 else "") for i in range(5))
    result = _run(f"""
        {TILE.format(addr=4096)}
        {loads}
        MATMUL ub=16 acc=0 rows=4 mode=overwrite swap=1 pop=dma
        HALT""")
    dmas = result.events_of("dma")
    assert [(e.start, e.end) for e in dmas] == [(8 * i, 8 * i + 18) for i in range(5)]
    matmul = result.events_of("matrix")[0]
    assert (matmul.start, matmul.end, matmul.stall, matmul.reason) == (50, 68, 50, "token from dma")
    assert result.total_cycles == 68
    assert result.bytes_moved["host->ub"] == 5 * 128
    assert result.busy["dma"] == 50
    assert result.stalls["matrix"] == {"token from dma": 50}


def test_token_stall_chain_matrix_vector_dma():
    # MATMUL [26, 26+16+14=56) pushes to vector; ACTIVATE (16 rows, 16 cycles) waits:
    # [56, 72), stall 56 "token from matrix"; DMA_STORE of 16 rows x 8 f32 = 512 bytes
    # (32 cycles + 10) waits for the vector unit: [72, 114).
    result = _run(f"""
        {TILE.format(addr=0)}
        MATMUL ub=0 acc=0 rows=16 mode=overwrite swap=1 push=vector
        ACTIVATE acc=0 ub=100 rows=16 fn=relu pop=matrix push=dma
        DMA_STORE host=8192 ub=100 rows=16 cols=8 stride=32 fmt=f32 pop=vector
        HALT""")
    act, store = result.events_of("vector")[0], result.events_of("dma")[0]
    assert (act.start, act.end, act.stall, act.reason) == (56, 72, 56, "token from matrix")
    assert (store.start, store.end, store.reason) == (72, 114, "token from vector")
    assert result.total_cycles == 114
    assert result.bytes_moved["ub->host"] == 512


def test_sync_is_a_barrier():
    # The DMA ends at 10 + ceil(64 / 16) = 14; after SYNC the vector op starts at 14.
    result = _run("""
        DMA_LOAD host=0 ub=0 rows=2 cols=8 stride=32 fmt=f32
        SYNC
        VEC_UN op=exp dst=10 src=0 rows=2
        HALT""")
    vec = result.events_of("vector")[0]
    assert (vec.start, vec.end, vec.reason) == (14, 16, "sync")


def test_weight_fifo_full_delays_the_load():
    # Depth 1: the second LOAD_W needs tile 1's slot, freed when its shift ends (26).
    # Tile 2 loads [26, 44), shifts [44, 52) (MATMUL 1 swap + 7 = 33 is earlier),
    # MATMUL 2 starts 52 (port free at 27), ends 52 + 1 + 14 = 67.
    cfg = CFG.with_(weight_fifo_depth=1)
    result = _run(f"""
        {TILE.format(addr=0)}
        MATMUL ub=0 acc=0 rows=1 mode=overwrite swap=1
        {TILE.format(addr=128)}
        MATMUL ub=0 acc=1 rows=1 mode=overwrite swap=1
        HALT""", cfg)
    load2 = result.events[2]
    assert (load2.start, load2.end, load2.reason) == (26, 44, "weight FIFO full")
    assert [(s.start, s.end) for s in result.shifts] == [(18, 26), (44, 52)]
    assert result.total_cycles == 67


def test_weights_from_ub_one_row_per_cycle():
    # LOAD_W from the UB: k = 8 rows -> 8 cycles, then shift [8, 16), MATMUL [16, 16+3+14).
    result = _run("""
        LOAD_W src=ub addr=0 k=8 n=8 stride=1
        MATMUL ub=0 acc=0 rows=3 mode=overwrite swap=1
        HALT""")
    assert [(e.start, e.end) for e in result.events] == [(0, 8), (16, 33)]
    assert result.bytes_moved["ub->weights"] == 8 * 8 * 4


def test_long_program_closed_form():
    # 2000 MATMULs with T = 64 on one tile: cold start, then one every 64 cycles:
    # 18 (load) + 8 (shift) + 2000 * 64 + 8 + 8 - 2.
    n = 2000
    text = TILE.format(addr=0) + "\nMATMUL ub=0 acc=0 rows=64 mode=overwrite swap=1\n" + \
        "MATMUL ub=0 acc=0 rows=64 mode=accumulate\n" * (n - 1) + "HALT"
    result = simulate_timing(assemble(text), CFG)
    assert result.total_cycles == 18 + 8 + n * 64 + 14
    assert result.busy["matrix"] == n * 64 + 14
    assert result.mxu_utilization == pytest.approx(n * 64 * 64 / (64 * result.total_cycles))


def test_matrix_cycles_equal_pe_simulator_on_random_programs():
    rng = np.random.default_rng(5)
    for case in range(25):
        rows, cols = int(rng.integers(1, 9)), int(rng.integers(1, 9))
        cfg = SystolicConfig(rows=rows, cols=cols, host_bytes_per_cycle=4.0,
                             host_latency_cycles=int(rng.integers(0, 20)),
                             ub_bytes=1 << 16, acc_bytes=1 << 16)
        # Random LOAD_W / MATMUL programs; then the same MATMULs, with each tile ready when
        # its LOAD_W ended, on the PE array (K of the PE tiles is irrelevant to timing).
        lines, ops, weight_lines = [], [], 0
        for i in range(int(rng.integers(1, 6))):
            swap = i == 0 or rng.random() < 0.6
            if swap:
                k, n = int(rng.integers(1, rows + 1)), int(rng.integers(1, cols + 1))
                lines.append(f"LOAD_W src=host addr={256 * weight_lines} k={k} n={n} "
                             f"stride={2 * n} fmt=bf16")
                weight_lines += 1
            t = int(rng.integers(1, 10))
            lines.append(f"MATMUL ub=0 acc=0 rows={t} mode=overwrite swap={int(swap)}")
        result = simulate_timing(assemble("\n".join(lines + ["HALT"])), cfg)
        loads = iter(result.events_of("weight"))
        for e in result.events_of("matrix"):
            ins = result.program[e.index]
            ops.append((ins, next(loads).end if ins.swap else 0))
        pe_ops, k = [], None
        for ins, weights_ready in ops:
            if ins.swap:
                k = int(rng.integers(1, rows + 1))
                w = rng.standard_normal((k, cols))
            pe_ops.append(PeMatmul(rng.standard_normal((ins.rows, k)), w if ins.swap else None,
                                   weights_ready=weights_ready))
        pe = PeArray(rows, cols).run(pe_ops)
        matrix = result.events_of("matrix")
        assert pe.starts == [e.start for e in matrix], case
        assert pe.ends == [e.end for e in matrix], case


def test_bad_programs_name_the_instruction():
    with pytest.raises(TimingError, match="instruction 0 .*pops a token from the dma unit"):
        simulate_timing(assemble("MATMUL ub=0 acc=0 rows=1 mode=overwrite swap=0 pop=dma"), CFG)
    with pytest.raises(TimingError, match="instruction 0 .*no weight tile was loaded"):
        simulate_timing(assemble("MATMUL ub=0 acc=0 rows=1 mode=overwrite swap=1"), CFG)
    with pytest.raises(TimingError, match="no weights loaded"):
        simulate_timing(assemble("MATMUL ub=0 acc=0 rows=1 mode=overwrite"), CFG)
    with pytest.raises(TimingError, match="instruction 1 .*weight FIFO overflow"):
        simulate_timing(assemble(TILE.format(addr=0) + "\n" + TILE.format(addr=128)),
                        CFG.with_(weight_fifo_depth=1))
    with pytest.raises(TimingError, match="follows HALT"):
        simulate_timing(assemble("HALT\nSYNC"), CFG)
    # check=True: the validator's full account, e.g. addresses beyond the UB.
    with pytest.raises(validate.ValidationError, match="instruction 0 .*beyond the"):
        simulate_timing("DMA_LOAD host=0 ub=1000000 rows=1 cols=1 stride=4 fmt=f32\nHALT",
                        CFG, check=True)


def test_assembly_text_and_binary_give_the_same_result():
    from tessel.runtime.systolic import isa
    text = f"{TILE.format(addr=0)}\nMATMUL ub=0 acc=0 rows=20 mode=overwrite swap=1\nHALT"
    program = assemble(text)
    a = simulate_timing(text, CFG)
    b = simulate_timing(isa.encode_program(program), CFG)
    assert a.events == b.events and a.total_cycles == b.total_cycles == 60


def _gemm_1024_program(size=1024, tile=128):
    """A hand-scheduled (size x size) @ (size x size) GEMM, bf16 in host memory: X streams
    in one K-chunk per DMA (the first N pass waits for each), every weight tile is loaded
    from host memory while the previous MATMUL runs, K tiles accumulate in place, and each
    N tile leaves through ACTIVATE and DMA_STORE."""
    tiles = size // tile
    x_host, w_host, y_host = 0, size * size * 2, 2 * size * size * 2
    out_ub = tiles * size
    lines = []
    for kt in range(tiles):    # X[:, kt-th 128 columns] -> UB rows kt*size ..
        lines.append(f"DMA_LOAD host={x_host + kt * tile * 2} ub={kt * size} rows={size} "
                     f"cols={tile} stride={size * 2} fmt=bf16 push=matrix")
    for nt in range(tiles):
        for kt in range(tiles):
            lines.append(f"LOAD_W src=host addr={w_host + (kt * tile * size + nt * tile) * 2} "
                         f"k={tile} n={tile} stride={size * 2} fmt=bf16")
            tokens = (" pop=dma" if nt == 0 else "") + (" push=vector" if kt == tiles - 1 else "")
            mode = "overwrite" if kt == 0 else "accumulate"
            lines.append(f"MATMUL ub={kt * size} acc={nt * size} rows={size} mode={mode} "
                         f"swap=1{tokens}")
        lines.append(f"ACTIVATE acc={nt * size} ub={out_ub + nt * size} rows={size} "
                     f"fn=identity pop=matrix push=dma")
        lines.append(f"DMA_STORE host={y_host + nt * tile * 4} ub={out_ub + nt * size} "
                     f"rows={size} cols={tile} stride={size * 4} fmt=f32 pop=vector")
    return "\n".join(lines + ["HALT"])


def test_1024_gemm_on_128_array_over_90_percent_with_weight_loads_hidden():
    # 64 MATMULs of T = 1024 stream 65536 cycles; the cold start (first DMA chunk:
    # 500 + 256 KiB / 256 B = 1524 cycles, then 2R + C - 2 of fill and drain) and the
    # last N tile's ACTIVATE + DMA_STORE tail (1024 + 500 + 2048) come on top.
    program = assemble(_gemm_1024_program())
    cfg = SystolicConfig()
    validate.validate(program, cfg)         # well-formed and race-free
    result = simulate_timing(program, cfg)
    matmuls = result.events_of("matrix")
    assert len(matmuls) == 64 and result.macs == 1024 ** 3
    assert result.mxu_utilization >= 0.90
    # Weight loads hidden: after the first, no MATMUL waits for weights, and each one
    # starts the cycle the previous one released the input port.
    assert all(m.reason != "weights" for m in matmuls[1:])
    assert all(b.start == a.start + 1024 for a, b in zip(matmuls, matmuls[1:]))
    first = matmuls[0]
    assert first.start == 500 + 1024       # the first X chunk; its weights came earlier
    last_matmul_end = first.start + 64 * 1024 + 128 + 128 - 2
    assert matmuls[-1].end == last_matmul_end
    assert result.total_cycles == last_matmul_end + 1024 + 500 + 2048


def test_timing_modules_do_not_import_the_compiler():
    # runtime/systolic runs compiled programs without the compiler or the frontend.
    import subprocess
    import sys
    code = ("import sys\n"
            "import tessel.runtime.systolic.pe_array, tessel.runtime.systolic.timing\n"
            "import tessel.runtime.systolic.report, tessel.runtime.systolic.scalesim\n"
            "print(sorted(m for m in sys.modules if m.startswith(('tessel.compiler', "
            "'tessel.frontend'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_one_program_three_views_functional_pe_and_timing():
    # The same MATMUL program: the functional simulator's accumulators, the PE array's
    # outputs (same bf16 operands; only the f32 summation order differs) and the timing
    # model's matrix cycles against the PE array given the same ready times.
    from tessel.runtime.systolic import functional
    cfg = SystolicConfig(rows=4, cols=4, host_bytes=4096, ub_bytes=1024, acc_bytes=1024,
                         host_bytes_per_cycle=8, host_latency_cycles=5)
    rng = np.random.default_rng(9)
    x = rng.standard_normal((6, 4)).astype(np.float32)
    w = rng.standard_normal((4, 3)).astype(np.float32)
    memory = np.zeros(cfg.host_bytes, np.uint8)
    memory[:96] = x.view(np.uint8).ravel()
    memory[96:144] = w.view(np.uint8).ravel()
    program = assemble("""
        DMA_LOAD host=0 ub=0 rows=6 cols=4 stride=16 fmt=f32 push=matrix
        LOAD_W src=host addr=96 k=4 n=3 stride=12 fmt=f32
        MATMUL ub=0 acc=0 rows=6 mode=overwrite swap=1 pop=dma
        HALT""")
    machine = functional.run(program, cfg, memory)
    result = simulate_timing(program, cfg)
    dma, load = result.events_of("dma")[0], result.events_of("weight")[0]
    # DMA: 96 bytes = 12 cycles + 5 = 17; LOAD_W: 48 bytes = 6 + 5 = 11; shift [11, 15);
    # the MATMUL waits for the DMA: [17, 17 + 6 + 4 + 4 - 2 = 29).
    assert (dma.end, load.end) == (17, 11)
    pe = PeArray(4, 4).run([PeMatmul(x, w, ready=dma.end, weights_ready=load.end)])
    matmul = result.events_of("matrix")[0]
    assert (pe.starts[0], pe.ends[0]) == (matmul.start, matmul.end) == (17, 29)
    np.testing.assert_allclose(machine.acc[:6, :3], pe.outputs[0], rtol=1e-6, atol=1e-6)
    assert machine.macs == result.macs == 6 * 4 * 3
