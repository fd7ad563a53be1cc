"""Log queries and polling filters: ``eth_getLogs``, ``eth_newFilter`` and friends, as geth serves them.

Filters live in memory on the node's event-loop thread and fill from two hooks: the
sequencer's block listeners (new block hashes, matching logs) and the pool's
listeners (pending transaction hashes). A filter that nobody polls for ``timeout``
seconds (geth: 5 minutes) is dropped, checked lazily whenever a hook or a filter
method runs, and each filter buffers at most ``max_buffered`` changes (the oldest
go first), so a forgotten filter costs bounded memory.
"""
from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from eth.abc import BlockHeaderAPI, SignedTransactionAPI
from eth_bloom import BloomFilter

from .encoding import parse_address, parse_block_tag, parse_bool, parse_hash, to_data, to_quantity
from .jsonrpc import Dispatcher, InvalidParams, LimitExceeded, ServerError
from .views import transaction_json

if TYPE_CHECKING:
    from ..chain.chain import SealedBlock
    from ..node import Node

log = logging.getLogger("openledger.rpc.filters")

FILTER_TIMEOUT = 300.0  # geth's deadline: a filter not polled for 5 minutes is uninstalled
MAX_BLOCK_RANGE = 10_000  # blocks one eth_getLogs may scan
MAX_RESULTS = 10_000  # logs one eth_getLogs may return (Infura's and Alchemy's figure)
MAX_BUFFERED = 10_000  # changes one filter holds between polls
MAX_ADDRESSES = 1_000  # geth's maxAddresses
MAX_TOPICS = 4  # a log has at most 4 topics, so a longer list can never match (geth rejects it)
RECENT_BLOOMS = 10_000  # sealed blocks whose logs bloom is kept in memory: a recent range reads no header
_YIELD_EVERY = 512  # blocks scanned between yields to the event loop, so the sequencer keeps sealing

LOGS, BLOCKS, PENDING_TXS = "logs", "blocks", "pendingTransactions"
RPC_METHODS = (
    "getLogs", "newFilter", "newBlockFilter", "newPendingTransactionFilter",
    "getFilterChanges", "getFilterLogs", "uninstallFilter",
)


def _bloom_mask(value: bytes) -> int:
    """The three bloom bits that ``value`` (an address or a topic) sets in a logs bloom."""
    return int(BloomFilter.from_iterable([value]))


def _any_in_bloom(bloom: int, masks: tuple[int, ...]) -> bool:
    return any(bloom & mask == mask for mask in masks)


@dataclass(frozen=True)
class LogCriteria:
    """A parsed filter object (``eth_getLogs``, ``eth_newFilter``).

    Bounds are block numbers or tags, resolved when a query runs. ``addresses`` and
    each position of ``topics`` hold lowercase "0x" hex strings, in the form the logs'
    JSON uses; empty ``addresses`` or a ``None`` position matches anything.
    """

    from_block: int | str = "latest"
    to_block: int | str = "latest"
    block_hash: bytes | None = None
    addresses: frozenset[str] = frozenset()
    topics: tuple[frozenset[str] | None, ...] = ()
    address_masks: tuple[int, ...] = ()
    topic_masks: tuple[tuple[int, ...] | None, ...] = ()

    @classmethod
    def parse(cls, obj: Any) -> "LogCriteria":
        if not isinstance(obj, dict):
            raise InvalidParams("invalid filter: expected an object")
        block_hash = obj.get("blockHash")
        raw_from, raw_to = obj.get("fromBlock"), obj.get("toBlock")
        if block_hash is not None and (raw_from is not None or raw_to is not None):
            raise InvalidParams("cannot specify both BlockHash and FromBlock/ToBlock, choose one or the other")
        from_block = "latest" if raw_from is None else parse_block_tag(raw_from, name="fromBlock", allow_eip1898=False)
        to_block = "latest" if raw_to is None else parse_block_tag(raw_to, name="toBlock", allow_eip1898=False)
        if isinstance(from_block, int) and isinstance(to_block, int) and from_block > to_block:
            raise InvalidParams("invalid block range params")
        addresses = _parse_addresses(obj.get("address"))
        topics = _parse_topics(obj.get("topics"))
        return cls(
            from_block=from_block,  # type: ignore[arg-type]
            to_block=to_block,  # type: ignore[arg-type]
            block_hash=None if block_hash is None else parse_hash(block_hash, name="blockHash"),
            addresses=frozenset("0x" + a.hex() for a in addresses),
            topics=tuple(None if alts is None else frozenset(to_data(t) for t in alts) for alts in topics),
            address_masks=tuple(_bloom_mask(a) for a in addresses),
            topic_masks=tuple(None if alts is None else tuple(_bloom_mask(t) for t in alts) for alts in topics),
        )

    def bloom_may_match(self, bloom: int) -> bool:
        """False when a block with this logs bloom surely holds no matching log."""
        if not bloom:
            return False
        if self.address_masks and not _any_in_bloom(bloom, self.address_masks):
            return False
        return all(masks is None or _any_in_bloom(bloom, masks) for masks in self.topic_masks)

    def matches(self, log_json: dict[str, Any]) -> bool:
        """geth's rule: address in the set; topics positional, and a log with fewer topics
        than the filter lists (wildcards included) does not match."""
        if self.addresses and log_json["address"] not in self.addresses:
            return False
        topics = log_json["topics"]
        if len(self.topics) > len(topics):
            return False
        return all(wanted is None or topic in wanted for wanted, topic in zip(self.topics, topics))

    def covers(self, number: int) -> bool:
        """Whether a newly sealed block ``number`` lies inside the filter's bounds (tags
        other than "earliest" are open-ended; a blockHash filter names an older block)."""
        if self.block_hash is not None:
            return False
        low = 0 if self.from_block == "earliest" else self.from_block
        high = 0 if self.to_block == "earliest" else self.to_block
        return (not isinstance(low, int) or number >= low) and (not isinstance(high, int) or number <= high)


def _parse_addresses(value: Any) -> list[bytes]:
    if value is None:
        return []
    if isinstance(value, str):
        return [parse_address(value)]
    if not isinstance(value, list):
        raise InvalidParams("invalid addresses in query")
    if len(value) > MAX_ADDRESSES:
        raise InvalidParams("exceed max addresses or topics per search position")
    return [parse_address(item, name=f"address at index {i}") for i, item in enumerate(value)]


def _parse_topics(value: Any) -> list[list[bytes] | None]:
    """Positional topics: null or [] is a wildcard, a string one topic, a list alternatives
    (a null among them makes the position a wildcard, as in geth)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidParams("invalid topic(s)")
    if len(value) > MAX_TOPICS:
        raise InvalidParams("exceed max topics")
    out: list[list[bytes] | None] = []
    for i, position in enumerate(value):
        if position is None:
            out.append(None)
        elif isinstance(position, str):
            out.append([parse_hash(position, name=f"topic {i}")])
        elif isinstance(position, list):
            if len(position) > MAX_ADDRESSES:
                raise InvalidParams("exceed max addresses or topics per search position")
            if any(alt is None for alt in position) or not position:
                out.append(None)
            else:
                out.append([parse_hash(alt, name=f"topic {i}") for alt in position])
        else:
            raise InvalidParams("invalid topic(s)")
    return out


@dataclass(eq=False)
class _Filter:
    kind: str  # LOGS, BLOCKS or PENDING_TXS
    changes: deque
    deadline: float
    criteria: LogCriteria | None = None  # LOGS
    full_tx: bool = False  # PENDING_TXS: transaction objects instead of hashes


def _normalize_id(value: Any) -> str:
    """IDs are quantities: clients may echo them with other case or leading zeros."""
    if not isinstance(value, str):
        raise InvalidParams("invalid filter id: expected a string")
    digits = value[2:] if value[:2] in ("0x", "0X") else value
    return "0x" + (digits.lower().lstrip("0") or "0")


class FilterAPI:
    """``eth_getLogs`` and the ``eth_*Filter*`` methods (registered as ``eth_<method>``).

    ``timeout``, ``clock`` and the limits are plain attributes, so tests and operators
    can tune them; ``clock`` is monotonic seconds.
    """

    def __init__(
        self,
        node: "Node",
        *,
        timeout: float = FILTER_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
        max_block_range: int = MAX_BLOCK_RANGE,
        max_results: int = MAX_RESULTS,
        max_buffered: int = MAX_BUFFERED,
    ) -> None:
        self._reader = node.reader
        self._chain = node.blockchain
        self.timeout = timeout
        self.clock = clock
        self.max_block_range = max_block_range
        self.max_results = max_results
        self.max_buffered = max_buffered
        self._filters: dict[str, _Filter] = {}
        self._by_kind: dict[str, dict[str, _Filter]] = {LOGS: {}, BLOCKS: {}, PENDING_TXS: {}}
        self._next_sweep = math.inf  # no deadline falls before this
        # number -> logs bloom, oldest first; only the sequencer's sealed (so canonical) blocks
        self._recent_blooms: dict[int, int] = {}
        node.sequencer.listeners.append(self._on_block)
        node.pool.listeners.append(self._on_pending_tx)

    # -- eth_getLogs ---------------------------------------------------------------------
    async def getLogs(self, criteria: Any) -> list[dict[str, Any]]:
        return await self._query(LogCriteria.parse(criteria))

    async def _query(self, criteria: LogCriteria) -> list[dict[str, Any]]:
        if criteria.block_hash is not None:
            header = self._chain.header_by_hash(criteria.block_hash)
            if header is None:
                raise ServerError("unknown block")
            found = self._block_logs(header, criteria)
            if len(found) > self.max_results:
                raise LimitExceeded(f"query returned more than {self.max_results} results")
            return found
        head = self._chain.head.block_number
        first, last = self._resolve(criteria.from_block), self._resolve(criteria.to_block)
        if first > head:
            return []  # nothing sealed there yet (a client polling from its last block + 1)
        last = min(last, head)
        if first > last:
            raise InvalidParams("invalid block range params")
        if last - first + 1 > self.max_block_range:
            raise LimitExceeded(
                f"exceed maximum block range: {self.max_block_range} "
                f"(asked for {last - first + 1} blocks, {to_quantity(first)} to {to_quantity(last)})"
            )
        results: list[dict[str, Any]] = []
        for number in range(first, last + 1):
            if number > first and (number - first) % _YIELD_EVERY == 0:
                await asyncio.sleep(0)
            bloom = self._recent_blooms.get(number)
            header = None
            if bloom is None:  # decoding a header costs ~0.3 ms in py-evm; the cache spares it
                header = self._chain.header_by_number(number)
                bloom = 0 if header is None else header.bloom
            if not criteria.bloom_may_match(bloom):
                continue
            if header is None:
                header = self._chain.header_by_number(number)
                if header is None:
                    continue
            found = self._block_logs(header, criteria)
            if len(results) + len(found) > self.max_results:
                raise self._too_many_results(first, number - 1)
            results.extend(found)
        return results

    def _resolve(self, bound: int | str) -> int:
        if isinstance(bound, int):
            return bound
        header = self._reader.header(bound)
        assert header is not None  # tags always resolve (head or genesis)
        return header.block_number

    def _block_logs(self, header: BlockHeaderAPI, criteria: LogCriteria) -> list[dict[str, Any]]:
        receipts = self._reader.block_data(header).receipts_json()
        return [entry for receipt in receipts for entry in receipt["logs"] if criteria.matches(entry)]

    def _too_many_results(self, first: int, last_whole: int) -> LimitExceeded:
        message = f"query returned more than {self.max_results} results"
        if last_whole < first:  # the first block alone holds too many
            return LimitExceeded(message)
        hint = [to_quantity(first), to_quantity(last_whole)]
        return LimitExceeded(
            f"{message}. Try with this block range [{hint[0]}, {hint[1]}].", {"from": hint[0], "to": hint[1]}
        )

    # -- installing ------------------------------------------------------------------------
    def newFilter(self, criteria: Any) -> str:
        return self._install(_Filter(LOGS, self._buffer(), 0.0, criteria=LogCriteria.parse(criteria)))

    def newBlockFilter(self) -> str:
        return self._install(_Filter(BLOCKS, self._buffer(), 0.0))

    def newPendingTransactionFilter(self, full_tx: Any = False) -> str:
        """Hashes of transactions as the pool accepts them; with ``fullTx`` true (geth 1.11+)
        whole transaction objects."""
        return self._install(_Filter(PENDING_TXS, self._buffer(), 0.0, full_tx=parse_bool(full_tx, name="fullTx")))

    def uninstallFilter(self, filter_id: Any) -> bool:
        key = _normalize_id(filter_id)
        self._expire()
        if key not in self._filters:
            return False
        self._remove(key)
        return True

    def _buffer(self) -> deque:
        return deque(maxlen=self.max_buffered)

    def _install(self, entry: _Filter) -> str:
        self._expire()
        key = _new_id()
        while key in self._filters:
            key = _new_id()
        entry.deadline = self.clock() + self.timeout
        self._next_sweep = min(self._next_sweep, entry.deadline)
        self._filters[key] = entry
        self._by_kind[entry.kind][key] = entry
        return key

    def _remove(self, key: str) -> None:
        entry = self._filters.pop(key)
        del self._by_kind[entry.kind][key]

    # -- polling ---------------------------------------------------------------------------
    def getFilterChanges(self, filter_id: Any) -> list[Any]:
        entry = self._polled(filter_id)
        changes = list(entry.changes)
        entry.changes.clear()
        return changes

    async def getFilterLogs(self, filter_id: Any) -> list[dict[str, Any]]:
        """Every log the filter's criteria match now (not only the new ones)."""
        entry = self._polled(filter_id)
        if entry.criteria is None:
            raise ServerError("filter not found")  # geth's answer for a block or pending-tx filter
        return await self._query(entry.criteria)

    def _polled(self, filter_id: Any) -> _Filter:
        """The live filter ``filter_id``, its deadline pushed back (geth resets it on each poll)."""
        key = _normalize_id(filter_id)
        self._expire()
        entry = self._filters.get(key)
        if entry is None:
            raise ServerError("filter not found")
        entry.deadline = self.clock() + self.timeout
        return entry

    def _expire(self) -> None:
        """Drop filters past their deadline; a no-op until the earliest deadline passes."""
        now = self.clock()
        if now < self._next_sweep:
            return
        earliest = math.inf
        for key, entry in list(self._filters.items()):
            if entry.deadline <= now:
                self._remove(key)
            else:
                earliest = min(earliest, entry.deadline)
        self._next_sweep = earliest

    # -- hooks -----------------------------------------------------------------------------
    def _on_block(self, sealed: "SealedBlock") -> None:
        """Sequencer listener: runs after ``ChainReader.remember`` has cached the block."""
        header = sealed.block.header
        self._recent_blooms[header.block_number] = header.bloom
        if len(self._recent_blooms) > RECENT_BLOOMS:
            del self._recent_blooms[next(iter(self._recent_blooms))]
        if not self._filters:
            return
        self._expire()
        if self._by_kind[BLOCKS]:
            block_hash = to_data(header.hash)
            for entry in self._by_kind[BLOCKS].values():
                entry.changes.append(block_hash)
        if not self._by_kind[LOGS] or not header.bloom:
            return
        receipts = None
        for entry in self._by_kind[LOGS].values():
            criteria = entry.criteria
            assert criteria is not None
            if not criteria.covers(header.block_number) or not criteria.bloom_may_match(header.bloom):
                continue
            if receipts is None:
                receipts = self._reader.block_data(header).receipts_json()
            entry.changes.extend(e for receipt in receipts for e in receipt["logs"] if criteria.matches(e))

    def _on_pending_tx(self, tx: SignedTransactionAPI) -> None:
        """Pool listener. The pool does not guard its listeners, so this one never raises."""
        if not self._by_kind[PENDING_TXS]:
            return
        try:
            self._expire()
            tx_hash = to_data(tx.hash)
            full = None
            for entry in self._by_kind[PENDING_TXS].values():
                if entry.full_tx:
                    full = full or transaction_json(tx, tx.sender)
                    entry.changes.append(full)
                else:
                    entry.changes.append(tx_hash)
        except Exception:
            log.exception("pending transaction filter update failed")


def _new_id() -> str:
    """A random 128-bit ID written as a quantity, as geth's rpc.NewID."""
    return "0x" + (secrets.token_hex(16).lstrip("0") or "0")


def register(dispatcher: Dispatcher, node: "Node", **options: Any) -> FilterAPI:
    """Put the filter methods on ``dispatcher``; ``options`` go to :class:`FilterAPI`."""
    api = FilterAPI(node, **options)
    for name in RPC_METHODS:
        dispatcher.register(f"eth_{name}", getattr(api, name))
    return api


def filter_api(node: "Node") -> FilterAPI:
    """The :class:`FilterAPI` serving ``node`` (found through the sequencer hook it installed)."""
    for listener in node.sequencer.listeners:
        owner = getattr(listener, "__self__", None)
        if isinstance(owner, FilterAPI):
            return owner
    raise LookupError("no FilterAPI is installed on this node")
