"""The batch format: what the poster puts in L1 calldata and what auditors re-execute.

A batch is one version byte followed by a compressed RLP list of blocks::

    batch  = version || compress_version(rlp([block, ...]))
    block  = [number, timestamp, fee_recipient, gas_limit, extra_data, [raw_tx, ...]]

Version 0x00 compresses with zlib (RFC 1950), version 0x01 with brotli (RFC 7932); the
RLP is the same.  ``docs/batches.md`` is the specification; this module follows it
line by line.  Everything else a block header holds is either fixed by the chain's
rules (mix hash, parent beacon root, difficulty, nonce, uncles), computed from the
parent (base fee, excess blob gas) or the result of executing the transactions (roots,
bloom, gas used), so the auditor recomputes it and checks the result against the
roots committed on L1.

Decoding is strict: one exception type, :class:`BatchDecodeError`, for every way the
bytes can be wrong, and a hard bound on the decompressed size so that a small batch
cannot expand into gigabytes.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Sequence

import brotli
import rlp
from rlp.codec import consume_length_prefix

VERSION_ZLIB = 0x00
VERSION_BROTLI = 0x01
VERSIONS = {VERSION_ZLIB: "zlib", VERSION_BROTLI: "brotli"}
# Chosen by measurement (scripts/bench_settlement.py, docs/batches.md): brotli at
# quality 11 gives the smaller batches on every workload measured.
DEFAULT_VERSION = VERSION_BROTLI

MAX_DECOMPRESSED_BYTES = 16 * 1024 * 1024  # RLP payload of one batch, after decompression
MAX_UINT64 = 2**64 - 1
BLOCK_FIELDS = 6
ADDRESS_BYTES = 20
MAX_EXTRA_DATA_BYTES = 32  # py-evm's header rule (as Ethereum's)


class BatchDecodeError(ValueError):
    """The bytes are not a valid batch; ``reason`` says why in one line."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class BatchBlock:
    """The attributes of one L2 block that re-execution needs."""

    number: int
    timestamp: int
    fee_recipient: bytes
    gas_limit: int
    extra_data: bytes
    transactions: tuple[bytes, ...]  # each transaction's network encoding (EIP-2718)


def batch_block_of(block) -> BatchBlock:
    """The batch form of a py-evm block."""
    header = block.header
    return BatchBlock(
        number=header.block_number,
        timestamp=header.timestamp,
        fee_recipient=bytes(header.coinbase),
        gas_limit=header.gas_limit,
        extra_data=bytes(header.extra_data),
        transactions=tuple(tx.encode() for tx in block.transactions),
    )


def encode_blocks(blocks: Sequence[BatchBlock]) -> bytes:
    """The uncompressed RLP payload of a batch."""
    return rlp.encode([
        [b.number, b.timestamp, b.fee_recipient, b.gas_limit, b.extra_data, list(b.transactions)]
        for b in blocks
    ])


def encode_batch(blocks: Sequence[BatchBlock], version: int = DEFAULT_VERSION) -> bytes:
    """A batch of ``blocks`` (consecutive numbers, at least one) in format ``version``."""
    if not blocks:
        raise ValueError("a batch holds at least one block")
    for before, after in zip(blocks, blocks[1:]):
        if after.number != before.number + 1:
            raise ValueError(f"blocks {before.number} and {after.number} are not consecutive")
    payload = encode_blocks(blocks)
    if len(payload) > MAX_DECOMPRESSED_BYTES:
        raise ValueError(f"batch payload of {len(payload)} bytes exceeds {MAX_DECOMPRESSED_BYTES}")
    return bytes([version]) + compress(payload, version)


def compress(payload: bytes, version: int) -> bytes:
    if version == VERSION_ZLIB:
        return zlib.compress(payload, 9)
    if version == VERSION_BROTLI:
        return brotli.compress(payload, quality=11, lgwin=22)
    raise ValueError(f"unknown batch version {version}")


def decompress(data: bytes, version: int, limit: int = MAX_DECOMPRESSED_BYTES) -> bytes:
    """Decompress at most ``limit`` bytes; BatchDecodeError on anything else."""
    if version == VERSION_ZLIB:
        decoder = zlib.decompressobj()
        try:
            out = decoder.decompress(data, limit + 1)
        except zlib.error as exc:
            raise BatchDecodeError(f"zlib: {exc}") from None
        if len(out) > limit:
            raise BatchDecodeError(f"decompresses to more than {limit} bytes")
        if not decoder.eof:
            raise BatchDecodeError("zlib: truncated stream")
        if decoder.unused_data:
            raise BatchDecodeError(f"zlib: {len(decoder.unused_data)} bytes after the end of the stream")
        return out
    if version == VERSION_BROTLI:
        decoder = brotli.Decompressor()
        try:
            # The buffer stops growing once it holds more than ``limit`` bytes.
            out = decoder.process(data, output_buffer_limit=limit + 1)
        except brotli.error as exc:
            raise BatchDecodeError(f"brotli: {exc}") from None
        if len(out) > limit:
            raise BatchDecodeError(f"decompresses to more than {limit} bytes")
        if not decoder.is_finished():
            raise BatchDecodeError("brotli: truncated stream")
        return out
    raise BatchDecodeError(f"unknown batch version 0x{version:02x}")


def decode_batch(data: bytes, *, limit: int = MAX_DECOMPRESSED_BYTES) -> tuple[BatchBlock, ...]:
    """The blocks of a batch; raises BatchDecodeError, and only that, on bad bytes."""
    if not isinstance(data, (bytes, bytearray)):
        raise BatchDecodeError("batch data must be bytes")
    if not data:
        raise BatchDecodeError("empty batch")
    payload = decompress(bytes(data[1:]), data[0], limit)
    blocks = tuple(_block(item, i) for i, item in enumerate(_list_items(_single_list(payload, "batch"), "batch")))
    if not blocks:
        raise BatchDecodeError("batch holds no blocks")
    for before, after in zip(blocks, blocks[1:]):
        if after.number != before.number + 1:
            raise BatchDecodeError(f"block {after.number} follows block {before.number}")
    return blocks


# -- strict, non-recursive RLP reading (the depth is fixed by the format) -----------------

def _item(buf: bytes, pos: int, what: str) -> tuple[bool, bytes, int]:
    """The item at ``pos``: (is_list, payload, end)."""
    try:
        _, kind, length, start = consume_length_prefix(buf, pos)
    except (rlp.DecodingError, IndexError) as exc:
        reason = exc.args[0] if isinstance(exc, rlp.DecodingError) and exc.args else "truncated length prefix"
        raise BatchDecodeError(f"{what}: bad RLP at byte {pos}: {reason}") from None
    end = start + length
    if end > len(buf):
        raise BatchDecodeError(f"{what}: RLP item at byte {pos} runs {end - len(buf)} bytes past the end")
    return kind is list, buf[start:end], end


def _single_list(buf: bytes, what: str) -> bytes:
    is_list, payload, end = _item(buf, 0, what) if buf else (False, b"", 0)
    if not buf or not is_list:
        raise BatchDecodeError(f"{what}: not an RLP list")
    if end != len(buf):
        raise BatchDecodeError(f"{what}: {len(buf) - end} bytes after the RLP list")
    return payload


def _list_items(payload: bytes, what: str) -> list[tuple[bool, bytes]]:
    items, pos = [], 0
    while pos < len(payload):
        is_list, item, pos = _item(payload, pos, what)
        items.append((is_list, item))
    return items


def _string(item: tuple[bool, bytes], what: str) -> bytes:
    is_list, payload = item
    if is_list:
        raise BatchDecodeError(f"{what}: expected a byte string, got a list")
    return payload


def _uint64(item: tuple[bool, bytes], what: str) -> int:
    raw = _string(item, what)
    if raw[:1] == b"\x00":
        raise BatchDecodeError(f"{what}: integer with leading zero bytes")
    if len(raw) > 8:
        raise BatchDecodeError(f"{what}: integer wider than 64 bits")
    return int.from_bytes(raw, "big")


def _block(item: tuple[bool, bytes], index: int) -> BatchBlock:
    what = f"block #{index} of the batch"
    is_list, payload = item
    if not is_list:
        raise BatchDecodeError(f"{what}: expected a list, got a byte string")
    fields = _list_items(payload, what)
    if len(fields) != BLOCK_FIELDS:
        raise BatchDecodeError(f"{what}: {len(fields)} fields, expected {BLOCK_FIELDS}")
    number = _uint64(fields[0], f"{what} number")
    what = f"block {number}"
    fee_recipient = _string(fields[2], f"{what} fee recipient")
    if len(fee_recipient) != ADDRESS_BYTES:
        raise BatchDecodeError(f"{what}: fee recipient of {len(fee_recipient)} bytes, expected {ADDRESS_BYTES}")
    extra_data = _string(fields[4], f"{what} extra data")
    if len(extra_data) > MAX_EXTRA_DATA_BYTES:
        raise BatchDecodeError(f"{what}: extra data of {len(extra_data)} bytes, at most {MAX_EXTRA_DATA_BYTES}")
    tx_list, txs_payload = fields[5]
    if not tx_list:
        raise BatchDecodeError(f"{what}: transactions must be a list")
    transactions = tuple(_string(tx, f"{what} transaction {i}")
                         for i, tx in enumerate(_list_items(txs_payload, f"{what} transactions")))
    for i, tx in enumerate(transactions):
        if not tx:
            raise BatchDecodeError(f"{what} transaction {i}: empty")
    return BatchBlock(
        number=number,
        timestamp=_uint64(fields[1], f"{what} timestamp"),
        fee_recipient=fee_recipient,
        gas_limit=_uint64(fields[3], f"{what} gas limit"),
        extra_data=extra_data,
        transactions=transactions,
    )
