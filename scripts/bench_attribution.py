#!/usr/bin/env python
"""Benchmark of the attribution core: index build time, index bytes per token, and the
latency of attributing a 1,000-token output, for the Cython core and the pure-Python
reference (its peer and specification) in the same run.

The corpus is generated deterministically: a seeded vocabulary of pseudo-words drawn
with Zipf-like frequencies, cut into contributions of 200-2,000 tokens. Each output
has 1,000 tokens: passages of 10-60 tokens quoted from random contributions, alternating
with freshly drawn words (about half and half).

    python scripts/bench_attribution.py                    # 1M and 10M tokens
    python scripts/bench_attribution.py --sizes 100K,1M,10M,100M

Columns: build s (tokenize, suffix array, near-duplicates, pack, serialize; the corpus
generation is not counted), B/token (index file size over corpus tokens), load s (read +
checksum + bucket counts), core ms (median, the Cython search over the dense query:
longest matches and maximal spans), attr ms (median, the whole ``attribute()`` call:
tokenizing the output, the search, crediting), ref ms (the same call with
implementation="reference"), agree (the reference's results equal the Cython ones).
Up to --reference-build-max, the reference also builds the index, which must come out
byte-identical.
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attribution_native import _core  # noqa: E402

from openledger_node.attribution import MAX_FREQ, MAX_SPAN, MIN_SPAN, DatanetIndex, attribute  # noqa: E402
from openledger_node.attribution.scoring import dense_query  # noqa: E402
from openledger_node.attribution.tokens import token_ids  # noqa: E402

VOCABULARY = 131_072
ZIPF_EXPONENT = 1.05
OUTPUT_TOKENS = 1_000


def parse_size(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 10**3, "M": 10**6, "G": 10**9}.get(text[-1:], 1)
    return int(float(text.rstrip("KMG")) * scale)


def vocabulary(rng: np.random.Generator) -> list[bytes]:
    """VOCABULARY distinct pseudo-words of 2-10 lower-case letters."""
    words: list[bytes] = []
    seen: set[bytes] = set()
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
    while len(words) < VOCABULARY:
        for length in rng.integers(2, 11, size=VOCABULARY):
            word = letters[rng.integers(0, 26, size=length)].tobytes()
            if word not in seen:
                seen.add(word)
                words.append(word)
                if len(words) == VOCABULARY:
                    break
    return words


def draw(rng: np.random.Generator, cdf: np.ndarray, count: int) -> np.ndarray:
    return np.searchsorted(cdf, rng.random(count), side="right").astype(np.uint32)


class Corpus:
    def __init__(self, tokens: int, seed: int):
        rng = np.random.default_rng(seed)
        self.words = vocabulary(rng)
        weights = 1.0 / np.arange(1, VOCABULARY + 1) ** ZIPF_EXPONENT
        self.cdf = np.cumsum(weights / weights.sum())
        self.cdf[-1] = 1.0
        self.tokens = draw(rng, self.cdf, tokens)
        lengths = []
        while sum(lengths) < tokens:
            lengths.extend(rng.integers(200, 2001, size=max(16, tokens // 1000)).tolist())
        bounds = np.minimum(np.cumsum([0] + lengths), tokens)
        last = int(np.searchsorted(bounds, tokens))
        self.bounds = bounds[: last + 1]

    def __len__(self) -> int:
        return len(self.bounds) - 1

    def text(self, tokens: np.ndarray) -> bytes:
        words = self.words
        return b" ".join([words[t] for t in tokens.tolist()])

    def contributions(self):
        for k in range(len(self)):
            yield k + 1, self.text(self.tokens[self.bounds[k] : self.bounds[k + 1]])

    def output(self, rng: np.random.Generator) -> bytes:
        """OUTPUT_TOKENS tokens: quoted passages alternating with fresh words."""
        parts, total = [], 0
        while total < OUTPUT_TOKENS:
            size = min(int(rng.integers(10, 61)), OUTPUT_TOKENS - total)
            if len(parts) % 2 == 0:
                k = int(rng.integers(0, len(self)))
                lo, hi = int(self.bounds[k]), int(self.bounds[k + 1])
                at = int(rng.integers(lo, max(lo + 1, hi - size)))
                piece = self.tokens[at : min(at + size, hi)]
            else:
                piece = draw(rng, self.cdf, size)
            parts.append(piece)
            total += len(piece)
        return self.text(np.concatenate(parts))


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def bench(size: int, outputs: int, reference_outputs: int, reference_build: bool, seed: int, workdir: Path) -> dict:
    t0 = time.perf_counter()
    corpus = Corpus(size, seed)
    contributions = list(corpus.contributions())
    generate_s = time.perf_counter() - t0
    gc.collect()
    phases: dict[str, float] = {}
    t0 = time.perf_counter()
    index = DatanetIndex.build(1, 1, contributions, timings=phases)
    build_s = time.perf_counter() - t0
    reference_build_s, same_bytes = None, None
    if reference_build:
        t0 = time.perf_counter()
        rebuilt = DatanetIndex.build(1, 1, contributions, implementation="reference")
        reference_build_s = time.perf_counter() - t0
        same_bytes = rebuilt.to_bytes() == index.to_bytes()
        del rebuilt
    del contributions
    path = workdir / f"bench-{size}.olidx"
    index.save(path)
    del index
    gc.collect()
    t0 = time.perf_counter()
    index = DatanetIndex.load(path)
    load_s = time.perf_counter() - t0

    rng = np.random.default_rng(seed + 1)
    texts = [corpus.output(rng) for _ in range(outputs)]
    for text in [corpus.output(rng) for _ in range(3)]:  # warm the output tokenizer's cache, as in a running node
        attribute([index], text)
    # Separate passes: a search right after another of the same output would find its
    # suffix-array rows in the cache.
    full, spans, credited = [], [], []
    for text in texts:
        t0 = time.perf_counter()
        result = attribute([index], text)
        full.append(time.perf_counter() - t0)
        spans.append(len(result.spans))
        credited.append(len(result.credits))
    core = []
    for text in texts:
        q = dense_query(index, token_ids(text))
        t0 = time.perf_counter()
        _core.find_spans(
            index.tok_words, index.tok_width, index.sa_words, index.sa_width, index.bucket,
            index.text_length, q, MIN_SPAN, MAX_FREQ, MAX_SPAN,
        )
        core.append(time.perf_counter() - t0)
    reference, agree = [], True
    for text in texts[:reference_outputs]:
        t0 = time.perf_counter()
        result = attribute([index], text, implementation="reference")
        reference.append(time.perf_counter() - t0)
        agree = agree and result == attribute([index], text)
    row = {
        "tokens": index.num_tokens,
        "contributions": index.num_contributions,
        "vocab": index.vocab_size,
        "widths": f"{index.tok_width}+{index.sa_width}",
        "generate_s": generate_s,
        "build_s": build_s,
        "phases": phases,
        "reference_build_s": reference_build_s,
        "same_bytes": same_bytes,
        "bytes_per_token": index.size_bytes / index.num_tokens,
        "load_s": load_s,
        "core_ms": median_ms(core),
        "core_max_ms": max(core) * 1000,
        "attribute_ms": median_ms(full),
        "attribute_max_ms": max(full) * 1000,
        "reference_ms": median_ms(reference) if reference else None,
        "agree": agree if reference else None,
        "spans": statistics.mean(spans),
        "credited": statistics.mean(credited),
    }
    path.unlink()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1M,10M", help="corpus sizes in tokens, e.g. 1M,10M,100M")
    parser.add_argument("--outputs", type=int, default=30, help="1,000-token outputs timed per size")
    parser.add_argument("--reference-outputs", type=int, default=3, help="outputs timed with the reference")
    parser.add_argument("--reference-max", default="100M", help="largest size whose outputs the reference attributes")
    parser.add_argument("--reference-build-max", default="100K",
                        help="largest size the reference also builds (its pure-Python MinHash and packing are slow)")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--workdir", default=None, help="where index files go (default: a temporary folder)")
    args = parser.parse_args()
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    reference_max = parse_size(args.reference_max)
    reference_build_max = parse_size(args.reference_build_max)

    print(f"attribution bench: Zipf({ZIPF_EXPONENT}) over {VOCABULARY:,} words, {OUTPUT_TOKENS:,}-token outputs "
          f"(half quotes), MIN_SPAN={MIN_SPAN}, MAX_FREQ={MAX_FREQ}, one core", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for size in sizes:
            row = bench(size, args.outputs, args.reference_outputs if size <= reference_max else 0,
                        size <= reference_build_max, args.seed, Path(tmp))
            rows.append(row)
            phases = ", ".join(f"{k} {v:.1f}" for k, v in row["phases"].items())
            extra = ""
            if row["reference_build_s"] is not None:
                extra = (f"; reference build {row['reference_build_s']:.1f} s, same bytes: "
                         f"{'yes' if row['same_bytes'] else 'NO'}")
            print(f"  {size:,} tokens: corpus generated in {row['generate_s']:.1f} s; build phases (s): {phases}{extra}; "
                  f"max core {row['core_max_ms']:.2f} ms, max attribute {row['attribute_max_ms']:.2f} ms", flush=True)
    print()
    print(f"{'tokens':>12} {'contribs':>9} {'vocab':>7} {'bits':>6} {'build s':>8} {'B/token':>8} {'load s':>7} "
          f"{'core ms':>8} {'attr ms':>8} {'ref ms':>8} {'spans':>6} {'agree':>6}")
    for r in rows:
        ref = f"{r['reference_ms']:8.1f}" if r["reference_ms"] is not None else f"{'-':>8}"
        agree = {None: "-", True: "yes", False: "NO"}[r["agree"]]
        print(f"{r['tokens']:>12,} {r['contributions']:>9,} {r['vocab']:>7,} {r['widths']:>6} {r['build_s']:8.1f} "
              f"{r['bytes_per_token']:8.3f} {r['load_s']:7.2f} {r['core_ms']:8.3f} {r['attribute_ms']:8.3f} {ref} "
              f"{r['spans']:6.1f} {agree:>6}")
    print("core = Cython search alone; attr = the whole attribute() call (tokenize, search, credit); "
          "ref = attribute(implementation='reference'); ms are medians; bits = token + suffix-array bits")
    print(f"peak memory of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB")


if __name__ == "__main__":
    main()
