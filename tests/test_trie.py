"""The bottom-up ordered trie gives py-trie's root and nodes, bit for bit."""
from __future__ import annotations

import random

import rlp
from eth.constants import BLANK_ROOT_HASH
from hypothesis import given, settings
from trie import HexaryTrie
from hypothesis import strategies as st

from openledger_node.chain.trie import ordered_trie_root


def py_trie_root_and_nodes(items: tuple[bytes, ...]) -> tuple[bytes, dict[bytes, bytes]]:
    """The reference: py-trie's HexaryTrie, one insert per item (as py-evm did)."""
    nodes: dict[bytes, bytes] = {}
    trie = HexaryTrie(nodes, BLANK_ROOT_HASH)
    with trie.squash_changes() as memory_trie:
        for index, item in enumerate(items):
            memory_trie[rlp.encode(index)] = item
    return trie.root_hash, nodes


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=120), max_size=300))
def test_ordered_trie_matches_py_trie(items):
    assert ordered_trie_root(items) == py_trie_root_and_nodes(tuple(items))


def test_py_evm_builds_block_tries_with_the_ordered_trie():
    import eth.db.trie

    import openledger_node.chain.vm  # noqa: F401  (installs it)

    items = (b"\x01" * 40, b"\x02" * 40)
    assert eth.db.trie._make_trie_root_and_nodes(items) == py_trie_root_and_nodes(items)
    assert eth.db.trie._make_trie_root_and_nodes.__module__ == "openledger_node.chain.trie"


def test_ordered_trie_matches_py_trie_on_block_sized_inputs():
    rng = random.Random(1612)  # seeded: the same inputs on every run
    for count in (0, 1, 2, 15, 16, 17, 127, 128, 129, 255, 256, 257, 1000, 1429):
        items = tuple(rng.randbytes(rng.choice((1, 20, 31, 32, 33, 110))) for _ in range(count))
        assert ordered_trie_root(items) == py_trie_root_and_nodes(items), count
