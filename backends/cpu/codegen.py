"""CPU code generation: one optimized module -> one LLVM module with one native entry.

    program = compile_program(module)        # Program: LLVM IR text + the calling plan
    program.ir                               # define void @tessel_entry(ptr, ptr, ptr)

The entry runs every kernel of the entry computation in schedule order over the buffers
buffer assignment planned (compiler/buffer_assignment.py):

    void tessel_entry(void **args, void **results, void *scratch)

    args     flat argument buffers (parameters by index), C-contiguous, dtype-aligned
    results  flat output buffers (leaves of the root tuple), written by the kernels
    scratch  one arena of `Program.scratch_bytes`, 64-byte aligned: the plan's
             temporaries at the plan's offsets, then a region kernels use privately
             (packed or converted GEMM operands, unaligned products); kernels run
             one after another, so they share that region

A buffer's pointer is its storage's base plus the plan's offset: an argument or output
slot of the tables, the plan's scratch offset, or the plan's offset in the constant
section. The section is one private global holding every entry constant -- except in
JIT code whose section exceeds CONSTANT_GLOBAL_LIMIT: there the IR holds the address of
`Program.constants` (printing and parsing megabytes of constants as IR text takes
seconds; the program keeps the array alive). `self_contained=True` (for object files)
always emits the global. Values that allocate nothing (tuple, get_tuple_element, a
bitcast reshape) are the pointers of what they alias. Outputs the plan aliases (a
returned parameter or constant, or one value returned twice) are not written by the
entry: the runtime copies them (executable.py).

Structurally identical kernels (`kernel_key`: the computation up to names and source
lines, e.g. the kernels of the heads of an attention layer) share their functions; the
entry calls them with their own pointers. GEMMs are keyed by their spec and epilogue
(operand views only move the pointers).

Kernels are a table keyed by fusion kind (`KERNELS`); an instruction that is not a
fusion runs as the kernel of the kind its opcode would fuse into (`KERNEL_KIND`), as a
one-instruction computation. A kernel emits internal functions and the calls to them
at its place in the entry (`KernelContext`). Ops with no rule raise NotImplementedError
naming the op and its source line before anything is emitted (`check_supported`).

bf16 buffers hold the upper 16 bits of each f32 (2 bytes per element, as the plan
sizes them); f16 buffers are IEEE half. See kernels_elementwise.py for how values are
computed.

Profiling (debug, off by default): with TESSEL_PROFILE_KERNELS=1 in the environment at
compile time, JIT code reads the CPU's cycle counter (`llvm.readcyclecounter`) around
every kernel of the entry and adds the difference to `Program.kernel_cycles[k]` (a
NumPy array whose address the code holds; `Program.profiled_kernels[k]` names kernel k, and
kernels of nested computations count in their control-flow op's kernel).
`kernel_profile(program, seconds)` turns the counts into a table.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from llvmlite import ir

from ...compiler import ops
from ...compiler.buffer_assignment import (ALIGNMENT, ARGUMENT, CONSTANT, OUTPUT, SCRATCH, BufferAssignment,
                                           Slice, aligned, assign_buffers)
from ...compiler.dtypes import DType
from ...compiler.ir import Computation, Instruction, Module, Shape
from ...compiler.structural import shape_structure
from . import (kernels_control, kernels_conv, kernels_gather, kernels_loop, kernels_misc,
               kernels_reduce, kernels_rng, kernels_sort, kernels_window)
from . import loops as L
from .kernels_data import Ix, NotVectorizable
from .kernels_elementwise import I8, I64, PTR
from .kernels_loop import ELEMENTAL, Leaf, LoopNest
from .llvm_target import TargetInfo, host
from .mathlib import MathLib

ENTRY = "tessel_entry"
PARALLEL_FOR = "tessel_parallel_for"

# Larger constant sections are referenced by address in JIT code (module docstring).
CONSTANT_GLOBAL_LIMIT = 256 * 1024

# Kernels whose work (elements x per-element cost, in add-equivalents) is below this
# run on the calling thread: a dispatch to the pool costs ~1-2 us, a wake-up more.
PARALLEL_MIN_COST = 400_000

PROFILE_FLAG = "TESSEL_PROFILE_KERNELS"


def profiling_requested() -> bool:
    return os.environ.get(PROFILE_FLAG, "") not in ("", "0")


# ----------------------------------------------------------------------------- the kernel table

KERNELS: dict[str, Callable] = {
    "loop": kernels_loop.emit_loop_kernel,
    "input": kernels_reduce.emit_reduce_kernel,
    "output": kernels_conv.emit_output_fusion,     # a dot_general's (kernels_dot) or a convolution's
    # index kernels (kernels_gather.py): never fused, one kernel per instruction
    "dynamic_slice": kernels_gather.emit_dynamic_slice,
    "dynamic_update_slice": kernels_gather.emit_dynamic_update_slice,
    "gather": kernels_gather.emit_gather,
    "scatter": kernels_gather.emit_scatter,
    # control flow (kernels_control.py): nested computations as native functions
    "while": kernels_control.emit_while,
    "conditional": kernels_control.emit_conditional,
    "call": kernels_control.emit_call,
    # convolutions the pipeline kept (implicit GEMM) or did not expand (kernels_conv.py)
    "convolution": kernels_conv.emit_convolution,
    # window ops (kernels_window.py), sort (kernels_sort.py), rng (kernels_rng.py)
    "reduce_window": kernels_window.emit_reduce_window,
    "select_and_scatter": kernels_window.emit_select_and_scatter,
    "sort": kernels_sort.emit_sort,
    "rng_bit_generator": kernels_rng.emit_rng_bit_generator,
    # communication and escape hatches (kernels_misc.py)
    "all_reduce": kernels_misc.emit_all_reduce,
    "all_gather": kernels_misc.emit_all_gather,
    "collective_broadcast": kernels_misc.emit_collective_broadcast,
    "send": kernels_misc.emit_send,
    "recv": kernels_misc.emit_recv,
    "custom_call": kernels_misc.emit_custom_call,
}

# Unfused instructions: the kind of kernel that computes them.
KERNEL_KIND: dict[str, str] = {
    **{name: "loop" for name, d in ops.OPS.items() if d.elementwise},
    **{name: "loop" for name in ("broadcast_in_dim", "reshape", "transpose", "slice", "reverse",
                                 "concatenate", "pad", "iota")},
    "reduce": "input",
    "dot_general": "output",
    **{name: name for name in ("dynamic_slice", "dynamic_update_slice", "gather", "scatter",
                               "while", "conditional", "call", "reduce_window", "select_and_scatter", "sort",
                               "rng_bit_generator", "all_reduce", "all_gather",
                               "collective_broadcast", "send", "recv", "custom_call", "convolution")},
}

# Instructions that run no code: their values are buffers something else holds.
PLUMBING = frozenset({"parameter", "constant", "tuple", "get_tuple_element"})

# Inside a fused computation: the evaluator's rules, plus what kernels bind themselves.
FUSED_OPS = frozenset(ELEMENTAL) | {"parameter", "reduce", "dot_general", "convolution"}


# Ops the CPU pipeline's expanders rewrite into the ops above (compiler/pipeline.py,
# cpu_expanders) before code generation.
EXPANDED = frozenset({"convolution"})


def covered_ops() -> list[str]:
    """Every opcode a program may contain (the rest raise NotImplementedError)."""
    return sorted(set(KERNEL_KIND) | PLUMBING | {"fusion"} | (FUSED_OPS - {"tuple"}) | EXPANDED)


def check_supported(module: Module) -> None:
    """NotImplementedError naming the first op this backend cannot lower, and its line."""
    entry = module.entry
    for instr in entry.instructions:
        if instr.opcode == "fusion":
            kind = instr.attrs["kind"]
            for inner in instr.attrs["calls"].instructions:
                _check(inner, FUSED_OPS, f"a {kind} fusion")
                _check_bodies(inner)
        else:
            _check(instr, set(KERNEL_KIND) | PLUMBING, "the entry computation")
            _check_bodies(instr)
        if instr.opcode == "parameter" and instr.shape.is_tuple:
            raise NotImplementedError(f"CPU backend: tuple-shaped parameter {instr.name} "
                                      f"(from {instr.loc_text}) is not supported; pass its leaves")


def _check_bodies(instr: Instruction) -> None:
    if instr.opcode == "reduce":
        for inner in instr.attrs["to_apply"].instructions:
            _check(inner, FUSED_OPS - {"reduce", "dot_general", "convolution"}, f"the reducer of {instr.name}")


def _check(instr: Instruction, allowed, where: str) -> None:
    if instr.opcode not in allowed:
        raise NotImplementedError(
            f"CPU backend: op {instr.opcode} ({instr.name} in {where}, from {instr.loc_text}) "
            f"is not lowered yet; the CPU backend covers: {', '.join(covered_ops())}")


# ----------------------------------------------------------------------------- the program

@dataclass
class Program:
    """What the runtime needs to call a compiled module (see the module docstring)."""
    ir: str
    arguments: list[Shape]
    outputs: list[Shape]
    output_aliases: dict[int, Slice]
    scratch_bytes: int
    constants: np.ndarray            # the constant section (uint8), for aliased outputs
    kernels: list[str] = field(default_factory=list)
    entry: str = ENTRY
    kernel_cycles: np.ndarray | None = None   # per entry kernel, when profiling (module docstring)
    profiled_kernels: list[str] = field(default_factory=list)    # their names
    loop_copy_bytes: dict[str, int] = field(default_factory=dict)  # while -> state bytes copied per iteration


def compile_program(module: Module, target: TargetInfo | None = None,
                    threads: int | None = None, self_contained: bool = False) -> Program:
    """LLVM IR for `module` (optimized, scheduled) and how to call it."""
    check_supported(module)
    plan = assign_buffers(module)
    return Codegen(module, plan, target or host(), threads or default_threads(), self_contained).emit()


def default_threads() -> int:
    """The thread pool's size ($TESSEL_NUM_THREADS, else the usable CPUs); 1 without a pool."""
    try:
        from . import runtime_support
    except ImportError:
        return 1
    return runtime_support.num_threads()


def storage_bytes(array: np.ndarray, dtype: DType) -> bytes:
    """The bytes of a constant as a buffer of `dtype` holds them."""
    if dtype.name == "bf16":
        return (np.ascontiguousarray(array, np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes()
    return np.ascontiguousarray(array, dtype.storage).tobytes()


class Codegen:
    def __init__(self, module: Module, plan: BufferAssignment, target: TargetInfo, threads: int,
                 self_contained: bool = False):
        self.module, self.plan, self.target, self.threads = module, plan, target, threads
        self.self_contained = self_contained
        self.llvm = ir.Module(name=module.name)
        self.llvm.triple = target.triple
        self.mathlib = MathLib(self.llvm)
        self.temp_bytes = 0
        self.kernel_names: list[str] = []
        self._names: set[str] = set()
        self._constant_globals: dict = {}
        self._kernel_functions: dict = {}      # (kernel_key, n) -> the n-th function of such kernels
        self._uses_pool = False
        self._profile = None
        self.loop_copy_bytes: dict[str, int] = {}   # while -> state bytes copied per iteration

    def unique(self, hint: str) -> str:
        name, n = hint, 1
        while name in self._names or name in self.llvm.globals:
            n += 1
            name = f"{hint}.{n}"
        self._names.add(name)
        return name

    # ------------------------------------------------------------ the entry

    def emit(self) -> Program:
        fn = ir.Function(self.llvm, ir.FunctionType(ir.VoidType(), [PTR, PTR, PTR]), name=ENTRY)
        args, results, scratch = fn.args
        for arg, name in zip(fn.args, ("args", "results", "scratch")):
            arg.name = name
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        section = self._constant_section()
        if section is None:     # only empty constants (f64[0]): a null pointer, never read
            section = ir.Constant(PTR, None)
        self._storage = {ARGUMENT: args, OUTPUT: results, SCRATCH: scratch, CONSTANT: section}
        self._b = b
        self._pointers: dict = {}
        temp = L.gep(b, scratch, I8, aligned(self.plan.scratch_bytes))
        if profiling_requested() and not self.self_contained:
            self._profile = ProfileCounters(sum(1 for i in self.plan.order
                                                if i.opcode not in PLUMBING and not self.plan.is_alias(i)))
        entry_kernels = []
        for instr in self.plan.order:
            if instr.opcode in PLUMBING or self.plan.is_alias(instr):
                continue
            start = self._profile.start(b) if self._profile else None
            self._emit_kernel(instr, temp)
            entry_kernels.append(f"{self.kernel_names[-1]} {instr.shape}")
            if self._profile:
                self._profile.stop(b, start)
        b.ret_void()
        if self._uses_pool:
            from . import runtime_support
            runtime_support.parallel_for_address()      # start the pool, publish the symbol
        comp = self.module.entry
        return Program(
            ir=str(self.llvm),
            arguments=[leaf for p in comp.parameters for leaf in p.shape.leaves()],
            outputs=comp.root.shape.leaves(),
            output_aliases=dict(self.plan.output_aliases),
            scratch_bytes=aligned(self.plan.scratch_bytes) + self.temp_bytes,
            constants=self._constant_bytes,
            kernels=self.kernel_names,
            kernel_cycles=self._profile.counts if self._profile else None,
            profiled_kernels=entry_kernels if self._profile else [],
            loop_copy_bytes=dict(self.loop_copy_bytes))

    def _constant_section(self) -> ir.Value | None:
        data = np.zeros(self.plan.constant_bytes, np.uint8)
        for alloc in self.plan.allocations:
            if alloc.kind == CONSTANT:
                instr = alloc.buffers[0].instr
                raw = np.frombuffer(storage_bytes(instr.attrs["value"].array, instr.shape.dtype), np.uint8)
                data[alloc.index:alloc.index + raw.size] = raw
        self._constant_bytes = data
        if not data.size:
            return None
        if data.size > CONSTANT_GLOBAL_LIMIT and not self.self_contained:
            return ir.Constant(I64, data.ctypes.data).inttoptr(PTR)
        return self._global("tessel.constants", data.tobytes())

    def _global(self, name: str, data: bytes) -> ir.GlobalVariable:
        ty = ir.ArrayType(I8, len(data))
        g = ir.GlobalVariable(self.llvm, ty, name=self.unique(name))
        g.linkage = "private"
        g.global_constant = True
        g.unnamed_addr = True
        g.align = ALIGNMENT
        g.initializer = ByteArray(ty, bytearray(data))
        return g

    def pointer(self, where: Slice) -> ir.Value:
        """The entry's pointer to a planned buffer."""
        key = (where.kind, where.index)
        if key not in self._pointers:
            b, base = self._b, self._storage[where.kind]
            if where.kind in (ARGUMENT, OUTPUT):
                with b.goto_entry_block():
                    value = L.load(b, L.gep(b, base, PTR, where.index), PTR)
            else:
                value = L.gep(b, base, I8, where.index)
            self._pointers[key] = value
        return self._pointers[key]

    def _emit_kernel(self, instr: Instruction, temp: ir.Value) -> None:
        if instr.opcode == "fusion":
            kind, comp = instr.attrs["kind"], instr.attrs["calls"]
        else:
            kind, comp = KERNEL_KIND[instr.opcode], as_computation(instr)
        outputs = [self.pointer(s) for s in self.plan.slices_of(instr)]
        operands = []
        for operand in instr.operands:          # one pointer per leaf (tuple operands: several)
            operands.extend(self.pointer(where) for where in self.plan.slices_of(operand))
        kc = KernelContext(self, instr, temp, kernel_key(kind, comp))
        KERNELS[kind](kc, comp, outputs, operands)
        self.temp_bytes = max(self.temp_bytes, kc.temp_used)
        self.kernel_names.append(f"{kind}:{instr.name}")

    def constant_global(self, instr: Instruction) -> ir.GlobalVariable:
        literal = instr.attrs["value"]
        key = (literal, instr.shape.dtype.name)
        if key not in self._constant_globals:
            data = storage_bytes(literal.array, instr.shape.dtype)
            self._constant_globals[key] = self._global(f"const.{instr.name}", data)
        return self._constant_globals[key]


class ProfileCounters:
    """Cycle counts per entry kernel in a NumPy array the JIT code adds to (debug only:
    the code holds the array's address, so it is never written to an object file)."""

    def __init__(self, kernels: int):
        self.counts = np.zeros(max(kernels, 1), np.uint64)
        self._next = 0

    def start(self, b: ir.IRBuilder) -> ir.Value:
        return b.call(self._counter(b.module), [])

    def stop(self, b: ir.IRBuilder, start: ir.Value) -> None:
        elapsed = b.sub(b.call(self._counter(b.module), []), start)
        slot = ir.Constant(I64, self.counts.ctypes.data + 8 * self._next).inttoptr(PTR)
        self._next += 1
        L.store(b, b.add(L.load(b, slot, I64), elapsed), slot)

    @staticmethod
    def _counter(module: ir.Module) -> ir.Function:
        fn = module.globals.get("llvm.readcyclecounter")
        if fn is None:
            fn = ir.Function(module, ir.FunctionType(I64, []), name="llvm.readcyclecounter")
        return fn


def kernel_profile(program: Program, seconds: float | None = None, top: int = 25) -> str:
    """A table of the profiled kernels, most expensive first: share of the counted
    cycles, and (given the wall `seconds` the counted calls took) milliseconds."""
    if program.kernel_cycles is None:
        raise ValueError(f"the program was compiled without {PROFILE_FLAG}=1: no kernel counts")
    cycles = program.kernel_cycles.astype(np.float64)
    total = max(cycles.sum(), 1.0)
    lines = [f"{'share':>6}  {'ms':>8}  kernel"]
    for k in np.argsort(-cycles)[:top]:
        ms = f"{seconds * 1e3 * cycles[k] / total:8.3f}" if seconds else " " * 8
        lines.append(f"{100 * cycles[k] / total:5.1f}%  {ms}  {program.profiled_kernels[k]}")
    return "\n".join(lines)


class ByteArray(ir.Constant):
    """An i8 array constant printed as c"\\xx..." through a NumPy table: llvmlite's own
    escaping takes about a second per 16 MB of constants."""
    _ESCAPES = np.array([list(f"\\{b:02x}".encode()) for b in range(256)], np.uint8)

    def _get_reference(self):
        raw = np.frombuffer(bytes(self.constant), np.uint8)
        return 'c"' + self._ESCAPES[raw].tobytes().decode("ascii") + '"'


def kernel_key(kind: str, comp: Computation):
    """What a kernel's code depends on: its kind and its computation up to names and
    source locations (two attention heads give one key; their kernels differ only in
    the pointers the entry passes)."""
    return (kind, computation_key(comp))


def computation_key(comp: Computation, memo: dict | None = None, leave_out=frozenset()) -> tuple:
    """`comp` as nested tuples, instructions by position (`leave_out`: instructions not
    to describe, e.g. what a GEMM reads through strided views)."""
    memo = {} if memo is None else memo
    tag = (id(comp), frozenset(id(i) for i in leave_out))
    if tag not in memo:
        position = {instr: k for k, instr in enumerate(comp.instructions)}
        memo[tag] = (tuple((i.opcode, shape_structure(i.shape), tuple(position[o] for o in i.operands),
                            _attrs_key(i, memo)) for i in comp.instructions if i not in leave_out),
                     position[comp.root])
    return memo[tag]


def _attrs_key(instr: Instruction, memo: dict) -> tuple:
    def value(v):
        if isinstance(v, Computation):
            return computation_key(v, memo)
        if isinstance(v, tuple):
            return tuple(value(x) for x in v)
        return v
    return tuple(sorted((name, value(v)) for name, v in instr.attrs.items()))


def as_computation(instr: Instruction) -> Computation:
    """A one-instruction computation computing `instr` from parameters (its operands)."""
    comp = Computation(f"{instr.name}.kernel")
    params = [comp.add(Instruction(f"{instr.name}.arg{k}", "parameter", [], o.shape, {"index": k}))
              for k, o in enumerate(instr.operands)]
    comp.root = comp.add(Instruction(instr.name, instr.opcode, params, instr.shape, instr.attrs, instr.locs))
    return comp


# ----------------------------------------------------------------------------- kernels' view

class KernelContext:
    """What a kernel emitter uses: the LLVM module, target facts, the entry builder at
    the kernel's place, private temporary memory, and the parallel dispatch."""

    def __init__(self, codegen: Codegen, instr: Instruction, temp: ir.Value, key=None):
        self.codegen = codegen
        self.instr = instr
        self.key = key if key is not None else object()      # unique: nothing to share
        self._functions = 0
        self.module = codegen.llvm
        self.target = codegen.target
        self.threads = codegen.threads
        self.mathlib = codegen.mathlib
        self.entry = codegen._b
        self._temp = temp
        self.temp_used = 0

    # ------------------------------------------------------------ naming, memory

    def name_hint(self, instr: Instruction | None = None) -> str:
        return (instr or self.instr).name

    def function(self, hint: str, args: list) -> tuple[ir.Function, ir.IRBuilder]:
        fn = ir.Function(self.module, ir.FunctionType(ir.VoidType(), args),
                         name=self.codegen.unique(f"tessel.{hint}"))
        fn.linkage = "internal"
        return fn, ir.IRBuilder(fn.append_basic_block("entry"))

    def temp(self, nbytes: int) -> ir.Value:
        """An entry pointer to `nbytes` of the kernel's private scratch (64-byte aligned)."""
        offset = self.temp_used
        self.temp_used += aligned(nbytes)
        return L.gep(self.entry, self._temp, I8, offset)

    def constant_provider(self, flat_shape=None) -> Callable:
        """instr -> Leaf reading a constant inside a fused computation from a private
        global (indexed flat when the kernel runs flat over `flat_shape`)."""
        def leaf(instr: Instruction) -> Leaf:
            g = self.codegen.constant_global(instr)
            flat = flat_shape is not None and instr.shape.rank > 0
            strides = [1] if flat else kernels_loop.row_major_strides(instr.shape.dims)
            return Leaf(g, instr.shape.dtype, strides)
        return leaf

    # ------------------------------------------------------------ vectorization

    def vectorizable(self, dry_emit: Callable, dims, width: int) -> bool:
        """Whether `dry_emit(builder, width, index)` -- the kernel's work at a vector of
        the last dim -- follows affine lanes everywhere (a dry run into a scratch module)."""
        if width == 1 or not dims:
            return False
        scratch = ir.Module()
        fn = ir.Function(scratch, ir.FunctionType(ir.VoidType(), [I64] * len(dims)), name="dry")
        b = ir.IRBuilder(fn.append_basic_block())
        index = [Ix(arg, 0, 1) for arg in fn.args[:-1]] + [Ix(fn.args[-1], 1, width)]
        try:
            dry_emit(b, width, index)
        except NotVectorizable:
            return False
        return True

    # ------------------------------------------------------------ running

    def reusable(self, make: Callable, key=None) -> ir.Function:
        """The next function this kernel emits: `make()` builds it, unless a kernel of
        the same structure (`kernel_key`) built it already -- then that one is reused.
        Kernels must ask for their functions in the same order every time. A `key`
        given names the function's code by itself (any kernel may share it)."""
        if key is None:
            key = (self.key, self._functions)
            self._functions += 1
        cache = self.codegen._kernel_functions
        if key not in cache:
            cache[key] = make()
        return cache[key]

    def run_units(self, hint: str, units: int, pointers: list, unit_cost: float,
                  body: Callable) -> None:
        """Define `void f(ptr ctx, i64 begin, i64 end)` doing units [begin, end) with
        `body(builder, ptrs, begin, end)` (ptrs: `pointers` as the function sees them),
        and call it from the entry: on the thread pool when the work is large enough."""
        if units <= 0:
            return

        def make():
            fn, b = self.function(hint, [PTR, I64, I64])
            ctx, begin, end = fn.args
            ptrs = [L.load(b, L.gep(b, ctx, PTR, k), PTR) for k in range(len(pointers))]
            body(b, ptrs, begin, end)
            b.ret_void()
            return fn

        self.call(self.reusable(make), pointers, units, unit_cost)

    def call(self, fn: ir.Function, pointers: list, units: int, unit_cost: float) -> None:
        e = self.entry
        ctx = L.alloca_once(e, ir.ArrayType(PTR, max(1, len(pointers))), name="ctx")
        for k, p in enumerate(pointers):
            L.store(e, p, L.gep(e, ctx, PTR, k))
        total = units * unit_cost
        if self.threads > 1 and units > 1 and total >= PARALLEL_MIN_COST:
            grain = max(1, math.ceil(kernels_loop.MIN_UNIT_COST / max(unit_cost, 1)))
            e.call(self._parallel_for(), [fn, ctx, L.const(units), L.const(grain)])
            self.codegen._uses_pool = True
        else:
            e.call(fn, [ctx, L.const(0), L.const(units)])

    def _parallel_for(self) -> ir.Function:
        fn = self.module.globals.get(PARALLEL_FOR)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(ir.VoidType(), [PTR, PTR, I64, I64]),
                             name=PARALLEL_FOR)
        return fn

    def run_nest(self, hint: str, nest: LoopNest, pointers: list, body: Callable,
                 element_cost: int) -> None:
        """Units = the outer dims (odometer) x blocks of the last dim; per unit
        `body(builder, ptrs, row_index, j0, j1)` with row_index None for a 0-d kernel."""
        digits = list(nest.outer) + ([nest.blocks] if nest.blocks > 1 else [])

        def units_body(b, ptrs, begin, end):
            with odometer(b, digits, begin, end) as index:
                row = [Ix(v, 0, 1) for v in index[:len(nest.outer)]]
                if nest.blocks > 1:
                    j0 = L.mul(b, index[-1], nest.block)
                    j1 = L.minimum(b, L.add(b, j0, nest.block), nest.inner)
                else:
                    j0, j1 = 0, nest.inner
                body(b, ptrs, None if nest.scalar else row, j0, j1)

        self.run_units(hint, nest.units, pointers, nest.block * element_cost, units_body)


class odometer:
    """`with odometer(b, sizes, begin, end) as index:` runs its body for each flat unit u
    in [begin, end), `index` = u's row-major digits over `sizes` (i64 values). The
    digits come from one div/mod chain at `begin`, then a branch-free increment."""

    def __init__(self, b: ir.IRBuilder, sizes, begin, end):
        self.b, self.sizes, self.begin, self.end = b, list(sizes), begin, end

    def __enter__(self):
        b, sizes = self.b, self.sizes
        self.slots = [L.alloca_once(b, I64, name=f"digit{k}") for k in range(len(sizes))]
        rest = self.begin
        for slot, stride in zip(self.slots, kernels_loop.row_major_strides(sizes)):
            L.store(b, b.udiv(rest, L.const(stride)) if stride > 1 else rest, slot)
            rest = b.urem(rest, L.const(stride)) if stride > 1 else L.const(0)
        self._loop = L.for_range(b, self.end, start=self.begin, name="unit", **kernels_loop.OUTER_LOOP)
        self._loop.__enter__()
        return [L.load(b, slot, I64) for slot in self.slots]

    def __exit__(self, *exc):
        if exc[0] is None:
            b = self.b
            carry = L.const(1)
            for slot, size in zip(reversed(self.slots), reversed(self.sizes)):
                value = L.add(b, L.load(b, slot, I64), carry)
                wrap = b.icmp_signed("==", value, L.const(size))
                L.store(b, b.select(wrap, L.const(0), value), slot)
                carry = b.zext(wrap, I64)
        return self._loop.__exit__(*exc)
