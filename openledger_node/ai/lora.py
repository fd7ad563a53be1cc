"""OpenLoRA's engine: many LoRA adapters over one base model in memory.

Adapters are peft LoRA checkpoints (``adapter_config.json`` + ``adapter_model.safetensors``),
read as plain tensors, kept in a bounded LRU cache, and applied at run time rather than
merged: every adapted layer of the base model is wrapped once, and computes

    y = W x + B_i (A_i x)            (B_i pre-scaled by alpha / r)

for row i of the batch with that row's own adapter (or none), by gathering the batch's A and B
into (batch, r, in) / (batch, out, r) stacks and two batched matmuls (the idea of S-LoRA and
Punica's BGMV, in plain torch). So one forward pass serves requests for different adapters,
and loading or evicting an adapter never touches the base weights.
"""
from __future__ import annotations

import functools
import json
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from safetensors.torch import load_file

from .factory import ADAPTER_FILE, MANIFEST_FILE, file_keccak

PEFT_PREFIX = "base_model.model."


class AdapterError(Exception):
    """An adapter that cannot be served (missing, not LoRA, unsupported options, another base model)."""


@dataclass(frozen=True)
class LoraAdapter:
    hash: str  # 0x keccak256 of adapter_model.safetensors: what registerModel records
    path: Path
    rank: int
    layers: dict[str, tuple[torch.Tensor, torch.Tensor]]  # module name -> (A (r, in), B·scaling (out, r))
    base_sha256: Optional[str]  # from manifest.json when there is one

    @functools.cached_property
    def nbytes(self) -> int:
        return sum(a.numel() * a.element_size() + b.numel() * b.element_size() for a, b in self.layers.values())


def read_adapter(directory: Path, dtype: torch.dtype = torch.float32) -> LoraAdapter:
    """A peft LoRA adapter directory as tensors. Refuses what run-time application cannot
    reproduce exactly: DoRA, biases, modules_to_save, per-module rank or alpha patterns."""
    directory = Path(directory)
    weights = directory / ADAPTER_FILE
    try:
        config = json.loads((directory / "adapter_config.json").read_text())
    except (OSError, ValueError) as exc:
        raise AdapterError(f"{directory}: no readable adapter_config.json ({exc})") from None
    if config.get("peft_type") != "LORA":
        raise AdapterError(f"{directory}: not a LoRA adapter (peft_type {config.get('peft_type')!r})")
    unsupported = [key for key in ("use_dora", "modules_to_save", "rank_pattern", "alpha_pattern", "lora_bias")
                   if config.get(key)] + (["bias"] if config.get("bias", "none") != "none" else [])
    if unsupported:
        raise AdapterError(f"{directory}: adapter options OpenLoRA does not serve: {', '.join(unsupported)}")
    rank, alpha = int(config["r"]), float(config["lora_alpha"])
    scaling = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
    try:
        tensors = load_file(weights)
    except (OSError, Exception) as exc:  # safetensors raises its own error type for bad headers
        raise AdapterError(f"{directory}: cannot read {ADAPTER_FILE}: {exc}") from None
    halves: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        for half in ("lora_A", "lora_B"):
            marker = f".{half}.weight"
            if key.endswith(marker):
                module = key[: -len(marker)].removeprefix(PEFT_PREFIX)
                halves.setdefault(module, {})[half] = tensor
                break
        else:
            raise AdapterError(f"{directory}: unexpected tensor {key} in {ADAPTER_FILE}")
    layers = {}
    for module, pair in sorted(halves.items()):
        if set(pair) != {"lora_A", "lora_B"}:
            raise AdapterError(f"{directory}: {module} lacks lora_A or lora_B")
        a, b = pair["lora_A"], pair["lora_B"]
        if a.shape[0] != rank or b.shape[1] != rank:
            raise AdapterError(f"{directory}: {module} has rank {a.shape[0]}, the config says {rank}")
        layers[module] = (a.to(dtype).contiguous(), (b.to(torch.float32) * scaling).to(dtype).contiguous())
    if not layers:
        raise AdapterError(f"{directory}: {ADAPTER_FILE} holds no LoRA weights")
    base_sha256 = None
    if (directory / MANIFEST_FILE).is_file():
        try:
            base_sha256 = json.loads((directory / MANIFEST_FILE).read_text())["baseModel"]["sha256"]
        except (OSError, ValueError, KeyError, TypeError):
            raise AdapterError(f"{directory}: unreadable {MANIFEST_FILE}") from None
    return LoraAdapter(file_keccak(weights), directory, rank, layers, base_sha256)


class BatchAdapters:
    """Which adapter each row of the current batch uses, as per-layer stacks the wrapped layers read."""

    def __init__(self) -> None:
        self._stacks: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def set(self, adapters: Sequence[Optional[LoraAdapter]]) -> None:
        """Stack each adapted layer's A and B for ``adapters`` (row order). Ranks are padded with
        zeros to the largest; a row without the layer (or without an adapter) gets zeros. One
        adapter for every row is kept as a single (1, r, ·) pair that broadcasts."""
        self._stacks = {}
        distinct = {id(a): a for a in adapters if a is not None}
        if not distinct:
            return
        if len(distinct) == 1 and all(a is not None for a in adapters):
            (only,) = distinct.values()
            self._stacks = {name: (a.unsqueeze(0), b.unsqueeze(0)) for name, (a, b) in only.layers.items()}
            return
        rank = max(a.rank for a in distinct.values())
        names = sorted({name for a in distinct.values() for name in a.layers})
        for name in names:
            shapes = next(a.layers[name] for a in distinct.values() if name in a.layers)
            a_stack = shapes[0].new_zeros((len(adapters), rank, shapes[0].shape[1]))
            b_stack = shapes[1].new_zeros((len(adapters), shapes[1].shape[0], rank))
            for row, adapter in enumerate(adapters):
                if adapter is not None and name in adapter.layers:
                    a, b = adapter.layers[name]
                    a_stack[row, : a.shape[0]] = a
                    b_stack[row, :, : b.shape[1]] = b
            self._stacks[name] = (a_stack, b_stack)

    def select(self, rows: torch.Tensor) -> None:
        """Keep only ``rows`` (indices into the current batch), for a batch that lost rows. A single
        (1, r, ·) pair broadcasts and stays as it is."""
        self._stacks = {name: (a, b) if a.shape[0] == 1 else (a.index_select(0, rows), b.index_select(0, rows))
                        for name, (a, b) in self._stacks.items()}

    def clear(self) -> None:
        self._stacks = {}

    def get(self, name: str) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
        return self._stacks.get(name)


class MultiLoraLayer(torch.nn.Module):
    """A base layer plus, per batch row, that row's LoRA update."""

    def __init__(self, base: torch.nn.Module, name: str, batch: BatchAdapters) -> None:
        super().__init__()
        self.base_layer = base
        self.name = name
        self.batch = batch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base_layer(x)
        stacks = self.batch.get(self.name)
        if stacks is None:
            return y
        a, b = stacks  # (rows or 1, r, in), (rows or 1, out, r); x: (rows, tokens, in)
        return y + torch.matmul(torch.matmul(x, a.transpose(1, 2)), b.transpose(1, 2))


class AdapterCache:
    """At most ``capacity`` adapters in memory, least recently used evicted first. Not thread-safe:
    the engine's worker thread is its only user."""

    def __init__(self, capacity: int, load: Callable[[str], LoraAdapter]) -> None:
        if capacity < 1:
            raise ValueError("the adapter cache holds at least one adapter")
        self.capacity = capacity
        self._load = load
        self._entries: OrderedDict[str, LoraAdapter] = OrderedDict()
        self.hits = self.misses = self.evictions = 0
        self.nbytes = 0  # adapter weights held, kept as adapters come and go (metrics read it per request)
        self.load_seconds: list[float] = []  # each cold load, for metrics

    def get(self, key: str) -> LoraAdapter:
        adapter = self._entries.get(key)
        if adapter is not None:
            self.hits += 1
            self._entries.move_to_end(key)
            return adapter
        self.misses += 1
        started = time.perf_counter()
        adapter = self._load(key)
        self.load_seconds.append(time.perf_counter() - started)
        self._entries[key] = adapter
        self.nbytes += _nbytes(adapter)
        while len(self._entries) > self.capacity:
            _, evicted = self._entries.popitem(last=False)
            self.nbytes -= _nbytes(evicted)
            self.evictions += 1
        return adapter

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)



def _nbytes(adapter: Any) -> int:
    return getattr(adapter, "nbytes", 0)  # anything the loader returns (tests cache plain keys)


@dataclass
class GenerationRow:
    """One row of a generation batch."""
    prompt: list[int]
    adapter: Optional[LoraAdapter]
    max_new_tokens: int
    temperature: float = 0.0
    seed: Optional[int] = None
    ignore_eos: bool = False  # generate max_new_tokens whatever comes (benchmarks: the same work per row)
    top_p: float = 1.0  # nucleus sampling (with temperature > 0): the smallest set of tokens holding top_p
    stop: tuple[str, ...] = ()  # the row ends once its decoded text contains one of these


def find_stop(text: str, stops: Sequence[str]) -> int:
    """Where the first of ``stops`` begins in ``text`` (the earliest start wins), or -1."""
    found = [index for index in (text.find(stop) for stop in stops if stop) if index >= 0]
    return min(found) if found else -1


class MultiLoraModel:
    """The base model with its adaptable layers wrapped; generates for a batch of rows that
    may each use a different adapter."""

    def __init__(self, model: Any, tokenizer: Any, base_sha256: Optional[str] = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.base_sha256 = base_sha256
        self.batch = BatchAdapters()
        self._wrapped: set[str] = set()
        self._lock = threading.Lock()  # one batch at a time through the shared stacks

    def prepare(self, adapter: LoraAdapter) -> None:
        """Wrap the base layers ``adapter`` adapts (once per layer) after checking it fits them."""
        if self.base_sha256 and adapter.base_sha256 and adapter.base_sha256 != self.base_sha256:
            raise AdapterError(f"{adapter.path}: trained on base model {adapter.base_sha256[:16]}..., "
                               f"this server runs {self.base_sha256[:16]}...")
        for name, (a, b) in adapter.layers.items():
            if name in self._wrapped:
                layer = self.model.get_submodule(name).base_layer
            else:
                try:
                    layer = self.model.get_submodule(name)
                except AttributeError:
                    raise AdapterError(f"{adapter.path}: the base model has no module {name}") from None
            out_features, in_features = _features(layer)
            if (a.shape[1], b.shape[0]) != (in_features, out_features):
                raise AdapterError(f"{adapter.path}: {name} is {in_features}->{out_features} in the base model, "
                                   f"{a.shape[1]}->{b.shape[0]} in the adapter")
        for name in adapter.layers:
            if name not in self._wrapped:
                parent, _, child = name.rpartition(".")
                owner = self.model.get_submodule(parent) if parent else self.model
                setattr(owner, child, MultiLoraLayer(getattr(owner, child), name, self.batch))
                self._wrapped.add(name)

    @torch.no_grad()
    def generate(self, rows: Sequence[GenerationRow], on_token: Optional[Callable[[int, int], None]] = None,
                 ) -> list[tuple[list[int], str]]:
        """Generate for every row at once (left-padded prompts, one KV cache): greedy at
        temperature 0, else sampling (nucleus when top_p < 1) with the row's seed. ``on_token(row,
        token_id)`` is called as tokens come. Returns each row's new tokens and why it stopped:
        "stop" (EOS, or its decoded text contains one of its ``stop`` strings: the tokens then
        include the one that completed it, and the caller cuts the text with ``find_stop``) or
        "length". A row that has finished leaves the batch (its rows of the KV cache, mask and
        adapter stacks are dropped), so it costs the others nothing in the steps that follow."""
        eos = self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos
        width = max(len(row.prompt) for row in rows)
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, width - len(row.prompt):] = torch.tensor(row.prompt, dtype=torch.long)
            mask[i, width - len(row.prompt):] = 1
        generators = [torch.Generator().manual_seed(row.seed) if row.seed is not None else None for row in rows]
        produced: list[list[int]] = [[] for _ in rows]
        finish: list[Optional[str]] = [None] * len(rows)
        steps = max(row.max_new_tokens for row in rows)
        active = list(range(len(rows)))  # the rows still in the batch, by their index in ``rows``
        with self._lock:
            self.batch.set([row.adapter for row in rows])
            try:
                past = None
                current = input_ids
                for _ in range(steps):
                    positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -current.shape[1]:]
                    out = self.model(input_ids=current, attention_mask=mask, position_ids=positions,
                                     past_key_values=past, use_cache=True)
                    past = out.past_key_values
                    logits = out.logits[:, -1].float()
                    chosen = []
                    for j, i in enumerate(active):
                        row = rows[i]
                        if finish[i] is not None:  # only where the cache could not drop finished rows
                            chosen.append(pad)
                            continue
                        token = _pick(logits[j], row.temperature, generators[i], row.top_p)
                        chosen.append(token)
                        if token == eos and not row.ignore_eos:
                            finish[i] = "stop"
                            continue
                        produced[i].append(token)
                        if on_token is not None:
                            on_token(i, token)
                        if row.stop and find_stop(self.tokenizer.decode(produced[i]), row.stop) >= 0:
                            finish[i] = "stop"
                        elif len(produced[i]) >= row.max_new_tokens:
                            finish[i] = "length"
                    running = [j for j, i in enumerate(active) if finish[i] is None]
                    if not running:
                        break
                    current = torch.tensor(chosen, dtype=torch.long).unsqueeze(1)
                    mask = torch.cat([mask, torch.ones((len(active), 1), dtype=torch.long)], dim=1)
                    if len(running) < len(active) and _droppable(past):
                        keep = torch.tensor(running, dtype=torch.long)
                        past.batch_select_indices(keep)
                        self.batch.select(keep)
                        current, mask = current[keep], mask[keep]
                        active = [active[j] for j in running]
            finally:
                self.batch.clear()
        return [(tokens, reason or "length") for tokens, reason in zip(produced, finish)]

    @torch.no_grad()
    def logits(self, input_ids: torch.Tensor, adapters: Sequence[Optional[LoraAdapter]]) -> torch.Tensor:
        """One forward pass (no padding) with a per-row adapter: for tests and benchmarks."""
        with self._lock:
            self.batch.set(adapters)
            try:
                return self.model(input_ids=input_ids).logits
            finally:
                self.batch.clear()


def _droppable(past: Any) -> bool:
    """Whether rows can be dropped from this KV cache (transformers' DynamicCache: every layer
    keeps its own tensors and can select batch rows)."""
    layers = getattr(past, "layers", None)
    return (callable(getattr(past, "batch_select_indices", None)) and layers is not None
            and all(callable(getattr(layer, "batch_select_indices", None)) for layer in layers))


def _pick(logits: torch.Tensor, temperature: float, generator: Optional[torch.Generator], top_p: float = 1.0) -> int:
    if temperature <= 0:
        return int(torch.argmax(logits))
    probabilities = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1:
        # the smallest set of most likely tokens whose probabilities add up to top_p (at least one)
        ordered, order = torch.sort(probabilities, descending=True, stable=True)
        ordered = torch.where(ordered.cumsum(-1) - ordered >= top_p, torch.zeros_like(ordered), ordered)
        probabilities = torch.zeros_like(probabilities).scatter(-1, order, ordered)
    return int(torch.multinomial(probabilities, 1, generator=generator))


def _features(layer: torch.nn.Module) -> tuple[int, int]:
    """(out, in) of a Linear, or of a GPT-2 style Conv1D (weight stored as in × out)."""
    if isinstance(layer, torch.nn.Linear):
        return layer.out_features, layer.in_features
    weight = getattr(layer, "weight", None)
    if weight is not None and weight.dim() == 2 and type(layer).__name__ == "Conv1D":
        return weight.shape[1], weight.shape[0]
    raise AdapterError(f"cannot adapt a {type(layer).__name__} layer")
