"""CPU programs in the persistent compile cache (runtime/compile_cache.py).

A miss compiles as usual and keeps the object file MCJIT produced (the JIT's own
compile, captured through LLVM's object-cache hook: no second compile); the entry
holds that object and the calling plan of codegen's Program (argument and output
shapes, aliases, scratch size). A hit skips code generation and LLVM entirely: the
object is linked into the process (llvm_target.LoadedObject) and called as usual.

The key covers everything the object depends on: the optimized module's text, the
host target (triple, CPU, features), the thread count code generation planned for,
the Python object layout the objects entry reads, the tessel version and a fingerprint
of the code generator's sources. With the cache on, constants are embedded in the
code (up to EMBED_CONSTANTS_LIMIT); programs whose code would hold addresses of this
process (larger constant sections, custom calls) are not cached.
"""
from __future__ import annotations

import re

import numpy as np

from ... import __version__
from ...compiler import dtypes
from ...compiler.buffer_assignment import CONSTANT, Slice
from ...compiler.ir import Shape
from ...runtime import compile_cache
from . import codegen
from .llvm_target import LoadedObject, TargetInfo

CODEGEN_SOURCES = ("backends/cpu", "compiler")
# Cached programs embed their constants in the object (JIT code references sections
# over codegen.CONSTANT_GLOBAL_LIMIT by address); above this size they are not cached.
EMBED_CONSTANTS_LIMIT = 64 << 20
_ADDRESS = re.compile(r"inttoptr \(i64 \d{6,} to ptr\)")      # an absolute address in the IR
_fingerprint: str | None = None


module_text = compile_cache.module_text      # shared with the systolic backend's cache


def key(module_text: str, target: TargetInfo, threads: int, layout) -> str:
    global _fingerprint
    if _fingerprint is None:
        _fingerprint = compile_cache.source_fingerprint(*CODEGEN_SOURCES)
    return compile_cache.make_key(module=module_text, backend="cpu", triple=target.triple, cpu=target.cpu,
                                  features=target.features, threads=threads,
                                  layout=None if layout is None else [layout.list_items, layout.array_data],
                                  tessel=__version__, sources=_fingerprint)


def constant_bytes(module) -> int:
    """Bytes of the entry computation's constants (the constant section, about)."""
    return sum(i.shape.nbytes for i in module.entry.instructions if i.opcode == "constant")


def uncacheable(program: codegen.Program, module) -> str | None:
    """Why the compiled code of `program` cannot be reused by another process, or None."""
    if _ADDRESS.search(program.ir):
        return f"its code holds addresses of this process (constants over {EMBED_CONSTANTS_LIMIT >> 20} MiB)"
    if any(i.opcode == "custom_call" for c in module.reachable_computations() for i in c.instructions):
        return "it has custom calls"
    return None


def store(cache: compile_cache.DiskCache, entry_key: str, program: codegen.Program, obj: bytes) -> None:
    aliases = program.output_aliases
    meta = {"program": {
        "arguments": [_shape_json(s) for s in program.arguments],
        "outputs": [_shape_json(s) for s in program.outputs],
        "output_aliases": [[k, s.kind, s.index, s.size] for k, s in sorted(aliases.items())],
        "scratch_bytes": program.scratch_bytes, "kernels": program.kernels, "entry": program.entry}}
    members = {"code/program.o": obj}
    if any(s.kind == CONSTANT for s in aliases.values()):     # returned constants are copied from here
        members["constants.bin"] = program.constants.tobytes()
    cache.put(entry_key, meta, members)


def load(cache: compile_cache.DiskCache, entry_key: str) -> tuple[codegen.Program, LoadedObject] | None:
    """The cached program and its object linked into this process, or None (a malformed
    entry is discarded with a warning)."""
    found = cache.load(entry_key, _decode)
    if found is None:
        return None
    program, obj = found
    from . import runtime_support
    runtime_support.parallel_for_address()          # the pool's symbol, for the object's calls
    return program, LoadedObject(obj)


def _decode(meta: dict, members: dict[str, bytes]) -> tuple[codegen.Program, bytes]:
    plan = meta["program"]
    program = codegen.Program(
        ir="", arguments=[_shape(s) for s in plan["arguments"]], outputs=[_shape(s) for s in plan["outputs"]],
        output_aliases={int(k): Slice(kind, int(index), int(size)) for k, kind, index, size in plan["output_aliases"]},
        scratch_bytes=int(plan["scratch_bytes"]),
        constants=np.frombuffer(members.get("constants.bin", b""), np.uint8),
        kernels=list(plan["kernels"]), entry=str(plan["entry"]))
    return program, members["code/program.o"]


def _shape_json(shape: Shape) -> list:
    return [shape.dtype.name, list(shape.dims)]


def _shape(data) -> Shape:
    name, dims = data
    return Shape(dtypes.BY_NAME[name], tuple(int(d) for d in dims))
