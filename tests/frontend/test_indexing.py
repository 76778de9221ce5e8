"""Indexing traced arrays: NumPy's results, basic slicing as slice/reverse/reshape,
advanced indexing as one gather, bounds errors at the user's line."""
from __future__ import annotations

import os

import numpy as np
import pytest

from tessel.frontend.indexing import IndexingError, getitem, take

from tracing import run, trace

THIS_FILE = os.path.basename(__file__)


def opcodes(fn, *args) -> list[str]:
    module, _ = trace(fn, *args)
    return [i.opcode for i in module.entry.instructions if i.opcode not in ("parameter", "tuple")]


def check(x: np.ndarray, index):
    """x[index] traced (x a parameter) equals NumPy's x[index], shape and values."""
    got = run(lambda t: t[index], x)[0]
    want = x[index]
    assert got.shape == want.shape, (index, got.shape, want.shape)
    np.testing.assert_array_equal(got, want)


X = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)


# ----------------------------------------------------------------------------- basic

BASIC = [
    0, -1, 2, (1, 2), (-1, -2, -3), slice(None), slice(1, None), slice(None, -1),
    slice(None, None, 2), slice(None, None, -1), slice(None, None, -2), slice(-1, 0, -1),
    (slice(None), slice(None, None, -2), None, Ellipsis), (Ellipsis, 1), (None, 0, None),
    (Ellipsis, None), (1, Ellipsis, 2), slice(5, 10), slice(2, 1), (slice(None, None, -3), 3),
    (slice(-100, 100), slice(3, -100, -1)), (), Ellipsis, (0, 0, 0), (None,) * 3,
]


@pytest.mark.parametrize("index", BASIC, ids=repr)
def test_basic_matches_numpy(index):
    check(X, index)


def test_spec_example_reverse_stride_newaxis_ellipsis():
    check(X, (slice(None), slice(None, None, -2), None, Ellipsis))


def test_basic_indexing_lowers_to_slice_reverse_reshape():
    ops = opcodes(lambda t: t[:, ::-2, None, ...], X)
    assert set(ops) <= {"reverse", "slice", "reshape"}
    assert ops.count("reverse") == 1 and ops.count("slice") == 1


def test_basic_int_index_emits_no_gather():
    assert "gather" not in opcodes(lambda t: t[1, -1], X)


def test_full_slice_emits_nothing():
    assert opcodes(lambda t: t[...], X) == [] and opcodes(lambda t: t[:, :], X) == []


def test_scalar_result():
    got = run(lambda t: t[2, 3, 4], X)[0]
    assert got.shape == () and got == X[2, 3, 4]


# ----------------------------------------------------------------------------- advanced

IDX = np.array([2, 0, 1, 2])
IDX2 = np.array([4, 0, -1, 3])

ADVANCED = [
    [2, 0, 1], [[0, 1], [2, 2]], [-1, -3], (IDX, slice(None), IDX2), (slice(1, -1), [0, 2]),
    (slice(None), [0, 3], [1, 4]), (slice(None), [0, 3], 1), (0, slice(None), [0, 1]),
    (IDX, 2, IDX2), (Ellipsis, [1, 0]), ([1], Ellipsis, [0]), (slice(None), [0, 1], None, [0, 1]),
    (None, [0, 2], [[1], [3]]), (slice(None, None, -1), [3, 3, 0]), ([2, 1], slice(None, None, 2), None),
    (np.array([[0], [2]]), np.array([1, 3]), slice(1, 3)), (True,), (False,), (slice(None), True),
    (X[:, :, 0] > 20,), (X[:, :, 0] > 20, slice(0, 2)), (slice(None), X[0, :, 0] > 7),
    (X[:, 0, 0] > 5, 1, slice(None)), (np.array(1), [0, 1]), ([],), (slice(None), [], 0),
    ((0, 2),), ([0, 1], range(2), [3, 4]),
]


@pytest.mark.parametrize("index", ADVANCED, ids=repr)
def test_advanced_matches_numpy(index):
    check(X, index)


def test_embedding_lookup():
    wte = np.random.default_rng(0).normal(size=(10, 6)).astype(np.float32)
    check(wte, [3, 1, 4])
    ops = opcodes(lambda t: t[[3, 1, 4]], wte)
    assert ops.count("gather") == 1


def test_position_lookup_with_range():
    wpe = np.random.default_rng(1).normal(size=(16, 4)).astype(np.float32)
    n = 7
    check(wpe, range(n))


def test_advanced_index_after_slicing_is_one_gather():
    ops = opcodes(lambda t: t[1:-1, [0, 2]], X)
    assert ops.count("gather") == 1 and ops.count("slice") == 1


def test_size_zero_results():
    check(X, (slice(None), []))
    check(X, slice(2, 2))
    check(X, (slice(None), slice(3, 1), [0, 1]))
    empty = np.zeros((0, 3), np.float32)
    check(empty, [])
    check(empty, (slice(None), [2, 0]))


def test_zero_d_results():
    check(X, (1, 2, 3))
    check(X, (np.array(1), [2], 3))


# ----------------------------------------------------------------------------- traced indices

def test_traced_integer_array_index():
    idx = np.array([[2, 0], [-1, 1]], dtype=np.int32)
    got = run(lambda t, i: t[i], X, idx)[0]
    np.testing.assert_array_equal(got, X[idx])


def test_traced_indices_mixed_with_static_and_slices():
    i = np.array([0, -1, 2], dtype=np.int64)
    got = run(lambda t, ti: t[ti, :, [4, 0, -2]], X, i)[0]
    np.testing.assert_array_equal(got, X[i, :, [4, 0, -2]])
    got = run(lambda t, ti: t[:, ti], X, i)[0]
    np.testing.assert_array_equal(got, X[:, i])


def test_traced_scalar_index_and_list_of_tracers():
    i, j = np.array(2, np.int32), np.array(-1, np.int32)
    got = run(lambda t, a, b: (t[a], t[b, a], t[[a, b]]), X, i, j)
    np.testing.assert_array_equal(got[0], X[2])
    np.testing.assert_array_equal(got[1], X[-1, 2])
    np.testing.assert_array_equal(got[2], X[[2, -1]])


def test_traced_out_of_range_indices_are_clamped():
    idx = np.array([7, -9, 2], dtype=np.int32)   # 7 -> 2; -9 -> -6 -> 0
    got = run(lambda t, i: t[i], X, idx)[0]
    np.testing.assert_array_equal(got, X[[2, 0, 2]])


def test_traced_bool_mask_is_refused_with_a_hint():
    mask = np.ones(3, dtype=bool)
    with pytest.raises(IndexingError, match=rf"{THIS_FILE}:\d+: .*boolean mask.*where"):
        trace(lambda t, m: t[m], X, mask)


# ----------------------------------------------------------------------------- errors

@pytest.mark.parametrize("index, message", [
    (3, "index 3 is out of bounds for axis 0 with size 3"),
    (-4, "index -4 is out of bounds for axis 0 with size 3"),
    ((0, [1, 4]), "index 4 is out of bounds for axis 1 with size 4"),
    ((slice(None), slice(None), [5]), "index 5 is out of bounds for axis 2 with size 5"),
    ((0, 0, 0, 0), "too many indices"),
    ((Ellipsis, 0, Ellipsis), "single ellipsis"),
    (([0, 1], [0, 1, 2]), "could not be broadcast"),
    (1.5, "only integers"),
    (np.array([0.5]), "integer"),
    (np.ones(4, bool), "boolean index did not match"),
])
def test_static_errors_are_index_errors_at_the_users_line(index, message):
    with pytest.raises(IndexError, match=rf"{THIS_FILE}:\d+: .*{message}"):
        trace(lambda t: t[index], X)


def test_error_points_at_the_indexing_line():
    def f(t):
        return t[5]   # the reported line

    with pytest.raises(IndexError) as info:
        trace(f, X)
    line = f.__code__.co_firstlineno + 1
    assert f"{THIS_FILE}:{line}:" in str(info.value)


def test_traced_slice_bound_is_refused():
    with pytest.raises(IndexError, match="dynamic_slice"):
        trace(lambda t, i: t[i:], X, np.array(1, np.int32))


# ----------------------------------------------------------------------------- take

@pytest.mark.parametrize("indices, axis", [
    ([0, 5, -1], None), ([[1, 0], [2, 2]], 0), ([3, 0], 1), (np.array(2), 2), ([-1], -1),
])
def test_take_matches_numpy(indices, axis):
    got = run(lambda t: take(t, indices, axis=axis), X)[0]
    np.testing.assert_array_equal(got, np.take(X, indices, axis=axis))


@pytest.mark.parametrize("mode", ["clip", "wrap"])
def test_take_modes_static_and_traced(mode):
    idx = np.array([-7, -1, 0, 4, 9], dtype=np.int32)
    want = np.take(X, idx, axis=1, mode=mode)
    np.testing.assert_array_equal(run(lambda t: take(t, idx, axis=1, mode=mode), X)[0], want)
    np.testing.assert_array_equal(run(lambda t, i: take(t, i, axis=1, mode=mode), X, idx)[0], want)


def test_take_out_of_bounds_raises():
    with pytest.raises(IndexError, match="out of bounds"):
        trace(lambda t: take(t, [60]), X)


# ----------------------------------------------------------------------------- eager

def test_getitem_runs_eagerly_on_numpy_arrays():
    np.testing.assert_array_equal(getitem(X, (slice(None), [0, 2])), X[:, [0, 2]])
    np.testing.assert_array_equal(take(X, [1, 0], axis=0), X[[1, 0]])


# ----------------------------------------------------------------------------- random

def random_entry(rng, size):
    """One random index entry for a dim of `size` (NumPy decides if the whole is valid)."""
    kind = rng.choice(["int", "slice", "array", "none", "ellipsis", "mask"])
    if kind == "int":
        return int(rng.integers(-size, size))
    if kind == "slice":
        start, stop = (int(v) if rng.random() < 0.7 else None for v in rng.integers(-size - 1, size + 2, 2))
        step = None if rng.random() < 0.4 else int(rng.choice([-3, -2, -1, 1, 2, 3]))
        return slice(start, stop, step)
    if kind == "array":
        return rng.integers(-size, size, size=rng.integers(1, 3, rng.integers(0, 3)))
    if kind == "mask":
        return rng.random(size) < 0.5
    return None if kind == "none" else Ellipsis


def random_index(rng, shape):
    entries = []
    for dim in range(int(rng.integers(1, len(shape) + 2))):
        entries.append(random_entry(rng, shape[min(dim, len(shape) - 1)]))
    return tuple(entries)


def test_random_indices_match_numpy():
    rng = np.random.default_rng(1234)
    x = np.arange(4 * 3 * 5, dtype=np.int32).reshape(4, 3, 5)
    checked = 0
    for _ in range(300):
        index = random_index(rng, x.shape)
        try:
            want = x[index]
        except IndexError:
            continue
        got = run(lambda t: t[index], x)[0]
        assert got.shape == want.shape, index
        np.testing.assert_array_equal(got, want, err_msg=repr(index))
        checked += 1
    assert checked > 100
