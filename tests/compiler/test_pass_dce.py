"""Dead-code elimination: HLO text in, checks on HLO text out."""
from __future__ import annotations

import re

from tessel.compiler import verifier
from tessel.compiler.parser import parse_module
from tessel.compiler.passes.dce import DCE
from tessel.compiler.printer import print_module


def hlo(body: str, before: str = "") -> str:
    return f"HloModule m\n{before}ENTRY main {{\n{body}\n}}\n"


def ops_in(text: str) -> list[str]:
    return re.findall(r" ([a-z_]+)\(", text)


def dce(text: str) -> tuple[bool, str]:
    m = parse_module(text)
    changed = DCE().run(m)
    verifier.verify(m)
    return changed, print_module(m)


def test_removes_what_the_root_does_not_use():
    changed, out = dce(hlo("""
  x = f32[3] parameter(0)
  a = f32[3] exp(x)
  b = f32[3] negate(a)
  c = f32[3] log(x)
  ROOT d = f32[3] negate(c)"""))
    assert changed and ops_in(out) == ["parameter", "log", "negate"]


def test_keeps_parameters_and_side_effects_with_their_operands():
    changed, out = dce(hlo("""
  x = f32[3] parameter(0)
  unused = f32[3] parameter(1)
  n = f32[3] negate(x)
  a = f32[3] all_reduce(n), reduction=sum
  c = f32[3] call(x), to_apply=effect
  ROOT r = f32[3] exp(x)""", before="""
effect {
  p = f32[3] parameter(0)
  ROOT e = f32[3] all_reduce(p), reduction=max
}
"""))
    assert not changed
    assert ops_in(out) == ["parameter", "all_reduce", "parameter", "parameter", "negate", "all_reduce",
                           "call", "exp"]


def test_nested_computations_keep_unused_parameters():
    changed, out = dce(hlo("""
  x = f32[4] parameter(0)
  z = f32[] constant(0)
  ROOT r = f32[] reduce(x, z), dimensions={0}, to_apply=first""", before="""
first {
  p = f32[] parameter(0)
  q = f32[] parameter(1)
  dead = f32[] add(p, q)
  ROOT keep = f32[] negate(p)
}
"""))
    assert changed and "q = f32[] parameter(1)" in out and "dead" not in out


def test_removes_computations_no_longer_called():
    changed, out = dce(hlo("""
  x = f32[4] parameter(0)
  z = f32[] constant(0)
  r = f32[] reduce(x, z), dimensions={0}, to_apply=sum
  ROOT n = f32[4] negate(x)""", before="""
sum {
  p = f32[] parameter(0)
  q = f32[] parameter(1)
  ROOT s = f32[] add(p, q)
}

never_called {
  p = f32[] parameter(0)
  ROOT n = f32[] exp(p)
}
"""))
    assert changed and "sum" not in out and "never_called" not in out and "reduce" not in ops_in(out)
    assert out.count("{") == 1                          # the entry alone


def test_nothing_dead_no_change():
    changed, _ = dce(hlo("""
  x = f32[3] parameter(0)
  ROOT n = f32[3] negate(x)"""))
    assert not changed
