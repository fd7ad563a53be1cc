"""The node's fork VMs.

Every fork the node can run is py-evm's VM for that fork, configured under an
OpenLedger name so that the node's own additions (the attribution precompiles)
have one place to live, plus a few speed-ups that give identical blocks.  Nothing
here changes Ethereum's rules.
"""
from __future__ import annotations

from eth.vm.forks import (
    ArrowGlacierVM,
    BerlinVM,
    ByzantiumVM,
    CancunVM,
    ConstantinopleVM,
    FrontierVM,
    GrayGlacierVM,
    HomesteadVM,
    IstanbulVM,
    LondonVM,
    MuirGlacierVM,
    ParisVM,
    PetersburgVM,
    PragueVM,
    ShanghaiVM,
    SpuriousDragonVM,
    TangerineWhistleVM,
)
from eth.vm.forks.prague.constants import (
    DEPOSIT_CONTRACT_ADDRESS,
    DEPOSIT_EVENT_SIGNATURE_HASH,
    DEPOSIT_REQUEST_TYPE,
)

from .. import blobs
from . import trie

trie.use_in_py_evm()  # same roots, built faster
blobs.use_in_py_evm()  # the KZG setup loaded once, not per 0x0a call

# (fork name, py-evm VM) in activation order.  Geth genesis keys map onto these.
FORKS = (
    ("frontier", FrontierVM),
    ("homestead", HomesteadVM),
    ("tangerineWhistle", TangerineWhistleVM),
    ("spuriousDragon", SpuriousDragonVM),
    ("byzantium", ByzantiumVM),
    ("constantinople", ConstantinopleVM),
    ("petersburg", PetersburgVM),
    ("istanbul", IstanbulVM),
    ("muirGlacier", MuirGlacierVM),
    ("berlin", BerlinVM),
    ("london", LondonVM),
    ("arrowGlacier", ArrowGlacierVM),
    ("grayGlacier", GrayGlacierVM),
    ("paris", ParisVM),
    ("shanghai", ShanghaiVM),
    ("cancun", CancunVM),
    ("prague", PragueVM),
)


def _shallow_copy(self, *args, **kwargs):
    """Blocks, headers, transactions and withdrawals are immutable: reuse the fields that
    are not replaced instead of rlp.Serializable's deep copy (~4 per sealed block)."""
    fields = dict(zip(self._meta.field_names, args))
    fields.update(kwargs)
    return type(self)(**{name: fields.get(name, getattr(self, name)) for name in self._meta.field_names})


class _PragueVM:
    # The chain's deposit contract (geth genesis: config.depositContractAddress); the
    # chain sets it per VM instance.  py-evm's own code uses mainnet's, a constant.
    deposit_contract_address = DEPOSIT_CONTRACT_ADDRESS

    def process_deposit_request_data(self, block):
        # EIP-6110 deposit requests come from logs of the deposit contract.  With no code
        # at its address no such log exists, so skip re-reading every receipt of the block
        # from the receipt trie (the request list is the same: the empty deposit request).
        address = self.deposit_contract_address
        if not self.state.get_code(address):
            block.block_requests.append(DEPOSIT_REQUEST_TYPE)
            return
        if address == DEPOSIT_CONTRACT_ADDRESS:
            super().process_deposit_request_data(block)
            return
        data = b""  # py-evm's loop, for this chain's address
        for receipt in block.get_receipts(self.chaindb):
            for log in receipt.logs:
                if log.address == address and log.topics and \
                        log.topics[0].to_bytes(32, "big") == DEPOSIT_EVENT_SIGNATURE_HASH:
                    data += (log.data[192:240] + log.data[288:320] + log.data[352:360]
                             + log.data[416:512] + log.data[544:552])
        block.block_requests.append(DEPOSIT_REQUEST_TYPE + data)


def _node_vm(name: str, vm):
    block_class = vm.get_block_class()
    fast_block = type(block_class.__name__, (block_class,), {"copy": _shallow_copy})
    bases = (_PragueVM, vm) if name == "prague" else (vm,)
    # No DAO fork (a mainnet-only irregular state change; geth genesis files without
    # daoForkBlock have none): py-evm's Homestead family refuses to run unconfigured.
    return type(f"OpenLedger{vm.__name__}", bases, {"block_class": fast_block, "support_dao_fork": False})


VM_BY_FORK = {name: _node_vm(name, vm) for name, vm in FORKS}
FORK_ORDER = [name for name, _ in FORKS]
