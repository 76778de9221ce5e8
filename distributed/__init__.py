"""Multi-process tessel on MPI (mpi4py): `mpiexec -n N python train.py`.

    import tessel.distributed as dist
    dist.initialize()
    grads = dist.all_reduce(grads_leaf, op="mean")     # inside or outside tessel.jit

Collectives are IR ops (all_reduce, all_gather, collective_broadcast); the CPU backend
runs them between native segments (backends/cpu/segments.py), the interpreter through
its Context. See docs/distributed.md.

The API is resolved lazily: the backends import `tessel.distributed.runtime` to find
this process's collectives, and that must not load the tracing frontend.
"""
from __future__ import annotations

import importlib

_API = ("all_gather", "all_reduce", "broadcast", "initialize", "process_count", "process_index")


def __getattr__(name):
    if name in _API:
        value = getattr(importlib.import_module("tessel.distributed.api"), name)
    elif name == "CollectiveMismatch":
        value = importlib.import_module("tessel.distributed.runtime").CollectiveMismatch
    else:
        raise AttributeError(f"module 'tessel.distributed' has no attribute {name!r}")
    globals()[name] = value
    return value


__all__ = [*_API, "CollectiveMismatch"]
