"""The BatchInbox L1 contract (``contracts/BatchInbox.sol``): calls, event, errors.

The signatures are written out here so that the poster and the auditor need no
Solidity compiler at run time; ``tests/test_settlement_inbox.py`` checks them against
the compiled ABI.  Deployment (devnet, tests) compiles the contract.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import eth_abi
from eth_hash.auto import keccak

APPEND_SIGNATURE = "appendBatch(uint256,uint64,uint64,bytes32,bytes32,bytes)"
APPEND_TYPES = ["uint256", "uint64", "uint64", "bytes32", "bytes32", "bytes"]
APPEND_SELECTOR = keccak(APPEND_SIGNATURE.encode())[:4]
FRAME_SIGNATURE = "appendFrame(uint256,uint256,bytes)"
FRAME_TYPES = ["uint256", "uint256", "bytes"]
FRAME_SELECTOR = keccak(FRAME_SIGNATURE.encode())[:4]
DISCARD_SIGNATURE = "discardFrames(uint256)"
EVENT_SIGNATURE = "BatchAppended(uint256,uint64,uint64,bytes32,bytes32,bytes32,bytes32,uint256)"
EVENT_TOPIC = keccak(EVENT_SIGNATURE.encode())
FRAME_EVENT_SIGNATURE = "FrameAppended(uint256,uint256,bytes32)"
FRAME_EVENT_TOPIC = keccak(FRAME_EVENT_SIGNATURE.encode())
DISCARD_EVENT_SIGNATURE = "FramesDiscarded(uint256,uint256)"
DISCARD_EVENT_TOPIC = keccak(DISCARD_EVENT_SIGNATURE.encode())
ERRORS = (
    "NotBatcher(address)", "NotFromOrigin()", "UnexpectedIndex(uint256,uint256)",
    "UnexpectedFirstBlock(uint64,uint64)", "EmptyRange(uint64,uint64)", "EmptyData()", "NoSuchBatch(uint256)",
    "UnexpectedFrame(uint256,uint256)",
)
_ERRORS_BY_SELECTOR = {keccak(sig.encode())[:4]: sig for sig in ERRORS}
OUTPUT_VERSION = 0


def _selector(signature: str) -> bytes:
    return keccak(signature.encode())[:4]


def frames_hash(parts: list[bytes]) -> bytes:
    """The dataHash the inbox records for a batch sent in ``parts`` (frames, then the closing data)."""
    if len(parts) == 1:
        return keccak(parts[0])
    chained = b"\x00" * 32
    for part in parts:
        chained = keccak(chained + keccak(part))
    return chained


def output_root(state_root: bytes, block_hash: bytes) -> bytes:
    """keccak256(abi.encode(OUTPUT_VERSION, stateRoot, blockHash)), as the contract computes it."""
    return keccak(eth_abi.encode(["uint256", "bytes32", "bytes32"], [OUTPUT_VERSION, state_root, block_hash]))


@dataclass(frozen=True)
class AppendCall:
    index: int
    first_block: int
    last_block: int
    state_root: bytes
    block_hash: bytes
    data: bytes

    def encode(self) -> bytes:
        return APPEND_SELECTOR + eth_abi.encode(APPEND_TYPES, [
            self.index, self.first_block, self.last_block, self.state_root, self.block_hash, self.data])

    @classmethod
    def decode(cls, calldata: bytes) -> "AppendCall":
        """Raises ValueError when ``calldata`` is not an appendBatch call."""
        if calldata[:4] != APPEND_SELECTOR:
            raise ValueError("not an appendBatch call")
        try:
            values = eth_abi.decode(APPEND_TYPES, calldata[4:])
        except Exception as exc:  # eth_abi raises several unrelated types on bad input
            raise ValueError(f"undecodable appendBatch arguments: {exc}") from None
        return cls(*values)


@dataclass(frozen=True)
class FrameCall:
    index: int
    frame: int
    data: bytes

    def encode(self) -> bytes:
        return FRAME_SELECTOR + eth_abi.encode(FRAME_TYPES, [self.index, self.frame, self.data])

    @classmethod
    def decode(cls, calldata: bytes) -> "FrameCall":
        """Raises ValueError when ``calldata`` is not an appendFrame call."""
        if calldata[:4] != FRAME_SELECTOR:
            raise ValueError("not an appendFrame call")
        try:
            return cls(*eth_abi.decode(FRAME_TYPES, calldata[4:]))
        except Exception as exc:  # eth_abi raises several unrelated types on bad input
            raise ValueError(f"undecodable appendFrame arguments: {exc}") from None


def discard_call(index: int) -> bytes:
    return call_data(DISCARD_SIGNATURE, ["uint256"], [index])


@dataclass(frozen=True)
class FrameRecord:
    """A FrameAppended or FramesDiscarded event (``frame`` is None for a discard)."""

    index: int
    frame: int | None
    frame_hash: bytes
    l1_block: int
    log_index: int
    l1_tx: bytes

    @classmethod
    def from_log(cls, log: dict[str, Any]) -> "FrameRecord":
        topic0 = bytes.fromhex(log["topics"][0][2:])
        index = int(log["topics"][1], 16)
        data = bytes.fromhex(log["data"][2:])
        where = (int(log["blockNumber"], 16), int(log["logIndex"], 16), bytes.fromhex(log["transactionHash"][2:]))
        if topic0 == FRAME_EVENT_TOPIC:
            frame, frame_hash = eth_abi.decode(["uint256", "bytes32"], data)
            return cls(index, frame, frame_hash, *where)
        return cls(index, None, b"", *where)


@dataclass(frozen=True)
class BatchRecord:
    """One BatchAppended event: what L1 holds for a batch."""

    index: int
    first_block: int
    last_block: int
    state_root: bytes
    block_hash: bytes
    output_root: bytes
    data_hash: bytes
    frames: int  # L1 transactions the data came in: frames and the closing appendBatch
    l1_block: int
    log_index: int
    l1_tx: bytes

    @classmethod
    def from_log(cls, log: dict[str, Any]) -> "BatchRecord":
        topics = log["topics"]
        first, last, state_root, block_hash, out_root, data_hash, frames = eth_abi.decode(
            ["uint64", "uint64", "bytes32", "bytes32", "bytes32", "bytes32", "uint256"], bytes.fromhex(log["data"][2:]))
        return cls(int(topics[1], 16), first, last, state_root, block_hash, out_root, data_hash, frames,
                   int(log["blockNumber"], 16), int(log["logIndex"], 16), bytes.fromhex(log["transactionHash"][2:]))


def call_data(signature: str, types: list[str] | None = None, values: list[Any] | None = None) -> bytes:
    return _selector(signature) + (eth_abi.encode(types, values) if types else b"")


BATCH_COUNT = call_data("batchCount()")
NEXT_BLOCK = call_data("nextBlock()")
BATCHER = call_data("batcher()")
PENDING_FRAMES = call_data("pendingFrames()")
L2_GENESIS = call_data("l2Genesis()")


def decode_uint(raw: bytes) -> int:
    return eth_abi.decode(["uint256"], raw)[0]


# L1 block tags whose state a batch can be trusted to stay in: OP's safe and finalized heads.
SETTLED_TAGS = ("safe", "finalized")


async def posted_block_at(l1, address: bytes, tag: str) -> int | None:
    """The last L2 block the inbox holds in L1's ``tag`` block ("safe", "finalized"), or None
    when that L1 cannot say (no such tag, or the inbox is younger than that block).

    An L1 error here is not the caller's failure: the L1 may simply not know the tag; an
    unreachable L1 (``L1Unavailable``) still propagates."""
    from .l1 import L1RPCError

    try:
        raw = await l1.eth_call(address, NEXT_BLOCK, tag)
    except L1RPCError:
        return None
    if len(raw) != 32:  # no code at that L1 block: the inbox was not deployed yet
        return None
    return decode_uint(raw) - 1


def decode_address(raw: bytes) -> bytes:
    return bytes.fromhex(eth_abi.decode(["address"], raw)[0][2:])


def describe_revert(data: Any) -> str:
    """The contract's custom error in words, e.g. ``UnexpectedIndex(3, 2)``."""
    if not isinstance(data, str) or not data.startswith("0x") or len(data) < 10:
        return "reverted"
    raw = bytes.fromhex(data[2:])
    signature = _ERRORS_BY_SELECTOR.get(raw[:4])
    if signature is None:
        return f"reverted with 0x{raw.hex()}"
    types = [t for t in signature[signature.index("(") + 1:-1].split(",") if t]
    try:
        args = eth_abi.decode(types, raw[4:]) if types else ()
    except Exception:
        return signature
    return f"{signature[:signature.index('(')]}({', '.join(str(a) for a in args)})"


def deployment_code(batcher: bytes, l2_genesis: bytes) -> bytes:
    """Creation code of BatchInbox with its constructor arguments (compiles the contract)."""
    from ..contracts import CONTRACTS_DIR, compile_contracts

    artifact = compile_contracts([CONTRACTS_DIR / "BatchInbox.sol"])["BatchInbox"]
    return bytes.fromhex(artifact["bytecode"][2:]) + eth_abi.encode(["address", "bytes32"], [batcher, l2_genesis])


async def deploy(l1, key: bytes, batcher: bytes, l2_genesis: bytes) -> bytes:
    """Deploy a BatchInbox from ``key`` on the L1 behind ``l1`` (an L1Client); its address."""
    from eth_account import Account

    from .l1 import hex_bytes, hex_int

    account = Account.from_key(key)
    sender = bytes.fromhex(account.address[2:])
    code = deployment_code(batcher, l2_genesis)
    gas = hex_int(await l1.call("eth_estimateGas", {"from": account.address, "data": "0x" + code.hex()}))
    base = (await l1.block("latest")).base_fee
    tip = await l1.max_priority_fee()
    signed = account.sign_transaction({
        "type": 2, "chainId": await l1.chain_id(), "nonce": await l1.nonce(sender, "pending"),
        "gas": gas * 5 // 4, "maxFeePerGas": 2 * base + tip, "maxPriorityFeePerGas": tip, "value": 0,
        "data": code,
    })
    tx_hash = await l1.send_raw(bytes(signed.raw_transaction))
    import asyncio

    for _ in range(600):
        receipt = await l1.receipt(tx_hash)
        if receipt is not None:
            if hex_int(receipt["status"]) != 1:
                raise RuntimeError(f"BatchInbox deployment 0x{tx_hash.hex()} reverted")
            return hex_bytes(receipt["contractAddress"])
        await asyncio.sleep(0.1)
    raise RuntimeError(f"BatchInbox deployment 0x{tx_hash.hex()} not included after 60s")
