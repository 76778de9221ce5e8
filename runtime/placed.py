"""Placed programs: one module spanning devices, run part by part.

    program = PlacedProgram(placed_module)      # after placement + device-transfers
    outputs = program.run(arrays)
    program.report()                            # systolic cycles + transfer bytes

The placed module (compiler/passes/placement.py, device_transfers.py) is cut into
*parts*: maximal runs of instructions on one device, in an order that keeps each device's
instructions together as long as the dependencies allow (fewer parts, fewer switches).
Each part is a module of its own, as `backends/cpu/segments.py` cuts at collectives:
its parameters are the values it reads that something else made (the program's
arguments, values received from another device, values an earlier part of the same
device made -- those stay where they are), its root a tuple of the values read later.
Constants are copied into every part that reads them. Each part is optimized by its
device's pipeline (compiler/pipeline.py: so fusion never crosses a device boundary)
and compiled by its device's backend: CPU parts are native code, systolic parts
instruction streams on the functional simulator.

At run time the parts run in order; a recv's value is the matching send's operand,
copied ("moved") once per call into the receiving device's memory and counted
(`bytes_moved`). Transfers are data-independent, so the report's figures are known at
compile time; the counter checks that the run moved exactly those bytes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..compiler.device_runs import device_runs, through_transfer
from ..compiler.extract import bind_arguments, extract, reads_after
from ..compiler.ir import Instruction, Module
from ..compiler.passes.placement import device_of, unplaced_attrs
from . import backends
from .executable import Executable

# The link between the host (CPU) and the systolic machine, as data: a PCIe 4.0 x16
# link's usable bandwidth and a DMA round trip's latency (order of magnitude).
HOST_LINK = {"bytes_per_second": 25e9, "latency_seconds": 2e-6}


def transfer_seconds(num_bytes: int, link: dict = HOST_LINK) -> float:
    return link["latency_seconds"] + num_bytes / link["bytes_per_second"]


@dataclass
class Part:
    """One device's run of instructions: reads `inputs`, writes `outputs` (original instructions)."""
    device: str
    module: Module
    inputs: list[Instruction]
    outputs: list[Instruction]
    optimized: Module | None = None
    run: Callable | None = None

    @property
    def runner(self):
        """The backend's compiled object (a SystolicExecutable for systolic parts)."""
        return getattr(self.run, "__self__", None)


@dataclass(frozen=True)
class Transfer:
    channel_id: int
    value: str          # the sent value's name
    source: str
    target: str
    nbytes: int


# ----------------------------------------------------------------------------- cutting

def cut(module: Module) -> list[Part]:
    entry = module.entry
    runs = device_runs(entry.instructions, device_of)
    read_later = reads_after(runs, entry.root.operands, through_transfer)
    parts = []
    for k, run in enumerate(runs):
        part = _part(module, f"{module.name}.part{k}.{device_of(run[0])}", run, read_later[k])
        if part.outputs:
            parts.append(part)
    return parts


def _part(module: Module, name: str, run: list[Instruction], read_later: set[Instruction]) -> Part:
    outputs = [i for i in run if i in read_later]
    part, inputs = extract(module, name, run, outputs, _tuple_across_devices, copy_constants=True,
                           attrs_of=unplaced_attrs)   # one device: no attribute
    return Part(device_of(run[0]), part, inputs, outputs)


def _tuple_across_devices(value: Instruction) -> Exception:
    return NotImplementedError(f"placement: the tuple {value.name} (from {value.loc_text}) crosses a "
                               f"device boundary; only arrays move between devices")


# ----------------------------------------------------------------------------- running

class PlacedProgram:
    """The parts of a placed module, each compiled for its device."""

    def __init__(self, module: Module, optimize: Callable[[Module, str], Module]):
        self.module = module
        entry = module.entry
        self.parts = cut(module)
        for part in self.parts:
            part.optimized = optimize(part.module, part.device)
            part.run = backends.get(part.device).compile(part.optimized)
        self.transfers = [Transfer(r.attrs["channel_id"], r.operands[0].operands[0].name, r.attrs["peer"],
                                   r.attrs["device"], r.shape.nbytes)
                          for r in entry.instructions if r.opcode == "recv" and r.operands]
        self.results = list(entry.root.operands)
        self.bytes_moved = 0           # every call's transfers, added up
        self.last_call_bytes = 0
        self.calls = 0
        self._report = None

    @property
    def transfer_bytes(self) -> int:
        """Bytes one call moves between devices: the sizes of the values at the cuts."""
        return sum(t.nbytes for t in self.transfers)

    def run(self, arrays) -> list[np.ndarray]:
        env = bind_arguments(self.module, arrays)
        moved = 0
        for part in self.parts:
            inputs = []
            for value in part.inputs:
                if value not in env:          # a recv: move the sent value to this device
                    env[value] = np.array(env[through_transfer(value)], copy=True)
                    moved += value.shape.nbytes
                inputs.append(env[value])
            env.update(zip(part.outputs, part.run(inputs)))
        self.bytes_moved += moved
        self.last_call_bytes = moved
        self.calls += 1
        return [np.asarray(_result(env, r)) for r in self.results]

    def parts_on(self, device: str) -> list[Part]:
        return [p for p in self.parts if p.device == device]

    def report(self) -> "PlacedReport":
        if self._report is None:
            self._report = PlacedReport.of(self)
        return self._report

    def parts_text(self) -> str:
        return "\n\n".join(f"// part {k} on {p.device}: reads {', '.join(i.name for i in p.inputs) or 'nothing'}\n"
                           f"{p.optimized}" for k, p in enumerate(self.parts))


def _result(env: dict, value: Instruction):
    if value.opcode == "constant" and value not in env:
        return np.array(value.attrs["value"].array)     # a fresh, writable copy per call
    return env[value]


# ----------------------------------------------------------------------------- the report

@dataclass
class PlacedReport:
    """The systolic parts' timing (cycles added up over parts) and the transfers.

    `total_cycles`, `seconds` and `mxu_utilization` mean what they mean in the systolic
    backend's TimingResult (runtime/systolic/timing.py), over all systolic parts;
    `transfer_bytes` / `transfer_seconds` are the cut's cost over HOST_LINK per call."""
    parts: list = field(default_factory=list)          # (part name, TimingResult) per systolic part
    transfers: list = field(default_factory=list)      # Transfer per send/recv pair
    clock_hz: float = 0.0
    array_cells: int = 0
    link: dict = field(default_factory=lambda: dict(HOST_LINK))

    @classmethod
    def of(cls, program: PlacedProgram) -> "PlacedReport":
        timed = [(p.module.name, p.runner.report()) for p in program.parts_on("systolic")]
        config = timed[0][1].config if timed else None
        return cls(timed, list(program.transfers), config.clock_hz if config else 0.0,
                   config.rows * config.cols if config else 0)

    @property
    def total_cycles(self) -> int:
        return sum(r.total_cycles for _, r in self.parts)

    @property
    def macs(self) -> int:
        return sum(r.macs for _, r in self.parts)

    @property
    def seconds(self) -> float:
        """Time on the systolic machine at its clock (transfers not included)."""
        return self.total_cycles / self.clock_hz if self.clock_hz else 0.0

    @property
    def mxu_utilization(self) -> float:
        if not self.total_cycles:
            return 0.0
        return self.macs / (self.array_cells * self.total_cycles)

    @property
    def transfer_bytes(self) -> int:
        return sum(t.nbytes for t in self.transfers)

    @property
    def transfer_seconds(self) -> float:
        return sum(transfer_seconds(t.nbytes, self.link) for t in self.transfers)

    @property
    def bytes_moved(self) -> dict:
        moved: dict[str, int] = {}
        for _, r in self.parts:
            for k, v in r.bytes_moved.items():
                moved[k] = moved.get(k, 0) + v
        return moved

    def summary(self) -> dict:
        return {"systolic_parts": len(self.parts), "total_cycles": self.total_cycles,
                "seconds": self.seconds, "macs": self.macs, "mxu_utilization": self.mxu_utilization,
                "transfers": len(self.transfers), "transfer_bytes": self.transfer_bytes,
                "transfer_seconds": self.transfer_seconds,
                "link_bytes_per_second": self.link["bytes_per_second"],
                "bytes_moved": self.bytes_moved}

    def text(self) -> str:
        lines = [f"systolic: {self.total_cycles:,} cycles in {len(self.parts)} part(s) "
                 f"({self.seconds * 1e6:.1f} us at {self.clock_hz / 1e6:.0f} MHz), "
                 f"MXU utilization {self.mxu_utilization:.1%}",
                 f"transfers: {len(self.transfers)}, {self.transfer_bytes:,} bytes "
                 f"({self.transfer_seconds * 1e6:.1f} us at {self.link['bytes_per_second'] / 1e9:.0f} GB/s)"]
        lines += [f"  channel {t.channel_id}: {t.value} {t.source} -> {t.target}, {t.nbytes:,} B"
                  for t in self.transfers]
        return "\n".join(lines)

    __str__ = text


__all__ = ["HOST_LINK", "Part", "PlacedExecutable", "PlacedProgram", "PlacedReport", "Transfer", "cut",
           "transfer_seconds"]


# ----------------------------------------------------------------------------- the executable

def _optimize(module: Module, device: str) -> Module:
    from ..compiler import pipeline
    return pipeline.optimize(module, device)[0]


class PlacedExecutable(Executable):
    """An Executable whose program spans devices: `as_text()` is the placed module (the
    `device` of every instruction, the send/recv pairs), `parts_text()` the optimized
    parts, `systolic_report()` a PlacedReport."""

    placed = True      # artifacts (aot/) refuse placed programs

    def __init__(self, module: Module, backend: str, signature, name: str = "main"):
        self.module = module
        self.backend = backend
        self.signature = signature
        self.name = name
        self.program = PlacedProgram(module, _optimize)
        self._run = self.program.run

    @property
    def devices(self) -> list[str]:
        return sorted({p.device for p in self.program.parts})

    @property
    def backend_runner(self):
        return self.program

    def parts_text(self) -> str:
        return self.program.parts_text()

    def systolic_report(self) -> PlacedReport:
        return self.program.report()

    def program_text(self) -> str:
        parts = self.program.parts_on("systolic")
        if not parts:
            raise ValueError(f"{self.name}: no part of this placed program runs on the systolic device")
        return "\n".join(f"; {p.module.name}\n{p.runner.program.text()}" for p in parts)
