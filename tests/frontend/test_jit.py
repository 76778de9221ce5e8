"""tessel.jit: caching by signature, the staged API, pytrees, errors, threads."""
import threading

import numpy as np
import pytest

import tessel
import tessel.numpy as tnp
from tessel.frontend.errors import ConcretizationError, TesselError, TraceError


def f32(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_jit_runs_and_caches_per_signature():
    @tessel.jit
    def affine(x, w, b):
        return x @ w + b

    x, w, b = f32(4, 3), f32(3, 2), f32(2)
    np.testing.assert_allclose(affine(x, w, b), x @ w + b, rtol=1e-6)
    affine(x * 2, w, b)
    assert affine.trace_count == 1 and affine.cache_size() == 1
    affine(f32(5, 3), w, b)                     # new shape -> new compile
    affine(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64))
    assert affine.cache_size() == 3


def test_decorator_forms_and_backend_choice():
    @tessel.jit(backend="interpreter")
    def double(x):
        return x * 2

    assert double.backend == "interpreter"
    np.testing.assert_array_equal(double(np.arange(3)), [0, 2, 4])
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        tessel.jit(lambda x: x, backend="gpu")


def test_pytrees_in_and_out():
    @tessel.jit
    def f(params, xs):
        a, (b, c) = xs
        return {"sum": params["w"] + a, "pair": [b * c, None], "const": 3.0}

    params = {"w": f32(3)}
    xs = (f32(3, seed=1), (f32(2, seed=2), f32(2, seed=3)))
    out = f(params, xs)
    assert set(out) == {"sum", "pair", "const"}
    assert out["pair"][1] is None
    np.testing.assert_allclose(out["sum"], params["w"] + xs[0])
    np.testing.assert_allclose(out["pair"][0], xs[1][0] * xs[1][1])
    assert float(out["const"]) == 3.0


def test_static_argnums_and_argnames():
    def power(x, n, *, scale=1.0):
        y = x
        for _ in range(n - 1):      # Python control flow on a static value is fine
            y = y * x
        return y * scale

    f = tessel.jit(power, static_argnums=1, static_argnames="scale")
    x = f32(3)
    np.testing.assert_allclose(f(x, 3), x ** 3, rtol=1e-6)
    np.testing.assert_allclose(f(x, 2, scale=2.0), 2 * x ** 2, rtol=1e-6)
    f(x, 3)
    assert f.cache_size() == 2
    with pytest.raises(TypeError, match="static argument n must be hashable"):
        f(x, [3])


def test_lower_with_shape_dtype_and_compile():
    @tessel.jit
    def f(x, y):
        return tnp.tanh(x) + y

    lowered = f.lower(tessel.ShapeDtype((2, 3), "float32"), tessel.ShapeDtype((3,), np.float32))
    text = lowered.as_text()
    assert "ENTRY main" in text and "tanh(" in text and "broadcast_in_dim(" in text
    assert lowered.as_dot().startswith("digraph")
    compiled = lowered.compile()
    assert compiled.in_avals[0].dims == (2, 3)
    assert str(compiled.out_avals) == "f32[2,3]"
    x, y = f32(2, 3), f32(3)
    np.testing.assert_allclose(compiled(x, y), np.tanh(x) + y, rtol=1e-6)
    assert "tanh(" in compiled.as_text()


def test_compiled_call_lists_every_mismatch():
    @tessel.jit
    def f(params, x):
        return params["w"] @ x

    compiled = f.lower({"w": f32(2, 3)}, f32(3)).compile()
    with pytest.raises(TypeError) as info:
        compiled({"w": f32(2, 4)}, np.zeros(3, np.float64))
    message = str(info.value)
    assert "2 argument(s) do not match" in message
    assert "params['w']: expected f32[2, 3], given f32[2, 4]" in message
    assert "x: expected f32[3], given f64[3]" in message
    with pytest.raises(TypeError, match=r"args\[0\]: dict missing keys \['w'\]"):
        compiled({"v": f32(2, 3)}, f32(3))


def test_bad_argument_types_are_named():
    f = tessel.jit(lambda x: x + 1)
    with pytest.raises(TypeError, match="argument x must be an array or a number, given str"):
        f("hello")
    with pytest.raises(TypeError, match="unsupported dtype"):
        f(np.zeros(2, np.complex64))


def test_shape_error_names_user_line():
    @tessel.jit
    def f(a, b):
        return a @ b            # the line the error must name

    with pytest.raises(TesselError) as info:
        f(f32(2, 3), f32(4, 5))
    line = test_shape_error_names_user_line.__code__.co_firstlineno + 3
    assert f"test_jit.py:{line}" in str(info.value)


@pytest.mark.parametrize("body", [
    lambda x: x if x.sum() > 0 else -x,
    lambda x: int(x[0]),
    lambda x: float(x.sum()),
    lambda x: [x for _ in range(2) if bool(x[0])],
])
def test_python_control_flow_on_tracers_is_caught(body):
    with pytest.raises(ConcretizationError) as info:
        tessel.jit(body)(f32(3))
    message = str(info.value)
    assert "test_jit.py:" in message
    for way_out in ("tessel.numpy.where", "tessel.lax.cond", "tessel.lax.fori_loop", "static_argnums"):
        assert way_out in message


def test_while_on_tracer_is_caught():
    def f(x):
        while x.sum() < 10:
            x = x * 2
        return x

    with pytest.raises(ConcretizationError, match="while_loop"):
        tessel.jit(f)(f32(3))


def test_escaped_tracer_is_reported():
    leaked = []

    @tessel.jit
    def f(x):
        leaked.append(x)
        return x

    f(f32(2))
    g = tessel.jit(lambda y: y + leaked[0])
    with pytest.raises(TraceError, match="escaped"):
        g(f32(2))


def test_nested_jit_inlines():
    inner = tessel.jit(lambda x: x * 3)
    outer = tessel.jit(lambda x: inner(x) + 1)
    np.testing.assert_allclose(outer(f32(3)), f32(3) * 3 + 1, rtol=1e-6)
    assert inner.trace_count == 0


def test_closed_over_numpy_arrays_become_constants():
    table = np.arange(6, dtype=np.float32).reshape(2, 3)
    f = tessel.jit(lambda x: x + table)
    assert " constant(" in f.lower(f32(2, 3)).as_text()
    np.testing.assert_allclose(f(f32(2, 3)), f32(2, 3) + table)


def test_threads_compile_each_signature_once():
    @tessel.jit
    def f(x):
        return tnp.sum(x * x, axis=-1)

    shapes = [(4,), (2, 3), (5,), (1, 7)]
    inputs = [np.full(s, 1.5, np.float32) for s in shapes]
    errors, results = [], {}

    def worker(k):
        try:
            for i in range(6):
                x = inputs[(k + i) % len(inputs)]
                results[(k, i)] = (x.shape, f(x))
        except Exception as e:      # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert f.trace_count == len(shapes) and f.cache_size() == len(shapes)
    for shape, value in results.values():
        np.testing.assert_allclose(value, np.sum(np.full(shape, 1.5 ** 2), axis=-1), rtol=1e-6)


def test_python_scalar_arguments_are_weakly_typed():
    """NEP 50: a Python float argument does not widen a float32 array, as in NumPy."""
    f = tessel.jit(lambda x, s: x * s + s * 2)
    x = f32(3)
    out = f(x, 0.5)
    want = x * 0.5 + 0.5 * 2
    assert out.dtype == want.dtype == np.float32
    np.testing.assert_allclose(out, want, rtol=1e-6)
    assert f(np.arange(3, dtype=np.int8), 3).dtype == np.int8
    assert f(x, np.float64(0.5)).dtype == np.float64      # NumPy scalars are strong


def test_python_builtins_on_tracers():
    f = tessel.jit(lambda x: (divmod(x, 3), round(x * 0.5), tnp.asarray([x[0], x[1] * 2])))
    x = np.array([7.0, -4.0, 5.0])
    (q, r), rounded, stacked = f(x)
    np.testing.assert_array_equal(q, x // 3)
    np.testing.assert_array_equal(r, x % 3)
    np.testing.assert_array_equal(rounded, np.round(x * 0.5))
    np.testing.assert_array_equal(stacked, [7.0, -8.0])


def test_compile_optimizes_and_reports_costs_and_memory():
    @tessel.jit
    def mlp(w1, w2, x):
        h = tnp.maximum(x @ w1, 0.0)
        return tessel.nn.softmax(h @ w2)

    args = (f32(16, 32), f32(32, 8, seed=1), f32(4, 16, seed=2))
    lowered = mlp.lower(*args)
    compiled = lowered.compile()
    assert "fusion(" not in lowered.as_text()          # the traced module is kept as traced
    assert "fusion(" in compiled.as_text()             # the executable runs the optimized one
    assert compiled.pass_report.total_seconds() > 0
    flops = lowered.cost_analysis()["flops"]
    assert flops >= 2 * (4 * 16 * 32 + 4 * 32 * 8)     # the two matmuls, at least
    assert compiled.cost_analysis()["flops"] >= 2 * (4 * 16 * 32 + 4 * 32 * 8)
    memory = compiled.memory_analysis()
    assert memory.argument_bytes == sum(a.nbytes for a in args)
    assert memory.output_bytes == 4 * 8 * 4
    want = mlp.fun(*args)
    np.testing.assert_allclose(compiled(*args), want, rtol=1e-5)
