"""ModelFactory (``openledger-node model train``) against a real node: a LoRA adapter trained on a
published Datanet version lowers the loss on held-out contributions, is saved with a manifest
that names what it learnt from, and ``--register`` puts its keccak256 on-chain."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

from eth_hash.auto import keccak  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from ai_support import assert_one_error_line, publish_datanet, ships_log, tiny_model_dir  # noqa: E402
from conftest import running_node  # noqa: E402
from openledger_node.ai.base import load_base_model  # noqa: E402
from openledger_node.ai.datanet import Contribution, DatasetError, split  # noqa: E402
from openledger_node.ai.factory import LoraSettings, save_adapter, train_adapter  # noqa: E402
from openledger_node.cli import app  # noqa: E402
from openledger_node.devkeys import DEV_ACCOUNTS  # noqa: E402

OWNER_ADDRESS, OWNER_KEY = DEV_ACCOUNTS[0]


@pytest.fixture(scope="module")
def tiny_model() -> Path:
    return tiny_model_dir()


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A node with Datanet 1 version 1: 16 ship's-log contributions from dev 1."""
    with running_node(tmp_path_factory.mktemp("node") / "data") as node:
        datanet_id, version = publish_datanet(node.url, ships_log(16))
        yield node, datanet_id, version


def cli(*args, key: str | None = None):
    env = {"OPENLEDGER_PRIVATE_KEY": key} if key else {"OPENLEDGER_PRIVATE_KEY": ""}
    return CliRunner().invoke(app, [str(arg) for arg in args], env=env)


def train(node, datanet: str, base: Path, out: Path, *extra, key: str | None = None):
    return cli("model", "train", "--rpc", node.url, "--datanet", datanet, "--base-model", base, "--out", out,
               "--epochs", "4", "--batch-size", "4", "--block-size", "64", "--eval-fraction", "0.25", *extra, key=key)


def test_the_split_holds_out_whole_contributions_chosen_by_the_seed_not_by_order():
    items = [Contribution(1, i, f"text {i}") for i in range(1, 21)]
    train_set, held = split(items, 0.25, seed=3)
    assert len(held) == 5 and len(train_set) == 15
    assert not {c.contribution_id for c in held} & {c.contribution_id for c in train_set}
    assert split(list(reversed(items)), 0.25, seed=3) == (train_set, held)
    assert split(items, 0.25, seed=4)[1] != held
    assert split(items, 0.0, seed=3) == (items, [])
    assert len(split(items[:2], 0.9, seed=3)[0]) == 1  # never every contribution held out
    with pytest.raises(DatasetError, match="--eval-fraction 0"):
        split(items[:1], 0.1, seed=3)


def test_the_same_seed_trains_the_same_adapter_bytes(tiny_model, tmp_path):
    contributions = [Contribution(1, i + 1, text) for i, text in enumerate(ships_log(6))]
    train_set, held = split(contributions, 0.2, seed=0)
    hashes = []
    for run, seed in enumerate((0, 0, 1)):
        settings = LoraSettings(rank=4, epochs=1, batch_size=2, block_size=32, seed=seed, learning_rate=1e-2)
        model, report = train_adapter(load_base_model(tiny_model), train_set, held, settings)
        hashes.append(save_adapter(model, tmp_path / str(run))[1])
        assert report.steps > 0 and report.eval_loss_before is not None
    assert hashes[0] == hashes[1] != hashes[2]


def test_training_on_a_published_version_lowers_held_out_loss_and_writes_adapter_and_manifest(
        published, tiny_model, tmp_path):
    node, datanet_id, version = published
    out = tmp_path / "ships-adapter"
    result = train(node, f"{datanet_id}:{version}", tiny_model, out, "--json", "--epochs", "8", "--lr", "5e-3")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    document = json.loads(result.stdout)
    assert json.loads((out / "manifest.json").read_text()) == document
    metrics = document["metrics"]
    assert metrics["evalLossAfter"] < 0.8 * metrics["evalLossBefore"], metrics
    adapter = out / "adapter_model.safetensors"
    assert document["adapter"]["hash"] == "0x" + keccak(adapter.read_bytes()).hex()
    assert (out / "adapter_config.json").is_file()
    version_record = node.rpc("ol_getVersion", hex(datanet_id), hex(version))
    assert document["datanets"] == [{"datanetId": datanet_id, "version": version, "root": version_record["root"],
                                     "tokens": int(version_record["tokens"], 16), "contributions": 16}]
    assert len(document["split"]["heldOut"]) == 4 and len(document["split"]["train"]) == 12
    assert document["baseModel"]["path"] == str(tiny_model.resolve())
    assert document["hyperparameters"]["targetModules"] == ["q_proj", "v_proj"]  # peft's default for Llama
    assert "registration" not in document


def test_register_puts_the_adapter_hash_on_chain(published, tiny_model, tmp_path):
    node, datanet_id, version = published
    out = tmp_path / "ships"
    result = train(node, f"{datanet_id}:{version}", tiny_model, out, "--register", "--name", "ship-logs",
                   "--owner-share-bps", "1000", "--rank", "4", "--target-modules", "q_proj,k_proj,v_proj,o_proj",
                   key=OWNER_KEY)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    manifest = json.loads((out / "manifest.json").read_text())
    registration = manifest["registration"]
    assert f"registered: model id {registration['modelId']}" in result.stdout
    model = node.rpc("ol_getModel", hex(registration["modelId"]))
    assert model["adapterHash"] == manifest["adapter"]["hash"] == "0x" + keccak((out / "adapter_model.safetensors").read_bytes()).hex()
    assert model["name"] == "ship-logs" and model["owner"].lower() == OWNER_ADDRESS.lower()
    assert int(model["ownerShareBps"], 16) == 1000
    assert [(int(d["datanetId"], 16), int(d["version"], 16)) for d in model["datanets"]] == [(datanet_id, version)]
    assert manifest["hyperparameters"]["targetModules"] == ["k_proj", "o_proj", "q_proj", "v_proj"]
    assert manifest["hyperparameters"]["rank"] == 4


def test_register_without_a_key_fails_before_training(published, tiny_model, tmp_path):
    node, datanet_id, version = published
    result = train(node, f"{datanet_id}:{version}", tiny_model, tmp_path / "out", "--register")
    assert_one_error_line(result, "no signing key")
    assert not (tmp_path / "out").exists()


def test_an_unpublished_version_is_one_error_line(published, tiny_model, tmp_path):
    node, datanet_id, _ = published
    assert_one_error_line(train(node, f"{datanet_id}:9", tiny_model, tmp_path / "out"),
                          f"Datanet {datanet_id} has no published version 9")
    assert_one_error_line(train(node, "1-1", tiny_model, tmp_path / "out"), "expected ID:VERSION")


def test_a_missing_base_model_or_a_non_empty_out_is_one_error_line(published, tiny_model, tmp_path):
    node, datanet_id, version = published
    assert_one_error_line(train(node, f"{datanet_id}:{version}", tmp_path / "nowhere", tmp_path / "out"),
                          "does not exist")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert_one_error_line(train(node, f"{datanet_id}:{version}", tiny_model, tmp_path / "full"),
                          "exists and is not an empty folder")


def test_unknown_target_modules_are_one_error_line(published, tiny_model, tmp_path):
    node, datanet_id, version = published
    result = train(node, f"{datanet_id}:{version}", tiny_model, tmp_path / "out", "--target-modules", "c_attn")
    assert_one_error_line(result, "c_attn")


def test_a_registration_that_fails_after_training_keeps_the_adapter_and_says_how_to_register_it(
        published, tiny_model, tmp_path):
    node, datanet_id, version = published
    unfunded = "0x" + "11" * 32  # a valid key with no OPEN to pay gas
    result = train(node, f"{datanet_id}:{version}", tiny_model, tmp_path / "out", "--register", "--epochs", "1",
                   key=unfunded)
    assert_one_error_line(result, "the adapter is saved in", f"model register out --datanet {datanet_id}:{version} "
                                                             "--adapter-file")
    assert (tmp_path / "out" / "adapter_model.safetensors").is_file() and (tmp_path / "out" / "manifest.json").is_file()
