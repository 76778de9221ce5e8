"""VJP rules: for each differentiable op of compiler/ops.py, how a cotangent of its result
becomes cotangents of its operands.

A rule is `rule(ct, eqn) -> [cotangent or None per operand]` (None: a zero, or an
operand that has no gradient such as an index). `eqn.operands` and `eqn.out` are the
primal values as tracers of the current trace, so a rule *emits IR*: the gradient
program is ordinary IR built by the same tracing machinery, and is itself
differentiable (second derivatives are grad of grad). Each rule sits next to the
forward it differentiates, micrograd style; ops without a rule are listed in
NON_DIFFERENTIABLE with the reason. The structural ops (while, conditional, call,
fusion, tuple, get_tuple_element, parameter) are the transformation's own business:
see frontend/autodiff.py, which adds their entries to the same tables.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..compiler import dtypes, ops
from ..compiler.ir import Attrs, Builder, Instruction, Shape
from . import core
from .core import Tracer, trace_error
from .errors import TraceError


class NotDifferentiableError(TraceError):
    """The function differentiates through an op (or an op variant) that has no VJP."""


@dataclass
class Eqn:
    """One instruction of the differentiated program, with its primal values."""
    instr: Instruction
    operands: list          # primal values of the operands (tracers, or lists for tuples)
    out: object             # the primal result
    active: list[bool]      # which operands carry a gradient (depend on the inputs)
    residual: object = None  # what a forward rule saved for the backward (loops, calls)

    @property
    def attrs(self) -> Attrs:
        return self.instr.attrs


VJP_RULES: dict[str, Callable] = {}

NON_DIFFERENTIABLE: dict[str, str] = {
    "not": "boolean/integer valued", "and": "boolean/integer valued",
    "or": "boolean/integer valued", "xor": "boolean/integer valued",
    "is_finite": "boolean valued", "compare": "boolean valued",
    "iota": "integer index values, no operands",
    "constant": "no operands (a constant has no gradient)",
    "rng_bit_generator": "random bits are integers",
    "send": "a side effect (communication); reverse mode would need a reverse channel",
    "recv": "a side effect (communication); reverse mode would need a reverse channel",
    "custom_call": "opaque to the compiler",
}


def vjp(opcode: str):
    def register(rule):
        VJP_RULES[opcode] = rule
        return rule
    return register


def not_differentiable(message: str):
    return trace_error(message, cls=NotDifferentiableError)


# ----------------------------------------------------------------------------- emitting helpers

def emit(opcode: str, operands, attrs=None, shape=None) -> Tracer:
    return core.current_context().emit(opcode, list(operands), attrs, shape)


def scalar(value, dt) -> Tracer:
    return core.current_context().constant(np.asarray(value, dtype=dt.storage), dt)


def full(shape: Shape, value) -> Tracer:
    return emit("broadcast_in_dim", [scalar(value, shape.dtype)], {"broadcast_dimensions": ()},
                shape=shape)


def zeros(shape: Shape) -> Tracer:
    return full(shape, 0)


def like(t: Tracer, value) -> Tracer:
    return full(t.aval, value)


def add(a, b):
    return emit("add", [a, b])


def sub(a, b):
    return emit("subtract", [a, b])


def mul(a, b):
    return emit("multiply", [a, b])


def div(a, b):
    return emit("divide", [a, b])


def neg(a):
    return emit("negate", [a])


def compare(a, b, direction: str):
    return emit("compare", [a, b], {"direction": direction})


def select(p, a, b):
    return emit("select", [p, a, b])


def convert(t: Tracer, dt) -> Tracer:
    return t if t.aval.dtype == dt else emit("convert", [t], shape=t.aval.with_dtype(dt))


def reshape(t: Tracer, dims) -> Tracer:
    dims = tuple(dims)
    return t if t.aval.dims == dims else emit("reshape", [t], shape=t.aval.with_dims(dims))


def transpose(t: Tracer, perm) -> Tracer:
    perm = tuple(perm)
    return t if perm == tuple(range(len(perm))) else emit("transpose", [t], {"permutation": perm})


def inverse_permutation(perm) -> tuple[int, ...]:
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


def reduce_sum(t: Tracer, dims) -> Tracer:
    dims = tuple(sorted(dims))
    if not dims:
        return t
    add_comp = core.current_context().reducer("add", t.aval.dtype)
    return emit("reduce", [t, scalar(0, t.aval.dtype)], {"dimensions": dims, "to_apply": add_comp})


def broadcast(t: Tracer, shape: Shape, dims) -> Tracer:
    return emit("broadcast_in_dim", [t], {"broadcast_dimensions": tuple(dims)}, shape=shape)


def is_float(value) -> bool:
    return isinstance(value, Tracer) and value.aval.dtype.is_float


def computation_kind(comp) -> str | None:
    """'add', 'maximum', ... when `comp` is that binary op of its two parameters."""
    root = comp.root
    if len(comp.parameters) == 2 and root is not None and root.operands == list(comp.parameters):
        return root.opcode
    if len(comp.parameters) == 2 and root is comp.parameters[1]:
        return "replace"
    return None


def scalar_computation(name: str, dt, body: Callable) -> object:
    """A small (a, b) -> body(builder, a, b) computation in the current module."""
    b = Builder(core.current_context().module, name)
    x = b.parameter(Shape(dt, ()), "a")
    y = b.parameter(Shape(dt, ()), "b")
    return b.build(body(b, x, y))


# ----------------------------------------------------------------------------- elementwise unary

@vjp("negate")
def _negate(ct, eqn):
    return [neg(ct)]


@vjp("abs")
def _abs(ct, eqn):
    x, = eqn.operands
    return [mul(ct, emit("sign", [x]))]


def _zero_gradient(ct, eqn):
    return [None] * len(eqn.operands)


for _name in ("sign", "floor", "ceil", "round"):   # piecewise constant: zero almost everywhere
    VJP_RULES[_name] = _zero_gradient


@vjp("exp")
def _exp(ct, eqn):
    return [mul(ct, eqn.out)]


@vjp("log")
def _log(ct, eqn):
    return [div(ct, eqn.operands[0])]


@vjp("log1p")
def _log1p(ct, eqn):
    x, = eqn.operands
    return [div(ct, add(x, like(x, 1)))]


@vjp("expm1")
def _expm1(ct, eqn):
    return [mul(ct, add(eqn.out, like(eqn.out, 1)))]


@vjp("sqrt")
def _sqrt(ct, eqn):
    return [div(ct, mul(like(eqn.out, 2), eqn.out))]


@vjp("rsqrt")
def _rsqrt(ct, eqn):                      # d x^-1/2 = -1/2 x^-3/2 = -1/2 out / x
    x, = eqn.operands
    return [mul(ct, div(mul(like(x, -0.5), eqn.out), x))]


@vjp("tanh")
def _tanh(ct, eqn):
    y = eqn.out
    return [mul(ct, sub(like(y, 1), mul(y, y)))]


@vjp("logistic")
def _logistic(ct, eqn):
    y = eqn.out
    return [mul(ct, mul(y, sub(like(y, 1), y)))]


@vjp("sin")
def _sin(ct, eqn):
    return [mul(ct, emit("cos", eqn.operands))]


@vjp("cos")
def _cos(ct, eqn):
    return [neg(mul(ct, emit("sin", eqn.operands)))]


@vjp("erf")
def _erf(ct, eqn):
    x, = eqn.operands
    slope = mul(like(x, 2 / math.sqrt(math.pi)), emit("exp", [neg(mul(x, x))]))
    return [mul(ct, slope)]


@vjp("convert")
def _convert(ct, eqn):
    x, = eqn.operands
    return [convert(ct, x.aval.dtype) if is_float(x) else None]


# ----------------------------------------------------------------------------- elementwise binary

@vjp("add")
def _add(ct, eqn):
    return [ct, ct]


@vjp("subtract")
def _subtract(ct, eqn):
    return [ct, neg(ct)]


@vjp("multiply")
def _multiply(ct, eqn):
    x, y = eqn.operands
    return [mul(ct, y) if eqn.active[0] else None, mul(ct, x) if eqn.active[1] else None]


@vjp("divide")
def _divide(ct, eqn):
    x, y = eqn.operands
    dx = div(ct, y)
    return [dx, neg(mul(dx, eqn.out)) if eqn.active[1] else None]


@vjp("remainder")
def _remainder(ct, eqn):                  # x - y * trunc(x / y); trunc(x / y) = (x - out) / y
    x, y = eqn.operands
    return [ct, neg(mul(ct, div(sub(x, eqn.out), y))) if eqn.active[1] else None]


@vjp("power")
def _power(ct, eqn):
    x, y = eqn.operands
    dx = dy = None
    if eqn.active[0]:
        dx = mul(ct, mul(y, emit("power", [x, sub(y, like(y, 1))])))
    if eqn.active[1]:                      # d/dy x^y = x^y log x, taken as 0 at x = 0
        x_is_zero = compare(x, like(x, 0), "EQ")
        safe_log = emit("log", [select(x_is_zero, like(x, 1), x)])
        dy = mul(ct, mul(eqn.out, safe_log))
    return [dx, dy]


def _extremum(ct, eqn, direction: str):
    """max/min: the gradient goes to the winner; ties split it evenly (like JAX)."""
    x, y = eqn.operands
    half = mul(ct, like(ct, 0.5))
    zero = like(ct, 0)
    x_wins = compare(x, y, direction)
    tie = compare(x, y, "EQ")
    dx = select(x_wins, ct, select(tie, half, zero))
    dy = select(x_wins, zero, select(tie, half, ct))
    return [dx, dy]


@vjp("maximum")
def _maximum(ct, eqn):
    return _extremum(ct, eqn, "GT")


@vjp("minimum")
def _minimum(ct, eqn):
    return _extremum(ct, eqn, "LT")


@vjp("atan2")
def _atan2(ct, eqn):                      # atan2(y, x): d/dy = x / r2, d/dx = -y / r2
    y, x = eqn.operands
    scaled = div(ct, add(mul(x, x), mul(y, y)))
    return [mul(scaled, x), neg(mul(scaled, y))]


@vjp("select")
def _select(ct, eqn):
    p, _, _ = eqn.operands
    zero = like(ct, 0)
    return [None, select(p, ct, zero), select(p, zero, ct)]


@vjp("clamp")
def _clamp(ct, eqn):
    lo, x, hi = eqn.operands
    zero = like(ct, 0)

    def wide(bound):
        return bound if bound.aval.rank == x.aval.rank else broadcast(bound, x.aval, ())

    below, above = compare(x, wide(lo), "LT"), compare(x, wide(hi), "GT")
    dx = select(below, zero, select(above, zero, ct))

    def bound_ct(mask, bound, active):
        if not active:
            return None
        g = select(mask, ct, zero)
        return g if bound.aval.rank == x.aval.rank else reduce_sum(g, range(x.aval.rank))

    return [bound_ct(below, lo, eqn.active[0]), dx, bound_ct(above, hi, eqn.active[2])]


# ----------------------------------------------------------------------------- data movement

@vjp("broadcast_in_dim")
def _broadcast_in_dim(ct, eqn):
    x, = eqn.operands
    bdims = eqn.attrs["broadcast_dimensions"]
    out_dims = ct.aval.dims
    new = [d for d in range(len(out_dims)) if d not in bdims]
    stretched = [d for i, d in enumerate(bdims) if x.aval.dims[i] == 1 and out_dims[d] != 1]
    summed = reduce_sum(ct, new + stretched)
    return [reshape(summed, x.aval.dims)]


@vjp("reshape")
def _reshape(ct, eqn):
    return [reshape(ct, eqn.operands[0].aval.dims)]


@vjp("transpose")
def _transpose(ct, eqn):
    return [transpose(ct, inverse_permutation(eqn.attrs["permutation"]))]


@vjp("reverse")
def _reverse(ct, eqn):
    return [emit("reverse", [ct], {"dimensions": eqn.attrs["dimensions"]})]


@vjp("slice")
def _slice(ct, eqn):
    """Scatter the slice back: pad with zeros, stride - 1 zeros between kept elements."""
    x, = eqn.operands
    starts = eqn.attrs["start_indices"]
    strides = eqn.attrs["strides"] or (1,) * x.aval.rank
    lo, hi, interior = [], [], []
    for size, start, stride, n in zip(x.aval.dims, starts, strides, ct.aval.dims):
        if n == 0:
            lo.append(size), hi.append(0), interior.append(0)
            continue
        lo.append(start)
        hi.append(size - (start + (n - 1) * stride + 1))
        interior.append(stride - 1)
    return [emit("pad", [ct, scalar(0, ct.aval.dtype)],
                 {"edge_padding_low": tuple(lo), "edge_padding_high": tuple(hi),
                  "interior_padding": tuple(interior)})]


@vjp("pad")
def _pad(ct, eqn):
    """The operand's elements sit at lo + i * (interior + 1); the padding value everywhere else."""
    x, v = eqn.operands
    lo, hi = eqn.attrs["edge_padding_low"], eqn.attrs["edge_padding_high"]
    interior = eqn.attrs["interior_padding"] or (0,) * x.aval.rank
    # Negative edge padding cut elements off: put zeros back for them first.
    restore_lo = tuple(max(-p, 0) for p in lo)
    restore_hi = tuple(max(-p, 0) for p in hi)
    full_ct = ct
    if any(restore_lo) or any(restore_hi):
        full_ct = emit("pad", [ct, scalar(0, ct.aval.dtype)],
                       {"edge_padding_low": restore_lo, "edge_padding_high": restore_hi})
    starts = tuple(max(p, 0) for p in lo)
    steps = tuple(i + 1 for i in interior)
    limits = tuple(s + (n - 1) * st + 1 if n else s
                   for s, n, st in zip(starts, x.aval.dims, steps))
    dx = emit("slice", [full_ct], {"start_indices": starts, "limit_indices": limits, "strides": steps})
    dv = None
    if eqn.active[1]:
        everything = range(ct.aval.rank)
        dv = sub(reduce_sum(ct, everything), reduce_sum(dx, everything))
    return [dx, dv]


@vjp("concatenate")
def _concatenate(ct, eqn):
    dim = eqn.attrs["dimension"]
    pieces, offset = [], 0
    for x, active in zip(eqn.operands, eqn.active):
        n = x.aval.dims[dim]
        if active:
            starts = [0] * ct.aval.rank
            limits = list(ct.aval.dims)
            starts[dim], limits[dim] = offset, offset + n
            pieces.append(emit("slice", [ct], {"start_indices": tuple(starts),
                                               "limit_indices": tuple(limits)}))
        else:
            pieces.append(None)
        offset += n
    return pieces


@vjp("dynamic_slice")
def _dynamic_slice(ct, eqn):
    x, *starts = eqn.operands
    dx = emit("dynamic_update_slice", [zeros(x.aval), ct] + starts)
    return [dx] + [None] * len(starts)


@vjp("dynamic_update_slice")
def _dynamic_update_slice(ct, eqn):
    """Never reads the operand's primal value (loops rely on that: see autodiff's
    accumulator residuals)."""
    _, update, *starts = eqn.operands
    dx = emit("dynamic_update_slice", [ct, zeros(update.aval)] + starts) if eqn.active[0] else None
    du = None
    if eqn.active[1]:
        du = emit("dynamic_slice", [ct] + starts, {"slice_sizes": update.aval.dims})
    return [dx, du] + [None] * len(starts)


def _clamped_starts(indices: Tracer, x: Tracer, a) -> Tracer:
    """Gather clamps start indices so the slice fits, scatter skips windows that do not:
    clamp them here so an out-of-range index's gradient goes where its value came from."""
    ivd, start_map, sizes = a["index_vector_dim"], a["start_index_map"], a["slice_sizes"]
    dt = indices.aval.dtype
    bounds = np.array([x.aval.dims[d] - sizes[d] for d in start_map], dtype=dt.storage)
    if ivd == indices.aval.rank:
        upper = full(indices.aval, int(bounds[0]))
    else:
        vector = core.current_context().constant(bounds, dt)
        upper = broadcast(vector, indices.aval, (ivd,))
    return emit("clamp", [zeros(indices.aval), indices, upper])


@vjp("gather")
def _gather(ct, eqn):
    """Scatter-add the cotangent back: repeated indices accumulate."""
    x, indices = eqn.operands
    a = eqn.attrs
    add_comp = core.current_context().reducer("add", ct.aval.dtype)
    dx = emit("scatter", [zeros(x.aval), _clamped_starts(indices, x, a), ct],
              {"update_window_dims": a["offset_dims"], "inserted_window_dims": a["collapsed_slice_dims"],
               "scatter_dims_to_operand_dims": a["start_index_map"],
               "index_vector_dim": a["index_vector_dim"],
               "indices_are_sorted": a["indices_are_sorted"], "to_apply": add_comp})
    return [dx, None]


def _gather_updates(source: Tracer, indices: Tracer, updates: Tracer, a) -> Tracer:
    """The scatter's update windows read back out of `source` (the transposed scatter)."""
    window_dims = a["update_window_dims"]
    window_sizes = iter(updates.aval.dims[d] for d in window_dims)
    sizes = tuple(1 if d in a["inserted_window_dims"] else next(window_sizes)
                  for d in range(source.aval.rank))
    return emit("gather", [source, indices],
                {"offset_dims": window_dims, "collapsed_slice_dims": a["inserted_window_dims"],
                 "start_index_map": a["scatter_dims_to_operand_dims"],
                 "index_vector_dim": a["index_vector_dim"], "slice_sizes": sizes,
                 "indices_are_sorted": a["indices_are_sorted"]})


@vjp("scatter")
def _scatter(ct, eqn):
    x, indices, updates = eqn.operands
    a = eqn.attrs
    kind = computation_kind(a["to_apply"])
    if kind == "add":
        du = _gather_updates(ct, indices, updates, a) if eqn.active[2] else None
        return [ct, None, du]
    if kind == "replace":   # overwritten positions get no gradient; assumes unique indices
        dx = None
        if eqn.active[0]:
            dx = emit("scatter", [ct, indices, zeros(updates.aval)], a)
        du = _gather_updates(ct, indices, updates, a) if eqn.active[2] else None
        return [dx, None, du]
    raise not_differentiable(f"scatter with combiner {a['to_apply'].name} ({kind or 'custom'}) "
                             f"has no VJP; add and replace scatters do")


# ----------------------------------------------------------------------------- dot_general

def _dot_operand_ct(ct, other, own_rank, own_batch, own_contract, other_batch, other_contract,
                    ct_free_of_other):
    """Cotangent of one dot operand: contract ct with the other operand over the other's
    free dims, then lay the result out like the operand."""
    other_free = [d for d in range(other.aval.rank) if d not in other_batch and d not in other_contract]
    batch = tuple(range(len(own_batch)))
    g = emit("dot_general", [ct, other],
             {"lhs_batching_dims": batch, "rhs_batching_dims": tuple(other_batch),
              "lhs_contracting_dims": tuple(ct_free_of_other),
              "rhs_contracting_dims": tuple(other_free)})
    own_free = [d for d in range(own_rank) if d not in own_batch and d not in own_contract]
    # g's dims: own batch, own free, then the other's contracting dims in increasing order,
    # which pair with own contracting dims.
    remaining = sorted(other_contract)
    source = list(own_batch) + own_free + [own_contract[list(other_contract).index(r)] for r in remaining]
    return transpose(g, [source.index(k) for k in range(own_rank)])


@vjp("dot_general")
def _dot_general(ct, eqn):
    lhs, rhs = eqn.operands
    a = eqn.attrs
    lb, rb = a["lhs_batching_dims"], a["rhs_batching_dims"]
    lc, rc = a["lhs_contracting_dims"], a["rhs_contracting_dims"]
    n_batch = len(lb)
    n_lfree = lhs.aval.rank - len(lb) - len(lc)
    ct_lfree = list(range(n_batch, n_batch + n_lfree))
    ct_rfree = list(range(n_batch + n_lfree, ct.aval.rank))
    d_lhs = d_rhs = None
    if eqn.active[0]:
        d_lhs = _dot_operand_ct(ct, rhs, lhs.aval.rank, lb, lc, rb, rc, ct_rfree)
    if eqn.active[1]:
        d_rhs = _dot_operand_ct(ct, lhs, rhs.aval.rank, rb, rc, lb, lc, ct_lfree)
    return [d_lhs, d_rhs]


# ----------------------------------------------------------------------------- convolution

def _labels(specs: tuple[tuple, tuple, tuple]) -> str:
    """dim_labels text from (batch/out, feature/in, spatial...) position tuples."""
    def part(spec, letters):
        chars = [""] * len(spec)
        chars[spec[0]], chars[spec[1]] = letters
        for i, pos in enumerate(spec[2:]):
            chars[pos] = str(i)
        return "".join(chars)
    lhs, rhs, out = specs
    return f"{part(lhs, 'bf')}_{part(rhs, 'oi')}->{part(out, 'bf')}"


def _specs(dn: ops.ConvDims):
    return ((dn.input_batch, dn.input_feature) + dn.input_spatial,
            (dn.kernel_out, dn.kernel_in) + dn.kernel_spatial,
            (dn.output_batch, dn.output_feature) + dn.output_spatial)


def _swap_first_two(spec):
    return (spec[1], spec[0]) + tuple(spec[2:])


def _dilated(size: int, dilation: int) -> int:
    return 0 if size == 0 else 1 + dilation * (size - 1)


def _split_axis(t: Tracer, axis: int, groups: int) -> Tracer:
    dims = list(t.aval.dims)
    dims[axis:axis + 1] = [groups, dims[axis] // groups]
    return reshape(t, dims)


def _merge_axis_into(t: Tracer, src: int, dst: int) -> Tracer:
    """Move axis src in front of axis dst (numbered without src) and merge the two."""
    perm = [i for i in range(t.aval.rank) if i != src]
    perm.insert(dst, src)
    moved = transpose(t, perm)
    dims = [t.aval.dims[i] for i in range(t.aval.rank) if i != src]
    dims[dst] *= t.aval.dims[src]
    return reshape(moved, dims)


def _conv(lhs, rhs, labels, strides, padding, lhs_dil, rhs_dil, fgc=1, bgc=1) -> Tracer:
    return emit("convolution", [lhs, rhs],
                {"dim_labels": labels, "window_strides": tuple(strides),
                 "padding": tuple((int(lo), int(hi)) for lo, hi in padding),
                 "lhs_dilation": tuple(lhs_dil), "rhs_dilation": tuple(rhs_dil),
                 "feature_group_count": fgc, "batch_group_count": bgc})


def _conv_input_ct(ct, rhs, in_spatial, dn, strides, padding, lhs_dil, rhs_dil, fgc, bgc, x_shape):
    """d input: convolve ct with the spatially reversed kernel, in and out features swapped;
    forward strides become input dilation."""
    lhs_spec, rhs_spec, out_spec = _specs(dn)
    k = rhs
    if fgc > 1 or bgc > 1:   # move the group axis from the kernel's out features into its in features
        groups = max(fgc, bgc)
        k = _merge_axis_into(_split_axis(k, rhs_spec[0], groups), rhs_spec[0], rhs_spec[1])
    k_spatial = [k.aval.dims[d] for d in dn.kernel_spatial]
    out_spatial = [ct.aval.dims[d] for d in dn.output_spatial]
    pads = []
    for size, w, s, (lo, _), ld, rd, o in zip(in_spatial, k_spatial, strides, padding, lhs_dil,
                                               rhs_dil, out_spatial):
        before = _dilated(w, rd) - lo - 1
        after = _dilated(size, ld) + _dilated(w, rd) - 1 - _dilated(o, s) - before
        pads.append((before, after))
    flipped = emit("reverse", [k], {"dimensions": tuple(dn.kernel_spatial)})
    labels = _labels((out_spec, _swap_first_two(rhs_spec), lhs_spec))
    g = _conv(ct, flipped, labels, lhs_dil, pads, strides, rhs_dil, fgc=max(fgc, bgc))
    if bgc > 1:
        g = _merge_axis_into(_split_axis(g, lhs_spec[1], bgc), lhs_spec[1], lhs_spec[0])
    assert g.aval.dims == x_shape, (g.aval, x_shape)
    return g


def _conv_kernel_ct(ct, lhs, k_spatial, dn, strides, padding, lhs_dil, rhs_dil, fgc, bgc, k_shape):
    """d kernel: convolve the input with ct (batch acting as features); forward strides
    become kernel dilation; feature groups become batch groups."""
    lhs_spec, rhs_spec, out_spec = _specs(dn)
    in_spatial = [lhs.aval.dims[d] for d in dn.input_spatial]
    out_spatial = [ct.aval.dims[d] for d in dn.output_spatial]
    pads = []
    for size, w, s, (lo, _), ld, rd, o in zip(in_spatial, k_spatial, strides, padding, lhs_dil,
                                               rhs_dil, out_spatial):
        hi = (_dilated(o, s) - _dilated(size, ld)) + (_dilated(w, rd) - lo - 1)
        pads.append((lo, hi))
    labels = _labels((_swap_first_two(lhs_spec), _swap_first_two(out_spec), _swap_first_two(rhs_spec)))
    new_fgc, new_bgc = (bgc, 1) if bgc > 1 else (1, fgc)
    g = _conv(lhs, ct, labels, rhs_dil, pads, lhs_dil, strides, fgc=new_fgc, bgc=new_bgc)
    assert g.aval.dims == k_shape, (g.aval, k_shape)
    return g


@vjp("convolution")
def _convolution(ct, eqn):
    lhs, rhs = eqn.operands
    a = eqn.attrs
    dn = ops.parse_dim_labels(a["dim_labels"])
    n = len(dn.input_spatial)
    strides, padding, lhs_dil, rhs_dil = ops.conv_window(a, n)
    fgc, bgc = a["feature_group_count"], a["batch_group_count"]
    d_lhs = d_rhs = None
    if eqn.active[0]:
        in_spatial = [lhs.aval.dims[d] for d in dn.input_spatial]
        d_lhs = _conv_input_ct(ct, rhs, in_spatial, dn, strides, padding, lhs_dil, rhs_dil,
                               fgc, bgc, lhs.aval.dims)
    if eqn.active[1]:
        k_spatial = [rhs.aval.dims[d] for d in dn.kernel_spatial]
        d_rhs = _conv_kernel_ct(ct, lhs, k_spatial, dn, strides, padding, lhs_dil, rhs_dil,
                                fgc, bgc, rhs.aval.dims)
    return [d_lhs, d_rhs]


# ----------------------------------------------------------------------------- reductions

@vjp("reduce")
def _reduce(ct, eqn):
    if len(eqn.operands) != 2:
        raise not_differentiable("a variadic reduce (e.g. the value of an argmax pair) has no VJP; "
                                 "reduce each array separately")
    x, init = eqn.operands
    dims = eqn.attrs["dimensions"]
    kind = computation_kind(eqn.attrs["to_apply"])
    kept = [d for d in range(x.aval.rank) if d not in dims]
    back = broadcast(ct, x.aval, kept)
    if kind == "add":
        d_init = reduce_sum(ct, range(ct.aval.rank)) if eqn.active[1] else None
        return [back, d_init]
    if kind in ("maximum", "minimum"):   # ties share the gradient evenly, like JAX
        hit = convert(compare(x, broadcast(eqn.out, x.aval, kept), "EQ"), x.aval.dtype)
        count = broadcast(reduce_sum(hit, dims), x.aval, kept)
        return [mul(back, div(hit, count)), None]
    if kind == "multiply":
        return _prod_ct(ct, x, init, dims, kept, eqn.active[1])
    raise not_differentiable(f"reduce with reducer {eqn.attrs['to_apply'].name} has no VJP; "
                             f"sum, max, min and prod reductions do")


def _prod_ct(ct, x, init, dims, kept, init_active):
    """d init*prod(x) / d x_i = init * (the product of the other elements). Computed with
    multiplies only, never prod / x_i (a division by zero when x_i = 0): the reduced
    elements become the rows of an (n, m) matrix whose product tree gives each row its
    exclusive product."""
    reduced = tuple(sorted(dims))
    perm = reduced + tuple(kept)
    moved_dims = tuple(x.aval.dims[d] for d in perm)
    n = math.prod(moved_dims[:len(reduced)])
    m = math.prod(moved_dims[len(reduced):])
    rows = reshape(transpose(x, perm), (n, m))
    ct_row = reshape(ct, (1, m))
    scaled = mul(ct_row, broadcast(init, ct_row.aval, ()))
    if n == 0:                                       # nothing reduced: the product is 1
        product, d_rows = full(ct_row.aval, 1), rows
    else:
        product, d_rows = _product_tree_vjp(rows, scaled)
    dx = transpose(reshape(d_rows, moved_dims), inverse_permutation(perm))
    d_init = reduce_sum(mul(ct_row, product), (0, 1)) if init_active else None
    return [dx, d_init]


def _product_tree_vjp(rows, ct):
    """rows: (n, m), n >= 1; ct: (1, m), the cotangent of their column products. Returns
    (the products (1, m), the cotangent of every row): rows are multiplied in pairs
    (a padding row of ones when n is odd) down to one, and each pair's cotangent is the
    cotangent of its product times the other element -- exact with zeros, O(n) work."""
    n, m = rows.aval.dims
    if n == 1:
        return rows, ct
    odd = n % 2
    if odd:
        rows = emit("concatenate", [rows, full(rows.aval.with_dims((1, m)), 1)], {"dimension": 0})
    half = (n + odd) // 2
    pairs = reshape(rows, (half, 2, m))
    first, second = (reshape(_take_index(pairs, 1, k), (half, m)) for k in (0, 1))
    product, d_pair = _product_tree_vjp(mul(first, second), ct)
    d_first, d_second = mul(d_pair, second), mul(d_pair, first)
    d_rows = emit("concatenate", [reshape(d_first, (half, 1, m)), reshape(d_second, (half, 1, m))],
                  {"dimension": 1})
    d_rows = reshape(d_rows, (2 * half, m))
    if odd:
        d_rows = emit("slice", [d_rows], {"start_indices": (0, 0), "limit_indices": (n, m)})
    return product, d_rows


def _take_index(t, dim: int, index: int):
    """t[..., index:index+1, ...] along `dim` (the dimension is kept, with size 1)."""
    starts = [0] * t.aval.rank
    limits = list(t.aval.dims)
    starts[dim], limits[dim] = index, index + 1
    return emit("slice", [t], {"start_indices": tuple(starts), "limit_indices": tuple(limits)})


@vjp("reduce_window")
def _reduce_window(ct, eqn):
    if len(eqn.operands) != 2:
        raise not_differentiable("a variadic reduce_window has no VJP")
    x, _ = eqn.operands
    kind = computation_kind(eqn.attrs["to_apply"])
    window, strides, padding, base, wdil = ops.window_params(eqn.attrs, x.aval.rank)
    if kind == "add":
        return [_window_sum_ct(ct, x, window, strides, padding, base, wdil), None]
    if kind in ("maximum", "minimum"):
        if any(d != 1 for d in base + wdil):
            raise not_differentiable("max/min reduce_window with dilation has no VJP")
        return [_window_extremum_ct(ct, x, kind, window, strides, padding), None]
    raise not_differentiable(f"reduce_window with reducer {eqn.attrs['to_apply'].name} has no VJP "
                             f"(sum, max and min windows do; cumprod is not differentiable)")


def _window_sum_ct(ct, x, window, strides, padding, base, wdil):
    """Each input feeds every window covering it: pad ct (strides become interior padding)
    and sum it over the same window, stepping by the base dilation."""
    pads = []
    for size, w, s, (lo, _), b, wd, o in zip(x.aval.dims, window, strides, padding, base, wdil,
                                              ct.aval.dims):
        before = _dilated(w, wd) - lo - 1
        after = _dilated(size, b) + _dilated(w, wd) - 1 - _dilated(o, s) - before
        pads.append((before, after, s - 1))
    # pad() needs non-negative interior; negative edges are fine for the op.
    padded = emit("pad", [ct, scalar(0, ct.aval.dtype)],
                  {"edge_padding_low": tuple(p[0] for p in pads),
                   "edge_padding_high": tuple(p[1] for p in pads),
                   "interior_padding": tuple(p[2] for p in pads)})
    add_comp = core.current_context().reducer("add", ct.aval.dtype)
    g = emit("reduce_window", [padded, scalar(0, ct.aval.dtype)],
             {"window_dimensions": tuple(window), "window_strides": tuple(base),
              "window_dilations": tuple(wdil), "to_apply": add_comp})
    assert g.aval.dims == x.aval.dims, (g.aval, x.aval)
    return g


def _window_extremum_ct(ct, x, kind, window, strides, padding):
    """Max-pool: the window's cotangent goes to the element it picked (select_and_scatter)."""
    dt = x.aval.dtype
    direction = "GE" if kind == "maximum" else "LE"
    chooser = scalar_computation(f"select_{direction.lower()}", dt,
                                 lambda b, p, q: b.emit("compare", [p, q], {"direction": direction}))
    add_comp = core.current_context().reducer("add", dt)
    return emit("select_and_scatter", [x, ct, scalar(0, dt)],
                {"window_dimensions": tuple(window), "window_strides": tuple(strides),
                 "padding": tuple(padding), "select": chooser, "scatter": add_comp})


@vjp("select_and_scatter")
def _select_and_scatter(ct, eqn):
    """Linear in `source`: each window reads back the cotangent at the position it picked,
    found by a (value, cotangent) reduce_window that keeps the pair `select` prefers.
    The picks are piecewise constant in the operand: no gradient flows to it."""
    x, source, init = eqn.operands
    a = eqn.attrs
    if computation_kind(a["scatter"]) != "add":
        raise not_differentiable("select_and_scatter with a non-add scatter has no VJP")
    if eqn.active[2]:
        raise not_differentiable("select_and_scatter's init value is not differentiable")
    dt = x.aval.dtype
    b = Builder(core.current_context().module, "select_pair")
    xa, ca, xb, cb = (b.parameter(Shape(dt, ()), n) for n in ("xa", "ca", "xb", "cb"))
    keep = b.emit("call", [xa, xb], {"to_apply": a["select"]})
    pair = b.emit("tuple", [b.emit("select", [keep, xa, xb]), b.emit("select", [keep, ca, cb])])
    reducer = b.build(pair)
    root = a["select"].root
    prefers_small = root.opcode == "compare" and root.attrs["direction"] in ("LE", "LT")
    info = np.finfo(dt.storage) if dt.is_float else np.iinfo(dt.storage)
    never_picked = (np.inf if prefers_small else -np.inf) if dt.is_float else \
        (info.max if prefers_small else info.min)     # the padding value
    outs = core.current_context().emit_multi(
        "reduce_window", [x, ct, scalar(never_picked, dt), scalar(0, dt)],
        {"window_dimensions": a["window_dimensions"], "window_strides": a["window_strides"],
         "padding": a["padding"], "to_apply": reducer})
    return [None, outs[1], None]


# ----------------------------------------------------------------------------- sort

def _sort_permutation(eqn) -> Tracer:
    """The permutation the sort applied along its dimension: sort an iota alongside."""
    operands = eqn.operands
    a = eqn.attrs
    dim = a["dimension"]
    shape = operands[0].aval
    idx_shape = Shape(dtypes.s32, shape.dims)
    iota = emit("iota", [], {"iota_dimension": dim}, shape=idx_shape)
    b = Builder(core.current_context().module, "compare_with_index")
    params = []
    for x in operands:
        params += [b.parameter(Shape(x.aval.dtype, ()), "a"), b.parameter(Shape(x.aval.dtype, ()), "b")]
    b.parameter(Shape(dtypes.s32, ()), "i"), b.parameter(Shape(dtypes.s32, ()), "j")
    comparator = b.build(b.emit("call", params, {"to_apply": a["comparator"]}))
    outs = core.current_context().emit_multi(
        "sort", list(operands) + [iota], {"dimension": dim, "is_stable": True, "comparator": comparator})
    return outs[-1]


def _unsort(perm: Tracer, ct: Tracer, dim: int) -> Tracer:
    """ct laid back in input order: sort (perm, ct) by perm."""
    s32 = Shape(dtypes.s32, ())
    b = Builder(core.current_context().module, "by_index")
    i, j = b.parameter(s32, "i"), b.parameter(s32, "j")
    b.parameter(Shape(ct.aval.dtype, ()), "a"), b.parameter(Shape(ct.aval.dtype, ()), "b")
    comparator = b.build(b.emit("compare", [i, j], {"direction": "LT"}))
    outs = core.current_context().emit_multi(
        "sort", [perm, ct], {"dimension": dim, "is_stable": True, "comparator": comparator})
    return outs[1]


@vjp("sort")
def _sort(ct, eqn):
    cts = ct if isinstance(ct, list) else [ct]
    if not any(c is not None for c in cts):
        return [None] * len(eqn.operands)
    perm = _sort_permutation(eqn)
    dim = eqn.attrs["dimension"]
    return [_unsort(perm, c, dim) if c is not None and active else None
            for c, active in zip(cts, eqn.active)]


# ----------------------------------------------------------------------------- collectives

@vjp("all_reduce")
def _all_reduce(ct, eqn):
    x, = eqn.operands
    reduction = eqn.attrs["reduction"]
    if reduction in ("sum", "mean"):      # the transpose of a sum over devices is a sum
        return [emit("all_reduce", [ct], {"reduction": reduction})]
    picked = convert(compare(x, eqn.out, "EQ"), x.aval.dtype)
    return [mul(emit("all_reduce", [ct], {"reduction": "sum"}), picked)]


def _this_process() -> int:
    from ..distributed import runtime
    return runtime.collectives().process_index


@vjp("all_gather")
def _all_gather(ct, eqn):
    # Process r's operand is row r on every process: its cotangent is the sum over
    # processes of their row r (each process traces its own program, so r is static).
    x, = eqn.operands
    r = _this_process()
    summed = emit("all_reduce", [ct], {"reduction": "sum"})
    dims = ct.aval.dims
    row = emit("slice", [summed], {"start_indices": (r,) + (0,) * len(x.aval.dims),
                                   "limit_indices": (r + 1,) + tuple(dims[1:]),
                                   "strides": (1,) * len(dims)})
    return [reshape(row, x.aval.dims)]


@vjp("collective_broadcast")
def _collective_broadcast(ct, eqn):
    # Every process's result is the root's operand: the root gets the sum of all the
    # cotangents, the other processes' operands were not used (zero).
    summed = emit("all_reduce", [ct], {"reduction": "sum"})
    return [summed if _this_process() == eqn.attrs["root"] else zeros(ct.aval)]
