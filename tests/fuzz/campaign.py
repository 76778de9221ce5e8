"""The long randomized runs behind the `fuzz` marker (docs/reliability.md, "Fuzzing"):
hypothesis settings that draw new programs every run, and the bookkeeping that counts,
records coverage and collects every failure instead of stopping at the first."""
from __future__ import annotations

import os
from collections import Counter

from hypothesis import HealthCheck, settings

import checks


def campaign_settings(examples: int):
    """New programs each run (no fixed seed, no example database), no time limits."""
    return settings(max_examples=examples, derandomize=False, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))


class Campaign:
    """Counts, op coverage and every failure of one long run (failures are collected,
    not shrunk, so one run reports every distinct problem), written to $TESSEL_FUZZ_LOG.
    `ops_of(program)` names what a program uses (ops or functions), `describe(program)`
    is the text that reproduces it."""

    def __init__(self, name: str, op_set: set, ops_of, describe):
        self.name, self.op_set, self.ops_of, self.describe = name, op_set, ops_of, describe
        self.count, self.seen, self.failures, self.refused = 0, Counter(), [], Counter()
        self.log = os.environ.get("TESSEL_FUZZ_LOG")

    def note(self, text: str):
        if self.log:
            with open(self.log, "a") as f:
                f.write(text + "\n")

    def run(self, program, check):
        """`check(program)` raises on a mismatch, or returns a backend's refusal reason."""
        self.count += 1
        self.seen.update(self.ops_of(program))
        try:
            refused = check(program)
            if refused:
                self.refused[checks.refusal_kind(refused)] += 1
        except Exception as e:   # noqa: BLE001 -- every failure is a finding, recorded below
            self.failures.append(f"{type(e).__name__}: {str(e).splitlines()[0][:300]}")
            self.note(f"FAILURE {self.failures[-1]}\n{self.describe(program)}\n")
        if self.count % 50 == 0:
            self.note(f"{self.name}: {self.count} programs, {len(self.failures)} failures, {len(self.seen)} ops")

    def summary(self) -> str:
        covered = set(self.seen) & self.op_set
        lines = [f"{self.name} campaign: {self.count} programs generated, {len(self.failures)} mismatches, "
                 f"{len(covered)} of {len(self.op_set)} ops covered"]
        if self.op_set - covered:
            lines.append(f"  not covered: {sorted(self.op_set - covered)}")
        if self.refused:
            lines.append(f"  refused by the backend ({sum(self.refused.values())}): {dict(self.refused)}")
        lines.append(f"  op counts (programs containing each): {dict(sorted(self.seen.items()))}")
        return "\n".join(lines)

    def finish(self, extra: str = ""):
        text = self.summary() + (f"\n  {extra}" if extra else "")
        self.note(text)
        print("\n" + text)
        assert not self.failures, "\n".join(Counter(self.failures))
        assert set(self.seen) >= self.op_set, sorted(self.op_set - set(self.seen))
