"""The C interface of a CPU artifact: wrapper functions in LLVM IR, the header, linking.

The program module's `tessel_entry(args, results, scratch)` becomes internal to the
object; the object exports, for a symbol prefix NAME:

    size_t NAME_scratch_size(void);                  /* bytes, 64-byte aligned arena */
    int    NAME_run_with_scratch(const void *const *args, void *const *results, void *scratch);
    int    NAME_run(const void *const *args, void *const *results);   /* allocates scratch */

Both runs also fill the outputs the buffer plan aliases (a returned argument, a
returned constant, one value returned twice), which the entry itself never writes, so
C callers get every result. Return codes: 0 ok, 1 the scratch arena could not be
allocated. The thread pool lives in the runtime object (`tessel_runtime.o`, shared by
all artifacts); `tessel_pool_init(0)` starts it, without it loops run on the caller.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile

from ..compiler.buffer_assignment import ARGUMENT, CONSTANT, OUTPUT
from ..compiler.ir import Shape
from ..runtime import pytree
from ..runtime.executable import Signature

SCRATCH_ALIGN = 64
OK, ERROR_NO_MEMORY = 0, 1

# dtype name -> the C type of one element as native buffers hold it.
C_TYPES = {"pred": "uint8_t", "s8": "int8_t", "s32": "int32_t", "s64": "int64_t", "u8": "uint8_t",
           "u32": "uint32_t", "f16": "uint16_t", "bf16": "uint16_t", "f32": "float", "f64": "double"}


def c_identifier(name: str) -> str:
    """`name` as a C identifier usable as a symbol prefix."""
    ident = re.sub(r"[^A-Za-z0-9_]", "_", name) or "program"
    return ident if not ident[0].isdigit() else f"_{ident}"


# ----------------------------------------------------------------------------- wrapper IR

def wrapper_ir(prefix: str, program, entry: str) -> str:
    """LLVM IR of the exported functions around `entry` (a codegen Program's entry)."""
    lines = [f"declare void @{entry}(ptr, ptr, ptr)",
             "declare ptr @aligned_alloc(i64, i64)",
             "declare void @free(ptr)",
             "declare void @llvm.memcpy.p0.p0.i64(ptr, ptr, i64, i1)"]
    copies = []
    for k, where in sorted(program.output_aliases.items(), key=lambda kv: kv[1].kind == OUTPUT):
        nbytes = program.outputs[k].nbytes
        if nbytes:
            copies.append((k, where, nbytes))
        if nbytes and where.kind == CONSTANT:
            data = bytes(program.constants[where.index:where.index + nbytes])
            lines.append(f'@"{prefix}.alias{k}" = private unnamed_addr constant [{nbytes} x i8] '
                         f'c"{_escape(data)}", align {SCRATCH_ALIGN}')
    scratch = max(program.scratch_bytes, 1)
    arena = -(-scratch // SCRATCH_ALIGN) * SCRATCH_ALIGN      # aligned_alloc: size a multiple of the alignment
    lines += ["", f"define i64 @{prefix}_scratch_size() {{", f"  ret i64 {program.scratch_bytes}", "}", "",
              f"define i32 @{prefix}_run_with_scratch(ptr %args, ptr %results, ptr %scratch) {{",
              "entry:", f"  call void @{entry}(ptr %args, ptr %results, ptr %scratch)"]
    for k, where, nbytes in copies:
        lines += _copy_ir(prefix, k, where, nbytes)
    lines += [f"  ret i32 {OK}", "}", "",
              f"define i32 @{prefix}_run(ptr %args, ptr %results) {{",
              "entry:",
              f"  %scratch = call ptr @aligned_alloc(i64 {SCRATCH_ALIGN}, i64 {arena})",
              "  %failed = icmp eq ptr %scratch, null",
              "  br i1 %failed, label %nomem, label %run",
              "run:",
              f"  %status = call i32 @{prefix}_run_with_scratch(ptr %args, ptr %results, ptr %scratch)",
              "  call void @free(ptr %scratch)",
              "  ret i32 %status",
              "nomem:",
              f"  ret i32 {ERROR_NO_MEMORY}", "}"]
    return "\n".join(lines) + "\n"


def _copy_ir(prefix: str, k: int, where, nbytes: int) -> list[str]:
    out = [f"  %dst{k}.p = getelementptr ptr, ptr %results, i64 {k}",
           f"  %dst{k} = load ptr, ptr %dst{k}.p, align 8"]
    if where.kind == CONSTANT:
        source = f'@"{prefix}.alias{k}"'
    else:
        table = "%args" if where.kind == ARGUMENT else "%results"
        out += [f"  %src{k}.p = getelementptr ptr, ptr {table}, i64 {where.index}",
                f"  %src{k} = load ptr, ptr %src{k}.p, align 8"]
        source = f"%src{k}"
    out.append(f"  call void @llvm.memcpy.p0.p0.i64(ptr %dst{k}, ptr {source}, i64 {nbytes}, i1 false)")
    return out


def _escape(data: bytes) -> str:
    return "".join(f"\\{b:02x}" for b in data)


# ----------------------------------------------------------------------------- the header

def header(prefix: str, name: str, program, signature: Signature, target, tessel_version: str,
           object_name: str, runtime_name: str) -> str:
    """The C header declaring the artifact's functions, shapes and dtypes."""
    guard = f"TESSEL_{prefix.upper()}_H"
    p = prefix.upper()
    lines = [f"/* {prefix}.h: generated by tessel {tessel_version} for the function `{name}`.",
             f" * Target: {target.triple}, CPU {target.cpu}.",
             f" * Link:   cc main.c {object_name} {runtime_name} -lpthread -lm",
             " *",
             " * Every buffer is C-contiguous (row-major) and aligned to its element type.",
             " * bf16 buffers hold the upper 16 bits of each float32; f16 buffers IEEE half;",
             " * pred buffers one byte (0 or 1) per element.",
             " */",
             f"#ifndef {guard}", f"#define {guard}", "",
             "#include <stddef.h>", "#include <stdint.h>", "",
             "#ifdef __cplusplus", 'extern "C" {', "#endif", "",
             f"#define {p}_NUM_ARGS {len(program.arguments)}",
             f"#define {p}_NUM_RESULTS {len(program.outputs)}",
             f"#define {p}_SCRATCH_BYTES {program.scratch_bytes}",
             f"#define {p}_SCRATCH_ALIGN {SCRATCH_ALIGN}", ""]
    paths = [s.path for s in signature.in_specs]
    out_paths = [p or "output" for p in pytree.leaf_paths(signature.out_tree, "output")]
    for role, shapes, names in (("ARG", program.arguments, paths), ("RESULT", program.outputs, out_paths)):
        for k, (shape, label) in enumerate(zip(shapes, names)):
            lines += _buffer_macros(p, prefix, role, k, shape, label)
    for role, shapes in (("arg", program.arguments), ("result", program.outputs)):
        if shapes:
            values = ", ".join(str(s.nbytes) for s in shapes)
            lines.append(f"static const size_t {prefix}_{role}_bytes[{len(shapes)}] = {{{values}}};")
    lines += ["",
              "/* Runs the program. args[i] points at argument i, results[j] at a buffer of",
              f" * {prefix}_result_bytes[j] bytes. Returns 0, or 1 if no scratch could be allocated. */",
              f"int {prefix}_run(const void *const *args, void *const *results);",
              "",
              f"/* The same with a caller-owned scratch arena of {prefix}_scratch_size() bytes,",
              f" * aligned to {p}_SCRATCH_ALIGN (one arena per thread calling at once). */",
              f"int {prefix}_run_with_scratch(const void *const *args, void *const *results, void *scratch);",
              f"size_t {prefix}_scratch_size(void);",
              "",
              f"/* The thread pool, in {runtime_name} (one per program, shared by all artifacts).",
              " * tessel_pool_init(0) starts it with $TESSEL_NUM_THREADS threads, else one per CPU;",
              " * without it every parallel loop runs on the calling thread. */",
              "#ifndef TESSEL_RUNTIME_DECLARED", "#define TESSEL_RUNTIME_DECLARED",
              "int tessel_pool_init(int n_threads);", "int tessel_pool_size(void);",
              "void tessel_pool_shutdown(void);", "#endif", "",
              "#ifdef __cplusplus", "}", "#endif", f"#endif /* {guard} */", ""]
    return "\n".join(lines)


def _buffer_macros(p: str, prefix: str, role: str, k: int, shape: Shape, label: str) -> list[str]:
    dims = ", ".join(str(d) for d in shape.dims) or "1"
    tag = f"{p}_{role}{k}"
    return [f"/* {role.lower()} {k}: {label.replace('*/', '* /')}, {shape.dtype.name}{list(shape.dims)} */",
            f"typedef {C_TYPES[shape.dtype.name]} {prefix}_{role.lower()}{k}_t;",
            f"#define {tag}_DTYPE \"{shape.dtype.name}\"",
            f"#define {tag}_RANK {shape.rank}",
            f"#define {tag}_DIMS {{{dims}}}",
            f"#define {tag}_SIZE {shape.size}",
            f"#define {tag}_BYTES {shape.nbytes}", ""]


# ----------------------------------------------------------------------------- linking

def c_compiler() -> str | None:
    """The system C compiler driver ($CC, else cc), if there is one."""
    return shutil.which(os.environ.get("CC", "cc"))


def link_shared(objects: dict[str, bytes], output: str, cc: str) -> bytes:
    """A shared library of `objects` (name -> bytes) linked by `cc`."""
    with tempfile.TemporaryDirectory(prefix="tessel-link-") as tmp:
        paths = []
        for name, data in objects.items():
            path = os.path.join(tmp, name)
            with open(path, "wb") as f:
                f.write(data)
            paths.append(path)
        out = os.path.join(tmp, output)
        cmd = [cc, "-shared", "-o", out, *paths, "-lpthread", "-lm"]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"linking the shared library failed ({' '.join(cmd)}):\n{result.stderr}")
        with open(out, "rb") as f:
            return f.read()
