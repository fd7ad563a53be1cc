"""``ol_syncStatus``: where the L2 head is and how much of it L1 holds (as OP's optimism_syncStatus)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .jsonrpc import Dispatcher

if TYPE_CHECKING:
    from ..node import Node


class OlSyncAPI:
    def __init__(self, node: "Node") -> None:
        self.node = node

    def _block_ref(self, number: int | None) -> dict[str, Any] | None:
        header = None if number is None else self.node.blockchain.header_by_number(number)
        if header is None:
            return None
        return {"number": hex(header.block_number), "hash": "0x" + header.hash.hex(),
                "timestamp": hex(header.timestamp), "stateRoot": "0x" + header.state_root.hex()}

    def syncStatus(self) -> dict[str, Any]:
        """unsafe_l2: this node's head; posted_l2: the last block the L1 inbox holds (as last
        read from L1; on a `replay --follow` replica, the last block verified against L1);
        safe_l2 / finalized_l2: the last of those that L1's safe / finalized block holds (null
        while none is, or when the L1 has no such tag); current_l1: the L1 head last seen;
        poster: the batch poster's (or follower's) state."""
        from ..settlement.poster import sync_status_of

        poster, follower = self.node.poster, getattr(self.node, "follower", None)
        if follower is not None:
            from ..settlement.follower import sync_status_of_follower

            status = sync_status_of_follower(follower)
            l1_head = status.pop("l1Head")
            return {
                "unsafe_l2": self._block_ref(self.node.blockchain.head.block_number),
                "posted_l2": self._block_ref(follower.status.verified_block),
                "safe_l2": self._block_ref(follower.status.safe_block),
                "finalized_l2": self._block_ref(follower.status.finalized_block),
                "current_l1": None if l1_head is None else {"number": l1_head},
                "poster": status,
            }
        status = sync_status_of(poster)
        return {
            "unsafe_l2": self._block_ref(self.node.blockchain.head.block_number),
            "posted_l2": self._block_ref(poster.status.posted_block if poster is not None else None),
            "safe_l2": self._block_ref(poster.status.safe_block if poster is not None else None),
            "finalized_l2": self._block_ref(poster.status.finalized_block if poster is not None else None),
            "current_l1": status.pop("l1Head", None),
            "poster": status,
        }


def register(dispatcher: Dispatcher, node: "Node") -> None:
    dispatcher.register_namespace(OlSyncAPI(node), "ol")
