"""The batch poster against a real anvil L1 that misbehaves: a poster killed between
sending a batch and seeing it included, and an L1 that goes away and comes back."""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from anvil_process import Anvil, running_anvil
from conftest import running_node
from node_process import init_datadir, kill_all, start_node
from openledger_node.devkeys import DEV_ACCOUNTS
from openledger_node.settlement import inbox
from test_settlement_replay import (BATCHER, assert_same_chain, genesis_hash, poster_config, replay, sign,
                                    wait_posted)


@pytest.fixture
def batcher_key(monkeypatch):
    monkeypatch.setenv("OPENLEDGER_BATCHER_KEY", BATCHER[1])


def assert_contiguous(anvil: Anvil, address: str) -> list[inbox.BatchRecord]:
    """Each batch index once, in order, and block ranges without gap or overlap from block 1."""
    records = anvil.batch_records(address)
    assert [r.index for r in records] == list(range(len(records)))
    assert records and records[0].first_block == 1
    for before, after in zip(records, records[1:]):
        assert after.first_block == before.last_block + 1, (before, after)
    count = inbox.decode_uint(anvil.call(address, inbox.BATCH_COUNT))
    assert count == len(records)
    return records


def wait_log(node, pattern: str, timeout: float = 30.0, after: int = 0) -> re.Match:
    deadline = time.monotonic() + timeout
    while True:
        found = list(re.finditer(pattern, node.log()))
        if len(found) > after:
            return found[after]
        assert time.monotonic() < deadline, f"no {pattern!r} in the log:\n{node.log()[-3000:]}"
        time.sleep(0.05)


def test_poster_killed_mid_post_and_restarted_posts_no_duplicate_and_no_gap(tmp_path: Path, batcher_key) -> None:
    # anvil without automining: a sent batch stays in the L1 pool until the test mines it.
    with running_anvil(tmp_path / "l1", "--no-mining") as anvil:
        anvil.rpc("evm_setAutomine", True)
        address = anvil.deploy_inbox(BATCHER[1], BATCHER[0], genesis_hash())
        anvil.rpc("evm_setAutomine", False)
        datadir = tmp_path / "l2"
        init_datadir(datadir)
        args = ("--l1-rpc", anvil.url, "--l1-inbox", address, "--batch-max-age", "0.5")
        try:
            node = start_node(datadir, tmp_path / "node.log", *args)
            for nonce in range(3):
                node.rpc("eth_sendRawTransaction", sign(0, nonce, "0x" + "11" * 20, value=1))
            sent = wait_log(node, r"batch 0 sent: L2 blocks 1-(\d+)")
            node.kill()  # sent, not included: the L1 pool holds it

            node = start_node(datadir, tmp_path / "node.log", *args)
            # The restarted poster finds batch 0 not on L1 and its nonce held: it replaces the
            # transaction (same nonce, higher fee) rather than adding one.
            wait_log(node, r"batch 0 sent: L2 blocks 1-\d+")
            node.kill()
            anvil.rpc("evm_mine")  # one of the two versions of batch 0 is included, never both
            assert len(anvil.batch_records(address)) == 1

            anvil.rpc("evm_setAutomine", True)
            node = start_node(datadir, tmp_path / "node.log", *args)
            for nonce in range(3, 6):
                last = node.rpc("eth_sendRawTransaction", sign(0, nonce, "0x" + "11" * 20, value=1))
            deadline = time.monotonic() + 60
            while node.rpc("eth_getTransactionReceipt", last) is None:
                assert time.monotonic() < deadline, "L2 transaction not mined"
                time.sleep(0.05)
            while True:
                status = node.rpc("ol_syncStatus")
                if status["posted_l2"] and status["posted_l2"]["number"] == status["unsafe_l2"]["number"]:
                    break
                assert time.monotonic() < deadline, status
                time.sleep(0.1)
            node.signal(2)
            assert node.wait() == 0
        finally:
            kill_all()
        assert int(sent.group(1)) >= 1
        records = assert_contiguous(anvil, address)
        # No batch transaction of the batcher failed on L1: nothing was sent twice.
        l1_head = int(anvil.rpc("eth_blockNumber"), 16)
        for number in range(1, l1_head + 1):
            block = anvil.rpc("eth_getBlockByNumber", hex(number), True)
            for tx in block["transactions"]:
                receipt = anvil.rpc("eth_getTransactionReceipt", tx["hash"])
                assert receipt["status"] == "0x1", f"L1 transaction {tx['hash']} reverted"
        done = replay(anvil, address, tmp_path / "audit")
        assert done.returncode == 0, done.stdout + done.stderr
        assert assert_same_chain(datadir, tmp_path / "audit") == records[-1].last_block


def test_poster_catches_up_after_the_l1_was_down(tmp_path: Path, batcher_key) -> None:
    with running_anvil(tmp_path / "l1") as anvil:
        address = anvil.deploy_inbox(BATCHER[1], BATCHER[0], genesis_hash())
        with running_node(tmp_path / "l2", **poster_config(anvil, address)) as l2:
            l2.wait_receipt(l2.rpc("eth_sendRawTransaction", sign(0, 0, "0x" + "22" * 20, value=1)))
            before = wait_posted(l2)
            anvil.stop()  # dumps its state
            for nonce in range(1, 4):
                l2.wait_receipt(l2.rpc("eth_sendRawTransaction", sign(0, nonce, "0x" + "22" * 20, value=1)))
            deadline = time.monotonic() + 30
            while l2.rpc("ol_syncStatus")["poster"]["lastError"] is None:
                assert time.monotonic() < deadline, "the poster did not notice the L1 was down"
                time.sleep(0.1)
            status = l2.rpc("ol_syncStatus")
            assert status["posted_l2"] == before["posted_l2"]
            assert int(status["unsafe_l2"]["number"], 16) > int(before["unsafe_l2"]["number"], 16)
            time.sleep(2)
            anvil.start()  # same port, state loaded from the dump
            after = wait_posted(l2)
            assert after["poster"]["lastError"] is None
        records = assert_contiguous(anvil, address)
        assert records[-1].last_block == int(after["unsafe_l2"]["number"], 16)
        done = replay(anvil, address, tmp_path / "audit")
        assert done.returncode == 0, done.stdout + done.stderr


def test_a_stuck_batch_is_sent_again_with_higher_fees_and_lands_once(tmp_path: Path, batcher_key) -> None:
    with running_anvil(tmp_path / "l1", "--no-mining") as anvil:
        anvil.rpc("evm_setAutomine", True)
        address = anvil.deploy_inbox(BATCHER[1], BATCHER[0], genesis_hash())
        anvil.rpc("evm_setAutomine", False)
        with running_node(tmp_path / "l2", **poster_config(anvil, address)) as l2:
            l2.node.poster.config.stuck_seconds = 1.0
            l2.wait_receipt(l2.rpc("eth_sendRawTransaction", sign(0, 0, "0x" + "33" * 20, value=1)))
            deadline = time.monotonic() + 30
            while len(l2.node.poster.status.sent) < 3:
                assert time.monotonic() < deadline, l2.node.poster.status
                time.sleep(0.1)
            sent = list(l2.node.poster.status.sent)
            anvil.rpc("evm_setAutomine", True)
            anvil.rpc("evm_mine")
            wait_posted(l2)
        assert {index for index, _ in sent} == {0}
        assert len(set(h for _, h in sent)) == len(sent)  # each resend is a new transaction
        records = assert_contiguous(anvil, address)
        assert len(records) == 1
        # The last, highest bid replaced the others in the L1 pool (same nonce).
        assert records[0].l1_tx == sent[-1][1]
        included = anvil.rpc("eth_getTransactionByHash", "0x" + records[0].l1_tx.hex())
        assert included["nonce"] == "0x1"
        unbumped_tip = int(anvil.rpc("eth_maxPriorityFeePerGas"), 16)
        assert int(included["maxPriorityFeePerGas"], 16) >= unbumped_tip * 25 // 16  # two bumps of 5/4


@pytest.mark.parametrize("mistake, reason", [
    ({"l1_chain_id": 1}, "has chain id 31337, not the configured 1"),
    ({"l1_inbox": "0x" + "99" * 20}, "no contract at the inbox address"),
])
def test_a_misconfigured_poster_stops_and_says_why(tmp_path: Path, batcher_key, mistake, reason) -> None:
    with running_anvil(tmp_path / "l1") as anvil:
        address = anvil.deploy_inbox(BATCHER[1], BATCHER[0], genesis_hash())
        with running_node(tmp_path / "l2", **{**poster_config(anvil, address), **mistake}) as l2:
            l2.wait_receipt(l2.rpc("eth_sendRawTransaction", sign(0, 0, "0x" + "22" * 20, value=1)))
            deadline = time.monotonic() + 15
            while (stopped := l2.rpc("ol_syncStatus")["poster"]["stopped"]) is None:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert reason in stopped
            assert l2.rpc("eth_blockNumber") == "0x1"  # the L2 keeps going
        assert anvil.batch_records(address) == []


def test_an_inbox_for_another_batcher_stops_the_poster(tmp_path: Path, batcher_key) -> None:
    with running_anvil(tmp_path / "l1") as anvil:
        address = anvil.deploy_inbox(BATCHER[1], DEV_ACCOUNTS[5][0], genesis_hash())
        with running_node(tmp_path / "l2", **poster_config(anvil, address)) as l2:
            deadline = time.monotonic() + 15
            while (stopped := l2.rpc("ol_syncStatus")["poster"]["stopped"]) is None:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert f"the inbox's batcher is {DEV_ACCOUNTS[5][0].lower()}" in stopped


def test_a_poster_restarted_between_frames_continues_them(tmp_path: Path, batcher_key) -> None:
    import os

    with running_anvil(tmp_path / "l1", "--no-mining") as anvil:
        anvil.rpc("evm_setAutomine", True)
        address = anvil.deploy_inbox(BATCHER[1], BATCHER[0], genesis_hash())
        anvil.rpc("evm_setAutomine", False)
        datadir = tmp_path / "l2"
        init_datadir(datadir)
        config = tmp_path / "node.toml"
        config.write_text(f'l1_rpc = "{anvil.url}"\nl1_inbox = "{address}"\nbatch_max_age = 0.5\nbatch_max_bytes = 1000\n')
        try:
            node = start_node(datadir, tmp_path / "node.log", "--config", str(config))
            node.rpc("eth_sendRawTransaction", sign(0, 0, "0x" + "66" * 20, data=os.urandom(3000), gas=300_000))
            wait_log(node, r"batch 0 frame 0 sent")
            anvil.rpc("evm_mine")
            wait_log(node, r"batch 0 frame 1 sent")
            node.kill()
            anvil.rpc("evm_mine")
            assert inbox.decode_uint(anvil.call(address, inbox.PENDING_FRAMES)) == 2
            anvil.rpc("evm_setAutomine", True)
            node = start_node(datadir, tmp_path / "node.log", "--config", str(config))
            wait_log(node, r"batch 0: continuing after the 2 frames L1 holds")
            wait_log(node, r"batch 0 posted: L2 blocks 1-1")
            node.signal(2)
            assert node.wait() == 0
        finally:
            kill_all()
        (record,) = assert_contiguous(anvil, address)
        assert record.frames >= 4
        discarded = anvil.rpc("eth_getLogs", {"address": address, "topics": ["0x" + inbox.DISCARD_EVENT_TOPIC.hex()],
                                              "fromBlock": "0x0", "toBlock": "latest"})
        assert discarded == []
        done = replay(anvil, address, tmp_path / "audit")
        assert done.returncode == 0, done.stdout + done.stderr
        assert assert_same_chain(datadir, tmp_path / "audit") == 1
