"""Graph views of computations: networkx graphs, topological order, critical path, DOT, SVG.

    dependency_graph(comp)              nx.DiGraph; nodes are instruction names with
                                        attributes instr, opcode, shape, bytes, locs;
                                        an edge u -> v means v reads u
    topological_order(comp)             instructions, operands first (ties: program order)
    critical_path(comp, weight=...)     the heaviest operand chain, by a per-instruction weight
    to_dot(module) / to_svg(module)     a drawing: the entry highlighted, every fusion's
                                        computation drawn inside a cluster around the fusion,
                                        other called computations (reducers, loop bodies,
                                        branches) as clusters of their own; each node's
                                        tooltip is the user's source lines

The DOT export never fails on a half-built module (the pass manager dumps the module a
broken pass left behind before the verifier reports it), so it reads instructions
defensively; the analyses expect a verified module.
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from typing import Callable

import networkx as nx

from . import ops
from .ir import Computation, Instruction, Module

# ----------------------------------------------------------------------------- networkx views


def result_bytes(instr: Instruction) -> int:
    """Bytes of the instruction's result (0 for tokens and empty tuples)."""
    return instr.shape.nbytes


def unit_weight(instr: Instruction) -> int:
    return 1


def dependency_graph(comp: Computation) -> nx.DiGraph:
    """Nodes are instructions (by name); an edge u -> v means v reads u.

    Node attributes: `instr`, `opcode`, `shape`, `bytes` (result size), `locs` (source
    locations) and `position` (index in the computation). Edge attribute `operands`: the
    operand positions at which v reads u.
    """
    g = nx.DiGraph(name=comp.name)
    for position, instr in enumerate(comp.instructions):
        g.add_node(instr.name, instr=instr, opcode=instr.opcode, shape=instr.shape,
                   bytes=result_bytes(instr), locs=instr.locs, position=position)
    for instr in comp.instructions:
        for index, operand in enumerate(instr.operands):
            if g.has_edge(operand.name, instr.name):
                g.edges[operand.name, instr.name]["operands"] += (index,)
            else:
                g.add_edge(operand.name, instr.name, operands=(index,))
    return g


def topological_order(comp: Computation) -> list[Instruction]:
    """Every instruction after its operands; among ready ones, the computation's order first."""
    g = dependency_graph(comp)
    try:
        names = list(nx.lexicographical_topological_sort(g, key=lambda n: g.nodes[n]["position"]))
    except nx.NetworkXUnfeasible:
        cycle = " -> ".join(u for u, _ in nx.find_cycle(g))
        raise ValueError(f"computation {comp.name} has a dependency cycle: {cycle}") from None
    return [g.nodes[n]["instr"] for n in names]


@dataclass(frozen=True)
class CriticalPath:
    """The heaviest chain of instructions (each an operand of the next) and its total weight."""
    instructions: tuple[Instruction, ...]
    weight: float

    @property
    def names(self) -> list[str]:
        return [i.name for i in self.instructions]


def critical_path(comp: Computation, weight: Callable[[Instruction], float] = result_bytes) -> CriticalPath:
    """The longest path through the computation, a path's length being the sum of its
    instructions' `weight` (default: result bytes; `unit_weight` counts instructions; the
    cost model plugs in its time estimate). Ties go to the earlier operand."""
    best: dict[Instruction, tuple[float, Instruction | None]] = {}
    for instr in topological_order(comp):
        heaviest = None
        for operand in instr.operands:
            if heaviest is None or best[operand][0] > best[heaviest][0]:
                heaviest = operand
        before = best[heaviest][0] if heaviest is not None else 0
        best[instr] = (before + weight(instr), heaviest)
    if not best:
        return CriticalPath((), 0)
    end = max(best, key=lambda i: best[i][0])   # max keeps the first of equals
    path = []
    node: Instruction | None = end
    while node is not None:
        path.append(node)
        node = best[node][1]
    return CriticalPath(tuple(reversed(path)), best[end][0])


# ----------------------------------------------------------------------------- DOT

# Fill colour by op group (ops.OPS[opcode].group), then a few opcodes of their own.
GROUP_FILL = {"unary": "#ffffff", "binary": "#ffffff", "ternary": "#ffffff", "data": "#eef6ee",
              "compute": "#fde2d8", "control": "#f0f0f0"}
OPCODE_FILL = {"parameter": "#d9f0d9", "constant": "#e8e8e8", "fusion": "#dbe7fb"}
# Cluster attributes (DOT statements, hence the semicolons).
ENTRY_STYLE = 'style="bold,filled"; color="#c07000"; fillcolor="#fff8e6"; penwidth=2'
FUSION_STYLE = 'style="rounded,filled"; color="#3060b0"; fillcolor="#eef3fd"'
CALLEE_STYLE = 'style="dashed"; color="#808080"'
# Fusions inside fusions are drawn nested up to this depth (a guard for broken modules
# whose fusion calls itself); deeper ones are drawn as plain nodes.
MAX_FUSION_NESTING = 16


def _quote(text: str) -> str:
    """A DOT string: quotes and backslashes escaped, newlines as DOT's centred line break."""
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _fill(opcode: str) -> str:
    if opcode in OPCODE_FILL:
        return OPCODE_FILL[opcode]
    opdef = ops.OPS.get(opcode)
    return GROUP_FILL.get(opdef.group, "#ffffff") if opdef else "#ffcccc"   # unknown op: red


def _fusion_body(instr: Instruction) -> Computation | None:
    body = instr.attrs.get("calls") if instr.opcode == "fusion" else None
    return body if isinstance(body, Computation) else None


class _DotWriter:
    """Writes one module as DOT lines. Node ids are generated (n1, n2, ...) per drawn
    instance, since a computation drawn inside two fusions appears twice."""

    def __init__(self, module: Module):
        self.module = module
        self.lines: list[str] = []
        self.ids: dict[tuple, str] = {}
        self.clusters = 0
        self.cluster_of: dict[int, str] = {}   # id(computation) -> its top-level cluster
        self.roots: dict[int, str] = {}        # id(computation) -> node id of its drawn root
        self.calls: list[tuple[str, Computation]] = []   # (caller node id, callee) for call edges

    def node_id(self, scope: tuple, instr: Instruction) -> str:
        key = scope + (id(instr),)
        if key not in self.ids:
            self.ids[key] = f"n{len(self.ids) + 1}"
        return self.ids[key]

    def new_cluster(self) -> str:
        self.clusters += 1
        return f"cluster_{self.clusters}"

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("  " * depth + line)

    # -- pieces

    def node(self, depth: int, scope: tuple, instr: Instruction, is_root: bool) -> None:
        label = f"{instr.name}\n{instr.opcode} {instr.shape}"
        callees = [c for c in instr.called_computations() if c is not _fusion_body(instr)]
        if callees:
            label += "\n→ " + ", ".join(c.name for c in callees)
            self.calls += [(self.node_id(scope, instr), c) for c in callees]
        if instr.opcode == "fusion":
            label += f"\nkind={instr.attrs.get('kind')}"
        attrs = [f"label={_quote(label)}", f"tooltip={_quote(instr.loc_text)}",
                 f"fillcolor={_quote(_fill(instr.opcode))}"] + (["penwidth=2.5"] if is_root else [])
        self.emit(depth, f"{self.node_id(scope, instr)} [{', '.join(attrs)}];")

    def computation_body(self, depth: int, scope: tuple, comp: Computation) -> None:
        """The instructions of `comp` (fusions as nested clusters) and their edges."""
        clustered = set()
        for instr in comp.instructions:
            body = _fusion_body(instr)
            if body is not None and len(scope) < MAX_FUSION_NESTING:
                self.fusion_cluster(depth, scope, comp, instr, body)
                clustered.add(id(instr))
            else:
                self.node(depth, scope, instr, instr is comp.root)
        for instr in comp.instructions:
            if id(instr) in clustered:
                continue   # its operands flow into the fused parameters instead
            for operand in instr.operands:
                self.emit(depth, f"{self.node_id(scope, operand)} -> {self.node_id(scope, instr)};")

    def fusion_cluster(self, depth: int, scope: tuple, comp: Computation, fusion: Instruction,
                       body: Computation) -> None:
        """The fusion node inside a box holding its computation: operands flow into the
        fused parameters, the fused root flows into the fusion node."""
        inner = scope + (id(fusion),)
        title = f"fusion {fusion.name} ({fusion.attrs.get('kind')}): {body.name}"
        self.emit(depth, f"subgraph {self.new_cluster()} {{")
        self.emit(depth + 1, f"label={_quote(title)};")
        self.emit(depth + 1, f"tooltip={_quote(fusion.loc_text)}; {FUSION_STYLE};")
        self.computation_body(depth + 1, inner, body)
        self.node(depth + 1, scope, fusion, fusion is comp.root)
        if body.root is not None:
            self.emit(depth + 1, f"{self.node_id(inner, body.root)} -> {self.node_id(scope, fusion)} "
                                 f"[style=bold];")
        self.emit(depth, "}")
        for operand, param in zip(fusion.operands, body.parameters):
            self.emit(depth, f"{self.node_id(scope, operand)} -> {self.node_id(inner, param)} "
                             f"[style=dashed];")

    def computation_cluster(self, comp: Computation, is_entry: bool) -> None:
        cluster = self.new_cluster()
        self.cluster_of[id(comp)] = cluster
        scope = (id(comp),)
        self.emit(1, f"subgraph {cluster} {{")
        self.emit(2, f"label={_quote(('ENTRY ' if is_entry else '') + comp.name)}; "
                     f"{ENTRY_STYLE if is_entry else CALLEE_STYLE};")
        self.computation_body(2, scope, comp)
        self.emit(1, "}")
        if comp.root is not None:
            self.roots[id(comp)] = self.node_id(scope, comp.root)

    def call_edges(self) -> None:
        """A dotted edge from each calling instruction to the cluster of what it calls."""
        for caller, callee in self.calls:
            if id(callee) in self.roots:
                self.emit(1, f"{caller} -> {self.roots[id(callee)]} [style=dotted, arrowhead=empty, "
                             f"constraint=false, lhead={self.cluster_of[id(callee)]}];")

    # -- the whole module

    def write(self) -> str:
        self.emit(0, f"digraph {_quote(self.module.name)} {{")
        self.emit(1, f"compound=true; labelloc=t; label={_quote('HloModule ' + self.module.name)};")
        self.emit(1, 'node [shape=box, style="rounded,filled", fontname=monospace, fontsize=10];')
        drawn = _computations_to_draw(self.module)
        for comp in drawn:
            self.computation_cluster(comp, comp is self.module.entry)
        self.call_edges()
        self.emit(0, "}")
        return "\n".join(self.lines) + "\n"


def _computations_to_draw(module: Module) -> list[Computation]:
    """The entry, then every reachable computation called other than as a fusion body
    (fusion bodies are drawn inside their fusions). Without an entry: all of them."""
    if module.entry is None:
        return list(module.computations)
    reachable = module.reachable_computations()
    called_plainly = {id(callee) for comp in reachable for instr in comp.instructions
                      for callee in instr.called_computations() if callee is not _fusion_body(instr)}
    others = [c for c in reversed(reachable) if c is not module.entry and id(c) in called_plainly]
    return [module.entry] + others


def to_dot(module: Module) -> str:
    """The module as a DOT digraph (see the module docstring for what is drawn how)."""
    return _DotWriter(module).write()


def to_svg(module: Module, timeout: float = 60.0) -> str:
    """The module drawn as SVG by graphviz's `dot` (which must be installed)."""
    dot = shutil.which("dot")
    if dot is None:
        raise RuntimeError("cannot draw SVG: graphviz is not installed (no `dot` program on PATH). "
                           "Install it (Debian/Ubuntu: `apt-get install graphviz`, macOS: "
                           "`brew install graphviz`), or take the DOT text from "
                           "tessel.compiler.graph.to_dot(module) and render it elsewhere.")
    result = subprocess.run([dot, "-Tsvg"], input=to_dot(module), capture_output=True, text=True,
                            timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"graphviz `dot -Tsvg` failed on module {module.name} "
                           f"(exit {result.returncode}): {result.stderr.strip()}")
    return result.stdout
