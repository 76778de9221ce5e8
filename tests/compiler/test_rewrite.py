"""The rewrite driver: patterns, the guarantees it gives rules, and its loop guard."""
from __future__ import annotations

import re

import numpy as np
import pytest

from tessel.backends.interpreter import evaluate
from tessel.compiler import verifier
from tessel.compiler.ir import SourceLoc, clone_module
from tessel.compiler.parser import parse_module
from tessel.compiler.pass_manager import FixedPoint, PassError, PassManager
from tessel.compiler.printer import print_module
from tessel.compiler.rewrite import (Pat, RewriteError, RewriteLimitError, RewritePass, Rule, RuleTable,
                                     const_value, has_side_effects, is_splat_constant, rewrite_limit,
                                     rewrite_module, splat, splat_value, var)


def hlo(body: str, before: str = "") -> str:
    return f"HloModule m\n{before}ENTRY main {{\n{body}\n}}\n"


def ops_in(text: str) -> list[str]:
    return re.findall(r" ([a-z_]+)\(", text)


def named(module, name):
    return next(i for c in module.computations for i in c.instructions if i.name == name)


CONSTANTS = hlo("""
  x = f32[4] parameter(0)
  zeros = f32[3] constant({0, 0, 0})
  negative_zeros = f32[3] constant({-0.0, -0.0, -0.0})
  mixed = f32[3] constant({0, 1, 0})
  nans = f32[2] constant({nan, nan})
  scalar = s32[] constant(7)
  wide = s32[2,5] broadcast_in_dim(scalar), broadcast_dimensions={}
  ROOT t = (f32[3], f32[3], f32[3], f32[2], s32[2,5]) tuple(zeros, negative_zeros, mixed, nans, wide)""")


# ----------------------------------------------------------------------------- helpers on constants

def test_constant_helpers():
    m = parse_module(CONSTANTS)
    zeros, negative_zeros, mixed, nans, wide, x = (named(m, n) for n in
                                                   ("zeros", "negative_zeros", "mixed", "nans", "wide", "x"))
    assert const_value(zeros).tolist() == [0, 0, 0] and const_value(x) is None and const_value(wide) is None
    assert is_splat_constant(zeros, 0) and is_splat_constant(negative_zeros, 0)
    assert np.signbit(splat_value(negative_zeros)) and not np.signbit(splat_value(zeros))
    assert not is_splat_constant(mixed) and splat_value(mixed) is None
    assert np.isnan(splat_value(nans)) and is_splat_constant(nans)
    assert splat_value(wide) == 7 and is_splat_constant(wide, 7) and not is_splat_constant(wide, 0)
    assert not is_splat_constant(x)


def test_side_effects_are_found_through_nested_computations():
    m = parse_module(hlo("""
  x = f32[3] parameter(0)
  a = f32[3] call(x), to_apply=reduce_everywhere
  b = f32[3] call(x), to_apply=pure
  ROOT t = (f32[3], f32[3]) tuple(a, b)""", before="""
reduce_everywhere {
  p = f32[3] parameter(0)
  ROOT r = f32[3] all_reduce(p), reduction=sum
}

pure {
  ROOT q = f32[3] parameter(0)
}
"""))
    assert has_side_effects(named(m, "a")) and not has_side_effects(named(m, "b"))
    assert has_side_effects(named(m, "r")) and not has_side_effects(named(m, "x"))


# ----------------------------------------------------------------------------- patterns

def test_patterns_bind_names_check_arity_and_predicates():
    m = parse_module(hlo("""
  x = f32[3] parameter(0)
  y = f32[3] parameter(1)
  n = f32[3] negate(x)
  s = f32[3] subtract(n, y)
  d = f32[3] subtract(x, x)
  ROOT c = f32[6] concatenate(x, y), dimension=0"""))
    s, d, c = named(m, "s"), named(m, "d"), named(m, "c")
    b = Pat("subtract", Pat("negate", var("a")), var("b")).match(s)
    assert b == {"a": named(m, "x"), "b": named(m, "y")}
    assert Pat("subtract", var("a"), var("a")).match(d) is not None    # a name used twice: same value
    assert Pat("subtract", var("a"), var("a")).match(s) is None
    assert Pat(("add", "subtract"), name="root").match(s) == {"root": s}
    assert Pat("concatenate", var()).match(c) is None                 # two operands, one pattern
    assert Pat("concatenate").match(c) == {}                          # no operand patterns: any
    assert Pat("subtract", where=lambda i: i.shape.rank == 2).match(s) is None


def test_commutative_ops_match_either_operand_order():
    m = parse_module(hlo("""
  x = f32[3] parameter(0)
  one = f32[3] constant({1, 1, 1})
  a = f32[3] multiply(one, x)
  ROOT b = f32[3] divide(one, x)"""))
    assert Pat("multiply", var("x"), splat(1)).match(named(m, "a")) == {"x": named(m, "x")}
    assert Pat("divide", var("x"), splat(1)).match(named(m, "b")) is None   # divide is not commutative


def test_rule_tables_index_by_opcode_and_refuse_bad_rules():
    keep = Rule("keep", Pat(("negate", "abs"), var("x")), lambda ctx, x: None)
    table = RuleTable([keep])
    assert table.for_opcode("abs") == [keep] and table.for_opcode("exp") == [] and table.names == ["keep"]
    with pytest.raises(ValueError, match="unique.*keep"):
        RuleTable([keep, keep])
    with pytest.raises(ValueError, match="root must name"):
        RuleTable([Rule("any", var("x"), lambda ctx, x: x)])
    with pytest.raises(ValueError, match="unknown op 'frobnicate'"):
        RuleTable([Rule("bad", Pat("frobnicate"), lambda ctx: None)])


# ----------------------------------------------------------------------------- the driver

def negate_of_negate(ctx, x):
    return x


def two_negations(ctx, x):
    # A (wrong, but well-typed) rule that builds two instructions, the second using the first.
    a = ctx.emit("negate", [x])
    return ctx.emit("negate", [a])


NEGATIONS = RuleTable([Rule("double_negation", Pat("negate", Pat("negate", var("x"))), negate_of_negate)])


def test_driver_replaces_all_uses_the_root_included_and_reports_what_fired():
    text = hlo("""
  x = f32[3] parameter(0)
  a = f32[3] negate(x)
  b = f32[3] negate(a)
  c = f32[3] add(b, b)
  d = f32[3] negate(c)
  ROOT e = f32[3] negate(d)""")
    m = parse_module(text)
    fired = rewrite_module(m, NEGATIONS)
    assert fired == {"double_negation": 2}
    out = print_module(m)
    assert ops_in(out) == ["parameter", "add"] and "ROOT c = f32[3] add(x, x)" in out
    verifier.verify(m)
    assert rewrite_module(m, NEGATIONS) == {}          # nothing left to do: no change reported


def test_new_instructions_go_before_the_matched_one_with_its_locations():
    table = RuleTable([Rule("exp_to_negations", Pat("exp", var("x")), two_negations)])
    m = parse_module(hlo("""
  x = f32[3] parameter(0)                  # model.py:1
  e = f32[3] exp(x)                        # model.py:2
  ROOT s = f32[3] sin(e)"""))
    assert rewrite_module(m, table) == {"exp_to_negations": 1}
    verifier.verify(m)
    assert [i.opcode for i in m.entry.instructions] == ["parameter", "negate", "negate", "sin"]
    assert all(i.locs == (SourceLoc("model.py", 2),) for i in m.entry.instructions[1:3])


def test_a_declining_rule_leaves_no_trace():
    def build_then_decline(ctx, x):
        ctx.emit("negate", [ctx.emit("abs", [x])])
        return None

    table = RuleTable([Rule("decline", Pat("exp", var("x")), build_then_decline)])
    text = hlo("""
  x = f32[3] parameter(0)
  ROOT e = f32[3] exp(x)""")
    m = parse_module(text)
    assert rewrite_module(m, table) == {}
    assert print_module(m) == print_module(parse_module(text))


def test_rules_with_the_wrong_type_or_a_cycle_are_errors():
    m = parse_module(hlo("""
  x = f32[3] parameter(0)
  y = s32[3] parameter(1)
  ROOT e = f32[3] exp(x)"""))
    wrong = RuleTable([Rule("wrong", Pat("exp"), lambda ctx: ctx.computation.parameters[1])])
    with pytest.raises(RewriteError, match=r"rule wrong replaced e \(f32\[3\]\) with y of another type"):
        rewrite_module(m, wrong)
    cycle = RuleTable([Rule("cycle", Pat("exp"), lambda ctx: ctx.emit("negate", [ctx.instr]))])
    with pytest.raises(RewriteError, match="cycle"):
        rewrite_module(m, cycle)
    verifier.verify(m)


def test_layout_only_differences_decline_the_rewrite():
    m = parse_module(hlo("""
  x = f32[2,3] parameter(0)
  ROOT t = f32[2,3]{0,1} negate(x)"""))
    table = RuleTable([Rule("drop", Pat("negate", var("x")), lambda ctx, x: x)])
    assert rewrite_module(m, table) == {}


def test_side_effects_and_parameters_are_never_matched_created_or_removed():
    text = hlo("""
  x = f32[3] parameter(0)
  a = f32[3] all_reduce(x), reduction=sum
  ROOT n = f32[3] negate(x)""")
    m = parse_module(text)
    everything = RuleTable([
        Rule("drop_all_reduce", Pat("all_reduce", var("x")), lambda ctx, x: x),
        Rule("drop_parameter", Pat("parameter"), lambda ctx: None),
    ])
    assert rewrite_module(m, everything) == {}
    make = RuleTable([Rule("make", Pat("negate", var("x")),
                           lambda ctx, x: ctx.emit("all_reduce", [x], {"reduction": "sum"}))])
    with pytest.raises(RewriteError, match="may not create all_reduce"):
        rewrite_module(m, make)
    # removing what only the replaced instruction used stops at side effects and parameters
    m = parse_module(hlo("""
  x = f32[3] parameter(0)
  a = f32[3] all_reduce(x), reduction=sum
  n = f32[3] negate(a)
  ROOT m = f32[3] negate(n)"""))
    rewrite_module(m, NEGATIONS)
    assert ops_in(print_module(m)) == ["parameter", "all_reduce"]


def test_nested_computations_are_rewritten_and_keep_their_parameters():
    m = parse_module(hlo("""
  x = f32[4] parameter(0)
  z = f32[] constant(0)
  ROOT r = f32[] reduce(x, z), dimensions={0}, to_apply=body""", before="""
body {
  a = f32[] parameter(0)
  b = f32[] parameter(1)
  n = f32[] negate(b)
  ROOT nn = f32[] negate(n)
}
"""))
    assert rewrite_module(m, NEGATIONS) == {"double_negation": 1}
    body = m.computation("body")
    assert [p.name for p in body.parameters] == ["a", "b"] and body.root.name == "b"
    verifier.verify(m)


# ----------------------------------------------------------------------------- the loop guard

def swap(opcode):
    return lambda ctx, a, b: ctx.emit(opcode, [a, b])


# Two rules that undo each other: max -> min -> max -> ...
OSCILLATING = RuleTable([
    Rule("max_to_min", Pat("maximum", var("a"), var("b")), swap("minimum")),
    Rule("min_to_max", Pat("minimum", var("a"), var("b")), swap("maximum")),
])

OSCILLATING_TEXT = hlo("""
  x = f32[3] parameter(0)
  y = f32[3] parameter(1)
  ROOT m = f32[3] maximum(x, y)""")


def test_the_loop_guard_stops_oscillating_rules_and_names_them():
    m = parse_module(OSCILLATING_TEXT)
    with pytest.raises(RewriteLimitError, match=r"did not reach a fixed point after 10 rewrites.*"
                                                r"max_to_min x5, min_to_max x5"):
        rewrite_module(m, OSCILLATING, max_rewrites=10)
    verifier.verify(m)                                  # valid, with the rewrites done so far
    assert len(m.entry.instructions) == 3


def test_the_default_limit_grows_with_the_module():
    small, big = parse_module(OSCILLATING_TEXT), parse_module(CONSTANTS)
    assert rewrite_limit(big) > rewrite_limit(small)
    with pytest.raises(RewriteLimitError, match=f"after {rewrite_limit(small)} rewrites"):
        rewrite_module(small, OSCILLATING)


def test_the_pass_manager_reports_a_runaway_rewrite_pass():
    m = parse_module(OSCILLATING_TEXT)
    manager = PassManager("p", [FixedPoint("simplify", [RewritePass(OSCILLATING, name="oscillate")])])
    with pytest.raises(PassError, match="pass oscillate failed.*did not reach a fixed point"):
        manager.run(m)


def test_rules_looking_at_users_are_run_to_a_fixed_point():
    # A (contrived) rule that rewrites an exp only once its user has become a negate: the
    # user comes later, so only a second sweep can see it.
    table = RuleTable([
        Rule("exp_used_by_negate", Pat("exp", var("x")),
             lambda ctx, x: ctx.emit("log", [x]) if [u.opcode for u in ctx.users(ctx.instr)] == ["negate"]
             else None),
        Rule("abs_to_negate", Pat("abs", var("x")), lambda ctx, x: ctx.emit("negate", [x])),
    ])
    m = parse_module(hlo("""
  x = f32[3] parameter(0)
  e = f32[3] exp(x)
  ROOT a = f32[3] abs(e)"""))
    assert rewrite_module(m, table) == {"abs_to_negate": 1, "exp_used_by_negate": 1}
    assert ops_in(print_module(m)) == ["parameter", "log", "negate"]


def test_a_rewrite_pass_runs_to_a_fixed_point_and_says_whether_it_changed():
    text = hlo("""
  x = f32[3] parameter(0)
  a = f32[3] negate(x)
  b = f32[3] negate(a)
  c = f32[3] negate(b)
  ROOT d = f32[3] negate(c)""")
    m = parse_module(text)
    before = clone_module(m)
    p = RewritePass(NEGATIONS, name="negations")
    assert p.run(m) and p.fired == {"double_negation": 2}
    assert m.entry.root is m.entry.parameters[0]
    args = [np.array([1.5, -0.0, np.inf], np.float32)]
    np.testing.assert_array_equal(evaluate(m, args), evaluate(before, args))
    assert not p.run(m) and not p.fired


def test_rewriting_an_unused_instruction_keeps_its_replacement():
    # b is dead; its replacement e is used only through b. Removing b and what only it
    # used must stop at e, which the driver still has to visit.
    m = parse_module(hlo("""
  x = f32[3] parameter(0)
  e = f32[3] exp(x)
  a = f32[3] negate(e)
  b = f32[3] negate(a)
  ROOT r = f32[3] log(x)"""))
    assert rewrite_module(m, NEGATIONS) == {"double_negation": 1}
    verifier.verify(m)
    assert [i.name for i in m.entry.instructions] == ["x", "e", "r"]


def test_matches_that_appear_deeper_than_the_users_are_found_too():
    # Once the double negation of the scalar is gone, `add` sees a zero through two
    # broadcasts, two levels above the rewrite.
    table = RuleTable([
        NEGATIONS.rules[0],
        Rule("add_zero", Pat("add", var("x"), splat(0)), lambda ctx, x: x),
    ])
    m = parse_module(hlo("""
  x = s32[4,5] parameter(0)
  z = s32[] constant(0)
  n = s32[] negate(z)
  nn = s32[] negate(n)
  b = s32[5] broadcast_in_dim(nn), broadcast_dimensions={}
  bb = s32[4,5] broadcast_in_dim(b), broadcast_dimensions={1}
  ROOT a = s32[4,5] add(x, bb)"""))
    assert rewrite_module(m, table) == {"double_negation": 1, "add_zero": 1}
    assert m.entry.root is m.entry.parameters[0]
