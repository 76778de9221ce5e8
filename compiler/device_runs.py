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
    instructions = list(instructions)
    runs: list[list[Instruction]] = []
    for instr in device_order(instructions, device):
        if runs and device(runs[-1][-1]) == device(instr):
            runs[-1].append(instr)
        else:
            runs.append([instr])
    return _sink(runs, instructions, device)


def _sink(runs: list[list[Instruction]], instructions: list[Instruction], device: Callable):
    """Move each instruction to the latest run of its device before its first reader's
    run: staying on one device as long as possible computes some values early (a bias
    broadcast before the matmul it is added to), and a value made one run ahead of its
    readers is an extra output and input, and cannot fuse with them. Latest first, so
    chains move together; moving later never breaks a dependency."""
    readers: dict[Instruction, list[Instruction]] = {}
    for instr in instructions:
        for o in instr.operands:
            readers.setdefault(through_transfer(o), []).append(instr)
    run_of = {i: k for k, run in enumerate(runs) for i in run}
    for k in range(len(runs) - 1, -1, -1):
        for instr in reversed(list(runs[k])):
            first = min((run_of[r] for r in readers.get(instr, ()) if r in run_of), default=None)
            if first is None:
                continue
            target = max((j for j in range(k + 1, first + 1) if device(runs[j][0]) == device(instr)
                          and (j < first or device(runs[first][0]) == device(instr))), default=k)
            if target != k:
                runs[k].remove(instr)
                runs[target].insert(0, instr)
                run_of[instr] = target
    return [run for run in runs if run]


__all__ = ["device_order", "device_runs", "through_transfer"]
