"""How well does ``openledger-node model influence`` (DataInf) find the training contributions that
matter? Two honest checks on a setup that runs on the CPU in minutes, with the tiny model of
scripts/make_tiny_model.py:

1. **Mislabeled-data detection** (the DataInf paper's first experiment). A generated Datanet of N
   contributions (default 60), each a few facts of a fixed world: every ship has one home port and
   one cargo ("The Kestrel sails home to Genoa with salt."). A fixed-seed 20% of them are
   corrupted: every port and cargo in them is replaced by a wrong one (the ship names and the
   sentence frame stay). A LoRA adapter is trained on all N (``factory.train_adapter``, the same
   code as ``model train``); each contribution is scored by its influence on a clean validation
   set (contributions never trained on; their gradients averaged), and by its self-influence.
   Corrupted contributions should be the least helpful (most negative influence) or the most
   self-influential; the AUC of telling them apart is printed for DataInf, the exact damped
   per-layer Fisher inverse with the same damping, the gradient dot product (TracIn at one
   checkpoint), gradient cosine, and a random score, for each seed and their mean.

2. **Linear datamodeling score** (LDS; Park et al., TRAK, 2023), with ``--lds K``: retrain the
   adapter on K random halves of the (corrupted) training set, same hyperparameters and seed;
   for each validation contribution z, the Spearman correlation over the K halves between the
   predicted helpfulness of the half (the sum of the scores, computed once on the full model) and
   the actual drop in z's loss (base model minus adapter trained on that half); averaged over z.
   One retrained model per half (TRAK averages several seeds per subset), so the actual losses
   are noisy and the score understates what a larger budget would show. K = 16 adds about
   1.5 CPU minutes per seed; it runs for the first ``--lds-seeds`` seeds (default 1).

The adapter adapts q_proj, v_proj and lm_head: with q_proj and v_proj alone, LoRA on the tiny model
plateaus near 1.8 nats/token on this text (full fine-tuning reaches 0.56) and learns no fact at all,
so there would be nothing for influence to find; with lm_head it reaches about 0.3-0.6.

Measured (defaults, seeds 0-4: about a minute on 2 CPU cores; with --lds 16 --lds-seeds 3, 5.5
minutes in all, the same numbers on every run): detection AUC, mean of
5 seeds: DataInf on validation 0.598, exact damped Fisher 0.864, gradient dot product 0.575,
gradient cosine 0.840, DataInf self-influence 0.920, training loss alone 0.998, random 0.560
(chance 0.5, sd 0.094 per seed). LDS (16 halves, seeds 0, 1, 2): DataInf 0.443 / 0.493 / 0.237
(mean 0.391), exact 0.489 / 0.483 / 0.204 (0.392), gradient dot product 0.456 / 0.447 / 0.241
(0.381), cosine 0.458 / 0.531 / 0.218 (0.402): no method is better than another by more than
the spread between seeds. In this regime (lambda_l orders of magnitude below ||g||^2)
DataInf's swapped inverse stays close to the plain dot product (their scores correlate ~0.85) and
its AUC does not move with the damping scale from 0.001 to 10, while the exact inverse of the same
damped Fisher separates corrupted data well; the corrupted facts are also simply the ones the
adapter cannot fit, so the training loss alone nearly separates them here.

Usage:
    python scripts/eval_influence.py [--base-model DIR] [--n 60] [--corrupt 0.2] [--seeds 0,1,2,3,4]
                                     [--epochs 40] [--lds 16 --lds-seeds 3] [--json FILE]

Without --base-model the tiny model is built (once) under build/tiny-model. Nothing here is a
pass/fail threshold: it prints the numbers.
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# Words the tiny base model already knows (its corpus grammar), mostly one token each: what is
# left to learn is the facts, not the spelling.
NOUNS = "farmer river village market teacher engine garden bridge letter harbor baker painter".split()
FOODS = "bread soup rice beans apples onions cheese tomatoes flour butter eggs carrots".split()
ADJECTIVES = "small old bright quiet green heavy warm cold busy gentle narrow wide".split()


def tiny_model(path: Path) -> Path:
    if not (path / "model.safetensors").is_file():
        subprocess.run([sys.executable, str(REPO / "scripts" / "make_tiny_model.py"), str(path)], check=True)
    return path


def world(seed: int) -> dict[str, tuple[str, str]]:
    """Each noun's one adjective and one food (permutations fixed by the seed)."""
    rng = random.Random(f"world-{seed}")
    adjectives, foods = ADJECTIVES[:], FOODS[:]
    rng.shuffle(adjectives)
    rng.shuffle(foods)
    return {noun: (adjective, food) for noun, adjective, food in zip(NOUNS, adjectives, foods)}


def contribution_text(rng: random.Random, facts: dict[str, tuple[str, str]], corrupt: bool) -> str:
    sentences = []
    start = rng.randrange(len(NOUNS))  # four nouns in a fixed cyclic order: only the first is a surprise
    for noun in (NOUNS * 2)[start:start + 4]:
        adjective, food = facts[noun]
        if corrupt:  # a wrong adjective and a wrong food: mislabeled facts in the same frame
            adjective = rng.choice([a for a in ADJECTIVES if a != adjective])
            food = rng.choice([f for f in FOODS if f != food])
        sentences.append(f"The {noun} is {adjective} and eats {food}.")
    return " ".join(sentences)


def dataset(seed: int, n: int, validation: int, fraction: float):
    """(training contributions, indexes of the corrupted ones, clean validation contributions)."""
    from openledger_node.ai.datanet import Contribution

    facts = world(seed)
    rng = random.Random(f"data-{seed}")
    corrupted = set(rng.sample(range(n), round(fraction * n)))
    train = [Contribution(1, i + 1, contribution_text(rng, facts, i in corrupted)) for i in range(n)]
    held = [Contribution(1, n + i + 1, contribution_text(rng, facts, False)) for i in range(validation)]
    return train, sorted(corrupted), held


def ranks(values: list[float]) -> list[float]:
    """1-based ranks, ties averaged."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def auc(scores: list[float], positives: set[int]) -> float:
    """P(score of a positive > score of a negative), ties half (Mann-Whitney)."""
    r = ranks(scores)
    p = len(positives)
    q = len(scores) - p
    return (sum(r[i] for i in positives) - p * (p + 1) / 2) / (p * q)


def spearman(x: list[float], y: list[float]) -> float:
    rx, ry = ranks(x), ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    vx = sum((a - mx) ** 2 for a in rx) ** 0.5
    vy = sum((b - my) ** 2 for b in ry) ** 0.5
    return cov / (vx * vy) if vx and vy else 0.0


def settings_for(args, seed: int):
    from openledger_node.ai.factory import LoraSettings

    targets = tuple(t for t in args.targets.split(",") if t) if args.targets else None
    return LoraSettings(rank=args.rank, alpha=2 * args.rank, target_modules=targets, epochs=args.epochs, batch_size=8,
                        block_size=64, seed=seed, learning_rate=args.lr, eval_fraction=0.0)


def per_example_losses(model, base, examples) -> list[float]:
    import torch

    from openledger_node.ai.influence import example_loss

    model.eval()
    with torch.no_grad():
        return [float(example_loss(model, e, base.tokenizer.pad_token_id)[0]) for e in examples]


def run_seed(args, model_dir: Path, seed: int, lds: int) -> dict:
    import torch

    from openledger_node.ai import influence as inf
    from openledger_node.ai.base import load_base_model
    from openledger_node.ai.factory import train_adapter

    train, corrupted, held = dataset(seed, args.n, args.validation, args.corrupt)
    started = time.monotonic()
    base = load_base_model(model_dir)
    val_examples = [inf.contribution_example(base, c, 64) for c in held]
    base_val = per_example_losses(base.model, base, val_examples)
    model, report = train_adapter(base, train, [], settings_for(args, seed))
    trained_at = time.monotonic()
    engine = inf.LoraGradients(model, base.tokenizer.pad_token_id)
    grads = engine.stack([inf.contribution_example(base, c, 64) for c in train])
    train_losses = list(engine.losses)
    val_grads = engine.stack(val_examples)
    val_losses = engine.losses[len(train):]
    v = {name: g.mean(dim=0) for name, g in val_grads.items()}
    found = inf.scores(grads, v)
    found["self_influence"] = -inf.self_influence(grads)  # high self-influence = suspicious: negate to "helpfulness"
    scored_at = time.monotonic()
    bad = set(corrupted)
    rng = random.Random(f"random-{seed}")
    detection = {name: auc([-float(x) for x in values], bad) for name, values in found.items()}
    detection["random"] = auc([rng.random() for _ in train], bad)
    detection["train_loss"] = auc(train_losses, bad)  # corrupted facts are harder to fit: a loss-only baseline
    out = {
        "seed": seed, "n": len(train), "corrupted": corrupted, "validation": len(held),
        "trainLossFirst": report.train_loss_first, "trainLossLast": report.train_loss_last,
        "validationLossBase": sum(base_val) / len(base_val), "validationLossAdapter": sum(val_losses) / len(val_losses),
        "auc": detection, "secondsTrain": round(trained_at - started, 1), "secondsScore": round(scored_at - trained_at, 1),
    }
    if lds:
        # per validation example: each method's scores for that example alone
        per_val = []
        for j in range(len(held)):
            vj = {name: g[j] for name, g in val_grads.items()}
            s = inf.scores(grads, vj)
            per_val.append({name: [float(x) for x in t] for name, t in s.items()})
        halves_rng = random.Random(f"halves-{seed}")
        subsets, actual = [], []  # actual[k][j]: loss drop of validation example j under half k
        for k in range(lds):
            subset = sorted(halves_rng.sample(range(len(train)), len(train) // 2))
            fresh = load_base_model(model_dir)
            retrained, _ = train_adapter(fresh, [train[i] for i in subset], [], settings_for(args, seed))
            losses = per_example_losses(retrained, fresh, val_examples)
            subsets.append(subset)
            actual.append([b - a for b, a in zip(base_val, losses)])
            print(f"  LDS half {k + 1}/{lds}", file=sys.stderr, flush=True)
        out["lds"] = {}
        for name in ("datainf", "exact", "grad_dot", "cosine"):
            correlations = []
            for j in range(len(held)):
                predicted = [sum(per_val[j][name][i] for i in subset) for subset in subsets]
                correlations.append(spearman(predicted, [actual[k][j] for k in range(lds)]))
            out["lds"][name] = sum(correlations) / len(correlations)
        out["lds"]["halves"] = lds
        out["secondsLds"] = round(time.monotonic() - scored_at, 1)
    del torch
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-model", type=Path, default=None)
    parser.add_argument("--n", type=int, default=60, help="training contributions")
    parser.add_argument("--validation", type=int, default=12, help="clean validation contributions")
    parser.add_argument("--corrupt", type=float, default=0.2, help="share of training contributions corrupted")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--targets", default="q_proj,v_proj,lm_head", help="LoRA target modules (comma-separated)")
    parser.add_argument("--lds", type=int, default=0, metavar="K", help="also the LDS over K random halves")
    parser.add_argument("--lds-seeds", type=int, default=1, metavar="S", help="compute the LDS for the first S seeds")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", type=Path, default=None, help="write every number to this file")
    args = parser.parse_args()

    import torch

    warnings.filterwarnings("ignore", message=".*tie_word_embeddings.*")  # peft, about the tied lm_head: harmless here
    if args.threads:
        torch.set_num_threads(args.threads)
    model_dir = args.base_model or tiny_model(REPO / "build" / "tiny-model")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    results = []
    for position, seed in enumerate(seeds):
        result = run_seed(args, model_dir, seed, args.lds if position < args.lds_seeds else 0)
        results.append(result)
        print(f"seed {seed}: {result['n']} contributions, {len(result['corrupted'])} corrupted; train loss "
              f"{result['trainLossFirst']:.3f} -> {result['trainLossLast']:.3f}; clean validation loss "
              f"{result['validationLossBase']:.3f} -> {result['validationLossAdapter']:.3f}; "
              f"{result['secondsTrain']} s training, {result['secondsScore']} s scoring", file=sys.stderr, flush=True)

    methods = ["datainf", "exact", "grad_dot", "cosine", "self_influence", "train_loss", "random"]
    labels = {"datainf": "DataInf (influence on validation)", "exact": "exact damped Fisher (same lambda)",
              "grad_dot": "gradient dot product (TracIn, 1 ckpt)", "cosine": "gradient cosine",
              "self_influence": "DataInf self-influence", "train_loss": "training loss alone",
              "random": "random"}
    print(f"\ncorrupted-contribution detection AUC ({args.n} contributions, {args.corrupt:.0%} corrupted, "
          f"{args.validation} clean validation; {args.epochs} epochs, rank {args.rank}, lr {args.lr})")
    header = f"{'method':<40}" + "".join(f"{'seed ' + str(s):>9}" for s in seeds) + f"{'mean':>9}"
    print(header)
    for method in methods:
        values = [r["auc"][method] for r in results]
        print(f"{labels[method]:<40}" + "".join(f"{v:>9.3f}" for v in values) + f"{sum(values) / len(values):>9.3f}")
    p, q = len(results[0]["corrupted"]), results[0]["n"] - len(results[0]["corrupted"])
    print(f"(chance: 0.5, with a standard deviation of {((p + q + 1) / (12 * p * q)) ** 0.5:.3f} per seed at "
          f"{p} corrupted / {q} clean)")
    with_lds = [r for r in results if "lds" in r]
    if with_lds:
        print(f"\nlinear datamodeling score ({args.lds} random halves per seed, one model each; mean Spearman over "
              f"{args.validation} validation contributions; {sum(r['secondsLds'] for r in with_lds):.0f} s)")
        print(f"{'method':<40}" + "".join(f"{'seed ' + str(r['seed']):>9}" for r in with_lds) + f"{'mean':>9}")
        for method in ("datainf", "exact", "grad_dot", "cosine"):
            values = [r["lds"][method] for r in with_lds]
            print(f"{labels[method]:<40}" + "".join(f"{v:>9.3f}" for v in values) + f"{sum(values) / len(values):>9.3f}")
    if args.json:
        args.json.write_text(json.dumps({"arguments": {k: str(v) for k, v in vars(args).items()}, "results": results},
                                        indent=1) + "\n")


if __name__ == "__main__":
    main()
