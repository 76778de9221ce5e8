"""A compiled program's host memory image, as the machine's runtime sees it: the bytes
it addresses, where each argument and output lives (and in which element format), and
the constants it is loaded with.

The compiler (backends/systolic/memory.py) builds one while planning memory; the JIT
and a loaded AOT artifact (aot/systolic.py) both run a program through the same two
calls, so their host images -- and so their outputs -- are identical:

    memory = image.with_arguments(arrays, config.bf16_rounding)   # a fresh image
    functional.run(program, config, memory, check=False)
    outputs = image.outputs_from(memory, output_shapes)

Arguments are f32, or bf16 (the upper 16 bits, rounded as the matrix unit rounds) when
only the matrix unit reads them; outputs are f32. Every region is 64-byte aligned.
Nothing here imports the compiler.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .functional import encode_host

ALIGNMENT = 64
ELEMENT_BYTES = {"f32": 4, "bf16": 2}          # the formats of arguments, outputs, constants
STORAGE = {"f32": np.dtype(np.float32), "bf16": np.dtype(np.uint16)}   # an encoded array's dtype


def aligned(n: int) -> int:
    return -(-n // ALIGNMENT) * ALIGNMENT


def encode(array, fmt: str, rounding: str = "nearest_even") -> np.ndarray:
    """An array in a host element format: f32, or bf16 as its upper 16 bits (uint16)."""
    return encode_host(np.ascontiguousarray(array, dtype=np.float32), fmt, rounding)


@dataclass
class HostImage:
    """Addresses and initial contents of host memory."""
    size: int = 0
    arguments: list[int] = field(default_factory=list)       # address per flat argument
    argument_formats: list[str] = field(default_factory=list)   # "f32" or "bf16" per argument
    outputs: list[int] = field(default_factory=list)         # address per flat output (f32)
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
            memory[address:address + array.nbytes] = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
        return memory

    def with_arguments(self, arrays, rounding: str = "nearest_even") -> np.ndarray:
        """The initial image with the arguments written in (callers check shapes first)."""
        memory = self.initial()
        for address, fmt, array in zip(self.arguments, self.argument_formats, arrays):
            data = encode(array, fmt, rounding).reshape(-1)
            memory[address:address + data.nbytes] = data.view(np.uint8)
        return memory

    def outputs_from(self, memory: np.ndarray, shapes) -> list[np.ndarray]:
        """Each output region as a float32 array of its shape (a copy)."""
        results = []
        for address, dims in zip(self.outputs, shapes):
            count = int(np.prod(dims)) if dims else 1
            results.append(memory[address:address + 4 * count].view(np.float32).reshape(dims).copy())
        return results
