"""Dot layout for the matrix unit: HLO text in, checks on the result out."""
from __future__ import annotations

import numpy as np
import pytest

from tessel.backends import interpreter
from tessel.backends.systolic.dot_layout import DotLayout, is_canonical
from tessel.compiler import verifier
from tessel.compiler.ir import clone_module
from tessel.compiler.parser import parse_module
from tessel.compiler.printer import print_module


def hlo(body: str) -> str:
    return f"HloModule m\nENTRY main {{\n{body}\n}}\n"


def run(text: str):
    m = parse_module(text)
    before = clone_module(m)
    changed = DotLayout().run(m)
    verifier.verify(m)
    rng = np.random.default_rng(0)
    args = [rng.standard_normal(p.shape.dims).astype(np.float32) for p in m.entry.parameters]
    np.testing.assert_allclose(interpreter.evaluate(m, args), interpreter.evaluate(before, args), rtol=1e-6)
    dots = [i for i in m.entry.instructions if i.opcode == "dot_general"]
    assert all(is_canonical(d) for d in dots)
    return changed, print_module(m)


def test_row_major_operands_are_left_alone():
    changed, _ = run(hlo("""
  a = f32[5,3] parameter(0)
  b = f32[3,4] parameter(1)
  ROOT d = f32[5,4] dot_general(a, b), lhs_contracting_dims={1}, rhs_contracting_dims={0}"""))
    assert not changed


def test_rhs_read_transposed_is_left_alone():
    changed, _ = run(hlo("""
  a = f32[2,5,3] parameter(0)
  b = f32[2,4,3] parameter(1)
  ROOT d = f32[2,5,4] dot_general(a, b), lhs_batching_dims={0}, rhs_batching_dims={0}, lhs_contracting_dims={2}, rhs_contracting_dims={2}"""))
    assert not changed


@pytest.mark.parametrize("dims,shapes,out", [
    ("lhs_contracting_dims={0}, rhs_contracting_dims={0}", ("f32[3,5]", "f32[3,4]"), "f32[5,4]"),
    ("lhs_batching_dims={1}, rhs_batching_dims={0}, lhs_contracting_dims={0}, rhs_contracting_dims={2}",
     ("f32[3,2,5]", "f32[2,4,3]"), "f32[2,5,4]"),
    ("lhs_contracting_dims={1,2}, rhs_contracting_dims={1,0}", ("f32[5,3,2]", "f32[2,3,4]"), "f32[5,4]"),
])
def test_other_orders_get_transposes(dims, shapes, out):
    changed, text = run(hlo(f"""
  a = {shapes[0]} parameter(0)
  b = {shapes[1]} parameter(1)
  ROOT d = {out} dot_general(a, b), {dims}"""))
    assert changed and " transpose(" in text
