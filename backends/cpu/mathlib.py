"""Transcendental functions as vectorized LLVM IR: polynomial approximations, no libm.

`FUNCTIONS[op](builder, x)` emits `op(x)` inline for a value of type float, double,
<N x float> or <N x double> and returns the result, of the same type (`power` takes
`x, y`). One code path serves scalars and vectors: every constant is splatted to the
value's type by `Lanes`. `MathLib(module)` wraps each (op, type) once into an internal,
`alwaysinline` function `tessel.<op>.<type>` (`tessel.exp.v16f32`) and calls it:

    mathlib = MathLib(module)
    y = mathlib.call(builder, "exp", x)            # x: <16 x float>, or a float in a tail

Emitters may append basic blocks (sin/cos branch to a cold path for huge arguments);
the builder is left at the end of the block where the result is available.

Methods (docs/cpu-math.md has the accuracy tables and ranges):
- exp, expm1: Cody-Waite reduction x = k ln2 + r, |r| <= ln2/2, with ln2 split in a
  short head (k * head is exact) and a tail; expm1(r) by a minimax polynomial; 2^k
  built in the exponent bits, in two steps so that k may leave the normal range.
- log, log1p: x = 2^e (1 + f), 1 + f in [sqrt(1/2), sqrt(2)); log(1 + f) = 2 atanh(s),
  s = f / (2 + f), by an odd minimax series in s (fdlibm's arrangement). log1p adds the
  rounding error of 1 + x back as c / (1 + x).
- tanh = expm1(2|x|) / (expm1(2|x|) + 2) with the sign restored; logistic from
  exp(-|x|), choosing 1 / (1 + e) or e / (1 + e) so nothing cancels.
- erf: x (2/sqrt(pi) + x^2 P(x^2)) below 1; above, 1 - exp(-x^2) Q_i(|x| - m_i) with
  erfc(x) exp(x^2) fitted on a few intervals, coefficients selected per lane.
- sin, cos: x = n pi/2 + r by a three-part Cody-Waite reduction with FMA; lanes beyond
  its accurate range go to an exact Payne-Hanek reduction (2/pi in 24-bit chunks), a
  scalar routine called per lane from a cold branch. sin r and cos r by minimax
  polynomials, then the quadrant.
- power: exp(y log|x|) with the IEEE special cases of pow. f32 computes log and exp in
  f64; f64 carries log|x| and y log|x| as double-double into exp.
- atan2: a = min(|x|,|y|) / max(|x|,|y|) in [0, 1] reduced fdlibm-style to |u| <= 7/16
  (atan a = atan c + atan u, c in {0, 1/2, 1}, u formed from x and y with one rounding
  in the denominator), atan u by an odd minimax series; then the octant (pi/2 - t,
  pi - t, pi/2 + t) in double-double and the sign of y. f32 runs in f64.
- remainder (C fmod, the dividend's sign): exact. |x| mod |y| by steps that subtract
  q t, t = |y| 2^s scaled to keep the quotient q below 2^(p-1), so q t and the
  difference are exact (FMA); a data-dependent loop of ceil(exponent gap / (p - 2))
  steps, one for quotients below 2^(p-1). f32 runs in f64 (exact, fewer steps).

The coefficients are minimax (Remez) fits made with the script in docs/cpu-math.md;
the splits of ln2, pi/2, 2/pi and 2/sqrt(pi) are derived below from exact big-integer
values of pi and ln2 rather than typed in.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from math import isqrt
from typing import Callable, Sequence

from llvmlite import ir

I32 = ir.IntType(32)
I64 = ir.IntType(64)


# ------------------------------------------------------------------------------ formats

@dataclass(frozen=True)
class Format:
    """Bit-level facts of an IEEE binary format."""
    name: str            # "f32", "f64": also the suffix of the function names
    bits: int
    mantissa: int        # explicit fraction bits
    pack: str            # struct code

    @property
    def precision(self) -> int:
        return self.mantissa + 1

    @property
    def bias(self) -> int:
        return (1 << (self.bits - self.mantissa - 2)) - 1

    @property
    def min_normal(self) -> float:
        return 2.0 ** (1 - self.bias)

    def ir_type(self) -> ir.Type:
        return ir.FloatType() if self.bits == 32 else ir.DoubleType()

    def to_bits(self, value: float) -> int:
        """The integer with the bits of `value` (signed, as LLVM's iN constants are)."""
        code = "i" if self.bits == 32 else "q"
        return struct.unpack(f"<{code}", struct.pack(f"<{self.pack}", value))[0]


F32 = Format("f32", 32, 23, "f")
F64 = Format("f64", 64, 52, "d")
FORMATS = {"float": F32, "double": F64}     # keyed by str(ir type)


# ------------------------------------------------------- exact constants and their splits

_BITS = 1400                  # fixed-point precision of the big-integer constants


def _arctan_series(n: int, alternate: bool) -> int:
    """atan(1/n) (alternate) or atanh(1/n), times 2^_BITS, by its Taylor series."""
    one = 1 << (_BITS + 32)   # 32 guard bits absorb the truncation of every term
    power, total, k, sign = one // n, one // n, 1, 1
    while power:
        power //= n * n
        k += 2
        sign = -sign if alternate else 1
        total += sign * (power // k)
    return total >> 32


_PI = Fraction(16 * _arctan_series(5, True) - 4 * _arctan_series(239, True), 1 << _BITS)  # Machin
_LN2 = Fraction(2 * _arctan_series(3, False), 1 << _BITS)                            # 2 atanh(1/3)
_ATAN_HALF = Fraction(_arctan_series(2, True), 1 << _BITS)                           # atan(1/2)


def _round(value: Fraction, bits: int) -> float:
    """`value` rounded to nearest (ties to even) with `bits` significant bits."""
    if value == 0:
        return 0.0
    exponent = value.numerator.bit_length() - value.denominator.bit_length()
    if Fraction(2) ** exponent > abs(value):
        exponent -= 1
    scale = Fraction(2) ** (bits - 1 - exponent)
    return float(Fraction(round(value * scale)) / scale)


def _split(value: Fraction, fmt: Format, head_bits: int | None = None) -> tuple[float, float]:
    """(hi, lo) with hi + lo = value to about head_bits + precision bits; hi has
    head_bits significant bits so that hi * k is exact for small integers k."""
    hi = _round(value, head_bits or fmt.precision)
    return hi, _round(value - Fraction(hi), fmt.precision)


def _sqrt(value: Fraction) -> Fraction:
    return Fraction(isqrt(int(value * (1 << (2 * _BITS)))), 1 << _BITS)


@lru_cache(maxsize=None)
def _two_over_pi_chunks(count: int = 52) -> tuple[float, ...]:
    """2/pi = sum_j C_j 2^(-24 (j + 1)), C_j integers in [0, 2^24): Payne-Hanek's table.
    The largest double (E = 971) starts at chunk 40 and reads 8: 52 leaves a margin."""
    bits = 24 * count
    fixed = (2 << bits) * _PI.denominator // _PI.numerator
    return tuple(float((fixed >> (bits - 24 * (j + 1))) & 0xFFFFFF) for j in range(count))


# ------------------------------------------------------------------ per-format parameters

@dataclass(frozen=True)
class ErfPiece:
    start: float                 # the piece covers [start, next piece's start)
    mid: float                   # polynomial variable is |x| - mid
    coeffs: tuple[float, ...]    # erfc(|x|) exp(x^2) ~ sum c_j (|x| - mid)^j


@dataclass(frozen=True)
class Params:
    """Everything format-specific the emitters use. Polynomials list c0 first."""
    exp_range: tuple[float, float]   # exp's argument is clamped here: e^lo rounds to 0, e^hi to inf
    expm1_min: float                 # expm1(x) rounds to -1 below this
    tanh_max: float                  # tanh(x) rounds to 1 above this
    erf_max: float                   # erf(x) rounds to 1 above this
    trig_fast_max: float             # |x| up to which sin/cos's Cody-Waite reduction is accurate
    expm1_poly: tuple[float, ...]    # expm1(r) = r + r^2 P(r), |r| <= ln2/2
    log_poly: tuple[float, ...]      # 2 atanh(s) = 2s + s z T(z), z = s^2, |s| <= 0.1716
    sin_poly: tuple[float, ...]      # sin(r) = r + r z S(z), z = r^2, |r| <= pi/4
    cos_poly: tuple[float, ...]      # cos(r) = 1 - z/2 + z^2 C(z)
    erf_poly: tuple[float, ...]      # erf(x) = x (2/sqrt(pi) + t E(t)), t = x^2, |x| < 1
    erf_pieces: tuple[ErfPiece, ...]
    atan_poly: tuple[float, ...]     # atan(u) = u + u z A(z), z = u^2, |u| <= 7/16, in f64
                                     # (f32's atan2 runs in f64: a shorter fit suffices)


# Minimax fits, output of the script in docs/cpu-math.md, with the weighted error of the
# rounded coefficients: f32 expm1 2^-28.8, log 2^-28.8, sin 2^-31.0, cos 2^-31.8, erf
# 2^-28.9 / 2^-29.4 / 2^-40.7; f64 expm1 2^-59.9, log 2^-69.0 (2^-59.7 with 2/3 rounded),
# sin 2^-59.1, cos 2^-63.0, erf 2^-57.5 / 2^-57.3 / 2^-63.9 / 2^-72.6; atan (both in f64)
# 2^-33.8 for f32's atan2, 2^-59.5 for f64's.
PARAMS = {
    "f32": Params(
        exp_range=(-104.0, 89.0),
        expm1_min=-30.0,
        tanh_max=9.5,
        erf_max=4.0,
        trig_fast_max=131072.0,
        expm1_poly=(0.5, 0.1666666567325592, 0.041666362434625626, 0.008333389647305012,
                    0.001394063699990511, 0.00019845878705382347),
        log_poly=(0.6666674017906189, 0.3998100757598877, 0.2979399263858795),
        sin_poly=(-0.1666666716337204, 0.00833340547978878, -0.00019864231580868363,
                  2.9469094897649484e-06),
        cos_poly=(0.0416666604578495, -0.0013887918321415782, 2.4492586817359552e-05),
        erf_poly=(-0.37612637877464294, 0.11283709108829498, -0.026858560740947723,
                  0.0051967385224998, -0.0008080044062808156, 8.07417745818384e-05),
        erf_pieces=(
            ErfPiece(1.0, 1.75, (0.28497225046157837, -0.13097643852233887,
                                 0.055762141942977905, -0.022260641679167747,
                                 0.008419528603553772, -0.0030045355670154095,
                                 0.0009969364618882537, -0.0003929312224499881,
                                 0.00014703295892104506)),
            ErfPiece(2.5, 3.25, (0.1663353443145752, -0.04719967395067215,
                                 0.012935969047248363, -0.0034337053075432777,
                                 0.0009048550855368376, -0.00019743115990422666,
                                 3.107221709797159e-05, -8.023896953091025e-05,
                                 -3.203325468348339e-05)),
        ),
        atan_poly=(-0.3333333320458751, 0.19999927940180123, -0.14282072647145905,
                   0.11040617291340625, -0.0843508243164157, 0.04632100550961003),
    ),
    "f64": Params(
        exp_range=(-746.0, 710.0),
        expm1_min=-40.0,
        tanh_max=20.0,
        erf_max=6.0,
        trig_fast_max=2.0 ** 30,
        expm1_poly=(0.5, 0.16666666666666677, 0.04166666666666651, 0.008333333333321683,
                    0.0013888888888962422, 0.000198412698859932, 2.480158717247445e-05,
                    2.755724434377894e-06, 2.755740266542666e-07, 2.5108990424082454e-08,
                    2.0875332751998095e-09),
        # T = 2/3 + z T1(z): T1 is fitted with 2/3 exact, so power can carry 2/3 as a
        # double-double and use T1 as is.
        log_poly=(float(Fraction(2, 3)), 0.4, 0.28571428571414376, 0.22222222226865895,
                  0.1818181760950692, 0.1538464657753088, 0.13332818282870487,
                  0.11745688006814595, 0.11405776877977335),
        sin_poly=(-0.16666666666666666, 0.008333333333331796, -0.00019841269838937159,
                  2.7557317879312055e-06, -2.505174336844671e-08, 1.6011884930960586e-10,
                  -5.289110418804302e-13),
        cos_poly=(0.041666666666666664, -0.0013888888888883536, 2.4801587294563376e-05,
                  -2.7557315649662287e-07, 2.087588169320623e-09, -1.1367109550665991e-11),
        erf_poly=(-0.37612638903183754, 0.11283791670956655, -0.026866170645591908,
                  0.005223977630955824, -0.000854832737612808, 0.00012055346565466906,
                  -1.4925983299255953e-05, 1.6467401558983455e-06, -1.64193584021078e-07,
                  1.512880241774618e-08, -1.319404033392975e-09, 9.039649987532186e-11),
        erf_pieces=(
            ErfPiece(1.0, 1.5, (0.3215854164543175, -0.16362291773255988, 0.07615103985547778,
                                -0.032930905299596545, 0.013377340952990953,
                                -0.005145957546344417, 0.0018861348807258178,
                                -0.0006619301008831013, 0.00022330986838596328,
                                -7.265855241053685e-05, 2.2865095880574976e-05,
                                -6.977130856401547e-06, 2.0627066416307905e-06,
                                -5.895697008329424e-07, 1.7919287450403212e-07,
                                -5.499849660418711e-08)),
            ErfPiece(2.0, 2.75, (0.1936620962790687, -0.06323763756063536, 0.01975859298731708,
                                 -0.0059343378969745715, 0.0017195818855798145,
                                 -0.0004821950850109995, 0.00013118179610029684,
                                 -3.469861436094073e-05, 8.940183749166415e-06,
                                 -2.247325889475326e-06, 5.519003927447842e-07,
                                 -1.3280730838619097e-07, 3.127699472833816e-08,
                                 -6.888067800112013e-09, 1.6772204207649917e-09,
                                 -5.715313443987389e-10)),
            ErfPiece(3.5, 4.75, (0.11630270721024741, -0.023503448598086254,
                                 0.004661326369020202, -0.0009080988980275784,
                                 0.0001739283034145892, -3.277577682627725e-05,
                                 6.081117212031785e-06, -1.1115767381346301e-06,
                                 2.0028656141897216e-07, -3.5585309553462816e-08,
                                 6.248401517146188e-09, -1.0876948672476498e-09,
                                 1.8114178577282378e-10, -2.866478177042719e-11,
                                 6.377054684601372e-12, -1.315166726155136e-12)),
        ),
        atan_poly=(-0.3333333333333333, 0.1999999999998896, -0.14285714283827916,
                   0.11111110982260008, -0.0909090434327194, 0.07692200760119752,
                   -0.0666509681202562, 0.05866825288914987, -0.05158360049166151,
                   0.042811427111940394, -0.028768518386591075, 0.010855600740090265),
    ),
}


@dataclass(frozen=True)
class Splits:
    """Constants split into head + tail, derived from the exact values above."""
    ln2: tuple[float, float]         # head exact times any exponent k of the format
    log2e: float
    pio2: tuple[float, float, float]  # three parts for the FMA Cody-Waite reduction
    two_over_pi: float
    two_over_sqrt_pi: tuple[float, float]
    two_thirds: tuple[float, float]
    pio2_pair: tuple[float, float]        # pi/2, pi/4, pi and atan(1/2) as hi + lo
    pio4_pair: tuple[float, float]
    pi_pair: tuple[float, float]
    atan_half: tuple[float, float]


@lru_cache(maxsize=None)
def splits(fmt: Format) -> Splits:
    # k * ln2_hi must be exact for |k| < 2^(exponent bits + 1): leave that many zeros.
    ln2 = _split(_LN2, fmt, head_bits=fmt.precision - (fmt.bits - fmt.mantissa))
    p1 = _round(_PI / 2, fmt.precision)
    p2 = _round(_PI / 2 - Fraction(p1), fmt.precision)
    p3 = _round(_PI / 2 - Fraction(p1) - Fraction(p2), fmt.precision)
    return Splits(ln2=ln2, log2e=_round(1 / _LN2, fmt.precision), pio2=(p1, p2, p3),
                  two_over_pi=_round(2 / _PI, fmt.precision),
                  two_over_sqrt_pi=_split(2 / _sqrt(_PI), fmt),
                  two_thirds=_split(Fraction(2, 3), fmt),
                  pio2_pair=_split(_PI / 2, fmt), pio4_pair=_split(_PI / 4, fmt),
                  pi_pair=_split(_PI, fmt), atan_half=_split(_ATAN_HALF, fmt))


# ------------------------------------------------------------------------------- lanes

def type_suffix(ty: ir.Type) -> str:
    """LLVM's overload suffix: f32, f64, v16f32, v8i64, ..."""
    if isinstance(ty, ir.VectorType):
        return f"v{ty.count}{type_suffix(ty.element)}"
    if isinstance(ty, ir.IntType):
        return f"i{ty.width}"
    return FORMATS[str(ty)].name


class Lanes:
    """Arithmetic on one floating-point type, scalar or vector, for the emitters.

    Python floats and ints are splatted to the type; comparisons give i1 or <N x i1>;
    `bits` views a value as integers of the same width and shape."""

    def __init__(self, builder: ir.IRBuilder, ty: ir.Type):
        self.b = builder
        self.ty = ty
        self.count = ty.count if isinstance(ty, ir.VectorType) else None
        element = ty.element if self.count else ty
        if str(element) not in FORMATS:
            raise TypeError(f"mathlib: expected float, double or a vector of them, got {ty}")
        self.fmt = FORMATS[str(element)]
        self.ity = self._shaped(ir.IntType(self.fmt.bits))
        self.params = PARAMS[self.fmt.name]
        self.splits = splits(self.fmt)

    def _shaped(self, element: ir.Type) -> ir.Type:
        return ir.VectorType(element, self.count) if self.count else element

    def like(self, fmt: Format) -> Lanes:
        """The same shape in another format (f32 lanes widened to f64, say)."""
        return Lanes(self.b, self._shaped(fmt.ir_type()))

    # constants
    def c(self, value) -> ir.Value:
        if isinstance(value, ir.Value):
            return value
        scalar = ir.Constant(self.fmt.ir_type(), float(value))
        return ir.Constant(self.ty, [scalar] * self.count) if self.count else scalar

    def i(self, value) -> ir.Value:
        if isinstance(value, ir.Value):
            return value
        scalar = ir.Constant(ir.IntType(self.fmt.bits), int(value))
        return ir.Constant(self.ity, [scalar] * self.count) if self.count else scalar

    # float arithmetic
    def add(self, a, b): return self.b.fadd(self.c(a), self.c(b))
    def sub(self, a, b): return self.b.fsub(self.c(a), self.c(b))
    def mul(self, a, b): return self.b.fmul(self.c(a), self.c(b))
    def div(self, a, b): return self.b.fdiv(self.c(a), self.c(b))
    def neg(self, a): return self.b.fneg(self.c(a))

    def fma(self, a, b, c):
        return self.call("llvm.fma", a, b, c)

    def abs(self, a): return self.call("llvm.fabs", a)
    def rint(self, a): return self.call("llvm.rint", a)
    def trunc(self, a): return self.call("llvm.trunc", a)
    def copysign(self, magnitude, sign): return self.call("llvm.copysign", magnitude, sign)

    def call(self, intrinsic: str, *args):
        module = self.b.module
        name = f"{intrinsic}.{type_suffix(self.ty)}"
        fn = module.globals.get(name)
        if fn is None:
            fn = ir.Function(module, ir.FunctionType(self.ty, [self.ty] * len(args)), name)
        return self.b.call(fn, [self.c(a) for a in args])

    def poly(self, x, coeffs: Sequence) -> ir.Value:
        """sum coeffs[j] x^j by Horner's rule with FMA (one rounding per step)."""
        acc = self.c(coeffs[-1])
        for coeff in reversed(coeffs[:-1]):
            acc = self.fma(acc, x, coeff)
        return acc

    # comparisons: ordered (false if either side is NaN) except `ne` and `isnan`
    def lt(self, a, b): return self.b.fcmp_ordered("<", self.c(a), self.c(b))
    def le(self, a, b): return self.b.fcmp_ordered("<=", self.c(a), self.c(b))
    def gt(self, a, b): return self.b.fcmp_ordered(">", self.c(a), self.c(b))
    def ge(self, a, b): return self.b.fcmp_ordered(">=", self.c(a), self.c(b))
    def eq(self, a, b): return self.b.fcmp_ordered("==", self.c(a), self.c(b))
    def ne(self, a, b): return self.b.fcmp_unordered("!=", self.c(a), self.c(b))
    def isnan(self, a): return self.b.fcmp_unordered("uno", a, a)
    def both(self, a, b): return self.b.and_(a, b)
    def either(self, a, b): return self.b.or_(a, b)
    def not_(self, a): return self.b.not_(a)

    def select(self, cond, a, b):
        return self.b.select(cond, self.c(a), self.c(b))

    def minimum(self, x, hi):
        """min(x, hi), keeping NaN (the compare is false for it)."""
        return self.select(self.gt(x, hi), hi, x)

    def clamp(self, x, lo, hi):
        """x limited to [lo, hi], with NaN sent to hi: the result is always a number, so
        the integer arithmetic that follows never sees a NaN (callers restore NaN)."""
        x = self.select(self.b.fcmp_unordered(">", x, self.c(hi)), hi, x)
        return self.select(self.lt(x, lo), lo, x)

    def any(self, cond) -> ir.Value:
        """i1: is `cond` true in some lane?"""
        if not self.count:
            return cond
        packed = self.b.bitcast(cond, ir.IntType(self.count))
        return self.b.icmp_unsigned("!=", packed, ir.Constant(ir.IntType(self.count), 0))

    # integer view
    def bits(self, a): return self.b.bitcast(a, self.ity)
    def from_bits(self, a): return self.b.bitcast(a, self.ty)
    def iadd(self, a, b): return self.b.add(self.i(a), self.i(b))
    def isub(self, a, b): return self.b.sub(self.i(a), self.i(b))
    def iand(self, a, b): return self.b.and_(self.i(a), self.i(b))
    def shl(self, a, n): return self.b.shl(self.i(a), self.i(n))
    def ashr(self, a, n): return self.b.ashr(self.i(a), self.i(n))
    def igt(self, a, b): return self.b.icmp_signed(">", self.i(a), self.i(b))
    def inz(self, a): return self.b.icmp_signed("!=", self.i(a), self.i(0))
    def to_float(self, a): return self.b.sitofp(a, self.ty)

    def round_int(self, t) -> tuple[ir.Value, ir.Value]:
        """(rint(t) as float, as integer) for |t| < 2^(mantissa - 1), by adding and
        subtracting 1.5 * 2^mantissa: the sum's low bits then hold the integer. No
        float-to-int conversion, so no poison for out-of-range or NaN lanes."""
        shifter = 1.5 * 2.0 ** self.fmt.mantissa
        u = self.add(t, shifter)
        return self.sub(u, shifter), self.isub(self.bits(u), self.fmt.to_bits(shifter))

    def exp2i(self, k) -> ir.Value:
        """2^k for integer lanes k in the normal exponent range."""
        return self.from_bits(self.shl(self.iadd(k, self.fmt.bias), self.fmt.mantissa))

    def ldexp(self, y, k) -> ir.Value:
        """y 2^k for k up to twice the exponent range: two normal factors, one rounding."""
        half = self.ashr(k, 1)
        return self.mul(self.mul(y, self.exp2i(half)), self.exp2i(self.isub(k, half)))


# ------------------------------------------------------------------------- exp, expm1

def _reduce_ln2(L: Lanes, x) -> tuple[ir.Value, ir.Value, ir.Value]:
    """(r, k as float, k as int) with x = k ln2 + r, |r| <= ln2/2 (x already clamped)."""
    hi, lo = L.splits.ln2
    kf, ki = L.round_int(L.mul(x, L.splits.log2e))
    r = L.fma(L.neg(kf), hi, x)        # exact: k * hi has spare low bits (Cody-Waite)
    return L.fma(L.neg(kf), lo, r), kf, ki


def _expm1_poly(L: Lanes, r) -> ir.Value:
    return L.fma(L.mul(r, r), L.poly(r, L.params.expm1_poly), r)


def _exp(L: Lanes, x, x_lo=None) -> ir.Value:
    """e^(x + x_lo); x_lo is an optional low part (double-double input, from power)."""
    lo, hi = L.params.exp_range
    r, _, k = _reduce_ln2(L, L.clamp(x, lo, hi))
    if x_lo is not None:
        r = L.add(r, x_lo)
    y = L.ldexp(L.add(_expm1_poly(L, r), 1.0), k)
    return L.select(L.isnan(x), x, y)


def _expm1(L: Lanes, x) -> ir.Value:
    """2^k (1 + r + q) - 1 = (2^k r + (2^k - 1)) + 2^k q, q = r^2 P(r): the larger part
    rounds once and the small q is added by FMA; for k = 0 this is r + q, so small
    |x| keeps its relative accuracy. 2^k overflows for the top k, so it is capped at
    the largest exponent and the result doubled there."""
    emax = L.fmt.bias
    r, _, k = _reduce_ln2(L, L.clamp(x, L.params.expm1_min, L.params.exp_range[1]))
    q = L.mul(L.mul(r, r), L.poly(r, L.params.expm1_poly))
    top = L.igt(k, emax)
    scale = L.exp2i(L.b.select(top, L.i(emax), k))
    y = L.fma(scale, q, L.fma(scale, r, L.sub(scale, 1.0)))
    y = L.mul(y, L.select(top, 2.0, 1.0))
    y = L.select(L.eq(x, 0.0), x, y)          # expm1(-0) = -0
    return L.select(L.isnan(x), x, y)


# ------------------------------------------------------------------------- log, log1p

def _log_split(L: Lanes, x) -> tuple[ir.Value, ir.Value]:
    """(e, f) with x = 2^e (1 + f), 1 + f in [sqrt(1/2), sqrt(2)), e a float and f exact.
    Meaningful for finite x > 0 (subnormals are scaled into the normal range first);
    other lanes give finite garbage that the callers replace."""
    fmt = L.fmt
    tiny = L.lt(x, fmt.min_normal)
    x = L.select(tiny, L.mul(x, 2.0 ** fmt.precision), x)
    # Subtracting sqrt(1/2)'s bits makes the exponent field count from m's binade.
    offset = fmt.to_bits(0.5 ** 0.5)
    d = L.isub(L.bits(x), offset)
    e = L.iadd(L.ashr(d, fmt.mantissa), L.b.select(tiny, L.i(-fmt.precision), L.i(0)))
    m = L.from_bits(L.iadd(L.iand(d, (1 << fmt.mantissa) - 1), offset))
    return L.to_float(e), L.sub(m, 1.0)


def _log_assemble(L: Lanes, e, f, extra=None) -> ir.Value:
    """e ln2 + log(1 + f) (+ extra, a small correction). log(1 + f) = 2 atanh(s),
    s = f / (2 + f), arranged as f - hfsq + s (hfsq + R) with hfsq = f^2 / 2: the
    rounding error of s then only touches the small term s (hfsq + R)."""
    hi, lo = L.splits.ln2
    s = L.div(f, L.add(f, 2.0))
    z = L.mul(s, s)
    hfsq = L.mul(L.mul(f, f), 0.5)
    R = L.mul(z, L.poly(z, L.params.log_poly))
    small = L.mul(e, lo) if extra is None else L.fma(e, lo, extra)
    small = L.fma(s, L.add(hfsq, R), small)
    return L.fma(e, hi, L.sub(f, L.sub(hfsq, small)))


def _log_specials(L: Lanes, x, y, at_zero) -> ir.Value:
    """log's IEEE cases for an argument x whose log is `y`: x = 0 is `at_zero`, x = inf
    is inf, x < 0 is NaN, NaN stays NaN."""
    y = L.select(L.eq(x, float("inf")), float("inf"), y)
    y = L.select(L.eq(x, 0.0), at_zero, y)
    y = L.select(L.lt(x, 0.0), float("nan"), y)
    return L.select(L.isnan(x), x, y)


def _log(L: Lanes, x) -> ir.Value:
    e, f = _log_split(L, x)
    return _log_specials(L, x, _log_assemble(L, e, f), float("-inf"))


def _log1p(L: Lanes, x) -> ir.Value:
    """log(u) + c/u for u = 1 + x rounded and c its rounding error (TwoSum, exact)."""
    u, c = _two_sum(L, 1.0, x)
    e, f = _log_split(L, u)
    y = _log_assemble(L, e, f, extra=L.div(c, u))
    y = L.select(L.eq(x, 0.0), x, y)                     # log1p(-0) = -0
    return _log_specials(L, u, y, float("-inf"))         # u = 0 at x = -1, u < 0 below


# ------------------------------------------------------------------ tanh, logistic, erf

def _tanh(L: Lanes, x) -> ir.Value:
    """e / (e + 2), e = expm1(2|x|): relative accuracy near 0 comes from expm1; the
    argument is capped where tanh rounds to 1 (so e never overflows)."""
    a = L.minimum(L.abs(x), L.params.tanh_max)
    e = _expm1(L, L.add(a, a))
    return L.copysign(L.div(e, L.add(e, 2.0)), x)


def _logistic(L: Lanes, x) -> ir.Value:
    """1 / (1 + e) for x >= 0 and e / (1 + e) for x < 0, e = exp(-|x|) <= 1: no
    cancellation, and e / (1 + e) = e keeps tiny results (even subnormal) exact."""
    e = _exp(L, L.neg(L.abs(x)))
    return L.div(L.select(L.lt(x, 0.0), e, 1.0), L.add(e, 1.0))


def _erf(L: Lanes, x) -> ir.Value:
    p = L.params
    a = L.minimum(L.abs(x), p.erf_max)
    t = L.mul(a, a)
    # |x| < 1: x (2/sqrt(pi) + t E(t)), the constant split so the leading term is exact.
    c_hi, c_lo = L.splits.two_over_sqrt_pi
    small = L.fma(a, c_hi, L.mul(a, L.fma(t, L.poly(t, p.erf_poly), c_lo)))
    # |x| >= 1: 1 - exp(-x^2) Q(|x|), Q = erfc exp(x^2) by pieces chosen per lane.
    q = _piecewise_poly(L, a, p.erf_pieces)
    t_lo = L.fma(a, a, L.neg(t))                       # x^2 = t + t_lo exactly
    big = L.sub(1.0, L.mul(_exp(L, L.neg(t), L.neg(t_lo)), q))
    return L.copysign(L.select(L.lt(a, 1.0), small, big), x)


def _piecewise_poly(L: Lanes, a, pieces: Sequence[ErfPiece]) -> ir.Value:
    """Horner on a - mid with each lane's coefficients picked by selects: one
    polynomial evaluation however many pieces (they all have the same degree)."""
    in_piece = [L.ge(a, piece.start) for piece in pieces[1:]]

    def pick(values):
        value = L.c(values[0])
        for cond, v in zip(in_piece, values[1:]):
            value = L.select(cond, v, value)
        return value

    u = L.sub(a, pick([piece.mid for piece in pieces]))
    degree = len(pieces[0].coeffs)
    acc = pick([piece.coeffs[-1] for piece in pieces])
    for j in reversed(range(degree - 1)):
        acc = L.fma(acc, u, pick([piece.coeffs[j] for piece in pieces]))
    return acc


# ---------------------------------------------------------------------------- sin, cos

def _sin(L: Lanes, x) -> ir.Value:
    y = _sincos(L, x, quadrant_shift=0)
    return L.select(L.eq(x, 0.0), x, y)                   # sin(-0) = -0


def _cos(L: Lanes, x) -> ir.Value:
    return _sincos(L, x, quadrant_shift=1)              # cos x = sin(x + pi/2)


def _sincos(L: Lanes, x, quadrant_shift: int) -> ir.Value:
    r, n = _reduce_pio2(L, x)
    n = L.iadd(n, quadrant_shift)
    z = L.mul(r, r)
    sin_r = L.fma(L.mul(r, z), L.poly(z, L.params.sin_poly), r)
    cos_r = L.fma(L.mul(z, z), L.poly(z, L.params.cos_poly), L.fma(z, -0.5, 1.0))
    y = L.b.select(L.inz(L.iand(n, 1)), cos_r, sin_r)
    y = L.b.select(L.inz(L.iand(n, 2)), L.neg(y), y)
    finite = L.lt(L.abs(x), float("inf"))
    return L.select(finite, y, float("nan"))              # sin(inf) = NaN, NaN stays


def _reduce_pio2(L: Lanes, x) -> tuple[ir.Value, ir.Value]:
    """(r, n) with x = n pi/2 + r, |r| <= pi/4 (n as integer lanes, only n mod 4 used).

    Cody-Waite in three parts with FMA: x - n p1 is exact, the later steps round
    once each. Lanes with |x| beyond `trig_fast_max` (finite) take an exact reduction
    in a cold branch; the branch is skipped when no lane needs it."""
    p1, p2, p3 = L.splits.pio2
    nf, n = L.round_int(L.mul(x, L.splits.two_over_pi))
    minus_n = L.neg(nf)
    r = L.fma(minus_n, p3, L.fma(minus_n, p2, L.fma(minus_n, p1, x)))
    ax = L.abs(x)
    large = L.both(L.gt(ax, L.params.trig_fast_max), L.lt(ax, float("inf")))
    return _large_reduction_lanes(L, x, large, r, n)


def _large_reduction_lanes(L: Lanes, x, large, r, n):
    """Replace (r, n) in the `large` lanes by the exact reduction, one lane at a time."""
    b = L.b
    before = b.block
    with b.if_then(L.any(large), likely=False):
        slow_r, slow_n = _exact_reduction(L, x, large)
        slow_r, slow_n = L.select(large, slow_r, r), b.select(large, slow_n, n)
        slow_block = b.block
    r_phi = b.phi(L.ty)
    r_phi.add_incoming(r, before)
    r_phi.add_incoming(slow_r, slow_block)
    n_phi = b.phi(L.ity)
    n_phi.add_incoming(n, before)
    n_phi.add_incoming(slow_n, slow_block)
    return r_phi, n_phi


def _exact_reduction(L: Lanes, x, large):
    """Every lane through the scalar Payne-Hanek routine (lanes not `large` get a
    harmless stand-in argument); returns vectors (r, n) in L's format."""
    b = L.b
    rem = _rem_pio2_function(b.module)
    safe_x = L.select(large, x, 1.0)
    if not L.count:
        return _call_rem(L, rem, safe_x)
    r, n = ir.Constant(L.ty, ir.Undefined), ir.Constant(L.ity, ir.Undefined)
    for lane in range(L.count):     # cold path: straight-line per-lane calls
        index = ir.Constant(I32, lane)
        lane_r, lane_n = _call_rem(L, rem, b.extract_element(safe_x, index))
        r = b.insert_element(r, lane_r, index)
        n = b.insert_element(n, lane_n, index)
    return r, n


def _call_rem(L: Lanes, rem: ir.Function, value):
    """(r, n) of one scalar lane, converted to L's element types."""
    b = L.b
    element = L.fmt.ir_type()
    wide = value if L.fmt is F64 else b.fpext(value, ir.DoubleType())
    result = b.call(rem, [wide])
    r, n = b.extract_value(result, 0), b.extract_value(result, 1)
    if L.fmt is F32:
        r = b.fptrunc(r, element)
    return r, b.sext(n, ir.IntType(L.fmt.bits))


def _rem_pio2_function(module: ir.Module) -> ir.Function:
    """`{double r, i32 n} tessel.rem_pio2.f64(double x)`: x = n pi/2 + r for any finite
    x (n only mod 4), to within 2^-100 or so of r."""
    name = "tessel.rem_pio2.f64"
    if name in module.globals:
        return module.globals[name]
    f64 = ir.DoubleType()
    fn = ir.Function(module, ir.FunctionType(ir.LiteralStructType([f64, I32]), [f64]), name)
    fn.linkage = "internal"
    fn.attributes.add("noinline")
    fn.attributes.add("cold")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    L = Lanes(b, f64)
    x, = fn.args
    # x (2/pi) mod 4 as a double-double, whole turns removed; n is its nearest integer.
    s_hi, s_lo = _payne_hanek(L, L.abs(x), _two_over_pi_table(module))
    n = L.rint(s_hi)
    g_hi, g_lo = _two_sum(L, L.sub(s_hi, n), s_lo)      # the fraction, |g| <= 1/2
    pio2_hi, pio2_lo = _split(_PI / 2, F64)
    r_hi, r_err = _two_prod(L, g_hi, pio2_hi)
    r = L.add(r_hi, L.fma(g_lo, pio2_hi, L.fma(g_hi, pio2_lo, r_err)))
    n = b.fptosi(n, I32)                               # |n| <= 32: in range
    negative = L.lt(x, 0.0)
    result = ir.Constant(fn.function_type.return_type, ir.Undefined)
    result = b.insert_value(result, L.select(negative, L.neg(r), r), 0)
    b.ret(b.insert_value(result, b.select(negative, b.neg(n), n), 1))
    return fn


def _two_over_pi_table(module: ir.Module) -> ir.GlobalVariable:
    chunks = _two_over_pi_chunks()
    table_type = ir.ArrayType(ir.DoubleType(), len(chunks))
    table = ir.GlobalVariable(module, table_type, "tessel.two_over_pi")
    table.linkage = "internal"
    table.global_constant = True
    table.initializer = ir.Constant(table_type, list(chunks))
    return table


def _payne_hanek(L: Lanes, ax, table: ir.GlobalVariable) -> tuple[ir.Value, ir.Value]:
    """ax (2/pi) mod 4 as (hi, lo) for finite ax >= 1 (Payne and Hanek's reduction).

    ax = M 2^E with M a 53-bit integer, 2/pi = sum_j C_j 2^(-24(j+1)): chunks with
    E - 24(j+1) >= 2 add multiples of 4 (whole turns) and are skipped, the next 8
    carry the fraction to 2^-113. Each M C_j is exact as a double-double (FMA), each
    part is reduced mod 4 exactly (all its bits stay) and summed with TwoSum."""
    b, f64 = L.b, ir.DoubleType()
    bits = L.bits(ax)
    E = L.isub(L.ashr(bits, F64.mantissa), F64.bias + F64.mantissa)
    M = L.to_float(b.or_(L.iand(bits, (1 << F64.mantissa) - 1), L.i(1 << F64.mantissa)))
    first = b.sdiv(L.isub(E, 2), L.i(24))
    first = b.select(L.igt(first, 0), first, L.i(0))
    s_hi, s_lo = L.c(0.0), L.c(0.0)
    for j in range(8):
        index = L.iadd(first, j)
        address = b.gep(table, [ir.Constant(I64, 0), index], inbounds=True,
                        source_etype=table.value_type)
        chunk = b.load(address, typ=f64)
        scale = L.exp2i(L.isub(E, b.mul(L.iadd(index, 1), L.i(24))))     # >= 2^-200
        for term in _two_prod(L, M, chunk):
            term = L.mul(term, scale)
            term = L.sub(term, L.mul(L.rint(L.mul(term, 0.25)), 4.0))
            s_hi, err = _two_sum(L, s_hi, term)
            s_lo = L.add(s_lo, err)
    return s_hi, s_lo


def _two_sum(L: Lanes, a, b) -> tuple[ir.Value, ir.Value]:
    """(s, e) with s = fl(a + b) and s + e = a + b exactly (Knuth)."""
    s = L.add(a, b)
    b_part = L.sub(s, a)
    return s, L.add(L.sub(a, L.sub(s, b_part)), L.sub(b, b_part))


def _two_prod(L: Lanes, a, b) -> tuple[ir.Value, ir.Value]:
    p = L.mul(a, b)
    return p, L.fma(a, b, L.neg(p))


# ------------------------------------------------------------------------------- power

def _power(L: Lanes, x, y) -> ir.Value:
    ax = L.abs(x)
    if L.fmt is F32:
        # f64 log and exp: y log|x| to 2^-45 relative, then one rounding to f32.
        W = L.like(F64)
        wide_x, wide_y = L.b.fpext(ax, W.ty), L.b.fpext(y, W.ty)
        magnitude = L.b.fptrunc(_exp(W, W.mul(wide_y, _log(W, wide_x))), L.ty)
    else:
        log_hi, log_lo = _log_double_double(L, ax)
        p_hi, p_err = _two_prod(L, y, log_hi)
        p_lo = L.fma(y, log_lo, p_err)
        # Where y log|x| is infinite or NaN its low part is NaN: drop it (exp saturates).
        p_lo = L.select(L.lt(L.abs(p_hi), 4096.0), p_lo, 0.0)
        magnitude = _exp(L, p_hi, p_lo)
    return _power_specials(L, x, y, magnitude)


def _log_double_double(L: Lanes, x) -> tuple[ir.Value, ir.Value]:
    """log x as hi + lo to about 2^-64 relative (power multiplies its error by
    |y log x| <= 745). log(1 + f) = 2s + (2/3) s^3 + s^5 T1(s^2): the first two terms
    in double-double (they hold all but 2^-12 of the value), the rest in double."""
    e, f = _log_split(L, x)
    d_hi = L.add(f, 2.0)
    d_lo = L.sub(f, L.sub(d_hi, 2.0))                          # 2 + f = d_hi + d_lo
    s_hi = L.div(f, d_hi)
    s_lo = L.div(L.fma(L.neg(s_hi), d_lo, L.fma(L.neg(s_hi), d_hi, f)), d_hi)
    z, z_err = _two_prod(L, s_hi, s_hi)
    cube, cube_err = _two_prod(L, s_hi, z)                     # s^3 = cube + cube_lo
    cube_lo = L.fma(s_hi, z_err, L.fma(L.mul(z, 3.0), s_lo, cube_err))
    t_hi, t_lo = L.splits.two_thirds
    c_hi, c_err = _two_prod(L, cube, t_hi)
    c_lo = L.fma(cube, t_lo, L.fma(cube_lo, t_hi, c_err))      # (2/3) s^3
    tail = L.mul(L.mul(cube, z), L.poly(z, L.params.log_poly[1:]))
    h, h_err = _two_sum(L, L.add(s_hi, s_hi), c_hi)
    low = L.add(L.add(L.add(s_lo, s_lo), c_lo), L.add(tail, h_err))
    ln2_hi, ln2_lo = L.splits.ln2
    k_hi = L.mul(e, ln2_hi)                                    # exact
    k_lo, k_err = _two_prod(L, e, ln2_lo)
    hi, err = _two_sum(L, k_hi, h)
    lo = L.add(L.add(low, err), L.add(k_lo, k_err))
    hi, lo = _two_sum(L, hi, lo)
    # x = 0 and x = inf; NaN and negative x are handled by power's special cases.
    hi = L.select(L.eq(x, 0.0), float("-inf"), L.select(L.eq(x, float("inf")), x, hi))
    lo = L.select(L.either(L.eq(x, 0.0), L.eq(x, float("inf"))), 0.0, lo)
    return L.select(L.isnan(x), x, hi), lo


def _power_specials(L: Lanes, x, y, magnitude) -> ir.Value:
    """C99/IEEE pow on top of |x|^y: the sign for negative x and odd integer y, NaN
    for finite negative x and non-integer y, and the cases that are exactly 1."""
    y_int = L.eq(L.rint(y), y)                               # false for NaN, true for inf
    half = L.mul(y, 0.5)
    y_odd = L.both(y_int, L.ne(L.rint(half), half))
    negative = L.b.icmp_signed("<", L.bits(x), L.i(0))       # sign bit, so -0 counts
    result = L.select(L.both(negative, y_odd), L.neg(magnitude), magnitude)
    finite_negative = L.both(L.lt(x, 0.0), L.gt(x, float("-inf")))
    result = L.select(L.both(finite_negative, L.not_(y_int)), float("nan"), result)
    unit_base = L.eq(L.abs(x), 1.0)
    one = L.either(L.either(L.eq(x, 1.0), L.eq(y, 0.0)),
                   L.both(unit_base, L.eq(L.abs(y), float("inf"))))
    return L.select(one, 1.0, result)


# ------------------------------------------------------------------------------- atan2

def _atan2_f64(L: Lanes, y, x) -> ir.Value:
    """|atan2(y, x)|, the angle of (x, |y|) in [0, pi] (C99's, for zeros and infinities
    too); NaN operands are left to the caller."""
    ax, ay = L.abs(x), L.abs(y)
    swap = L.gt(ay, ax)                                         # octant: |y| > |x|
    mx, mn = L.select(swap, ay, ax), L.select(swap, ax, ay)
    both_inf = L.both(L.eq(mx, float("inf")), L.eq(mn, float("inf")))
    mx = L.select(both_inf, 1.0, L.select(L.eq(mx, 0.0), 1.0, mx))  # atan2(±inf, ±inf), (0, 0)
    mn = L.select(both_inf, 1.0, mn)
    t_hi, t_lo = _atan_ratio(L, mn, mx)
    # (x < 0, swap) -> t, pi/2 - t, pi - t, pi/2 + t: offset + sign t in double-double
    negative_x = L.b.icmp_signed("<", L.bits(x), L.i(0))       # sign bit: -0 counts
    pio2, pi = L.splits.pio2_pair, L.splits.pi_pair
    off_hi = L.select(swap, pio2[0], L.select(negative_x, pi[0], 0.0))
    off_lo = L.select(swap, pio2[1], L.select(negative_x, pi[1], 0.0))
    flip = L.b.xor(swap, negative_x)
    s_hi, s_lo = L.select(flip, L.neg(t_hi), t_hi), L.select(flip, L.neg(t_lo), t_lo)
    hi, err = _two_sum(L, off_hi, s_hi)
    return L.add(hi, L.add(err, L.add(off_lo, s_lo)))


def _atan_ratio(L: Lanes, mn, mx) -> tuple[ir.Value, ir.Value]:
    """atan(mn / mx) as hi + lo for 0 <= mn <= mx (finite, mx > 0), fdlibm's reduction:
    below 7/16 directly; below 11/16 atan(1/2) + atan((2mn - mx) / (2mx + mn)); else
    pi/4 + atan((mn - mx) / (mn + mx)). The numerators are exact (Sterbenz), so u has
    two roundings; |u| <= 7/16 everywhere."""
    a = L.div(mn, mx)
    big = L.ge(a, 11.0 / 16.0)
    middle = L.both(L.ge(a, 7.0 / 16.0), L.not_(big))
    # mn + mx and 2 mx + mn may overflow near the top of the range: scale by 1/4 (exact)
    scale = L.select(L.gt(mx, 2.0 ** (L.fmt.bias - 2)), 0.25, 1.0)
    smn, smx = L.mul(mn, scale), L.mul(mx, scale)
    numerator = L.select(big, L.sub(smn, smx), L.sub(L.add(smn, smn), smx))
    denominator = L.select(big, L.add(smn, smx), L.fma(smx, 2.0, smn))
    reduced = L.either(big, middle)
    u = L.select(reduced, L.div(numerator, denominator), a)
    z = L.mul(u, u)
    tail = L.mul(L.mul(u, z), L.poly(z, L.params.atan_poly))   # atan u - u
    pio4, half = L.splits.pio4_pair, L.splits.atan_half
    base_hi = L.select(big, pio4[0], L.select(middle, half[0], 0.0))
    base_lo = L.select(big, pio4[1], L.select(middle, half[1], 0.0))
    hi, err = _two_sum(L, base_hi, u)
    return hi, L.add(tail, L.add(err, base_lo))


def _in_f64(L: Lanes, rule: Callable, *args) -> ir.Value:
    """`rule(lanes, *args)` on f64 lanes: f32 operands widened (exact), the result
    rounded once. Signs and NaNs are then set in L's own format: narrowing LLVM may do
    on a copysign or select around the conversions could need a libcall (f64 -> f16)."""
    if L.fmt is F64:
        return rule(L, *args)
    W = L.like(F64)
    W.params = L.params          # f32's coefficients are fitted for this f64 evaluation
    return L.b.fptrunc(rule(W, *[L.b.fpext(a, W.ty) for a in args]), L.ty)


def _atan2(L: Lanes, y, x) -> ir.Value:
    angle = L.copysign(_in_f64(L, _atan2_f64, y, x), y)
    return L.select(L.either(L.isnan(x), L.isnan(y)), L.add(x, y), angle)


# -------------------------------------------------------------------- remainder (fmod)

def _exponent(L: Lanes, v) -> ir.Value:
    """floor(log2 v) as integer lanes for finite v > 0 (subnormals included)."""
    tiny = L.lt(v, L.fmt.min_normal)
    scaled = L.select(tiny, L.mul(v, 2.0 ** L.fmt.precision), v)
    e = L.isub(L.b.lshr(L.bits(scaled), L.i(L.fmt.mantissa)), L.fmt.bias)
    return L.b.select(tiny, L.isub(e, L.fmt.precision), e)


def _fmod_valid(L: Lanes, x, y) -> ir.Value:
    """Where fmod is a number: x finite, y nonzero and not NaN."""
    return L.both(L.both(L.lt(L.abs(x), float("inf")), L.gt(L.abs(y), 0.0)), L.not_(L.isnan(y)))


def _fmod_f64(L: Lanes, x, y) -> ir.Value:
    """|x| mod |y| exactly, for the lanes where fmod is a number (0 elsewhere)."""
    b = L.b
    ax, ay = L.abs(x), L.abs(y)
    r0 = L.select(_fmod_valid(L, x, y), ax, 0.0)          # invalid lanes never enter the loop
    ay_exp = _exponent(L, L.select(L.lt(ay, float("inf")), ay, 1.0))
    before = b.block
    loop = b.append_basic_block("fmod.step")
    done = b.append_basic_block("fmod.done")
    b.cbranch(L.any(L.ge(r0, ay)), loop, done)
    b.position_at_end(loop)
    r = b.phi(L.ty)
    r.add_incoming(r0, before)
    # t = |y| 2^s <= r with r / t < 2^(p-1): q = trunc(r / t) is floor or floor + 1 of
    # the true quotient, r - q t is a multiple of ulp(t) in (-t, t): FMA gives it exactly
    gap = L.isub(L.isub(_exponent(L, L.select(L.ge(r, ay), r, ay)), ay_exp), L.fmt.precision - 2)
    s = b.select(L.igt(gap, 0), gap, L.i(0))
    t = L.ldexp(ay, s)
    q = L.trunc(L.div(r, t))
    step = L.fma(L.neg(q), t, r)
    step = L.select(L.lt(step, 0.0), L.add(step, t), step)     # exact: in (0, t)
    active = L.ge(r, ay)
    r_next = L.select(active, step, r)
    r.add_incoming(r_next, loop)
    b.cbranch(L.any(L.ge(r_next, ay)), loop, done)
    b.position_at_end(done)
    result = b.phi(L.ty)
    result.add_incoming(r0, before)
    result.add_incoming(r_next, loop)
    return result


def _fmod(L: Lanes, x, y) -> ir.Value:
    """C fmod: x - trunc(x / y) y exactly, with the sign of x (fmod(-0, y) = -0); NaN
    for y = 0, x = ±inf or a NaN operand; x itself for |y| = inf (finite x)."""
    magnitude = L.copysign(_in_f64(L, _fmod_f64, x, y), x)
    return L.select(_fmod_valid(L, x, y), magnitude, float("nan"))


# ------------------------------------------------------------------------------ tables

Emitter = Callable[..., ir.Value]


def _unary(rule: Callable[[Lanes, ir.Value], ir.Value]) -> Emitter:
    def emit(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
        return rule(Lanes(builder, x.type), x)
    emit.__name__ = emit.__qualname__ = f"emit{rule.__name__}"
    emit.__doc__ = rule.__doc__
    return emit


def _binary(rule: Callable[[Lanes, ir.Value, ir.Value], ir.Value], name: str) -> Emitter:
    def emit(builder: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
        if x.type != y.type:
            raise TypeError(f"mathlib {name}: operands must have one type, got {x.type} and {y.type}")
        return rule(Lanes(builder, x.type), x, y)
    emit.__name__ = emit.__qualname__ = f"emit_{name}"
    emit.__doc__ = rule.__doc__
    return emit


emit_power = _binary(_power, "power")
emit_atan2 = _binary(_atan2, "atan2")          # atan2(y, x): the operands in IR order
emit_remainder = _binary(_fmod, "remainder")


emit_exp = _unary(_exp)
emit_expm1 = _unary(_expm1)
emit_log = _unary(_log)
emit_log1p = _unary(_log1p)
emit_tanh = _unary(_tanh)
emit_logistic = _unary(_logistic)
emit_erf = _unary(_erf)
emit_sin = _unary(_sin)
emit_cos = _unary(_cos)

# Keyed by IR opcode (compiler/ops.py).
FUNCTIONS: dict[str, Emitter] = {
    "exp": emit_exp, "expm1": emit_expm1, "log": emit_log, "log1p": emit_log1p,
    "tanh": emit_tanh, "logistic": emit_logistic, "erf": emit_erf,
    "sin": emit_sin, "cos": emit_cos, "power": emit_power, "atan2": emit_atan2,
    "remainder": emit_remainder,
}
ARITY = {op: 2 if op in ("power", "atan2", "remainder") else 1 for op in FUNCTIONS}


class MathLib:
    """Per-module cache of the math functions, each defined on first use as an internal
    `alwaysinline` function `tessel.<op>.<type>` (LLVM inlines it into the loop)."""

    def __init__(self, module: ir.Module):
        self.module = module

    def function(self, op: str, ty: ir.Type) -> ir.Function:
        if op not in FUNCTIONS:
            raise KeyError(f"mathlib has no {op!r}; it has {sorted(FUNCTIONS)}")
        name = f"tessel.{op}.{type_suffix(ty)}"
        existing = self.module.globals.get(name)
        if existing is not None:
            return existing
        fn = ir.Function(self.module, ir.FunctionType(ty, [ty] * ARITY[op]), name)
        fn.linkage = "internal"
        fn.attributes.add("alwaysinline")
        fn.attributes.add("nounwind")
        builder = ir.IRBuilder(fn.append_basic_block("entry"))
        builder.ret(FUNCTIONS[op](builder, *fn.args))
        return fn

    def call(self, builder: ir.IRBuilder, op: str, *args: ir.Value) -> ir.Value:
        if len(args) != ARITY[op]:
            raise TypeError(f"mathlib {op} takes {ARITY[op]} operand(s), got {len(args)}")
        return builder.call(self.function(op, args[0].type), list(args))
