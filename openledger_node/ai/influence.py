"""Off-chain influence of each training contribution on one output of a LoRA model: DataInf
(Kwon, Wu, Wu and Zou, "DataInf: Efficiently Estimating Data Influence in LoRA-tuned LLMs and
Diffusion Models", ICLR 2024), with simpler baselines for comparison.

What is measured. For a training contribution i and a test text (prompt + output, the loss
counted on the output's tokens only), the influence function asks how the test loss would
change if i were up-weighted in training:  d loss_test / d eps = -v^T H^-1 g_i,  with
v = grad of the test loss, g_i = grad of i's training loss, H the training loss's Hessian, all
w.r.t. the adapter's parameters (the base model is frozen). DataInf approximates H per adapted
layer l by the damped empirical Fisher  (1/n) sum_j g_jl g_jl^T + lambda_l I,  swaps the order
of inversion and averaging, and inverts each rank-one term exactly (Sherman-Morrison):

    H_l^-1 ~= (1 / (n lambda_l)) sum_j ( I - g_jl g_jl^T / (lambda_l + ||g_jl||^2) )

    score(i) = sum_l v_l^T H_l^-1 g_il
             = sum_l ( n (v_l.g_il) - sum_j c_jl (g_jl.g_il) ) / (n lambda_l),
      c_jl = (v_l.g_jl) / (lambda_l + ||g_jl||^2)

computed from each layer's n x n Gram matrix of training gradients, in float64.
lambda_l = 0.1 x (n d_l)^-1 sum_i ||g_il||^2  (the paper's choice, as in its reference code:
0.1 x the mean over training points and over the layer's d_l parameters of the squared
gradient entries).

**Sign convention**: every score here is the *helpfulness*  v^T H^-1 g_i = -(the paper's
influence):  a positive score means up-weighting the contribution lowers the output's loss (it
helped produce the output); negative means it pushed the model away from it. (The DataInf
paper and its code report -v^T H^-1 g, where mislabeled points score high.)

Baselines (same gradients): ``grad_dot``, v.g_i over all adapter parameters (TracIn with one
checkpoint, "Hessian-free" in the paper); ``cosine``, the same normalized by both norms;
``exact``, v^T H_l^-1 g_i with the same damped per-layer Fisher inverted exactly (Woodbury,
through the n x n Gram) rather than DataInf's approximation.

Gradients are taken as training saw the text: each contribution is tokenized and cut into
blocks exactly as ``factory.encode`` does for training (BOS, text, EOS, blocks of the
manifest's ``blockSize``), alone, and its loss is the mean next-token cross-entropy over its
tokens. The model is in eval mode (no dropout), in float64; the same inputs give the same
scores bit for bit. Cost: one forward and backward pass per contribution, and n x (adapter
parameters) float64 numbers of memory for the gradients (about 6 MB for 60 contributions of the
tiny model's q/v adapter; a 7B model's rank-8 q/v adapter would need ~33 MB per contribution).
Past a memory budget (``influence(..., max_memory_mb=)``, ``model influence --max-memory-mb``),
``datainf_streaming`` computes the same DataInf score (and grad_dot, cosine) with memory
independent of n (three adapter-sized vectors, 2 n L scalars, as many first-pass gradients as the
budget holds): three passes over the contributions, so up to three forward and backward passes
per contribution; the exact baseline needs every gradient at once and is left out there.
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import torch

from .base import BaseModel
from .datanet import Contribution
from .factory import ADAPTER_FILE, MANIFEST_FILE, encode

DAMPING = 0.1  # lambda_l = DAMPING x mean squared gradient entry of layer l (DataInf's choice)
METHODS = ("datainf", "exact", "grad_dot", "cosine")

Gradients = Mapping[str, torch.Tensor]  # layer name -> (n, d_l) rows of training gradients, or (d_l,) for a test


class InfluenceError(Exception):
    """An adapter or input that influence cannot be computed for: one line."""


# ----------------------------------------------------------------------------- the math


def damping(train: Gradients, scale: float = DAMPING) -> dict[str, float]:
    """lambda_l = scale x (n d_l)^-1 sum_i ||g_il||^2, per layer."""
    out = {}
    for name, grads in train.items():
        n, d = grads.shape
        out[name] = scale * float((grads * grads).sum()) / (n * d)
    return out


def _checked(train: Gradients, test: Gradients) -> list[str]:
    if set(train) != set(test):
        raise ValueError("the training and test gradients cover different layers")
    names = sorted(train)
    if not names:
        raise ValueError("no layers")
    sizes = {train[name].shape[0] for name in names}
    if len(sizes) != 1:
        raise ValueError("layers disagree on the number of training points")
    return names


def datainf(train: Gradients, test: Gradients, scale: float = DAMPING,
            lambdas: Optional[Mapping[str, float]] = None) -> torch.Tensor:
    """DataInf's helpfulness of each training point (n,) for one test gradient (see the module
    docstring): sum over layers of v_l^T [ (1/(n lambda_l)) sum_j (I - g_jl g_jl^T/(lambda_l+||g_jl||^2)) ] g_il."""
    names = _checked(train, test)
    lambdas = damping(train, scale) if lambdas is None else lambdas
    total = None
    for name in names:
        g = train[name].to(torch.float64)
        v = test[name].to(torch.float64)
        n = g.shape[0]
        lam = lambdas[name]
        gram = g @ g.T  # (n, n)
        a = g @ v  # v.g_j
        c = a / (lam + gram.diagonal())
        part = (n * a - gram @ c) / (n * lam)
        total = part if total is None else total + part
    return total


def self_influence(train: Gradients, scale: float = DAMPING) -> torch.Tensor:
    """g_i^T H^-1 g_i with DataInf's inverse: how much each point's own loss depends on itself
    (large for points unlike the rest, e.g. corrupted ones)."""
    names = _checked(train, {name: train[name][0] for name in train})
    lambdas = damping(train, scale)
    total = None
    for name in names:
        g = train[name].to(torch.float64)
        n, lam = g.shape[0], lambdas[name]
        gram = g @ g.T
        norms = gram.diagonal()
        part = (n * norms - (gram * gram / (lam + norms)[None, :]).sum(dim=1)) / (n * lam)
        total = part if total is None else total + part
    return total


def exact(train: Gradients, test: Gradients, scale: float = DAMPING,
          lambdas: Optional[Mapping[str, float]] = None) -> torch.Tensor:
    """v_l^T ((1/n) G_l^T G_l + lambda_l I)^-1 g_il summed over layers, the inverse exact (Woodbury:
    (1/lambda)(I - G^T (n lambda I + G G^T)^-1 G)), the same lambda as DataInf."""
    names = _checked(train, test)
    lambdas = damping(train, scale) if lambdas is None else lambdas
    total = None
    for name in names:
        g = train[name].to(torch.float64)
        v = test[name].to(torch.float64)
        n, lam = g.shape[0], lambdas[name]
        gram = g @ g.T
        a = g @ v
        solved = torch.linalg.solve(gram + n * lam * torch.eye(n, dtype=torch.float64), a)
        part = (a - gram @ solved) / lam
        total = part if total is None else total + part
    return total


@dataclass
class Streamed:
    """What ``datainf_streaming`` finds: DataInf's score and the baselines that need no Gram
    matrix, each (n,), the damping per layer, and how many gradients it computed and cached."""
    datainf: torch.Tensor
    grad_dot: torch.Tensor
    cosine: torch.Tensor
    lambdas: dict[str, float]
    computed: int  # calls of ``gradient``
    cached: int  # gradients kept from pass 1 (not recomputed in passes 2 and 3)


def datainf_streaming(gradient: Callable[[int], Mapping[str, torch.Tensor]], n: int, test: Gradients,
                      scale: float = DAMPING, cache_bytes: int = 0) -> Streamed:
    """DataInf (the same score as ``datainf``) with memory independent of n: each training gradient
    is asked for (``gradient(j)``, one layer name -> (d_l,)) when needed and dropped, in three passes
    in index order:

    1. s_jl = ||g_jl||^2 and a_jl = v_l.g_jl for every j and layer (2 n L scalars), hence
       lambda_l = scale (n d_l)^-1 sum_j s_jl (``damping``'s definition) and c_jl = a_jl / (lambda_l + s_jl);
    2. u_l = sum_j c_jl g_jl (one adapter-sized vector);
    3. score_i = sum_l (n a_il - u_l.g_il) / (n lambda_l)   (= g_i . r with r_l = (n v_l - u_l)/(n lambda_l)).

    lambda_l is only known after every gradient has been seen and c_jl is not linear in it, so u
    cannot be accumulated in pass 1, and u.g_i needs u complete: three gradient computations per
    point rather than one, unless the point's gradient fits in ``cache_bytes`` (the first ones, in
    order, are kept from pass 1). A recomputed gradient must equal the first (the model is
    deterministic): checked on its norm. grad_dot and cosine come free from pass 1; the exact
    inverse (``exact``) and ``self_influence`` need the Gram matrix and are not computed."""
    if n < 1:
        raise ValueError("no training points")
    names = sorted(test)
    if not names:
        raise ValueError("no layers")
    v = {name: test[name].to(torch.float64).reshape(-1) for name in names}
    squares = {name: torch.zeros(n, dtype=torch.float64) for name in names}
    dots = {name: torch.zeros(n, dtype=torch.float64) for name in names}
    cache: dict[int, dict[str, torch.Tensor]] = {}
    computed = used = 0

    def fetch(j: int) -> dict[str, torch.Tensor]:
        nonlocal computed
        found = gradient(j)
        computed += 1
        if set(found) != set(names):
            raise ValueError("the training and test gradients cover different layers")
        row = {}
        for name in names:
            g = found[name].to(torch.float64).reshape(-1)
            if g.shape != v[name].shape:
                raise ValueError(f"layer {name}: a training gradient of {g.numel()} entries, the test's has {v[name].numel()}")
            row[name] = g
        return row

    def again(j: int) -> dict[str, torch.Tensor]:
        if j in cache:
            return cache[j]
        row = fetch(j)
        for name in names:
            first, now = float(squares[name][j]), float(row[name] @ row[name])
            if abs(now - first) > 1e-9 * max(abs(first), 1e-300):
                raise InfluenceError(f"training point {j}'s gradient changed between passes ({name}: squared norm "
                                     f"{first!r}, then {now!r}): the model is not deterministic")
        return row

    for j in range(n):  # pass 1: scalars
        row = fetch(j)
        for name in names:
            squares[name][j] = row[name] @ row[name]
            dots[name][j] = row[name] @ v[name]
        size = 8 * sum(g.numel() for g in row.values())
        if used + size <= cache_bytes:
            cache[j] = row
            used += size
    lambdas = {name: scale * float(squares[name].sum()) / (n * v[name].numel()) for name in names}
    coefficients = {name: dots[name] / (lambdas[name] + squares[name]) for name in names}
    u = {name: torch.zeros_like(v[name]) for name in names}
    for j in range(n):  # pass 2: u_l = sum_j c_jl g_jl
        row = again(j)
        for name in names:
            u[name].add_(row[name], alpha=float(coefficients[name][j]))
    total = torch.zeros(n, dtype=torch.float64)
    for i in range(n):  # pass 3: score_i
        row = again(i)
        total[i] = sum(float((n * dots[name][i] - u[name] @ row[name]) / (n * lambdas[name])) for name in names)
    grad_dots = sum(dots[name] for name in names)
    train_norms = torch.sqrt(sum(squares[name] for name in names))
    test_norm = math.sqrt(sum(float(v[name] @ v[name]) for name in names))
    return Streamed(total, grad_dots, grad_dots / (train_norms * test_norm).clamp_min(1e-300), lambdas, computed,
                    len(cache))


def grad_dot(train: Gradients, test: Gradients) -> torch.Tensor:
    """v.g_i over all adapter parameters (TracIn at one checkpoint, up to the learning rate)."""
    names = _checked(train, test)
    return sum(train[name].to(torch.float64) @ test[name].to(torch.float64) for name in names)


def cosine(train: Gradients, test: Gradients) -> torch.Tensor:
    """v.g_i / (||v|| ||g_i||) over all adapter parameters."""
    names = _checked(train, test)
    dots = grad_dot(train, test)
    train_norms = torch.sqrt(sum((train[name].to(torch.float64) ** 2).sum(dim=1) for name in names))
    test_norm = math.sqrt(sum(float((test[name].to(torch.float64) ** 2).sum()) for name in names))
    return dots / (train_norms * test_norm).clamp_min(1e-300)


def scores(train: Gradients, test: Gradients, scale: float = DAMPING) -> dict[str, torch.Tensor]:
    """Every method's helpfulness for one test gradient, by name (METHODS)."""
    lambdas = damping(train, scale)
    return {"datainf": datainf(train, test, lambdas=lambdas), "exact": exact(train, test, lambdas=lambdas),
            "grad_dot": grad_dot(train, test), "cosine": cosine(train, test)}


# ----------------------------------------------------------------------------- gradients of a LoRA model


@dataclass(frozen=True)
class Example:
    """Token blocks and their labels (-100: not counted in the loss)."""
    blocks: tuple[tuple[int, ...], ...]
    labels: tuple[tuple[int, ...], ...]

    @property
    def tokens(self) -> int:
        """How many tokens the loss counts (each block's first token is never predicted)."""
        return sum(sum(1 for t in labels[1:] if t != -100) for labels in self.labels)


def contribution_example(base: BaseModel, contribution: Contribution, block_size: int) -> Example:
    """A contribution as training saw it (``factory.encode`` of it alone), every token counted."""
    blocks = tuple(tuple(block) for block in encode(base, [contribution], block_size))
    return Example(blocks, blocks)


def output_example(base: BaseModel, output: str, prompt: str = "", block_size: Optional[int] = None) -> Example:
    """BOS, the prompt, then the output, in windows of ``block_size`` tokens that overlap by one
    (so every output token is predicted once, with up to a block of context); only the output's
    tokens count in the loss (the prompt and BOS are context). The prompt and the output are
    tokenized separately so that the boundary between them is exact."""
    tokenizer = base.tokenizer
    block_size = max(2, min(block_size or base.max_length, base.max_length))
    context = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    if prompt:
        context += tokenizer(prompt, add_special_tokens=False, verbose=False)["input_ids"]
    target = tokenizer(output, add_special_tokens=False, verbose=False)["input_ids"]
    if not target:
        raise InfluenceError("the output has no tokens")
    ids = context + target
    labels = [-100] * len(context) + target
    # windows overlapping by one token, so that every output token is predicted exactly once
    starts = range(0, max(len(ids) - 1, 1), block_size - 1)
    blocks = tuple(tuple(ids[s:s + block_size]) for s in starts)
    label_blocks = tuple(tuple(labels[s:s + block_size]) for s in starts)
    example = Example(blocks, label_blocks)
    if example.tokens == 0:
        raise InfluenceError("no output token can be predicted (is the output only one token at a block's start?)")
    return example


def lora_parameters(model) -> dict[str, list[torch.nn.Parameter]]:
    """The adapter's parameters by adapted module (its LoRA A and B), in name order."""
    layers: dict[str, list[tuple[str, torch.nn.Parameter]]] = {}
    for name, parameter in model.named_parameters():
        if ".lora_A." in name or ".lora_B." in name:
            module = name.split(".lora_")[0].removeprefix("base_model.model.")
            layers.setdefault(module, []).append((name, parameter))
    if not layers:
        raise InfluenceError("the model has no LoRA parameters")
    return {module: [p for _, p in sorted(pairs, key=lambda pair: pair[0])] for module, pairs in sorted(layers.items())}


def example_loss(model, example: Example, pad_id: int) -> tuple[torch.Tensor, int]:
    """Mean next-token cross-entropy of ``model`` over the example's counted tokens (in float64),
    and how many tokens that is."""
    width = max(len(block) for block in example.blocks)
    rows = len(example.blocks)
    input_ids = torch.full((rows, width), pad_id, dtype=torch.long)
    labels = torch.full((rows, width), -100, dtype=torch.long)
    mask = torch.zeros((rows, width), dtype=torch.long)
    for row, (block, label) in enumerate(zip(example.blocks, example.labels)):
        input_ids[row, : len(block)] = torch.tensor(block)
        labels[row, : len(label)] = torch.tensor(label)
        mask[row, : len(block)] = 1
    logits = model(input_ids=input_ids, attention_mask=mask).logits.to(torch.float64)
    targets = labels[:, 1:]
    count = int((targets != -100).sum())
    if count == 0:
        raise InfluenceError("an example with no token to predict")
    summed = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction="sum")
    return summed / count, count


class LoraGradients:
    """Per-example gradients of a peft LoRA model's loss w.r.t. its adapter, per adapted layer,
    in float64. The model is put in eval mode and cast to float64; only LoRA weights get gradients."""

    def __init__(self, model, pad_id: int) -> None:
        self.model = model.to(torch.float64)
        self.model.eval()
        for name, parameter in self.model.named_parameters():
            parameter.requires_grad_(".lora_A." in name or ".lora_B." in name)
        self.layers = lora_parameters(self.model)
        self.pad_id = pad_id
        self.losses: list[float] = []

    def loss(self, example: Example) -> tuple[torch.Tensor, int]:
        """Mean next-token cross-entropy over the example's counted tokens (and how many)."""
        return example_loss(self.model, example, self.pad_id)

    def gradient(self, example: Example) -> dict[str, torch.Tensor]:
        """Each layer's gradient (A then B, flattened) of the example's mean loss."""
        loss, _ = self.loss(example)
        flat = [p for params in self.layers.values() for p in params]
        grads = torch.autograd.grad(loss, flat)
        self.losses.append(float(loss.detach()))
        out, at = {}, 0
        for name, params in self.layers.items():
            out[name] = torch.cat([g.reshape(-1) for g in grads[at:at + len(params)]]).detach()
            at += len(params)
        return out

    def stack(self, examples: Sequence[Example]) -> dict[str, torch.Tensor]:
        """(n, d_l) per layer: row i the gradient of example i."""
        rows = [self.gradient(example) for example in examples]
        return {name: torch.stack([row[name] for row in rows]) for name in self.layers}

    def mean(self, examples: Sequence[Example]) -> dict[str, torch.Tensor]:
        """The average gradient over ``examples`` (a validation set's v)."""
        stacked = self.stack(examples)
        return {name: grads.mean(dim=0) for name, grads in stacked.items()}


# ----------------------------------------------------------------------------- an adapter directory


def read_manifest(adapter: Path) -> dict[str, Any]:
    """The adapter's manifest.json (written by ``model train``); InfluenceError when missing or unreadable."""
    path = Path(adapter) / MANIFEST_FILE
    if not Path(adapter).is_dir():
        raise InfluenceError(f"adapter directory {adapter} does not exist")
    if not path.is_file():
        raise InfluenceError(f"{adapter} has no {MANIFEST_FILE}: influence needs the Datanet versions and the split "
                             f"the adapter was trained on (model train writes it)")
    try:
        document = json.loads(path.read_text())
        document["baseModel"]["sha256"], document["datanets"], document["split"]["train"]
        document["hyperparameters"]["blockSize"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InfluenceError(f"{path} is unreadable or incomplete ({type(exc).__name__}: {exc})") from None
    if not (Path(adapter) / ADAPTER_FILE).is_file():
        raise InfluenceError(f"{adapter} has no {ADAPTER_FILE}")
    return document


def load_adapter(base: BaseModel, adapter: Path, manifest: Optional[dict[str, Any]] = None):
    """The base model with the adapter in ``adapter`` applied (peft), after checking the manifest's
    base model hash against ``base``."""
    from peft import PeftModel

    if manifest is not None and manifest["baseModel"]["sha256"] != base.sha256:
        raise InfluenceError(f"{adapter} was trained on base model sha256 {manifest['baseModel']['sha256'][:16]}..., "
                             f"{base.path} is {base.sha256[:16]}...: not the adapter's base model")
    try:
        with warnings.catch_warnings():  # peft asks a transformers 5 model a question v5 deprecated
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            return PeftModel.from_pretrained(base.model, str(adapter), is_trainable=False)
    except Exception as exc:  # peft/transformers raise many kinds
        raise InfluenceError(f"cannot load the adapter in {adapter}: {' '.join(str(exc).split())[:300]}") from None


def in_memory_bytes(n: int, parameters: int) -> int:
    """What the in-memory path holds (float64): n gradients of ``parameters`` entries, and about
    four n x n matrices per layer at a time (the Gram matrix, and the exact inverse's solve)."""
    return 8 * (n * parameters + 4 * n * n)


def streaming_bytes(parameters: int) -> int:
    """What the streaming path holds besides its n x layers scalars: the test gradient, u and one
    training gradient."""
    return 8 * 3 * parameters


@dataclass
class InfluenceReport:
    """Each method's helpfulness (see the module docstring for the sign) of each training
    contribution, in the order given, for one test text. On the streaming path ``scores`` has no
    "exact" (it needs every gradient at once)."""
    contributions: list[Contribution]
    scores: dict[str, list[float]]  # method -> one score per contribution
    test_loss: float  # mean loss on the output's tokens, nats/token
    test_tokens: int
    train_losses: list[float]
    lambdas: dict[str, float] = field(default_factory=dict)
    path: str = "in-memory"  # or "streaming" (``datainf_streaming``)
    parameters: int = 0  # the adapter's trainable parameters
    in_memory_bytes: int = 0  # what the in-memory path needs (``in_memory_bytes``)
    gradient_computations: int = 0  # training gradients computed (forward + backward each), all passes
    cached_gradients: int = 0  # streaming: gradients kept from pass 1 within the budget

    def ranks(self, method: str = "datainf") -> list[int]:
        """1 = the most helpful; ties broken by order given."""
        values = self.scores[method]
        order = sorted(range(len(values)), key=lambda i: (-values[i], i))
        ranks = [0] * len(values)
        for rank, i in enumerate(order, start=1):
            ranks[i] = rank
        return ranks


def influence(model, base: BaseModel, contributions: Sequence[Contribution], test: Sequence[Example],
              block_size: int, scale: float = DAMPING, max_memory_mb: Optional[float] = None) -> InfluenceReport:
    """Every method's helpfulness of each contribution for the test examples (their gradients
    averaged: one output, or a validation set).

    With ``max_memory_mb`` (MiB) the training gradients are all kept only when ``in_memory_bytes``
    fits in it; otherwise DataInf, grad_dot and cosine are computed by ``datainf_streaming`` (three
    passes over the contributions, keeping as many pass-1 gradients as the rest of the budget
    holds) and "exact" is left out. Both paths give the same DataInf scores (to rounding)."""
    if not contributions:
        raise InfluenceError("no training contributions")
    torch.manual_seed(0)  # nothing here is random; this only makes sure of it
    engine = LoraGradients(model, base.tokenizer.pad_token_id)
    n = len(contributions)
    parameters = sum(p.numel() for params in engine.layers.values() for p in params)
    needed = in_memory_bytes(n, parameters)
    tokens = sum(e.tokens for e in test)
    if max_memory_mb is None or needed <= max_memory_mb * 2**20:
        train = engine.stack([contribution_example(base, c, block_size) for c in contributions])
        train_losses = list(engine.losses)
        engine.losses.clear()
        v = engine.mean(list(test))
        test_loss = sum(engine.losses) / len(engine.losses)
        lambdas = damping(train, scale)
        found = {"datainf": datainf(train, v, lambdas=lambdas), "exact": exact(train, v, lambdas=lambdas),
                 "grad_dot": grad_dot(train, v), "cosine": cosine(train, v)}
        return InfluenceReport(list(contributions), {k: [float(x) for x in t] for k, t in found.items()}, test_loss,
                               tokens, train_losses, lambdas, "in-memory", parameters, needed, n, 0)
    v = engine.mean(list(test))
    test_loss = sum(engine.losses) / len(engine.losses)
    engine.losses.clear()
    cache_bytes = max(0, int(max_memory_mb * 2**20) - streaming_bytes(parameters))
    streamed = datainf_streaming(lambda j: engine.gradient(contribution_example(base, contributions[j], block_size)),
                                 n, v, scale, cache_bytes)
    found = {"datainf": streamed.datainf, "grad_dot": streamed.grad_dot, "cosine": streamed.cosine}
    return InfluenceReport(list(contributions), {k: [float(x) for x in t] for k, t in found.items()}, test_loss,
                           tokens, engine.losses[:n], streamed.lambdas, "streaming", parameters, needed,
                           streamed.computed, streamed.cached)
