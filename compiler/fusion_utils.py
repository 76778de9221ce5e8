"""What the fusion passes share: which ops may fuse, the cost rule, and the rewrite.

The four fusion passes (output, reduction, loop, multi-output) differ only in how they
choose a group of instructions. Everything after the choice lives here:

- `FusionPass`: the pass contract; a pass implements `fuse_computation`, and `run`
  applies it to every computation that runs kernels (`fusible_computations`);

- which opcodes may ever join a fusion (`can_fuse`) and which form elementwise loop
  nests (`is_loop_fusible`);
- the cost rule (`cost_class`, `may_duplicate`, `repeats_work`): fusion never computes
  expensive work twice;
- `FusionGraph`: users and positions of one computation and the acyclicity check;
  `pull_producers` grows a group backwards (producers), `single_output_chain` forwards
  (an epilogue that ends in one value);
- `fuse`: replace a group with one `fusion` instruction calling a new computation
  (params = the group's external operands in the parent's order, body = clones of the
  group, root = the group's output, or a tuple of its outputs with get_tuple_element
  users in the parent). Existing fusions inside a group are inlined, which is how a
  producer is merged into a fusion and how siblings merge into a multi-output fusion.

A fusion instruction's `locs` are the ordered, deduplicated union of the locations of
everything fused into it, so a kernel still names the user lines it came from.
"""
from __future__ import annotations

import heapq
from typing import Callable, Iterable

from . import ops
from .ir import Computation, Instruction, Module
from .rewrite import merged_locs


# ----------------------------------------------------------------------------- what may fuse

# Never inside a fusion: values with identity or effects (parameters, tuples, randomness,
# communication), nested control flow, and ops whose kernels are not loop nests.
NEVER_FUSED = frozenset({
    "parameter", "tuple", "get_tuple_element", "while", "conditional", "call",
    "sort", "scatter", "select_and_scatter", "gather", "dynamic_slice", "dynamic_update_slice",
    "rng_bit_generator", "custom_call", "send", "recv", "all_reduce", "all_gather", "collective_broadcast",
})

# Data movement that a loop nest does with index arithmetic alone.
LOOP_DATA_OPS = frozenset({
    "broadcast_in_dim", "reshape", "transpose", "slice", "reverse", "concatenate", "pad",
    "iota", "constant",
})

# Constants with more elements than this stay operands of a fusion, never copied into it.
SMALL_CONSTANT_ELEMENTS = 16

# Instructions one fusion may hold. Backends emit a fusion's body by walking it from the
# root through operands (recursively, as XLA's elemental emitters do), so an unbounded
# chain of thousands of elementwise ops would exhaust Python's stack; beyond this size a
# second loop costs one extra pass over memory, which is negligible at that length.
MAX_FUSION_INSTRUCTIONS = 128


def fusion_kind(instr: Instruction) -> str | None:
    return instr.attrs["kind"] if instr.opcode == "fusion" else None


def can_fuse(instr: Instruction) -> bool:
    """Whether `instr` may be part of any fusion (the passes narrow this further)."""
    if instr.opcode in NEVER_FUSED or ops.OPS[instr.opcode].side_effects:
        return False
    if instr.opcode == "constant":
        return instr.shape.size <= SMALL_CONSTANT_ELEMENTS
    return True


def is_elementwise(instr: Instruction) -> bool:
    return ops.OPS[instr.opcode].elementwise and not instr.shape.is_tuple


def is_loop_fusible(instr: Instruction) -> bool:
    """Elementwise ops, index-only data movement, small constants, and loop fusions."""
    if instr.opcode == "fusion":
        return fusion_kind(instr) == "loop" and not instr.shape.is_tuple
    return can_fuse(instr) and (is_elementwise(instr) or instr.opcode in LOOP_DATA_OPS)


# ----------------------------------------------------------------------------- the cost rule

FREE, CHEAP, EXPENSIVE = "free", "cheap", "expensive"

TRANSCENDENTAL = frozenset({
    "exp", "log", "log1p", "expm1", "sqrt", "rsqrt", "tanh", "logistic", "sin", "cos", "erf",
    "atan2", "power",
})

# How many kernels may compute the same value instead of reading it from memory once.
# A copy of a FREE op only re-reads what the original read; a CHEAP op costs a few flops
# per element per copy; an EXPENSIVE op is never computed twice.
DUPLICATION_LIMIT = {FREE: None, CHEAP: 4, EXPENSIVE: 1}


def cost_class(instr: Instruction) -> str:
    """FREE: index-only data movement, iota, small constants. CHEAP: elementwise arithmetic
    without transcendental functions. EXPENSIVE: everything else (transcendentals, dot,
    convolution, reduce, ...). A fusion costs as much as the dearest op it holds."""
    if instr.opcode == "fusion":
        inner = [i for i in instr.attrs["calls"].instructions if i.opcode != "parameter"]
        classes = {cost_class(i) for i in inner}
        return next((c for c in (EXPENSIVE, CHEAP) if c in classes), FREE)
    if instr.opcode == "constant":
        return FREE if instr.shape.size <= SMALL_CONSTANT_ELEMENTS else EXPENSIVE
    if instr.opcode in LOOP_DATA_OPS:
        return FREE
    if is_elementwise(instr) and instr.opcode not in TRANSCENDENTAL:
        return CHEAP
    return EXPENSIVE


def may_duplicate(instr: Instruction, copies: int) -> bool:
    """Whether `instr` may be computed by `copies` kernels (its distinct users).

    One copy is no duplication. Beyond that, FREE ops may be copied into any number of
    consumers, CHEAP ops into at most DUPLICATION_LIMIT[CHEAP], EXPENSIVE ops never.
    """
    if copies <= 1:
        return True
    limit = DUPLICATION_LIMIT[cost_class(instr)]
    return limit is None or copies <= limit


def repeats_work(instr: Instruction, users_in_group: Iterable[Instruction],
                 members: set[Instruction], users: dict) -> bool:
    """Whether fusing an EXPENSIVE `instr` would compute each of its elements many times.

    Inside a fused loop nest every value is computed per output element, so a value that
    reaches the output through a broadcast_in_dim that adds elements would be recomputed
    for each copy of it (an exp on rows broadcast over columns). Fusions among the
    users are looked into.
    """
    if cost_class(instr) != EXPENSIVE:
        return False
    for user in users_in_group:
        if user.opcode == "fusion":
            body = user.attrs["calls"]
            params = [p for p, o in zip(body.parameters, user.operands) if o is instr]
            if _reaches_broadcast(params, body.users(), set(body.instructions)):
                return True
        elif _reaches_broadcast([user], users, members):
            return True
    return False


def _reaches_broadcast(starts: list[Instruction], users: dict, members: set[Instruction]) -> bool:
    """Whether a broadcast_in_dim that adds elements is among `starts` or downstream of
    them within `members`; what follows a reduce no longer holds the values."""
    seen: set[Instruction] = set()
    frontier = list(starts)
    while frontier:
        node = frontier.pop()
        if node in seen:
            continue
        seen.add(node)
        if node.opcode == "broadcast_in_dim" and node.shape.size > node.operands[0].shape.size:
            return True
        if node.opcode != "reduce":
            frontier.extend(u for u in users.get(node, ()) if u in members)
    return False


# ----------------------------------------------------------------------------- which computations

# Attributes through which a computation runs as a sequence of kernels (not as a scalar
# body of a reduce/sort/scatter, and not as the body of a fusion).
KERNEL_SEQUENCE_ATTRS = {"while": ("condition", "body"), "conditional": ("branch_computations",),
                         "call": ("to_apply",)}


def fusible_computations(module: Module) -> list[Computation]:
    """The entry and the computations control flow runs, callees first."""
    found: list[Computation] = []
    seen: set[int] = set()

    def visit(comp: Computation):
        if id(comp) in seen:
            return
        seen.add(id(comp))
        for instr in comp.instructions:
            for attr in KERNEL_SEQUENCE_ATTRS.get(instr.opcode, ()):
                value = instr.attrs[attr]
                for callee in value if isinstance(value, tuple) else (value,):
                    visit(callee)
        found.append(comp)

    if module.entry is not None:
        visit(module.entry)
    return found


class FusionPass:
    """A fusion pass: `fuse_computation` on each of `fusible_computations` (callees
    first); changed if it changed any."""
    name: str
    tags = ("fusion",)

    def run(self, module: Module) -> bool:
        changed = False
        for comp in fusible_computations(module):
            changed |= self.fuse_computation(module, comp)
        return changed

    def fuse_computation(self, module: Module, comp: Computation) -> bool:
        """Fuse what this pass fuses in `comp`; whether anything was."""
        raise NotImplementedError


# ----------------------------------------------------------------------------- the graph

class FusionGraph:
    """Users and topological positions of one computation's instructions.

    Fusion decisions read it; `refresh` after every rewrite of the computation.
    """

    def __init__(self, comp: Computation):
        self.comp = comp
        self.refresh()

    def refresh(self) -> None:
        self.users = self.comp.users()
        self.position = {instr: i for i, instr in enumerate(self.comp.instructions)}

    def __contains__(self, instr: Instruction) -> bool:
        return instr in self.position

    def is_dead(self, instr: Instruction) -> bool:
        """Nothing reads it (DCE removes it; fusing it would give a fusion with no output)."""
        return not self.users[instr] and instr is not self.comp.root

    def distinct_users(self, instr: Instruction) -> list[Instruction]:
        return list(dict.fromkeys(self.users[instr]))

    def creates_cycle(self, moved: set[Instruction], copied: set[Instruction] = frozenset()) -> bool:
        """Whether fusing the group would need a value that depends on the fusion itself.

        That is the case when a path leaves the group at a moved member and comes back
        in through instructions outside it. (Outside users of a copied member read the
        original, which stays, so paths start at moved members only.)
        """
        members = moved | copied
        last = max(self.position[m] for m in members)
        frontier = [u for m in moved for u in self.users[m] if u not in members]
        seen: set[Instruction] = set()
        while frontier:
            node = frontier.pop()
            if node in seen or self.position[node] > last:
                continue
            seen.add(node)
            for user in self.users[node]:
                if user in members:
                    return True
                frontier.append(user)
        return False

    def reaches(self, source: Instruction, target: Instruction) -> bool:
        """Whether a path of uses leads from `source` to `target`."""
        limit = self.position[target]
        frontier, seen = [source], set()
        while frontier:
            node = frontier.pop()
            if node is target:
                return True
            if node in seen or self.position[node] > limit:
                continue
            seen.add(node)
            frontier.extend(self.users[node])
        return False


class Group:
    """Instructions chosen for one fusion: `moved` leave the parent computation, `copied`
    are computed inside the fusion while the original stays for its other users."""

    def __init__(self, moved: Iterable[Instruction] = ()):
        self.moved: set[Instruction] = set(moved)
        self.copied: set[Instruction] = set()

    @property
    def members(self) -> set[Instruction]:
        return self.moved | self.copied

    def __contains__(self, instr: Instruction) -> bool:
        return instr in self.moved or instr in self.copied

    def __len__(self) -> int:
        return len(self.moved) + len(self.copied)


def pull_producers(graph: FusionGraph, group: Group, accept: Callable[[Instruction], bool],
                   start: Iterable[Instruction] | None = None) -> None:
    """Grow `group` backwards with every producer `accept` allows and the cost rule permits.

    The search starts at the operands of `start` (default: every member) and continues
    through the operands of each producer that joins.

    Candidates are visited latest first, so all users of a candidate have been decided
    when it is: a producer whose users all moved into the group moves too; one with
    users elsewhere is copied if `may_duplicate` allows; an EXPENSIVE producer whose
    values the group would repeat stays out; so does any producer that would close a cycle.
    """
    heap: list[tuple[int, int]] = []
    by_position: dict[int, Instruction] = {}

    def push_operands(instr: Instruction):
        for operand in instr.operands:
            pos = graph.position[operand]
            if operand not in group and pos not in by_position:
                by_position[pos] = operand
                heapq.heappush(heap, (-pos, pos))

    for member in group.members if start is None else start:
        push_operands(member)
    size = sum(fused_size(m) for m in group.members)
    while heap:
        candidate = by_position[heapq.heappop(heap)[1]]
        if candidate in group or not accept(candidate):
            continue
        if size + fused_size(candidate) > MAX_FUSION_INSTRUCTIONS:
            continue
        if _join(graph, group, candidate):
            size += fused_size(candidate)
            push_operands(candidate)


def fused_size(instr: Instruction) -> int:
    """How many instructions `instr` brings into a fusion (a fusion: its body's)."""
    if instr.opcode != "fusion":
        return 1
    return sum(1 for i in instr.attrs["calls"].instructions if i.opcode != "parameter")


def _join(graph: FusionGraph, group: Group, candidate: Instruction) -> bool:
    users = graph.distinct_users(candidate)
    if candidate is not graph.comp.root and all(u in group.moved for u in users):
        if repeats_work(candidate, users, group.members, graph.users):
            return False
        target = group.moved
    # A copy leaves the original in place (for readers outside, or for the original of a
    # copied reader), so at least two kernels compute the value.
    elif may_duplicate(candidate, max(2, len(users))):
        target = group.copied
    else:
        return False
    target.add(candidate)
    if graph.creates_cycle(group.moved, group.copied):
        target.discard(candidate)
        return False
    return True


def single_output_chain(graph: FusionGraph, start: Instruction,
                        admit: Callable[[Instruction], bool]) -> set[Instruction]:
    """`start` and the longest chain of its users (and theirs) that fuses with it into a
    group with ONE output.

    An end E qualifies when every path from `start` passes through E, so everything in
    between is read only inside the group, and `admit` accepts everything on the way.
    Walking the users in topological order, those ends are the instructions at which
    the walk's frontier narrows to one; the walk stops at the first instruction `admit`
    refuses (no later end could leave it out). The latest end whose group closes no
    cycle wins; `{start}` if there is none.
    """
    walked: list[Instruction] = []
    ends: list[int] = []                  # lengths of `walked` at each qualifying end
    heap: list[tuple[int, int]] = []
    queued: dict[int, Instruction] = {}

    def enqueue_users(instr: Instruction):
        for user in graph.distinct_users(instr):
            pos = graph.position[user]
            if pos not in queued:
                queued[pos] = user
                heapq.heappush(heap, (pos, pos))

    enqueue_users(start)
    while heap:
        node = queued[heapq.heappop(heap)[1]]
        if not admit(node):
            break
        walked.append(node)
        if not heap and not graph.is_dead(node):
            ends.append(len(walked))
        if node is graph.comp.root:
            break
        enqueue_users(node)
    for length in reversed(ends):
        chain = {start, *walked[:length]}
        if not graph.creates_cycle(chain):
            return chain
    return {start}


# ----------------------------------------------------------------------------- the rewrite

def fuse(module: Module, comp: Computation, group: Group, kind: str) -> Instruction:
    """Replace `group` in `comp` with one fusion instruction of `kind`; return it.

    Moved members with users outside the group (or the computation's root) are the
    fusion's outputs; several outputs make a tuple root, and each of their outside users
    reads it through a new get_tuple_element. Fusions among the members are inlined
    (with their get_tuple_element users); their old computations leave the module.
    """
    moved = _with_tuple_readers(comp, group.moved)
    members = moved | group.copied
    position = {instr: i for i, instr in enumerate(comp.instructions)}
    order = sorted(members, key=position.get)
    users = comp.users()
    outputs = [m for m in order if m in moved and (m is comp.root or any(u not in moved for u in users[m]))]
    if not outputs:
        raise ValueError(f"fusing {[m.name for m in order]} in {comp.name}: the group has no output")

    body, external = _build_body(module, order, moved, outputs, position)
    attrs = ops.normalize_attrs("fusion", {"kind": kind, "calls": body})
    shape = ops.infer_shape("fusion", [o.shape for o in external], attrs)
    fusion = Instruction(module.unique_name("fusion"), "fusion", external, shape, attrs,
                         merged_locs(order))
    module.add_computation(body)

    new = [fusion] + _rewire_outputs(module, comp, fusion, outputs, moved, users)
    comp.instructions = [i for i in comp.instructions if i not in moved]
    _drop_unused_copies(comp, group.copied)
    _insert_sorted(comp, new, position, after=max(position[m] for m in moved))
    _drop_inlined_computations(module, [m for m in order if m.opcode == "fusion" and m in moved])
    return fusion


def _with_tuple_readers(comp: Computation, moved: set[Instruction]) -> set[Instruction]:
    """Moved tuple-valued fusions bring their get_tuple_element users along."""
    result = set(moved)
    for instr in comp.instructions:
        if instr.opcode == "get_tuple_element" and instr.operands[0] in moved \
                and instr.operands[0].opcode == "fusion":
            result.add(instr)
    return result


def _build_body(module: Module, order: list[Instruction], moved: set[Instruction],
                outputs: list[Instruction], position: dict) -> tuple[Computation, list[Instruction]]:
    members = set(order)
    # The fusion's operands, in the order the parent computation defines them.
    external = sorted({o for m in order for o in m.operands if o not in members}, key=position.get)
    body = Computation(module.unique_name("fused_computation"))
    value: dict[Instruction, Instruction] = {}
    for index, operand in enumerate(external):
        value[operand] = body.add(Instruction(module.unique_name(f"param_{index}"), "parameter", [],
                                              operand.shape, {"index": index}))
    names = {p.name for p in body.parameters}
    for member in order:
        value[member] = _clone(module, body, member, value, names, keep_name=member in moved)
    if len(outputs) == 1:
        body.root = value[outputs[0]]
    else:
        results = [value[o] for o in outputs]
        body.root = body.add(Instruction(module.unique_name("tuple"), "tuple", results,
                                         ops.infer_shape("tuple", [r.shape for r in results], {})))
    _remove_dead(body)
    return body, external


def _clone(module, body, member, value, names, keep_name) -> Instruction:
    operands = [value[o] for o in member.operands]
    if member.opcode == "fusion":
        return _inline(module, body, member.attrs["calls"], operands, names, keep_name)
    if member.opcode == "get_tuple_element" and operands[0].opcode == "tuple":
        return operands[0].operands[member.attrs["index"]]   # a read of an inlined tuple root
    name = member.name if keep_name and member.name not in names else module.unique_name(member.name)
    names.add(name)
    return body.add(Instruction(name, member.opcode, operands, member.shape, member.attrs, member.locs))


def _inline(module, body, callee: Computation, args, names, keep_names) -> Instruction:
    value = {p: a for p, a in zip(callee.parameters, args)}
    for instr in callee.instructions:
        if instr.opcode != "parameter":
            value[instr] = _clone(module, body, instr, value, names, keep_names)
    return value[callee.root]


def _remove_dead(body: Computation) -> None:
    """Drop what nothing inside the body reads (e.g. the tuple root of an inlined fusion)."""
    live = {body.root}
    for instr in reversed(body.instructions):
        if instr in live:
            live.update(instr.operands)
    body.instructions = [i for i in body.instructions if i in live or i.opcode == "parameter"]


def _rewire_outputs(module, comp, fusion, outputs, moved, users) -> list[Instruction]:
    if len(outputs) == 1:
        _replace_outside_uses(comp, outputs[0], fusion, moved, users)
        return []
    readers = []
    for index, output in enumerate(outputs):
        gte = Instruction(module.unique_name("get_tuple_element"), "get_tuple_element", [fusion],
                          output.shape, {"index": index}, output.locs)
        _replace_outside_uses(comp, output, gte, moved, users)
        readers.append(gte)
    return readers


def _replace_outside_uses(comp, old, new, moved, users) -> None:
    for user in users[old]:
        if user not in moved:
            user.operands = [new if o is old else o for o in user.operands]
    if comp.root is old:
        comp.root = new


def _drop_unused_copies(comp: Computation, copied: set[Instruction]) -> None:
    """Originals of copied members that nothing reads any more leave the computation."""
    while True:
        used = {o for i in comp.instructions for o in i.operands} | {comp.root}
        dead = [c for c in copied if c in comp.instructions and c not in used]
        if not dead:
            return
        comp.instructions = [i for i in comp.instructions if i not in dead]


def _insert_sorted(comp: Computation, new: list[Instruction], position: dict, after: int) -> None:
    """Add `new` where the last moved member was; if a reader of the fusion came earlier,
    restore a topological order that stays as close to the old one as it can."""
    readers = {u for n in new for u in comp.users().get(n, ()) if u not in new}
    if all(position[r] > after for r in readers):
        at = next((k for k, i in enumerate(comp.instructions) if position[i] > after), len(comp.instructions))
        comp.instructions[at:at] = new
        return
    priority = {instr: (position[instr], 0) for instr in comp.instructions}
    for k, instr in enumerate(new):
        priority[instr] = (after, 1 + k)
    comp.instructions = topological_order(comp.instructions + new, priority)


def topological_order(instrs: list[Instruction], priority: dict) -> list[Instruction]:
    """A topological order of `instrs`, ties broken by `priority` (lowest first)."""
    present = set(instrs)
    waiting = {i: sum(1 for o in i.operands if o in present) for i in instrs}
    readers: dict[Instruction, list[Instruction]] = {i: [] for i in instrs}
    for instr in instrs:
        for operand in instr.operands:
            if operand in present:
                readers[operand].append(instr)
    counter = 0
    heap = []
    for instr in instrs:
        if waiting[instr] == 0:
            heap.append((priority[instr], counter, instr))
            counter += 1
    heapq.heapify(heap)
    order = []
    while heap:
        _, _, instr = heapq.heappop(heap)
        order.append(instr)
        for reader in readers[instr]:
            waiting[reader] -= 1
            if waiting[reader] == 0:
                heapq.heappush(heap, (priority[reader], counter, reader))
                counter += 1
    if len(order) != len(instrs):
        raise ValueError("fusion created a cycle")   # creates_cycle should have prevented it
    return order


def _drop_inlined_computations(module: Module, inlined: list[Instruction]) -> None:
    if not inlined:
        return
    called = {id(c) for comp in module.computations for i in comp.instructions
              for c in i.called_computations()}
    for fusion in inlined:
        callee = fusion.attrs["calls"]
        if id(callee) not in called and callee in module.computations:
            module.computations.remove(callee)
