"""Ethereum's own test fixtures, run through the node's fork VMs.

The node's VMs (``openledger_node.chain.vm.VM_BY_FORK``) are py-evm's, subclassed, with
speed-ups (shallow block, header and account copies, a bottom-up ordered-trie root for block tries, no
receipt re-read for EIP-6110 without a deposit contract) and, later, the product's
precompiles at new addresses.  These tests show that nothing else changed: every
vendored case of ethereum/tests and execution-spec-tests (see tests/fixtures/README.md
for which, and where each comes from) must give the upstream result.

* State tests: the case's signed transaction is applied with ``VM_BY_FORK[fork]`` to
  the pre-state in a block built from ``env``; the post state root and logs hash must
  be the fixture's (a transaction the fixture expects to be refused must be refused).
* Blockchain tests: the fixture's genesis is written by the node's own ``Blockchain``
  (LevelDB datadir, geth-style genesis with the network's fork schedule) and every block
  is imported with ``Blockchain.import_block``; the genesis hash, every block hash, the
  refusal of invalid blocks, the final head and the post state must be the fixture's.

A case that stock py-evm cannot pass either goes in ``PY_EVM_FAILURES`` with the
reason: it is then run on stock py-evm too (in a fresh interpreter, so that nothing of
the node is loaded) and must fail there in exactly the same way, then it is xfailed.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import rlp

import evm_fixture_runner as runner
from openledger_node.chain.chain import Blockchain
from openledger_node.chain.genesis import parse_genesis
from openledger_node.chain.vm import VM_BY_FORK

STATE_CASES, BLOCKCHAIN_CASES = runner.discover()

# case id -> why stock py-evm 0.12.1b1 fails it (verified by the test itself).
PY_EVM_FAILURES: dict[str, str] = {}


def _load(path: str, name: str) -> dict[str, Any]:
    return runner.load_test(runner.FIXTURES / path, name)


def _expect_stock_failure(case_id: str, kind: str, case, node_outcome: dict[str, Any]) -> None:
    """For a listed py-evm failure: stock py-evm must produce the same outcome."""
    if kind == "state":
        stock = runner.stock_outcome_in_subprocess("state", case.path, case.name, case.fork, case.index)
    else:
        stock = runner.stock_outcome_in_subprocess("blockchain", case.path, case.name)
    assert stock == node_outcome, f"node and stock py-evm differ on {case_id}:\nnode:  {node_outcome}\nstock: {stock}"
    pytest.xfail(PY_EVM_FAILURES[case_id])


# ------------------------------------------------------------------------ state tests


@pytest.mark.parametrize("case", STATE_CASES, ids=[c.id for c in STATE_CASES])
def test_state_fixture(case: runner.StateCase) -> None:
    test = _load(case.path, case.name)
    vm_class = VM_BY_FORK[runner.FORK_NAMES[case.fork]]
    assert vm_class.__name__.startswith("OpenLedger"), vm_class
    outcome = runner.run_state_case(test, case.fork, case.index, vm_class)
    problems = outcome.compare(test["post"][case.fork][case.index])
    if case.id in PY_EVM_FAILURES:
        assert problems, f"{case.id} passes now: remove it from PY_EVM_FAILURES"
        _expect_stock_failure(case.id, "state", case, outcome.__dict__)
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------- blockchain tests

# Our fork name -> the geth genesis config key that activates it (block keys, then time keys).
_GETH_KEYS = {
    "homestead": "homesteadBlock", "tangerineWhistle": "eip150Block", "spuriousDragon": "eip158Block",
    "byzantium": "byzantiumBlock", "constantinople": "constantinopleBlock", "petersburg": "petersburgBlock",
    "istanbul": "istanbulBlock", "berlin": "berlinBlock", "london": "londonBlock", "paris": "mergeNetsplitBlock",
    "shanghai": "shanghaiTime", "cancun": "cancunTime", "prague": "pragueTime",
}


def geth_genesis(test: dict[str, Any]) -> dict[str, Any]:
    """The fixture's genesis as a geth genesis file (the format the node loads)."""
    first, later = runner.network_forks(test["network"])
    config: dict[str, Any] = {"chainId": int(test.get("config", {}).get("chainid", "0x01"), 16)}
    for fork, key in _GETH_KEYS.items():
        if runner.at_least(first, fork):
            config[key] = 0
        if fork == "spuriousDragon" and runner.at_least(first, fork):
            config["eip155Block"] = 0
    for fork, at in later:
        for earlier, key in _GETH_KEYS.items():  # a transition activates everything up to its target
            if not runner.at_least(first, earlier) and runner.at_least(fork, earlier):
                config[key] = at
    if runner.at_least(first, "paris"):
        config["terminalTotalDifficulty"] = 0
        config["terminalTotalDifficultyPassed"] = True
    header = test["genesisBlockHeader"]
    doc: dict[str, Any] = {
        "config": config,
        "alloc": {addr: {k: v for k, v in acct.items() if k in ("balance", "nonce", "code", "storage")}
                  for addr, acct in test["pre"].items()},
        "difficulty": header["difficulty"],
        "gasLimit": header["gasLimit"],
        "timestamp": header["timestamp"],
        "extraData": header["extraData"],
        "mixHash": header["mixHash"],
        "nonce": header["nonce"],
        "coinbase": header["coinbase"],
    }
    for fixture_key in ("baseFeePerGas", "blobGasUsed", "excessBlobGas"):
        if fixture_key in header:
            doc[fixture_key] = header[fixture_key]
    return doc


def run_blockchain_case_node(test: dict[str, Any], datadir: Path) -> runner.BlockchainOutcome:
    chain = Blockchain.init(datadir, parse_genesis(geth_genesis(test)))
    try:
        outcome = runner.BlockchainOutcome("0x" + chain.header_by_number(0).hash.hex())
        check_seal = test.get("sealEngine", "NoProof") != "NoProof"
        for block_fixture in test["blocks"]:
            try:
                raw = bytes.fromhex(block_fixture["rlp"][2:])
                number, timestamp = runner._number_and_timestamp(raw)
                block = rlp.decode(raw, sedes=chain.block_class_for(number, timestamp))
                imported = chain.import_block(block, check_seal=check_seal)
            except Exception as exc:
                outcome.blocks.append(f"refused: {type(exc).__name__}: {exc}"[:300])
            else:
                outcome.blocks.append("0x" + imported.hash.hex())
        outcome.head_hash = "0x" + chain.head.hash.hex()
        if test.get("postState") and outcome.head_hash == test["lastblockhash"]:
            _check_post_state(chain, test["postState"])
        return outcome
    finally:
        chain.close()


def _check_post_state(chain: Blockchain, post: dict[str, Any]) -> None:
    state = chain.state_at(chain.head)
    problems = []
    for address, expected in runner.account_state(post).items():
        for what, actual in (("balance", state.get_balance(address)), ("nonce", state.get_nonce(address)),
                             ("code", state.get_code(address))):
            if actual != expected[what]:
                problems.append(f"0x{address.hex()} {what}: {actual!r} != {expected[what]!r}")
        for slot, value in expected["storage"].items():
            if state.get_storage(address, slot) != value:
                problems.append(f"0x{address.hex()} storage[{slot:#x}]: {state.get_storage(address, slot):#x} != {value:#x}")
    assert not problems, "post state differs:\n" + "\n".join(problems)


@pytest.mark.parametrize("case", BLOCKCHAIN_CASES, ids=[c.id for c in BLOCKCHAIN_CASES])
def test_blockchain_fixture(case: runner.BlockchainCase, tmp_path: Path) -> None:
    test = _load(case.path, case.name)
    outcome = run_blockchain_case_node(test, tmp_path / "data")
    problems = outcome.compare(test)
    if case.id in PY_EVM_FAILURES:
        assert problems, f"{case.id} passes now: remove it from PY_EVM_FAILURES"
        _expect_stock_failure(case.id, "blockchain", case, outcome.__dict__)
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------------ the harness


def test_subset_is_what_the_readme_says() -> None:
    """The vendored subset is non-trivial and covers the forks the node runs."""
    forks = {c.fork for c in STATE_CASES}
    assert {"Cancun", "Prague"} <= forks, forks
    assert len(STATE_CASES) >= 40 and len(BLOCKCHAIN_CASES) >= 2
    names = {c.path for c in STATE_CASES}
    assert "eest-v4.3.0/state_tests/frontier/precompiles/precompile_absence.json" in names


def test_runner_detects_a_wrong_post_state() -> None:
    """The harness is not vacuous: a fixture with one post hash changed fails."""
    case = next(c for c in STATE_CASES if c.fork == "Prague")
    test = json.loads(json.dumps(_load(case.path, case.name)))
    post = test["post"][case.fork][case.index]
    post["hash"] = "0x" + "11" * 32
    outcome = runner.run_state_case(test, case.fork, case.index, VM_BY_FORK["prague"])
    assert any("state root" in p for p in outcome.compare(post))


def test_node_and_stock_agree_on_a_sample(tmp_path: Path) -> None:
    """One Prague state case and one blockchain case on stock py-evm (fresh interpreter,
    nothing of the node loaded) give exactly the node's outcome."""
    chain_case = BLOCKCHAIN_CASES[0]
    node_chain = run_blockchain_case_node(_load(chain_case.path, chain_case.name), tmp_path / "data")
    assert runner.stock_outcome_in_subprocess("blockchain", chain_case.path, chain_case.name) == node_chain.__dict__
    state_case = next(c for c in STATE_CASES if c.fork == "Prague")
    node = runner.run_state_case(_load(state_case.path, state_case.name), state_case.fork, state_case.index,
                                 VM_BY_FORK["prague"])
    stock = runner.stock_outcome_in_subprocess("state", state_case.path, state_case.name, state_case.fork,
                                               state_case.index)
    assert stock == node.__dict__


def _fixture_header(header) -> dict[str, str]:
    """A py-evm header as a blockchain-test ``blockHeader`` / ``genesisBlockHeader``."""
    names = {
        "parent_hash": "parentHash", "uncles_hash": "uncleHash", "coinbase": "coinbase", "state_root": "stateRoot",
        "transaction_root": "transactionsTrie", "receipt_root": "receiptTrie", "bloom": "bloom",
        "difficulty": "difficulty", "block_number": "number", "gas_limit": "gasLimit", "gas_used": "gasUsed",
        "timestamp": "timestamp", "extra_data": "extraData", "mix_hash": "mixHash", "nonce": "nonce",
        "base_fee_per_gas": "baseFeePerGas", "withdrawals_root": "withdrawalsRoot", "blob_gas_used": "blobGasUsed",
        "excess_blob_gas": "excessBlobGas", "parent_beacon_block_root": "parentBeaconBlockRoot",
        "requests_hash": "requestsHash",
    }
    out = {}
    for field in type(header)._meta.field_names:
        value = getattr(header, field)
        if field == "bloom":
            out[names[field]] = "0x" + value.to_bytes(256, "big").hex()
        elif isinstance(value, int):
            out[names[field]] = hex(value)
        else:
            out[names[field]] = "0x" + bytes(value).hex()
    out["hash"] = "0x" + header.hash.hex()
    return out


def test_prague_block_built_by_the_node_is_the_block_stock_py_evm_builds(tmp_path: Path) -> None:
    """A Prague block sealed by the node (no deposit contract, so its EIP-6110 shortcut,
    ordered-trie roots and shallow copies all apply) is accepted as is by stock py-evm
    importing it from the same genesis, with the same hash: the node's speed-ups build
    the block py-evm itself would build."""
    source = _load("eest-v4.3.0/state_tests/frontier/precompiles/precompile_absence.json",
                   "tests/frontier/precompiles/test_precompile_absence.py::test_precompile_absence"
                   "[fork_Prague-state_test-31_bytes]")
    genesis_doc = {
        "config": {"chainId": 1, **{key: 0 for key in _GETH_KEYS.values()}, "eip155Block": 0,
                   "terminalTotalDifficulty": 0, "terminalTotalDifficultyPassed": True},
        "alloc": source["pre"], "gasLimit": "0x1c9c380", "baseFeePerGas": "0x7", "timestamp": "0x0",
    }
    chain = Blockchain.init(tmp_path / "data", parse_genesis(genesis_doc))
    try:
        raw_tx = bytes.fromhex(source["post"]["Prague"][0]["txbytes"][2:])
        sealed = chain.build_block([chain.decode_transaction(raw_tx)], timestamp=12, coinbase=b"\x2a" * 20)
        assert len(sealed.block.transactions) == 1 and not sealed.rejected
        genesis = chain.header_by_number(0)
        fixture = {
            "network": "Prague",
            "genesisBlockHeader": _fixture_header(genesis),
            "pre": source["pre"],
            "blocks": [{"rlp": "0x" + rlp.encode(sealed.block).hex()}],
            "lastblockhash": "0x" + sealed.block.hash.hex(),
        }
    finally:
        chain.close()
    path = tmp_path / "node_built_block.json"
    path.write_text(json.dumps({"node_built_block": fixture}))
    stock = runner.stock_outcome_in_subprocess("blockchain", str(path), "node_built_block")
    assert stock == {"genesis_hash": "0x" + genesis.hash.hex(), "blocks": [fixture["lastblockhash"]],
                     "head_hash": fixture["lastblockhash"]}, stock


def test_blocks_of_many_transfers_built_by_the_node_are_the_blocks_stock_py_evm_builds(tmp_path: Path) -> None:
    """Three Prague blocks of value transfers (new and existing recipients, a sender
    paying itself, a contract call, calls that log and one that reverts after logging)
    sealed by the node (its VMs: C interpreter loop, flat state reads, bulk trie updates,
    hand-made receipts and blooms, shallow copies) are imported as is by stock py-evm with
    the same hashes: every account change, receipt and per-transaction header update lands
    as py-evm would have it."""
    from eth_account import Account
    from eth_utils import to_checksum_address

    keys = [Account.from_key((i + 1).to_bytes(32, "big")) for i in range(4)]
    counter = "0x" + "c0" * 20  # SSTORE(0, SLOAD(0) + CALLVALUE)
    code = "0x" + "34600054016000" + "55" + "00"
    logger = "0x" + "1e" * 20  # LOG2(memory[0:32] = CALLVALUE, topics 0x11..11, CALLER), then REVERT if CALLVALUE == 3
    log_code = "0x" + "3460005233" + "7f" + "11" * 32 + "60206000a2" + "346003146033" + "57" + "00" + "5b60006000fd"
    pre = {key.address: {"balance": hex(10**21), "nonce": "0x0", "code": "0x", "storage": {}} for key in keys}
    pre[counter] = {"balance": "0x0", "nonce": "0x1", "code": code, "storage": {}}
    pre[logger] = {"balance": "0x0", "nonce": "0x1", "code": log_code, "storage": {}}
    genesis_doc = {
        "config": {"chainId": 1, **{key: 0 for key in _GETH_KEYS.values()}, "eip155Block": 0,
                   "terminalTotalDifficulty": 0, "terminalTotalDifficultyPassed": True},
        "alloc": pre, "gasLimit": "0x1c9c380", "baseFeePerGas": "0x7", "timestamp": "0x0",
    }
    nonces = [0] * len(keys)

    def transfer(sender: int, to: str, value: int, gas: int = 21_000) -> bytes:
        tx = {"type": 2, "chainId": 1, "nonce": nonces[sender], "to": to_checksum_address(to), "value": value, "gas": gas,
              "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 3, "data": b""}
        nonces[sender] += 1
        return bytes(keys[sender].sign_transaction(tx).raw_transaction)

    chain = Blockchain.init(tmp_path / "data", parse_genesis(genesis_doc))
    blocks = []
    try:
        for height in range(3):
            raws = [transfer(i % 4, "0x" + bytes([height * 16 + i + 1] * 20).hex(), 10**15 + i) for i in range(12)]
            raws += [transfer(1, keys[2].address, 7), transfer(3, keys[3].address, 5),
                     transfer(0, counter, 10 + height, gas=60_000),
                     transfer(2, logger, 1 + height, gas=60_000), transfer(3, logger, 5, gas=60_000)]
            sealed = chain.build_block([chain.decode_transaction(raw) for raw in raws], timestamp=12 * (height + 1),
                                       coinbase=b"\x2a" * 20)
            assert len(sealed.block.transactions) == len(raws) and not sealed.rejected
            blocks.append(sealed.block)
        genesis = chain.header_by_number(0)
        assert chain.state_at(chain.head).get_storage(bytes.fromhex(counter[2:]), 0) == 10 + 11 + 12
    finally:
        chain.close()
    fixture = {
        "network": "Prague",
        "genesisBlockHeader": _fixture_header(genesis),
        "pre": pre,
        "blocks": [{"rlp": "0x" + rlp.encode(block).hex()} for block in blocks],
        "lastblockhash": "0x" + blocks[-1].hash.hex(),
    }
    path = tmp_path / "node_built_blocks.json"
    path.write_text(json.dumps({"node_built_blocks": fixture}))
    stock = runner.stock_outcome_in_subprocess("blockchain", str(path), "node_built_blocks")
    assert stock == {"genesis_hash": "0x" + genesis.hash.hex(), "blocks": ["0x" + b.hash.hex() for b in blocks],
                     "head_hash": fixture["lastblockhash"]}, stock
