"""Fixtures for the systolic machine's tests."""
from __future__ import annotations

import numpy as np
import pytest

from tessel.runtime.systolic import isa


def random_value(f: isa.Field, unit: str, rng: np.random.Generator):
    if f.kind == "uint":
        return int(rng.integers(0, 1 << f.bits))
    if f.kind == "enum":
        return str(rng.choice(f.choices))
    if f.kind == "f32":
        while True:   # any f32 but NaN (NaN payloads are not kept by the text form)
            value = np.array(rng.integers(0, 1 << 32), np.uint32).view(np.float32)
            if not np.isnan(value):
                return float(value)
    others = [u for u in isa.UNITS if u != unit]
    return tuple(u for u in others if rng.random() < 0.4)


def random_instruction(rng: np.random.Generator) -> isa.Instruction:
    """Any encodable instruction: every field at a random value of its width."""
    op = isa.OPCODES[str(rng.choice(list(isa.OPCODES)))]
    return isa.make(op.name, **{f.name: random_value(f, op.unit, rng) for f in op.all_fields})


@pytest.fixture
def random_program():
    def make(rng: np.random.Generator, length: int) -> list[isa.Instruction]:
        return [random_instruction(rng) for _ in range(length)]
    return make
