"""The op table's shape rules: for every op, a valid use and its result shape, and at
least one broken rule with the message it gives. A test asserts that the tables cover
every op of ops.OPS."""
from __future__ import annotations

import re

import numpy as np
import pytest

from tessel.compiler import ops
from tessel.compiler.ir import Builder, Literal, Module, Shape, TupleShape
from tessel.compiler.ops import ShapeError


def sh(text: str):
    """'f32[2,3]' -> Shape, '(f32[2], s32[])' -> TupleShape, '()' -> empty tuple."""
    text = text.strip()
    if text.startswith("("):
        inner = text[1:-1].strip()
        parts, depth, start = [], 0, 0
        for i, ch in enumerate(inner):
            depth += ch in "([" and 1 or ch in ")]" and -1 or 0
            if ch == "," and depth == 0:
                parts.append(inner[start:i])
                start = i + 1
        if inner:
            parts.append(inner[start:])
        return TupleShape([sh(p) for p in parts])
    name, dims = re.fullmatch(r"(\w+)\[([\d,]*)\]", text).groups()
    return Shape(name, [int(d) for d in dims.split(",") if d])


# ----------------------------------------------------------------------------- nested computations

M = Module("computations")   # holds the computations the rules inspect (signatures only)


def _comp(name, param_shapes, root):
    """A computation with these parameters whose root is `root(builder, params)`."""
    b = Builder(M, name)
    params = [b.parameter(sh(s), f"p{i}") for i, s in enumerate(param_shapes)]
    return b.build(root(b, params))


ADD_F32 = _comp("add_f32", ["f32[]", "f32[]"], lambda b, p: b.emit("add", p))
ADD_F64 = _comp("add_f64", ["f64[]", "f64[]"], lambda b, p: b.emit("add", p))
ARGMAX = _comp("argmax", ["f32[]", "s32[]", "f32[]", "s32[]"],
               lambda b, p: b.emit("tuple", [b.emit("maximum", [p[0], p[2]]), b.emit("maximum", [p[1], p[3]])]))
GE_F32 = _comp("ge_f32", ["f32[]", "f32[]"], lambda b, p: b.emit("compare", p, {"direction": "GE"}))
LT_F32 = GE_F32  # the same signature serves as a one-operand sort comparator
LT_F32_S32 = _comp("lt_f32_s32", ["f32[]", "f32[]", "s32[]", "s32[]"],
                   lambda b, p: b.emit("compare", p[:2], {"direction": "LT"}))
COND_S32 = _comp("cond_s32", ["s32[]"], lambda b, p: b.emit("compare", [p[0], p[0]], {"direction": "LT"}))
BODY_S32 = _comp("body_s32", ["s32[]"], lambda b, p: b.emit("add", [p[0], p[0]]))
BODY_S32_TO_F32 = _comp("body_s32_to_f32", ["s32[]"], lambda b, p: b.emit("convert", p, shape=sh("f32[]")))
NEG_F32_3 = _comp("neg_f32_3", ["f32[3]"], lambda b, p: b.emit("negate", p))
ABS_F32_3 = _comp("abs_f32_3", ["f32[3]"], lambda b, p: b.emit("abs", p))
SUM_F32_3 = _comp("sum_f32_3", ["f32[3]"], lambda b, p: b.emit("reduce", [p[0], b.constant(np.float32(0))],
                                                              {"dimensions": (0,), "to_apply": ADD_F32}))
MUL_F32_2 = _comp("mul_f32_2", ["f32[2]", "f32[2]"], lambda b, p: b.emit("multiply", p))


def lit(value):
    return Literal(np.asarray(value))


# ----------------------------------------------------------------------------- the cases

# opcode: (operand shapes, attrs, declared result or None, expected result)
VALID = {
    **{name: (["f32[2,3]"], {}, None, "f32[2,3]") for name, kind in ops.UNARY.items() if kind == "float"},
    "negate": (["s32[4]"], {}, None, "s32[4]"),
    "abs": (["f64[]"], {}, None, "f64[]"),
    "sign": (["s8[0,2]"], {}, None, "s8[0,2]"),
    "not": (["pred[3]"], {}, None, "pred[3]"),
    "is_finite": (["bf16[2]"], {}, None, "pred[2]"),
    "convert": (["f32[2,3]"], {}, "s8[2,3]", "s8[2,3]"),
    **{name: (["u32[5]", "u32[5]"], {}, None, "u32[5]") for name, (kind, _) in ops.BINARY.items()
       if kind in ("numeric", "any", "logical")},
    "atan2": (["f16[2]", "f16[2]"], {}, None, "f16[2]"),
    "compare": (["s32[2]", "s32[2]"], {"direction": "LT"}, None, "pred[2]"),
    "select": (["pred[2,3]", "f32[2,3]", "f32[2,3]"], {}, None, "f32[2,3]"),
    "clamp": (["f32[]", "f32[4]", "f32[]"], {}, None, "f32[4]"),
    "parameter": ([], {"index": 0}, "(f32[2], s32[])", "(f32[2], s32[])"),
    "constant": ([], {"value": lit(np.zeros((2, 3), np.float32))}, None, "f32[2,3]"),
    "iota": ([], {"iota_dimension": 1}, "s32[2,5]", "s32[2,5]"),
    "broadcast_in_dim": (["f32[3,1]"], {"broadcast_dimensions": (2, 0)}, "f32[4,2,3]", "f32[4,2,3]"),
    "reshape": (["f32[2,3]"], {}, "f32[3,1,2]", "f32[3,1,2]"),
    "transpose": (["f32[2,3,4]"], {"permutation": (2, 0, 1)}, None, "f32[4,2,3]"),
    "slice": (["f32[10,4]"], {"start_indices": (1, 0), "limit_indices": (10, 3), "strides": (3, 2)}, None,
              "f32[3,2]"),
    "dynamic_slice": (["f32[5,4]", "s32[]", "u8[]"], {"slice_sizes": (2, 4)}, None, "f32[2,4]"),
    "dynamic_update_slice": (["f32[5,4]", "f32[2,4]", "s32[]", "s32[]"], {}, None, "f32[5,4]"),
    "concatenate": (["f32[2,3]", "f32[2,0]", "f32[2,1]"], {"dimension": 1}, None, "f32[2,4]"),
    "pad": (["f32[3,4]", "f32[]"], {"edge_padding_low": (1, -1), "edge_padding_high": (0, 2),
                                    "interior_padding": (1, 0)}, None, "f32[6,5]"),
    "reverse": (["f32[2,3]"], {"dimensions": (0, 1)}, None, "f32[2,3]"),
    "gather": (["f32[5,3]", "s32[4,1]"], {"offset_dims": (1,), "collapsed_slice_dims": (0,),
                                          "start_index_map": (0,), "index_vector_dim": 1,
                                          "slice_sizes": (1, 3)}, None, "f32[4,3]"),
    "scatter": (["f32[5,3]", "s32[4]", "f32[4,3]"], {"update_window_dims": (1,), "inserted_window_dims": (0,),
                                                     "scatter_dims_to_operand_dims": (0,), "index_vector_dim": 1,
                                                     "to_apply": ADD_F32}, None, "f32[5,3]"),
    "dot_general": (["f32[7,2,3]", "f32[7,3,4]"], {"lhs_batching_dims": (0,), "rhs_batching_dims": (0,),
                                                   "lhs_contracting_dims": (2,), "rhs_contracting_dims": (1,)},
                    None, "f32[7,2,4]"),
    "convolution": (["f32[8,32,32,6]", "f32[3,3,3,16]"], {"dim_labels": "b01f_01io->b01f",
                                                         "window_strides": (2, 1), "padding": ((1, 1), (0, 0)),
                                                         "feature_group_count": 2}, None, "f32[8,16,30,16]"),
    "reduce": (["f32[2,3,4]", "s32[2,3,4]", "f32[]", "s32[]"], {"dimensions": (0, 2), "to_apply": ARGMAX},
               None, "(f32[3], s32[3])"),
    "reduce_window": (["f32[4,6]", "f32[]"], {"window_dimensions": (2, 3), "window_strides": (2, 1),
                                             "padding": ((0, 1), (1, 1)), "to_apply": ADD_F32}, None, "f32[2,6]"),
    "select_and_scatter": (["f32[4,6]", "f32[2,3]", "f32[]"], {"window_dimensions": (2, 2),
                                                               "window_strides": (2, 2), "select": GE_F32,
                                                               "scatter": ADD_F32}, None, "f32[4,6]"),
    "sort": (["f32[3,5]", "s32[3,5]"], {"dimension": 1, "comparator": LT_F32_S32}, None, "(f32[3,5], s32[3,5])"),
    "while": (["s32[]"], {"condition": COND_S32, "body": BODY_S32}, None, "s32[]"),
    "conditional": (["s32[]", "f32[3]", "f32[3]"], {"branch_computations": (NEG_F32_3, ABS_F32_3)}, None, "f32[3]"),
    "call": (["f32[2]", "f32[2]"], {"to_apply": MUL_F32_2}, None, "f32[2]"),
    "tuple": (["f32[2]", "()", "s32[]"], {}, None, "(f32[2], (), s32[])"),
    "get_tuple_element": (["(f32[2], s32[])"], {"index": 1}, None, "s32[]"),
    "rng_bit_generator": (["u32[4]"], {}, "(u32[4], u32[2,3])", "(u32[4], u32[2,3])"),
    "all_reduce": (["f32[2,2]"], {"reduction": "mean"}, None, "f32[2,2]"),
    "all_gather": (["f32[2,3]"], {"participants": 4}, None, "f32[4,2,3]"),
    "collective_broadcast": (["s32[5]"], {"root": 1}, None, "s32[5]"),
    "send": (["f32[2]"], {"channel_id": 1, "device": "systolic:0"}, None, "()"),
    "recv": (["()"], {"channel_id": 1, "device": "cpu"}, "f32[2]", "f32[2]"),
    "fusion": (["f32[2]", "f32[2]"], {"kind": "loop", "calls": MUL_F32_2}, None, "f32[2]"),
    "custom_call": (["f32[2]"], {"call_target_name": "my_kernel"}, "(f32[2], s32[])", "(f32[2], s32[])"),
}

# opcode: [(operand shapes, attrs, declared, message regex), ...]
INVALID = {
    **{name: [(["s32[2]"], {}, None, f"{name} needs float operands, got s32")]
       for name, kind in ops.UNARY.items() if kind == "float"},
    "negate": [(["u8[2]"], {}, None, "negate needs signed operands, got u8"),
               (["(f32[2])"], {}, None, r"negate operand must be an array, got tuple \(f32\[2\]\)")],
    "abs": [(["pred[2]"], {}, None, "abs needs signed operands, got pred")],
    "sign": [(["u32[]"], {}, None, "sign needs signed operands, got u32")],
    "not": [(["f32[2]"], {}, None, "not needs logical operands, got f32")],
    "is_finite": [(["s32[2]"], {}, None, "is_finite needs float operands, got s32")],
    "convert": [(["f32[2,3]"], {}, "s32[3,2]", r"convert keeps dims: operand f32\[2,3\], result s32\[3,2\]"),
                (["f32[2]"], {}, None, "convert needs a declared result type")],
    **{name: [(["f32[2]", "f32[3]"], {}, None, rf"{name} operands must have the same shape and dtype, "
                                               r"got f32\[2\], f32\[3\]")]
       for name, (kind, _) in ops.BINARY.items() if kind in ("numeric", "any")},
    **{name: [(["f32[2]", "f32[2]"], {}, None, f"{name} needs logical operands, got f32")]
       for name, (kind, _) in ops.BINARY.items() if kind == "logical"},
    "add": [(["pred[2]", "pred[2]"], {}, None, "add needs numeric operands, got pred"),
            (["f32[2]", "f64[2]"], {}, None, "add operands must have the same shape and dtype")],
    "atan2": [(["s32[2]", "s32[2]"], {}, None, "atan2 needs float operands, got s32")],
    "compare": [(["s32[2]", "s32[2]"], {"direction": "LESS"}, None,
                 "compare attribute direction must be one of EQ, NE, LT, LE, GT, GE, got 'LESS'"),
                (["s32[2]", "u32[2]"], {"direction": "EQ"}, None, "compare operands must have the same shape")],
    "select": [(["s32[2]", "f32[2]", "f32[2]"], {}, None, r"select predicate must be pred, got s32\[2\]"),
               (["pred[3]", "f32[2]", "f32[2]"], {}, None, r"select predicate pred\[3\] must match operands f32\[2\]")],
    "clamp": [(["f32[2]", "f32[4]", "f32[]"], {}, None,
               r"clamp min must be a scalar or match the operand f32\[4\], got f32\[2\]"),
              (["s32[]", "f32[4]", "f32[]"], {}, None, "clamp min must be a scalar or match")],
    "parameter": [([], {"index": -1}, "f32[]", "parameter index must be >= 0, got -1"),
                  ([], {"index": 0}, None, "parameter needs a declared type"),
                  ([], {}, "f32[]", "parameter needs attribute index")],
    "constant": [([], {"value": lit(np.zeros(3, np.float32))}, "f32[4]",
                  r"constant of declared type f32\[4\] holds a value of shape \(3,\)"),
                 ([], {"value": lit(np.zeros(3, np.float64))}, "f32[3]", "holds float64 values"),
                 ([], {"value": 3.0}, None, "constant attribute value must be a literal array")],
    "iota": [([], {"iota_dimension": 2}, "s32[2,5]", r"iota_dimension \[2\] out of range for rank 2"),
             ([], {"iota_dimension": 0}, "pred[3]", "iota needs numeric operands, got pred")],
    "broadcast_in_dim": [
        (["f32[3]"], {"broadcast_dimensions": (0,)}, "f32[2,3]",
         r"broadcast_in_dim: operand dim 0 \(size 3\) cannot broadcast to result dim 0 \(size 2\)"),
        (["f32[3]"], {"broadcast_dimensions": (0, 1)}, "f32[3,3]", "must have one entry per operand dim"),
        (["f32[3]"], {"broadcast_dimensions": (1,)}, "s32[2,3]", "broadcast_in_dim keeps the dtype")],
    "reshape": [(["f32[2,3]"], {}, "f32[7]", r"reshape cannot turn f32\[2,3\] \(6 elements\) into f32\[7\] \(7 elements\)")],
    "transpose": [(["f32[2,3]"], {"permutation": (0, 0)}, None, r"transpose permutation \[0, 0\] is not a permutation of rank 2")],
    "slice": [(["f32[10]"], {"start_indices": (2,), "limit_indices": (11,)}, None,
               r"slice dim 0: need 0 <= start 2 <= limit 11 <= 10, stride 1 >= 1"),
              (["f32[10]"], {"start_indices": (0,), "limit_indices": (5,), "strides": (0,)}, None, "stride 0 >= 1"),
              (["f32[10,2]"], {"start_indices": (0,), "limit_indices": (5,)}, None, "one start/limit/stride per dim")],
    "dynamic_slice": [(["f32[5,4]", "s32[]"], {"slice_sizes": (2, 4)}, None, "needs one start index per dim of f32\\[5,4\\], got 1"),
                      (["f32[5]", "s32[1]"], {"slice_sizes": (2,)}, None, "dynamic_slice start index must be a scalar"),
                      (["f32[5]", "f32[]"], {"slice_sizes": (2,)}, None, "dynamic_slice start index needs integer operands"),
                      (["f32[5]", "s32[]"], {"slice_sizes": (6,)}, None, r"dynamic_slice sizes \[6\] must fit in f32\[5\]")],
    "dynamic_update_slice": [(["f32[5]", "f32[6]", "s32[]"], {}, None, r"update f32\[6\] must fit in operand f32\[5\]"),
                             (["f32[5]", "f32[2]"], {}, None, "needs one start index per dim")],
    "concatenate": [(["f32[2,3]", "f32[3,3]"], {"dimension": 1}, None, "concatenate operands must agree except in dim 1"),
                    (["f32[2]"], {"dimension": 1}, None, r"concatenate dimension \[1\] out of range for rank 1")],
    "pad": [(["f32[3]", "s32[]"], {"edge_padding_low": (0,), "edge_padding_high": (0,)}, None,
             r"pad value s32\[\] must have the operand's dtype f32"),
            (["f32[3]", "f32[]"], {"edge_padding_low": (-3,), "edge_padding_high": (-1,)}, None,
             "pad dim 0 would have negative size -1"),
            (["f32[3]", "f32[]"], {"edge_padding_low": (0,), "edge_padding_high": (0,), "interior_padding": (-1,)},
             None, "pad interior_padding must be >= 0")],
    "reverse": [(["f32[2,3]"], {"dimensions": (1, 1)}, None, r"reverse dimensions \[1, 1\] has repeated entries")],
    "gather": [(["f32[5,3]", "s32[4,2]"], {"offset_dims": (1,), "collapsed_slice_dims": (0,), "start_index_map": (0,),
                                           "index_vector_dim": 1, "slice_sizes": (1, 3)}, None,
                r"gather start_index_map \[0\] must have one entry per index component \(2\)"),
               (["f32[5,3]", "f32[4,1]"], {"offset_dims": (1,), "collapsed_slice_dims": (0,), "start_index_map": (0,),
                                           "index_vector_dim": 1, "slice_sizes": (1, 3)}, None,
                "gather start_indices needs integer operands"),
               (["f32[5,3]", "s32[4,1]"], {"offset_dims": (1,), "collapsed_slice_dims": (0,), "start_index_map": (0,),
                                           "index_vector_dim": 1, "slice_sizes": (2, 3)}, None,
                "gather collapsed_slice_dims must have size 1")],
    "scatter": [(["f32[5,3]", "s32[4]", "f32[5,3]"], {"update_window_dims": (1,), "inserted_window_dims": (0,),
                                                      "scatter_dims_to_operand_dims": (0,), "index_vector_dim": 1,
                                                      "to_apply": ADD_F32}, None,
                 r"scatter dims \[5\] must match indices batch dims \[4\]"),
                (["f32[5,3]", "s32[4]", "f32[4,3]"], {"update_window_dims": (1,), "inserted_window_dims": (0,),
                                                      "scatter_dims_to_operand_dims": (0,), "index_vector_dim": 1,
                                                      "to_apply": ADD_F64}, None,
                 r"scatter to_apply add_f64 must take 2 scalars \[f32\[\], f32\[\]\]")],
    "dot_general": [(["f32[2,3]", "f32[4,5]"], {"lhs_contracting_dims": (1,), "rhs_contracting_dims": (0,)}, None,
                     r"dot_general contracting dims differ: lhs f32\[2,3\] dim 1, rhs f32\[4,5\] dim 0"),
                    (["f32[2,3]", "s32[3,5]"], {"lhs_contracting_dims": (1,), "rhs_contracting_dims": (0,)}, None,
                     "dot_general operands must share a dtype"),
                    (["f32[2,3]", "f32[3]"], {"lhs_contracting_dims": (1,), "rhs_contracting_dims": (0,),
                                              "lhs_batching_dims": (0,)}, None,
                     "dot_general needs as many lhs as rhs batching dims")],
    "convolution": [(["f32[8,32,32,6]", "f32[3,3,4,16]"], {"dim_labels": "b01f_01io->b01f"}, None,
                     "convolution input features 6 must equal kernel input features 4 x feature_group_count 1"),
                    (["f32[8,32,32,6]", "f32[3,3,6,16]"], {"dim_labels": "b01f_01io"}, None,
                     "convolution dim_labels must look like 'b01f_01io->b01f', got 'b01f_01io'"),
                    (["f32[8,32,32,6]", "f32[3,3,6,16]"], {"dim_labels": "b01f_01io->b01f",
                                                          "feature_group_count": 2, "batch_group_count": 2}, None,
                     "convolution group counts must be >= 1 and not both > 1")],
    "reduce": [(["f32[2,3]", "f64[]"], {"dimensions": (0,), "to_apply": ADD_F32}, None,
                r"reduce init value f64\[\] must match input f32\[2,3\]"),
               (["f32[2,3]", "f32[]"], {"dimensions": (2,), "to_apply": ADD_F32}, None,
                r"reduce dimensions \[2\] out of range for rank 2"),
               (["f32[2,3]", "f32[]"], {"dimensions": (0,), "to_apply": ARGMAX}, None,
                "reduce to_apply argmax must take 2 scalars"),
               (["f32[2,3]", "f32[2,3]", "f32[]"], {"dimensions": (0,), "to_apply": ADD_F32}, None,
                "reduce takes N inputs then N init values, got 3 operands")],
    "reduce_window": [(["f32[4,6]", "f32[]"], {"window_dimensions": (2,), "to_apply": ADD_F32}, None,
                       "window attributes need 2 entries each"),
                      (["f32[4,6]", "f32[]"], {"window_dimensions": (2, 0), "to_apply": ADD_F32}, None,
                       "window dimensions and strides must be >= 1")],
    "select_and_scatter": [(["f32[4,6]", "f32[2,2]", "f32[]"], {"window_dimensions": (2, 2), "window_strides": (2, 2),
                                                                "select": GE_F32, "scatter": ADD_F32}, None,
                            r"select_and_scatter source f32\[2,2\] must have the windowed shape \[2, 3\]"),
                           (["f32[4,6]", "f32[2,3]", "f32[]"], {"window_dimensions": (2, 2), "window_strides": (2, 2),
                                                               "select": ADD_F32, "scatter": ADD_F32}, None,
                            "select_and_scatter select add_f32 must map two f32 scalars to pred")],
    "sort": [(["f32[3,5]", "s32[3,5]"], {"dimension": 1, "comparator": LT_F32}, None,
              r"sort comparator ge_f32 must take \[f32\[\], f32\[\], s32\[\], s32\[\]\] and return pred\[\]"),
             (["f32[3,5]", "s32[5,3]"], {"dimension": 1, "comparator": LT_F32_S32}, None, "sort operands must share dims"),
             (["f32[3,5]"], {"dimension": 2, "comparator": LT_F32}, None, r"sort dimension \[2\] out of range")],
    "while": [(["s32[]"], {"condition": COND_S32, "body": BODY_S32_TO_F32}, None,
               r"while body body_s32_to_f32 must map s32\[\] to itself"),
              (["f32[]"], {"condition": COND_S32, "body": BODY_S32}, None,
               r"while condition cond_s32 must map f32\[\] to pred\[\]")],
    "conditional": [(["pred[]", "f32[3]", "f32[3]", "f32[3]"], {"branch_computations": (NEG_F32_3, ABS_F32_3, NEG_F32_3)},
                     None, "a pred-indexed conditional has two branches"),
                    (["s32[]", "f32[3]"], {"branch_computations": (NEG_F32_3, ABS_F32_3)}, None,
                     "conditional needs one operand per branch: 2 branches, 1 operands"),
                    (["f32[]", "f32[3]"], {"branch_computations": (NEG_F32_3,)}, None,
                     r"conditional branch index must be pred\[\] or s32\[\], got f32\[\]"),
                    (["s32[]", "f32[3]", "f32[3]"], {"branch_computations": (NEG_F32_3, SUM_F32_3)}, None,
                     r"conditional branches must return the same type: f32\[3\] vs f32\[\] \(sum_f32_3\)")],
    "call": [(["f32[2]"], {"to_apply": MUL_F32_2}, None,
              r"call of mul_f32_2 takes \[f32\[2\], f32\[2\]\], given \[f32\[2\]\]")],
    "tuple": [(["f32[2]"], {"index": 0}, None, "tuple has no attribute index; it takes none")],
    "get_tuple_element": [(["(f32[2], s32[])"], {"index": 2}, None, "get_tuple_element index 2 out of range"),
                          (["f32[2]"], {"index": 0}, None, r"get_tuple_element needs a tuple operand, got f32\[2\]")],
    "rng_bit_generator": [(["u32[2]"], {}, "(u32[2], u32[3])", r"rng_bit_generator state must be u32\[4\]"),
                          (["u32[4]"], {}, "(u32[4], f32[3])", r"rng_bit_generator returns \(u32\[4\] new state"),
                          (["u32[4]"], {"algorithm": "threefry"}, "(u32[4], u32[3])",
                           "rng_bit_generator attribute algorithm must be one of philox")],
    "all_reduce": [(["f32[2]"], {"reduction": "prod"}, None, "all_reduce attribute reduction must be one of sum, mean, max, min"),
                   (["pred[2]"], {"reduction": "max"}, None, "all_reduce needs numeric operands, got pred")],
    "all_gather": [(["f32[2]"], {"participants": 0}, None, "all_gather needs participants >= 1, got 0")],
    "collective_broadcast": [(["f32[2]"], {"root": -1}, None, "collective_broadcast root must be >= 0, got -1")],
    "send": [(["(f32[2])"], {"channel_id": 1, "device": "cpu"}, None, "send operand must be an array"),
             (["f32[2]"], {"channel_id": "one", "device": "cpu"}, None, "send attribute channel_id must be an integer")],
    "recv": [(["f32[2]"], {"channel_id": 1, "device": "cpu"}, "f32[2]", r"recv's optional operand is the send token \(\)"),
             ([], {"channel_id": 1, "device": "cpu"}, None, "recv needs a declared array type")],
    "fusion": [(["f32[2]", "f32[2]"], {"kind": "elementwise", "calls": MUL_F32_2}, None,
                "fusion attribute kind must be one of loop, input, output"),
               (["f32[2]", "f32[3]"], {"kind": "loop", "calls": MUL_F32_2}, None,
                r"fusion of mul_f32_2 takes \[f32\[2\], f32\[2\]\], given \[f32\[2\], f32\[3\]\]")],
    "custom_call": [(["f32[2]"], {"call_target_name": "k"}, None, "custom_call needs a declared result type"),
                    (["f32[2]"], {}, "f32[2]", "custom_call needs attribute call_target_name")],
}


def _declared(text):
    return None if text is None else sh(text)


@pytest.mark.parametrize("opcode", sorted(VALID))
def test_valid_use(opcode):
    shapes, attrs, declared, expected = VALID[opcode]
    result = ops.infer_shape(opcode, [sh(s) for s in shapes], attrs, _declared(declared))
    assert result == sh(expected)


INVALID_CASES = [pytest.param(opcode, *case, id=f"{opcode}-{i}")
                 for opcode, cases in sorted(INVALID.items()) for i, case in enumerate(cases)]


@pytest.mark.parametrize("opcode,shapes,attrs,declared,message", INVALID_CASES)
def test_broken_rule(opcode, shapes, attrs, declared, message):
    with pytest.raises(ShapeError, match=message):
        ops.infer_shape(opcode, [sh(s) for s in shapes], attrs, _declared(declared))


def test_every_op_has_a_valid_and_a_broken_case():
    assert set(VALID) == set(ops.OPS), set(ops.OPS) ^ set(VALID)
    assert set(INVALID) == set(ops.OPS), set(ops.OPS) ^ set(INVALID)


# ----------------------------------------------------------------------------- generic checks

def test_unknown_op():
    with pytest.raises(ShapeError, match="unknown op 'frobnicate'"):
        ops.infer_shape("frobnicate", [], {})


@pytest.mark.parametrize("opcode,count,message", [
    ("add", 1, "add takes 2 operands, got 1"),
    ("negate", 2, "negate takes 1 operands, got 2"),
    ("recv", 2, "recv takes 0 to 1 operands, got 2"),
    ("reduce", 1, "reduce takes 2 or more operands, got 1"),
    ("iota", 1, "iota takes 0 operands, got 1"),
])
def test_arity(opcode, count, message):
    with pytest.raises(ShapeError, match=message):
        ops.infer_shape(opcode, [sh("f32[]")] * count, {})


def test_unknown_and_missing_attributes():
    with pytest.raises(ShapeError, match="transpose has no attribute perm; it takes permutation"):
        ops.infer_shape("transpose", [sh("f32[2]")], {"perm": (0,)})
    with pytest.raises(ShapeError, match="transpose needs attribute permutation"):
        ops.infer_shape("transpose", [sh("f32[2]")], {})


@pytest.mark.parametrize("opcode,attrs,message", [
    ("transpose", {"permutation": 0}, "transpose attribute permutation must be a list of integers, got 0"),
    ("get_tuple_element", {"index": True}, "get_tuple_element attribute index must be an integer, got True"),
    ("pad", {"edge_padding_low": (0,), "edge_padding_high": (0,), "interior_padding": (0.5,)},
     "pad attribute interior_padding must be a list of integers"),
    ("reduce_window", {"window_dimensions": (1,), "padding": ((0, 0, 0),), "to_apply": ADD_F32},
     r"reduce_window attribute padding must be a list of \(low, high\) integer pairs"),
    ("sort", {"dimension": 0, "is_stable": 1, "comparator": LT_F32}, "sort attribute is_stable must be true or false"),
    ("custom_call", {"call_target_name": 3}, "custom_call attribute call_target_name must be a string"),
    ("while", {"condition": "cond", "body": BODY_S32}, "while attribute condition must be a computation"),
    ("conditional", {"branch_computations": NEG_F32_3}, "conditional attribute branch_computations must be a list of computations"),
])
def test_attribute_kinds_are_checked(opcode, attrs, message):
    with pytest.raises(ShapeError, match=message):
        ops.normalize_attrs(opcode, attrs)


def test_defaults_are_filled_in():
    attrs = ops.normalize_attrs("dot_general", {"lhs_contracting_dims": [1], "rhs_contracting_dims": [0]})
    assert attrs["lhs_batching_dims"] == () and attrs["rhs_batching_dims"] == ()
    assert attrs["lhs_contracting_dims"] == (1,)              # lists are frozen to tuples
    assert ops.normalize_attrs("slice", {"start_indices": (0,), "limit_indices": (1,)})["strides"] is None
    assert ops.normalize_attrs("sort", {"dimension": 0, "comparator": LT_F32})["is_stable"] is False


def test_declared_result_must_match_the_inferred_one():
    with pytest.raises(ShapeError, match=r"add produces f32\[2\], but the instruction declares f32\[3\]"):
        ops.infer_shape("add", [sh("f32[2]")] * 2, {}, sh("f32[3]"))
    with pytest.raises(ShapeError, match=r"add produces f32\[2\], but the instruction declares s32\[2\]"):
        ops.infer_shape("add", [sh("f32[2]")] * 2, {}, sh("s32[2]"))
    laid_out = Shape("f32", (2, 3), layout=(0, 1))          # layouts may differ
    assert ops.infer_shape("negate", [sh("f32[2,3]")], {}, laid_out) is laid_out


def test_window_output_size():
    assert ops.window_output_size(10, 3, 1, 0, 0) == 8
    assert ops.window_output_size(10, 3, 2, 1, 1) == 5
    assert ops.window_output_size(4, 2, 1, 0, 0, base_dilation=2) == 6
    assert ops.window_output_size(5, 3, 1, 0, 0, window_dilation=2) == 1
    assert ops.window_output_size(2, 3, 1, 0, 0) == 0
    assert ops.window_output_size(0, 1, 1, 0, 0) == 0


def test_parse_dim_labels():
    dn = ops.parse_dim_labels("b01f_01io->b01f")
    assert (dn.input_batch, dn.input_feature, dn.input_spatial) == (0, 3, (1, 2))
    assert (dn.kernel_in, dn.kernel_out, dn.kernel_spatial) == (2, 3, (0, 1))
    assert (dn.output_batch, dn.output_feature, dn.output_spatial) == (0, 3, (1, 2))
    with pytest.raises(ShapeError, match="must use bf and 0..1 once"):
        ops.parse_dim_labels("bb01_01io->b01f")


def test_op_groups_and_flags():
    assert set(ops.ops_in_group("unary")) >= {"exp", "convert", "is_finite"}
    assert ops.OPS["add"].commutative and not ops.OPS["subtract"].commutative
    assert all(ops.OPS[name].side_effects for name in ("send", "recv", "all_reduce", "all_gather",
                                                               "collective_broadcast", "custom_call"))
    assert all(ops.OPS[name].elementwise for name in ("select", "clamp", "compare", "convert"))
