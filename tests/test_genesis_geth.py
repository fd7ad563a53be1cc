"""geth-style genesis files: fork schedules, what py-evm cannot follow, the deposit contract."""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest
from eth_account import Account
from eth.vm.forks.prague.constants import DEPOSIT_EVENT_SIGNATURE_HASH
from eth_utils import to_checksum_address

from openledger_node.chain.chain import Blockchain
from openledger_node.chain.genesis import GenesisError, fork_at, parse_genesis

SUITE = Path(__file__).resolve().parent.parent.parent / "shared" / "conformance" / "execution-apis"
KEY = "0x" + "42" * 32
SENDER = Account.from_key(KEY).address
DEPOSITOR = to_checksum_address("0x" + "de" * 20)  # a contract that emits DepositEvent-shaped logs


def prague_genesis(**config) -> dict:
    # PUSH0-era code: copy the calldata to memory and LOG1 it under the deposit event topic
    code = "0x365f5f37" + "7f" + DEPOSIT_EVENT_SIGNATURE_HASH.hex() + "6102405fa100"
    return {
        "config": {"chainId": 7, "homesteadBlock": 0, "eip150Block": 0, "eip155Block": 0, "eip158Block": 0,
                   "byzantiumBlock": 0, "constantinopleBlock": 0, "petersburgBlock": 0, "istanbulBlock": 0,
                   "berlinBlock": 0, "londonBlock": 0, "mergeNetsplitBlock": 0, "terminalTotalDifficulty": 0,
                   "shanghaiTime": 0, "cancunTime": 0, "pragueTime": 0, **config},
        "gasLimit": "0x1c9c380", "difficulty": "0x0",
        "alloc": {SENDER: {"balance": hex(10**21)}, DEPOSITOR: {"code": code, "balance": "0x0"}},
    }


def test_the_suite_genesis_maps_onto_pyevm() -> None:
    genesis = parse_genesis(json.loads((SUITE / "genesis.json").read_text()))
    assert fork_at(genesis.forks, 2, 20) == "homestead" and fork_at(genesis.forks, 26, 260) == "berlin"
    assert fork_at(genesis.forks, 40, 400) == "shanghai" and fork_at(genesis.forks, 45, 450) == "prague"
    assert "base_fee_per_gas" not in genesis.header and genesis.header["difficulty"] == 0x20000
    assert genesis.deposit_contract == b"\x00" * 20


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c.update(osakaTime=100), "config.osakaTime: fork osaka is not supported"),
        (lambda c: c.update(blobSchedule={"prague": {"target": 6, "max": 12, "baseFeeUpdateFraction": 5007716}}),
         r"config.blobSchedule.prague.max: only 9 is supported"),
        (lambda c: c.update(blobSchedule={"cancun": {"target": 4}}), "blobSchedule.cancun.target: only 3"),
        (lambda c: c.update(daoForkBlock=0, daoForkSupport=True), "DAO fork"),
        (lambda c: c.update(depositContractAddress="0x1234"), None),  # short addresses are left-padded, as geth
    ],
)
def test_what_pyevm_cannot_follow_is_refused(change, message) -> None:
    doc = prague_genesis()
    change(doc["config"])
    if message is None:
        assert parse_genesis(doc).deposit_contract == b"\x00" * 18 + b"\x12\x34"
        return
    with pytest.raises(GenesisError, match=message):
        parse_genesis(doc)


def test_the_same_blob_schedule_and_later_unscheduled_forks_are_accepted() -> None:
    schedule = {"cancun": {"target": 3, "max": 6, "baseFeeUpdateFraction": 3338477},
                "prague": {"target": 6, "max": 9, "baseFeeUpdateFraction": 5007716},
                "osaka": {"target": 6, "max": 9, "baseFeeUpdateFraction": 5007716}}
    parse_genesis(prague_genesis(blobSchedule=schedule))


def _deposit_block(tmp_path: Path, name: str, doc: dict):
    chain = Blockchain.init(tmp_path / name, parse_genesis(doc))
    try:
        data = bytes(range(256)) * 2 + bytes(64)  # 576 bytes, the DepositEvent data layout's size
        tx = {"chainId": 7, "nonce": 0, "to": DEPOSITOR, "value": 0, "gas": 100_000, "data": data,
              "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 1}
        raw = bytes(Account.sign_transaction(tx, KEY).raw_transaction)
        sealed = chain.build_block([chain.decode_transaction(raw)], timestamp=12, coinbase=b"\x00" * 20)
        assert len(sealed.block.transactions) == 1 and len(sealed.receipts[0].logs) == 1
        return sealed.block.header.requests_hash, data
    finally:
        chain.close()


def test_deposit_requests_come_from_the_genesis_deposit_contract(tmp_path: Path) -> None:
    ours, data = _deposit_block(tmp_path, "custom", prague_genesis(depositContractAddress=DEPOSITOR))
    request = b"\x00" + data[192:240] + data[288:320] + data[352:360] + data[416:512] + data[544:552]
    assert ours == hashlib.sha256(hashlib.sha256(request).digest()).digest()  # EIP-7685
    # without depositContractAddress: mainnet's address, where nothing is deployed: no request
    default, _ = _deposit_block(tmp_path, "default", prague_genesis())
    assert default == hashlib.sha256(b"").digest()
    # and a genesis naming another address ignores this contract's logs
    other = copy.deepcopy(prague_genesis(depositContractAddress="0x" + "00" * 20))
    assert _deposit_block(tmp_path, "other", other)[0] == default
