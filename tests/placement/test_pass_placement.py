"""The placement and device-transfers passes and the auto cost model: HLO text in,
checks on the text out, the interpreter as the oracle."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

import tessel
from tessel.backends.interpreter import evaluate
from tessel.compiler import verifier
from tessel.compiler.cost import _Bodies
from tessel.compiler.ir import clone_module
from tessel.compiler.parser import parse_module
from tessel.compiler.passes.device_transfers import DeviceTransfers
from tessel.compiler.passes.placement import Placement, PlacementError
from tessel.compiler.placement_cost import CostModel, systolic_cycles
from tessel.compiler.printer import print_module
from tessel.runtime.placed import cut


def hlo(body: str) -> str:
    return f"HloModule m\nENTRY main {{\n{body}\n}}\n"


def placed(text: str, mode=None, default="cpu") -> tuple[str, object]:
    module = parse_module(text)
    Placement(mode, default, CostModel() if mode == "auto" else None).run(module)
    DeviceTransfers().run(module)
    verifier.verify(module)
    return print_module(module), module


def device(text: str, name: str) -> str | None:
    found = re.search(rf"^\s*{re.escape(name)} = .*?(?:device=\"(\w+)\")?(?:, peer=\"\w+\")?\s*$", text, re.M)
    return found.group(1) if found else None


GATHER_THEN_DOT = hlo("""
  x = f32[8,4] parameter(0)
  i = s32[3,1] parameter(1)
  w = f32[4,4] parameter(2)
  g = f32[3,4] gather(x, i), offset_dims={1}, collapsed_slice_dims={0}, start_index_map={0}, index_vector_dim=1, slice_sizes={1,4}
  d = f32[3,4] dot_general(g, w), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  n = s32[3,1] negate(i)
  ROOT t = (f32[3,4], s32[3,1]) tuple(d, n)""")


def test_soft_placement_puts_what_the_machine_cannot_run_on_the_cpu():
    text, module = placed(GATHER_THEN_DOT, "soft", "systolic")
    assert device(text, "g") == "cpu"          # gather: no lowering on the machine
    assert device(text, "d") == "systolic"
    assert device(text, "n") == "cpu"          # s32 values: not f32 words
    assert device(text, "x") is None and device(text, "t") is None
    sends = re.findall(r"send\(g\), channel_id=1, device=\"cpu\", peer=\"systolic\"", text)
    recvs = re.findall(r"recv\(send.g\), channel_id=1, device=\"systolic\", peer=\"cpu\"", text)
    assert len(sends) == len(recvs) == 1
    assert re.search(r"dot_general\(recv.g, w\)", text)
    assert parse_module(text) is not None      # round trip of device/peer attributes


def test_the_placed_module_computes_what_the_original_does():
    rng = np.random.default_rng(1)
    args = [rng.standard_normal((8, 4)).astype(np.float32), np.array([[2], [0], [7]], np.int32),
            rng.standard_normal((4, 4)).astype(np.float32)]
    _, module = placed(GATHER_THEN_DOT, "soft", "systolic")
    for want, got in zip(evaluate(parse_module(GATHER_THEN_DOT), args), evaluate(module, args)):
        np.testing.assert_array_equal(got, want)


def test_strict_placement_refuses_an_op_the_device_cannot_run():
    with pytest.raises(PlacementError, match=r"gather \(g, from .*\) is placed on systolic \(backend 'systolic'\) "
                                             r"but cannot run there: no lowering for this op"):
        placed(GATHER_THEN_DOT, None, "systolic")


def test_a_pred_value_never_crosses_into_or_out_of_the_machine():
    text, _ = placed(hlo("""
  x = f32[4] parameter(0)
  y = f32[4] parameter(1)
  c = pred[4] compare(x, y), direction=LT
  s = f32[4] select(c, x, y)
  ROOT t = (pred[4], f32[4]) tuple(c, s)"""), "soft", "systolic")
    assert device(text, "c") == "cpu"     # a pred result leaves the program: not f32
    assert device(text, "s") == "cpu"     # then its pred operand would enter from the CPU
    assert "send" not in text


PRED_ACROSS_RUNS = hlo("""
  x = f32[4] parameter(0)
  y = f32[4] parameter(1)
  c = pred[4] compare(x, y), direction=LT
  s1 = f32[4] select(c, x, y)
  e = f32[4] exp(s1), device="cpu"
  s2 = f32[4] select(c, e, y)
  ROOT t = (f32[4]) tuple(s2)""")


def test_a_pred_value_never_passes_between_two_programs_of_the_machine():
    # c would be made in the machine's first program and read by its second, after the
    # CPU's exp: a program result, which must be f32
    text, module = placed(PRED_ACROSS_RUNS, "soft", "systolic")
    assert device(text, "c") == "cpu"
    for part in cut(module):
        if part.device == "systolic":
            assert all(v.shape.dtype.name == "f32" for v in part.inputs + part.outputs)
    with pytest.raises(PlacementError, match=r"compare \(c, .*read by a later systolic program"):
        placed(PRED_ACROSS_RUNS, None, "systolic")


def test_one_transfer_per_value_and_destination():
    text, module = placed(hlo("""
  x = f32[4] parameter(0)
  a = f32[4] exp(x), device="systolic"
  b = f32[4] negate(a), device="cpu"
  c = f32[4] abs(a), device="cpu"
  ROOT t = (f32[4], f32[4]) tuple(b, c)"""))
    assert text.count(" send(") == text.count(" recv(") == 1
    assert re.search(r"negate\(recv.a\)", text) and re.search(r"abs\(recv.a\)", text)
    parts = cut(module)
    assert [p.device for p in parts] == ["systolic", "cpu"]
    assert [i.name for i in parts[1].inputs] == ["recv.a"]


def test_cut_keeps_each_device_together_when_dependencies_allow():
    _, module = placed(hlo("""
  x = f32[4] parameter(0)
  a = f32[4] exp(x), device="systolic"
  b = f32[4] negate(x), device="cpu"
  c = f32[4] abs(x), device="systolic"
  d = f32[4] add(a, c), device="systolic"
  ROOT t = (f32[4], f32[4]) tuple(b, d)"""))
    assert [p.device for p in cut(module)] == ["systolic", "cpu"]


def test_cut_computes_a_value_in_the_last_run_before_its_reader():
    _, module = placed(hlo("""
  x = f32[4,4] parameter(0)
  b = f32[4] parameter(1)
  e = f32[4,4] exp(x), device="cpu"
  bb = f32[4,4] broadcast_in_dim(b), broadcast_dimensions={1}, device="cpu"
  d = f32[4,4] dot_general(e, x), lhs_contracting_dims={1}, rhs_contracting_dims={0}, device="systolic"
  a = f32[4,4] add(d, bb), device="cpu"
  ROOT t = (f32[4,4]) tuple(a)"""))
    parts = cut(module)
    assert [[i.name for i in p.module.entry.instructions if i.opcode not in ("parameter", "tuple")]
            for p in parts] == [["e"], ["d"], ["bb", "a"]]      # bb joins its reader, not e
    assert [i.name for i in parts[0].outputs] == ["e"]


# ----------------------------------------------------------------------------- auto

BIG_GEMM_AND_TINY_OP = hlo("""
  a = f32[512,512] parameter(0)
  b = f32[512,512] parameter(1)
  v = f32[16] parameter(2)
  d = f32[512,512] dot_general(a, b), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  two = f32[] constant(2)
  bt = f32[16] broadcast_in_dim(two), broadcast_dimensions={}
  m = f32[16] multiply(v, bt)
  ROOT t = (f32[512,512], f32[16]) tuple(d, m)""")


def test_auto_puts_a_large_gemm_on_the_machine_and_a_tiny_op_on_the_cpu():
    text, module = placed(BIG_GEMM_AND_TINY_OP, "auto", "cpu")
    assert device(text, "d") == "systolic"
    assert device(text, "m") == "cpu" and device(text, "bt") == "cpu"
    model = CostModel()
    d = next(i for i in module.entry.instructions if i.name == "d")
    # the closed form: 512 rows through (512/128)^2 weight tiles, overlapping the DMA of
    # 3 MiB at 256 B/cycle, plus fill/drain and the host latency
    assert systolic_cycles(d, model._config(), _Bodies()) == max(512 * 16, math.ceil(3 * 512 * 512 * 4 / 256)) + 256 + 2 * 500


def test_auto_groups_neighbours_instead_of_ping_ponging():
    text, _ = placed(hlo("""
  x = f32[256,512] parameter(0)
  w1 = f32[512,512] parameter(1)
  w2 = f32[512,512] parameter(2)
  d1 = f32[256,512] dot_general(x, w1), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  z = f32[] constant(0)
  zb = f32[256,512] broadcast_in_dim(z), broadcast_dimensions={}
  r = f32[256,512] maximum(d1, zb)
  d2 = f32[256,512] dot_general(r, w2), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  ROOT t = (f32[256,512]) tuple(d2)"""), "auto", "cpu")
    assert {device(text, n) for n in ("d1", "zb", "r", "d2")} == {"systolic"}
    assert "send" not in text


def test_auto_keeps_explicit_scopes():
    text, _ = placed(BIG_GEMM_AND_TINY_OP.replace("rhs_contracting_dims={0}", 'rhs_contracting_dims={0}, device="cpu"'),
                     "auto", "cpu")
    assert device(text, "d") == "cpu"


def test_auto_placement_through_jit_matches_the_interpreter():
    rng = np.random.default_rng(2)
    a, b = (rng.standard_normal((256, 256)).astype(np.float32) for _ in range(2))
    v = rng.standard_normal(16).astype(np.float32)
    f = lambda a, b, v: (a @ b, v * 2.0 + 1.0)
    compiled = tessel.jit(f, placement="auto").lower(a, b, v).compile()
    assert compiled.executable.devices == ["cpu", "systolic"]
    got = compiled(a, b, v)
    from tessel.backends.systolic.reference import dot_tolerance
    assert np.all(np.abs(got[0] - a @ b) <= dot_tolerance(a, b, against="f32"))
    np.testing.assert_array_equal(got[1], v * 2 + 1)
    assert compiled.systolic_report().transfer_bytes == 0


def test_placement_leaves_the_traced_module_alone():
    module = parse_module(GATHER_THEN_DOT)
    before = print_module(clone_module(module))
    from tessel.compiler import pipeline
    pipeline.place(module, "soft", "systolic")
    assert print_module(module) == before
