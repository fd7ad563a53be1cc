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

    def use(self, other: "BatchAdapters") -> None:
        """Read ``other``'s stacks (a running batch keeps its own between steps)."""
        self._stacks = other._stacks

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
        self._pins: dict[str, int] = {}  # key -> running rows using it
        self.hits = self.misses = self.evictions = 0
        self.nbytes = 0  # adapter weights held, kept as adapters come and go (metrics read it per request)
        self.load_seconds: list[float] = []  # each cold load, for metrics

    def pin(self, key: str) -> None:
        """Mark ``key`` (in the cache) as in use by a running row: never evicted until unpinned."""
        self._pins[key] = self._pins.get(key, 0) + 1

    def unpin(self, key: str) -> None:
        count = self._pins.get(key, 0) - 1
        if count > 0:
            self._pins[key] = count
        else:
            self._pins.pop(key, None)

    def pinned(self, key: str) -> bool:
        return key in self._pins

    def can_take(self, key: str) -> bool:
        """Whether ``get(key)`` fits without evicting a pinned adapter (already in, a free slot, or an
        unpinned one to evict)."""
        return (key in self._entries or len(self._entries) < self.capacity
                or any(entry not in self._pins for entry in self._entries))

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
            # the least recently used that no running row holds (all pinned: over capacity until unpinned;
            # the engine asks can_take first, so that does not happen there)
            victim = next((entry for entry in self._entries if entry not in self._pins and entry != key), None)
            if victim is None:
                break
            self.nbytes -= _nbytes(self._entries.pop(victim))
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
        self._lock = threading.Lock()  # one forward pass at a time through the shared stacks

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
        adapter stacks are dropped), so it costs the others nothing in the steps that follow.
        (A ``RunningBatch`` with every row added at once, stepped until it is empty.)"""
        results: dict[int, tuple[list[int], str]] = {}
        batch = RunningBatch(self, on_token=on_token,
                             on_done=lambda row, tokens, reason: results.__setitem__(row, (tokens, reason)))
        batch.add(list(enumerate(rows)))
        while batch.active:
            batch.step()
        return [results[i] for i in range(len(rows))]

    def _forward(self, adapters: BatchAdapters, **inputs: Any) -> Any:
        """One forward pass with ``adapters``' stacks in the wrapped layers."""
        with self._lock:
            self.batch.use(adapters)
            try:
                return self.model(**inputs, use_cache=True)
            finally:
                self.batch.clear()

    @torch.no_grad()
    def logits(self, input_ids: torch.Tensor, adapters: Sequence[Optional[LoraAdapter]]) -> torch.Tensor:
        """One forward pass (no padding) with a per-row adapter: for tests and benchmarks."""
        with self._lock:
            self.batch.set(adapters)
            try:
                return self.model(input_ids=input_ids).logits
            finally:
                self.batch.clear()


@dataclass
class _Live:
    """A row of a running batch: who asked (``key``), what, and what it has produced so far."""
    key: Any
    row: GenerationRow
    generator: Optional[torch.Generator]
    produced: list[int]
    finish: Optional[str] = None


class RunningBatch:
    """Rows generating together, one decode step at a time (iteration-level batching, as Orca,
    vLLM and LoRAX do): ``add`` lets rows join between steps (their prompts get a forward pass of
    their own, with their adapters, then their KV cache is merged into the running one), ``step``
    decodes one token for every row, and a row that finishes leaves at once (``on_done(key,
    tokens, reason)``; ``on_token(key, token)`` as tokens come).

    State between steps: ``_pending`` (rows,) is each row's next input token, ``_mask`` (rows,
    cache length + 1) its attention mask, left-padded, the last column the pending token's.
    Position ids are ``mask.cumsum - 1``, so each row keeps its true positions whatever the
    padding: merging pads the shorter side (cache and mask) with masked zeros on the left, and a
    row gets the same tokens whether it ran alone, started with others or joined later.

    Merging needs transformers' DynamicCache with plain per-layer key/value tensors
    (``_mergeable``); with any other cache ``can_join`` is False while rows run, and new rows
    wait until the batch is empty (the batching of before: one batch at a time)."""

    def __init__(self, owner: "MultiLoraModel", on_token: Optional[Callable[[Any, int], None]] = None,
                 on_done: Optional[Callable[[Any, list[int], str], None]] = None) -> None:
        self.owner, self.on_token, self.on_done = owner, on_token, on_done
        tokenizer = owner.tokenizer
        self.eos = tokenizer.eos_token_id
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos
        self.adapters = BatchAdapters()
        self.steps = 0  # decode steps so far (all batches)
        self._reset()

    def _reset(self) -> None:
        self._rows: list[_Live] = []  # batch order (finished rows too, where the cache cannot drop them)
        self._past: Any = None
        self._mask: Optional[torch.Tensor] = None
        self._pending: Optional[torch.Tensor] = None
        self._mergeable = False
        self.adapters.clear()

    @property
    def active(self) -> bool:
        return any(live.finish is None for live in self._rows)

    def __len__(self) -> int:
        """Rows in the batch (what counts against max_batch)."""
        return len(self._rows)

    @property
    def can_join(self) -> bool:
        """Whether rows can join now: the batch is empty, or its cache can be merged."""
        return not self._rows or self._mergeable

    def keys(self) -> list[Any]:
        return [live.key for live in self._rows if live.finish is None]

    @torch.no_grad()
    def add(self, items: Sequence[tuple[Any, GenerationRow]]) -> None:
        """Prefill ``items`` ((key, row) pairs) and merge them into the batch; their first tokens
        come at once (a row may even finish here)."""
        if not items:
            return
        if not self.can_join:
            raise RuntimeError("rows cannot join this batch while it runs (its KV cache cannot be merged)")
        rows = [row for _, row in items]
        width = max(len(row.prompt) for row in rows)
        input_ids = torch.full((len(rows), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, width - len(row.prompt):] = torch.tensor(row.prompt, dtype=torch.long)
            mask[i, width - len(row.prompt):] = 1
        adapters = BatchAdapters()
        adapters.set([row.adapter for row in rows])
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.owner._forward(adapters, input_ids=input_ids, attention_mask=mask, position_ids=positions,
                                  past_key_values=None)
        live = [_Live(key, row, torch.Generator().manual_seed(row.seed) if row.seed is not None else None, [])
                for key, row in items]
        pending = torch.tensor(self._choose(live, out.logits[:, -1].float()), dtype=torch.long)
        mask = torch.cat([mask, torch.ones((len(rows), 1), dtype=torch.long)], dim=1)
        if not self._rows:
            self._rows, self._past, self._mask, self._pending = live, out.past_key_values, mask, pending
            self.adapters = adapters
            self._mergeable = _mergeable(self._past)
        else:
            past = out.past_key_values
            if not _mergeable(past) or len(past.layers) != len(self._past.layers):
                raise RuntimeError("the new rows' KV cache cannot be merged into the running batch's")
            length = max(self._mask.shape[1], mask.shape[1])
            self._mask = torch.cat([_pad_left(self._mask, length, 1), _pad_left(mask, length, 1)], dim=0)
            for old, new in zip(self._past.layers, past.layers):  # cache length = mask length - 1
                old.keys = torch.cat([_pad_left(old.keys, length - 1, 2), _pad_left(new.keys, length - 1, 2)], dim=0)
                old.values = torch.cat([_pad_left(old.values, length - 1, 2), _pad_left(new.values, length - 1, 2)],
                                       dim=0)
            self._pending = torch.cat([self._pending, pending])
            self._rows = self._rows + live
            self.adapters.set([live.row.adapter for live in self._rows])
        self._retire()

    @torch.no_grad()
    def step(self) -> None:
        """One decode step: a token for every row in the batch."""
        if not self.active:
            return
        positions = (self._mask.cumsum(-1) - 1).clamp(min=0)[:, -1:]
        out = self.owner._forward(self.adapters, input_ids=self._pending.unsqueeze(1), attention_mask=self._mask,
                                  position_ids=positions, past_key_values=self._past)
        self._past = out.past_key_values
        self.steps += 1
        self._pending = torch.tensor(self._choose(self._rows, out.logits[:, -1].float()), dtype=torch.long)
        self._mask = torch.cat([self._mask, torch.ones((len(self._rows), 1), dtype=torch.long)], dim=1)
        self._retire()

    def abort(self) -> list[Any]:
        """Empty the batch (after a failed step); the keys of the rows that had not finished."""
        keys = self.keys()
        self._reset()
        return keys

    def _choose(self, rows: list[_Live], logits: torch.Tensor) -> list[int]:
        """Each row's next token from its logits; rows that finish are marked and reported."""
        chosen = []
        for j, live in enumerate(rows):
            row = live.row
            if live.finish is not None:  # only where the cache could not drop finished rows
                chosen.append(self.pad)
                continue
            token = _pick(logits[j], row.temperature, live.generator, row.top_p)
            chosen.append(token)
            if token == self.eos and not row.ignore_eos:
                live.finish = "stop"
            else:
                live.produced.append(token)
                if self.on_token is not None:
                    self.on_token(live.key, token)
                if row.stop and find_stop(self.owner.tokenizer.decode(live.produced), row.stop) >= 0:
                    live.finish = "stop"
                elif len(live.produced) >= row.max_new_tokens:
                    live.finish = "length"
            if live.finish is not None and self.on_done is not None:
                self.on_done(live.key, live.produced, live.finish)
        return chosen

    def _retire(self) -> None:
        """Drop finished rows (cache rows, mask, adapter stacks), then the mask columns no row
        attends to any more (left padding that only finished rows needed)."""
        running = [j for j, live in enumerate(self._rows) if live.finish is None]
        if not running:
            self._reset()
            return
        if len(running) < len(self._rows) and _droppable(self._past):
            keep = torch.tensor(running, dtype=torch.long)
            self._past.batch_select_indices(keep)
            self.adapters.select(keep)
            self._mask, self._pending = self._mask[keep], self._pending[keep]
            self._rows = [self._rows[j] for j in running]
        if self._mergeable:
            used = self._mask.any(dim=0).nonzero()
            first = int(used[0]) if len(used) else 0
            if first > 0:
                self._mask = self._mask[:, first:]
                for layer in self._past.layers:
                    layer.keys, layer.values = layer.keys[:, :, first:], layer.values[:, :, first:]


def _pad_left(tensor: torch.Tensor, length: int, dim: int) -> torch.Tensor:
    """``tensor`` with zeros before it along ``dim`` up to ``length``."""
    missing = length - tensor.shape[dim]
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


def _mergeable(past: Any) -> bool:
    """Whether rows can be merged into this KV cache: transformers' DynamicCache whose layers are
    all plain DynamicLayers (keys and values (batch, heads, length, dim) that grow by
    concatenation; not sliding-window or static layers, whose lengths mean something else)."""
    try:
        from transformers.cache_utils import DynamicCache, DynamicLayer
    except ImportError:
        return False
    layers = getattr(past, "layers", None)
    return (isinstance(past, DynamicCache) and _droppable(past) and bool(layers)
            and all(type(layer) is DynamicLayer and layer.is_initialized
                    and isinstance(getattr(layer, "keys", None), torch.Tensor) and layer.keys.dim() == 4
                    for layer in layers))


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
