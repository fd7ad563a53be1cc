"""Runs Ethereum's JSON test fixtures (state tests and blockchain tests) against
py-evm VM classes, and describes what happened as a plain, comparable outcome.

This module never imports ``openledger_node``: the node's test
(``tests/test_evm_fixtures.py``) passes the node's VM classes in, and the same code
run as a script (``python tests/evm_fixture_runner.py stock ...``) runs a case on
py-evm's stock VMs in a fresh interpreter, where nothing of the node (its trie-root
replacement included) has been loaded.  Comparing the two outcomes is how a case
that py-evm itself cannot pass is shown to fail *the same way* on the node.

Fixture formats (ethereum/tests and execution-spec-tests use the same ones):
  * state test: ``{name: {env, pre, transaction, post: {fork: [{hash, logs, txbytes,
    indexes, expectException?}]}}}``; one case per (fork, post index).  The case's
    transaction is ``txbytes`` (the signed transaction) decoded by the fork's
    transaction builder, applied to ``pre`` in a block described by ``env``; the
    state root after it must be ``hash`` and the hash of its RLP logs ``logs``.
  * blockchain test: ``{name: {network, genesisBlockHeader, pre, blocks, lastblockhash,
    postState}}``; the blocks are imported one by one (those with
    ``expectException`` must be refused) and the head must end at ``lastblockhash``.
"""
from __future__ import annotations

import json
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import rlp
from eth_hash.auto import keccak

FIXTURES = Path(__file__).resolve().parent / "fixtures"

# Fork names used by the fixtures -> the node's fork names (openledger_node.chain.vm.FORKS).
FORK_NAMES = {
    "Frontier": "frontier",
    "Homestead": "homestead",
    "EIP150": "tangerineWhistle",
    "EIP158": "spuriousDragon",
    "Byzantium": "byzantium",
    "Constantinople": "constantinople",
    "ConstantinopleFix": "petersburg",
    "Petersburg": "petersburg",
    "Istanbul": "istanbul",
    "Berlin": "berlin",
    "London": "london",
    "Merge": "paris",
    "Paris": "paris",
    "Shanghai": "shanghai",
    "Cancun": "cancun",
    "Prague": "prague",
}
FORK_ORDER = [
    "frontier", "homestead", "tangerineWhistle", "spuriousDragon", "byzantium", "constantinople",
    "petersburg", "istanbul", "muirGlacier", "berlin", "london", "arrowGlacier", "grayGlacier",
    "paris", "shanghai", "cancun", "prague",
]
EMPTY_LOGS_HASH = keccak(rlp.encode([]))


def _int(value: str | int) -> int:
    return value if isinstance(value, int) else int(value, 16)


def _bytes(value: str) -> bytes:
    return bytes.fromhex(value[2:] if value.startswith("0x") else value)


def _address(value: str) -> bytes:
    return _bytes(value).rjust(20, b"\x00")


def at_least(fork: str, other: str) -> bool:
    return FORK_ORDER.index(fork) >= FORK_ORDER.index(other)


def account_state(alloc: Mapping[str, Any]) -> dict[bytes, dict[str, Any]]:
    """A fixture's ``pre`` / ``postState`` in py-evm's AccountState form."""
    return {
        _address(addr): {
            "balance": _int(acct.get("balance", "0x0")),
            "nonce": _int(acct.get("nonce", "0x0")),
            "code": _bytes(acct.get("code", "0x")),
            "storage": {_int(k): _int(v) for k, v in (acct.get("storage") or {}).items()},
        }
        for addr, acct in alloc.items()
    }


def load_test(path: Path, name: str) -> dict[str, Any]:
    return json.loads(path.read_text())[name]


# ------------------------------------------------------------------------- discovery


@dataclass(frozen=True)
class StateCase:
    path: str  # relative to FIXTURES
    name: str
    fork: str  # as spelled in the fixture
    index: int

    @property
    def id(self) -> str:
        return f"{self.path}::{self.name}[{self.fork}-{self.index}]"


@dataclass(frozen=True)
class BlockchainCase:
    path: str
    name: str
    network: str

    @property
    def id(self) -> str:
        return f"{self.path}::{self.name}"


def discover(root: Path = FIXTURES) -> tuple[list[StateCase], list[BlockchainCase]]:
    """Every case of every fixture file under ``root`` (json files only)."""
    state: list[StateCase] = []
    chain: list[BlockchainCase] = []
    for path in sorted(root.rglob("*.json")):
        rel = path.relative_to(root).as_posix()
        for name, test in json.loads(path.read_text()).items():
            if "blocks" in test:
                chain.append(BlockchainCase(rel, name, test["network"]))
            elif "transaction" in test and "post" in test:
                for fork, posts in sorted(test["post"].items()):
                    state.extend(StateCase(rel, name, fork, i) for i in range(len(posts)))
    return state, chain


# ---------------------------------------------------------------------- state tests


@dataclass
class StateOutcome:
    state_root: str
    logs_hash: str | None  # None when the transaction was refused
    error: str | None  # exception class and message when the transaction was refused

    def compare(self, expected: Mapping[str, Any]) -> list[str]:
        """What differs from the fixture's post entry (empty list: the case passes)."""
        problems = []
        if "expectException" in expected:
            if self.error is None:
                problems.append(f"transaction accepted, expected {expected['expectException']}")
        elif self.error is not None:
            problems.append(f"transaction refused: {self.error}")
        if self.state_root != expected["hash"]:
            problems.append(f"state root {self.state_root} != expected {expected['hash']}")
        if self.error is None and "logs" in expected and self.logs_hash != expected["logs"]:
            problems.append(f"logs hash {self.logs_hash} != expected {expected['logs']}")
        return problems


def state_test_header(vm_class, env: Mapping[str, Any]):
    """The header of the block a state test's transaction runs in (its ``env``)."""
    header_class = dict(vm_class.get_block_class()._meta.fields)["header"]
    fields = set(header_class._meta.field_names)
    post_merge = "withdrawals_root" in fields or _is_pos(vm_class)
    params: dict[str, Any] = {
        "coinbase": _address(env["currentCoinbase"]),
        "difficulty": 0 if post_merge else _int(env.get("currentDifficulty", "0x0")),
        "block_number": _int(env["currentNumber"]),
        "gas_limit": _int(env["currentGasLimit"]),
        "timestamp": _int(env["currentTimestamp"]),
    }
    if "previousHash" in env:
        params["parent_hash"] = _bytes(env["previousHash"])
    if post_merge and "currentRandom" in env:
        params["mix_hash"] = _bytes(env["currentRandom"]).rjust(32, b"\x00")
    if "base_fee_per_gas" in fields:
        params["base_fee_per_gas"] = _int(env.get("currentBaseFee", "0x0a"))
    if "excess_blob_gas" in fields:
        params["excess_blob_gas"] = _int(env.get("currentExcessBlobGas", "0x0"))
        params["blob_gas_used"] = 0
    return header_class(**params)


def _is_pos(vm_class) -> bool:
    return getattr(vm_class.consensus_class, "__name__", "") == "PosConsensus"


def _state_test_vm(vm_class):
    """``vm_class`` with the state tests' BLOCKHASH convention: the hash of block ``n``
    is keccak256 of ``n`` written in decimal (there are no parent blocks to ask)."""

    def previous_hashes(self):
        number = self.get_header().block_number
        return tuple(keccak(str(n).encode()) for n in range(number - 1, max(-1, number - 257), -1))

    return type(f"{vm_class.__name__}ForStateTests", (vm_class,), {"previous_hashes": property(previous_hashes)})


def run_state_case(test: Mapping[str, Any], fork: str, index: int, vm_class) -> StateOutcome:
    """Apply the case's transaction with ``vm_class`` (the VM for ``fork``)."""
    from eth.consensus.context import ConsensusContext
    from eth.db.atomic import AtomicDB
    from eth.db.chain import ChainDB
    from eth.tools._utils.hashing import hash_log_entries
    from eth.vm.chain_context import ChainContext
    from eth._utils.db import apply_state_dict

    post = test["post"][fork][index]
    chain_id = _int(test.get("config", {}).get("chainid", "0x01"))
    header = state_test_header(vm_class, test["env"])
    db = AtomicDB()
    vm = _state_test_vm(vm_class)(
        header=header,
        chaindb=ChainDB(db),
        chain_context=ChainContext(chain_id),
        consensus_context=ConsensusContext(db),
    )
    state = vm.state
    apply_state_dict(state, account_state(test["pre"]))
    state.persist()
    error = None
    logs_hash = None
    try:
        if "txbytes" not in post:
            raise ValueError("fixture has no txbytes for this case")
        transaction = vm.get_transaction_builder().decode(_bytes(post["txbytes"]))
        _, computation = vm.apply_transaction(vm.get_header(), transaction)
    except Exception as exc:  # a refused transaction: the case says whether that is right
        error = f"{type(exc).__name__}: {exc}"[:300]
    else:
        logs_hash = "0x" + hash_log_entries(computation.get_log_entries()).hex()
    state.persist()
    return StateOutcome("0x" + state.state_root.hex(), logs_hash, error)


# ----------------------------------------------------------------- blockchain tests


@dataclass
class BlockchainOutcome:
    genesis_hash: str
    blocks: list[str] = field(default_factory=list)  # per block: "0x<hash>" or "refused: <error>"
    head_hash: str = ""

    def compare(self, test: Mapping[str, Any]) -> list[str]:
        problems = []
        expected_genesis = test["genesisBlockHeader"]["hash"]
        if self.genesis_hash != expected_genesis:
            problems.append(f"genesis {self.genesis_hash} != expected {expected_genesis}")
        for i, (block, got) in enumerate(zip(test["blocks"], self.blocks)):
            if "expectException" in block:
                if not got.startswith("refused"):
                    problems.append(f"block {i}: accepted, expected {block['expectException']}")
            elif got.startswith("refused"):
                problems.append(f"block {i}: {got}")
            elif "blockHeader" in block and got != block["blockHeader"]["hash"]:
                problems.append(f"block {i}: imported as {got}, expected {block['blockHeader']['hash']}")
        if self.head_hash != test["lastblockhash"]:
            problems.append(f"head {self.head_hash} != lastblockhash {test['lastblockhash']}")
        return problems


def network_forks(network: str) -> tuple[str, list[tuple[str, int]]]:
    """(fork at genesis, [(later fork, activation timestamp or block)]) for a network name
    such as ``Cancun`` or ``CancunToPragueAtTime15k``."""
    match = re.fullmatch(r"(\w+?)To(\w+?)At(Time)?(\d+)(k?)", network)
    if not match:
        return FORK_NAMES[network], []
    first, second, _, number, kilo = match.groups()
    return FORK_NAMES[first], [(FORK_NAMES[second], int(number) * (1000 if kilo else 1))]


def stock_vm_configuration(test: Mapping[str, Any]):
    """py-evm's own (stock) VM configuration for a blockchain test's network."""
    from eth.tools.fixtures.helpers import chain_vm_configuration

    return chain_vm_configuration({"network": test["network"], "blocks": _normalized_blocks(test)})


def _normalized_blocks(test: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for block in test["blocks"]:
        item = dict(block)
        if "blockHeader" in block:
            item["blockHeader"] = {k: (_int(v) if k in ("number", "timestamp") else v)
                                   for k, v in block["blockHeader"].items()}
        out.append(item)
    return out


def run_blockchain_case_stock(test: Mapping[str, Any]) -> BlockchainOutcome:
    """The blockchain test on py-evm's stock VMs and Chain (as py-evm's own runner does)."""
    from eth.chains.base import Chain
    from eth.db.atomic import AtomicDB
    from eth.tools.builder.chain import disable_pow_check
    from eth.tools.fixtures.helpers import genesis_params_from_fixture
    from eth.tools._utils.normalization import normalize_block_header

    chain_class = Chain.configure("StockFixtureChain", vm_configuration=tuple(stock_vm_configuration(test)),
                                  chain_id=_int(test.get("config", {}).get("chainid", "0x01")))
    if test.get("sealEngine", "NoProof") == "NoProof":
        chain_class = disable_pow_check(chain_class)
    genesis = {"genesisBlockHeader": normalize_block_header(test["genesisBlockHeader"])}
    chain = chain_class.from_genesis(AtomicDB(), genesis_params_from_fixture(genesis), account_state(test["pre"]))
    outcome = BlockchainOutcome("0x" + chain.get_canonical_head().hash.hex())
    for block_fixture in test["blocks"]:
        try:
            raw = _bytes(block_fixture["rlp"])
            number, timestamp = _number_and_timestamp(raw)
            block_class = chain.get_vm_class_for_block_number(number).get_block_class()
            block = rlp.decode(raw, sedes=block_class)
            imported = chain.import_block(block).imported_block
        except Exception as exc:
            outcome.blocks.append(f"refused: {type(exc).__name__}: {exc}"[:300])
        else:
            outcome.blocks.append("0x" + imported.hash.hex())
    outcome.head_hash = "0x" + chain.get_canonical_head().hash.hex()
    return outcome


def _number_and_timestamp(raw_block: bytes) -> tuple[int, int]:
    """Block number and timestamp read from a block's RLP without knowing its fork."""
    header = rlp.decode(raw_block, strict=False)[0]
    return int.from_bytes(header[8], "big"), int.from_bytes(header[11], "big")


# --------------------------------------------------------------- stock py-evm (script)


def stock_state_vm(fork: str):
    from eth.vm import forks

    cls_name = {
        "frontier": "FrontierVM", "homestead": "HomesteadVM", "tangerineWhistle": "TangerineWhistleVM",
        "spuriousDragon": "SpuriousDragonVM", "byzantium": "ByzantiumVM", "constantinople": "ConstantinopleVM",
        "petersburg": "PetersburgVM", "istanbul": "IstanbulVM", "berlin": "BerlinVM", "london": "LondonVM",
        "paris": "ParisVM", "shanghai": "ShanghaiVM", "cancun": "CancunVM", "prague": "PragueVM",
    }[FORK_NAMES[fork]]
    return getattr(forks, cls_name)


def run_stock(kind: str, rel_path: str, name: str, fork: str = "", index: int = 0) -> dict[str, Any]:
    """Outcome of one case on stock py-evm, as a dict (the script's JSON output)."""
    test = load_test(FIXTURES / rel_path, name)
    if kind == "state":
        outcome: Any = run_state_case(test, fork, index, stock_state_vm(fork))
    else:
        outcome = run_blockchain_case_stock(test)
    assert "openledger_node" not in sys.modules, "stock run must not load the node"
    return asdict(outcome)


def stock_outcome_in_subprocess(kind: str, rel_path: str, name: str, fork: str = "", index: int = 0) -> dict:
    """Run :func:`run_stock` in a fresh interpreter (so nothing of the node is loaded)."""
    import subprocess

    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "stock", kind, rel_path, name, fork, str(index)],
        capture_output=True, text=True, timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"stock py-evm run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":  # python tests/evm_fixture_runner.py stock {state|blockchain} PATH NAME [FORK INDEX]
    if len(sys.argv) < 5 or sys.argv[1] != "stock":
        sys.exit(__doc__)
    kind, rel, case_name = sys.argv[2:5]
    fork_arg = sys.argv[5] if len(sys.argv) > 5 else ""
    index_arg = int(sys.argv[6]) if len(sys.argv) > 6 else 0
    print(json.dumps(run_stock(kind, rel, case_name, fork_arg, index_arg)))
