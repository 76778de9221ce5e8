"""A compiled systolic program: instructions, the machine it was compiled for, and its
host memory image -- everything needed to run it without the compiler.

    program.text()            assembly (runtime/systolic/asm.py), one instruction per line
    program.binary()          the 128-bit encoding of every instruction
    program.config            the SystolicConfig the addresses and tiles were planned for
    program.to_dict()         a JSON-able manifest (config fields, addresses, sizes) that
                              with binary() and the constants is what an AOT artifact keeps
    SystolicProgram.from_parts(program.to_dict(), program.binary(), program.constant_arrays())
                              the same program again, without the compiler
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from ...runtime.systolic import asm, isa
from ...runtime.systolic.config import SystolicConfig
from .memory import HostImage


@dataclass
class SystolicProgram:
    config: SystolicConfig
    instructions: list
    image: HostImage
    name: str = "main"
    ub_peak_rows: int = 0
    argument_shapes: list = field(default_factory=list)
    output_shapes: list = field(default_factory=list)
    origins: list = field(default_factory=list)    # per instruction: the HLO instruction it came from

    def text(self) -> str:
        return asm.disassemble(self.instructions)

    def binary(self) -> bytes:
        return isa.encode_program(self.instructions)

    @property
    def host_bytes(self) -> int:
        return self.image.size

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for ins in self.instructions:
            out[ins.name] = out.get(ins.name, 0) + 1
        return out

    def to_dict(self) -> dict:
        return {"name": self.name, "config": dataclasses.asdict(self.config),
                "host_bytes": self.image.size, "arguments": list(self.image.arguments),
                "argument_formats": list(self.image.argument_formats),
                "outputs": list(self.image.outputs),
                "argument_shapes": [list(s) for s in self.argument_shapes],
                "output_shapes": [list(s) for s in self.output_shapes],
                "constants": [[a, int(v.size)] for a, v in self.image.constants],
                "instructions": len(self.instructions), "ub_peak_rows": self.ub_peak_rows,
                "origins": list(self.origins)}

    def constant_arrays(self) -> list[np.ndarray]:
        """The constants of the host image, encoded (f32, or bf16 bits as uint16)."""
        return [array for _, array in self.image.constants]

    @classmethod
    def from_parts(cls, manifest: dict, binary: bytes, constants) -> "SystolicProgram":
        """Rebuild a program from what `to_dict`, `binary` and `constant_arrays` give."""
        config = SystolicConfig(**manifest["config"])
        image = HostImage(size=manifest["host_bytes"], arguments=list(manifest["arguments"]),
                          argument_formats=list(manifest["argument_formats"]),
                          outputs=list(manifest["outputs"]))
        if len(constants) != len(manifest["constants"]):
            raise ValueError(f"program {manifest['name']!r} has {len(manifest['constants'])} constants, "
                             f"given {len(constants)}")
        for (address, size), array in zip(manifest["constants"], constants):
            array = np.asarray(array)
            if array.size != size:
                raise ValueError(f"constant at host byte {address}: {size} elements expected, given {array.size}")
            image.constants.append((address, array))
        return cls(config, isa.decode_program(binary), image, name=manifest["name"],
                   argument_shapes=[tuple(s) for s in manifest["argument_shapes"]],
                   output_shapes=[tuple(s) for s in manifest["output_shapes"]],
                   ub_peak_rows=int(manifest.get("ub_peak_rows", 0)),
                   origins=[str(o) for o in manifest.get("origins", [])])

    # ------------------------------------------------------------ host memory

    def memory_with(self, arrays) -> np.ndarray:
        """The initial host image with the arguments written in."""
        return self.image.with_arguments(arrays, self.config.bf16_rounding)

    def outputs_from(self, memory: np.ndarray) -> list[np.ndarray]:
        return self.image.outputs_from(memory, self.output_shapes)
