"""eth_getProof's proofs verify against the state root: present and absent accounts and slots."""
from __future__ import annotations

from pathlib import Path

import pytest
import rlp
from eth.constants import BLANK_ROOT_HASH, EMPTY_SHA3
from eth_hash.auto import keccak
from trie import HexaryTrie

from openledger_node.chain.chain import Blockchain
from openledger_node.chain.genesis import load_genesis
from openledger_node.chain.importer import import_file
from openledger_node.rpc.jsonrpc import ServerError
from openledger_node.rpc.proof import account_proof

SUITE = Path(__file__).resolve().parent.parent.parent / "shared" / "conformance" / "execution-apis"
CONTRACT = bytes.fromhex("7dcd17433742f4c0ca53122ab541d0ba67fc27df")  # slot 0 holds 0x2a



@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    blockchain = Blockchain.init(tmp_path_factory.mktemp("proofs") / "data", load_genesis(SUITE / "genesis.json"))
    import_file(blockchain, SUITE / "chain.rlp")
    yield blockchain
    blockchain.close()


def _verify(root: bytes, key: bytes, proof: list[str]) -> bytes:
    nodes = [rlp.decode(bytes.fromhex(p[2:])) for p in proof]
    return HexaryTrie.get_from_proof(root, key, nodes)


def test_account_and_storage_proofs_verify(chain) -> None:
    head = chain.head
    result = account_proof(chain.store, head.state_root, CONTRACT, ["0x0", "0x" + "00" * 31 + "05"])
    account = rlp.decode(_verify(head.state_root, keccak(CONTRACT), result["accountProof"]))
    assert int.from_bytes(account[1], "big") == int(result["balance"], 16)
    assert account[2] == bytes.fromhex(result["storageHash"][2:]) and account[3] == bytes.fromhex(result["codeHash"][2:])
    present, absent = result["storageProof"]
    storage_root = bytes.fromhex(result["storageHash"][2:])
    assert present["key"] == "0x0" and present["value"] == "0x2a"
    assert rlp.decode(_verify(storage_root, keccak(b"\x00" * 32), present["proof"])) == b"\x2a"
    assert absent["key"] == "0x" + "00" * 31 + "05" and absent["value"] == "0x0"  # a 32-byte key is echoed as given
    assert _verify(storage_root, keccak((5).to_bytes(32, "big")), absent["proof"]) == b""  # proof of absence


def test_absent_account(chain) -> None:
    head = chain.head
    nobody = b"\x12" * 20
    result = account_proof(chain.store, head.state_root, nobody, ["0x1"])
    assert _verify(head.state_root, keccak(nobody), result["accountProof"]) == b""
    assert (result["balance"], result["nonce"]) == ("0x0", "0x0")
    assert result["codeHash"] == "0x" + EMPTY_SHA3.hex() and result["storageHash"] == "0x" + BLANK_ROOT_HASH.hex()
    assert result["storageProof"] == [{"key": "0x1", "value": "0x0", "proof": []}]


@pytest.mark.parametrize("key", ["0x" + "00" * 33, "0xzz"])
def test_bad_storage_keys_are_refused_before_reading_state(chain, key) -> None:
    with pytest.raises(ServerError, match="unable to decode storage key"):
        account_proof(chain.store, chain.head.state_root, CONTRACT, ["0x0", key])
