"""The point-evaluation precompile (0x0a) must not reload the KZG setup per call:
py-evm does (~2-4 s a call), which would let a cheap call stall the sequencer."""
from __future__ import annotations

import eth.precompiles.point_evaluation as point_evaluation

import openledger_node.chain.vm  # noqa: F401  (installs the node's VM changes)


def test_the_trusted_setup_is_loaded_once_and_shared():
    first = point_evaluation.load_trusted_setup(point_evaluation.TRUSTED_SETUP_PATH, 0)
    again = point_evaluation.load_trusted_setup(point_evaluation.TRUSTED_SETUP_PATH, 0)
    assert again is first  # the same object: no second parse of the setup file
