"""The DatanetRegistry (0x…0A01) and ProofOfAttribution (0x…0A02) precompiles, through a
real node: locally signed transactions over JSON-RPC, a real LevelDB, receipts and
eth_call results decoded against the Solidity interfaces."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from eth_abi import decode, encode
from eth_account import Account
from eth_utils import keccak

from conftest import RunningNode, running_node
from openledger_node.contracts import compile_contracts
from openledger_node.precompiles import abi as abi_module
from openledger_node.precompiles.registry import DatanetRegistry, accumulate_root
from precompile_client import OPEN, POA, REGISTRY, PrecompileClient, Reverted

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

TREASURY = "0xfd965f774bF61E1b585f69Bb185abB49EBa90757"

FOX = (b"The quick brown fox jumps over the lazy dog near the river bank every single morning "
       b"before the farmers wake up and start their long day in the golden wheat fields.")
LEAF = (b"Photosynthesis converts light energy into chemical energy that is stored in glucose "
        b"molecules inside the chloroplasts of green plant cells during the day.")
OUTPUT = (b"Some say the quick brown fox jumps over the lazy dog near the river bank every single morning, "
          b"and that photosynthesis converts light energy into chemical energy that is stored in glucose.")


def keys(dev_accounts):
    return [key for _, key in dev_accounts]


def address(key: str) -> str:
    return Account.from_key(key).address


@pytest.fixture
def client(devnet: RunningNode) -> PrecompileClient:
    return PrecompileClient(devnet)


def create(client, key, name="medical notes", min_stake=0, description="") -> int:
    receipt = client.send(key, REGISTRY, "createDatanet", name, description, min_stake)
    assert receipt.ok
    return receipt.named("DatanetCreated")[0]["datanetId"]


def contribute(client, key, d, data, stake=0) -> int:
    receipt = client.send(key, REGISTRY, "contribute", d, data, value=stake)
    assert receipt.ok
    return receipt.named("ContributionSubmitted")[0]["contributionId"]


def published(client, owner, texts: list[tuple[str, bytes]], *, min_stake=0) -> tuple[int, list[int]]:
    """A Datanet with ``texts`` (contributor key, data) accepted and published as version 1."""
    d = create(client, owner, min_stake=min_stake)
    ids = [contribute(client, key, d, data, stake=min_stake) for key, data in texts]
    for c in ids:
        assert client.send(owner, REGISTRY, "review", d, c, True).ok
    assert client.send(owner, REGISTRY, "publishVersion", d).ok
    return d, ids


# -- the interfaces ---------------------------------------------------------------------
def test_committed_abi_is_what_solc_compiles_from_the_interfaces() -> None:
    import build_precompile_abi

    for path, text in build_precompile_abi.render().items():
        assert path.read_text() == text, f"{path.name} is stale: run scripts/build_precompile_abi.py"


def test_an_implementation_that_does_not_match_its_interface_is_refused() -> None:
    class Missing(DatanetRegistry):
        publishVersion = None  # type: ignore[assignment]

    with pytest.raises(RuntimeError, match=r"missing \['publishVersion'\]"):
        Missing()

    class Extra(DatanetRegistry):
        def burnEverything(self, call):
            return ()

    with pytest.raises(RuntimeError, match=r"not in the ABI \['burnEverything'\]"):
        Extra()


def test_interface_selectors_events_and_errors_match_solidity() -> None:
    registry = abi_module.load("IDatanetRegistry")
    assert registry.functions["contribute"].selector == keccak(text="contribute(uint256,bytes)")[:4]
    assert registry.functions["contribute"].payable and not registry.functions["review"].payable
    assert not registry.functions["getDatanet"].writes
    assert registry.errors["StakeTooLow"].selector == keccak(text="StakeTooLow(uint256,uint256)")[:4]
    poa = abi_module.load("IProofOfAttribution")
    assert poa.events["RewardCredited"].topic0 == keccak(
        text="RewardCredited(uint256,address,uint256,uint256,uint256,uint256)"
    )
    assert set(poa.functions) == {
        "registerModel", "attribute", "previewAttribution", "claimable", "claim", "modelCount", "getModel",
        "inferenceCount", "getInference",
    }


# -- call rules -------------------------------------------------------------------------
def test_unknown_selector_and_short_calldata_revert(client, dev_accounts) -> None:
    owner = keys(dev_accounts)[0]
    for data in (b"\xde\xad\xbe\xef" + b"\0" * 32, b"\x01", b""):
        receipt = client.send_raw(owner, REGISTRY, data, gas=100_000)
        assert receipt["status"] == "0x0"
    with pytest.raises(Reverted) as info:
        client.call_data(REGISTRY, b"\xde\xad\xbe\xef")
    assert info.value.error == "UnknownSelector" and info.value.args_ == {"selector": b"\xde\xad\xbe\xef"}


def test_value_to_a_non_payable_function_reverts_and_is_returned(client, dev_accounts) -> None:
    owner = keys(dev_accounts)[0]
    with pytest.raises(Reverted, match="NotPayable"):
        client.call(REGISTRY, "createDatanet", "x", "", 0, sender=address(owner), value=1)
    before = client.balance(address(owner))
    receipt = client.send_raw(owner, REGISTRY, client.calldata(REGISTRY, "createDatanet", "x", "", 0), value=5 * OPEN,
                              gas=300_000)
    assert receipt["status"] == "0x0"
    fee = int(receipt["gasUsed"], 16) * int(receipt["effectiveGasPrice"], 16)
    assert client.balance(address(owner)) == before - fee  # the 5 OPEN came back
    assert client.call(REGISTRY, "datanetCount") == (0,)


def test_malformed_arguments_revert_with_invalid_argument(client) -> None:
    with pytest.raises(Reverted) as info:
        client.call_data(REGISTRY, client.calldata(REGISTRY, "getDatanet", 1)[:20])  # a truncated argument
    assert info.value.error == "InvalidArgument"
    assert "calldata does not decode as getDatanet(uint256)" in info.value.args_["reason"]


@pytest.fixture
def caller_contract(client, dev_accounts) -> str:
    artifact = compile_contracts([REPO / "tests" / "contracts" / "PrecompileCaller.sol"])["PrecompileCaller"]
    receipt = client.send_raw(keys(dev_accounts)[0], None, bytes.fromhex(artifact["bytecode"][2:]), gas=2_000_000)
    assert receipt["status"] == "0x1"
    return receipt["contractAddress"]


def _caller_call(client, contract: str, function: str, *args, sender: str):
    signature = {"callTarget": "callTarget(address,bytes)", "staticCallTarget": "staticCallTarget(address,bytes)",
                 "delegateCallTarget": "delegateCallTarget(address,bytes)"}[function]
    data = keccak(text=signature)[:4] + encode(["address", "bytes"], list(args))
    result = client.node.rpc("eth_call", {"from": sender, "to": contract, "data": "0x" + data.hex()}, "latest")
    return decode(["bool", "bytes"], bytes.fromhex(result[2:]))


def test_static_and_delegate_calls_are_refused_but_static_reads_work(client, dev_accounts, caller_contract) -> None:
    owner = keys(dev_accounts)[0]
    create(client, owner)
    write = client.calldata(REGISTRY, "createDatanet", "from a static call", "", 0)
    ok, ret = _caller_call(client, caller_contract, "staticCallTarget", REGISTRY, write, sender=address(owner))
    assert not ok and ret == abi_module.load("IDatanetRegistry").errors["WriteInStaticCall"].encode()
    ok, ret = _caller_call(client, caller_contract, "staticCallTarget", REGISTRY,
                           client.calldata(REGISTRY, "datanetCount"), sender=address(owner))
    assert ok and int.from_bytes(ret, "big") == 1
    for data in (write, client.calldata(REGISTRY, "datanetCount")):
        ok, ret = _caller_call(client, caller_contract, "delegateCallTarget", REGISTRY, data, sender=address(owner))
        assert not ok and ret == abi_module.load("IDatanetRegistry").errors["DelegateCallNotAllowed"].encode()
    ok, ret = _caller_call(client, caller_contract, "delegateCallTarget", POA,
                           client.calldata(POA, "claim"), sender=address(owner))
    assert not ok and ret == abi_module.load("IProofOfAttribution").errors["DelegateCallNotAllowed"].encode()


def test_a_contract_can_own_a_datanet_through_the_solidity_interface(client, dev_accounts, caller_contract) -> None:
    owner = keys(dev_accounts)[0]
    data = keccak(text="createDatanet(string)")[:4] + encode(["string"], ["dao data"])
    receipt = client.send_raw(owner, caller_contract, data)
    assert receipt["status"] == "0x1"
    events = client.events(receipt)
    assert events[0][0] == "DatanetCreated"
    assert events[0][1]["owner"].lower() == caller_contract.lower()
    assert client.call(REGISTRY, "getDatanet", 1)[0].lower() == caller_contract.lower()


# -- DatanetRegistry ------------------------------------------------------------------------
def test_create_and_read_a_datanet(client, dev_accounts) -> None:
    owner = keys(dev_accounts)[0]
    receipt = client.send(owner, REGISTRY, "createDatanet", "médical", "doctors' notes", 3 * OPEN)
    assert receipt.events == [("DatanetCreated", {"datanetId": 1, "owner": address(owner).lower(), "name": "médical",
                                                  "minStake": 3 * OPEN})]
    block = int(receipt.raw["blockNumber"], 16)
    assert client.call(REGISTRY, "getDatanet", 1) == (address(owner).lower(), "médical", "doctors' notes", 3 * OPEN,
                                                      0, 0, 0, block)
    assert client.call(REGISTRY, "datanetCount") == (1,)
    assert create(client, owner, name="x" * 64) == 2
    with pytest.raises(Reverted, match="name must be 1 to 64 bytes, not 65"):
        client.send(owner, REGISTRY, "createDatanet", "x" * 65, "", 0)
    with pytest.raises(Reverted, match="name must be 1 to 64 bytes, not 0"):
        client.send(owner, REGISTRY, "createDatanet", "", "", 0)
    with pytest.raises(Reverted, match="description must be at most 1024 bytes"):
        client.send(owner, REGISTRY, "createDatanet", "a", "d" * 1025, 0)
    for d in (0, 3, 2**255):
        with pytest.raises(Reverted) as info:
            client.call(REGISTRY, "getDatanet", d)
        assert info.value.error == "UnknownDatanet" and info.value.args_ == {"datanetId": d}


def test_contribute_checks_stake_data_and_duplicates(client, dev_accounts) -> None:
    owner, alice, bob = keys(dev_accounts)[:3]
    d = create(client, owner, min_stake=OPEN)
    with pytest.raises(Reverted) as info:
        client.send(alice, REGISTRY, "contribute", d, FOX, value=OPEN - 1)
    assert info.value.error == "StakeTooLow" and info.value.args_ == {"sent": OPEN - 1, "minStake": OPEN}
    cases = {
        b"": "empty",
        b"\xff\xfe not text": "not_utf8",
        b"!!! ??? ...": "no_tokens",
        b"a" * 262_145: "too_large",
    }
    for data, reason in cases.items():
        with pytest.raises(Reverted) as info:
            client.call(REGISTRY, "contribute", d, data, sender=address(alice), value=OPEN)
        assert info.value.error == "InvalidContribution"
        assert info.value.args_["reason"].startswith(reason + ": ")
    before = client.balance(REGISTRY)
    receipt = client.send(alice, REGISTRY, "contribute", d, FOX, value=2 * OPEN)
    block = int(receipt.raw["blockNumber"], 16)
    assert receipt.events == [("ContributionSubmitted", {
        "datanetId": d, "contributionId": 1, "contributor": address(alice).lower(), "dataHash": keccak(FOX),
        "size": len(FOX), "stake": 2 * OPEN,
    })]
    assert client.balance(REGISTRY) == before + 2 * OPEN  # the stake is held by the registry
    tokens = client.call(REGISTRY, "getContribution", d, 1)[3]
    assert tokens == 31
    assert client.call(REGISTRY, "getContribution", d, 1) == (
        address(alice).lower(), keccak(FOX), len(FOX), tokens, 2 * OPEN, 0, 0, block)
    with pytest.raises(Reverted) as info:
        client.send(bob, REGISTRY, "contribute", d, FOX, value=OPEN)  # the same bytes, from anyone
    assert info.value.error == "DuplicateContribution" and info.value.args_ == {"datanetId": d, "existingContributionId": 1}
    assert contribute(client, bob, d, FOX + b" ", stake=OPEN) == 2  # not an exact duplicate
    assert contribute(client, bob, create(client, owner), FOX) == 1  # another Datanet: no duplicate
    assert contribute(client, bob, d, "東京の天気は晴れです".encode(), stake=OPEN) == 3
    with pytest.raises(Reverted, match="UnknownContribution"):
        client.call(REGISTRY, "getContribution", d, 4)


def test_review_is_for_the_owner_once_and_rejection_slashes_the_stake(client, dev_accounts) -> None:
    owner, alice, bob = keys(dev_accounts)[:3]
    d = create(client, owner, min_stake=OPEN)
    good = contribute(client, alice, d, FOX, stake=OPEN)
    junk = contribute(client, bob, d, b"buy cheap watches buy cheap watches now", stake=3 * OPEN)
    with pytest.raises(Reverted) as info:
        client.send(alice, REGISTRY, "review", d, good, True)
    assert info.value.error == "NotDatanetOwner" and info.value.args_ == {"datanetId": d, "caller": address(alice).lower()}
    with pytest.raises(Reverted, match="UnknownContribution"):
        client.send(owner, REGISTRY, "review", d, 9, True)
    with pytest.raises(Reverted, match="UnknownDatanet"):
        client.send(owner, REGISTRY, "review", 7, good, True)

    owner_before, registry_before = client.balance(address(owner)), client.balance(REGISTRY)
    receipt = client.send(owner, REGISTRY, "review", d, junk, False)
    assert receipt.events == [("ContributionReviewed", {"datanetId": d, "contributionId": junk, "accepted": False,
                                                        "slashed": 3 * OPEN})]
    assert client.balance(address(owner)) == owner_before + 3 * OPEN - receipt.fee_paid
    assert client.balance(REGISTRY) == registry_before - 3 * OPEN
    assert client.call(REGISTRY, "getContribution", d, junk)[5] == 2  # Rejected
    receipt = client.send(owner, REGISTRY, "review", d, good, True)
    assert receipt.named("ContributionReviewed") == [{"datanetId": d, "contributionId": good, "accepted": True, "slashed": 0}]
    for c, status in ((good, 1), (junk, 2)):
        with pytest.raises(Reverted) as info:
            client.send(owner, REGISTRY, "review", d, c, True)
        assert info.value.error == "AlreadyReviewed" and info.value.args_["status"] == status
    # Rejected data may be submitted again (and reviewed again); accepted data may not.
    assert contribute(client, bob, d, b"buy cheap watches buy cheap watches now", stake=OPEN) == 3
    with pytest.raises(Reverted, match="DuplicateContribution"):
        client.send(bob, REGISTRY, "contribute", d, FOX, value=OPEN)
    assert client.call(REGISTRY, "getDatanet", d)[4:7] == (3, 1, 0)


def test_publish_freezes_versions_refunds_stakes_and_chains_roots(client, dev_accounts, devnet) -> None:
    owner, alice, bob, carol = keys(dev_accounts)[:4]
    d = create(client, owner, min_stake=OPEN)
    with pytest.raises(Reverted) as info:
        client.send(owner, REGISTRY, "publishVersion", d)
    assert info.value.error == "NothingToPublish"
    a = contribute(client, alice, d, FOX, stake=OPEN)
    b = contribute(client, bob, d, LEAF, stake=2 * OPEN)
    c = contribute(client, carol, d, b"A third text about the weather in the mountains in spring.", stake=OPEN)
    # Accepted out of id order: the version still lists ids ascending.
    for x in (b, a):
        client.send(owner, REGISTRY, "review", d, x, True)
    with pytest.raises(Reverted, match="NotDatanetOwner"):
        client.send(alice, REGISTRY, "publishVersion", d)
    alice_before, bob_before, carol_before = (client.balance(address(k)) for k in (alice, bob, carol))
    receipt = client.send(owner, REGISTRY, "publishVersion", d)
    root1 = accumulate_root(accumulate_root(b"\0" * 32, b, keccak(LEAF)), a, keccak(FOX))  # in the order accepted
    assert receipt.named("StakeRefunded") == [
        {"datanetId": d, "contributionId": a, "contributor": address(alice).lower(), "amount": OPEN},
        {"datanetId": d, "contributionId": b, "contributor": address(bob).lower(), "amount": 2 * OPEN},
    ]
    tokens = client.call(REGISTRY, "getContribution", d, a)[3] + client.call(REGISTRY, "getContribution", d, b)[3]
    assert receipt.named("VersionPublished") == [{"datanetId": d, "version": 1, "contributionCount": 2, "root": root1,
                                                  "tokens": tokens}]
    assert client.balance(address(alice)) == alice_before + OPEN
    assert client.balance(address(bob)) == bob_before + 2 * OPEN
    assert client.balance(address(carol)) == carol_before  # still pending: still staked
    assert client.balance(REGISTRY) == OPEN
    block = int(receipt.raw["blockNumber"], 16)
    assert client.call(REGISTRY, "getVersion", d, 1) == (2, root1, tokens, block)
    assert client.call(REGISTRY, "getVersionContributions", d, 1) == ([a, b],)
    assert client.call(REGISTRY, "getContribution", d, a)[5:7] == (1, 1)  # accepted, in version 1
    assert client.call(REGISTRY, "getContribution", d, c)[5:7] == (0, 0)
    with pytest.raises(Reverted, match="NothingToPublish"):
        client.send(owner, REGISTRY, "publishVersion", d)

    client.send(owner, REGISTRY, "review", d, c, True)
    receipt = client.send(owner, REGISTRY, "publishVersion", d)
    third = b"A third text about the weather in the mountains in spring."
    root2 = accumulate_root(root1, c, keccak(third))
    assert receipt.named("VersionPublished")[0]["root"] == root2
    assert client.call(REGISTRY, "getVersionContributions", d, 2) == ([a, b, c],)
    assert client.call(REGISTRY, "getVersionContributions", d, 1) == ([a, b],)  # frozen
    assert client.call(REGISTRY, "getContribution", d, c)[6] == 2
    assert client.call(REGISTRY, "getDatanet", d)[4:7] == (3, 3, 2)
    assert client.balance(REGISTRY) == 0
    for v in (0, 3):
        with pytest.raises(Reverted) as info:
            client.call(REGISTRY, "getVersion", d, v)
        assert info.value.error == "UnknownVersion" and info.value.args_ == {"datanetId": d, "version": v}
    # The index of each version sits beside the chain data, named by its root.
    files = sorted(p.name for p in (devnet.datadir / "attribution").iterdir())
    assert files == sorted([f"{d}-1-{root1.hex()}.idx", f"{d}-2-{root2.hex()}.idx"])


# -- ProofOfAttribution ----------------------------------------------------------------------
def test_register_model_validates_its_datanet_versions(client, dev_accounts) -> None:
    owner, alice, builder = keys(dev_accounts)[:3]
    d, _ = published(client, owner, [(alice, FOX)])
    e = create(client, owner, name="empty")
    bad = [
        (("m", [d], [2], b"\0" * 32, 0), "UnknownVersion", {"datanetId": d, "version": 2}),
        (("m", [e], [1], b"\0" * 32, 0), "UnknownVersion", {"datanetId": e, "version": 1}),
        (("m", [d, e], [1], b"\0" * 32, 0), "InvalidArgument", None),
        (("m", [], [], b"\0" * 32, 0), "InvalidArgument", None),
        (("m", [d, d], [1, 1], b"\0" * 32, 0), "InvalidArgument", None),
        (("m", [d], [1], b"\0" * 32, 10_001), "InvalidArgument", None),
        (("", [d], [1], b"\0" * 32, 0), "InvalidArgument", None),
        (("m", list(range(1, 18)), [1] * 17, b"\0" * 32, 0), "InvalidArgument", None),
    ]
    for args, error, expected in bad:
        with pytest.raises(Reverted) as info:
            client.send(builder, POA, "registerModel", *args)
        assert info.value.error == error, args
        if expected is not None:
            assert info.value.args_ == expected
    receipt = client.send(builder, POA, "registerModel", "fox-lora", [d], [1], b"\x11" * 32, 2_500)
    assert receipt.events == [("ModelRegistered", {"modelId": 1, "owner": address(builder).lower(), "name": "fox-lora",
                                                   "adapterHash": b"\x11" * 32, "ownerShareBps": 2_500})]
    block = int(receipt.raw["blockNumber"], 16)
    assert client.call(POA, "getModel", 1) == (address(builder).lower(), "fox-lora", b"\x11" * 32, 2_500, [d], [1], 0, block)
    assert client.call(POA, "modelCount") == (1,)
    with pytest.raises(Reverted) as info:
        client.call(POA, "getModel", 2)
    assert info.value.error == "UnknownModel"


def test_attribute_splits_the_fee_to_the_wei_and_claims_pay_it(client, dev_accounts) -> None:
    owner, alice, bob, builder, user = keys(dev_accounts)[:5]
    d, (a, b) = published(client, owner, [(alice, FOX), (bob, LEAF)])
    client.send(builder, POA, "registerModel", "m", [d], [1], b"\0" * 32, 1_000)
    preview = client.call(POA, "previewAttribution", 1, OUTPUT)
    assert preview[0] == [d, d] and preview[1] == [a, b]
    assert preview[2] == [address(alice).lower(), address(bob).lower()]
    assert all(score > 0 for score in preview[3])

    fee = 10**18 + 7
    receipt = client.send(user, POA, "attribute", 1, OUTPUT, value=fee)
    (inference,) = receipt.named("InferenceAttributed")
    owner_part = fee * 1_000 // 10_000
    assert inference == {"inferenceId": 1, "modelId": 1, "caller": address(user).lower(), "fee": fee,
                         "outputHash": keccak(OUTPUT), "ownerPart": owner_part, "contributorsPart": fee - owner_part,
                         "treasuryPart": 0}
    rewards = receipt.named("RewardCredited")
    assert [(r["contributionId"], r["score"]) for r in rewards] == list(zip(preview[1], preview[3]))
    assert sum(r["amount"] for r in rewards) == fee - owner_part
    scores = preview[3]
    pool = fee - owner_part
    for r, score in zip(rewards, scores):  # proportional, rounding at most one wei
        assert abs(r["amount"] - pool * score // sum(scores)) <= 1
    block = int(receipt.raw["blockNumber"], 16)
    assert client.call(POA, "getInference", 1) == (1, address(user).lower(), fee, keccak(OUTPUT), owner_part,
                                                   fee - owner_part, 0, block)
    assert client.call(POA, "getModel", 1)[6] == 1
    assert client.balance(POA) == fee

    paid = {}
    for key, expected in ((alice, rewards[0]["amount"]), (bob, rewards[1]["amount"]), (builder, owner_part)):
        assert client.call(POA, "claimable", address(key)) == (expected,)
        before = client.balance(address(key))
        receipt = client.send(key, POA, "claim")
        assert receipt.events == [("Claimed", {"account": address(key).lower(), "amount": expected})]
        assert client.balance(address(key)) == before + expected - receipt.fee_paid
        paid[key] = expected
        with pytest.raises(Reverted) as info:
            client.send(key, POA, "claim")
        assert info.value.error == "NothingToClaim"
    assert sum(paid.values()) == fee
    assert client.balance(POA) == 0


def test_an_unattributed_fee_goes_to_the_treasury(client, dev_accounts) -> None:
    owner, alice, builder, user = keys(dev_accounts)[:4]
    d, _ = published(client, owner, [(alice, FOX)])
    client.send(builder, POA, "registerModel", "m", [d], [1], b"\0" * 32, 500)
    output = "Nothing in this sentence comes from the Datanet at all, ça va.".encode()
    assert client.call(POA, "previewAttribution", 1, output) == ([], [], [], [])
    receipt = client.send(user, POA, "attribute", 1, output, value=12_345)
    assert receipt.named("RewardCredited") == []
    assert receipt.named("InferenceAttributed")[0]["treasuryPart"] == 12_345 - 12_345 * 500 // 10_000
    assert client.call(POA, "claimable", TREASURY) == (12_345 - 617,)
    assert client.call(POA, "claimable", address(builder)) == (617,)
    # A free inference is recorded too.
    receipt = client.send(user, POA, "attribute", 1, FOX)
    assert receipt.named("InferenceAttributed")[0]["fee"] == 0
    assert [r["amount"] for r in receipt.named("RewardCredited")] == [0]
    assert client.call(POA, "inferenceCount") == (2,)


def test_attribute_refuses_bad_outputs_and_unknown_models(client, dev_accounts) -> None:
    owner, alice, builder, user = keys(dev_accounts)[:4]
    d, _ = published(client, owner, [(alice, FOX)])
    client.send(builder, POA, "registerModel", "m", [d], [1], b"\0" * 32, 0)
    for output, reason in ((b"", "empty"), (b"ok \xc3", "not_utf8"), (b"a " * 32_769, "too_large")):
        with pytest.raises(Reverted) as info:
            client.send(user, POA, "attribute", 1, output, value=1)
        assert info.value.error == "InvalidOutput" and info.value.args_["reason"].startswith(reason)
    with pytest.raises(Reverted) as info:
        client.send(user, POA, "attribute", 2, FOX, value=1)
    assert info.value.error == "UnknownModel" and info.value.args_ == {"modelId": 2}
    with pytest.raises(Reverted, match="UnknownInference"):
        client.call(POA, "getInference", 1)
    with pytest.raises(Reverted, match="NotPayable"):
        client.call(POA, "claim", sender=address(user), value=1)


def test_out_of_gas_in_attribute_changes_nothing(client, dev_accounts) -> None:
    owner, alice, builder, user = keys(dev_accounts)[:4]
    d, _ = published(client, owner, [(alice, FOX)])
    client.send(builder, POA, "registerModel", "m", [d], [1], b"\0" * 32, 0)
    estimate = int(client.node.rpc("eth_estimateGas", {"from": address(user), "to": POA, "value": hex(OPEN),
                                                       "data": "0x" + client.calldata(POA, "attribute", 1, FOX).hex()}), 16)
    receipt = client.send_raw(user, POA, client.calldata(POA, "attribute", 1, FOX), value=OPEN, gas=estimate - 5_000)
    assert receipt["status"] == "0x0" and receipt["logs"] == []
    assert client.call(POA, "inferenceCount") == (0,)
    assert client.balance(POA) == 0
    receipt = client.send_raw(user, POA, client.calldata(POA, "attribute", 1, FOX), value=OPEN, gas=estimate)
    assert receipt["status"] == "0x1"


def test_a_longer_output_or_more_versions_costs_more_gas(client, dev_accounts) -> None:
    owner, alice, bob, builder, user = keys(dev_accounts)[:5]
    d1, _ = published(client, owner, [(alice, FOX)])
    d2, _ = published(client, owner, [(bob, LEAF)])
    client.send(builder, POA, "registerModel", "one", [d1], [1], b"\0" * 32, 0)
    client.send(builder, POA, "registerModel", "two", [d1, d2], [1, 1], b"\0" * 32, 0)

    def gas(model, output):  # the work alone: a view, so no storage writes muddle it
        request = {"from": address(user), "to": POA, "data": "0x" + client.calldata(POA, "previewAttribution", model, output).hex()}
        return int(client.node.rpc("eth_estimateGas", request), 16)

    short, long_ = gas(1, FOX[:40]), gas(1, FOX * 3)
    assert long_ > short
    assert gas(2, FOX[:40]) > short


def test_indexes_are_rebuilt_when_missing_or_damaged(tmp_path, dev_accounts) -> None:
    owner, alice, bob, builder, user = keys(dev_accounts)[:5]
    datadir = tmp_path / "data"
    with running_node(datadir) as node:
        client = PrecompileClient(node)
        d, _ = published(client, owner, [(alice, FOX), (bob, LEAF)])
        client.send(builder, POA, "registerModel", "m", [d], [1], b"\0" * 32, 0)
        expected = client.call(POA, "previewAttribution", 1, OUTPUT)
        assert expected[1]
    (index_file,) = (datadir / "attribution").iterdir()
    original = index_file.read_bytes()
    for damage in ("delete", "corrupt"):
        if damage == "delete":
            index_file.unlink()
        else:
            index_file.write_bytes(original[:-40] + b"\0" * 40)
        with running_node(datadir) as node:
            client = PrecompileClient(node)
            assert client.call(POA, "previewAttribution", 1, OUTPUT) == expected
            receipt = client.send(user, POA, "attribute", 1, OUTPUT, value=1000)
            assert [r["score"] for r in receipt.named("RewardCredited")] == list(expected[3])
            assert node.node.blockchain.openledger.indexes.builds == 1
        assert index_file.read_bytes() == original


def test_the_precompiles_are_not_on_chains_without_an_openledger_genesis(tmp_path, dev_accounts) -> None:
    genesis = json.loads((REPO / "genesis" / "devnet.json").read_text())
    del genesis["config"]["openledger"]
    path = tmp_path / "plain.json"
    path.write_text(json.dumps(genesis))
    with running_node(tmp_path / "data", genesis=path) as node:
        client = PrecompileClient(node)
        # 0xA01 is then an ordinary account whose code is the INVALID opcode.
        body = node.request("eth_call", {"to": REGISTRY, "data": "0x" + client.calldata(REGISTRY, "datanetCount").hex()},
                            "latest")
        assert "error" in body
        assert node.node.blockchain.openledger is None
    assert not (tmp_path / "data" / "attribution").exists()
    shutil.rmtree(tmp_path / "data")


def test_an_internal_error_fails_the_call_but_not_the_chain(client, dev_accounts, monkeypatch, caplog) -> None:
    from openledger_node.chain.vm import OPENLEDGER_PRECOMPILES

    owner = keys(dev_accounts)[0]
    registry = OPENLEDGER_PRECOMPILES[bytes.fromhex(REGISTRY[2:])]
    selector = registry.interface.functions["createDatanet"].selector

    def broken(call, *args):
        raise KeyError("a bug")

    monkeypatch.setitem(registry.handlers, selector, broken)
    receipt = client.send_raw(owner, REGISTRY, client.calldata(REGISTRY, "createDatanet", "x", "", 0), gas=200_000)
    assert receipt["status"] == "0x0" and int(receipt["gasUsed"], 16) == 200_000  # failed, its gas burnt
    assert "precompile IDatanetRegistry failed on createDatanet(string,string,uint256)" in caplog.text
    monkeypatch.undo()
    assert create(client, owner) == 1  # the chain goes on


def test_an_index_that_cannot_be_saved_stays_in_memory(tmp_path, dev_accounts, caplog) -> None:
    owner, alice, builder, user = keys(dev_accounts)[:4]
    datadir = tmp_path / "data"
    with running_node(datadir) as node:
        (datadir / "attribution").write_text("not a directory")
        client = PrecompileClient(node)
        d, _ = published(client, owner, [(alice, FOX)])
        client.send(builder, POA, "registerModel", "m", [d], [1], b"\0" * 32, 0)
        receipt = client.send(user, POA, "attribute", 1, FOX, value=100)
        assert [r["amount"] for r in receipt.named("RewardCredited")] == [100]
    assert "kept in memory only" in caplog.text
