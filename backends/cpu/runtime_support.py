"""Native runtime support for compiled CPU programs: one LLVM module per process.

The support module holds what generated code calls but does not contain itself — today
the thread pool (`threadpool.py`). It is JIT-compiled once per process (`jit_support`)
and, for AOT, emitted as an object file that ships next to a program's object:

    obj = llvm_target.emit_object(support_module_ir(info), info)

Calling the pool from a generated program module (MCJIT engines do not link across
modules, so a JIT program cannot simply name a symbol of another engine):

- JIT: call through the address as a constant, `parallel_for_callee(jit=True)`:
      call void inttoptr (i64 ADDR to ptr)(ptr @body, ptr %ctx, i64 %n, i64 %grain)
  `jit_support()` also registers the exported symbols with LLVM's process-wide symbol
  table (`llvm.add_symbol`), so a module compiled afterwards may instead declare them.
- AOT: declare the external symbol and link the support object, `parallel_for_callee(jit=False)`:
      declare void @tessel_parallel_for(ptr, ptr, i64, i64)
      call void @tessel_parallel_for(ptr @body, ptr %ctx, i64 %n, i64 %grain)
  A C program calls `tessel_pool_init(0)` once (the thread count then comes from
  $TESSEL_NUM_THREADS, else the online CPUs); without it every loop runs inline.

`python -m tessel.backends.cpu.runtime_support` prints the support module's IR.
"""
from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import threading
from collections.abc import Callable

import llvmlite.binding as llvm

from tessel.backends.cpu import llvm_target, threadpool
from tessel.backends.cpu.llvm_target import JitModule, TargetInfo

PARALLEL_FOR = "tessel_parallel_for"

_lock = threading.RLock()
_support: JitModule | None = None
_natives: dict[str, Callable] = {}
_after_fork_child = None       # resolved up front: a forked child must not take _lock

# The exported functions as ctypes sees them: name -> (restype, argtypes).
_SIGNATURES = {
    "tessel_pool_init": (ctypes.c_int, (ctypes.c_int,)),
    "tessel_pool_size": (ctypes.c_int, ()),
    "tessel_pool_shutdown": (None, ()),
    "tessel_pool_set_spin_us": (None, (ctypes.c_int,)),
    "tessel_pool_set_max_threads": (ctypes.c_int, (ctypes.c_int,)),
}


def support_module_ir(target: TargetInfo | None = None) -> str:
    """The runtime support module as LLVM IR text for `target` (default: this host)."""
    triple = (target or llvm_target.host()).triple
    return f"; tessel runtime support for {triple}\n" + threadpool.pool_ir(triple)


def jit_support() -> JitModule:
    """The support module compiled for this process (once; safe from any thread).

    It lives until the process ends: worker threads run its code. The pool is shut down
    by an atexit hook (before the interpreter tears modules down) and forgotten in
    forked children.
    """
    global _support, _after_fork_child
    with _lock:
        if _support is None:
            support = JitModule(support_module_ir())
            for name in threadpool.EXPORTS:
                llvm.add_symbol(name, support.address(name))
            _support = support
            _after_fork_child = support.function("tessel_pool_after_fork_child", None)
            atexit.register(shutdown_pool)
            os.register_at_fork(after_in_child=_forget_pool_in_child)
        return _support


def num_threads() -> int:
    """Threads for the pool: $TESSEL_NUM_THREADS if set, else the CPUs this process may use."""
    text = os.environ.get("TESSEL_NUM_THREADS", "").strip()
    if not text:
        return usable_cpus()
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise ValueError(f"TESSEL_NUM_THREADS must be a positive integer, got {text!r}")
    return count


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask), else all of the machine's."""
    if hasattr(os, "process_cpu_count"):                  # Python >= 3.13
        return os.process_cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def init_pool(n_threads: int | None = None) -> int:
    """Start the pool (idempotent: a running pool keeps its size); returns its size.

    None or a non-positive count means `num_threads()`.
    """
    if n_threads is None or n_threads <= 0:
        n_threads = num_threads()
    return _native("tessel_pool_init")(min(n_threads, threadpool.MAX_THREADS))


def pool_size() -> int:
    """Threads a parallel_for uses now, the caller included (1 before `init_pool`; at
    most the `set_max_threads` limit)."""
    return _native("tessel_pool_size")()


def shutdown_pool() -> None:
    """Join the workers (after any running job); later loops run inline until init."""
    if _support is not None:
        _native("tessel_pool_shutdown")()


def set_spin_us(microseconds: int) -> None:
    """How long idle threads poll for work before they sleep (threadpool.DEFAULT_SPIN_US)."""
    _native("tessel_pool_set_spin_us")(max(0, min(int(microseconds), 2**31 - 1)))


def set_max_threads(n: int | None) -> int | None:
    """Use at most `n` of the pool's threads per loop from now on (None or <= 0: all);
    returns the previous limit. Programs compiled for more threads stay correct: with
    1, every loop runs inline on the calling thread. The pool itself keeps its size."""
    limit = 0 if n is None else max(0, min(int(n), threadpool.MAX_THREADS))
    previous = _native("tessel_pool_set_max_threads")(limit)
    return previous or None


@contextlib.contextmanager
def max_threads(n: int | None):
    """`with max_threads(1):` runs the block's loops on the calling thread alone (e.g. to
    time one thread against the pool in one process); the previous limit is restored."""
    previous = set_max_threads(n)
    try:
        yield
    finally:
        set_max_threads(previous)


def parallel_for_address() -> int:
    """Address of tessel_parallel_for in this process, with the pool started."""
    init_pool()
    return jit_support().address(PARALLEL_FOR)


def parallel_for_callee(jit: bool = True) -> tuple[str, str]:
    """(declaration, callee) IR text for a program module that calls the pool.

    `call void {callee}(ptr @body, ptr %ctx, i64 %n, i64 %grain)` works in both modes;
    the declaration is empty for JIT, where the callee is the constant address (and the
    pool is started). The AOT spelling also JITs once `jit_support()` has run.
    """
    if jit:
        return "", f"inttoptr (i64 {parallel_for_address()} to ptr)"
    return threadpool.PARALLEL_FOR_DECLARATION, f"@{PARALLEL_FOR}"


def _native(name: str):
    with _lock:
        function = _natives.get(name)
        if function is None:
            restype, argtypes = _SIGNATURES[name]
            function = jit_support().function(name, restype, *argtypes)
            _natives[name] = function
        return function


def _forget_pool_in_child() -> None:
    _after_fork_child()


def _main(argv: list[str] | None = None) -> int:
    import argparse
    parser = argparse.ArgumentParser(prog="python -m tessel.backends.cpu.runtime_support",
                                     description="Print the runtime support module's LLVM IR.")
    parser.add_argument("--triple", help="target triple (default: this host)")
    args = parser.parse_args(argv)
    target = TargetInfo(args.triple, "generic", "") if args.triple else None
    print(support_module_ir(target))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
