"""Structural equality of modules: same computations, instructions, types, attributes, locations.

`module_structure` turns a module into plain Python data (dicts, lists, tuples, strings,
numbers, bytes) in which instructions and computations are referred to by name, so two
modules built separately -- e.g. one printed and parsed back -- compare with `==`, and
the first difference can be named by its path.

Attributes are compared through the op's schema (missing optional ones count as their
default), so a module built with raw `Instruction(...)` calls equals its normalized twin.
"""
from __future__ import annotations

from . import ops
from .ir import Computation, Instruction, Literal, Module, Shape, TupleShape


def shape_structure(shape) -> tuple:
    if isinstance(shape, TupleShape):
        return ("tuple", tuple(shape_structure(e) for e in shape.elements))
    if isinstance(shape, Shape):
        return ("array", shape.dtype.name, shape.dims, shape.layout)
    return ("unknown", repr(shape))


def _value_structure(value, kind: str | None):
    if isinstance(value, Computation):
        return ("computation", value.name)
    if isinstance(value, Literal):
        return ("literal", str(value.array.dtype), value.array.shape, value.array.tobytes())
    if isinstance(value, tuple):
        return tuple(_value_structure(v, kind) for v in value)
    if kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return ("float", float(value).hex())      # hex: nan == nan, -0.0 != 0.0
    return value


def attrs_structure(instr: Instruction) -> dict:
    schema = ops.OPS[instr.opcode].attrs if instr.opcode in ops.OPS else {}
    result = {}
    for name, spec in schema.items():
        value = instr.attrs.get(name, None if spec.required else spec.default)
        result[name] = _value_structure(value, spec.kind)
    for name in instr.attrs:
        if name not in schema:
            result[name] = _value_structure(instr.attrs[name], None)
    return result


def instruction_structure(instr: Instruction) -> dict:
    return {
        "name": instr.name,
        "opcode": instr.opcode,
        "operands": [o.name for o in instr.operands],
        "shape": shape_structure(instr.shape),
        "attrs": attrs_structure(instr),
        "locs": [(loc.file, loc.line) for loc in instr.locs],
    }


def computation_structure(comp: Computation) -> dict:
    return {
        "parameters": [p.name for p in comp.parameters],
        "instructions": [instruction_structure(i) for i in comp.instructions],
        "root": comp.root.name if comp.root is not None else None,
    }


def module_structure(module: Module) -> dict:
    """Plain nested data describing `module`; equal modules give equal data."""
    return {
        "name": module.name,
        "entry": module.entry.name if module.entry is not None else None,
        "computations": {c.name: computation_structure(c) for c in module.computations},
    }


def structurally_equal(a: Module, b: Module) -> bool:
    return module_structure(a) == module_structure(b)


def first_difference(a, b, path: str = "module") -> str | None:
    """The path and values of the first place two structures differ, or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            if key not in a or key not in b:
                side = "first" if key in a else "second"
                return f"{path}[{key!r}]: only in the {side} module"
            found = first_difference(a[key], b[key], f"{path}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and type(a) is type(b):
        for i, (x, y) in enumerate(zip(a, b)):
            found = first_difference(x, y, f"{path}[{i}]")
            if found:
                return found
        if len(a) != len(b):
            return f"{path}: length {len(a)} != {len(b)}"
        return None
    if a != b:
        return f"{path}: {_short(a)} != {_short(b)}"
    return None


def _short(value, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def assert_structurally_equal(a: Module, b: Module) -> None:
    """Raise AssertionError naming the first difference between the two modules."""
    difference = first_difference(module_structure(a), module_structure(b))
    if difference is not None:
        raise AssertionError(f"modules {a.name!r} and {b.name!r} differ at {difference}")
