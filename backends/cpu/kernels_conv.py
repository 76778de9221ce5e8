"""convolution: an implicit GEMM (conv_gemm.py) with the output fusion's epilogue, or the
convolution expander's program as a nested function.

The CPU pipeline keeps a convolution when the implicit GEMM applies (`conv_gemm.plan`:
f32/f64, non-empty; compiler/pipeline.py `cpu_expanders`) and expands the others into
im2col slices and one dot_general before fusion. A kept convolution reaches
code generation alone or as the product of an output fusion (bias, activation...):

    out = epilogue(convolution(view(lhs), view(rhs)))

`ConvKernel` runs it as one GEMM of the backend (gemm.py) whose A packer reads the
input in place through its strided view (`ImplicitPatches`); the kernel is read in
place when its (kernel position, input feature) dims collapse to one stride, else
copied to [T..., I, O] first; an operand that is not a strided view of a parameter
(a convert, say) is first copied in its own row-major layout. The epilogue runs on
finished tiles through the GEMM's hook, as for dot_general (kernels_dot.DotKernel, whose
epilogue machinery this kernel shares); when the output's feature dim is not last (NCHW),
the GEMM writes a feature-last product to scratch and the epilogue pass applies the
epilogue while writing the output in its layout.

A convolution the implicit GEMM does not take that reaches code generation unexpanded
(a module compiled without the CPU pipeline) gets the expander's lowering: the
one-instruction computation is expanded and optimized on its own, then compiled as a
nested function with its own buffer plan (kernels_control.nested_function) and called at
the instruction's place.
"""
from __future__ import annotations

from ...compiler import ops
from ...compiler.ir import Computation, Instruction, Module
from . import conv_gemm, gemm
from . import loops as L
from .kernels_control import nested_function, pointer_array
from .kernels_data import IndexMath, Ix, reshape_index, row_major_strides
from .kernels_dot import DotKernel, collapsed_stride, emit_dot_kernel, strided_view
from .kernels_elementwise import I8


def emit_output_fusion(kc, comp: Computation, outputs: list, operands: list) -> None:
    """An output fusion: around a convolution (implicit GEMM) or a dot_general."""
    convs = [i for i in comp.instructions if i.opcode == "convolution"]
    if not convs:
        return emit_dot_kernel(kc, comp, outputs, operands)
    if len(convs) != 1 or comp.root.shape.is_tuple or conv_gemm.plan(convs[0]) is None:
        raise NotImplementedError(f"CPU backend: output fusion {kc.name_hint()} must hold one convolution "
                                  f"the implicit GEMM takes and one result (from {kc.instr.loc_text})")
    ConvKernel(kc, comp, convs[0], outputs, operands).emit()


def emit_convolution(kc, comp: Computation, outputs: list, operands: list) -> None:
    """An unfused convolution: the implicit GEMM when it applies, else the expander's
    program as a nested function."""
    if conv_gemm.plan(comp.root) is not None:
        return ConvKernel(kc, comp, comp.root, outputs, operands).emit()
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


class ConvKernel(DotKernel):
    """A convolution (and its epilogue) as one implicit GEMM; `self.dot` is the
    convolution (DotKernel's epilogue code reads the product through it)."""

    def __init__(self, kc, comp, conv: Instruction, outputs, operands):
        self.kc, self.comp, self.dot = kc, comp, conv
        self.outputs, self.operands = outputs, operands
        self.params = sorted(comp.parameters, key=lambda p: p.attrs["index"])
        self.pointer_of = dict(zip(self.params, operands))
        self.geometry = conv_gemm.plan(conv)
        self.dn = ops.parse_dim_labels(conv.attrs["dim_labels"])
        self.gemm_dtype = conv.shape.dtype
        self.itemsize = self.gemm_dtype.itemsize

    def emit(self) -> None:
        g = self.geometry
        a, packer = self._input()
        b, b_strides = self._kernel()
        root = self.comp.root
        epilogue = None
        # The GEMM stores C's dtype: an epilogue that changes it (a convert) runs in the
        # epilogue pass over C in scratch instead.
        if (g.feature_last and root is not self.dot and root.shape.dtype == self.gemm_dtype
                and self._epilogue_vectorizes()):
            epilogue = self._epilogue
        fused = g.feature_last and (root is self.dot or epilogue is not None)
        c = self.outputs[0] if fused else self.kc.temp(self.dot.shape.nbytes)
        a_batch = packer.feature_stride * g.I if not g.by_batch else \
            packer.batch_stride * (self.dot.shape.dims[self.dn.output_batch])
        spec = gemm.GemmSpec(g.dtype, g.M, g.N, g.K, g.groups, a_strides=(a_batch if g.groups > 1 else 0, 0, 0),
                             b_strides=b_strides, c_strides=(g.N, g.out_features, 1), epilogue=epilogue,
                             epilogue_operands=len(self.params) if epilogue else 0, a_packer=packer)
        kc = self.kc
        fn = kc.reusable(lambda: gemm.emit_gemm(kc.module, spec, kc.codegen.unique(f"tessel.conv.{kc.name_hint()}"),
                                                target=kc.target, threads=kc.threads),
                         key=self._gemm_key(spec) + (packer,))
        scratch = kc.temp(max(gemm.scratch_bytes(spec, target=kc.target, threads=kc.threads), 1))
        kc.entry.call(fn, [a, b, c, scratch] + (list(self.operands) if epilogue else []))
        if not fused:
            self._epilogue_pass(c)

    # ------------------------------------------------------------ operands

    def _viewed(self, instr: Instruction):
        """(entry pointer, element strides) of an operand read in place, or None."""
        view = strided_view(instr) if instr.shape.dtype == self.gemm_dtype else None
        if view is None:
            return None
        return L.gep(self.kc.entry, self.pointer_of[view.param], I8, view.offset * self.itemsize), view.strides

    def _input(self):
        """The input's pointer and the A packer reading it."""
        lhs = self.dot.operands[0]
        viewed = self._viewed(lhs)
        if viewed is None:          # e.g. a convert: copied in its own row-major layout
            dims = lhs.shape.dims
            viewed = self._materialize(lhs, [(d,) for d in range(len(dims))], dims), row_major_strides(dims)
        pointer, strides = viewed
        dn = self.dn
        packer = conv_gemm.ImplicitPatches(self.geometry, strides[dn.input_batch], strides[dn.input_feature],
                                           tuple(strides[d] for d in dn.input_spatial))
        return pointer, packer

    def _kernel(self):
        """The kernel's pointer and GEMM strides (group, k = (t..., i), n)."""
        rhs, dn, g = self.dot.operands[1], self.dn, self.geometry
        k_dims = dn.kernel_spatial + (dn.kernel_in,)
        viewed = self._viewed(rhs)
        if viewed is not None:
            pointer, strides = viewed
            k_stride = collapsed_stride(k_dims, rhs.shape.dims, strides)
            if k_stride is not None:
                o_stride = strides[dn.kernel_out]
                return pointer, (g.N * o_stride, k_stride, o_stride)
        copy = self._materialize(rhs, [(d,) for d in k_dims + (dn.kernel_out,)], rhs.shape.dims)
        return copy, (g.N, g.out_features, 1)

    # ------------------------------------------------------------ epilogue

    def _product_strides(self) -> list[int]:
        """C in scratch is the output with its feature dim moved last."""
        out, f = self.dot.shape.dims, self.dn.output_feature
        order = [d for d in range(len(out)) if d != f] + [f]
        strides = [0] * len(out)
        for d, stride in zip(order, row_major_strides([out[d] for d in order])):
            strides[d] = stride
        return strides

    def _output_index(self, ix: IndexMath, row: Ix, col: Ix) -> list[Ix]:
        """The convolution's output index of C[row, col], row = group * M + m."""
        g, out = self.geometry, self.dot.shape
        split = reshape_index(ix, [row], [g.groups * g.M], [g.groups] + [size for _, size in g.rows])
        feature = ix.add(ix.scale(split[0], g.N), col)
        return split[1:] + [feature]        # fused epilogues only: the feature dim is last
