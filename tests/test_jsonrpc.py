"""JSON-RPC transport tests: a real uvicorn server on 127.0.0.1 spoken to over HTTP."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any, Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openledger_node.rpc.encoding import (
    BlockRef,
    parse_address,
    parse_block_ref,
    parse_block_tag,
    parse_bool,
    parse_data,
    parse_hash,
    parse_quantity,
    to_data,
    to_quantity,
)
from openledger_node.rpc.jsonrpc import (
    Dispatcher,
    ExecutionReverted,
    InvalidParams,
    RPCError,
    ServerError,
)
from openledger_node.rpc.server import PortInUseError, RPCServer

MAX_BODY = 5 * 1024 * 1024
ERROR_SELECTOR = bytes.fromhex("08c379a0")


def abi_error(reason: str) -> bytes:
    raw = reason.encode()
    padded = raw + b"\0" * (-len(raw) % 32)
    return ERROR_SELECTOR + (32).to_bytes(32, "big") + len(raw).to_bytes(32, "big") + padded


class Toy:
    """A namespace object, registered under prefix "toy"."""

    def __init__(self) -> None:
        self.notes: list[Any] = []

    def note(self, value: Any) -> None:
        self.notes.append(value)

    def notes_count(self) -> int:
        return len(self.notes)

    def _private(self) -> None:  # must not be registered
        raise AssertionError


def make_dispatcher(toy: Toy, calls: list[tuple[str, bool]]) -> Dispatcher:
    d = Dispatcher(on_call=lambda method, seconds, ok: calls.append((method, ok)))
    d.register("add", lambda a, b: a + b)
    d.register("echo", lambda value: value)

    def greet(name: str, greeting: str = "hello") -> str:
        return f"{greeting} {name}"

    def fail() -> None:
        raise ServerError("nonce too low", data={"hint": 1})

    def crash() -> None:
        raise TypeError("a real bug inside the handler")

    def revert() -> None:
        raise ExecutionReverted(abi_error("not owner"))

    async def slow_add(a: int, b: int) -> int:
        await asyncio.sleep(0)
        return a + b

    for fn in (greet, fail, crash, revert, slow_add):
        d.register(fn.__name__, fn)
    d.register("not_json", lambda: object())
    d.register_namespace(toy, "toy")
    return d


@pytest.fixture(scope="module")
def env() -> Iterator[tuple[httpx.Client, Toy, list[tuple[str, bool]], RPCServer]]:
    toy, calls = Toy(), []
    server = RPCServer(make_dispatcher(toy, calls), "127.0.0.1", 0)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield client, toy, calls, server
    finally:
        server.stop()


@pytest.fixture
def client(env) -> httpx.Client:
    return env[0]


def post(client: httpx.Client, payload: Any) -> httpx.Response:
    body = payload if isinstance(payload, (bytes, bytearray)) else json.dumps(payload).encode()
    return client.post("/", content=body, headers={"content-type": "application/json"})


def rpc(client: httpx.Client, method: str, params: Any = None, id_: Any = 1) -> dict[str, Any]:
    req: dict[str, Any] = {"jsonrpc": "2.0", "id": id_, "method": method}
    if params is not None:
        req["params"] = params
    r = post(client, req)
    assert r.status_code == 200
    return r.json()


def assert_error(obj: Any, code: int | None = None) -> dict[str, Any]:
    assert isinstance(obj, dict), obj
    assert obj.get("jsonrpc") == "2.0" and "result" not in obj and "id" in obj, obj
    err = obj["error"]
    assert isinstance(err["code"], int) and not isinstance(err["code"], bool)
    assert isinstance(err["message"], str) and err["message"]
    if code is not None:
        assert err["code"] == code, obj
    return err


def assert_alive(client: httpx.Client) -> None:
    assert rpc(client, "add", [2, 3], id_="alive") == {"jsonrpc": "2.0", "id": "alive", "result": 5}


# ------------------------------------------------------------------ single calls


def test_single_call(client):
    assert rpc(client, "add", [1, 2]) == {"jsonrpc": "2.0", "id": 1, "result": 3}
    assert rpc(client, "greet", ["bob"], id_="abc")["result"] == "hello bob"
    assert rpc(client, "greet", {"name": "bob", "greeting": "hi"}, id_=None) == {
        "jsonrpc": "2.0",
        "id": None,
        "result": "hi bob",
    }
    assert rpc(client, "slow_add", [4, 5], id_=2.5)["result"] == 9
    assert rpc(client, "toy_notes_count", [])["result"] >= 0


def test_compact_output_and_content_type(client):
    r = post(client, {"jsonrpc": "2.0", "id": 7, "method": "add", "params": [1, 1]})
    assert r.content == b'{"jsonrpc":"2.0","id":7,"result":2}'
    assert r.headers["content-type"].startswith("application/json")


def test_trailing_null_for_optional_param_uses_default(client):
    assert rpc(client, "greet", ["ann", None])["result"] == "hello ann"
    # a null in a required position is passed through to the handler
    assert rpc(client, "echo", [None]) == {"jsonrpc": "2.0", "id": 1, "result": None}


def test_unknown_method(client):
    err = assert_error(rpc(client, "nope_method", []), -32601)
    assert "nope_method" in err["message"]


@pytest.mark.parametrize(
    "method,params,fragment",
    [
        ("add", [1], "missing value for required argument 1"),
        ("add", [], "missing value for required argument 0"),
        ("add", [1, 2, 3], "too many arguments, want at most 2"),
        ("greet", ["a", "b", "c"], "too many arguments, want at most 2"),
        ("greet", {"nam": "x"}, "name"),
        ("toy_notes_count", [1], "too many arguments, want at most 0"),
    ],
)
def test_wrong_param_count(client, method, params, fragment):
    err = assert_error(rpc(client, method, params), -32602)
    assert fragment in err["message"]


def test_handler_rpc_error_with_data(client):
    resp = rpc(client, "fail", [], id_=9)
    assert resp == {"jsonrpc": "2.0", "id": 9, "error": {"code": -32000, "message": "nonce too low", "data": {"hint": 1}}}


def test_execution_reverted_like_geth(client):
    err = assert_error(rpc(client, "revert", []), 3)
    assert err["message"] == "execution reverted: not owner"
    assert err["data"] == to_data(abi_error("not owner"))


def test_handler_crash_is_internal_error_and_server_survives(env, caplog):
    client, _, calls, _ = env
    with caplog.at_level("ERROR", logger="openledger_node.rpc.jsonrpc"):
        err = assert_error(rpc(client, "crash", []), -32603)
    assert "a real bug" not in err["message"]  # no internals leaked to the client
    assert any("crash" in r.getMessage() and r.exc_info for r in caplog.records)
    assert ("crash", False) in calls
    assert_alive(client)


def test_unserialisable_result_is_internal_error(client):
    assert_error(rpc(client, "not_json", []), -32603)
    assert_alive(client)


def test_on_call_hook(env):
    client, _, calls, _ = env
    calls.clear()
    rpc(client, "add", [1, 2])
    rpc(client, "fail", [])
    rpc(client, "no_such_method", [])  # unknown methods are not reported (label cardinality)
    assert calls == [("add", True), ("fail", False)]


# ------------------------------------------------------- batches & notifications


def test_batch_mixed(client):
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "add", "params": [1, 2]},
        {"jsonrpc": "2.0", "id": 2, "method": "missing"},
        1,
        {"jsonrpc": "1.0", "id": 3, "method": "add", "params": [1, 2]},
        {"jsonrpc": "2.0", "method": "add", "params": [1, 2]},  # notification: no answer
        {"jsonrpc": "2.0", "id": "x", "method": "add", "params": [1]},
        {"jsonrpc": "2.0", "id": 4, "method": "crash"},
        {"jsonrpc": "2.0", "id": 5, "method": "echo", "params": ["after crash"]},
    ]
    r = post(client, batch)
    assert r.status_code == 200
    out = r.json()
    assert isinstance(out, list) and len(out) == 7
    assert out[0] == {"jsonrpc": "2.0", "id": 1, "result": 3}
    assert assert_error(out[1], -32601) and out[1]["id"] == 2
    assert assert_error(out[2], -32600) and out[2]["id"] is None
    assert assert_error(out[3], -32600) and out[3]["id"] == 3
    assert assert_error(out[4], -32602) and out[4]["id"] == "x"
    assert assert_error(out[5], -32603) and out[5]["id"] == 4
    assert out[6] == {"jsonrpc": "2.0", "id": 5, "result": "after crash"}


def test_notifications(env):
    client, toy, _, _ = env
    before = len(toy.notes)
    r = post(client, {"jsonrpc": "2.0", "method": "toy_note", "params": ["n1"]})
    assert r.status_code == 204 and r.content == b""
    r = post(client, [{"jsonrpc": "2.0", "method": "toy_note", "params": ["n2"]}, {"jsonrpc": "2.0", "method": "crash"}])
    assert r.status_code == 204 and r.content == b""
    # failing notifications (unknown method, bad params) are silent too
    r = post(client, {"jsonrpc": "2.0", "method": "nope", "params": [1]})
    assert r.status_code == 204
    assert toy.notes[before:] == ["n1", "n2"]
    # "id": null is a call, not a notification
    assert rpc(client, "toy_notes_count", [], id_=None)["id"] is None


def test_empty_batch(client):
    r = post(client, b"[]")
    assert r.status_code == 200
    assert_error(r.json(), -32600)  # a single object, not an array


def test_batch_too_large(client):
    batch = [{"jsonrpc": "2.0", "id": i, "method": "add", "params": [i, 1]} for i in range(1001)]
    err = assert_error(post(client, batch).json(), -32600)
    assert "batch" in err["message"]
    out = post(client, batch[:1000]).json()
    assert len(out) == 1000 and out[-1]["result"] == 1000


# ---------------------------------------------------------------- malformed input


@pytest.mark.parametrize("body", [b"", b"{", b'{"jsonrpc":"2.0",}', b"\xff\xfe\x00garbage", b"NaN", b"[1,2", b"{'a':1}"])
def test_parse_error(client, body):
    r = post(client, body)
    assert r.status_code == 200
    assert_error(r.json(), -32700)["message"].startswith("parse error")


@pytest.mark.parametrize(
    "payload,reply_id",
    [
        ({"jsonrpc": "1.0", "id": 1, "method": "add"}, 1),
        ({"id": 1, "method": "add"}, 1),
        ({"jsonrpc": "2.0", "id": 1, "method": 5}, 1),
        ({"jsonrpc": "2.0", "id": 1}, 1),
        ({"jsonrpc": "2.0", "id": 1, "method": "add", "params": "1,2"}, 1),
        ({"jsonrpc": "2.0", "id": 1, "method": "add", "params": 3}, 1),
        ({"jsonrpc": "2.0", "id": [1], "method": "add", "params": [1, 2]}, None),
        ({"jsonrpc": "2.0", "id": {"a": 1}, "method": "add", "params": [1, 2]}, None),
        ({"jsonrpc": "2.0", "id": True, "method": "add", "params": [1, 2]}, None),
        ({"jsonrpc": "1.0"}, None),
        ({"jsonrpc": "2.0", "method": 1, "params": "bar"}, None),  # invalid, even without id
        (1, None),
        ("a string", None),
        (None, None),
    ],
)
def test_invalid_request(client, payload, reply_id):
    r = post(client, payload)
    assert r.status_code == 200
    obj = r.json()
    assert_error(obj, -32600)
    assert obj["id"] == reply_id


def test_batch_of_non_objects(client):
    out = post(client, [1, 2, [3], "x", None]).json()
    assert len(out) == 5
    for item in out:
        assert_error(item, -32600)
        assert item["id"] is None


def test_oversized_body(client):
    r = client.post("/", content=b" " * (MAX_BODY + 1))
    assert r.status_code == 413
    assert_error(r.json(), -32600)["message"] == "request too large"

    def chunks() -> Iterator[bytes]:  # no content-length: chunked transfer encoding
        for _ in range(6):
            yield b" " * (1024 * 1024)

    r = client.post("/", content=chunks())
    assert r.status_code == 413
    assert_error(r.json(), -32600)
    assert_alive(client)


def test_body_at_cap_is_accepted(client):
    req = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "echo", "params": ["x"]}).encode()
    body = req + b" " * (MAX_BODY - len(req))
    assert len(body) == MAX_BODY
    assert post(client, body).json()["result"] == "x"


@pytest.mark.parametrize("opener,closer", [(b"[", b"]"), (b'{"a":', b"}")])
def test_deeply_nested_json(client, opener, closer):
    n = 100_000
    r = post(client, opener * n + b"1" + closer * n)
    assert r.status_code == 200
    assert_error(r.json(), -32700)
    # nested inside an otherwise valid request
    r = post(client, b'{"jsonrpc":"2.0","id":1,"method":"echo","params":[' + b"[" * n + b"]" * n + b"]}")
    assert_error(r.json(), -32700)
    # moderate nesting is fine and round-trips
    deep = b"[" * 200 + b"]" * 200
    r = post(client, b'{"jsonrpc":"2.0","id":1,"method":"echo","params":[' + deep + b"]}")
    assert json.dumps(r.json()["result"], separators=(",", ":")).encode() == deep
    assert_alive(client)


def test_huge_numbers(client):
    big = b"9" * 100_000
    assert_error(post(client, b'{"jsonrpc":"2.0","id":' + big + b',"method":"add","params":[1,2]}').json(), -32700)
    assert_error(post(client, b'{"jsonrpc":"2.0","id":1,"method":"echo","params":[' + big + b"]}").json(), -32700)
    # within limits: large ints round-trip exactly
    n = 10**300
    assert rpc(client, "echo", [n], id_=n) == {"jsonrpc": "2.0", "id": n, "result": n}
    # float overflow -> inf; an inf id is invalid, an inf result cannot be encoded
    r = post(client, b'{"jsonrpc":"2.0","id":1e999,"method":"add","params":[1,2]}')
    assert_error(r.json(), -32600)
    r = post(client, b'{"jsonrpc":"2.0","id":1,"method":"echo","params":[1e999]}')
    assert_error(r.json(), -32603)
    r = post(client, b'{"jsonrpc":"2.0","id":1,"method":"echo","params":[' + b"1" * 3000 + b"." + b"5" * 100_000 + b"]}")
    assert r.status_code == 200
    assert_alive(client)


# ------------------------------------------------------------------ HTTP surface


def test_health_and_http_errors(client):
    r = client.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = client.get("/")
    assert r.status_code == 405
    assert_error(r.json(), -32600)
    r = client.post("/nope", content=b"{}")
    assert r.status_code == 404
    assert_error(r.json(), -32600)


def test_cors(client):
    r = client.options(
        "/",
        headers={
            "Origin": "http://dapp.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "*"
    assert "POST" in r.headers["access-control-allow-methods"]
    r = client.post("/", content=b'{"jsonrpc":"2.0","id":1,"method":"add","params":[1,2]}', headers={"Origin": "http://dapp.example"})
    assert r.headers["access-control-allow-origin"] == "*"


def test_port_in_use(env):
    _, _, _, server = env
    other = RPCServer(Dispatcher(), "127.0.0.1", server.port)
    with pytest.raises(PortInUseError) as info:
        other.start()
    assert str(server.port) in str(info.value)
    other.stop()  # harmless on a server that never started


def test_port_in_use_by_plain_socket():
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        with pytest.raises(PortInUseError):
            RPCServer(Dispatcher(), "127.0.0.1", sock.getsockname()[1]).start()
    finally:
        sock.close()


def test_in_loop_mode_and_restart():
    d = Dispatcher()
    d.register("ping", lambda: "pong")

    async def main() -> None:
        server = RPCServer(d, "127.0.0.1", 0)
        await server.start_async()
        try:
            assert server.port != 0
            async with httpx.AsyncClient(base_url=server.url) as c:
                r = await c.post("/", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
                assert r.json()["result"] == "pong"
        finally:
            await server.stop_async()

    asyncio.run(main())

    server = RPCServer(d, "127.0.0.1", 0)
    for _ in range(2):  # start/stop/start again on a fresh port
        server.start()
        try:
            assert httpx.post(server.url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"}).json()["result"] == "pong"
        finally:
            server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.post(server.url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, timeout=2)


# ------------------------------------------------------------------------- fuzz

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30,
)


def _is_request_like(v: Any) -> bool:
    items = v if isinstance(v, list) else [v]
    return any(isinstance(i, dict) and i.get("jsonrpc") == "2.0" and isinstance(i.get("method"), str) for i in items)


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(body=st.binary(max_size=512))
def test_fuzz_random_bytes(client, body):
    r = post(client, body)
    assert r.status_code == 200
    out = r.json()
    for item in out if isinstance(out, list) else [out]:
        assert_error(item)
    assert_alive(client)


@FUZZ
@given(value=json_values)
def test_fuzz_random_json(client, value):
    if _is_request_like(value):
        return
    r = post(client, json.dumps(value).encode())
    assert r.status_code == 200
    out = r.json()
    if isinstance(value, list) and value:
        assert isinstance(out, list) and len(out) == len(value)
    for item in out if isinstance(out, list) else [out]:
        assert_error(item)
    assert_alive(client)


@FUZZ
@given(
    req=st.fixed_dictionaries(
        {},
        optional={
            "jsonrpc": st.sampled_from(["2.0", "1.0", 2.0, None]),
            "method": st.sampled_from(["add", "echo", "greet", "crash", "fail", "missing"]) | json_values,
            "params": json_values,
            "id": json_values,
        },
    )
)
def test_fuzz_request_shaped(client, req):
    r = post(client, json.dumps(req).encode())
    if r.status_code == 204:
        assert "id" not in req
        return
    assert r.status_code == 200
    out = r.json()
    assert out["jsonrpc"] == "2.0" and "id" in out
    assert ("result" in out) != ("error" in out)
    if "error" in out:
        assert_error(out)
    assert_alive(client)


# ----------------------------------------------------------- dispatcher in-process


def test_dispatcher_registration_rules():
    d = Dispatcher()
    d.register("a", lambda: 1)
    with pytest.raises(ValueError):
        d.register("a", lambda: 2)
    d.register("a", lambda: 2, replace=True)

    def kwonly(x, *, y):  # cannot be satisfied by positional params
        return x

    with pytest.raises(ValueError):
        d.register("k", kwonly)
    assert d.register_namespace(Toy(), "toy") == ["toy_note", "toy_notes_count"]
    assert d.methods() == ["a", "toy_note", "toy_notes_count"]
    assert asyncio.run(d.call("a")) == 2


def test_dispatcher_varargs_and_limits():
    d = Dispatcher(max_batch=2, max_body_bytes=100)
    d.register("count", lambda *a: len(a))
    assert asyncio.run(d.call("count", [1, 2, 3, 4])) == 4
    assert json.loads(asyncio.run(d.handle_bytes(b" " * 101)))["error"]["code"] == -32600
    batch = json.dumps([{"jsonrpc": "2.0", "id": i, "method": "count"} for i in range(3)]).encode()
    assert json.loads(asyncio.run(d.handle_bytes(batch)))["error"]["code"] == -32600


def test_rpc_error_shapes():
    assert RPCError(-32000, "x").to_dict() == {"code": -32000, "message": "x"}
    assert InvalidParams("bad", data=[1]).to_dict() == {"code": -32602, "message": "bad", "data": [1]}
    e = ExecutionReverted("0x")
    assert (e.code, e.message, e.data) == (3, "execution reverted", "0x")
    panic = bytes.fromhex("4e487b71") + (0x11).to_bytes(32, "big")
    assert ExecutionReverted(panic).message == "execution reverted: arithmetic underflow or overflow"
    assert ExecutionReverted(b"\x01\x02", message="custom").to_dict() == {"code": 3, "message": "custom", "data": "0x0102"}
    assert ExecutionReverted(abi_error("x")[:40]).message == "execution reverted"  # truncated: not decodable


# -------------------------------------------------------------------- encoding


def test_to_quantity_and_data():
    assert to_quantity(0) == "0x0"
    assert to_quantity(255) == "0xff"
    assert to_quantity(2**256 - 1) == "0x" + "f" * 64
    with pytest.raises(ValueError):
        to_quantity(-1)
    with pytest.raises(TypeError):
        to_quantity(True)
    with pytest.raises(TypeError):
        to_quantity("0x1")  # type: ignore[arg-type]
    assert to_data(b"") == "0x"
    assert to_data(b"\x00\xab") == "0x00ab"
    with pytest.raises(TypeError):
        to_data("00")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value,expected",
    [("0x0", 0), ("0x1a", 26), ("0X1A", 26), ("0x00ff", 255), ("0x" + "0" * 100 + "1", 1), (7, 7), (0, 0), ("0x" + "f" * 64, 2**256 - 1)],
)
def test_parse_quantity_ok(value, expected):
    assert parse_quantity(value) == expected


@pytest.mark.parametrize(
    "value",
    ["0x", "ff", "12", "-0x1", "0xg", "0x 1", " 0x1", "0x1_0", "0x1 ", "0x1" + "0" * 64, 2**256, -1, True, 1.0, None, [1], {}],
)
def test_parse_quantity_rejects(value):
    with pytest.raises(InvalidParams) as info:
        parse_quantity(value)
    assert info.value.code == -32602
    assert info.value.message.startswith("invalid quantity")


def test_parse_quantity_max_value_and_name():
    assert parse_quantity("0xffffffffffffffff", max_value=2**64 - 1) == 2**64 - 1
    with pytest.raises(InvalidParams, match="gas.*64 bits"):
        parse_quantity("0x10000000000000000", name="gas", max_value=2**64 - 1)
    with pytest.raises(InvalidParams, match="maximum 0x3e8"):
        parse_quantity("0x3e9", max_value=1000)


def test_error_message_does_not_echo_huge_input():
    with pytest.raises(InvalidParams) as info:
        parse_quantity("0xz" + "a" * 10_000)
    assert len(info.value.message) < 200


@settings(max_examples=200)
@given(st.integers(min_value=0, max_value=2**256 - 1))
def test_quantity_roundtrip(n):
    assert parse_quantity(to_quantity(n)) == n


@given(st.binary(max_size=100))
def test_data_roundtrip(b):
    assert parse_data(to_data(b)) == b


def test_parse_data_hash_address():
    assert parse_data("0x") == b""
    assert parse_data("0xABcd") == b"\xab\xcd"
    with pytest.raises(InvalidParams, match="odd length"):
        parse_data("0xabc")
    with pytest.raises(InvalidParams, match="without 0x prefix"):
        parse_data("abcd")
    with pytest.raises(InvalidParams):
        parse_data(1234)
    with pytest.raises(InvalidParams, match="want 2 bytes, got 1"):
        parse_data("0x01", size=2)
    h = "0x" + "ab" * 32
    assert parse_hash(h) == b"\xab" * 32
    assert parse_hash(h.upper().replace("0X", "0x")) == b"\xab" * 32
    with pytest.raises(InvalidParams, match="want 32 bytes"):
        parse_hash("0x" + "ab" * 31)
    addr = "0x52908400098527886E0F7030069857D2E4169EE7"  # EIP-55 mixed case
    assert parse_address(addr) == parse_address(addr.lower()) == bytes.fromhex(addr[2:])
    with pytest.raises(InvalidParams, match="want 20 bytes, got 19"):
        parse_address(addr[:-2])
    with pytest.raises(InvalidParams, match="want 20 bytes, got 21"):
        parse_address(addr + "00")
    with pytest.raises(InvalidParams, match="address"):
        parse_address(None)


def test_parse_bool():
    assert parse_bool(True) is True and parse_bool(False) is False
    for bad in (0, 1, "true", None):
        with pytest.raises(InvalidParams):
            parse_bool(bad)


def test_parse_block_tag():
    for tag in ("latest", "pending", "safe", "finalized", "earliest"):
        assert parse_block_tag(tag) == tag
        assert parse_block_ref(tag) == BlockRef(tag=tag)
    assert parse_block_tag("0x10") == 16
    assert parse_block_tag(16) == 16
    assert parse_block_ref("0x0") == BlockRef(number=0)
    for bad in ("Latest", "latestt", "", "16", "0x10000000000000000", -1, None, True, [1]):
        with pytest.raises(InvalidParams):
            parse_block_tag(bad)
    h = "0x" + "11" * 32
    assert parse_block_tag({"blockNumber": "0x5"}) == BlockRef(number=5)
    assert parse_block_tag({"blockNumber": "safe"}) == BlockRef(tag="safe")
    assert parse_block_tag({"blockHash": h}) == BlockRef(hash=b"\x11" * 32)
    assert parse_block_tag({"blockHash": h, "requireCanonical": True}) == BlockRef(hash=b"\x11" * 32, require_canonical=True)
    assert parse_block_tag(h) == BlockRef(hash=b"\x11" * 32)  # bare hash, as geth accepts
    assert parse_block_ref(h) == BlockRef(hash=b"\x11" * 32)
    with pytest.raises(InvalidParams, match="both"):
        parse_block_tag({"blockNumber": "0x1", "blockHash": h})
    with pytest.raises(InvalidParams, match="blockNumber or blockHash"):
        parse_block_tag({})
    with pytest.raises(InvalidParams, match="requireCanonical"):
        parse_block_tag({"blockHash": h, "requireCanonical": "yes"})
    with pytest.raises(InvalidParams, match="blockHash"):
        parse_block_tag({"blockHash": "0x12"})
    with pytest.raises(InvalidParams):
        parse_block_tag({"blockNumber": "0x1"}, allow_eip1898=False)
