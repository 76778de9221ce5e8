"""Loading artifacts: `load(path)` -> a callable `Artifact`, without the compiler.

Everything is checked before any of the artifact's code is mapped or run, in order:
the container (zip, safe names, size caps), the manifest (format and version), every
member's size and sha256, the backend, then the target (architecture and OS of the
triple, the ELF machine of the object, the CPU features the code may use against the
host's). Then the object is linked into the process by LLVM (llvm_target.LoadedObject)
and calls go through `NAME_run_with_scratch` (cabi.py) with per-thread scratch.
A systolic artifact is checked and run by aot/systolic.py after the same container,
manifest and hash checks.

This module imports neither the frontend nor the compiler's passes (tested): only the
IR's dtypes/shapes, the runtime's signature checks and the CPU backend's target and
runtime-support modules.
"""
from __future__ import annotations

import ctypes
import io
import os
import threading

import numpy as np

from ..backends.cpu import llvm_target, runtime_support
from ..compiler import dtypes
from ..runtime import memory
from ..runtime.executable import Signature
from . import archive, elf, systolic
from .base import LoadedArtifact
from . import manifest as mf
from .errors import ArtifactBackendError, ArtifactFormatError, ArtifactTargetError
from .systolic import SystolicArtifact

SCRATCH_ALIGN = 64
_RUN_TYPE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
_SIZE_TYPE = ctypes.CFUNCTYPE(ctypes.c_int64)
_OS_NAMES = ("linux", "darwin", "windows", "freebsd")


def load(path, *, max_total_bytes: int = archive.MAX_TOTAL_BYTES) -> "Artifact | SystolicArtifact":
    """Validate the artifact at `path` and return it as a callable (see module docstring).
    Raises an ArtifactError subclass naming what mismatched; runs nothing before that."""
    where = os.fspath(path)
    with archive.Reader(where, max_total_bytes) as reader:
        if mf.MANIFEST not in reader.names():
            raise ArtifactFormatError(f"{where}: the zip has no {mf.MANIFEST}; not a tessel artifact")
        manifest = mf.loads(reader.read(mf.MANIFEST, limit=archive.MAX_MANIFEST_BYTES), where)
        contents = reader.verify(mf.field(manifest, "members", dict, where), exempt=mf.MANIFEST)
    backend = mf.field(manifest, "backend", str, where)
    if backend not in mf.BACKENDS:
        raise ArtifactBackendError(f"{where}: unknown backend {backend!r}; this runtime runs "
                                   f"{' and '.join(map(repr, mf.BACKENDS))} artifacts")
    signature = mf.signature_from_json(manifest, where)
    if backend == "systolic":
        return SystolicArtifact(where, manifest, signature, contents,
                                systolic.load_program(manifest, contents, signature, where))
    files = mf.field(manifest, "files", dict, where)
    obj = _member(contents, files, "object", where)
    check_target(manifest, obj, where)
    return Artifact(where, manifest, signature, contents, obj)


def _member(contents: dict, files: dict, role: str, where: str) -> bytes:
    name = files.get(role)
    if not isinstance(name, str) or name not in contents:
        raise ArtifactFormatError(f"{where}: the manifest names no {role} member (files: {files})")
    return contents[name]


# ----------------------------------------------------------------------------- the target

def check_target(manifest: dict, obj: bytes, where: str) -> None:
    """ArtifactTargetError unless this host can run the artifact's code."""
    host = llvm_target.host()
    triple = mf.field(manifest, "target.triple", str, where)
    cpu = mf.field(manifest, "target.cpu", str, where)
    if llvm_target.arch(triple) != llvm_target.arch(host.triple) or _os(triple) != _os(host.triple):
        raise ArtifactTargetError(f"{where}: built for {triple} (CPU {cpu}); this host is "
                                  f"{host.triple}: export it again with target={host.triple!r}")
    if _os(host.triple) == "linux":
        expected = elf.ELF_MACHINES.get(llvm_target.arch(host.triple))
        found = elf.machine(obj)
        if found is not None and found != expected:
            raise ArtifactTargetError(f"{where}: the object code is for {elf.machine_name(found)}, "
                                      f"this host runs {llvm_target.arch(host.triple)} "
                                      f"(ELF machine {expected}); the manifest says {triple}")
        problem = elf.relocatable_problem(obj)
        if problem:
            raise ArtifactFormatError(f"{where}: the object member is malformed: {problem}")
    required = mf.field(manifest, "target.required_features", list, where)
    have = set(llvm_target.required_features(host))
    missing = sorted(str(f) for f in required if f not in have)
    if missing:
        raise ArtifactTargetError(f"{where}: built for CPU {cpu}, whose code may use {', '.join(missing)}, "
                                  f"which this host's CPU ({host.cpu}) lacks; export it for a "
                                  f"baseline CPU (e.g. cpu='x86-64' or 'x86-64-v3')")


def _os(triple: str) -> str | None:
    return next((name for name in _OS_NAMES if name in triple), None)


# ----------------------------------------------------------------------------- the callable

class Artifact(LoadedArtifact):
    """A loaded CPU artifact: its object code linked into this process."""

    def __init__(self, path: str, manifest: dict, signature: Signature, contents: dict, obj: bytes):
        super().__init__(path, manifest, signature, contents)
        entry = mf.field(manifest, "entry", dict, path)
        self.scratch_bytes = mf.field(manifest, "entry.scratch_bytes", int, path)
        runtime_support.parallel_for_address()        # the pool, and its symbol for the linker
        self._object = llvm_target.LoadedObject(obj)
        try:
            self._run = _RUN_TYPE(self._object.address(str(entry.get("run_with_scratch"))))
            size = _SIZE_TYPE(self._object.address(str(entry.get("scratch_size"))))()
        except KeyError as e:
            raise ArtifactFormatError(f"{path}: the object lacks the manifest's entry symbols: {e}") from e
        if size != self.scratch_bytes:
            raise ArtifactFormatError(f"{path}: the object needs {size} scratch bytes, the manifest "
                                      f"says {self.scratch_bytes}")
        self._bf16_in = [k for k, s in enumerate(signature.in_specs) if s.aval.dtype is dtypes.bf16]
        self._outputs = [(a.dims, np.uint16 if a.dtype is dtypes.bf16 else a.dtype.storage)
                         for a in signature.out_avals_flat]
        self._bf16_out = [k for k, a in enumerate(signature.out_avals_flat) if a.dtype is dtypes.bf16]
        self._threads = threading.local()
        self._call_bytes = self.scratch_bytes + sum(a.nbytes for a in signature.out_avals_flat)

    def call_flat(self, arrays) -> list[np.ndarray]:
        """Run on canonical flat arrays (as `validate_arguments` returns them)."""
        args = [np.require(a, requirements="CA") for a in arrays]       # C order, aligned
        for k in self._bf16_in:
            args[k] = dtypes.narrow_bf16(args[k])
        memory.check_fits(self._call_bytes, self.name)
        results = [np.empty(dims, dtype) for dims, dtype in self._outputs]
        argv = (ctypes.c_void_p * max(1, len(args)))(*[a.ctypes.data for a in args])
        resv = (ctypes.c_void_p * max(1, len(results)))(*[r.ctypes.data for r in results])
        status = self._run(argv, resv, self._scratch())
        if status != 0:
            raise RuntimeError(f"{self.name}: the native program returned status {status}")
        for k in self._bf16_out:
            results[k] = dtypes.widen_bf16(results[k])
        return results

    def _scratch(self) -> int:
        address = getattr(self._threads, "scratch", None)
        if address is None:
            arena = np.empty(self.scratch_bytes + SCRATCH_ALIGN, np.uint8)
            address = -(-arena.ctypes.data // SCRATCH_ALIGN) * SCRATCH_ALIGN
            self._threads.arena, self._threads.scratch = arena, address
        return address

    # ------------------------------------------------------------ inspection

    @property
    def header(self) -> str:
        return (self.member("header") or b"").decode()

    def constants(self) -> dict[str, np.ndarray]:
        """The program's constants by instruction name (read with allow_pickle=False).
        Version 1 artifacts kept copies as .npy; from version 2 the values live only in
        the object code and the manifest lists their dtype, shape and sha256."""
        entries = self.manifest.get("constants", [])
        if any("file" not in e for e in entries if isinstance(e, dict)):
            raise ValueError(f"{self.path}: the constants are compiled into the object code (format "
                             f"version 2); the manifest lists their name, dtype, shape and sha256")
        out = {}
        for entry in entries:
            try:
                out[entry["name"]] = np.load(io.BytesIO(self._contents[entry["file"]]), allow_pickle=False)
            except (KeyError, TypeError, ValueError) as e:
                raise ArtifactFormatError(f"{self.path}: constant entry {str(entry):.80} is malformed: {e}") from e
        return out

    def __repr__(self) -> str:
        t = self.manifest["target"]
        return f"<tessel.aot.Artifact {self.name} ({t['triple']}, {t['cpu']}) from {self.path}>"
