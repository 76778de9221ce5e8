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


# ISA features of named CPUs, for targets other than the host (LLVM gives features only
# for the host). With these spelled out, TargetInfo knows the target's vector width and
# an artifact lists what it needs. x86-64 levels: the x86-64 psABI's microarchitecture
# levels (v2 adds SSE4.2/POPCNT..., v3 AVX2/FMA/BMI..., v4 AVX-512 F/BW/CD/DQ/VL).
_X86_64_V1 = ("64bit", "cmov", "cx8", "fxsr", "mmx", "sse", "sse2")
_X86_64_V2 = _X86_64_V1 + ("cx16", "sahf", "popcnt", "sse3", "sse4.1", "sse4.2", "ssse3")
_X86_64_V3 = _X86_64_V2 + ("avx", "avx2", "bmi", "bmi2", "f16c", "fma", "lzcnt", "movbe", "xsave")
_X86_64_V4 = _X86_64_V3 + ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl")
CPU_FEATURES: dict[tuple[str, str], tuple[str, ...]] = {
    ("x86_64", "x86-64"): _X86_64_V1,
    ("x86_64", "x86-64-v2"): _X86_64_V2,
    ("x86_64", "x86-64-v3"): _X86_64_V3,
    ("x86_64", "x86-64-v4"): _X86_64_V4,
    ("aarch64", "generic"): ("neon", "fp-armv8"),
}
DEFAULT_CPU = {"x86_64": "x86-64", "aarch64": "generic"}

# Feature names that only tune code generation (scheduling, preferred widths, fusion):
# code built with them runs on CPUs without them, so they are never requirements.
TUNING_PREFIXES = ("tuning-", "fast-", "slow-", "prefer-", "false-deps-", "idivl-to-divb",
                   "idivq-to-divl", "macrofusion", "branchfusion", "lea-", "pad-short-functions",
                   "use-", "balance-fp-ops", "fuse-", "harden-", "retpoline", "lvi-", "sse-unaligned-mem",
                   "allow-light-256-bit", "no-bypass-delay", "tuning")


def arch(triple: str) -> str:
    """The architecture of a triple, spelled as LLVM's x86_64 / aarch64."""
    name = triple.split("-")[0]
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(name, name)


def named_target(triple: str, cpu: str | None = None, features: str | None = None) -> TargetInfo:
    """A target for `triple` and LLVM CPU name `cpu` (default: the baseline of the
    architecture). `features` ("+avx2,-avx512f") is needed for CPUs not in CPU_FEATURES."""
    if features is None and arch(triple) not in DEFAULT_CPU:      # no CPU tables for it
        raise ValueError(f"unknown target triple {triple!r}: tessel generates code for "
                         f"{' and '.join(DEFAULT_CPU)} (e.g. 'x86_64-unknown-linux-gnu', "
                         f"'aarch64-unknown-linux-gnu')")
    cpu = cpu or DEFAULT_CPU.get(arch(triple), "generic")
    if features is None:
        known = CPU_FEATURES.get((arch(triple), cpu))
        if known is None:
            raise ValueError(f"unknown CPU {cpu!r} for {triple!r}: pass its features explicitly "
                             f"(\"+avx2,+fma\") or use one of "
                             f"{sorted(c for a, c in CPU_FEATURES if a == arch(triple))}")
        features = ",".join(f"+{f}" for f in known)
    initialize()
    try:
        llvm.Target.from_triple(triple)
    except RuntimeError as e:
        raise ValueError(f"LLVM has no target for triple {triple!r}: {e}") from e
    return TargetInfo(triple, cpu, features)


def required_features(info: TargetInfo) -> list[str]:
    """The ISA features code built for `info` may use: its enabled features, without
    the tuning-only ones."""
    enabled = [f[1:] for f in info.features.split(",") if f.startswith("+")]
    return sorted(f for f in enabled if not f.startswith(TUNING_PREFIXES))


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

    def __init__(self, ir_text: str, optimize_ir: bool = True, keep_object: bool = False):
        """`keep_object`: keep the object file MCJIT compiles in `self.object` (through
        LLVM's object-cache hook), for the persistent compile cache."""
        info = host()
        self.module = parse(ir_text)
        self.module.triple = info.triple
        self._tm = target_machine(info, jit=True)
        self.module.data_layout = str(self._tm.target_data)
        if optimize_ir:
            optimize(self.module, self._tm)
        self.engine = llvm.create_mcjit_compiler(self.module, self._tm)
        self.object: bytes | None = None
        if keep_object:
            self.engine.set_object_cache(notify_func=self._keep)
        self.engine.finalize_object()
        self.engine.run_static_constructors()

    def _keep(self, module, data: bytes) -> None:
        self.object = bytes(data)

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


def emit_object(ir_text: str, info: TargetInfo, link: tuple[str, ...] = (),
                internal: tuple[str, ...] = ()) -> bytes:
    """An object file of `ir_text` for the target `info` (any triple LLVM knows), with
    the modules `link` linked in and the functions `internal` made local to it."""
    module, tm = _aot_module(ir_text, info, link, internal)
    return tm.emit_object(module)


def emit_assembly(ir_text: str, info: TargetInfo, link: tuple[str, ...] = (),
                  internal: tuple[str, ...] = ()) -> str:
    """The assembly `emit_object` would assemble (to inspect which instructions it uses)."""
    module, tm = _aot_module(ir_text, info, link, internal)
    return tm.emit_assembly(module)


def _aot_module(ir_text: str, info: TargetInfo, link, internal):
    module = parse(ir_text)
    for text in link:
        module.link_in(parse(text))
    for name in internal:
        module.get_function(name).linkage = llvm.Linkage.internal
    module.triple = info.triple
    tm = target_machine(info)
    module.data_layout = str(tm.target_data)
    optimize(module, tm)
    return module, tm


class LoadedObject:
    """An object file for this host loaded into the process by LLVM's JIT linker (no C
    compiler, no temporary files); its undefined symbols resolve against the process
    and the symbols registered with `llvm.add_symbol` (the runtime support's)."""

    def __init__(self, data: bytes):
        info = host()
        self._tm = target_machine(info, jit=True)
        empty = llvm.parse_assembly("")
        empty.triple = info.triple
        self.engine = llvm.create_mcjit_compiler(empty, self._tm)
        self.engine.add_object_file(llvm.ObjectFileRef.from_data(data))
        self.engine.finalize_object()

    def address(self, name: str) -> int:
        addr = self.engine.get_function_address(name)
        if not addr:
            raise KeyError(f"no native function {name!r} in this object")
        return addr

    def assembly(self) -> str:
        raise RuntimeError("this code was loaded from an object file (an artifact or the compile "
                           "cache) and has no IR to print; set TESSEL_CACHE_DIR=off to compile afresh")
