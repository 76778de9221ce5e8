"""THE op table: every opcode of the IR, defined once.

Each entry gives the op's name, semantic group, operand arity, attribute schema and its
shape rule. A shape rule receives the operand shapes, the (normalized) attributes and,
for ops whose result cannot be inferred (reshape, convert, iota, ...), the declared
result shape; it returns the result shape or raises `ShapeError` saying which rule was
broken. The verifier, the builder, the parser and every backend consult this table.

Semantics follow StableHLO/XLA; `backends/interpreter` is their executable definition.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from . import dtypes
from .dtypes import DType
from .ir import AnyShape, Attrs, Computation, Literal, Shape, TupleShape


class ShapeError(ValueError):
    """An op was given operands or attributes its rule does not accept."""


# ----------------------------------------------------------------------------- schema

REQUIRED = object()

# Attribute kinds: how a value is checked, printed and parsed.
ATTR_KINDS = ("int", "ints", "int_pairs", "bool", "float", "str", "enum",
              "computation", "computations", "literal")


@dataclass(frozen=True)
class AttrSpec:
    kind: str
    default: object = REQUIRED
    choices: tuple = ()

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


@dataclass(frozen=True)
class OpDef:
    name: str
    group: str                      # unary, binary, ternary, data, compute, control
    arity: tuple[int, int | None]   # (min, max); max None = variadic
    attrs: Mapping[str, AttrSpec]
    shape_rule: Callable
    result_given: bool = False      # the result shape is declared, not inferred
    elementwise: bool = False
    commutative: bool = False
    side_effects: bool = False      # never removed or duplicated (send, recv, all_reduce ...)
    operand_dtypes: str = "any"     # for elementwise ops: float, numeric, logical, any


OPS: dict[str, OpDef] = {}

# Every op may carry `device`: where heterogeneous placement runs it ("cpu", "systolic";
# compiler/passes/placement.py, docs/placement.md). Absent means "not placed": unlike
# other optional attributes it is never filled in with a default.
DEVICE_ATTR = "device"
PLACEMENT_SPEC = AttrSpec("str", default=None)


def _register(name, group, arity, rule, attrs=None, **flags) -> OpDef:
    if isinstance(arity, int):
        arity = (arity, arity)
    attrs = dict(attrs or {})
    attrs.setdefault(DEVICE_ATTR, PLACEMENT_SPEC)
    opdef = OpDef(name, group, arity, attrs, rule, **flags)
    OPS[name] = opdef
    return opdef


def op(name, group, arity, attrs=None, **flags):
    """Decorator: register `name` with the decorated function as its shape rule."""
    def register(rule):
        _register(name, group, arity, rule, attrs, **flags)
        return rule
    return register


def get(opcode: str) -> OpDef:
    try:
        return OPS[opcode]
    except KeyError:
        raise ShapeError(f"unknown op {opcode!r}") from None


# ----------------------------------------------------------------------------- checking helpers

def fail(message: str):
    raise ShapeError(message)


def require(condition: bool, message: str):
    if not condition:
        raise ShapeError(message)


def array_shape(shape, what: str) -> Shape:
    require(isinstance(shape, Shape), f"{what} must be an array, got tuple {shape}")
    return shape


def scalar_shape(shape, what: str) -> Shape:
    array_shape(shape, what)
    require(shape.rank == 0, f"{what} must be a scalar, got {shape}")
    return shape


def check_dims_valid(dims: Sequence[int], rank: int, what: str, unique: bool = True):
    for d in dims:
        require(0 <= d < rank, f"{what} {list(dims)} out of range for rank {rank}")
    if unique:
        require(len(set(dims)) == len(dims), f"{what} {list(dims)} has repeated entries")


def check_dtype_class(shape: Shape, kind: str, opname: str):
    dt = shape.dtype
    ok = {
        "any": True,
        "float": dt.is_float,
        "numeric": not dt.is_pred,
        "signed": dt.is_float or dt.kind == "signed",
        "logical": dt.is_pred or dt.is_integer,
        "integer": dt.is_integer,
    }[kind]
    require(ok, f"{opname} needs {kind} operands, got {dt.name}")


def same_array_shapes(shapes: Sequence[AnyShape], opname: str) -> Shape:
    first = array_shape(shapes[0], f"{opname} operand 0")
    for i, s in enumerate(shapes[1:], 1):
        array_shape(s, f"{opname} operand {i}")
        require(s.dims == first.dims and s.dtype == first.dtype,
                f"{opname} operands must have the same shape and dtype, "
                f"got {', '.join(str(x) for x in shapes)}")
    return first


def window_output_size(size: int, window: int, stride: int, lo: int, hi: int,
                       base_dilation: int = 1, window_dilation: int = 1) -> int:
    dilated_in = (size - 1) * base_dilation + 1 if size > 0 else 0
    padded = dilated_in + lo + hi
    dilated_window = (window - 1) * window_dilation + 1
    if padded < dilated_window:
        return 0
    return (padded - dilated_window) // stride + 1


def computation_signature(comp: Computation) -> tuple[list[AnyShape], AnyShape]:
    require(comp.root is not None, f"computation {comp.name} has no root")
    return comp.parameter_shapes(), comp.root.shape


def scalar_of(dtype: DType) -> Shape:
    return Shape(dtype, ())


# ----------------------------------------------------------------------------- elementwise

def _unary_rule(opname, kind, result_dtype=None):
    def rule(shapes, attrs, declared):
        x = array_shape(shapes[0], f"{opname} operand")
        check_dtype_class(x, kind, opname)
        return Shape(result_dtype or x.dtype, x.dims)
    return rule


UNARY = {  # name -> operand dtype class
    "negate": "signed", "abs": "signed", "sign": "signed",
    "exp": "float", "log": "float", "log1p": "float", "expm1": "float", "sqrt": "float",
    "rsqrt": "float", "tanh": "float", "logistic": "float", "sin": "float", "cos": "float",
    "erf": "float", "floor": "float", "ceil": "float", "round": "float",
    "not": "logical",
}
for _name, _kind in UNARY.items():
    _register(_name, "unary", 1, _unary_rule(_name, _kind), elementwise=True, operand_dtypes=_kind)
_register("is_finite", "unary", 1, _unary_rule("is_finite", "float", dtypes.pred),
          elementwise=True, operand_dtypes="float")


@op("convert", "unary", 1, result_given=True, elementwise=True)
def _convert(shapes, attrs, declared):
    x = array_shape(shapes[0], "convert operand")
    require(declared is not None, "convert needs a declared result type")
    require(isinstance(declared, Shape) and declared.dims == x.dims,
            f"convert keeps dims: operand {x}, result {declared}")
    return declared


def _binary_rule(opname, kind):
    def rule(shapes, attrs, declared):
        x = same_array_shapes(shapes, opname)
        check_dtype_class(x, kind, opname)
        return x.with_dims(x.dims)
    return rule


BINARY = {  # name -> (operand dtype class, commutative)
    "add": ("numeric", True), "subtract": ("numeric", False), "multiply": ("numeric", True),
    "divide": ("numeric", False), "remainder": ("numeric", False), "power": ("numeric", False),
    "maximum": ("any", True), "minimum": ("any", True), "atan2": ("float", False),
    "and": ("logical", True), "or": ("logical", True), "xor": ("logical", True),
}
for _name, (_kind, _comm) in BINARY.items():
    _register(_name, "binary", 2, _binary_rule(_name, _kind), elementwise=True,
              commutative=_comm, operand_dtypes=_kind)

COMPARE_DIRECTIONS = ("EQ", "NE", "LT", "LE", "GT", "GE")


@op("compare", "binary", 2, {"direction": AttrSpec("enum", choices=COMPARE_DIRECTIONS)},
    elementwise=True)
def _compare(shapes, attrs, declared):
    x = same_array_shapes(shapes, "compare")
    return Shape(dtypes.pred, x.dims)


@op("select", "ternary", 3, elementwise=True)
def _select(shapes, attrs, declared):
    p = array_shape(shapes[0], "select predicate")
    x = same_array_shapes(shapes[1:], "select")
    require(p.dtype == dtypes.pred, f"select predicate must be pred, got {p}")
    require(p.dims == x.dims, f"select predicate {p} must match operands {x}")
    return x


@op("clamp", "ternary", 3, elementwise=True)
def _clamp(shapes, attrs, declared):
    lo, x, hi = (array_shape(s, "clamp operand") for s in shapes)
    check_dtype_class(x, "numeric", "clamp")
    for bound, what in ((lo, "min"), (hi, "max")):
        require(bound.dtype == x.dtype and (bound.rank == 0 or bound.dims == x.dims),
                f"clamp {what} must be a scalar or match the operand {x}, got {bound}")
    return x


# ----------------------------------------------------------------------------- data movement

@op("parameter", "data", 0, {"index": AttrSpec("int")}, result_given=True)
def _parameter(shapes, attrs, declared):
    require(declared is not None, "parameter needs a declared type")
    require(attrs["index"] >= 0, f"parameter index must be >= 0, got {attrs['index']}")
    return declared


@op("constant", "data", 0, {"value": AttrSpec("literal")}, result_given=True)
def _constant(shapes, attrs, declared):
    value = attrs["value"]
    require(isinstance(value, Literal), f"constant value must be a literal, got {value!r}")
    if declared is None:
        return Shape(dtypes.from_numpy(value.array.dtype), value.array.shape)
    require(isinstance(declared, Shape) and declared.dims == value.array.shape,
            f"constant of declared type {declared} holds a value of shape {value.array.shape}")
    require(value.array.dtype == declared.dtype.storage,
            f"constant of declared type {declared} holds {value.array.dtype} values")
    if declared.dtype is dtypes.bf16:
        rounded = dtypes.round_to_bf16(value.array)
        require(np.array_equal(rounded.view(np.uint32), value.array.view(np.uint32)),
                f"constant of declared type {declared} holds values that are not bf16-representable")
    return declared


@op("iota", "data", 0, {"iota_dimension": AttrSpec("int")}, result_given=True)
def _iota(shapes, attrs, declared):
    require(isinstance(declared, Shape), "iota needs a declared array type")
    check_dims_valid([attrs["iota_dimension"]], declared.rank, "iota_dimension")
    check_dtype_class(declared, "numeric", "iota")
    return declared


@op("broadcast_in_dim", "data", 1, {"broadcast_dimensions": AttrSpec("ints")}, result_given=True)
def _broadcast_in_dim(shapes, attrs, declared):
    x = array_shape(shapes[0], "broadcast_in_dim operand")
    require(isinstance(declared, Shape), "broadcast_in_dim needs a declared array type")
    bdims = attrs["broadcast_dimensions"]
    require(len(bdims) == x.rank,
            f"broadcast_dimensions {list(bdims)} must have one entry per operand dim ({x})")
    check_dims_valid(bdims, declared.rank, "broadcast_dimensions")
    for i, d in enumerate(bdims):
        require(x.dims[i] in (1, declared.dims[d]),
                f"broadcast_in_dim: operand dim {i} (size {x.dims[i]}) cannot broadcast "
                f"to result dim {d} (size {declared.dims[d]})")
    require(declared.dtype == x.dtype, f"broadcast_in_dim keeps the dtype: {x} -> {declared}")
    return declared


@op("reshape", "data", 1, result_given=True)
def _reshape(shapes, attrs, declared):
    x = array_shape(shapes[0], "reshape operand")
    require(isinstance(declared, Shape), "reshape needs a declared array type")
    require(declared.size == x.size and declared.dtype == x.dtype,
            f"reshape cannot turn {x} ({x.size} elements) into {declared} "
            f"({declared.size} elements)")
    return declared


@op("transpose", "data", 1, {"permutation": AttrSpec("ints")})
def _transpose(shapes, attrs, declared):
    x = array_shape(shapes[0], "transpose operand")
    perm = attrs["permutation"]
    require(sorted(perm) == list(range(x.rank)),
            f"transpose permutation {list(perm)} is not a permutation of rank {x.rank}")
    return x.with_dims([x.dims[p] for p in perm])


@op("slice", "data", 1, {"start_indices": AttrSpec("ints"), "limit_indices": AttrSpec("ints"),
                         "strides": AttrSpec("ints", default=None)})
def _slice(shapes, attrs, declared):
    x = array_shape(shapes[0], "slice operand")
    starts, limits = attrs["start_indices"], attrs["limit_indices"]
    strides = attrs["strides"] or (1,) * x.rank
    require(len(starts) == len(limits) == len(strides) == x.rank,
            f"slice needs one start/limit/stride per dim of {x}")
    dims = []
    for d, (s, l, st) in enumerate(zip(starts, limits, strides)):
        require(0 <= s <= l <= x.dims[d] and st >= 1,
                f"slice dim {d}: need 0 <= start {s} <= limit {l} <= {x.dims[d]}, stride {st} >= 1")
        dims.append(-(-(l - s) // st))
    return x.with_dims(dims)


@op("dynamic_slice", "data", (1, None), {"slice_sizes": AttrSpec("ints")})
def _dynamic_slice(shapes, attrs, declared):
    x = array_shape(shapes[0], "dynamic_slice operand")
    sizes = attrs["slice_sizes"]
    require(len(shapes) == 1 + x.rank,
            f"dynamic_slice needs one start index per dim of {x}, got {len(shapes) - 1}")
    for s in shapes[1:]:
        scalar_shape(s, "dynamic_slice start index")
        check_dtype_class(s, "integer", "dynamic_slice start index")
    require(len(sizes) == x.rank and all(0 <= n <= d for n, d in zip(sizes, x.dims)),
            f"dynamic_slice sizes {list(sizes)} must fit in {x}")
    return x.with_dims(sizes)


@op("dynamic_update_slice", "data", (2, None))
def _dynamic_update_slice(shapes, attrs, declared):
    x = array_shape(shapes[0], "dynamic_update_slice operand")
    u = array_shape(shapes[1], "dynamic_update_slice update")
    require(len(shapes) == 2 + x.rank,
            f"dynamic_update_slice needs one start index per dim of {x}, got {len(shapes) - 2}")
    for s in shapes[2:]:
        scalar_shape(s, "dynamic_update_slice start index")
        check_dtype_class(s, "integer", "dynamic_update_slice start index")
    require(u.dtype == x.dtype and u.rank == x.rank and all(a <= b for a, b in zip(u.dims, x.dims)),
            f"dynamic_update_slice update {u} must fit in operand {x}")
    return x


@op("concatenate", "data", (1, None), {"dimension": AttrSpec("int")})
def _concatenate(shapes, attrs, declared):
    first = array_shape(shapes[0], "concatenate operand 0")
    dim = attrs["dimension"]
    check_dims_valid([dim], first.rank, "concatenate dimension")
    total = 0
    for i, s in enumerate(shapes):
        array_shape(s, f"concatenate operand {i}")
        same = all(a == b for k, (a, b) in enumerate(zip(s.dims, first.dims)) if k != dim)
        require(s.dtype == first.dtype and s.rank == first.rank and same,
                f"concatenate operands must agree except in dim {dim}: "
                f"{', '.join(str(x) for x in shapes)}")
        total += s.dims[dim]
    dims = list(first.dims)
    dims[dim] = total
    return first.with_dims(dims)


@op("pad", "data", 2, {"edge_padding_low": AttrSpec("ints"), "edge_padding_high": AttrSpec("ints"),
                       "interior_padding": AttrSpec("ints", default=None)})
def _pad(shapes, attrs, declared):
    x = array_shape(shapes[0], "pad operand")
    v = scalar_shape(shapes[1], "pad value")
    require(v.dtype == x.dtype, f"pad value {v} must have the operand's dtype {x.dtype}")
    lo, hi = attrs["edge_padding_low"], attrs["edge_padding_high"]
    interior = attrs["interior_padding"] or (0,) * x.rank
    require(len(lo) == len(hi) == len(interior) == x.rank, f"pad needs one entry per dim of {x}")
    dims = []
    for d, size in enumerate(x.dims):
        require(interior[d] >= 0, f"pad interior_padding must be >= 0, got {list(interior)}")
        n = lo[d] + hi[d] + size + max(size - 1, 0) * interior[d]
        require(n >= 0, f"pad dim {d} would have negative size {n}")
        dims.append(n)
    return x.with_dims(dims)


@op("reverse", "data", 1, {"dimensions": AttrSpec("ints")})
def _reverse(shapes, attrs, declared):
    x = array_shape(shapes[0], "reverse operand")
    check_dims_valid(attrs["dimensions"], x.rank, "reverse dimensions")
    return x


GATHER_ATTRS = {
    "offset_dims": AttrSpec("ints"), "collapsed_slice_dims": AttrSpec("ints"),
    "start_index_map": AttrSpec("ints"), "index_vector_dim": AttrSpec("int"),
    "slice_sizes": AttrSpec("ints"), "indices_are_sorted": AttrSpec("bool", default=False),
}


def index_batch_dims(indices: Shape, index_vector_dim: int) -> list[int]:
    return [d for k, d in enumerate(indices.dims) if k != index_vector_dim]


def index_vector_size(indices: Shape, index_vector_dim: int) -> int:
    return 1 if index_vector_dim == indices.rank else indices.dims[index_vector_dim]


@op("gather", "data", 2, GATHER_ATTRS)
def _gather(shapes, attrs, declared):
    x = array_shape(shapes[0], "gather operand")
    idx = array_shape(shapes[1], "gather start_indices")
    check_dtype_class(idx, "integer", "gather start_indices")
    ivd = attrs["index_vector_dim"]
    require(0 <= ivd <= idx.rank, f"gather index_vector_dim {ivd} out of range for {idx}")
    sizes, collapsed = attrs["slice_sizes"], attrs["collapsed_slice_dims"]
    offset_dims, start_map = attrs["offset_dims"], attrs["start_index_map"]
    require(len(sizes) == x.rank and all(0 <= s <= d for s, d in zip(sizes, x.dims)),
            f"gather slice_sizes {list(sizes)} must fit in operand {x}")
    check_dims_valid(collapsed, x.rank, "gather collapsed_slice_dims")
    # Exactly 1: a collapsed dim of size 0 would leave an empty slice, yet the result
    # shape (which drops the dim) still has elements to fill.
    require(all(sizes[d] == 1 for d in collapsed),
            f"gather collapsed_slice_dims must have size 1: collapsed {list(collapsed)}, "
            f"slice_sizes {list(sizes)}")
    check_dims_valid(start_map, x.rank, "gather start_index_map")
    require(len(start_map) == index_vector_size(idx, ivd),
            f"gather start_index_map {list(start_map)} must have one entry per index "
            f"component ({index_vector_size(idx, ivd)})")
    offset_sizes = [s for d, s in enumerate(sizes) if d not in collapsed]
    require(len(offset_dims) == len(offset_sizes),
            f"gather offset_dims {list(offset_dims)} must name {len(offset_sizes)} dims")
    batch = index_batch_dims(idx, ivd)
    rank = len(batch) + len(offset_dims)
    check_dims_valid(offset_dims, rank, "gather offset_dims")
    require(list(offset_dims) == sorted(offset_dims), "gather offset_dims must be sorted")
    dims, b, o = [], iter(batch), iter(offset_sizes)
    for d in range(rank):
        dims.append(next(o) if d in offset_dims else next(b))
    return x.with_dims(dims)


SCATTER_ATTRS = {
    "update_window_dims": AttrSpec("ints"), "inserted_window_dims": AttrSpec("ints"),
    "scatter_dims_to_operand_dims": AttrSpec("ints"), "index_vector_dim": AttrSpec("int"),
    "indices_are_sorted": AttrSpec("bool", default=False),
    "unique_indices": AttrSpec("bool", default=False), "to_apply": AttrSpec("computation"),
}


@op("scatter", "data", 3, SCATTER_ATTRS)
def _scatter(shapes, attrs, declared):
    x = array_shape(shapes[0], "scatter operand")
    idx = array_shape(shapes[1], "scatter indices")
    upd = array_shape(shapes[2], "scatter updates")
    check_dtype_class(idx, "integer", "scatter indices")
    require(upd.dtype == x.dtype, f"scatter updates {upd} must have the operand's dtype {x.dtype}")
    ivd = attrs["index_vector_dim"]
    require(0 <= ivd <= idx.rank, f"scatter index_vector_dim {ivd} out of range for {idx}")
    window, inserted = attrs["update_window_dims"], attrs["inserted_window_dims"]
    to_operand = attrs["scatter_dims_to_operand_dims"]
    check_dims_valid(window, upd.rank, "scatter update_window_dims")
    require(list(window) == sorted(window), "scatter update_window_dims must be sorted")
    check_dims_valid(inserted, x.rank, "scatter inserted_window_dims")
    check_dims_valid(to_operand, x.rank, "scatter scatter_dims_to_operand_dims")
    require(len(to_operand) == index_vector_size(idx, ivd),
            "scatter_dims_to_operand_dims must have one entry per index component")
    require(len(window) + len(inserted) == x.rank,
            f"scatter: update_window_dims {list(window)} + inserted_window_dims "
            f"{list(inserted)} must cover the operand rank {x.rank}")
    scatter_dims = [s for d, s in enumerate(upd.dims) if d not in window]
    require(scatter_dims == index_batch_dims(idx, ivd),
            f"scatter updates {upd} scatter dims {scatter_dims} must match indices batch dims "
            f"{index_batch_dims(idx, ivd)}")
    window_operand_dims = [d for d in range(x.rank) if d not in inserted]
    for wd, od in zip(window, window_operand_dims):
        require(upd.dims[wd] <= x.dims[od],
                f"scatter update window dim {wd} (size {upd.dims[wd]}) exceeds operand dim {od}")
    check_reducer(attrs["to_apply"], [x.dtype], "scatter to_apply")
    return x


def check_reducer(comp: Computation, dts: Sequence[DType], what: str):
    """A reducer takes 2N scalars (accumulators, then values) and returns N scalars."""
    params, result = computation_signature(comp)
    want = [scalar_of(d) for d in dts] * 2
    require([p for p in params] == want,
            f"{what} {comp.name} must take {len(want)} scalars {want}, takes {params}")
    results = result.elements if isinstance(result, TupleShape) else (result,)
    require(list(results) == [scalar_of(d) for d in dts],
            f"{what} {comp.name} must return {[scalar_of(d) for d in dts]}, returns {result}")


# ----------------------------------------------------------------------------- compute

DOT_ATTRS = {
    "lhs_batching_dims": AttrSpec("ints", default=()), "rhs_batching_dims": AttrSpec("ints", default=()),
    "lhs_contracting_dims": AttrSpec("ints"), "rhs_contracting_dims": AttrSpec("ints"),
}


@op("dot_general", "compute", 2, DOT_ATTRS)
def _dot_general(shapes, attrs, declared):
    lhs = array_shape(shapes[0], "dot_general lhs")
    rhs = array_shape(shapes[1], "dot_general rhs")
    require(lhs.dtype == rhs.dtype, f"dot_general operands must share a dtype: {lhs}, {rhs}")
    check_dtype_class(lhs, "numeric", "dot_general")
    lb, rb = attrs["lhs_batching_dims"], attrs["rhs_batching_dims"]
    lc, rc = attrs["lhs_contracting_dims"], attrs["rhs_contracting_dims"]
    check_dims_valid(tuple(lb) + tuple(lc), lhs.rank, "dot_general lhs batching+contracting dims")
    check_dims_valid(tuple(rb) + tuple(rc), rhs.rank, "dot_general rhs batching+contracting dims")
    require(len(lb) == len(rb), "dot_general needs as many lhs as rhs batching dims")
    require(len(lc) == len(rc), "dot_general needs as many lhs as rhs contracting dims")
    for a, b in zip(lb, rb):
        require(lhs.dims[a] == rhs.dims[b],
                f"dot_general batch dims differ: lhs dim {a} = {lhs.dims[a]}, rhs dim {b} = {rhs.dims[b]}")
    for a, b in zip(lc, rc):
        require(lhs.dims[a] == rhs.dims[b],
                f"dot_general contracting dims differ: lhs {lhs} dim {a}, rhs {rhs} dim {b}")
    lfree = [d for k, d in enumerate(lhs.dims) if k not in lb and k not in lc]
    rfree = [d for k, d in enumerate(rhs.dims) if k not in rb and k not in rc]
    return lhs.with_dims([lhs.dims[a] for a in lb] + lfree + rfree)


@dataclass(frozen=True)
class ConvDims:
    """Convolution dimension numbers parsed from XLA-style labels 'b01f_01io->b01f'."""
    input_batch: int
    input_feature: int
    input_spatial: tuple
    kernel_in: int
    kernel_out: int
    kernel_spatial: tuple
    output_batch: int
    output_feature: int
    output_spatial: tuple


def parse_dim_labels(labels: str) -> ConvDims:
    try:
        lhs_rhs, out = labels.split("->")
        lhs, rhs = lhs_rhs.split("_")
    except ValueError:
        fail(f"convolution dim_labels must look like 'b01f_01io->b01f', got {labels!r}")
    n = len(lhs) - 2
    require(n >= 0 and len(rhs) == n + 2 and len(out) == n + 2,
            f"convolution dim_labels {labels!r}: all three parts need the same rank")

    def spatial(part):
        try:
            return tuple(part.index(str(i)) for i in range(n))
        except ValueError:
            fail(f"convolution dim_labels {labels!r}: {part!r} must name spatial dims 0..{n - 1}")

    for part, letters in ((lhs, "bf"), (rhs, "io"), (out, "bf")):
        require(sorted(part) == sorted(letters + "".join(str(i) for i in range(n))),
                f"convolution dim_labels {labels!r}: {part!r} must use {letters} and 0..{n - 1} once")
    return ConvDims(lhs.index("b"), lhs.index("f"), spatial(lhs), rhs.index("i"), rhs.index("o"),
                    spatial(rhs), out.index("b"), out.index("f"), spatial(out))


CONV_ATTRS = {
    "window_strides": AttrSpec("ints", default=None), "padding": AttrSpec("int_pairs", default=None),
    "lhs_dilation": AttrSpec("ints", default=None), "rhs_dilation": AttrSpec("ints", default=None),
    "feature_group_count": AttrSpec("int", default=1), "batch_group_count": AttrSpec("int", default=1),
    "dim_labels": AttrSpec("str"),
}


def conv_window(attrs, n):
    ones = (1,) * n
    return (attrs["window_strides"] or ones, attrs["padding"] or ((0, 0),) * n,
            attrs["lhs_dilation"] or ones, attrs["rhs_dilation"] or ones)


@op("convolution", "compute", 2, CONV_ATTRS)
def _convolution(shapes, attrs, declared):
    lhs = array_shape(shapes[0], "convolution input")
    rhs = array_shape(shapes[1], "convolution kernel")
    require(lhs.dtype == rhs.dtype, f"convolution operands must share a dtype: {lhs}, {rhs}")
    check_dtype_class(lhs, "numeric", "convolution")
    dn = parse_dim_labels(attrs["dim_labels"])
    n = len(dn.input_spatial)
    require(lhs.rank == n + 2 and rhs.rank == n + 2,
            f"convolution dim_labels {attrs['dim_labels']!r} expect rank {n + 2}: got {lhs}, {rhs}")
    strides, padding, lhs_dil, rhs_dil = conv_window(attrs, n)
    require(len(strides) == len(padding) == len(lhs_dil) == len(rhs_dil) == n,
            f"convolution window attributes need {n} entries each")
    require(all(s >= 1 for s in strides) and all(d >= 1 for d in lhs_dil + rhs_dil),
            "convolution strides and dilations must be >= 1")
    fgc, bgc = attrs["feature_group_count"], attrs["batch_group_count"]
    require(fgc >= 1 and bgc >= 1 and (fgc == 1 or bgc == 1),
            f"convolution group counts must be >= 1 and not both > 1: {fgc}, {bgc}")
    in_f, k_in, k_out = lhs.dims[dn.input_feature], rhs.dims[dn.kernel_in], rhs.dims[dn.kernel_out]
    batch = lhs.dims[dn.input_batch]
    require(in_f == k_in * fgc, f"convolution input features {in_f} must equal kernel input "
                                f"features {k_in} x feature_group_count {fgc}")
    require(k_out % fgc == 0 and k_out % bgc == 0,
            f"convolution kernel output features {k_out} must divide by the group counts")
    require(batch % bgc == 0, f"convolution batch {batch} must divide by batch_group_count {bgc}")
    out = [0] * (n + 2)
    out[dn.output_batch] = batch // bgc
    out[dn.output_feature] = k_out
    for i in range(n):
        lo, hi = padding[i]
        out[dn.output_spatial[i]] = window_output_size(
            lhs.dims[dn.input_spatial[i]], rhs.dims[dn.kernel_spatial[i]], strides[i], lo, hi,
            lhs_dil[i], rhs_dil[i])
    return lhs.with_dims(out)


def split_inputs_inits(shapes, opname) -> tuple[list[Shape], list[Shape]]:
    require(len(shapes) % 2 == 0, f"{opname} takes N inputs then N init values, got {len(shapes)} operands")
    n = len(shapes) // 2
    inputs = [array_shape(s, f"{opname} input") for s in shapes[:n]]
    inits = [scalar_shape(s, f"{opname} init value") for s in shapes[n:]]
    for x, init in zip(inputs, inits):
        require(x.dims == inputs[0].dims, f"{opname} inputs must share dims: {inputs}")
        require(x.dtype == init.dtype, f"{opname} init value {init} must match input {x}")
    return inputs, inits


def tuple_or_single(shapes: list[Shape]) -> AnyShape:
    return shapes[0] if len(shapes) == 1 else TupleShape(shapes)


@op("reduce", "compute", (2, None), {"dimensions": AttrSpec("ints"), "to_apply": AttrSpec("computation")})
def _reduce(shapes, attrs, declared):
    inputs, inits = split_inputs_inits(shapes, "reduce")
    dims = attrs["dimensions"]
    check_dims_valid(dims, inputs[0].rank, "reduce dimensions")
    check_reducer(attrs["to_apply"], [i.dtype for i in inits], "reduce to_apply")
    kept = [d for k, d in enumerate(inputs[0].dims) if k not in dims]
    return tuple_or_single([Shape(x.dtype, kept) for x in inputs])


WINDOW_ATTRS = {
    "window_dimensions": AttrSpec("ints"), "window_strides": AttrSpec("ints", default=None),
    "padding": AttrSpec("int_pairs", default=None),
}


def window_params(attrs, rank):
    window = attrs["window_dimensions"]
    strides = attrs["window_strides"] or (1,) * rank
    padding = attrs["padding"] or ((0, 0),) * rank
    base = attrs.get("base_dilations") or (1,) * rank
    wdil = attrs.get("window_dilations") or (1,) * rank
    require(len(window) == len(strides) == len(padding) == len(base) == len(wdil) == rank,
            f"window attributes need {rank} entries each")
    require(all(w >= 1 for w in window) and all(s >= 1 for s in strides),
            "window dimensions and strides must be >= 1")
    require(all(d >= 1 for d in base + wdil), "window dilations must be >= 1")
    return window, strides, padding, base, wdil


def windowed_dims(dims, attrs) -> list[int]:
    window, strides, padding, base, wdil = window_params(attrs, len(dims))
    return [window_output_size(d, w, s, lo, hi, b, wd)
            for d, w, s, (lo, hi), b, wd in zip(dims, window, strides, padding, base, wdil)]


@op("reduce_window", "compute", (2, None),
    {**WINDOW_ATTRS, "base_dilations": AttrSpec("ints", default=None),
     "window_dilations": AttrSpec("ints", default=None), "to_apply": AttrSpec("computation")})
def _reduce_window(shapes, attrs, declared):
    inputs, inits = split_inputs_inits(shapes, "reduce_window")
    check_reducer(attrs["to_apply"], [i.dtype for i in inits], "reduce_window to_apply")
    dims = windowed_dims(inputs[0].dims, attrs)
    return tuple_or_single([Shape(x.dtype, dims) for x in inputs])


@op("select_and_scatter", "compute", 3,
    {**WINDOW_ATTRS, "select": AttrSpec("computation"), "scatter": AttrSpec("computation")})
def _select_and_scatter(shapes, attrs, declared):
    x = array_shape(shapes[0], "select_and_scatter operand")
    src = array_shape(shapes[1], "select_and_scatter source")
    init = scalar_shape(shapes[2], "select_and_scatter init value")
    require(src.dtype == x.dtype == init.dtype, "select_and_scatter operands must share a dtype")
    expected = windowed_dims(x.dims, attrs)
    require(list(src.dims) == expected,
            f"select_and_scatter source {src} must have the windowed shape {expected}")
    params, result = computation_signature(attrs["select"])
    require(params == [scalar_of(x.dtype)] * 2 and result == scalar_of(dtypes.pred),
            f"select_and_scatter select {attrs['select'].name} must map two {x.dtype} scalars to pred")
    check_reducer(attrs["scatter"], [x.dtype], "select_and_scatter scatter")
    return x


@op("sort", "compute", (1, None), {"dimension": AttrSpec("int"), "is_stable": AttrSpec("bool", default=False),
                                   "comparator": AttrSpec("computation")})
def _sort(shapes, attrs, declared):
    inputs = [array_shape(s, "sort operand") for s in shapes]
    require(all(x.dims == inputs[0].dims for x in inputs), f"sort operands must share dims: {inputs}")
    check_dims_valid([attrs["dimension"]], inputs[0].rank, "sort dimension")
    params, result = computation_signature(attrs["comparator"])
    want = [scalar_of(x.dtype) for x in inputs for _ in (0, 1)]
    require(params == want and result == scalar_of(dtypes.pred),
            f"sort comparator {attrs['comparator'].name} must take {want} and return pred[]")
    return tuple_or_single(inputs)


# ----------------------------------------------------------------------------- control and other

# trip_count: set by the frontend when the number of iterations is known when tracing
# (fori_loop with Python int bounds, scan); reverse-mode autodiff needs it.
@op("while", "control", 1, {"condition": AttrSpec("computation"), "body": AttrSpec("computation"),
                            "trip_count": AttrSpec("int", default=None)})
def _while(shapes, attrs, declared):
    state = shapes[0]
    cparams, cresult = computation_signature(attrs["condition"])
    bparams, bresult = computation_signature(attrs["body"])
    require(cparams == [state] and cresult == scalar_of(dtypes.pred),
            f"while condition {attrs['condition'].name} must map {state} to pred[], maps {cparams} to {cresult}")
    require(bparams == [state] and bresult == state,
            f"while body {attrs['body'].name} must map {state} to itself, maps {bparams} to {bresult}")
    require(attrs["trip_count"] is None or attrs["trip_count"] >= 0,
            f"while trip_count must be >= 0, got {attrs['trip_count']}")
    return state


@op("conditional", "control", (2, None), {"branch_computations": AttrSpec("computations")})
def _conditional(shapes, attrs, declared):
    index = scalar_shape(shapes[0], "conditional branch index")
    require(index.dtype in (dtypes.pred, dtypes.s32),
            f"conditional branch index must be pred[] or s32[], got {index}")
    branches = attrs["branch_computations"]
    require(len(branches) >= 1 and len(branches) == len(shapes) - 1,
            f"conditional needs one operand per branch: {len(branches)} branches, {len(shapes) - 1} operands")
    require(index.dtype != dtypes.pred or len(branches) == 2, "a pred-indexed conditional has two branches")
    result = None
    for comp, operand in zip(branches, shapes[1:]):
        params, out = computation_signature(comp)
        require(params == [operand], f"conditional branch {comp.name} takes {params}, given {operand}")
        require(result is None or out == result,
                f"conditional branches must return the same type: {result} vs {out} ({comp.name})")
        result = out
    return result


@op("call", "control", (0, None), {"to_apply": AttrSpec("computation")})
def _call(shapes, attrs, declared):
    params, result = computation_signature(attrs["to_apply"])
    require(list(shapes) == params, f"call of {attrs['to_apply'].name} takes {params}, given {list(shapes)}")
    return result


@op("tuple", "control", (0, None))
def _tuple(shapes, attrs, declared):
    return TupleShape(shapes)


@op("get_tuple_element", "control", 1, {"index": AttrSpec("int")})
def _get_tuple_element(shapes, attrs, declared):
    t = shapes[0]
    require(isinstance(t, TupleShape), f"get_tuple_element needs a tuple operand, got {t}")
    i = attrs["index"]
    require(0 <= i < len(t.elements), f"get_tuple_element index {i} out of range for {t}")
    return t.elements[i]


RNG_ALGORITHMS = ("philox",)


@op("rng_bit_generator", "control", 1, {"algorithm": AttrSpec("enum", default="philox", choices=RNG_ALGORITHMS)},
    result_given=True, side_effects=False)
def _rng_bit_generator(shapes, attrs, declared):
    state = array_shape(shapes[0], "rng_bit_generator state")
    require(state.dtype == dtypes.u32 and state.dims == (4,),
            f"rng_bit_generator state must be u32[4] (philox key and counter), got {state}")
    require(isinstance(declared, TupleShape) and len(declared.elements) == 2
            and declared.elements[0] == state and isinstance(declared.elements[1], Shape)
            and declared.elements[1].dtype == dtypes.u32,
            f"rng_bit_generator returns (u32[4] new state, u32[...] bits), declared {declared}")
    return declared


ALL_REDUCE_OPS = ("sum", "mean", "max", "min")


@op("all_reduce", "control", 1, {"reduction": AttrSpec("enum", choices=ALL_REDUCE_OPS)}, side_effects=True)
def _all_reduce(shapes, attrs, declared):
    x = array_shape(shapes[0], "all_reduce operand")
    check_dtype_class(x, "numeric", "all_reduce")
    return x


@op("all_gather", "control", 1, {"participants": AttrSpec("int")}, side_effects=True)
def _all_gather(shapes, attrs, declared):
    """Every process's operand, stacked on a new leading axis in process order."""
    x = array_shape(shapes[0], "all_gather operand")
    require(attrs["participants"] >= 1, f"all_gather needs participants >= 1, got {attrs['participants']}")
    return x.with_dims((attrs["participants"],) + x.dims)


@op("collective_broadcast", "control", 1, {"root": AttrSpec("int", default=0)}, side_effects=True)
def _collective_broadcast(shapes, attrs, declared):
    """The root process's operand, on every process (StableHLO's collective_broadcast)."""
    x = array_shape(shapes[0], "collective_broadcast operand")
    require(attrs["root"] >= 0, f"collective_broadcast root must be >= 0, got {attrs['root']}")
    return x


COLLECTIVES = ("all_reduce", "all_gather", "collective_broadcast")


# send / recv: `device` is where the instruction runs, `peer` the device at the other end
# of the channel (the cut inserted by compiler/passes/device_transfers.py: the send runs
# on the producer's device, the recv on the consumer's).
@op("send", "control", 1, {"channel_id": AttrSpec("int"), "device": AttrSpec("str"),
                           "peer": AttrSpec("str", default="")}, side_effects=True)
def _send(shapes, attrs, declared):
    array_shape(shapes[0], "send operand")
    return TupleShape(())   # a token: orders the matching recv after this send


@op("recv", "control", (0, 1), {"channel_id": AttrSpec("int"), "device": AttrSpec("str"),
                                 "peer": AttrSpec("str", default="")},
    result_given=True, side_effects=True)
def _recv(shapes, attrs, declared):
    require(all(s == TupleShape(()) for s in shapes), "recv's optional operand is the send token ()")
    require(isinstance(declared, Shape), "recv needs a declared array type")
    return declared


FUSION_KINDS = ("loop", "input", "output")


@op("fusion", "control", (0, None), {"kind": AttrSpec("enum", choices=FUSION_KINDS),
                                     "calls": AttrSpec("computation")})
def _fusion(shapes, attrs, declared):
    params, result = computation_signature(attrs["calls"])
    require(list(shapes) == params, f"fusion of {attrs['calls'].name} takes {params}, given {list(shapes)}")
    return result


@op("custom_call", "control", (0, None), {"call_target_name": AttrSpec("str"),
                                          "backend_config": AttrSpec("str", default="")},
    result_given=True, side_effects=True)
def _custom_call(shapes, attrs, declared):
    require(declared is not None, "custom_call needs a declared result type")
    return declared


# ----------------------------------------------------------------------------- entry points

def _check_attr_value(opname: str, name: str, spec: AttrSpec, value):
    def bad(expected):
        fail(f"{opname} attribute {name} must be {expected}, got {value!r}")

    if value is None and not spec.required and spec.default is None:
        return
    kind = spec.kind
    if kind == "int":
        isinstance(value, int) and not isinstance(value, bool) or bad("an integer")
    elif kind == "ints":
        isinstance(value, tuple) and all(isinstance(v, int) and not isinstance(v, bool)
                                         for v in value) or bad("a list of integers")
    elif kind == "int_pairs":
        isinstance(value, tuple) and all(isinstance(p, tuple) and len(p) == 2 and
                                         all(isinstance(v, int) and not isinstance(v, bool) for v in p)
                                         for p in value) \
            or bad("a list of (low, high) integer pairs")
    elif kind == "bool":
        isinstance(value, bool) or bad("true or false")
    elif kind == "float":
        isinstance(value, (int, float)) and not isinstance(value, bool) or bad("a number")
    elif kind == "str":
        isinstance(value, str) or bad("a string")
    elif kind == "enum":
        value in spec.choices or bad("one of " + ", ".join(spec.choices))
    elif kind == "computation":
        isinstance(value, Computation) or bad("a computation")
    elif kind == "computations":
        isinstance(value, tuple) and all(isinstance(v, Computation) for v in value) \
            or bad("a list of computations")
    elif kind == "literal":
        isinstance(value, Literal) or bad("a literal array")


def own_attrs(opdef: OpDef) -> list[str]:
    """The op's attribute names, without the `device` every op may carry."""
    return [n for n, spec in opdef.attrs.items() if spec is not PLACEMENT_SPEC]


def normalize_attrs(opcode: str, attrs: Mapping) -> Attrs:
    """Check attributes against the op's schema and fill in defaults."""
    opdef = get(opcode)
    attrs = attrs if isinstance(attrs, Attrs) else Attrs(attrs)
    unknown = sorted(set(attrs) - set(opdef.attrs))
    require(not unknown, f"{opcode} has no attribute {', '.join(unknown)}; "
                         f"it takes {', '.join(own_attrs(opdef)) or 'none'}")
    full = {}
    for name, spec in opdef.attrs.items():
        if name in attrs:
            full[name] = attrs[name]
        elif spec is PLACEMENT_SPEC:
            continue
        elif spec.required:
            fail(f"{opcode} needs attribute {name}")
        else:
            full[name] = spec.default
        _check_attr_value(opcode, name, spec, full[name])
    return Attrs(full)


def infer_shape(opcode: str, operand_shapes: Sequence[AnyShape], attrs: Mapping,
                declared: AnyShape | None = None) -> AnyShape:
    """Result shape of `opcode` applied to operands of these shapes (or ShapeError)."""
    opdef = get(opcode)
    lo, hi = opdef.arity
    n = len(operand_shapes)
    if n < lo or (hi is not None and n > hi):
        want = f"{lo}" if lo == hi else f"{lo} or more" if hi is None else f"{lo} to {hi}"
        fail(f"{opcode} takes {want} operands, got {n}")
    attrs = normalize_attrs(opcode, attrs)
    result = opdef.shape_rule(list(operand_shapes), attrs, declared)
    if declared is not None and not opdef.result_given:
        require(_same_type(result, declared),
                f"{opcode} produces {result}, but the instruction declares {declared}")
        return declared
    return result


def _same_type(a: AnyShape, b: AnyShape) -> bool:
    """Equal ignoring layouts (layout assignment may set them)."""
    if isinstance(a, TupleShape) or isinstance(b, TupleShape):
        return (isinstance(a, TupleShape) and isinstance(b, TupleShape)
                and len(a.elements) == len(b.elements)
                and all(_same_type(x, y) for x, y in zip(a.elements, b.elements)))
    return a.dtype == b.dtype and a.dims == b.dims


def ops_in_group(group: str) -> list[str]:
    return [name for name, d in OPS.items() if d.group == group]
