"""ProofOfAttribution, the precompile at 0x…0A02 (contracts/precompiles/IProofOfAttribution.sol).

State, in the storage of 0x…0A02 (ids start at 1):
- ``slot("ol.modelCount")``, ``slot("ol.inferenceCount")``.
- Model m at ``M = slot("ol.model", m)``: M+0 owner (160) | ownerShareBps (16) |
  datanet count (8) | registeredAtBlock (64); M+1 adapterHash; M+2 inferenceCount.
  Name: byte string at ``slot("ol.model.name", m)``.  Its i-th Datanet version at
  ``E = slot("ol.model.datanet", m, i)``: E+0 datanetId (64) | version (64); E+1 the
  version's root (copied at registration: a version never changes).
- Inference i at ``I = slot("ol.inference", i)``: I+0 caller (160) | modelId (64);
  I+1 fee; I+2 outputHash; I+3 ownerPart; I+4 treasuryPart; I+5 block number.  The
  contributors' part is fee - ownerPart - treasuryPart.  The output is kept as a
  preimage (keccak → bytes) in the state database, so its spans can be shown again.
- ``slot("ol.claimable", account)``: wei the account may claim.

Every fee is held in 0x…0A02's balance until claimed: the sum of ``claimable`` over all
accounts equals that balance.
"""
from __future__ import annotations

from dataclasses import dataclass

from eth_utils import keccak

from ..attribution import MAX_OUTPUT_BYTES, attribute, split_fee, tokenize
from . import abi, layout, registry
from .base import Call, MeteredStorage, Precompile, PrecompileRevert, Storage
from .layout import at, pack, slot, unpack

ADDRESS = (0x0A02).to_bytes(20, "big")

MAX_NAME_BYTES = 64
MAX_MODEL_DATANETS = 16
BPS = 10_000

# Attribution work (calibrated by scripts/calibrate_attribution_gas.py, so that a block
# full of attribute calls takes no longer to execute than a block full of ERC-20
# transfers): tokenizing the output, then searching each of the model's versions.
TOKENIZE_GAS_PER_BYTE = 2
SEARCH_GAS_PER_VERSION = 4_000
SEARCH_GAS_PER_TOKEN = 60  # per output token, per version searched

MODEL_COUNT = slot(b"ol.modelCount")
INFERENCE_COUNT = slot(b"ol.inferenceCount")


def model_base(m: int) -> int:
    return slot(b"ol.model", m)


def inference_base(i: int) -> int:
    return slot(b"ol.inference", i)


def claimable_slot(account: bytes) -> int:
    return slot(b"ol.claimable", account)


@dataclass(frozen=True)
class Model:
    id: int
    owner: bytes
    owner_share_bps: int
    registered_at_block: int
    adapter_hash: bytes
    inference_count: int
    versions: tuple[tuple[int, int, bytes], ...]  # (datanet id, version, root)


@dataclass(frozen=True)
class Inference:
    id: int
    model_id: int
    caller: bytes
    fee: int
    output_hash: bytes
    owner_part: int
    treasury_part: int
    block_number: int

    @property
    def contributors_part(self) -> int:
        return self.fee - self.owner_part - self.treasury_part


def model_count(storage: Storage) -> int:
    return storage.get(MODEL_COUNT)


def inference_count(storage: Storage) -> int:
    return storage.get(INFERENCE_COUNT)


def read_model(storage: Storage, m: int) -> Model | None:
    if not 1 <= m <= model_count(storage):
        return None
    base = model_base(m)
    owner, bps, count, block = unpack(storage.get(base), 160, 16, 8, 64)
    versions = []
    for i in range(count):
        entry = slot(b"ol.model.datanet", m, i)
        d, v = unpack(storage.get(entry), 64, 64)
        versions.append((d, v, storage.get(at(entry, 1)).to_bytes(32, "big")))
    return Model(
        m, owner.to_bytes(20, "big"), bps, block, storage.get(at(base, 1)).to_bytes(32, "big"),
        storage.get(at(base, 2)), tuple(versions),
    )


def read_model_name(storage: Storage, m: int) -> str:
    return layout.read_bytes(storage, slot(b"ol.model.name", m)).decode()


def read_inference(storage: Storage, i: int) -> Inference | None:
    if not 1 <= i <= inference_count(storage):
        return None
    base = inference_base(i)
    caller, model_id = unpack(storage.get(base), 160, 64)
    return Inference(
        i, model_id, caller.to_bytes(20, "big"), storage.get(at(base, 1)), storage.get(at(base, 2)).to_bytes(32, "big"),
        storage.get(at(base, 3)), storage.get(at(base, 4)), storage.get(at(base, 5)),
    )


def check_output(output: bytes) -> None:
    """Raises PrecompileRevert("InvalidOutput") for an output attribution refuses."""
    if not output:
        raise PrecompileRevert("InvalidOutput", "empty: the output has no bytes")
    if len(output) > MAX_OUTPUT_BYTES:
        raise PrecompileRevert("InvalidOutput", f"too_large: {len(output)} bytes, at most {MAX_OUTPUT_BYTES}")
    try:
        output.decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise PrecompileRevert("InvalidOutput", f"not_utf8: invalid UTF-8 at byte {exc.start}")


def attribute_output(call: Call, model: Model, output: bytes):
    """Charge for and run attribution v1 of ``output`` over the model's versions."""
    check_output(output)
    call.charge(TOKENIZE_GAS_PER_BYTE * len(output), "attribution tokenize")
    tokens = len(tokenize(output).ids)
    versions = len(model.versions)
    call.charge(versions * (SEARCH_GAS_PER_VERSION + SEARCH_GAS_PER_TOKEN * tokens), "attribution search")
    indexes = [call.context.indexes.get(call.state, d, v, root) for d, v, root in model.versions]
    return attribute(indexes, output)


class ProofOfAttribution(Precompile):
    address = ADDRESS
    interface = abi.load("IProofOfAttribution")

    @staticmethod
    def _model(call: Call, m: int) -> Model:
        model = read_model(call.storage, m)
        if model is None:
            raise PrecompileRevert("UnknownModel", m)
        return model

    @staticmethod
    def _credit(call: Call, account: bytes, amount: int) -> None:
        if amount:
            key = claimable_slot(account)
            call.storage.set(key, call.storage.get(key) + amount)

    def _credits(self, call: Call, result) -> list[tuple[int, int, bytes, int]]:
        """(datanet id, contribution id, contributor, score) of each credit, in order.  A
        credit names a contribution of a published version: only its contributor is read."""
        registry_storage = MeteredStorage(call.computation, registry.ADDRESS)
        return [
            (credit.datanet_id, credit.contribution_id,
             registry.read_contributor(registry_storage, credit.datanet_id, credit.contribution_id), credit.score)
            for credit in result.credits
        ]

    # -- writes ------------------------------------------------------------------------
    def registerModel(self, call: Call, name: str, datanet_ids, versions, adapter_hash: bytes, owner_share_bps: int):
        raw_name = name.encode()
        if not 1 <= len(raw_name) <= MAX_NAME_BYTES:
            raise PrecompileRevert("InvalidArgument", f"name must be 1 to {MAX_NAME_BYTES} bytes, not {len(raw_name)}")
        if len(datanet_ids) != len(versions):
            raise PrecompileRevert(
                "InvalidArgument", f"{len(datanet_ids)} datanetIds but {len(versions)} versions: one version per Datanet"
            )
        if not 1 <= len(datanet_ids) <= MAX_MODEL_DATANETS:
            raise PrecompileRevert("InvalidArgument", f"a model declares 1 to {MAX_MODEL_DATANETS} Datanets, not {len(datanet_ids)}")
        if len(set(datanet_ids)) != len(datanet_ids):
            raise PrecompileRevert("InvalidArgument", "a Datanet is listed twice: declare one version of each")
        if owner_share_bps > BPS:
            raise PrecompileRevert("InvalidArgument", f"ownerShareBps must be at most {BPS}, not {owner_share_bps}")
        registry_storage = MeteredStorage(call.computation, registry.ADDRESS)
        entries = []
        for d, v in sorted(zip(datanet_ids, versions)):
            datanet = registry.read_datanet(registry_storage, d)
            version = registry.read_version(registry_storage, datanet, v) if datanet else None
            if version is None:
                raise PrecompileRevert("UnknownVersion", d, v)
            entries.append((d, v, version.root))
        m = model_count(call.storage) + 1
        call.storage.set(MODEL_COUNT, m)
        base = model_base(m)
        call.storage.set(
            base, pack((int.from_bytes(call.sender, "big"), 160), (owner_share_bps, 16), (len(entries), 8), (call.block_number, 64))
        )
        if adapter_hash != b"\0" * 32:
            call.storage.set(at(base, 1), int.from_bytes(adapter_hash, "big"))
        layout.write_bytes(call.storage, slot(b"ol.model.name", m), raw_name)
        for i, (d, v, root) in enumerate(entries):
            entry = slot(b"ol.model.datanet", m, i)
            call.storage.set(entry, pack((d, 64), (v, 64)))
            call.storage.set(at(entry, 1), int.from_bytes(root, "big"))
        call.emit(
            "ModelRegistered", modelId=m, owner=call.sender, name=name, adapterHash=adapter_hash,
            ownerShareBps=owner_share_bps,
        )
        return (m,)

    def attribute(self, call: Call, m: int, output: bytes):
        model = self._model(call, m)
        result = attribute_output(call, model, output)
        credits = self._credits(call, result)
        fee = call.value
        owner_part, amounts, treasury_part = split_fee(
            fee, model.owner_share_bps, [((d, c, who), score) for d, c, who, score in credits]
        )
        i = inference_count(call.storage) + 1
        call.storage.set(INFERENCE_COUNT, i)
        output_hash = keccak(output)
        base = inference_base(i)
        call.storage.set(base, pack((int.from_bytes(call.sender, "big"), 160), (m, 64)))
        for offset, value in ((1, fee), (2, int.from_bytes(output_hash, "big")), (3, owner_part), (4, treasury_part),
                              (5, call.block_number)):
            if value:
                call.storage.set(at(base, offset), value)
        call.storage.set(at(model_base(m), 2), model.inference_count + 1)
        call.store_preimage(output_hash, output)
        self._credit(call, model.owner, owner_part)
        self._credit(call, call.context.treasury, treasury_part)
        contributors_part = fee - owner_part - treasury_part
        call.emit(
            "InferenceAttributed", inferenceId=i, modelId=m, caller=call.sender, fee=fee, outputHash=output_hash,
            ownerPart=owner_part, contributorsPart=contributors_part, treasuryPart=treasury_part,
        )
        scores = {(d, c): score for d, c, _, score in credits}
        for (d, c, who), amount in amounts:
            self._credit(call, who, amount)
            call.emit(
                "RewardCredited", inferenceId=i, contributor=who, datanetId=d, contributionId=c,
                score=scores[(d, c)], amount=amount,
            )
        return (i,)

    def claim(self, call: Call):
        key = claimable_slot(call.sender)
        amount = call.storage.get(key)
        if amount == 0:
            raise PrecompileRevert("NothingToClaim", call.sender)
        call.storage.set(key, 0)
        call.pay(call.sender, amount)
        call.emit("Claimed", account=call.sender, amount=amount)
        return (amount,)

    # -- views -------------------------------------------------------------------------
    def previewAttribution(self, call: Call, m: int, output: bytes):
        model = self._model(call, m)
        credits = self._credits(call, attribute_output(call, model, output))
        return (
            [d for d, _, _, _ in credits], [c for _, c, _, _ in credits],
            [who for _, _, who, _ in credits], [score for _, _, _, score in credits],
        )

    def claimable(self, call: Call, account: str):
        return (call.storage.get(claimable_slot(bytes.fromhex(account[2:]))),)

    def modelCount(self, call: Call):
        return (model_count(call.storage),)

    def getModel(self, call: Call, m: int):
        model = self._model(call, m)
        return (
            model.owner, read_model_name(call.storage, m), model.adapter_hash, model.owner_share_bps,
            [d for d, _, _ in model.versions], [v for _, v, _ in model.versions], model.inference_count,
            model.registered_at_block,
        )

    def inferenceCount(self, call: Call):
        return (inference_count(call.storage),)

    def getInference(self, call: Call, i: int):
        inference = read_inference(call.storage, i)
        if inference is None:
            raise PrecompileRevert("UnknownInference", i)
        return (
            inference.model_id, inference.caller, inference.fee, inference.output_hash, inference.owner_part,
            inference.contributors_part, inference.treasury_part, inference.block_number,
        )
