"""Fee split of attribution v1: integer arithmetic, the parts sum to the fee exactly."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

from .constants import BPS_DENOMINATOR

Key = TypeVar("Key", bound=Hashable)


def split_fee(
    fee: int, owner_bps: int, scores: Sequence[tuple[Key, int]]
) -> tuple[int, list[tuple[Key, int]], int]:
    """Split ``fee`` into (owner part, [(contributor key, amount)], treasury part).

    - owner part = fee * owner_bps // 10000 (rounded down);
    - the rest (the pool) goes to the entries of ``scores`` with a positive score, in
      proportion: each gets pool * score // total, and the pool - sum(those) wei left
      over (fewer than the number of entries) go one each to the entries with the
      largest remainders pool * score % total, ties to the earlier entry in ``scores``;
    - when no score is positive the whole pool goes to the treasury (and the list is empty).
    Entries keep the order of ``scores``; an entry may receive 0 when the pool is small.
    """
    if not isinstance(fee, int) or fee < 0:
        raise ValueError("fee must be a non-negative integer")
    if not isinstance(owner_bps, int) or not 0 <= owner_bps <= BPS_DENOMINATOR:
        raise ValueError(f"owner_bps must be an integer in [0, {BPS_DENOMINATOR}]")
    for _, score in scores:
        if not isinstance(score, int) or score < 0:
            raise ValueError("scores must be non-negative integers")
    owner_part = fee * owner_bps // BPS_DENOMINATOR
    pool = fee - owner_part
    entries = [(key, score) for key, score in scores if score > 0]
    total = sum(score for _, score in entries)
    if total == 0:
        return owner_part, [], pool
    amounts = [pool * score // total for _, score in entries]
    left = pool - sum(amounts)
    by_remainder = sorted(range(len(entries)), key=lambda i: (-(pool * entries[i][1] % total), i))
    for i in by_remainder[:left]:
        amounts[i] += 1
    return owner_part, [(key, amount) for (key, _), amount in zip(entries, amounts)], 0
