"""A small asynchronous JSON-RPC client for the L1 (any EVM chain reached by URL).

Two failure kinds, because callers treat them differently: :class:`L1Unavailable`
(the L1 could not be reached or answered garbage: retry later) and
:class:`L1RPCError` (the L1 answered with a JSON-RPC error: look at it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import logging

import httpx

logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per L1 request in the node's log


class L1Unavailable(Exception):
    """The L1 endpoint did not answer (connection refused, timeout, HTTP error, not JSON)."""


class L1RPCError(Exception):
    """The L1 answered a JSON-RPC error."""

    def __init__(self, method: str, error: dict[str, Any]) -> None:
        self.method = method
        self.code = error.get("code")
        self.message = str(error.get("message", ""))
        self.data = error.get("data")
        super().__init__(f"{method}: {self.code} {self.message}")


@dataclass(frozen=True)
class L1Block:
    number: int
    hash: bytes
    timestamp: int
    base_fee: int


def hex_int(value: str) -> int:
    return int(value, 16)


def hex_bytes(value: str) -> bytes:
    return bytes.fromhex(value[2:] if value.startswith("0x") else value)


def to_hex(value: bytes | int) -> str:
    return hex(value) if isinstance(value, int) else "0x" + value.hex()


class L1Client:
    """JSON-RPC over HTTP to one L1 URL.  One instance per event loop."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url
        self._client = httpx.AsyncClient(timeout=timeout)
        self._ids = 0

    async def close(self) -> None:
        await self._client.aclose()

    async def call(self, method: str, *params: Any) -> Any:
        self._ids += 1
        body = {"jsonrpc": "2.0", "id": self._ids, "method": method, "params": list(params)}
        try:
            response = await self._client.post(self.url, json=body)
            response.raise_for_status()
            reply = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise L1Unavailable(f"{self.url}: {type(exc).__name__}: {exc}") from None
        if not isinstance(reply, dict):
            raise L1Unavailable(f"{self.url}: {method} answered a non-object")
        if "error" in reply:
            raise L1RPCError(method, reply["error"] if isinstance(reply["error"], dict) else {"message": reply["error"]})
        return reply.get("result")

    # -- typed helpers --------------------------------------------------------------------
    async def chain_id(self) -> int:
        return hex_int(await self.call("eth_chainId"))

    async def block(self, tag: str | int = "latest") -> L1Block:
        found = await self.call("eth_getBlockByNumber", tag if isinstance(tag, str) else hex(tag), False)
        if found is None:
            raise L1RPCError("eth_getBlockByNumber", {"message": f"no block {tag}"})
        return L1Block(hex_int(found["number"]), hex_bytes(found["hash"]), hex_int(found["timestamp"]),
                       hex_int(found.get("baseFeePerGas") or "0x0"))

    async def block_number(self) -> int:
        return hex_int(await self.call("eth_blockNumber"))

    async def nonce(self, address: bytes, tag: str = "latest") -> int:
        return hex_int(await self.call("eth_getTransactionCount", to_hex(address), tag))

    async def eth_call(self, to: bytes, data: bytes, tag: str = "latest") -> bytes:
        return hex_bytes(await self.call("eth_call", {"to": to_hex(to), "data": to_hex(data)}, tag))

    async def code(self, address: bytes, tag: str = "latest") -> bytes:
        return hex_bytes(await self.call("eth_getCode", to_hex(address), tag))

    async def estimate_gas(self, sender: bytes, to: bytes, data: bytes, tag: str = "latest") -> int:
        # At "latest": some L1s (anvil) estimate on the pending state, where a transaction
        # of ours still in the pool would make the one replacing it look invalid.
        return hex_int(await self.call("eth_estimateGas", {"from": to_hex(sender), "to": to_hex(to),
                                                           "data": to_hex(data)}, tag))

    async def max_priority_fee(self) -> int:
        try:
            return hex_int(await self.call("eth_maxPriorityFeePerGas"))
        except L1RPCError:  # not every L1 serves it
            return 10**9

    async def send_raw(self, raw: bytes) -> bytes:
        return hex_bytes(await self.call("eth_sendRawTransaction", to_hex(raw)))

    async def receipt(self, tx_hash: bytes) -> dict[str, Any] | None:
        return await self.call("eth_getTransactionReceipt", to_hex(tx_hash))

    async def transaction(self, tx_hash: bytes) -> dict[str, Any] | None:
        return await self.call("eth_getTransactionByHash", to_hex(tx_hash))

    async def logs(self, address: bytes, topic0: bytes | list[bytes], from_block: int, to_block: int,
                   topic1: bytes | None = None) -> list[dict[str, Any]]:
        """Logs whose first topic is ``topic0`` (or any of a list), and second ``topic1`` if given."""
        first = [to_hex(t) for t in topic0] if isinstance(topic0, list) else to_hex(topic0)
        topics: list[Any] = [first] if topic1 is None else [first, to_hex(topic1)]
        return await self.call("eth_getLogs", {
            "address": to_hex(address), "topics": topics, "fromBlock": hex(from_block), "toBlock": hex(to_block),
        })
