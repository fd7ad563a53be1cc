"""The ``eth_*``, ``net_*`` and ``web3_*`` JSON-RPC methods, as geth answers them.

Everything goes through HTTP to a real node (LevelDB datadir, uvicorn on loopback)
with transactions signed by eth_account: legacy (EIP-155), EIP-2930, EIP-1559 and
EIP-7702.  Field sets and formats follow geth and the execution-apis conformance
cases (``shared/conformance/execution-apis``).

Three kinds of node:
- ``world`` (module scope): mining off; a fixed history sealed block by block, so
  every test knows which transaction sits where.  Tests only read it.
- ``idle``: mining off, nothing sealed: transactions stay in the pool.
- ``devnet`` (conftest): seals a block as soon as a transaction waits.
"""
from __future__ import annotations

import concurrent.futures
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_utils import keccak, to_checksum_address

from openledger_node.contracts import compile_contracts, contract_artifact

from conftest import RunningNode, running_node, start_node, stop_node

CHAIN_ID = 1612
GWEI = 10**9
ETHER = 10**18
PROBE_SOL = Path(__file__).parent / "contracts" / "RpcProbe.sol"
RECIPIENT = "0x00000000000000000000000000000000000c0ffe"  # never sends anything
ZERO_HASH = "0x" + "00" * 32

QUANTITY = re.compile(r"^0x(0|[1-9a-f][0-9a-f]*)$")

# Field sets as geth writes them (Prague blocks; see execution-apis get-block-prague-fork.io,
# get-legacy-tx.io, get-access-list.io, get-dynamic-fee.io, get-setcode-tx.io, receipts).
BLOCK_FIELDS = {
    "baseFeePerGas", "blobGasUsed", "difficulty", "excessBlobGas", "extraData", "gasLimit", "gasUsed", "hash",
    "logsBloom", "miner", "mixHash", "nonce", "number", "parentBeaconBlockRoot", "parentHash", "receiptsRoot",
    "requestsHash", "sha3Uncles", "size", "stateRoot", "timestamp", "transactions", "transactionsRoot", "uncles",
    "withdrawals", "withdrawalsRoot",
}
BLOCK_QUANTITIES = {"baseFeePerGas", "blobGasUsed", "difficulty", "excessBlobGas", "gasLimit", "gasUsed", "number",
                    "size", "timestamp"}
LEGACY_TX_FIELDS = {"blockHash", "blockNumber", "from", "gas", "gasPrice", "hash", "input", "nonce", "to",
                    "transactionIndex", "value", "type", "chainId", "v", "r", "s"}
ACCESS_LIST_TX_FIELDS = LEGACY_TX_FIELDS | {"accessList", "yParity"}
DYNAMIC_FEE_TX_FIELDS = ACCESS_LIST_TX_FIELDS | {"maxFeePerGas", "maxPriorityFeePerGas"}
SET_CODE_TX_FIELDS = DYNAMIC_FEE_TX_FIELDS | {"authorizationList"}
TX_QUANTITIES = {"blockNumber", "gas", "gasPrice", "maxFeePerGas", "maxPriorityFeePerGas", "nonce",
                 "transactionIndex", "value", "type", "chainId", "v", "r", "s", "yParity"}
RECEIPT_FIELDS = {"blockHash", "blockNumber", "contractAddress", "cumulativeGasUsed", "effectiveGasPrice", "from",
                  "gasUsed", "logs", "logsBloom", "status", "to", "transactionHash", "transactionIndex", "type"}
RECEIPT_QUANTITIES = {"blockNumber", "cumulativeGasUsed", "effectiveGasPrice", "gasUsed", "status",
                      "transactionIndex", "type"}
LOG_FIELDS = {"address", "topics", "data", "blockNumber", "transactionHash", "transactionIndex", "blockHash",
              "blockTimestamp", "logIndex", "removed"}


# ----------------------------------------------------------------------------- helpers


def q(value: str) -> int:
    """A hex quantity, checked for geth's format (no leading zeros)."""
    assert isinstance(value, str) and QUANTITY.match(value), f"not a canonical hex quantity: {value!r}"
    return int(value, 16)


def word(value: int) -> str:
    return "0x" + value.to_bytes(32, "big").hex()


def selector(signature: str) -> str:
    return "0x" + keccak(text=signature)[:4].hex()


def calldata(signature: str, *args: Any) -> str:
    types = signature[signature.index("(") + 1 : -1]
    encoded = abi_encode([t for t in types.split(",") if t], list(args)) if args else b""
    return selector(signature) + encoded.hex()


def sign(key: str, tx: dict[str, Any]) -> str:
    """Sign with eth_account; returns the raw transaction as 0x-hex."""
    tx = {"chainId": CHAIN_ID, "value": 0, **tx}
    if tx.get("to"):
        tx["to"] = to_checksum_address(tx["to"])
    return "0x" + Account.sign_transaction(tx, key).raw_transaction.hex()


def tx_hash_of(raw: str) -> str:
    return "0x" + keccak(hexstr=raw).hex()


def address_of(key: str) -> str:
    return Account.from_key(key).address.lower()


def fresh_key(label: str) -> str:
    return "0x" + keccak(text=f"openledger rpc test {label}").hex()


def error_of(chain: RunningNode, method: str, *params: Any) -> dict[str, Any]:
    body = chain.request(method, *params)
    assert "error" in body, f"{method} answered {body.get('result')!r}, expected an error"
    return body["error"]


def seal(chain: RunningNode) -> dict[str, Any]:
    """Seal one block from the pool, on the node's event-loop thread; returns the block (hashes)."""
    node = chain.node
    loop = node.rpc._task.get_loop()
    done: concurrent.futures.Future = concurrent.futures.Future()

    def run() -> None:
        try:
            done.set_result(node.sequencer.seal())
        except BaseException as exc:  # handed to the test thread
            done.set_exception(exc)

    loop.call_soon_threadsafe(run)
    sealed = done.result(30)
    return chain.rpc("eth_getBlockByNumber", hex(sealed.block.header.block_number), False)


def send(chain: RunningNode, raw: str) -> str:
    tx_hash = chain.rpc("eth_sendRawTransaction", raw)
    assert tx_hash == tx_hash_of(raw)
    return tx_hash


def nonce_of(chain: RunningNode, address: str, block: str = "pending") -> int:
    return q(chain.rpc("eth_getTransactionCount", address, block))


def next_base_fee(chain: RunningNode) -> int:
    return q(chain.rpc("eth_feeHistory", "0x1", "latest", [])["baseFeePerGas"][-1])


def eip1559(chain: RunningNode, key: str, *, tip: int = GWEI, max_fee: int = 100 * GWEI, **tx: Any) -> str:
    return sign(key, {"nonce": nonce_of(chain, address_of(key)), "maxFeePerGas": max_fee,
                      "maxPriorityFeePerGas": tip, "gas": 100_000, **tx})


def legacy(chain: RunningNode, key: str, *, gas_price: int = 10 * GWEI, **tx: Any) -> str:
    return sign(key, {"nonce": nonce_of(chain, address_of(key)), "gasPrice": gas_price, "gas": 100_000, **tx})


@pytest.fixture(scope="module")
def probe_artifact() -> dict[str, Any]:
    return compile_contracts([PROBE_SOL])["RpcProbe"]


@pytest.fixture
def idle(tmp_path: Path) -> Iterator[RunningNode]:
    """A node with mining off: transactions wait in the pool."""
    with running_node(tmp_path / "data", mining=False) as running:
        yield running


# ------------------------------------------------------------------ the fixed history


@dataclass
class World:
    chain: RunningNode
    keys: list[str]
    probe: str
    token: str
    txs: dict[str, str] = field(default_factory=dict)  # name -> hash
    raws: dict[str, str] = field(default_factory=dict)
    auth: Any = None

    def rpc(self, method: str, *params: Any) -> Any:
        return self.chain.rpc(method, *params)

    def addr(self, i: int) -> str:
        return address_of(self.keys[i])

    def receipt(self, name: str) -> dict[str, Any]:
        return self.rpc("eth_getTransactionReceipt", self.txs[name])

    def tx(self, name: str) -> dict[str, Any]:
        return self.rpc("eth_getTransactionByHash", self.txs[name])

    def block(self, number: int, full: bool = False) -> dict[str, Any]:
        return self.rpc("eth_getBlockByNumber", hex(number), full)


@pytest.fixture(scope="module")
def world(tmp_path_factory, dev_keys, probe_artifact) -> Iterator[World]:
    """Blocks, in order:

    1. ``deploy_probe`` (EIP-1559, key 0, RpcProbe(7)), ``deploy_token`` (EIP-1559, key 4)
    2. ``legacy_set`` (legacy, key 0, set(9): 2 logs), ``access_list`` (EIP-2930, key 1,
       1 ether to RECIPIENT with an access list), ``dynamic_set`` (EIP-1559, key 2, set(11):
       2 logs), ``failed`` (EIP-1559, key 3, failWithReason(): status 0) — in that order
       (decreasing tips)
    3. ``set_code`` (EIP-7702, key 6 sends, key 5 delegates to the probe, calls set(5));
       ``fill`` (legacy, key 0, fill(4))
    4. empty
    """
    datadir = tmp_path_factory.mktemp("world") / "data"
    node, thread = start_node(datadir, mining=False)
    try:
        with httpx.Client(timeout=30) as client:
            chain = RunningNode(node, node.rpc.url, datadir, client)
            keys = dev_keys
            w = World(chain, keys, probe="", token="")
            probe_addr = "0x" + keccak(b"\xd6\x94" + bytes.fromhex(w.addr(0)[2:]) + b"\x80")[12:].hex()
            token_addr = "0x" + keccak(b"\xd6\x94" + bytes.fromhex(w.addr(4)[2:]) + b"\x80")[12:].hex()
            w.probe, w.token = probe_addr, token_addr

            def put(name: str, raw: str) -> None:
                w.raws[name] = raw
                w.txs[name] = send(chain, raw)

            token = contract_artifact("TestToken")
            put("deploy_probe", eip1559(chain, keys[0], tip=3 * GWEI, gas=1_000_000,
                                        data=probe_artifact["bytecode"] + abi_encode(["uint256"], [7]).hex()))
            put("deploy_token", eip1559(chain, keys[4], tip=2 * GWEI, gas=3_000_000,
                                        data=token["bytecode"] + abi_encode(["uint256"], [1000 * ETHER]).hex()))
            seal(chain)

            put("legacy_set", legacy(chain, keys[0], gas_price=50 * GWEI, to=probe_addr,
                                     data=calldata("set(uint256)", 9)))
            put("access_list", sign(keys[1], {
                "type": 1, "nonce": nonce_of(chain, w.addr(1)), "gasPrice": 40 * GWEI, "gas": 30_000,
                "to": RECIPIENT, "value": ETHER,
                "accessList": [{"address": to_checksum_address(probe_addr), "storageKeys": [word(0)]}],
            }))
            put("dynamic_set", eip1559(chain, keys[2], tip=30 * GWEI, to=probe_addr, data=calldata("set(uint256)", 11)))
            put("failed", eip1559(chain, keys[3], tip=20 * GWEI, to=probe_addr, data=calldata("failWithReason()")))
            seal(chain)

            w.auth = Account.sign_authorization(
                {"chainId": CHAIN_ID, "address": to_checksum_address(probe_addr), "nonce": 0}, keys[5]
            )
            put("set_code", sign(keys[6], {
                "type": 4, "nonce": nonce_of(chain, w.addr(6)), "maxFeePerGas": 100 * GWEI,
                "maxPriorityFeePerGas": 5 * GWEI, "gas": 200_000, "to": w.addr(5),
                "data": calldata("set(uint256)", 5), "authorizationList": [w.auth],
            }))
            put("fill", legacy(chain, keys[0], gas_price=4 * GWEI, gas=300_000, to=probe_addr,
                               data=calldata("fill(uint256)", 4)))
            seal(chain)
            seal(chain)  # block 4: empty
            yield w
    finally:
        stop_node(node, thread)


@pytest.fixture(scope="module")
def dev_keys() -> list[str]:
    from openledger_node.devkeys import DEV_ACCOUNTS

    return [key for _, key in DEV_ACCOUNTS]


def test_world_history_is_as_documented(world: World) -> None:
    """Guards the layout the other tests rely on."""
    assert q(world.rpc("eth_blockNumber")) == 4
    layout = {1: ["deploy_probe", "deploy_token"], 2: ["legacy_set", "access_list", "dynamic_set", "failed"],
              3: ["set_code", "fill"], 4: []}
    for number, names in layout.items():
        assert world.block(number)["transactions"] == [world.txs[n] for n in names], f"block {number}"


# ------------------------------------------------------------------ client and chain


def test_web3_client_version_names_the_client_and_its_version(world: World) -> None:
    from openledger_node import __version__

    version = world.rpc("web3_clientVersion")
    assert version.startswith(f"openledger-node/v{__version__}/")


def test_net_version_is_the_chain_id_in_decimal(world: World) -> None:
    assert world.rpc("net_version") == str(CHAIN_ID)


def test_eth_chain_id_is_the_chain_id_as_a_quantity(world: World) -> None:
    assert world.rpc("eth_chainId") == "0x64c"


def test_eth_block_number_is_the_head(world: World) -> None:
    assert world.rpc("eth_blockNumber") == "0x4"
    assert world.rpc("eth_getBlockByNumber", "latest", False)["number"] == "0x4"


def test_eth_syncing_is_false_for_the_sequencer(world: World) -> None:
    assert world.rpc("eth_syncing") is False


def test_eth_block_number_advances_when_a_block_is_sealed(devnet: RunningNode, dev_keys) -> None:
    before = q(devnet.rpc("eth_blockNumber"))
    devnet.wait_receipt(send(devnet, eip1559(devnet, dev_keys[0], to=RECIPIENT, value=1, gas=21_000)))
    assert q(devnet.rpc("eth_blockNumber")) == before + 1


# ---------------------------------------------------------------------------- blocks


def test_block_has_geths_field_set_with_canonical_quantities(world: World) -> None:
    block = world.block(2)
    assert set(block) == BLOCK_FIELDS
    for key in BLOCK_QUANTITIES:
        q(block[key])
    assert block["number"] == "0x2"
    assert block["uncles"] == [] and block["withdrawals"] == []
    assert len(block["hash"]) == 66 and len(block["logsBloom"]) == 2 + 512 and len(block["nonce"]) == 18


def test_blocks_link_to_their_parent_by_hash(world: World) -> None:
    for number in range(1, 5):
        assert world.block(number)["parentHash"] == world.block(number - 1)["hash"]


def test_block_gas_used_is_the_last_receipts_cumulative_gas(world: World) -> None:
    receipts = world.rpc("eth_getBlockReceipts", "0x2")
    assert world.block(2)["gasUsed"] == receipts[-1]["cumulativeGasUsed"]


def test_block_by_number_without_full_transactions_lists_hashes(world: World) -> None:
    hashes = world.block(2)["transactions"]
    assert hashes == [world.txs[n] for n in ("legacy_set", "access_list", "dynamic_set", "failed")]


def test_block_by_number_with_full_transactions_lists_the_transaction_objects(world: World) -> None:
    block = world.block(2, full=True)
    assert [tx["hash"] for tx in block["transactions"]] == world.block(2)["transactions"]
    for tx in block["transactions"]:
        assert tx == world.rpc("eth_getTransactionByHash", tx["hash"])


def test_block_by_hash_equals_block_by_number(world: World) -> None:
    for full in (False, True):
        by_number = world.block(2, full)
        assert world.rpc("eth_getBlockByHash", by_number["hash"], full) == by_number


@pytest.mark.parametrize("tag", ["latest", "pending", "safe", "finalized"])
def test_head_tags_give_the_head_block(world: World, tag: str) -> None:
    # One sequencer and no L1 finality tracking yet: safe, finalized and pending are the head.
    assert world.rpc("eth_getBlockByNumber", tag, False) == world.block(4)


def test_earliest_gives_the_genesis_block(world: World) -> None:
    genesis = world.rpc("eth_getBlockByNumber", "earliest", False)
    assert genesis["number"] == "0x0" and genesis["parentHash"] == ZERO_HASH
    assert genesis == world.block(0)


def test_block_beyond_the_head_is_null(world: World) -> None:
    assert world.rpc("eth_getBlockByNumber", "0x3e8", True) is None


@pytest.mark.parametrize("block_hash", [ZERO_HASH, "0x" + "00" * 28 + "deadbeef"])
def test_block_by_unknown_hash_is_null(world: World, block_hash: str) -> None:
    assert world.rpc("eth_getBlockByHash", block_hash, True) is None


def test_empty_block_has_no_transactions_and_the_empty_roots(world: World) -> None:
    block = world.block(4)
    empty_trie = "0x56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421"
    assert block["transactions"] == [] and block["gasUsed"] == "0x0"
    assert block["transactionsRoot"] == empty_trie and block["receiptsRoot"] == empty_trie


def test_block_base_fee_follows_eip1559_from_the_parent(world: World) -> None:
    for number in range(1, 5):
        parent, block = world.block(number - 1), world.block(number)
        base, used, target = q(parent["baseFeePerGas"]), q(parent["gasUsed"]), q(parent["gasLimit"]) // 2
        if used >= target:
            expected = base + max(1, base * (used - target) // target // 8)
        else:
            expected = base - base * (target - used) // target // 8
        assert q(block["baseFeePerGas"]) == expected, f"block {number}"


def test_block_transaction_count_by_number(world: World) -> None:
    assert world.rpc("eth_getBlockTransactionCountByNumber", "0x2") == "0x4"
    assert world.rpc("eth_getBlockTransactionCountByNumber", "0x4") == "0x0"
    assert world.rpc("eth_getBlockTransactionCountByNumber", "earliest") == "0x0"


def test_block_transaction_count_by_hash(world: World) -> None:
    assert world.rpc("eth_getBlockTransactionCountByHash", world.block(3)["hash"]) == "0x2"


def test_block_transaction_count_of_unknown_block_is_null(world: World) -> None:
    assert world.rpc("eth_getBlockTransactionCountByNumber", "0x3e8") is None
    assert world.rpc("eth_getBlockTransactionCountByHash", ZERO_HASH) is None


# ---------------------------------------------------------------------- transactions


def test_legacy_transaction_has_geths_fields_with_eip155_v(world: World, dev_keys) -> None:
    tx = world.tx("legacy_set")
    assert set(tx) == LEGACY_TX_FIELDS
    for key in TX_QUANTITIES & set(tx):
        q(tx[key])
    assert tx["type"] == "0x0" and tx["chainId"] == "0x64c"
    assert q(tx["v"]) in (CHAIN_ID * 2 + 35, CHAIN_ID * 2 + 36)
    assert tx["gasPrice"] == hex(50 * GWEI)
    assert tx["from"] == world.addr(0) and tx["to"] == world.probe
    assert tx["input"] == calldata("set(uint256)", 9)
    assert tx["nonce"] == "0x1" and tx["value"] == "0x0" and tx["gas"] == hex(100_000)
    assert tx["blockNumber"] == "0x2" and tx["transactionIndex"] == "0x0"
    assert tx["blockHash"] == world.block(2)["hash"]


def test_access_list_transaction_echoes_its_access_list(world: World) -> None:
    tx = world.tx("access_list")
    assert set(tx) == ACCESS_LIST_TX_FIELDS
    for key in TX_QUANTITIES & set(tx):
        q(tx[key])
    assert tx["type"] == "0x1" and tx["chainId"] == "0x64c"
    assert tx["accessList"] == [{"address": world.probe, "storageKeys": [word(0)]}]
    assert tx["v"] == tx["yParity"] and tx["yParity"] in ("0x0", "0x1")
    assert tx["value"] == hex(ETHER) and tx["to"] == RECIPIENT and tx["transactionIndex"] == "0x1"


def test_dynamic_fee_transaction_reports_its_fee_caps_and_effective_gas_price(world: World) -> None:
    tx = world.tx("dynamic_set")
    assert set(tx) == DYNAMIC_FEE_TX_FIELDS
    for key in TX_QUANTITIES & set(tx):
        q(tx[key])
    base_fee = q(world.block(2)["baseFeePerGas"])
    assert tx["type"] == "0x2" and tx["accessList"] == []
    assert tx["maxFeePerGas"] == hex(100 * GWEI) and tx["maxPriorityFeePerGas"] == hex(30 * GWEI)
    assert q(tx["gasPrice"]) == base_fee + 30 * GWEI  # mined: the price actually paid
    assert tx["v"] == tx["yParity"]


def test_set_code_transaction_lists_its_signed_authorizations(world: World) -> None:
    tx = world.tx("set_code")
    assert set(tx) == SET_CODE_TX_FIELDS
    auth = world.auth
    assert tx["type"] == "0x4" and tx["to"] == world.addr(5)
    assert tx["authorizationList"] == [{
        "chainId": hex(CHAIN_ID), "address": world.probe, "nonce": "0x0",
        "yParity": hex(auth.y_parity), "r": hex(auth.r), "s": hex(auth.s),
    }]


def test_transaction_signature_values_match_the_signed_raw_transaction(world: World, dev_keys) -> None:
    signed = Account.sign_transaction(
        {"chainId": CHAIN_ID, "nonce": 1, "gasPrice": 50 * GWEI, "gas": 100_000,
         "to": to_checksum_address(world.probe), "value": 0, "data": calldata("set(uint256)", 9)}, dev_keys[0])
    tx = world.tx("legacy_set")
    assert (q(tx["v"]), q(tx["r"]), q(tx["s"])) == (signed.v, signed.r, signed.s)


def test_contract_creation_transaction_has_null_to(world: World) -> None:
    assert world.tx("deploy_probe")["to"] is None


def test_unknown_transaction_is_null(world: World) -> None:
    assert world.rpc("eth_getTransactionByHash", "0x" + "ab" * 32) is None


def test_transaction_by_block_number_and_index_equals_by_hash(world: World) -> None:
    for index, name in enumerate(["legacy_set", "access_list", "dynamic_set", "failed"]):
        assert world.rpc("eth_getTransactionByBlockNumberAndIndex", "0x2", hex(index)) == world.tx(name)


def test_transaction_by_block_hash_and_index_equals_by_hash(world: World) -> None:
    block_hash = world.block(3)["hash"]
    assert world.rpc("eth_getTransactionByBlockHashAndIndex", block_hash, "0x1") == world.tx("fill")


def test_transaction_index_past_the_block_end_is_null(world: World) -> None:
    assert world.rpc("eth_getTransactionByBlockNumberAndIndex", "0x2", "0x4") is None
    assert world.rpc("eth_getTransactionByBlockHashAndIndex", world.block(4)["hash"], "0x0") is None


def test_transaction_in_unknown_block_is_null(world: World) -> None:
    assert world.rpc("eth_getTransactionByBlockNumberAndIndex", "0x3e8", "0x0") is None
    assert world.rpc("eth_getTransactionByBlockHashAndIndex", ZERO_HASH, "0x0") is None


def test_pending_transaction_has_null_block_fields_and_its_fee_cap_as_gas_price(idle: RunningNode, dev_keys) -> None:
    raw = eip1559(idle, dev_keys[0], tip=2 * GWEI, max_fee=7 * GWEI, to=RECIPIENT, value=5, gas=21_000)
    tx = idle.rpc("eth_getTransactionByHash", send(idle, raw))
    assert set(tx) == DYNAMIC_FEE_TX_FIELDS
    assert tx["blockHash"] is None and tx["blockNumber"] is None and tx["transactionIndex"] is None
    assert tx["gasPrice"] == hex(7 * GWEI)
    assert tx["from"] == address_of(dev_keys[0]) and tx["to"] == RECIPIENT and tx["value"] == "0x5"


def test_pending_legacy_transaction_reports_its_gas_price(idle: RunningNode, dev_keys) -> None:
    tx = idle.rpc("eth_getTransactionByHash", send(idle, legacy(idle, dev_keys[0], gas_price=3 * GWEI, to=RECIPIENT)))
    assert set(tx) == LEGACY_TX_FIELDS and tx["gasPrice"] == hex(3 * GWEI) and tx["blockNumber"] is None


def test_pending_transaction_has_no_receipt(idle: RunningNode, dev_keys) -> None:
    tx_hash = send(idle, eip1559(idle, dev_keys[0], to=RECIPIENT, gas=21_000))
    assert idle.rpc("eth_getTransactionReceipt", tx_hash) is None


def test_sealed_pending_transaction_gets_its_block_fields(idle: RunningNode, dev_keys) -> None:
    tx_hash = send(idle, eip1559(idle, dev_keys[0], to=RECIPIENT, gas=21_000))
    block = seal(idle)
    tx = idle.rpc("eth_getTransactionByHash", tx_hash)
    assert (tx["blockHash"], tx["blockNumber"], tx["transactionIndex"]) == (block["hash"], block["number"], "0x0")


# -------------------------------------------------------------------------- receipts


def test_receipt_has_geths_field_set_with_canonical_quantities(world: World) -> None:
    for name in world.txs:
        receipt = world.receipt(name)
        assert set(receipt) == RECEIPT_FIELDS, name
        for key in RECEIPT_QUANTITIES:
            q(receipt[key])
        assert receipt["transactionHash"] == world.txs[name]


def test_receipt_status_is_1_for_success_and_0_for_a_reverted_transaction(world: World) -> None:
    assert world.receipt("legacy_set")["status"] == "0x1"
    failed = world.receipt("failed")
    assert failed["status"] == "0x0" and failed["logs"] == []
    assert 21_000 < q(failed["gasUsed"]) < 100_000  # a revert refunds the gas left


def test_receipt_of_a_deployment_names_the_created_contract(world: World, probe_artifact) -> None:
    receipt = world.receipt("deploy_probe")
    assert receipt["to"] is None and receipt["contractAddress"] == world.probe
    assert world.rpc("eth_getCode", world.probe, "latest") == probe_artifact["deployedBytecode"]


def test_receipt_of_a_call_has_null_contract_address(world: World) -> None:
    assert world.receipt("legacy_set")["contractAddress"] is None


def test_receipt_gas_used_is_per_transaction_and_cumulative_is_the_running_sum(world: World) -> None:
    running = 0
    for name in ["legacy_set", "access_list", "dynamic_set", "failed"]:
        receipt = world.receipt(name)
        running += q(receipt["gasUsed"])
        assert q(receipt["cumulativeGasUsed"]) == running, name
    assert q(world.receipt("access_list")["gasUsed"]) == 21_000 + 2_400 + 1_900  # EIP-2930 figures


def test_receipt_logs_carry_their_block_and_a_block_wide_log_index(world: World) -> None:
    block = world.block(2)
    first, second = world.receipt("legacy_set")["logs"], world.receipt("dynamic_set")["logs"]
    assert [log["logIndex"] for log in first + second] == ["0x0", "0x1", "0x2", "0x3"]
    for log, tx_name, index in [(first[0], "legacy_set", "0x0"), (second[1], "dynamic_set", "0x2")]:
        assert set(log) == LOG_FIELDS
        assert log["blockHash"] == block["hash"] and log["blockNumber"] == "0x2"
        assert log["blockTimestamp"] == block["timestamp"]
        assert log["transactionHash"] == world.txs[tx_name] and log["transactionIndex"] == index
        assert log["removed"] is False and log["address"] == world.probe


def test_receipt_log_topics_and_data_are_the_emitted_event(world: World) -> None:
    value_set, ping = world.receipt("dynamic_set")["logs"]
    assert value_set["topics"] == ["0x" + keccak(text="ValueSet(address,uint256)").hex(),
                                   "0x" + "00" * 12 + world.addr(2)[2:]]
    assert value_set["data"] == word(11)
    assert ping["topics"] == ["0x" + keccak(text="Ping(uint256)").hex()] and ping["data"] == word(11)


def test_receipt_logs_bloom_contains_the_log_address_and_topics(world: World) -> None:
    receipt = world.receipt("legacy_set")
    bloom = int(receipt["logsBloom"], 16)
    for item in [world.probe] + receipt["logs"][0]["topics"]:
        digest = keccak(hexstr=item)
        for i in (0, 2, 4):
            bit = ((digest[i] << 8) | digest[i + 1]) & 2047
            assert bloom >> bit & 1, item
    assert world.receipt("access_list")["logsBloom"] == "0x" + "00" * 256


def test_receipt_effective_gas_price_is_what_the_transaction_paid(world: World) -> None:
    base_fee = q(world.block(2)["baseFeePerGas"])
    assert world.receipt("legacy_set")["effectiveGasPrice"] == hex(50 * GWEI)
    assert world.receipt("access_list")["effectiveGasPrice"] == hex(40 * GWEI)
    assert q(world.receipt("dynamic_set")["effectiveGasPrice"]) == base_fee + 30 * GWEI


def test_receipt_type_matches_the_transaction_type(world: World) -> None:
    types = {"legacy_set": "0x0", "access_list": "0x1", "dynamic_set": "0x2", "set_code": "0x4"}
    for name, type_ in types.items():
        assert world.receipt(name)["type"] == type_, name


def test_set_code_receipt_is_addressed_to_the_authority(world: World) -> None:
    receipt = world.receipt("set_code")
    assert receipt["status"] == "0x1" and receipt["to"] == world.addr(5)
    assert [log["address"] for log in receipt["logs"]] == [world.addr(5)] * 2  # the delegated code ran there


def test_unknown_transaction_receipt_is_null(world: World) -> None:
    assert world.rpc("eth_getTransactionReceipt", "0x" + "ab" * 32) is None


def test_block_receipts_are_the_receipts_of_its_transactions_in_order(world: World) -> None:
    expected = [world.receipt(n) for n in ["legacy_set", "access_list", "dynamic_set", "failed"]]
    assert world.rpc("eth_getBlockReceipts", "0x2") == expected


def test_block_receipts_by_hash_equal_by_number(world: World) -> None:
    assert world.rpc("eth_getBlockReceipts", world.block(3)["hash"]) == world.rpc("eth_getBlockReceipts", "0x3")
    assert world.rpc("eth_getBlockReceipts", {"blockHash": world.block(3)["hash"]}) == world.rpc(
        "eth_getBlockReceipts", "0x3")


def test_block_receipts_of_an_empty_block_is_an_empty_list(world: World) -> None:
    assert world.rpc("eth_getBlockReceipts", "latest") == []
    assert world.rpc("eth_getBlockReceipts", "earliest") == []


def test_block_receipts_of_an_unknown_block_is_null(world: World) -> None:
    assert world.rpc("eth_getBlockReceipts", "0x5") is None
    assert world.rpc("eth_getBlockReceipts", "0x" + "00" * 28 + "deadbeef") is None


# ---------------------------------------------------------------------------- state


def test_transaction_count_is_the_account_nonce_at_each_block(world: World) -> None:
    sender = world.addr(0)
    assert [nonce_of(world.chain, sender, b) for b in ("0x0", "0x1", "0x2", "0x3")] == [0, 1, 2, 3]
    assert world.rpc("eth_getTransactionCount", sender, "latest") == "0x3"
    assert world.rpc("eth_getTransactionCount", sender, "earliest") == "0x0"


def test_transaction_count_of_an_unknown_account_is_zero(world: World) -> None:
    assert world.rpc("eth_getTransactionCount", "0x" + "c1" * 20, "latest") == "0x0"


def test_transaction_count_counts_a_set_code_authorization(world: World) -> None:
    assert world.rpc("eth_getTransactionCount", world.addr(5), "0x2") == "0x0"
    assert world.rpc("eth_getTransactionCount", world.addr(5), "0x3") == "0x1"


def test_pending_transaction_count_includes_the_senders_pool_transactions(idle: RunningNode, dev_keys) -> None:
    sender = address_of(dev_keys[0])
    for _ in range(3):
        send(idle, eip1559(idle, dev_keys[0], to=RECIPIENT, gas=21_000))
    assert idle.rpc("eth_getTransactionCount", sender, "pending") == "0x3"
    assert idle.rpc("eth_getTransactionCount", sender, "latest") == "0x0"
    assert idle.rpc("eth_getTransactionCount", address_of(dev_keys[1]), "pending") == "0x0"


def test_pending_transaction_count_stops_at_a_nonce_gap(idle: RunningNode, dev_keys) -> None:
    sender = address_of(dev_keys[0])
    send(idle, sign(dev_keys[0], {"nonce": 0, "gasPrice": 10 * GWEI, "gas": 21_000, "to": RECIPIENT}))
    send(idle, sign(dev_keys[0], {"nonce": 2, "gasPrice": 10 * GWEI, "gas": 21_000, "to": RECIPIENT}))
    assert idle.rpc("eth_getTransactionCount", sender, "pending") == "0x1"


def test_pending_transaction_count_falls_back_to_the_state_nonce_once_sealed(idle: RunningNode, dev_keys) -> None:
    sender = address_of(dev_keys[0])
    send(idle, eip1559(idle, dev_keys[0], to=RECIPIENT, gas=21_000))
    send(idle, eip1559(idle, dev_keys[0], to=RECIPIENT, gas=21_000))
    seal(idle)
    assert idle.rpc("eth_getTransactionCount", sender, "latest") == "0x2"
    assert idle.rpc("eth_getTransactionCount", sender, "pending") == "0x2"


def test_balance_at_each_block_reflects_the_transfers_sealed_by_then(world: World) -> None:
    assert world.rpc("eth_getBalance", RECIPIENT, "0x1") == "0x0"
    assert world.rpc("eth_getBalance", RECIPIENT, "0x2") == hex(ETHER)
    assert world.rpc("eth_getBalance", RECIPIENT, "latest") == hex(ETHER)


def test_sender_pays_value_plus_gas_used_times_effective_gas_price(world: World) -> None:
    receipt = world.receipt("access_list")
    before = q(world.rpc("eth_getBalance", world.addr(1), "0x1"))
    after = q(world.rpc("eth_getBalance", world.addr(1), "0x2"))
    assert before - after == ETHER + q(receipt["gasUsed"]) * q(receipt["effectiveGasPrice"])


def test_balance_by_block_hash_follows_eip1898(world: World) -> None:
    block_hash = world.block(1)["hash"]
    expected = world.rpc("eth_getBalance", world.addr(1), "0x1")
    assert world.rpc("eth_getBalance", world.addr(1), {"blockHash": block_hash}) == expected
    assert world.rpc("eth_getBalance", world.addr(1), block_hash) == expected
    assert world.rpc("eth_getBalance", world.addr(1), {"blockNumber": "0x1"}) == expected


def test_balance_of_an_unknown_account_is_zero(world: World) -> None:
    assert world.rpc("eth_getBalance", "0x" + "c1" * 20, "latest") == "0x0"


def test_state_of_a_block_beyond_the_head_is_header_not_found(world: World) -> None:
    for method, params in [("eth_getBalance", [world.addr(0)]), ("eth_getCode", [world.probe]),
                           ("eth_getTransactionCount", [world.addr(0)]), ("eth_getStorageAt", [world.probe, "0x0"]),
                           ("eth_call", [{"to": world.probe, "input": calldata("value()")}])]:
        error = error_of(world.chain, method, *params, "0x3e8")
        assert (error["code"], error["message"]) == (-32000, "header not found"), method


def test_state_of_an_unknown_block_hash_is_an_error(world: World) -> None:
    error = error_of(world.chain, "eth_getBalance", world.addr(0), {"blockHash": "0x" + "ab" * 32})
    assert error["code"] == -32000 and "not found" in error["message"]


def test_code_is_empty_before_deployment_and_the_runtime_code_after(world: World, probe_artifact) -> None:
    assert world.rpc("eth_getCode", world.probe, "0x0") == "0x"
    assert world.rpc("eth_getCode", world.probe, "0x1") == probe_artifact["deployedBytecode"]


def test_code_of_an_account_without_code_is_empty(world: World) -> None:
    assert world.rpc("eth_getCode", world.addr(0), "latest") == "0x"
    assert world.rpc("eth_getCode", "0x" + "c1" * 20, "latest") == "0x"


def test_code_of_a_delegated_account_is_the_delegation_designator(world: World) -> None:
    assert world.rpc("eth_getCode", world.addr(5), "latest") == "0xef0100" + world.probe[2:]
    assert world.rpc("eth_getCode", world.addr(5), "0x2") == "0x"


def test_storage_is_a_32_byte_word_at_each_block(world: World) -> None:
    assert world.rpc("eth_getStorageAt", world.probe, word(0), "0x1") == word(7)
    assert world.rpc("eth_getStorageAt", world.probe, word(0), "0x2") == word(11)
    assert world.rpc("eth_getStorageAt", world.probe, word(0), "0x0") == word(0)


def test_storage_of_a_mapping_entry_is_at_its_keccak_slot(world: World) -> None:
    slot = keccak(abi_encode(["uint256", "uint256"], [2, 1]))  # cells[2], mapping at slot 1
    assert world.rpc("eth_getStorageAt", world.probe, "0x" + slot.hex(), "latest") == word(3)


def test_storage_slot_may_be_a_short_hex_number(world: World) -> None:
    # geth left-pads the key: "0x0" and "0x" are slot 0, odd lengths are fine.
    for slot in ("0x0", "0x", "0x00", "0x000"):
        assert world.rpc("eth_getStorageAt", world.probe, slot, "0x1") == word(7), slot


def test_storage_written_through_a_delegation_is_the_authoritys(world: World) -> None:
    assert world.rpc("eth_getStorageAt", world.addr(5), "0x0", "latest") == word(5)
    assert world.rpc("eth_getStorageAt", world.probe, "0x0", "latest") == word(11)


def test_storage_of_an_unknown_account_is_zero(world: World) -> None:
    assert world.rpc("eth_getStorageAt", "0x" + "c1" * 20, "0x" + "01" + "00" * 31, "latest") == word(0)


def test_storage_key_longer_than_32_bytes_is_rejected_like_geth(world: World) -> None:
    error = error_of(world.chain, "eth_getStorageAt", world.probe, "0x" + "00" * 32 + "0", "latest")
    assert error == {"code": -32000,
                     "message": "unable to decode storage key: hex string too long, want at most 32 bytes"}


def test_storage_key_that_is_not_hex_is_rejected_like_geth(world: World) -> None:
    error = error_of(world.chain, "eth_getStorageAt", world.probe, "0xasdf", "latest")
    assert error == {"code": -32000, "message": "unable to decode storage key: hex string invalid"}


# ---------------------------------------------------------------------------- eth_call


def call_value(world: World, block: Any = "latest", overrides: Any = None, to: str | None = None) -> int:
    params: list[Any] = [{"to": to or world.probe, "input": calldata("value()")}, block]
    if overrides is not None:
        params.append(overrides)
    return int(world.rpc("eth_call", *params), 16)


def test_call_returns_the_abi_encoded_result(world: World) -> None:
    assert world.rpc("eth_call", {"to": world.probe, "input": calldata("value()")}, "latest") == word(11)


def test_call_accepts_data_as_an_alias_of_input(world: World) -> None:
    assert world.rpc("eth_call", {"to": world.probe, "data": calldata("value()")}, "latest") == word(11)


def test_call_defaults_to_the_latest_block(world: World) -> None:
    assert world.rpc("eth_call", {"to": world.probe, "input": calldata("value()")}) == word(11)


def test_call_at_an_earlier_block_sees_that_blocks_state(world: World) -> None:
    assert call_value(world, "0x1") == 7
    assert call_value(world, "0x2") == 11
    assert call_value(world, {"blockHash": world.block(1)["hash"]}) == 7


def test_call_before_the_contract_existed_returns_empty_data(world: World) -> None:
    assert world.rpc("eth_call", {"to": world.probe, "input": calldata("value()")}, "0x0") == "0x"


def test_call_sees_the_caller_as_msg_sender(world: World) -> None:
    result = world.rpc("eth_call", {"from": world.addr(3), "to": world.probe,
                                    "input": calldata("senderBalance()")}, "latest")
    assert result == word(q(world.rpc("eth_getBalance", world.addr(3), "latest")))


def test_call_does_not_change_state(world: World) -> None:
    world.rpc("eth_call", {"from": world.addr(0), "to": world.probe, "input": calldata("set(uint256)", 99)}, "latest")
    assert call_value(world) == 11


def test_call_to_a_delegated_account_runs_the_delegated_code(world: World) -> None:
    assert call_value(world, "latest", to=world.addr(5)) == 5


def test_call_of_an_erc20_view(world: World) -> None:
    result = world.rpc("eth_call", {"to": world.token, "input": calldata("balanceOf(address)",
                                                                        to_checksum_address(world.addr(4)))})
    assert int(result, 16) == 1000 * ETHER


def test_call_with_a_balance_override_sees_that_balance(world: World) -> None:
    nobody = "0x" + "77" * 20
    result = world.rpc("eth_call", {"from": nobody, "to": world.probe, "input": calldata("senderBalance()")},
                       "latest", {nobody: {"balance": hex(12345)}})
    assert result == word(12345)


def test_call_with_a_code_override_runs_that_code(world: World, probe_artifact) -> None:
    elsewhere = "0x" + "42" * 20
    assert call_value(world, "latest", {elsewhere: {"code": probe_artifact["deployedBytecode"]}}, to=elsewhere) == 0


def test_call_with_a_state_override_replaces_all_storage(world: World) -> None:
    assert call_value(world, "latest", {world.probe: {"state": {word(0): word(42)}}}) == 42
    assert call_value(world, "latest", {world.probe: {"state": {word(5): word(1)}}}) == 0  # slot 0 wiped


def test_call_with_a_state_diff_override_changes_only_the_given_slots(world: World) -> None:
    assert call_value(world, "latest", {world.probe: {"stateDiff": {word(0): word(42)}}}) == 42
    assert call_value(world, "latest", {world.probe: {"stateDiff": {word(5): word(1)}}}) == 11


def test_call_overrides_do_not_persist(world: World) -> None:
    call_value(world, "latest", {world.probe: {"stateDiff": {word(0): word(42)}}})
    assert call_value(world) == 11


def test_call_override_with_both_state_and_state_diff_is_invalid(world: World) -> None:
    error = error_of(world.chain, "eth_call", {"to": world.probe, "input": calldata("value()")}, "latest",
                     {world.probe: {"state": {}, "stateDiff": {}}})
    assert error["code"] in (-32000, -32602) and "state" in error["message"]


def test_call_that_reverts_with_a_reason_is_error_3_with_the_reason(world: World) -> None:
    error = error_of(world.chain, "eth_call", {"to": world.probe, "input": calldata("failWithReason()")}, "latest")
    reason = abi_encode(["string"], ["probe: not allowed"])
    assert error == {"code": 3, "message": "execution reverted: probe: not allowed",
                     "data": selector("Error(string)") + reason.hex()}


def test_call_that_reverts_with_a_custom_error_returns_its_data(world: World) -> None:
    caller = world.addr(7)
    error = error_of(world.chain, "eth_call", {"from": caller, "to": world.probe,
                                               "input": calldata("failCustom(uint256)", 5)}, "latest")
    assert error["code"] == 3 and error["message"] == "execution reverted"
    assert error["data"] == calldata("Unauthorized(address,uint256)", to_checksum_address(caller), 5)
    assert abi_decode(["address", "uint256"], bytes.fromhex(error["data"][10:])) == (caller, 5)


def test_call_that_panics_names_the_panic(world: World) -> None:
    error = error_of(world.chain, "eth_call", {"to": world.probe, "input": calldata("failPanic()")}, "latest")
    assert error == {"code": 3, "message": "execution reverted: assert(false)",
                     "data": calldata("Panic(uint256)", 1)}


def test_call_that_reverts_without_data_has_empty_data(world: World) -> None:
    error = error_of(world.chain, "eth_call", {"to": world.probe, "input": calldata("failBare()")}, "latest")
    assert error == {"code": 3, "message": "execution reverted", "data": "0x"}


def test_call_that_runs_out_of_gas_is_a_server_error(world: World) -> None:
    error = error_of(world.chain, "eth_call", {"to": world.probe, "input": calldata("fill(uint256)", 50),
                                               "gas": hex(50_000)}, "latest")
    assert error["code"] == -32000 and "out of gas" in error["message"]


ENV_TYPES = ["uint256", "uint256", "uint256", "address", "uint256", "uint256"]


def call_env(world: World, block: str, **fields: Any) -> tuple:
    """RpcProbe.env(): (number, timestamp, chainid, coinbase, basefee, gasprice) seen by the call."""
    out = world.rpc("eth_call", {"to": world.probe, "input": calldata("env()"), **fields}, block)
    return abi_decode(ENV_TYPES, bytes.fromhex(out[2:]))


def test_call_runs_in_the_context_of_the_requested_block(world: World) -> None:
    for number in (2, 4):
        block = world.block(number)
        env = call_env(world, hex(number))
        assert env[:4] == (number, q(block["timestamp"]), CHAIN_ID, block["miner"]), number


def test_call_without_fee_fields_runs_with_zero_base_fee_and_gas_price(world: World) -> None:
    # geth's NoBaseFee: a call from an account without funds still works
    assert call_env(world, "latest")[4:] == (0, 0)
    assert call_env(world, "latest", **{"from": "0x" + "77" * 20})[4:] == (0, 0)


def test_call_with_fee_fields_sees_the_block_base_fee_and_its_gas_price(world: World) -> None:
    base_fee = q(world.block(4)["baseFeePerGas"])
    dynamic = {"from": world.addr(0), "maxFeePerGas": hex(base_fee + 5), "maxPriorityFeePerGas": "0x2"}
    assert call_env(world, "0x4", **dynamic)[4:] == (base_fee, base_fee + 2)
    assert call_env(world, "0x4", **{"from": world.addr(0), "gasPrice": hex(base_fee + 7)})[4:] == (base_fee,
                                                                                                   base_fee + 7)


def test_call_with_both_gas_price_and_fee_caps_is_invalid(world: World) -> None:
    error = error_of(world.chain, "eth_call", {"to": world.probe, "gasPrice": "0x1", "maxFeePerGas": "0x1"}, "latest")
    assert error["code"] == -32602


# ----------------------------------------------------------------------- eth_estimateGas


def test_estimate_gas_of_a_plain_transfer_is_21000(world: World) -> None:
    assert world.rpc("eth_estimateGas", {"from": world.addr(0), "to": RECIPIENT, "value": "0x1"}) == "0x5208"
    assert world.rpc("eth_estimateGas", {"from": "0x" + "aa" * 20, "to": RECIPIENT}) == "0x5208"


def test_estimate_gas_of_a_contract_call_is_more_than_21000(world: World) -> None:
    estimate = q(world.rpc("eth_estimateGas", {"from": world.addr(0), "to": world.probe,
                                               "input": calldata("set(uint256)", 12)}))
    assert 21_000 < estimate < 100_000


@pytest.mark.parametrize("call", [calldata("nested(uint256)", 6), calldata("clear(uint256)", 4),
                                  calldata("fill(uint256)", 8), calldata("set(uint256)", 12)],
                         ids=["63/64-rule", "refund", "storage-loop", "simple"])
def test_estimate_gas_is_the_least_gas_that_succeeds(world: World, call: str) -> None:
    tx = {"from": world.addr(0), "to": world.probe, "input": call}
    estimate = q(world.rpc("eth_estimateGas", tx))
    assert world.rpc("eth_call", {**tx, "gas": hex(estimate)}, "latest") == "0x"
    # one gas less fails: out of gas (-32000), or a revert (3) where a sub-call ran out
    error = error_of(world.chain, "eth_call", {**tx, "gas": hex(estimate - 1)}, "latest")
    assert error["code"] in (-32000, 3)


def test_estimate_gas_of_a_deployment_covers_the_init_code(world: World, probe_artifact) -> None:
    deploy = {"from": world.addr(0), "input": probe_artifact["bytecode"] + abi_encode(["uint256"], [1]).hex()}
    estimate = q(world.rpc("eth_estimateGas", deploy))
    assert estimate > 53_000
    assert world.rpc("eth_call", {**deploy, "gas": hex(estimate)}, "latest") == probe_artifact["deployedBytecode"]


def test_estimate_gas_of_a_reverting_call_is_error_3_with_the_revert_data(world: World) -> None:
    error = error_of(world.chain, "eth_estimateGas", {"from": world.addr(0), "to": world.probe,
                                                      "input": calldata("failWithReason()")})
    assert error["code"] == 3 and error["message"] == "execution reverted: probe: not allowed"
    assert error["data"] == selector("Error(string)") + abi_encode(["string"], ["probe: not allowed"]).hex()


def test_estimate_gas_of_a_custom_error_is_error_3_with_its_data(world: World) -> None:
    error = error_of(world.chain, "eth_estimateGas", {"from": world.addr(0), "to": world.probe,
                                                      "input": calldata("failCustom(uint256)", 9)})
    assert error["code"] == 3
    assert error["data"] == calldata("Unauthorized(address,uint256)", to_checksum_address(world.addr(0)), 9)


def test_estimate_gas_at_an_earlier_block_uses_that_state(world: World) -> None:
    tx = {"from": world.addr(0), "to": world.probe, "input": calldata("value()")}
    # no code there yet: calldata only, and Prague's EIP-7623 floor (21000 + 10 * 16 tokens) beats 21000 + 4 * 16
    assert world.rpc("eth_estimateGas", tx, "0x0") == hex(21_000 + 10 * 16)
    assert q(world.rpc("eth_estimateGas", tx, "latest")) > 21_000


def test_estimate_gas_with_a_gas_cap_too_low_is_an_error(world: World) -> None:
    error = error_of(world.chain, "eth_estimateGas", {"from": world.addr(0), "to": world.probe, "gas": hex(30_000),
                                                      "input": calldata("fill(uint256)", 10)})
    assert error["code"] == -32000


def test_estimate_gas_of_a_call_with_value_beyond_the_balance_is_an_error(world: World) -> None:
    error = error_of(world.chain, "eth_estimateGas", {"from": world.addr(0), "to": world.probe,
                                                      "input": calldata("set(uint256)", 1), "value": hex(10**40)})
    assert error["code"] == -32000 and "insufficient funds" in error["message"]


def test_estimate_gas_of_a_transfer_beyond_the_balance_is_an_error(world: World) -> None:
    error = error_of(world.chain, "eth_estimateGas", {"from": "0x" + "77" * 20, "to": RECIPIENT, "value": "0x1"})
    assert error["code"] == -32000 and "insufficient funds" in error["message"]


def test_estimate_gas_of_a_calldata_heavy_transfer_is_the_eip7623_floor(world: World) -> None:
    data = "0x" + "ab" * 1000  # 4000 tokens: floor 21000 + 10 * 4000 > 21000 + 16 * 1000
    estimate = world.rpc("eth_estimateGas", {"from": world.addr(0), "to": RECIPIENT, "input": data})
    assert estimate == hex(21_000 + 10 * 4 * 1000)


def test_estimate_gas_of_a_transfer_with_an_access_list_includes_its_cost(world: World) -> None:
    access_list = [{"address": world.probe, "storageKeys": [word(0)]}]
    estimate = world.rpc("eth_estimateGas", {"from": world.addr(0), "to": RECIPIENT, "accessList": access_list})
    assert estimate == hex(21_000 + 2_400 + 1_900)


def test_estimate_gas_with_an_authorization_list_includes_its_cost(world: World) -> None:
    auth = {"chainId": hex(CHAIN_ID), "address": world.probe, "nonce": "0x0", "yParity": "0x0",
            "r": "0x" + "11" * 32, "s": "0x" + "22" * 32}
    estimate = world.rpc("eth_estimateGas", {"from": world.addr(7), "to": RECIPIENT, "type": "0x4",
                                             "authorizationList": [auth]})
    assert q(estimate) >= 21_000 + 25_000


@pytest.mark.parametrize("call", [calldata("nested(uint256)", 6), calldata("set(uint256)", 3),
                                  calldata("fill(uint256)", 3)])
def test_transaction_sent_with_exactly_the_estimated_gas_succeeds(devnet: RunningNode, dev_keys, probe_artifact,
                                                                 call: str) -> None:
    deploy = eip1559(devnet, dev_keys[0], gas=1_000_000,
                     data=probe_artifact["bytecode"] + abi_encode(["uint256"], [1]).hex())
    probe = devnet.wait_receipt(send(devnet, deploy))["contractAddress"]
    sender = address_of(dev_keys[1])
    estimate = q(devnet.rpc("eth_estimateGas", {"from": sender, "to": probe, "input": call}))
    receipt = devnet.wait_receipt(send(devnet, eip1559(devnet, dev_keys[1], gas=estimate, to=probe, data=call)))
    assert receipt["status"] == "0x1"


def test_refund_heavy_transaction_sent_with_the_estimate_succeeds(devnet: RunningNode, dev_keys,
                                                                  probe_artifact) -> None:
    deploy = eip1559(devnet, dev_keys[0], gas=1_000_000,
                     data=probe_artifact["bytecode"] + abi_encode(["uint256"], [1]).hex())
    probe = devnet.wait_receipt(send(devnet, deploy))["contractAddress"]
    fill = calldata("fill(uint256)", 10)
    devnet.wait_receipt(send(devnet, eip1559(devnet, dev_keys[0], gas=500_000, to=probe, data=fill)))
    clear = calldata("clear(uint256)", 10)
    estimate = q(devnet.rpc("eth_estimateGas", {"from": address_of(dev_keys[1]), "to": probe, "input": clear}))
    receipt = devnet.wait_receipt(send(devnet, eip1559(devnet, dev_keys[1], gas=estimate, to=probe, data=clear)))
    assert receipt["status"] == "0x1" and q(receipt["gasUsed"]) < estimate  # the refund came back


def test_token_transfer_sent_with_exactly_the_estimated_gas_succeeds(devnet: RunningNode, dev_keys) -> None:
    token = contract_artifact("TestToken")
    deploy = eip1559(devnet, dev_keys[0], gas=3_000_000,
                     data=token["bytecode"] + abi_encode(["uint256"], [1000 * ETHER]).hex())
    address = devnet.wait_receipt(send(devnet, deploy))["contractAddress"]
    transfer = calldata("transfer(address,uint256)", to_checksum_address(RECIPIENT), 5 * ETHER)
    estimate = q(devnet.rpc("eth_estimateGas", {"from": address_of(dev_keys[0]), "to": address, "input": transfer}))
    receipt = devnet.wait_receipt(send(devnet, legacy(devnet, dev_keys[0], gas=estimate, to=address, data=transfer)))
    assert receipt["status"] == "0x1" and q(receipt["gasUsed"]) == estimate
    balance = devnet.rpc("eth_call", {"to": address, "input": calldata("balanceOf(address)",
                                                                      to_checksum_address(RECIPIENT))})
    assert int(balance, 16) == 5 * ETHER


# ----------------------------------------------------------------------------- fees


def test_gas_price_covers_the_next_base_fee_plus_the_suggested_tip(world: World) -> None:
    gas_price = q(world.rpc("eth_gasPrice"))
    tip = q(world.rpc("eth_maxPriorityFeePerGas"))
    assert tip > 0
    assert gas_price >= next_base_fee(world.chain) + tip


def test_legacy_transaction_priced_at_eth_gas_price_is_sealed(devnet: RunningNode, dev_keys) -> None:
    gas_price = q(devnet.rpc("eth_gasPrice"))
    raw = legacy(devnet, dev_keys[0], gas_price=gas_price, to=RECIPIENT, gas=21_000)
    assert devnet.wait_receipt(send(devnet, raw))["status"] == "0x1"


def test_suggested_tip_follows_the_tips_recently_paid(world: World) -> None:
    # world's blocks paid tips between 2 and ~49 gwei: the suggestion is in that range
    assert 1 * GWEI <= q(world.rpc("eth_maxPriorityFeePerGas")) <= 50 * GWEI


def test_fee_history_has_one_entry_per_block_and_the_next_base_fee(world: World) -> None:
    history = world.rpc("eth_feeHistory", "0x3", "latest", [])
    assert set(history) == {"oldestBlock", "baseFeePerGas", "gasUsedRatio", "baseFeePerBlobGas", "blobGasUsedRatio"}
    assert history["oldestBlock"] == "0x2"
    assert len(history["baseFeePerGas"]) == 4 and len(history["gasUsedRatio"]) == 3
    assert len(history["baseFeePerBlobGas"]) == 4 and len(history["blobGasUsedRatio"]) == 3
    assert history["baseFeePerGas"][:3] == [world.block(n)["baseFeePerGas"] for n in (2, 3, 4)]
    for value in history["baseFeePerGas"] + history["baseFeePerBlobGas"]:
        q(value)


def test_fee_history_blob_fees_are_the_minimum_on_a_chain_without_blobs(world: World) -> None:
    history = world.rpc("eth_feeHistory", "0x3", "latest", [])
    assert history["baseFeePerBlobGas"] == ["0x1"] * 4  # Prague blocks, excess blob gas 0
    assert history["blobGasUsedRatio"] == [0, 0, 0]
    assert world.rpc("eth_blobBaseFee") == "0x1"


def test_fee_history_gas_used_ratio_is_gas_used_over_gas_limit(world: World) -> None:
    history = world.rpc("eth_feeHistory", "0x2", "0x2", [])
    assert history["oldestBlock"] == "0x1"
    for ratio, number in zip(history["gasUsedRatio"], (1, 2)):
        block = world.block(number)
        assert ratio == pytest.approx(q(block["gasUsed"]) / q(block["gasLimit"]))


def test_fee_history_last_base_fee_is_the_next_blocks(world: World) -> None:
    history = world.rpc("eth_feeHistory", "0x1", "0x1", [])
    assert history["baseFeePerGas"] == [world.block(1)["baseFeePerGas"], world.block(2)["baseFeePerGas"]]


def test_fee_history_accepts_a_decimal_block_count(world: World) -> None:
    assert world.rpc("eth_feeHistory", 2, "latest", [])["oldestBlock"] == "0x3"
    assert world.rpc("eth_feeHistory", "2", "latest", [])["oldestBlock"] == "0x3"


def test_fee_history_longer_than_the_chain_starts_at_genesis(world: World) -> None:
    history = world.rpc("eth_feeHistory", "0x64", "latest", [])
    assert history["oldestBlock"] == "0x0" and len(history["gasUsedRatio"]) == 5


def test_fee_history_rewards_are_the_gas_weighted_tip_percentiles(world: World) -> None:
    percentiles = [0, 10, 25, 50, 75, 90, 100]
    history = world.rpc("eth_feeHistory", "0x1", "0x2", percentiles)
    block = world.block(2, full=True)
    base_fee = q(block["baseFeePerGas"])
    receipts = world.rpc("eth_getBlockReceipts", "0x2")
    tips = []
    for tx, receipt in zip(block["transactions"], receipts):
        fee_cap = q(tx.get("maxFeePerGas", tx["gasPrice"]))
        tip_cap = q(tx.get("maxPriorityFeePerGas", tx["gasPrice"]))
        tips.append((min(tip_cap, fee_cap - base_fee), q(receipt["gasUsed"])))
    tips.sort()
    expected, index, total = [], 0, tips[0][1]  # geth's eth/gasprice/feehistory.go
    for p in percentiles:
        threshold = int(q(block["gasUsed"]) * p / 100)
        while total < threshold and index < len(tips) - 1:
            index += 1
            total += tips[index][1]
        expected.append(hex(tips[index][0]))
    assert history["reward"] == [expected]
    assert expected[0] == hex(20 * GWEI) and expected[-1] == hex(50 * GWEI - base_fee)


def test_fee_history_rewards_of_an_empty_block_are_zero(world: World) -> None:
    assert world.rpc("eth_feeHistory", "0x1", "0x4", [10, 90])["reward"] == [["0x0", "0x0"]]


def test_fee_history_without_percentiles_has_no_rewards(world: World) -> None:
    assert "reward" not in world.rpc("eth_feeHistory", "0x2", "latest", [])
    assert "reward" not in world.rpc("eth_feeHistory", "0x2", "latest")


def test_fee_history_percentiles_must_increase_within_0_to_100(world: World) -> None:
    for bad in ([50, 10], [101], [-1]):
        error = error_of(world.chain, "eth_feeHistory", "0x2", "latest", bad)
        assert error["code"] == -32000 and "invalid reward percentile" in error["message"], bad


def test_fee_history_beyond_the_head_is_an_error(world: World) -> None:
    error = error_of(world.chain, "eth_feeHistory", "0x1", "0x3e8", [])
    assert error["code"] == -32000 and "request beyond head block" in error["message"]


def test_fee_history_of_zero_blocks_is_empty(world: World) -> None:
    history = world.rpc("eth_feeHistory", "0x0", "latest", [])
    assert history["oldestBlock"] == "0x0" and not history["gasUsedRatio"]


# --------------------------------------------------------------- eth_sendRawTransaction


def test_send_raw_transaction_returns_the_transaction_hash(idle: RunningNode, dev_keys) -> None:
    raws = [
        legacy(idle, dev_keys[0], to=RECIPIENT, gas=21_000),
        sign(dev_keys[1], {"type": 1, "nonce": 0, "gasPrice": 10 * GWEI, "gas": 21_000, "to": RECIPIENT,
                           "accessList": []}),
        eip1559(idle, dev_keys[2], to=RECIPIENT, gas=21_000),
    ]
    for raw in raws:
        assert idle.rpc("eth_sendRawTransaction", raw) == tx_hash_of(raw)


def test_send_raw_transaction_with_a_used_nonce_is_nonce_too_low(devnet: RunningNode, dev_keys) -> None:
    devnet.wait_receipt(send(devnet, eip1559(devnet, dev_keys[0], to=RECIPIENT, gas=21_000)))
    stale = sign(dev_keys[0], {"nonce": 0, "gasPrice": 20 * GWEI, "gas": 21_000, "to": RECIPIENT})
    error = error_of(devnet, "eth_sendRawTransaction", stale)
    assert error["code"] == -32000 and error["message"].startswith("nonce too low")


def test_send_raw_transaction_of_a_mined_transaction_is_nonce_too_low(devnet: RunningNode, dev_keys) -> None:
    raw = eip1559(devnet, dev_keys[0], to=RECIPIENT, gas=21_000)
    devnet.wait_receipt(send(devnet, raw))
    error = error_of(devnet, "eth_sendRawTransaction", raw)
    assert error["code"] == -32000 and error["message"].startswith("nonce too low")


def test_send_raw_transaction_without_funds_is_insufficient_funds(devnet: RunningNode) -> None:
    key = fresh_key("poor")
    error = error_of(devnet, "eth_sendRawTransaction",
                     sign(key, {"nonce": 0, "gasPrice": 10 * GWEI, "gas": 21_000, "to": RECIPIENT, "value": 1}))
    assert error["code"] == -32000 and error["message"].startswith("insufficient funds for gas * price + value")


def test_send_raw_transaction_costing_more_than_the_balance_is_insufficient_funds(devnet: RunningNode,
                                                                                 dev_keys) -> None:
    balance = q(devnet.rpc("eth_getBalance", address_of(dev_keys[0]), "latest"))
    raw = eip1559(devnet, dev_keys[0], to=RECIPIENT, gas=21_000, value=balance)  # value alone takes it all
    error = error_of(devnet, "eth_sendRawTransaction", raw)
    assert error["code"] == -32000 and error["message"].startswith("insufficient funds for gas * price + value")


def test_send_raw_transaction_for_another_chain_is_rejected(devnet: RunningNode, dev_keys) -> None:
    for raw in [sign(dev_keys[0], {"chainId": 1, "nonce": 0, "gasPrice": 10 * GWEI, "gas": 21_000, "to": RECIPIENT}),
                sign(dev_keys[0], {"chainId": 1, "nonce": 0, "maxFeePerGas": 10 * GWEI, "maxPriorityFeePerGas": 1,
                                   "gas": 21_000, "to": RECIPIENT})]:
        error = error_of(devnet, "eth_sendRawTransaction", raw)
        assert error["code"] == -32000 and "chain id" in error["message"]


def test_send_raw_transaction_without_replay_protection_is_rejected(devnet: RunningNode, dev_keys) -> None:
    raw = "0x" + Account.sign_transaction({"nonce": 0, "gasPrice": 10 * GWEI, "gas": 21_000,
                                           "to": to_checksum_address(RECIPIENT), "value": 0},
                                          dev_keys[0]).raw_transaction.hex()
    error = error_of(devnet, "eth_sendRawTransaction", raw)
    assert error == {"code": -32000, "message": "only replay-protected (EIP-155) transactions allowed over RPC"}


def test_send_raw_transaction_below_intrinsic_gas_is_rejected(devnet: RunningNode, dev_keys) -> None:
    error = error_of(devnet, "eth_sendRawTransaction", eip1559(devnet, dev_keys[0], to=RECIPIENT, gas=20_999))
    assert error["code"] == -32000
    assert error["message"] == "intrinsic gas too low: gas 20999, minimum needed 21000"


def test_send_raw_transaction_with_fee_cap_below_base_fee_is_rejected(devnet: RunningNode, dev_keys) -> None:
    base_fee = next_base_fee(devnet)
    raw = eip1559(devnet, dev_keys[0], to=RECIPIENT, gas=21_000, max_fee=base_fee - 1, tip=1)
    error = error_of(devnet, "eth_sendRawTransaction", raw)
    assert error["code"] == -32000 and error["message"].startswith("max fee per gas less than block base fee")


def test_send_raw_transaction_with_tip_above_fee_cap_is_rejected(devnet: RunningNode, dev_keys) -> None:
    raw = eip1559(devnet, dev_keys[0], to=RECIPIENT, gas=21_000, max_fee=10 * GWEI, tip=11 * GWEI)
    error = error_of(devnet, "eth_sendRawTransaction", raw)
    assert error == {"code": -32000, "message": "max priority fee per gas higher than max fee per gas"}


def test_send_raw_transaction_twice_is_already_known(idle: RunningNode, dev_keys) -> None:
    raw = eip1559(idle, dev_keys[0], to=RECIPIENT, gas=21_000)
    send(idle, raw)
    assert error_of(idle, "eth_sendRawTransaction", raw) == {"code": -32000, "message": "already known"}


def test_replacement_without_a_10_percent_fee_bump_is_underpriced(idle: RunningNode, dev_keys) -> None:
    first = sign(dev_keys[0], {"nonce": 0, "maxFeePerGas": 20 * GWEI, "maxPriorityFeePerGas": 2 * GWEI,
                               "gas": 21_000, "to": RECIPIENT})
    send(idle, first)
    for max_fee, tip in [(21 * GWEI, 2_100_000_000), (30 * GWEI, 2 * GWEI), (20 * GWEI, 3 * GWEI)]:
        again = sign(dev_keys[0], {"nonce": 0, "maxFeePerGas": max_fee, "maxPriorityFeePerGas": tip,
                                   "gas": 21_000, "to": RECIPIENT})
        error = error_of(idle, "eth_sendRawTransaction", again)
        assert error == {"code": -32000, "message": "replacement transaction underpriced"}, (max_fee, tip)
    assert idle.rpc("eth_getTransactionByHash", tx_hash_of(first)) is not None


def test_replacement_with_a_10_percent_fee_bump_replaces_the_pending_transaction(idle: RunningNode,
                                                                                 dev_keys) -> None:
    first = sign(dev_keys[0], {"nonce": 0, "maxFeePerGas": 20 * GWEI, "maxPriorityFeePerGas": 2 * GWEI,
                               "gas": 21_000, "to": RECIPIENT})
    send(idle, first)
    bumped = sign(dev_keys[0], {"nonce": 0, "maxFeePerGas": 22 * GWEI, "maxPriorityFeePerGas": 2_200_000_000,
                                "gas": 21_000, "to": RECIPIENT, "value": 1})
    send(idle, bumped)
    assert idle.rpc("eth_getTransactionByHash", tx_hash_of(first)) is None
    assert idle.rpc("eth_getTransactionByHash", tx_hash_of(bumped))["value"] == "0x1"
    assert idle.rpc("eth_getTransactionCount", address_of(dev_keys[0]), "pending") == "0x1"
    block = seal(idle)
    assert block["transactions"] == [tx_hash_of(bumped)]


@pytest.mark.parametrize("raw", ["0xdeadbeef", "0x02deadbeef", "0x02", "0x", "0xc0", "0x01c0", "0x7f00",
                                 "0x" + "ff" * 64], ids=lambda r: r[:12])
def test_send_raw_transaction_of_garbage_is_a_clear_error_not_a_500(devnet: RunningNode, raw: str) -> None:
    response = devnet.client.post(devnet.url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction",
                                                    "params": [raw]})
    assert response.status_code == 200
    error = response.json()["error"]
    assert error["code"] == -32000 and error["message"], error
    assert "Traceback" not in error["message"] and len(error["message"]) < 300


def test_send_raw_transaction_of_mutated_transactions_is_accepted_or_a_server_error(idle: RunningNode,
                                                                                   dev_keys) -> None:
    import random

    auth = Account.sign_authorization({"chainId": CHAIN_ID, "address": to_checksum_address(RECIPIENT),
                                       "nonce": 5}, dev_keys[3])
    valid = [
        legacy(idle, dev_keys[0], to=RECIPIENT, gas=21_000),
        sign(dev_keys[1], {"type": 1, "nonce": 0, "gasPrice": 10 * GWEI, "gas": 30_000, "to": RECIPIENT,
                           "accessList": [{"address": to_checksum_address(RECIPIENT), "storageKeys": [word(1)]}]}),
        eip1559(idle, dev_keys[2], to=RECIPIENT, gas=21_000, data="0x1234"),
        sign(dev_keys[2], {"type": 4, "nonce": 0, "maxFeePerGas": 100 * GWEI, "maxPriorityFeePerGas": GWEI,
                           "gas": 100_000, "to": RECIPIENT, "authorizationList": [auth]}),
    ]
    rng = random.Random(1612)
    for _ in range(300):
        raw = bytearray(bytes.fromhex(rng.choice(valid)[2:]))
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(len(raw))
            op = rng.random()
            if op < 0.5:
                raw[pos] = rng.randrange(256)
            elif op < 0.75:
                del raw[pos]
            else:
                raw.insert(pos, rng.randrange(256))
        response = idle.client.post(idle.url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction",
                                                    "params": ["0x" + raw.hex()]})
        assert response.status_code == 200, raw.hex()
        body = response.json()
        assert "result" in body or body["error"]["code"] == -32000, (raw.hex(), body)


def test_send_raw_transaction_of_non_hex_is_invalid_params(devnet: RunningNode) -> None:
    for raw in ["deadbeef", "0xzz", 12, None]:
        assert error_of(devnet, "eth_sendRawTransaction", raw)["code"] == -32602, raw


def test_send_raw_set_code_transaction_is_accepted_and_sealed(devnet: RunningNode, dev_keys,
                                                              probe_artifact) -> None:
    deploy = eip1559(devnet, dev_keys[0], gas=1_000_000,
                     data=probe_artifact["bytecode"] + abi_encode(["uint256"], [1]).hex())
    probe = devnet.wait_receipt(send(devnet, deploy))["contractAddress"]
    # the sender delegates its own account: the authorization nonce is the one after the tx's
    sender = dev_keys[1]
    nonce = nonce_of(devnet, address_of(sender))
    auth = Account.sign_authorization({"chainId": CHAIN_ID, "address": to_checksum_address(probe),
                                       "nonce": nonce + 1}, sender)
    raw = sign(sender, {"type": 4, "nonce": nonce, "maxFeePerGas": 100 * GWEI, "maxPriorityFeePerGas": GWEI,
                        "gas": 100_000, "to": address_of(sender), "data": calldata("set(uint256)", 3),
                        "authorizationList": [auth]})
    receipt = devnet.wait_receipt(send(devnet, raw))
    assert receipt["status"] == "0x1" and receipt["type"] == "0x4"
    assert devnet.rpc("eth_getStorageAt", address_of(sender), "0x0", "latest") == word(3)
    assert devnet.rpc("eth_getCode", address_of(sender), "latest") == "0xef0100" + probe[2:]
    assert nonce_of(devnet, address_of(sender), "latest") == nonce + 2


# ------------------------------------------------------------------------- robustness


@pytest.mark.parametrize("method,params", [
    ("eth_getBlockByNumber", ["latest", "true"]),
    ("eth_getBlockByNumber", ["2", False]),
    ("eth_getBlockByNumber", ["lastest", False]),
    ("eth_getBlockByHash", ["0x1234", False]),
    ("eth_getTransactionByHash", ["0x12"]),
    ("eth_getTransactionReceipt", [None]),
    ("eth_getBalance", ["0x1234", "latest"]),
    ("eth_getBalance", ["0x" + "11" * 20, "0xzz"]),
    ("eth_getBalance", ["0x" + "11" * 20, {"blockHash": ZERO_HASH, "blockNumber": "0x0"}]),
    ("eth_getCode", ["0x" + "11" * 20, "latest", "extra"]),
    ("eth_getStorageAt", ["0x" + "11" * 20, 5, "latest"]),
    ("eth_call", ["not an object", "latest"]),
    ("eth_call", [{"to": "0x12"}, "latest"]),
    ("eth_call", [{"to": "0x" + "11" * 20, "input": "0x12", "data": "0x34"}, "latest"]),
    ("eth_call", [{"to": "0x" + "11" * 20}, "latest", "not an object"]),
    ("eth_estimateGas", [{"to": "0x" + "11" * 20, "gas": "0x"}]),
    ("eth_feeHistory", ["0x1", "latest", "50"]),
    ("eth_feeHistory", ["-1", "latest", []]),
    ("eth_feeHistory", ["0x1", "latest", [50, "x"]]),
    ("eth_getTransactionByBlockNumberAndIndex", ["0x0", "zz"]),
    ("eth_getBlockTransactionCountByHash", ["0x00"]),
    ("eth_maxPriorityFeePerGas", ["extra"]),
])
def test_malformed_parameters_are_invalid_params(idle: RunningNode, method: str, params: list) -> None:
    error = error_of(idle, method, *params)
    assert error["code"] == -32602 and error["message"]


def test_chain_data_is_served_the_same_after_a_restart(tmp_path: Path, dev_keys, probe_artifact) -> None:
    """What RPC answers from the just-sealed cache equals what it reads back from LevelDB."""
    datadir = tmp_path / "data"
    node, thread = start_node(datadir, mining=False)
    try:
        with httpx.Client(timeout=30) as client:
            chain = RunningNode(node, node.rpc.url, datadir, client)
            send(chain, eip1559(chain, dev_keys[0], gas=1_000_000,
                                data=probe_artifact["bytecode"] + abi_encode(["uint256"], [1]).hex()))
            send(chain, legacy(chain, dev_keys[1], to=RECIPIENT, value=3, gas=21_000))
            send(chain, sign(dev_keys[2], {"type": 1, "nonce": 0, "gasPrice": 10 * GWEI, "gas": 30_000,
                                           "to": RECIPIENT, "accessList": [
                                               {"address": to_checksum_address(RECIPIENT), "storageKeys": [word(2)]}]}))
            deployment = seal(chain)["transactions"][0]
            probe = chain.rpc("eth_getTransactionReceipt", deployment)["contractAddress"]
            send(chain, eip1559(chain, dev_keys[0], gas=100_000, to=probe, data=calldata("set(uint256)", 4)))
            seal(chain)

            def snapshot() -> list:
                out = []
                for number in ("0x1", "0x2"):
                    full = chain.rpc("eth_getBlockByNumber", number, True)
                    out += [full, chain.rpc("eth_getBlockReceipts", number)]
                    out += [chain.rpc("eth_getTransactionReceipt", tx["hash"]) for tx in full["transactions"]]
                return out

            before = snapshot()
    finally:
        stop_node(node, thread)
    node, thread = start_node(datadir, mining=False)
    try:
        with httpx.Client(timeout=30) as client:
            chain = RunningNode(node, node.rpc.url, datadir, client)
            assert chain.rpc("eth_blockNumber") == "0x2"
            assert snapshot() == before
    finally:
        stop_node(node, thread)
