"""The node hashes with eth-hash's pysha3 backend, and it gives pycryptodome's digests."""
from __future__ import annotations

import subprocess
import sys

from eth_hash.backends.pycryptodome import CryptodomeBackend
from eth_hash.backends.pysha3 import PySha3Backend
from hypothesis import given, settings
from hypothesis import strategies as st

import openledger_node  # noqa: F401  (sets the backend)


def test_the_node_uses_the_c_keccak() -> None:
    code = "import openledger_node; from eth_hash.auto import keccak; keccak(b''); print(type(keccak.hasher.__self__).__name__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={"PATH": "/usr/bin:/bin"})
    assert done.stdout.strip() == "PySha3Backend"


@settings(max_examples=300, derandomize=True)
@given(st.binary(max_size=600))
def test_pysha3_and_pycryptodome_agree(data: bytes) -> None:
    assert PySha3Backend().keccak256(data) == CryptodomeBackend().keccak256(data)


def test_known_digest() -> None:
    assert PySha3Backend().keccak256(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
