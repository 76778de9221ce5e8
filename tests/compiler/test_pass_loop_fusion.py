"""Loop fusion, and the cost rule every fusion pass shares: HLO text in, checks on text out."""
from __future__ import annotations

import re

from tessel.compiler import fusion_utils, verifier
from tessel.compiler.fusion_utils import CHEAP, DUPLICATION_LIMIT, EXPENSIVE, FREE, cost_class, may_duplicate
from tessel.compiler.parser import parse_module
from tessel.compiler.passes.loop_fusion import LoopFusion
from tessel.compiler.printer import print_module
from fusion_checks import run, blocks, fusion_lines, body, assert_same_results


# ----------------------------------------------------------------------------- helpers

# ----------------------------------------------------------------------------- fusing chains

CHAIN = """
HloModule chain

ENTRY main {
  x = f32[4,8] parameter(0)
  b = f32[8] parameter(1)
  bb = f32[4,8] broadcast_in_dim(b), broadcast_dimensions={1}   # model.py:2
  s = f32[4,8] add(x, bb)                                        # model.py:3
  t = f32[4,8] multiply(s, s)                                    # model.py:4
  ROOT n = f32[4,8] negate(t)                                    # model.py:5
}
"""


def test_an_elementwise_chain_with_its_broadcast_becomes_one_loop_fusion(rng):
    before, after, changed = run(CHAIN, LoopFusion())
    assert changed
    (line,) = fusion_lines(after)
    assert "kind=loop" in line and re.match(r"\s*ROOT fusion[.\d]* = f32\[4,8\] fusion\(x, b\)", line)
    inside = body(after, line)
    for op in ("broadcast_in_dim(", "add(", "multiply(", "negate("):
        assert op in inside
    assert "ROOT n = f32[4,8] negate(t)" in inside
    assert_same_results(before, after, rng)


def test_source_lines_survive_fusion():
    _, after, _ = run(CHAIN, LoopFusion())
    (line,) = fusion_lines(after)
    assert line.endswith("# model.py:2, model.py:3, model.py:4, model.py:5")
    assert "add(x, bb)" not in blocks(after)["ENTRY"]
    inside = body(after, line)
    assert re.search(r"t = f32\[4,8\] multiply\(s, s\)\s+# model.py:4", inside)   # each keeps its own


def test_running_again_changes_nothing():
    module = parse_module(CHAIN)
    assert LoopFusion().run(module)
    text = print_module(module)
    assert not LoopFusion().run(module)
    assert print_module(module) == text


def test_data_movement_fuses_with_the_elementwise_ops(rng):
    before, after, _ = run("""
HloModule moves

ENTRY main {
  x = f32[8,4] parameter(0)
  y = f32[2,4,4] parameter(1)
  t = f32[4,8] transpose(x), permutation={1,0}
  r = f32[4,8] reshape(y)
  e = f32[4,8] exp(t)
  s = f32[4,6] slice(e), start_indices={0,1}, limit_indices={4,7}
  q = f32[4,6] slice(r), start_indices={0,2}, limit_indices={4,8}
  c = f32[4,12] concatenate(s, q), dimension=1
  z = f32[] constant(0)
  p = f32[4,14] pad(c, z), edge_padding_low={0,1}, edge_padding_high={0,1}
  i = s32[4,14] iota(), iota_dimension=1
  f = f32[4,14] convert(i)
  ROOT o = f32[4,14] add(p, f)
}
""", LoopFusion())
    (line,) = fusion_lines(after)
    assert "fusion(x, y)" in line
    entry = blocks(after)["ENTRY"]
    assert len(entry.strip().splitlines()) == 3        # two parameters and the fusion
    assert_same_results(before, after, rng)


def test_an_existing_loop_fusion_absorbs_its_producers(rng):
    before, after, _ = run("""
HloModule merge

fc {
  a = f32[4] parameter(0)
  b = f32[4] parameter(1)
  ROOT m = f32[4] multiply(a, b)
}

ENTRY main {
  x = f32[4] parameter(0)
  y = f32[4] parameter(1)
  n = f32[4] negate(x)                 # model.py:7
  ROOT f = f32[4] fusion(n, y), kind=loop, calls=fc   # model.py:8
}
""", LoopFusion())
    (line,) = fusion_lines(after)
    assert "fusion(x, y)" in line and line.endswith("# model.py:7, model.py:8")
    assert "fc" not in blocks(after)           # the old fused computation left the module
    inside = body(after, line)
    assert "negate(" in inside and "multiply(" in inside
    assert_same_results(before, after, rng)


# ----------------------------------------------------------------------------- the cost rule

def test_an_exp_with_two_users_is_not_duplicated(rng):
    before, after, _ = run("""
HloModule shared_exp

ENTRY main {
  x = f32[4,8] parameter(0)
  y = f32[4,8] parameter(1)
  e = f32[4,8] exp(x)
  a = f32[4,8] add(e, y)
  na = f32[4,8] negate(a)
  m = f32[4,8] multiply(e, y)
  am = f32[4,8] abs(m)
  ROOT t = (f32[4,8], f32[4,8]) tuple(na, am)
}
""", LoopFusion())
    assert after.count("exp(") == 1
    assert "e = f32[4,8] exp(x)" in blocks(after)["ENTRY"]      # computed once, outside
    lines = fusion_lines(after)
    assert len(lines) == 2 and all("kind=loop" in line and "fusion(y, e)" in line for line in lines)
    assert_same_results(before, after, rng)


def test_a_cheap_producer_with_two_users_is_copied_into_both(rng):
    before, after, _ = run("""
HloModule shared_add

ENTRY main {
  x = f32[4,8] parameter(0)
  y = f32[4,8] parameter(1)
  s = f32[4,8] add(x, y)
  e = f32[4,8] exp(s)
  l = f32[4,8] log(s)
  ROOT t = (f32[4,8], f32[4,8]) tuple(e, l)
}
""", LoopFusion())
    entry = blocks(after)["ENTRY"]
    assert "add(" not in entry                  # the original is gone: both fusions compute it
    lines = fusion_lines(after)
    assert len(lines) == 2
    assert all("add(" in body(after, line) for line in lines)
    assert_same_results(before, after, rng)


def test_an_exp_behind_a_copied_value_is_not_copied_with_it(rng):
    # s is cheap and copied into both consumers; its exp producer has s as its only user,
    # but copying it along would compute it twice.
    before, after, _ = run("""
HloModule behind_copy

ENTRY main {
  x = f32[4,8] parameter(0)
  e = f32[4,8] exp(x)
  s = f32[4,8] add(e, e)
  a = f32[4,8] negate(s)
  b = f32[4,8] abs(s)
  ROOT t = (f32[4,8], f32[4,8]) tuple(a, b)
}
""", LoopFusion())
    assert after.count("exp(") == 1 and "e = f32[4,8] exp(x)" in blocks(after)["ENTRY"]
    assert after.count("add(e") == 0 and after.count(" add(") == 2      # s: one copy per fusion
    assert_same_results(before, after, rng)


def test_a_cheap_producer_with_too_many_users_is_computed_once(rng):
    users = DUPLICATION_LIMIT[CHEAP] + 1
    lines = "\n".join(f"  u{i} = f32[8] exp(s)\n  v{i} = f32[8] negate(u{i})" for i in range(users))
    outs = ", ".join(f"v{i}" for i in range(users))
    before, after, _ = run(f"""
HloModule many_users

ENTRY main {{
  x = f32[8] parameter(0)
  s = f32[8] add(x, x)
{lines}
  ROOT t = ({", ".join(["f32[8]"] * users)}) tuple({outs})
}}
""", LoopFusion())
    assert "s = f32[8] add(x, x)" in blocks(after)["ENTRY"]
    assert after.count("add(") == 1
    assert_same_results(before, after, rng)


def test_an_expensive_value_is_not_recomputed_for_every_broadcast_element(rng):
    before, after, _ = run("""
HloModule repeat

ENTRY main {
  r = f32[4] parameter(0)
  y = f32[4,64] parameter(1)
  e = f32[4] exp(r)
  n = f32[4] negate(r)
  be = f32[4,64] broadcast_in_dim(e), broadcast_dimensions={0}
  bn = f32[4,64] broadcast_in_dim(n), broadcast_dimensions={0}
  a = f32[4,64] add(be, y)
  ROOT m = f32[4,64] multiply(a, bn)
}
""", LoopFusion())
    assert "e = f32[4] exp(r)" in blocks(after)["ENTRY"]
    (line,) = fusion_lines(after)
    inside = body(after, line)
    assert "negate(" in inside and "exp(" not in inside      # the cheap one rides along
    assert_same_results(before, after, rng)


def test_cost_classes():
    module = parse_module("""
HloModule classes

ENTRY main {
  x = f32[4,4] parameter(0)
  c = f32[] constant(2)
  b = f32[4,4] broadcast_in_dim(c), broadcast_dimensions={}
  t = f32[4,4] transpose(x), permutation={1,0}
  a = f32[4,4] add(x, b)
  d = f32[4,4] divide(a, t)
  k = pred[4,4] compare(a, d), direction=LT
  s = f32[4,4] select(k, a, d)
  e = f32[4,4] exp(s)
  q = f32[4,4] sqrt(e)
  p = f32[4,4] power(q, x)
  m = f32[4,4] dot_general(p, x), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  z = f32[] constant(0)
  ROOT r = f32[4] reduce(m, z), dimensions={1}, to_apply=sum
}

sum {
  u = f32[] parameter(0)
  v = f32[] parameter(1)
  ROOT w = f32[] add(u, v)
}
""")
    classes = {i.name: cost_class(i) for i in module.entry.instructions if i.opcode != "parameter"}
    assert classes == {"c": FREE, "b": FREE, "t": FREE, "a": CHEAP, "d": CHEAP, "k": CHEAP, "s": CHEAP,
                       "e": EXPENSIVE, "q": EXPENSIVE, "p": EXPENSIVE, "m": EXPENSIVE, "z": FREE,
                       "r": EXPENSIVE}
    by_name = {i.name: i for i in module.entry.instructions}
    assert may_duplicate(by_name["e"], 1) and not may_duplicate(by_name["e"], 2)
    assert may_duplicate(by_name["a"], DUPLICATION_LIMIT[CHEAP])
    assert not may_duplicate(by_name["a"], DUPLICATION_LIMIT[CHEAP] + 1)
    assert may_duplicate(by_name["b"], 100)


def test_large_constants_stay_operands_and_are_never_copied():
    values = ", ".join(str(float(v)) for v in range(fusion_utils.SMALL_CONSTANT_ELEMENTS + 1))
    size = fusion_utils.SMALL_CONSTANT_ELEMENTS + 1
    _, after, _ = run(f"""
HloModule big_constant

ENTRY main {{
  x = f32[{size}] parameter(0)
  k = f32[{size}] constant({{{values}}})
  a = f32[{size}] add(x, k)
  ROOT n = f32[{size}] negate(a)
}}
""", LoopFusion())
    (line,) = fusion_lines(after)
    assert "fusion(x, k)" in line
    assert f"k = f32[{size}] constant(" in blocks(after)["ENTRY"]


# ----------------------------------------------------------------------------- what never fuses

def test_nothing_fuses_across_a_side_effecting_op(rng):
    before, after, _ = run("""
HloModule effects

ENTRY main {
  x = f32[8] parameter(0)
  a = f32[8] negate(x)
  b = f32[8] abs(a)
  r = f32[8] all_reduce(b), reduction=sum
  c = f32[8] exp(r)
  ROOT d = f32[8] negate(c)
}
""", LoopFusion())
    entry = blocks(after)["ENTRY"]
    assert re.search(r"r = f32\[8\] all_reduce\(fusion[.\d]*\), reduction=sum", entry)
    assert re.search(r"ROOT fusion[.\d]* = f32\[8\] fusion\(r\)", entry)
    assert after.count("all_reduce(") == 1
    assert_same_results(before, after, rng)


def test_a_diamond_through_a_dot_keeps_the_graph_acyclic(rng):
    # p -> d (a dot, never loop-fused) -> c and p -> c: moving p into c's fusion would
    # make the fusion depend on d, which depends on p. The exp stays outside; the cheap
    # add is copied (the dot reads the original).
    before, after, _ = run("""
HloModule diamond

ENTRY main {
  x = f32[4,4] parameter(0)
  w = f32[4,4] parameter(1)
  e = f32[4,4] exp(x)
  d = f32[4,4] dot_general(e, w), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  c = f32[4,4] multiply(e, d)
  p = f32[4,4] add(x, w)
  q = f32[4,4] dot_general(p, w), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  s = f32[4,4] subtract(p, q)
  ROOT o = f32[4,4] add(c, s)
}
""", LoopFusion())
    entry = blocks(after)["ENTRY"]
    assert "e = f32[4,4] exp(x)" in entry and "p = f32[4,4] add(x, w)" in entry
    (line,) = fusion_lines(after)
    inside = body(after, line)
    assert "exp(" not in inside and "add(" in inside
    assert_same_results(before, after, rng)


def test_control_flow_and_reducer_bodies_are_left_alone(rng):
    before, after, _ = run("""
HloModule bodies

sum {
  u = f32[] parameter(0)
  v = f32[] parameter(1)
  n = f32[] negate(u)
  ROOT w = f32[] subtract(v, n)
}

ENTRY main {
  x = f32[4,8] parameter(0)
  e = f32[4,8] exp(x)
  z = f32[] constant(0)
  ROOT r = f32[4] reduce(e, z), dimensions={1}, to_apply=sum
}
""", LoopFusion())
    assert not fusion_lines(after)
    assert "n = f32[] negate(u)" in blocks(after)["sum"]
    assert_same_results(before, after, rng)


def test_random_bits_are_never_fused_but_their_consumers_are(rng):
    before, after, _ = run("""
HloModule random

ENTRY main {
  state = u32[4] parameter(0)
  r = (u32[4], u32[8]) rng_bit_generator(state)
  bits = u32[8] get_tuple_element(r), index=1
  f = f32[8] convert(bits)
  ROOT n = f32[8] negate(f)
}
""", LoopFusion())
    entry = blocks(after)["ENTRY"]
    assert "rng_bit_generator(state)" in entry and "get_tuple_element(r)" in entry
    (line,) = fusion_lines(after)
    assert "fusion(bits)" in line
    assert_same_results(before, after, rng)


def test_loops_inside_a_while_body_fuse(rng):
    before, after, _ = run("""
HloModule loop

cond {
  s = (s32[], f32[8]) parameter(0)
  i = s32[] get_tuple_element(s), index=0
  three = s32[] constant(3)
  ROOT lt = pred[] compare(i, three), direction=LT
}

body {
  s = (s32[], f32[8]) parameter(0)
  i = s32[] get_tuple_element(s), index=0
  x = f32[8] get_tuple_element(s), index=1
  one = s32[] constant(1)
  j = s32[] add(i, one)
  h = f32[] constant(0.5)
  hb = f32[8] broadcast_in_dim(h), broadcast_dimensions={}
  m = f32[8] multiply(x, hb)
  t = f32[8] tanh(m)
  ROOT out = (s32[], f32[8]) tuple(j, t)
}

ENTRY main {
  x = f32[8] parameter(0)
  zero = s32[] constant(0)
  init = (s32[], f32[8]) tuple(zero, x)
  w = (s32[], f32[8]) while(init), condition=cond, body=body
  ROOT r = f32[8] get_tuple_element(w), index=1
}
""", LoopFusion())
    inside_body = blocks(after)["body"]
    (line,) = [line for line in inside_body.splitlines() if " fusion(x)" in line]
    assert "kind=loop" in line
    assert "tanh(" in body(after, line) and "tanh(" not in inside_body
    assert_same_results(before, after, rng)


def test_a_long_chain_is_cut_into_fusions_of_bounded_size(rng):
    """300 elementwise ops in a row become fusions of at most MAX_FUSION_INSTRUCTIONS each
    (a backend emits a fusion's body recursively; an unbounded one exhausted the stack)."""
    lines = [f"  v{k + 1} = f32[5] sin(v{k})" for k in range(300)]
    text = "HloModule long\n\nENTRY main {\n  v0 = f32[5] parameter(0)\n" + "\n".join(lines) + "\n}\n"
    before, after, changed = run(text, LoopFusion())
    assert changed
    fusions = fusion_lines(after)
    sizes = [sum(1 for line in body(after, f).splitlines() if "=" in line and "parameter(" not in line)
             for f in fusions]
    assert len(fusions) == -(-300 // fusion_utils.MAX_FUSION_INSTRUCTIONS) and max(sizes) == fusion_utils.MAX_FUSION_INSTRUCTIONS
    assert sum(sizes) == 300
    assert_same_results(before, after, rng)
