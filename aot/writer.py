"""Writing artifacts: `save(compiled, path)` and `export(f, *shape_dtypes, path=...)`.

A CPU artifact is built from the optimized module: code generation for the artifact's
target (its own vector width and registers, never the JIT host's), the C wrapper
(cabi.py) linked in, one object file for the program and one for the runtime support
(the thread pool), a shared library of both when a C compiler is present and the target
is this machine's kind, the header and the optimized HLO text. The program's constants
are compiled into the object (where the code reads them, and what C programs link);
the manifest lists each one's name, dtype, shape and sha256 rather than a second copy.

A systolic artifact (aot/systolic.py) holds the compiled program for the simulated
machine: its binary and assembly, the SystolicConfig, the host image layout and its
constants as .npy, and the optimized HLO.
"""
from __future__ import annotations

import os

import numpy as np

from .. import __version__
from ..backends.cpu import codegen, llvm_target, runtime_support
from ..backends.cpu.llvm_target import TargetInfo
from ..compiler.ir import Module
from ..runtime.executable import Signature
from . import archive, cabi, elf
from . import manifest as mf
from . import systolic
from .errors import ArtifactBackendError

RUNTIME_OBJECT = "code/tessel_runtime.o"
HLO = "hlo/optimized.txt"
SHARED_SUFFIX = {"linux": ".so", "darwin": ".dylib"}


def save(compiled, path, *, target: str | None = None, cpu: str | None = None,
         features: str | None = None) -> str:
    """Write `compiled` (from `jit(f).lower(...).compile()`) as a .tsl artifact at
    `path` (for this host unless `target`/`cpu` name another machine); returns path.
    A systolic program is saved for the machine configuration it was compiled for."""
    exe = compiled.executable
    if getattr(exe, "placed", False):
        raise ArtifactBackendError(f"{exe.name}: each part of this program is placed on a device "
                                   f"({', '.join(exe.devices)}): it cannot be saved as an artifact, which "
                                   f"holds one backend's program; compile the function for one backend "
                                   f"(no tessel.device scopes)")
    if compiled.backend == "systolic":
        _no_target("systolic", target, cpu, features)
        runner = exe.backend_runner
        return write_systolic(path, runner.module, runner.program, exe.signature, exe.name, compiled.statics)
    return write(path, exe.module, exe.signature, exe.name, compiled.backend,
                 resolve_target(target, cpu, features), compiled.statics)


def export(f, *shape_dtypes, path, backend: str = "cpu", target: str | None = None,
           cpu: str | None = None, features: str | None = None, config=None, static_argnums=(),
           static_argnames=()) -> str:
    """Trace `f` (a function or a `tessel.jit` object) for `shape_dtypes` (arrays or
    `tessel.ShapeDtype`s, static values in their places), optimize it for `backend`
    and write the artifact at `path`: for backend "cpu", for `target` (triple) / `cpu`
    (LLVM CPU name); for backend "systolic", for the machine `config` (a SystolicConfig
    or "k=v" overrides of the current one, runtime/systolic/config.py)."""
    check_backend(backend)
    from ..compiler import pipeline
    from ..frontend.api import Jitted, jit
    jitted = f if isinstance(f, Jitted) else jit(f, backend=backend, static_argnums=static_argnums,
                                                 static_argnames=static_argnames)
    if backend == "systolic":
        _no_target("systolic", target, cpu, features)
        from ..backends.systolic.executable import SystolicExecutable, using_config
        with using_config(systolic_config(config)) as machine:      # the pipeline's choices read it too
            lowered = jitted.lower(*shape_dtypes)
            optimized, _ = pipeline.optimize(lowered.module, backend)
            runner = SystolicExecutable(optimized, machine)
        return write_systolic(path, optimized, runner.program, lowered.signature, lowered.name,
                              dict(lowered._binding.statics))
    if config is not None:
        raise ArtifactBackendError("config= describes the systolic machine; CPU artifacts take target=/cpu=")
    target_info = resolve_target(target, cpu, features)
    lowered = jitted.lower(*shape_dtypes)
    optimized, _ = pipeline.optimize(lowered.module, backend)
    return write(path, optimized, lowered.signature, lowered.name, backend, target_info,
                 dict(lowered._binding.statics))


def systolic_config(config):
    """A SystolicConfig from None (the current one), a SystolicConfig, or k=v overrides."""
    from ..backends.systolic.executable import default_config
    from ..runtime.systolic.config import SystolicConfig
    if isinstance(config, SystolicConfig):
        return config
    return SystolicConfig.from_overrides(list(config or ()), base=default_config())


def check_backend(backend: str) -> None:
    if backend not in mf.BACKENDS:
        raise ArtifactBackendError(f"artifacts hold programs of the {' or '.join(map(repr, mf.BACKENDS))} "
                                   f"backends; given backend {backend!r}")


def _no_target(backend: str, target, cpu, features) -> None:
    if target is not None or cpu is not None or features is not None:
        raise ArtifactBackendError(f"{backend} artifacts run on the simulated machine, not a CPU: "
                                   f"target=, cpu= and features= do not apply (given target={target!r}, "
                                   f"cpu={cpu!r}, features={features!r})")


def resolve_target(triple: str | None, cpu: str | None, features: str | None) -> TargetInfo:
    """This host when nothing is named (or cpu="host"), else a named target."""
    host = llvm_target.host()
    if cpu == "host" or (triple in (None, host.triple) and cpu is None and features is None):
        return host
    return llvm_target.named_target(triple or host.triple, cpu, features)


# ----------------------------------------------------------------------------- the artifact

def write(path, module: Module, signature: Signature, name: str, backend: str,
          target: TargetInfo, statics: dict | None = None) -> str:
    if backend != "cpu":
        raise ArtifactBackendError(f"{name}: native code is written for backend 'cpu', given {backend!r}")
    systolic.refuse_placed(module, name)
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
    entry = {"run": f"{prefix}_run", "run_with_scratch": f"{prefix}_run_with_scratch",
             "scratch_size": f"{prefix}_scratch_size", "scratch_bytes": program.scratch_bytes}
    target_json = {"triple": target.triple, "cpu": target.cpu, "features": target.features,
                   "required_features": llvm_target.required_features(target)}
    return _write(path, name, prefix, backend, signature, statics, files, members,
                  target=target_json, entry=entry, constants=_constant_table(module))


def write_systolic(path, module: Module, program, signature: Signature, name: str,
                   statics: dict | None = None) -> str:
    """A systolic artifact of `program` (a SystolicProgram compiled from `module`)."""
    systolic.refuse_placed(module, name)
    prefix = cabi.c_identifier(name)
    section, files, members = systolic.members(program, module, signature, prefix)
    return _write(path, name, prefix, "systolic", signature, statics, files, members, program=section)


def _write(path, name: str, prefix: str, backend: str, signature: Signature, statics: dict | None,
           files: dict, members: dict[str, bytes], **fields) -> str:
    """The manifest (the fields every artifact has, plus the backend's `fields`) and the zip."""
    manifest = {
        "format": mf.FORMAT, "format_version": mf.FORMAT_VERSION, "tessel_version": __version__,
        "name": name, "symbol_prefix": prefix, "backend": backend,
        "signature": mf.signature_to_json(signature),
        "statics": [[k, repr(v)] for k, v in (statics or {}).items()],
        "files": files, **fields,
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


def _constant_table(module: Module) -> list[dict]:
    """Name, dtype, shape and sha256 (of the row-major bytes) of every constant: the values
    themselves are in the object code, once."""
    return [{"name": instr.name, "dtype": instr.shape.dtype.name, "shape": list(instr.shape.dims),
             "sha256": archive.sha256(np.ascontiguousarray(instr.attrs["value"].array).tobytes())}
            for comp in module.reachable_computations() for instr in comp.instructions
            if instr.opcode == "constant"]
