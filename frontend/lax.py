"""`tessel.lax`: XLA-level operations with explicit semantics (like jax.lax)."""
from .control_flow import cond, fori_loop, scan, switch, while_loop


def __getattr__(name):
    # dot_general, conv_general_dilated, reduce_window ... live in lax_ops.
    from . import lax_ops
    try:
        return getattr(lax_ops, name)
    except AttributeError:
        raise AttributeError(f"tessel.lax has no attribute {name!r}") from None


__all__ = ["cond", "fori_loop", "scan", "switch", "while_loop",
           "dot_general", "conv_general_dilated", "reduce_window"]
