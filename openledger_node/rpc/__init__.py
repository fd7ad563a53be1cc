"""JSON-RPC namespaces; ``register_all`` puts every method of the node on a dispatcher."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .jsonrpc import Dispatcher

if TYPE_CHECKING:
    from ..node import Node


def register_all(dispatcher: Dispatcher, node: "Node") -> None:
    from .eth import EthAPI, NetAPI, Web3API
    from .filters import register as register_filters

    dispatcher.register_namespace(EthAPI(node), "eth")
    dispatcher.register_namespace(NetAPI(node), "net")
    dispatcher.register_namespace(Web3API(), "web3")
    register_filters(dispatcher, node)
    from .trace import register as register_trace  # debug_trace*: struct logger, callTracer

    register_trace(dispatcher, node)
    from .subscriptions import register as register_subscriptions

    register_subscriptions(dispatcher, node)  # eth_subscribe / eth_unsubscribe (WebSocket)
    from .debug import register as register_debug

    register_debug(dispatcher, node)
    # Account methods (eth_sendTransaction, eth_sign, ...), evm_mine and txpool_*: always
    # registered; without --dev (node.signer is None) the account methods answer a clear
    # -32000 "no unlocked accounts" error instead of "method not found".
    from .dev import register as register_dev

    register_dev(dispatcher, node)
    from .ol import register as register_ol

    register_ol(dispatcher, node)  # ol_: Datanets, models, inferences and their attribution
    from .ol_sync import register as register_ol_sync; register_ol_sync(dispatcher, node)  # ol_syncStatus
