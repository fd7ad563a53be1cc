"""JSON-RPC over WebSocket and eth_subscribe, against a real node (``devnet``: uvicorn on a
loopback port; the socket is an upgrade of ``/`` or ``/ws`` on the HTTP port).

Clients: the ``websockets`` package (asyncio client) and ethers v6's WebSocketProvider
(``tests/js/ethers_ws.mjs`` under node, with a timeout). Transactions are sent over HTTP
(``eth_sendTransaction`` from the unlocked dev accounts) unless the test is about the socket.
"""
from __future__ import annotations

import asyncio
import json
import re
import shutil
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector, keccak, to_checksum_address
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from openledger_node.rpc.subscriptions import (
    CLOSE_TOO_SLOW,
    CLOSE_TOO_SLOW_REASON,
    WebSocketLimits,
    WebSocketSession,
    subscription_manager,
)

if TYPE_CHECKING:
    from conftest import RunningNode

REPO = Path(__file__).resolve().parent.parent
NODE_BIN = shutil.which("node")
ETHERS_WS_SCRIPT = REPO / "tests" / "js" / "ethers_ws.mjs"
CHAIN_ID = 1612
SUPPLY = 1_000_000 * 10**18
TRANSFER_TOPIC = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
TRANSFER_SELECTOR = function_signature_to_4byte_selector("transfer(address,uint256)")
SUB_ID = re.compile(r"^0x[1-9a-f][0-9a-f]{0,31}$")  # geth's rpc.NewID: 128 random bits, no leading zeros
HEADER_ONLY = ("transactions", "uncles", "size", "withdrawals")  # block fields a newHeads header lacks
WAIT = 15.0  # seconds to wait for one message

pytestmark = pytest.mark.timeout(180)


def ws_url(devnet: RunningNode, path: str = "") -> str:
    return devnet.url.replace("http://", "ws://", 1) + path


def run(coro: Any, timeout: float = 90.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


class RPCSocket:
    """A JSON-RPC client over one WebSocket: answers by id, notifications kept in order."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._next_id = 0
        self.notifications: deque[tuple[str, Any]] = deque()  # (subscription, result)
        self._answers: dict[Any, Any] = {}

    async def _read(self, timeout: float = WAIT) -> Any:
        message = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        if isinstance(message, dict) and message.get("method") == "eth_subscription":
            assert set(message) == {"jsonrpc", "method", "params"}, message
            assert message["jsonrpc"] == "2.0"
            params = message["params"]
            assert set(params) == {"subscription", "result"}, message
            self.notifications.append((params["subscription"], params["result"]))
            return None
        return message

    async def frame(self, data: str | bytes, timeout: float = WAIT) -> Any:
        """Send a raw frame; the next message that is not a notification."""
        await self.ws.send(data)
        while True:
            message = await self._read(timeout)
            if message is not None:
                return message

    async def request(self, method: str, *params: Any) -> dict[str, Any]:
        self._next_id += 1
        key = self._next_id
        await self.ws.send(json.dumps({"jsonrpc": "2.0", "id": key, "method": method, "params": list(params)}))
        while key not in self._answers:
            message = await self._read()
            if message is not None:
                self._answers[message.get("id")] = message
        return self._answers.pop(key)

    async def call(self, method: str, *params: Any) -> Any:
        answer = await self.request(method, *params)
        assert "error" not in answer, f"{method} failed: {answer['error']}"
        return answer["result"]

    async def subscribe(self, *params: Any) -> str:
        sub_id = await self.call("eth_subscribe", *params)
        assert isinstance(sub_id, str) and SUB_ID.match(sub_id), sub_id
        return sub_id

    async def notification(self, timeout: float = WAIT) -> tuple[str, Any]:
        deadline = time.monotonic() + timeout
        while not self.notifications:
            message = await self._read(max(0.01, deadline - time.monotonic()))
            assert message is None, f"unexpected message {message}"
        return self.notifications.popleft()

    async def until(self, predicate: Any, timeout: float = WAIT) -> list[tuple[str, Any]]:
        """Notifications up to and including the first one ``predicate`` accepts."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            item = await self.notification(max(0.01, deadline - time.monotonic()))
            seen.append(item)
            if predicate(*item):
                return seen

    async def quiet(self, seconds: float = 0.3) -> list[tuple[str, Any]]:
        """Whatever arrives within ``seconds`` (normally nothing)."""
        out = list(self.notifications)
        self.notifications.clear()
        try:
            while True:
                message = await self._read(seconds)
                assert message is None, f"unexpected message {message}"
                out.extend(self.notifications)
                self.notifications.clear()
        except (asyncio.TimeoutError, TimeoutError):
            return out


def send_value(devnet: RunningNode, sender: str, to: str, value: int = 1) -> dict[str, Any]:
    tx_hash = devnet.rpc("eth_sendTransaction", {"from": sender, "to": to, "value": hex(value)})
    return devnet.wait_receipt(tx_hash)


def deploy_token(devnet: RunningNode, deployer: str, bytecode: str) -> str:
    data = bytecode + encode(["uint256"], [SUPPLY]).hex()
    receipt = devnet.wait_receipt(devnet.rpc("eth_sendTransaction", {"from": deployer, "data": data}))
    assert receipt["status"] == "0x1"
    return receipt["contractAddress"]


def send_transfer(devnet: RunningNode, sender: str, token: str, to: str, amount: int) -> str:
    data = "0x" + (TRANSFER_SELECTOR + encode(["address", "uint256"], [to, amount])).hex()
    return devnet.rpc("eth_sendTransaction", {"from": sender, "to": token, "data": data})


def topic_of(address: str) -> str:
    return "0x" + "00" * 12 + address[2:].lower()


@pytest.fixture(scope="module")
def token_artifact() -> dict[str, Any]:
    if NODE_BIN is None or not (REPO / "node_modules" / "solc").is_dir():
        pytest.fail("node / npm packages not installed: run scripts/setup.sh")
    from openledger_node.contracts import contract_artifact

    return contract_artifact("TestToken")


# --------------------------------------------------------------------------------- transport


def test_calls_over_websocket_on_root_and_ws_path(devnet: RunningNode) -> None:
    http_block = devnet.rpc("eth_blockNumber")

    async def main() -> None:
        for path in ("", "/ws", "/"):
            async with connect(ws_url(devnet, path)) as ws:
                sock = RPCSocket(ws)
                assert await sock.call("eth_blockNumber") == http_block
                assert await sock.call("eth_chainId") == hex(CHAIN_ID)
                # A batch, answered as one array frame, in order.
                answer = await sock.frame(json.dumps([
                    {"jsonrpc": "2.0", "id": "a", "method": "eth_chainId"},
                    {"jsonrpc": "2.0", "method": "eth_blockNumber"},  # a notification: no answer
                    {"jsonrpc": "2.0", "id": 7, "method": "eth_nope"},
                    {"jsonrpc": "2.0", "id": 8, "method": "net_version"},
                ]))  # fmt: skip
                assert [a["id"] for a in answer] == ["a", 7, 8]
                assert answer[0]["result"] == hex(CHAIN_ID)
                assert answer[1]["error"]["code"] == -32601
                assert answer[2]["result"] == str(CHAIN_ID)

    run(main())


def test_malformed_and_binary_frames_get_jsonrpc_errors(devnet: RunningNode) -> None:
    async def main() -> None:
        async with connect(ws_url(devnet)) as ws:
            sock = RPCSocket(ws)
            for frame, code in [
                ("{not json", -32700),
                ("", -32700),
                ("[" * 300 + "]" * 300, -32700),
                ("[]", -32600),
                ("42", -32600),
                ('{"jsonrpc":"1.0","id":1,"method":"eth_chainId"}', -32600),
                ('{"jsonrpc":"2.0","id":1,"method":5}', -32600),
                (b"\xff\xfe\x00garbage", -32700),  # binary, not JSON
                (b"", -32700),
            ]:
                answer = await sock.frame(frame)
                assert answer["jsonrpc"] == "2.0", answer
                assert answer["error"]["code"] == code, (frame, answer)
            # Binary frames holding JSON are requests, as geth reads them; the answer is text.
            await ws.send(b'{"jsonrpc":"2.0","id":3,"method":"eth_chainId"}')
            raw = await asyncio.wait_for(ws.recv(), WAIT)
            assert isinstance(raw, str)
            assert json.loads(raw) == {"jsonrpc": "2.0", "id": 3, "result": hex(CHAIN_ID)}
            # Bad subscription requests.
            for params, code, message in [
                ([], -32602, "expected subscription name as first argument"),
                ([5], -32602, "expected subscription name as first argument"),
                (["nope"], -32601, 'no "nope" subscription in eth namespace'),
                (["logs", "0x1"], -32602, None),
                (["logs", {"address": "0x12"}], -32602, None),
                (["logs", {"blockHash": "0x" + "11" * 32}], -32602, None),
                (["newHeads", {}], -32602, None),
                (["newPendingTransactions", "yes"], -32602, None),
            ]:
                answer = await sock.request("eth_subscribe", *params)
                assert answer["error"]["code"] == code, (params, answer)
                if message is not None:
                    assert answer["error"]["message"] == message
            answer = await sock.request("eth_unsubscribe", "0x1234")
            assert answer["error"] == {"code": -32000, "message": "subscription not found"}
            answer = await sock.request("eth_unsubscribe", 5)
            assert answer["error"]["code"] == -32602
            # Still serving after all that.
            assert await sock.call("eth_chainId") == hex(CHAIN_ID)
            assert subscription_manager(devnet.node).count() == 0

    run(main())


def test_subscribe_over_http_is_not_supported(devnet: RunningNode) -> None:
    for method, params in [("eth_subscribe", ["newHeads"]), ("eth_unsubscribe", ["0x1"])]:
        body = devnet.request(method, *params)
        assert body["error"] == {"code": -32601, "message": "notifications not supported"}, body


# ------------------------------------------------------------------------------- newHeads


def test_new_heads(devnet: RunningNode, dev_accounts: list[tuple[str, str]]) -> None:
    (sender, _), (recipient, _) = dev_accounts[0], dev_accounts[1]

    async def main() -> None:
        async with connect(ws_url(devnet)) as ws:
            sock = RPCSocket(ws)
            sub = await sock.subscribe("newHeads")
            assert await sock.quiet(0.2) == []  # nothing before a block is sealed
            receipts = [send_value(devnet, sender, recipient) for _ in range(2)]
            for receipt in receipts:
                sub_id, header = await sock.notification()
                assert sub_id == sub
                assert header["number"] == receipt["blockNumber"]
                assert header["hash"] == receipt["blockHash"]
                block = devnet.rpc("eth_getBlockByNumber", receipt["blockNumber"], False)
                assert header == {k: v for k, v in block.items() if k not in HEADER_ONLY}
                assert list(header) == sorted(header)
            # Over the socket too: the transaction is sent on the subscribed connection.
            tx_hash = await sock.call("eth_sendTransaction", {"from": sender, "to": recipient, "value": "0x2"})
            sub_id, header = await sock.notification()
            receipt = devnet.wait_receipt(tx_hash)
            assert (sub_id, header["hash"]) == (sub, receipt["blockHash"])

    run(main())


# ------------------------------------------------------------------------------------- logs


def test_logs_subscription_filters_by_address_and_topics(
    devnet: RunningNode, dev_accounts: list[tuple[str, str]], token_artifact: dict[str, Any]
) -> None:
    (deployer, _), (alice, _), (bob, _), (other, _) = dev_accounts[:4]
    token = deploy_token(devnet, deployer, token_artifact["bytecode"])
    decoy = deploy_token(devnet, deployer, token_artifact["bytecode"])  # same event, other address

    async def main() -> None:
        async with connect(ws_url(devnet)) as ws:
            sock = RPCSocket(ws)
            to_alice = await sock.subscribe(
                "logs", {"address": token, "topics": [TRANSFER_TOPIC, None, topic_of(alice)]}
            )
            from_deployer = await sock.subscribe("logs", {"address": [token], "topics": [[TRANSFER_TOPIC], topic_of(deployer)]})
            any_to_alice = await sock.subscribe("logs", {"topics": [None, None, topic_of(alice)]})
            unmatched = await sock.subscribe("logs", {"address": token, "topics": [TRANSFER_TOPIC, topic_of(other)]})
            every_log = await sock.subscribe("logs")
            heads = await sock.subscribe("newHeads")

            sent = [
                send_transfer(devnet, deployer, token, alice, 5),
                send_transfer(devnet, deployer, token, bob, 6),
                send_transfer(devnet, deployer, decoy, alice, 7),
            ]
            receipts = [devnet.wait_receipt(h) for h in sent]
            assert all(r["status"] == "0x1" for r in receipts)
            # Logs of a block precede the next block's header on the connection: a sentinel
            # block after the transfers bounds everything the transfers can produce.
            sentinel = send_value(devnet, deployer, other)
            seen = await sock.until(lambda s, r: s == heads and r["hash"] == sentinel["blockHash"])
            by_sub: dict[str, list[Any]] = {}
            for sub_id, result in seen:
                by_sub.setdefault(sub_id, []).append(result)

            logs = {h: devnet.wait_receipt(h)["logs"][0] for h in sent}
            transfer_alice, transfer_bob, decoy_alice = (logs[h] for h in sent)
            # Each notification is the very log eth_getLogs / the receipt report.
            assert by_sub[to_alice] == [transfer_alice]
            assert by_sub[from_deployer] == [transfer_alice, transfer_bob]
            assert by_sub[any_to_alice] == [transfer_alice, decoy_alice]
            assert by_sub[every_log] == [transfer_alice, transfer_bob, decoy_alice]
            assert unmatched not in by_sub
            first = int(receipts[0]["blockNumber"], 16)
            queried = devnet.rpc("eth_getLogs", {"fromBlock": hex(first), "address": token, "topics": [TRANSFER_TOPIC, None, topic_of(alice)]})
            assert queried == by_sub[to_alice]
            assert [h["number"] for h in by_sub[heads]] == sorted({r["blockNumber"] for r in receipts} | {sentinel["blockNumber"]}, key=lambda n: int(n, 16))

    run(main())


# ---------------------------------------------------------------------- pending transactions


def test_new_pending_transactions(devnet: RunningNode, dev_accounts: list[tuple[str, str]]) -> None:
    (sender, _), (recipient, _) = dev_accounts[5], dev_accounts[6]

    async def main() -> None:
        async with connect(ws_url(devnet)) as ws:
            sock = RPCSocket(ws)
            hashes = await sock.subscribe("newPendingTransactions")
            full = await sock.subscribe("newPendingTransactions", True)
            explicit_false = await sock.subscribe("newPendingTransactions", False)
            tx_hash = devnet.rpc("eth_sendTransaction", {"from": sender, "to": recipient, "value": "0x7"})
            got = {}
            for _ in range(3):
                sub_id, result = await sock.notification()
                got[sub_id] = result
            assert got[hashes] == tx_hash
            assert got[explicit_false] == tx_hash
            tx = got[full]
            assert tx["hash"] == tx_hash
            assert tx["from"] == sender.lower()
            assert tx["to"] == recipient.lower()
            assert tx["value"] == "0x7"
            assert tx["blockHash"] is None and tx["blockNumber"] is None
            devnet.wait_receipt(tx_hash)
            assert await sock.quiet(0.2) == []  # one notification per subscription and transaction

    run(main())


# ------------------------------------------------------------------- unsubscribe, closing


def test_unsubscribe_stops_notifications(devnet: RunningNode, dev_accounts: list[tuple[str, str]]) -> None:
    (sender, _), (recipient, _) = dev_accounts[7], dev_accounts[8]
    manager = subscription_manager(devnet.node)

    async def main() -> None:
        async with connect(ws_url(devnet)) as ws, connect(ws_url(devnet, "/ws")) as other_ws:
            sock, other = RPCSocket(ws), RPCSocket(other_ws)
            dropped = await sock.subscribe("newHeads")
            kept = await sock.subscribe("newHeads")
            pending = await sock.subscribe("newPendingTransactions")
            assert len({dropped, kept, pending}) == 3
            assert manager.count() == 3
            # Subscriptions are per connection: another one cannot cancel them.
            answer = await other.request("eth_unsubscribe", dropped)
            assert answer["error"] == {"code": -32000, "message": "subscription not found"}
            assert await sock.call("eth_unsubscribe", dropped) is True
            assert await sock.call("eth_unsubscribe", pending.upper().replace("0X", "0x")) is True
            assert manager.count() == 1
            answer = await sock.request("eth_unsubscribe", dropped)
            assert answer["error"] == {"code": -32000, "message": "subscription not found"}

            receipt = send_value(devnet, sender, recipient)
            got = await sock.until(lambda s, r: r["hash"] == receipt["blockHash"])
            assert got == [(kept, got[-1][1])]
            assert await sock.quiet(0.3) == []
            assert await sock.call("eth_unsubscribe", kept) is True
            assert manager.count() == 0
            send_value(devnet, sender, recipient)
            assert await sock.quiet(0.5) == []

    run(main())


def wait_count(manager: Any, expected: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while manager.count() != expected:
        assert time.monotonic() < deadline, f"{manager.count()} subscriptions, expected {expected}"
        time.sleep(0.02)


def test_closing_the_socket_removes_its_subscriptions(devnet: RunningNode, dev_accounts: list[tuple[str, str]]) -> None:
    (sender, _), (recipient, _) = dev_accounts[9], dev_accounts[0]
    manager = subscription_manager(devnet.node)
    assert manager.count() == 0

    async def main() -> None:
        async with connect(ws_url(devnet)) as keep_ws:
            keeper = RPCSocket(keep_ws)
            kept = await keeper.subscribe("newHeads")

            # A clean close.
            async with connect(ws_url(devnet)) as ws:
                sock = RPCSocket(ws)
                await sock.subscribe("newHeads")
                await sock.subscribe("logs", {"topics": [TRANSFER_TOPIC]})
                await sock.subscribe("newPendingTransactions", True)
                assert manager.count() == 4
                assert manager.connections() == 2
            await asyncio.to_thread(wait_count, manager, 1)

            # A connection that vanishes without a close frame.
            ws = await connect(ws_url(devnet, "/ws"))
            sock = RPCSocket(ws)
            await sock.subscribe("newHeads")
            await sock.subscribe("newPendingTransactions")
            assert manager.count() == 3
            ws.transport.abort()
            await asyncio.to_thread(wait_count, manager, 1)
            assert manager.count(kind="newHeads") == 1
            assert manager.connections() == 1

            # The survivor still gets its notifications.
            receipt = await asyncio.to_thread(send_value, devnet, sender, recipient)
            got = await keeper.until(lambda s, r: r["hash"] == receipt["blockHash"])
            assert {s for s, _ in got} == {kept}
        await asyncio.to_thread(wait_count, manager, 0)
        assert manager.connections() == 0

    run(main())


def test_node_stops_promptly_with_open_sockets(tmp_path: Path) -> None:
    """Shutdown closes WebSocket clients with 1012 (service restart) and does not wait on them."""
    from conftest import start_node, stop_node

    node, thread = start_node(tmp_path / "data", dev=True)
    url = node.rpc.url.replace("http://", "ws://", 1)

    async def main() -> None:
        async with connect(url) as ws, connect(url + "/ws") as idle:
            await RPCSocket(ws).subscribe("newHeads")
            t0 = time.monotonic()
            await asyncio.to_thread(stop_node, node, thread)
            assert time.monotonic() - t0 < 5
            for client in (ws, idle):
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(client.recv(), WAIT)
                assert client.close_code == 1012

    try:
        run(main())
    finally:
        if thread.is_alive():
            stop_node(node, thread)


# ------------------------------------------------------------------------- slow consumers


def test_overflowing_connection_is_closed_and_blocks_keep_coming(
    devnet: RunningNode, dev_accounts: list[tuple[str, str]]
) -> None:
    """A connection whose outgoing queue overflows is closed with 1008; the node goes on."""
    (sender, _), (recipient, _) = dev_accounts[1], dev_accounts[2]
    manager = subscription_manager(devnet.node)
    devnet.node.rpc.app.state.ws_limits.max_queue_messages = 4

    async def main() -> None:
        async with connect(ws_url(devnet)) as ws, connect(ws_url(devnet)) as idle_ws:
            sock = RPCSocket(ws)
            await sock.subscribe("newPendingTransactions", True)
            idle = RPCSocket(idle_ws)  # no subscription: not affected
            assert manager.count() == 1
            # One HTTP batch: the pool accepts all 12 within one event-loop turn, so 12
            # notifications are queued for the socket before its writer gets to run.
            batch = [
                {"jsonrpc": "2.0", "id": i, "method": "eth_sendTransaction",
                 "params": [{"from": sender, "to": recipient, "value": hex(i + 1)}]}
                for i in range(12)
            ]  # fmt: skip
            answers = (await asyncio.to_thread(devnet.client.post, devnet.url, json=batch)).json()
            hashes = [a["result"] for a in answers]
            with pytest.raises(ConnectionClosed):
                while True:
                    await sock.notification()
            assert ws.close_code == CLOSE_TOO_SLOW
            assert ws.close_reason == CLOSE_TOO_SLOW_REASON
            assert len(sock.notifications) < 4
            assert manager.count() == 0
            # Blocks were sealed regardless, and other connections are served.
            receipts = [await asyncio.to_thread(devnet.wait_receipt, h) for h in hashes]
            assert all(r["status"] == "0x1" for r in receipts)
            assert await idle.call("eth_blockNumber") == devnet.rpc("eth_blockNumber")

    run(main())


class _StalledClient:
    """An ASGI WebSocket whose client never reads: every send after the first blocks."""

    client = None
    headers: dict[str, str] = {}

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.closed_with: tuple[int, str] | None = None
        self._incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._stall = asyncio.Event()

    async def accept(self) -> None:
        pass

    async def receive(self) -> dict[str, Any]:
        return await self._incoming.get()

    async def send(self, message: dict[str, Any]) -> None:
        if self.sent:
            await self._stall.wait()  # never set
        self.sent.append(message["text"])

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed_with = (code, reason or "")


def test_stalled_client_is_dropped_without_blocking_the_producer() -> None:
    """Unit level: notify() never waits; a client that reads nothing overflows its bounded
    queue, loses its subscriptions and gets close code 1008."""
    from openledger_node.rpc.jsonrpc import Dispatcher

    async def main() -> None:
        client = _StalledClient()
        limits = WebSocketLimits(max_queue_messages=100, max_queue_bytes=1 << 20)
        session = WebSocketSession(client, Dispatcher(), limits)  # type: ignore[arg-type]
        dropped: list[WebSocketSession] = []
        session.add_close_callback(dropped.append)
        serving = asyncio.create_task(session.serve())
        await asyncio.sleep(0.01)
        session.notify("0xabc", b'"first"')
        await asyncio.sleep(0.01)  # the writer sends it ...
        assert client.sent == ['{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":"0xabc","result":"first"}}']
        session.notify("0xabc", b'"second"')
        await asyncio.sleep(0.01)  # ... and blocks writing the second one
        assert session.queued == 0 and len(client.sent) == 1
        t0 = time.perf_counter()
        for i in range(101):
            session.notify("0xabc", b'"%d"' % i)
        assert time.perf_counter() - t0 < 0.1
        assert session.closed and dropped == [session]
        assert session.queued == 0  # what was queued is released at once
        await asyncio.wait_for(serving, 5)
        assert client.closed_with == (CLOSE_TOO_SLOW, CLOSE_TOO_SLOW_REASON)
        session.notify("0xabc", b'"late"')  # ignored after close
        assert session.queued == 0

        # The byte bound works the same way.
        client = _StalledClient()
        session = WebSocketSession(client, Dispatcher(), WebSocketLimits(max_queue_bytes=4096))  # type: ignore[arg-type]
        serving = asyncio.create_task(session.serve())
        await asyncio.sleep(0.01)
        for _ in range(10):
            session.notify("0xabc", b'"' + b"x" * 1000 + b'"')
        await asyncio.wait_for(serving, 5)
        assert client.closed_with == (CLOSE_TOO_SLOW, CLOSE_TOO_SLOW_REASON)

    run(main())


# ---------------------------------------------------------------------------------- ethers


def test_ethers_websocket_provider_contract_events(
    devnet: RunningNode, dev_accounts: list[tuple[str, str]], token_artifact: dict[str, Any], tmp_path: Path
) -> None:
    from test_clients import run_client

    (sender, sender_key), (token_recipient, _) = dev_accounts[3], dev_accounts[4]
    amount = 4_321 * 10**18
    config = {
        "url": ws_url(devnet),
        "chainId": CHAIN_ID,
        "privateKey": sender_key,
        "abi": token_artifact["abi"],
        "bytecode": token_artifact["bytecode"],
        "supply": str(SUPPLY),
        "tokenRecipient": token_recipient,
        "tokenAmount": str(amount),
        "timeoutMs": 60_000,
    }
    config_path = tmp_path / "ethers_ws_config.json"
    config_path.write_text(json.dumps(config))
    stdout = run_client([NODE_BIN, str(ETHERS_WS_SCRIPT), str(config_path)], cwd=REPO)
    assert "@TODO" not in stdout, stdout  # ethers prints swallowed errors that way
    (line,) = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
    out = json.loads(line.removeprefix("RESULT "))
    assert out["rpcErrors"] == [], out["rpcErrors"]
    assert int(out["chainId"]) == CHAIN_ID
    assert out["sender"] == sender

    # Subscriptions, not polling filters.
    calls = out["rpcCalls"]
    assert calls.get("eth_subscribe", 0) >= 3, calls
    assert "eth_newFilter" not in calls and "eth_getFilterChanges" not in calls, calls
    kinds = {params[0] for params, _ in out["subscriptions"]}
    assert kinds == {"newHeads", "newPendingTransactions", "logs"}, out["subscriptions"]
    ((logs_params, logs_id),) = [(p, i) for p, i in out["subscriptions"] if p[0] == "logs"]
    assert logs_id == out["logsSubscriptionId"] and SUB_ID.match(logs_id)
    address = logs_params[1]["address"]
    assert [a.lower() for a in (address if isinstance(address, list) else [address])] == [out["deploy"]["address"].lower()]
    assert logs_params[1]["topics"][0] == TRANSFER_TOPIC
    # removeAllListeners: every subscription cancelled, each exactly once.
    assert sorted(out["unsubscribed"]) == sorted([i, True] for _, i in out["subscriptions"]), out

    # contract.on("Transfer") got the transfer, and only it (the mint predates the listener).
    d, t, ev = out["deploy"], out["tokenTransfer"], out["event"]
    assert d["status"] == 1 and t["status"] == 1
    assert (ev["from"], ev["to"], int(ev["value"])) == (sender, token_recipient, amount)
    assert ev["transactionHash"] == t["hash"]
    assert (ev["blockNumber"], ev["blockHash"]) == (t["blockNumber"], t["blockHash"])
    assert ev["address"] == d["address"] == to_checksum_address(d["address"])
    assert ev["logIndex"] == 0
    assert int(out["tokenBalance"]) == amount
    # "block" (newHeads) and "pending" (newPendingTransactions) events.
    assert t["blockNumber"] in out["blocks"], out["blocks"]
    assert t["hash"] in out["pending"], out["pending"]
    assert out["finalBlock"] >= t["blockNumber"]

    # The provider's socket is closed: the node holds none of its subscriptions.
    wait_count(subscription_manager(devnet.node), 0)
