#!/usr/bin/env python3
"""Build a tiny causal language model in the Hugging Face layout, locally and deterministically.

    python scripts/make_tiny_model.py OUT_DIR [--steps 300] [--seed 1612]

For tests, the devnet and benchmarks: nothing is downloaded. The script generates an
English-like corpus from a small seeded grammar, trains a byte-level BPE tokenizer on it
with ``tokenizers``, and trains a Llama-style transformer (about 1M parameters) on it for
150 steps on one CPU thread (about 15 s). The same seed and steps give the same files,
byte for byte, on the same machine and torch build (one thread, deterministic kernels).
OUT_DIR then holds ``config.json``, ``model.safetensors``, ``tokenizer.json`` and
``tokenizer_config.json``; ``openledger_node.ai.base.load_base_model`` loads it like any
real model directory.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: nothing reaches a hub
os.environ["TRANSFORMERS_OFFLINE"] = "1"

SEED = 1612
VOCAB_SIZE = 1024
BLOCK_SIZE = 64
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]

# The grammar: a few domains, so that fine-tuning on one of them has something to learn.
WORDS = {
    "adj": "small old bright quiet green heavy warm cold busy gentle narrow wide early late".split(),
    "noun": ("farmer river village market teacher engine garden bridge letter harbor baker "
             "painter window mountain student library kitchen station forest lantern").split(),
    "verb": "watched carried painted crossed found opened visited repaired followed cleaned".split(),
    "prep": "near behind beside under above across beyond inside".split(),
    "time": "in the morning|at noon|after dinner|before the rain|on sunday|at dawn|every winter".split("|"),
    "food": "bread soup rice beans apples onions cheese tomatoes flour butter eggs carrots".split(),
    "unit": "cups grams spoons pieces slices liters".split(),
    "step": "mix|stir|bake|boil|chop|roast|whisk|season".split("|"),
    "num": [str(n) for n in range(2, 13)],
}
LETTERS = "abcdefghijklmnopqrstuvwxyz"
PUNCTUATION = ".,;:!?-'\"()"
TEMPLATES = [
    "the {adj} {noun} {verb} the {adj} {noun} {prep} the {noun} {time}.",
    "a {noun} {verb} a {adj} {noun} {time}, and the {noun} {verb} it {prep} the {noun}.",
    "{time} the {noun} was {adj}, so the {noun} {verb} the {noun}.",
    "{step} {num} {unit} of {food} with the {food}, then {step} it for {num} minutes.",
    "the {noun} said that the {adj} {noun} {verb} {num} {noun}s {time}.",
]


def corpus(rng: random.Random, sentences: int) -> list[str]:
    """Lines of one to four sentences from the grammar."""
    def sentence() -> str:
        template = rng.choice(TEMPLATES)
        out, rest = [], template
        while "{" in rest:
            head, _, tail = rest.partition("{")
            slot, _, rest = tail.partition("}")
            out += [head, rng.choice(WORDS[slot])]
        text = "".join(out) + rest
        return text[0].upper() + text[1:]

    def miscellany() -> str:
        # strings of any letters, digits and punctuation: the model keeps some probability for
        # every byte, as a real one does, instead of ruling out whatever the grammar lacks
        words = []
        for _ in range(rng.randint(4, 12)):
            word = "".join(rng.choice(LETTERS) for _ in range(rng.randint(1, 8)))
            words.append(word.capitalize() if rng.random() < 0.2 else word)
            if rng.random() < 0.3:
                words.append(str(rng.randint(0, 999)) + rng.choice(PUNCTUATION))
        return " ".join(words)

    lines, made = [], 0
    while made < sentences:
        if rng.random() < 0.1:
            lines.append(miscellany())
            continue
        count = rng.randint(1, 4)
        lines.append(" ".join(sentence() for _ in range(count)))
        made += count
    return lines


def train_tokenizer(lines: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte: any UTF-8 text encodes
    )
    tokenizer.train_from_iterator(lines, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        model_max_length=256,
    )


def build(out: Path, steps: int = 150, seed: int = SEED, log=print) -> dict:
    """Write the model directory ``out`` (replaced if it exists); returns a summary."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    started = time.monotonic()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the same reduction order, the same bytes, on every run
    torch.use_deterministic_algorithms(True)
    try:
        rng = random.Random(seed)
        lines = corpus(rng, 6000)
        tokenizer = train_tokenizer(lines)
        ids: list[int] = []
        for line in lines:
            ids += tokenizer(line)["input_ids"] + [tokenizer.eos_token_id]
        data = torch.tensor(ids[: len(ids) // BLOCK_SIZE * BLOCK_SIZE]).view(-1, BLOCK_SIZE)

        torch.manual_seed(seed)
        config = LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=4,
            num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256, tie_word_embeddings=True,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        model = LlamaForCausalLM(config)
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 20))
        order = torch.Generator().manual_seed(seed)
        model.train()
        first = last = None
        for step in range(steps):
            batch = data[torch.randint(len(data), (16,), generator=order)]
            loss = model(input_ids=batch, labels=batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            first = loss.item() if first is None else first
            last = loss.item()
            if step % 50 == 0 or step == steps - 1:
                log(f"step {step + 1}/{steps} loss {last:.3f}")
        model.eval()

        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            model.save_pretrained(staging, safe_serialization=True)
            tokenizer.save_pretrained(staging)
            staging.chmod(0o755)  # mkdtemp's 0700 would keep the model from other users
            for file in staging.iterdir():
                file.chmod(0o644)
            summary = {
                "seed": seed, "steps": steps, "parameters": sum(p.numel() for p in model.parameters()),
                "vocabulary": len(tokenizer), "corpusLines": len(lines), "corpusTokens": len(ids),
                "firstLoss": round(first, 4) if first is not None else None,
                "finalLoss": round(last, 4) if last is not None else None,
            }
            (staging / "tiny_model.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
            if out.exists():
                shutil.rmtree(out)
            staging.rename(out)  # whole or absent: a reader never sees half a model
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        summary["seconds"] = round(time.monotonic() - started, 1)
        return summary
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the model directory to write (replaced if it exists)")
    parser.add_argument("--steps", type=int, default=150, help="training steps (default 150)")
    parser.add_argument("--seed", type=int, default=SEED, help=f"seed of the corpus, the weights and the batches (default {SEED})")
    args = parser.parse_args(argv)
    summary = build(args.out, steps=args.steps, seed=args.seed, log=lambda line: print(line, file=sys.stderr))
    print(f"{args.out}: {summary['parameters']:,} parameters, vocabulary {summary['vocabulary']}, "
          f"loss {summary['firstLoss']} -> {summary['finalLoss']} in {summary['steps']} steps, {summary['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
