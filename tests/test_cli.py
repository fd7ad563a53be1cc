"""``openledger-node init`` and ``run`` as an operator meets them: real processes,
real signals, real sockets, the exit codes and the lines they print."""
from __future__ import annotations

import json
import shutil
import signal
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import pytest
from eth_account import Account

from node_process import DEVNET_GENESIS, NodeProcess, init_datadir, kill_all, run_cli, start_node
from openledger_node.devkeys import DEV_ACCOUNTS

CHAIN_ID = 1612


@pytest.fixture
def procs():
    """Kills whatever node processes a test left running, pass or fail."""
    try:
        yield
    finally:
        kill_all()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def transfer(nonce: int, sender: int = 0) -> tuple[str, str]:
    """(raw, hash) of a signed 1-wei transfer from a dev account."""
    signed = Account.from_key(DEV_ACCOUNTS[sender][1]).sign_transaction({
        "type": 2, "chainId": CHAIN_ID, "nonce": nonce, "to": "0x" + "42" * 20, "value": 1, "gas": 21_000,
        "maxFeePerGas": 10 * 10**9, "maxPriorityFeePerGas": 10**9,
    })
    raw = signed.raw_transaction.hex()
    return (raw if raw.startswith("0x") else "0x" + raw), "0x" + signed.hash.hex().removeprefix("0x")


def mine_one(node: NodeProcess, nonce: int) -> dict[str, Any]:
    raw, tx_hash = transfer(nonce)
    assert node.rpc("eth_sendRawTransaction", raw) == tx_hash
    deadline = time.monotonic() + 15
    while (receipt := node.rpc("eth_getTransactionReceipt", tx_hash)) is None:
        assert time.monotonic() < deadline, "transaction not mined"
        time.sleep(0.02)
    return receipt


def assert_one_error_line(done, *expected: str) -> str:
    """Non-zero exit, nothing but one ``error: ...`` line on stderr, no traceback anywhere."""
    output = done.stdout + done.stderr
    assert done.returncode != 0, f"exit code 0 for a failure: {output}"
    assert "Traceback" not in output and "╭" not in output, f"traceback instead of one line:\n{output}"
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), f"want one 'error: ...' line, got:\n{done.stderr}"
    for part in expected:
        assert part in lines[0], f"{part!r} not in {lines[0]!r}"
    return lines[0]


def stop(node: NodeProcess, sig: int) -> int:
    node.signal(sig)
    return node.wait(30)


# -- init ------------------------------------------------------------------------------------


def test_init_creates_the_chain_prints_its_genesis_hash_and_can_be_repeated(tmp_path: Path) -> None:
    datadir = tmp_path / "data"
    first = run_cli("init", "--genesis", DEVNET_GENESIS, "--datadir", datadir)
    assert first.returncode == 0, first.stderr
    assert (datadir / "chaindata").is_dir()
    assert "genesis 0x" in first.stdout and "chain id 1612" in first.stdout
    again = run_cli("init", "--genesis", DEVNET_GENESIS, "--datadir", datadir)
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout  # same chain: nothing to do, same genesis hash


def test_init_refuses_a_datadir_that_holds_another_chain(tmp_path: Path) -> None:
    datadir = tmp_path / "data"
    genesis_hash = init_datadir(datadir)
    doc = json.loads(DEVNET_GENESIS.read_text())
    doc["extraData"] = "0x" + b"another chain".hex()
    other = tmp_path / "other.json"
    other.write_text(json.dumps(doc))
    done = run_cli("init", "--genesis", other, "--datadir", datadir)
    assert_one_error_line(done, "different chain", str(datadir))
    assert done.stdout == ""
    assert init_datadir(datadir) == genesis_hash  # untouched


# -- one clear line for every operator mistake ----------------------------------------------

# name -> builds (argv, what the error line must contain) in a scratch directory
def _no_datadir(tmp: Path, ctx: dict) -> tuple[list, list]:
    return ["run", "--http-port", "0"], ["--datadir is required"]


def _missing_datadir(tmp: Path, ctx: dict) -> tuple[list, list]:
    return ["run", "--datadir", tmp / "nowhere", "--http-port", "0"], ["no chain in", "init"]


def _port_in_use(tmp: Path, ctx: dict) -> tuple[list, list]:
    port = ctx["busy_port"]
    return ["run", "--datadir", ctx["datadir"], "--http-port", port], [f"127.0.0.1:{port}", "already in use"]


def _flag_port_beats_config_port(tmp: Path, ctx: dict) -> tuple[list, list]:
    port = ctx["busy_port"]
    config = tmp / "node.toml"
    config.write_text(f'datadir = "{ctx["datadir"]}"\nhttp_port = {free_port()}\n')
    return ["run", "--config", config, "--http-port", port], [f"127.0.0.1:{port}", "already in use"]


def _port_out_of_range(tmp: Path, ctx: dict) -> tuple[list, list]:
    return ["run", "--datadir", ctx["datadir"], "--http-port", "99999"], ["--http-port", "65535"]


def _address_not_here(tmp: Path, ctx: dict) -> tuple[list, list]:
    # 203.0.113.77 is in TEST-NET-3 (RFC 5737): documentation only, not an address of this host
    return ["run", "--datadir", ctx["datadir"], "--http-host", "203.0.113.77", "--http-port", "0"], ["203.0.113.77"]


def _negative_block_time(tmp: Path, ctx: dict) -> tuple[list, list]:
    return ["run", "--datadir", ctx["datadir"], "--block-time", "-1"], ["--block-time"]


def _corrupt_genesis(tmp: Path, ctx: dict) -> tuple[list, list]:
    corrupt = tmp / "genesis.json"
    corrupt.write_text(DEVNET_GENESIS.read_text()[:400])  # cut off mid-file
    return ["init", "--genesis", corrupt, "--datadir", tmp / "data"], ["genesis", "not valid JSON"]


def _genesis_not_json_object(tmp: Path, ctx: dict) -> tuple[list, list]:
    bad = tmp / "genesis.json"
    bad.write_text('{"config": {"chainId": "twelve"}, "alloc": {}}')
    return ["init", "--genesis", bad, "--datadir", tmp / "data"], ["chainId"]


def _missing_genesis(tmp: Path, ctx: dict) -> tuple[list, list]:
    return ["init", "--genesis", tmp / "nope.json", "--datadir", tmp / "data"], ["not found"]


def _malformed_toml(tmp: Path, ctx: dict) -> tuple[list, list]:
    config = tmp / "node.toml"
    config.write_text(f'datadir = "{ctx["datadir"]}"\nhttp_port = [8545,\n')
    return ["run", "--config", config], ["not valid TOML", str(config)]


def _missing_config(tmp: Path, ctx: dict) -> tuple[list, list]:
    return ["run", "--config", tmp / "nope.toml"], ["config file not found"]


def _unknown_config_key(tmp: Path, ctx: dict) -> tuple[list, list]:
    config = tmp / "node.toml"
    config.write_text(f'datadir = "{ctx["datadir"]}"\nhttp_prot = 8545\n')
    return ["run", "--config", config], ["unknown config keys: http_prot"]


def _wrong_config_type(tmp: Path, ctx: dict) -> tuple[list, list]:
    config = tmp / "node.toml"
    config.write_text(f'[node]\ndatadir = "{ctx["datadir"]}"\nhttp-port = "8545"\n')
    return ["run", "--config", config], ["http_port", "integer"]


ERROR_CASES: dict[str, Callable[[Path, dict], tuple[list, list]]] = {
    "run without --datadir": _no_datadir,
    "run on a missing datadir": _missing_datadir,
    "run on a port in use": _port_in_use,
    "--http-port overrides the config's port": _flag_port_beats_config_port,
    "run with a port out of range": _port_out_of_range,
    "run on an address this host lacks": _address_not_here,
    "run with a negative block time": _negative_block_time,
    "init with a corrupt genesis file": _corrupt_genesis,
    "init with an invalid genesis value": _genesis_not_json_object,
    "init with a missing genesis file": _missing_genesis,
    "run with malformed TOML config": _malformed_toml,
    "run with a missing config file": _missing_config,
    "run with an unknown config key": _unknown_config_key,
    "run with a config value of the wrong type": _wrong_config_type,
}


@pytest.fixture(scope="module")
def error_runs(tmp_path_factory) -> dict[str, Any]:
    """Every failing command, run concurrently (each is mostly interpreter start-up)."""
    base = tmp_path_factory.mktemp("cli-errors")
    datadir = base / "data"
    init_datadir(datadir)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        jobs = {}
        for i, (name, build) in enumerate(ERROR_CASES.items()):
            scratch = base / f"case-{i}"
            scratch.mkdir()
            own = scratch / "chain"  # each its own copy: LevelDB's lock allows one process per datadir
            shutil.copytree(datadir, own)
            jobs[name] = build(scratch, {"datadir": own, "busy_port": busy.getsockname()[1]})
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = {name: pool.submit(run_cli, *argv) for name, (argv, _) in jobs.items()}
            results = {name: (future.result(), jobs[name][1]) for name, future in futures.items()}
    return results


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_operator_mistakes_give_one_error_line(case: str, error_runs: dict[str, Any]) -> None:
    done, expected = error_runs[case]
    assert_one_error_line(done, *expected)


# -- running -----------------------------------------------------------------------------------


def _listening_sockets(port: int) -> list[str]:
    """Local addresses (hex, as /proc/net/tcp* writes them) that listen on ``port``."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            address, hex_port = fields[1].split(":")
            if int(hex_port, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                found.append(address)
    return found


def _outside_address() -> str | None:
    """An IPv4 address of this host other than loopback, if it has one (no packet is sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))
            address = probe.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") else address


def test_sigint_and_sigterm_stop_cleanly_and_a_restart_continues_from_the_head(tmp_path: Path, procs) -> None:
    datadir = tmp_path / "data"
    genesis_hash = init_datadir(datadir)
    log = tmp_path / "node.log"

    node = start_node(datadir, log)  # no --http-host: the default
    assert node.rpc("eth_getBlockByNumber", "0x0", False)["hash"] == genesis_hash
    port = int(node.url.rsplit(":", 1)[1])
    assert node.url.startswith("http://127.0.0.1:")
    if sys.platform.startswith("linux"):
        assert _listening_sockets(port) == ["0100007F"], "the RPC listens beyond 127.0.0.1"
    outside = _outside_address()
    if outside is not None:
        with pytest.raises(OSError):
            socket.create_connection((outside, port), timeout=2).close()

    receipt = mine_one(node, 0)
    assert receipt["blockNumber"] == "0x1"
    # a second node on the same datadir: one line, and the first one is unharmed
    assert_one_error_line(run_cli("run", "--datadir", datadir, "--http-port", "0"), "in use")
    assert node.rpc("eth_blockNumber") == "0x1"

    assert stop(node, signal.SIGINT) == 0
    assert "stopped cleanly at block 1" in node.log()
    assert "Traceback" not in node.log()

    node = start_node(datadir, log)
    assert node.resumed_head() == (1, node.rpc("eth_getBlockByNumber", "0x1", False)["hash"])
    assert node.rpc("eth_blockNumber") == "0x1"
    assert node.rpc("eth_getTransactionReceipt", receipt["transactionHash"]) == receipt
    assert mine_one(node, 1)["blockNumber"] == "0x2"

    assert stop(node, signal.SIGTERM) == 0
    assert "stopped cleanly at block 2" in node.log()
    assert "Traceback" not in node.log()

    node = start_node(datadir, log)
    assert node.resumed_head()[0] == 2
    assert node.rpc("eth_blockNumber") == "0x2"
    assert stop(node, signal.SIGTERM) == 0


def test_run_reads_a_toml_config_and_flags_override_it(tmp_path: Path, procs) -> None:
    datadir = tmp_path / "data"
    init_datadir(datadir)
    port = free_port()
    config = tmp_path / "node.toml"
    config.write_text(
        "[node]\n"
        f'datadir = "{datadir}"\n'
        f"http-port = {port}\n"
        "block_time = 3600\n"  # a block an hour, unless the flag says otherwise
        "mining = true\n"
    )
    node = NodeProcess(["run", "--config", str(config), "--block-time", "0"], tmp_path / "node.log").start()
    node.wait_ready()
    assert node.url == f"http://127.0.0.1:{port}"  # port and datadir from the file
    started = time.monotonic()
    receipt = mine_one(node, 0)  # on demand: --block-time 0 beat the file's 3600
    assert time.monotonic() - started < 10
    assert receipt["blockNumber"] == "0x1"
    # one log line per block: number, transactions, gas, milliseconds
    sealed = node.sealed()
    assert [(number, txs, gas) for number, txs, gas, _, _ in sealed] == [(1, 1, 21_000)]
    assert sealed[0][3] > 0
    line = next(line for line in node.log().splitlines() if "sealed block 1 " in line)
    assert all(part in line for part in ("txs=1", "gas=21000", "ms=")), line
    assert stop(node, signal.SIGTERM) == 0


def test_no_mining_serves_rpc_and_pools_transactions_but_seals_nothing(tmp_path: Path, procs) -> None:
    datadir = tmp_path / "data"
    init_datadir(datadir)
    # with mining on, --block-time 0.2 would seal five blocks a second, empty or not
    node = start_node(datadir, tmp_path / "node.log", "--no-mining", block_time="0.2")
    assert node.rpc("eth_mining") is False
    raw, tx_hash = transfer(0)
    assert node.rpc("eth_sendRawTransaction", raw) == tx_hash
    time.sleep(1.0)
    pending = node.rpc("eth_getTransactionByHash", tx_hash)
    assert pending is not None and pending["blockNumber"] is None and pending["hash"] == tx_hash
    assert node.rpc("eth_getTransactionReceipt", tx_hash) is None
    assert node.rpc("eth_getTransactionCount", DEV_ACCOUNTS[0][0], "pending") == "0x1"
    status = node.rpc.request("txpool_status")
    if "error" not in status:  # geth's txpool namespace, where present
        assert status["result"]["pending"] == "0x1"
    assert node.rpc("eth_blockNumber") == "0x0"
    assert node.sealed() == []
    assert stop(node, signal.SIGINT) == 0
    assert "stopped cleanly at block 0" in node.log()
