"""Thread pool benchmark: fork-join cost per parallel_for, and 2 threads vs 1.

    python bench/threadpool_bench.py [--threads 2] [--repeat 5]

Everything is timed inside native code (a loop of parallel_for calls, no ctypes crossing
per call). The body runs a dependent multiply-add chain per element, so the work is pure
compute with no memory traffic:

- fork-join: parallel_for over 2 elements (grain 1: 2 chunks), with the chunk work swept
  from nothing to 100 us, on a pool of 1 (inline), with spinning workers (the default),
  and with workers asleep at every call (spin 0: a condition-variable wake-up per call).
  The ideal for 2 threads is half the inline time.
- speed-up: one large compute-bound parallel_for on 1 thread and on --threads threads;
  "cores busy" is the process's CPU time over wall time.
- memory-bound ceiling: `tessel.jit(lambda x: x + 1)` on f32 vectors from L2-sized to
  DRAM-sized, the same program on 1 thread and on the pool (`max_threads`), in
  alternating pairs; GB/s counts bytes read plus written. A kernel that streams
  through memory cannot gain more from threads than this does.

Timings are the best of --repeat runs and noisy by nature (more so on a shared machine:
the load average is printed), hence a benchmark and not a test.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import time

import numpy as np

from tessel.backends.cpu import llvm_target, runtime_support, threadpool
from tessel.backends.cpu.llvm_target import JitModule

KERNELS = r"""
; ctx: { ptr out, i64 reps }; out[i] = `reps` steps of x = x * c + 1 from x = i
define internal void @chain_body(ptr %ctx, i64 %begin, i64 %end) {
entry:
  %out = load ptr, ptr %ctx
  %reps.p = getelementptr inbounds { ptr, i64 }, ptr %ctx, i32 0, i32 1
  %reps = load i64, ptr %reps.p
  br label %element
element:
  %i = phi i64 [ %begin, %entry ], [ %i.next, %store ]
  %x0 = sitofp i64 %i to double
  %any = icmp sgt i64 %reps, 0
  br i1 %any, label %step, label %store
step:
  %k = phi i64 [ 0, %element ], [ %k.next, %step ]
  %x = phi double [ %x0, %element ], [ %x.next, %step ]
  %scaled = fmul double %x, 0x3FEFF7CED916872B
  %x.next = fadd double %scaled, 1.000000e+00
  %k.next = add nsw i64 %k, 1
  %again = icmp slt i64 %k.next, %reps
  br i1 %again, label %step, label %store
store:
  %result = phi double [ %x0, %element ], [ %x.next, %step ]
  %p = getelementptr inbounds double, ptr %out, i64 %i
  store double %result, ptr %p
  %i.next = add nsw i64 %i, 1
  %more = icmp slt i64 %i.next, %end
  br i1 %more, label %element, label %done
done:
  ret void
}

; `calls` times parallel_for(chain_body, n, grain)
define void @repeat(ptr %out, i64 %n, i64 %reps, i64 %grain, i64 %calls) {
entry:
  %ctx = alloca { ptr, i64 }
  store ptr %out, ptr %ctx
  %reps.p = getelementptr inbounds { ptr, i64 }, ptr %ctx, i32 0, i32 1
  store i64 %reps, ptr %reps.p
  br label %loop
loop:
  %c = phi i64 [ 0, %entry ], [ %c.next, %loop ]
  call void $callee(ptr @chain_body, ptr %ctx, i64 %n, i64 %grain)
  %c.next = add nsw i64 %c, 1
  %more = icmp slt i64 %c.next, %calls
  br i1 %more, label %loop, label %done
done:
  ret void
}

declare i32 @clock_gettime(i32, ptr)
declare i64 @pthread_self()

define internal i64 @now_ns() {
entry:
  %ts = alloca { i64, i64 }, align 8
  %rc = call i32 @clock_gettime(i32 $clock_monotonic, ptr %ts)
  %sec = load i64, ptr %ts, align 8
  %nsec.p = getelementptr inbounds { i64, i64 }, ptr %ts, i32 0, i32 1
  %nsec = load i64, ptr %nsec.p, align 8
  %sec.ns = mul nsw i64 %sec, 1000000000
  %now = add nsw i64 %sec.ns, %nsec
  ret i64 %now
}

; ctx: { ptr record, i64 reps, i64 t0 }; record[2 * begin] = ns since t0 when the chunk
; starts, record[2 * begin + 1] = the thread; then `reps` steps of work
define internal void @handoff_body(ptr %ctx, i64 %begin, i64 %end) {
entry:
  %now = call i64 @now_ns()
  %self = call i64 @pthread_self()
  %record = load ptr, ptr %ctx
  %t0.p = getelementptr inbounds { ptr, i64, i64 }, ptr %ctx, i32 0, i32 2
  %t0 = load i64, ptr %t0.p
  %offset = sub i64 %now, %t0
  %slot = shl i64 %begin, 1
  %time.p = getelementptr inbounds i64, ptr %record, i64 %slot
  store i64 %offset, ptr %time.p
  %thread.p = getelementptr inbounds i64, ptr %time.p, i64 1
  store i64 %self, ptr %thread.p
  %out = getelementptr inbounds i64, ptr %record, i64 4
  %work = alloca { ptr, i64 }
  store ptr %out, ptr %work
  %reps.p = getelementptr inbounds { ptr, i64, i64 }, ptr %ctx, i32 0, i32 1
  %reps = load i64, ptr %reps.p
  %work.reps = getelementptr inbounds { ptr, i64 }, ptr %work, i32 0, i32 1
  store i64 %reps, ptr %work.reps
  call void @chain_body(ptr %work, i64 0, i64 1)
  ret void
}

; One parallel_for of 2 chunks, each `reps` steps long, timed from just before the call.
define void @handoff(ptr %record, i64 %reps) {
entry:
  %ctx = alloca { ptr, i64, i64 }
  store ptr %record, ptr %ctx
  %reps.p = getelementptr inbounds { ptr, i64, i64 }, ptr %ctx, i32 0, i32 1
  store i64 %reps, ptr %reps.p
  %t0.p = getelementptr inbounds { ptr, i64, i64 }, ptr %ctx, i32 0, i32 2
  %t0 = call i64 @now_ns()
  store i64 %t0, ptr %t0.p
  call void $callee(ptr @handoff_body, ptr %ctx, i64 2, i64 1)
  ret void
}
"""


class Bench:
    def __init__(self, repeat: int):
        _, callee = runtime_support.parallel_for_callee(jit=True)
        clock = threadpool.os_facts(llvm_target.host().triple).clock_monotonic
        text = KERNELS.replace("$callee", callee).replace("$clock_monotonic", str(clock))
        self.module = JitModule(text)
        i64 = ctypes.c_int64
        self._repeat = self.module.function("repeat", None, ctypes.c_void_p, i64, i64, i64, i64)
        self._handoff = self.module.function("handoff", None, ctypes.c_void_p, i64)
        self.out = np.zeros(1 << 16)
        self.repeat = repeat

    def run(self, n: int, reps: int, grain: int, calls: int) -> tuple[float, float]:
        """Best (wall, CPU) seconds of `calls` parallel_fors, over the repeats."""
        self._repeat(self.out.ctypes.data, n, reps, grain, max(1, calls // 10))   # warm up
        runs = []
        for _ in range(self.repeat):
            cpu, wall = time.process_time(), time.perf_counter()
            self._repeat(self.out.ctypes.data, n, reps, grain, calls)
            runs.append((time.perf_counter() - wall, time.process_time() - cpu))
        return min(runs)

    def reps_for(self, microseconds: float) -> int:
        """Chain length that takes about `microseconds` on one thread."""
        restart_pool(1)
        reps = 100_000
        wall, _ = self.run(1, reps, 1, 20)
        return max(1, round(microseconds * 1e-6 / (wall / 20 / reps)))


    def handoff_us(self, reps: int, calls: int) -> list[float]:
        """Microseconds from calling parallel_for to a worker starting its chunk, per call
        in which the two chunks ran on two threads."""
        record = np.zeros(6, np.int64)
        latencies = []
        for _ in range(calls):
            self._handoff(record.ctypes.data, reps)
            if record[1] != record[3]:
                latencies.append(max(record[0], record[2]) / 1e3)
            time.sleep(0.0005)           # a gap between calls, as between kernels
        return latencies


def restart_pool(threads: int, spin_us: int = threadpool.DEFAULT_SPIN_US) -> None:
    runtime_support.shutdown_pool()
    runtime_support.init_pool(threads)
    runtime_support.set_spin_us(spin_us)


def fork_join(bench: Bench, threads: int) -> None:
    print(f"fork-join: us per parallel_for of 2 chunks (ideal for {threads} threads: half of inline)")
    print(f"  {'work/chunk':>10}  {'inline':>8}  {'spinning':>8}  {'sleeping':>8}")
    pools = [(1, threadpool.DEFAULT_SPIN_US), (threads, threadpool.DEFAULT_SPIN_US), (threads, 0)]
    for work_us in (0, 2, 5, 20, 100):
        reps = bench.reps_for(work_us) if work_us else 0
        calls = 200_000 if work_us == 0 else max(200, int(200_000 / (work_us + 5)))
        row = []
        for size, spin_us in pools:
            restart_pool(size, spin_us)
            wall, _ = bench.run(2, reps, 1, calls if spin_us else calls // 5)
            row.append(1e6 * wall / (calls if spin_us else calls // 5))
        print(f"  {work_us:>7} us  " + "  ".join(f"{t:8.2f}" for t in row))


def handoff(bench: Bench, threads: int) -> None:
    print(f"dispatch latency: parallel_for call -> a worker starts its chunk ({threads} threads)")
    reps = bench.reps_for(300)
    for label, spin_us in (("spinning", 1000), ("asleep", 0)):
        restart_pool(threads, spin_us)
        latencies = bench.handoff_us(reps, 400)
        if not latencies:
            print(f"  workers {label:8}: no call ran on two threads")
            continue
        p50, p90 = np.percentile(latencies, [50, 90])
        print(f"  workers {label:8}: median {p50:6.1f} us  p90 {p90:6.1f} us  "
              f"({len(latencies)} of 400 calls ran on two threads)")


def speed_up(bench: Bench, threads: int) -> None:
    n, reps = 4096, 40_000
    print(f"compute-bound kernel ({n} elements x {reps} dependent multiply-adds, grain 16):")
    seconds = {}
    for size in (1, threads):
        restart_pool(size)
        wall, cpu = bench.run(n, reps, 16, 1)
        seconds[size] = wall
        print(f"  {size} thread(s): {1e3 * wall:8.1f} ms  "
              f"{2.0 * n * reps / wall / 1e9:6.2f} GFLOP/s  cores busy {cpu / wall:4.2f}")
    print(f"  speed-up {threads} vs 1: {seconds[1] / seconds[threads]:.2f}x")


def memory_ceiling(threads: int, pairs: int) -> None:
    import tessel
    print(f"memory-bound ceiling: x + 1 on f32, same program on 1 and {threads} threads "
          f"(median of {pairs} alternating pairs)")
    restart_pool(threads)
    for n in (1 << 18, 1 << 20, 1 << 22, 1 << 24):
        x = np.ones(n, np.float32)
        f = tessel.jit(lambda x: x + 1.0)
        f(x)
        calls = max(1, int(0.02 / _seconds(lambda: f(x), 1)))
        one, many = [], []
        for _ in range(pairs):
            with runtime_support.max_threads(1):
                one.append(_seconds(lambda: f(x), calls))
            many.append(_seconds(lambda: f(x), calls))
        t1, tn = float(np.median(one)), float(np.median(many))
        print(f"  {4 * n >> 20:>4} MB in: 1 thread {8 * n / t1 / 1e9:6.1f} GB/s  "
              f"{threads} threads {8 * n / tn / 1e9:6.1f} GB/s  speed-up {t1 / tn:.2f}x")


def _seconds(call, calls: int) -> float:
    call()
    start = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - start) / calls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="pool size to compare with 1")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    bench = Bench(args.repeat)
    handoff(bench, args.threads)
    fork_join(bench, args.threads)
    speed_up(bench, args.threads)
    memory_ceiling(args.threads, args.repeat)
    restart_pool(runtime_support.num_threads())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
