"""The auditor: rebuild the L2 from L1 alone and check every committed root.

For each ``BatchAppended`` event of the inbox, in order, the auditor fetches the
transaction that emitted it, takes the batch data from its calldata (checking it
against the ``dataHash`` the contract computed), decodes it (``codec``), and builds
each block with ``Blockchain.build_block``: the function the sequencer seals its own
blocks with, given the same attributes (timestamp, fee recipient, extra data) and the
same transactions.  Every transaction must go in; after the batch's last block the
state root and block hash must equal those committed on L1.  Equal block hashes mean
equal headers, so equal transactions, receipts and logs.

Only one root per batch is committed, so a divergence inside a batch is named at the
batch's last block, unless a transaction is refused earlier (then at that block).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import AsyncIterator, Callable

from eth_hash.auto import keccak

from ..chain import senders
from ..chain.chain import Blockchain, SealedBlock
from . import codec, inbox
from .l1 import L1Client, hex_bytes

LOG_RANGE = 10_000  # L1 blocks per eth_getLogs query


class ReplayError(Exception):
    """The first problem found: batch ``batch``, L2 block ``block``, and why."""

    def __init__(self, batch: int, block: int | None, reason: str) -> None:
        self.batch = batch
        self.block = block
        self.reason = reason
        where = f"batch {batch}" + (f", block {block}" if block is not None else "")
        super().__init__(f"{where}: {reason}")


class InboxMismatch(Exception):
    """The inbox is not one this replay can use (no contract, another chain's genesis)."""


@dataclass
class ReplaySummary:
    batches: int = 0
    blocks: int = 0
    transactions: int = 0
    seconds: float = 0.0
    execute_seconds: float = 0.0  # of which spent building blocks
    head_number: int = 0
    head_hash: bytes = b""
    state_root: bytes = b""
    l1_head: int = 0  # the L1 block the events were read up to
    last_event: tuple[int, int] = (0, -1)  # (L1 block, log index) of the last batch's event


async def check_inbox(l1: L1Client, address: bytes, blockchain: Blockchain) -> None:
    if not await l1.code(address):
        raise InboxMismatch(f"no contract at 0x{address.hex()} on the L1")
    genesis = await l1.eth_call(address, inbox.L2_GENESIS)
    ours = blockchain.header_by_number(0).hash
    if genesis != ours:
        raise InboxMismatch(f"the inbox records L2 genesis 0x{genesis.hex()}, the genesis file gives 0x{ours.hex()}")


async def batch_records(l1: L1Client, address: bytes, from_block: int = 0,
                        to_block: int | None = None) -> AsyncIterator[inbox.BatchRecord]:
    """Every BatchAppended event of the inbox from ``from_block`` to ``to_block`` (the L1 head), in order."""
    head = await l1.block_number() if to_block is None else to_block
    start = from_block
    while start <= head:
        end = min(start + LOG_RANGE - 1, head)
        logs = await l1.logs(address, inbox.EVENT_TOPIC, start, end)
        logs.sort(key=lambda entry: (int(entry["blockNumber"], 16), int(entry["logIndex"], 16)))
        for entry in logs:
            if not entry.get("removed"):
                yield inbox.BatchRecord.from_log(entry)
        start = end + 1


async def batch_data(l1: L1Client, address: bytes, record: inbox.BatchRecord,
                     since: tuple[int, int] = (0, -1)) -> bytes:
    """The batch data from the calldata of the transactions that appended ``record``: its
    frames (if any, appended after L1 position ``since``, the previous batch's event) and
    the closing appendBatch."""
    final = await _calldata(l1, address, record, record.l1_tx)
    try:
        call = inbox.AppendCall.decode(final)
    except ValueError as exc:
        raise ReplayError(record.index, record.first_block, f"L1 transaction calldata: {exc}") from None
    if call.index != record.index:
        raise ReplayError(record.index, record.first_block, "the L1 transaction appends another batch")
    parts = [call.data]
    if record.frames > 1:
        parts = await _frames(l1, address, record, since) + parts
    if inbox.frames_hash(parts) != record.data_hash:
        raise ReplayError(record.index, record.first_block, "the L1 transactions' data does not hash to the recorded dataHash")
    return b"".join(parts)


async def _calldata(l1: L1Client, address: bytes, record: inbox.BatchRecord, tx_hash: bytes) -> bytes:
    tx = await l1.transaction(tx_hash)
    if tx is None:
        raise ReplayError(record.index, record.first_block, f"L1 transaction 0x{tx_hash.hex()} not found")
    if (tx.get("to") or "").lower() != "0x" + address.hex():
        raise ReplayError(record.index, record.first_block, f"L1 transaction 0x{tx_hash.hex()} is not a call to the inbox")
    return hex_bytes(tx["input"])


async def _frames(l1: L1Client, address: bytes, record: inbox.BatchRecord, since: tuple[int, int]) -> list[bytes]:
    """The frames of ``record``: those appended after the last discard, in order."""
    logs = await l1.logs(address, [inbox.FRAME_EVENT_TOPIC, inbox.DISCARD_EVENT_TOPIC], since[0], record.l1_block,
                         topic1=record.index.to_bytes(32, "big"))
    events = sorted((inbox.FrameRecord.from_log(entry) for entry in logs if not entry.get("removed")),
                    key=lambda e: (e.l1_block, e.log_index))
    events = [e for e in events if since < (e.l1_block, e.log_index) < (record.l1_block, record.log_index)]
    while any(e.frame is None for e in events):
        events = events[[e.frame is None for e in events].index(True) + 1:]  # after a discard
    if [e.frame for e in events] != list(range(record.frames - 1)):
        raise ReplayError(record.index, record.first_block, f"L1 holds frames {[e.frame for e in events]} "
                          f"for a batch of {record.frames} parts")
    parts = []
    for event in events:
        try:
            call = inbox.FrameCall.decode(await _calldata(l1, address, record, event.l1_tx))
        except ValueError as exc:
            raise ReplayError(record.index, record.first_block, f"frame {event.frame}: {exc}") from None
        if (call.index, call.frame) != (record.index, event.frame) or keccak(call.data) != event.frame_hash:
            raise ReplayError(record.index, record.first_block, f"frame {event.frame}: calldata does not match its event")
        parts.append(call.data)
    return parts


def apply_batch(blockchain: Blockchain, record: inbox.BatchRecord, data: bytes,
                on_block: Callable[[SealedBlock], None] | None = None) -> tuple[int, int]:
    """Decode and execute one batch on ``blockchain``; (blocks, transactions) added.

    Blocks the datadir already holds (an earlier, interrupted replay) are not rebuilt;
    the batch's committed roots are still checked against them."""
    try:
        blocks = codec.decode_batch(data)
    except codec.BatchDecodeError as exc:
        raise ReplayError(record.index, record.first_block, f"undecodable batch data: {exc.reason}") from None
    if blocks[0].number != record.first_block or blocks[-1].number != record.last_block:
        raise ReplayError(record.index, blocks[0].number, f"the data holds blocks {blocks[0].number}-{blocks[-1].number}, "
                          f"L1 records {record.first_block}-{record.last_block}")
    todo = [block for block in blocks if block.number > blockchain.head.block_number]
    decoded = [_decode(blockchain, record.index, block) for block in todo]
    # Senders of the blocks ahead are recovered in a second process while a block executes.
    worker = senders.shared_worker() if sum(len(block.transactions) for block in todo) >= _WORKER_MIN_TXS else None
    tickets: dict[int, list] = {}
    submitted = in_flight = 0
    added = txs = 0
    for i, block in enumerate(todo):
        if worker is not None:
            submitted = max(submitted, i + 1)
            while submitted < len(todo) and in_flight + len(todo[submitted].transactions) <= worker.MAX_IN_FLIGHT:
                if isinstance(decoded[submitted], list):
                    tickets[submitted] = worker.submit(decoded[submitted])
                    in_flight += len(todo[submitted].transactions)
                submitted += 1
            if i in tickets:
                worker.collect(tickets.pop(i))
                in_flight -= len(block.transactions)
        _check_header(blockchain, record.index, block)
        if isinstance(decoded[i], ReplayError):
            raise decoded[i]
        sealed = _build(blockchain, record.index, block, decoded[i])
        if on_block is not None:
            on_block(sealed)
        added += 1
        txs += len(block.transactions)
    last = blockchain.header_by_number(record.last_block)
    if last.state_root != record.state_root:
        raise ReplayError(record.index, record.last_block, f"state root 0x{last.state_root.hex()} differs from the "
                          f"root committed on L1, 0x{record.state_root.hex()}")
    if last.hash != record.block_hash:
        raise ReplayError(record.index, record.last_block, f"block hash 0x{last.hash.hex()} differs from the hash "
                          f"committed on L1, 0x{record.block_hash.hex()}")
    return added, txs


_WORKER_MIN_TXS = 512  # smaller batches: the worker's round trips cost more than they save


def _decode(blockchain: Blockchain, batch: int, block: codec.BatchBlock):
    """The block's transactions, or the ReplayError to raise when the block's turn comes."""
    transactions = []
    builder = blockchain.chain.vm_class_for(block.number, block.timestamp).get_transaction_builder()
    for i, raw in enumerate(block.transactions):
        try:
            transactions.append(builder.decode(raw))
        except Exception as exc:  # py-evm raises many types on malformed encodings
            return ReplayError(batch, block.number, f"transaction {i} cannot be decoded: {type(exc).__name__}")
    return transactions


def _check_header(blockchain: Blockchain, batch: int, block: codec.BatchBlock) -> None:
    parent = blockchain.head
    if block.number != parent.block_number + 1:
        raise ReplayError(batch, block.number, f"follows block {parent.block_number}")
    if block.timestamp <= parent.timestamp:
        raise ReplayError(batch, block.number, f"timestamp {block.timestamp} not after the parent's {parent.timestamp}")
    if block.gas_limit != parent.gas_limit:
        raise ReplayError(batch, block.number, f"gas limit {block.gas_limit} differs from the parent's {parent.gas_limit}")


def _build(blockchain: Blockchain, batch: int, block: codec.BatchBlock, transactions: list) -> SealedBlock:
    senders.prime(transactions)  # those the worker did not answer
    sealed = blockchain.build_block(transactions, timestamp=block.timestamp, coinbase=block.fee_recipient,
                                    extra_data=block.extra_data)
    if sealed.rejected:
        tx, reason = sealed.rejected[0]
        raise ReplayError(batch, block.number, f"transaction 0x{tx.hash.hex()} refused: {reason}")
    if len(sealed.block.transactions) != len(transactions):
        raise ReplayError(batch, block.number, f"only {len(sealed.block.transactions)} of {len(transactions)} "
                          "transactions fit in the block's gas limit")
    return sealed


L1_HEADS = ("latest", "safe", "finalized")


async def l1_head(l1: L1Client, tag: str = "latest") -> int:
    """The number of L1's ``tag`` block: the last L1 block whose batches are read."""
    if tag == "latest":
        return await l1.block_number()
    return (await l1.block(tag)).number


async def replay(
    l1: L1Client,
    address: bytes,
    blockchain: Blockchain,
    *,
    from_l1_block: int = 0,
    head_tag: str = "latest",
    progress: Callable[[ReplaySummary, inbox.BatchRecord], None] | None = None,
) -> ReplaySummary:
    """Replay every batch of the inbox, up to L1's ``head_tag`` block ("latest", or "safe" /
    "finalized": batches an L1 reorganisation can no longer drop), onto ``blockchain``;
    ReplayError at the first problem."""
    await check_inbox(l1, address, blockchain)
    summary = ReplaySummary()
    started = time.perf_counter()
    summary.l1_head = await l1_head(l1, head_tag)
    since = summary.last_event = (from_l1_block, -1)
    async for record in batch_records(l1, address, from_l1_block, summary.l1_head):
        if record.index != summary.batches:
            raise ReplayError(record.index, record.first_block, f"expected batch {summary.batches} next")
        data = await batch_data(l1, address, record, since)
        since = summary.last_event = (record.l1_block, record.log_index)
        executing = time.perf_counter()
        blocks, txs = apply_batch(blockchain, record, data)
        summary.execute_seconds += time.perf_counter() - executing
        summary.batches += 1
        summary.blocks += blocks
        summary.transactions += txs
        if progress is not None:
            progress(summary, record)
    head = blockchain.head
    summary.head_number, summary.head_hash, summary.state_root = head.block_number, head.hash, head.state_root
    summary.seconds = time.perf_counter() - started
    return summary
