"""Every VJP rule against central finite differences in float64 on random inputs."""
import numpy as np
import pytest

import tessel
import tessel.numpy as tnp
from tessel import lax, nn

from autodiff_checks import check_grad

rng = np.random.default_rng(0)


def r(*shape, lo=-1.0, hi=1.0):
    return rng.uniform(lo, hi, shape)


POS = dict(lo=0.5, hi=2.0)

UNARY = {
    "negate": (tnp.negative, r(3, 4)),
    "abs": (tnp.abs, r(3, 4)),
    "exp": (tnp.exp, r(3, 4)),
    "log": (tnp.log, r(3, 4, **POS)),
    "log1p": (tnp.log1p, r(3, 4, **POS)),
    "expm1": (tnp.expm1, r(3, 4)),
    "sqrt": (tnp.sqrt, r(3, 4, **POS)),
    "rsqrt": (lambda x: 1 / tnp.sqrt(x), r(3, 4, **POS)),
    "tanh": (tnp.tanh, r(3, 4)),
    "logistic": (nn.sigmoid, r(3, 4)),
    "sin": (tnp.sin, r(3, 4)),
    "cos": (tnp.cos, r(3, 4)),
    "erf": (lambda x: nn.gelu(x, approximate=False), r(3, 4)),
    "sign_floor_ceil_round": (lambda x: x * (tnp.sign(x) + tnp.floor(x) + tnp.ceil(x) + tnp.round(x)),
                              r(3, 4) * 3),
    "square_reciprocal": (lambda x: tnp.square(x) + tnp.reciprocal(x), r(5, **POS)),
    "log2_exp2": (lambda x: tnp.log2(x) + tnp.exp2(x) + tnp.log10(x), r(5, **POS)),
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary(name):
    f, x = UNARY[name]
    check_grad(f, x)


BINARY = {
    "add_broadcast": (tnp.add, r(3, 1), r(1, 4)),
    "subtract_scalar_row": (tnp.subtract, r(3, 4), r(4)),
    "multiply_broadcast": (tnp.multiply, r(2, 3, 1), r(3, 4)),
    "divide": (tnp.divide, r(3, 4), r(3, 4, **POS)),
    "power": (tnp.power, r(3, 4, **POS), r(3, 4)),
    "maximum": (tnp.maximum, r(3, 4), r(3, 4)),
    "minimum": (tnp.minimum, r(3, 4), r(1, 4)),
    "arctan2": (tnp.arctan2, r(3, 4), r(3, 4)),
    "fmod": (tnp.fmod, r(3, 4, lo=1.0, hi=3.0), r(3, 4, lo=0.3, hi=0.7)),
    "remainder": (tnp.remainder, r(3, 4, lo=1.0, hi=3.0), r(3, 4, lo=0.3, hi=0.7)),
    "where": (lambda a, b: tnp.where(a > b, a * 2, b ** 2), r(3, 4), r(3, 4)),
    "clip_arrays": (lambda x, lo: lax.clamp(lo, x, lo + 0.5), r(3, 4), r(3, 4)),
    "clip_scalars": (lambda x: tnp.clip(x, -0.3, 0.4), r(3, 4)),
}


@pytest.mark.parametrize("name", sorted(BINARY))
def test_elementwise_binary(name):
    f, *args = BINARY[name]
    check_grad(f, *args)


def test_relu_and_pow_with_python_scalars():
    check_grad(lambda x: tnp.maximum(x, 0) ** 3 + 2.0 ** x, r(4, 3))


REDUCTIONS = {
    "sum_all": lambda x: tnp.sum(x),
    "sum_axis": lambda x: tnp.sum(x, axis=1),
    "sum_axes_keepdims": lambda x: tnp.sum(x, axis=(0, 2), keepdims=True),
    "mean_keepdims": lambda x: tnp.mean(x, axis=-1, keepdims=True),
    "max_axis": lambda x: tnp.max(x, axis=1),
    "min_keepdims": lambda x: tnp.min(x, axis=0, keepdims=True),
    "prod_axis": lambda x: tnp.prod(x, axis=2),
    "var_std": lambda x: tnp.var(x, axis=0) + tnp.std(x, axis=1).sum(),
    "logsumexp": lambda x: nn.logsumexp(x, axis=-1),
    "softmax": lambda x: nn.softmax(x, axis=1),
    "layer_norm": lambda x: nn.layer_norm(x),
    "cumsum": lambda x: tnp.cumsum(x, axis=1),
    "sort": lambda x: tnp.sort(x, axis=-1) * np.arange(4.0),
}


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
def test_reduction(name):
    check_grad(REDUCTIONS[name], r(2, 3, 4))


def test_max_with_ties_splits_the_gradient_like_jax():
    x = np.array([1.0, 3.0, 3.0, 2.0])
    np.testing.assert_allclose(tessel.grad(lambda x: tnp.max(x))(x), [0, 0.5, 0.5, 0])
    np.testing.assert_allclose(tessel.grad(lambda x: tnp.maximum(x, 3.0).sum())(x), [0, 0.5, 0.5, 0])


def with_zeros(shape, zeros):
    """Values of magnitude 0.5..1.5, either sign, with exact zeros at `zeros`."""
    x = r(*shape, lo=0.5, hi=1.5) * rng.choice([-1.0, 1.0], shape)
    for index in zeros:
        x[index] = 0.0
    return x


# prod's gradient is the product of the other elements: exact with zeros (one zero: only
# that element gets a gradient; two in one product: none does), never prod / x.
PROD_WITH_ZEROS = {
    "axis_one_zero": (lambda x: tnp.prod(x, axis=1), (3, 5, 2), [(0, 2, 1)]),
    "axis_two_zeros": (lambda x: tnp.prod(x, axis=1), (3, 5, 2), [(1, 0, 0), (1, 3, 0), (2, 4, 1)]),
    "all_one_zero": (lambda x: tnp.prod(x), (3, 4), [(2, 1)]),
    "all_two_zeros": (lambda x: tnp.prod(x), (3, 4), [(0, 0), (2, 3)]),
    "keepdims_one_zero": (lambda x: tnp.prod(x, axis=(0, 2), keepdims=True), (3, 4, 5), [(1, 2, 3)]),
    "keepdims_two_zeros": (lambda x: tnp.prod(x, axis=(0, 2), keepdims=True), (3, 4, 5),
                           [(0, 1, 0), (2, 1, 4)]),
    "odd_length_no_zero": (lambda x: tnp.prod(x, axis=-1), (2, 7), []),
    "initial_times_prod": (lambda x: tnp.prod(x, axis=0, initial=3.0), (5, 3), [(4, 2)]),
}


@pytest.mark.parametrize("name", sorted(PROD_WITH_ZEROS))
def test_prod_with_zeros_matches_differences(name):
    f, shape, zeros = PROD_WITH_ZEROS[name]
    check_grad(f, with_zeros(shape, zeros))


def test_prod_gradient_is_the_product_of_the_others():
    x = np.array([2.0, 0.0, 3.0, 5.0, 7.0])
    np.testing.assert_array_equal(tessel.grad(lambda x: tnp.prod(x))(x), [0, 210, 0, 0, 0])
    x[3] = 0.0
    np.testing.assert_array_equal(tessel.grad(lambda x: tnp.prod(x))(x), np.zeros(5))
    empty = tessel.grad(lambda x: tnp.prod(x, axis=1).sum())(np.ones((3, 0)))
    assert empty.shape == (3, 0)


def test_prod_second_derivative_with_a_zero():
    """d2 prod / dx_i dx_j is the product of the elements other than i and j, also where
    one of them is zero (grad of grad goes through the same multiplies)."""
    x = np.array([2.0, 0.0, 3.0, 5.0])
    hessian_row = tessel.grad(lambda x: tessel.grad(lambda y: tnp.prod(y))(x)[1])(x)
    np.testing.assert_array_equal(hessian_row, [15, 0, 10, 6])


PAD_WEIGHTS = rng.standard_normal((3, 5, 7))

DATA = {
    "reshape_transpose": lambda x: tnp.transpose(tnp.reshape(x, (4, 6)))[:, 1:],
    "broadcast_to": lambda x: tnp.broadcast_to(x[:, :1, :], (5, 2, 3, 4)) * np.arange(4.0),
    "slice_strided": lambda x: x[1:, ::2, 1:4:2],
    "slice_negative_stride": lambda x: x[:, ::-1, ::-2],
    "concatenate": lambda x: tnp.concatenate([x, x[:, :1] * 3, tnp.exp(x)], axis=1),
    "stack_split": lambda x: tnp.stack(tnp.split(x, 2, axis=2), axis=0) ** 2,
    "pad_constant": lambda x: tnp.pad(x, ((1, 0), (0, 2), (2, 1))) * PAD_WEIGHTS,
    "pad_reflect": lambda x: tnp.pad(x, ((0, 0), (1, 1), (2, 0)), mode="reflect"),
    "gather_repeated_indices": lambda x: x[:, np.array([0, 2, 0, 0, 1])],
    "gather_two_arrays": lambda x: x[np.array([1, 0, 1]), :, np.array([3, 3, 0])],
    "take": lambda x: tnp.take(x, np.array([[2, 2], [1, 0]]), axis=2),
    "roll_flip": lambda x: tnp.roll(tnp.flip(x, axis=1), 2, axis=2),
    "triu_diagonal": lambda x: tnp.triu(x[0]) + tnp.diagonal(x, axis1=1, axis2=2).sum(),
    "convert_f32_roundtrip": lambda x: tnp.astype(tnp.astype(x, np.float32), np.float64) * 0 + x,
}


@pytest.mark.parametrize("name", sorted(DATA))
def test_data_movement(name):
    check_grad(DATA[name], r(2, 3, 4))


def test_convert_f64_to_f32_and_back_gives_f64_gradient():
    x = r(5)
    g = tessel.grad(lambda x: tnp.sum(tnp.astype(x, np.float32) ** 2))(x)
    assert g.dtype == np.float64
    np.testing.assert_allclose(g, 2 * x, rtol=1e-6)
    g32 = tessel.grad(lambda x: tnp.sum(tnp.astype(x, np.float64) ** 2))(x.astype(np.float32))
    assert g32.dtype == np.float32
    np.testing.assert_allclose(g32, 2 * x, rtol=1e-6)


def test_gather_with_traced_indices_and_repeats():
    x = r(5, 3)
    idx = np.array([4, 0, 4, 4, 2])
    check_grad(lambda x, i: x[i] * 2, x, idx, argnums=(0,))
    g = tessel.grad(lambda x, i: x[i].sum())(x, idx)
    np.testing.assert_allclose(g[:, 0], [1, 0, 1, 0, 3])


def test_dynamic_slice_and_update_slice():
    x, u = r(4, 5), r(2, 3)
    check_grad(lambda x, i: lax.dynamic_slice(x, (i, 1), (2, 3)) ** 2, x, np.int32(1), argnums=(0,))
    check_grad(lambda x, u, i: lax.dynamic_update_slice(x, u * x[:2, :3], (i, np.int32(2))) ** 2,
               x, u, np.int32(2), argnums=(0, 1))


DOTS = {
    "matmul": (tnp.matmul, r(3, 4), r(4, 2)),
    "matvec": (tnp.matmul, r(3, 4), r(4)),
    "batched_matmul": (tnp.matmul, r(2, 3, 4), r(2, 4, 5)),
    "broadcast_batch_matmul": (tnp.matmul, r(2, 3, 4), r(4, 5)),
    "einsum_batch_dims": (lambda a, b: tnp.einsum("bij,jbk->bki", a, b), r(2, 3, 4), r(4, 2, 5)),
    "dot_general_batch_contract": (
        lambda a, b: lax.dot_general(a, b, (((1, 3), (2, 0)), ((0,), (1,)))),
        r(2, 3, 4, 5), r(5, 2, 3, 6)),
    "outer_tensordot": (lambda a, b: tnp.tensordot(a, b, axes=([0], [1])), r(3, 4), r(2, 3)),
}


@pytest.mark.parametrize("name", sorted(DOTS))
def test_dot_general(name):
    f, *args = DOTS[name]
    check_grad(f, *args)


CONVS = {  # name -> (input shape, kernel shape, kwargs)
    "nhwc_same": ((2, 5, 5, 3), (3, 3, 3, 4), dict(window_strides=(1, 1), padding="SAME",
                                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))),
    "strided_padded": ((1, 3, 7, 6), (2, 3, 3, 2), dict(window_strides=(2, 3), padding=((1, 2), (0, 1)))),
    "dilated": ((2, 2, 7, 7), (3, 2, 2, 3), dict(window_strides=(1, 2), padding=((1, 1), (2, 0)),
                                                  rhs_dilation=(2, 1))),
    "lhs_dilated": ((1, 2, 4, 3), (2, 2, 3, 2), dict(window_strides=(1, 1), padding=((2, 2), (1, 1)),
                                                      lhs_dilation=(2, 1))),
    "feature_groups": ((2, 4, 5, 5), (6, 2, 3, 3), dict(window_strides=(2, 1), padding=((1, 1), (1, 1)),
                                                         feature_group_count=2)),
    "batch_groups": ((4, 2, 5, 4), (6, 2, 2, 2), dict(window_strides=(1, 1), padding=((0, 0), (1, 0)),
                                                       batch_group_count=2)),
    "conv1d": ((2, 3, 9), (4, 3, 3), dict(window_strides=(2,), padding=((1, 1),))),
}


@pytest.mark.parametrize("name", sorted(CONVS))
def test_convolution(name):
    xs, ks, kw = CONVS[name]
    check_grad(lambda x, k: lax.conv_general_dilated(x, k, **kw), r(*xs), r(*ks))


POOLS = {
    "max_pool": lambda x: nn.max_pool(x, (2, 2), strides=(2, 1)),
    "max_pool_same": lambda x: nn.max_pool(x, (3, 2), strides=(2, 2), padding="SAME"),
    "avg_pool_padded": lambda x: nn.avg_pool(x, (2, 3), strides=(1, 2), padding="SAME"),
    "min_window": lambda x: lax.reduce_window(x, np.inf, "min", (1, 2, 2, 1), (1, 1, 2, 1)),
    "sum_window_dilated": lambda x: lax.reduce_window(x, 0.0, "add", (1, 2, 2, 1), (1, 2, 1, 1),
                                                      padding=((0, 0), (1, 0), (0, 1), (0, 0)),
                                                      base_dilation=(1, 2, 1, 1),
                                                      window_dilation=(1, 1, 2, 1)),
}


@pytest.mark.parametrize("name", sorted(POOLS))
def test_reduce_window(name):
    check_grad(POOLS[name], r(2, 5, 6, 3))


def test_gather_gradient_of_an_out_of_range_index_goes_to_the_row_it_read():
    x = r(4, 2)
    f = lambda x, i: (x[i] * np.array([1.0, 2.0])).sum()   # a traced index is clamped
    np.testing.assert_allclose(tessel.jit(f, backend="interpreter")(x, np.int32(9)),
                               x[3, 0] + 2 * x[3, 1])
    g = tessel.jit(tessel.grad(f), backend="interpreter")(x, np.int32(9))
    np.testing.assert_allclose(g, [[0, 0], [0, 0], [0, 0], [1, 2]])


# ----------------------------------------------------------------------------- ops tessel.numpy never emits

def emit(opcode, operands, attrs=None, shape=None):
    from tessel.frontend import core
    return core.current_context().emit(opcode, [core.lift(o) for o in operands], attrs, shape)


def add_computation(dt):
    from tessel.frontend import core
    return core.current_context().reducer("add", dt)


def replace_computation(dt):
    from tessel.compiler.ir import Builder, Shape
    from tessel.frontend import core
    b = Builder(core.current_context().module, "replace")
    b.parameter(Shape(dt, ()), "old")
    return b.build(b.parameter(Shape(dt, ()), "new"))


def call_of(fn_name, x):
    """x -> call(sin(p) * p) through a `call` instruction."""
    from tessel.compiler.ir import Builder
    from tessel.frontend import core
    b = Builder(core.current_context().module, fn_name)
    p = b.parameter(x.aval, "p")
    comp = b.build(b.emit("multiply", [b.emit("sin", [p]), p]))
    return emit("call", [x], {"to_apply": comp})


SCATTER_DIMS = {"update_window_dims": (1,), "inserted_window_dims": (0,),
                "scatter_dims_to_operand_dims": (0,), "index_vector_dim": 1}

DIRECT = {
    "all_reduce_sum": lambda x: emit("all_reduce", [x * x], {"reduction": "sum"}),
    "all_reduce_mean": lambda x: emit("all_reduce", [tnp.sin(x)], {"reduction": "mean"}),
    "all_reduce_max": lambda x: emit("all_reduce", [x ** 3], {"reduction": "max"}),
    "call": lambda x: call_of("sin_times", x) * 2,
    "scatter_add": lambda x: emit("scatter", [x, np.array([[1], [3], [1]], np.int32), x[:3] ** 2],
                                  {**SCATTER_DIMS, "to_apply": add_computation(x.tdtype)}),
    "scatter_replace": lambda x: emit("scatter", [x * 3, np.array([[0], [2]], np.int32), tnp.exp(x[1:3])],
                                      {**SCATTER_DIMS, "to_apply": replace_computation(x.tdtype)}),
    "rsqrt": lambda x: emit("rsqrt", [x * x + 1]),
    "pad_negative_interior_and_traced_value": lambda x: emit(
        "pad", [x, x[0, 0] * 2], {"edge_padding_low": (-1, 2), "edge_padding_high": (2, -1),
                                  "interior_padding": (1, 2)}),
}


@pytest.mark.parametrize("name", sorted(DIRECT))
def test_ops_emitted_directly(name):
    check_grad(DIRECT[name], r(4, 3))
