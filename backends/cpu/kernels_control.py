"""Control flow: while, conditional, call -- nested computations as native functions.

Design. Each computation a control-flow op runs (a while's condition and body, a
conditional's branches, a call's callee) is compiled, at the op's place, into an
internal function with the entry's own calling convention and its own buffer plan:

    void tessel.comp.<name>(void **args, void **results, void *scratch)

    args      one pointer per leaf of its parameters (tuple parameters flattened)
    results   one pointer per leaf of its root
    scratch   its plan's temporaries, then its kernels' private region

`NestedCodegen` is the entry's code generator (codegen.Codegen) pointed at that
computation: the same kernel table, the same LLVM module, math library and names,
constants in private globals. Its plan comes from buffer assignment run on the
computation alone (`plan_computation`, the computation's instruction order; the
pipeline fused it like the entry, compiler/fusion_utils.fusible_computations). Where
the plan aliases an output (a returned parameter or constant, a value returned twice)
the function copies it before returning -- the runtime's job for the entry.

The caller's kernel reserves the callee's scratch in its own private region (kernels
run one after another, and a computation never calls itself, so one region per call
site suffices: no heap allocation, no recursion) and calls it:

    while        state := init (the while's output buffers); loop: cond(state) -> pred
                 (one byte of scratch); if false stop; body(state) -> next; state :=
                 next. The body is planned with its state carried in place
                 (buffer_assignment, `carried`): a leaf it returns unchanged, or
                 updates through in-place writes after its last read (a scan's
                 dynamic_update_slice of the stacked outputs), is written straight
                 into the state; only the other leaves go through scratch buffers
                 copied back after the body, which keeps the body free to read its
                 parameters while it writes those results. Bytes copied per
                 iteration: `Program.loop_copy_bytes[while name]`.
    conditional  branch index clamped like the interpreter (pred: false -> 0, true -> 1;
                 an integer out of [0, N) -> the last branch); a switch calls the
                 branch, which writes the conditional's outputs directly
    call         the callee writes the call's outputs directly

Kernels inside nested computations may use the thread pool as the entry's do.
"""
from __future__ import annotations

from llvmlite import ir

from ...compiler.buffer_assignment import ARGUMENT, CONSTANT, OUTPUT, SCRATCH, Slice, aligned, plan_computation
from ...compiler.ir import Computation, Instruction
from . import loops as L
from .kernels_elementwise import I8, I32, I64, PTR, storage_type
from .kernels_gather import load_index, memcpy


class NestedModule:
    """What a Codegen reads of its module: a name and the computation it compiles."""

    def __init__(self, comp: Computation):
        self.name = comp.name
        self.entry = comp


def nested_function(parent, comp: Computation) -> tuple[ir.Function, int]:
    """Compile `comp` into the parent's LLVM module: (function, scratch bytes it needs)."""
    fn, scratch, _ = compile_nested(parent, comp)
    return fn, scratch


def compile_nested(parent, comp: Computation, carried: bool = False) -> tuple[ir.Function, int, frozenset]:
    """`nested_function`, and the state leaves the function updates in place.
    `carried`: `comp` is a while body, planned with its state leaves carried in place
    where possible (buffer_assignment); the caller passes one pointer as argument and
    result for those leaves."""
    from .codegen import PLUMBING, Codegen          # codegen imports this module for its tables

    class NestedCodegen(Codegen):
        def __init__(self):
            super().__init__(NestedModule(comp), plan_computation(comp, carried=carried), parent.target,
                             parent.threads, self_contained=True)
            # share the parent's module, math library, names and constant globals
            self.llvm, self.mathlib = parent.llvm, parent.mathlib
            self._names, self._constant_globals = parent._names, parent._constant_globals
            self.parent_codegen = getattr(parent, "parent_codegen", parent)     # the entry's (channels)

        def emit_function(self) -> ir.Function:
            check_nested(comp)
            fn = ir.Function(self.llvm, ir.FunctionType(ir.VoidType(), [PTR, PTR, PTR]),
                             name=self.unique(f"tessel.comp.{comp.name}"))
            fn.linkage = "internal"
            args, results, scratch = fn.args
            b = ir.IRBuilder(fn.append_basic_block("entry"))
            self._storage = {ARGUMENT: args, OUTPUT: results, SCRATCH: scratch, CONSTANT: self._constant_section()}
            self._b = b
            self._pointers = {}
            temp = L.gep(b, scratch, I8, aligned(self.plan.scratch_bytes))
            for instr in self.plan.order:
                if instr.opcode in PLUMBING or self.plan.is_alias(instr):
                    continue
                self._emit_kernel(instr, temp)
            for number, where in sorted(self.plan.output_aliases.items()):
                if number in self.plan.carried_in_place:      # the caller's result is the argument
                    continue
                destination = self.pointer(Slice(OUTPUT, number, where.size))
                memcpy(b, destination, self.pointer(where), where.size)
            b.ret_void()
            parent._uses_pool |= self._uses_pool
            parent.kernel_names.extend(f"{comp.name}/{k}" for k in self.kernel_names)
            return fn

    nested = NestedCodegen()
    fn = nested.emit_function()
    return fn, aligned(nested.plan.scratch_bytes) + nested.temp_bytes, nested.plan.carried_in_place


def check_nested(comp: Computation) -> None:
    """NotImplementedError naming the first op of `comp` the backend cannot lower."""
    from .codegen import FUSED_OPS, KERNEL_KIND, PLUMBING, _check, _check_bodies
    for instr in comp.instructions:
        if instr.opcode == "fusion":
            for inner in instr.attrs["calls"].instructions:
                _check(inner, FUSED_OPS, f"a {instr.attrs['kind']} fusion in {comp.name}")
                _check_bodies(inner)
        else:
            _check(instr, set(KERNEL_KIND) | PLUMBING, f"computation {comp.name}")
            _check_bodies(instr)


def pointer_array(b: ir.IRBuilder, pointers: list, name: str) -> ir.Value:
    """A stack array holding `pointers` (filled where the builder is)."""
    array = L.alloca_once(b, ir.ArrayType(PTR, max(1, len(pointers))), name=name)
    for k, p in enumerate(pointers):
        L.store(b, p, L.gep(b, array, PTR, k))
    return array


def split_leaves(instr: Instruction, flat: list) -> list[list]:
    """The flat operand pointers of `instr` grouped by operand (one per leaf)."""
    groups, k = [], 0
    for operand in instr.operands:
        n = len(operand.shape.leaves())
        groups.append(flat[k:k + n])
        k += n
    return groups


# ----------------------------------------------------------------------------- while

def emit_while(kc, comp: Computation, outputs: list, operands: list) -> None:
    loop = comp.root
    sizes = [leaf.nbytes for leaf in loop.shape.leaves()]
    e = kc.entry
    for out, init, n in zip(outputs, operands, sizes):
        memcpy(e, out, init, n)
    cond, cond_scratch = nested_function(kc.codegen, loop.attrs["condition"])
    body, body_scratch, in_place = compile_nested(kc.codegen, loop.attrs["body"], carried=True)
    scratch = kc.temp(max(cond_scratch, body_scratch, 1))     # they run one after the other
    pred = kc.temp(1)
    # Leaves the body updates in place are their own next value; the others go through
    # a scratch buffer, copied back after the body (it may still read the old value).
    copied = [k for k in range(len(sizes)) if k not in in_place]
    nexts = {k: kc.temp(max(sizes[k], 1)) for k in copied}
    entry_codegen = getattr(kc.codegen, "parent_codegen", kc.codegen)
    entry_codegen.loop_copy_bytes[loop.name] = sum(sizes[k] for k in copied)
    state = pointer_array(e, outputs, "while.state")
    cond_results = pointer_array(e, [pred], "while.pred")
    body_results = pointer_array(e, [nexts.get(k, out) for k, out in enumerate(outputs)], "while.next")

    header = e.append_basic_block("while.cond")
    step = e.append_basic_block("while.body")
    done = e.append_basic_block("while.end")
    e.branch(header)
    e.position_at_end(header)
    e.call(cond, [state, cond_results, scratch])
    e.cbranch(e.icmp_unsigned("!=", L.load(e, pred, I8), ir.Constant(I8, 0)), step, done)
    e.position_at_end(step)
    e.call(body, [state, body_results, scratch])
    for k in copied:
        memcpy(e, outputs[k], nexts[k], sizes[k])
    e.branch(header)
    e.position_at_end(done)


# ----------------------------------------------------------------------------- conditional

def emit_conditional(kc, comp: Computation, outputs: list, operands: list) -> None:
    cond = comp.root
    branches = cond.attrs["branch_computations"]
    groups = split_leaves(cond, operands)
    e = kc.entry
    index_type = cond.operands[0].shape.dtype
    if index_type.is_pred:
        index = e.zext(L.load(e, groups[0][0], storage_type(index_type)), I64)
        index = e.select(e.icmp_unsigned("!=", index, L.const(0)), L.const(1), L.const(0))
    else:
        index = load_index(e, groups[0][0], index_type, 0)
    last = L.const(len(branches) - 1)
    in_range = e.and_(e.icmp_signed(">=", index, L.const(0)), e.icmp_signed("<", index, last))
    index = e.trunc(e.select(in_range, index, last), I32)

    compiled = [nested_function(kc.codegen, branch) for branch in branches]
    scratch = kc.temp(max(1, *(n for _, n in compiled)))       # one branch runs
    results = pointer_array(e, outputs, "cond.results")
    args = [pointer_array(e, group, f"cond.args{k}") for k, group in enumerate(groups[1:])]
    done = e.append_basic_block("cond.end")
    switch = e.switch(index, done)
    for k, (fn, _) in enumerate(compiled):
        block = e.append_basic_block(f"cond.branch{k}")
        switch.add_case(ir.Constant(I32, k), block)
        e.position_at_end(block)
        e.call(fn, [args[k], results, scratch])
        e.branch(done)
    e.position_at_end(done)


# ----------------------------------------------------------------------------- call

def emit_call(kc, comp: Computation, outputs: list, operands: list) -> None:
    call = comp.root
    fn, scratch_bytes = nested_function(kc.codegen, call.attrs["to_apply"])
    e = kc.entry
    scratch = kc.temp(max(1, scratch_bytes))
    e.call(fn, [pointer_array(e, operands, "call.args"), pointer_array(e, outputs, "call.results"), scratch])
