"""convolution reaching code generation: the convolution expander's program as a
nested function.

The CPU pipeline expands every convolution into im2col slices and one dot_general
before fusion (compiler/passes/convolution_expander.py, compiler/pipeline.py
`cpu_expanders`), so an optimized module holds none. A module compiled without that
pipeline (e.g. `backends.get("cpu").compile(module)` on a traced module) still gets the
same lowering here: the one-instruction computation is expanded and optimized for this
backend on its own, then compiled as a nested function with its own buffer plan
(kernels_control.nested_function) and called at the instruction's place.
"""
from __future__ import annotations

from ...compiler.ir import Computation, Module
from .kernels_control import nested_function, pointer_array


def emit_convolution(kc, comp: Computation, outputs: list, operands: list) -> None:
    from ...compiler.pipeline import optimize          # the pipeline imports backends lazily too
    module = Module(f"{comp.name}.expanded")
    for name in [comp.name] + [i.name for i in comp.instructions]:
        module.reserve_name(name)
    module.add_computation(comp, entry=True)
    optimized, _ = optimize(module, "cpu")
    fn, scratch_bytes = nested_function(kc.codegen, optimized.entry)
    e = kc.entry
    scratch = kc.temp(max(1, scratch_bytes))
    e.call(fn, [pointer_array(e, operands, "conv.args"), pointer_array(e, outputs, "conv.results"), scratch])
