"""Local rewrites: declarative (pattern, callback) tables run by one driver.

A `Rule` pairs a `Pat` -- opcode(s), operand sub-patterns, predicates, names to bind --
with a callback that receives a `RewriteContext` and the bound instructions by name, and
returns the instruction that replaces the matched one (new, or an existing one such as
an operand) or None to decline:

    RULES = RuleTable([
        # x * 1 = x for every x, inf and NaN included.
        Rule("multiply_one", Pat("multiply", var("x"), splat(1)), lambda ctx, x: x),
    ])
    rewrite_module(module, RULES)   # -> Counter of rule name -> times it fired

`rewrite_module` walks every computation of the module (nested ones too) with a
worklist, applies the first matching rule of each instruction's opcode, and revisits
what a rewrite touched until no rule matches. Every rewrite replaces all uses of the
matched instruction (the root too), removes it and the instructions only it used
(instructions that were dead before are DCE's business), and is counted against a loop guard
proportional to the module's size, so a set of rules that undo each other stops with a
`RewriteLimitError` naming them instead of running forever.

What the driver guarantees so rules need not:
- parameters and side-effecting instructions (ops.OpDef.side_effects, or calling a
  computation that has one) are never matched, removed or emitted;
- new instructions are built through the op table (`ops.infer_shape`), inserted just
  before the matched instruction (so the order stays topological) and carry the matched
  instruction's source locations;
- a replacement has the matched instruction's type; one that differs only in layout
  declines the rewrite, one of another type is a bug in the rule and raises;
- an instruction made by `ctx.rebuild(old, ...)` (a copy of `old` with new operands,
  attributes or type: what editing it in place would give) takes over `old`'s name when
  the rewrite removes `old`, so rewrites that only change an instruction keep its name.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from . import dtypes, ops
from .ir import AnyShape, Computation, Instruction, Module, Shape, SourceLoc

# A rewrite that creates constants makes them at most this big; a bigger splat stays a
# broadcast of a scalar constant (smaller, and what fusion wants to see).
SMALL_CONSTANT_ELEMENTS = 16

# The loop guard: rewrites allowed per run, per instruction of the module (plus a floor
# for tiny modules). Real rule sets need about one rewrite per instruction.
REWRITES_PER_INSTRUCTION = 8
MIN_REWRITE_LIMIT = 64


class RewriteError(RuntimeError):
    """A rule broke the driver's contract (e.g. replaced a value with one of another type)."""


class RewriteLimitError(RewriteError):
    """Rewriting did not reach a fixed point within the loop guard's budget."""


# ----------------------------------------------------------------------------- values of constants

def const_value(instr: Instruction) -> np.ndarray | None:
    """The array a `constant` holds, or None for any other instruction."""
    if instr.opcode != "constant":
        return None
    return instr.attrs["value"].array


def splat_value(instr: Instruction):
    """The one value every element of `instr` has, when that is known at compile time.

    A constant whose elements are all equal, or a broadcast of one; None otherwise (and
    for empty constants, which have no value to speak of). Returns a NumPy scalar.
    """
    while instr.opcode == "broadcast_in_dim":
        instr = instr.operands[0]
    array = const_value(instr)
    if array is None or array.size == 0:
        return None
    first = array.flat[0]
    if array.size > 1 and not _all_equal(array, first):
        return None
    return first


def _all_equal(array: np.ndarray, value) -> bool:
    if array.dtype.kind == "f" and np.isnan(value):
        return bool(np.isnan(array).all())
    same = array == value
    if array.dtype.kind == "f":   # -0.0 == 0.0, but they are different constants here
        same &= np.signbit(array) == np.signbit(value)
    return bool(same.all())


def is_splat_constant(instr: Instruction, value=None) -> bool:
    """True if every element of `instr` is the compile-time constant `value` (any
    value when None). 0 matches both +0.0 and -0.0; use `splat_value` to tell them apart."""
    v = splat_value(instr)
    if v is None:
        return False
    return value is None or bool(v == value)


# ----------------------------------------------------------------------------- side effects

def has_side_effects(instr: Instruction) -> bool:
    """The op has side effects, or calls a computation containing one (at any depth).
    Such instructions are never removed, merged or duplicated."""
    return _has_side_effects(instr, set())


def _has_side_effects(instr: Instruction, visiting: set[int]) -> bool:
    opdef = ops.OPS.get(instr.opcode)
    if opdef is None or opdef.side_effects:
        return True          # an unknown op is assumed to have them
    for comp in instr.called_computations():
        if id(comp) in visiting:
            continue
        visiting.add(id(comp))
        if any(_has_side_effects(i, visiting) for i in comp.instructions):
            return True
    return False


# ----------------------------------------------------------------------------- patterns

class Pat:
    """Matches an instruction.

    opcode:   an opcode, a tuple of them, or None for any
    operands: one sub-pattern per operand (the operand count must then match); none
              given matches any operands. For commutative binary ops (ops.OpDef.
              commutative) both operand orders are tried.
    name:     bind the matched instruction to this name; a name used twice must match
              the same instruction both times (`Pat("select", var("p"), x, x)`)
    where:    a predicate on the instruction (dtype, attributes, constant value...)
    """
    __slots__ = ("opcodes", "operands", "name", "where")

    def __init__(self, opcode: str | tuple[str, ...] | None = None, *operands: "Pat",
                 name: str | None = None, where: Callable[[Instruction], bool] | None = None):
        self.opcodes = (opcode,) if isinstance(opcode, str) else opcode
        self.operands = operands or None
        self.name = name
        self.where = where

    def match(self, instr: Instruction) -> dict[str, Instruction] | None:
        """The bindings (name -> instruction) when `instr` matches, else None."""
        return _match(self, instr, {})

    def __repr__(self) -> str:
        head = "|".join(self.opcodes) if self.opcodes else "*"
        inner = ", ".join(map(repr, self.operands)) if self.operands else "..."
        return f"{self.name + '=' if self.name else ''}{head}({inner})"


def var(name: str | None = None, where: Callable[[Instruction], bool] | None = None) -> Pat:
    """Any instruction (satisfying `where`, if given), bound to `name`."""
    return Pat(None, name=name, where=where)


def splat(value=None, name: str | None = None) -> Pat:
    """A compile-time constant whose elements all equal `value` (see is_splat_constant)."""
    return var(name, where=lambda i: is_splat_constant(i, value))


def _match(pat: Pat, instr: Instruction, bound: dict) -> dict | None:
    if pat.opcodes is not None and instr.opcode not in pat.opcodes:
        return None
    if pat.where is not None and not pat.where(instr):
        return None
    if pat.name is not None:
        if pat.name in bound and bound[pat.name] is not instr:
            return None
        bound = {**bound, pat.name: instr}
    if pat.operands is None:
        return bound
    if len(pat.operands) != len(instr.operands):
        return None
    orders = [instr.operands]
    if len(instr.operands) == 2 and ops.get(instr.opcode).commutative:
        orders.append(instr.operands[::-1])
    for operands in orders:
        result = _match_all(pat.operands, operands, bound)
        if result is not None:
            return result
    return None


def _match_all(pats: Sequence[Pat], instrs: Sequence[Instruction], bound: dict) -> dict | None:
    for pat, instr in zip(pats, instrs):
        bound = _match(pat, instr, bound)
        if bound is None:
            return None
    return bound


# ----------------------------------------------------------------------------- rules and tables

@dataclass(frozen=True)
class Rule:
    """`callback(ctx, **bindings) -> Instruction | None` for instructions matching `pattern`."""
    name: str
    pattern: Pat
    callback: Callable[..., Instruction | None]


class RuleTable:
    """Rules indexed by the opcode(s) of their pattern's root, in declaration order."""

    def __init__(self, rules: Iterable[Rule]):
        self.rules = list(rules)
        names = [r.name for r in self.rules]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"rule names must be unique, repeated: {', '.join(duplicates)}")
        self.by_opcode: dict[str, list[Rule]] = {}
        for r in self.rules:
            if r.pattern.opcodes is None:
                raise ValueError(f"rule {r.name}: the pattern's root must name its opcode(s)")
            for opcode in r.pattern.opcodes:
                ops.get(opcode)                         # unknown opcodes fail here
                self.by_opcode.setdefault(opcode, []).append(r)

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.rules]

    def for_opcode(self, opcode: str) -> list[Rule]:
        return self.by_opcode.get(opcode, [])


# ----------------------------------------------------------------------------- building replacements

def merged_locs(instrs: Iterable[Instruction]) -> tuple[SourceLoc, ...]:
    """Every location of `instrs`, in order, each once (for what replaces several of them)."""
    return tuple(dict.fromkeys(loc for instr in instrs for loc in instr.locs))


class RewriteContext:
    """What a callback gets: the matched instruction, its computation, options, and
    helpers that build new instructions in front of the matched one."""

    def __init__(self, rewriter: "_Rewriter", instr: Instruction):
        self._rewriter = rewriter
        self.instr = instr
        self.module: Module = rewriter.module
        self.computation: Computation = rewriter.comp
        self.options: Any = rewriter.options
        self.created: list[Instruction] = []
        self.rebuilt: list[tuple[Instruction, Instruction]] = []   # (new, the instruction it rebuilds)

    def emit(self, opcode: str, operands: Sequence[Instruction] = (), attrs: Mapping | None = None,
             shape: AnyShape | None = None, *, name: str | None = None,
             locs: Iterable[SourceLoc] | None = None) -> Instruction:
        """A new well-typed instruction (shape from the op table; `shape` declares it for
        ops like reshape and convert), placed before the matched instruction. Its name is
        made from `name` (default: the opcode); `locs` default to the matched instruction's."""
        if ops.get(opcode).side_effects:
            raise RewriteError(f"a rewrite may not create {opcode}: it has side effects")
        attrs = ops.normalize_attrs(opcode, attrs or {})
        result = ops.infer_shape(opcode, [o.shape for o in operands], attrs, shape)
        new = Instruction(self.module.unique_name(name or opcode), opcode, operands, result, attrs,
                          self.instr.locs if locs is None else locs)
        if has_side_effects(new):
            raise RewriteError(f"a rewrite may not create {opcode} calling a computation with side effects")
        self._rewriter.insert_before(self.instr, new)
        self.created.append(new)
        return new

    def rebuild(self, instr: Instruction, *, operands: Sequence[Instruction] | None = None,
                attrs: Mapping | None = None, shape: AnyShape | None = None,
                locs: Iterable[SourceLoc] | None = None) -> Instruction:
        """A copy of `instr` (the matched instruction or another) with the given operands,
        attributes (merged into its own), declared type or locations: what editing `instr`
        in place would give. It takes over `instr`'s name if the rewrite removes `instr`."""
        new = self.emit(instr.opcode, instr.operands if operands is None else operands,
                        instr.attrs.replace(**(attrs or {})), instr.shape if shape is None else shape,
                        name=instr.name, locs=instr.locs if locs is None else locs)
        self.rebuilt.append((new, instr))
        return new

    def constant(self, value, dtype) -> Instruction:
        dt = dtypes.from_any(dtype)
        array = dtypes.canonicalize(np.asarray(value), dt)
        return self.emit("constant", [], {"value": array}, Shape(dt, array.shape))

    def splat(self, value, shape: Shape) -> Instruction:
        """`value` in every element of `shape`: a constant when small, else a broadcast
        of a scalar constant."""
        if shape.size <= SMALL_CONSTANT_ELEMENTS:
            return self.constant(np.full(shape.dims, value), shape.dtype)
        scalar = self.constant(value, shape.dtype)
        return self.emit("broadcast_in_dim", [scalar], {"broadcast_dimensions": ()},
                         Shape(shape.dtype, shape.dims))

    def users(self, instr: Instruction) -> list[Instruction]:
        """The instructions using `instr` (once per operand slot)."""
        return list(self._rewriter.users.get(instr, ()))

    def only_user(self, instr: Instruction) -> Instruction | None:
        """The one instruction reading `instr` (in one operand slot or several); None when
        there are none or several, or when `instr` is the root (its caller reads it too)."""
        users = set(self._rewriter.users.get(instr, ()))
        if instr is self.computation.root or len(users) != 1:
            return None
        return users.pop()


# ----------------------------------------------------------------------------- the driver

class _Budget:
    """The loop guard: counts rewrites per rule and stops the run at `limit`."""

    def __init__(self, module: Module, limit: int):
        self.module, self.limit = module, limit
        self.fired: collections.Counter = collections.Counter()

    def spend(self, rule: Rule, instr: Instruction) -> None:
        if sum(self.fired.values()) >= self.limit:
            busiest = ", ".join(f"{name} x{n}" for name, n in self.fired.most_common(4))
            raise RewriteLimitError(
                f"rewriting module {self.module.name} did not reach a fixed point after "
                f"{self.limit} rewrites (last: {rule.name} on {instr.name} at {instr.loc_text}); "
                f"rules that fired most: {busiest}. Some rules undo each other.")
        self.fired[rule.name] += 1


class _Rewriter:
    """Rewrites one computation with a worklist; keeps a users map up to date."""

    def __init__(self, module: Module, comp: Computation, table: RuleTable, options, budget: _Budget):
        self.module, self.comp, self.table = module, comp, table
        self.options, self.budget = options, budget
        self.users: dict[Instruction, list[Instruction]] = comp.users()

    def run(self) -> None:
        # A sweep visits instructions in order and, before moving on, the users of every
        # replacement, so an instruction is matched once its operands are final: one sweep
        # usually reaches the fixed point. A callback that looks at users (ctx.users) can
        # enable rewrites behind it, so sweep again until a sweep changes nothing.
        while self.sweep():
            pass

    def sweep(self) -> bool:
        changed = False
        work = list(reversed(self.comp.instructions))     # a stack: first instruction on top
        while work:
            instr = work.pop()
            if instr not in self.users:                     # removed by an earlier rewrite
                continue
            replacement, ctx = self.rewrite_once(instr)
            if replacement is None:
                continue
            changed = True
            self.replace(instr, replacement, ctx.created)
            self.pass_on_names(ctx.rebuilt)
            work.extend(u for u in self.users[replacement] if u in self.users)
            work.extend(reversed(ctx.created))              # new instructions may match too
        return changed

    def rewrite_once(self, instr: Instruction) -> tuple[Instruction | None, RewriteContext | None]:
        if instr.opcode == "parameter" or has_side_effects(instr):
            return None, None
        for rule in self.table.for_opcode(instr.opcode):
            bindings = rule.pattern.match(instr)
            if bindings is None:
                continue
            ctx = RewriteContext(self, instr)
            try:
                result = rule.callback(ctx, **bindings)
                if result is not None and result is not instr and \
                        self.acceptable(rule, instr, result, ctx.created):
                    self.budget.spend(rule, instr)
                    return result, ctx
            except BaseException:
                self.discard(ctx.created)     # leave the module as valid as it was
                raise
            self.discard(ctx.created)
        return None, None

    def acceptable(self, rule: Rule, instr: Instruction, result: Instruction,
                   created: list[Instruction]) -> bool:
        if result not in self.users:
            raise RewriteError(f"rule {rule.name} replaced {instr.name} with {result.name}, "
                               f"which is not an instruction of computation {self.comp.name}")
        if any(instr in new.operands for new in created):
            raise RewriteError(f"rule {rule.name} built its replacement of {instr.name} from "
                               f"{instr.name} itself (the rewrite would make a cycle)")
        if result.shape == instr.shape:
            return True
        if _same_type_ignoring_layout(result.shape, instr.shape):
            return False                                    # only the layout differs: decline
        raise RewriteError(f"rule {rule.name} replaced {instr.name} ({instr.shape}) with "
                           f"{result.name} of another type ({result.shape})")

    # -- editing the computation (and the users map)
    def insert_before(self, anchor: Instruction, new: Instruction) -> None:
        self.comp.instructions.insert(self.comp.instructions.index(anchor), new)
        self.users[new] = []
        for o in new.operands:
            self.users[o].append(new)

    def remove(self, instr: Instruction) -> None:
        self.comp.remove(instr)
        for o in instr.operands:
            self.users[o].remove(instr)
        del self.users[instr]

    def discard(self, created: list[Instruction]) -> None:
        """Undo the instructions a declining callback built (newest first)."""
        for new in reversed(created):
            self.remove(new)

    def replace(self, old: Instruction, new: Instruction, created: list[Instruction]) -> None:
        """Redirect every use of `old` (the root too) to `new`, then remove `old` and what
        only it used, and whatever the rule built but did not use."""
        for user in self.users[old]:
            user.operands = [new if o is old else o for o in user.operands]
            self.users[new].append(user)
        self.users[old] = []
        if self.comp.root is old:
            self.comp.root = new
        for instr in [old] + created[::-1]:
            self.remove_if_dead(instr, keep=new)

    def pass_on_names(self, rebuilt: list[tuple[Instruction, Instruction]]) -> None:
        """A rebuilt instruction takes the name of the one it rebuilds, once that is gone."""
        for new, old in rebuilt:
            if old not in self.users and new in self.users:
                new.name = old.name

    def remove_if_dead(self, instr: Instruction, keep: Instruction) -> None:
        """Remove `instr` if nothing uses it, then its operands likewise. `keep` stays
        (the replacement of a matched instruction that was itself unused)."""
        dead = [instr]
        while dead:
            instr = dead.pop()
            if instr is keep or instr not in self.users or self.users[instr] \
                    or instr is self.comp.root or instr.opcode == "parameter" or has_side_effects(instr):
                continue
            self.remove(instr)
            dead.extend(instr.operands)


def _same_type_ignoring_layout(a: AnyShape, b: AnyShape) -> bool:
    if a.is_tuple or b.is_tuple:
        return (a.is_tuple and b.is_tuple and len(a.elements) == len(b.elements)
                and all(map(_same_type_ignoring_layout, a.elements, b.elements)))
    return a.dtype == b.dtype and a.dims == b.dims


def rewrite_limit(module: Module) -> int:
    size = sum(len(c.instructions) for c in module.computations)
    return REWRITES_PER_INSTRUCTION * size + MIN_REWRITE_LIMIT


def rewrite_module(module: Module, table: RuleTable, options: Any = None,
                   max_rewrites: int | None = None) -> collections.Counter:
    """Apply `table` to every computation of `module` until no rule matches.

    Returns how often each rule fired (empty: the module did not change). Raises
    RewriteLimitError after `max_rewrites` rewrites (default: `rewrite_limit(module)`);
    the module is valid at that point, with the rewrites done so far.
    """
    budget = _Budget(module, rewrite_limit(module) if max_rewrites is None else max_rewrites)
    for comp in list(module.computations):
        _Rewriter(module, comp, table, options, budget).run()
    return budget.fired


class RewritePass:
    """A pass made of one rule table: `run` rewrites to a fixed point and says whether
    anything changed; `fired` keeps the per-rule counts of the last run."""
    name = "rewrite"
    table: RuleTable

    def __init__(self, table: RuleTable | None = None, name: str | None = None):
        if table is not None:
            self.table = table
        if name is not None:
            self.name = name
        self.fired: collections.Counter = collections.Counter()

    def run(self, module: Module) -> bool:
        self.fired = rewrite_module(module, self.table, options=self)
        return bool(self.fired)
