"""Off-the-shelf Ethereum clients against a real node over HTTP.

- web3.py: deploy TestToken (signed locally), calls, a transfer through the signing
  middleware, Transfer events through ``eth_getLogs`` and through a log filter.
- ethers v6 (``tests/js/ethers_send.mjs`` under node): value transfer with ``tx.wait()``,
  deployment, ``contract.on`` (eth_newFilter / eth_getFilterChanges polling), queryFilter.
- foundry's ``cast`` (npm ``@foundry-rs/cast``): send, create, call, balance, block-number,
  receipt, chain-id, logs.

Every subprocess runs with a timeout, so a misbehaving node fails the test instead of
hanging it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from eth_utils import event_abi_to_log_topic, to_checksum_address
from web3 import Web3
from web3.middleware import SignAndSendRawMiddlewareBuilder

from openledger_node.contracts import contract_artifact

if TYPE_CHECKING:
    from conftest import RunningNode

REPO = Path(__file__).resolve().parent.parent
NODE_BIN = shutil.which("node")
CAST = REPO / "node_modules" / ".bin" / "cast"
ETHERS_SCRIPT = REPO / "tests" / "js" / "ethers_send.mjs"
CHAIN_ID = 1612
ZERO_ADDRESS_CHECKSUM = to_checksum_address("0x" + "00" * 20)
ONE_ETHER = 10**18
SUPPLY = 1_000_000 * 10**18
SUBPROCESS_TIMEOUT = 90  # seconds per client process

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def token_artifact() -> dict[str, Any]:
    if NODE_BIN is None or not (REPO / "node_modules" / "solc").is_dir():
        pytest.fail("node / npm packages not installed: run scripts/setup.sh")
    return contract_artifact("TestToken")


def transfer_topic(abi: list[dict[str, Any]]) -> str:
    event = next(e for e in abi if e.get("type") == "event" and e["name"] == "Transfer")
    return "0x" + event_abi_to_log_topic(event).hex()


def cast_binary() -> Path | None:
    """The cast executable behind ``node_modules/.bin/cast``.

    The npm wrapper (``@foundry-rs/cast`` 1.7.1, ``node_modules/.bin/cast``) spawns the
    platform package's binary but always exits 0, even when cast fails, so the tests run
    the binary it resolves (``@foundry-rs/cast-<platform>/bin/cast``) directly.
    """
    if not CAST.exists():
        return None
    for candidate in sorted((REPO / "node_modules" / "@foundry-rs").glob("cast-*/bin/cast")):
        if os.access(candidate, os.X_OK):
            return candidate
    return CAST


def run_client(args: list[str], *, cwd: Path, timeout: float = SUBPROCESS_TIMEOUT) -> str:
    """Run a client process; returns stdout, fails the test on a non-zero exit or timeout.

    The process gets its own session so that a timeout kills it with all its children.
    """
    env = {**os.environ, "NO_COLOR": "1", "FOUNDRY_DISABLE_NIGHTLY_WARNING": "1"}
    proc = subprocess.Popen(
        [str(a) for a in args], cwd=cwd, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"{' '.join(map(str, args[:3]))} timed out after {timeout}s\nstdout: {stdout}\nstderr: {stderr}")
    assert proc.returncode == 0, f"{' '.join(map(str, args))}\nexit {proc.returncode}\nstdout: {stdout}\nstderr: {stderr}"
    return stdout


# --------------------------------------------------------------------------------------------
# web3.py
# --------------------------------------------------------------------------------------------


def test_web3py_token_deploy_transfer_logs_and_filter(
    devnet: RunningNode, dev_accounts: list[tuple[str, str]], token_artifact: dict[str, Any]
) -> None:
    (deployer, deployer_key), (recipient, _) = dev_accounts[0], dev_accounts[1]
    w3 = Web3(Web3.HTTPProvider(devnet.url, request_kwargs={"timeout": 30}))
    assert w3.is_connected()
    assert w3.eth.chain_id == CHAIN_ID

    # Deploy, signed locally with w3.eth.account.sign_transaction.
    Token = w3.eth.contract(abi=token_artifact["abi"], bytecode=token_artifact["bytecode"])
    deploy_tx = Token.constructor(SUPPLY).build_transaction(
        {"from": deployer, "nonce": w3.eth.get_transaction_count(deployer), "chainId": CHAIN_ID}
    )
    signed = w3.eth.account.sign_transaction(deploy_tx, deployer_key)
    deploy_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    deploy_receipt = w3.eth.wait_for_transaction_receipt(deploy_hash, timeout=30, poll_latency=0.05)
    assert deploy_receipt["status"] == 1
    token_address = deploy_receipt["contractAddress"]
    assert token_address == w3.to_checksum_address(token_address)
    assert w3.eth.get_code(token_address) == bytes.fromhex(token_artifact["deployedBytecode"][2:])
    deploy_block = deploy_receipt["blockNumber"]

    token = w3.eth.contract(address=token_address, abi=token_artifact["abi"])
    assert token.functions.totalSupply().call() == SUPPLY
    assert token.functions.balanceOf(deployer).call() == SUPPLY
    assert token.functions.balanceOf(recipient).call() == 0
    assert token.functions.name().call() == "TestToken"
    assert token.functions.symbol().call() == "TT"
    assert token.functions.decimals().call() == 18

    # A log filter installed before the transfer.
    flt = token.events.Transfer.create_filter(from_block=deploy_block)
    # geth: eth_getFilterChanges reports only logs from blocks added after the filter was
    # installed; the historical range (the mint) is for eth_getFilterLogs.
    assert flt.get_new_entries() == []

    # Transfer through the signing middleware (transact() -> eth_sendRawTransaction).
    w3.middleware_onion.inject(SignAndSendRawMiddlewareBuilder.build(deployer_key), layer=0)
    amount = 12_345 * 10**18
    transfer_hash = token.functions.transfer(recipient, amount).transact({"from": deployer})
    transfer_receipt = w3.eth.wait_for_transaction_receipt(transfer_hash, timeout=30, poll_latency=0.05)
    assert transfer_receipt["status"] == 1
    assert transfer_receipt["blockNumber"] > deploy_block
    assert token.functions.balanceOf(recipient).call() == amount
    assert token.functions.balanceOf(deployer).call() == SUPPLY - amount
    assert token.functions.totalSupply().call() == SUPPLY

    # The receipt's log decodes to the transfer.
    (receipt_event,) = token.events.Transfer().process_receipt(transfer_receipt)
    assert dict(receipt_event["args"]) == {"from": deployer, "to": recipient, "value": amount}

    def check_mint(event: Any) -> None:
        assert event["event"] == "Transfer"
        assert event["address"] == token_address
        assert dict(event["args"]) == {"from": ZERO_ADDRESS_CHECKSUM, "to": deployer, "value": SUPPLY}
        assert event["blockNumber"] == deploy_block
        assert event["transactionHash"] == deploy_hash

    def check_transfer(event: Any) -> None:
        assert event["event"] == "Transfer"
        assert event["address"] == token_address
        assert dict(event["args"]) == {"from": deployer, "to": recipient, "value": amount}
        assert event["blockNumber"] == transfer_receipt["blockNumber"]
        assert event["blockHash"] == transfer_receipt["blockHash"]
        assert event["transactionHash"] == transfer_hash
        assert event["logIndex"] == 0
        assert event["transactionIndex"] == transfer_receipt["transactionIndex"]

    # eth_getLogs
    logs = list(token.events.Transfer.get_logs(from_block=deploy_block))
    assert len(logs) == 2, logs
    check_mint(logs[0])
    check_transfer(logs[1])
    to_recipient = list(token.events.Transfer.get_logs(from_block=deploy_block, argument_filters={"to": recipient}))
    assert len(to_recipient) == 1
    check_transfer(to_recipient[0])
    latest_only = list(token.events.Transfer.get_logs(from_block=transfer_receipt["blockNumber"], to_block="latest"))
    assert [e["transactionHash"] for e in latest_only] == [transfer_hash]

    # eth_getFilterChanges: only the new transfer; then nothing more.
    new_entries = flt.get_new_entries()
    assert len(new_entries) == 1, new_entries
    check_transfer(new_entries[0])
    assert flt.get_new_entries() == []
    # eth_getFilterLogs: the whole range from from_block, mint included.
    all_entries = flt.get_all_entries()
    assert len(all_entries) == 2, all_entries
    check_mint(all_entries[0])
    check_transfer(all_entries[1])

    # A filter on an indexed argument.
    by_sender = token.events.Transfer.create_filter(from_block=deploy_block, argument_filters={"from": deployer})
    (only_transfer,) = by_sender.get_all_entries()
    check_transfer(only_transfer)
    assert w3.eth.uninstall_filter(flt.filter_id) is True
    assert w3.eth.uninstall_filter(by_sender.filter_id) is True


# --------------------------------------------------------------------------------------------
# ethers v6 (node)
# --------------------------------------------------------------------------------------------


def test_ethers_transfer_deploy_and_contract_events(
    devnet: RunningNode, dev_accounts: list[tuple[str, str]], token_artifact: dict[str, Any], tmp_path: Path
) -> None:
    (sender, sender_key), (recipient, _), (token_recipient, _) = dev_accounts[2], dev_accounts[3], dev_accounts[4]
    value = 3 * ONE_ETHER + 17
    token_amount = 777 * 10**18
    config = {
        "url": devnet.url,
        "chainId": CHAIN_ID,
        "privateKey": sender_key,
        "to": recipient,
        "value": str(value),
        "abi": token_artifact["abi"],
        "bytecode": token_artifact["bytecode"],
        "supply": str(SUPPLY),
        "tokenRecipient": token_recipient,
        "tokenAmount": str(token_amount),
        "timeoutMs": 60_000,
    }
    config_path = tmp_path / "ethers_config.json"
    config_path.write_text(json.dumps(config))
    stdout = run_client([NODE_BIN, str(ETHERS_SCRIPT), str(config_path)], cwd=REPO)
    # ethers logs swallowed filter-polling errors to stdout as "@TODO <error>".
    assert "@TODO" not in stdout, stdout
    (line,) = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
    out = json.loads(line.removeprefix("RESULT "))
    assert out["rpcErrors"] == [], out["rpcErrors"]

    assert int(out["chainId"]) == CHAIN_ID
    assert out["sender"] == sender

    # Value transfer: receipt agrees with the node; balances moved by value (+ fee).
    t = out["transfer"]
    assert t["status"] == 1
    node_receipt = devnet.rpc("eth_getTransactionReceipt", t["hash"])
    assert node_receipt["status"] == "0x1"
    assert int(node_receipt["blockNumber"], 16) == t["blockNumber"]
    assert node_receipt["blockHash"] == t["blockHash"]
    assert t["from"] == sender and t["to"] == recipient
    assert int(t["fetchedValue"]) == value
    assert t["fetchedType"] == 2  # ethers sends EIP-1559 when the node reports a base fee
    assert int(t["gasUsed"]) == 21_000
    fee = int(t["gasUsed"]) * int(t["gasPrice"])
    b = {k: int(v) for k, v in out["balances"].items()}
    assert b["recipientAfter"] - b["recipientBefore"] == value
    assert b["senderBefore"] - b["senderAfter"] == value + fee
    assert int(devnet.rpc("eth_getBalance", recipient, "latest"), 16) == b["recipientAfter"]

    # Deployment.
    d = out["deploy"]
    assert d["status"] == 1
    assert d["address"] == d["contractAddress"]
    assert d["blockNumber"] > t["blockNumber"]
    assert devnet.rpc("eth_getCode", d["address"], "latest") == token_artifact["deployedBytecode"]

    # contract.on("Transfer") through eth_newFilter + eth_getFilterChanges.
    assert out["rpcCalls"].get("eth_newFilter", 0) >= 1, out["rpcCalls"]
    assert out["rpcCalls"].get("eth_getFilterChanges", 0) >= 1, out["rpcCalls"]
    assert out["filterId"]
    ev = out["event"]
    assert (ev["from"], ev["to"], int(ev["value"])) == (sender, token_recipient, token_amount)
    assert ev["transactionHash"] == out["tokenTransfer"]["hash"]
    assert ev["blockNumber"] == out["tokenTransfer"]["blockNumber"]
    assert ev["address"] == d["address"]
    assert ev["logIndex"] == 0
    assert out["tokenTransfer"]["status"] == 1

    # queryFilter (eth_getLogs): mint then transfer.
    q = out["queried"]
    assert [(e["from"], e["to"], int(e["value"])) for e in q] == [
        (ZERO_ADDRESS_CHECKSUM, sender, SUPPLY),
        (sender, token_recipient, token_amount),
    ]
    assert q[0]["transactionHash"] == d["hash"]
    assert int(out["tokenBalance"]) == token_amount
    assert int(out["deployerTokenBalance"]) == SUPPLY - token_amount
    assert int(out["totalSupply"]) == SUPPLY


# --------------------------------------------------------------------------------------------
# foundry cast (npm)
# --------------------------------------------------------------------------------------------


def test_cast_send_call_balance_receipt(
    devnet: RunningNode, dev_accounts: list[tuple[str, str]], token_artifact: dict[str, Any], tmp_path: Path
) -> None:
    cast_bin = cast_binary()
    if cast_bin is None:
        pytest.fail("node_modules/.bin/cast missing: run scripts/setup.sh")
    (sender, sender_key), (recipient, _) = dev_accounts[5], dev_accounts[6]
    rpc = ["--rpc-url", devnet.url]

    def cast(*args: str) -> str:
        # cwd: an empty folder, so no foundry.toml from anywhere is picked up.
        return run_client([cast_bin, *args], cwd=tmp_path).strip()

    # Through the npm wrapper too (its exit status is always 0, so only its output counts).
    assert run_client([CAST, "chain-id", *rpc], cwd=tmp_path).strip() == str(CHAIN_ID)
    assert cast("chain-id", *rpc) == str(CHAIN_ID)
    start_block = int(cast("block-number", *rpc))
    assert start_block == int(devnet.rpc("eth_blockNumber"), 16)

    recipient_before = int(cast("balance", recipient, *rpc))
    assert recipient_before == int(devnet.rpc("eth_getBalance", recipient, "latest"), 16)

    # Value transfer.
    sent = json.loads(
        cast("send", "--private-key", sender_key, *rpc, "--timeout", "30", "--json", recipient, "--value", "1ether")
    )
    assert int(sent["status"], 16) == 1, sent
    value_hash = sent["transactionHash"]
    assert int(cast("balance", recipient, *rpc)) == recipient_before + ONE_ETHER
    assert cast("balance", recipient, "--ether", *rpc).startswith(str((recipient_before + ONE_ETHER) // ONE_ETHER))

    receipt = json.loads(cast("receipt", value_hash, "--json", *rpc))
    node_receipt = devnet.rpc("eth_getTransactionReceipt", value_hash)
    assert int(receipt["status"], 16) == 1
    assert receipt["transactionHash"] == value_hash
    assert receipt["blockNumber"] == node_receipt["blockNumber"]
    assert receipt["from"].lower() == sender.lower()
    assert receipt["to"].lower() == recipient.lower()
    assert int(receipt["gasUsed"], 16) == 21_000
    assert int(cast("block-number", *rpc)) == int(node_receipt["blockNumber"], 16) > start_block
    assert cast("receipt", value_hash, "status", *rpc) in ("true", "1", "1 (success)")  # cast 1.x prints "true"
    tx = json.loads(cast("tx", value_hash, "--json", *rpc))
    assert int(tx["value"], 16) == ONE_ETHER

    # Deploy TestToken with `cast send --create`, then an ERC-20 transfer.
    created = json.loads(
        cast(
            "send", "--private-key", sender_key, *rpc, "--timeout", "30", "--json",
            "--create", token_artifact["bytecode"], "constructor(uint256)", str(SUPPLY),
        )
    )  # fmt: skip
    assert int(created["status"], 16) == 1, created
    token = created["contractAddress"]
    assert token and int(token, 16) != 0
    assert cast("code", token, *rpc) == token_artifact["deployedBytecode"]
    assert cast("call", token, "totalSupply()(uint256)", *rpc).split()[0] == str(SUPPLY)

    transferred = json.loads(
        cast(
            "send", "--private-key", sender_key, *rpc, "--timeout", "30", "--json",
            token, "transfer(address,uint256)", recipient, "123",
        )
    )  # fmt: skip
    assert int(transferred["status"], 16) == 1, transferred
    assert cast("call", token, "balanceOf(address)(uint256)", recipient, *rpc) == "123"
    assert cast("call", token, "balanceOf(address)(uint256)", sender, *rpc).split()[0] == str(SUPPLY - 123)

    token_receipt = json.loads(cast("receipt", transferred["transactionHash"], "--json", *rpc))
    assert int(token_receipt["status"], 16) == 1
    assert token_receipt["to"].lower() == token.lower()
    (log,) = token_receipt["logs"]
    assert log["address"].lower() == token.lower()
    assert log["topics"] == [
        transfer_topic(token_artifact["abi"]),
        "0x" + "00" * 12 + sender[2:].lower(),
        "0x" + "00" * 12 + recipient[2:].lower(),
    ]
    assert int(log["data"], 16) == 123

    # eth_getLogs through cast.
    logs = json.loads(
        cast(
            "logs", "--json", "--from-block", str(start_block), "--address", token,
            "Transfer(address indexed from,address indexed to,uint256 value)", *rpc,
        )
    )  # fmt: skip
    assert [lg["transactionHash"] for lg in logs] == [created["transactionHash"], transferred["transactionHash"]]
    assert cast("chain-id", *rpc) == str(CHAIN_ID)
