"""Interpreter: gather and scatter against a literal, element-by-element transcription
of the StableHLO definitions (and against NumPy indexing for the common forms)."""
import numpy as np
import pytest

from tessel.backends.interpreter import Context, evaluate
from tessel.backends.interpreter.testing import one_op_module, reducer, run_op, scalar_computation
from tessel.compiler.ir import Builder, Shape

from op_cases import GATHERS, SCATTERS, assign_computation


def exact(got, want):
    want = np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, got.shape, want.dtype, want.shape)
    np.testing.assert_array_equal(got, want)


def index_vector(indices, batch_index, ivd):
    if ivd == indices.ndim:
        return [int(indices[tuple(batch_index)])]
    return [int(indices[tuple(batch_index[:ivd]) + (k,) + tuple(batch_index[ivd:])])
            for k in range(indices.shape[ivd])]


# ----------------------------------------------------------------------------- gather

def gather_reference(operand, indices, out_shape, offset_dims, collapsed_slice_dims, start_index_map,
                     index_vector_dim, slice_sizes, **_):
    rank = operand.ndim
    batch_dims = [d for d in range(len(out_shape)) if d not in offset_dims]
    out = np.empty(out_shape, operand.dtype)
    for out_index in np.ndindex(*out_shape):
        start = index_vector(indices, [out_index[d] for d in batch_dims], index_vector_dim)
        full_start = [0] * rank
        for k, d in enumerate(start_index_map):
            full_start[d] = min(max(start[k], 0), operand.shape[d] - slice_sizes[d])
        offsets = iter(out_index[d] for d in offset_dims)
        full_offset = [0 if d in collapsed_slice_dims else next(offsets) for d in range(rank)]
        out[out_index] = operand[tuple(s + o for s, o in zip(full_start, full_offset))]
    return out


@pytest.mark.parametrize("case", sorted(GATHERS))
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_gather_matches_definition(case, index_dtype):
    shape, indices, attrs = GATHERS[case]
    operand = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    indices = indices.astype(index_dtype)
    got = run_op("gather", operand, indices, attrs=attrs)
    exact(got, gather_reference(operand, indices, got.shape, **attrs))


def test_gather_common_forms_match_numpy():
    x = np.arange(15, dtype=np.int32).reshape(5, 3)
    idx = np.array([4, 0, 2, 2], np.int32)
    shape, _, attrs = GATHERS["rows"]
    exact(run_op("gather", x, idx, attrs=attrs), x[idx])
    shape, _, attrs = GATHERS["columns_offset_first"]
    y = np.arange(12, dtype=np.int32).reshape(3, 4)
    exact(run_op("gather", y, np.array([[3], [1]], np.int32), attrs=attrs), y[:, [3, 1]])


# ----------------------------------------------------------------------------- scatter

COMBINE = {"add": lambda a, b: a + b, "multiply": lambda a, b: a * b, "maximum": max, "minimum": min,
           "assign": lambda a, b: b, "or": lambda a, b: a | b}


def scatter_reference(operand, indices, updates, combine, update_window_dims, inserted_window_dims,
                      scatter_dims_to_operand_dims, index_vector_dim, store=lambda v: v, **_):
    out = operand.copy()
    rank = operand.ndim
    scatter_dims = [d for d in range(updates.ndim) if d not in update_window_dims]
    window_operand_dims = [d for d in range(rank) if d not in inserted_window_dims]
    window_size = [1] * rank
    for u, d in zip(update_window_dims, window_operand_dims):
        window_size[d] = updates.shape[u]
    for u_index in np.ndindex(*updates.shape):
        start = index_vector(indices, [u_index[d] for d in scatter_dims], index_vector_dim)
        full_start = [0] * rank
        for k, d in enumerate(scatter_dims_to_operand_dims):
            full_start[d] = start[k]
        if any(s < 0 or s + w > n for s, w, n in zip(full_start, window_size, operand.shape)):
            continue                                          # the whole window is skipped
        full_window = [0] * rank
        for u, d in zip(update_window_dims, window_operand_dims):
            full_window[d] = u_index[u]
        target = tuple(s + w for s, w in zip(full_start, full_window))
        out[target] = store(combine(out[target], updates[u_index]))
    return out


def combiner(name, dtype):
    return assign_computation(dtype) if name == "assign" else reducer(name, dtype)


@pytest.mark.parametrize("case", sorted(SCATTERS))
@pytest.mark.parametrize("combine", ["add", "multiply", "maximum", "minimum", "assign"])
@pytest.mark.parametrize("fast", [True, False])
def test_scatter_matches_definition(case, combine, fast):
    shape, indices, upd_shape, attrs = SCATTERS[case]
    rng = np.random.default_rng(0)
    operand = rng.integers(-5, 5, shape).astype(np.float32)
    updates = rng.integers(-5, 5, upd_shape).astype(np.float32)
    got = run_op("scatter", operand, indices.astype(np.int32), updates,
                 attrs={**attrs, "to_apply": combiner(combine, "f32")}, ctx=Context(fast_paths=fast))
    exact(got, scatter_reference(operand, indices, updates, COMBINE[combine], **attrs))


def test_scatter_add_matches_numpy_add_at():
    shape, indices, upd_shape, attrs = SCATTERS["rows_repeated"]
    operand = np.zeros(shape, np.int32)
    updates = np.arange(np.prod(upd_shape), dtype=np.int32).reshape(upd_shape)
    got = run_op("scatter", operand, indices.astype(np.int32), updates,
                 attrs={**attrs, "to_apply": reducer("add", "s32")})
    want = operand.copy()
    np.add.at(want, indices, updates)
    exact(got, want)


def test_scatter_with_pred_or_and_uint_indices():
    shape, indices, upd_shape, attrs = SCATTERS["elements_2d_index"]
    operand = np.zeros(shape, bool)
    updates = np.array([True, False, False, True])
    got = run_op("scatter", operand, indices.astype(np.uint32), updates, attrs={**attrs, "to_apply": reducer("or", "pred")})
    exact(got, scatter_reference(operand, indices, updates, COMBINE["or"], **attrs))


def test_scatter_bf16_add_rounds_each_step():
    # 256 + 1 + 1 in bf16, one add at a time: 256 + 1 rounds back to 256 each time
    # (adding the updates first, or in float32, would give 258).
    operand, indices, updates = np.array([256.0], np.float32), np.zeros((2, 1), np.int32), np.ones(2, np.float32)
    attrs = dict(update_window_dims=(), inserted_window_dims=(0,), scatter_dims_to_operand_dims=(0,),
                 index_vector_dim=1, to_apply=reducer("add", "bf16"))
    module = one_op_module("scatter", [Shape("bf16", (1,)), Shape("s32", (2, 1)), Shape("bf16", (2,))], attrs)
    exact(evaluate(module, [operand, indices, updates]), np.array([256.0], np.float32))


def nonvectorizable_add(dtype):
    """(a, b) -> call(add)(a, b): a body with a call, which the interpreter cannot apply
    to whole arrays, so it takes the one-element-at-a-time path."""
    def build(module):
        inner = scalar_computation(module, "add", dtype, name="inner_add")
        b = Builder(module, "outer_add")
        s = Shape(dtype, ())
        x, y = b.parameter(s, "a"), b.parameter(s, "b")
        return b.build(b.emit("call", [x, y], attrs={"to_apply": inner}))
    return build


def test_scatter_with_a_body_that_is_not_elementwise():
    shape, indices, upd_shape, attrs = SCATTERS["rows_repeated"]
    operand = np.ones(shape, np.float64)
    updates = np.arange(np.prod(upd_shape), dtype=np.float64).reshape(upd_shape)
    got = run_op("scatter", operand, indices.astype(np.int64), updates,
                 attrs={**attrs, "to_apply": nonvectorizable_add("f64")})
    exact(got, scatter_reference(operand, indices, updates, COMBINE["add"], **attrs))


def test_scatter_non_commutative_body_sees_old_value_first():
    # (old, new) -> old - new, applied in update order at a repeated index.
    operand = np.array([10, 0], np.int32)
    indices = np.array([[0], [0], [1]], np.int32)
    updates = np.array([3, 4, 5], np.int32)
    attrs = dict(update_window_dims=(), inserted_window_dims=(0,), scatter_dims_to_operand_dims=(0,),
                 index_vector_dim=1, to_apply=reducer("subtract", "s32"))
    exact(run_op("scatter", operand, indices, updates, attrs=attrs), np.array([3, -5], np.int32))
