"""The batch poster: puts the node's blocks on L1, in order, each exactly once.

L1 is the only record of what was posted.  Every round the poster reads the inbox's
``batchCount``/``nextBlock`` and its own confirmed nonce, closes the next batch from
the local chain (when it is big or old enough), and sends ``appendBatch`` with the
confirmed nonce.  Nothing else is remembered, so a restart changes nothing:

- a batch is appended at most once: the contract takes the expected batch index
  and first block, and reverts on anything else;
- an earlier run's transaction still in the L1 pool holds the same nonce: the new one
  replaces it (same batch index) or fails with "nonce too low" after it was mined, and
  the next round reads the new state;
- a transaction not included after ``stuck_seconds`` is sent again with the same nonce
  and fees raised by a quarter (replacement rules ask for at least 10%);
- an unreachable L1 is retried with exponential backoff.

The poster never executes transactions: it reads sealed blocks and their headers.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_hash.auto import keccak
from eth_utils import to_checksum_address

from ..chain.chain import Blockchain
from . import codec, inbox
from .l1 import L1Block, L1Client, L1RPCError, L1Unavailable, hex_int, to_hex

log = logging.getLogger("openledger.poster")

KEY_ENV = "OPENLEDGER_BATCHER_KEY"
PASSWORD_ENV = "OPENLEDGER_BATCHER_PASSWORD"


class PosterConfigError(Exception):
    """The poster cannot run as configured; the message says why in one line."""


@dataclass
class PosterConfig:
    l1_rpc: str
    inbox: bytes
    max_batch_bytes: int = 100_000  # compressed batch data; L1 pools refuse transactions over 128 KiB
    max_batch_age: float = 30.0  # seconds a block may wait before its batch is closed
    poll_seconds: float = 1.0
    stuck_seconds: float = 30.0  # resend with higher fees when not included by then
    fee_bump_num: int = 5  # fees times 5/4 per resend
    fee_bump_den: int = 4
    max_fee_per_gas: int = 500 * 10**9  # never bid above this
    backoff_min: float = 0.5
    backoff_max: float = 30.0
    codec_version: int = codec.DEFAULT_VERSION
    l1_chain_id: int | None = None  # the L1 must answer this eth_chainId when set


@dataclass
class PosterStatus:
    """What the poster last saw on L1 (for ol_syncStatus and logs)."""

    l1_head: L1Block | None = None
    batches: int | None = None  # batches the inbox holds
    posted_block: int | None = None  # last L2 block the inbox holds
    safe_block: int | None = None  # ... in L1's safe block
    finalized_block: int | None = None  # ... in L1's finalized block
    pending_tx: bytes | None = None
    last_error: str | None = None
    stopped_reason: str | None = None
    sent: list[tuple[int, bytes]] = field(default_factory=list)  # (batch index, tx hash) sent by this run


def load_batcher_key(keystore: Path | None) -> bytes:
    """The batcher's private key: from a keystore file (password in OPENLEDGER_BATCHER_PASSWORD)
    or from OPENLEDGER_BATCHER_KEY."""
    if keystore is not None:
        password = os.environ.get(PASSWORD_ENV)
        if password is None:
            raise PosterConfigError(f"--l1-keystore needs the keystore password in {PASSWORD_ENV}")
        try:
            return bytes(Account.decrypt(json.loads(Path(keystore).read_text()), password))
        except OSError as exc:
            raise PosterConfigError(f"cannot read keystore {keystore}: {exc.strerror or exc}") from None
        except ValueError as exc:  # bad JSON, bad MAC (wrong password)
            raise PosterConfigError(f"cannot decrypt keystore {keystore}: {exc}") from None
    raw = os.environ.get(KEY_ENV)
    if not raw:
        raise PosterConfigError(f"the batcher key is needed: --l1-keystore PATH (with {PASSWORD_ENV}) or {KEY_ENV}")
    try:
        key = bytes.fromhex(raw.removeprefix("0x"))
    except ValueError:
        key = b""
    if len(key) != 32:
        raise PosterConfigError(f"{KEY_ENV} must be a 32-byte hex private key")
    return key


def poster_from_config(blockchain: Blockchain, node_config: Any) -> BatchPoster:
    """The poster a NodeConfig with ``l1_rpc`` set asks for (PosterConfigError if it cannot run)."""
    raw = (node_config.l1_inbox or "").removeprefix("0x")
    try:
        address = bytes.fromhex(raw)
    except ValueError:
        address = b""
    if len(address) != 20:
        raise PosterConfigError("--l1-inbox must be the 20-byte address of the BatchInbox contract on the L1")
    config = PosterConfig(l1_rpc=node_config.l1_rpc, inbox=address, max_batch_age=node_config.batch_max_age,
                          max_batch_bytes=node_config.batch_max_bytes, l1_chain_id=node_config.l1_chain_id)
    if config.max_batch_bytes < 1000:
        raise PosterConfigError("batch_max_bytes must be at least 1000")
    return BatchPoster(blockchain, config, load_batcher_key(node_config.l1_keystore))


class _Resync(Exception):
    """L1 moved under us (another transaction took the nonce, a revert): read it again."""


class BatchPoster:
    def __init__(self, blockchain: Blockchain, config: PosterConfig, key: bytes) -> None:
        self.chain = blockchain
        self.config = config
        self.account = Account.from_key(key)
        self.address = bytes.fromhex(self.account.address[2:])
        self.status = PosterStatus()
        self._stop = asyncio.Event()
        self._l1: L1Client | None = None
        self._l1_chain_id: int | None = None
        self._checked = False
        self._settled_at: int | None = None  # the L1 block whose safe and finalized heads were last read
        self._ratio = 2.0  # uncompressed/compressed size of the last batch: sizes the next one
        self._waiting: tuple[int, float] | None = None  # (first unposted block, monotonic time first seen)

    # -- running --------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Post until stopped; only a misconfiguration (wrong inbox, wrong batcher) ends it early."""
        self._l1 = L1Client(self.config.l1_rpc)
        backoff = self.config.backoff_min
        log.info("batch poster: batcher 0x%s, inbox 0x%s on %s", self.address.hex(), self.config.inbox.hex(),
                 self.config.l1_rpc)
        try:
            while not self._stop.is_set():
                try:
                    posted = await self._round()
                    backoff = self.config.backoff_min
                    self.status.last_error = None
                    if not posted:
                        await self._sleep(self.config.poll_seconds)
                except (L1Unavailable, L1RPCError, _Resync) as exc:
                    self.status.last_error = str(exc)
                    log.warning("batch poster: %s; retrying in %.1fs", exc, backoff)
                    await self._sleep(backoff)
                    backoff = min(backoff * 2, self.config.backoff_max)
                except PosterConfigError:
                    raise
                except Exception as exc:  # an L1 answer we cannot read, or a bug: keep the poster alive
                    self.status.last_error = f"{type(exc).__name__}: {exc}"
                    log.exception("batch poster: unexpected error; retrying in %.1fs", backoff)
                    await self._sleep(backoff)
                    backoff = min(backoff * 2, self.config.backoff_max)
        except PosterConfigError as exc:
            self.status.stopped_reason = str(exc)
            log.error("batch poster stopped: %s", exc)
        finally:
            await self._l1.close()

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    # -- one round: read L1, maybe post one batch -----------------------------------------------
    async def _read_l1(self) -> tuple[int, int]:
        """(batch count, next block) as the inbox holds them at the L1 head."""
        l1, box = self._l1, self.config.inbox
        self.status.l1_head = await l1.block("latest")
        if not self._checked:
            await self._check_inbox()
        count = inbox.decode_uint(await l1.eth_call(box, inbox.BATCH_COUNT))
        next_block = inbox.decode_uint(await l1.eth_call(box, inbox.NEXT_BLOCK))
        if self.status.batches != count:
            log.info("L1 holds %d batches, L2 blocks up to %d (L1 block %d)", count, next_block - 1,
                     self.status.l1_head.number)
        self.status.batches, self.status.posted_block = count, next_block - 1
        if self._settled_at != self.status.l1_head.number:  # once per L1 block
            self.status.safe_block, self.status.finalized_block = [
                await inbox.posted_block_at(l1, box, tag) for tag in inbox.SETTLED_TAGS]
            self._settled_at = self.status.l1_head.number
        return count, next_block

    async def _check_inbox(self) -> None:
        l1, box = self._l1, self.config.inbox
        chain_id = await l1.chain_id()
        if self.config.l1_chain_id is not None and chain_id != self.config.l1_chain_id:
            raise PosterConfigError(f"the L1 at {self.config.l1_rpc} has chain id {chain_id}, "
                                    f"not the configured {self.config.l1_chain_id}")
        if not await l1.code(box):
            raise PosterConfigError(f"no contract at the inbox address 0x{box.hex()} on the L1")
        batcher = inbox.decode_address(await l1.eth_call(box, inbox.BATCHER))
        if batcher != self.address:
            raise PosterConfigError(f"the inbox's batcher is 0x{batcher.hex()}, not this key's 0x{self.address.hex()}")
        genesis = await l1.eth_call(box, inbox.L2_GENESIS)
        ours = self.chain.header_by_number(0).hash
        if genesis != ours:
            raise PosterConfigError(f"the inbox is for L2 genesis 0x{genesis.hex()}, this chain's is 0x{ours.hex()}")
        self._l1_chain_id = chain_id
        self._checked = True

    async def _round(self) -> bool:
        """Post the next batch if one is due; True when one was posted."""
        count, next_block = await self._read_l1()
        head = self.chain.head.block_number
        if next_block > head + 1:
            raise PosterConfigError(f"L1 holds L2 blocks up to {next_block - 1}, beyond this chain's head {head}")
        if next_block > head:
            return False
        if self._waiting is None or self._waiting[0] != next_block:
            self._waiting = (next_block, time.monotonic())
        call = await self._close_batch(count, next_block, head, time.monotonic() - self._waiting[1])
        if call is None:
            return False
        await self._post(call)
        return True

    async def _close_batch(self, index: int, first: int, head: int, waited: float) -> inbox.AppendCall | None:
        """The batch to post now, or None while the unposted blocks are neither big nor old enough.

        Age is how long block ``first`` has waited since this poster saw it (``waited``
        seconds), not its timestamp: on-demand blocks may carry timestamps ahead of the clock.

        Blocks are added while their uncompressed RLP stays under a budget (the size limit
        times the compression ratio of the last batch); the batch is compressed in a worker
        thread (brotli releases the GIL) and, while over ``max_batch_bytes``, cut down."""
        limit = self.config.max_batch_bytes
        budget = min(int(limit * self._ratio), codec.MAX_DECOMPRESSED_BYTES // 2)
        blocks: list[codec.BatchBlock] = []
        size = 0
        full = False
        number = first
        while number <= head:
            block = codec.batch_block_of(self.chain.block(self.chain.header_by_number(number)))
            entry = len(codec.encode_blocks([block]))
            if blocks and size + entry > budget:
                full = True
                break
            blocks.append(block)
            size += entry
            number += 1
        if not full and waited < self.config.max_batch_age:
            return None
        while True:
            data = await asyncio.to_thread(codec.encode_batch, blocks, self.config.codec_version)
            self._ratio = max(1.0, len(codec.encode_blocks(blocks)) / len(data))
            if len(data) <= limit or len(blocks) == 1:
                break  # one block over the limit goes in frames (_post)
            blocks = blocks[:max(1, len(blocks) * limit // len(data) * 19 // 20)]
        last = self.chain.header_by_number(blocks[-1].number)
        return inbox.AppendCall(index, first, last.block_number, last.state_root, last.hash, data)

    async def _fees(self) -> tuple[int, int]:
        """(max fee, priority fee) for a new transaction: twice the base fee plus the tip."""
        tip = await self._l1.max_priority_fee()
        base = self.status.l1_head.base_fee if self.status.l1_head else 0
        return min(2 * base + tip, self.config.max_fee_per_gas), min(tip, self.config.max_fee_per_gas)

    async def _post(self, call: inbox.AppendCall) -> None:
        """Post batch ``call``: in one transaction, or, when its data is over the limit (a
        single big block), as frames closed by appendBatch.  Frames that an earlier run left
        on L1 are continued when they are this batch's, else discarded first."""
        limit = self.config.max_batch_bytes
        parts = [call.data[i:i + limit] for i in range(0, len(call.data), limit)]
        box = self.config.inbox
        pending = inbox.decode_uint(await self._l1.eth_call(box, inbox.PENDING_FRAMES))
        if pending:
            posted = await self._posted_frames(call.index)
            if len(posted) != pending or pending >= len(parts) or \
                    any(keccak(part) != frame_hash for part, frame_hash in zip(parts, posted)):
                await self._transact(f"batch {call.index}", f"discarding {pending} stale frames",
                                     inbox.discard_call(call.index))
                raise _Resync(f"discarded {pending} frames of batch {call.index} that this batch does not continue")
            log.info("batch %d: continuing after the %d frames L1 holds", call.index, pending)
        for frame in range(pending, len(parts) - 1):
            await self._transact(f"batch {call.index} frame {frame}", f"{len(parts[frame])} bytes",
                                 inbox.FrameCall(call.index, frame, parts[frame]).encode())
        closing = inbox.AppendCall(call.index, call.first_block, call.last_block, call.state_root, call.block_hash,
                                   parts[-1])
        detail = f"L2 blocks {call.first_block}-{call.last_block}, {len(call.data)} bytes" + (
            f" in {len(parts)} parts" if len(parts) > 1 else "")
        receipt = await self._transact(f"batch {call.index}", detail, closing.encode(), index=call.index)
        if receipt is not None:
            self.status.batches, self.status.posted_block = call.index + 1, call.last_block

    async def _posted_frames(self, index: int) -> list[bytes]:
        """Hashes of the frames of batch ``index`` on L1, after its last discard."""
        since = 0
        if index:
            record = await self._l1.eth_call(self.config.inbox, inbox.call_data("batch(uint256)", ["uint256"], [index - 1]))
            since = inbox.decode_uint(record[64:96])  # Batch.l1Block
        logs = await self._l1.logs(self.config.inbox, [inbox.FRAME_EVENT_TOPIC, inbox.DISCARD_EVENT_TOPIC], since,
                                   self.status.l1_head.number, topic1=index.to_bytes(32, "big"))
        events = sorted((inbox.FrameRecord.from_log(entry) for entry in logs if not entry.get("removed")),
                        key=lambda e: (e.l1_block, e.log_index))
        hashes: list[bytes] = []
        for event in events:
            hashes = [] if event.frame is None else hashes + [event.frame_hash]
        return hashes

    async def _transact(self, what: str, detail: str, calldata: bytes,
                        index: int | None = None) -> dict[str, Any] | None:
        """Send ``calldata`` to the inbox at the confirmed nonce and wait for its inclusion,
        resending with higher fees while stuck; the receipt, or None when stopped first."""
        l1, cfg = self._l1, self.config
        nonce = await l1.nonce(self.address, "latest")
        pending = await l1.nonce(self.address, "pending")
        try:
            gas = await l1.estimate_gas(self.address, cfg.inbox, calldata)
        except L1RPCError as exc:
            reason = inbox.describe_revert(exc.data)
            if pending > nonce:
                # An earlier run's transaction (this very batch, most likely) is in the pool.
                raise _Resync(f"{what}: does not apply on L1 ({reason}) while a transaction "
                              f"of ours is pending; waiting for it") from None
            raise _Resync(f"{what}: would revert: {reason}") from None
        gas = gas * 5 // 4
        max_fee, tip = await self._fees()
        if pending > nonce:
            log.info("batcher nonce %d is held by a pending transaction: replacing it (%s)", nonce, what)
        sent: list[bytes] = []
        sent_at = 0.0
        while not self._stop.is_set():
            if not sent or time.monotonic() - sent_at >= cfg.stuck_seconds:
                if sent:
                    max_fee, tip = self._bumped(max_fee, tip)
                    log.warning("%s: not included after %.0fs: resending with max fee %d, tip %d",
                                what, cfg.stuck_seconds, max_fee, tip)
                tx_hash = await self._send(what, detail, calldata, nonce, gas, max_fee, tip)
                if tx_hash is None:  # underpriced as a replacement: bid higher at once
                    bumped = self._bumped(max_fee, tip)
                    if bumped == (max_fee, tip):
                        raise _Resync(f"{what}: the L1 wants a higher fee than the cap "
                                      f"({cfg.max_fee_per_gas} wei) to replace our pending transaction")
                    max_fee, tip = bumped
                    continue
                sent.append(tx_hash)
                sent_at = time.monotonic()
                self.status.pending_tx = tx_hash
                if index is not None:
                    self.status.sent.append((index, tx_hash))
            await self._sleep(cfg.poll_seconds / 4)
            confirmed_nonce = await l1.nonce(self.address, "latest")  # read before the receipts
            for tx_hash in sent:
                receipt = await l1.receipt(tx_hash)
                if receipt is None:
                    continue
                self.status.pending_tx = None
                if hex_int(receipt["status"]) != 1:
                    raise _Resync(f"{what}: transaction 0x{tx_hash.hex()} reverted on L1")
                log.info("%s posted: %s, L1 block %d, gas %d, tx 0x%s", what, detail,
                         hex_int(receipt["blockNumber"]), hex_int(receipt["gasUsed"]), tx_hash.hex())
                return receipt
            if confirmed_nonce > nonce:
                # The nonce went to a transaction other than the ones sent here (an earlier run's).
                self.status.pending_tx = None
                raise _Resync(f"batcher nonce {nonce} was used by another transaction; re-reading the inbox")
        return None

    def _bumped(self, max_fee: int, tip: int) -> tuple[int, int]:
        cfg = self.config
        bump = lambda fee: max(fee * cfg.fee_bump_num // cfg.fee_bump_den, fee + 1)  # noqa: E731
        if max_fee >= cfg.max_fee_per_gas:
            log.error("batch poster: fee cap of %d wei reached; not bidding higher", cfg.max_fee_per_gas)
            return max_fee, tip
        new_fee = min(bump(max_fee), cfg.max_fee_per_gas)
        return new_fee, min(bump(tip), new_fee)

    async def _send(self, what: str, detail: str, calldata: bytes, nonce: int, gas: int, max_fee: int,
                    tip: int) -> bytes | None:
        """Send; the hash, or None when the L1 refuses it as an underpriced replacement."""
        tx = {
            "type": 2, "chainId": self._l1_chain_id, "nonce": nonce, "to": to_checksum_address(self.config.inbox),
            "value": 0, "gas": gas, "maxFeePerGas": max_fee, "maxPriorityFeePerGas": tip, "data": calldata,
        }
        signed = self.account.sign_transaction(tx)
        note = ""
        try:
            tx_hash = await self._l1.send_raw(bytes(signed.raw_transaction))
        except L1RPCError as exc:
            message = exc.message.lower()
            if "already known" in message or "already imported" in message or "known transaction" in message:
                # The very same transaction (an earlier run built the same batch at the same fees).
                tx_hash, note = bytes(signed.hash), " (already in the L1 pool)"
            elif "underpriced" in message or "replacement" in message:
                return None
            elif "nonce too low" in message:
                raise _Resync(f"batcher nonce {nonce} already used: {exc.message}") from None
            else:
                raise
        log.info("%s sent: %s, nonce %d, tx 0x%s%s", what, detail, nonce, tx_hash.hex(), note)
        return tx_hash


def sync_status_of(poster: BatchPoster | None) -> dict[str, Any]:
    """The poster's part of ol_syncStatus."""
    if poster is None:
        return {"enabled": False}
    status = poster.status
    head = status.l1_head
    return {
        "enabled": True,
        "inbox": to_hex(poster.config.inbox),
        "batcher": to_hex(poster.address),
        "l1Head": None if head is None else {"number": hex(head.number), "hash": to_hex(head.hash),
                                             "timestamp": hex(head.timestamp)},
        "batches": None if status.batches is None else hex(status.batches),
        "postedBlock": None if status.posted_block is None else hex(status.posted_block),
        "safeBlock": None if status.safe_block is None else hex(status.safe_block),
        "finalizedBlock": None if status.finalized_block is None else hex(status.finalized_block),
        "pendingTx": None if status.pending_tx is None else to_hex(status.pending_tx),
        "lastError": status.last_error,
        "stopped": status.stopped_reason,
    }

