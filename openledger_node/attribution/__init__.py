"""Proof of Attribution, version 1: which contributions of a Datanet an output drew on,
and how an inference fee is split among them. Consensus code: integer arithmetic only,
deterministic. The rules are in docs/attribution.md.

- ``tokenize``/``token_ids``: the v1 tokenization; ``validate_contribution``: size, UTF-8.
- ``DatanetIndex``: suffix-array index of one published Datanet version (build, save, load).
- ``attribute(indexes, output)``: credits (datanet id, contribution id, score) and spans.
- ``split_fee(fee, owner_bps, scores)``: owner part, contributors' amounts, treasury part.

The hot paths run in the Cython core (``attribution_native``); ``implementation=
"reference"`` selects the pure-Python reference instead (never chosen silently).
"""

from .constants import (
    ATTRIBUTION_VERSION,
    MAX_CONTRIBUTION_BYTES,
    MAX_FREQ,
    MAX_OUTPUT_BYTES,
    MAX_SPAN,
    MIN_SPAN,
    SCALE,
)
from .fee import split_fee
from .index import DatanetIndex, IndexFormatError
from .results import Attribution, Credit, Span
from .scoring import attribute
from .tokens import InvalidContribution, Tokens, token_ids, tokenize, validate_contribution

__all__ = [
    "ATTRIBUTION_VERSION",
    "MAX_CONTRIBUTION_BYTES",
    "MAX_FREQ",
    "MAX_OUTPUT_BYTES",
    "MAX_SPAN",
    "MIN_SPAN",
    "SCALE",
    "Attribution",
    "Credit",
    "DatanetIndex",
    "IndexFormatError",
    "InvalidContribution",
    "Span",
    "Tokens",
    "attribute",
    "split_fee",
    "token_ids",
    "tokenize",
    "validate_contribution",
]
