"""Communication and escape hatches: collectives, send / recv, custom_call.

    all_reduce   one process, one device: the reduction (sum, mean, max, min) of one
                 value is that value -- a copy, as the interpreter's
                 SingleProcessCollectives does. Collectives at the top level of the
                 entry never reach these kernels: `segments.py` cuts the program there
                 and the runtime runs them through `tessel.distributed` (MPI); these
                 copies serve collectives nested in loops and branches, one process only
    all_gather / collective_broadcast   likewise copies (one participant, root 0)
    send / recv  channels inside one module: each send copies its operand into a private
                 global of its own (the channel's slot); the k-th recv on a channel, in
                 the order kernels run, reads the k-th send's slot (first in, first out,
                 as the interpreter's channel queues). Pairing is decided at compile
                 time, so a recv with no earlier send on its channel is a compile error.
                 The slots are process-wide: two threads running one executable at once
                 would share them (calls from one thread at a time are safe)
    custom_call  runs the emitter registered for its target in CUSTOM_CALLS
                 (`emitter(kc, instr, outputs, operands)`, emitting IR at the kernel's
                 place); an unregistered target is a NotImplementedError naming it
"""
from __future__ import annotations

from collections import deque
from typing import Callable

from llvmlite import ir

from ...compiler.buffer_assignment import ALIGNMENT
from ...compiler.ir import Computation
from .kernels_elementwise import I8
from .kernels_gather import memcpy

# call_target_name -> emitter(kc, instr, outputs, operands)
CUSTOM_CALLS: dict[str, Callable] = {}


def emit_all_reduce(kc, comp: Computation, outputs: list, operands: list) -> None:
    memcpy(kc.entry, outputs[0], operands[0], comp.root.shape.nbytes)


def emit_all_gather(kc, comp: Computation, outputs: list, operands: list) -> None:
    if comp.root.attrs["participants"] != 1:
        raise NotImplementedError(f"CPU backend: {comp.root.name} (from {comp.root.loc_text}) gathers "
                                  f"{comp.root.attrs['participants']} processes inside a nested computation")
    memcpy(kc.entry, outputs[0], operands[0], comp.root.shape.nbytes)


def emit_collective_broadcast(kc, comp: Computation, outputs: list, operands: list) -> None:
    memcpy(kc.entry, outputs[0], operands[0], comp.root.shape.nbytes)


def _channels(kc) -> dict:
    """channel id -> the slots of sends emitted so far and not yet received (per program)."""
    codegen = getattr(kc.codegen, "parent_codegen", kc.codegen)
    if not hasattr(codegen, "channel_slots"):
        codegen.channel_slots = {}
    return codegen.channel_slots


def emit_send(kc, comp: Computation, outputs: list, operands: list) -> None:
    send = comp.root
    x = send.operands[0]
    ty = ir.ArrayType(I8, max(1, x.shape.nbytes))
    slot = ir.GlobalVariable(kc.module, ty, name=kc.codegen.unique(f"tessel.channel{send.attrs['channel_id']}"))
    slot.linkage = "internal"
    slot.align = ALIGNMENT
    slot.initializer = ir.Constant(ty, None)
    memcpy(kc.entry, slot, operands[0], x.shape.nbytes)
    _channels(kc).setdefault(send.attrs["channel_id"], deque()).append((slot, x.shape))


def emit_recv(kc, comp: Computation, outputs: list, operands: list) -> None:
    recv = comp.root
    channel = recv.attrs["channel_id"]
    queue = _channels(kc).get(channel)
    if not queue:
        raise NotImplementedError(
            f"CPU backend: recv {recv.name} (from {recv.loc_text}) on channel {channel} has no send on "
            f"that channel running before it in this module; only in-module channels are supported")
    slot, shape = queue.popleft()
    if shape != recv.shape:
        raise ValueError(f"CPU backend: recv {recv.name} (from {recv.loc_text}) expects {recv.shape} on "
                         f"channel {channel}, the matching send sends {shape}")
    memcpy(kc.entry, outputs[0], slot, recv.shape.nbytes)


def emit_custom_call(kc, comp: Computation, outputs: list, operands: list) -> None:
    call = comp.root
    target = call.attrs["call_target_name"]
    emitter = CUSTOM_CALLS.get(target)
    if emitter is None:
        known = ", ".join(sorted(CUSTOM_CALLS)) or "none"
        raise NotImplementedError(
            f"CPU backend: custom_call target {target!r} ({call.name}, from {call.loc_text}) is not "
            f"registered (registered: {known}); add an emitter to "
            f"tessel.backends.cpu.kernels_misc.CUSTOM_CALLS")
    emitter(kc, call, outputs, operands)
