"""Helpers for the ModelFactory / OpenLoRA tests: the tiny base model (built once by
scripts/make_tiny_model.py and cached under build/, keyed by the script and the library
versions), and a published Datanet of generated ship's-log text on a real node."""
from __future__ import annotations

import hashlib
import os
import random
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from openledger_node import wallet_cli
from openledger_node.devkeys import DEV_ACCOUNTS

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "make_tiny_model.py"


def assert_one_error_line(result, *expected: str) -> None:
    assert result.exit_code == 1, (result.stdout, result.stderr, result.exception)
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), result.stderr
    for text in expected:
        assert text in lines[-1], (text, lines[-1])
    assert "Traceback" not in result.stderr


def tiny_model_dir() -> Path:
    """The tiny base model's directory, built by the script on first use (about 15 s)."""
    import peft
    import tokenizers
    import torch
    import transformers

    key = hashlib.sha256(SCRIPT.read_bytes() + " ".join(
        m.__version__ for m in (torch, transformers, tokenizers, peft)).encode()).hexdigest()[:16]
    path = REPO / "build" / "test-tiny-model" / key
    if not (path / "model.safetensors").is_file():
        done = subprocess.run([sys.executable, str(SCRIPT), str(path)], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert done.returncode == 0, f"make_tiny_model.py failed: {done.stderr[-2000:]}"
    return path


def ships_log(count: int, seed: int = 7) -> list[str]:
    """``count`` distinct contributions of ship's-log text (a domain the base model never saw)."""
    rng = random.Random(seed)
    ships = "Aurora Kestrel Marlin Osprey Petrel Tern Vega Wren".split()
    ports = "Lisbon Bergen Genoa Valletta Cadiz Riga Tallinn Brest".split()
    cargo = "timber salt copper wool coffee cotton iron wine".split()
    winds = "north south east west northeast southwest".split()
    out = []
    while len(out) < count:
        entries = []
        for _ in range(rng.randint(3, 5)):
            entries.append(
                f"Log: the {rng.choice(ships)} left {rng.choice(ports)} at {rng.randint(1, 12)} bells "
                f"with {rng.randint(10, 90)} crates of {rng.choice(cargo)}; wind {rng.choice(winds)} "
                f"at {rng.randint(3, 30)} knots, course for {rng.choice(ports)}.")
        text = " ".join(entries)
        if text not in out:
            out.append(text)
    return out


def publish_datanet(url: str, texts: list[str], owner: int = 0, contributor: int = 1) -> tuple[int, int]:
    """A new Datanet (owner dev ``owner``) with ``texts`` from dev ``contributor``, all accepted
    and published; (datanet id, version)."""
    owner_wallet = wallet_cli.Wallet(wallet_cli.Rpc(url), wallet_cli.Account.from_key(DEV_ACCOUNTS[owner][1]))
    registry = wallet_cli.registry()
    created = owner_wallet.transact(registry, "createDatanet", "Ship logs", "", 0)
    datanet_id = created.find("DatanetCreated")[0].args["datanetId"]
    sender = wallet_cli.Wallet(wallet_cli.Rpc(url), wallet_cli.Account.from_key(DEV_ACCOUNTS[contributor][1]))
    sent = [sender.send(registry, "contribute", datanet_id, text.encode()) for text in texts]
    ids = [sender.wait(tx).find("ContributionSubmitted")[0].args["contributionId"] for tx in sent]
    reviews = [owner_wallet.send(registry, "review", datanet_id, contribution_id, True) for contribution_id in ids]
    for tx in reviews:
        owner_wallet.wait(tx)
    published = owner_wallet.transact(registry, "publishVersion", datanet_id)
    return datanet_id, published.find("VersionPublished")[0].args["version"]


def random_adapter(base_dir: Path, out: Path, seed: int, rank: int = 4, targets: tuple[str, ...] = ("q_proj", "v_proj")) -> Path:
    """A peft LoRA adapter with random A and B (peft's init_lora_weights=False): not trained, but
    it changes the model's output, which is all a serving test needs. Written without a manifest."""
    import torch
    from peft import LoraConfig, get_peft_model

    from openledger_node.ai.base import load_base_model

    base = load_base_model(base_dir)
    torch.manual_seed(seed)
    model = get_peft_model(base.model, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=list(targets),
                                                  init_lora_weights=False))
    model.save_pretrained(out)
    return out


def register_adapter(url: str, name: str, datanet: tuple[int, int], adapter_dir: Path, owner: int = 0,
                     owner_share_bps: int = 0) -> int:
    """registerModel with the keccak256 of the adapter's weights, signed by dev ``owner``; the model id."""
    wallet = wallet_cli.Wallet(wallet_cli.Rpc(url), wallet_cli.Account.from_key(DEV_ACCOUNTS[owner][1]))
    digest = wallet_cli._file_keccak(adapter_dir / "adapter_model.safetensors")
    outcome = wallet.transact(wallet_cli.attribution(), "registerModel", name, [datanet[0]], [datanet[1]], digest,
                              owner_share_bps)
    return outcome.find("ModelRegistered")[0].args["modelId"]


@contextmanager
def serving(app) -> Iterator[str]:
    """Run an ASGI app with uvicorn on a free loopback port in a thread; yields its base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
