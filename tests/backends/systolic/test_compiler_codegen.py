"""Kernels of the systolic code generator, one op family at a time, on the functional
simulator: the vector unit against the interpreter (f32: a few ulps), the matrix unit
against the bf16-operand / fp32-accumulation model within the derived bound."""
from __future__ import annotations

import numpy as np
import pytest

import tessel
from tessel.backends.systolic import reference as ref
from tessel.runtime.systolic.config import SystolicConfig

from sim_helpers import SMALL, compile_fn, run_both

RNG = np.random.default_rng(0)


def f32(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def close_f32(got, want):
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=2e-6, atol=1e-6)


# ----------------------------------------------------------------------------- vector unit

@pytest.mark.parametrize("fn", [
    lambda x, y: np.exp(x) * y - np.abs(x) / (np.abs(y) + 1),
    lambda x, y: np.tanh(x) + np.maximum(x, y) - np.minimum(x, 0.5),
    lambda x, y: np.where(x > y, np.sqrt(np.abs(x)), -y),
    lambda x, y: np.clip(x, -0.5, 0.5) + x ** 2,
    lambda x, y: 1 / (1 + np.exp(-x)) + np.log(np.abs(y) + 1),
])
def test_elementwise_chains_match_the_interpreter(fn):
    got, want, _ = run_both(fn, f32(19, 21), f32(19, 21))      # 21 lanes: 3 blocks of 8
    close_f32(got, want)


def test_broadcasts_rows_columns_and_scalars_are_read_through_views():
    def fn(x, row, col, s):
        return x * row + col[:, None] - s
    got, want, exe = run_both(fn, f32(10, 13), f32(13), f32(10), f32())
    close_f32(got, want)
    assert exe.program.counts().get("VEC_RED", 0) >= 1        # the column broadcast spreads lane 0


@pytest.mark.parametrize("axis", [-1, 0, 1, (0, 2), (1, 2), None])
@pytest.mark.parametrize("kind", ["sum", "max", "min"])
def test_reductions(axis, kind):
    x = f32(5, 6, 19)
    got, want, _ = run_both(lambda x: getattr(np, kind)(x, axis=axis), x)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(100, 10), (3, 200)])
def test_a_sum_over_every_dim_of_a_matrix(shape):
    # the lanes' partial sums are one lane wide: reading them as lanes-wide rows ran
    # past the end of host memory once there were more rows than lanes
    got, want, _ = run_both(lambda x: np.sum(x * x), f32(*shape))
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5)


def test_softmax_and_layer_norm_rows_wider_than_the_lanes():
    def fn(x):
        return tessel.nn.softmax(x) + tessel.nn.layer_norm(x)
    got, want, _ = run_both(fn, f32(12, 30))
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6)


def test_slices_concatenate_transpose_and_pad_are_data_movement():
    def fn(x):
        a = np.concatenate([x[:, 3:9], x[::2, :6].repeat(2, axis=0)[:x.shape[0]]], axis=1)
        return a.T * 2, np.pad(x, ((1, 2), (0, 3)))
    got, want, exe = run_both(fn, f32(10, 12))
    close_f32(got, want)
    assert "VEC_TRANS" in exe.program.counts()


def test_max_pool_is_strided_views_combined():
    x = f32(2, 8, 6, 3)
    got, want, _ = run_both(lambda x: tessel.nn.max_pool(x, (2, 2), (2, 2)), x)
    np.testing.assert_array_equal(got[0], want[0])


# ----------------------------------------------------------------------------- matrix unit

@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (20, 13, 11), (33, 8, 8), (9, 40, 17)])
def test_gemm_matches_the_bf16_model_and_the_interpreter(m, k, n):
    a, b = f32(m, k), f32(k, n)
    got, want, exe = run_both(lambda a, b: a @ b, a, b)
    model = ref.bf16_dot(a, b)
    assert (np.abs(got[0] - model) <= ref.dot_tolerance(a, b, against="model")).all()
    assert (np.abs(got[0] - want[0]) <= ref.dot_tolerance(a, b, against="f32")).all()


def test_truncating_machine_meets_the_truncation_bound():
    a, b = f32(16, 24), f32(24, 9)
    config = SMALL.with_(bf16_rounding="truncate")
    got, want, _ = run_both(lambda a, b: a @ b, a, b, config=config)
    assert (np.abs(got[0] - ref.bf16_dot(a, b, "truncate")) <= ref.dot_tolerance(a, b, "truncate", "model")).all()
    assert (np.abs(got[0] - want[0]) <= ref.dot_tolerance(a, b, "truncate", "f32")).all()


def test_batched_and_transposed_operands():
    a, b = f32(3, 10, 12), f32(3, 9, 12)
    got, _, exe = run_both(lambda a, b: np.einsum("bmk,bnk->bmn", a, b), a, b)
    model = ref.bf16_dot(a, np.swapaxes(b, 1, 2))
    assert (np.abs(got[0] - model) <= ref.dot_tolerance(a, np.swapaxes(b, 1, 2), against="model")).all()
    assert all(ins.transpose == 1 for ins in exe.program.instructions if ins.name == "LOAD_W")


def test_epilogue_runs_in_activate():
    x, w, bias = f32(20, 16), f32(16, 12), f32(12)
    got, _, exe = run_both(lambda x, w, b: np.maximum(x @ w / 2.0 + b, 0), x, w, bias)
    model = np.maximum(ref.bf16_dot(x, w) * np.float32(0.5) + bias, 0)
    np.testing.assert_allclose(got[0], model, rtol=1e-6, atol=1e-6)
    activates = [i for i in exe.program.instructions if i.name == "ACTIVATE"]
    assert activates and all(i.fn == "relu" and i.bias == 1 and i.scale == 0.5 for i in activates)
    assert "VEC_BIN" not in exe.program.counts()               # nothing left for the vector unit


def test_a_layer_larger_than_the_buffers_spills_in_chunks():
    config = SystolicConfig(rows=8, cols=8, ub_bytes=64 * 32, acc_bytes=32 * 32)   # 64 UB rows, 32 acc rows
    a, b = f32(100, 24), f32(24, 20)
    got, _, exe = run_both(lambda a, b: a @ b, a, b, config=config)
    assert (np.abs(got[0] - ref.bf16_dot(a, b)) <= ref.dot_tolerance(a, b, against="model")).all()
    matmuls = [i for i in exe.program.instructions if i.name == "MATMUL"]
    assert max(i.rows for i in matmuls) < 100 and exe.program.ub_peak_rows <= config.ub_rows


def _conv(strides, padding, dims=("NHWC", "HWIO", "NHWC")):
    return lambda x, k: tessel.lax.conv_general_dilated(x, k, strides, padding, dimension_numbers=dims)


def test_each_convolution_takes_the_cheapest_way():
    from tessel.backends.systolic import conv
    cases = {"shifted": (f32(8, 14, 14, 128), f32(3, 3, 128, 128), (1, 1)),
             "packed": (f32(8, 28, 28, 1), f32(3, 3, 1, 16), (1, 1)),
             "im2col": (f32(8, 28, 28, 3), f32(3, 3, 3, 16), (2, 2))}
    for mode, (x, k, strides) in cases.items():
        module = compile_fn(_conv(strides, "SAME"), x, k, config=SystolicConfig())[1]
        kept = [i for i in module.entry.instructions if i.opcode == "convolution"]
        assert bool(kept) == (mode != "im2col"), mode
        if kept:
            assert conv.choose_mode(kept[0], SystolicConfig()) == mode


def _force(monkeypatch, mode):
    from tessel.backends.systolic import conv
    monkeypatch.setattr(conv, "choose_mode",
                        lambda c, config=None: mode if conv.supported(c) else "im2col")
    if mode != "im2col":
        monkeypatch.setattr(conv, "estimated_cycles", lambda c, config: {
            "shifted": float(mode != "shifted"), "packed": float(mode != "packed"), "im2col": 2.0})


@pytest.mark.parametrize("mode", ["shifted", "packed"])
def test_stride_1_convolution_as_direct_matmuls(mode, monkeypatch):
    _force(monkeypatch, mode)
    x, k = f32(2, 7, 7, 9), f32(3, 3, 9, 5)          # 9 channels on 8 array rows: 2 k tiles (shifted)
    got, want, exe = run_both(_conv((1, 1), "SAME"), x, k)
    import systolic_models as sm
    np.testing.assert_allclose(got[0], sm.BF16.conv(x, k), rtol=1e-5, atol=1e-5)
    counts = exe.program.counts()
    per_chunk = 9 * 2 if mode == "shifted" else 81 // 8 + 1           # k tiles of C, or of 9*C
    assert counts["MATMUL"] % per_chunk == 0 and counts["MATMUL"] == counts["LOAD_W"]
    assert "VEC_BIN" not in counts                                     # no im2col copies


@pytest.mark.parametrize("mode", ["shifted", "packed", "im2col"])
@pytest.mark.parametrize("strides,padding,dims", [
    ((1, 1), ((2, 0), (1, 3)), ("NCHW", "OIHW", "NCHW")),      # other layouts, uneven padding
    ((2, 1), "SAME", ("NHWC", "HWIO", "NHWC")),                  # strided: always im2col + dot
    ((1, 1), "VALID", ("NHWC", "OIHW", "NCHW")),
])
def test_convolutions_match_the_interpreter_within_the_bf16_bound(strides, padding, dims, mode, monkeypatch):
    _force(monkeypatch, mode)
    x = f32(2, 3, 9, 8) if dims[0] == "NCHW" else f32(2, 9, 8, 3)
    k = f32(4, 3, 3, 2) if dims[1] == "OIHW" else f32(3, 2, 3, 4)
    got, want, _ = run_both(_conv(strides, padding, dims), x, k)
    bound = ref.dot_relative_bound(3 * 3 * 2, against="f32") * 3 * 3 * 2 * np.max(np.abs(x)) * np.max(np.abs(k))
    assert np.max(np.abs(got[0] - want[0])) <= bound


# ----------------------------------------------------------------------------- the program object

def test_program_round_trips_through_its_parts():
    import json
    from tessel.backends.systolic.executable import simulate
    from tessel.backends.systolic.program import SystolicProgram
    x, w, bias = f32(20, 16), f32(16, 12), f32(12)
    exe, _ = compile_fn(lambda x, w, b: np.tanh(x @ w + b) * 2, x, w, bias)
    program = exe.program
    manifest = json.loads(json.dumps(program.to_dict()))
    again = SystolicProgram.from_parts(manifest, program.binary(), program.constant_arrays())
    assert again.text() == program.text() and again.config == program.config
    outputs = []
    for p in (program, again):
        memory = p.memory_with([x, w, bias])
        simulate(p, memory)
        outputs.append(p.outputs_from(memory)[0])
    np.testing.assert_array_equal(outputs[0], outputs[1])
    assert manifest["argument_formats"] == ["bf16", "bf16", "f32"]     # x, w only feed the array


def test_gelu_epilogue_matches_the_interpreter():
    import systolic_models as sm
    x, w, bias = f32(20, 16), f32(16, 12), f32(12)
    got, want, _ = run_both(lambda x, w, b: sm.gelu(x @ w + b), x, w, bias)
    model = sm.gelu(ref.bf16_dot(x, w) + bias)
    np.testing.assert_allclose(got[0], model, rtol=1e-5, atol=1e-6)     # f64 gelu vs the f32 chain
    assert np.max(np.abs(got[0] - want[0])) <= np.max(ref.dot_tolerance(x, w, against="f32")) * 1.2
