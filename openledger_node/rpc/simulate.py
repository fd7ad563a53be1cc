"""``eth_simulateV1``: calls packed into simulated blocks on top of a chosen block, as geth runs them.

Every simulated block is built and executed with the fork VM its number and timestamp
select, on a throwaway overlay of the node's database (nothing is ever written to
LevelDB): state and block overrides, the system calls of Cancun and Prague
(EIP-4788, EIP-2935, EIP-7002/7251 queues, EIP-7685 requests), withdrawals, block
rewards before the merge, receipts, and the header with every root, so the blocks'
hashes are the ones geth reports for the same input.

geth's rules kept here (internal/ethapi/simulate.go, transaction_args.go, errors.go,
logtracer.go):

- blocks: at most 256 past the base; numbers and timestamps strictly increase (the
  timestamp defaults to the parent's + 12); gaps in numbers are filled with empty
  blocks; coinbase and gas limit default to the previous block's; difficulty is 0 after
  the merge; the base fee is 0 unless overridden, or, with ``validation``, the
  EIP-1559 base fee of the parent;
- calls: the nonce defaults to the sender's, the gas to what is left of the block, then
  capped by what is left of the request's gas budget (50,000,000 in all); the fee fields
  default to 0; each call is an unsigned transaction (dynamic-fee unless it sets
  ``gasPrice``, blob hashes or an authorization list) whose hash names it;
- a call that cannot be applied (nonce, fees, funds, intrinsic gas) fails the whole
  request, with the -38xxx codes; one that reverts or fails in the EVM does not: its
  result carries the error (-32000 with the revert data, or -32015);
- without ``validation`` nonces are not checked and a call with zero fee fields pays
  nothing, whatever the base fee;
- ``traceTransfers`` adds an ERC-20-style Transfer log from 0xEeee…EEeE for every
  value transfer (transaction, CALL, CREATE, SELFDESTRUCT), in execution order;
- ``movePrecompileToAddress`` moves a precompile for the rest of its block.
"""
from __future__ import annotations

import functools
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

import rlp
from eth.abc import BlockHeaderAPI
from eth.constants import BLANK_ROOT_HASH
from eth.db.atomic import AtomicDBWriteBatch
from eth.db.backends.base import BaseAtomicDB
from eth.db.chain import ChainDB
from eth.exceptions import Revert
from eth.vm.forks.shanghai.withdrawals import Withdrawal
from eth_utils import to_checksum_address

from ..chain.genesis import fork_at
from ..chain.vm import FORK_ORDER, OPENLEDGER_VM_BY_FORK, VM_BY_FORK
from .encoding import parse_address, parse_block_tag, parse_bool, parse_data, parse_hash, parse_quantity, to_data, to_quantity
from .jsonrpc import RPCError, decode_revert_reason
from .views import header_json, transaction_json

if TYPE_CHECKING:
    from ..node import Node

MAX_BLOCKS = 256
TIMESTAMP_INCREMENT = 12
GAS_CAP = 50_000_000  # geth's --rpc.gascap: the budget of the whole request
UINT64 = 2**64
INITIAL_BASE_FEE = 1_000_000_000
GAS_PER_BLOB = 2**17
MAX_INITCODE_SIZE = 49_152
TRANSFER_TOPIC = bytes.fromhex("ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef")
TRANSFER_ADDRESS = bytes.fromhex("eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee")  # ERC-7528
ZERO_ADDRESS = b"\x00" * 20
ZERO_HASH = b"\x00" * 32

# geth's error codes (internal/ethapi/errors.go)
NONCE_TOO_HIGH, NONCE_TOO_LOW = -38011, -38010
INTRINSIC_GAS, INSUFFICIENT_FUNDS, BLOCK_GAS_LIMIT = -38013, -38014, -38015
BLOCK_NUMBER_INVALID, BLOCK_TIMESTAMP_INVALID = -38020, -38021
MAX_INITCODE_EXCEEDED, CLIENT_LIMIT = -38025, -38026
INTERNAL, INVALID_PARAMS, SERVER = -32603, -32602, -32000
REVERTED, VM_ERROR = -32000, -32015


class SimulateError(RPCError):
    pass


def _tx_error(code: int, message: str, gas: int) -> SimulateError:
    """A call geth could not apply: the whole request fails (``applyMessageWithEVM``'s wording)."""
    return SimulateError(code, f"err: {message} (supplied gas {gas})")


# --------------------------------------------------------------------------- parsing

def _fields(obj: Any, what: str) -> dict[str, Any]:
    """A JSON object with its keys lower-cased: Go's encoding/json matches field names
    without regard to case (the suite sends ``MovePrecompileToAddress``)."""
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise SimulateError(INVALID_PARAMS, f"invalid {what}: expected an object")
    return {key.lower(): value for key, value in obj.items()}


def _opt(fields: dict[str, Any], key: str, parse, name: str, **kw):
    value = fields.get(key.lower())
    return None if value is None else parse(value, name=name, **kw)


@dataclass
class CallArgs:
    sender: bytes
    to: bytes | None
    gas: int | None
    gas_price: int | None
    max_fee: int | None
    max_tip: int | None
    blob_fee: int | None
    value: int | None
    nonce: int | None
    data: bytes
    access_list: tuple | None
    chain_id: int | None
    blob_hashes: list[bytes] | None
    authorizations: list[dict[str, Any]] | None

    @classmethod
    def parse(cls, obj: Any) -> "CallArgs":
        from .eth import parse_access_list, parse_authorization_list

        f = _fields(obj, "call")
        data, inp = f.get("data"), f.get("input")
        raw = inp if inp is not None else data
        to = f.get("to")
        blob_hashes = f.get("blobversionedhashes")
        if blob_hashes is not None and not isinstance(blob_hashes, list):
            raise SimulateError(INVALID_PARAMS, "invalid blobVersionedHashes: expected an array")
        return cls(
            sender=_opt(f, "from", parse_address, "from") or ZERO_ADDRESS,
            to=parse_address(to, name="to") if to is not None else None,
            gas=_opt(f, "gas", parse_quantity, "gas", max_value=UINT64 - 1),
            gas_price=_opt(f, "gasPrice", parse_quantity, "gasPrice"),
            max_fee=_opt(f, "maxFeePerGas", parse_quantity, "maxFeePerGas"),
            max_tip=_opt(f, "maxPriorityFeePerGas", parse_quantity, "maxPriorityFeePerGas"),
            blob_fee=_opt(f, "maxFeePerBlobGas", parse_quantity, "maxFeePerBlobGas"),
            value=_opt(f, "value", parse_quantity, "value"),
            nonce=_opt(f, "nonce", parse_quantity, "nonce", max_value=UINT64 - 1),
            data=parse_data(raw, name="input") if raw is not None else b"",
            access_list=parse_access_list(f.get("accesslist")),
            chain_id=_opt(f, "chainId", parse_quantity, "chainId"),
            blob_hashes=[parse_hash(h, name="blob hash") for h in blob_hashes] if blob_hashes is not None else None,
            authorizations=parse_authorization_list(f.get("authorizationlist")),
        )


@dataclass
class AccountOverride:
    address: bytes
    nonce: int | None = None
    code: bytes | None = None
    balance: int | None = None
    state: dict[int, int] | None = None
    state_diff: dict[int, int] | None = None
    move_to: bytes | None = None


def _slots(value: Any, name: str) -> dict[int, int] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise SimulateError(INVALID_PARAMS, f"invalid {name}: expected an object")
    return {int.from_bytes(parse_hash(k, name=f"{name} key"), "big"): int.from_bytes(parse_hash(v, name=f"{name} value"), "big")
            for k, v in value.items()}


def parse_state_overrides(obj: Any) -> list[AccountOverride]:
    if obj is None:
        return []
    if not isinstance(obj, dict):
        raise SimulateError(INVALID_PARAMS, "invalid stateOverrides: expected an object")
    out = []
    for key, account in obj.items():
        f = _fields(account, "account override")
        out.append(AccountOverride(
            address=parse_address(key, name="state override address"),
            nonce=_opt(f, "nonce", parse_quantity, "nonce", max_value=UINT64 - 1),
            code=_opt(f, "code", parse_data, "code"),
            balance=_opt(f, "balance", parse_quantity, "balance"),
            state=_slots(f.get("state"), "state"),
            state_diff=_slots(f.get("statediff"), "stateDiff"),
            move_to=_opt(f, "movePrecompileToAddress", parse_address, "movePrecompileToAddress"),
        ))
    return out


@dataclass
class BlockOverrides:
    number: int | None = None
    difficulty: int | None = None
    time: int | None = None
    gas_limit: int | None = None
    fee_recipient: bytes | None = None
    prev_randao: bytes | None = None
    base_fee: int | None = None
    blob_base_fee: int | None = None
    beacon_root: bytes | None = None
    withdrawals: list[Withdrawal] | None = None

    @classmethod
    def parse(cls, obj: Any) -> "BlockOverrides":
        f = _fields(obj, "blockOverrides")
        withdrawals = f.get("withdrawals")
        if withdrawals is not None:
            if not isinstance(withdrawals, list):
                raise SimulateError(INVALID_PARAMS, "invalid withdrawals: expected an array")
            parsed = []
            for w in withdrawals:
                wf = _fields(w, "withdrawal")
                parsed.append(Withdrawal(
                    index=parse_quantity(wf.get("index", "0x0"), name="withdrawal index", max_value=UINT64 - 1),
                    validator_index=parse_quantity(wf.get("validatorindex", "0x0"), name="validatorIndex", max_value=UINT64 - 1),
                    address=parse_address(wf.get("address"), name="withdrawal address"),
                    amount=parse_quantity(wf.get("amount", "0x0"), name="withdrawal amount", max_value=UINT64 - 1),
                ))
            withdrawals = parsed
        return cls(
            number=_opt(f, "number", parse_quantity, "number"),
            difficulty=_opt(f, "difficulty", parse_quantity, "difficulty"),
            time=_opt(f, "time", parse_quantity, "time", max_value=UINT64 - 1),
            gas_limit=_opt(f, "gasLimit", parse_quantity, "gasLimit", max_value=UINT64 - 1),
            fee_recipient=_opt(f, "feeRecipient", parse_address, "feeRecipient"),
            prev_randao=_opt(f, "prevRandao", parse_hash, "prevRandao"),
            base_fee=_opt(f, "baseFeePerGas", parse_quantity, "baseFeePerGas"),
            blob_base_fee=_opt(f, "blobBaseFee", parse_quantity, "blobBaseFee"),
            beacon_root=_opt(f, "beaconRoot", parse_hash, "beaconRoot"),
            withdrawals=withdrawals,
        )


@dataclass
class SimBlock:
    overrides: BlockOverrides
    state_overrides: list[AccountOverride] = field(default_factory=list)
    calls: list[Any] = field(default_factory=list)  # raw call objects, parsed when run


@dataclass
class Options:
    blocks: list[SimBlock]
    trace_transfers: bool
    validation: bool
    full_transactions: bool

    @classmethod
    def parse(cls, obj: Any) -> "Options":
        f = _fields(obj, "simulation options")
        raw_blocks = f.get("blockstatecalls")
        if raw_blocks is None:
            raw_blocks = []
        if not isinstance(raw_blocks, list):
            raise SimulateError(INVALID_PARAMS, "invalid blockStateCalls: expected an array")
        if not raw_blocks:
            raise SimulateError(INVALID_PARAMS, "empty input")
        if len(raw_blocks) > MAX_BLOCKS:
            raise SimulateError(CLIENT_LIMIT, "too many blocks")
        blocks = []
        for raw in raw_blocks:
            bf = _fields(raw, "block state call")
            calls = bf.get("calls") or []
            if not isinstance(calls, list):
                raise SimulateError(INVALID_PARAMS, "invalid calls: expected an array")
            blocks.append(SimBlock(BlockOverrides.parse(bf.get("blockoverrides")),
                                   parse_state_overrides(bf.get("stateoverrides")), calls))

        def flag(key: str) -> bool:
            value = f.get(key.lower())
            return False if value is None else parse_bool(value, name=key)

        return cls(blocks, flag("traceTransfers"), flag("validation"), flag("returnFullTransactions"))


# ----------------------------------------------------------------------- overlay db

class OverlayDB(BaseAtomicDB):
    """Reads through to the node's store; every write stays here and is dropped."""

    def __init__(self, base) -> None:
        self.base = base
        self.writes: dict[bytes, bytes | None] = {}

    def __getitem__(self, key: bytes) -> bytes:
        if key in self.writes:
            value = self.writes[key]
            if value is None:
                raise KeyError(key)
            return value
        return self.base[key]

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.writes[key] = value

    def __delitem__(self, key: bytes) -> None:
        self.writes[key] = None

    def _exists(self, key: bytes) -> bool:
        try:
            self[key]
        except KeyError:
            return False
        return True

    @contextmanager
    def atomic_batch(self) -> Iterator[Any]:
        with AtomicDBWriteBatch._commit_unless_raises(self) as batch:
            yield batch


# ------------------------------------------------------------------ tracing (logs)

class LogTracer:
    """geth's simulate tracer: logs per open call frame, dropped with a failed frame;
    value transfers recorded as Transfer logs when asked.  The log index runs on over
    the block and is not given back by dropped logs (as in the geth that wrote the suite)."""

    def __init__(self, trace_transfers: bool, number: int, timestamp: int) -> None:
        self.trace_transfers = trace_transfers
        self.number = number
        self.timestamp = timestamp
        self.frames: list[list[dict[str, Any]]] = []
        self.count = 0
        self.tx_hash = ZERO_HASH
        self.tx_index = 0
        self.pending_kind: str | None = None  # the opcode that made the next frame

    def reset(self, tx_hash: bytes, index: int) -> None:
        self.frames = []
        self.tx_hash, self.tx_index = tx_hash, index

    def enter(self, sender: bytes, to: bytes, value: int, kind: str | None) -> None:
        self.frames.append([])
        if kind not in ("DELEGATECALL", "CALLCODE") and value > 0:
            self.transfer(sender, to, value)

    def exit(self, depth: int, failed: bool) -> None:
        if not self.frames:
            return
        if depth == 0:
            if failed:
                self.frames[0] = []
            return
        if len(self.frames) <= 1:
            return
        call = self.frames.pop()
        if not failed:
            self.frames[-1].extend(call)

    def log(self, address: bytes, topics: list[bytes], data: bytes) -> None:
        if not self.frames:
            self.frames.append([])
        self.frames[-1].append({
            "address": address, "topics": topics, "data": data, "index": self.count,
            "tx_hash": self.tx_hash, "tx_index": self.tx_index,
        })
        self.count += 1

    def transfer(self, sender: bytes, to: bytes, value: int) -> None:
        if self.trace_transfers:
            self.log(TRANSFER_ADDRESS, [TRANSFER_TOPIC, sender.rjust(32, b"\x00"), to.rjust(32, b"\x00")],
                     value.to_bytes(32, "big"))

    def logs(self) -> list[dict[str, Any]]:
        return self.frames[0] if self.frames else []


def _word(value: int | bytes) -> int:
    return value if isinstance(value, int) else int.from_bytes(value, "big")


def _marked(opcode_fn, kind: str):
    def traced(computation) -> None:
        tracer = getattr(computation.state, "sim_tracer", None)
        if tracer is not None:
            tracer.pending_kind = kind
        return opcode_fn(computation=computation)

    traced.mnemonic = getattr(opcode_fn, "mnemonic", kind)
    return traced


def _selfdestruct(opcode_fn):
    def traced(computation) -> None:
        tracer = getattr(computation.state, "sim_tracer", None)
        values = computation._stack.values
        if tracer is not None and values:
            beneficiary = _word(values[-1]).to_bytes(32, "big")[12:]
            contract = computation.msg.storage_address
            tracer.enter(contract, beneficiary, computation.state.get_balance(contract), "SELFDESTRUCT")
            tracer.exit(computation.msg.depth + 1, False)
        return opcode_fn(computation=computation)

    traced.mnemonic = getattr(opcode_fn, "mnemonic", "SELFDESTRUCT")
    return traced


@functools.lru_cache(maxsize=None)
def _sim_computation(base: type) -> type:
    """``base`` that reports frames and logs to the state's ``sim_tracer`` and runs the
    state's ``sim_precompiles`` (moved precompiles) — one class per fork."""
    opcodes = dict(base.opcodes)
    for op, kind in ((0xF2, "CALLCODE"), (0xF4, "DELEGATECALL")):
        if op in opcodes:
            opcodes[op] = _marked(opcodes[op], kind)
    if 0xFF in opcodes:
        opcodes[0xFF] = _selfdestruct(opcodes[0xFF])

    class SimComputation(base):
        @property
        def precompiles(self):
            moved = getattr(self.state, "sim_precompiles", None)
            return moved if moved is not None else super().precompiles

        def add_log_entry(self, account, topics, data) -> None:
            super().add_log_entry(account, topics, data)
            tracer = getattr(self.state, "sim_tracer", None)
            if tracer is not None:
                tracer.log(account, [t.to_bytes(32, "big") for t in topics], bytes(data))

        @classmethod
        def apply_message(cls, state, message, transaction_context, parent_computation=None):
            tracer = getattr(state, "sim_tracer", None)
            if tracer is None or getattr(tracer, "in_create", None) is message:
                return super().apply_message(state, message, transaction_context, parent_computation)
            return cls._traced(super().apply_message, tracer, state, message, transaction_context, parent_computation)

        @classmethod
        def apply_create_message(cls, state, message, transaction_context, parent_computation=None):
            tracer = getattr(state, "sim_tracer", None)
            if tracer is None:
                return super().apply_create_message(state, message, transaction_context, parent_computation)
            outer = getattr(tracer, "in_create", None)
            tracer.in_create = message  # apply_create_message runs apply_message: one frame, not two
            try:
                return cls._traced(super().apply_create_message, tracer, state, message, transaction_context,
                                   parent_computation)
            finally:
                tracer.in_create = outer

        @staticmethod
        def _traced(run, tracer, state, message, transaction_context, parent_computation):
            kind, tracer.pending_kind = tracer.pending_kind, None
            tracer.enter(message.sender, message.storage_address, message.value if message.should_transfer_value else 0, kind)
            try:
                computation = run(state, message, transaction_context, parent_computation)
            except Exception:
                tracer.exit(message.depth, True)
                raise
            tracer.exit(message.depth, computation.is_error)
            return computation

    SimComputation.opcodes = opcodes
    SimComputation.__name__ = f"Sim{base.__name__}"
    return SimComputation


@functools.lru_cache(maxsize=None)
def _sim_vm(fork: str, openledger: bool = False) -> type:
    """The node's VM for ``fork`` (with the OpenLedger precompiles if ``openledger``) with
    a state that traces, moves precompiles and takes a blob base fee override."""
    vm_class = (OPENLEDGER_VM_BY_FORK if openledger else VM_BY_FORK)[fork]
    state_class = vm_class.get_state_class()
    attrs: dict[str, Any] = {"computation_class": _sim_computation(state_class.computation_class)}
    if FORK_ORDER.index(fork) >= FORK_ORDER.index("cancun"):
        base_property = state_class.blob_base_fee

        def blob_base_fee(self) -> int:
            override = getattr(self, "sim_blob_base_fee", None)
            return override if override is not None else base_property.fget(self)

        attrs["blob_base_fee"] = property(blob_base_fee)
    sim_state = type(f"Sim{state_class.__name__}", (state_class,), attrs)
    return type(f"Sim{vm_class.__name__}", (vm_class,), {"_state_class": sim_state})


# -------------------------------------------------------------------------- running

@dataclass
class PlannedBlock:
    number: int
    time: int
    block: SimBlock


def _at_least(fork: str, other: str) -> bool:
    return FORK_ORDER.index(fork) >= FORK_ORDER.index(other)


def sanitize_chain(base: BlockHeaderAPI, blocks: list[SimBlock]) -> list[PlannedBlock]:
    out: list[PlannedBlock] = []
    prev_number, prev_time = base.block_number, base.timestamp
    for block in blocks:
        number = block.overrides.number if block.overrides.number is not None else prev_number + 1
        if number <= prev_number:
            raise SimulateError(BLOCK_NUMBER_INVALID, f"block numbers must be in order: {number} <= {prev_number}")
        if number - base.block_number > MAX_BLOCKS:
            raise SimulateError(CLIENT_LIMIT, "too many blocks")
        for gap_number in range(prev_number + 1, number):
            prev_time += TIMESTAMP_INCREMENT
            out.append(PlannedBlock(gap_number, prev_time, SimBlock(BlockOverrides(number=gap_number, time=prev_time))))
        prev_number = number
        if block.overrides.time is None:
            time = prev_time + TIMESTAMP_INCREMENT
        else:
            time = block.overrides.time
            if time <= prev_time:
                raise SimulateError(BLOCK_TIMESTAMP_INVALID, f"block timestamps must be in order: {time} <= {prev_time}")
        prev_time = time
        out.append(PlannedBlock(number, time, block))
    return out


class Simulator:
    def __init__(self, node: "Node", base: BlockHeaderAPI, options: Options) -> None:
        self.node = node
        self.chain = node.blockchain
        self.base = base
        self.options = options
        self.validate = options.validation
        self.gas_pool = GAS_CAP
        self.db = OverlayDB(self.chain.store)
        self.chaindb = ChainDB(self.db)
        self.schedule = self.chain.genesis.forks
        base_fork = fork_at(self.schedule, base.block_number, base.timestamp)
        self.base_precompiles = self.chain.chain.vms[base_fork].get_state_class().computation_class.get_precompiles()
        self.fork = base_fork  # the fork of the block being simulated

    # -- blocks ----------------------------------------------------------------------------
    def run(self) -> list[dict[str, Any]]:
        planned = sanitize_chain(self.base, self.options.blocks)
        results = []
        parent = self.base
        previous = self.base  # geth carries coinbase, difficulty and gas limit from block to block
        for plan in planned:
            result, header = self.run_block(plan, parent, previous)
            results.append(result)
            parent = previous = header
        return results

    def _header(self, plan: PlannedBlock, fork: str, parent: BlockHeaderAPI, previous: BlockHeaderAPI):
        o = plan.block.overrides
        vm_class = VM_BY_FORK[fork]
        gas_limit = o.gas_limit if o.gas_limit is not None else previous.gas_limit
        coinbase = o.fee_recipient if o.fee_recipient is not None else previous.coinbase
        header = vm_class.create_header_from_parent(parent, timestamp=plan.time, gas_limit=gas_limit, coinbase=coinbase,
                                                    extra_data=b"")
        fields: dict[str, Any] = {
            "block_number": plan.number,
            "difficulty": o.difficulty if o.difficulty is not None else (0 if _at_least(fork, "paris") else previous.difficulty),
            "mix_hash": o.prev_randao if o.prev_randao is not None else ZERO_HASH,
            "nonce": b"\x00" * 8,
            "gas_used": 0,
        }
        if _at_least(fork, "london"):
            if o.base_fee is not None:
                fields["base_fee_per_gas"] = o.base_fee
            elif self.validate:
                fields["base_fee_per_gas"] = _next_base_fee(parent)
            else:
                fields["base_fee_per_gas"] = 0
        if _at_least(fork, "cancun"):
            fields["excess_blob_gas"] = _excess_blob_gas(parent, fork) if hasattr(parent, "excess_blob_gas") else 0
            fields["blob_gas_used"] = 0
            fields["parent_beacon_block_root"] = o.beacon_root if o.beacon_root is not None else ZERO_HASH
        if _at_least(fork, "shanghai"):
            fields["withdrawals_root"] = BLANK_ROOT_HASH
        return header.copy(**fields)

    def run_block(self, plan: PlannedBlock, parent: BlockHeaderAPI, previous: BlockHeaderAPI):
        fork = self.fork = fork_at(self.schedule, plan.number, plan.time)
        header = self._header(plan, fork, parent, previous)
        vm = _sim_vm(fork, self.chain.openledger is not None)(header=header, chaindb=self.chaindb,
                                                              chain_context=self.chain.chain.chain_context(),
                           consensus_context=self.chain.chain.consensus_context)
        if self.chain.genesis.deposit_contract is not None:
            vm.deposit_contract_address = self.chain.genesis.deposit_contract
        state = vm.state
        precompiles = dict(self.base_precompiles)
        self.apply_state_overrides(state, plan.block.state_overrides, precompiles)
        state.sim_precompiles = precompiles
        state.sim_blob_base_fee = plan.block.overrides.blob_base_fee
        state.lock_changes()
        block = vm.get_block()
        vm.block_preprocessing(block)

        tracer = LogTracer(self.options.trace_transfers, plan.number, plan.time)
        running = header
        transactions, receipts, senders, calls = [], [], [], []
        for index, raw_call in enumerate(plan.block.calls):
            args = CallArgs.parse(raw_call)
            tx, receipt, call = self.run_call(vm, running, args, index, tracer)
            running = vm.add_receipt_to_header(running, receipt)
            if getattr(tx, "type_id", None) == 3:
                running = vm.increment_blob_gas_used(running, tx)
            transactions.append(tx)
            receipts.append(receipt)
            senders.append(args.sender)
            calls.append(call)
        state.sim_tracer = None

        withdrawals = plan.block.overrides.withdrawals or []
        shanghai = _at_least(fork, "shanghai")
        if shanghai:
            vm.apply_all_withdrawals(withdrawals)
        filled = vm.set_block_transactions_and_withdrawals(
            block.copy(header=running), running, transactions, receipts, withdrawals=withdrawals if shanghai else None)
        processed = vm.block_postprocessing(filled)
        final = vm.finalize_block(processed).block
        self.chaindb.persist_header(final.header)
        return self._block_json(final, senders, calls), final.header

    # -- state overrides -----------------------------------------------------------------------
    def apply_state_overrides(self, state, overrides: list[AccountOverride], precompiles: dict) -> None:
        moved_to: set[bytes] = set()
        overridden = {o.address for o in overrides}
        for account in overrides:
            address = account.address
            if address in moved_to:
                raise SimulateError(SERVER, f"account {to_checksum_address(address)} has already been overridden by a precompile")
            precompile = precompiles.get(address)
            if account.move_to is not None:
                if precompile is None:
                    raise SimulateError(SERVER, f"account {to_checksum_address(address)} is not a precompile")
                if account.move_to in overridden:
                    raise SimulateError(SERVER, f"account {to_checksum_address(account.move_to)} is already overridden")
                precompiles[account.move_to] = precompile
                moved_to.add(account.move_to)
            if precompile is not None:
                del precompiles[address]
            if account.nonce is not None:
                state.set_nonce(address, account.nonce)
            if account.code is not None:
                state.set_code(address, account.code)
            if account.balance is not None:
                state.set_balance(address, account.balance)
            if account.state is not None and account.state_diff is not None:
                raise SimulateError(SERVER, f"account {to_checksum_address(address)} has both 'state' and 'stateDiff'")
            if account.state is not None:
                state.delete_storage(address)
                for slot, value in account.state.items():
                    state.set_storage(address, slot, value)
            if account.state_diff is not None:
                for slot, value in account.state_diff.items():
                    state.set_storage(address, slot, value)

    # -- calls -----------------------------------------------------------------------------------
    def run_call(self, vm, header, args: CallArgs, index: int, tracer: LogTracer):
        state = vm.state
        base_fee = getattr(header, "base_fee_per_gas", None)
        # sanitizeCall
        nonce = args.nonce if args.nonce is not None else state.get_nonce(args.sender)
        gas = args.gas if args.gas is not None else header.gas_limit - header.gas_used
        if header.gas_used + gas > header.gas_limit:
            raise SimulateError(BLOCK_GAS_LIMIT, f"block gas limit reached: {header.gas_used} >= {header.gas_limit}")
        # CallDefaults
        if args.gas_price is not None and (args.max_fee is not None or args.max_tip is not None):
            raise SimulateError(SERVER, "both gasPrice and (maxFeePerGas or maxPriorityFeePerGas) specified")
        chain_id = self.chain.chain_id
        if args.chain_id is not None and args.chain_id != chain_id:
            raise SimulateError(SERVER, f"chainId does not match node's (have={args.chain_id}, want={chain_id})")
        if 0 < self.gas_pool < gas:
            gas = self.gas_pool
        value = args.value or 0
        gas_price, max_fee, max_tip = args.gas_price, args.max_fee, args.max_tip
        if base_fee is None:
            gas_price = gas_price or 0
        else:
            max_fee = max_fee if max_fee is not None else 0
            max_tip = max_tip if max_tip is not None else 0
        blob_fee = args.blob_fee if args.blob_fee is not None else (0 if args.blob_hashes is not None else None)

        tx = self._transaction(vm, args, nonce, gas, value, gas_price, max_fee, max_tip, blob_fee)
        tracer.reset(tx.hash, index)
        # ToMessage
        if base_fee is None or gas_price is not None:
            price = fee_cap = tip_cap = gas_price
        else:
            fee_cap, tip_cap = max_fee, max_tip
            price = min(tip_cap + base_fee, fee_cap) if (fee_cap or tip_cap) else 0
        self._pre_check(state, header, args, tx, nonce, gas, value, price, fee_cap, tip_cap, blob_fee, base_fee)

        spoof = tx  # its sender is set: no signature to recover
        skip_fee = not self.validate and fee_cap == 0 and tip_cap == 0
        state.lock_changes()
        state.sim_tracer = tracer
        if skip_fee:
            state.get_tip = lambda _tx: 0  # geth pays the coinbase nothing, whatever the base fee
        # geth's nonces are uint64s that wrap around (nonces are only checked with validation)
        state.increment_nonce = lambda address: state.set_nonce(address, (state.get_nonce(address) + 1) % UINT64)
        try:
            executor = state.get_transaction_executor()
            message = executor.build_evm_message(spoof)
            computation = executor.build_computation(message, spoof)
            computation = executor.finalize_computation(spoof, computation)
            if hasattr(state, "transient_storage"):
                state.clear_transient_storage()
        finally:
            state.sim_tracer = None
            state.__dict__.pop("get_tip", None)
            state.__dict__.pop("increment_nonce", None)
        receipt = vm.make_receipt(header, spoof, computation, state)
        used = receipt.gas_used - header.gas_used
        self.gas_pool -= used
        result: dict[str, Any] = {
            "returnData": to_data(b"" if computation.is_error else computation.output),
            "logs": tracer.logs(),
            "gasUsed": to_quantity(used),
            "status": "0x0" if computation.is_error else "0x1",
        }
        if computation.is_error:
            error = computation.error
            if isinstance(error, Revert):
                reason = decode_revert_reason(computation.output)
                result["error"] = {"message": "execution reverted" + (f": {reason}" if reason is not None else ""),
                                   "code": REVERTED, "data": to_data(computation.output)}
            else:
                from .eth import _error_message

                result["error"] = {"message": _error_message(error), "code": VM_ERROR}
        return tx, receipt, result

    def _transaction(self, vm, args: CallArgs, nonce, gas, value, gas_price, max_fee, max_tip, blob_fee):
        """geth's ``ToTransaction(DynamicFeeTxType)``: the unsigned transaction (v, r, s = 0)."""
        if args.authorizations is not None:
            type_id = 4
        elif args.blob_hashes is not None:
            type_id = 3
        else:
            type_id = 2
        if gas_price is not None:
            type_id = 0
        to = args.to or b""
        access_list = [[address, [slot.to_bytes(32, "big") for slot in slots]] for address, slots in (args.access_list or ())]
        chain_id = self.chain.chain_id
        if type_id == 0:
            raw = rlp.encode([nonce, gas_price, gas, to, value, args.data, 0, 0, 0])
        elif type_id == 2:
            raw = b"\x02" + rlp.encode([chain_id, nonce, max_tip, max_fee, gas, to, value, args.data, access_list, 0, 0, 0])
        elif type_id == 3:
            raw = b"\x03" + rlp.encode([chain_id, nonce, max_tip, max_fee, gas, to, value, args.data, access_list,
                                        blob_fee, args.blob_hashes, 0, 0, 0])
        else:
            auths = [[a["chain_id"], a["address"], a["nonce"], a["y_parity"], a["r"], a["s"]] for a in args.authorizations]
            raw = b"\x04" + rlp.encode([chain_id, nonce, max_tip, max_fee, gas, to, value, args.data, access_list,
                                        auths, 0, 0, 0])
        builder = vm.get_transaction_builder()
        try:
            tx = builder.decode(raw)
        except Exception:  # a transaction type the fork does not know: geth builds it all the same
            tx = VM_BY_FORK["prague"].get_transaction_builder().decode(raw)
        tx.__dict__["sender"] = args.sender  # unsigned: the sender is the call's, never recovered
        return tx

    def _pre_check(self, state, header, args: CallArgs, tx, nonce, gas, value, price, fee_cap, tip_cap, blob_fee, base_fee):
        """geth's ``preCheck``, ``buyGas`` and the checks before execution, in its order."""
        sender = to_checksum_address(args.sender)
        if self.validate:
            state_nonce = state.get_nonce(args.sender)
            if state_nonce < nonce:
                raise _tx_error(NONCE_TOO_HIGH, f"nonce too high: address {sender}, tx: {nonce} state: {state_nonce}", gas)
            if state_nonce > nonce:
                raise _tx_error(NONCE_TOO_LOW, f"nonce too low: address {sender}, tx: {nonce} state: {state_nonce}", gas)
            if state_nonce + 1 >= UINT64:
                raise _tx_error(INTERNAL, f"nonce has max value: address {sender}, nonce: {state_nonce}", gas)
        if base_fee is not None and not (not self.validate and fee_cap == 0 and tip_cap == 0):
            if fee_cap < tip_cap:
                raise _tx_error(INVALID_PARAMS, f"max priority fee per gas higher than max fee per gas: address {sender}, "
                                f"maxPriorityFeePerGas: {tip_cap}, maxFeePerGas: {fee_cap}", gas)
            if fee_cap < base_fee:
                raise _tx_error(INVALID_PARAMS, f"max fee per gas less than block base fee: address {sender}, "
                                f"maxFeePerGas: {fee_cap}, baseFee: {base_fee}", gas)
        blob_gas = 0
        if args.blob_hashes is not None:
            if args.to is None:
                raise _tx_error(INTERNAL, "blob transaction of type create", gas)
            if not args.blob_hashes:
                raise _tx_error(INTERNAL, "blob transaction missing blob hashes", gas)
            for i, blob_hash in enumerate(args.blob_hashes):
                if blob_hash[:1] != b"\x01":
                    raise _tx_error(INTERNAL, f"blob {i} has invalid hash version", gas)
            blob_gas = GAS_PER_BLOB * len(args.blob_hashes)
        blob_base_fee = 0
        if blob_gas and hasattr(header, "excess_blob_gas"):
            blob_base_fee = state.blob_base_fee
            if not (not self.validate and not blob_fee) and blob_fee < blob_base_fee:
                raise _tx_error(INTERNAL, f"max fee per blob gas less than block blob gas fee: address {sender} "
                                f"blobGasFeeCap: {blob_fee}, blobBaseFee: {blob_base_fee}", gas)
        if args.authorizations is not None:
            if args.to is None:
                raise _tx_error(INTERNAL, f"EIP-7702 transaction cannot be contract creation (sender {sender})", gas)
            if not args.authorizations:
                raise _tx_error(INTERNAL, f"EIP-7702 transaction with empty auth list (sender {sender})", gas)
        # buyGas
        balance = state.get_balance(args.sender)
        want = gas * fee_cap + value + blob_gas * (blob_fee or 0)
        if balance < want:
            raise _tx_error(INSUFFICIENT_FUNDS, f"insufficient funds for gas * price + value: address {sender} "
                            f"have {balance} want {want}", gas)
        if self.gas_pool < gas:
            raise _tx_error(INTERNAL, "gas limit reached", gas)
        # intrinsic gas, EIP-7623 floor, the value, EIP-3860
        intrinsic = tx.intrinsic_gas
        if gas < intrinsic:
            raise _tx_error(INTRINSIC_GAS, f"intrinsic gas too low: have {gas}, want {intrinsic}", gas)
        if _at_least(self.fork, "prague"):  # EIP-7623
            from ..txpool import data_floor_gas

            floor = data_floor_gas(args.data)
            if gas < floor:
                raise _tx_error(INTERNAL, f"insufficient gas for floor data gas cost: have {gas}, want {floor}", gas)
        if value and balance - gas * price - blob_gas * blob_base_fee < value:
            raise _tx_error(INSUFFICIENT_FUNDS, f"insufficient funds for transfer: address {sender}", gas)
        if args.to is None and _at_least(self.fork, "shanghai") and len(args.data) > MAX_INITCODE_SIZE:
            raise _tx_error(MAX_INITCODE_EXCEEDED, f"max initcode size exceeded: code size {len(args.data)}, "
                            f"limit {MAX_INITCODE_SIZE}", gas)

    # -- output --------------------------------------------------------------------------------
    def _block_json(self, block, senders: list[bytes], calls: list[dict[str, Any]]) -> dict[str, Any]:
        header = block.header
        out = header_json(header)
        out["size"] = to_quantity(len(rlp.encode(block)))
        if self.options.full_transactions:
            out["transactions"] = [transaction_json(tx, sender, header, i)
                                   for i, (tx, sender) in enumerate(zip(block.transactions, senders))]
        else:
            out["transactions"] = [to_data(tx.hash) for tx in block.transactions]
        out["uncles"] = []
        if hasattr(block, "withdrawals"):
            out["withdrawals"] = [{"index": to_quantity(w.index), "validatorIndex": to_quantity(w.validator_index),
                                   "address": to_data(w.address), "amount": to_quantity(w.amount)}
                                  for w in block.withdrawals]
        block_hash, number, timestamp = to_data(header.hash), to_quantity(header.block_number), to_quantity(header.timestamp)
        for call in calls:
            call["logs"] = [{
                "address": to_data(log["address"]),
                "topics": [to_data(t) for t in log["topics"]],
                "data": to_data(log["data"]),
                "blockNumber": number,
                "transactionHash": to_data(log["tx_hash"]),
                "transactionIndex": to_quantity(log["tx_index"]),
                "blockHash": block_hash,
                "blockTimestamp": timestamp,
                "logIndex": to_quantity(log["index"]),
                "removed": False,
            } for log in call["logs"]]
        out["calls"] = calls
        return out


def _next_base_fee(parent: BlockHeaderAPI) -> int:
    if getattr(parent, "base_fee_per_gas", None) is None:
        return INITIAL_BASE_FEE  # the London transition block
    from eth.vm.forks.london.headers import calculate_expected_base_fee_per_gas

    return calculate_expected_base_fee_per_gas(parent)


def _excess_blob_gas(parent: BlockHeaderAPI, fork: str) -> int:
    if _at_least(fork, "prague"):
        from eth.vm.forks.prague.constants import TARGET_BLOB_GAS_PER_BLOCK
    else:
        from eth.vm.forks.cancun.constants import TARGET_BLOB_GAS_PER_BLOCK
    return max(0, parent.excess_blob_gas + parent.blob_gas_used - TARGET_BLOB_GAS_PER_BLOCK)


def simulate_v1(node: "Node", options: Any, block: Any) -> list[dict[str, Any]]:
    parsed = Options.parse(options)
    base = node.reader.state_header(parse_block_tag(block))
    return Simulator(node, base, parsed).run()


__all__ = ["simulate_v1", "Simulator", "Options", "SimulateError"]
