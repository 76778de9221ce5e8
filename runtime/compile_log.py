"""`TESSEL_LOG_COMPILES=1`: one line on stderr per trace, compile and cache decision.

    tessel: trace predict 12.3 ms (in-memory cache miss: argument x: f32[8,784] -> f32[16,784])
    tessel: compile predict 840.1 ms (disk cache miss: no entry 3f2a9c...; stored)
    tessel: compile predict 35.2 ms (disk cache hit 3f2a9c...)

The variable is read at every message, so tests and users can switch it at run time.
"""
from __future__ import annotations

import os
import sys


def enabled() -> bool:
    return os.environ.get("TESSEL_LOG_COMPILES", "").strip().lower() not in ("", "0", "false", "no", "off")


def log(message: str) -> None:
    if enabled():
        # one write per line: print() writes the text and the newline separately, so lines
        # from threads compiling at once could run together
        sys.stderr.write(f"tessel: {message}\n")
        sys.stderr.flush()
