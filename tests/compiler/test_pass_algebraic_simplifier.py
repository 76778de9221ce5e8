"""The algebraic simplifier: HLO text in, checks on HLO text out, and the interpreter's
results before and after compared bit for bit on random inputs (inf, NaN and -0.0
included). Every rule of the table has a case here, and every case names a rule."""
from __future__ import annotations

import re

import numpy as np
import pytest

import tessel
import tessel.numpy as tnp
from tessel.backends.interpreter import evaluate
from tessel.compiler import dtypes, verifier
from tessel.compiler.ir import SourceLoc, clone_module
from tessel.compiler.parser import parse_module
from tessel.compiler.pass_manager import FixedPoint, PassManager
from tessel.compiler.passes.algebraic_simplifier import RULES, AlgebraicSimplifier, holds_exactly
from tessel.compiler.passes.constant_folding import ConstantFolding
from tessel.compiler.passes.cse import CSE
from tessel.compiler.passes.dce import DCE
from tessel.compiler.printer import print_module


# ----------------------------------------------------------------------------- helpers

def hlo(body: str, before: str = "") -> str:
    return f"HloModule m\n{before}ENTRY main {{\n{body}\n}}\n"


def random_value(shape, rng):
    if shape.is_tuple:
        return tuple(random_value(s, rng) for s in shape.elements)
    dt = shape.dtype
    if dt.is_pred:
        return rng.random(shape.dims) < 0.5
    if dt.is_integer:
        info = np.iinfo(dt.storage)
        return np.asarray(rng.integers(max(info.min, -1000), min(info.max, 1000), shape.dims,
                                       endpoint=True), dtype=dt.storage)
    values = rng.standard_normal(shape.dims) * 4
    specials = rng.random(shape.dims) < 0.2
    values[specials] = rng.choice([np.inf, -np.inf, np.nan, 0.0, -0.0], specials.sum())
    return dtypes.canonicalize(values, dt)


def leaves(value):
    return [leaf for v in value for leaf in leaves(v)] if isinstance(value, tuple) else [value]


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal values, NaN where NaN, and the same sign of zero."""
    if a.dtype != b.dtype or a.shape != b.shape or not np.array_equal(a, b, equal_nan=a.dtype.kind == "f"):
        return False
    if a.dtype.kind == "f":
        numbers = ~np.isnan(a)
        return np.array_equal(np.signbit(a[numbers]), np.signbit(b[numbers]))
    return True


def assert_same_results(before, after, rng, exact=True, trials=3):
    for _ in range(trials):
        args = [random_value(p.shape, rng) for p in before.entry.parameters]
        want, got = leaves(evaluate(before, args)), leaves(evaluate(after, args))
        assert len(want) == len(got)
        for w, g in zip(want, got):
            if exact:
                assert same_bits(w, g), f"before:\n{w}\nafter:\n{g}"
            else:
                np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def simplify(text: str, rng, exact=True, **options):
    """Parse, simplify, verify, compare with the original; the pass and the text out."""
    before = parse_module(text)
    after = clone_module(before)
    simplifier = AlgebraicSimplifier(**options)
    simplifier.run(after)
    verifier.verify(after)
    assert_same_results(before, after, rng, exact)
    return simplifier, print_module(after, full_constants=True)


def ops_in(text: str) -> list[str]:
    return re.findall(r" ([a-z_]+)\(", text)


# ----------------------------------------------------------------------------- one case per rule

# rule name -> (HLO text, ops that must be gone, ops that must remain, options, exact)
CASES = {
    "add_zero": (hlo("""
  x = s32[4] parameter(0)
  y = f32[4] parameter(1)
  zero = s32[] constant(0)
  zeros = s32[4] broadcast_in_dim(zero), broadcast_dimensions={}
  a = s32[4] add(x, zeros)
  b = s32[4] add(zeros, a)
  negative_zeros = f32[4] constant({-0.0, -0.0, -0.0, -0.0})
  c = f32[4] add(negative_zeros, y)
  ROOT t = (s32[4], f32[4]) tuple(b, c)"""), ["add"], [], {}),
    "subtract_zero": (hlo("""
  x = f32[20] parameter(0)
  zero = f32[] constant(0)
  zeros = f32[20] broadcast_in_dim(zero), broadcast_dimensions={}
  ROOT s = f32[20] subtract(x, zeros)"""), ["subtract"], [], {}),
    "subtract_self": (hlo("""
  x = s32[3] parameter(0)
  ROOT s = s32[3] subtract(x, x)"""), ["subtract"], ["constant"], {}),
    "multiply_one": (hlo("""
  x = f32[3] parameter(0)
  one = f32[3] constant({1, 1, 1})
  a = f32[3] multiply(x, one)
  ROOT b = f32[3] multiply(one, a)"""), ["multiply"], [], {}),
    "multiply_zero": (hlo("""
  x = u8[3] parameter(0)
  zero = u8[3] constant({0, 0, 0})
  ROOT m = u8[3] multiply(zero, x)"""), ["multiply"], [], {}),
    "divide_one": (hlo("""
  x = s32[3] parameter(0)
  one = s32[] constant(1)
  ones = s32[3] broadcast_in_dim(one), broadcast_dimensions={}
  ROOT d = s32[3] divide(x, ones)"""), ["divide"], [], {}),
    "divide_power_of_two": (hlo("""
  x = f32[40] parameter(0)
  y = bf16[2] parameter(1)
  quarter = f32[] constant(0.25)
  quarters = f32[40] broadcast_in_dim(quarter), broadcast_dimensions={}
  a = f32[40] divide(x, quarters)
  eight = bf16[2] constant({8, 8})
  b = bf16[2] divide(y, eight)
  ROOT t = (f32[40], bf16[2]) tuple(a, b)"""), ["divide"], ["multiply"], {}),
    # x**2, x**0, x**1, x**-1 for floats and integer x**4: all exact (float x**3, x**4 below)
    "power_small_integer": (hlo("""
  x = f32[40] parameter(0)
  y = f64[3] parameter(1)
  i = s32[3] parameter(2)
  two = f32[] constant(2)
  twos = f32[40] broadcast_in_dim(two), broadcast_dimensions={}
  a = f32[40] power(x, twos)
  zeros = f64[3] constant({-0.0, -0.0, -0.0})
  b = f64[3] power(y, zeros)
  ones = f64[3] constant({1, 1, 1})
  c = f64[3] power(y, ones)
  minus_ones = f64[3] constant({-1, -1, -1})
  d = f64[3] power(y, minus_ones)
  fours = s32[3] constant({4, 4, 4})
  e = s32[3] power(i, fours)
  ROOT t = (f32[40], f64[3], f64[3], f64[3], s32[3]) tuple(a, b, c, d, e)"""), ["power"], ["multiply", "divide"], {}),
    "same_operands": (hlo("""
  x = f32[3] parameter(0)
  p = pred[3] parameter(1)
  a = f32[3] maximum(x, x)
  b = f32[3] minimum(a, a)
  c = pred[3] and(p, p)
  d = pred[3] or(c, c)
  ROOT t = (f32[3], pred[3]) tuple(b, d)"""), ["maximum", "minimum", "and", "or"], [], {}),
    "compare_self": (hlo("""
  x = s32[3] parameter(0)
  p = pred[3] parameter(1)
  a = pred[3] compare(x, x), direction=LE
  b = pred[3] compare(p, p), direction=NE
  ROOT t = (pred[3], pred[3]) tuple(a, b)"""), ["compare"], [], {}),
    "double_negation": (hlo("""
  x = f32[3] parameter(0)
  n = f32[3] negate(x)
  ROOT m = f32[3] negate(n)"""), ["negate"], [], {}),
    "double_not": (hlo("""
  x = s32[3] parameter(0)
  p = pred[3] parameter(1)
  a = s32[3] not(x)
  b = s32[3] not(a)
  c = pred[3] not(p)
  d = pred[3] not(c)
  ROOT t = (s32[3], pred[3]) tuple(b, d)"""), ["not"], [], {}),
    "abs_abs": (hlo("""
  x = s8[3] parameter(0)
  a = s8[3] abs(x)
  ROOT b = s8[3] abs(a)"""), [], ["abs"], {}),
    "transpose_identity": (hlo("""
  x = f32[2,3] parameter(0)
  ROOT t = f32[2,3] transpose(x), permutation={0,1}"""), ["transpose"], [], {}),
    "reshape_identity": (hlo("""
  x = f32[2,3] parameter(0)
  ROOT r = f32[2,3] reshape(x)"""), ["reshape"], [], {}),
    "broadcast_identity": (hlo("""
  x = f32[2,3] parameter(0)
  ROOT b = f32[2,3] broadcast_in_dim(x), broadcast_dimensions={0,1}"""), ["broadcast_in_dim"], [], {}),
    "slice_identity": (hlo("""
  x = f32[2,3] parameter(0)
  ROOT s = f32[2,3] slice(x), start_indices={0,0}, limit_indices={2,3}, strides={1,1}"""), ["slice"], [], {}),
    "convert_identity": (hlo("""
  x = bf16[3] parameter(0)
  ROOT c = bf16[3] convert(x)"""), ["convert"], [], {}),
    "reverse_identity": (hlo("""
  x = f32[1,3] parameter(0)
  ROOT r = f32[1,3] reverse(x), dimensions={0}"""), ["reverse"], [], {}),
    "pad_identity": (hlo("""
  x = f32[2,3] parameter(0)
  z = f32[] constant(0)
  ROOT p = f32[2,3] pad(x, z), edge_padding_low={0,0}, edge_padding_high={0,0}, interior_padding={0,0}"""),
        ["pad"], [], {}),
    "dynamic_slice_identity": (hlo("""
  x = f32[2,3] parameter(0)
  i = s32[] parameter(1)
  j = s32[] parameter(2)
  ROOT d = f32[2,3] dynamic_slice(x, i, j), slice_sizes={2,3}"""), ["dynamic_slice"], [], {}),
    "concatenate_single": (hlo("""
  x = f32[2,3] parameter(0)
  ROOT c = f32[2,3] concatenate(x), dimension=1"""), ["concatenate"], [], {}),
    "get_of_tuple": (hlo("""
  x = f32[2] parameter(0)
  y = s32[3] parameter(1)
  t = (f32[2], s32[3]) tuple(x, y)
  ROOT g = s32[3] get_tuple_element(t), index=1"""), ["get_tuple_element"], [], {}),
    "transpose_transpose": (hlo("""
  x = f32[2,3,4] parameter(0)
  a = f32[3,4,2] transpose(x), permutation={1,2,0}
  b = f32[2,3,4] transpose(a), permutation={2,0,1}
  c = f32[4,3,2] transpose(a), permutation={1,0,2}
  ROOT t = (f32[2,3,4], f32[4,3,2]) tuple(b, c)"""), [], [], {}),
    "reshape_reshape": (hlo("""
  x = f32[2,3,4] parameter(0)
  a = f32[6,4] reshape(x)
  b = f32[24] reshape(a)
  c = f32[2,3,4] reshape(a)
  ROOT t = (f32[24], f32[2,3,4]) tuple(b, c)"""), [], [], {}),
    "broadcast_broadcast": (hlo("""
  x = f32[3] parameter(0)
  a = f32[3,4] broadcast_in_dim(x), broadcast_dimensions={0}
  ROOT b = f32[4,2,3] broadcast_in_dim(a), broadcast_dimensions={2,0}"""), [], ["broadcast_in_dim"], {}),
    "broadcast_splat_constant": (hlo("""
  x = f32[2,3] parameter(0)
  c = f32[] constant(2.5)
  b = f32[2,3] broadcast_in_dim(c), broadcast_dimensions={}
  ROOT m = f32[2,3] maximum(x, b)"""), ["broadcast_in_dim"], ["maximum"], {}),
    "slice_slice": (hlo("""
  x = f32[10,7] parameter(0)
  a = f32[4,6] slice(x), start_indices={1,1}, limit_indices={9,7}, strides={2,1}
  ROOT b = f32[3,2] slice(a), start_indices={1,0}, limit_indices={4,5}, strides={1,3}"""), [], ["slice"], {}),
    "reverse_reverse": (hlo("""
  x = f32[2,3,4] parameter(0)
  a = f32[2,3,4] reverse(x), dimensions={0,1}
  b = f32[2,3,4] reverse(a), dimensions={1,2}
  c = f32[2,3,4] reverse(a), dimensions={1,0}
  ROOT t = (f32[2,3,4], f32[2,3,4]) tuple(b, c)"""), [], [], {}),
    "slice_concatenate": (hlo("""
  x = f32[2,3] parameter(0)
  y = f32[4,3] parameter(1)
  z = f32[1,3] parameter(2)
  c = f32[7,3] concatenate(x, y, z), dimension=0
  a = f32[2,2] slice(c), start_indices={3,0}, limit_indices={5,3}, strides={1,2}
  b = f32[4,3] slice(c), start_indices={1,0}, limit_indices={5,3}
  ROOT t = (f32[2,2], f32[4,3]) tuple(a, b)"""), [], ["slice"], {}),
    "concatenate_concatenate": (hlo("""
  x = f32[2,3] parameter(0)
  y = f32[1,3] parameter(1)
  c = f32[3,3] concatenate(x, y), dimension=0
  d = f32[3,6] concatenate(c, c), dimension=1
  ROOT e = f32[6,3] concatenate(y, c, x), dimension=0"""), [], ["concatenate"], {}),
    "slice_broadcast_scalar": (hlo("""
  p = f32[1] parameter(0)
  x = f32[] reshape(p)
  b = f32[5,4] broadcast_in_dim(x), broadcast_dimensions={}
  ROOT s = f32[2,4] slice(b), start_indices={1,0}, limit_indices={5,4}, strides={2,1}"""), ["slice"], [], {}),
    "convert_convert": (hlo("""
  x = s32[3] parameter(0)
  y = f32[3] parameter(1)
  a = f64[3] convert(x)
  b = f32[3] convert(a)
  c = f64[3] convert(y)
  d = f32[3] convert(c)
  ROOT t = (f32[3], f32[3]) tuple(b, d)"""), [], [], {}),
    "dynamic_slice_constant_starts": (hlo("""
  x = f32[5,6] parameter(0)
  i = s32[] constant(-3)
  j = u32[] constant(10)
  ROOT d = f32[2,3] dynamic_slice(x, i, j), slice_sizes={2,3}"""), ["dynamic_slice"], ["slice"], {}),
    "select_constant_predicate": (hlo("""
  x = f32[4] parameter(0)
  y = f32[4] parameter(1)
  p = pred[] constant(true)
  ps = pred[4] broadcast_in_dim(p), broadcast_dimensions={}
  a = f32[4] select(ps, x, y)
  q = pred[4] constant({false, false, false, false})
  ROOT b = f32[4] select(q, a, y)"""), ["select"], [], {}),
    "select_same_branches": (hlo("""
  p = pred[4] parameter(0)
  x = f32[4] parameter(1)
  ROOT s = f32[4] select(p, x, x)"""), ["select"], [], {}),
    "dot_transposed_operand": (hlo("""
  a = f32[5,3] parameter(0)
  b = f32[4,5] parameter(1)
  at = f32[3,5] transpose(a), permutation={1,0}
  bt = f32[5,4] transpose(b), permutation={1,0}
  ROOT d = f32[3,4] dot_general(at, bt), lhs_contracting_dims={1}, rhs_contracting_dims={0}"""),
        ["transpose"], ["dot_general"], {}, False),
}


def test_every_rule_has_a_case_and_every_case_a_rule():
    assert sorted(CASES) == sorted(RULES.names)


@pytest.mark.parametrize("rule", RULES.names)
def test_rule(rule, rng):
    text, gone, remaining, options, *exact = CASES[rule]
    simplifier, out = simplify(text, rng, exact=exact[0] if exact else True, **options)
    assert rule in simplifier.fired, f"{rule} did not fire; fired: {dict(simplifier.fired)}\n{out}"
    for op in gone:
        assert op not in ops_in(out), f"{op} is still there:\n{out}"
    for op in remaining:
        assert op in ops_in(out), f"{op} is gone:\n{out}"


# ----------------------------------------------------------------------------- what the rules produce

def test_compositions_produce_one_op_with_the_composed_attributes(rng):
    _, out = simplify(CASES["transpose_transpose"][0], rng)
    assert ops_in(out).count("transpose") == 1 and "permutation={2,1,0}" in out
    _, out = simplify(CASES["reshape_reshape"][0], rng)
    assert ops_in(out).count("reshape") == 1 and "f32[24] reshape(x)" in out
    _, out = simplify(CASES["broadcast_broadcast"][0], rng)
    assert "f32[4,2,3] broadcast_in_dim(x), broadcast_dimensions={2}" in out
    _, out = simplify(CASES["slice_slice"][0], rng)
    assert "slice(x), start_indices={3,1}, limit_indices={8,5}, strides={2,3}" in out
    _, out = simplify(CASES["reverse_reverse"][0], rng)
    assert ops_in(out).count("reverse") == 1 and "reverse(x), dimensions={0,2}" in out
    _, out = simplify(CASES["slice_concatenate"][0], rng)
    assert "f32[2,2] slice(y), start_indices={1,0}, limit_indices={3,3}, strides={1,2}" in out
    assert ops_in(out).count("concatenate") == 1 and "concatenate(slice" in out   # b: rows of x and y
    _, out = simplify(CASES["concatenate_concatenate"][0], rng)
    assert "f32[6,3] concatenate(y, x, y, x), dimension=0" in out
    _, out = simplify(CASES["slice_broadcast_scalar"][0], rng)
    assert "f32[2,4] broadcast_in_dim(x), broadcast_dimensions={}" in out
    _, out = simplify(CASES["convert_convert"][0], rng)
    assert ops_in(out).count("convert") == 1 and "f32[3] convert(x)" in out
    _, out = simplify(CASES["dynamic_slice_constant_starts"][0], rng)
    assert "slice(x), start_indices={0,3}, limit_indices={2,6}" in out   # clamped like dynamic_slice
    _, out = simplify(CASES["divide_power_of_two"][0], rng)
    assert "f32[] constant(4.0)" in out and "bf16[2] constant({0.125, 0.125})" in out
    _, out = simplify(CASES["dot_transposed_operand"][0], rng, exact=False)
    assert "dot_general(a, b), lhs_contracting_dims={0}, rhs_contracting_dims={1}" in out
    _, out = simplify(CASES["abs_abs"][0], rng)
    assert ops_in(out).count("abs") == 1


def test_small_splats_become_constants_big_ones_stay_broadcasts(rng):
    _, out = simplify(hlo("""
  x = s32[4,5] parameter(0)
  y = pred[4,5] parameter(1)
  a = pred[4,5] compare(x, x), direction=EQ
  ROOT b = pred[4,5] and(a, y)"""), rng)
    assert "pred[] constant(true)" in out and "pred[4,5] broadcast_in_dim" in out
    _, out = simplify(CASES["broadcast_splat_constant"][0].replace("2,3", "5,5"), rng)
    assert "broadcast_in_dim" in out


def test_dot_with_transposed_batch_and_contracting_dims(rng):
    # batch dim 0 and contracting dims 2,3 of `at` are dims 1 and 3,0 of `a`; the free dim
    # (1 of `at`, 2 of `a`) keeps its place.
    _, out = simplify(hlo("""
  a = f32[4,2,3,5] parameter(0)
  b = f32[2,5,4,6] parameter(1)
  at = f32[2,3,5,4] transpose(a), permutation={1,2,3,0}
  ROOT d = f32[2,3,6] dot_general(at, b), lhs_batching_dims={0}, rhs_batching_dims={0}, lhs_contracting_dims={2,3}, rhs_contracting_dims={1,2}"""),
                      rng, exact=False)
    assert "transpose" not in ops_in(out)
    assert "lhs_batching_dims={1}" in out and "lhs_contracting_dims={3,0}" in out


def test_source_locations_pass_to_the_replacement(rng):
    text = hlo("""
  x = f32[2,3,4] parameter(0)
  a = f32[3,4,2] transpose(x), permutation={1,2,0}     # model.py:3
  ROOT b = f32[4,3,2] transpose(a), permutation={1,0,2}  # model.py:4""")
    m = parse_module(text)
    AlgebraicSimplifier().run(m)
    assert m.entry.root.opcode == "transpose" and m.entry.root.locs == (SourceLoc("model.py", 4),)


def test_rules_apply_inside_nested_computations_and_keep_their_parameters(rng):
    text = hlo("""
  x = f32[4,3] parameter(0)
  z = f32[] constant(0)
  ROOT r = f32[4] reduce(x, z), dimensions={1}, to_apply=sum""", before="""
sum {
  a = f32[] parameter(0)
  b = f32[] parameter(1)
  n = f32[] negate(b)
  nn = f32[] negate(n)
  ROOT s = f32[] add(a, nn)
}
""")
    simplifier, out = simplify(text, rng)
    assert simplifier.fired["double_negation"] == 1
    assert "ROOT s = f32[] add(a, b)" in out and "b = f32[] parameter(1)" in out


def test_side_effecting_ops_are_kept(rng):
    text = hlo("""
  x = f32[3] parameter(0)
  a = f32[3] all_reduce(x), reduction=sum
  n = f32[3] negate(a)
  ROOT m = f32[3] negate(n)""")
    _, out = simplify(text, rng)
    assert ops_in(out) == ["parameter", "all_reduce"]


# ----------------------------------------------------------------------------- what is not rewritten

NOT_EXACT = {
    # x * 0 is NaN for x = inf or NaN, and -0.0 for negative x
    "float times zero": hlo("""
  x = f32[3] parameter(0)
  zero = f32[3] constant({0, 0, 0})
  ROOT m = f32[3] multiply(x, zero)"""),
    # -0.0 + 0.0 = +0.0, not -0.0
    "float plus positive zero": hlo("""
  x = f32[3] parameter(0)
  zeros = f32[3] constant({0, 0, 0})
  ROOT a = f32[3] add(x, zeros)"""),
    # x - (-0.0) = x + 0.0
    "float minus negative zero": hlo("""
  x = f32[3] parameter(0)
  zero = f32[3] constant({-0.0, -0.0, -0.0})
  ROOT s = f32[3] subtract(x, zero)"""),
    # inf - inf is NaN
    "float minus itself": hlo("""
  x = f32[3] parameter(0)
  ROOT s = f32[3] subtract(x, x)"""),
    # NaN != NaN
    "float compared with itself": hlo("""
  x = f32[3] parameter(0)
  ROOT c = pred[3] compare(x, x), direction=EQ"""),
}


@pytest.mark.parametrize("name", NOT_EXACT)
def test_inexact_identities_are_left_alone_by_default(name, rng):
    text = NOT_EXACT[name]
    simplifier, out = simplify(text, rng)
    assert not simplifier.fired and out == print_module(parse_module(text), full_constants=True)


@pytest.mark.parametrize("name, options", [
    ("float times zero", {"assume_finite": True}),
    ("float minus itself", {"assume_finite": True}),
    ("float compared with itself", {"assume_finite": True}),
    ("float plus positive zero", {"signed_zeros": False}),
    ("float minus negative zero", {"signed_zeros": False}),
])
def test_options_enable_them(name, options):
    m = parse_module(NOT_EXACT[name])
    assert AlgebraicSimplifier(**options).run(m)
    assert m.entry.root.opcode in ("parameter", "constant", "broadcast_in_dim")


@pytest.mark.parametrize("body", [
    # reordering the free dims of the lhs would reorder the result's dims
    """  a = f32[4,3,5] parameter(0)
  b = f32[5,6] parameter(1)
  at = f32[3,4,5] transpose(a), permutation={1,0,2}
  ROOT d = f32[3,4,6] dot_general(at, b), lhs_contracting_dims={2}, rhs_contracting_dims={0}""",
    # multiplying by a power of two is already as cheap as it gets
    """  x = f32[3] parameter(0)
  two = f32[3] constant({2, 2, 2})
  ROOT m = f32[3] multiply(x, two)""",
    # 1/3 is not exact
    """  x = f32[3] parameter(0)
  three = f32[3] constant({3, 3, 3})
  ROOT d = f32[3] divide(x, three)""",
    # 1 / 2^-149 (the smallest f32) overflows
    """  x = f32[3] parameter(0)
  tiny = f32[3] constant({1e-45, 1e-45, 1e-45})
  ROOT d = f32[3] divide(x, tiny)""",
    # integer division by a power of two truncates: not a multiplication
    """  x = s32[3] parameter(0)
  four = s32[3] constant({4, 4, 4})
  ROOT d = s32[3] divide(x, four)""",
    # f16 rounds f32 values; f32 -> s32 drops fractions
    """  x = f32[3] parameter(0)
  a = f16[3] convert(x)
  b = f32[3] convert(a)
  c = s32[3] convert(x)
  d = f32[3] convert(c)
  ROOT t = (f32[3], f32[3]) tuple(b, d)""",
    # exp(log x) and log(exp x) round twice
    """  x = f32[3] parameter(0)
  a = f32[3] log(x)
  b = f32[3] exp(a)
  c = f32[3] log(b)
  ROOT t = (f32[3], f32[3]) tuple(b, c)""",
    # a select whose predicate is not all-true or all-false
    """  x = f32[2] parameter(0)
  y = f32[2] parameter(1)
  p = pred[2] constant({true, false})
  ROOT s = f32[2] select(p, x, y)""",
])
def test_not_rewritten(body, rng):
    simplifier, out = simplify(hlo(body), rng)
    assert not simplifier.fired, dict(simplifier.fired)


@pytest.mark.parametrize("src, mid, exact", [
    ("s8", "f16", True), ("u8", "bf16", True), ("s32", "f32", False), ("s32", "f64", True),
    ("u32", "s64", True), ("s32", "u32", False), ("s64", "f64", False), ("f16", "f32", True),
    ("bf16", "f32", True), ("f16", "bf16", False), ("bf16", "f16", False), ("f32", "f64", True),
    ("pred", "u8", True), ("u8", "pred", False), ("f32", "s64", False),
])
def test_holds_exactly(src, mid, exact):
    assert holds_exactly(dtypes.from_any(src), dtypes.from_any(mid)) is exact


def test_holds_exactly_agrees_with_converting_every_value():
    # Every s8, u8 and f16 value (NaNs aside) converted to each middle type.
    finite_f16 = np.arange(2 ** 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    for src, values in (("s8", np.arange(-128, 128).astype(np.int8)),
                        ("u8", np.arange(256).astype(np.uint8)),
                        ("f16", finite_f16[~np.isnan(finite_f16)])):
        for mid in ("f16", "bf16", "f32", "s8", "u8", "s32"):
            dt = dtypes.from_any(mid)
            with np.errstate(all="ignore"):
                converted = dtypes.canonicalize(values, dt).astype(np.float64)
            same = np.array_equal(converted, values.astype(np.float64))
            assert same == holds_exactly(dtypes.from_any(src), dt), (src, mid)


# ----------------------------------------------------------------------------- simplification to a fixed point

def simplification(max_iterations=8):
    return PassManager("simplify", [FixedPoint("simplify", [AlgebraicSimplifier(), ConstantFolding(),
                                                            CSE(), DCE()], max_iterations)])


def instruction_count(module) -> int:
    return sum(len(c.instructions) for c in module.computations)


def test_the_four_passes_reach_a_fixed_point_together(rng):
    # Each pass exposes work for the next: folding makes the 0 that add_zero needs, the
    # duplicate transposes fold into one dot only after CSE, DCE drops what is left.
    text = hlo("""
  a = f32[3,5] parameter(0)
  b = f32[5,4] parameter(1)
  one = s32[] constant(1)
  two = s32[] constant(2)
  three = s32[] constant(3)
  sum = s32[] add(one, two)
  zero = s32[] subtract(sum, three)
  i = s32[] parameter(2)
  j = s32[] add(i, zero)
  at = f32[5,3] transpose(a), permutation={1,0}
  att = f32[3,5] transpose(at), permutation={1,0}
  d1 = f32[3,4] dot_general(att, b), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  d2 = f32[3,4] dot_general(a, b), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  s = f32[3,4] add(d1, d2)
  k = s32[] multiply(j, j)
  ROOT t = (f32[3,4], s32[]) tuple(s, k)""", before="""
unused {
  p = f32[] parameter(0)
  ROOT n = f32[] negate(p)
}
""")
    before = parse_module(text)
    after = clone_module(before)
    report = simplification().run(after)
    assert not report.caps_hit
    out = print_module(after)
    assert_same_results(before, after, rng)
    assert ops_in(out) == ["parameter", "parameter", "parameter", "dot_general", "add", "multiply", "tuple"]
    assert "unused" not in out
    assert "multiply(i, i)" in out and "add(d1, d1)" in out
    assert not simplification().run(after).records[-1].changed      # a fixed point: nothing left


def test_simplifies_a_traced_attention_block_and_keeps_its_results(rng):
    def attention(x, wq, wk, wv):
        q, k, v = x @ wq, x @ wk, x @ wv
        scores = q @ k.T / np.float32(4.0) + tnp.zeros((8, 8), dtype=np.float32)
        weights = tnp.exp(scores - tnp.max(scores, axis=-1, keepdims=True))
        weights = weights / tnp.sum(weights, axis=-1, keepdims=True)
        return (weights @ v).T.T.reshape(8, 16).reshape(2, 4, 16)

    shapes = [tessel.ShapeDtype((8, 16), "float32")] * 1 + [tessel.ShapeDtype((16, 16), "float32")] * 3
    traced = tessel.jit(attention).lower(*shapes).module
    optimized = clone_module(traced)
    report = simplification().run(optimized)
    assert not report.caps_hit
    assert instruction_count(optimized) < instruction_count(traced)
    out = print_module(optimized)
    assert "transpose" not in ops_in(out)          # k.T folded into the dot, .T.T cancelled
    assert "divide" in ops_in(out) and "f32[] constant(0.25)" in out    # only / 4 became * 0.25
    assert ops_in(out).count("constant") == ops_in(print_module(traced)).count("constant") - 1
    assert_same_results(traced, optimized, rng, exact=False)


# ----------------------------------------------------------------------------- powers by multiplies, against NumPy

def float_power_text(dtype: str, n: int, size: int = 5) -> str:
    return hlo(f"""
  x = {dtype}[{size}] parameter(0)
  n = {dtype}[] constant({n})
  ns = {dtype}[{size}] broadcast_in_dim(n), broadcast_dimensions={{}}
  ROOT p = {dtype}[{size}] power(x, ns)""")


@pytest.mark.parametrize("n, multiplies", [(2, 1), (3, 2), (4, 2)])
def test_powers_take_square_and_multiply_steps(n, multiplies, rng):
    simplifier, out = simplify(float_power_text("f32", n), rng, exact=n == 2)
    assert simplifier.fired["power_small_integer"] == 1
    assert ops_in(out).count("multiply") == multiplies and "power" not in ops_in(out)
    assert "multiply(x, x)" in out


@pytest.mark.parametrize("n", [3, 4])
def test_float_powers_false_keeps_the_pass_bit_exact(n, rng):
    simplifier, out = simplify(float_power_text("f32", n), rng, float_powers=False)
    assert "power_small_integer" not in simplifier.fired and "power" in ops_in(out)
    # integer x**3 is exact (wrapping multiplies), so float_powers does not hold it back
    simplifier, out = simplify(hlo("""
  x = s32[3] parameter(0)
  n = s32[3] constant({3, 3, 3})
  ROOT p = s32[3] power(x, n)"""), rng, float_powers=False)
    assert simplifier.fired["power_small_integer"] == 1


@pytest.mark.parametrize("body", [
    # 5 = three multiplies, three roundings; 2.5 is no integer; -2 is 1/(x*x), two roundings
    float_power_text("f32", 5), float_power_text("f32", 2.5), float_power_text("f64", -2),
    # integer x**-1 is 1, -1 or 0 (0 for x = 0 too): not the integer division 1 / x
    """  x = s32[3] parameter(0)
  n = s32[3] constant({-1, -1, -1})
  ROOT p = s32[3] power(x, n)""",
    # exponents that differ per element
    """  x = f32[3] parameter(0)
  n = f32[3] constant({2, 2, 3})
  ROOT p = f32[3] power(x, n)""",
    # a NaN exponent
    """  x = f32[3] parameter(0)
  n = f32[3] constant({nan, nan, nan})
  ROOT p = f32[3] power(x, n)""",
])
def test_powers_not_rewritten(body, rng):
    text = body if body.startswith("HloModule") else hlo(body)
    simplifier, _ = simplify(text, rng)
    assert "power_small_integer" not in simplifier.fired


def ulps_apart(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance in ulps on the ordered integer line (-0 = +0, inf next to max); NaN is
    0 from NaN and 2^62 from anything else."""
    signed = np.int32 if a.dtype == np.float32 else np.int64
    magnitude = np.iinfo(signed).max

    def ordered(v):
        bits = v.view(signed).astype(np.int64)
        return np.where(bits < 0, -(bits & magnitude), bits)

    distance = np.abs(ordered(a) - ordered(b))
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    return np.where(nan_a & nan_b, 0, np.where(nan_a | nan_b, 2 ** 62, distance))


def power_inputs(dtype, rng) -> np.ndarray:
    """Normal, uniform and random-bit-pattern values (every binade, subnormals, NaNs) and
    the special values: zeros, infinities, NaN, +-1, the extremes and where x**n over- or
    underflows."""
    info = np.finfo(dtype)
    uint = np.uint32 if dtype == np.float32 else np.uint64
    patterns = rng.integers(0, np.iinfo(uint).max, 2000, dtype=uint, endpoint=True).view(dtype)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1, -1, 2, -2, 0.5, -3, info.max, -info.max,
                         info.tiny, -info.tiny, info.smallest_subnormal, -info.smallest_subnormal,
                         np.cbrt(info.max), -np.cbrt(info.max), np.sqrt(info.max), np.sqrt(np.sqrt(info.max)),
                         np.cbrt(info.tiny), -np.sqrt(info.tiny)], dtype)
    return np.concatenate([(rng.standard_normal(2000) * 4).astype(dtype),
                           rng.uniform(-2, 2, 2000).astype(dtype), patterns, specials])


@pytest.mark.parametrize("backend", ["interpreter", "cpu"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_powers_match_numpy_on_both_backends(backend, dtype, rng):
    # x**-1, x**0, x**1, x**2 are exact: bit for bit NumPy's (its f64 power of an f32 is
    # exact there, then rounded once; x*x, 1/x and np.power(x, 2 or -1) all round once).
    # x**3, x**4: two roundings, within 2 ulps of np.power (measured maximum: 2).
    x = power_inputs(dtype, rng)
    for n in (-1, 0, 1, 2, 3, 4):
        compiled = tessel.jit(lambda v: v ** dtype(n), backend=backend).lower(
            tessel.ShapeDtype(x.shape, x.dtype)).compile()
        assert "power" not in ops_in(print_module(compiled.executable.module))
        got = np.asarray(compiled(x))
        with np.errstate(all="ignore"):
            wide = x.astype(np.float64) if dtype == np.float32 else x
            want = np.power(wide, np.float64(n)).astype(dtype)
        distance = ulps_apart(got, want)
        assert distance.max() <= (0 if n <= 2 else 2), (n, x[distance.argmax()], got[distance.argmax()])
        special = ~np.isfinite(x) | (x == 0)
        assert same_bits(got[special], want[special]), n
