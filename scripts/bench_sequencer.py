#!/usr/bin/env python3
"""Sequencer throughput: our node against anvil, same workload, same harness, same run.

What it does
  1. Pre-signs (before any server starts) a setup batch -- deploy ``TestToken`` and hand
     tokens to every sending account -- then N plain ETH transfers and N ERC-20
     ``transfer`` calls, spread round-robin over ``--accounts`` dev accounts (the anvil
     mnemonic's keys, which the devnet genesis funds too).  EIP-1559 (type 2) txs.
  2. For each server (``openledger-node`` and anvil, each started here as a subprocess on
     a free 127.0.0.1 port with interval mining every ``--block-time`` seconds): sends the
     setup (not timed) and waits for it, then per workload sends its N raw txs with
     ``eth_sendRawTransaction`` from ``--senders`` concurrent keep-alive HTTP connections
     (one thread each; every account belongs to one connection, which sends that
     account's txs in nonce order) and measures wall time from the first send until a
     block poller has seen all N txs in sealed blocks.
  3. "stock py-evm, no RPC": the same raw txs, decoded up front, applied and sealed with
     py-evm's ``MiningChain.mine_all`` on an in-memory ``AtomicDB`` (chunks that fit the
     block gas limit), i.e. the floor cost of py-evm itself.

Prints: server, workload, N, seconds, tx/s, and the node/anvil ratio per workload; also
the admission rate (N / time until the last eth_sendRawTransaction answered), the CPU
seconds the server process tree used meanwhile (robust to a busy machine, unlike wall
time) and how many txs each block held.  ``--json PATH`` also writes the raw figures.

Reading the figures: with interval mining the end time is quantised by the block time
(each workload starts right after the setup's or the previous workload's block, so the
last block comes up to one block time after the last send), and the block gas limit
caps what any server can seal: 30M gas per 1 s block is 1,428 plain transfers/s.
``--gas-limit`` raises it for both servers (the node gets a copy of the devnet genesis).

    python scripts/bench_sequencer.py --n 2000 --senders 4 --block-time 1
    python scripts/bench_sequencer.py --only node --n 500
"""
from __future__ import annotations

import abc
import argparse
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CHAIN_ID = 1612
MNEMONIC = "test test test test test test test test test test test junk"
GENESIS = REPO / "genesis" / "devnet.json"
MAX_FEE = 200 * 10**9  # wei/gas: far above any base fee these runs reach
TIP = 10**9
PLAIN_GAS = 21_000
ERC20_GAS = 60_000  # a transfer to a new holder costs ~51.5k, to an existing one ~34.5k
DEPLOY_GAS = 3_000_000
TOKEN_SUPPLY = 10**27
WORKLOADS = ("plain", "erc20")


# ---------------------------------------------------------------------------- workload


@dataclass
class Workload:
    setup: list[bytes]  # raw txs, sent in order from one connection, not timed
    token: bytes  # TestToken's address
    accounts: list[bytes]  # sending accounts
    txs: dict[str, list[list[bytes]]]  # workload -> per account, raw txs in nonce order
    hashes: dict[str, list[bytes]] = field(default_factory=dict)


def _recipient(i: int) -> bytes:
    from eth_utils import keccak

    return keccak(b"bench recipient %d" % i)[12:]


def _erc20_transfer(to: bytes, amount: int) -> bytes:
    return bytes.fromhex("a9059cbb") + to.rjust(32, b"\0") + amount.to_bytes(32, "big")


def build_workload(n: int, n_accounts: int, n_recipients: int, workloads=WORKLOADS) -> Workload:
    """Sign everything up front.  Account 0 deploys the token (nonce 0) and funds the
    others (nonces 1..); every account then sends the workloads' txs in the order given
    (nonces continue from one workload to the next, so they must run in that order)."""
    from eth_account import Account
    from eth_utils import keccak, to_canonical_address, to_checksum_address
    import rlp

    from openledger_node.contracts import contract_artifact
    from openledger_node.devkeys import DEV_ACCOUNTS

    if not 1 <= n_accounts <= len(DEV_ACCOUNTS):
        raise SystemExit(f"--accounts must be 1..{len(DEV_ACCOUNTS)}")
    keys_ = [key for _, key in DEV_ACCOUNTS[:n_accounts]]
    addrs = [to_canonical_address(addr) for addr, _ in DEV_ACCOUNTS[:n_accounts]]
    nonces = [0] * n_accounts

    def sign(i: int, to: bytes | None, data: bytes, gas: int, value: int = 0) -> bytes:
        tx = {
            "type": 2, "chainId": CHAIN_ID, "nonce": nonces[i], "gas": gas,
            "maxFeePerGas": MAX_FEE, "maxPriorityFeePerGas": TIP,
            "to": to_checksum_address(to) if to else None, "value": value, "data": data,
        }
        if to is None:
            del tx["to"]
        nonces[i] += 1
        return bytes(Account.sign_transaction(tx, keys_[i]).raw_transaction)

    artifact = contract_artifact("TestToken")
    init_code = bytes.fromhex(artifact["bytecode"][2:]) + TOKEN_SUPPLY.to_bytes(32, "big")
    token = keccak(rlp.encode([addrs[0], 0]))[12:]
    setup = [sign(0, None, init_code, DEPLOY_GAS)]
    share = TOKEN_SUPPLY // (n_accounts + 1)
    for i in range(1, n_accounts):
        setup.append(sign(0, token, _erc20_transfer(addrs[i], share), 100_000))

    recipients = [_recipient(r) for r in range(n_recipients)]
    txs: dict[str, list[list[bytes]]] = {}
    for workload in workloads:
        per_account: list[list[bytes]] = [[] for _ in range(n_accounts)]
        for k in range(n):
            i = k % n_accounts
            to = recipients[k % n_recipients]
            if workload == "plain":
                raw = sign(i, to, b"", PLAIN_GAS, value=1)
            else:
                raw = sign(i, token, _erc20_transfer(to, 1), ERC20_GAS)
            per_account[i].append(raw)
        txs[workload] = per_account
    wl = Workload(setup, token, addrs, txs)
    for workload in workloads:
        wl.hashes[workload] = [keccak(raw) for per in txs[workload] for raw in per]
    return wl


# ---------------------------------------------------------------------------- JSON-RPC


class RPC:
    """A minimal keep-alive JSON-RPC client (http.client: cheap on the client's CPU)."""

    def __init__(self, port: int, timeout: float = 60.0) -> None:
        self.port = port
        self.timeout = timeout
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self._id = 0

    def post(self, body: bytes) -> Any:
        for attempt in (0, 1):
            try:
                self.conn.request("POST", "/", body, {"Content-Type": "application/json"})
                resp = self.conn.getresponse()
                data = resp.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
                if attempt:
                    raise
        return json.loads(data)

    def call(self, method: str, *params: Any) -> Any:
        self._id += 1
        reply = self.post(json.dumps({"jsonrpc": "2.0", "id": self._id, "method": method, "params": list(params)}).encode())
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def close(self) -> None:
        self.conn.close()


def send_body(raw: bytes, req_id: int) -> bytes:
    return b'{"jsonrpc":"2.0","id":%d,"method":"eth_sendRawTransaction","params":["0x%s"]}' % (req_id, raw.hex().encode())


def wait_receipts(rpc: RPC, hashes: list[bytes], timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    out = []
    for h in hashes:
        while True:
            receipt = rpc.call("eth_getTransactionReceipt", "0x" + h.hex())
            if receipt is not None:
                out.append(receipt)
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"no receipt for 0x{h.hex()} after {timeout}s")
            time.sleep(0.05)
    return out


# ---------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server(abc.ABC):
    """A JSON-RPC server the bench starts as a subprocess (our node or anvil)."""

    name = "?"

    def __init__(self, block_time: float, workdir: Path, genesis: Path = GENESIS, gas_limit: int | None = None) -> None:
        self.block_time = block_time
        self.genesis = genesis
        self.gas_limit = gas_limit if gas_limit is not None else devnet_gas_limit()
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / f"{self.name}.log"
        self._log = None

    @abc.abstractmethod
    def command(self) -> list[str]:
        """The command line that starts this server."""

    def prepare(self) -> None:
        pass

    def start(self, timeout: float = 60.0) -> None:
        self.prepare()
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                rpc = RPC(self.port, timeout=2)
                chain_id = int(rpc.call("eth_chainId"), 16)
                rpc.close()
                if chain_id != CHAIN_ID:
                    raise RuntimeError(f"{self.name}: chain id {chain_id}, want {CHAIN_ID}")
                return
            except (OSError, http.client.HTTPException, ValueError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} did not answer in {timeout}s:\n{self.log_tail()}")
                time.sleep(0.1)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def cpu_seconds(self) -> float:
        """user+sys CPU of the server process and its descendants (Linux /proc)."""
        if self.proc is None:
            return float("nan")
        return tree_cpu_seconds(self.proc.pid)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def tree_cpu_seconds(root: int) -> float:
    stats: dict[int, tuple[int, float]] = {}
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return float("nan")
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[pid] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK)  # ppid, utime+stime
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += stats[pid][1]
        todo.extend(child for child, (ppid, _) in stats.items() if ppid == pid)
    return total


def devnet_gas_limit() -> int:
    return int(json.loads(GENESIS.read_text())["gasLimit"], 0)


def genesis_with_gas_limit(gas_limit: int, workdir: Path) -> Path:
    """The devnet genesis, or a copy of it with another block gas limit."""
    doc = json.loads(GENESIS.read_text())
    if int(doc["gasLimit"], 0) == gas_limit:
        return GENESIS
    doc["gasLimit"] = hex(gas_limit)
    path = workdir / "genesis.json"
    path.write_text(json.dumps(doc, indent=2))
    return path


def _node_exe() -> list[str]:
    exe = Path(sys.executable).parent / "openledger-node"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "openledger_node.cli"]


class NodeServer(Server):
    name = "openledger-node"

    def prepare(self) -> None:
        self.datadir = self.workdir / "node-data"
        subprocess.run([*_node_exe(), "init", "--genesis", str(self.genesis), "--datadir", str(self.datadir)],
                       check=True, cwd=REPO, stdout=subprocess.DEVNULL)

    def command(self) -> list[str]:
        return [*_node_exe(), "run", "--datadir", str(self.datadir), "--http-port", str(self.port),
                "--block-time", f"{self.block_time:g}", "--log-level", self.log_level]

    log_level = "warning"


def _arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), platform.machine())


class AnvilServer(Server):
    name = "anvil"

    def command(self) -> list[str]:
        # the native binary of npm @foundry-rs/anvil (bin.mjs is a node wrapper that spawns it)
        anvil = REPO / "node_modules" / "@foundry-rs" / f"anvil-linux-{_arch()}" / "bin" / "anvil"
        if not anvil.exists():
            anvil = REPO / "node_modules" / ".bin" / "anvil"
        if not anvil.exists():
            anvil = Path(shutil.which("anvil") or "anvil")
        block_time = self.block_time if self.block_time != int(self.block_time) else int(self.block_time)
        return [str(anvil), "--port", str(self.port), "--chain-id", str(CHAIN_ID), "--block-time", str(block_time),
                "--mnemonic", MNEMONIC, "--gas-limit", str(self.gas_limit), "--hardfork", "prague", "--silent"]


# ---------------------------------------------------------------------------- measuring


@dataclass
class Result:
    server: str
    workload: str
    n: int
    seconds: float
    submit_seconds: float | None = None
    blocks: list[int] = field(default_factory=list)  # txs per block that held the workload
    errors: int = 0
    note: str = ""
    server_cpu: float | None = None  # CPU seconds the server spent from first send to all sealed
    client_cpu: float | None = None  # CPU seconds of this benchmark process meanwhile

    @property
    def tps(self) -> float:
        return self.n / self.seconds if self.seconds > 0 else float("inf")


class BlockPoller(threading.Thread):
    """Watches new blocks, counting their transactions, until ``target`` are sealed."""

    def __init__(self, port: int, start_block: int, target: int, interval: float, timeout: float) -> None:
        super().__init__(daemon=True, name="poller")
        self.rpc = RPC(port, timeout=timeout)
        self.next_block = start_block + 1
        self.target = target
        self.interval = interval
        self.deadline = time.monotonic() + timeout
        self.sealed = 0
        self.blocks: list[int] = []
        self.done_at: float | None = None
        self.error: BaseException | None = None
        self.stop_flag = False

    def run(self) -> None:
        try:
            while self.sealed < self.target and not self.stop_flag:
                if time.monotonic() > self.deadline:
                    raise TimeoutError(f"only {self.sealed}/{self.target} txs sealed before the timeout")
                head = int(self.rpc.call("eth_blockNumber"), 16)
                while self.next_block <= head:
                    count = int(self.rpc.call("eth_getBlockTransactionCountByNumber", hex(self.next_block)), 16)
                    self.blocks.append(count)
                    self.sealed += count
                    self.next_block += 1
                if self.sealed >= self.target:
                    self.done_at = time.perf_counter()
                    break
                time.sleep(self.interval)
        except BaseException as exc:  # reported by the caller
            self.error = exc
        finally:
            self.rpc.close()


def run_workload(port: int, per_account: list[list[bytes]], senders: int, batch: int,
                 poll: float, timeout: float) -> tuple[float, float, list[int], int, str]:
    n = sum(len(txs) for txs in per_account)
    # Every account belongs to one connection; a connection interleaves its accounts'
    # txs, keeping each account's nonce order.
    lanes: list[list[bytes]] = [[] for _ in range(senders)]
    groups: list[list[list[bytes]]] = [[] for _ in range(senders)]
    for i, txs in enumerate(per_account):
        groups[i % senders].append(txs)
    for lane, group in zip(lanes, groups):
        for k in range(max((len(t) for t in group), default=0)):
            lane.extend(t[k] for t in group if k < len(t))
    bodies: list[list[bytes]] = []
    req_id = 0
    for lane in lanes:
        out = []
        for j in range(0, len(lane), batch):
            chunk = lane[j:j + batch]
            parts = []
            for raw in chunk:
                req_id += 1
                parts.append(send_body(raw, req_id))
            out.append(parts[0] if batch == 1 else b"[" + b",".join(parts) + b"]")
        bodies.append(out)

    control = RPC(port)
    start_block = int(control.call("eth_blockNumber"), 16)
    control.close()
    conns = [RPC(port, timeout=timeout) for _ in range(senders)]
    for c in conns:  # open the sockets before the clock starts
        c.conn.connect()
    barrier = threading.Barrier(senders + 1)
    finished: list[float] = [0.0] * senders
    errors: list[str] = []
    error_count = [0]

    def send(k: int) -> None:
        rpc = conns[k]
        barrier.wait()
        try:
            for body in bodies[k]:
                reply = rpc.post(body)
                for item in (reply if isinstance(reply, list) else [reply]):
                    if "error" in item:
                        error_count[0] += 1
                        if len(errors) < 5:
                            errors.append(str(item["error"]))
        except BaseException as exc:
            error_count[0] += 1
            errors.append(repr(exc))
        finished[k] = time.perf_counter()

    threads = [threading.Thread(target=send, args=(k,), daemon=True) for k in range(senders)]
    for t in threads:
        t.start()
    poller = BlockPoller(port, start_block, n, poll, timeout)
    t0 = time.perf_counter()
    barrier.wait()
    poller.start()
    for t in threads:
        t.join()
    submit = max(finished) - t0
    if error_count[0]:
        poller.stop_flag = True
    poller.join()
    for c in conns:
        c.close()
    if error_count[0]:
        return float("nan"), submit, poller.blocks, error_count[0], "; ".join(errors[:3])
    if poller.error is not None:
        raise RuntimeError(f"poller: {poller.error}")
    return poller.done_at - t0, submit, poller.blocks, 0, ""


def bench_server(server: Server, wl: Workload, args: argparse.Namespace) -> list[Result]:
    results = []
    try:
        server.start()
        rpc = RPC(server.port)
        for addr in wl.accounts:
            nonce = int(rpc.call("eth_getTransactionCount", "0x" + addr.hex(), "latest"), 16)
            if nonce != 0:
                raise RuntimeError(f"{server.name}: account 0x{addr.hex()} has nonce {nonce}, want a fresh chain")
        from eth_utils import keccak

        for raw in wl.setup:
            rpc.call("eth_sendRawTransaction", "0x" + raw.hex())
        receipts = wait_receipts(rpc, [keccak(raw) for raw in wl.setup], args.timeout)
        bad = [r for r in receipts if int(r["status"], 16) != 1]
        if bad:
            raise RuntimeError(f"{server.name}: setup tx failed: {bad[0]}")
        if receipts[0]["contractAddress"].lower() != "0x" + wl.token.hex():
            raise RuntimeError(f"{server.name}: token deployed at {receipts[0]['contractAddress']}")
        # start each workload right after a block boundary is *not* attempted: both
        # servers see the same random phase against their block clock.
        for workload in args.workloads:
            cpu0, own0 = server.cpu_seconds(), time.process_time()
            seconds, submit, blocks, errors, note = run_workload(
                server.port, wl.txs[workload], args.senders, args.batch, args.poll, args.timeout)
            res = Result(server.name, workload, args.n, seconds, submit, blocks, errors, note,
                         server.cpu_seconds() - cpu0, time.process_time() - own0)
            if not errors and args.verify:
                sample = wl.hashes[workload][:: max(1, args.n // 50)] + [wl.hashes[workload][-1]]
                statuses = [int(r["status"], 16) for r in wait_receipts(rpc, sample, args.timeout)]
                if not all(statuses):
                    res.note = f"{statuses.count(0)} of {len(statuses)} sampled receipts failed"
            results.append(res)
            print(f"  {server.name:16} {workload:6} {_fmt(res)}", flush=True)
        rpc.close()
    finally:
        server.stop()
    return results


def bench_pyevm(wl: Workload, args: argparse.Namespace) -> list[Result]:
    """Apply + seal the same pre-signed txs with stock py-evm: MiningChain, in memory."""
    from eth.chains.base import MiningChain
    from eth.db.atomic import AtomicDB
    from eth.vm.forks import PragueVM

    from openledger_node.chain.genesis import load_genesis

    genesis = load_genesis(args.genesis)
    chain_class = MiningChain.configure(__name__="BenchChain", vm_configuration=((0, PragueVM),), chain_id=CHAIN_ID)
    chain = chain_class.from_genesis(AtomicDB(), dict(genesis.header), genesis.alloc)
    builder = PragueVM.get_transaction_builder()
    gas_limit = genesis.header["gas_limit"]
    timestamp = [genesis.header["timestamp"]]

    def mine(txs: list) -> int:
        blocks = 0
        chunk: list = []
        gas = 0
        for tx in txs + [None]:
            if tx is None or gas + tx.gas > gas_limit:
                timestamp[0] += 1
                # as the node does: the parent's gas limit, the next second as the timestamp
                chain.header = chain.create_header_from_parent(
                    chain.get_canonical_head(), gas_limit=gas_limit, timestamp=timestamp[0])
                chain.mine_all(chunk)
                blocks += 1
                chunk, gas = [], 0
                if tx is None:
                    break
            chunk.append(tx)
            gas += tx.gas
        return blocks

    mine([builder.decode(raw) for raw in wl.setup])
    results = []
    for workload in args.workloads:
        per = wl.txs[workload]
        ordered = [raw for k in range(max(map(len, per))) for txs in per if k < len(txs) for raw in [txs[k]]]
        txs = [builder.decode(raw) for raw in ordered]  # decoding is not timed; sender recovery is
        t0, cpu0 = time.perf_counter(), time.process_time()
        blocks = mine(txs)
        seconds = time.perf_counter() - t0
        res = Result("stock py-evm, no RPC", workload, len(txs), seconds, None, [], 0,
                     f"{blocks} blocks, MiningChain.mine_all, in-memory AtomicDB",
                     server_cpu=time.process_time() - cpu0)
        results.append(res)
        print(f"  {res.server:16} {workload:6} {_fmt(res)}", flush=True)
    return results


def _blocks_summary(blocks: list[int]) -> str:
    if len(blocks) <= 12:
        return ",".join(map(str, blocks))
    ordered = sorted(blocks)
    return (f"{len(blocks)} blocks, txs/block min {ordered[0]} median {ordered[len(ordered) // 2]} "
            f"max {ordered[-1]}")


def _fmt(res: Result) -> str:
    if res.errors:
        return f"FAILED: {res.errors} errors: {res.note}"
    sub = f" admitted in {res.submit_seconds:.2f}s ({res.n / res.submit_seconds:,.0f}/s)" if res.submit_seconds else ""
    blocks = f" blocks={_blocks_summary(res.blocks)}" if res.blocks else ""
    cpu = f" cpu={res.server_cpu:.2f}s ({1e3 * res.server_cpu / res.n:.2f} ms/tx)" if res.server_cpu is not None else ""
    return f"{res.seconds:7.2f}s {res.tps:8,.0f} tx/s{sub}{cpu}{blocks} {res.note}".rstrip()


def print_table(results: list[Result], args: argparse.Namespace) -> None:
    print()
    print(f"N={args.n} per workload, {args.senders} sender connections, {args.accounts} accounts, "
          f"block time {args.block_time:g}s, gas limit {args.gas_limit:,}, batch {args.batch}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, load average at start {args.loadavg}")
    header = (f"{'server':22} {'workload':8} {'N':>6} {'seconds':>8} {'tx/s':>8} {'admit tx/s':>10} "
              f"{'srv cpu s':>9} {'cpu ms/tx':>9}  blocks (txs each)")
    print(header)
    print("-" * len(header))
    for r in results:
        if r.errors:
            print(f"{r.server:22} {r.workload:8} {r.n:6} {'FAILED':>8} {'':>8} {'':>10}  {r.note[:60]}")
            continue
        admit = f"{r.n / r.submit_seconds:10,.0f}" if r.submit_seconds else f"{'-':>10}"
        cpu = (f"{r.server_cpu:9.2f} {1e3 * r.server_cpu / r.n:9.2f}" if r.server_cpu is not None
               else f"{'-':>9} {'-':>9}")
        blocks = _blocks_summary(r.blocks) if r.blocks else r.note
        print(f"{r.server:22} {r.workload:8} {r.n:6} {r.seconds:8.2f} {r.tps:8,.0f} {admit} {cpu}  {blocks}")
    by = {(r.server, r.workload): r for r in results if not r.errors}
    for workload in args.workloads:
        node, anvil = by.get((NodeServer.name, workload)), by.get((AnvilServer.name, workload))
        if node and anvil:
            print(f"ratio node/anvil, {workload:6}: {node.tps / anvil.tps:.3f}  "
                  f"({node.tps:,.0f} vs {anvil.tps:,.0f} tx/s)")
        pyevm = by.get(("stock py-evm, no RPC", workload))
        if node and pyevm:
            print(f"ratio node/py-evm, {workload:6}: {node.tps / pyevm.tps:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="transactions per workload [2000]")
    ap.add_argument("--senders", type=int, default=4, help="concurrent sender connections [4]")
    ap.add_argument("--accounts", type=int, default=8, help="sending dev accounts, 1..10 [8]")
    ap.add_argument("--recipients", type=int, default=64, help="distinct recipient addresses [64]")
    ap.add_argument("--block-time", type=float, default=1.0, help="interval mining, seconds, both servers [1]")
    ap.add_argument("--gas-limit", type=int, default=None,
                    help="block gas limit for both (default: genesis/devnet.json's, 30M; anvil gets --gas-limit, "
                         "the node a copy of the devnet genesis)")
    ap.add_argument("--batch", type=int, default=1, help="eth_sendRawTransaction calls per HTTP request [1]")
    ap.add_argument("--only", choices=("node", "anvil", "pyevm"), action="append",
                    help="run only these (repeatable); default: node, anvil and pyevm")
    ap.add_argument("--workloads", default="plain,erc20", help="comma list of plain,erc20")
    ap.add_argument("--poll", type=float, default=0.02, help="block poll interval, seconds [0.02]")
    ap.add_argument("--timeout", type=float, default=300.0, help="per-workload timeout, seconds [300]")
    ap.add_argument("--node-log-level", default="warning")
    ap.add_argument("--no-verify", dest="verify", action="store_false", help="skip the receipt status sample")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (datadir, server logs)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    if any(w not in WORKLOADS for w in args.workloads):
        raise SystemExit(f"--workloads: choose from {WORKLOADS}")
    args.senders = max(1, min(args.senders, args.accounts))
    only = set(args.only or ("node", "anvil", "pyevm"))
    args.loadavg = "/".join(f"{x:.2f}" for x in os.getloadavg())

    t = time.perf_counter()
    wl = build_workload(args.n, args.accounts, args.recipients, args.workloads)
    print(f"pre-signed {len(wl.setup)} setup + {len(args.workloads)}x{args.n} txs in {time.perf_counter() - t:.1f}s",
          flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="bench-seq-"))
    results: list[Result] = []
    try:
        args.gas_limit = args.gas_limit or devnet_gas_limit()
        args.genesis = genesis_with_gas_limit(args.gas_limit, workdir)
        runs = []
        if "node" in only:
            node = NodeServer(args.block_time, workdir, args.genesis, args.gas_limit)
            node.log_level = args.node_log_level
            runs.append((node.name, lambda: bench_server(node, wl, args)))
        if "anvil" in only:
            anvil = AnvilServer(args.block_time, workdir, args.genesis, args.gas_limit)
            runs.append((anvil.name, lambda: bench_server(anvil, wl, args)))
        if "pyevm" in only:
            runs.append(("stock py-evm, no RPC", lambda: bench_pyevm(wl, args)))
        for name, run in runs:
            try:
                results += run()
            except Exception as exc:  # report it, and still run (and print) the others
                print(f"  {name}: FAILED: {exc}", file=sys.stderr, flush=True)
                results += [Result(name, w, args.n, float("nan"), errors=1, note=str(exc).splitlines()[0][:200])
                            for w in args.workloads]
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print_table(results, args)
    if args.json:
        args.json.write_text(json.dumps(
            [{**r.__dict__, "tps": r.tps} for r in results], indent=2, default=str))


if __name__ == "__main__":
    main()
