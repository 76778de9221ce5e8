"""lax.cond / switch / while_loop / fori_loop / scan against Python references."""
import numpy as np
import pytest

import tessel
import tessel.numpy as tnp
from tessel import lax


def test_cond_picks_branch_and_captures_outer_values():
    bias = np.float32(10.0)

    @tessel.jit
    def f(p, x, y):
        scale = y * 2                     # an outer traced value captured by a branch
        return lax.cond(p, lambda a: a * scale + bias, lambda a: a - 1, x)

    x, y = np.arange(3, dtype=np.float32), np.float32(3.0)
    np.testing.assert_allclose(f(True, x, y), x * 6 + 10)
    np.testing.assert_allclose(f(False, x, y), x - 1)
    text = f.lower(True, x, y).as_text()
    assert "conditional(" in text and "branch_computations=" in text


def test_cond_branch_mismatch_is_an_error():
    with pytest.raises(TypeError, match="branch 1 output"):
        tessel.jit(lambda p, x: lax.cond(p, lambda a: a, lambda a: a.sum(), x))(True, np.ones(3))


def test_switch_clamps_index():
    f = tessel.jit(lambda i, x: lax.switch(i, [lambda a: a + 1, lambda a: a * 10, lambda a: -a], x))
    x = np.float64(2.0)
    assert [float(f(i, x)) for i in (-5, 0, 1, 2, 9)] == [3.0, 3.0, 20.0, -2.0, -2.0]


def test_while_loop_matches_python():
    def collatz_steps(n):
        def cond_fun(state):
            value, steps = state
            return value != 1

        def body_fun(state):
            value, steps = state
            nxt = tnp.where(value % 2 == 0, value // 2, 3 * value + 1)
            return nxt, steps + 1

        return lax.while_loop(cond_fun, body_fun, (n, np.int64(0)))[1]

    f = tessel.jit(collatz_steps)
    for n in (1, 6, 27):
        value, steps = n, 0
        while value != 1:
            value, steps = (value // 2 if value % 2 == 0 else 3 * value + 1), steps + 1
        assert int(f(np.int64(n))) == steps


def test_fori_loop_with_closure_and_traced_bound():
    @tessel.jit
    def f(x, w, n):
        return lax.fori_loop(0, n, lambda i, h: tnp.tanh(h @ w) + i, x)

    x, w = np.ones((2, 3)), np.eye(3) * 0.5
    h = x
    for i in range(4):
        h = np.tanh(h @ w) + i
    np.testing.assert_allclose(f(x, w, 4), h, rtol=1e-12)
    np.testing.assert_allclose(f(x, w, 0), x)


def test_nested_loops_capture_through_two_levels():
    @tessel.jit
    def f(x, k):
        def outer(i, acc):
            return lax.fori_loop(0, 3, lambda j, a: a + k * x, acc)   # k, x from two levels up
        return lax.fori_loop(0, 2, outer, tnp.zeros_like(x))

    x = np.arange(4.0)
    np.testing.assert_allclose(f(x, 0.5), 6 * 0.5 * x)


@pytest.mark.parametrize("reverse", [False, True])
def test_scan_cumulative_and_stacked_outputs(reverse):
    def step(carry, x):
        carry = carry * 0.5 + x
        return carry, {"c": carry, "sq": x * x}

    f = tessel.jit(lambda c0, xs: lax.scan(step, c0, xs, reverse=reverse))
    xs = np.random.default_rng(0).standard_normal((5, 3))
    c0 = np.zeros(3)
    carry, ys = f(c0, xs)
    c, cs = c0, []
    for x in (xs[::-1] if reverse else xs):
        c = c * 0.5 + x
        cs.append(c)
    if reverse:
        cs = cs[::-1]
    np.testing.assert_allclose(carry, c, rtol=1e-12)
    np.testing.assert_allclose(ys["c"], np.stack(cs), rtol=1e-12)
    np.testing.assert_allclose(ys["sq"], xs * xs)


def test_scan_lstm_style_loop_over_time():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((4, 4)) * 0.3
    xs = rng.standard_normal((6, 2, 4))

    def step(h, x):
        h = np.tanh(x + h @ w)
        return h, h

    h_final, hs = tessel.jit(lambda xs: lax.scan(step, np.zeros((2, 4)), xs))(xs)
    h = np.zeros((2, 4))
    for x in xs:
        h = np.tanh(x + h @ w)
    np.testing.assert_allclose(h_final, h, rtol=1e-12)
    np.testing.assert_allclose(hs[-1], h, rtol=1e-12)


def test_control_flow_runs_eagerly_too():
    out = lax.fori_loop(0, 3, lambda i, v: v * 2, np.float64(1.5))
    assert float(out) == 12.0
