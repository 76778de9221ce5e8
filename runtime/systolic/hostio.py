"""Where a program's inputs and outputs live in host memory, and moving arrays there.

An assembly program can declare its host-memory layout and the configuration it was
written for in `#!` directive lines (comments to the assembler, so the text still
assembles as is):

    #! config rows=8 cols=8 host_bytes=4096
    #! input  x f32[16,12] at 0
    #! input  w bf16[12,8] at 1024
    #! output y f32[16,8]  at 2048

Each region is a row-major, contiguous array of one host format (f32, bf16, i8, i32)
starting at a byte address. `write_inputs` encodes arrays into a host image the way
DMA_STORE would (bf16 rounds by the config; i8/i32 must already be integers in range);
`read_outputs` decodes regions back (bf16 as f32). `tessel sim` and systolic artifacts
use these; nothing here imports the compiler.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from .config import SystolicConfig
from .functional import HOST_DTYPES, bf16_to_f32, encode_host
from .isa import HOST_FORMATS

DIRECTIVE = "#!"
_REGION = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s+([a-z0-9]+)\[([0-9,\s]*)\]\s+at\s+(0x[0-9a-fA-F]+|[0-9]+)")


class LayoutError(ValueError):
    """A bad directive or an array that does not fit its declared region."""


@dataclass(frozen=True)
class Region:
    name: str
    fmt: str                 # a host format: f32, bf16, i8, i32
    shape: tuple[int, ...]
    address: int             # byte address of the first element

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * HOST_FORMATS[self.fmt]

    def __str__(self):
        return f"{self.name} {self.fmt}{list(self.shape)} at {self.address}"

    def to_json(self) -> dict:
        return {"name": self.name, "fmt": self.fmt, "shape": list(self.shape), "address": self.address}

    @classmethod
    def from_json(cls, d: dict) -> "Region":
        return cls(str(d["name"]), str(d["fmt"]), tuple(int(n) for n in d["shape"]), int(d["address"]))


@dataclass(frozen=True)
class Layout:
    inputs: tuple[Region, ...] = ()
    outputs: tuple[Region, ...] = ()
    config: tuple[str, ...] = ()      # `k=v` overrides, applied before the command line's


def parse_layout(text: str) -> Layout:
    """The `#!` directives of an assembly text; errors say line:col."""
    inputs, outputs, config = [], [], []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.lstrip()
        if not stripped.startswith(DIRECTIVE):
            continue
        col = len(line) - len(stripped) + 1
        kind, _, rest = stripped[len(DIRECTIVE):].strip().partition(" ")
        if kind == "config":
            config += rest.split()
        elif kind in ("input", "output"):
            region = _region(rest.strip(), number, col, line)
            (inputs if kind == "input" else outputs).append(region)
        else:
            raise LayoutError(f"{number}:{col}: unknown directive {kind!r}; expected "
                              f"`#! input NAME FMT[DIMS] at ADDR`, `#! output ...` or `#! config k=v ...`")
    _check_names(inputs + outputs)
    return Layout(tuple(inputs), tuple(outputs), tuple(config))


def _region(text: str, number: int, col: int, line: str) -> Region:
    match = _REGION.fullmatch(text)
    if match is None:
        raise LayoutError(f"{number}:{col}: expected NAME FMT[DIMS] at ADDR (e.g. x f32[16,12] at 0), "
                          f"got {text!r}\n    {line}")
    name, fmt, dims, address = match.groups()
    if fmt not in HOST_FORMATS:
        raise LayoutError(f"{number}:{col}: {name}: host format {fmt!r}, expected one of "
                          f"{', '.join(HOST_FORMATS)}")
    shape = tuple(int(d) for d in dims.replace(" ", "").split(",") if d)
    address = int(address, 0)
    if address % HOST_FORMATS[fmt]:
        raise LayoutError(f"{number}:{col}: {name}: address {address} is not a multiple of "
                          f"{HOST_FORMATS[fmt]} (the size of {fmt})")
    return Region(name, fmt, shape, address)


def _check_names(regions: list[Region]) -> None:
    seen = set()
    for r in regions:
        if r.name in seen:
            raise LayoutError(f"region name {r.name!r} declared twice")
        seen.add(r.name)


def check_fits(regions, host_bytes: int) -> None:
    for r in regions:
        if r.address + r.nbytes > host_bytes:
            raise LayoutError(f"{r}: bytes [{r.address}, {r.address + r.nbytes}) lie outside the "
                              f"{host_bytes}-byte host memory (config host_bytes)")


def _view(memory: np.ndarray, region: Region) -> np.ndarray:
    dtype = np.dtype(HOST_DTYPES[region.fmt])
    return memory[region.address:region.address + region.nbytes].view(dtype).reshape(region.shape)


def write_inputs(memory: np.ndarray, regions, arrays, config: SystolicConfig) -> None:
    """Encode each array into its region of the host image (shapes must match)."""
    if len(arrays) != len(regions):
        raise LayoutError(f"the program takes {len(regions)} inputs "
                          f"({', '.join(map(str, regions)) or 'none'}); given {len(arrays)}")
    check_fits(regions, memory.size)
    for region, array in zip(regions, arrays):
        array = np.asarray(array)
        if array.shape != region.shape:
            raise LayoutError(f"input {region.name}: expected shape {list(region.shape)}, "
                              f"given {list(array.shape)}")
        _view(memory, region)[...] = _encode(region, array, config)


def _encode(region: Region, array: np.ndarray, config: SystolicConfig) -> np.ndarray:
    if region.fmt in ("f32", "bf16"):
        if array.dtype.kind not in "fiub":
            raise LayoutError(f"input {region.name}: expected numbers, given dtype {array.dtype}")
        return encode_host(array.astype(np.float32), region.fmt, config.bf16_rounding)
    if array.dtype.kind not in "iub":
        raise LayoutError(f"input {region.name}: {region.fmt} region needs an integer array, "
                          f"given dtype {array.dtype}")
    info = np.iinfo(HOST_DTYPES[region.fmt])
    if array.size and (array.min() < info.min or array.max() > info.max):
        raise LayoutError(f"input {region.name}: values outside the {region.fmt} range "
                          f"[{info.min}, {info.max}]")
    return array.astype(HOST_DTYPES[region.fmt])


def read_outputs(memory: np.ndarray, regions) -> dict[str, np.ndarray]:
    """Each region's array (a copy): f32 and bf16 as float32, i8/i32 as integers."""
    check_fits(regions, memory.size)
    out = {}
    for region in regions:
        raw = _view(memory, region)
        out[region.name] = bf16_to_f32(raw) if region.fmt == "bf16" else raw.copy()
    return out
