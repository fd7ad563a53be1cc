"""A small test client for the OpenLedger precompiles over real JSON-RPC: locally signed
EIP-1559 transactions, receipts with decoded events, eth_call with decoded results and
custom errors."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_utils import to_checksum_address

from openledger_node.precompiles.abi import Interface, load

REGISTRY = "0x0000000000000000000000000000000000000A01"
POA = "0x0000000000000000000000000000000000000A02"
INTERFACES: dict[str, Interface] = {REGISTRY.lower(): load("IDatanetRegistry"), POA.lower(): load("IProofOfAttribution")}
OPEN = 10**18


class Reverted(Exception):
    """A call or transaction reverted with ``error`` (a custom error's name) and ``args``."""

    def __init__(self, error: str, args: dict[str, Any], raw: bytes):
        super().__init__(f"{error}({args})")
        self.error = error
        self.args_ = args
        self.raw = raw


@dataclass
class Receipt:
    raw: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]  # (event name, arguments), in log order

    @property
    def ok(self) -> bool:
        return self.raw["status"] == "0x1"

    @property
    def gas_used(self) -> int:
        return int(self.raw["gasUsed"], 16)

    @property
    def fee_paid(self) -> int:
        return self.gas_used * int(self.raw["effectiveGasPrice"], 16)

    def named(self, name: str) -> list[dict[str, Any]]:
        return [args for event, args in self.events if event == name]


def decode_revert(target: str, data: bytes) -> Reverted:
    decoded = INTERFACES[target.lower()].decode_error(data)
    if decoded is None:
        return Reverted("?", {"data": data.hex()}, data)
    return Reverted(decoded[0], decoded[1], data)


class PrecompileClient:
    def __init__(self, node) -> None:
        self.node = node
        self.chain_id = int(node.rpc("eth_chainId"), 16)

    @staticmethod
    def calldata(target: str, function: str, *args: Any) -> bytes:
        return INTERFACES[target.lower()].functions[function].encode_call(*args)

    def call(self, target: str, function: str, *args: Any, sender: str | None = None, value: int = 0,
             block: str = "latest") -> tuple:
        """eth_call; the decoded results, or raises Reverted."""
        fn = INTERFACES[target.lower()].functions[function]
        request: dict[str, Any] = {"to": target, "data": "0x" + fn.encode_call(*args).hex()}
        if sender:
            request["from"] = sender
        if value:
            request["value"] = hex(value)
        body = self.node.request("eth_call", request, block)
        if "error" in body:
            raise decode_revert(target, bytes.fromhex(body["error"]["data"][2:]))
        return tuple(list(x) if isinstance(x, tuple) else x for x in fn.decode_result(bytes.fromhex(body["result"][2:])))

    def call_data(self, target: str, data: bytes, *, sender: str | None = None, value: int = 0) -> bytes:
        """eth_call with raw calldata; the raw result, or raises Reverted."""
        request: dict[str, Any] = {"to": target, "data": "0x" + data.hex(), "value": hex(value)}
        if sender:
            request["from"] = sender
        body = self.node.request("eth_call", request, "latest")
        if "error" in body:
            raise decode_revert(target, bytes.fromhex(body["error"]["data"][2:]))
        return bytes.fromhex(body["result"][2:])

    def send_raw(self, key: str, to: str | None, data: bytes, *, value: int = 0, gas: int | None = None) -> dict[str, Any]:
        """A signed transaction (``to`` None: a contract creation); its receipt."""
        sender = Account.from_key(key).address
        target = {"to": to_checksum_address(to)} if to is not None else {}
        if gas is None:
            request = {"from": sender, **target, "data": "0x" + data.hex(), "value": hex(value)}
            body = self.node.request("eth_estimateGas", request)
            if "error" in body:
                if to is not None and to.lower() in INTERFACES:
                    raise decode_revert(to, bytes.fromhex(body["error"]["data"][2:]))
                raise AssertionError(body["error"])
            gas = int(body["result"], 16)
        tx = {
            "type": 2, "chainId": self.chain_id, **target, "data": data, "value": value, "gas": gas,
            "nonce": int(self.node.rpc("eth_getTransactionCount", sender, "pending"), 16),
            "maxFeePerGas": 2 * 10**9, "maxPriorityFeePerGas": 10**6,
        }
        raw = Account.sign_transaction(tx, key).raw_transaction
        return self.node.wait_receipt(self.node.rpc("eth_sendRawTransaction", "0x" + raw.hex()))

    def send(self, key: str, target: str, function: str, *args: Any, value: int = 0, gas: int | None = None) -> Receipt:
        """A signed transaction to a precompile; raises Reverted if gas estimation shows a revert."""
        raw = self.send_raw(key, target, self.calldata(target, function, *args), value=value, gas=gas)
        return Receipt(raw, self.events(raw))

    @staticmethod
    def events(receipt: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for log in receipt["logs"]:
            interface = INTERFACES.get(log["address"].lower())
            if interface is None:
                continue
            event = interface.events_by_topic[bytes.fromhex(log["topics"][0][2:])]
            out.append((event.name, event.decode([bytes.fromhex(t[2:]) for t in log["topics"]], bytes.fromhex(log["data"][2:]))))
        return out

    def balance(self, address: str) -> int:
        return int(self.node.rpc("eth_getBalance", address, "latest"), 16)
