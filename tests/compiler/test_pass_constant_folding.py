"""Constant folding: HLO text in, checks on HLO text out, results compared with the
interpreter before folding."""
from __future__ import annotations

import re

import numpy as np
import pytest

from tessel.backends.interpreter import evaluate
from tessel.compiler import verifier
from tessel.compiler.ir import SourceLoc, clone_module
from tessel.compiler.parser import parse_module
from tessel.compiler.passes.constant_folding import FOLDABLE, NEVER_FOLD, ConstantFolding
from tessel.compiler.printer import print_module
from tessel.compiler import ops


def hlo(body: str, before: str = "") -> str:
    return f"HloModule m\n{before}ENTRY main {{\n{body}\n}}\n"


def ops_in(text: str) -> list[str]:
    return re.findall(r" ([a-z_]+)\(", text)


def leaves(value):
    return [leaf for v in value for leaf in leaves(v)] if isinstance(value, tuple) else [value]


def fold(text: str, args=(), **options):
    """Fold, verify, check the results did not change; the pass and the text out."""
    before = parse_module(text)
    after = clone_module(before)
    folding = ConstantFolding(**options)
    folding.run(after)
    verifier.verify(after)
    for want, got in zip(leaves(evaluate(before, list(args))), leaves(evaluate(after, list(args)))):
        assert want.dtype == got.dtype and np.array_equal(want, got, equal_nan=want.dtype.kind == "f")
    return folding, print_module(after, full_constants=True)


def test_the_ops_never_folded_are_ops():
    assert set(NEVER_FOLD) <= set(ops.OPS) and not set(NEVER_FOLD) & set(FOLDABLE)
    assert "all_reduce" not in FOLDABLE and "add" in FOLDABLE and "reduce" in FOLDABLE


def test_folds_chains_of_constants_with_the_interpreters_semantics():
    folding, out = fold(hlo("""
  a = s32[3] constant({2147483647, -7, 7})
  b = s32[3] constant({1, 2, 0})
  s = s32[3] add(a, b)                          // wraps
  d = s32[3] divide(a, b)                       // -7 / 2 = -3, 7 / 0 = -1 (as in XLA)
  f = f32[3] convert(d)
  h = bf16[3] convert(f)
  e = bf16[3] exp(h)                            // rounded to bf16
  ROOT t = (s32[3], bf16[3]) tuple(s, e)"""))
    assert folding.fired["fold"] == 5
    assert ops_in(out) == ["constant", "constant", "tuple"]
    assert "s32[3] constant({-2147483648, -5, 7})" in out


def test_a_folded_constant_keeps_the_source_location():
    m = parse_module(hlo("""
  a = f32[2] constant({1, 2})
  ROOT n = f32[2] negate(a)                    # model.py:7"""))
    ConstantFolding().run(m)
    assert m.entry.root.opcode == "constant" and m.entry.root.locs == (SourceLoc("model.py", 7),)


def test_values_known_only_at_run_time_are_not_folded():
    folding, out = fold(hlo("""
  x = f32[2] parameter(0)
  a = f32[2] constant({1, 2})
  ROOT m = f32[2] multiply(x, a)"""), [np.ones(2, np.float32)])
    assert not folding.fired and "multiply" in ops_in(out)


def test_reductions_of_small_constants_fold():
    folding, out = fold(hlo("""
  a = f32[2,3] constant({{1, 2, 3}, {4, 5, 6}})
  z = f32[] constant(0)
  ROOT r = f32[2] reduce(a, z), dimensions={1}, to_apply=sum""", before="""
sum {
  p = f32[] parameter(0)
  q = f32[] parameter(1)
  ROOT s = f32[] add(p, q)
}
"""))
    assert folding.fired["fold"] == 1 and "f32[2] constant({6.0, 15.0})" in out


def test_size_caps():
    # A broadcast or iota expands: only small results are folded.
    _, out = fold(hlo("""
  c = f32[] constant(3)
  small = f32[2,8] broadcast_in_dim(c), broadcast_dimensions={}
  big = f32[100] broadcast_in_dim(c), broadcast_dimensions={}
  i = s32[16] iota(), iota_dimension=0
  j = s32[1000] iota(), iota_dimension=0
  ROOT t = (f32[2,8], f32[100], s32[16], s32[1000]) tuple(small, big, i, j)"""))
    assert "f32[100] broadcast_in_dim" in out and "s32[1000] iota" in out
    assert ops_in(out).count("constant") == 3
    # Elementwise results are as big as their operands, but not above max_elements.
    ones = ", ".join(["1"] * 100)
    text = hlo(f"""
  a = s32[100] constant({{{ones}}})
  ROOT n = s32[100] negate(a)""")
    folding, _ = fold(text, max_elements=99)
    assert not folding.fired
    folding, _ = fold(text, max_elements=100)
    assert folding.fired["fold"] == 1


def test_nested_computations_fold_only_for_small_inputs():
    halves = ", ".join(["0.5"] * 64)
    text = hlo(f"""
  a = f32[64] constant({{{halves}}})
  z = f32[] constant(0)
  ROOT r = f32[] reduce(a, z), dimensions={{0}}, to_apply=sum""", before="""
sum {
  p = f32[] parameter(0)
  q = f32[] parameter(1)
  ROOT s = f32[] add(p, q)
}
""")
    folding, _ = fold(text, max_nested_elements=64)
    assert not folding.fired                      # 65 elements in, with the init value
    folding, out = fold(text, max_nested_elements=65)
    assert folding.fired["fold"] == 1 and "f32[] constant(32.0)" in out


@pytest.mark.parametrize("body, before", [
    # random bits are never folded
    ("""  s = u32[4] constant({1, 2, 3, 4})
  ROOT r = (u32[4], u32[2]) rng_bit_generator(s)""", ""),
    # side effects
    ("""  c = f32[2] constant({1, 2})
  ROOT a = f32[2] all_reduce(c), reduction=sum""", ""),
    # control flow
    ("""  c = s32[] constant(0)
  ROOT w = s32[] while(c), condition=cond, body=body""", """
cond {
  p = s32[] parameter(0)
  ten = s32[] constant(10)
  ROOT lt = pred[] compare(p, ten), direction=LT
}

body {
  p = s32[] parameter(0)
  one = s32[] constant(1)
  ROOT n = s32[] add(p, one)
}
"""),
    # tuples have no constants
    ("""  a = f32[2] constant({1, 2})
  ROOT t = (f32[2], f32[2]) tuple(a, a)""", ""),
])
def test_never_folded(body, before):
    folding, _ = fold(hlo(body, before))
    assert not folding.fired


def test_folding_inside_nested_computations():
    _, out = fold(hlo("""
  x = s32[] constant(0)
  ROOT w = s32[] while(x), condition=cond, body=body""", before="""
cond {
  p = s32[] parameter(0)
  five = s32[] constant(5)
  two = s32[] constant(2)
  ten = s32[] multiply(five, two)
  ROOT lt = pred[] compare(p, ten), direction=LT
}

body {
  p = s32[] parameter(0)
  one = s32[] constant(1)
  ROOT n = s32[] add(p, one)
}
"""))
    assert "s32[] constant(10)" in out and "multiply" not in ops_in(out)
