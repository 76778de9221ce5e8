"""Multi-output fusion: HLO text in, checks on text out, interpreter results before = after."""
from __future__ import annotations

import re

from tessel.compiler.fusion_utils import FusionGraph, Group, fuse
from tessel.compiler.parser import parse_module
from tessel.compiler.passes.loop_fusion import LoopFusion
from tessel.compiler.passes.multi_output_fusion import MultiOutputFusion
from tessel.compiler.passes.output_fusion import OutputFusion
from tessel.compiler.passes.reduction_fusion import ReductionFusion
from tessel.compiler.printer import print_module
from fusion_checks import run, blocks, fusion_lines, body, root_of, assert_same_results


# ----------------------------------------------------------------------------- helpers

def module_text(name: str, entry: str) -> str:
    return f"""HloModule {name}

sum {{
  a = f32[] parameter(0)
  b = f32[] parameter(1)
  ROOT s = f32[] add(a, b)
}}

max {{
  a = f32[] parameter(0)
  b = f32[] parameter(1)
  ROOT m = f32[] maximum(a, b)
}}

ENTRY main {{
{entry.strip(chr(10))}
}}
"""


TWO_REDUCTIONS = module_text("two_reductions", """
  x = f32[8,32] parameter(0)
  zero = f32[] constant(0)
  ninf = f32[] constant(-inf)
  s = f32[8] reduce(x, zero), dimensions={1}, to_apply=sum     # model.py:1
  m = f32[8] reduce(x, ninf), dimensions={1}, to_apply=max     # model.py:2
  ROOT t = (f32[8], f32[8]) tuple(s, m)
""")


def test_two_reductions_of_the_same_rows_share_one_kernel(rng):
    before, after, changed = run(TWO_REDUCTIONS, MultiOutputFusion())
    assert changed
    (line,) = fusion_lines(after)
    assert "(f32[8], f32[8]) fusion(x)" in line and "kind=input" in line
    assert line.endswith("# model.py:1, model.py:2")
    inside = body(after, line)
    assert inside.count("reduce(") == 2 and "tuple(s, m)" in root_of(inside)
    entry = blocks(after)["ENTRY"]
    assert entry.count("get_tuple_element(fusion") == 2
    assert re.search(r"ROOT t = \(f32\[8\], f32\[8\]\) tuple\(get_tuple_element[.\d]*, get_tuple_element[.\d]*\)", entry)
    assert_same_results(before, after, rng)


def test_a_loop_fusion_and_a_reduction_over_the_same_array_merge(rng):
    before, after, _ = run(module_text("loop_and_reduce", """
  x = f32[8,32] parameter(0)
  e = f32[8,32] exp(x)
  two = f32[] constant(2)
  twob = f32[8,32] broadcast_in_dim(two), broadcast_dimensions={}
  y = f32[8,32] multiply(e, twob)
  zero = f32[] constant(0)
  s = f32[8] reduce(x, zero), dimensions={1}, to_apply=sum
  ROOT t = (f32[8,32], f32[8]) tuple(y, s)
"""), LoopFusion(), MultiOutputFusion())
    (line,) = fusion_lines(after)
    assert "kind=input" in line and "(f32[8,32], f32[8]) fusion(x)" in line
    inside = body(after, line)
    assert "exp(" in inside and "reduce(" in inside
    assert_same_results(before, after, rng)


def test_three_siblings_become_one_fusion_with_three_outputs(rng):
    before, after, _ = run(module_text("three", """
  x = f32[8,32] parameter(0)
  y = f32[8,32] parameter(1)
  zero = f32[] constant(0)
  ninf = f32[] constant(-inf)
  s = f32[8] reduce(x, zero), dimensions={1}, to_apply=sum
  m = f32[8] reduce(x, ninf), dimensions={1}, to_apply=max
  xx = f32[8,32] multiply(x, y)
  q = f32[8] reduce(xx, zero), dimensions={1}, to_apply=sum
  ROOT t = (f32[8], f32[8], f32[8]) tuple(s, m, q)
"""), ReductionFusion(), MultiOutputFusion())
    (line,) = fusion_lines(after)
    assert "(f32[8], f32[8], f32[8]) fusion(x, y)" in line
    assert body(after, line).count("reduce(") == 3
    assert_same_results(before, after, rng)


def test_different_reduced_dims_do_not_merge(rng):
    before, after, changed = run(module_text("dims", """
  x = f32[8,8] parameter(0)
  zero = f32[] constant(0)
  rows = f32[8] reduce(x, zero), dimensions={1}, to_apply=sum
  cols = f32[8] reduce(x, zero), dimensions={0}, to_apply=sum
  ROOT t = (f32[8], f32[8]) tuple(rows, cols)
"""), MultiOutputFusion())
    assert not changed and not fusion_lines(after)


def test_a_small_shared_operand_is_no_reason_to_merge():
    _, after, changed = run(module_text("small", """
  x = f32[8,32] parameter(0)
  y = f32[8,32] parameter(1)
  b = f32[32] parameter(2)
  bb = f32[8,32] broadcast_in_dim(b), broadcast_dimensions={1}
  p = f32[8,32] add(x, bb)
  q = f32[8,32] multiply(y, bb)
  ROOT t = (f32[8,32], f32[8,32]) tuple(p, q)
"""), LoopFusion(), MultiOutputFusion())
    assert not changed and len(fusion_lines(after)) == 2


def test_dependent_siblings_do_not_merge(rng):
    # a and b both read x, but b also reads a dot of a: one kernel computing both would
    # need its own output as an input (a cycle).
    before, after, changed = run(module_text("cycle", """
  x = f32[8,8] parameter(0)
  w = f32[8,8] parameter(1)
  a = f32[8,8] exp(x)
  d = f32[8,8] dot_general(a, w), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  b = f32[8,8] add(x, d)
  ROOT t = (f32[8,8], f32[8,8]) tuple(a, b)
"""), MultiOutputFusion())
    assert not changed and not fusion_lines(after)
    assert_same_results(before, after, rng)


def test_the_graph_reports_the_cycle_a_merge_would_close():
    module = parse_module(module_text("cycle", """
  x = f32[8,8] parameter(0)
  w = f32[8,8] parameter(1)
  a = f32[8,8] exp(x)
  d = f32[8,8] dot_general(a, w), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  b = f32[8,8] add(x, d)
  c = f32[8,8] negate(x)
  ROOT t = (f32[8,8], f32[8,8], f32[8,8]) tuple(a, b, c)
"""))
    graph = FusionGraph(module.entry)
    named = {i.name: i for i in module.entry.instructions}
    assert graph.creates_cycle({named["a"], named["b"]})
    assert not graph.creates_cycle({named["a"], named["c"]})


def test_output_fusions_never_merge(rng):
    before, after, changed = run(module_text("gemms", """
  x = f32[8,8] parameter(0)
  w = f32[8,8] parameter(1)
  v = f32[8,8] parameter(2)
  d = f32[8,8] dot_general(x, w), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  td = f32[8,8] tanh(d)
  e = f32[8,8] dot_general(x, v), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  te = f32[8,8] tanh(e)
  ROOT t = (f32[8,8], f32[8,8]) tuple(td, te)
"""), OutputFusion(), MultiOutputFusion())
    assert not changed and len(fusion_lines(after)) == 2
    assert_same_results(before, after, rng)


def test_merging_into_a_multi_output_fusion_inlines_it(rng):
    text = module_text("again", """
  x = f32[8,32] parameter(0)
  zero = f32[] constant(0)
  ninf = f32[] constant(-inf)
  s = f32[8] reduce(x, zero), dimensions={1}, to_apply=sum
  m = f32[8] reduce(x, ninf), dimensions={1}, to_apply=max
  n = f32[8] reduce(x, ninf), dimensions={1}, to_apply=sum
  ROOT t = (f32[8], f32[8], f32[8]) tuple(s, m, n)
""")
    before, module = parse_module(text), parse_module(text)
    named = {i.name: i for i in module.entry.instructions}
    first = Group([named["s"], named["m"]])
    fuse(module, module.entry, first, "input")
    assert MultiOutputFusion().run(module)
    printed = print_module(module, full_constants=True)
    (line,) = fusion_lines(printed)
    assert body(printed, line).count("reduce(") == 3
    assert len([c for c in module.computations if c.name.startswith("fused_computation")]) == 1
    assert_same_results(before, printed, rng)
    assert not MultiOutputFusion().run(module)
