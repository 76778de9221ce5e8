"""Layout assignment: transposes folded into dot_general / convolution dimension numbers.

Each test is HLO text in -> checks on HLO text out, plus the interpreter on random inputs
before and after the pass.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

import tessel as ts
import tessel.numpy as tnp
from tessel.backends.interpreter import evaluate
from tessel.compiler import verifier
from tessel.compiler.ir import clone_module
from tessel.compiler.parser import parse_module
from tessel.compiler.pass_manager import PassManager
from tessel.compiler.passes.layout_assignment import LayoutAssignment
from tessel.compiler.printer import print_module


def run_pass(text: str):
    """(changed, the module before, the module after, the text after)."""
    module = parse_module(text)
    before = clone_module(module)
    changed = LayoutAssignment().run(module)
    verifier.verify(module)
    return changed, before, module, print_module(module)


def random_args(module, rng):
    return [rng.standard_normal(p.shape.dims).astype(p.shape.dtype.storage)
            for p in module.entry.parameters]


def as_tuple(value) -> tuple:
    return value if isinstance(value, tuple) else (value,)


def assert_same_results(before, after, rng, trials=3):
    for _ in range(trials):
        args = random_args(before, rng)
        want, got = as_tuple(evaluate(before, args)), as_tuple(evaluate(after, args))
        for w, g in zip(want, got):
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-5)


def line_of(text: str, name: str) -> str:
    """The printed line that defines `name`."""
    match = re.search(rf"^\s*(ROOT )?{re.escape(name)} = .*$", text, re.MULTILINE)
    assert match, f"no instruction {name} in:\n{text}"
    return match.group(0).strip()


def count(text: str, opcode: str) -> int:
    return len(re.findall(rf" {opcode}\(", text))


# ----------------------------------------------------------------------------- dot_general operands

def test_transposed_lhs_folds_into_contracting_dims(rng):
    changed, before, after, text = run_pass("""
HloModule lhs_t
ENTRY main {
  x = f32[8,4] parameter(0)
  w = f32[8,5] parameter(1)
  xt = f32[4,8] transpose(x), permutation={1,0}
  ROOT d = f32[4,5] dot_general(xt, w), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}
""")
    assert changed
    assert count(text, "transpose") == 0
    assert "dot_general(x, w), lhs_contracting_dims={0}, rhs_contracting_dims={0}" in line_of(text, "d")
    assert_same_results(before, after, rng)


def test_transposed_rhs_folds_into_contracting_dims(rng):
    changed, before, after, text = run_pass("""
HloModule rhs_t
ENTRY main {
  x = f32[4,8] parameter(0)
  w = f32[5,8] parameter(1)
  wt = f32[8,5] transpose(w), permutation={1,0}
  ROOT d = f32[4,5] dot_general(x, wt), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}
""")
    assert changed and count(text, "transpose") == 0
    assert "dot_general(x, w), lhs_contracting_dims={1}, rhs_contracting_dims={1}" in line_of(text, "d")
    assert_same_results(before, after, rng)


def test_both_operands_transposed(rng):
    changed, before, after, text = run_pass("""
HloModule both_t
ENTRY main {
  x = f32[8,4] parameter(0)
  w = f32[5,8] parameter(1)
  xt = f32[4,8] transpose(x), permutation={1,0}
  wt = f32[8,5] transpose(w), permutation={1,0}
  ROOT d = f32[4,5] dot_general(xt, wt), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}
""")
    assert changed and count(text, "transpose") == 0
    assert "dot_general(x, w), lhs_contracting_dims={0}, rhs_contracting_dims={1}" in line_of(text, "d")
    assert_same_results(before, after, rng)


def test_batch_dims_follow_the_permutation(rng):
    # xt[b, m, k] = x[k, b, m]; wt[b, k, n] = w[b, n, k]
    changed, before, after, text = run_pass("""
HloModule batched
ENTRY main {
  x = f32[6,3,4] parameter(0)
  w = f32[3,5,6] parameter(1)
  xt = f32[3,4,6] transpose(x), permutation={1,2,0}
  wt = f32[3,6,5] transpose(w), permutation={0,2,1}
  ROOT d = f32[3,4,5] dot_general(xt, wt), lhs_batching_dims={0}, rhs_batching_dims={0}, lhs_contracting_dims={2}, rhs_contracting_dims={1}
}
""")
    assert changed and count(text, "transpose") == 0
    assert ("dot_general(x, w), lhs_batching_dims={1}, rhs_batching_dims={0}, "
            "lhs_contracting_dims={0}, rhs_contracting_dims={2}") in line_of(text, "d")
    assert_same_results(before, after, rng)


def test_several_free_dims_in_order_fold(rng):
    # xt[m1, m2, k] = x[k, m1, m2]: the free dims m1, m2 keep their order
    changed, before, after, text = run_pass("""
HloModule free_in_order
ENTRY main {
  x = f32[6,3,4] parameter(0)
  w = f32[6,5] parameter(1)
  xt = f32[3,4,6] transpose(x), permutation={1,2,0}
  ROOT d = f32[3,4,5] dot_general(xt, w), lhs_contracting_dims={2}, rhs_contracting_dims={0}
}
""")
    assert changed and count(text, "transpose") == 0
    assert "dot_general(x, w), lhs_contracting_dims={0}, rhs_contracting_dims={0}" in line_of(text, "d")
    assert_same_results(before, after, rng)


def test_free_dim_order_change_is_not_folded_when_the_output_is_larger():
    # xt[m1, m2, k] = x[m2, m1, k]: folding would give the output as [m2, m1, n], and the
    # output (3*4*50 elements) is larger than the transpose it would save (24): skipped.
    text_in = """
HloModule free_reordered
ENTRY main {
  x = f32[4,3,2] parameter(0)
  w = f32[2,50] parameter(1)
  xt = f32[3,4,2] transpose(x), permutation={1,0,2}
  ROOT d = f32[3,4,50] dot_general(xt, w), lhs_contracting_dims={2}, rhs_contracting_dims={0}
}
"""
    changed, _, _, text = run_pass(text_in)
    assert not changed
    assert text == print_module(parse_module(text_in))


def test_free_dim_order_change_moves_the_transpose_to_a_smaller_output(rng):
    # The transpose of 16*16*64 elements is replaced by one of the 16*16*2 output.
    changed, before, after, text = run_pass("""
HloModule transpose_moves_to_output
ENTRY main {
  x = f32[16,16,64] parameter(0)
  w = f32[64,2] parameter(1)
  xt = f32[16,16,64] transpose(x), permutation={1,0,2}
  ROOT d = f32[16,16,2] dot_general(xt, w), lhs_contracting_dims={2}, rhs_contracting_dims={0}
}
""")
    assert changed and count(text, "transpose") == 1
    root = line_of(text, re.search(r"ROOT (\S+) =", text).group(1))
    assert re.search(r"f32\[16,16,2\] transpose\(d\.\d+\), permutation=\{1,0,2\}", root), text
    assert re.search(r"f32\[16,16,2\] dot_general\(x, w\)", text)
    assert_same_results(before, after, rng)


def test_reordering_transpose_read_elsewhere_is_kept():
    # Folding would add an output transpose and still leave xt alive: never worth it.
    changed, _, _, text = run_pass("""
HloModule shared
ENTRY main {
  x = f32[16,16,64] parameter(0)
  w = f32[64,2] parameter(1)
  xt = f32[16,16,64] transpose(x), permutation={1,0,2}
  d = f32[16,16,2] dot_general(xt, w), lhs_contracting_dims={2}, rhs_contracting_dims={0}
  ROOT t = (f32[16,16,2], f32[16,16,64]) tuple(d, xt)
}
""")
    assert not changed
    assert "dot_general(xt, w)" in line_of(text, "d")


def test_order_keeping_fold_leaves_a_transpose_read_elsewhere_in_place(rng):
    changed, before, after, text = run_pass("""
HloModule shared_exact
ENTRY main {
  x = f32[8,4] parameter(0)
  w = f32[8,5] parameter(1)
  xt = f32[4,8] transpose(x), permutation={1,0}
  d = f32[4,5] dot_general(xt, w), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  ROOT t = (f32[4,5], f32[4,8]) tuple(d, xt)
}
""")
    assert changed
    assert "dot_general(x, w)" in line_of(text, "d")
    assert "transpose(x)" in line_of(text, "xt")
    assert_same_results(before, after, rng)


def test_chain_of_transposes_folds_completely(rng):
    changed, before, after, text = run_pass("""
HloModule chain
ENTRY main {
  x = f32[4,8] parameter(0)
  w = f32[8,5] parameter(1)
  t1 = f32[8,4] transpose(x), permutation={1,0}
  t2 = f32[4,8] transpose(t1), permutation={1,0}
  ROOT d = f32[4,5] dot_general(t2, w), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}
""")
    assert changed and count(text, "transpose") == 0
    assert "dot_general(x, w), lhs_contracting_dims={1}, rhs_contracting_dims={0}" in line_of(text, "d")
    assert_same_results(before, after, rng)


# ----------------------------------------------------------------------------- transpose of a dot

def test_transposed_product_swaps_the_operands(rng):
    # (x w)^T = w^T x^T: a dot with the operands swapped, no transpose
    changed, before, after, text = run_pass("""
HloModule product_t
ENTRY main {
  x = f32[4,8] parameter(0)
  w = f32[8,5] parameter(1)
  d = f32[4,5] dot_general(x, w), lhs_contracting_dims={1}, rhs_contracting_dims={0}   # model.py:3
  ROOT t = f32[5,4] transpose(d), permutation={1,0}                                   # model.py:4
}
""")
    assert changed and count(text, "transpose") == 0
    root = line_of(text, "d")
    assert root.startswith("ROOT d = f32[5,4] dot_general(w, x), lhs_contracting_dims={0}, "
                           "rhs_contracting_dims={1}")
    assert root.endswith("# model.py:3, model.py:4")   # both user lines survive the fold
    assert_same_results(before, after, rng)


def test_transposed_batch_dims_reorder_the_batch_pairs(rng):
    changed, before, after, text = run_pass("""
HloModule batch_t
ENTRY main {
  x = f32[2,3,4,6] parameter(0)
  w = f32[2,3,6,5] parameter(1)
  d = f32[2,3,4,5] dot_general(x, w), lhs_batching_dims={0,1}, rhs_batching_dims={0,1}, lhs_contracting_dims={3}, rhs_contracting_dims={2}
  ROOT t = f32[3,2,5,4] transpose(d), permutation={1,0,3,2}
}
""")
    assert changed and count(text, "transpose") == 0
    assert ("f32[3,2,5,4] dot_general(w, x), lhs_batching_dims={1,0}, rhs_batching_dims={1,0}, "
            "lhs_contracting_dims={2}, rhs_contracting_dims={3}") in line_of(text, "d")
    assert_same_results(before, after, rng)


def test_transpose_mixing_free_dims_of_one_operand_stays():
    changed, _, _, text = run_pass("""
HloModule mixed
ENTRY main {
  x = f32[3,4,6] parameter(0)
  w = f32[6,5] parameter(1)
  d = f32[3,4,5] dot_general(x, w), lhs_contracting_dims={2}, rhs_contracting_dims={0}
  ROOT t = f32[4,3,5] transpose(d), permutation={1,0,2}
}
""")
    assert not changed and count(text, "transpose") == 1


def test_transpose_of_a_dot_with_other_users_stays():
    changed, _, _, text = run_pass("""
HloModule dot_shared
ENTRY main {
  x = f32[4,8] parameter(0)
  w = f32[8,5] parameter(1)
  d = f32[4,5] dot_general(x, w), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  t = f32[5,4] transpose(d), permutation={1,0}
  ROOT r = (f32[4,5], f32[5,4]) tuple(d, t)
}
""")
    assert not changed and count(text, "transpose") == 1


# ----------------------------------------------------------------------------- canonical dimension numbers

def test_contracting_pairs_are_sorted_by_lhs_dim(rng):
    changed, before, after, text = run_pass("""
HloModule canonical
ENTRY main {
  x = f32[4,3,2] parameter(0)
  w = f32[2,3,5] parameter(1)
  ROOT d = f32[4,5] dot_general(x, w), lhs_contracting_dims={2,1}, rhs_contracting_dims={0,1}
}
""")
    assert changed
    assert "lhs_contracting_dims={1,2}, rhs_contracting_dims={1,0}" in line_of(text, "d")
    assert_same_results(before, after, rng)
    assert not LayoutAssignment().run(after)   # canonical already: a second run changes nothing


def test_nothing_to_do_reports_unchanged():
    text_in = """
HloModule plain
ENTRY main {
  x = f32[4,8] parameter(0)
  w = f32[8,5] parameter(1)
  ROOT d = f32[4,5] dot_general(x, w), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}
"""
    changed, _, _, text = run_pass(text_in)
    assert not changed and text == print_module(parse_module(text_in))


def test_dots_in_nested_computations_are_folded(rng):
    changed, before, after, text = run_pass("""
HloModule nested
body {
  a = f32[8,4] parameter(0)
  b = f32[8,5] parameter(1)
  at = f32[4,8] transpose(a), permutation={1,0}
  ROOT d = f32[4,5] dot_general(at, b), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}
ENTRY main {
  x = f32[8,4] parameter(0)
  w = f32[8,5] parameter(1)
  ROOT c = f32[4,5] call(x, w), to_apply=body
}
""")
    assert changed and count(text, "transpose") == 0
    assert "dot_general(a, b), lhs_contracting_dims={0}" in line_of(text, "d")
    assert_same_results(before, after, rng)


# ----------------------------------------------------------------------------- convolution

CONV_NCHW_TRANSPOSED_TO_NHWC = """
HloModule conv_input_t
ENTRY main {
  x = f32[2,3,9,8] parameter(0)
  k = f32[3,3,3,4] parameter(1)
  xt = f32[2,9,8,3] transpose(x), permutation={0,2,3,1}
  ROOT c = f32[2,5,4,4] convolution(xt, k), window_strides={2,2}, padding={{1,1},{1,0}}, dim_labels="b01f_01io->b01f"
}
"""


def test_nhwc_input_made_by_transposing_nchw_reads_nchw(rng):
    changed, before, after, text = run_pass(CONV_NCHW_TRANSPOSED_TO_NHWC)
    assert changed and count(text, "transpose") == 0
    conv = line_of(text, "c")
    assert "convolution(x, k)" in conv and 'dim_labels="bf01_01io->b01f"' in conv
    assert "window_strides={2,2}, padding={{1,1},{1,0}}" in conv   # indexed by spatial dim, unchanged
    assert_same_results(before, after, rng)


def test_transposed_kernel_folds_into_kernel_labels(rng):
    # the kernel is stored OIHW and transposed to HWIO
    changed, before, after, text = run_pass("""
HloModule conv_kernel_t
ENTRY main {
  x = f32[2,7,7,6] parameter(0)
  k = f32[4,3,3,2] parameter(1)
  kt = f32[3,2,3,4] transpose(k), permutation={2,3,1,0}
  ROOT c = f32[2,5,5,4] convolution(x, kt), rhs_dilation={1,2}, feature_group_count=2, dim_labels="b01f_01io->b01f"
}
""")
    assert changed and count(text, "transpose") == 0
    assert 'convolution(x, k)' in line_of(text, "c") and 'dim_labels="b01f_oi01->b01f"' in text
    assert_same_results(before, after, rng)


def test_transposed_conv_output_folds_into_output_labels(rng):
    changed, before, after, text = run_pass("""
HloModule conv_output_t
ENTRY main {
  x = f32[2,6,6,3] parameter(0)
  k = f32[3,3,3,4] parameter(1)
  c = f32[2,4,4,4] convolution(x, k), dim_labels="b01f_01io->b01f"       # net.py:10
  ROOT t = f32[2,4,4,4] transpose(c), permutation={0,3,1,2}              # net.py:11
}
""")
    assert changed and count(text, "transpose") == 0
    conv = line_of(text, "c")
    assert conv.startswith("ROOT c = f32[2,4,4,4] convolution(x, k)")
    assert 'dim_labels="b01f_01io->bf01"' in conv and conv.endswith("# net.py:10, net.py:11")
    assert_same_results(before, after, rng)


def test_conv_with_everything_transposed(rng):
    changed, before, after, text = run_pass("""
HloModule conv_all_t
ENTRY main {
  x = f32[3,2,8,6] parameter(0)
  k = f32[3,5,3,2] parameter(1)
  xt = f32[2,8,6,3] transpose(x), permutation={1,2,3,0}
  kt = f32[3,2,3,5] transpose(k), permutation={2,3,0,1}
  c = f32[2,6,5,5] convolution(xt, kt), dim_labels="b01f_01io->b01f"
  ROOT t = f32[5,6,2,5] transpose(c), permutation={3,1,0,2}
}
""")
    assert changed and count(text, "transpose") == 0
    assert 'convolution(x, k), dim_labels="fb01_io01->f0b1"' in text
    assert_same_results(before, after, rng)


def test_conv_output_transpose_with_other_users_stays():
    changed, _, _, text = run_pass("""
HloModule conv_shared
ENTRY main {
  x = f32[2,6,6,3] parameter(0)
  k = f32[3,3,3,4] parameter(1)
  c = f32[2,4,4,4] convolution(x, k), dim_labels="b01f_01io->b01f"
  t = f32[2,4,4,4] transpose(c), permutation={0,3,1,2}
  ROOT r = (f32[2,4,4,4], f32[2,4,4,4]) tuple(c, t)
}
""")
    assert not changed and count(text, "transpose") == 1


# ----------------------------------------------------------------------------- in a pipeline

def test_runs_under_the_pass_manager_and_is_idempotent(rng):
    module = parse_module(CONV_NCHW_TRANSPOSED_TO_NHWC)
    before = clone_module(module)
    report = PassManager("layout", [LayoutAssignment(), LayoutAssignment()], disabled=()).run(module)
    assert [r.changed for r in report.records] == [True, False]
    assert_same_results(before, module, rng)


@pytest.mark.parametrize("perm", [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)])
def test_every_lhs_permutation_of_a_batched_dot_keeps_results(perm, rng):
    # Whatever the pass decides for each permutation, the values must not change.
    logical = (2, 3, 4)                       # b, m, k
    source = [0] * 3
    for i, p in enumerate(perm):
        source[p] = logical[i]
    dims = ",".join(map(str, source))
    text_in = f"""
HloModule perm
ENTRY main {{
  x = f32[{dims}] parameter(0)
  w = f32[2,4,5] parameter(1)
  xt = f32[2,3,4] transpose(x), permutation={{{','.join(map(str, perm))}}}
  ROOT d = f32[2,3,5] dot_general(xt, w), lhs_batching_dims={{0}}, rhs_batching_dims={{0}}, lhs_contracting_dims={{2}}, rhs_contracting_dims={{1}}
}}
"""
    changed, before, after, text = run_pass(text_in)
    assert changed and count(text, "transpose") == 0   # one free dim: its order cannot change
    assert_same_results(before, after, rng)


@pytest.mark.parametrize("perm", [(0, 1, 2, 3), (0, 2, 1, 3), (3, 2, 1, 0), (1, 3, 0, 2), (2, 0, 3, 1),
                                  (3, 0, 2, 1), (1, 2, 3, 0)])
def test_lhs_with_two_free_dims_folds_with_or_without_an_output_transpose(perm, rng):
    # The contracting dim (16) is large and the rhs free dim (2) small, so folding is
    # always cheaper, with an output transpose when the free dims m1, m2 swap places.
    logical = (2, 3, 4, 16)                   # b, m1, m2, k
    source = [0] * 4
    for i, p in enumerate(perm):
        source[p] = logical[i]
    text_in = f"""
HloModule perm2
ENTRY main {{
  x = f32[{','.join(map(str, source))}] parameter(0)
  w = f32[2,16,2] parameter(1)
  xt = f32[2,3,4,16] transpose(x), permutation={{{','.join(map(str, perm))}}}
  ROOT d = f32[2,3,4,2] dot_general(xt, w), lhs_batching_dims={{0}}, rhs_batching_dims={{0}}, lhs_contracting_dims={{3}}, rhs_contracting_dims={{1}}
}}
"""
    changed, before, after, text = run_pass(text_in)
    assert changed and "transpose(x)" not in text
    free_order_kept = perm[1] < perm[2]
    assert count(text, "transpose") == (0 if free_order_kept else 1)
    assert_same_results(before, after, rng)


def test_gram_matrix_reads_the_shared_transpose_source_on_both_sides(rng):
    changed, before, after, text = run_pass("""
HloModule gram
ENTRY main {
  x = f32[8,4] parameter(0)
  xt = f32[4,8] transpose(x), permutation={1,0}
  ROOT d = f32[4,4] dot_general(xt, xt), lhs_contracting_dims={1}, rhs_contracting_dims={1}
}
""")
    assert changed and count(text, "transpose") == 0
    assert "dot_general(x, x), lhs_contracting_dims={0}, rhs_contracting_dims={0}" in line_of(text, "d")
    assert_same_results(before, after, rng)


def test_traced_attention_block_folds_the_weight_transpose_and_keeps_results(rng):
    def block(q, k, v, w):
        p = ts.nn.softmax(tnp.einsum("bqhd,bkhd->bhqk", q, k) / 4.0, axis=-1)
        return tnp.einsum("bhqk,bkhd->bqhd", p, v).reshape(2, 8, 32) @ w.T

    shapes = [(2, 8, 4, 8)] * 3 + [(16, 32)]
    args = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    traced = ts.jit(block).lower(*args).module
    module = clone_module(traced)
    assert LayoutAssignment().run(module)
    verifier.verify(module)
    text = print_module(module)
    assert "transpose(w)" not in text and re.search(r"dot_general\(reshape[.\d]*, w\)", text)
    # [b,h,q,d] -> [b,q,h,d] interleaves a batch dim with a free dim: no dot produces that
    assert count(text, "transpose") == 1
    np.testing.assert_allclose(evaluate(module, args)[0], evaluate(traced, args)[0], rtol=1e-5, atol=1e-5)
