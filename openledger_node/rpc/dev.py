"""Unlocked dev accounts (``--dev``), as anvil and ``geth --dev`` have them, and dev/pool tooling.

Methods (registered whether or not the node holds keys, so a client always learns why):

- ``eth_sendTransaction``, ``eth_signTransaction``, ``eth_sign``, ``personal_sign``,
  ``eth_signTypedData_v4``: sign with one of the unlocked accounts. Without ``--dev``
  (``node.signer is None``) they answer -32000 :data:`NO_KEYS_MESSAGE`. ``eth_accounts``
  lives in :class:`~openledger_node.rpc.eth.EthAPI` and returns ``[]`` then.
- ``evm_mine``: seal a block now (dev mode only).
- ``txpool_status``, ``txpool_content``, ``txpool_contentFrom``, ``txpool_inspect``: geth's
  txpool namespace, always available.

Private keys never leave :class:`DevSigner`: not in a repr, a log line or an error message.
"""
from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data
from eth_utils import to_checksum_address

from ..txpool import TxPoolError
from .encoding import parse_address, parse_data, parse_hash, parse_quantity, to_data, to_quantity
from .jsonrpc import Dispatcher, InvalidParams, RPCError, ServerError
from .views import transaction_json

if TYPE_CHECKING:
    from ..node import Node

log = logging.getLogger("openledger.rpc.dev")

NO_KEYS_MESSAGE = (
    "no unlocked accounts: this node holds no keys; start it with --dev "
    "or sign locally and use eth_sendRawTransaction"
)
DEV_ONLY_MESSAGE = "{method} is only available in dev mode: start the node with --dev"
MAX_MINE_BLOCKS = 1000


class UnknownAccount(ServerError):
    """The sender is not one of the unlocked accounts (geth's ``accounts.ErrUnknownAccount``)."""

    def __init__(self) -> None:
        super().__init__("unknown account")


class DevSigner:
    """Holds the unlocked dev keys; signs through eth-account (coincurve-backed eth-keys)."""

    def __init__(self, keys: list[str]) -> None:
        accounts = [Account.from_key(k) for k in keys]
        self.__accounts = {bytes.fromhex(a.address[2:]): a for a in accounts}
        self.__order = [bytes.fromhex(a.address[2:]) for a in accounts]
        # Lower-case hex of each key, only to scrub error messages (see _scrub).
        self.__secrets = [a.key.hex().removeprefix("0x").lower() for a in accounts]

    def __repr__(self) -> str:
        return f"<DevSigner {len(self.__order)} unlocked accounts>"

    __str__ = __repr__

    def __reduce__(self):  # never pickle/copy keys anywhere by accident
        raise TypeError("DevSigner cannot be serialised")

    # -- accounts -----------------------------------------------------------------------
    def addresses(self) -> list[str]:
        """Unlocked addresses, lower-case 0x-hex, in the order the keys were given."""
        return ["0x" + address.hex() for address in self.__order]

    def __contains__(self, address: object) -> bool:
        return address in self.__accounts

    def _account(self, address: bytes):
        account = self.__accounts.get(address)
        if account is None:
            raise UnknownAccount()
        return account

    def _scrub(self, message: str) -> str:
        lowered = message.lower()
        for secret in self.__secrets:
            if secret in lowered:
                return "signing failed"
        return message

    # -- signing ------------------------------------------------------------------------
    def sign_transaction(self, sender: bytes, tx: dict[str, Any]) -> bytes:
        """Sign an eth-account transaction dict; returns the raw (typed) transaction."""
        account = self._account(sender)
        try:
            return bytes(account.sign_transaction(tx).raw_transaction)
        except Exception as exc:
            raise InvalidParams(self._scrub(f"invalid transaction: {exc}")) from None

    def sign_message(self, sender: bytes, message: bytes) -> bytes:
        """EIP-191 (version 0x45, "personal") signature of ``message``: r || s || v (v = 27/28)."""
        account = self._account(sender)
        return bytes(account.sign_message(encode_defunct(primitive=message)).signature)

    def sign_typed_data(self, sender: bytes, typed_data: dict[str, Any]) -> bytes:
        """EIP-712 signature of a full typed-data message ({types, primaryType, domain, message})."""
        account = self._account(sender)
        try:
            signable = encode_typed_data(full_message=typed_data)
        except Exception as exc:
            raise InvalidParams(self._scrub(f"invalid typed data: {exc}")) from None
        return bytes(account.sign_message(signable).signature)


# ----------------------------------------------------------------------------- helpers


def _obj(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidParams(f"invalid {name}: expected an object")
    return value


def _message_bytes(value: Any, name: str) -> bytes:
    """Hex data, or (as MetaMask and anvil accept) a plain UTF-8 string."""
    if isinstance(value, str) and value[:2] not in ("0x", "0X"):
        return value.encode()
    return parse_data(value, name=name)


def _access_list(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidParams("invalid accessList: expected an array")
    out = []
    for item in value:
        item = _obj(item, "accessList entry")
        address = parse_address(item.get("address"), name="accessList address")
        keys = item.get("storageKeys") or []
        if not isinstance(keys, list):
            raise InvalidParams("invalid accessList storageKeys: expected an array")
        out.append({
            "address": to_checksum_address(address),
            "storageKeys": [to_data(parse_hash(k, name="accessList storage key")) for k in keys],
        })
    return out


def _tx_json(tx, sender: bytes) -> dict[str, Any]:
    """The transaction as geth marshals a ``types.Transaction`` (no block fields, no ``from``)."""
    out = transaction_json(tx, sender)
    for key in ("blockHash", "blockNumber", "transactionIndex", "from"):
        out.pop(key, None)
    if getattr(tx, "type_id", None) not in (None, 1):
        out.pop("gasPrice", None)
    return out


# ------------------------------------------------------------------------------- APIs


class DevAPI:
    """Account methods over the node's :class:`DevSigner` (or clear refusals without one)."""

    def __init__(self, node: "Node") -> None:
        from .eth import EthAPI

        self.node = node
        self._eth = EthAPI(node)  # for the suggested tip, as eth_maxPriorityFeePerGas gives it

    # -- signer -------------------------------------------------------------------------
    @property
    def signer(self) -> DevSigner:
        signer = self.node.signer
        if signer is None:
            raise ServerError(NO_KEYS_MESSAGE)
        return signer

    def _sender(self, value: Any, name: str = "address") -> bytes:
        signer = self.signer
        if value is None:
            raise InvalidParams(f'missing "{name}": the unlocked account to sign with')
        address = parse_address(value, name=name)
        if address not in signer:
            raise UnknownAccount()
        return address

    # -- transactions -------------------------------------------------------------------
    def _fill(self, obj: Any) -> tuple[bytes, dict[str, Any]]:
        """geth's ``TransactionArgs.setDefaults``: (sender, eth-account transaction dict)."""
        from .eth import CallRequest

        signer = self.signer
        obj = _obj(obj, "transaction")
        request = CallRequest(obj)
        if request.sender is None:
            raise InvalidParams('missing "from": the unlocked account to send from')
        if request.sender not in signer:
            raise UnknownAccount()
        sender = request.sender
        node = self.node
        chain_id = node.blockchain.chain_id
        if request.chain_id is not None and request.chain_id != chain_id:
            raise InvalidParams(f"chainId does not match node's (have={request.chain_id}, want={chain_id})")
        if request.to is None and not request.data:
            raise InvalidParams("contract creation without any data provided")
        if request.authorization_list is not None or request.type == 4:
            raise InvalidParams(
                "EIP-7702 (type 4) transactions are not signed by the node: sign locally and use eth_sendRawTransaction"
            )
        if request.type is not None and request.type not in (0, 1, 2):
            raise InvalidParams(f"transaction type not supported: {request.type}")
        head = node.blockchain.head
        london = getattr(head, "base_fee_per_gas", None) is not None
        has_dynamic = request.max_fee is not None or request.max_tip is not None
        has_access_list = obj.get("accessList") is not None
        tx_type = request.type
        if tx_type is None:
            if request.gas_price is not None or not london:
                tx_type = 1 if has_access_list else 0
            else:
                tx_type = 2
        if tx_type in (0, 1) and has_dynamic:
            raise InvalidParams(f"maxFeePerGas and maxPriorityFeePerGas are not allowed in a type {tx_type} transaction")
        if tx_type == 0 and has_access_list:
            raise InvalidParams("accessList is not allowed in a legacy (type 0) transaction")
        if tx_type == 2 and request.gas_price is not None:
            raise InvalidParams("gasPrice is not allowed in a type 2 transaction: use maxFeePerGas")
        if tx_type == 2 and not london:
            raise InvalidParams("EIP-1559 transactions are not active at the head block")

        tx: dict[str, Any] = {"chainId": chain_id, "value": request.value, "data": request.data}
        if request.to is not None:
            tx["to"] = to_checksum_address(request.to)
        if tx_type == 1:
            tx["type"] = 1
        if tx_type in (1, 2):
            tx["accessList"] = _access_list(obj.get("accessList"))
        if tx_type == 2:
            tx["type"] = 2
            base_fee = node.next_base_fee()
            tip = request.max_tip
            if tip is None:
                tip = self._eth._suggested_tip()
                if request.max_fee is not None:
                    tip = min(tip, request.max_fee)
            max_fee = request.max_fee if request.max_fee is not None else 2 * base_fee + tip
            if max_fee < tip:
                raise InvalidParams(f"maxFeePerGas ({max_fee}) < maxPriorityFeePerGas ({tip})")
            tx["maxPriorityFeePerGas"] = tip
            tx["maxFeePerGas"] = max_fee
        else:
            tx["gasPrice"] = (
                request.gas_price if request.gas_price is not None
                else node.next_base_fee() + self._eth._suggested_tip()
            )
        if request.nonce is not None:
            tx["nonce"] = request.nonce
        else:
            state_nonce = node.state_at(head).get_nonce(sender)
            tx["nonce"] = node.pool.pending_nonce(sender, state_nonce)
        if request.gas is not None:
            tx["gas"] = request.gas
        else:
            tx["gas"] = node.estimate_gas(request, head)  # the request's access list included
        return sender, tx

    def _sign(self, obj: Any):
        sender, tx = self._fill(obj)
        raw = self.signer.sign_transaction(sender, tx)
        return sender, raw, self.node.blockchain.decode_transaction(raw)

    def sendTransaction(self, tx: Any) -> str:
        _, _, signed = self._sign(tx)
        try:
            self.node.pool.add(signed)
        except TxPoolError as exc:
            raise ServerError(str(exc)) from None
        return to_data(signed.hash)

    def signTransaction(self, tx: Any) -> dict[str, Any]:
        sender, raw, signed = self._sign(tx)
        return {"raw": to_data(raw), "tx": _tx_json(signed, sender)}

    # -- messages -----------------------------------------------------------------------
    def sign(self, address: Any, data: Any) -> str:
        """``eth_sign(address, data)``: EIP-191 personal-message signature (as geth)."""
        sender = self._sender(address)
        return to_data(self.signer.sign_message(sender, _message_bytes(data, "data")))

    def personal_sign(self, data: Any, address: Any, password: Any = None) -> str:
        """``personal_sign(data, address[, password])``: the same signature as eth_sign."""
        sender = self._sender(address)
        return to_data(self.signer.sign_message(sender, _message_bytes(data, "data")))

    def signTypedData_v4(self, address: Any, typed_data: Any) -> str:
        sender = self._sender(address)
        if isinstance(typed_data, str):
            try:
                typed_data = json.loads(typed_data)
            except ValueError:
                raise InvalidParams("invalid typed data: not valid JSON") from None
        typed_data = _obj(typed_data, "typed data")
        return to_data(self.signer.sign_typed_data(sender, typed_data))


class EvmAPI:
    """anvil/hardhat's ``evm_mine``."""

    def __init__(self, node: "Node") -> None:
        self.node = node

    def mine(self, options: Any = None) -> str:
        """``evm_mine([timestamp | {timestamp, blocks}])``: seal block(s) now; returns "0x0" as anvil."""
        if self.node.signer is None:
            raise ServerError(DEV_ONLY_MESSAGE.format(method="evm_mine"))
        timestamp, blocks = None, 1
        if isinstance(options, dict):
            if options.get("timestamp") is not None:
                timestamp = parse_quantity(options["timestamp"], name="timestamp", max_value=2**64 - 1)
            if options.get("blocks") is not None:
                blocks = parse_quantity(options["blocks"], name="blocks", max_value=2**64 - 1)
        elif options is not None:
            timestamp = parse_quantity(options, name="timestamp", max_value=2**64 - 1)
        if blocks > MAX_MINE_BLOCKS:
            raise InvalidParams(f"invalid blocks: at most {MAX_MINE_BLOCKS} per call")
        for i in range(blocks):
            self.node.sequencer.seal(None if timestamp is None else timestamp + i)
        return "0x0"


class TxPoolAPI:
    """geth's ``txpool_*`` namespace over :meth:`TxPool.content`."""

    def __init__(self, node: "Node") -> None:
        self.node = node

    def status(self) -> dict[str, str]:
        pending, queued = self.node.pool.content()
        return {
            "pending": to_quantity(sum(len(txs) for txs in pending.values())),
            "queued": to_quantity(sum(len(txs) for txs in queued.values())),
        }

    def content(self) -> dict[str, dict[str, dict[str, Any]]]:
        pending, queued = self.node.pool.content()
        return {
            "pending": {to_checksum_address(s): self._by_nonce(txs, s) for s, txs in pending.items()},
            "queued": {to_checksum_address(s): self._by_nonce(txs, s) for s, txs in queued.items()},
        }

    def contentFrom(self, address: Any) -> dict[str, dict[str, Any]]:
        sender = parse_address(address)
        pending, queued = self.node.pool.content()
        return {
            "pending": self._by_nonce(pending.get(sender, []), sender),
            "queued": self._by_nonce(queued.get(sender, []), sender),
        }

    def inspect(self) -> dict[str, dict[str, dict[str, str]]]:
        pending, queued = self.node.pool.content()

        def summary(tx) -> str:
            to = to_checksum_address(tx.to) if tx.to else "contract creation"
            price = tx.gas_price if getattr(tx, "type_id", None) in (None, 1) else tx.max_fee_per_gas
            return f"{to}: {tx.value} wei + {tx.gas} gas × {price} wei"

        return {
            name: {to_checksum_address(s): {str(tx.nonce): summary(tx) for tx in txs} for s, txs in part.items()}
            for name, part in (("pending", pending), ("queued", queued))
        }

    @staticmethod
    def _by_nonce(txs, sender: bytes) -> dict[str, dict[str, Any]]:
        return {str(tx.nonce): transaction_json(tx, sender) for tx in txs}


def register(dispatcher: Dispatcher, node: "Node") -> None:
    """Register the account, ``evm_`` and ``txpool_`` methods (with or without keys)."""
    dev = DevAPI(node)
    dispatcher.register("eth_sendTransaction", dev.sendTransaction)
    dispatcher.register("eth_signTransaction", dev.signTransaction)
    dispatcher.register("eth_sign", dev.sign)
    dispatcher.register("eth_signTypedData_v4", dev.signTypedData_v4)
    dispatcher.register("personal_sign", dev.personal_sign)
    dispatcher.register("evm_mine", EvmAPI(node).mine)
    dispatcher.register_namespace(TxPoolAPI(node), "txpool")


__all__ = ["DevSigner", "UnknownAccount", "NO_KEYS_MESSAGE", "register"]
