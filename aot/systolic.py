"""Systolic artifacts: a compiled program for the simulated machine, kept as data.

A systolic `.tsl` holds what running the program needs and nothing of the compiler:

    program/NAME.bin      the instructions in the ISA's 128-bit binary encoding (runs)
    program/NAME.s        the same as assembly text (for reading; checked against the binary)
    program/origins.json  per instruction, the HLO instruction it implements (trace labels)
    constants/cK.npy      the host image's constants, encoded as the program reads them
                          (f32 as float32, bf16 as its upper 16 bits in uint16; never pickled)
    hlo/optimized.txt     the optimized HLO the program was compiled from

and, in the manifest's `program` field, the SystolicConfig it was compiled for and the
host image layout: its size, and where each input, output and constant lives (name,
element format, shape, byte address).

`load_program` trusts none of it: the config is rebuilt through config.py's checks, the
binary decoded by isa.py, the assembly compared with the binary, every region checked
to lie inside the image, the layout compared with the signature, the constants read
with allow_pickle=False and checked against their regions, and the program validated
(runtime/systolic/validate.py) -- all before `SystolicArtifact` runs anything. Running
is the functional simulator over the same HostImage calls the JIT uses, so a loaded
artifact's outputs equal the JIT's exactly. This module imports neither the frontend,
the compiler passes nor the systolic compiler (backends/systolic).
"""
from __future__ import annotations

import dataclasses
import io
import json
import os
from typing import Iterable, Mapping

import numpy as np

from ..runtime import pytree
from ..runtime.executable import Signature
from ..runtime.systolic import asm, functional, isa
from ..runtime.systolic.config import FIELD_NAMES, TIMING_FIELDS, ConfigError, SystolicConfig
from ..runtime.systolic.image import ELEMENT_BYTES, STORAGE, HostImage
from ..runtime.systolic.validate import RACES_ENV, ValidationError, validate
from . import manifest as mf
from .base import LoadedArtifact
from .errors import (ArtifactBackendError, ArtifactConfigError, ArtifactFormatError, ArtifactIntegrityError,
                     ArtifactProgramError)

PLACEMENT_OPS = ("send", "recv")


# ----------------------------------------------------------------------------- writing

def refuse_placed(module, name: str) -> None:
    """Programs split across devices (heterogeneous placement) are not kept as artifacts."""
    for comp in module.reachable_computations():
        for instr in comp.instructions:
            if instr.opcode in PLACEMENT_OPS or instr.attrs.get("device"):
                raise ArtifactBackendError(
                    f"{name}: {instr.opcode} {instr.name} is placed on a device "
                    f"({instr.attrs.get('device') or instr.opcode}): programs split between cpu and "
                    f"systolic cannot be saved as artifacts; compile the whole function for one backend")


def members(program, module, signature: Signature, prefix: str) -> tuple[dict, dict, dict[str, bytes]]:
    """(program manifest, files, members) of a compiled SystolicProgram."""
    image = program.image
    files = {"program": f"program/{prefix}.bin", "assembly": f"program/{prefix}.s",
             "origins": "program/origins.json", "hlo": "hlo/optimized.txt"}
    contents = {files["program"]: program.binary(), files["assembly"]: program.text().encode(),
                files["origins"]: json.dumps(list(program.origins)).encode(),
                files["hlo"]: str(module).encode()}
    out_paths = pytree.leaf_paths(signature.out_tree, "output") or ["output"]
    inputs = [_region(spec.path, fmt, shape, address) for spec, fmt, shape, address in
              zip(signature.in_specs, image.argument_formats, program.argument_shapes, image.arguments)]
    outputs = [_region(path or f"output{k}", "f32", shape, address) for k, (path, shape, address) in
               enumerate(zip(out_paths, program.output_shapes, image.outputs))]
    constants = []
    for k, (address, array) in enumerate(image.constants):
        fmt = next(f for f, dtype in STORAGE.items() if dtype == array.dtype)
        entry = {**_region(f"c{k}", fmt, array.shape, address), "file": f"constants/c{k}.npy"}
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
        contents[entry["file"]] = buffer.getvalue()
        constants.append(entry)
    section = {"config": dataclasses.asdict(program.config), "host_bytes": image.size,
               "instructions": len(program.instructions), "inputs": inputs, "outputs": outputs,
               "constants": constants}
    return section, files, contents


def _region(name: str, fmt: str, shape, address: int) -> dict:
    return {"name": name, "fmt": fmt, "shape": [int(d) for d in shape], "address": int(address)}


# ----------------------------------------------------------------------------- loading

@dataclasses.dataclass(frozen=True)
class LoadedProgram:
    config: SystolicConfig
    instructions: list
    image: HostImage
    output_shapes: list
    origins: list | None = None      # per instruction: the HLO instruction it implements


def load_program(manifest: dict, contents: dict, signature: Signature, where: str) -> LoadedProgram:
    """The checked program of a verified systolic artifact (see module docstring)."""
    section = mf.field(manifest, "program", dict, where)
    files = mf.field(manifest, "files", dict, where)
    config = config_from_json(mf.field(manifest, "program.config", dict, where), where)
    size = mf.field(manifest, "program.host_bytes", int, where)
    if not 0 < size <= config.host_bytes:
        raise ArtifactProgramError(f"{where}: the host image has {size} bytes; the machine "
                                   f"addresses 1 to {config.host_bytes} (config host_bytes)")
    inputs = _regions(section, "inputs", size, where)
    outputs = _regions(section, "outputs", size, where)
    _check_signature(signature, inputs, outputs, where)
    image = HostImage(size=size, arguments=[r["address"] for r in inputs],
                      argument_formats=[r["fmt"] for r in inputs], outputs=[r["address"] for r in outputs],
                      constants=_constants(section, contents, size, where))
    instructions = _instructions(section, files, contents, where)
    races = os.environ.get(RACES_ENV, "") == "1"
    try:
        validate(instructions, config, host_bytes=size, races=races)
    except ValidationError as e:
        raise ArtifactProgramError(f"{where}: the program fails validation for its machine: {e}") from e
    return LoadedProgram(config, instructions, image, [tuple(r["shape"]) for r in outputs],
                         _origins(files, contents, len(instructions), where))


def config_from_json(data: dict, where: str) -> SystolicConfig:
    try:
        return SystolicConfig(**data)
    except (ConfigError, TypeError) as e:
        raise ArtifactConfigError(f"{where}: the machine configuration is invalid: {e}") from e


def _regions(section: dict, kind: str, size: int, where: str) -> list[dict]:
    regions = section.get(kind)
    if not isinstance(regions, list):
        raise ArtifactFormatError(f"{where}: {mf.MANIFEST} field 'program.{kind}' must be a list")
    return [_checked_region(r, f"program.{kind}[{k}]", size, where) for k, r in enumerate(regions)]


def _checked_region(region, label: str, size: int, where: str) -> dict:
    ok = (isinstance(region, dict) and isinstance(region.get("name"), str)
          and region.get("fmt") in ELEMENT_BYTES and isinstance(region.get("shape"), list)
          and all(type(d) is int and d >= 0 for d in region["shape"])
          and type(region.get("address")) is int and region["address"] >= 0)
    if not ok:
        raise ArtifactFormatError(f"{where}: {label} must be {{name, fmt (f32|bf16), shape, address}}; "
                                  f"found {str(region):.100}")
    end = region["address"] + int(np.prod(region["shape"], dtype=np.int64)) * ELEMENT_BYTES[region["fmt"]]
    if end > size:
        raise ArtifactProgramError(f"{where}: {label} ({region['name']} {region['fmt']}{region['shape']} at "
                                   f"{region['address']}) ends at byte {end}, past the {size}-byte host image")
    return region


def _check_signature(signature: Signature, inputs: list, outputs: list, where: str) -> None:
    want_in = [list(s.aval.dims) for s in signature.in_specs]
    want_out = [list(a.dims) for a in signature.out_avals_flat]
    dtypes = {a.dtype.name for a in [s.aval for s in signature.in_specs]}
    if want_in != [r["shape"] for r in inputs] or want_out != [r["shape"] for r in outputs] \
            or dtypes - {"f32"}:
        raise ArtifactFormatError(f"{where}: the host image layout ({len(inputs)} inputs, {len(outputs)} "
                                  f"outputs) does not match the signature (f32 inputs {want_in}, "
                                  f"outputs {want_out}; input dtypes {sorted(dtypes)})")


def _constants(section: dict, contents: dict, size: int, where: str) -> list:
    entries = _regions(section, "constants", size, where)
    out = []
    for k, entry in enumerate(entries):
        data = contents.get(entry.get("file")) if isinstance(entry.get("file"), str) else None
        if data is None:
            raise ArtifactFormatError(f"{where}: program.constants[{k}] names no member file")
        try:
            array = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise ArtifactFormatError(f"{where}: {entry['file']} is not a .npy array: {e}") from e
        if array.dtype != STORAGE[entry["fmt"]] or list(array.shape) != entry["shape"]:
            raise ArtifactFormatError(f"{where}: {entry['file']} holds {array.dtype}{list(array.shape)}; its "
                                      f"region is {entry['fmt']}{entry['shape']} (stored as "
                                      f"{STORAGE[entry['fmt']]})")
        out.append((entry["address"], array))
    return out


def _instructions(section: dict, files: dict, contents: dict, where: str) -> list:
    binary, text = (contents.get(files.get(role)) for role in ("program", "assembly"))
    if binary is None or text is None:
        raise ArtifactFormatError(f"{where}: the manifest names no program and assembly members (files: {files})")
    try:
        instructions = isa.decode_program(binary)
    except isa.IsaError as e:
        raise ArtifactProgramError(f"{where}: {files['program']} does not decode as systolic "
                                   f"instructions: {e}") from e
    if len(instructions) != section.get("instructions"):
        raise ArtifactFormatError(f"{where}: {files['program']} holds {len(instructions)} instructions, "
                                  f"the manifest says {section.get('instructions')}")
    if asm.disassemble(instructions).encode() != text:
        raise ArtifactIntegrityError(f"{where}: {files['assembly']} is not the disassembly of "
                                     f"{files['program']} (the text shown would not be the code run)")
    return instructions


def _origins(files: dict, contents: dict, count: int, where: str) -> list | None:
    """The optional per-instruction HLO names (labels in traces only; nothing runs on them)."""
    data = contents.get(files.get("origins"))
    if data is None:
        return None
    try:
        origins = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactFormatError(f"{where}: {files['origins']} is not JSON: {e}") from e
    if not isinstance(origins, list) or len(origins) != count or not all(isinstance(o, str) for o in origins):
        raise ArtifactFormatError(f"{where}: {files['origins']} must list one string per instruction ({count})")
    return origins


# ----------------------------------------------------------------------------- timing overrides

def timing_config(config: SystolicConfig, overrides: Iterable[str] | Mapping | None, where: str) -> SystolicConfig:
    """`config` with timing-only fields changed (config.TIMING_FIELDS); any other field is
    refused: the program's tiles, addresses and numerics were planned for its value."""
    if not overrides:
        return config
    items = dict(overrides) if isinstance(overrides, Mapping) else \
        dict(str(o).partition("=")[::2] for o in overrides)
    names = [k.strip() for k in items]
    unknown = sorted(k for k in names if k not in FIELD_NAMES)
    if unknown:
        raise ArtifactConfigError(f"{where}: SystolicConfig has no field {', '.join(map(repr, unknown))}; "
                                  f"the timing fields that may change are {', '.join(TIMING_FIELDS)}")
    fixed = sorted(k for k in names if k not in TIMING_FIELDS)
    if fixed:
        raise ArtifactConfigError(
            f"{where}: cannot override {', '.join(fixed)}: the program was compiled for "
            f"{', '.join(f'{k}={getattr(config, k)!r}' for k in fixed)} (its tiles, "
            f"host image and numerics depend on it); only timing fields may change here "
            f"({', '.join(TIMING_FIELDS)}). Compile again for another machine.")
    try:
        return SystolicConfig.from_overrides({k.strip(): v for k, v in items.items()}, base=config)
    except ConfigError as e:
        raise ArtifactConfigError(f"{where}: {e}") from e


# ----------------------------------------------------------------------------- the callable

class SystolicArtifact(LoadedArtifact):
    """A loaded systolic artifact: runs on the functional simulator; `report()` is the
    timing model's account."""

    def __init__(self, path: str, manifest: dict, signature: Signature, contents: dict, program: LoadedProgram):
        super().__init__(path, manifest, signature, contents)
        self.program = program
        self.config = program.config
        self._reports: dict = {}

    def call_flat(self, arrays) -> list[np.ndarray]:
        """Run on canonical flat arrays (as `validate_arguments` returns them)."""
        p = self.program
        memory = p.image.with_arguments(arrays, p.config.bf16_rounding)
        functional.run(p.instructions, p.config, memory, check=False)      # validated on load
        return p.image.outputs_from(memory, p.output_shapes)

    def report(self, overrides: Iterable[str] | Mapping | None = None):
        """The timing model's result (cycles, utilization, bytes moved; they do not depend
        on the data). `overrides` may change timing-only fields, e.g. ["clock_hz=1.2GHz"]."""
        config = timing_config(self.config, overrides, self.path)
        if config not in self._reports:
            from ..runtime.systolic import timing
            self._reports[config] = timing.simulate_timing(self.program.instructions, config)
        return self._reports[config]

    @property
    def origins(self) -> list | None:
        """Per instruction, the HLO instruction it implements (for trace labels)."""
        return self.program.origins

    def program_text(self) -> str:
        """The program as assembly (the member checked on load to be the binary's)."""
        return (self.member("assembly") or b"").decode()

    def constants(self) -> dict[str, np.ndarray]:
        """The host image's constants by name, as stored (bf16 as uint16 bit patterns)."""
        names = [c["name"] for c in self.manifest["program"]["constants"]]
        return {name: array for name, (_, array) in zip(names, self.program.image.constants)}

    def __repr__(self) -> str:
        c = self.config
        return f"<tessel.aot.SystolicArtifact {self.name} ({c.rows}x{c.cols} {c.dtype}) from {self.path}>"
