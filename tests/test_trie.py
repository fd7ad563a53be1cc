"""The bottom-up ordered trie gives py-trie's root and nodes, bit for bit."""
from __future__ import annotations

import random

import pytest
import rlp
from eth.constants import BLANK_ROOT_HASH
from hypothesis import given, settings
from trie import HexaryTrie
from hypothesis import strategies as st

from openledger_node.chain.trie import BulkUpdate, ordered_trie_root


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


def _random_key(rng: random.Random, fixed: bool) -> bytes:
    if fixed:
        return rng.randbytes(32)
    return rng.randbytes(rng.choice([0, 1, 1, 2, 3, 5, 32]))  # keys that are prefixes of others too


@pytest.mark.parametrize("fixed", [True, False], ids=["32-byte keys", "mixed-length keys"])
def test_bulk_updates_give_py_trie_roots(fixed: bool) -> None:
    """Rounds of random sets and deletes (values from 1 byte, embedded in their parent, to
    long ones), applied at once by BulkUpdate and one by one by py-trie, starting from the
    previous round's root: every root is py-trie's, and every key reads back through
    py-trie from BulkUpdate's nodes."""
    rng = random.Random(f"bulk-{fixed}")
    for trial in range(40):
        db: dict[bytes, bytes] = {}
        reference = HexaryTrie({})
        bulk = BulkUpdate(db)
        root = BLANK_ROOT_HASH
        content: dict[bytes, bytes] = {}
        pool = [_random_key(rng, fixed) for _ in range(rng.choice([1, 2, 5, 40, 200]))]
        for round_ in range(6):
            changes: dict[bytes, bytes] = {}
            for _ in range(rng.randrange(1, len(pool) + 2)):
                key = rng.choice(pool)
                if key in content and rng.random() < 0.4:
                    changes[key] = b""
                else:
                    changes[key] = rng.randbytes(rng.choice([1, 2, 5, 30, 70]))
            for key, value in changes.items():
                if value:
                    reference[key] = value
                    content[key] = value
                else:
                    del reference[key]
                    content.pop(key, None)
            root = bulk.apply(root, changes)
            assert root == reference.root_hash, (trial, round_)
            reader = HexaryTrie(db, root)
            for key in pool:
                assert reader.get(key) == content.get(key, b"")
