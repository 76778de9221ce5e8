"""Prints a Module as HLO text (the format `parser.py` reads back).

    HloModule mlp

    add.1 {
      a = f32[] parameter(0)
      b = f32[] parameter(1)
      ROOT s = f32[] add(a, b)
    }

    ENTRY main {
      x = f32[256,784] parameter(0)                    # samples/mlp.py:14
      r = f32[256] reduce(d, z), dimensions={1}, to_apply=add.1
      ROOT out = (f32[256]) tuple(r)
    }

Each piece (name, shape, literal, attribute, instruction, computation) has its own small
function. The printer never fails on a half-built module: it is what `str(module)` shows
while debugging, so missing roots, unknown opcodes and odd attribute values still print.
"""
from __future__ import annotations

import json
import math
import re

import numpy as np

from . import ops
from .dtypes import DType
from .ir import Computation, Instruction, Literal, Module, Shape, SourceLoc, TupleShape

# Constants with more elements than this print as `{...}` plus a digest, unless asked.
ELIDE_CONSTANTS_ABOVE = 16
DIGEST_CHARS = 16
# Source-location comments start at this column when the instruction is shorter.
LOC_COLUMN = 52

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
# Words the grammar reserves; a computation or instruction with such a name is quoted.
KEYWORDS = frozenset({"HloModule", "ENTRY", "ROOT"})
# Ops whose one attribute is printed inside the parentheses instead of operands.
PAREN_ATTR = {"parameter": "index", "constant": "value"}


# ----------------------------------------------------------------------------- names

def print_name(name: str) -> str:
    """A bare name when the grammar reads it back as one, else a quoted string."""
    if NAME_RE.fullmatch(name) and name not in KEYWORDS:
        return name
    return print_string(name)


def print_string(text: str) -> str:
    # JSON escapes are a subset of what the parser's string reader (json.loads) accepts.
    return json.dumps(text, ensure_ascii=False)


# ----------------------------------------------------------------------------- shapes

def print_shape(shape) -> str:
    if isinstance(shape, TupleShape):
        return "(" + ", ".join(print_shape(e) for e in shape.elements) + ")"
    text = f"{shape.dtype.name}[{','.join(str(d) for d in shape.dims)}]"
    if shape.layout is not None:
        text += "{" + ",".join(str(d) for d in shape.layout) + "}"
    return text


# ----------------------------------------------------------------------------- literals

def _unsigned_view(array: np.ndarray) -> np.ndarray:
    return array.view(np.dtype(f"u{array.dtype.itemsize}"))


def _canonical_nan_bits(npdtype: np.dtype) -> int:
    return int(_unsigned_view(np.array([np.nan], dtype=npdtype))[0])


def _print_nan(bits: int, canonical: int, sign_bit: int) -> str:
    """`nan`, `-nan`, or `nan0x<bits>` for a NaN with another payload, so bytes round-trip."""
    if bits == canonical:
        return "nan"
    if bits == canonical | sign_bit:
        return "-nan"
    return f"nan0x{bits:x}"


def _float_texts(array: np.ndarray) -> list[str]:
    texts = [repr(v) for v in array.ravel().tolist()]   # shortest exact float64 repr
    nan_at = np.flatnonzero(np.isnan(array))
    if nan_at.size:
        bits = _unsigned_view(array.ravel())
        canonical = _canonical_nan_bits(array.dtype)
        sign_bit = 1 << (array.dtype.itemsize * 8 - 1)
        for i in nan_at.tolist():
            texts[i] = _print_nan(int(bits[i]), canonical, sign_bit)
    return texts


def _element_texts(array: np.ndarray, dtype: DType) -> list[str]:
    if dtype.is_pred or array.dtype == np.bool_:
        return ["true" if v else "false" for v in array.ravel().tolist()]
    if array.dtype.kind == "f":
        return _float_texts(array)
    return [str(v) for v in array.ravel().tolist()]


def _nest(texts: list[str], dims: tuple[int, ...]) -> str:
    """Flat row-major element texts -> nested braces, one level per dimension."""
    if not dims:
        return texts[0]
    if len(dims) == 1:
        return "{" + ", ".join(texts) + "}"
    step = math.prod(dims[1:])
    rows = (_nest(texts[i * step:(i + 1) * step], dims[1:]) for i in range(dims[0]))
    return "{" + ", ".join(rows) + "}"


def print_literal(literal: Literal, dtype: DType | None = None) -> str:
    """The literal's values as nested braces (a 0-d literal is its bare value)."""
    array = literal.array
    return _nest(_element_texts(array, dtype or _dtype_of(array)), array.shape)


def _dtype_of(array: np.ndarray) -> DType:
    from . import dtypes
    return dtypes.from_numpy(array.dtype)


def _is_elided(literal: Literal, full_constants: bool) -> bool:
    return not full_constants and literal.array.size > ELIDE_CONSTANTS_ABOVE


# ----------------------------------------------------------------------------- attributes

def print_attr_value(value, spec: ops.AttrSpec | None = None) -> str:
    """Printed by Python type; the schema only decides enum (bare word) versus string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return value if spec is not None and spec.kind == "enum" else print_string(value)
    if isinstance(value, Computation):
        return print_name(value.name)
    if isinstance(value, Literal):
        return print_literal(value)
    if isinstance(value, tuple):
        separator = ", " if any(isinstance(v, Computation) for v in value) else ","
        return "{" + separator.join(print_attr_value(v, spec) for v in value) + "}"
    return print_string(repr(value))   # not a schema kind: shown, the parser will refuse it


def _printed_attrs(instr: Instruction) -> list[tuple[str, object, ops.AttrSpec | None]]:
    """(name, value, spec) in schema order, then unknown ones; defaults are left out."""
    schema = ops.OPS[instr.opcode].attrs if instr.opcode in ops.OPS else {}
    skip = PAREN_ATTR.get(instr.opcode)
    shown = []
    for name, spec in schema.items():
        if name in instr.attrs and name != skip:
            value = instr.attrs[name]
            if spec.required or not _equals_default(value, spec.default):
                shown.append((name, value, spec))
    shown += [(name, instr.attrs[name], None) for name in instr.attrs if name not in schema]
    return shown


def _equals_default(value, default) -> bool:
    return type(value) is type(default) and value == default


def print_attrs(instr: Instruction, full_constants: bool = False) -> str:
    parts = [f"{name}={print_attr_value(value, spec)}" for name, value, spec in _printed_attrs(instr)]
    value = instr.attrs.get("value")
    if instr.opcode == "constant" and isinstance(value, Literal) and _is_elided(value, full_constants):
        parts.append(f"digest={value.digest[:DIGEST_CHARS]}")
    return "".join(", " + p for p in parts)


# ----------------------------------------------------------------------------- instructions

def _print_paren_attr(instr: Instruction, full_constants: bool) -> str:
    value = instr.attrs.get(PAREN_ATTR[instr.opcode])
    if isinstance(value, Literal):
        if _is_elided(value, full_constants):
            return "{...}"
        dtype = instr.shape.dtype if isinstance(instr.shape, Shape) else None
        return print_literal(value, dtype)
    return "" if value is None else print_attr_value(value)


def print_args(instr: Instruction, full_constants: bool = False) -> str:
    if instr.opcode in PAREN_ATTR:
        return _print_paren_attr(instr, full_constants)
    return ", ".join(print_name(o.name) for o in instr.operands)


def print_locs(locs: tuple[SourceLoc, ...]) -> str:
    return ", ".join(f"{_print_loc_file(loc.file)}:{loc.line}" for loc in locs)


_PLAIN_FILE_RE = re.compile(r'[^\s,"\\#]+')


def _print_loc_file(file: str) -> str:
    # A file name the location comment could misread (commas, spaces, quotes) is quoted.
    return file if _PLAIN_FILE_RE.fullmatch(file) else print_string(file)


def print_instruction(instr: Instruction, is_root: bool = False, full_constants: bool = False) -> str:
    text = (f"{'ROOT ' if is_root else ''}{print_name(instr.name)} = {print_shape(instr.shape)} "
            f"{instr.opcode}({print_args(instr, full_constants)}){print_attrs(instr, full_constants)}")
    if instr.locs:
        text = f"{text.ljust(LOC_COLUMN)}  # {print_locs(instr.locs)}"
    return text


# ----------------------------------------------------------------------------- computations and modules

def print_computation(comp: Computation, is_entry: bool = False, full_constants: bool = False) -> str:
    lines = [f"{'ENTRY ' if is_entry else ''}{print_name(comp.name)} {{"]
    for instr in comp.instructions:
        lines.append("  " + print_instruction(instr, instr is comp.root, full_constants))
    lines.append("}")
    return "\n".join(lines)


def computation_order(module: Module) -> list[Computation]:
    """Unreachable computations first, then the reachable ones callees-first (entry last)."""
    reachable = module.reachable_computations()
    seen = {id(c) for c in reachable}
    return [c for c in module.computations if id(c) not in seen] + reachable


def print_module(module: Module, full_constants: bool = False) -> str:
    """The module as HLO text; constants above 16 elements are elided unless `full_constants`."""
    parts = [f"HloModule {print_name(module.name)}"]
    for comp in computation_order(module):
        parts.append(print_computation(comp, comp is module.entry, full_constants))
    return "\n\n".join(parts) + "\n"
