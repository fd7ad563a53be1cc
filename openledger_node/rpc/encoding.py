"""Ethereum JSON-RPC hex codec helpers.

Encoders (``to_*``) are for handler results and raise TypeError/ValueError on
programming errors. Parsers (``parse_*``) are for client input and raise
:class:`InvalidParams` with a message naming the offending argument; pass
``name=`` (e.g. ``"argument 1"`` or ``"blockHash"``) to make it precise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final, Literal, Mapping

from .jsonrpc import InvalidParams

UINT256_MAX: Final = 2**256 - 1
UINT64_MAX: Final = 2**64 - 1

BlockTag = Literal["latest", "pending", "safe", "finalized", "earliest"]
BLOCK_TAGS: Final[frozenset[str]] = frozenset({"latest", "pending", "safe", "finalized", "earliest"})

_HEX_RE = re.compile(r"[0-9a-fA-F]*")
# Longest input echoed back in an error message.
_ECHO_MAX = 80


@dataclass(frozen=True)
class BlockRef:
    """A block selector: exactly one of ``number``, ``hash`` or ``tag`` is set.

    ``require_canonical`` only matters with ``hash`` (EIP-1898).
    """

    number: int | None = None
    hash: bytes | None = None
    tag: BlockTag | None = None
    require_canonical: bool = False


# ---------------------------------------------------------------------- encoders


def to_quantity(value: int) -> str:
    """Int -> "0x.." with no leading zeros ("0x0" for zero)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"quantity must be an int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"quantity must be non-negative, got {value}")
    return hex(value)


def to_data(value: bytes | bytearray | memoryview) -> str:
    """Bytes -> "0x.." (lowercase, two hex digits per byte; "0x" for empty)."""
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(value).__name__}")
    return "0x" + bytes(value).hex()


# ----------------------------------------------------------------------- parsers


def _echo(value: Any) -> str:
    if isinstance(value, (list, dict)):
        return _json_type(value)
    if isinstance(value, str) and len(value) > _ECHO_MAX:
        return repr(value[:_ECHO_MAX]) + "..."
    r = repr(value)
    return r if len(r) <= _ECHO_MAX else r[:_ECHO_MAX] + "..."


def _too_big(max_value: int) -> str:
    bits = max_value.bit_length()
    return f"value exceeds {bits} bits" if max_value == 2**bits - 1 else f"value exceeds maximum {max_value:#x}"


def _fail(name: str, value: Any, reason: str) -> InvalidParams:
    return InvalidParams(f"invalid {name} {_echo(value)}: {reason}")


def _strip_0x(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise _fail(name, value, f"expected a 0x-prefixed hex string, got {_json_type(value)}")
    if value[:2] not in ("0x", "0X"):
        raise _fail(name, value, "hex string without 0x prefix")
    digits = value[2:]
    if not _HEX_RE.fullmatch(digits):
        raise _fail(name, value, "invalid hex string")
    return digits


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def parse_quantity(value: Any, *, name: str = "quantity", max_value: int = UINT256_MAX) -> int:
    """Hex quantity "0x1a" (leading zeros tolerated) or a non-negative JSON integer -> int."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise _fail(name, value, "negative value")
        if value > max_value:
            raise _fail(name, value, _too_big(max_value))
        return value
    digits = _strip_0x(value, name)
    if not digits:
        raise _fail(name, value, "empty hex number")
    significant = digits.lstrip("0")
    if len(significant) * 4 > max_value.bit_length() + 3:  # cheap bound before int()
        raise _fail(name, value, _too_big(max_value))
    result = int(significant or "0", 16)
    if result > max_value:
        raise _fail(name, value, _too_big(max_value))
    return result


def parse_data(value: Any, *, name: str = "data", size: int | None = None) -> bytes:
    """Hex data "0x..." (even length; "0x" is empty) -> bytes; ``size`` enforces an exact byte length."""
    digits = _strip_0x(value, name)
    if len(digits) % 2:
        raise _fail(name, value, "hex string of odd length")
    if size is not None and len(digits) != 2 * size:
        raise _fail(name, value, f"want {size} bytes, got {len(digits) // 2}")
    return bytes.fromhex(digits)


def parse_hash(value: Any, *, name: str = "hash") -> bytes:
    """32-byte hash."""
    return parse_data(value, name=name, size=32)


def parse_address(value: Any, *, name: str = "address") -> bytes:
    """20-byte address; hex case is ignored (no EIP-55 checksum enforcement)."""
    return parse_data(value, name=name, size=20)


def parse_bool(value: Any, *, name: str = "boolean") -> bool:
    if not isinstance(value, bool):
        raise _fail(name, value, f"expected true or false, got {_json_type(value)}")
    return value


def _parse_number_or_tag(value: Any, name: str) -> int | str:
    if isinstance(value, str) and value in BLOCK_TAGS:
        return value
    if isinstance(value, str) and value[:2] not in ("0x", "0X"):
        raise _fail(name, value, f"expected a block number or one of {', '.join(sorted(BLOCK_TAGS))}")
    return parse_quantity(value, name=name, max_value=UINT64_MAX)


def parse_block_tag(value: Any, *, name: str = "block", allow_eip1898: bool = True) -> int | str | BlockRef:
    """Block parameter -> int (number) | tag str | BlockRef.

    Plain numbers/tags give an ``int`` or one of BLOCK_TAGS. With ``allow_eip1898``
    (default) an EIP-1898 object ``{"blockNumber": ..}`` / ``{"blockHash": ..,
    "requireCanonical": bool}`` or a bare 32-byte hash string (as geth accepts)
    gives a :class:`BlockRef`. Use :func:`parse_block_ref` to always get a BlockRef.
    """
    if value is None:
        raise InvalidParams(f"invalid {name}: missing block number or tag")
    if isinstance(value, Mapping):
        if not allow_eip1898:
            raise _fail(name, value, "expected a block number or tag")
        return _parse_eip1898(value, name)
    if allow_eip1898 and isinstance(value, str) and len(value) == 66:
        return BlockRef(hash=parse_hash(value, name=name))
    return _parse_number_or_tag(value, name)


def parse_block_ref(value: Any, *, name: str = "block") -> BlockRef:
    """Any block parameter (number, tag, hash, EIP-1898 object) -> BlockRef."""
    r = parse_block_tag(value, name=name)
    if isinstance(r, BlockRef):
        return r
    if isinstance(r, int):
        return BlockRef(number=r)
    return BlockRef(tag=r)  # type: ignore[arg-type]


def _parse_eip1898(obj: Mapping[str, Any], name: str) -> BlockRef:
    has_num, has_hash = "blockNumber" in obj, "blockHash" in obj
    if has_num and has_hash:
        raise InvalidParams(f"invalid {name}: cannot specify both blockHash and blockNumber, choose one or the other")
    if has_hash:
        canon = obj.get("requireCanonical", False)
        if not isinstance(canon, bool):
            raise _fail(f"{name}.requireCanonical", canon, "expected true or false")
        return BlockRef(hash=parse_hash(obj["blockHash"], name=f"{name}.blockHash"), require_canonical=canon)
    if has_num:
        r = _parse_number_or_tag(obj["blockNumber"], f"{name}.blockNumber")
        return BlockRef(number=r) if isinstance(r, int) else BlockRef(tag=r)  # type: ignore[arg-type]
    raise InvalidParams(f"invalid {name}: object must contain blockNumber or blockHash")


__all__ = [
    "UINT256_MAX",
    "UINT64_MAX",
    "BLOCK_TAGS",
    "BlockTag",
    "BlockRef",
    "to_quantity",
    "to_data",
    "parse_quantity",
    "parse_data",
    "parse_hash",
    "parse_address",
    "parse_bool",
    "parse_block_tag",
    "parse_block_ref",
]
