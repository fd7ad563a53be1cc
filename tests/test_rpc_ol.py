"""The ``ol_`` JSON-RPC namespace: what a UI shows about Datanets, models and inferences,
read from a real node after real signed transactions."""
from __future__ import annotations

import json
from pathlib import Path

from eth_account import Account
from eth_utils import keccak

from conftest import running_node
from openledger_node.attribution import token_ids
from precompile_client import OPEN, POA, REGISTRY, PrecompileClient

REPO = Path(__file__).resolve().parent.parent

FOX = (b"The quick brown fox jumps over the lazy dog near the river bank every single morning "
       b"before the farmers wake up and start their long day in the golden wheat fields.")
LEAF = "Photosynthesis converts light energy into chemical energy stored in glucose inside the chloroplasts of plant cells, ça va.".encode()
JUNK = b"buy cheap watches buy cheap watches now now now"
OUTPUT = (b"Well: the quick brown fox jumps over the lazy dog near the river bank every single morning! Also, "
          b"photosynthesis converts light energy into chemical energy stored in glucose inside the chloroplasts.")


def addr(key: str) -> str:
    return Account.from_key(key).address.lower()


def contains(haystack: list[int], needle: list[int]) -> bool:
    return any(haystack[i : i + len(needle)] == needle for i in range(len(haystack) - len(needle) + 1))


def test_ol_namespace_shows_datanets_models_and_attribution(devnet, dev_accounts) -> None:
    owner, alice, bob, carol, builder, user = [key for _, key in dev_accounts[:6]]
    client = PrecompileClient(devnet)
    client.send(owner, REGISTRY, "createDatanet", "science", "plain facts", OPEN)
    client.send(carol, REGISTRY, "createDatanet", "other", "", 0)
    for key, data in ((alice, FOX), (bob, LEAF), (carol, JUNK)):
        client.send(key, REGISTRY, "contribute", 1, data, value=OPEN)
    client.send(owner, REGISTRY, "review", 1, 1, True)
    client.send(owner, REGISTRY, "review", 1, 2, True)
    client.send(owner, REGISTRY, "review", 1, 3, False)
    publish = client.send(owner, REGISTRY, "publishVersion", 1)
    client.send(builder, POA, "registerModel", "science-lora", [1], [1], b"\x42" * 32, 2_000)
    receipt = client.send(user, POA, "attribute", 1, OUTPUT, value=3 * OPEN + 1)

    datanets = devnet.rpc("ol_listDatanets")
    assert [d["name"] for d in datanets] == ["science", "other"]
    assert devnet.rpc("ol_listDatanets", "0x2", "0x5") == datanets[1:]
    assert devnet.rpc("ol_listDatanets", "0x3") == []
    science = devnet.rpc("ol_getDatanet", "0x1")
    assert science == {
        **datanets[0], "versions": [{
            "datanetId": "0x1", "version": "0x1", "contributionCount": "0x2",
            "root": "0x" + publish.named("VersionPublished")[0]["root"].hex(), "tokens": science["acceptedTokens"],
            "publishedAtBlock": publish.raw["blockNumber"],
        }],
    }
    assert science["owner"] == addr(owner) and science["minStake"] == hex(OPEN)
    assert (science["contributionCount"], science["acceptedCount"], science["versionCount"]) == ("0x3", "0x2", "0x1")
    assert devnet.rpc("ol_getDatanet", "0x9") is None

    contributions = devnet.rpc("ol_getContributions", "0x1")
    assert [(c["id"], c["status"], c["version"]) for c in contributions] == [
        ("0x1", "accepted", "0x1"), ("0x2", "accepted", "0x1"), ("0x3", "rejected", None)]
    assert "data" not in contributions[0]
    assert contributions[0]["contributor"] == addr(alice) and contributions[0]["dataHash"] == "0x" + keccak(FOX).hex()
    rejected = devnet.rpc("ol_getContributions", "0x1", {"status": "rejected", "includeData": True})
    assert [(c["id"], c["data"]) for c in rejected] == [("0x3", JUNK.decode())]
    assert devnet.rpc("ol_getContributions", "0x1", {"fromId": "0x2", "limit": "0x1"})[0]["id"] == "0x2"
    assert devnet.rpc("ol_getContribution", "0x1", "0x2")["data"] == LEAF.decode()
    assert devnet.rpc("ol_getContribution", "0x1", "0x4") is None
    assert devnet.rpc("ol_getVersion", "0x1", "0x1")["contributionIds"] == ["0x1", "0x2"]
    assert devnet.rpc("ol_getVersion", "0x1", "0x2") is None

    model = devnet.rpc("ol_getModel", "0x1")
    assert model == {
        "id": "0x1", "owner": addr(builder), "name": "science-lora", "adapterHash": "0x" + "42" * 32,
        "ownerShareBps": hex(2_000), "datanets": [{"datanetId": "0x1", "version": "0x1", "root": science["versions"][0]["root"]}],
        "inferenceCount": "0x1", "registeredAtBlock": model["registeredAtBlock"],
    }

    inference = devnet.rpc("ol_getInference", "0x1")
    (attributed,) = receipt.named("InferenceAttributed")
    assert inference["output"] == OUTPUT.decode() and inference["caller"] == addr(user)
    assert int(inference["fee"], 16) == 3 * OPEN + 1
    assert int(inference["ownerPart"], 16) == attributed["ownerPart"]
    assert int(inference["contributorsPart"], 16) == attributed["contributorsPart"]
    # The credits are exactly the rewards the transaction paid.
    assert [(int(c["contributionId"], 16), c["contributor"], int(c["score"], 16), int(c["amount"], 16))
            for c in inference["credits"]] == [
        (r["contributionId"], r["contributor"], r["score"], r["amount"]) for r in receipt.named("RewardCredited")]
    # Each span points into the output, and its tokens occur in the contribution credited.
    assert len(inference["spans"]) == 2
    texts = {"0x1": FOX, "0x2": LEAF}
    for span in inference["spans"]:
        piece = OUTPUT[span["byteStart"]:span["byteEnd"]]
        assert span["text"] == piece.decode()
        assert span["end"] - span["start"] == len(token_ids(piece)) >= 8
        (holder,) = span["contributionIds"]
        assert contains(token_ids(texts[holder]).tolist(), token_ids(piece).tolist())
    assert inference["spans"][0]["text"] == "the quick brown fox jumps over the lazy dog near the river bank every single morning"

    assert int(devnet.rpc("ol_claimable", addr(alice)), 16) == receipt.named("RewardCredited")[0]["amount"]
    assert devnet.rpc("ol_claimable", addr(carol)) == "0x0"
    assert devnet.rpc("ol_getInference", "0x2") is None
    # State at an earlier block.
    before = hex(int(receipt.raw["blockNumber"], 16) - 1)
    assert devnet.rpc("ol_getInference", "0x1", before) is None
    assert devnet.rpc("ol_getModel", "0x1", before)["inferenceCount"] == "0x0"


def test_ol_bad_parameters_get_clear_errors(devnet) -> None:
    for method, params, message in (
        ("ol_listDatanets", ["0x1", "0x0"], "limit must be between 1 and 1000"),
        ("ol_listDatanets", ["0x1", hex(1001)], "limit must be between 1 and 1000"),
        ("ol_getContributions", ["0x1", {"status": "maybe"}], "status must be one of"),
        ("ol_getContributions", ["0x1", {"colour": "red"}], "unknown options: colour"),
        ("ol_getContributions", ["0x1", "all"], "options must be an object"),
        ("ol_getDatanet", ["one"], "datanetId"),
        ("ol_claimable", ["0x1234"], "account"),
    ):
        body = devnet.request(method, *params)
        assert body["error"]["code"] == -32602, (method, body)
        assert message in body["error"]["message"], (method, body)


def test_ol_namespace_exists_only_on_openledger_chains(tmp_path) -> None:
    genesis = json.loads((REPO / "genesis" / "devnet.json").read_text())
    del genesis["config"]["openledger"]
    path = tmp_path / "plain.json"
    path.write_text(json.dumps(genesis))
    with running_node(tmp_path / "data", genesis=path) as node:
        assert node.request("ol_listDatanets")["error"]["code"] == -32601
