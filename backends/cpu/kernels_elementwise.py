"""Elementwise operations in LLVM IR: value types, loads/stores, and THE op table.

Every value a kernel computes lives in a *register type* and every buffer element in a
*storage type* (tessel dtype -> LLVM type):

    dtype   storage  register   notes
    pred    i8       i1         stored 0/1 (NumPy bool)
    s8 u8   i8       i8         signedness is the op's business (sdiv/udiv, icmp ...)
    s32 u32 i32      i32
    s64     i64      i64
    f16     half     float      computed in f32, rounded back to f16 after every op
    bf16    i16      float      the upper 16 bits of an f32; rounded (nearest even)
                                after every op
    f32     float    float
    f64     double   double

Rounding f16/bf16 results after *every* op (not only at the store) is what the
interpreter does (it stores each op's result in the op's type), so fused kernels give
the interpreter's answers. bf16 buffers hold 2 bytes per element, as buffer assignment
sizes them; the runtime converts bf16 arguments/results (f32 arrays at the NumPy
boundary) to and from that form.

An `Emit` carries the builder, the vector width (1 = scalar code) and the math library;
a value is a scalar of its register type, or a <width x T> vector of it. Every rule in
`ELEMENTWISE` (keyed by opcode, compiler/ops.py) works on both.

Semantics follow the interpreter (backends/interpreter/elementwise.py): wrapping
integer arithmetic; integer x / 0 = -1 (all ones), x % 0 = x, MIN / -1 = MIN;
NaN-propagating maximum/minimum/clamp; round half to even; convert float -> int
truncates and saturates, NaN -> 0; transcendental functions, atan2 and float remainder
(C fmod) come from `mathlib` (vector IR, no libm calls).
"""
from __future__ import annotations

from typing import Callable

from llvmlite import ir

from ...compiler import dtypes
from ...compiler.dtypes import DType
from .mathlib import MathLib

I1, I8, I16, I32, I64 = (ir.IntType(n) for n in (1, 8, 16, 32, 64))
HALF, FLOAT, DOUBLE = ir.HalfType(), ir.FloatType(), ir.DoubleType()
PTR = ir.PointerType()

STORAGE: dict[str, ir.Type] = {
    "pred": I8, "s8": I8, "u8": I8, "s32": I32, "u32": I32, "s64": I64,
    "f16": HALF, "bf16": I16, "f32": FLOAT, "f64": DOUBLE,
}
REGISTER: dict[str, ir.Type] = {
    "pred": I1, "s8": I8, "u8": I8, "s32": I32, "u32": I32, "s64": I64,
    "f16": FLOAT, "bf16": FLOAT, "f32": FLOAT, "f64": DOUBLE,
}
NARROW_FLOATS = ("f16", "bf16")      # computed in f32, rounded after every op


def storage_type(dtype: DType) -> ir.Type:
    return STORAGE[dtype.name]


def register_type(dtype: DType) -> ir.Type:
    return REGISTER[dtype.name]


def register_bytes(dtype: DType) -> int:
    """Bytes of one lane of `dtype` in registers (pred counts as a byte)."""
    ty = register_type(dtype)
    return 1 if ty is I1 else ty.width // 8 if isinstance(ty, ir.IntType) else \
        {"float": 4, "double": 8}[str(ty)]


def suffix(ty: ir.Type) -> str:
    """LLVM's overload suffix of a type: f32, i64, v16f32 ..."""
    if isinstance(ty, ir.VectorType):
        return f"v{ty.count}{suffix(ty.element)}"
    return {"float": "f32", "double": "f64", "half": "f16"}.get(str(ty), str(ty))


def intrinsic(builder: ir.IRBuilder, name: str, ret: ir.Type, args: list) -> ir.Value:
    """Call `name` (declared on first use) with `args`."""
    module = builder.module
    fn = module.globals.get(name)
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(ret, [a.type for a in args]), name=name)
    return builder.call(fn, args)


# ----------------------------------------------------------------------------- the context

class Emit:
    """What elementwise rules emit with: builder, width (1 = scalars), math library."""

    def __init__(self, builder: ir.IRBuilder, width: int, mathlib: MathLib):
        self.b = builder
        self.width = width
        self.mathlib = mathlib

    def ty(self, scalar: ir.Type) -> ir.Type:
        return scalar if self.width == 1 else ir.VectorType(scalar, self.width)

    def reg(self, dtype: DType) -> ir.Type:
        return self.ty(register_type(dtype))

    def const(self, scalar: ir.Type, value) -> ir.Constant:
        """`value` as a constant of `scalar` type, splat to the width."""
        c = ir.Constant(scalar, value)
        return c if self.width == 1 else ir.Constant(ir.VectorType(scalar, self.width), [c] * self.width)

    def dconst(self, dtype: DType, value) -> ir.Constant:
        """A constant in `dtype`'s register type (a bool for pred)."""
        ty = register_type(dtype)
        if dtype.is_pred:
            value = int(bool(value))
        elif dtype.is_integer:
            value = int(value)
        else:
            value = float(value)
        return self.const(ty, value)

    def splat(self, value: ir.Value) -> ir.Value:
        """A scalar repeated over the width (values that are vectors pass through)."""
        if self.width == 1 or isinstance(value.type, ir.VectorType):
            return value
        ty = ir.VectorType(value.type, self.width)
        one = self.b.insert_element(ir.Constant(ty, ir.Undefined), value, ir.Constant(I32, 0))
        return self.b.shuffle_vector(one, ir.Constant(ty, ir.Undefined),
                                     ir.Constant(ir.VectorType(I32, self.width), [0] * self.width))

    def call(self, name: str, *args: ir.Value) -> ir.Value:
        """An overloaded LLVM intrinsic `llvm.<name>.<suffix of the first argument>`."""
        return intrinsic(self.b, f"llvm.{name}.{suffix(args[0].type)}", args[0].type, list(args))

    def all_ones(self, ty_scalar: ir.IntType) -> ir.Constant:
        return self.const(ty_scalar, -1)


# ----------------------------------------------------------------------------- loads, stores, rounding

def from_storage(e: Emit, dtype: DType, raw: ir.Value) -> ir.Value:
    """A loaded storage value (scalar or vector) as a register value."""
    b, name = e.b, dtype.name
    if name == "pred":
        return b.icmp_unsigned("!=", raw, e.const(I8, 0))
    if name == "f16":
        return b.fpext(raw, e.ty(FLOAT))
    if name == "bf16":
        wide = b.shl(b.zext(raw, e.ty(I32)), e.const(I32, 16))
        return b.bitcast(wide, e.ty(FLOAT))
    return raw


def to_storage(e: Emit, dtype: DType, value: ir.Value) -> ir.Value:
    """A register value as the storage value to write (f16/bf16 are already rounded)."""
    b, name = e.b, dtype.name
    if name == "pred":
        return b.zext(value, e.ty(I8))
    if name == "f16":
        return b.fptrunc(value, e.ty(HALF))
    if name == "bf16":
        bits = b.lshr(b.bitcast(value, e.ty(I32)), e.const(I32, 16))
        return b.trunc(bits, e.ty(I16))
    return value


def round_bf16(e: Emit, x: ir.Value) -> ir.Value:
    """f32 -> the nearest bf16 (ties to even), as an f32; NaN stays a (quiet) NaN."""
    b = e.b
    bits = b.bitcast(x, e.ty(I32))
    lsb = b.and_(b.lshr(bits, e.const(I32, 16)), e.const(I32, 1))
    rounded = b.add(b.add(bits, e.const(I32, 0x7FFF)), lsb)
    quiet = b.or_(bits, e.const(I32, 0x00400000))
    out = b.select(b.fcmp_unordered("uno", x, x), quiet, rounded)
    return b.bitcast(b.and_(out, e.const(I32, -0x10000)), e.ty(FLOAT))


def round_f16(e: Emit, x: ir.Value) -> ir.Value:
    return e.b.fpext(e.b.fptrunc(x, e.ty(HALF)), e.ty(FLOAT))


def round_to(e: Emit, dtype: DType, value: ir.Value) -> ir.Value:
    """A float register value rounded to `dtype` (a no-op unless f16/bf16)."""
    if dtype.name == "bf16":
        return round_bf16(e, value)
    if dtype.name == "f16":
        return round_f16(e, value)
    return value


def f64_to_f32_odd(e: Emit, x: ir.Value) -> ir.Value:
    """f64 -> f32 rounded toward zero with a sticky last bit ("round to odd"). Rounding
    that to any format of at most 22 significant bits to nearest gives the f64's own
    correctly rounded value, where rounding to nearest twice could be off by one."""
    b = e.b
    f = b.fptrunc(x, e.ty(FLOAT))
    back = b.fpext(f, e.ty(DOUBLE))
    inexact = b.fcmp_ordered("!=", back, x)      # false for NaN
    away = b.and_(inexact, b.fcmp_ordered(">", e.call("fabs", back), e.call("fabs", x)))
    bits = b.bitcast(f, e.ty(I32))
    bits = b.sub(bits, b.zext(away, e.ty(I32)))
    bits = b.or_(bits, b.zext(inexact, e.ty(I32)))
    return b.bitcast(bits, e.ty(FLOAT))


def f64_to_bf16(e: Emit, x: ir.Value) -> ir.Value:
    return round_bf16(e, f64_to_f32_odd(e, x))


def f64_to_f16(e: Emit, x: ir.Value) -> ir.Value:
    """(A direct fptrunc double -> half is a libgcc call on x86-64; this is not.)"""
    return round_f16(e, f64_to_f32_odd(e, x))


# ----------------------------------------------------------------------------- convert

def convert(e: Emit, src: DType, dst: DType, x: ir.Value) -> ir.Value:
    """A register value of `src` as a register value of `dst` (the interpreter's rules)."""
    b = e.b
    if src == dst or (src.name == "bf16" and dst.name == "f32") or (src.name == "f16" and dst.name == "f32"):
        return x
    if dst.is_pred:
        if src.is_float:
            return b.fcmp_unordered("!=", x, e.const(x.type.element if e.width > 1 else x.type, 0.0))
        return b.icmp_unsigned("!=", x, ir.Constant(x.type, None))
    if src.is_pred:
        if dst.is_float:
            return b.uitofp(x, e.reg(dst))
        return b.zext(x, e.reg(dst))
    if dst.is_integer:
        target = e.reg(dst)
        if src.is_float:
            sat = "fptosi.sat" if dst.kind == "signed" else "fptoui.sat"
            return intrinsic(b, f"llvm.{sat}.{suffix(target)}.{suffix(x.type)}", target, [x])
        return _resize_int(e, src, x, target)
    if src.is_integer:
        return _int_to_float(e, src, dst, x)
    return _float_to_float(e, src, dst, x)


def _resize_int(e: Emit, src: DType, x: ir.Value, target: ir.Type) -> ir.Value:
    b = e.b
    have = (x.type.element if e.width > 1 else x.type).width
    want = (target.element if e.width > 1 else target).width
    if want < have:
        return b.trunc(x, target)
    if want > have:
        return b.sext(x, target) if src.kind == "signed" else b.zext(x, target)
    return x


def _int_to_float(e: Emit, src: DType, dst: DType, x: ir.Value) -> ir.Value:
    b = e.b
    to_fp = b.sitofp if src.kind == "signed" else b.uitofp
    if dst.name == "f16":
        return f64_to_f16(e, to_fp(x, e.ty(DOUBLE)))
    if dst.name == "bf16":
        return f64_to_bf16(e, to_fp(x, e.ty(DOUBLE)))
    return to_fp(x, e.reg(dst))


def _float_to_float(e: Emit, src: DType, dst: DType, x: ir.Value) -> ir.Value:
    b = e.b
    if src.name == "f64":
        if dst.name == "f32":
            return b.fptrunc(x, e.ty(FLOAT))
        if dst.name == "f16":
            return f64_to_f16(e, x)
        return f64_to_bf16(e, x)
    # src is held in an f32 register (f32, f16, bf16: exact there)
    if dst.name == "f64":
        return b.fpext(x, e.ty(DOUBLE))
    return round_to(e, dst, x)


# ----------------------------------------------------------------------------- unary rules

Rule = Callable[..., ir.Value]


def _float_or_int(float_rule: Rule, int_rule: Rule) -> Rule:
    def rule(e: Emit, dtype: DType, x: ir.Value) -> ir.Value:
        return float_rule(e, dtype, x) if dtype.is_float else int_rule(e, dtype, x)
    return rule


def _math(op: str) -> Rule:
    return lambda e, dtype, x: e.mathlib.call(e.b, op, x)


def _intrinsic_unary(name: str) -> Rule:
    return lambda e, dtype, x: e.call(name, x)


def _float_sign(e, dtype, x):
    b = e.b
    one = e.dconst(dtype, 1.0)
    zero = e.dconst(dtype, 0.0)
    positive = b.select(b.fcmp_ordered(">", x, zero), one, x)
    return b.select(b.fcmp_ordered("<", x, zero), e.dconst(dtype, -1.0), positive)


def _int_sign(e, dtype, x):
    b = e.b
    zero = e.dconst(dtype, 0)
    if dtype.kind == "unsigned":
        return b.zext(b.icmp_unsigned("!=", x, zero), x.type)
    positive = b.select(b.icmp_signed(">", x, zero), e.dconst(dtype, 1), zero)
    return b.select(b.icmp_signed("<", x, zero), e.dconst(dtype, -1), positive)


def _int_abs(e, dtype, x):
    b = e.b
    return b.select(b.icmp_signed("<", x, e.dconst(dtype, 0)), b.neg(x), x)


def _is_finite(e, dtype, x):
    return e.b.fcmp_ordered("<", e.call("fabs", x), e.dconst(dtype, float("inf")))


def _rsqrt(e, dtype, x):
    return e.b.fdiv(e.dconst(dtype, 1.0), e.call("sqrt", x))


UNARY: dict[str, Rule] = {
    "negate": _float_or_int(lambda e, d, x: e.b.fneg(x), lambda e, d, x: e.b.neg(x)),
    "abs": _float_or_int(_intrinsic_unary("fabs"), _int_abs),
    "sign": _float_or_int(_float_sign, _int_sign),
    "exp": _math("exp"), "log": _math("log"), "log1p": _math("log1p"), "expm1": _math("expm1"),
    "tanh": _math("tanh"), "logistic": _math("logistic"), "sin": _math("sin"),
    "cos": _math("cos"), "erf": _math("erf"),
    "sqrt": _intrinsic_unary("sqrt"), "rsqrt": _rsqrt,
    "floor": _intrinsic_unary("floor"), "ceil": _intrinsic_unary("ceil"),
    "round": _intrinsic_unary("roundeven"),          # half to even, as np.rint
    "not": lambda e, d, x: e.b.xor(x, ir.Constant(x.type, [-1] * e.width) if e.width > 1
                                   else ir.Constant(x.type, -1)),
    "is_finite": _is_finite,
}


# ----------------------------------------------------------------------------- binary rules

def _arith(float_op: str, int_op: str) -> Rule:
    def rule(e: Emit, dtype: DType, x, y):
        return getattr(e.b, float_op if dtype.is_float else int_op)(x, y)
    return rule


def _int_divmod(e: Emit, dtype: DType, x, y):
    """(quotient, remainder) with XLA's answers for x / 0 and MIN / -1."""
    b = e.b
    zero, one = e.dconst(dtype, 0), e.dconst(dtype, 1)
    by_zero = b.icmp_unsigned("==", y, zero)
    unsafe = by_zero
    if dtype.kind == "signed":
        minimum = e.dconst(dtype, -(1 << (dtype.bits - 1)))
        overflow = b.and_(b.icmp_signed("==", x, minimum), b.icmp_signed("==", y, e.dconst(dtype, -1)))
        unsafe = b.or_(by_zero, overflow)      # MIN / 1 = MIN and MIN % 1 = 0: as XLA wants
    safe = b.select(unsafe, one, y)
    div, rem = (b.sdiv, b.srem) if dtype.kind == "signed" else (b.udiv, b.urem)
    quotient = b.select(by_zero, e.all_ones(register_type(dtype)), div(x, safe))
    remainder = b.select(by_zero, x, rem(x, safe))
    return quotient, remainder


def _divide(e, dtype, x, y):
    return e.b.fdiv(x, y) if dtype.is_float else _int_divmod(e, dtype, x, y)[0]


def _remainder(e, dtype, x, y):
    # float: mathlib's exact vector fmod (LLVM's frem would call fmodf once per lane)
    return e.mathlib.call(e.b, "remainder", x, y) if dtype.is_float else _int_divmod(e, dtype, x, y)[1]


def _power(e, dtype, x, y):
    if dtype.is_float:
        return e.mathlib.call(e.b, "power", x, y)
    return _int_power(e, dtype, x, y)


def _int_power(e: Emit, dtype: DType, x, y):
    """Exponentiation by squaring over every bit of the exponent (wrapping), branch
    free so it vectorizes; a negative exponent gives 1/x^n truncated (1, +-1 or 0)."""
    b = e.b
    zero, one = e.dconst(dtype, 0), e.dconst(dtype, 1)
    signed = dtype.kind == "signed"
    negative = b.icmp_signed("<", y, zero) if signed else None
    exponent = b.select(negative, zero, y) if signed else y
    result, square = one, x
    for _ in range(dtype.bits if not signed else dtype.bits - 1):
        odd = b.icmp_unsigned("!=", b.and_(exponent, one), zero)
        result = b.select(odd, b.mul(result, square), result)
        square = b.mul(square, square)
        exponent = b.lshr(exponent, one)
    if not signed:
        return result
    y_odd = b.icmp_unsigned("!=", b.and_(y, one), zero)
    minus_one = e.dconst(dtype, -1)
    reciprocal = b.select(b.icmp_signed("==", x, one), one,
                          b.select(b.icmp_signed("==", x, minus_one),
                                   b.select(y_odd, minus_one, one), zero))
    return b.select(negative, reciprocal, result)


def _extreme(float_name: str, signed_name: str, unsigned_name: str, pred_op: str) -> Rule:
    def rule(e: Emit, dtype: DType, x, y):
        if dtype.is_pred:
            return getattr(e.b, pred_op)(x, y)
        name = float_name if dtype.is_float else signed_name if dtype.kind == "signed" else unsigned_name
        return e.call(name, x, y)
    return rule


_maximum = _extreme("maximum", "smax", "umax", "or_")    # float ones propagate NaN
_minimum = _extreme("minimum", "smin", "umin", "and_")


def _atan2(e: Emit, dtype: DType, y, x):
    return e.mathlib.call(e.b, "atan2", y, x)


BINARY: dict[str, Rule] = {
    "add": _arith("fadd", "add"), "subtract": _arith("fsub", "sub"),
    "multiply": _arith("fmul", "mul"), "divide": _divide, "remainder": _remainder,
    "power": _power, "maximum": _maximum, "minimum": _minimum, "atan2": _atan2,
    "and": lambda e, d, x, y: e.b.and_(x, y), "or": lambda e, d, x, y: e.b.or_(x, y),
    "xor": lambda e, d, x, y: e.b.xor(x, y),
}

_FLOAT_COMPARE = {"EQ": ("==", True), "NE": ("!=", False), "LT": ("<", True),
                  "LE": ("<=", True), "GT": (">", True), "GE": (">=", True)}
_INT_COMPARE = {"EQ": "==", "NE": "!=", "LT": "<", "LE": "<=", "GT": ">", "GE": ">="}


def compare(e: Emit, dtype: DType, direction: str, x, y) -> ir.Value:
    """NumPy's answers: NaN compares unequal to everything, NE is true for NaN."""
    b = e.b
    if dtype.is_float:
        op, ordered = _FLOAT_COMPARE[direction]
        return (b.fcmp_ordered if ordered else b.fcmp_unordered)(op, x, y)
    cmp = b.icmp_signed if dtype.kind == "signed" else b.icmp_unsigned
    return cmp(_INT_COMPARE[direction], x, y)


# ----------------------------------------------------------------------------- the table

def _unary_op(name):
    def emit(e: Emit, instr, x):
        return UNARY[name](e, instr.operands[0].shape.dtype, x)
    return emit


def _binary_op(name):
    def emit(e: Emit, instr, x, y):
        return BINARY[name](e, instr.operands[0].shape.dtype, x, y)
    return emit


def _compare_op(e: Emit, instr, x, y):
    return compare(e, instr.operands[0].shape.dtype, instr.attrs["direction"], x, y)


def _select_op(e: Emit, instr, p, x, y):
    return e.b.select(p, x, y)


def _clamp_op(e: Emit, instr, lo, x, hi):
    dtype = instr.shape.dtype
    return _minimum(e, dtype, _maximum(e, dtype, x, lo), hi)


def _convert_op(e: Emit, instr, x):
    return convert(e, instr.operands[0].shape.dtype, instr.shape.dtype, x)


# opcode -> emit(e, instr, *operand_values) -> value of instr's register type.
ELEMENTWISE: dict[str, Callable] = {
    **{name: _unary_op(name) for name in UNARY},
    **{name: _binary_op(name) for name in BINARY},
    "compare": _compare_op, "select": _select_op, "clamp": _clamp_op, "convert": _convert_op,
}

# Ops whose result is exact in the result type: no f16/bf16 rounding after them.
_EXACT = frozenset({"negate", "abs", "sign", "floor", "ceil", "round", "maximum", "minimum",
                    "select", "clamp", "convert", "compare", "is_finite", "not"})


def emit_elementwise(e: Emit, instr, operands: list) -> ir.Value:
    """`instr` (an elementwise op) applied to register values of its operands."""
    value = ELEMENTWISE[instr.opcode](e, instr, *operands)
    dtype = instr.shape.dtype
    if dtype.name in NARROW_FLOATS and instr.opcode not in _EXACT:
        value = round_to(e, dtype, value)
    return value
