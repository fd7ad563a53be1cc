"""Operators read the node's health and Prometheus metrics over HTTP."""
from __future__ import annotations

from eth_account import Account


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def test_health_answers_ok(devnet):
    response = devnet.client.get(devnet.url + "/health")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_metrics_count_sealed_blocks_transactions_and_rpc_calls(devnet, dev_accounts):
    before = devnet.client.get(devnet.url + "/metrics").text
    address, key = dev_accounts[1]
    raw = Account.sign_transaction({"chainId": 1612, "nonce": 0, "to": dev_accounts[2][0], "value": 5, "gas": 21000,
                                    "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**6}, key).raw_transaction
    devnet.wait_receipt(devnet.rpc("eth_sendRawTransaction", "0x" + raw.hex()))
    devnet.request("no_such_method")
    after = devnet.client.get(devnet.url + "/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text
    assert metric(text, "openledger_blocks_sealed_total") == metric(before, "openledger_blocks_sealed_total") + 1
    assert metric(text, "openledger_transactions_sealed_total") == 1
    assert metric(text, "openledger_gas_used_total") == 21000
    assert metric(text, "openledger_head_block") == int(devnet.rpc("eth_blockNumber"), 16)
    assert metric(text, "openledger_txpool_transactions") == 0
    assert 'openledger_rpc_requests_total{method="eth_sendRawTransaction",outcome="ok"} 1.0' in text
    assert "no_such_method" not in text  # unknown names never become label values
