"""The sequencer: turns pool transactions into sealed blocks on a timer or on demand."""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable


from eth.vm.forks.london.headers import calculate_expected_base_fee_per_gas

from .chain.chain import Blockchain, SealedBlock
from .txpool import TxPool

log = logging.getLogger("openledger.sequencer")

COALESCE_STEP_SECONDS = 0.002
COALESCE_MAX_SECONDS = 0.05


def next_base_fee_after(header) -> int:
    """Base fee of a block built on ``header`` (EIP-1559); 0 before London."""
    if getattr(header, "base_fee_per_gas", None) is None:
        return 0
    return calculate_expected_base_fee_per_gas(header)


def next_base_fee(blockchain: Blockchain) -> int:
    return next_base_fee_after(blockchain.head)


class Sequencer:
    """Seals blocks from the pool.

    ``block_time`` > 0: one block every ``block_time`` seconds, empty or not (like
    anvil's interval mining).  ``block_time`` == 0: a block as soon as transactions
    wait, holding every transaction that arrived while the previous one was sealed.
    """

    def __init__(
        self,
        blockchain: Blockchain,
        pool: TxPool,
        *,
        block_time: float,
        coinbase: bytes,
        mining: bool = True,
    ) -> None:
        self.chain = blockchain
        self.pool = pool
        self.block_time = block_time
        self.coinbase = coinbase
        self.mining = mining
        self.listeners: list[Callable[[SealedBlock], None]] = []
        self._wake = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._stopping = False
        pool.listeners.append(lambda _tx: self._wake.set())

    def seal(self, timestamp: int | None = None) -> SealedBlock:
        """Build and commit one block from what the pool holds now."""
        base_fee = next_base_fee(self.chain)
        sealed = self.chain.build_block(
            self.pool.candidates(base_fee),
            timestamp=int(time.time()) if timestamp is None else timestamp,
            coinbase=self.coinbase,
        )
        for tx, reason in sealed.rejected:
            log.warning("dropped transaction %s: %s", "0x" + tx.hash.hex(), reason)
            self.pool.drop(tx.hash)
        senders = {tx.sender for tx in sealed.block.transactions}
        self.pool.remove_stale(senders)
        header = sealed.block.header
        log.info(
            "sealed block %d txs=%d gas=%d ms=%.1f hash=0x%s",
            header.block_number, len(sealed.block.transactions), header.gas_used,
            sealed.seconds * 1000, header.hash.hex()[:16],
        )
        for listener in self.listeners:
            try:
                listener(sealed)
            except Exception:  # a broken subscriber must not stop block production
                log.exception("block listener failed")
        return sealed

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless asked to stop; returns False when stopping."""
        try:
            await asyncio.wait_for(self._stop_requested.wait(), seconds)
        except asyncio.TimeoutError:
            pass
        return not self._stopping

    async def _gather(self) -> None:
        """On-demand mode: while transactions keep arriving, let them in before sealing
        (a few ms), so a burst becomes one block rather than one block per request."""
        deadline = time.monotonic() + COALESCE_MAX_SECONDS
        seen = -1
        while len(self.pool) != seen and time.monotonic() < deadline:
            seen = len(self.pool)
            await asyncio.sleep(COALESCE_STEP_SECONDS)

    async def run(self) -> None:
        if not self.mining:
            return
        if self.block_time > 0:
            next_at = time.monotonic() + self.block_time
            while await self._sleep(max(0.0, next_at - time.monotonic())):
                self.seal()
                # The next block is due one interval after this one was due, or, if sealing
                # overran the interval, one interval from now (no burst of near-empty blocks).
                next_at = max(next_at + self.block_time, time.monotonic() + self.block_time)
        else:
            while not self._stopping:
                await self._wake.wait()
                self._wake.clear()
                if self._stopping:
                    break
                await self._gather()
                if not self.has_ready():
                    continue
                sealed = self.seal()
                await asyncio.sleep(0)  # let RPC handlers run between blocks
                if sealed.block.transactions and self.has_ready():
                    self._wake.set()

    def has_ready(self) -> bool:
        """Whether the pool holds a transaction that could go into the next block."""
        return len(self.pool) > 0 and next(iter(self.pool.candidates(next_base_fee(self.chain))), None) is not None

    def stop(self) -> None:
        self._stopping = True
        self._stop_requested.set()
        self._wake.set()
