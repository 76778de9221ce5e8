"""What the systolic code generator emits, checked on the program itself: it validates
(operands, addresses, weight FIFO, tokens, and no races between units), uses the machine
the way the design says, and refuses what the machine cannot run."""
from __future__ import annotations

import math

import numpy as np
import pytest

import tessel
from tessel.backends.systolic.codegen import UnsupportedOp
from tessel.backends.systolic.tiling import gemm_of, plan_gemm
from tessel.runtime.systolic.config import SystolicConfig

import systolic_models as sm
from sim_helpers import SMALL, compile_fn

RNG = np.random.default_rng(0)


def f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("name", ["mlp", "cnn", "gpt_block"])
def test_models_compile_to_race_free_programs(name):
    model, static, params, x, _ = sm.small_models(np.random.default_rng(0))[name]
    exe, module = compile_fn(sm.traced(model, **static), params, x)    # validates, races included
    program = exe.program
    assert program.instructions[-1].name == "HALT"
    counts = program.counts()
    assert counts["MATMUL"] == counts["LOAD_W"]                  # every tile swapped in once
    assert program.ub_peak_rows <= SMALL.ub_rows
    assert any(ins.args.get("pop") for ins in program.instructions)   # units really synchronize


def test_matmul_count_is_the_tiling_plans():
    exe, module = compile_fn(lambda a, b: a @ b, f32(37, 50), f32(50, 29))
    dot = next(i for i in module.entry.instructions if i.opcode == "dot_general")
    plan = plan_gemm(gemm_of(dot), SMALL.rows, SMALL.cols, SMALL.acc_rows, SMALL.ub_rows // 2, SMALL.lanes)
    matmuls = [i for i in exe.program.instructions if i.name == "MATMUL"]
    assert len(matmuls) == plan.weight_loads == math.ceil(37 / plan.m_chunk) * math.ceil(50 / 8) * math.ceil(29 / 8)
    first_k = [i.mode == "overwrite" for i in matmuls]
    assert sum(first_k) == plan.m_chunks * plan.n_tiles              # one overwrite per output tile


def test_weight_loads_run_ahead_of_their_matmuls_up_to_the_fifo_depth():
    exe, _ = compile_fn(lambda a, b: a @ b, f32(64, 64), f32(64, 64))
    waiting = peak = 0
    for ins in exe.program.instructions:
        if ins.name == "LOAD_W":
            waiting += 1
            peak = max(peak, waiting)
        elif ins.name == "MATMUL" and ins.swap:
            waiting -= 1
    assert peak == SMALL.weight_fifo_depth


def test_epilogue_is_one_activate_per_output_tile():
    exe, _ = compile_fn(lambda x, w, b: np.maximum(x @ w / 2.0 + b, 0), f32(20, 16), f32(16, 12), f32(12))
    activates = [i for i in exe.program.instructions if i.name == "ACTIVATE"]
    assert activates and all(i.fn == "relu" and i.bias == 1 and i.scale == 0.5 for i in activates)
    assert not {"VEC_BIN", "VEC_IMM", "VEC_UN"} & set(exe.program.counts())


def test_views_move_no_data_of_their_own():
    exe, _ = compile_fn(lambda x, b: (x[:, 2:7].T + b[:, None]) * 2, f32(9, 12), f32(5))
    stores = [i for i in exe.program.instructions if i.name == "DMA_STORE"]
    assert sum(i.rows * i.cols for i in stores) == 5 * 9              # only the result is written


def test_elementwise_chains_are_one_kernel():
    exe, _ = compile_fn(lambda x: sm.gelu(x), f32(16, 8))
    stores = [i for i in exe.program.instructions if i.name == "DMA_STORE"]
    assert sum(i.rows * i.cols for i in stores) == 16 * 8             # no intermediate goes to host


def test_values_only_the_array_reads_are_stored_bf16():
    exe, _ = compile_fn(lambda x, w, b: np.tanh(x @ w + b) @ w.T, f32(20, 16), f32(16, 16), f32(16))
    assert exe.program.image.argument_formats == ["bf16", "bf16", "f32"]
    loads = [i for i in exe.program.instructions if i.name == "LOAD_W"]
    assert {i.fmt for i in loads} == {"bf16"} and {i.transpose for i in loads} == {0, 1}
    f32_machine = compile_fn(lambda x, w: x @ w, f32(4, 4), f32(4, 4), config=SMALL.with_(dtype="f32"))[0]
    assert f32_machine.program.image.argument_formats == ["f32", "f32"]


def test_a_layer_larger_than_the_buffers_is_split_into_chunks():
    config = SystolicConfig(rows=8, cols=8, ub_bytes=64 * 32, acc_bytes=32 * 32)    # 64 UB rows, 32 acc rows
    exe, _ = compile_fn(lambda a, b: a @ b, f32(100, 24), f32(24, 20), config=config)
    matmuls = [i for i in exe.program.instructions if i.name == "MATMUL"]
    assert max(i.rows for i in matmuls) <= 16 and exe.program.ub_peak_rows <= 64


def test_unsupported_op_names_the_op_and_the_source_line():
    with pytest.raises(UnsupportedOp, match=r"sort .*test_compiler_program.py:\d+"):
        compile_fn(lambda x: np.sort(x), f32(5))


def test_f64_is_refused_with_the_dtype():
    with pytest.raises(UnsupportedOp, match="f64"):
        compile_fn(lambda x: x * 2, np.ones(3))


def test_int8_machine_is_refused_for_float_programs():
    with pytest.raises(UnsupportedOp, match="int8"):
        compile_fn(lambda x: x @ x, f32(4, 4), config=SMALL.with_(dtype="int8"))


@pytest.mark.parametrize("fn", [sm.softmax, lambda x: sm.layer_norm(x, np.float32(1.5), np.float32(0.25))])
def test_softmax_and_layer_norm_are_one_row_kernel(fn):
    exe, _ = compile_fn(fn, f32(12, 30))                 # 30 lanes: 4 blocks of 8
    program = exe.program
    loads = [i for i in program.instructions if i.name == "DMA_LOAD" and i.stride != 0]
    stores = [i for i in program.instructions if i.name == "DMA_STORE"]
    assert sum(i.rows * i.cols for i in stores) == 12 * 30           # only the result leaves the UB
    assert sum(i.rows * i.cols for i in loads) == 12 * 30            # and the input is read once
    assert program.counts()["VEC_RED"] >= 4                          # row reductions per lane block


@pytest.mark.parametrize("gelu", [sm.gelu, lambda h: tessel.nn.gelu(h, approximate=True),
                                  lambda h: 0.5 * h * (1 + np.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h ** 3)))])
def test_gelu_however_written_becomes_the_activate_function(gelu):
    exe, _ = compile_fn(lambda x, w, b: gelu(x @ w + b), f32(20, 16), f32(16, 12), f32(12))
    activates = [i for i in exe.program.instructions if i.name == "ACTIVATE"]
    assert activates and {i.fn for i in activates} == {"gelu_tanh"} and {i.bias for i in activates} == {1}
    assert not {"VEC_BIN", "VEC_IMM", "VEC_UN"} & set(exe.program.counts())


def test_other_elementwise_epilogues_stay_on_the_vector_unit():
    exe, _ = compile_fn(lambda x, w: (x @ w) * (x @ w) + 1, f32(8, 8), f32(8, 8))
    assert {i.fn for i in exe.program.instructions if i.name == "ACTIVATE"} == {"identity"}
