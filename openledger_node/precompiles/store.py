"""Where the node keeps attribution indexes: an LRU cache in memory and, when the chain
has a datadir, one file per published version in ``<datadir>/attribution/``.

An index is a pure function of a version's contributions, so it is not consensus
data: a missing, stale or damaged file is rebuilt from the contributions' data kept in
the state database (each file's name carries the version's root, and its contents are
checked against the version when loaded)."""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from ..attribution import DatanetIndex, IndexFormatError
from .registry import version_contents

log = logging.getLogger("openledger.attribution")


class IndexStore:
    def __init__(self, directory: Path | str | None, *, cache_size: int = 32):
        self.directory = Path(directory) if directory is not None else None
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[int, int, bytes], DatanetIndex] = OrderedDict()
        self._lock = threading.Lock()  # RPC threads (eth_call) and the sequencer share it
        self.builds = 0  # indexes built (not loaded) since start: tests and metrics read it

    def path(self, datanet_id: int, version: int, root: bytes) -> Path | None:
        if self.directory is None:
            return None
        return self.directory / f"{datanet_id}-{version}-{root.hex()}.idx"

    def get(self, state, datanet_id: int, version: int, root: bytes) -> DatanetIndex:
        """The index of Datanet ``datanet_id`` version ``version`` (whose root is ``root``),
        from memory, from disk, or built from ``state``."""
        key = (datanet_id, version, root)
        with self._lock:
            index = self._cache.get(key)
            if index is not None:
                self._cache.move_to_end(key)
                return index
            index = self._load(state, key)
            self._cache[key] = index
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
            return index

    def _load(self, state, key: tuple[int, int, bytes]) -> DatanetIndex:
        datanet_id, version, root = key
        path = self.path(*key)
        if path is not None and path.exists():
            try:
                index = DatanetIndex.load(path)
            except (IndexFormatError, OSError) as exc:
                log.warning("attribution index %s is unreadable (%s): rebuilding it", path.name, exc)
            else:
                ids = [c for c, _ in version_contents(state, datanet_id, version, data=False)]
                if (index.datanet_id, index.version) == (datanet_id, version) and index.contribution_ids.tolist() == ids:
                    return index
                log.warning("attribution index %s does not match the chain: rebuilding it", path.name)
        contents = version_contents(state, datanet_id, version)
        index = DatanetIndex.build(datanet_id, version, contents)
        self.builds += 1
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                index.save(path)
            except OSError as exc:  # a full disk must not fail a transaction: keep it in memory
                log.warning("cannot save attribution index %s (%s): kept in memory only", path.name, exc)
            else:
                log.info("built attribution index %s: %d contributions, %d tokens", path.name,
                         index.num_contributions, index.num_tokens)
        return index


@dataclass(frozen=True)
class OpenLedgerContext:
    """What the precompiles need beyond the EVM state: the treasury named in genesis and
    the attribution indexes.  Attached to every block's execution context."""

    treasury: bytes
    indexes: IndexStore
