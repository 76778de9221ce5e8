"""Systolic code generation: one optimized module -> one instruction stream + host image.

    program = compile_program(module, config)      # SystolicProgram (program.py)

The entry computation runs in schedule order. Every value lives in host memory
(memory.py); each instruction is one of

    storage     parameter, constant: already in the image
    alias       tuple / get_tuple_element of the root
    view        broadcast_in_dim, slice, transpose, reshape: re-addressing, no code
                (views.py); consumers read the operand through the view
    epilogue    scale / bias / activation following a dot: done by the dot's ACTIVATE
    row group   softmax / layer norm chains: one row kernel (rows.py) at the last member
    inlined     single-use elementwise values: computed in their user's kernel
    kernel      emits instructions: dot_general and convolution on the matrix unit
                (gemm.py, conv.py);
                elementwise ops, reductions, reduce_window, copies on the vector unit
                and DMA (vector.py)

`LOWERING` is the table of kernels keyed by opcode, `VIEWS` the table of view rules.
Ops with neither raise `UnsupportedOp` naming the op and the user's source line before
anything is emitted (`check_supported`); docs/systolic-backend.md lists the op set.
Root leaves that are not kernels written straight into their output slot (a returned
parameter, a view, a value returned twice) are copied there at the end.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...compiler import dtypes
from ...compiler.ir import Instruction, Module
from ...compiler.rewrite import splat_value
from ...runtime.systolic.config import SystolicConfig
from . import conv, gemm, rows, vector
from .emitter import Emitter, UBAllocator
from .memory import HostImage, Temporary, pack
from .program import SystolicProgram
from .views import View, ViewError


class UnsupportedOp(NotImplementedError):
    """An op (or dtype) the systolic machine cannot run."""


# ----------------------------------------------------------------------------- views

def _broadcast(view: View, instr: Instruction) -> View:
    return view.broadcast(instr.shape.dims, instr.attrs["broadcast_dimensions"])


def _slice(view: View, instr: Instruction) -> View:
    a = instr.attrs
    strides = a.get("strides") or (1,) * len(a["start_indices"])
    return view.slice(a["start_indices"], a["limit_indices"], strides)


def _transpose(view: View, instr: Instruction) -> View:
    return view.transpose(instr.attrs["permutation"])


def _reshape(view: View, instr: Instruction) -> View:
    return view.reshape(instr.shape.dims)


def _same(view: View, instr: Instruction) -> View:
    return view


# opcode -> rule(view of the operand, instr) -> view of the result (ViewError: copy instead)
VIEWS = {"broadcast_in_dim": _broadcast, "slice": _slice, "transpose": _transpose,
         "reshape": _reshape, "copy": _same}


def _is_identity_convert(instr: Instruction) -> bool:
    return instr.opcode == "convert" and instr.operands[0].shape.dtype == instr.shape.dtype


# ----------------------------------------------------------------------------- kernels

MATRIX_OPS = ("dot_general", "convolution")    # run on the array, with an epilogue
LOWERING = {
    "dot_general": gemm.lower_dot,
    "convolution": conv.lower_convolution,
    "reduce": vector.lower_reduce,
    "reduce_window": vector.lower_reduce_window,
    "concatenate": vector.lower_concatenate,
    "pad": vector.lower_pad,
    **{op: vector.lower_elementwise for op in vector.ELEMENTWISE},
    **{op: vector.lower_copy for op in VIEWS},
}
STORAGE_OPS = ("parameter", "constant")
ALIAS_OPS = ("tuple", "get_tuple_element")
VALUE_DTYPES = (dtypes.f32, dtypes.pred)      # pred: 1.0 / 0.0 in f32 words, internal only


def supported_ops() -> list[str]:
    return sorted(set(LOWERING) | set(STORAGE_OPS) | set(ALIAS_OPS))


def _unsupported(instr: Instruction, why: str) -> UnsupportedOp:
    return UnsupportedOp(f"systolic backend: {instr.opcode} ({instr.name}, from {instr.loc_text}) "
                         f"cannot run on the machine: {why}. Supported ops: {', '.join(supported_ops())} "
                         f"(docs/systolic-backend.md)")


def config_problem(config: SystolicConfig) -> str | None:
    """Why no float program compiles for `config`, or None."""
    if config.dtype == "int8":
        return ("config.dtype='int8' needs a quantized model; the compiler lowers float "
                "programs (use dtype 'bf16' or 'f32')")
    return None


def unsupported_reason(instr: Instruction, config: SystolicConfig | None = None) -> str | None:
    """Why the machine cannot run `instr` (an entry instruction), or None when it can.

    The one source of truth for what the systolic machine runs: the backend refuses a
    program with such an instruction (`check_supported`), and placement
    (compiler/passes/placement.py) keeps such instructions on the CPU."""
    config = config or SystolicConfig()
    problem = config_problem(config)
    if problem:
        return problem
    if instr.opcode not in LOWERING and instr.opcode not in STORAGE_OPS + ALIAS_OPS:
        return "no lowering for this op"
    for leaf in instr.shape.leaves():
        if leaf.dtype not in VALUE_DTYPES:
            return (f"its result is {leaf.dtype.name}; the machine's memories hold f32 words "
                    f"(f32 programs, pred masks internally)")
    if instr.opcode == "parameter" and instr.shape.is_tuple:
        return "tuple-shaped parameters are not supported; pass the leaves"
    if instr.opcode == "parameter" and instr.shape.dtype is not dtypes.f32:
        return "program arguments must be f32"
    check = vector.CHECKS.get(instr.opcode)
    return check(instr) if check else None


def boundary_reason(value: Instruction) -> str | None:
    """Why `value` cannot enter or leave a systolic program (as an argument or a
    result), or None: programs take and return f32 arrays."""
    if value.shape.is_tuple or value.shape.dtype is not dtypes.f32:
        return f"program arguments and results must be f32 arrays, and {value.name} is {value.shape}"
    return None


def check_supported(module: Module, config: SystolicConfig) -> None:
    """UnsupportedOp for the first instruction the machine cannot run, before any code."""
    problem = config_problem(config)
    if problem:
        raise UnsupportedOp(f"systolic backend: {problem}")
    for instr in module.entry.instructions:
        problem = unsupported_reason(instr, config)
        if problem:
            raise _unsupported(instr, problem)
    for leaf in module.entry.root.operands:
        if boundary_reason(leaf):
            raise _unsupported(leaf, "program results must be f32 arrays")


# ----------------------------------------------------------------------------- the lowering

class Lowering:
    """The state of one program's code generation, shared by the kernel rules."""

    def __init__(self, module: Module, config: SystolicConfig):
        self.module, self.config = module, config
        self.comp = module.entry
        self.order = list(self.comp.instructions)
        self.step = {instr: k for k, instr in enumerate(self.order)}
        self.lanes = config.lanes
        self.emitter = Emitter(config)
        self.ub = UBAllocator(config.ub_rows)
        self.image = HostImage()
        self.address: dict[Instruction, int] = {}         # values with storage
        self.views: dict[Instruction, View] = {}          # every array value's view
        self.view_source: dict[Instruction, Instruction] = {}   # view op -> the stored value it reads
        self.epilogues: dict[Instruction, gemm.Epilogue] = {}   # dot -> its fused epilogue
        self.fused: set[Instruction] = set()              # epilogue ops after a dot (no code)
        self.inlined: set[Instruction] = set()            # elementwise ops computed in their user's kernel
        self.grouped: dict[Instruction, rows.RowGroup] = {}     # row kernels' members
        self.code_step: dict[Instruction, int] = {}       # where a kernel's code goes
        self.root_leaves = list(self.comp.root.operands)

    # ------------------------------------------------------------ placement

    def place(self) -> None:
        """Epilogues join their dots; the dot's code moves to the epilogue's end, where
        every operand of the chain is defined."""
        users = self._users = self.comp.users()
        for instr in self.order:
            self.code_step[instr] = self.step[instr]
        for instr in self.order:
            if instr.opcode in MATRIX_OPS:
                epilogue = gemm.match_epilogue(self, instr, users)
                self.epilogues[instr] = epilogue
                self.fused.update(epilogue.members[1:])
                self.code_step[instr] = self.step[epilogue.end]
        for group in rows.row_groups(self, users):
            self.grouped.update({m: group for m in group.members})
        self.inlined = vector.inlined_producers(self, users)

    def stored(self, instr: Instruction) -> bool:
        """Whether the value has storage of its own in host memory."""
        if instr.opcode in ALIAS_OPS or instr in self.view_source or instr in self.inlined:
            return False
        if instr in self.grouped:           # a row kernel stores what others read
            group = self.grouped[instr]
            return instr in self.root_leaves or any(u not in group.kinds for u in self._users.get(instr, ()))
        if instr.opcode in MATRIX_OPS:
            return self.epilogues[instr].end is instr
        if instr in self.fused:
            return any(e.end is instr for e in self.epilogues.values())
        return True

    def emits_code(self, instr: Instruction) -> bool:
        if instr in self.grouped:
            return instr is self.grouped[instr].last
        if not instr.shape.is_tuple and instr.shape.size == 0:
            return False        # nothing to compute or move (the pipeline folds most of these)
        return (instr.opcode not in STORAGE_OPS + ALIAS_OPS and instr not in self.fused
                and instr not in self.view_source and instr not in self.inlined)

    # ------------------------------------------------------------ views and storage

    def view_of(self, instr: Instruction) -> View:
        """How to read `instr`'s value: its storage, or a view of another value's."""
        return self.views[instr]

    def source_of(self, instr: Instruction) -> Instruction:
        return self.view_source.get(instr, instr)

    def resolve_views(self, address_of) -> None:
        """Views of every value in schedule order: view ops from their operand's view (a
        rule that fails makes the op a copy kernel), the rest at `address_of(instr)`."""
        self.views, self.view_source = {}, {}
        for instr in self.order:
            if instr.opcode in ALIAS_OPS or instr.shape.is_tuple:
                continue
            rule = VIEWS.get(instr.opcode) or (_same if _is_identity_convert(instr) else None)
            operand = instr.operands[0] if instr.operands else None
            if rule is not None and operand in self.views and instr not in self.grouped:
                try:
                    self.views[instr] = rule(self.views[operand], instr)
                    self.view_source[instr] = self.source_of(operand)
                    continue
                except ViewError:
                    pass
            if self.stored(instr):
                esize = 2 if instr in getattr(self, "matrix_bf16", ()) else 4
                self.views[instr] = View.row_major(address_of(instr), instr.shape.dims, esize)

    # ------------------------------------------------------------ host memory

    def plan_memory(self) -> None:
        self.resolve_views(lambda instr: 0)         # decides views vs copies; strides only
        self.matrix_bf16 = self._matrix_only_values() if self.config.dtype == "bf16" else set()
        image = self.image
        for p in self.comp.parameters:
            fmt = "bf16" if p in self.matrix_bf16 else "f32"
            image.arguments.append(image.region(p.shape.size * (2 if fmt == "bf16" else 4)))
            image.argument_formats.append(fmt)
            self.address[p] = image.arguments[-1]
        for k, leaf in enumerate(self.root_leaves):
            image.outputs.append(image.region(leaf.shape.size * 4))
            if leaf not in self.address and self.writes_output(leaf):
                self.address[leaf] = image.outputs[-1]
        for instr in self.order:
            if instr.opcode == "constant":
                fmt = "bf16" if instr in self.matrix_bf16 else "f32"
                self.address[instr] = image.add_constant(instr.attrs["value"].array, fmt,
                                                         self.config.bf16_rounding)
        self.zeros = image.add_constant(vector.zeros_row(self.lanes))
        temporaries = self._temporaries()
        image.size = pack(temporaries, image.size)
        for t in temporaries:
            self.address[t.key] = t.address
        self.resolve_views(lambda instr: self.address[instr])

    def _matrix_only_values(self) -> set[Instruction]:
        """Values only the matrix unit reads (dot / convolution operands): memory.py
        stores them bf16, rounded as MATMUL and LOAD_W would round them."""
        uses: dict[Instruction, set[str]] = {}
        for instr in self.order:
            if self.emits_code(instr):
                for k, operand in enumerate(self.reads(instr)):
                    role = "matrix" if instr.opcode in MATRIX_OPS and k < 2 else "other"
                    uses.setdefault(self.source_of(operand), set()).add(role)
        for leaf in self.root_leaves:
            uses.setdefault(self.source_of(leaf), set()).add("other")
        return {v for v, roles in uses.items() if roles == {"matrix"} and self.stored(v)}

    def writes_output(self, leaf: Instruction) -> bool:
        """A root leaf its kernel writes straight into its output slot."""
        return leaf.opcode not in STORAGE_OPS and self.stored(leaf)

    def _temporaries(self) -> list[Temporary]:
        """Every stored kernel result that is not an output, with its live range."""
        last_read: dict[Instruction, int] = {}
        for instr in self.order:
            if not self.emits_code(instr):
                continue
            at = self.code_step[instr]
            for operand in self.reads(instr):
                source = self.source_of(operand)
                last_read[source] = max(last_read.get(source, -1), at)
        for leaf in self.root_leaves:           # copied into its slot at the very end
            source = self.source_of(leaf)
            last_read[source] = len(self.order)
        temps = []
        for instr in self.order:
            if instr in self.address or instr.opcode in STORAGE_OPS or not self.stored(instr):
                continue
            start = self.code_step.get(self._writer(instr), self.step[instr])
            esize = 2 if instr in self.matrix_bf16 else 4
            temps.append(Temporary(instr, instr.shape.size * esize, start, max(start, last_read.get(instr, start))))
        return temps

    def _writer(self, instr: Instruction) -> Instruction:
        for dot, epilogue in self.epilogues.items():
            if epilogue.end is instr:
                return dot
        return instr

    def reads(self, instr: Instruction) -> list[Instruction]:
        """The values `instr`'s code reads (a dot reads its epilogue's operands too)."""
        if instr in self.grouped:
            return self.grouped[instr].inputs()
        operands = list(instr.operands)
        if instr.opcode in MATRIX_OPS:
            operands += self.epilogues[instr].extra_operands
        expanded = []
        for o in operands:                  # an inlined producer's inputs are read here
            expanded += self.reads(o) if o in self.inlined else [o]
        return [o for o in expanded if not o.shape.is_tuple]

    # ------------------------------------------------------------ code

    def output_of(self, instr: Instruction) -> Instruction:
        """The value whose storage a kernel writes (a dot writes its epilogue's end)."""
        if instr.opcode in MATRIX_OPS:
            return self.epilogues[instr].end
        return instr

    def run(self) -> SystolicProgram:
        self.place()
        self.plan_memory()
        for instr in sorted(self.order, key=lambda i: (self.code_step[i], self.step[i])):
            if self.emits_code(instr):
                self.emitter.origin = instr.name
                if instr in self.grouped:
                    rows.lower_row_group(self, self.grouped[instr])
                else:
                    LOWERING[instr.opcode](self, instr)
        self.emitter.origin = "outputs"
        self._copy_outputs()
        return SystolicProgram(self.config, self.emitter.finish(), self.image,
                               name=self.module.name, ub_peak_rows=self.ub.peak,
                               origins=self.emitter.origins,
                               argument_shapes=[p.shape.dims for p in self.comp.parameters],
                               output_shapes=[leaf.shape.dims for leaf in self.root_leaves])

    def _copy_outputs(self) -> None:
        written = set()
        for k, leaf in enumerate(self.root_leaves):
            slot = self.image.outputs[k]
            if leaf.shape.size == 0:
                continue
            if leaf in written or self.address.get(leaf) != slot:
                vector.copy(self, self.view_of(leaf), View.row_major(slot, leaf.shape.dims))
            written.add(leaf)

    def splat(self, instr: Instruction):
        """The scalar every element of `instr` holds, when it is a compile-time splat."""
        value = splat_value(instr)
        return None if value is None else float(value)


def compile_program(module: Module, config: SystolicConfig | None = None) -> SystolicProgram:
    config = config or SystolicConfig()
    check_supported(module, config)
    return Lowering(module, config).run()
