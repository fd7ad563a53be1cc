#!/usr/bin/env python3
"""Generate genesis/devnet.json, deterministically (re-running reproduces it byte for byte).

The file is a geth-style genesis (so one loader reads it and geth genesis files),
with the OpenLedger token allocation under ``config.openledger``:

- 1,000,000,000 OPEN (10**27 wei) in total, split Community 51.71%, Investors 18.29%,
  Team 15%, Ecosystem 10%, Liquidity 5%; each bucket's amount is bps * 10**27 // 10000.
- Each bucket is held by its own (insecure, documented) devnet key, see
  ``openledger_node.devkeys``; the 10 anvil/hardhat dev accounts get 10,000 OPEN each,
  carved out of the Community bucket.
- The protocol treasury is an address only (no balance).
- The precompile accounts get code 0xfe and nonce 1 (as in Arbitrum): non-empty, so
  EIP-161 never deletes their storage, and with code, so Solidity's extcodesize
  check before calling a function without return values passes.

Usage: python scripts/make_devnet_genesis.py [--output genesis/devnet.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from eth_utils.address import to_checksum_address

from openledger_node.devkeys import BUCKET_KEYS, DEV_ACCOUNTS, TREASURY_KEY

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO_ROOT / "genesis" / "devnet.json"

CHAIN_ID = 1612
OPEN = 10**18
TOTAL_SUPPLY = 1_000_000_000 * OPEN
DEV_ACCOUNT_BALANCE = 10_000 * OPEN
ALLOCATION_BPS: dict[str, int] = {
    "Community": 5171,
    "Investors": 1829,
    "Team": 1500,
    "Ecosystem": 1000,
    "Liquidity": 500,
}
PRECOMPILE_ADDRESSES = (
    "0x0000000000000000000000000000000000000A01",  # DatanetRegistry
    "0x0000000000000000000000000000000000000A02",  # ProofOfAttribution
)
GENESIS_TIMESTAMP = 1_735_689_600  # 2025-01-01T00:00:00Z
ZERO_ADDRESS = "0x" + "00" * 20
ZERO_HASH = "0x" + "00" * 32

# EIP-4844/7691 blob parameters, as geth (>= 1.15) expects them in the config.
BLOB_SCHEDULE = {
    "cancun": {"target": 3, "max": 6, "baseFeeUpdateFraction": 3338477},
    "prague": {"target": 6, "max": 9, "baseFeeUpdateFraction": 5007716},
}


def bucket_balances() -> dict[str, dict[str, int]]:
    """{bucket: {address: wei}}; every bucket sums to exactly bps * TOTAL_SUPPLY // 10000."""
    assert sum(ALLOCATION_BPS.values()) == 10_000
    buckets: dict[str, dict[str, int]] = {}
    for bucket, bps in ALLOCATION_BPS.items():
        amount = bps * TOTAL_SUPPLY // 10_000
        accounts = {address: DEV_ACCOUNT_BALANCE for address, _ in DEV_ACCOUNTS} if bucket == "Community" else {}
        bucket_address = BUCKET_KEYS[bucket][0]
        buckets[bucket] = {bucket_address: amount - sum(accounts.values()), **accounts}
    return buckets


def build_genesis() -> dict[str, Any]:
    buckets = bucket_balances()
    alloc: dict[str, dict[str, str]] = {}
    for accounts in buckets.values():
        for address, wei in accounts.items():
            assert address not in alloc, address
            alloc[address] = {"balance": hex(wei)}
    for address in PRECOMPILE_ADDRESSES:
        alloc[to_checksum_address(address)] = {"balance": "0x0", "nonce": "0x1", "code": "0xfe"}

    fork_blocks = [
        "homesteadBlock", "eip150Block", "eip155Block", "eip158Block", "byzantiumBlock",
        "constantinopleBlock", "petersburgBlock", "istanbulBlock", "muirGlacierBlock",
        "berlinBlock", "londonBlock", "arrowGlacierBlock", "grayGlacierBlock", "mergeNetsplitBlock",
    ]  # fmt: skip
    config: dict[str, Any] = {"chainId": CHAIN_ID, **{name: 0 for name in fork_blocks}}
    config |= {
        "terminalTotalDifficulty": 0,
        "shanghaiTime": 0,
        "cancunTime": 0,
        "pragueTime": 0,
        "blobSchedule": BLOB_SCHEDULE,
        "openledger": {
            "treasury": TREASURY_KEY[0],
            "allocation": [
                {"bucket": bucket, "bps": ALLOCATION_BPS[bucket], "accounts": list(accounts)}
                for bucket, accounts in buckets.items()
            ],
        },
    }
    return {
        "config": config,
        "nonce": "0x0",
        "timestamp": hex(GENESIS_TIMESTAMP),
        "extraData": "0x" + b"OpenLedger devnet".hex(),
        "gasLimit": hex(30_000_000),
        "difficulty": "0x0",
        "mixHash": ZERO_HASH,
        "coinbase": ZERO_ADDRESS,
        "baseFeePerGas": hex(10**9),
        "number": "0x0",
        "gasUsed": "0x0",
        "parentHash": ZERO_HASH,
        "excessBlobGas": "0x0",
        "blobGasUsed": "0x0",
        "alloc": alloc,
    }


def render(genesis: dict[str, Any]) -> str:
    return json.dumps(genesis, indent=2) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render(build_genesis()))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
