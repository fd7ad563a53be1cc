#!/usr/bin/env python
"""Settlement benchmark: batch compression, L1 gas per L2 transaction, replay speed.

For each workload (plain transfers, ERC-20 transfers, Datanet contributions through the
0xA01 precompile) the script seals the transactions with the node's sequencer (blocks of
``--per-block``), posts the chain to a BatchInbox on a local anvil with the node's batch
poster, and replays it from L1 alone with the auditor.  It prints, per workload:

- the compression ratio (RLP bytes / batch bytes) of each codec tried, over the very
  block ranges the poster posted;
- L1 gas per L2 transaction (all batch transactions' gas, over all L2 transactions);
- the replay's execution speed against the sequencer's, on the same transactions, and
  against the same replay on py-evm's own VMs (the peer: ``chain.vm.stock_vms``).
  "seal" is the sequencer's block building alone (its peak); "admit+seal" adds the
  pool's admission (decoding, signature recovery, checks) that every transaction
  goes through before a block; "chain peak" is what the chain can carry at most: full
  blocks of the workload every ``--block-time`` seconds.

    .venv/bin/python scripts/bench_settlement.py [--txs 2000] [--per-block 200]
"""
from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import eth_abi  # noqa: E402
from eth_account import Account  # noqa: E402
from eth_utils import to_checksum_address  # noqa: E402

from anvil_process import running_anvil  # noqa: E402
from openledger_node.chain.chain import Blockchain, contract_address  # noqa: E402
from openledger_node.chain.genesis import load_genesis  # noqa: E402
from openledger_node.chain.vm import stock_vms  # noqa: E402
from openledger_node.contracts import CONTRACTS_DIR, compile_contracts  # noqa: E402
from openledger_node.devkeys import DEV_ACCOUNTS  # noqa: E402
from openledger_node.node import Node, NodeConfig  # noqa: E402
from openledger_node.settlement import codec  # noqa: E402
from openledger_node.settlement.l1 import L1Client  # noqa: E402
from openledger_node.settlement.poster import BatchPoster, PosterConfig  # noqa: E402
from openledger_node.settlement.replay import replay  # noqa: E402

GENESIS = REPO / "genesis" / "devnet.json"
CHAIN_ID = 1612
SENDERS = [Account.from_key(key) for _, key in DEV_ACCOUNTS]
REGISTRY = "0x0000000000000000000000000000000000000A01"
WORDS = ("the model data set training label image text audio sample quality review open ledger "
         "attribution contributor token reward version network node block chain proof fee split "
         "score span corpus index suffix array match output inference adapter").split()


def signed(sender: int, nonce: int, to: str | None, data: bytes = b"", value: int = 0, gas: int = 21_000) -> bytes:
    tx = {"type": 2, "chainId": CHAIN_ID, "nonce": nonce, "value": value, "gas": gas, "data": data,
          "maxFeePerGas": 20 * 10**9, "maxPriorityFeePerGas": 10**9}
    if to is not None:
        tx["to"] = to_checksum_address(to)
    return bytes(SENDERS[sender].sign_transaction(tx).raw_transaction)


class Workload:
    """setup(): transactions sealed before the measurement; body(n): the measured ones."""

    name = ""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.nonces = [0] * len(SENDERS)

    def next_nonce(self, sender: int) -> int:
        self.nonces[sender] += 1
        return self.nonces[sender] - 1

    def setup(self) -> list[bytes]:
        return []

    def body(self, count: int) -> list[bytes]:
        return [self.one(i % len(SENDERS)) for i in range(count)]


class Transfers(Workload):
    name = "plain transfers"

    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self.recipients = ["0x" + rng.randbytes(20).hex() for _ in range(200)]

    def one(self, sender: int) -> bytes:
        return signed(sender, self.next_nonce(sender), self.rng.choice(self.recipients),
                      value=self.rng.randrange(1, 100) * 10**15)


class TokenTransfers(Workload):
    name = "ERC-20 transfers"

    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self.recipients = ["0x" + rng.randbytes(20).hex() for _ in range(200)]
        self.token = "0x" + contract_address(bytes.fromhex(SENDERS[0].address[2:]), 0).hex()

    def setup(self) -> list[bytes]:
        artifact = compile_contracts([CONTRACTS_DIR / "TestToken.sol"])["TestToken"]
        create = bytes.fromhex(artifact["bytecode"][2:]) + eth_abi.encode(["uint256"], [10**30])
        txs = [signed(0, self.next_nonce(0), None, create, gas=3_000_000)]
        for holder in SENDERS[1:]:
            txs.append(self.transfer(0, holder.address, 10**27))
        return txs

    def transfer(self, sender: int, to: str, amount: int) -> bytes:
        call = bytes.fromhex("a9059cbb") + eth_abi.encode(["address", "uint256"], [to, amount])
        return signed(sender, self.next_nonce(sender), self.token, call, gas=100_000)

    def one(self, sender: int) -> bytes:
        return self.transfer(sender, self.rng.choice(self.recipients), self.rng.randrange(1, 10**6) * 10**12)


class Contributions(Workload):
    name = "contributions (0xA01)"

    def setup(self) -> list[bytes]:
        call = bytes.fromhex(_selector("createDatanet(string,string,uint256)")) + eth_abi.encode(
            ["string", "string", "uint256"], ["bench", "settlement benchmark", 10**15])
        return [signed(0, self.next_nonce(0), REGISTRY, call, gas=1_000_000)]

    def one(self, sender: int) -> bytes:
        text = " ".join(self.rng.choice(WORDS) for _ in range(self.rng.randrange(30, 90))).encode()
        call = bytes.fromhex(_selector("contribute(uint256,bytes)")) + eth_abi.encode(["uint256", "bytes"], [1, text])
        return signed(sender, self.next_nonce(sender), REGISTRY, call, value=10**15, gas=500_000)


def _selector(signature: str) -> str:
    from eth_hash.auto import keccak

    return keccak(signature.encode())[:4].hex()


def seal_all(node: Node, raws: list[bytes], per_block: int) -> tuple[int, float, float, int]:
    """Seal ``raws``, ``per_block`` at a time (more blocks when their gas limits do not fit
    in one): (transactions, seal seconds, admit+seal seconds, gas used)."""
    sealed_txs, seal_s, total_s, gas = 0, 0.0, 0.0, 0
    for start in range(0, len(raws), per_block):
        began = time.perf_counter()
        for raw in raws[start:start + per_block]:
            node.pool.add_raw(raw)
        while len(node.pool):
            block = node.sequencer.seal()
            seal_s += block.seconds
            sealed_txs += len(block.block.transactions)
            gas += block.block.header.gas_used
            failed = [r for r in block.receipts if r.state_root != b"\x01"]
            if failed or not block.block.transactions:
                raise SystemExit(f"block {block.block.number}: {len(failed)} transactions failed, "
                                 f"{len(block.block.transactions)} included")
        total_s += time.perf_counter() - began
    if sealed_txs != len(raws):
        raise SystemExit(f"{sealed_txs} of {len(raws)} transactions sealed")
    return sealed_txs, seal_s, total_s, gas


async def post_all(node: Node, url: str, inbox_address: bytes) -> None:
    poster = BatchPoster(node.blockchain, PosterConfig(l1_rpc=url, inbox=inbox_address, max_batch_age=0.0,
                                                       poll_seconds=0.05), bytes.fromhex(DEV_ACCOUNTS[0][1][2:]))
    task = asyncio.create_task(poster.run())
    head = node.blockchain.head.block_number
    while poster.status.posted_block != head:
        if task.done():
            raise SystemExit(f"poster stopped: {poster.status.stopped_reason}")
        await asyncio.sleep(0.05)
    poster.stop()
    await task


async def measure_l1(url: str, inbox_address: bytes, chain: Blockchain) -> dict[str, float]:
    from openledger_node.settlement.replay import batch_data, batch_records

    l1 = L1Client(url)
    sizes = {"rlp": 0, "zlib": 0, "brotli": 0}
    gas = batches = 0
    try:
        async for record in batch_records(l1, inbox_address):
            batches += 1
            gas += int((await l1.receipt(record.l1_tx))["gasUsed"], 16)
            data = await batch_data(l1, inbox_address, record)
            payload = codec.encode_blocks(codec.decode_batch(data))
            sizes["rlp"] += len(payload)
            sizes["zlib"] += 1 + len(codec.compress(payload, codec.VERSION_ZLIB))
            sizes["brotli"] += 1 + len(codec.compress(payload, codec.VERSION_BROTLI))
    finally:
        await l1.close()
    return {"batches": batches, "gas": gas, **sizes}


async def replay_into(url: str, inbox_address: bytes, datadir: Path, vms: dict | None = None):
    Blockchain.init(datadir, load_genesis(GENESIS)).close()
    chain = Blockchain.open(datadir, sync=False)
    if vms is not None:
        chain.chain.vms = vms
    l1 = L1Client(url, timeout=60)
    try:
        return await replay(l1, inbox_address, chain)
    finally:
        await l1.close()
        chain.close()


def run(workload: Workload, txs: int, per_block: int, tmp: Path, block_time: float,
        replays: int) -> dict[str, object]:
    import os

    os.environ["OPENLEDGER_BATCHER_KEY"] = DEV_ACCOUNTS[0][1]
    with running_anvil(tmp / "l1") as anvil:
        chain = Blockchain.init(tmp / "l2", load_genesis(GENESIS))
        genesis_hash = chain.header_by_number(0).hash
        chain.close()
        inbox_hex = anvil.deploy_inbox(DEV_ACCOUNTS[0][1], DEV_ACCOUNTS[0][0], genesis_hash)
        inbox_address = bytes.fromhex(inbox_hex[2:])
        node = Node(NodeConfig(datadir=tmp / "l2", block_time=0, sync_writes=True))
        try:
            seal_all(node, workload.setup(), per_block)
            raws = workload.body(txs)
            count, seal_s, total_s, gas = seal_all(node, raws, per_block)
            gas_limit = node.blockchain.head.gas_limit
            all_txs = sum(len(node.blockchain.block(node.blockchain.header_by_number(n)).transactions)
                          for n in range(1, node.blockchain.head.block_number + 1))
            asyncio.run(post_all(node, anvil.url, inbox_address))
            l1 = asyncio.run(measure_l1(anvil.url, inbox_address, node.blockchain))
        finally:
            node.blockchain.close()
        # Replays into fresh datadirs, node and stock VMs in turn (a shared machine's speed
        # drifts): the median of each, and the node's spread.
        node_tps, stock_tps = [], []
        for i in range(replays):
            summary = asyncio.run(replay_into(anvil.url, inbox_address, tmp / f"audit-{i}"))
            stock = asyncio.run(replay_into(anvil.url, inbox_address, tmp / f"audit-stock-{i}", stock_vms()))
            if (stock.head_hash, stock.state_root) != (summary.head_hash, summary.state_root):
                raise SystemExit("the replay on stock py-evm VMs reached another head than the node's")
            node_tps.append(summary.transactions / summary.execute_seconds)
            stock_tps.append(stock.transactions / stock.execute_seconds)
    return {
        "workload": workload.name, "txs": count, "all_txs": all_txs, "batches": l1["batches"],
        "bytes_per_tx": l1["rlp"] / all_txs,
        "zlib": l1["rlp"] / l1["zlib"], "brotli": l1["rlp"] / l1["brotli"],
        "gas_per_tx": l1["gas"] / all_txs,
        "seal_tps": count / seal_s, "admit_tps": count / total_s,
        "replay_tps": statistics.median(node_tps), "replay_min": min(node_tps), "replay_max": max(node_tps),
        "replay_wall_tps": summary.transactions / summary.seconds,
        "stock_tps": statistics.median(stock_tps),
        # The most the chain can produce: full blocks of this workload every block_time seconds.
        "peak_tps": gas_limit / (gas / count) / block_time,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--txs", type=int, default=2000, help="measured transactions per workload")
    parser.add_argument("--per-block", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1612)
    parser.add_argument("--block-time", type=float, default=2.0, help="the chain's block time, for its peak rate")
    parser.add_argument("--replays", type=int, default=3, help="replays of each workload on each VM set (median shown)")
    parser.add_argument("--only", choices=["transfers", "erc20", "contributions"], action="append")
    args = parser.parse_args()
    kinds = {"transfers": Transfers, "erc20": TokenTransfers, "contributions": Contributions}
    rows = []
    for key in args.only or list(kinds):
        with tempfile.TemporaryDirectory(prefix="bench-settlement-") as tmp:
            print(f"running {kinds[key].name} ...", file=sys.stderr, flush=True)
            rows.append(run(kinds[key](random.Random(args.seed)), args.txs, args.per_block, Path(tmp),
                            args.block_time, args.replays))
    head = ("workload", "L2 txs", "batches", "RLP B/tx", "zlib x", "brotli x", "L1 gas/tx",
            "seal tx/s", "admit+seal tx/s", "replay tx/s", "replay min-max", "replay/seal", "replay incl. L1 fetch tx/s",
            "stock py-evm replay tx/s", "node/stock", "chain peak tx/s", "replay/peak")
    table = [head] + [(
        r["workload"], str(r["all_txs"]), str(r["batches"]), f"{r['bytes_per_tx']:.0f}", f"{r['zlib']:.2f}",
        f"{r['brotli']:.2f}", f"{r['gas_per_tx']:.0f}", f"{r['seal_tps']:.0f}", f"{r['admit_tps']:.0f}",
        f"{r['replay_tps']:.0f}", f"{r['replay_min']:.0f}-{r['replay_max']:.0f}", f"{r['replay_tps'] / r['seal_tps']:.2f}x",
        f"{r['replay_wall_tps']:.0f}",
        f"{r['stock_tps']:.0f}", f"{r['replay_tps'] / r['stock_tps']:.2f}x", f"{r['peak_tps']:.0f}",
        f"{r['replay_tps'] / r['peak_tps']:.2f}x",
    ) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for i, row in enumerate(table):
        print("  ".join(cell.ljust(w) if j == 0 else cell.rjust(w) for j, (cell, w) in enumerate(zip(row, widths))))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print(f"\n{args.txs} measured transactions per workload from {len(SENDERS)} senders, {args.per_block} per block; "
          "compression over the block ranges the poster posted (codec in use: "
          f"{codec.VERSIONS[codec.DEFAULT_VERSION]}); replay tx/s counts block building only (median of "
          f"{args.replays} replays into fresh datadirs, alternating with the stock ones), \"incl. L1 fetch\" "
          "adds reading events and calldata from anvil (last replay); \"stock py-evm\" is the same replay of the same batches "
          "with py-evm's own VMs (chain.vm.stock_vms: the precompiles, none of the node's speed-ups), which must "
          "reach the same head; chain peak = block gas limit / gas per tx / "
          f"{args.block_time:g} s block time.", flush=True)


if __name__ == "__main__":
    main()
