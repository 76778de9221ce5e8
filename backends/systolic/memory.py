"""The host memory image of a compiled program: where each value lives, by liveness.

Host memory is laid out as

    [arguments][outputs][constants][temporaries]

each array 64-byte aligned. Values are f32, except values only the matrix unit reads
(operands of dots and convolutions: weights, and activations between layers) when the
machine multiplies in bf16: those are stored as bf16, rounded as MATMUL / LOAD_W would
round them, so results are bit-identical, and take half the host bytes and bandwidth
(TPUs keep such tensors in bf16 in HBM too). Arguments are written by the runtime before a run and
outputs read after it; constants (the module's, and the compiler's own: a row of zeros
for fills) are part of the image the program is loaded with. Temporaries share bytes
when their live ranges do not overlap: a value is live from the step that writes it to
the last step that reads it -- directly, or through a view (a slice or broadcast of it
read by a later instruction keeps it alive; compiler/buffer_assignment.py's liveness
cannot see that, which is why the systolic backend plans its own).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...compiler.dtypes import round_to_bf16

ALIGNMENT = 64
ROUNDING = {"nearest_even": "nearest", "truncate": "truncate"}     # config name -> dtypes name


def encode(array, fmt: str, rounding: str = "nearest_even") -> np.ndarray:
    """An array in a host element format: f32, or bf16 as its upper 16 bits."""
    array = np.ascontiguousarray(array, dtype=np.float32)
    if fmt == "f32":
        return array
    bits = round_to_bf16(array, ROUNDING[rounding]).view(np.uint32) >> np.uint32(16)
    return bits.astype(np.uint16)


def aligned(n: int) -> int:
    return -(-n // ALIGNMENT) * ALIGNMENT


@dataclass
class Temporary:
    key: object
    size: int
    start: int          # first step (inclusive)
    end: int            # last step (inclusive)
    address: int = -1


@dataclass
class HostImage:
    """Addresses and initial contents of host memory."""
    size: int = 0
    arguments: list[int] = field(default_factory=list)       # address per flat argument
    argument_formats: list[str] = field(default_factory=list)   # "f32" or "bf16" per argument
    outputs: list[int] = field(default_factory=list)         # address per flat output
    constants: list[tuple[int, np.ndarray]] = field(default_factory=list)   # (address, encoded array)

    def region(self, nbytes: int) -> int:
        """A fresh aligned region at the end of the image."""
        address = self.size
        self.size += aligned(max(nbytes, 1))
        return address

    def add_constant(self, array: np.ndarray, fmt: str = "f32", rounding: str = "nearest_even") -> int:
        array = encode(array, fmt, rounding)
        address = self.region(array.nbytes)
        self.constants.append((address, array))
        return address

    def initial(self) -> np.ndarray:
        """The image as bytes, constants in place, everything else zero."""
        memory = np.zeros(self.size, np.uint8)
        for address, array in self.constants:
            memory[address:address + array.nbytes] = array.reshape(-1).view(np.uint8)
        return memory


def pack(temporaries: list[Temporary], base: int) -> int:
    """Give each temporary an address at or above `base`, sharing bytes between those not
    live at the same time (biggest first, lowest gap that holds it); returns the end."""
    placed: list[Temporary] = []
    top = base
    for t in sorted(temporaries, key=lambda t: (-t.size, t.start)):
        busy = sorted((p.address, p.address + aligned(p.size)) for p in placed
                      if p.start <= t.end and t.start <= p.end)
        address = base
        for lo, hi in busy:
            if address + aligned(t.size) <= lo:
                break
            address = max(address, hi)
        t.address = address
        placed.append(t)
        top = max(top, address + aligned(t.size))
    return top
