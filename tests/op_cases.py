"""Op test cases shared by the interpreter tests (tests/backends/test_interpreter_*.py,
which check them against literal transcriptions of the StableHLO definitions) and the CPU
codegen tests (tests/backends/cpu/, which check them against the interpreter), so both
backends meet the same corner cases: gather, scatter, reduce_window, select_and_scatter,
convolution and its two gradient forms. Imported by name (tests/conftest.py puts this
folder on sys.path)."""
from __future__ import annotations

import numpy as np

from tessel.compiler.ir import Builder, Shape

# ----------------------------------------------------------------------------- gather

# name -> operand shape, indices, attributes
GATHERS = {
    "rows": ((5, 3), np.array([4, 0, 2, 2]),
             dict(offset_dims=(1,), collapsed_slice_dims=(0,), start_index_map=(0,), index_vector_dim=1,
                  slice_sizes=(1, 3))),
    "columns_offset_first": ((3, 4), np.array([[3], [1]]),
                             dict(offset_dims=(0,), collapsed_slice_dims=(1,), start_index_map=(1,),
                                  index_vector_dim=1, slice_sizes=(3, 1))),
    "nd_index_vector_dim_0": ((4, 5, 6), np.array([[0, 3, 1], [5, 0, 2]]),
                              dict(offset_dims=(1, 2), collapsed_slice_dims=(0,), start_index_map=(0, 2),
                                   index_vector_dim=0, slice_sizes=(1, 5, 2))),
    "clamped": ((6, 4), np.array([[-3, 1], [5, 3], [2, 9]]),
                dict(offset_dims=(1, 2), collapsed_slice_dims=(), start_index_map=(0, 1),
                     index_vector_dim=1, slice_sizes=(2, 3))),
    "permuted_start_map": ((4, 5), np.array([[1, 2], [4, 0]]),
                           dict(offset_dims=(1,), collapsed_slice_dims=(0,), start_index_map=(1, 0),
                                index_vector_dim=1, slice_sizes=(1, 2))),
    "batch_2d": ((7,), np.array([[1, 2], [3, 6]]),
                 dict(offset_dims=(), collapsed_slice_dims=(0,), start_index_map=(0,), index_vector_dim=2,
                      slice_sizes=(1,))),
    "empty_batch": ((5, 3), np.zeros((0,), np.int64),
                    dict(offset_dims=(1,), collapsed_slice_dims=(0,), start_index_map=(0,),
                         index_vector_dim=1, slice_sizes=(1, 3))),
    "empty_slice": ((5, 3), np.array([1, 2]),
                    dict(offset_dims=(1,), collapsed_slice_dims=(0,), start_index_map=(0,),
                         index_vector_dim=1, slice_sizes=(1, 0))),
}

# ----------------------------------------------------------------------------- scatter

# name -> operand shape, indices, updates shape, attributes
SCATTERS = {
    "rows_repeated": ((5, 3), np.array([4, 0, 2, 2, 4, 4]), (6, 3),
                      dict(update_window_dims=(1,), inserted_window_dims=(0,),
                           scatter_dims_to_operand_dims=(0,), index_vector_dim=1)),
    "elements_2d_index": ((4, 5), np.array([[0, 1], [3, 4], [0, 1], [2, 2]]), (4,),
                          dict(update_window_dims=(), inserted_window_dims=(0, 1),
                               scatter_dims_to_operand_dims=(0, 1), index_vector_dim=1)),
    "out_of_bounds_windows": ((6, 4), np.array([[-1, 0], [5, 1], [4, 2], [1, 1], [2, 3]]), (5, 2, 2),
                              dict(update_window_dims=(1, 2), inserted_window_dims=(),
                                   scatter_dims_to_operand_dims=(0, 1), index_vector_dim=1)),
    "window_dim_first_ivd_0": ((3, 6), np.array([[1, 4, 1]]), (2, 3),
                               dict(update_window_dims=(0,), inserted_window_dims=(1,),
                                    scatter_dims_to_operand_dims=(1,), index_vector_dim=0)),
    "empty_updates": ((5, 3), np.zeros((0,), np.int64), (0, 3),
                      dict(update_window_dims=(1,), inserted_window_dims=(0,),
                           scatter_dims_to_operand_dims=(0,), index_vector_dim=1)),
    "scalar_index_2d_batch": ((7,), np.array([[1, 6], [1, 9]]), (2, 2),
                              dict(update_window_dims=(), inserted_window_dims=(0,),
                                   scatter_dims_to_operand_dims=(0,), index_vector_dim=2)),
}


def assign_computation(dtype):
    """(old, new) -> new: the combiner of a plain scatter (later updates win)."""
    def build(module):
        b = Builder(module, "assign")
        s = Shape(dtype, ())
        b.parameter(s, "old")
        return b.build(b.parameter(s, "new"))
    return build


# ----------------------------------------------------------------------------- windows

# name -> operand shape, reduce_window attributes
WINDOWS = {
    "1d_sum": ((7,), dict(window_dimensions=(3,))),
    "maxpool_2x2": ((4, 6), dict(window_dimensions=(2, 2), window_strides=(2, 2))),
    "padded": ((5, 4), dict(window_dimensions=(3, 3), padding=((1, 1), (2, 0)))),
    "base_dilated": ((4,), dict(window_dimensions=(2,), base_dilations=(2,), padding=((1, 0),))),
    "window_dilated": ((3, 9), dict(window_dimensions=(2, 3), window_dilations=(1, 3), window_strides=(1, 2))),
    "scalar": ((), dict(window_dimensions=())),
    "empty_output": ((2, 3), dict(window_dimensions=(3, 1))),
    "empty_input": ((0, 3), dict(window_dimensions=(1, 2))),
}

# name -> operand shape, select_and_scatter window attributes
SELECT_CASES = {
    "maxpool_grad": ((4, 6), dict(window_dimensions=(2, 2), window_strides=(2, 2))),
    "overlapping_padded": ((5, 5), dict(window_dimensions=(3, 3), window_strides=(1, 1), padding=((1, 1), (1, 1)))),
    "strided_1d": ((9,), dict(window_dimensions=(3,), window_strides=(2,), padding=((2, 0),))),
    "all_padding_windows": ((2,), dict(window_dimensions=(2,), window_strides=(1,), padding=((3, 0),))),
}


def argmax_reducer(dtype, index_dtype="s32"):
    """(v0, i0, v1, i1) -> the larger value and its index; ties take the smaller index."""
    def build(module):
        b = Builder(module, "argmax")
        v, i = Shape(dtype, ()), Shape(index_dtype, ())
        v0, i0, v1, i1 = b.parameter(v, "v0"), b.parameter(i, "i0"), b.parameter(v, "v1"), b.parameter(i, "i1")
        gt = b.emit("compare", [v0, v1], {"direction": "GT"})
        eq = b.emit("compare", [v0, v1], {"direction": "EQ"})
        lt_index = b.emit("compare", [i0, i1], {"direction": "LT"})
        first = b.emit("or", [gt, b.emit("and", [eq, lt_index])])
        return b.build(b.emit("tuple", [b.emit("select", [first, v0, v1]), b.emit("select", [first, i0, i1])]))
    return build


# ----------------------------------------------------------------------------- convolution

# name -> lhs shape, rhs shape, attrs
CONVS = {
    "1d": ((2, 3, 7), (4, 3, 3), dict(dim_labels="bf0_oi0->bf0")),
    "1d_strided_padded": ((2, 3, 8), (2, 3, 3), dict(dim_labels="bf0_oi0->bf0", window_strides=(3,),
                                                     padding=((2, 1),))),
    "2d_nhwc": ((2, 5, 4, 3), (3, 2, 3, 4), dict(dim_labels="b01f_01io->b01f", window_strides=(2, 1),
                                                 padding=((1, 1), (0, 2)), rhs_dilation=(1, 2))),
    "2d_lhs_dilation": ((1, 2, 3, 4), (3, 2, 2, 2), dict(dim_labels="bf01_oi01->bf01", lhs_dilation=(2, 3),
                                                         padding=((1, 1), (1, 0)))),
    "negative_padding": ((1, 2, 9), (2, 2, 2), dict(dim_labels="bf0_oi0->bf0", padding=((-2, -1),))),
    "feature_groups": ((2, 6, 5), (4, 3, 2), dict(dim_labels="bf0_oi0->bf0", feature_group_count=2)),
    "depthwise": ((1, 5, 4, 4), (2, 2, 1, 10), dict(dim_labels="bf01_01io->bf01", feature_group_count=5)),
    "batch_groups": ((4, 3, 6), (6, 3, 2), dict(dim_labels="bf0_oi0->bf0", batch_group_count=2)),
    "permuted_output": ((2, 3, 4, 5), (2, 3, 2, 2), dict(dim_labels="fb01_io01->0fb1")),
    "3d": ((1, 2, 3, 4, 3), (2, 2, 2, 2, 2), dict(dim_labels="bf012_oi012->bf012", window_strides=(1, 2, 1))),
    "empty_batch": ((0, 3, 5), (2, 3, 2), dict(dim_labels="bf0_oi0->bf0")),
    "empty_features": ((2, 0, 5), (2, 0, 2), dict(dim_labels="bf0_oi0->bf0")),
    "window_larger_than_input": ((2, 3, 2), (2, 3, 4), dict(dim_labels="bf0_oi0->bf0")),
}


# x shape (b f s...), w shape (o i k...), strides, padding, rhs dilation, feature groups
CONV_GRADIENT_CASES = [
    ((2, 3, 9), (4, 3, 3), (2,), ((1, 2),), (1,), 1),
    ((1, 2, 8), (2, 2, 2), (3,), ((0, 0),), (2,), 1),
    ((2, 2, 6, 5), (3, 2, 3, 2), (2, 1), ((1, 1), (0, 1)), (1, 2), 1),
    ((2, 4, 7), (6, 2, 3), (2,), ((1, 1),), (1,), 2),
    ((3, 3, 5, 6), (3, 1, 2, 3), (1, 2), ((0, 1), (2, 0)), (2, 1), 3),   # depthwise
]


def dilate(sizes, dilation):
    """The extent of each dimension after inserting dilation - 1 holes between elements."""
    return np.array([(s - 1) * d + 1 if s else 0 for s, d in zip(sizes, dilation)])


def forward_conv_attrs(strides, padding, rhs_dil, groups):
    sp = "".join(map(str, range(len(strides))))
    return dict(dim_labels=f"bf{sp}_oi{sp}->bf{sp}", window_strides=strides, padding=padding,
                rhs_dilation=rhs_dil, feature_group_count=groups)


def input_gradient_attrs(x_spatial, w_spatial, g_spatial, strides, padding, rhs_dil):
    """dx as a transposed convolution of g with the reversed kernel (flip w's spatial
    axes), its in/out features swapped (labels 'io'), padding from the forward window."""
    sp = "".join(map(str, range(len(strides))))
    k = dilate(w_spatial, rhs_dil)
    before = k - np.array([lo for lo, _ in padding]) - 1
    after = np.array(x_spatial) + k - 1 - dilate(g_spatial, strides) - before
    return dict(dim_labels=f"bf{sp}_io{sp}->bf{sp}", padding=tuple(zip(before.tolist(), after.tolist())),
                lhs_dilation=tuple(strides), rhs_dilation=tuple(rhs_dil))


def filter_gradient_attrs(x_spatial, w_spatial, g_spatial, strides, padding, rhs_dil, groups):
    """dw as a convolution of x (batch and features swapped) with g as the kernel; a
    feature-grouped forward convolution becomes a batch-grouped one."""
    sp = "".join(map(str, range(len(strides))))
    lo = np.array([p for p, _ in padding])
    hi = (dilate(g_spatial, strides) - np.array(x_spatial)) + (dilate(w_spatial, rhs_dil) - lo - 1)
    return dict(dim_labels=f"fb{sp}_io{sp}->fb{sp}", padding=tuple(zip(lo.tolist(), hi.tolist())),
                window_strides=tuple(rhs_dil), rhs_dilation=tuple(strides), batch_group_count=groups)
