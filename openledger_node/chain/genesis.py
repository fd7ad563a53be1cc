"""Genesis files: geth-style JSON mapped onto py-evm.

The devnet's own ``genesis/devnet.json`` and the geth genesis files used by
Ethereum's test suites share one format, so one loader serves both.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth.constants import BLANK_ROOT_HASH, EMPTY_SHA256
from eth_utils import to_canonical_address, to_checksum_address

from .vm import FORK_ORDER

ZERO_HASH = b"\x00" * 32

# geth config key -> our fork name; block-activated forks first, then timestamp ones.
_BLOCK_KEYS = (
    ("homesteadBlock", "homestead"),
    ("eip150Block", "tangerineWhistle"),
    ("eip155Block", "spuriousDragon"),
    ("eip158Block", "spuriousDragon"),
    ("byzantiumBlock", "byzantium"),
    ("constantinopleBlock", "constantinople"),
    ("petersburgBlock", "petersburg"),
    ("istanbulBlock", "istanbul"),
    ("muirGlacierBlock", "muirGlacier"),
    ("berlinBlock", "berlin"),
    ("londonBlock", "london"),
    ("arrowGlacierBlock", "arrowGlacier"),
    ("grayGlacierBlock", "grayGlacier"),
    ("mergeNetsplitBlock", "paris"),
)
_TIME_KEYS = (
    ("shanghaiTime", "shanghai"),
    ("cancunTime", "cancun"),
    ("pragueTime", "prague"),
)


# Forks after Prague, and what py-evm fixes for each blob-carrying fork (EIP-4844,
# EIP-7691): a genesis may restate these values but not change them.
_UNSUPPORTED_TIME_KEYS = ("osakaTime", "bpo1Time", "bpo2Time", "bpo3Time", "bpo4Time", "bpo5Time", "verkleTime")
_BLOB_SCHEDULE = {
    "cancun": {"target": 3, "max": 6, "baseFeeUpdateFraction": 3338477},
    "prague": {"target": 6, "max": 9, "baseFeeUpdateFraction": 5007716},
}


class GenesisError(ValueError):
    """The genesis file cannot be used; the message says why in one line."""


@dataclass(frozen=True)
class ForkActivation:
    fork: str
    block: int | None = None  # activates at this block number
    time: int | None = None  # or at this timestamp


@dataclass(frozen=True)
class Genesis:
    chain_id: int
    forks: tuple[ForkActivation, ...]
    header: dict[str, Any]  # py-evm genesis header params
    alloc: dict[bytes, dict[str, Any]]  # py-evm genesis state
    treasury: bytes | None
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)
    # EIP-6110 deposit contract (config.depositContractAddress); None: py-evm's, mainnet's
    deposit_contract: bytes | None = None

    @property
    def canonical_json(self) -> bytes:
        """The genesis as stored in the datadir: sorted keys, compact."""
        return json.dumps(self.raw, sort_keys=True, separators=(",", ":")).encode()


def _int(value: Any, what: str) -> int:
    try:
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            return int(value, 16) if value.lower().startswith("0x") else int(value)
    except ValueError:
        pass
    raise GenesisError(f"{what}: expected a number, got {value!r}")


def _bytes(value: Any, what: str, size: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise GenesisError(f"{what}: expected a hex string, got {value!r}")
    text = value[2:] if value.lower().startswith("0x") else value
    try:
        data = bytes.fromhex(text if len(text) % 2 == 0 else "0" + text)
    except ValueError:
        raise GenesisError(f"{what}: not hex: {value!r}") from None
    if size is not None:
        if len(data) > size:
            raise GenesisError(f"{what}: longer than {size} bytes")
        data = data.rjust(size, b"\x00")
    return data


def parse_genesis(doc: Any) -> Genesis:
    if not isinstance(doc, dict):
        raise GenesisError("genesis must be a JSON object")
    config = doc.get("config")
    if not isinstance(config, dict) or "chainId" not in config:
        raise GenesisError("genesis has no config.chainId")
    chain_id = _int(config["chainId"], "config.chainId")

    forks: dict[str, ForkActivation] = {"frontier": ForkActivation("frontier", block=0)}
    for key, fork in _BLOCK_KEYS:
        if config.get(key) is not None:
            forks[fork] = ForkActivation(fork, block=_int(config[key], f"config.{key}"))
    if "paris" not in forks and config.get("terminalTotalDifficultyPassed") and \
            _int(config.get("terminalTotalDifficulty", 0), "terminalTotalDifficulty") == 0:
        forks["paris"] = ForkActivation("paris", block=0)
    for key, fork in _TIME_KEYS:
        if config.get(key) is not None:
            forks[fork] = ForkActivation(fork, time=_int(config[key], f"config.{key}"))
    schedule = tuple(sorted(forks.values(), key=lambda f: FORK_ORDER.index(f.fork)))
    for key in _UNSUPPORTED_TIME_KEYS:
        if config.get(key) is not None:
            raise GenesisError(f"config.{key}: fork {key.removesuffix('Time')} is not supported (Prague is the last)")
    if config.get("daoForkSupport") and config.get("daoForkBlock") is not None:
        raise GenesisError("config.daoForkBlock: the DAO fork's irregular state change is not supported")
    _check_blob_schedule(config.get("blobSchedule"), forks)
    deposit = config.get("depositContractAddress")
    deposit_contract = _bytes(deposit, "config.depositContractAddress", 20) if deposit is not None else None

    alloc_doc = doc.get("alloc", {})
    if not isinstance(alloc_doc, dict):
        raise GenesisError("genesis alloc must be an object")
    alloc: dict[bytes, dict[str, Any]] = {}
    for addr, account in sorted(alloc_doc.items()):
        what = f"alloc[{addr}]"
        try:
            address = to_canonical_address(addr if addr.startswith("0x") else "0x" + addr)
        except ValueError:
            raise GenesisError(f"{what}: not an address") from None
        if not isinstance(account, dict):
            raise GenesisError(f"{what}: must be an object")
        storage = {
            _int(k, f"{what}.storage key"): _int(v, f"{what}.storage value")
            for k, v in (account.get("storage") or {}).items()
        }
        alloc[address] = {
            "balance": _int(account.get("balance", 0), f"{what}.balance"),
            "nonce": _int(account.get("nonce", 0), f"{what}.nonce"),
            "code": _bytes(account.get("code", "0x"), f"{what}.code"),
            "storage": {k: v for k, v in storage.items() if v},
        }

    header: dict[str, Any] = {
        "difficulty": _int(doc.get("difficulty", 0), "difficulty"),
        "gas_limit": _int(doc.get("gasLimit", 30_000_000), "gasLimit"),
        "timestamp": _int(doc.get("timestamp", 0), "timestamp"),
        "extra_data": _bytes(doc.get("extraData", "0x"), "extraData"),
        "mix_hash": _bytes(doc.get("mixHash", "0x" + "00" * 32), "mixHash", 32),
        "nonce": _bytes(doc.get("nonce", "0x0"), "nonce", 8),
        "coinbase": _bytes(doc.get("coinbase", "0x" + "00" * 20), "coinbase", 20),
    }
    if len(header["extra_data"]) > 32:
        raise GenesisError("extraData is longer than 32 bytes")
    genesis_fork = _genesis_fork(schedule, header["timestamp"])
    if _at_least(genesis_fork, "london"):
        header["base_fee_per_gas"] = _int(doc.get("baseFeePerGas", 1_000_000_000), "baseFeePerGas")
    if _at_least(genesis_fork, "shanghai"):
        header["withdrawals_root"] = BLANK_ROOT_HASH
    if _at_least(genesis_fork, "cancun"):
        header["blob_gas_used"] = _int(doc.get("blobGasUsed", 0), "blobGasUsed")
        header["excess_blob_gas"] = _int(doc.get("excessBlobGas", 0), "excessBlobGas")
        header["parent_beacon_block_root"] = ZERO_HASH
    if _at_least(genesis_fork, "prague"):
        header["requests_hash"] = EMPTY_SHA256

    openledger = config.get("openledger") or {}
    treasury = openledger.get("treasury")
    return Genesis(
        chain_id=chain_id,
        forks=schedule,
        header=header,
        alloc=alloc,
        treasury=to_canonical_address(treasury) if treasury else None,
        raw=doc,
        deposit_contract=deposit_contract,
    )


def _check_blob_schedule(schedule: Any, forks: dict[str, ForkActivation]) -> None:
    if schedule is None:
        return
    if not isinstance(schedule, dict):
        raise GenesisError("config.blobSchedule must be an object")
    for fork, params in schedule.items():
        if fork not in _BLOB_SCHEDULE:
            if fork in forks:
                raise GenesisError(f"config.blobSchedule.{fork}: not a blob fork")
            continue  # a later fork this chain does not schedule
        if not isinstance(params, dict):
            raise GenesisError(f"config.blobSchedule.{fork} must be an object")
        for key, fixed in _BLOB_SCHEDULE[fork].items():
            if key in params and _int(params[key], f"config.blobSchedule.{fork}.{key}") != fixed:
                raise GenesisError(f"config.blobSchedule.{fork}.{key}: only {fixed} is supported (the {fork} rules)")


def _at_least(fork: str, other: str) -> bool:
    return FORK_ORDER.index(fork) >= FORK_ORDER.index(other)


def fork_at(schedule: tuple[ForkActivation, ...], number: int, timestamp: int) -> str:
    """The fork whose rules apply to a block with this number and timestamp."""
    active = "frontier"
    for fork in schedule:
        if (fork.block is not None and fork.block <= number) or (
            fork.time is not None and fork.time <= timestamp
        ):
            active = fork.fork
    return active


def _genesis_fork(schedule: tuple[ForkActivation, ...], timestamp: int) -> str:
    return fork_at(schedule, 0, timestamp)


def load_genesis(path: Path | str) -> Genesis:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise GenesisError(f"genesis file not found: {path}") from None
    except OSError as exc:
        raise GenesisError(f"cannot read genesis file {path}: {exc.strerror}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GenesisError(f"genesis file {path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    return parse_genesis(doc)


def describe(genesis: Genesis) -> str:
    forks = ", ".join(
        f"{f.fork}@{'block ' + str(f.block) if f.block is not None else 'time ' + str(f.time)}"
        for f in genesis.forks
    )
    treasury = to_checksum_address(genesis.treasury) if genesis.treasury else "none"
    return f"chain id {genesis.chain_id}; forks {forks}; treasury {treasury}"
