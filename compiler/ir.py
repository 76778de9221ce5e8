"""The HLO-like IR: Module / Computation / Instruction / Shape.

Pure, SSA, statically shaped. An instruction's operands are other instructions of the
same computation; nested computations (reduction bodies, loop bodies, fusions) are
attributes that refer to other computations of the module. Every instruction carries
the user's source locations (a tuple, so fusion can keep all of them).

What each opcode means, accepts and produces lives in `ops.py`, not here.
"""
from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping

import numpy as np

from . import dtypes
from .dtypes import DType


# ----------------------------------------------------------------------------- shapes

# The largest array, in bytes: sizes and byte offsets are signed 64-bit in native code,
# and a shape beyond this would overflow them (or ask for exabytes) long before it ran.
MAX_ARRAY_BYTES = 2 ** 62


@dataclass(frozen=True)
class Shape:
    """An array shape: element type, dims, and a layout (minor-to-major; None = row-major)."""
    dtype: DType
    dims: tuple[int, ...] = ()
    layout: tuple[int, ...] | None = None

    def __post_init__(self):
        object.__setattr__(self, "dtype", dtypes.from_any(self.dtype))
        object.__setattr__(self, "dims", tuple(int(d) for d in self.dims))
        self._check_dims()
        if self.layout is not None:
            object.__setattr__(self, "layout", tuple(int(d) for d in self.layout))
            if sorted(self.layout) != list(range(len(self.dims))):
                raise ValueError(f"layout {list(self.layout)} is not a permutation of the "
                                 f"{len(self.dims)} dims of {self.dtype.name}{list(self.dims)}")
            if self.layout == tuple(range(len(self.dims) - 1, -1, -1)):
                object.__setattr__(self, "layout", None)  # row-major is the canonical None

    def _check_dims(self) -> None:
        if any(d < 0 for d in self.dims):
            raise ValueError(f"dimension sizes must be >= 0, given {self.dtype.name}{list(self.dims)}")
        if self.nbytes > MAX_ARRAY_BYTES:
            raise ValueError(f"{self.dtype.name}{list(self.dims)} would take {self.nbytes:.3e} bytes, "
                             f"more than the {MAX_ARRAY_BYTES:.3e} (2^62) an array may have")

    is_tuple = False

    @property
    def rank(self) -> int:
        return len(self.dims)

    @property
    def size(self) -> int:
        n = 1
        for d in self.dims:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def with_dtype(self, dtype) -> "Shape":
        return Shape(dtype, self.dims, self.layout)

    def with_dims(self, dims) -> "Shape":
        """Same dtype, new dims (and the default layout, since the rank may change)."""
        return Shape(self.dtype, dims)

    def leaves(self) -> list["Shape"]:
        return [self]

    def __str__(self) -> str:
        text = f"{self.dtype.name}[{','.join(str(d) for d in self.dims)}]"
        if self.layout is not None:
            text += "{" + ",".join(str(d) for d in self.layout) + "}"
        return text

    __repr__ = __str__


@dataclass(frozen=True)
class TupleShape:
    elements: tuple

    def __post_init__(self):
        object.__setattr__(self, "elements", tuple(self.elements))

    is_tuple = True

    def leaves(self) -> list[Shape]:
        return [leaf for e in self.elements for leaf in e.leaves()]

    @property
    def nbytes(self) -> int:
        return sum(leaf.nbytes for leaf in self.leaves())

    def __str__(self) -> str:
        return "(" + ", ".join(str(e) for e in self.elements) + ")"

    __repr__ = __str__


AnyShape = Shape | TupleShape


# ----------------------------------------------------------------------------- attributes

class Literal:
    """A constant's value: an ndarray compared by dtype, shape and bytes."""
    __slots__ = ("array", "_digest")

    def __init__(self, array: np.ndarray):
        self.array = np.array(array, order="C")  # (ascontiguousarray would make 0-d 1-d)
        self.array.flags.writeable = False
        self._digest = None

    @property
    def digest(self) -> str:
        if self._digest is None:
            h = hashlib.sha256()
            h.update(str(self.array.dtype).encode())
            h.update(str(self.array.shape).encode())
            h.update(self.array.tobytes())
            self._digest = h.hexdigest()
        return self._digest

    def __eq__(self, other):
        return isinstance(other, Literal) and self.digest == other.digest

    def __hash__(self):
        return hash(self.digest)

    def __repr__(self):
        return f"Literal({self.array.dtype}{list(self.array.shape)}, {self.digest[:12]})"


def _freeze(value):
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, np.ndarray):
        return Literal(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


class Attrs(Mapping):
    """A small, frozen, hashable mapping of attribute name -> value."""
    __slots__ = ("_items", "_hash")

    def __init__(self, items: Mapping | Iterable = ()):
        pairs = dict(items)
        self._items = {k: _freeze(v) for k, v in sorted(pairs.items())}
        self._hash = None

    def __getitem__(self, key):
        return self._items[key]

    def __iter__(self):
        return iter(self._items)

    def __len__(self):
        return len(self._items)

    def __hash__(self):
        if self._hash is None:
            self._hash = hash(tuple((k, _hashable(v)) for k, v in self._items.items()))
        return self._hash

    def __eq__(self, other):
        return isinstance(other, Attrs) and self._items == other._items

    def replace(self, **changes) -> "Attrs":
        merged = dict(self._items)
        merged.update(changes)
        return Attrs(merged)

    def __repr__(self):
        return "Attrs(" + ", ".join(f"{k}={v!r}" for k, v in self._items.items()) + ")"


def _hashable(v):
    if isinstance(v, Computation):
        return ("computation", id(v))
    if isinstance(v, tuple):
        return tuple(_hashable(x) for x in v)
    return v


# ----------------------------------------------------------------------------- source locations

@dataclass(frozen=True)
class SourceLoc:
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


# ----------------------------------------------------------------------------- instructions

class Instruction:
    """One SSA value: `name = shape opcode(operands), attrs`."""
    __slots__ = ("name", "opcode", "operands", "shape", "attrs", "locs", "__weakref__")

    def __init__(self, name: str, opcode: str, operands: Iterable["Instruction"],
                 shape: AnyShape, attrs: Attrs | Mapping = (), locs: Iterable[SourceLoc] = ()):
        self.name = name
        self.opcode = opcode
        self.operands = list(operands)
        self.shape = shape
        self.attrs = attrs if isinstance(attrs, Attrs) else Attrs(attrs)
        self.locs = tuple(locs)

    @property
    def loc_text(self) -> str:
        return ", ".join(str(loc) for loc in self.locs) or "<unknown location>"

    def called_computations(self) -> list["Computation"]:
        found = []
        for value in self.attrs.values():
            if isinstance(value, Computation):
                found.append(value)
            elif isinstance(value, tuple):
                found.extend(v for v in value if isinstance(v, Computation))
        return found

    def __repr__(self) -> str:
        ops = ", ".join(o.name for o in self.operands)
        return f"<{self.name} = {self.shape} {self.opcode}({ops})>"


# ----------------------------------------------------------------------------- computations

class Computation:
    """Parameters, instructions in a valid topological order, and one root."""

    def __init__(self, name: str):
        self.name = name
        self.parameters: list[Instruction] = []
        self.instructions: list[Instruction] = []
        self.root: Instruction | None = None

    def add(self, instr: Instruction) -> Instruction:
        if instr.opcode == "parameter":
            self.parameters.append(instr)
            self.parameters.sort(key=lambda p: p.attrs.get("index", -1))  # verifier reports bad ones
        self.instructions.append(instr)
        return instr

    def parameter_shapes(self) -> list[AnyShape]:
        return [p.shape for p in self.parameters]

    def users(self) -> dict[Instruction, list[Instruction]]:
        table: dict[Instruction, list[Instruction]] = {i: [] for i in self.instructions}
        for instr in self.instructions:
            for op in instr.operands:
                table.setdefault(op, []).append(instr)
        return table

    def replace_all_uses(self, old: Instruction, new: Instruction) -> None:
        for instr in self.instructions:
            instr.operands = [new if o is old else o for o in instr.operands]
        if self.root is old:
            self.root = new

    def remove(self, instr: Instruction) -> None:
        self.instructions.remove(instr)
        if instr in self.parameters:
            self.parameters.remove(instr)

    def __iter__(self) -> Iterator[Instruction]:
        return iter(self.instructions)

    def __repr__(self) -> str:
        return f"<Computation {self.name}: {len(self.instructions)} instructions>"


# ----------------------------------------------------------------------------- modules

# Callbacks run on every new Module (the test suite uses this to round-trip them all).
module_created_hooks: list = []


class Module:
    """A named set of computations with one entry."""

    def __init__(self, name: str):
        self.name = name
        self.computations: list[Computation] = []
        self.entry: Computation | None = None
        self._used_names: set[str] = set()
        self._counter = itertools.count(1)
        self.optimized_for: str | None = None    # set by compiler.pipeline.optimize
        for hook in module_created_hooks:
            hook(self)

    def unique_name(self, hint: str) -> str:
        hint = hint or "v"
        name = hint
        while name in self._used_names:
            name = f"{hint}.{next(self._counter)}"
        self._used_names.add(name)
        return name

    def reserve_name(self, name: str) -> None:
        self._used_names.add(name)

    def add_computation(self, comp: Computation, entry: bool = False) -> Computation:
        self.computations.append(comp)
        if entry:
            self.entry = comp
        return comp

    def computation(self, name: str) -> Computation:
        for comp in self.computations:
            if comp.name == name:
                return comp
        raise KeyError(f"module {self.name} has no computation named {name!r}")

    def reachable_computations(self) -> list[Computation]:
        """Computations reachable from the entry, callees before callers."""
        order: list[Computation] = []
        seen: set[int] = set()

        def visit(comp):
            if id(comp) in seen:
                return
            seen.add(id(comp))
            for instr in comp.instructions:
                for callee in instr.called_computations():
                    visit(callee)
            order.append(comp)

        if self.entry is not None:
            visit(self.entry)
        return order

    def __str__(self) -> str:
        from .printer import print_module
        return print_module(self)

    def __repr__(self) -> str:
        return f"<Module {self.name}: {len(self.computations)} computations>"


# ----------------------------------------------------------------------------- builder

class Builder:
    """Appends shape-checked instructions to a computation of a module.

    `emit` asks the op table for the result shape, so every instruction built through
    it is well-typed; a rule violation raises `ops.ShapeError` naming the op.
    """

    def __init__(self, module: Module, name: str):
        self.module = module
        self.computation = Computation(module.unique_name(name))
        self.loc: tuple[SourceLoc, ...] = ()

    def parameter(self, shape: AnyShape, name: str = "p") -> Instruction:
        index = len(self.computation.parameters)
        return self.emit("parameter", [], shape=shape, attrs={"index": index}, name=name)

    def constant(self, value, dtype=None) -> Instruction:
        array = np.asarray(value)
        dt = dtypes.from_any(dtype) if dtype is not None else dtypes.from_numpy(array.dtype)
        array = dtypes.canonicalize(array, dt)
        return self.emit("constant", [], shape=Shape(dt, array.shape), attrs={"value": array})

    def emit(self, opcode: str, operands: Iterable[Instruction] = (), attrs: Mapping | None = None,
             shape: AnyShape | None = None, name: str | None = None,
             locs: Iterable[SourceLoc] | None = None) -> Instruction:
        from . import ops
        operands = list(operands)
        attrs = ops.normalize_attrs(opcode, attrs or {})
        result = ops.infer_shape(opcode, [o.shape for o in operands], attrs, shape)
        instr = Instruction(self.module.unique_name(name or opcode), opcode, operands, result,
                            attrs, self.loc if locs is None else locs)
        return self.computation.add(instr)

    def build(self, root: Instruction, entry: bool = False) -> Computation:
        self.computation.root = root
        return self.module.add_computation(self.computation, entry=entry)


# ----------------------------------------------------------------------------- copying

def clone_module(module: Module, name: str | None = None) -> Module:
    """A deep copy: new computations and instructions, same names, shapes and attributes.

    Passes mutate modules in place; the frontend keeps the traced module and optimizes
    a clone, so `Lowered.as_text()` still shows what was traced.
    """
    copy = Module(name or module.name)
    copy._used_names = set(module._used_names)
    copy._counter = itertools.count(next(module._counter))
    new_comp: dict[int, Computation] = {}
    for comp in module.computations:
        new_comp[id(comp)] = Computation(comp.name)

    def remap(value):
        if isinstance(value, Computation):
            return new_comp[id(value)]
        if isinstance(value, tuple):
            return tuple(remap(v) for v in value)
        return value

    for comp in module.computations:
        target = new_comp[id(comp)]
        new_instr: dict[int, Instruction] = {}
        for instr in comp.instructions:
            attrs = Attrs({k: remap(v) for k, v in instr.attrs.items()})
            twin = Instruction(instr.name, instr.opcode, [new_instr[id(o)] for o in instr.operands],
                               instr.shape, attrs, instr.locs)
            new_instr[id(instr)] = twin
            target.add(twin)
        target.root = new_instr.get(id(comp.root)) if comp.root is not None else None
        copy.add_computation(target, entry=comp is module.entry)
    return copy
