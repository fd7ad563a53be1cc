"""Transaction senders, recovered once and cached on the transaction.

py-evm recovers a sender (``tx.sender``, a cached property) by building the unsigned
transaction as an rlp object, encoding it with pyrlp's generic machinery, wrapping the
signature in eth-keys objects and recovering through them: for a plain transfer that is
a sixth of its replay time.  ``prime`` does the same recovery directly: the signing
message encoded by hand (canonical RLP, as pyrlp writes it), keccak, and libsecp256k1's
recovery through coincurve, the library eth-keys itself calls; the result goes where
``tx.sender`` caches it.

Only EIP-1559 transactions with an empty access list and well-formed signature values
(1 <= r, s < n, y_parity 0 or 1) take this path, and only when recovery succeeds;
anything else is left to py-evm, so every error keeps py-evm's type and message.
``tests/test_senders.py`` compares the result with py-evm's on random transactions.
"""
from __future__ import annotations

from typing import Iterable

from coincurve import PublicKey
from eth_hash.auto import keccak

from . import rlp_encode

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def signing_message(tx) -> bytes | None:
    """What an EIP-1559 transaction's signature signs (0x02 || rlp(unsigned fields)), or
    None for a transaction this module leaves to py-evm."""
    if getattr(tx, "type_id", None) != 2 or tx.access_list:
        return None
    return b"\x02" + rlp_encode.list_of(
        rlp_encode.uint(tx.chain_id), rlp_encode.uint(tx.nonce), rlp_encode.uint(tx.max_priority_fee_per_gas),
        rlp_encode.uint(tx.max_fee_per_gas), rlp_encode.uint(tx.gas), rlp_encode.string(tx.to),
        rlp_encode.uint(tx.value), rlp_encode.string(tx.data), b"\xc0")


def recover(tx) -> bytes | None:
    """The sender's address, or None to let py-evm recover it (and raise its own errors)."""
    message = signing_message(tx)
    if message is None:
        return None
    r, s, y_parity = tx.r, tx.s, tx.y_parity
    if not (0 < r < SECP256K1_N and 0 < s < SECP256K1_N and y_parity in (0, 1)):
        return None
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([y_parity])
    try:
        public_key = PublicKey.from_signature_and_message(signature, keccak(message), hasher=None)
    except Exception:  # no key recovers: py-evm reports it
        return None
    return keccak(public_key.format(compressed=False)[1:])[12:]


def prime(transactions: Iterable) -> None:
    """Cache each transaction's sender where ``tx.sender`` (a cached property) keeps it."""
    for tx in transactions:
        if "sender" in tx.__dict__:
            continue
        sender = recover(tx)
        if sender is not None:
            tx.__dict__["sender"] = sender
