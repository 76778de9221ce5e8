"""Minimized programs the fuzzer (test_hlo_fuzz.py) found miscompiled: HLO text in, the
check that failed out. Each names the bug and the fix."""
from __future__ import annotations

import numpy as np
import pytest

import checks
from tessel.backends.interpreter import evaluate
from tessel.compiler.parser import parse_module
from tessel.compiler.pipeline import optimize
from tessel.runtime import backends


def assert_backends_agree(text: str, args, inexact=None):
    """The interpreter and CPU pipelines and the CPU backend compute what the
    interpreter computes on the unoptimized module."""
    module = parse_module(text)
    want = evaluate(module, args)
    n = len(checks.leaves(want))
    inexact = inexact or [False] * n
    for backend in ("interpreter", "cpu"):
        optimized, _ = optimize(module, backend)
        got = evaluate(optimized, args)
        assert checks.mismatch(got, want, inexact, 1.0, f"{backend} pipeline") is None
    optimized, _ = optimize(module, "cpu")
    got = backends.get("cpu").compile(optimized)([np.array(a, copy=True) for a in args])
    problem = checks.mismatch(got, want, inexact, 1.0, "cpu backend")
    assert problem is None, problem


# Multi-output fusion took a reduce over no dimensions (reduced dims = ()) for a plain
# elementwise op and built a loop fusion around it, which the CPU backend cannot emit
# ("no elemental rule for reduce"). Fixed in compiler/passes/multi_output_fusion.py: any
# reduce makes the merged kernel an input fusion.
REDUCE_OVER_NO_DIMS_WITH_SIBLING = """
HloModule fuzz

add_f32 {
  a = f32[] parameter(0)
  b = f32[] parameter(1)
  ROOT add = f32[] add(a, b)
}

ENTRY main {
  p0 = f32[3] parameter(0)
  constant = f32[] constant(0.5)
  reduce = f32[3] reduce(p0, constant), dimensions={}, to_apply=add_f32
  abs = f32[3] abs(p0)
  ROOT tuple = (f32[3], f32[3]) tuple(reduce, abs)
}
"""


def test_reduce_over_no_dims_fused_with_a_sibling():
    assert_backends_agree(REDUCE_OVER_NO_DIMS_WITH_SIBLING, [np.array([1, -2, 3], np.float32)])


# The op table accepted a gather collapsing a dim whose slice size is 0 (an empty slice)
# while the result shape, which drops the dim, still had elements; the interpreter then
# indexed the empty operand (IndexError). Fixed in compiler/ops.py: collapsed dims must
# have slice size exactly 1, and the parser/verifier now reject this module.
GATHER_COLLAPSING_AN_EMPTY_DIM = """
HloModule fuzz

ENTRY main {
  p0 = f32[0] parameter(0)
  p1 = s32[4] parameter(1)
  ROOT gather = f32[4] gather(p0, p1), offset_dims={}, collapsed_slice_dims={0}, start_index_map={0}, index_vector_dim=1, slice_sizes={0}
}
"""


def test_gather_collapsing_an_empty_dim_is_rejected():
    with pytest.raises(ValueError, match=r"gather collapsed_slice_dims must have size 1: collapsed \[0\], slice_sizes \[0\]"):
        parse_module(GATHER_COLLAPSING_AN_EMPTY_DIM)
