"""Device transfers: a send/recv pair wherever a value crosses from one device to another.

After placement (placement.py) every computing instruction of the entry has a `device`.
For each value v on device A read by instructions on device B != A, this pass inserts,
right after v,

    send.v = () send(v), channel_id=k, device="A", peer="B"
    recv.v = f32[...] recv(send.v), channel_id=k, device="B", peer="A"

and B's readers read recv.v instead: one transfer per value and destination device, however
many instructions there read it (as TensorFlow's graph partitioner does). Channel ids
count from 1 in program order. The send's token is the recv's operand, so the module
stays one dataflow graph that the interpreter can run as it is. Parameters and constants
are unplaced (every device reads the program's arguments; constants are copied), so
they never need a transfer; nor does the root tuple (the results are host arrays).
"""
from __future__ import annotations

from .. import ops
from ..ir import Instruction, Module, TupleShape
from .placement import device_of


class DeviceTransfers:
    name = "device-transfers"

    def run(self, module: Module) -> bool:
        entry = module.entry
        users = entry.users()
        channel = 1 + max((i.attrs["channel_id"] for i in entry.instructions
                           if i.opcode in ("send", "recv")), default=0)
        order: list[Instruction] = []
        changed = False
        for value in list(entry.instructions):
            order.append(value)
            source = device_of(value)
            if source is None or value.opcode in ("send", "recv"):
                continue
            for target, readers in _readers_by_device(value, users.get(value, ()), source).items():
                send, recv = self.pair(module, value, source, target, channel)
                channel += 1
                order += [send, recv]
                for reader in readers:
                    reader.operands = [recv if o is value else o for o in reader.operands]
                changed = True
        entry.instructions = order
        return changed

    @staticmethod
    def pair(module: Module, value: Instruction, source: str, target: str, channel: int):
        send = Instruction(module.unique_name(f"send.{value.name}"), "send", [value], TupleShape(()),
                           ops.normalize_attrs("send", {"channel_id": channel, "device": source,
                                                        "peer": target}), value.locs)
        recv = Instruction(module.unique_name(f"recv.{value.name}"), "recv", [send], value.shape,
                           ops.normalize_attrs("recv", {"channel_id": channel, "device": target,
                                                        "peer": source}), value.locs)
        return send, recv


def _readers_by_device(value: Instruction, readers, source: str) -> dict[str, list[Instruction]]:
    """Readers of `value` on other devices, by device (unplaced readers -- the root -- excluded)."""
    found: dict[str, list[Instruction]] = {}
    for reader in readers:
        target = device_of(reader)
        if target is not None and target != source and reader.opcode != "send":
            found.setdefault(target, []).append(reader)
    return found


__all__ = ["DeviceTransfers"]
