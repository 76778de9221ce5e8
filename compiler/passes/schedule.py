"""Scheduling: order every computation's instructions to lower its peak memory.

For each computation (the entry and every nested one) several topological orders of
the same dependency graph are planned with buffer assignment (`plan_computation`:
aliasing, in-place writes and arena packing included) and the one with the lowest
planned peak is kept:

    trace    the order the computation has now
    forward  a greedy list scheduler from the parameters down: of the instructions whose
             operands are all computed, run the one that adds the fewest bytes -- the
             bytes it allocates minus the bytes of buffers it reads for the last time
    reverse  the same greedy choice made from the root up: of the instructions whose
             users are all placed, place the one that ends the most bytes -- its result
             minus the operands it makes live. Working backwards, each producer lands
             right before its first user, so nothing is computed long before it is needed
    dfs      a depth-first post-order from the root: each operand's subgraph is computed
             right before its user, in operand order

Ties between the greedy candidates go to the earliest in the current order, and ties
between orders go to the current one: the pass never raises the planned peak and
leaves an order alone when it cannot improve it. Parameters come first in the orders
it builds. Arguments, constants and outputs are held for the whole call whatever the
order, so the greedy schedulers count only the other buffers.

Dependencies are operand edges plus a chain through the side-effecting instructions
(`ops.OPS[op].side_effects`: send, recv, all_reduce, custom_call) in their current
order, so those keep their relative order.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass

import networkx as nx

from .. import ops
from ..buffer_assignment import Values, analyze_values, plan_computation
from ..graph import dependency_graph
from ..ir import Computation, Instruction, Module


def scheduling_graph(comp: Computation) -> nx.DiGraph:
    """Operand edges, plus side-effecting instructions chained in their current order."""
    graph = dependency_graph(comp)
    effects = [i.name for i in comp.instructions if ops.OPS[i.opcode].side_effects]
    graph.add_edges_from(zip(effects, effects[1:]))
    return graph


def _order_dependent_bytes(values: Values, buffers) -> int:
    """Bytes of the buffers whose lifetime depends on the order (not arguments, constants, outputs)."""
    return sum(b.size for b in buffers if not values.pinned(b))


class _ReadyHeap:
    """Ready instructions by priority. Priorities only improve while an instruction waits;
    each improvement pushes a fresh entry and `pop` skips the outdated ones."""

    def __init__(self, priority):
        self.priority = priority
        self.heap: list = []
        self.done: set[Instruction] = set()

    def push(self, instr: Instruction, tiebreak: int) -> None:
        heapq.heappush(self.heap, (self.priority(instr), tiebreak, instr))

    def pop(self) -> Instruction | None:
        while self.heap:
            priority, _, instr = heapq.heappop(self.heap)
            if instr not in self.done and priority == self.priority(instr):
                self.done.add(instr)
                return instr
        return None


# ----------------------------------------------------------------------------- forward list

def forward_schedule(comp: Computation, graph: nx.DiGraph, values: Values) -> list[Instruction]:
    position = {instr: i for i, instr in enumerate(comp.instructions)}
    by_name = {instr.name: instr for instr in comp.instructions}
    waiting = {name: graph.in_degree(name) for name in graph}
    unread = {b: len(readers) for b, readers in values.readers.items()}

    def priority(instr):
        allocated = _order_dependent_bytes(values, values.defined[instr])
        last_reads = [b for b in values.reads[instr] if unread[b] == 1]
        never_read = [b for b in values.defined[instr] if unread[b] == 0]
        return allocated - _order_dependent_bytes(values, last_reads + never_read), allocated

    ready = _ReadyHeap(priority)
    order: list[Instruction] = []

    def run(instr):
        order.append(instr)
        ready.done.add(instr)
        for b in values.reads[instr]:
            unread[b] -= 1
            if unread[b] == 1:           # its last reader now frees it: a better priority
                for reader in values.readers[b]:
                    if reader not in ready.done and waiting[reader.name] == 0:
                        ready.push(reader, position[reader])
        for user in graph.successors(instr.name):
            waiting[user] -= 1
            if waiting[user] == 0:
                ready.push(by_name[user], position[by_name[user]])

    for param in comp.parameters:
        run(param)
    for instr in comp.instructions:
        if waiting[instr.name] == 0 and instr not in ready.done:
            ready.push(instr, position[instr])
    while (instr := ready.pop()) is not None:
        run(instr)
    return order


# ----------------------------------------------------------------------------- reverse list

def reverse_schedule(comp: Computation, graph: nx.DiGraph, values: Values) -> list[Instruction]:
    position = {instr: i for i, instr in enumerate(comp.instructions)}
    by_name = {instr.name: instr for instr in comp.instructions}
    waiting = {name: graph.out_degree(name) for name in graph}
    live: set = set()                    # buffers read by an instruction already placed

    def priority(instr):
        starts = _order_dependent_bytes(values, [b for b in values.reads[instr] if b not in live])
        ends = _order_dependent_bytes(values, values.defined[instr])
        return starts - ends, starts

    ready = _ReadyHeap(priority)
    placed: list[Instruction] = []

    def place(instr):
        placed.append(instr)
        for b in values.reads[instr]:
            if b not in live:
                live.add(b)              # other readers of b no longer start it
                for reader in values.readers[b]:
                    if reader not in ready.done and waiting[reader.name] == 0:
                        ready.push(reader, -position[reader])
        for operand in graph.predecessors(instr.name):
            waiting[operand] -= 1
            if waiting[operand] == 0 and by_name[operand].opcode != "parameter":
                ready.push(by_name[operand], -position[by_name[operand]])

    for instr in comp.instructions:
        if waiting[instr.name] == 0 and instr.opcode != "parameter":
            ready.push(instr, -position[instr])
    while (instr := ready.pop()) is not None:
        place(instr)
    return list(comp.parameters) + placed[::-1]


# ----------------------------------------------------------------------------- depth-first

def dfs_schedule(comp: Computation, graph: nx.DiGraph) -> list[Instruction]:
    """Post-order from the root, then from every instruction the root does not reach."""
    by_name = {instr.name: instr for instr in comp.instructions}
    order: list[Instruction] = list(comp.parameters)
    seen = {p.name for p in comp.parameters}
    for start in [comp.root] + comp.instructions:
        if start.name in seen:
            continue
        seen.add(start.name)
        stack = [(start.name, iter(graph.predecessors(start.name)))]
        while stack:
            name, preds = stack[-1]
            nxt = next((p for p in preds if p not in seen), None)
            if nxt is None:
                stack.pop()
                order.append(by_name[name])
            else:
                seen.add(nxt)
                stack.append((nxt, iter(graph.predecessors(nxt))))
    return order


# ----------------------------------------------------------------------------- the pass

@dataclass
class ScheduleChoice:
    """The candidate orders of one computation, their planned peaks, and the winner."""
    orders: dict[str, list[Instruction]]
    peaks: dict[str, int]
    chosen: str

    @property
    def order(self) -> list[Instruction]:
        return self.orders[self.chosen]


def choose_schedule(comp: Computation, donated_parameters=()) -> ScheduleChoice:
    """Build the candidate orders of `comp` and pick the one with the lowest planned peak."""
    values = analyze_values(comp)
    graph = scheduling_graph(comp)
    orders = {"trace": list(comp.instructions),
              "forward": forward_schedule(comp, graph, values),
              "reverse": reverse_schedule(comp, graph, values),
              "dfs": dfs_schedule(comp, graph)}
    for name, order in orders.items():
        if len(order) != len(comp.instructions):
            raise AssertionError(f"the {name} schedule of {comp.name} lost instructions")
    peaks = {name: plan_computation(comp, order, donated_parameters=donated_parameters,
                                    values=values).peak_bytes
             for name, order in orders.items()}
    chosen = min(orders, key=lambda name: peaks[name])   # dict order: trace wins ties
    return ScheduleChoice(orders, peaks, chosen)


class Scheduler:
    """Reorders each computation's instructions into the order with the lowest planned peak.

    `donated_parameters` (entry parameter numbers, as for buffer assignment) lets the
    plans of the entry write into those arguments, so the order that favours it wins.
    """
    name = "schedule"

    def __init__(self, donated_parameters=()):
        self.donated_parameters = frozenset(donated_parameters)

    def run(self, module: Module) -> bool:
        changed = False
        for comp in module.computations:
            if comp.root is None:
                continue
            donated = self.donated_parameters if comp is module.entry else ()
            order = choose_schedule(comp, donated).order
            if any(a is not b for a, b in zip(order, comp.instructions)):
                comp.instructions = order
                changed = True
        return changed
