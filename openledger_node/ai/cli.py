"""``openledger-node model train``: ModelFactory from the command line; ``model influence``: the
off-chain DataInf influence of each training contribution on an output, beside its on-chain attribution.

Added to the wallet's ``model`` group (``wallet_cli.register`` calls ``register_model_commands``),
so that it shares ``--rpc``, ``--keystore`` / ``$OPENLEDGER_PRIVATE_KEY``, ``--timeout``,
``--json`` and the one-line errors with ``model register``. torch is imported only when the
command runs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .. import wallet_cli
from ..wallet_cli import JsonOut, Keystore, Rpc, RpcUrl, Timeout, WalletError
from .base import ModelDirError, check_model_dir
from .datanet import fetch_version, parse_datanet_version, split
from .factory import LoraSettings, TrainingError


@wallet_cli._operator_errors
def train(
    datanet: Annotated[list[str], typer.Option("--datanet", metavar="ID:VERSION", help="a published Datanet version to train on (repeatable, one version per Datanet)")],
    base_model: Annotated[Path, typer.Option("--base-model", metavar="DIR", help="base model directory in the Hugging Face layout (safetensors)")],
    out: Annotated[Path, typer.Option("--out", metavar="DIR", help="where the adapter and manifest.json go (new or empty)")],
    rank: Annotated[int, typer.Option("--rank", min=1, help="LoRA rank r")] = 8,
    alpha: Annotated[int, typer.Option("--alpha", min=1, help="LoRA alpha (the update is scaled by alpha / rank)")] = 16,
    target_modules: Annotated[Optional[str], typer.Option("--target-modules", metavar="NAMES", help="comma-separated module names to adapt, e.g. q_proj,v_proj (default: peft's choice for the architecture)")] = None,
    dropout: Annotated[float, typer.Option("--dropout", min=0.0, max=0.9, help="LoRA dropout")] = 0.0,
    lr: Annotated[float, typer.Option("--lr", min=0.0, help="learning rate (AdamW, constant)")] = 3e-4,
    epochs: Annotated[int, typer.Option("--epochs", min=1)] = 3,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="blocks per optimizer step")] = 8,
    block_size: Annotated[int, typer.Option("--block-size", min=8, help="tokens per block (capped at the model's context)")] = 128,
    seed: Annotated[int, typer.Option("--seed", min=0, help="seeds the split, the adapter's initial weights and the batch order")] = 0,
    eval_fraction: Annotated[float, typer.Option("--eval-fraction", help="share of contributions held out to measure loss (0: none)")] = 0.1,
    register: Annotated[bool, typer.Option("--register", help="register the model on-chain (registerModel) with the adapter's hash")] = False,
    name: Annotated[Optional[str], typer.Option("--name", help="the registered model's name, 1 to 64 bytes (default: the --out folder's name)")] = None,
    owner_share_bps: Annotated[int, typer.Option("--owner-share-bps", min=0, max=10_000, help="with --register: the owner's part of each fee, in basis points")] = 0,
    rpc: RpcUrl = wallet_cli.DEFAULT_RPC, keystore: Keystore = None, timeout: Timeout = 120.0, as_json: JsonOut = False,
) -> None:
    """Fine-tune a LoRA adapter on published Datanet versions read from the node; save it with a manifest
    (loss on held-out contributions before and after, the adapter's keccak256) and, with --register, register it."""
    pairs = [parse_datanet_version(text) for text in datanet]
    if len({d for d, _ in pairs}) != len(pairs):
        raise WalletError("--datanet: one version per Datanet (a model is registered with one version of each)")
    modules = tuple(m.strip() for m in target_modules.split(",") if m.strip()) if target_modules else None
    model_name = name if name is not None else out.resolve().name
    if not 1 <= len(model_name.encode()) <= 64:
        raise WalletError(f"model name {model_name!r} must be 1 to 64 bytes (--name)")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise WalletError(f"--out {out} exists and is not an empty folder")
    settings = LoraSettings(rank=rank, alpha=alpha, target_modules=modules, dropout=dropout, learning_rate=lr,
                            epochs=epochs, batch_size=batch_size, block_size=block_size, seed=seed,
                            eval_fraction=eval_fraction)
    try:
        check_model_dir(base_model)
    except ModelDirError as exc:
        raise WalletError(str(exc)) from None
    account = wallet_cli.load_account(keystore) if register else None  # before the work, not after it

    client = Rpc(rpc, timeout=timeout)
    versions = [fetch_version(client, d, v) for d, v in pairs]
    train_set, held_out = split([c for v in versions for c in v.contributions], eval_fraction, seed)
    typer.echo(f"{sum(len(v.contributions) for v in versions)} contributions from "
               f"{', '.join(f'Datanet {v.datanet_id} version {v.version}' for v in versions)}: "
               f"{len(train_set)} to train on, {len(held_out)} held out", err=True)

    document = _train_and_save(base_model, versions, train_set, held_out, settings, out, model_name)
    if account is not None:
        try:
            wallet = wallet_cli.Wallet(client, account, receipt_timeout=timeout)
            outcome = wallet.transact(
                wallet_cli.attribution(), "registerModel", model_name, [d for d, _ in pairs], [v for _, v in pairs],
                bytes.fromhex(document["adapter"]["hash"][2:]), owner_share_bps)
        except WalletError as exc:  # the training is not lost: say how to register what was saved
            raise WalletError(f"{exc}; the adapter is saved in {out}: register it with `openledger-node model "
                              f"register {model_name} {' '.join(f'--datanet {d}:{v}' for d, v in pairs)} "
                              f"--adapter-file {out / 'adapter_model.safetensors'}`") from None
        model_id = wallet_cli._first_arg(outcome, "ModelRegistered", "modelId")
        document["registration"] = {"chainId": wallet.chain_id, "modelId": model_id, "owner": account.address,
                                    "ownerShareBps": owner_share_bps, "tx": outcome.tx_hash, "block": outcome.block}
        from .factory import write_manifest

        write_manifest(out, document)
    wallet_cli._emit(as_json, document, _lines(document, out))


def _train_and_save(base_model: Path, versions, train_set, held_out, settings: LoraSettings, out: Path,
                    model_name: str) -> dict[str, Any]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .base import load_base_model
    from .factory import manifest, save_adapter, train_adapter, write_manifest

    try:
        base = load_base_model(base_model)
    except ModelDirError as exc:
        raise WalletError(str(exc)) from None
    columns = (TextColumn("training"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
               TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task("train", total=None, loss="-")

        def progress(step: int, steps: int, loss: float) -> None:
            bar.update(task, completed=step, total=steps, loss=f"{loss:.4f}")

        try:
            model, report = train_adapter(base, train_set, held_out, settings, progress)
        except TrainingError as exc:
            raise WalletError(str(exc)) from None
    adapter, adapter_hash = save_adapter(model, out)
    document = manifest(name=model_name, base=base, versions=versions, train=train_set, held_out=held_out,
                        settings=settings, report=report, adapter=adapter, adapter_hash=adapter_hash)
    write_manifest(out, document)
    return document


def _lines(document: dict[str, Any], out: Path) -> list[str]:
    metrics, adapter = document["metrics"], document["adapter"]
    if metrics["evalLossBefore"] is not None:
        loss = (f"held-out loss {metrics['evalLossBefore']:.4f} -> {metrics['evalLossAfter']:.4f} nats/token "
                f"(perplexity {metrics['evalPerplexityBefore']:.2f} -> {metrics['evalPerplexityAfter']:.2f}, "
                f"{metrics['evalTokens']} tokens)")
    else:
        loss = "no held-out set (--eval-fraction 0)"
    lines = [
        loss,
        f"trained {metrics['steps']} steps on {metrics['trainTokens']} tokens in {metrics['seconds']:.1f} s "
        f"({metrics['tokensPerSecond']:.0f} tokens/s), {adapter['trainableParameters']:,} adapter parameters",
        f"adapter {out / adapter['file']} ({adapter['bytes']:,} bytes), keccak256 {adapter['hash']}",
        f"manifest {out / 'manifest.json'}",
    ]
    registration = document.get("registration")
    if registration is not None:
        lines.append(f"registered: model id {registration['modelId']} "
                     f"(transaction {registration['tx']}, block {registration['block']})")
    return lines


@wallet_cli._operator_errors
def influence(
    adapter: Annotated[Path, typer.Option("--adapter", metavar="DIR", help="the adapter's folder (model train --out): adapter_model.safetensors and manifest.json")],
    base_model: Annotated[Path, typer.Option("--base-model", metavar="DIR", help="the base model the adapter was trained on (checked against the manifest's sha256)")],
    output: Annotated[Optional[str], typer.Option("--output", help="the output text to explain")] = None,
    output_file: Annotated[Optional[Path], typer.Option("--output-file", help="a file holding the output (UTF-8)")] = None,
    prompt: Annotated[str, typer.Option("--prompt", help="the prompt the output followed: context for the model's loss, not attributed on-chain")] = "",
    model_id: Annotated[Optional[int], typer.Option("--model-id", min=0, help="the registered model to preview on-chain attribution for (default: the manifest's registration)")] = None,
    top: Annotated[int, typer.Option("--top", min=1, help="table rows (most helpful first); --json always lists every contribution")] = 20,
    max_memory_mb: Annotated[float, typer.Option("--max-memory-mb", min=0.0, help="MiB for the training gradients: all kept in memory (and the exact baseline shown) when n x adapter parameters x 8 bytes (+ 32 n^2) fit, else DataInf is streamed in three passes over the contributions (up to 3x the gradient computations, no exact baseline)")] = 2048.0,
    rpc: RpcUrl = wallet_cli.DEFAULT_RPC,
    timeout: Annotated[float, typer.Option("--timeout", help="seconds to wait for each answer from the node")] = 120.0,
    as_json: JsonOut = False,
) -> None:
    """Off-chain DataInf influence of each training contribution on an output of a LoRA model, beside the
    on-chain span attribution (previewAttribution) of the same output. Positive influence: the contribution
    lowered the output's loss."""
    from .influence import InfluenceError, read_manifest

    try:
        manifest = read_manifest(adapter)
    except InfluenceError as exc:
        raise WalletError(str(exc)) from None
    text = _output_text(output, output_file)
    try:
        check_model_dir(base_model)
    except ModelDirError as exc:
        raise WalletError(str(exc)) from None
    from .base import model_dir_hash
    from .factory import ADAPTER_FILE, file_keccak

    base_hash = model_dir_hash(base_model)
    if base_hash != manifest["baseModel"]["sha256"]:
        raise WalletError(f"{adapter} was trained on base model sha256 {manifest['baseModel']['sha256'][:16]}..., "
                          f"--base-model {base_model} is {base_hash[:16]}...: not the adapter's base model")
    adapter_hash = file_keccak(adapter / ADAPTER_FILE)
    if adapter_hash != manifest.get("adapter", {}).get("hash"):
        raise WalletError(f"{adapter / ADAPTER_FILE} has keccak256 {adapter_hash}, not the manifest's "
                          f"{manifest.get('adapter', {}).get('hash')}: the adapter changed after training")
    if model_id is None:
        model_id = (manifest.get("registration") or {}).get("modelId")
        if model_id is None:
            raise WalletError(f"{adapter / 'manifest.json'} records no registration (model train --register): "
                              "give the registered model's id with --model-id")

    client = Rpc(rpc, timeout=timeout)
    versions = []
    for entry in manifest["datanets"]:
        version = fetch_version(client, int(entry["datanetId"]), int(entry["version"]))
        if version.root != entry.get("root", version.root):
            raise WalletError(f"Datanet {version.datanet_id} version {version.version} has root {version.root} on "
                              f"{rpc}, the manifest says {entry['root']}: another chain?")
        versions.append(version)
    model = client("ol_getModel", hex(model_id))
    if model is None:
        raise WalletError(f"model {model_id} is not registered on {rpc}")
    if model["adapterHash"].lower() != adapter_hash.lower():
        raise WalletError(f"model {model_id} on {rpc} has adapter hash {model['adapterHash']}, the adapter in "
                          f"{adapter} is {adapter_hash}: not this adapter's model")
    preview = wallet_cli.view(client, wallet_cli.attribution(), "previewAttribution", model_id, text.encode("utf-8"))
    on_chain = {(d, c): s for d, c, s in zip(preview["datanetIds"], preview["contributionIds"], preview["scores"])}
    spans, spans_match = _local_spans(versions, text, on_chain)

    everything = {(c.datanet_id, c.contribution_id): c for v in versions for c in v.contributions}
    trained_keys = [tuple(pair) for pair in manifest["split"]["train"]]
    missing = [key for key in trained_keys if key not in everything]
    if missing:
        raise WalletError(f"contribution {missing[0][1]} of Datanet {missing[0][0]}, which the adapter was trained "
                          f"on, is not in the Datanet versions {rpc} holds")
    trained = [everything[key] for key in trained_keys]
    position = {key: at for at, key in enumerate(trained_keys)}

    report = _influence(base_model, adapter, manifest, trained, text, prompt, max_memory_mb)
    ranks = report.ranks("datainf")
    total = sum(on_chain.values())
    rows = []
    for key in sorted(everything):
        at = position.get(key)
        score = on_chain.get(key, 0)
        rows.append({
            "datanetId": key[0], "contributionId": key[1], "contributor": everything[key].contributor, "trained": at is not None,
            "influence": report.scores["datainf"][at] if at is not None else None,
            "rank": ranks[at] if at is not None else None,
            "baselines": ({m: report.scores[m][at] if m in report.scores else None for m in ("exact", "grad_dot", "cosine")}
                          if at is not None else None),
            "onChainScore": score, "onChainShare": score / total if total else 0.0,
            "spans": spans.get(key, []) if spans_match else None,
        })
    rows.sort(key=lambda r: (r["rank"] is None, r["rank"] or 0, r["datanetId"], r["contributionId"]))
    document = {
        "modelId": model_id, "adapter": str(adapter), "adapterHash": adapter_hash, "output": text, "prompt": prompt,
        "outputTokens": report.test_tokens, "outputLoss": report.test_loss,
        "method": "DataInf (Kwon et al., ICLR 2024), per-layer damping 0.1 x mean squared gradient entry; "
                  "influence > 0: the contribution lowered the output's loss (helped)",
        "datanets": [{"datanetId": v.datanet_id, "version": v.version} for v in versions],
        "path": report.path,
        "memory": {"budgetMiB": max_memory_mb, "inMemoryMiB": report.in_memory_bytes / 2**20,
                   "adapterParameters": report.parameters, "trainingContributions": len(trained),
                   "gradientComputations": report.gradient_computations, "cachedGradients": report.cached_gradients},
        "baselinesNote": None if report.path == "in-memory" else
        "streaming path (the gradients exceed --max-memory-mb): DataInf in three passes over the contributions; "
        "exact (the damped Fisher inverted exactly) needs every gradient at once and is null",
        "onChainTotalScore": total, "spansMatchChain": spans_match, "contributions": rows,
    }
    wallet_cli._emit(as_json, document, _influence_lines(document, top))


def _output_text(output: Optional[str], output_file: Optional[Path]) -> str:
    if (output is None) == (output_file is None):
        raise WalletError("give exactly one of --output TEXT and --output-file PATH")
    if output is None:
        try:
            output = output_file.read_bytes().decode("utf-8")
        except OSError as exc:
            raise WalletError(f"cannot read {output_file}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise WalletError(f"{output_file} is not UTF-8 text") from None
    if not output.strip():
        raise WalletError("the output is empty")
    return output


def _local_spans(versions, text: str, on_chain: dict) -> tuple[dict, bool]:
    """The spans behind each contribution's on-chain score, found again with attribution v1 over the
    versions' text (the rule is deterministic), as [byte start, byte end) of the output; and whether
    the credits found match the chain's."""
    from ..attribution import DatanetIndex, attribute

    indexes = [DatanetIndex.build(v.datanet_id, v.version,
                                  sorted((c.contribution_id, c.text.encode("utf-8")) for c in v.contributions))
               for v in versions]
    found = attribute(indexes, text.encode("utf-8"))
    spans: dict[tuple[int, int], list[list[int]]] = {}
    for span in found.spans:
        for contribution_id in span.contribution_ids:
            spans.setdefault((span.datanet_id, contribution_id), []).append([span.byte_start, span.byte_end])
    credits = {(c.datanet_id, c.contribution_id): c.score for c in found.credits}
    return spans, credits == on_chain


def _influence(base_model: Path, adapter: Path, manifest: dict[str, Any], trained, text: str, prompt: str,
               max_memory_mb: float):
    from .base import load_base_model
    from .influence import InfluenceError, influence, load_adapter, output_example

    typer.echo(f"computing the gradients of {len(trained)} training contributions and of the output", err=True)
    try:
        base = load_base_model(base_model)
        model = load_adapter(base, adapter, manifest)
        block_size = int(manifest["hyperparameters"]["blockSize"])
        report = influence(model, base, trained, [output_example(base, text, prompt, block_size)], block_size,
                           max_memory_mb=max_memory_mb)
    except (ModelDirError, InfluenceError) as exc:
        raise WalletError(str(exc)) from None
    if report.path == "streaming":
        typer.echo(f"the gradients ({report.in_memory_bytes / 2**20:.1f} MiB) exceed --max-memory-mb {max_memory_mb:g}: "
                   f"streamed DataInf in three passes ({report.gradient_computations} gradient computations, "
                   f"{report.cached_gradients} kept from the first pass); no exact baseline", err=True)
    return report


def _influence_lines(document: dict[str, Any], top: int) -> list[str]:
    rows = document["contributions"]
    lines = [f"output: {document['outputTokens']} tokens, loss {document['outputLoss']:.4f} nats/token under the "
             f"adapter; model {document['modelId']} on-chain total score {document['onChainTotalScore']}",
             f"{'rank':>4}  {'contribution':<14} {'contributor':<42} {'influence':>11} {'exact':>10} {'grad·dot':>10}  "
             f"{'on-chain score':>14} {'credit':>7}  spans (output bytes)"]
    shown = [r for r in rows if r["trained"]][:top]
    credited_elsewhere = [r for r in rows if r not in shown and r["onChainScore"]]
    for r in shown + credited_elsewhere:
        rank = str(r["rank"]) if r["rank"] is not None else "-"
        name = f"{r['datanetId']}:{r['contributionId']}" + ("" if r["trained"] else " held")
        influence_text = f"{r['influence']:>11.4g}" if r["influence"] is not None else f"{'(held out)':>11}"
        exact = r["baselines"]["exact"] if r["baselines"] else None
        dot = (f"{exact:>10.4g}" if exact is not None else f"{'-':>10}") + \
            (f" {r['baselines']['grad_dot']:>10.4g}" if r["baselines"] else f"{'':>11}")
        spans = "?" if r["spans"] is None else " ".join(f"[{a},{b})" for a, b in r["spans"][:4]) + \
            (" ..." if r["spans"] and len(r["spans"]) > 4 else "")
        lines.append(f"{rank:>4}  {name:<14} {r['contributor']:<42} {influence_text} {dot}  "
                     f"{r['onChainScore']:>14} {100 * r['onChainShare']:>6.2f}%  {spans or '-'}")
    hidden = len([r for r in rows if r["trained"]]) - len(shown)
    if hidden:
        lines.append(f"({hidden} more trained contributions: --top, or --json for all)")
    lines.append("influence: DataInf, > 0 = the contribution lowered the output's loss (exact: the same damped Fisher "
                 "inverted exactly; grad·dot: no Hessian); on-chain: previewAttribution "
                 "(verbatim spans of >= 8 tokens), credit = share of the contributors' part"
                 + ("" if document["spansMatchChain"] else "; spans '?': the local recomputation differs from the chain")
                 + ("" if document["path"] == "in-memory" else
                    f"; exact '-': streaming path ({document['memory']['inMemoryMiB']:.1f} MiB of gradients > "
                    f"--max-memory-mb {document['memory']['budgetMiB']:g}), DataInf in three passes"))
    return lines


def register_model_commands(model_app: typer.Typer) -> None:
    """Add ``train`` and ``influence`` to the wallet's ``model`` group."""
    model_app.command("train")(train)
    model_app.command("influence")(influence)


@wallet_cli._operator_errors
def serve_models(
    base_model: Annotated[Path, typer.Option("--base-model", metavar="DIR", help="base model directory in the Hugging Face layout (safetensors)")],
    adapters: Annotated[Path, typer.Option("--adapters", metavar="DIR", help="folder of adapter folders (model train --out ...); found by their keccak256")],
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535)] = 8000,
    fee: Annotated[str, typer.Option("--fee", metavar="AMOUNT", help="fee the operator pays per inference to attribute(): wei, or e.g. 0.01open")] = "0",
    max_adapters: Annotated[int, typer.Option("--max-adapters", min=1, help="adapters kept in memory (least recently used evicted)")] = 64,
    max_batch: Annotated[int, typer.Option("--max-batch", min=1, help="requests generated together in one batch")] = 16,
    batch_window_ms: Annotated[float, typer.Option("--batch-window-ms", min=0.0, help="how long a batch waits for more requests")] = 5.0,
    no_attribution: Annotated[bool, typer.Option("--no-attribution", help="serve without paying for or attributing inferences (testing only)")] = False,
    rpc: RpcUrl = wallet_cli.DEFAULT_RPC, keystore: Keystore = None, timeout: Timeout = 120.0,
) -> None:
    """OpenLoRA: serve every registered model whose adapter is under --adapters over one base model
    (POST /v1/completions, OpenAI style; GET /v1/models, /metrics, /health). Each answer is paid for
    and attributed on-chain from the operator account (--keystore or $OPENLEDGER_PRIVATE_KEY)."""
    import uvicorn

    from .lora import AdapterError
    from .serve import Attributor, build_server

    value = wallet_cli.parse_amount(fee)
    attributor = None
    if not no_attribution:
        attributor = Attributor(rpc, wallet_cli.load_account(keystore), value, timeout=timeout)
    else:
        Rpc(rpc, timeout=timeout)("eth_chainId")  # model ids are still read from the node
    try:
        check_model_dir(base_model)
        server = build_server(base_model, adapters, rpc, attributor, cache_size=max_adapters, max_batch=max_batch,
                              batch_window=batch_window_ms / 1000)
    except (ModelDirError, AdapterError) as exc:
        raise WalletError(str(exc)) from None
    typer.echo(f"OpenLoRA on http://{host}:{port}/v1/completions: base model {base_model}, adapters under {adapters}, "
               f"node {rpc}, " + ("no attribution" if attributor is None else
                                  f"attribute() from {attributor.account.address} with fee {value} wei"), err=True)
    uvicorn.run(server.app, host=host, port=port, log_level="warning")


def register_serve_command(app: typer.Typer) -> None:
    """Add ``serve-models`` to the ``openledger-node`` app."""
    app.command("serve-models")(serve_models)
