"""The ``debug_`` namespace: raw (RLP/consensus-encoded) chain data, as geth serves it."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import rlp

from .encoding import parse_block_tag, parse_hash, to_data
from .jsonrpc import Dispatcher

if TYPE_CHECKING:
    from ..node import Node


class DebugAPI:
    def __init__(self, node: "Node") -> None:
        self.node = node
        self.reader = node.reader

    def _header(self, block: Any):
        # geth: a missing block is "header not found" (-32000) for a number or tag, and for
        # a hash "header for hash not found".
        return self.reader.header(parse_block_tag(block), allow_missing=False)

    def getRawHeader(self, block: Any) -> str:
        return to_data(rlp.encode(self._header(block)))

    def getRawBlock(self, block: Any) -> str:
        return to_data(rlp.encode(self.reader.block_data(self._header(block)).block))

    def getRawReceipts(self, block: Any) -> list[str]:
        """Each receipt's consensus encoding (typed receipts: type byte and RLP payload)."""
        return [to_data(receipt.encode()) for receipt in self.reader.block_data(self._header(block)).receipts]

    def getRawTransaction(self, tx_hash: Any) -> str:
        """The transaction's binary encoding; "0x" when it is unknown (as geth)."""
        tx_hash = parse_hash(tx_hash, name="transaction hash")
        found = self.reader.transaction_location(tx_hash)
        if found is not None:
            data, index = found
            return to_data(data.block.transactions[index].encode())
        pending = self.node.pool.get(tx_hash)
        return to_data(pending[0].encode()) if pending else "0x"


def register(dispatcher: Dispatcher, node: "Node") -> None:
    dispatcher.register_namespace(DebugAPI(node), "debug")
