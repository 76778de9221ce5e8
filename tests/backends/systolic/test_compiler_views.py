"""Views of host memory: every re-addressing agrees with NumPy's strided views."""
from __future__ import annotations

import numpy as np
import pytest
from numpy.lib.stride_tricks import as_strided

from tessel.backends.systolic.views import View, ViewError, lane_blocks


def materialize(memory: np.ndarray, view: View) -> np.ndarray:
    """The elements a view addresses, read from a float32 host image."""
    flat = memory.view(np.uint8)
    return as_strided(flat[view.base:].view(np.float32), shape=view.dims, strides=view.strides).copy()


def rows_by_runs(memory: np.ndarray, view: View, r0: int, count: int) -> np.ndarray:
    """Rows read the way the DMA unit reads them: run by run, row stride by row stride."""
    out = np.empty((count, view.cols), np.float32)
    for run in view.runs(r0, count):
        for r in range(run.rows):
            start = (run.host + r * run.stride) // 4
            out[run.offset + r] = as_strided(memory[start:], shape=(view.cols,), strides=(view.lane_stride,))
    return out


MEMORY = np.arange(4096, dtype=np.float32)
BASE = 64


def test_row_major_view_matches_reshape():
    v = View.row_major(BASE, (3, 4, 5))
    np.testing.assert_array_equal(materialize(MEMORY, v), MEMORY[16:16 + 60].reshape(3, 4, 5))
    assert v.is_row_major() and v.rows == 12 and v.cols == 5


@pytest.mark.parametrize("make", [
    lambda a, v: (a[1:3, ::2, 1:4], v.slice((1, 0, 1), (3, 4, 4), (1, 2, 1))),
    lambda a, v: (a.transpose(1, 0, 2), v.transpose((1, 0, 2))),
    lambda a, v: (np.broadcast_to(a[:, :1, :], (3, 4, 5)), v.slice((0, 0, 0), (3, 1, 5), (1, 1, 1))
                  .reshape((3, 5)).broadcast((3, 4, 5), (0, 2))),
    lambda a, v: (a.reshape(12, 5), v.reshape((12, 5))),
    lambda a, v: (a.reshape(3, 2, 2, 5)[:, 1], v.reshape((3, 2, 2, 5)).slice((0, 1, 0, 0), (3, 2, 2, 5), (1, 1, 1, 1))
                  .reshape((3, 2, 5))),
])
def test_readdressing_agrees_with_numpy(make):
    array = MEMORY[16:16 + 60].reshape(3, 4, 5)
    want, view = make(array, View.row_major(BASE, (3, 4, 5)))
    np.testing.assert_array_equal(materialize(MEMORY, view), want)
    rows = view.rows
    for r0, count in [(0, rows), (1, rows - 1), (rows // 2, 1)]:
        np.testing.assert_array_equal(rows_by_runs(MEMORY, view, r0, count),
                                      want.reshape(rows, -1)[r0:r0 + count])


def test_contiguous_leading_dims_make_one_run():
    v = View.row_major(0, (4, 6, 8))
    assert len(v.runs(0, 24)) == 1
    s = v.slice((0, 0, 2), (4, 6, 5), (1, 1, 1))          # a column slice: still one stride
    assert [(r.rows, r.stride) for r in s.runs(0, 24)] == [(24, 32)]
    t = v.slice((0, 0, 0), (4, 6, 8), (1, 2, 1))          # every other row: planes stay uniform
    assert len(t.runs(0, 12)) == 1
    u = v.slice((0, 0, 0), (4, 4, 8), (1, 2, 1))          # rows 0, 2 of each plane of 6
    assert [r.rows for r in u.runs(1, 6)] == [1, 2, 2, 1]


def test_strided_reshape_is_refused():
    v = View.row_major(0, (4, 6)).slice((0, 0), (4, 3), (1, 1))
    with pytest.raises(ViewError, match="strided view"):
        v.reshape((12,))


def test_broadcast_flags():
    bias = View.row_major(0, (5,)).broadcast((3, 5), (1,))
    per_row = View.row_major(0, (3,)).broadcast((3, 5), (0,))
    assert bias.row_broadcast and not bias.lane_broadcast
    assert per_row.lane_broadcast and not per_row.row_broadcast
    assert lane_blocks(300, 128) == [(0, 128), (128, 128), (256, 44)]
