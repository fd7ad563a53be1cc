"""Importing a chain file: RLP blocks one after another, as ``geth export`` writes them.

Each block goes through ``Blockchain.import_block``, the same validation and
execution as any block the node imports (header rules, transactions, receipts,
state root, uncles, withdrawals, requests), except for the proof-of-work seal,
which is not checked: test chains such as the execution-apis suite's carry fake
pre-merge seals (geth's own ``import`` of such a file uses a faker engine too).
"""
from __future__ import annotations

import ast
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import rlp
from eth.abc import BlockAPI
from eth_utils import ValidationError
from rlp.codec import consume_length_prefix

from .chain import Blockchain

# Positions of the number and timestamp in every header's RLP list (all forks).
_NUMBER, _TIMESTAMP = 8, 11


class ImportError_(Exception):
    """A block of the file was refused; ``str()`` is "block N: <reason>"."""

    def __init__(self, number: int | None, reason: str, imported: int) -> None:
        self.number = number
        self.reason = reason
        self.imported = imported  # blocks imported before this one
        where = f"block {number}" if number is not None else f"item {imported + 1}"
        super().__init__(f"{where}: {reason}")


@dataclass
class ImportSummary:
    imported: int = 0  # blocks executed and stored
    skipped: int = 0  # blocks already in the chain (same hash)
    transactions: int = 0
    gas: int = 0
    seconds: float = 0.0
    head_number: int = 0
    head_hash: bytes = b""


def split_blocks(data: bytes) -> Iterator[bytes]:
    """Each top-level RLP item of ``data`` (raises ValueError on a truncated or bad prefix)."""
    pos = 0
    while pos < len(data):
        try:
            _, kind, length, start = consume_length_prefix(data, pos)
        except (rlp.DecodingError, IndexError) as exc:
            raise ValueError(f"bad RLP at byte {pos}: {exc}") from None
        end = start + length
        if kind is not list:
            raise ValueError(f"bad RLP at byte {pos}: a block must be an RLP list")
        if end > len(data):
            raise ValueError(f"truncated RLP at byte {pos}: {end - len(data)} bytes missing")
        yield data[pos:end]
        pos = end


def _int(raw: object, what: str) -> int:
    if not isinstance(raw, bytes) or (raw[:1] == b"\x00"):
        raise ValueError(f"header {what} is not an RLP integer")
    return int.from_bytes(raw, "big")


def decode_block(blockchain: Blockchain, encoded: bytes) -> BlockAPI:
    """Decode one block with the block class of the fork its number and timestamp select."""
    try:
        fields = rlp.decode(encoded)
    except rlp.DecodingError as exc:
        raise ValueError(f"undecodable RLP: {exc}") from None
    if not isinstance(fields, list) or not fields or not isinstance(fields[0], list) or len(fields[0]) <= _TIMESTAMP:
        raise ValueError("not a block: expected [header, transactions, uncles, ...]")
    header = fields[0]
    number, timestamp = _int(header[_NUMBER], "number"), _int(header[_TIMESTAMP], "timestamp")
    block_class = blockchain.block_class_for(number, timestamp)
    try:
        return rlp.decode(encoded, sedes=block_class)
    except (rlp.DeserializationError, rlp.DecodingError, ValueError) as exc:
        raise ValueError(f"not a valid {block_class.__name__.removeprefix('OpenLedger')} block: {exc}") from None


def _block_number_hint(encoded: bytes) -> int | None:
    try:
        return _int(rlp.decode(encoded)[0][_NUMBER], "number")
    except Exception:
        return None


def import_chain(
    blockchain: Blockchain,
    data: bytes,
    *,
    check_seal: bool = False,
    progress: Callable[[ImportSummary, BlockAPI], None] | None = None,
) -> ImportSummary:
    """Import every block of ``data`` in order; stop at the first bad one with ImportError_.

    Blocks already in the chain (same hash at the same height) are skipped, so importing
    the same file twice is harmless.  Each block commits atomically on its own: a refused
    block leaves the chain at its parent.
    """
    summary = ImportSummary()
    started = time.perf_counter()
    try:
        items = list(split_blocks(data))
    except ValueError as exc:
        # Import what precedes the damage? geth refuses the file's tail only; we refuse up front
        # so that a truncated download is noticed before anything changes.
        raise ImportError_(None, str(exc), 0) from None
    for encoded in items:
        number = _block_number_hint(encoded)
        try:
            block = decode_block(blockchain, encoded)
        except ValueError as exc:
            raise ImportError_(number, str(exc), summary.imported) from None
        number = block.number
        existing = blockchain.header_by_number(number)
        if existing is not None and existing.hash == block.hash:
            summary.skipped += 1
            continue
        if block.header.parent_hash != blockchain.head.hash:
            parent = blockchain.header_by_hash(block.header.parent_hash)
            if parent is None:
                raise ImportError_(number, f"unknown parent 0x{block.header.parent_hash.hex()}", summary.imported)
        try:
            blockchain.import_block(block, check_seal=check_seal)
        except ValidationError as exc:
            raise ImportError_(number, _one_line(str(exc)), summary.imported) from None
        except (ValueError, KeyError, rlp.DecodingError, rlp.DeserializationError) as exc:
            # Anything else py-evm raises on malformed content (a bad signature, a missing node).
            raise ImportError_(number, _one_line(f"{type(exc).__name__}: {exc}"), summary.imported) from None
        summary.imported += 1
        summary.transactions += len(block.transactions)
        summary.gas += block.header.gas_used
        if progress is not None:
            progress(summary, block)
    head = blockchain.head
    summary.head_number, summary.head_hash = head.block_number, head.hash
    summary.seconds = time.perf_counter() - started
    return summary


def import_file(blockchain: Blockchain, path: Path | str, **kwargs) -> ImportSummary:
    return import_chain(blockchain, Path(path).read_bytes(), **kwargs)


_BYTES_REPR = re.compile(r"b'(?:[^'\\]|\\.)*'" + r'|b"(?:[^"\\]|\\.)*"')


def _hex_bytes(match: re.Match) -> str:
    try:
        return "0x" + ast.literal_eval(match.group()).hex()
    except (ValueError, SyntaxError):
        return match.group()


def _one_line(message: str) -> str:
    """py-evm's multi-line messages on one line, with byte strings as hex."""
    message = _BYTES_REPR.sub(_hex_bytes, message)
    lines = [" ".join(line.split()) for line in message.splitlines() if line.strip()]
    text = " ".join(line if line.endswith((":", ";")) else line + ";" for line in lines).rstrip(";")
    return text.replace(":;", ":") or "invalid block"
