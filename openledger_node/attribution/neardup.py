"""Near-duplicates of attribution v1: MinHash signatures over token shingles, banded.

Contribution k (in index order, i.e. by contribution id) is a near-duplicate of the
earliest earlier *original* contribution j whose signature agrees with k's in at least
NEAR_DUP_MIN_AGREE of the MINHASH_SLOTS slots; a contribution with no such j is an
original. Only originals are compared against, so every near-duplicate points straight
at an original. An empty contribution (no tokens) is an original that matches nothing.

Finding j: each original's signature is cut into BANDS bands of BAND_ROWS slots and
filed under each band. Two signatures agreeing in >= NEAR_DUP_MIN_AGREE slots disagree
in at most MINHASH_SLOTS - NEAR_DUP_MIN_AGREE < BANDS slots, so they agree on a whole
band: the band tables find every qualifying j (they only narrow the search; the rule is
the slot count).
"""

from __future__ import annotations

import numpy as np

from .constants import (
    BAND_ROWS,
    BANDS,
    MASK64,
    MINHASH_SEED,
    MINHASH_SLOTS,
    NEAR_DUP_MIN_AGREE,
)

assert MINHASH_SLOTS - NEAR_DUP_MIN_AGREE < BANDS and BANDS * BAND_ROWS == MINHASH_SLOTS

GOLDEN_GAMMA = 0x9E3779B97F4A7C15


def mix64(z: int) -> int:
    """The splitmix64 finalizer: a bijection on 64-bit words."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def _slot_keys() -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(xor key, odd multiplier) of each slot: consecutive outputs of splitmix64 seeded
    with MINHASH_SEED, the xor key first."""
    state, xors, muls = MINHASH_SEED, [], []
    for _ in range(MINHASH_SLOTS):
        state = (state + GOLDEN_GAMMA) & MASK64
        xors.append(mix64(state))
        state = (state + GOLDEN_GAMMA) & MASK64
        muls.append(mix64(state) | 1)
    return tuple(xors), tuple(muls)


SLOT_XOR, SLOT_MUL = _slot_keys()


def near_duplicate_of(signatures: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """For each contribution, the index of the original it duplicates (itself if original)."""
    count = len(lengths)
    original_of = np.arange(count, dtype=np.uint32)
    tables: list[dict[bytes, list[int]]] = [{} for _ in range(BANDS)]
    for k in range(count):
        if lengths[k] == 0:
            continue
        row = signatures[k]
        keys = [row[b * BAND_ROWS : (b + 1) * BAND_ROWS].tobytes() for b in range(BANDS)]
        candidates: set[int] = set()
        for table, key in zip(tables, keys):
            candidates.update(table.get(key, ()))
        if candidates:
            ordered = np.array(sorted(candidates), dtype=np.int64)
            agree = (signatures[ordered] == row).sum(axis=1)
            hits = np.flatnonzero(agree >= NEAR_DUP_MIN_AGREE)
            if hits.size:
                original_of[k] = ordered[hits[0]]
                continue
        for table, key in zip(tables, keys):
            table.setdefault(key, []).append(k)
    return original_of
