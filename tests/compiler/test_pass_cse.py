"""Common-subexpression elimination: HLO text in, checks on HLO text out."""
from __future__ import annotations

import re

import numpy as np

from tessel.backends.interpreter import evaluate
from tessel.compiler import verifier
from tessel.compiler.ir import clone_module
from tessel.compiler.parser import parse_module
from tessel.compiler.passes.cse import CSE
from tessel.compiler.printer import print_module


def hlo(body: str, before: str = "") -> str:
    return f"HloModule m\n{before}ENTRY main {{\n{body}\n}}\n"


def ops_in(text: str) -> list[str]:
    return re.findall(r" ([a-z_]+)\(", text)


def leaves(value):
    return [leaf for v in value for leaf in leaves(v)] if isinstance(value, tuple) else [value]


def cse(text: str, rng=None) -> tuple[bool, str]:
    """Run CSE, verify, compare results on random float inputs; (changed, text out)."""
    before = parse_module(text)
    after = clone_module(before)
    changed = CSE().run(after)
    verifier.verify(after)
    if rng is not None:
        args = [rng.standard_normal(p.shape.dims).astype(p.shape.dtype.storage)
                for p in before.entry.parameters]
        for want, got in zip(leaves(evaluate(before, args)), leaves(evaluate(after, args))):
            np.testing.assert_array_equal(got, want)
    return changed, print_module(after)


def test_merges_duplicates_and_whole_duplicated_chains(rng):
    changed, out = cse(hlo("""
  x = f32[3] parameter(0)
  y = f32[3] parameter(1)
  a = f32[3] subtract(x, y)
  b = f32[3] subtract(x, y)
  ea = f32[3] exp(a)
  eb = f32[3] exp(b)
  ROOT t = (f32[3], f32[3]) tuple(ea, eb)"""), rng)
    assert changed
    assert ops_in(out) == ["parameter", "parameter", "subtract", "exp", "tuple"]
    assert "tuple(ea, ea)" in out


def test_commutative_operands_match_in_either_order(rng):
    _, out = cse(hlo("""
  x = f32[3] parameter(0)
  y = f32[3] parameter(1)
  a = f32[3] multiply(x, y)
  b = f32[3] multiply(y, x)
  c = f32[3] subtract(x, y)
  d = f32[3] subtract(y, x)
  ROOT t = (f32[3], f32[3], f32[3], f32[3]) tuple(a, b, c, d)"""), rng)
    assert ops_in(out).count("multiply") == 1 and ops_in(out).count("subtract") == 2
    assert "tuple(a, a, c, d)" in out


def test_identical_constants_are_deduplicated_by_value_and_type():
    _, out = cse(hlo("""
  a = f32[2] constant({1, 2})
  b = f32[2] constant({1, 2})
  c = f32[2] constant({1, 3})
  d = bf16[2] constant({1, 2})
  e = bf16[2] constant({1, 2})
  z = f32[] constant(0)
  nz = f32[] constant(-0.0)
  ROOT t = (f32[2], f32[2], f32[2], bf16[2], bf16[2], f32[], f32[]) tuple(a, b, c, d, e, z, nz)"""))
    assert ops_in(out).count("constant") == 5                 # -0.0 and 0.0 are different constants
    assert "tuple(a, a, c, d, d, z, nz)" in out


def test_attributes_and_types_must_match():
    _, out = cse(hlo("""
  x = s32[3] parameter(0)
  a = pred[3] compare(x, x), direction=LT
  b = pred[3] compare(x, x), direction=GT
  c = f32[3] convert(x)
  d = f64[3] convert(x)
  ROOT t = (pred[3], pred[3], f32[3], f64[3]) tuple(a, b, c, d)"""))
    assert "tuple(a, b, c, d)" in out


def test_nested_computations_compare_by_identity():
    body = """
{name} {{
  p = f32[] parameter(0)
  q = f32[] parameter(1)
  ROOT s = f32[] add(p, q)
}}
"""
    _, out = cse(hlo("""
  x = f32[4] parameter(0)
  z = f32[] constant(0)
  a = f32[] reduce(x, z), dimensions={0}, to_apply=sum
  b = f32[] reduce(x, z), dimensions={0}, to_apply=sum
  c = f32[] reduce(x, z), dimensions={0}, to_apply=other_sum
  ROOT t = (f32[], f32[], f32[]) tuple(a, b, c)""", before=body.format(name="sum") + body.format(name="other_sum")))
    assert "tuple(a, a, c)" in out


def test_side_effects_random_bits_and_parameters_are_never_merged():
    changed, out = cse(hlo("""
  x = f32[3] parameter(0)
  y = f32[3] parameter(1)
  s = u32[4] parameter(2)
  a = f32[3] all_reduce(x), reduction=sum
  b = f32[3] all_reduce(x), reduction=sum
  r1 = (u32[4], u32[2]) rng_bit_generator(s)
  r2 = (u32[4], u32[2]) rng_bit_generator(s)
  c = f32[3] call(x), to_apply=effect
  d = f32[3] call(x), to_apply=effect
  ROOT t = (f32[3], f32[3], f32[3], f32[3], (u32[4], u32[2]), (u32[4], u32[2]), f32[3], f32[3]) tuple(x, y, a, b, r1, r2, c, d)""",
                               before="""
effect {
  p = f32[3] parameter(0)
  ROOT e = f32[3] all_reduce(p), reduction=max
}
"""))
    assert not changed
    assert "tuple(x, y, a, b, r1, r2, c, d)" in out


def test_runs_in_every_computation_and_can_merge_into_the_root():
    changed, out = cse(hlo("""
  x = f32[4] parameter(0)
  z = f32[] constant(0)
  ROOT r = f32[] reduce(x, z), dimensions={0}, to_apply=body""", before="""
body {
  p = f32[] parameter(0)
  q = f32[] parameter(1)
  a = f32[] add(p, q)
  ROOT b = f32[] add(q, p)
}
"""))
    assert changed and "ROOT a = f32[] add(p, q)" in out and ops_in(out).count("add") == 1


def test_no_duplicates_no_change():
    changed, _ = cse(hlo("""
  x = f32[3] parameter(0)
  ROOT n = f32[3] negate(x)"""))
    assert not changed
