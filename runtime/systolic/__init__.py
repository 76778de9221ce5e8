"""The systolic-array machine (ARCHITECTURE.md §7): a TPU-like weight-stationary array
with a unified buffer, accumulators, a weight FIFO and a vector unit; its functional
simulator, timing model and reports.

Modules (import them directly; this package imports nothing heavy on its own):
- `config`: `SystolicConfig`, every hardware fact.
- `isa`: the instruction table, the instruction type and the 128-bit binary encoding.
- `asm`: assembly text <-> instructions <-> binary.
- `validate`: checks a program against a configuration before it runs.
- `functional`: executes programs with NumPy (exact bf16/int8 operand rounding).
- `mxu_timing`: the matrix unit's timing contract.

docs/systolic-isa.md documents the ISA. This package must not import the compiler or the
frontend: compiled programs load and run without them.
"""
