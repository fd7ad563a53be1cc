"""The node's chain: py-evm execution over LevelDB, one atomic write per block."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from eth.abc import BlockAPI, BlockHeaderAPI, ComputationAPI, ReceiptAPI, SignedTransactionAPI
from eth.chains.base import Chain
from eth.consensus.noproof import NoProofConsensus
from eth.db.chain import ChainDB
from eth.exceptions import HeaderNotFound
from eth.vm.chain_context import ChainContext
from eth.vm.state import BaseState
from eth_hash.auto import keccak
from eth_utils import ValidationError, encode_hex

from .genesis import Genesis, GenesisError, fork_at, parse_genesis
from .store import LevelStore
from ..precompiles.store import IndexStore, OpenLedgerContext
from .vm import OPENLEDGER_VM_BY_FORK, VM_BY_FORK, OpenLedgerChainContext

log = logging.getLogger("openledger.chain")

GENESIS_KEY = b"openledger:genesis"


class DatadirError(Exception):
    """The datadir cannot be used as asked; the message says why in one line."""


class _ForkChain(Chain):
    """py-evm Chain whose fork is chosen by block number *and* timestamp."""

    chaindb_class = ChainDB
    vm_configuration = ((0, VM_BY_FORK["frontier"]),)  # unused: forks come from ``schedule``
    check_seals = True  # False while importing a chain file whose proof-of-work seals are fake
    _importing: BlockHeaderAPI | None = None

    def __init__(self, base_db, *, chain_id: int, schedule: tuple, deposit_contract: bytes | None = None,
                 openledger: OpenLedgerContext | None = None) -> None:
        # Instance attributes rather than a class per chain: classes made at run time
        # end up in reference cycles that Python tears down noisily at exit.
        self.chain_id = chain_id
        self.schedule = schedule
        self.deposit_contract = deposit_contract
        self.openledger = openledger  # None: an Ethereum chain, without the attribution precompiles
        self.vms = OPENLEDGER_VM_BY_FORK if openledger is not None else VM_BY_FORK
        super().__init__(base_db)

    def chain_context(self) -> ChainContext:
        if self.openledger is None:
            return ChainContext(self.chain_id)
        return OpenLedgerChainContext(self.chain_id, self.openledger)

    def vm_class_for(self, number: int, timestamp: int):
        return self.vms[fork_at(self.schedule, number, timestamp)]

    def get_vm_class(self, header: BlockHeaderAPI):  # type: ignore[override]
        return self.vm_class_for(header.block_number, header.timestamp)

    def get_vm_class_for_block_number(self, block_number: int):  # type: ignore[override]
        try:
            header = self.chaindb.get_canonical_block_header_by_number(block_number)
        except HeaderNotFound:
            return self.vm_class_for(block_number, int(time.time()))
        return self.vm_class_for(header.block_number, header.timestamp)

    def get_vm(self, at_header: BlockHeaderAPI | None = None):
        header = self.ensure_header(at_header)
        vm = self.get_vm_class(header)(
            header=header,
            chaindb=self.chaindb,
            chain_context=self.chain_context(),
            consensus_context=self.consensus_context,
        )
        if not self.check_seals:
            vm.consensus_class = NoProofConsensus  # only the seal: header and body rules still apply
        if self.deposit_contract is not None:
            vm.deposit_contract_address = self.deposit_contract  # read by Prague's request processing
        return vm

    def import_block(self, block: BlockAPI, perform_validation: bool = True):
        # py-evm builds the header to import onto without the block's timestamp; remember
        # it, so that a timestamp-activated fork picks the right VM.
        self._importing = block.header
        try:
            return super().import_block(block, perform_validation)
        finally:
            self._importing = None

    def create_header_from_parent(self, parent_header: BlockHeaderAPI, **params):
        importing = self._importing
        if "timestamp" not in params and importing is not None and importing.parent_hash == parent_header.hash:
            params["timestamp"] = importing.timestamp
        timestamp = params.get("timestamp", parent_header.timestamp + 1)
        vm_class = self.vm_class_for(parent_header.block_number + 1, timestamp)
        return vm_class.create_header_from_parent(parent_header, **params)


@dataclass(frozen=True)
class SealedBlock:
    block: BlockAPI
    receipts: tuple[ReceiptAPI, ...]
    computations: tuple[ComputationAPI, ...]
    rejected: tuple[tuple[SignedTransactionAPI, str], ...]  # dropped as invalid, with the reason
    seconds: float


class Blockchain:
    """One chain in one datadir.  Every method runs on the node's single thread."""

    def __init__(self, store: LevelStore, genesis: Genesis, datadir: Path | None = None) -> None:
        self.store = store
        self.genesis = genesis
        self.datadir = datadir
        openledger = None
        if genesis.treasury is not None:  # an OpenLedger chain: Datanets and Proof of Attribution
            indexes = IndexStore(Path(datadir) / "attribution" if datadir is not None else None)
            openledger = OpenLedgerContext(treasury=genesis.treasury, indexes=indexes)
        self.openledger = openledger
        self.chain = _ForkChain(store, chain_id=genesis.chain_id, schedule=genesis.forks,
                                deposit_contract=genesis.deposit_contract, openledger=openledger)
        self.chaindb = self.chain.chaindb

    # -- opening ---------------------------------------------------------------------
    @staticmethod
    def _chaindata(datadir: Path) -> Path:
        return Path(datadir) / "chaindata"

    @classmethod
    def init(cls, datadir: Path | str, genesis: Genesis) -> "Blockchain":
        """Create the chain in ``datadir``; a no-op if the same chain is already there."""
        datadir = Path(datadir)
        try:
            datadir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatadirError(f"cannot create datadir {datadir}: {exc.strerror}") from None
        store = LevelStore(cls._chaindata(datadir), create=True, sync=True)
        existing = store._db.get(GENESIS_KEY)
        if existing is not None:
            if existing != genesis.canonical_json:
                store.close()
                raise DatadirError(f"datadir {datadir} already holds a different chain; refusing to overwrite it")
            return cls(store, genesis, datadir)
        node = cls(store, genesis, datadir)
        node._write_genesis()
        store[GENESIS_KEY] = genesis.canonical_json
        store.commit()
        return node

    @classmethod
    def open(cls, datadir: Path | str, *, sync: bool = True) -> "Blockchain":
        path = cls._chaindata(Path(datadir))
        if not path.is_dir():
            raise DatadirError(f"no chain in {datadir}: run `openledger-node init --datadir {datadir}` first")
        store = LevelStore(path, sync=sync)
        raw = store._db.get(GENESIS_KEY)
        if raw is None:
            store.close()
            raise DatadirError(f"datadir {datadir} has no genesis: it was never initialised or is corrupt")
        import json

        try:
            genesis = parse_genesis(json.loads(raw))
        except (GenesisError, ValueError) as exc:
            store.close()
            raise DatadirError(f"datadir {datadir} holds an unreadable genesis: {exc}") from None
        return cls(store, genesis, Path(datadir))

    def close(self) -> None:
        self.store.discard()
        self.store.close()

    def _write_genesis(self) -> None:
        genesis = self.genesis
        vm_class = self.chain.vm_class_for(0, genesis.header["timestamp"])
        from eth.rlp.headers import BlockHeader
        from eth._utils.db import apply_state_dict

        pre = BlockHeader(difficulty=0, block_number=-1, gas_limit=0)
        state = vm_class.build_state(self.store, pre, ChainContext(genesis.chain_id))
        apply_state_dict(state, genesis.alloc)
        state.persist()
        header = vm_class.create_genesis_header(**{**genesis.header, "state_root": state.state_root})
        self.chaindb.persist_header(header)

    # -- reading ---------------------------------------------------------------------
    @property
    def chain_id(self) -> int:
        return self.genesis.chain_id

    @property
    def head(self) -> BlockHeaderAPI:
        return self.chaindb.get_canonical_head()

    def header_by_number(self, number: int) -> BlockHeaderAPI | None:
        try:
            return self.chaindb.get_canonical_block_header_by_number(number)
        except HeaderNotFound:
            return None

    def header_by_hash(self, block_hash: bytes) -> BlockHeaderAPI | None:
        try:
            return self.chaindb.get_block_header_by_hash(block_hash)
        except HeaderNotFound:
            return None

    def is_canonical(self, header: BlockHeaderAPI) -> bool:
        found = self.header_by_number(header.block_number)
        return found is not None and found.hash == header.hash

    def block(self, header: BlockHeaderAPI) -> BlockAPI:
        return self.chain.get_vm_class(header).get_block_class().from_header(header, self.chaindb)

    def receipts(self, block: BlockAPI) -> tuple[ReceiptAPI, ...]:
        return block.get_receipts(self.chaindb)

    def transaction_index(self, tx_hash: bytes) -> tuple[int, int] | None:
        try:
            return self.chaindb.get_transaction_index(tx_hash)
        except Exception:  # TransactionNotFound, or a KeyError from a missing index
            return None

    def state_at(self, header: BlockHeaderAPI) -> BaseState:
        """A read-only view of the state after ``header`` (changes are never persisted)."""
        return self.chain.get_vm(header).state

    def vm_for_next_block(self, timestamp: int | None = None, coinbase: bytes | None = None, parent=None):
        """A VM for a block on top of ``parent`` (the head by default), for calls and estimates."""
        parent = parent or self.head
        timestamp = max(int(time.time()), parent.timestamp + 1) if timestamp is None else timestamp
        params = {"timestamp": timestamp, "gas_limit": parent.gas_limit}
        if coinbase is not None:
            params["coinbase"] = coinbase
        header = self.chain.create_header_from_parent(parent, **params)
        return self.chain.get_vm(header)

    def transaction_builder(self, header: BlockHeaderAPI | None = None):
        header = header or self.head
        return self.chain.get_vm_class(header).get_transaction_builder()

    def decode_transaction(self, raw: bytes) -> SignedTransactionAPI:
        return self.transaction_builder().decode(raw)

    # -- writing ---------------------------------------------------------------------
    def build_block(
        self,
        candidates: Iterable[SignedTransactionAPI],
        *,
        timestamp: int,
        coinbase: bytes,
        extra_data: bytes = b"",
    ) -> SealedBlock:
        """Apply candidate transactions in the order given, skipping invalid ones, and
        seal the block; LevelDB receives it in one atomic write.

        ``candidates`` may be a generator that takes ``send(False)`` to mean "that
        transaction did not go in: skip its sender's later ones" (``TxPool.candidates``).
        """
        started = time.perf_counter()
        parent = self.head
        header = self.chain.create_header_from_parent(
            parent, timestamp=max(timestamp, parent.timestamp + 1), coinbase=coinbase,
            gas_limit=parent.gas_limit, extra_data=extra_data,
        )
        vm = self.chain.get_vm(header)
        try:
            vm.block_preprocessing(vm.get_block())
            included: list[SignedTransactionAPI] = []
            receipts: list[ReceiptAPI] = []
            computations: list[ComputationAPI] = []
            rejected: list[tuple[SignedTransactionAPI, str]] = []
            running = header
            gen = iter(candidates)
            skip_sender = getattr(gen, "send", None)  # TxPool.candidates: skip the rest of a sender
            max_blob_gas = _max_blob_gas(header)
            for tx in gen:
                blob_gas = _blob_gas(tx)
                if running.gas_used + tx.gas > header.gas_limit or (
                        blob_gas and running.blob_gas_used + blob_gas > max_blob_gas):
                    if skip_sender:
                        skip_sender(False)  # does not fit in what is left of this block
                    continue
                try:
                    # py-evm validates (nonce, balance, fees, gas) before touching state, so
                    # a ValidationError leaves the state as it was; no snapshot is needed.
                    receipt, computation = vm.apply_transaction(running, tx)
                except ValidationError as exc:
                    rejected.append((tx, str(exc)))
                    if skip_sender:
                        skip_sender(False)
                    continue
                running = vm.add_receipt_to_header(running, receipt)
                if blob_gas:
                    running = vm.increment_blob_gas_used(running, tx)
                included.append(tx)
                receipts.append(receipt)
                computations.append(computation)
            filled = vm.set_block_transactions_and_withdrawals(
                vm.get_block(), running, included, receipts, withdrawals=[] if hasattr(vm.get_block(), "withdrawals") else None
            )
            processed = vm.block_postprocessing(filled)
            sealed = vm.mine_block(processed).block
            self.chaindb.persist_block(sealed)
            self.store.commit()
        except BaseException:
            self.store.discard()
            raise
        return SealedBlock(sealed, tuple(receipts), tuple(computations), tuple(rejected),
                           time.perf_counter() - started)

    def import_block(self, block: BlockAPI, *, check_seal: bool = True) -> BlockAPI:
        """Fully validate and persist a block built elsewhere (import, replay).

        ``check_seal=False`` skips only the proof-of-work seal check (chain files such as
        the execution-apis suite's carry fake pre-merge seals, as ``geth import`` allows)."""
        self.chain.check_seals = check_seal
        try:
            result = self.chain.import_block(block)
            self.store.commit()
        except BaseException:
            self.store.discard()
            raise
        finally:
            self.chain.check_seals = True
        return result.imported_block

    def block_class_for(self, number: int, timestamp: int):
        return self.chain.vm_class_for(number, timestamp).get_block_class()


def _blob_gas(tx: SignedTransactionAPI) -> int:
    """EIP-4844 blob gas of a transaction (0 for every other type)."""
    return 2**17 * len(tx.blob_versioned_hashes) if getattr(tx, "type_id", None) == 3 else 0


def _max_blob_gas(header: BlockHeaderAPI) -> int:
    """Blob gas a block may hold: 0 before Cancun, 6 blobs in Cancun, 9 in Prague (EIP-7691)."""
    if not hasattr(header, "blob_gas_used"):
        return 0
    if hasattr(header, "requests_hash"):
        from eth.vm.forks.prague.constants import MAX_BLOB_GAS_PER_BLOCK
    else:
        from eth.vm.forks.cancun.constants import MAX_BLOB_GAS_PER_BLOCK
    return MAX_BLOB_GAS_PER_BLOCK


def genesis_hash(blockchain: Blockchain) -> str:
    return encode_hex(blockchain.header_by_number(0).hash)


def contract_address(sender: bytes, nonce: int) -> bytes:
    import rlp

    return keccak(rlp.encode([sender, nonce]))[12:]
