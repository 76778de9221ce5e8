"""The CPU backend cuts a program at its collectives (segments.py): native segments with
the collectives run between them. One process here: the collectives are identities,
so the segmented program must agree with the interpreter."""
import numpy as np

import tessel
import tessel.distributed as dist
import tessel.numpy as tnp
from tessel.backends.cpu import segments


def step(x, w):
    h = tnp.tanh(x @ w)
    g = dist.all_reduce({"a": h, "b": tnp.sum(h, axis=0)}, op="mean")   # one bucketed collective
    z = dist.all_gather(g["a"] * 2.0)
    return tnp.sum(z, axis=0) + g["b"], dist.broadcast(x, root=0), dist.all_reduce(h, op="max")


def test_segmented_cpu_program_matches_the_interpreter():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((3, 5)).astype(np.float32)
    got = tessel.jit(step)(x, w)
    want = tessel.jit(step, backend="interpreter")(x, w)
    for g, e in zip(got, want):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)


def test_split_cuts_at_each_top_level_collective_and_passes_values_across():
    jitted = tessel.jit(lambda x: (dist.all_gather(dist.all_reduce(tnp.exp(x)) + x), tnp.exp(x)))
    module = jitted.lower(np.zeros(3, np.float32)).compile().module
    steps = segments.split(module)
    kinds = [s.opcode if not isinstance(s, segments.Segment) else "segment" for s in steps]
    assert kinds == ["segment", "all_reduce", "segment", "all_gather"]
    first, second = steps[0], steps[2]
    assert [i.opcode for i in first.inputs] == ["parameter"]
    # the collective's operand and the exp the entry returns leave the first segment
    assert steps[1].operands[0] in first.outputs
    assert steps[1] in second.inputs and steps[3].operands[0] in second.outputs


def test_gradient_through_all_reduce_on_one_process_is_the_plain_gradient():
    x = np.linspace(-1, 1, 6, dtype=np.float32)
    g = tessel.jit(tessel.grad(lambda x: tnp.sum(dist.all_reduce(x * x, op="sum"))))(x)
    np.testing.assert_allclose(g, 2 * x, rtol=1e-6)
