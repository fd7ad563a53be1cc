"""The node's interpreter loop in C (``openledger_node/chain/_evm_loop.pyx``) against
stock py-evm's, on random programs.

Each program runs twice on the same fresh state: once with stock py-evm's computation
class for the fork, once with the node's (``VM_BY_FORK[fork]``'s, whose loop runs the
common opcodes in C and calls py-evm for the rest).  Everything observable must be
equal: success or the error's type and message, gas left and refunded, output, logs,
the stack and memory the frame ended with, and the state root (storage writes, value
transfers, calls into other frames).  Programs are drawn from a committed seed and lean
on what the C loop does itself: stack limits, 256-bit wrap-around, memory growth and
its gas (including offsets far beyond any gas), jumps into PUSH data or past the code,
out of gas on every kind of step, and calls that run child frames through the loop.
"""
from __future__ import annotations

import random

import pytest
from eth._utils.db import apply_state_dict
from eth.consensus.context import ConsensusContext
from eth.db.atomic import AtomicDB
from eth.db.chain import ChainDB
from eth.vm.chain_context import ChainContext
from eth.vm.message import Message
from eth.vm.opcode import as_opcode

import evm_fixture_runner as runner
from openledger_node.chain import _evm_loop, vm as node_vm
from openledger_node.chain.vm import VM_BY_FORK, FORKS

STOCK = dict(FORKS)
CONTRACT = bytes.fromhex("c0de" * 10)
OTHER = bytes.fromhex("0e" * 20)
SENDER = bytes.fromhex("5e" * 20)
INTERESTING = [0, 1, 2, 3, 31, 32, 33, 64, 255, 256, 1000, 2**31, 2**32 - 1, 2**32, 2**63, 2**64,
               2**128, 2**255 - 1, 2**255, 2**255 + 1, 2**256 - 2, 2**256 - 1]
OFFSETS = [0, 1, 31, 32, 64, 100, 1000, 4096, 2**16, 2**20, 2**24, 2**32 - 33, 2**32 - 1, 2**32, 2**40, 2**64,
           2**256 - 1, 2**256 - 32]
# Opcodes the C loop runs, and neighbours it hands to py-evm (signed arithmetic, EXP, SHA3,
# storage, logs, calls, RETURN/REVERT, INVALID and unassigned bytes).
ARITH = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x10, 0x11, 0x12, 0x13, 0x14,
         0x15, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x1B, 0x1C, 0x1D]
OTHERS = [0x20, 0x30, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x3D, 0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x58, 0x59,
          0x5A, 0x5B, 0x5C, 0x5D, 0x5E, 0x5F, 0xA0, 0xA1, 0xA2, 0x00, 0xF3, 0xFD, 0xFE, 0x0C, 0x21, 0xEF]


def push(value: int) -> bytes:
    width = max(1, (value.bit_length() + 7) // 8)
    return bytes([0x5F + width]) + value.to_bytes(width, "big")


def random_program(rng: random.Random) -> bytes:
    """A program of random steps; jumps aim at JUMPDESTs, PUSH data, the end and beyond."""
    out = bytearray()
    jump_sites: list[int] = []  # positions of placeholder PUSH2s for jump targets
    for _ in range(rng.randrange(0, 12)):  # something on the stack to start with
        out += push(rng.choice(INTERESTING))
    for _ in range(rng.randrange(1, 60)):
        roll = rng.random()
        if roll < 0.35:  # push operands (mostly as many as the operation takes), then the operation
            op = rng.choice(ARITH + ARITH + OTHERS)
            operands = 3 if op in (0x08, 0x09) else 1 if op in (0x15, 0x19, 0x35, 0x50, 0x51, 0x54) else 2
            for _ in range(operands if rng.random() < 0.8 else rng.randrange(0, 4)):
                out += push(rng.choice(INTERESTING) if rng.random() < 0.7 else rng.getrandbits(rng.choice([8, 64, 256])))
            out.append(op)
        elif roll < 0.40:  # memory at an offset
            out += push(rng.getrandbits(256)) + push(rng.choice(OFFSETS)) + bytes([rng.choice([0x52, 0x53, 0x51, 0x51])])
        elif roll < 0.50:  # DUPn / SWAPn, often deeper than the stack
            out.append(rng.choice(range(0x80, 0xA0)))
        elif roll < 0.58:  # PUSHn with truncated or full data (PUSH data may hold 0x5b)
            width = rng.randrange(0, 33)
            out.append(0x5F + width)
            out += bytes(rng.choice([0x5B, rng.randrange(256)]) for _ in range(width))
        elif roll < 0.70:  # a jump, its target filled in below
            if rng.random() < 0.5:
                out += push(rng.choice([0, 1]))  # JUMPI condition
                jump_sites.append(len(out))
                out += b"\x61\x00\x00\x57"
            else:
                jump_sites.append(len(out))
                out += b"\x61\x00\x00\x56"
        elif roll < 0.78:
            out.append(0x5B)
        elif roll < 0.84:  # calldata
            out += push(rng.choice(OFFSETS + [0, 4, 36])) + b"\x35"
        elif roll < 0.90:  # a call to this contract (child frames run through the loop too)
            args = [rng.choice([0, 32]), rng.choice([0, 64]), rng.choice([0, 4]), rng.choice([0, 36]),
                    rng.choice([0, 1]), int.from_bytes(rng.choice([CONTRACT, OTHER, (4).to_bytes(20, "big")]), "big"),
                    rng.choice([0, 5000, 2**256 - 1])]
            for value in args:
                out += push(value)
            out.append(rng.choice([0xF1, 0xFA]))
        else:
            out.append(rng.randrange(256))
    code = bytes(out)
    jumpdests = [i for i, b in enumerate(code) if b == 0x5B] or [0]
    for site in jump_sites:
        target = rng.choice([rng.choice(jumpdests), rng.choice(jumpdests), rng.randrange(len(code) + 2), 0xFFFF])
        out[site + 1:site + 3] = target.to_bytes(2, "big")
    return bytes(out)


def run(fork: str, computation_class, code: bytes, gas: int, data: bytes, value: int):
    vm_class = STOCK[fork]
    header = runner.state_test_header(vm_class, {
        "currentCoinbase": "0x" + "00" * 20, "currentNumber": "0x10", "currentGasLimit": "0x1c9c380",
        "currentTimestamp": "0x1000", "currentDifficulty": "0x20000", "currentBaseFee": "0x07"})
    db = AtomicDB()
    vm = vm_class(header=header, chaindb=ChainDB(db), chain_context=ChainContext(1612),
                  consensus_context=ConsensusContext(db))
    state = vm.state
    apply_state_dict(state, {
        CONTRACT: {"balance": 10**18, "nonce": 1, "code": code, "storage": {1: 7, 2**255: 3}},
        SENDER: {"balance": 10**20, "nonce": 0, "code": b"", "storage": {}},
    })
    message = Message(gas=gas, to=CONTRACT, sender=SENDER, value=value, data=data, code=code,
                      code_address=CONTRACT)
    context = state.get_transaction_context_class()(gas_price=7, origin=SENDER)
    computation = computation_class.apply_message(state, message, context)
    error = computation.error if computation.is_error else None
    return {
        "error": None if error is None else (type(error).__name__, str(error)),
        "gas_remaining": computation.get_gas_remaining(),
        "refund": computation.get_gas_refund(),
        "output": computation.output,
        "logs": computation.get_log_entries(),
        "stack": [v if isinstance(v, int) else int.from_bytes(v, "big") for v in computation._stack.values],
        "memory": bytes(computation._memory._bytes),
        "state_root": state.make_state_root(),
    }


FUZZ_FORKS = ["frontier", "byzantium", "constantinople", "berlin", "london", "cancun", "prague"]


@pytest.mark.parametrize("fork", FUZZ_FORKS)
def test_random_programs_give_stock_py_evm_results(fork: str) -> None:
    stock = STOCK[fork].get_state_class().computation_class
    node = VM_BY_FORK[fork].get_state_class().computation_class
    assert node is not stock and issubclass(node, stock)
    rng = random.Random(f"evm-loop-{fork}")
    errors: dict[str, int] = {}
    for case in range(400):
        code = random_program(rng)
        gas = rng.choice([0, 2, 21, 100, 1000, 5000, 30_000, 100_000])
        data = rng.randbytes(rng.choice([0, 4, 36, 100]))
        value = rng.choice([0, 0, 5])
        expected = run(fork, stock, code, gas, data, value)
        got = run(fork, node, code, gas, data, value)
        assert got == expected, f"case {case}, gas {gas}: code 0x{code.hex()}"
        kind = expected["error"][0] if expected["error"] else "ok"
        errors[kind] = errors.get(kind, 0) + 1
    # The draw reaches the outcomes the loop must get right, not just one of them.
    for kind in ("ok", "OutOfGas", "InsufficientStack", "InvalidJumpDestination", "InvalidInstruction"):
        assert errors.get(kind, 0) >= 3, errors


CASES = {
    # name: (code, gas) -- each of the C loop's own error paths and edge cases, by hand
    "add wraps": (push(2**256 - 1) + push(2) + b"\x01" + push(0) + b"\x52" + push(32) + push(0) + b"\xf3", 100),
    "jump into push data": (b"\x60\x03\x56\x61\x5b\x00", 100),
    "jump past the end": (b"\x61\xff\xff\x56", 100),
    "jumpi not taken to a bad target": (b"\x60\x00\x61\xff\xff\x57\x60\x01", 100),
    "mstore at 2**32": (push(1) + push(2**32) + b"\x52", 10**9),
    "mload beyond gas": (push(2**20) + b"\x51", 10**5),
    "mstore8 of a word": (push(0x1234) + push(5) + b"\x53" + b"\x59", 100),
    "out of gas on push": (b"\x60\x01" * 3, 8),
    "out of gas on memory": (push(1) + push(1000) + b"\x52", 30),
    "swap16 short": (push(1) * 16 + b"\x9f", 1000),
    "dup16 full": (push(1) * 16 + b"\x8f", 1000),
    "stack overflow": (b"\x5b" + b"\x58" * 1025, 10**6),
    "empty code": (b"", 1000),
    "truncated push32": (b"\x7f\x01\x02", 100),
    "pc and gas": (b"\x58\x5a\x58\x5a", 100),
    "calldataload past the end": (push(2**255) + b"\x35" + push(30) + b"\x35", 100),
    "byte and shifts": (push(2**255 + 7) + push(31) + b"\x1a" + push(2**255) + push(255) + b"\x1c"
                        + push(1) + push(256) + b"\x1b", 100),
    "addmod mulmod by zero": (push(0) + push(5) + push(6) + b"\x08" + push(0) + push(5) + push(6) + b"\x09", 100),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_edge_cases_give_stock_py_evm_results(name: str) -> None:
    code, gas = CASES[name]
    for fork in ("cancun", "prague"):
        stock = STOCK[fork].get_state_class().computation_class
        node = VM_BY_FORK[fork].get_state_class().computation_class
        assert run(fork, node, code, gas, b"\x01" * 40, 0) == run(fork, stock, code, gas, b"\x01" * 40, 0)


@pytest.mark.parametrize("depth", [0, 1, 2, 1023, 1024])
def test_every_opcode_at_stack_limits_gives_stock_results(depth: int) -> None:
    """Each of the 256 opcode bytes on an empty, short, almost full and full stack."""
    fork = "prague"
    stock = STOCK[fork].get_state_class().computation_class
    node = VM_BY_FORK[fork].get_state_class().computation_class
    for op in range(256):
        code = push(32) * depth + bytes([op, 0x01, 0x02])
        assert run(fork, node, code, 10**6, b"\x01" * 40, 0) == run(fork, stock, code, 10**6, b"\x01" * 40, 0), hex(op)


def test_add_wraps_and_returns_through_the_c_loop() -> None:
    code, gas = CASES["add wraps"]
    result = run("cancun", VM_BY_FORK["cancun"].get_state_class().computation_class, code, gas, b"", 0)
    assert result["error"] is None and result["output"] == (1).to_bytes(32, "big")


def test_only_stock_opcodes_run_in_c() -> None:
    """An opcode table entry that is not py-evm's own (wrapped by a tracer, a fork or the
    node) is called, never run inline; a frame with more gas than the C loop holds runs
    py-evm's loop."""
    node = VM_BY_FORK["cancun"].get_state_class().computation_class
    calls = []

    def add_and_count(computation) -> None:
        calls.append(1)
        left, right = computation.stack_pop_ints(2)
        computation.stack_push_int((left + right + 1) % 2**256)  # visibly not ADD

    wrapped = type("Wrapped", (node,), {"opcodes": {**node.opcodes, 0x01: as_opcode(add_and_count, "ADD", 3)}})
    code = push(2) + push(3) + b"\x01" + push(0) + b"\x52" + push(32) + push(0) + b"\xf3"
    result = run("cancun", wrapped, code, 1000, b"", 0)
    assert calls == [1] and int.from_bytes(result["output"], "big") == 6
    assert node_vm._loop_table(wrapped).native_count == node_vm._loop_table(node).native_count - 1
    # Past GAS_CAP the C loop declines and py-evm's loop runs (same result).
    big = run("cancun", node, code, _evm_loop.GAS_CAP + 5, b"", 0)
    assert big["error"] is None and int.from_bytes(big["output"], "big") == 5


def test_stock_loop_switch_gives_the_same_results() -> None:
    """``vm.native_loop = False`` (benchmarks' comparison) runs py-evm's loop everywhere."""
    node = VM_BY_FORK["cancun"].get_state_class().computation_class
    rng = random.Random("switch")
    programs = [random_program(rng) for _ in range(30)]
    native = [run("cancun", node, code, 20_000, b"\x02" * 36, 0) for code in programs]
    node_vm.native_loop = False
    try:
        stock = [run("cancun", node, code, 20_000, b"\x02" * 36, 0) for code in programs]
    finally:
        node_vm.native_loop = True
    assert native == stock
