"""Common-subexpression elimination, per computation.

Two instructions compute the same value when they have the same opcode, the same
operands (the same instructions, in either order for commutative ops), the same
attributes (constants compare by their literal's digest, nested computations by
identity) and the same result type. The first one is kept and the later ones are
replaced by it; walking in topological order merges whole duplicated chains in one
run, since a user's operands are already merged when it is reached.

Never merged: parameters (distinct inputs), instructions with side effects or calling
computations that have them, and rng_bit_generator (each call site is its own stream
of random bits, as in XLA).
"""
from __future__ import annotations

from .. import ops
from ..ir import Computation, Instruction, Module
from ..rewrite import has_side_effects

NEVER_MERGED = ("parameter", "rng_bit_generator")


def _mergeable(instr: Instruction) -> bool:
    return instr.opcode not in NEVER_MERGED and not has_side_effects(instr)


def _key(instr: Instruction) -> tuple:
    operands = tuple(id(o) for o in instr.operands)
    if ops.OPS[instr.opcode].commutative:
        operands = tuple(sorted(operands))
    return instr.opcode, operands, instr.attrs, instr.shape


def eliminate_common_subexpressions(comp: Computation) -> bool:
    users = comp.users()
    first_of: dict[tuple, Instruction] = {}
    merged: set[Instruction] = set()
    for instr in comp.instructions:
        if not _mergeable(instr):
            continue
        first = first_of.setdefault(_key(instr), instr)
        if first is instr:
            continue
        for user in users[instr]:
            user.operands = [first if o is instr else o for o in user.operands]
            users[first].append(user)
        if comp.root is instr:
            comp.root = first
        merged.add(instr)
    if merged:
        comp.instructions = [i for i in comp.instructions if i not in merged]
    return bool(merged)


class CSE:
    name = "cse"
    tags = ("simplify",)

    def run(self, module: Module) -> bool:
        changed = False
        for comp in module.computations:
            changed |= eliminate_common_subexpressions(comp)
        return changed
