"""HTTP front-end for the JSON-RPC dispatcher (FastAPI app + embeddable uvicorn runner).

HTTP status policy: JSON-RPC results *and* JSON-RPC errors are HTTP 200, except
  * body over ``max_body_bytes``  -> 413 with a -32600 "request too large" error body,
  * only notifications           -> 204 with an empty body,
  * unknown path / HTTP method   -> 404 / 405 with a -32600 error body.
Nothing is ever answered with a bare 500: unexpected exceptions become a -32603 body.

WebSocket JSON-RPC (and ``eth_subscribe``) is served on the same port, as an upgrade of
``/`` or ``/ws`` (see ``rpc.subscriptions``).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import threading
import time
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, WebSocket
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from .jsonrpc import INTERNAL_ERROR, INVALID_REQUEST, Dispatcher
from .subscriptions import WebSocketLimits, serve_websocket

logger = logging.getLogger(__name__)

# After the cap is hit we keep reading (and discarding) up to this many extra
# bytes so the client gets the 413 instead of a connection reset mid-upload.
_DRAIN_FACTOR = 4


def _error_response(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse(
        {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}, status_code=status
    )


def create_app(
    dispatcher: Dispatcher,
    *,
    max_body_bytes: int | None = None,
    cors_origins: list[str] | None = None,
    ws_limits: WebSocketLimits | None = None,
) -> FastAPI:
    """Build the ASGI app: ``POST /`` (JSON-RPC), ``GET /health``, WebSocket JSON-RPC on
    ``/`` and ``/ws``.

    ``max_body_bytes`` defaults to ``dispatcher.max_body_bytes`` (5 MiB by default);
    ``cors_origins`` defaults to ``["*"]`` and also bounds WebSocket origins;
    ``ws_limits`` (per-connection outgoing queue) is kept, mutable, as ``app.state.ws_limits``.
    """
    cap = dispatcher.max_body_bytes if max_body_bytes is None else max_body_bytes
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=cors_origins if cors_origins is not None else ["*"],
        allow_methods=["POST", "GET", "OPTIONS"],
        allow_headers=["*"],
        max_age=600,
    )

    @app.post("/")
    async def rpc(request: Request) -> Response:
        try:
            body = await _read_capped(request, cap)
        except ClientDisconnect:
            return Response(status_code=400)
        if body is None:
            return _error_response(413, INVALID_REQUEST, "request too large")
        try:
            out = await dispatcher.handle_bytes(body)
        except Exception:  # the dispatcher should never raise; belt and braces
            logger.exception("JSON-RPC dispatch failed")
            return _error_response(200, INTERNAL_ERROR, "internal error")
        if out is None:
            return Response(status_code=204)
        return Response(out, media_type="application/json")

    app.state.ws_limits = ws_limits if ws_limits is not None else WebSocketLimits()
    ws_origins = cors_origins if cors_origins is not None else ["*"]

    async def websocket_rpc(websocket: WebSocket) -> None:
        await serve_websocket(websocket, dispatcher, app.state.ws_limits, allowed_origins=ws_origins)

    app.add_api_websocket_route("/", websocket_rpc)
    app.add_api_websocket_route("/ws", websocket_rpc)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        return _error_response(exc.status_code, INVALID_REQUEST, str(exc.detail).lower())

    @app.exception_handler(Exception)
    async def any_error(_: Request, exc: Exception) -> Response:
        # Starlette re-raises after sending this, so uvicorn logs the traceback once.
        return _error_response(200, INTERNAL_ERROR, "internal error")

    return app


async def _read_capped(request: Request, cap: int) -> bytes | None:
    """Read the body, buffering at most ``cap`` bytes; None if it is larger."""
    declared = request.headers.get("content-length", "")
    too_large = declared.isdigit() and int(declared) > cap
    if too_large and int(declared) > cap * (_DRAIN_FACTOR + 1):
        return None  # not worth draining; uvicorn closes the connection
    buf = bytearray()
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if too_large or seen > cap:
            too_large = True
            buf.clear()
            if seen > cap * (_DRAIN_FACTOR + 1):
                break
            continue
        buf += chunk
    return None if too_large else bytes(buf)


class PortInUseError(OSError):
    """The requested host:port is already bound by another socket."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(errno.EADDRINUSE, f"RPC address {host}:{port} is already in use")
        self.host, self.port = host, port


class RPCServer:
    """Runs the RPC app on uvicorn, either in a background thread (:meth:`start`
    / :meth:`stop`) or as a task on the caller's running event loop
    (:meth:`start_async` / :meth:`stop_async`).

    The socket is bound synchronously by ``start*`` (so a busy port raises
    :class:`PortInUseError` right there); with ``port=0`` the OS picks a free
    port and :attr:`port` returns it. Handlers run on the server's event loop,
    i.e. on the background thread in threaded mode.
    """

    def __init__(
        self,
        app: FastAPI | Dispatcher,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        log_level: str = "warning",
        access_log: bool = False,
        shutdown_timeout: float = 5.0,
    ) -> None:
        self.app = create_app(app) if isinstance(app, Dispatcher) else app
        self.host = host
        self._requested_port = port
        self._config = uvicorn.Config(
            self.app,
            log_level=log_level,
            access_log=access_log,
            log_config=None,  # leave the process' logging configuration alone
            lifespan="off",
            timeout_graceful_shutdown=int(max(1, shutdown_timeout)),
        )
        self._server: uvicorn.Server | None = None
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread_exc: BaseException | None = None
        self._bound_port: int | None = None

    # -- properties

    @property
    def port(self) -> int:
        """The bound port (the real one if constructed with port 0; kept after stop)."""
        return self._bound_port if self._bound_port is not None else self._requested_port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None and self._server.started and not self._server.should_exit

    # -- binding

    def _bind(self) -> socket.socket:
        if self._server is not None:
            raise RuntimeError("RPC server already started")
        infos = socket.getaddrinfo(self.host, self._requested_port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, type_, proto, _, addr = infos[0]
        sock = socket.socket(family, type_, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT only, not live listeners
            sock.bind(addr)
            sock.listen(self._config.backlog)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise PortInUseError(self.host, self._requested_port) from exc
            raise
        sock.setblocking(False)
        self._sock = sock
        self._bound_port = sock.getsockname()[1]
        self._server = uvicorn.Server(self._config)
        return sock

    # -- threaded mode

    def start(self, timeout: float = 10.0) -> None:
        """Serve from a daemon thread; returns once the server accepts connections."""
        sock = self._bind()
        server = self._server
        assert server is not None

        def run() -> None:
            try:
                asyncio.run(server.serve(sockets=[sock]))
            except BaseException as exc:  # noqa: BLE001 - reported to start()/logged
                self._thread_exc = exc
                logger.exception("RPC server thread died")

        self._thread = threading.Thread(target=run, name=f"rpc-server-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("RPC server failed to start") from self._thread_exc
            time.sleep(0.005)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the threaded server (idempotent)."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(timeout)
            self._thread = None
        self._cleanup()

    # -- in-loop mode

    async def start_async(self, timeout: float = 10.0) -> None:
        """Serve as a task on the running event loop; returns once accepting connections."""
        sock = self._bind()
        server = self._server
        assert server is not None
        self._task = asyncio.create_task(server.serve(sockets=[sock]), name="rpc-server")
        deadline = time.monotonic() + timeout
        while not server.started:
            if self._task.done() or time.monotonic() > deadline:
                exc = None if not self._task.done() or self._task.cancelled() else self._task.exception()
                await self.stop_async()
                raise RuntimeError("RPC server failed to start") from exc
            await asyncio.sleep(0.005)

    async def stop_async(self, timeout: float = 10.0) -> None:
        """Stop the in-loop server (idempotent)."""
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except asyncio.TimeoutError:
                if self._server is not None:
                    self._server.force_exit = True
                self._task.cancel()
            except Exception:
                logger.exception("RPC server task failed")
            self._task = None
        self._cleanup()

    def _cleanup(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        self._server = None

    # -- context manager (threaded mode)

    def __enter__(self) -> "RPCServer":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


__all__ = ["create_app", "RPCServer", "PortInUseError"]
