"""Refusing a call whose buffers cannot fit in memory, before they are allocated.

NumPy's `np.empty` of more bytes than the machine has succeeds under Linux's memory
overcommit, and the pages are only claimed when native code writes them: a program
with a 16 GB output on a 16 GB machine would thrash or be killed by the OOM killer
mid-call instead of failing. Backends that know a call's buffer sizes up front (the
CPU backend: outputs plus scratch) check them here first and raise a MemoryError.
Only calls of at least GUARD_FROM bytes pay for reading the available memory.
"""
from __future__ import annotations

import os

GUARD_FROM = 256 << 20


def available_bytes() -> int | None:
    """Memory the system can give without swapping (Linux MemAvailable), else None."""
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(nbytes: int, what: str) -> None:
    """MemoryError if `nbytes` (>= GUARD_FROM) exceed the memory available now."""
    if nbytes < GUARD_FROM:
        return
    available = available_bytes()
    if available is not None and nbytes > available:
        raise MemoryError(f"{what} needs {nbytes / 2**30:.2f} GiB for its outputs and scratch; "
                          f"this machine has {available / 2**30:.2f} GiB available")
