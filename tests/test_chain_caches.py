"""The node's shortcuts around py-evm's state and transactions give py-evm's answers.

* ``chain.vm._AccountDB`` reads accounts of recent state roots from a flat dict instead of
  the account trie, and applies a block's account and storage changes to their tries at
  once.  Random account and storage changes over many roots (with checkpoints kept and
  reverted, storage wipes, diverging states from one root, old roots read again and roots
  changed under an open AccountDB) must read exactly what stock py-evm's AccountDB reads,
  and give the same roots.
* ``chain.senders.prime`` recovers EIP-1559 senders without py-evm's objects; on random
  transactions (every type, access lists, bad signatures) the sender it caches is the one
  py-evm recovers, and whatever it leaves alone is left to py-evm.
"""
from __future__ import annotations

import random

import pytest
from eth.constants import BLANK_ROOT_HASH
from eth.db.account import AccountDB
from eth.db.atomic import AtomicDB
from eth_account import Account
from eth_utils import to_checksum_address

from openledger_node.chain import senders
from openledger_node.chain.vm import _FLAT_ACCOUNTS, _FLAT_STORAGE, VM_BY_FORK, _AccountDB, _FlatRoots

ADDRESSES = [bytes([i]) * 20 for i in range(1, 41)]


def view(accounts: AccountDB) -> dict[bytes, tuple]:
    return {a: (accounts.account_exists(a), accounts.get_balance(a), accounts.get_nonce(a), accounts.get_code_hash(a),
                accounts._get_storage_root(a), tuple(accounts.get_storage(a, slot) for slot in range(4)))
            for a in ADDRESSES}


def stock_view(db, root: bytes) -> dict[bytes, tuple]:
    return view(AccountDB(db, root))


def node_view(db, root: bytes) -> dict[bytes, tuple]:
    return view(_AccountDB(db, root))


def random_changes(accounts: AccountDB, rng: random.Random) -> None:
    """Random writes and reads, some inside checkpoints that are then kept or reverted (a
    revert past a storage wipe too), and storage roots made in between."""
    checkpoints = []
    wiped: set[bytes] = set()  # py-evm reverts across one storage wipe per account at most
    for _ in range(rng.randrange(1, 40)):
        if rng.random() < 0.1:
            checkpoints.append(accounts.record())
        if checkpoints and rng.random() < 0.08:
            checkpoint = checkpoints.pop()
            (accounts.discard if rng.random() < 0.5 else accounts.commit)(checkpoint)
        if rng.random() < 0.03 and not checkpoints:
            accounts.make_state_root()
        address = rng.choice(ADDRESSES)
        action = rng.random()
        if action < 0.4:
            accounts.set_balance(address, rng.choice([0, 1, rng.getrandbits(80)]))
        elif action < 0.6:
            accounts.increment_nonce(address)
        elif action < 0.75:
            if not checkpoints:  # as in the EVM: accounts go at a transaction's end, outside any call
                accounts.delete_account(address)
            elif address not in wiped:  # a creation's storage wipe inside a call, maybe reverted
                wiped.add(address)
                accounts.delete_storage(address)
        elif action < 0.85:
            accounts.set_code(address, rng.randbytes(rng.randrange(1, 40)))
        elif action < 0.95:
            accounts.set_storage(address, rng.randrange(4), rng.randrange(3))
        else:
            accounts.touch_account(address)
        if rng.random() < 0.3:  # reads between writes go through the flat layer too
            accounts.get_balance(rng.choice(ADDRESSES))
            accounts.get_storage(rng.choice(ADDRESSES), rng.randrange(4))
    while checkpoints:
        checkpoint = checkpoints.pop()
        (accounts.discard if rng.random() < 0.5 else accounts.commit)(checkpoint)


def test_flat_accounts_read_what_the_trie_holds() -> None:
    rng = random.Random("flat-accounts")
    db = AtomicDB()
    roots = [BLANK_ROOT_HASH]
    for step in range(60):
        parent = rng.choice(roots[-3:])  # mostly the newest root, sometimes a sibling of it
        node = _AccountDB(db, parent)
        stock = AccountDB(db, parent)
        node_view_before = {a: node.get_balance(a) for a in ADDRESSES[:10]}  # fill the flat dict
        seed = rng.random()
        random_changes(node, random.Random(seed))
        random_changes(stock, random.Random(seed))
        node.persist()
        stock.persist()
        assert node.state_root == stock.state_root, step
        assert node_view_before == {a: AccountDB(db, parent).get_balance(a) for a in ADDRESSES[:10]}
        roots.append(node.state_root)
        for root in {roots[-1], parent, rng.choice(roots)}:  # new, parent and an old root
            assert node_view(db, root) == stock_view(db, root), (step, root.hex())


def test_two_states_from_one_root_do_not_see_each_other() -> None:
    db = AtomicDB()
    base = _AccountDB(db, BLANK_ROOT_HASH)
    for i, address in enumerate(ADDRESSES[:5]):
        base.set_balance(address, 100 + i)
    base.persist()
    root = base.state_root
    left, right = _AccountDB(db, root), _AccountDB(db, root)
    assert left.get_balance(ADDRESSES[0]) == right.get_balance(ADDRESSES[0]) == 100
    left.set_balance(ADDRESSES[0], 1)
    left.delete_account(ADDRESSES[1])
    left.persist()
    right.set_balance(ADDRESSES[0], 2)
    right.persist()
    assert _AccountDB(db, left.state_root).get_balance(ADDRESSES[0]) == 1
    assert not _AccountDB(db, left.state_root).account_exists(ADDRESSES[1])
    assert _AccountDB(db, right.state_root).get_balance(ADDRESSES[0]) == 2
    assert _AccountDB(db, right.state_root).get_balance(ADDRESSES[1]) == 101
    assert _AccountDB(db, root).get_balance(ADDRESSES[0]) == 100
    # An AccountDB moved to another root reads that root, not the flat dict of the first
    # (py-evm's own decoded-account cache is not emptied by the move: read after it).
    moved, stock = _AccountDB(db, root), AccountDB(db, root)
    moved.state_root = stock.state_root = left.state_root
    assert moved.get_balance(ADDRESSES[0]) == stock.get_balance(ADDRESSES[0]) == 1
    assert moved.account_exists(ADDRESSES[1]) is stock.account_exists(ADDRESSES[1]) is False


def test_flat_dicts_keep_few_roots_and_bounded_sizes(monkeypatch) -> None:
    flats = _FlatRoots(max_roots=4, max_entries=3)
    for i in range(10):
        flats.get(bytes([i]) * 32)
    assert len(flats._roots) == 4 and bytes([9]) * 32 in flats._roots
    monkeypatch.setattr(_FLAT_ACCOUNTS, "max_entries", 3)
    monkeypatch.setattr(_FLAT_STORAGE, "max_entries", 3)
    db = AtomicDB()
    accounts = _AccountDB(db, BLANK_ROOT_HASH)
    for address in ADDRESSES[:8]:
        accounts.set_balance(address, 5)
        accounts.set_storage(ADDRESSES[0], int.from_bytes(address, "big"), 9)
    accounts.persist()
    reader = _AccountDB(db, accounts.state_root)
    assert all(reader.get_balance(a) == 5 for a in ADDRESSES[:8])
    assert all(reader.get_storage(ADDRESSES[0], int.from_bytes(a, "big")) == 9 for a in ADDRESSES[:8])
    assert len(reader._flat) <= 8  # the diff of a block, plus at most max_entries reads
    assert len(_FLAT_STORAGE.get(reader._get_storage_root(ADDRESSES[0]))) <= 8


def test_hand_written_rlp_is_pyrlp() -> None:
    import rlp
    from eth.rlp.accounts import Account as RlpAccount

    from openledger_node.chain import rlp_encode

    rng = random.Random("rlp")
    edges = [0, 1, 0x7F, 0x80, 0xFF, 0x100, 2**64, 2**256 - 1]
    for _ in range(500):
        nonce, balance = rng.choice(edges + [rng.getrandbits(64)]), rng.choice(edges + [rng.getrandbits(200)])
        storage_root, code_hash = rng.randbytes(32), rng.randbytes(32)
        assert rlp_encode.account(nonce, balance, storage_root, code_hash) == rlp.encode(
            RlpAccount(nonce, balance, storage_root, code_hash))
        data = rng.randbytes(rng.choice([0, 1, 55, 56, 57, 255, 256, 70_000]))
        if len(data) == 1 and rng.random() < 0.5:
            data = bytes([rng.choice([0, 0x7F, 0x80])])
        assert rlp_encode.string(data) == rlp.encode(data)
        assert rlp_encode.uint(nonce) == rlp.encode(nonce)
        assert rlp_encode.list_of(rlp_encode.string(data), rlp_encode.uint(balance)) == rlp.encode([data, balance])


def test_hand_made_receipts_are_py_evm_receipts() -> None:
    """Blooms and receipt encodings computed by hand (chain.vm.log_bloom,
    encode_receipt_payload) are eth_bloom's and pyrlp's, for receipts with 0 to 3 logs of
    0 to 4 topics and data of every length class."""
    import rlp
    from eth.rlp.logs import Log
    from eth.rlp.receipts import Receipt
    from eth_bloom import BloomFilter

    from openledger_node.chain.vm import encode_receipt_payload, log_bloom

    rng = random.Random("receipts")
    for _ in range(300):
        entries = tuple(
            (rng.randbytes(20), tuple(rng.choice([0, 1, 2**255, rng.getrandbits(256)]) for _ in range(rng.randrange(5))),
             rng.randbytes(rng.choice([0, 1, 32, 55, 56, 300])))
            for _ in range(rng.randrange(4)))
        status, gas_used = rng.choice([b"", b"\x01"]), rng.choice([0, 21_000, 2**40])
        reference = Receipt(state_root=status, gas_used=gas_used, logs=[Log(*entry) for entry in entries])
        bloom = log_bloom(entries)
        assert bloom == reference.bloom == int(BloomFilter.from_iterable(
            b for log in reference.logs for b in log.bloomables))
        assert encode_receipt_payload(status, gas_used, bloom, entries) == rlp.encode(reference)


# ------------------------------------------------------------------------------ senders


KEYS = [Account.from_key((i + 7).to_bytes(32, "big")) for i in range(3)]


def random_raw(rng: random.Random) -> bytes:
    key = rng.choice(KEYS)
    kind = rng.choice([0, 1, 2, 2, 2])
    tx = {"nonce": rng.choice([0, 1, 2**64 - 2]), "gas": rng.choice([21_000, 10**6]),
          "value": rng.choice([0, 1, 10**30]), "data": rng.randbytes(rng.choice([0, 1, 55, 56, 300])),
          "chainId": rng.choice([1, 1612, 2**32])}
    if rng.random() < 0.9:
        tx["to"] = to_checksum_address(rng.randbytes(20))
    if kind == 2:
        tx.update(type=2, maxFeePerGas=rng.choice([1, 10**12]), maxPriorityFeePerGas=rng.choice([0, 1]))
    else:
        tx["gasPrice"] = rng.choice([1, 10**12])
        if kind == 1:
            tx["type"] = 1
    if kind and rng.random() < 0.3:
        tx["accessList"] = [{"address": to_checksum_address(rng.randbytes(20)), "storageKeys": ["0x" + "00" * 31 + "01"]}]
    return bytes(key.sign_transaction(tx).raw_transaction)


def test_primed_senders_are_py_evm_senders() -> None:
    rng = random.Random("senders")
    builder = VM_BY_FORK["prague"].get_transaction_builder()
    primed = 0
    for _ in range(300):
        raw = random_raw(rng)
        tx, reference = builder.decode(raw), builder.decode(raw)
        senders.prime([tx])
        if "sender" in tx.__dict__:
            primed += 1
            assert tx.type_id == 2 and not tx.access_list
        else:
            assert tx.type_id != 2 or tx.access_list
        assert tx.sender == reference.sender
    assert primed > 100


@pytest.mark.parametrize("field, value", [(10, 0), (11, 0), (10, senders.SECP256K1_N), (9, 2), (10, 2**256 - 1),
                                          (11, 1), (11, senders.SECP256K1_N - 1)])
def test_bad_signatures_get_py_evm_outcomes(field: int, value: int) -> None:
    """A signature value out of range is left to py-evm (its error, its message); one in
    range that does not match gives py-evm's (wrong but well-defined) sender."""
    import rlp

    builder = VM_BY_FORK["prague"].get_transaction_builder()
    raw = bytes(KEYS[0].sign_transaction({"type": 2, "chainId": 1612, "nonce": 0, "to": "0x" + "11" * 20, "value": 1,
                                          "gas": 21_000, "maxFeePerGas": 10, "maxPriorityFeePerGas": 1}).raw_transaction)
    fields = rlp.decode(raw[1:])
    fields[field] = value
    bad_raw = b"\x02" + rlp.encode(fields)
    tx, reference = builder.decode(bad_raw), builder.decode(bad_raw)
    try:
        expected = ("sender", reference.sender)
    except Exception as exc:
        expected = ("error", type(exc).__name__, str(exc))
    senders.prime([tx])
    if expected[0] == "error":
        assert "sender" not in tx.__dict__
        with pytest.raises(Exception) as raised:
            tx.sender
        assert ("error", type(raised.value).__name__, str(raised.value)) == expected
    else:
        assert "sender" in tx.__dict__ and tx.sender == expected[1] != bytes.fromhex(KEYS[0].address[2:])


# ------------------------------------------------------------------------ sender worker


def test_sender_worker_recovers_py_evm_senders_in_another_process() -> None:
    rng = random.Random("worker")
    builder = VM_BY_FORK["prague"].get_transaction_builder()
    raws = [random_raw(rng) for _ in range(400)]
    worker = senders.SenderWorker()
    try:
        batches = [[builder.decode(raw) for raw in raws[i:i + 100]] for i in range(0, 400, 100)]
        tickets = [worker.submit(batch) for batch in batches]
        assert worker._process is not None and all(tickets)
        worker.collect(tickets[2])  # reads the answers of tickets 0 and 1 on the way
        assert all("sender" in tx.__dict__ for tx, _ in tickets[0] + tickets[1] + tickets[2])
        assert not any("sender" in tx.__dict__ for tx, _ in tickets[3])
        worker.collect(tickets[3])
        for batch, raw_batch in zip(batches, [raws[i:i + 100] for i in range(0, 400, 100)]):
            for tx, raw in zip(batch, raw_batch):
                assert tx.sender == builder.decode(raw).sender  # primed or not: py-evm's
        primed = sum(len(ticket) for ticket in tickets)
        assert primed > 100  # EIP-1559 without access lists went to the worker
    finally:
        worker.close()
    assert worker._process is None


def test_a_sender_worker_that_dies_leaves_the_work_to_this_process() -> None:
    rng = random.Random("worker-dies")
    builder = VM_BY_FORK["prague"].get_transaction_builder()
    raws = [random_raw(rng) for _ in range(200)]
    txs = [builder.decode(raw) for raw in raws]
    worker = senders.SenderWorker()
    ticket = worker.submit(txs)
    assert ticket
    worker._process.kill()
    worker._process.wait()
    worker.collect(ticket)  # nothing to read: the worker is closed, nothing primed from it
    assert worker._broken and worker._process is None
    assert worker.submit(txs) == []  # never restarted
    senders.prime(txs)
    assert [tx.sender for tx in txs] == [builder.decode(raw).sender for raw in raws]


def test_no_sender_worker_on_one_cpu(monkeypatch) -> None:
    monkeypatch.setattr(senders.os, "cpu_count", lambda: 1)
    assert senders.shared_worker() is None


def test_replay_of_a_large_batch_uses_the_worker_and_reaches_the_same_head(tmp_path, monkeypatch) -> None:
    """apply_batch on a batch of 5 blocks of 150 transfers: the senders of blocks 2-5 come
    from the worker process, and the replayed chain has the sequencer's head and root."""
    from pathlib import Path

    from eth_account import Account as EthAccount

    from openledger_node.chain.chain import Blockchain
    from openledger_node.chain.genesis import load_genesis
    from openledger_node.devkeys import DEV_ACCOUNTS
    from openledger_node.settlement import codec, inbox
    from openledger_node.settlement.replay import apply_batch

    genesis = load_genesis(Path(__file__).resolve().parent.parent / "genesis" / "devnet.json")
    keys = [EthAccount.from_key(key) for _, key in DEV_ACCOUNTS]
    chain = Blockchain.init(tmp_path / "seq", genesis)
    nonces = [0] * len(keys)
    try:
        for height in range(5):
            raws = []
            for i in range(150):
                sender = i % len(keys)
                raws.append(bytes(keys[sender].sign_transaction({
                    "type": 2, "chainId": genesis.chain_id, "nonce": nonces[sender], "to": to_checksum_address(
                        bytes([height + 1, i % 200]) * 10), "value": 1 + i, "gas": 21_000,
                    "maxFeePerGas": 20 * 10**9, "maxPriorityFeePerGas": 10**9}).raw_transaction))
                nonces[sender] += 1
            sealed = chain.build_block([chain.decode_transaction(raw) for raw in raws],
                                       timestamp=chain.head.timestamp + 2, coinbase=b"\x01" * 20)
            assert len(sealed.block.transactions) == 150
        blocks = [codec.batch_block_of(chain.block(chain.header_by_number(n))) for n in range(1, 6)]
        head = chain.head
    finally:
        chain.close()
    record = inbox.BatchRecord(index=0, first_block=1, last_block=5, state_root=head.state_root,
                               block_hash=head.hash, output_root=b"", data_hash=b"", frames=1, l1_block=1,
                               log_index=0, l1_tx=b"")
    collected = []
    original = senders.SenderWorker.collect
    monkeypatch.setattr(senders.SenderWorker, "collect",
                        lambda self, ticket: (collected.append(len(ticket)), original(self, ticket))[1])
    replica = Blockchain.init(tmp_path / "replica", genesis)
    try:
        assert apply_batch(replica, record, codec.encode_batch(blocks)) == (5, 750)
        assert (replica.head.hash, replica.head.state_root) == (head.hash, head.state_root)
    finally:
        replica.close()
    assert collected == [150, 150, 150, 150]
