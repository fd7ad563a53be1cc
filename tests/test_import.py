"""`openledger-node import`: the execution-apis suite's chain file through the CLI and the
importer, and refusal of corrupted copies ("block N: <reason>", non-zero exit)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import rlp

from openledger_node.chain.chain import Blockchain
from openledger_node.chain.genesis import load_genesis
from openledger_node.chain.importer import ImportError_, import_chain, split_blocks

SUITE = Path(__file__).resolve().parent.parent.parent / "shared" / "conformance" / "execution-apis"
GENESIS_HASH = "0x79e0f5ffb6a0c9f54d507dbbadc935603ac1db86d32f7857472180a75ec11f90"



def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "openledger_node.cli", *args], capture_output=True, text=True, timeout=300)


def head_hash() -> str:
    return json.loads((SUITE / "headfcu.json").read_text())["params"][0]["headBlockHash"]


def blocks() -> list[bytes]:
    return list(split_blocks((SUITE / "chain.rlp").read_bytes()))


def fresh_chain(tmp_path: Path) -> Blockchain:
    return Blockchain.init(tmp_path / "data", load_genesis(SUITE / "genesis.json"))


def test_init_and_import_through_the_cli(tmp_path: Path) -> None:
    datadir = tmp_path / "data"
    init = cli("init", "--genesis", str(SUITE / "genesis.json"), "--datadir", str(datadir))
    assert init.returncode == 0, init.stderr
    assert GENESIS_HASH in init.stdout  # geth's genesis hash for the suite's genesis
    done = cli("import", "--datadir", str(datadir), str(SUITE / "chain.rlp"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 46 and lines[0].startswith("imported block 1 ")
    assert lines[-1].startswith("import done: 45 blocks imported, 0 already present, 160 txs")
    assert lines[-1].endswith(f"head block 45 {head_hash()}")
    again = cli("import", "--quiet", "--datadir", str(datadir), str(SUITE / "chain.rlp"))
    assert again.returncode == 0 and "0 blocks imported, 45 already present" in again.stdout


def _corrupt(index: int, change) -> bytes:
    items = blocks()
    block = rlp.decode(items[index])
    change(block)
    items[index] = rlp.encode(block)
    return b"".join(items)


def _set_header(field: int, value: bytes):
    def change(block) -> None:
        block[0][field] = value
    return change


@pytest.mark.parametrize(
    "index, change, reason",
    [
        (9, _set_header(3, b"\x11" * 32), "state_root"),  # block 10: wrong state root
        (26, _set_header(5, b"\x22" * 32), "receipt_root"),  # block 27 (London): wrong receipts root
        (44, _set_header(20, b"\x33" * 32), "requests_hash"),  # block 45 (Prague): wrong requests hash
        (40, _set_header(7, b"\x00\x01"), "difficulty"),  # block 41 (post-merge): non-zero difficulty
        (4, _set_header(11, (1).to_bytes(1, "big")), "timestamp"),  # block 5: timestamp before its parent's
        (29, lambda b: b[1].pop(), "transaction_root"),  # block 30: a transaction dropped
    ],
    ids=["state-root", "receipts-root", "requests-hash", "pos-difficulty", "timestamp", "missing-tx"],
)
def test_a_bad_block_is_refused_with_its_number(tmp_path: Path, index: int, change, reason: str) -> None:
    chain = fresh_chain(tmp_path)
    try:
        with pytest.raises(ImportError_) as failure:
            import_chain(chain, _corrupt(index, change))
        assert str(failure.value).startswith(f"block {index + 1}: ")
        assert failure.value.imported == index
        assert chain.head.block_number == index  # every block before it is in, the bad one is not
    finally:
        chain.close()


def test_cli_refuses_a_corrupted_file(tmp_path: Path) -> None:
    datadir = tmp_path / "data"
    assert cli("init", "--genesis", str(SUITE / "genesis.json"), "--datadir", str(datadir)).returncode == 0
    bad = tmp_path / "bad.rlp"
    bad.write_bytes(_corrupt(9, _set_header(3, b"\x11" * 32)))
    done = cli("import", "--datadir", str(datadir), str(bad))
    assert done.returncode != 0
    assert "error: block 10: " in done.stderr and "state_root" in done.stderr
    assert "imported 9 blocks before the error; head is block 9" in done.stderr


def test_truncated_and_garbage_files(tmp_path: Path) -> None:
    data = (SUITE / "chain.rlp").read_bytes()
    chain = fresh_chain(tmp_path)
    try:
        with pytest.raises(ImportError_, match="truncated RLP"):
            import_chain(chain, data[:-10])
        with pytest.raises(ImportError_, match="a block must be an RLP list"):
            import_chain(chain, b"\x85hello")
        assert chain.head.block_number == 0  # a damaged file changes nothing
    finally:
        chain.close()


def test_the_seal_is_the_only_check_skipped(tmp_path: Path) -> None:
    """With the proof-of-work seal checked, the suite's fake pre-merge seals are refused."""
    chain = fresh_chain(tmp_path)
    try:
        with pytest.raises(ImportError_, match=r"^block 1: .*(mix hash|nonce|seal|difficulty)"):
            import_chain(chain, (SUITE / "chain.rlp").read_bytes(), check_seal=True)
    finally:
        chain.close()


def test_unknown_parent(tmp_path: Path) -> None:
    chain = fresh_chain(tmp_path)
    try:
        with pytest.raises(ImportError_, match="^block 3: unknown parent 0x"):
            import_chain(chain, b"".join(blocks()[2:5]))
    finally:
        chain.close()
