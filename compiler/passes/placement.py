"""Placement: decide the device of every instruction of the entry computation.

    Placement(mode=None | "soft" | "auto", default="systolic").run(module)

Every entry instruction that computes something ends with the attribute `device`
(printed by `as_text()`); parameters, constants and the root tuple stay unplaced: the
program's arguments are host arrays every device reads, and a constant is copied into
each per-device part that uses it (runtime/placed.py), so neither is a transfer.

Where an instruction goes:

    mode None     its `tessel.device` scope, else `default` (the jit's backend). An
                  instruction placed where it cannot run is a PlacementError naming the
                  op, its source line and the reason.
    mode "soft"   its scope or `default` when it can run there, else the CPU (as
                  TensorFlow's allow_soft_placement): never an error.
    mode "auto"   scopes are kept (and strict); the others go where the cost model
                  (compiler/placement_cost.py) finds the program fastest, counting the
                  transfers between neighbours on different devices.

What a device can run comes from the device's own backend (`DEVICE_RULES`): the systolic
backend's `unsupported_reason` (per instruction) and `boundary_reason` (values entering
or leaving a systolic program must be f32 arrays). The boundary rule depends on the
neighbours' devices, so it is applied to a fixed point after the choice: an instruction
whose operand or user would cross a boundary it cannot moves to the CPU (explicitly
scoped ones raise in the strict modes). get_tuple_element follows its tuple: only
arrays cross devices.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .. import ops
from ..device_runs import device_runs
from ..ir import Instruction, Module, clone_module

MODES = (None, "soft", "auto")
FALLBACK_DEVICE = "cpu"           # soft placement's device for what `default` cannot run
UNPLACED = ("parameter", "constant")


class PlacementError(ValueError):
    """An instruction placed on a device that cannot run it."""


@dataclass(frozen=True)
class DeviceRules:
    reason: Callable[[Instruction], str | None]        # why the device cannot run it
    boundary: Callable[[Instruction], str | None]      # why the value cannot cross into/out of it


def _anything(instr: Instruction) -> None:
    return None


def _systolic_rules(config=None) -> DeviceRules:
    from ...backends.systolic import codegen
    from ...backends.systolic.executable import default_config
    config = config or default_config()
    return DeviceRules(lambda instr: codegen.unsupported_reason(instr, config), codegen.boundary_reason)


# device -> factory of its rules (lazy: the CPU path never imports the systolic backend)
DEVICE_RULES: dict[str, Callable[[], DeviceRules]] = {
    "cpu": lambda: DeviceRules(_anything, _anything),
    "interpreter": lambda: DeviceRules(_anything, _anything),
    "systolic": _systolic_rules,
}


def device_of(instr: Instruction) -> str | None:
    return instr.attrs.get(ops.DEVICE_ATTR)


def placed(instr: Instruction, device: str) -> Instruction:
    instr.attrs = instr.attrs.replace(**{ops.DEVICE_ATTR: device})
    return instr


def without_devices(module: Module) -> Module:
    """A clone of `module` with no `device` attribute anywhere (a program that ended up
    on one device is that device's plain program)."""
    clone = clone_module(module)
    for comp in clone.computations:
        for instr in comp.instructions:
            if ops.DEVICE_ATTR in instr.attrs:
                instr.attrs = unplaced_attrs(instr)
    return clone


def unplaced_attrs(instr: Instruction):
    return ops.normalize_attrs(instr.opcode, {k: v for k, v in instr.attrs.items() if k != ops.DEVICE_ATTR})


class Placement:
    name = "placement"

    def __init__(self, mode: str | None = None, default: str = "cpu", cost_model=None):
        if mode not in MODES:
            raise ValueError(f"placement must be one of None, 'soft', 'auto'; given {mode!r}")
        self.mode, self.default = mode, default
        self.cost_model = cost_model
        self._rules: dict[str, DeviceRules] = {}

    def rules(self, device: str) -> DeviceRules:
        if device not in self._rules:
            if device not in DEVICE_RULES:
                raise PlacementError(f"no placement rules for device {device!r}; known: "
                                     f"{', '.join(sorted(DEVICE_RULES))}")
            self._rules[device] = DEVICE_RULES[device]()
        return self._rules[device]

    # ------------------------------------------------------------ the pass

    def run(self, module: Module) -> bool:
        entry = module.entry
        before = {i: device_of(i) for i in entry.instructions}
        explicit = {i for i in entry.instructions if device_of(i) is not None}
        targets = self.placeable(module)
        choice = {i: self.first_choice(i, i in explicit) for i in targets}
        if self.mode == "auto":
            choice = self.cost_model.choose(module, targets, choice, explicit, self)
        self.follow_tuples(targets, choice)
        self.fix_boundaries(module, targets, choice, explicit)
        while self.fix_run_boundaries(module, targets, choice, explicit):
            self.fix_boundaries(module, targets, choice, explicit)
        for instr, device in choice.items():
            placed(instr, device)
        for instr in entry.instructions:        # unplaced values carry no stale scope
            if instr not in choice and device_of(instr) is not None:
                instr.attrs = unplaced_attrs(instr)
        return any(device_of(i) != before[i] for i in entry.instructions)

    def placeable(self, module: Module) -> list[Instruction]:
        entry = module.entry
        return [i for i in entry.instructions
                if i.opcode not in UNPLACED and i.opcode not in ("send", "recv") and i is not entry.root]

    def first_choice(self, instr: Instruction, is_explicit: bool) -> str:
        wanted = device_of(instr) if is_explicit else self.default
        problem = self.rules(wanted).reason(instr)
        if problem is None:
            return wanted
        if self.mode == "soft" or (self.mode == "auto" and not is_explicit):
            return FALLBACK_DEVICE
        raise self.error(instr, wanted, problem, is_explicit)

    def error(self, instr: Instruction, device: str, problem: str, is_explicit: bool) -> PlacementError:
        where = f"tessel.device({device!r})" if is_explicit else f"backend {device!r}"
        return PlacementError(
            f"placement: {instr.opcode} ({instr.name}, from {instr.loc_text}) is placed on {device} "
            f"({where}) but cannot run there: {problem}. Use placement='soft' to run what {device} "
            f"cannot on the CPU, or place the op on another device")

    @staticmethod
    def follow_tuples(targets: list[Instruction], choice: dict) -> None:
        for instr in targets:
            if instr.opcode == "get_tuple_element" and instr.operands[0] in choice:
                choice[instr] = choice[instr.operands[0]]

    # ------------------------------------------------------------ boundaries

    def fix_boundaries(self, module: Module, targets: list[Instruction], choice: dict,
                       explicit: set) -> None:
        """Move to the CPU what would cross a boundary its device refuses, until stable
        (each round only moves instructions to the CPU, so it ends)."""
        users = module.entry.users()
        root_values = set(module.entry.root.operands)
        changed = True
        while changed:
            changed = False
            for instr in targets:
                device = choice[instr]
                problem = self.crossing_problem(instr, device, choice, users, root_values)
                if problem is None:
                    continue
                if self.mode is None or (self.mode == "auto" and instr in explicit):
                    raise self.error(instr, device, problem, instr in explicit)
                choice[instr] = FALLBACK_DEVICE
                self.follow_tuples(targets, choice)
                changed = True

    def fix_run_boundaries(self, module: Module, targets: list[Instruction], choice: dict,
                           explicit: set) -> bool:
        """A value read by a later run of its own device (another device's run between
        them) leaves its device's program and enters the next one: the same boundary.
        Moves such values to the CPU; True if any moved."""
        run_of = {i: k for k, run in enumerate(device_runs(module.entry.instructions, choice.get))
                  for i in run}
        users = module.entry.users()
        moved = False
        for instr in targets:
            device = choice[instr]
            if not any(choice.get(u) == device and run_of[u] != run_of[instr] for u in users.get(instr, ())):
                continue
            problem = self.rules(device).boundary(instr)
            if problem is None:
                continue
            if self.mode is None or (self.mode == "auto" and instr in explicit):
                raise self.error(instr, device, f"its value is read by a later {device} program (ops on "
                                                f"another device run in between): {problem}", instr in explicit)
            choice[instr] = FALLBACK_DEVICE
            self.follow_tuples(targets, choice)
            moved = True
        return moved

    def crossing_problem(self, instr: Instruction, device: str, choice: dict, users: dict,
                         root_values: set) -> str | None:
        rules = self.rules(device)
        for operand in instr.operands:
            if operand.opcode == "constant":           # copied into the part: runs there
                problem = rules.reason(operand)
            elif choice.get(operand) != device:
                problem = rules.boundary(operand)
            else:
                continue
            if problem:
                return f"its operand {operand.name} comes from outside {device}: {problem}"
        leaves = instr in root_values or any(choice[u] != device for u in users.get(instr, ())
                                             if u in choice)
        if leaves:
            problem = rules.boundary(instr)
            if problem:
                return f"its value leaves {device}: {problem}"
        return None


__all__ = ["DEVICE_RULES", "FALLBACK_DEVICE", "Placement", "PlacementError", "device_of", "placed",
           "unplaced_attrs", "without_devices"]
