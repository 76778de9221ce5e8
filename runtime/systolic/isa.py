"""The systolic machine's instruction set, as data.

`OPCODES` is THE table: each opcode's number, the unit that executes it, its fields (name,
bit width, meaning), its semantics, a worked example, the memory it reads and writes
(`accesses`) and the rows its unit streams (`rows`). The binary encoding, the assembler,
the disassembler, the validator, the functional simulator and the timing model are all
driven by this table; docs/systolic-isa.md explains it with bit-layout tables generated
from it (`python -m tessel.runtime.systolic.isa` prints them).

Machine model (docs/systolic-isa.md has the long form):
- Units: `dma` (host <-> UB), `weight` (weight tiles -> weight FIFO), `matrix` (the R x C
  weight-stationary array), `vector` (activation unit and vector ALU, `lanes` wide), and
  `control` (SYNC, HALT). Each unit executes its own instructions in program order; units
  run concurrently and synchronize through dependency tokens (the `pop`/`push` fields,
  VTA-style), through the weight FIFO, and through SYNC barriers.
- The unified buffer (UB) and the accumulators are addressed in rows of `lanes` 32-bit
  words (`config.lanes` = C, or R when R > C). UB words are f32; accumulator words are
  f32 (bf16 and f32 modes) or int32 (int8 mode).
- Host memory is a flat, byte-addressed array of `config.host_bytes` bytes. DMA and
  host weight loads move rows of elements in a host format (f32, bf16, i8, i32), with a
  byte stride between rows; addresses and strides are multiples of the element size.

Encoding: one 128-bit little-endian word per instruction. Bits [0, 8) hold the opcode
(0 is never assigned, so zeroed memory does not decode), bits [8, 12) the `pop` unit mask
and [12, 16) the `push` mask (bit i = UNITS[i]), then the opcode's fields packed in table
order from bit 16 upward. Unused high bits must be zero.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numpy as np

from .config import HOST_ADDRESS_BITS, UB_ROW_ADDRESS_BITS, SystolicConfig

WORD_BITS = 128
WORD_BYTES = WORD_BITS // 8
OPCODE_BITS = 8
HEADER_BITS = 16                    # opcode + pop mask + push mask

# Units that exchange dependency tokens, in mask-bit order.
UNITS = ("dma", "weight", "matrix", "vector")
CONTROL = "control"
ALL_UNITS = UNITS + (CONTROL,)

# Host element formats: bytes per element.
HOST_FORMATS = {"f32": 4, "bf16": 2, "i8": 1, "i32": 4}

ACTIVATIONS = ("identity", "relu", "sigmoid", "tanh", "gelu_tanh")
BINARY_OPS = ("add", "sub", "mul", "div", "max", "min", "pow",
              "eq", "ne", "lt", "le", "gt", "ge")
UNARY_OPS = ("copy", "neg", "abs", "exp", "log", "sqrt", "rsqrt", "recip",
             "tanh", "sigmoid", "relu", "gelu_tanh")
REDUCE_OPS = ("sum", "max", "min")
REDUCE_AXES = ("rows", "lanes")


class IsaError(ValueError):
    """An instruction that cannot exist (unknown opcode or field, value out of range)."""


# ----------------------------------------------------------------------------- fields

@dataclass(frozen=True)
class Field:
    """One operand: `kind` is "uint" (bits wide), "enum" (an index into `choices`),
    "f32" (IEEE single, 32 bits) or "units" (a mask over UNITS)."""
    name: str
    kind: str
    bits: int
    doc: str
    choices: tuple[str, ...] = ()
    default: object = None          # None: the operand must be given

    def check(self, value, where: str):
        """The canonical value of this field, or IsaError saying what was expected."""
        checker = _FIELD_CHECKS[self.kind]
        return checker(self, value, where)

    def encode(self, value) -> int:
        return _FIELD_ENCODE[self.kind](self, value)

    def decode(self, bits: int, where: str):
        return _FIELD_DECODE[self.kind](self, bits, where)


def uint(name: str, bits: int, doc: str, default=None) -> Field:
    return Field(name, "uint", bits, doc, default=default)


def enum(name: str, choices: tuple[str, ...], doc: str, default=None) -> Field:
    return Field(name, "enum", max(1, math.ceil(math.log2(len(choices)))), doc, choices,
                 default)


def f32(name: str, doc: str, default=None) -> Field:
    return Field(name, "f32", 32, doc, default=default)


def _check_uint(f: Field, value, where):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise IsaError(f"{where}: {f.name} must be an unsigned int, got {value!r}")
    if not 0 <= value < 1 << f.bits:
        raise IsaError(f"{where}: {f.name}={value} does not fit its {f.bits} bits "
                       f"(expected 0..{(1 << f.bits) - 1})")
    return int(value)


def _check_enum(f: Field, value, where):
    if value not in f.choices:
        raise IsaError(f"{where}: {f.name}={value!r}, expected one of {', '.join(f.choices)}")
    return value


def _check_f32(f: Field, value, where):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise IsaError(f"{where}: {f.name} must be a number, got {value!r}")
    with np.errstate(over="ignore"):
        return float(np.float32(value))


def _check_units(f: Field, value, where):
    names = value.split(",") if isinstance(value, str) else list(value)
    names = [n.strip() for n in names if n.strip()]
    bad = [n for n in names if n not in UNITS]
    if bad:
        raise IsaError(f"{where}: {f.name} names unknown unit {bad[0]!r}, expected some of "
                       f"{', '.join(UNITS)}")
    return tuple(u for u in UNITS if u in names)


def _f32_bits(value: float) -> int:
    return int(np.array(value, np.float32).view(np.uint32))


def _bits_f32(bits: int) -> float:
    return float(np.array(bits, np.uint32).view(np.float32))


def _decode_enum(f: Field, bits: int, where):
    if bits >= len(f.choices):
        raise IsaError(f"{where}: {f.name} has encoding {bits}, expected 0..{len(f.choices) - 1} "
                       f"({', '.join(f.choices)})")
    return f.choices[bits]


_FIELD_CHECKS = {"uint": _check_uint, "enum": _check_enum, "f32": _check_f32,
                 "units": _check_units}
_FIELD_ENCODE = {
    "uint": lambda f, v: v,
    "enum": lambda f, v: f.choices.index(v),
    "f32": lambda f, v: _f32_bits(v),
    "units": lambda f, v: sum(1 << UNITS.index(u) for u in v),
}
_FIELD_DECODE = {
    "uint": lambda f, b, where: b,
    "enum": _decode_enum,
    "f32": lambda f, b, where: _bits_f32(b),
    "units": lambda f, b, where: tuple(u for i, u in enumerate(UNITS) if b >> i & 1),
}

POP = Field("pop", "units", len(UNITS),
            "units whose tokens this instruction waits for (one token from each) before it "
            "starts", default=())
PUSH = Field("push", "units", len(UNITS),
             "units this instruction sends one token to when it has finished", default=())

# Field widths shared by several opcodes.
UB = UB_ROW_ADDRESS_BITS            # a UB row address
ACC = UB_ROW_ADDRESS_BITS           # an accumulator row address
HOST = HOST_ADDRESS_BITS            # a host byte address
LANES = 12                          # a lane count or lane offset (arrays up to 2048 wide)
STRIDE = 22                         # a host row stride in bytes (up to 4 MiB)
DMA_ROWS = 12
ROWS = 16                           # rows streamed by MATMUL / ACTIVATE / VEC_*


# ----------------------------------------------------------------------------- accesses

class Access(NamedTuple):
    """A strided region one instruction reads or writes: `count` items of `width` units,
    item i at `start + i * stride`. Units: bytes in "host", rows in "ub" and "acc"
    (UB/accumulator accesses are counted in whole rows, width 1)."""
    space: str
    write: bool
    start: int
    count: int
    stride: int = 1
    width: int = 1

    @property
    def size(self) -> int:
        """Bytes (host) or rows (ub/acc) moved; a stride-0 read moves its item `count` times."""
        return self.count * self.width

    @property
    def extent(self) -> tuple[int, int]:
        """[lo, hi): the smallest interval containing the region."""
        if self.count == 0:
            return self.start, self.start
        return self.start, self.start + (self.count - 1) * self.stride + self.width


def _rd(space, start, count, stride=1, width=1):
    return Access(space, False, start, count, stride, width)


def _wr(space, start, count, stride=1, width=1):
    return Access(space, True, start, count, stride, width)


def _dma_load(i, cfg):
    return (_rd("host", i.host, i.rows, i.stride, i.cols * HOST_FORMATS[i.fmt]),
            _wr("ub", i.ub, i.rows))


def _dma_store(i, cfg):
    return (_rd("ub", i.ub, i.rows),
            _wr("host", i.host, i.rows, i.stride, i.cols * HOST_FORMATS[i.fmt]))


def load_w_source_shape(i) -> tuple[int, int]:
    """(rows, elements per row) LOAD_W reads: the tile is k x n, stored n x k if transposed."""
    return (i.n, i.k) if i.transpose else (i.k, i.n)


def _load_w(i, cfg):
    rows, per_row = load_w_source_shape(i)
    if i.src == "host":
        return (_rd("host", i.addr, rows, i.stride, per_row * HOST_FORMATS[i.fmt]),)
    return (_rd("ub", i.addr, rows, i.stride),)


def _matmul(i, cfg):
    return (_rd("ub", i.ub, i.rows), _wr("acc", i.acc, i.rows))


def _activate(i, cfg):
    bias = (_rd("ub", i.bias_ub, 1),) if i.bias else ()
    return (_rd("acc", i.acc, i.rows),) + bias + (_wr("ub", i.ub, i.rows),)


def _source(start, rows, broadcast):
    return _rd("ub", start, 1 if broadcast else rows)


def _vec_bin(i, cfg):
    return (_source(i.src0, i.rows, i.src0_bcast), _source(i.src1, i.rows, i.src1_bcast),
            _wr("ub", i.dst, i.rows))


def _vec_imm(i, cfg):
    return (_source(i.src, i.rows, i.src_bcast), _wr("ub", i.dst, i.rows))


_vec_un = _vec_imm


def _vec_sel(i, cfg):
    return (_rd("ub", i.mask, i.rows), _rd("ub", i.src0, i.rows), _rd("ub", i.src1, i.rows),
            _wr("ub", i.dst, i.rows))


def _vec_red(i, cfg):
    out_rows = 1 if i.axis == "rows" else i.rows
    return (_rd("ub", i.src, i.rows), _wr("ub", i.dst, out_rows))


def _vec_trans(i, cfg):
    return (_rd("ub", i.src, i.rows), _wr("ub", i.dst, i.lanes))


def _none(i, cfg):
    return ()


# ----------------------------------------------------------------------------- opcodes

@dataclass(frozen=True)
class Opcode:
    name: str
    code: int
    unit: str
    fields: tuple[Field, ...]       # operands in text and bit order (tokens excluded)
    doc: str                        # semantics
    example: str                    # a worked example: one line of assembly ...
    example_doc: str                # ... and what it does
    accesses: Callable = field(repr=False, default=_none)
    rows: Callable = field(repr=False, default=lambda i: 0)   # rows the unit streams

    @property
    def tokens(self) -> tuple[Field, ...]:
        return () if self.unit == CONTROL else (POP, PUSH)

    @property
    def all_fields(self) -> tuple[Field, ...]:
        return self.fields + self.tokens

    def layout(self) -> list[tuple[Field | str, int, int]]:
        """(field or header name, low bit, width) from bit 0 upward."""
        rows = [("opcode", 0, OPCODE_BITS), ("pop" if self.tokens else "reserved", 8, 4),
                ("push" if self.tokens else "reserved", 12, 4)]
        lo = HEADER_BITS
        for f in self.fields:
            rows.append((f, lo, f.bits))
            lo += f.bits
        return rows

    @property
    def used_bits(self) -> int:
        return HEADER_BITS + sum(f.bits for f in self.fields)


# Field groups several opcodes share (same name, width and meaning).
_FMT = enum("fmt", tuple(HOST_FORMATS), "host element format: f32, bf16, i8, i32")
_DST = uint("dst", UB, "first UB row written")
_SRC = uint("src", UB, "first UB row read")
_VEC_ROWS = uint("rows", ROWS, "rows (>= 1)")


def _dma_fields(ub_use: str, cols_doc: str, stride_doc: str) -> tuple[Field, ...]:
    """DMA_LOAD's and DMA_STORE's operands: the UB side is `ub_use` ("written"/"read")."""
    return (uint("host", HOST, "host byte address of the first element"),
            uint("ub", UB, f"first UB row {ub_use}"),
            uint("rows", DMA_ROWS, "rows moved (>= 1)"),
            uint("cols", LANES, cols_doc),
            uint("lane", LANES, f"first UB lane {ub_use}", default=0),
            uint("stride", STRIDE, stride_doc),
            _FMT)


def _broadcast(source: str, note: str = "") -> Field:
    """The flag that makes a vector source one row read for every row."""
    return uint(f"{source}_bcast", 1, f"1: {source} is one row used for every row{note}",
                default=0)


_TABLE = (
    Opcode(
        "DMA_LOAD", 1, "dma",
        _dma_fields("written",
                    "elements per row (>= 1); lanes [lane, lane+cols) are written",
                    "bytes between the starts of consecutive host rows "
                    "(0 repeats one host row; may overlap, e.g. sliding windows)"),
        "UB[ub+r, lane+c] = f32(host[host + r*stride + c*size(fmt)]) for r < rows, c < cols. "
        "bf16, i8 and i32 convert exactly to f32 (i32 beyond 2^24 rounds to nearest even). "
        "Other lanes of the rows are unchanged.",
        "DMA_LOAD host=4096 ub=0 rows=2 cols=3 lane=0 stride=64 fmt=f32",
        "reads 3 f32 at host bytes 4096..4107 into UB row 0 lanes 0..2, and 3 at 4160..4171 "
        "into row 1; moves 24 host bytes",
        _dma_load, lambda i: i.rows),
    Opcode(
        "DMA_STORE", 2, "dma",
        _dma_fields("read",
                    "elements per row (>= 1), read from lanes [lane, lane+cols)",
                    "bytes between consecutive host rows (>= cols*size(fmt): "
                    "stored rows may not overlap)"),
        "host[host + r*stride + c*size(fmt)] = fmt(UB[ub+r, lane+c]). To bf16 rounds by "
        "config.bf16_rounding; to i8/i32 rounds to nearest even and saturates (NaN -> 0).",
        "DMA_STORE host=8192 ub=10 rows=4 cols=128 lane=0 stride=1024 fmt=bf16",
        "writes UB rows 10..13 (128 lanes each) as bf16 to host rows 1024 bytes apart "
        "starting at byte 8192; moves 4*128*2 = 1024 host bytes",
        _dma_store, lambda i: i.rows),
    Opcode(
        "LOAD_W", 3, "weight",
        (enum("src", ("host", "ub"), "where the tile comes from"),
         uint("addr", HOST, "host byte address (src=host) or first UB row (src=ub)"),
         uint("k", LANES, "tile rows, 1 <= k <= R (the contraction extent)"),
         uint("n", LANES, "tile columns, 1 <= n <= C (the output extent)"),
         uint("stride", STRIDE, "between consecutive source rows: bytes (host) or UB rows "
              "(ub; usually 1)"),
         uint("transpose", 1, "1: the source holds the tile transposed (n rows of k)",
              default=0),
         enum("fmt", tuple(HOST_FORMATS), "host element format (src=host; stays f32 for src=ub)",
              default="f32")),
        "Pushes a k x n weight tile W onto the weight FIFO (at most config.weight_fifo_depth "
        "tiles wait there). Row j of the source holds W[j, 0:n] (transpose=0) or W[0:k, j] "
        "(transpose=1); from the UB, row j is UB[addr + j*stride, 0:n] (or 0:k). The tile is "
        "rounded to the multiply dtype on the way in (bf16 by config.bf16_rounding; int8 "
        "rounds to nearest even and saturates) and zero-padded to R x C.",
        "LOAD_W src=host addr=65536 k=128 n=128 stride=256 transpose=0 fmt=bf16",
        "queues the 128x128 bf16 tile whose rows start every 256 bytes at host byte 65536 "
        "(a 128-column slice of a bf16 matrix 128 wide); moves 32 KiB",
        _load_w, lambda i: load_w_source_shape(i)[0]),
    Opcode(
        "MATMUL", 4, "matrix",
        (uint("ub", UB, "first UB row streamed in"),
         uint("acc", ACC, "first accumulator row written"),
         uint("rows", ROWS, "T, rows streamed (>= 1)"),
         uint("lane", LANES, "first UB lane fed to array row 0", default=0),
         enum("mode", ("overwrite", "accumulate"), "store or add into the accumulators"),
         uint("swap", 1, "1: first make the next FIFO tile the active tile", default=0)),
        "If swap, the oldest tile of the weight FIFO (already shifted into the shadow buffer "
        "while earlier MATMULs ran: double buffering) becomes the active tile. Then for t < T: "
        "x = round(UB[ub+t, lane:lane+k]) (k of the active tile), y = x @ W_active "
        "(C wide, zero beyond n), accumulated in f32 (int32 in int8 mode); "
        "ACC[acc+t, 0:C] = y (overwrite) or += y (accumulate).",
        "MATMUL ub=0 acc=0 rows=256 lane=0 mode=accumulate swap=1 pop=dma",
        "after a token from the DMA unit, swaps in the next weight tile and adds the "
        "products of UB rows 0..255 into accumulator rows 0..255",
        _matmul, lambda i: i.rows),
    Opcode(
        "ACTIVATE", 5, "vector",
        (uint("acc", ACC, "first accumulator row read"),
         uint("ub", UB, "first UB row written"),
         _VEC_ROWS,
         enum("fn", ACTIVATIONS, "activation: identity, relu, sigmoid, tanh, gelu_tanh"),
         f32("scale", "multiplies the accumulator first (dequantization, 1/sqrt(d))",
             default=1.0),
         uint("bias", 1, "1: add UB row bias_ub (broadcast over rows) after scaling",
              default=0),
         uint("bias_ub", UB, "the bias row (when bias=1)", default=0)),
        "UB[ub+r, 0:C] = fn(f32(ACC[acc+r, 0:C]) * scale [+ UB[bias_ub, 0:C]]) in f32, "
        "for r < rows. The bias row may not lie inside the written rows.",
        "ACTIVATE acc=0 ub=512 rows=256 fn=relu scale=1.0 bias=1 bias_ub=100",
        "writes relu(ACC[r] + UB[100]) to UB rows 512..767",
        _activate, lambda i: i.rows),
    Opcode(
        "VEC_BIN", 6, "vector",
        (enum("op", BINARY_OPS, "add sub mul div max min pow; eq ne lt le gt ge give 1.0/0.0"),
         _DST,
         uint("src0", UB, "first UB row of the left operand"),
         uint("src1", UB, "first UB row of the right operand"),
         _VEC_ROWS,
         _broadcast("src0"),
         _broadcast("src1")),
        "UB[dst+r] = UB[src0+r] op UB[src1+r] over all lanes, in f32 (a broadcast source "
        "reads its row for every r). Each source range equals the destination range or is "
        "disjoint from it.",
        "VEC_BIN op=add dst=200 src0=200 src1=99 rows=64 src0_bcast=0 src1_bcast=1",
        "adds the bias row 99 to each of UB rows 200..263, in place",
        _vec_bin, lambda i: i.rows),
    Opcode(
        "VEC_IMM", 7, "vector",
        (enum("op", BINARY_OPS, "as VEC_BIN"),
         _DST,
         _SRC,
         _VEC_ROWS,
         f32("imm", "the immediate operand"),
         uint("rev", 1, "1: imm op x instead of x op imm", default=0),
         _broadcast("src")),
        "UB[dst+r] = UB[src+r] op imm (rev=0) or imm op UB[src+r] (rev=1), in f32.",
        "VEC_IMM op=sub dst=8 src=8 rows=4 imm=1.0 rev=1 src_bcast=0",
        "UB rows 8..11 become 1 - x",
        _vec_imm, lambda i: i.rows),
    Opcode(
        "VEC_UN", 8, "vector",
        (enum("op", UNARY_OPS, "copy neg abs exp log sqrt rsqrt recip tanh sigmoid relu "
              "gelu_tanh"),
         _DST,
         _SRC,
         _VEC_ROWS,
         _broadcast("src", " (broadcast a row)")),
        "UB[dst+r] = op(UB[src+r]) over all lanes, in f32.",
        "VEC_UN op=copy dst=300 src=7 rows=16 src_bcast=1",
        "broadcasts UB row 7 into rows 300..315",
        _vec_un, lambda i: i.rows),
    Opcode(
        "VEC_SEL", 9, "vector",
        (_DST,
         uint("mask", UB, "first UB row of the condition"),
         uint("src0", UB, "first UB row taken where mask != 0"),
         uint("src1", UB, "first UB row taken where mask == 0"),
         _VEC_ROWS),
        "UB[dst+r] = where(UB[mask+r] != 0, UB[src0+r], UB[src1+r]) lane by lane.",
        "VEC_SEL dst=40 mask=10 src0=20 src1=30 rows=2",
        "rows 40, 41 take lanes of rows 20, 21 where rows 10, 11 are non-zero, else of 30, 31",
        _vec_sel, lambda i: i.rows),
    Opcode(
        "VEC_RED", 10, "vector",
        (enum("op", REDUCE_OPS, "sum, max, min"),
         enum("axis", REDUCE_AXES, "rows: across rows, lane by lane; lanes: across the "
              "first `lanes` lanes of each row"),
         _DST,
         _SRC,
         _VEC_ROWS,
         uint("lanes", LANES, "lanes reduced (axis=lanes) or written (axis=rows), >= 1")),
        "axis=rows: UB[dst, 0:lanes] = reduce(UB[src:src+rows, 0:lanes], over rows); other "
        "lanes of dst unchanged. axis=lanes: UB[dst+r, :] = reduce(UB[src+r, 0:lanes]) "
        "broadcast to every lane, for r < rows. Sums are in f32, in order.",
        "VEC_RED op=max axis=lanes dst=50 src=0 rows=8 lanes=10",
        "row maxima of the 8 x 10 block at UB row 0, each broadcast across its row 50..57 "
        "(the first step of a row softmax)",
        _vec_red, lambda i: i.rows),
    Opcode(
        "VEC_TRANS", 11, "vector",
        (_DST,
         _SRC,
         uint("rows", LANES, "source rows (<= lanes)"),
         uint("lanes", LANES, "source lanes (<= lanes)")),
        "UB[dst+j, i] = UB[src+i, j] for i < rows, j < lanes: writes `lanes` rows, lanes "
        "[0, rows); other lanes unchanged. Source and destination rows are disjoint.",
        "VEC_TRANS dst=64 src=0 rows=3 lanes=5",
        "the 3 x 5 block at row 0 becomes the 5 x 3 block at rows 64..68",
        _vec_trans, lambda i: max(i.rows, i.lanes)),
    Opcode(
        "SYNC", 12, CONTROL, (),
        "A barrier: every earlier instruction finishes before any later one starts.",
        "SYNC", "waits for all units to drain"),
    Opcode(
        "HALT", 13, CONTROL, (),
        "Ends the program once every unit has drained. Must be the last instruction.",
        "HALT", "the end"),
)

OPCODES: dict[str, Opcode] = {op.name: op for op in _TABLE}
BY_CODE: dict[int, Opcode] = {op.code: op for op in _TABLE}
assert len(BY_CODE) == len(OPCODES) and 0 not in BY_CODE
for _op in _TABLE:
    assert _op.used_bits <= WORD_BITS, (_op.name, _op.used_bits)
    assert len({f.name for f in _op.all_fields}) == len(_op.all_fields), _op.name


# ----------------------------------------------------------------------------- instructions

class Instruction:
    """One instruction: its opcode and a value for every field (tokens included).
    Build with `make("MATMUL", ub=0, acc=0, rows=8, mode="overwrite")`; read fields as
    attributes (`ins.rows`, plain instance attributes: validation and simulation read
    them in hot loops) or from the `args` dict; `str(ins)` is its assembly text."""

    def __init__(self, opcode: Opcode, args: dict):
        object.__setattr__(self, "opcode", opcode)
        object.__setattr__(self, "args", args)
        self.__dict__.update(args)

    def __getattr__(self, name):
        raise AttributeError(f"{self.opcode.name} has no field {name!r}")

    def __setattr__(self, name, value):
        raise AttributeError("instructions are immutable; use .replace(...)")

    def __reduce__(self):          # pickle / copy by opcode name and fields
        return _rebuild, (self.opcode.name, dict(self.args))

    @property
    def name(self) -> str:
        return self.opcode.name

    @property
    def unit(self) -> str:
        return self.opcode.unit

    def replace(self, **changes) -> "Instruction":
        return make(self.opcode.name, **{**self.args, **changes})

    def accesses(self, config: SystolicConfig) -> tuple[Access, ...]:
        return self.opcode.accesses(self, config)

    def host_bytes(self, config: SystolicConfig) -> int:
        """Host bytes this instruction moves."""
        return sum(a.size for a in self.accesses(config) if a.space == "host")

    @property
    def stream_rows(self) -> int:
        """Rows the instruction's unit streams (DMA rows, tile rows, T, vector rows)."""
        return self.opcode.rows(self)

    def _key(self) -> bytes:
        """The encoding: equal instructions are equal bit for bit (NaN immediates included)."""
        return encode(self)

    def __eq__(self, other):
        return isinstance(other, Instruction) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __str__(self):
        from .asm import format_instruction
        return format_instruction(self)

    def __repr__(self):
        return f"<{self}>"


assert not {f.name for op in _TABLE for f in op.all_fields} & set(dir(Instruction)), \
    "a field name would shadow an Instruction attribute"


def opcode(name: str) -> Opcode:
    try:
        return OPCODES[name]
    except KeyError:
        raise IsaError(f"unknown opcode {name!r}; expected one of {', '.join(OPCODES)}") from None


def _rebuild(name: str, args: dict) -> Instruction:
    return make(name, **args)


def make(name: str, **values) -> Instruction:
    """An instruction with every field checked against its encoding (width, choices);
    omitted fields take their defaults. Semantic checks (addresses against the config,
    the weight FIFO, tokens) are validate.py's."""
    op = opcode(name)
    known = {f.name for f in op.all_fields}
    unknown = [k for k in values if k not in known]
    if unknown:
        raise IsaError(f"{name} has no field {unknown[0]!r}; fields: "
                       f"{', '.join(f.name for f in op.all_fields) or '(none)'}")
    args = {}
    for f in op.all_fields:
        if f.name in values:
            args[f.name] = f.check(values[f.name], name)
        elif f.default is not None:
            args[f.name] = f.default
        else:
            raise IsaError(f"{name} needs {f.name} ({f.doc})")
    for f in op.tokens:
        if op.unit in args[f.name]:
            raise IsaError(f"{name} runs on the {op.unit} unit: it cannot {f.name} a token "
                           f"of its own unit (program order already orders it)")
    return Instruction(op, args)


# ----------------------------------------------------------------------------- encoding

def encode(ins: Instruction) -> bytes:
    op = ins.opcode
    word = op.code
    if op.tokens:
        word |= POP.encode(ins.pop) << 8 | PUSH.encode(ins.push) << 12
    for f, lo, width in op.layout()[3:]:
        word |= f.encode(ins.args[f.name]) << lo
    return word.to_bytes(WORD_BYTES, "little")


def decode(word: bytes, index: int = 0) -> Instruction:
    """The instruction in one 16-byte word; IsaError names the word index on bad input."""
    where = f"word {index}"
    if len(word) != WORD_BYTES:
        raise IsaError(f"{where}: {len(word)} bytes, expected {WORD_BYTES}")
    value = int.from_bytes(word, "little")
    code = value & (1 << OPCODE_BITS) - 1
    op = BY_CODE.get(code)
    if op is None:
        raise IsaError(f"{where}: unknown opcode {code} (0x{value:032x}); known: "
                       + ", ".join(f"{o.code}={o.name}" for o in _TABLE))
    where = f"word {index} ({op.name})"
    if value >> op.used_bits:
        raise IsaError(f"{where}: reserved bits above bit {op.used_bits} are set "
                       f"(0x{value:032x})")
    if not op.tokens and value >> OPCODE_BITS & 0xFF:
        raise IsaError(f"{where}: control instructions carry no tokens, but bits 8..15 "
                       f"are 0x{value >> OPCODE_BITS & 0xFF:02x}")
    args = {}
    for f, lo, width in op.layout()[3:]:
        args[f.name] = f.decode(value >> lo & (1 << width) - 1, where)
    if op.tokens:
        args["pop"] = POP.decode(value >> 8 & 0xF, where)
        args["push"] = PUSH.decode(value >> 12 & 0xF, where)
    return make(op.name, **args)


def encode_program(program) -> bytes:
    return b"".join(encode(ins) for ins in program)


def decode_program(blob: bytes) -> list[Instruction]:
    if len(blob) % WORD_BYTES:
        raise IsaError(f"a program is a whole number of {WORD_BYTES}-byte words; got "
                       f"{len(blob)} bytes ({len(blob) % WORD_BYTES} left over)")
    return [decode(blob[i:i + WORD_BYTES], i // WORD_BYTES)
            for i in range(0, len(blob), WORD_BYTES)]


# ----------------------------------------------------------------------------- documentation

def layout_table(op: Opcode) -> str:
    """The opcode's bit layout as a Markdown table (docs/systolic-isa.md embeds these)."""
    lines = ["| bits | field | meaning |", "| --- | --- | --- |"]
    for f, lo, width in op.layout():
        name = f if isinstance(f, str) else f.name
        doc = {"opcode": f"{op.code}", "pop": POP.doc, "push": PUSH.doc,
               "reserved": "0"}.get(name) if isinstance(f, str) else f.doc
        if not isinstance(f, str) and f.default is not None:
            doc += f" (default {_default_text(f)})"
        lines.append(f"| {lo}..{lo + width - 1} | `{name}` | {doc} |")
    if op.used_bits < WORD_BITS:
        lines.append(f"| {op.used_bits}..{WORD_BITS - 1} | reserved | 0 |")
    return "\n".join(lines)


def _default_text(f: Field) -> str:
    if f.kind == "units":
        return "none"
    if f.kind == "f32":
        return f"{f.default:g}"
    return str(f.default)


def markdown() -> str:
    parts = []
    for op in _TABLE:
        parts.append(f"### {op.name} (opcode {op.code}, {op.unit} unit)\n\n{op.doc}\n\n"
                     f"{layout_table(op)}\n\nExample: `{op.example}`: {op.example_doc}.\n")
    return "\n".join(parts)


if __name__ == "__main__":
    print(markdown())
