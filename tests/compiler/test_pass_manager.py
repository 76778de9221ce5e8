"""The pass manager's contract, with toy passes defined here.

Verification after every change ("after pass X"), fixed points with an iteration cap that
is reported rather than looped on, TESSEL_DISABLE_PASSES by name and by tag, timings per
pass, and TESSEL_DUMP_TO / TESSEL_DUMP_PASS_RE dumps numbered in order.
"""
from __future__ import annotations

import re
import time
import warnings

import pytest

from tessel.compiler import verifier
from tessel.compiler.ir import Shape
from tessel.compiler.parser import parse_module
from tessel.compiler.pass_manager import (FixedPoint, FixedPointWarning, PassError, PassManager,
                                          PipelineReport)
from tessel.compiler.printer import print_module

TEXT = """
HloModule toy
ENTRY main {
  x = f32[2] parameter(0)
  y = f32[2] parameter(1)
  s = f32[2] add(x, y)
  ROOT n = f32[2] negate(s)
}
"""


@pytest.fixture(autouse=True)
def no_pass_flags(monkeypatch):
    """Each test sets the flags it is about; none leak in from the environment."""
    for flag in ("TESSEL_DUMP_TO", "TESSEL_DUMP_PASS_RE", "TESSEL_DISABLE_PASSES"):
        monkeypatch.delenv(flag, raising=False)


def toy_module():
    return parse_module(TEXT)


def find(module, name):
    return next(i for i in module.entry.instructions if i.name == name)


# ----------------------------------------------------------------------------- toy passes

class Noop:
    """Changes nothing and says so."""
    def __init__(self, name="noop", tags=()):
        self.name, self.tags = name, tags

    def run(self, module):
        return False


class SortAddOperands:
    """Puts the operands of every add in name order (ascending or descending).

    Two of these with opposite orders undo each other forever: the oscillation a fixed
    point must survive."""
    def __init__(self, name, descending=False):
        self.name, self.descending = name, descending

    def run(self, module):
        changed = False
        for instr in module.entry.instructions:
            if instr.opcode == "add":
                ordered = sorted(instr.operands, key=lambda o: o.name, reverse=self.descending)
                if ordered != instr.operands:
                    instr.operands, changed = ordered, True
        return changed


class NegateToAbs:
    """A rewrite that reaches its fixed point: negate -> abs, once."""
    name = "negate-to-abs"

    def run(self, module):
        changed = False
        for instr in module.entry.instructions:
            if instr.opcode == "negate":
                instr.opcode, changed = "abs", True
        return changed


class BreakShape:
    """Declares a wrong result type on the add and says it changed the module."""
    name = "break-shape"

    def run(self, module):
        find(module, "s").shape = Shape("f32", (3,))
        return True


class Crash:
    name = "crash"

    def run(self, module):
        raise KeyError("no such thing")


class Sleep:
    def __init__(self, name, seconds):
        self.name, self.seconds = name, seconds

    def run(self, module):
        time.sleep(self.seconds)
        return False


def run(passes, module=None, **options) -> PipelineReport:
    return PassManager("toy-pipeline", passes, **options).run(module or toy_module())


# ----------------------------------------------------------------------------- verification

@pytest.mark.no_round_trip  # the module is broken on purpose
def test_a_pass_that_breaks_the_module_is_named_with_the_verifiers_message():
    with pytest.raises(verifier.VerifyError) as info:
        run([Noop(), BreakShape(), Noop("after")])
    message = str(info.value)
    assert message.startswith("module invalid after pass break-shape: ")
    assert "instruction s (add)" in message
    assert "add produces f32[2], but the instruction declares f32[3]" in message
    assert isinstance(info.value.__cause__, verifier.VerifyError)


@pytest.mark.no_round_trip  # the module is broken on purpose
def test_verification_can_be_turned_off():
    report = run([BreakShape()], verify=False)
    assert [r.name for r in report.records] == ["break-shape"]


def test_a_pass_that_raises_is_named_and_chained():
    with pytest.raises(PassError, match=r"pass crash failed on module toy: 'no such thing'") as info:
        run([Crash()])
    assert isinstance(info.value.__cause__, KeyError)


def test_a_valid_change_passes_verification():
    module = toy_module()
    report = run([NegateToAbs()], module)
    assert report.records[0].changed and find(module, "n").opcode == "abs"


# ----------------------------------------------------------------------------- fixed points

def test_an_oscillating_rewrite_hits_the_cap_and_is_reported():
    module = toy_module()
    group = FixedPoint("flip-flop", [SortAddOperands("sort-up"), SortAddOperands("sort-down", descending=True)],
                       max_iterations=5)
    start = time.perf_counter()
    with pytest.warns(FixedPointWarning, match="fixed point flip-flop not reached after 5 iterations"):
        report = run([group, Noop("after-the-group")], module)
    assert time.perf_counter() - start < 5
    assert report.caps_hit == ["flip-flop (still changing after 5 iterations)"]
    names = [r.name for r in report.records]
    assert names == ["sort-up", "sort-down"] * 5 + ["after-the-group"]   # the pipeline goes on
    # add(x, y) is sorted already; from then on each pass undoes the other
    assert [r.changed for r in report.records[:10]] == [False] + [True] * 9
    assert "fixed point not reached: flip-flop" in report.summary()
    verifier.verify(module)


def test_a_converging_group_stops_when_nothing_changes():
    with warnings.catch_warnings():
        warnings.simplefilter("error", FixedPointWarning)
        report = run([FixedPoint("simplify", [NegateToAbs(), SortAddOperands("sort-up")], max_iterations=5)])
    assert [(r.name, r.changed) for r in report.records] == [
        ("negate-to-abs", True), ("sort-up", False), ("negate-to-abs", False), ("sort-up", False)]
    assert report.caps_hit == []


# ----------------------------------------------------------------------------- disabling

def test_disable_passes_by_name(monkeypatch):
    monkeypatch.setenv("TESSEL_DISABLE_PASSES", "negate-to-abs, other")
    module = toy_module()
    report = run([NegateToAbs(), Noop("kept")], module)
    assert [r.name for r in report.records] == ["kept"]
    assert find(module, "n").opcode == "negate"


def test_disable_passes_by_tag(monkeypatch):
    monkeypatch.setenv("TESSEL_DISABLE_PASSES", "fusion")
    report = run([Noop("loop-fusion", tags=("fusion",)), Noop("output-fusion", tags=("fusion",)),
                  Noop("cse", tags=("simplify",))])
    assert [r.name for r in report.records] == ["cse"]


def test_disabled_passes_given_directly_override_the_environment(monkeypatch):
    monkeypatch.setenv("TESSEL_DISABLE_PASSES", "kept")
    report = run([Noop("kept"), Noop("dropped")], disabled={"dropped"})
    assert [r.name for r in report.records] == ["kept"]


def test_a_disabled_pass_inside_a_fixed_point_is_skipped_every_iteration(monkeypatch):
    monkeypatch.setenv("TESSEL_DISABLE_PASSES", "sort-down")
    group = FixedPoint("flip-flop", [SortAddOperands("sort-up"), SortAddOperands("sort-down", descending=True)])
    with warnings.catch_warnings():
        warnings.simplefilter("error", FixedPointWarning)
        report = run([group])   # without its partner the flip-flop converges
    assert [r.name for r in report.records] == ["sort-up"]


# ----------------------------------------------------------------------------- timing and summary

def test_every_run_of_every_pass_is_timed():
    report = run([Sleep("slow", 0.02), Sleep("fast", 0), Sleep("slow", 0.02)])
    assert [r.name for r in report.records] == ["slow", "fast", "slow"]
    assert all(r.seconds >= 0 for r in report.records)
    assert report.total_seconds("slow") >= 0.04
    assert report.total_seconds() == pytest.approx(sum(r.seconds for r in report.records))


def test_summary_lists_each_pass_with_runs_changes_and_time():
    report = run([FixedPoint("g", [NegateToAbs(), Noop()], max_iterations=4), Noop("last")])
    lines = report.summary().splitlines()
    assert lines[0].split() == ["pass", "runs", "changed", "ms"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert list(rows) == ["negate-to-abs", "noop", "last"]
    assert rows["negate-to-abs"][:2] == ["2", "1"] and rows["noop"][:2] == ["2", "0"]
    assert rows["last"][:2] == ["1", "0"]
    float(rows["last"][2])


# ----------------------------------------------------------------------------- dumps

DUMP_NAME = re.compile(r"(\d{4,})\.toy\.([\w.-]+)\.(before|after)\.(hlo|dot)")


def dumped(directory) -> list[tuple[int, str, str, str]]:
    """(number, pass, stage, extension) of every dump file, in number order."""
    found = []
    for path in directory.iterdir():
        match = DUMP_NAME.fullmatch(path.name)
        assert match, f"unexpected file in the dump directory: {path.name}"
        number, pass_name, stage, ext = match.groups()
        found.append((int(number), pass_name, stage, ext))
    return sorted(found)


def test_dumps_are_numbered_before_and_after_files_for_matching_passes_only(tmp_path, monkeypatch):
    monkeypatch.setenv("TESSEL_DUMP_TO", str(tmp_path))
    monkeypatch.setenv("TESSEL_DUMP_PASS_RE", r"^(negate-to-abs|sort-down)$")
    run([Noop("unseen"), NegateToAbs(), SortAddOperands("sort-up", descending=True),
         SortAddOperands("sort-down"), Noop("unseen-too")])
    files = dumped(tmp_path)
    assert [(p, stage) for _, p, stage, ext in files if ext == "hlo"] == [
        ("negate-to-abs", "before"), ("negate-to-abs", "after"),
        ("sort-down", "before"), ("sort-down", "after")]
    assert sorted(ext for *_, ext in files) == ["dot"] * 4 + ["hlo"] * 4
    numbers = sorted({n for n, *_ in files})
    assert len(numbers) == 4 and numbers == sorted(numbers)   # one number per before/after, increasing
    for number in numbers:     # each number names one .hlo and its .dot
        assert sorted(ext for n, *_, ext in files if n == number) == ["dot", "hlo"]

    def read(pass_name, stage, ext):
        number = next(n for n, p, s, e in files if (p, s, e) == (pass_name, stage, ext))
        return (tmp_path / f"{number:04d}.toy.{pass_name}.{stage}.{ext}").read_text()

    before, after = read("negate-to-abs", "before", "hlo"), read("negate-to-abs", "after", "hlo")
    assert "negate(s)" in before and "abs(s)" in after
    assert print_module(parse_module(after)) == after          # the dumps are valid HLO text
    assert "add(y, x)" in read("sort-down", "before", "hlo") and "add(x, y)" in read("sort-down", "after", "hlo")
    assert read("sort-down", "after", "dot").startswith('digraph "toy"')


def test_dump_to_without_a_pattern_dumps_every_pass(tmp_path, monkeypatch):
    monkeypatch.setenv("TESSEL_DUMP_TO", str(tmp_path / "new" / "dir"))
    run([Noop("a"), Noop("b")])
    files = dumped(tmp_path / "new" / "dir")
    assert [(p, s) for _, p, s, ext in files if ext == "hlo"] == [
        ("a", "before"), ("a", "after"), ("b", "before"), ("b", "after")]


def test_dumps_inside_a_fixed_point_follow_every_iteration(tmp_path, monkeypatch):
    monkeypatch.setenv("TESSEL_DUMP_TO", str(tmp_path))
    monkeypatch.setenv("TESSEL_DUMP_PASS_RE", "sort-up")
    group = FixedPoint("flip-flop", [SortAddOperands("sort-up"), SortAddOperands("sort-down", descending=True)],
                       max_iterations=3)
    with pytest.warns(FixedPointWarning):
        run([group])
    hlo = [(p, s) for _, p, s, ext in dumped(tmp_path) if ext == "hlo"]
    assert hlo == [("sort-up", "before"), ("sort-up", "after")] * 3


def test_no_dumps_without_dump_to(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TESSEL_DUMP_PASS_RE", ".*")
    run([NegateToAbs()])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.no_round_trip  # the module is broken on purpose
def test_the_module_a_breaking_pass_left_is_dumped_before_the_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TESSEL_DUMP_TO", str(tmp_path))
    with pytest.raises(verifier.VerifyError, match="after pass break-shape"):
        run([BreakShape()])
    after = [f for f in dumped(tmp_path) if f[2] == "after"]
    assert {ext for *_, ext in after} == {"hlo", "dot"}
    number = after[0][0]
    assert "s = f32[3] add(x, y)" in (tmp_path / f"{number:04d}.toy.break-shape.after.hlo").read_text()


def test_dump_file_names_stay_in_the_dump_directory_whatever_the_names(tmp_path, monkeypatch):
    monkeypatch.setenv("TESSEL_DUMP_TO", str(tmp_path))
    module = parse_module(TEXT.replace("HloModule toy", 'HloModule "../up and/over"'))
    run([Noop("odd/pass name")], module)
    names = sorted(p.name for p in tmp_path.iterdir())
    expected = re.compile(r"\d{4,}\.\.\._up_and_over\.odd_pass_name\.(before|after)\.(hlo|dot)")
    assert len(names) == 4 and all(expected.fullmatch(n) for n in names), names
