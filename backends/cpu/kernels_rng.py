"""rng_bit_generator: Philox-4x32-10 in IR, bit-exact with the interpreter
(backends/interpreter/philox.py, which documents the algorithm and the state layout).

    state  u32[4] = (key0, key1, counter_lo, counter_hi)
    block  i = 0 .. ceil(n/4)-1: counter words (counter + i mod 2^64, 0, 0) -> four
           words, ten rounds of the Philox S-box with the Weyl key schedule
    bits   the blocks' words in order, truncated to n
    new    (key0, key1, counter + blocks mod 2^64)

Blocks are independent: they are the units handed to the thread pool, and the round
function is straight-line 32x32->64-bit multiplies LLVM vectorizes across blocks.
"""
from __future__ import annotations

from llvmlite import ir

from ...compiler.ir import Computation
from . import loops as L
from .kernels_elementwise import I32, I64

M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
ROUNDS = 10
ROUND_COST = 8          # add-equivalents of one round (two wide multiplies, xors)


def _word(b, ptr, k):
    return L.load(b, L.gep(b, ptr, I32, k), I32)


def _counter(b, state) -> ir.Value:
    """The state's 64-bit counter."""
    lo, hi = b.zext(_word(b, state, 2), I64), b.zext(_word(b, state, 3), I64)
    return b.or_(lo, b.shl(hi, ir.Constant(I64, 32)))


def _split(b, value):
    """(low, high) u32 words of an i64."""
    return b.trunc(value, I32), b.trunc(b.lshr(value, ir.Constant(I64, 32)), I32)


def philox_block(b, c: list, k0, k1) -> list:
    """Ten rounds on the counter words `c` (i32 values) with key (k0, k1)."""
    for r in range(ROUNDS):
        if r:
            k0 = b.add(k0, ir.Constant(I32, W0))
            k1 = b.add(k1, ir.Constant(I32, W1))
        p0 = b.mul(b.zext(c[0], I64), ir.Constant(I64, M0))
        p1 = b.mul(b.zext(c[2], I64), ir.Constant(I64, M1))
        lo0, hi0 = _split(b, p0)
        lo1, hi1 = _split(b, p1)
        c = [b.xor(b.xor(hi1, c[1]), k0), lo1, b.xor(b.xor(hi0, c[3]), k1), lo0]
    return c


def emit_rng_bit_generator(kc, comp: Computation, outputs: list, operands: list) -> None:
    rng = comp.root
    count = rng.shape.elements[1].size
    blocks = -(-count // 4)
    e = kc.entry
    state, new_state, bits = operands[0], outputs[0], outputs[1]

    def body(b, ptrs, begin, end):
        st, out = ptrs
        k0, k1, counter = _word(b, st, 0), _word(b, st, 1), _counter(b, st)
        with L.for_range(b, end, start=begin, name="block") as i:
            lo, hi = _split(b, b.add(counter, i))
            words = philox_block(b, [lo, hi, ir.Constant(I32, 0), ir.Constant(I32, 0)], k0, k1)
            base = L.mul(b, i, 4)
            for j, w in enumerate(words):
                position = L.add(b, base, j)
                if count % 4 == 0:
                    L.store(b, w, L.gep(b, out, I32, position))
                else:
                    with b.if_then(b.icmp_signed("<", position, L.const(count))):
                        L.store(b, w, L.gep(b, out, I32, position))

    # the words first: they read the old state, which may be where the new one goes
    kc.run_units(kc.name_hint() + ".philox", blocks, [state, bits], ROUNDS * ROUND_COST, body)
    k0, k1 = _word(e, state, 0), _word(e, state, 1)
    lo, hi = _split(e, e.add(_counter(e, state), ir.Constant(I64, blocks)))
    for k, w in enumerate((k0, k1, lo, hi)):
        L.store(e, w, L.gep(e, new_state, I32, k))
