"""Buffer assignment: the plan is executed on a NumPy byte arena and must match the interpreter.

`simulate` runs every instruction with the interpreter's rule, reading its operands from
the bytes at their assigned offsets and writing its result into its own, in schedule
order. If two values that are live at once shared bytes, a later read would see the
other's data and the results would differ from the plain interpreter.
"""
from __future__ import annotations

import numpy as np
import pytest

import tessel as ts
import tessel.numpy as tnp

from tessel.backends.interpreter import IMPL, Context, Frame, evaluate, store
from tessel.compiler.buffer_assignment import (ALIGNMENT, SCRATCH, Slice, assign_buffers,
                                               memory_analysis, peak_live_bytes)
from tessel.compiler.parser import parse_module
from tessel.compiler.passes.schedule import Scheduler


# ----------------------------------------------------------------------------- the simulator

def _leaves(value) -> list:
    if isinstance(value, tuple):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


def _nest(shape, leaves):
    if shape.is_tuple:
        return tuple(_nest(e, leaves) for e in shape.elements)
    return next(leaves)


class Memory:
    """Caller arguments and outputs, the constant section and the scratch arena, as bytes."""

    def __init__(self, ba, args, rng):
        comp = ba.computation
        self.regions = {
            "argument": [np.frombuffer(store(a, s.dtype).tobytes(), np.uint8).copy()
                         for p, arg in zip(comp.parameters, args)
                         for s, a in zip(p.shape.leaves(), _leaves(arg))],
            "output": [rng.integers(0, 256, s.nbytes, dtype=np.uint8)
                       for s in comp.root.shape.leaves()],
            "constant": rng.integers(0, 256, ba.constant_bytes, dtype=np.uint8),
            "scratch": rng.integers(0, 256, ba.scratch_bytes, dtype=np.uint8),   # garbage
        }

    def bytes_of(self, where: Slice) -> np.ndarray:
        region = self.regions[where.kind]
        if where.kind in ("argument", "output"):
            assert region[where.index].size == where.size
            return region[where.index]
        assert where.index % ALIGNMENT == 0 and where.index + where.size <= region.size
        return region[where.index:where.index + where.size]

    def read(self, ba, instr):
        leaves = iter(np.frombuffer(self.bytes_of(where).tobytes(), shape.dtype.storage).reshape(shape.dims)
                      for where, shape in zip(ba.slices_of(instr), instr.shape.leaves()))
        return _nest(instr.shape, leaves)

    def write(self, ba, instr, value):
        for where, shape, leaf in zip(ba.slices_of(instr), instr.shape.leaves(), _leaves(value)):
            self.bytes_of(where)[:] = np.frombuffer(store(leaf, shape.dtype).tobytes(), np.uint8)


def simulate(ba, args, seed=0):
    """Run the plan; returns (the root's value, the argument bytes afterwards)."""
    memory = Memory(ba, args, np.random.default_rng(seed))
    frame = Frame(Context(), args)
    for instr in ba.order:                               # the loader fills the constant section
        if instr.opcode == "constant":
            memory.write(ba, instr, IMPL["constant"](frame, instr))
    for instr in ba.order:
        if instr.opcode in ("parameter", "constant") or ba.is_alias(instr):
            continue
        operands = [memory.read(ba, o) for o in instr.operands]
        memory.write(ba, instr, IMPL[instr.opcode](frame, instr, *operands))
    return memory.read(ba, ba.computation.root), memory.regions["argument"]


def random_args(module, rng):
    def value(shape):
        if shape.is_tuple:
            return tuple(value(e) for e in shape.elements)
        if shape.dtype.is_float:
            return rng.standard_normal(shape.dims).astype(shape.dtype.storage)
        return rng.integers(0, 3, shape.dims).astype(shape.dtype.storage)
    return [value(p.shape) for p in module.entry.parameters]


def assert_same(a, b):
    for x, y in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def assert_no_live_overlap(ba):
    """Scratch allocations live at the same step never share a byte."""
    scratch = [a for a in ba.allocations if a.kind == SCRATCH]
    for i, a in enumerate(scratch):
        for b in scratch[i + 1:]:
            if a.overlaps(b) and a.size and b.size:
                assert a.index + a.size <= b.index or b.index + b.size <= a.index, (a, b)


def check_plan(module, donated=(), reuse=True, seed=0):
    """Simulate the plan on random arguments; returns the assignment."""
    rng = np.random.default_rng(seed)
    args = random_args(module, rng)
    expected = evaluate(module, args)
    ba = assign_buffers(module, reuse=reuse, donated_parameters=donated)
    result, arg_bytes = simulate(ba, args, seed)
    assert_same(result, expected)
    assert_no_live_overlap(ba)
    comp = module.entry
    before = Memory(ba, args, rng).regions["argument"]
    numbers = [p.attrs["index"] for p in comp.parameters for _ in p.shape.leaves()]
    for number, old, new in zip(numbers, before, arg_bytes):
        if number not in donated:
            np.testing.assert_array_equal(old, new, err_msg=f"parameter {number} was overwritten")
    return ba


# ----------------------------------------------------------------------------- modules

ADD = """
add {
  a = f32[] parameter(0)
  b = f32[] parameter(1)
  ROOT s = f32[] add(a, b)
}
"""

MLP_TRAIN = """
HloModule mlp_train

ENTRY train_step {
  x = f32[64,128] parameter(0)
  y = f32[64,16] parameter(1)
  w1 = f32[128,256] parameter(2)
  w2 = f32[256,256] parameter(3)
  w3 = f32[256,16] parameter(4)
  zero = f32[] constant(0)
  lr = f32[] constant(0.01)
  h1 = f32[64,256] dot_general(x, w1), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  z1 = f32[64,256] broadcast_in_dim(zero), broadcast_dimensions={}
  a1 = f32[64,256] maximum(h1, z1)
  h2 = f32[64,256] dot_general(a1, w2), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  a2 = f32[64,256] maximum(h2, z1)
  h3 = f32[64,16] dot_general(a2, w3), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  d3 = f32[64,16] subtract(h3, y)
  gw3 = f32[256,16] dot_general(a2, d3), lhs_contracting_dims={0}, rhs_contracting_dims={0}
  da2 = f32[64,256] dot_general(d3, w3), lhs_contracting_dims={1}, rhs_contracting_dims={1}
  m2 = pred[64,256] compare(h2, z1), direction=GT
  dh2 = f32[64,256] select(m2, da2, z1)
  gw2 = f32[256,256] dot_general(a1, dh2), lhs_contracting_dims={0}, rhs_contracting_dims={0}
  da1 = f32[64,256] dot_general(dh2, w2), lhs_contracting_dims={1}, rhs_contracting_dims={1}
  m1 = pred[64,256] compare(h1, z1), direction=GT
  dh1 = f32[64,256] select(m1, da1, z1)
  gw1 = f32[128,256] dot_general(x, dh1), lhs_contracting_dims={0}, rhs_contracting_dims={0}
  lr1 = f32[128,256] broadcast_in_dim(lr), broadcast_dimensions={}
  s1 = f32[128,256] multiply(lr1, gw1)
  w1n = f32[128,256] subtract(w1, s1)
  lr2 = f32[256,256] broadcast_in_dim(lr), broadcast_dimensions={}
  s2 = f32[256,256] multiply(lr2, gw2)
  w2n = f32[256,256] subtract(w2, s2)
  lr3 = f32[256,16] broadcast_in_dim(lr), broadcast_dimensions={}
  s3 = f32[256,16] multiply(lr3, gw3)
  w3n = f32[256,16] subtract(w3, s3)
  ROOT out = (f32[128,256], f32[256,256], f32[256,16]) tuple(w1n, w2n, w3n)
}
"""


def module(body: str, callees: str = "") -> str:
    return "HloModule m\n" + callees + "ENTRY main {\n" + body + "\n}\n"


# ----------------------------------------------------------------------------- acceptance

def test_mlp_training_chain_peak_is_lowered_by_buffer_reuse(capsys):
    m = parse_module(MLP_TRAIN)
    trace_order = memory_analysis(m)
    Scheduler().run(m)
    without = memory_analysis(m, reuse=False)
    with_reuse = memory_analysis(m)
    with capsys.disabled():
        print(f"\nMLP training step (batch 64, 128-256-256-16):\n"
              f"  no reuse:             peak {without.peak_bytes:,} B, arena {without.temporary_bytes:,} B\n"
              f"  reuse, trace order:   peak {trace_order.peak_bytes:,} B, arena {trace_order.temporary_bytes:,} B\n"
              f"  reuse, scheduled:     peak {with_reuse.peak_bytes:,} B, arena {with_reuse.temporary_bytes:,} B")
    assert with_reuse.peak_bytes < trace_order.peak_bytes
    assert without.argument_bytes == with_reuse.argument_bytes == 4 * (64 * 128 + 64 * 16 + 128 * 256
                                                                      + 256 * 256 + 256 * 16)
    assert with_reuse.output_bytes == 4 * (128 * 256 + 256 * 256 + 256 * 16)
    assert with_reuse.temporary_bytes < 0.5 * without.temporary_bytes
    assert with_reuse.peak_bytes < 0.8 * without.peak_bytes
    assert with_reuse.peak_bytes == (with_reuse.argument_bytes + with_reuse.output_bytes
                                     + with_reuse.constant_bytes + with_reuse.temporary_bytes)
    assert with_reuse.live_peak_bytes <= with_reuse.peak_bytes
    check_plan(m)
    check_plan(m, reuse=False)


def mlp_step(x, y, w1, w2, w3):
    """Forward of three dense layers with relu, then their gradients by hand and an SGD step."""
    h1 = x @ w1
    a1 = tnp.maximum(h1, 0)
    h2 = a1 @ w2
    a2 = tnp.maximum(h2, 0)
    d3 = a2 @ w3 - y
    dh2 = tnp.where(h2 > 0, d3 @ w3.T, 0)
    dh1 = tnp.where(h1 > 0, dh2 @ w2.T, 0)
    return w1 - 0.01 * (x.T @ dh1), w2 - 0.01 * (a1.T @ dh2), w3 - 0.01 * (a2.T @ d3)


def test_traced_mlp_training_chain_peak_is_lowered_by_buffer_reuse(capsys):
    shapes = [(64, 128), (64, 16), (128, 256), (256, 256), (256, 16)]
    text = ts.jit(mlp_step).lower(*(ts.ShapeDtype(s, "float32") for s in shapes)).as_text()
    m = parse_module(text)
    trace_order = memory_analysis(m)
    Scheduler().run(m)
    without, with_reuse = memory_analysis(m, reuse=False), memory_analysis(m)
    with capsys.disabled():
        print(f"\nMLP training step traced by tessel.jit: peak no reuse {without.peak_bytes:,} B, "
              f"reuse {trace_order.peak_bytes:,} B (trace order), {with_reuse.peak_bytes:,} B (scheduled)")
    assert with_reuse.peak_bytes <= trace_order.peak_bytes < 0.5 * without.peak_bytes
    check_plan(m)


def test_mlp_training_chain_with_donated_weights_updates_them_in_place():
    m = parse_module(MLP_TRAIN)
    Scheduler(donated_parameters={2, 3, 4}).run(m)
    ba = check_plan(m, donated={2, 3, 4})
    assert {w.name: o.name for w, o in ba.in_place.items() if w.name.endswith("n")} == \
        {"w1n": "w1", "w2n": "w2", "w3n": "w3"}
    assert ba.output_aliases == {0: Slice("argument", 2, 4 * 128 * 256),
                                 1: Slice("argument", 3, 4 * 256 * 256),
                                 2: Slice("argument", 4, 4 * 256 * 16)}
    donated, plain = memory_analysis(m, donated_parameters={2, 3, 4}), memory_analysis(m)
    assert donated.alias_bytes == donated.output_bytes
    assert donated.peak_bytes < plain.peak_bytes


# ----------------------------------------------------------------------------- in place

CHAIN = module("""
  x = f32[32,64] parameter(0)
  a = f32[32,64] exp(x)
  b = f32[32,64] negate(a)
  c = f32[32,64] multiply(b, b)
  d = f32[32,64] tanh(c)
  ROOT e = f32[32,64] add(d, x)""")


def test_chain_of_elementwise_ops_runs_in_one_buffer():
    m = parse_module(CHAIN)
    ba = check_plan(m)
    assert {w.name: o.name for w, o in ba.in_place.items()} == {"b": "a", "c": "b", "d": "c", "e": "d"}
    assert ba.buffer_of("a") == ba.buffer_of("e") == Slice("output", 0, 32 * 64 * 4)
    assert ba.scratch_bytes == 0
    no_reuse = check_plan(m, reuse=False)
    assert no_reuse.in_place == {} and no_reuse.scratch_bytes == 4 * 32 * 64 * 4


def test_parameters_are_never_overwritten_unless_donated():
    m = parse_module(module("""
  x = f32[16] parameter(0)
  y = f32[16] parameter(1)
  a = f32[16] exp(x)
  b = f32[16] add(y, a)
  ROOT c = f32[16] negate(b)"""))
    ba = check_plan(m)
    assert ba.buffer_of("a") == Slice("output", 0, 64)       # a does not overwrite x
    assert ba.in_place[m.entry.root].name == "b"
    ba = check_plan(m, donated={0, 1})
    assert ba.buffer_of("a") == Slice("argument", 0, 64)
    assert ba.buffer_of("b") == Slice("argument", 1, 64)     # the first dying operand: y
    assert ba.output_aliases == {0: Slice("argument", 1, 64)}
    with pytest.raises(ValueError, match=r"donated_parameters \[5\]"):
        assign_buffers(m, donated_parameters={5})


def test_in_place_needs_a_dying_operand_of_the_same_size():
    m = parse_module(module("""
  x = f32[8,8] parameter(0)
  a = f32[8,8] exp(x)
  b = f32[8,8] negate(a)
  c = s32[8,8] convert(b)
  p = pred[8,8] compare(a, a), direction=LT
  d = f64[8,8] convert(c)
  ROOT t = (f64[8,8], pred[8,8], f32[8,8]) tuple(d, p, b)"""))
    ba = check_plan(m)
    # b: a is still read by p; c: b is an output; p: 1-byte results; d: 8 bytes from 4
    assert ba.in_place == {}


def test_in_place_into_a_loop_fusion_only_when_it_reads_elementwise():
    callees = """
fused_ew {
  p0 = f32[8,8] parameter(0)
  p1 = f32[8,8] parameter(1)
  e = f32[8,8] exp(p0)
  ROOT m = f32[8,8] multiply(e, p1)
}
fused_transposed {
  p0 = f32[8,8] parameter(0)
  t = f32[8,8] transpose(p0), permutation={1,0}
  ROOT m = f32[8,8] add(t, p0)
}
"""
    m = parse_module(module("""
  x = f32[8,8] parameter(0)
  a = f32[8,8] negate(x)
  b = f32[8,8] negate(x)
  c = f32[8,8] negate(x)
  f = f32[8,8] fusion(a, x), kind=loop, calls=fused_ew
  g = f32[8,8] fusion(b), kind=loop, calls=fused_transposed
  h = f32[8,8] fusion(c, x), kind=output, calls=fused_ew
  ROOT r = (f32[8,8], f32[8,8], f32[8,8]) tuple(f, g, h)""", callees))
    ba = check_plan(m)
    # g reads its operand transposed; h is an output fusion (a GEMM accumulates in its result)
    assert {w.name: o.name for w, o in ba.in_place.items()} == {"f": "a"}


# ----------------------------------------------------------------------------- aliasing

def test_returning_a_parameter_or_a_value_twice_records_the_aliasing():
    m = parse_module(module("""
  x = f32[4,4] parameter(0)
  c = f32[2] constant({1, 2})
  n = f32[4,4] negate(x)
  r = f32[16] reshape(n)
  ROOT t = (f32[4,4], f32[4,4], f32[16], f32[4,4], f32[2]) tuple(n, x, r, n, c)"""))
    ba = check_plan(m)
    assert ba.buffer_of("n") == Slice("output", 0, 64)
    assert ba.is_alias("r") and ba.buffer_of("r") == Slice("output", 0, 64)
    assert ba.output_aliases == {1: Slice("argument", 0, 64), 2: Slice("output", 0, 64),
                                 3: Slice("output", 0, 64), 4: Slice("constant", 0, 8)}
    ma = memory_analysis(m)
    assert (ma.output_bytes, ma.alias_bytes) == (5 * 64 - 64 + 8, 3 * 64 + 8)
    text = ba.to_text()
    assert "#1 f32[4,4]: shares argument #0 (64 B)" in text and "alias of n" in text


def test_tuple_results_are_element_buffers_and_get_tuple_element_aliases_them():
    callees = ADD.replace("add {", "max {").replace("add(a, b)", "maximum(a, b)") + """
argmaxish {
  a0 = f32[] parameter(0)
  a1 = s32[] parameter(1)
  b0 = f32[] parameter(2)
  b1 = s32[] parameter(3)
  m = f32[] maximum(a0, b0)
  i = s32[] maximum(a1, b1)
  ROOT t = (f32[], s32[]) tuple(m, i)
}
"""
    m = parse_module(module("""
  x = f32[8,16] parameter(0)
  k = s32[8,16] parameter(1)
  z = f32[] constant(0)
  zi = s32[] constant(0)
  r = (f32[8], s32[8]) reduce(x, k, z, zi), dimensions={1}, to_apply=argmaxish
  v = f32[8] get_tuple_element(r), index=0
  i = s32[8] get_tuple_element(r), index=1
  e = f32[8] exp(v)
  ROOT t = (f32[8], s32[8]) tuple(e, i)""", callees))
    ba = check_plan(m)
    r = ba.buffer_of("r")
    assert isinstance(r, list) and [s.size for s in r] == [32, 32]
    assert ba.buffer_of("i") == r[1] == Slice("output", 1, 32)
    assert ba.buffer_of("v") == r[0] and ba.in_place[m.entry.root.operands[0]].name == "v"


def test_a_non_bitcast_reshape_gets_its_own_buffer():
    m = parse_module(module("""
  x = f32[4,8]{0,1} parameter(0)
  r = f32[32] reshape(x)
  ROOT n = f32[32] negate(r)"""))
    ba = check_plan(m)
    assert not ba.is_alias("r")                    # a copy that changes the layout
    assert {w.name: o.name for w, o in ba.in_place.items()} == {"n": "r"}


# ----------------------------------------------------------------------------- packing

def test_scratch_offsets_are_aligned_and_reused_best_fit():
    m = parse_module(module("""
  x = f32[100] parameter(0)
  a = f32[100] exp(x)
  b = f32[10] slice(a), start_indices={0}, limit_indices={10}
  c = f32[100] tanh(x)
  d = f32[10] slice(c), start_indices={0}, limit_indices={10}
  e = f32[10] add(b, d)
  f = f32[30] slice(x), start_indices={0}, limit_indices={30}
  g = f32[30] negate(f)
  h = f32[10] slice(g), start_indices={0}, limit_indices={10}
  ROOT s = f32[10] add(e, h)"""))
    ba = check_plan(m)
    for instr in m.entry.instructions:
        where = ba.buffer_of(instr)
        if where.kind == "scratch":
            assert where.index % ALIGNMENT == 0
    assert ba.scratch_bytes <= 3 * 448   # never more than three 400-byte values (aligned) at once
    assert ba.scratch_bytes < assign_buffers(m, reuse=False).scratch_bytes


def test_peak_live_bytes_counts_parameters_and_constants_throughout():
    m = parse_module(module("""
  x = f32[16] parameter(0)
  c = f32[16] constant({0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15})
  a = f32[16] add(x, c)
  b = f32[16] multiply(a, a)
  ROOT r = f32[4,4] reshape(b)"""))
    assert peak_live_bytes(m.entry) == 64 + 64 + 64 + 64    # x, c, a and b at b's step


# ----------------------------------------------------------------------------- random programs

def random_program(rng, n_ops=24) -> str:
    """A random straight-line program over f32[k,32] values (k in 4, 16) as HLO text."""
    lines = ["  w = f32[32,32] parameter(0)", "  x4 = f32[4,32] parameter(1)",
             "  x16 = f32[16,32] parameter(2)", "  zero = f32[] constant(0)"]
    values = {4: ["x4"], 16: ["x16"]}
    for n in range(n_ops):
        k = int(rng.choice([4, 16]))
        pick = lambda: values[k][int(rng.integers(len(values[k])))]
        kind = rng.choice(["unary", "binary", "dot", "reduce"])
        name = f"v{n}"
        if kind == "unary":
            op = rng.choice(["exp", "negate", "tanh", "abs"])
            lines.append(f"  {name} = f32[{k},32] {op}({pick()})")
        elif kind == "binary":
            op = rng.choice(["add", "multiply", "maximum", "subtract"])
            lines.append(f"  {name} = f32[{k},32] {op}({pick()}, {pick()})")
        elif kind == "dot":
            lines.append(f"  {name} = f32[{k},32] dot_general({pick()}, w), "
                         f"lhs_contracting_dims={{1}}, rhs_contracting_dims={{0}}")
        else:
            lines.append(f"  {name}r = f32[{k}] reduce({pick()}, zero), dimensions={{1}}, to_apply=add")
            lines.append(f"  {name} = f32[{k},32] broadcast_in_dim({name}r), broadcast_dimensions={{0}}")
        values[k].append(name)
    outs = [values[k][-1] for k in (4, 16)] + [values[4][int(rng.integers(len(values[4])))]]
    shapes = ", ".join(f"f32[{k},32]" for k in (4, 16, 4))
    lines.append(f"  ROOT out = ({shapes}) tuple({', '.join(outs)})")
    return module("\n".join(lines), ADD)


@pytest.mark.parametrize("seed", range(12))
def test_random_programs_run_correctly_from_their_plan(seed):
    m = parse_module(random_program(np.random.default_rng(seed)))
    check_plan(m, seed=seed)
    check_plan(m, donated={1, 2}, seed=seed)
    Scheduler().run(m)
    check_plan(m, seed=seed)
    check_plan(m, donated={0, 1, 2}, seed=seed)
    assert assign_buffers(m).peak_bytes <= assign_buffers(m, reuse=False).peak_bytes


# ----------------------------------------------------------------------------- reports

def test_reports_are_readable():
    m = parse_module(CHAIN)
    text = assign_buffers(m).to_text()
    assert "buffer assignment of main: 6 instructions, reuse on" in text
    assert "in place of a" in text and "argument #0" in text
    report = str(memory_analysis(m))
    for word in ("arguments", "outputs", "temporaries", "constants", "peak"):
        assert word in report
    with pytest.raises(KeyError, match="no instruction named 'nope'"):
        assign_buffers(m).buffer_of("nope")


# ----------------------------------------------------------------------------- dynamic_update_slice, loop state

def test_dynamic_update_slice_updates_a_dying_operand_in_place():
    m = parse_module(module("""
  x = f32[6,4] parameter(0)
  u = f32[1,4] parameter(1)
  i = s32[] parameter(2)
  zero = s32[] constant(0)
  a = f32[6,4] negate(x)
  b = f32[6,4] dynamic_update_slice(a, u, i, zero)
  c = f32[6,4] dynamic_update_slice(b, u, zero, zero)
  d = f32[6,4] dynamic_update_slice(x, u, i, zero)
  ROOT t = (f32[6,4], f32[6,4], f32[6,4]) tuple(c, d, a)"""))
    ba = check_plan(m)
    # b: a is an output, so it lives on; c: b dies at c; d: x is a parameter (not donated)
    assert {w.name: o.name for w, o in ba.in_place.items()} == {"c": "b"}
    donated = check_plan(m, donated={0})
    assert {w.name: o.name for w, o in donated.in_place.items()} == {"c": "b", "d": "x"}


def test_dynamic_update_slice_not_in_place_when_its_update_shares_the_storage():
    m = parse_module(module("""
  x = f32[4] parameter(0)
  zero = s32[] constant(0)
  a = f32[4] negate(x)
  b = f32[4] dynamic_update_slice(a, a, zero)
  ROOT n = f32[4] negate(b)"""))
    ba = check_plan(m)
    assert "b" not in {w.name for w in ba.in_place}


# A scan-like while body: counter, carry, xs (returned unchanged), stacked ys (updated
# by dynamic_update_slice), and two leaves swapped through negations (chains from a
# parameter leaf that end at another leaf: not carried in place).
SCAN_BODY = """
HloModule scan_body

ENTRY body {
  s = (s32[], f32[4], f32[6,4], f32[6,4], f32[4], f32[4]) parameter(0)
  i = s32[] get_tuple_element(s), index=0
  c = f32[4] get_tuple_element(s), index=1
  xs = f32[6,4] get_tuple_element(s), index=2
  ys = f32[6,4] get_tuple_element(s), index=3
  a = f32[4] get_tuple_element(s), index=4
  b = f32[4] get_tuple_element(s), index=5
  zero = s32[] constant(0)
  x = f32[1,4] dynamic_slice(xs, i, zero), slice_sizes={1,4}
  xr = f32[4] reshape(x)
  c2 = f32[4] add(c, xr)
  y = f32[1,4] reshape(c2)
  ys2 = f32[6,4] dynamic_update_slice(ys, y, i, zero)
  one = s32[] constant(1)
  i2 = s32[] add(i, one)
  na = f32[4] negate(b)
  nb = f32[4] negate(a)
  ROOT t = (s32[], f32[4], f32[6,4], f32[6,4], f32[4], f32[4]) tuple(i2, c2, xs, ys2, na, nb)
}
"""


def simulate_loop(ba, state, iterations, seed=0):
    """Run a carried plan `iterations` times the way the CPU while kernel does: the
    output storage of a leaf carried in place IS its argument storage; other outputs
    are separate and copied into the arguments after each run."""
    memory = Memory(ba, [state], np.random.default_rng(seed))
    arguments, outputs = memory.regions["argument"], memory.regions["output"]
    for k in ba.carried_in_place:
        outputs[k] = arguments[k]
    for _ in range(iterations):
        simulate_on(ba, memory)
        for k, where in ba.output_aliases.items():      # what the nested function copies
            if k not in ba.carried_in_place:
                outputs[k][:] = memory.bytes_of(where)
        for k in range(len(arguments)):
            if k not in ba.carried_in_place:
                arguments[k][:] = outputs[k]
    return memory.read(ba, ba.computation.parameters[0])


def simulate_on(ba, memory):
    frame = Frame(Context(), [])
    for instr in ba.order:
        if instr.opcode == "constant":
            memory.write(ba, instr, IMPL["constant"](frame, instr))
    for instr in ba.order:
        if instr.opcode in ("parameter", "constant") or ba.is_alias(instr):
            continue
        operands = [memory.read(ba, o) for o in instr.operands]
        memory.write(ba, instr, IMPL[instr.opcode](frame, instr, *operands))


def test_loop_state_is_carried_in_place_and_runs_like_the_interpreter():
    from tessel.compiler.buffer_assignment import plan_computation
    m = parse_module(SCAN_BODY)
    ba = plan_computation(m.entry, carried=True)
    # counter, carry and ys are updated in place after their last read, xs is returned
    # unchanged; the swapped pair goes through separate outputs
    assert ba.carried_in_place == {0, 1, 2, 3}
    assert {w.name: o.name for w, o in ba.in_place.items()} == {"c2": "c", "ys2": "ys", "i2": "i"}
    assert "carried in place (ys2)" in ba.to_text()
    rng = np.random.default_rng(3)
    state = (np.int32(0), *(rng.standard_normal(d).astype(np.float32) for d in ((4,), (6, 4), (6, 4), (4,), (4,))))
    want = state
    for _ in range(6):
        (want,) = [evaluate(m, [want])]
    assert_same(simulate_loop(ba, state, 6), want)
    # without `carried` a body never writes into its parameter
    assert plan_computation(m.entry).carried_in_place == frozenset()
    plain = plan_computation(m.entry)
    assert all(plain.buffer_of(o).kind != "argument" for o in plain.in_place.values())


def test_loop_state_with_a_mismatched_root_is_an_error():
    from tessel.compiler.buffer_assignment import plan_computation
    m = parse_module(module("""
  p = (f32[4], f32[4]) parameter(0)
  a = f32[4] get_tuple_element(p), index=0
  ROOT n = f32[4] negate(a)"""))
    with pytest.raises(ValueError, match="2 state leaves in, 1 out"):
        plan_computation(m.entry, carried=True)
