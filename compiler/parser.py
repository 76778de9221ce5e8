"""Parses HLO text (the printer's output, or hand-written test input) into a Module.

Two steps:
1. lark (LALR, grammar in `hlo.lark`) turns the text into small syntax records that keep
   line and column: computations, instructions, and generic `value`s (numbers, words,
   strings, brace lists). Nesting depth is capped while the records are built.
2. `_read_module` gives the records meaning from the op table: an attribute value is
   read by its `AttrSpec.kind` (one reader per kind in `ATTR_READERS`), a constant's
   literal by its declared type, operands by name. Every instruction then goes through
   `ops.normalize_attrs` and `ops.infer_shape`, so text whose declared type breaks the
   op's rule is refused like a Builder call would be.

Every error is an `HloParseError` naming line and column, what was expected and what was
found, with the offending source line and a caret.
"""
from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import lark
import numpy as np

from . import dtypes, ops
from .dtypes import DType
from .ir import Computation, Instruction, Literal, Module, Shape, SourceLoc, TupleShape
from .printer import PAREN_ATTR

# Limits that keep hostile input a clean error instead of a crash or a huge allocation.
MAX_NESTING = 64            # brace lists and tuple shapes
MAX_NUMBER_CHARS = 400      # longer numbers are refused before int()/float() see them
MAX_DIM = 2 ** 62           # a dimension size
MAX_INT = 2 ** 63           # |integer attribute| must be below this


class HloParseError(ValueError):
    """Malformed HLO text. `.line` and `.column` are 1-based; `.reason` is the bare message."""

    def __init__(self, line: int, column: int, reason: str):
        self.line, self.column, self.reason = line, column, reason
        super().__init__(f"line {line}, column {column}: {reason}")

    def show_source(self, text: str) -> None:
        """Append the offending source line and a caret under the column to the message."""
        lines = text.splitlines()
        if not 1 <= self.line <= len(lines):
            return
        source, caret = _excerpt(lines[self.line - 1], self.column)
        self.args = (f"{self.args[0]}\n    {source}\n    {caret}",)


def _excerpt(line: str, column: int, width: int = 100) -> tuple[str, str]:
    start = max(0, min(column - 1 - width // 2, len(line) - width))
    shown = line[start:start + width].replace("\t", " ")
    prefix, suffix = ("..." if start else ""), ("..." if start + width < len(line) else "")
    return prefix + shown + suffix, " " * (len(prefix) + column - 1 - start) + "^"


@dataclass(frozen=True)
class _Where:
    line: int
    column: int


def _fail(where, reason: str):
    """Raise at `where`: anything with .line/.column (a token or a record)."""
    raise HloParseError(where.line, where.column, reason)


# ----------------------------------------------------------------------------- syntax records

@dataclass(frozen=True)
class Scalar:
    """A number or a bare word, sign included: 3, -2.5e3, inf, -nan, add.1, true."""
    text: str
    line: int
    column: int
    is_word: bool
    depth = 0


@dataclass(frozen=True)
class Text:
    """A double-quoted string, unescaped."""
    value: str
    line: int
    column: int
    depth = 0


@dataclass(frozen=True)
class Braces:
    """`{v, v, ...}` holding nested lists or strings."""
    items: tuple
    line: int
    column: int
    depth: int


@dataclass(frozen=True)
class FlatBraces:
    """`{a, b, c}` with no nested braces or strings, kept as one token until needed."""
    token: lark.Token
    depth = 1

    @property
    def line(self):
        return self.token.line

    @property
    def column(self):
        return self.token.column

    @functools.cached_property
    def texts(self) -> list[str]:
        inner = self.token.value[1:-1]
        if not inner.strip():
            return []
        texts = [part.strip() for part in inner.split(",")]
        if "" in texts:
            self._fail_at(texts.index(""), "expected a value between commas")
        return texts

    @property
    def items(self) -> tuple[Scalar, ...]:
        texts = self.texts
        return tuple(Scalar(t, *self.position(i), is_word=_is_word(t)) for i, t in enumerate(texts))

    def is_elided(self) -> bool:
        return self.token.value[1:-1].strip() == "..."

    def position(self, index: int) -> tuple[int, int]:
        """Line and column of item `index` (used for errors and for small lists only)."""
        parts = self.token.value[1:-1].split(",")
        offset = 1 + sum(len(p) + 1 for p in parts[:index])
        offset += len(parts[index]) - len(parts[index].lstrip())
        before = self.token.value[:offset]
        newlines = before.count("\n")
        if newlines:
            return self.token.line + newlines, offset - before.rindex("\n")
        return self.token.line, self.token.column + offset

    def _fail_at(self, index: int, reason: str):
        raise HloParseError(*self.position(index), reason)


def _is_word(text: str) -> bool:
    return bool(re.match(r"-?[A-Za-z_]", text))


@dataclass(frozen=True)
class LocatedShape:
    shape: Shape | TupleShape
    line: int
    column: int
    depth: int


@dataclass
class InstrRecord:
    name: str
    name_at: lark.Token
    is_root: bool
    shape: LocatedShape
    opcode: lark.Token
    args: list
    attrs: list          # [(name token, value)]
    loc: lark.Token | None


@dataclass
class CompRecord:
    name: str
    name_at: lark.Token
    is_entry: bool
    instructions: list[InstrRecord]
    close: lark.Token


@dataclass
class ModuleRecord:
    name: str
    name_at: lark.Token
    computations: list[CompRecord] = field(default_factory=list)


def _read_name(token: lark.Token) -> str:
    if token.type != "STRING":
        return token.value
    return _unquote(token.value, token)


def _unquote(quoted: str, where) -> str:
    try:
        return json.loads(quoted)
    except json.JSONDecodeError as e:
        _fail(where, f"bad string {quoted[:40]}: {e.msg}")


def _check_depth(depth: int, where) -> int:
    if depth > MAX_NESTING:
        _fail(where, f"nested deeper than {MAX_NESTING} levels")
    return depth


class _Syntax(lark.Transformer):
    """lark callbacks, run during the LALR parse, that build the records above."""

    def start(self, children):
        header, *comps = children
        header.computations = comps
        return header

    def module_header(self, children):
        token = children[-1]
        return ModuleRecord(_read_name(token), token)

    def computation(self, children):
        is_entry = children[0].type == "ENTRY"
        name_token = children[1] if is_entry else children[0]
        instructions = [c for c in children if isinstance(c, InstrRecord)]
        return CompRecord(_read_name(name_token), name_token, is_entry, instructions, children[-1])

    def instruction(self, children):
        rest = list(children)
        is_root = isinstance(rest[0], lark.Token) and rest[0].type == "ROOT"
        if is_root:
            rest.pop(0)
        name_token, shape, opcode, _lpar, *rest = rest
        close = next(i for i, c in enumerate(rest) if isinstance(c, lark.Token) and c.type == "RPAR")
        args, tail = rest[:close], rest[close + 1:]
        loc = tail.pop() if tail and isinstance(tail[-1], lark.Token) else None
        if opcode == "constant" and args and isinstance(args[0], FlatBraces) and args[0].is_elided():
            _fail_elided(args[0])   # now: the digest after it need not even lex as one token
        return InstrRecord(_read_name(name_token), name_token, is_root, shape, opcode, args, tail, loc)

    def attribute(self, children):
        name, value = children
        return name, value

    def array_shape(self, children):
        dtype_token, *rest = children
        layout = rest.pop() if rest and isinstance(rest[-1], tuple) else None
        dims = tuple(_read_dim(t) for t in rest)
        dtype = _read_dtype(dtype_token)
        if layout is not None:
            _check_layout(layout, len(dims), dtype_token)
        try:
            shape = Shape(dtype, dims, layout)
        except ValueError as e:      # e.g. more bytes than an array may have
            _fail(dtype_token, str(e))
        return LocatedShape(shape, dtype_token.line, dtype_token.column, 0)

    def layout(self, children):
        return tuple(_read_dim(t) for t in children if t.type == "NUMBER")

    def tuple_shape(self, children):
        lpar, elements = children[0], [c for c in children if isinstance(c, LocatedShape)]
        depth = _check_depth(1 + max((e.depth for e in elements), default=0), lpar)
        return LocatedShape(TupleShape(e.shape for e in elements), lpar.line, lpar.column, depth)

    def number(self, children):
        return Scalar("".join(children), children[0].line, children[0].column, is_word=False)

    def word(self, children):
        return Scalar("".join(children), children[0].line, children[0].column, is_word=True)

    def string(self, children):
        (token,) = children
        return Text(_unquote(token.value, token), token.line, token.column)

    def flat_list(self, children):
        return FlatBraces(children[0])

    def nested_list(self, children):
        lbrace, items = children[0], tuple(children[1:-1])
        depth = _check_depth(1 + max((i.depth for i in items), default=0), lbrace)
        return Braces(items, lbrace.line, lbrace.column, depth)


def _read_dim(token: lark.Token) -> int:
    if not token.value.isdigit():
        _fail(token, f"expected a dimension size (a non-negative integer), found {token.value!r}")
    if len(token.value) > 19 or int(token.value) > MAX_DIM:
        _fail(token, f"dimension size {_clip(token.value)} is too large (the limit is 2^62)")
    return int(token.value)


def _read_dtype(token: lark.Token) -> DType:
    if token.value not in dtypes.BY_NAME:
        known = ", ".join(dtypes.BY_NAME)
        _fail(token, f"unknown element type {token.value!r}; expected one of {known}")
    return dtypes.BY_NAME[token.value]


def _check_layout(layout: tuple[int, ...], rank: int, where) -> None:
    if sorted(layout) != list(range(rank)):
        _fail(where, f"layout {{{','.join(map(str, layout))}}} must be a permutation of "
                     f"0..{rank - 1} (minor-to-major) for a rank-{rank} shape")


def _clip(text: str, n: int = 24) -> str:
    return text if len(text) <= n else text[:n] + "..."


# ----------------------------------------------------------------------------- lark errors

_TERMINAL_TEXT = {
    "NAME": "a name", "NUMBER": "a number", "STRING": "a quoted string",
    "FLAT_LIST": "'{'", "LOC": "a '# file:line' location comment", "$END": "end of input",
}


@functools.lru_cache(maxsize=None)
def _lark() -> lark.Lark:
    grammar = Path(__file__).with_name("hlo.lark").read_text()
    return lark.Lark(grammar, parser="lalr", lexer="contextual", maybe_placeholders=False,
                     transformer=_Syntax())


def _describe_terminal(name: str) -> str:
    if name in _TERMINAL_TEXT:
        return _TERMINAL_TEXT[name]
    try:
        pattern = _lark().get_terminal(name).pattern
    except KeyError:
        return name
    return f"'{pattern.value}'" if isinstance(pattern, lark.lexer.PatternStr) else name


def _expected(names) -> str:
    texts = sorted({_describe_terminal(n) for n in names})
    return texts[0] if len(texts) == 1 else ", ".join(texts[:-1]) + " or " + texts[-1]


def _from_lark(err: lark.exceptions.UnexpectedInput, text: str) -> HloParseError:
    if isinstance(err, lark.exceptions.UnexpectedCharacters):
        found = text[err.pos_in_stream] if err.pos_in_stream < len(text) else ""
        return HloParseError(err.line, err.column,
                             f"unexpected character {found!r}; expected {_expected(err.allowed)}")
    if isinstance(err, lark.exceptions.UnexpectedToken):
        token = err.token
        if token.type == "$END":
            line, column = token.end_line or 1, token.end_column or 1
            return HloParseError(line, column, f"unexpected end of input; expected {_expected(err.expected)}")
        return HloParseError(token.line, token.column,
                             f"expected {_expected(err.expected)}, found {_clip(str(token.value))!r}")
    line, column = _end_of(text)
    return HloParseError(line, column, f"unexpected end of input: {err}")


def _end_of(text: str) -> tuple[int, int]:
    lines = text.split("\n")
    return len(lines), len(lines[-1]) + 1


# ----------------------------------------------------------------------------- scalar readers

class _BadElement(ValueError):
    """One literal element is malformed; the caller knows where it is."""


# ASCII only: Python's \d alone would also accept other scripts' digits.
_INT_RE = re.compile(r"-?\d+", re.ASCII)
_FLOAT_RE = re.compile(r"-?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|inf|nan)", re.ASCII)
_NAN_BITS_RE = re.compile(r"nan0x([0-9a-fA-F]{1,16})")


def _describe(value) -> str:
    if isinstance(value, Scalar):
        return repr(_clip(value.text))
    if isinstance(value, Text):
        return f"the string {_clip(json.dumps(value.value))}"
    return "a {...} list"


def _expect(value, what: str, context: str):
    _fail(value, f"{context}: expected {what}, found {_describe(value)}")


def _integer(value, context: str, lo: int = -MAX_INT, hi: int = MAX_INT - 1) -> int:
    if not isinstance(value, Scalar) or not _INT_RE.fullmatch(value.text):
        _expect(value, "an integer", context)
    if len(value.text) > MAX_NUMBER_CHARS or not lo <= int(value.text) <= hi:
        _fail(value, f"{context}: {_clip(value.text)} is out of range [{lo}, {hi}]")
    return int(value.text)


def _float(value, context: str) -> float:
    if not isinstance(value, Scalar) or not _FLOAT_RE.fullmatch(value.text):
        _expect(value, "a number (or inf, -inf, nan)", context)
    try:
        return _decimal_float(value.text)
    except _BadElement as e:
        _fail(value, f"{context}: {e}")


def _decimal_float(text: str) -> float:
    """float(text), refusing numbers too long to convert or too large for a float64."""
    if len(text) > MAX_NUMBER_CHARS:
        raise _BadElement(f"number {_clip(text)} is too long")
    value = float(text)         # float("-nan") keeps the sign bit
    if math.isinf(value) and "inf" not in text:
        raise _BadElement(f"{_clip(text)} is out of range for a 64-bit float")
    return value


def _elements(value, what: str, context: str) -> tuple:
    if isinstance(value, (Braces, FlatBraces)):
        return value.items
    _expect(value, what, context)


def _name_of(value, context: str) -> str:
    if isinstance(value, Text):
        return value.value
    if isinstance(value, Scalar) and value.is_word and not value.text.startswith("-"):
        return value.text
    _expect(value, "a name", context)


# ----------------------------------------------------------------------------- attribute readers (one per AttrSpec kind)

def _read_int(value, spec, ctx):
    return _integer(value, ctx.where)


def _read_ints(value, spec, ctx):
    return tuple(_integer(v, ctx.where) for v in _elements(value, "a list of integers like {0,1}", ctx.where))


def _read_int_pairs(value, spec, ctx):
    pairs = _elements(value, "a list of pairs like {{0,1},{2,2}}", ctx.where)
    result = []
    for pair in pairs:
        items = _elements(pair, "a pair like {0,1}", ctx.where)
        if len(items) != 2:
            _fail(pair, f"{ctx.where}: expected a pair like {{0,1}}, found {len(items)} values")
        result.append(tuple(_integer(v, ctx.where) for v in items))
    return tuple(result)


def _read_bool(value, spec, ctx):
    if not (isinstance(value, Scalar) and value.text in ("true", "false")):
        _expect(value, "true or false", ctx.where)
    return value.text == "true"


def _read_float(value, spec, ctx):
    return _float(value, ctx.where)


def _read_str(value, spec, ctx):
    if not isinstance(value, Text):
        _expect(value, 'a quoted string like "abc"', ctx.where)
    return value.value


def _read_enum(value, spec, ctx):
    if not (isinstance(value, Scalar) and value.text in spec.choices):
        _expect(value, "one of " + ", ".join(spec.choices), ctx.where)
    return value.text


def _read_computation(value, spec, ctx):
    return ctx.computation(value, _name_of(value, ctx.where))


def _read_computations(value, spec, ctx):
    items = _elements(value, "a list of computation names like {a, b}", ctx.where)
    return tuple(ctx.computation(v, _name_of(v, ctx.where)) for v in items)


def _read_literal_attr(value, spec, ctx):
    _fail(value, f"{ctx.where}: a literal is only written as a constant's value, constant({{...}})")


ATTR_READERS = {
    "int": _read_int, "ints": _read_ints, "int_pairs": _read_int_pairs, "bool": _read_bool,
    "float": _read_float, "str": _read_str, "enum": _read_enum,
    "computation": _read_computation, "computations": _read_computations,
    "literal": _read_literal_attr,
}
assert set(ATTR_READERS) == set(ops.ATTR_KINDS)


# ----------------------------------------------------------------------------- literals

def _pred_element(dtype: DType):
    def read(text):
        if text not in ("true", "false"):
            raise _BadElement(f"expected true or false for {dtype.name}, found {_clip(text)!r}")
        return text == "true"
    return read


def _int_element(dtype: DType):
    info = np.iinfo(dtype.storage)

    def read(text):
        if not _INT_RE.fullmatch(text):
            raise _BadElement(f"expected an integer for {dtype.name}, found {_clip(text)!r}")
        if len(text) > MAX_NUMBER_CHARS or not info.min <= int(text) <= info.max:
            raise _BadElement(f"{_clip(text)} is out of range for {dtype.name} [{info.min}, {info.max}]")
        return int(text)
    return read


class _NanBits(int):
    """A NaN given by its bit pattern (`nan0x7fc00001`), patched in after conversion."""


def _is_nan_pattern(bits: int, storage: np.dtype) -> bool:
    unsigned = np.dtype(f"u{storage.itemsize}")
    return bits < 1 << (8 * storage.itemsize) and bool(np.isnan(np.array([bits], unsigned).view(storage))[0])


def _float_element(dtype: DType):
    def read(text):
        if _FLOAT_RE.fullmatch(text):
            return _decimal_float(text)
        match = _NAN_BITS_RE.fullmatch(text)
        if match and _is_nan_pattern(int(match.group(1), 16), dtype.storage):
            return _NanBits(int(match.group(1), 16))
        raise _BadElement(f"expected a number (or inf, -inf, nan, nan0x<NaN bits>) for {dtype.name}, "
                          f"found {_clip(text)!r}")
    return read


def _element_reader(dtype: DType):
    if dtype.is_pred:
        return _pred_element(dtype)
    return _int_element(dtype) if dtype.is_integer else _float_element(dtype)


def _literal_chunks(value, dims: tuple[int, ...], chunks: list) -> None:
    """Check `value` nests like `dims` and collect its leaves, in order, into `chunks`."""
    if not dims:
        if not isinstance(value, Scalar):
            _fail(value, f"expected a single value here, found {_describe(value)}")
        chunks.append(value)
        return
    if not isinstance(value, (Braces, FlatBraces)):
        _fail(value, f"expected a {{...}} list of {dims[0]} elements here, found {_describe(value)}")
    if isinstance(value, FlatBraces) and len(dims) == 1:
        count = len(value.texts)
    else:
        count = len(value.items)
    if count != dims[0]:
        _fail(value, f"the declared shape has {dims[0]} elements in this dimension, the literal has {count}")
    if isinstance(value, FlatBraces) and len(dims) == 1:
        chunks.append(value)
    else:
        for item in value.items:
            _literal_chunks(item, dims[1:], chunks)


def _whole_list_re(item: str) -> re.Pattern:
    return re.compile(rf"\s*(?:{item}\s*,\s*)*{item}\s*", re.ASCII)


# Fast path for a flat list: one regex checks every element, then one map converts them.
_FAST_LISTS = {   # element class -> (whole-list pattern, converter)
    "pred": (_whole_list_re("(?:true|false)"), "true".__eq__),
    "integer": (_whole_list_re(r"-?\d{1,20}"), int),
    "float": (_whole_list_re(r"-?(?:\d+\.?\d*(?:[eE][+-]?\d{1,5})?|\.\d+(?:[eE][+-]?\d{1,5})?|inf|nan)"),
              float),   # float("-nan") keeps the sign bit, like the slow path
}


def _element_class(dtype: DType) -> str:
    return "pred" if dtype.is_pred else "integer" if dtype.is_integer else "float"


def _fast_values(chunk: FlatBraces, texts: list[str], dtype: DType) -> list | None:
    """All values of a well-formed flat list, or None to take the per-element path."""
    pattern, convert = _FAST_LISTS[_element_class(dtype)]
    value = chunk.token.value
    if not texts or not pattern.fullmatch(value, 1, len(value) - 1):
        return None
    values = list(map(convert, texts))
    if dtype.is_float and (math.inf in values or -math.inf in values):
        return None    # `inf` or an overflow like 1e999: the per-element path tells them apart
    if dtype.is_integer:
        info = np.iinfo(dtype.storage)
        if min(values) < info.min or max(values) > info.max:
            return None
    return values


def _slow_values(chunk, texts: list[str], read, values: list, nan_bits: dict) -> None:
    for i, text in enumerate(texts):
        try:
            value = read(text)
        except _BadElement as e:
            line, column = chunk.position(i) if isinstance(chunk, FlatBraces) else (chunk.line, chunk.column)
            raise HloParseError(line, column, str(e)) from None
        if isinstance(value, _NanBits):
            nan_bits[len(values)], value = int(value), math.nan
        values.append(value)


def _convert_chunks(chunks: list, dtype: DType) -> tuple[list, dict[int, int]]:
    """The elements' Python values, and {flat index: bits} for NaNs spelled by their bits."""
    read = _element_reader(dtype)
    values, nan_bits = [], {}
    for chunk in chunks:
        if isinstance(chunk, FlatBraces):
            fast = _fast_values(chunk, chunk.texts, dtype)
            if fast is not None:
                values.extend(fast)
            else:
                _slow_values(chunk, chunk.texts, read, values, nan_bits)
        else:
            _slow_values(chunk, [chunk.text], read, values, nan_bits)
    return values, nan_bits


def _float_array(values: list, nan_bits: dict[int, int], dtype: DType, where) -> np.ndarray:
    wide = np.array(values, dtype=np.float64)
    with np.errstate(over="ignore"):
        array = wide.astype(dtype.storage)
    overflow = np.flatnonzero(np.isinf(array) & np.isfinite(wide))
    if overflow.size:
        _fail(where, f"value {values[overflow[0]]!r} is out of range for {dtype.name}")
    bits = array.view(np.dtype(f"u{array.dtype.itemsize}"))
    for index, pattern in nan_bits.items():
        bits[index] = pattern
    return array


def _fail_elided(value):
    _fail(value, "this constant's value was elided ({...} with a digest); print the module "
                 "with full_constants=True to get text that parses")


def read_literal(value, shape, where) -> np.ndarray:
    """The array a constant's `(...)` spells, checked against its declared array type."""
    if not isinstance(shape, Shape):
        _fail(where, f"a constant has an array type, found the tuple type {shape}")
    if isinstance(value, FlatBraces) and value.is_elided():
        _fail_elided(value)
    chunks: list = []
    _literal_chunks(value, shape.dims, chunks)
    values, nan_bits = _convert_chunks(chunks, shape.dtype)
    if shape.dtype.is_float:
        array = _float_array(values, nan_bits, shape.dtype, value)
    else:
        array = np.array(values, dtype=shape.dtype.storage)
    return dtypes.canonicalize(array.reshape(shape.dims), shape.dtype)


# ----------------------------------------------------------------------------- source locations

_LOC_RE = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"#]+)):(-?\d{1,18})\s*(,|$)', re.ASCII)


def read_locs(token: lark.Token | None) -> tuple[SourceLoc, ...]:
    """`# a.py:12, "b c.py":40` -> (SourceLoc('a.py', 12), SourceLoc('b c.py', 40))."""
    if token is None:
        return ()
    body, pos, locs = token.value[1:].rstrip(), 0, []
    while pos < len(body):
        match = _LOC_RE.match(body, pos)
        if not match or (match.group(4) == "," and match.end() == len(body)):
            _fail(_Where(token.line, token.column + 1 + pos),
                  "expected a source location 'file:line' in this '#' comment "
                  "(write other comments with '//')")
        quoted, plain, line = match.group(1), match.group(2), match.group(3)
        file = plain if quoted is None else _unquote(f'"{quoted}"', token)
        locs.append(SourceLoc(file, int(line)))
        pos = match.end()
    return tuple(locs)


# ----------------------------------------------------------------------------- module building

class _InstrContext:
    """What an attribute reader needs: where it is (for messages) and the computations."""

    def __init__(self, computations: dict[str, Computation], where: str):
        self.computations = computations
        self.where = where

    def computation(self, at, name: str) -> Computation:
        if name not in self.computations:
            _fail(at, f"{self.where}: unknown computation {name!r}")
        return self.computations[name]


def _check_attr_names(rec: InstrRecord, opdef: ops.OpDef) -> None:
    seen = set()
    for name_token, _ in rec.attrs:
        name = name_token.value
        if name == PAREN_ATTR.get(opdef.name):
            _fail(name_token, f"{opdef.name} takes its {name} in parentheses, "
                              f"e.g. {'parameter(0)' if name == 'index' else 'constant({1, 2})'}")
        if name not in opdef.attrs:
            takes = ", ".join(n for n in ops.own_attrs(opdef) if n != PAREN_ATTR.get(opdef.name)) or "none"
            _fail(name_token, f"{opdef.name} has no attribute {name!r}; it takes {takes}")
        if name in seen:
            _fail(name_token, f"attribute {name!r} is given twice")
        seen.add(name)


def _opdef(rec: InstrRecord) -> ops.OpDef:
    if rec.opcode.value not in ops.OPS:
        _fail(rec.opcode, f"unknown op {rec.opcode.value!r}")
    return ops.OPS[rec.opcode.value]


def _callee_refs(rec: InstrRecord) -> list[tuple[object, str]]:
    """(value, computation name) for every computation the instruction's attributes name."""
    opdef, refs = ops.OPS[rec.opcode.value], []
    for name_token, value in rec.attrs:
        kind, where = opdef.attrs[name_token.value].kind, f"attribute {name_token.value}"
        if kind == "computation":
            refs.append((value, _name_of(value, where)))
        elif kind == "computations":
            items = _elements(value, "a list of computation names like {a, b}", where)
            refs.extend((v, _name_of(v, where)) for v in items)
    return refs


def _check_computation(rec: CompRecord) -> None:
    if not rec.instructions:
        _fail(rec.close, f"computation {rec.name!r} has no instructions")
    defined: dict[str, InstrRecord] = {}
    root = None
    for instr in rec.instructions:
        if instr.name in defined:
            _fail(instr.name_at, f"instruction {instr.name!r} is defined twice in computation "
                                 f"{rec.name!r} (first on line {defined[instr.name].name_at.line})")
        defined[instr.name] = instr
        _check_attr_names(instr, _opdef(instr))
        if instr.is_root and root is not None:
            _fail(instr.name_at, f"computation {rec.name!r} has a second ROOT "
                                 f"(the first is {root.name!r} on line {root.name_at.line})")
        root = instr if instr.is_root else root


def _check_module(rec: ModuleRecord) -> dict[str, CompRecord]:
    by_name: dict[str, CompRecord] = {}
    entry = None
    for comp in rec.computations:
        if comp.name in by_name:
            _fail(comp.name_at, f"computation {comp.name!r} is defined twice "
                                f"(first on line {by_name[comp.name].name_at.line})")
        by_name[comp.name] = comp
        if comp.is_entry and entry is not None:
            _fail(comp.name_at, f"a second ENTRY computation (the first is {entry.name!r})")
        entry = comp if comp.is_entry else entry
        _check_computation(comp)
    if entry is None:
        _fail(rec.name_at, f"module {rec.name!r} has no ENTRY computation; "
                           f"expected one computation written 'ENTRY name {{ ... }}'")
    return by_name


def _callees_first(by_name: dict[str, CompRecord]) -> list[CompRecord]:
    """Computations ordered so every callee precedes its callers; a call cycle is an error."""
    order, state = [], {}          # state: name -> "open" while on the DFS stack, "done" after
    for start in by_name:
        if start in state:
            continue
        stack = [(start, iter(_callee_names(by_name[start], by_name)))]
        state[start] = "open"
        while stack:
            name, callees = stack[-1]
            step = next(callees, None)
            if step is None:
                stack.pop()
                state[name] = "done"
                order.append(by_name[name])
                continue
            at, callee = step
            if state.get(callee) == "open":
                _fail(at, f"computation {name!r} calls {callee!r}, which calls back into it "
                          f"(call cycles are not allowed)")
            if callee not in state:
                state[callee] = "open"
                stack.append((callee, iter(_callee_names(by_name[callee], by_name))))
    return order


def _callee_names(comp: CompRecord, by_name: dict[str, CompRecord]) -> list[tuple[object, str]]:
    refs = [ref for instr in comp.instructions for ref in _callee_refs(instr)]
    for at, name in refs:
        if name not in by_name:
            _fail(at, f"unknown computation {name!r}")
    return refs


def _operand(value, env: dict[str, Instruction], comp: CompRecord) -> Instruction:
    name = _name_of(value, "operand")
    if name in env:
        return env[name]
    later = next((i for i in comp.instructions if i.name == name), None)
    if later is not None:
        _fail(value, f"operand {name!r} is used before its definition on line {later.name_at.line}")
    _fail(value, f"unknown operand {name!r}: no instruction of that name in computation {comp.name!r}")


def _paren_attr(rec: InstrRecord) -> dict:
    """parameter(N) and constant(LITERAL) keep their one attribute in the parentheses."""
    opcode = rec.opcode.value
    if len(rec.args) != 1:
        example = "parameter(0)" if opcode == "parameter" else "constant({1, 2})"
        _fail(rec.opcode, f"{opcode} takes exactly one value in parentheses, e.g. {example}; "
                          f"found {len(rec.args)}")
    if opcode == "parameter":
        return {"index": _integer(rec.args[0], "parameter index", 0)}
    return {"value": read_literal(rec.args[0], rec.shape.shape, rec.shape)}


def _checked_shape(rec: InstrRecord, operands: list[Instruction], attrs) -> object:
    """The declared shape, once the op's rule accepts it (errors point at the rule's culprit)."""
    opcode, declared = rec.opcode.value, rec.shape.shape
    shapes = [o.shape for o in operands]
    try:
        ops.infer_shape(opcode, shapes, attrs, declared)
        return declared
    except ops.ShapeError as e:
        error = e
    try:   # does the rule accept the operands when nothing is declared? then the type is wrong
        inferred = ops.infer_shape(opcode, shapes, attrs, None)
    except ops.ShapeError:
        inferred = None
    if inferred is not None and not ops.OPS[opcode].result_given:
        raise HloParseError(rec.shape.line, rec.shape.column,
                            f"{rec.name}: {opcode} produces {inferred}, but the instruction "
                            f"declares {declared}") from error
    raise HloParseError(rec.opcode.line, rec.opcode.column, f"{rec.name}: {error}") from error


def _build_instruction(rec: InstrRecord, env: dict, comp: CompRecord,
                       computations: dict[str, Computation]) -> Instruction:
    opdef = ops.OPS[rec.opcode.value]
    attrs = {}
    for name_token, value in rec.attrs:
        ctx = _InstrContext(computations, f"{rec.name}: attribute {name_token.value} of {opdef.name}")
        attrs[name_token.value] = ATTR_READERS[opdef.attrs[name_token.value].kind](
            value, opdef.attrs[name_token.value], ctx)
    operands = []
    if opdef.name in PAREN_ATTR:
        attrs.update(_paren_attr(rec))
    else:
        operands = [_operand(v, env, comp) for v in rec.args]
    try:
        attrs = ops.normalize_attrs(opdef.name, attrs)
    except ops.ShapeError as e:
        raise HloParseError(rec.opcode.line, rec.opcode.column, f"{rec.name}: {e}") from e
    shape = _checked_shape(rec, operands, attrs)
    return Instruction(rec.name, opdef.name, operands, shape, attrs, read_locs(rec.loc))


def _build_computation(rec: CompRecord, computations: dict[str, Computation]) -> Computation:
    comp = Computation(rec.name)
    env: dict[str, Instruction] = {}
    for instr_rec in rec.instructions:
        instr = comp.add(_build_instruction(instr_rec, env, rec, computations))
        env[instr.name] = instr
        if instr_rec.is_root:
            comp.root = instr
    if comp.root is None:      # as in XLA: without ROOT, the last instruction is the root
        comp.root = comp.instructions[-1]
    indices = [p.attrs["index"] for p in comp.parameters]
    if indices != list(range(len(indices))):
        _fail(rec.name_at, f"computation {rec.name!r}: parameter indices must be "
                           f"0..{len(indices) - 1}, found {sorted(indices)}")
    return comp


def _read_module(rec: ModuleRecord) -> Module:
    by_name = _check_module(rec)
    module = Module(rec.name)
    computations: dict[str, Computation] = {}
    for comp_rec in _callees_first(by_name):
        comp = _build_computation(comp_rec, computations)
        computations[comp.name] = comp
        module.add_computation(comp, entry=comp_rec.is_entry)
        module.reserve_name(comp.name)
        for instr in comp.instructions:
            module.reserve_name(instr.name)
    return module


# ----------------------------------------------------------------------------- entry points

def parse_module(text: str) -> Module:
    """HLO text -> Module, or HloParseError naming line and column."""
    if not isinstance(text, str):
        raise TypeError(f"parse_module takes HLO text (str), got {type(text).__name__}")
    try:
        try:
            record = _lark().parse(text)
        except lark.exceptions.UnexpectedInput as e:
            raise _from_lark(e, text) from e
        return _read_module(record)
    except HloParseError as e:
        e.show_source(text)
        raise


parse = parse_module
