"""Heterogeneous placement end to end: tessel.device scopes, placement="soft", the cut
into CPU and systolic parts, send/recv transfers, the report (docs/placement.md)."""
from __future__ import annotations

import re

import numpy as np
import pytest

import tessel
import tessel.numpy as tnp
from tessel.aot.errors import ArtifactBackendError
from tessel.backends.systolic.reference import model_tolerance
from tessel.compiler.parser import parse_module
from tessel.compiler.passes.placement import PlacementError

B, D, H, C = 32, 64, 48, 10


def mlp_params(rng):
    return {"w1": (rng.standard_normal((D, H)) / np.sqrt(D)).astype(np.float32),
            "b1": rng.standard_normal(H).astype(np.float32) * 0.1,
            "w2": (rng.standard_normal((H, H)) / np.sqrt(H)).astype(np.float32),
            "b2": rng.standard_normal(H).astype(np.float32) * 0.1,
            "w3": (rng.standard_normal((H, C)) / np.sqrt(H)).astype(np.float32),
            "b3": np.zeros(C, np.float32)}


def matmul(a, b, device):
    with tessel.device(device):
        return a @ b


def relu(h):
    return tnp.maximum(h, 0.0)


def placed_mlp(params, x, device="systolic", act=relu):
    h = act(matmul(x, params["w1"], device) + params["b1"])
    h = act(matmul(h, params["w2"], device) + params["b2"])
    return matmul(h, params["w3"], device) + params["b3"]


def plain_mlp(params, x):
    return placed_mlp(params, x, device=None)


def loss(params, x, y, device="systolic"):
    # tanh, not relu: relu's derivative jumps where a pre-activation is ~0, and there a
    # bf16 rounding of the forward pass changes a gradient entry by O(1), not O(u)
    logits = placed_mlp(params, x, device, act=tnp.tanh)
    return -tnp.mean(tnp.sum(y * tessel.nn.log_softmax(logits, axis=1), axis=1))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    params = mlp_params(rng)
    x = rng.standard_normal((B, D)).astype(np.float32)
    y = np.eye(C, dtype=np.float32)[rng.integers(0, C, B)]
    return params, x, y


@pytest.fixture(scope="module")
def compiled_mlp(data):
    params, x, _ = data
    return tessel.jit(placed_mlp).lower(params, x).compile()


def pairs(text: str) -> tuple[dict, dict]:
    """channel -> (device, peer) of the sends and of the recvs in HLO text."""
    find = lambda op: {int(c): (d, p) for c, d, p in re.findall(
        rf"= \S+ {op}\([^)]*\), channel_id=(\d+), device=\"(\w+)\", peer=\"(\w+)\"", text)}
    return find("send"), find("recv")


# ----------------------------------------------------------------------------- the acceptance test

def test_mlp_with_matmuls_on_systolic_matches_the_cpu_within_bf16_tolerance(data, compiled_mlp):
    params, x, _ = data
    want = tessel.jit(plain_mlp)(params, x)
    got = compiled_mlp(params, x)
    assert compiled_mlp.executable.devices == ["cpu", "systolic"]
    np.testing.assert_allclose(got, want, rtol=0, atol=model_tolerance(want, dots_on_path=3))
    assert not np.array_equal(got, want)          # the matmuls really ran in bf16


def test_as_text_shows_the_placement_and_the_send_recv_pairs(compiled_mlp):
    text = compiled_mlp.as_text()
    sends, recvs = pairs(text)
    # dot1 -> cpu, relu1 -> systolic, dot2 -> cpu, relu2 -> systolic, dot3 -> cpu
    assert sorted(sends) == sorted(recvs) == [1, 2, 3, 4, 5]
    assert all(recvs[c] == (peer, device) for c, (device, peer) in sends.items())
    assert [sends[c] for c in sorted(sends)] == [("systolic", "cpu"), ("cpu", "systolic")] * 2 + [("systolic", "cpu")]
    assert len(re.findall(r'dot_general\(.*device="systolic"', text)) == 3
    assert re.search(r'maximum\(.*device="cpu"', text)
    parse_module(text)                            # the placed module is valid HLO text


def test_transfer_bytes_are_the_sizes_of_the_cut_values(data, compiled_mlp):
    params, x, _ = data
    closed_form = 4 * (B * H + B * H + B * H + B * H + B * C)   # dot1, relu1, dot2, relu2, dot3
    report = compiled_mlp.systolic_report()
    assert report.transfer_bytes == closed_form
    program = compiled_mlp.executable.program
    before = program.bytes_moved
    compiled_mlp(params, x)
    assert program.last_call_bytes == closed_form
    assert program.bytes_moved - before == closed_form
    link = report.link
    assert report.transfer_seconds == pytest.approx(5 * link["latency_seconds"]
                                                    + closed_form / link["bytes_per_second"])


def test_report_adds_up_the_systolic_parts(compiled_mlp):
    report = compiled_mlp.systolic_report()
    parts = compiled_mlp.executable.program.parts_on("systolic")
    assert len(report.parts) == len(parts) == 3
    assert report.total_cycles == sum(p.runner.report().total_cycles for p in parts) > 0
    assert report.seconds == pytest.approx(report.total_cycles / 940e6)
    assert report.macs == B * D * H + B * H * H + B * H * C
    assert 0 < report.mxu_utilization <= 1
    assert report.summary()["transfer_bytes"] == report.transfer_bytes
    assert "transfers: 5" in report.text()
    assert compiled_mlp.systolic_report() is report                # computed once per compile
    assert "MATMUL" in compiled_mlp.program_text()


def test_grad_through_the_placed_mlp_matches_the_cpu_grad(data):
    params, x, y = data
    placed = tessel.jit(tessel.grad(loss)).lower(params, x, y).compile()
    want = tessel.jit(tessel.grad(lambda p, x, y: loss(p, x, y, device=None)))(params, x, y)
    got = placed(params, x, y)
    for name in params:
        np.testing.assert_allclose(got[name], want[name], rtol=0,
                                   atol=model_tolerance(want[name], dots_on_path=6), err_msg=name)
    # the gradients' matmuls run where their forward matmul runs (colocated)
    text = placed.as_text()
    assert len(re.findall(r'dot_general\(.*device="systolic"', text)) >= 3 + 5
    assert not re.findall(r'dot_general\(.*device="cpu"', text)


# ----------------------------------------------------------------------------- soft placement

def counter_program(params, x, idx, step):
    """A gather, an s32 counter and a while loop around matmuls and elementwise ops."""
    rows = x[idx]                                            # gather
    def body(i, h):
        return tnp.tanh(h @ params["w2"]) + params["b2"]
    h = tnp.maximum(rows @ params["w1"] + params["b1"], 0.0)
    h = tessel.lax.fori_loop(0, 2, body, h)                  # while
    scale = (step + 1).astype(np.float32)                    # s32 counter
    return h @ params["w3"] * scale, step + 1


def test_soft_placement_runs_what_the_machine_cannot_on_the_cpu(data):
    params, x, _ = data
    idx = np.array([3, 1, 4, 1, 5, 9, 2, 6], np.int32)
    step = np.int32(7)
    with pytest.raises(NotImplementedError, match="cannot run on the machine"):
        tessel.jit(counter_program, backend="systolic").lower(params, x, idx, step).compile()
    compiled = tessel.jit(counter_program, backend="systolic", placement="soft").lower(params, x, idx, step).compile()
    text = compiled.as_text()
    for op in ("gather", "while"):      # expanded before placement (pipeline.before_placement) ...
        assert f" {op}(" not in text, op
    assert re.search(r' iota\(.*device="cpu"', text)      # ... leaving the lookup's one-hot to the CPU
    assert re.search(r'dot_general\(.*device="systolic"', text)
    assert re.search(r's32\[\] add\(.*device="cpu"', text)
    got_h, got_step = compiled(params, x, idx, step)
    want_h, want_step = tessel.jit(counter_program, backend="interpreter")(params, x, idx, step)
    assert got_step == want_step == 8
    np.testing.assert_allclose(got_h, want_h, rtol=0, atol=model_tolerance(want_h, dots_on_path=4))


def test_soft_placement_runs_an_adam_training_step(data):
    params, x, y = data
    opt = tessel.optim.adam(1e-2)
    state = opt.init(params)

    def train_step(params, state, x, y):
        value, grads = tessel.value_and_grad(loss)(params, x, y)
        params, state = opt.update(grads, state, params)
        return params, state, value

    compiled = tessel.jit(train_step, backend="systolic", placement="soft").lower(params, state, x, y).compile()
    want = tessel.jit(train_step, backend="interpreter")(params, state, x, y)
    got = compiled(params, state, x, y)
    np.testing.assert_allclose(got[2], want[2], rtol=2e-2)
    for name in params:
        # one Adam step moves each weight by ~lr; bf16 gradients may change its sign
        # only where the gradient is ~0, so the new weights agree to lr
        np.testing.assert_allclose(got[0][name], want[0][name], rtol=0, atol=2e-2, err_msg=name)
    assert int(got[1]["step"]) == int(want[1]["step"]) == 1
    report = compiled.systolic_report()
    assert report.total_cycles > 0 and report.transfer_bytes > 0


def test_soft_placement_on_the_cpu_backend_is_the_plain_cpu_program(data, tmp_path):
    params, x, _ = data
    compiled = tessel.jit(plain_mlp, placement="soft").lower(params, x).compile()
    assert compiled.backend == "cpu" and "send" not in compiled.as_text()
    scoped = tessel.jit(lambda p, x: placed_mlp(p, x, device="cpu")).lower(params, x).compile()
    assert "device=" not in scoped.as_text()        # one device: the plain program
    tessel.aot.save(scoped, tmp_path / "mlp.tsl")    # which artifacts take


def test_a_placed_program_is_not_an_artifact(compiled_mlp, tmp_path):
    with pytest.raises(ArtifactBackendError, match="placed on a device"):
        tessel.aot.save(compiled_mlp, tmp_path / "mlp.tsl")


# ----------------------------------------------------------------------------- errors

def test_unknown_device_is_an_error_listing_the_devices():
    with pytest.raises(ValueError, match=r"unknown device 'tpu'; available devices: cpu, interpreter, systolic"):
        with tessel.device("tpu"):
            pass


def test_unknown_placement_mode_is_an_error():
    with pytest.raises(ValueError, match="placement must be None.*'soft' or 'auto'; given 'fast'"):
        tessel.jit(plain_mlp, placement="fast")


def test_an_op_scoped_to_systolic_that_it_cannot_run_is_an_error_naming_it(data):
    _, x, _ = data

    def f(x):
        with tessel.device("systolic"):
            return tnp.sort(x, axis=1)

    with pytest.raises(PlacementError, match=r"sort \(sort\S*, from \S*test_placed_programs.py:\d+\) is placed "
                                             r"on systolic \(tessel.device\('systolic'\)\) but cannot run"):
        tessel.jit(f).lower(x).compile()
    soft = tessel.jit(f, placement="soft").lower(x).compile()      # soft: it runs on the CPU
    np.testing.assert_array_equal(soft(x), np.sort(x, axis=1))


def test_results_that_are_arguments_or_constants(data):
    _, x, _ = data

    def f(x):
        with tessel.device("systolic"):
            y = x * 2.0
        return x, np.float32(3.0), tnp.sort(y, axis=0)

    got = tessel.jit(f, placement="soft").lower(x).compile()(x)
    np.testing.assert_array_equal(got[0], x)
    assert got[1] == 3.0 and got[1].flags.writeable
    np.testing.assert_array_equal(got[2], np.sort(x * 2, axis=0))


def test_nested_scopes_innermost_wins(data):
    _, x, _ = data

    def f(x):
        with tessel.device("systolic"):
            a = x * 2.0
            with tessel.device("cpu"):
                b = a + 1.0
            return b * a

    text = tessel.jit(f).lower(x).as_text()
    assert re.search(r'multiply\(.*device="systolic"', text)
    assert re.search(r'add\(.*device="cpu"', text)
    compiled = tessel.jit(f).lower(x).compile()
    np.testing.assert_allclose(compiled(x), (x * 2 + 1) * (x * 2), rtol=1e-6)
    assert compiled.systolic_report().transfer_bytes == 2 * x.nbytes
