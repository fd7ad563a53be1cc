"""OpenLoRA: adapters applied at run time give what peft gives, one batch serves several
adapters with the same results as serving each alone, the cache is a bounded LRU, and the
HTTP server answers OpenAI-style completions (plain and streamed) for registered model ids,
each one paid for and attributed on-chain."""
from __future__ import annotations

import asyncio
import json
import os
import threading
import shutil
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

import httpx  # noqa: E402
import torch  # noqa: E402
from eth_account import Account  # noqa: E402

from ai_support import (  # noqa: E402
    publish_datanet, random_adapter, register_adapter, serving, ships_log, tiny_model_dir,
)
from conftest import running_node  # noqa: E402
from node_process import node_command  # noqa: E402
from openledger_node.ai.base import load_base_model  # noqa: E402
from openledger_node.ai import lora  # noqa: E402
from openledger_node.ai.lora import (  # noqa: E402
    AdapterCache, AdapterError, GenerationRow, MultiLoraModel, RunningBatch, find_stop, read_adapter,
)
from openledger_node.ai.serve import AdapterDirectory, Attributor, Engine, Job, Metrics, build_server  # noqa: E402
from openledger_node.devkeys import DEV_ACCOUNTS  # noqa: E402

OPERATOR_ADDRESS, OPERATOR_KEY = DEV_ACCOUNTS[5]
FEE = 10**15


@pytest.fixture(scope="module")
def tiny_model() -> Path:
    return tiny_model_dir()


@pytest.fixture(scope="module")
def adapters(tiny_model, tmp_path_factory) -> dict[str, Path]:
    """Three random adapters: different ranks and target modules."""
    root = tmp_path_factory.mktemp("adapters")
    return {
        "a": random_adapter(tiny_model, root / "a", seed=1, rank=4),
        "b": random_adapter(tiny_model, root / "b", seed=2, rank=8, targets=("q_proj", "k_proj", "o_proj", "down_proj")),
        "c": random_adapter(tiny_model, root / "c", seed=3, rank=2, targets=("v_proj", "up_proj")),
    }


def engine(tiny_model) -> MultiLoraModel:
    base = load_base_model(tiny_model)
    return MultiLoraModel(base.model, base.tokenizer, base.sha256)


def peft_logits(tiny_model, adapter_dir: Path, input_ids: torch.Tensor) -> torch.Tensor:
    from peft import PeftModel

    model = PeftModel.from_pretrained(load_base_model(tiny_model).model, adapter_dir)
    model.eval()
    with torch.no_grad():
        return model(input_ids=input_ids).logits


def test_a_mixed_batch_gives_each_row_what_peft_gives_for_its_adapter(tiny_model, adapters):
    input_ids = torch.tensor([[1, 40, 77, 300, 12, 9, 250, 31]] * 4)
    multi = engine(tiny_model)
    loaded = {name: read_adapter(path) for name, path in adapters.items()}
    for adapter in loaded.values():
        multi.prepare(adapter)
    with torch.no_grad():
        plain = load_base_model(tiny_model).model(input_ids=input_ids[:1]).logits[0]
    mixed = multi.logits(input_ids, [loaded["a"], None, loaded["b"], loaded["c"]])
    assert torch.allclose(mixed[1], plain, atol=1e-5)
    for row, name in ((0, "a"), (2, "b"), (3, "c")):
        expected = peft_logits(tiny_model, adapters[name], input_ids[:1])[0]
        assert not torch.allclose(expected, plain, atol=1e-3)  # the adapter does change the output
        assert torch.allclose(mixed[row], expected, atol=1e-4), (name, (mixed[row] - expected).abs().max())


def test_generating_a_mixed_batch_equals_generating_each_request_alone(tiny_model, adapters):
    multi = engine(tiny_model)
    loaded = [read_adapter(adapters[name]) for name in "abc"]
    for adapter in loaded:
        multi.prepare(adapter)
    encode = lambda text: multi.tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    rows = [GenerationRow(encode("The farmer"), loaded[0], 10), GenerationRow(encode("Log: the Osprey left"), loaded[1], 6),
            GenerationRow(encode("Mix 3 cups of flour with the"), loaded[2], 12), GenerationRow(encode("A"), None, 8),
            GenerationRow(encode("The farmer"), loaded[0], 10, temperature=0.9, seed=5)]
    together = multi.generate(rows)
    assert together == [multi.generate([row])[0] for row in rows]
    assert together[0] != together[3] and all(reason in ("stop", "length") for _, reason in together)


def test_a_row_that_meets_its_stop_sequence_ends_there_and_leaves_the_batch(tiny_model, adapters):
    multi = engine(tiny_model)
    loaded = [read_adapter(adapters[name]) for name in "abc"]
    for adapter in loaded:
        multi.prepare(adapter)
    encode = lambda text: multi.tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    (free, _), = multi.generate([GenerationRow(encode("The farmer"), loaded[1], 12)])
    boundary = len(multi.tokenizer.decode(free[:3]))
    stop = multi.tokenizer.decode(free)[boundary - 1: boundary + 3]  # across the 3rd and 4th tokens
    assert len(stop) == 4, multi.tokenizer.decode(free)
    rows = [GenerationRow(encode("A"), loaded[0], 12, ignore_eos=True),
            GenerationRow(encode("The farmer"), loaded[1], 12, stop=("never there", stop)),
            GenerationRow(encode("The farmer"), loaded[2], 6, temperature=1.0, seed=7, top_p=0.5),
            GenerationRow(encode("Mix 3 cups of flour with the"), None, 2)]
    sizes: list[int] = []
    hook = multi.model.register_forward_pre_hook(
        lambda module, args, kwargs: sizes.append(kwargs["input_ids"].shape[0]), with_kwargs=True)
    try:
        together = multi.generate(rows)
    finally:
        hook.remove()
    assert together == [multi.generate([row])[0] for row in rows]
    stopped, reason = together[1]
    assert reason == "stop" and stopped == free[:len(stopped)] and len(stopped) < len(free)
    assert find_stop(multi.tokenizer.decode(stopped), rows[1].stop) >= 0
    assert find_stop(multi.tokenizer.decode(stopped[:-1]), rows[1].stop) < 0  # it stopped as soon as it could
    # finished rows leave the batch: 4 rows, 3 once the 2-token row is done, the last steps for row 0 alone
    assert len(sizes) == 12 and sizes[0] == 4 and sizes[2] <= 3 and sizes[-1] == 1
    assert sizes == sorted(sizes, reverse=True)


def test_top_p_keeps_the_most_likely_tokens_and_sampling_stays_seeded(tiny_model, adapters):
    multi = engine(tiny_model)
    adapter = read_adapter(adapters["a"])
    multi.prepare(adapter)
    prompt = multi.tokenizer("A", add_special_tokens=False)["input_ids"]
    row = lambda **options: GenerationRow(prompt, adapter, 10, **options)  # noqa: E731
    greedy = multi.generate([row()])[0]
    sampled = multi.generate([row(temperature=1.0, seed=3)])[0]
    assert multi.generate([row(temperature=1.0, seed=3, top_p=1.0)])[0] == sampled
    assert multi.generate([row(temperature=1.0, seed=3, top_p=1e-6)])[0] == greedy  # only the top token is left
    assert multi.generate([row(temperature=0.0, top_p=0.3)])[0] == greedy  # temperature 0: greedy
    nucleus = multi.generate([row(temperature=1.0, seed=3, top_p=0.4)])[0]
    assert multi.generate([row(temperature=1.0, seed=3, top_p=0.4)])[0] == nucleus


def test_rows_that_join_a_running_batch_get_what_they_get_alone(tiny_model, adapters):
    multi = engine(tiny_model)
    loaded = [read_adapter(adapters[name]) for name in "abc"]
    for adapter in loaded:
        multi.prepare(adapter)
    encode = lambda text: multi.tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    long = GenerationRow(encode("A"), loaded[0], 30, ignore_eos=True)
    joiners = [GenerationRow(encode("Mix 3 cups of flour with the farmer and the"), loaded[1], 6),  # wider
               GenerationRow(encode("The farmer"), None, 8, temperature=1.0, seed=3, top_p=0.8),
               GenerationRow(encode("Log"), loaded[2], 5, temperature=0.7, seed=9)]
    late = [GenerationRow(encode("Log: the Osprey left the harbour at dawn with"), loaded[1], 7),
            GenerationRow(encode("The farmer"), loaded[1], 12, stop=(" the",))]
    done: list[tuple[int, list[int], str]] = []
    streamed: dict[int, list[int]] = {}
    batch = RunningBatch(multi, on_token=lambda key, token: streamed.setdefault(key, []).append(token),
                         on_done=lambda key, tokens, reason: done.append((key, list(tokens), reason)))
    sizes: list[int] = []
    hook = multi.model.register_forward_pre_hook(
        lambda module, args, kwargs: sizes.append((kwargs["input_ids"].shape[0], kwargs["past_key_values"] is None)),
        with_kwargs=True)
    try:
        batch.add([(0, long)])
        for _ in range(3):
            batch.step()
        assert batch.can_join and len(batch) == 1
        batch.add(list(zip((1, 2, 3), joiners)))
        for _ in range(4):
            batch.step()
        batch.add(list(zip((4, 5), late)))
        while batch.active:
            batch.step()
    finally:
        hook.remove()
    alone = [multi.generate([row])[0] for row in [long, *joiners, *late]]
    results = {key: (tokens, reason) for key, tokens, reason in done}
    assert [results[key] for key in range(6)] == alone
    assert all(streamed.get(key, []) == tokens for key, (tokens, _) in results.items())
    assert [key for key, *_ in done][-1] == 0  # the long row, there first, is the last to finish
    # one decode step for all: after each join the next step runs the long row with the new ones
    decode = [rows for rows, prefill in sizes if not prefill]
    assert [rows for rows, prefill in sizes if prefill] == [1, 3, 2]
    assert decode[:3] == [1, 1, 1] and decode[3] > 1 and max(decode) > 2 and decode[-1] == 1
    assert len(decode) == 29  # the long row's 30 tokens: one from its prefill, 29 steps


def run_engine(multi, root: Path, script, on_step, cache_size: int = 1, **options):
    """Run an Engine until every job of ``script(loop)`` is answered; (jobs, the order they were answered in)."""
    async def main():
        jobs = script(asyncio.get_running_loop())
        answered: list[Job] = []

        async def finish(job):
            while True:
                event = await job.events.get()
                if event[0] in ("done", "error"):
                    answered.append(job)
                    job.result = event[1:]
                    return

        worker = Engine(multi, AdapterDirectory(root), cache_size, 4, 0.0, Metrics(), on_step=on_step, **options)
        worker.start()
        try:
            worker.submit(jobs[0])
            await asyncio.wait_for(asyncio.gather(*(finish(job) for job in jobs)), 120)
        finally:
            await asyncio.to_thread(worker.stop)
        return jobs, answered, worker

    return asyncio.run(main())


@pytest.mark.parametrize("mergeable", [True, False])
def test_the_engine_lets_requests_join_while_a_long_one_runs_and_answers_each_when_done(tiny_model, adapters,
                                                                                     monkeypatch, mergeable):
    if not mergeable:  # a model whose KV cache cannot be merged: new requests wait for the batch to end
        monkeypatch.setattr(lora, "_mergeable", lambda past: False)
    multi = engine(tiny_model)
    hashes = {name: read_adapter(path).hash for name, path in adapters.items()}
    encode = lambda text: multi.tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731

    def script(loop):
        job = lambda name, prompt, tokens, **options: Job(0, hashes[name], encode(prompt), tokens,  # noqa: E731
                                                          options.pop("temperature", 0.0), options.pop("seed", None),
                                                          loop, **options)
        return [job("a", "A", 40, ignore_eos=True),
                job("a", "The farmer", 5, temperature=1.0, seed=11, top_p=0.9),  # joins: same adapter
                job("a", "Log: the Osprey left", 6),
                job("b", "Mix 3 cups of flour with", 6)]  # another adapter: the cache of 1 is pinned by a

    trace: list[list[int]] = []
    jobs_box: list[Job] = []

    def on_step(worker):
        trace.append(sorted(jobs_box.index(job) for job in worker.batch.keys()))
        if worker.batch.steps == 3:
            for job in jobs_box[1:]:
                worker.submit(job)

    def scripted(loop):
        jobs_box.extend(script(loop))
        return jobs_box

    jobs, answered, worker = run_engine(multi, adapters["a"].parent, scripted, on_step)
    order = [jobs.index(job) for job in answered]
    alone = [multi.generate([GenerationRow(job.prompt, read_adapter(adapters["a" if job.adapter_hash == hashes["a"]
                                                                             else "b"]),
                                           job.max_tokens, job.temperature, job.seed, job.ignore_eos, job.top_p)])[0]
             for job in jobs]
    assert [tuple(job.result) for job in jobs] == [tuple(result) for result in alone]
    assert worker.cache.evictions == 1 and len(worker.cache) == 1 and not worker.cache.pinned(hashes["b"])
    if mergeable:
        # the two short requests for adapter a joined at step 4 and were answered while the long one ran;
        # the one for b waited for a's rows to end (a running row's adapter is never evicted)
        assert trace[3] == [0, 1, 2] and order[:2] in ([1, 2], [2, 1]) and order[2:] == [0, 3]
    else:
        assert trace[:39] == [[0]] * 38 + [[]] and order[0] == 0  # the long one alone to its end, answered first


def test_the_adapter_cache_evicts_the_least_recently_used():
    loads = []
    cache = AdapterCache(2, lambda key: loads.append(key) or key)
    for key in ["x", "y", "x", "z", "y", "x"]:
        cache.get(key)
    # x, y miss; x hit; z miss evicts y; y miss evicts x; x miss evicts z
    assert loads == ["x", "y", "z", "y", "x"]
    assert (cache.hits, cache.misses, cache.evictions, len(cache)) == (1, 5, 3, 2)
    assert "x" in cache and "y" in cache and "z" not in cache


def test_pinned_adapters_are_not_evicted():
    cache = AdapterCache(2, lambda key: key)
    cache.get("x")
    cache.pin("x")
    cache.get("y")
    assert cache.can_take("z")
    cache.get("z")  # evicts y, the least recently used that no row holds
    assert "x" in cache and "y" not in cache and "z" in cache
    cache.pin("z")
    assert not cache.can_take("w") and cache.can_take("x")
    cache.unpin("z")
    cache.get("w")
    assert "x" in cache and "z" not in cache and "w" in cache
    cache.unpin("x")
    assert not cache.pinned("x")


def test_adapters_for_another_base_model_or_with_options_it_cannot_apply_are_refused(tiny_model, adapters, tmp_path):
    multi = engine(tiny_model)
    foreign = shutil.copytree(adapters["a"], tmp_path / "foreign")
    (foreign / "manifest.json").write_text(json.dumps({"baseModel": {"sha256": "ab" * 32}}))
    with pytest.raises(AdapterError, match="trained on base model abababab"):
        multi.prepare(read_adapter(foreign))
    dora = shutil.copytree(adapters["a"], tmp_path / "dora")
    config = json.loads((dora / "adapter_config.json").read_text())
    (dora / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(AdapterError, match="does not serve: use_dora"):
        read_adapter(dora)


# ----------------------------------------------------------------------------- the HTTP server


@pytest.fixture(scope="module")
def stack(tiny_model, adapters, tmp_path_factory):
    """A node with a published Datanet, models 1-3 registered for adapters a, b, c, model 4 for an
    adapter that is not on disk, and an OpenLoRA server (cache of 2) paying FEE per inference."""
    with running_node(tmp_path_factory.mktemp("node") / "data") as node:
        datanet = publish_datanet(node.url, ships_log(8))
        ids = {name: register_adapter(node.url, f"model-{name}", datanet, path) for name, path in adapters.items()}
        missing = random_adapter(tiny_model, tmp_path_factory.mktemp("elsewhere") / "d", seed=4)
        ids["missing"] = register_adapter(node.url, "model-missing", datanet, missing)
        attributor = Attributor(node.url, Account.from_key(OPERATOR_KEY), FEE, timeout=30)
        server = build_server(tiny_model, adapters["a"].parent, node.url, attributor, cache_size=2, max_batch=8,
                              batch_window=0.1)
        with serving(server.app) as url, httpx.Client(base_url=url, timeout=60) as client:
            yield Stack((node, client, ids), server)


class Stack(tuple):
    """(node, client, model ids), with the server object as ``server``."""

    def __new__(cls, items, server):
        stack = super().__new__(cls, items)
        stack.server = server
        return stack


def complete(client, **body) -> httpx.Response:
    return client.post("/v1/completions", json={"prompt": "Log: the Osprey left", "max_tokens": 8, "temperature": 0,
                                                **body})


def test_a_completion_is_paid_for_and_attributed_on_chain(stack):
    node, client, ids = stack
    response = complete(client, model=str(ids["a"]))
    assert response.status_code == 200, response.text
    answer = response.json()
    choice = answer["choices"][0]
    assert answer["object"] == "text_completion" and answer["model"] == str(ids["a"])
    assert choice["text"] and choice["finish_reason"] in ("stop", "length")
    assert answer["usage"]["completion_tokens"] <= 8
    paid = answer["openledger"]
    assert paid["attributed"] is True and paid["fee"] == FEE
    inference = node.rpc("ol_getInference", hex(paid["inferenceId"]))
    assert int(inference["modelId"], 16) == ids["a"] and inference["output"] == choice["text"]
    assert inference["caller"].lower() == OPERATOR_ADDRESS.lower() and int(inference["fee"], 16) == FEE
    assert [(c["datanetId"], c["contributionId"], c["amount"]) for c in paid["credits"]] == [
        (int(c["datanetId"], 16), int(c["contributionId"], 16), int(c["amount"], 16)) for c in inference["credits"]]
    receipt = node.rpc("eth_getTransactionReceipt", paid["tx"])
    assert receipt["status"] == "0x1" and int(receipt["blockNumber"], 16) == paid["block"]


def test_streaming_sends_the_same_text_in_server_sent_events_then_the_attribution(stack):
    node, client, ids = stack
    plain = complete(client, model=ids["a"]).json()
    with client.stream("POST", "/v1/completions", json={"model": ids["a"], "prompt": "Log: the Osprey left",
                                                         "max_tokens": 8, "temperature": 0, "stream": True}) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        events = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert len(chunks) >= 2, json.dumps([plain, chunks])  # a chunk per token or so, then the last
    assert "".join(chunk["choices"][0]["text"] for chunk in chunks) == plain["choices"][0]["text"]
    assert all(chunk["choices"][0]["finish_reason"] is None for chunk in chunks[:-1])
    last = chunks[-1]
    assert last["choices"][0]["finish_reason"] == plain["choices"][0]["finish_reason"]
    assert last["openledger"]["attributed"] is True
    assert last["openledger"]["inferenceId"] == plain["openledger"]["inferenceId"] + 1


def stream(client, **body) -> list[dict]:
    """The events of a streamed completion, [DONE] checked and left out."""
    with client.stream("POST", "/v1/completions", json={"prompt": "Log: the Osprey left", "max_tokens": 8,
                                                         "temperature": 0, **body, "stream": True}) as response:
        assert response.status_code == 200, response.read()
        events = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(event) for event in events[:-1]]


def test_a_stop_sequence_ends_the_text_before_it_and_only_that_text_is_paid_for(stack):
    node, client, ids = stack
    farmer = {"model": ids["a"], "prompt": "The farmer", "max_tokens": 12}
    free = complete(client, **farmer).json()
    full = free["choices"][0]["text"]
    words = full.split(" ")
    assert len(words) > 4, full
    stop = words[3][-1:] + " " + words[4][:2]  # across two tokens: the streamed tail must wait
    expected = full[:full.find(stop)]
    answer = complete(client, **farmer, stop=["never there", stop]).json()
    choice = answer["choices"][0]
    assert choice["text"] == expected and choice["finish_reason"] == "stop", (full, stop, answer)
    usage = answer["usage"]
    assert 0 < usage["completion_tokens"] < free["usage"]["completion_tokens"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens"] == free["usage"]["prompt_tokens"]
    inference = node.rpc("ol_getInference", hex(answer["openledger"]["inferenceId"]))
    assert inference["output"] == expected  # the attribution pays for exactly the returned text
    assert complete(client, **farmer, stop=stop).json()["choices"][0]["text"] == expected  # a string works too

    chunks = stream(client, **farmer, stop=[stop], stream_options={"include_usage": True})
    *texts, last, usage_event = chunks
    streamed = [chunk["choices"][0]["text"] for chunk in [*texts, last]]
    assert "".join(streamed) == expected and len(texts) >= 2
    assert not any(stop in text for text in streamed)
    assert last["choices"][0]["finish_reason"] == "stop" and last["usage"] is None
    assert node.rpc("ol_getInference", hex(last["openledger"]["inferenceId"]))["output"] == expected
    assert usage_event["choices"] == [] and usage_event["usage"] == usage  # stream_options.include_usage

    short = complete(client, **{**farmer, "max_tokens": 3}).json()
    assert short["choices"][0]["finish_reason"] == "length" and short["usage"]["completion_tokens"] == 3
    assert "usage" not in stream(client, **{**farmer, "max_tokens": 3})[-1]  # no usage event unless asked for


def test_top_p_with_a_seed_is_reproducible_and_top_p_1_is_plain_sampling(stack):
    node, client, ids = stack
    sampled = {"model": ids["a"], "prompt": "The farmer", "max_tokens": 10, "temperature": 1.0, "seed": 7}
    bodies = [{}, {"top_p": 1}, {"top_p": 0.5}, {"top_p": 0.5}, {"top_p": 1e-6}, {"temperature": 0}]
    with ThreadPoolExecutor(len(bodies)) as pool:  # one batch or several: the same text for a seed either way
        answers = list(pool.map(lambda body: complete(client, **{**sampled, **body}), bodies))
    assert all(answer.status_code == 200 for answer in answers), [answer.text for answer in answers]
    plain, whole, nucleus, again, tiny, greedy = (answer.json()["choices"][0]["text"] for answer in answers)
    assert whole == plain and again == nucleus and tiny == greedy, (plain, whole, nucleus, again, tiny, greedy)


def test_concurrent_requests_for_different_models_share_batches_and_the_cache_stays_bounded(stack):
    node, client, ids = stack
    models = [ids["a"], ids["b"], ids["c"], ids["a"], ids["b"], ids["c"]]
    with ThreadPoolExecutor(len(models)) as pool:
        answers = list(pool.map(lambda model: complete(client, model=model), models))
    assert all(answer.status_code == 200 for answer in answers), [answer.text for answer in answers]
    texts = [answer.json()["choices"][0]["text"] for answer in answers]
    assert texts[:3] == texts[3:]  # greedy: the same model and prompt, the same text, whatever the batch
    metrics = client.get("/metrics").text
    values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in metrics.splitlines()
              if line and not line.startswith("#")}
    assert values["openlora_adapters_loaded"] <= 2
    assert values["openlora_adapter_cache_evictions_total"] >= 1
    assert values["openlora_adapter_cache_misses_total"] >= 3 and values["openlora_adapter_cache_hits_total"] >= 1
    assert values["openlora_adapter_load_seconds_count"] == values["openlora_adapter_cache_misses_total"]
    assert values["openlora_generated_tokens_total"] > 0 and values["openlora_tokens_per_second"] > 0
    # at least one batch held several adapters
    assert values['openlora_batch_adapters_bucket{le="1.0"}'] < values["openlora_batch_adapters_count"]
    listed = {model["id"]: model for model in client.get("/v1/models").json()["data"]}
    assert {str(ids[name]) for name in "abc"} <= set(listed)


def test_a_short_request_sent_while_a_long_one_streams_is_answered_before_the_long_one_ends(stack):
    node, client, ids = stack
    worker = stack.server.engine
    short_in, short_answered, long_started, long_ended = (threading.Event() for _ in range(4))
    steps: list[list[int]] = []  # per decode step: max_tokens of the rows in the batch

    def submit(job):
        type(worker).submit(worker, job)
        if job.max_tokens == 4:
            short_in.set()

    def on_step(engine):
        rows = sorted(job.max_tokens for job in engine.batch.keys())
        steps.append(rows)
        if rows == [64]:
            if not short_in.is_set():
                short_in.wait(30)  # hold the long one until the short request is in the engine's queue
            elif any(4 in step for step in steps):
                short_answered.wait(30)  # the short one joined and left: hold the long one until it is answered

    long_tokens: list[str] = []

    def long_stream():
        with client.stream("POST", "/v1/completions", json={"model": ids["a"], "prompt": "Log: the Osprey left",
                                                             "max_tokens": 64, "temperature": 0, "stream": True}) as response:
            for line in response.iter_lines():
                if line.startswith("data: {"):
                    choice = json.loads(line.removeprefix("data: "))["choices"][0]
                    long_tokens.append(choice["text"])
                    long_started.set()
                    if choice["finish_reason"] is not None:
                        long_ended.set()
                        return choice["finish_reason"]

    worker.submit, worker.on_step = submit, on_step
    try:
        with ThreadPoolExecutor(1) as pool:
            long = pool.submit(long_stream)
            assert long_started.wait(60)
            short = complete(client, model=ids["b"], prompt="The farmer", max_tokens=4)
            long_running_then = not long_ended.is_set()
            progress = len(long_tokens)
            short_answered.set()
            reason = long.result(60)
    finally:
        del worker.submit
        worker.on_step = None
    assert short.status_code == 200 and short.json()["choices"][0]["finish_reason"] == "length"
    assert long_running_then and 0 < progress < len(long_tokens), (progress, len(long_tokens))
    assert reason == "length" and [4, 64] in steps  # one decode step ran both
    alone = complete(client, model=ids["b"], prompt="The farmer", max_tokens=4).json()
    assert alone["choices"][0]["text"] == short.json()["choices"][0]["text"]


def test_unknown_models_and_adapters_not_on_disk_are_errors_in_the_openai_shape(stack):
    node, client, ids = stack
    unknown = complete(client, model="999")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
    missing = complete(client, model=ids["missing"])
    assert missing.status_code == 500 and "no adapter with hash" in missing.json()["error"]["message"]
    for body, status in (({"model": "x"}, 400), ({"model": ids["a"], "n": 2}, 400),
                         ({"model": ids["a"], "max_tokens": 10_000}, 400), ({"model": ids["a"], "temperature": 3}, 400)):
        response = complete(client, **body)
        assert response.status_code == status, (body, response.text)
        assert response.json()["error"]["message"]
    for name, value in (("stop", 5), ("stop", ["a", 1]), ("stop", ["a", "b", "c", "d", "e"]), ("stop", ""),
                        ("stop", []), ("stop", ["a", ""]), ("top_p", 0), ("top_p", 1.5), ("top_p", -0.1),
                        ("top_p", "0.5"), ("top_p", True), ("stream_options", {"include_usage": True}),
                        ("stream_options", [1])):
        response = complete(client, model=ids["a"], **{name: value})
        assert response.status_code == 400, (name, value, response.text)
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and error["message"].startswith(name), (name, value, error)
    response = complete(client, model=ids["a"], stream=True, stream_options={"include_usage": "yes"})
    assert response.status_code == 400 and "stream_options" in response.json()["error"]["message"]


def test_serve_models_needs_an_operator_key_unless_told_not_to_attribute(tiny_model, adapters, tmp_path):
    from typer.testing import CliRunner

    from openledger_node.cli import app

    result = CliRunner().invoke(app, ["serve-models", "--base-model", str(tiny_model), "--adapters", str(tmp_path),
                                      "--rpc", "http://127.0.0.1:9"], env={"OPENLEDGER_PRIVATE_KEY": ""})
    assert result.exit_code == 1 and result.stderr.strip().startswith("error: no signing key"), result.stderr


def test_the_serve_models_command_serves_completions_over_http(stack, tiny_model, adapters, tmp_path):
    node, _, ids = stack
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = open(tmp_path / "serve.log", "w")
    process = subprocess.Popen(
        [*node_command(), "serve-models", "--base-model", str(tiny_model), "--adapters", str(adapters["a"].parent),
         "--rpc", node.url, "--port", str(port), "--fee", "1gwei"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env={**os.environ, "OPENLEDGER_PRIVATE_KEY": DEV_ACCOUNTS[6][1]})
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "serve-models did not answer in 60 s"
            time.sleep(0.2)
        answer = httpx.post(f"{url}/v1/completions", json={"model": str(ids["a"]), "prompt": "Log: the Osprey left",
                                                           "max_tokens": 4, "temperature": 0}, timeout=60).json()
        assert answer["openledger"]["attributed"] is True and answer["openledger"]["fee"] == 10**9, answer
        assert "openlora_adapters_loaded 1.0" in httpx.get(f"{url}/metrics").text
    finally:
        process.terminate()
        process.wait(30)
        log.close()
