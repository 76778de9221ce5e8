"""grad / value_and_grad / vjp: API, control flow, second derivatives, jit, errors, coverage."""
import numpy as np
import pytest

import tessel
import tessel.numpy as tnp
from tessel import lax
from tessel.compiler import ops
from tessel.frontend import autodiff, vjp_rules

from autodiff_checks import check_grad, numeric_grad

rng = np.random.default_rng(1)


# ----------------------------------------------------------------------------- coverage

def test_every_op_has_a_vjp_rule_or_a_reason():
    handled = set(vjp_rules.VJP_RULES) | set(vjp_rules.NON_DIFFERENTIABLE) | {"parameter"}
    missing = sorted(set(ops.OPS) - handled)
    assert not missing, f"ops with neither a VJP rule nor a reason: {missing}"
    assert not set(vjp_rules.VJP_RULES) & set(vjp_rules.NON_DIFFERENTIABLE)
    assert all(reason for reason in vjp_rules.NON_DIFFERENTIABLE.values())
    assert not (set(vjp_rules.VJP_RULES) | set(vjp_rules.NON_DIFFERENTIABLE)) - set(ops.OPS)


# ----------------------------------------------------------------------------- API

def test_grad_of_pytree_parameters_and_argnums():
    params = {"w": rng.standard_normal((3, 2)), "b": [rng.standard_normal(2), 1.5]}
    x = rng.standard_normal((4, 3))

    def loss(params, x):
        h = x @ params["w"] + params["b"][0]
        return tnp.sum(tnp.tanh(h) * params["b"][1])

    g = tessel.grad(loss)(params, x)
    assert set(g) == {"w", "b"} and isinstance(g["b"], list)
    t = np.tanh(x @ params["w"] + params["b"][0])
    dh = (1 - t ** 2) * 1.5
    np.testing.assert_allclose(g["w"], x.T @ dh, rtol=1e-12)
    np.testing.assert_allclose(g["b"][0], dh.sum(0), rtol=1e-12)
    np.testing.assert_allclose(g["b"][1], t.sum(), rtol=1e-12)
    gp, gx = tessel.grad(loss, argnums=(0, 1))(params, x)
    np.testing.assert_allclose(gx, dh @ params["w"].T, rtol=1e-12)
    np.testing.assert_allclose(gp["w"], g["w"])
    np.testing.assert_allclose(tessel.grad(loss, argnums=-1)(params, x), gx)


def test_value_and_grad_and_has_aux():
    x = rng.standard_normal(5)

    def f(x):
        return tnp.sum(x ** 2), {"mean": tnp.mean(x)}

    (value, aux), g = tessel.value_and_grad(f, has_aux=True)(x)
    np.testing.assert_allclose(value, np.sum(x ** 2))
    np.testing.assert_allclose(aux["mean"], x.mean())
    np.testing.assert_allclose(g, 2 * x)
    g2, aux2 = tessel.grad(f, has_aux=True)(x)
    np.testing.assert_allclose(g2, 2 * x)
    np.testing.assert_allclose(aux2["mean"], x.mean())
    v, g3 = tessel.value_and_grad(lambda x: tnp.sum(x ** 3))(x)
    np.testing.assert_allclose(v, np.sum(x ** 3))
    np.testing.assert_allclose(g3, 3 * x ** 2)


def test_vjp_of_a_vector_function_eager_and_traced():
    x, y = rng.standard_normal(4), rng.standard_normal(4)
    out, vjp_fn = tessel.vjp(lambda a, b: (a * b, tnp.sin(a)), x, y)
    np.testing.assert_allclose(out[0], x * y)
    ct = (np.ones(4), np.arange(4.0))
    gx, gy = vjp_fn(ct)
    np.testing.assert_allclose(gx, y + np.cos(x) * np.arange(4.0))
    np.testing.assert_allclose(gy, x)

    @tessel.jit
    def traced(x, y, c):
        out, vjp_fn = tessel.vjp(lambda a: a * y, x)
        return vjp_fn(c)[0]
    np.testing.assert_allclose(traced(x, y, np.arange(4.0)), y * np.arange(4.0))


def test_vjp_with_aux():
    x = rng.standard_normal(3)
    out, vjp_fn, aux = tessel.vjp(lambda a: (tnp.exp(a), {"n": tnp.sum(a)}), x, has_aux=True)
    np.testing.assert_allclose(out, np.exp(x))
    np.testing.assert_allclose(aux["n"], x.sum())
    (g,) = vjp_fn(np.ones(3))
    np.testing.assert_allclose(g, np.exp(x))


def test_grad_inside_jit_equals_grad_outside():
    w, x = rng.standard_normal((3, 3)), rng.standard_normal((5, 3))

    def loss(w, x):
        return tnp.mean(tnp.logaddexp(x @ w, 0.0) ** 2)

    eager = tessel.grad(loss)(w, x)
    for backend in ("interpreter", "cpu"):
        jitted = tessel.jit(tessel.grad(loss), backend=backend)(w, x)
        np.testing.assert_allclose(jitted, eager, rtol=1e-12)
    text = tessel.jit(tessel.grad(loss)).lower(w, x).as_text()
    assert text.count("ENTRY") == 1 and "dot_general" in text


def test_a_whole_training_step_compiles_as_one_program():
    w = rng.standard_normal((3, 2))
    x, y = rng.standard_normal((6, 3)), rng.standard_normal((6, 2))
    opt = tessel.optim.sgd(0.1)

    @tessel.jit
    def step(w, state, x, y):
        g = tessel.grad(lambda w: tnp.mean((x @ w - y) ** 2))(w)
        return opt.update(g, state, w)

    w1, _ = step(w, opt.init(w), x, y)
    np.testing.assert_allclose(w1, w - 0.1 * 2 * x.T @ (x @ w - y) / y.size, rtol=1e-12)


# ----------------------------------------------------------------------------- errors

def test_non_scalar_output_is_an_error():
    with pytest.raises(TypeError, match=r"scalar float output; the output was f64\[3\]"):
        tessel.grad(lambda x: x * 2)(np.ones(3))


def test_integer_input_is_an_error_naming_the_argument():
    def loss(params, x):
        return tnp.sum(params["w"] * x)
    with pytest.raises(TypeError, match=r"argument params\['w'\] has dtype s64"):
        tessel.grad(loss)({"w": np.arange(3)}, np.ones(3))


def test_bad_argnums_is_an_error():
    with pytest.raises(TypeError, match="argnums 3 out of range"):
        tessel.grad(lambda x: tnp.sum(x), argnums=3)(np.ones(3))


def test_while_loop_with_data_dependent_trip_count_is_a_clear_error():
    def f(x):
        return lax.while_loop(lambda c: c[1] < 5, lambda c: (c[0] * 1.5, c[1] + 1), (x, 0))[0].sum()
    with pytest.raises(TypeError, match="trip count is only known at run time.*fori_loop"):
        tessel.grad(f)(np.ones(2))


def test_vjp_cotangent_structure_is_checked():
    _, vjp_fn = tessel.vjp(lambda a: a * 2, np.ones(3))
    with pytest.raises(TypeError, match="cotangent"):
        vjp_fn(np.ones(4))


# ----------------------------------------------------------------------------- control flow

def test_cond_both_branches():
    def f(x, p):
        return lax.cond(p > 0, lambda a: tnp.sin(a) * x[0], lambda a: a ** 3, x)
    x = rng.standard_normal(3)
    check_grad(f, x, 1.0, argnums=(0,))
    check_grad(f, x, -1.0, argnums=(0,))


def test_switch_with_captured_values():
    w = rng.standard_normal(3)

    def f(x, w, i):
        branches = [lambda a: a * w, lambda a: tnp.exp(a) + w ** 2, lambda a: a.sum() * w]
        return lax.switch(i, branches, x)
    for i in range(3):
        check_grad(f, rng.standard_normal(3), w, np.int32(i), argnums=(0, 1))


def test_fori_loop():
    def f(x, w):
        return lax.fori_loop(0, 4, lambda i, c: tnp.tanh(c @ w) + i * 0.1, x)
    check_grad(f, rng.standard_normal((2, 3)), rng.standard_normal((3, 3)))


def test_scan_with_xs_and_stacked_ys():
    def f(h0, xs, w):
        def step(h, x):
            h = tnp.tanh(h * w + x)
            return h, h ** 2
        h, ys = lax.scan(step, h0, xs)
        return tnp.concatenate([h, ys.ravel()])
    check_grad(f, rng.standard_normal(3), rng.standard_normal((5, 3)), rng.standard_normal(3))


def test_reverse_scan_and_nested_loops():
    def f(x):
        def outer(i, c):
            return lax.fori_loop(0, 2, lambda j, d: tnp.sin(d) * 1.1, c) + x * 0.1
        carry, ys = lax.scan(lambda c, t: (c * t, c), x[0], x, reverse=True)
        return lax.fori_loop(0, 3, outer, x) * carry + ys.sum()
    check_grad(f, rng.uniform(0.5, 1.5, 4))


def test_grad_of_a_scan_inside_jit_matches_eager():
    def f(xs):
        return lax.scan(lambda c, x: (c * x + 1.0, c), 1.0, xs)[0]
    xs = rng.standard_normal(6)
    np.testing.assert_allclose(tessel.jit(tessel.grad(f))(xs), tessel.grad(f)(xs), rtol=1e-12)


# ----------------------------------------------------------------------------- second derivatives

def test_second_derivatives_of_scalar_functions():
    x = 0.7
    t = np.tanh(x)
    np.testing.assert_allclose(tessel.grad(tessel.grad(tnp.tanh))(x), -2 * t * (1 - t * t))
    np.testing.assert_allclose(tessel.grad(tessel.grad(tessel.grad(tnp.tanh)))(x),
                               -2 * (1 - t * t) * (1 - 3 * t * t))
    f = lambda x: tnp.sin(x) * x
    np.testing.assert_allclose(tessel.grad(tessel.grad(f))(x), 2 * np.cos(x) - x * np.sin(x))


def hvp(f, x, v):
    return tessel.grad(lambda x: tnp.vdot(tessel.grad(f)(x), v))(x)


HVP_FUNCTIONS = {
    "mlp_like": lambda x: tnp.sum(tnp.tanh(x.reshape(2, 3) @ np.arange(6.0).reshape(3, 2)) ** 2),
    "gather_scatter": lambda x: tnp.sum(x[np.array([0, 2, 2, 5, 0])] ** 3),
    "softmax_ce": lambda x: -tessel.nn.log_softmax(x)[2],
    "max_pool": lambda x: tnp.sum(tessel.nn.max_pool(x.reshape(1, 2, 3, 1), (2, 2), strides=(1, 1)) ** 2),
    "fori": lambda x: tnp.sum(lax.fori_loop(0, 3, lambda i, c: tnp.sin(c) * x, x)),
    "cond": lambda x: lax.cond(x[0] > 0, lambda a: tnp.sum(a ** 4), lambda a: tnp.sum(a), x),
    "sort": lambda x: tnp.sum(tnp.sort(x) ** 3 * np.arange(6.0)),
}


@pytest.mark.parametrize("name", sorted(HVP_FUNCTIONS))
def test_hessian_vector_product_matches_differences_of_gradients(name):
    f = HVP_FUNCTIONS[name]
    x, v = rng.uniform(0.2, 1.0, 6), rng.standard_normal(6)
    got = hvp(f, x, v)
    g = tessel.jit(tessel.grad(f), backend="interpreter")
    eps = 1e-5
    want = (g(x + eps * v) - g(x - eps * v)) / (2 * eps)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_grad_of_grad_with_closure_over_the_outer_variable():
    # d/dx [d/dy (x * y^2)]_{y=x} = d/dx 2 x^2 = 4 x  (no perturbation confusion)
    f = lambda x: tessel.grad(lambda y: x * y ** 2)(x)
    np.testing.assert_allclose(tessel.grad(f)(1.5), 6.0)
