"""Assembly text for the systolic ISA: an assembler, a disassembler, and binary helpers.

One instruction per line: the opcode, then `field=value` operands in any order; `#`
starts a comment. Values: unsigned ints in decimal or 0x-hex, enum names, floats (`1.5`,
`-2e-3`, `inf`, `nan`), unit lists for tokens (`pop=dma,vector`). Omitted operands take
their default (isa.py); tokens default to none.

    DMA_LOAD host=0 ub=0 rows=128 cols=128 stride=512 fmt=f32 push=matrix
    MATMUL ub=0 acc=0 rows=128 mode=overwrite swap=1 pop=dma   # first K tile
    HALT

The disassembler prints every operand in table order (tokens only when present), so
text -> binary -> text is the identity on its output. Floats print as the shortest text
that reads back to the same f32 (NaN payloads and signs are not kept).
"""
from __future__ import annotations

import re
from typing import Iterable, Sequence

import numpy as np

from . import isa
from .isa import Field, Instruction, IsaError

_TOKEN = re.compile(r"\S+")
_UINT = re.compile(r"(0x[0-9a-fA-F]+|0|[1-9][0-9]*)")
_MAX_UINT_CHARS = 24          # a 64-bit value in decimal or 0x-hex is shorter
_FLOAT = re.compile(r"[-+]?(inf|nan|([0-9]+\.?[0-9]*|\.[0-9]+)(e[-+]?[0-9]+)?)", re.IGNORECASE)


class AsmError(ValueError):
    """Text that is not a program: says line:col and what was expected."""

    def __init__(self, line: int, col: int, message: str, text: str = ""):
        self.line, self.col = line, col
        where = f"{line}:{col}: {message}"
        if text:
            start = max(0, col - 60)          # a window of a long line around the column
            shown = ("..." if start else "") + text[start:start + 120] + ("..." if start + 120 < len(text) else "")
            where += f"\n    {shown}\n    {' ' * (col - 1 - start + (3 if start else 0))}^"
        super().__init__(where)


# ----------------------------------------------------------------------------- text -> instructions

def assemble(text: str) -> list[Instruction]:
    if not isinstance(text, str):
        raise TypeError(f"assemble takes assembly text (str), given {type(text).__name__}"
                        + ("; a binary program is read by from_binary" if isinstance(text, (bytes, bytearray)) else ""))
    program = []
    for number, line in enumerate(text.splitlines(), start=1):
        ins = assemble_line(line, number)
        if ins is not None:
            program.append(ins)
    return program


def assemble_line(line: str, number: int = 1) -> Instruction | None:
    """The instruction on one line, or None for a blank/comment line."""
    code = line.split("#", 1)[0]
    words = list(_TOKEN.finditer(code))
    if not words:
        return None
    head = words[0]
    if head.group() not in isa.OPCODES:
        raise AsmError(number, head.start() + 1, f"unknown opcode {head.group()!r}, expected "
                       f"one of {', '.join(isa.OPCODES)}", line)
    op = isa.OPCODES[head.group()]
    values = {}
    for word in words[1:]:
        name, value = _operand(op, word, values, number, line)
        values[name] = value
    missing = [f for f in op.all_fields if f.name not in values and f.default is None]
    if missing:
        raise AsmError(number, len(code.rstrip()) + 1, f"{op.name} needs "
                       + ", ".join(f"{f.name}=<{f.doc}>" for f in missing), line)
    try:
        return isa.make(op.name, **values)
    except IsaError as e:
        raise AsmError(number, head.start() + 1, str(e), line) from e


def _operand(op: isa.Opcode, word: re.Match, seen: dict, number: int, line: str):
    text, col = word.group(), word.start() + 1
    name, sep, value = text.partition("=")
    fields = {f.name: f for f in op.all_fields}
    if not sep:
        raise AsmError(number, col, f"expected field=value, got {text!r} (fields of "
                       f"{op.name}: {', '.join(fields) or 'none'})", line)
    if name not in fields:
        raise AsmError(number, col, f"{op.name} has no field {name!r}; expected one of "
                       f"{', '.join(fields) or '(none)'}", line)
    if name in seen:
        raise AsmError(number, col, f"{name} given twice", line)
    value_col = col + len(name) + 1
    try:
        return name, fields[name].check(_parse_value(fields[name], value), op.name)
    except (IsaError, ValueError) as e:
        raise AsmError(number, value_col, str(e), line) from e


def _parse_value(f: Field, text: str):
    if f.kind == "uint":
        if not _UINT.fullmatch(text):
            raise ValueError(f"{f.name}: expected an unsigned int (decimal without leading "
                             f"zeros, or 0x-hex), got {text[:40]!r}")
        if len(text) > _MAX_UINT_CHARS:      # before int() spends time on thousands of digits
            raise ValueError(f"{f.name}: {text[:20]}... ({len(text)} characters) is out of range "
                             f"for a {f.bits}-bit field")
        return int(text, 0)
    if f.kind == "f32":
        if not _FLOAT.fullmatch(text):
            raise ValueError(f"{f.name}: expected a number, got {text!r}")
        return float(text)
    return text      # enum names and unit lists: the field's check says what is allowed


# ----------------------------------------------------------------------------- instructions -> text

def format_value(f: Field, value) -> str:
    if f.kind == "f32":
        return str(np.float32(value))
    if f.kind == "units":
        return ",".join(value)
    return str(value)


def format_instruction(ins: Instruction) -> str:
    parts = [ins.name]
    for f in ins.opcode.fields:
        parts.append(f"{f.name}={format_value(f, ins.args[f.name])}")
    for f in ins.opcode.tokens:
        if ins.args[f.name]:
            parts.append(f"{f.name}={format_value(f, ins.args[f.name])}")
    return " ".join(parts)


def disassemble(program: Iterable[Instruction]) -> str:
    return "".join(format_instruction(ins) + "\n" for ins in program)


# ----------------------------------------------------------------------------- binary

def to_binary(program: Sequence[Instruction] | str) -> bytes:
    """Binary words of a program given as instructions or as assembly text."""
    if isinstance(program, str):
        program = assemble(program)
    return isa.encode_program(program)


def from_binary(blob: bytes) -> list[Instruction]:
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise TypeError(f"from_binary takes the program's bytes, given {type(blob).__name__}"
                        + ("; assembly text is read by assemble" if isinstance(blob, str) else ""))
    return isa.decode_program(bytes(blob))


def disassemble_binary(blob: bytes) -> str:
    return disassemble(from_binary(blob))


# ----------------------------------------------------------------------------- command line

def main(argv=None) -> int:
    """python -m tessel.runtime.systolic.asm FILE [-d] [-o OUT] [--check [--config k=v ...]]

    Assembles FILE (text) into 16-byte words, or with -d disassembles FILE (binary) into
    text; writes OUT or, for text, stdout. --check validates against a SystolicConfig
    (defaults, changed by --config k=v) and exits 1 listing the problems."""
    import argparse
    import sys

    from .config import ConfigError, SystolicConfig
    from .validate import ValidationError, validate

    parser = argparse.ArgumentParser(prog="python -m tessel.runtime.systolic.asm",
                                     description="systolic ISA assembler / disassembler")
    parser.add_argument("file")
    parser.add_argument("-d", "--disassemble", action="store_true", help="FILE is binary")
    parser.add_argument("-o", "--output", help="output file (needed for binary output)")
    parser.add_argument("--check", action="store_true", help="validate the program")
    parser.add_argument("--config", nargs="*", default=[], metavar="K=V")
    args = parser.parse_args(argv)
    try:
        with open(args.file, "rb") as f:
            data = f.read()
        program = from_binary(data) if args.disassemble else assemble(data.decode())
        if args.check:
            validate(program, SystolicConfig.from_overrides(args.config), races=True)
    except (OSError, UnicodeDecodeError, AsmError, IsaError, ConfigError, ValidationError) as e:
        print(f"{args.file}: {e}", file=sys.stderr)
        return 1
    if args.disassemble:
        text = disassemble(program)
        if args.output:
            with open(args.output, "w") as f:
                f.write(text)
        else:
            sys.stdout.write(text)
    elif args.output:
        with open(args.output, "wb") as f:
            f.write(to_binary(program))
    else:
        sys.stdout.write(to_binary(program).hex("\n", -isa.WORD_BYTES) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
