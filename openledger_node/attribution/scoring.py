"""Attribution v1 scoring (docs/attribution.md): spans of an output found in Datanet
versions, credited to the contributions that hold them.

For each Datanet version and each output position i, L_i is the length of the longest
prefix of output[i:i + MAX_SPAN] that occurs in the version's text. Walking the positions
in order, a span [i, i + L_i) is kept when it is maximal (it ends after every span of an
earlier position), L_i >= MIN_SPAN, and it occurs at most MAX_FREQ times; a match of
MAX_SPAN tokens makes the next MAX_SPAN - 1 positions pass (longer matches are cut into
pieces of MAX_SPAN tokens). Its holders are the distinct
originals of the contributions it occurs in (a near-duplicate counts as its original);
with h holders each one is credited SCALE * L_i**2 // h**2. A contribution's score is
the sum of its credits over all spans and all the given versions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import backend
from .constants import MAX_FREQ, MAX_OUTPUT_BYTES, MAX_SPAN, MIN_SPAN, SCALE
from .index import DatanetIndex
from .results import Attribution, Credit, Span
from .tokens import tokenize

UNKNOWN_TOKEN = 0xFFFFFFFF  # a query id that no text token equals


def ordered_indexes(indexes: Sequence[DatanetIndex]) -> list[DatanetIndex]:
    """Indexes by (datanet id, version); the same version twice is an error."""
    ordered = sorted(indexes, key=lambda index: (index.datanet_id, index.version))
    for a, b in zip(ordered, ordered[1:]):
        if (a.datanet_id, a.version) == (b.datanet_id, b.version):
            raise ValueError(f"datanet {a.datanet_id} version {a.version} given twice")
    return ordered


def check_output(output: bytes) -> None:
    if not isinstance(output, (bytes, bytearray)):
        raise TypeError("output must be bytes")
    if len(output) > MAX_OUTPUT_BYTES:
        raise ValueError(f"output is {len(output)} bytes, more than {MAX_OUTPUT_BYTES}")


def dense_query(index: DatanetIndex, ids: np.ndarray) -> np.ndarray:
    """Token hashes -> the index's dense ids (UNKNOWN_TOKEN for hashes not in its vocabulary)."""
    vocab = index.vocab
    if len(vocab) == 0:
        return np.full(len(ids), UNKNOWN_TOKEN, dtype=np.uint32)
    pos = np.searchsorted(vocab, ids)
    known = vocab[np.minimum(pos, len(vocab) - 1)] == ids
    return np.where(known, pos + 1, UNKNOWN_TOKEN).astype(np.uint32)


def credit_spans(index: DatanetIndex, found: np.ndarray, core) -> list[tuple[int, int, int, tuple[int, ...], int]]:
    """For each span (start, length, row_lo, row_hi) of ``found``: (start, length,
    occurrences, ids of the originals holding it, credit of each)."""
    if len(found) == 0:
        return []
    starts, lengths, row_lo, row_hi = found.T
    counts = row_hi - row_lo
    span_of = np.repeat(np.arange(len(found), dtype=np.int64), counts)
    rows = np.arange(len(span_of), dtype=np.int64) + np.repeat(row_lo - (np.cumsum(counts) - counts), counts)
    positions = core.gather_bits(index.sa_words, index.text_length, index.sa_width, rows).astype(np.uint64)
    holding = np.searchsorted(index.contribution_starts, positions, side="right") - 1
    m = max(index.num_contributions, 1)
    pairs = np.unique(span_of * m + index.original_of[holding].astype(np.int64))  # by span, then original
    holder_span, holders = np.divmod(pairs, m)
    bounds = np.searchsorted(holder_span, np.arange(len(found) + 1)).tolist()
    ids = index.contribution_ids[holders].tolist()
    result = []
    for k, (start, length, count) in enumerate(zip(starts.tolist(), lengths.tolist(), counts.tolist())):
        span_ids = tuple(ids[bounds[k] : bounds[k + 1]])
        result.append((start, length, count, span_ids, SCALE * length * length // (len(span_ids) * len(span_ids))))
    return result


def attribute(indexes: Sequence[DatanetIndex], output: bytes, *, implementation: str = "native") -> Attribution:
    """Attribute ``output`` to the contributions of the given Datanet versions."""
    if implementation == "reference":
        from . import reference

        return reference.attribute(indexes, output)
    core = backend.get(implementation)
    check_output(output)
    tokens = tokenize(bytes(output), implementation=implementation)
    credits: dict[tuple[int, int], int] = {}
    spans: list[Span] = []
    token_starts, token_ends = tokens.starts.tolist(), tokens.ends.tolist()
    for index in ordered_indexes(indexes):
        _, found = core.find_spans(
            index.tok_words, index.tok_width, index.sa_words, index.sa_width, index.bucket, index.text_length,
            dense_query(index, tokens.ids), MIN_SPAN, MAX_FREQ, MAX_SPAN,
        )
        for start, length, occurrences, ids, each in credit_spans(index, found, core):
            spans.append(
                Span(
                    index.datanet_id, index.version, start, start + length,
                    token_starts[start], token_ends[start + length - 1], occurrences, ids, each,
                )
            )
            for contribution_id in ids:
                key = (index.datanet_id, contribution_id)
                credits[key] = credits.get(key, 0) + each
    return Attribution(
        credits=tuple(Credit(d, c, score) for (d, c), score in sorted(credits.items())),
        spans=tuple(spans),
        output_tokens=len(tokens.ids),
    )
