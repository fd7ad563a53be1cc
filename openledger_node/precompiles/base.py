"""How a stateful precompile runs inside py-evm: dispatch by selector, the call rules,
gas, storage in the precompile's own account, events and custom errors.

py-evm calls a precompile as ``precompile(computation)`` inside the computation's
``with`` block: a ``VMError`` (out of gas) ends the call consuming all its gas, a
``Revert`` keeps ``computation.output`` (our ABI-encoded custom error) and returns the
gas left.  The value of the call has already moved to the precompile's account; a
revert moves it back.

Gas (consensus; docs/precompiles.md):
- ``INPUT_WORD_GAS`` per 32-byte word of calldata (as the identity precompile);
- storage reads and writes priced as SLOAD/SSTORE are since Berlin (EIP-2929 cold and
  warm access, EIP-2200 net metering, no refunds);
- logs as LOG0..LOG4 (375 + 375 per topic + 8 per data byte);
- ``VALUE_TRANSFER_GAS`` for each payment the precompile makes from its balance;
- the attribution work at the rates in ``attribution.py``, calibrated by
  ``scripts/calibrate_attribution_gas.py``.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from eth.abc import ComputationAPI
from eth.exceptions import Revert, VMError
from eth_abi.exceptions import DecodingError
from eth_abi import decode, encode

from .abi import Function, Interface

INPUT_WORD_GAS = 3
COLD_SLOAD_GAS = 2100
WARM_READ_GAS = 100
SSTORE_SET_GAS = 20_000
SSTORE_RESET_GAS = 2_900  # 5000 - COLD_SLOAD_GAS, as EIP-2929 prices it
LOG_GAS = 375
LOG_TOPIC_GAS = 375
LOG_DATA_GAS = 8
VALUE_TRANSFER_GAS = 9_000
PREIMAGE_WORD_GAS = 3  # storing a data preimage (contribution, output), per word, beyond its calldata

UINT256 = (1 << 256) - 1

log = logging.getLogger("openledger.precompiles")


class PrecompileFailure(VMError):
    """The precompile hit an internal error: the call fails and burns its gas."""


class PrecompileRevert(Exception):
    """Raised by a handler: revert with this custom error of the interface."""

    def __init__(self, error: str, *args: Any):
        super().__init__(error, *args)
        self.error = error
        self.args_ = args


class Storage:
    """Read-only access to a precompile account's storage, no gas (RPC, index loading)."""

    def __init__(self, state, address: bytes):
        self.state = state
        self.address = address

    def get(self, slot: int) -> int:
        return self.state.get_storage(self.address, slot)

    def set(self, slot: int, value: int) -> None:
        raise RuntimeError("read-only precompile storage")


class MeteredStorage(Storage):
    """Storage access from inside a call, charged as SLOAD/SSTORE since Berlin."""

    def __init__(self, computation: ComputationAPI, address: bytes | None = None):
        super().__init__(computation.state, address if address is not None else computation.msg.storage_address)
        self.computation = computation

    def _warm(self, slot: int) -> bool:
        """Mark warm; True if it was cold."""
        if self.state.is_storage_warm(self.address, slot):
            return False
        self.state.mark_storage_warm(self.address, slot)
        return True

    def get(self, slot: int) -> int:
        cost = COLD_SLOAD_GAS if self._warm(slot) else WARM_READ_GAS
        self.computation.consume_gas(cost, reason="precompile SLOAD")
        return self.state.get_storage(self.address, slot)

    def set(self, slot: int, value: int) -> None:
        if not 0 <= value <= UINT256:
            raise ValueError("storage value out of range")
        cost = COLD_SLOAD_GAS if self._warm(slot) else 0
        current = self.state.get_storage(self.address, slot)
        if current == value:
            cost += WARM_READ_GAS
        else:
            original = self.state.get_storage(self.address, slot, from_journal=False)
            if original == current:
                cost += SSTORE_SET_GAS if original == 0 else SSTORE_RESET_GAS
            else:
                cost += WARM_READ_GAS
        self.computation.consume_gas(cost, reason="precompile SSTORE")
        self.state.set_storage(self.address, slot, value)


class Call:
    """One call into a precompile: who, with what value, and the metered helpers."""

    def __init__(self, precompile: "Precompile", computation: ComputationAPI, function: Function):
        self.precompile = precompile
        self.computation = computation
        self.function = function
        self.state = computation.state
        self.storage = MeteredStorage(computation)
        self.sender: bytes = computation.msg.sender
        self.value: int = computation.msg.value
        self.address: bytes = computation.msg.storage_address
        self.block_number: int = computation.state.block_number

    @property
    def context(self):
        """The chain's OpenLedger context (treasury, attribution indexes)."""
        context = getattr(self.state.execution_context, "openledger", None)
        if context is None:  # a VM wired without it: a bug, never a silent default
            raise RuntimeError("OpenLedger precompile run without an OpenLedger chain context")
        return context

    def charge(self, gas: int, reason: str) -> None:
        self.computation.consume_gas(gas, reason=reason)

    def emit(self, event: str, **args: Any) -> None:
        topics, data = self.precompile.interface.events[event].encode(args)
        self.charge(LOG_GAS + LOG_TOPIC_GAS * len(topics) + LOG_DATA_GAS * len(data), f"precompile LOG {event}")
        self.computation.add_log_entry(self.address, topics, data)

    def pay(self, to: bytes, amount: int) -> None:
        """Move ``amount`` wei from the precompile's balance to ``to``."""
        if amount == 0:
            return
        self.charge(VALUE_TRANSFER_GAS, "precompile value transfer")
        balance = self.state.get_balance(self.address)
        if balance < amount:  # the books say otherwise: a bug, never pay out of thin air
            raise RuntimeError(f"precompile {self.address.hex()} holds {balance} wei, owes {amount}")
        self.state.delta_balance(self.address, -amount)
        self.state.delta_balance(to, amount)

    def store_preimage(self, key: bytes, data: bytes) -> None:
        """Keep ``data`` in the state database under ``key`` (its keccak), the way code is
        kept: journaled with the call (a revert drops it) and written with the block."""
        self.charge(PREIMAGE_WORD_GAS * ((len(data) + 31) // 32), "precompile preimage")
        self.state._account_db._journaldb[key] = bytes(data)


def read_preimage(state, key: bytes) -> bytes | None:
    """A preimage stored by ``Call.store_preimage`` (None if this database lacks it)."""
    try:
        return bytes(state._account_db._journaldb[key])
    except KeyError:
        return None


class Precompile:
    """Base of the OpenLedger precompiles.  Subclasses set ``address`` and ``interface``
    and define one method per interface function, named like it, taking the ``Call``
    and the decoded arguments and returning the results as a tuple."""

    address: bytes
    interface: Interface

    def __init__(self) -> None:
        self.handlers: dict[bytes, Callable] = {}
        names: dict[str, object] = {}
        for klass in reversed(type(self).__mro__[: type(self).__mro__.index(Precompile)]):
            names.update(vars(klass))  # the most derived definition wins
        handlers = {
            name for name, value in names.items()
            if callable(value) and not isinstance(value, staticmethod) and name[0].islower()
        }
        missing = sorted(set(self.interface.functions) - handlers)
        extra = sorted(handlers - set(self.interface.functions))
        if missing or extra:
            raise RuntimeError(
                f"{self.interface.name} at 0x{self.address.hex()}: implementation does not match the ABI "
                f"(missing {missing or 'none'}, not in the ABI {extra or 'none'})"
            )
        for selector, function in self.interface.by_selector.items():
            self.handlers[selector] = getattr(self, function.name)

    # -- the call rules, then the handler ------------------------------------------
    def __call__(self, computation: ComputationAPI) -> ComputationAPI:
        data = bytes(computation.msg.data)
        computation.consume_gas(INPUT_WORD_GAS * ((len(data) + 31) // 32), reason="precompile input")
        function = None
        try:
            function = self.interface.by_selector.get(data[:4]) if len(data) >= 4 else None
            if function is None:
                raise PrecompileRevert("UnknownSelector", data[:4].ljust(4, b"\0"))
            msg = computation.msg
            if msg.code_address != msg.storage_address:  # DELEGATECALL or CALLCODE
                raise PrecompileRevert("DelegateCallNotAllowed")
            if msg.value and not function.payable:
                raise PrecompileRevert("NotPayable")
            if msg.is_static and function.writes:
                raise PrecompileRevert("WriteInStaticCall")
            try:
                args = decode(list(function.inputs), data[4:])
            except (DecodingError, ValueError, OverflowError) as exc:
                raise PrecompileRevert("InvalidArgument", f"calldata does not decode as {function.signature}: {exc}")
            call = Call(self, computation, function)
            result = self.handlers[function.selector](call, *args)
            computation.output = encode(list(function.outputs), list(result))
        except PrecompileRevert as exc:
            error = self.interface.errors[exc.error]
            computation.output = error.encode(*exc.args_)
            raise Revert(exc.error)
        except VMError:  # out of gas: py-evm ends the call and burns its gas
            raise
        except Exception as exc:
            # A bug in the node, not in the caller's input.  Failing the call (all its gas
            # burnt, like an invalid opcode) keeps the chain producing blocks and every node
            # that has the same bug agrees; the traceback tells the operator.
            log.exception("precompile %s failed on %s", self.interface.name, function.signature if function else "?")
            raise PrecompileFailure(f"{self.interface.name}: internal error: {type(exc).__name__}") from exc
        return computation
