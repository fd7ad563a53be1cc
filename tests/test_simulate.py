"""eth_simulateV1 on the devnet (Prague from genesis), beyond the execution-apis suite's cases:
nothing is written, blocks chain, errors carry geth's codes."""
from __future__ import annotations

from conftest import RunningNode

SENDER = "0xc000000000000000000000000000000000000000"
OTHER = "0xc100000000000000000000000000000000000000"
THIRD = "0xc200000000000000000000000000000000000000"
# returns BLOCKHASH(number - 1): NUMBER PUSH1 1 SWAP1 SUB BLOCKHASH PUSH0 MSTORE PUSH1 32 PUSH0 RETURN
PARENT_HASH_CODE = "0x4360019003405f5260205ff3"


def simulate(devnet: RunningNode, *params):
    return devnet.request("eth_simulateV1", *params)


def test_simulation_writes_nothing(devnet: RunningNode) -> None:
    head = devnet.rpc("eth_getBlockByNumber", "latest", False)
    keys_before = sum(1 for _ in devnet.node.blockchain.store._db.iterator(include_value=False))
    result = devnet.rpc("eth_simulateV1", {
        "blockStateCalls": [{
            "stateOverrides": {SENDER: {"balance": hex(10**18)}},
            "calls": [{"from": SENDER, "to": OTHER, "value": hex(10**17)}],
        }] * 3,
    }, "latest")
    assert [int(b["number"], 16) for b in result] == [int(head["number"], 16) + i for i in (1, 2, 3)]
    assert devnet.rpc("eth_getBlockByNumber", "latest", False) == head
    assert devnet.rpc("eth_getBalance", OTHER, "latest") == "0x0"
    assert sum(1 for _ in devnet.node.blockchain.store._db.iterator(include_value=False)) == keys_before


def test_blocks_chain_state_and_hashes(devnet: RunningNode) -> None:
    result = devnet.rpc("eth_simulateV1", {
        "blockStateCalls": [
            {"stateOverrides": {SENDER: {"balance": hex(10**18)}},
             "calls": [{"from": SENDER, "to": OTHER, "value": hex(5 * 10**17), "maxFeePerGas": hex(10**10)}]},
            {"stateOverrides": {THIRD: {"code": PARENT_HASH_CODE}},
             "calls": [{"from": OTHER, "to": SENDER, "value": hex(10**17), "maxFeePerGas": hex(10**10)},
                       {"from": SENDER, "to": THIRD, "maxFeePerGas": hex(10**10)}]},
        ],
        "validation": True,
    }, "latest")
    first, second = result
    assert second["parentHash"] == first["hash"]
    assert int(second["timestamp"], 16) == int(first["timestamp"], 16) + 12
    assert [c["status"] for c in first["calls"] + second["calls"]] == ["0x1"] * 3  # OTHER spends what it got
    assert second["calls"][1]["returnData"] == first["hash"]  # BLOCKHASH sees the simulated parent
    assert int(first["baseFeePerGas"], 16) > 0  # validation: the EIP-1559 base fee


def test_transfers_are_traced_as_logs(devnet: RunningNode) -> None:
    result = devnet.rpc("eth_simulateV1", {
        "blockStateCalls": [{"stateOverrides": {SENDER: {"balance": "0x3e8"}},
                             "calls": [{"from": SENDER, "to": OTHER, "value": "0x3e8"}]}],
        "traceTransfers": True,
    }, "latest")
    (log,) = result[0]["calls"][0]["logs"]
    assert log["address"] == "0xeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"
    assert log["topics"][1][-40:] == SENDER[2:] and log["topics"][2][-40:] == OTHER[2:]
    assert int(log["data"], 16) == 1000 and log["blockHash"] == result[0]["hash"]


def test_errors_carry_geths_codes(devnet: RunningNode) -> None:
    def code(*params) -> int:
        body = simulate(devnet, *params)
        assert "error" in body, body
        return body["error"]["code"]

    assert code({"blockStateCalls": []}, "latest") == -32602  # empty input
    assert code({"blockStateCalls": [{}] * 257}, "latest") == -38026  # too many blocks
    head = int(devnet.rpc("eth_blockNumber"), 16)
    assert code({"blockStateCalls": [{"blockOverrides": {"number": hex(head + 2)}},
                                     {"blockOverrides": {"number": hex(head + 2)}}]}, "latest") == -38020
    assert code({"blockStateCalls": [{"calls": [{"from": SENDER, "to": OTHER, "nonce": "0x5"}]}],
                 "validation": True}, "latest") == -38011  # nonce too high
    assert code({"blockStateCalls": [{"calls": [{"from": SENDER, "to": OTHER, "value": "0x1"}]}]},
                "latest") == -38014  # insufficient funds
    assert code({"blockStateCalls": [{"calls": [{"from": SENDER, "to": OTHER, "gas": "0x1"}]}]},
                "latest") == -38013  # intrinsic gas
    assert code({"blockStateCalls": [{"stateOverrides": {OTHER: {"movePrecompileToAddress": THIRD}}}]},
                "latest") == -32000  # not a precompile
    assert code({"blockStateCalls": [{}]}, "0xffffff") == -32000  # header not found


def test_reverts_and_vm_errors_stay_in_the_call_result(devnet: RunningNode) -> None:
    result = devnet.rpc("eth_simulateV1", {
        "blockStateCalls": [{
            "stateOverrides": {OTHER: {"code": "0x60006000fd"}, THIRD: {"code": "0xfe"}},  # REVERT(0, 0); INVALID
            # INVALID burns all its gas: without a limit, the rest of the block
            "calls": [{"from": SENDER, "to": OTHER}, {"from": SENDER, "to": THIRD, "gas": "0x10000"},
                      {"from": SENDER, "to": SENDER}],
        }],
    }, "latest")
    reverted, invalid, ok = result[0]["calls"]
    assert reverted["error"] == {"message": "execution reverted", "code": -32000, "data": "0x"}
    assert invalid["error"]["code"] == -32015 and invalid["status"] == "0x0" and invalid["gasUsed"] == "0x10000"
    assert ok["status"] == "0x1" and "error" not in ok
