"""The ISA table and its 128-bit encoding."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tessel.runtime.systolic import isa
from tessel.runtime.systolic.config import SystolicConfig
from tessel.runtime.systolic.isa import IsaError, make


def test_table_is_complete_and_fits_the_word():
    assert set(isa.OPCODES) >= {"DMA_LOAD", "DMA_STORE", "LOAD_W", "MATMUL", "ACTIVATE",
                                "VEC_BIN", "VEC_IMM", "VEC_UN", "VEC_SEL", "VEC_RED",
                                "VEC_TRANS", "SYNC", "HALT"}
    codes = [op.code for op in isa.OPCODES.values()]
    assert len(set(codes)) == len(codes) and 0 not in codes
    for op in isa.OPCODES.values():
        assert op.unit in isa.ALL_UNITS
        assert op.used_bits <= isa.WORD_BITS
        assert op.doc and op.example and op.example_doc
        layout = op.layout()
        for (_, lo, width), (_, next_lo, _) in zip(layout, layout[1:]):
            assert lo + width == next_lo           # packed, no gaps or overlaps
        for f in op.fields:
            assert f.doc
            if f.kind == "enum":
                assert len(f.choices) <= 1 << f.bits


def test_units_of_the_opcodes():
    units = {name: op.unit for name, op in isa.OPCODES.items()}
    assert units["DMA_LOAD"] == units["DMA_STORE"] == "dma"
    assert units["LOAD_W"] == "weight" and units["MATMUL"] == "matrix"
    assert all(units[n] == "vector" for n in units if n.startswith("VEC") or n == "ACTIVATE")
    assert units["SYNC"] == units["HALT"] == "control"


def test_worked_example_bits():
    # MATMUL ub=3 acc=5 rows=7 lane=0 mode=accumulate swap=1 pop=dma push=vector
    ins = make("MATMUL", ub=3, acc=5, rows=7, mode="accumulate", swap=1, pop=("dma",),
               push="vector")
    word = int.from_bytes(isa.encode(ins), "little")
    expected = (4 | 0b0001 << 8 | 0b1000 << 12 | 3 << 16 | 5 << 36 | 7 << 56
                | 0 << 72 | 1 << 84 | 1 << 85)
    assert word == expected
    assert isa.decode(isa.encode(ins)) == ins


def test_f32_fields_keep_their_bits():
    ins = make("VEC_IMM", op="mul", dst=0, src=0, rows=1, imm=0.1)
    assert ins.imm == float(np.float32(0.1))
    word = int.from_bytes(isa.encode(ins), "little")
    lo = dict((f.name, lo) for f, lo, _ in isa.OPCODES["VEC_IMM"].layout()[3:])["imm"]
    assert word >> lo & 0xFFFFFFFF == int(np.array(0.1, np.float32).view(np.uint32))


def test_random_instructions_round_trip_through_binary(random_program):
    program = random_program(np.random.default_rng(1), 500)
    blob = isa.encode_program(program)
    assert len(blob) == 16 * len(program)
    assert isa.decode_program(blob) == program


@pytest.mark.parametrize("call, match", [
    (lambda: make("MATMUL", ub=0, acc=0, rows=1), "MATMUL needs mode"),
    (lambda: make("MATMUL", ub=0, acc=0, rows=1, mode="add"), "mode='add', expected one of overwrite, accumulate"),
    (lambda: make("MATMUL", ub=1 << 20, acc=0, rows=1, mode="overwrite"), "ub=1048576 does not fit its 20 bits"),
    (lambda: make("MATMUL", ub=-1, acc=0, rows=1, mode="overwrite"), "does not fit"),
    (lambda: make("MATMUL", ub=1.0, acc=0, rows=1, mode="overwrite"), "must be an unsigned int"),
    (lambda: make("MATMUL", ub=0, acc=0, rows=1, mode="overwrite", fn="relu"), "MATMUL has no field 'fn'"),
    (lambda: make("MATMUL", ub=0, acc=0, rows=1, mode="overwrite", pop="matrix"), "cannot pop a token of its own unit"),
    (lambda: make("MATMUL", ub=0, acc=0, rows=1, mode="overwrite", push="gpu"), "unknown unit 'gpu'"),
    (lambda: make("HALT", pop="dma"), "HALT has no field 'pop'"),
    (lambda: make("NOP"), "unknown opcode 'NOP'"),
])
def test_make_refuses_unencodable_instructions(call, match):
    with pytest.raises(IsaError, match=match):
        call()


def _word(value: int) -> bytes:
    return value.to_bytes(16, "little")


@pytest.mark.parametrize("word, match", [
    (0, "word 3: unknown opcode 0"),
    (200, "word 3: unknown opcode 200"),
    (4 | 1 << 100, r"word 3 \(MATMUL\): reserved bits above bit 86"),
    (13 | 1 << 8, r"word 3 \(HALT\): control instructions carry no tokens"),
    (5 | 7 << 56 + 16, r"word 3 \(ACTIVATE\): fn has encoding 7, expected 0..4"),
])
def test_decode_refuses_bad_words_naming_the_word(word, match):
    with pytest.raises(IsaError, match=match):
        isa.decode(_word(word), 3)


def test_decode_program_refuses_partial_words():
    with pytest.raises(IsaError, match="20 bytes .4 left over"):
        isa.decode_program(b"\x0d" + b"\0" * 19)


def test_accesses_and_bytes_moved():
    cfg = SystolicConfig()
    dma = make("DMA_LOAD", host=4096, ub=0, rows=2, cols=3, stride=64, fmt="f32")
    assert dma.host_bytes(cfg) == 24 and dma.stream_rows == 2
    host, ub = dma.accesses(cfg)
    assert (host.space, host.write, host.extent) == ("host", False, (4096, 4096 + 64 + 12))
    assert (ub.space, ub.write, ub.extent) == ("ub", True, (0, 2))
    w = make("LOAD_W", src="host", addr=0, k=128, n=64, stride=256, transpose=1, fmt="bf16")
    assert w.host_bytes(cfg) == 128 * 64 * 2 and w.stream_rows == 64   # 64 rows of 128
    w_ub = make("LOAD_W", src="ub", addr=10, k=5, n=7, stride=2)
    assert w_ub.host_bytes(cfg) == 0 and w_ub.accesses(cfg)[0].extent == (10, 19)
    act = make("ACTIVATE", acc=4, ub=8, rows=3, fn="relu", bias=1, bias_ub=50)
    assert [(a.space, a.write, a.extent) for a in act.accesses(cfg)] == \
        [("acc", False, (4, 7)), ("ub", False, (50, 51)), ("ub", True, (8, 11))]
    red = make("VEC_RED", op="sum", axis="rows", dst=9, src=0, rows=8, lanes=128)
    assert red.accesses(cfg)[1].extent == (9, 10)
    trans = make("VEC_TRANS", dst=64, src=0, rows=3, lanes=5)
    assert trans.accesses(cfg)[1].extent == (64, 69) and trans.stream_rows == 5
    assert make("HALT").accesses(cfg) == () and make("SYNC").host_bytes(cfg) == 0


def test_markdown_layouts_come_from_the_table():
    text = isa.markdown()
    for op in isa.OPCODES.values():
        assert f"### {op.name} (opcode {op.code}, {op.unit} unit)" in text
        assert isa.layout_table(op) in text
    assert "| 16..47 | `host` |" in isa.layout_table(isa.OPCODES["DMA_LOAD"])


DOC = Path(__file__).resolve().parents[2] / "docs" / "systolic-isa.md"


def test_the_isa_doc_matches_the_table():
    text = DOC.read_text()
    for op in isa.OPCODES.values():
        assert isa.layout_table(op) in text, f"docs/systolic-isa.md: {op.name}'s table is stale"
        assert op.example in text
    ins = make("MATMUL", ub=3, acc=5, rows=7, mode="accumulate", swap=1, pop="dma", push="vector")
    assert isa.encode(ins).hex(" ") in text
    assert hex(int.from_bytes(isa.encode(ins), "little")) in text


def test_equality_is_bitwise():
    nan = make("VEC_IMM", op="mul", dst=0, src=0, rows=1, imm=float("nan"))
    assert nan == isa.decode(isa.encode(nan)) and hash(nan) == hash(nan.replace())
    assert make("VEC_IMM", op="mul", dst=0, src=0, rows=1, imm=0.0) != \
        make("VEC_IMM", op="mul", dst=0, src=0, rows=1, imm=-0.0)
    assert make("SYNC") == make("SYNC") != make("HALT")


def test_instructions_pickle_and_copy(random_program):
    import copy
    import pickle
    program = random_program(np.random.default_rng(5), 30)
    assert pickle.loads(pickle.dumps(program)) == program
    assert copy.deepcopy(program) == program
    with pytest.raises(AttributeError, match="immutable"):
        program[0].pop = ()
