"""The validator: each rejection names the instruction index and text; valid programs pass."""
from __future__ import annotations

import re

import numpy as np
import pytest

from tessel.runtime.systolic import asm
from tessel.runtime.systolic.config import SystolicConfig
from tessel.runtime.systolic.isa import Access
from tessel.runtime.systolic.validate import (ValidationError, check, regions_overlap, validate,
                                              validate_binary)

CFG = SystolicConfig(rows=8, cols=8, ub_bytes=64 * 32, acc_bytes=16 * 32, host_bytes=4096)

GOOD = """\
DMA_LOAD host=0 ub=0 rows=4 cols=8 stride=32 fmt=f32 push=matrix
LOAD_W src=host addr=1024 k=8 n=8 stride=32 fmt=f32
MATMUL ub=0 acc=0 rows=4 mode=overwrite swap=1 pop=dma push=vector
ACTIVATE acc=0 ub=10 rows=4 fn=relu pop=matrix push=dma
DMA_STORE host=2048 ub=10 rows=4 cols=8 stride=32 fmt=f32 pop=vector
HALT
"""


def problems(text: str, config=CFG, **kw) -> list[str]:
    return [str(p) for p in check(asm.assemble(text), config, **kw)]


def test_a_well_synchronized_program_passes():
    assert problems(GOOD) == []
    validate(asm.assemble(GOOD), CFG)


def _only(text, **kw):
    found = problems(text, **kw)
    assert len(found) == 1, found
    return found[0]


def test_errors_name_index_and_text():
    text = GOOD.replace("ub=10 rows=4 fn", "ub=62 rows=4 fn")
    with pytest.raises(ValidationError) as e:
        validate(asm.assemble(text), CFG, races=False)
    message = str(e.value)
    assert "instruction 3 `ACTIVATE acc=0 ub=62 rows=4 fn=relu scale=1.0 bias=0 bias_ub=0 " \
           "pop=matrix push=dma`: writes UB rows [62, 66), beyond the 64 rows of UB memory" in message
    assert e.value.problems[0].index == 3


@pytest.mark.parametrize("old, new, index, match", [
    ("DMA_LOAD host=0 ub=0 rows=4", "DMA_LOAD host=0 ub=61 rows=4", 0, r"writes UB rows \[61, 65\), beyond the 64 rows"),
    ("MATMUL ub=0 acc=0", "MATMUL ub=0 acc=14", 2, r"writes accumulator rows \[14, 18\), beyond the 16 rows"),
    ("host=2048 ub=10", "host=3996 ub=10", 4, r"writes host bytes \[3996, 4124\), beyond the 4096 bytes"),
    ("addr=1024 k=8", "addr=4000 k=8", 1, r"reads host bytes \[4000, 4256\)"),
    ("cols=8 stride=32 fmt=f32 push", "cols=8 lane=1 stride=32 fmt=f32 push", 0, r"UB lanes \[1, 9\) exceed the 8 lanes"),
    ("k=8 n=8", "k=9 n=8", 1, "k=9 exceeds the array's 8 rows"),
    ("k=8 n=8", "k=8 n=0", 1, "n=0, expected >= 1"),
    ("host=0 ub=0", "host=2 ub=0", 0, "host=2 is not a multiple of the 4-byte element"),
    ("stride=32 fmt=f32 pop=vector", "stride=16 fmt=f32 pop=vector", 4, "stride=16 < 32 bytes per row: stored rows would overlap"),
    ("fn=relu", "fn=relu bias_ub=3", 3, "bias_ub=3 without bias=1"),
    ("fn=relu", "fn=relu bias=1 bias_ub=12", 3, r"the bias row 12 lies inside the rows written \[10, 14\)"),
    ("MATMUL ub=0 acc=0 rows=4 mode", "MATMUL ub=0 acc=0 rows=4 lane=1 mode", 2, r"input lanes \[1, 9\) \(k=8 of the active tile\)"),
    ("LOAD_W src=host addr=1024 k=8 n=8 stride=32 fmt=f32", "LOAD_W src=ub addr=20 k=8 n=8 stride=1 fmt=bf16", 1, "fmt=bf16 applies to host sources only"),
])
def test_operand_and_address_rejections(old, new, index, match):
    text = GOOD.replace(old, new)
    assert text != GOOD
    message = problems(text, races=False)[0]    # (k=9 also overflows MATMUL's lanes)
    assert message.startswith(f"instruction {index} `")
    assert re.search(match, message), message


def test_matmul_without_weights():
    text = GOOD.replace("LOAD_W src=host addr=1024 k=8 n=8 stride=32 fmt=f32\n", "") \
               .replace("swap=1", "swap=0")
    assert "instruction 1 `MATMUL" in _only(text)
    assert "no weights loaded" in _only(text)


def test_swap_from_an_empty_fifo():
    text = GOOD.replace("LOAD_W src=host addr=1024 k=8 n=8 stride=32 fmt=f32\n", "")
    assert "swap=1 but no weight tile is waiting" in _only(text)


def test_weight_fifo_overflow_and_unused_tiles():
    load = "LOAD_W src=host addr=1024 k=8 n=8 stride=32 fmt=f32\n"
    text = GOOD.replace(load, load * 5)
    found = problems(text)
    assert any(p.startswith("instruction 5 `LOAD_W") and "weight FIFO overflow: 5 tiles would "
               "wait (depth 4)" in p for p in found), found
    assert any("4 weight tile(s) loaded but never swapped in (the first by instruction 2)" in p
               for p in found), found


def test_token_popped_but_never_pushed_and_tokens_left_over():
    text = GOOD.replace("push=matrix", "")
    found = problems(text, races=False)
    assert found == ["instruction 2 `MATMUL ub=0 acc=0 rows=4 lane=0 mode=overwrite swap=1 "
                     "pop=dma push=vector`: pops a token from the dma unit that was never "
                     "pushed (no earlier dma instruction has push=matrix left unconsumed)"]
    left = problems(GOOD.replace("pop=vector", ""), races=False)
    assert left == ["program: 1 token(s) from vector to dma never popped (the first pushed by "
                    "instruction 3)"]


def test_a_pop_cannot_use_a_later_push():
    text = """\
VEC_UN op=copy dst=1 src=0 rows=1 pop=dma
DMA_LOAD host=0 ub=0 rows=1 cols=8 stride=32 fmt=f32 push=vector
HALT
"""
    found = problems(text, races=False)
    assert found[0].startswith("instruction 0 `VEC_UN") and "never pushed" in found[0]


def test_halt_missing_or_early():
    assert problems(GOOD.replace("HALT\n", "")) == [
        "program: missing HALT: the last of 5 instructions must be HALT"]
    found = problems("HALT\nSYNC\nHALT\n")
    assert found == ["instruction 1 `SYNC`: follows HALT (instruction 0): HALT must be the "
                     "last instruction",
                     "instruction 2 `HALT`: follows HALT (instruction 0): HALT must be the "
                     "last instruction"]


def test_unknown_opcode_in_binary_is_named_by_index():
    blob = asm.to_binary(GOOD)
    bad = blob[:32] + (99).to_bytes(16, "little") + blob[48:]
    with pytest.raises(ValidationError, match=r"instruction 2 `0x0+63`: word 2: unknown opcode 99"):
        validate_binary(bad, CFG)
    assert validate_binary(blob, CFG) == asm.assemble(GOOD)
    with pytest.raises(ValidationError, match="not a whole number of 16-byte words"):
        validate_binary(blob + b"\0", CFG)


@pytest.mark.parametrize("line, match", [
    ("VEC_BIN op=add dst=20 src0=21 src1=30 rows=4", r"src0 rows \[21, 25\) overlap the destination rows \[20, 24\)"),
    ("VEC_BIN op=add dst=20 src0=30 src1=22 rows=4 src1_bcast=1", r"src1 rows \[22, 23\) overlap"),
    ("VEC_UN op=exp dst=20 src=19 rows=4", "src rows"),
    ("VEC_SEL dst=20 mask=23 src0=30 src1=40 rows=4", "mask rows"),
    ("VEC_RED op=sum axis=lanes dst=20 src=21 rows=4 lanes=8", "src rows"),
    ("VEC_RED op=sum axis=lanes dst=20 src=30 rows=4 lanes=9", r"reduced lanes \[0, 9\) exceed the 8 lanes"),
    ("VEC_TRANS dst=20 src=18 rows=4 lanes=4", "overlap"),
    ("VEC_TRANS dst=20 src=30 rows=9 lanes=4", "rows=9 exceeds the 8 lanes"),
    ("VEC_IMM op=add dst=20 src=20 rows=0 imm=1.0", "rows=0, expected >= 1"),
])
def test_vector_operand_rules(line, match):
    found = problems(line + "\nHALT\n")
    assert len(found) == 1 and found[0].startswith("instruction 0 `VEC"), found
    assert re.search(match, found[0]), found[0]


def test_in_place_and_disjoint_vector_ops_pass():
    assert problems("VEC_BIN op=add dst=20 src0=20 src1=30 rows=4 src1_bcast=1\n"
                    "VEC_RED op=max axis=rows dst=21 src=20 rows=4 lanes=8\n"
                    "VEC_TRANS dst=40 src=20 rows=4 lanes=8\nHALT\n") == []


def test_other_dataflows_do_not_run_programs():
    assert problems("HALT\n", CFG.with_(dataflow="os")) == [
        "program: config.dataflow='os': programs run on the weight-stationary machine "
        "(dataflow='ws'); 'os'/'is' only select the SCALE-Sim timing model"]


# ----------------------------------------------------------------------------- races

def test_missing_tokens_are_races():
    # MATMUL reads UB rows the DMA wrote, with no token from the DMA
    no_dma_token = GOOD.replace(" push=matrix", "").replace("pop=dma push=vector", "push=vector")
    found = problems(no_dma_token)
    assert len(found) == 1 and found[0].startswith("instruction 2 `MATMUL") and \
        "race: reads UB rows in [0, 4) that instruction 0 (dma unit) wrote" in found[0]
    # ACTIVATE reads accumulators MATMUL wrote; the DMA_STORE reads UB rows ACTIVATE wrote
    no_tokens_after = GOOD.replace(" pop=matrix push=dma", "").replace(" push=vector", "") \
        .replace(" pop=vector", "")
    found = problems(no_tokens_after)
    assert len(found) == 2
    assert "reads accumulator rows in [0, 4) that instruction 2 (matrix unit) wrote" in found[0]
    assert "reads UB rows in [10, 14) that instruction 3 (vector unit) wrote" in found[1]


def test_write_after_read_needs_a_token():
    # The DMA loads the next rows 0..3 while MATMUL may still be reading them.
    lines = GOOD.splitlines(keepends=True)
    racy = "".join(lines[:3] + ["DMA_LOAD host=512 ub=0 rows=4 cols=8 stride=32 fmt=f32\n"]
                   + lines[3:])
    found = problems(racy)
    assert len(found) == 1 and found[0].startswith("instruction 3 `DMA_LOAD") and \
        "race: writes UB rows in [0, 4) that instruction 2 (matrix unit) read" in found[0]
    fixed = racy.replace("pop=dma push=vector", "pop=dma push=dma,vector") \
        .replace("fmt=f32\nACTIVATE", "fmt=f32 pop=matrix\nACTIVATE")
    assert problems(fixed) == []


def test_transitive_order_through_tokens_is_enough():
    # dma -> matrix -> vector -> dma: a load after the DMA_STORE is ordered after MATMUL's
    # read of rows 0..3 through the chain of tokens.
    text = GOOD.replace("HALT\n", "DMA_LOAD host=512 ub=0 rows=4 cols=8 stride=32 fmt=f32\nHALT\n")
    assert problems(text) == []


def test_sync_orders_everything():
    text = GOOD.replace(" push=matrix", "").replace(" pop=dma push=vector", "") \
        .replace(" pop=matrix push=dma", "").replace(" pop=vector", "")
    assert any("race" in p for p in problems(text))
    lines = text.splitlines()
    synced = "\n".join(line + "\nSYNC" for line in lines[:-1]) + "\nHALT\n"
    assert problems(synced) == []


def test_weight_fifo_orders_load_w_before_its_matmul():
    text = """\
VEC_UN op=copy dst=0 src=40 rows=8 push=weight
LOAD_W src=ub addr=0 k=8 n=8 stride=1 pop=vector
DMA_LOAD host=0 ub=20 rows=2 cols=8 stride=32 fmt=f32 push=matrix
MATMUL ub=20 acc=0 rows=2 mode=overwrite swap=1 pop=dma
VEC_UN op=copy dst=0 src=41 rows=1
HALT
"""
    found = problems(text)
    # the FIFO orders LOAD_W before MATMUL, but nothing orders LOAD_W's UB read before the
    # vector unit's second write of row 0
    assert len(found) == 1 and found[0].startswith("instruction 4 `VEC_UN") and \
        "instruction 1 (weight unit) read" in found[0], found


def test_host_races_between_stores_and_weight_loads():
    text = """\
VEC_UN op=copy dst=0 src=40 rows=8 push=dma
DMA_STORE host=0 ub=0 rows=8 cols=8 stride=32 fmt=f32 pop=vector
LOAD_W src=host addr=0 k=8 n=8 stride=32 fmt=f32 transpose=1
MATMUL ub=40 acc=0 rows=1 mode=overwrite swap=1
HALT
"""
    found = problems(text)
    assert len(found) == 1 and "race: reads host bytes in [0, 256) that instruction 1 (dma " \
        "unit) wrote" in found[0]
    fixed = text.replace("fmt=f32 pop=vector", "fmt=f32 pop=vector push=weight") \
        .replace("transpose=1", "transpose=1 pop=dma")
    assert problems(fixed) == []
    # a store into other bytes does not conflict
    apart = text.replace("LOAD_W src=host addr=0", "LOAD_W src=host addr=512")
    assert problems(apart) == []


def test_races_can_be_switched_off():
    text = GOOD.replace(" pop=matrix push=dma", "").replace(" push=vector", "") \
        .replace(" pop=vector", "")
    assert problems(text, races=False) == []
    assert problems(text) != []


def test_strided_region_overlap_is_exact():
    rng = np.random.default_rng(3)
    for _ in range(400):
        a, b = (Access("host", False, int(rng.integers(0, 64)), int(rng.integers(1, 6)),
                       int(rng.integers(0, 24)), int(rng.integers(1, 9))) for _ in range(2))
        def bytes_of(r):
            return {r.start + i * r.stride + j for i in range(r.count) for j in range(r.width)}
        assert regions_overlap(a, b) == bool(bytes_of(a) & bytes_of(b)), (a, b)


# ----------------------------------------------------------------------------- races, differentially

SMALL = SystolicConfig(rows=4, cols=4, ub_bytes=16 * 16, acc_bytes=8 * 16, host_bytes=256)


def _random_synchronized_program(rng) -> list:
    """Random valid-operand instructions with random (poppable) tokens and SYNCs."""
    from tessel.runtime.systolic import isa
    from tessel.runtime.systolic.isa import make
    program, fifo, active, queues = [], 0, False, {}

    def tokens(unit):
        pops = tuple(u for u in ("dma", "weight", "matrix", "vector")
                     if u != unit and queues.get((u, unit), 0) and rng.random() < 0.6)
        push = tuple(u for u in ("dma", "weight", "matrix", "vector")
                     if u != unit and rng.random() < 0.3)
        for u in pops:
            queues[(u, unit)] -= 1
        for u in push:
            queues[(unit, u)] = queues.get((unit, u), 0) + 1
        return {"pop": pops, "push": push}

    def row(n=16, count=1):
        return int(rng.integers(0, n - count + 1))

    for _ in range(int(rng.integers(5, 25))):
        kind = str(rng.choice(["DMA_LOAD", "DMA_STORE", "LOAD_W", "MATMUL", "ACTIVATE",
                               "VEC_UN", "VEC_BIN", "SYNC"]))
        rows = int(rng.integers(1, 4))
        if kind in ("DMA_LOAD", "DMA_STORE"):
            fields = dict(host=4 * int(rng.integers(0, 48)), ub=row(16, rows), rows=rows,
                          cols=int(rng.integers(1, 5)) if kind == "DMA_LOAD" else 4,
                          stride=16 * int(rng.integers(1, 3)), fmt="f32")
        elif kind == "LOAD_W":
            if fifo == 4:
                continue
            fifo += 1
            fields = dict(src="host", addr=4 * int(rng.integers(0, 48)), k=2, n=4, stride=16) \
                if rng.random() < 0.5 else dict(src="ub", addr=row(16, 2), k=2, n=4, stride=1)
        elif kind == "MATMUL":
            swap = int(fifo > 0 and (not active or rng.random() < 0.5))
            if not swap and not active:
                continue
            fifo, active = fifo - swap, True
            fields = dict(ub=row(16, rows), acc=row(8, rows), rows=rows, swap=swap,
                          mode=str(rng.choice(["overwrite", "accumulate"])))
        elif kind == "ACTIVATE":
            fields = dict(acc=row(8, rows), ub=row(16, rows), rows=rows, fn="relu")
        elif kind == "VEC_UN":
            dst, src = row(16, rows), row(16, 1)
            if dst <= src < dst + rows:
                continue
            fields = dict(op="exp", dst=dst, src=src, rows=rows, src_bcast=1)
        elif kind == "VEC_BIN":
            start = row(16, rows)
            fields = dict(op="add", dst=start, src0=start, src1=start, rows=rows)
        else:
            program.append(make("SYNC"))
            continue
        unit = isa.OPCODES[kind].unit
        program.append(make(kind, **fields, **tokens(unit)))
    return program + [make("HALT")]


def _brute_force_racy(program, config) -> set[int]:
    """Indices of instructions that race with an earlier one: explicit happens-before
    (transitive closure as bitsets) and byte/row sets, every pair."""
    last_on_unit, token_queues, fifo, reach, touched = {}, {}, [], [], []
    syncs = []
    for j, ins in enumerate(program):
        preds = set()
        if ins.unit == "control":
            preds = set(range(j))
        else:
            if ins.unit in last_on_unit:
                preds.add(last_on_unit[ins.unit])
            for u in ins.pop:
                preds.add(token_queues[(u, ins.unit)].pop(0))
            for u in ins.push:
                token_queues.setdefault((ins.unit, u), [])
            if ins.name == "LOAD_W":
                fifo.append(j)
            if ins.name == "MATMUL" and ins.swap:
                preds.add(fifo.pop(0))
            preds.update(syncs[-1:])
            last_on_unit[ins.unit] = j
        bits = 0
        for p in preds:
            bits |= reach[p] | 1 << p
        reach.append(bits)
        if ins.unit != "control":
            for u in ins.push:
                token_queues[(ins.unit, u)].append(j)
        if ins.name == "SYNC":
            syncs.append(j)
        cells = set()
        for a in ins.accesses(config):
            for i in range(1 if a.stride == 0 else a.count):
                cells.update((a.space, a.start + i * a.stride + b, a.write) for b in range(a.width))
        touched.append(cells)
    racy = set()
    for j in range(len(program)):
        for i in range(j):
            if program[i].unit == program[j].unit or reach[j] >> i & 1:
                continue
            wi = {(s, x) for s, x, w in touched[i] if w}
            wj = {(s, x) for s, x, w in touched[j] if w}
            ai = {(s, x) for s, x, _ in touched[i]}
            aj = {(s, x) for s, x, _ in touched[j]}
            if wi & aj or wj & ai:
                racy.add(j)
    return racy


def test_race_checker_agrees_with_brute_force_happens_before():
    rng = np.random.default_rng(11)
    racy_programs = 0
    for _ in range(300):
        program = _random_synchronized_program(rng)
        found = [p for p in check(program, SMALL) if "race" in p.message]
        expected = _brute_force_racy(program, SMALL)
        assert bool(found) == bool(expected), (asm.disassemble(program), found, expected)
        if expected:
            racy_programs += 1
            # the first racing instruction is always reported (later ones may be shadowed)
            assert min(p.index for p in found) == min(expected)
            assert {p.index for p in found} <= expected
    assert 50 < racy_programs < 280        # both outcomes are well represented


def test_non_instructions_are_refused():
    found = problems_of([asm.assemble_line("SYNC"), "HALT"])
    assert found == ["instruction 1 `'HALT'`: expected an isa.Instruction (isa.make, "
                     "asm.assemble), got str"]


def problems_of(program):
    return [str(p) for p in check(program, CFG)]
