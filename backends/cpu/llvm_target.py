"""LLVM setup through llvmlite: the host target, optimization, JIT and object emission.

The JIT target is the host's own CPU (name and features from LLVM), optimized at O3
with loop and SLP vectorization. AOT uses a separate target machine for a named
triple/CPU, so the JIT's tuning never leaks into objects built for another machine.
"""
from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass
from functools import lru_cache

import llvmlite.binding as llvm

_init_lock = threading.Lock()
_initialized = False


def initialize() -> None:
    """Initialize LLVM's targets once per process."""
    global _initialized
    with _init_lock:
        if _initialized:
            return
        llvm.initialize_all_targets()
        llvm.initialize_all_asmprinters()
        _initialized = True


@dataclass(frozen=True)
class TargetInfo:
    triple: str
    cpu: str
    features: str          # "+avx2,+fma,-avx512f,..." as LLVM spells them

    def has(self, feature: str) -> bool:
        return f"+{feature}" in self.features.split(",")

    @property
    def vector_bits(self) -> int:
        """Width of the widest vector registers the code may use."""
        if self.triple.startswith("x86_64"):
            if self.has("avx512f"):
                return 512
            if self.has("avx2") or self.has("avx"):
                return 256
            return 128
        return 128         # aarch64 NEON, and a safe default elsewhere

    def vector_lanes(self, itemsize: int) -> int:
        return max(1, self.vector_bits // (8 * itemsize))

    @property
    def vector_registers(self) -> int:
        return 32 if self.has("avx512f") or self.triple.startswith("aarch64") else 16


@lru_cache(maxsize=1)
def host() -> TargetInfo:
    initialize()
    return TargetInfo(llvm.get_process_triple(), llvm.get_host_cpu_name(),
                      llvm.get_host_cpu_features().flatten())


def target_machine(info: TargetInfo | None = None, opt: int = 3, jit: bool = False):
    initialize()
    info = info or host()
    target = llvm.Target.from_triple(info.triple)
    return target.create_target_machine(cpu=info.cpu, features=info.features, opt=opt,
                                        reloc="pic" if not jit else "default",
                                        codemodel="jitdefault" if jit else "small")


def optimize(module, tm, speed: int = 3) -> None:
    """Run LLVM's O`speed` pipeline with loop and SLP vectorization on `module`."""
    pto = llvm.create_pipeline_tuning_options(speed_level=speed)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pto.loop_unrolling = True
    pto.loop_interleaving = True
    pb = llvm.create_pass_builder(tm, pto)
    mpm = pb.getModulePassManager()
    mpm.run(module, pb)


def parse(ir_text: str):
    """Parse and verify textual LLVM IR (errors name the problem, not a crash)."""
    initialize()
    module = llvm.parse_assembly(ir_text)
    module.verify()
    return module


class JitModule:
    """Compiled native code for one LLVM module, kept alive as long as this object."""

    def __init__(self, ir_text: str, optimize_ir: bool = True):
        info = host()
        self.module = parse(ir_text)
        self.module.triple = info.triple
        self._tm = target_machine(info, jit=True)
        self.module.data_layout = str(self._tm.target_data)
        if optimize_ir:
            optimize(self.module, self._tm)
        self.engine = llvm.create_mcjit_compiler(self.module, self._tm)
        self.engine.finalize_object()
        self.engine.run_static_constructors()

    def address(self, name: str) -> int:
        addr = self.engine.get_function_address(name)
        if not addr:
            raise KeyError(f"no native function {name!r} in this module")
        return addr

    def function(self, name: str, restype, *argtypes):
        """A ctypes callable for `name` (ctypes releases the GIL while it runs)."""
        return ctypes.CFUNCTYPE(restype, *argtypes)(self.address(name))

    def assembly(self) -> str:
        return self._tm.emit_assembly(self.module)


def emit_object(ir_text: str, info: TargetInfo) -> bytes:
    """An object file of `ir_text` for the target `info` (any triple LLVM knows)."""
    module = parse(ir_text)
    module.triple = info.triple
    tm = target_machine(info)
    module.data_layout = str(tm.target_data)
    optimize(module, tm)
    return tm.emit_object(module)
