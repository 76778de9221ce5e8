"""Graph views: networkx graphs, topological order, critical path, DOT and SVG export."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tessel.compiler import dtypes, graph
from tessel.compiler.ir import Builder, Instruction, Module, Shape, SourceLoc
from tessel.compiler.parser import parse_module

f32 = dtypes.f32

FUSED = """
HloModule fused_mlp

add {
  a = f32[] parameter(0)
  b = f32[] parameter(1)
  ROOT s = f32[] add(a, b)
}

fused_epilogue {
  p0 = f32[4,5] parameter(0)
  p1 = f32[5] parameter(1)
  bb = f32[4,5] broadcast_in_dim(p1), broadcast_dimensions={1}     # model.py:7
  s = f32[4,5] add(p0, bb)                                          # model.py:7
  ROOT r = f32[4,5] tanh(s)                                         # model.py:8
}

fused_reduce {
  q0 = f32[4,5] parameter(0)
  z = f32[] constant(0)
  e = f32[4,5] exp(q0)                                              # model.py:9
  ROOT r = f32[4] reduce(e, z), dimensions={1}, to_apply=add        # model.py:9
}

ENTRY main {
  x = f32[4,8] parameter(0)                                         # model.py:3
  w = f32[8,5] parameter(1)                                         # model.py:4
  b = f32[5] parameter(2)                                           # model.py:5
  d = f32[4,5] dot_general(x, w), lhs_contracting_dims={1}, rhs_contracting_dims={0}   # model.py:6
  f = f32[4,5] fusion(d, b), kind=output, calls=fused_epilogue      # model.py:7, model.py:8
  g = f32[4] fusion(f), kind=input, calls=fused_reduce              # model.py:9
  ROOT t = (f32[4,5], f32[4]) tuple(f, g)
}
"""

def diamond_module() -> Module:
    """a feeds b (1 KiB) and c (16 bytes); d reads both sides: the heavy side is a-b-bs-bf-d."""
    m = Module("diamond")
    b = Builder(m, "main")
    a = b.parameter(Shape(f32, (4,)), "a")
    big = b.emit("broadcast_in_dim", [a], {"broadcast_dimensions": (1,)}, shape=Shape(f32, (64, 4)), name="b")
    small = b.emit("negate", [a], name="c")
    row = b.emit("slice", [big], {"start_indices": (0, 0), "limit_indices": (1, 4)}, name="bs")
    flat = b.emit("reshape", [row], shape=Shape(f32, (4,)), name="bf")
    b.build(b.emit("add", [flat, small], name="d"), entry=True)
    return m


def between(text: str, start: str) -> str:
    """The DOT block that opens on the line containing `start` (up to its closing brace)."""
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if start in line)
    depth, block = 0, []
    for line in lines[first - 1:]:
        block.append(line)
        depth += line.count("{") - line.count("}")
        if depth == 0 and len(block) > 1:
            break
    return "\n".join(block)


def node_ids_labelled(dot_text: str, name: str) -> list[str]:
    return re.findall(rf'(n\d+) \[label="{re.escape(name)}\\n', dot_text)


def assert_valid_dot(text: str) -> None:
    assert text.startswith("digraph ")
    assert text.count("{") == text.count("}")
    if shutil.which("dot"):
        result = subprocess.run(["dot", "-Tsvg"], input=text, capture_output=True, text=True)
        assert result.returncode == 0 and not result.stderr, result.stderr


# ----------------------------------------------------------------------------- networkx views

def test_dependency_graph_carries_opcode_shape_bytes_and_locations():
    m = parse_module(FUSED)
    g = graph.dependency_graph(m.entry)
    assert set(g.nodes) == {"x", "w", "b", "d", "f", "g", "t"}
    d = g.nodes["d"]
    assert d["opcode"] == "dot_general" and str(d["shape"]) == "f32[4,5]" and d["bytes"] == 80
    assert d["locs"] == (SourceLoc("model.py", 6),) and d["instr"] is m.entry.instructions[3]
    assert set(g.predecessors("d")) == {"x", "w"} and set(g.successors("f")) == {"g", "t"}
    assert g.nodes["t"]["bytes"] == 80 + 16   # a tuple's bytes are its elements'


def test_an_operand_read_twice_is_one_edge_listing_both_positions():
    m = parse_module("""
HloModule twice
ENTRY main {
  x = f32[3] parameter(0)
  ROOT y = f32[3] multiply(x, x)
}
""")
    g = graph.dependency_graph(m.entry)
    assert g.edges["x", "y"]["operands"] == (0, 1)


def test_topological_order_puts_operands_first_and_keeps_program_order_otherwise():
    m = parse_module(FUSED)
    assert [i.name for i in graph.topological_order(m.entry)] == ["x", "w", "b", "d", "f", "g", "t"]
    comp = m.entry   # scramble the list: operands must still come first
    comp.instructions = [comp.instructions[i] for i in (6, 5, 4, 3, 2, 1, 0)]
    order = [i.name for i in graph.topological_order(comp)]
    assert order.index("d") < order.index("f") < order.index("g") < order.index("t")
    assert order[:3] == ["b", "w", "x"]     # ready ones in (scrambled) program order


@pytest.mark.no_round_trip  # deliberately cyclic: no text form
def test_topological_order_names_a_cycle():
    m = Module("cyclic")
    b = Builder(m, "main")
    x = b.parameter(Shape(f32, (2,)), "x")
    u = b.emit("negate", [x], name="u")
    v = b.emit("negate", [u], name="v")
    u.operands = [v]
    b.build(v, entry=True)
    with pytest.raises(ValueError, match="computation main has a dependency cycle: (u -> v|v -> u)"):
        graph.topological_order(m.entry)


def test_critical_path_of_a_diamond_takes_the_heavy_side():
    m = diamond_module()
    path = graph.critical_path(m.entry)             # by result bytes
    assert path.names == ["a", "b", "bs", "bf", "d"]
    assert path.weight == 16 + 1024 + 16 + 16 + 16
    # by a weight function that makes the negate the expensive op
    costly_negate = graph.critical_path(m.entry, weight=lambda i: 1000 if i.opcode == "negate" else 1)
    assert costly_negate.names == ["a", "c", "d"] and costly_negate.weight == 1002
    counted = graph.critical_path(m.entry, weight=graph.unit_weight)
    assert counted.names == ["a", "b", "bs", "bf", "d"] and counted.weight == 5


def test_critical_path_ties_go_to_the_earlier_operand_and_empty_is_empty():
    m = parse_module("""
HloModule tie
ENTRY main {
  x = f32[3] parameter(0)
  y = f32[3] parameter(1)
  ROOT s = f32[3] add(x, y)
}
""")
    assert graph.critical_path(m.entry).names == ["x", "s"]
    empty = Module("empty")
    b = Builder(empty, "main")
    comp = b.computation
    assert graph.critical_path(comp) == graph.CriticalPath((), 0)


# ----------------------------------------------------------------------------- DOT

def test_dot_draws_each_fusion_as_a_cluster_holding_its_instructions():
    text = graph.to_dot(parse_module(FUSED))
    assert_valid_dot(text)
    fusion_clusters = re.findall(r'label="fusion (\w+) \((\w+)\): (\w+)"', text)
    assert fusion_clusters == [("f", "output", "fused_epilogue"), ("g", "input", "fused_reduce")]
    epilogue = between(text, 'label="fusion f (output)')
    for inner in ("p0", "p1", "bb", "s", "r", "f"):
        assert node_ids_labelled(epilogue, inner), f"{inner} not drawn inside fusion f:\n{epilogue}"
    assert not node_ids_labelled(epilogue, "e")          # fused_reduce's instructions are elsewhere
    # Fusion bodies are not drawn again as computations of their own; the reducer is.
    assert 'label="fused_epilogue"' not in text and 'label="add";' in text


def test_dot_connects_fusion_operands_to_fused_parameters_and_root_to_the_fusion():
    text = graph.to_dot(parse_module(FUSED))
    d, p0 = node_ids_labelled(text, "d")[0], node_ids_labelled(text, "p0")[0]
    r_epilogue, f = node_ids_labelled(text, "r")[0], node_ids_labelled(text, "f")[0]
    assert f"{d} -> {p0} [style=dashed];" in text
    assert f"{r_epilogue} -> {f} [style=bold];" in text
    assert f"{d} -> {f};" not in text     # data reaches the fusion through its parameters


def test_dot_tooltips_carry_source_lines_and_the_entry_is_highlighted():
    text = graph.to_dot(parse_module(FUSED))
    assert re.search(r'n\d+ \[label="d\\ndot_general f32\[4,5\]", tooltip="model.py:6"', text)
    assert 'tooltip="model.py:7, model.py:8"' in text      # the fusion lists all its lines
    entry = between(text, 'label="ENTRY main"')
    assert 'style="bold,filled"' in entry.splitlines()[1]
    assert "ENTRY" not in text.replace('label="ENTRY main"', "")


def test_dot_links_callers_to_called_computations():
    text = graph.to_dot(parse_module(FUSED))
    reduce_node = re.search(r'(n\d+) \[label="r\\nreduce f32\[4\]\\n→ add"', text).group(1)
    add_cluster = re.search(r'subgraph (cluster_\d+) \{\n\s*label="add";', text).group(1)
    assert re.search(rf"{reduce_node} -> n\d+ \[style=dotted.*lhead={add_cluster}\];", text)


def test_a_computation_fused_twice_is_drawn_twice():
    m = parse_module("""
HloModule twice
fused {
  a = f32[3] parameter(0)
  ROOT n = f32[3] negate(a)
}
ENTRY main {
  x = f32[3] parameter(0)
  f1 = f32[3] fusion(x), kind=loop, calls=fused
  f2 = f32[3] fusion(f1), kind=loop, calls=fused
  ROOT r = f32[3] add(f1, f2)
}
""")
    text = graph.to_dot(m)
    assert_valid_dot(text)
    assert len(set(node_ids_labelled(text, "n"))) == 2


def test_dot_escapes_names_and_locations():
    m = Module('quote"d\\mod')
    b = Builder(m, "main")
    b.loc = (SourceLoc('dir with "quotes"/f.py', 3),)
    x = b.parameter(Shape(f32, (2,)), 'x"1')
    b.build(b.emit("negate", [x], name="back\\slash"), entry=True)
    text = graph.to_dot(m)
    assert_valid_dot(text)
    assert 'digraph "quote\\"d\\\\mod"' in text
    assert 'tooltip="dir with \\"quotes\\"/f.py:3"' in text


@pytest.mark.no_round_trip  # deliberately broken: the dump of a broken pass's result
def test_dot_of_a_broken_module_still_draws():
    m = Module("broken")
    b = Builder(m, "main")
    x = b.parameter(Shape(f32, (2,)), "x")
    stray = Instruction("stray", "negate", [x], Shape(f32, (2,)))   # not in the computation
    b.emit("add", [x, x], name="y").operands = [x, stray]
    b.computation.instructions.append(Instruction("odd", "no_such_op", [], Shape(f32, (2,))))
    b.computation.instructions.append(Instruction("bad_fusion", "fusion", [x], Shape(f32, (2,)),
                                                  {"kind": "loop", "calls": "not a computation"}))
    m.add_computation(b.computation)    # no root, no entry
    text = graph.to_dot(m)
    assert text.count("{") == text.count("}") and 'label="odd\\nno_such_op f32[2]"' in text


# ----------------------------------------------------------------------------- SVG

def test_svg_needs_graphviz_and_says_how_to_get_dot_text(monkeypatch):
    monkeypatch.setattr(graph.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match=r"graphviz is not installed.*apt-get install graphviz.*to_dot"):
        graph.to_svg(parse_module(FUSED))


def test_svg_when_graphviz_is_installed():
    if shutil.which("dot") is None:
        pytest.skip("graphviz dot not installed")
    svg = graph.to_svg(parse_module(FUSED))
    assert "<svg" in svg and "</svg>" in svg
    assert 'xlink:title="model.py:6"' in svg                   # tooltips reach the SVG
    assert svg.count("<g id=\"clust") >= 4                     # entry, two fusions, the reducer
