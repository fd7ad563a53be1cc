"""geth-compatible transaction tracing: ``debug_traceTransaction``, ``debug_traceCall``,
``debug_traceBlockByNumber`` and ``debug_traceBlockByHash``.

Tracers (``options.tracer``):

- none: geth's struct logger, ``{gas, failed, returnValue, structLogs: [{pc, op, gas,
  gasCost, depth, stack, memory?, storage?, returnData?, refund?, error?}]}``;
- ``callTracer``: the tree of call frames (``tracerConfig.onlyTopCall``, ``withLog``);
- ``noopTracer``: ``{}``; ``4byteTracer``: selector-size counts of calls.

py-evm has no tracer API.  A traced transaction runs on a *tracing copy* of the state:
its ``computation_class`` is a subclass of the fork's computation class (made once per
fork, see ``_tracing_class``) whose ``apply_computation`` runs the same interpreter
loop with hooks around opcodes, and whose ``generate_child_computation`` reports call
frames.  Nothing of py-evm is patched globally: blocks are built and imported exactly as
before, at the same speed.

A transaction is re-executed on its parent block's state, in the block's context: the
block pre-processing (beacon roots, history contract) and the block's earlier
transactions run first through the VM's ``apply_transaction``, as in block building and
import; only the traced transaction runs with the hooks.

Gas per step (geth semantics): ``gas`` is what the frame has left before the opcode;
``gasCost`` is what the opcode itself charges, for CALL* including the gas handed to
the callee (without the 2300 stipend), for CREATE* without it.
"""
from __future__ import annotations

import asyncio
import re
import time
from typing import TYPE_CHECKING, Any, Callable

from eth._utils.address import force_bytes_to_address
from eth.exceptions import (
    ContractCreationCollision,
    FullStack,
    Halt,
    InsufficientFunds,
    InsufficientStack,
    InvalidInstruction,
    InvalidJumpDestination,
    OutOfBoundsRead,
    OutOfGas,
    ReservedBytesInCode,
    Revert,
    StackDepthLimit,
    VMError,
    WriteProtection,
)
from eth.vm.computation import NO_RESULT
from eth.vm.logic.invalid import InvalidOpcode
from eth_utils import ValidationError

from ..chain.vm import record_creation
from .encoding import parse_block_tag, parse_bool, parse_hash, parse_quantity, to_data, to_quantity
from .jsonrpc import InvalidParams, RPCError, ServerError, decode_revert_reason

if TYPE_CHECKING:
    from ..node import Node

DEFAULT_TIMEOUT = 5.0  # seconds per transaction, geth's default trace timeout
STACK_LIMIT = 1024
_DEADLINE_EVERY = 1024  # opcodes between two looks at the clock

# -- opcodes ------------------------------------------------------------------------------------
STOP, SLOAD, SSTORE, SELFDESTRUCT = 0x00, 0x54, 0x55, 0xFF
CREATE, CALL, CALLCODE, DELEGATECALL, CREATE2, STATICCALL = 0xF0, 0xF1, 0xF2, 0xF4, 0xF5, 0xFA
CALL_OPS = frozenset({CALL, CALLCODE, DELEGATECALL, STATICCALL})
CREATE_OPS = frozenset({CREATE, CREATE2})
FRAME_OPS = CALL_OPS | CREATE_OPS | {SELFDESTRUCT}

_NAMED = {
    0x00: "STOP", 0x01: "ADD", 0x02: "MUL", 0x03: "SUB", 0x04: "DIV", 0x05: "SDIV", 0x06: "MOD", 0x07: "SMOD",
    0x08: "ADDMOD", 0x09: "MULMOD", 0x0A: "EXP", 0x0B: "SIGNEXTEND",
    0x10: "LT", 0x11: "GT", 0x12: "SLT", 0x13: "SGT", 0x14: "EQ", 0x15: "ISZERO", 0x16: "AND", 0x17: "OR",
    0x18: "XOR", 0x19: "NOT", 0x1A: "BYTE", 0x1B: "SHL", 0x1C: "SHR", 0x1D: "SAR",
    0x20: "KECCAK256",
    0x30: "ADDRESS", 0x31: "BALANCE", 0x32: "ORIGIN", 0x33: "CALLER", 0x34: "CALLVALUE", 0x35: "CALLDATALOAD",
    0x36: "CALLDATASIZE", 0x37: "CALLDATACOPY", 0x38: "CODESIZE", 0x39: "CODECOPY", 0x3A: "GASPRICE",
    0x3B: "EXTCODESIZE", 0x3C: "EXTCODECOPY", 0x3D: "RETURNDATASIZE", 0x3E: "RETURNDATACOPY", 0x3F: "EXTCODEHASH",
    0x40: "BLOCKHASH", 0x41: "COINBASE", 0x42: "TIMESTAMP", 0x43: "NUMBER", 0x44: "DIFFICULTY", 0x45: "GASLIMIT",
    0x46: "CHAINID", 0x47: "SELFBALANCE", 0x48: "BASEFEE", 0x49: "BLOBHASH", 0x4A: "BLOBBASEFEE",
    0x50: "POP", 0x51: "MLOAD", 0x52: "MSTORE", 0x53: "MSTORE8", 0x54: "SLOAD", 0x55: "SSTORE", 0x56: "JUMP",
    0x57: "JUMPI", 0x58: "PC", 0x59: "MSIZE", 0x5A: "GAS", 0x5B: "JUMPDEST", 0x5C: "TLOAD", 0x5D: "TSTORE",
    0x5E: "MCOPY", 0x5F: "PUSH0",
    0xF0: "CREATE", 0xF1: "CALL", 0xF2: "CALLCODE", 0xF3: "RETURN", 0xF4: "DELEGATECALL", 0xF5: "CREATE2",
    0xFA: "STATICCALL", 0xFD: "REVERT", 0xFE: "INVALID", 0xFF: "SELFDESTRUCT",
}
_NAMED.update({0x60 + i: f"PUSH{i + 1}" for i in range(32)})
_NAMED.update({0x80 + i: f"DUP{i + 1}" for i in range(16)})
_NAMED.update({0x90 + i: f"SWAP{i + 1}" for i in range(16)})
_NAMED.update({0xA0 + i: f"LOG{i}" for i in range(5)})
# geth's OpCode.String(): the name, or "opcode 0xef not defined"
OP_NAMES: tuple[str, ...] = tuple(_NAMED.get(op, f"opcode {op:#x} not defined") for op in range(256))

# Stack items each opcode needs (geth's minStack), for "stack underflow (have <=> want)".
_STACK_IN = {
    0x01: 2, 0x02: 2, 0x03: 2, 0x04: 2, 0x05: 2, 0x06: 2, 0x07: 2, 0x08: 3, 0x09: 3, 0x0A: 2, 0x0B: 2,
    0x10: 2, 0x11: 2, 0x12: 2, 0x13: 2, 0x14: 2, 0x15: 1, 0x16: 2, 0x17: 2, 0x18: 2, 0x19: 1, 0x1A: 2,
    0x1B: 2, 0x1C: 2, 0x1D: 2, 0x20: 2, 0x31: 1, 0x35: 1, 0x37: 3, 0x39: 3, 0x3B: 1, 0x3C: 4, 0x3E: 3,
    0x3F: 1, 0x40: 1, 0x49: 1, 0x50: 1, 0x51: 1, 0x52: 2, 0x53: 2, 0x54: 1, 0x55: 2, 0x56: 1, 0x57: 2,
    0x5C: 1, 0x5D: 2, 0x5E: 3, 0xF0: 3, 0xF1: 7, 0xF2: 7, 0xF3: 2, 0xF4: 6, 0xF5: 4, 0xFA: 6, 0xFD: 2, 0xFF: 1,
}
_STACK_IN.update({0x80 + i: i + 1 for i in range(16)})
_STACK_IN.update({0x90 + i: i + 2 for i in range(16)})
_STACK_IN.update({0xA0 + i: i + 2 for i in range(5)})

_INVALID_OPCODE = re.compile(r"Invalid opcode 0x([0-9a-f]+)")
_NEEDED_GAS = re.compile(r"Needed (\d+)")


class TraceTimeout(Exception):
    """The trace ran past its deadline (not a VMError: py-evm lets it through)."""


def _word(value: int | bytes) -> int:
    return value if value.__class__ is int else int.from_bytes(value, "big")


def vm_error_message(error: BaseException, frame: "_Frame | None" = None) -> str:
    """geth's text for an EVM error (core/vm/errors.go)."""
    if isinstance(error, Revert):
        return "execution reverted"
    if isinstance(error, OutOfGas):
        text = str(error)
        if "EIP170" in text:
            return "max code size exceeded"
        if "EIP-3860" in text:
            return "max initcode size exceeded"
        if "contract code" in text.lower() and "write" in text.lower():
            return "contract creation code storage out of gas"
        return "out of gas"
    if isinstance(error, InvalidInstruction):
        match = _INVALID_OPCODE.search(str(error))
        return f"invalid opcode: {OP_NAMES[int(match.group(1), 16)]}" if match else "invalid opcode"
    if isinstance(error, InsufficientStack):
        if frame is not None and frame.fail_op is not None:
            return f"stack underflow ({frame.fail_stack} <=> {_STACK_IN.get(frame.fail_op, 0)})"
        return "stack underflow"
    if isinstance(error, FullStack):
        have = frame.fail_stack if frame is not None and frame.fail_op is not None else STACK_LIMIT
        return f"stack limit reached {have} ({STACK_LIMIT - 1})"
    if isinstance(error, ReservedBytesInCode):
        return "invalid code: must not begin with 0xef"
    if isinstance(error, InvalidJumpDestination):
        return "invalid jump destination"
    if isinstance(error, WriteProtection):
        return "write protection"
    if isinstance(error, OutOfBoundsRead):
        return "return data out of bounds"
    if isinstance(error, StackDepthLimit):
        return "max call depth exceeded"
    if isinstance(error, InsufficientFunds):
        return "insufficient balance for transfer"
    if isinstance(error, ContractCreationCollision):
        return "contract address collision"
    return str(error) or type(error).__name__


# -- the hooked computation ------------------------------------------------------------------


class _Frame:
    """One message call being traced, and the opcode it is executing."""

    __slots__ = (
        "computation", "parent", "depth", "call", "gas_before", "returned", "create_gas", "spawned",
        "child_refund", "entry", "pre", "consumed", "fail_op", "fail_stack",
    )

    def __init__(self, parent: "_Frame | None", depth: int) -> None:
        self.computation = None
        self.parent = parent
        self.depth = depth
        self.call: dict[str, Any] | None = None  # callTracer frame
        self.gas_before = 0
        self.returned = 0  # gas handed back to this frame during the current opcode
        self.create_gas = 0  # gas this frame's CREATE* handed to the new contract
        self.spawned = False  # the current opcode started a child message
        self.child_refund = 0  # refunds of finished, successful children
        self.entry: dict[str, Any] | None = None  # struct log of the current opcode
        self.pre: tuple | None = None  # what a CALL*/CREATE*/SELFDESTRUCT looked like before running
        self.consumed = 0
        self.fail_op: int | None = None
        self.fail_stack = 0


class _TracingComputation:
    """Mixed in before a fork's computation class; only states being traced use it."""

    @classmethod
    def apply_computation(cls, state, message, transaction_context, parent_computation=None):
        tracer: Tracer = state._ol_tracer
        # BaseComputation.apply_computation, with the interpreter loop in Tracer.run
        with cls(state, message, transaction_context) as computation:
            record_creation(cls, computation, message, parent_computation)
            frame = tracer.frames[-1]
            frame.computation = computation
            computation._ol_frame = frame
            precompile = computation.precompiles.get(message.code_address, NO_RESULT)
            if precompile is not NO_RESULT:
                if not message.is_delegation:
                    precompile(computation)
                return computation
            tracer.run(computation, frame)
        return computation

    def generate_child_computation(self, child_msg):
        tracer: Tracer = self.state._ol_tracer
        frame = tracer.enter(self, child_msg)
        try:
            child = super().generate_child_computation(child_msg)
        except BaseException:
            tracer.unwind(frame)
            raise
        tracer.exit(frame, child)
        return child

    def return_gas(self, amount: int) -> None:
        frame = self.__dict__.get("_ol_frame")
        if frame is not None:
            frame.returned += amount
        super().return_gas(amount)

    def add_log_entry(self, account, topics, data) -> None:
        super().add_log_entry(account, topics, data)
        self.state._ol_tracer.on_log(self, account, topics, data)


_TRACING_CLASSES: dict[type, type] = {}


def _tracing_class(base: type) -> type:
    cls = _TRACING_CLASSES.get(base)
    if cls is None:
        cls = _TRACING_CLASSES[base] = type(f"Tracing{base.__name__}", (_TracingComputation, base), {})
    return cls


# -- tracers --------------------------------------------------------------------------------------


class Tracer:
    """Frame bookkeeping shared by all tracers; subclasses add what they record.

    ``all_steps``: call ``before``/``after`` around every opcode (struct logger); otherwise
    only around CALL*, CREATE* and SELFDESTRUCT.
    """

    all_steps = False

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.deadline = float("inf")
        self.frames: list[_Frame] = []
        self.root: _Frame | None = None

    # -- transaction ---------------------------------------------------------------------
    def start(self, *, sender: bytes, to: bytes | None, value: int, data: bytes, gas: int) -> None:
        if self.timeout is not None:
            self.deadline = time.monotonic() + self.timeout
        self.root = _Frame(None, 0)
        self.frames = [self.root]
        self.on_start(self.root, sender, to, value, data, gas)

    def finish(self, computation, gas_used: int) -> Any:
        return self.result(computation, gas_used)

    # -- frames -----------------------------------------------------------------------------
    def enter(self, parent_computation, msg) -> _Frame:
        if time.monotonic() > self.deadline:
            raise TraceTimeout()
        parent: _Frame = parent_computation._ol_frame
        code = parent_computation.code
        op = code[code.program_counter - 1]
        parent.spawned = True
        if msg.is_create:
            parent.create_gas = msg.gas
        frame = _Frame(parent, parent.depth + 1)
        self.frames.append(frame)
        self.on_enter(parent, frame, op, parent_computation, msg)
        return frame

    def exit(self, frame: _Frame, child) -> None:
        self.frames.pop()
        if child.is_success:
            frame.parent.child_refund += child._gas_meter.gas_refunded + frame.child_refund
        self.on_exit(frame, child)

    def unwind(self, frame: _Frame) -> None:
        while self.frames and self.frames[-1] is not frame.parent:
            self.frames.pop()

    # -- the interpreter loop ------------------------------------------------------------------
    def run(self, computation, frame: _Frame) -> None:
        """BaseComputation.apply_computation's opcode loop, with hooks."""
        code = computation.code
        raw = code._raw_code_bytes
        size = len(raw)
        if not size:  # geth does not start its interpreter on empty code: no STOP step
            return
        lookup = computation.opcodes
        every = self.all_steps
        before, after = self.before, self.after
        stack = computation._stack.values
        count = 0
        while True:
            pc = code.program_counter
            op = raw[pc] if pc < size else STOP
            code.program_counter = pc + 1
            fn = lookup.get(op)
            if fn is None:
                fn = InvalidOpcode(op)
            count += 1
            if count % _DEADLINE_EVERY == 0 and time.monotonic() > self.deadline:
                raise TraceTimeout()
            if every or op in FRAME_OPS:
                before(computation, frame, pc, op)
                try:
                    fn(computation=computation)
                except Halt:
                    after(computation, frame, op)
                    break
                except VMError as exc:
                    self.failed(computation, frame, op, exc)
                    raise
                after(computation, frame, op)
            else:
                try:
                    fn(computation=computation)
                except Halt:
                    break
                except VMError:
                    frame.fail_op, frame.fail_stack = op, len(stack)
                    raise

    def before(self, computation, frame: _Frame, pc: int, op: int) -> None:
        frame.gas_before = computation._gas_meter.gas_remaining
        frame.returned = frame.create_gas = 0
        frame.spawned = False
        frame.pre = None
        if op in FRAME_OPS:
            self._before_frame_op(computation, frame, op)

    def _before_frame_op(self, computation, frame: _Frame, op: int) -> None:
        stack = computation._stack.values
        if op == SELFDESTRUCT:
            if stack:
                address = computation.msg.storage_address
                frame.pre = (force_bytes_to_address(_as_bytes(stack[-1])), computation.state.get_balance(address))
        elif op in CALL_OPS:
            n = 7 if op in (CALL, CALLCODE) else 6
            if len(stack) >= n:
                frame.pre = tuple(_word(v) for v in stack[-1 : -n - 1 : -1])
        elif len(stack) >= (4 if op == CREATE2 else 3):  # CREATE*
            value, offset, length = (_word(v) for v in stack[-1:-4:-1])
            state = computation.state
            address = computation.msg.storage_address
            frame.pre = (value, offset, length, state.get_balance(address), state.get_nonce(address))
            frame.consumed = 0
            original = computation.consume_gas

            def consume_gas(amount: int, reason: str) -> None:
                original(amount, reason)
                frame.consumed = amount

            computation.consume_gas = consume_gas  # this opcode only; removed in after/failed

    def after(self, computation, frame: _Frame, op: int) -> None:
        if op in CREATE_OPS:
            computation.__dict__.pop("consume_gas", None)
            if not frame.spawned and frame.pre is not None:
                self._failed_create(computation, frame, op)
        elif op in CALL_OPS:
            if not frame.spawned and frame.pre is not None:
                self._failed_call(computation, frame, op)
        elif op == SELFDESTRUCT and frame.pre is not None:
            self.on_selfdestruct(computation, frame, *frame.pre)

    def failed(self, computation, frame: _Frame, op: int, exc: VMError) -> None:
        frame.fail_op, frame.fail_stack = op, len(computation._stack.values)
        computation.__dict__.pop("consume_gas", None)

    def _failed_call(self, computation, frame: _Frame, op: int) -> None:
        """A CALL* that py-evm refused before starting the callee (depth limit, balance):
        geth still reports the frame, with its error."""
        pre = frame.pre
        address = force_bytes_to_address(pre[1].to_bytes(32, "big"))
        if op in (CALL, CALLCODE):
            value, in_offset, in_size = pre[2], pre[3], pre[4]
        else:
            value = computation.msg.value if op == DELEGATECALL else None
            in_offset, in_size = pre[2], pre[3]
        depth_exceeded = computation.msg.depth + 1 > STACK_LIMIT
        error = "max call depth exceeded" if depth_exceeded else "insufficient balance for transfer"
        data = computation.memory_read_bytes(in_offset, in_size) if in_size else b""
        self.on_failed_frame(frame, op, address, bytes(data), frame.returned, 0, value, error)

    def _failed_create(self, computation, frame: _Frame, op: int) -> None:
        value, offset, length, balance, nonce = frame.pre
        data = bytes(computation.memory_read_bytes(offset, length)) if length else b""
        if computation.msg.depth + 1 > STACK_LIMIT:
            error, gas, used = "max call depth exceeded", None, 0
        elif balance < value:
            error, gas, used = "insufficient balance for transfer", None, 0
        elif nonce + 1 > 2**64 - 1:
            error, gas, used = "nonce uint64 overflow", None, 0
        else:  # address collision: the gas handed over is gone
            frame.create_gas = frame.consumed
            error, gas, used = "contract address collision", frame.consumed, frame.consumed
        if gas is None:  # what geth would have handed over: all but one 64th of what is left
            left = computation._gas_meter.gas_remaining
            gas = left - left // 64
        self.on_failed_frame(frame, op, None, data, gas, used, value, error)

    # -- hooks for subclasses -----------------------------------------------------------------
    def on_start(self, root: _Frame, sender, to, value, data, gas) -> None:
        pass

    def on_enter(self, parent: _Frame, frame: _Frame, op: int, parent_computation, msg) -> None:
        pass

    def on_exit(self, frame: _Frame, child) -> None:
        pass

    def on_failed_frame(self, frame, op, to, data, gas, used, value, error) -> None:
        pass

    def on_selfdestruct(self, computation, frame: _Frame, beneficiary: bytes, balance: int) -> None:
        pass

    def on_log(self, computation, account, topics, data) -> None:
        pass

    def result(self, computation, gas_used: int) -> Any:
        return {}


def _as_bytes(value: int | bytes) -> bytes:
    return value.to_bytes(32, "big") if value.__class__ is int else value


class NoopTracer(Tracer):
    """geth's ``noopTracer``: runs the transaction, returns ``{}``."""


class StructLogger(Tracer):
    """geth's default tracer (eth/tracers/logger: StructLogger, legacy JSON)."""

    all_steps = True

    def __init__(self, timeout: float | None, *, disable_stack: bool = False, disable_storage: bool = False,
                 enable_memory: bool = False, enable_return_data: bool = False, limit: int = 0) -> None:
        super().__init__(timeout)
        self.disable_stack = disable_stack
        self.disable_storage = disable_storage
        self.enable_memory = enable_memory
        self.enable_return_data = enable_return_data
        self.limit = limit
        self.logs: list[dict[str, Any]] = []
        self.storage: dict[bytes, dict[str, str]] = {}

    def before(self, computation, frame: _Frame, pc: int, op: int) -> None:
        gas = computation._gas_meter.gas_remaining
        frame.gas_before = gas
        frame.returned = frame.create_gas = 0
        frame.spawned = False
        frame.pre = None
        if op in FRAME_OPS:
            self._before_frame_op(computation, frame, op)
        if self.limit and len(self.logs) >= self.limit:
            frame.entry = None
            return
        entry: dict[str, Any] = {"pc": pc, "op": OP_NAMES[op], "gas": gas, "gasCost": 0, "depth": frame.depth + 1}
        values = computation._stack.values
        if not self.disable_stack:
            entry["stack"] = [hex(v) if v.__class__ is int else hex(int.from_bytes(v, "big")) for v in values]
        if self.enable_return_data and computation.return_data:
            entry["returnData"] = to_data(computation.return_data)
        if self.enable_memory:
            memory = computation._memory._bytes
            if memory:
                text = memory.hex()
                entry["memory"] = [text[i : i + 64] for i in range(0, len(text), 64)]
        if (op == SLOAD or op == SSTORE) and not self.disable_storage:
            address = computation.msg.storage_address
            slots = self.storage.setdefault(address, {})
            if op == SLOAD and values:
                slot = _word(values[-1])
                slots[f"{slot:064x}"] = f"{computation.state.get_storage(address, slot):064x}"
                entry["storage"] = dict(slots)
            elif op == SSTORE and len(values) >= 2:
                slots[f"{_word(values[-1]):064x}"] = f"{_word(values[-2]):064x}"
                entry["storage"] = dict(slots)
        refund = 0
        for active in self.frames:
            if active.computation is not None:
                refund += active.computation._gas_meter.gas_refunded + active.child_refund
        if refund > 0:
            entry["refund"] = refund
        self.logs.append(entry)
        frame.entry = entry

    def after(self, computation, frame: _Frame, op: int) -> None:
        if frame.pre is not None or op in CREATE_OPS:
            super().after(computation, frame, op)
        entry = frame.entry
        if entry is not None:
            entry["gasCost"] = (
                frame.gas_before - computation._gas_meter.gas_remaining + frame.returned - frame.create_gas
            )

    def failed(self, computation, frame: _Frame, op: int, exc: VMError) -> None:
        entry = frame.entry
        stack_size = len(entry["stack"]) if entry is not None and "stack" in entry else len(computation._stack.values)
        super().failed(computation, frame, op, exc)
        frame.fail_stack = stack_size
        if entry is None:
            return
        cost = frame.gas_before - computation._gas_meter.gas_remaining + frame.returned - frame.create_gas
        if isinstance(exc, OutOfGas):
            # geth charges an opcode's whole cost up front: the failed step shows what it needed
            needed = _NEEDED_GAS.search(str(exc))
            if needed:
                cost += int(needed.group(1))
        entry["gasCost"] = cost
        # geth reports the errors found before an opcode runs (gas, stack) on its step;
        # the ones the opcode itself raises (revert, bad jump, ...) only end the frame
        if isinstance(exc, (OutOfGas, InsufficientStack, FullStack)):
            rest = {key: entry.pop(key) for key in list(entry)[5:]}  # geth's order: ..., depth, error, stack, ...
            entry["error"] = vm_error_message(exc, frame)
            entry.update(rest)

    def result(self, computation, gas_used: int) -> dict[str, Any]:
        output = computation.output if computation.is_success or isinstance(computation.error, Revert) else b""
        return {
            "gas": gas_used,
            "failed": computation.is_error,
            "returnValue": to_data(output),
            "structLogs": self.logs,
        }


_FRAME_KEYS = ("type", "from", "gas", "gasUsed", "to", "input", "output", "error", "revertReason", "calls",
               "logs", "value")


def _addr(value: bytes) -> str:
    return "0x" + bytes(value).hex()


class CallTracer(Tracer):
    """geth's native ``callTracer`` (eth/tracers/native/call.go)."""

    def __init__(self, timeout: float | None, *, only_top_call: bool = False, with_log: bool = False) -> None:
        super().__init__(timeout)
        self.only_top_call = only_top_call
        self.with_log = with_log

    def on_start(self, root: _Frame, sender, to, value, data, gas) -> None:
        root.call = {
            "type": "CREATE" if not to else "CALL", "from": _addr(sender), "gas": to_quantity(gas),
            "gasUsed": "0x0", "to": _addr(to) if to else None, "input": to_data(data), "value": to_quantity(value),
        }

    def on_enter(self, parent: _Frame, frame: _Frame, op: int, parent_computation, msg) -> None:
        if self.only_top_call:
            return
        if op in CREATE_OPS:
            to, data = msg.storage_address, msg.code
        elif op in (DELEGATECALL, CALLCODE):
            to, data = msg.code_address or msg.storage_address, msg.data
        else:
            to, data = msg.storage_address, msg.data
        frame.call = {
            "type": OP_NAMES[op], "from": _addr(parent_computation.msg.storage_address),
            "gas": to_quantity(msg.gas), "gasUsed": "0x0", "to": _addr(to), "input": to_data(bytes(data)),
        }
        if op != STATICCALL:
            frame.call["value"] = to_quantity(msg.value)

    def on_exit(self, frame: _Frame, child) -> None:
        call = frame.call
        if call is None:
            return
        call["gasUsed"] = to_quantity(child.msg.gas - child.get_gas_remaining())
        _process_output(call, child, frame)
        frame.parent.call.setdefault("calls", []).append(call)

    def on_failed_frame(self, frame, op, to, data, gas, used, value, error) -> None:
        if self.only_top_call:
            return
        call = {"type": OP_NAMES[op], "from": _addr(frame.computation.msg.storage_address),
                "gas": to_quantity(gas), "gasUsed": to_quantity(used)}
        if to is not None:
            call["to"] = _addr(to)
        call["input"] = to_data(data)
        call["error"] = error
        if value is not None:
            call["value"] = to_quantity(value)
        frame.call.setdefault("calls", []).append(call)

    def on_selfdestruct(self, computation, frame: _Frame, beneficiary: bytes, balance: int) -> None:
        if self.only_top_call:
            return
        frame.call.setdefault("calls", []).append({
            "type": "SELFDESTRUCT", "from": _addr(computation.msg.storage_address), "gas": "0x0", "gasUsed": "0x0",
            "to": _addr(beneficiary), "input": "0x", "value": to_quantity(balance),
        })

    def on_log(self, computation, account, topics, data) -> None:
        if not self.with_log:
            return
        frame = computation._ol_frame
        if frame.call is None:  # onlyTopCall: logs of the top frame only
            return
        frame.call.setdefault("logs", []).append({
            "address": _addr(account),
            "topics": [to_data(topic.to_bytes(32, "big")) for topic in topics],
            "data": to_data(data),
            "position": to_quantity(len(frame.call.get("calls", ()))),
        })

    def result(self, computation, gas_used: int) -> dict[str, Any]:
        call = self.root.call
        call["gasUsed"] = to_quantity(gas_used)
        if call["to"] is None:
            call["to"] = _addr(computation.msg.storage_address)
        _process_output(call, computation, self.root)
        if call.get("to") is None:
            call.pop("to", None)
        if self.with_log:
            _clear_failed_logs(call, False)
        return _ordered(call)


def _process_output(call: dict[str, Any], computation, frame: _Frame) -> None:
    """geth's callFrame.processOutput."""
    if computation.is_success:
        if computation.output:
            call["output"] = to_data(computation.output)
        return
    error = computation.error
    call["error"] = vm_error_message(error, frame)
    if call["type"] in ("CREATE", "CREATE2"):
        call.pop("to", None)
    if not isinstance(error, Revert) or not computation.output:
        return
    call["output"] = to_data(computation.output)
    if len(computation.output) >= 4:
        reason = decode_revert_reason(computation.output)
        if reason is not None:
            call["revertReason"] = reason


def _clear_failed_logs(call: dict[str, Any], parent_failed: bool) -> None:
    failed = parent_failed or "error" in call
    if failed:
        call.pop("logs", None)
    for child in call.get("calls", ()):
        _clear_failed_logs(child, failed)


def _ordered(call: dict[str, Any]) -> dict[str, Any]:
    out = {key: call[key] for key in _FRAME_KEYS if key in call}
    if "calls" in out:
        out["calls"] = [_ordered(child) for child in out["calls"]]
    return out


class FourByteTracer(Tracer):
    """geth's ``4byteTracer``: {"0x<selector>-<calldata size>": count} over CALL* frames."""

    def __init__(self, timeout: float | None) -> None:
        super().__init__(timeout)
        self.ids: dict[str, int] = {}

    def _store(self, data: bytes) -> None:
        if len(data) >= 4:
            key = f"0x{bytes(data[:4]).hex()}-{len(data) - 4}"
            self.ids[key] = self.ids.get(key, 0) + 1

    def on_start(self, root: _Frame, sender, to, value, data, gas) -> None:
        if to and int.from_bytes(to, "big") > 0xFF:  # not a call of a precompile
            self._store(data)

    def on_enter(self, parent: _Frame, frame: _Frame, op: int, parent_computation, msg) -> None:
        if op in CALL_OPS and (msg.code_address or msg.storage_address) not in parent_computation.precompiles:
            self._store(msg.data)

    def result(self, computation, gas_used: int) -> dict[str, int]:
        return self.ids


# -- options ------------------------------------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: Any) -> float:
    """A Go duration string ("5s", "1m30s", "300ms", "0") in seconds, as time.ParseDuration."""
    if not isinstance(text, str):
        raise InvalidParams(f"invalid timeout: expected a duration string such as \"10s\", got {text!r}")
    sign, body = (-1.0, text[1:]) if text[:1] == "-" else (1.0, text[1:] if text[:1] == "+" else text)
    if body == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(body):
        match = _DURATION.match(body, pos)
        if match is None:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not body or pos != len(body):
        raise ServerError(f'time: invalid duration "{text}"')
    return sign * total


TRACERS = ("callTracer", "4byteTracer", "noopTracer")


def make_tracer_factory(options: Any) -> Callable[[], Tracer]:
    """Parse geth's TraceConfig into a function giving a fresh tracer per transaction."""
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise InvalidParams("invalid trace config: expected an object")
    name = options.get("tracer")
    if name is not None and not isinstance(name, str):
        raise InvalidParams("invalid tracer: expected a string")
    timeout: float | None = DEFAULT_TIMEOUT
    if options.get("timeout") is not None:
        timeout = parse_duration(options["timeout"])
    config = options.get("tracerConfig")
    if config is not None and not isinstance(config, dict):
        raise InvalidParams("invalid tracerConfig: expected an object")
    config = config or {}

    def flag(source: dict, key: str) -> bool:
        value = source.get(key)
        return False if value is None else parse_bool(value, name=key)

    if not name:
        limit = options.get("limit")
        limit = 0 if limit is None else parse_quantity(limit, name="limit", max_value=2**31 - 1)
        settings = dict(
            disable_stack=flag(options, "disableStack"), disable_storage=flag(options, "disableStorage"),
            enable_memory=flag(options, "enableMemory"), enable_return_data=flag(options, "enableReturnData"),
            limit=limit,
        )
        return lambda: StructLogger(timeout, **settings)
    if name == "callTracer":
        only_top, with_log = flag(config, "onlyTopCall"), flag(config, "withLog")
        return lambda: CallTracer(timeout, only_top_call=only_top, with_log=with_log)
    if name == "4byteTracer":
        return lambda: FourByteTracer(timeout)
    if name == "noopTracer":
        return lambda: NoopTracer(timeout)
    shown = name if len(name) <= 60 else name[:60] + "..."
    raise ServerError(
        f"tracer not supported: {shown!r} (supported: the default struct logger, {', '.join(TRACERS)}; "
        "JavaScript tracers are not available)"
    )


# -- re-execution -----------------------------------------------------------------------------------


def _run_traced(state, apply: Callable[[], Any], tracer: Tracer):
    """Run ``apply`` with ``state`` executing through the tracing computation class."""
    own = vars(state)
    had, base = "computation_class" in own, state.computation_class
    state.computation_class = _tracing_class(base)
    state._ol_tracer = tracer
    try:
        return apply()
    except TraceTimeout:
        raise ServerError("execution timeout") from None
    finally:
        if had:
            state.computation_class = base
        else:
            del state.computation_class
        state._ol_tracer = None


class BlockReplay:
    """A block being re-executed on its parent's state, transaction by transaction."""

    def __init__(self, node: "Node", header) -> None:
        chain = node.blockchain
        if header.block_number == 0:
            raise ServerError("genesis is not traceable")
        parent = chain.header_by_hash(header.parent_hash)
        if parent is None:
            raise ServerError(f"parent {to_data(header.parent_hash)} not found")
        self.data = node.reader.block_data(header)
        vm = chain.chain.get_vm(header)
        context = vm.create_execution_context(header, vm.previous_hashes, vm.chain_context)
        # as VM.import_block: a state at the parent's root in this block's context
        vm._state = vm.get_state_class()(vm.chaindb.db, context, parent.state_root)
        vm.block_preprocessing(self.data.block)
        self.vm = vm
        self.running = header.copy(gas_used=0)
        self.index = 0

    def skip_to(self, index: int) -> None:
        txs = self.data.block.transactions
        while self.index < index:
            self._apply(txs[self.index])

    def _apply(self, tx):
        receipt, computation = self.vm.apply_transaction(self.running, tx)
        gas_used = receipt.gas_used - self.running.gas_used
        self.running = self.running.copy(gas_used=receipt.gas_used)
        self.index += 1
        return computation, gas_used

    def trace_next(self, tracer: Tracer) -> Any:
        tx = self.data.block.transactions[self.index]
        sender = self.data.senders[self.index]
        tracer.start(sender=sender, to=tx.to or None, value=tx.value, data=tx.data, gas=tx.gas)
        computation, gas_used = _run_traced(self.vm.state, lambda: self._apply(tx), tracer)
        return tracer.finish(computation, gas_used)


class TraceAPI:
    """The ``debug_trace*`` methods."""

    def __init__(self, node: "Node") -> None:
        self.node = node
        self.reader = node.reader

    async def traceTransaction(self, tx_hash: Any, options: Any = None) -> Any:
        tx_hash = parse_hash(tx_hash, name="transaction hash")
        factory = make_tracer_factory(options)
        found = self.reader.transaction_location(tx_hash)
        if found is None:
            raise ServerError("transaction not found")
        data, index = found
        replay = BlockReplay(self.node, data.header)
        while replay.index < index:
            replay.skip_to(replay.index + 1)
            await asyncio.sleep(0)  # let the sequencer and other requests in between transactions
        return replay.trace_next(factory())

    async def traceBlockByNumber(self, block: Any, options: Any = None) -> list[dict[str, Any]]:
        selector = parse_block_tag(block, allow_eip1898=False)
        factory = make_tracer_factory(options)
        header = self.reader.header(selector)
        if header is None:
            raise ServerError(f"block #{selector} not found")
        return await self._trace_block(header, factory)

    async def traceBlockByHash(self, block_hash: Any, options: Any = None) -> list[dict[str, Any]]:
        block_hash = parse_hash(block_hash, name="block hash")
        factory = make_tracer_factory(options)
        header = self.node.blockchain.header_by_hash(block_hash)
        if header is None:
            raise ServerError(f"block {to_data(block_hash)} not found")
        return await self._trace_block(header, factory)

    async def _trace_block(self, header, factory) -> list[dict[str, Any]]:
        replay = BlockReplay(self.node, header)
        out = []
        for tx in replay.data.block.transactions:
            out.append({"txHash": to_data(tx.hash), "result": replay.trace_next(factory())})
            await asyncio.sleep(0)
        return out

    def traceCall(self, call: Any, block: Any = "latest", options: Any = None) -> Any:
        from ..node import RPC_GAS_CAP, _validation_message
        from .eth import CallRequest

        request = CallRequest(call)
        header = self.reader.state_header(parse_block_tag(block))
        if options is not None and not isinstance(options, dict):
            raise InvalidParams("invalid trace config: expected an object")
        options = options or {}
        if options.get("blockOverrides") is not None:
            raise InvalidParams("blockOverrides are not supported by debug_traceCall on this node")
        factory = make_tracer_factory({k: v for k, v in options.items() if k not in ("stateOverrides",)})
        vm, state = self.node._call_state(header, options.get("stateOverrides"), request.has_fees)
        # overridden storage counts as the value before the transaction (geth), which matters
        # for SSTORE's gas and refunds (EIP-2200); VM.apply_transaction does this per transaction
        state.lock_changes()
        gas = request.gas if request.gas is not None else RPC_GAS_CAP
        tx = self.node._call_transaction(vm, state, request, gas)
        tracer = factory()
        tracer.start(sender=tx.sender, to=request.to, value=request.value, data=request.data, gas=gas)

        def apply():
            try:
                return state.apply_transaction(tx)
            except ValidationError as exc:
                raise RPCError(-32000, _validation_message(str(exc))) from None

        computation = _run_traced(state, apply, tracer)
        return tracer.finish(computation, vm.finalize_gas_used(tx, computation))


def register(dispatcher, node: "Node") -> None:
    api = TraceAPI(node)
    dispatcher.register("debug_traceTransaction", api.traceTransaction)
    dispatcher.register("debug_traceCall", api.traceCall)
    dispatcher.register("debug_traceBlockByNumber", api.traceBlockByNumber)
    dispatcher.register("debug_traceBlockByHash", api.traceBlockByHash)


__all__ = ["TraceAPI", "register", "StructLogger", "CallTracer", "vm_error_message", "OP_NAMES"]
