"""Base models: a causal language model and its tokenizer from a local directory in the
Hugging Face layout (``config.json``, safetensors weights, tokenizer files).

Nothing is downloaded: the hub is switched off before transformers is imported and every
load is ``local_files_only``. Pickled weights (``pytorch_model.bin``) are refused, since
unpickling runs code; only safetensors load.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Set before transformers or huggingface_hub is first imported (they read them once).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # no fork warnings from the Rust tokenizer

WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
HASH_RULE = ("sha256 of the lines '<sha256 of the file>  <name>\\n' of every regular file directly in the "
             "directory (hidden ones aside), by name in byte order: `cd DIR && LC_ALL=C sha256sum * | sha256sum`")


class ModelDirError(Exception):
    """A model directory that is missing, incomplete or unreadable: one line, naming what is wrong."""


@dataclass
class BaseModel:
    path: Path
    model: Any  # transformers.PreTrainedModel, in eval mode
    tokenizer: Any  # transformers.PreTrainedTokenizerBase, with a pad token
    sha256: str  # model_dir_hash(path)

    @property
    def max_length(self) -> int:
        """The longest sequence the model takes (its position table), or 2048 when unbounded."""
        for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
            value = getattr(self.model.config, name, None)
            if isinstance(value, int) and value > 0:
                return value
        return 2048


def check_model_dir(path: Path) -> None:
    """Raise ModelDirError unless ``path`` holds a config, safetensors weights (every shard
    of a sharded checkpoint) and a tokenizer."""
    path = Path(path)
    if not path.exists():
        raise ModelDirError(f"base model directory {path} does not exist")
    if not path.is_dir():
        raise ModelDirError(f"base model {path} is not a directory (give a folder in the Hugging Face layout)")
    if not (path / "config.json").is_file():
        raise ModelDirError(f"{path} has no config.json: not a model directory in the Hugging Face layout")
    if (path / WEIGHTS_INDEX).is_file():
        import json

        try:
            shards = sorted(set(json.loads((path / WEIGHTS_INDEX).read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError) as exc:
            raise ModelDirError(f"{path / WEIGHTS_INDEX} is unreadable: {exc}") from None
        missing = [shard for shard in shards if not (path / shard).is_file()]
        if missing:
            raise ModelDirError(f"{path} lacks {len(missing)} of the {len(shards)} weight shards named in "
                                f"{WEIGHTS_INDEX}, first {missing[0]}")
    elif not (path / WEIGHTS).is_file():
        pickled = " (pytorch_model.bin is not loaded: unpickling runs code; convert it to safetensors)" \
            if (path / "pytorch_model.bin").exists() else ""
        raise ModelDirError(f"{path} has no weights: expected {WEIGHTS} or {WEIGHTS_INDEX}{pickled}")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise ModelDirError(f"{path} has no tokenizer: expected one of {', '.join(TOKENIZER_FILES)}")


def model_dir_hash(path: Path) -> str:
    """The directory's hash as hex (see HASH_RULE): names and contents of all its files."""
    listing = hashlib.sha256()
    for file in sorted(Path(path).iterdir(), key=lambda f: os.fsencode(f.name)):
        if file.name.startswith(".") or not file.is_file():
            continue
        digest = hashlib.sha256()
        with open(file, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
        listing.update(f"{digest.hexdigest()}  {file.name}\n".encode())
    return listing.hexdigest()


def load_base_model(path: Path, *, dtype: str = "float32") -> BaseModel:
    """The model (on the CPU, eval mode) and tokenizer in ``path``; ModelDirError if they cannot load."""
    check_model_dir(Path(path))
    path = Path(path).resolve()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as exc:  # transformers raises many kinds (OSError, ValueError, KeyError...)
        raise ModelDirError(f"cannot load the tokenizer in {path}: {_one_line(exc)}") from None
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path, local_files_only=True, use_safetensors=True, dtype=getattr(torch, dtype))
    except Exception as exc:
        raise ModelDirError(f"cannot load the model in {path}: {_one_line(exc)}") from None
    if tokenizer.pad_token_id is None:  # batches need padding; the loss never sees it (labels -100)
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return BaseModel(path, model, tokenizer, model_dir_hash(path))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] + ("..." if len(text) > 300 else "") if text else type(exc).__name__
