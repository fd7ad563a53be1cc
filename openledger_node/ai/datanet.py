"""Training data from published Datanet versions, read from a node over JSON-RPC
(``ol_getVersion``, then ``ol_getContribution`` for each of its contributions), and the
deterministic split into a training set and a held-out set."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from eth_hash.auto import keccak

from ..wallet_cli import Rpc, WalletError


class DatasetError(WalletError):
    """A Datanet version that cannot be trained on (unknown, unpublished, too small, altered data)."""


@dataclass(frozen=True)
class Contribution:
    datanet_id: int
    contribution_id: int
    text: str
    contributor: str | None = None  # 0x address, as the node reported it


@dataclass(frozen=True)
class VersionData:
    datanet_id: int
    version: int
    root: str  # 0x hex, the version's root as the registry committed it
    tokens: int  # attribution tokens, as the registry counts them
    contributions: tuple[Contribution, ...]


def parse_datanet_version(text: str) -> tuple[int, int]:
    """``"3:1"`` → (3, 1)."""
    match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", text)
    if match is None or int(match[2]) == 0:
        raise DatasetError(f"--datanet {text!r}: expected ID:VERSION of a published version, e.g. 1:2")
    return int(match[1]), int(match[2])


def fetch_version(rpc: Rpc, datanet_id: int, version: int) -> VersionData:
    """A published version with the text of each contribution in it, each checked against
    its data hash (a node cannot hand over other text than the chain committed to)."""
    record = rpc("ol_getVersion", hex(datanet_id), hex(version))
    if record is None:
        raise DatasetError(f"Datanet {datanet_id} has no published version {version} on {rpc.url}")
    contributions = []
    for quantity in record["contributionIds"]:
        contribution_id = int(quantity, 16)
        found = rpc("ol_getContribution", hex(datanet_id), quantity)
        if found is None or found.get("data") is None:
            raise DatasetError(f"{rpc.url} has no data for contribution {contribution_id} of Datanet {datanet_id}")
        data = found["data"].encode("utf-8")
        if "0x" + keccak(data).hex() != found["dataHash"].lower():
            raise DatasetError(f"contribution {contribution_id} of Datanet {datanet_id}: the text {rpc.url} sent "
                               f"does not match its data hash {found['dataHash']}")
        contributions.append(Contribution(datanet_id, contribution_id, found["data"], found.get("contributor")))
    return VersionData(datanet_id, version, record["root"], int(record["tokens"], 16), tuple(contributions))


def split(contributions: Iterable[Contribution], eval_fraction: float, seed: int) -> tuple[list[Contribution], list[Contribution]]:
    """(training, held-out): whole contributions, so that evaluation is on text the adapter
    never saw. Each contribution's place is keccak256(seed ‖ datanetId ‖ contributionId), as
    three uint256: the split depends on the seed and the set, not on the order read. The
    first round(fraction · n) contributions in that order are held out (at least one when the
    fraction is positive, never all of them)."""
    if not 0.0 <= eval_fraction < 1.0:
        raise DatasetError(f"--eval-fraction {eval_fraction} must be at least 0 and below 1")
    ranked = sorted(contributions, key=lambda c: keccak(
        seed.to_bytes(32, "big") + c.datanet_id.to_bytes(32, "big") + c.contribution_id.to_bytes(32, "big")))
    if not ranked:
        raise DatasetError("the Datanet versions hold no contributions")
    if eval_fraction == 0.0:
        held = 0
    else:
        if len(ranked) < 2:
            raise DatasetError("one contribution cannot be split into training and held-out text: "
                               "publish more, or pass --eval-fraction 0")
        held = min(max(1, round(eval_fraction * len(ranked))), len(ranked) - 1)
    train, held_out = ranked[held:], ranked[:held]
    key = lambda c: (c.datanet_id, c.contribution_id)  # noqa: E731
    return sorted(train, key=key), sorted(held_out, key=key)
