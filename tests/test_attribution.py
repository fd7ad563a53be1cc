"""Attribution v1 as specified in docs/attribution.md: tokenization, spans and scores,
near-duplicates, determinism, and the fee split."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openledger_node.attribution import (
    MAX_FREQ,
    MAX_OUTPUT_BYTES,
    MAX_SPAN,
    MIN_SPAN,
    SCALE,
    Credit,
    DatanetIndex,
    InvalidContribution,
    attribute,
    split_fee,
    token_ids,
    tokenize,
    validate_contribution,
)
from openledger_node.attribution import backend
from openledger_node.attribution.tokens import token_hash

RIVER = (
    b"The river town woke before dawn, when the ferrymen lit their lanterns and the bakers pulled the "
    b"first loaves from brick ovens. Along the quay the fishmongers argued about the price of eels, "
    b"while a tired schoolteacher walked her bicycle across the cobbles and counted the gulls that "
    b"circled the customs house. Nobody remembered who had planted the chestnut trees by the old mill, "
    b"but every autumn the children gathered the fallen nuts in paper bags and roasted them on the "
    b"iron stove of the railway waiting room."
)
ORBIT = (
    b"Satellites in low orbit circle the planet every ninety minutes, and engineers on the ground must "
    b"predict each pass to within a few seconds. A small error in the drag model grows quickly: after a "
    b"week the predicted position can drift by several kilometres. Operators therefore upload fresh "
    b"orbital elements twice a day, compare the measured ranging data with the forecast, and adjust the "
    b"thrusters when the residuals exceed the tolerance written in the mission rules."
)
GARDEN = (
    b"Tomatoes want full sun, deep watering twice a week, and a stake driven in before the roots spread. "
    b"Pinch the side shoots that sprout between the stem and the leaves, mulch the bed with straw to keep "
    b"the soil cool, and pick the fruit when it gives slightly under the thumb. Basil planted between the "
    b"rows keeps some pests away and tastes better for the company."
)
# RIVER with a handful of words changed: a near-duplicate.
RIVER_EDITED = (
    b"The river town woke before dawn, when the ferrymen lit their lanterns and the bakers pulled the "
    b"first loaves from brick ovens. Along the quay the fishmongers quarrelled about the price of eels, "
    b"while a tired schoolteacher walked her bicycle across the cobbles and counted the gulls that "
    b"circled the customs house. Nobody remembered who had planted the chestnut trees by the old mill, "
    b"but every autumn the children gathered the fallen nuts in paper sacks and roasted them on the "
    b"iron stove of the railway waiting room!"
)


def index_of(*texts: bytes, datanet_id: int = 1, version: int = 1, first_id: int = 1) -> DatanetIndex:
    return DatanetIndex.build(datanet_id, version, [(first_id + k, text) for k, text in enumerate(texts)])


def scores(result) -> dict[int, int]:
    return {credit.contribution_id: credit.score for credit in result.credits}


# -- tokenization ----------------------------------------------------------------------


def test_tokens_are_lowercased_ascii_words_and_single_non_ascii_characters() -> None:
    text = "Hello, WORLD! x42 café 東京 — end".encode()
    tokens = tokenize(text)
    pieces = [text[s:e] for s, e in zip(tokens.starts.tolist(), tokens.ends.tolist())]
    expected = [b"Hello", b"WORLD", b"x42", b"caf", *(c.encode() for c in "é東京—"), b"end"]
    assert pieces == expected
    assert tokens.ids.tolist() == [token_hash(p.lower()) for p in expected]


def test_token_ids_are_truncated_blake2b_pinned() -> None:
    # BLAKE2b(token, digest_size=4, person=b"olattr-v1"), big-endian. Changing these
    # values is a new attribution version.
    assert token_hash(b"hello") == 0x7933d917
    assert token_hash(b"attribution") == 0xb4652fbf
    assert token_hash("東".encode()) == 0x5a8d42
    assert token_ids(b"Hello hello HELLO").tolist() == [token_hash(b"hello")] * 3


def test_tokenization_is_total_on_any_bytes() -> None:
    data = bytes(range(256)) * 3
    tokens = tokenize(data)
    assert len(tokens.ids) == len(tokens.starts) == len(tokens.ends) > 0
    assert token_ids(data).tolist() == tokens.ids.tolist()


@pytest.mark.parametrize(
    ("data", "reason"),
    [(b"", "empty"), (b"\xff\xfe", "not_utf8"), (b"!!! ... ???", "no_tokens"), (b"a" * (256 * 1024 + 1), "too_large")],
)
def test_contributions_that_cannot_be_indexed_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidContribution) as info:
        validate_contribution(data)
    assert info.value.reason == reason


def test_a_valid_contribution_passes() -> None:
    validate_contribution(RIVER)
    validate_contribution("Ein Fluss, der durch die Stadt fließt.".encode())


# -- spans and scores --------------------------------------------------------------------


def test_a_known_quote_is_attributed_to_the_contribution_holding_it() -> None:
    index = index_of(RIVER, ORBIT, GARDEN)
    quote = b"a small error in the drag model grows quickly"  # 9 tokens of ORBIT
    result = attribute([index], b"As the manual says, " + quote + b". Fascinating.")
    assert result.credits == (Credit(1, 2, SCALE * 9 * 9),)
    (span,) = result.spans
    assert (span.start, span.end, span.occurrences, span.contribution_ids) == (4, 13, 1, (2,))
    output = b"As the manual says, " + quote + b". Fascinating."
    assert output[span.byte_start : span.byte_end].lower() == quote


def test_quotes_from_several_contributions_each_score_length_squared() -> None:
    index = index_of(RIVER, ORBIT, GARDEN)
    output = (
        b"Remember: pinch the side shoots that sprout between the stem and the leaves. Also, "
        b"operators therefore upload fresh orbital elements twice a day, compare the measured ranging data."
    )
    got = scores(attribute([index], output))
    assert got == {3: SCALE * 12 * 12, 2: SCALE * 14 * 14}  # 12 and 14 tokens


def test_longer_spans_score_more() -> None:
    index = index_of(RIVER, ORBIT, GARDEN)
    short = scores(attribute([index], b"the fishmongers argued about the price of eels while"))
    long = scores(attribute([index], b"the fishmongers argued about the price of eels while a tired schoolteacher walked"))
    assert long[1] > short[1] > 0


def test_spans_shorter_than_min_span_earn_nothing() -> None:
    index = index_of(RIVER, ORBIT, GARDEN)
    words = b"satellites in low orbit circle the planet every ninety minutes".split()
    assert attribute([index], b" ".join(words[:MIN_SPAN - 1])).credits == ()
    assert scores(attribute([index], b" ".join(words[:MIN_SPAN]))) == {2: SCALE * MIN_SPAN**2}


def test_a_span_held_by_two_originals_is_shared_and_scores_less() -> None:
    shared = b" satellites in low orbit circle the planet every ninety minutes and engineers"
    index = index_of(RIVER + shared, GARDEN + shared, ORBIT)
    result = attribute([index], shared)
    # 12 tokens held by 3 originals: SCALE * 12**2 // 3**2 each
    assert len(token_ids(shared)) == 12
    assert scores(result) == {1: SCALE * 144 // 9, 2: SCALE * 144 // 9, 3: SCALE * 144 // 9}
    assert result.spans[0].contribution_ids == (1, 2, 3)


def test_spans_found_more_than_max_freq_times_earn_nothing() -> None:
    common = b"according to the terms and conditions of the agreement signed by both parties"
    body = [b"contribution number %d talks about topic %d in its own words entirely" % (k, k * 7) for k in range(MAX_FREQ + 1)]
    capped = index_of(*(b + b". " + common for b in body[:MAX_FREQ]))
    over = index_of(*(b + b". " + common for b in body))
    assert len(attribute([capped], common).credits) == MAX_FREQ
    assert attribute([over], common).credits == ()


def test_junk_output_attributes_nothing() -> None:
    index = index_of(RIVER, ORBIT, GARDEN)
    rng = np.random.default_rng(7)
    junk = bytes(rng.integers(0, 256, size=4000, dtype=np.uint8))
    for output in [b"", b"!!!", b"zxq vbn wert yuio plk", junk, b"the the the the the the the the the the"]:
        result = attribute([index], output)
        assert result.credits == () and result.spans == ()


def test_only_maximal_spans_are_kept() -> None:
    index = index_of(RIVER, ORBIT, GARDEN)
    output = b"the bakers pulled the first loaves from brick ovens along the quay the fishmongers"
    result = attribute([index], output)
    assert [(s.start, s.end) for s in result.spans] == [(0, 14)]


def test_long_quotes_are_cut_into_pieces_of_max_span_tokens() -> None:
    long_text = b" ".join(b"w%d" % i for i in range(400))
    index = index_of(RIVER, long_text)
    quote = b" ".join(b"w%d" % i for i in range(50, 350))  # 300 tokens
    result = attribute([index], quote)
    assert [(s.start, s.end) for s in result.spans] == [(0, MAX_SPAN), (MAX_SPAN, 2 * MAX_SPAN), (2 * MAX_SPAN, 300)]
    assert scores(result) == {2: SCALE * (2 * MAX_SPAN**2 + (300 - 2 * MAX_SPAN) ** 2)}


def test_repetitive_outputs_take_bounded_time() -> None:
    import time

    index = index_of(b"a " * 100_000, b"a b " * 50_000)
    started = time.perf_counter()
    for output in [b"a " * (MAX_OUTPUT_BYTES // 2), b"b a " * (MAX_OUTPUT_BYTES // 4)]:
        assert attribute([index], output).credits == ()  # far more than MAX_FREQ occurrences
    assert time.perf_counter() - started < 5  # about 0.2 s; quadratic work would take minutes


def test_credits_are_per_datanet_and_summed_over_versions() -> None:
    v1 = index_of(RIVER, ORBIT, datanet_id=5, version=1)
    v2 = index_of(RIVER, ORBIT, GARDEN, datanet_id=5, version=2)
    other = index_of(GARDEN, datanet_id=2, first_id=10)
    quote = b"pick the fruit when it gives slightly under the thumb"
    result = attribute([v2, other, v1], quote)
    assert result.credits == (Credit(2, 10, SCALE * 10 * 10), Credit(5, 3, SCALE * 10 * 10))
    assert [(s.datanet_id, s.version) for s in result.spans] == [(2, 1), (5, 2)]
    with pytest.raises(ValueError):
        attribute([v1, v1], quote)


def test_outputs_longer_than_the_bound_are_refused() -> None:
    with pytest.raises(ValueError):
        attribute([index_of(RIVER)], b"a " * (MAX_OUTPUT_BYTES // 2 + 1))


# -- near-duplicates -------------------------------------------------------------------


def test_an_edited_copy_is_a_near_duplicate_of_the_earlier_original() -> None:
    index = index_of(RIVER, ORBIT, RIVER_EDITED, GARDEN)
    assert index.near_duplicates() == [(3, 1)]


def test_different_texts_sharing_a_sentence_are_not_near_duplicates() -> None:
    shared = b" satellites in low orbit circle the planet every ninety minutes"
    assert index_of(RIVER + shared, GARDEN + shared).near_duplicates() == []


def test_a_near_duplicate_earns_nothing_extra() -> None:
    with_copy = index_of(RIVER, ORBIT, RIVER_EDITED, GARDEN)
    without = index_of(RIVER, ORBIT, GARDEN)
    common = b"nobody remembered who had planted the chestnut trees by the old mill"
    # The passage both hold is credited to the original alone, as if the copy were absent.
    assert scores(attribute([with_copy], common)) == {1: SCALE * 12 * 12}
    assert scores(attribute([with_copy], common)) == scores(attribute([without], common))
    # The copy's own wording is credited to its original, never to the copy.
    edited = b"along the quay the fishmongers quarrelled about the price of eels while a tired"
    result = attribute([with_copy], edited)
    assert 3 not in scores(result) and scores(result) and set(scores(result)) == {1}


def test_an_exact_token_copy_is_a_near_duplicate() -> None:
    index = index_of(ORBIT, ORBIT.upper().replace(b",", b" ;"))
    assert index.near_duplicates() == [(2, 1)]
    assert set(scores(attribute([index], ORBIT[:200]))) == {1}


# -- index files and determinism ---------------------------------------------------------


def test_index_files_round_trip_byte_identically(tmp_path) -> None:
    index = index_of(RIVER, ORBIT, RIVER_EDITED, GARDEN, datanet_id=9, version=3)
    index.save(tmp_path / "v3.olidx")
    loaded = DatanetIndex.load(tmp_path / "v3.olidx")
    assert loaded.to_bytes() == index.to_bytes() == (tmp_path / "v3.olidx").read_bytes()
    assert (loaded.datanet_id, loaded.version, loaded.num_contributions) == (9, 3, 4)
    assert index_of(RIVER, ORBIT, RIVER_EDITED, GARDEN, datanet_id=9, version=3).to_bytes() == index.to_bytes()
    output = RIVER[40:300] + ORBIT[100:400]
    assert attribute([loaded], output) == attribute([index], output)


def test_damaged_index_files_are_refused() -> None:
    from openledger_node.attribution import IndexFormatError

    data = index_of(RIVER, ORBIT).to_bytes()
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 1
    for bad in [bytes(flipped), data[:-1], data[:40], b"x" * 200, data[:8] + b"\x02" + data[9:]]:
        with pytest.raises(IndexFormatError):
            DatanetIndex(bad)


def test_contribution_ids_must_increase() -> None:
    with pytest.raises(ValueError):
        DatanetIndex.build(1, 1, [(2, RIVER), (1, ORBIT)])
    with pytest.raises(ValueError):
        DatanetIndex.build(1, 1, [(1, RIVER), (1, ORBIT)])


DETERMINISM_SCRIPT = """
import hashlib, sys
from openledger_node.attribution import DatanetIndex, attribute
texts = [bytes.fromhex(h) for h in sys.argv[1:]]
index = DatanetIndex.build(4, 2, list(enumerate(texts[:-1], start=10)))
print(hashlib.sha256(index.to_bytes()).hexdigest(), repr(attribute([index], texts[-1])))
"""


def test_same_inputs_give_the_same_bytes_and_scores_in_other_processes() -> None:
    texts = [RIVER, ORBIT, RIVER_EDITED, GARDEN, RIVER[50:400] + b" and " + GARDEN[20:300]]
    runs = {
        subprocess.run(
            [sys.executable, "-c", DETERMINISM_SCRIPT, *(t.hex() for t in texts)],
            capture_output=True, check=True, text=True, env={"PYTHONHASHSEED": seed, "PATH": ""},
        ).stdout
        for seed in ["0", "1", "12345"]
    }
    assert len(runs) == 1
    assert "Credit(" in runs.pop()


# -- implementations ---------------------------------------------------------------------


def test_the_reference_is_used_only_when_asked() -> None:
    index = index_of(RIVER, ORBIT)
    output = ORBIT[:300]
    assert attribute([index], output, implementation="reference") == attribute([index], output)
    with pytest.raises(ValueError):
        attribute([index], output, implementation="fast")
    with pytest.raises(ValueError):
        backend.get("cython")


# -- fee split ---------------------------------------------------------------------------


def test_fee_split_example() -> None:
    # owner 10% = 100; pool 900 split 1:2 exactly
    assert split_fee(1000, 1000, [("a", 1), ("b", 2)]) == (100, [("a", 300), ("b", 600)], 0)
    # pool 10 over 1:1:1 -> 3 each, 1 wei left: remainders tie, the first entry gets it
    assert split_fee(10, 0, [("a", 1), ("b", 1), ("c", 1)]) == (0, [("a", 4), ("b", 3), ("c", 3)], 0)
    # pool 4 over 1:2 -> 4/3 = 1 r 1, 8/3 = 2 r 2: the larger remainder (b) gets the wei left
    assert split_fee(4, 0, [("a", 1), ("b", 2)]) == (0, [("a", 1), ("b", 3)], 0)


def test_nothing_attributed_sends_the_contributors_share_to_the_treasury() -> None:
    assert split_fee(1001, 2500, []) == (250, [], 751)
    assert split_fee(1001, 2500, [("a", 0), ("b", 0)]) == (250, [], 751)
    assert split_fee(7, 10_000, [("a", 5)]) == (7, [("a", 0)], 0)


@pytest.mark.parametrize(
    ("fee", "bps", "scores_"), [(-1, 0, []), (10, -1, []), (10, 10_001, []), (10, 0, [("a", -1)]), (1.5, 0, [])]
)
def test_fee_split_refuses_bad_arguments(fee, bps, scores_) -> None:
    with pytest.raises(ValueError):
        split_fee(fee, bps, scores_)


@settings(max_examples=400, deadline=None)
@given(
    fee=st.one_of(st.integers(0, 10**6), st.integers(0, 2**256 - 1)),
    bps=st.integers(0, 10_000),
    score_list=st.lists(st.one_of(st.integers(0, 10), st.integers(0, 2**80)), max_size=40),
)
def test_fee_split_sums_to_the_fee_exactly(fee: int, bps: int, score_list: list[int]) -> None:
    entries = [(k, s) for k, s in enumerate(score_list)]
    owner, paid, treasury = split_fee(fee, bps, entries)
    assert owner + sum(amount for _, amount in paid) + treasury == fee
    assert owner == fee * bps // 10_000
    total = sum(score_list)
    pool = fee - owner
    if total == 0:
        assert paid == [] and treasury == pool
    else:
        assert treasury == 0
        assert [k for k, _ in paid] == [k for k, s in entries if s > 0]
        for k, amount in paid:
            exact = pool * score_list[k]
            assert exact // total <= amount <= exact // total + 1  # within one wei of the exact share
