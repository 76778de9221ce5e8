"""Running passes: verification, fixed points, timing, disabling and dumps.

A pass is an object with a `name` and `run(module) -> bool` (True when it changed the
module). Everything around the passes -- the verifier after each change, the
iteration cap of fixed-point groups, timings, `TESSEL_DISABLE_PASSES`, and the dumps
selected by `TESSEL_DUMP_PASS_RE` into `TESSEL_DUMP_TO` -- lives here, outside them.
"""
from __future__ import annotations

import itertools
import os
import re
import time
import warnings
from dataclasses import dataclass, field
from typing import Protocol, Sequence

from . import verifier
from .ir import Module


class Pass(Protocol):
    name: str
    # optional: tags = ("fusion",) lets TESSEL_DISABLE_PASSES=fusion turn off a family


    def run(self, module: Module) -> bool: ...


class PassError(RuntimeError):
    """A pass left the module invalid or failed."""


class FixedPointWarning(RuntimeWarning):
    """A fixed-point group hit its iteration cap while still changing the module."""


@dataclass
class PassRecord:
    name: str
    seconds: float
    changed: bool


@dataclass
class PipelineReport:
    """What a pipeline run did: per-pass timings and changes, fixed points not reached."""
    records: list[PassRecord] = field(default_factory=list)
    caps_hit: list[str] = field(default_factory=list)

    def total_seconds(self, name: str | None = None) -> float:
        return sum(r.seconds for r in self.records if name is None or r.name == name)

    def summary(self) -> str:
        by_name: dict[str, list[PassRecord]] = {}
        for r in self.records:
            by_name.setdefault(r.name, []).append(r)
        lines = [f"{'pass':<28}{'runs':>6}{'changed':>9}{'ms':>10}"]
        for name, rs in by_name.items():
            lines.append(f"{name:<28}{len(rs):>6}{sum(r.changed for r in rs):>9}"
                         f"{1000 * sum(r.seconds for r in rs):>10.2f}")
        for cap in self.caps_hit:
            lines.append(f"fixed point not reached: {cap}")
        return "\n".join(lines)


@dataclass
class FixedPoint:
    """Run `passes` in order, again and again, until none changes the module (or the cap)."""
    name: str
    passes: Sequence
    max_iterations: int = 16


@dataclass
class DumpConfig:
    directory: str | None
    pattern: re.Pattern | None

    @classmethod
    def from_env(cls) -> "DumpConfig":
        directory = os.environ.get("TESSEL_DUMP_TO") or None
        regex = os.environ.get("TESSEL_DUMP_PASS_RE")
        pattern = re.compile(regex) if regex else (re.compile(".*") if directory else None)
        return cls(directory, pattern)

    def wants(self, pass_name: str) -> bool:
        return self.directory is not None and self.pattern is not None \
            and self.pattern.search(pass_name) is not None


_dump_counter = itertools.count(1)   # process-wide, so dumps of several compiles never collide
_FILE_UNSAFE = re.compile(r"[^\w.\-]")


def disabled_from_env() -> frozenset[str]:
    text = os.environ.get("TESSEL_DISABLE_PASSES", "")
    return frozenset(name.strip() for name in text.split(",") if name.strip())


class PassManager:
    """Runs a list of passes and fixed-point groups over a module."""

    def __init__(self, name: str, passes: Sequence, verify: bool = True,
                 disabled: frozenset[str] | None = None, dump: DumpConfig | None = None):
        self.name = name
        self.passes = list(passes)
        self.verify = verify
        self.disabled = disabled_from_env() if disabled is None else frozenset(disabled)
        self.dump = dump or DumpConfig.from_env()

    def run(self, module: Module) -> PipelineReport:
        report = PipelineReport()
        self._run_list(self.passes, module, report)
        return report

    def _run_list(self, passes, module, report) -> bool:
        changed = False
        for p in passes:
            if isinstance(p, FixedPoint):
                changed |= self._run_fixed_point(p, module, report)
            else:
                changed |= self._run_one(p, module, report)
        return changed

    def _run_fixed_point(self, group: FixedPoint, module, report) -> bool:
        changed_any = False
        for _ in range(group.max_iterations):
            if not self._run_list(group.passes, module, report):
                return changed_any
            changed_any = True
        report.caps_hit.append(f"{group.name} (still changing after {group.max_iterations} iterations)")
        warnings.warn(f"pipeline {self.name}: fixed point {group.name} not reached after "
                      f"{group.max_iterations} iterations; continuing with the module as it is",
                      FixedPointWarning, stacklevel=2)
        return changed_any

    def _run_one(self, p, module, report) -> bool:
        if p.name in self.disabled or self.disabled.intersection(getattr(p, "tags", ())):
            return False
        dumping = self.dump.wants(p.name)
        if dumping:
            self._write_dump(module, p.name, "before")
        start = time.perf_counter()
        try:
            changed = bool(p.run(module))
        except verifier.VerifyError:
            raise
        except Exception as e:
            raise PassError(f"pass {p.name} failed on module {module.name}: {e}") from e
        report.records.append(PassRecord(p.name, time.perf_counter() - start, changed))
        if dumping:
            self._write_dump(module, p.name, "after")
        if changed and self.verify:
            try:
                verifier.verify(module)
            except verifier.VerifyError as e:
                raise verifier.VerifyError(f"module invalid after pass {p.name}: {e}") from e
        return changed

    def _write_dump(self, module: Module, pass_name: str, stage: str) -> None:
        from . import graph, printer
        os.makedirs(self.dump.directory, exist_ok=True)
        # Module and pass names may hold any character (quoted names in HLO text); keep
        # the file name to one plain path component.
        label = _FILE_UNSAFE.sub("_", f"{module.name}.{pass_name}")
        stem = f"{next(_dump_counter):04d}.{label}.{stage}"
        base = os.path.join(self.dump.directory, stem)
        with open(base + ".hlo", "w") as f:
            f.write(printer.print_module(module))
        with open(base + ".dot", "w") as f:
            f.write(graph.to_dot(module))
