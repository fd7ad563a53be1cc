"""Crash recovery: ``kill -9`` a real ``openledger-node run`` under load, several times.

Spec: after ``kill -9`` at any moment under load, ``run`` starts again, reports the
last block it had sealed, and every transaction whose receipt RPC had returned is
still there with the same receipt.

One datadir lives through five SIGKILLs at seeded-random moments: during steady load
(four senders, each keeping a window of transactions in flight and polling their
receipts), right after a burst (one JSON-RPC batch of transactions, killed as soon as
the reply arrives), and in the middle of sealing a burst's big block.  After each
restart the test checks the reported head against what the killed process had logged,
every receipt ever returned (JSON-equal), and the whole state (nonces, block contents,
balances of senders, recipients and the fee recipient).  Transactions lost from the
pool are resent (the very same signed bytes) and must be accepted and mined.
"""
from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_utils import keccak, to_checksum_address

from node_process import RPC, SEALED, NodeProcess, init_datadir, kill_all, start_node
from openledger_node.devkeys import DEV_ACCOUNTS

CHAIN_ID = 1612
SENDERS = 4
WINDOW = 24  # transactions each sender keeps in flight
BURST = 120  # per sender, in one batch request
SEED = int(os.environ.get("OPENLEDGER_CRASH_SEED", "20261612"))  # set it to explore other kill moments
RECIPIENTS = [to_checksum_address(keccak(f"crash-recovery recipient {i}".encode())[12:]) for i in range(5)]


@dataclass(frozen=True)
class Transfer:
    sender: int
    nonce: int
    to: str
    value: int
    hash: str
    raw: str


class Transfers:
    """One signed transfer per (sender, nonce), signed on first use and then reused,
    so a resend after a crash is byte for byte the transaction sent before."""

    def __init__(self, count: int, first: int = 0) -> None:
        self.accounts = [Account.from_key(key) for _, key in DEV_ACCOUNTS[first:count]]
        self.addresses = [account.address for account in self.accounts]
        self._cache: dict[tuple[int, int], Transfer] = {}
        self._lock = threading.Lock()

    def get(self, sender: int, nonce: int) -> Transfer:
        key = (sender, nonce)
        with self._lock:
            found = self._cache.get(key)
        if found is not None:
            return found
        to = RECIPIENTS[(sender + nonce) % len(RECIPIENTS)]
        value = 10**15 + sender * 10**6 + nonce
        signed = self.accounts[sender].sign_transaction({
            "type": 2, "chainId": CHAIN_ID, "nonce": nonce, "to": to, "value": value, "gas": 21_000,
            "maxFeePerGas": 50 * 10**9, "maxPriorityFeePerGas": 10**9 + nonce % 7,
        })
        raw = signed.raw_transaction.hex()
        tx = Transfer(sender, nonce, to, value, "0x" + signed.hash.hex().removeprefix("0x"),
                      raw if raw.startswith("0x") else "0x" + raw)
        with self._lock:
            return self._cache.setdefault(key, tx)

    def sent_by(self, sender: int) -> list[Transfer]:
        with self._lock:
            return sorted((tx for (s, _), tx in self._cache.items() if s == sender), key=lambda tx: tx.nonce)


@dataclass
class History:
    """What clients were told, across every run of the node."""

    receipts: dict[str, dict[str, Any]] = field(default_factory=dict)  # tx hash -> receipt as first returned
    sent: dict[str, int] = field(default_factory=dict)  # tx hash -> round in which it was (last) accepted
    resent: set[str] = field(default_factory=set)  # accepted again after a crash lost it from the pool
    highest_block_seen: int = 0  # highest eth_blockNumber any client got
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def accepted(self, tx: Transfer, round_no: int) -> None:
        with self.lock:
            if tx.hash in self.sent:
                self.resent.add(tx.hash)
            self.sent[tx.hash] = round_no

    def got_receipt(self, tx_hash: str, receipt: dict[str, Any]) -> None:
        with self.lock:
            if tx_hash in self.receipts:
                if self.receipts[tx_hash] != receipt:
                    self.errors.append(f"receipt of {tx_hash} changed while the node ran: "
                                       f"{self.receipts[tx_hash]} then {receipt}")
            else:
                self.receipts[tx_hash] = receipt

    def saw_block(self, number: int) -> None:
        with self.lock:
            self.highest_block_seen = max(self.highest_block_seen, number)


class Load:
    """Client threads, one per sender: keep WINDOW transfers in flight, poll receipts,
    record every receipt and block number the node returns.  A thread ends quietly
    when the node goes away (that is the point of the test) and records anything else."""

    def __init__(self, url: str, transfers: Transfers, history: History, round_no: int) -> None:
        self.url = url
        self.transfers = transfers
        self.history = history
        self.round_no = round_no
        self.stop = threading.Event()
        self.next_nonce: dict[int, int] = {}
        self.threads = [threading.Thread(target=self._run, args=(i,), name=f"load-{i}", daemon=True)
                        for i in range(len(transfers.accounts))]

    def start(self) -> "Load":
        for thread in self.threads:
            thread.start()
        return self

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)
            assert not thread.is_alive(), f"{thread.name} did not stop"

    def _run(self, sender: int) -> None:
        rpc = RPC(self.url, timeout=10)
        address = self.transfers.addresses[sender]
        try:
            nonce = int(rpc("eth_getTransactionCount", address, "latest"), 16)
            in_flight: deque[Transfer] = deque()
            while not self.stop.is_set():
                while len(in_flight) < WINDOW and not self.stop.is_set():
                    tx = self.transfers.get(sender, nonce)
                    result = rpc("eth_sendRawTransaction", tx.raw)
                    if result != tx.hash:
                        raise AssertionError(f"eth_sendRawTransaction returned {result}, expected {tx.hash}")
                    self.history.accepted(tx, self.round_no)
                    in_flight.append(tx)
                    nonce += 1
                    self.next_nonce[sender] = nonce
                calls = [("eth_blockNumber", [])] + [("eth_getTransactionReceipt", [tx.hash]) for tx in in_flight]
                replies = rpc.batch_results(calls)
                self.history.saw_block(int(replies[0], 16))
                mined = 0
                for tx, receipt in zip(list(in_flight), replies[1:]):
                    if receipt is None:
                        break  # this sender's transactions are mined in nonce order
                    self.history.got_receipt(tx.hash, receipt)
                    in_flight.popleft()
                    mined += 1
                if not mined:
                    time.sleep(0.005)
        except (httpx.TransportError, json.JSONDecodeError):  # killed: connection refused or cut mid-reply
            pass
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.history.errors.append(f"sender {sender}: {type(exc).__name__}: {exc}")
        finally:
            rpc.close()


def burst(node: NodeProcess, transfers: Transfers, history: History, round_no: int) -> int:
    """Send BURST transfers per sender in one JSON-RPC batch; all must be accepted."""
    calls, txs = [], []
    for sender, address in enumerate(transfers.addresses):
        nonce = int(node.rpc("eth_getTransactionCount", address, "pending"), 16)
        for n in range(nonce, nonce + BURST):
            tx = transfers.get(sender, n)
            txs.append(tx)
            calls.append(("eth_sendRawTransaction", [tx.raw]))
    results = node.rpc.batch_results(calls)
    for tx, result in zip(txs, results):
        assert result == tx.hash
        history.accepted(tx, round_no)
    return len(txs)


def check_resumed(node: NodeProcess, previous_log: str | None, history: History) -> int:
    """The start-up line reports the head; it is the last block the killed process
    had sealed (or the one it committed but had no time to log); nothing a client
    was told about is missing."""
    number, block_hash = node.resumed_head()
    rpc = node.rpc
    assert int(rpc("eth_blockNumber"), 16) == number, "eth_blockNumber differs from the reported head"
    assert rpc("eth_getBlockByNumber", hex(number), False)["hash"] == block_hash
    if previous_log is not None:
        sealed = [(int(m.group(1)), m.group(5)) for m in SEALED.finditer(previous_log)]
        last_logged, last_prefix = sealed[-1] if sealed else (None, None)
        if last_logged is not None:
            assert number in (last_logged, last_logged + 1), (
                f"resumed at block {number}, but the killed node had logged block {last_logged} as sealed")
            logged_block = rpc("eth_getBlockByNumber", hex(last_logged), False)
            assert logged_block["hash"].startswith("0x" + last_prefix)
    highest_receipt = max((int(r["blockNumber"], 16) for r in history.receipts.values()), default=0)
    assert number >= highest_receipt, f"head {number} is below block {highest_receipt} of a returned receipt"
    assert number >= history.highest_block_seen, (
        f"head {number} is below block {history.highest_block_seen} that eth_blockNumber had returned")
    return number


def check_receipts(rpc: RPC, history: History) -> None:
    hashes = sorted(history.receipts)
    again = rpc.batch_results([("eth_getTransactionReceipt", [h]) for h in hashes])
    changed = [h for h, receipt in zip(hashes, again) if receipt != history.receipts[h]]
    assert not changed, (
        f"{len(changed)} of {len(hashes)} receipts differ after the restart, e.g. {changed[0]}:\n"
        f"before {history.receipts[changed[0]]}\nafter  {again[hashes.index(changed[0])]}")


def check_state(rpc: RPC, transfers: Transfers, head: int) -> dict[str, int]:
    """Nonces, block contents and balances agree with the transfers that were mined.

    Returns {tx hash: block number} of every mined transfer."""
    mined: dict[str, int] = {}
    fees: list[tuple[dict[str, Any], Transfer]] = []
    spent = [0] * len(transfers.addresses)
    received = {to: 0 for to in RECIPIENTS}
    nonces = [int(n, 16) for n in rpc.batch_results(
        [("eth_getTransactionCount", [a, "latest"]) for a in transfers.addresses])]
    for sender, nonce in enumerate(nonces):
        sent = transfers.sent_by(sender)
        assert nonce <= len(sent), f"sender {sender} has nonce {nonce} but only {len(sent)} transfers were signed"
        receipts = rpc.batch_results([("eth_getTransactionReceipt", [tx.hash]) for tx in sent])
        for tx, receipt in zip(sent, receipts):
            if tx.nonce < nonce:
                assert receipt is not None, f"sender {sender} nonce {tx.nonce}: state nonce {nonce} but no receipt"
                assert receipt["status"] == "0x1" and int(receipt["gasUsed"], 16) == 21_000
                mined[tx.hash] = int(receipt["blockNumber"], 16)
                fees.append((receipt, tx))
                spent[sender] += tx.value + int(receipt["gasUsed"], 16) * int(receipt["effectiveGasPrice"], 16)
                received[tx.to] += tx.value
            else:
                assert receipt is None, f"sender {sender} nonce {tx.nonce} is above the state nonce {nonce} yet mined"
    counts = rpc.batch_results([("eth_getBlockTransactionCountByNumber", [hex(n)]) for n in range(1, head + 1)])
    assert sum(int(c, 16) for c in counts) == len(mined), "blocks hold transactions that are not our transfers"
    blocks = {n: rpc("eth_getBlockByNumber", hex(n), False) for n in sorted(set(mined.values()))}
    tips: dict[str, int] = {}
    for receipt, tx in fees:
        block = blocks[int(receipt["blockNumber"], 16)]
        assert tx.hash in block["transactions"]
        tip = int(receipt["effectiveGasPrice"], 16) - int(block["baseFeePerGas"], 16)
        tips[block["miner"]] = tips.get(block["miner"], 0) + tip * int(receipt["gasUsed"], 16)
    for address, amount in [*zip(transfers.addresses, (-s for s in spent)), *received.items(), *tips.items()]:
        before = int(rpc("eth_getBalance", address, "0x0"), 16)
        after = int(rpc("eth_getBalance", address, "latest"), 16)
        assert after == before + amount, f"balance of {address}: {after}, expected {before} + {amount}"
    return mined


# (what the clients do, seconds of steady load before it, seconds between the last reply and SIGKILL)
def plan(rng: random.Random) -> list[tuple[str, float, float]]:
    return [
        ("steady", rng.uniform(0.8, 2.0), 0.0),
        ("burst", rng.uniform(0.2, 0.6), 0.0),  # killed as soon as the burst is accepted
        ("steady", rng.uniform(0.3, 1.5), 0.0),
        ("burst", rng.uniform(0.2, 0.6), rng.uniform(0.1, 0.5)),  # killed while the burst's block is sealed
        ("steady", rng.uniform(0.3, 1.5), 0.0),
    ]


@pytest.mark.timeout(240)
def test_sigkill_under_load_loses_nothing_that_was_acknowledged(tmp_path: Path) -> None:
    started = time.monotonic()
    datadir = tmp_path / "data"
    init_datadir(datadir)
    rng = random.Random(SEED)
    transfers = Transfers(SENDERS)
    gapped = Transfers(SENDERS + 1, first=SENDERS)  # one more dev account, used only for the gap
    history = History()
    previous_log: str | None = None
    kills: list[str] = []
    try:
        for round_no, (kind, load_seconds, kill_delay) in enumerate(plan(rng)):
            node = start_node(datadir, tmp_path / f"node-{round_no}.log")
            head = check_resumed(node, previous_log, history)
            check_receipts(node.rpc, history)
            check_state(node.rpc, transfers, head)
            load = Load(node.url, transfers, history, round_no).start()
            time.sleep(load_seconds)
            if kind == "burst":
                load.join()  # the clients stop; the burst continues their nonces
                burst(node, transfers, history, round_no)
            if round_no == len(plan(random.Random(SEED))) - 1:
                # A transfer behind a nonce gap cannot be sealed: the last kill is sure to
                # catch it in the pool, so resending after a crash is always exercised.
                assert node.rpc("eth_sendRawTransaction", gapped.get(0, 1).raw) == gapped.get(0, 1).hash
            time.sleep(kill_delay)
            node.kill()
            load.join()
            previous_log = node.log()
            kills.append(f"{kind} after {load_seconds:.2f}+{kill_delay:.2f}s at block "
                         f"{(node.sealed() or [(head,)])[-1][0]}")
            assert not history.errors, "\n".join(history.errors)

        # The last restart: everything checked once more, then the transactions the last
        # crash lost from the pool are resent, and the node goes on producing blocks.
        node = start_node(datadir, tmp_path / "node-final.log")
        head = check_resumed(node, previous_log, history)
        check_receipts(node.rpc, history)
        mined = check_state(node.rpc, transfers, head)
        lost = [h for h in history.sent if h not in mined]  # in flight at a kill (load-dependent)
        assert all(node.rpc("eth_getTransactionByHash", h) is None for h in lost), "a lost transaction survived"
        assert node.rpc("eth_getTransactionByHash", gapped.get(0, 1).hash) is None, "the gapped transfer survived"
        fresh = []
        for sender in range(SENDERS):
            pending = [tx for tx in transfers.sent_by(sender) if tx.hash not in mined]
            last = transfers.sent_by(sender)[-1].nonce
            pending += [transfers.get(sender, n) for n in range(last + 1, last + 4)]  # and a few new ones
            for tx in pending:
                assert node.rpc("eth_sendRawTransaction", tx.raw) == tx.hash
                history.accepted(tx, -1)
                fresh.append(tx)
        deadline = time.monotonic() + 30
        for tx in fresh:
            while (receipt := node.rpc("eth_getTransactionReceipt", tx.hash)) is None:
                assert time.monotonic() < deadline, f"resent transaction {tx.hash} was not mined"
                time.sleep(0.02)
            history.got_receipt(tx.hash, receipt)
        new_head = int(node.rpc("eth_blockNumber"), 16)
        assert new_head > head, "the restarted node produced no block"
        assert set(lost) <= history.resent, "a lost transaction was not accepted again"
        check_receipts(node.rpc, history)
        check_state(node.rpc, transfers, new_head)
        for nonce in (1, 0):  # resend the gapped transfer, then fill the gap: both are sealed
            assert node.rpc("eth_sendRawTransaction", gapped.get(0, nonce).raw) == gapped.get(0, nonce).hash
        deadline = time.monotonic() + 30
        for nonce in (0, 1):
            while node.rpc("eth_getTransactionReceipt", gapped.get(0, nonce).hash) is None:
                assert time.monotonic() < deadline, "the resent gapped transfer was not mined"
                time.sleep(0.02)
        new_head = int(node.rpc("eth_blockNumber"), 16)
        node.signal(signal.SIGTERM)
        assert node.wait(30) == 0
        assert f"stopped cleanly at block {new_head}" in node.log()
    finally:
        kill_all()
    elapsed = time.monotonic() - started
    print(f"\n{len(kills)} kills ({'; '.join(kills)}); {len(history.receipts)} receipts checked, "
          f"{len(history.sent)} transfers, {len(history.resent)} resent after a crash; {elapsed:.1f}s")
