"""JSON-RPC over WebSocket, and ``eth_subscribe`` / ``eth_unsubscribe`` as geth serves them.

Transport (:func:`serve_websocket`, mounted by ``rpc.server`` on ``/`` and ``/ws``): every
frame, text or binary (geth reads both), is one JSON-RPC request or batch for the same
:class:`~.jsonrpc.Dispatcher` as HTTP; the answer goes back as one text frame. Frames are
handled one at a time, in order. A malformed frame gets the JSON-RPC error HTTP would give
(-32700 parse error, -32600 invalid request, ...), and the connection stays open.

Subscriptions (``eth_subscribe``; per connection, gone when it closes):

* ``newHeads``: the header of each sealed block (``eth_getBlockByNumber`` without
  ``transactions``, ``uncles``, ``size`` and ``withdrawals``);
* ``logs`` with an optional ``{address, topics}`` filter (the same
  :class:`~.filters.LogCriteria` as ``eth_getLogs``): one notification per matching log,
  in chain order;
* ``newPendingTransactions``: hashes of transactions as the pool accepts them, or whole
  transaction objects with ``true`` as the second parameter (geth 1.11+).

A notification is ``{"jsonrpc":"2.0","method":"eth_subscription","params":
{"subscription": id, "result": ...}}``; ids are geth's (``0x`` + 128 random bits, hex).
The subscription's answer is always sent before its first notification.

Block production never waits on a client: the sequencer's and pool's listeners only append
pre-encoded results to each connection's outgoing queue, and one task per connection writes
them out. The queue is bounded (:class:`WebSocketLimits`); a client too slow to keep up with
its notifications is disconnected with close code 1008 (:data:`CLOSE_TOO_SLOW`) instead of
letting the queue grow. Answers to requests wait for room instead (back-pressure on the
client's own requests).

Over HTTP ``eth_subscribe`` and ``eth_unsubscribe`` answer geth's -32601 "notifications not
supported".
"""
from __future__ import annotations

import asyncio
import contextvars
import json
import logging
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable

from eth.abc import SignedTransactionAPI

from .encoding import parse_bool, to_data
from .filters import LogCriteria, _new_id, _normalize_id
from .jsonrpc import METHOD_NOT_FOUND, Dispatcher, InvalidParams, RPCError, ServerError
from .views import header_json, transaction_json

if TYPE_CHECKING:
    from starlette.websockets import WebSocket

    from ..chain.chain import SealedBlock
    from ..node import Node

log = logging.getLogger("openledger.rpc.subscriptions")

NEW_HEADS, LOGS, PENDING_TXS = "newHeads", "logs", "newPendingTransactions"
KINDS = (NEW_HEADS, LOGS, PENDING_TXS)

CLOSE_TOO_SLOW = 1008  # RFC 6455 "policy violation"
CLOSE_TOO_SLOW_REASON = "notification queue full: client too slow"
CLOSE_ORIGIN_REFUSED = 1008  # before the handshake completes, uvicorn answers it as HTTP 403

_FRAME_OVERHEAD = 96  # bytes a queued entry costs beyond its encoded result (bookkeeping, envelope)
_NOTIFICATION_HEAD = b'{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":"'


class NotificationsUnsupported(RPCError):
    """geth's answer to ``eth_subscribe`` on a transport without notifications (HTTP)."""

    def __init__(self) -> None:
        super().__init__(METHOD_NOT_FOUND, "notifications not supported")


@dataclass
class WebSocketLimits:
    """Per-connection bounds on what waits to be written to a client.

    ``max_queue_messages`` / ``max_queue_bytes``: queued frames (answers and notifications)
    and their encoded size. A notification that does not fit closes the connection with
    :data:`CLOSE_TOO_SLOW`; an answer waits until there is room. ``close_timeout``: seconds
    to wait for the close frame to go out (a client that reads nothing blocks it) before
    the connection is dropped without one.
    """

    max_queue_messages: int = 20_000
    max_queue_bytes: int = 64 * 1024 * 1024
    close_timeout: float = 10.0


_current_session: contextvars.ContextVar["WebSocketSession | None"] = contextvars.ContextVar(
    "openledger_ws_session", default=None
)


def current_session() -> "WebSocketSession | None":
    """The WebSocket connection whose request is being handled (None over HTTP)."""
    return _current_session.get()


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


class WebSocketSession:
    """One WebSocket connection: reads requests, writes answers and notifications in order."""

    def __init__(self, websocket: "WebSocket", dispatcher: Dispatcher, limits: WebSocketLimits) -> None:
        self.websocket = websocket
        self.dispatcher = dispatcher
        self.limits = limits
        self.closed = False
        self.close_code: int | None = None  # set when the server closes the connection itself
        self.close_reason = ""
        self._queue: deque[tuple[str | None, bytes]] = deque()  # (subscription id or None, body)
        self._queued_bytes = 0
        self._wake = asyncio.Event()  # the sender: something to write
        self._room = asyncio.Event()  # the reader: the queue shrank (or the session closed)
        self._on_close: list[Callable[["WebSocketSession"], None]] = []
        self._activate: list[Any] = []  # subscriptions made by the request being handled
        self._sender: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    async def serve(self) -> None:
        await self.websocket.accept()
        self._sender = asyncio.create_task(self._send_loop(), name="ws-send")
        reader = asyncio.create_task(self._read_loop(), name="ws-read")
        tasks = (self._sender, reader)
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._close_session()
            for task in tasks:
                task.cancel()
            for task in tasks:
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                except Exception:
                    log.exception("WebSocket %s task failed", task.get_name())
            if self.close_code is not None:
                try:
                    await asyncio.wait_for(
                        self.websocket.close(self.close_code, self.close_reason), self.limits.close_timeout
                    )
                except Exception:  # the client is gone, or reads nothing: uvicorn drops the socket
                    pass

    def add_close_callback(self, callback: Callable[["WebSocketSession"], None]) -> None:
        """``callback(session)`` runs once, when the connection closes (at once if it has)."""
        if self.closed:
            callback(self)
        else:
            self._on_close.append(callback)

    def fail(self, code: int, reason: str) -> None:
        """Close the connection from the server side: nothing more is queued or sent, its
        subscriptions go now, and the close frame follows."""
        if self.closed:
            return
        self.close_code, self.close_reason = code, reason
        log.warning("closing WebSocket connection %s: %s", self._peer(), reason)
        self._close_session()
        if self._sender is not None:
            self._sender.cancel()  # may be blocked writing to a client that reads nothing

    def _close_session(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._queue.clear()
        self._queued_bytes = 0
        self._room.set()
        self._wake.set()
        callbacks, self._on_close = self._on_close, []
        for callback in callbacks:
            try:
                callback(self)
            except Exception:
                log.exception("WebSocket close callback failed")

    def _peer(self) -> str:
        client = self.websocket.client
        return f"{client.host}:{client.port}" if client else "?"

    # -- reading -----------------------------------------------------------------------------
    async def _read_loop(self) -> None:
        _current_session.set(self)  # this task's context: eth_subscribe finds its connection
        receive = self.websocket.receive
        while not self.closed:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            reply = await self.dispatcher.handle_bytes(data)
            if reply is not None:
                await self._reply(reply)
            if self._activate:  # only now, so the answer precedes the first notification
                for sub in self._activate:
                    sub.active = True
                self._activate.clear()

    # -- writing -----------------------------------------------------------------------------
    def _full(self, size: int) -> bool:
        queue = self._queue
        return len(queue) >= self.limits.max_queue_messages or (
            bool(queue) and self._queued_bytes + size > self.limits.max_queue_bytes
        )

    async def _reply(self, body: bytes) -> None:
        size = len(body) + _FRAME_OVERHEAD
        while not self.closed and self._full(size):
            self._room.clear()
            await self._room.wait()
        if not self.closed:
            self._push(None, body, size)

    def notify(self, sub_id: str, result: bytes) -> None:
        """Queue a notification (``result``: the encoded JSON result). Never blocks; a queue
        that is full closes the connection."""
        if self.closed:
            return
        size = len(result) + len(sub_id) + _FRAME_OVERHEAD
        if self._full(size):
            self.fail(CLOSE_TOO_SLOW, CLOSE_TOO_SLOW_REASON)
            return
        self._push(sub_id, result, size)

    def _push(self, sub_id: str | None, body: bytes, size: int) -> None:
        self._queue.append((sub_id, body))
        self._queued_bytes += size
        self._wake.set()

    @property
    def queued(self) -> int:
        """Frames waiting to be written."""
        return len(self._queue)

    async def _send_loop(self) -> None:
        queue = self._queue
        send = self.websocket.send
        while True:
            if not queue:
                if self.closed:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            sub_id, body = queue.popleft()
            if sub_id is None:
                frame = body
                self._queued_bytes -= len(body) + _FRAME_OVERHEAD
            else:
                frame = b"".join((_NOTIFICATION_HEAD, sub_id.encode(), b'","result":', body, b"}}"))
                self._queued_bytes -= len(body) + len(sub_id) + _FRAME_OVERHEAD
            self._room.set()
            try:
                await send({"type": "websocket.send", "text": frame.decode()})
            except asyncio.CancelledError:
                raise
            except Exception:  # the client went away; the reader sees the disconnect too
                return


async def serve_websocket(
    websocket: "WebSocket",
    dispatcher: Dispatcher,
    limits: WebSocketLimits | None = None,
    *,
    allowed_origins: Iterable[str] | None = None,
) -> None:
    """Serve one WebSocket connection until it closes (the ASGI route's body).

    ``allowed_origins``: browser origins allowed to connect (like geth's ``--ws.origins``);
    None or ``"*"`` allows all. A request without an Origin header (not a browser) is
    always allowed.
    """
    if allowed_origins is not None:
        allowed = set(allowed_origins)
        origin = websocket.headers.get("origin")
        if "*" not in allowed and origin is not None and origin not in allowed:
            await websocket.close(CLOSE_ORIGIN_REFUSED)  # before accept: HTTP 403
            return
    await WebSocketSession(websocket, dispatcher, limits or WebSocketLimits()).serve()


# ------------------------------------------------------------------------------ subscriptions


@dataclass(eq=False)
class Subscription:
    id: str
    kind: str
    session: WebSocketSession
    criteria: LogCriteria | None = None  # LOGS
    full_tx: bool = False  # PENDING_TXS
    active: bool = False  # set once the eth_subscribe answer is queued


def _header_result(header: Any) -> dict[str, Any]:
    return dict(sorted(header_json(header).items()))


class SubscriptionManager:
    """Every live subscription of a node, fed by the sequencer's and the pool's listeners.

    Runs on the node's event loop; the listeners only encode each result once and hand it
    to the subscribers' connections (:meth:`WebSocketSession.notify`).
    """

    def __init__(self, node: "Node") -> None:
        self._reader = node.reader
        self._subs: dict[str, Subscription] = {}
        self._by_kind: dict[str, dict[str, Subscription]] = {kind: {} for kind in KINDS}
        self._by_session: dict[WebSocketSession, dict[str, Subscription]] = {}
        node.sequencer.listeners.append(self._on_block)
        node.pool.listeners.append(self._on_pending_tx)

    # -- introspection -----------------------------------------------------------------------
    def count(self, kind: str | None = None) -> int:
        """Live subscriptions (of one kind)."""
        return len(self._subs) if kind is None else len(self._by_kind[kind])

    def __len__(self) -> int:
        return len(self._subs)

    def connections(self) -> int:
        """Connections holding at least one subscription."""
        return len(self._by_session)

    # -- RPC ---------------------------------------------------------------------------------
    def subscribe(self, name: Any = None, options: Any = None) -> str:
        """``eth_subscribe``: ``["newHeads"]``, ``["logs", filter?]``,
        ``["newPendingTransactions", fullTx?]``."""
        session = _current_session.get()
        if session is None:
            raise NotificationsUnsupported()
        if not isinstance(name, str):
            raise InvalidParams("expected subscription name as first argument")
        if session.closed:
            raise ServerError("connection is closing")
        sub = Subscription("", name, session)
        if name == NEW_HEADS:
            if options is not None:
                raise InvalidParams("too many arguments, want at most 1")
        elif name == LOGS:
            sub.criteria = LogCriteria.parse({} if options is None else options)
            if sub.criteria.block_hash is not None:
                raise InvalidParams("blockHash is not supported by logs subscriptions")
        elif name == PENDING_TXS:
            sub.full_tx = parse_bool(False if options is None else options, name="fullTx")
        else:
            raise RPCError(METHOD_NOT_FOUND, f'no "{name}" subscription in eth namespace')
        sub.id = _new_id()
        while sub.id in self._subs:
            sub.id = _new_id()
        self._subs[sub.id] = sub
        self._by_kind[name][sub.id] = sub
        owned = self._by_session.get(session)
        if owned is None:
            owned = self._by_session[session] = {}
            session.add_close_callback(self._drop_session)
        owned[sub.id] = sub
        session._activate.append(sub)
        return sub.id

    def unsubscribe(self, sub_id: Any) -> bool:
        """``eth_unsubscribe``: true, or geth's -32000 "subscription not found" for an id this
        connection does not hold."""
        session = _current_session.get()
        if session is None:
            raise NotificationsUnsupported()
        if not isinstance(sub_id, str):
            raise InvalidParams("invalid subscription id: expected a string")
        sub = self._subs.get(_normalize_id(sub_id))
        if sub is None or sub.session is not session:
            raise ServerError("subscription not found")
        self._remove(sub)
        return True

    def _remove(self, sub: Subscription) -> None:
        self._subs.pop(sub.id, None)
        self._by_kind[sub.kind].pop(sub.id, None)
        owned = self._by_session.get(sub.session)
        if owned is not None:
            owned.pop(sub.id, None)

    def _drop_session(self, session: WebSocketSession) -> None:
        for sub in list(self._by_session.pop(session, {}).values()):
            self._remove(sub)

    # -- hooks -------------------------------------------------------------------------------
    def _on_block(self, sealed: "SealedBlock") -> None:
        """Sequencer listener (after ``ChainReader.remember`` cached the block)."""
        if not self._subs:
            return
        header = sealed.block.header
        heads = [sub for sub in self._by_kind[NEW_HEADS].values() if sub.active]
        if heads:
            body = _dumps(_header_result(header))
            for sub in heads:
                sub.session.notify(sub.id, body)
        if not header.bloom or not self._by_kind[LOGS]:
            return
        number = header.block_number
        wanted = [
            sub for sub in self._by_kind[LOGS].values()
            if sub.active and sub.criteria.covers(number) and sub.criteria.bloom_may_match(header.bloom)
        ]  # fmt: skip
        if not wanted:
            return
        entries = [entry for receipt in self._reader.block_data(header).receipts_json() for entry in receipt["logs"]]
        encoded: dict[int, bytes] = {}
        for sub in wanted:
            criteria = sub.criteria
            for index, entry in enumerate(entries):
                if sub.session.closed:
                    break
                if criteria.matches(entry):
                    body = encoded.get(index)
                    if body is None:
                        body = encoded[index] = _dumps(entry)
                    sub.session.notify(sub.id, body)

    def _on_pending_tx(self, tx: SignedTransactionAPI) -> None:
        """Pool listener; never raises."""
        if not self._by_kind[PENDING_TXS]:
            return
        try:
            subs = [sub for sub in self._by_kind[PENDING_TXS].values() if sub.active]
            hash_body = full_body = None
            for sub in subs:
                if sub.full_tx:
                    if full_body is None:
                        full_body = _dumps(transaction_json(tx, tx.sender))
                    sub.session.notify(sub.id, full_body)
                else:
                    if hash_body is None:
                        hash_body = _dumps(to_data(tx.hash))
                    sub.session.notify(sub.id, hash_body)
        except Exception:
            log.exception("pending transaction subscription update failed")


def register(dispatcher: Dispatcher, node: "Node") -> SubscriptionManager:
    """Put ``eth_subscribe`` / ``eth_unsubscribe`` on ``dispatcher``, fed by ``node``."""
    manager = SubscriptionManager(node)
    dispatcher.register("eth_subscribe", manager.subscribe)
    dispatcher.register("eth_unsubscribe", manager.unsubscribe)
    return manager


def subscription_manager(node: "Node") -> SubscriptionManager:
    """The :class:`SubscriptionManager` serving ``node`` (found through its sequencer hook)."""
    for listener in node.sequencer.listeners:
        owner = getattr(listener, "__self__", None)
        if isinstance(owner, SubscriptionManager):
            return owner
    raise LookupError("no SubscriptionManager is installed on this node")


__all__ = [
    "CLOSE_TOO_SLOW",
    "CLOSE_TOO_SLOW_REASON",
    "NotificationsUnsupported",
    "Subscription",
    "SubscriptionManager",
    "WebSocketLimits",
    "WebSocketSession",
    "current_session",
    "register",
    "serve_websocket",
    "subscription_manager",
]
