"""This process's collectives: one process until `initialize()`, then MPI (mpi4py).

Both backends ask `collectives()` when they run a collective: the interpreter through
its Context, the CPU backend between its native segments (backends/cpu/segments.py).
An object here has `process_index`, `process_count` and

    all_reduce(x, reduction)     reduction in sum, mean, max, min
    all_gather(x, participants)  every process's x stacked on a new leading axis
    broadcast(x, root)           the root's x

Before each collective the processes exchange a small signature (which collective,
shape, dtype, attributes) and compare them: a mismatch is a `CollectiveMismatch` on
every process naming what each rank brought, instead of a hang or a garbage buffer.
"""
from __future__ import annotations

import sys
import traceback

import numpy as np

_active = None     # the MpiCollectives of this process once initialize() ran


class CollectiveMismatch(ValueError):
    """The processes reached a collective with different shapes, dtypes or attributes."""


def collectives():
    if _active is not None:
        return _active
    from ..backends.interpreter.evaluator import SingleProcessCollectives
    return SingleProcessCollectives()


_MPI_OPS = {"sum": "SUM", "mean": "SUM", "max": "MAX", "min": "MIN"}


class MpiCollectives:
    """Collectives over an MPI communicator (every process of the job by default)."""

    def __init__(self, comm):
        from mpi4py import MPI
        self.MPI = MPI
        self.comm = comm
        self.process_index = comm.Get_rank()
        self.process_count = comm.Get_size()

    def agree(self, what: str, x: np.ndarray, attrs: tuple) -> None:
        """Every process must bring the same signature to the collective `what`."""
        mine = (what, tuple(x.shape), x.dtype.str, attrs)
        everyone = self.comm.allgather(mine)
        if any(sig != mine for sig in everyone):
            listed = "; ".join(f"rank {r}: {s[0]} {np.dtype(s[2]).name}{list(s[1])} {s[3]}"
                               for r, s in enumerate(everyone))
            raise CollectiveMismatch(f"processes disagree at a collective (seen on rank "
                                     f"{self.process_index}): {listed}")

    def all_reduce(self, x: np.ndarray, reduction: str) -> np.ndarray:
        x = np.asarray(x, order="C")     # (ascontiguousarray would make a scalar 1-d)
        self.agree("all_reduce", x, (reduction,))
        out = np.empty_like(x)
        self.comm.Allreduce(x, out, op=getattr(self.MPI, _MPI_OPS[reduction]))
        if reduction == "mean":
            out = (out / self.process_count).astype(x.dtype) if x.dtype.kind == "f" \
                else out // self.process_count
        return out

    def all_gather(self, x: np.ndarray, participants: int) -> np.ndarray:
        if participants != self.process_count:
            raise CollectiveMismatch(f"all_gather was traced for {participants} processes, "
                                     f"the job has {self.process_count}")
        x = np.asarray(x, order="C")     # (ascontiguousarray would make a scalar 1-d)
        self.agree("all_gather", x, ())
        out = np.empty((self.process_count,) + x.shape, x.dtype)
        self.comm.Allgather(x, out)
        return out

    def broadcast(self, x: np.ndarray, root: int) -> np.ndarray:
        if not 0 <= root < self.process_count:
            raise CollectiveMismatch(f"broadcast root {root} is not a rank of this job "
                                     f"(0..{self.process_count - 1})")
        out = np.array(x, order="C", copy=True)
        self.agree("broadcast", out, (root,))
        self.comm.Bcast(out, root=root)
        return out


def install(comm) -> MpiCollectives:
    global _active
    _active = MpiCollectives(comm)
    if _active.process_count > 1:
        sys.excepthook = _abort_on_uncaught(comm)
    return _active


def _abort_on_uncaught(comm):
    """An uncaught exception on one rank ends the whole job: the others would otherwise
    wait forever in their next collective. Print it (with the rank), then MPI_Abort."""
    def hook(kind, value, tb):
        rank = comm.Get_rank()
        text = "".join(traceback.format_exception(kind, value, tb))
        sys.stderr.write(f"[tessel.distributed] rank {rank} of {comm.Get_size()} failed:\n{text}")
        sys.stderr.flush()
        comm.Abort(1)
    return hook
