"""The ``ol_`` namespace: Datanets, contributions, versions, models, inferences and their
attribution, as JSON a UI can show without ABI decoding.

Everything is read from the state at the given block (default "latest"), through the
same layout readers the precompiles use.  Quantities are hex strings as in ``eth_``;
a record that does not exist is ``null``.  An inference's spans are computed again from
its output (kept in the state database) and the model's frozen versions: attribution is
deterministic, so they are the spans that decided its rewards.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..attribution import attribute, split_fee
from ..precompiles import attribution as poa
from ..precompiles import registry
from ..precompiles.base import Storage, read_preimage
from .encoding import parse_address, parse_block_tag, parse_bool, parse_quantity, to_data, to_quantity
from .jsonrpc import Dispatcher, InvalidParams

if TYPE_CHECKING:
    from ..node import Node

MAX_PAGE = 1000
STATUS = registry.STATUS_NAMES


def _address(value: bytes) -> str:
    return to_data(value)


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", errors="replace")


class OpenLedgerAPI:
    def __init__(self, node: "Node") -> None:
        self.node = node
        self.reader = node.reader

    # -- plumbing --------------------------------------------------------------------
    def _state(self, block: Any):
        return self.node.state_at(self.reader.state_header(parse_block_tag(block)))

    @staticmethod
    def _page(from_id: Any, limit: Any) -> tuple[int, int]:
        start = parse_quantity(from_id, name="fromId") if from_id is not None else 1
        count = parse_quantity(limit, name="limit") if limit is not None else 100
        if not 1 <= count <= MAX_PAGE:
            raise InvalidParams(f"limit must be between 1 and {MAX_PAGE}")
        return max(start, 1), count

    @staticmethod
    def _datanet_json(storage: Storage, datanet: registry.Datanet) -> dict[str, Any]:
        name, description = registry.read_name(storage, datanet.id)
        return {
            "id": to_quantity(datanet.id), "owner": _address(datanet.owner), "name": name, "description": description,
            "minStake": to_quantity(datanet.min_stake), "contributionCount": to_quantity(datanet.contribution_count),
            "acceptedCount": to_quantity(datanet.accepted_count), "versionCount": to_quantity(datanet.version_count),
            "acceptedTokens": to_quantity(datanet.accepted_tokens), "createdAtBlock": to_quantity(datanet.created_at_block),
        }

    @staticmethod
    def _contribution_json(state, storage: Storage, datanet: registry.Datanet, contribution: registry.Contribution,
                           with_data: bool) -> dict[str, Any]:
        version = registry.first_version(storage, datanet, contribution)
        out = {
            "datanetId": to_quantity(contribution.datanet_id), "id": to_quantity(contribution.id),
            "contributor": _address(contribution.contributor), "dataHash": to_data(contribution.data_hash),
            "size": to_quantity(contribution.size), "tokens": to_quantity(contribution.tokens),
            "stake": to_quantity(contribution.stake), "status": STATUS[contribution.status],
            "version": to_quantity(version) if version else None,
            "submittedAtBlock": to_quantity(contribution.submitted_at_block),
        }
        if with_data:
            out["data"] = _text(read_preimage(state, contribution.data_hash))
        return out

    @staticmethod
    def _version_json(storage: Storage, version: registry.Version, with_ids: bool) -> dict[str, Any]:
        out = {
            "datanetId": to_quantity(version.datanet_id), "version": to_quantity(version.version),
            "contributionCount": to_quantity(version.contribution_count), "root": to_data(version.root),
            "tokens": to_quantity(version.tokens), "publishedAtBlock": to_quantity(version.published_at_block),
        }
        if with_ids:
            out["contributionIds"] = [to_quantity(c) for c in registry.version_contribution_ids(storage, version)]
        return out

    # -- Datanets ----------------------------------------------------------------------
    def listDatanets(self, from_id: Any = None, limit: Any = None, block: Any = "latest") -> list[dict[str, Any]]:
        """Datanets with ids from ``fromId`` (default 1), at most ``limit`` (default 100)."""
        start, count = self._page(from_id, limit)
        storage = Storage(self._state(block), registry.ADDRESS)
        last = min(registry.datanet_count(storage), start + count - 1)
        return [self._datanet_json(storage, registry.read_datanet(storage, d)) for d in range(start, last + 1)]

    def getDatanet(self, datanet_id: Any, block: Any = "latest") -> dict[str, Any] | None:
        """A Datanet with its published versions."""
        storage = Storage(self._state(block), registry.ADDRESS)
        datanet = registry.read_datanet(storage, parse_quantity(datanet_id, name="datanetId"))
        if datanet is None:
            return None
        out = self._datanet_json(storage, datanet)
        out["versions"] = [
            self._version_json(storage, registry.read_version(storage, datanet, v), False)
            for v in range(1, datanet.version_count + 1)
        ]
        return out

    def getContributions(self, datanet_id: Any, options: Any = None, block: Any = "latest") -> list[dict[str, Any]] | None:
        """A Datanet's contributions. ``options``: ``fromId``, ``limit``, ``status``
        ("pending", "accepted", "rejected") and ``includeData`` (the text, default false)."""
        options = options or {}
        if not isinstance(options, dict):
            raise InvalidParams("options must be an object")
        unknown = set(options) - {"fromId", "limit", "status", "includeData"}
        if unknown:
            raise InvalidParams(f"unknown options: {', '.join(sorted(unknown))}")
        start, count = self._page(options.get("fromId"), options.get("limit"))
        status = options.get("status")
        if status is not None and status not in STATUS.values():
            raise InvalidParams(f"status must be one of {', '.join(STATUS.values())}")
        with_data = parse_bool(options.get("includeData", False), name="includeData")
        state = self._state(block)
        storage = Storage(state, registry.ADDRESS)
        datanet = registry.read_datanet(storage, parse_quantity(datanet_id, name="datanetId"))
        if datanet is None:
            return None
        out = []
        for c in range(start, datanet.contribution_count + 1):
            contribution = registry.read_contribution(storage, datanet, c)
            if status is None or STATUS[contribution.status] == status:
                out.append(self._contribution_json(state, storage, datanet, contribution, with_data))
                if len(out) == count:
                    break
        return out

    def getContribution(self, datanet_id: Any, contribution_id: Any, block: Any = "latest") -> dict[str, Any] | None:
        """One contribution, with its text."""
        state = self._state(block)
        storage = Storage(state, registry.ADDRESS)
        datanet = registry.read_datanet(storage, parse_quantity(datanet_id, name="datanetId"))
        contribution = registry.read_contribution(storage, datanet, parse_quantity(contribution_id, name="contributionId")) \
            if datanet else None
        return None if contribution is None else self._contribution_json(state, storage, datanet, contribution, True)

    def getVersion(self, datanet_id: Any, version: Any, block: Any = "latest") -> dict[str, Any] | None:
        """A published version with its contribution ids (ascending)."""
        storage = Storage(self._state(block), registry.ADDRESS)
        datanet = registry.read_datanet(storage, parse_quantity(datanet_id, name="datanetId"))
        record = registry.read_version(storage, datanet, parse_quantity(version, name="version")) if datanet else None
        return None if record is None else self._version_json(storage, record, True)

    # -- models and inferences -----------------------------------------------------------
    def getModel(self, model_id: Any, block: Any = "latest") -> dict[str, Any] | None:
        storage = Storage(self._state(block), poa.ADDRESS)
        model = poa.read_model(storage, parse_quantity(model_id, name="modelId"))
        if model is None:
            return None
        return {
            "id": to_quantity(model.id), "owner": _address(model.owner), "name": poa.read_model_name(storage, model.id),
            "adapterHash": to_data(model.adapter_hash), "ownerShareBps": to_quantity(model.owner_share_bps),
            "datanets": [{"datanetId": to_quantity(d), "version": to_quantity(v), "root": to_data(root)}
                         for d, v, root in model.versions],
            "inferenceCount": to_quantity(model.inference_count),
            "registeredAtBlock": to_quantity(model.registered_at_block),
        }

    def getInference(self, inference_id: Any, block: Any = "latest") -> dict[str, Any] | None:
        """An inference: its fee split, the credited contributions and the spans of its
        output (token and byte offsets into the output) with the contributions holding each."""
        state = self._state(block)
        storage = Storage(state, poa.ADDRESS)
        inference = poa.read_inference(storage, parse_quantity(inference_id, name="inferenceId"))
        if inference is None:
            return None
        model = poa.read_model(storage, inference.model_id)
        output = read_preimage(state, inference.output_hash)
        out: dict[str, Any] = {
            "id": to_quantity(inference.id), "modelId": to_quantity(inference.model_id),
            "caller": _address(inference.caller), "fee": to_quantity(inference.fee),
            "ownerPart": to_quantity(inference.owner_part), "contributorsPart": to_quantity(inference.contributors_part),
            "treasuryPart": to_quantity(inference.treasury_part), "blockNumber": to_quantity(inference.block_number),
            "outputHash": to_data(inference.output_hash), "output": _text(output),
        }
        if output is None:  # a pruned or partial database: say so rather than guess
            out.update(credits=None, spans=None, outputTokens=None)
            return out
        indexes = self.node.blockchain.openledger.indexes
        result = attribute([indexes.get(state, d, v, root) for d, v, root in model.versions], output)
        registry_storage = Storage(state, registry.ADDRESS)
        contributors = {
            (c.datanet_id, c.contribution_id): registry.read_contributor(registry_storage, c.datanet_id, c.contribution_id)
            for c in result.credits
        }
        owner_part, amounts, treasury_part = split_fee(
            inference.fee, model.owner_share_bps, [((c.datanet_id, c.contribution_id), c.score) for c in result.credits]
        )
        paid = dict(amounts)
        out["outputTokens"] = to_quantity(result.output_tokens)
        out["credits"] = [
            {"datanetId": to_quantity(c.datanet_id), "contributionId": to_quantity(c.contribution_id),
             "contributor": _address(contributors[(c.datanet_id, c.contribution_id)]), "score": to_quantity(c.score),
             "amount": to_quantity(paid.get((c.datanet_id, c.contribution_id), 0))}
            for c in result.credits if c.score > 0
        ]
        out["spans"] = [
            {"datanetId": to_quantity(s.datanet_id), "version": to_quantity(s.version), "start": s.start, "end": s.end,
             "byteStart": s.byte_start, "byteEnd": s.byte_end, "text": _text(output[s.byte_start:s.byte_end]),
             "occurrences": s.occurrences, "contributionIds": [to_quantity(c) for c in s.contribution_ids],
             "score": to_quantity(s.score)}
            for s in result.spans
        ]
        return out

    def claimable(self, account: Any, block: Any = "latest") -> str:
        storage = Storage(self._state(block), poa.ADDRESS)
        return to_quantity(storage.get(poa.claimable_slot(parse_address(account, name="account"))))


def register(dispatcher: Dispatcher, node: "Node") -> None:
    """Only on OpenLedger chains (genesis with an ``openledger`` section)."""
    if node.blockchain.openledger is not None:
        dispatcher.register_namespace(OpenLedgerAPI(node), "ol")
