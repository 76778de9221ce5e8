"""The optimization pipeline, one readable function per backend.

Each function lists its passes in order with the reason for that order. The pass
manager (pass_manager.py) verifies after every change, caps fixed points, times each
pass, honours TESSEL_DISABLE_PASSES and writes TESSEL_DUMP_TO dumps.
"""
from __future__ import annotations

from .ir import Module, clone_module
from .pass_manager import FixedPoint, PassManager, PipelineReport
from .passes.algebraic_simplifier import AlgebraicSimplifier
from .passes.constant_folding import ConstantFolding
from .passes.convolution_expander import ConvolutionExpander
from .passes.cse import CSE
from .passes.dce import DCE
from .passes.layout_assignment import LayoutAssignment
from .passes.loop_fusion import LoopFusion
from .passes.multi_output_fusion import MultiOutputFusion
from .passes.output_fusion import OutputFusion
from .passes.reduction_fusion import ReductionFusion
from .passes.reverse_expander import ReverseExpander
from .passes.row_lookup_to_dot import RowLookupToDot
from .passes.schedule import Scheduler
from .passes.select_and_scatter_expander import SelectAndScatterExpander
from .passes.update_slice_expander import UpdateSliceExpander
from .passes.while_unroll import WhileUnroll
from .passes.zero_elements import ZeroElementFolding

SIMPLIFY_MAX_ITERATIONS = 16


def simplification() -> FixedPoint:
    # Each rewrite exposes work for the others (a folded constant enables an algebraic
    # identity, which leaves duplicates for CSE and dead code for DCE), so they run
    # together until nothing changes.
    return FixedPoint("simplify", [AlgebraicSimplifier(), ConstantFolding(), CSE(), DCE()],
                      max_iterations=SIMPLIFY_MAX_ITERATIONS)


def fusion() -> list:
    return [
        # Epilogues (bias, activation, residual) join their dot/convolution first: once
        # loop fusion has swallowed them they could no longer be fused into the GEMM.
        OutputFusion(),
        # Producers fuse into reductions before plain loop fusion, so a softmax or layer
        # norm becomes reduction kernels that read the input once, not one loop per op.
        ReductionFusion(),
        # What is left of elementwise/broadcast/reshape chains becomes loop fusions.
        LoopFusion(),
        # Siblings reading the same operand share one pass over it; this works on the
        # fusions the passes above produced, so it comes last.
        MultiOutputFusion(),
        DCE(),
    ]


def shared_prefix() -> list:
    return [
        simplification(),
        # Layout assignment folds transposes into dot/convolution dimension numbers; it
        # runs after simplification (fewer transposes to consider) and before fusion
        # (which would hide the transposes inside fused computations). Folding can leave
        # dead transposes and new simplification opportunities, hence a second round.
        LayoutAssignment(),
        simplification(),
    ]


def interpreter_pipeline() -> list:
    return shared_prefix() + fusion() + [
        # Scheduling runs last: it orders the final instruction set to lower peak memory,
        # and buffer assignment (an analysis, not a pass) plans buffers for that order.
        Scheduler(),
    ]


def cpu_expanders() -> list:
    # Ops the CPU backend computes as other ops. They run after layout assignment has
    # folded transposes into convolution dimension numbers; the transposes and reshapes
    # they create fold into the dots (layout assignment again) or simplify away.
    # Convolutions the backend's implicit GEMM takes stay (and join output fusions).
    from ..backends.cpu.conv_gemm import applies as implicit_gemm_applies
    return [ConvolutionExpander(keep=implicit_gemm_applies), LayoutAssignment(), simplification()]


def cpu_pipeline() -> list:
    # The CPU code generator lowers the fusions and the schedule of the shared pipeline;
    # its backend-specific choices (vector width, parallel split) are made per kernel
    # when it emits code (backends/cpu/codegen.py).
    return shared_prefix() + cpu_expanders() + fusion() + [Scheduler()]


def systolic_pipeline() -> list:
    from ..backends.systolic.conv import SystolicConvolutionExpander
    from ..backends.systolic.dot_layout import DotLayout
    # The systolic code generator places each op on the matrix or the vector unit itself
    # (backends/systolic/codegen.py) and recognises bias/activation epilogues there, so
    # it takes unfused instructions. Stride-1 2-D convolutions stay (shifted matmuls,
    # backends/systolic/conv.py); the others become im2col + dot, after which layout
    # assignment and simplification tidy up as for the CPU. DotLayout puts dot operands
    # in the order the array streams them; it runs after the simplifier, which would fold
    # its transposes back into the dots, and DCE clears what it replaced. Scheduling
    # comes last, as everywhere. The expanders run first (systolic_expanders). Zero-element
    # folding goes before the rest: the machine moves data in rows and columns and has no
    # transfer of nothing (compiler/passes/zero_elements.py). After the simplifier has
    # folded unrolled loop counters, the updates at those constants become slices and
    # concatenates (the machine has no dynamic_update_slice), which the following
    # simplification collapses into one concatenate per stacked output.
    return systolic_expanders() + shared_prefix() + [
        ZeroElementFolding(), UpdateSliceExpander(), SystolicConvolutionExpander(), LayoutAssignment(),
        simplification(), DotLayout(), DCE(), Scheduler()]


def systolic_expanders() -> list:
    # Ops the systolic machine lacks, written with ones it has, before simplification
    # folds the constants they make. It runs one instruction stream without branches:
    # loops with a static trip count are unrolled (their copies' counters become
    # constants, dynamic slices at them static slices). Table lookups and their
    # gradients become one-hot matmuls, max-pool gradients compares, selects and pads,
    # kernel reversal slices. What is left (too big to expand, integer bookkeeping)
    # the backend refuses, or soft placement runs on the CPU.
    return [WhileUnroll(), RowLookupToDot(), SelectAndScatterExpander(), ReverseExpander()]


def placement_pipeline(mode, default: str) -> list:
    from .passes.device_transfers import DeviceTransfers
    from .passes.placement import Placement
    # Placement decides each instruction's device (scopes, the backend, the mode); the
    # transfers pass then pairs a send and a recv at every crossing. Each per-device part
    # is optimized afterwards by its own device's pipeline (runtime/placed.py), so no
    # fusion or rewrite ever crosses a device boundary.
    cost_model = None
    if mode == "auto":
        from .placement_cost import CostModel
        cost_model = CostModel()
    return before_placement(default) + [DCE(), Placement(mode, default, cost_model), DeviceTransfers()]


def before_placement(default: str) -> list:
    # For the systolic machine its expanders run before placement decides what the
    # machine can run, so an unrolled loop's matmuls, a lookup's matmul and a max-pool
    # gradient are placed on the machine instead of the whole op going to the CPU.
    # Simplification folds the unrolled counters first, so the dynamic slices at them are
    # static slices and the updates become concatenates (as in systolic_pipeline); what
    # is left for the CPU is integer work such as a one-hot's compare.
    if default != "systolic":
        return []
    return systolic_expanders() + [simplification(), UpdateSliceExpander(), simplification()]


def place(module: Module, mode, default: str, **options) -> tuple[Module, PipelineReport]:
    """A clone of `module` with every entry instruction placed and transfers at the cuts."""
    from .pass_manager import PassError
    from .passes.placement import PlacementError
    placed = clone_module(module)
    try:
        report = PassManager("placement-pipeline", placement_pipeline(mode, default), **options).run(placed)
    except PassError as e:
        if isinstance(e.__cause__, PlacementError):     # the user's mistake, said plainly
            raise e.__cause__ from None
        raise
    return placed, report


PIPELINES = {"interpreter": interpreter_pipeline, "cpu": cpu_pipeline, "systolic": systolic_pipeline}


def optimize(module: Module, backend: str = "interpreter", **options) -> tuple[Module, PipelineReport]:
    """Optimize a clone of `module` for `backend`; the traced module is left untouched."""
    if backend not in PIPELINES:
        raise ValueError(f"no optimization pipeline for backend {backend!r}; "
                         f"known: {', '.join(sorted(PIPELINES))}")
    optimized = clone_module(module)
    report = PassManager(f"{backend}-pipeline", PIPELINES[backend](), **options).run(optimized)
    optimized.optimized_for = backend
    return optimized, report
