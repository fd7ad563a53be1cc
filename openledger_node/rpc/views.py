"""Ethereum JSON shapes of blocks, transactions, receipts and logs, as geth writes them.

``ChainReader`` is the RPC layer's only way into the chain: it resolves block
selectors and formats what it reads, with a small cache of recent blocks.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import rlp
from eth.abc import BlockAPI, BlockHeaderAPI, ReceiptAPI, SignedTransactionAPI

from ..chain.chain import Blockchain, contract_address
from .encoding import BlockRef, to_data, to_quantity
from .jsonrpc import ServerError

_CACHE_BLOCKS = 256
BLOB_GAS_PER_BLOB = 2**17  # EIP-4844


def _addr(value: bytes | None) -> str | None:
    return None if not value else "0x" + value.hex()


def effective_gas_price(tx: SignedTransactionAPI, base_fee: int | None) -> int:
    if base_fee is None or getattr(tx, "type_id", None) in (None, 1):
        return tx.gas_price if hasattr(tx, "gas_price") and getattr(tx, "type_id", None) in (None, 1) else tx.max_fee_per_gas
    return min(tx.max_fee_per_gas, base_fee + tx.max_priority_fee_per_gas)


def access_list_json(tx: SignedTransactionAPI) -> list[dict[str, Any]]:
    return [
        {"address": _addr(address), "storageKeys": [to_data(slot.to_bytes(32, "big")) for slot in slots]}
        for address, slots in getattr(tx, "access_list", ())
    ]


def transaction_json(
    tx: SignedTransactionAPI, sender: bytes, header: BlockHeaderAPI | None = None, index: int | None = None
) -> dict[str, Any]:
    """An ``eth_getTransactionBy*`` object; ``header`` is None for a pending transaction."""
    type_id = getattr(tx, "type_id", None)
    base_fee = getattr(header, "base_fee_per_gas", None) if header is not None else None
    out: dict[str, Any] = {
        "blockHash": to_data(header.hash) if header is not None else None,
        "blockNumber": to_quantity(header.block_number) if header is not None else None,
        "from": _addr(sender),
        "gas": to_quantity(tx.gas),
        "gasPrice": to_quantity(
            effective_gas_price(tx, base_fee) if header is not None or type_id in (None, 1) else tx.max_fee_per_gas
        ),
    }
    if type_id not in (None, 1):
        out["maxFeePerGas"] = to_quantity(tx.max_fee_per_gas)
        out["maxPriorityFeePerGas"] = to_quantity(tx.max_priority_fee_per_gas)
    if type_id == 3:
        out["maxFeePerBlobGas"] = to_quantity(tx.max_fee_per_blob_gas)
    out.update(
        {
            "hash": to_data(tx.hash),
            "input": to_data(tx.data),
            "nonce": to_quantity(tx.nonce),
            "to": _addr(tx.to),
            "transactionIndex": to_quantity(index) if index is not None else None,
            "value": to_quantity(tx.value),
            "type": to_quantity(type_id or 0),
        }
    )
    if type_id is not None:
        out["accessList"] = access_list_json(tx)
        out["chainId"] = to_quantity(tx.chain_id)
    elif tx.chain_id is not None:
        out["chainId"] = to_quantity(tx.chain_id)
    if type_id == 3:
        out["blobVersionedHashes"] = [to_data(h) for h in tx.blob_versioned_hashes]
    if type_id == 4:
        out["authorizationList"] = [
            {
                "chainId": to_quantity(auth.chain_id),
                "address": _addr(auth.address),
                "nonce": to_quantity(auth.nonce),
                "yParity": to_quantity(auth.y_parity),
                "r": to_quantity(auth.r),
                "s": to_quantity(auth.s),
            }
            for auth in tx.authorization_list
        ]
    if type_id is None:
        out["v"] = to_quantity(tx.v)
    else:
        out["v"] = to_quantity(tx.y_parity)
    out["r"] = to_quantity(tx.r)
    out["s"] = to_quantity(tx.s)
    if type_id is not None:
        out["yParity"] = to_quantity(tx.y_parity)
    return out


def header_json(header: BlockHeaderAPI) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if getattr(header, "base_fee_per_gas", None) is not None:
        out["baseFeePerGas"] = to_quantity(header.base_fee_per_gas)
    if hasattr(header, "blob_gas_used"):
        out["blobGasUsed"] = to_quantity(header.blob_gas_used)
    out["difficulty"] = to_quantity(header.difficulty)
    if hasattr(header, "excess_blob_gas"):
        out["excessBlobGas"] = to_quantity(header.excess_blob_gas)
    out.update(
        {
            "extraData": to_data(header.extra_data),
            "gasLimit": to_quantity(header.gas_limit),
            "gasUsed": to_quantity(header.gas_used),
            "hash": to_data(header.hash),
            "logsBloom": to_data(header.bloom.to_bytes(256, "big")),
            "miner": _addr(header.coinbase) or "0x" + "00" * 20,
            "mixHash": to_data(header.mix_hash),
            "nonce": to_data(header.nonce),
            "number": to_quantity(header.block_number),
        }
    )
    if hasattr(header, "parent_beacon_block_root"):
        out["parentBeaconBlockRoot"] = to_data(header.parent_beacon_block_root)
    out["parentHash"] = to_data(header.parent_hash)
    out["receiptsRoot"] = to_data(header.receipt_root)
    if hasattr(header, "requests_hash"):
        out["requestsHash"] = to_data(header.requests_hash)
    out["sha3Uncles"] = to_data(header.uncles_hash)
    out["stateRoot"] = to_data(header.state_root)
    out["timestamp"] = to_quantity(header.timestamp)
    out["transactionsRoot"] = to_data(header.transaction_root)
    if hasattr(header, "withdrawals_root"):
        out["withdrawalsRoot"] = to_data(header.withdrawals_root)
    return out


@dataclass
class BlockData:
    """A sealed block with everything RPC derives from it, computed once."""

    header: BlockHeaderAPI
    block: BlockAPI
    senders: list[bytes]
    receipts: tuple[ReceiptAPI, ...]
    _receipts_json: list[dict[str, Any]] | None = None

    def receipts_json(self) -> list[dict[str, Any]]:
        if self._receipts_json is None:
            self._receipts_json = self._format_receipts()
        return self._receipts_json

    def _format_receipts(self) -> list[dict[str, Any]]:
        header = self.header
        base_fee = getattr(header, "base_fee_per_gas", None)
        out: list[dict[str, Any]] = []
        previous_cumulative = 0
        log_index = 0
        block_hash = to_data(header.hash)
        number = to_quantity(header.block_number)
        timestamp = to_quantity(header.timestamp)
        for index, (tx, sender, receipt) in enumerate(zip(self.block.transactions, self.senders, self.receipts)):
            tx_hash = to_data(tx.hash)
            logs = []
            for log in receipt.logs:
                logs.append(
                    {
                        "address": _addr(log.address),
                        "topics": [to_data(t.to_bytes(32, "big")) for t in log.topics],
                        "data": to_data(log.data),
                        "blockNumber": number,
                        "transactionHash": tx_hash,
                        "transactionIndex": to_quantity(index),
                        "blockHash": block_hash,
                        "blockTimestamp": timestamp,
                        "logIndex": to_quantity(log_index),
                        "removed": False,
                    }
                )
                log_index += 1
            created = contract_address(sender, tx.nonce) if not tx.to else None
            type_id = getattr(tx, "type_id", None)
            out.append(
                {
                    "blockHash": block_hash,
                    "blockNumber": number,
                    "contractAddress": _addr(created),
                    "cumulativeGasUsed": to_quantity(receipt.gas_used),
                    "effectiveGasPrice": to_quantity(effective_gas_price(tx, base_fee)),
                    "from": _addr(sender),
                    "gasUsed": to_quantity(receipt.gas_used - previous_cumulative),
                    "logs": logs,
                    "logsBloom": to_data(receipt.bloom.to_bytes(256, "big")),
                    "status": to_quantity(1 if receipt.state_root == b"\x01" else 0)
                    if len(receipt.state_root) <= 1
                    else None,
                    "to": _addr(tx.to),
                    "transactionHash": tx_hash,
                    "transactionIndex": to_quantity(index),
                    "type": to_quantity(type_id or 0),
                }
            )
            if type_id == 3:  # EIP-4844: blob gas, at the block's blob base fee
                from .eth import _blob_base_fee

                out[-1]["blobGasUsed"] = to_quantity(BLOB_GAS_PER_BLOB * len(tx.blob_versioned_hashes))
                out[-1]["blobGasPrice"] = to_quantity(_blob_base_fee(header))
            if len(receipt.state_root) == 32:  # pre-Byzantium receipts carry a state root
                out[-1].pop("status")
                out[-1]["root"] = to_data(receipt.state_root)
            previous_cumulative = receipt.gas_used
        return out

    def block_json(self, full: bool) -> dict[str, Any]:
        out = header_json(self.header)
        out["size"] = to_quantity(len(rlp.encode(self.block)))
        if full:
            out["transactions"] = [
                transaction_json(tx, sender, self.header, i)
                for i, (tx, sender) in enumerate(zip(self.block.transactions, self.senders))
            ]
        else:
            out["transactions"] = [to_data(tx.hash) for tx in self.block.transactions]
        out["uncles"] = [to_data(u.hash) for u in self.block.uncles]
        if hasattr(self.block, "withdrawals"):
            out["withdrawals"] = [
                {
                    "index": to_quantity(w.index),
                    "validatorIndex": to_quantity(w.validator_index),
                    "address": _addr(w.address),
                    "amount": to_quantity(w.amount),
                }
                for w in self.block.withdrawals
            ]
        return dict(sorted(out.items()))


class ChainReader:
    """Read access to the chain for RPC: selectors, cached block data, formatting."""

    def __init__(self, blockchain: Blockchain) -> None:
        self.chain = blockchain
        self._blocks: OrderedDict[bytes, BlockData] = OrderedDict()

    def header(self, selector: Any, *, allow_missing: bool = True) -> BlockHeaderAPI | None:
        """Resolve a parsed block selector (int, tag or BlockRef) to a canonical header.

        A block that is not there is None, or with ``allow_missing=False`` geth's -32000
        error ("header not found", "header for hash not found").
        """
        chain = self.chain
        ref = selector if isinstance(selector, BlockRef) else (
            BlockRef(number=selector) if isinstance(selector, int) else BlockRef(tag=selector)
        )
        header: BlockHeaderAPI | None
        if ref.hash is not None:
            header = chain.header_by_hash(ref.hash)
            if header is None:
                if allow_missing:
                    return None
                raise ServerError("header for hash not found")
            if ref.require_canonical and not chain.is_canonical(header):
                raise ServerError("hash is not currently canonical")
            return header
        if ref.number is not None:
            header = chain.header_by_number(ref.number)
        elif ref.tag == "earliest":
            header = chain.header_by_number(0)
        else:  # latest, pending, safe, finalized: one sequencer, no L1 finality yet
            header = chain.head
        if header is None and not allow_missing:
            raise ServerError("header not found")
        return header

    def state_header(self, selector: Any) -> BlockHeaderAPI:
        """Like ``header`` but for state queries: a missing block is an error (-32000, as geth)."""
        header = self.header(selector, allow_missing=False)
        assert header is not None
        return header

    def block_data(self, header: BlockHeaderAPI) -> BlockData:
        key = header.hash
        data = self._blocks.get(key)
        if data is not None:
            self._blocks.move_to_end(key)
            return data
        block = self.chain.block(header)
        senders = [tx.sender for tx in block.transactions]
        data = BlockData(header, block, senders, self.chain.receipts(block) if block.transactions else ())
        self._blocks[key] = data
        if len(self._blocks) > _CACHE_BLOCKS:
            self._blocks.popitem(last=False)
        return data

    def remember(self, block: BlockAPI, receipts: tuple[ReceiptAPI, ...]) -> BlockData:
        """Cache a block the sequencer just sealed, so RPC needs no LevelDB read for it."""
        data = BlockData(block.header, block, [tx.sender for tx in block.transactions], receipts)
        self._blocks[block.header.hash] = data
        if len(self._blocks) > _CACHE_BLOCKS:
            self._blocks.popitem(last=False)
        return data

    def transaction_location(self, tx_hash: bytes) -> tuple[BlockData, int] | None:
        found = self.chain.transaction_index(tx_hash)
        if found is None:
            return None
        number, index = found
        header = self.chain.header_by_number(number)
        if header is None:
            return None
        data = self.block_data(header)
        if index >= len(data.block.transactions) or data.block.transactions[index].hash != tx_hash:
            return None
        return data, index
