"""Settlement end to end, with a real anvil L1: the node's poster puts its blocks on L1,
and ``openledger-node replay`` rebuilds the same chain from L1 alone, or names the first
batch and block where L1 and the re-execution disagree."""
from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_utils import to_checksum_address

from anvil_process import Anvil, running_anvil
from conftest import DEVNET_GENESIS, RunningNode, running_node
from node_process import run_cli
from openledger_node.chain.chain import Blockchain
from openledger_node.chain.genesis import load_genesis
from openledger_node.contracts import CONTRACTS_DIR, compile_contracts
from openledger_node.devkeys import DEV_ACCOUNTS
from openledger_node.settlement import codec, inbox
from openledger_node.settlement.l1 import L1Client

L2_CHAIN_ID = 1612
BATCHER = DEV_ACCOUNTS[0]  # on the L1 (anvil funds the same dev accounts)
OTHER_L1_KEY = DEV_ACCOUNTS[1]


def genesis_hash() -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        chain = Blockchain.init(Path(tmp), load_genesis(DEVNET_GENESIS))
        try:
            return chain.header_by_number(0).hash
        finally:
            chain.close()


def sign(sender: int, nonce: int, to: str | None, data: bytes = b"", value: int = 0, gas: int = 21_000) -> str:
    tx = {"type": 2, "chainId": L2_CHAIN_ID, "nonce": nonce, "value": value, "gas": gas, "data": data,
          "maxFeePerGas": 10 * 10**9, "maxPriorityFeePerGas": 10**9}
    if to is not None:
        tx["to"] = to_checksum_address(to)
    raw = Account.from_key(DEV_ACCOUNTS[sender][1]).sign_transaction(tx).raw_transaction.hex()
    return raw if raw.startswith("0x") else "0x" + raw


def produce_traffic(l2: RunningNode) -> int:
    """Transfers from three accounts, a token deployment and token transfers; the tx count."""
    token = compile_contracts([CONTRACTS_DIR / "TestToken.sol"])["TestToken"]
    from eth_abi import encode

    create = bytes.fromhex(token["bytecode"][2:]) + encode(["uint256"], [10**24])
    hashes = [l2.rpc("eth_sendRawTransaction", sign(3, 0, None, create, gas=2_000_000))]
    receipt = l2.wait_receipt(hashes[0])
    token_address = receipt["contractAddress"]
    for round_ in range(6):
        for sender in (0, 1, 2):
            hashes.append(l2.rpc("eth_sendRawTransaction", sign(sender, round_, "0x" + f"{sender + 1:02x}" * 20,
                                                                value=10**15 + round_)))
        call = bytes.fromhex("a9059cbb") + encode(["address", "uint256"], ["0x" + "77" * 20, 1000 + round_])
        hashes.append(l2.rpc("eth_sendRawTransaction", sign(3, round_ + 1, token_address, call, gas=100_000)))
        for tx_hash in hashes[-4:]:
            l2.wait_receipt(tx_hash)
    return len(hashes)


def wait_posted(l2: RunningNode, timeout: float = 60) -> dict[str, Any]:
    """ol_syncStatus once the L1 holds the L2 head."""
    deadline = time.monotonic() + timeout
    while True:
        status = l2.rpc("ol_syncStatus")
        posted = status["posted_l2"]
        if posted is not None and posted["number"] == status["unsafe_l2"]["number"]:
            return status
        assert time.monotonic() < deadline, f"L1 did not catch up: {status}"
        time.sleep(0.1)


def poster_config(anvil: Anvil, address: str) -> dict[str, Any]:
    return {"l1_rpc": anvil.url, "l1_inbox": address, "batch_max_age": 0.5}


def replay_args(anvil: Anvil, address: str, datadir: Path, *extra: str) -> list[str]:
    """``openledger-node replay`` of this inbox into ``datadir`` (a follower: add --follow)."""
    return ["replay", "--l1-rpc", anvil.url, "--inbox", address, "--genesis", str(DEVNET_GENESIS),
            "--datadir", str(datadir), *extra]


def replay(anvil: Anvil, address: str, datadir: Path, *extra: str):
    return run_cli(*replay_args(anvil, address, datadir, *extra), timeout=300)


def wait_until(predicate, what: str, timeout: float = 30) -> Any:
    """``predicate()`` once it is truthy; fails with ``what()`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (found := predicate()):
        assert time.monotonic() < deadline, what()
        time.sleep(0.1)
    return found


def assert_same_chain(original: Path, rebuilt: Path) -> int:
    a, b = Blockchain.open(original), Blockchain.open(rebuilt)
    try:
        assert a.head.block_number == b.head.block_number
        for number in range(a.head.block_number + 1):
            ha, hb = a.header_by_number(number), b.header_by_number(number)
            assert (hb.hash, hb.state_root) == (ha.hash, ha.state_root), f"block {number} differs"
            ra, rb = a.receipts(a.block(ha)), b.receipts(b.block(hb))
            assert [r.encode() for r in rb] == [r.encode() for r in ra], f"receipts of block {number} differ"
        return a.head.block_number
    finally:
        a.close()
        b.close()


@pytest.fixture
def batcher_key(monkeypatch):
    monkeypatch.setenv("OPENLEDGER_BATCHER_KEY", BATCHER[1])


def test_replay_from_l1_rebuilds_the_same_chain(tmp_path: Path, batcher_key) -> None:
    with running_anvil(tmp_path / "l1") as anvil:
        address = anvil.deploy_inbox(BATCHER[1], BATCHER[0], genesis_hash())
        with running_node(tmp_path / "l2", **poster_config(anvil, address)) as l2:
            txs = produce_traffic(l2)
            status = wait_posted(l2)
            assert status["poster"]["lastError"] is None
            assert int(status["current_l1"]["number"], 16) >= 1
            metrics = l2.client.get(l2.url + "/metrics").text
            assert f"openledger_l1_posted_block {float(int(status['posted_l2']['number'], 16))}" in metrics
            assert "openledger_l1_poster_healthy 1.0" in metrics
        records = anvil.batch_records(address)
        assert [r.index for r in records] == list(range(len(records)))
        assert records[0].first_block == 1
        assert all(b.first_block == a.last_block + 1 for a, b in zip(records, records[1:]))

        done = replay(anvil, address, tmp_path / "audit")
        assert done.returncode == 0, done.stderr + done.stdout
        summary = re.search(r"replay done: (\d+) batches, (\d+) blocks, (\d+) txs", done.stdout)
        assert summary, done.stdout
        assert int(summary.group(1)) == len(records)
        assert int(summary.group(3)) == txs
        head = assert_same_chain(tmp_path / "l2", tmp_path / "audit")
        assert int(summary.group(2)) == head == records[-1].last_block


def post_copy(anvil: Anvil, source: str, key: str, tamper_batch: int | None = None,
              tamper_data_of: int | None = None, garbage: bytes = b"") -> str:
    """A second inbox, fed by ``key`` with the batches of ``source``: the same data and roots,
    except a wrong state root for batch ``tamper_batch`` or garbage data for ``tamper_data_of``."""
    batcher = Account.from_key(key).address
    address = anvil.deploy_inbox(key, batcher, genesis_hash())

    async def feed() -> None:
        l1 = L1Client(anvil.url)
        try:
            for record in anvil.batch_records(source):
                tx = await l1.transaction(record.l1_tx)
                call = inbox.AppendCall.decode(bytes.fromhex(tx["input"][2:]))
                if record.index == tamper_batch:
                    call = inbox.AppendCall(call.index, call.first_block, call.last_block, b"\x66" * 32,
                                            call.block_hash, call.data)
                if record.index == tamper_data_of:
                    call = inbox.AppendCall(call.index, call.first_block, call.last_block, call.state_root,
                                            call.block_hash, garbage)
                await send(l1, key, address, call.encode())
        finally:
            await l1.close()

    asyncio.run(feed())
    return address


async def send(l1: L1Client, key: str, to: str, data: bytes) -> None:
    account = Account.from_key(key)
    sender = bytes.fromhex(account.address[2:])
    signed = account.sign_transaction({
        "type": 2, "chainId": await l1.chain_id(), "nonce": await l1.nonce(sender, "pending"), "to": to_checksum_address(to),
        "value": 0, "gas": 3_000_000, "maxFeePerGas": 100 * 10**9, "maxPriorityFeePerGas": 10**9, "data": data})
    tx_hash = await l1.send_raw(bytes(signed.raw_transaction))
    for _ in range(100):
        receipt = await l1.receipt(tx_hash)
        if receipt is not None:
            assert int(receipt["status"], 16) == 1, f"L1 transaction reverted: {receipt}"
            return
        await asyncio.sleep(0.05)
    raise AssertionError("L1 transaction not mined")


@pytest.fixture
def posted_chain(tmp_path: Path, batcher_key):
    """An anvil holding an inbox with a few batches of a devnet chain."""
    with running_anvil(tmp_path / "l1") as anvil:
        address = anvil.deploy_inbox(BATCHER[1], BATCHER[0], genesis_hash())
        with running_node(tmp_path / "l2", **poster_config(anvil, address)) as l2:
            for nonce in range(8):
                l2.wait_receipt(l2.rpc("eth_sendRawTransaction", sign(nonce % 3, nonce // 3, "0x" + "55" * 20, value=1)))
                time.sleep(0.6)  # several batches
            wait_posted(l2)
        records = anvil.batch_records(address)
        assert len(records) >= 3, records
        yield anvil, address, records


def test_a_tampered_root_is_reported_at_its_batch_and_last_block(tmp_path: Path, posted_chain) -> None:
    anvil, address, records = posted_chain
    bad = post_copy(anvil, address, OTHER_L1_KEY[1], tamper_batch=1)
    done = replay(anvil, bad, tmp_path / "audit")
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"replay failed at batch 1, block {records[1].last_block}: state root" in done.stderr
    assert "Traceback" not in done.stderr
    # The batch before the tampered one was checked and kept.
    assert f"batch 0: blocks 1-{records[0].last_block}" in done.stdout


@pytest.mark.parametrize("garbage", [b"\x01" + b"\xff" * 40, b"\x00" + b"x\x9c" + b"\x00" * 10, b"\x07abc",
                                     b"\x00" + __import__("zlib").compress(b"\xc2\xc1\xc0")])
def test_garbage_batch_data_is_reported_not_a_crash(tmp_path: Path, posted_chain, garbage: bytes) -> None:
    anvil, address, records = posted_chain
    bad = post_copy(anvil, address, OTHER_L1_KEY[1], tamper_data_of=2, garbage=garbage)
    done = replay(anvil, bad, tmp_path / "audit")
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"replay failed at batch 2, block {records[2].first_block}: undecodable batch data:" in done.stderr
    assert "Traceback" not in done.stderr


def test_replay_refuses_an_inbox_of_another_chain(tmp_path: Path) -> None:
    with running_anvil(tmp_path / "l1") as anvil:
        address = anvil.deploy_inbox(BATCHER[1], BATCHER[0], b"\x12" * 32)
        done = replay(anvil, address, tmp_path / "audit")
        assert done.returncode == 1
        assert "the inbox records L2 genesis 0x1212" in done.stderr


def test_replay_arrives_at_the_same_attribution_rewards(tmp_path: Path, batcher_key) -> None:
    from precompile_client import POA, PrecompileClient
    from test_precompiles import FOX, LEAF, OUTPUT, published

    owner, alice, bob, builder, user = [key for _, key in DEV_ACCOUNTS[:5]]
    with running_anvil(tmp_path / "l1") as anvil:
        address = anvil.deploy_inbox(BATCHER[1], BATCHER[0], genesis_hash())
        with running_node(tmp_path / "l2", **poster_config(anvil, address)) as l2:
            client = PrecompileClient(l2)
            d, _ = published(client, owner, [(alice, FOX), (bob, LEAF)])
            assert client.send(builder, POA, "registerModel", "m", [d], [1], b"\0" * 32, 1_000).ok
            receipt = client.send(user, POA, "attribute", 1, OUTPUT, value=10**18 + 7)
            assert len(receipt.named("RewardCredited")) == 2
            assert client.send(alice, POA, "claim").ok
            claimable = {key: client.call(POA, "claimable", Account.from_key(key).address) for key in (alice, bob, builder)}
            preview = client.call(POA, "previewAttribution", 1, OUTPUT)
            wait_posted(l2)
        done = replay(anvil, address, tmp_path / "audit")
        assert done.returncode == 0, done.stdout + done.stderr
        assert_same_chain(tmp_path / "l2", tmp_path / "audit")
        with running_node(tmp_path / "audit", mining=False) as audit:
            client = PrecompileClient(audit)
            assert {key: client.call(POA, "claimable", Account.from_key(key).address)
                    for key in (alice, bob, builder)} == claimable
            # The auditor's attribution index, built while replaying publishVersion, scores alike.
            assert client.call(POA, "previewAttribution", 1, OUTPUT) == preview


def test_replay_follow_serves_a_read_only_replica_that_keeps_up_with_l1(tmp_path: Path, batcher_key) -> None:
    from node_process import NodeProcess, kill_all

    with running_anvil(tmp_path / "l1") as anvil:
        address = anvil.deploy_inbox(BATCHER[1], BATCHER[0], genesis_hash())
        with running_node(tmp_path / "l2", **poster_config(anvil, address)) as l2:
            l2.wait_receipt(l2.rpc("eth_sendRawTransaction", sign(0, 0, "0x" + "44" * 20, value=5)))
            wait_posted(l2)
            follower = NodeProcess(replay_args(anvil, address, tmp_path / "replica", "--follow", "--http-port", "0"),
                                   tmp_path / "follower.log")
            try:
                follower.start().wait_ready(60)
                assert "replay done: " in follower.log()
                for nonce in range(1, 4):
                    l2.wait_receipt(l2.rpc("eth_sendRawTransaction", sign(0, nonce, "0x" + "44" * 20, value=5)))
                head = wait_posted(l2)["unsafe_l2"]
                wait_until(lambda: follower.rpc("eth_blockNumber") == head["number"], lambda: follower.log()[-2000:])
                assert follower.rpc("eth_getBlockByNumber", head["number"], False)["hash"] == head["hash"]
                assert follower.rpc("eth_getBalance", "0x" + "44" * 20, "latest") == hex(20)
                status = follower.rpc("ol_syncStatus")
                assert status["posted_l2"]["hash"] == head["hash"] and status["poster"]["mode"] == "follower"
                refused = follower.rpc.request("eth_sendRawTransaction", sign(1, 0, "0x" + "44" * 20))
                assert "read-only replica" in refused["error"]["message"]
                follower.signal(2)
                assert follower.wait() == 0
            finally:
                kill_all()


def test_safe_and_finalized_l2_heads_follow_l1s_safe_and_finalized_blocks(tmp_path: Path, batcher_key) -> None:
    """ol_syncStatus names, as OP's optimism_syncStatus does, the L2 blocks that L1's safe and
    finalized blocks hold (anvil: 32 and 64 blocks behind its head), on the sequencer and on
    a following replica: null until L1 settles a batch, then the posted head once it has."""
    from node_process import NodeProcess, kill_all

    def settled(node: RunningNode | Any, key: str, want: str | None) -> dict[str, Any]:
        def status() -> dict[str, Any] | None:
            found = node.rpc("ol_syncStatus")
            return found if (found[key] and found[key]["number"]) == want else None
        return wait_until(status, lambda: f"{key} is not {want}: {node.rpc('ol_syncStatus')}")

    with running_anvil(tmp_path / "l1") as anvil:
        address = anvil.deploy_inbox(BATCHER[1], BATCHER[0], genesis_hash())
        with running_node(tmp_path / "l2", **poster_config(anvil, address)) as l2:
            for nonce in range(2):
                l2.wait_receipt(l2.rpc("eth_sendRawTransaction", sign(0, nonce, "0x" + "45" * 20, value=5)))
            posted = wait_posted(l2)["posted_l2"]
            follower = NodeProcess(replay_args(anvil, address, tmp_path / "replica", "--follow", "--http-port", "0",
                                               "--poll-seconds", "0.2"), tmp_path / "follower.log")
            try:
                follower.start().wait_ready(60)
                # L1's safe block is older than the inbox: nothing is settled yet.
                status = settled(l2, "posted_l2", posted["number"])
                assert status["safe_l2"] is None and status["finalized_l2"] is None, status
                assert status["poster"]["safeBlock"] is None and status["poster"]["finalizedBlock"] is None
                assert follower.rpc("ol_syncStatus")["finalized_l2"] is None

                anvil.rpc("anvil_mine", hex(32))  # the batch is now in L1's safe block, not its finalized one
                status = settled(l2, "safe_l2", posted["number"])
                assert status["safe_l2"]["hash"] == posted["hash"] and status["finalized_l2"] is None, status
                replica = settled(follower, "safe_l2", posted["number"])
                assert replica["safe_l2"]["hash"] == posted["hash"] and replica["finalized_l2"] is None, replica

                anvil.rpc("anvil_mine", hex(32))
                status = settled(l2, "finalized_l2", posted["number"])
                assert status["finalized_l2"]["hash"] == posted["hash"], status
                assert status["poster"]["finalizedBlock"] == posted["number"]
                metrics = l2.client.get(l2.url + "/metrics").text
                assert f"openledger_l1_finalized_block {float(int(posted['number'], 16))}" in metrics
                assert f"openledger_l1_safe_block {float(int(posted['number'], 16))}" in metrics
                assert settled(follower, "finalized_l2", posted["number"])["finalized_l2"]["hash"] == posted["hash"]
                follower.signal(2)
                assert follower.wait() == 0
            finally:
                kill_all()


def test_replay_and_follow_up_to_l1s_finalized_block_only(tmp_path: Path, batcher_key) -> None:
    """``--l1-head finalized`` reads only batches that an L1 reorganisation can no longer drop:
    none while L1's finalized block (anvil: 64 blocks behind its head) predates them; all of
    them, resuming the same datadir, once L1 has moved on; and a ``--follow`` replica verifies a
    new batch only once L1 has finalized it."""
    from node_process import NodeProcess, kill_all

    with running_anvil(tmp_path / "l1") as anvil:
        address = anvil.deploy_inbox(BATCHER[1], BATCHER[0], genesis_hash())
        with running_node(tmp_path / "l2", **poster_config(anvil, address)) as l2:
            for nonce in range(2):
                l2.wait_receipt(l2.rpc("eth_sendRawTransaction", sign(0, nonce, "0x" + "46" * 20, value=5)))
            posted = wait_posted(l2)["posted_l2"]
            batches = len(anvil.batch_records(address))

            done = replay(anvil, address, tmp_path / "audit", "--l1-head", "finalized")
            assert done.returncode == 0, done.stdout + done.stderr
            assert "replay done: 0 batches, 0 blocks" in done.stdout and "finalized block 0" in done.stdout

            anvil.rpc("anvil_mine", hex(64))
            done = replay(anvil, address, tmp_path / "audit", "--l1-head", "finalized")  # the same datadir: resumes
            assert done.returncode == 0, done.stdout + done.stderr
            assert f"replay done: {batches} batches" in done.stdout
            assert f"head block {int(posted['number'], 16)} {posted['hash']}" in done.stdout

            follower = NodeProcess(replay_args(anvil, address, tmp_path / "replica", "--l1-head", "finalized",
                                               "--follow", "--http-port", "0", "--poll-seconds", "0.2"),
                                   tmp_path / "follower.log")
            try:
                follower.start().wait_ready(60)
                assert follower.rpc("eth_blockNumber") == posted["number"]
                l2.wait_receipt(l2.rpc("eth_sendRawTransaction", sign(0, 2, "0x" + "46" * 20, value=5)))
                newer = wait_posted(l2)["posted_l2"]
                assert int(newer["number"], 16) > int(posted["number"], 16)
                # The follower has read L1 up to the finalized block of an L1 head that holds the new batch...
                after = int(anvil.rpc("eth_blockNumber"), 16) - 64
                wait_until(lambda: int((follower.rpc("ol_syncStatus")["current_l1"] or {"number": "0x0"})["number"], 16)
                           >= after, lambda: follower.log()[-2000:])
                # ... which does not finalize it yet: nothing new is verified.
                assert follower.rpc("eth_blockNumber") == posted["number"]
                anvil.rpc("anvil_mine", hex(64))
                wait_until(lambda: follower.rpc("eth_blockNumber") == newer["number"], lambda: follower.log()[-2000:])
                assert follower.rpc("eth_getBlockByNumber", newer["number"], False)["hash"] == newer["hash"]
                follower.signal(2)
                assert follower.wait() == 0
            finally:
                kill_all()


def test_a_block_too_big_for_one_l1_transaction_goes_in_frames_and_replays(tmp_path: Path, batcher_key) -> None:
    import os

    with running_anvil(tmp_path / "l1") as anvil:
        address = anvil.deploy_inbox(BATCHER[1], BATCHER[0], genesis_hash())
        # Frames an earlier poster left for batch 0 that the batch will not continue.
        asyncio.run(_send_calldata(anvil, address, inbox.FrameCall(0, 0, b"stale frame").encode()))
        config = {**poster_config(anvil, address), "batch_max_bytes": 1000}
        with running_node(tmp_path / "l2", **config) as l2:
            big = sign(0, 0, "0x" + "66" * 20, data=os.urandom(3000), gas=300_000)
            l2.wait_receipt(l2.rpc("eth_sendRawTransaction", big))
            l2.wait_receipt(l2.rpc("eth_sendRawTransaction", sign(1, 0, "0x" + "66" * 20, value=1)))
            wait_posted(l2)
        records = anvil.batch_records(address)
        assert max(r.frames for r in records) >= 4  # 3,000 random bytes in parts of at most 1,000
        assert all(r.frames == 1 for r in records if r.first_block != r.last_block)
        discarded = anvil.rpc("eth_getLogs", {"address": address, "topics": ["0x" + inbox.DISCARD_EVENT_TOPIC.hex()],
                                              "fromBlock": "0x0", "toBlock": "latest"})
        assert len(discarded) == 1  # the stale frame, before batch 0
        done = replay(anvil, address, tmp_path / "audit")
        assert done.returncode == 0, done.stdout + done.stderr
        assert assert_same_chain(tmp_path / "l2", tmp_path / "audit") == records[-1].last_block


async def _send_calldata(anvil: Anvil, address: str, calldata: bytes) -> None:
    l1 = L1Client(anvil.url)
    try:
        await send(l1, BATCHER[1], address, calldata)
    finally:
        await l1.close()
