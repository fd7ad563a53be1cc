#!/usr/bin/env python3
"""Where the node's time goes under the bench_sequencer workload (measure only).

Uses the same pre-signed transactions as ``scripts/bench_sequencer.py``.

  build  Blockchain.build_block on a fresh LevelDB datadir (fsync on), the node's own
         chain code: per-phase wall time (EVM apply per tx, tx/receipt tries, state
         root, persist, LevelDB commit) from timers wrapped around py-evm's methods.
  pool   TxPool.add_raw through a real Node (not serving): decode, signature
         recovery, state reads, then Sequencer.seal (candidates, build, remove_stale,
         the RPC block cache).
  rpc    The JSON-RPC dispatcher in-process (no HTTP): Dispatcher.handle_bytes with
         eth_sendRawTransaction bodies, and handle_bytes for a trivial method.
  spy    A real ``openledger-node run`` under the bench load with py-spy sampling it
         (``pip install py-spy``); writes a speedscope profile and prints a summary of
         where the samples fall.

``--cprofile DIR`` also writes cProfile dumps (build/pool/rpc) for pstats/snakeviz.

    python scripts/profile_sequencer.py build pool rpc --n 2000
    python scripts/profile_sequencer.py spy --n 2000 --out /tmp/spy
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import bench_sequencer as bench  # noqa: E402

GAS_LIMIT = 30_000_000
_MISSING = object()
# Phases are timed in CPU time of this thread, so that other processes on a busy machine
# do not inflate them (wall time per block is also shown).
clock = time.thread_time


# ---------------------------------------------------------------------------- timers


class Timers:
    def __init__(self) -> None:
        self.total: dict[str, float] = collections.defaultdict(float)
        self.calls: dict[str, int] = collections.defaultdict(int)
        self._patched: list[tuple[object, str, object]] = []

    def wrap(self, owner: object, name: str, label: str | None = None) -> None:
        """Time every call of ``owner.name`` (class, module or instance attribute)."""
        import inspect

        label = label or f"{getattr(owner, '__name__', owner)}.{name}"
        own = vars(owner).get(name, _MISSING) if hasattr(owner, "__dict__") else _MISSING
        static = inspect.getattr_static(owner, name)
        kind = type(static) if isinstance(static, (classmethod, staticmethod)) else None
        target = static.__func__ if kind else (static if isinstance(owner, type) else getattr(owner, name))
        total, calls = self.total, self.calls

        @functools.wraps(target)
        def timed(*args, **kwargs):
            t = clock()
            try:
                return target(*args, **kwargs)
            finally:
                total[label] += clock() - t
                calls[label] += 1

        self._patched.append((owner, name, own))
        setattr(owner, name, kind(timed) if kind else timed)

    def restore(self) -> None:
        for owner, name, original in reversed(self._patched):
            if original is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
        self._patched.clear()

    def reset(self) -> None:
        self.total.clear()
        self.calls.clear()


def _row(label: str, seconds: float, n: int, whole: float | None = None, calls: int | None = None) -> str:
    pct = f"{100 * seconds / whole:5.1f}%" if whole else "      "
    c = f"{calls:6d} calls" if calls is not None else ""
    return f"    {label:58} {seconds * 1e3:9.1f} ms cpu {1e6 * seconds / n:8.0f} us/tx {pct} {c}"


def _ordered(per_account: list[list[bytes]]) -> list[bytes]:
    return [txs[k] for k in range(max(map(len, per_account))) for txs in per_account if k < len(txs)]


def _chunks(txs: list, gas_limit: int = GAS_LIMIT) -> list[list]:
    """Blocks as the sequencer fills them (by gas limit of the txs; upper bound)."""
    out, chunk, gas = [], [], 0
    for tx in txs:
        if gas + tx.gas > gas_limit:
            out.append(chunk)
            chunk, gas = [], 0
        chunk.append(tx)
        gas += tx.gas
    if chunk:
        out.append(chunk)
    return out


def _fresh_caches() -> None:
    """py-evm memoises tx/receipt trie roots by content (lru_cache): modes that seal the
    same txs in one process would otherwise hit it and look twice as fast."""
    from eth.db.trie import _make_trie_root_and_nodes

    _make_trie_root_and_nodes.cache_clear()


def _profiled(path: Path | None, fn, *args):
    if path is None:
        return fn(*args)
    prof = cProfile.Profile()
    try:
        return prof.runcall(fn, *args)
    finally:
        prof.dump_stats(str(path))
        print(f"    cProfile -> {path}")


# ---------------------------------------------------------------------------- build


def profile_build(wl: bench.Workload, args: argparse.Namespace) -> None:
    from eth.db.account import AccountDB
    from eth.db.chain import ChainDB
    import eth.vm.base as vm_base

    from openledger_node.chain.chain import Blockchain
    from openledger_node.chain.genesis import load_genesis
    from openledger_node.chain.vm import VM_BY_FORK

    print("\n== build: Blockchain.build_block on pre-decoded txs, LevelDB datadir, sync writes ==")
    tmp = Path(tempfile.mkdtemp(prefix="prof-build-"))
    try:
        chain = Blockchain.init(tmp / "data", load_genesis(bench.GENESIS))
        chain.close()
        chain = Blockchain.open(tmp / "data", sync=not args.no_sync)
        decode = chain.decode_transaction
        coinbase = chain.genesis.treasury or b"\0" * 20
        ts = [chain.head.timestamp]

        def build(txs):
            ts[0] += 1
            return chain.build_block(iter(txs), timestamp=ts[0], coinbase=coinbase)

        build([decode(r) for r in wl.setup])
        vm_class = VM_BY_FORK["prague"]
        state_class = vm_class.get_state_class()
        timers = Timers()
        timers.wrap(vm_class, "apply_transaction", "VM.apply_transaction (EVM, per tx)")
        timers.wrap(vm_class, "validate_transaction_against_header", "  validate_transaction_against_header")
        timers.wrap(state_class, "validate_transaction", "  State.validate_transaction (nonce/balance, sender)")
        timers.wrap(state_class, "apply_transaction", "  State.apply_transaction (validate+execute+finalize)")
        timers.wrap(vm_class, "make_receipt", "  VM.make_receipt")
        timers.wrap(AccountDB, "lock_changes", "  AccountDB.lock_changes (per tx)")
        timers.wrap(vm_class, "add_receipt_to_header", "VM.add_receipt_to_header")
        timers.wrap(vm_class, "block_preprocessing", "VM.block_preprocessing")
        timers.wrap(vm_class, "set_block_transactions_and_withdrawals", "VM.set_block_transactions_and_withdrawals")
        timers.wrap(vm_base, "make_trie_root_and_nodes", "  make_trie_root_and_nodes (tx/receipt tries)")
        timers.wrap(ChainDB, "persist_trie_data_dict", "  ChainDB.persist_trie_data_dict")
        timers.wrap(vm_class, "block_postprocessing", "VM.block_postprocessing")
        timers.wrap(vm_class, "process_deposit_request_data", "  process_deposit_request_data")
        timers.wrap(vm_class, "compute_requests_hash", "  compute_requests_hash (block copy)")
        timers.wrap(vm_class, "mine_block", "VM.mine_block")
        timers.wrap(vm_class, "finalize_block", "  VM.finalize_block")
        timers.wrap(AccountDB, "persist", "    AccountDB.persist (state root, trie nodes)")
        timers.wrap(vm_class, "validate_block", "  VM.validate_block")
        timers.wrap(ChainDB, "persist_block", "ChainDB.persist_block")
        timers.wrap(type(chain.store), "commit", "LevelStore.commit (WriteBatch, fsync)")
        block_class = vm_class.get_block_class()
        timers.wrap(block_class, "copy", " (across phases) Block.copy")
        timers.wrap(dict(block_class._meta.fields)["header"], "copy", " (across phases) BlockHeader.copy")
        for workload in args.workloads:
            raws = _ordered(wl.txs[workload])
            t = clock()
            txs = [decode(r) for r in raws]
            t_decode = clock() - t
            t = clock()
            for tx in txs:
                tx.sender  # noqa: B018  recovery, then cached on the object
            t_sender = clock() - t
            t = clock()
            for tx in txs:
                tx.sender  # noqa: B018
            t_sender2 = clock() - t
            blocks = _chunks(txs)
            _fresh_caches()
            timers.reset()
            walls, counts = [], []
            t_all = clock()
            prof_path = Path(args.cprofile) / f"build_{workload}.prof" if args.cprofile else None
            if prof_path:
                prof = cProfile.Profile()
                prof.enable()
            for block in blocks:
                sealed = build(block)
                walls.append(sealed.seconds)
                counts.append(len(sealed.block.transactions))
                if sealed.rejected:
                    raise RuntimeError(f"rejected: {sealed.rejected[:2]}")
            if prof_path:
                prof.disable()
                prof.dump_stats(str(prof_path))
            total = clock() - t_all
            n = sum(counts)
            print(f"  {workload}: {n} txs in {len(blocks)} blocks {counts}: {total:.3f}s = {n / total:,.0f} tx/s "
                  f"(per block wall ms: {', '.join(f'{w * 1e3:.0f}' for w in walls)})")
            print(_row("(outside build) decode raw -> tx object", t_decode, n))
            print(_row("(outside build) tx.sender first call (ecrecover)", t_sender, n))
            print(_row("(outside build) tx.sender again (cached on the object)", t_sender2, n))
            for label in timers.total:
                print(_row(label, timers.total[label], n, total, timers.calls[label]))
            accounted = sum(v for k, v in timers.total.items() if not k.startswith(" "))
            print(_row("build_block rest (loop, headers, get_vm, ...)", total - accounted, n, total))
            if prof_path:
                print(f"    cProfile -> {prof_path}")
        timers.restore()
        chain.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------- pool


def _make_node(datadir: Path, sync: bool = True):
    from openledger_node.chain.chain import Blockchain
    from openledger_node.chain.genesis import load_genesis
    from openledger_node.node import Node, NodeConfig

    Blockchain.init(datadir, load_genesis(bench.GENESIS)).close()
    return Node(NodeConfig(datadir=datadir, block_time=0, sync_writes=sync))


SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def recover_sender_once(tx) -> bytes:
    """What TxPool.add needs from a signature, with one ECDSA recovery instead of two
    (check_signature_validity recovers and verifies, then tx.sender recovers again)."""
    import coincurve
    from eth_hash.auto import keccak

    r, s, y = tx.r, tx.s, getattr(tx, "y_parity", None)
    if y is None:  # legacy: v = 27/28 or chain_id * 2 + 35/36
        y = (tx.v - 35) % 2 if tx.v >= 35 else tx.v - 27
    if not (0 < r < SECP256K1_N and 0 < s <= SECP256K1_N // 2 and y in (0, 1)):
        raise ValueError("invalid signature values")
    digest = keccak(tx.get_message_for_signing())
    public = coincurve.PublicKey.from_signature_and_message(
        r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([y]), digest, hasher=None)
    return keccak(public.format(compressed=False)[1:])[12:]


def profile_pool(wl: bench.Workload, args: argparse.Namespace) -> None:
    print("\n== pool: TxPool.add_raw and Sequencer.seal through a Node (not serving) ==")
    tmp = Path(tempfile.mkdtemp(prefix="prof-pool-"))
    try:
        node = _make_node(tmp / "data", sync=not args.no_sync)
        for raw in wl.setup:
            node.pool.add_raw(raw)
        node.sequencer.seal()
        pool = node.pool
        timers = Timers()
        timers.wrap(pool, "_decode", "  decode (Blockchain.decode_transaction)")
        timers.wrap(pool, "_account", "  _account (state nonce+balance at head)")
        timers.wrap(pool, "_base_fee", "  _base_fee (next_base_fee)")
        timers.wrap(pool, "_block_gas_limit", "  _block_gas_limit (head.gas_limit)")
        import openledger_node.txpool as txpool_mod

        for workload in args.workloads:
            raws = _ordered(wl.txs[workload])
            n = len(raws)
            timers.reset()
            t = clock()
            prof = Path(args.cprofile) / f"pool_add_{workload}.prof" if args.cprofile else None
            _profiled(prof, lambda: [pool.add_raw(r) for r in raws])
            add = clock() - t
            print(f"  {workload}: TxPool.add_raw x{n}: {add:.3f}s = {n / add:,.0f} tx/s")
            for label in timers.total:
                print(_row(label, timers.total[label], n, add, timers.calls[label]))
            # signature recovery: time on fresh objects (the pool's own call is inside add)
            txs = [node.blockchain.decode_transaction(r) for r in raws[:500]]
            t = clock()
            for tx in txs:
                tx.check_signature_validity()
                tx.sender  # noqa: B018
            rec = (clock() - t) * n / len(txs)
            print(_row("  ~ check_signature_validity + sender (ecrecover), est.", rec, n, add))
            txs = [node.blockchain.decode_transaction(r) for r in raws[:500]]
            t = clock()
            senders = [recover_sender_once(tx) for tx in txs]
            one = (clock() - t) * n / len(txs)
            assert senders == [tx.sender for tx in txs]
            print(_row("  ~ proposed: one recovery (hash once, coincurve), est.", one, n, add))
            # sealing through the sequencer, block by block
            seal_t, blocks = 0.0, []
            _fresh_caches()
            stimers = Timers()
            stimers.wrap(type(node.blockchain), "build_block", "  Blockchain.build_block")
            stimers.wrap(txpool_mod.TxPool, "candidates", "  TxPool.candidates (generator creation only)")
            stimers.wrap(txpool_mod.TxPool, "remove_stale", "  TxPool.remove_stale")
            stimers.wrap(type(node.reader), "remember", "  ChainReader.remember (RPC block cache)")
            prof = Path(args.cprofile) / f"seal_{workload}.prof" if args.cprofile else None
            pr = cProfile.Profile() if prof else None
            while len(pool):
                t = clock()
                if pr:
                    pr.enable()
                sealed = node.sequencer.seal()
                if pr:
                    pr.disable()
                seal_t += clock() - t
                blocks.append(len(sealed.block.transactions))
                if not sealed.block.transactions:
                    raise RuntimeError(f"stuck: pool {len(pool)}")
            if pr:
                pr.dump_stats(str(prof))
                print(f"    cProfile -> {prof}")
            print(f"  {workload}: Sequencer.seal x{len(blocks)} {blocks}: {seal_t:.3f}s = {n / seal_t:,.0f} tx/s")
            for label in stimers.total:
                print(_row(label, stimers.total[label], n, seal_t, stimers.calls[label]))
            stimers.restore()
            print(f"  {workload}: pool admission + sealing, no RPC: {n / (add + seal_t):,.0f} tx/s")
        timers.restore()
        node.blockchain.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------- rpc


def profile_rpc(wl: bench.Workload, args: argparse.Namespace) -> None:
    print("\n== rpc: Dispatcher.handle_bytes in-process (JSON + dispatch + pool; no HTTP) ==")
    tmp = Path(tempfile.mkdtemp(prefix="prof-rpc-"))
    try:
        node = _make_node(tmp / "data", sync=not args.no_sync)
        for raw in wl.setup:
            node.pool.add_raw(raw)
        node.sequencer.seal()
        loop = asyncio.new_event_loop()
        handle = node.dispatcher.handle_bytes
        bodies = [bench.send_body(r, i) for i, r in enumerate(_ordered(wl.txs["plain"]))]
        n = len(bodies)
        ping = b'{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}'

        async def run_all(items):
            out = None
            for b in items:
                out = await handle(b)
            return out

        t = clock()
        loop.run_until_complete(run_all([ping] * n))
        trivial = clock() - t
        print(_row("handle_bytes(eth_chainId) x N (JSON + dispatch floor)", trivial, n))
        t = clock()
        prof = Path(args.cprofile) / "rpc_send.prof" if args.cprofile else None
        last = _profiled(prof, lambda: loop.run_until_complete(run_all(bodies)))
        send = clock() - t
        if b"error" in last:
            print("    last reply:", last[:200])
        print(_row("handle_bytes(eth_sendRawTransaction) x N", send, n))
        print(f"    => {n / send:,.0f} tx/s admission without HTTP")
        loop.close()
        node.blockchain.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------- spy


def profile_spy(wl: bench.Workload, args: argparse.Namespace) -> None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        raise SystemExit("py-spy not installed: pip install py-spy")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"\n== spy: live node under bench load (block time {args.block_time:g}s), py-spy ==")
    tmp = Path(tempfile.mkdtemp(prefix="prof-spy-"))
    server = bench.NodeServer(args.block_time, tmp)
    rec = None
    try:
        server.start()
        rpc = bench.RPC(server.port)
        for raw in wl.setup:
            rpc.call("eth_sendRawTransaction", "0x" + raw.hex())
        from eth_utils import keccak

        bench.wait_receipts(rpc, [keccak(r) for r in wl.setup], 120)
        rpc.close()
        for workload in args.workloads:
            raw_path = out / f"node_{workload}.txt"
            rec = subprocess.Popen([spy, "record", "--pid", str(server.proc.pid), "--rate", str(args.rate),
                                    "--format", "raw", "--output", str(raw_path)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(1.0)  # attach
            cpu0 = server.cpu_seconds()
            seconds, submit, blocks, errors, note = bench.run_workload(
                server.port, wl.txs[workload], args.senders, 1, 0.02, 300)
            cpu = server.cpu_seconds() - cpu0
            rec.send_signal(signal.SIGINT)
            try:
                rec.wait(60)
            except subprocess.TimeoutExpired:
                rec.kill()
            rec = None
            print(f"  {workload}: {args.n} txs sealed in {seconds:.2f}s ({args.n / seconds:,.0f} tx/s), admitted in "
                  f"{submit:.2f}s, blocks {blocks}, node CPU {cpu:.2f}s ({cpu * 1e3 / args.n:.2f} ms/tx)"
                  + (f" ERRORS {errors}: {note}" if errors else ""))
            summarize_collapsed(raw_path)
    finally:
        if rec is not None and rec.poll() is None:
            rec.kill()
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


# Classifying py-spy's collapsed stacks.  Activity: the outermost matching frame
# (seal vs. an RPC request vs. HTTP plumbing); phase: within that activity, the first
# listed needle found in the stack (so order matters).  A leaf in select() is idle and
# a leaf in the transport's write() is the send() syscall, whatever called them.
ACTIVITIES = [
    ("seal (Sequencer.seal, event loop blocked)", "Sequencer.seal (", [
        ("TxPool.candidates/remove_stale", ("TxPool.candidates", "TxPool.remove_stale")),
        ("tx/receipt trie roots (make_trie_root_and_nodes)", ("make_trie_root_and_nodes",)),
        ("Prague block_postprocessing (receipts re-read from trie)", ("block_postprocessing",)),
        ("EVM apply_transaction", (".apply_transaction (eth/vm/base.py",)),
        ("add_receipt_to_header (header copy + bloom)", ("add_receipt_to_header",)),
        ("mine_block: finalize (state root, account trie)", ("finalize_block",)),
        ("mine_block: validate_block", ("validate_block",)),
        ("mine_block: pack_block (block copy)", ("pack_block",)),
        ("ChainDB.persist_block", ("persist_block (eth/db/chain.py",)),
        ("LevelStore.commit (WriteBatch + fsync)", ("LevelStore.commit",)),
        ("ChainReader.remember", ("ChainReader.remember",)),
        ("other", ("",)),
    ]),
    ("rpc eth_sendRawTransaction handler", "EthAPI.sendRawTransaction (", [
        ("decode (rlp -> tx object)", ("decode_transaction", "TxPool._decode")),
        ("check_signature_validity (ecrecover #1 + verify)", ("check_signature_validity",)),
        ("tx.sender (ecrecover #2)", (".sender (eth/", "get_sender", "extract_transaction_sender")),
        ("state reads (_account)", ("Node._account",)),
        ("hash / other pool checks", ("",)),
    ]),
    ("rpc other methods (block poller)", "Dispatcher.call (", [("", ("",))]),
    ("rpc JSON parse/encode + dispatcher", "openledger_node/rpc/jsonrpc.py", [("", ("",))]),
    ("http: fastapi/starlette app + middleware", "FastAPI.__call__ (", [
        ("request body read (_read_capped)", ("_read_capped",)),
        ("response send", ("Response.__call__",)),
        ("routing/middleware/other", ("",)),
    ]),
    ("http: uvicorn/h11 protocol", "uvicorn/", [("", ("",))]),
    ("event loop / asyncio other", "asyncio/", [("", ("",))]),
]


def classify(stack: str, leaf: str) -> tuple[str, str]:
    if "select (selectors.py" in leaf or ".poll (selectors.py" in leaf:
        return "idle (event loop in select)", ""
    if "SocketTransport.write (" in leaf or "sock_sendall" in leaf:
        return "socket send() syscall (response write)", ""
    for name, needle, phases in ACTIVITIES:
        if needle in stack:
            for phase, needles in phases:
                if any(n in stack for n in needles):
                    return name, phase
            return name, ""
    return "unattributed (truncated stack)", ""


def summarize_collapsed(path: Path) -> None:
    acts: collections.Counter[str] = collections.Counter()
    phases: collections.Counter[tuple[str, str]] = collections.Counter()
    total = 0
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        print(f"    no py-spy output: {exc}")
        return
    for line in lines:
        stack, _, num = line.rpartition(" ")
        try:
            k = int(num)
        except ValueError:
            continue
        total += k
        leaf = stack.rsplit(";", 1)[-1]
        act, phase = classify(stack, leaf)
        acts[act] += k
        if phase:
            phases[(act, phase)] += k
    if not total:
        print("    py-spy: no samples")
        return
    print(f"    py-spy: {total} samples; share of all samples by activity, then phase:")
    for act, k in acts.most_common():
        print(f"      {100 * k / total:5.1f}%  {act}")
        for (a, phase), kk in sorted(phases.items(), key=lambda x: -x[1]):
            if a == act:
                print(f"               {100 * kk / total:5.1f}%  {phase}")
    print(f"    collapsed stacks -> {path}")


# ---------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("modes", nargs="+", choices=("build", "pool", "rpc", "spy"))
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--accounts", type=int, default=8)
    ap.add_argument("--recipients", type=int, default=64)
    ap.add_argument("--senders", type=int, default=4)
    ap.add_argument("--block-time", type=float, default=1.0)
    ap.add_argument("--workloads", default="plain,erc20")
    ap.add_argument("--no-sync", action="store_true", help="LevelDB without fsync per block")
    ap.add_argument("--cprofile", help="directory for cProfile dumps")
    ap.add_argument("--out", default="/tmp/profile_sequencer", help="py-spy output directory")
    ap.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    args = ap.parse_args()
    args.workloads = [w for w in args.workloads.split(",") if w]
    if args.cprofile:
        os.makedirs(args.cprofile, exist_ok=True)
    t = time.perf_counter()
    wl = bench.build_workload(args.n, args.accounts, args.recipients, args.workloads)
    print(f"pre-signed in {time.perf_counter() - t:.1f}s; load average {os.getloadavg()}")
    for mode in args.modes:
        {"build": profile_build, "pool": profile_pool, "rpc": profile_rpc, "spy": profile_spy}[mode](wl, args)


if __name__ == "__main__":
    main()
