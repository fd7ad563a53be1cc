"""eth_getLogs and the polling filters, over HTTP against a devnet node, with real ERC-20 transfers."""
from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from conftest import RunningNode, start_node, stop_node
from eth_abi import encode
from eth_account import Account
from eth_hash.auto import keccak
from eth_utils import to_checksum_address

from openledger_node.contracts import contract_artifact
from openledger_node.rpc.filters import filter_api

CHAIN_ID = 1612
SUPPLY = 10**24
TRANSFER_TOPIC = "0x" + keccak(b"Transfer(address,address,uint256)").hex()
APPROVAL_TOPIC = "0x" + keccak(b"Approval(address,address,uint256)").hex()
SILENT = "0x" + "42" * 20  # an address that never logs
ALICE = "0x" + "a1" * 20
BOB = "0x" + "b0" * 20


def address_topic(address: str) -> str:
    return "0x" + "00" * 12 + address[2:].lower()


def send(devnet, key: str, *, to: str | None = None, data: bytes = b"", gas: int = 100_000, wait: bool = True):
    """Sign and send an EIP-1559 transaction; its receipt (or only its hash with ``wait=False``)."""
    account = Account.from_key(key)
    gas_price = int(devnet.rpc("eth_gasPrice"), 16)
    tx: dict[str, Any] = {
        "type": 2,
        "chainId": CHAIN_ID,
        "nonce": int(devnet.rpc("eth_getTransactionCount", account.address, "pending"), 16),
        "value": 0,
        "data": data,
        "gas": gas,
        "maxFeePerGas": 2 * gas_price,
        "maxPriorityFeePerGas": int(devnet.rpc("eth_maxPriorityFeePerGas"), 16),
    }
    if to is not None:
        tx["to"] = to_checksum_address(to)
    raw = Account.sign_transaction(tx, key).raw_transaction
    tx_hash = devnet.rpc("eth_sendRawTransaction", "0x" + raw.hex())
    if not wait:
        return tx_hash
    receipt = devnet.wait_receipt(tx_hash)
    assert receipt["status"] == "0x1", receipt
    return receipt


@dataclass
class Token:
    devnet: Any
    address: str
    owner_key: str
    deploy_receipt: dict

    def transfer(self, to: str, amount: int, *, wait: bool = True):
        data = keccak(b"transfer(address,uint256)")[:4] + encode(["address", "uint256"], [to, amount])
        return send(self.devnet, self.owner_key, to=self.address, data=data, wait=wait)


def deploy_token(devnet, key: str) -> Token:
    artifact = contract_artifact("TestToken")
    code = bytes.fromhex(artifact["bytecode"][2:]) + encode(["uint256"], [SUPPLY])
    receipt = send(devnet, key, data=code, gas=3_000_000)
    return Token(devnet, receipt["contractAddress"], key, receipt)


@pytest.fixture
def token(devnet, dev_accounts) -> Token:
    """TestToken deployed by dev account 0, which holds the whole supply."""
    return deploy_token(devnet, dev_accounts[0][1])


@contextmanager
def running_node(datadir: Path) -> Iterator[RunningNode]:
    node, thread = start_node(datadir, dev=True)
    try:
        with httpx.Client(timeout=30) as client:
            yield RunningNode(node, node.rpc.url, datadir, client)
    finally:
        stop_node(node, thread)


def rpc_error(devnet, method: str, *params: Any) -> dict:
    body = devnet.request(method, *params)
    assert "error" in body, f"{method} unexpectedly succeeded: {body.get('result')}"
    return body["error"]


def head(devnet) -> int:
    return int(devnet.rpc("eth_blockNumber"), 16)


# -- eth_getLogs ---------------------------------------------------------------------------


def test_logs_by_address_are_the_receipts_logs_in_order(devnet, token) -> None:
    first = token.transfer(ALICE, 5)
    second = token.transfer(BOB, 7)
    logs = devnet.rpc("eth_getLogs", {"fromBlock": "earliest", "address": token.address})
    assert logs == token.deploy_receipt["logs"] + first["logs"] + second["logs"]
    assert [log["topics"][0] for log in logs] == [TRANSFER_TOPIC] * 3
    assert logs[0]["topics"][1] == address_topic("0x" + "00" * 20)  # the mint
    assert {"blockTimestamp", "logIndex", "removed", "transactionHash"} <= set(logs[1])


def test_address_list_and_case_do_not_matter(devnet, token) -> None:
    token.transfer(ALICE, 1)
    query = {"fromBlock": "0x0", "address": [SILENT, token.address.upper().replace("0X", "0x")]}
    assert len(devnet.rpc("eth_getLogs", query)) == 2
    assert devnet.rpc("eth_getLogs", {"fromBlock": "0x0", "address": SILENT}) == []


def test_topics_are_positional_with_null_wildcards(devnet, token) -> None:
    to_alice = token.transfer(ALICE, 5)
    token.transfer(BOB, 7)
    query = {"fromBlock": "0x0", "topics": [TRANSFER_TOPIC, None, address_topic(ALICE)]}
    assert devnet.rpc("eth_getLogs", query) == to_alice["logs"]
    assert devnet.rpc("eth_getLogs", {"fromBlock": "0x0", "topics": [APPROVAL_TOPIC]}) == []


def test_nested_topic_list_means_or(devnet, token) -> None:
    to_alice = token.transfer(ALICE, 5)
    to_bob = token.transfer(BOB, 7)
    token.transfer(SILENT, 9)
    either = {"fromBlock": "0x0", "topics": [None, None, [address_topic(ALICE), address_topic(BOB)]]}
    assert devnet.rpc("eth_getLogs", either) == to_alice["logs"] + to_bob["logs"]
    # a null among the alternatives makes the position a wildcard (geth)
    assert len(devnet.rpc("eth_getLogs", {"fromBlock": "0x0", "topics": [[APPROVAL_TOPIC, None]]})) == 4
    assert len(devnet.rpc("eth_getLogs", {"fromBlock": "0x0", "topics": [[APPROVAL_TOPIC, TRANSFER_TOPIC]]})) == 4


def test_more_topic_positions_than_the_log_has_never_match(devnet, token) -> None:
    assert len(devnet.rpc("eth_getLogs", {"fromBlock": "0x0", "topics": [None, None, None]})) == 1
    assert devnet.rpc("eth_getLogs", {"fromBlock": "0x0", "topics": [None, None, None, None]}) == []


def test_logs_sealed_before_a_restart_are_found(tmp_path, dev_accounts) -> None:
    """After a restart no bloom is cached: the query reads the headers from the store."""
    with running_node(tmp_path / "data") as devnet:
        token = deploy_token(devnet, dev_accounts[0][1])
        to_alice = token.transfer(ALICE, 1)
        token.transfer(BOB, 2)
    with running_node(tmp_path / "data") as devnet:
        query = {"fromBlock": "0x0", "topics": [TRANSFER_TOPIC, None, address_topic(ALICE)]}
        assert devnet.rpc("eth_getLogs", query) == to_alice["logs"]
        assert len(devnet.rpc("eth_getLogs", {"fromBlock": "0x0", "address": token.address})) == 3


def test_block_hash_selects_one_block(devnet, token) -> None:
    token.transfer(ALICE, 1)
    receipt = token.transfer(BOB, 2)
    token.transfer(ALICE, 3)
    assert devnet.rpc("eth_getLogs", {"blockHash": receipt["blockHash"]}) == receipt["logs"]
    assert devnet.rpc("eth_getLogs", {"blockHash": receipt["blockHash"], "address": SILENT}) == []


def test_unknown_block_hash_is_an_error(devnet, token) -> None:
    error = rpc_error(devnet, "eth_getLogs", {"blockHash": "0x" + "ab" * 32})
    assert error == {"code": -32000, "message": "unknown block"}


def test_block_hash_excludes_a_range(devnet, token) -> None:
    error = rpc_error(devnet, "eth_getLogs", {"blockHash": token.deploy_receipt["blockHash"], "fromBlock": "0x0"})
    assert error == {
        "code": -32602, "message": "cannot specify both BlockHash and FromBlock/ToBlock, choose one or the other"
    }


def test_block_range_bounds_are_inclusive(devnet, token) -> None:
    first = token.transfer(ALICE, 1)
    second = token.transfer(BOB, 2)
    third = token.transfer(ALICE, 3)
    query = {"fromBlock": first["blockNumber"], "toBlock": second["blockNumber"], "address": token.address}
    assert devnet.rpc("eth_getLogs", query) == first["logs"] + second["logs"]
    # no bounds: the latest block only (geth's default)
    assert devnet.rpc("eth_getLogs", {"address": token.address}) == third["logs"]
    assert devnet.rpc("eth_getLogs", {"fromBlock": "earliest", "toBlock": "earliest"}) == []
    assert len(devnet.rpc("eth_getLogs", {"fromBlock": first["blockNumber"], "toBlock": "pending"})) == 3


def test_reversed_range_is_invalid_params(devnet, token) -> None:
    error = rpc_error(devnet, "eth_getLogs", {"fromBlock": "0x2", "toBlock": "0x1"})
    assert error == {"code": -32602, "message": "invalid block range params"}
    error = rpc_error(devnet, "eth_getLogs", {"fromBlock": "latest", "toBlock": "0x0"})
    assert error == {"code": -32602, "message": "invalid block range params"}


def test_range_starting_after_head_is_empty_and_end_is_capped(devnet, token) -> None:
    latest = head(devnet)
    assert devnet.rpc("eth_getLogs", {"fromBlock": hex(latest + 1)}) == []
    assert len(devnet.rpc("eth_getLogs", {"fromBlock": "0x0", "toBlock": hex(latest + 1000)})) == 1


def test_block_range_limit(devnet, token) -> None:
    token.transfer(ALICE, 1)
    filter_api(devnet.node).max_block_range = 2
    error = rpc_error(devnet, "eth_getLogs", {"fromBlock": "0x0", "toBlock": "latest"})
    assert error["code"] == -32005 and error["message"].startswith("exceed maximum block range: 2")
    assert len(devnet.rpc("eth_getLogs", {"fromBlock": hex(head(devnet) - 1)})) == 2  # deploy and transfer


def test_result_limit_suggests_a_smaller_range(devnet, token) -> None:
    first = token.transfer(ALICE, 1)
    token.transfer(BOB, 2)
    filter_api(devnet.node).max_results = 2
    error = rpc_error(devnet, "eth_getLogs", {"fromBlock": "0x0"})
    assert error["code"] == -32005
    hint = f"Try with this block range [0x0, {first['blockNumber']}]."
    assert error["message"] == f"query returned more than 2 results. {hint}"
    assert error["data"] == {"from": "0x0", "to": first["blockNumber"]}
    assert len(devnet.rpc("eth_getLogs", {"fromBlock": error["data"]["from"], "toBlock": error["data"]["to"]})) == 2


@pytest.mark.parametrize(
    "criteria, fragment",
    [
        ({"topics": [None] * 5}, "exceed max topics"),
        ({"topics": ["0x1234"]}, "topic 0"),
        ({"topics": "0x" + "00" * 32}, "invalid topic"),
        ({"address": "0x1234"}, "address"),
        ({"address": [SILENT, 5]}, "address at index 1"),
        ({"fromBlock": "yesterday"}, "fromBlock"),
        ("0x1", "expected an object"),
    ],
)
def test_malformed_filter_is_invalid_params(devnet, criteria, fragment) -> None:
    error = rpc_error(devnet, "eth_getLogs", criteria)
    assert error["code"] == -32602 and fragment in error["message"]


# -- log filters -------------------------------------------------------------------------


def test_log_filter_delivers_each_matching_log_once(devnet, token) -> None:
    filter_id = devnet.rpc("eth_newFilter", {"address": token.address})
    assert devnet.rpc("eth_getFilterChanges", filter_id) == []
    first = token.transfer(ALICE, 1)
    second = token.transfer(BOB, 2)
    assert devnet.rpc("eth_getFilterChanges", filter_id) == first["logs"] + second["logs"]
    assert devnet.rpc("eth_getFilterChanges", filter_id) == []
    third = token.transfer(ALICE, 3)
    assert devnet.rpc("eth_getFilterChanges", filter_id) == third["logs"]


def test_log_filter_applies_topics(devnet, token) -> None:
    filter_id = devnet.rpc("eth_newFilter", {"topics": [TRANSFER_TOPIC, None, [address_topic(BOB)]]})
    token.transfer(ALICE, 1)
    to_bob = token.transfer(BOB, 2)
    assert devnet.rpc("eth_getFilterChanges", filter_id) == to_bob["logs"]


def test_log_filter_on_a_silent_address_stays_empty(devnet, token) -> None:
    filter_id = devnet.rpc("eth_newFilter", {"address": SILENT})
    token.transfer(ALICE, 1)
    send(devnet, token.owner_key, to=SILENT, gas=21_000)
    assert devnet.rpc("eth_getFilterChanges", filter_id) == []


def test_log_filter_ending_in_the_past_gets_nothing_new(devnet, token) -> None:
    filter_id = devnet.rpc("eth_newFilter", {"fromBlock": "0x0", "toBlock": hex(head(devnet))})
    token.transfer(ALICE, 1)
    assert devnet.rpc("eth_getFilterChanges", filter_id) == []
    assert devnet.rpc("eth_getFilterLogs", filter_id) == token.deploy_receipt["logs"]


def test_log_filter_starting_in_the_future_waits_for_its_block(devnet, token) -> None:
    filter_id = devnet.rpc("eth_newFilter", {"fromBlock": hex(head(devnet) + 2)})
    token.transfer(ALICE, 1)
    later = token.transfer(BOB, 2)
    assert devnet.rpc("eth_getFilterChanges", filter_id) == later["logs"]


def test_get_filter_logs_returns_all_matches_every_time(devnet, token) -> None:
    filter_id = devnet.rpc("eth_newFilter", {"fromBlock": "earliest", "address": token.address})
    transfer = token.transfer(ALICE, 1)
    expected = token.deploy_receipt["logs"] + transfer["logs"]
    assert devnet.rpc("eth_getFilterLogs", filter_id) == expected
    assert devnet.rpc("eth_getFilterChanges", filter_id) == transfer["logs"]
    assert devnet.rpc("eth_getFilterLogs", filter_id) == expected


def test_new_filter_rejects_a_reversed_range(devnet) -> None:
    error = rpc_error(devnet, "eth_newFilter", {"fromBlock": "0x5", "toBlock": "0x4"})
    assert error == {"code": -32602, "message": "invalid block range params"}


# -- block and pending-transaction filters ---------------------------------------------------


def test_block_filter_returns_new_block_hashes_once(devnet, token) -> None:
    filter_id = devnet.rpc("eth_newBlockFilter")
    first = token.transfer(ALICE, 1)
    second = token.transfer(BOB, 2)
    assert devnet.rpc("eth_getFilterChanges", filter_id) == [first["blockHash"], second["blockHash"]]
    assert devnet.rpc("eth_getFilterChanges", filter_id) == []


def test_get_filter_logs_of_a_block_filter_is_not_found(devnet) -> None:
    filter_id = devnet.rpc("eth_newBlockFilter")
    assert rpc_error(devnet, "eth_getFilterLogs", filter_id) == {"code": -32000, "message": "filter not found"}


def test_pending_transaction_filter_returns_hashes_as_the_pool_accepts_them(devnet, token) -> None:
    filter_id = devnet.rpc("eth_newPendingTransactionFilter")
    first = token.transfer(ALICE, 1, wait=False)
    second = token.transfer(BOB, 2, wait=False)
    assert devnet.rpc("eth_getFilterChanges", filter_id) == [first, second]
    assert devnet.rpc("eth_getFilterChanges", filter_id) == []
    devnet.wait_receipt(second)


def test_pending_transaction_filter_with_full_transactions(devnet, token) -> None:
    filter_id = devnet.rpc("eth_newPendingTransactionFilter", True)
    tx_hash = token.transfer(ALICE, 1, wait=False)
    [tx] = devnet.rpc("eth_getFilterChanges", filter_id)
    assert tx["hash"] == tx_hash and tx["to"] == token.address.lower() and tx["blockHash"] is None


# -- lifecycle ---------------------------------------------------------------------------------


def test_filter_ids_are_random_128_bit_quantities(devnet) -> None:
    ids = {devnet.rpc("eth_newBlockFilter") for _ in range(20)}
    assert len(ids) == 20
    assert all(re.fullmatch(r"0x[1-9a-f][0-9a-f]{0,31}", i) for i in ids)
    some = next(iter(ids))
    assert devnet.rpc("eth_getFilterChanges", "0x00" + some[2:].upper()) == []


def test_uninstall_filter(devnet, token) -> None:
    filter_id = devnet.rpc("eth_newFilter", {"address": token.address})
    assert devnet.rpc("eth_uninstallFilter", filter_id) is True
    assert devnet.rpc("eth_uninstallFilter", filter_id) is False
    token.transfer(ALICE, 1)
    assert rpc_error(devnet, "eth_getFilterChanges", filter_id) == {"code": -32000, "message": "filter not found"}


def test_unknown_filter_id_is_not_found(devnet) -> None:
    not_found = {"code": -32000, "message": "filter not found"}
    assert rpc_error(devnet, "eth_getFilterChanges", "0xdeadbeef") == not_found
    assert rpc_error(devnet, "eth_getFilterLogs", "0xdeadbeef") == not_found
    assert devnet.rpc("eth_uninstallFilter", "0xdeadbeef") is False
    assert rpc_error(devnet, "eth_getFilterChanges", 7)["code"] == -32602


def test_filter_expires_after_five_minutes_without_a_poll(devnet, token) -> None:
    api = filter_api(devnet.node)
    now = [1_000.0]
    api.clock = lambda: now[0]
    polled = devnet.rpc("eth_newBlockFilter")
    forgotten = devnet.rpc("eth_newFilter", {"address": token.address})
    now[0] += 299
    devnet.rpc("eth_getFilterChanges", polled)  # each poll pushes the deadline back
    now[0] += 299
    assert devnet.rpc("eth_getFilterChanges", polled) == []
    assert rpc_error(devnet, "eth_getFilterChanges", forgotten) == {"code": -32000, "message": "filter not found"}
    now[0] += 301
    transfer = token.transfer(ALICE, 1)  # a block sweeps expired filters out, no poll needed
    assert rpc_error(devnet, "eth_getFilterChanges", polled)["message"] == "filter not found"
    assert transfer["logs"]


def test_buffered_changes_are_bounded_and_keep_the_newest(devnet, token) -> None:
    filter_api(devnet.node).max_buffered = 3
    filter_id = devnet.rpc("eth_newBlockFilter")
    hashes = [token.transfer(ALICE, i)["blockHash"] for i in range(5)]
    assert devnet.rpc("eth_getFilterChanges", filter_id) == hashes[-3:]
