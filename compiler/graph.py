"""Graph views of computations: networkx dependency graphs and DOT export.

Nested computations (reduction bodies, loop bodies, fusions) are drawn as clusters;
each node's tooltip carries the user's source lines.
"""
from __future__ import annotations

import networkx as nx

from .ir import Computation, Instruction, Module


def dependency_graph(comp: Computation) -> nx.DiGraph:
    """Nodes are instructions (by name); an edge u -> v means v reads u."""
    g = nx.DiGraph()
    for instr in comp.instructions:
        g.add_node(instr.name, instr=instr)
        for operand in instr.operands:
            g.add_edge(operand.name, instr.name)
    return g


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _node_id(comp: Computation, instr: Instruction) -> str:
    return _quote(f"{comp.name}/{instr.name}")


def _node_line(comp: Computation, instr: Instruction) -> str:
    label = f"{instr.name}\\n{instr.opcode} {instr.shape}"
    callees = instr.called_computations()
    if callees:
        label += "\\n→ " + ", ".join(c.name for c in callees)
    style = ', style="bold"' if instr is comp.root else ""
    return (f"    {_node_id(comp, instr)} [label={_quote(label)}, "
            f"tooltip={_quote(instr.loc_text)}{style}];")


def to_dot(module: Module) -> str:
    """The module as a DOT digraph, one cluster per computation."""
    lines = [f"digraph {_quote(module.name)} {{", "  node [shape=box, fontname=monospace];"]
    for i, comp in enumerate(module.reachable_computations() or module.computations):
        entry = " (ENTRY)" if comp is module.entry else ""
        lines.append(f"  subgraph cluster_{i} {{")
        lines.append(f"    label={_quote(comp.name + entry)};")
        for instr in comp.instructions:
            lines.append(_node_line(comp, instr))
        for instr in comp.instructions:
            for operand in instr.operands:
                lines.append(f"    {_node_id(comp, operand)} -> {_node_id(comp, instr)};")
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"
