"""Transaction pool: admission checks, per-sender nonce order, fee-ordered candidates.

Errors use geth's wording so tools that match on it (ethers, viem, foundry) behave
as they do against geth.
"""
from __future__ import annotations

import heapq
import itertools
import logging
from dataclasses import dataclass, field
from typing import Callable, Iterator

from eth.abc import SignedTransactionAPI
from eth.exceptions import UnrecognizedTransactionType
from eth_utils import ValidationError

from .blobs import BlobError, split_network_form, verify_sidecar
from .chain import senders
from .chain.senders import SECP256K1_N

log = logging.getLogger("openledger.txpool")

SUPPORTED_TYPES = (None, 1, 2, 3, 4)  # legacy (EIP-155), EIP-2930, EIP-1559, EIP-4844, EIP-7702
MAX_TX_BYTES = 128 * 1024  # geth's txMaxSize
MAX_BLOB_TX_BYTES = 1024 * 1024  # geth's blob pool txMaxSize (with the sidecar)
GAS_PER_BLOB = 2**17
PRICE_BUMP_PERCENT = 10
TX_GAS = 21_000
FLOOR_COST_PER_TOKEN = 10  # EIP-7623


class TxPoolError(Exception):
    """A transaction the pool refuses; ``str()`` is the message sent to the client."""


@dataclass(order=True)
class _Entry:
    nonce: int
    seq: int = field(compare=False)
    tx: SignedTransactionAPI = field(compare=False)
    sender: bytes = field(compare=False)


@dataclass(frozen=True)
class PoolLimits:
    max_transactions: int = 10_000
    max_per_sender: int = 1_000
    max_tx_bytes: int = MAX_TX_BYTES
    min_tip: int = 0  # wei per gas


class TxPool:
    """Holds transactions that wait for a block.

    ``pending``: from the sender's state nonce on, without gaps (ready to seal).
    ``queued``: beyond a gap; they become pending once the gap fills.
    """

    def __init__(
        self,
        *,
        chain_id: int,
        decode: Callable[[bytes], SignedTransactionAPI],
        account: Callable[[bytes], tuple[int, int]],  # address -> (nonce, balance) at head
        base_fee: Callable[[], int],
        block_gas_limit: Callable[[], int],
        limits: PoolLimits = PoolLimits(),
    ) -> None:
        self.chain_id = chain_id
        self._decode = decode
        self._account = account
        self._base_fee = base_fee
        self._block_gas_limit = block_gas_limit
        self.limits = limits
        self._by_sender: dict[bytes, dict[int, _Entry]] = {}
        self._by_hash: dict[bytes, _Entry] = {}
        self._seq = itertools.count()
        self.listeners: list[Callable[[SignedTransactionAPI], None]] = []

    def __len__(self) -> int:
        return len(self._by_hash)

    def __contains__(self, tx_hash: bytes) -> bool:
        return tx_hash in self._by_hash

    def get(self, tx_hash: bytes) -> tuple[SignedTransactionAPI, bytes] | None:
        entry = self._by_hash.get(tx_hash)
        return (entry.tx, entry.sender) if entry else None

    # -- admission ----------------------------------------------------------------
    def add_raw(self, raw: bytes) -> SignedTransactionAPI:
        blob = raw[:1] == b"\x03"
        limit = MAX_BLOB_TX_BYTES if blob else self.limits.max_tx_bytes
        if len(raw) > limit:
            raise TxPoolError(f"oversized data: transaction size {len(raw)}, limit {limit}")
        if not raw:
            raise TxPoolError("typed transaction too short")
        sidecar = None
        if blob:  # EIP-4844: the network form carries blobs, commitments and proofs
            try:
                parts = split_network_form(raw)
            except BlobError as exc:
                raise TxPoolError(str(exc)) from None
            if parts is None:
                raise TxPoolError("missing sidecar in blob transaction")
            raw, *sidecar = parts
            if len(raw) > self.limits.max_tx_bytes:
                raise TxPoolError(f"oversized data: transaction size {len(raw)}, limit {self.limits.max_tx_bytes}")
        try:
            tx = self._decode(raw)
        except UnrecognizedTransactionType:
            raise TxPoolError("transaction type not supported") from None
        except Exception as exc:  # rlp.DecodingError, ValidationError, ...
            raise TxPoolError(f"rlp: invalid transaction encoding: {exc}") from None
        if sidecar is not None:
            if tx.to == b"":
                raise TxPoolError("blob transaction of type create")
            try:
                verify_sidecar(tx.blob_versioned_hashes, *sidecar)
            except BlobError as exc:
                raise TxPoolError(str(exc)) from None
        return self.add(tx)

    def add(self, tx: SignedTransactionAPI) -> SignedTransactionAPI:
        tx_hash = tx.hash
        if tx_hash in self._by_hash:
            raise TxPoolError("already known")
        type_id = getattr(tx, "type_id", None)
        if type_id not in SUPPORTED_TYPES:
            raise TxPoolError("transaction type not supported")
        if tx.chain_id is None:
            raise TxPoolError("only replay-protected (EIP-155) transactions allowed over RPC")
        if tx.chain_id != self.chain_id:
            raise TxPoolError(f"invalid chain id: have {tx.chain_id}, want {self.chain_id}")
        try:
            tx.validate()  # field ranges, including EIP-2's low s
        except ValidationError as exc:
            raise TxPoolError(f"invalid transaction: {exc}") from None
        if not (0 < tx.r < SECP256K1_N and 0 < tx.s <= SECP256K1_N // 2):
            raise TxPoolError("invalid transaction v, r, s values")
        try:
            senders.prime((tx,))  # the fast recovery where it applies (chain/senders.py)
            sender = tx.sender  # one signature recovery, cached on the transaction
        except Exception:  # eth_keys BadSignature, ValidationError
            raise TxPoolError("invalid sender: invalid transaction v, r, s values") from None
        if type_id == 3 and not tx.blob_versioned_hashes:
            raise TxPoolError("blobless blob transaction")
        if type_id == 3 and tx.to == b"":
            raise TxPoolError("blob transaction of type create")
        if type_id == 4 and not getattr(tx, "authorization_list", None):
            raise TxPoolError("EIP-7702 transaction with empty auth list")
        if type_id == 4 and tx.to == b"":
            raise TxPoolError("EIP-7702 transaction cannot be contract creation")
        max_fee, tip = tx.max_fee_per_gas, tx.max_priority_fee_per_gas
        if tip > max_fee:
            raise TxPoolError("max priority fee per gas higher than max fee per gas")
        if max(max_fee, tip, tx.value, tx.gas) >= 2**256:
            raise TxPoolError("fee or value too high")
        intrinsic = tx.intrinsic_gas
        if tx.gas < intrinsic:
            raise TxPoolError(f"intrinsic gas too low: gas {tx.gas}, minimum needed {intrinsic}")
        gas_limit = self._block_gas_limit()
        if tx.gas > gas_limit:
            raise TxPoolError(f"exceeds block gas limit: gas {tx.gas}, block gas limit {gas_limit}")
        floor = data_floor_gas(tx.data)
        if tx.gas < floor:
            raise TxPoolError(f"insufficient gas for floor data gas cost: gas {tx.gas}, minimum needed {floor}")
        base_fee = self._base_fee()
        if max_fee < base_fee:
            raise TxPoolError(f"max fee per gas less than block base fee: maxFeePerGas: {max_fee}, baseFee: {base_fee}")
        if tip < self.limits.min_tip:
            raise TxPoolError(f"transaction underpriced: tip {tip} below minimum {self.limits.min_tip}")
        state_nonce, balance = self._account(sender)
        if tx.nonce < state_nonce:
            raise TxPoolError(f"nonce too low: address {_hex(sender)}, tx: {tx.nonce} state: {state_nonce}")
        cost = tx.gas * max_fee + tx.value
        if type_id == 3:  # blob gas is paid up front too
            cost += GAS_PER_BLOB * len(tx.blob_versioned_hashes) * tx.max_fee_per_blob_gas
        if balance < cost:
            raise TxPoolError(
                f"insufficient funds for gas * price + value: address {_hex(sender)} have {balance} want {cost}"
            )

        account_txs = self._by_sender.setdefault(sender, {})
        old = account_txs.get(tx.nonce)
        if old is not None:
            bump = 100 + PRICE_BUMP_PERCENT
            if max_fee * 100 < old.tx.max_fee_per_gas * bump or tip * 100 < old.tx.max_priority_fee_per_gas * bump:
                raise TxPoolError("replacement transaction underpriced")
            del self._by_hash[old.tx.hash]
        else:
            if tx.nonce >= state_nonce + self.limits.max_per_sender or len(account_txs) >= self.limits.max_per_sender:
                raise TxPoolError("txpool is full: too many transactions from this sender")
            if len(self._by_hash) >= self.limits.max_transactions:
                raise TxPoolError("txpool is full")
        entry = _Entry(tx.nonce, next(self._seq), tx, sender)
        account_txs[tx.nonce] = entry
        self._by_hash[tx_hash] = entry
        for listener in self.listeners:
            try:
                listener(tx)
            except Exception:  # the transaction is in; a broken subscriber must not say otherwise
                log.exception("txpool listener failed")
        return tx

    # -- views -------------------------------------------------------------------
    def pending_nonce(self, sender: bytes, state_nonce: int) -> int:
        """The next nonce the sender should use, counting its pending transactions."""
        nonce = state_nonce
        txs = self._by_sender.get(sender, {})
        while nonce in txs:
            nonce += 1
        return nonce

    def content(self) -> tuple[dict[bytes, list[SignedTransactionAPI]], dict[bytes, list[SignedTransactionAPI]]]:
        """(pending, queued) per sender, each in nonce order."""
        pending: dict[bytes, list] = {}
        queued: dict[bytes, list] = {}
        for sender, txs in self._by_sender.items():
            nonce = self._account(sender)[0]
            for n in sorted(txs):
                (pending if n == nonce else queued).setdefault(sender, []).append(txs[n].tx)
                if n == nonce:
                    nonce += 1
        return pending, queued

    def candidates(self, base_fee: int) -> Iterator[SignedTransactionAPI]:
        """Ready transactions, best effective tip first, each sender's in nonce order.

        A generator: the block builder ``send``s False when a transaction did not go in,
        and that sender's later transactions are then skipped for this block.
        """
        heap: list[tuple[int, int, _Entry]] = []
        for sender, txs in self._by_sender.items():
            nonce = self._account(sender)[0]
            entry = txs.get(nonce)
            if entry is not None and entry.tx.max_fee_per_gas >= base_fee:
                heap.append((-_tip(entry.tx, base_fee), entry.seq, entry))
        heapq.heapify(heap)
        while heap:
            _, _, entry = heapq.heappop(heap)
            ok = yield entry.tx
            if ok is False:
                yield None  # acknowledges the send(); the builder's next() resumes here
                continue
            following = self._by_sender[entry.sender].get(entry.nonce + 1)
            if following is not None and following.tx.max_fee_per_gas >= base_fee:
                heapq.heappush(heap, (-_tip(following.tx, base_fee), following.seq, following))

    # -- after a block -----------------------------------------------------------
    def remove_stale(self, senders: set[bytes] | None = None) -> int:
        """Drop transactions whose nonce the chain has passed (mined or replaced);
        ``senders`` limits the scan to accounts a block touched."""
        dropped = 0
        for sender in list(senders if senders is not None else self._by_sender):
            txs = self._by_sender.get(sender)
            if not txs:
                continue
            nonce = self._account(sender)[0]
            for n in [n for n in txs if n < nonce]:
                del self._by_hash[txs.pop(n).tx.hash]
                dropped += 1
            if not txs:
                del self._by_sender[sender]
        return dropped

    def drop(self, tx_hash: bytes) -> None:
        """Remove one transaction (the block builder found it invalid)."""
        entry = self._by_hash.pop(tx_hash, None)
        if entry is not None:
            txs = self._by_sender[entry.sender]
            txs.pop(entry.nonce, None)
            if not txs:
                del self._by_sender[entry.sender]


def _tip(tx: SignedTransactionAPI, base_fee: int) -> int:
    return min(tx.max_priority_fee_per_gas, tx.max_fee_per_gas - base_fee)


def data_floor_gas(data: bytes) -> int:
    """EIP-7623: the least gas a Prague transaction with this calldata may carry."""
    zeros = data.count(0)
    tokens = zeros + (len(data) - zeros) * 4
    return TX_GAS + FLOOR_COST_PER_TOKEN * tokens


def _hex(address: bytes) -> str:
    return "0x" + address.hex()
