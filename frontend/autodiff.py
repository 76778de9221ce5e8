"""Reverse-mode autodiff as a transformation of the traced IR.

`grad(f)(x)` traces f into a child computation, *inlines* it into the current trace
(forward pass) and then walks its instructions backwards, asking the rule table
(frontend/vjp_rules.py) for each one's operand cotangents (backward pass). Every rule
emits ordinary IR through the tracing machinery, so:

- under `jit`, the gradient is part of the traced program (one module, any backend);
- outside any trace, the whole thing runs through the eager path on the interpreter;
- the gradient program is differentiable again: grad(grad(f)) just works.

Structural ops are handled here: `tuple` / `get_tuple_element` become Python lists,
`call` / `fusion` are linearized recursively, `conditional` differentiates each branch
inside a new conditional, and a `while` with a static trip count (fori_loop with int
bounds, scan) saves its per-iteration state in the forward pass and runs a reversed
loop of the body's VJP in the backward pass.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..compiler import ops
from ..compiler.ir import Instruction, Shape, TupleShape
from ..runtime import pytree
from . import control_flow, core, device_scope, vjp_rules
from .core import Tracer, lift
from .errors import TesselError, where
from .vjp_rules import VJP_RULES, Eqn, not_differentiable, zeros

Value = object   # a Tracer, or a list of Values standing for a tuple


# ----------------------------------------------------------------------------- values

def materialize(value: Value) -> Tracer:
    """A tracer for `value` (lists become tuple instructions)."""
    if isinstance(value, list):
        return core.current_context().emit("tuple", [materialize(v) for v in value])
    return value


def element(value: Value, index: int) -> Value:
    if isinstance(value, list):
        return value[index]
    return core.current_context().emit("get_tuple_element", [value], {"index": index})


def as_list(value: Value) -> list:
    """The elements of a tuple-valued value."""
    if isinstance(value, list):
        return value
    return [element(value, i) for i in range(len(value.aval.elements))]


def has_float(shape) -> bool:
    return any(leaf.dtype.is_float for leaf in shape.leaves())


def add_cotangents(a, b):
    if a is None:
        return b
    if b is None:
        return a
    if isinstance(a, list) or isinstance(b, list):
        return [add_cotangents(x, y) for x, y in zip(as_list(a), as_list(b))]
    return vjp_rules.add(a, b)


def is_zero(ct) -> bool:
    return ct is None or isinstance(ct, list) and all(is_zero(c) for c in ct)


def zeros_like_shape(shape) -> Value:
    if isinstance(shape, TupleShape):
        return [zeros_like_shape(s) for s in shape.elements]
    return zeros(shape)


def instantiate(ct, shape) -> Value:
    """A cotangent with explicit zeros where it was None."""
    if ct is None:
        return zeros_like_shape(shape)
    if isinstance(shape, TupleShape):
        return [instantiate(c, s) for c, s in zip(as_list(ct), shape.elements)]
    return ct


# ----------------------------------------------------------------------------- linearizing

FORWARD_RULES: dict[str, Callable] = {}   # opcode -> rule(lin, instr, values, active) -> (value, residual)


def forward_rule(opcode: str):
    def register(rule):
        FORWARD_RULES[opcode] = rule
        return rule
    return register


class Linearized:
    """Instructions of a computation replayed in the current trace, ready to run backwards.

    `params[i]` takes the value `args[i]`; those with `active[i]` are the inputs we
    differentiate with respect to. An instruction is active when one of its operands is
    and its result has a float part: only those are differentiated.
    """

    def __init__(self, instructions: Sequence[Instruction], params: Sequence[Instruction],
                 args: Sequence[Value], active: Sequence[bool], outputs: Sequence[Instruction]):
        self.params = list(params)
        self.env: dict[Instruction, Value] = dict(zip(params, args))
        self.active = {p for p, a in zip(params, active) if a and has_float(p.shape)}
        self.eqns: list[Eqn] = []
        for instr in instructions:
            if instr.opcode != "parameter":
                self._forward(instr)
        self.output_instrs = list(outputs)
        self.outputs = [self.env[o] for o in outputs]

    def _forward(self, instr: Instruction) -> None:
        values = [self.env[o] for o in instr.operands]
        flags = [o in self.active for o in instr.operands]
        is_active = any(flags) and has_float(instr.shape)
        rule = FORWARD_RULES.get(instr.opcode, reemit_rule)
        out, residual = rule(self, instr, values, is_active)
        self.env[instr] = out
        if is_active:
            self.active.add(instr)
            self.eqns.append(Eqn(instr, values, out, flags, residual))

    def backward(self, output_cts: Sequence) -> list:
        """Cotangents of the parameters given cotangents of the outputs (None = zero)."""
        cts: dict[Instruction, object] = {}

        def accumulate(instr, ct):
            if instr in self.active and not is_zero(ct):
                cts[instr] = add_cotangents(cts.get(instr), ct)

        for instr, ct in zip(self.output_instrs, output_cts):
            accumulate(instr, ct)
        for eqn in reversed(self.eqns):
            ct = cts.pop(eqn.instr, None)
            if is_zero(ct):
                continue
            rule = VJP_RULES.get(eqn.instr.opcode)
            if rule is None:
                reason = vjp_rules.NON_DIFFERENTIABLE.get(eqn.instr.opcode, "no VJP rule")
                raise not_differentiable(f"cannot differentiate through {eqn.instr.opcode} "
                                         f"({reason}) at {eqn.instr.loc_text}")
            # the gradient runs where the op runs (TF's colocate_gradients_with_ops)
            with device_scope.device(eqn.instr.attrs.get(ops.DEVICE_ATTR)):
                operand_cts = list(rule(ct, eqn))
            for operand, operand_ct in zip(eqn.instr.operands, operand_cts):
                accumulate(operand, operand_ct)
        return [cts.get(p) for p in self.params]


def reemit_rule(lin: Linearized, instr: Instruction, values, active):
    """The default forward: the same instruction on the current trace's values."""
    ctx = core.current_context()
    declared = instr.shape if ops.get(instr.opcode).result_given else None
    out = ctx.emit(instr.opcode, [materialize(v) for v in values], instr.attrs, declared)
    if instr.locs:
        out.instr.locs = instr.locs
    return out, None


def linearize_computation(comp, args: Sequence[Value], active: Sequence[bool]) -> Linearized:
    return Linearized(comp.instructions, comp.parameters, args, active, [comp.root])


def inline(comp, args: Sequence[Value]) -> Value:
    """comp's root value, its instructions replayed in the current trace."""
    return linearize_computation(comp, args, [False] * len(args)).outputs[0]


# ----------------------------------------------------------------------------- structural ops

@forward_rule("tuple")
def _tuple_forward(lin, instr, values, active):
    return list(values), None


@forward_rule("get_tuple_element")
def _gte_forward(lin, instr, values, active):
    return element(values[0], instr.attrs["index"]), None


def _tuple_vjp(ct, eqn):
    return as_list(ct)


def _gte_vjp(ct, eqn):
    n = len(eqn.instr.operands[0].shape.elements)
    cts = [None] * n
    cts[eqn.attrs["index"]] = ct
    return [cts]


VJP_RULES["tuple"] = _tuple_vjp
VJP_RULES["get_tuple_element"] = _gte_vjp


def _called_forward(attr: str):
    def rule(lin, instr, values, active):
        if not active:
            return reemit_rule(lin, instr, values, active)
        inner = linearize_computation(instr.attrs[attr], values,
                                      [o in lin.active for o in instr.operands])
        return inner.outputs[0], inner
    return rule


def _called_vjp(ct, eqn):
    return eqn.residual.backward([ct])


for _opcode, _attr in (("call", "to_apply"), ("fusion", "calls")):
    FORWARD_RULES[_opcode] = _called_forward(_attr)
    VJP_RULES[_opcode] = _called_vjp


# ----------------------------------------------------------------------------- conditional

def _conditional_vjp(ct, eqn):
    """A conditional on the same index whose branch i re-runs branch i's forward and its
    VJP; it returns cotangents for every branch's operands (zeros for the others)."""
    index, *branch_args = eqn.operands
    comps = eqn.attrs["branch_computations"]
    arg_leaves = [as_list(v) for v in branch_args]
    ct_leaves = as_list(instantiate(ct, eqn.instr.shape))
    float_slots = [[j for j, leaf in enumerate(leaves) if leaf.aval.dtype.is_float]
                   for leaves in arg_leaves]
    sizes = [len(leaves) for leaves in arg_leaves]
    offsets = np.cumsum([0] + sizes).tolist()

    def branch(i):
        def run(*flat):
            args = list(flat[offsets[i]:offsets[i + 1]])
            cts = list(flat[offsets[-1]:])
            lin = linearize_computation(comps[i], [args], [True])
            grads = as_list(instantiate(lin.backward([cts])[0], comps[i].parameters[0].shape))
            out = []
            for b, slots in enumerate(float_slots):
                for j in slots:
                    out.append(grads[j] if b == i else zeros(arg_leaves[b][j].aval))
            return out
        return run

    flat_args = [leaf for leaves in arg_leaves for leaf in leaves] + ct_leaves
    results = iter(control_flow._conditional(index, [branch(i) for i in range(len(comps))],
                                             tuple(flat_args)))
    operand_cts = []
    for leaves, slots in zip(arg_leaves, float_slots):
        cts = [None] * len(leaves)
        for j in slots:
            cts[j] = next(results)
        operand_cts.append(cts)
    return [None] + operand_cts


VJP_RULES["conditional"] = _conditional_vjp


# ----------------------------------------------------------------------------- while (static trip count)

def _loop_state_kinds(body) -> list[str]:
    """Per state element, what the reverse loop needs of its per-iteration values:
    'invariant' (passed through unchanged: the initial value will do), 'accumulator'
    (only written by dynamic_update_slice, e.g. scan's stacked ys: its value never
    enters a VJP rule, zeros will do) or 'saved' (stacked in the forward loop)."""
    param = body.parameters[0]
    users: dict[Instruction, list[Instruction]] = body.users()
    reads: dict[int, list[Instruction]] = {}
    for instr in body.instructions:
        if instr.opcode == "get_tuple_element" and instr.operands[0] is param:
            reads.setdefault(instr.attrs["index"], []).append(instr)
    root = body.root
    kinds = []
    for j, out in enumerate(root.operands):
        mine = reads.get(j, [])
        if out in mine:
            kinds.append("invariant")
        elif (out.opcode == "dynamic_update_slice" and out.operands[0] in mine
              and all(users.get(r, []) in ([], [out]) for r in mine)
              and out.operands[1] not in mine):
            kinds.append("accumulator")
        else:
            kinds.append("saved")
    return kinds


@forward_rule("while")
def _while_forward(lin, instr, values, active):
    if not active:
        return reemit_rule(lin, instr, values, active)
    n = instr.attrs["trip_count"]
    if n is None:
        raise not_differentiable(
            f"cannot differentiate a while_loop whose trip count is only known at run time "
            f"(loop at {instr.loc_text}): reverse mode must know how many iterations to save. "
            f"Use tessel.lax.fori_loop with Python int bounds or tessel.lax.scan")
    body = instr.attrs["body"]
    state = as_list(values[0])
    if any(isinstance(s.aval, TupleShape) for s in state):
        raise not_differentiable("cannot differentiate a while loop with nested tuples in its state")
    kinds = _loop_state_kinds(body)
    saved = [j for j, kind in enumerate(kinds) if kind == "saved"]
    stacks = [zeros(Shape(state[j].aval.dtype, (n,) + state[j].aval.dims)) for j in saved]

    def step(k, carry):
        leaves, stacks = carry
        stacks = [control_flow._leading_update(core.current_context(), s, leaves[j], k)
                  for s, j in zip(stacks, saved)]
        return as_list(inline(body, [list(leaves)])), stacks

    final, stacks = control_flow.fori_loop(0, n, step, (state, stacks))
    return list(final), (state, kinds, dict(zip(saved, stacks)), n)


def _while_vjp(ct, eqn):
    state, kinds, stacks, n = eqn.residual
    body = eqn.attrs["body"]
    floats = [j for j, s in enumerate(state) if s.aval.dtype.is_float]
    ct_list = as_list(instantiate(ct, eqn.instr.shape))

    def step(r, carry):
        ctx = core.current_context()
        k = ctx.emit("subtract", [lift(control_flow.np_index(n - 1)), r])
        leaves = []
        for j, kind in enumerate(kinds):
            if kind == "saved":
                leaves.append(control_flow._leading_slice(ctx, stacks[j], k))
            elif kind == "invariant":
                leaves.append(state[j])
            else:
                leaves.append(zeros(state[j].aval))
        lin = linearize_computation(body, [leaves], [True])
        full = [None] * len(state)
        for j, c in zip(floats, carry):
            full[j] = c
        grads = as_list(instantiate(lin.backward([full])[0], body.parameters[0].shape))
        return [grads[j] for j in floats]

    carried = control_flow.fori_loop(0, n, step, [ct_list[j] for j in floats])
    out = [None] * len(state)
    for j, c in zip(floats, carried):
        out[j] = c
    return [out]


VJP_RULES["while"] = _while_vjp


# ----------------------------------------------------------------------------- public API

class GradError(TesselError, TypeError):
    """grad/vjp called on something it cannot differentiate (bad argnums, outputs, dtypes)."""


def _error(message: str) -> GradError:
    return GradError(f"{where()}: {message}")


def _argnums_tuple(argnums, nargs: int) -> tuple[int, ...]:
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    if not nums or not all(isinstance(i, int) and not isinstance(i, bool) for i in nums):
        raise _error(f"argnums must be an int or a non-empty tuple of ints, given {argnums!r}")
    for i in nums:
        if not -nargs <= i < nargs:
            raise _error(f"argnums {argnums!r} out of range: the function was called with "
                         f"{nargs} positional argument(s)")
    return tuple(i % nargs for i in nums)


def _check_inexact(leaves, paths, fname: str) -> None:
    for leaf, path in zip(leaves, paths):
        dt = core.aval_of(leaf).dtype
        if not dt.is_float:
            raise _error(f"{fname} requires real-valued (floating point) inputs, but argument "
                         f"{path} has dtype {dt.name}. Integer and boolean inputs have no "
                         f"gradient: leave them out of argnums")


def linearize_function(fun: Callable, leaves: list, rebuild: Callable) -> tuple[Linearized, object]:
    """Trace `fun(*rebuild(flat))` with the float leaves as inputs and inline it here."""
    primals = [lift(x) for x in leaves]

    def flat_fun(*flat):
        return fun(*rebuild(list(flat)))

    body = control_flow.trace_body(flat_fun, [p.aval for p in primals], "linearize")
    captured = body.ctx.captures
    params = [p.instr for p in body.params] + [inner.instr for _, inner in captured]
    args = primals + [outer for outer, _ in captured]
    active = [True] * len(primals) + [False] * len(captured)
    lin = Linearized(body.ctx.builder.computation.instructions, params, args, active,
                     [t.instr for t in body.outs])
    return lin, body.out_tree


def _grad_leaves(cts, lin: Linearized, n: int) -> list:
    return [instantiate(ct, p.shape) for ct, p in zip(cts[:n], lin.params[:n])]


def _value_and_grad_traced(fun, argnums, has_aux, args, kwargs, fname):
    nums = _argnums_tuple(argnums, len(args))
    diff = tuple(args[i] for i in nums)
    leaves, tree = pytree.flatten(diff)
    paths = _arg_paths(fun, nums, tree)
    _check_inexact(leaves, paths, fname)

    def rebuild(flat):
        new = list(args)
        for i, v in zip(nums, pytree.unflatten(tree, flat)):
            new[i] = v
        return new

    lin, out_tree = linearize_function(lambda *a: fun(*a, **kwargs), leaves, rebuild)
    _split_output(out_tree, has_aux, fname)
    out = lin.outputs[0]
    if not isinstance(out, Tracer) or out.aval.rank != 0 or not out.aval.dtype.is_float:
        shape = out.aval if isinstance(out, Tracer) else "a tuple"
        raise _error(f"{fname} is only defined for functions with a scalar float output; "
                     f"the output was {shape}. Use tessel.vjp for non-scalar outputs")
    one = vjp_rules.scalar(1, out.aval.dtype)
    grads = pytree.unflatten(tree, _grad_leaves(lin.backward([one]), lin, len(leaves)))
    grads = grads[0] if isinstance(argnums, int) else grads
    if has_aux:
        aux = pytree.unflatten(out_tree.children[1], lin.outputs[1:])
        return (out, aux), grads
    return out, grads


def _split_output(out_tree, has_aux: bool, fname: str, scalar: bool = True):
    """The output's own structure (without aux), checking the (output, aux) pair."""
    if has_aux and (out_tree.kind not in ("tuple", "list") or len(out_tree.children) != 2):
        raise _error(f"{fname}(has_aux=True) needs the function to return a pair "
                     f"(output, aux), it returned structure {out_tree}")
    value_tree = out_tree.children[0] if has_aux else out_tree
    if scalar and value_tree.kind != "leaf":
        raise _error(f"{fname} needs the function to return one scalar array"
                     f"{' as the first element of (output, aux)' if has_aux else ''}, "
                     f"it returned structure {value_tree}")
    return value_tree


def _arg_paths(fun, nums, tree) -> list[str]:
    import inspect
    try:
        names = [p.name for p in inspect.signature(fun).parameters.values()]
    except (TypeError, ValueError):
        names = []
    paths = []
    for i, sub in zip(nums, tree.children):
        name = names[i] if i < len(names) else f"args[{i}]"
        paths.extend(pytree.leaf_paths(sub, name))
    return paths


def _check_callable(fun, fname: str) -> None:
    if not callable(fun):
        raise TypeError(f"tessel.{fname} expects a function, given {type(fun).__name__} {fun!r:.40}")


def value_and_grad(fun: Callable, argnums=0, has_aux: bool = False) -> Callable:
    """f -> (x -> (f(x), df/dx)); with has_aux, f returns (value, aux) and the result is
    ((value, aux), grads). argnums: an int or a tuple of ints (then grads is a tuple)."""
    _check_callable(fun, "value_and_grad")
    def value_and_grad_f(*args, **kwargs):
        return core.traceable(_value_and_grad_traced)(fun, argnums, has_aux, args, kwargs,
                                                      "value_and_grad")
    value_and_grad_f.__name__ = f"value_and_grad_{getattr(fun, '__name__', 'f')}"
    return value_and_grad_f


def grad(fun: Callable, argnums=0, has_aux: bool = False) -> Callable:
    """The gradient of a scalar-valued `fun` w.r.t. argument(s) `argnums` (pytrees allowed).

    Works eagerly, under jit (the gradient is part of the compiled program) and composed
    with itself. With has_aux, fun returns (value, aux) and grad returns (grads, aux).
    """
    _check_callable(fun, "grad")
    def grad_f(*args, **kwargs):
        def run(*args, **kwargs):
            value, grads = _value_and_grad_traced(fun, argnums, has_aux, args, kwargs, "grad")
            return (grads, value[1]) if has_aux else grads
        return core.traceable(run)(*args, **kwargs)
    grad_f.__name__ = f"grad_{getattr(fun, '__name__', 'f')}"
    return grad_f


def _vjp_traced(fun, primals, has_aux):
    leaves, tree = pytree.flatten(tuple(primals))
    paths = [p for i, sub in enumerate(tree.children) for p in pytree.leaf_paths(sub, f"primals[{i}]")]
    _check_inexact(leaves, paths, "vjp")
    lin, out_tree = linearize_function(fun, leaves, lambda flat: pytree.unflatten(tree, flat))
    value_tree = _split_output(out_tree, has_aux, "vjp", scalar=False)
    n_out = value_tree.num_leaves
    outs = lin.outputs[:n_out]

    def vjp_fn(ct):
        ct_leaves, ct_tree = pytree.flatten(ct)
        problems = pytree.structure_diff(value_tree, ct_tree, "cotangent")
        for i, (c, o) in enumerate(zip(ct_leaves, outs)):
            if core.aval_of(c) != o.aval:
                problems.append(f"cotangent leaf {i}: expected {o.aval}, given {core.aval_of(c)}")
        if problems:
            raise _error("vjp_fn: " + "; ".join(problems))
        cts = [lift(c) for c in ct_leaves] + [None] * (len(lin.outputs) - n_out)
        grads = _grad_leaves(lin.backward(cts), lin, len(leaves))
        return pytree.unflatten(tree, grads)

    out = pytree.unflatten(value_tree, outs)
    if has_aux:
        return out, vjp_fn, pytree.unflatten(out_tree.children[1], lin.outputs[n_out:])
    return out, vjp_fn


def vjp(fun: Callable, *primals, has_aux: bool = False):
    """(fun(*primals), vjp_fn): vjp_fn(cotangent of the output) -> cotangents of primals
    (a tuple, one per primal). With has_aux: (out, vjp_fn, aux).

    Outside any trace the forward runs eagerly and each vjp_fn call re-runs forward and
    backward eagerly (one interpreter program each)."""
    _check_callable(fun, "vjp")
    if core.current_context() is not None:
        return _vjp_traced(fun, primals, has_aux)

    def forward(*p):
        out, _, *aux = _vjp_traced(fun, p, has_aux)
        return (out, aux[0]) if has_aux else out

    def eager_vjp_fn(ct):
        return core.run_eagerly(lambda *p: _vjp_traced(fun, p, has_aux)[1](ct), primals, {})

    results = core.run_eagerly(forward, primals, {})
    if has_aux:
        return results[0], eager_vjp_fn, results[1]
    return results, eager_vjp_fn
