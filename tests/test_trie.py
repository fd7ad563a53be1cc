"""The bottom-up ordered trie gives py-trie's root and nodes, bit for bit."""
from __future__ import annotations

import random

from eth.db.trie import _make_trie_root_and_nodes as py_trie_root_and_nodes
from hypothesis import given, settings
from hypothesis import strategies as st

from openledger_node.chain.trie import ordered_trie_root


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=120), max_size=300))
def test_ordered_trie_matches_py_trie(items):
    assert ordered_trie_root(items) == py_trie_root_and_nodes(tuple(items))


def test_ordered_trie_matches_py_trie_on_block_sized_inputs():
    rng = random.Random(1612)  # seeded: the same inputs on every run
    for count in (0, 1, 2, 15, 16, 17, 127, 128, 129, 255, 256, 257, 1000, 1429):
        items = tuple(rng.randbytes(rng.choice((1, 20, 31, 32, 33, 110))) for _ in range(count))
        assert ordered_trie_root(items) == py_trie_root_and_nodes(items), count
