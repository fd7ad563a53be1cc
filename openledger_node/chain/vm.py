"""The node's fork VMs.

Every fork the node can run is py-evm's VM for that fork, configured under an
OpenLedger name, plus speed-ups that give identical results (``VM_BY_FORK``:
Ethereum's rules, unchanged): the interpreter loop in C, accounts and storage slots of
recent roots read from flat dicts, a block's trie changes applied at once, hand-written
RLP, shallow copies (``docs/execution.md`` lists them, and the tests that compare each
with stock py-evm).  Chains with an ``openledger`` genesis section run
``OPENLEDGER_VM_BY_FORK``: the same VMs with the attribution precompiles added.
``stock_vms()`` gives py-evm's own VMs, for comparisons.
"""
from __future__ import annotations

import collections
import threading

import rlp
from eth.constants import BLANK_ROOT_HASH
from eth.db.account import AccountDB
from eth.db.cache import CacheDB
from eth.db.journal import JournalDB
from eth.db.storage import AccountStorageDB, StorageLookup
from eth.exceptions import Halt
from eth.rlp.accounts import Account
from eth.rlp.logs import Log
from eth.rlp.receipts import Receipt
from eth.vm.chain_context import ChainContext
from eth.vm.forks import (
    ArrowGlacierVM,
    BerlinVM,
    ByzantiumVM,
    CancunVM,
    ConstantinopleVM,
    FrontierVM,
    GrayGlacierVM,
    HomesteadVM,
    IstanbulVM,
    LondonVM,
    MuirGlacierVM,
    ParisVM,
    PetersburgVM,
    PragueVM,
    ShanghaiVM,
    SpuriousDragonVM,
    TangerineWhistleVM,
)
from eth.vm.forks.byzantium.constants import (
    EIP658_TRANSACTION_STATUS_CODE_FAILURE,
    EIP658_TRANSACTION_STATUS_CODE_SUCCESS,
)
from eth.vm.forks.prague.constants import (
    DEPOSIT_CONTRACT_ADDRESS,
    DEPOSIT_EVENT_SIGNATURE_HASH,
    DEPOSIT_REQUEST_TYPE,
)
from eth.vm.interrupt import MissingStorageTrieNode
from eth.vm.logic.invalid import InvalidOpcode
from eth_hash.auto import keccak
from eth_utils import get_extended_debug_logger, int_to_big_endian
from rlp.sedes.serializable import make_immutable

from .. import blobs
from ..precompiles.attribution import ProofOfAttribution
from ..precompiles.registry import DatanetRegistry
from . import _evm_loop, rlp_encode, trie
from .trie import BulkUpdate

trie.use_in_py_evm()  # same roots, built faster
blobs.use_in_py_evm()  # the KZG setup loaded once, not per 0x0a call

# (fork name, py-evm VM) in activation order.  Geth genesis keys map onto these.
FORKS = (
    ("frontier", FrontierVM),
    ("homestead", HomesteadVM),
    ("tangerineWhistle", TangerineWhistleVM),
    ("spuriousDragon", SpuriousDragonVM),
    ("byzantium", ByzantiumVM),
    ("constantinople", ConstantinopleVM),
    ("petersburg", PetersburgVM),
    ("istanbul", IstanbulVM),
    ("muirGlacier", MuirGlacierVM),
    ("berlin", BerlinVM),
    ("london", LondonVM),
    ("arrowGlacier", ArrowGlacierVM),
    ("grayGlacier", GrayGlacierVM),
    ("paris", ParisVM),
    ("shanghai", ShanghaiVM),
    ("cancun", CancunVM),
    ("prague", PragueVM),
)


def _shallow_copy(self, *args, **kwargs):
    """Blocks, headers, transactions and withdrawals are immutable: reuse the fields that
    are not replaced instead of rlp.Serializable's deep copy (~4 per sealed block)."""
    fields = dict(zip(self._meta.field_names, args))
    fields.update(kwargs)
    return type(self)(**{name: fields.get(name, getattr(self, name)) for name in self._meta.field_names})


def _fast_copy(self, *args, **kwargs):
    """Accounts and headers, whose constructors set nothing but their fields: the copy
    reuses the fields that are not replaced and skips the constructor's argument checks
    for those already checked (several copies per transaction: balances, nonces, gas used)."""
    meta = self._meta
    new = object.__new__(type(self))
    fields = new.__dict__
    old = self.__dict__
    for attr in meta.field_attrs:
        fields[attr] = old[attr]
    if args or kwargs:
        attrs = _FIELD_ATTRS.get(type(self))
        if attrs is None:
            attrs = _FIELD_ATTRS[type(self)] = dict(zip(meta.field_names, meta.field_attrs))
        if len(args) > len(attrs):
            raise TypeError(f"{type(self).__name__}.copy: {len(args)} positional fields, at most {len(attrs)}")
        for name, value in zip(meta.field_names, args):
            fields[attrs[name]] = make_immutable(value)
        for name, value in kwargs.items():
            attr = attrs.get(name)
            if attr is None:
                raise TypeError(f"{type(self).__name__}.copy: no field {name!r}")
            fields[attr] = make_immutable(value)
    return new


_FIELD_ATTRS: dict[type, dict[str, str]] = {}


class _PragueVM:
    # The chain's deposit contract (geth genesis: config.depositContractAddress); the
    # chain sets it per VM instance.  py-evm's own code uses mainnet's, a constant.
    deposit_contract_address = DEPOSIT_CONTRACT_ADDRESS

    def process_deposit_request_data(self, block):
        # EIP-6110 deposit requests come from logs of the deposit contract.  With no code
        # at its address no such log exists, so skip re-reading every receipt of the block
        # from the receipt trie (the request list is the same: the empty deposit request).
        address = self.deposit_contract_address
        if not self.state.get_code(address):
            block.block_requests.append(DEPOSIT_REQUEST_TYPE)
            return
        if address == DEPOSIT_CONTRACT_ADDRESS:
            super().process_deposit_request_data(block)
            return
        data = b""  # py-evm's loop, for this chain's address
        for receipt in block.get_receipts(self.chaindb):
            for log in receipt.logs:
                if log.address == address and log.topics and \
                        log.topics[0].to_bytes(32, "big") == DEPOSIT_EVENT_SIGNATURE_HASH:
                    data += (log.data[192:240] + log.data[288:320] + log.data[352:360]
                             + log.data[416:512] + log.data[544:552])
        block.block_requests.append(DEPOSIT_REQUEST_TYPE + data)


class _Account(Account):
    """An account whose ``copy`` reuses its fields (py-evm copies one per balance or
    nonce change: ~5 deep copies per transfer)."""

    copy = _fast_copy


_BLANK_ACCOUNT = _Account()


class _FlatRoots:
    """The content of the tries of recent roots, by trie key: what the trie holds at that
    root (an encoded value, or b"" for none).  A root names its content, so an entry is
    true in any database and for any account; each root's dict is written only with what
    its trie holds, and a new root gets a new dict (readers of the old root keep theirs)."""

    def __init__(self, max_roots: int, max_entries: int) -> None:
        self.max_roots = max_roots
        self.max_entries = max_entries
        self._roots: collections.OrderedDict[bytes, dict[bytes, bytes]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, root: bytes) -> dict[bytes, bytes]:
        with self._lock:
            entries = self._roots.get(root)
            if entries is None:
                entries = self._roots[root] = {}
                while len(self._roots) > self.max_roots:
                    self._roots.popitem(last=False)
            else:
                self._roots.move_to_end(root)
            return entries

    def advance(self, old: dict[bytes, bytes], root: bytes, changes) -> dict[bytes, bytes]:
        """The dict of ``root``: ``old`` (the parent root's) with ``changes`` ((key, value)
        pairs, b"" for deleted) applied."""
        entries = dict(old) if len(old) < self.max_entries else {}
        entries.update(changes)
        with self._lock:
            self._roots[root] = entries
            self._roots.move_to_end(root)
            while len(self._roots) > self.max_roots:
                self._roots.popitem(last=False)
        return entries


_FLAT_ACCOUNTS = _FlatRoots(max_roots=4, max_entries=100_000)
_FLAT_STORAGE = _FlatRoots(max_roots=512, max_entries=20_000)  # by storage root: many accounts'


class _FlatLayer:
    """Account lookups under py-evm's per-block account cache: from the flat accounts of
    the trie's root when the AccountDB's trie is at that root, else from the trie.  Like
    the trie, it answers b"" for an address with no account."""

    def __init__(self, db, account_db: "_AccountDB") -> None:
        self._db = db
        self._account_db = account_db

    def __getitem__(self, address: bytes) -> bytes:
        owner = self._account_db
        if owner._trie.root_hash != owner._flat_root:
            return self._db[address]
        accounts = owner._flat
        value = accounts.get(address)
        if value is None:
            value = self._db[address]
            if len(accounts) < _FLAT_ACCOUNTS.max_entries:
                accounts[address] = value
        return value

    def __contains__(self, address: bytes) -> bool:
        return address in self._db

    def __setitem__(self, address: bytes, value: bytes) -> None:
        self._db[address] = value  # (py-evm writes the trie elsewhere; kept exact anyway)
        self._account_db._flat_root = None

    def __delitem__(self, address: bytes) -> None:
        del self._db[address]
        self._account_db._flat_root = None


class _StorageLookup(StorageLookup):
    """py-evm's storage trie of one account, with writes held until its root is needed and
    then applied at once (trie.BulkUpdate) instead of slot by slot, and reads of the
    starting root served from ``_FLAT_STORAGE`` when a recent block read or wrote the slot.
    Reads see the held writes; a switch to a new (wiped) trie applies them first, a
    rollback past the switch drops the wiped trie's."""

    def _initialize_to_root_hash(self, root_hash) -> None:
        super()._initialize_to_root_hash(root_hash)
        self._pending: dict[bytes, bytes] = {}
        self._applied: dict[bytes, bytes] | None = {}  # written into the trie since root_hash
        self._flat_root = root_hash
        self._flat = _FLAT_STORAGE.get(root_hash)

    def _flush(self) -> None:
        if self._pending:
            write_trie = self._get_write_trie()
            write_trie.root_hash = BulkUpdate(self._trie_nodes_batch).apply(write_trie.root_hash, self._pending)
            if self._applied is not None:
                self._applied.update(self._pending)
            self._pending = {}

    def __getitem__(self, key: bytes) -> bytes:
        slot = self._decode_key(key)
        if self._pending:
            value = self._pending.get(slot)
            if value is not None:
                return value
        if self._write_trie is None and self._starting_root_hash == self._flat_root:
            flat = self._flat
            value = flat.get(slot)
            if value is None:
                value = super().__getitem__(key)
                if len(flat) < _FLAT_STORAGE.max_entries:
                    flat[slot] = value
            return value
        return super().__getitem__(key)

    def _exists(self, key: bytes) -> bool:
        return self[key] != b""  # as the trie answers: a slot exists when it holds a value

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._get_write_trie()  # the root has changed from here on (has_changed_root)
        self._pending[self._decode_key(key)] = value

    def __delitem__(self, key: bytes) -> None:
        self._get_write_trie()
        self._pending[self._decode_key(key)] = b""

    def get_changed_root(self):
        self._flush()
        return super().get_changed_root()

    def commit_to(self, db) -> None:
        self._flush()
        known = self._applied is not None and self._starting_root_hash == self._flat_root
        flat, applied = self._flat, self._applied
        super().commit_to(db)  # now at the new root (_initialize_to_root_hash)
        if known:
            self._flat = _FLAT_STORAGE.advance(flat, self._starting_root_hash, applied.items())

    def new_trie(self) -> int:
        self._flush()
        self._applied = None  # what follows is relative to the wiped trie: not followed here
        return super().new_trie()

    def rollback_trie(self, trie_index: int) -> None:
        self._pending = {}
        self._applied = None
        super().rollback_trie(trie_index)


class _AccountStorageDB(AccountStorageDB):
    """py-evm's AccountStorageDB over ``_StorageLookup``, with slot values encoded and
    decoded by hand (the canonical RLP integers pyrlp writes; anything else goes to pyrlp)."""

    def __init__(self, db, storage_root, address) -> None:
        super().__init__(db, storage_root, address)
        self._storage_lookup = _StorageLookup(db, storage_root, address)
        self._storage_cache = CacheDB(self._storage_lookup)
        self._locked_changes = JournalDB(self._storage_cache)
        self._journal_storage = JournalDB(self._locked_changes)

    def get(self, slot: int, from_journal: bool = True) -> int:
        # AccountStorageDB.get
        self._accessed_slots.add(slot)
        key = int_to_big_endian(slot)
        lookup_db = self._journal_storage if from_journal else self._locked_changes
        try:
            encoded = lookup_db[key]
        except MissingStorageTrieNode:
            raise
        except KeyError:
            return 0
        if encoded == b"":
            return 0
        first = encoded[0]
        if first < 0x80 and len(encoded) == 1:
            return first
        if 0x80 < first <= 0xA0 and len(encoded) == first - 0x7F and (first > 0x81 or encoded[1] >= 0x80) \
                and encoded[1] != 0:
            return int.from_bytes(encoded[1:], "big")
        return rlp.decode(encoded, sedes=rlp.sedes.big_endian_int)

    def set(self, slot: int, value: int) -> None:
        # AccountStorageDB.set
        key = int_to_big_endian(slot)
        if value:
            self._journal_storage[key] = rlp_encode.uint(value)
        else:
            try:
                current = self._journal_storage[key]
            except KeyError:
                return  # deleting an empty key has no effect
            if current != b"":
                del self._journal_storage[key]


class _AccountDB(AccountDB):
    """py-evm's AccountDB, handing out ``_Account``s, and reading accounts that a recent
    block already read or wrote from ``_FLAT_ACCOUNTS`` instead of walking the account
    trie (py-evm empties its own account cache at every new state root).  What it
    stores, and every root, is unchanged."""

    def __init__(self, db, state_root=BLANK_ROOT_HASH) -> None:
        super().__init__(db, state_root)
        self._flat_root = state_root
        self._flat = _FLAT_ACCOUNTS.get(state_root)
        self._flat_diff = None
        self._trie_cache = CacheDB(_FlatLayer(self._trie_logger, self))
        self._journaltrie = JournalDB(self._trie_cache)

    def _set_account(self, address, account) -> None:
        # AccountDB._set_account, with the account encoded by hand (rlp_encode.account)
        self._account_cache[address] = account
        self._journaltrie[address] = rlp_encode.account(
            account.nonce, account.balance, account.storage_root, account.code_hash)

    def _get_address_store(self, address):
        # AccountDB._get_address_store, with the node's AccountStorageDB
        store = self._account_stores.get(address)
        if store is None:
            store = self._account_stores[address] = _AccountStorageDB(
                self._raw_store_db, self._get_storage_root(address), address)
        return store

    def _apply_account_diff_without_proof(self, diff, trie) -> None:
        """Apply the block's account changes to the account trie at once (trie.BulkUpdate)
        instead of key by key; ``trie`` is py-evm's HashTrie over the squashing HexaryTrie."""
        self._flat_diff = diff
        changes = {keccak(address): b"" for address in diff.deleted_keys()}
        changes.update((keccak(address), value) for address, value in diff.pending_items())
        hexary = trie._db
        hexary.root_hash = BulkUpdate(hexary.db).apply(hexary.root_hash, changes)

    def make_state_root(self):
        before = self._trie.root_hash
        self._flat_diff = None
        root = super().make_state_root()
        if root != before:
            if self._flat_diff is not None and self._flat_root == before:
                diff = self._flat_diff
                changes = [(address, b"") for address in diff.deleted_keys()]
                changes.extend(diff.pending_items())
                self._flat = _FLAT_ACCOUNTS.advance(self._flat, root, changes)
            else:
                self._flat = _FLAT_ACCOUNTS.get(root)
            self._flat_root = root
        self._flat_diff = None
        return root

    def _get_account(self, address, from_journal=True):
        if from_journal and address in self._account_cache:
            return self._account_cache[address]
        encoded = self._get_encoded_account(address, from_journal)
        account = rlp.decode(encoded, sedes=_Account) if encoded else _BLANK_ACCOUNT
        if from_journal:
            self._account_cache[address] = account
        return account


_FAST_HEADERS: dict[type, type] = {}


def _fast_header(header):
    """``header`` as a subclass of its class whose ``copy`` reuses its fields: a block
    under construction copies its header once per transaction (gas used, bloom)."""
    cls = type(header)
    fast = _FAST_HEADERS.get(cls)
    if fast is None:
        if "copy" in cls.__dict__ and cls.__dict__["copy"] is _fast_copy:
            return header
        fast = _FAST_HEADERS[cls] = type(cls.__name__, (cls,), {"copy": _fast_copy, "__module__": cls.__module__})
    return fast(**{name: getattr(header, name) for name in cls._meta.field_names})


_NO_RESULT = object()
_LOOP_TABLES: dict[type, _evm_loop.Table] = {}
native_loop = True
"""False: every computation runs py-evm's own interpreter loop (for comparisons; the
results are the same)."""


def _py_loop(computation) -> None:
    """py-evm's interpreter loop (BaseComputation.apply_computation), with its debug log."""
    show_debug2 = computation.logger.show_debug2
    opcode_lookup = computation.opcodes
    for opcode in computation.code:
        try:
            opcode_fn = opcode_lookup[opcode]
        except KeyError:
            opcode_fn = InvalidOpcode(opcode)
        if show_debug2:
            mnemonic = getattr(opcode_fn, "mnemonic", None) or opcode_fn.__wrapped__.mnemonic
            computation.logger.debug2(
                f"OPCODE: 0x{opcode:x} ({mnemonic}) | pc: {max(0, computation.code.program_counter - 1)} | "
                f"stack: {computation._stack}")
        try:
            opcode_fn(computation=computation)
        except Halt:
            break


def record_creation(cls, computation, message, parent_computation) -> None:
    """The start of py-evm's BaseComputation.apply_computation: initcode gas for a create
    transaction (Shanghai on), and the list of contracts created in the transaction."""
    if computation.is_origin_computation:
        computation.contracts_created = []
        if message.is_create:
            cls.consume_initcode_gas_cost(computation)
    if parent_computation is not None:
        computation.contracts_created = parent_computation.contracts_created
    if message.is_create:
        computation.contracts_created.append(message.storage_address)


class _NativeLoopComputation:
    """A fork's computation whose interpreter loop is ``_evm_loop.run`` (C); everything
    before the loop is py-evm's ``BaseComputation.apply_computation``, unchanged."""

    @classmethod
    def apply_computation(cls, state, message, transaction_context, parent_computation=None):
        with cls(state, message, transaction_context) as computation:
            record_creation(cls, computation, message, parent_computation)
            precompile = computation.precompiles.get(message.code_address, _NO_RESULT)
            if precompile is not _NO_RESULT:
                if not message.is_delegation:
                    precompile(computation)
                return computation
            if not native_loop or computation.logger.show_debug2 or not _evm_loop.run(computation, _loop_table(cls)):
                _py_loop(computation)
        return computation


def _loop_table(cls) -> _evm_loop.Table:
    table = _LOOP_TABLES.get(cls)
    if table is None or table.opcodes is not cls.opcodes:
        table = _LOOP_TABLES[cls] = _evm_loop.Table(cls.opcodes)
    return table


def log_bloom(log_entries) -> int:
    """The logs bloom of ``(address, topics, data)`` entries, as eth_bloom computes it:
    per address and 32-byte topic, three bits from the first six bytes of its keccak."""
    bits = 0
    for address, topics, _ in log_entries:
        for value in (address, *(topic.to_bytes(32, "big") for topic in topics)):
            h = keccak(value)
            bits |= (1 << (((h[0] << 8) | h[1]) & 2047)) | (1 << (((h[2] << 8) | h[3]) & 2047)) \
                | (1 << (((h[4] << 8) | h[5]) & 2047))
    return bits


def encode_receipt_payload(status: bytes, gas_used: int, bloom: int, log_entries) -> bytes:
    """rlp.encode(Receipt(status, gas_used, logs, bloom)): what a receipt trie holds (after
    the type byte of a typed receipt)."""
    logs = [
        rlp_encode.list_of(rlp_encode.string(address),
                           rlp_encode.list_of(*(rlp_encode.string(t.to_bytes(32, "big")) for t in topics)),
                           rlp_encode.string(data))
        for address, topics, data in log_entries
    ]
    return rlp_encode.list_of(rlp_encode.string(status), rlp_encode.uint(gas_used),
                              rlp_encode.string(bloom.to_bytes(256, "big")), rlp_encode.list_of(*logs))


class _ReceiptVM:
    """Byzantium on: py-evm's ``make_receipt`` for legacy, EIP-2930 and EIP-1559
    transactions, with the bloom and the receipt's encoding computed by hand (py-evm's
    eth_bloom and pyrlp cost ~10% of an ERC-20 transfer's execution)."""

    @classmethod
    def make_receipt(cls, base_header, transaction, computation, state):
        type_id = getattr(transaction, "type_id", None)
        if type_id not in (None, 1, 2):
            return super().make_receipt(base_header, transaction, computation, state)
        gas_used = base_header.gas_used + cls.finalize_gas_used(transaction, computation)
        status = EIP658_TRANSACTION_STATUS_CODE_FAILURE if computation.is_error else EIP658_TRANSACTION_STATUS_CODE_SUCCESS
        entries = computation.get_log_entries()
        bloom = log_bloom(entries)
        receipt = Receipt(state_root=status, gas_used=gas_used, bloom=bloom,
                          logs=[Log(address, topics, data) for address, topics, data in entries])
        receipt._cached_rlp = encode_receipt_payload(status, gas_used, bloom, entries)  # what rlp.encode caches
        if type_id is None:
            return receipt
        return transaction.receipt_builder.typed_receipt_class(type_id, receipt)


def _node_vm(name: str, vm):
    block_class = vm.get_block_class()
    fast_block = type(block_class.__name__, (block_class,), {"copy": _shallow_copy})
    state_class = vm.get_state_class()
    computation_class = state_class.computation_class
    fast_computation = type(computation_class.__name__, (_NativeLoopComputation, computation_class), {"__module__": __name__})
    fast_state = type(state_class.__name__, (state_class,), {
        "account_db_class": _AccountDB, "computation_class": fast_computation, "__module__": __name__,
        # py-evm's BaseState.logger looks its logger up anew at every use (several per transaction)
        "logger": get_extended_debug_logger(f"eth.vm.state.{state_class.__name__}")})
    base_create_header = vm.create_header_from_parent

    def create_header_from_parent(parent_header, **header_params):
        return _fast_header(base_create_header(parent_header, **header_params))

    bases = (_PragueVM, vm) if name == "prague" else (vm,)
    if FORK_NAMES.index(name) >= FORK_NAMES.index("byzantium"):
        bases = (_ReceiptVM, *bases)
    # No DAO fork (a mainnet-only irregular state change; geth genesis files without
    # daoForkBlock have none): py-evm's Homestead family refuses to run unconfigured.
    return type(f"OpenLedger{vm.__name__}", bases, {
        "block_class": fast_block, "_state_class": fast_state, "support_dao_fork": False,
        "create_header_from_parent": staticmethod(create_header_from_parent),
    })


FORK_NAMES = [name for name, _ in FORKS]
VM_BY_FORK = {name: _node_vm(name, vm) for name, vm in FORKS}
FORK_ORDER = [name for name, _ in FORKS]


class OpenLedgerChainContext(ChainContext):
    """py-evm's chain context plus what the OpenLedger precompiles need (the treasury and
    the attribution indexes: precompiles.store.OpenLedgerContext)."""

    def __init__(self, chain_id: int, openledger) -> None:
        super().__init__(chain_id)
        self.openledger = openledger


class _PrecompileVM:
    @classmethod
    def create_execution_context(cls, header, prev_hashes, chain_context):
        context = super().create_execution_context(header, prev_hashes, chain_context)
        # Read by the precompiles (precompiles.base.Call.context); None outside a chain
        # built with an OpenLedger context, and then a precompile call fails loudly.
        context.openledger = getattr(chain_context, "openledger", None)
        return context


def _with_precompiles(vm):
    """``vm`` with DatanetRegistry at 0x…0A01 and ProofOfAttribution at 0x…0A02."""
    state_class = vm.get_state_class()
    computation_class = state_class.computation_class
    precompiles = {**computation_class.get_precompiles(), **OPENLEDGER_PRECOMPILES}
    computation = type(computation_class.__name__, (computation_class,), {"_precompiles": precompiles, "__module__": __name__})
    state = type(state_class.__name__, (state_class,), {"computation_class": computation, "__module__": __name__})
    name = vm.__name__.replace("OpenLedger", "OpenLedgerPoA")
    return type(name, (_PrecompileVM, vm), {"_state_class": state, "__module__": __name__})


# The OpenLedger precompiles exist on chains whose genesis has an ``openledger`` section,
# from Berlin on (they price storage as EIP-2929 does).  Building them checks each
# implementation against its Solidity interface: a mismatch stops the node here.
OPENLEDGER_PRECOMPILES = {
    precompile.address: precompile for precompile in (DatanetRegistry(), ProofOfAttribution())
}
_FIRST_PRECOMPILE_FORK = FORK_ORDER.index("berlin")
OPENLEDGER_VM_BY_FORK = {
    name: _with_precompiles(vm) if FORK_ORDER.index(name) >= _FIRST_PRECOMPILE_FORK else vm
    for name, vm in VM_BY_FORK.items()
}


def stock_vms(openledger: bool = True) -> dict[str, type]:
    """py-evm's own VMs (none of the node's speed-ups: interpreter loop, flat accounts,
    bulk trie updates, shallow copies), with the OpenLedger precompiles if ``openledger``:
    the peer that benchmarks measure the node's VMs against (``Blockchain.chain.vms``)."""
    vms = {}
    for name, vm in FORKS:
        plain = type(f"Stock{vm.__name__}", (vm,), {"support_dao_fork": False, "__module__": __name__})
        use_precompiles = openledger and FORK_ORDER.index(name) >= _FIRST_PRECOMPILE_FORK
        vms[name] = _with_precompiles(plain) if use_precompiles else plain
    return vms
