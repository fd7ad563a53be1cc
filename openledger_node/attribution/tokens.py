"""Tokenization of attribution v1: the same bytes give the same token ids everywhere.

A token is a maximal run of ASCII letters and digits (after ASCII lower-casing), or one
non-ASCII UTF-8 character (a byte >= 0x80 and the continuation bytes 0x80-0xBF after it).
Everything else (ASCII punctuation, spaces, control bytes) separates tokens and is dropped.
The rule is a pure function of the bytes: it needs no Unicode tables and is total on
any byte string (invalid UTF-8 still tokenizes; contributions are checked to be UTF-8).
A token's id is BLAKE2b(token, digest_size=4, person=b"olattr-v1") read big-endian.

TOKEN_PATTERN is the rule; the Cython tokenizer (``attribution_native._core.TokenTable``)
implements it without a regular-expression engine, and tests check the two agree.
"""

from __future__ import annotations

import hashlib
import re
from typing import NamedTuple

import numpy as np

from . import backend
from .constants import MAX_CONTRIBUTION_BYTES, TOKEN_HASH_PERSON

TOKEN_PATTERN = re.compile(rb"[0-9a-z]+|[\x80-\xff][\x80-\xbf]*")


def token_hash(token: bytes) -> int:
    """The 32-bit id of one token (already lower-cased)."""
    digest = hashlib.blake2b(token, digest_size=4, person=TOKEN_HASH_PERSON).digest()
    return int.from_bytes(digest, "big")


class TokenHashMemo(dict):
    """token bytes -> id, computed on first use; a cache only (never iterated)."""

    def __missing__(self, token: bytes) -> int:
        value = self[token] = token_hash(token)
        return value


def token_ids(data: bytes, memo: TokenHashMemo | None = None) -> np.ndarray:
    """Token ids of ``data`` as a uint32 array, by the regular expression (the reference)."""
    tokens = TOKEN_PATTERN.findall(data.lower())
    lookup = (memo if memo is not None else TokenHashMemo()).__getitem__
    return np.fromiter(map(lookup, tokens), dtype=np.uint32, count=len(tokens))


class Tokens(NamedTuple):
    """Token ids with each token's byte range ``[starts[i], ends[i])`` in the text."""

    ids: np.ndarray
    starts: np.ndarray
    ends: np.ndarray


def tokenize_reference(data: bytes, memo: TokenHashMemo | None = None) -> Tokens:
    """Tokens of ``data`` by the regular expression."""
    lookup = (memo if memo is not None else TokenHashMemo()).__getitem__
    matches = list(TOKEN_PATTERN.finditer(data.lower()))
    count = len(matches)
    return Tokens(
        np.fromiter((lookup(m.group()) for m in matches), dtype=np.uint32, count=count),
        np.fromiter((m.start() for m in matches), dtype=np.int64, count=count),
        np.fromiter((m.end() for m in matches), dtype=np.int64, count=count),
    )


class Tokenizer:
    """Tokenizes texts, remembering the ids of the tokens it has seen (a cache only): with
    the Cython tokenizer (``attribution_native._core.TokenTable``, ``"native"``) or the
    regular expression (``"reference"``)."""

    def __init__(self, implementation: str = "native"):
        if implementation == "reference":
            self._memo = TokenHashMemo()
            self._table = None
        else:
            self._table = backend.get(implementation).TokenTable(token_hash)

    def __call__(self, data: bytes) -> Tokens:
        if self._table is None:
            return tokenize_reference(data, self._memo)
        return Tokens(*self._table.tokenize(data))

    def __len__(self) -> int:
        return len(self._memo) if self._table is None else len(self._table)


# Tokenizers of outputs, kept across calls, renewed when their cache grows too large.
_OUTPUT_TOKENIZERS: dict[str, Tokenizer] = {}
_OUTPUT_CACHE_LIMIT = 1 << 20


def tokenize(data: bytes, *, implementation: str = "native") -> Tokens:
    """Token ids and byte offsets of ``data`` (an inference output)."""
    tokenizer = _OUTPUT_TOKENIZERS.get(implementation)
    if tokenizer is None or len(tokenizer) > _OUTPUT_CACHE_LIMIT:
        tokenizer = _OUTPUT_TOKENIZERS[implementation] = Tokenizer(implementation)
    return tokenizer(data)


class InvalidContribution(ValueError):
    """A contribution's data that cannot be indexed; ``reason`` says why."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def validate_contribution(data: bytes) -> None:
    """Raise InvalidContribution unless ``data`` is non-empty UTF-8 text, at most
    MAX_CONTRIBUTION_BYTES long, holding at least one token."""
    if len(data) == 0:
        raise InvalidContribution("empty", "contribution data is empty")
    if len(data) > MAX_CONTRIBUTION_BYTES:
        raise InvalidContribution(
            "too_large", f"contribution data is {len(data)} bytes, more than {MAX_CONTRIBUTION_BYTES}"
        )
    try:
        data.decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise InvalidContribution("not_utf8", f"contribution data is not UTF-8 (byte {exc.start})") from None
    if TOKEN_PATTERN.search(data.lower()) is None:
        raise InvalidContribution("no_tokens", "contribution data holds no word or character to attribute")
