"""A persistent thread pool written in LLVM IR, for native code to run loops in parallel.

Compiled programs call `tessel_parallel_for(fn, ctx, n, grain)`; it splits [0, n) into
chunks over a fixed set of worker threads plus the caller and returns when every chunk
has run. The pool is plain LLVM IR over libc (pthreads, clock_gettime, sched_yield), so
it needs no C compiler: the same text is JIT-compiled once per process and emitted as an
object file that AOT programs link next to their own code (docs/cpu-threads.md).

Exported C ABI (see `EXPORTS`):

    int  tessel_pool_init(int n_threads);    /* <= 0: $TESSEL_NUM_THREADS, else CPUs */
    void tessel_parallel_for(void (*fn)(void *ctx, int64_t begin, int64_t end),
                             void *ctx, int64_t n, int64_t grain);
    int  tessel_pool_size(void);
    void tessel_pool_shutdown(void);
    void tessel_pool_set_spin_us(int us);    /* how long idle threads spin before sleeping */
    int  tessel_pool_set_max_threads(int n); /* threads per job from now, <= 0: all; returns
                                                the previous limit */
    void tessel_pool_after_fork_child(void); /* forget the workers a fork left behind */

Synchronization: the hot path is atomics only. A job is published by bumping a
generation counter; threads claim chunks by compare-and-swap on a word tagged with the
job's generation, and the caller waits only for the claimed chunks to finish, never for
a thread that was late to wake. Waiting threads (idle workers, and the caller waiting
for the last chunk) poll with a CPU spin hint for up to `spin_us`, then block on a
pthread condition variable; the waking side touches the mutex only when someone is
blocked. Back-to-back dispatches thus cost about a microsecond, and an idle pool burns
no CPU.
"""
from __future__ import annotations

from dataclasses import dataclass
from string import Template

EXPORTS = (
    "tessel_pool_init",
    "tessel_parallel_for",
    "tessel_pool_size",
    "tessel_pool_shutdown",
    "tessel_pool_set_spin_us",
    "tessel_pool_set_max_threads",
    "tessel_pool_after_fork_child",
)

# How a program module declares the pool's entry; a body is `void (ptr ctx, i64, i64)`.
PARALLEL_FOR_DECLARATION = "declare void @tessel_parallel_for(ptr, ptr, i64, i64)"

MAX_THREADS = 256           # more than any machine we target; caps a bad env value
CHUNKS_PER_THREAD = 4       # over-split so threads that finish early take more work
DEFAULT_SPIN_US = 1000      # bridges back-to-back kernels, the inline kernels between
                            # parallel ones and the Python gap between calls (measured:
                            # 200 us put the worker to sleep 1-3 times per GPT-2 block
                            # call and ~0.25 times per MLP call; 1000 us: ~0)
POLL_BATCH = 64             # polls between looks at the clock while spinning
YIELD_AFTER_US = 20         # spinning longer than this also yields the core at each look
PREEMPTED_US = 50           # a gap this long between looks: the spinner lost its core
SYNC_OBJECT_BYTES = 64      # >= pthread_mutex_t / pthread_cond_t on every OS below
                            # (glibc x86-64: 40 / 48, glibc aarch64: 48 / 48, macOS: 64 / 48)
PTHREAD_T_BYTES = 8         # an unsigned long (Linux) or a pointer (macOS)


@dataclass(frozen=True)
class OsFacts:
    """Constants from the C headers of one operating system (64-bit)."""
    clock_monotonic: int        # <time.h> CLOCK_MONOTONIC
    sc_nprocessors_onln: int    # <unistd.h> _SC_NPROCESSORS_ONLN
    sig_setmask: int            # <signal.h> SIG_SETMASK
    sigset_bytes: int           # sizeof(sigset_t)


OS_FACTS = {
    "linux": OsFacts(clock_monotonic=1, sc_nprocessors_onln=84, sig_setmask=2, sigset_bytes=128),
    "darwin": OsFacts(clock_monotonic=6, sc_nprocessors_onln=58, sig_setmask=3, sigset_bytes=4),
}

# The CPU's "I am spinning" hint (declaration, call), by architecture. Other
# architectures poll without one.
SPIN_HINTS = {
    "x86_64": ("declare void @llvm.x86.sse2.pause()", "call void @llvm.x86.sse2.pause()"),
    "aarch64": ("declare void @llvm.aarch64.hint(i32)", "call void @llvm.aarch64.hint(i32 1)"),
}
SPIN_HINTS["arm64"] = SPIN_HINTS["aarch64"]


def os_facts(triple: str) -> OsFacts:
    for name, facts in OS_FACTS.items():
        if name in triple or (name == "darwin" and ("apple" in triple or "macos" in triple)):
            return facts
    raise ValueError(f"no thread pool for target {triple!r}: it needs POSIX threads "
                     f"on one of {sorted(OS_FACTS)}")


def pool_ir(triple: str) -> str:
    """The thread pool as LLVM IR text for `triple` (opaque pointers, no target line:
    llvm_target sets triple and data layout when it compiles the module)."""
    facts = os_facts(triple)
    hint_decl, hint_call = SPIN_HINTS.get(triple.split("-")[0], ("", ""))
    return _POOL.substitute(
        clock_monotonic=facts.clock_monotonic,
        sc_nprocessors_onln=facts.sc_nprocessors_onln,
        sig_setmask=facts.sig_setmask,
        sigset_bytes=facts.sigset_bytes,
        spin_hint_decl=hint_decl,
        spin_hint=hint_call,
        sync_bytes=SYNC_OBJECT_BYTES,
        pthread_t_bytes=PTHREAD_T_BYTES,
        max_threads=MAX_THREADS,
        chunks_per_thread=CHUNKS_PER_THREAD,
        default_spin_ns=DEFAULT_SPIN_US * 1000,
        poll_batch=POLL_BATCH,
        poll_mask=POLL_BATCH - 1,
        yield_after_ns=YIELD_AFTER_US * 1000,
        preempted_ns=PREEMPTED_US * 1000,
    )


# The IR. Every word that threads write concurrently sits on its own cache line (align
# 64); the job shares one with the generation that announces it.
#
# Publishing: the caller stores the claim word (tagged with the new generation), then the
# job fields (release), then bumps the generation (seq_cst). A thread reads the fields
# (acquire) and claims chunks by compare-and-swap on the claim word, only while its tag
# is the generation the thread saw. So a late thread that read fields of a newer job
# fails its claim, and nobody waits for threads that have not claimed anything: the
# caller waits for @pool.done to reach the chunk count, and each chunk's results are
# published by its seq_cst increment of @pool.done.
#
# Sleeping: the waiter raises its waiter count then re-reads the word it waits on; the
# waker changes the word then reads the waiter count (all seq_cst), so one of them sees
# the other and no wake-up is lost.
_POOL = Template(r"""
; ---------------------------------------------------------------- libc
declare i32 @pthread_create(ptr, ptr, ptr, ptr)
declare i32 @pthread_join(i64, ptr)
declare i32 @pthread_mutex_init(ptr, ptr)
declare i32 @pthread_mutex_destroy(ptr)
declare i32 @pthread_mutex_lock(ptr)
declare i32 @pthread_mutex_unlock(ptr)
declare i32 @pthread_cond_init(ptr, ptr)
declare i32 @pthread_cond_destroy(ptr)
declare i32 @pthread_cond_wait(ptr, ptr)
declare i32 @pthread_cond_broadcast(ptr)
declare i32 @pthread_sigmask(i32, ptr, ptr)
declare i32 @sigfillset(ptr)
declare i32 @sched_yield()
declare i32 @clock_gettime(i32, ptr)
declare ptr @getenv(ptr)
declare i64 @strtol(ptr, ptr, i32)
declare i64 @sysconf(i32)
declare ptr @malloc(i64)
declare void @free(ptr)
$spin_hint_decl

; ---------------------------------------------------------------- state
@pool.state = internal global i32 0, align 64          ; 0 down, 1 starting, 2 up, 3 stopping
@pool.size = internal global i32 0, align 64           ; threads per job, caller included; 0: down
@pool.busy = internal global i32 0, align 64           ; 1 while one caller owns the workers
@pool.claim = internal global i64 0, align 64          ; generation << 32 | next chunk index
@pool.done = internal global i64 0, align 64           ; chunks of the current job finished
@pool.sleepers = internal global i32 0, align 64       ; workers blocked on @pool.work_cond
@pool.caller_asleep = internal global i32 0, align 64  ; callers blocked on @pool.done_cond
@pool.stop = internal global i32 0, align 64           ; workers exit at the next generation
@pool.spin_ns = internal global i64 $default_spin_ns, align 64
@pool.limit = internal global i32 0, align 64          ; max threads per job; 0: all
@pool.joined = internal global i64 0, align 64         ; generation << 32 | workers in the job
@pool.workers = internal global i32 0, align 4         ; threads created (size - 1)
@pool.threads = internal global ptr null, align 8      ; pthread_t[workers]

; The current job, on one cache line with the generation that announces it (one miss
; for a waking worker). Rewritten only once every chunk of the previous job is done.
%pool.Job = type { i64, ptr, ptr, i64, i64, i64, i64 }
@pool.job = internal global %pool.Job zeroinitializer, align 64
@pool.generation = internal alias i64, ptr @pool.job     ; +1 per job, and at shutdown
@pool.job.fn = internal alias ptr, getelementptr inbounds (%pool.Job, ptr @pool.job, i32 0, i32 1)
@pool.job.ctx = internal alias ptr, getelementptr inbounds (%pool.Job, ptr @pool.job, i32 0, i32 2)
@pool.job.n = internal alias i64, getelementptr inbounds (%pool.Job, ptr @pool.job, i32 0, i32 3)
; iterations per chunk (>= grain), and chunks (<= size * $chunks_per_thread; the last
; one also takes n % chunk)
@pool.job.chunk = internal alias i64, getelementptr inbounds (%pool.Job, ptr @pool.job, i32 0, i32 4)
@pool.job.chunks = internal alias i64, getelementptr inbounds (%pool.Job, ptr @pool.job, i32 0, i32 5)
; workers that may take part besides the caller (the job's threads - 1)
@pool.job.workers = internal alias i64, getelementptr inbounds (%pool.Job, ptr @pool.job, i32 0, i32 6)

@pool.mutex = internal global [$sync_bytes x i8] zeroinitializer, align 64
@pool.work_cond = internal global [$sync_bytes x i8] zeroinitializer, align 64
@pool.done_cond = internal global [$sync_bytes x i8] zeroinitializer, align 64
@pool.env_name = private unnamed_addr constant [19 x i8] c"TESSEL_NUM_THREADS\00"

; ---------------------------------------------------------------- waiting
define internal i64 @pool.now_ns() nounwind {
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

; Whether (*%word == %value) == %until_equal, read with acquire ordering.
define internal i1 @pool.condition_met(ptr %word, i64 %value, i1 %until_equal) nounwind {
entry:
  %current = load atomic i64, ptr %word acquire, align 8
  %equal = icmp eq i64 %current, %value
  %met = icmp eq i1 %equal, %until_equal
  ret i1 %met
}

; Poll the condition for up to @pool.spin_ns with the CPU's spin hint, looking at the
; clock every $poll_batch polls. Past $yield_after_ns ns each look also gives the core
; away (sched_yield). A look that finds more than $preempted_ns ns since the previous one
; means this thread lost its core: the machine is oversubscribed, where spinning only
; delays the threads with work, so it stops at once. True once the condition holds.
define internal i1 @pool.spin(ptr %word, i64 %value, i1 %until_equal) nounwind {
entry:
  %already = call i1 @pool.condition_met(ptr %word, i64 %value, i1 %until_equal)
  br i1 %already, label %done, label %start
start:
  %budget = load atomic i64, ptr @pool.spin_ns monotonic, align 8
  %started = call i64 @pool.now_ns()
  br label %poll
poll:
  %round = phi i64 [ 0, %start ], [ %round.next, %relax ], [ %round.next, %polite ],
                  [ %round.next, %yield ]
  %last.look = phi i64 [ %started, %start ], [ %last.look, %relax ], [ %now, %polite ],
                      [ %now, %yield ]
  %met = call i1 @pool.condition_met(ptr %word, i64 %value, i1 %until_equal)
  br i1 %met, label %done, label %relax
relax:
  $spin_hint
  %round.next = add nuw i64 %round, 1
  %slot = and i64 %round.next, $poll_mask
  %look = icmp eq i64 %slot, 0
  br i1 %look, label %clock, label %poll
clock:
  %now = call i64 @pool.now_ns()
  %elapsed = sub i64 %now, %started
  %spent = icmp sge i64 %elapsed, %budget
  %gap = sub i64 %now, %last.look
  %preempted = icmp sge i64 %gap, $preempted_ns
  %give.up = or i1 %spent, %preempted
  br i1 %give.up, label %done, label %polite
polite:
  %long = icmp sge i64 %elapsed, $yield_after_ns
  br i1 %long, label %yield, label %poll
yield:
  %rc = call i32 @sched_yield()
  br label %poll
done:
  %result = phi i1 [ true, %entry ], [ true, %poll ], [ false, %clock ]
  ret i1 %result
}

; Sleep on %cond until the condition holds. %waiters counts the sleepers so that the
; waking side knows to signal; it is raised before the re-check, under the mutex.
define internal void @pool.block(ptr %word, i64 %value, i1 %until_equal, ptr %cond,
                                 ptr %waiters) nounwind {
entry:
  %rc.lock = call i32 @pthread_mutex_lock(ptr @pool.mutex)
  %before = atomicrmw add ptr %waiters, i32 1 seq_cst
  br label %check
check:
  %current = load atomic i64, ptr %word seq_cst, align 8
  %equal = icmp eq i64 %current, %value
  %met = icmp eq i1 %equal, %until_equal
  br i1 %met, label %done, label %sleep
sleep:
  %rc.wait = call i32 @pthread_cond_wait(ptr %cond, ptr @pool.mutex)
  br label %check
done:
  %after = atomicrmw sub ptr %waiters, i32 1 seq_cst
  %rc.unlock = call i32 @pthread_mutex_unlock(ptr @pool.mutex)
  ret void
}

; Wait until (*%word == %value) == %until_equal: spin first, then sleep.
define internal void @pool.wait(ptr %word, i64 %value, i1 %until_equal, ptr %cond,
                                ptr %waiters) nounwind {
entry:
  %met = call i1 @pool.spin(ptr %word, i64 %value, i1 %until_equal)
  br i1 %met, label %done, label %sleep
sleep:
  call void @pool.block(ptr %word, i64 %value, i1 %until_equal, ptr %cond, ptr %waiters)
  br label %done
done:
  ret void
}

; Wake whoever sleeps on %cond, after the caller's seq_cst change of the word they wait on.
define internal void @pool.wake(ptr %cond, ptr %waiters) nounwind {
entry:
  %count = load atomic i32, ptr %waiters seq_cst, align 4
  %anyone = icmp ne i32 %count, 0
  br i1 %anyone, label %signal, label %done
signal:
  %rc.lock = call i32 @pthread_mutex_lock(ptr @pool.mutex)
  %rc.signal = call i32 @pthread_cond_broadcast(ptr %cond)
  %rc.unlock = call i32 @pthread_mutex_unlock(ptr @pool.mutex)
  br label %done
done:
  ret void
}

; ---------------------------------------------------------------- running a job
; Take the next place counted by %word (generation << 32 | places taken) for the job of
; generation %generation: the place's index, or -1 when %limit places are taken (or the
; job is over, and another job tags the word). Chunks and worker places are both taken
; this way.
define internal i64 @pool.take_tagged(ptr %word.p, i64 %generation, i64 %limit) nounwind {
entry:
  %tag = shl i64 %generation, 32
  %first = load atomic i64, ptr %word.p monotonic, align 8
  br label %try
try:
  %word = phi i64 [ %first, %entry ], [ %seen, %retry ]
  %word.tag = and i64 %word, -4294967296
  %ours = icmp eq i64 %word.tag, %tag
  %index = and i64 %word, 4294967295
  %left = icmp slt i64 %index, %limit
  %open = and i1 %ours, %left
  br i1 %open, label %swap, label %none
swap:
  %next = add nuw i64 %word, 1
  %pair = cmpxchg ptr %word.p, i64 %word, i64 %next monotonic monotonic
  %won = extractvalue { i64, i1 } %pair, 1
  br i1 %won, label %taken, label %retry
retry:
  %seen = extractvalue { i64, i1 } %pair, 0
  br label %try
taken:
  ret i64 %index
none:
  ret i64 -1
}

; Claim the next chunk of the job of generation %generation: its index, or -1 when that
; job has no chunk left.
define internal i64 @pool.claim_chunk(i64 %generation, i64 %chunks) nounwind {
entry:
  %index = call i64 @pool.take_tagged(ptr @pool.claim, i64 %generation, i64 %chunks)
  ret i64 %index
}

; Join the job of generation %generation as one of its @pool.job.workers workers: true
; if there was a place left (a pool limited by tessel_pool_set_max_threads has more
; threads than a job may use). Tagged like the claim word, so a late thread that read
; a newer job's fields cannot take a place in it.
define internal i1 @pool.join(i64 %generation) nounwind {
entry:
  %places = load atomic i64, ptr @pool.job.workers acquire, align 8
  %place = call i64 @pool.take_tagged(ptr @pool.joined, i64 %generation, i64 %places)
  %joined = icmp sge i64 %place, 0
  ret i1 %joined
}

; Run chunks of the job of generation %generation until none is left. The caller of
; the job runs this too; a worker that comes late finds nothing to claim.
define internal void @pool.run_chunks(i64 %generation) nounwind {
entry:
  %fn = load atomic ptr, ptr @pool.job.fn acquire, align 8
  %ctx = load atomic ptr, ptr @pool.job.ctx acquire, align 8
  %n = load atomic i64, ptr @pool.job.n acquire, align 8
  %chunk = load atomic i64, ptr @pool.job.chunk acquire, align 8
  %chunks = load atomic i64, ptr @pool.job.chunks acquire, align 8
  %last = sub nsw i64 %chunks, 1
  br label %claim
claim:
  %index = call i64 @pool.claim_chunk(i64 %generation, i64 %chunks)
  %got = icmp sge i64 %index, 0
  br i1 %got, label %run, label %done
run:
  %begin = mul nsw i64 %index, %chunk
  %is.last = icmp eq i64 %index, %last
  %full.end = add nsw i64 %begin, %chunk
  %end = select i1 %is.last, i64 %n, i64 %full.end
  call void %fn(ptr %ctx, i64 %begin, i64 %end)
  %finished = atomicrmw add ptr @pool.done, i64 1 seq_cst
  %all = add nuw i64 %finished, 1
  %complete = icmp eq i64 %all, %chunks
  br i1 %complete, label %notify, label %claim
notify:
  call void @pool.wake(ptr @pool.done_cond, ptr @pool.caller_asleep)
  br label %done
done:
  ret void
}

; A worker thread: wait for a new generation, run chunks of it; exit on stop.
; %arg is the generation current when the pool started.
define internal ptr @pool.worker_main(ptr %arg) nounwind {
entry:
  %first = ptrtoint ptr %arg to i64
  br label %idle
idle:
  %seen = phi i64 [ %first, %entry ], [ %generation, %work ], [ %generation, %join ]
  call void @pool.wait(ptr @pool.generation, i64 %seen, i1 false, ptr @pool.work_cond,
                       ptr @pool.sleepers)
  %generation = load atomic i64, ptr @pool.generation acquire, align 8
  %stop = load atomic i32, ptr @pool.stop acquire, align 4
  %stopping = icmp ne i32 %stop, 0
  br i1 %stopping, label %exit, label %join
join:
  %place = call i1 @pool.join(i64 %generation)
  br i1 %place, label %work, label %idle
work:
  call void @pool.run_chunks(i64 %generation)
  br label %idle
exit:
  ret ptr null
}

; Publish a job for %size threads (the caller holds @pool.busy), take part, and wait
; until every chunk is done.
define internal void @pool.run_job(ptr %fn, ptr %ctx, i64 %n, i64 %grain, i32 %size) nounwind {
entry:
  ; chunk = max(grain, ceil(n / (size * chunks_per_thread))), without overflow
  %threads = sext i32 %size to i64
  %target = mul nsw i64 %threads, $chunks_per_thread
  %quotient = sdiv i64 %n, %target
  %remainder = srem i64 %n, %target
  %uneven = icmp ne i64 %remainder, 0
  %round.up = zext i1 %uneven to i64
  %even = add nsw i64 %quotient, %round.up
  %coarse = icmp sgt i64 %grain, %even
  %chunk = select i1 %coarse, i64 %grain, i64 %even
  %chunks = sdiv i64 %n, %chunk
  %current = load atomic i64, ptr @pool.generation monotonic, align 8
  %generation = add i64 %current, 1
  %tag = shl i64 %generation, 32
  store atomic i64 %tag, ptr @pool.claim monotonic, align 8
  store atomic i64 %tag, ptr @pool.joined monotonic, align 8
  store atomic i64 0, ptr @pool.done monotonic, align 8
  %workers = sub nsw i64 %threads, 1
  store atomic ptr %fn, ptr @pool.job.fn release, align 8
  store atomic ptr %ctx, ptr @pool.job.ctx release, align 8
  store atomic i64 %n, ptr @pool.job.n release, align 8
  store atomic i64 %chunk, ptr @pool.job.chunk release, align 8
  store atomic i64 %chunks, ptr @pool.job.chunks release, align 8
  store atomic i64 %workers, ptr @pool.job.workers release, align 8
  %old = atomicrmw add ptr @pool.generation, i64 1 seq_cst
  call void @pool.wake(ptr @pool.work_cond, ptr @pool.sleepers)
  call void @pool.run_chunks(i64 %generation)
  call void @pool.wait(ptr @pool.done, i64 %chunks, i1 true, ptr @pool.done_cond,
                       ptr @pool.caller_asleep)
  ret void
}

; Threads a job uses now: the pool's size (0 when down), at most the limit if one is set.
define internal i32 @pool.threads_per_job() nounwind {
entry:
  %size = load atomic i32, ptr @pool.size acquire, align 4
  %limit = load atomic i32, ptr @pool.limit monotonic, align 4
  %limited = icmp sgt i32 %limit, 0
  %below = icmp slt i32 %limit, %size
  %use.limit = and i1 %limited, %below
  %threads = select i1 %use.limit, i32 %limit, i32 %size
  ret i32 %threads
}

define void @tessel_parallel_for(ptr %fn, ptr %ctx, i64 %n, i64 %grain) nounwind {
entry:
  %empty = icmp sle i64 %n, 0
  br i1 %empty, label %done, label %sized
sized:
  %grain.positive = icmp sgt i64 %grain, 1
  %grain.1 = select i1 %grain.positive, i64 %grain, i64 1
  %small = icmp sle i64 %n, %grain.1
  br i1 %small, label %inline, label %pool
pool:
  %size.seen = call i32 @pool.threads_per_job()
  %alone = icmp sle i32 %size.seen, 1
  br i1 %alone, label %inline, label %claim
claim:
  ; One job at a time: a nested call (from a body) or a call from another thread while
  ; a job runs finds the pool busy and runs its loop inline.
  %pair = cmpxchg ptr @pool.busy, i32 0, i32 1 acquire monotonic
  %owner = extractvalue { i32, i1 } %pair, 1
  br i1 %owner, label %owned, label %inline
owned:
  %size = call i32 @pool.threads_per_job()                   ; shutdown may have won
  %up = icmp sgt i32 %size, 1
  br i1 %up, label %parallel, label %release
parallel:
  call void @pool.run_job(ptr %fn, ptr %ctx, i64 %n, i64 %grain.1, i32 %size)
  store atomic i32 0, ptr @pool.busy release, align 4
  br label %done
release:
  store atomic i32 0, ptr @pool.busy release, align 4
  br label %inline
inline:
  call void %fn(ptr %ctx, i64 0, i64 %n)
  br label %done
done:
  ret void
}

; ---------------------------------------------------------------- life cycle
; Threads to start for a request: itself if positive, else $$TESSEL_NUM_THREADS if a
; positive number, else the online CPUs; clamped to [1, $max_threads].
define internal i32 @pool.resolve_threads(i32 %requested) nounwind {
entry:
  %requested.64 = sext i32 %requested to i64
  %given = icmp sgt i32 %requested, 0
  br i1 %given, label %clamp, label %env
env:
  %text = call ptr @getenv(ptr @pool.env_name)
  %set = icmp ne ptr %text, null
  br i1 %set, label %parse, label %cpus
parse:
  %parsed = call i64 @strtol(ptr %text, ptr null, i32 10)
  %valid = icmp sgt i64 %parsed, 0
  br i1 %valid, label %clamp, label %cpus
cpus:
  %online = call i64 @sysconf(i32 $sc_nprocessors_onln)
  br label %clamp
clamp:
  %raw = phi i64 [ %requested.64, %entry ], [ %parsed, %parse ], [ %online, %cpus ]
  %too.few = icmp slt i64 %raw, 1
  %at.least.1 = select i1 %too.few, i64 1, i64 %raw
  %too.many = icmp sgt i64 %at.least.1, $max_threads
  %count = select i1 %too.many, i64 $max_threads, i64 %at.least.1
  %count.32 = trunc i64 %count to i32
  ret i32 %count.32
}

; Create the synchronization objects and up to %n - 1 workers; publish and return the
; size (fewer workers if the system refuses threads: the pool still works).
define internal i32 @pool.start(i32 %n) nounwind {
entry:
  %all.signals = alloca [$sigset_bytes x i8], align 8
  %saved.mask = alloca [$sigset_bytes x i8], align 8
  %rc.mutex = call i32 @pthread_mutex_init(ptr @pool.mutex, ptr null)
  %rc.work = call i32 @pthread_cond_init(ptr @pool.work_cond, ptr null)
  %rc.done = call i32 @pthread_cond_init(ptr @pool.done_cond, ptr null)
  store atomic i32 0, ptr @pool.stop monotonic, align 4
  %wanted = sub nsw i32 %n, 1
  %any = icmp sgt i32 %wanted, 0
  br i1 %any, label %alloc, label %publish
alloc:
  %wanted.64 = zext i32 %wanted to i64
  %bytes = mul nuw nsw i64 %wanted.64, $pthread_t_bytes
  %threads = call ptr @malloc(i64 %bytes)
  %allocated = icmp ne ptr %threads, null
  br i1 %allocated, label %mask, label %publish
mask:
  store ptr %threads, ptr @pool.threads, align 8
  ; Workers start with every signal blocked, so signals go to the program's own threads.
  %rc.fill = call i32 @sigfillset(ptr %all.signals)
  %rc.block = call i32 @pthread_sigmask(i32 $sig_setmask, ptr %all.signals, ptr %saved.mask)
  %generation = load atomic i64, ptr @pool.generation monotonic, align 8
  %arg = inttoptr i64 %generation to ptr
  br label %spawn
spawn:
  %i = phi i32 [ 0, %mask ], [ %i.next, %created ]
  %more = icmp slt i32 %i, %wanted
  br i1 %more, label %create, label %unmask
create:
  %i.64 = zext i32 %i to i64
  %slot = getelementptr inbounds [$pthread_t_bytes x i8], ptr %threads, i64 %i.64
  %rc.create = call i32 @pthread_create(ptr %slot, ptr null, ptr @pool.worker_main, ptr %arg)
  %ok = icmp eq i32 %rc.create, 0
  br i1 %ok, label %created, label %unmask
created:
  %i.next = add nuw nsw i32 %i, 1
  br label %spawn
unmask:
  %rc.restore = call i32 @pthread_sigmask(i32 $sig_setmask, ptr %saved.mask, ptr null)
  br label %publish
publish:
  %count = phi i32 [ 0, %entry ], [ 0, %alloc ], [ %i, %unmask ]
  store i32 %count, ptr @pool.workers, align 4
  %size = add nuw nsw i32 %count, 1
  store atomic i32 %size, ptr @pool.size release, align 4
  ret i32 %size
}

; Move @pool.state from %from to %to: true once this thread did, false once the state
; is %settled (another thread did the whole transition). Yields while another thread
; is in the middle of starting or stopping the pool.
define internal i1 @pool.change_state(i32 %from, i32 %to, i32 %settled) nounwind {
entry:
  br label %claim
claim:
  %pair = cmpxchg ptr @pool.state, i32 %from, i32 %to acq_rel acquire
  %won = extractvalue { i32, i1 } %pair, 1
  br i1 %won, label %changed, label %taken
taken:
  %state = extractvalue { i32, i1 } %pair, 0
  %done = icmp eq i32 %state, %settled
  br i1 %done, label %already, label %retry
retry:
  %rc = call i32 @sched_yield()
  br label %claim
changed:
  ret i1 true
already:
  ret i1 false
}

define i32 @tessel_pool_init(i32 %requested) nounwind {
entry:
  %n = call i32 @pool.resolve_threads(i32 %requested)
  %won = call i1 @pool.change_state(i32 0, i32 1, i32 2)      ; down -> starting, or up
  br i1 %won, label %start, label %running
running:
  %current = load atomic i32, ptr @pool.size acquire, align 4
  ret i32 %current
start:
  %size = call i32 @pool.start(i32 %n)
  store atomic i32 2, ptr @pool.state release, align 4
  ret i32 %size
}

define i32 @tessel_pool_size() nounwind {
entry:
  %size = call i32 @pool.threads_per_job()
  %up = icmp sgt i32 %size, 1
  %threads = select i1 %up, i32 %size, i32 1
  ret i32 %threads
}

define internal void @pool.join_workers() nounwind {
entry:
  %count = load i32, ptr @pool.workers, align 4
  %threads = load ptr, ptr @pool.threads, align 8
  br label %next
next:
  %i = phi i32 [ 0, %entry ], [ %i.next, %join ]
  %more = icmp slt i32 %i, %count
  br i1 %more, label %join, label %done
join:
  %i.64 = zext i32 %i to i64
  %slot = getelementptr inbounds [$pthread_t_bytes x i8], ptr %threads, i64 %i.64
  %thread = load i64, ptr %slot, align 8
  %rc = call i32 @pthread_join(i64 %thread, ptr null)
  %i.next = add nuw nsw i32 %i, 1
  br label %next
done:
  call void @free(ptr %threads)
  store ptr null, ptr @pool.threads, align 8
  store i32 0, ptr @pool.workers, align 4
  ret void
}

define void @tessel_pool_shutdown() nounwind {
entry:
  %won = call i1 @pool.change_state(i32 2, i32 3, i32 0)      ; up -> stopping, or down
  br i1 %won, label %take, label %done
take:
  ; Own the workers: wait out a running job; later callers see size 0 and run inline.
  %busy.pair = cmpxchg ptr @pool.busy, i32 0, i32 1 acquire monotonic
  %owner = extractvalue { i32, i1 } %busy.pair, 1
  br i1 %owner, label %stop, label %busy
busy:
  %rc.busy = call i32 @sched_yield()
  br label %take
stop:
  store atomic i32 0, ptr @pool.size release, align 4
  store atomic i32 1, ptr @pool.stop release, align 4
  %old = atomicrmw add ptr @pool.generation, i64 1 seq_cst
  call void @pool.wake(ptr @pool.work_cond, ptr @pool.sleepers)
  call void @pool.join_workers()
  %rc.work = call i32 @pthread_cond_destroy(ptr @pool.work_cond)
  %rc.done = call i32 @pthread_cond_destroy(ptr @pool.done_cond)
  %rc.mutex = call i32 @pthread_mutex_destroy(ptr @pool.mutex)
  store atomic i32 0, ptr @pool.busy release, align 4
  store atomic i32 0, ptr @pool.state release, align 4
  br label %done
done:
  ret void
}

define void @tessel_pool_set_spin_us(i32 %us) nounwind {
entry:
  %negative = icmp slt i32 %us, 0
  %clamped = select i1 %negative, i32 0, i32 %us
  %us.64 = zext i32 %clamped to i64
  %ns = mul nuw nsw i64 %us.64, 1000
  store atomic i64 %ns, ptr @pool.spin_ns monotonic, align 8
  ret void
}

define i32 @tessel_pool_set_max_threads(i32 %n) nounwind {
entry:
  %negative = icmp slt i32 %n, 0
  %limit = select i1 %negative, i32 0, i32 %n
  %previous = atomicrmw xchg ptr @pool.limit, i32 %limit monotonic
  ret i32 %previous
}

; In a forked child only the forking thread exists: forget the workers (no join, and the
; pthread_t array is left alone rather than freed) and reset every word, so that the pool
; reads as down, parallel_for runs inline and tessel_pool_init starts a fresh pool.
define void @tessel_pool_after_fork_child() nounwind {
entry:
  store i32 0, ptr @pool.workers, align 4
  store ptr null, ptr @pool.threads, align 8
  store atomic i32 0, ptr @pool.size monotonic, align 4
  store atomic i32 0, ptr @pool.busy monotonic, align 4
  store atomic i64 0, ptr @pool.claim monotonic, align 8
  store atomic i64 0, ptr @pool.joined monotonic, align 8
  store atomic i64 0, ptr @pool.done monotonic, align 8
  store atomic i32 0, ptr @pool.sleepers monotonic, align 4
  store atomic i32 0, ptr @pool.caller_asleep monotonic, align 4
  store atomic i32 0, ptr @pool.stop monotonic, align 4
  store atomic i32 0, ptr @pool.state seq_cst, align 4
  ret void
}
""")
