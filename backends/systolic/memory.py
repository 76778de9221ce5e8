"""The host memory image of a compiled program: where each value lives, by liveness.

Host memory is laid out as

    [arguments][outputs][constants][temporaries]

each array 64-byte aligned. Values are f32, except values only the matrix unit reads
(operands of dots and convolutions: weights, and activations between layers) when the
machine multiplies in bf16: those are stored as bf16, rounded as MATMUL / LOAD_W would
round them, so results are bit-identical, and take half the host bytes and bandwidth
(TPUs keep such tensors in bf16 in HBM too). Arguments are written by the runtime before a run and
outputs read after it; constants (the module's, and the compiler's own: a row of zeros
for fills) are part of the image the program is loaded with. Temporaries share bytes
when their live ranges do not overlap: a value is live from the step that writes it to
the last step that reads it -- directly, or through a view (a slice or broadcast of it
read by a later instruction keeps it alive; compiler/buffer_assignment.py's liveness
cannot see that, which is why the systolic backend plans its own).

The image itself (HostImage: addresses, formats, constants, writing arguments and reading
outputs) is runtime/systolic/image.py, shared with loaded AOT artifacts.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...runtime.systolic.image import ALIGNMENT, HostImage, aligned, encode  # noqa: F401 (the compiler's view of them)


@dataclass
class Temporary:
    key: object
    size: int
    start: int          # first step (inclusive)
    end: int            # last step (inclusive)
    address: int = -1


def pack(temporaries: list[Temporary], base: int) -> int:
    """Give each temporary an address at or above `base`, sharing bytes between those not
    live at the same time (biggest first, lowest gap that holds it); returns the end."""
    placed: list[Temporary] = []
    top = base
    for t in sorted(temporaries, key=lambda t: (-t.size, t.start)):
        busy = sorted((p.address, p.address + aligned(p.size)) for p in placed
                      if p.start <= t.end and t.start <= p.end)
        address = base
        for lo, hi in busy:
            if address + aligned(t.size) <= lo:
                break
            address = max(address, hi)
        t.address = address
        placed.append(t)
        top = max(top, address + aligned(t.size))
    return top
