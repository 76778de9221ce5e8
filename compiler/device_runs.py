"""The runs of a placed program: maximal stretches of one device's instructions.

    device_runs(entry.instructions, device_of) -> [[instr, ...], ...]

The order keeps each device's instructions together as long as the dependencies allow
(fewer runs: fewer switches between devices and fewer per-device programs), the
instructions' own order breaking ties. A recv stands for the value its send sent (it is
the same value on the other device), so the send/recv pairs themselves belong to no run.
Placement (compiler/passes/placement.py) uses it to see which values will cross from one
run to another; runtime/placed.py cuts the program into one part per run.
"""
from __future__ import annotations

from typing import Callable, Iterable

from .ir import Instruction

TRANSFERS = ("send", "recv")


def through_transfer(value: Instruction) -> Instruction:
    """What a recv delivers: the value its send sent."""
    if value.opcode == "recv" and value.operands:
        return value.operands[0].operands[0]
    return value


def device_order(instructions: Iterable[Instruction], device: Callable) -> list[Instruction]:
    """The placed instructions (device(i) not None) in a dependency order that stays on
    one device as long as possible."""
    placed = [i for i in instructions if device(i) is not None and i.opcode not in TRANSFERS]
    position = {instr: k for k, instr in enumerate(placed)}
    waiting = {i: {through_transfer(o) for o in i.operands} & set(position) for i in placed}
    users: dict[Instruction, list[Instruction]] = {i: [] for i in placed}
    for instr, needs in waiting.items():
        for n in needs:
            users[n].append(instr)
    ready = sorted((i for i in placed if not waiting[i]), key=position.get)
    order: list[Instruction] = []
    current = device(ready[0]) if ready else None
    while ready:
        same = [i for i in ready if device(i) == current]
        instr = same[0] if same else ready[0]
        current = device(instr)
        ready.remove(instr)
        order.append(instr)
        for user in users[instr]:
            waiting[user].discard(instr)
            if not waiting[user]:
                ready.append(user)
        ready.sort(key=position.get)
    return order


def device_runs(instructions: Iterable[Instruction], device: Callable) -> list[list[Instruction]]:
    runs: list[list[Instruction]] = []
    for instr in device_order(instructions, device):
        if runs and device(runs[-1][-1]) == device(instr):
            runs[-1].append(instr)
        else:
            runs.append([instr])
    return runs


__all__ = ["device_order", "device_runs", "through_transfer"]
