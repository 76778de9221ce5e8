"""The verifier: each broken invariant is caught, and the message names the computation,
the instruction, the rule and the user's source line."""
from __future__ import annotations

import numpy as np
import pytest

from tessel.compiler import verifier
from tessel.compiler.ir import Builder, Computation, Instruction, Module, Shape, SourceLoc
from tessel.compiler.verifier import VerifyError

F32 = Shape("f32", ())
F32_2 = Shape("f32", (2,))
LOC = (SourceLoc("model.py", 12),)


def add_computation(module, name="add", dtype="f32"):
    b = Builder(module, name)
    x, y = b.parameter(Shape(dtype, ()), "x"), b.parameter(Shape(dtype, ()), "y")
    return b.build(b.emit("add", [x, y]))


def simple_module():
    """main(x: f32[2]) = x * x + x, every instruction from model.py:12."""
    m = Module("model")
    b = Builder(m, "main")
    b.loc = LOC
    x = b.parameter(F32_2, "x")
    sq = b.emit("multiply", [x, x], name="sq")
    b.build(b.emit("add", [sq, x], name="out"), entry=True)
    return m


def instr(m, name):
    return next(i for c in m.computations for i in c.instructions if i.name == name)


def check_fails(module, *fragments):
    with pytest.raises(VerifyError) as info:
        verifier.verify(module)
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))
    return str(info.value)


def test_a_valid_module_verifies():
    m = simple_module()
    assert verifier.verify(m) is None


def test_a_valid_module_with_nested_computations_verifies():
    m = Module("nested")
    add = add_computation(m)
    b = Builder(m, "main")
    x = b.parameter(Shape("f32", (3, 4)), "x")
    b.build(b.emit("reduce", [x, b.constant(np.float32(0))], {"dimensions": (1,), "to_apply": add}), entry=True)
    verifier.verify(m)


def test_operand_used_before_definition():
    m = simple_module()
    main = m.entry
    sq = instr(m, "sq")
    main.instructions.remove(sq)
    main.instructions.append(sq)                 # out now reads sq before it is defined
    check_fails(m, "in computation main", "instruction out (add)", "at model.py:12",
                "operand 0 (sq) is not defined earlier in this computation")


def test_operand_from_another_computation():
    m = simple_module()
    other = simple_module()
    out = instr(m, "out")
    out.operands[1] = instr(other, "x")
    check_fails(m, "instruction out (add) at model.py:12", "operand 1 (x) is not defined earlier")


def test_duplicate_names():
    m = simple_module()
    instr(m, "out").name = "sq"
    check_fails(m, "in computation main, instruction sq (add) at model.py:12", "name 'sq' is defined twice")


def test_bad_parameter_indices():
    m = Module("params")
    b = Builder(m, "main")
    x = b.parameter(F32, "x")
    y = b.emit("parameter", [], {"index": 2}, shape=F32, name="y")
    b.build(b.emit("add", [x, y]), entry=True)
    check_fails(m, "in computation main", "parameter indices must be 0..1, got [0, 2]")


def test_negative_parameter_index_breaks_the_parameter_rule():
    m = simple_module()
    x = instr(m, "x")
    x.attrs = x.attrs.replace(index=-1)
    check_fails(m, "instruction x (parameter) at model.py:12", "parameter index must be >= 0, got -1")


def test_missing_root():
    m = simple_module()
    m.entry.root = None
    check_fails(m, "in computation main", "has no root instruction")


def test_root_from_another_computation():
    m = simple_module()
    m.entry.root = instr(simple_module(), "out")
    check_fails(m, "in computation main", "the root is not an instruction of this computation")


def test_instruction_shape_differing_from_the_rule():
    m = simple_module()
    instr(m, "sq").shape = Shape("f32", (3,))
    message = check_fails(m, "in computation main, instruction sq (multiply) at model.py:12",
                          "multiply produces f32[2], but the instruction declares f32[3]")
    assert message.count("model.py:12") == 1


def test_operand_types_breaking_the_rule():
    m = simple_module()
    instr(m, "x").shape = Shape("s32", (2,))     # the parameter is fine, its users are not
    check_fails(m, "instruction sq (multiply) at model.py:12",
                "multiply produces s32[2], but the instruction declares f32[2]")


def test_calling_a_computation_not_in_the_module():
    m = Module("calls")
    stray = add_computation(Module("elsewhere"))
    b = Builder(m, "main")
    b.loc = LOC
    x, y = b.parameter(F32, "x"), b.parameter(F32, "y")
    b.build(b.emit("call", [x, y], {"to_apply": stray}, name="c"), entry=True)
    check_fails(m, "in computation main, instruction c (call) at model.py:12",
                "calls computation add, which is not in the module")


def test_bad_reducer_signature():
    m = Module("reducer")
    add64 = add_computation(m, "add64", "f64")
    main = Computation("main")
    x = Instruction("x", "parameter", [], Shape("f32", (3,)), {"index": 0}, LOC)
    zero = Instruction("zero", "constant", [], F32, {"value": np.zeros((), np.float32)}, LOC)
    total = Instruction("total", "reduce", [x, zero], F32, {"dimensions": (0,), "to_apply": add64}, LOC)
    for i in (x, zero, total):
        main.add(i)
    main.root = total
    m.add_computation(main, entry=True)
    check_fails(m, "in computation main, instruction total (reduce) at model.py:12",
                "reduce to_apply add64 must take 2 scalars [f32[], f32[]], takes [f64[], f64[]]")


def test_errors_inside_nested_computations_name_them():
    m = Module("nested")
    add = add_computation(m, "sum")
    add.root.shape = Shape("f32", (1,))
    b = Builder(m, "main")
    b.build(b.parameter(F32, "x"), entry=True)
    check_fails(m, f"in computation sum, instruction {add.root.name} (add) at <unknown location>",
                "add produces f32[], but the instruction declares f32[1]")


def test_several_source_locations_are_all_named():
    m = simple_module()
    instr(m, "out").locs = (SourceLoc("model.py", 12), SourceLoc("layers.py", 40))
    instr(m, "out").shape = Shape("f64", (2,))
    check_fails(m, "instruction out (add) at model.py:12, layers.py:40")


def test_module_without_entry():
    m = Module("no_entry")
    add_computation(m)
    check_fails(m, "module no_entry has no entry computation")


def test_two_computations_with_one_name():
    m = simple_module()
    add_computation(m, "main_twin").name = "main"
    check_fails(m, "module model has two computations named 'main'")


def test_entry_not_among_the_computations():
    m = simple_module()
    m.entry = simple_module().entry
    check_fails(m, "the entry main is not among its computations")


def test_verify_error_is_a_value_error():
    assert issubclass(VerifyError, ValueError)
