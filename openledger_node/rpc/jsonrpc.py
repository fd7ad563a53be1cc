"""JSON-RPC 2.0 transport: error types and a request dispatcher.

No Ethereum logic lives here. Handlers are registered by name and called with
the request's positional (``params: [...]``) or named (``params: {...}``)
arguments; they return a JSON-serialisable value (use ``rpc.encoding`` to
produce hex quantities/data) or raise :class:`RPCError`.
"""

from __future__ import annotations

import inspect
import json
import re
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, ClassVar, Mapping

logger = logging.getLogger(__name__)

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_ERROR = -32000
RESOURCE_NOT_FOUND = -32001
LIMIT_EXCEEDED = -32005
EXECUTION_REVERTED = 3

DEFAULT_MAX_BATCH = 1000
DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024
# Same cap as CPython's default int_max_str_digits, enforced here regardless of
# the process-wide setting so a huge integer literal cannot cost quadratic time.
_MAX_INT_DIGITS = 4300

OnCall = Callable[[str, float, bool], Any]


# --------------------------------------------------------------------------- errors


class RPCError(Exception):
    """An error returned to the client as a JSON-RPC error object."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = int(code)
        self.message = str(message)
        self.data = data

    def to_dict(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code}, message={self.message!r}, data={self.data!r})"


class _FixedCode(RPCError):
    CODE: ClassVar[int]
    DEFAULT_MESSAGE: ClassVar[str]

    def __init__(self, message: str | None = None, data: Any = None) -> None:
        super().__init__(self.CODE, self.DEFAULT_MESSAGE if message is None else message, data)


class ParseError(_FixedCode):
    CODE, DEFAULT_MESSAGE = PARSE_ERROR, "parse error"


class InvalidRequest(_FixedCode):
    CODE, DEFAULT_MESSAGE = INVALID_REQUEST, "invalid request"


class MethodNotFound(_FixedCode):
    CODE, DEFAULT_MESSAGE = METHOD_NOT_FOUND, "method not found"


class InvalidParams(_FixedCode):
    CODE, DEFAULT_MESSAGE = INVALID_PARAMS, "invalid params"


class InternalError(_FixedCode):
    CODE, DEFAULT_MESSAGE = INTERNAL_ERROR, "internal error"


class ServerError(_FixedCode):
    """Generic -32000 error; geth uses it for "nonce too low", "insufficient funds", ..."""

    CODE, DEFAULT_MESSAGE = SERVER_ERROR, "server error"


class ResourceNotFound(_FixedCode):
    CODE, DEFAULT_MESSAGE = RESOURCE_NOT_FOUND, "resource not found"


class LimitExceeded(_FixedCode):
    CODE, DEFAULT_MESSAGE = LIMIT_EXCEEDED, "limit exceeded"


_PANIC_REASONS = {
    0x00: "generic panic",
    0x01: "assert(false)",
    0x11: "arithmetic underflow or overflow",
    0x12: "division or modulo by zero",
    0x21: "enum overflow",
    0x22: "invalid encoded storage byte array accessed",
    0x31: "out-of-bounds array access; popping on an empty array",
    0x32: "out-of-bounds access of an array or bytesN",
    0x41: "out of memory",
    0x51: "uninitialized function",
}


def decode_revert_reason(data: bytes) -> str | None:
    """Decode Solidity ``Error(string)`` / ``Panic(uint256)`` revert data, else None."""
    try:
        if data[:4] == b"\x08\xc3\x79\xa0":  # Error(string)
            offset = int.from_bytes(data[4:36], "big")
            start = 4 + offset
            length = int.from_bytes(data[start : start + 32], "big")
            raw = data[start + 32 : start + 32 + length]
            if len(data) < start + 32 or len(raw) != length:
                return None
            return raw.decode("utf-8")
        if data[:4] == b"\x4e\x48\x7b\x71" and len(data) == 36:  # Panic(uint256)
            code = int.from_bytes(data[4:36], "big")
            return _PANIC_REASONS.get(code, f"unknown panic code: {code:#x}")
    except (UnicodeDecodeError, OverflowError, MemoryError):
        return None
    return None


class ExecutionReverted(RPCError):
    """EVM revert, shaped like geth: code 3, ``data`` = 0x-hex revert data.

    With ``message=None`` the message is "execution reverted", suffixed with
    ": <reason>" when the data is a Solidity Error(string)/Panic(uint256).
    """

    def __init__(self, data: bytes | bytearray | str = b"", message: str | None = None) -> None:
        if isinstance(data, str):
            raw = bytes.fromhex(data[2:] if data[:2] in ("0x", "0X") else data)
        else:
            raw = bytes(data)
        if message is None:
            reason = decode_revert_reason(raw)
            message = "execution reverted" if reason is None else f"execution reverted: {reason}"
        super().__init__(EXECUTION_REVERTED, message, "0x" + raw.hex())
        self.revert_data = raw


# ------------------------------------------------------------------------ dispatcher


@dataclass(frozen=True)
class _Method:
    fn: Callable[..., Any]
    sig: inspect.Signature | None  # None: signature not introspectable, no arity check
    min_pos: int  # required positional parameters
    max_pos: int | None  # None: *args accepted


def _inspect_handler(name: str, fn: Callable[..., Any]) -> _Method:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return _Method(fn, None, 0, None)
    min_pos, max_pos, varargs = 0, 0, False
    for p in sig.parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            max_pos += 1
            min_pos += p.default is p.empty
        elif p.kind is p.VAR_POSITIONAL:
            varargs = True
        elif p.kind is p.KEYWORD_ONLY and p.default is p.empty:
            raise ValueError(f"handler for {name!r} has a required keyword-only parameter {p.name!r}")
    return _Method(fn, sig, min_pos, None if varargs else max_pos)


def _parse_int(s: str) -> int:
    if len(s) > _MAX_INT_DIGITS:
        raise ValueError("integer literal too long")
    return int(s)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON constant {name}")


MAX_JSON_DEPTH = 256
_JSON_STRUCTURE = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _too_deep(body: bytes) -> bool:
    """Whether arrays/objects nest deeper than MAX_JSON_DEPTH (strings skipped).

    py-evm raises Python's recursion limit to 100000, so json.loads would happily
    recurse until the C stack overflows; refuse such bodies before parsing."""
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return False
    depth = 0
    for match in _JSON_STRUCTURE.finditer(body):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        elif token in (b"]", b"}"):
            depth -= 1
    return False


def _loads(body: bytes | str) -> Any:
    raw = body.encode() if isinstance(body, str) else body
    if _too_deep(raw):
        raise RecursionError("nesting too deep")
    return json.loads(body, parse_int=_parse_int, parse_constant=_reject_constant)


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()


def _valid_id(v: Any) -> bool:
    if v is None or isinstance(v, str):
        return True
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return True
    return isinstance(v, float) and math.isfinite(v)


_MISSING = object()


def _error_obj(id_: Any, err: RPCError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "error": err.to_dict()}


class Dispatcher:
    """Routes JSON-RPC 2.0 requests (single or batch) to registered handlers.

    Handlers run inline on the event loop, one request at a time in batch order;
    ``async def`` handlers are awaited (other requests may interleave while they
    wait). ``on_call(method, seconds, ok)`` is invoked after every call of a
    *registered* method (``ok`` is False if it raised anything).
    """

    def __init__(
        self,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        on_call: OnCall | None = None,
    ) -> None:
        self.max_batch = max_batch
        self.max_body_bytes = max_body_bytes
        self.on_call = on_call
        self._methods: dict[str, _Method] = {}

    # -- registration

    def register(self, name: str, fn: Callable[..., Any], *, replace: bool = False) -> None:
        """Register ``fn`` as method ``name``; its signature is inspected once, here."""
        if not isinstance(name, str) or not name:
            raise ValueError("method name must be a non-empty string")
        if not callable(fn):
            raise TypeError(f"handler for {name!r} is not callable")
        if name in self._methods and not replace:
            raise ValueError(f"method {name!r} already registered")
        self._methods[name] = _inspect_handler(name, fn)

    def method(self, name: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator form of :meth:`register` (defaults to the function's name)."""

        def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.register(name or fn.__name__, fn)
            return fn

        return deco

    def register_namespace(self, obj: Any, prefix: str, *, replace: bool = False) -> list[str]:
        """Register every public method ``m`` of ``obj`` as ``f"{prefix}_{m}"``.

        E.g. ``register_namespace(EthAPI(...), "eth")`` maps ``EthAPI.blockNumber``
        to ``eth_blockNumber``. Only functions defined on the class (not data
        attributes or properties) are considered. Returns the registered names.
        """
        names = []
        for attr in dir(obj):
            if attr.startswith("_"):
                continue
            static = inspect.getattr_static(obj, attr)
            if not isinstance(static, (staticmethod, classmethod)) and not inspect.isfunction(static):
                continue
            name = f"{prefix}_{attr}" if prefix else attr
            self.register(name, getattr(obj, attr), replace=replace)
            names.append(name)
        return names

    def methods(self) -> list[str]:
        return sorted(self._methods)

    def __contains__(self, name: object) -> bool:
        return name in self._methods

    # -- entry points

    async def handle_bytes(self, body: bytes | bytearray | memoryview | str) -> bytes | None:
        """Answer a raw HTTP body. Returns the JSON response, or None if nothing
        is to be sent (only notifications). Never raises for bad input."""
        if isinstance(body, memoryview):
            body = body.tobytes()
        if len(body) > self.max_body_bytes:
            return _dumps(_error_obj(None, InvalidRequest("request too large")))
        try:
            payload = _loads(body)
        except (ValueError, RecursionError, MemoryError) as exc:
            # ValueError covers JSONDecodeError and UnicodeDecodeError.
            msg = "parse error" if isinstance(exc, ValueError) else "parse error: nesting too deep"
            return _dumps(_error_obj(None, ParseError(msg)))
        return await self.handle_payload(payload)

    async def handle_payload(self, payload: Any) -> bytes | None:
        """Like :meth:`handle_bytes` for an already-decoded JSON value."""
        if isinstance(payload, list):
            if not payload:
                return _dumps(_error_obj(None, InvalidRequest("empty batch")))
            if len(payload) > self.max_batch:
                return _dumps(
                    _error_obj(None, InvalidRequest(f"batch too large: {len(payload)} > {self.max_batch}"))
                )
            parts = []
            for item in payload:
                resp = await self.handle_one(item)
                if resp is not None:
                    parts.append(self._encode(resp))
            return b"[" + b",".join(parts) + b"]" if parts else None
        resp = await self.handle_one(payload)
        return None if resp is None else self._encode(resp)

    async def handle_one(self, req: Any) -> dict[str, Any] | None:
        """Handle one decoded request object; returns the response dict, or None
        for a notification."""
        if not isinstance(req, dict):
            return _error_obj(None, InvalidRequest("invalid request: not a JSON object"))
        id_ = req.get("id", _MISSING)
        if id_ is not _MISSING and not _valid_id(id_):
            return _error_obj(None, InvalidRequest("invalid request: id must be a string, number or null"))
        reply_id = None if id_ is _MISSING else id_
        if req.get("jsonrpc") != "2.0":
            return _error_obj(reply_id, InvalidRequest('invalid request: "jsonrpc" must be "2.0"'))
        name = req.get("method")
        if not isinstance(name, str):
            return _error_obj(reply_id, InvalidRequest('invalid request: "method" must be a string'))
        params = req.get("params", _MISSING)
        if params is _MISSING or params is None:
            params = []
        elif not isinstance(params, (list, dict)):
            return _error_obj(reply_id, InvalidRequest('invalid request: "params" must be an array or object'))

        try:
            result = await self.call(name, params)
        except RPCError as err:
            if id_ is _MISSING:
                return None
            return _error_obj(id_, err)
        if id_ is _MISSING:
            return None
        return {"jsonrpc": "2.0", "id": id_, "result": result}

    async def call(self, name: str, params: list[Any] | Mapping[str, Any] = ()) -> Any:
        """Invoke method ``name`` in-process. Raises RPCError (never anything else)."""
        m = self._methods.get(name)
        if m is None:
            raise MethodNotFound(f"the method {name} does not exist/is not available")
        args, kwargs = self._bind(m, params)
        t0 = time.perf_counter()
        ok = False
        try:
            result = m.fn(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            ok = True
            return result
        except RPCError:
            raise
        except Exception:
            logger.exception("RPC handler %s crashed", name)
            raise InternalError("internal error") from None
        finally:
            if self.on_call is not None:
                try:
                    self.on_call(name, time.perf_counter() - t0, ok)
                except Exception:
                    logger.exception("on_call hook failed for %s", name)

    @staticmethod
    def _bind(m: _Method, params: list[Any] | Mapping[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        if isinstance(params, Mapping):
            if m.sig is None:
                return [], dict(params)
            try:
                bound = m.sig.bind(**params)
            except TypeError as exc:
                raise InvalidParams(f"invalid params: {exc}") from None
            return list(bound.args), dict(bound.kwargs)
        args = list(params)
        # Trailing nulls for optional parameters mean "omitted" (as in geth): let defaults apply.
        while len(args) > m.min_pos and args[-1] is None:
            args.pop()
        if m.max_pos is not None and len(args) > m.max_pos:
            raise InvalidParams(f"too many arguments, want at most {m.max_pos}")
        if len(args) < m.min_pos:
            raise InvalidParams(f"missing value for required argument {len(args)}")
        return args, {}

    def _encode(self, resp: dict[str, Any]) -> bytes:
        try:
            return _dumps(resp)
        except (TypeError, ValueError, RecursionError, OverflowError):
            logger.exception("RPC response for id %r is not JSON-serialisable", resp.get("id"))
            return _dumps(_error_obj(resp.get("id"), InternalError("internal error: result not JSON-serialisable")))


__all__ = [
    "RPCError",
    "ParseError",
    "InvalidRequest",
    "MethodNotFound",
    "InvalidParams",
    "InternalError",
    "ServerError",
    "ResourceNotFound",
    "LimitExceeded",
    "ExecutionReverted",
    "decode_revert_reason",
    "Dispatcher",
    "OnCall",
    "PARSE_ERROR",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "INVALID_PARAMS",
    "INTERNAL_ERROR",
    "SERVER_ERROR",
    "RESOURCE_NOT_FOUND",
    "LIMIT_EXCEEDED",
    "EXECUTION_REVERTED",
    "DEFAULT_MAX_BATCH",
    "DEFAULT_MAX_BODY_BYTES",
]
