"""Ethereum's execution-apis conformance suite (rpc-compat) against a real node.

The node's datadir is made from the suite's geth genesis, the suite's chain.rlp is
imported through the same path as ``openledger-node import``, and the node then serves
JSON-RPC over HTTP on a free loopback port with mining off.  Every ``.io`` file is one
test case; its requests are sent in order and compared as the suite's README says:

- the response JSON must equal the expected JSON;
- where both are errors, only ``error.code`` (and ``error.data`` if expected) must match;
- ``// speconly`` cases compare only the shape of the result (keys and JSON types);
- the head stays at block 45 throughout, and ``safe``/``finalized`` are the head.

``eth_simulateV1`` (a large, optional method) is counted separately in the table of
passed/failed per method printed at the end of the module.
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from openledger_node.chain.chain import Blockchain
from openledger_node.chain.genesis import load_genesis
from openledger_node.chain.importer import import_file

from conftest import start_node, stop_node

SUITE = Path(__file__).resolve().parent.parent.parent / "shared" / "conformance" / "execution-apis"
HEAD_NUMBER = 45
SIMULATE = "eth_simulateV1"

pytestmark = [
    pytest.mark.filterwarnings("ignore:SELFDESTRUCT opcode present:DeprecationWarning"),  # py-evm's, by design
]


@dataclass
class Case:
    method: str
    name: str
    path: Path
    speconly: bool = False
    comments: list[str] = field(default_factory=list)
    exchanges: list[tuple[str, str]] = field(default_factory=list)  # (request line, expected response line)

    @property
    def id(self) -> str:
        return f"{self.method}/{self.name}"


def parse_io(path: Path) -> Case:
    case = Case(path.parent.name, path.stem, path)
    request: str | None = None
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("//"):
            text = line[2:].strip()
            if text.startswith("speconly"):
                case.speconly = True
            case.comments.append(text)
        elif line.startswith(">>"):
            if request is not None:
                raise ValueError(f"{path}:{number}: request without a response")
            request = line[2:].strip()
        elif line.startswith("<<"):
            if request is None:
                raise ValueError(f"{path}:{number}: response without a request")
            case.exchanges.append((request, line[2:].strip()))
            request = None
        else:
            raise ValueError(f"{path}:{number}: unexpected line")
    if request is not None:
        raise ValueError(f"{path}: last request has no response")
    return case


def load_cases() -> list[Case]:
    if not SUITE.is_dir():
        return []
    return [parse_io(p) for d in sorted(SUITE.iterdir()) if d.is_dir() for p in sorted(d.glob("*.io"))]


CASES = load_cases()


# ------------------------------------------------------------------------ comparison


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def shape_diff(got: Any, want: Any, path: str = "$") -> list[str]:
    """Differences in shape only: object keys and JSON types, recursively (arrays: every
    element of ``got`` against the first of ``want``)."""
    if _json_type(got) != _json_type(want):
        return [f"{path}: {_json_type(got)} instead of {_json_type(want)}"]
    out: list[str] = []
    if isinstance(want, dict):
        missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
        if missing:
            out.append(f"{path}: missing keys {missing}")
        if extra:
            out.append(f"{path}: unexpected keys {extra}")
        for key in sorted(set(want) & set(got)):
            out += shape_diff(got[key], want[key], f"{path}.{key}")
    elif isinstance(want, list) and want:
        for i, item in enumerate(got):
            out += shape_diff(item, want[0], f"{path}[{i}]")
    elif isinstance(want, str) and want.startswith("0x") != got.startswith("0x"):
        out.append(f"{path}: {got!r} and {want!r} differ in form")
    return out


def value_diff(got: Any, want: Any, path: str = "$") -> list[str]:
    if _json_type(got) != _json_type(want):
        return [f"{path}: got {json.dumps(got)[:200]}, want {json.dumps(want)[:200]}"]
    if isinstance(want, dict):
        out = []
        for key in sorted(set(want) | set(got)):
            if key not in got:
                out.append(f"{path}.{key}: missing (want {json.dumps(want[key])[:200]})")
            elif key not in want:
                out.append(f"{path}.{key}: unexpected (got {json.dumps(got[key])[:200]})")
            else:
                out += value_diff(got[key], want[key], f"{path}.{key}")
        return out
    if isinstance(want, list):
        if len(got) != len(want):
            return [f"{path}: {len(got)} items, want {len(want)}"] + [
                d for i, (g, w) in enumerate(zip(got, want)) for d in value_diff(g, w, f"{path}[{i}]")
            ][:20]
        return [d for i, (g, w) in enumerate(zip(got, want)) for d in value_diff(g, w, f"{path}[{i}]")]
    return [] if got == want else [f"{path}: got {json.dumps(got)[:200]}, want {json.dumps(want)[:200]}"]


def compare(got: dict[str, Any], want: dict[str, Any], speconly: bool) -> list[str]:
    """The README's rules; returns what differs (empty: the exchange passed)."""
    if "error" in want:
        if "error" not in got:
            return [f"want error {json.dumps(want['error'])[:300]}, got result {json.dumps(got.get('result'))[:300]}"]
        out = []
        if got["error"].get("code") != want["error"].get("code"):
            out.append(f"error.code {got['error'].get('code')} ({got['error'].get('message')!r}), "
                       f"want {want['error'].get('code')} ({want['error'].get('message')!r})")
        if "data" in want["error"] and got["error"].get("data") != want["error"]["data"]:
            out.append(f"error.data {got['error'].get('data')!r}, want {want['error']['data']!r}")
        return out
    if "error" in got:
        return [f"got error {json.dumps(got['error'])[:300]}, want a result"]
    out = [f"{key}: got {got.get(key)!r}, want {want.get(key)!r}"
           for key in ("jsonrpc", "id") if got.get(key) != want.get(key)]
    if "result" not in got:
        return out + ["no result in the response"]
    if speconly:
        return out + shape_diff(got["result"], want["result"], "$.result")
    return out + value_diff(got["result"], want["result"], "$.result")


# ---------------------------------------------------------------------------- node


RESULTS: dict[str, dict[str, int]] = defaultdict(lambda: {"passed": 0, "failed": 0})


@pytest.fixture(scope="module")
def suite_node(tmp_path_factory, request) -> Iterator[tuple[str, httpx.Client]]:
    datadir = tmp_path_factory.mktemp("conformance") / "data"
    chain = Blockchain.init(datadir, load_genesis(SUITE / "genesis.json"))
    try:
        summary = import_file(chain, SUITE / "chain.rlp")
    finally:
        chain.close()
    head_hash = json.loads((SUITE / "headfcu.json").read_text())["params"][0]["headBlockHash"]
    assert summary.head_number == HEAD_NUMBER and "0x" + summary.head_hash.hex() == head_hash
    node, thread = start_node(datadir, mining=False)
    try:
        with httpx.Client(timeout=60) as client:
            yield node.rpc.url, client
            # The suite's rule: no block is produced while the tests run.
            body = client.post(node.rpc.url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber"}).json()
            assert body["result"] == hex(HEAD_NUMBER), f"head moved to {body['result']}"
    finally:
        stop_node(node, thread)
        _print_table(request.config)


def _print_table(config) -> None:
    if not RESULTS:
        return
    lines = [f"{'method':<42} {'passed':>6} {'failed':>6}"]
    total_pass = total_fail = 0
    for method in sorted(RESULTS):
        row = RESULTS[method]
        note = "  (counted apart)" if method == SIMULATE else ""
        lines.append(f"{method:<42} {row['passed']:>6} {row['failed']:>6}{note}")
        if method != SIMULATE:
            total_pass += row["passed"]
            total_fail += row["failed"]
    lines.append(f"{'total (without ' + SIMULATE + ')':<42} {total_pass:>6} {total_fail:>6}")
    simulate = RESULTS.get(SIMULATE)
    if simulate is not None:
        lines.append(f"{'total':<42} {total_pass + simulate['passed']:>6} {total_fail + simulate['failed']:>6}")
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        print("\n".join(lines))
        return
    with capture.global_and_fixture_disabled():  # past output capturing, as live logs are
        reporter.write_line("")
        reporter.write_sep("-", "execution-apis conformance")
        for line in lines:
            reporter.write_line(line)


@pytest.mark.parametrize("case", [pytest.param(case, id=case.id) for case in CASES])
def test_rpc_compat(case: Case, suite_node) -> None:
    url, client = suite_node
    failures: list[str] = []
    for i, (request_line, expected_line) in enumerate(case.exchanges):
        want = json.loads(expected_line)
        response = client.post(url, content=request_line.encode(), headers={"content-type": "application/json"})
        try:
            got = response.json()
        except ValueError:
            failures.append(f"request {i + 1}: HTTP {response.status_code}, not JSON: {response.text[:200]!r}")
            continue
        diffs = compare(got, want, case.speconly)
        if diffs:
            failures.append(f"request {i + 1}: {request_line[:300]}\n    " + "\n    ".join(diffs[:30]))
    RESULTS[case.method]["failed" if failures else "passed"] += 1
    assert not failures, f"{case.id} ({'; '.join(case.comments)[:200]}):\n  " + "\n  ".join(failures)


def test_suite_is_complete() -> None:
    """193 cases in 29 methods, as the README of the copied suite says."""
    assert len(CASES) == 193
    assert len({c.method for c in CASES}) == 29


def test_the_conformance_suite_is_present() -> None:
    """CI runs with ../shared beside the clone: a missing suite is a failure, not a skip."""
    assert (SUITE / "chain.rlp").exists() and len(CASES) > 150, f"execution-apis suite not found at {SUITE}"
