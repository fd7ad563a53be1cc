"""``replay --follow``: a read-only replica that keeps replaying new batches from L1.

After the initial replay the node serves JSON-RPC over the rebuilt chain (mining off,
transactions refused), and this task polls the inbox for new ``BatchAppended`` events,
applying each batch with the auditor's ``apply_batch`` (the same checks as ``replay``)
on the node's event loop, and tells the node's block listeners (RPC caches, filters,
subscriptions) about every block.  A batch that fails its checks stops the following:
the replica keeps serving what it verified and reports the failure in ol_syncStatus.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Callable

from ..chain.chain import Blockchain, SealedBlock
from .inbox import SETTLED_TAGS, posted_block_at
from .l1 import L1Client, L1RPCError, L1Unavailable, to_hex
from .replay import ReplayError, apply_batch, batch_data, batch_records, l1_head

log = logging.getLogger("openledger.follower")


@dataclass
class FollowerStatus:
    l1_head: int | None = None  # L1 block the events were read up to
    batches: int = 0  # batches verified
    verified_block: int = 0  # last L2 block whose batch's roots matched L1
    safe_block: int | None = None  # last verified L2 block that L1's safe block holds
    finalized_block: int | None = None  # ... that L1's finalized block holds
    last_error: str | None = None
    failed: str | None = None  # the ReplayError that stopped the following


class BatchFollower:
    def __init__(self, blockchain: Blockchain, l1_rpc: str, inbox_address: bytes, *, batches: int,
                 verified_block: int, next_l1_block: int, last_event: tuple[int, int],
                 on_block: Callable[[SealedBlock], None],
                 poll_seconds: float = 2.0, backoff_max: float = 30.0, head_tag: str = "latest") -> None:
        self.chain = blockchain
        self.l1_rpc = l1_rpc
        self.inbox = inbox_address
        self.on_block = on_block
        self.poll_seconds = poll_seconds
        self.head_tag = head_tag  # the L1 block batches are read up to: latest, safe or finalized
        self.backoff_max = backoff_max
        self.next_l1_block = next_l1_block
        self.status = FollowerStatus(l1_head=next_l1_block - 1, batches=batches, verified_block=verified_block)
        self._stop = asyncio.Event()
        self._since = last_event  # (L1 block, log index) of the last batch's event: the next one's frames follow

    def stop(self) -> None:
        self._stop.set()

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def run(self) -> None:
        l1 = L1Client(self.l1_rpc, timeout=60)
        backoff = self.poll_seconds
        try:
            while not self._stop.is_set():
                try:
                    await self._catch_up(l1)
                    self.status.last_error = None
                    backoff = self.poll_seconds
                    await self._sleep(self.poll_seconds)
                except (L1Unavailable, L1RPCError) as exc:
                    self.status.last_error = str(exc)
                    log.warning("follower: L1: %s; retrying in %.1fs", exc, backoff)
                    await self._sleep(backoff)
                    backoff = min(backoff * 2, self.backoff_max)
                except ReplayError as exc:
                    self.status.failed = str(exc)
                    log.error("follower stopped: batch %d, block %s: %s", exc.batch, exc.block, exc.reason)
                    return
        finally:
            await l1.close()

    async def _catch_up(self, l1: L1Client) -> None:
        head = await l1_head(l1, self.head_tag)
        if head < self.next_l1_block:
            return
        async for record in batch_records(l1, self.inbox, self.next_l1_block, head):
            if record.index < self.status.batches:
                continue  # verified by an earlier pass
            if record.index != self.status.batches:
                raise ReplayError(record.index, record.first_block, f"expected batch {self.status.batches} next")
            data = await batch_data(l1, self.inbox, record, self._since)
            self._since = (record.l1_block, record.log_index)
            if self._stop.is_set():
                return
            blocks, txs = apply_batch(self.chain, record, data, on_block=self.on_block)
            self.status.batches += 1
            self.status.verified_block = record.last_block
            log.info("follower: batch %d verified, L2 blocks %d-%d (%d txs), state root 0x%s", record.index,
                     record.first_block, record.last_block, txs, record.state_root.hex())
        self.next_l1_block = head + 1
        self.status.l1_head = head
        self.status.safe_block, self.status.finalized_block = [
            None if posted is None else min(posted, self.status.verified_block)
            for posted in [await posted_block_at(l1, self.inbox, tag) for tag in SETTLED_TAGS]]


def sync_status_of_follower(follower: BatchFollower) -> dict[str, Any]:
    status = follower.status
    return {
        "enabled": True, "mode": "follower", "inbox": to_hex(follower.inbox),
        "batches": hex(status.batches), "verifiedBlock": hex(status.verified_block),
        "safeBlock": None if status.safe_block is None else hex(status.safe_block),
        "finalizedBlock": None if status.finalized_block is None else hex(status.finalized_block),
        "l1Head": None if status.l1_head is None else hex(status.l1_head),
        "lastError": status.last_error, "stopped": status.failed,
    }
