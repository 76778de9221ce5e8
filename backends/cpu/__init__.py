"""The CPU backend: LLVM machine code for the host through llvmlite (ARCHITECTURE.md §6).

    runtime/backends.py "cpu"  ->  executable.CpuExecutable(module).run(arrays)

| module | holds |
| --- | --- |
| `codegen.py` | one optimized module -> one LLVM module with `tessel_entry(args, results, scratch)`: coverage check, buffer plan -> pointers, constants, the kernel table, parallel dispatch |
| `kernels_loop.py` | the elemental evaluator (rule table keyed by opcode) and loop kernels |
| `kernels_elementwise.py` | value types, loads/stores, f16/bf16 rounding, the elementwise op table |
| `kernels_data.py` | index maps of data-movement ops (`Ix`: index, lane step, alignment) |
| `kernels_reduce.py` | reductions and input fusions (row / column / scalar forms, row cache) |
| `kernels_dot.py` | dot_general and output fusions on `gemm.py` (strided views, epilogue hook) |
| `executable.py` | the runtime side: argument checks and copies, arenas, the native call |
| `gemm.py`, `mathlib.py`, `loops.py` | GEMM generator, vector math, IR helpers |
| `llvm_target.py`, `runtime_support.py`, `threadpool.py` | target, JIT/objects, the native thread pool |

Submodules are imported on use: importing this package loads no LLVM.
"""
