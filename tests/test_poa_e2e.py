"""Proof of Attribution end to end, as its users see it: web3.py over JSON-RPC against a
real node, with wallets signing locally.

Three contributors: Alice writes an original passage; Bob submits a near-duplicate of
it (a few words changed) and an original passage of his own; Carol submits junk, which
the owner rejects.  The owner publishes; a model builder registers a model trained on
the version; a user pays for inferences whose outputs quote the passages.  The rewards
land with the right contributors, the near-duplicate earns nothing, the junk's stake
went to the owner, and every claim pays exactly what was credited.  Then a second node,
fed the same blocks with `openledger-node import`, computes the same state root, the
same receipts and the same rewards, building its own attribution indexes."""
from __future__ import annotations

from pathlib import Path

import pytest
import rlp
from web3 import Web3
from web3.exceptions import ContractCustomError
from web3.logs import DISCARD
from web3.middleware import SignAndSendRawMiddlewareBuilder

from conftest import running_node
from node_process import init_datadir, run_cli
from openledger_node.precompiles.abi import load

REGISTRY = "0x0000000000000000000000000000000000000a01"  # EIP-55: all lower case
POA = "0x0000000000000000000000000000000000000a02"
TREASURY = "0xfd965f774bF61E1b585f69Bb185abB49EBa90757"
OPEN = 10**18

ALICE_TEXT = (
    "The lighthouse keeper climbed the spiral stairs every evening at dusk, trimmed the wick of the great "
    "lamp, polished the brass lens until it gleamed, and wrote the weather, the passing ships and the height "
    "of the tide in a leather logbook that his grandfather had started sixty years before."
)
# A near-duplicate: three words changed.
BOB_COPY = ALICE_TEXT.replace("evening", "night").replace("great", "big").replace("leather", "worn")
BOB_TEXT = (
    "Sourdough bread rises slowly because wild yeast and lactic acid bacteria ferment the dough together, "
    "producing carbon dioxide that lifts the loaf and acids that give the crumb its sour taste and long keeping."
)
CAROL_JUNK = "click here click here free money free money click here now now now"


def abi(name: str) -> list:
    import json
    from importlib import resources

    return json.loads(resources.files("openledger_node.precompiles").joinpath("abi", f"{name}.json").read_text())


def transact(w3: Web3, call, sender: str, value: int = 0):
    receipt = w3.eth.wait_for_transaction_receipt(call.transact({"from": sender, "value": value}), timeout=30,
                                                  poll_latency=0.02)
    assert receipt["status"] == 1
    return receipt


def test_contributors_are_paid_for_what_inferences_use_and_a_second_node_agrees(
    tmp_path: Path, dev_accounts: list[tuple[str, str]]
) -> None:
    (owner, owner_key), (alice, alice_key), (bob, bob_key), (carol, carol_key), (builder, builder_key), \
        (user, user_key) = dev_accounts[:6]
    with running_node(tmp_path / "sequencer") as node:
        w3 = Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 30}))
        w3.middleware_onion.inject(
            SignAndSendRawMiddlewareBuilder.build([owner_key, alice_key, bob_key, carol_key, builder_key, user_key]),
            name="wallets", layer=0,
        )
        registry = w3.eth.contract(address=REGISTRY, abi=abi("IDatanetRegistry"))
        poa = w3.eth.contract(address=POA, abi=abi("IProofOfAttribution"))

        # A Datanet with a stake of 1 OPEN per contribution.
        receipt = transact(w3, registry.functions.createDatanet("Coastal life", "stories of the sea", OPEN), owner)
        (created,) = registry.events.DatanetCreated().process_receipt(receipt, errors=DISCARD)
        d = created["args"]["datanetId"]

        def contribute(who: str, text: str, stake: int = OPEN) -> int:
            receipt = transact(w3, registry.functions.contribute(d, text.encode()), who, stake)
            return registry.events.ContributionSubmitted().process_receipt(receipt, errors=DISCARD)[0]["args"]["contributionId"]

        a = contribute(alice, ALICE_TEXT)
        b_copy = contribute(bob, BOB_COPY)
        b = contribute(bob, BOB_TEXT)
        junk = contribute(carol, CAROL_JUNK, 2 * OPEN)
        # An exact duplicate reverts with a custom error; the wallet sees which.
        with pytest.raises(ContractCustomError) as info:
            registry.functions.contribute(d, ALICE_TEXT.encode()).transact({"from": carol, "value": OPEN})
        error = load("IDatanetRegistry").decode_error(bytes.fromhex(info.value.data[2:]))
        assert error == ("DuplicateContribution", {"datanetId": d, "existingContributionId": a})

        owner_before = w3.eth.get_balance(owner)
        fees = 0
        for c in (a, b_copy, b):
            fees += _fee(transact(w3, registry.functions.review(d, c, True), owner))
        fees += _fee(transact(w3, registry.functions.review(d, junk, False), owner))
        receipt = transact(w3, registry.functions.publishVersion(d), owner)
        fees += _fee(receipt)
        assert w3.eth.get_balance(owner) == owner_before + 2 * OPEN - fees  # Carol's stake, slashed to the owner
        refunded = {e["args"]["contributionId"] for e in registry.events.StakeRefunded().process_receipt(receipt, errors=DISCARD)}
        assert refunded == {a, b_copy, b}
        assert w3.eth.get_balance(REGISTRY) == 0

        receipt = transact(w3, poa.functions.registerModel("coastal-lora", [d], [1], b"\x07" * 32, 1_500), builder)
        model = poa.events.ModelRegistered().process_receipt(receipt, errors=DISCARD)[0]["args"]["modelId"]

        # Inference 1 quotes the lighthouse passage (held by Alice's original and Bob's copy).
        out1 = ("As the old story goes, the keeper trimmed the wick of the great lamp, polished the brass lens "
                "until it gleamed, and wrote the weather, the passing ships and the height of the tide.").encode()
        # Inference 2 quotes Bob's own passage.
        out2 = ("Why is it sour? Wild yeast and lactic acid bacteria ferment the dough together, producing carbon "
                "dioxide that lifts the loaf.").encode()
        # Inference 3 quotes nothing.
        out3 = b"The weather tomorrow will be mild with a light breeze from the west."
        fee1, fee2, fee3 = 10 * OPEN + 3, 4 * OPEN, 999
        rewards: dict[str, int] = {}
        credited: list[tuple[int, int, str]] = []
        expected_treasury = 0
        for output, fee in ((out1, fee1), (out2, fee2), (out3, fee3)):
            preview = poa.functions.previewAttribution(model, output).call()
            receipt = transact(w3, poa.functions.attribute(model, output), user, fee)
            (inference,) = poa.events.InferenceAttributed().process_receipt(receipt, errors=DISCARD)
            events = [e["args"] for e in poa.events.RewardCredited().process_receipt(receipt, errors=DISCARD)]
            assert [(e["datanetId"], e["contributionId"], e["contributor"], e["score"]) for e in events] == \
                list(zip(*preview))
            owner_part = fee * 1_500 // 10_000
            assert inference["args"]["ownerPart"] == owner_part
            assert inference["args"]["ownerPart"] + inference["args"]["contributorsPart"] + \
                inference["args"]["treasuryPart"] == fee
            assert sum(e["amount"] for e in events) == inference["args"]["contributorsPart"]
            for e in events:
                rewards[e["contributor"]] = rewards.get(e["contributor"], 0) + e["amount"]
                credited.append((inference["args"]["inferenceId"], e["contributionId"], e["contributor"]))
            rewards[builder] = rewards.get(builder, 0) + owner_part
            expected_treasury += inference["args"]["treasuryPart"]

        # Who was paid for what: Alice alone for the lighthouse (Bob's near-duplicate earned
        # nothing), Bob for his sourdough passage, nobody for inference 3 (the treasury).
        assert credited == [(1, a, alice), (2, b, bob)]
        assert rewards[alice] == fee1 - fee1 * 1_500 // 10_000
        assert rewards[bob] == fee2 - fee2 * 1_500 // 10_000
        assert carol not in rewards
        assert expected_treasury == fee3 - fee3 * 1_500 // 10_000
        assert poa.functions.claimable(TREASURY).call() == expected_treasury
        assert w3.eth.get_balance(POA) == fee1 + fee2 + fee3
        spans = node.rpc("ol_getInference", "0x1")["spans"]
        assert [span["contributionIds"] for span in spans] == [[hex(a)]]

        # Every claim pays exactly what was credited.
        for account in (alice, bob, builder):
            assert poa.functions.claimable(account).call() == rewards[account]
            before = w3.eth.get_balance(account)
            receipt = transact(w3, poa.functions.claim(), account)
            assert poa.events.Claimed().process_receipt(receipt, errors=DISCARD)[0]["args"]["amount"] == rewards[account]
            assert w3.eth.get_balance(account) == before + rewards[account] - _fee(receipt)
            assert poa.functions.claimable(account).call() == 0
        assert w3.eth.get_balance(POA) == expected_treasury
        with pytest.raises(ContractCustomError):
            poa.functions.claim().transact({"from": carol})

        head = node.rpc("eth_blockNumber")
        head_block = node.rpc("eth_getBlockByNumber", head, False)
        blocks = [bytes.fromhex(node.rpc("debug_getRawBlock", hex(n))[2:]) for n in range(1, int(head, 16) + 1)]
        receipts = [node.rpc("eth_getBlockReceipts", hex(n)) for n in range(1, int(head, 16) + 1)]
        inferences = [node.rpc("ol_getInference", hex(i)) for i in (1, 2, 3)]

    # A second node, fed the same blocks.
    chain_file = tmp_path / "chain.rlp"
    chain_file.write_bytes(b"".join(blocks))
    assert all(rlp.decode(block) for block in blocks)
    init_datadir(tmp_path / "verifier")
    done = run_cli("import", str(chain_file), "--datadir", str(tmp_path / "verifier"), timeout=120)
    assert done.returncode == 0, done.stderr
    assert list((tmp_path / "verifier" / "attribution").glob("*.idx"))  # built by the verifier itself
    with running_node(tmp_path / "verifier", mining=False) as verifier:
        assert verifier.rpc("eth_getBlockByNumber", head, False)["stateRoot"] == head_block["stateRoot"]
        assert verifier.rpc("eth_getBlockByNumber", head, False)["hash"] == head_block["hash"]
        assert [verifier.rpc("eth_getBlockReceipts", hex(n)) for n in range(1, int(head, 16) + 1)] == receipts
        assert [verifier.rpc("ol_getInference", hex(i)) for i in (1, 2, 3)] == inferences
        assert verifier.rpc("ol_claimable", TREASURY) == hex(expected_treasury)


def _fee(receipt) -> int:
    return receipt["gasUsed"] * receipt["effectiveGasPrice"]
