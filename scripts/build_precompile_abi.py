#!/usr/bin/env python3
"""Regenerate openledger_node/precompiles/abi/*.json from contracts/precompiles/*.sol.

The Solidity interfaces are the source of truth; the node loads these JSON files at
start-up and refuses to run unless its precompile implementations match them exactly
(tests/test_precompile_abi.py checks that the committed JSON is what npm solc produces).

    .venv/bin/python scripts/build_precompile_abi.py [--check]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from openledger_node.contracts import compile_contracts  # noqa: E402

SOURCES = REPO / "contracts" / "precompiles"
OUT = REPO / "openledger_node" / "precompiles" / "abi"


def render() -> dict[Path, str]:
    files = sorted(SOURCES.glob("I*.sol"))
    artifacts = compile_contracts(files)
    out = {}
    for path in files:
        name = path.stem
        abi = sorted(artifacts[name]["abi"], key=lambda item: (item["type"], item.get("name", "")))
        out[OUT / f"{name}.json"] = json.dumps(abi, indent=1, sort_keys=True) + "\n"
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed file differs")
    args = parser.parse_args()
    stale = []
    for path, text in render().items():
        if path.exists() and path.read_text() == text:
            continue
        stale.append(path)
        if not args.check:
            path.write_text(text)
            print(f"wrote {path.relative_to(REPO)}")
    if args.check and stale:
        print("stale: " + ", ".join(str(p.relative_to(REPO)) for p in stale))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
