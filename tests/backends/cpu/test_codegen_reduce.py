"""CPU codegen, reductions: lone reduces and input fusions (row mode with vector
accumulators and a row cache, column mode, the scalar fold for other reducers, tuple
results) against the interpreter."""
from __future__ import annotations

import numpy as np
import pytest

from tessel.backends.cpu import codegen, kernels_reduce
from tessel.backends.interpreter import evaluate
from tessel.backends.interpreter.testing import scalar_computation
from tessel.compiler import dtypes
from tessel.compiler.ir import Builder, Module, Shape
from tessel.compiler.pipeline import optimize
from tessel.runtime import backends

from cpu_checks import assert_matches_interpreter, run_cpu


INITS = {"add": 0, "multiply": 1, "maximum": "lowest", "minimum": "highest"}


def init_value(op, dtype):
    value = INITS[op]
    if value in ("lowest", "highest"):
        if dtype.is_float:
            value = -np.inf if value == "lowest" else np.inf
        elif dtype.is_pred:
            value = value == "highest"
        else:
            info = np.iinfo(dtype.storage)
            value = info.min if value == "lowest" else info.max
    return np.asarray(value).astype(dtype.storage)


def add_reduce(module, b, x, dims, op, prologue=False):
    dtype = x.shape.dtype
    if prologue:        # a producer the reduce reads through (an input fusion)
        x = b.emit("maximum", [x, b.emit("reverse", [x], attrs={"dimensions": tuple(range(x.shape.rank))})])
    init = b.constant(init_value(op, dtype), dtype=dtype)
    return b.emit("reduce", [x, init], attrs={"dimensions": dims, "to_apply": scalar_computation(module, op, dtype)})


def reduce_module(dtype, cases, op):
    """One module reducing one parameter per (shape, dims, prologue) case."""
    module = Module("reduce")
    b = Builder(module, "main")
    results = []
    for k, (shape, dims, prologue) in enumerate(cases):
        x = b.parameter(Shape(dtype, shape), f"x{k}")
        results.append(add_reduce(module, b, x, dims, op, prologue))
    b.build(b.emit("tuple", results), entry=True)
    return optimize(module, "cpu")[0]


def arguments(dtype, shape, op, rng):
    if dtype.is_pred:
        return [rng.random(shape) < 0.7]
    if dtype.is_integer:
        return [rng.integers(-20, 20, shape).astype(dtype.storage)]
    x = rng.standard_normal(shape).astype(np.float32)
    if op == "multiply":
        x = 1 + 0.01 * x
    return [dtypes.canonicalize(x, dtype)]


SHAPES = [  # (input dims, reduced dims): row mode, column mode, both, all, none, empty
    ((5, 37), (1,)), ((5, 37), (0,)), ((3, 4, 70), (1,)), ((3, 4, 70), (0, 2)), ((2, 3, 5), (0, 1, 2)),
    ((130,), (0,)), ((4, 0), (1,)), ((0, 4), (1,)), ((3, 5), ()),
]


@pytest.mark.parametrize("dtype", [dtypes.f32, dtypes.f64, dtypes.s32, dtypes.u8, dtypes.bf16, dtypes.pred],
                         ids=lambda d: d.name)
def test_reductions_match_the_interpreter(dtype):
    rng = np.random.default_rng(dtypes.ALL.index(dtype))
    # every reducer on f32; the others share their code paths (identities differ only)
    ops_ = (["maximum", "minimum"] if dtype.is_pred else ["add", "maximum", "minimum", "multiply"]
            if dtype == dtypes.f32 else ["add", "maximum"])
    rtol, atol = {"f32": (2e-5, 1e-5), "bf16": (3e-2, 0.2), "f64": (1e-12, 1e-12)}.get(dtype.name, (0, 0))
    cases = [(shape, dims, prologue) for shape, dims in SHAPES for prologue in (False, True)]
    for op in ops_:
        module = reduce_module(dtype, cases, op)
        args = [arguments(dtype, shape, op, rng)[0] for shape, _, _ in cases]
        assert_matches_interpreter(module, args, rtol, atol)


def argmax_module(shape, dim):
    """A variadic reduce (value, index) -> the first index of the maximum."""
    module = Module("argmax")
    b = Builder(module, "main")
    x = b.parameter(Shape(dtypes.f32, shape), "x")
    iota = b.emit("iota", [], attrs={"iota_dimension": dim}, shape=Shape(dtypes.s32, shape))
    body = Builder(module, "argmax_body")
    s, i = Shape(dtypes.f32, ()), Shape(dtypes.s32, ())
    av, ai, bv, bi = body.parameter(s, "av"), body.parameter(i, "ai"), body.parameter(s, "bv"), body.parameter(i, "bi")
    gt = body.emit("compare", [av, bv], attrs={"direction": "GT"})
    eq = body.emit("compare", [av, bv], attrs={"direction": "EQ"})
    take_a = body.emit("or", [gt, body.emit("and", [eq, body.emit("compare", [ai, bi], attrs={"direction": "LT"})])])
    reducer = body.build(body.emit("tuple", [body.emit("select", [take_a, av, bv]),
                                             body.emit("select", [take_a, ai, bi])]))
    r = b.emit("reduce", [x, iota, b.constant(np.float32(-np.inf)), b.constant(np.int32(0))],
               attrs={"dimensions": (dim,), "to_apply": reducer})
    b.build(b.emit("tuple", [b.emit("get_tuple_element", [r], attrs={"index": 0}),
                             b.emit("get_tuple_element", [r], attrs={"index": 1})]), entry=True)
    return optimize(module, "cpu")[0]


@pytest.mark.parametrize("shape, dim", [((6, 37), 1), ((37, 6), 0)])
def test_variadic_reduce_argmax(shape, dim):
    x = np.random.default_rng(5).integers(0, 5, shape).astype(np.float32)    # ties on purpose
    module = argmax_module(shape, dim)
    assert_matches_interpreter(module, [x])
    values, indices = run_cpu(module, [x])
    np.testing.assert_array_equal(indices, np.argmax(x, axis=dim))


def softmax_module(rows, cols, dtype=dtypes.f32):
    """max, then exp / sum in one input fusion (normalize step)."""
    module = Module("softmax")
    b = Builder(module, "main")
    shape = Shape(dtype, (rows, cols))
    x = b.parameter(shape, "x")
    row = Shape(dtype, (rows,))
    maximum = b.emit("reduce", [x, b.constant(np.float32(-np.inf), dtype=dtype)],
                     attrs={"dimensions": (1,), "to_apply": scalar_computation(module, "maximum", dtype)})
    e = b.emit("exp", [b.emit("subtract", [x, b.emit("broadcast_in_dim", [maximum], attrs={
        "broadcast_dimensions": (0,)}, shape=shape)])])
    total = b.emit("reduce", [e, b.constant(np.float32(0), dtype=dtype)],
                   attrs={"dimensions": (1,), "to_apply": scalar_computation(module, "add", dtype)})
    out = b.emit("divide", [e, b.emit("broadcast_in_dim", [total], attrs={"broadcast_dimensions": (0,)},
                                      shape=shape)])
    b.build(b.emit("tuple", [out]), entry=True)
    assert row == total.shape
    return optimize(module, "cpu")[0]


@pytest.mark.parametrize("rows, cols", [(7, 1000), (3, 5), (1, 1), (64, 64)])
def test_softmax_keeps_exp_in_a_row_cache(rows, cols):
    module = softmax_module(rows, cols)
    x = np.random.default_rng(rows).standard_normal((rows, cols)).astype(np.float32) * 4
    assert_matches_interpreter(module, [x], rtol=3e-6, atol=1e-7)
    text = codegen.compile_program(module).ir
    assert "row_cache" in text                # exp(x - max) computed once per element:
    calls = text.count('call <16 x float> @"tessel.exp.v16f32"')
    assert calls <= kernels_reduce.ACCUMULATORS + 2  # in the first pass only (unrolled, rest, tail)


def test_column_sums_vectorize_across_the_kept_dim():
    module = reduce_module(dtypes.f32, [((50, 100), (0,), False)], "add")
    text = codegen.compile_program(module).ir
    assert "llvm.masked.load.v16f32" in text
    x = np.random.default_rng(6).standard_normal((50, 100)).astype(np.float32)
    assert_matches_interpreter(module, [x], rtol=2e-5, atol=1e-5)


def test_layer_norm_with_mean_and_variance_siblings():
    """Two reduces of one input in one kernel (multi-output input fusion)."""
    module = Module("moments")
    b = Builder(module, "main")
    shape = Shape(dtypes.f32, (9, 77))
    x = b.parameter(shape, "x")
    add = scalar_computation(module, "add", dtypes.f32)
    zero = b.constant(np.float32(0))
    s1 = b.emit("reduce", [x, zero], attrs={"dimensions": (1,), "to_apply": add})
    s2 = b.emit("reduce", [b.emit("multiply", [x, x]), zero], attrs={"dimensions": (1,), "to_apply": add})
    b.build(b.emit("tuple", [s1, s2]), entry=True)
    optimized, _ = optimize(module, "cpu")
    assert sum(i.opcode == "fusion" for i in optimized.entry.instructions) == 1
    x = np.random.default_rng(7).standard_normal((9, 77)).astype(np.float32)
    assert_matches_interpreter(optimized, [x], rtol=2e-5, atol=1e-5)


# ----------------------------------------------------------------------------- reduction levels

def _kernels(f, *args):
    import tessel
    return codegen.compile_program(tessel.jit(f).lower(*args).compile().module).kernels


def _assert_cpu_matches_interpreter(f, *args, rtol=3e-6, atol=1e-6):
    import tessel
    got, want = tessel.jit(f, backend="cpu")(*args), tessel.jit(f, backend="interpreter")(*args)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def _softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _layer_norm(x, gamma, beta):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return gamma * (x - mean) / np.sqrt(var + 1e-5) + beta


@pytest.mark.parametrize("shape, dtype", [((7, 1000), np.float32), ((5, 37), np.float32), ((3, 1), np.float32),
                                          ((2, 3, 130), np.float32), ((4, 17), np.float64), ((64, 64), np.float32)])
def test_softmax_and_layer_norm_are_one_kernel_each(shape, dtype):
    """Two reduction levels in one kernel: pass 1 the max / mean, pass 2 the sum of
    exp(x - max) / of (x - mean)^2 with pass 1 bound, then the normalize pass
    (vector tails, single-column rows, 3-D rows, f64)."""
    rng = np.random.default_rng(shape[-1])
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    gamma, beta = (rng.standard_normal(shape[-1]).astype(dtype) for _ in range(2))
    assert len(_kernels(_softmax, x)) == 1 and len(_kernels(_layer_norm, x, gamma, beta)) == 1
    _assert_cpu_matches_interpreter(_softmax, x)
    _assert_cpu_matches_interpreter(_layer_norm, x, gamma, beta, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("shape", [(9, 33), (300, 5), (4, 3, 20)])
def test_column_softmax_is_one_kernel(shape):
    """Levels in column mode (the reduced dim is not the last): each level a sweep
    over the reduced dims into the tile's accumulators, the levels below bound."""
    x = (np.random.default_rng(shape[0]).standard_normal(shape) * 3).astype(np.float32)
    f = lambda x: _softmax(x, axis=0)            # noqa: E731
    assert len(_kernels(f, x)) == 1
    _assert_cpu_matches_interpreter(f, x)


def _sum_then_max_reducer(module, dtype):
    """(a, b) -> max(a + b, a + b): a sum the kernel does not recognize (no identity
    known), so the kernel folds element by element (scalar code)."""
    b = Builder(module, "odd_add")
    s = Shape(dtype, ())
    p, q = b.parameter(s, "a"), b.parameter(s, "b")
    t = b.emit("add", [p, q])
    return b.build(b.emit("maximum", [t, t]))


@pytest.mark.parametrize("cols", [1, 5, 40])
def test_levels_in_scalar_code(cols):
    """Integers (exact): level 1 the row max, level 2 a sum of x - max with a reducer
    of unknown identity (scalar fold), then (x - max) * sum in the same kernel."""
    dtype = dtypes.s32
    module = Module("levels")
    b = Builder(module, "main")
    shape = Shape(dtype, (6, cols))
    x = b.parameter(shape, "x")
    m = b.emit("reduce", [x, b.constant(np.int32(np.iinfo(np.int32).min), dtype=dtype)],
               attrs={"dimensions": (1,), "to_apply": scalar_computation(module, "maximum", dtype)})
    d = b.emit("subtract", [x, b.emit("broadcast_in_dim", [m], attrs={"broadcast_dimensions": (0,)}, shape=shape)])
    s = b.emit("reduce", [d, b.constant(np.int32(0), dtype=dtype)],
               attrs={"dimensions": (1,), "to_apply": _sum_then_max_reducer(module, dtype)})
    out = b.emit("multiply", [d, b.emit("broadcast_in_dim", [s], attrs={"broadcast_dimensions": (0,)}, shape=shape)])
    b.build(b.emit("tuple", [out]), entry=True)
    optimized, _ = optimize(module, "cpu")
    (kernel,) = codegen.compile_program(optimized).kernels
    assert kernel.startswith("input:")
    x = np.random.default_rng(cols).integers(-50, 50, (6, cols)).astype(np.int32)
    assert_matches_interpreter(optimized, [x])


def test_reduce_levels_order_dependent_reduces():
    module = softmax_module(4, 8)
    (fusion,) = [i for i in module.entry.instructions if i.opcode == "fusion"]
    reduces = [i for i in fusion.attrs["calls"].instructions if i.opcode == "reduce"]
    levels = kernels_reduce.reduce_levels(reduces)
    assert [[r.attrs["to_apply"].root.opcode for r in level] for level in levels] == [["maximum"], ["add"]]


# ---------------------------------------------------------------- split full reductions

SPLIT_SHAPES = [  # (input dims, reduced dims): blocks of the last dim, ranges of rows, odd sizes
    ((200_003,), (0,)), ((3, 100_003), (0, 1)), ((640, 701), (0, 1)), ((2, 3, 70_001), (0, 1, 2)),
]


@pytest.mark.parametrize("dtype, op", [(dtypes.f32, "add"), (dtypes.f32, "maximum"), (dtypes.f32, "multiply"),
                                       (dtypes.f64, "add"), (dtypes.s32, "add"), (dtypes.pred, "minimum")],
                         ids=lambda v: getattr(v, "name", v))
def test_full_reductions_split_over_threads_match_and_do_not_depend_on_the_thread_count(dtype, op):
    from tessel.backends.cpu import runtime_support
    from tessel.backends.cpu.executable import CpuExecutable
    rng = np.random.default_rng(7)
    cases = [(shape, dims, True) for shape, dims in SPLIT_SHAPES]   # with a fused producer
    module = reduce_module(dtype, cases, op)
    exe = CpuExecutable(module, threads=2)
    assert exe.program.ir.count("tessel.reduce.parts") >= len(cases), "every case splits"
    args = [arguments(dtype, shape, op, rng)[0] for shape, _, _ in cases]
    got = exe.run(args)
    with runtime_support.max_threads(1):
        alone = exe.run(args)
    want = evaluate(module, args)
    for k, (g, a, w, x) in enumerate(zip(got, alone, want, args)):
        np.testing.assert_array_equal(g, a, err_msg=f"case {k}: 1 thread and 2 differ")
        assert g.shape == w.shape and g.dtype == w.dtype
        if dtype.is_float and op in ("add", "multiply"):
            scale = np.abs(x.astype(np.float64)).sum() if op == "add" else abs(float(w))
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6 * scale, err_msg=f"case {k}")
        else:
            np.testing.assert_array_equal(g, w, err_msg=f"case {k}")


def test_small_full_reductions_and_single_thread_programs_do_not_split():
    module = reduce_module(dtypes.f32, [((1000,), (0,), False)], "add")
    assert "tessel.reduce.parts" not in codegen.compile_program(module, threads=2).ir
    big = reduce_module(dtypes.f32, [((500_000,), (0,), True)], "add")
    assert "tessel.reduce.parts" not in codegen.compile_program(big, threads=1).ir
    assert "tessel.reduce.parts" in codegen.compile_program(big, threads=2).ir


def test_split_full_reduction_epilogue_runs_once_on_the_folded_value():
    """mean = sum / n: the epilogue is a row output, written by the fold, not per part."""
    import tessel
    x = np.random.default_rng(3).standard_normal((513, 1001)).astype(np.float32)
    f = tessel.jit(lambda x: (x * x).mean(), backend="cpu")
    np.testing.assert_allclose(f(x), (x.astype(np.float64) ** 2).mean(), rtol=1e-5)
