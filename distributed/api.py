"""The user-facing collectives: IR ops when traced, run through this process's
collectives when called eagerly (the interpreter asks runtime.collectives())."""
from __future__ import annotations

from ..compiler.ops import ALL_REDUCE_OPS
from ..frontend import core, lax_ops as lax
from ..runtime import pytree
from ..frontend.errors import trace_error
from . import runtime


def initialize() -> None:
    """Join the MPI job this process was started in (`mpiexec -n N python ...`).

    Without mpi4py, or started without mpiexec, this is a job of one process and every
    collective is the identity. Safe to call twice.
    """
    if runtime._active is not None:
        return
    try:
        from mpi4py import MPI
    except ImportError:
        return      # one process: the collectives stay the single-process ones
    runtime.install(MPI.COMM_WORLD)


def process_index() -> int:
    return runtime.collectives().process_index


def process_count() -> int:
    return runtime.collectives().process_count


@core.traceable
def all_reduce(x, op: str = "sum"):
    """The reduction of `x` over all processes (sum, mean, max or min), on every process.

    `x` may be a pytree (a dict of gradients): its leaves of one dtype travel as one
    flat vector, one collective per dtype instead of one per leaf (gradient bucketing:
    each collective is a cut between native segments and a synchronization).
    """
    if op not in ALL_REDUCE_OPS:
        raise trace_error(f"all_reduce op must be one of {', '.join(ALL_REDUCE_OPS)}, got {op!r}")
    leaves, treedef = pytree.flatten(x)
    leaves = [core.lift(leaf) for leaf in leaves]
    reduced = list(leaves)
    for dtype in dict.fromkeys(leaf.tdtype for leaf in leaves):
        picked = [k for k, leaf in enumerate(leaves) if leaf.tdtype == dtype]
        for k, value in zip(picked, _all_reduce_together([leaves[k] for k in picked], op)):
            reduced[k] = value
    return pytree.unflatten(treedef, reduced)


def _all_reduce_together(leaves: list, op: str) -> list:
    emit = core.current_context().emit
    if len(leaves) == 1:
        return [emit("all_reduce", leaves, {"reduction": op})]
    flat = lax.concatenate([lax.reshape(leaf, (leaf.size,)) for leaf in leaves], 0)
    reduced = emit("all_reduce", [flat], {"reduction": op})
    out, start = [], 0
    for leaf in leaves:
        piece = lax.slice(reduced, (start,), (start + leaf.size,))
        out.append(lax.reshape(piece, leaf.aval.dims))
        start += leaf.size
    return out


@core.traceable
def all_gather(x):
    """Every process's `x`, stacked on a new leading axis in rank order."""
    return core.current_context().emit("all_gather", [core.lift(x)], {"participants": process_count()})


@core.traceable
def broadcast(x, root: int = 0):
    """Process `root`'s `x`, on every process."""
    if not isinstance(root, int) or not 0 <= root < process_count():
        raise trace_error(f"broadcast root must be a rank of this job (0..{process_count() - 1}), "
                          f"got {root!r}")
    return core.current_context().emit("collective_broadcast", [core.lift(x)], {"root": root})
