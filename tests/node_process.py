"""Helpers for tests that drive ``openledger-node`` as a real child process.

Each child's stdout and stderr go to one log file (never a pipe: a node that logs
a line per block would block on a full pipe).  Every child started here is
registered so that ``kill_all`` (called from the tests' ``finally`` blocks and the
``node_procs`` fixture) leaves none behind.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
DEVNET_GENESIS = REPO / "genesis" / "devnet.json"

_LISTENING = re.compile(r"JSON-RPC listening on (http://\S+)")
# node.py, at start-up: "chain 1612 at block 7 (0x<hash>)"
RESUMED = re.compile(r"chain (\d+) at block (\d+) \(0x([0-9a-f]{64})\)")
# sequencer.py, after each commit: "sealed block 7 txs=3 gas=63000 ms=4.2 hash=0x<16 hex>"
SEALED = re.compile(r"sealed block (\d+) txs=(\d+) gas=(\d+) ms=([0-9.]+) hash=0x([0-9a-f]+)")


def node_command() -> list[str]:
    """The installed console script next to this interpreter, or the module itself."""
    script = Path(sys.executable).with_name("openledger-node")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from openledger_node.cli import main; main()"]


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run one short command (init, version, a failing run) to completion."""
    return subprocess.run(
        [*node_command(), *map(str, args)], capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL, env=_env(),
    )


def init_datadir(datadir: Path, genesis: Path = DEVNET_GENESIS) -> str:
    """``openledger-node init``; returns the genesis hash it printed."""
    done = run_cli("init", "--genesis", str(genesis), "--datadir", str(datadir))
    assert done.returncode == 0, f"init failed ({done.returncode}): {done.stderr}"
    found = re.search(r"genesis (0x[0-9a-f]{64})", done.stdout)
    assert found, f"init printed no genesis hash: {done.stdout!r}"
    return found.group(1)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class RPCError(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.error = error


class RPC:
    """A minimal JSON-RPC client over one keep-alive HTTP connection pool."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url
        self.client = httpx.Client(timeout=timeout)
        self._ids = 0

    def close(self) -> None:
        self.client.close()

    def request(self, method: str, *params: Any) -> dict[str, Any]:
        self._ids += 1
        body = {"jsonrpc": "2.0", "id": self._ids, "method": method, "params": list(params)}
        return self.client.post(self.url, json=body).json()

    def __call__(self, method: str, *params: Any) -> Any:
        body = self.request(method, *params)
        if "error" in body:
            raise RPCError(body["error"])
        return body["result"]

    def batch(self, calls: list[tuple[str, list[Any]]], chunk: int = 500) -> list[dict[str, Any]]:
        """Several calls as JSON-RPC batches; the response objects, in call order."""
        out: list[dict[str, Any]] = []
        for start in range(0, len(calls), chunk):
            part = calls[start:start + chunk]
            payload = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(part)]
            replies = self.client.post(self.url, json=payload).json()
            by_id = {reply["id"]: reply for reply in replies}
            out.extend(by_id[i] for i in range(len(part)))
        return out

    def batch_results(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        results = []
        for (method, _), reply in zip(calls, self.batch(calls)):
            if "error" in reply:
                raise RPCError({**reply["error"], "method": method})
            results.append(reply["result"])
        return results


@dataclass
class NodeProcess:
    """One ``openledger-node run`` child."""

    args: list[str]
    log_path: Path
    proc: subprocess.Popen | None = None
    url: str | None = None
    rpc: RPC | None = None
    _log_fh: Any = field(default=None, repr=False)

    def start(self) -> "NodeProcess":
        self._log_fh = open(self.log_path, "ab")
        self._log_offset = self._log_fh.tell()
        self.proc = subprocess.Popen(
            [*node_command(), *self.args], stdin=subprocess.DEVNULL, stdout=self._log_fh,
            stderr=subprocess.STDOUT, env=_env(), start_new_session=True,
        )
        _LIVE.append(self)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        """What this child has logged so far (this run only, not earlier runs in the same file)."""
        with open(self.log_path, "rb") as fh:
            fh.seek(self._log_offset)
            return fh.read().decode(errors="replace")

    def wait_ready(self, timeout: float = 30.0) -> "NodeProcess":
        """Wait until the log names the RPC address and the RPC answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"node exited with {self.proc.returncode} before it was ready:\n{self.log()}")
            found = _LISTENING.search(self.log())
            if found:
                if self.rpc is None:
                    self.url = found.group(1)
                    self.rpc = RPC(self.url)
                try:
                    self.rpc("eth_chainId")
                    return self
                except httpx.TransportError:
                    pass
            time.sleep(0.02)
        raise AssertionError(f"node not ready after {timeout}s:\n{self.log()}")

    def resumed_head(self) -> tuple[int, str]:
        """(number, 0x-hash) of the head the node's start-up log line reports."""
        found = RESUMED.search(self.log())
        assert found, f"the start-up log does not report the head block:\n{self.log()}"
        return int(found.group(2)), "0x" + found.group(3)

    def sealed(self) -> list[tuple[int, int, int, float, str]]:
        """(number, txs, gas, ms, hash prefix) of every "sealed block" log line so far."""
        return [(int(n), int(t), int(g), float(ms), h) for n, t, g, ms, h in SEALED.findall(self.log())]

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL (no clean-up of any kind in the child) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.wait(10)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout)
        finally:
            self._close()
        return code

    def _close(self) -> None:
        if self.rpc is not None:
            self.rpc.close()
            self.rpc = None
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None
        if self in _LIVE and self.proc is not None and self.proc.poll() is not None:
            _LIVE.remove(self)


_LIVE: list[NodeProcess] = []


def start_node(datadir: Path, log_path: Path, *extra: str, port: int | str = 0, block_time: str = "0",
               ready: bool = True) -> NodeProcess:
    """``openledger-node run`` on a loopback port (0: the OS picks a free one)."""
    args = ["run", "--datadir", str(datadir), "--http-port", str(port), "--block-time", block_time, *extra]
    node = NodeProcess(args, log_path).start()
    if ready:
        try:
            node.wait_ready()
        except BaseException:
            node.kill()
            raise
    return node


def kill_all() -> None:
    """SIGKILL every child these helpers started that is still running."""
    for node in list(_LIVE):
        try:
            node.kill()
        except Exception:  # already gone, or not reaped in time: keep going for the others
            pass
