"""EIP-4844 blob transactions as they arrive over RPC (the "network form").

``eth_sendRawTransaction`` of a blob transaction carries its sidecar:
``0x03 || rlp([tx_payload_body, blobs, commitments, proofs])``.  The sidecar is
checked as geth's blob pool checks it (one commitment and proof per versioned hash,
each hash the commitment's, the KZG proofs valid) and then dropped: blocks hold the
transaction alone (``0x03 || rlp(tx_payload_body)``), whose hash is the one returned.
"""
from __future__ import annotations

import functools
import hashlib
import os

import rlp

BLOB_TX_TYPE = 3
BYTES_PER_BLOB = 4096 * 32
VERSIONED_HASH_VERSION_KZG = b"\x01"


class BlobError(ValueError):
    """The sidecar does not match the transaction; ``str()`` is geth-like wording."""


@functools.lru_cache(maxsize=1)
def _trusted_setup():
    import ckzg
    import eth

    path = os.path.join(os.path.dirname(eth.__file__), "_utils", "kzg_trusted_setup.txt")
    return ckzg.load_trusted_setup(path, 0)


def use_in_py_evm() -> None:
    """py-evm's point-evaluation precompile (0x0a) reloads the KZG trusted setup on every
    call (~4 s): a 50,000-gas call could stall the sequencer.  Hand it the setup loaded once."""
    import eth.precompiles.point_evaluation as point_evaluation

    point_evaluation.load_trusted_setup = lambda _path, _precompute: _trusted_setup()


def kzg_to_versioned_hash(commitment: bytes) -> bytes:
    return VERSIONED_HASH_VERSION_KZG + hashlib.sha256(commitment).digest()[1:]


def split_network_form(raw: bytes) -> tuple[bytes, list[bytes], list[bytes], list[bytes]] | None:
    """(canonical transaction encoding, blobs, commitments, proofs) of a blob transaction
    with its sidecar; None when ``raw`` is a blob transaction without one."""
    try:
        payload = rlp.decode(raw[1:])
    except rlp.DecodingError as exc:
        raise BlobError(f"rlp: invalid transaction encoding: {exc}") from None
    if not isinstance(payload, list) or not payload:
        raise BlobError("rlp: invalid blob transaction encoding")
    if not isinstance(payload[0], list):
        return None  # [chain_id, nonce, ...]: the bare transaction
    if len(payload) != 4 or not all(isinstance(part, list) for part in payload[1:]):
        raise BlobError("rlp: invalid blob transaction: want [tx, blobs, commitments, proofs]")
    body, blobs, commitments, proofs = payload
    if not all(isinstance(x, bytes) for part in (blobs, commitments, proofs) for x in part):
        raise BlobError("rlp: invalid blob sidecar")
    return bytes([BLOB_TX_TYPE]) + rlp.encode(body), blobs, commitments, proofs


def verify_sidecar(versioned_hashes, blobs: list[bytes], commitments: list[bytes], proofs: list[bytes]) -> None:
    if not versioned_hashes:
        raise BlobError("blobless blob transaction")
    if not (len(blobs) == len(commitments) == len(proofs) == len(versioned_hashes)):
        raise BlobError(
            f"invalid number of {len(blobs)} blobs compared to {len(versioned_hashes)} blob hashes"
            if len(blobs) != len(versioned_hashes) else "invalid blob sidecar: mismatched commitments or proofs"
        )
    for i, (blob, commitment, proof) in enumerate(zip(blobs, commitments, proofs)):
        if len(blob) != BYTES_PER_BLOB or len(commitment) != 48 or len(proof) != 48:
            raise BlobError(f"invalid blob {i}: wrong size")
    for i, (versioned_hash, commitment) in enumerate(zip(versioned_hashes, commitments)):
        if versioned_hash[:1] != VERSIONED_HASH_VERSION_KZG:
            raise BlobError(f"blob {i}: unsupported versioned hash version {versioned_hash[0]}")
        if kzg_to_versioned_hash(commitment) != versioned_hash:
            raise BlobError(f"blob {i}: computed hash 0x{kzg_to_versioned_hash(commitment).hex()} mismatches "
                            f"transaction one 0x{versioned_hash.hex()}")
    import ckzg

    try:
        ok = ckzg.verify_blob_kzg_proof_batch(b"".join(blobs), b"".join(commitments), b"".join(proofs),
                                              _trusted_setup())
    except RuntimeError as exc:  # a blob or point that is not canonical
        raise BlobError(f"invalid blob proof: {exc}") from None
    if not ok:
        raise BlobError("invalid blob proof")
