"""Merkle-Patricia tries built and updated many keys at a time.

py-trie inserts keys one by one into a HexaryTrie, re-encoding and re-hashing the path
to the root each time.  ``BulkUpdate`` applies a whole set of changes at once: every
node on the changed paths is decoded, encoded and hashed once (as geth's StackTrie
builds a trie from sorted keys).  The node uses it for the per-block transaction,
receipt and withdrawal tries (``ordered_trie_root``: ``rlp(index)`` -> item, put in
place of py-trie's by ``use_in_py_evm``), and for the changes a block makes to the
state and storage tries (``chain/vm.py``).  Roots and node sets are py-trie's
(``tests/test_trie.py`` checks this on random inputs).
"""
from __future__ import annotations

import functools
from typing import Sequence

import rlp
from eth.constants import BLANK_ROOT_HASH
from eth_hash.auto import keccak


def _hex_prefix(nibbles: tuple[int, ...], leaf: bool) -> bytes:
    """Compact (hex-prefix) encoding of a nibble path, Yellow Paper appendix C."""
    flag = 2 if leaf else 0
    if len(nibbles) % 2:
        nibbles = (flag + 1,) + nibbles
    else:
        nibbles = (flag, 0) + nibbles
    return bytes(nibbles[i] * 16 + nibbles[i + 1] for i in range(0, len(nibbles), 2))


def _nibbles(key: bytes) -> tuple[int, ...]:
    return tuple(n for b in key for n in (b >> 4, b & 15))


def ordered_trie_root(encoded_items: Sequence[bytes]) -> tuple[bytes, dict[bytes, bytes]]:
    """Root hash and {hash: encoded node} of the trie {rlp(i): encoded_items[i]}."""
    nodes: dict[bytes, bytes] = {}
    root = BulkUpdate(nodes).apply(BLANK_ROOT_HASH, {rlp.encode(i): item for i, item in enumerate(encoded_items)})
    return root, nodes


@functools.lru_cache(128)
def _cached_ordered_trie_root(encoded_items: tuple[bytes, ...]) -> tuple[bytes, dict[bytes, bytes]]:
    return ordered_trie_root(encoded_items)


def use_in_py_evm() -> None:
    """Make py-evm build these tries this way everywhere (block building, validation,
    import), keeping its small cache so a root computed while building is reused when
    the block is validated.  py-evm looks the function up at call time."""
    import eth.db.trie

    eth.db.trie._make_trie_root_and_nodes = _cached_ordered_trie_root


# ------------------------------------------------------------------ bulk updates of a trie


def _hp_decode(encoded: bytes) -> tuple[tuple[int, ...], bool]:
    """(nibbles, is_leaf) of a hex-prefix encoded path."""
    nibbles = _nibbles(encoded)
    flag = nibbles[0]
    return (nibbles[1:] if flag & 1 else nibbles[2:]), bool(flag & 2)


class BulkUpdate:
    """Apply many changes to a hexary Merkle-Patricia trie at once, as py-trie's
    ``HexaryTrie`` would one by one: every node on the changed paths is decoded once and
    encoded and hashed once, however many keys go through it (py-trie re-encodes the
    path to the root for each key).  A trie's root depends only on its content, so the
    root is py-trie's (``tests/test_trie.py`` compares them on random changes).

    ``db`` maps node hashes to encoded nodes; new nodes are written to it and replaced
    ones are left in place (py-evm never deletes trie nodes from disk either).
    """

    def __init__(self, db) -> None:
        self.db = db

    def apply(self, root_hash: bytes, changes: dict[bytes, bytes]) -> bytes:
        """The root after setting each key to its value (b"": delete the key)."""
        if not changes:
            return root_hash
        updates = sorted((_nibbles(key), value) for key, value in changes.items())
        root = b"" if root_hash == BLANK_ROOT_HASH else rlp.decode(self.db[root_hash])
        new_root = self._update(root, 0, updates)
        if new_root == b"":
            return BLANK_ROOT_HASH
        encoded = rlp.encode(new_root)
        digest = keccak(encoded)
        self.db[digest] = encoded  # the root is stored by hash even when small
        return digest

    # -- nodes are py-trie's raw forms: b"", [path, value] (leaf or extension), 17-item branch

    def _resolve(self, ref):
        if ref == b"":
            return b""
        if isinstance(ref, list):
            return ref
        return rlp.decode(self.db[ref])

    def _ref(self, node):
        if node == b"":
            return b""
        encoded = rlp.encode(node)
        if len(encoded) < 32:
            return node
        digest = keccak(encoded)
        self.db[digest] = encoded
        return digest

    def _update(self, node, depth: int, updates: list) -> list | bytes:
        if node == b"":
            pairs = [(key, value) for key, value in updates if value != b""]
            return self._build(pairs, 0, len(pairs), depth) if pairs else b""
        if len(node) == 2:
            path, is_leaf = _hp_decode(node[0])
            if is_leaf:  # merge the one key with the updates, and build that small trie anew
                merged = {tuple(updates[0][0][:depth]) + path: node[1]}
                for key, value in updates:
                    merged[key] = value
                pairs = sorted((key, value) for key, value in merged.items() if value != b"")
                return self._build(pairs, 0, len(pairs), depth) if pairs else b""
            end = depth + len(path)
            if all(key[depth:end] == path for key, _ in updates):  # all go through it
                return self._prefixed(path, self._update(self._resolve(node[1]), end, updates))
            # some keys leave the extension: update it as the branch with one child it is
            branch: list = [b""] * 17
            branch[path[0]] = node[1] if len(path) == 1 else self._ref([_hex_prefix(path[1:], False), node[1]])
            node = branch
        # a branch: update the children the keys go through
        branch = list(node)
        i, count = 0, len(updates)
        while i < count:
            key = updates[i][0]
            if len(key) == depth:  # a key ending at this branch (not for fixed-length keys)
                branch[16] = updates[i][1]
                i += 1
                continue
            nibble, j = key[depth], i
            while j < count and updates[j][0][depth] == nibble:
                j += 1
            branch[nibble] = self._ref(self._update(self._resolve(branch[nibble]), depth + 1, updates[i:j]))
            i = j
        return self._normalised(branch)

    def _prefixed(self, path: tuple[int, ...], child) -> list | bytes:
        """The node for ``path`` followed by ``child`` (merging paths as the trie must)."""
        if child == b"":
            return b""
        if len(child) == 2:
            rest, is_leaf = _hp_decode(child[0])
            return [_hex_prefix(path + rest, is_leaf), child[1]]
        return [_hex_prefix(path, False), self._ref(child)]

    def _normalised(self, branch: list) -> list | bytes:
        used = [n for n in range(16) if branch[n] != b""]
        if len(used) + (branch[16] != b"") >= 2:
            return branch
        if not used:
            return [_hex_prefix((), True), branch[16]] if branch[16] != b"" else b""
        nibble = used[0]
        return self._prefixed((nibble,), self._resolve(branch[nibble]))

    def _build(self, pairs: list, lo: int, hi: int, depth: int) -> list:
        """A trie of ``pairs[lo:hi]`` (sorted, non-empty values) below ``depth`` nibbles."""
        if hi - lo == 1:
            key, value = pairs[lo]
            return [_hex_prefix(key[depth:], True), value]
        first, last = pairs[lo][0], pairs[hi - 1][0]
        shared, limit = 0, min(len(first), len(last)) - depth
        while shared < limit and first[depth + shared] == last[depth + shared]:
            shared += 1
        if shared:
            return [_hex_prefix(first[depth:depth + shared], False), self._ref(self._build(pairs, lo, hi, depth + shared))]
        branch: list = [b""] * 17
        i = lo
        if len(pairs[i][0]) == depth:
            branch[16] = pairs[i][1]
            i += 1
        while i < hi:
            nibble, j = pairs[i][0][depth], i
            while j < hi and pairs[j][0][depth] == nibble:
                j += 1
            branch[nibble] = self._ref(self._build(pairs, i, j, depth + 1))
            i = j
        return branch
