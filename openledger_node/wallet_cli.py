"""Wallet commands for the Datanet and Proof of Attribution precompiles.

``openledger-node datanet create|contribute|review|publish|show``, ``model register``,
``attribute`` and ``claim``: each builds an EIP-1559 transaction to the precompile (or an
``eth_call`` for the read-only ones), signs it with a keystore or ``OPENLEDGER_PRIVATE_KEY``,
sends it to a node over JSON-RPC, waits for the receipt and prints the decoded events.
Reverts are decoded as the precompile's custom errors. Talks to any node by URL; of the
node's own code it uses the precompiles' ABI, the registry's contribution rule and the
Error(string) decoder, nothing that touches a chain.
"""
from __future__ import annotations

import functools
import json
import os
import re
import stat
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation, localcontext
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer
from eth_account import Account
from eth_hash.auto import keccak
from eth_utils import is_address, to_checksum_address

from .attribution import InvalidContribution, validate_contribution
from .precompiles.abi import Interface, load
from .rpc.jsonrpc import decode_revert_reason

# checksummed (the digits leave nothing to capitalise): eth-account refuses a mixed-case "0x...0A01"
DATANET_REGISTRY = to_checksum_address("0x0000000000000000000000000000000000000A01")
PROOF_OF_ATTRIBUTION = to_checksum_address("0x0000000000000000000000000000000000000A02")
DEFAULT_RPC = "http://127.0.0.1:8545"
KEY_ENV = "OPENLEDGER_PRIVATE_KEY"
PASSWORD_ENV = "OPENLEDGER_KEYSTORE_PASSWORD"
MAX_UINT256 = 2**256 - 1
UNITS = {"wei": 0, "kwei": 3, "mwei": 6, "gwei": 9, "open": 18}  # OPEN, the gas token: 18 decimals
STATUS_NAMES = {0: "Pending", 1: "Accepted", 2: "Rejected"}


class WalletError(Exception):
    """An operator's mistake or a refusal by the node or a precompile: one line, no traceback."""


class RpcError(WalletError):
    def __init__(self, method: str, code: Any, message: str, data: Any = None) -> None:
        super().__init__(f"{method}: {message} (code {code})")
        self.code, self.message, self.data = code, message, data


class Reverted(WalletError):
    """A call or transaction reverted; the message is the decoded error, e.g. ``StakeTooLow(sent=1, minStake=10)``."""


# ----------------------------------------------------------------------------- amounts


_AMOUNT = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*")


def parse_amount(text: str) -> int:
    """Wei from ``1000``, ``1000wei``, ``2gwei``, ``1.5open`` (units: wei, kwei, mwei, gwei, open)."""
    match = _AMOUNT.fullmatch(text)
    if match is None:
        raise WalletError(f"invalid amount {text!r}: give wei (1000) or a number and a unit (2gwei, 1.5open)")
    unit = match[2].lower() or "wei"
    if unit not in UNITS:
        raise WalletError(f"invalid amount {text!r}: unknown unit {match[2]!r} (use {', '.join(UNITS)})")
    with localcontext() as ctx:
        ctx.prec = len(match[1]) + 20  # as many digits as the input has: scaling never rounds
        try:
            wei = Decimal(match[1]).scaleb(UNITS[unit])
        except InvalidOperation:
            raise WalletError(f"invalid amount {text!r}") from None
        if wei != wei.to_integral_value():
            raise WalletError(f"invalid amount {text!r}: not a whole number of wei")
    if wei > MAX_UINT256:
        raise WalletError(f"invalid amount {text!r}: more than 2**256 - 1 wei")
    return int(wei)


def format_amount(wei: int) -> str:
    """``1.5 OPEN``: exact, no rounding."""
    whole, frac = divmod(wei, 10**18)
    return f"{whole}.{frac:018d}".rstrip("0").rstrip(".") + " OPEN"


# ----------------------------------------------------------------------------- keys


def load_account(keystore: Optional[Path]):
    """The signing account: ``keystore`` (password from $OPENLEDGER_KEYSTORE_PASSWORD or a
    hidden prompt), else $OPENLEDGER_PRIVATE_KEY. Messages never contain the key."""
    if keystore is not None:
        try:
            document = json.loads(keystore.read_text())
        except OSError as exc:
            raise WalletError(f"cannot read keystore {keystore}: {exc.strerror or exc}") from None
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise WalletError(f"keystore {keystore} is not a JSON keystore file") from None
        password = os.environ.get(PASSWORD_ENV)
        if password is None:
            password = typer.prompt(f"password for {keystore}", hide_input=True, err=True)  # stdout: --json
        try:
            key = Account.decrypt(document, password)
        except ValueError as exc:
            if "MAC mismatch" in str(exc):
                raise WalletError(f"cannot decrypt keystore {keystore}: wrong password") from None
            raise WalletError(f"keystore {keystore} is not a valid keystore file") from None
        except (KeyError, TypeError, AttributeError):
            raise WalletError(f"keystore {keystore} is not a valid keystore file") from None
        return Account.from_key(key)
    key = os.environ.get(KEY_ENV, "").strip()
    if not key:
        raise WalletError(f"no signing key: pass --keystore PATH or set {KEY_ENV}")
    try:
        return Account.from_key(key)
    except Exception:  # whatever eth-keys says about it, its message must not echo the key
        raise WalletError(f"{KEY_ENV} is not a valid private key (32 bytes, hex)") from None


# ----------------------------------------------------------------------------- ABI


@dataclass(frozen=True)
class Precompile:
    address: str
    interface: Interface


@functools.cache
def precompiles() -> tuple[Precompile, Precompile]:
    return (Precompile(DATANET_REGISTRY, load("IDatanetRegistry")),
            Precompile(PROOF_OF_ATTRIBUTION, load("IProofOfAttribution")))


def registry() -> Precompile:
    return precompiles()[0]


def attribution() -> Precompile:
    return precompiles()[1]


def _plain(kind: str, value: Any) -> Any:
    """An ABI value as JSON: ints and bools as they are, addresses checksummed, bytes as 0x hex."""
    if kind.endswith("]"):
        inner = kind[: kind.rindex("[")]
        return [_plain(inner, item) for item in value]
    if kind == "address":
        return to_checksum_address(value)
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    return value


def _shown(kind: str, value: Any) -> str:
    """A plain value of ABI type ``kind`` as the human output writes it."""
    if kind.endswith("]"):
        inner = kind[: kind.rindex("[")]
        return "[" + ", ".join(_shown(inner, item) for item in value) + "]"
    if kind == "string":
        return json.dumps(value, ensure_ascii=False)
    if kind == "bool":
        return "true" if value else "false"
    return str(value)


def render_call(name: str, kinds: dict[str, str], args: dict[str, Any]) -> str:
    """``StakeTooLow(sent=1, minStake=10)``: plain ``args`` by name, with their ABI types."""
    return f"{name}(" + ", ".join(f"{key}={_shown(kinds[key], value)}" for key, value in args.items()) + ")"


@dataclass(frozen=True)
class DecodedEvent:
    name: str
    address: str
    args: dict[str, Any]
    kinds: dict[str, str]

    def __str__(self) -> str:
        return render_call(self.name, self.kinds, self.args)

    def as_json(self) -> dict[str, Any]:
        return {"event": self.name, "address": self.address, "args": self.args}


def decode_log(log: dict[str, Any]) -> Optional[DecodedEvent]:
    """A receipt log (JSON-RPC form) emitted by one of the precompiles, decoded by topic0; else None."""
    topics = [bytes.fromhex(topic[2:]) for topic in log.get("topics", [])]
    if not topics:
        return None
    for precompile in precompiles():
        if log.get("address", "").lower() != precompile.address.lower():
            continue
        event = precompile.interface.events_by_topic.get(topics[0])
        if event is None:
            return None
        values = event.decode(topics, bytes.fromhex(log["data"][2:]))
        args = {name: _plain(kind, values[name]) for name, kind, _ in event.params}
        return DecodedEvent(event.name, precompile.address, args, {name: kind for name, kind, _ in event.params})
    return None


def decode_revert(data: bytes) -> str:
    """Revert data as one line: a precompile's custom error with its arguments, Error(string),
    Panic(uint256), or the raw hex when nothing matches."""
    if not data:
        return "execution reverted (no revert data)"
    for precompile in precompiles():
        error = precompile.interface.errors_by_selector.get(bytes(data[:4]))
        if error is None:
            continue
        try:
            values = error.decode(bytes(data))
        except Exception:  # eth_abi's several decoding errors: a selector match with a bad body
            return f"{error.name} with undecodable arguments 0x{bytes(data).hex()}"
        kinds = dict(zip(error.input_names, error.inputs))
        return render_call(error.name, kinds, {name: _plain(kind, values[name]) for name, kind in kinds.items()})
    reason = decode_revert_reason(bytes(data))
    if reason is not None:
        return f"execution reverted: {reason}"
    return f"execution reverted: 0x{bytes(data).hex()}"


# ----------------------------------------------------------------------------- JSON-RPC


class Rpc:
    """A JSON-RPC 2.0 client over urllib: errors become one-line WalletErrors."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url
        self.timeout = timeout
        self._id = 0

    def __call__(self, method: str, *params: Any) -> Any:
        self._id += 1
        body = json.dumps({"jsonrpc": "2.0", "id": self._id, "method": method, "params": list(params)}).encode()
        try:
            request = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:  # some servers send JSON-RPC errors with a 4xx/5xx status
            raw = exc.read()
            if not raw.strip().startswith(b"{"):
                raise WalletError(f"{method}: HTTP {exc.code} {exc.reason} from {self.url}") from None
        except urllib.error.URLError as exc:
            reason = getattr(exc.reason, "strerror", None) or exc.reason
            raise WalletError(f"cannot reach the node at {self.url}: {reason}") from None
        except ValueError as exc:  # a URL urllib cannot parse
            raise WalletError(f"invalid --rpc URL {self.url!r}: {exc}") from None
        except (TimeoutError, OSError) as exc:
            raise WalletError(f"{method}: no answer from {self.url} ({exc.strerror or exc})") from None
        try:
            answer = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise WalletError(f"{method}: {self.url} did not answer with JSON-RPC") from None
        if not isinstance(answer, dict):
            raise WalletError(f"{method}: {self.url} did not answer with JSON-RPC")
        error = answer.get("error")
        if error is not None:
            if not isinstance(error, dict):
                raise RpcError(method, "?", str(error))
            raise RpcError(method, error.get("code"), str(error.get("message", "")), error.get("data"))
        if "result" not in answer:
            raise WalletError(f"{method}: {self.url} sent neither a result nor an error")
        return answer["result"]


def _revert_data(error: RpcError) -> Optional[bytes]:
    """The revert data of an eth_call/eth_estimateGas error (geth: code 3, data 0x...), or None."""
    data = error.data
    if isinstance(data, dict):  # some clients nest it
        data = data.get("data")
    if error.code == 3 or isinstance(data, str) and "revert" in error.message:
        if isinstance(data, str) and re.fullmatch(r"0x([0-9a-fA-F]{2})*", data):
            return bytes.fromhex(data[2:])
        return b""
    return None


def _quantity(value: str) -> int:
    return int(value, 16)


def view(rpc: Rpc, precompile: Precompile, function: str, *args: Any) -> dict[str, Any]:
    """eth_call of a view function; its results by output name."""
    fn = precompile.interface.functions[function]
    call = {"to": precompile.address, "data": "0x" + fn.encode_call(*args).hex()}
    try:
        result = rpc("eth_call", call, "latest")
    except RpcError as exc:
        data = _revert_data(exc)
        if data is None:
            raise
        raise Reverted(decode_revert(data)) from None
    try:
        values = fn.decode_result(bytes.fromhex(result[2:]))
    except Exception:  # eth_abi's decoding errors; "0x" from an account without the precompile
        raise WalletError(f"{function}: {rpc.url} answered {result[:42]!r}, not a {precompile.interface.name} "
                          f"result: does this chain have the precompile at {precompile.address}?") from None
    return {name: _plain(kind, value) for name, kind, value in zip(fn.output_names, fn.outputs, values)}


# ----------------------------------------------------------------------------- transactions


@dataclass
class Outcome:
    """A mined, successful transaction."""
    tx_hash: str
    block: int
    gas_used: int
    events: list[DecodedEvent] = field(default_factory=list)

    def find(self, name: str) -> list[DecodedEvent]:
        return [event for event in self.events if event.name == name]

    def as_json(self) -> dict[str, Any]:
        return {"tx": self.tx_hash, "block": self.block, "gasUsed": self.gas_used,
                "events": [event.as_json() for event in self.events]}


class Wallet:
    """Signs and sends calls to the precompiles from one account; keeps its own nonce so that
    several transactions can be in the pool at once."""

    def __init__(self, rpc: Rpc, account, receipt_timeout: float = 120.0) -> None:
        self.rpc = rpc
        self.account = account
        self.receipt_timeout = receipt_timeout
        self.chain_id = _quantity(rpc("eth_chainId"))
        self.nonce = _quantity(rpc("eth_getTransactionCount", account.address, "pending"))
        latest = rpc("eth_getBlockByNumber", "latest", False)
        tip = _quantity(rpc("eth_maxPriorityFeePerGas"))
        base_fee = _quantity(latest.get("baseFeePerGas", "0x0"))
        # twice the base fee: the transaction stays valid through six full blocks of 12.5% rises
        self.max_fee = 2 * base_fee + tip
        self.tip = tip
        self.block_gas_limit = _quantity(latest["gasLimit"])

    def send(self, precompile: Precompile, function: str, *args: Any, value: int = 0) -> str:
        """Estimate, sign and send; returns the transaction hash. A revert in the estimate raises Reverted."""
        data = "0x" + precompile.interface.functions[function].encode_call(*args).hex()
        call = {"from": self.account.address, "to": precompile.address, "data": data, "value": hex(value)}
        try:
            estimate = _quantity(self.rpc("eth_estimateGas", call))
        except RpcError as exc:
            revert = _revert_data(exc)
            if revert is None:
                raise
            raise Reverted(decode_revert(revert)) from None
        # headroom: the state may move between the estimate and inclusion (other transactions, ours in flight)
        gas = min(estimate + estimate // 5, self.block_gas_limit)
        signed = self.account.sign_transaction({
            "type": 2, "chainId": self.chain_id, "nonce": self.nonce, "to": precompile.address,
            "value": value, "data": data, "gas": gas,
            "maxFeePerGas": self.max_fee, "maxPriorityFeePerGas": self.tip,
        })
        raw = signed.raw_transaction.hex()
        tx_hash = self.rpc("eth_sendRawTransaction", raw if raw.startswith("0x") else "0x" + raw)
        self.nonce += 1
        return tx_hash

    def wait(self, tx_hash: str, deadline: Optional[float] = None) -> Outcome:
        """The receipt's decoded events; a reverted transaction raises Reverted with the decoded error.
        Waits until ``deadline`` (time.monotonic()), by default receipt_timeout from now."""
        if deadline is None:
            deadline = time.monotonic() + self.receipt_timeout
        delay = 0.05
        while (receipt := self.rpc("eth_getTransactionReceipt", tx_hash)) is None:
            if time.monotonic() > deadline:
                raise WalletError(f"no receipt for {tx_hash} in {self.receipt_timeout:g}s "
                                  "(it may still be mined; look it up later)")
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)
        block = _quantity(receipt["blockNumber"])
        if _quantity(receipt.get("status", "0x1")) != 1:
            raise Reverted(f"{self._failure(tx_hash, receipt)} (transaction {tx_hash} reverted in block {block})")
        events = [event for log in receipt.get("logs", []) if (event := decode_log(log)) is not None]
        return Outcome(tx_hash, block, _quantity(receipt["gasUsed"]), events)

    def transact(self, precompile: Precompile, function: str, *args: Any, value: int = 0) -> Outcome:
        return self.wait(self.send(precompile, function, *args, value=value))

    def _failure(self, tx_hash: str, receipt: dict[str, Any]) -> str:
        """Why a mined transaction failed: its revert data from a callTracer trace, else by
        replaying it as an eth_call on the parent block (exact unless earlier transactions
        of the same block changed what it read)."""
        try:
            frame = self.rpc("debug_traceTransaction", tx_hash, {"tracer": "callTracer"})
        except RpcError:
            frame = None
        if isinstance(frame, dict):
            output = frame.get("output")
            if isinstance(output, str) and len(output) > 2:
                return decode_revert(bytes.fromhex(output[2:]))
            if frame.get("error") and frame.get("error") != "execution reverted":
                return str(frame["error"])
            return decode_revert(b"")
        tx = self.rpc("eth_getTransactionByHash", tx_hash)
        call = {"from": tx["from"], "to": tx["to"], "data": tx["input"], "value": tx["value"], "gas": tx["gas"]}
        try:
            self.rpc("eth_call", call, hex(_quantity(receipt["blockNumber"]) - 1))
        except RpcError as exc:
            revert = _revert_data(exc)
            if revert is not None:
                return decode_revert(revert)
            return exc.message
        return "failed (out of gas?)"


# ----------------------------------------------------------------------------- contributions


def contribution_files(path: Path) -> list[Path]:
    """``path`` itself, or every regular file under the folder, sorted by name at each level
    (symbolic links and special files are left out, and links to folders are not followed)."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise WalletError(f"cannot read {path}: {exc.strerror or exc}") from None
    if stat.S_ISREG(mode):
        return [path]
    if not stat.S_ISDIR(mode):
        raise WalletError(f"{path} is neither a file nor a folder")
    found = []
    for folder, subfolders, names in os.walk(path):
        subfolders.sort()
        for name in sorted(names):
            file = Path(folder) / name
            if stat.S_ISREG(file.lstat().st_mode):
                found.append(file)
    return sorted(found, key=lambda file: file.relative_to(path).parts)


def check_contribution(data: bytes) -> Optional[str]:
    """Why the registry would refuse ``data`` (its own rule, checked before paying gas), or None."""
    try:
        validate_contribution(data)
    except InvalidContribution as exc:
        return str(exc)
    return None


# ----------------------------------------------------------------------------- command plumbing

RpcUrl = Annotated[str, typer.Option("--rpc", envvar="OPENLEDGER_RPC", help="the node's JSON-RPC URL")]
Keystore = Annotated[Optional[Path], typer.Option(
    "--keystore", help=f"encrypted JSON keystore (password: ${PASSWORD_ENV} or a prompt); without it, ${KEY_ENV}")]
JsonOut = Annotated[bool, typer.Option("--json", help="print one JSON document")]
Timeout = Annotated[float, typer.Option("--timeout", help="seconds to wait for each receipt")]


def _operator_errors(command: Callable) -> Callable:
    """WalletError → one ``error: ...`` line on stderr and exit 1 (cli.fail), in one place."""
    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except WalletError as exc:
            from .cli import fail  # imported here: cli.py imports this module to register it

            fail(str(exc))
    return run


def _wallet(rpc: str, keystore: Optional[Path], timeout: float) -> Wallet:
    return Wallet(Rpc(rpc), load_account(keystore), receipt_timeout=timeout)


def _emit(as_json: bool, document: dict[str, Any], lines: list[str]) -> None:
    typer.echo(json.dumps(document, indent=1) if as_json else "\n".join(lines))


def _outcome_lines(outcome: Outcome, result: Optional[str] = None) -> list[str]:
    lines = [f"transaction {outcome.tx_hash} mined in block {outcome.block} (gas used {outcome.gas_used})"]
    lines += [f"  {event}" for event in outcome.events]
    if result is not None:
        lines.append(result)
    return lines


def _first_arg(outcome: Outcome, event: str, arg: str) -> Any:
    found = outcome.find(event)
    if not found:
        raise WalletError(f"transaction {outcome.tx_hash} succeeded but emitted no {event} event: "
                          "does this chain have the precompiles?")
    return found[0].args[arg]


datanet_app = typer.Typer(no_args_is_help=True, help="Datanets: create, contribute, review, publish, show.")
model_app = typer.Typer(no_args_is_help=True, help="Models trained on Datanet versions.")


@datanet_app.command("create")
@_operator_errors
def datanet_create(
    name: Annotated[str, typer.Argument(metavar="NAME", help="1 to 64 bytes")],
    description: Annotated[str, typer.Option("--description", help="at most 1024 bytes")] = "",
    min_stake: Annotated[str, typer.Option("--min-stake", metavar="AMOUNT", help="stake each contribution must carry: wei, or e.g. 1.5open, 2gwei")] = "0",
    rpc: RpcUrl = DEFAULT_RPC, keystore: Keystore = None, timeout: Timeout = 120.0, as_json: JsonOut = False,
) -> None:
    """Create a Datanet owned by the signing account; prints its id."""
    stake = parse_amount(min_stake)
    outcome = _wallet(rpc, keystore, timeout).transact(registry(), "createDatanet", name, description, stake)
    datanet_id = _first_arg(outcome, "DatanetCreated", "datanetId")
    _emit(as_json, {**outcome.as_json(), "datanetId": datanet_id}, _outcome_lines(outcome, f"datanet id: {datanet_id}"))


@datanet_app.command("contribute")
@_operator_errors
def datanet_contribute(
    datanet_id: Annotated[int, typer.Argument(min=0, metavar="DATANET_ID")],
    path: Annotated[Path, typer.Argument(metavar="PATH", help="a UTF-8 text file, or a folder: one contribution per file in it")],
    stake: Annotated[Optional[str], typer.Option("--stake", metavar="AMOUNT", help="stake per contribution (default: the Datanet's minStake)")] = None,
    rpc: RpcUrl = DEFAULT_RPC, keystore: Keystore = None, timeout: Timeout = 120.0, as_json: JsonOut = False,
) -> None:
    """Submit PATH's files to a Datanet, one transaction each; exits 1 if any file failed."""
    value = parse_amount(stake) if stake is not None else None
    files = contribution_files(path)
    if not files:
        raise WalletError(f"no files in {path}")
    wallet = _wallet(rpc, keystore, timeout)
    if value is None:
        value = view(wallet.rpc, registry(), "getDatanet", datanet_id)["minStake"]
    root = path if path.is_dir() else path.parent
    reports: list[dict[str, Any]] = []
    pending: list[tuple[dict[str, Any], str]] = []
    outcomes: dict[str, Outcome] = {}
    # all sent first, then all awaited: a folder takes a block or two, not a block per file
    for file in files:
        report: dict[str, Any] = {"path": file.relative_to(root).as_posix()}
        reports.append(report)
        try:
            data = file.read_bytes()
        except OSError as exc:
            report.update(error=f"cannot read it: {exc.strerror or exc}", skipped=True)
            continue
        problem = check_contribution(data)
        if problem is not None:
            report.update(error=problem, skipped=True)
            continue
        try:
            pending.append((report, wallet.send(registry(), "contribute", datanet_id, data, value=value)))
        except (Reverted, RpcError) as exc:  # a revert, or refused by the pool: this file fails, the rest go on
            report.update(error=str(exc), skipped=False)
    deadline = time.monotonic() + timeout  # for all of them: a stalled node costs one timeout, not one per file
    for report, tx_hash in pending:
        try:
            outcome = wallet.wait(tx_hash, deadline)
            report.update(outcome.as_json(), contributionId=_first_arg(outcome, "ContributionSubmitted", "contributionId"))
        except WalletError as exc:  # reverted, or no receipt in time: reported with the others
            report.update(error=str(exc), skipped=False)
            continue
        outcomes[report["path"]] = outcome
    failed = [report for report in reports if "error" in report]
    if path.is_file() and failed and not as_json:
        raise WalletError(failed[0]["error"])
    lines = []
    for report in reports:
        if "error" in report:
            lines.append(f"{report['path']}: {'skipped' if report['skipped'] else 'failed'}: {report['error']}")
            continue
        lines.append(f"{report['path']}: contribution {report['contributionId']} "
                     f"(transaction {report['tx']}, block {report['block']})")
        lines += [f"  {event}" for event in outcomes[report["path"]].events]
    lines.append(f"{len(reports) - len(failed)} of {len(reports)} files contributed, stake {value} wei each")
    _emit(as_json, {"datanetId": datanet_id, "stake": value, "files": reports,
                    "contributed": len(reports) - len(failed), "failed": len(failed)}, lines)
    if failed:
        raise WalletError(f"{len(failed)} of {len(reports)} files failed")


@datanet_app.command("review")
@_operator_errors
def datanet_review(
    datanet_id: Annotated[int, typer.Argument(min=0, metavar="DATANET_ID")],
    contribution_id: Annotated[int, typer.Argument(min=0, metavar="CONTRIBUTION_ID")],
    accept: Annotated[bool, typer.Option("--accept/--reject", help="accept (stake refunded at publish) or reject (stake slashed to the owner)")],
    rpc: RpcUrl = DEFAULT_RPC, keystore: Keystore = None, timeout: Timeout = 120.0, as_json: JsonOut = False,
) -> None:
    """Accept or reject a pending contribution (the Datanet's owner only)."""
    outcome = _wallet(rpc, keystore, timeout).transact(registry(), "review", datanet_id, contribution_id, accept)
    _emit(as_json, outcome.as_json(), _outcome_lines(outcome))


@datanet_app.command("publish")
@_operator_errors
def datanet_publish(
    datanet_id: Annotated[int, typer.Argument(min=0, metavar="DATANET_ID")],
    rpc: RpcUrl = DEFAULT_RPC, keystore: Keystore = None, timeout: Timeout = 120.0, as_json: JsonOut = False,
) -> None:
    """Freeze the accepted contributions into a new version (the Datanet's owner only); prints it."""
    outcome = _wallet(rpc, keystore, timeout).transact(registry(), "publishVersion", datanet_id)
    version = _first_arg(outcome, "VersionPublished", "version")
    _emit(as_json, {**outcome.as_json(), "version": version}, _outcome_lines(outcome, f"version: {version}"))


@datanet_app.command("show")
@_operator_errors
def datanet_show(
    datanet_id: Annotated[int, typer.Argument(min=0, metavar="DATANET_ID")],
    contributions: Annotated[bool, typer.Option("--contributions", help="list every contribution too")] = False,
    rpc: RpcUrl = DEFAULT_RPC, as_json: JsonOut = False,
) -> None:
    """A Datanet, its versions and (with --contributions) its contributions; read-only."""
    client = Rpc(rpc)
    datanet = view(client, registry(), "getDatanet", datanet_id)
    versions = [{"version": number, **view(client, registry(), "getVersion", datanet_id, number)}
                for number in range(1, datanet["versionCount"] + 1)]
    document: dict[str, Any] = {"datanetId": datanet_id, **datanet, "versions": versions}
    lines = [
        f"datanet {datanet_id}: {_shown('string', datanet['name'])}",
        f"  owner          {datanet['owner']}",
        f"  description    {_shown('string', datanet['description'])}",
        f"  min stake      {datanet['minStake']} wei ({format_amount(datanet['minStake'])})",
        f"  contributions  {datanet['contributionCount']} ({datanet['acceptedCount']} accepted)",
        f"  versions       {datanet['versionCount']}",
        f"  created in     block {datanet['createdAtBlock']}",
    ]
    lines += [f"version {v['version']}: {v['contributionCount']} contributions, {v['tokens']} tokens, "
              f"root {v['root']}, block {v['publishedAtBlock']}" for v in versions]
    if contributions:
        listed = [{"contributionId": number, **view(client, registry(), "getContribution", datanet_id, number)}
                  for number in range(1, datanet["contributionCount"] + 1)]
        document["contributions"] = listed
        for c in listed:
            status = STATUS_NAMES.get(c["status"], str(c["status"]))
            included = f"in version {c['version']}" if c["version"] else "in no version yet"
            lines.append(f"contribution {c['contributionId']}: {status}, {included}, from {c['contributor']}, "
                         f"{c['size']} bytes, {c['tokens']} tokens, stake {c['stake']} wei, "
                         f"block {c['submittedAtBlock']}, data hash {c['dataHash']}")
    _emit(as_json, document, lines)


def _datanet_version(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", text)
    if match is None:
        raise WalletError(f"--datanet {text!r}: expected ID:VERSION, e.g. 1:2")
    return int(match[1]), int(match[2])


def _file_keccak(path: Path) -> bytes:
    """keccak256 of a file, read in pieces (adapters can be large)."""
    digest = keccak.new(b"")
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:
        raise WalletError(f"cannot read {path}: {exc.strerror or exc}") from None
    return digest.digest()


def _bytes32(text: str) -> bytes:
    if re.fullmatch(r"0x[0-9a-fA-F]{64}", text) is None:
        raise WalletError(f"--adapter-hash {text!r}: expected 0x and 64 hex digits")
    return bytes.fromhex(text[2:])


@model_app.command("register")
@_operator_errors
def model_register(
    name: Annotated[str, typer.Argument(metavar="NAME", help="1 to 64 bytes")],
    datanet: Annotated[list[str], typer.Option("--datanet", metavar="ID:VERSION", help="ID:VERSION of a Datanet version the model was trained on (repeatable)")],
    adapter_hash: Annotated[Optional[str], typer.Option("--adapter-hash", help="0x and 32 bytes of hex")] = None,
    adapter_file: Annotated[Optional[Path], typer.Option("--adapter-file", help="adapter weights: their keccak256 is the adapter hash")] = None,
    owner_share_bps: Annotated[int, typer.Option("--owner-share-bps", min=0, max=10_000, help="the owner's part of each fee, in basis points")] = 0,
    rpc: RpcUrl = DEFAULT_RPC, keystore: Keystore = None, timeout: Timeout = 120.0, as_json: JsonOut = False,
) -> None:
    """Register a model trained on the given Datanet versions; prints its id."""
    if adapter_hash is not None and adapter_file is not None:
        raise WalletError("give --adapter-hash or --adapter-file, not both")
    pairs = [_datanet_version(text) for text in datanet]
    digest = (_bytes32(adapter_hash) if adapter_hash is not None
              else _file_keccak(adapter_file) if adapter_file is not None else bytes(32))
    outcome = _wallet(rpc, keystore, timeout).transact(
        attribution(), "registerModel", name, [d for d, _ in pairs], [v for _, v in pairs], digest, owner_share_bps)
    model_id = _first_arg(outcome, "ModelRegistered", "modelId")
    _emit(as_json, {**outcome.as_json(), "modelId": model_id}, _outcome_lines(outcome, f"model id: {model_id}"))


@_operator_errors
def attribute(
    model_id: Annotated[int, typer.Argument(min=0, metavar="MODEL_ID")],
    output: Annotated[Optional[str], typer.Option("--output", help="the inference's output text")] = None,
    output_file: Annotated[Optional[Path], typer.Option("--output-file", help="a file holding the output")] = None,
    fee: Annotated[str, typer.Option("--fee", metavar="AMOUNT", help="inference fee: wei, or e.g. 1.5open, 2gwei")] = "0",
    preview: Annotated[bool, typer.Option("--preview", help="only show who would be credited (eth_call, no transaction)")] = False,
    rpc: RpcUrl = DEFAULT_RPC, keystore: Keystore = None, timeout: Timeout = 120.0, as_json: JsonOut = False,
) -> None:
    """Pay for an inference of MODEL_ID and attribute its output to the contributions it drew on."""
    if (output is None) == (output_file is None):
        raise WalletError("give exactly one of --output TEXT and --output-file PATH")
    value = parse_amount(fee)
    if output is not None:
        data = output.encode("utf-8")
    else:
        try:
            data = output_file.read_bytes()
        except OSError as exc:
            raise WalletError(f"cannot read {output_file}: {exc.strerror or exc}") from None
    if preview:
        found = view(Rpc(rpc), attribution(), "previewAttribution", model_id, data)
        rows = [dict(zip(("datanetId", "contributionId", "contributor", "score"), row))
                for row in zip(found["datanetIds"], found["contributionIds"], found["contributors"], found["scores"])]
        total = sum(row["score"] for row in rows)
        lines = [f"datanet {row['datanetId']} contribution {row['contributionId']} from {row['contributor']}: "
                 f"score {row['score']} ({100 * row['score'] / total:.2f}%)" for row in rows]
        _emit(as_json, {"modelId": model_id, "credits": rows},
              lines or ["nothing attributed: the contributors' part would go to the treasury"])
        return
    outcome = _wallet(rpc, keystore, timeout).transact(attribution(), "attribute", model_id, data, value=value)
    inference_id = _first_arg(outcome, "InferenceAttributed", "inferenceId")
    _emit(as_json, {**outcome.as_json(), "inferenceId": inference_id},
          _outcome_lines(outcome, f"inference id: {inference_id}"))


@_operator_errors
def claim(
    show: Annotated[Optional[str], typer.Option("--show", metavar="ADDRESS", help="only print what ADDRESS can claim (no transaction)")] = None,
    rpc: RpcUrl = DEFAULT_RPC, keystore: Keystore = None, timeout: Timeout = 120.0, as_json: JsonOut = False,
) -> None:
    """Collect the signing account's attribution rewards (or --show an address's balance)."""
    if show is not None:
        if not is_address(show):
            raise WalletError(f"--show {show!r} is not an address")
        account = to_checksum_address(show)
        (amount,) = view(Rpc(rpc), attribution(), "claimable", account).values()
        _emit(as_json, {"account": account, "claimable": amount},
              [f"{account} can claim {amount} wei ({format_amount(amount)})"])
        return
    outcome = _wallet(rpc, keystore, timeout).transact(attribution(), "claim")
    amount = _first_arg(outcome, "Claimed", "amount")
    _emit(as_json, {**outcome.as_json(), "amount": amount},
          _outcome_lines(outcome, f"claimed {amount} wei ({format_amount(amount)})"))


def register(app: typer.Typer) -> None:
    """Add the wallet commands to the ``openledger-node`` app."""
    app.add_typer(datanet_app, name="datanet")
    app.add_typer(model_app, name="model")
    from .ai.cli import register_model_commands  # model train (ModelFactory); torch loads only when it runs
    register_model_commands(model_app)
    app.command("attribute")(attribute)
    app.command("claim")(claim)
