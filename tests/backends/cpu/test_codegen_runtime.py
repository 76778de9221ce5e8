"""CPU backend, runtime side: arguments in any NumPy layout are checked and made
contiguous before native code runs; outputs the plan aliases are copied; one arena
per thread; the GIL is released while native code runs; large kernels are split over
the thread pool."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import tessel
import tessel.numpy as tnp
from tessel.backends.cpu import codegen, executable
from tessel.backends.cpu.executable import CpuExecutable
from tessel.backends.interpreter import evaluate
from tessel.compiler import dtypes
from tessel.compiler.ir import Builder, Module, Shape
from tessel.compiler.pipeline import optimize


def affine_module(shape=(6, 5), dtype=dtypes.f32):
    """out = 2 * x + y (one loop fusion)."""
    module = Module("affine")
    b = Builder(module, "main")
    x, y = b.parameter(Shape(dtype, shape), "x"), b.parameter(Shape(dtype, shape), "y")
    two = b.emit("broadcast_in_dim", [b.constant(np.float32(2.0), dtype=dtype)],
                 attrs={"broadcast_dimensions": ()}, shape=Shape(dtype, shape))
    b.build(b.emit("tuple", [b.emit("add", [b.emit("multiply", [two, x]), y])]), entry=True)
    return optimize(module, "cpu")[0]


@pytest.fixture(scope="module")
def affine():
    return CpuExecutable(affine_module())


def base():
    return np.arange(30, dtype=np.float32).reshape(6, 5)


def misaligned(array):
    """A C-contiguous copy of `array` whose data is not aligned to its dtype."""
    raw = np.zeros(array.nbytes + 1, np.uint8)
    view = np.frombuffer(raw.data, dtype=array.dtype, count=array.size, offset=1).reshape(array.shape)
    view[...] = array
    assert not view.flags.aligned
    return view


def read_only(array):
    array = array.copy()
    array.flags.writeable = False
    return array


@pytest.mark.parametrize("make", [
    lambda x: np.asfortranarray(x),
    lambda x: np.ascontiguousarray(x.T).T,          # a transposed view
    lambda x: x[::-1][::-1],                          # negative strides, twice
    lambda x: np.repeat(x, 2, axis=1)[:, ::2],        # a strided slice
    lambda x: read_only(x),
    lambda x: misaligned(x),
], ids=["fortran", "transposed", "negative_strides", "strided", "read_only", "misaligned"])
def test_any_argument_layout_gives_the_contiguous_answer(affine, make):
    x, y = base(), base() * 0.5
    want = 2 * x + y
    given_x, given_y = make(x), make(y)
    np.testing.assert_array_equal(given_x, x)
    (got,) = affine.run([given_x, given_y])
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(given_x, x)             # inputs are never written


def test_reversed_rows_are_copied_not_misread(affine):
    x = base()
    (got,) = affine.run([x[::-1], x])
    np.testing.assert_array_equal(got, 2 * x[::-1] + x)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((5, 6), np.float32), r"argument 0 must be float32\[6, 5\]"),
    (np.zeros((6, 5), np.float64), r"argument 0 must be float32\[6, 5\], given float64"),
    (np.zeros((6, 5), np.dtype(">f4")), r"argument 0 must be float32"),
])
def test_wrong_arguments_never_reach_native_code(affine, bad, message):
    with pytest.raises(TypeError, match=message):
        affine.run([bad, base()])
    with pytest.raises(TypeError, match="expected 2 arguments"):
        affine.run([base()])


def test_a_compiled_program_checks_first_and_names_the_argument():
    compiled = tessel.jit(lambda x: x * 2, backend="cpu").lower(np.ones((3, 4), np.float32)).compile()
    np.testing.assert_array_equal(compiled(np.ones((3, 4), np.float32)), np.full((3, 4), 2, np.float32))
    with pytest.raises(TypeError, match=r"expected f32\[3, 4\], given f32\[3, 5\]"):
        compiled(np.ones((3, 5), np.float32))


def test_bf16_arguments_and_results_are_f32_arrays_of_bf16_values():
    module = affine_module(dtype=dtypes.bf16)
    x = np.linspace(-3, 3, 30, dtype=np.float32).reshape(6, 5)   # not bf16 values: rounded
    y = dtypes.round_to_bf16(x[::-1].copy())
    (got,) = CpuExecutable(module).run([x, y])
    want = evaluate(module, [x, y])[0]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, dtypes.round_to_bf16(got))


def aliasing_module():
    """Outputs: a new value, the parameter, a constant, the new value again, a reshape
    of the parameter (the entry writes only the first)."""
    module = Module("aliases")
    b = Builder(module, "main")
    x = b.parameter(Shape(dtypes.f32, (2, 3)), "x")
    y = b.emit("negate", [x])
    table = b.constant(np.arange(4, dtype=np.int32))
    flat = b.emit("reshape", [x], shape=Shape(dtypes.f32, (6,)))
    b.build(b.emit("tuple", [y, x, table, y, flat, b.emit("exp", [x])]), entry=True)
    return module


def test_outputs_the_plan_aliases_are_copies():
    module = aliasing_module()
    exe = CpuExecutable(module)
    assert set(exe.program.output_aliases) == {1, 2, 3, 4}
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    got = exe.run([x])
    want = evaluate(module, [x])
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6)
        assert g.dtype == w.dtype and g.shape == w.shape
    assert got[1] is not x and not np.shares_memory(got[0], got[3])
    got[1][0, 0] = 99.0                               # results are the caller's to modify
    assert x[0, 0] == 0.0


def test_the_portable_pointer_tables_give_the_same_results(monkeypatch):
    module = aliasing_module()
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    fast = CpuExecutable(module)
    monkeypatch.setattr(executable, "_object_layout", lambda: None)
    portable = CpuExecutable(module)
    assert fast._objects_entry is not None and portable._objects_entry is None
    for a, b in zip(fast.run([x]), portable.run([x])):
        np.testing.assert_array_equal(a, b)


def test_threads_calling_one_executable_use_their_own_arenas():
    module = Module("arena")       # a temporary in the arena between two kernels
    b = Builder(module, "main")
    x = b.parameter(Shape(dtypes.f32, (64, 33)), "x")
    t = b.emit("transpose", [b.emit("exp", [x])], attrs={"permutation": (1, 0)})
    b.build(b.emit("tuple", [b.emit("reduce", [t, b.constant(np.float32(0))], attrs={
        "dimensions": (1,), "to_apply": _add(module)})]), entry=True)
    exe = CpuExecutable(module)
    assert exe.program.scratch_bytes > 0
    inputs = [np.random.default_rng(k).standard_normal((64, 33)).astype(np.float32) for k in range(4)]
    wants = [np.exp(a).sum(axis=0) for a in inputs]
    failures = []

    def work(k):
        for _ in range(50):
            (got,) = exe.run([inputs[k]])
            if not np.allclose(got, wants[k], rtol=1e-5):
                failures.append(k)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


def _add(module):
    b = Builder(module, "add")
    s = Shape(dtypes.f32, ())
    return b.build(b.emit("add", [b.parameter(s, "a"), b.parameter(s, "b")]))


def test_native_code_runs_without_the_gil():
    f = tessel.jit(lambda x: tnp.sin(tnp.exp(x)) * tnp.tanh(x), backend="cpu")
    x = np.random.default_rng(0).standard_normal(4_000_000).astype(np.float32)
    f(x)                                               # compile first
    done, ticks = threading.Event(), [0]

    def call():
        for _ in range(3):
            f(x)
        done.set()

    worker = threading.Thread(target=call)
    start = time.perf_counter()
    worker.start()
    while not done.is_set():
        ticks[0] += 1
    worker.join()
    elapsed = time.perf_counter() - start
    # With the GIL held for the whole call the loop would barely advance.
    assert ticks[0] > 1000 * elapsed * 50


def test_large_kernels_use_the_thread_pool_and_small_ones_do_not():
    small = codegen.compile_program(affine_module((6, 5)), threads=2)
    large = codegen.compile_program(affine_module((512, 1024)), threads=2)
    single = codegen.compile_program(affine_module((512, 1024)), threads=1)
    assert "tessel_parallel_for" not in small.ir
    assert "call void @\"tessel_parallel_for\"" in large.ir
    assert "tessel_parallel_for" not in single.ir
    x = np.random.default_rng(2).standard_normal((512, 1024)).astype(np.float32)
    (got,) = CpuExecutable(affine_module((512, 1024)), threads=2).run([x, x])
    np.testing.assert_array_equal(got, 3 * x)


def test_large_constants_are_referenced_small_ones_embedded():
    """A closed-over array becomes a constant: a private global when small, the
    address of the program's own copy when large (JIT), a global when self-contained."""
    weights = np.random.default_rng(3).standard_normal(codegen.CONSTANT_GLOBAL_LIMIT // 2).astype(np.float32)
    f = tessel.jit(lambda x: x * weights + 1, backend="cpu")
    x = np.ones_like(weights)
    np.testing.assert_array_equal(f(x), weights + 1)
    module = optimize(tessel.jit(lambda x: x * weights + 1).lower(x).module, "cpu")[0]
    assert "@\"tessel.constants\" = private" not in codegen.compile_program(module).ir
    assert "@\"tessel.constants\" = private" in codegen.compile_program(module, self_contained=True).ir
    small = optimize(tessel.jit(lambda x: x * weights[:1000] + 1).lower(x[:1000]).module, "cpu")[0]
    assert "@\"tessel.constants\" = private" in codegen.compile_program(small).ir


# ---------------------------------------------------------------- the jit's dispatch fast path

def _two_x_plus_y():
    return tessel.jit(lambda x, y: 2 * x + y, backend="cpu")


@pytest.mark.parametrize("make", [
    lambda x: np.asfortranarray(x),
    lambda x: np.ascontiguousarray(x.T).T,
    lambda x: x[::-1][::-1],
    lambda x: read_only(x),
    lambda x: misaligned(x),
], ids=["fortran", "transposed", "negative_strides", "read_only", "misaligned"])
def test_fast_path_arrays_of_any_layout_are_checked_before_native_code(make):
    """Calls after the first skip binding and flattening (the arrays' dtype and shape
    pick the program), but every array still goes through the backend's layout check:
    a Fortran-ordered, strided or misaligned array of the right dtype and shape is
    copied, a read-only one read in place, and the answer is the contiguous one."""
    f = _two_x_plus_y()
    x, y = base(), base() * 0.5
    np.testing.assert_array_equal(f(x, y), 2 * x + y)
    assert len(f._fast) == 1 and f.trace_count == 1
    given_x, given_y = make(x), make(y)
    np.testing.assert_array_equal(f(given_x, given_y), 2 * x + y)
    np.testing.assert_array_equal(given_x, x)                 # never written
    assert f.trace_count == 1 and len(f._fast) == 1           # served by the fast path


def test_fast_path_wrong_shape_or_dtype_compiles_anew_never_reuses():
    f = _two_x_plus_y()
    x = base()
    f(x, x)
    wide = x.astype(np.float64)
    np.testing.assert_array_equal(f(wide, wide), 3 * wide)       # a new program, not the f32 one
    assert f(wide, wide).dtype == np.float64
    np.testing.assert_array_equal(f(x.T.copy(), x.T.copy()), 3 * x.T)
    assert f.trace_count == 3 and len(f._fast) == 3
    compiled = tessel.jit(lambda x: x * 2, backend="cpu").lower(x).compile()
    with pytest.raises(TypeError, match=r"expected f32\[6, 5\], given f64\[6, 5\]"):
        compiled(wide)


def test_fast_path_is_not_taken_for_scalars_subclasses_kwargs_and_statics():
    class Sub(np.ndarray):
        pass

    f = _two_x_plus_y()
    x = base()
    f(x, 1.0)                                      # a weak Python scalar: the general path
    f(x.view(Sub), x)                              # a subclass
    f(x, y=x)                                      # keywords
    assert f._fast == {}
    g = tessel.jit(lambda x, k: x * k, backend="cpu", static_argnums=(1,))
    np.testing.assert_array_equal(g(x, 3), 3 * x)
    np.testing.assert_array_equal(g(x, 4), 4 * x)  # the static value keys the cache
    assert g._fast == {}


def test_fast_path_keeps_pytree_outputs():
    f = tessel.jit(lambda x: {"double": 2 * x, "pair": (x, x + 1)}, backend="cpu")
    x = base()
    for _ in range(2):
        out = f(x)
        np.testing.assert_array_equal(out["double"], 2 * x)
        np.testing.assert_array_equal(out["pair"][1], x + 1)
    assert len(f._fast) == 1
