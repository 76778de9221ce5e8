"""Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11),
the counter-based generator behind rng_bit_generator.

One block maps a 128-bit counter (four u32 words, least significant first) and a 64-bit
key (two words) to four random u32 words by ten rounds of
    (c0, c1, c2, c3) -> (hi(M1*c2) ^ c1 ^ k0, lo(M1*c2), hi(M0*c0) ^ c3 ^ k1, lo(M0*c0))
with the key bumped by the Weyl constants (W0, W1) between rounds.

tessel's state is u32[4] = (key0, key1, counter_lo, counter_hi). A request for n words
runs the blocks with counters (counter + i, 0, 0) for i = 0 .. ceil(n/4)-1 (the 64-bit
counter wraps) and returns their words in order, truncated to n; the new state has the
counter advanced by the number of blocks used.
"""
from __future__ import annotations

import numpy as np

M0, M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
W0, W1 = 0x9E3779B9, 0xBB67AE85
ROUNDS = 10
_LOW32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)


def philox4x32(counters: np.ndarray, key) -> np.ndarray:
    """Blocks of Philox-4x32-10: counters u32[..., 4] -> random words u32[..., 4]."""
    c = [counters[..., i].astype(np.uint64) for i in range(4)]
    k0, k1 = int(key[0]), int(key[1])
    for r in range(ROUNDS):
        if r:
            k0, k1 = (k0 + W0) & 0xFFFFFFFF, (k1 + W1) & 0xFFFFFFFF
        p0, p1 = M0 * c[0], M1 * c[2]           # 32x32 -> 64-bit products, exact in u64
        c = [(p1 >> _SHIFT32) ^ c[1] ^ np.uint64(k0), p1 & _LOW32,
             (p0 >> _SHIFT32) ^ c[3] ^ np.uint64(k1), p0 & _LOW32]
    return np.stack(c, axis=-1).astype(np.uint32)


def random_bits(state: np.ndarray, shape) -> tuple[np.ndarray, np.ndarray]:
    """(new state, u32 words of `shape`) from state (key0, key1, counter_lo, counter_hi)."""
    count = int(np.prod(shape, dtype=np.int64))
    blocks = -(-count // 4)
    counter = int(state[2]) | (int(state[3]) << 32)
    steps = (np.uint64(counter) + np.arange(blocks, dtype=np.uint64))   # wraps mod 2^64
    counters = np.zeros((blocks, 4), dtype=np.uint32)
    counters[:, 0] = (steps & _LOW32).astype(np.uint32)
    counters[:, 1] = (steps >> _SHIFT32).astype(np.uint32)
    words = philox4x32(counters, state[:2]).reshape(-1)[:count]
    advanced = (counter + blocks) % 2**64
    new_state = np.array([state[0], state[1], advanced & 0xFFFFFFFF, advanced >> 32], dtype=np.uint32)
    return new_state, words.reshape(shape)
