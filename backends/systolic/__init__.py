"""The systolic backend: optimized HLO -> instruction streams for the simulated
TPU-like machine of runtime/systolic (ARCHITECTURE.md §7, docs/systolic-backend.md).

| module | holds |
| --- | --- |
| `dot_layout.py` | the pass that puts dot operands in the order the array streams them |
| `tiling.py` | GEMM tiling onto an R x C array: m chunks, k/n tiles, accumulator and UB limits |
| `reference.py` | the bf16-operand / fp32-accumulation model and the error bounds it implies |

Submodules are imported on use.
"""
