"""Unlocked dev accounts (--dev): eth_accounts, eth_sendTransaction, signing, evm_mine, txpool_*.

All over real HTTP against a running node (see conftest's ``devnet``).
"""
from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data
from eth_utils import to_checksum_address

from openledger_node.devkeys import DEV_ACCOUNTS
from openledger_node.rpc.dev import NO_KEYS_MESSAGE, DevSigner

from conftest import start_node, stop_node

ADDRS = [address.lower() for address, _ in DEV_ACCOUNTS]
A0, A1, A2, A3 = ADDRS[:4]
STRANGER = "0x" + "12" * 20

# Init code that deploys RUNTIME (PUSH1 42, PUSH1 0, MSTORE, PUSH1 32, PUSH1 0, RETURN).
RUNTIME = "602a60005260206000f3"
INIT_CODE = "0x69" + RUNTIME + "600052600a6016f3"

MAIL = {
    "types": {
        "EIP712Domain": [
            {"name": "name", "type": "string"},
            {"name": "version", "type": "string"},
            {"name": "chainId", "type": "uint256"},
            {"name": "verifyingContract", "type": "address"},
        ],
        "Person": [{"name": "name", "type": "string"}, {"name": "wallet", "type": "address"}],
        "Mail": [
            {"name": "from", "type": "Person"},
            {"name": "to", "type": "Person"},
            {"name": "contents", "type": "string"},
        ],
    },
    "primaryType": "Mail",
    "domain": {
        "name": "Ether Mail",
        "version": "1",
        "chainId": 1,
        "verifyingContract": "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC",
    },
    "message": {
        "from": {"name": "Cow", "wallet": "0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"},
        "to": {"name": "Bob", "wallet": "0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB"},
        "contents": "Hello, Bob!",
    },
}


def _error(body: dict) -> dict:
    assert "error" in body, f"expected an error, got {body}"
    return body["error"]


def _balance(devnet, address: str) -> int:
    return int(devnet.rpc("eth_getBalance", address, "latest"), 16)


@contextmanager
def _sealing_paused(devnet):
    """Keep transactions in the pool: the block_time-0 sequencer seals only when it finds
    ``has_ready()``; evm_mine seals regardless."""
    sequencer = devnet.node.sequencer
    sequencer.has_ready = lambda: False
    try:
        yield
    finally:
        del sequencer.has_ready


# ------------------------------------------------------------------------ accounts


def test_eth_accounts_lists_the_ten_dev_accounts(devnet) -> None:
    assert devnet.rpc("eth_accounts") == ADDRS
    assert len(ADDRS) == 10


def test_signer_hides_keys() -> None:
    signer = DevSigner([key for _, key in DEV_ACCOUNTS])
    assert signer.addresses() == ADDRS
    text = repr(signer) + str(signer)
    for _, key in DEV_ACCOUNTS:
        assert key[2:] not in text.lower()


# -------------------------------------------------------------------- transactions


def test_send_transaction_moves_value(devnet) -> None:
    before = _balance(devnet, A1)
    tip = int(devnet.rpc("eth_maxPriorityFeePerGas"), 16)
    next_base = int(devnet.rpc("eth_feeHistory", "0x1", "latest")["baseFeePerGas"][-1], 16)
    tx_hash = devnet.rpc("eth_sendTransaction", {"from": A0, "to": A1, "value": hex(10**18)})
    receipt = devnet.wait_receipt(tx_hash)
    assert receipt["status"] == "0x1"
    assert receipt["from"] == A0 and receipt["to"] == A1
    assert _balance(devnet, A1) == before + 10**18
    tx = devnet.rpc("eth_getTransactionByHash", tx_hash)
    assert tx["type"] == "0x2" and tx["gas"] == hex(21000)
    assert int(tx["maxPriorityFeePerGas"], 16) == tip
    assert int(tx["maxFeePerGas"], 16) == 2 * next_base + tip  # as geth: 2 * base fee + tip


def test_nonces_follow_the_pool(devnet) -> None:
    """A batch of sends from one account runs before any block: nonces must come from the pool."""
    start = int(devnet.rpc("eth_getTransactionCount", A2, "latest"), 16)
    batch = [
        {"jsonrpc": "2.0", "id": i, "method": "eth_sendTransaction", "params": [{"from": A2, "to": A1, "value": "0x1"}]}
        for i in range(3)
    ]
    replies = devnet.client.post(devnet.url, json=batch).json()
    hashes = [reply["result"] for reply in sorted(replies, key=lambda r: r["id"])]
    for tx_hash in hashes:
        assert devnet.wait_receipt(tx_hash)["status"] == "0x1"
    nonces = [int(devnet.rpc("eth_getTransactionByHash", h)["nonce"], 16) for h in hashes]
    assert nonces == [start, start + 1, start + 2]


def test_legacy_and_access_list_transactions(devnet) -> None:
    legacy = devnet.rpc("eth_sendTransaction", {"from": A0, "to": A1, "value": "0x1", "gasPrice": hex(10**10)})
    assert devnet.wait_receipt(legacy)["status"] == "0x1"
    tx = devnet.rpc("eth_getTransactionByHash", legacy)
    assert tx["type"] == "0x0" and tx["gasPrice"] == hex(10**10)

    access = devnet.rpc("eth_sendTransaction", {
        "from": A0, "to": A1, "value": "0x1", "gasPrice": hex(10**10),
        "accessList": [{"address": A1, "storageKeys": ["0x" + "00" * 32]}],
    })
    assert devnet.wait_receipt(access)["status"] == "0x1"
    tx = devnet.rpc("eth_getTransactionByHash", access)
    assert tx["type"] == "0x1" and tx["accessList"][0]["address"] == A1
    assert int(tx["gas"], 16) == 21000 + 2400 + 1900

    explicit = devnet.rpc("eth_sendTransaction", {
        "from": A0, "to": A1, "value": "0x1", "gas": hex(30000),
        "maxFeePerGas": hex(10**11), "maxPriorityFeePerGas": hex(5 * 10**9), "chainId": devnet.rpc("eth_chainId"),
    })
    assert devnet.wait_receipt(explicit)["status"] == "0x1"
    tx = devnet.rpc("eth_getTransactionByHash", explicit)
    assert (tx["type"], tx["gas"], tx["maxFeePerGas"], tx["maxPriorityFeePerGas"]) == (
        "0x2", hex(30000), hex(10**11), hex(5 * 10**9))


def test_deploy_contract(devnet) -> None:
    tx_hash = devnet.rpc("eth_sendTransaction", {"from": A0, "data": INIT_CODE})
    receipt = devnet.wait_receipt(tx_hash)
    assert receipt["status"] == "0x1" and receipt["to"] is None
    address = receipt["contractAddress"]
    assert address is not None
    assert devnet.rpc("eth_getCode", address, "latest") == "0x" + RUNTIME
    assert devnet.rpc("eth_call", {"to": address}, "latest") == "0x" + "00" * 31 + "2a"


def test_send_transaction_errors(devnet) -> None:
    error = _error(devnet.request("eth_sendTransaction", {"from": STRANGER, "to": A1, "value": "0x1"}))
    assert (error["code"], error["message"]) == (-32000, "unknown account")
    error = _error(devnet.request("eth_sendTransaction", {"to": A1, "value": "0x1"}))
    assert error["code"] == -32602 and "from" in error["message"]
    error = _error(devnet.request("eth_sendTransaction", {"from": A0, "to": A1, "chainId": "0x1"}))
    assert error["code"] == -32602 and "chainId" in error["message"]
    error = _error(devnet.request("eth_sendTransaction", {"from": A0}))
    assert "contract creation without any data" in error["message"]
    # The pool's own refusal, with its message.
    error = _error(devnet.request("eth_sendTransaction", {"from": A0, "to": A1, "value": hex(10**30)}))
    assert error["code"] == -32000 and error["message"].startswith("insufficient funds for gas * price + value")
    devnet.wait_receipt(devnet.rpc("eth_sendTransaction", {"from": A0, "to": A1}))
    error = _error(devnet.request("eth_sendTransaction", {"from": A0, "to": A1, "nonce": "0x0"}))
    assert error["code"] == -32000 and error["message"].startswith("nonce too low")


def test_sign_transaction_then_send_raw(devnet) -> None:
    before = _balance(devnet, A2)
    result = devnet.rpc("eth_signTransaction", {"from": A1, "to": A2, "value": hex(12345)})
    raw, tx = result["raw"], result["tx"]
    assert Account.recover_transaction(raw).lower() == A1
    assert tx["type"] == "0x2" and tx["to"] == A2 and tx["value"] == hex(12345)
    assert tx["nonce"] == devnet.rpc("eth_getTransactionCount", A1, "pending")
    assert devnet.rpc("txpool_status") == {"pending": "0x0", "queued": "0x0"}  # signed, not sent
    tx_hash = devnet.rpc("eth_sendRawTransaction", raw)
    assert tx_hash == tx["hash"]
    receipt = devnet.wait_receipt(tx_hash)
    assert receipt["status"] == "0x1" and receipt["from"] == A1
    assert _balance(devnet, A2) == before + 12345


# ------------------------------------------------------------------------ messages


def test_eth_sign_and_personal_sign_recover(devnet) -> None:
    data = "0x" + b"hello openledger".hex()
    signature = devnet.rpc("eth_sign", A3, data)
    assert len(bytes.fromhex(signature[2:])) == 65
    assert Account.recover_message(encode_defunct(hexstr=data), signature=signature).lower() == A3
    assert devnet.rpc("personal_sign", data, A3) == signature
    text = devnet.rpc("personal_sign", "plain text", A3)
    assert Account.recover_message(encode_defunct(text="plain text"), signature=text).lower() == A3
    error = _error(devnet.request("eth_sign", STRANGER, data))
    assert (error["code"], error["message"]) == (-32000, "unknown account")


def test_sign_typed_data_v4_recovers(devnet) -> None:
    signature = devnet.rpc("eth_signTypedData_v4", A0, MAIL)
    assert Account.recover_message(encode_typed_data(full_message=MAIL), signature=signature).lower() == A0
    assert devnet.rpc("eth_signTypedData_v4", A0, json.dumps(MAIL)) == signature
    # The key is anvil's account 0: the signature is the same as signing locally.
    assert signature == "0x" + Account.sign_message(encode_typed_data(full_message=MAIL), DEV_ACCOUNTS[0][1]).signature.hex().removeprefix("0x")
    error = _error(devnet.request("eth_signTypedData_v4", A0, {"types": {}}))
    assert error["code"] == -32602


# ------------------------------------------------------------- evm_mine and txpool


def test_evm_mine_and_txpool(devnet) -> None:
    number = int(devnet.rpc("eth_blockNumber"), 16)
    assert devnet.rpc("evm_mine") == "0x0"
    assert int(devnet.rpc("eth_blockNumber"), 16) == number + 1
    with _sealing_paused(devnet):
        pending_hash = devnet.rpc("eth_sendTransaction", {"from": A0, "to": A1, "value": "0x5"})
        nonce = int(devnet.rpc("eth_getTransactionCount", A0, "latest"), 16)
        queued_hash = devnet.rpc("eth_sendTransaction", {"from": A0, "to": A1, "value": "0x6", "nonce": hex(nonce + 5)})
        assert devnet.rpc("txpool_status") == {"pending": "0x1", "queued": "0x1"}
        content = devnet.rpc("txpool_content")
        key = to_checksum_address(A0)
        assert content["pending"][key][str(nonce)]["hash"] == pending_hash
        assert content["pending"][key][str(nonce)]["from"] == A0
        assert content["queued"][key][str(nonce + 5)]["hash"] == queued_hash
        assert devnet.rpc("txpool_contentFrom", A0)["pending"][str(nonce)]["hash"] == pending_hash
        assert devnet.rpc("txpool_inspect")["pending"][key][str(nonce)].startswith(to_checksum_address(A1) + ": 5 wei")
        assert devnet.rpc("eth_getTransactionReceipt", pending_hash) is None
        assert devnet.rpc("evm_mine") == "0x0"
        assert devnet.rpc("eth_getTransactionReceipt", pending_hash)["status"] == "0x1"
        assert devnet.rpc("txpool_status") == {"pending": "0x0", "queued": "0x1"}
    head = devnet.rpc("eth_getBlockByNumber", "latest", False)
    assert devnet.rpc("evm_mine", {"timestamp": hex(int(head["timestamp"], 16) + 100), "blocks": 2}) == "0x0"
    after = devnet.rpc("eth_getBlockByNumber", "latest", False)
    assert int(after["number"], 16) == int(head["number"], 16) + 2
    assert int(after["timestamp"], 16) == int(head["timestamp"], 16) + 101


# ------------------------------------------------------------------------ web3.py


def test_web3py_send_transaction(devnet) -> None:
    from web3 import HTTPProvider, Web3

    w3 = Web3(HTTPProvider(devnet.url))
    assert [a.lower() for a in w3.eth.accounts] == ADDRS
    sender, recipient = w3.eth.accounts[4], w3.eth.accounts[5]
    before = w3.eth.get_balance(recipient)
    tx_hash = w3.eth.send_transaction({"from": sender, "to": recipient, "value": w3.to_wei(1, "ether")})
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=10)
    assert receipt["status"] == 1 and receipt["from"] == sender
    assert w3.eth.get_balance(recipient) == before + w3.to_wei(1, "ether")
    signature = w3.eth.sign(sender, text="hi")
    assert Account.recover_message(encode_defunct(text="hi"), signature=signature) == sender


# ------------------------------------------------------------------- key hygiene


def test_keys_never_in_errors_or_logs(devnet, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    replies = [
        devnet.request("eth_sendTransaction", {"from": A0, "to": "0xzz"}),
        devnet.request("eth_sendTransaction", {"from": A0, "to": A1, "value": hex(10**30)}),
        devnet.request("eth_signTypedData_v4", A0, {"types": {}, "primaryType": "X"}),
        devnet.request("eth_signTypedData_v4", A0, "{not json"),
        devnet.request("eth_sign", A0, "0xzz"),
        devnet.request("eth_signTransaction", {"from": A0, "to": A1, "type": "0x7"}),
    ]
    text = (json.dumps(replies) + caplog.text).lower()
    assert all("error" in reply for reply in replies)
    for _, key in DEV_ACCOUNTS:
        assert key[2:].lower() not in text


# --------------------------------------------------------------------- no --dev


def test_without_dev_methods_refuse_clearly(tmp_path: Path) -> None:
    node, thread = start_node(tmp_path / "data", dev=False)
    try:
        assert node.signer is None
        url = node.rpc.url
        with httpx.Client(timeout=30) as client:
            def call(method, *params):
                return client.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).json()

            assert call("eth_accounts")["result"] == []
            for method, params in [
                ("eth_sendTransaction", [{"from": A0, "to": A1, "value": "0x1"}]),
                ("eth_signTransaction", [{"from": A0, "to": A1, "value": "0x1"}]),
                ("eth_sign", [A0, "0x1234"]),
                ("personal_sign", ["0x1234", A0]),
                ("eth_signTypedData_v4", [A0, MAIL]),
            ]:
                error = _error(call(method, *params))
                assert (error["code"], error["message"]) == (-32000, NO_KEYS_MESSAGE), method
            error = _error(call("evm_mine"))
            assert error["code"] == -32000 and "--dev" in error["message"]
            assert call("txpool_status")["result"] == {"pending": "0x0", "queued": "0x0"}
    finally:
        stop_node(node, thread)
