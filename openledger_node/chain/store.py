"""LevelDB storage for the chain.

py-evm writes headers, bodies, receipts, indexes and trie nodes through a
key-value interface.  ``LevelStore`` keeps every write in memory until
``commit()``, which hands them to LevelDB in a single atomic WriteBatch: a crash
leaves either the whole block or none of it on disk.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import plyvel
from eth.abc import AtomicWriteBatchAPI
from eth.db.atomic import AtomicDBWriteBatch
from eth.db.backends.base import BaseAtomicDB

_DELETED = None


class StoreLockedError(RuntimeError):
    """Another process holds the datadir."""


class LevelStore(BaseAtomicDB):
    """py-evm atomic database over plyvel with block-sized atomic commits."""

    def __init__(self, path: Path | str, *, create: bool = False, sync: bool = False) -> None:
        self.path = Path(path)
        try:
            self._db = plyvel.DB(str(self.path), create_if_missing=create)
        except plyvel.IOError as exc:  # LOCK held by another process
            raise StoreLockedError(f"datadir {self.path} is in use by another process ({exc})") from exc
        self._pending: dict[bytes, bytes | None] = {}
        self._sync = sync

    # -- py-evm database interface -------------------------------------------------
    def __getitem__(self, key: bytes) -> bytes:
        if key in self._pending:
            value = self._pending[key]
            if value is _DELETED:
                raise KeyError(key)
            return value
        value = self._db.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._pending[key] = value

    def __delitem__(self, key: bytes) -> None:
        if not self._exists(key):
            raise KeyError(key)
        self._pending[key] = _DELETED

    def _exists(self, key: bytes) -> bool:
        if key in self._pending:
            return self._pending[key] is not _DELETED
        return self._db.get(key) is not None

    @contextmanager
    def atomic_batch(self) -> Iterator[AtomicWriteBatchAPI]:
        with AtomicDBWriteBatch._commit_unless_raises(self) as batch:
            yield batch

    # -- block-level transactions --------------------------------------------------
    @property
    def dirty(self) -> bool:
        return bool(self._pending)

    def commit(self) -> int:
        """Write every pending change to LevelDB atomically; returns how many keys."""
        count = len(self._pending)
        if not count:
            return 0
        with self._db.write_batch(transaction=True, sync=self._sync) as batch:
            for key, value in self._pending.items():
                if value is _DELETED:
                    batch.delete(key)
                else:
                    batch.put(key, value)
        self._pending.clear()
        return count

    def discard(self) -> None:
        """Forget writes not yet committed (a block that failed to build)."""
        self._pending.clear()

    def close(self) -> None:
        # Drop the plyvel object now: its __dealloc__ raises if it only runs during
        # interpreter teardown ("Error in sys.excepthook" at exit).
        db, self._db = self._db, None
        if db is not None and not db.closed:
            db.close()

    @property
    def closed(self) -> bool:
        return self._db is None
