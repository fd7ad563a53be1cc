"""Base models: the tiny model that scripts/make_tiny_model.py builds is deterministic and loads
like any Hugging Face model directory; a missing or incomplete directory is refused with a
message naming what is wrong; nothing is fetched from a hub."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from ai_support import SCRIPT, tiny_model_dir  # noqa: E402
from openledger_node.ai.base import ModelDirError, load_base_model, model_dir_hash  # noqa: E402


@pytest.fixture(scope="module")
def tiny_model() -> Path:
    return tiny_model_dir()


def make_tiny_model_module():
    spec = importlib.util.spec_from_file_location("make_tiny_model", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def copy_without(source: Path, target: Path, *names: str) -> Path:
    shutil.copytree(source, target)
    for name in names:
        (target / name).unlink()
    return target


def test_the_tiny_model_script_gives_the_same_bytes_for_the_same_seed(tmp_path):
    script = make_tiny_model_module()
    first = script.build(tmp_path / "a", steps=8, log=lambda line: None)
    second = script.build(tmp_path / "b", steps=8, log=lambda line: None)
    names = sorted(path.name for path in (tmp_path / "a").iterdir())
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(names)
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert first["finalLoss"] == second["finalLoss"] < first["firstLoss"]
    other = script.build(tmp_path / "c", steps=8, seed=2, log=lambda line: None)
    assert (tmp_path / "c" / "model.safetensors").read_bytes() != (tmp_path / "a" / "model.safetensors").read_bytes()
    assert other["parameters"] == first["parameters"]


def test_the_tiny_model_is_a_small_llama_with_its_own_tokenizer(tiny_model):
    summary = json.loads((tiny_model / "tiny_model.json").read_text())
    assert 500_000 <= summary["parameters"] <= 3_000_000
    assert summary["finalLoss"] < summary["firstLoss"] / 2
    base = load_base_model(tiny_model)
    assert type(base.model).__name__ == "LlamaForCausalLM" and not base.model.training
    assert sum(p.numel() for p in base.model.parameters()) == summary["parameters"]
    text = "Mix 3 cups of flour; wind north at 12 knots. Ünïcode ✓"
    ids = base.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert base.tokenizer.decode(ids) == text  # byte-level: any UTF-8 text round-trips
    assert base.tokenizer.pad_token_id is not None and base.max_length == 256


def test_the_model_hash_is_sha256sum_of_its_files(tiny_model):
    listing = subprocess.run("LC_ALL=C sha256sum * | sha256sum", shell=True, cwd=tiny_model, capture_output=True,
                             text=True, check=True).stdout.split()[0]
    assert load_base_model(tiny_model).sha256 == model_dir_hash(tiny_model) == listing


def test_the_model_hash_changes_with_any_file(tiny_model, tmp_path):
    copy = shutil.copytree(tiny_model, tmp_path / "copy")
    (copy / "config.json").write_text((copy / "config.json").read_text() + " ")
    assert model_dir_hash(copy) != model_dir_hash(tiny_model)


def test_loading_sets_the_hub_offline():
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"


def test_a_hub_name_is_not_fetched_but_refused_as_a_missing_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelDirError, match="base model directory gpt2 does not exist"):
        load_base_model("gpt2")


@pytest.mark.parametrize("remove, message", [
    ("config.json", "has no config.json"),
    ("model.safetensors", "has no weights: expected model.safetensors or model.safetensors.index.json"),
    ("tokenizer.json", "has no tokenizer"),
])
def test_an_incomplete_directory_names_what_it_lacks(tiny_model, tmp_path, remove, message):
    with pytest.raises(ModelDirError, match=message):
        load_base_model(copy_without(tiny_model, tmp_path / "model", remove))


def test_pickled_weights_are_refused_with_the_reason(tiny_model, tmp_path):
    model = copy_without(tiny_model, tmp_path / "model", "model.safetensors")
    (model / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ModelDirError, match="pytorch_model.bin is not loaded: unpickling runs code"):
        load_base_model(model)


def test_a_sharded_checkpoint_must_have_every_shard(tiny_model, tmp_path):
    model = copy_without(tiny_model, tmp_path / "model", "model.safetensors")
    index = {"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors",
                                            "b": "model-00002-of-00002.safetensors"}}
    (model / "model.safetensors.index.json").write_text(json.dumps(index))
    shutil.copy(tiny_model / "model.safetensors", model / "model-00001-of-00002.safetensors")
    with pytest.raises(ModelDirError, match="lacks 1 of the 2 weight shards .* first model-00002-of-00002"):
        load_base_model(model)


def test_corrupt_weights_and_a_file_instead_of_a_folder_are_one_line_errors(tiny_model, tmp_path):
    model = shutil.copytree(tiny_model, tmp_path / "model")
    (model / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ModelDirError, match="cannot load the model in") as caught:
        load_base_model(model)
    assert "\n" not in str(caught.value)
    with pytest.raises(ModelDirError, match="is not a directory"):
        load_base_model(model / "config.json")
