"""The Cython attribution core agrees with the pure-Python reference (and both with brute
force) on random corpora and outputs: packed arrays, MinHash signatures, longest matches,
maximal spans, whole attributions and whole index files."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openledger_node.attribution import DatanetIndex, attribute, reference
from openledger_node.attribution.constants import SHINGLE_SEED, SHINGLE_TOKENS
from openledger_node.attribution.neardup import SLOT_MUL, SLOT_XOR
from openledger_node.attribution.scoring import dense_query
from openledger_node.attribution.tokens import token_ids

import attribution_native._core as native  # built by scripts/setup.sh; a missing build fails


def words(tokens: list[int]) -> bytes:
    return b" ".join(b"w%d" % t for t in tokens)


def random_corpus(rng: random.Random, vocab: int, contributions: int, max_len: int) -> list[tuple[int, bytes]]:
    """Random token sequences over a small vocabulary, some quoting earlier ones."""
    texts: list[list[int]] = []
    for _ in range(contributions):
        tokens = [rng.randrange(vocab) for _ in range(rng.randrange(max_len + 1))]
        if texts and rng.random() < 0.4:
            source = rng.choice(texts)
            at = rng.randrange(len(source) + 1)
            tokens[rng.randrange(len(tokens) + 1) :] = source[at : at + rng.randrange(1, 40)]
        texts.append(tokens)
    ids = sorted(rng.sample(range(1, 10 * contributions + 2), contributions))
    return [(cid, words(tokens)) for cid, tokens in zip(ids, texts)]


def random_output(rng: random.Random, corpus: list[tuple[int, bytes]], vocab: int, length: int) -> bytes:
    """Quotes of the corpus mixed with random tokens (some outside its vocabulary)."""
    pieces: list[bytes] = []
    while sum(len(p.split()) for p in pieces) < length:
        if corpus and rng.random() < 0.5:
            source = rng.choice(corpus)[1].split()
            at = rng.randrange(len(source) + 1)
            pieces.append(b" ".join(source[at : at + rng.randrange(1, 30)]))
        else:
            pieces.append(words([rng.randrange(vocab + 3) for _ in range(rng.randrange(1, 6))]))
    return b" ".join(pieces)


def brute_force_lengths(index: DatanetIndex, query: np.ndarray, cap: int = 1 << 30) -> list[int]:
    text = reference.unpack_bits(index.tok_words, index.text_length, index.tok_width).tolist()
    q = [int(t) if 1 <= t <= index.vocab_size else -1 for t in query]
    best = []
    for i in range(len(q)):
        longest = 0
        for p in range(len(text)):
            k = 0
            while k < cap and i + k < len(q) and p + k < len(text) and text[p + k] == q[i + k]:
                k += 1
            longest = max(longest, k)
        best.append(longest)
    return best


def spans_of(index: DatanetIndex, query: np.ndarray, impl, min_span: int, max_freq: int, max_span: int = 1000):
    return impl.find_spans(
        index.tok_words, index.tok_width, index.sa_words, index.sa_width, index.bucket,
        index.text_length, query, min_span, max_freq, max_span,
    )


@pytest.mark.parametrize("seed", range(30))
def test_find_spans_agree_on_seeded_random_corpora(seed: int) -> None:
    rng = random.Random(seed)
    vocab = rng.choice([2, 3, 5, 20, 300])
    corpus = random_corpus(rng, vocab, rng.randrange(0, 12), 60)
    index = DatanetIndex.build(seed, 1, corpus)
    for _ in range(3):
        query = dense_query(index, token_ids(random_output(rng, corpus, vocab, rng.randrange(0, 80))))
        min_span, max_freq = rng.choice([(1, 1), (2, 3), (3, 32), (8, 32), (1, 1000)])
        max_span = rng.choice([1, 3, 9, 40, 1000])
        lengths, spans = spans_of(index, query, native, min_span, max_freq, max_span)
        ref_lengths, ref_spans = spans_of(index, query, reference, min_span, max_freq, max_span)
        assert lengths.tolist() == ref_lengths.tolist() == brute_force_lengths(index, query, max_span)
        assert spans.tolist() == ref_spans.tolist()


@settings(max_examples=60, deadline=None)
@given(
    texts=st.lists(st.lists(st.integers(0, 4), max_size=30), max_size=6),
    query=st.lists(st.integers(0, 9), max_size=40),
    min_span=st.integers(1, 4),
    max_freq=st.integers(1, 6),
    max_span=st.integers(1, 8),
)
def test_find_spans_agree_on_any_small_corpus(texts, query, min_span, max_freq, max_span) -> None:
    index = DatanetIndex.build(1, 1, [(i, words(t)) for i, t in enumerate(texts)])
    q = np.array(query, dtype=np.uint32)  # raw dense ids: 0 and ids above the vocabulary match nothing
    lengths, spans = spans_of(index, q, native, min_span, max_freq, max_span)
    ref_lengths, ref_spans = spans_of(index, q, reference, min_span, max_freq, max_span)
    assert lengths.tolist() == ref_lengths.tolist() == brute_force_lengths(index, q, max_span)
    assert spans.tolist() == ref_spans.tolist()


def test_spans_at_the_edges_of_the_suffix_array_and_text() -> None:
    # Last contribution's last tokens (the match runs into the final separator), the
    # smallest and largest suffixes, a one-token output, an empty output, unknown tokens.
    corpus = [(1, words([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])), (2, words([9, 9, 9, 9, 9, 9, 9, 9, 9]))]
    index = DatanetIndex.build(1, 1, corpus)
    sep_free = index.vocab_size
    cases = [
        [], [1], [sep_free + 1], [0], [10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10],
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [7, 8, 9, 10, 10], [10] * 9 + [0] + [10] * 9,
    ]
    for case in cases:
        q = np.array(case, dtype=np.uint32)
        for min_span, max_freq, max_span in [(1, 1, 100), (1, 100, 100), (3, 2, 100), (2, 5, 4), (1, 3, 1)]:
            lengths, spans = spans_of(index, q, native, min_span, max_freq, max_span)
            ref_lengths, ref_spans = spans_of(index, q, reference, min_span, max_freq, max_span)
            assert lengths.tolist() == ref_lengths.tolist() == brute_force_lengths(index, q, max_span)
            assert spans.tolist() == ref_spans.tolist()


def test_empty_index_matches_nothing() -> None:
    index = DatanetIndex.build(1, 1, [])
    q = np.array([1, 2, 3], dtype=np.uint32)
    for impl in (native, reference):
        lengths, spans = spans_of(index, q, impl, 1, 1)
        assert lengths.tolist() == [0, 0, 0] and spans.shape == (0, 4)


@pytest.mark.parametrize("seed", range(10))
def test_attribute_agrees_with_reference(seed: int) -> None:
    rng = random.Random(1000 + seed)
    vocab = rng.choice([4, 30, 500])
    corpora = {key: random_corpus(rng, vocab, rng.randrange(1, 10), 200) for key in [(1, 1), (1, 2), (4, 1)]}
    indexes = [DatanetIndex.build(d, v, corpus) for (d, v), corpus in corpora.items()]
    quoted = [c for corpus in corpora.values() for c in corpus]
    credited = 0
    for _ in range(4):
        output = random_output(rng, quoted, vocab, 150)
        result = attribute(indexes, output)
        assert result == attribute(indexes, output, implementation="reference")
        credited += len(result.credits)
    assert credited > 0


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.integers(0, (1 << 63) - 1), max_size=70), width=st.integers(1, 63))
def test_bit_packing_agrees_and_round_trips(values, width) -> None:
    values = [v & ((1 << width) - 1) for v in values]
    packed = native.pack_bits(np.array(values, dtype=np.uint64), width)
    assert packed.tolist() == reference.pack_bits(values, width).tolist()
    n = len(values)
    assert native.unpack_bits(packed, n, width).tolist() == values
    assert reference.unpack_bits(packed, n, width).tolist() == values
    lo, hi = n // 3, n - n // 4
    assert native.unpack_bits(packed, n, width, lo, hi).tolist() == values[lo:hi]
    assert reference.unpack_bits(packed, n, width, lo, hi).tolist() == values[lo:hi]


def test_bit_packing_refuses_values_that_do_not_fit() -> None:
    with pytest.raises(ValueError):
        native.pack_bits(np.array([8], dtype=np.uint64), 3)
    with pytest.raises(ValueError):
        native.pack_bits(np.array([-1], dtype=np.int64), 3)
    with pytest.raises(ValueError):
        reference.pack_bits([8], 3)
    with pytest.raises(ValueError):
        native.unpack_bits(np.zeros(1, dtype=np.uint64), 1, 3)  # too few words for one element
    with pytest.raises(ValueError):
        native.pack_bits(np.array([1], dtype=np.uint64), 64)  # widths are 1..63


@settings(max_examples=40, deadline=None)
@given(texts=st.lists(st.lists(st.integers(0, (1 << 32) - 1), max_size=12), max_size=5))
def test_minhash_agrees(texts) -> None:
    ids = np.array([t for text in texts for t in text], dtype=np.uint32)
    offsets = np.cumsum([0] + [len(t) for t in texts]).astype(np.int64)
    args = (np.array(SLOT_XOR, dtype=np.uint64), np.array(SLOT_MUL, dtype=np.uint64), SHINGLE_TOKENS, SHINGLE_SEED)
    got = native.minhash_signatures(ids, offsets, *args)
    want = reference.minhash_signatures(ids.tolist(), offsets.tolist(), SLOT_XOR, SLOT_MUL, SHINGLE_TOKENS, SHINGLE_SEED)
    assert got.tolist() == want.tolist()


@pytest.mark.parametrize("seed", range(5))
def test_index_files_agree(seed: int) -> None:
    rng = random.Random(seed)
    corpus = random_corpus(rng, rng.choice([3, 70, 400]), rng.randrange(0, 15), 120)
    native_bytes = DatanetIndex.build(seed, 2, corpus).to_bytes()
    assert native_bytes == DatanetIndex.build(seed, 2, corpus, implementation="reference").to_bytes()


@pytest.mark.parametrize("seed", range(5))
def test_bucket_starts_agree(seed: int) -> None:
    rng = random.Random(50 + seed)
    index = DatanetIndex.build(1, 1, random_corpus(rng, rng.choice([1, 6, 300]), rng.randrange(0, 8), 50))
    args = (index.tok_words, index.tok_width, index.text_length, index.vocab_size)
    assert native.bucket_starts(*args).tolist() == reference.bucket_starts(*args).tolist() == index.bucket.tolist()


@settings(max_examples=80, deadline=None)
@given(
    rows=st.lists(st.lists(st.integers(0, 1), min_size=64, max_size=64), max_size=12),
    empty=st.lists(st.booleans(), min_size=12, max_size=12),
    data=st.data(),
)
def test_banded_near_duplicate_search_finds_what_brute_force_finds(rows, empty, data) -> None:
    """Signatures over a tiny alphabet, with planted copies that differ in a few slots, so
    that agreements near the threshold are common."""
    from openledger_node.attribution import neardup

    signatures = [list(r) for r in rows]
    for k in range(1, len(signatures)):
        if data.draw(st.booleans()):
            source = signatures[data.draw(st.integers(0, k - 1))]
            flips = data.draw(st.lists(st.integers(0, 63), max_size=24))
            signatures[k] = [v ^ 1 if i in flips else v for i, v in enumerate(source)]
    sig = np.array(signatures, dtype=np.uint64).reshape(len(signatures), 64)
    lengths = np.array([0 if empty[k] and k % 3 == 0 else 5 for k in range(len(signatures))])
    assert neardup.near_duplicate_of(sig, lengths).tolist() == reference.near_duplicate_of(sig, lengths).tolist()


BYTE_CLASSES = b"aqzAQZ059 \t\n.,;-_\x00\x7f\x80\x9f\xbf\xc0\xc3\xe2\xef\xf0\xff"


@settings(max_examples=300, deadline=None)
@given(data=st.lists(st.sampled_from(list(BYTE_CLASSES)), max_size=200).map(bytes))
def test_native_tokenizer_agrees_with_the_regular_expression(data: bytes) -> None:
    from openledger_node.attribution.tokens import Tokenizer, tokenize_reference, token_hash

    table = native.TokenTable(token_hash, 1)  # tiny: the table grows while tokenizing
    for _ in range(2):  # first sight, then from the cache
        ids, starts, ends = table.tokenize(data)
        want = tokenize_reference(data)
        assert (ids.tolist(), starts.tolist(), ends.tolist()) == (
            want.ids.tolist(), want.starts.tolist(), want.ends.tolist()
        )
    assert Tokenizer("native")(data).ids.tolist() == Tokenizer("reference")(data).ids.tolist()


def test_native_tokenizer_on_long_tokens_and_many_distinct_tokens() -> None:
    from openledger_node.attribution.tokens import tokenize_reference, token_hash

    rng = random.Random(3)
    long_word = b"X" * 100_000
    text = b" ".join([long_word, "é".encode() * 5000] + [b"w%dQ" % rng.randrange(10**6) for _ in range(20_000)])
    table = native.TokenTable(token_hash)
    ids, starts, ends = table.tokenize(text)
    want = tokenize_reference(text)
    assert ids.tolist() == want.ids.tolist() and starts.tolist() == want.starts.tolist()
    assert ends.tolist() == want.ends.tolist()
    assert len(table) == len(set(want.ids.tolist()))


def _mix64(z: int) -> int:
    from openledger_node.attribution.neardup import mix64

    return mix64(z)


@settings(max_examples=60, deadline=None)
@given(texts=st.lists(st.lists(st.sampled_from([0, 1, 7, 2**31, 2**32 - 1, 12345]), max_size=15), max_size=6))
def test_dense_text_agrees(texts) -> None:
    hashes = np.array([h for t in texts for h in t], dtype=np.uint32)
    offsets = np.cumsum([0] + [len(t) for t in texts]).astype(np.int64)
    vocab, text = native.dense_text(hashes, offsets)
    ref_vocab, ref_text = reference.dense_text(hashes.tolist(), offsets.tolist())
    assert vocab.tolist() == ref_vocab.tolist() and text.tolist() == ref_text.tolist()


def test_dense_text_with_crafted_hash_collisions_stays_exact() -> None:
    # 200 ids that all land on the same slot of the initial table (2**16 slots): the
    # probes give up after 64 and the rest are found by binary search in the vocabulary.
    keys = np.arange(1, 1 << 24, dtype=np.uint64)
    z = keys.copy()
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    colliding = keys[(z & np.uint64(0xFFFF)) == np.uint64(0x1234)][:200].astype(np.uint32)
    assert len(colliding) == 200 and _mix64(int(colliding[0])) & 0xFFFF == 0x1234
    hashes = np.concatenate([colliding, colliding[::-1], np.array([5, 6], dtype=np.uint32)])
    offsets = np.array([0, 150, len(hashes)], dtype=np.int64)
    vocab, text = native.dense_text(hashes, offsets)
    ref_vocab, ref_text = reference.dense_text(hashes.tolist(), offsets.tolist())
    assert vocab.tolist() == ref_vocab.tolist() and text.tolist() == ref_text.tolist()


def test_token_table_with_crafted_collisions_stays_exact() -> None:
    from openledger_node.attribution.tokens import tokenize_reference, token_hash

    def slot(token: bytes) -> int:
        h = 0xCBF29CE484222325
        for byte in token:
            h = ((h ^ byte) * 0x100000001B3) & ((1 << 64) - 1)
        return _mix64(h) & 8191  # TokenTable(capacity=4096) has 8192 slots

    colliding = [t for t in (b"w%d" % i for i in range(2_000_000)) if slot(t) == 77][:100]
    assert len(colliding) == 100
    calls = []

    def hasher(token: bytes) -> int:
        calls.append(token)
        return token_hash(token)

    table = native.TokenTable(hasher, 4096)
    text = b" ".join(colliding * 3)
    ids, starts, ends = table.tokenize(text)
    assert ids.tolist() == tokenize_reference(text).ids.tolist()
    assert len(table) == 64 and len(calls) > 100  # 64 cached; the others computed each time


@pytest.mark.parametrize("distinct", [3, 300, 70_000])  # 1-, 2- and 4-byte symbols for divsufsort
def test_suffix_array_is_sorted_permutation(distinct: int) -> None:
    rng = random.Random(distinct)
    tokens = list(range(distinct)) + [rng.randrange(distinct) for _ in range(5_000)]
    chunks = [tokens[k : k + 997] for k in range(0, len(tokens), 997)]
    index = DatanetIndex.build(1, 1, [(k, words(chunk)) for k, chunk in enumerate(chunks)])
    text = native.unpack_bits(index.tok_words, index.text_length, index.tok_width).tolist()
    sa = native.unpack_bits(index.sa_words, index.text_length, index.sa_width).tolist()
    assert sorted(sa) == list(range(len(text)))
    assert distinct - 5 <= index.vocab_size <= distinct  # a few 32-bit id collisions among 70,000 words
    for a, b in zip(sa, sa[1:]):
        k = 0
        while a + k < len(text) and b + k < len(text) and text[a + k] == text[b + k]:
            k += 1
        assert a + k == len(text) or (b + k < len(text) and text[a + k] < text[b + k])
