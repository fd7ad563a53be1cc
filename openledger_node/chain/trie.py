"""Roots of the per-block transaction, receipt and withdrawal tries.

These tries map ``rlp(index)`` to each item's encoding.  py-trie builds them by
inserting the items one by one into a HexaryTrie, re-encoding and re-hashing the
path to the root each time; for a block of a thousand transactions that is most of
the time spent sealing it.  Here the whole key set is known up front, so the trie
is built bottom-up over the sorted keys (as geth's StackTrie does): every node is
encoded and hashed once.  The root and the node set are the same as py-trie's
(``tests/test_trie.py`` checks this on random inputs).  ``use_in_py_evm`` puts it
in place of py-trie's for these tries; the state trie is untouched.
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
    if not encoded_items:
        return BLANK_ROOT_HASH, {}
    nodes: dict[bytes, bytes] = {}
    pairs = sorted((_nibbles(rlp.encode(i)), item) for i, item in enumerate(encoded_items))

    def reference(node: list) -> list | bytes:
        encoded = rlp.encode(node)
        if len(encoded) < 32:  # small nodes are embedded in their parent
            return node
        digest = keccak(encoded)
        nodes[digest] = encoded
        return digest

    def build(lo: int, hi: int, depth: int) -> list:
        if hi - lo == 1:
            key, value = pairs[lo]
            return [_hex_prefix(key[depth:], True), value]
        first, last = pairs[lo][0], pairs[hi - 1][0]
        shared = 0
        limit = min(len(first), len(last)) - depth
        while shared < limit and first[depth + shared] == last[depth + shared]:
            shared += 1
        if shared:
            return [_hex_prefix(first[depth:depth + shared], False), reference(build(lo, hi, depth + shared))]
        branch: list = [b""] * 17
        i = lo
        if len(pairs[i][0]) == depth:  # a key that ends here (cannot happen for rlp(i) keys, kept for safety)
            branch[16] = pairs[i][1]
            i += 1
        while i < hi:
            nibble, j = pairs[i][0][depth], i
            while j < hi and pairs[j][0][depth] == nibble:
                j += 1
            branch[nibble] = reference(build(i, j, depth + 1))
            i = j
        return branch

    encoded_root = rlp.encode(build(0, len(pairs), 0))
    root = keccak(encoded_root)
    nodes[root] = encoded_root
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
