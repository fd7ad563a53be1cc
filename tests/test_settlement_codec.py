"""The batch format (docs/batches.md): round trips, and every malformed input refused with
BatchDecodeError and nothing else."""
from __future__ import annotations

import zlib

import brotli
import pytest
import rlp
from hypothesis import given, settings, strategies as st

from openledger_node.settlement import codec
from openledger_node.settlement.codec import BatchBlock, BatchDecodeError, decode_batch, encode_batch

VERSIONS = sorted(codec.VERSIONS)


def blocks(count: int = 3, first: int = 7) -> list[BatchBlock]:
    return [BatchBlock(first + i, 1_700_000_000 + 2 * i, bytes([i + 1]) * 20, 30_000_000, b"ol" if i else b"",
                       tuple(bytes([0x02]) + bytes([i, j]) * 50 for j in range(i))) for i in range(count)]


def raw_batch(payload: bytes, version: int = codec.VERSION_ZLIB) -> bytes:
    return bytes([version]) + codec.compress(payload, version)


@pytest.mark.parametrize("version", VERSIONS)
def test_a_batch_decodes_to_the_blocks_it_was_made_of(version: int) -> None:
    original = blocks(5)
    data = encode_batch(original, version)
    assert data[0] == version
    assert decode_batch(data) == tuple(original)


def test_the_default_codec_is_brotli() -> None:
    assert codec.DEFAULT_VERSION == codec.VERSION_BROTLI
    assert encode_batch(blocks())[0] == 0x01


def test_encoding_refuses_non_consecutive_or_no_blocks() -> None:
    with pytest.raises(ValueError):
        encode_batch([])
    with pytest.raises(ValueError):
        encode_batch([blocks(1, first=1)[0], blocks(1, first=3)[0]])


@pytest.mark.parametrize("version", VERSIONS)
def test_a_decompression_bomb_stops_at_the_bound(version: int) -> None:
    bomb = bytes([version]) + codec.compress(b"\x00" * (codec.MAX_DECOMPRESSED_BYTES + 1), version)
    assert len(bomb) < 100_000
    with pytest.raises(BatchDecodeError, match="decompresses to more than"):
        decode_batch(bomb)
    small = encode_batch(blocks(), version)
    with pytest.raises(BatchDecodeError, match="more than 100 bytes"):
        decode_batch(small, limit=100)


@pytest.mark.parametrize("data, reason", [
    (b"", "empty batch"),
    (b"\x09" + zlib.compress(b"\xc0"), "unknown batch version 0x09"),
    (b"\x00" + zlib.compress(rlp.encode([]))[:-2], "zlib: truncated stream"),
    (b"\x00" + zlib.compress(rlp.encode([])) + b"x", "bytes after the end of the stream"),
    (b"\x01" + brotli.compress(rlp.encode([]))[:-1], "brotli"),
    (b"\x00garbage", "zlib:"),
    (b"\x01garbage", "brotli:"),
    (raw_batch(rlp.encode([])), "batch holds no blocks"),
    (raw_batch(rlp.encode(b"abc")), "not an RLP list"),
    (raw_batch(rlp.encode([]) + b"\x00"), "1 bytes after the RLP list"),
    (raw_batch(b"\xf9\x01"), "bad RLP"),
    (raw_batch(b"\xc5\x01"), "runs 4 bytes past the end"),
    (raw_batch(rlp.encode([b"x"])), "expected a list"),
    (raw_batch(rlp.encode([[1, 2, b"\x00" * 20, 3, b""]])), "5 fields, expected 6"),
    (raw_batch(rlp.encode([[b"\x00\x01", 2, b"\x00" * 20, 3, b"", []]])), "leading zero"),
    (raw_batch(rlp.encode([[2**64, 2, b"\x00" * 20, 3, b"", []]])), "wider than 64 bits"),
    (raw_batch(rlp.encode([[1, 2, b"\x00" * 19, 3, b"", []]])), "fee recipient of 19 bytes"),
    (raw_batch(rlp.encode([[1, 2, b"\x00" * 20, 3, b"x" * 33, []]])), "extra data of 33 bytes"),
    (raw_batch(rlp.encode([[1, 2, b"\x00" * 20, 3, b"", b"tx"]])), "transactions must be a list"),
    (raw_batch(rlp.encode([[1, 2, b"\x00" * 20, 3, b"", [b""]]])), "transaction 0: empty"),
    (raw_batch(rlp.encode([[1, 2, b"\x00" * 20, 3, b"", [[b"x"]]]])), "expected a byte string"),
    (raw_batch(rlp.encode([[1, 2, [], 3, b"", []]])), "expected a byte string"),
    (raw_batch(rlp.encode([[1, 2, b"\x00" * 20, 3, b"", []], [3, 2, b"\x00" * 20, 3, b"", []]])),
     "block 3 follows block 1"),
    (raw_batch(b"\xc2\x81\x05"), "single byte was possible"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_malformed_batches_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(BatchDecodeError) as caught:
        decode_batch(data)
    assert reason in caught.value.reason


def test_deep_nesting_is_refused_without_recursion() -> None:
    nested = b""
    for _ in range(200_000):
        nested = b"\xc0" if not nested else rlp.codec.length_prefix(len(nested), 0xC0) + nested
    with pytest.raises(BatchDecodeError):
        decode_batch(raw_batch(nested))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_raise_only_batch_decode_errors(data: bytes) -> None:
    try:
        decode_batch(data)
    except BatchDecodeError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(VERSIONS))
def test_random_compressed_payloads_raise_only_batch_decode_errors(payload: bytes, version: int) -> None:
    try:
        decode_batch(raw_batch(payload, version))
    except BatchDecodeError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 600), st.integers(0, 255))
def test_flipped_bytes_of_a_valid_batch_raise_only_batch_decode_errors(position: int, value: int) -> None:
    payload = bytearray(codec.encode_blocks(blocks(4)))
    payload[position % len(payload)] = value
    try:
        decode_batch(raw_batch(bytes(payload)))
    except BatchDecodeError:
        pass
