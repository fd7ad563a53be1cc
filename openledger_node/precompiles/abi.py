"""The precompiles' Solidity interfaces, as the node reads them: selectors, argument and
result types, events and custom errors, from the ABI JSON that npm solc produced from
``contracts/precompiles/*.sol`` (scripts/build_precompile_abi.py writes it)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

from eth_abi import decode, encode
from eth_utils import keccak


def _type(param: dict) -> str:
    kind = param["type"]
    if kind.startswith("tuple"):
        return "(" + ",".join(_type(p) for p in param["components"]) + ")" + kind[5:]
    return kind


@dataclass(frozen=True)
class Function:
    name: str
    selector: bytes
    inputs: tuple[str, ...]
    input_names: tuple[str, ...]
    outputs: tuple[str, ...]
    output_names: tuple[str, ...]
    mutability: str  # "view", "pure", "nonpayable", "payable"

    @property
    def signature(self) -> str:
        return f"{self.name}({','.join(self.inputs)})"

    @property
    def payable(self) -> bool:
        return self.mutability == "payable"

    @property
    def writes(self) -> bool:
        return self.mutability not in ("view", "pure")

    def encode_call(self, *args) -> bytes:
        return self.selector + encode(list(self.inputs), list(args))

    def decode_result(self, data: bytes) -> tuple:
        return tuple(decode(list(self.outputs), data))


@dataclass(frozen=True)
class Event:
    name: str
    topic0: bytes
    params: tuple[tuple[str, str, bool], ...]  # (name, type, indexed)

    def encode(self, args: dict) -> tuple[list[int], bytes]:
        """EVM log topics (ints) and data for ``args`` (by parameter name).  Indexed
        parameters of static types only (the precompiles index no string or array)."""
        topics = [int.from_bytes(self.topic0, "big")]
        data_types, data_values = [], []
        for name, kind, indexed in self.params:
            if indexed:
                topics.append(int.from_bytes(encode([kind], [args[name]]), "big"))
            else:
                data_types.append(kind)
                data_values.append(args[name])
        return topics, encode(data_types, data_values)

    def decode(self, topics: list[bytes], data: bytes) -> dict:
        """A log's arguments by name (topics as 32-byte strings, topic0 first)."""
        values = iter(decode([kind for _, kind, indexed in self.params if not indexed], data))
        indexed_topics = iter(topics[1:])
        out = {}
        for name, kind, indexed in self.params:
            out[name] = decode([kind], next(indexed_topics))[0] if indexed else next(values)
        return out


@dataclass(frozen=True)
class Error:
    name: str
    selector: bytes
    inputs: tuple[str, ...]
    input_names: tuple[str, ...]

    def encode(self, *args) -> bytes:
        return self.selector + encode(list(self.inputs), list(args))

    def decode(self, data: bytes) -> dict:
        return dict(zip(self.input_names, decode(list(self.inputs), data[4:])))


class Interface:
    """One precompile's interface."""

    def __init__(self, name: str, abi: list[dict]):
        self.name = name
        self.functions: dict[str, Function] = {}
        self.by_selector: dict[bytes, Function] = {}
        self.events: dict[str, Event] = {}
        self.errors: dict[str, Error] = {}
        for item in abi:
            kind = item["type"]
            if kind == "function":
                inputs = tuple(_type(p) for p in item["inputs"])
                signature = f"{item['name']}({','.join(inputs)})"
                fn = Function(
                    item["name"], keccak(text=signature)[:4], inputs, tuple(p["name"] for p in item["inputs"]),
                    tuple(_type(p) for p in item["outputs"]), tuple(p["name"] for p in item["outputs"]),
                    item["stateMutability"],
                )
                if fn.name in self.functions:
                    raise ValueError(f"{name}: overloaded function {fn.name} (not supported)")
                self.functions[fn.name] = fn
                self.by_selector[fn.selector] = fn
            elif kind == "event":
                params = tuple((p["name"], _type(p), bool(p["indexed"])) for p in item["inputs"])
                signature = f"{item['name']}({','.join(t for _, t, _ in params)})"
                self.events[item["name"]] = Event(item["name"], keccak(text=signature), params)
            elif kind == "error":
                inputs = tuple(_type(p) for p in item["inputs"])
                signature = f"{item['name']}({','.join(inputs)})"
                self.errors[item["name"]] = Error(
                    item["name"], keccak(text=signature)[:4], inputs, tuple(p["name"] for p in item["inputs"])
                )
        self.errors_by_selector = {error.selector: error for error in self.errors.values()}
        self.events_by_topic = {event.topic0: event for event in self.events.values()}

    def decode_error(self, data: bytes) -> tuple[str, dict] | None:
        """(error name, arguments) of revert data raised by this precompile, or None."""
        error = self.errors_by_selector.get(bytes(data[:4]))
        if error is None:
            return None
        return error.name, error.decode(bytes(data))


def load(name: str) -> Interface:
    """``name`` is the interface's file stem, e.g. "IDatanetRegistry"."""
    text = resources.files(__package__).joinpath("abi", f"{name}.json").read_text()
    return Interface(name, json.loads(text))
