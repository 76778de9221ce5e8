"""The CPU backend's runtime side: compile a module once, call its native entry per call.

    run = CpuExecutable(module).run          # what runtime/backends.py's "cpu" entry returns
    outputs = run([x, w, b])                 # list of NumPy arrays in, list out

Per call (`run`), before any native code runs:
- every argument is checked against the compiled signature (shape, storage dtype; the
  runtime's Executable has checked them too, but the backend may be called directly);
- an argument that is not C-contiguous and aligned to its dtype (a transposed or
  negative-stride view, Fortran order, a misaligned buffer) is copied into a fresh
  contiguous array; read-only arrays are used as they are (arguments are never written);
- bf16 arguments (f32 arrays holding bf16 values) become their upper 16 bits, the form
  bf16 buffers have in native code; bf16 results are widened back to f32 arrays.
Then the output arrays are allocated, the native entry runs once (ctypes releases the
GIL while it runs), and outputs the buffer plan aliases (a returned parameter or
constant, a value returned twice) are filled by copies: the entry never writes them.

Scratch: one arena per (executable, calling thread), allocated on the thread's first
call and kept (64-byte aligned). Two threads may call one executable at once; each
uses its own arena, so no lock is needed.

Dispatch: reading a NumPy array's data pointer through `a.ctypes.data` costs about a
microsecond. The JIT module therefore gets a second entry, `tessel_entry_objects(list
args, list results, scratch)`, that reads the buffer pointers out of the Python list
and ndarray objects itself (CPython's list and NumPy's array layouts, checked once per
process by `_object_layout`; when the check fails, the portable path fills ctypes
pointer tables instead). The lists hold references for the duration of the call.
"""
from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass

import numpy as np

from ...compiler import dtypes
from ...compiler.dtypes import narrow_bf16, widen_bf16   # noqa: F401 (also imported from here)
from ...compiler.buffer_assignment import ARGUMENT, CONSTANT
from ...compiler.ir import Module, Shape
from ...runtime import compile_cache, compile_log, memory
from ...runtime.backends import Backend
from ...runtime.compile_cache import DiskCache
from . import codegen, program_cache, segments
from .llvm_target import JitModule, host

ALIGN = 64
_UNUSED = np.empty(0, np.uint8)      # the results-table slot of an output the entry does not write
_ENTRY_TYPE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
_OBJECTS_TYPE = ctypes.CFUNCTYPE(None, ctypes.py_object, ctypes.py_object, ctypes.c_void_p)


# ----------------------------------------------------------------------------- object layout

@dataclass(frozen=True)
class ObjectLayout:
    """Byte offsets the objects entry reads: a list's item array, an ndarray's data."""
    list_items: int
    array_data: int


_layout_checked = False
_layout: ObjectLayout | None = None


def _object_layout() -> ObjectLayout | None:
    """CPython's PyListObject.ob_item (after the 24-byte PyVarObject header) and NumPy's
    PyArrayObject.data (after the 16-byte PyObject header), if this process agrees."""
    global _layout_checked, _layout
    if not _layout_checked:
        _layout_checked = True
        probe = ObjectLayout(list_items=3 * ctypes.sizeof(ctypes.c_void_p),
                             array_data=2 * ctypes.sizeof(ctypes.c_void_p))
        arrays = [np.arange(3.0), np.zeros((2, 2), np.float32)[:, 1]]
        try:
            items = ctypes.c_void_p.from_address(id(arrays) + probe.list_items).value
            ok = all(ctypes.c_void_p.from_address(items + k * ctypes.sizeof(ctypes.c_void_p)).value == id(a)
                     and ctypes.c_void_p.from_address(id(a) + probe.array_data).value == a.ctypes.data
                     for k, a in enumerate(arrays))
        except (ValueError, OSError):
            ok = False
        _layout = probe if ok else None
    return _layout


def objects_entry_ir(n_args: int, n_results: int, layout: ObjectLayout) -> str:
    """IR of `tessel_entry_objects(ptr args_list, ptr results_list, ptr scratch)`: the
    pointer tables of tessel_entry filled from ndarray objects in two Python lists."""
    lines = [f"define void @{codegen.ENTRY}_objects(ptr %args, ptr %results, ptr %scratch) {{",
             "entry:",
             f"  %argv = alloca [{max(n_args, 1)} x ptr], align 8",
             f"  %resv = alloca [{max(n_results, 1)} x ptr], align 8"]
    for table, source, count in (("argv", "args", n_args), ("resv", "results", n_results)):
        if not count:
            continue
        lines.append(f"  %{source}.slot = getelementptr i8, ptr %{source}, i64 {layout.list_items}")
        lines.append(f"  %{source}.items = load ptr, ptr %{source}.slot, align 8")
        for k in range(count):
            lines += [f"  %{source}.o{k}.p = getelementptr ptr, ptr %{source}.items, i64 {k}",
                      f"  %{source}.o{k} = load ptr, ptr %{source}.o{k}.p, align 8",
                      f"  %{source}.d{k}.p = getelementptr i8, ptr %{source}.o{k}, i64 {layout.array_data}",
                      f"  %{source}.d{k} = load ptr, ptr %{source}.d{k}.p, align 8",
                      f"  %{table}.{k} = getelementptr [{count} x ptr], ptr %{table}, i64 0, i64 {k}",
                      f"  store ptr %{source}.d{k}, ptr %{table}.{k}, align 8"]
    lines += [f"  call void @{codegen.ENTRY}(ptr %argv, ptr %resv, ptr %scratch)",
              "  ret void", "}"]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- the executable

@dataclass(frozen=True)
class _Argument:
    dims: tuple
    storage: np.dtype       # what the caller passes (bf16: float32)
    bf16: bool


class CpuExecutable:
    """A module compiled to native code for this host, callable on NumPy arrays."""

    def __init__(self, module: Module, threads: int | None = None, cache: DiskCache | None = None):
        self.module = module
        layout = _object_layout()
        self.program, self.jit = _compile(module, threads or codegen.default_threads(), layout, cache)
        self._entry = _ENTRY_TYPE(self.jit.address(codegen.ENTRY))
        self._objects_entry = (_OBJECTS_TYPE(self.jit.address(f"{codegen.ENTRY}_objects"))
                               if layout is not None else None)
        self._arguments = [_Argument(s.dims, s.dtype.storage, s.dtype is dtypes.bf16)
                           for s in self.program.arguments]
        aliases = self.program.output_aliases
        # One slot per output (the entry indexes the table by output number); the
        # entry never touches the slot of an aliased output.
        self._slots = [None if k in aliases else
                       (s.dims, np.dtype(np.uint16) if s.dtype is dtypes.bf16 else s.dtype.storage)
                       for k, s in enumerate(self.program.outputs)]
        self._bf16_outputs = [k for k, s in enumerate(self.program.outputs)
                              if s.dtype is dtypes.bf16 and k not in aliases]
        self._plain_outputs = not self._bf16_outputs and not aliases   # written = returned
        self._threads = threading.local()
        # outputs + this thread's scratch: checked against free memory before allocating
        self._call_bytes = self.program.scratch_bytes + sum(
            s.nbytes for k, s in enumerate(self.program.outputs) if k not in aliases)

    # ------------------------------------------------------------ per call

    def run(self, arrays) -> list[np.ndarray]:
        if len(arrays) != len(self._arguments):
            raise TypeError(f"{self.module.name}: expected {len(self._arguments)} arguments, "
                            f"given {len(arrays)}")
        args = list(arrays)
        for k, spec in enumerate(self._arguments):
            a = args[k]
            # the common case inline: an ndarray of the exact shape and dtype, C order, aligned
            if type(a) is np.ndarray and a.shape == spec.dims and a.dtype == spec.storage \
                    and not spec.bf16:
                flags = a.flags
                if flags.c_contiguous and flags.aligned:
                    continue
            args[k] = self._argument(k, a)
        if self._call_bytes >= memory.GUARD_FROM:
            memory.check_fits(self._call_bytes, self.module.name)
        written = [_UNUSED if slot is None else np.empty(*slot) for slot in self._slots]
        scratch = self._scratch()
        if self._objects_entry is not None:
            self._objects_entry(args, written, scratch)
        else:
            self._call_with_tables(args, written, scratch)
        if self._plain_outputs:
            return written
        return self._outputs(arrays, written)

    def _argument(self, k: int, a) -> np.ndarray:
        spec = self._arguments[k]
        if type(a) is not np.ndarray:
            a = np.asarray(a)
        if a.shape != spec.dims or a.dtype != spec.storage:
            raise TypeError(f"{self.module.name}: argument {k} must be {spec.storage}{list(spec.dims)}, "
                            f"given {a.dtype}{list(a.shape)}")
        if not (a.flags.c_contiguous and a.flags.aligned):
            a = np.ascontiguousarray(a)
            if not a.flags.aligned:     # ascontiguousarray keeps a misaligned contiguous buffer
                a = a.copy()
        if spec.bf16:
            a = narrow_bf16(a)
        return a

    def _scratch(self) -> int:
        address = getattr(self._threads, "scratch", None)
        if address is None:
            arena = np.empty(self.program.scratch_bytes + ALIGN, np.uint8)
            address = -(-arena.ctypes.data // ALIGN) * ALIGN
            self._threads.arena, self._threads.scratch = arena, address
        return address

    def _call_with_tables(self, args, written, scratch) -> None:
        argv = (ctypes.c_void_p * max(1, len(args)))(*[a.ctypes.data for a in args])
        resv = (ctypes.c_void_p * max(1, len(written)))(*[r.ctypes.data for r in written])
        self._entry(argv, resv, scratch)

    def _outputs(self, arrays, written) -> list[np.ndarray]:
        outputs = written
        for k in self._bf16_outputs:
            outputs[k] = widen_bf16(outputs[k])
        if self.program.output_aliases:
            self._fill_aliases(arrays, outputs)
        return outputs

    def _fill_aliases(self, arrays, outputs) -> None:
        shapes = self.program.outputs
        later = []
        for k, where in self.program.output_aliases.items():
            if where.kind == ARGUMENT:
                value = np.array(arrays[where.index], order="C").reshape(shapes[k].dims)
                outputs[k] = dtypes.canonicalize(value, shapes[k].dtype)
            elif where.kind == CONSTANT:
                outputs[k] = self._constant(where.index, shapes[k])
            else:
                later.append((k, where.index))
        for k, source in later:       # the same value returned twice
            outputs[k] = outputs[source].copy().reshape(shapes[k].dims)

    def _constant(self, offset: int, shape: Shape) -> np.ndarray:
        raw = self.program.constants[offset:offset + shape.nbytes]
        if shape.dtype is dtypes.bf16:
            return widen_bf16(raw.view(np.uint16)).reshape(shape.dims)
        return raw.view(shape.dtype.storage).reshape(shape.dims).copy()

    # ------------------------------------------------------------ inspection

    def assembly(self) -> str:
        return self.jit.assembly()


def _compile(module: Module, threads: int, layout: ObjectLayout | None, cache: DiskCache | None):
    """(Program, native code) for `module`: from the persistent compile cache when it
    holds the program (program_cache.py), else compiled (and stored there)."""
    entry_key = None
    if cache is not None:
        entry_key = program_cache.key(program_cache.module_text(module), host(), threads, layout)
        found = program_cache.load(cache, entry_key)
        compile_log.log(f"{module.name}: disk cache {'hit' if found else 'miss'} {entry_key[:12]} in {cache.root}")
        if found is not None:
            return found
    # A cached object must not hold this process's addresses: embed the constants.
    embed = cache is not None and program_cache.constant_bytes(module) <= program_cache.EMBED_CONSTANTS_LIMIT
    program = codegen.compile_program(module, threads=threads, self_contained=embed)
    text = program.ir
    if layout is not None:
        text += objects_entry_ir(len(program.arguments), len(program.outputs), layout)
    jit = JitModule(text, keep_object=cache is not None)
    if cache is not None:
        reason = program_cache.uncacheable(program, module) or (None if jit.object else "no object file")
        if reason is None:
            program_cache.store(cache, entry_key, program, jit.object)
        jit.object = None                      # stored: do not keep a second copy of the code
        compile_log.log(f"{module.name}: {'stored in the disk cache' if reason is None else 'not cached: ' + reason}")
    return program, jit


def compile(module: Module):
    """The backend's compile: module -> run(list of arrays) -> list of arrays (through
    the persistent compile cache unless it is disabled, runtime/compile_cache.py).
    A program with collectives is cut there: native segments, collectives between
    them (segments.py)."""
    cache = compile_cache.default()
    if segments.top_level_collectives(module):
        return segments.SegmentedProgram(module, lambda seg: CpuExecutable(seg, cache=cache).run).run
    return CpuExecutable(module, cache=cache).run


def backend() -> Backend:
    return Backend("cpu", compile, "LLVM machine code for this host's CPU (llvmlite)")
