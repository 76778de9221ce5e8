"""The HLO text format: printing, parsing, round trip, and the parser's error messages."""
from __future__ import annotations

import math

import numpy as np
import pytest

from tessel.compiler import dtypes, ops, verifier
from tessel.compiler.ir import Builder, Instruction, Module, Shape, SourceLoc, TupleShape
from tessel.compiler.parser import HloParseError, parse, parse_module
from tessel.compiler.printer import print_module
from tessel.compiler.structural import (assert_structurally_equal, module_structure,
                                        structurally_equal)

f32, s32, pred = dtypes.f32, dtypes.s32, dtypes.pred


def S(dtype, *dims, layout=None):
    return Shape(dtype, dims, layout)


def T(*elements):
    return TupleShape(elements)


def binary_computation(m, opcode, dtype, name):
    b = Builder(m, name)
    x, y = b.parameter(S(dtype), "x"), b.parameter(S(dtype), "y")
    return b.build(b.emit(opcode, [x, y]))


def comparator(m, dtype, name="less", n=1):
    b = Builder(m, name)
    params = [b.parameter(S(dt), f"v{i}") for i, dt in enumerate([dtype, dtype] * n)]
    return b.build(b.emit("compare", params[:2], {"direction": "LT"}))


# ----------------------------------------------------------------------------- one module per op family

def elementwise_module():
    m = Module("elementwise")
    b = Builder(m, "main")
    x = b.parameter(S(f32, 2, 3), "x")
    i = b.parameter(S(s32, 2, 3), "i")
    p = b.parameter(S(pred, 2, 3), "p")
    operand_for = {"float": x, "signed": x, "numeric": x, "any": x, "logical": p}
    results = []
    for name in ops.UNARY:
        results.append(b.emit(name, [operand_for[ops.UNARY[name]]]))
    results.append(b.emit("is_finite", [x]))
    results.append(b.emit("convert", [x], shape=S(s32, 2, 3)))
    for name, (kind, _) in ops.BINARY.items():
        operand = operand_for[kind]
        results.append(b.emit(name, [operand, operand]))
    for direction in ops.COMPARE_DIRECTIONS:
        results.append(b.emit("compare", [i, i], {"direction": direction}))
    results.append(b.emit("select", [p, x, x]))
    lo, hi = b.constant(np.float32(-1)), b.constant(np.float32(1))
    results.append(b.emit("clamp", [lo, x, hi]))
    b.build(b.emit("tuple", results), entry=True)
    return m


def data_movement_module():
    m = Module("data")
    add = binary_computation(m, "add", f32, "add")
    b = Builder(m, "main")
    x = b.parameter(S(f32, 4, 6), "x")
    k = b.parameter(S(s32), "k")
    idx = b.parameter(S(s32, 5, 1), "idx")
    upd = b.parameter(S(f32, 5, 6), "upd")
    results = [
        b.emit("iota", [], {"iota_dimension": 1}, shape=S(s32, 3, 5)),
        b.emit("broadcast_in_dim", [k], {"broadcast_dimensions": ()}, shape=S(s32, 2, 2)),
        b.emit("reshape", [x], shape=S(f32, 24)),
        b.emit("transpose", [x], {"permutation": (1, 0)}),
        b.emit("slice", [x], {"start_indices": (0, 1), "limit_indices": (4, 6)}),
        b.emit("slice", [x], {"start_indices": (0, 1), "limit_indices": (4, 6), "strides": (2, 3)}),
        b.emit("dynamic_slice", [x, k, k], {"slice_sizes": (2, 2)}),
        b.emit("dynamic_update_slice", [x, b.emit("slice", [x], {"start_indices": (0, 0),
                                                               "limit_indices": (1, 6)}), k, k]),
        b.emit("concatenate", [x, x, x], {"dimension": 0}),
        b.emit("pad", [x, b.constant(0.0, f32)], {"edge_padding_low": (1, -1),
                                                  "edge_padding_high": (0, 2),
                                                  "interior_padding": (1, 0)}),
        b.emit("reverse", [x], {"dimensions": (0, 1)}),
        b.emit("gather", [x, idx], {"offset_dims": (1,), "collapsed_slice_dims": (0,),
                                    "start_index_map": (0,), "index_vector_dim": 1,
                                    "slice_sizes": (1, 6), "indices_are_sorted": True}),
        b.emit("scatter", [x, idx, upd], {"update_window_dims": (1,), "inserted_window_dims": (0,),
                                          "scatter_dims_to_operand_dims": (0,),
                                          "index_vector_dim": 1, "unique_indices": True,
                                          "to_apply": add}),
    ]
    b.build(b.emit("tuple", results), entry=True)
    return m


def compute_module():
    m = Module("compute")
    add = binary_computation(m, "add", f32, "add")
    b = Builder(m, "max_min")     # a variadic reducer: (f32, s32) pairs
    a0, a1 = b.parameter(S(f32), "a0"), b.parameter(S(s32), "a1")
    v0, v1 = b.parameter(S(f32), "v0"), b.parameter(S(s32), "v1")
    pair = b.build(b.emit("tuple", [b.emit("maximum", [a0, v0]), b.emit("minimum", [a1, v1])]))
    ge = Builder(m, "ge")
    ge.build(ge.emit("compare", [ge.parameter(S(f32)), ge.parameter(S(f32))], {"direction": "GE"}))
    sort_cmp = comparator(m, f32, "sort_less", n=2)

    b = Builder(m, "main")
    lhs, rhs = b.parameter(S(f32, 2, 3, 4), "lhs"), b.parameter(S(f32, 2, 4, 5), "rhs")
    img, ker = b.parameter(S(f32, 1, 8, 8, 4)), b.parameter(S(f32, 3, 3, 2, 6))
    x, i = b.parameter(S(f32, 4, 6), "x"), b.parameter(S(s32, 4, 6), "i")
    zero, big = b.constant(np.float32(0)), b.constant(np.int32(2 ** 31 - 1))
    results = [
        b.emit("dot_general", [lhs, rhs], {"lhs_batching_dims": (0,), "rhs_batching_dims": (0,),
                                           "lhs_contracting_dims": (2,), "rhs_contracting_dims": (1,)}),
        b.emit("convolution", [img, ker], {"window_strides": (2, 1), "padding": ((1, 1), (0, 2)),
                                           "rhs_dilation": (1, 2), "feature_group_count": 2,
                                           "dim_labels": "b01f_01io->b01f"}),
        b.emit("reduce", [x, zero], {"dimensions": (1,), "to_apply": add}),
        b.emit("reduce", [x, i, zero, big], {"dimensions": (0, 1), "to_apply": pair}),
        b.emit("reduce_window", [x, zero], {"window_dimensions": (2, 3), "window_strides": (2, 1),
                                            "padding": ((0, 0), (1, 1)), "base_dilations": (1, 2),
                                            "window_dilations": (1, 1), "to_apply": add}),
        b.emit("select_and_scatter", [x, b.parameter(S(f32, 2, 2), "src"), zero],
               {"window_dimensions": (2, 3), "window_strides": (2, 3), "select": ge.computation,
                "scatter": add}),
        b.emit("sort", [x, x], {"dimension": 1, "is_stable": True, "comparator": sort_cmp}),
    ]
    b.build(b.emit("tuple", results), entry=True)
    return m


def control_module():
    m = Module("control")
    state = T(S(s32), S(f32, 3))

    cond = Builder(m, "cond")
    s = cond.parameter(state, "s")
    n = cond.emit("get_tuple_element", [s], {"index": 0})
    cond.build(cond.emit("compare", [n, cond.constant(np.int32(10))], {"direction": "LT"}))

    body = Builder(m, "body")
    s = body.parameter(state, "s")
    n, v = (body.emit("get_tuple_element", [s], {"index": k}) for k in (0, 1))
    one = body.constant(np.int32(1))
    body.build(body.emit("tuple", [body.emit("add", [n, one]), body.emit("exp", [v])]))

    branches = []
    for k, opcode in enumerate(["negate", "exp", "abs"]):
        br = Builder(m, f"branch_{k}")
        branches.append(br.build(br.emit(opcode, [br.parameter(S(f32, 3))])))

    fused = Builder(m, "fused")
    a, c = fused.parameter(S(f32, 3), "a"), fused.parameter(S(f32, 3), "c")
    fused.build(fused.emit("multiply", [fused.emit("add", [a, c]), c]))

    b = Builder(m, "main")
    x = b.parameter(S(f32, 3), "x")
    k = b.parameter(S(s32), "k")
    flag = b.parameter(S(pred), "flag")
    key = b.parameter(S(dtypes.u32, 4), "key")
    init = b.emit("tuple", [k, x])
    token = b.emit("send", [x], {"channel_id": 7, "device": "tpu:1"})
    results = [
        b.emit("while", [init], {"condition": cond.computation, "body": body.computation}),
        b.emit("conditional", [k, x, x, x], {"branch_computations": tuple(branches)}),
        b.emit("conditional", [flag, x, x], {"branch_computations": tuple(branches[:2])}),
        b.emit("call", [x, x], {"to_apply": fused.computation}),
        b.emit("fusion", [x, x], {"kind": "loop", "calls": fused.computation}),
        b.emit("rng_bit_generator", [key], shape=T(S(dtypes.u32, 4), S(dtypes.u32, 2, 2))),
        b.emit("all_reduce", [x], {"reduction": "mean"}),
        b.emit("all_gather", [x], {"participants": 2}),
        b.emit("collective_broadcast", [x], {"root": 1}),
        token,
        b.emit("recv", [token], {"channel_id": 7, "device": "tpu:0"}, shape=S(f32, 3)),
        b.emit("recv", [], {"channel_id": 8, "device": ""}, shape=S(s32, 2)),
        b.emit("custom_call", [x, k], {"call_target_name": "my_op",
                                       "backend_config": 'say "hi"\n\t\\ ünïcode'},
               shape=T(S(f32, 3), T())),
        b.emit("tuple", []),
        b.emit("get_tuple_element", [init], {"index": 1}),
    ]
    b.build(b.emit("tuple", results), entry=True)
    return m


def constants_module():
    m = Module("constants")
    b = Builder(m, "main")
    special = np.array([np.inf, -np.inf, np.nan, -0.0, 0.0, 1e-45, 3.4028235e38, 0.1], np.float32)
    signed_nan = np.array([-np.nan, np.nan], np.float32)
    payload = np.array([0x7FC00001, 0xFF800002], np.uint32).view(np.float32)
    values = [
        b.constant(True), b.constant(np.array([True, False])),
        b.constant(np.int8(-128)), b.constant(np.array([127, -128], np.int8)),
        b.constant(np.int32(-2 ** 31)), b.constant(np.array([2 ** 31 - 1], np.int32)),
        b.constant(np.int64(-2 ** 63)), b.constant(np.array([2 ** 63 - 1, -2 ** 63], np.int64)),
        b.constant(np.uint8(255)), b.constant(np.array([0, 2 ** 32 - 1], np.uint32)),
        b.constant(np.array([65504, -6e-8, np.nan, np.inf], np.float16)),
        b.constant(np.array([1.5, -2.75e20, 0.1, np.nan], np.float32), dtype="bf16"),
        b.constant(special), b.constant(signed_nan), b.constant(payload),
        b.constant(np.array([np.pi, -np.e, 5e-324, np.nan, -np.inf], np.float64)),
        b.constant(np.zeros((0,), np.float32)), b.constant(np.zeros((2, 0, 3), np.int32)),
        b.constant(np.zeros((0, 4), np.bool_)), b.constant(np.float64(-0.0)),
        b.constant(np.arange(24, dtype=np.float32).reshape(2, 3, 4)),
        b.constant(np.arange(300, dtype=np.int64) - 150),
    ]
    b.build(b.emit("tuple", values), entry=True)
    return m


def layouts_and_names_module():
    m = Module("<lambda>")
    add = binary_computation(m, "add", f32, "HloModule")     # keywords as names
    b = Builder(m, "ENTRY")
    b.loc = (SourceLoc("model.py", 12), SourceLoc("/a dir/with, comma \"q\".py", 3))
    x = b.parameter(S(f32, 2, 3, layout=(0, 1)), "x y")
    y = b.parameter(T(S(f32, 2), T(S(s32), S(pred)), T()), "9lives")
    nested = b.emit("get_tuple_element", [y], {"index": 1}, name="ROOT")
    b.loc = (SourceLoc("<stdin>", 0), SourceLoc("C:\\x\\a:1", 5), SourceLoc("", 7),
             SourceLoc("tab\tfile #2", -1), SourceLoc("ünï.py", 9))
    r = b.emit("reduce", [x, b.constant(np.float32(0))], {"dimensions": (0, 1), "to_apply": add},
               name="sum-of.x")
    b.build(b.emit("tuple", [r, nested], name="out"), entry=True)
    return m


OP_FAMILIES = [elementwise_module, data_movement_module, compute_module, control_module,
               constants_module, layouts_and_names_module]


def opcodes_in(module):
    return {i.opcode for c in module.computations for i in c.instructions}


@pytest.mark.parametrize("build", OP_FAMILIES, ids=lambda f: f.__name__)
def test_round_trip(build):
    module = build()
    verifier.verify(module)
    text = print_module(module, full_constants=True)
    parsed = parse_module(text)
    verifier.verify(parsed)
    assert_structurally_equal(module, parsed)
    assert print_module(parsed, full_constants=True) == text    # printing is a fixed point


def test_every_op_is_covered():
    covered = set().union(*(opcodes_in(build()) for build in OP_FAMILIES))
    assert covered == set(ops.OPS), f"ops without a round-trip module: {set(ops.OPS) - covered}"


def test_round_trip_keeps_the_original_module_unchanged():
    for build in OP_FAMILIES:
        module = build()
        before = module_structure(module)
        parse_module(print_module(module, full_constants=True))
        print_module(module)
        verifier.verify(module)
        assert module_structure(module) == before


def test_constants_keep_their_bits():
    module = constants_module()
    parsed = parse_module(print_module(module, full_constants=True))
    for original, back in zip(module.entry.instructions, parsed.entry.instructions):
        if original.opcode == "constant":
            a, b = original.attrs["value"].array, back.attrs["value"].array
            assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# ----------------------------------------------------------------------------- printing

def test_prints_the_documented_format():
    m = Module("mlp")
    add = binary_computation(m, "add", f32, "add.1")
    b = Builder(m, "main")
    b.loc = (SourceLoc("samples/mlp.py", 14),)
    x = b.parameter(S(f32, 256, 784), "x")
    b.loc = ()
    w1 = b.parameter(S(f32, 784, 512), "w1")
    c = b.constant(np.array([1, 2.5, -np.inf], np.float32), dtype="f32")
    d = b.emit("dot_general", [x, w1], {"lhs_contracting_dims": (1,), "rhs_contracting_dims": (0,)},
               name="d")
    z = b.constant(np.float32(0))
    r = b.emit("reduce", [d, z], {"dimensions": (1,), "to_apply": add}, name="r")
    b.build(b.emit("tuple", [r, c], name="out"), entry=True)
    assert add.name == "add.1"
    assert print_module(m) == """\
HloModule mlp

add.1 {
  x = f32[] parameter(0)
  y = f32[] parameter(1)
  ROOT add = f32[] add(x, y)
}

ENTRY main {
  x.1 = f32[256,784] parameter(0)                       # samples/mlp.py:14
  w1 = f32[784,512] parameter(1)
  constant = f32[3] constant({1.0, 2.5, -inf})
  d = f32[256,512] dot_general(x.1, w1), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  constant.2 = f32[] constant(0.0)
  r = f32[256] reduce(d, constant.2), dimensions={1}, to_apply=add.1
  ROOT out = (f32[256], f32[3]) tuple(r, constant)
}
"""


def test_prints_attributes_by_kind_and_omits_defaults():
    text = print_module(compute_module())
    assert "padding={{1,1},{0,2}}" in text
    assert 'dim_labels="b01f_01io->b01f"' in text
    assert "is_stable=true" in text
    assert "batch_group_count" not in text          # default 1
    assert "lhs_dilation" not in text               # default None
    assert "dimensions={0,1}, to_apply=max_min" in text
    text = print_module(control_module())
    assert "branch_computations={branch_0, branch_1, branch_2}" in text
    assert "kind=loop" in text and "reduction=mean" in text
    assert r'backend_config="say \"hi\"\n\t\\ ünïcode"' in text
    assert "algorithm" not in text                  # default philox


def test_prints_shapes_layouts_names_and_locations():
    text = print_module(layouts_and_names_module())
    assert text.startswith('HloModule "<lambda>"\n')
    assert '"x y" = f32[2,3]{0,1} parameter(0)' in text
    assert '"9lives" = (f32[2], (s32[], pred[]), ()) parameter(1)' in text
    assert '"ROOT" = (s32[], pred[]) get_tuple_element("9lives"), index=1' in text
    assert 'ENTRY "ENTRY" {' in text and '\n"HloModule" {' in text and 'to_apply="HloModule"' in text
    assert '# model.py:12, "/a dir/with, comma \\"q\\".py":3' in text
    assert '# <stdin>:0, "C:\\\\x\\\\a:1":5, "":7, "tab\\tfile #2":-1, ünï.py:9' in text


def test_unreachable_computations_print_before_the_entry():
    m = Module("m")
    dead = binary_computation(m, "maximum", f32, "dead")
    b = Builder(m, "main")
    b.build(b.parameter(S(f32)), entry=True)
    text = print_module(m)
    assert text.index("dead {") < text.index("ENTRY main {")
    assert_structurally_equal(parse_module(text), m)
    assert dead.name == "dead"


def test_big_constants_print_as_a_digest_unless_asked():
    m = Module("big")
    b = Builder(m, "main")
    value = np.arange(17, dtype=np.float32)
    c = b.constant(value)
    b.build(b.emit("negate", [c]), entry=True)
    short = print_module(m)
    digest = c.attrs["value"].digest[:16]
    assert f"constant = f32[17] constant({{...}}), digest={digest}\n" in short
    full = print_module(m, full_constants=True)
    assert "{0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0}" in full
    assert_structurally_equal(parse_module(full), m)
    with pytest.raises(HloParseError, match=r"elided.*full_constants=True") as info:
        parse_module(short)
    assert (info.value.line, info.value.column) == (4, 31)
    small = Module("small")
    b = Builder(small, "main")
    b.build(b.constant(np.arange(16, dtype=np.int32)), entry=True)
    assert "digest" not in print_module(small)


def test_printing_half_built_modules_does_not_fail():
    m = Module("half")
    b = Builder(m, "main")
    x = b.parameter(S(f32, 2))
    b.computation.add(Instruction("odd", "no_such_op", [x], S(f32, 2), {"weird": object()}))
    m.add_computation(b.computation)            # no root, no entry
    text = str(m)
    assert "odd = f32[2] no_such_op(p), weird=" in text and "ROOT" not in text


# ----------------------------------------------------------------------------- parsing hand-written text

def test_parses_hand_written_text_with_comments_and_forward_references():
    m = parse("""
        // a free comment
        # a comment line of its own
        HloModule hand

        ENTRY main {
          x = f32[4] parameter(0)   // after an instruction
          z = f32[] constant(-0.0)
          r = f32[] reduce(x, z), to_apply=sum, dimensions={0}    # hand.py:3
          # between instructions
          ROOT n = f32[] negate(r)
        }

        sum {
          a = f32[] parameter(0)
          b = f32[] parameter(1)
          c = f32[] add(a, b)
        }
    """)
    verifier.verify(m)
    r = m.entry.instructions[2]
    assert r.attrs["to_apply"] is m.computation("sum")
    assert r.locs == (SourceLoc("hand.py", 3),)
    assert m.computation("sum").root.name == "c"      # no ROOT: the last instruction
    assert math.copysign(1, float(m.entry.instructions[1].attrs["value"].array)) == -1
    names = {"x", "z", "r", "n", "a", "b", "c", "sum", "main"}
    assert all(m.unique_name(n) != n for n in names)


def test_parsed_parameters_keep_their_index():
    m = parse_module("""HloModule m
ENTRY main {
  b = f32[] parameter(1)
  a = f32[] parameter(0)
  ROOT s = f32[] subtract(a, b)
}""")
    assert [p.name for p in m.entry.parameters] == ["a", "b"]
    assert [p.attrs["index"] for p in m.entry.parameters] == [0, 1]


def test_parsed_bf16_constants_are_rounded():
    m = parse_module("HloModule m\nENTRY main {\n  ROOT c = bf16[2] constant({0.1, 1.0})\n}")
    value = m.entry.root.attrs["value"].array
    assert value.dtype == np.float32 and value[0] == dtypes.round_to_bf16(np.float32(0.1))


def test_structural_equality_notices_differences():
    a, b = elementwise_module(), elementwise_module()
    assert structurally_equal(a, b)
    b.entry.instructions[3].locs = (SourceLoc("x.py", 1),)
    assert not structurally_equal(a, b)
    with pytest.raises(AssertionError, match=r"\['main'\]\['instructions'\]\[3\]\['locs'\]"):
        assert_structurally_equal(a, b)


# ----------------------------------------------------------------------------- malformed input

def header(body: str, before: str = "") -> str:
    """A module whose entry holds `body` (line 3 on), after the computations in `before`."""
    return "HloModule m\n" + before + "ENTRY main {\n" + body + "\n}\n"


ADD_COMP = "add {\n  a = f32[] parameter(0)\n  b = f32[] parameter(1)\n  ROOT s = f32[] add(a, b)\n}\n"

BAD_INPUTS = {
    "missing ENTRY": ("HloModule m\nmain {\n  ROOT x = f32[] parameter(0)\n}\n",
                      1, 11, "no ENTRY computation"),
    "missing header": ("ENTRY main {\n  ROOT x = f32[] parameter(0)\n}\n",
                       1, 1, "expected 'HloModule', found 'ENTRY'"),
    "unknown op": (header("  x = f32[] parameter(0)\n  ROOT y = f32[] frobnicate(x)"),
                   4, 18, "unknown op 'frobnicate'"),
    "undefined operand": (header("  x = f32[] parameter(0)\n  ROOT y = f32[] negate(q)"),
                          4, 25, "unknown operand 'q'"),
    "operand used before definition": (header("  ROOT y = f32[] negate(x)\n  x = f32[] parameter(0)"),
                                       3, 25, "used before its definition on line 4"),
    "bad shape": (header("  ROOT x = f32[2,x] parameter(0)"),
                  3, 18, "expected a number, found 'x'"),
    "fractional dimension": (header("  ROOT x = f32[2.5] parameter(0)"),
                             3, 16, "expected a dimension size"),
    "bad dtype": (header("  ROOT x = f31[2] parameter(0)"),
                  3, 12, "unknown element type 'f31'; expected one of pred, s8"),
    "bad layout": (header("  ROOT x = f32[2,3]{0,0} parameter(0)"),
                   3, 12, "must be a permutation of 0..1"),
    "unterminated brace": ("HloModule m\nENTRY main {\n  ROOT x = f32[] parameter(0)\n",
                           3, 30, "unexpected end of input; expected ',', 'ROOT', '}'"),
    "unterminated literal": (header("  ROOT c = f32[2] constant({1, 2)"),
                             3, 33, "expected ',' or '}', found ')'"),
    "wrong attribute kind": (header("  x = f32[2,3] parameter(0)\n  ROOT t = f32[3,2] transpose(x), "
                                    "permutation=true"),
                             4, 47, "attribute permutation of transpose: expected a list of integers"),
    "string for enum": (header("  x = s32[] parameter(0)\n  ROOT c = pred[] compare(x, x), direction=\"LT\""),
                        4, 44, "expected one of EQ, NE, LT, LE, GT, GE"),
    "unknown attribute": (header("  x = f32[2] parameter(0)\n  ROOT y = f32[2] negate(x), fast=true"),
                          4, 30, "negate has no attribute 'fast'; it takes none"),
    "missing required attribute": (header("  x = f32[2] parameter(0)\n  z = f32[] constant(0)\n"
                                          "  ROOT r = f32[] reduce(x, z), to_apply=add", ADD_COMP),
                                   10, 18, "reduce needs attribute dimensions"),
    "unknown computation": (header("  x = f32[2] parameter(0)\n  z = f32[] constant(0)\n"
                                   "  ROOT r = f32[] reduce(x, z), dimensions={0}, to_apply=plus"),
                            5, 57, "unknown computation 'plus'"),
    "type mismatch": (header("  a = f32[2] parameter(0)\n  b = f32[2] parameter(1)\n"
                             "  ROOT c = f32[3] add(a, b)"),
                      5, 12, "add produces f32[2], but the instruction declares f32[3]"),
    "operand rule broken": (header("  a = f32[2] parameter(0)\n  b = s32[2] parameter(1)\n"
                                   "  ROOT c = f32[2] add(a, b)"),
                            5, 19, "add operands must have the same shape and dtype"),
    "duplicate name": (header("  x = f32[] parameter(0)\n  x = f32[] negate(x)"),
                       4, 3, "instruction 'x' is defined twice in computation 'main' (first on line 3)"),
    "duplicate computation": (header("  ROOT x = f32[] parameter(0)", ADD_COMP + ADD_COMP),
                              7, 1, "computation 'add' is defined twice (first on line 2)"),
    "two ROOTs": (header("  ROOT x = f32[] parameter(0)\n  ROOT y = f32[] negate(x)"),
                  4, 8, "has a second ROOT"),
    "digest-only constant": (header("  ROOT c = f32[20] constant({...}), digest=0123456789abcdef"),
                             3, 29, "elided"),
    "literal shape mismatch": (header("  ROOT c = f32[2,2] constant({{1, 2}, {3}})"),
                               3, 39, "declared shape has 2 elements in this dimension, the literal has 1"),
    "huge declared constant": (header("  ROOT c = f32[4000000000000] constant({1, 2})"),
                               3, 40, "declared shape has 4000000000000 elements"),
    "garbage characters": (header("  ROOT x = f32[] parameter(0) $$$"),
                           3, 31, "unexpected character '$'"),
    "deep nesting": (header("  ROOT c = f32[] constant(" + "{" * 10000 + "}" * 10000 + ")"),
                     3, 9962, "nested deeper than 64 levels"),
    "deep tuple": (header("  ROOT x = " + "(" * 10000 + ")" * 10000 + " parameter(0)"),
                   3, 9947, "nested deeper than 64 levels"),
    "unclosed deep nesting": (header("  ROOT c = f32[] constant(" + "{" * 10000),
                              4, 2, "unexpected end of input"),
    "huge integer": (header("  ROOT c = s64[] constant(" + "9" * 5000 + ")"),
                     3, 27, "out of range for s64"),
    "huge integer attribute": (header("  ROOT x = f32[] parameter(" + "9" * 5000 + ")"),
                               3, 28, "parameter index: 999999999999999999999999... is out of range"),
    "huge dimension": (header("  ROOT x = f32[99999999999999999999999] parameter(0)"),
                       3, 16, "too large"),
    "float out of range": (header("  ROOT c = f16[] constant(1e6)"),
                           3, 27, "value 1000000.0 is out of range for f16"),
    "decimal overflow": (header("  ROOT c = f64[3] constant({1, inf, 1e999})"),
                         3, 37, "1e999 is out of range for a 64-bit float"),
    "other scripts' digits": (header("  ROOT c = s32[1] constant({\u0661\u0662})"),
                              3, 29, "expected an integer for s32, found '\u0661\u0662'"),
    "int in a pred literal": (header("  ROOT c = pred[2] constant({true, 1})"),
                              3, 36, "expected true or false for pred, found '1'"),
    "bad loc comment": (header("  ROOT x = f32[] parameter(0)  # see above"),
                        3, 33, "expected a source location 'file:line'"),
    "bad string escape": (header('  ROOT x = f32[] custom_call(), call_target_name="a\\qb"'),
                          3, 50, "bad string"),
    "call cycle": (header("  ROOT x = f32[] parameter(0)",
                          "f {\n  x = f32[] parameter(0)\n  ROOT y = f32[] call(x), to_apply=g\n}\n"
                          "g {\n  x = f32[] parameter(0)\n  ROOT y = f32[] call(x), to_apply=f\n}\n"),
                   8, 36, "call cycles are not allowed"),
    "parameter index gap": (header("  ROOT x = f32[] parameter(1)"),
                            2, 7, "parameter indices must be 0..0, found [1]"),
    "index attribute instead of parentheses": (header("  ROOT x = f32[] parameter(), index=0"),
                                               3, 31, "parameter takes its index in parentheses"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_malformed_input_is_an_error_at_its_line_and_column(name):
    text, line, column, message = BAD_INPUTS[name]
    with pytest.raises(HloParseError) as info:
        parse_module(text)
    error = info.value
    assert isinstance(error, ValueError)
    assert message in error.reason, str(error)
    assert (error.line, error.column) == (line, column), str(error)
    assert str(error).startswith(f"line {line}, column {column}: ")


def test_errors_show_the_source_line_with_a_caret():
    with pytest.raises(HloParseError) as info:
        parse_module(header("  x = f32[] parameter(0)\n  ROOT y = f32[] frobnicate(x)"))
    assert str(info.value).splitlines()[1:] == ["      ROOT y = f32[] frobnicate(x)",
                                                "                     ^"]


def test_shape_errors_are_chained():
    with pytest.raises(HloParseError) as info:
        parse_module(BAD_INPUTS["type mismatch"][0])
    assert isinstance(info.value.__cause__, ops.ShapeError)


def test_thousands_of_lines_parse():
    lines = ["  v0 = f32[8] parameter(0)"]
    lines += [f"  v{i} = f32[8] add(v{i - 1}, v0)  # gen.py:{i}" for i in range(1, 5000)]
    m = parse_module(header("\n".join(lines)))
    assert len(m.entry.instructions) == 5000 and m.entry.root.name == "v4999"


def test_thousands_of_garbage_lines_are_a_clean_error():
    with pytest.raises(HloParseError) as info:
        parse_module("HloModule m\n" + "{{{ ((( ]]] ,,, ===\n" * 5000)
    assert info.value.line == 2


def test_a_large_constant_round_trips_quickly(rng):
    m = Module("large")
    b = Builder(m, "main")
    b.build(b.constant(rng.standard_normal((300, 400)).astype(np.float32)), entry=True)
    parsed = parse_module(print_module(m, full_constants=True))
    assert_structurally_equal(parsed, m)
