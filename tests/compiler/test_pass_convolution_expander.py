"""Convolution expander: the expanded program (pad, slices, concatenate, dot_general)
computes what the convolution computes, in the interpreter, and leaves no convolution
behind. The full configuration table runs on the CPU backend
(tests/backends/cpu/test_codegen_conv.py)."""
from __future__ import annotations

import numpy as np
import pytest

from tessel.backends.interpreter import evaluate
from tessel.backends.interpreter.testing import one_op_module
from tessel.compiler.ir import Shape, clone_module
from tessel.compiler.passes.convolution_expander import ConvolutionExpander
from tessel.compiler.verifier import verify

CASES = {  # name -> lhs shape, rhs shape, attrs
    "nhwc_padded_dilated": ((2, 5, 4, 3), (3, 2, 3, 4), dict(
        dim_labels="b01f_01io->b01f", window_strides=(2, 1), padding=((1, 1), (0, 2)), rhs_dilation=(1, 2))),
    "transposed": ((1, 2, 3, 4), (3, 2, 2, 2), dict(
        dim_labels="bf01_oi01->bf01", lhs_dilation=(2, 3), padding=((1, 1), (1, 0)))),
    "cropping": ((1, 2, 9), (2, 2, 2), dict(dim_labels="bf0_oi0->bf0", padding=((-2, -1),))),
    "feature_groups": ((2, 6, 5), (4, 3, 2), dict(dim_labels="bf0_oi0->bf0", feature_group_count=2)),
    "batch_groups": ((4, 3, 6), (6, 3, 2), dict(dim_labels="bf0_oi0->bf0", batch_group_count=2)),
    "permuted_output": ((2, 3, 4, 5), (2, 3, 2, 2), dict(dim_labels="fb01_io01->0fb1")),
    "empty_batch": ((0, 3, 5), (2, 3, 2), dict(dim_labels="bf0_oi0->bf0")),
    "window_larger_than_input": ((2, 3, 2), (2, 3, 4), dict(dim_labels="bf0_oi0->bf0")),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("dtype", ["f64", "s32"])
def test_expanded_convolution_matches_interpreter(case, dtype):
    lshape, rshape, attrs = CASES[case]
    rng = np.random.default_rng(0)
    x = rng.integers(-5, 6, lshape).astype(dtype.replace("s", "int").replace("f", "float"))
    w = rng.integers(-5, 6, rshape).astype(x.dtype)
    module = one_op_module("convolution", [Shape(dtype, lshape), Shape(dtype, rshape)], attrs)
    expanded = clone_module(module)
    assert ConvolutionExpander().run(expanded)
    verify(expanded)
    assert not any(i.opcode == "convolution" for c in expanded.computations for i in c.instructions)
    want, got = evaluate(module, [x, w]), evaluate(expanded, [x, w])
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)        # small integers: every sum is exact


def test_plain_convolution_is_one_gemm():
    module = one_op_module("convolution", [Shape("f32", (8, 56, 56, 64)), Shape("f32", (3, 3, 64, 64))],
                           dict(dim_labels="b01f_01io->b01f", padding=((1, 1), (1, 1))))
    ConvolutionExpander().run(module)
    opcodes = [i.opcode for i in module.entry.instructions]
    assert opcodes.count("dot_general") == 1 and opcodes.count("slice") == 9
