"""Algebraic simplification: local identities as one pattern table (see compiler/rewrite.py).

Every rule is exact: the rewritten program computes the same bits as the original for
every input, inf, NaN and -0.0 included (the one latitude taken is the summation order
of dot_general, which its semantics leave unspecified). Each rule says why it is exact.

Identities that look right but are NOT exact, and are therefore absent:
  x * 0 -> 0 for floats       inf * 0 and NaN * 0 are NaN; -1 * 0 is -0.0
  x - x -> 0, x / x -> 1      inf - inf and 0 / 0 are NaN
  compare(x, x) for floats    NaN compares unequal to itself
  x + 0.0 -> x for floats     -0.0 + 0.0 is +0.0 (x + (-0.0) -> x is exact, and kept)
  exp(log x), log(exp x)      each side rounds; exp overflows; log of a negative is NaN
  sqrt(x) * sqrt(x) -> x      rounding; NaN for negative x
  (x + y) - y -> x            rounding, overflow
  x / c -> x * (1 / c)        unless 1 / c is exact, i.e. c is a power of two (kept)
  x * 2^k                     left alone: exact rewrites exist (x * 2 = x + x) but none
                              is cheaper than the multiply
  power(x, n), n > 4 or < -1  for floats: each extra multiply adds a rounding
Options that allow some of them, for programs known not to care:
  assume_finite=True   no float value is inf or NaN: x * 0 -> 0 (giving the constant's
                       zero even where the product would be -0.0), x - x -> 0 and
                       compare(x, x) for floats
  signed_zeros=False   -0.0 and +0.0 are interchangeable: x + 0.0 -> x, x - (-0.0) -> x
One option is on by default, and is the one exception to "every rule is exact":
  float_powers=True    float x**3 -> (x*x)*x and x**4 -> (x*x)*(x*x): two roundings, so up
                       to 2 ulps from the correctly rounded pow (measured: docs/decisions.md);
                       XLA and jax.lax.integer_pow compute them so. x**0, x**1, x**2 and
                       x**-1 are exact and always rewritten. False keeps the pass bit-exact.
"""
from __future__ import annotations

import numpy as np

from .. import dot_dims, dtypes
from ..dtypes import DType
from ..ir import Instruction
from ..rewrite import (SMALL_CONSTANT_ELEMENTS, Pat, RewritePass, Rule, RuleTable, const_value,
                       splat, splat_value, var)

x = var("x")


def _is_float(instr: Instruction) -> bool:
    return instr.shape.dtype.is_float


def _values_without_nan(ctx, instr: Instruction) -> bool:
    """Integers and pred never hold NaN or inf; floats do unless assume_finite."""
    return not _is_float(instr) or ctx.options.assume_finite


# ----------------------------------------------------------------------------- arithmetic identities

def _zero_is_neutral(ctx, zero: Instruction, exact_sign: bool) -> bool:
    """An integer zero always is; a float zero with the sign `exact_sign` (signbit) is
    for every x; the other sign only when signed zeros do not matter."""
    if not _is_float(zero):
        return True
    return bool(np.signbit(splat_value(zero))) == exact_sign or not ctx.options.signed_zeros


def add_zero(ctx, x, zero):
    # x + (-0.0) = x for every float x (even -0.0 and NaN); integer x + 0 = x.
    return x if _zero_is_neutral(ctx, zero, exact_sign=True) else None


def subtract_zero(ctx, x, zero):
    # x - (+0.0) = x + (-0.0) = x for every float x; integer x - 0 = x.
    return x if _zero_is_neutral(ctx, zero, exact_sign=False) else None


def multiply_one(ctx, x):
    # x * 1 = x exactly for every x: inf, NaN and -0.0 keep their value and sign.
    return x


def divide_one(ctx, x):
    # x / 1 = x exactly for every x (integer division by 1 truncates nothing).
    return x


def multiply_zero(ctx, x, zero):
    # Integers: x * 0 = 0 always (wrapping cannot produce anything else). Floats only with
    # assume_finite: inf * 0 = NaN otherwise.
    return zero if _values_without_nan(ctx, x) else None


def _exact_reciprocal(c: Instruction) -> float | None:
    """1 / c when c is a float splat of a power of two whose reciprocal is representable."""
    value = splat_value(c)
    if not _is_float(c) or value is None or not np.isfinite(value) or value == 0:
        return None
    if abs(np.frexp(float(value))[0]) != 0.5:
        return None                                          # not a power of two
    r = 1.0 / float(value)                                   # exact in float64
    with np.errstate(over="ignore"):
        stored = float(dtypes.canonicalize(np.asarray(r), c.shape.dtype))
    if not np.isfinite(r) or stored != r:
        return None                                          # 1 / c overflows the type
    return r


def divide_power_of_two(ctx, x, c):
    # x / 2^k and x * 2^-k are the same real number, rounded once by either op (2^-k is
    # exact), so they give the same bits for every x; multiplying is cheaper.
    r = _exact_reciprocal(c)
    if r is None:
        return None
    return ctx.emit("multiply", [x, ctx.splat(r, c.shape)])


def subtract_self(ctx, x):
    # Integers: x - x = 0 (wrapping included). Floats only with assume_finite (inf - inf = NaN);
    # then x - x = +0.0 exactly, -0.0 - -0.0 included.
    return ctx.splat(0, x.shape) if _values_without_nan(ctx, x) else None


def compare_self(ctx, x):
    # x == x, x <= x, x >= x hold and x != x, x < x, x > x fail for every value that is
    # not NaN: always for integers and pred, with assume_finite for floats.
    if not _values_without_nan(ctx, x):
        return None
    holds = ctx.instr.attrs["direction"] in ("EQ", "LE", "GE")
    return ctx.splat(holds, ctx.instr.shape)


def same_operands(ctx, x):
    # max(x, x) = min(x, x) = x and (x & x) = (x | x) = x, NaN included.
    return x


def double_negation(ctx, x):
    # -(-x) = x: negation flips the sign bit (floats) or wraps symmetrically (integers).
    return x


def double_not(ctx, x):
    # not(not x) = x: logical not for pred, bitwise not for integers; both are involutions.
    return x


def abs_abs(ctx, inner):
    # abs is idempotent: abs(abs x) = abs x (abs(MIN) = MIN for wrapping integers, again).
    return inner


# ----------------------------------------------------------------------------- power with a small integer exponent

# Exponents rewritten: 0..4 (at most two multiplies) and, for floats, -1.
SMALLEST_POWER, LARGEST_POWER = -1, 4


def _small_integer_exponent(c: Instruction) -> int | None:
    """n when every element of c is the integer n, SMALLEST_POWER <= n <= LARGEST_POWER."""
    value = splat_value(c)
    if value is None or not np.isfinite(value) or value != np.round(value):
        return None
    n = int(value)
    if not SMALLEST_POWER <= n <= LARGEST_POWER or (n < 0 and not _is_float(c)):
        return None       # integer x**-1 truncates 1/x (0 for x = 0): not a division
    return n


def _product_of_powers(ctx, x: Instruction, n: int) -> Instruction:
    """x**n (n >= 1) by square-and-multiply: squares x, x^2, x^4, ... times those the
    bits of n select; n = 2, 3, 4 take 1, 2, 2 multiplies."""
    result, square = None, x
    while True:
        if n & 1:
            result = square if result is None else ctx.emit("multiply", [result, square])
        n >>= 1
        if not n:
            return result
        square = ctx.emit("multiply", [square, square])


def power_small_integer(ctx, x, c):
    # Integers: x**n by squaring wraps exactly as the multiplies do (n >= 0). Floats, each
    # against the correctly rounded pow, -0.0, inf and NaN included:
    #   x**0 = 1 for every x, NaN too (C99 pow, np.power)
    #   x**1 = x, x**2 = x*x, x**-1 = 1/x: one rounding of the same real number, and the
    #     same signs of zero and infinity (pow(-0, -1) = -inf = 1 / -0)
    #   x**3, x**4: two roundings (float_powers); the signs and infinities still agree. An
    #     x*x that underflows is off by under half a subnormal ulp, and |x| < 1 scales
    #     that error down: still below the result's own ulp.
    n = _small_integer_exponent(c)
    if n >= 3 and _is_float(x) and not ctx.options.float_powers:
        return None
    if n == 0:
        return ctx.splat(1, ctx.instr.shape)
    if n == -1:
        return ctx.emit("divide", [ctx.splat(1, ctx.instr.shape), x])
    return _product_of_powers(ctx, x, n)


# ----------------------------------------------------------------------------- identities of data movement

def same_value(ctx, x):
    # The op moves no element: same dims and dtype, every element stays where it was.
    return x


def _is_identity_permutation(perm) -> bool:
    return tuple(perm) == tuple(range(len(perm)))


def _transpose_is_identity(t: Instruction) -> bool:
    return _is_identity_permutation(t.attrs["permutation"])


def _reshape_is_identity(r: Instruction) -> bool:
    return r.shape.dims == r.operands[0].shape.dims


def _broadcast_is_identity(b: Instruction) -> bool:
    return b.shape.dims == b.operands[0].shape.dims and \
        _is_identity_permutation(b.attrs["broadcast_dimensions"])


def _slice_is_identity(s: Instruction) -> bool:
    strides = s.attrs["strides"] or (1,) * s.shape.rank
    return all(st == 1 for st in strides) and all(b == 0 for b in s.attrs["start_indices"]) \
        and tuple(s.attrs["limit_indices"]) == s.operands[0].shape.dims


def _convert_is_identity(c: Instruction) -> bool:
    return c.shape.dtype == c.operands[0].shape.dtype


def _reverse_is_identity(r: Instruction) -> bool:
    return all(r.shape.dims[d] <= 1 for d in r.attrs["dimensions"])


def _pad_is_identity(p: Instruction) -> bool:
    a = p.attrs
    return not any(a["edge_padding_low"]) and not any(a["edge_padding_high"]) \
        and not any(a["interior_padding"] or ())


def _dynamic_slice_is_identity(d: Instruction) -> bool:
    return tuple(d.attrs["slice_sizes"]) == d.operands[0].shape.dims


def dynamic_slice_identity(ctx, d):
    # A window as big as the operand: the starts are clamped to 0 whatever they are.
    return d.operands[0]


def concatenate_single(ctx, x):
    # Concatenating one array is that array.
    return x


def get_of_tuple(ctx, t):
    # get_tuple_element(tuple(a, b, ...), i) is the i-th operand itself.
    return t.operands[ctx.instr.attrs["index"]]


# ----------------------------------------------------------------------------- composing data movement

def transpose_transpose(ctx, x, inner):
    # Moving elements twice is one move by the composed permutation; no value changes.
    outer_perm, inner_perm = ctx.instr.attrs["permutation"], inner.attrs["permutation"]
    perm = tuple(inner_perm[p] for p in outer_perm)
    if _is_identity_permutation(perm):
        return x
    return ctx.emit("transpose", [x], {"permutation": perm})


def reshape_reshape(ctx, x):
    # A row-major reshape only relabels dims; two relabellings are one.
    if ctx.instr.shape.dims == x.shape.dims:
        return x
    return ctx.emit("reshape", [x], shape=ctx.instr.shape)


def broadcast_broadcast(ctx, x, inner):
    # Operand dim k goes to inner dim i[k], which goes to result dim o[i[k]]: one broadcast
    # copies the same element to the same places.
    inner_dims, outer_dims = inner.attrs["broadcast_dimensions"], ctx.instr.attrs["broadcast_dimensions"]
    dims = tuple(outer_dims[d] for d in inner_dims)
    return ctx.emit("broadcast_in_dim", [x], {"broadcast_dimensions": dims}, shape=ctx.instr.shape)


def _is_splat_literal(instr: Instruction) -> bool:
    return const_value(instr) is not None and splat_value(instr) is not None


def broadcast_splat_constant(ctx, c):
    # A broadcast of a constant whose elements are all v is the constant v everywhere;
    # only small results become constants (a big one is better left a broadcast).
    if ctx.instr.shape.size > SMALL_CONSTANT_ELEMENTS:
        return None
    return ctx.splat(splat_value(c), ctx.instr.shape)


def _slice_params(s: Instruction):
    strides = s.attrs["strides"] or (1,) * s.shape.rank
    return s.attrs["start_indices"], strides


def slice_slice(ctx, x, inner):
    # Element j of the outer slice is x[s1 + (s2 + j*t2)*t1] = x[(s1 + s2*t1) + j*(t1*t2)]:
    # one slice with start s1 + s2*t1 and stride t1*t2 picks the same elements.
    s1, t1 = _slice_params(inner)
    s2, t2 = _slice_params(ctx.instr)
    starts, limits, strides = [], [], []
    for d, n in enumerate(ctx.instr.shape.dims):
        start = min(s1[d] + s2[d] * t1[d], x.shape.dims[d])
        stride = t1[d] * t2[d]
        starts.append(start)
        limits.append(start + (n - 1) * stride + 1 if n else start)
        strides.append(stride)
    return ctx.emit("slice", [x], {"start_indices": starts, "limit_indices": limits, "strides": strides})


def slice_concatenate(ctx, cat):
    # A slice of a concatenate (unit stride along the concatenated dim) reads only the
    # operands its window overlaps: the same slice of each of them, concatenated (one
    # operand: just its slice). Nothing is computed, fewer elements are moved.
    s, d = ctx.instr, cat.attrs["dimension"]
    starts, strides = _slice_params(s)
    if strides[d] != 1:
        return None
    lo, hi = starts[d], s.attrs["limit_indices"][d]
    pieces, offset = [], 0
    for operand in cat.operands:
        size = operand.shape.dims[d]
        a, b = max(lo, offset), min(hi, offset + size)
        if a < b:
            start, limit = list(starts), list(s.attrs["limit_indices"])
            start[d], limit[d] = a - offset, b - offset
            pieces.append(ctx.emit("slice", [operand], {"start_indices": start, "limit_indices": limit,
                                                         "strides": strides}))
        offset += size
    if not pieces:                  # an empty window: left to the other rules
        return None
    return pieces[0] if len(pieces) == 1 else ctx.emit("concatenate", pieces, {"dimension": d})


def _concatenates_along_same_dim(cat: Instruction) -> bool:
    return any(o.opcode == "concatenate" and o.attrs["dimension"] == cat.attrs["dimension"]
               for o in cat.operands)


def concatenate_concatenate(ctx, cat):
    # Concatenation is associative: an operand that is itself a concatenate along the
    # same dim contributes its operands in order.
    d, operands = cat.attrs["dimension"], []
    for o in cat.operands:
        inner = o.opcode == "concatenate" and o.attrs["dimension"] == d
        operands += list(o.operands) if inner else [o]
    return ctx.emit("concatenate", operands, {"dimension": d})


def slice_broadcast_scalar(ctx, b):
    # Every element of a broadcast scalar is the scalar: any slice of it is the scalar
    # broadcast to the slice's shape.
    return ctx.emit("broadcast_in_dim", [b.operands[0]], {"broadcast_dimensions": ()}, shape=ctx.instr.shape)


def reverse_reverse(ctx, x, inner):
    # Reversing a dim twice restores it: what is left is the dims reversed an odd number of times.
    dims = tuple(sorted(set(inner.attrs["dimensions"]) ^ set(ctx.instr.attrs["dimensions"])))
    if not dims:
        return x
    return ctx.emit("reverse", [x], {"dimensions": dims})


# ----------------------------------------------------------------------------- conversions

# Float formats: (significand bits including the implicit one, min normal exponent, max exponent).
_FLOAT_FORMATS = {"f16": (11, -14, 15), "bf16": (8, -126, 127), "f32": (24, -126, 127),
                  "f64": (53, -1022, 1023)}


def holds_exactly(src: DType, mid: DType) -> bool:
    """Every value of type `src` is exactly a value of type `mid`."""
    if src == mid or src.is_pred:
        return True                                   # pred's 0 and 1 are in every type
    if mid.is_pred or (src.is_float and not mid.is_float):
        return False
    if src.is_integer and mid.is_integer:
        a, b = np.iinfo(src.storage), np.iinfo(mid.storage)
        return b.min <= a.min and a.max <= b.max
    if src.is_integer:                                # integer -> float: enough significand
        magnitude_bits = src.bits - (src.kind == "signed")    # |s8| <= 2^7, exact as a power of 2
        return magnitude_bits <= _FLOAT_FORMATS[mid.name][0]
    (p1, lo1, hi1), (p2, lo2, hi2) = _FLOAT_FORMATS[src.name], _FLOAT_FORMATS[mid.name]
    return p2 >= p1 and lo2 <= lo1 and hi2 >= hi1   # (subnormals then fit too)


def convert_convert(ctx, x, mid):
    # When the middle type holds every source value exactly, the first convert changes no
    # value, and converting a value depends only on the value: skip the middle step.
    if not holds_exactly(x.shape.dtype, mid.shape.dtype):
        return None
    if ctx.instr.shape.dtype == x.shape.dtype:
        return x
    return ctx.emit("convert", [x], shape=ctx.instr.shape)


# ----------------------------------------------------------------------------- select

def select_constant_predicate(ctx, p, on_true, on_false):
    # A predicate known to be all true (all false) picks every element from one branch.
    return on_true if bool(splat_value(p)) else on_false


def select_same_branches(ctx, x):
    # Both branches are the same value: the predicate does not matter.
    return x


# ----------------------------------------------------------------------------- slices with constant starts

def _starts_are_constants(d: Instruction) -> bool:
    return all(const_value(s) is not None for s in d.operands[1:])


def dynamic_slice_constant_starts(ctx, d):
    # Constant starts, clamped as dynamic_slice clamps them (so the window fits), select the
    # same elements as a static slice.
    x, sizes = d.operands[0], d.attrs["slice_sizes"]
    starts = [min(max(int(const_value(s)), 0), dim - n)
              for s, dim, n in zip(d.operands[1:], x.shape.dims, sizes)]
    limits = [s + n for s, n in zip(starts, sizes)]
    return ctx.emit("slice", [x], {"start_indices": starts, "limit_indices": limits})


# ----------------------------------------------------------------------------- dot_general

def dot_transposed_operand(ctx, dot):
    # Transposed dim i of an operand is dim perm[i] of its input: naming that dim instead
    # multiplies the same pairs of elements and sums the same products, and the result dims
    # keep their order (only transposes that keep the free dims in order are folded). Only
    # the summation order may change, which dot_general leaves unspecified.
    folds = [f for f in dot_dims.operand_transposes(dot) if f.keeps_order]
    if not folds:
        return None
    operands, dims = dot_dims.fold(dot, folds)
    return ctx.emit("dot_general", operands, dims.attrs())


# ----------------------------------------------------------------------------- the table

def _splat_pred(instr: Instruction) -> bool:
    return instr.shape.dtype.is_pred and splat_value(instr) is not None


def _identity(name: str, opcode: str, predicate) -> Rule:
    return Rule(name, Pat(opcode, x, where=predicate), same_value)


RULES = RuleTable([
    # arithmetic
    Rule("add_zero", Pat("add", x, splat(0, "zero")), add_zero),
    Rule("subtract_zero", Pat("subtract", x, splat(0, "zero")), subtract_zero),
    Rule("subtract_self", Pat("subtract", x, x), subtract_self),
    Rule("multiply_one", Pat("multiply", x, splat(1)), multiply_one),
    Rule("multiply_zero", Pat("multiply", x, splat(0, "zero")), multiply_zero),
    Rule("divide_one", Pat("divide", x, splat(1)), divide_one),
    Rule("divide_power_of_two", Pat("divide", x, var("c", where=lambda c: _exact_reciprocal(c) is not None)),
         divide_power_of_two),
    Rule("power_small_integer",
         Pat("power", x, var("c", where=lambda c: _small_integer_exponent(c) is not None)),
         power_small_integer),
    Rule("same_operands", Pat(("maximum", "minimum", "and", "or"), x, x), same_operands),
    Rule("compare_self", Pat("compare", x, x), compare_self),
    Rule("double_negation", Pat("negate", Pat("negate", x)), double_negation),
    Rule("double_not", Pat("not", Pat("not", x)), double_not),
    Rule("abs_abs", Pat("abs", Pat("abs", name="inner")), abs_abs),
    # ops that move nothing
    _identity("transpose_identity", "transpose", _transpose_is_identity),
    _identity("reshape_identity", "reshape", _reshape_is_identity),
    _identity("broadcast_identity", "broadcast_in_dim", _broadcast_is_identity),
    _identity("slice_identity", "slice", _slice_is_identity),
    _identity("convert_identity", "convert", _convert_is_identity),
    _identity("reverse_identity", "reverse", _reverse_is_identity),
    Rule("pad_identity", Pat("pad", x, var(), where=_pad_is_identity), same_value),
    Rule("dynamic_slice_identity", Pat("dynamic_slice", name="d", where=_dynamic_slice_is_identity),
         dynamic_slice_identity),
    Rule("concatenate_single", Pat("concatenate", x), concatenate_single),
    Rule("get_of_tuple", Pat("get_tuple_element", Pat("tuple", name="t")), get_of_tuple),
    # two moves made one
    Rule("transpose_transpose", Pat("transpose", Pat("transpose", x, name="inner")), transpose_transpose),
    Rule("reshape_reshape", Pat("reshape", Pat("reshape", x)), reshape_reshape),
    Rule("broadcast_broadcast", Pat("broadcast_in_dim", Pat("broadcast_in_dim", x, name="inner")),
         broadcast_broadcast),
    Rule("broadcast_splat_constant", Pat("broadcast_in_dim", var("c", where=_is_splat_literal)),
         broadcast_splat_constant),
    Rule("slice_slice", Pat("slice", Pat("slice", x, name="inner")), slice_slice),
    Rule("reverse_reverse", Pat("reverse", Pat("reverse", x, name="inner")), reverse_reverse),
    Rule("slice_concatenate", Pat("slice", Pat("concatenate", name="cat")), slice_concatenate),
    Rule("concatenate_concatenate", Pat("concatenate", name="cat", where=_concatenates_along_same_dim),
         concatenate_concatenate),
    Rule("slice_broadcast_scalar",
         Pat("slice", Pat("broadcast_in_dim", name="b", where=lambda b: b.operands[0].shape.rank == 0)),
         slice_broadcast_scalar),
    Rule("convert_convert", Pat("convert", Pat("convert", x, name="mid")), convert_convert),
    Rule("dynamic_slice_constant_starts", Pat("dynamic_slice", name="d", where=_starts_are_constants),
         dynamic_slice_constant_starts),
    # select
    Rule("select_constant_predicate",
         Pat("select", var("p", where=_splat_pred), var("on_true"), var("on_false")),
         select_constant_predicate),
    Rule("select_same_branches", Pat("select", var(), x, x), select_same_branches),
    # dot_general
    Rule("dot_transposed_operand", Pat("dot_general", name="dot"), dot_transposed_operand),
])


class AlgebraicSimplifier(RewritePass):
    """Applies RULES everywhere until none matches. See the module docstring for the options."""
    name = "algsimp"
    tags = ("simplify",)
    table = RULES

    def __init__(self, assume_finite: bool = False, signed_zeros: bool = True,
                 float_powers: bool = True):
        super().__init__()
        self.assume_finite = assume_finite
        self.signed_zeros = signed_zeros
        self.float_powers = float_powers
