"""The expanders the systolic pipeline runs for ops the machine lacks: each expanded
program computes what the op computes (interpreter; integer-valued floats, so every sum
is exact and results must be equal), leaves no such op behind, and declines the forms it
does not handle."""
from __future__ import annotations

import numpy as np
import pytest

import tessel
import tessel.numpy as tnp
from tessel.backends.interpreter import evaluate
from tessel.backends.interpreter.testing import one_op_module, reducer
from tessel.compiler.ir import Shape, clone_module
from tessel.compiler.passes.constant_folding import ConstantFolding
from tessel.compiler.passes.reverse_expander import ReverseExpander
from tessel.compiler.passes.row_lookup_to_dot import RowLookupToDot
from tessel.compiler.passes.select_and_scatter_expander import SelectAndScatterExpander
from tessel.compiler.passes.update_slice_expander import UpdateSliceExpander
from tessel.compiler.verifier import verify

RNG = np.random.default_rng(0)


def opcodes(module):
    return {i.opcode for c in module.computations for i in c.instructions}


def check_expansion(module, expander, args, gone):
    out = clone_module(module)
    assert expander.run(out)
    verify(out)
    assert gone not in opcodes(out), out
    for want, got in zip(evaluate(module, args), evaluate(out, args)):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    return out


def small_ints(shape, dtype=np.float32):
    return RNG.integers(-4, 5, shape).astype(dtype)


# ----------------------------------------------------------------------------- select_and_scatter

SAS_CASES = {  # operand dims, window, strides, select direction
    "maxpool_2x2_nhwc": ((2, 4, 6, 3), (1, 2, 2, 1), (1, 2, 2, 1), "GE"),
    "overlapping_3x3_ties": ((5, 6), (3, 3), (1, 1), "GE"),
    "strict_gt_last_wins_never": ((6, 4), (2, 2), (2, 1), "GT"),
    "min_pool": ((4, 4), (2, 2), (2, 2), "LE"),
    "ragged_stride": ((7, 5), (2, 3), (3, 2), "LT"),
}


@pytest.mark.parametrize("case", sorted(SAS_CASES))
def test_select_and_scatter_expansion(case):
    dims, window, strides, direction = SAS_CASES[case]
    out_dims = tuple((n - w) // s + 1 for n, w, s in zip(dims, window, strides))
    module = one_op_module("select_and_scatter", [Shape("f32", dims), Shape("f32", out_dims), Shape("f32", ())],
                           dict(window_dimensions=window, window_strides=strides,
                                select=reducer("compare", "f32", direction=direction),
                                scatter=reducer("add", "f32")))
    operand = RNG.integers(0, 3, dims).astype(np.float32)          # many ties
    check_expansion(module, SelectAndScatterExpander(), [operand, small_ints(out_dims), np.float32(1.0)],
                    "select_and_scatter")


def test_max_pool_gradient_expands():
    def loss(x):
        return tnp.sum(tessel.nn.max_pool(x, (2, 2), strides=(2, 2)) ** 2)
    x = small_ints((2, 4, 4, 3))
    module = tessel.jit(tessel.grad(loss)).lower(x).module
    assert "select_and_scatter" in opcodes(module)
    check_expansion(module, SelectAndScatterExpander(), [x], "select_and_scatter")


def test_padded_select_and_scatter_is_left_alone():
    module = one_op_module("select_and_scatter", [Shape("f32", (4, 4)), Shape("f32", (3, 3)), Shape("f32", ())],
                           dict(window_dimensions=(2, 2), window_strides=(2, 2), padding=((1, 1), (1, 1)),
                                select=reducer("compare", "f32", direction="GE"), scatter=reducer("add", "f32")))
    assert not SelectAndScatterExpander().run(module)


# ----------------------------------------------------------------------------- reverse

@pytest.mark.parametrize("dims, reversed_dims", [((3, 3, 2, 4), (0, 1)), ((5,), (0,)), ((2, 7), (1,)),
                                                 ((1, 4), (0, 1))])
def test_reverse_expansion(dims, reversed_dims):
    module = one_op_module("reverse", [Shape("f32", dims)], dict(dimensions=reversed_dims))
    check_expansion(module, ReverseExpander(), [small_ints(dims)], "reverse")


def test_long_reverse_is_left_alone():
    module = one_op_module("reverse", [Shape("f32", (4, 100))], dict(dimensions=(1,)))
    assert not ReverseExpander(max_extent=64).run(module)


# ----------------------------------------------------------------------------- dynamic_update_slice

def update_slice_module(operand_dims, update_dims, starts):
    def fn(x, u):
        return tessel.lax.dynamic_update_slice(x, u, starts)
    return tessel.jit(fn).lower(np.zeros(operand_dims, np.float32), np.zeros(update_dims, np.float32)).module


@pytest.mark.parametrize("operand_dims, update_dims, starts", [
    ((5, 2, 3), (1, 2, 3), (2, 0, 0)),          # one row of a stacked scan output
    ((5, 2, 3), (1, 2, 3), (0, 0, 0)),          # first row
    ((5, 2, 3), (1, 2, 3), (4, 0, 0)),          # last row
    ((6, 7), (2, 3), (3, 2)),                   # a block inside
    ((6, 7), (2, 3), (9, -4)),                  # clamped into range
    ((4, 4), (4, 4), (1, 1)),                   # covers everything
])
def test_update_slice_expansion(operand_dims, update_dims, starts):
    module = update_slice_module(operand_dims, update_dims, starts)
    ConstantFolding().run(module)                # the starts become constants
    check_expansion(module, UpdateSliceExpander(), [small_ints(operand_dims), small_ints(update_dims)],
                    "dynamic_update_slice")


def test_update_slice_with_traced_starts_is_left_alone():
    def fn(x, u, i):
        return tessel.lax.dynamic_update_slice(x, u, (i, 0))
    module = tessel.jit(fn).lower(np.zeros((4, 3), np.float32), np.zeros((1, 3), np.float32), np.int32(1)).module
    assert not UpdateSliceExpander().run(module)


# ----------------------------------------------------------------------------- row lookups

def test_gather_of_rows_becomes_a_one_hot_dot():
    table = small_ints((6, 4))
    idx = np.array([[0, 5, 2], [9, -1, -7]], np.int32)     # out of range: gather clamps (tnp wraps -1 first)
    module = tessel.jit(lambda t, i: t[i]).lower(table, idx).module
    out = check_expansion(module, RowLookupToDot(), [table, idx], "gather")
    assert "dot_general" in opcodes(out)


def test_gradient_of_a_lookup_adds_repeated_rows():
    table = small_ints((6, 4))
    idx = np.array([[1, 1, 3], [5, 1, 0]], np.int32)        # 1 three times
    cotangent = small_ints((2, 3, 4))

    def loss(t, i, c):
        return tnp.sum(t[i] * c)
    module = tessel.jit(tessel.grad(loss)).lower(table, idx, cotangent).module
    assert "scatter" in opcodes(module)
    out = check_expansion(module, RowLookupToDot(), [table, idx, cotangent], "scatter")
    assert "gather" not in opcodes(out)


def test_scatter_skips_out_of_bounds_rows():
    attrs = dict(update_window_dims=(1,), inserted_window_dims=(0,), scatter_dims_to_operand_dims=(0,),
                 index_vector_dim=1, to_apply=reducer("add", "f32"))
    module = one_op_module("scatter", [Shape("f32", (4, 3)), Shape("s32", (5, 1)), Shape("f32", (5, 3))], attrs)
    idx = np.array([[0], [3], [4], [-1], [3]], np.int32)
    check_expansion(module, RowLookupToDot(), [small_ints((4, 3)), idx, small_ints((5, 3))], "scatter")


def test_big_tables_and_other_gathers_are_left_alone():
    module = tessel.jit(lambda t, i: t[i]).lower(np.zeros((100, 4), np.float32), np.zeros(3, np.int32)).module
    assert not RowLookupToDot(max_rows=64).run(module)
    module = tessel.jit(lambda t, i: t[:, i]).lower(np.zeros((5, 4), np.float32), np.zeros(3, np.int32)).module
    assert not RowLookupToDot().run(module)          # columns, not rows
