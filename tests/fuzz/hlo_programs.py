"""Hypothesis strategies for well-typed random HLO programs, driven by the op table.

`programs()` draws a `Program`: a module whose entry computes a few dozen values with
ops drawn from `GENERATORS` (one entry per opcode of `compiler/ops.py` that user
programs contain), arguments for it, and for every value whether its result may
legitimately differ between backends ("inexact", see below).

Elementwise ops come straight from the op table: every op with `elementwise=True` whose
operand dtype class (`OpDef.operand_dtypes`) admits a drawn dtype can be chosen, so an
op added to the table is fuzzed without touching this file. Ops with structure (dots,
convolutions, gathers, windows, control flow) have a generator each that draws valid
attributes; the op table's shape rule still checks every instruction (`Builder.emit`).

Exact vs inexact. Backends may round differently in transcendental functions (ulp
bounds in docs/cpu-math.md) and in sums whose order is unspecified (reduce, dot,
convolution, reduce_window, scatter-add). A value computed through such an op is
*inexact*; everything else (IEEE +, -, *, /, sqrt, data movement, integer ops) must agree
bit for bit. Ops that are discontinuous or singular (compare, floor, sign, convert to
integer, divide, log, power, remainder, ...) only take exact operands: a one-ulp
difference fed into them could legitimately flip a comparison or turn a finite value
into inf, which is not a bug. `NEEDS_EXACT_OPERANDS` and `ROUNDS_DIFFERENTLY` say which.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from hypothesis import strategies as st

from tessel.backends.interpreter.testing import scalar_computation
from tessel.compiler import dtypes, ops
from tessel.compiler.ir import Builder, Instruction, Module, Shape, TupleShape

F32, F64, S32, PRED = dtypes.f32, dtypes.f64, dtypes.s32, dtypes.pred
# The dtypes every op draws from; the extra ones join where the op allows them.
CORE_DTYPES = (F32, F64, S32, PRED)
EXTRA_DTYPES = (dtypes.s64, dtypes.u32, dtypes.u8, dtypes.s8, dtypes.f16)
ALL_DTYPES = CORE_DTYPES + EXTRA_DTYPES
SIZES = (1, 2, 3, 4, 0, 5)   # hypothesis shrinks toward the front: 1 first, 0 is rarer
MAX_RANK = 3

# Ops whose float results may differ between correct backends (rounding, summation order).
ROUNDS_DIFFERENTLY = {"exp", "log", "log1p", "expm1", "tanh", "logistic", "sin", "cos", "erf",
                      "power", "atan2", "rsqrt", "reduce", "dot_general", "convolution",
                      "reduce_window", "scatter"}
# Ops for which a tiny difference in an operand can change the result a lot.
NEEDS_EXACT_OPERANDS = {"compare", "floor", "ceil", "round", "sign", "is_finite", "convert",
                        "divide", "remainder", "power", "atan2", "log", "log1p", "sqrt", "rsqrt",
                        "sort", "select_and_scatter"}
# Ops of compiler/ops.py never generated, and why (the campaign prints this);
# parameter/constant/tuple/get_tuple_element appear as plumbing of the others.
_NEEDS_DEVICES = "a collective: needs several devices (tests/distributed covers it)"
NOT_GENERATED = {
    "fusion": "made by the fusion passes, not written by users (every fused module the "
              "pipelines produce is checked)",
    "custom_call": "runs a registered emitter: no generic semantics to compare",
    "send": "point-to-point transfer between devices", "recv": "point-to-point transfer between devices",
    "all_reduce": _NEEDS_DEVICES, "all_gather": _NEEDS_DEVICES, "collective_broadcast": _NEEDS_DEVICES,
}


def rtol_of(shape) -> float:
    """The loosest checks.INEXACT_RTOL among the float leaves of `shape` (0.0: none)."""
    from checks import INEXACT_RTOL
    return max([0.0] + [INEXACT_RTOL[leaf.dtype.name] for leaf in shape.leaves()
                        if leaf.dtype.is_float and leaf.dtype.name in INEXACT_RTOL])


def op_admits(opname: str, dtype) -> bool:
    """Whether the op table's dtype class for `opname` admits `dtype`."""
    try:
        ops.check_dtype_class(Shape(dtype, ()), ops.OPS[opname].operand_dtypes, opname)
    except ops.ShapeError:
        return False
    return True


ELEMENTWISE_UNARY = sorted(n for n, d in ops.OPS.items() if d.elementwise and d.group == "unary"
                           and n != "convert")
ELEMENTWISE_BINARY = sorted(n for n, d in ops.OPS.items() if d.elementwise and d.group == "binary"
                            and n != "compare")


@dataclass
class Program:
    module: Module
    args: list
    inexact: list[float]         # per output leaf of the entry's root tuple: its relative
                                 # tolerance (checks.INEXACT_RTOL), 0.0 when exact
    ops_used: Counter = field(default_factory=Counter)
    seed: int = 0                # arguments(module, seed) == args
    # per output leaf: the matrix ops whose operand rounding it carries (name -> count),
    # for a profile that tracks it (checks.matrix_error_bound)
    matrix_terms: list = field(default_factory=list)

    def reproduction(self) -> str:
        """The program's text and how to rerun it (tests/fuzz/reproduce.py)."""
        return (f"--- program (arguments: hlo_programs.arguments(module, seed={self.seed}); rerun: "
                f"python tests/fuzz/reproduce.py FILE --seed {self.seed}) ---\n{self.text()}")

    def text(self) -> str:
        from tessel.compiler.printer import print_module
        return print_module(self.module, full_constants=True)


@dataclass(frozen=True)
class Profile:
    """What one target's programs may contain. `FULL` is everything the op table has;
    a backend that runs a subset (systolic_programs.SYSTOLIC) narrows it.

    value_dtypes: dtypes drawn for values and parameters (None: any the op admits);
    pred values outside it are made by comparing two drawn values. unary / binary:
    the elementwise ops drawn. reducers: per dtype class. kinds: the generators drawn
    (weighted by repetition). matrix_error_ok: for a backend whose matrix ops round
    their operands (bf16), the ops that may read a value carrying that error (their
    error stays bounded by their operands': see checks.matrix_error_bound); None: no
    such tracking."""
    value_dtypes: tuple | None
    unary: tuple
    binary: tuple
    kinds: tuple
    reducers: tuple = ("add", "maximum", "minimum", "multiply", "or", "and")
    matrix_error_ok: frozenset | None = None
    name: str = "full"
    # instr -> why the target cannot run it, or None: every emitted instruction must pass
    unsupported_reason: object = None

    def __repr__(self) -> str:       # hypothesis prints the strategy's arguments
        return f"Profile({self.name!r})"


class ProgramBuilder:
    """Appends random well-typed instructions to one computation, keeping a pool of values."""

    def __init__(self, draw, module: Module, name: str, params=(), profile: Profile | None = None):
        self.draw = draw
        self.module = module
        self.profile = profile or FULL
        self.b = Builder(module, name)
        self.pool: list[Instruction] = []
        self.inexact: dict[int, float] = {}      # value -> its tolerance (is_inexact)
        # value -> the matrix ops whose operand rounding it carries, with multiplicity
        self.matrix_terms: dict[int, Counter] = {}
        self.ops_used: Counter = Counter()
        for shape in params:
            self.parameter(shape)

    # ------------------------------------------------------------------ values
    def parameter(self, shape) -> Instruction:
        p = self.b.parameter(shape, f"p{len(self.b.computation.parameters)}")
        self.inexact[id(p)] = 0.0
        if isinstance(shape, Shape):
            self.pool.append(p)
        return p

    def is_inexact(self, instr) -> float:
        """The relative tolerance the value needs (checks.INEXACT_RTOL of the least precise
        float dtype an inexact op on its path rounded in), or 0.0 when it is exact."""
        return self.inexact.get(id(instr), 0.0)

    def carries_matrix_error(self, instr) -> bool:
        return bool(self.matrix_terms.get(id(instr)))

    def emit(self, opcode, operands=(), attrs=None, shape=None, inexact=None) -> Instruction:
        instr = self.b.emit(opcode, list(operands), attrs=attrs, shape=shape)
        self.ops_used[opcode] += 1
        reason = self.profile.unsupported_reason and self.profile.unsupported_reason(instr)
        if reason:
            raise AssertionError(f"generator bug: the {self.profile.name} profile made {instr.name} = "
                                 f"{opcode}, which its backend cannot run: {reason}")
        if inexact is None:
            rounds = opcode in ROUNDS_DIFFERENTLY and any(
                leaf.dtype.is_float for leaf in instr.shape.leaves())
            inexact = rounds or any(self.is_inexact(o) for o in operands)
        # An inexact value keeps the tolerance of every float dtype it passed through: a
        # cos computed in f32 and converted to f64 is still only f32-accurate.
        self.inexact[id(instr)] = max([0.0] + [self.is_inexact(o) for o in operands]
                                      + [rtol_of(instr.shape)]) if inexact else 0.0
        self._track_matrix_error(instr, opcode, operands)
        if isinstance(instr.shape, Shape):
            self.pool.append(instr)
        return instr

    def _track_matrix_error(self, instr, opcode, operands):
        allowed = self.profile.matrix_error_ok
        if allowed is None:
            return
        terms = Counter()
        for o in operands:
            terms.update(self.matrix_terms.get(id(o), Counter()))
        if opcode in ("reduce", "reduce_window"):
            opcode = f"{opcode}_{instr.attrs['to_apply'].root.opcode}"
        if terms and opcode not in allowed:
            raise AssertionError(f"generator bug: {opcode} read a value carrying matrix-unit rounding")
        if opcode in ("dot_general", "convolution"):
            terms = Counter({instr.name: 1})
        self.matrix_terms[id(instr)] = terms

    def may_read_matrix_error(self, opcode: str) -> bool:
        allowed = self.profile.matrix_error_ok
        return allowed is None or opcode in allowed

    def dims(self, rank=None) -> tuple:
        if rank is None:
            rank = self.draw(st.integers(0, MAX_RANK))
        return tuple(self.draw(st.sampled_from(SIZES)) for _ in range(rank))

    def dtype(self, allowed=None):
        allowed = allowed or CORE_DTYPES
        if self.profile.value_dtypes is not None:
            allowed = [d for d in allowed if d in self.profile.value_dtypes] or list(self.profile.value_dtypes)
        if any(d in EXTRA_DTYPES for d in allowed) and self.draw(st.integers(0, 5)) == 0:
            extras = [d for d in allowed if d in EXTRA_DTYPES]
            return self.draw(st.sampled_from(extras))
        return self.draw(st.sampled_from([d for d in allowed if d in CORE_DTYPES] or list(allowed)))

    def operand(self, dtypes_ok=None, dims=None, rank=None, exact=False, dtype=None,
                for_op: str | None = None) -> Instruction:
        """A value from the pool matching the request (usually), else a new parameter.
        `for_op`: the op that will read it (a value carrying matrix-unit rounding is
        offered only to ops the profile allows it; without for_op, never)."""
        if dtype is not None:
            dtypes_ok = (dtype,)
        if dtypes_ok is None and self.profile.value_dtypes is not None:
            dtypes_ok = self.profile.value_dtypes
        matrix_ok = for_op is not None and self.may_read_matrix_error(for_op)

        def fits(v):
            return ((dtypes_ok is None or v.shape.dtype in dtypes_ok)
                    and (dims is None or v.shape.dims == tuple(dims))
                    and (rank is None or v.shape.rank == rank)
                    and not (exact and self.is_inexact(v))
                    and (matrix_ok or not self.carries_matrix_error(v)))
        found = [v for v in self.pool if fits(v)]
        if found and self.draw(st.integers(0, 3)) > 0:
            return self.draw(st.sampled_from(found))
        if dims is None:
            dims = self.dims(rank)
        allowed = self.profile.value_dtypes
        if allowed is not None and dtypes_ok is not None and not any(d in allowed for d in dtypes_ok):
            if PRED in dtypes_ok:
                return self.predicate(dims)
            raise AssertionError(f"generator bug: the profile has none of {dtypes_ok}")
        return self.parameter(Shape(self.dtype(dtypes_ok), dims))

    def predicate(self, dims) -> Instruction:
        """A pred value for a profile without pred parameters: two values compared."""
        x = self.operand(dims=dims, exact=True)
        y = self.operand(dtype=x.shape.dtype, dims=dims, exact=True)
        return self.emit("compare", [x, y], attrs={"direction": self.draw(st.sampled_from(ops.COMPARE_DIRECTIONS))})

    def scalar_constant(self, value, dtype) -> Instruction:
        c = self.b.constant(np.asarray(value, dtype=dtype.storage), dtype)
        self.inexact[id(c)] = 0.0
        return c

    def index(self, limit: int) -> Instruction:
        """An s32 scalar start index, sometimes out of range (backends clamp)."""
        if self.draw(st.booleans()):
            return self.scalar_constant(self.draw(st.integers(-2, limit + 2)), S32)
        return self.parameter(Shape(S32, ()))


# ----------------------------------------------------------------------------- reducers

def identity(opcode: str, dtype):
    if opcode in ("add", "or"):
        return False if dtype.is_pred else 0
    if opcode in ("multiply", "and"):
        return True if dtype.is_pred else 1
    info = np.finfo if dtype.is_float else np.iinfo
    if opcode == "maximum":
        return -np.inf if dtype.is_float else (False if dtype.is_pred else info(dtype.storage).min)
    return np.inf if dtype.is_float else (True if dtype.is_pred else info(dtype.storage).max)


def reducer_ops(dtype) -> list[str]:
    return ["or", "and", "maximum", "minimum"] if dtype.is_pred else ["add", "maximum", "minimum", "multiply"]


def draw_reducer(g: ProgramBuilder, dtype, opcode=None):
    opcode = opcode or g.draw(st.sampled_from([r for r in reducer_ops(dtype) if r in g.profile.reducers]))
    comp = scalar_computation(g.module, opcode, dtype, name=f"{opcode}_{dtype.name}")
    init = g.scalar_constant(identity(opcode, dtype), dtype)
    # max/min/and/or are exact whatever the order; sums and products are not.
    return comp, init, opcode in ("add", "multiply")


# ----------------------------------------------------------------------------- generators

def gen_unary(g: ProgramBuilder):
    opname = g.draw(st.sampled_from(g.profile.unary))
    ok = [d for d in ALL_DTYPES if op_admits(opname, d)]
    x = g.operand(ok, exact=opname in NEEDS_EXACT_OPERANDS, for_op=opname)
    g.emit(opname, [x])


def gen_binary(g: ProgramBuilder):
    opname = g.draw(st.sampled_from(g.profile.binary))
    ok = [d for d in ALL_DTYPES if op_admits(opname, d)]
    exact = opname in NEEDS_EXACT_OPERANDS
    x = g.operand(ok, exact=exact, for_op=opname)
    y = g.operand(dtype=x.shape.dtype, dims=x.shape.dims, exact=exact, for_op=opname)
    g.emit(opname, [x, y])


def gen_compare(g):
    x = g.operand(exact=True)
    y = g.operand(dtype=x.shape.dtype, dims=x.shape.dims, exact=True)
    g.emit("compare", [x, y], attrs={"direction": g.draw(st.sampled_from(ops.COMPARE_DIRECTIONS))})


def gen_select(g):
    x = g.operand(for_op="select")
    y = g.operand(dtype=x.shape.dtype, dims=x.shape.dims, for_op="select")
    p = g.operand(dtype=PRED, dims=x.shape.dims, exact=True)
    g.emit("select", [p, x, y])


def gen_clamp(g):
    x = g.operand([d for d in ALL_DTYPES if not d.is_pred], for_op="clamp")
    bound_dims = () if g.draw(st.booleans()) else x.shape.dims
    lo = g.operand(dtype=x.shape.dtype, dims=bound_dims, for_op="clamp")
    hi = g.operand(dtype=x.shape.dtype, dims=bound_dims, for_op="clamp")
    g.emit("clamp", [lo, x, hi])


def gen_convert(g):
    x = g.operand(ALL_DTYPES)
    target = g.dtype(ALL_DTYPES)
    to_discrete = not target.is_float
    if (to_discrete and x.shape.dtype.is_float and g.is_inexact(x)):
        target = F64 if x.shape.dtype is not F64 else F32
    g.emit("convert", [x], shape=Shape(target, x.shape.dims))


def gen_constant(g):
    dtype = g.dtype(ALL_DTYPES)
    dims = g.dims(g.draw(st.integers(0, 2)))
    seed = g.draw(st.integers(0, 2**16))
    value = random_array(np.random.default_rng(seed), Shape(dtype, dims))
    c = g.b.constant(value, dtype)
    g.inexact[id(c)] = 0.0
    g.ops_used["constant"] += 1
    g.pool.append(c)


def gen_iota(g):
    dims = g.dims(g.draw(st.integers(1, MAX_RANK)))
    dtype = g.dtype([d for d in ALL_DTYPES if not d.is_pred])
    g.emit("iota", [], attrs={"iota_dimension": g.draw(st.integers(0, len(dims) - 1))},
           shape=Shape(dtype, dims))


def gen_broadcast(g):
    x = g.operand(rank=g.draw(st.integers(0, 2)), for_op="broadcast_in_dim")
    extra = g.draw(st.integers(0, 2))
    rank = x.shape.rank + extra
    positions = g.draw(st.permutations(range(rank)))[:x.shape.rank]
    if g.draw(st.booleans()):
        positions = sorted(positions)
    dims = list(g.dims(rank))
    for i, d in enumerate(positions):
        if x.shape.dims[i] != 1 or g.draw(st.booleans()):
            dims[d] = x.shape.dims[i]
    g.emit("broadcast_in_dim", [x], attrs={"broadcast_dimensions": tuple(positions)},
           shape=Shape(x.shape.dtype, dims))


def factor_dims(g, size: int, rank: int) -> list[int]:
    if size == 0:
        dims = list(g.dims(max(rank, 1)))
        dims[g.draw(st.integers(0, len(dims) - 1))] = 0
        return dims
    dims = [1] * rank
    n, p = size, 2
    while n > 1 and rank:
        while n % p == 0:
            dims[g.draw(st.integers(0, rank - 1))] *= p
            n //= p
        p += 1
    return dims if rank or size == 1 else [size]


def gen_reshape(g):
    x = g.operand(for_op="reshape")
    dims = factor_dims(g, x.shape.size, g.draw(st.integers(0, MAX_RANK)))
    g.emit("reshape", [x], shape=Shape(x.shape.dtype, dims))


def gen_transpose(g):
    x = g.operand(rank=g.draw(st.integers(1, MAX_RANK)), for_op="transpose")
    g.emit("transpose", [x], attrs={"permutation": tuple(g.draw(st.permutations(range(x.shape.rank))))})


def gen_reverse(g):
    x = g.operand(rank=g.draw(st.integers(1, MAX_RANK)))
    dims = [d for d in range(x.shape.rank) if g.draw(st.booleans())]
    g.emit("reverse", [x], attrs={"dimensions": tuple(dims)})


def gen_slice(g):
    x = g.operand(rank=g.draw(st.integers(1, MAX_RANK)), for_op="slice")
    starts, limits, strides = [], [], []
    for d in x.shape.dims:
        s = g.draw(st.integers(0, d))
        starts.append(s)
        limits.append(g.draw(st.integers(s, d)))
        strides.append(g.draw(st.integers(1, 3)))
    g.emit("slice", [x], attrs={"start_indices": tuple(starts), "limit_indices": tuple(limits),
                                "strides": tuple(strides)})


def gen_dynamic_slice(g):
    x = g.operand(rank=g.draw(st.integers(1, MAX_RANK)))
    sizes = tuple(g.draw(st.integers(0, d)) for d in x.shape.dims)
    starts = [g.index(d) for d in x.shape.dims]
    g.emit("dynamic_slice", [x, *starts], attrs={"slice_sizes": sizes})


def gen_dynamic_update_slice(g):
    x = g.operand(rank=g.draw(st.integers(1, MAX_RANK)))
    u_dims = tuple(g.draw(st.integers(0, d)) for d in x.shape.dims)
    u = g.operand(dtype=x.shape.dtype, dims=u_dims)
    starts = [g.index(d) for d in x.shape.dims]
    g.emit("dynamic_update_slice", [x, u, *starts])


def gen_concatenate(g):
    x = g.operand(rank=g.draw(st.integers(1, MAX_RANK)), for_op="concatenate")
    dim = g.draw(st.integers(0, x.shape.rank - 1))
    parts = [x]
    for _ in range(g.draw(st.integers(0, 2))):
        dims = list(x.shape.dims)
        dims[dim] = g.draw(st.sampled_from(SIZES))
        parts.append(g.operand(dtype=x.shape.dtype, dims=dims, for_op="concatenate"))
    g.emit("concatenate", parts, attrs={"dimension": dim})


def gen_pad(g):
    x = g.operand(rank=g.draw(st.integers(1, MAX_RANK)))
    value = g.operand(dtype=x.shape.dtype, dims=())
    lo, hi, interior = [], [], []
    for d in x.shape.dims:
        i = g.draw(st.integers(0, 2))
        full = d + max(d - 1, 0) * i
        low = g.draw(st.integers(-min(full, 2), 2))
        lo.append(low)
        hi.append(g.draw(st.integers(-min(full + low, 2), 2)))
        interior.append(i)
    g.emit("pad", [x, value], attrs={"edge_padding_low": tuple(lo), "edge_padding_high": tuple(hi),
                                     "interior_padding": tuple(interior)})


def gen_reduce(g):
    # Where matrix-unit error is tracked, the reducer comes first: max / min keep it
    # bounded and may read such values, sums may not.
    reducer = g.draw(st.sampled_from(g.profile.reducers)) if g.profile.matrix_error_ok else None
    x = g.operand(rank=g.draw(st.integers(0, MAX_RANK)), for_op=f"reduce_{reducer}")
    if reducer not in reducer_ops(x.shape.dtype):
        reducer = None
    dims = tuple(d for d in g.draw(st.permutations(range(x.shape.rank))) if g.draw(st.booleans()))
    comp, init, rounds = draw_reducer(g, x.shape.dtype, reducer)
    g.emit("reduce", [x, init], attrs={"dimensions": dims, "to_apply": comp},
           inexact=g.is_inexact(x) or (rounds and x.shape.dtype.is_float))


def matrix_operands_exact(g) -> bool:
    """Where matrix ops round their operands (bf16), they read only values both sides
    compute bit for bit: the per-GEMM bound (checks.matrix_error_bound) assumes equal
    inputs; an input off by an f32 ulp could round to a different bf16 value."""
    return g.profile.matrix_error_ok is not None


def gen_dot(g):
    exact = matrix_operands_exact(g)
    lhs = g.operand([d for d in ALL_DTYPES if not d.is_pred and d is not dtypes.f16],
                    rank=g.draw(st.integers(0, MAX_RANK)), exact=exact)
    r = lhs.shape.rank
    perm = g.draw(st.permutations(range(r)))
    nb = g.draw(st.integers(0, r))
    nc = g.draw(st.integers(0, r - nb))
    lb, lc = tuple(perm[:nb]), tuple(perm[nb:nb + nc])
    roles = [lhs.shape.dims[d] for d in lb + lc] + list(g.dims(g.draw(st.integers(0, 2))))
    rperm = g.draw(st.permutations(range(len(roles))))
    rhs_dims = [0] * len(roles)
    for k, size in enumerate(roles):
        rhs_dims[rperm[k]] = size
    rhs = g.operand(dtype=lhs.shape.dtype, dims=rhs_dims, exact=exact)
    g.emit("dot_general", [lhs, rhs], attrs={
        "lhs_batching_dims": lb, "rhs_batching_dims": tuple(rperm[:nb]),
        "lhs_contracting_dims": lc, "rhs_contracting_dims": tuple(rperm[nb:nb + nc])})


def conv_labels(g, n: int) -> str:
    spatial = "".join(str(i) for i in range(n))
    parts = ["".join(g.draw(st.permutations(letters + spatial))) for letters in ("bf", "io", "bf")]
    return f"{parts[0]}_{parts[1]}->{parts[2]}"


def gen_convolution(g):
    n = g.draw(st.integers(1, 2))
    labels = conv_labels(g, n)
    dn = ops.parse_dim_labels(labels)
    dtype = g.dtype((F32, F64, S32))
    groups = g.draw(st.integers(1, 2))
    grouped_batch = g.draw(st.booleans()) and groups > 1
    fgc, bgc = (1, groups) if grouped_batch else (groups, 1)
    k_in, k_out = g.draw(st.integers(1, 2)), groups * g.draw(st.integers(1, 2))
    lhs_dims, rhs_dims = [0] * (n + 2), [0] * (n + 2)
    lhs_dims[dn.input_batch] = bgc * g.draw(st.integers(1, 2))
    lhs_dims[dn.input_feature] = k_in * fgc
    rhs_dims[dn.kernel_in], rhs_dims[dn.kernel_out] = k_in, k_out
    for i in range(n):
        lhs_dims[dn.input_spatial[i]] = g.draw(st.integers(1, 5))
        rhs_dims[dn.kernel_spatial[i]] = g.draw(st.integers(1, 3))
    lhs = g.operand(dtype=dtype, dims=lhs_dims, exact=matrix_operands_exact(g))
    rhs = g.operand(dtype=dtype, dims=rhs_dims, exact=matrix_operands_exact(g))
    ints = lambda lo, hi: tuple(g.draw(st.integers(lo, hi)) for _ in range(n))  # noqa: E731
    g.emit("convolution", [lhs, rhs], attrs={
        "dim_labels": labels, "window_strides": ints(1, 2),
        "padding": tuple((g.draw(st.integers(-1, 2)), g.draw(st.integers(0, 2))) for _ in range(n)),
        "lhs_dilation": ints(1, 2), "rhs_dilation": ints(1, 2),
        "feature_group_count": fgc, "batch_group_count": bgc})


def window_attrs(g, rank: int, dilations: bool) -> dict:
    ints = lambda lo, hi: tuple(g.draw(st.integers(lo, hi)) for _ in range(rank))  # noqa: E731
    attrs = {"window_dimensions": ints(1, 3), "window_strides": ints(1, 2),
             "padding": tuple((g.draw(st.integers(0, 1)), g.draw(st.integers(0, 1))) for _ in range(rank))}
    if dilations:
        attrs.update(base_dilations=ints(1, 2), window_dilations=ints(1, 2))
    return attrs


def gen_reduce_window(g):
    x = g.operand(rank=g.draw(st.integers(1, MAX_RANK)))
    comp, init, rounds = draw_reducer(g, x.shape.dtype)
    attrs = {**window_attrs(g, x.shape.rank, True), "to_apply": comp}
    g.emit("reduce_window", [x, init], attrs=attrs,
           inexact=g.is_inexact(x) or (rounds and x.shape.dtype.is_float))


def gen_select_and_scatter(g):
    dtype = g.dtype((F32, F64, S32))
    x = g.operand(dtype=dtype, rank=g.draw(st.integers(1, MAX_RANK)), exact=True)
    attrs = window_attrs(g, x.shape.rank, False)
    src_dims = ops.windowed_dims(x.shape.dims, attrs)
    source = g.operand(dtype=dtype, dims=src_dims)
    select = scalar_computation(g.module, "compare", dtype, name="select_ge",
                                direction=g.draw(st.sampled_from(("GE", "GT", "LE"))))
    scatter = scalar_computation(g.module, "add", dtype, name="scatter_add")
    init = g.scalar_constant(0, dtype)
    g.emit("select_and_scatter", [x, source, init],
           attrs={**attrs, "select": select, "scatter": scatter})


def gen_sort(g):
    keys = g.operand((S32, dtypes.s64, dtypes.u8, PRED), rank=g.draw(st.integers(1, MAX_RANK)))
    operands = [keys]
    if g.draw(st.booleans()):
        operands.append(g.operand(dims=keys.shape.dims))
    direction = g.draw(st.sampled_from(("LT", "GT")))
    b = Builder(g.module, "comparator")
    params = [b.parameter(Shape(o.shape.dtype, ()), f"a{k}") for k, o in enumerate(operands) for _ in (0, 1)]
    comparator = b.build(b.emit("compare", params[:2], attrs={"direction": direction}))
    # Stable when payloads ride along: equal keys then have one correct order.
    stable = len(operands) > 1 or g.draw(st.booleans())
    result = g.emit("sort", operands, attrs={"dimension": g.draw(st.integers(0, keys.shape.rank - 1)),
                                             "is_stable": stable, "comparator": comparator})
    if len(operands) > 1:
        for k in range(len(operands)):
            g.emit("get_tuple_element", [result], attrs={"index": k})


def sub_computation(g: ProgramBuilder, name: str, param_shape: Shape, steps: int) -> tuple:
    """A computation x -> f(x) of the same type, made of a few elementwise ops."""
    sub = ProgramBuilder(g.draw, g.module, name, [param_shape])
    x = sub.pool[0]
    for _ in range(steps):
        candidates = [op for op in ("negate", "abs", "add", "multiply", "maximum", "tanh", "not",
                                    "subtract", "and", "xor")
                      if op_admits(op, param_shape.dtype)]
        opname = sub.draw(st.sampled_from(candidates))
        operands = [x] if ops.OPS[opname].group == "unary" else [x, sub.draw(st.sampled_from(sub.pool))]
        x = sub.emit(opname, operands)
    g.ops_used.update(sub.ops_used)
    return sub.b.build(x), sub.is_inexact(x)


def gen_while(g):
    x = g.operand(rank=g.draw(st.integers(0, 2)))
    trips = g.draw(st.integers(0, 3))
    state = TupleShape([Shape(S32, ()), x.shape])
    body_fn, inexact = sub_computation(g, "step", x.shape, g.draw(st.integers(1, 3)))
    cb = Builder(g.module, "cond")
    s = cb.parameter(state, "s")
    i = cb.emit("get_tuple_element", [s], attrs={"index": 0})
    cond = cb.build(cb.emit("compare", [i, cb.constant(np.int32(trips))], attrs={"direction": "LT"}))
    bb = Builder(g.module, "body")
    s = bb.parameter(state, "s")
    i = bb.emit("get_tuple_element", [s], attrs={"index": 0})
    v = bb.emit("get_tuple_element", [s], attrs={"index": 1})
    nxt = bb.emit("call", [v], attrs={"to_apply": body_fn})
    body = bb.build(bb.emit("tuple", [bb.emit("add", [i, bb.constant(np.int32(1))]), nxt]))
    init = g.emit("tuple", [g.scalar_constant(0, S32), x])
    attrs = {"condition": cond, "body": body}
    if g.draw(st.booleans()):
        attrs["trip_count"] = trips
    loop = g.emit("while", [init], attrs=attrs, inexact=g.is_inexact(x) or inexact)
    g.emit("get_tuple_element", [loop], attrs={"index": 1})


def gen_conditional(g):
    x = g.operand(rank=g.draw(st.integers(0, 2)))
    n = g.draw(st.integers(1, 3))
    if n == 2 and g.draw(st.booleans()):
        index = g.operand(dtype=PRED, dims=(), exact=True)
    else:
        index = g.index(n)
    branches, inexact = [], g.is_inexact(x)
    for k in range(n):
        comp, branch_inexact = sub_computation(g, f"branch{k}", x.shape, g.draw(st.integers(0, 2)))
        branches.append(comp)
        inexact = inexact or branch_inexact
    g.emit("conditional", [index] + [x] * n, attrs={"branch_computations": tuple(branches)},
           inexact=inexact)


def gen_call(g):
    x = g.operand(rank=g.draw(st.integers(0, 2)))
    comp, inexact = sub_computation(g, "callee", x.shape, g.draw(st.integers(1, 2)))
    g.emit("call", [x], attrs={"to_apply": comp}, inexact=g.is_inexact(x) or inexact)


def gather_attrs(g, operand_dims, batch_rank: int):
    rank = len(operand_dims)
    start_map = tuple(g.draw(st.permutations(range(rank)))[:g.draw(st.integers(1, rank))])
    collapsed = tuple(sorted(d for d in start_map if operand_dims[d] >= 1 and g.draw(st.booleans())))
    sizes = tuple(1 if d in collapsed else g.draw(st.integers(0, s))
                  for d, s in enumerate(operand_dims))
    return start_map, collapsed, sizes


def gen_gather(g):
    x = g.operand(rank=g.draw(st.integers(1, MAX_RANK)))
    batch = g.dims(g.draw(st.integers(0, 2)))
    start_map, collapsed, sizes = gather_attrs(g, x.shape.dims, len(batch))
    ivd = g.draw(st.integers(0, len(batch)))
    idx_dims = list(batch)
    if len(start_map) > 1 or g.draw(st.booleans()):
        idx_dims.insert(ivd, len(start_map))
    else:
        ivd = len(idx_dims)
    indices = g.parameter(Shape(S32, idx_dims))
    n_offset = x.shape.rank - len(collapsed)
    out_rank = len(batch) + n_offset
    offset_dims = tuple(sorted(g.draw(st.permutations(range(out_rank)))[:n_offset]))
    g.emit("gather", [x, indices], attrs={
        "offset_dims": offset_dims, "collapsed_slice_dims": collapsed, "start_index_map": start_map,
        "index_vector_dim": ivd, "slice_sizes": sizes, "indices_are_sorted": False})


def gen_scatter(g):
    x = g.operand([d for d in ALL_DTYPES if not d.is_pred], rank=g.draw(st.integers(1, MAX_RANK)))
    batch = g.dims(g.draw(st.integers(0, 2)))
    start_map, inserted, _ = gather_attrs(g, x.shape.dims, len(batch))
    indices = g.parameter(Shape(S32, list(batch) + [len(start_map)]))
    window_sizes = [g.draw(st.integers(0, s)) for d, s in enumerate(x.shape.dims) if d not in inserted]
    upd_rank = len(batch) + len(window_sizes)
    window = tuple(sorted(g.draw(st.permutations(range(upd_rank)))[:len(window_sizes)]))
    upd_dims, b, w = [], iter(batch), iter(window_sizes)
    for d in range(upd_rank):
        upd_dims.append(next(w) if d in window else next(b))
    updates = g.operand(dtype=x.shape.dtype, dims=upd_dims)
    comp = scalar_computation(g.module, "add", x.shape.dtype, name="combine")
    g.emit("scatter", [x, indices, updates], attrs={
        "update_window_dims": window, "inserted_window_dims": inserted,
        "scatter_dims_to_operand_dims": start_map, "index_vector_dim": len(batch), "to_apply": comp})


def gen_tuple(g):
    x, y = g.operand(), g.operand()
    t = g.emit("tuple", [x, y])
    g.emit("get_tuple_element", [t], attrs={"index": g.draw(st.integers(0, 1))})


def gen_rng(g):
    state = g.parameter(Shape(dtypes.u32, (4,)))
    out = g.emit("rng_bit_generator", [state], shape=TupleShape([state.shape, Shape(dtypes.u32, g.dims())]))
    g.emit("get_tuple_element", [out], attrs={"index": 1})
    g.emit("get_tuple_element", [out], attrs={"index": 0})


# opcode -> generator; elementwise ops are drawn from the op table inside gen_unary/gen_binary.
GENERATORS = {
    "unary": gen_unary, "binary": gen_binary, "compare": gen_compare, "select": gen_select,
    "clamp": gen_clamp, "convert": gen_convert, "constant": gen_constant, "iota": gen_iota,
    "broadcast_in_dim": gen_broadcast, "reshape": gen_reshape, "transpose": gen_transpose,
    "reverse": gen_reverse, "slice": gen_slice, "dynamic_slice": gen_dynamic_slice,
    "dynamic_update_slice": gen_dynamic_update_slice, "concatenate": gen_concatenate, "pad": gen_pad,
    "reduce": gen_reduce, "dot_general": gen_dot, "convolution": gen_convolution,
    "reduce_window": gen_reduce_window, "select_and_scatter": gen_select_and_scatter, "sort": gen_sort,
    "while": gen_while, "conditional": gen_conditional, "call": gen_call, "gather": gen_gather,
    "scatter": gen_scatter, "tuple": gen_tuple, "rng_bit_generator": gen_rng,
}
# Elementwise ops get more weight: fusable chains are what the fusion passes work on.
WEIGHTED_KINDS = ["unary", "binary"] * 4 + sorted(GENERATORS)
FULL = Profile(None, tuple(ELEMENTWISE_UNARY), tuple(ELEMENTWISE_BINARY), tuple(WEIGHTED_KINDS))


def generated_op_set() -> set[str]:
    """Every opcode the generator can emit (the coverage a long run must reach)."""
    return set(ops.OPS) - set(NOT_GENERATED)


# ----------------------------------------------------------------------------- arguments

SPECIAL_FLOATS = (np.nan, np.inf, -np.inf, 0.0, -0.0, 1e30, -1e-30, 65504.0)


def random_array(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    dt = shape.dtype
    dims = shape.dims
    return np.asarray(_random_values(rng, dt, dims), dtype=dt.storage)


def _random_values(rng, dt, dims):
    if dt.is_pred:
        return rng.random(dims) < 0.5
    if dt.is_integer:
        info = np.iinfo(dt.storage)
        lo, hi = max(info.min, -4), min(info.max, 6)
        values = rng.integers(lo, hi + 1, size=dims).astype(dt.storage)
        extremes = rng.random(dims) < 0.05
        return np.where(extremes, rng.choice([info.min, info.max], size=dims), values).astype(dt.storage)
    values = (rng.standard_normal(dims) * 2).astype(dt.storage)
    special = rng.random(dims) < 0.08
    with np.errstate(over="ignore"):   # 1e30 is inf in f16: another special value
        picks = rng.choice(np.array(SPECIAL_FLOATS, dtype=np.float64), size=dims).astype(dt.storage)
    return np.where(special, picks, values).astype(dt.storage)


# ----------------------------------------------------------------------------- programs

@st.composite
def programs(draw, max_steps: int = 10, profile: Profile = None, generators: dict = None) -> Program:
    """A random program; `profile` and `generators` (kind -> generator, GENERATORS by
    default) narrow it to what one backend runs."""
    profile, generators = profile or FULL, generators or GENERATORS
    module = Module("fuzz")
    g = ProgramBuilder(draw, module, "main", profile=profile)
    for _ in range(draw(st.integers(1, max_steps))):
        generators[draw(st.sampled_from(profile.kinds))](g)
    # Outputs: every value nothing else reads, plus a few drawn others.
    read = {id(o) for v in g.b.computation.instructions for o in v.operands}
    outputs = [v for v in g.pool if (id(v) not in read or draw(st.integers(0, 5)) == 0)
               and (profile.value_dtypes is None or v.shape.dtype in profile.value_dtypes)]
    root = g.b.emit("tuple", outputs)
    g.b.build(root, entry=True)
    seed = draw(st.integers(0, 2**32 - 1))
    return Program(module, arguments(module, seed), [g.is_inexact(v) for v in outputs], g.ops_used, seed,
                   [g.matrix_terms.get(id(v), Counter()) for v in outputs])


def arguments(module: Module, seed: int) -> list[np.ndarray]:
    """The entry's arguments for `seed` (a program's are reproducible from its text)."""
    rng = np.random.default_rng(seed)
    return [random_array(rng, p.shape) for p in module.entry.parameters]
