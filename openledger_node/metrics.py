"""Prometheus metrics for operators: ``GET /metrics`` on the RPC port."""
from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from .chain.chain import SealedBlock
    from .node import Node

CONTENT_TYPE = CONTENT_TYPE_LATEST


class NodeMetrics:
    """The node's counters; one registry per node so tests can run several nodes."""

    def __init__(self, node: "Node") -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.blocks = Counter("openledger_blocks_sealed", "Blocks sealed by this node", registry=r)
        self.transactions = Counter("openledger_transactions_sealed", "Transactions in sealed blocks", registry=r)
        self.rejected = Counter("openledger_transactions_dropped", "Pool transactions dropped as invalid at sealing",
                                registry=r)
        self.gas = Counter("openledger_gas_used", "Gas used by sealed blocks", registry=r)
        self.seal_seconds = Histogram("openledger_block_seal_seconds", "Time to build and commit a block",
                                      buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5), registry=r)
        head = Gauge("openledger_head_block", "Number of the head block", registry=r)
        head.set_function(lambda: node.blockchain.head.block_number)
        pool = Gauge("openledger_txpool_transactions", "Transactions waiting in the pool", registry=r)
        pool.set_function(lambda: len(node.pool))
        self._settlement_gauges(node)
        self.rpc_requests = Counter("openledger_rpc_requests", "JSON-RPC calls by method and outcome",
                                    ["method", "outcome"], registry=r)
        self.rpc_seconds = Histogram("openledger_rpc_request_seconds", "JSON-RPC call latency by method",
                                     ["method"], buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5),
                                     registry=r)

    def _settlement_gauges(self, node: "Node") -> None:
        """What the batch poster last read from L1 (0 while no poster runs or nothing was read)."""
        r = self.registry

        def poster_value(read):
            def value() -> float:
                poster = getattr(node, "poster", None)
                found = read(poster.status) if poster is not None else None
                return 0 if found is None else found
            return value

        gauges = (
            ("openledger_l1_posted_block", "Last L2 block the L1 inbox holds", lambda s: s.posted_block),
            ("openledger_l1_safe_block", "Last L2 block L1's safe block holds", lambda s: s.safe_block),
            ("openledger_l1_finalized_block", "Last L2 block L1's finalized block holds", lambda s: s.finalized_block),
            ("openledger_l1_batches", "Batches the L1 inbox holds", lambda s: s.batches),
            ("openledger_l1_head_block", "L1 head block the poster last saw",
             lambda s: s.l1_head.number if s.l1_head else None),
            ("openledger_l1_poster_healthy", "1 while the poster's last round reached the L1 and it runs",
             lambda s: int(s.last_error is None and s.stopped_reason is None and s.l1_head is not None)),
        )
        for name, help_text, read in gauges:
            Gauge(name, help_text, registry=r).set_function(poster_value(read))

    def on_block(self, sealed: "SealedBlock") -> None:
        header = sealed.block.header
        self.blocks.inc()
        self.transactions.inc(len(sealed.block.transactions))
        self.rejected.inc(len(sealed.rejected))
        self.gas.inc(header.gas_used)
        self.seal_seconds.observe(sealed.seconds)

    def on_call(self, method: str, seconds: float, ok: bool) -> None:
        self.rpc_requests.labels(method, "ok" if ok else "error").inc()
        self.rpc_seconds.labels(method).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
