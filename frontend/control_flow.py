"""Structured control flow: lax.cond / switch / while_loop / fori_loop / scan.

Each body is traced into a nested computation. Values the body reads from enclosing
traces are captured (see core.TraceContext.own) and threaded in as extra operands, so
bodies may close over anything. `while` and `conditional` take one tuple operand, so a
traced body's flat parameters are rewritten into reads of one tuple parameter.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..compiler import dtypes, ops
from ..compiler.ir import Attrs, Instruction, Shape, TupleShape
from ..runtime import pytree
from . import core
from .core import TraceContext, Tracer, lift, trace_error


# ----------------------------------------------------------------------------- tracing bodies

class TracedBody:
    """A function traced into a child computation with flat parameters."""

    def __init__(self, ctx: TraceContext, params: list[Tracer], outs: list[Tracer], out_tree):
        self.ctx, self.params, self.outs, self.out_tree = ctx, params, outs, out_tree

    @property
    def captured_outer(self) -> list[Tracer]:
        return [outer for outer, _ in self.ctx.captures]

    @property
    def captured_inner(self) -> list[Tracer]:
        return [inner for _, inner in self.ctx.captures]

    @property
    def out_avals(self) -> list[Shape]:
        return [t.aval for t in self.outs]


def trace_body(fn: Callable, in_avals: Sequence[Shape], name: str, probe: bool = False) -> TracedBody:
    """Trace fn(*flat_tracers) -> pytree of arrays in a child of the current context."""
    parent = core.current_context()
    ctx = TraceContext(parent.module, name, parent=parent, probe=probe)
    with ctx:
        params = [ctx.parameter(a, "arg") for a in in_avals]
        leaves, out_tree = pytree.flatten(fn(*params))
        outs = [lift(leaf) for leaf in leaves]
    ctx.finished = True
    return TracedBody(ctx, params, outs, out_tree)


def tuple_parameterize(body: TracedBody, element_shapes: Sequence, positions: Sequence[int]):
    """Replace the body's flat parameters by one tuple parameter `state`.

    Flat parameter k (traced parameters first, then captures) becomes
    get_tuple_element(state, positions[k]). Returns a function giving an instruction
    that reads any element of the state.
    """
    comp = body.ctx.builder.computation
    module = body.ctx.module
    old = list(comp.parameters)
    assert len(old) == len(positions), "one tuple position per flat parameter"
    state = Instruction(module.unique_name("state"), "parameter", [], TupleShape(element_shapes),
                        Attrs({"index": 0}), old[0].locs if old else ())

    def element(position: int, locs=()) -> Instruction:
        return Instruction(module.unique_name("element"), "get_tuple_element", [state],
                           element_shapes[position], Attrs({"index": position}), locs)

    reads = [element(pos, p.locs) for p, pos in zip(old, positions)]
    rest = [i for i in comp.instructions if i.opcode != "parameter"]
    comp.parameters = [state]
    comp.instructions = [state] + reads + rest
    for p, read in zip(old, reads):
        comp.replace_all_uses(p, read)
    replaced = {id(p): read for p, read in zip(old, reads)}
    for t in body.outs:                 # outputs may be parameters passed straight through
        t.instr = replaced.get(id(t.instr), t.instr)

    def read_element(position: int) -> Instruction:
        instr = element(position)
        comp.instructions.append(instr)
        return instr

    return read_element


def finish_body(body: TracedBody, root_parts: Sequence[Instruction]):
    """Give the body computation a tuple root and add it to the module."""
    b = body.ctx.builder
    root = b.emit("tuple", root_parts)
    b.build(root)
    return b.computation


def _check_same(what: str, expected_tree, expected_avals, given_tree, given_avals):
    problems = pytree.structure_diff(expected_tree, given_tree, what)
    if not problems:
        for i, (e, g) in enumerate(zip(expected_avals, given_avals)):
            if e != g:
                problems.append(f"{what} leaf {i}: expected {e}, given {g}")
    if problems:
        raise trace_error("; ".join(problems))


# ----------------------------------------------------------------------------- while

def _while_flat(cond_fn, body_fn, init: list[Tracer], carry_tree,
                trip_count: int | None = None) -> list[Tracer]:
    """A while loop over a flat list of carried tracers (trip_count: when known statically)."""
    ctx = core.current_context()
    carry_avals = [t.aval for t in init]
    cond = trace_body(cond_fn, carry_avals, "while_cond")
    body = trace_body(body_fn, carry_avals, "while_body")
    if len(cond.outs) != 1 or cond.outs[0].aval != Shape(dtypes.pred, ()):
        raise trace_error(f"the loop condition must return a bool scalar, returned "
                          f"{[t.aval for t in cond.outs]}")
    _check_same("loop body output", carry_tree, carry_avals, body.out_tree, body.out_avals)

    k, m = len(init), len(cond.ctx.captures)
    extras = cond.captured_outer + body.captured_outer
    element_shapes = carry_avals + [t.aval for t in extras]
    n_body_captures = len(body.ctx.captures)

    tuple_parameterize(cond, element_shapes, list(range(k + m)))
    cond_comp = cond.ctx.builder.build(cond.outs[0].instr)

    body_positions = list(range(k)) + list(range(k + m, k + m + n_body_captures))
    read = tuple_parameterize(body, element_shapes, body_positions)
    passthrough = [read(p) for p in range(k, k + m + n_body_captures)]
    body_comp = finish_body(body, [t.instr for t in body.outs] + passthrough)

    state = ctx.emit("tuple", init + [ctx.own(t) for t in extras])
    attrs = {"condition": cond_comp, "body": body_comp}
    if trip_count is not None:
        attrs["trip_count"] = trip_count
    loop = ctx.emit("while", [state], attrs)
    return [ctx.emit("get_tuple_element", [loop], {"index": i}) for i in range(k)]


def _lift_tree(tree):
    leaves, treedef = pytree.flatten(tree)
    return [lift(x) for x in leaves], treedef


@core.traceable
def while_loop(cond_fun: Callable, body_fun: Callable, init_val):
    """Repeat `val = body_fun(val)` while `cond_fun(val)`; returns the final val."""
    init, tree = _lift_tree(init_val)

    def cond_flat(*flat):
        return cond_fun(pytree.unflatten(tree, flat))

    def body_flat(*flat):
        return body_fun(pytree.unflatten(tree, flat))

    return pytree.unflatten(tree, _while_flat(cond_flat, body_flat, init, tree))


LOOP_INDEX_DTYPE = dtypes.s32   # like JAX's loop counters; NEP 50 keeps `i + 1` in s32


def _index_value(x, name: str) -> Tracer:
    t = lift(x)
    if t.aval.rank != 0 or not t.aval.dtype.is_integer:
        raise trace_error(f"fori_loop {name} must be an integer scalar, given {t.aval}")
    return core.current_context().emit("convert", [t], shape=Shape(LOOP_INDEX_DTYPE, ()))


@core.traceable
def fori_loop(lower, upper, body_fun: Callable, init_val):
    """`for i in range(lower, upper): val = body_fun(i, val)`; returns the final val."""
    lo, hi = _index_value(lower, "lower"), _index_value(upper, "upper")
    init, tree = _lift_tree(init_val)
    one = core.current_context().constant(1, LOOP_INDEX_DTYPE)

    def cond_flat(i, bound, *flat):
        return core.current_context().emit("compare", [i, bound], {"direction": "LT"})

    def body_flat(i, bound, *flat):
        out_leaves, out_tree = pytree.flatten(body_fun(i, pytree.unflatten(tree, flat)))
        _check_same("fori_loop body output", tree, [t.aval for t in init], out_tree,
                    [core.aval_of(x) for x in out_leaves])
        step = core.current_context().emit("add", [i, lift(one)])
        return [step, bound] + out_leaves

    outs = _while_flat(cond_flat, body_flat, [lo, hi] + init, _flat_tree(2 + len(init)),
                       _static_trip_count(lower, upper))
    return pytree.unflatten(tree, outs[2:])


def _static_trip_count(lower, upper) -> int | None:
    """range(lower, upper)'s length when both bounds are Python/NumPy integers."""
    def static(x):
        return isinstance(x, (int, np.integer)) and not isinstance(x, bool)
    return max(int(upper) - int(lower), 0) if static(lower) and static(upper) else None


def _flat_tree(n: int) -> pytree.TreeDef:
    return pytree.TreeDef("list", (pytree.LEAF,) * n)


# ----------------------------------------------------------------------------- scan

def _probe_avals(fn: Callable, in_avals: Sequence[Shape]) -> tuple[pytree.TreeDef, list[Shape]]:
    """Output structure and avals of fn, traced without touching the enclosing traces."""
    body = trace_body(fn, in_avals, "probe", probe=True)
    return body.out_tree, body.out_avals


def _leading_slice(ctx, x: Tracer, index: Tracer) -> Tracer:
    """x[index] along axis 0, for a traced index."""
    zero = lift(ctx.constant(0, LOOP_INDEX_DTYPE))
    starts = [index] + [zero] * (x.aval.rank - 1)
    row = ctx.emit("dynamic_slice", [x] + starts, {"slice_sizes": (1,) + x.aval.dims[1:]})
    return ctx.emit("reshape", [row], shape=Shape(x.aval.dtype, x.aval.dims[1:]))


def _leading_update(ctx, acc: Tracer, y: Tracer, index: Tracer) -> Tracer:
    """acc with acc[index] = y along axis 0."""
    zero = lift(ctx.constant(0, LOOP_INDEX_DTYPE))
    row = ctx.emit("reshape", [y], shape=Shape(y.aval.dtype, (1,) + y.aval.dims))
    return ctx.emit("dynamic_update_slice", [acc, row, index] + [zero] * y.aval.rank)


@core.traceable
def scan(f: Callable, init, xs=None, length: int | None = None, reverse: bool = False):
    """Loop `carry, y = f(carry, x)` over the leading axis of xs; returns (carry, stacked ys)."""
    ctx = core.current_context()
    carry, carry_tree = _lift_tree(init)
    x_leaves, x_tree = _lift_tree(xs)
    lengths = {x.aval.dims[0] if x.aval.rank else None for x in x_leaves}
    if None in lengths:
        raise trace_error("scan xs leaves must have a leading axis to scan over")
    if length is not None:
        lengths.add(int(length))
    if len(lengths) != 1:
        raise trace_error(f"scan needs one length: xs leading axes and length give {sorted(lengths)}")
    n = lengths.pop()
    x_avals = [Shape(x.aval.dtype, x.aval.dims[1:]) for x in x_leaves]
    k, nx = len(carry), len(x_leaves)

    def step(*flat):
        c = pytree.unflatten(carry_tree, flat[:k])
        x = pytree.unflatten(x_tree, flat[k:])
        return f(c, x)

    out_tree, out_avals = _probe_avals(step, [t.aval for t in carry] + x_avals)
    if out_tree.kind not in ("tuple", "list") or len(out_tree.children) != 2:
        raise trace_error(f"scan's f must return a pair (carry, y), returned structure {out_tree}")
    y_tree = out_tree.children[1]
    y_avals = out_avals[k:]
    ys_init = [_zeros(ctx, Shape(a.dtype, (n,) + a.dims)) for a in y_avals]

    def cond_flat(i, *rest):
        return core.current_context().emit("compare", [i, lift(np_index(n))], {"direction": "LT"})

    def body_flat(i, *rest):
        bctx = core.current_context()
        c, xs_full, ys = rest[:k], rest[k:k + nx], rest[k + nx:]
        t = bctx.emit("subtract", [lift(np_index(n - 1)), i]) if reverse else i
        x_now = [_leading_slice(bctx, x, t) for x in xs_full]
        new_carry, y = step(*c, *x_now)
        c_leaves, c_tree = pytree.flatten(new_carry)
        _check_same("scan carry output", carry_tree, [a.aval for a in carry], c_tree,
                    [core.aval_of(v) for v in c_leaves])
        y_leaves = [lift(v) for v in pytree.flatten(y)[0]]
        ys_new = [_leading_update(bctx, acc, v, t) for acc, v in zip(ys, y_leaves)]
        nxt = bctx.emit("add", [i, lift(np_index(1))])
        return [nxt] + [lift(v) for v in c_leaves] + list(xs_full) + ys_new

    zero = lift(np_index(0))
    outs = _while_flat(cond_flat, body_flat, [zero] + carry + x_leaves + ys_init,
                       _flat_tree(1 + k + nx + len(ys_init)), trip_count=n)
    final_carry = pytree.unflatten(carry_tree, outs[1:1 + k])
    return final_carry, pytree.unflatten(y_tree, outs[1 + k + nx:])


def np_index(value: int):
    import numpy as np
    return np.asarray(value, dtype=LOOP_INDEX_DTYPE.storage)


def _zeros(ctx, shape: Shape) -> Tracer:
    zero = ctx.constant(0, shape.dtype)
    return ctx.emit("broadcast_in_dim", [zero], {"broadcast_dimensions": ()}, shape=shape)


# ----------------------------------------------------------------------------- cond / switch

def _conditional(index: Tracer, branches: Sequence[Callable], operands) -> object:
    ctx = core.current_context()
    op_leaves, op_tree = _lift_tree(operands)
    op_avals = [t.aval for t in op_leaves]

    def flat_fn(branch):
        return lambda *flat: branch(*pytree.unflatten(op_tree, flat))

    traced = [trace_body(flat_fn(b), op_avals, f"branch_{i}") for i, b in enumerate(branches)]
    first = traced[0]
    for i, t in enumerate(traced[1:], 1):
        _check_same(f"branch {i} output (vs branch 0)", first.out_tree, first.out_avals,
                    t.out_tree, t.out_avals)
    comps, branch_operands = [], []
    for t in traced:
        shapes = op_avals + [c.aval for c in t.captured_outer]
        tuple_parameterize(t, shapes, list(range(len(shapes))))
        comps.append(finish_body(t, [o.instr for o in t.outs]))
        branch_operands.append(ctx.emit("tuple", op_leaves + [ctx.own(c) for c in t.captured_outer]))
    result = ctx.emit("conditional", [index] + branch_operands, {"branch_computations": tuple(comps)})
    outs = [ctx.emit("get_tuple_element", [result], {"index": i}) for i in range(len(first.outs))]
    return pytree.unflatten(first.out_tree, outs)


@core.traceable
def cond(pred, true_fun: Callable, false_fun: Callable, *operands):
    """`true_fun(*operands) if pred else false_fun(*operands)`, both traced."""
    p = lift(pred)
    if p.aval.rank != 0:
        raise trace_error(f"cond's predicate must be a scalar, given {p.aval}")
    if p.aval.dtype != dtypes.pred:
        p = core.current_context().emit("compare", [p, lift(_zero_like(p))], {"direction": "NE"})
    return _conditional(p, [false_fun, true_fun], operands)


@core.traceable
def switch(index, branches: Sequence[Callable], *operands):
    """`branches[clamp(index, 0, len-1)](*operands)`."""
    i = lift(index)
    if i.aval.rank != 0 or not i.aval.dtype.is_integer:
        raise trace_error(f"switch's index must be an integer scalar, given {i.aval}")
    ctx = core.current_context()
    i = ctx.emit("convert", [i], shape=Shape(dtypes.s32, ()))
    lo, hi = lift(np_index(0)), lift(np_index(len(branches) - 1))
    i = ctx.emit("clamp", [lo, i, hi])
    return _conditional(i, list(branches), operands)


def _zero_like(t: Tracer):
    import numpy as np
    return np.zeros((), dtype=t.aval.dtype.storage)
