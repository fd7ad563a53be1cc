"""``eth_createAccessList``: the EIP-2930 access list a call would use, as geth builds it.

geth runs the call with an access-list tracer, adds what the tracer saw to the list
and runs it again, until the list stops changing; it reports the list, the gas the
last run used (with that list) and the run's error, if any.  The tracer records
every storage slot read or written (SLOAD/SSTORE, with the contract's address) and
every address an opcode touches (BALANCE, EXTCODESIZE/COPY/HASH, SELFDESTRUCT and
the CALL family), except the sender, the recipient (or the created contract), the
fork's precompiles and the authorities of valid EIP-7702 authorizations.

py-evm has no tracer hooks; a computation subclass whose opcode table wraps those
opcodes (reading their operands off the stack before they run) does the same.
"""
from __future__ import annotations

import copy
import functools
from typing import TYPE_CHECKING, Any

import rlp
from eth.exceptions import Revert
from eth_keys import keys
from eth_utils import ValidationError

from .encoding import to_data, to_quantity
from .jsonrpc import RPCError

if TYPE_CHECKING:
    from ..node import Node

SET_CODE_MAGIC = b"\x05"
_SLOT_OPS = (0x54, 0x55)  # SLOAD, SSTORE: the slot is the top of the stack
_ADDRESS_OPS = (0x31, 0x3B, 0x3C, 0x3F, 0xFF)  # BALANCE, EXTCODESIZE, EXTCODECOPY, EXTCODEHASH, SELFDESTRUCT
_CALL_OPS = (0xF1, 0xF2, 0xF4, 0xFA)  # CALL, CALLCODE, DELEGATECALL, STATICCALL: the address is second


class AccessTracer:
    def __init__(self, initial: dict[bytes, set[int]], exclude: set[bytes]) -> None:
        self.list: dict[bytes, set[int]] = {address: set(slots) for address, slots in initial.items()}
        self.exclude = exclude

    def address(self, address: bytes) -> None:
        if address not in self.exclude:
            self.list.setdefault(address, set())

    def slot(self, address: bytes, slot: int) -> None:
        self.list.setdefault(address, set()).add(slot)  # geth adds slots of excluded addresses too


def _word(value: int | bytes) -> int:
    return value if isinstance(value, int) else int.from_bytes(value, "big")


def _wrap(opcode_fn, kind: str):
    def traced(computation) -> None:
        tracer = getattr(computation.state, "access_tracer", None)
        values = computation._stack.values
        if tracer is not None and values:
            if kind == "slot":
                tracer.slot(computation.msg.storage_address, _word(values[-1]))
            elif kind == "address":
                tracer.address(_word(values[-1]).to_bytes(32, "big")[12:])
            elif len(values) >= 2:
                tracer.address(_word(values[-2]).to_bytes(32, "big")[12:])
        return opcode_fn(computation=computation)

    traced.mnemonic = getattr(opcode_fn, "mnemonic", "")
    return traced


@functools.lru_cache(maxsize=None)
def traced_computation_class(base: type) -> type:
    """``base`` with the opcodes the access-list tracer watches wrapped (one class per fork)."""
    opcodes = dict(base.opcodes)
    for ops, kind in ((_SLOT_OPS, "slot"), (_ADDRESS_OPS, "address"), (_CALL_OPS, "call")):
        for op in ops:
            if op in opcodes:
                opcodes[op] = _wrap(opcodes[op], kind)
    return type(f"AccessListTraced{base.__name__}", (base,), {"opcodes": opcodes})


def _authority(auth: dict[str, Any], chain_id: int) -> bytes | None:
    """The signer of an EIP-7702 authorization geth would apply (None if it would skip it)."""
    if (auth["chain_id"] not in (0, chain_id)) or auth["nonce"] + 1 >= 2**64:
        return None
    try:
        message = SET_CODE_MAGIC + rlp.encode([auth["chain_id"], auth["address"], auth["nonce"]])
        signature = keys.Signature(vrs=(auth["y_parity"], auth["r"], auth["s"]))
        return signature.recover_public_key_from_msg(message).to_canonical_address()
    except Exception:  # bad signature values: the authorization is skipped
        return None


def gas_used(state, tx, computation) -> int:
    """Gas the transaction's receipt would show: after refunds, at least the EIP-7623 floor."""
    from eth.vm.forks.london.state import LondonTransactionExecutor

    used = tx.gas - computation.get_gas_remaining()
    quotient = 5 if issubclass(state.transaction_executor_class, LondonTransactionExecutor) else 2
    refund = min(computation.get_gas_refund(), used // quotient)
    return used - refund + getattr(computation, "data_floor_gas", 0)


def _as_request_list(access: dict[bytes, set[int]]) -> tuple[tuple[bytes, tuple[int, ...]], ...]:
    return tuple((address, tuple(sorted(access[address]))) for address in sorted(access))


def create_access_list(node: "Node", request, header) -> dict[str, Any]:
    from ..chain.chain import contract_address
    from ..node import RPC_GAS_CAP, _validation_message
    from .eth import _error_message

    chain_id = node.blockchain.chain_id
    sender = request.sender or b"\x00" * 20
    gas = request.gas if request.gas is not None else RPC_GAS_CAP
    authorizations = request.authorization_list or []
    if len(authorizations) > gas // 25_000:  # geth: params.CallNewAccountGas per authorization
        raise RPCError(-32000, "insufficient gas to process all authorizations")

    vm, state = node._call_state(header, None, request.has_fees)
    to = request.to or contract_address(sender, request.nonce if request.nonce is not None else state.get_nonce(sender))
    exclude = {sender, to, *state.computation_class.get_precompiles()}
    exclude.update(a for a in (_authority(auth, chain_id) for auth in authorizations) if a is not None)

    current: dict[bytes, set[int]] = {}
    for address, slots in request.access_list or ():
        current.setdefault(address, set()).update(slots)
    for _ in range(1024):  # geth loops until the list is stable; every round only adds
        attempt = copy.copy(request)
        attempt.access_list = _as_request_list(current)
        vm, state = node._call_state(header, None, request.has_fees)
        tracer = AccessTracer(current, exclude)
        state.computation_class = traced_computation_class(type(state).computation_class)
        state.access_tracer = tracer
        tx = node._call_transaction(vm, state, attempt, gas)
        try:
            computation = state.apply_transaction(tx)
        except ValidationError as exc:
            raise RPCError(-32000, f"failed to apply transaction: {_validation_message(str(exc))}") from None
        if tracer.list == current:
            out: dict[str, Any] = {
                "accessList": [
                    {"address": to_data(address), "storageKeys": [to_data(s.to_bytes(32, "big")) for s in slots]}
                    for address, slots in _as_request_list(current)
                ],
            }
            if computation.is_error:
                error = computation.error
                out["error"] = "execution reverted" if isinstance(error, Revert) else _error_message(error)
            out["gasUsed"] = to_quantity(gas_used(state, tx, computation))
            return out
        current = tracer.list
    raise RPCError(-32000, "access list did not converge")
