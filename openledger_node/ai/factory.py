"""ModelFactory: fine-tune a LoRA adapter (peft) on published Datanet versions, measure its
loss on held-out contributions before and after, and save it (safetensors) with a manifest.

The adapter's hash, the one ``registerModel`` records, is keccak256 of the bytes of
``adapter_model.safetensors`` (as ``openledger-node model register --adapter-file`` computes
it), so that anyone holding the file can check it against the chain.
"""
from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from eth_hash.auto import keccak

from .base import HASH_RULE, BaseModel
from .datanet import Contribution, VersionData

ADAPTER_FILE = "adapter_model.safetensors"
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "openledger-model/1"
ADAPTER_HASH_RULE = f"keccak256 of the bytes of {ADAPTER_FILE}"


@dataclass(frozen=True)
class LoraSettings:
    rank: int = 8
    alpha: int = 16
    target_modules: Optional[tuple[str, ...]] = None  # None: peft's default for the architecture
    dropout: float = 0.0
    learning_rate: float = 3e-4
    epochs: int = 3
    batch_size: int = 8
    block_size: int = 128
    seed: int = 0
    eval_fraction: float = 0.1


@dataclass
class TrainingReport:
    eval_loss_before: Optional[float]
    eval_loss_after: Optional[float]
    train_loss_first: Optional[float]
    train_loss_last: Optional[float]
    steps: int
    train_tokens: int
    eval_tokens: int
    seconds: float
    tokens_per_second: float
    trainable_parameters: int
    target_modules: list[str] = field(default_factory=list)


def encode(base: BaseModel, contributions: Sequence[Contribution], block_size: int) -> list[list[int]]:
    """The contributions as token ids, each bracketed by BOS (if the tokenizer has one) and
    EOS, concatenated and cut into blocks of ``block_size`` (the last one may be shorter)."""
    tokenizer = base.tokenizer
    ids: list[int] = []
    for contribution in contributions:
        if tokenizer.bos_token_id is not None:
            ids.append(tokenizer.bos_token_id)
        ids += tokenizer(contribution.text, add_special_tokens=False, verbose=False)["input_ids"]  # cut below
        ids.append(tokenizer.eos_token_id)
    return [ids[start:start + block_size] for start in range(0, len(ids), block_size)]


def _batch(blocks: Sequence[list[int]], pad_id: int):
    """input_ids, attention_mask and labels (-100 on padding), right-padded to the longest block."""
    import torch

    width = max(len(block) for block in blocks)
    input_ids = torch.full((len(blocks), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(blocks), width), dtype=torch.long)
    for row, block in enumerate(blocks):
        input_ids[row, : len(block)] = torch.tensor(block)
        mask[row, : len(block)] = 1
    labels = input_ids.masked_fill(mask == 0, -100)
    return input_ids, mask, labels


def _summed_loss(model, blocks: Sequence[list[int]], pad_id: int) -> tuple[Any, int]:
    """The next-token cross-entropy summed over every predicted token, and how many there were."""
    import torch

    input_ids, mask, labels = _batch(blocks, pad_id)
    logits = model(input_ids=input_ids, attention_mask=mask).logits
    targets = labels[:, 1:]
    loss = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=-100, reduction="sum")
    return loss, int((targets != -100).sum())


def evaluate(model, blocks: Sequence[list[int]], pad_id: int, batch_size: int) -> Optional[float]:
    """Mean next-token loss (nats per token) over ``blocks``; None when there is nothing to predict."""
    import torch

    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(blocks), batch_size):
            loss, tokens = _summed_loss(model, blocks[start:start + batch_size], pad_id)
            total += float(loss)
            count += tokens
    return total / count if count else None


def train_adapter(
    base: BaseModel, train: Sequence[Contribution], held_out: Sequence[Contribution], settings: LoraSettings,
    progress: Optional[Callable[[int, int, float], None]] = None,
):
    """Wrap ``base.model`` with a fresh LoRA adapter and train it; returns (peft model, report).
    ``progress(step, steps, loss)`` is called after each optimizer step."""
    import torch
    from peft import LoraConfig, get_peft_model

    block_size = min(settings.block_size, base.max_length)
    pad_id = base.tokenizer.pad_token_id
    train_blocks = encode(base, train, block_size)
    eval_blocks = encode(base, held_out, block_size)
    started = time.monotonic()
    loss_before = evaluate(base.model, eval_blocks, pad_id, settings.batch_size) if eval_blocks else None

    torch.manual_seed(settings.seed)  # LoRA's A matrices start random (B at zero): the same seed, the same start
    config = LoraConfig(
        r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout, bias="none", task_type="CAUSAL_LM",
        target_modules=list(settings.target_modules) if settings.target_modules else None,
    )
    try:
        with warnings.catch_warnings():  # peft asks a transformers 5 model a question v5 deprecated
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            model = get_peft_model(base.model, config)
    except ValueError as exc:  # e.g. target modules that the model does not have
        raise TrainingError(" ".join(str(exc).split())[:300]) from None
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.learning_rate, weight_decay=0.0)
    order = torch.Generator().manual_seed(settings.seed)
    steps_per_epoch = math.ceil(len(train_blocks) / settings.batch_size)
    steps = steps_per_epoch * settings.epochs
    first = last = None
    step = 0
    model.train()
    for _ in range(settings.epochs):
        permutation = torch.randperm(len(train_blocks), generator=order).tolist()
        for start in range(0, len(permutation), settings.batch_size):
            blocks = [train_blocks[i] for i in permutation[start:start + settings.batch_size]]
            summed, tokens = _summed_loss(model, blocks, pad_id)
            loss = summed / max(tokens, 1)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            last = float(loss.detach())
            first = last if first is None else first
            if progress is not None:
                progress(step, steps, last)
    model.eval()
    loss_after = evaluate(model, eval_blocks, pad_id, settings.batch_size) if eval_blocks else None
    seconds = time.monotonic() - started
    train_tokens = sum(len(block) for block in train_blocks)
    report = TrainingReport(
        eval_loss_before=loss_before, eval_loss_after=loss_after, train_loss_first=first, train_loss_last=last,
        steps=steps, train_tokens=train_tokens, eval_tokens=sum(len(block) for block in eval_blocks),
        seconds=round(seconds, 3), tokens_per_second=round(train_tokens * settings.epochs / seconds, 1) if seconds else 0.0,
        trainable_parameters=sum(p.numel() for p in trainable),
        target_modules=sorted(model.peft_config["default"].target_modules),
    )
    return model, report


class TrainingError(Exception):
    """Settings the model cannot take (unknown target modules, no training text)."""


def file_keccak(path: Path) -> str:
    """0x hex keccak256 of a file's bytes, read in pieces."""
    digest = keccak.new(b"")
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return "0x" + digest.digest().hex()


def save_adapter(model, out: Path) -> tuple[Path, str]:
    """``adapter_model.safetensors`` and ``adapter_config.json`` in ``out``; (the file, its keccak256)."""
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    adapter = out / ADAPTER_FILE
    return adapter, file_keccak(adapter)


def manifest(
    *, name: str, base: BaseModel, versions: Sequence[VersionData], train: Sequence[Contribution],
    held_out: Sequence[Contribution], settings: LoraSettings, report: TrainingReport, adapter: Path, adapter_hash: str,
) -> dict[str, Any]:
    """What the adapter is: its base model, the Datanet versions and the split it learnt from,
    how, how well, and its hash. JSON-ready."""
    import peft
    import torch
    import transformers

    def ids(contributions: Sequence[Contribution]) -> list[list[int]]:
        return [[c.datanet_id, c.contribution_id] for c in contributions]

    metrics = asdict(report)
    target_modules = metrics.pop("target_modules")
    trainable = metrics.pop("trainable_parameters")
    return {
        "format": MANIFEST_FORMAT,
        "name": name,
        "baseModel": {"path": str(base.path), "sha256": base.sha256, "hashRule": HASH_RULE,
                      "architecture": type(base.model).__name__,
                      "parameters": sum(p.numel() for p in base.model.parameters()) - trainable},
        "datanets": [{"datanetId": v.datanet_id, "version": v.version, "root": v.root, "tokens": v.tokens,
                      "contributions": len(v.contributions)} for v in versions],
        "split": {"seed": settings.seed, "evalFraction": settings.eval_fraction,
                  "train": ids(train), "heldOut": ids(held_out)},
        "hyperparameters": {"rank": settings.rank, "alpha": settings.alpha, "targetModules": target_modules,
                            "dropout": settings.dropout, "learningRate": settings.learning_rate,
                            "epochs": settings.epochs, "batchSize": settings.batch_size,
                            "blockSize": min(settings.block_size, base.max_length), "seed": settings.seed,
                            "optimizer": "AdamW (weight decay 0, gradient norm clipped at 1)"},
        "metrics": {"evalLossBefore": report.eval_loss_before, "evalLossAfter": report.eval_loss_after,
                    "evalPerplexityBefore": _perplexity(report.eval_loss_before),
                    "evalPerplexityAfter": _perplexity(report.eval_loss_after),
                    "trainLossFirst": report.train_loss_first, "trainLossLast": report.train_loss_last,
                    "steps": report.steps, "trainTokens": report.train_tokens, "evalTokens": report.eval_tokens,
                    "seconds": report.seconds, "tokensPerSecond": report.tokens_per_second},
        "adapter": {"file": adapter.name, "bytes": adapter.stat().st_size, "hash": adapter_hash,
                    "hashRule": ADAPTER_HASH_RULE, "trainableParameters": trainable},
        "software": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
    }


def _perplexity(loss: Optional[float]) -> Optional[float]:
    return None if loss is None else round(math.exp(min(loss, 700.0)), 4)


def write_manifest(out: Path, document: dict[str, Any]) -> Path:
    path = out / MANIFEST_FILE
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(document, indent=1) + "\n")
    temporary.replace(path)
    return path
