"""Reduction kernels: input fusions (and lone reduces) as row loops.

The computation has one iteration space: every reduce of it reads inputs of the same
dims F and reduces the same dims R (compiler/passes/reduction_fusion.py); the other
dims K are kept, and each combination of kept indices is a *row*. Per row:

    phase 1   one pass over the row's reduced elements: the fused producers of the
              reduce inputs, computed at each element, accumulated by the reducer.
              A fusion may hold several *levels* of reduces: a reduce whose inputs
              read another reduce's row results (softmax: sum(exp(x - max(x))); layer
              norm: sum((x - mean)^2)) is a level above it, and each level is one
              more pass over the row with the levels below bound -- the row is read
              from memory once and again from cache (compiler/passes/reduction_fusion.py)
    phase 2   row outputs (results shaped like the kept dims: the reduces, and the
              row epilogue on them, e.g. mean = sum / n): evaluated once per row
    phase 3   full outputs (shaped like F: the normalize step, e.g. x / sum(x)): a
              second pass over the row, with the row's reduce results bound

Two loop orders, by where the contiguous last dim of F is:

    row mode      (last dim reduced) a unit is a row; phase 1 runs ACCUMULATORS vector
                  accumulators over the last dim (unrolled), a masked vector for the rest,
                  then combines them and their lanes by the reducer -- which needs the
                  reducer's identity, known for add/multiply/maximum/minimum/and/or/xor;
                  other reducers fold one element at a time (scalar code). Expensive
                  values phase 3 needs again (the exp of a softmax) are kept in a row
                  cache on the stack in phase 1 instead of being computed twice.
    column mode   (last dim kept) a unit is a tile of up to COLUMN_TILE consecutive rows
                  along the last dim, their accumulators in an array on the stack; the
                  reduced dims are the outer loops, and each step adds one contiguous
                  stretch of the input to the accumulators in vectors (the column sums
                  of a matrix stream through memory row by row). Each lane accumulates
                  its own row from the init value, so any reducer vectorizes.

When the lanes of some read would not move affinely (kernels_data.NotVectorizable),
the kernel runs in row mode with scalar code. Units (rows) are split over the thread
pool. A full reduction (one row: `x.sum()`, a loss) large enough for the pool, with one
level of reduces, runs in *split* mode: the row's elements are cut into
SPLIT_PARTS_PER_THREAD x threads parts (ranges of the outer reduced rows, or blocks of
the last dim when there are too few), each part reduced from the identity in parallel
into a partial in scratch, then one small serial step folds the partials (in part
order, from the init value) and writes the row outputs. The parts are fixed at compile
time, so the result does not depend on how many threads run it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from llvmlite import ir

from ...compiler.ir import Computation, Instruction
from . import loops as L
from .kernels_data import Ix, NotVectorizable, ZERO, row_major_strides
from .kernels_elementwise import I8, I32, PTR, Emit, register_bytes, storage_type
from .kernels_loop import (OUTER_LOOP, VECTOR_LOOP, Evaluator, Leaf, computed, element_cost, emit_inner_loop,
                           immediate, vector_width)

ACCUMULATORS = 4             # independent vector accumulators per reduce in row mode
COLUMN_TILE = 2048           # kept elements per unit in column mode (their accumulators: stack)
ROW_CACHE_BYTES = 64 * 1024  # stack bytes a row cache may take (per thread)
SPLIT_PARTS_PER_THREAD = 4   # parts of a split full reduction per pool thread
PARTIAL_BYTES = 8            # scratch bytes per partial result (the widest register scalar)

# reducer op -> identity (float, integer/pred) of the op on (accumulator, value)
IDENTITIES = {
    "add": (-0.0, 0), "multiply": (1.0, 1), "or": (None, 0), "xor": (None, 0),
    "and": (None, -1), "maximum": (float("-inf"), "min"), "minimum": (float("inf"), "max"),
}
EXPENSIVE = frozenset({"exp", "log", "log1p", "expm1", "tanh", "logistic", "sin", "cos",
                       "erf", "power", "atan2", "sqrt", "rsqrt", "divide"})


# ----------------------------------------------------------------------------- the shape of the kernel

@dataclass
class Space:
    """Dims F of the reduce inputs, reduced dims R, kept dims K (positions in F)."""
    full: tuple
    reduced: list[int]
    kept: list[int]

    @property
    def row_mode(self) -> bool:
        return not self.kept or (bool(self.reduced) and self.reduced[-1] == len(self.full) - 1)

    def sizes(self, dims) -> list[int]:
        return [self.full[d] for d in dims]

    def full_index(self, kept_index, reduced_index) -> list[Ix]:
        index = [ZERO] * len(self.full)
        for d, x in zip(self.kept, kept_index):
            index[d] = x
        for d, x in zip(self.reduced, reduced_index):
            index[d] = x
        return index

    def row_index(self, shape_dims, kept_index) -> list[Ix]:
        """The index of a row-shaped value (the kept sizes, size-1 dims aside)."""
        moving = iter([x for x, n in zip(kept_index, self.sizes(self.kept)) if n != 1])
        return [ZERO if n == 1 else next(moving) for n in shape_dims]


def iteration_space(reduces: list[Instruction]) -> Space:
    first = reduces[0]
    full = first.operands[0].shape.dims
    reduced = sorted(first.attrs["dimensions"])
    for r in reduces[1:]:
        if r.operands[0].shape.dims != full or sorted(r.attrs["dimensions"]) != reduced:
            raise NotImplementedError(f"CPU backend: reduces {first.name} and {r.name} of one fusion "
                                      f"iterate over different spaces (from {r.loc_text})")
    return Space(full, reduced, [d for d in range(len(full)) if d not in reduced])


def reducer_identity(reduce: Instruction):
    """The identity of a single-op reducer `op(acc, x)` (None if unknown)."""
    body = reduce.attrs["to_apply"]
    root = body.root
    if reduce.shape.is_tuple or root.opcode not in IDENTITIES or len(body.instructions) != 3:
        return None
    if {o.attrs.get("index") for o in root.operands if o.opcode == "parameter"} != {0, 1}:
        return None
    dtype = root.shape.dtype
    as_float, as_int = IDENTITIES[root.opcode]
    if dtype.is_float:
        return as_float
    if as_int in ("min", "max"):
        if dtype.is_pred:
            return 0 if as_int == "min" else 1
        bits, signed = dtype.bits, dtype.kind == "signed"
        low, high = (-(1 << bits - 1), (1 << bits - 1) - 1) if signed else (0, (1 << bits) - 1)
        return low if as_int == "min" else high
    return 1 if dtype.is_pred and as_int == -1 else as_int


# ----------------------------------------------------------------------------- outputs

@dataclass
class Output:
    instr: Instruction
    leaf: int | None          # element of a tuple-valued instruction, or None
    full: bool                # shaped like F (phase 3) or like a row (phase 2)

    @property
    def shape(self):
        return self.instr.shape.elements[self.leaf] if self.leaf is not None else self.instr.shape


def outputs_of(comp: Computation, space: Space) -> list[Output]:
    root = comp.root
    if root.opcode == "tuple":
        items = [(o, None) for o in root.operands]
    elif root.shape.is_tuple:
        items = [(root, k) for k in range(len(root.shape.elements))]
    else:
        items = [(root, None)]
    result = []
    for instr, leaf in items:
        shape = instr.shape.elements[leaf] if leaf is not None else instr.shape
        result.append(Output(instr, leaf, shape.dims == space.full and bool(space.reduced)))
    return result


def _pick(value, leaf):
    return value[leaf] if leaf is not None else value


# ----------------------------------------------------------------------------- the kernel

def emit_reduce_kernel(kc, comp: Computation, outputs: list, operands: list) -> None:
    reduces = [i for i in comp.instructions if i.opcode == "reduce"]
    space = iteration_space(reduces)
    outs = outputs_of(comp, space)
    if all(math.prod(o.shape.dims) == 0 for o in outs):
        return
    kernel = ReduceKernel(kc, comp, space, reduces, outs)
    kernel.emit(outputs, operands)


class ReduceKernel:
    def __init__(self, kc, comp, space: Space, reduces, outs):
        self.kc, self.comp, self.space, self.reduces, self.outs = kc, comp, space, reduces, outs
        self.params = sorted(comp.parameters, key=lambda p: p.attrs["index"])
        self.identities = [reducer_identity(r) for r in reduces]
        self.levels = reduce_levels(reduces)
        self.cache_level: dict = {}
        self.work = computed(comp)
        self.width = vector_width(kc.target, self.work + self.params)
        self.cost = element_cost(self.work)

    # ------------------------------------------------------------ choosing the form

    def emit(self, outputs, operands) -> None:
        space = self.space
        mode = "scalar"
        if space.reduced and not space.row_mode and self._try(self._column_units):
            mode = "column"
        elif space.row_mode and space.reduced and all(i is not None for i in self.identities) \
                and self._try(self._row_units):
            mode = "row"
        width = self.width if mode != "scalar" else 1
        self.mode, self.lanes = mode, width
        self.cache = self._row_cache() if mode == "row" else []
        if self._split_parts() > 1:
            self._emit_split(outputs, operands)
            return
        units, unit_cost, body = self._form()
        self.kc.run_units(f"reduce.{self.kc.name_hint()}", units, outputs + operands, unit_cost,
                          lambda b, ptrs, begin, end: body(b, ptrs, begin, end))

    def _try(self, units_form) -> bool:
        """Whether the form vectorizes: a dry run of its phases at vector width."""
        scratch = ir.Module()
        fn = ir.Function(scratch, ir.FunctionType(ir.VoidType(), [L.INDEX] * (len(self.space.full) + 1)),
                         name="dry")
        b = ir.IRBuilder(fn.append_basic_block())
        try:
            units_form(b, list(fn.args))
        except NotVectorizable:
            return False
        return True

    def _form(self):
        space = self.space
        kept_sizes = space.sizes(space.kept)
        passes = len(self.levels) + (1 if self._has_full() else 0)
        per_row = math.prod(space.sizes(space.reduced)) * self.cost * passes
        if self.mode == "column":
            tile = self._column_tile()
            tiles = -(-kept_sizes[-1] // tile)
            units = math.prod(kept_sizes[:-1]) * tiles
            return units, per_row * tile, self._column_body(kept_sizes, tiles, tile)
        return math.prod(kept_sizes), per_row, self._row_body(kept_sizes)

    def _has_full(self) -> bool:
        return any(o.full for o in self.outs)

    # ------------------------------------------------------------ leaves

    def _leaves(self, ptrs) -> tuple[dict, list[Leaf]]:
        n = len(self.outs)
        out_leaves = [Leaf(p, o.shape.dtype, row_major_strides(o.shape.dims)) for p, o in zip(ptrs[:n], self.outs)]
        leaves = {p: Leaf(ptr, p.shape.dtype, row_major_strides(p.shape.dims))
                  for p, ptr in zip(self.params, ptrs[n:])}
        return leaves, out_leaves

    def _evaluator(self, b, lanes, leaves, bound=None, tail=None, dry=False):
        return Evaluator(b, lanes, self.kc.mathlib, leaves=leaves, bound=bound, tail=tail, dry=dry,
                         constants=self.kc.constant_provider())

    # ------------------------------------------------------------ reducers

    def apply(self, b, reduce: Instruction, accs: list, xs: list, lanes: int, dry=False) -> list:
        """The reducer of `reduce` on (accumulators, values), lane by lane."""
        body = reduce.attrs["to_apply"]
        params = sorted(body.parameters, key=lambda p: p.attrs["index"])
        ev = Evaluator(b, lanes, self.kc.mathlib, bound=dict(zip(params, accs + xs)), dry=dry)
        value = ev.value(body.root, ())
        return list(value) if isinstance(value, tuple) else [value]

    def _inputs(self, reduce):
        n = len(reduce.operands) // 2
        return reduce.operands[:n], reduce.operands[n:]

    def _init_values(self, ev: Evaluator, reduces=None) -> list[list]:
        return [[ev.value(init, ()) for init in self._inputs(r)[1]] for r in reduces or self.reduces]

    def _identity(self, reduce):
        return self.identities[self.reduces.index(reduce)]

    # ------------------------------------------------------------ row mode

    def _row_units(self, b, args):
        """One row at symbolic kept indices (`args`), for the dry run."""
        space = self.space
        kept_index = [Ix(a, 0, 1) for a in args[:len(space.kept)]]
        leaves = {p: Leaf(ir.Constant(PTR, None), p.shape.dtype, row_major_strides(p.shape.dims))
                  for p in self.params}
        outs = [Leaf(ir.Constant(PTR, None), o.shape.dtype, row_major_strides(o.shape.dims)) for o in self.outs]
        self.lanes = self.width
        self.cache = []
        self._row(b, leaves, outs, kept_index, dry=True)

    def _row_body(self, kept_sizes):
        from .codegen import odometer

        def body(b, ptrs, begin, end):
            leaves, outs = self._leaves(ptrs)
            cache_slots = [L.alloca_once(b, ir.ArrayType(I8, size), name="row_cache", align=64)
                           for _, size in self.cache]
            with odometer(b, kept_sizes, begin, end) as index:
                self._row(b, leaves, outs, [Ix(v, 0, 1) for v in index], cache_slots=cache_slots)
        return body

    def _row(self, b, leaves, outs, kept_index, dry=False, cache_slots=()):
        space, lanes = self.space, self.lanes
        cache_leaves = self._cache_leaves(cache_slots)
        bound = {}
        for number, level in enumerate(self.levels):     # one pass over the row per level
            inits = self._init_values(self._evaluator(b, 1, leaves, bound=bound, dry=dry), level)
            if lanes == 1:
                results = self._row_scalar(b, leaves, kept_index, level, inits, bound, dry)
            else:
                red_sizes = space.sizes(space.reduced)
                written = {i: leaf for i, leaf in cache_leaves.items() if self.cache_level[i] == number}
                results = self._row_vector(b, leaves, kept_index, level, inits, bound, red_sizes[:-1],
                                           red_sizes[-1], written, dry)
            bound.update({r: (tuple(v) if r.shape.is_tuple else v[0]) for r, v in zip(level, results)})
        self._row_outputs(b, leaves, outs, kept_index, bound, dry)
        if self._has_full():
            self._full_pass(b, leaves, outs, kept_index, bound, dry, cache_leaves)

    def _row_scalar(self, b, leaves, kept_index, reduces, inits, bound, dry):
        """Each reduce folded one element at a time, from its init value."""
        space = self.space
        slots = [[L.alloca_once(b, v.type, name="acc") for v in vals] for vals in inits] if not dry else None
        if not dry:
            for row_slots, vals in zip(slots, inits):
                for slot, v in zip(row_slots, vals):
                    L.store(b, v, slot)
        with L.loop_nest(b, space.sizes(space.reduced), name="r") as rindex:
            ev = self._evaluator(b, 1, leaves, bound=bound, dry=dry)
            index = space.full_index(kept_index, [Ix(i, 0, 1) for i in rindex])
            for k, r in enumerate(reduces):
                xs = [ev.value(x, index) for x in self._inputs(r)[0]]
                accs = [L.load(b, s, v.type) for s, v in zip(slots[k], inits[k])] if not dry else inits[k]
                new = self.apply(b, r, accs, xs, 1, dry)
                if not dry:
                    for s, v in zip(slots[k], new):
                        L.store(b, v, s)
        if dry:
            return inits
        return [[L.load(b, s, v.type) for s, v in zip(row_slots, vals)] for row_slots, vals in zip(slots, inits)]

    def _row_vector(self, b, leaves, kept_index, reduces, inits, bound, outer, n, cache_leaves, dry,
                    part=None):
        """ACCUMULATORS vector accumulators per reduce over the last dim (started at
        the reducer's identity), then combined: accumulators, lanes, and the init
        (`inits` None: not applied -- a partial of a split reduction).
        `bound`: the row results of lower levels; `cache_leaves`: row caches this pass fills.
        `part` limits the pass to ("rows", begin, end) of the flat outer reduced rows or
        ("block", j0, j1) of the last dim (i64 values; see `_emit_split`)."""
        space, lanes = self.space, self.lanes
        e = Emit(b, lanes, self.kc.mathlib)
        identity = [immediate(e, r.shape.dtype, self._identity(r)) for r in reduces]
        unroll = ACCUMULATORS if n >= ACCUMULATORS * lanes else 1
        slots = [[L.alloca_once(b, v.type, name="acc") for _ in range(unroll)] for v in identity] if not dry else None
        if not dry:
            for row_slots, v in zip(slots, identity):
                for slot in row_slots:
                    L.store(b, v, slot)

        def accumulate(ev, index, u, mask=None):
            for k, r in enumerate(reduces):
                (x,) = [ev.value(x, index) for x in self._inputs(r)[0]]
                if mask is not None and not dry:
                    x = b.select(mask, x, identity[k])
                acc = L.load(b, slots[k][u], identity[k].type) if not dry else identity[k]
                (new,) = self.apply(b, r, [acc], [x], lanes, dry)
                if not dry:
                    L.store(b, new, slots[k][u])
            for instr, leaf in cache_leaves.items():
                ev.write(leaf, index, ev.value(instr, index))

        def last_dim(rix, j0, j1):
            """[j0, j1) of the last dim: unrolled vectors, single vectors, a masked rest."""
            static = isinstance(j0, int) and isinstance(j1, int)
            if static:
                main = L.const(j0 + (j1 - j0) // (unroll * lanes) * (unroll * lanes))
                vec_end = L.const(j0 + (j1 - j0) // lanes * lanes)
            else:
                span = L.sub(b, j1, j0)
                main = L.add(b, j0, L.floor_multiple(b, span, unroll * lanes))
                vec_end = L.add(b, j0, L.floor_multiple(b, span, lanes))
            if not static or main.constant > j0:
                with L.for_range(b, main, start=j0, step=unroll * lanes, name="rv", **VECTOR_LOOP) as j:
                    ev = self._evaluator(b, lanes, leaves, bound=bound, dry=dry)
                    for u in range(unroll):
                        idx = space.full_index(kept_index, rix + [Ix(L.add(b, j, u * lanes), 1, lanes)])
                        accumulate(ev, idx, u)
            if not static or vec_end.constant > main.constant:
                with L.for_range(b, vec_end, start=main, step=lanes, name="rw", **VECTOR_LOOP) as j:
                    ev = self._evaluator(b, lanes, leaves, bound=bound, dry=dry)
                    accumulate(ev, space.full_index(kept_index, rix + [Ix(j, 1, lanes)]), 0)
            if static and j1 == vec_end.constant:
                return
            rest = L.const(j1 - vec_end.constant) if static else L.sub(b, j1, vec_end)
            with b.if_then(b.icmp_signed(">", rest, L.const(0))) if not static else _nothing():
                ev = self._evaluator(b, lanes, leaves, bound=bound, tail=rest.constant if static else rest,
                                     dry=dry)
                vec = vec_end.constant if static else vec_end
                accumulate(ev, space.full_index(kept_index, rix + [Ix(vec, 1, lanes)]), 0, ev.mask)

        if part is None:
            with L.loop_nest(b, outer, name="r", **OUTER_LOOP) as rindex:
                last_dim([Ix(i, 0, 1) for i in rindex], 0, n)
        elif part[0] == "rows":
            from .codegen import odometer
            with odometer(b, outer, part[1], part[2]) as rindex:
                last_dim([Ix(i, 0, 1) for i in rindex], 0, n)
        else:
            with L.loop_nest(b, outer, name="r", **OUTER_LOOP) as rindex:
                last_dim([Ix(i, 0, 1) for i in rindex], part[1], part[2])
        if dry:
            return [[None] for _ in reduces]
        results = []
        for k, r in enumerate(reduces):
            accs = [L.load(b, s, identity[k].type) for s in slots[k]]
            while len(accs) > 1:
                accs = [self.apply(b, r, [accs[i]], [accs[i + 1]], lanes)[0] for i in range(0, len(accs), 2)]
            total = self._horizontal(b, r, accs[0], lanes)
            results.append(self.apply(b, r, inits[k], [total], 1) if inits is not None else [total])
        return results

    # ------------------------------------------------------------ split full reductions

    def _split_parts(self) -> int:
        """Parts of a split full reduction (1: not split; see the module docstring)."""
        space, threads = self.space, self.kc.threads
        if self.mode != "row" or self.lanes == 1 or space.kept or self._has_full() or threads <= 1 \
                or len(self.levels) != 1:
            return 1
        from .codegen import PARALLEL_MIN_COST
        sizes = space.sizes(space.reduced)
        if math.prod(sizes) * self.cost < PARALLEL_MIN_COST:
            return 1
        want = SPLIT_PARTS_PER_THREAD * threads
        if math.prod(sizes[:-1]) >= want:
            return want
        return max(1, min(want, sizes[-1] // (ACCUMULATORS * self.lanes)))

    def _emit_split(self, outputs, operands) -> None:
        """Partials of the parts in parallel into scratch, then the serial fold."""
        kc, parts = self.kc, self._split_parts()
        sizes = self.space.sizes(self.space.reduced)
        outer, n = sizes[:-1], sizes[-1]
        rows = math.prod(outer)
        step = ACCUMULATORS * self.lanes
        block = -(-(-(-n // parts)) // step) * step           # last-dim elements per part
        partials = kc.temp(parts * PARTIAL_BYTES * len(self.reduces))
        pointers = outputs + operands + [partials]

        def part_range(b, u):
            if rows >= parts:        # rows [u R / P, (u + 1) R / P): balanced to one row
                return ("rows", b.sdiv(L.mul(b, u, rows), L.const(parts)),
                        b.sdiv(L.mul(b, L.add(b, u, 1), rows), L.const(parts)))
            j0 = L.minimum(b, L.mul(b, u, block), n)
            return ("block", j0, L.minimum(b, L.add(b, j0, block), n))

        def parts_body(b, ptrs, begin, end):
            leaves, _ = self._leaves(ptrs[:-1])
            with L.for_range(b, end, start=begin, name="part", **OUTER_LOOP) as u:
                totals = self._row_vector(b, leaves, [], self.reduces, None, {}, outer, n, {}, False,
                                          part=part_range(b, u))
                for k, (total,) in enumerate(totals):
                    L.store(b, total, _partial(b, ptrs[-1], k, u, parts))

        def fold_body(b, ptrs, begin, end):
            leaves, outs = self._leaves(ptrs[:-1])
            accs = self._init_values(self._evaluator(b, 1, leaves))
            for u in range(parts):
                for k, r in enumerate(self.reduces):
                    partial = L.load(b, _partial(b, ptrs[-1], k, u, parts), accs[k][0].type)
                    accs[k] = self.apply(b, r, accs[k], [partial], 1)
            self._row_outputs(b, leaves, outs, [], {r: v[0] for r, v in zip(self.reduces, accs)}, False)

        total_cost = math.prod(sizes) * self.cost
        kc.run_units(f"reduce.parts.{kc.name_hint()}", parts, pointers, total_cost / parts, parts_body)
        kc.run_units(f"reduce.fold.{kc.name_hint()}", 1, pointers, parts, fold_body)

    def _horizontal(self, b, reduce, vector, lanes):
        """The reducer over the lanes of `vector`, as a tree of halves."""
        while lanes > 1:
            half = lanes // 2
            if half == 1:
                lo, hi = (b.extract_element(vector, L.const(k, I32)) for k in (0, 1))
            else:
                lo, hi = (L.prefix(b, b.shuffle_vector(vector, vector, ir.Constant(
                    ir.VectorType(I32, lanes), list(range(start, start + half)) + [0] * (lanes - half))), half)
                    for start in (0, half))
            (vector,) = self.apply(b, reduce, [lo], [hi], half)
            lanes = half
        return vector

    def _row_outputs(self, b, leaves, outs, kept_index, bound, dry):
        ev = self._evaluator(b, 1, leaves, bound=bound, dry=dry)
        for out, leaf in zip(self.outs, outs):
            if not out.full:
                index = self.space.row_index(out.shape.dims, kept_index)
                ev.write(leaf, index, _pick(ev.value(out.instr, index), out.leaf))

    def _full_pass(self, b, leaves, outs, kept_index, bound, dry, cache_leaves):
        space, lanes = self.space, self.lanes
        red_sizes = space.sizes(space.reduced)
        outer, n = red_sizes[:-1], red_sizes[-1]
        leaves = {**leaves, **cache_leaves}
        full = [(o, leaf) for o, leaf in zip(self.outs, outs) if o.full]

        def point(ev, index):
            for out, leaf in full:
                ev.write(leaf, index, _pick(ev.value(out.instr, index), out.leaf))

        with L.loop_nest(b, outer, name="n", **OUTER_LOOP) as rindex:
            rix = [Ix(i, 0, 1) for i in rindex]
            if lanes == 1:
                with L.for_range(b, n, name="nj") as j:
                    point(self._evaluator(b, 1, leaves, bound, dry=dry),
                          space.full_index(kept_index, rix + [Ix(j, 0, 1)]))
                return
            vec_end = n // lanes * lanes
            with L.for_range(b, vec_end, step=lanes, name="nv", **VECTOR_LOOP) as j:
                point(self._evaluator(b, lanes, leaves, bound, dry=dry),
                      space.full_index(kept_index, rix + [Ix(j, 1, lanes)]))
            if n > vec_end:
                point(self._evaluator(b, lanes, leaves, bound, tail=n - vec_end, dry=dry),
                      space.full_index(kept_index, rix + [Ix(vec_end, 1, lanes)]))

    # ------------------------------------------------------------ the row cache

    def _row_cache(self) -> list[tuple[Instruction, int]]:
        """Expensive full-shaped values a reduction pass and the normalize pass both
        compute: (instr, bytes) to keep; `cache_level[instr]`: the pass that fills it
        (the first level whose inputs need it)."""
        self.cache_level = {}
        if not self._has_full():
            return []
        by_level = [_closure([x for r in level for x in self._inputs(r)[0]]) for level in self.levels]
        second = _closure([o.instr for o in self.outs if o.full])
        row = math.prod(self.space.sizes(self.space.reduced))
        chosen, total = [], 0
        for instr in self.comp.instructions:
            level = next((k for k, first in enumerate(by_level) if instr in first), None)
            if level is not None and instr in second and instr.opcode in EXPENSIVE \
                    and not instr.shape.is_tuple and instr.shape.dims == self.space.full:
                size = row * register_bytes(instr.shape.dtype)
                if total + size <= ROW_CACHE_BYTES:
                    chosen.append((instr, size))
                    self.cache_level[instr] = level
                    total += size
        return chosen

    def _cache_leaves(self, slots) -> dict:
        """instr -> Leaf of its row cache: strides 0 along the kept dims."""
        if not slots:
            return {}
        space = self.space
        red_strides = dict(zip(space.reduced, row_major_strides(space.sizes(space.reduced))))
        return {instr: Leaf(slot, instr.shape.dtype, [red_strides.get(d, 0) for d in range(len(space.full))])
                for (instr, _), slot in zip(self.cache, slots)}

    # ------------------------------------------------------------ column mode

    def _column_tile(self) -> int:
        """Kept elements along the last dim per unit: at most COLUMN_TILE, a multiple of
        the width, and small enough that the units keep every thread busy."""
        kept_sizes = self.space.sizes(self.space.kept)
        last, rows = kept_sizes[-1], math.prod(kept_sizes[:-1])
        want_tiles = -(-4 * self.kc.threads // max(rows, 1)) if self.kc.threads > 1 else 1
        tile = min(COLUMN_TILE, -(-last // want_tiles))
        return max(self.width, -(-tile // self.width) * self.width)

    def _column_units(self, b, args):
        space = self.space
        leaves = {p: Leaf(ir.Constant(PTR, None), p.shape.dtype, row_major_strides(p.shape.dims))
                  for p in self.params}
        outs = [Leaf(ir.Constant(PTR, None), o.shape.dtype, row_major_strides(o.shape.dims)) for o in self.outs]
        self.lanes = self.width
        outer = [Ix(a, 0, 1) for a in args[:len(space.kept) - 1]]
        slots = [[ir.Constant(PTR, None)] * len(r.shape.leaves()) for r in self.reduces]
        self._column(b, leaves, outs, outer, Ix(args[-1], 0, self.width), self.width, slots, dry=True)

    def _column_body(self, kept_sizes, tiles, tile):
        from .codegen import odometer
        last = kept_sizes[-1]

        def body(b, ptrs, begin, end):
            leaves, outs = self._leaves(ptrs)
            slots = [[L.alloca_once(b, ir.ArrayType(storage_type(s.dtype), tile), name="acc_row", align=64)
                      for s in r.shape.leaves()] for r in self.reduces]
            with odometer(b, kept_sizes[:-1] + [tiles], begin, end) as index:
                j0 = L.mul(b, index[-1], tile)
                length = L.minimum(b, tile, L.sub(b, last, j0)) if last % tile else tile
                self._column(b, leaves, outs, [Ix(v, 0, 1) for v in index[:-1]], Ix(j0, 0, tile),
                             length, slots)
        return body

    def _column(self, b, leaves, outs, outer, j0: Ix, length, slots, dry=False):
        """A tile of `length` kept elements from `j0` along the last dim: its rows'
        accumulators in arrays (`slots`: per reduce, one per result), updated row by row of
        the reduced dims with contiguous vectors, then the row and full outputs."""
        space, lanes, kc = self.space, self.lanes, self.kc
        constants = kc.constant_provider()
        accs = [[Leaf(slot, s.dtype, [1]) for slot, s in zip(row_slots, r.shape.leaves())]
                for row_slots, r in zip(slots, self.reduces)]
        inits = self._init_values(self._evaluator(b, 1, leaves, dry=dry))

        def kept(ev, j):
            return outer + [ev.ix.add(j0, j)]

        def read(ev, k, j):
            return [ev.read(acc, [j]) for acc in accs[k]]

        def bind(ev, j, reduces=self.reduces):
            for r in reduces:
                k = self.reduces.index(r)
                values = read(ev, k, j)
                ev.bound[r] = tuple(values) if r.shape.is_tuple else values[0]

        def loop(point):
            if dry:
                point(self._evaluator(b, lanes, leaves, dry=True), [Ix(j0.value, 1, lanes)])
            else:
                emit_inner_loop(b, kc, lanes, 0, length, [], point, leaves, constants)

        def start(ev, index):
            for k in range(len(self.reduces)):
                for acc, init in zip(accs[k], inits[k]):
                    ev.write(acc, index, ev.e.splat(init) if not dry else init)

        def accumulate(rindex, level, below):
            def point(ev, index):
                (j,) = index
                if below:           # lower levels' results, finished in their accumulators
                    bind(ev, j, below)
                full = space.full_index(kept(ev, j), rindex)
                for r in level:
                    k = self.reduces.index(r)
                    xs = [ev.value(x, full) for x in self._inputs(r)[0]]
                    for acc, new in zip(accs[k], self.apply(b, r, read(ev, k, j), xs, lanes, dry)):
                        ev.write(acc, [j], new)
            return point

        def row_outputs(ev, index):
            (j,) = index
            bind(ev, j)
            for out, leaf in zip(self.outs, outs):
                if not out.full:
                    at = space.row_index(out.shape.dims, kept(ev, j))
                    ev.write(leaf, at, _pick(ev.value(out.instr, at), out.leaf))

        def full_outputs(rindex):
            def point(ev, index):
                (j,) = index
                bind(ev, j)
                full = space.full_index(kept(ev, j), rindex)
                for out, leaf in zip(self.outs, outs):
                    if out.full:
                        ev.write(leaf, full, _pick(ev.value(out.instr, full), out.leaf))
            return point

        loop(start)
        for number, level in enumerate(self.levels):
            below = [r for lower in self.levels[:number] for r in lower]
            with L.loop_nest(b, space.sizes(space.reduced), name="r", **OUTER_LOOP) as rindex:
                loop(accumulate([Ix(i, 0, 1) for i in rindex], level, below))
        loop(row_outputs)
        if self._has_full():
            with L.loop_nest(b, space.sizes(space.reduced), name="n", **OUTER_LOOP) as rindex:
                loop(full_outputs([Ix(i, 0, 1) for i in rindex]))


def reduce_levels(reduces: list[Instruction]) -> list[list[Instruction]]:
    """The reduces grouped by level, lowest first: a reduce whose inputs depend on
    other reduces of the fusion is one level above the highest of them."""
    level: dict[Instruction, int] = {}
    for r in reduces:                       # in computation order: dependencies come first
        inputs = r.operands[:len(r.operands) // 2]
        below = [level[d] for d in _closure(list(inputs)) if d in level]
        level[r] = 1 + max(below, default=-1)
    return [[r for r in reduces if level[r] == k] for k in range(max(level.values(), default=-1) + 1)]


def _partial(b, base, k: int, u, parts: int):
    """&partial u of reduce k (scratch: a PARTIAL_BYTES slot per reduce and part)."""
    return L.gep(b, base, ir.IntType(8 * PARTIAL_BYTES), L.add(b, L.mul(b, k, parts), u))


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _closure(starts: list[Instruction]) -> set[Instruction]:
    """`starts` and everything they depend on, not looking past reduces and parameters."""
    seen, stack = set(), list(starts)
    while stack:
        instr = stack.pop()
        if instr in seen:
            continue
        seen.add(instr)
        if instr.opcode not in ("reduce", "parameter"):
            stack.extend(instr.operands)
    return seen
