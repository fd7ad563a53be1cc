"""Property-based fuzzing of the JSON-RPC endpoint of a real node (uvicorn over HTTP).

Inputs: raw random bytes and broken JSON, structurally valid JSON-RPC requests to real
methods with random JSON params, typed-but-wrong params for eth_getBalance / eth_call /
eth_getLogs / eth_getBlockByNumber / ..., huge numbers, deep nesting, oversized and
random batches, and random bytes / invalid RLP / corrupted typed envelopes for
eth_sendRawTransaction.  For every answer:

* the HTTP status is 200 (or 413 for a body over the cap, 204 for notifications only),
  never 500;
* the body is a JSON-RPC 2.0 response (or a batch of them): exactly one of ``result`` and
  ``error``, an error having an integer ``code`` and a string ``message``;
* no input makes a handler crash: an ``internal error`` (-32603) answer counts as a bug
  (the input should have been refused as invalid params/request).

Afterwards the node still answers and its chain is unchanged (same head hash and state
root, nothing in the pool): none of the inputs is a valid signed transaction.

Deterministic for CI (``derandomize=True``); the number of inputs sent is printed.
"""
from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import rlp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import start_node, stop_node

SETTINGS = settings(
    derandomize=True,
    max_examples=600,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
SENT = {"requests": 0}

# Methods that cannot change the chain whatever their params (the --dev signing methods
# and mining helpers are left out on purpose: with unlocked accounts they may mine).
METHODS = [
    "eth_chainId", "eth_blockNumber", "eth_getBalance", "eth_getTransactionCount", "eth_getCode",
    "eth_getStorageAt", "eth_call", "eth_estimateGas", "eth_createAccessList", "eth_getLogs",
    "eth_getBlockByNumber", "eth_getBlockByHash", "eth_getBlockReceipts", "eth_getTransactionByHash",
    "eth_getTransactionReceipt", "eth_getProof", "eth_feeHistory", "eth_sendRawTransaction",
    "eth_getTransactionByBlockNumberAndIndex", "eth_getBlockTransactionCountByNumber", "eth_gasPrice",
    "eth_maxPriorityFeePerGas", "eth_getRawTransactionByHash", "web3_sha3", "web3_clientVersion", "net_version",
]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Iterator[tuple[httpx.Client, str]]:
    running, thread = start_node(tmp_path_factory.mktemp("fuzz") / "data", dev=True)
    try:
        with httpx.Client(timeout=30) as client:
            url = running.rpc.url
            before = _chain_snapshot(client, url)
            yield client, url
            after = _chain_snapshot(client, url)
            assert after == before, f"chain changed under fuzzing: {before} -> {after}"
    finally:
        stop_node(running, thread)
        line = f"RPC fuzz: {SENT['requests']} inputs sent"
        capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
        reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
        if capture is not None and reporter is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line("\n" + line)
        else:
            print(line)


def _call(client: httpx.Client, url: str, method: str, *params: Any) -> Any:
    body = client.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).json()
    assert "error" not in body, body
    return body["result"]


def _chain_snapshot(client: httpx.Client, url: str) -> dict[str, Any]:
    head = _call(client, url, "eth_getBlockByNumber", "latest", False)
    pending = _call(client, url, "eth_getBlockByNumber", "pending", False)
    return {
        "number": head["number"],
        "hash": head["hash"],
        "stateRoot": head["stateRoot"],
        "pending_txs": len(pending["transactions"]) if pending else 0,
        "nonce0": _call(client, url, "eth_getTransactionCount", "0x" + "00" * 20, "latest"),
    }


# --------------------------------------------------------------------------- checking


def _check_response_object(obj: Any, where: str) -> None:
    assert isinstance(obj, dict), f"{where}: not an object: {obj!r}"
    assert obj.get("jsonrpc") == "2.0", f"{where}: {obj!r}"
    assert "id" in obj, f"{where}: no id: {obj!r}"
    assert ("result" in obj) != ("error" in obj), f"{where}: need exactly one of result/error: {obj!r}"
    if "error" in obj:
        err = obj["error"]
        assert isinstance(err, dict), f"{where}: {obj!r}"
        assert isinstance(err.get("code"), int) and not isinstance(err.get("code"), bool), f"{where}: {obj!r}"
        assert isinstance(err.get("message"), str), f"{where}: {obj!r}"
        assert err["code"] != -32603, f"{where}: handler crashed (internal error) on this input: {obj!r}"


def post(client: httpx.Client, url: str, body: bytes, what: str) -> Any:
    """Send one raw body; check the HTTP status and the JSON-RPC shape of the answer."""
    SENT["requests"] += 1
    response = client.post(url, content=body, headers={"content-type": "application/json"})
    where = f"{what} {body[:200]!r}"
    assert response.status_code != 500, f"{where}: HTTP 500"
    assert response.status_code in (200, 204, 413), f"{where}: HTTP {response.status_code}"
    if response.status_code == 204:
        assert response.content == b""
        return None
    payload = response.json()
    if isinstance(payload, list):
        assert payload, f"{where}: empty batch answer"
        for i, item in enumerate(payload):
            _check_response_object(item, f"{where} [item {i}]")
    else:
        _check_response_object(payload, where)
        if response.status_code == 413:
            assert payload["error"]["code"] == -32600
    return payload


def request_body(method: str, params: Any, id_: Any = 1) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": id_, "method": method, "params": params}).encode()


# ------------------------------------------------------------------------- strategies

huge_ints = st.one_of(
    st.integers(min_value=-(2**300), max_value=2**300),
    st.sampled_from([2**256, 2**256 - 1, -1, 2**64, 2**63 - 1, 10**100, -(10**100)]),
)
hex_strings = st.one_of(
    st.binary(max_size=80).map(lambda b: "0x" + b.hex()),
    st.text(alphabet="0123456789abcdefABCDEFxX", max_size=90),
    st.integers(min_value=0, max_value=2**300).map(hex),
    st.just("0x" + "f" * 5000),
    st.just("0x" + "1" * 20000),
)
block_tags = st.one_of(
    st.sampled_from(["latest", "earliest", "pending", "safe", "finalized", "0x0", "0x", "0x00", "-0x1", "0x-1",
                     "latest ", "LATEST", "", "0x" + "f" * 64, "0x10000000000000000"]),
    hex_strings,
    huge_ints,
    st.dictionaries(st.sampled_from(["blockNumber", "blockHash", "requireCanonical"]), hex_strings, max_size=3),
)
json_leaves = st.one_of(
    st.none(), st.booleans(), huge_ints, st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40), hex_strings,
)
json_values = st.recursive(
    json_leaves,
    lambda children: st.one_of(st.lists(children, max_size=5),
                               st.dictionaries(st.text(max_size=12), children, max_size=5)),
    max_leaves=25,
)
addresses = st.one_of(st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex()), hex_strings, json_leaves)
call_objects = st.one_of(
    st.fixed_dictionaries({}, optional={
        "from": addresses, "to": addresses, "gas": st.one_of(hex_strings, huge_ints, json_leaves),
        "gasPrice": st.one_of(hex_strings, huge_ints), "maxFeePerGas": hex_strings,
        "maxPriorityFeePerGas": hex_strings, "value": st.one_of(hex_strings, huge_ints),
        "data": st.one_of(hex_strings, json_values), "input": st.one_of(hex_strings, json_values),
        "nonce": st.one_of(hex_strings, huge_ints), "accessList": json_values, "type": hex_strings,
        "blobVersionedHashes": json_values, "authorizationList": json_values,
    }),
    json_values,
)
log_filters = st.one_of(
    st.fixed_dictionaries({}, optional={
        "fromBlock": block_tags, "toBlock": block_tags, "address": st.one_of(addresses, st.lists(addresses, max_size=4)),
        "topics": st.one_of(st.lists(st.one_of(st.none(), hex_strings, st.lists(hex_strings, max_size=3)), max_size=5),
                            json_values),
        "blockHash": hex_strings,
    }),
    json_values,
)
TYPED_PARAMS = {
    "eth_getBalance": st.tuples(addresses, block_tags),
    "eth_getTransactionCount": st.tuples(addresses, block_tags),
    "eth_getCode": st.tuples(addresses, block_tags),
    "eth_getStorageAt": st.tuples(addresses, st.one_of(hex_strings, huge_ints), block_tags),
    "eth_call": st.tuples(call_objects, block_tags),
    "eth_estimateGas": st.tuples(call_objects, block_tags),
    "eth_createAccessList": st.tuples(call_objects, block_tags),
    "eth_getLogs": st.tuples(log_filters),
    "eth_getBlockByNumber": st.tuples(block_tags, json_leaves),
    "eth_getBlockByHash": st.tuples(hex_strings, json_leaves),
    "eth_getBlockReceipts": st.tuples(block_tags),
    "eth_getTransactionByHash": st.tuples(hex_strings),
    "eth_getTransactionReceipt": st.tuples(hex_strings),
    "eth_getProof": st.tuples(addresses, st.one_of(st.lists(hex_strings, max_size=4), json_values), block_tags),
    "eth_feeHistory": st.tuples(st.one_of(hex_strings, huge_ints), block_tags,
                                st.one_of(st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=6),
                                          json_values)),
    "eth_getTransactionByBlockNumberAndIndex": st.tuples(block_tags, st.one_of(hex_strings, huge_ints)),
    "web3_sha3": st.tuples(st.one_of(hex_strings, json_leaves)),
}


def _rlp_items() -> st.SearchStrategy:
    return st.recursive(st.binary(max_size=40), lambda c: st.lists(c, max_size=10), max_leaves=20)


raw_transactions = st.one_of(
    st.binary(max_size=300),
    _rlp_items().map(rlp.encode),
    st.tuples(st.integers(0, 0x7f), _rlp_items().map(rlp.encode)).map(lambda t: bytes([t[0]]) + t[1]),
    st.lists(st.binary(max_size=33), min_size=9, max_size=14).map(rlp.encode),  # legacy-shaped, bad signature
    st.tuples(st.sampled_from([1, 2, 3, 4]), st.lists(st.binary(max_size=33), min_size=8, max_size=14))
    .map(lambda t: bytes([t[0]]) + rlp.encode(t[1])),  # typed envelopes with junk fields
    st.binary(min_size=1, max_size=64).map(lambda b: b"\xf9\xff\xff" + b),  # length prefix past the end
)


# ------------------------------------------------------------------------------ tests


@SETTINGS
@given(body=st.one_of(st.binary(max_size=512), st.text(max_size=200).map(str.encode),
                      st.sampled_from([b"", b"{", b"[", b"null", b"1", b'"x"', b"[]", b"{}", b"[1,2]", b"NaN",
                                       b'{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[NaN]}',
                                       b'{"jsonrpc":"2.0","id":Infinity,"method":"eth_chainId"}',
                                       b'\xef\xbb\xbf{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}',
                                       b'{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}garbage'])))
def test_malformed_bodies(node, body: bytes) -> None:
    client, url = node
    post(client, url, body, "raw body")


@SETTINGS
@given(method=st.one_of(st.sampled_from(METHODS), st.text(max_size=30)),
       params=st.one_of(st.none(), st.lists(json_values, max_size=4), st.dictionaries(st.text(max_size=10), json_values,
                                                                                     max_size=3), json_leaves),
       id_=st.one_of(st.integers(min_value=-(2**70), max_value=2**70), st.text(max_size=10), st.none(),
                     st.floats(allow_nan=False, allow_infinity=False), st.booleans(), st.lists(st.integers(), max_size=2)),
       jsonrpc=st.sampled_from(["2.0", "2.0", "2.0", "1.0", None, 2]))
def test_random_requests(node, method: str, params: Any, id_: Any, jsonrpc: Any) -> None:
    client, url = node
    req: dict[str, Any] = {"jsonrpc": jsonrpc, "id": id_, "method": method}
    if params is not None:
        req["params"] = params
    post(client, url, json.dumps(req).encode(), "request")


@settings(SETTINGS, max_examples=1200)
@given(data=st.data(), method=st.sampled_from(sorted(TYPED_PARAMS)))
def test_wrong_params_for_real_methods(node, data: st.DataObject, method: str) -> None:
    client, url = node
    params = list(data.draw(TYPED_PARAMS[method], label="params"))
    if data.draw(st.booleans(), label="truncate"):
        params = params[: data.draw(st.integers(0, len(params)), label="keep")]
    post(client, url, request_body(method, params), method)


@SETTINGS
@given(raw=raw_transactions, as_hex=st.sampled_from(["0x", "0X", "", "0x0"]))
def test_send_raw_transaction_rejects_junk(node, raw: bytes, as_hex: str) -> None:
    client, url = node
    answer = post(client, url, request_body("eth_sendRawTransaction", [as_hex + raw.hex()]), "sendRawTransaction")
    assert "error" in answer, f"junk transaction accepted: {raw.hex()} -> {answer}"


@settings(SETTINGS, max_examples=200)
@given(items=st.lists(st.one_of(
    st.builds(lambda m, p, i: {"jsonrpc": "2.0", "id": i, "method": m, "params": p},
              st.sampled_from(METHODS), st.lists(json_leaves, max_size=3), st.integers(0, 10**6)),
    st.builds(lambda m: {"jsonrpc": "2.0", "method": m, "params": []}, st.sampled_from(METHODS)),  # notifications
    json_leaves,
), min_size=1, max_size=40))
def test_random_batches(node, items: list[Any]) -> None:
    client, url = node
    answer = post(client, url, json.dumps(items).encode(), "batch")
    if answer is not None and isinstance(answer, list):
        non_notifications = [it for it in items if not (isinstance(it, dict) and "id" not in it)]
        assert len(answer) == len(non_notifications)


def test_edge_cases(node) -> None:
    """Deep nesting, oversized batches and bodies, huge numbers: fixed inputs, all checked."""
    client, url = node
    chain_id = b'{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}'
    cases: list[tuple[str, bytes]] = [
        ("deep array", b"[" * 100_000 + b"]" * 100_000),
        ("deep unclosed", b"[" * 300_000),
        ("deep object", b'{"a":' * 50_000 + b"1" + b"}" * 50_000),
        ("deep params", b'{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":' + b"[" * 5000 + b"]" * 5000 + b"}"),
        ("deep but allowed", b'{"jsonrpc":"2.0","id":1,"method":"eth_call","params":[' + b"[" * 200 + b"]" * 200 + b"]}"),
        ("batch over the limit", b"[" + b",".join([chain_id] * 1001) + b"]"),
        ("batch at the limit", b"[" + b",".join([chain_id] * 1000) + b"]"),
        ("huge integer id", b'{"jsonrpc":"2.0","id":' + b"9" * 5000 + b',"method":"eth_chainId"}'),
        ("huge integer param", b'{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":[' + b"7" * 4300 + b',"latest"]}'),
        ("huge exponent", b'{"jsonrpc":"2.0","id":1e400,"method":"eth_chainId"}'),
        ("huge hex quantity", request_body("eth_getBlockByNumber", ["0x" + "f" * 100_000, False])),
        ("huge data", request_body("eth_call", [{"to": "0x" + "00" * 20, "data": "0x" + "ab" * 1_000_000}, "latest"])),
        ("huge raw tx", request_body("eth_sendRawTransaction", ["0x" + "ff" * 1_000_000])),
        ("body over the cap", b'{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":["' + b"a" * (6 * 1024 * 1024) + b'"]}'),
        ("many keys", b'{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":{' +
         b",".join(b'"k%d":1' % i for i in range(50_000)) + b"}}"),
        ("invalid utf-8", b'{"jsonrpc":"2.0","id":1,"method":"eth_chain\xff\xfeId"}'),
        ("lone surrogate", b'{"jsonrpc":"2.0","id":"\\ud800","method":"eth_chainId"}'),
        ("null bytes", b'{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["\\u0000","latest"]}'),
    ]
    for what, body in cases:
        answer = post(client, url, body, what)
        if what == "batch over the limit":
            assert isinstance(answer, dict) and answer["error"]["code"] == -32600, answer
        if what == "batch at the limit":
            assert isinstance(answer, list) and len(answer) == 1000
        if what == "body over the cap":
            assert answer["error"]["code"] == -32600
    # The node is still up and answers normally.
    assert _call(client, url, "eth_chainId")
