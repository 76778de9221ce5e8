"""Reduction fusion: HLO text in, checks on text out, interpreter results before = after."""
from __future__ import annotations

from tessel.compiler.parser import parse_module
from tessel.compiler.passes.reduction_fusion import ReductionFusion
from tessel.compiler.printer import print_module
from fusion_checks import run, blocks, fusion_lines, body, root_of, assert_same_results


# ----------------------------------------------------------------------------- helpers

REDUCERS = """
HloModule {name}

max {{
  a = f32[] parameter(0)
  b = f32[] parameter(1)
  ROOT m = f32[] maximum(a, b)
}}

sum {{
  a = f32[] parameter(0)
  b = f32[] parameter(1)
  ROOT s = f32[] add(a, b)
}}
"""


def module_text(name: str, entry: str) -> str:
    return REDUCERS.format(name=name) + "\nENTRY main {\n" + entry.strip("\n") + "\n}\n"


SOFTMAX = module_text("softmax", """
  x = f32[6,16] parameter(0)
  ninf = f32[] constant(-inf)
  m = f32[6] reduce(x, ninf), dimensions={1}, to_apply=max        # model.py:1
  mk = f32[6,1] reshape(m)                                         # model.py:1
  mb = f32[6,16] broadcast_in_dim(mk), broadcast_dimensions={0,1}  # model.py:1
  d = f32[6,16] subtract(x, mb)                                    # model.py:1
  e = f32[6,16] exp(d)                                             # model.py:1
  zero = f32[] constant(0)
  s = f32[6] reduce(e, zero), dimensions={1}, to_apply=sum         # model.py:2
  sk = f32[6,1] reshape(s)                                         # model.py:2
  sb = f32[6,16] broadcast_in_dim(sk), broadcast_dimensions={0,1}  # model.py:2
  ROOT out = f32[6,16] divide(e, sb)                               # model.py:2
""")


def test_row_softmax_becomes_one_kernel(rng):
    before, after, changed = run(SOFTMAX, ReductionFusion())
    assert changed
    entry = blocks(after)["ENTRY"]
    # the max over each row, exp(x - max), its row sum and the division: one input
    # fusion with two reduction levels (a pass over the row for each, then the divide)
    (line,) = fusion_lines(after)
    assert "kind=input" in line and "fusion(x)" in line and line.endswith("# model.py:1, model.py:2")
    inside = body(after, line)
    for op in ("subtract(", "exp(", "divide(", "to_apply=max", "to_apply=sum"):
        assert inside.count(op) == 1, op
    assert inside.count("reduce(") == 2
    assert "divide(e, sb)" in root_of(inside)
    assert len(entry.strip().splitlines()) == 2      # x and the fusion
    assert_same_results(before, after, rng)


LAYER_NORM = module_text("layer_norm", """
  x = f32[8,32] parameter(0)
  gamma = f32[32] parameter(1)
  beta = f32[32] parameter(2)
  zero = f32[] constant(0)
  n = f32[8,1] constant({{32}, {32}, {32}, {32}, {32}, {32}, {32}, {32}})
  s = f32[8] reduce(x, zero), dimensions={1}, to_apply=sum
  sk = f32[8,1] reshape(s)
  mean = f32[8,1] divide(sk, n)
  mb = f32[8,32] broadcast_in_dim(mean), broadcast_dimensions={0,1}
  d = f32[8,32] subtract(x, mb)
  dd = f32[8,32] multiply(d, d)
  v = f32[8] reduce(dd, zero), dimensions={1}, to_apply=sum
  vk = f32[8,1] reshape(v)
  var = f32[8,1] divide(vk, n)
  eps = f32[] constant(1e-05)
  epsb = f32[8,1] broadcast_in_dim(eps), broadcast_dimensions={}
  ve = f32[8,1] add(var, epsb)
  sd = f32[8,1] sqrt(ve)
  sdb = f32[8,32] broadcast_in_dim(sd), broadcast_dimensions={0,1}
  gb = f32[8,32] broadcast_in_dim(gamma), broadcast_dimensions={1}
  g = f32[8,32] multiply(gb, d)
  q = f32[8,32] divide(g, sdb)
  bb = f32[8,32] broadcast_in_dim(beta), broadcast_dimensions={1}
  ROOT out = f32[8,32] add(q, bb)
""")


def test_layer_norm_becomes_one_kernel(rng):
    before, after, _ = run(LAYER_NORM, ReductionFusion())
    entry = blocks(after)["ENTRY"]
    # the row sums, the variance of x - mean and the normalization: one input fusion
    (line,) = fusion_lines(after)
    assert "kind=input" in line and "fusion(x, gamma, beta)" in line
    inside = body(after, line)
    assert inside.count("reduce(") == 2 and "sqrt(" in inside
    assert "add(q, bb)" in root_of(inside)
    assert "reduce(" not in entry
    assert_same_results(before, after, rng)


def test_a_lower_level_read_elsewhere_stays_its_own_kernel(rng):
    # the row max is also a result: merging it would need a second output
    before, after, _ = run(SOFTMAX.replace("ROOT out = f32[6,16] divide(e, sb)",
                                           "out = f32[6,16] divide(e, sb)\n"
                                           "  ROOT t = (f32[6,16], f32[6]) tuple(out, m)"), ReductionFusion())
    assert "m = f32[6] reduce(x, ninf), dimensions={1}, to_apply=max" in blocks(after)["ENTRY"]
    (line,) = fusion_lines(after)
    assert body(after, line).count("reduce(") == 1
    assert_same_results(before, after, rng)


def test_a_column_softmax_becomes_one_kernel(rng):
    before, after, _ = run(module_text("column_softmax", """
  x = f32[8,4] parameter(0)
  ninf = f32[] constant(-inf)
  m = f32[4] reduce(x, ninf), dimensions={0}, to_apply=max
  mb = f32[8,4] broadcast_in_dim(m), broadcast_dimensions={1}
  d = f32[8,4] subtract(x, mb)
  e = f32[8,4] exp(d)
  zero = f32[] constant(0)
  s = f32[4] reduce(e, zero), dimensions={0}, to_apply=sum
  sb = f32[8,4] broadcast_in_dim(s), broadcast_dimensions={1}
  ROOT out = f32[8,4] divide(e, sb)
"""), ReductionFusion())
    (line,) = fusion_lines(after)
    assert body(after, line).count("reduce(") == 2 and "divide(" in root_of(body(after, line))
    assert_same_results(before, after, rng)


def test_producers_fuse_into_a_reduction(rng):
    before, after, _ = run(module_text("sum_exp", """
  x = f32[4,8] parameter(0)
  y = f32[4,8] parameter(1)
  a = f32[4,8] multiply(x, y)
  e = f32[4,8] exp(a)
  zero = f32[] constant(0)
  ROOT s = f32[4] reduce(e, zero), dimensions={1}, to_apply=sum
"""), ReductionFusion())
    (line,) = fusion_lines(after)
    assert "kind=input" in line and "fusion(x, y)" in line
    inside = body(after, line)
    assert "exp(a)" in inside and "reduce(e, zero)" in root_of(inside)
    assert_same_results(before, after, rng)


def test_a_column_reduction_normalizes_its_columns(rng):
    before, after, _ = run(module_text("columns", """
  x = f32[8,4] parameter(0)
  zero = f32[] constant(0)
  s = f32[4] reduce(x, zero), dimensions={0}, to_apply=sum
  sb = f32[8,4] broadcast_in_dim(s), broadcast_dimensions={1}
  ROOT out = f32[8,4] divide(x, sb)
"""), ReductionFusion())
    (line,) = fusion_lines(after)
    assert "divide(" in root_of(body(after, line))
    assert_same_results(before, after, rng)


def test_a_broadcast_across_rows_is_not_part_of_the_kernel(rng):
    # s[i] is a row sum, but s is broadcast along the rows (out[i, j] uses s[j]): a row of
    # the output needs every row's sum, so the division cannot run row by row.
    before, after, changed = run(module_text("across", """
  x = f32[4,4] parameter(0)
  zero = f32[] constant(0)
  e = f32[4,4] exp(x)
  s = f32[4] reduce(e, zero), dimensions={1}, to_apply=sum
  sb = f32[4,4] broadcast_in_dim(s), broadcast_dimensions={1}
  ROOT out = f32[4,4] divide(x, sb)
"""), ReductionFusion())
    (line,) = fusion_lines(after)
    assert "reduce(" in root_of(body(after, line))
    assert "divide(x, sb)" in blocks(after)["ENTRY"]
    assert_same_results(before, after, rng)


def test_an_expensive_producer_with_another_user_stays_outside(rng):
    before, after, changed = run(module_text("shared", """
  x = f32[4,8] parameter(0)
  e = f32[4,8] exp(x)
  zero = f32[] constant(0)
  s = f32[4] reduce(e, zero), dimensions={1}, to_apply=sum
  ROOT t = (f32[4], f32[4,8]) tuple(s, e)
"""), ReductionFusion())
    assert not changed and not fusion_lines(after)
    assert after.count("exp(") == 1
    assert_same_results(before, after, rng)


def test_nothing_fuses_across_a_side_effecting_op(rng):
    before, after, _ = run(module_text("effects", """
  x = f32[4,8] parameter(0)
  a = f32[4,8] negate(x)
  r = f32[4,8] all_reduce(a), reduction=sum
  zero = f32[] constant(0)
  ROOT s = f32[4] reduce(r, zero), dimensions={1}, to_apply=sum
"""), ReductionFusion())
    assert not fusion_lines(after)
    assert "r = f32[4,8] all_reduce(a), reduction=sum" in blocks(after)["ENTRY"]
    assert_same_results(before, after, rng)


def test_reductions_over_different_rows_stay_separate(rng):
    # The second reduction reads the first one's result over other rows (a total of
    # row sums): a row of the second is not a row of the first, so no shared kernel.
    before, after, _ = run(module_text("levels", """
  x = f32[4,8] parameter(0)
  zero = f32[] constant(0)
  s = f32[4] reduce(x, zero), dimensions={1}, to_apply=sum
  e = f32[4] exp(s)
  ROOT t = f32[] reduce(e, zero), dimensions={0}, to_apply=sum
"""), ReductionFusion())
    for line in fusion_lines(after):
        assert body(after, line).count("reduce(") == 1
    assert_same_results(before, after, rng)


def test_source_lines_survive_and_a_second_run_changes_nothing():
    module = parse_module(SOFTMAX)
    assert ReductionFusion().run(module)
    text = print_module(module)
    assert not ReductionFusion().run(module)
    assert print_module(module) == text
    (line,) = fusion_lines(text)
    assert line.endswith("# model.py:1, model.py:2")
