"""``eth_getProof`` (EIP-1186): Merkle proofs of an account and its storage slots.

The proofs are read straight from the state trie in the node's database, as geth
returns them: the RLP of every trie node on the path from the root towards the key,
root first.  Nodes shorter than 32 bytes are embedded in their parent and are not
listed on their own (the root always is).  A proof of a missing key ends at the
node where the path leaves the trie (a proof of absence).
"""
from __future__ import annotations

import re
from typing import Any

import rlp
from eth.constants import BLANK_ROOT_HASH, EMPTY_SHA3
from eth.rlp.accounts import Account
from eth_hash.auto import keccak
from trie import HexaryTrie

from .encoding import to_data, to_quantity
from .jsonrpc import InvalidParams, ServerError

_HEX = re.compile(r"[0-9a-fA-F]*")


def parse_storage_key(value: Any) -> tuple[int, int]:
    """geth's ``decodeHash``: 0x optional, odd length left-padded, at most 32 bytes; a bad
    key is a plain (-32000) error.  Returns (key, length in bytes as given)."""
    if not isinstance(value, str):
        raise InvalidParams(f"invalid storage key: expected a hex string, got {type(value).__name__}")
    digits = value[2:] if value[:2] in ("0x", "0X") else value
    if len(digits) % 2:
        digits = "0" + digits
    if len(digits) > 64:
        raise ServerError("unable to decode storage key: hex string too long, want at most 32 bytes")
    if not _HEX.fullmatch(digits):
        raise ServerError("unable to decode storage key: hex string invalid")
    return int(digits or "0", 16), len(digits) // 2


def trie_proof(db: Any, root: bytes, key: bytes) -> list[bytes]:
    """The encoded nodes proving ``key`` (present or absent) under ``root``."""
    if root == BLANK_ROOT_HASH:
        return []
    nodes = HexaryTrie(db, root).get_proof(key)
    out = []
    for i, node in enumerate(nodes):
        encoded = rlp.encode(node)
        if i == 0 or len(encoded) >= 32:  # embedded nodes travel inside their parent
            out.append(encoded)
    return out


def account_proof(db: Any, state_root: bytes, address: bytes, storage_keys: list[Any]) -> dict[str, Any]:
    keys = [parse_storage_key(k) for k in storage_keys]  # all of them before any state access
    account_key = keccak(address)
    encoded = HexaryTrie(db, state_root).get(account_key)
    account = rlp.decode(encoded, sedes=Account) if encoded else Account()
    storage_root = account.storage_root or BLANK_ROOT_HASH
    storage = HexaryTrie(db, storage_root) if storage_root != BLANK_ROOT_HASH else None
    storage_proofs = []
    for key, length in keys:
        slot = key.to_bytes(32, "big")
        # geth echoes a 32-byte key as given (as data); any other length as a quantity
        shown = to_data(slot) if length == 32 else to_quantity(key)
        if storage is None:
            storage_proofs.append({"key": shown, "value": "0x0", "proof": []})
            continue
        raw = storage.get(keccak(slot))
        value = rlp.decode(raw, sedes=rlp.sedes.big_endian_int) if raw else 0
        storage_proofs.append({
            "key": shown,
            "value": to_quantity(value),
            "proof": [to_data(n) for n in trie_proof(db, storage_root, keccak(slot))],
        })
    return {
        "address": to_data(address),
        "accountProof": [to_data(n) for n in trie_proof(db, state_root, account_key)],
        "balance": to_quantity(account.balance),
        "codeHash": to_data(account.code_hash or EMPTY_SHA3),
        "nonce": to_quantity(account.nonce),
        "storageHash": to_data(storage_root),
        "storageProof": storage_proofs,
    }
