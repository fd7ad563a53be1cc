# cython: language_level=3, boundscheck=False, wraparound=False
"""The EVM interpreter loop, in C: py-evm's ``BaseComputation.apply_computation`` loop
with the common opcodes executed inline.

py-evm runs each opcode as a chain of Python calls (the opcode object, its gas charge,
its logic function, the stack's pop and push methods).  Here one C loop reads the code
and executes, on py-evm's own stack list, memory and gas meter, the opcodes whose
semantics are pure: arithmetic, (signed) comparison and bit operations, PUSH/DUP/SWAP/POP,
JUMP/JUMPI/JUMPDEST/PC/GAS, MLOAD/MSTORE/MSTORE8/MSIZE, CALLDATALOAD/CALLDATASIZE,
CALLVALUE/CALLER/ADDRESS, SHA3.  Every other opcode (storage, calls, creates, logs,
RETURN/REVERT, anything a fork or the node adds) is py-evm's own opcode function,
called exactly as py-evm's loop calls it, after the program counter and gas are written
back.  An opcode runs inline only if the computation's opcode table holds py-evm's stock
function for it; its constant gas is read from that same table, so fork differences
come from py-evm.

Consensus code: the results (stack, memory, gas, exceptions and their order) are
py-evm's; ``tests/test_evm_loop.py`` runs random programs through both loops and
compares everything.  Integers are Python ints masked to 256 bits, as in py-evm.
"""
from cpython.list cimport PyList_GET_SIZE, PyList_GET_ITEM
from cpython.long cimport PyLong_Check

from eth.exceptions import (
    FullStack,
    Halt,
    InsufficientStack,
    InvalidInstruction,
    InvalidJumpDestination,
    OutOfGas,
)
from eth.vm.logic import arithmetic, comparison, context, duplication, flow, memory, sha3, stack, swap
from eth_hash.auto import keccak

cdef object UINT_256_MAX = 2 ** 256 - 1
cdef object UINT_255_MAX = 2 ** 255 - 1
cdef object UINT_256_CEILING = 2 ** 256
# Frames starting with more gas than this run py-evm's loop (gas is a C integer here, and
# memory costs below are computed in C).  No block or call can hold that much.
GAS_CAP = 2 ** 40
cdef long long _GAS_CAP = GAS_CAP
# A memory end beyond this costs more than GAS_CAP: out of gas, whatever the frame holds.
cdef long long _MEMORY_CAP = 2 ** 32

cdef enum:
    K_DELEGATE = 0
    K_STOP
    K_ADD
    K_MUL
    K_SUB
    K_DIV
    K_MOD
    K_ADDMOD
    K_MULMOD
    K_LT
    K_GT
    K_SLT
    K_SGT
    K_EQ
    K_ISZERO
    K_AND
    K_OR
    K_XOR
    K_NOT
    K_BYTE
    K_SHL
    K_SHR
    K_POP
    K_MLOAD
    K_MSTORE
    K_MSTORE8
    K_JUMP
    K_JUMPI
    K_PC
    K_MSIZE
    K_GAS
    K_JUMPDEST
    K_PUSH
    K_DUP
    K_SWAP
    K_CALLDATALOAD
    K_CALLDATASIZE
    K_CALLVALUE
    K_CALLER
    K_ADDRESS
    K_SHA3

# py-evm logic function -> (kind, argument: PUSH size, DUP/SWAP position)
_NATIVE = {
    flow.stop: (K_STOP, 0),
    arithmetic.add: (K_ADD, 0),
    arithmetic.mul: (K_MUL, 0),
    arithmetic.sub: (K_SUB, 0),
    arithmetic.div: (K_DIV, 0),
    arithmetic.mod: (K_MOD, 0),
    arithmetic.addmod: (K_ADDMOD, 0),
    arithmetic.mulmod: (K_MULMOD, 0),
    arithmetic.shl: (K_SHL, 0),
    arithmetic.shr: (K_SHR, 0),
    comparison.lt: (K_LT, 0),
    comparison.gt: (K_GT, 0),
    comparison.slt: (K_SLT, 0),
    comparison.sgt: (K_SGT, 0),
    comparison.eq: (K_EQ, 0),
    comparison.iszero: (K_ISZERO, 0),
    comparison.and_op: (K_AND, 0),
    comparison.or_op: (K_OR, 0),
    comparison.xor: (K_XOR, 0),
    comparison.not_op: (K_NOT, 0),
    comparison.byte_op: (K_BYTE, 0),
    stack.pop: (K_POP, 0),
    memory.mload: (K_MLOAD, 0),
    memory.mstore: (K_MSTORE, 0),
    memory.mstore8: (K_MSTORE8, 0),
    memory.msize: (K_MSIZE, 0),
    flow.jump: (K_JUMP, 0),
    flow.jumpi: (K_JUMPI, 0),
    flow.program_counter: (K_PC, 0),
    flow.gas: (K_GAS, 0),
    flow.jumpdest: (K_JUMPDEST, 0),
    context.calldataload: (K_CALLDATALOAD, 0),
    context.calldatasize: (K_CALLDATASIZE, 0),
    context.callvalue: (K_CALLVALUE, 0),
    context.caller: (K_CALLER, 0),
    context.address: (K_ADDRESS, 0),
    sha3.sha3: (K_SHA3, 0),
}
_NATIVE[stack.push0] = (K_PUSH, 0)
for _i in range(1, 33):
    _NATIVE[getattr(stack, f"push{_i}")] = (K_PUSH, _i)
for _i in range(1, 17):
    _NATIVE[getattr(duplication, f"dup{_i}")] = (K_DUP, _i)
    _NATIVE[getattr(swap, f"swap{_i}")] = (K_SWAP, _i)


cdef class Table:
    """What the loop does for each opcode byte, built from a computation's opcode table."""
    cdef unsigned char kinds[256]
    cdef unsigned char args[256]
    cdef long long costs[256]
    cdef list fns
    cdef list names
    cdef readonly object opcodes
    cdef readonly int native_count

    def __init__(self, opcodes):
        from eth.vm.logic.invalid import InvalidOpcode
        from eth.vm.opcode import _FastOpcode

        self.opcodes = opcodes
        self.fns = []
        self.names = []
        self.native_count = 0
        for op in range(256):
            fn = opcodes.get(op)
            if fn is None:
                fn = InvalidOpcode(op)
            self.fns.append(fn)
            self.names.append(getattr(fn, "mnemonic", ""))
            self.kinds[op] = K_DELEGATE
            self.args[op] = 0
            self.costs[op] = 0
            # Only py-evm's own opcode objects with py-evm's own logic run inline: a table
            # entry wrapped or replaced by anyone (a fork, the node, a tracer) is called.
            if type(fn) is _FastOpcode and fn.logic_fn in _NATIVE and 0 <= fn.gas_cost < 2 ** 20:
                kind, arg = _NATIVE[fn.logic_fn]
                self.kinds[op] = kind
                self.args[op] = arg
                self.costs[op] = fn.gas_cost
                self.native_count += 1


_JUMPDESTS = {}
_JUMPDESTS_MAX = 4096


cdef bytes _jumpdests(bytes code):
    """One byte per code position: 1 where a JUMPDEST opcode starts (not PUSH data)."""
    cached = _JUMPDESTS.get(code)
    if cached is not None:
        return <bytes>cached
    cdef Py_ssize_t n = len(code), i = 0
    cdef const unsigned char* c = code
    result = bytearray(n)
    cdef unsigned char* r = result
    cdef unsigned char op
    while i < n:
        op = c[i]
        if op == 0x5B:
            r[i] = 1
        elif 0x60 <= op <= 0x7F:
            i += op - 0x5F
        i += 1
    if len(_JUMPDESTS) >= _JUMPDESTS_MAX:
        _JUMPDESTS.clear()
    out = bytes(result)
    _JUMPDESTS[code] = out
    return out


cdef inline object _int(object v):
    if PyLong_Check(v):
        return v
    return int.from_bytes(v, "big")


cdef inline bytes _word(object v):
    """A stack item as MSTORE writes it: 32 bytes, big-endian."""
    if PyLong_Check(v):
        return (<object>v).to_bytes(32, "big")
    b = <bytes>v
    if len(b) == 32:
        return b
    if len(b) > 32:
        return b[len(b) - 32:]
    return b.rjust(32, b"\x00")


cdef inline long long _memory_cost(long long size):
    cdef long long words = (size + 31) // 32
    return words * 3 + (words * words) // 512


def run(computation, Table t):
    """Run ``computation``'s code to its end; False (and nothing done) if the frame holds
    more than GAS_CAP gas, for py-evm's loop to run it."""
    stream = computation.code
    meter = computation._gas_meter
    gas_obj = meter.gas_remaining
    if gas_obj > _GAS_CAP:
        return False
    cdef bytes code = stream._raw_code_bytes
    cdef const unsigned char* c = code
    cdef Py_ssize_t n = len(code)
    cdef Py_ssize_t pc = stream.program_counter
    cdef long long gas = gas_obj
    cdef list st = computation._stack.values
    cdef object mem = computation._memory
    cdef object msg = computation.msg
    cdef object jumpdests = None
    cdef const unsigned char* jd = NULL
    cdef unsigned char op, kind, arg
    cdef long long cost
    cdef Py_ssize_t sl
    cdef long long width
    cdef object a, b, m, v, dest, buf
    while True:
        op = c[pc] if pc < n else 0
        kind = t.kinds[op]
        if kind == K_DELEGATE:
            meter.gas_remaining = gas
            stream.program_counter = pc + 1
            try:
                t.fns[op](computation=computation)
            except Halt:
                return True
            pc = stream.program_counter
            gas = meter.gas_remaining
            continue
        cost = t.costs[op]
        if cost > gas:
            _sync(stream, meter, pc + 1, gas)
            raise OutOfGas(f"Out of gas: Needed {cost} - Remaining {gas} - Reason: {t.names[op]}")
        gas -= cost
        pc += 1
        sl = PyList_GET_SIZE(st)

        if kind == K_PUSH:
            if sl > 1023:
                _sync(stream, meter, pc, gas)
                raise FullStack("Stack limit reached")
            arg = t.args[op]
            v = code[pc:pc + arg]
            pc += arg
            if len(v) != arg:
                v = v.ljust(arg, b"\x00")
            st.append(v)
        elif kind == K_DUP:
            arg = t.args[op]
            if sl > 1023:
                _sync(stream, meter, pc, gas)
                raise FullStack("Stack limit reached")
            if sl < arg:
                _sync(stream, meter, pc, gas)
                raise InsufficientStack(f"Insufficient stack items for DUP{arg}")
            st.append(<object>PyList_GET_ITEM(st, sl - arg))
        elif kind == K_SWAP:
            arg = t.args[op]
            if sl < arg + 1:
                _sync(stream, meter, pc, gas)
                raise InsufficientStack(f"Insufficient stack items for SWAP{arg}")
            a = st[sl - 1]
            st[sl - 1] = st[sl - 1 - arg]
            st[sl - 1 - arg] = a
        elif kind == K_POP:
            if sl < 1:
                _sync(stream, meter, pc, gas)
                raise InsufficientStack("Wanted 1 stack item, had none")
            st.pop()
        elif kind == K_JUMPDEST:
            pass
        elif kind == K_JUMP or kind == K_JUMPI:
            if kind == K_JUMP:
                if sl < 1:
                    _sync(stream, meter, pc, gas)
                    raise InsufficientStack("Wanted 1 stack item, had none")
                dest = _int(st.pop())
                v = 1
            else:
                if sl < 2:
                    _sync(stream, meter, pc, gas)
                    raise InsufficientStack(f"Wanted 2 stack items, only had {sl}")
                dest = _int(st.pop())
                v = _int(st.pop())
            if v:
                if dest >= n or c[<Py_ssize_t>dest] != 0x5B:
                    _sync(stream, meter, pc, gas)
                    raise InvalidJumpDestination("Invalid Jump Destination")
                if jd == NULL:
                    jumpdests = _jumpdests(code)
                    jd = jumpdests
                if not jd[<Py_ssize_t>dest]:
                    _sync(stream, meter, pc, gas)
                    raise InvalidInstruction("Jump resulted in invalid instruction")
                pc = <Py_ssize_t>dest
        elif kind == K_STOP:
            _sync(stream, meter, pc, gas)
            return True
        elif kind == K_ISZERO or kind == K_NOT:
            if sl < 1:
                _sync(stream, meter, pc, gas)
                raise InsufficientStack("Wanted 1 stack item, had none")
            a = _int(st[sl - 1])
            if kind == K_ISZERO:
                st[sl - 1] = 0 if a else 1
            else:
                st[sl - 1] = UINT_256_MAX - a
        elif kind <= K_SHR:  # binary operations: a is the top item, b the next
            if kind == K_ADDMOD or kind == K_MULMOD:
                if sl < 3:
                    _sync(stream, meter, pc, gas)
                    raise InsufficientStack(f"Wanted 3 stack items, only had {sl}")
                a = _int(st.pop())
                b = _int(st.pop())
                m = _int(st[sl - 3])
                if m == 0:
                    st[sl - 3] = 0
                elif kind == K_ADDMOD:
                    st[sl - 3] = (a + b) % m
                else:
                    st[sl - 3] = (a * b) % m
                continue
            if sl < 2:
                _sync(stream, meter, pc, gas)
                raise InsufficientStack(f"Wanted 2 stack items, only had {sl}")
            a = _int(st.pop())
            b = _int(st[sl - 2])
            if kind == K_ADD:
                v = (a + b) & UINT_256_MAX
            elif kind == K_SUB:
                v = (a - b) & UINT_256_MAX
            elif kind == K_MUL:
                v = (a * b) & UINT_256_MAX
            elif kind == K_DIV:
                v = 0 if b == 0 else (a // b) & UINT_256_MAX
            elif kind == K_MOD:
                v = 0 if b == 0 else a % b
            elif kind == K_LT:
                v = 1 if a < b else 0
            elif kind == K_GT:
                v = 1 if a > b else 0
            elif kind == K_SLT or kind == K_SGT:  # signed: values from 2**255 up are negative
                if a > UINT_255_MAX:
                    a = a - UINT_256_CEILING
                if b > UINT_255_MAX:
                    b = b - UINT_256_CEILING
                v = (1 if a < b else 0) if kind == K_SLT else (1 if a > b else 0)
            elif kind == K_EQ:
                v = 1 if a == b else 0
            elif kind == K_AND:
                v = a & b
            elif kind == K_OR:
                v = a | b
            elif kind == K_XOR:
                v = a ^ b
            elif kind == K_BYTE:
                v = 0 if a >= 32 else (b >> (8 * (31 - a))) & 0xFF
            elif kind == K_SHL:
                v = 0 if a >= 256 else (b << a) & UINT_256_MAX
            else:  # K_SHR
                v = 0 if a >= 256 else b >> a
            st[sl - 2] = v
        elif kind == K_MLOAD or kind == K_MSTORE or kind == K_MSTORE8:
            if kind == K_MLOAD:
                if sl < 1:
                    _sync(stream, meter, pc, gas)
                    raise InsufficientStack("Wanted 1 stack item, had none")
                a = _int(st.pop())
                b = None
            else:
                if sl < 1:
                    _sync(stream, meter, pc, gas)
                    raise InsufficientStack("Wanted 1 stack item, had none")
                a = _int(st.pop())
                if sl < 2:
                    _sync(stream, meter, pc, gas)
                    raise InsufficientStack("Wanted 1 stack item, had none")
                b = st.pop()
            width = 1 if kind == K_MSTORE8 else 32
            if a + width > len(mem._bytes):
                gas = _grow(mem, a, width, gas, stream, meter, pc)
            buf = mem._bytes
            if kind == K_MLOAD:
                st.append(bytes(buf[a:a + 32]))
            elif kind == K_MSTORE:
                buf[a:a + 32] = _word(b)
            else:
                if PyLong_Check(b):
                    buf[a] = (<object>b) & 0xFF
                else:
                    buf[a] = (<bytes>b)[len(<bytes>b) - 1] if len(<bytes>b) else 0
        elif kind == K_MSIZE or kind == K_PC or kind == K_GAS or kind == K_CALLDATASIZE or kind == K_CALLVALUE \
                or kind == K_CALLER or kind == K_ADDRESS:
            if sl > 1023:
                _sync(stream, meter, pc, gas)
                raise FullStack("Stack limit reached")
            if kind == K_MSIZE:
                st.append(len(mem._bytes))
            elif kind == K_PC:
                st.append(pc - 1)
            elif kind == K_GAS:
                st.append(gas)
            elif kind == K_CALLDATASIZE:
                st.append(len(msg.data))
            elif kind == K_CALLVALUE:
                st.append(msg.value)
            elif kind == K_CALLER:
                st.append(msg.sender)
            else:
                st.append(msg.storage_address)
        elif kind == K_SHA3:
            if sl < 2:
                _sync(stream, meter, pc, gas)
                raise InsufficientStack(f"Wanted 2 stack items, only had {sl}")
            a = _int(st.pop())
            b = _int(st.pop())
            if b:
                if a + b > len(mem._bytes):
                    gas = _grow(mem, a, b, gas, stream, meter, pc)
                v = bytes(mem._bytes[a:a + b])
                cost = 6 * ((<long long>b + 31) // 32)
                if cost > gas:
                    _sync(stream, meter, pc, gas)
                    raise OutOfGas(f"Out of gas: Needed {cost} - Remaining {gas} - Reason: SHA3: word gas cost")
                gas -= cost
            else:
                v = b""
            st.append(keccak(v))
        elif kind == K_CALLDATALOAD:
            if sl < 1:
                _sync(stream, meter, pc, gas)
                raise InsufficientStack("Wanted 1 stack item, had none")
            a = _int(st[sl - 1])
            v = msg.data_as_bytes[a:a + 32]
            st[sl - 1] = v.ljust(32, b"\x00").lstrip(b"\x00")
        else:
            raise AssertionError(f"opcode kind {kind} has no implementation")


cdef long long _grow(object mem, object start, object size, long long gas, object stream, object meter,
                     Py_ssize_t pc) except -1:
    """Extend memory over [start, start + size) (size > 0, beyond its end) as
    ``computation.extend_memory`` does; the gas left, or OutOfGas."""
    cdef long long size_now = len(mem._bytes), end, cost
    if start + size > _MEMORY_CAP:
        _sync(stream, meter, pc, gas)
        raise OutOfGas(f"Out of gas: Needed {_memory_gas(start + size) - _memory_gas(size_now)} - "
                       f"Remaining {gas} - Reason: Expanding memory {size_now} -> {(start + size + 31) & ~31}")
    end = (<long long>(start + size) + 31) & ~31
    cost = _memory_cost(end) - _memory_cost(size_now)
    if cost > 0:
        if cost > gas:
            _sync(stream, meter, pc, gas)
            raise OutOfGas(f"Out of gas: Needed {cost} - Remaining {gas} - Reason: Expanding memory {size_now} -> {end}")
        gas -= cost
    mem.extend(start, size)
    return gas


cdef object _memory_gas(object size):
    words = (size + 31) // 32
    return words * 3 + words * words // 512


cdef inline void _sync(object stream, object meter, Py_ssize_t pc, long long gas):
    stream.program_counter = pc
    meter.gas_remaining = gas
