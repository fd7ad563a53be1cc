"""Shared fixtures: a real node (LevelDB datadir, uvicorn on a free loopback port)."""
from __future__ import annotations

import asyncio
from contextlib import contextmanager
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from openledger_node.chain.chain import Blockchain
from openledger_node.chain.genesis import load_genesis
from openledger_node.devkeys import DEV_ACCOUNTS
from openledger_node.node import Node, NodeConfig

REPO = Path(__file__).resolve().parent.parent
DEVNET_GENESIS = REPO / "genesis" / "devnet.json"


@dataclass
class RunningNode:
    node: Node
    url: str
    datadir: Path
    client: httpx.Client

    def request(self, method: str, *params: Any) -> dict[str, Any]:
        """The whole JSON-RPC response object."""
        response = self.client.post(self.url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
        return response.json()

    def rpc(self, method: str, *params: Any) -> Any:
        """The result; fails the test on a JSON-RPC error."""
        body = self.request(method, *params)
        assert "error" not in body, f"{method} failed: {body['error']}"
        return body["result"]

    def wait_receipt(self, tx_hash: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            receipt = self.rpc("eth_getTransactionReceipt", tx_hash)
            if receipt is not None:
                return receipt
            time.sleep(0.02)
        raise AssertionError(f"no receipt for {tx_hash} after {timeout}s")


def start_node(datadir: Path, **config: Any) -> tuple[Node, threading.Thread]:
    """Run a node's event loop on a background thread; returns once RPC answers."""
    if not (datadir / "chaindata").exists():
        Blockchain.init(datadir, load_genesis(config.pop("genesis", DEVNET_GENESIS))).close()
    else:
        config.pop("genesis", None)
    cfg = NodeConfig(datadir=datadir, http_port=0, **{"block_time": 0, **config})
    node = Node(cfg)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(node.serve())
        except BaseException as exc:  # reported to the test below
            failure.append(exc)

    thread = threading.Thread(target=run, name="test-node", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while node.rpc is None or not node.rpc.running:
        if failure or not thread.is_alive():
            raise RuntimeError("node failed to start") from (failure[0] if failure else None)
        if time.monotonic() > deadline:
            raise RuntimeError("node did not start in 30 s")
        time.sleep(0.01)
    return node, thread


def stop_node(node: Node, thread: threading.Thread) -> None:
    loop_stop = getattr(node, "_stop", None)
    if loop_stop is not None and node.rpc is not None and node.rpc._task is not None:
        node.rpc._task.get_loop().call_soon_threadsafe(loop_stop.set)
    thread.join(30)
    assert not thread.is_alive(), "node did not stop"


@contextmanager
def running_node(datadir: Path, **config: Any) -> Iterator[RunningNode]:
    """A node on a background thread with an HTTP client; always stopped."""
    node, thread = start_node(datadir, **config)
    try:
        with httpx.Client(timeout=30) as client:
            yield RunningNode(node, node.rpc.url, datadir, client)
    finally:
        stop_node(node, thread)


@pytest.fixture
def devnet(tmp_path: Path) -> Iterator[RunningNode]:
    """A devnet node with --dev (unlocked dev accounts) that seals on demand."""
    with running_node(tmp_path / "data", dev=True) as running:
        yield running


@pytest.fixture
def dev_accounts() -> list[tuple[str, str]]:
    """(address, private key) of the 10 funded dev accounts."""
    return list(DEV_ACCOUNTS)
