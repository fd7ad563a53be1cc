"""OpenLoRA's server: ``POST /v1/completions`` in the OpenAI style over one base model and
many adapters, every answer paid for and attributed on-chain.

- ``model`` is a registered model id (``registerModel``). The server reads the model's
  adapter hash from the node (``ol_getModel``) and serves the adapter under ``--adapters``
  whose ``adapter_model.safetensors`` has that keccak256: the chain says which weights a
  model id means, and a file that does not match is never served under it.
- Adapters load on demand into a bounded LRU cache (``lora.AdapterCache``); a worker thread
  generates for a batch of requests whatever their adapters (``lora.MultiLoraModel``), with
  continuous batching (``lora.RunningBatch``): between decode steps, requests that came in join
  the running batch (up to ``max_batch`` rows) and finished ones leave it and are answered at
  once, so a long request delays nobody. An idle engine waits up to ``batch_window`` seconds
  for more requests before its first step. An adapter a running row uses is pinned in the cache.
- Paid inference: the server submits ``attribute(modelId, output)`` from its operator
  account with the configured fee once the output is complete, waits for the receipt, and
  answers with the inference id, the transaction and the credited contributions. (A caller
  cannot sign that transaction before it has the output, so the other way would cost a second
  round trip; with an operator account the caller pays the operator off-chain, as with any
  hosted API, and can check every answer with ``ol_getInference``.)
- ``GET /metrics``: loaded adapters, cache hits, misses and evictions, adapter load time,
  tokens generated and tokens per second, batch sizes (Prometheus text).
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Optional

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .. import wallet_cli
from ..wallet_cli import Rpc, WalletError
from .factory import ADAPTER_FILE, file_keccak
from .lora import (
    AdapterCache, AdapterError, GenerationRow, LoraAdapter, MultiLoraModel, RunningBatch, find_stop, read_adapter,
)

MAX_TOKENS_DEFAULT = 16
MAX_STOP_SEQUENCES = 4  # as OpenAI


class RequestError(Exception):
    """A request the server refuses: HTTP status, OpenAI error type and code."""

    def __init__(self, status: int, message: str, code: Optional[str] = None,
                 kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.code, self.kind = status, code, kind


# ----------------------------------------------------------------------------- adapters on disk


class AdapterDirectory:
    """The adapters under a folder (each a peft adapter folder, at any depth), by the keccak256
    of their adapter_model.safetensors. Rescanned when a hash is not found; a file is hashed
    again only when its size or modification time changed."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._known: dict[Path, tuple[int, int, str]] = {}  # file -> (size, mtime_ns, hash)
        self._lock = threading.Lock()

    def scan(self) -> dict[str, Path]:
        with self._lock:
            found: dict[Path, tuple[int, int, str]] = {}
            for weights in sorted(self.root.rglob(ADAPTER_FILE)):
                stat = weights.stat()
                previous = self._known.get(weights)
                if previous is not None and previous[:2] == (stat.st_size, stat.st_mtime_ns):
                    found[weights] = previous
                else:
                    found[weights] = (stat.st_size, stat.st_mtime_ns, file_keccak(weights))
            self._known = found
            return {digest: weights.parent for weights, (_, _, digest) in found.items()}

    def find(self, adapter_hash: str) -> Path:
        with self._lock:
            for weights, (_, _, digest) in self._known.items():
                if digest == adapter_hash:
                    return weights.parent
        found = self.scan().get(adapter_hash)
        if found is None:
            raise AdapterError(f"no adapter with hash {adapter_hash} under {self.root}")
        return found


class ModelResolver:
    """Registered model id → its on-chain record (owner, name, adapter hash), from ``ol_getModel``.
    Registrations never change, so each is read once."""

    def __init__(self, rpc: Rpc) -> None:
        self.rpc = rpc
        self._models: dict[int, dict[str, Any]] = {}

    def get(self, model_id: int) -> dict[str, Any]:
        model = self._models.get(model_id)
        if model is None:
            model = self.rpc("ol_getModel", hex(model_id))
            if model is None:
                raise RequestError(404, f"model {model_id} is not registered on this chain", "model_not_found")
            self._models[model_id] = model
        return model

    def known(self) -> dict[int, dict[str, Any]]:
        return dict(self._models)


# ----------------------------------------------------------------------------- paid inference


class Attributor:
    """Sends ``attribute(modelId, output)`` with ``fee`` from the operator account and waits for
    its receipt. One nonce sequence for all requests (sends under a lock, receipts awaited in
    parallel); the fee caps are renewed every ``refresh`` seconds."""

    def __init__(self, rpc_url: str, account, fee: int, timeout: float = 120.0, refresh: float = 30.0) -> None:
        self.rpc_url, self.account, self.fee, self.timeout, self.refresh = rpc_url, account, fee, timeout, refresh
        self._lock = threading.Lock()
        self._wallet = wallet_cli.Wallet(Rpc(rpc_url), account, receipt_timeout=timeout)
        self._made = time.monotonic()

    def attribute(self, model_id: int, output: bytes) -> dict[str, Any]:
        with self._lock:
            if time.monotonic() - self._made > self.refresh:  # the base fee moves; the nonce is re-read as "pending"
                self._wallet = wallet_cli.Wallet(Rpc(self.rpc_url), self.account, receipt_timeout=self.timeout)
                self._made = time.monotonic()
            wallet = self._wallet
            tx_hash = wallet.send(wallet_cli.attribution(), "attribute", model_id, output, value=self.fee)
        outcome = wallet.wait(tx_hash)
        (inference,) = outcome.find("InferenceAttributed")
        return {
            "inferenceId": inference.args["inferenceId"], "tx": outcome.tx_hash, "block": outcome.block,
            "fee": inference.args["fee"], "ownerPart": inference.args["ownerPart"],
            "contributorsPart": inference.args["contributorsPart"], "treasuryPart": inference.args["treasuryPart"],
            "credits": [{key: event.args[key] for key in ("datanetId", "contributionId", "contributor", "score", "amount")}
                        for event in outcome.find("RewardCredited")],
        }


# ----------------------------------------------------------------------------- the batching engine


@dataclass
class Job:
    model_id: int
    adapter_hash: str
    prompt: list[int]
    max_tokens: int
    temperature: float
    seed: Optional[int]
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    ignore_eos: bool = False
    top_p: float = 1.0
    stop: tuple[str, ...] = ()

    def emit(self, *event: Any) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, event)


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.loaded = Gauge("openlora_adapters_loaded", "Adapters in the cache", registry=r)
        self.loaded_bytes = Gauge("openlora_adapter_bytes", "Bytes of adapter weights in the cache", registry=r)
        self.hits = Counter("openlora_adapter_cache_hits", "Adapter lookups served from the cache", registry=r)
        self.misses = Counter("openlora_adapter_cache_misses", "Adapter lookups that loaded from disk", registry=r)
        self.evictions = Counter("openlora_adapter_cache_evictions", "Adapters evicted (least recently used)", registry=r)
        self.load_seconds = Histogram("openlora_adapter_load_seconds", "Time to load an adapter from disk",
                                      buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1), registry=r)
        self.prompt_tokens = Counter("openlora_prompt_tokens", "Prompt tokens processed", registry=r)
        self.generated_tokens = Counter("openlora_generated_tokens", "Tokens generated", registry=r)
        self.tokens_per_second = Gauge("openlora_tokens_per_second",
                                       "Tokens generated per second since the engine last became busy", registry=r)
        self.batch_size = Histogram("openlora_batch_size", "Requests in the running batch, each time requests join it",
                                    buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)
        self.distinct_adapters = Histogram("openlora_batch_adapters",
                                           "Distinct adapters in the running batch, each time requests join it",
                                           buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)
        self.requests = Counter("openlora_requests", "Completion requests by outcome", ["outcome"], registry=r)
        self.attributions = Counter("openlora_attributions", "attribute transactions by outcome", ["outcome"],
                                    registry=r)


class Engine:
    """The worker thread that owns the model and the adapter cache, and runs continuous batching:
    a loop of (admit waiting requests into the running batch, one decode step for all of it).

    ``continuous=False`` (or a model whose KV cache cannot be merged, see ``RunningBatch``) gives
    the batching of before: a request that comes while a batch runs waits until it is over.
    ``on_step(engine)``, when set, runs in the worker thread after every decode step (tests use it
    to submit requests at a chosen step)."""

    def __init__(self, model: MultiLoraModel, adapters: AdapterDirectory, cache_size: int, max_batch: int,
                 batch_window: float, metrics: Metrics, continuous: bool = True,
                 on_step: Optional[Callable[["Engine"], None]] = None) -> None:
        self.model, self.adapters, self.metrics = model, adapters, metrics
        self.max_batch, self.batch_window, self.continuous, self.on_step = max_batch, batch_window, continuous, on_step
        self.cache = AdapterCache(cache_size, self._load)
        self._queue: queue.Queue[Optional[Job]] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="openlora-engine", daemon=True)
        self.batch = RunningBatch(model, on_token=lambda job, token: job.emit("token", token), on_done=self._done)
        self._waiting: collections.deque[Job] = collections.deque()  # taken from the queue, not yet admitted
        self._busy_since = 0.0  # when the batch last went from empty to running, and tokens since then
        self._busy_tokens = 0
        self._admitted: set[int] = set()  # ids of the jobs in the batch, not answered yet

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(30)

    def submit(self, job: Job) -> None:
        self._queue.put(job)

    def _load(self, adapter_hash: str) -> LoraAdapter:
        adapter = read_adapter(self.adapters.find(adapter_hash))
        if adapter.hash != adapter_hash:  # replaced on disk since the scan
            raise AdapterError(f"{adapter.path}: its adapter file changed (hash {adapter.hash})")
        self.model.prepare(adapter)
        return adapter

    def _adapter(self, adapter_hash: str) -> LoraAdapter:
        hits, misses, evictions = self.cache.hits, self.cache.misses, self.cache.evictions
        try:
            return self.cache.get(adapter_hash)
        finally:
            self.metrics.hits.inc(self.cache.hits - hits)
            self.metrics.misses.inc(self.cache.misses - misses)
            self.metrics.evictions.inc(self.cache.evictions - evictions)
            if self.cache.misses != misses and self.cache.load_seconds:
                self.metrics.load_seconds.observe(self.cache.load_seconds[-1])
            self.metrics.loaded.set(len(self.cache))
            self.metrics.loaded_bytes.set(self.cache.nbytes)

    def _run(self) -> None:
        stopping = False
        while True:
            if not self.batch.active and not self._waiting:
                if stopping:
                    return
                job = self._queue.get()  # idle: wait for a request, then up to batch_window for others
                if job is None:
                    return
                self._waiting.append(job)
                deadline = time.monotonic() + self.batch_window
                while len(self._waiting) < self.max_batch:
                    try:
                        more = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                    except queue.Empty:
                        break
                    if more is None:
                        stopping = True  # stop once what came before is answered
                        break
                    self._waiting.append(more)
            else:
                while True:  # running: take what came in since the last step, without waiting
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stopping = True
                    else:
                        self._waiting.append(more)
            self._admit()
            if self.batch.active:
                self._step()

    def _admit(self) -> None:
        """Move waiting requests into the running batch (first come first served, up to max_batch
        rows), unless the batch runs and cannot take rows (``continuous`` off, or a KV cache that
        cannot be merged: then they wait for the batch to end). A request whose adapter would
        need a cache slot that running rows all hold waits too, and so do those behind it."""
        if self.batch.active and not (self.continuous and self.batch.can_join):
            return
        chosen: list[tuple[Job, LoraAdapter]] = []
        while self._waiting and len(self.batch) + len(chosen) < self.max_batch:
            job = self._waiting[0]
            if not self.cache.can_take(job.adapter_hash):
                break
            self._waiting.popleft()
            try:
                adapter = self._adapter(job.adapter_hash)
            except AdapterError as exc:
                job.emit("error", 500, f"model {job.model_id}: {exc}")
                continue
            except Exception as exc:  # a bad file must fail its requests, not the engine
                job.emit("error", 500, f"model {job.model_id}: cannot load its adapter: {exc}")
                continue
            self.cache.pin(job.adapter_hash)
            self._admitted.add(id(job))
            chosen.append((job, adapter))
        if not chosen:
            return
        if not self.batch.active:
            self._busy_since, self._busy_tokens = time.perf_counter(), 0
        running = self.batch.keys()  # the batch the new rows join (counted with them, even those done at once)
        self.metrics.batch_size.observe(len(running) + len(chosen))
        self.metrics.distinct_adapters.observe(len({job.adapter_hash for job in running}
                                                   | {job.adapter_hash for job, _ in chosen}))
        rows = [(job, GenerationRow(job.prompt, adapter, job.max_tokens, job.temperature, job.seed, job.ignore_eos,
                                    job.top_p, job.stop)) for job, adapter in chosen]
        self.metrics.prompt_tokens.inc(sum(len(job.prompt) for job, _ in chosen))
        try:
            self.batch.add(rows)
        except Exception as exc:  # the new requests fail (the running rows are untouched); the engine goes on
            for job, _ in chosen:
                self._fail(job, f"generation failed: {exc}")

    def _step(self) -> None:
        try:
            self.batch.step()
        except Exception as exc:  # reported to every request of the batch; the engine goes on
            for job in self.batch.abort():
                self._fail(job, f"generation failed: {exc}")
            return
        if self.on_step is not None:
            self.on_step(self)

    def _done(self, job: Job, tokens: list[int], reason: str) -> None:
        """A row finished: answer it now (the others go on), free its adapter, count its tokens."""
        self._admitted.discard(id(job))
        self.cache.unpin(job.adapter_hash)
        self.metrics.generated_tokens.inc(len(tokens))
        self._busy_tokens += len(tokens)
        elapsed = time.perf_counter() - self._busy_since
        if elapsed > 0:
            self.metrics.tokens_per_second.set(self._busy_tokens / elapsed)
        job.emit("done", list(tokens), reason)

    def _fail(self, job: Job, message: str) -> None:
        if id(job) in self._admitted:  # not answered yet
            self._admitted.discard(id(job))
            self.cache.unpin(job.adapter_hash)
            job.emit("error", 500, message)


# ----------------------------------------------------------------------------- HTTP


@dataclass
class CompletionRequest:
    model_id: int
    prompt: str
    max_tokens: int
    temperature: float
    seed: Optional[int]
    stream: bool
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    include_usage: bool = False  # stream_options.include_usage: a last event with the usage

    @staticmethod
    def parse(body: Any) -> "CompletionRequest":
        if not isinstance(body, dict):
            raise RequestError(400, "the body must be a JSON object")
        model = body.get("model")
        try:
            model_id = int(model) if not isinstance(model, bool) else -1
        except (TypeError, ValueError):
            model_id = -1
        if model_id < 0:
            raise RequestError(400, f"model must be a registered model id, got {model!r}", "invalid_model")
        prompt = body.get("prompt", "")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise RequestError(400, "prompt must be a string (one prompt per request)")
        for name, allowed in (("n", (None, 1)), ("best_of", (None, 1)), ("echo", (None, False)),
                              ("logprobs", (None,)), ("suffix", (None,))):
            if body.get(name) not in allowed:
                raise RequestError(400, f"{name}={body.get(name)!r} is not supported")
        max_tokens = body.get("max_tokens", MAX_TOKENS_DEFAULT)
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise RequestError(400, "max_tokens must be a positive integer")
        temperature = body.get("temperature", 1.0)
        if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not 0 <= temperature <= 2:
            raise RequestError(400, "temperature must be a number from 0 to 2")
        seed = body.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
            raise RequestError(400, "seed must be a non-negative integer")
        top_p = body.get("top_p")
        if top_p is None:
            top_p = 1.0
        elif not isinstance(top_p, (int, float)) or isinstance(top_p, bool) or not 0 < top_p <= 1:
            raise RequestError(400, f"top_p must be a number greater than 0 and at most 1, got {top_p!r}")
        stop = body.get("stop")
        if isinstance(stop, str):
            stop = [stop]
        if stop is None:
            stop = []
        elif (not isinstance(stop, list) or not 1 <= len(stop) <= MAX_STOP_SEQUENCES
              or not all(isinstance(item, str) and item for item in stop)):
            raise RequestError(400, f"stop must be a non-empty string or a list of 1 to {MAX_STOP_SEQUENCES} "
                                    f"non-empty strings, got {stop!r}")
        stream = bool(body.get("stream", False))
        options = body.get("stream_options")
        if options is not None:
            if not stream:
                raise RequestError(400, "stream_options is only allowed with stream: true")
            if not isinstance(options, dict) or not isinstance(options.get("include_usage", False), bool):
                raise RequestError(400, "stream_options must be an object like {\"include_usage\": true}")
        return CompletionRequest(model_id, prompt, max_tokens, float(temperature), seed, stream, float(top_p),
                                 tuple(stop), bool((options or {}).get("include_usage", False)))


class OpenLoRAServer:
    """The FastAPI application and what it needs: engine, model ids, attributor."""

    def __init__(self, model: MultiLoraModel, adapters: Path, rpc_url: str, attributor: Optional[Attributor], *,
                 context: int = 2048, cache_size: int = 64, max_batch: int = 16, batch_window: float = 0.005) -> None:
        self.metrics = Metrics()
        self.tokenizer = model.tokenizer
        self.context = context
        self.engine = Engine(model, AdapterDirectory(adapters), cache_size, max_batch, batch_window, self.metrics)
        self.models = ModelResolver(Rpc(rpc_url))
        self.attributor = attributor
        self.app = self._build_app()

    def _build_app(self):
        @contextlib.asynccontextmanager
        async def lifespan(app: FastAPI):
            self.engine.start()
            try:
                yield
            finally:
                await asyncio.to_thread(self.engine.stop)

        app = FastAPI(title="OpenLoRA", docs_url=None, redoc_url=None, lifespan=lifespan)

        @app.exception_handler(RequestError)
        async def refused(request: Request, exc: RequestError) -> JSONResponse:
            self.metrics.requests.labels("refused").inc()
            return JSONResponse({"error": {"message": str(exc), "type": exc.kind, "code": exc.code}},
                                status_code=exc.status)

        @app.post("/v1/completions")
        async def completions(request: Request):
            try:
                body = await request.json()
            except (ValueError, UnicodeDecodeError):
                raise RequestError(400, "the body is not JSON") from None
            parsed = CompletionRequest.parse(body)
            job = await self._job(parsed)
            if parsed.stream:
                return StreamingResponse(self._stream(parsed, job), media_type="text/event-stream",
                                         headers={"Cache-Control": "no-cache"})
            tokens, reason = await self._finish(job)
            text = self._text(tokens, parsed.stop)
            document = self._completion(parsed, text, reason, len(job.prompt), len(tokens))
            document["openledger"] = await self._attribute(parsed.model_id, text)
            self.metrics.requests.labels("ok").inc()
            return JSONResponse(document)

        @app.get("/v1/models")
        async def models() -> dict[str, Any]:
            return {"object": "list", "data": [
                {"id": str(model_id), "object": "model", "owned_by": model["owner"], "name": model["name"],
                 "adapterHash": model["adapterHash"], "loaded": model["adapterHash"] in self.engine.cache}
                for model_id, model in sorted(self.models.known().items())]}

        @app.get("/metrics")
        async def metrics() -> Response:
            return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

        @app.get("/health")
        async def health() -> dict[str, Any]:
            return {"status": "ok", "loadedAdapters": len(self.engine.cache)}

        return app

    async def _job(self, parsed: CompletionRequest) -> Job:
        try:
            model = await asyncio.to_thread(self.models.get, parsed.model_id)
        except WalletError as exc:
            raise RequestError(502, f"cannot read model {parsed.model_id} from the node: {exc}", kind="server_error") from None
        prompt = self.tokenizer(parsed.prompt, add_special_tokens=False, verbose=False)["input_ids"]
        if self.tokenizer.bos_token_id is not None:
            prompt = [self.tokenizer.bos_token_id] + prompt
        if len(prompt) + parsed.max_tokens > self.context:
            raise RequestError(400, f"prompt ({len(prompt)} tokens) plus max_tokens ({parsed.max_tokens}) exceeds "
                                    f"the model's context of {self.context} tokens", "context_length_exceeded")
        job = Job(parsed.model_id, model["adapterHash"], prompt, parsed.max_tokens, parsed.temperature, parsed.seed,
                  asyncio.get_running_loop(), top_p=parsed.top_p, stop=parsed.stop)
        self.engine.submit(job)
        return job

    async def _finish(self, job: Job) -> tuple[list[int], str]:
        while True:
            event = await job.events.get()
            if event[0] == "done":
                return event[1], event[2]
            if event[0] == "error":
                self.metrics.requests.labels("failed").inc()
                raise RequestError(event[1], event[2], kind="server_error")

    def _text(self, tokens: list[int], stops: tuple[str, ...]) -> str:
        """The answer's text: the decoded tokens up to the first stop sequence (excluded). What the
        caller gets is what ``attribute`` pays for."""
        text = self.tokenizer.decode(tokens)
        cut = find_stop(text, stops)
        return text if cut < 0 else text[:cut]

    async def _stream(self, parsed: CompletionRequest, job: Job) -> AsyncIterator[str]:
        ident, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        tokens: list[int] = []
        sent = ""
        extra = {"usage": None} if parsed.include_usage else {}  # as OpenAI: null in every event but the usage one

        def event(choices: list[dict[str, Any]], **fields: Any) -> str:
            document = {"id": ident, "object": "text_completion", "created": created, "model": str(parsed.model_id),
                        "choices": choices, **extra, **fields}
            return f"data: {json.dumps(document)}\n\n"

        def chunk(text: str, reason: Optional[str], **fields: Any) -> str:
            return event([{"text": text, "index": 0, "logprobs": None, "finish_reason": reason}], **fields)

        while True:
            message = await job.events.get()
            if message[0] == "token":
                tokens.append(message[1])
                text = self.tokenizer.decode(tokens)
                if text.endswith("\ufffd"):  # half of a UTF-8 character: wait for the rest
                    continue
                # never send what may turn out to be (part of) a stop sequence: up to the first one
                # when there is one (the engine ends the row there), else all but the longest tail
                # that begins one
                cut = find_stop(text, parsed.stop)
                safe = cut if cut >= 0 else len(text) - _stop_prefix(text, parsed.stop)
                if safe > len(sent):
                    yield chunk(text[len(sent):safe], None)
                    sent = text[:safe]
            elif message[0] == "error":
                self.metrics.requests.labels("failed").inc()
                yield f"data: {json.dumps({'error': {'message': message[2], 'type': 'server_error'}})}\n\n"
                return
            else:
                tokens = message[1]
                text = self._text(tokens, parsed.stop)
                yield chunk(text[len(sent):], message[2], openledger=await self._attribute(parsed.model_id, text))
                if parsed.include_usage:
                    yield event([], usage=_usage(len(job.prompt), len(tokens)))
                self.metrics.requests.labels("ok").inc()
                yield "data: [DONE]\n\n"
                return

    async def _attribute(self, model_id: int, text: str) -> dict[str, Any]:
        """The paid inference for the output, or why there is none."""
        if self.attributor is None:
            return {"attributed": False, "reason": "this server runs without attribution (--no-attribution)"}
        if not text.strip():
            return {"attributed": False, "reason": "empty output: nothing to attribute"}
        try:
            result = await asyncio.to_thread(self.attributor.attribute, model_id, text.encode("utf-8"))
        except WalletError as exc:
            self.metrics.attributions.labels("failed").inc()
            return {"attributed": False, "error": str(exc)}
        self.metrics.attributions.labels("ok").inc()
        return {"attributed": True, **result}

    def _completion(self, parsed: CompletionRequest, text: str, reason: str, prompt_tokens: int,
                    completion_tokens: int) -> dict[str, Any]:
        return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
                "model": str(parsed.model_id),
                "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": reason}],
                "usage": _usage(prompt_tokens, completion_tokens)}


def _stop_prefix(text: str, stops: tuple[str, ...]) -> int:
    """The length of the longest end of ``text`` that is the beginning of a stop sequence (0: none)."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def build_server(base_model: Path, adapters: Path, rpc_url: str, attributor: Optional[Attributor],
                 **options: Any) -> OpenLoRAServer:
    """Load the base model and wrap it for many adapters."""
    from .base import load_base_model

    base = load_base_model(base_model)
    if not Path(adapters).is_dir():
        raise AdapterError(f"--adapters {adapters} is not a folder")
    return OpenLoRAServer(MultiLoraModel(base.model, base.tokenizer, base.sha256), adapters, rpc_url, attributor,
                          context=base.max_length, **options)
