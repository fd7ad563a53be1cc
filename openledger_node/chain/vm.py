"""The node's fork VMs.

Every fork the node can run is py-evm's VM for that fork, configured under an
OpenLedger name so that the node's own additions (the attribution precompiles)
have one place to live.  Nothing here changes Ethereum's rules.
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

VM_BY_FORK = {name: vm.configure(__name__=f"OpenLedger{vm.__name__}") for name, vm in FORKS}
FORK_ORDER = [name for name, _ in FORKS]
