"""CPU codegen, control flow (kernels_control.py): while, conditional and call as
nested computations compiled to native functions with their own buffer plans, against
the interpreter -- tuple states, loops that never run, nested loops and branches,
branch index clamping (pred and integer), bodies that return their parameters (output
aliases), constants and thread-pool-sized kernels inside bodies."""
from __future__ import annotations

import numpy as np
import pytest

import tessel
import tessel.numpy as tnp
from tessel import lax
from tessel.backends.interpreter import evaluate
from tessel.compiler.ir import Builder, Module, Shape
from tessel.runtime import backends


def assert_cpu_matches_interpreter(f, *args):
    got = tessel.jit(f, backend="cpu")(*args)
    want = tessel.jit(f, backend="interpreter")(*args)
    got, want = (got if isinstance(got, tuple) else (got,)), (want if isinstance(want, tuple) else (want,))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        g, w = np.asarray(g), np.asarray(w)
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)


X = np.arange(-3, 9, dtype=np.float32).reshape(3, 4)


@pytest.mark.parametrize("n", [0, 1, 5])
def test_fori_loop(n):
    assert_cpu_matches_interpreter(lambda x, n: lax.fori_loop(0, n, lambda k, v: v * 0.5 + k.astype(np.float32), x),
                                   X, np.array(n, np.int32))


def test_while_with_tuple_state_and_reduction():
    def f(x, limit):
        def body(c):
            i, v, total = c
            return i + 1, tnp.tanh(v) * np.float32(1.5), total + tnp.sum(v, axis=0)
        return lax.while_loop(lambda c: c[0] < limit, body, (np.int32(0), x, tnp.zeros(4, np.float32)))
    assert_cpu_matches_interpreter(f, X, np.array(4, np.int32))
    assert_cpu_matches_interpreter(f, X, np.array(-1, np.int32))


def test_while_body_returning_its_parameters():
    # the body returns part of its state unchanged: an output the nested plan aliases
    def f(x, y):
        return lax.while_loop(lambda c: c[0] < 3, lambda c: (c[0] + 1, c[1], c[2] + c[1]), (np.int32(0), x, y))
    assert_cpu_matches_interpreter(f, X, X * 2)


def test_nested_loops_and_branches():
    def f(x, n):
        def outer(k, v):
            inner = lax.fori_loop(0, k, lambda j, w: w + j.astype(np.float32), v)
            return lax.cond(k % 2 == 0, lambda w: w * 2, lambda w: w - 1, inner)
        return lax.fori_loop(0, n, outer, x)
    assert_cpu_matches_interpreter(f, X, np.array(4, np.int32))


@pytest.mark.parametrize("pred", [True, False])
def test_cond_on_pred(pred):
    assert_cpu_matches_interpreter(lambda p, x: lax.cond(p, lambda v: tnp.exp(v), lambda v: v * v, x),
                                   np.array(pred), X)


@pytest.mark.parametrize("index", [-5, 0, 1, 2, 3, 100])
def test_switch_clamps_the_index(index):
    branches = [lambda v: v + 1, lambda v: v * 3, lambda v: tnp.max(v) - v]
    assert_cpu_matches_interpreter(lambda i, x: lax.switch(i, branches, x), np.array(index, np.int32), X)


def test_cond_with_tuple_operands_and_results():
    def f(p, x, y):
        return lax.cond(p, lambda a, b: (a + b, a @ b.T), lambda a, b: (a - b, b @ a.T), x, y)
    assert_cpu_matches_interpreter(f, np.array(True), X, X + 1)
    assert_cpu_matches_interpreter(f, np.array(False), X, X + 1)


def test_large_body_runs_on_the_pool():
    x = np.random.default_rng(0).standard_normal((512, 1024)).astype(np.float32)
    assert_cpu_matches_interpreter(lambda x: lax.fori_loop(0, 2, lambda k, v: tnp.tanh(v) + v * 0.5, x), x)


def test_call():
    module = Module("m")
    b = Builder(module, "callee")
    p, q = b.parameter(Shape("f32", (3, 4))), b.parameter(Shape("f32", (3, 4)))
    callee = b.build(b.emit("tuple", [b.emit("multiply", [p, q]), p]))
    b = Builder(module, "main")
    x, y = b.parameter(Shape("f32", (3, 4))), b.parameter(Shape("f32", (3, 4)))
    called = b.emit("call", [x, y], attrs={"to_apply": callee})
    first = b.emit("get_tuple_element", [called], attrs={"index": 0})
    b.build(b.emit("add", [first, y]), entry=True)
    want = evaluate(module, [X, X * 2])
    (got,) = backends.get("cpu").compile(module)([X, X * 2])
    np.testing.assert_array_equal(got, want)


def test_scan_and_indexed_updates_in_a_loop():
    """scan (a while over dynamic_slice / dynamic_update_slice) and a gather feeding a
    dynamic_update_slice inside a fori_loop body."""
    xs = np.random.default_rng(0).standard_normal((7, 5)).astype(np.float32)

    def scan(xs):
        def step(c, x):
            c = tnp.tanh(c * 0.9 + x)
            return c, c.sum()
        return lax.scan(step, tnp.zeros(5, np.float32), xs)
    assert_cpu_matches_interpreter(scan, xs)

    def rows(x, idx):
        body = lambda k, acc: lax.dynamic_update_slice(acc, x[idx[k] % 5][None], (k, np.int32(0)))  # noqa: E731
        return lax.fori_loop(0, 4, body, tnp.zeros((4, 5), np.float32))
    assert_cpu_matches_interpreter(rows, np.arange(25, dtype=np.float32).reshape(5, 5),
                                   np.array([3, 1, 4, 1], np.int32))


# ----------------------------------------------------------------------------- loop state in place

def _program(f, *args):
    from tessel.backends.cpu import codegen
    return codegen.compile_program(tessel.jit(f).lower(*args).compile().module)


def _scan_ys(xs):
    def step(c, x):
        c = c * np.float32(0.5) + x
        return c, (c * np.float32(2.0), c.sum())
    c, (ys, sums) = lax.scan(step, tnp.zeros(xs.shape[1:], np.float32), xs)
    return c, ys, sums


@pytest.mark.parametrize("n", [1, 7, 33])
def test_scan_outputs_are_updated_in_place(n):
    """The stacked outputs of a scan (a dynamic_update_slice per step) and its xs
    (returned unchanged) stay in the loop state: per iteration only the counter and
    the carry are copied, whatever n -- a linear-time scan, not a quadratic one."""
    xs = np.random.default_rng(n).standard_normal((n, 5)).astype(np.float32)
    assert_cpu_matches_interpreter(_scan_ys, xs)
    program = _program(_scan_ys, xs)
    (copied,) = program.loop_copy_bytes.values()
    assert copied <= 4 + 5 * 4      # at most the s32 counter and the f32[5] carry
    body_ir = program.ir.split("define internal void @\"tessel.comp.while_body")[1].split("\ndefine ")[0]
    assert f"i64 {n * 5 * 4}, i1 false)" not in body_ir       # no memcpy of the stacked ys


def test_dynamic_update_slice_of_a_value_still_needed_is_copied():
    # the operand of the update is read again afterwards: the update must not clobber it
    def f(x, u, k):
        def body(i, c):
            acc, keep = c
            updated = lax.dynamic_update_slice(keep, u, (i, np.int32(0)))
            return acc + keep.sum() + updated.sum(), keep
        return lax.fori_loop(0, k, body, (np.float32(0), x))
    x = np.arange(15, dtype=np.float32).reshape(5, 3)
    assert_cpu_matches_interpreter(f, x, np.full((1, 3), 100, np.float32), np.array(4, np.int32))


def test_swapped_state_goes_through_copies():
    def f(a, b, n):
        return lax.fori_loop(0, n, lambda i, c: (-c[1], c[0] * np.float32(2)), (a, b))
    assert_cpu_matches_interpreter(f, X, X + 100, np.array(5, np.int32))


def test_nested_scans_update_in_place():
    def f(xs):
        def outer(c, row):
            inner_c, ys = lax.scan(lambda c, x: (c + x, c * x), c, row)
            return inner_c, ys
        return lax.scan(outer, np.float32(1), xs)
    xs = np.random.default_rng(1).standard_normal((6, 9)).astype(np.float32)
    assert_cpu_matches_interpreter(f, xs)
    program = _program(f, xs)
    assert len(program.loop_copy_bytes) == 2
    assert max(program.loop_copy_bytes.values()) <= 8      # counters and scalar carries only
