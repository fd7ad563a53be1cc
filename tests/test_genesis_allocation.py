"""The devnet genesis mints exactly 1,000,000,000 OPEN in the papers' allocation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from eth_account import Account

from openledger_node.devkeys import BUCKET_KEYS, DEV_ACCOUNTS, TREASURY_KEY, derive_dev_accounts

REPO_ROOT = Path(__file__).resolve().parent.parent
GENESIS_PATH = REPO_ROOT / "genesis" / "devnet.json"
SCRIPT = REPO_ROOT / "scripts" / "make_devnet_genesis.py"

TOTAL_SUPPLY = 10**27
EXPECTED_BPS = {"Community": 5171, "Investors": 1829, "Team": 1500, "Ecosystem": 1000, "Liquidity": 500}


@pytest.fixture(scope="module")
def genesis() -> dict:
    return json.loads(GENESIS_PATH.read_text())


def balances(genesis: dict) -> dict[str, int]:
    return {address: int(account["balance"], 16) for address, account in genesis["alloc"].items()}


def test_total_supply_is_one_billion_open(genesis: dict) -> None:
    assert sum(balances(genesis).values()) == TOTAL_SUPPLY


def test_each_bucket_sums_to_its_share(genesis: dict) -> None:
    allocation = genesis["config"]["openledger"]["allocation"]
    assert {entry["bucket"]: entry["bps"] for entry in allocation} == EXPECTED_BPS
    held = balances(genesis)
    listed = [address for entry in allocation for address in entry["accounts"]]
    assert len(listed) == len(set(listed)), "an account is in two buckets"
    for entry in allocation:
        assert sum(held[address] for address in entry["accounts"]) == entry["bps"] * TOTAL_SUPPLY // 10_000
        assert BUCKET_KEYS[entry["bucket"]][0] == entry["accounts"][0]


def test_dev_accounts_hold_10k_open_from_community(genesis: dict) -> None:
    held = balances(genesis)
    community = next(e for e in genesis["config"]["openledger"]["allocation"] if e["bucket"] == "Community")
    for address, _ in DEV_ACCOUNTS:
        assert held[address] == 10_000 * 10**18
        assert address in community["accounts"]


def test_dev_keys_derive_to_listed_addresses() -> None:
    assert len(DEV_ACCOUNTS) == 10
    assert DEV_ACCOUNTS[0][0] == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"  # anvil/hardhat account 0
    assert derive_dev_accounts() == DEV_ACCOUNTS
    for address, key in [*DEV_ACCOUNTS, *BUCKET_KEYS.values(), TREASURY_KEY]:
        assert Account.from_key(key).address == address


def test_chain_config(genesis: dict) -> None:
    config = genesis["config"]
    assert config["chainId"] == 1612
    assert config["pragueTime"] == config["cancunTime"] == config["londonBlock"] == 0
    assert config["openledger"]["treasury"] == TREASURY_KEY[0]
    assert genesis["gasLimit"] == hex(30_000_000)
    assert genesis["baseFeePerGas"] == hex(10**9)


def test_regenerating_reproduces_the_file(tmp_path: Path) -> None:
    out = tmp_path / "devnet.json"
    subprocess.run([sys.executable, str(SCRIPT), "--output", str(out)], check=True, capture_output=True)
    assert out.read_bytes() == GENESIS_PATH.read_bytes()
