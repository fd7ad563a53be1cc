"""Transaction pool rules, against a real chain in LevelDB and real signed transactions."""
from __future__ import annotations

from pathlib import Path

import pytest
from eth_account import Account

from openledger_node.chain.chain import Blockchain
from openledger_node.chain.genesis import load_genesis
from openledger_node.devkeys import DEV_ACCOUNTS
from openledger_node.sequencer import next_base_fee
from openledger_node.txpool import PoolLimits, TxPool, TxPoolError

from conftest import DEVNET_GENESIS

CHAIN_ID = 1612
RECIPIENT = "0x000000000000000000000000000000000000dEaD"


@pytest.fixture
def chain(tmp_path: Path):
    blockchain = Blockchain.init(tmp_path / "data", load_genesis(DEVNET_GENESIS))
    try:
        yield blockchain
    finally:
        blockchain.close()


def make_pool(chain: Blockchain, limits: PoolLimits = PoolLimits()) -> TxPool:
    def account(address: bytes) -> tuple[int, int]:
        state = chain.state_at(chain.head)
        return state.get_nonce(address), state.get_balance(address)

    return TxPool(
        chain_id=CHAIN_ID,
        decode=chain.decode_transaction,
        account=account,
        base_fee=lambda: next_base_fee(chain),
        block_gas_limit=lambda: chain.head.gas_limit,
        limits=limits,
    )


def signed(key: str, nonce: int, *, tip: int = 1, max_fee: int = 3 * 10**9, value: int = 1, gas: int = 21_000,
           chain_id: int = CHAIN_ID, data: bytes = b"", legacy_price: int | None = None) -> bytes:
    tx = {"chainId": chain_id, "nonce": nonce, "to": RECIPIENT, "value": value, "gas": gas, "data": data}
    if legacy_price is not None:
        tx["gasPrice"] = legacy_price
    else:
        tx.update(maxFeePerGas=max_fee, maxPriorityFeePerGas=tip)
    return bytes(Account.sign_transaction(tx, key).raw_transaction)


KEY0, KEY1, KEY2 = (key for _, key in DEV_ACCOUNTS[:3])


def test_future_nonce_waits_in_queue_until_the_gap_fills(chain):
    pool = make_pool(chain)
    pool.add_raw(signed(KEY0, 1))
    assert list(pool.candidates(next_base_fee(chain))) == []
    pending, queued = pool.content()
    assert not pending and len(next(iter(queued.values()))) == 1
    pool.add_raw(signed(KEY0, 0))
    assert [tx.nonce for tx in pool.candidates(next_base_fee(chain))] == [0, 1]


def test_candidates_are_ordered_by_tip_and_each_sender_by_nonce(chain):
    pool = make_pool(chain)
    pool.add_raw(signed(KEY0, 0, tip=5))
    pool.add_raw(signed(KEY0, 1, tip=100))
    pool.add_raw(signed(KEY1, 0, tip=50))
    pool.add_raw(signed(KEY2, 0, tip=10))
    order = [(tx.sender, tx.nonce) for tx in pool.candidates(next_base_fee(chain))]
    sender0 = Account.from_key(KEY0).address
    sender1 = Account.from_key(KEY1).address
    sender2 = Account.from_key(KEY2).address
    as_hex = [("0x" + s.hex(), n) for s, n in order]
    assert as_hex == [(sender1.lower(), 0), (sender2.lower(), 0), (sender0.lower(), 0), (sender0.lower(), 1)]


def test_replacement_needs_a_ten_percent_fee_bump(chain):
    pool = make_pool(chain)
    pool.add_raw(signed(KEY0, 0, tip=100, max_fee=3_000_000_000))
    with pytest.raises(TxPoolError, match="replacement transaction underpriced"):
        pool.add_raw(signed(KEY0, 0, tip=109, max_fee=3_299_999_999, value=2))
    replacement = pool.add_raw(signed(KEY0, 0, tip=110, max_fee=3_300_000_000, value=2))
    assert len(pool) == 1 and pool.get(replacement.hash) is not None


def test_full_pool_refuses_with_a_clear_error(chain):
    pool = make_pool(chain, PoolLimits(max_transactions=2))
    pool.add_raw(signed(KEY0, 0))
    pool.add_raw(signed(KEY1, 0))
    with pytest.raises(TxPoolError, match="txpool is full"):
        pool.add_raw(signed(KEY2, 0))


def test_a_sender_cannot_hold_more_than_its_share(chain):
    pool = make_pool(chain, PoolLimits(max_per_sender=2))
    pool.add_raw(signed(KEY0, 0))
    pool.add_raw(signed(KEY0, 1))
    with pytest.raises(TxPoolError, match="too many transactions from this sender"):
        pool.add_raw(signed(KEY0, 2))


@pytest.mark.parametrize(
    "raw, message",
    [
        (lambda: signed(KEY0, 0, chain_id=1), "invalid chain id"),
        (lambda: signed(KEY0, 0, gas=20_000), "intrinsic gas too low"),
        (lambda: signed(KEY0, 0, max_fee=1), "max fee per gas less than block base fee"),
        (lambda: signed(KEY0, 0, tip=10, max_fee=5), "max priority fee per gas higher than max fee per gas"),
        (lambda: signed(KEY0, 0, value=10**30), "insufficient funds for gas \\* price \\+ value"),
        (lambda: signed(KEY0, 0, gas=31_000_000), "exceeds block gas limit"),
        (lambda: signed(KEY0, 0, gas=40_000, data=b"\x01" * 1000), "floor data gas"),
        (lambda: b"\x02\xc0", "invalid transaction encoding"),
        (lambda: b"\x03" + b"\x00" * 10, "invalid transaction encoding"),
        (lambda: b"\x7f\x00", "transaction type not supported"),
        (lambda: b"\x01" * (129 * 1024), "oversized data"),
    ],
)
def test_admission_checks_refuse_bad_transactions(chain, raw, message):
    pool = make_pool(chain)
    with pytest.raises(TxPoolError, match=message):
        pool.add_raw(raw())
    assert len(pool) == 0


def test_unprotected_legacy_transactions_are_refused(chain):
    pool = make_pool(chain)
    tx = {"nonce": 0, "to": RECIPIENT, "value": 1, "gas": 21_000, "gasPrice": 3 * 10**9}
    raw = bytes(Account.sign_transaction(tx, KEY0).raw_transaction)
    with pytest.raises(TxPoolError, match="replay-protected"):
        pool.add_raw(raw)


def test_duplicate_is_already_known(chain):
    pool = make_pool(chain)
    raw = signed(KEY0, 0)
    pool.add_raw(raw)
    with pytest.raises(TxPoolError, match="already known"):
        pool.add_raw(raw)


def test_sealing_removes_included_transactions_and_stale_nonces(chain):
    pool = make_pool(chain)
    for nonce in range(3):
        pool.add_raw(signed(KEY0, nonce))
    pool.add_raw(signed(KEY1, 0, legacy_price=3 * 10**9))
    sealed = chain.build_block(pool.candidates(next_base_fee(chain)), timestamp=chain.head.timestamp + 1,
                               coinbase=b"\x00" * 20)
    assert len(sealed.block.transactions) == 4
    assert pool.remove_stale({tx.sender for tx in sealed.block.transactions}) == 4
    assert len(pool) == 0
    with pytest.raises(TxPoolError, match="nonce too low"):
        pool.add_raw(signed(KEY0, 2, tip=7))


def test_a_sender_whose_transaction_fails_in_the_block_is_skipped_for_the_rest(chain):
    """The pool admits each tx against the head state; if an earlier tx of the same
    sender drains the balance, the builder rejects the later one and skips the sender."""
    pool = make_pool(chain)
    balance = chain.state_at(chain.head).get_balance(bytes.fromhex(DEV_ACCOUNTS[0][0][2:]))
    pool.add_raw(signed(KEY0, 0, value=balance - 21_000 * 3 * 10**9))  # spends everything
    pool.add_raw(signed(KEY0, 1))
    pool.add_raw(signed(KEY0, 2))
    sealed = chain.build_block(pool.candidates(next_base_fee(chain)), timestamp=chain.head.timestamp + 1,
                               coinbase=b"\x00" * 20)
    assert [tx.nonce for tx in sealed.block.transactions] == [0]
    assert [tx.nonce for tx, _ in sealed.rejected] == [1]


def test_high_s_signatures_are_refused_as_geth_does(chain):
    """EIP-2: s must be in the lower half of the curve order, for every transaction type."""
    import rlp

    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    raw = signed(KEY0, 0)
    fields = rlp.decode(raw[1:])
    fields[-3] = b"\x01" if fields[-3] in (b"", b"\x00") else b""  # flip y parity
    fields[-1] = (n - int.from_bytes(fields[-1], "big")).to_bytes(32, "big")  # s -> n - s
    malleated = raw[:1] + rlp.encode(fields)
    pool = make_pool(chain)
    with pytest.raises(TxPoolError, match="invalid transaction v, r, s values"):
        pool.add_raw(malleated)


# -- EIP-4844 blob transactions ----------------------------------------------------------


def _blob(seed: int) -> bytes:
    # 4096 field elements, each below the BLS modulus (first byte 0)
    return b"".join(b"\x00" + bytes([seed, i % 256]) * 15 + b"\x01" for i in range(4096))


def blob_tx(key: str, nonce: int, blobs: list[bytes], *, blob_fee: int = 10, tamper=None) -> tuple[bytes, bytes]:
    """(network form with the sidecar, the bare transaction) of a signed blob transaction."""
    import ckzg
    import rlp

    from openledger_node.blobs import _trusted_setup, kzg_to_versioned_hash

    setup = _trusted_setup()
    commitments = [bytes(ckzg.blob_to_kzg_commitment(b, setup)) for b in blobs]
    proofs = [bytes(ckzg.compute_blob_kzg_proof(b, c, setup)) for b, c in zip(blobs, commitments)]
    tx = {"type": 3, "chainId": CHAIN_ID, "nonce": nonce, "to": RECIPIENT, "value": 1, "gas": 21_000,
          "maxFeePerGas": 3 * 10**9, "maxPriorityFeePerGas": 1, "maxFeePerBlobGas": blob_fee,
          "blobVersionedHashes": [kzg_to_versioned_hash(c) for c in commitments]}
    bare = bytes(Account.sign_transaction(tx, key).raw_transaction)
    sidecar = [list(blobs), commitments, proofs]
    if tamper is not None:
        tamper(sidecar)
    return b"\x03" + rlp.encode([rlp.decode(bare[1:]), *sidecar]), bare


def test_blob_transaction_with_its_sidecar_is_admitted_and_sealed(chain):
    from eth_hash.auto import keccak

    pool = make_pool(chain)
    raw, bare = blob_tx(KEY0, 0, [_blob(1), _blob(2)])
    tx = pool.add_raw(raw)
    assert tx.hash == keccak(bare) and pool.get(tx.hash) is not None  # the hash of the bare transaction
    sealed = chain.build_block(pool.candidates(next_base_fee(chain)), timestamp=chain.head.timestamp + 1,
                               coinbase=b"\x00" * 20)
    assert [t.hash for t in sealed.block.transactions] == [tx.hash]
    assert sealed.block.header.blob_gas_used == 2 * 2**17
    assert chain.block(chain.head).transactions[0].encode() == bare  # blocks hold the bare transaction


def test_a_block_holds_at_most_nine_blobs(chain):
    pool = make_pool(chain)
    blob = _blob(7)
    for nonce in range(4):  # 3 blobs each: 12 in all
        pool.add_raw(blob_tx(KEY0, nonce, [blob, blob, blob])[0])
    first = chain.build_block(pool.candidates(next_base_fee(chain)), timestamp=chain.head.timestamp + 1,
                              coinbase=b"\x00" * 20)
    assert len(first.block.transactions) == 3 and first.block.header.blob_gas_used == 9 * 2**17
    pool.remove_stale()
    second = chain.build_block(pool.candidates(next_base_fee(chain)), timestamp=chain.head.timestamp + 1,
                               coinbase=b"\x00" * 20)
    assert len(second.block.transactions) == 1 and second.block.header.blob_gas_used == 3 * 2**17


def _swap_blob(sidecar) -> None:
    sidecar[0][0] = _blob(9)


def _drop_proof(sidecar) -> None:
    sidecar[2].pop()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: blob_tx(KEY0, 0, [_blob(1)])[1], "missing sidecar in blob transaction"),
        (lambda: blob_tx(KEY0, 0, [_blob(1)], tamper=_swap_blob)[0], "invalid blob proof"),
        (lambda: blob_tx(KEY0, 0, [_blob(1), _blob(2)], tamper=_drop_proof)[0], "mismatched commitments or proofs"),
        (lambda: blob_tx(KEY0, 0, [_blob(1)], blob_fee=10**40)[0], "insufficient funds"),
    ],
    ids=["no-sidecar", "wrong-blob", "missing-proof", "cannot-pay-blob-gas"],
)
def test_blob_transactions_with_a_bad_sidecar_are_refused(chain, make, message):
    pool = make_pool(chain)
    with pytest.raises(TxPoolError, match=message):
        pool.add_raw(make())
    assert len(pool) == 0
