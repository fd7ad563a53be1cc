"""The ``eth_``, ``net_`` and ``web3_`` namespaces."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from eth.exceptions import Revert
from eth_hash.auto import keccak

from .. import __version__
from ..sequencer import next_base_fee_after
from ..txpool import TxPoolError
from .encoding import (
    parse_address,
    parse_block_tag,
    parse_bool,
    parse_data,
    parse_hash,
    parse_quantity,
    to_data,
    to_quantity,
)
from .jsonrpc import ExecutionReverted, InvalidParams, RPCError, ServerError
from .proof import parse_storage_key
from .views import transaction_json

if TYPE_CHECKING:
    from ..node import Node

FEE_HISTORY_MAX_BLOCKS = 1024
_DECIMAL = re.compile(r"[0-9]{1,20}")
MIN_SUGGESTED_TIP = 1_000_000  # 0.001 gwei: the sequencer takes any tip; wallets like a non-zero one


class CallError(RPCError):
    """An eth_call / eth_estimateGas that failed for a reason other than a revert."""

    def __init__(self, message: str) -> None:
        super().__init__(-32000, message)


def _opt(obj: dict[str, Any], key: str, parse, **kw):
    value = obj.get(key)
    return None if value is None else parse(value, name=key, **kw)


class CallRequest:
    """A parsed transaction-call object (``eth_call``, ``eth_estimateGas``, ``eth_sendTransaction``)."""

    def __init__(self, obj: Any) -> None:
        if not isinstance(obj, dict):
            raise InvalidParams("invalid transaction: expected an object")
        self.sender = _opt(obj, "from", parse_address)
        to = obj.get("to")
        self.to = parse_address(to, name="to") if to not in (None, "0x", "") else None
        self.gas = _opt(obj, "gas", parse_quantity)
        self.gas_price = _opt(obj, "gasPrice", parse_quantity)
        self.max_fee = _opt(obj, "maxFeePerGas", parse_quantity)
        self.max_tip = _opt(obj, "maxPriorityFeePerGas", parse_quantity)
        if self.gas_price is not None and (self.max_fee is not None or self.max_tip is not None):
            raise InvalidParams("both gasPrice and (maxFeePerGas or maxPriorityFeePerGas) specified")
        self.value = _opt(obj, "value", parse_quantity) or 0
        self.nonce = _opt(obj, "nonce", parse_quantity)
        data, inp = obj.get("data"), obj.get("input")
        if data is not None and inp is not None and data != inp:
            raise InvalidParams('both "data" and "input" are set and not equal. Please use "input" to pass transaction call data')
        raw = inp if inp is not None else data
        self.data = parse_data(raw, name="input") if raw is not None else b""
        self.access_list = parse_access_list(obj.get("accessList"))
        self.chain_id = _opt(obj, "chainId", parse_quantity)
        self.type = _opt(obj, "type", parse_quantity)
        self.authorization_list = parse_authorization_list(obj.get("authorizationList"))

    @property
    def has_fees(self) -> bool:
        """Whether the caller priced the call (then the base fee and balance apply, as geth)."""
        return self.gas_price is not None or self.max_fee is not None or self.max_tip is not None


def parse_access_list(value: Any) -> tuple[tuple[bytes, tuple[int, ...]], ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidParams("invalid accessList: expected an array")
    out = []
    for entry in value:
        if not isinstance(entry, dict):
            raise InvalidParams("invalid accessList entry: expected an object")
        keys = entry.get("storageKeys") or []
        if not isinstance(keys, list):
            raise InvalidParams("invalid accessList storageKeys: expected an array")
        out.append((
            parse_address(entry.get("address"), name="accessList address"),
            tuple(int.from_bytes(parse_hash(k, name="storage key"), "big") for k in keys),
        ))
    return tuple(out)


def parse_authorization_list(value: Any) -> list[dict[str, Any]] | None:
    """EIP-7702 authorization tuples, as py-evm's ``Authorization`` fields."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidParams("invalid authorizationList: expected an array")
    out = []
    for entry in value:
        if not isinstance(entry, dict):
            raise InvalidParams("invalid authorization: expected an object")
        parity = entry.get("yParity", entry.get("v"))
        out.append({
            "chain_id": parse_quantity(entry.get("chainId"), name="authorization chainId"),
            "address": parse_address(entry.get("address"), name="authorization address"),
            "nonce": parse_quantity(entry.get("nonce"), name="authorization nonce", max_value=2**64 - 1),
            "y_parity": parse_quantity(parity, name="authorization yParity"),
            "r": parse_quantity(entry.get("r"), name="authorization r"),
            "s": parse_quantity(entry.get("s"), name="authorization s"),
        })
    return out


class EthAPI:
    """``eth_*`` methods.  Registered on the dispatcher by name (``eth_<method>``)."""

    def __init__(self, node: "Node") -> None:
        self.node = node
        self.reader = node.reader

    # -- chain ---------------------------------------------------------------------------
    def chainId(self) -> str:
        return to_quantity(self.node.blockchain.chain_id)

    def blockNumber(self) -> str:
        return to_quantity(self.node.blockchain.head.block_number)

    def syncing(self) -> bool:
        return False

    def mining(self) -> bool:
        return self.node.sequencer.mining

    def hashrate(self) -> str:
        return "0x0"

    def coinbase(self) -> str:
        return "0x" + self.node.sequencer.coinbase.hex()

    def protocolVersion(self) -> str:
        return "0x44"

    # -- blocks ----------------------------------------------------------------------------
    def getBlockByNumber(self, block: Any, full: Any = False) -> dict | None:
        header = self.reader.header(parse_block_tag(block, allow_eip1898=False))
        return None if header is None else self.reader.block_data(header).block_json(parse_bool(full, name="full"))

    def getBlockByHash(self, block_hash: Any, full: Any = False) -> dict | None:
        header = self.node.blockchain.header_by_hash(parse_hash(block_hash, name="block hash"))
        return None if header is None else self.reader.block_data(header).block_json(parse_bool(full, name="full"))

    def getBlockTransactionCountByNumber(self, block: Any) -> str | None:
        header = self.reader.header(parse_block_tag(block, allow_eip1898=False))
        return None if header is None else to_quantity(len(self.reader.block_data(header).block.transactions))

    def getBlockTransactionCountByHash(self, block_hash: Any) -> str | None:
        header = self.node.blockchain.header_by_hash(parse_hash(block_hash, name="block hash"))
        return None if header is None else to_quantity(len(self.reader.block_data(header).block.transactions))

    def getUncleCountByBlockNumber(self, block: Any) -> str | None:
        header = self.reader.header(parse_block_tag(block, allow_eip1898=False))
        return None if header is None else to_quantity(len(self.reader.block_data(header).block.uncles))

    def getUncleCountByBlockHash(self, block_hash: Any) -> str | None:
        header = self.node.blockchain.header_by_hash(parse_hash(block_hash, name="block hash"))
        return None if header is None else to_quantity(len(self.reader.block_data(header).block.uncles))

    def getUncleByBlockNumberAndIndex(self, block: Any, index: Any) -> None:
        parse_block_tag(block, allow_eip1898=False), parse_quantity(index, name="index")
        return None  # proof-of-stake and L2 blocks have no uncles

    def getUncleByBlockHashAndIndex(self, block_hash: Any, index: Any) -> None:
        parse_hash(block_hash, name="block hash"), parse_quantity(index, name="index")
        return None

    def getBlockReceipts(self, block: Any) -> list | None:
        header = self.reader.header(parse_block_tag(block))
        return None if header is None else self.reader.block_data(header).receipts_json()

    # -- transactions ----------------------------------------------------------------------
    def getTransactionByHash(self, tx_hash: Any) -> dict | None:
        tx_hash = parse_hash(tx_hash, name="transaction hash")
        found = self.reader.transaction_location(tx_hash)
        if found is not None:
            data, index = found
            return transaction_json(data.block.transactions[index], data.senders[index], data.header, index)
        pending = self.node.pool.get(tx_hash)
        if pending is not None:
            return transaction_json(pending[0], pending[1])
        return None

    def _tx_by_index(self, header, index: Any) -> dict | None:
        index = parse_quantity(index, name="index")
        if header is None:
            return None
        data = self.reader.block_data(header)
        if index >= len(data.block.transactions):
            return None
        return transaction_json(data.block.transactions[index], data.senders[index], data.header, index)

    def getTransactionByBlockHashAndIndex(self, block_hash: Any, index: Any) -> dict | None:
        return self._tx_by_index(self.node.blockchain.header_by_hash(parse_hash(block_hash, name="block hash")), index)

    def getTransactionByBlockNumberAndIndex(self, block: Any, index: Any) -> dict | None:
        return self._tx_by_index(self.reader.header(parse_block_tag(block, allow_eip1898=False)), index)

    def getRawTransactionByHash(self, tx_hash: Any) -> str | None:
        tx_hash = parse_hash(tx_hash, name="transaction hash")
        found = self.reader.transaction_location(tx_hash)
        if found is not None:
            data, index = found
            return to_data(data.block.transactions[index].encode())
        pending = self.node.pool.get(tx_hash)
        return to_data(pending[0].encode()) if pending else None

    def getTransactionReceipt(self, tx_hash: Any) -> dict | None:
        found = self.reader.transaction_location(parse_hash(tx_hash, name="transaction hash"))
        if found is None:
            return None
        data, index = found
        return data.receipts_json()[index]

    def sendRawTransaction(self, raw: Any) -> str:
        raw = parse_data(raw, name="transaction")
        try:
            tx = self.node.pool.add_raw(raw)
        except TxPoolError as exc:
            raise ServerError(str(exc)) from None
        return to_data(tx.hash)

    # -- state -----------------------------------------------------------------------------
    def getBalance(self, address: Any, block: Any = "latest") -> str:
        address = parse_address(address)
        state = self.node.state_at(self.reader.state_header(parse_block_tag(block)))
        return to_quantity(state.get_balance(address))

    def getTransactionCount(self, address: Any, block: Any = "latest") -> str:
        address = parse_address(address)
        selector = parse_block_tag(block)
        state = self.node.state_at(self.reader.state_header(selector))
        nonce = state.get_nonce(address)
        if selector == "pending":
            nonce = self.node.pool.pending_nonce(address, nonce)
        return to_quantity(nonce)

    def getCode(self, address: Any, block: Any = "latest") -> str:
        address = parse_address(address)
        state = self.node.state_at(self.reader.state_header(parse_block_tag(block)))
        return to_data(state.get_code(address))

    def getStorageAt(self, address: Any, slot: Any, block: Any = "latest") -> str:
        address = parse_address(address)
        key, _ = parse_storage_key(slot)
        state = self.node.state_at(self.reader.state_header(parse_block_tag(block)))
        return to_data(state.get_storage(address, key).to_bytes(32, "big"))

    def getProof(self, address: Any, storage_keys: Any, block: Any) -> dict:
        from .proof import account_proof

        address = parse_address(address)
        if not isinstance(storage_keys, list):
            raise InvalidParams("invalid storage keys: expected an array")
        header = self.reader.state_header(parse_block_tag(block))
        return account_proof(self.node.blockchain.store, header.state_root, address, storage_keys)

    # -- execution -------------------------------------------------------------------------
    def call(self, tx: Any, block: Any = "latest", state_overrides: Any = None, block_overrides: Any = None) -> str:
        request = CallRequest(tx)
        header = self.reader.state_header(parse_block_tag(block))
        computation = self.node.execute_call(request, header, state_overrides=state_overrides)
        return to_data(_result_or_raise(computation))

    def estimateGas(self, tx: Any, block: Any = "latest", state_overrides: Any = None) -> str:
        request = CallRequest(tx)
        header = self.reader.state_header(parse_block_tag(block))
        return to_quantity(self.node.estimate_gas(request, header, state_overrides=state_overrides))

    def createAccessList(self, tx: Any, block: Any = "latest") -> dict:
        from .access_list import create_access_list

        request = CallRequest(tx)
        header = self.reader.state_header(parse_block_tag(block))
        return create_access_list(self.node, request, header)

    def simulateV1(self, options: Any, block: Any = "latest") -> list:
        from .simulate import simulate_v1

        return simulate_v1(self.node, options, block)

    # -- fees ------------------------------------------------------------------------------
    def gasPrice(self) -> str:
        return to_quantity(self.node.next_base_fee() + self._suggested_tip())

    def maxPriorityFeePerGas(self) -> str:
        return to_quantity(self._suggested_tip())

    def blobBaseFee(self) -> str:
        """Blob base fee of the next block (this L2 takes no blob transactions: the minimum)."""
        return to_quantity(_next_blob_base_fee(self.node.blockchain.head))

    def _suggested_tip(self) -> int:
        """Median tip of the last blocks' transactions, at least MIN_SUGGESTED_TIP."""
        tips: list[int] = []
        head = self.node.blockchain.head
        for number in range(max(0, head.block_number - 19), head.block_number + 1):
            header = self.node.blockchain.header_by_number(number)
            base_fee = getattr(header, "base_fee_per_gas", 0) or 0
            for tx in self.reader.block_data(header).block.transactions:
                tips.append(min(tx.max_priority_fee_per_gas, tx.max_fee_per_gas - base_fee))
        if not tips:
            return MIN_SUGGESTED_TIP
        tips.sort()
        return max(MIN_SUGGESTED_TIP, tips[len(tips) // 2])

    def feeHistory(self, block_count: Any, newest: Any, percentiles: Any = None) -> dict:
        count = min(_hex_or_decimal(block_count, name="blockCount"), FEE_HISTORY_MAX_BLOCKS)
        selector = parse_block_tag(newest, allow_eip1898=False)
        if percentiles is not None:
            if not isinstance(percentiles, list):
                raise InvalidParams("invalid reward percentiles: expected an array of numbers")
            if len(percentiles) > 100:  # geth's maxQueryLimit
                raise ServerError(f"too many reward percentiles: {len(percentiles)}, max 100")
            prev = -1.0
            for p in percentiles:
                if not isinstance(p, (int, float)) or isinstance(p, bool):
                    raise InvalidParams(f"invalid reward percentile: {p!r}")
                if p < 0 or p > 100 or p < prev:  # a plain error in geth: -32000
                    raise ServerError(f"invalid reward percentile: {float(p):f}")
                prev = p
        if count == 0:  # geth: oldestBlock 0 and nothing else
            return {"oldestBlock": "0x0", "gasUsedRatio": None, "blobGasUsedRatio": None}
        newest_header = self.reader.header(selector)
        if newest_header is None:
            head = self.node.blockchain.head.block_number
            raise ServerError(f"request beyond head block: requested {selector}, head {head}")
        last = newest_header.block_number
        first = max(0, last - count + 1)
        base_fees, ratios, rewards, blob_fees, blob_ratios = [], [], [], [], []
        for number in range(first, last + 1):
            header = self.node.blockchain.header_by_number(number)
            base_fee = getattr(header, "base_fee_per_gas", 0) or 0
            base_fees.append(to_quantity(base_fee))
            ratios.append(header.gas_used / header.gas_limit if header.gas_limit else 0)
            blob_fees.append(to_quantity(_blob_base_fee(header)))
            max_blob_gas = _blob_params(header)[2]
            blob_ratios.append(getattr(header, "blob_gas_used", 0) / max_blob_gas if max_blob_gas else 0)
            if percentiles:
                rewards.append(self._rewards(header, base_fee, percentiles))
        base_fees.append(to_quantity(next_base_fee_after(newest_header)))
        blob_fees.append(to_quantity(_next_blob_base_fee(newest_header)))
        out = {
            "oldestBlock": to_quantity(first),
            "baseFeePerGas": base_fees,
            "gasUsedRatio": ratios,
            "baseFeePerBlobGas": blob_fees,
            "blobGasUsedRatio": blob_ratios,
        }
        if percentiles:
            out["reward"] = rewards
        return out

    def _rewards(self, header, base_fee: int, percentiles: list) -> list[str]:
        data = self.reader.block_data(header)
        if not data.block.transactions:
            return ["0x0"] * len(percentiles)
        receipts = data.receipts
        pairs = []
        previous = 0
        for tx, receipt in zip(data.block.transactions, receipts):
            pairs.append((min(tx.max_priority_fee_per_gas, tx.max_fee_per_gas - base_fee), receipt.gas_used - previous))
            previous = receipt.gas_used
        pairs.sort()
        # geth's eth/gasprice/feehistory.go: the tip of the transaction in which the
        # percentile's share of the block's gas (rounded down) is reached
        out = []
        index, acc = 0, pairs[0][1]
        for p in percentiles:
            threshold = int(header.gas_used * p / 100)
            while acc < threshold and index < len(pairs) - 1:
                index += 1
                acc += pairs[index][1]
            out.append(to_quantity(pairs[index][0]))
        return out

    # -- pending-block helpers used by wallets -----------------------------------------------
    def accounts(self) -> list[str]:
        return self.node.signer.addresses() if self.node.signer else []


def _blob_params(header) -> tuple[int, int, int]:
    """(target blob gas, base fee update fraction, max blob gas) of the header's fork;
    zeros before Cancun."""
    if not hasattr(header, "excess_blob_gas"):
        return 0, 0, 0
    if hasattr(header, "requests_hash"):  # Prague (EIP-7691)
        from eth.vm.forks.prague import constants as prague

        return (prague.TARGET_BLOB_GAS_PER_BLOCK, prague.BLOB_BASE_FEE_UPDATE_FRACTION_PRAGUE,
                prague.MAX_BLOB_GAS_PER_BLOCK)
    from eth.vm.forks.cancun import constants as cancun

    return cancun.TARGET_BLOB_GAS_PER_BLOCK, cancun.BLOB_BASE_FEE_UPDATE_FRACTION, cancun.MAX_BLOB_GAS_PER_BLOCK


def _blob_base_fee(header) -> int:
    """Blob base fee of the block itself (EIP-4844); 0 before Cancun, as geth reports it."""
    _, fraction, _ = _blob_params(header)
    if not fraction:
        return 0
    from eth.vm.forks.cancun.constants import MIN_BLOB_BASE_FEE
    from eth.vm.forks.cancun.state import fake_exponential

    return fake_exponential(MIN_BLOB_BASE_FEE, header.excess_blob_gas, fraction)


def _next_blob_base_fee(header) -> int:
    """Blob base fee of a block built on ``header`` (same fork assumed)."""
    target, fraction, _ = _blob_params(header)
    if not fraction:
        return 0
    from eth.vm.forks.cancun.constants import MIN_BLOB_BASE_FEE
    from eth.vm.forks.cancun.state import fake_exponential

    excess = max(0, header.excess_blob_gas + header.blob_gas_used - target)
    return fake_exponential(MIN_BLOB_BASE_FEE, excess, fraction)


def _hex_or_decimal(value: Any, *, name: str) -> int:
    """geth's ``math.HexOrDecimal64``: a JSON number, a decimal string or a 0x-hex string."""
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        value = int(value)
    return parse_quantity(value, name=name, max_value=2**64 - 1)


def _result_or_raise(computation) -> bytes:
    if computation.is_error:
        error = computation.error
        if isinstance(error, Revert):
            raise ExecutionReverted(computation.output)
        raise CallError(_error_message(error))
    return computation.output


def _error_message(error: Exception) -> str:
    name = type(error).__name__
    known = {
        "OutOfGas": "out of gas",
        "InsufficientFunds": "insufficient balance for transfer",
        "InvalidInstruction": "invalid opcode",
        "InvalidJumpDestination": "invalid jump destination",
        "StackDepthLimit": "max call depth exceeded",
        "WriteProtection": "write protection",
        "ContractCreationCollision": "contract address collision",
        "InsufficientStack": "stack underflow",
        "FullStack": "stack limit reached 1024",
        "OutOfBoundsRead": "return data out of bounds",
    }
    return known.get(name, f"execution failed: {error}" if str(error) else f"execution failed: {name}")


class NetAPI:
    def __init__(self, node: "Node") -> None:
        self.node = node

    def version(self) -> str:
        return str(self.node.blockchain.chain_id)

    def listening(self) -> bool:
        return True

    def peerCount(self) -> str:
        return "0x0"


class Web3API:
    def clientVersion(self) -> str:
        import platform

        return f"openledger-node/v{__version__}/{platform.system().lower()}/python{platform.python_version()}"

    def sha3(self, data: Any) -> str:
        return to_data(keccak(parse_data(data)))
