"""CPU codegen, dot_general and output fusions: every dimension-number layout as a
strided GEMM (or a canonical copy), epilogues through the GEMM hook or a separate
pass, f32/f64/bf16 and integer dots, against the interpreter."""
from __future__ import annotations

import numpy as np
import pytest

from tessel.backends.cpu import codegen
from tessel.compiler import dtypes
from tessel.compiler.ir import Builder, Module, Shape
from tessel.compiler.pipeline import optimize

from cpu_checks import assert_matches_interpreter

MATMUL = {"lhs_contracting_dims": (1,), "rhs_contracting_dims": (0,)}
# (lhs dims, rhs dims, dimension numbers): plain, transposed operands, matvec, batched
# with the batch dim anywhere, two contracting dims in swapped order, several free dims.
CASES = [
    ((4, 8), (8, 6), MATMUL),
    ((37, 29), (29, 45), MATMUL),
    ((1, 64), (64, 50), MATMUL),
    ((64, 50), (50, 1), MATMUL),
    ((8, 4), (8, 6), {"lhs_contracting_dims": (0,), "rhs_contracting_dims": (0,)}),
    ((4, 8), (6, 8), {"lhs_contracting_dims": (1,), "rhs_contracting_dims": (1,)}),
    ((3, 5, 7), (3, 7, 4), {"lhs_batching_dims": (0,), "rhs_batching_dims": (0,),
                            "lhs_contracting_dims": (2,), "rhs_contracting_dims": (1,)}),
    ((5, 3, 7), (7, 3, 4), {"lhs_batching_dims": (1,), "rhs_batching_dims": (1,),
                            "lhs_contracting_dims": (2,), "rhs_contracting_dims": (0,)}),
    ((2, 3, 4), (4, 3, 5), {"lhs_contracting_dims": (1, 2), "rhs_contracting_dims": (1, 0)}),
    ((2, 3, 4), (4, 5, 6), {"lhs_contracting_dims": (2,), "rhs_contracting_dims": (0,)}),
    ((4, 0), (0, 6), MATMUL),
]


def epilogue(b, product, kind):
    dtype = product.shape.dtype
    if kind == "relu":
        zero = b.emit("broadcast_in_dim", [b.constant(np.zeros((), np.float32), dtype=dtype)],
                      attrs={"broadcast_dimensions": ()}, shape=product.shape)
        return b.emit("maximum", [product, zero])
    if kind == "tanh":
        return b.emit("tanh", [product])
    if kind == "convert":
        return b.emit("convert", [product], shape=Shape(dtypes.f64 if dtype != dtypes.f64 else dtypes.f32,
                                                        product.shape.dims))
    return product


def dots_module(dtype, kind, fused):
    """One module with a dot (and `kind` epilogue) per case, each from its own parameters."""
    module = Module("dots")
    b = Builder(module, "main")
    results = []
    for k, (lhs, rhs, dims) in enumerate(CASES):
        x, y = b.parameter(Shape(dtype, lhs), f"x{k}"), b.parameter(Shape(dtype, rhs), f"y{k}")
        results.append(epilogue(b, b.emit("dot_general", [x, y], attrs=dims), kind))
    b.build(b.emit("tuple", results), entry=True)
    return optimize(module, "cpu")[0] if fused else module


def arguments(dtype, rng):
    def one(shape):
        if dtype.is_integer:
            return rng.integers(-9, 9, shape).astype(dtype.storage)
        return dtypes.canonicalize(rng.standard_normal(shape).astype(np.float32), dtype)
    return [one(s) for lhs, rhs, _ in CASES for s in (lhs, rhs)]


TOLERANCE = {"f32": (1e-4, 3e-4), "f64": (1e-12, 1e-12), "bf16": (2e-2, 6e-2), "f16": (2e-3, 2e-2),
             "s32": (0, 0)}


@pytest.mark.parametrize("dtype", [dtypes.f32, dtypes.f64, dtypes.bf16, dtypes.f16, dtypes.s32],
                         ids=lambda d: d.name)
def test_dot_general_layouts_match_the_interpreter(dtype):
    """Fused with a relu epilogue, and alone (f32, bf16, s32: the others take the same
    paths as f32), for every operand layout of CASES."""
    args = arguments(dtype, np.random.default_rng(dtypes.ALL.index(dtype)))
    assert_matches_interpreter(dots_module(dtype, "relu", True), args, *TOLERANCE[dtype.name])
    if dtype.name in ("f32", "bf16", "s32"):
        assert_matches_interpreter(dots_module(dtype, None, False), args, *TOLERANCE[dtype.name])


@pytest.mark.parametrize("kind", ["tanh", "convert"])
def test_epilogues_in_the_gemm_or_after_it(kind):
    """tanh runs on GEMM tiles, except where N spans two dims (a vector of the tile may
    wrap between them); a convert to f64 needs the f32 product first (a second pass)."""
    module = dots_module(dtypes.f32, kind, True)
    passes = codegen.compile_program(module).ir.count('define internal void @"tessel.epilogue.')
    assert passes == (len(CASES) if kind == "convert" else 1)
    args = arguments(dtypes.f32, np.random.default_rng(11))
    assert_matches_interpreter(module, args, *TOLERANCE["f32"])


def mlp_module(batch=8, sizes=(20, 32, 5)):
    """x @ w1 + b1 -> relu -> @ w2 + b2: output fusions with bias and activation."""
    module = Module("mlp")
    b = Builder(module, "main")
    h = b.parameter(Shape(dtypes.f32, (batch, sizes[0])), "x")
    for k, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        w = b.parameter(Shape(dtypes.f32, (n_in, n_out)), f"w{k}")
        bias = b.parameter(Shape(dtypes.f32, (n_out,)), f"b{k}")
        h = b.emit("add", [b.emit("dot_general", [h, w], attrs=MATMUL), b.emit(
            "broadcast_in_dim", [bias], attrs={"broadcast_dimensions": (1,)}, shape=Shape(dtypes.f32, (batch, n_out)))])
        if k < len(sizes) - 2:
            h = epilogue(b, h, "relu")
    b.build(b.emit("tuple", [h]), entry=True)
    return optimize(module, "cpu")[0]


def test_bias_and_relu_run_inside_the_gemm():
    module = mlp_module()
    assert [i.attrs["kind"] for i in module.entry.instructions if i.opcode == "fusion"] == ["output", "output"]
    program = codegen.compile_program(module)
    assert "tessel.epilogue." not in program.ir      # no separate pass over the product
    rng = np.random.default_rng(9)
    args = [rng.standard_normal(p.shape.dims).astype(np.float32) for p in module.entry.parameters]
    assert_matches_interpreter(module, args, 1e-5, 1e-5)


def test_operand_views_are_read_in_place():
    """A transposed and sliced operand is a strided view: no copy kernel before the GEMM."""
    module = Module("views")
    b = Builder(module, "main")
    x = b.parameter(Shape(dtypes.f32, (40, 30)), "x")
    w = b.parameter(Shape(dtypes.f32, (50, 45)), "w")
    xt = b.emit("transpose", [x], attrs={"permutation": (1, 0)})                        # 30 x 40
    ws = b.emit("slice", [w], attrs={"start_indices": (5, 2), "limit_indices": (45, 42)})  # 40 x 40
    b.build(b.emit("tuple", [b.emit("tanh", [b.emit("dot_general", [xt, ws], attrs=MATMUL)])]), entry=True)
    module, _ = optimize(module, "cpu")
    assert "operand_copy" not in codegen.compile_program(module).ir
    rng = np.random.default_rng(10)
    assert_matches_interpreter(module, [rng.standard_normal((40, 30)).astype(np.float32),
                                        rng.standard_normal((50, 45)).astype(np.float32)], 1e-5, 1e-5)
