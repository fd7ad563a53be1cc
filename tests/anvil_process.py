"""A real anvil L1 (npm ``@foundry-rs/anvil``) on loopback, for the settlement tests.

``running_anvil`` always stops it, even when the test fails; ``Anvil.restart`` stops
and starts it again on the same port with the state it dumped (``--dump-state`` /
``--load-state``).
"""
from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import httpx

from openledger_node.settlement import inbox
from openledger_node.settlement.l1 import L1Client

REPO = Path(__file__).resolve().parent.parent
ANVIL = REPO / "node_modules" / ".bin" / "anvil"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Anvil:
    workdir: Path
    port: int = field(default_factory=free_port)
    extra_args: tuple[str, ...] = ()
    proc: subprocess.Popen | None = None
    _log: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def state_path(self) -> Path:
        return self.workdir / "anvil-state.json"

    def start(self) -> None:
        assert ANVIL.exists(), f"{ANVIL} missing: run `npm install`"
        args = [str(ANVIL), "--host", "127.0.0.1", "--port", str(self.port), "--dump-state", str(self.state_path),
                *self.extra_args]
        if self.state_path.exists():
            args += ["--load-state", str(self.state_path)]
        self._log = open(self.workdir / "anvil.log", "ab")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.rpc("eth_chainId"):
                    return
            except (httpx.HTTPError, OSError):
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"anvil exited with {self.proc.returncode}: "
                                   f"{(self.workdir / 'anvil.log').read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("anvil did not answer in 30 s")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGINT (anvil writes --dump-state on the way out), then SIGKILL if it lingers."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self, down_seconds: float = 0.0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def rpc(self, method: str, *params: Any) -> Any:
        reply = httpx.post(self.url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)},
                           timeout=30).json()
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def deploy_inbox(self, key: str, batcher: str, l2_genesis: bytes) -> str:
        async def go() -> bytes:
            l1 = L1Client(self.url)
            try:
                return await inbox.deploy(l1, bytes.fromhex(key[2:]), bytes.fromhex(batcher[2:]), l2_genesis)
            finally:
                await l1.close()

        return "0x" + asyncio.run(go()).hex()

    def call(self, to: str, data: bytes) -> bytes:
        return bytes.fromhex(self.rpc("eth_call", {"to": to, "data": "0x" + data.hex()}, "latest")[2:])

    def batch_records(self, address: str) -> list[inbox.BatchRecord]:
        logs = self.rpc("eth_getLogs", {"address": address, "topics": ["0x" + inbox.EVENT_TOPIC.hex()],
                                        "fromBlock": "0x0", "toBlock": "latest"})
        return [inbox.BatchRecord.from_log(entry) for entry in logs]


@contextmanager
def running_anvil(workdir: Path, *extra_args: str) -> Iterator[Anvil]:
    workdir.mkdir(parents=True, exist_ok=True)
    anvil = Anvil(workdir, extra_args=tuple(extra_args))
    try:
        anvil.start()
        yield anvil
    finally:
        anvil.stop()
