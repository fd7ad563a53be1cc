"""Canonical RLP for the few fixed shapes encoded on every transaction (accounts, signing
messages), written out by hand: the bytes pyrlp writes, without its generic sedes
machinery.  ``tests/test_chain_caches.py`` compares them with pyrlp."""
from __future__ import annotations


def length_prefix(length: int, offset: int) -> bytes:
    """The prefix of a string (offset 0x80) or list (offset 0xc0) payload of ``length``."""
    if length < 56:
        return bytes([offset + length])
    size = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([offset + 55 + len(size)]) + size


def string(value: bytes) -> bytes:
    if len(value) == 1 and value[0] < 0x80:
        return value
    return length_prefix(len(value), 0x80) + value


def uint(value: int) -> bytes:
    if value == 0:
        return b"\x80"
    if value < 0x80:
        return bytes([value])
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return length_prefix(len(raw), 0x80) + raw


def list_of(*encoded_items: bytes) -> bytes:
    payload = b"".join(encoded_items)
    return length_prefix(len(payload), 0xC0) + payload


def account(nonce: int, balance: int, storage_root: bytes, code_hash: bytes) -> bytes:
    """rlp.encode(Account(nonce, balance, storage_root, code_hash))."""
    return list_of(uint(nonce), uint(balance), string(storage_root), string(code_hash))
