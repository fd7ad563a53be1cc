"""Compile the Solidity sources in ``contracts/`` with npm ``solc`` (solcjs).

The compiler runs as a node subprocess (``scripts/solc_compile.js``) through
solc's standard-JSON interface; nothing is downloaded at run time. Imports such as
``@openzeppelin/contracts/...`` resolve to the repo's ``node_modules``. Artifacts
are cached under ``build/contracts/``, keyed by a hash of the input sources, the
import search paths, the compiler version and the settings; a cache entry also
records every imported file with its hash and is only used while all of them are
unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
CONTRACTS_DIR = REPO_ROOT / "contracts"
NODE_MODULES = REPO_ROOT / "node_modules"
BUILD_DIR = REPO_ROOT / "build" / "contracts"
COMPILE_SCRIPT = REPO_ROOT / "scripts" / "solc_compile.js"

EVM_VERSION = "prague"
SETTINGS: dict[str, Any] = {
    "optimizer": {"enabled": True, "runs": 200},
    "evmVersion": EVM_VERSION,
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
}
_CACHE_FORMAT = 1

Artifact = dict[str, Any]


class SolidityCompileError(RuntimeError):
    """solc reported errors (``messages`` holds solc's formatted messages), or could not run."""

    def __init__(self, summary: str, messages: list[str] | None = None) -> None:
        self.messages = messages or []
        super().__init__("\n".join([summary, *self.messages]))


def compile_contracts(paths: list[Path] | None = None) -> dict[str, Artifact]:
    """Compile ``paths`` (default: every ``*.sol`` under ``contracts/``).

    Returns ``{ContractName: {"abi": [...], "bytecode": "0x..", "deployedBytecode": "0x.."}}``
    for every contract, interface and library defined in those files (interfaces and
    abstract contracts have bytecode ``"0x"``). Imported files' contracts are not listed.
    """
    files = sorted(CONTRACTS_DIR.rglob("*.sol")) if paths is None else [Path(p).resolve() for p in paths]
    sources, search_paths = _source_units(files)
    key = _cache_key(sources, search_paths)
    cached = _load_cache(key)
    if cached is not None:
        return cached
    result = _run_solc(sources, search_paths)
    contracts = _collect_artifacts(result["output"], sources)
    deps = {path: _sha256_file(Path(path)) for path in result["resolved"].values()}
    _store_cache(key, {"format": _CACHE_FORMAT, "solc": result["version"], "deps": deps, "contracts": contracts})
    return contracts


def contract_artifact(name: str) -> Artifact:
    """Artifact of contract ``name`` defined in ``contracts/``."""
    contracts = compile_contracts()
    try:
        return contracts[name]
    except KeyError:
        raise KeyError(f"no contract {name!r} in {CONTRACTS_DIR} (have: {', '.join(sorted(contracts))})") from None


def contract_abi(name: str) -> list[dict[str, Any]]:
    """ABI of contract ``name`` defined in ``contracts/``."""
    abi: list[dict[str, Any]] = contract_artifact(name)["abi"]
    return abi


def solc_version() -> str:
    """Version of the npm ``solc`` package in node_modules (e.g. ``"0.8.30"``)."""
    package_json = NODE_MODULES / "solc" / "package.json"
    if not package_json.is_file():
        raise SolidityCompileError(f"npm solc not installed: {package_json} missing; run `npm install` in {REPO_ROOT}")
    version: str = json.loads(package_json.read_text())["version"]
    return version


def _source_units(files: list[Path]) -> tuple[dict[str, str], list[Path]]:
    """Map files to solc source unit names: repo-relative inside the repo, else the bare file name."""
    sources: dict[str, str] = {}
    search_paths = [REPO_ROOT, NODE_MODULES]
    for file in files:
        if not file.is_file():
            raise FileNotFoundError(f"Solidity source not found: {file}")
        if file.is_relative_to(REPO_ROOT):
            unit = file.relative_to(REPO_ROOT).as_posix()
        else:
            unit = file.name
            if file.parent not in search_paths:
                search_paths.append(file.parent)
        if unit in sources:
            raise ValueError(f"two Solidity sources share the unit name {unit!r}")
        sources[unit] = file.read_text()
    return sources, search_paths


def _cache_key(sources: dict[str, str], search_paths: list[Path]) -> str:
    material = {
        "searchPaths": [str(p) for p in search_paths],
        "format": _CACHE_FORMAT,
        "solc": solc_version(),
        "settings": SETTINGS,
        "script": _sha256_file(COMPILE_SCRIPT),
        "sources": {unit: hashlib.sha256(text.encode()).hexdigest() for unit, text in sources.items()},
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def _load_cache(key: str) -> dict[str, Artifact] | None:
    try:
        entry = json.loads((BUILD_DIR / f"{key}.json").read_text())
        if entry.get("format") != _CACHE_FORMAT:
            return None
        for path, digest in entry["deps"].items():
            if _sha256_file(Path(path)) != digest:
                return None
    except (OSError, ValueError, KeyError):
        return None
    contracts: dict[str, Artifact] = entry["contracts"]
    return contracts


def _store_cache(key: str, entry: dict[str, Any]) -> None:
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=BUILD_DIR, suffix=".tmp")
    with os.fdopen(fd, "w") as out:
        json.dump(entry, out)
    os.replace(tmp, BUILD_DIR / f"{key}.json")


def _run_solc(sources: dict[str, str], search_paths: list[Path]) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        raise SolidityCompileError("`node` not found on PATH: the Solidity compiler is npm solc (solcjs)")
    solc_version()  # fails clearly when `npm install` has not been run
    request = {
        "input": {
            "language": "Solidity",
            "sources": {unit: {"content": text} for unit, text in sources.items()},
            "settings": SETTINGS,
        },
        "searchPaths": [str(p) for p in search_paths],
    }
    proc = subprocess.run(
        [node, str(COMPILE_SCRIPT)], input=json.dumps(request), capture_output=True, text=True, cwd=REPO_ROOT
    )
    if proc.returncode != 0:
        raise SolidityCompileError(f"{COMPILE_SCRIPT.name} failed (exit {proc.returncode})", [proc.stderr.strip()])
    result: dict[str, Any] = json.loads(proc.stdout)
    errors = [e for e in result["output"].get("errors", []) if e.get("severity") == "error"]
    if errors:
        messages = [str(e.get("formattedMessage") or e.get("message")).strip() for e in errors]
        raise SolidityCompileError(f"Solidity compilation failed ({len(errors)} error(s)):", messages)
    return result


def _collect_artifacts(output: dict[str, Any], sources: dict[str, str]) -> dict[str, Artifact]:
    contracts: dict[str, Artifact] = {}
    for unit in sources:
        for name, compiled in output.get("contracts", {}).get(unit, {}).items():
            if name in contracts:
                raise SolidityCompileError(f"contract name {name!r} is defined in more than one source file")
            evm = compiled["evm"]
            contracts[name] = {
                "abi": compiled["abi"],
                "bytecode": "0x" + evm["bytecode"]["object"],
                "deployedBytecode": "0x" + evm["deployedBytecode"]["object"],
            }
    return contracts


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
