"""DatanetIndex: the suffix-array index of one published Datanet version.

Built at publish time from the version's accepted contributions, in contribution-id
order; persisted as one file (format in docs/attribution.md) that rebuilding from the
same contributions reproduces byte for byte.

Text: the contributions' dense token ids, each contribution followed by the separator
0. Dense id t (1..V) is 1 + the rank of the token's 32-bit hash among the version's
distinct hashes (``vocab``). The suffix array (pydivsufsort) orders all text positions.
Token ids and the suffix array are bit-packed: ``tok_width`` = bits of V, ``sa_width`` =
bits of n - 1. ``bucket[t]``, the first row whose suffix starts with token t, is not
stored: it is counted from the tokens when the index is loaded.
"""

from __future__ import annotations

import hashlib
import os
import struct
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from pydivsufsort import divsufsort

from . import backend
from .constants import (
    ATTRIBUTION_VERSION,
    INDEX_FORMAT,
    INDEX_MAGIC,
    MAX_CONTRIBUTION_BYTES,
    SHINGLE_SEED,
    SHINGLE_TOKENS,
)
from .neardup import SLOT_MUL, SLOT_XOR, near_duplicate_of
from .tokens import Tokenizer

HEADER = struct.Struct("<8sIIQQQQQBB6x")  # 64 bytes
CHECKSUM_BYTES = 32
U64_MAX = (1 << 64) - 1


def _padded(array: np.ndarray) -> bytes:
    raw = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
    return raw + b"\0" * (-len(raw) % 8)


def packed_words(n: int, width: int) -> int:
    """64-bit words of a packed array of n elements of ``width`` bits (one padding word)."""
    return (n * width + 63) // 64 + 1


class IndexFormatError(ValueError):
    """An index file that is not a valid attribution v1 index."""


class DatanetIndex:
    """One Datanet version's index. Build with ``build``, persist with ``save``/``load``."""

    def __init__(self, data: bytes, *, verify: bool = True, implementation: str = "native"):
        """Parse an index file image (``to_bytes``); ``verify`` checks its checksum."""
        if len(data) < HEADER.size + CHECKSUM_BYTES:
            raise IndexFormatError("index file too short")
        magic, fmt, algorithm, datanet_id, version, n, m, vocab_size, tok_width, sa_width = HEADER.unpack_from(data)
        if magic != INDEX_MAGIC or fmt != INDEX_FORMAT:
            raise IndexFormatError("not an attribution index file (magic or format)")
        if algorithm != ATTRIBUTION_VERSION:
            raise IndexFormatError(f"index is for attribution v{algorithm}, this is v{ATTRIBUTION_VERSION}")
        if verify and hashlib.blake2b(data[:-CHECKSUM_BYTES], digest_size=CHECKSUM_BYTES).digest() != bytes(
            data[-CHECKSUM_BYTES:]
        ):
            raise IndexFormatError("index checksum mismatch")
        if tok_width != max(1, vocab_size.bit_length()) or sa_width != max(1, (n - 1).bit_length()) or m > n:
            raise IndexFormatError("index header inconsistent")
        sections = [
            ("contribution_ids", np.uint64, m),
            ("contribution_starts", np.uint64, m),
            ("tok_words", np.uint64, packed_words(n, tok_width)),
            ("sa_words", np.uint64, packed_words(n, sa_width)),
            ("vocab", np.uint32, vocab_size),
            ("original_of", np.uint32, m),
        ]
        offset = HEADER.size
        arrays = {}
        for name, dtype, count in sections:
            size = np.dtype(dtype).itemsize * count
            if offset + size > len(data) - CHECKSUM_BYTES:
                raise IndexFormatError("index file truncated")
            arrays[name] = np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<"), count=count, offset=offset)
            offset += size + (-size % 8)
        if offset != len(data) - CHECKSUM_BYTES:
            raise IndexFormatError("index file has trailing bytes")
        self._data = data
        self.datanet_id: int = datanet_id
        self.version: int = version
        self.text_length: int = n  # tokens plus one separator per contribution
        self.tok_width: int = tok_width
        self.sa_width: int = sa_width
        self.contribution_ids: np.ndarray = arrays["contribution_ids"]
        self.contribution_starts: np.ndarray = arrays["contribution_starts"]
        self.tok_words: np.ndarray = arrays["tok_words"]
        self.sa_words: np.ndarray = arrays["sa_words"]
        self.vocab: np.ndarray = arrays["vocab"]
        self.original_of: np.ndarray = arrays["original_of"]
        self.bucket: np.ndarray = backend.get(implementation).bucket_starts(self.tok_words, tok_width, n, vocab_size)
        self._check_invariants()

    def _check_invariants(self) -> None:
        """Cheap structural checks that the native search relies on (not a full proof)."""
        n, m = self.text_length, len(self.contribution_ids)
        ok = bool(np.all(self.vocab[1:] > self.vocab[:-1]))
        ok = ok and bool(np.all(self.contribution_ids[1:] > self.contribution_ids[:-1]))
        starts = self.contribution_starts
        ok = ok and (m == 0 or (starts[0] == 0 and bool(np.all(starts[1:] > starts[:-1])) and starts[-1] < n))
        ok = ok and (m > 0 or n == 0) and int(self.bucket[1]) == m  # one separator per contribution
        original = self.original_of.astype(np.int64)
        ok = ok and bool(np.all(original <= np.arange(m))) and bool(np.all(original[original] == original))
        if not ok:
            raise IndexFormatError("index structure inconsistent")

    # -- building ---------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        datanet_id: int,
        version: int,
        contributions: Iterable[tuple[int, bytes]],
        *,
        implementation: str = "native",
        timings: dict[str, float] | None = None,
    ) -> DatanetIndex:
        """Index ``contributions`` ((contribution id, data) with strictly increasing ids)."""
        data = build_index_bytes(datanet_id, version, contributions, implementation=implementation, timings=timings)
        return cls(data, verify=False, implementation=implementation)

    # -- persistence ------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        return bytes(self._data)

    def save(self, path: str | os.PathLike) -> None:
        """Write the index file atomically (temporary file, fsync, rename)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(self._data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike, *, verify: bool = True, implementation: str = "native") -> DatanetIndex:
        return cls(Path(path).read_bytes(), verify=verify, implementation=implementation)

    # -- facts ------------------------------------------------------------------------

    @property
    def num_contributions(self) -> int:
        return len(self.contribution_ids)

    @property
    def num_tokens(self) -> int:
        """Tokens of all contributions (separators not counted)."""
        return self.text_length - self.num_contributions

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def size_bytes(self) -> int:
        return len(self._data)

    @property
    def checksum(self) -> bytes:
        return bytes(self._data[-CHECKSUM_BYTES:])

    def near_duplicates(self) -> list[tuple[int, int]]:
        """(contribution id, id of the original it duplicates) for each near-duplicate."""
        ids = self.contribution_ids
        return [(int(ids[k]), int(ids[j])) for k, j in enumerate(self.original_of) if j != k]

    def __repr__(self) -> str:
        return (
            f"DatanetIndex(datanet_id={self.datanet_id}, version={self.version}, "
            f"contributions={self.num_contributions}, tokens={self.num_tokens}, bytes={self.size_bytes})"
        )


def build_index_bytes(
    datanet_id: int,
    version: int,
    contributions: Iterable[tuple[int, bytes]],
    *,
    implementation: str = "native",
    timings: dict[str, float] | None = None,
) -> bytes:
    """The index file of one Datanet version (see DatanetIndex). ``timings``, if given,
    receives the seconds spent in each phase (for benchmarks)."""
    impl = backend.get(implementation)
    clock = _PhaseClock(timings)
    if not (0 <= datanet_id <= U64_MAX and 0 <= version <= U64_MAX):
        raise ValueError("datanet id and version must fit in 64 bits")
    tokenizer = Tokenizer(implementation)
    ids_per_contribution: list[np.ndarray] = []
    contribution_ids: list[int] = []
    for contribution_id, data in contributions:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError("contribution data must be bytes")
        if contribution_ids and contribution_id <= contribution_ids[-1] or not 0 <= contribution_id <= U64_MAX:
            raise ValueError("contribution ids must be strictly increasing and fit in 64 bits")
        if len(data) > MAX_CONTRIBUTION_BYTES:
            raise ValueError(f"contribution {contribution_id} is larger than {MAX_CONTRIBUTION_BYTES} bytes")
        contribution_ids.append(int(contribution_id))
        ids_per_contribution.append(tokenizer(bytes(data)).ids)
    del tokenizer
    clock.lap("tokenize")

    m = len(contribution_ids)
    lengths = np.array([len(a) for a in ids_per_contribution], dtype=np.int64)
    offsets = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    hashes = np.concatenate(ids_per_contribution) if m else np.zeros(0, dtype=np.uint32)
    del ids_per_contribution
    total = int(offsets[-1])
    n = total + m
    if n >= 1 << 40:
        raise ValueError("index too large")

    vocab, text = impl.dense_text(hashes, offsets)
    vocab_size = len(vocab)
    if vocab_size < 1 << 16:
        text = text.astype(np.uint16)  # halves the suffix-array construction's input
    starts = offsets[:-1] + np.arange(m, dtype=np.int64)  # contribution k starts after k separators
    clock.lap("vocabulary")
    sa = divsufsort(text) if n else np.zeros(0, dtype=np.int64)
    clock.lap("suffix_array")

    signatures = impl.minhash_signatures(
        hashes, offsets, np.array(SLOT_XOR, dtype=np.uint64), np.array(SLOT_MUL, dtype=np.uint64),
        SHINGLE_TOKENS, SHINGLE_SEED,
    )
    original_of = near_duplicate_of(signatures, lengths)
    del hashes
    clock.lap("near_duplicates")

    tok_width = max(1, vocab_size.bit_length())
    sa_width = max(1, (n - 1).bit_length())
    tok_words = impl.pack_bits(text, tok_width)
    del text
    sa_words = impl.pack_bits(sa, sa_width)
    del sa
    clock.lap("pack")

    header = HEADER.pack(
        INDEX_MAGIC, INDEX_FORMAT, ATTRIBUTION_VERSION, datanet_id, version, n, m, vocab_size, tok_width, sa_width
    )
    parts = [
        header,
        _padded(np.array(contribution_ids, dtype=np.uint64)),
        _padded(starts.astype(np.uint64)),
        _padded(np.asarray(tok_words, dtype=np.uint64)),
        _padded(np.asarray(sa_words, dtype=np.uint64)),
        _padded(vocab.astype(np.uint32)),
        _padded(original_of.astype(np.uint32)),
    ]
    checksum = hashlib.blake2b(digest_size=CHECKSUM_BYTES)
    for part in parts:
        checksum.update(part)
    parts.append(checksum.digest())
    data = b"".join(parts)
    clock.lap("serialize")
    return data


class _PhaseClock:
    def __init__(self, timings: dict[str, float] | None):
        self.timings = timings
        self.last = time.perf_counter()

    def lap(self, phase: str) -> None:
        if self.timings is not None:
            now = time.perf_counter()
            self.timings[phase] = self.timings.get(phase, 0.0) + now - self.last
            self.last = now
