import os

__version__ = "0.1.0"

# Keccak-256 through pysha3's C code (eth-hash's "pysha3" backend, package safe-pysha3):
# about 4x faster per call than pycryptodome's, which eth-hash would pick first when both
# are installed; sealing a block of plain transfers is ~15% faster.  Same digests
# (tests/test_keccak_backend.py).  Set before anything hashes; an explicit
# ETH_HASH_BACKEND in the environment still wins.
try:
    import sha3  # noqa: F401
except ImportError:  # pragma: no cover - a dependency; eth-hash then falls back to pycryptodome
    pass
else:
    os.environ.setdefault("ETH_HASH_BACKEND", "pysha3")
