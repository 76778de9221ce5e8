"""Output fusion: a dot_general or convolution with its epilogue (and operand views).

The kernel an output fusion describes is one GEMM (or convolution lowered to one):

    operand views  ->  dot_general / convolution  ->  elementwise epilogue  ->  root
    (slice, transpose,                              (bias add, scale, activation,
     reshape, convert of                             residual add, gelu-like chains)
     each operand, done
     while packing it)

- The epilogue is every elementwise op on the product's shape that reads the product
  (directly or through the epilogue) up to one end value; everything on the way is
  used only inside, so the product never reaches memory. Its other operands are
  parameters of the fusion (residuals, masks: read at the output index), or
  broadcast_in_dim / iota / small constants, which are pulled in (biases).
- Operand views are the slices, transposes, reshapes and converts that
  feed the product: a GEMM packs its operands anyway, so it reads them through the view
  instead of a copy kernel materializing it.

Reductions never join an output fusion; when the product has users outside one chain,
the chain stops before them (an epilogue is never computed twice).
"""
from __future__ import annotations

from ..fusion_utils import (FusionGraph, FusionPass, Group, can_fuse, fuse, is_elementwise, pull_producers,
                            single_output_chain)
from ..ir import Computation, Instruction, Module

PRODUCTS = ("dot_general", "convolution")
EPILOGUE_SIDE_OPS = ("broadcast_in_dim", "constant", "iota", "convert")
OPERAND_VIEWS = ("slice", "transpose", "reshape", "convert")


class OutputFusion(FusionPass):
    name = "output-fusion"

    def fuse_computation(self, module: Module, comp: Computation) -> bool:
        graph = FusionGraph(comp)
        changed = False
        for product in [i for i in comp.instructions if i.opcode in PRODUCTS]:
            if graph.is_dead(product):
                continue
            group = Group(epilogue_chain(graph, product))
            pull_producers(graph, group, _is_epilogue_side_op, start=group.moved - {product})
            pull_producers(graph, group, _is_operand_view, start=[product])
            if len(group) > 1:
                fuse(module, comp, group, "output")
                graph.refresh()
                changed = True
        return changed


def _is_epilogue_side_op(instr: Instruction) -> bool:
    return instr.opcode in EPILOGUE_SIDE_OPS and can_fuse(instr)


def _is_operand_view(instr: Instruction) -> bool:
    return instr.opcode in OPERAND_VIEWS and can_fuse(instr)


def epilogue_chain(graph: FusionGraph, product: Instruction) -> set[Instruction]:
    """The product and its longest single-output elementwise epilogue."""
    def admit(instr: Instruction) -> bool:
        return can_fuse(instr) and is_elementwise(instr) and instr.shape.dims == product.shape.dims

    return single_output_chain(graph, product, admit)
