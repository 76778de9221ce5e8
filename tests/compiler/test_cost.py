"""Cost analysis: closed-form flop counts, transcendentals, and what fusion saves in bytes."""
from __future__ import annotations

import math

import pytest

from tessel.compiler import ops
from tessel.compiler.cost import BYTES, KEYS, NO_WORK, TRANSCENDENTAL, WORK, cost_analysis
from tessel.compiler.parser import parse_module

ADD = """
add {
  a = f32[] parameter(0)
  b = f32[] parameter(1)
  ROOT s = f32[] add(a, b)
}
"""


def module(body: str, callees: str = ADD) -> str:
    return "HloModule m\n" + callees + "ENTRY main {\n" + body + "\n}\n"


def costs(text: str):
    ca = cost_analysis(parse_module(text))
    return ca, {c.name: c for c in ca.per_instruction}


def test_the_tables_cover_every_op():
    assert set(WORK) == set(ops.OPS), set(ops.OPS) ^ set(WORK)
    assert set(BYTES) <= set(ops.OPS)
    assert set(TRANSCENDENTAL) <= {name for name, d in ops.OPS.items() if d.elementwise}
    for name, why in NO_WORK.items():          # an op doing no arithmetic says why
        assert name in ops.OPS and why


def test_dot_general_counts_2mnk_with_batch_dims():
    ca, by = costs(module("""
  a = f32[4,32,64] parameter(0)
  b = f32[4,64,16] parameter(1)
  ROOT d = f32[4,32,16] dot_general(a, b), lhs_batching_dims={0}, rhs_batching_dims={0}, lhs_contracting_dims={2}, rhs_contracting_dims={1}"""))
    assert by["d"].flops == 2 * 4 * 32 * 16 * 64
    assert (by["d"].bytes_read, by["d"].bytes_written) == (4 * (4 * 32 * 64 + 4 * 64 * 16), 4 * 4 * 32 * 16)
    assert ca["flops"] == 2 * 4 * 32 * 16 * 64 and ca["transcendentals"] == 0


def test_dot_general_with_two_contracting_dims():
    ca, by = costs(module("""
  a = f32[8,3,5] parameter(0)
  b = f32[5,3,7] parameter(1)
  ROOT d = f32[8,7] dot_general(a, b), lhs_contracting_dims={1,2}, rhs_contracting_dims={1,0}"""))
    assert by["d"].flops == 2 * 8 * 7 * 15


def test_convolution_counts_output_elements_times_window_times_group_features():
    ca, by = costs(module("""
  img = f32[2,10,10,6] parameter(0)
  ker = f32[3,3,3,8] parameter(1)
  ROOT c = f32[2,10,10,8] convolution(img, ker), padding={{1,1},{1,1}}, feature_group_count=2, dim_labels="b01f_01io->b01f" """))
    assert by["c"].flops == 2 * (2 * 10 * 10 * 8) * (3 * 3) * 3
    ca, by = costs(module("""
  img = f32[1,6,9,9] parameter(0)
  ker = f32[4,6,2,2] parameter(1)
  ROOT c = f32[1,4,4,4] convolution(img, ker), window_strides={2,2}, dim_labels="bf01_oi01->bf01" """))
    assert by["c"].flops == 2 * (4 * 4 * 4) * (2 * 2) * 6


def test_transcendentals_are_counted_per_element_and_not_as_flops():
    ca, by = costs(module("""
  x = f32[10,10] parameter(0)
  i = s32[10,10] parameter(1)
  e = f32[10,10] exp(x)
  t = f32[10,10] tanh(e)
  l = f32[10,10] logistic(t)
  s = f32[10,10] sqrt(l)
  p = f32[10,10] power(s, x)
  ip = s32[10,10] power(i, i)
  m = f32[10,10] multiply(p, x)
  c = pred[10,10] compare(m, x), direction=LT
  ROOT r = f32[10,10] select(c, m, x)"""))
    for name in "etlsp":
        assert (by[name].transcendentals, by[name].flops) == (100, 0), name
    for name in ("ip", "m", "c", "r"):                      # integer power, multiply, compare, select
        assert (by[name].transcendentals, by[name].flops) == (0, 100), name
    assert ca["transcendentals"] == 500 and ca["flops"] == 400


def test_reductions_apply_their_body_once_per_input_element():
    ca, by = costs(module("""
  x = f32[8,16] parameter(0)
  z = f32[] constant(0)
  r = f32[8] reduce(x, z), dimensions={1}, to_apply=add
  w = f32[4,14] reduce_window(x, z), window_dimensions={2,3}, window_strides={2,1}, to_apply=add
  ROOT t = (f32[8], f32[4,14]) tuple(r, w)"""))
    assert by["r"].flops == 8 * 16
    assert by["w"].flops == 4 * 14 * 6
    assert (by["t"].flops, by["t"].bytes_read, by["t"].bytes_written) == (0, 0, 0)


def test_fusion_counts_its_body_flops_but_only_its_boundary_bytes():
    unfused = module("""
  x = f32[1024] parameter(0)
  y = f32[1024] parameter(1)
  e = f32[1024] exp(x)
  m = f32[1024] multiply(e, y)
  ROOT a = f32[1024] add(m, x)""")
    fused = module("""
  x = f32[1024] parameter(0)
  y = f32[1024] parameter(1)
  ROOT f = f32[1024] fusion(x, y), kind=loop, calls=fused""", """
fused {
  p0 = f32[1024] parameter(0)
  p1 = f32[1024] parameter(1)
  e = f32[1024] exp(p0)
  m = f32[1024] multiply(e, p1)
  ROOT a = f32[1024] add(m, p0)
}
""")
    a, _ = costs(unfused)
    b, by = costs(fused)
    assert (a["flops"], a["transcendentals"]) == (b["flops"], b["transcendentals"]) == (2048, 1024)
    assert b["bytes accessed"] == 3 * 4096                  # read x and y once, write f once
    assert a["bytes accessed"] == (4096 + 4096) + (8192 + 4096) + (8192 + 4096)
    assert b["bytes accessed"] < a["bytes accessed"]


def test_data_movement_costs_bytes_only_and_bitcasts_nothing():
    ca, by = costs(module("""
  x = f32[16,16] parameter(0)
  i = s32[] parameter(1)
  t = f32[16,16] transpose(x), permutation={1,0}
  r = f32[256] reshape(t)
  s = f32[4,16] slice(t), start_indices={0,0}, limit_indices={4,16}
  d = f32[2,16] dynamic_slice(t, i, i), slice_sizes={2,16}
  ROOT out = (f32[256], f32[4,16], f32[2,16]) tuple(r, s, d)"""))
    assert ca["flops"] == 0
    assert (by["t"].bytes_read, by["t"].bytes_written) == (1024, 1024)
    assert (by["r"].bytes_read, by["r"].bytes_written) == (0, 0)
    assert (by["s"].bytes_read, by["s"].bytes_written) == (256, 256)
    assert (by["d"].bytes_read, by["d"].bytes_written) == (128 + 8, 128)


def test_loops_count_one_iteration_and_are_marked_estimated():
    callees = """
cond {
  s = (s32[], f32[64]) parameter(0)
  n = s32[] get_tuple_element(s), index=0
  ten = s32[] constant(10)
  ROOT lt = pred[] compare(n, ten), direction=LT
}
body {
  s = (s32[], f32[64]) parameter(0)
  n = s32[] get_tuple_element(s), index=0
  v = f32[64] get_tuple_element(s), index=1
  one = s32[] constant(1)
  n1 = s32[] add(n, one)
  e = f32[64] exp(v)
  ROOT t = (s32[], f32[64]) tuple(n1, e)
}
"""
    ca, by = costs(module("""
  k = s32[] parameter(0)
  x = f32[64] parameter(1)
  init = (s32[], f32[64]) tuple(k, x)
  ROOT w = (s32[], f32[64]) while(init), condition=cond, body=body""", callees))
    assert (by["w"].flops, by["w"].transcendentals, by["w"].estimated) == (2, 64, True)
    assert ca.estimated and not by["init"].estimated
    assert "estimated" in str(ca)


def test_the_result_reads_like_jax_cost_analysis():
    ca, by = costs(module("""
  x = f32[100] parameter(0)
  ROOT e = f32[100] exp(x)"""))
    assert dict(ca) == {"flops": 0, "transcendentals": 100, "bytes accessed": 800,
                        "bytes read": 400, "bytes written": 400}
    assert list(ca) == list(KEYS) and len(ca) == 5
    assert ca["bytes accessed"] == ca.bytes_read + ca.bytes_written
    assert [c.name for c in ca.per_instruction] == ["x", "e"]
    with pytest.raises(KeyError, match="no 'seconds'"):
        ca["seconds"]
    text = str(ca)
    assert "total" in text and "exp" in text


def test_sort_and_scatter_count_their_bodies():
    callees = ADD + """
less {
  a = f32[] parameter(0)
  b = f32[] parameter(1)
  ROOT lt = pred[] compare(a, b), direction=LT
}
"""
    ca, by = costs(module("""
  x = f32[4,8] parameter(0)
  s = f32[4,8] sort(x), dimension=1, comparator=less
  idx = s32[3,1] parameter(1)
  upd = f32[3,8] parameter(2)
  ROOT sc = f32[4,8] scatter(s, idx, upd), update_window_dims={1}, inserted_window_dims={0}, scatter_dims_to_operand_dims={0}, index_vector_dim=1, to_apply=add""", callees))
    assert by["s"].flops == 32 * math.ceil(math.log2(8))
    assert by["sc"].flops == 3 * 8
