"""Systolic programs in the persistent compile cache (runtime/compile_cache.py).

A compiled program is data (program.py), so an entry holds what an AOT artifact holds:
the 128-bit binary, the layout (`SystolicProgram.to_dict`) and the host image's
constants as .npy. The key covers everything the program depends on: the optimized
module's text (compile_cache.module_text), the whole SystolicConfig -- two machines
never share an entry, even when only the clock differs, since the timing report is part
of what a compiled program answers -- the tessel version and a fingerprint of the
compiler's sources. A hit skips code generation; the program is validated again before
it runs, as a freshly compiled one is.
"""
from __future__ import annotations

import dataclasses
import io

import numpy as np

from ... import __version__
from ...runtime import compile_cache
from ...runtime.systolic.config import SystolicConfig
from .program import SystolicProgram

SOURCES = ("backends/systolic", "compiler", "runtime/systolic")
BINARY = "program.bin"
_fingerprint: str | None = None


def key(module, config: SystolicConfig) -> str:
    global _fingerprint
    if _fingerprint is None:
        _fingerprint = compile_cache.source_fingerprint(*SOURCES)
    return compile_cache.make_key(module=compile_cache.module_text(module), backend="systolic",
                                  config=dataclasses.asdict(config), tessel=__version__, sources=_fingerprint)


def store(cache: compile_cache.DiskCache, entry_key: str, program: SystolicProgram) -> None:
    members = {BINARY: program.binary()}
    for k, array in enumerate(program.constant_arrays()):
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
        members[f"constants/c{k}.npy"] = buffer.getvalue()
    cache.put(entry_key, {"program": program.to_dict()}, members)


def load(cache: compile_cache.DiskCache, entry_key: str) -> SystolicProgram | None:
    """The cached program, or None (a malformed entry is discarded with a warning)."""
    return cache.load(entry_key, _decode)


def _decode(meta: dict, members: dict[str, bytes]) -> SystolicProgram:
    layout = meta["program"]
    constants = [np.load(io.BytesIO(members[f"constants/c{k}.npy"]), allow_pickle=False)
                 for k in range(len(layout["constants"]))]
    return SystolicProgram.from_parts(layout, members[BINARY], constants)
