"""``debug_traceTransaction``, ``debug_traceCall`` and ``debug_traceBlockBy*`` as geth answers them:
the default struct logger and the native ``callTracer`` (plus ``4byteTracer``/``noopTracer``).

A real node (LevelDB datadir, HTTP on loopback, mining off) gets a fixed history of
transactions signed with eth_account and sealed block by block:

1. ``deploy_probe``, ``deploy_callee``, ``deploy_raw`` (key 0): TraceProbe, TraceCallee and
   ``RAW`` (hand-assembled: SSTORE 42 at slot 0, SLOAD it, MSTORE, RETURN it)
2. ``bump_a`` (key 2, bump(5)), ``bump_b`` (key 3, bump(7)): two transactions, one block
3. ``transfer`` (key 1: 1 ether to RECIPIENT), ``nested`` (key 0: nested(callee, 7) with 3 wei),
   ``reverted`` (key 4: bumpThenRevert(1)), ``raw_call`` (key 5: call RAW)
"""
from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_utils import keccak, to_checksum_address

from openledger_node.contracts import compile_contracts
from openledger_node.devkeys import DEV_ACCOUNTS

from conftest import RunningNode, start_node, stop_node

SUITE = Path(__file__).resolve().parent.parent.parent / "shared" / "conformance" / "execution-apis"

CHAIN_ID = 1612
GWEI = 10**9
ETHER = 10**18
TRACE_SOL = Path(__file__).parent / "contracts" / "TraceProbe.sol"
RECIPIENT = "0x00000000000000000000000000000000000c0ffe"
KEYS = [key for _, key in DEV_ACCOUNTS]

# Runtime: PUSH1 42 PUSH1 0 SSTORE  PUSH1 0 SLOAD  PUSH1 0 MSTORE  PUSH1 32 PUSH1 0 RETURN
RAW_RUNTIME = "602a60005560005460005260206000f3"
# Init code: CODECOPY the 16-byte runtime (at offset 12) to memory and RETURN it
RAW_INIT = "6010600c60003960106000f3" + RAW_RUNTIME
# (pc, op, stack before, gas cost) of RAW on a fresh, cold slot 0
RAW_STEPS = [
    (0, "PUSH1", [], 3),
    (2, "PUSH1", ["0x2a"], 3),
    (4, "SSTORE", ["0x2a", "0x0"], 22100),  # cold slot (2100) + 0 -> non-zero (20000)
    (5, "PUSH1", [], 3),
    (7, "SLOAD", ["0x0"], 100),  # warm now
    (8, "PUSH1", ["0x2a"], 3),
    (10, "MSTORE", ["0x2a", "0x0"], 6),  # 3 + one word of memory
    (11, "PUSH1", [], 3),
    (13, "PUSH1", ["0x20"], 3),
    (15, "RETURN", ["0x20", "0x0"], 0),
]
SLOT0 = "00" * 32
WORD42 = "00" * 31 + "2a"


def q(value: str) -> int:
    assert isinstance(value, str) and value.startswith("0x"), value
    return int(value, 16)


def address_of(key: str) -> str:
    return Account.from_key(key).address.lower()


def calldata(signature: str, *args: Any) -> str:
    types = signature[signature.index("(") + 1 : -1]
    encoded = abi_encode([t for t in types.split(",") if t], list(args)) if args else b""
    return "0x" + keccak(text=signature)[:4].hex() + encoded.hex()


def error_string(reason: str) -> str:
    """ABI encoding of Solidity's Error(string)."""
    return "0x08c379a0" + abi_encode(["string"], [reason]).hex()


@dataclass
class History:
    chain: RunningNode
    probe: str = ""
    callee: str = ""
    raw: str = ""
    txs: dict[str, str] = field(default_factory=dict)
    blocks: dict[str, int] = field(default_factory=dict)

    def rpc(self, method: str, *params: Any) -> Any:
        return self.chain.rpc(method, *params)

    def error(self, method: str, *params: Any) -> dict[str, Any]:
        body = self.chain.request(method, *params)
        assert "error" in body, f"{method} answered {body.get('result')!r}, expected an error"
        return body["error"]

    def receipt(self, name: str) -> dict[str, Any]:
        return self.rpc("eth_getTransactionReceipt", self.txs[name])

    def trace(self, name: str, options: dict[str, Any] | None = None) -> Any:
        return self.rpc("debug_traceTransaction", self.txs[name], *([options] if options is not None else []))


def seal(chain: RunningNode) -> int:
    """Seal one block from the pool on the node's event-loop thread; returns its number."""
    node = chain.node
    loop = node.rpc._task.get_loop()
    done: concurrent.futures.Future = concurrent.futures.Future()

    def run() -> None:
        try:
            done.set_result(node.sequencer.seal())
        except BaseException as exc:
            done.set_exception(exc)

    loop.call_soon_threadsafe(run)
    return done.result(30).block.header.block_number


@pytest.fixture(scope="module")
def artifacts() -> dict[str, Any]:
    return compile_contracts([TRACE_SOL])


@pytest.fixture(scope="module")
def hist(tmp_path_factory, artifacts) -> Iterator[History]:
    datadir = tmp_path_factory.mktemp("trace") / "data"
    node, thread = start_node(datadir, mining=False)
    try:
        with httpx.Client(timeout=60) as client:
            h = History(RunningNode(node, node.rpc.url, datadir, client))
            nonces: dict[str, int] = {}

            def put(name: str, key: str, *, tip: int = GWEI, gas: int = 3_000_000, **tx: Any) -> None:
                sender = address_of(key)
                nonce = nonces.get(sender, 0)
                nonces[sender] = nonce + 1
                body = {"chainId": CHAIN_ID, "nonce": nonce, "maxFeePerGas": 100 * GWEI,
                        "maxPriorityFeePerGas": tip, "gas": gas, "value": 0, **tx}
                if body.get("to"):
                    body["to"] = to_checksum_address(body["to"])
                raw = "0x" + Account.sign_transaction(body, key).raw_transaction.hex()
                h.txs[name] = h.rpc("eth_sendRawTransaction", raw)

            put("deploy_probe", KEYS[0], data=artifacts["TraceProbe"]["bytecode"])
            put("deploy_callee", KEYS[0], data=artifacts["TraceCallee"]["bytecode"])
            put("deploy_raw", KEYS[0], data="0x" + RAW_INIT, gas=100_000)
            h.blocks["deploy"] = seal(h.chain)
            h.probe = h.receipt("deploy_probe")["contractAddress"]
            h.callee = h.receipt("deploy_callee")["contractAddress"]
            h.raw = h.receipt("deploy_raw")["contractAddress"]

            put("bump_a", KEYS[2], tip=3 * GWEI, to=h.probe, data=calldata("bump(uint256)", 5), gas=200_000)
            put("bump_b", KEYS[3], tip=2 * GWEI, to=h.probe, data=calldata("bump(uint256)", 7), gas=200_000)
            h.blocks["bumps"] = seal(h.chain)

            put("transfer", KEYS[1], tip=5 * GWEI, to=RECIPIENT, value=ETHER, gas=21_000)
            put("nested", KEYS[0], tip=4 * GWEI, to=h.probe, value=3,
                data=calldata("nested(address,uint256)", h.callee, 7))
            put("reverted", KEYS[4], tip=3 * GWEI, to=h.probe, data=calldata("bumpThenRevert(uint256)", 1),
                gas=200_000)
            put("raw_call", KEYS[5], tip=2 * GWEI, to=h.raw, gas=100_000)
            h.blocks["mixed"] = seal(h.chain)
            yield h
    finally:
        stop_node(node, thread)


def test_history_is_as_documented(hist: History) -> None:
    layout = {"deploy": ["deploy_probe", "deploy_callee", "deploy_raw"], "bumps": ["bump_a", "bump_b"],
              "mixed": ["transfer", "nested", "reverted", "raw_call"]}
    for block, names in layout.items():
        got = hist.rpc("eth_getBlockByNumber", hex(hist.blocks[block]), False)["transactions"]
        assert got == [hist.txs[n] for n in names], block
    status = {name: q(hist.receipt(name)["status"]) for name in hist.txs}
    assert status == {**{name: 1 for name in hist.txs}, "reverted": 0}
    assert hist.rpc("eth_getCode", hist.raw, "latest") == "0x" + RAW_RUNTIME


# ------------------------------------------------------------------------ struct logger


def test_value_transfer_has_no_struct_logs(hist: History) -> None:
    assert hist.trace("transfer") == {"gas": 21000, "failed": False, "returnValue": "0x", "structLogs": []}


def test_value_transfer_call_tracer(hist: History) -> None:
    assert hist.trace("transfer", {"tracer": "callTracer"}) == {
        "type": "CALL", "from": address_of(KEYS[1]), "gas": hex(21000), "gasUsed": hex(21000), "to": RECIPIENT,
        "input": "0x", "value": hex(ETHER),
    }


def test_struct_logs_of_hand_assembled_code_are_exact(hist: History) -> None:
    result = hist.trace("raw_call")
    receipt = hist.receipt("raw_call")
    assert result["failed"] is False
    assert result["returnValue"] == "0x" + WORD42
    assert result["gas"] == q(receipt["gasUsed"]) == 21000 + sum(cost for *_, cost in RAW_STEPS)
    gas = 100_000 - 21_000
    steps = []
    for pc, op, stack, cost in RAW_STEPS:
        step = {"pc": pc, "op": op, "gas": gas, "gasCost": cost, "depth": 1, "stack": stack}
        if op in ("SSTORE", "SLOAD"):
            step["storage"] = {SLOT0: WORD42}
        steps.append(step)
        gas -= cost
    assert result["structLogs"] == steps


def test_struct_logger_options(hist: History) -> None:
    logs = hist.trace("raw_call", {"enableMemory": True, "disableStack": True, "disableStorage": True})["structLogs"]
    assert [s["op"] for s in logs] == [op for _, op, _, _ in RAW_STEPS]
    assert all("stack" not in s and "storage" not in s for s in logs)
    # memory as geth shows it: 32-byte words without 0x, omitted while empty, the state before the step
    assert [s.get("memory") for s in logs] == [None] * 7 + [[WORD42]] * 3
    limited = hist.trace("raw_call", {"limit": 3})
    assert [s["op"] for s in limited["structLogs"]] == ["PUSH1", "PUSH1", "SSTORE"]
    assert limited["returnValue"] == "0x" + WORD42


def test_struct_logs_storage_refund_and_return_data(hist: History) -> None:
    """bump(7) after bump(5) in the same block: SLOAD sees 5, SSTORE writes 12; LOG2 is the event."""
    result = hist.trace("bump_b", {"enableReturnData": True})
    logs = result["structLogs"]
    assert result["gas"] == q(hist.receipt("bump_b")["gasUsed"])
    assert result["returnValue"] == "0x" + f"{12:064x}"
    sload = next(s for s in logs if s["op"] == "SLOAD")
    sstore = next(s for s in logs if s["op"] == "SSTORE")
    assert sload["storage"] == {SLOT0: f"{5:064x}"} and sload["gasCost"] == 2100 and sload["stack"][-1] == "0x0"
    assert sstore["storage"] == {SLOT0: f"{12:064x}"} and sstore["gasCost"] == 2900  # warm, 5 -> 12
    assert sstore["stack"][-2:] == ["0xc", "0x0"]
    log = next(s for s in logs if s["op"] == "LOG2")
    assert log["stack"][-3] == "0x" + keccak(text="Counted(uint256,uint256)").hex()
    assert [s["op"] for s in logs].count("LOG2") == 1 and logs[-1]["op"] == "RETURN"
    # each step's gas is the last one's minus its cost (no calls here)
    assert all(b["gas"] == a["gas"] - a["gasCost"] for a, b in zip(logs, logs[1:]))
    assert all(s["depth"] == 1 for s in logs)
    assert "returnData" not in logs[0]  # nothing returned yet: omitted, as geth


def test_reverted_transaction(hist: History) -> None:
    receipt = hist.receipt("reverted")
    result = hist.trace("reverted")
    assert result["failed"] is True and result["gas"] == q(receipt["gasUsed"])
    assert result["returnValue"] == error_string("probe: reverted")
    assert result["structLogs"][-1]["op"] == "REVERT" and "error" not in result["structLogs"][-1]
    calls = hist.trace("reverted", {"tracer": "callTracer"})
    assert calls == {
        "type": "CALL", "from": address_of(KEYS[4]), "gas": hex(200_000), "gasUsed": receipt["gasUsed"],
        "to": hist.probe, "input": calldata("bumpThenRevert(uint256)", 1), "output": error_string("probe: reverted"),
        "error": "execution reverted", "revertReason": "probe: reverted", "value": "0x0",
    }


def test_struct_logs_of_nested_calls(hist: History) -> None:
    """Calls: each CALL* step's cost includes the gas handed to the callee (geth); the
    callee's steps follow at depth 2; the caller resumes with what the callee left."""
    logs = hist.trace("nested")["structLogs"]
    frames = hist.trace("nested", {"tracer": "callTracer"})["calls"]
    call_steps = [i for i, s in enumerate(logs) if s["op"] in ("CALL", "DELEGATECALL", "STATICCALL", "CREATE",
                                                                "CREATE2")]
    assert [logs[i]["op"] for i in call_steps] == [f["type"] for f in frames]
    for i, frame in zip(call_steps, frames):
        step, first = logs[i], logs[i + 1]
        assert step["depth"] == 1 and first["depth"] == 2 and first["pc"] == 0
        assert first["gas"] == q(frame["gas"])  # no value: no stipend
        back = next(s for s in logs[i + 1 :] if s["depth"] == 1)
        left = q(frame["gas"]) - q(frame["gasUsed"])
        if step["op"].startswith("CREATE"):
            assert step["gasCost"] in (32000 + 2 * 7, 32000 + 2 * 7 + 6 * 7)  # + initcode words (+ hashing)
            assert back["gas"] == step["gas"] - step["gasCost"] - q(frame["gas"]) + left
        else:
            assert step["gasCost"] - q(frame["gas"]) in (100, 2600)  # warm or cold callee, memory already paid
            assert back["gas"] == step["gas"] - step["gasCost"] + left
    # within a frame, gas only goes down by each step's cost
    for a, b in zip(logs, logs[1:]):
        if a["depth"] == b["depth"] and a["op"] not in ("CALL", "DELEGATECALL", "STATICCALL", "CREATE", "CREATE2"):
            assert b["gas"] == a["gas"] - a["gasCost"], a
    # the DELEGATECALL'd store() writes the probe's slot 0 (bumped to 12 in block 2) to 8
    delegate = call_steps[1]
    sstores = [s for s in logs[delegate:] if s["op"] == "SSTORE" and s["depth"] == 2]
    assert sstores[0]["storage"] == {SLOT0: f"{8:064x}"}


# ------------------------------------------------------------------------ callTracer


def test_call_tracer_tree(hist: History) -> None:
    receipt = hist.receipt("nested")
    top = hist.trace("nested", {"tracer": "callTracer"})
    probe, callee = hist.probe, hist.callee
    created = "0x" + keccak(b"\xd6\x94" + bytes.fromhex(probe[2:]) + b"\x01")[12:].hex()  # probe's nonce 1
    assert top["type"] == "CALL" and top["from"] == address_of(KEYS[0]) and top["to"] == probe
    assert top["gas"] == hex(3_000_000) and top["gasUsed"] == receipt["gasUsed"] and top["value"] == "0x3"
    assert top["input"] == calldata("nested(address,uint256)", callee, 7)
    assert list(top) == ["type", "from", "gas", "gasUsed", "to", "input", "output", "calls", "value"]
    assert top["output"][:66] == "0x" + created[2:].rjust(64, "0")
    kinds = [(c["type"], c["from"], c["to"], c["input"][:10], c.get("value")) for c in top["calls"]]
    store, stored, fail = calldata("store(uint256)", 7)[:10], calldata("stored()"), calldata("fail()")
    assert kinds == [
        ("CALL", probe, callee, store, "0x0"),
        ("DELEGATECALL", probe, callee, store, "0x3"),  # the caller's value, as geth reports it
        ("STATICCALL", probe, callee, stored, None),  # no value field at all
        ("CALL", probe, callee, fail, "0x0"),
        ("CREATE", probe, created, "0x60806040", "0x3"),
        ("CREATE2", probe, top["calls"][5]["to"], "0x60806040", "0x0"),
    ]
    call, delegate, static, failing, create, create2 = top["calls"]
    assert call["output"] == "0x" + f"{14:064x}" and delegate["output"] == "0x" + f"{16:064x}"
    assert static["output"] == "0x" + f"{7:064x}"
    assert failing["error"] == "execution reverted" and failing["revertReason"] == "callee: nope"
    assert failing["output"] == error_string("callee: nope")
    code = hist.rpc("eth_getCode", created, "latest")
    assert create["output"] == code and create2["output"] == code
    assert all("calls" not in c for c in top["calls"])
    for c in top["calls"]:
        assert 0 < q(c["gasUsed"]) <= q(c["gas"])


def test_call_tracer_only_top_call_and_logs(hist: History) -> None:
    full = hist.trace("nested", {"tracer": "callTracer"})
    top = hist.trace("nested", {"tracer": "callTracer", "tracerConfig": {"onlyTopCall": True}})
    assert "calls" not in top
    assert top == {k: v for k, v in full.items() if k != "calls"}
    with_log = hist.trace("nested", {"tracer": "callTracer", "tracerConfig": {"withLog": True}})
    stored = "0x" + keccak(text="Stored(uint256)").hex()
    call, delegate, static, failing, *_ = with_log["calls"]
    assert call["logs"] == [{"address": hist.callee, "topics": [stored], "data": "0x" + f"{7:064x}",
                             "position": "0x0"}]
    # the DELEGATECALL'd code logs as the probe
    assert delegate["logs"] == [{"address": hist.probe, "topics": [stored], "data": "0x" + f"{8:064x}",
                                 "position": "0x0"}]
    assert "logs" not in static and "logs" not in failing and "logs" not in with_log
    bump = hist.trace("bump_a", {"tracer": "callTracer", "tracerConfig": {"withLog": True, "onlyTopCall": True}})
    counted = "0x" + keccak(text="Counted(uint256,uint256)").hex()
    assert bump["logs"] == [{"address": hist.probe, "topics": [counted, "0x" + f"{5:064x}"],
                             "data": "0x" + f"{5:064x}", "position": "0x0"}]


def test_call_tracer_of_contract_creation(hist: History) -> None:
    receipt = hist.receipt("deploy_raw")
    top = hist.trace("deploy_raw", {"tracer": "callTracer"})
    assert top == {
        "type": "CREATE", "from": address_of(KEYS[0]), "gas": hex(100_000), "gasUsed": receipt["gasUsed"],
        "to": hist.raw, "input": "0x" + RAW_INIT, "output": "0x" + RAW_RUNTIME, "value": "0x0",
    }
    struct = hist.trace("deploy_raw")
    assert struct["returnValue"] == "0x" + RAW_RUNTIME and struct["gas"] == q(receipt["gasUsed"])
    assert [s["op"] for s in struct["structLogs"]] == ["PUSH1", "PUSH1", "PUSH1", "CODECOPY", "PUSH1", "PUSH1",
                                                       "RETURN"]


def test_top_level_gas_used_is_the_receipts(hist: History) -> None:
    for name in hist.txs:
        gas_used = hist.receipt(name)["gasUsed"]
        assert hist.trace(name, {"tracer": "callTracer"})["gasUsed"] == gas_used, name
        assert hist.trace(name)["gas"] == q(gas_used), name


def test_four_byte_and_noop_tracers(hist: History) -> None:
    assert hist.trace("nested", {"tracer": "4byteTracer"}) == {
        calldata("nested(address,uint256)")[:10] + "-64": 1,
        calldata("store(uint256)")[:10] + "-32": 2,
        calldata("stored()") + "-0": 1,
        calldata("fail()") + "-0": 1,
    }
    assert hist.trace("nested", {"tracer": "noopTracer"}) == {}


# ------------------------------------------------------------------------ blocks


def test_trace_block_by_number_and_hash(hist: History) -> None:
    number = hist.blocks["bumps"]
    block = hist.rpc("eth_getBlockByNumber", hex(number), False)
    by_number = hist.rpc("debug_traceBlockByNumber", hex(number), {"tracer": "callTracer"})
    assert [entry["txHash"] for entry in by_number] == [hist.txs["bump_a"], hist.txs["bump_b"]]
    assert [entry["result"] for entry in by_number] == [
        hist.trace("bump_a", {"tracer": "callTracer"}), hist.trace("bump_b", {"tracer": "callTracer"})
    ]
    # the second transaction runs on the first one's state: bump(7) returns 5 + 7
    assert by_number[0]["result"]["output"] == "0x" + f"{5:064x}"
    assert by_number[1]["result"]["output"] == "0x" + f"{12:064x}"
    assert hist.rpc("debug_traceBlockByHash", block["hash"], {"tracer": "callTracer"}) == by_number
    structs = hist.rpc("debug_traceBlockByNumber", hex(number))
    assert [e["result"] for e in structs] == [hist.trace("bump_a"), hist.trace("bump_b")]
    mixed = hist.rpc("debug_traceBlockByNumber", hex(hist.blocks["mixed"]), {"tracer": "callTracer"})
    assert [e["txHash"] for e in mixed] == [hist.txs[n] for n in ("transfer", "nested", "reverted", "raw_call")]
    assert hist.rpc("debug_traceBlockByNumber", "latest", {"tracer": "callTracer"}) == mixed


def test_trace_block_errors(hist: History) -> None:
    assert hist.error("debug_traceBlockByNumber", "0x0") == {"code": -32000, "message": "genesis is not traceable"}
    assert hist.error("debug_traceBlockByNumber", "0x3e8") == {"code": -32000, "message": "block #1000 not found"}
    missing = "0x" + "ab" * 32
    assert hist.error("debug_traceBlockByHash", missing) == {"code": -32000,
                                                             "message": f"block {missing} not found"}


# ------------------------------------------------------------------------ debug_traceCall


def test_trace_call_with_code_override(hist: History) -> None:
    target = "0x" + "42" * 20
    sender = address_of(KEYS[6])
    call = {"from": sender, "to": target, "gas": hex(100_000)}
    result = hist.rpc("debug_traceCall", call, "latest", {"stateOverrides": {target: {"code": "0x" + RAW_RUNTIME}}})
    assert [(s["pc"], s["op"], s["stack"], s["gasCost"]) for s in result["structLogs"]] == RAW_STEPS
    assert result["structLogs"][0]["gas"] == 100_000 - 21_000
    assert result["returnValue"] == "0x" + WORD42 and result["failed"] is False
    assert result["gas"] == 21000 + sum(cost for *_, cost in RAW_STEPS)
    # with slot 0 already 42, SSTORE changes nothing: cold (2100) + no-op (100)
    overrides = {target: {"code": "0x" + RAW_RUNTIME, "state": {"0x" + SLOT0: "0x" + WORD42}}}
    same = hist.rpc("debug_traceCall", call, "latest", {"stateOverrides": overrides})
    assert same["structLogs"][2]["op"] == "SSTORE" and same["structLogs"][2]["gasCost"] == 2200
    assert same["structLogs"][2]["storage"] == {SLOT0: WORD42}


def test_trace_call_with_storage_override_and_call_tracer(hist: History) -> None:
    sender = address_of(KEYS[6])
    call = {"from": sender, "to": hist.probe, "data": calldata("bump(uint256)", 1)}
    overrides = {hist.probe: {"stateDiff": {"0x" + SLOT0: "0x" + f"{1000:064x}"}}}
    result = hist.rpc("debug_traceCall", call, "latest", {"tracer": "callTracer", "stateOverrides": overrides})
    assert result["output"] == "0x" + f"{1001:064x}"
    assert result["type"] == "CALL" and result["from"] == sender and result["to"] == hist.probe
    assert result["gas"] == hex(50_000_000)  # no gas given: the RPC gas cap, as geth
    plain = hist.rpc("debug_traceCall", call, "latest", {"tracer": "callTracer"})
    assert plain["output"] == "0x" + f"{q(hist.rpc('eth_call', call, 'latest')):064x}"
    # the chain is untouched: slot 0 is still what the last bump left
    assert hist.rpc("eth_getStorageAt", hist.probe, "0x0", "latest") == "0x" + f"{8:064x}"


def test_trace_call_selfdestruct_and_failed_call_frames(hist: History) -> None:
    sender = address_of(KEYS[6])
    destroy = {"from": sender, "to": hist.probe, "data": calldata("destroy(address)", RECIPIENT)}
    result = hist.rpc("debug_traceCall", destroy, "latest",
                      {"tracer": "callTracer", "stateOverrides": {hist.probe: {"balance": "0x3e8"}}})
    assert result["calls"] == [{"type": "SELFDESTRUCT", "from": hist.probe, "gas": "0x0", "gasUsed": "0x0",
                                "to": RECIPIENT, "input": "0x", "value": "0x3e8"}]
    # CALL 1 wei to 0x..dead with no balance: py-evm never starts the callee, geth reports a frame
    code = "0x" + "6000" * 4 + "6001" + "61dead" + "5a" + "f1" + "00"
    target = "0x" + "43" * 20
    call = {"from": sender, "to": target, "gas": hex(200_000)}
    options = {"stateOverrides": {target: {"code": code}}}
    calls = hist.rpc("debug_traceCall", call, "latest", {"tracer": "callTracer", **options})
    logs = hist.rpc("debug_traceCall", call, "latest", options)["structLogs"]
    step, stop = logs[-2], logs[-1]
    assert step["op"] == "CALL" and stop["op"] == "STOP"
    forwarded = step["gasCost"] - 2600 - 9000 - 25000  # cold account, value, new account
    assert stop["gas"] == step["gas"] - step["gasCost"] + forwarded + 2300  # gas and stipend come back
    assert stop["stack"] == ["0x0"]
    assert calls["calls"] == [{
        "type": "CALL", "from": target, "gas": hex(forwarded + 2300), "gasUsed": "0x0", "to": "0x" + "00" * 18 + "dead",
        "input": "0x", "error": "insufficient balance for transfer", "value": "0x1",
    }]


def _trace_code(hist: History, code: str, gas: int, options: dict[str, Any] | None = None,
                state: dict[str, str] | None = None) -> Any:
    target = "0x" + "45" * 20
    override: dict[str, Any] = {"code": code}
    if state is not None:
        override["state"] = state
    call = {"from": address_of(KEYS[7]), "to": target, "gas": hex(gas)}
    return hist.rpc("debug_traceCall", call, "latest", {**(options or {}), "stateOverrides": {target: override}})


def test_refund_counter(hist: History) -> None:
    """Clearing a slot: geth's "refund" (the transaction's refund counter) from the next step on."""
    code = "0x6000600055" + "6000" + "00"  # SSTORE 0 into slot 0 (was 1); PUSH1 0; STOP
    result = _trace_code(hist, code, 100_000, state={"0x" + SLOT0: "0x01"})
    logs = result["structLogs"]
    assert [(s["op"], s.get("refund")) for s in logs] == [
        ("PUSH1", None), ("PUSH1", None), ("SSTORE", None), ("PUSH1", 4800), ("STOP", 4800)
    ]
    assert logs[2]["gasCost"] == 2100 + 2900  # cold slot, non-zero -> zero
    used = 21000 + 3 + 3 + 5000 + 3
    assert result["gas"] == used - min(4800, used // 5)


def test_errors_on_steps_and_frames(hist: History) -> None:
    # out of gas: the step that cannot be paid carries the error and the cost it needed (geth)
    oog = _trace_code(hist, "0x600160016001", 21000 + 5)
    assert oog["structLogs"] == [
        {"pc": 0, "op": "PUSH1", "gas": 5, "gasCost": 3, "depth": 1, "stack": []},
        {"pc": 2, "op": "PUSH1", "gas": 2, "gasCost": 3, "depth": 1, "error": "out of gas", "stack": ["0x1"]},
    ]
    assert oog["failed"] is True and oog["returnValue"] == "0x" and oog["gas"] == 21005
    sstore = _trace_code(hist, "0x" + RAW_RUNTIME, 21000 + 5000)["structLogs"][-1]
    assert sstore["op"] == "SSTORE" and sstore["error"] == "out of gas" and sstore["gasCost"] > sstore["gas"]
    top = _trace_code(hist, "0x" + RAW_RUNTIME, 26000, {"tracer": "callTracer"})
    assert top["error"] == "out of gas" and top["gasUsed"] == hex(26000) and "output" not in top
    # an opcode that does not exist: logged without an error, the frame fails (geth)
    for code, name in (("fe", "INVALID"), ("ef", "opcode 0xef not defined")):
        result = _trace_code(hist, "0x" + code, 50_000)
        assert result["structLogs"] == [{"pc": 0, "op": name, "gas": 29000, "gasCost": 0, "depth": 1, "stack": []}]
        assert result["failed"] is True and result["gas"] == 50_000
        assert _trace_code(hist, "0x" + code, 50_000, {"tracer": "callTracer"})["error"] == f"invalid opcode: {name}"
    # stack underflow: found before the opcode runs, so its step carries the error
    under = _trace_code(hist, "0x6001" + "01", 50_000)
    assert under["structLogs"][-1]["error"] == "stack underflow (1 <=> 2)"
    assert _trace_code(hist, "0x6001" + "01", 50_000, {"tracer": "callTracer"})["error"] == "stack underflow (1 <=> 2)"
    # a jump to nowhere: not a step error
    jump = _trace_code(hist, "0x6005" + "56", 50_000)
    assert "error" not in jump["structLogs"][-1] and jump["failed"] is True
    assert _trace_code(hist, "0x600556", 50_000, {"tracer": "callTracer"})["error"] == "invalid jump destination"


def test_precompile_frame(hist: History) -> None:
    """STATICCALL of sha256 (0x02) on 0 bytes: a frame in callTracer, no steps in the struct log."""
    code = "0x" + "6020" + "6000" + "6000" + "6000" + "6002" + "5a" + "fa" + "00"
    top = _trace_code(hist, code, 100_000, {"tracer": "callTracer"})
    empty_sha256 = "0xe3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert top["calls"] == [{"type": "STATICCALL", "from": "0x" + "45" * 20, "gas": top["calls"][0]["gas"],
                             "gasUsed": hex(60), "to": "0x" + "00" * 19 + "02", "input": "0x",
                             "output": empty_sha256}]
    logs = _trace_code(hist, code, 100_000)["structLogs"]
    assert [s["op"] for s in logs] == ["PUSH1"] * 5 + ["GAS", "STATICCALL", "STOP"]
    assert all(s["depth"] == 1 for s in logs)


# ------------------------------------------------------------------------ errors


def test_unknown_transaction(hist: History) -> None:
    assert hist.error("debug_traceTransaction", "0x" + "11" * 32) == {"code": -32000,
                                                                      "message": "transaction not found"}


def test_unsupported_tracer_and_bad_options(hist: History) -> None:
    error = hist.error("debug_traceTransaction", hist.txs["bump_a"], {"tracer": "prestateTracerV9"})
    assert error["code"] == -32000 and "prestateTracerV9" in error["message"] and "not supported" in error["message"]
    js = hist.error("debug_traceTransaction", hist.txs["bump_a"], {"tracer": "{step: function() {}}"})
    assert js["code"] == -32000 and "JavaScript" in js["message"]
    assert hist.error("debug_traceTransaction", hist.txs["bump_a"], "callTracer")["code"] == -32602
    assert hist.error("debug_traceTransaction", hist.txs["bump_a"], {"enableMemory": "yes"})["code"] == -32602
    assert hist.error("debug_traceCall", {"to": hist.probe}, "latest", {"blockOverrides": {"number": "0x1"}})[
        "code"] == -32602
    bad = hist.error("debug_traceTransaction", hist.txs["bump_a"], {"timeout": "soon"})
    assert bad == {"code": -32000, "message": 'time: invalid duration "soon"'}


def test_timeout(hist: History) -> None:
    error = hist.error("debug_traceTransaction", hist.txs["nested"], {"timeout": "1ns"})
    assert error == {"code": -32000, "message": "execution timeout"}
    assert hist.trace("nested", {"timeout": "30s", "tracer": "callTracer"})["type"] == "CALL"


def test_normal_execution_is_untouched(hist: History) -> None:
    """Tracing uses its own state and computation class: the node's stay py-evm's."""
    node = hist.chain.node
    head_state = node.blockchain.state_at(node.blockchain.head)
    assert "computation_class" not in vars(head_state)
    assert not any(cls.__name__.startswith("Tracing") for cls in type(head_state).computation_class.__mro__)


def test_conformance_chain_traces_match_receipts(tmp_path: Path) -> None:
    """Every transaction of the execution-apis chain (Homestead to Prague, 45 blocks), traced
    block by block: gas used, success and logs (callTracer ``withLog``) are the receipts'."""
    from openledger_node.chain.chain import Blockchain
    from openledger_node.chain.genesis import load_genesis
    from openledger_node.chain.importer import import_file

    chain = Blockchain.init(tmp_path / "data", load_genesis(SUITE / "genesis.json"))
    try:
        head = import_file(chain, SUITE / "chain.rlp").head_number
    finally:
        chain.close()
    node, thread = start_node(tmp_path / "data", mining=False)
    traced = 0
    try:
        with httpx.Client(timeout=120) as client:
            conf = RunningNode(node, node.rpc.url, tmp_path / "data", client)

            def logs_of(frame: dict[str, Any]) -> list[tuple]:
                own = [(log["address"], log["topics"], log["data"]) for log in frame.get("logs", [])]
                return own + [log for child in frame.get("calls", []) for log in logs_of(child)]

            for number in range(1, head + 1):
                receipts = conf.rpc("eth_getBlockReceipts", hex(number))
                calls = conf.rpc("debug_traceBlockByNumber", hex(number),
                                 {"tracer": "callTracer", "tracerConfig": {"withLog": True}})
                structs = conf.rpc("debug_traceBlockByNumber", hex(number), {"disableStack": True})
                assert [c["txHash"] for c in calls] == [r["transactionHash"] for r in receipts], number
                for receipt, call, struct in zip(receipts, calls, structs):
                    where = (number, receipt["transactionHash"])
                    top, result = call["result"], struct["result"]
                    assert top["gasUsed"] == receipt["gasUsed"] and result["gas"] == q(receipt["gasUsed"]), where
                    assert ("error" in top) == result["failed"], where
                    if "status" in receipt:
                        assert result["failed"] == (receipt["status"] == "0x0"), where
                    want = [(log["address"], log["topics"], log["data"]) for log in receipt["logs"]]
                    assert sorted(map(repr, logs_of(top))) == sorted(map(repr, want)), where
                    traced += 1
    finally:
        stop_node(node, thread)
    assert traced > 100
