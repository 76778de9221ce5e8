"""The schedule pass: HLO text in, a reordered module out with a peak no higher than before."""
from __future__ import annotations

import numpy as np
import pytest

from tessel.backends.interpreter import evaluate
from tessel.compiler import ops, verifier
from tessel.compiler.buffer_assignment import peak_live_bytes, plan_computation
from tessel.compiler.parser import parse_module
from tessel.compiler.pass_manager import PassManager
from tessel.compiler.passes.schedule import Scheduler, choose_schedule
from tessel.compiler.printer import print_module

ADD = """
add {
  a = f32[] parameter(0)
  b = f32[] parameter(1)
  ROOT s = f32[] add(a, b)
}
"""


def module(body: str, callees: str = ADD) -> str:
    return "HloModule m\n" + callees + "ENTRY main {\n" + body + "\n}\n"


def line_order(text: str, computation: str = "ENTRY main") -> list[str]:
    """Instruction names of one computation, in printed order."""
    body = text[text.index(computation + " {"):]
    body = body[:body.index("\n}")]
    return [line.split("=")[0].replace("ROOT", "").strip() for line in body.splitlines()[1:]]


def assert_valid_schedule(before_names: set[str], comp) -> None:
    seen = set()
    for instr in comp.instructions:
        assert all(o.name in seen for o in instr.operands), f"{instr.name} runs before an operand"
        seen.add(instr.name)
    assert seen == before_names


def planned_peak(comp) -> int:
    return plan_computation(comp).peak_bytes


def schedule(text: str):
    """Parse, schedule, verify; returns (module, changed, planned peak before, after)."""
    m = parse_module(text)
    names = {c.name: {i.name for i in c.instructions} for c in m.computations}
    effects = {c.name: [i.name for i in c.instructions if ops.OPS[i.opcode].side_effects]
               for c in m.computations}
    before = {c.name: planned_peak(c) for c in m.computations}
    changed = Scheduler().run(m)
    verifier.verify(m)
    for c in m.computations:
        assert_valid_schedule(names[c.name], c)
        assert [i.name for i in c.instructions if ops.OPS[i.opcode].side_effects] == effects[c.name]
        assert planned_peak(c) <= before[c.name]
    return m, changed, before[m.entry.name], planned_peak(m.entry)


# A bad trace order: three big temporaries computed before any of them is reduced.
BRANCHES = module("""
  x = f32[256,256] parameter(0)
  z = f32[] constant(0)
  e1 = f32[256,256] exp(x)
  e2 = f32[256,256] tanh(x)
  e3 = f32[256,256] negate(x)
  r1 = f32[256] reduce(e1, z), dimensions={1}, to_apply=add
  r2 = f32[256] reduce(e2, z), dimensions={1}, to_apply=add
  r3 = f32[256] reduce(e3, z), dimensions={1}, to_apply=add
  a = f32[256] add(r1, r2)
  ROOT b = f32[256] add(a, r3)""")


def test_independent_branches_are_reduced_before_the_next_one_starts():
    m, changed, before, after = schedule(BRANCHES)
    assert changed
    big = 256 * 256 * 4
    assert before > 4 * big                              # x and e1, e2, e3 at once
    assert after < 2 * big + 4 * 1024 + 64               # x and one of them, and small values
    assert peak_live_bytes(m.entry) < peak_live_bytes(parse_module(BRANCHES).entry) - big
    order = line_order(print_module(m))
    assert order.index("r1") < order.index("e2") and order.index("r2") < order.index("e3")
    x = np.random.default_rng(0).standard_normal((256, 256)).astype(np.float32)
    np.testing.assert_array_equal(evaluate(m, [x]), evaluate(parse_module(BRANCHES), [x]))


def test_a_good_order_is_left_alone_and_the_pass_is_idempotent():
    m, changed, before, after = schedule(BRANCHES)
    text = print_module(m)
    assert Scheduler().run(m) is False
    assert print_module(m) == text
    chain = module("""
  x = f32[64] parameter(0)
  a = f32[64] exp(x)
  b = f32[64] negate(a)
  ROOT c = f32[64] tanh(b)""")
    m, changed, before, after = schedule(chain)
    assert not changed and before == after


def test_the_chosen_order_has_the_lowest_simulated_peak():
    m = parse_module(BRANCHES)
    choice = choose_schedule(m.entry)
    assert set(choice.peaks) == {"trace", "forward", "reverse", "dfs"}
    assert choice.peaks[choice.chosen] == min(choice.peaks.values())
    assert choice.peaks["forward"] < choice.peaks["trace"] and choice.peaks["reverse"] < choice.peaks["trace"]


def test_side_effecting_instructions_keep_their_relative_order():
    # The greedy scheduler would rather run the small custom_call first; it may not.
    m, changed, before, after = schedule(module("""
  x = f32[1024] parameter(0)
  big = f32[1024] custom_call(x), call_target_name="big"
  small = f32[4] custom_call(), call_target_name="small"
  s = () send(small), channel_id=1, device="cpu"
  r = f32[4] recv(s), channel_id=1, device="cpu"
  n = f32[1024] negate(big)
  ROOT t = (f32[1024], f32[4]) tuple(n, r)"""))
    order = line_order(print_module(m))
    assert order.index("big") < order.index("small") < order.index("s") < order.index("r")


def test_nested_computations_are_scheduled_too():
    body = """
fused {
  p = f32[128,128] parameter(0)
  z = f32[] constant(0)
  e1 = f32[128,128] exp(p)
  e2 = f32[128,128] tanh(p)
  r1 = f32[128] reduce(e1, z), dimensions={1}, to_apply=add
  r2 = f32[128] reduce(e2, z), dimensions={1}, to_apply=add
  ROOT s = f32[128] add(r1, r2)
}
"""
    m, changed, before, after = schedule(module("""
  x = f32[128,128] parameter(0)
  ROOT f = f32[128] fusion(x), kind=input, calls=fused""", ADD + body))
    assert changed
    order = line_order(print_module(m), "fused")
    assert order.index("r1") < order.index("e2")


def test_parameters_come_first_and_dead_code_is_kept():
    m, changed, before, after = schedule(module("""
  x = f32[256,256] parameter(0)
  z = f32[] constant(0)
  e1 = f32[256,256] exp(x)
  e2 = f32[256,256] tanh(x)
  unused = f32[256,256] negate(x)
  y = f32[8] parameter(1)
  r1 = f32[256] reduce(e1, z), dimensions={1}, to_apply=add
  r2 = f32[256] reduce(e2, z), dimensions={1}, to_apply=add
  ROOT a = f32[256] add(r1, r2)"""))
    assert changed
    order = line_order(print_module(m))
    assert order[:2] == ["x", "y"] and "unused" in order


# ----------------------------------------------------------------------------- random DAGs

def random_dag(rng, n=30) -> str:
    """A random DAG of elementwise ops, reductions, slices and concatenations over
    f32[64,64] and f32[32,64] values; the root is a tuple of every value nobody uses."""
    lines = ["  x = f32[64,64] parameter(0)", "  z = f32[] constant(0)"]
    values, used = {64: ["x"], 32: []}, set()

    def pick(rows):
        name = values[rows][int(rng.integers(len(values[rows])))]
        used.add(name)
        return name

    for i in range(n):
        name = f"v{i}"
        kind = rng.choice(["unary", "binary", "reduce", "slice"] + (["concat"] if values[32] else []))
        rows = int(rng.choice([64, 32])) if values[32] else 64
        if kind == "unary":
            lines.append(f"  {name} = f32[{rows},64] exp({pick(rows)})")
        elif kind == "binary":
            lines.append(f"  {name} = f32[{rows},64] add({pick(rows)}, {pick(rows)})")
        elif kind == "reduce":
            lines.append(f"  {name}r = f32[{rows}] reduce({pick(rows)}, z), dimensions={{1}}, to_apply=add")
            lines.append(f"  {name} = f32[{rows},64] broadcast_in_dim({name}r), broadcast_dimensions={{0}}")
        elif kind == "slice":
            rows = 32
            lines.append(f"  {name} = f32[32,64] slice({pick(64)}), start_indices={{0,0}}, "
                         f"limit_indices={{32,64}}")
        else:
            rows = 64
            lines.append(f"  {name} = f32[64,64] concatenate({pick(32)}, {pick(32)}), dimension=0")
        values[rows].append(name)
    sinks = [(v, r) for r in (64, 32) for v in values[r] if v not in used]
    shapes = ", ".join(f"f32[{r},64]" for _, r in sinks)
    lines.append(f"  ROOT out = ({shapes}) tuple({', '.join(v for v, _ in sinks)})")
    return module("\n".join(lines))


@pytest.mark.parametrize("seed", range(20))
def test_random_dags_get_valid_orders_that_never_raise_the_peak(seed):
    text = random_dag(np.random.default_rng(seed))
    m, changed, before, after = schedule(text)
    assert after <= before
    x = np.random.default_rng(seed).standard_normal((64, 64)).astype(np.float32) * 0.1
    for got, want in zip(evaluate(m, [x]), evaluate(parse_module(text), [x]), strict=True):
        np.testing.assert_array_equal(got, want)


def test_random_dags_mostly_get_a_lower_peak():
    improved = 0
    for seed in range(20):
        m = parse_module(random_dag(np.random.default_rng(seed)))
        before = planned_peak(m.entry)
        Scheduler().run(m)
        improved += planned_peak(m.entry) < before
    assert improved >= 15


def test_runs_under_the_pass_manager():
    m = parse_module(BRANCHES)
    report = PassManager("schedule-only", [Scheduler()], disabled=frozenset()).run(m)
    assert [(r.name, r.changed) for r in report.records] == [("schedule", True)]
    m = parse_module(BRANCHES)
    report = PassManager("off", [Scheduler()], disabled=frozenset({"schedule"})).run(m)
    assert report.records == [] and print_module(m) == print_module(parse_module(BRANCHES))
