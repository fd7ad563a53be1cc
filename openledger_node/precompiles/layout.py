"""Storage layout helpers shared by the precompiles (consensus: changing a slot changes
the state root).  A record lives at ``keccak(tag ‖ key words)`` and the slots after
it; strings are stored as their byte length at the base slot and 32-byte chunks at
base + 1 + i."""
from __future__ import annotations

from eth_utils import keccak

from .base import Storage

WORD = 1 << 256


def slot(tag: bytes, *keys: int | bytes) -> int:
    parts = [tag]
    for key in keys:
        parts.append(key.rjust(32, b"\0") if isinstance(key, bytes) else key.to_bytes(32, "big"))
    return int.from_bytes(keccak(b"".join(parts)), "big")


def at(base: int, offset: int) -> int:
    return (base + offset) % WORD


def pack(*fields: tuple[int, int]) -> int:
    """Pack (value, bits) fields, the first in the lowest bits."""
    out, shift = 0, 0
    for value, bits in fields:
        if not 0 <= value < (1 << bits):
            raise ValueError(f"{value} does not fit in {bits} bits")
        out |= value << shift
        shift += bits
    if shift > 256:
        raise ValueError("fields wider than a word")
    return out


def unpack(word: int, *bits: int) -> tuple[int, ...]:
    out = []
    for width in bits:
        out.append(word & ((1 << width) - 1))
        word >>= width
    return tuple(out)


def write_bytes(storage: Storage, base: int, data: bytes) -> None:
    storage.set(base, len(data))
    for i in range(0, len(data), 32):
        storage.set(at(base, 1 + i // 32), int.from_bytes(data[i : i + 32].ljust(32, b"\0"), "big"))


def read_bytes(storage: Storage, base: int) -> bytes:
    length = storage.get(base)
    chunks = [storage.get(at(base, 1 + i)).to_bytes(32, "big") for i in range((length + 31) // 32)]
    return b"".join(chunks)[:length]


def address_word(address: bytes) -> int:
    return int.from_bytes(address, "big")


def word_address(word: int) -> bytes:
    return (word & ((1 << 160) - 1)).to_bytes(20, "big")
