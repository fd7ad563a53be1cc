"""A running node: chain, pool, sequencer and RPC wired together on one event loop."""
from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth.vm.spoof import SpoofTransaction
from eth.abc import BlockHeaderAPI, ComputationAPI
from eth.exceptions import Revert
from eth_utils import ValidationError

from .chain.chain import Blockchain
from .metrics import NodeMetrics
from .rpc.encoding import parse_address, parse_data, parse_quantity
from .rpc.jsonrpc import Dispatcher, ExecutionReverted, InvalidParams, RPCError
from .rpc.server import RPCServer
from .rpc.views import ChainReader
from .sequencer import Sequencer, next_base_fee
from .txpool import PoolLimits, TxPool, data_floor_gas

log = logging.getLogger("openledger.node")

RPC_GAS_CAP = 50_000_000  # geth's default --rpc.gascap
TX_GAS = 21_000


@dataclass
class NodeConfig:
    datadir: Path
    http_host: str = "127.0.0.1"
    http_port: int = 8545
    block_time: float = 2.0
    mining: bool = True
    dev: bool = False
    coinbase: bytes | None = None  # fee recipient; defaults to the genesis treasury
    max_body_bytes: int = 5 * 1024 * 1024
    max_batch: int = 1000
    pool: PoolLimits = field(default_factory=PoolLimits)
    sync_writes: bool = True  # fsync each block's write batch
    # Settlement (docs/batches.md): the batch poster runs when l1_rpc is set.
    l1_rpc: str | None = None
    l1_inbox: str | None = None  # BatchInbox address on the L1
    l1_chain_id: int | None = None  # checked against the L1's eth_chainId when set
    l1_keystore: Path | None = None  # batcher key; else OPENLEDGER_BATCHER_KEY
    batch_max_age: float = 30.0  # seconds before a batch is closed however small
    batch_max_bytes: int = 100_000  # compressed batch data per L1 transaction


class Node:
    def __init__(self, config: NodeConfig, blockchain: Blockchain | None = None) -> None:
        self.config = config
        self.blockchain = blockchain or Blockchain.open(config.datadir, sync=config.sync_writes)
        self.reader = ChainReader(self.blockchain)
        self._head_state: tuple[bytes, Any] | None = None
        self.pool = TxPool(
            chain_id=self.blockchain.chain_id,
            decode=self.blockchain.decode_transaction,
            account=self._account,
            base_fee=self.next_base_fee,
            block_gas_limit=lambda: self.blockchain.head.gas_limit,
            limits=config.pool,
        )
        coinbase = config.coinbase or self.blockchain.genesis.treasury or b"\x00" * 20
        self.sequencer = Sequencer(
            self.blockchain, self.pool, block_time=config.block_time, coinbase=coinbase, mining=config.mining
        )
        self.sequencer.listeners.append(lambda sealed: self.reader.remember(sealed.block, sealed.receipts))
        self.signer = None
        if config.dev:
            from .rpc.dev import DevSigner
            from .devkeys import DEV_ACCOUNTS

            self.signer = DevSigner([key for _, key in DEV_ACCOUNTS])
        self.metrics = NodeMetrics(self)
        self.sequencer.listeners.append(self.metrics.on_block)
        self.dispatcher = Dispatcher(max_batch=config.max_batch, max_body_bytes=config.max_body_bytes,
                                     on_call=self.metrics.on_call)
        from .rpc import register_all

        register_all(self.dispatcher, self)
        self.rpc: RPCServer | None = None
        self.poster = None
        self.follower = None  # set by `replay --follow`: a read-only replica fed from L1
        if config.l1_rpc:
            from .settlement.poster import poster_from_config

            try:
                self.poster = poster_from_config(self.blockchain, config)
            except Exception:  # PosterConfigError: the node does not start
                self.blockchain.close()
                raise

    # -- state helpers used by RPC and the pool --------------------------------------------
    def state_at(self, header: BlockHeaderAPI):
        """Read-only state after ``header``; the head's is cached until the next block."""
        head = self.blockchain.head
        if header.hash == head.hash:
            if self._head_state is None or self._head_state[0] != head.hash:
                self._head_state = (head.hash, self.blockchain.state_at(head))
            return self._head_state[1]
        return self.blockchain.state_at(header)

    def _account(self, address: bytes) -> tuple[int, int]:
        state = self.state_at(self.blockchain.head)
        return state.get_nonce(address), state.get_balance(address)

    def next_base_fee(self) -> int:
        return next_base_fee(self.blockchain)

    # -- calls -------------------------------------------------------------------------------
    def _call_state(self, header: BlockHeaderAPI, overrides: Any, priced: bool):
        """A throwaway state after ``header``, in the block context of ``header``, with any
        state overrides applied.  Unpriced calls run with base fee 0, as geth's."""
        vm = self.blockchain.chain.get_vm(header)
        context_header = header
        if not priced and getattr(header, "base_fee_per_gas", None):
            context_header = header.copy(base_fee_per_gas=0)
        state = vm.build_state(vm.chaindb.db, context_header, vm.chain_context, vm.previous_hashes)
        if overrides is not None:
            apply_state_overrides(state, overrides)
            state.lock_changes()  # overridden values count as the slots' original values (EIP-2200 gas)
        return vm, state

    def _call_transaction(self, vm, state, request, gas: int):
        """The unsigned transaction a call request describes, spoofed to come from its sender."""
        sender = request.sender or b"\x00" * 20
        nonce = state.get_nonce(sender)  # calls skip the nonce check, as geth's do
        to = request.to or b""
        builder = vm.get_transaction_builder()
        base_fee = state.execution_context.base_fee_per_gas or 0
        chain_id = self.blockchain.chain_id
        typed = request.access_list is not None or request.authorization_list is not None \
            or request.max_fee is not None or request.max_tip is not None
        if request.authorization_list is not None and hasattr(builder, "new_unsigned_set_code_transaction"):
            from eth.vm.forks.prague.transactions import Authorization

            tip = request.max_tip or 0
            max_fee = request.max_fee if request.max_fee is not None else base_fee + tip
            tx = builder.new_unsigned_set_code_transaction(
                chain_id=chain_id, nonce=nonce, max_priority_fee_per_gas=tip, max_fee_per_gas=max_fee,
                gas=gas, to=to, value=request.value, data=request.data,
                access_list=request.access_list or (),
                authorization_list=[Authorization(**auth) for auth in request.authorization_list],
            )
        elif typed and hasattr(builder, "new_unsigned_dynamic_fee_transaction") and request.gas_price is None:
            tip = request.max_tip or 0
            max_fee = request.max_fee if request.max_fee is not None else base_fee + tip
            tx = builder.new_unsigned_dynamic_fee_transaction(
                chain_id=chain_id, nonce=nonce, max_priority_fee_per_gas=tip, max_fee_per_gas=max_fee,
                gas=gas, to=to, value=request.value, data=request.data, access_list=request.access_list or (),
            )
        elif request.access_list is not None and hasattr(builder, "new_unsigned_access_list_transaction"):
            tx = builder.new_unsigned_access_list_transaction(
                chain_id=chain_id, nonce=nonce, gas_price=request.gas_price or 0, gas=gas, to=to,
                value=request.value, data=request.data, access_list=request.access_list,
            )
        else:
            tx = vm.create_unsigned_transaction(
                nonce=nonce, gas_price=request.gas_price or 0, gas=gas, to=to, value=request.value, data=request.data,
            )
        return SpoofTransaction(tx, from_=sender)

    def execute_call(self, request, header: BlockHeaderAPI, *, state_overrides: Any = None,
                     gas: int | None = None) -> ComputationAPI:
        vm, state = self._call_state(header, state_overrides, request.has_fees)
        gas = gas if gas is not None else (request.gas if request.gas is not None else RPC_GAS_CAP)
        tx = self._call_transaction(vm, state, request, gas)
        try:
            return state.apply_transaction(tx)
        except ValidationError as exc:
            raise RPCError(-32000, _validation_message(str(exc))) from None

    def estimate_gas(self, request, header: BlockHeaderAPI, *, state_overrides: Any = None) -> int:
        """Smallest gas limit with which the call succeeds (binary search, as geth)."""
        vm, state = self._call_state(header, state_overrides, request.has_fees)
        hi = request.gas if request.gas is not None else min(RPC_GAS_CAP, header.gas_limit)
        probe = self._call_transaction(vm, state, request, hi)
        floor = probe.intrinsic_gas
        if hasattr(state.transaction_executor_class, "calc_data_floor_gas"):  # EIP-7623 (Prague)
            floor = max(floor, data_floor_gas(request.data))
        price = request.gas_price if request.gas_price is not None else (request.max_fee or 0)
        if price:
            sender = request.sender or b"\x00" * 20
            allowance = (state.get_balance(sender) - request.value) // price
            if allowance < floor:
                raise RPCError(-32000, "insufficient funds for gas * price + value")
            hi = min(hi, allowance)
        if hi < floor:
            raise RPCError(-32000, f"gas required exceeds allowance ({hi})" if request.gas is None
                           else f"intrinsic gas too low: gas {hi}, minimum needed {floor}")
        first = self.execute_call(request, header, state_overrides=state_overrides, gas=hi)
        if first.is_error:
            if isinstance(first.error, Revert):
                raise ExecutionReverted(first.output)
            from .rpc.eth import _error_message

            if type(first.error).__name__ == "OutOfGas":
                raise RPCError(-32000, f"gas required exceeds allowance ({hi})")
            raise RPCError(-32000, _error_message(first.error))
        if self._succeeds(request, header, state_overrides, floor):
            return floor  # a plain transfer, or a call that costs nothing beyond its intrinsic gas
        used = hi - first.get_gas_remaining()
        lo = max(used - 1, floor)
        guess = min(hi, (used + first.get_gas_refund()) * 64 // 63)
        if lo < guess < hi and self._succeeds(request, header, state_overrides, guess):
            hi = guess
        while lo + 1 < hi:
            mid = (lo + hi) // 2
            if self._succeeds(request, header, state_overrides, mid):
                hi = mid
            else:
                lo = mid
        return hi

    def _succeeds(self, request, header, overrides, gas: int) -> bool:
        try:
            return not self.execute_call(request, header, state_overrides=overrides, gas=gas).is_error
        except RPCError:
            return False

    # -- running -------------------------------------------------------------------------------
    async def serve(self, *, ready=None) -> None:
        """Serve RPC and produce blocks until SIGINT/SIGTERM or ``stop()``."""
        self._stop = asyncio.Event()
        self.rpc = RPCServer(_app_for(self), self.config.http_host, self.config.http_port)
        await self.rpc.start_async()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self._stop.set)
            except (RuntimeError, ValueError):  # not the main thread
                pass
        head = self.blockchain.head
        log.info("chain %d at block %d (0x%s)", self.blockchain.chain_id, head.block_number, head.hash.hex())
        if ready is not None:
            ready(self)
        producer = asyncio.create_task(self.sequencer.run(), name="sequencer")
        # Settlement tasks (objects with async run() and stop()): the batch poster, or a follower.
        jobs = [job for job in (self.poster, self.follower) if job is not None]
        background = [asyncio.create_task(job.run(), name=type(job).__name__) for job in jobs]
        stopper = asyncio.create_task(self._stop.wait())
        try:
            done, _ = await asyncio.wait({producer, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if producer in done:
                if producer.exception() is not None:
                    raise producer.exception()
                await stopper  # mining off: the sequencer returned at once; serve RPC until stopped
        finally:
            self.sequencer.stop()
            stopper.cancel()
            await asyncio.gather(producer, return_exceptions=True)
            for job in jobs:
                job.stop()
            await asyncio.gather(*background, return_exceptions=True)
            await self.rpc.stop_async()
            last = self.blockchain.head.block_number
            self.blockchain.close()
            log.info("stopped cleanly at block %d", last)

    def stop(self) -> None:
        self._stop.set()


def _app_for(node: Node):
    from fastapi.responses import Response

    from .metrics import CONTENT_TYPE
    from .rpc.server import create_app

    app = create_app(node.dispatcher, max_body_bytes=node.config.max_body_bytes)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(node.metrics.render(), media_type=CONTENT_TYPE)

    return app


def _validation_message(message: str) -> str:
    lowered = message.lower()
    if "intrinsic" in lowered:
        return f"intrinsic gas too low: {message}"
    if "balance" in lowered or "afford" in lowered or "funds" in lowered:
        return f"insufficient funds for gas * price + value: {message}"
    if "nonce" in lowered:
        return f"nonce error: {message}"
    return message


def apply_state_overrides(state, overrides: Any) -> None:
    """geth's state override set: {address: {balance, nonce, code, state | stateDiff}}."""
    if not isinstance(overrides, dict):
        raise InvalidParams("invalid state overrides: expected an object")
    for key, account in overrides.items():
        address = parse_address(key, name="state override address")
        if not isinstance(account, dict):
            raise InvalidParams("invalid state override: expected an object per address")
        if "state" in account and "stateDiff" in account:
            raise InvalidParams(f"account {key} has both 'state' and 'stateDiff'")
        if account.get("balance") is not None:
            state.set_balance(address, parse_quantity(account["balance"], name="balance"))
        if account.get("nonce") is not None:
            state.set_nonce(address, parse_quantity(account["nonce"], name="nonce"))
        if account.get("code") is not None:
            state.set_code(address, parse_data(account["code"], name="code"))
        slots = account.get("state") if account.get("state") is not None else account.get("stateDiff")
        if account.get("state") is not None:
            state.delete_storage(address)
        if slots is not None:
            if not isinstance(slots, dict):
                raise InvalidParams("invalid state override storage: expected an object")
            for slot, value in slots.items():
                state.set_storage(
                    address,
                    int.from_bytes(parse_data(slot, name="storage slot"), "big"),
                    int.from_bytes(parse_data(value, name="storage value"), "big"),
                )
