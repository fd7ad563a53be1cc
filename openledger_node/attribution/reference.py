"""Pure-Python reference of attribution v1: the rules of docs/attribution.md written as
plainly as possible, to check the Cython core against (tests/test_attribution_native.py).

Same functions and signatures as ``attribution_native._core`` (``dense_text``,
``pack_bits``, ``unpack_bits``, ``gather_bits``, ``bucket_starts``, ``minhash_signatures``, ``find_spans``), plus
``attribute``, the whole
scoring on its own. No numpy in the rules themselves (arrays are read element by
element as Python ints); slow, and meant for small inputs.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence

import numpy as np

from .constants import MASK64, MAX_FREQ, MAX_SPAN, MIN_SPAN, NEAR_DUP_MIN_AGREE, SCALE
from .index import DatanetIndex
from .neardup import mix64
from .results import Attribution, Credit, Span
from .tokens import TOKEN_PATTERN, token_hash

UNKNOWN_TOKEN = 0xFFFFFFFF


def packed_words(n: int, width: int) -> int:
    return (n * width + 63) // 64 + 1


def pack_bits(values: Sequence[int], width: int) -> np.ndarray:
    """Element i occupies bits [i * width, (i + 1) * width) of the little-endian bit
    stream of the 64-bit words; one padding word at the end."""
    if not 1 <= width <= 63:
        raise ValueError(f"packed width {width} out of range")
    words = [0] * packed_words(len(values), width)
    for i, value in enumerate(values):
        value = int(value)
        if not 0 <= value < 1 << width:
            raise ValueError(f"value at {i} does not fit in {width} bits")
        bit = i * width
        word, off = divmod(bit, 64)
        words[word] |= (value << off) & MASK64
        if off + width > 64:
            words[word + 1] |= value >> (64 - off)
    return np.array(words, dtype=np.uint64)


def packed_get(words: np.ndarray, i: int, width: int) -> int:
    word, off = divmod(i * width, 64)
    value = int(words[word]) >> off
    if off + width > 64:
        value |= int(words[word + 1]) << (64 - off)
    return value & ((1 << width) - 1)


def unpack_bits(words: np.ndarray, n: int, width: int, start: int = 0, stop: int | None = None) -> np.ndarray:
    stop = n if stop is None else stop
    if len(words) != packed_words(n, width) or not 0 <= start <= stop <= n:
        raise ValueError("bad packed array or slice")
    return np.array([packed_get(words, i, width) for i in range(start, stop)], dtype=np.int64)


def dense_text(hashes: Sequence[int], offsets: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(vocab, text): the sorted distinct token ids, and each contribution's tokens as
    dense ids (1 + rank in vocab) followed by the separator 0."""
    hashes = [int(h) for h in hashes]
    vocab = sorted(set(hashes))
    dense = {h: rank + 1 for rank, h in enumerate(vocab)}
    text = []
    for c in range(len(offsets) - 1):
        text.extend(dense[h] for h in hashes[int(offsets[c]) : int(offsets[c + 1])])
        text.append(0)
    return np.array(vocab, dtype=np.uint32), np.array(text, dtype=np.uint32)


def gather_bits(words: np.ndarray, n: int, width: int, indices: Sequence[int]) -> np.ndarray:
    if len(words) != packed_words(n, width) or not all(0 <= int(i) < n for i in indices):
        raise IndexError("bad packed array or index")
    return np.array([packed_get(words, int(i), width) for i in indices], dtype=np.int64)


def bucket_starts(tok_words: np.ndarray, tok_width: int, n: int, vocab: int) -> np.ndarray:
    """bucket[t] = number of text tokens smaller than t (t = 0..vocab + 1): the first
    suffix-array row whose suffix starts with t."""
    counts = [0] * (vocab + 2)
    for p in range(n):
        token = packed_get(tok_words, p, tok_width)
        if token > vocab:
            raise ValueError(f"token {token} at {p} exceeds the vocabulary of {vocab}")
        counts[token] += 1
    bucket, total = [], 0
    for count in counts:
        bucket.append(total)
        total += count
    return np.array(bucket, dtype=np.uint64)


def minhash_signatures(
    ids: Sequence[int],
    offsets: Sequence[int],
    slot_xor: Sequence[int],
    slot_mul: Sequence[int],
    shingle: int,
    shingle_seed: int,
) -> np.ndarray:
    """Slot j of contribution c: min over its shingles x of (x ^ slot_xor[j]) * slot_mul[j]
    mod 2**64, where a shingle is min(shingle, length) consecutive ids hashed by the chain
    x = mix64(x ^ id) from shingle_seed. No tokens: all slots 2**64 - 1."""
    ids = [int(t) for t in ids]
    signatures = []
    for c in range(len(offsets) - 1):
        tokens = ids[int(offsets[c]) : int(offsets[c + 1])]
        size = min(shingle, len(tokens))
        signature = [MASK64] * len(slot_xor)
        for start in range(len(tokens) - size + 1) if size else ():
            x = shingle_seed
            for token in tokens[start : start + size]:
                x = mix64(x ^ token)
            for j, (key, mul) in enumerate(zip(slot_xor, slot_mul)):
                signature[j] = min(signature[j], ((x ^ int(key)) * int(mul)) & MASK64)
        signatures.append(signature)
    return np.array(signatures, dtype=np.uint64).reshape(len(offsets) - 1, len(slot_xor))


def _first_false(predicate: Callable[[int], bool], lo: int, hi: int) -> int:
    """The first i in [lo, hi) where predicate (true, then false) is false; hi if none."""
    while lo < hi:
        mid = (lo + hi) // 2
        if predicate(mid):
            lo = mid + 1
        else:
            hi = mid
    return lo


def find_spans(
    tok_words: np.ndarray,
    tok_width: int,
    sa_words: np.ndarray,
    sa_width: int,
    bucket: np.ndarray,
    n: int,
    query: Sequence[int],
    min_span: int,
    max_freq: int,
    max_span: int,
) -> tuple[np.ndarray, np.ndarray]:
    """See ``attribution_native._core.find_spans``: the same results, searched over the
    whole suffix array with plain binary searches (the bucket array is not used)."""
    vocab = len(bucket) - 2
    q = [int(t) if 1 <= int(t) <= vocab else UNKNOWN_TOKEN for t in query]
    m = len(q)

    def token(p: int) -> int:
        return packed_get(tok_words, p, tok_width)

    def suffix(row: int) -> int:
        return packed_get(sa_words, row, sa_width)

    def common(p: int, i: int, size: int) -> int:
        """Common prefix of text[p:] and q[i:i+size]."""
        k = 0
        while k < size and p + k < n and token(p + k) == q[i + k]:
            k += 1
        return k

    def less(row: int, i: int, size: int) -> bool:
        """text[suffix(row):] < q[i:i+size], lexicographically."""
        p = suffix(row)
        k = common(p, i, size)
        return k < size and (p + k == n or token(p + k) < q[i + k])

    lengths = []
    for i in range(m):
        size = min(m - i, max_span)
        r = _first_false(lambda row: less(row, i, size), 0, n)
        lengths.append(max((common(suffix(row), i, size) for row in (r - 1, r) if 0 <= row < n), default=0))
    spans, end, resume = [], 0, 0
    for i, length in enumerate(lengths):
        if i < resume:
            continue
        if i + length > end:
            if length >= min_span:
                first = _first_false(lambda row: less(row, i, length), 0, n)
                last = _first_false(lambda row: common(suffix(row), i, length) == length, first, n)
                if last - first <= max_freq:
                    spans.append((i, length, first, last))
            end = i + length
        if length == max_span:
            resume = i + max_span
    return np.array(lengths, dtype=np.int64), np.array(spans, dtype=np.int64).reshape(len(spans), 4)


def attribute(indexes: Sequence[DatanetIndex], output: bytes) -> Attribution:
    """The whole of attribution v1 scoring, plainly (see scoring.attribute)."""
    from .scoring import check_output, ordered_indexes

    check_output(output)
    matches = list(TOKEN_PATTERN.finditer(bytes(output).lower()))
    hashes = [token_hash(match.group()) for match in matches]
    credits: dict[tuple[int, int], int] = {}
    spans = []
    for index in ordered_indexes(indexes):
        vocab = [int(h) for h in index.vocab]
        query = []
        for h in hashes:
            rank = bisect_left(vocab, h)
            query.append(rank + 1 if rank < len(vocab) and vocab[rank] == h else UNKNOWN_TOKEN)
        starts = [int(s) for s in index.contribution_starts]
        _, found = find_spans(
            index.tok_words, index.tok_width, index.sa_words, index.sa_width, index.bucket,
            index.text_length, query, MIN_SPAN, MAX_FREQ, MAX_SPAN,
        )
        for start, length, first, last in found.tolist():
            holders = set()
            for row in range(first, last):
                position = packed_get(index.sa_words, row, index.sa_width)
                holder = bisect_right(starts, position) - 1
                holders.add(int(index.original_of[holder]))
            each = SCALE * length * length // (len(holders) * len(holders))
            ids = tuple(int(index.contribution_ids[k]) for k in sorted(holders))
            spans.append(
                Span(
                    index.datanet_id, index.version, start, start + length,
                    matches[start].start(), matches[start + length - 1].end(), last - first, ids, each,
                )
            )
            for contribution_id in ids:
                credits[(index.datanet_id, contribution_id)] = credits.get((index.datanet_id, contribution_id), 0) + each
    return Attribution(
        credits=tuple(Credit(d, c, score) for (d, c), score in sorted(credits.items())),
        spans=tuple(spans),
        output_tokens=len(matches),
    )


def near_duplicate_of(signatures: np.ndarray, lengths: Sequence[int]) -> np.ndarray:
    """The near-duplicate rule by brute force: contribution k (with tokens) duplicates the
    earliest earlier original j (with tokens) whose signature agrees with k's in at least
    NEAR_DUP_MIN_AGREE slots; see neardup.near_duplicate_of for the banded search."""
    rows = [[int(v) for v in row] for row in signatures]
    original = list(range(len(rows)))
    for k in range(len(rows)):
        if lengths[k] == 0:
            continue
        for j in range(k):
            if original[j] == j and lengths[j] > 0:
                if sum(a == b for a, b in zip(rows[k], rows[j])) >= NEAR_DUP_MIN_AGREE:
                    original[k] = j
                    break
    return np.array(original, dtype=np.uint32)
