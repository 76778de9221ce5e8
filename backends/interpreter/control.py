"""Control flow, tuples, randomness, communication and escape hatches."""
from __future__ import annotations

from collections import deque

from . import philox
from .evaluator import InterpreterError
from .table import rule


@rule("while")
def _while(frame, instr, state):
    cond, body = instr.attrs["condition"], instr.attrs["body"]
    while bool(frame.call(cond, [state])):
        state = frame.call(body, [state])
    return state


@rule("conditional")
def _conditional(frame, instr, index, *branch_operands):
    """pred: false -> branch 0, true -> branch 1; s32: out-of-range -> the last branch."""
    branches = instr.attrs["branch_computations"]
    i = int(index)
    if not 0 <= i < len(branches):
        i = len(branches) - 1
    return frame.call(branches[i], [branch_operands[i]])


@rule("call")
def _call(frame, instr, *args):
    return frame.call(instr.attrs["to_apply"], args)


@rule("fusion")
def _fusion(frame, instr, *args):
    return frame.call(instr.attrs["calls"], args)


@rule("tuple")
def _tuple(frame, instr, *elements):
    return tuple(elements)


@rule("get_tuple_element")
def _get_tuple_element(frame, instr, value):
    return value[instr.attrs["index"]]


@rule("rng_bit_generator")
def _rng_bit_generator(frame, instr, state):
    return philox.random_bits(state, instr.shape.elements[1].dims)


@rule("all_reduce")
def _all_reduce(frame, instr, x):
    return frame.ctx.collectives.all_reduce(x, instr.attrs["reduction"])


@rule("all_gather")
def _all_gather(frame, instr, x):
    return frame.ctx.collectives.all_gather(x, instr.attrs["participants"])


@rule("collective_broadcast")
def _collective_broadcast(frame, instr, x):
    return frame.ctx.collectives.broadcast(x, instr.attrs["root"])


@rule("send")
def _send(frame, instr, x):
    frame.ctx.channels.setdefault(instr.attrs["channel_id"], deque()).append(x)
    return ()


@rule("recv")
def _recv(frame, instr, *token):
    channel = instr.attrs["channel_id"]
    queue = frame.ctx.channels.get(channel)
    if not queue:
        raise InterpreterError(f"recv {instr.name} on channel {channel} (device "
                               f"{instr.attrs['device']!r}) found no value: no send on that "
                               f"channel ran before it")
    return queue.popleft()


@rule("custom_call")
def _custom_call(frame, instr, *args):
    name = instr.attrs["call_target_name"]
    target = frame.ctx.custom_calls.get(name)
    if target is None:
        known = ", ".join(sorted(frame.ctx.custom_calls)) or "none"
        raise NotImplementedError(f"custom_call target {name!r} ({instr.name}) is not registered "
                                  f"with the interpreter (registered: {known}); add it to "
                                  f"Context.custom_calls")
    return target(instr, *args)
