"""Assembly text: assembler, disassembler, round trips, errors with line:col."""
from __future__ import annotations

import numpy as np
import pytest

from tessel.runtime.systolic import asm, isa
from tessel.runtime.systolic.asm import AsmError

PROGRAM = """\
# a tiled product: two K tiles accumulate
DMA_LOAD host=0 ub=0 rows=4 cols=8 stride=64 fmt=f32 push=matrix   # x[:, 0:8]
LOAD_W src=host addr=0x1000 k=8 n=8 stride=32 fmt=f32

MATMUL ub=0 acc=0 rows=4 mode=overwrite swap=1 pop=dma
ACTIVATE acc=0 ub=16 rows=4 fn=gelu_tanh scale=0.125 push=dma
VEC_IMM op=sub dst=20 src=20 rows=2 imm=-inf rev=1
DMA_STORE host=8192 ub=16 rows=4 cols=8 stride=32 fmt=bf16 pop=vector
SYNC
HALT
"""


def test_assembles_with_defaults_comments_and_hex():
    program = asm.assemble(PROGRAM)
    assert [i.name for i in program] == ["DMA_LOAD", "LOAD_W", "MATMUL", "ACTIVATE", "VEC_IMM",
                                        "DMA_STORE", "SYNC", "HALT"]
    load_w = program[1]
    assert (load_w.addr, load_w.transpose, load_w.pop, load_w.push) == (4096, 0, (), ())
    assert program[0].push == ("matrix",) and program[0].lane == 0
    assert program[3].scale == 0.125 and program[3].bias == 0
    assert program[4].imm == float("-inf")


def test_disassembly_is_canonical_and_round_trips():
    text = asm.disassemble(asm.assemble(PROGRAM))
    assert text.splitlines()[2] == ("MATMUL ub=0 acc=0 rows=4 lane=0 mode=overwrite swap=1 "
                                    "pop=dma")
    assert asm.disassemble(asm.assemble(text)) == text
    assert asm.disassemble_binary(asm.to_binary(text)) == text


def test_random_programs_round_trip_text_binary_text(random_program):
    rng = np.random.default_rng(7)
    for _ in range(20):
        program = random_program(rng, 50)
        text = asm.disassemble(program)
        blob = asm.to_binary(text)
        assert asm.from_binary(blob) == program
        assert asm.disassemble_binary(blob) == text
        assert asm.assemble(text) == program


def test_worked_examples_are_canonical_text():
    for op in isa.OPCODES.values():
        assert asm.disassemble(asm.assemble(op.example)) == op.example + "\n"


def test_floats_print_shortest_f32_text():
    ins = asm.assemble_line("VEC_IMM op=mul dst=0 src=0 rows=1 imm=0.1")
    assert "imm=0.1 " in str(ins)
    for value in ("1e-45", "3.4028235e+38", "-0.0", "inf", "nan"):
        text = str(asm.assemble_line(f"VEC_IMM op=mul dst=0 src=0 rows=1 imm={value}"))
        assert f"imm={value} " in text


@pytest.mark.parametrize("text, line, col, match", [
    ("HALT\nMATMULL ub=0", 2, 1, "unknown opcode 'MATMULL', expected one of DMA_LOAD"),
    ("MATMUL ub=0 acc=0 rows=4 overwrite", 1, 26, "expected field=value, got 'overwrite'"),
    ("MATMUL ub=0 acc=0 rows=4 mode=overwrite fn=relu", 1, 41, "MATMUL has no field 'fn'"),
    ("MATMUL ub=0 ub=1", 1, 13, "ub given twice"),
    ("  MATMUL ub=x acc=0", 1, 13, "expected an unsigned int"),
    ("MATMUL ub=0 acc=0 rows=4 mode=sum", 1, 31, "mode='sum', expected one of overwrite, accumulate"),
    ("MATMUL ub=0 acc=0 rows=99999 mode=overwrite", 1, 24, "rows=99999 does not fit its 16 bits"),
    ("MATMUL ub=0 acc=0 rows=4  # no mode", 1, 25, "MATMUL needs mode=<store or add"),
    ("VEC_IMM op=add dst=0 src=0 rows=1 imm=1.2.3", 1, 39, "expected a number"),
    ("MATMUL ub=0 acc=0 rows=4 mode=overwrite pop=matrix", 1, 1, "cannot pop a token of its own unit"),
    ("MATMUL ub=0 acc=0 rows=4 mode=overwrite push=dma,tpu", 1, 46, "unknown unit 'tpu'"),
    ("HALT pop=dma", 1, 6, "HALT has no field 'pop'"),
])
def test_errors_give_line_col_and_what_was_expected(text, line, col, match):
    with pytest.raises(AsmError, match=match) as e:
        asm.assemble(text)
    assert (e.value.line, e.value.col) == (line, col)
    assert str(e.value).startswith(f"{line}:{col}: ")
    assert str(e.value).rstrip().endswith("^")          # the line, with a caret under col


def test_leading_zeros_are_refused():
    with pytest.raises(AsmError, match="without leading zeros") as e:
        asm.assemble("MATMUL ub=08 acc=0 rows=1 mode=overwrite")
    assert e.value.col == 11


def test_command_line_assembles_checks_and_disassembles(tmp_path, capsys):
    source = tmp_path / "p.s"
    source.write_text(PROGRAM.replace("SYNC\n", ""))
    binary = tmp_path / "p.bin"
    assert asm.main([str(source), "-o", str(binary)]) == 0
    assert binary.read_bytes() == asm.to_binary(source.read_text())
    assert asm.main([str(binary), "-d"]) == 0
    assert capsys.readouterr().out == asm.disassemble(asm.assemble(source.read_text()))
    assert asm.main([str(source)]) == 0            # hex words on stdout, one per line
    words = capsys.readouterr().out.split()
    assert [bytes.fromhex(w) for w in words] == [asm.to_binary(source.read_text())[i:i + 16]
                                                  for i in range(0, 16 * len(words), 16)]
    # ACTIVATE reads the accumulators without a token from the matrix unit
    assert asm.main([str(source), "--check", "--config", "rows=8", "cols=8"]) == 1
    err = capsys.readouterr().err
    assert "invalid systolic program" in err and "instruction 3 `ACTIVATE" in err and "race" in err
    fixed = source.read_text().replace("fn=gelu_tanh", "fn=gelu_tanh pop=matrix") \
        .replace("pop=dma\n", "pop=dma push=vector\n")
    source.write_text(fixed)
    assert asm.main([str(source), "--check", "--config", "rows=8", "cols=8"]) == 0
    capsys.readouterr()
    source.write_text("MATMUL ub=0\n")
    assert asm.main([str(source)]) == 1
    assert "p.s: 1:12: MATMUL needs acc=" in capsys.readouterr().err
