"""The native thread pool (backends/cpu/threadpool.py) driven by small JIT'd IR kernels.

Each kernel body writes or counts its own slice [begin, end), so a wrong split shows up
as an element written zero or two times, or as a wrong count.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from tessel.backends.cpu import llvm_target, runtime_support, threadpool
from tessel.backends.cpu.llvm_target import JitModule, TargetInfo

I64_MAX = 2**63 - 1

# ctx layouts are spelled out in each body's comment; %stats -> { calls, min_chunk, max_chunk }
KERNELS = r"""
$declaration

define internal void @record(ptr %stats, i64 %begin, i64 %end) {
entry:
  %size = sub nsw i64 %end, %begin
  %calls = atomicrmw add ptr %stats, i64 1 monotonic
  %min.p = getelementptr inbounds i64, ptr %stats, i64 1
  %min = atomicrmw min ptr %min.p, i64 %size monotonic
  %max.p = getelementptr inbounds i64, ptr %stats, i64 2
  %max = atomicrmw max ptr %max.p, i64 %size monotonic
  ret void
}

; ctx: { ptr out, ptr stats }; out[i] += i + 1
define internal void @fill_body(ptr %ctx, i64 %begin, i64 %end) {
entry:
  %out = load ptr, ptr %ctx
  %stats.p = getelementptr inbounds ptr, ptr %ctx, i64 1
  %stats = load ptr, ptr %stats.p
  call void @record(ptr %stats, i64 %begin, i64 %end)
  br label %loop
loop:
  %i = phi i64 [ %begin, %entry ], [ %i.next, %loop ]
  %p = getelementptr inbounds i64, ptr %out, i64 %i
  %old = load i64, ptr %p
  %i.next = add nsw i64 %i, 1
  %new = add i64 %old, %i.next
  store i64 %new, ptr %p
  %more = icmp slt i64 %i.next, %end
  br i1 %more, label %loop, label %done
done:
  ret void
}

define void @fill(ptr %out, ptr %stats, i64 %n, i64 %grain, i64 %reps) {
entry:
  %ctx = alloca { ptr, ptr }
  store ptr %out, ptr %ctx
  %stats.p = getelementptr inbounds ptr, ptr %ctx, i64 1
  store ptr %stats, ptr %stats.p
  br label %loop
loop:
  %r = phi i64 [ 0, %entry ], [ %r.next, %loop ]
  call void $callee(ptr @fill_body, ptr %ctx, i64 %n, i64 %grain)
  %r.next = add nsw i64 %r, 1
  %more = icmp slt i64 %r.next, %reps
  br i1 %more, label %loop, label %done
done:
  ret void
}

; ctx: ptr stats; counts iterations without touching memory per element (any n)
define internal void @count_body(ptr %stats, i64 %begin, i64 %end) {
entry:
  call void @record(ptr %stats, i64 %begin, i64 %end)
  %size = sub nsw i64 %end, %begin
  %total.p = getelementptr inbounds i64, ptr %stats, i64 3
  %total = atomicrmw add ptr %total.p, i64 %size monotonic
  ret void
}

define void @count(ptr %stats, i64 %n, i64 %grain) {
entry:
  call void $callee(ptr @count_body, ptr %stats, i64 %n, i64 %grain)
  ret void
}

; ctx: { ptr data, ptr total }; *total += sum(data[begin:end])
define internal void @sum_body(ptr %ctx, i64 %begin, i64 %end) {
entry:
  %data = load ptr, ptr %ctx
  %total.p = getelementptr inbounds ptr, ptr %ctx, i64 1
  %total = load ptr, ptr %total.p
  br label %loop
loop:
  %i = phi i64 [ %begin, %entry ], [ %i.next, %loop ]
  %acc = phi i64 [ 0, %entry ], [ %acc.next, %loop ]
  %p = getelementptr inbounds i64, ptr %data, i64 %i
  %x = load i64, ptr %p
  %acc.next = add i64 %acc, %x
  %i.next = add nsw i64 %i, 1
  %more = icmp slt i64 %i.next, %end
  br i1 %more, label %loop, label %done
done:
  %old = atomicrmw add ptr %total, i64 %acc.next monotonic
  ret void
}

define i64 @sum(ptr %data, i64 %n, i64 %grain) {
entry:
  %total = alloca i64
  store i64 0, ptr %total
  %ctx = alloca { ptr, ptr }
  store ptr %data, ptr %ctx
  %total.p = getelementptr inbounds ptr, ptr %ctx, i64 1
  store ptr %total, ptr %total.p
  call void $callee(ptr @sum_body, ptr %ctx, i64 %n, i64 %grain)
  %result = load atomic i64, ptr %total acquire, align 8
  ret i64 %result
}

; Nested: rows split over the pool, and each row's columns split again from the body.
; outer ctx: { ptr out, i64 cols, i64 grain }; inner ctx: { ptr row, i64 base }
define internal void @col_body(ptr %ctx, i64 %begin, i64 %end) {
entry:
  %row = load ptr, ptr %ctx
  %base.p = getelementptr inbounds { ptr, i64 }, ptr %ctx, i32 0, i32 1
  %base = load i64, ptr %base.p
  br label %loop
loop:
  %c = phi i64 [ %begin, %entry ], [ %c.next, %loop ]
  %p = getelementptr inbounds i64, ptr %row, i64 %c
  %old = load i64, ptr %p
  %c.next = add nsw i64 %c, 1
  %flat = add nsw i64 %base, %c.next
  %new = add i64 %old, %flat
  store i64 %new, ptr %p
  %more = icmp slt i64 %c.next, %end
  br i1 %more, label %loop, label %done
done:
  ret void
}

define internal void @row_body(ptr %ctx, i64 %begin, i64 %end) {
entry:
  %inner = alloca { ptr, i64 }
  %out = load ptr, ptr %ctx
  %cols.p = getelementptr inbounds { ptr, i64, i64 }, ptr %ctx, i32 0, i32 1
  %cols = load i64, ptr %cols.p
  %grain.p = getelementptr inbounds { ptr, i64, i64 }, ptr %ctx, i32 0, i32 2
  %grain = load i64, ptr %grain.p
  br label %loop
loop:
  %r = phi i64 [ %begin, %entry ], [ %r.next, %loop ]
  %base = mul nsw i64 %r, %cols
  %row = getelementptr inbounds i64, ptr %out, i64 %base
  store ptr %row, ptr %inner
  %base.p = getelementptr inbounds { ptr, i64 }, ptr %inner, i32 0, i32 1
  store i64 %base, ptr %base.p
  call void $callee(ptr @col_body, ptr %inner, i64 %cols, i64 %grain)
  %r.next = add nsw i64 %r, 1
  %more = icmp slt i64 %r.next, %end
  br i1 %more, label %loop, label %done
done:
  ret void
}

define void @fill2d(ptr %out, i64 %rows, i64 %cols, i64 %grain) {
entry:
  %ctx = alloca { ptr, i64, i64 }
  store ptr %out, ptr %ctx
  %cols.p = getelementptr inbounds { ptr, i64, i64 }, ptr %ctx, i32 0, i32 1
  store i64 %cols, ptr %cols.p
  %grain.p = getelementptr inbounds { ptr, i64, i64 }, ptr %ctx, i32 0, i32 2
  store i64 %grain, ptr %grain.p
  call void $callee(ptr @row_body, ptr %ctx, i64 %rows, i64 1)
  ret void
}

; ctx: { ptr out, i64 reps }; out[i] = reps steps of x = x * 0.5 + 1 from x = i (slow)
define internal void @busy_body(ptr %ctx, i64 %begin, i64 %end) {
entry:
  %out = load ptr, ptr %ctx
  %reps.p = getelementptr inbounds { ptr, i64 }, ptr %ctx, i32 0, i32 1
  %reps = load i64, ptr %reps.p
  br label %element
element:
  %i = phi i64 [ %begin, %entry ], [ %i.next, %store ]
  %x0 = sitofp i64 %i to double
  br label %step
step:
  %k = phi i64 [ 0, %element ], [ %k.next, %step ]
  %x = phi double [ %x0, %element ], [ %x.next, %step ]
  %half = fmul double %x, 5.000000e-01
  %x.next = fadd double %half, 1.000000e+00
  %k.next = add nsw i64 %k, 1
  %again = icmp slt i64 %k.next, %reps
  br i1 %again, label %step, label %store
store:
  %p = getelementptr inbounds double, ptr %out, i64 %i
  store double %x.next, ptr %p
  %i.next = add nsw i64 %i, 1
  %more = icmp slt i64 %i.next, %end
  br i1 %more, label %element, label %done
done:
  ret void
}

declare i64 @pthread_self()

; ctx: { ptr ids, i64 reps }; ids[i] = the thread that ran i, after `reps` steps of work
define internal void @who_body(ptr %ctx, i64 %begin, i64 %end) {
entry:
  %ids = load ptr, ptr %ctx
  %reps.p = getelementptr inbounds { ptr, i64 }, ptr %ctx, i32 0, i32 1
  %reps = load i64, ptr %reps.p
  %self = call i64 @pthread_self()
  br label %element
element:
  %i = phi i64 [ %begin, %entry ], [ %i.next, %store ]
  br label %step
step:
  %k = phi i64 [ 0, %element ], [ %k.next, %step ]
  %x = phi double [ 1.000000e+00, %element ], [ %x.next, %step ]
  %half = fmul double %x, 5.000000e-01
  %x.next = fadd double %half, 1.000000e+00
  %k.next = add nsw i64 %k, 1
  %again = icmp slt i64 %k.next, %reps
  br i1 %again, label %step, label %store
store:
  %impossible = fcmp oeq double %x.next, 3.000000e+00      ; keeps the work alive
  %id = select i1 %impossible, i64 0, i64 %self
  %p = getelementptr inbounds i64, ptr %ids, i64 %i
  store i64 %id, ptr %p
  %i.next = add nsw i64 %i, 1
  %more = icmp slt i64 %i.next, %end
  br i1 %more, label %element, label %done
done:
  ret void
}

define void @who(ptr %ids, i64 %n, i64 %reps) {
entry:
  %ctx = alloca { ptr, i64 }
  store ptr %ids, ptr %ctx
  %reps.p = getelementptr inbounds { ptr, i64 }, ptr %ctx, i32 0, i32 1
  store i64 %reps, ptr %reps.p
  call void $callee(ptr @who_body, ptr %ctx, i64 %n, i64 1)
  ret void
}

define void @busy(ptr %out, i64 %n, i64 %reps) {
entry:
  %ctx = alloca { ptr, i64 }
  store ptr %out, ptr %ctx
  %reps.p = getelementptr inbounds { ptr, i64 }, ptr %ctx, i32 0, i32 1
  store i64 %reps, ptr %reps.p
  call void $callee(ptr @busy_body, ptr %ctx, i64 %n, i64 1)
  ret void
}
"""

P = ctypes.c_void_p
I64 = ctypes.c_int64


class Kernels:
    """The kernels above, JIT-compiled against the process's pool."""

    def __init__(self, jit_callee: bool = True):
        declaration, callee = runtime_support.parallel_for_callee(jit=jit_callee)
        text = KERNELS.replace("$declaration", declaration).replace("$callee", callee)
        self.module = JitModule(text)
        self.fill_fn = self.module.function("fill", None, P, P, I64, I64, I64)
        self.count_fn = self.module.function("count", None, P, I64, I64)
        self.sum_fn = self.module.function("sum", I64, P, I64, I64)
        self.fill2d_fn = self.module.function("fill2d", None, P, I64, I64, I64)
        self.busy_fn = self.module.function("busy", None, P, I64, I64)
        self.who_fn = self.module.function("who", None, P, I64, I64)

    def fill(self, n: int, grain: int, reps: int = 1):
        out = np.zeros(max(n, 0), np.int64)
        stats = _stats()
        self.fill_fn(out.ctypes.data, stats.ctypes.data, n, grain, reps)
        return out, stats

    def count(self, n: int, grain: int):
        stats = _stats()
        self.count_fn(stats.ctypes.data, n, grain)
        return stats

    def sum(self, data: np.ndarray, grain: int) -> int:
        return self.sum_fn(data.ctypes.data, data.size, grain)

    def fill2d(self, rows: int, cols: int, grain: int):
        out = np.zeros((rows, cols), np.int64)
        self.fill2d_fn(out.ctypes.data, rows, cols, grain)
        return out

    def who(self, n: int, reps: int) -> np.ndarray:
        ids = np.zeros(n, np.int64)
        self.who_fn(ids.ctypes.data, n, reps)
        return ids

    def busy(self, n: int, reps: int):
        out = np.zeros(n, np.float64)
        self.busy_fn(out.ctypes.data, n, reps)
        return out


def _stats() -> np.ndarray:
    """{ calls, min chunk, max chunk, total iterations }"""
    return np.array([0, I64_MAX, 0, 0], np.int64)


@pytest.fixture(scope="module")
def kernels():
    return Kernels()


@pytest.fixture
def pool_of():
    """pool_of(k) restarts the pool with k threads; the default pool is back afterwards."""
    def restart(threads: int) -> int:
        runtime_support.shutdown_pool()
        return runtime_support.init_pool(threads)
    yield restart
    runtime_support.set_spin_us(threadpool.DEFAULT_SPIN_US)
    restart(runtime_support.num_threads())


def expected_fill(n: int, reps: int = 1) -> np.ndarray:
    return reps * np.arange(1, n + 1, dtype=np.int64)


# ---------------------------------------------------------------- splitting
SIZES = [0, 1, 2, 3, 5, 7, 8, 64, 1000, 100_003, 3_000_001]
GRAINS = [-5, 0, 1, 2, 3, 16, 1000, 2**40]


@pytest.mark.parametrize("threads", [1, 2, 3, 4, 7])
def test_every_element_written_exactly_once(kernels, pool_of, threads):
    assert pool_of(threads) == threads
    assert runtime_support.pool_size() == threads
    for n in SIZES:
        for grain in GRAINS:
            out, (calls, smallest, largest, _) = kernels.fill(n, grain)
            np.testing.assert_array_equal(out, expected_fill(n), err_msg=f"n={n} grain={grain}")
            if n == 0:
                assert calls == 0
                continue
            assert smallest >= min(max(grain, 1), n), (n, grain, smallest)
            if threads == 1 or n <= max(grain, 1):
                assert (calls, smallest, largest) == (1, n, n), "runs inline, in one piece"


@pytest.mark.parametrize("n", [1, 10, 12_345, 2**40 + 3, 2**62, I64_MAX])
@pytest.mark.parametrize("grain", [1, 7, 2**20])
def test_counts_cover_huge_ranges_without_overflow(kernels, pool_of, n, grain):
    threads = pool_of(3)
    calls, smallest, largest, total = kernels.count(n, grain)
    assert total == n
    assert smallest >= min(grain, n)
    if n > grain:
        assert calls <= threads * threadpool.CHUNKS_PER_THREAD
        assert largest < 2 * max(smallest, grain, -(-n // (threads * threadpool.CHUNKS_PER_THREAD)))


def test_parallel_sum(kernels, rng):
    data = rng.integers(-1000, 1000, size=1_000_003).astype(np.int64)
    for grain in (1, 100, 10_000, 2_000_000):
        assert kernels.sum(data, grain) == int(data.sum())


@pytest.mark.parametrize("threads", [2, 3])
def test_nested_parallel_for_runs_inline(kernels, pool_of, threads):
    pool_of(threads)
    for rows, cols, grain in [(1, 1000, 1), (7, 513, 16), (64, 64, 1), (3, 100_000, 1000)]:
        out = kernels.fill2d(rows, cols, grain)
        expected = np.arange(1, rows * cols + 1, dtype=np.int64).reshape(rows, cols)
        np.testing.assert_array_equal(out, expected)


def test_program_module_may_declare_the_symbol():
    # jit_support() registered the exports with LLVM, so the AOT spelling also JITs.
    runtime_support.init_pool()
    kernels = Kernels(jit_callee=False)
    out, _ = kernels.fill(10_000, 10)
    np.testing.assert_array_equal(out, expected_fill(10_000))


@pytest.mark.parametrize("spin_us", [threadpool.DEFAULT_SPIN_US, 0])
def test_workers_take_part(kernels, pool_of, spin_us):
    # 8 chunks of a few ms: the worker wakes (spin 0: from sleep) long before they run
    # out, and a caller done first waits (spin 0: asleep) for the worker's last chunk.
    # (A worker may still miss a whole run on a loaded machine, hence "any of 5".)
    pool_of(2)
    runtime_support.set_spin_us(spin_us)
    threads_per_run = []
    for _ in range(5):
        ids = kernels.who(16, 1_000_000)
        assert (ids != 0).all()
        threads_per_run.append(len(set(ids.tolist())))
    assert max(threads_per_run) == 2, "every chunk ran on the calling thread"


@pytest.mark.parametrize("limit", [1, 2])
def test_max_threads_caps_the_threads_of_each_loop(kernels, pool_of, limit):
    pool_of(3)
    with runtime_support.max_threads(limit):
        assert runtime_support.pool_size() == limit
        used = set()
        for _ in range(5):
            ids = kernels.who(24, 300_000)
            assert (ids != 0).all()
            used.add(len(set(ids.tolist())))
        out, (calls, *_) = kernels.fill(100_003, 1)
        np.testing.assert_array_equal(out, expected_fill(100_003))
    assert max(used) <= limit
    if limit == 1:
        assert calls == 1, "one thread: the loop runs inline, in one piece"
    assert runtime_support.pool_size() == 3                  # the limit is lifted again
    assert runtime_support.set_max_threads(None) is None


def test_max_threads_above_the_pool_size_uses_the_pool(kernels, pool_of):
    pool_of(2)
    previous = runtime_support.set_max_threads(8)
    try:
        assert runtime_support.pool_size() == 2
        out, _ = kernels.fill(10_000, 1)
        np.testing.assert_array_equal(out, expected_fill(10_000))
    finally:
        runtime_support.set_max_threads(previous)


# ---------------------------------------------------------------- robustness
@pytest.mark.parametrize("threads, spin_us", [(2, threadpool.DEFAULT_SPIN_US), (2, 0), (3, 0)])
def test_ten_thousand_tiny_loops_do_not_deadlock(kernels, pool_of, threads, spin_us):
    # spin 0 sends every idle thread to sleep at once: the wake-up path runs every time.
    pool_of(threads)
    runtime_support.set_spin_us(spin_us)
    reps = 10_000
    out, (calls, *_) = kernels.fill(8, 1, reps=reps)
    np.testing.assert_array_equal(out, expected_fill(8, reps))
    assert calls >= reps


def test_ten_thousand_calls_from_python(kernels):
    runtime_support.init_pool()
    out = np.zeros(16, np.int64)
    stats = _stats()
    for _ in range(10_000):
        kernels.fill_fn(out.ctypes.data, stats.ctypes.data, 16, 1, 1)
    np.testing.assert_array_equal(out, expected_fill(16, 10_000))


def test_concurrent_callers_share_the_pool(kernels, pool_of):
    # Whoever finds the pool busy runs its loop inline: all results stay right.
    pool_of(2)
    failures = []

    def caller(seed: int):
        for i in range(300):
            n = 1000 + 37 * ((seed * 31 + i) % 50)
            out, _ = kernels.fill(n, 1 + i % 5)
            if not np.array_equal(out, expected_fill(n)):
                failures.append((seed, i, n))

    threads = [threading.Thread(target=caller, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a caller is stuck"
    assert failures == []


def python_progress_during(native_call) -> tuple[float, int, float]:
    """Run `native_call` on another thread while this one loops in Python.

    Returns the native call's duration, how many loop steps fell inside it, and the
    longest stretch of it in which this thread made no step.
    """
    span = {}

    def native():
        span["start"] = time.perf_counter()
        native_call()
        span["end"] = time.perf_counter()

    worker = threading.Thread(target=native)
    stamps = []
    worker.start()
    while worker.is_alive():
        stamps.append(time.perf_counter())
    worker.join()
    start, end = span["start"], span["end"]
    inside = [start] + [t for t in stamps if start < t < end] + [end]
    return end - start, len(inside) - 2, max(b - a for a, b in zip(inside, inside[1:]))


def test_gil_is_released_while_native_code_runs(kernels):
    runtime_support.init_pool()
    duration, steps, stall = python_progress_during(lambda: kernels.busy(2000, 40_000))
    assert duration > 0.05, "the native call is too short to tell"
    # Holding the GIL would stall this thread for (nearly) the whole call.
    assert steps > 1000 and stall < 0.25 * duration, (duration, steps, stall)


def test_results_of_busy_kernel(kernels):
    out = kernels.busy(100, 60)
    np.testing.assert_allclose(out, 2.0 + (np.arange(100) - 2.0) * 0.5**60)


def test_idle_pool_burns_no_cpu(kernels, pool_of):
    pool_of(2)
    kernels.fill(100_000, 10)
    time.sleep(0.05)                              # spin budget (DEFAULT_SPIN_US) long gone
    cpu_before, wall_before = time.process_time(), time.perf_counter()
    time.sleep(0.3)
    cpu = time.process_time() - cpu_before
    wall = time.perf_counter() - wall_before
    assert cpu < 0.1 * wall, f"{cpu:.3f}s of CPU in {wall:.3f}s idle"


def test_shutdown_then_loops_run_inline_until_init(kernels, pool_of):
    pool_of(2)
    runtime_support.shutdown_pool()
    runtime_support.shutdown_pool()               # idempotent
    assert runtime_support.pool_size() == 1
    out, (calls, *_) = kernels.fill(10_000, 1)
    np.testing.assert_array_equal(out, expected_fill(10_000))
    assert calls == 1
    assert runtime_support.init_pool(2) == 2
    assert runtime_support.init_pool(5) == 2      # a running pool keeps its size
    out, (calls, *_) = kernels.fill(10_000, 1)
    np.testing.assert_array_equal(out, expected_fill(10_000))
    assert calls > 1


def test_num_threads_reads_the_environment(monkeypatch):
    monkeypatch.setenv("TESSEL_NUM_THREADS", "3")
    assert runtime_support.num_threads() == 3
    monkeypatch.delenv("TESSEL_NUM_THREADS")
    assert runtime_support.num_threads() == runtime_support.usable_cpus() == len(os.sched_getaffinity(0))
    for bad in ("zero", "0", "-2"):
        monkeypatch.setenv("TESSEL_NUM_THREADS", bad)
        with pytest.raises(ValueError, match="TESSEL_NUM_THREADS"):
            runtime_support.num_threads()


def test_jit_support_is_one_module_per_process():
    results = []
    threads = [threading.Thread(target=lambda: results.append(runtime_support.jit_support()))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(r) for r in results}) == 1
    assert runtime_support.parallel_for_address() == results[0].address("tessel_parallel_for")


def _run_python(script: str, env: dict | None = None, timeout: float = 60):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


_KERNELS_IN_CHILD = f"""
    import importlib.util, numpy as np
    spec = importlib.util.spec_from_file_location("tp", {__file__!r})
    tp = importlib.util.module_from_spec(spec); spec.loader.exec_module(tp)
    from tessel.backends.cpu import runtime_support
    kernels = tp.Kernels()
"""


def test_process_exits_cleanly_with_a_running_pool():
    result = _run_python(_KERNELS_IN_CHILD + """
    assert runtime_support.pool_size() == 3
    out, _ = kernels.fill(100_000, 10)
    assert (out == tp.expected_fill(100_000)).all()
    print("ok")
    """, env={"TESSEL_NUM_THREADS": "3"})
    assert (result.returncode, result.stdout.strip()) == (0, "ok"), result.stderr


def test_forked_child_runs_inline_then_reinitializes():
    result = _run_python(_KERNELS_IN_CHILD + """
    import os, warnings
    warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads alive
    kernels.fill(100_000, 10)
    pid = os.fork()
    if pid == 0:
        ok = runtime_support.pool_size() == 1
        out, stats = kernels.fill(100_000, 10)
        ok = ok and (out == tp.expected_fill(100_000)).all() and stats[0] == 1
        ok = ok and runtime_support.init_pool(2) == 2
        out, stats = kernels.fill(100_000, 10)
        ok = ok and (out == tp.expected_fill(100_000)).all() and stats[0] > 1
        runtime_support.shutdown_pool()
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    out, _ = kernels.fill(100_000, 10)
    assert (out == tp.expected_fill(100_000)).all()
    print("child", os.waitstatus_to_exitcode(status))
    """, env={"TESSEL_NUM_THREADS": "2"})
    assert (result.returncode, result.stdout.strip()) == (0, "child 0"), result.stderr


# ---------------------------------------------------------------- AOT
C_PROGRAM = r"""
#include <stdint.h>
#include <stdio.h>

int tessel_pool_init(int n_threads);
int tessel_pool_size(void);
void tessel_parallel_for(void (*fn)(void *, int64_t, int64_t), void *ctx, int64_t n,
                         int64_t grain);
void tessel_pool_shutdown(void);

enum { ROWS = 100, COLS = 10007 };
static int64_t out[ROWS * COLS];
struct row_ctx { int64_t *row; int64_t base; };

static void cols(void *ctx, int64_t begin, int64_t end) {
    struct row_ctx *r = ctx;
    for (int64_t c = begin; c < end; ++c) r->row[c] += r->base + c + 1;
}

static void rows(void *ctx, int64_t begin, int64_t end) {
    (void)ctx;
    for (int64_t r = begin; r < end; ++r) {
        struct row_ctx inner = { out + r * COLS, r * COLS };
        tessel_parallel_for(cols, &inner, COLS, 64);      /* nested: runs inline */
    }
}

static void flat(void *ctx, int64_t begin, int64_t end) {
    (void)ctx;
    for (int64_t i = begin; i < end; ++i) out[i] += i + 1;
}

int main(void) {
    int size = tessel_pool_init(0);
    tessel_parallel_for(rows, NULL, ROWS, 1);
    for (int rep = 0; rep < 1000; ++rep) tessel_parallel_for(flat, NULL, ROWS * COLS, 4096);
    int64_t wrong = 0;
    for (int64_t i = 0; i < ROWS * COLS; ++i) wrong += out[i] != 1001 * (i + 1);
    tessel_pool_shutdown();
    printf("size=%d after=%d wrong=%lld\n", size, tessel_pool_size(), (long long)wrong);
    return wrong != 0;
}
"""


def test_support_object_links_into_a_c_program(tmp_path):
    cc = shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler `cc` on PATH to link the support object with")
    info = llvm_target.host()
    (tmp_path / "support.o").write_bytes(
        llvm_target.emit_object(runtime_support.support_module_ir(info), info))
    (tmp_path / "main.c").write_text(C_PROGRAM)
    build = subprocess.run([cc, "-O1", "-o", "main", "main.c", "support.o", "-lpthread"],
                           cwd=tmp_path, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(tmp_path / "main")], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "TESSEL_NUM_THREADS": "3"})
    assert (run.returncode, run.stdout.strip()) == (0, "size=3 after=1 wrong=0"), run.stderr


@pytest.mark.parametrize("triple, header", [
    ("x86_64-unknown-linux-gnu", b"\x7fELF\x02\x01\x01\x00" + bytes(8) + b"\x01\x00\x3e\x00"),
    ("aarch64-unknown-linux-gnu", b"\x7fELF\x02\x01\x01\x00" + bytes(8) + b"\x01\x00\xb7\x00"),
    ("arm64-apple-macosx13.0.0", b"\xcf\xfa\xed\xfe\x0c\x00\x00\x01"),
])
def test_support_object_for_other_targets(triple, header):
    # Relocatable ELF-64 for x86-64 (62) / aarch64 (183), Mach-O 64 for arm64: cross
    # objects only need to build here.
    info = TargetInfo(triple, "generic", "")
    obj = llvm_target.emit_object(runtime_support.support_module_ir(info), info)
    assert obj[:len(header)] == header


def test_unsupported_target_is_refused_by_name():
    with pytest.raises(ValueError, match="x86_64-pc-windows-msvc"):
        runtime_support.support_module_ir(TargetInfo("x86_64-pc-windows-msvc", "generic", ""))
