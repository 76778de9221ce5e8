"""Output fusion: HLO text in, checks on text out, interpreter results before = after."""
from __future__ import annotations

from tessel.compiler.parser import parse_module
from tessel.compiler.passes.output_fusion import OutputFusion
from tessel.compiler.printer import print_module
from fusion_checks import run, blocks, fusion_lines, body, root_of, assert_same_results


# ----------------------------------------------------------------------------- helpers

def entry_module(name: str, entry: str) -> str:
    return f"HloModule {name}\n\nENTRY main {{\n{entry.strip(chr(10))}\n}}\n"


DENSE_RELU = entry_module("dense_relu", """
  x = f32[4,8] parameter(0)
  w = f32[8,16] parameter(1)
  b = f32[16] parameter(2)
  d = f32[4,16] dot_general(x, w), lhs_contracting_dims={1}, rhs_contracting_dims={0}   # mlp.py:3
  bb = f32[4,16] broadcast_in_dim(b), broadcast_dimensions={1}                         # mlp.py:3
  a = f32[4,16] add(d, bb)                                                             # mlp.py:3
  z = f32[] constant(0)                                                                # mlp.py:4
  zb = f32[4,16] broadcast_in_dim(z), broadcast_dimensions={}                          # mlp.py:4
  ROOT r = f32[4,16] maximum(a, zb)                                                    # mlp.py:4
""")


def test_bias_and_relu_join_the_dot(rng):
    before, after, changed = run(DENSE_RELU, OutputFusion())
    assert changed
    (line,) = fusion_lines(after)
    assert "kind=output" in line and "fusion(x, w, b)" in line
    assert line.endswith("# mlp.py:3, mlp.py:4")                  # source lines survive
    inside = body(after, line)
    assert "dot_general(" in inside and "maximum(a, zb)" in root_of(inside)
    assert len(blocks(after)["ENTRY"].strip().splitlines()) == 4     # three parameters and the fusion
    assert_same_results(before, after, rng)


def test_a_gelu_epilogue_with_internal_fan_out_is_one_kernel(rng):
    before, after, _ = run(entry_module("dense_gelu", """
  x = f32[4,8] parameter(0)
  w = f32[8,16] parameter(1)
  b = f32[16] parameter(2)
  d = f32[4,16] dot_general(x, w), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  bb = f32[4,16] broadcast_in_dim(b), broadcast_dimensions={1}
  h = f32[4,16] add(d, bb)
  half = f32[] constant(0.5)
  halfb = f32[4,16] broadcast_in_dim(half), broadcast_dimensions={}
  c = f32[] constant(0.044715)
  cb = f32[4,16] broadcast_in_dim(c), broadcast_dimensions={}
  k = f32[] constant(0.7978846)
  kb = f32[4,16] broadcast_in_dim(k), broadcast_dimensions={}
  one = f32[] constant(1)
  oneb = f32[4,16] broadcast_in_dim(one), broadcast_dimensions={}
  h2 = f32[4,16] multiply(h, h)
  h3 = f32[4,16] multiply(h2, h)
  t0 = f32[4,16] multiply(cb, h3)
  t1 = f32[4,16] add(h, t0)
  t2 = f32[4,16] multiply(kb, t1)
  t3 = f32[4,16] tanh(t2)
  t4 = f32[4,16] add(oneb, t3)
  hh = f32[4,16] multiply(halfb, h)
  ROOT g = f32[4,16] multiply(hh, t4)
"""), OutputFusion())
    (line,) = fusion_lines(after)
    inside = body(after, line)
    assert "multiply(hh, t4)" in root_of(inside) and "tanh(" in inside
    assert "fusion(x, w, b)" in line
    assert_same_results(before, after, rng)


def test_a_residual_add_and_a_scale_join_the_epilogue(rng):
    before, after, _ = run(entry_module("residual", """
  x = f32[4,8] parameter(0)
  w = f32[8,8] parameter(1)
  res = f32[4,8] parameter(2)
  d = f32[4,8] dot_general(x, w), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  s = f32[] constant(0.125)
  sb = f32[4,8] broadcast_in_dim(s), broadcast_dimensions={}
  a = f32[4,8] multiply(d, sb)
  ROOT r = f32[4,8] add(res, a)
"""), OutputFusion())
    (line,) = fusion_lines(after)
    assert "fusion(x, w, res)" in line and "add(" in root_of(body(after, line))
    assert_same_results(before, after, rng)


def test_a_convolution_takes_its_epilogue(rng):
    before, after, _ = run(entry_module("conv", """
  x = f32[1,6,6,3] parameter(0)
  k = f32[3,3,3,4] parameter(1)
  b = f32[4] parameter(2)
  c = f32[1,4,4,4] convolution(x, k), dim_labels="b01f_01io->b01f"
  bb = f32[1,4,4,4] broadcast_in_dim(b), broadcast_dimensions={3}
  a = f32[1,4,4,4] add(c, bb)
  ROOT t = f32[1,4,4,4] tanh(a)
"""), OutputFusion())
    (line,) = fusion_lines(after)
    inside = body(after, line)
    assert "convolution(" in inside and "tanh(" in root_of(inside)
    assert_same_results(before, after, rng)


def test_a_product_with_two_users_keeps_no_epilogue(rng):
    before, after, changed = run(entry_module("two_users", """
  x = f32[4,8] parameter(0)
  w = f32[8,16] parameter(1)
  b = f32[16] parameter(2)
  d = f32[4,16] dot_general(x, w), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  bb = f32[4,16] broadcast_in_dim(b), broadcast_dimensions={1}
  a = f32[4,16] add(d, bb)
  ROOT t = (f32[4,16], f32[4,16]) tuple(a, d)
"""), OutputFusion())
    assert not changed and not fusion_lines(after)
    assert after.count("dot_general(") == 1
    assert_same_results(before, after, rng)


def test_the_epilogue_stops_where_a_value_is_needed_outside(rng):
    # a (dot + bias) is read by the tanh and by the root tuple: the kernel ends at a; a
    # reduction after it never joins.
    before, after, _ = run("""
HloModule stop

sum {
  p = f32[] parameter(0)
  q = f32[] parameter(1)
  ROOT s = f32[] add(p, q)
}

ENTRY main {
  x = f32[4,8] parameter(0)
  w = f32[8,16] parameter(1)
  b = f32[16] parameter(2)
  d = f32[4,16] dot_general(x, w), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  bb = f32[4,16] broadcast_in_dim(b), broadcast_dimensions={1}
  a = f32[4,16] add(d, bb)
  t = f32[4,16] tanh(a)
  z = f32[] constant(0)
  r = f32[4] reduce(t, z), dimensions={1}, to_apply=sum
  ROOT o = (f32[4,16], f32[4]) tuple(a, r)
}
""", OutputFusion())
    (line,) = fusion_lines(after)
    assert "add(d, bb)" in root_of(body(after, line))
    entry = blocks(after)["ENTRY"]
    assert "tanh(" in entry and "reduce(" in entry
    assert_same_results(before, after, rng)


def test_operand_slices_and_transposes_are_read_through_by_the_gemm(rng):
    before, after, _ = run(entry_module("views", """
  qkv = f32[4,24] parameter(0)
  q = f32[4,8] slice(qkv), start_indices={0,0}, limit_indices={4,8}
  k = f32[4,8] slice(qkv), start_indices={0,8}, limit_indices={4,16}
  kt = f32[8,4] transpose(k), permutation={1,0}
  ROOT s = f32[4,4] dot_general(q, kt), lhs_contracting_dims={1}, rhs_contracting_dims={0}
"""), OutputFusion())
    (line,) = fusion_lines(after)
    assert "kind=output" in line and "fusion(qkv)" in line
    inside = body(after, line)
    assert inside.count("slice(") == 2 and "transpose(" in inside and "dot_general(" in root_of(inside)
    assert_same_results(before, after, rng)


def test_a_plain_dot_is_left_alone_and_a_second_run_changes_nothing():
    plain = entry_module("plain", """
  x = f32[4,8] parameter(0)
  w = f32[8,16] parameter(1)
  ROOT d = f32[4,16] dot_general(x, w), lhs_contracting_dims={1}, rhs_contracting_dims={0}
""")
    _, after, changed = run(plain, OutputFusion())
    assert not changed and not fusion_lines(after)
    module = parse_module(DENSE_RELU)
    assert OutputFusion().run(module)
    text = print_module(module)
    assert not OutputFusion().run(module) and print_module(module) == text


def test_nothing_fuses_across_a_side_effecting_op(rng):
    before, after, changed = run(entry_module("effects", """
  x = f32[4,8] parameter(0)
  w = f32[8,16] parameter(1)
  d = f32[4,16] dot_general(x, w), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  r = f32[4,16] all_reduce(d), reduction=sum
  ROOT t = f32[4,16] tanh(r)
"""), OutputFusion())
    assert not changed and not fusion_lines(after)
    assert_same_results(before, after, rng)
