"""DatanetRegistry, the precompile at 0x…0A01 (contracts/precompiles/IDatanetRegistry.sol).

State, in the storage of 0x…0A01 (ids start at 1; 0 means none):
- ``slot("ol.datanetCount")``: the number of Datanets.
- Datanet d at ``B = slot("ol.datanet", d)``: B+0 owner (160 bits) | createdAtBlock (64);
  B+1 minStake; B+2 contributionCount (64) | acceptedCount (64) | versionCount (64);
  B+3 tokens of the accepted contributions; B+4 the root accumulated over the accepted
  contributions (below).  Name and description: byte strings at
  ``slot("ol.datanet.name", d)`` and ``slot("ol.datanet.description", d)``.  The
  accepted contribution ids, in the order they were accepted, at
  ``slot("ol.datanet.accepted", d) + i``.
- Contribution (d, c) at ``C = slot("ol.contribution", d, c)``: C+0 contributor (160) |
  status (8) | position (64: 1 + its place in the accepted list, 0 if not accepted; the
  first version holding it is the first whose count exceeds that place); C+1 dataHash;
  C+2 size (64) | tokens (64) |
  submittedAtBlock (64); C+3 stake.  ``slot("ol.contribution.byHash", d, dataHash)``:
  the id of the pending or accepted contribution with that data (cleared on rejection).
- Version (d, v) at ``V = slot("ol.version", d, v)``: V+0 contributionCount (64) |
  tokens (64) | publishedAtBlock (64); V+1 root.  Version v holds the first
  contributionCount accepted ids.  Its root is the accumulator after them: starting
  from 32 zero bytes, each accepted contribution, in the order accepted, makes it
  keccak(root ‖ id (32 bytes) ‖ dataHash).  So a version's root commits to every
  contribution in it and to every earlier version; publishing costs no work per
  contribution beyond refunding its stake.

The contribution data itself is kept as a preimage (keccak → data) in the state
database, like contract code, so that any node can rebuild a version's index.
"""
from __future__ import annotations

from dataclasses import dataclass

from eth_utils import keccak

from ..attribution import InvalidContribution, token_ids, validate_contribution
from . import abi, layout
from .base import Call, Precompile, PrecompileRevert, Storage, read_preimage
from .layout import at, pack, slot, unpack

ADDRESS = (0x0A01).to_bytes(20, "big")

MAX_NAME_BYTES = 64
MAX_DESCRIPTION_BYTES = 1024
MAX_ID = (1 << 64) - 1

PENDING, ACCEPTED, REJECTED = 0, 1, 2
STATUS_NAMES = {PENDING: "pending", ACCEPTED: "accepted", REJECTED: "rejected"}

# Index building is paid for at publish: per token of the whole version (the suffix
# array is rebuilt over all of it).  Calibrated by scripts/calibrate_attribution_gas.py.
INDEX_GAS_PER_TOKEN = 24

DATANET_COUNT = slot(b"ol.datanetCount")


def datanet_base(d: int) -> int:
    return slot(b"ol.datanet", d)


def contribution_base(d: int, c: int) -> int:
    return slot(b"ol.contribution", d, c)


def version_base(d: int, v: int) -> int:
    return slot(b"ol.version", d, v)


def accepted_slot(d: int, i: int) -> int:
    return at(slot(b"ol.datanet.accepted", d), i)


def by_hash_slot(d: int, data_hash: bytes) -> int:
    return slot(b"ol.contribution.byHash", d, data_hash)


@dataclass(frozen=True)
class Datanet:
    id: int
    owner: bytes
    created_at_block: int
    min_stake: int
    contribution_count: int
    accepted_count: int
    version_count: int
    accepted_tokens: int


@dataclass(frozen=True)
class Contribution:
    datanet_id: int
    id: int
    contributor: bytes
    status: int
    position: int  # 1 + its place in the accepted list; 0: not accepted
    data_hash: bytes
    size: int
    tokens: int
    submitted_at_block: int
    stake: int


@dataclass(frozen=True)
class Version:
    datanet_id: int
    version: int
    contribution_count: int
    tokens: int
    published_at_block: int
    root: bytes


# -- readers (metered inside a call, free over RPC) -------------------------------
def datanet_count(storage: Storage) -> int:
    return storage.get(DATANET_COUNT)


def read_datanet(storage: Storage, d: int) -> Datanet | None:
    if not 1 <= d <= MAX_ID or d > datanet_count(storage):
        return None
    base = datanet_base(d)
    owner, created = unpack(storage.get(base), 160, 64)
    counts = unpack(storage.get(at(base, 2)), 64, 64, 64)
    return Datanet(d, owner.to_bytes(20, "big"), created, storage.get(at(base, 1)), *counts, storage.get(at(base, 3)))


def read_name(storage: Storage, d: int) -> tuple[str, str]:
    name = layout.read_bytes(storage, slot(b"ol.datanet.name", d)).decode()
    description = layout.read_bytes(storage, slot(b"ol.datanet.description", d)).decode()
    return name, description


def read_contribution(storage: Storage, datanet: Datanet, c: int) -> Contribution | None:
    if not 1 <= c <= datanet.contribution_count:
        return None
    base = contribution_base(datanet.id, c)
    contributor, status, position = unpack(storage.get(base), 160, 8, 64)
    size, tokens, block = unpack(storage.get(at(base, 2)), 64, 64, 64)
    return Contribution(
        datanet.id, c, contributor.to_bytes(20, "big"), status, position,
        storage.get(at(base, 1)).to_bytes(32, "big"), size, tokens, block, storage.get(at(base, 3)),
    )


def read_contributor(storage: Storage, d: int, c: int) -> bytes:
    """The contributor of an existing contribution (one storage read)."""
    return layout.word_address(storage.get(contribution_base(d, c)))


def read_version(storage: Storage, datanet: Datanet, v: int) -> Version | None:
    if not 1 <= v <= datanet.version_count:
        return None
    base = version_base(datanet.id, v)
    count, tokens, block = unpack(storage.get(base), 64, 64, 64)
    return Version(datanet.id, v, count, tokens, block, storage.get(at(base, 1)).to_bytes(32, "big"))


def first_version(storage: Storage, datanet: Datanet, contribution: Contribution) -> int:
    """The first published version that holds ``contribution`` (0: none yet): a binary
    search over the versions' counts."""
    if contribution.position == 0:
        return 0
    lo, hi = 1, datanet.version_count  # the answer, if any, is in [lo, hi]
    if hi == 0 or read_version(storage, datanet, hi).contribution_count < contribution.position:
        return 0
    while lo < hi:
        mid = (lo + hi) // 2
        if read_version(storage, datanet, mid).contribution_count >= contribution.position:
            hi = mid
        else:
            lo = mid + 1
    return lo


def version_contribution_ids(storage: Storage, version: Version) -> list[int]:
    """The version's contribution ids, ascending."""
    return sorted(storage.get(accepted_slot(version.datanet_id, i)) for i in range(version.contribution_count))


def version_contents(state, datanet_id: int, version: int, *, data: bool = True) -> list[tuple[int, bytes]]:
    """(contribution id, data) of a published version, in id order, read from ``state``
    without gas (index building; ``data=False``: ids only, with empty data).  Raises
    LookupError if the version or a preimage is missing: a published version always has them."""
    storage = Storage(state, ADDRESS)
    datanet = read_datanet(storage, datanet_id)
    record = read_version(storage, datanet, version) if datanet else None
    if record is None:
        raise LookupError(f"datanet {datanet_id} has no version {version}")
    ids = version_contribution_ids(storage, record)
    if not data:
        return [(c, b"") for c in ids]
    out = []
    for c in ids:
        data_hash = storage.get(at(contribution_base(datanet_id, c), 1)).to_bytes(32, "big")
        preimage = read_preimage(state, data_hash)
        if preimage is None or keccak(preimage) != data_hash:
            raise LookupError(f"contribution {datanet_id}/{c}: data {data_hash.hex()} missing from the state database")
        out.append((c, preimage))
    return out


def accumulate_root(root: bytes, contribution_id: int, data_hash: bytes) -> bytes:
    """The root after accepting one more contribution."""
    return keccak(root + contribution_id.to_bytes(32, "big") + data_hash)


class DatanetRegistry(Precompile):
    address = ADDRESS
    interface = abi.load("IDatanetRegistry")

    # -- helpers ---------------------------------------------------------------------
    @staticmethod
    def _datanet(call: Call, d: int) -> Datanet:
        datanet = read_datanet(call.storage, d)
        if datanet is None:
            raise PrecompileRevert("UnknownDatanet", d)
        return datanet

    @staticmethod
    def _owner_only(call: Call, datanet: Datanet) -> None:
        if call.sender != datanet.owner:
            raise PrecompileRevert("NotDatanetOwner", datanet.id, call.sender)

    @staticmethod
    def _set_counts(call: Call, datanet: Datanet, contributions: int, accepted: int, versions: int) -> None:
        call.storage.set(at(datanet_base(datanet.id), 2), pack((contributions, 64), (accepted, 64), (versions, 64)))

    # -- writes ------------------------------------------------------------------------
    def createDatanet(self, call: Call, name: str, description: str, min_stake: int):
        raw_name, raw_description = name.encode(), description.encode()
        if not 1 <= len(raw_name) <= MAX_NAME_BYTES:
            raise PrecompileRevert("InvalidArgument", f"name must be 1 to {MAX_NAME_BYTES} bytes, not {len(raw_name)}")
        if len(raw_description) > MAX_DESCRIPTION_BYTES:
            raise PrecompileRevert(
                "InvalidArgument", f"description must be at most {MAX_DESCRIPTION_BYTES} bytes, not {len(raw_description)}"
            )
        d = datanet_count(call.storage) + 1
        call.storage.set(DATANET_COUNT, d)
        base = datanet_base(d)
        call.storage.set(base, pack((int.from_bytes(call.sender, "big"), 160), (call.block_number, 64)))
        if min_stake:
            call.storage.set(at(base, 1), min_stake)
        layout.write_bytes(call.storage, slot(b"ol.datanet.name", d), raw_name)
        if raw_description:
            layout.write_bytes(call.storage, slot(b"ol.datanet.description", d), raw_description)
        call.emit("DatanetCreated", datanetId=d, owner=call.sender, name=name, minStake=min_stake)
        return (d,)

    def contribute(self, call: Call, d: int, data: bytes):
        datanet = self._datanet(call, d)
        if call.value < datanet.min_stake:
            raise PrecompileRevert("StakeTooLow", call.value, datanet.min_stake)
        try:
            validate_contribution(data)
        except InvalidContribution as exc:
            raise PrecompileRevert("InvalidContribution", f"{exc.reason}: {exc}")
        data_hash = keccak(data)
        existing = call.storage.get(by_hash_slot(d, data_hash))
        if existing:
            raise PrecompileRevert("DuplicateContribution", d, existing)
        if datanet.contribution_count >= MAX_ID:
            raise PrecompileRevert("InvalidArgument", "datanet is full")
        c = datanet.contribution_count + 1
        tokens = len(token_ids(data))
        base = contribution_base(d, c)
        call.storage.set(base, pack((int.from_bytes(call.sender, "big"), 160), (PENDING, 8), (0, 64)))
        call.storage.set(at(base, 1), int.from_bytes(data_hash, "big"))
        call.storage.set(at(base, 2), pack((len(data), 64), (tokens, 64), (call.block_number, 64)))
        if call.value:
            call.storage.set(at(base, 3), call.value)
        call.storage.set(by_hash_slot(d, data_hash), c)
        self._set_counts(call, datanet, c, datanet.accepted_count, datanet.version_count)
        call.store_preimage(data_hash, data)
        call.emit(
            "ContributionSubmitted", datanetId=d, contributionId=c, contributor=call.sender,
            dataHash=data_hash, size=len(data), stake=call.value,
        )
        return (c,)

    def review(self, call: Call, d: int, c: int, accept: bool):
        datanet = self._datanet(call, d)
        contribution = read_contribution(call.storage, datanet, c)
        if contribution is None:
            raise PrecompileRevert("UnknownContribution", d, c)
        self._owner_only(call, datanet)
        if contribution.status != PENDING:
            raise PrecompileRevert("AlreadyReviewed", d, c, contribution.status)
        base = contribution_base(d, c)
        status = ACCEPTED if accept else REJECTED
        position = datanet.accepted_count + 1 if accept else 0
        call.storage.set(base, pack((int.from_bytes(contribution.contributor, "big"), 160), (status, 8), (position, 64)))
        if accept:
            call.storage.set(accepted_slot(d, datanet.accepted_count), c)
            self._set_counts(call, datanet, datanet.contribution_count, datanet.accepted_count + 1, datanet.version_count)
            call.storage.set(at(datanet_base(d), 3), datanet.accepted_tokens + contribution.tokens)
            root_slot = at(datanet_base(d), 4)
            root = call.storage.get(root_slot).to_bytes(32, "big")
            call.storage.set(root_slot, int.from_bytes(accumulate_root(root, c, contribution.data_hash), "big"))
            slashed = 0
        else:
            call.storage.set(by_hash_slot(d, contribution.data_hash), 0)  # the same data may come again
            slashed = contribution.stake
            call.pay(datanet.owner, slashed)
        call.emit("ContributionReviewed", datanetId=d, contributionId=c, accepted=accept, slashed=slashed)
        return ()

    def publishVersion(self, call: Call, d: int):
        datanet = self._datanet(call, d)
        self._owner_only(call, datanet)
        previous = read_version(call.storage, datanet, datanet.version_count)
        first_new = previous.contribution_count if previous else 0
        if datanet.accepted_count == first_new:
            raise PrecompileRevert("NothingToPublish", d)
        # Building this version's index is this transaction's work: pay for it first.
        call.charge(INDEX_GAS_PER_TOKEN * datanet.accepted_tokens, "attribution index build")
        v = datanet.version_count + 1
        root = call.storage.get(at(datanet_base(d), 4)).to_bytes(32, "big")
        base = version_base(d, v)
        call.storage.set(base, pack((datanet.accepted_count, 64), (datanet.accepted_tokens, 64), (call.block_number, 64)))
        call.storage.set(at(base, 1), int.from_bytes(root, "big"))
        self._set_counts(call, datanet, datanet.contribution_count, datanet.accepted_count, v)
        for c in sorted(call.storage.get(accepted_slot(d, i)) for i in range(first_new, datanet.accepted_count)):
            base = contribution_base(d, c)
            stake = call.storage.get(at(base, 3))
            if stake:
                contributor = layout.word_address(call.storage.get(base))
                call.pay(contributor, stake)
                call.emit("StakeRefunded", datanetId=d, contributionId=c, contributor=contributor, amount=stake)
        call.emit(
            "VersionPublished", datanetId=d, version=v, contributionCount=datanet.accepted_count,
            root=root, tokens=datanet.accepted_tokens,
        )
        # Build (or find) the index now, so that the first inference does not wait for it.
        call.context.indexes.get(call.state, d, v, root)
        return (v,)

    # -- views -------------------------------------------------------------------------
    def datanetCount(self, call: Call):
        return (datanet_count(call.storage),)

    def getDatanet(self, call: Call, d: int):
        datanet = self._datanet(call, d)
        name, description = read_name(call.storage, d)
        return (
            datanet.owner, name, description, datanet.min_stake, datanet.contribution_count,
            datanet.accepted_count, datanet.version_count, datanet.created_at_block,
        )

    def getContribution(self, call: Call, d: int, c: int):
        datanet = self._datanet(call, d)
        contribution = read_contribution(call.storage, datanet, c)
        if contribution is None:
            raise PrecompileRevert("UnknownContribution", d, c)
        return (
            contribution.contributor, contribution.data_hash, contribution.size, contribution.tokens,
            contribution.stake, contribution.status, first_version(call.storage, datanet, contribution),
            contribution.submitted_at_block,
        )

    def _version(self, call: Call, d: int, v: int) -> Version:
        datanet = self._datanet(call, d)
        version = read_version(call.storage, datanet, v)
        if version is None:
            raise PrecompileRevert("UnknownVersion", d, v)
        return version

    def getVersion(self, call: Call, d: int, v: int):
        version = self._version(call, d, v)
        return (version.contribution_count, version.root, version.tokens, version.published_at_block)

    def getVersionContributions(self, call: Call, d: int, v: int):
        return (version_contribution_ids(call.storage, self._version(call, d, v)),)
