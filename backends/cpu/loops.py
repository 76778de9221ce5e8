"""Small cgutils-style helpers for emitting LLVM IR with llvmlite.

Loops are context managers that yield their induction variable; the body is emitted
inside the `with` block and may create blocks of its own:

    with for_range(builder, n) as i:             # for (i = 0; i < n; i++)
        x = load_vector(builder, gep(builder, src, f32, i), vec)
    with loop_nest(builder, (rows, cols)) as (r, c):
        ...

Conventions, following numba's cgutils:
- every index is an i64 (`INDEX`), and index arithmetic carries `nsw` (the values are
  array offsets: they never wrap), which lets LLVM's loop passes reason about them;
- allocas go in the entry block (`alloca_once`), so a loop never grows the stack and
  mem2reg/SROA can promote them;
- pointers are opaque: every load, store and GEP names its element type.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Sequence

from llvmlite import ir

INDEX = ir.IntType(64)
I1 = ir.IntType(1)
I32 = ir.IntType(32)
PTR = ir.PointerType()


def const(value: int, ty: ir.Type = INDEX) -> ir.Constant:
    return ir.Constant(ty, value)


def as_index(value) -> ir.Value:
    """An i64 IR value for a Python int or an existing i64 value."""
    return value if isinstance(value, ir.Value) else const(int(value))


# --------------------------------------------------------------------------- index math

def add(builder: ir.IRBuilder, a, b) -> ir.Value:
    """a + b on indices (nsw); folds when both are Python ints or `b` is 0."""
    if not isinstance(a, ir.Value) and not isinstance(b, ir.Value):
        return const(a + b)
    if not isinstance(b, ir.Value) and b == 0:
        return as_index(a)
    return builder.add(as_index(a), as_index(b), flags=["nsw"])


def mul(builder: ir.IRBuilder, a, b) -> ir.Value:
    """a * b on indices (nsw); folds constants and multiplication by 0 or 1."""
    if not isinstance(a, ir.Value) and not isinstance(b, ir.Value):
        return const(a * b)
    if not isinstance(b, ir.Value) and b in (0, 1):
        return as_index(a) if b == 1 else const(0)
    return builder.mul(as_index(a), as_index(b), flags=["nsw"])


def sub(builder: ir.IRBuilder, a, b) -> ir.Value:
    if not isinstance(a, ir.Value) and not isinstance(b, ir.Value):
        return const(a - b)
    return builder.sub(as_index(a), as_index(b), flags=["nsw"])


def floor_multiple(builder: ir.IRBuilder, a, multiple: int) -> ir.Value:
    """a rounded down to a multiple of `multiple` (a >= 0; a power of two masks)."""
    if not isinstance(a, ir.Value):
        return const(a // multiple * multiple)
    if multiple & (multiple - 1) == 0:
        return builder.and_(a, const(-multiple))
    return builder.mul(builder.sdiv(a, const(multiple)), const(multiple), flags=["nsw"])


def minimum(builder: ir.IRBuilder, a, b) -> ir.Value:
    a, b = as_index(a), as_index(b)
    return builder.select(builder.icmp_signed("<", a, b), a, b)


def offset(builder: ir.IRBuilder, *terms) -> ir.Value:
    """sum(index * stride for index, stride in terms), skipping zero strides."""
    total = const(0)
    for index, stride in terms:
        total = add(builder, total, mul(builder, index, stride)) if stride else total
    return total


# --------------------------------------------------------------------------- memory

def gep(builder: ir.IRBuilder, ptr: ir.Value, elem: ir.Type, index, name="") -> ir.Value:
    """&ptr[index] for elements of type `elem` (inbounds)."""
    if not isinstance(index, ir.Value) and index == 0:
        return ptr
    return builder.gep(ptr, [as_index(index)], inbounds=True, name=name,
                       source_etype=elem)


def alloca_once(builder: ir.IRBuilder, ty: ir.Type, count: int | None = None,
                name: str = "", align: int | None = None) -> ir.AllocaInstr:
    """A stack slot in the function's entry block (never inside a loop)."""
    with builder.goto_entry_block():
        slot = builder.alloca(ty, size=count, name=name)
    slot.type = PTR      # llvmlite types alloca results; everything else here is opaque
    if align:
        slot.align = align
    return slot


def load(builder: ir.IRBuilder, ptr: ir.Value, ty: ir.Type, align: int | None = None):
    return builder.load(ptr, typ=ty, align=align)


def store(builder: ir.IRBuilder, value: ir.Value, ptr: ir.Value, align: int | None = None):
    return builder.store(value, ptr, align=align)


# --------------------------------------------------------------------------- loops

@contextmanager
def for_range(builder: ir.IRBuilder, stop, start=0, step: int = 1, name: str = "i",
              unroll: bool | None = None, vectorize: bool | None = None):
    """`for (i = start; i < stop; i += step)` on i64; yields `i`.

    `start`/`stop` are Python ints or i64 values; `step` is a positive Python int.
    `unroll=False` / `vectorize=False` tell LLVM to leave the loop as written (for loops
    the generator already vectorized or unrolled itself, and cold ones: saves compile
    time and code size). On exit the builder is positioned after the loop.
    """
    assert step > 0, "for_range counts upwards"
    start, stop = as_index(start), as_index(stop)
    preheader = builder.block
    header = builder.append_basic_block(f"{name}.cond")
    body = builder.append_basic_block(f"{name}.body")
    exit_ = builder.append_basic_block(f"{name}.end")
    builder.branch(header)

    builder.position_at_end(header)
    index = builder.phi(INDEX, name=name)
    index.add_incoming(start, preheader)
    builder.cbranch(builder.icmp_signed("<", index, stop), body, exit_)

    builder.position_at_end(body)
    yield index
    latch = builder.block
    index.add_incoming(builder.add(index, const(step), flags=["nsw"]), latch)
    back_edge = builder.branch(header)
    hints = loop_hints(builder.module, unroll, vectorize)
    if hints is not None:
        back_edge.set_metadata("llvm.loop", hints)
    builder.position_at_end(exit_)


def loop_hints(module: ir.Module, unroll: bool | None, vectorize: bool | None):
    """The `llvm.loop` metadata node for these hints (None: no hints)."""
    names = []
    if unroll is False:
        names.append(("llvm.loop.unroll.disable",))
    if vectorize is False:
        names.append(("llvm.loop.vectorize.enable", ir.Constant(I1, 0)))
    if not names:
        return None
    operands = tuple(module.add_metadata([ir.MetaDataString(module, n[0]), *n[1:]])
                     for n in names)
    # A loop ID is a distinct node whose first operand is itself (LLVM LangRef).
    loop_id = ir.values.MDValue(module, operands, name=str(len(module.metadata)))
    loop_id.operands = (loop_id,) + operands
    return loop_id


@contextmanager
def loop_nest(builder: ir.IRBuilder, stops: Sequence, name: str = "i", **hints):
    """Nested `for_range`s over `stops` (outermost first); yields the index tuple.
    `hints` (unroll=, vectorize=) apply to every loop of the nest."""
    with _nest(builder, list(stops), name, (), hints) as indices:
        yield indices


@contextmanager
def _nest(builder, stops, name, outer, hints):
    if not stops:
        yield outer
        return
    with for_range(builder, stops[0], name=f"{name}{len(outer)}", **hints) as index:
        with _nest(builder, stops[1:], name, outer + (index,), hints) as indices:
            yield indices


# --------------------------------------------------------------------------- vectors

def vector(elem: ir.Type, lanes: int) -> ir.VectorType:
    return ir.VectorType(elem, lanes)


def splat(builder: ir.IRBuilder, scalar: ir.Value, lanes: int) -> ir.Value:
    """<lanes x T> with every lane `scalar` (insertelement + zero shuffle)."""
    ty = vector(scalar.type, lanes)
    one = builder.insert_element(ir.Constant(ty, ir.Undefined), scalar, const(0, I32))
    return builder.shuffle_vector(one, ir.Constant(ty, ir.Undefined),
                                  ir.Constant(vector(I32, lanes), [0] * lanes))


def zeros(ty: ir.Type) -> ir.Constant:
    if isinstance(ty, ir.VectorType):
        return ir.Constant(ty, [ir.Constant(ty.element, 0)] * ty.count)
    return ir.Constant(ty, 0)


def lane_mask(builder: ir.IRBuilder, count, lanes: int) -> ir.Value:
    """<lanes x i1> with lane l set iff l < count (count: i64)."""
    iota = ir.Constant(vector(INDEX, lanes), list(range(lanes)))
    return builder.icmp_signed("<", iota, splat(builder, as_index(count), lanes))


def _intrinsic(module: ir.Module, name: str, ret: ir.Type, args: Sequence[ir.Type]):
    fn = module.globals.get(name)
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(ret, list(args)), name=name)
    return fn


def _suffix(ty: ir.Type) -> str:
    if isinstance(ty, ir.VectorType):
        return f"v{ty.count}{_suffix(ty.element)}"
    return {"float": "f32", "double": "f64", "half": "f16"}.get(str(ty), str(ty))


def fma(builder: ir.IRBuilder, a: ir.Value, b: ir.Value, c: ir.Value) -> ir.Value:
    """a * b + c, fused (llvm.fma), on scalars or vectors."""
    fn = _intrinsic(builder.module, f"llvm.fma.{_suffix(a.type)}", a.type, [a.type] * 3)
    return builder.call(fn, [a, b, c])


def maxnum(builder: ir.IRBuilder, a: ir.Value, b: ir.Value) -> ir.Value:
    """IEEE maxNum (a NaN operand yields the other one), on scalars or vectors."""
    fn = _intrinsic(builder.module, f"llvm.maxnum.{_suffix(a.type)}", a.type, [a.type] * 2)
    return builder.call(fn, [a, b])


def transpose(builder: ir.IRBuilder, rows: Sequence[ir.Value]) -> list[ir.Value]:
    """Transpose a square block held in vectors: result[k] lane i = rows[i] lane k.

    n rows of n lanes, n a power of two; log2(n) rounds of n two-source shuffles, each
    round swapping the off-diagonal blocks of width s (s = n/2, n/4, ..., 1).
    """
    rows, n = list(rows), len(rows)
    assert n & (n - 1) == 0 and all(r.type.count == n for r in rows), "n x n, n = 2^k"
    s = n // 2
    while s:
        lanes = range(n)
        low = ir.Constant(vector(I32, n), [k if not k & s else n + (k ^ s) for k in lanes])
        high = ir.Constant(vector(I32, n), [k ^ s if not k & s else n + k for k in lanes])
        for i in (i for i in range(n) if not i & s):
            a, b = rows[i], rows[i + s]
            rows[i] = builder.shuffle_vector(a, b, low)
            rows[i + s] = builder.shuffle_vector(a, b, high)
        s //= 2
    return rows


def prefix(builder: ir.IRBuilder, value: ir.Value, count: int) -> ir.Value:
    """The first `count` lanes of a vector, as a <count x T> vector."""
    if count == value.type.count:
        return value
    mask = ir.Constant(vector(I32, count), list(range(count)))
    return builder.shuffle_vector(value, ir.Constant(value.type, ir.Undefined), mask)


def load_vector(builder: ir.IRBuilder, ptr: ir.Value, ty: ir.VectorType,
                align: int | None = None) -> ir.Value:
    """A contiguous vector load; `align` defaults to the element's (unaligned) alignment."""
    return builder.load(ptr, typ=ty, align=align or _elem_bytes(ty))


def store_vector(builder: ir.IRBuilder, value: ir.Value, ptr: ir.Value,
                 align: int | None = None):
    return builder.store(value, ptr, align=align or _elem_bytes(value.type))


def masked_load(builder: ir.IRBuilder, ptr: ir.Value, ty: ir.VectorType,
                mask: ir.Value, passthru: ir.Value | None = None) -> ir.Value:
    """Lanes where `mask` is set come from memory (others are never touched)."""
    name = f"llvm.masked.load.{_suffix(ty)}.p0"
    fn = _intrinsic(builder.module, name, ty, [PTR, I32, mask.type, ty])
    return builder.call(fn, [ptr, const(_elem_bytes(ty), I32), mask,
                             passthru if passthru is not None else zeros(ty)])


def masked_store(builder: ir.IRBuilder, value: ir.Value, ptr: ir.Value, mask: ir.Value):
    """Store only the lanes where `mask` is set."""
    name = f"llvm.masked.store.{_suffix(value.type)}.p0"
    fn = _intrinsic(builder.module, name, ir.VoidType(), [value.type, PTR, I32, mask.type])
    return builder.call(fn, [value, ptr, const(_elem_bytes(value.type), I32), mask])


def _elem_bytes(ty: ir.Type) -> int:
    elem = ty.element if isinstance(ty, ir.VectorType) else ty
    if isinstance(elem, ir.IntType):
        return max(1, elem.width // 8)
    return {"float": 4, "double": 8, "half": 2, "bfloat": 2}[str(elem)]


def memset_zero(builder: ir.IRBuilder, ptr: ir.Value, nbytes) -> None:
    fn = _intrinsic(builder.module, "llvm.memset.p0.i64", ir.VoidType(),
                    [PTR, ir.IntType(8), INDEX, I1])
    builder.call(fn, [ptr, ir.Constant(ir.IntType(8), 0), as_index(nbytes),
                      ir.Constant(I1, 0)])


def reduce_add(builder: ir.IRBuilder, value: ir.Value) -> ir.Value:
    """Sum of the lanes of a float vector (reassociated: a shuffle tree)."""
    elem = value.type.element
    fn = _intrinsic(builder.module, f"llvm.vector.reduce.fadd.{_suffix(value.type)}",
                    elem, [elem, value.type])
    return builder.call(fn, [zeros(elem), value], fastmath=("reassoc",))


# --------------------------------------------------------------------------- control flow

def branch_values(builder: ir.IRBuilder, predicate: ir.Value, then, otherwise) -> list:
    """`predicate ? then() : otherwise()` for lists of values computed in IR.

    Each callable emits its code in its own block and returns a list of values; the
    result is their phis. A constant predicate emits only the chosen side.
    """
    if isinstance(predicate, ir.Constant):
        return list(then() if predicate.constant else otherwise())
    with builder.if_else(predicate) as (then_block, else_block):
        with then_block:
            then_values = list(then())
            then_end = builder.block
        with else_block:
            else_values = list(otherwise())
            else_end = builder.block
    merged = []
    for a, b in zip(then_values, else_values, strict=True):
        phi = builder.phi(a.type)
        phi.add_incoming(a, then_end)
        phi.add_incoming(b, else_end)
        merged.append(phi)
    return merged

