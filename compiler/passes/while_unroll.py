"""While unrolling: a `while` whose trip count is known statically becomes its body,
inlined that many times, one copy after another.

    state = tuple(i0, c0, xs)                    state = tuple(i0, c0, xs)
    out = while(state), body=B, trip_count=2  -> s1 = B(state)     (B's instructions, copied)
                                                 s2 = B(s1)
                                                 out = tuple(s2 elements)

The frontend sets `trip_count` when it knows the loop runs exactly that many times
(`lax.scan`, `lax.fori_loop` with Python int bounds, and their gradients), so the
condition is not evaluated: a loop with trip_count n runs the body n times by
definition. Copies read the carried values directly (a body's `get_tuple_element` of
its parameter becomes the element itself), so after unrolling the loop counter is a
chain of constant adds that constant folding reduces, a `dynamic_slice` at the counter
becomes a static slice, and the per-step work is ordinary straight-line code.

Why: a backend without control flow (the systolic machine runs one instruction stream)
can then run the loop's work itself -- an LSTM's per-step matmuls on the array --
instead of refusing the program. Unrolling trades code size for that, so it is bounded:
a loop is unrolled only when `trip_count` x (its body's size, nested loops counted
unrolled) is at most `max_instructions`; bigger loops are left alone (the backend then
refuses them, or soft placement runs them elsewhere). Nested loops unroll from the
outside in, each copy of an inner loop then by the same rule. Loops with side effects
are never touched (the rewrite driver does not match them).
"""
from __future__ import annotations

from ..ir import Computation, Instruction
from ..rewrite import Pat, RewriteContext, RewritePass, Rule, RuleTable

MAX_UNROLLED_INSTRUCTIONS = 20_000


def unrolled_size(comp: Computation) -> int:
    """Instructions `comp` would have with every statically counted loop in it unrolled."""
    size = 0
    for instr in comp.instructions:
        trips = instr.attrs.get("trip_count") if instr.opcode == "while" else None
        size += 1 if trips is None else trips * unrolled_size(instr.attrs["body"])
    return size


def _elements(ctx: RewriteContext, state: Instruction) -> list[Instruction]:
    """The carried values of a tuple-shaped state, without a tuple in between if possible."""
    if state.opcode == "tuple":
        return list(state.operands)
    return [ctx.emit("get_tuple_element", [state], {"index": k})
            for k in range(len(state.shape.elements))]


def inline_body(ctx: RewriteContext, body: Computation, elements: list[Instruction]) -> list[Instruction]:
    """One copy of `body` applied to the carried `elements`; returns the next elements."""
    (param,) = body.parameters
    env: dict[Instruction, Instruction] = {}
    whole_state: list[Instruction] = []          # a tuple of the elements, made only if read whole

    def value(operand: Instruction) -> Instruction:
        if operand is param:
            if not whole_state:
                whole_state.append(ctx.emit("tuple", elements))
            return whole_state[0]
        return env[operand]

    for instr in body.instructions:
        if instr is param:
            continue
        if instr.opcode == "get_tuple_element" and instr.operands[0] is param:
            env[instr] = elements[instr.attrs["index"]]
            continue
        env[instr] = ctx.emit(instr.opcode, [value(o) for o in instr.operands], instr.attrs, instr.shape,
                              name=instr.name.split(".")[0], locs=instr.locs)
    root = body.root
    if root.opcode == "tuple":
        return [value(o) for o in root.operands]
    return _elements(ctx, value(root))


def _statically_counted(instr: Instruction) -> bool:
    return instr.attrs.get("trip_count") is not None


class WhileUnroll(RewritePass):
    """`max_instructions`: the most instructions one loop may unroll into."""
    name = "while-unroll"

    def __init__(self, max_instructions: int = MAX_UNROLLED_INSTRUCTIONS):
        self.max_instructions = max_instructions

        def unroll(ctx: RewriteContext, loop: Instruction) -> Instruction | None:
            trips, body = loop.attrs["trip_count"], loop.attrs["body"]
            if trips * unrolled_size(body) > self.max_instructions:
                return None
            elements = _elements(ctx, loop.operands[0])
            for _ in range(trips):
                elements = inline_body(ctx, body, elements)
            return ctx.emit("tuple", elements)

        super().__init__(RuleTable([
            # while(state) with trip_count n = the body applied n times (module docstring).
            Rule("unroll_counted_while", Pat("while", name="loop", where=_statically_counted), unroll),
        ]))
