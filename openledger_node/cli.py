"""``openledger-node`` command line."""
from __future__ import annotations

import asyncio
import logging
import sys
import tomllib
from pathlib import Path
from typing import Any, Optional

import typer

from . import __version__

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False, help="OpenLedger L2 node: an EVM rollup with Proof of Attribution.")
log = logging.getLogger("openledger")


def fail(message: str, code: int = 1) -> None:
    """One clear line on stderr and a non-zero exit: no traceback for an operator's mistake."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-5s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
        stream=sys.stderr,
    )


def run_loop(coroutine) -> None:
    """Run on uvloop (about twice as fast as asyncio's loop for the RPC path) if present."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coroutine)
    else:
        uvloop.run(coroutine)


def load_config(path: Optional[Path]) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        fail(f"config file not found: {path}")
    except tomllib.TOMLDecodeError as exc:
        fail(f"config file {path} is not valid TOML: {exc}")
    section = doc.get("node", doc)
    return {key.replace("-", "_"): value for key, value in section.items()}


# Config keys and the types their TOML values must have (flags are typed by typer already).
_CONFIG_TYPES: dict[str, tuple[type, ...]] = {
    "datadir": (str, Path), "http_host": (str,), "http_port": (int,), "block_time": (int, float),
    "dev": (bool,), "mining": (bool,), "max_body_bytes": (int,), "max_batch": (int,), "sync_writes": (bool,),
    "l1_rpc": (str,), "l1_inbox": (str,), "l1_chain_id": (int,), "l1_keystore": (str, Path), "batch_max_age": (int, float),
    "batch_max_bytes": (int,),
}


def check_types(settings: dict[str, Any]) -> None:
    for key, value in settings.items():
        types = _CONFIG_TYPES.get(key)
        if types is None:
            continue
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            wanted = " or ".join("a path" if t is Path else {"str": "a string", "int": "an integer",
                                 "float": "a number", "bool": "true or false"}[t.__name__] for t in types)
            fail(f"config key {key} must be {wanted}, not {value!r}")


@app.command()
def init(
    genesis: Path = typer.Option(..., "--genesis", help="genesis JSON file (geth format)"),
    datadir: Path = typer.Option(..., "--datadir", help="directory for the chain database"),
) -> None:
    """Create the chain described by GENESIS in DATADIR."""
    from .chain.chain import Blockchain, DatadirError
    from .chain.genesis import GenesisError, describe, load_genesis
    from .chain.store import StoreLockedError

    try:
        spec = load_genesis(genesis)
        chain = Blockchain.init(datadir, spec)
    except (GenesisError, DatadirError, StoreLockedError) as exc:
        fail(str(exc))
    head = chain.header_by_number(0)
    chain.close()
    typer.echo(f"initialised {datadir}: genesis 0x{head.hash.hex()}; {describe(spec)}")


@app.command()
def run(
    datadir: Optional[Path] = typer.Option(None, "--datadir", help="chain directory made by `init`"),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file with the same keys as these options"),
    http_host: Optional[str] = typer.Option(None, "--http-host", help="RPC listen address [127.0.0.1]"),
    http_port: Optional[int] = typer.Option(None, "--http-port", help="RPC port [8545]; 0 picks a free one"),
    block_time: Optional[float] = typer.Option(None, "--block-time", help="seconds between blocks [2]; 0 seals as soon as transactions wait"),
    dev: Optional[bool] = typer.Option(None, "--dev/--no-dev", help="unlock the documented dev accounts (eth_sendTransaction, eth_sign, ...)"),
    mining: Optional[bool] = typer.Option(None, "--mining/--no-mining", help="produce blocks [on]; off: serve RPC only"),
    l1_rpc: Optional[str] = typer.Option(None, "--l1-rpc", help="L1 JSON-RPC URL: post batches there (needs --l1-inbox and a batcher key)"),
    l1_inbox: Optional[str] = typer.Option(None, "--l1-inbox", help="address of the BatchInbox contract on the L1"),
    l1_chain_id: Optional[int] = typer.Option(None, "--l1-chain-id", help="the L1's chain id; the poster refuses an L1 that answers another"),
    l1_keystore: Optional[Path] = typer.Option(None, "--l1-keystore", help="batcher keystore (password in OPENLEDGER_BATCHER_PASSWORD); else the key in OPENLEDGER_BATCHER_KEY"),
    batch_max_age: Optional[float] = typer.Option(None, "--batch-max-age", help="seconds before a batch is posted however small [30]"),
    log_level: str = typer.Option("info", "--log-level"),
) -> None:
    """Serve JSON-RPC and produce blocks until SIGINT/SIGTERM."""
    from .chain.chain import DatadirError
    from .chain.store import StoreLockedError
    from .node import Node, NodeConfig
    from .rpc.server import PortInUseError
    from .settlement.poster import PosterConfigError

    setup_logging(log_level)
    settings = load_config(config)
    for key, value in (("datadir", datadir), ("http_host", http_host), ("http_port", http_port),
                       ("block_time", block_time), ("dev", dev), ("mining", mining), ("l1_rpc", l1_rpc),
                       ("l1_inbox", l1_inbox), ("l1_chain_id", l1_chain_id), ("l1_keystore", l1_keystore),
                       ("batch_max_age", batch_max_age)):
        if value is not None:
            settings[key] = value
    if "datadir" not in settings:
        fail("--datadir is required (or `datadir` in the config file)")
    known = set(NodeConfig.__dataclass_fields__) - {"pool", "coinbase"}
    unknown = sorted(set(settings) - known)
    if unknown:
        fail(f"unknown config keys: {', '.join(unknown)}")
    check_types(settings)
    settings["datadir"] = Path(settings["datadir"])
    if settings.get("l1_keystore") is not None:
        settings["l1_keystore"] = Path(settings["l1_keystore"])
    if settings.get("l1_rpc") and not settings.get("l1_inbox"):
        fail("--l1-rpc needs --l1-inbox (the BatchInbox address on the L1)")
    if settings.get("block_time", 2.0) < 0:
        fail("--block-time must be 0 or more")
    if not 0 <= settings.get("http_port", 8545) <= 65535:
        fail(f"--http-port must be between 0 and 65535, not {settings['http_port']}")
    cfg = NodeConfig(**settings)
    try:
        node = Node(cfg)
    except (DatadirError, StoreLockedError, PosterConfigError) as exc:
        fail(str(exc))

    started = False

    def ready(n: Node) -> None:
        nonlocal started
        started = True
        log.info("JSON-RPC listening on %s (chain id %d)", n.rpc.url, n.blockchain.chain_id)
        if n.signer is not None:
            log.info("dev mode: %d unlocked accounts, see README", len(n.signer.addresses()))

    try:
        run_loop(node.serve(ready=ready))
    except PortInUseError as exc:
        node.blockchain.close()
        fail(f"{exc.strerror}: choose another --http-port")
    except OSError as exc:  # binding the RPC socket: no such address, no permission, unknown host
        if started:
            raise
        node.blockchain.close()
        fail(f"cannot listen on {cfg.http_host}:{cfg.http_port}: {exc.strerror or exc}")


@app.command("import")
def import_(
    file: Path = typer.Argument(..., help="RLP chain file: blocks one after another, as `geth export` writes them"),
    datadir: Path = typer.Option(..., "--datadir", help="chain directory made by `init`"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="only the summary line"),
) -> None:
    """Validate, execute and store every block of FILE (as `geth import`; proof-of-work seals are not checked)."""
    from .chain.chain import Blockchain, DatadirError
    from .chain.importer import ImportError_, import_file
    from .chain.store import StoreLockedError

    try:
        chain = Blockchain.open(datadir)
    except (DatadirError, StoreLockedError) as exc:
        fail(str(exc))

    def progress(summary, block) -> None:
        if not quiet:
            typer.echo(f"imported block {block.number} 0x{block.hash.hex()} "
                       f"({len(block.transactions)} txs, {block.header.gas_used} gas)")

    try:
        summary = import_file(chain, file, progress=progress)
    except OSError as exc:
        chain.close()
        fail(f"cannot read {file}: {exc.strerror or exc}")
    except ImportError_ as exc:
        head = chain.head
        chain.close()
        typer.echo(f"imported {exc.imported} blocks before the error; head is block {head.block_number}", err=True)
        fail(str(exc))
    chain.close()
    typer.echo(f"import done: {summary.imported} blocks imported, {summary.skipped} already present, "
               f"{summary.transactions} txs, {summary.gas} gas in {summary.seconds:.2f}s; "
               f"head block {summary.head_number} 0x{summary.head_hash.hex()}")


@app.command()
def replay(
    l1_rpc: str = typer.Option(..., "--l1-rpc", help="L1 JSON-RPC URL"),
    inbox_address: str = typer.Option(..., "--inbox", help="address of the BatchInbox contract on the L1"),
    genesis: Path = typer.Option(..., "--genesis", help="the L2's genesis JSON file"),
    datadir: Path = typer.Option(..., "--datadir", help="new directory for the rebuilt chain"),
    from_l1_block: int = typer.Option(0, "--from-l1-block", help="first L1 block to search for batches (the inbox's deployment)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="only the summary line"),
    follow: bool = typer.Option(False, "--follow", help="then keep replaying new batches and serve JSON-RPC (read-only)"),
    http_host: str = typer.Option("127.0.0.1", "--http-host", help="with --follow: RPC listen address"),
    http_port: int = typer.Option(8545, "--http-port", help="with --follow: RPC port; 0 picks a free one"),
    log_level: str = typer.Option("info", "--log-level", help="with --follow"),
    poll_seconds: float = typer.Option(2.0, "--poll-seconds", min=0.05, help="with --follow: how often to look for new batches on L1"),
    l1_head_tag: str = typer.Option("latest", "--l1-head", help="read batches up to L1's latest, safe or finalized block (finalized: none an L1 reorganisation can drop)"),
) -> None:
    """Rebuild the L2 from the batches on L1 alone and check every committed state root."""
    from .chain.chain import Blockchain, DatadirError
    from .chain.genesis import GenesisError, load_genesis
    from .chain.store import StoreLockedError
    from .settlement.l1 import L1Client, L1RPCError, L1Unavailable
    from .settlement.replay import L1_HEADS, InboxMismatch, ReplayError, replay as replay_batches

    try:
        address = bytes.fromhex(inbox_address.removeprefix("0x"))
    except ValueError:
        address = b""
    if len(address) != 20:
        fail("--inbox must be a 20-byte hex address")
    if l1_head_tag not in L1_HEADS:
        fail(f"--l1-head must be one of {', '.join(L1_HEADS)}, not {l1_head_tag!r}")
    try:
        Blockchain.init(datadir, load_genesis(genesis)).close()
        chain = Blockchain.open(datadir, sync=False)  # each block still commits atomically
    except (GenesisError, DatadirError, StoreLockedError) as exc:
        fail(str(exc))

    def progress(summary, record) -> None:
        if not quiet:
            typer.echo(f"batch {record.index}: blocks {record.first_block}-{record.last_block} "
                       f"state root 0x{record.state_root.hex()} ok ({summary.blocks} blocks, "
                       f"{summary.transactions} txs so far)")

    async def main() -> object:
        l1 = L1Client(l1_rpc, timeout=60)
        try:
            return await replay_batches(l1, address, chain, from_l1_block=from_l1_block, head_tag=l1_head_tag,
                                        progress=progress)
        finally:
            await l1.close()

    try:
        summary = asyncio.run(main())
    except ReplayError as exc:
        chain.close()
        fail(f"replay failed at {exc}", code=2)
    except InboxMismatch as exc:
        chain.close()
        fail(str(exc))
    except (L1Unavailable, L1RPCError) as exc:
        head = chain.head.block_number
        chain.close()
        fail(f"L1: {exc} (replayed up to block {head}; run again to resume)")
    rate = summary.transactions / summary.execute_seconds if summary.execute_seconds else 0.0
    typer.echo(f"replay done: {summary.batches} batches, {summary.blocks} blocks, {summary.transactions} txs "
               f"in {summary.seconds:.2f}s ({rate:.0f} tx/s executing); head block {summary.head_number} "
               f"0x{summary.head_hash.hex()} state root 0x{summary.state_root.hex()}; L1 read up to its "
               f"{l1_head_tag} block {summary.l1_head}")
    if not follow:
        chain.close()
        return
    _follow(chain, summary, l1_rpc, address, http_host, http_port, log_level, poll_seconds, l1_head_tag)


def _follow(chain, summary, l1_rpc: str, address: bytes, http_host: str, http_port: int, log_level: str,
            poll_seconds: float, l1_head_tag: str) -> None:
    """Serve the replayed chain read-only and keep applying new batches from L1."""
    from .node import Node, NodeConfig
    from .rpc.jsonrpc import RPCError
    from .rpc.server import PortInUseError
    from .settlement.follower import BatchFollower

    setup_logging(log_level)
    node = Node(NodeConfig(datadir=chain.store.path.parent, http_host=http_host, http_port=http_port, mining=False),
                blockchain=chain)
    node.follower = BatchFollower(
        chain, l1_rpc, address, batches=summary.batches, verified_block=summary.head_number,
        next_l1_block=summary.l1_head + 1, last_event=summary.last_event,
        on_block=lambda sealed: [listener(sealed) for listener in node.sequencer.listeners],
        poll_seconds=poll_seconds, head_tag=l1_head_tag,
    )

    def read_only(*_params) -> None:
        raise RPCError(-32000, "read-only replica (replay --follow): send transactions to the sequencer")

    for method in ("eth_sendRawTransaction", "eth_sendTransaction"):
        node.dispatcher.register(method, read_only, replace=True)

    def ready(n: Node) -> None:
        log.info("JSON-RPC listening on %s (chain id %d); following batches from L1", n.rpc.url, n.blockchain.chain_id)

    try:
        run_loop(node.serve(ready=ready))
    except PortInUseError as exc:
        chain.close()
        fail(f"{exc.strerror}: choose another --http-port")


@app.command("deploy-inbox")
def deploy_inbox(
    l1_rpc: str = typer.Option(..., "--l1-rpc", help="L1 JSON-RPC URL"),
    datadir: Path = typer.Option(..., "--datadir", help="the L2 chain (made by `init`) whose batches the inbox takes"),
    batcher: Optional[str] = typer.Option(None, "--batcher", help="address allowed to append [the deploying key's]"),
    l1_keystore: Optional[Path] = typer.Option(None, "--l1-keystore", help="deployer keystore (password in OPENLEDGER_BATCHER_PASSWORD); else OPENLEDGER_BATCHER_KEY"),
) -> None:
    """Deploy a BatchInbox for the chain in DATADIR on the L1 and print its address."""
    from eth_account import Account

    from .chain.chain import Blockchain, DatadirError
    from .chain.store import StoreLockedError
    from .contracts import SolidityCompileError
    from .settlement import inbox
    from .settlement.l1 import L1Client, L1RPCError, L1Unavailable
    from .settlement.poster import PosterConfigError, load_batcher_key

    try:
        key = load_batcher_key(l1_keystore)
        chain = Blockchain.open(datadir)
    except (PosterConfigError, DatadirError, StoreLockedError) as exc:
        fail(str(exc))
    genesis_hash = chain.header_by_number(0).hash
    chain.close()
    batcher_hex = (batcher or Account.from_key(key).address).removeprefix("0x")
    try:
        batcher_address = bytes.fromhex(batcher_hex)
    except ValueError:
        batcher_address = b""
    if len(batcher_address) != 20:
        fail("--batcher must be a 20-byte hex address")

    async def main() -> bytes:
        l1 = L1Client(l1_rpc)
        try:
            return await inbox.deploy(l1, key, batcher_address, genesis_hash)
        finally:
            await l1.close()

    try:
        address = asyncio.run(main())
    except (L1Unavailable, L1RPCError, RuntimeError, SolidityCompileError) as exc:
        fail(f"deployment failed: {exc}")
    typer.echo("0x" + address.hex())


@app.command()
def version() -> None:
    """Print the node's version."""
    typer.echo(f"openledger-node {__version__}")


from . import wallet_cli  # noqa: E402  (datanet, model, attribute, claim)
wallet_cli.register(app)
from .ai.cli import register_serve_command  # noqa: E402  (serve-models: OpenLoRA; torch loads when it runs)
register_serve_command(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
