"""BatchInbox on a real anvil: who may append, contiguity, what is recorded and emitted."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from eth_hash.auto import keccak

from anvil_process import running_anvil
from openledger_node.contracts import CONTRACTS_DIR, compile_contracts
from openledger_node.devkeys import DEV_ACCOUNTS
from openledger_node.settlement import inbox
from openledger_node.settlement.inbox import AppendCall
from openledger_node.settlement.l1 import L1Client, L1RPCError
from test_settlement_replay import send

BATCHER, STRANGER = DEV_ACCOUNTS[0], DEV_ACCOUNTS[1]
GENESIS = b"\x47" * 32


def test_the_signatures_written_in_python_match_the_compiled_abi() -> None:
    abi = compile_contracts([CONTRACTS_DIR / "BatchInbox.sol"])["BatchInbox"]["abi"]

    def signature(entry) -> str:
        return f"{entry['name']}({','.join(i['type'] for i in entry['inputs'])})"

    by_type = {kind: {signature(e) for e in abi if e["type"] == kind} for kind in ("function", "event", "error")}
    assert {inbox.APPEND_SIGNATURE, inbox.FRAME_SIGNATURE, inbox.DISCARD_SIGNATURE} <= by_type["function"]
    assert {"batchCount()", "nextBlock()", "batcher()", "l2Genesis()", "pendingFrames()", "batch(uint256)"} \
        <= by_type["function"]
    assert by_type["event"] == {inbox.EVENT_SIGNATURE, inbox.FRAME_EVENT_SIGNATURE, inbox.DISCARD_EVENT_SIGNATURE}
    assert by_type["error"] == set(inbox.ERRORS)


@pytest.fixture
def l1(tmp_path: Path):
    with running_anvil(tmp_path / "l1") as anvil:
        yield anvil, anvil.deploy_inbox(BATCHER[1], BATCHER[0], GENESIS)


def call(anvil, address: str, sender: str, data: bytes) -> str:
    """The contract's answer to an eth_call from ``sender``: "ok" or its custom error."""
    async def go() -> str:
        client = L1Client(anvil.url)
        try:
            await client.call("eth_call", {"from": sender, "to": address, "data": "0x" + data.hex()}, "latest")
            return "ok"
        except L1RPCError as exc:
            return inbox.describe_revert(exc.data)
        finally:
            await client.close()

    return asyncio.run(go())


def append(anvil, address: str, batch: AppendCall, key: str = BATCHER[1]) -> None:
    async def go() -> None:
        client = L1Client(anvil.url)
        try:
            await send(client, key, address, batch.encode())
        finally:
            await client.close()

    asyncio.run(go())


def test_only_the_batcher_appends_contiguous_batches(l1) -> None:
    anvil, address = l1
    first = AppendCall(0, 1, 4, b"\x01" * 32, b"\x02" * 32, b"batch zero")
    assert call(anvil, address, STRANGER[0], first.encode()) == f"NotBatcher({STRANGER[0].lower()})"
    assert call(anvil, address, BATCHER[0], AppendCall(1, 1, 4, b"", b"", b"x").encode()) == "UnexpectedIndex(0, 1)"
    assert call(anvil, address, BATCHER[0], AppendCall(0, 2, 4, b"", b"", b"x").encode()) == "UnexpectedFirstBlock(1, 2)"
    assert call(anvil, address, BATCHER[0], AppendCall(0, 1, 0, b"", b"", b"x").encode()) == "EmptyRange(1, 0)"
    assert call(anvil, address, BATCHER[0], AppendCall(0, 1, 1, b"", b"", b"").encode()) == "EmptyData()"
    assert call(anvil, address, BATCHER[0], first.encode()) == "ok"
    append(anvil, address, first)
    # The same batch again (a retry whose first attempt was included) reverts.
    assert call(anvil, address, BATCHER[0], first.encode()) == "UnexpectedIndex(1, 0)"
    assert call(anvil, address, BATCHER[0], AppendCall(1, 4, 6, b"", b"", b"x").encode()) == "UnexpectedFirstBlock(5, 4)"
    append(anvil, address, AppendCall(1, 5, 5, b"\x03" * 32, b"\x04" * 32, b"batch one"))
    assert inbox.decode_uint(anvil.call(address, inbox.BATCH_COUNT)) == 2
    assert inbox.decode_uint(anvil.call(address, inbox.NEXT_BLOCK)) == 6
    assert anvil.call(address, inbox.L2_GENESIS) == GENESIS

    records = anvil.batch_records(address)
    assert [(r.index, r.first_block, r.last_block) for r in records] == [(0, 1, 4), (1, 5, 5)]
    zero = records[0]
    assert zero.data_hash == keccak(b"batch zero")
    assert (zero.state_root, zero.block_hash) == (b"\x01" * 32, b"\x02" * 32)
    assert zero.output_root == inbox.output_root(b"\x01" * 32, b"\x02" * 32)
    stored = anvil.call(address, inbox.call_data("batch(uint256)", ["uint256"], [0]))
    import eth_abi

    first_block, last_block, l1_block, output_root, data_hash = eth_abi.decode(
        ["uint64", "uint64", "uint64", "bytes32", "bytes32"], stored)
    assert (first_block, last_block, l1_block) == (1, 4, zero.l1_block)
    assert (output_root, data_hash) == (zero.output_root, zero.data_hash)
    assert call(anvil, address, BATCHER[0], inbox.call_data("batch(uint256)", ["uint256"], [2])) == "NoSuchBatch(2)"


def test_deploy_inbox_command_deploys_for_the_datadirs_chain(tmp_path: Path, monkeypatch) -> None:
    from node_process import init_datadir, run_cli

    genesis = bytes.fromhex(init_datadir(tmp_path / "l2")[2:])
    monkeypatch.setenv("OPENLEDGER_BATCHER_KEY", STRANGER[1])
    with running_anvil(tmp_path / "l1") as anvil:
        done = run_cli("deploy-inbox", "--l1-rpc", anvil.url, "--datadir", str(tmp_path / "l2"),
                       "--batcher", BATCHER[0])
        assert done.returncode == 0, done.stderr
        address = done.stdout.strip()
        assert anvil.call(address, inbox.L2_GENESIS) == genesis
        assert inbox.decode_address(anvil.call(address, inbox.BATCHER)).hex() == BATCHER[0][2:].lower()


def test_the_batcher_key_comes_from_a_keystore_or_the_environment(tmp_path: Path, monkeypatch) -> None:
    import json

    from eth_account import Account

    from openledger_node.settlement.poster import PosterConfigError, load_batcher_key

    key = bytes.fromhex(BATCHER[1][2:])
    keystore = tmp_path / "batcher.json"
    keystore.write_text(json.dumps(Account.encrypt(key, "s3cret", iterations=2)))
    monkeypatch.delenv("OPENLEDGER_BATCHER_KEY", raising=False)
    monkeypatch.delenv("OPENLEDGER_BATCHER_PASSWORD", raising=False)
    with pytest.raises(PosterConfigError, match="OPENLEDGER_BATCHER_PASSWORD"):
        load_batcher_key(keystore)
    monkeypatch.setenv("OPENLEDGER_BATCHER_PASSWORD", "wrong")
    with pytest.raises(PosterConfigError, match="cannot decrypt keystore"):
        load_batcher_key(keystore)
    monkeypatch.setenv("OPENLEDGER_BATCHER_PASSWORD", "s3cret")
    assert load_batcher_key(keystore) == key
    with pytest.raises(PosterConfigError, match="OPENLEDGER_BATCHER_KEY"):
        load_batcher_key(None)
    monkeypatch.setenv("OPENLEDGER_BATCHER_KEY", "0x1234")
    with pytest.raises(PosterConfigError, match="32-byte"):
        load_batcher_key(None)
    monkeypatch.setenv("OPENLEDGER_BATCHER_KEY", BATCHER[1])
    assert load_batcher_key(None) == key


def test_run_with_an_l1_but_no_batcher_key_fails_in_one_line(tmp_path: Path, monkeypatch) -> None:
    from node_process import init_datadir, run_cli

    init_datadir(tmp_path / "l2")
    monkeypatch.delenv("OPENLEDGER_BATCHER_KEY", raising=False)
    done = run_cli("run", "--datadir", str(tmp_path / "l2"), "--http-port", "0", "--l1-rpc", "http://127.0.0.1:9",
                   "--l1-inbox", "0x" + "11" * 20)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("error: the batcher key is needed")
    assert "Traceback" not in done.stderr
    done = run_cli("run", "--datadir", str(tmp_path / "l2"), "--l1-rpc", "http://127.0.0.1:9")
    assert done.returncode == 1 and "--l1-rpc needs --l1-inbox" in done.stderr


def test_a_batch_in_frames_records_the_hash_chain_of_its_parts(l1) -> None:
    anvil, address = l1
    frame = lambda index, number, data: inbox.FrameCall(index, number, data).encode()  # noqa: E731
    assert call(anvil, address, BATCHER[0], frame(0, 1, b"a")) == "UnexpectedFrame(0, 1)"
    assert call(anvil, address, STRANGER[0], frame(0, 0, b"a")) == f"NotBatcher({STRANGER[0].lower()})"
    assert call(anvil, address, BATCHER[0], frame(1, 0, b"a")) == "UnexpectedIndex(0, 1)"
    assert call(anvil, address, BATCHER[0], frame(0, 0, b"")) == "EmptyData()"
    append_raw(anvil, address, frame(0, 0, b"stale"))
    append_raw(anvil, address, inbox.discard_call(0))  # a poster that could not continue them
    assert inbox.decode_uint(anvil.call(address, inbox.PENDING_FRAMES)) == 0
    append_raw(anvil, address, frame(0, 0, b"part one "))
    append_raw(anvil, address, frame(0, 1, b"part two "))
    assert inbox.decode_uint(anvil.call(address, inbox.PENDING_FRAMES)) == 2
    append(anvil, address, AppendCall(0, 1, 3, b"\x01" * 32, b"\x02" * 32, b"and the end"))
    assert inbox.decode_uint(anvil.call(address, inbox.PENDING_FRAMES)) == 0
    (record,) = anvil.batch_records(address)
    assert record.frames == 3
    assert record.data_hash == inbox.frames_hash([b"part one ", b"part two ", b"and the end"])
    # The next batch starts without frames: its dataHash is the plain keccak of its data.
    append(anvil, address, AppendCall(1, 4, 4, b"\x03" * 32, b"\x04" * 32, b"one part"))
    assert anvil.batch_records(address)[1].data_hash == keccak(b"one part")
    assert anvil.batch_records(address)[1].frames == 1


def append_raw(anvil, address: str, calldata: bytes, key: str = BATCHER[1]) -> None:
    async def go() -> None:
        client = L1Client(anvil.url)
        try:
            await send(client, key, address, calldata)
        finally:
            await client.close()

    asyncio.run(go())
