"""While unrolling: loops with a static trip count become straight-line copies of their
body that compute what the loop computes (interpreter, bit for bit: the same ops on the
same values in the same order); loops without a trip count, or too big, stay."""
from __future__ import annotations

import numpy as np
import pytest

import tessel
import tessel.numpy as tnp
from tessel.backends.interpreter import evaluate
from tessel.compiler.ir import clone_module
from tessel.compiler.passes.while_unroll import WhileUnroll, unrolled_size
from tessel.compiler.verifier import verify

RNG = np.random.default_rng(0)


def loops(module) -> int:
    return sum(i.opcode == "while" for c in module.computations for i in c.instructions)


def unrolled(module, **options):
    out = clone_module(module)
    changed = WhileUnroll(**options).run(out)
    verify(out)
    return out, changed


def rnn_loss(w, xs):
    def step(h, x):
        h = tnp.tanh(x @ w + h)
        return h, h * 2.0
    h, ys = tessel.lax.scan(step, tnp.zeros((2, 3), dtype=np.float32), xs)
    return tnp.sum(h) + tnp.sum(ys * ys)


def nested(x):
    def outer(i, acc):
        return tessel.lax.fori_loop(0, 3, lambda j, a: a * 1.5 + (i * 3 + j).astype(np.float32), acc)
    return tessel.lax.fori_loop(0, 4, outer, x)


CASES = {
    "scan": (rnn_loss, lambda: [RNG.standard_normal((3, 3)).astype(np.float32),
                                RNG.standard_normal((5, 2, 3)).astype(np.float32)]),
    "scan_gradient": (tessel.grad(rnn_loss, argnums=(0, 1)), lambda: [RNG.standard_normal((3, 3)).astype(np.float32),
                                                                    RNG.standard_normal((5, 2, 3)).astype(np.float32)]),
    "nested_fori": (nested, lambda: [RNG.standard_normal((4,)).astype(np.float32)]),
    "zero_trips": (lambda x: tessel.lax.fori_loop(2, 2, lambda i, a: a + 1.0, x),
                   lambda: [np.arange(3, dtype=np.float32)]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_unrolled_loop_computes_what_the_loop_computes(case):
    fn, make_args = CASES[case]
    args = make_args()
    module = tessel.jit(fn).lower(*args).module
    assert loops(module) > 0
    out, changed = unrolled(module)
    assert changed and loops(out) == 0, out
    for want, got in zip(evaluate(module, args), evaluate(out, args)):
        np.testing.assert_array_equal(got, want)


def test_copies_read_carried_values_directly():
    # The body's reads of its parameter become the carried values: no tuple is rebuilt
    # between copies, so the loop counter is a chain of adds of constants.
    module = tessel.jit(lambda x: tessel.lax.fori_loop(0, 3, lambda i, a: a * 2.0, x)).lower(
        np.ones(2, np.float32)).module
    out, _ = unrolled(module)
    opcodes = [i.opcode for i in out.entry.instructions]
    # tuples: the loop's result and the root; none between copies
    assert opcodes.count("multiply") == 3 and opcodes.count("tuple") == 2, out


def test_loops_over_the_size_limit_stay():
    module = tessel.jit(lambda x: tessel.lax.fori_loop(0, 50, lambda i, a: tnp.tanh(a) + 1.0, x)).lower(
        np.ones(2, np.float32)).module
    body = next(i for i in module.entry.instructions if i.opcode == "while").attrs["body"]
    limit = 50 * unrolled_size(body)
    out, changed = unrolled(module, max_instructions=limit - 1)
    assert not changed and loops(out) == 1
    out, changed = unrolled(module, max_instructions=limit)
    assert changed and loops(out) == 0


def test_loops_without_a_trip_count_stay():
    module = tessel.jit(lambda x: tessel.lax.while_loop(lambda a: tnp.sum(a) < 10.0, lambda a: a * 2.0, x)).lower(
        np.ones(2, np.float32)).module
    out, changed = unrolled(module)
    assert not changed and loops(out) == 1
