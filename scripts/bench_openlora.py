#!/usr/bin/env python3
"""OpenLoRA throughput and latency with 1, 10, 100 and 1,000 distinct adapters under the same
load, against the naive way (merge the request's adapter into a fresh copy of the base model,
then generate) in the same run.

    python scripts/bench_openlora.py [--base-model DIR] [--counts 1,10,100,1000] [--requests 1024]
                                     [--max-tokens 16] [--max-batch 16] [--cache 1024] [--threads 1]
                                     [--long-every 8 --long-tokens 128]

The load: ``--requests`` completions submitted at once (open loop) to OpenLoRA's engine (the
worker thread and batcher that ``serve-models`` runs, without HTTP and without the on-chain
attribution), spread evenly over N adapters in random order, each generating exactly
``--max-tokens`` tokens greedily. Each N runs twice: cold (empty cache: adapters load from
disk as they are first asked for) and warm (the same requests again). Adapters are random LoRA
weights in peft's format (rank ``--rank`` on q_proj and v_proj), written once under
build/bench-adapters. Without --base-model the tiny model of scripts/make_tiny_model.py is
built (once) under build/tiny-model. Prints one table; the goal is 1,000 adapters at no less
than half the single-adapter throughput. Then "mixed lengths": 1 request in ``--long-every``
asks for ``--long-tokens``, the same load run batch by batch and with continuous batching
(short requests' mean latency is what continuous batching improves).
"""
from __future__ import annotations

import argparse
import asyncio
import copy
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from openledger_node.ai.base import load_base_model  # noqa: E402  (sets the hub offline first)

PROMPTS = ["The farmer", "Log: the Osprey left", "Mix 3 cups of flour with", "At dawn the", "A small old"]


def tiny_model(path: Path) -> Path:
    if not (path / "model.safetensors").is_file():
        subprocess.run([sys.executable, str(REPO / "scripts" / "make_tiny_model.py"), str(path)], check=True)
    return path


def write_adapters(root: Path, base, count: int, rank: int) -> list[Path]:
    """``count`` random adapters in peft's layout (written directly: milliseconds each)."""
    import torch
    from safetensors.torch import save_file

    modules = [name for name, module in base.model.named_modules()
               if name.endswith(("q_proj", "v_proj")) and isinstance(module, torch.nn.Linear)]
    config = {"peft_type": "LORA", "r": rank, "lora_alpha": 2 * rank, "target_modules": ["q_proj", "v_proj"],
              "bias": "none", "task_type": "CAUSAL_LM", "lora_dropout": 0.0, "use_dora": False,
              "base_model_name_or_path": str(base.path)}
    paths = []
    for index in range(count):
        folder = root / f"r{rank}" / f"adapter-{index:05d}"
        paths.append(folder)
        if (folder / "adapter_model.safetensors").is_file():
            continue
        generator = torch.Generator().manual_seed(index)
        tensors = {}
        for name in modules:
            layer = base.model.get_submodule(name)
            tensors[f"base_model.model.{name}.lora_A.weight"] = torch.randn(
                rank, layer.in_features, generator=generator) * 0.05
            tensors[f"base_model.model.{name}.lora_B.weight"] = torch.randn(
                layer.out_features, rank, generator=generator) * 0.05
        folder.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
        (folder / "adapter_config.json").write_text(json.dumps(config))
    return paths


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_load(engine, jobs_spec, max_tokens) -> tuple[float, list[float], int]:
    """Submit every request at once; (wall seconds, latencies in request order, tokens generated).
    ``max_tokens``: one for all, or a list (one per request)."""
    from openledger_node.ai.serve import Job

    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    jobs = []
    lengths = max_tokens if isinstance(max_tokens, list) else [max_tokens] * len(jobs_spec)
    for (adapter_hash, prompt), tokens in zip(jobs_spec, lengths):
        job = Job(0, adapter_hash, prompt, tokens, 0.0, None, loop, ignore_eos=True)
        jobs.append(job)
        engine.submit(job)

    async def finish(job) -> tuple[float, int]:
        while True:
            event = await job.events.get()
            if event[0] == "done":
                return time.perf_counter() - started, len(event[1])
            if event[0] == "error":
                raise RuntimeError(event[2])

    results = await asyncio.gather(*(finish(job) for job in jobs))
    return time.perf_counter() - started, [latency for latency, _ in results], sum(n for _, n in results)


def naive(base, adapters: list[Path], prompts: list[list[int]], max_tokens: int) -> tuple[float, list[float], int]:
    """Per request: a fresh copy of the base model, the adapter merged into its weights, generate alone."""
    from openledger_node.ai.lora import GenerationRow, MultiLoraModel, read_adapter

    started = time.perf_counter()
    latencies, tokens = [], 0
    for path, prompt in zip(adapters, prompts):
        begun = time.perf_counter()
        model = copy.deepcopy(base.model)
        adapter = read_adapter(path)
        for name, (a, b) in adapter.layers.items():
            model.get_submodule(name).weight.data += b @ a
        (generated, _), = MultiLoraModel(model, base.tokenizer).generate(
            [GenerationRow(prompt, None, max_tokens, ignore_eos=True)])
        tokens += len(generated)
        latencies.append(time.perf_counter() - begun)
    return time.perf_counter() - started, latencies, tokens


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-model", type=Path, default=None)
    parser.add_argument("--counts", default="1,10,100,1000")
    parser.add_argument("--requests", type=int, default=1024)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--cache", type=int, default=1024, help="adapter cache size (default: all of them fit)")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--naive-requests", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: steady numbers on a shared machine)")
    parser.add_argument("--long-every", type=int, default=8,
                        help="mixed lengths: every Nth request asks for --long-tokens (0: skip that case)")
    parser.add_argument("--long-tokens", type=int, default=128)
    args = parser.parse_args()

    import torch

    from openledger_node.ai.lora import MultiLoraModel, read_adapter
    from openledger_node.ai.serve import AdapterDirectory, Engine, Metrics

    torch.set_num_threads(args.threads)
    base_dir = args.base_model or tiny_model(REPO / "build" / "tiny-model")
    base = load_base_model(base_dir)
    counts = [int(c) for c in args.counts.split(",")]
    paths = write_adapters(REPO / "build" / "bench-adapters", base, max(counts), args.rank)
    rng = random.Random(0)
    prompts = [base.tokenizer(rng.choice(PROMPTS), add_special_tokens=False)["input_ids"] for _ in range(args.requests)]
    print(f"base model {base_dir}: {sum(p.numel() for p in base.model.parameters()):,} parameters; "
          f"{args.requests} requests x {args.max_tokens} tokens, batches of {args.max_batch}, cache {args.cache}, "
          f"rank {args.rank}, torch threads {args.threads}")

    multi = MultiLoraModel(base.model, base.tokenizer, base.sha256)
    rows = []
    single_warm = None
    directory = AdapterDirectory(paths[0].parent)
    by_path = {path: digest for digest, path in directory.scan().items()}
    for count in counts:
        order = [index % count for index in range(args.requests)]  # every adapter asked for (when requests >= N)
        rng.shuffle(order)
        chosen = [by_path[paths[index]] for index in order]
        engine = Engine(multi, directory, args.cache, args.max_batch, 0.002, Metrics())
        engine.start()
        try:
            for phase in ("cold", "warm"):
                wall, latencies, tokens = asyncio.run(run_load(engine, list(zip(chosen, prompts)), args.max_tokens))
                throughput = tokens / wall
                if count == 1 and phase == "warm":
                    single_warm = throughput
                rows.append((f"OpenLoRA, {count} adapters, {phase}", throughput, statistics.median(latencies),
                             percentile(latencies, 0.95), len(set(chosen)), engine.cache.misses))
        finally:
            engine.stop()
    # mixed lengths: every --long-every-th request asks for --long-tokens, the others for --max-tokens;
    # batch by batch (a request that comes while a batch runs waits for its end) against continuous
    # batching (it joins the running batch at the next step), over the last count's adapters
    mixed = []
    if args.long_every > 0:
        lengths = [args.long_tokens if index % args.long_every == 0 else args.max_tokens
                   for index in range(args.requests)]
        for continuous in (False, True):
            engine = Engine(multi, directory, args.cache, args.max_batch, 0.002, Metrics(), continuous=continuous)
            engine.start()
            try:
                wall, latencies, tokens = asyncio.run(run_load(engine, list(zip(chosen, prompts)), lengths))
            finally:
                engine.stop()
            short = [latency for latency, length in zip(latencies, lengths) if length == args.max_tokens]
            long = [latency for latency, length in zip(latencies, lengths) if length != args.max_tokens]
            mixed.append((f"{'continuous' if continuous else 'batch by batch'}", tokens / wall,
                          statistics.mean(short), percentile(short, 0.95), statistics.mean(long)))
    pristine = load_base_model(base_dir)  # the engine wrapped the first copy's layers
    wall, latencies, tokens = naive(pristine, [paths[rng.randrange(max(counts))] for _ in range(args.naive_requests)],
                                    prompts[: args.naive_requests], args.max_tokens)
    rows.append((f"naive merge per request ({args.naive_requests} requests)", tokens / wall,
                 statistics.median(latencies), percentile(latencies, 0.95), args.naive_requests, args.naive_requests))

    print(f"\n{'setup':<44} {'tokens/s':>10} {'p50 ms':>9} {'p95 ms':>9} {'adapters':>9} {'loads':>7}")
    for name, throughput, p50, p95, distinct, loads in rows:
        print(f"{name:<44} {throughput:>10.0f} {p50 * 1000:>9.1f} {p95 * 1000:>9.1f} {distinct:>9} {loads:>7}")

    if mixed:
        print(f"\nmixed lengths: 1 request in {args.long_every} asks for {args.long_tokens} tokens, the others for "
              f"{args.max_tokens} ({args.requests} requests at once, {count} adapters)")
        print(f"{'engine':<44} {'tokens/s':>10} {'short mean ms':>14} {'short p95 ms':>13} {'long mean ms':>13}")
        for name, throughput, short_mean, short_p95, long_mean in mixed:
            print(f"{name:<44} {throughput:>10.0f} {short_mean * 1000:>14.1f} {short_p95 * 1000:>13.1f} "
                  f"{long_mean * 1000:>13.1f}")

    # adapter load times and memory per adapter
    cold = []
    for path in paths[:200]:
        started = time.perf_counter()
        adapter = read_adapter(path)
        cold.append(time.perf_counter() - started)
    from openledger_node.ai.lora import AdapterCache

    cache = AdapterCache(len(paths), lambda key: read_adapter(Path(key)))
    before = rss_bytes()
    for path in paths:
        cache.get(str(path))
    grown = rss_bytes() - before
    started = time.perf_counter()
    for path in paths:
        cache.get(str(path))
    warm = (time.perf_counter() - started) / len(paths)
    print(f"\nadapter load: cold (read + hash from disk) median {statistics.median(cold) * 1000:.2f} ms, "
          f"p95 {percentile(cold, 0.95) * 1000:.2f} ms; warm (cache hit) {warm * 1e6:.1f} us")
    print(f"memory per adapter: {adapter.nbytes:,} bytes of weights; RSS grew {grown / len(paths):,.0f} bytes "
          f"per adapter over {len(paths)} loaded")
    last_warm = next(t for name, t, *_ in reversed(rows) if name.startswith(f"OpenLoRA, {max(counts)} ") and "warm" in name)
    if single_warm:
        ratio = last_warm / single_warm
        print(f"{max(counts)} adapters / 1 adapter throughput (warm): {ratio:.2f} "
              f"({'meets' if ratio >= 0.5 else 'misses'} the goal of 0.5); "
              f"OpenLoRA {max(counts)} adapters vs naive merge: {last_warm / rows[-1][1]:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
