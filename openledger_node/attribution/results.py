"""What attribution returns: credits per contribution and the spans behind them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


class Credit(NamedTuple):
    """Score earned by one contribution of one Datanet for one output."""

    datanet_id: int
    contribution_id: int
    score: int


@dataclass(frozen=True)
class Span:
    """A maximal span of the output found in one Datanet version.

    Tokens ``[start, end)`` of the output, bytes ``[byte_start, byte_end)``; found
    ``occurrences`` times in the version; ``contribution_ids`` are the originals holding it
    (near-duplicates replaced by their original, ascending), each credited ``score``.
    """

    datanet_id: int
    version: int
    start: int
    end: int
    byte_start: int
    byte_end: int
    occurrences: int
    contribution_ids: tuple[int, ...]
    score: int

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Attribution:
    """Credits ordered by (datanet id, contribution id); spans by (datanet id, version,
    start); ``output_tokens``, the number of tokens of the output (work is linear in it
    times the number of indexes searched)."""

    credits: tuple[Credit, ...]
    spans: tuple[Span, ...]
    output_tokens: int

    @property
    def total_score(self) -> int:
        return sum(credit.score for credit in self.credits)
