"""Writing artifacts: `save(compiled, path)` and `export(f, *shape_dtypes, path=...)`.

A CPU artifact is built from the optimized module: code generation for the artifact's
target (its own vector width and registers, never the JIT host's), the C wrapper
(cabi.py) linked in, one object file for the program and one for the runtime support
(the thread pool), a shared library of both when a C compiler is present and the target
is this machine's kind, the header, the constants as .npy, and the optimized HLO text.
"""
from __future__ import annotations

import io
import os

import numpy as np

from .. import __version__
from ..backends.cpu import codegen, llvm_target, runtime_support
from ..backends.cpu.llvm_target import TargetInfo
from ..compiler.ir import Module
from ..runtime.executable import Signature
from . import archive, cabi, elf
from . import manifest as mf
from .errors import ArtifactBackendError

RUNTIME_OBJECT = "code/tessel_runtime.o"
HLO = "hlo/optimized.txt"
SHARED_SUFFIX = {"linux": ".so", "darwin": ".dylib"}


def save(compiled, path, *, target: str | None = None, cpu: str | None = None,
         features: str | None = None) -> str:
    """Write `compiled` (from `jit(f).lower(...).compile()`) as a .tsl artifact at
    `path` (for this host unless `target`/`cpu` name another machine); returns path."""
    exe = compiled.executable
    return write(path, exe.module, exe.signature, exe.name, compiled.backend,
                 resolve_target(target, cpu, features), compiled.statics)


def export(f, *shape_dtypes, path, backend: str = "cpu", target: str | None = None,
           cpu: str | None = None, features: str | None = None, static_argnums=(),
           static_argnames=()) -> str:
    """Trace `f` (a function or a `tessel.jit` object) for `shape_dtypes` (arrays or
    `tessel.ShapeDtype`s, static values in their places), optimize it for `backend`
    and write the artifact at `path` for `target` (triple) / `cpu` (LLVM CPU name)."""
    check_backend(backend)
    target_info = resolve_target(target, cpu, features)
    from ..compiler import pipeline
    from ..frontend.api import Jitted, jit
    jitted = f if isinstance(f, Jitted) else jit(f, backend=backend, static_argnums=static_argnums,
                                                 static_argnames=static_argnames)
    lowered = jitted.lower(*shape_dtypes)
    optimized, _ = pipeline.optimize(lowered.module, backend)
    return write(path, optimized, lowered.signature, lowered.name, backend, target_info,
                 dict(lowered._binding.statics))


def check_backend(backend: str) -> None:
    if backend == "systolic":
        raise ArtifactBackendError("systolic artifacts (program + machine config) are not supported "
                                   "yet: the systolic backend has not landed; use backend='cpu'")
    if backend != "cpu":
        raise ArtifactBackendError(f"artifacts hold native code of the 'cpu' backend; given backend "
                                   f"{backend!r}")


def resolve_target(triple: str | None, cpu: str | None, features: str | None) -> TargetInfo:
    """This host when nothing is named (or cpu="host"), else a named target."""
    host = llvm_target.host()
    if cpu == "host" or (triple in (None, host.triple) and cpu is None and features is None):
        return host
    return llvm_target.named_target(triple or host.triple, cpu, features)


# ----------------------------------------------------------------------------- the artifact

def write(path, module: Module, signature: Signature, name: str, backend: str,
          target: TargetInfo, statics: dict | None = None) -> str:
    check_backend(backend)
    program = codegen.compile_program(module, target=target, self_contained=True)
    if len(program.arguments) != len(signature.in_specs):
        raise ValueError(f"{name}: the program takes {len(program.arguments)} buffers but the "
                         f"signature has {len(signature.in_specs)} inputs")
    prefix = cabi.c_identifier(name)
    files = {"object": f"code/{prefix}.o", "runtime_object": RUNTIME_OBJECT,
             "header": f"include/{prefix}.h", "hlo": HLO}
    members = {
        files["object"]: llvm_target.emit_object(program.ir, target,
                                                 link=(cabi.wrapper_ir(prefix, program, codegen.ENTRY),),
                                                 internal=(codegen.ENTRY,)),
        files["runtime_object"]: llvm_target.emit_object(runtime_support.support_module_ir(target), target),
        files["header"]: cabi.header(prefix, name, program, signature, target, __version__,
                                     os.path.basename(files["object"]), "tessel_runtime.o").encode(),
        files["hlo"]: str(module).encode(),
    }
    shared = _shared_library(prefix, target, members[files["object"]], members[RUNTIME_OBJECT])
    if shared:
        files["shared_library"], members[shared[0]] = shared
    constants = _constants(module)
    members.update((c["file"], data) for c, data in constants)
    manifest = {
        "format": mf.FORMAT, "format_version": mf.FORMAT_VERSION, "tessel_version": __version__,
        "name": name, "symbol_prefix": prefix, "backend": backend,
        "target": {"triple": target.triple, "cpu": target.cpu, "features": target.features,
                   "required_features": llvm_target.required_features(target)},
        "entry": {"run": f"{prefix}_run", "run_with_scratch": f"{prefix}_run_with_scratch",
                  "scratch_size": f"{prefix}_scratch_size", "scratch_bytes": program.scratch_bytes},
        "signature": mf.signature_to_json(signature),
        "statics": [[k, repr(v)] for k, v in (statics or {}).items()],
        "files": files,
        "constants": [c for c, _ in constants],
        "members": {n: {"sha256": archive.sha256(d), "size": len(d)} for n, d in members.items()},
    }
    archive.write(path, {mf.MANIFEST: mf.dumps(manifest), **members})
    return os.fspath(path)


def _shared_library(prefix: str, target: TargetInfo, obj: bytes, runtime: bytes):
    """(member, bytes) of a shared library, if this machine can link one for `target`."""
    host = llvm_target.host()
    system = next((s for s in SHARED_SUFFIX if s in target.triple), None)
    cc = cabi.c_compiler()
    if (cc is None or system is None or llvm_target.arch(target.triple) != llvm_target.arch(host.triple)
            or system not in host.triple or elf.machine(obj) is None and system == "linux"):
        return None
    name = f"lib{prefix}{SHARED_SUFFIX[system]}"
    return f"lib/{name}", cabi.link_shared({f"{prefix}.o": obj, "tessel_runtime.o": runtime}, name, cc)


def _constants(module: Module) -> list[tuple[dict, bytes]]:
    """Every constant of the program as (manifest entry, .npy bytes); never pickled."""
    out, used = [], set()
    for comp in module.reachable_computations():
        for instr in comp.instructions:
            if instr.opcode != "constant":
                continue
            stem = cabi.c_identifier(instr.name)
            while stem in used:
                stem += "_"
            used.add(stem)
            buffer = io.BytesIO()
            np.save(buffer, np.ascontiguousarray(instr.attrs["value"].array), allow_pickle=False)
            out.append(({"name": instr.name, "file": f"constants/{stem}.npy", "dtype": instr.shape.dtype.name,
                         "shape": list(instr.shape.dims)}, buffer.getvalue()))
    return out
