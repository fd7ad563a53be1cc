"""The README's first command, ``./scripts/devnet.sh``, as a person runs it: it starts an
anvil L1 on loopback, deploys the BatchInbox, runs the node with the batch poster, prints
the URLs, and Ctrl-C stops everything it started; a second start resumes the same L2 and L1.
(The setup step it begins with is a no-op here: the suite runs inside the venv it made.)"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from anvil_process import free_port

REPO = Path(__file__).resolve().parent.parent


def _rpc(url: str, method: str, *params: Any) -> Any:
    reply = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, timeout=10)
    return reply.json()["result"]


def _start(datadir: Path, log: Path, port: int, l1_port: int) -> subprocess.Popen:
    env = {**os.environ, "DATADIR": str(datadir), "PORT": str(port), "L1_PORT": str(l1_port),
           "BATCH_MAX_AGE": "1", "BLOCK_TIME": "1", "L1_BLOCK_TIME": "1", "L1_EPOCH": "2",
           "PYTHONUNBUFFERED": "1"}
    with log.open("ab") as out:
        # Its own process group, as a terminal's foreground job: Ctrl-C reaches the whole group.
        return subprocess.Popen([str(REPO / "scripts" / "devnet.sh")], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def _wait(predicate, what: str, log: Path, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = predicate()
        except (httpx.HTTPError, KeyError, ValueError):
            found = None
        if found:
            return found
        assert time.monotonic() < deadline, f"{what}; devnet log:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def _ctrl_c(proc: subprocess.Popen, log: Path) -> int:
    os.killpg(proc.pid, signal.SIGINT)
    code = proc.wait(timeout=60)
    deadline = time.monotonic() + 20
    while _group_alive(proc.pid):  # anvil and the node, not only the script
        assert time.monotonic() < deadline, f"processes of the devnet outlived Ctrl-C:\n{log.read_text()[-2000:]}"
        time.sleep(0.1)
    return code


def test_devnet_script_runs_l1_node_and_poster_and_ctrl_c_stops_them_all(tmp_path: Path) -> None:
    port, l1_port = free_port(), free_port()
    url, l1_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{l1_port}"
    log = tmp_path / "devnet.log"
    proc = _start(tmp_path / "data", log, port, l1_port)
    try:
        _wait(lambda: "Audit:" in log.read_text(), "no banner", log)
        banner = log.read_text()
        assert f"RPC:       {url}" in banner and f"L1:        {l1_url}" in banner
        inbox = re.search(r"Inbox:\s+(0x[0-9a-f]{40})", banner).group(1)
        assert _rpc(l1_url, "eth_getCode", inbox, "latest") not in ("0x", None)
        assert int(_wait(lambda: _rpc(url, "eth_chainId"), "the L2 RPC never answered", log), 16) == 1612

        # Batches reach the L1, and L1's finalized block comes to hold them.
        status = _wait(lambda: (s := _rpc(url, "ol_syncStatus"))["finalized_l2"] and
                       int(s["finalized_l2"]["number"], 16) >= 2 and s, "nothing finalized on L1", log)
        assert status["poster"]["lastError"] is None
        assert int(status["posted_l2"]["number"], 16) >= int(status["safe_l2"]["number"], 16) >= \
            int(status["finalized_l2"]["number"], 16)
        posted = int(status["posted_l2"]["number"], 16)

        assert _ctrl_c(proc, log) in (0, 130)
        assert (tmp_path / "data" / "l1-state.json").exists()

        # A second start: the same inbox, the L1 still holding what was posted, the L2 resumed.
        proc = _start(tmp_path / "data", log, port, l1_port)
        _wait(lambda: log.read_text().count("Audit:") == 2, "no second banner", log)
        assert log.read_text().split("Audit:")[-2].count(inbox) >= 1
        assert int(_wait(lambda: _rpc(url, "eth_blockNumber"), "no RPC after restart", log), 16) >= posted
        again = _wait(lambda: (s := _rpc(url, "ol_syncStatus"))["posted_l2"] and
                      int(s["posted_l2"]["number"], 16) > posted and s, "no new batch after restart", log)
        assert again["poster"]["inbox"] == inbox
        assert _ctrl_c(proc, log) in (0, 130)
    finally:
        if _group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
