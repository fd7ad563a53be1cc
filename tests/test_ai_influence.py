"""Off-chain influence (``openledger_node.ai.influence``, ``openledger-node model influence``):
DataInf's formula against a direct numpy computation of the paper's matrices, a direction that
can be checked on a real tiny LoRA model (the contribution an output quotes helps it most), and
the command against a real node, beside the on-chain span attribution of the same output."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from typer.testing import CliRunner  # noqa: E402

from ai_support import assert_one_error_line, publish_datanet, ships_log, tiny_model_dir  # noqa: E402
from conftest import running_node  # noqa: E402
from openledger_node.ai import influence as inf  # noqa: E402
from openledger_node.ai.base import load_base_model  # noqa: E402
from openledger_node.ai.datanet import Contribution  # noqa: E402
from openledger_node.ai.factory import LoraSettings, train_adapter  # noqa: E402
from openledger_node.cli import app  # noqa: E402
from openledger_node.devkeys import DEV_ACCOUNTS  # noqa: E402

OWNER_KEY = DEV_ACCOUNTS[0][1]
CONTRIBUTOR = DEV_ACCOUNTS[1][0]
RECIPE = ("Recipe: whisk four eggs with a cup of sugar until pale, fold in two cups of flour and a pinch of salt, "
          "then bake the batter in a buttered tin for forty minutes until golden.")


@pytest.fixture(scope="module")
def tiny_model() -> Path:
    return tiny_model_dir()


# ----------------------------------------------------------------------------- (a) the formula


def _random_gradients(seed: int, n: int, sizes: tuple[int, ...]):
    rng = np.random.default_rng(seed)
    train = {f"layer{l}": rng.normal(size=(n, d)) * rng.uniform(0.1, 3.0) for l, d in enumerate(sizes)}
    test = {f"layer{l}": rng.normal(size=d) for l, d in enumerate(sizes)}
    return train, test


def _numpy_datainf(train: dict, test: dict) -> np.ndarray:
    """The paper's approximation written out as matrices: per layer, lambda_l = 0.1 (n d_l)^-1 sum_i ||g_il||^2,
    H_l^-1 ~ (1/n) sum_j (g_jl g_jl^T + lambda_l I)^-1 (each inverse taken by numpy), score_i = sum_l v_l^T H_l^-1 g_il."""
    total = 0.0
    for name, g in train.items():
        n, d = g.shape
        lam = 0.1 * np.sum(g * g) / (n * d)
        inverse = sum(np.linalg.inv(np.outer(g[j], g[j]) + lam * np.eye(d)) for j in range(n)) / n
        total = total + g @ (inverse @ test[name])
    return total


def _numpy_exact(train: dict, test: dict) -> np.ndarray:
    total = 0.0
    for name, g in train.items():
        n, d = g.shape
        lam = 0.1 * np.sum(g * g) / (n * d)
        total = total + g @ np.linalg.solve(g.T @ g / n + lam * np.eye(d), test[name])
    return total


def test_datainf_matches_the_papers_matrices_computed_directly():
    for seed, n, sizes in ((0, 7, (5, 12)), (1, 15, (9,)), (2, 4, (3, 20, 6))):
        train, test = _random_gradients(seed, n, sizes)
        t_train = {k: torch.from_numpy(v) for k, v in train.items()}
        t_test = {k: torch.from_numpy(v) for k, v in test.items()}
        got = inf.datainf(t_train, t_test).numpy()
        assert got.dtype == np.float64 and got.shape == (n,)
        np.testing.assert_allclose(got, _numpy_datainf(train, test), rtol=1e-9, atol=0)
        np.testing.assert_allclose(inf.exact(t_train, t_test).numpy(), _numpy_exact(train, test), rtol=1e-8)
        dots = sum(train[k] @ test[k] for k in train)
        np.testing.assert_allclose(inf.grad_dot(t_train, t_test).numpy(), dots, rtol=1e-12)
        flat = np.concatenate([train[k] for k in sorted(train)], axis=1)
        v = np.concatenate([test[k] for k in sorted(test)])
        np.testing.assert_allclose(inf.cosine(t_train, t_test).numpy(),
                                   flat @ v / (np.linalg.norm(flat, axis=1) * np.linalg.norm(v)), rtol=1e-12)
        # self-influence: the same approximate inverse applied to each point's own gradient
        expected_self = np.zeros(n)
        for name, g in train.items():
            d = g.shape[1]
            lam = 0.1 * np.sum(g * g) / (n * d)
            inverse = sum(np.linalg.inv(np.outer(g[j], g[j]) + lam * np.eye(d)) for j in range(n)) / n
            expected_self += np.einsum("id,de,ie->i", g, inverse, g)
        np.testing.assert_allclose(inf.self_influence(t_train).numpy(), expected_self, rtol=1e-9)


def test_datainf_is_exact_for_one_training_point_and_linear_in_the_test_gradient():
    """With n = 1 the swap of inversion and averaging changes nothing: DataInf is the exact inverse."""
    train, test = _random_gradients(5, 1, (8, 3))
    t_train = {k: torch.from_numpy(v) for k, v in train.items()}
    t_test = {k: torch.from_numpy(v) for k, v in test.items()}
    np.testing.assert_allclose(inf.datainf(t_train, t_test).numpy(), inf.exact(t_train, t_test).numpy(), rtol=1e-10)
    train, test = _random_gradients(6, 9, (8, 3))
    t_train = {k: torch.from_numpy(v) for k, v in train.items()}
    other = {k: torch.from_numpy(v[::-1].copy()) for k, v in test.items()}
    both = {k: torch.from_numpy(test[k]) * 2 + other[k] for k in test}
    np.testing.assert_allclose(inf.datainf(t_train, both).numpy(),
                               2 * inf.datainf(t_train, {k: torch.from_numpy(v) for k, v in test.items()}).numpy()
                               + inf.datainf(t_train, other).numpy(), rtol=1e-9)


def test_streaming_datainf_equals_the_gram_computation_whatever_it_caches():
    """Three passes over gradients asked for one at a time give DataInf's scores (and grad_dot and
    cosine); the gradients kept from pass 1 change how many are recomputed, not one bit of the result."""
    for seed, n, sizes in ((0, 7, (5, 12)), (3, 30, (40, 9, 3)), (4, 1, (6,))):
        train, test = _random_gradients(seed, n, sizes)
        t_train = {k: torch.from_numpy(v) for k, v in train.items()}
        t_test = {k: torch.from_numpy(v) for k, v in test.items()}
        asked = []

        def gradient(j):
            asked.append(j)
            return {k: v[j] for k, v in t_train.items()}

        row_bytes = 8 * sum(sizes)
        results = []
        for cache_bytes, cached in ((0, 0), (2 * row_bytes, min(2, n)), (10**9, n)):
            asked.clear()
            found = inf.datainf_streaming(gradient, n, t_test, cache_bytes=cache_bytes)
            assert found.cached == cached and found.computed == len(asked) == 3 * n - 2 * cached
            assert asked[:n] == list(range(n))  # pass 1 in order, then the uncached ones twice
            np.testing.assert_allclose(found.datainf.numpy(), inf.datainf(t_train, t_test).numpy(), rtol=1e-9, atol=0)
            np.testing.assert_allclose(found.grad_dot.numpy(), inf.grad_dot(t_train, t_test).numpy(), rtol=1e-12)
            np.testing.assert_allclose(found.cosine.numpy(), inf.cosine(t_train, t_test).numpy(), rtol=1e-12)
            assert found.lambdas == pytest.approx(inf.damping(t_train), rel=1e-13)
            results.append(found.datainf)
        assert all(torch.equal(results[0], other) for other in results[1:])
    calls = iter(range(10**6))
    with pytest.raises(inf.InfluenceError, match="not deterministic"):  # a gradient that changes between passes
        inf.datainf_streaming(lambda j: {"layer0": t_train["layer0"][j] * (1 + next(calls))}, n, {"layer0": t_test["layer0"]})


# ----------------------------------------------------------------------------- (b) a checkable direction


def _train_and_score(model_dir: Path, contributions: list[Contribution], output: str, prompt: str):
    base = load_base_model(model_dir)
    settings = LoraSettings(rank=4, epochs=3, batch_size=4, block_size=64, seed=0, learning_rate=5e-3,
                            eval_fraction=0.0)
    model, _ = train_adapter(base, contributions, [], settings)
    example = inf.output_example(base, output, prompt, 64)
    return inf.influence(model, base, contributions, [example], 64)


def test_the_contribution_an_output_quotes_is_the_most_helpful_and_results_repeat(tiny_model):
    contributions = [Contribution(1, i + 1, text) for i, text in enumerate(ships_log(5, seed=11))]
    contributions.insert(2, Contribution(1, 99, RECIPE))
    prompt, output = RECIPE[:30], RECIPE[30:]
    first = _train_and_score(tiny_model, contributions, output, prompt)
    second = _train_and_score(tiny_model, contributions, output, prompt)
    assert first.scores == second.scores and first.test_loss == second.test_loss  # bit for bit
    quoted = 2
    for method in ("datainf", "exact", "grad_dot", "cosine"):
        assert first.ranks(method)[quoted] == 1, (method, first.scores[method])
    assert first.scores["datainf"][quoted] > 0
    assert first.test_tokens == len(load_base_model(tiny_model).tokenizer(output, add_special_tokens=False)["input_ids"])


def test_streaming_and_in_memory_agree_on_a_real_adapter(tiny_model):
    contributions = [Contribution(1, i + 1, text) for i, text in enumerate(ships_log(5, seed=7))]
    contributions.insert(1, Contribution(1, 99, RECIPE))
    base = load_base_model(tiny_model)
    settings = LoraSettings(rank=4, epochs=2, batch_size=4, block_size=64, seed=0, learning_rate=5e-3,
                            eval_fraction=0.0)
    model, _ = train_adapter(base, contributions, [], settings)
    test = [inf.output_example(base, RECIPE[30:], RECIPE[:30], 64)]
    memory = inf.influence(model, base, contributions, test, 64)
    n = len(contributions)
    assert memory.path == "in-memory" and memory.gradient_computations == n
    assert memory.in_memory_bytes == 8 * (n * memory.parameters + 4 * n * n)
    budget = memory.in_memory_bytes / 2**20
    assert inf.influence(model, base, contributions, test, 64, max_memory_mb=budget).path == "in-memory"
    row_mib = 8 * memory.parameters / 2**20
    for max_mb, cached in ((0, 0), (3 * row_mib + 2 * row_mib, 2)):  # nothing kept; two gradients kept from pass 1
        streamed = inf.influence(model, base, contributions, test, 64, max_memory_mb=max_mb)
        assert streamed.path == "streaming" and set(streamed.scores) == {"datainf", "grad_dot", "cosine"}
        assert streamed.cached_gradients == cached and streamed.gradient_computations == 3 * n - 2 * cached
        np.testing.assert_allclose(streamed.scores["datainf"], memory.scores["datainf"], rtol=1e-9, atol=0)
        for method in ("grad_dot", "cosine"):
            np.testing.assert_allclose(streamed.scores[method], memory.scores[method], rtol=1e-9, atol=0)
        assert streamed.ranks() == memory.ranks() and streamed.ranks()[1] == 1
        assert streamed.train_losses == memory.train_losses and streamed.test_loss == memory.test_loss
        assert streamed.lambdas == pytest.approx(memory.lambdas, rel=1e-12)


# ----------------------------------------------------------------------------- (c) the command, against a node


def cli(*args, key: str | None = None):
    return CliRunner().invoke(app, [str(a) for a in args], env={"OPENLEDGER_PRIVATE_KEY": key or ""})


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model):
    """A node with a published Datanet (six ship's logs and a recipe), an adapter trained on it
    with ``model train --register``, and its manifest."""
    texts = ships_log(6, seed=3)
    texts.insert(1, RECIPE)  # contribution 2: in the training split for seed 0
    out = tmp_path_factory.mktemp("adapters") / "ships"
    with running_node(tmp_path_factory.mktemp("node") / "data") as node:
        datanet_id, version = publish_datanet(node.url, texts)
        result = cli("model", "train", "--rpc", node.url, "--datanet", f"{datanet_id}:{version}", "--base-model",
                     tiny_model, "--out", out, "--epochs", "3", "--batch-size", "4", "--block-size", "64",
                     "--lr", "5e-3", "--rank", "4", "--eval-fraction", "0.25", "--register", key=OWNER_KEY)
        assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
        yield node, datanet_id, out, json.loads((out / "manifest.json").read_text()), texts


def influence(node_url: str, adapter: Path, base: Path, *extra):
    return cli("model", "influence", "--rpc", node_url, "--adapter", adapter, "--base-model", base, *extra)


def test_influence_beside_on_chain_attribution_json_and_table(trained, tiny_model):
    node, datanet_id, adapter, manifest, texts = trained
    recipe_id = texts.index(RECIPE) + 1  # contribution ids count from 1 in the order sent
    assert [datanet_id, recipe_id] in manifest["split"]["train"]
    result = influence(node.url, adapter, tiny_model, "--output", RECIPE[30:], "--prompt", RECIPE[:30], "--json")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    document = json.loads(result.stdout)
    assert document["modelId"] == manifest["registration"]["modelId"]
    rows = document["contributions"]
    assert sorted((r["datanetId"], r["contributionId"]) for r in rows) == [(datanet_id, i) for i in range(1, 8)]
    trained_rows = [r for r in rows if r["trained"]]
    held_rows = [r for r in rows if not r["trained"]]
    assert len(trained_rows) == len(manifest["split"]["train"]) == 5 and len(held_rows) == 2
    for row in rows:
        assert isinstance(row["onChainScore"], int) and row["contributor"].lower() == CONTRIBUTOR.lower()
    for row in trained_rows:
        assert isinstance(row["influence"], float) and set(row["baselines"]) == {"exact", "grad_dot", "cosine"}
    assert sorted(r["rank"] for r in trained_rows) == [1, 2, 3, 4, 5]
    assert all(r["influence"] is None and r["rank"] is None for r in held_rows)
    # the on-chain preview, for the same output: the recipe holds every span, so all the credit
    preview = cli("attribute", str(document["modelId"]), "--output", RECIPE[30:], "--preview", "--json",
                  "--rpc", node.url)
    credits = {(c["datanetId"], c["contributionId"]): c["score"] for c in json.loads(preview.stdout)["credits"]}
    assert {(r["datanetId"], r["contributionId"]): r["onChainScore"] for r in rows if r["onChainScore"]} == credits
    recipe = next(r for r in rows if r["contributionId"] == recipe_id)
    assert recipe["onChainScore"] > 0 and recipe["onChainShare"] == 1.0
    assert document["spansMatchChain"] is True
    assert recipe["spans"] == [[1, len(RECIPE[30:].encode()) - 1]]  # from its first word to its last (' ' and '.' aside)
    # and off-chain, the recipe is what lowered the output's loss most
    assert recipe["rank"] == 1 and recipe["influence"] > 0
    assert rows[0] is not None and rows[0]["contributionId"] == recipe_id
    # the table says the same
    table = influence(node.url, adapter, tiny_model, "--output", RECIPE[30:], "--prompt", RECIPE[:30], "--top", "3")
    assert table.exit_code == 0, (table.stdout, table.stderr, table.exception)
    lines = table.stdout.splitlines()
    first = next(line for line in lines if line.lstrip().startswith("1  "))
    assert f"{datanet_id}:{recipe_id} " in first and "100.00%" in first and f"{recipe['influence']:.4g}" in first
    assert "(2 more trained contributions" in table.stdout
    # same inputs, same numbers
    again = json.loads(influence(node.url, adapter, tiny_model, "--output", RECIPE[30:], "--prompt", RECIPE[:30],
                                 "--json").stdout)
    assert again == document


def test_past_the_memory_budget_the_command_streams_datainf(trained, tiny_model):
    node, datanet_id, adapter, manifest, texts = trained
    args = ("--output", RECIPE[30:], "--prompt", RECIPE[:30], "--json")
    memory = json.loads(influence(node.url, adapter, tiny_model, *args).stdout)
    assert memory["path"] == "in-memory" and memory["baselinesNote"] is None
    assert memory["memory"]["budgetMiB"] == 2048 and memory["memory"]["gradientComputations"] == 5
    result = influence(node.url, adapter, tiny_model, *args, "--max-memory-mb", "0")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    assert "exceed --max-memory-mb 0: streamed DataInf in three passes" in result.stderr
    streamed = json.loads(result.stdout)
    assert streamed["path"] == "streaming" and "exact" in streamed["baselinesNote"]
    assert streamed["memory"]["gradientComputations"] == 15 and streamed["memory"]["cachedGradients"] == 0
    assert streamed["memory"]["inMemoryMiB"] == memory["memory"]["inMemoryMiB"] > 0
    pairs = list(zip(memory["contributions"], streamed["contributions"]))
    for a, b in pairs:
        assert (a["datanetId"], a["contributionId"], a["rank"]) == (b["datanetId"], b["contributionId"], b["rank"])
        assert a["onChainScore"] == b["onChainScore"] and a["spans"] == b["spans"]
        if a["trained"]:
            assert b["influence"] == pytest.approx(a["influence"], rel=1e-9, abs=0)
            assert b["baselines"]["exact"] is None and isinstance(a["baselines"]["exact"], float)
            for method in ("grad_dot", "cosine"):
                assert b["baselines"][method] == pytest.approx(a["baselines"][method], rel=1e-9, abs=0)
        else:
            assert b["influence"] is None and b["baselines"] is None
    table = influence(node.url, adapter, tiny_model, "--output", RECIPE[30:], "--prompt", RECIPE[:30],
                      "--max-memory-mb", "0")
    assert table.exit_code == 0, (table.stdout, table.stderr, table.exception)
    first = next(line for line in table.stdout.splitlines() if line.lstrip().startswith("1  "))
    assert f"{streamed['contributions'][0]['influence']:.4g}" in first and " - " in first
    assert "exact '-': streaming path" in table.stdout


def test_an_output_file_and_a_model_id(trained, tiny_model, tmp_path):
    node, datanet_id, adapter, manifest, texts = trained
    quoted = next(texts[cid - 1] for d, cid in manifest["split"]["train"] if texts[cid - 1] != RECIPE)
    (tmp_path / "out.txt").write_text(quoted)
    result = influence(node.url, adapter, tiny_model, "--output-file", tmp_path / "out.txt", "--json",
                       "--model-id", str(manifest["registration"]["modelId"]))
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    rows = json.loads(result.stdout)["contributions"]
    top = rows[0]
    assert texts[top["contributionId"] - 1] == quoted and top["rank"] == 1 and top["onChainShare"] == 1.0


def test_errors_are_one_line(trained, tiny_model, tmp_path):
    node, datanet_id, adapter, manifest, _ = trained
    args = ("--output", "Log: the Wren left Riga")
    assert_one_error_line(influence(node.url, tmp_path, tiny_model, *args), "has no manifest.json")
    other_base = tmp_path / "other-base"
    shutil.copytree(tiny_model, other_base)
    config = json.loads((other_base / "config.json").read_text())
    (other_base / "config.json").write_text(json.dumps(config, indent=4))  # same model, another file: another hash
    assert_one_error_line(influence(node.url, adapter, other_base, *args), "not the adapter's base model")
    assert_one_error_line(influence("http://127.0.0.1:9", adapter, tiny_model, *args), "cannot reach the node")
    moved = tmp_path / "moved"
    shutil.copytree(adapter, moved)
    edited = json.loads((moved / "manifest.json").read_text())
    edited["datanets"][0]["version"] = 9
    (moved / "manifest.json").write_text(json.dumps(edited))
    assert_one_error_line(influence(node.url, moved, tiny_model, *args), f"Datanet {datanet_id} has no published version 9")
    del edited["registration"]
    edited["datanets"][0]["version"] = manifest["datanets"][0]["version"]
    (moved / "manifest.json").write_text(json.dumps(edited))
    assert_one_error_line(influence(node.url, moved, tiny_model, *args), "--model-id")
    assert_one_error_line(influence(node.url, moved, tiny_model, *args, "--model-id", "77"), "model 77 is not registered")
    assert_one_error_line(influence(node.url, adapter, tiny_model), "exactly one of --output")


def test_the_cli_does_not_import_torch_until_influence_runs():
    import subprocess
    import sys

    code = ("import sys; from openledger_node.cli import app; "
            "print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
