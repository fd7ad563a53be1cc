#!/usr/bin/env python
"""Calibrate the gas of the attribution precompiles against ERC-20 transfers.

The design's rule: a block full of attribution calls must take no longer to execute than
a block full of ERC-20 transfers.  This script runs both through the node's own block
building (``Blockchain.build_block``: py-evm with the precompiles, a real LevelDB
datadir) and prints, per workload, gas per transaction, execution time per transaction
and nanoseconds per unit of gas, with the ratio to the ERC-20 figure.  A ratio at or
below 1.0 means the gas schedule is at least as expensive, per second of work, as
ERC-20 transfers; above 1.0, the precompile is underpriced and its constant should grow.

Workloads (all real signed EIP-1559 transactions, on the devnet genesis):
  erc20        TestToken.transfer to fresh recipients (the peer)
  transfer     plain value transfers (21,000 gas: shows the fixed cost of any transaction,
               signature recovery, receipt, which dominates cheap calls such as claim)
  contribute   DatanetRegistry.contribute, 200-2,000-token contributions (the corpus)
  review       DatanetRegistry.review(accept)
  publish      DatanetRegistry.publishVersion: builds the version's suffix-array index
  attribute    ProofOfAttribution.attribute of 1,000-token outputs, half quoted passages
  attr-miss    the same with outputs of fresh words (nothing to credit: the treasury)
  attr-2v      attribute over a model with two versions (two indexes searched)
  claim        ProofOfAttribution.claim

The corpus is the deterministic one of scripts/bench_attribution.py (seeded).  The last
lines print, for each work constant, the value that would make its workload's ratio 1.0.

    python scripts/calibrate_attribution_gas.py                 # 200K-token version
    python scripts/calibrate_attribution_gas.py --tokens 1M --calls 40
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from eth_abi import encode  # noqa: E402
from eth_account import Account  # noqa: E402
from eth_utils import keccak, to_checksum_address  # noqa: E402

from bench_attribution import Corpus, parse_size  # noqa: E402
from openledger_node.chain.chain import Blockchain, contract_address  # noqa: E402
from openledger_node.chain.genesis import load_genesis  # noqa: E402
from openledger_node.contracts import CONTRACTS_DIR, compile_contracts  # noqa: E402
from openledger_node.devkeys import DEV_ACCOUNTS  # noqa: E402
from openledger_node.precompiles import attribution as poa_module  # noqa: E402
from openledger_node.precompiles import registry as registry_module  # noqa: E402
from openledger_node.precompiles.abi import load  # noqa: E402

REGISTRY = load("IDatanetRegistry")
POA = load("IProofOfAttribution")
A01 = "0x0000000000000000000000000000000000000a01"
A02 = "0x0000000000000000000000000000000000000a02"
CHAIN_ID = 1612


class Chain:
    """Signs, seals and times blocks on a fresh devnet datadir."""

    def __init__(self, datadir: Path):
        self.chain = Blockchain.init(datadir, load_genesis(REPO / "genesis" / "devnet.json"))
        self.nonces: dict[str, int] = {}
        self.timestamp = self.chain.head.timestamp
        self.overhead = 0.0
        self.overhead = self.empty_block_seconds()

    def tx(self, key: str, to: str | None, data: bytes, value: int = 0, gas: int = 29_900_000):
        sender = Account.from_key(key).address
        nonce = self.nonces.get(sender, 0)
        self.nonces[sender] = nonce + 1
        fields = {"type": 2, "chainId": CHAIN_ID, "nonce": nonce, "data": data, "value": value, "gas": gas,
                  "maxFeePerGas": 100 * 10**9, "maxPriorityFeePerGas": 1}
        if to is not None:
            fields["to"] = to_checksum_address(to)
        return self.chain.decode_transaction(Account.sign_transaction(fields, key).raw_transaction)

    def empty_block_seconds(self, blocks: int = 10) -> float:
        """Time to seal a block with no transaction (subtracted per block from workloads,
        so that a workload of a few transactions is not charged a whole block's overhead)."""
        samples = []
        for _ in range(blocks):
            self.timestamp += 1
            started = time.perf_counter()
            self.chain.build_block([], timestamp=self.timestamp, coinbase=b"\x00" * 20)
            samples.append(time.perf_counter() - started)
        return statistics.median(samples)

    def seal(self, txs) -> tuple[float, int, list]:
        """Seal ``txs`` into as many blocks as needed; (seconds, gas used, receipts),
        the seconds net of the empty-block overhead."""
        seconds, gas, receipts = 0.0, 0, []
        pending = list(txs)
        while pending:
            self.timestamp += 1
            started = time.perf_counter()
            sealed = self.chain.build_block(pending, timestamp=self.timestamp, coinbase=b"\x00" * 20)
            seconds += time.perf_counter() - started - self.overhead
            if sealed.rejected:
                raise RuntimeError(f"rejected: {sealed.rejected[0][1]}")
            gas += sealed.block.header.gas_used
            receipts.extend(sealed.receipts)
            done = len(sealed.block.transactions)
            if done == 0:
                raise RuntimeError("no transaction fits in a block")
            pending = pending[done:]
        for receipt in receipts:
            if receipt.state_root != b"\x01":
                raise RuntimeError("a transaction failed: the workload is wrong")
        return seconds, gas, receipts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", default="200K", help="tokens in the Datanet version [200K]")
    parser.add_argument("--calls", type=int, default=30, help="attribute calls per workload [30]")
    parser.add_argument("--transfers", type=int, default=600, help="ERC-20 transfers [600]")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    tokens = parse_size(args.tokens)
    keys = [key for _, key in DEV_ACCOUNTS]
    owner, builder, user = keys[0], keys[1], keys[2]
    contributors = keys[3:]
    rows: list[tuple[str, int, int, float]] = []  # (workload, txs, gas, seconds)

    with tempfile.TemporaryDirectory() as tmp:
        chain = Chain(Path(tmp) / "data")
        # -- the peer: ERC-20 transfers ------------------------------------------------
        token = compile_contracts([CONTRACTS_DIR / "TestToken.sol"])["TestToken"]
        deploy = bytes.fromhex(token["bytecode"][2:]) + encode(["uint256"], [10**30])
        chain.seal([chain.tx(owner, None, deploy, gas=3_000_000)])
        token_address = "0x" + contract_address(bytes.fromhex(Account.from_key(owner).address[2:]), 0).hex()
        transfer = keccak(text="transfer(address,uint256)")[:4]
        txs = [chain.tx(owner, token_address, transfer + encode(["address", "uint256"], [(i + 1000).to_bytes(20, "big"), 1]),
                        gas=100_000) for i in range(args.transfers)]
        seconds, gas, _ = chain.seal(txs)
        rows.append(("erc20", len(txs), gas, seconds))
        txs = [chain.tx(keys[1], "0x" + (i + 5000).to_bytes(20, "big").hex(), b"", value=1, gas=21_000)
               for i in range(args.transfers)]
        seconds, gas, _ = chain.seal(txs)
        rows.append(("transfer", len(txs), gas, seconds))

        # -- a Datanet of `tokens` tokens --------------------------------------------------
        corpus = Corpus(tokens, args.seed)
        chain.seal([chain.tx(owner, A01, REGISTRY.functions["createDatanet"].encode_call("bench", "", 0))])
        txs = [chain.tx(contributors[k % len(contributors)], A01, REGISTRY.functions["contribute"].encode_call(1, data))
               for k, data in corpus.contributions()]
        seconds, gas, _ = chain.seal(txs)
        rows.append(("contribute", len(txs), gas, seconds))
        txs = [chain.tx(owner, A01, REGISTRY.functions["review"].encode_call(1, c, True)) for c in range(1, len(corpus) + 1)]
        seconds, gas, _ = chain.seal(txs)
        rows.append(("review", len(txs), gas, seconds))
        chain.chain.openledger.indexes._cache.clear()
        seconds, gas, _ = chain.seal([chain.tx(owner, A01, REGISTRY.functions["publishVersion"].encode_call(1))])
        rows.append(("publish", 1, gas, seconds))
        # A second, small Datanet for the two-version model.
        chain.seal([chain.tx(owner, A01, REGISTRY.functions["createDatanet"].encode_call("small", "", 0))])
        small = Corpus(20_000, args.seed + 1)
        chain.seal([chain.tx(contributors[0], A01, REGISTRY.functions["contribute"].encode_call(2, data))
                    for _, data in small.contributions()])
        chain.seal([chain.tx(owner, A01, REGISTRY.functions["review"].encode_call(2, c, True)) for c in range(1, len(small) + 1)])
        chain.seal([chain.tx(owner, A01, REGISTRY.functions["publishVersion"].encode_call(2))])
        chain.seal([chain.tx(builder, A02, POA.functions["registerModel"].encode_call("one", [1], [1], b"\0" * 32, 1000)),
                    chain.tx(builder, A02, POA.functions["registerModel"].encode_call("two", [1, 2], [1, 1], b"\0" * 32, 1000))])

        # -- attribution -------------------------------------------------------------------
        rng = np.random.default_rng(args.seed)
        outputs = [corpus.output(rng) for _ in range(args.calls)]
        fresh = Corpus(2_000 * args.calls, args.seed + 99)  # its own vocabulary draw: few long matches
        misses = [fresh.text(fresh.tokens[i * 1000:(i + 1) * 1000]) for i in range(args.calls)]
        for name, model, batch in (("attribute", 1, outputs), ("attr-miss", 1, misses), ("attr-2v", 2, outputs)):
            txs = [chain.tx(user, A02, POA.functions["attribute"].encode_call(model, out), value=10**15) for out in batch]
            seconds, gas, _ = chain.seal(txs)
            rows.append((name, len(txs), gas, seconds))
        claimers = sorted({k for k in contributors[: min(len(contributors), len(corpus))]})
        txs = [chain.tx(k, A02, POA.functions["claim"].encode_call()) for k in claimers + [builder]]
        seconds, gas, _ = chain.seal(txs)
        rows.append(("claim", len(txs), gas, seconds))
        overhead = chain.overhead
        chain.chain.close()

    erc20_ns_per_gas = rows[0][3] * 1e9 / rows[0][2]
    print(f"Datanet version: {tokens:,} tokens in {len(corpus)} contributions; outputs of 1,000 tokens; "
          f"empty block: {overhead * 1e3:.2f} ms (subtracted per block)")
    print(f"{'workload':<11} {'txs':>5} {'gas/tx':>10} {'µs/tx':>9} {'ns/gas':>7} {'vs ERC-20':>9}")
    for name, count, gas, seconds in rows:
        ns_per_gas = seconds * 1e9 / gas
        print(f"{name:<11} {count:>5} {gas // count:>10,} {seconds * 1e6 / count:>9,.0f} {ns_per_gas:>7.1f} "
              f"{ns_per_gas / erc20_ns_per_gas:>9.2f}")
    by_name = {name: (count, gas, seconds) for name, count, gas, seconds in rows}

    def needed(workload: str, units: int, constant: int) -> int:
        """The constant that makes ``workload`` cost as much per second as ERC-20."""
        count, gas, seconds = by_name[workload]
        deficit = seconds * 1e9 / erc20_ns_per_gas - gas  # gas it should have used, minus what it used
        return max(constant, round(constant + deficit / units))

    publish_tokens = tokens
    print()
    print("constant                     now  for ratio 1.0")
    print(f"INDEX_GAS_PER_TOKEN     {registry_module.INDEX_GAS_PER_TOKEN:>8} "
          f"{needed('publish', publish_tokens, registry_module.INDEX_GAS_PER_TOKEN):>14}")
    search_units = args.calls * 1000
    print(f"SEARCH_GAS_PER_TOKEN    {poa_module.SEARCH_GAS_PER_TOKEN:>8} "
          f"{needed('attribute', search_units, poa_module.SEARCH_GAS_PER_TOKEN):>14}")
    print(f"  (two versions)        {poa_module.SEARCH_GAS_PER_TOKEN:>8} "
          f"{needed('attr-2v', 2 * search_units, poa_module.SEARCH_GAS_PER_TOKEN):>14}")
    print(f"erc20: {erc20_ns_per_gas:.1f} ns/gas, {statistics.mean([by_name['erc20'][2] * 1e6 / by_name['erc20'][0]]):.0f} µs per transfer")


if __name__ == "__main__":
    main()
