"""Zero-element folding: HLO text in, the rewritten ops and the interpreter's values out."""
from __future__ import annotations

import re

import numpy as np
import pytest

from tessel.backends.interpreter import evaluate
from tessel.compiler import verifier
from tessel.compiler.ir import clone_module
from tessel.compiler.parser import parse_module
from tessel.compiler.passes.zero_elements import ZeroElementFolding
from tessel.compiler.printer import print_module

ADD = """
add_f32 {
  a = f32[] parameter(0)
  b = f32[] parameter(1)
  ROOT add = f32[] add(a, b)
}
"""


def hlo(body: str, before: str = "") -> str:
    return f"HloModule m\n{before}ENTRY main {{\n{body}\n}}\n"


def entry_ops(module) -> list[str]:
    return [i.opcode for i in module.entry.instructions]


def fold(text: str, args):
    """The folded module's entry ops, after checking it computes what the original does."""
    module = parse_module(text)
    folded = clone_module(module)
    fired = ZeroElementFolding().run(folded)
    verifier.verify(folded)
    want, got = evaluate(module, args), evaluate(folded, args)
    for w, g in zip(want, got):
        np.testing.assert_array_equal(g, w)
    return fired, folded


def test_an_empty_result_becomes_an_empty_constant():
    fired, m = fold(hlo("""
  x = f32[3,0] parameter(0)
  e = f32[3,0] exp(x)
  s = f32[2,0] slice(e), start_indices={1,0}, limit_indices={3,0}, strides={1,1}
  ROOT t = (f32[3,0], f32[2,0]) tuple(e, s)"""), [np.zeros((3, 0), np.float32)])
    assert fired and "exp" not in entry_ops(m) and "slice" not in entry_ops(m)
    assert [o.opcode for o in m.entry.root.operands] == ["constant", "constant"]


def test_a_dot_contracting_an_empty_dim_is_zeros():
    fired, m = fold(hlo("""
  a = f32[2,0] parameter(0)
  b = f32[0,3] parameter(1)
  ROOT d = f32[2,3] dot_general(a, b), lhs_contracting_dims={1}, rhs_contracting_dims={0}"""),
        [np.zeros((2, 0), np.float32), np.zeros((0, 3), np.float32)])
    assert fired and "dot_general" not in entry_ops(m)


def test_a_convolution_over_no_input_features_is_zeros():
    fired, m = fold(hlo("""
  x = f32[1,4,0] parameter(0)
  w = f32[2,0,3] parameter(1)
  ROOT c = f32[1,3,3] convolution(x, w), window_strides={1}, padding={{0,0}}, dim_labels="b0f_0io->b0f\""""),
        [np.zeros((1, 4, 0), np.float32), np.zeros((2, 0, 3), np.float32)])
    assert fired and "convolution" not in entry_ops(m)


def test_a_convolution_of_an_empty_input_with_padding_is_left_alone():
    # The padding zeros still meet the kernel: 0 * inf is NaN, not 0.
    module = parse_module(hlo("""
  x = f32[1,0,2] parameter(0)
  w = f32[1,2,3] parameter(1)
  ROOT c = f32[1,2,3] convolution(x, w), window_strides={1}, padding={{1,1}}, dim_labels="b0f_0io->b0f\""""))
    assert not ZeroElementFolding().run(module)


def test_reduce_and_pad_of_an_empty_operand_are_their_second_operand():
    fired, m = fold(hlo("""
  x = f32[0,3] parameter(0)
  init = f32[] constant(1.5)
  r = f32[3] reduce(x, init), dimensions={0}, to_apply=add_f32
  v = f32[] parameter(1)
  p = f32[2,3] pad(x, v), edge_padding_low={1,0}, edge_padding_high={1,0}, interior_padding={0,0}
  ROOT t = (f32[3], f32[2,3]) tuple(r, p)""", ADD), [np.zeros((0, 3), np.float32), np.float32(-2)])
    assert fired and "reduce" not in entry_ops(m) and "pad" not in entry_ops(m)


@pytest.mark.parametrize("parts, kept", [("a, e, b", 2), ("e, a", 1)])
def test_concatenate_drops_empty_parts(parts, kept):
    fired, m = fold(hlo(f"""
  a = f32[2,2] parameter(0)
  b = f32[2,1] parameter(1)
  e = f32[2,0] parameter(2)
  ROOT c = f32[2,{3 if kept == 2 else 2}] concatenate({parts}), dimension=1"""),
        [np.ones((2, 2), np.float32), np.full((2, 1), 7, np.float32), np.zeros((2, 0), np.float32)])
    assert fired
    root = m.entry.root
    assert (root.opcode == "concatenate" and len(root.operands) == 2) if kept == 2 else root.opcode == "parameter"


def test_nothing_to_fold_leaves_the_module_alone():
    module = parse_module(hlo("""
  x = f32[3] parameter(0)
  ROOT e = f32[3] exp(x)"""))
    before = print_module(module)
    assert not ZeroElementFolding().run(module)
    assert print_module(module) == before
