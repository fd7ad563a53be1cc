"""Transaction senders, recovered once and cached on the transaction.

py-evm recovers a sender (``tx.sender``, a cached property) by building the unsigned
transaction as an rlp object, encoding it with pyrlp's generic machinery, wrapping the
signature in eth-keys objects and recovering through them: for a plain transfer that is
a sixth of its replay time.  ``prime`` does the same recovery directly: the signing
message encoded by hand (canonical RLP, as pyrlp writes it), keccak, and libsecp256k1's
recovery through coincurve, the library eth-keys itself calls; the result goes where
``tx.sender`` caches it.

Only EIP-1559 transactions with an empty access list and well-formed signature values
(1 <= r, s < n, y_parity 0 or 1) take this path, and only when recovery succeeds;
anything else is left to py-evm, so every error keeps py-evm's type and message.
``tests/test_chain_caches.py`` compares the result with py-evm's on random transactions.

``SenderWorker`` does the same recovery in a second process, so that replay recovers the
senders of the blocks ahead while it executes the current one.
"""
from __future__ import annotations

import atexit
import collections
import os
import subprocess
import sys
from typing import Iterable

from eth_hash.auto import keccak

from . import rlp_encode, sender_worker

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def signing_message(tx) -> bytes | None:
    """What an EIP-1559 transaction's signature signs (0x02 || rlp(unsigned fields)), or
    None for a transaction this module leaves to py-evm."""
    if getattr(tx, "type_id", None) != 2 or tx.access_list:
        return None
    return b"\x02" + rlp_encode.list_of(
        rlp_encode.uint(tx.chain_id), rlp_encode.uint(tx.nonce), rlp_encode.uint(tx.max_priority_fee_per_gas),
        rlp_encode.uint(tx.max_fee_per_gas), rlp_encode.uint(tx.gas), rlp_encode.string(tx.to),
        rlp_encode.uint(tx.value), rlp_encode.string(tx.data), b"\xc0")


def recovery_input(tx) -> tuple[bytes, bytes] | None:
    """(message hash, 65-byte signature) to recover ``tx``'s sender from, or None for a
    transaction left to py-evm."""
    message = signing_message(tx)
    if message is None:
        return None
    r, s, y_parity = tx.r, tx.s, tx.y_parity
    if not (0 < r < SECP256K1_N and 0 < s < SECP256K1_N and y_parity in (0, 1)):
        return None
    return keccak(message), r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([y_parity])


def recover(tx) -> bytes | None:
    """The sender's address, or None to let py-evm recover it (and raise its own errors)."""
    data = recovery_input(tx)
    return None if data is None else sender_worker.address(*data)


def prime(transactions: Iterable) -> None:
    """Cache each transaction's sender where ``tx.sender`` (a cached property) keeps it."""
    for tx in transactions:
        if "sender" in tx.__dict__:
            continue
        sender = recover(tx)
        if sender is not None:
            tx.__dict__["sender"] = sender


class SenderWorker:
    """Recovers senders in a second process (``chain/sender_worker.py``) while this one
    executes: ``submit`` a list of transactions, later ``collect`` the ticket, which caches
    each sender on its transaction like ``prime``.  Answers are read in submission order and
    checked against each request's hash; if the worker cannot start or misbehaves it is
    stopped for good, and whatever it has not answered is recovered here by ``prime``.
    Keep at most ``MAX_IN_FLIGHT`` transactions submitted and not collected (its answers
    then fit in a pipe's buffer, so neither process waits on the other)."""

    MAX_IN_FLIGHT = 2000

    def __init__(self) -> None:
        self._process: subprocess.Popen | None = None
        self._broken = False
        self._tickets: collections.deque[list] = collections.deque()

    def _worker(self) -> subprocess.Popen | None:
        if self._process is None and not self._broken:
            try:
                self._process = subprocess.Popen(
                    [sys.executable, "-m", "openledger_node.chain.sender_worker"],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            except OSError:
                self._broken = True
        return self._process

    def submit(self, transactions) -> list:
        """A ticket: the transactions sent to the worker with their message hashes."""
        ticket, records = [], []
        for tx in transactions:
            if "sender" in tx.__dict__:
                continue
            data = recovery_input(tx)
            if data is None:
                continue
            ticket.append((tx, data[0]))
            records.append(data[0] + data[1])
        if not ticket:
            return ticket
        worker = self._worker()
        if worker is None:
            return []
        try:
            worker.stdin.write(len(ticket).to_bytes(4, "big") + b"".join(records))
            worker.stdin.flush()
        except OSError:
            self.close()
            return []
        self._tickets.append(ticket)
        return ticket

    def collect(self, ticket: list) -> None:
        """Cache the senders of ``ticket`` (and of any ticket submitted before it)."""
        if not ticket:
            return
        while self._tickets and any(t is ticket for t in self._tickets):
            current = self._tickets.popleft()
            try:
                data = self._read(len(current) * sender_worker.ANSWER)
            except OSError:
                self.close()
                return
            for i, (tx, digest) in enumerate(current):
                answer = data[i * sender_worker.ANSWER:(i + 1) * sender_worker.ANSWER]
                if answer[:4] != digest[:4]:  # out of step: trust nothing more from it
                    self.close()
                    return
                if answer[4] == 1:
                    tx.__dict__.setdefault("sender", answer[5:])

    def _read(self, size: int) -> bytes:
        stream = self._process.stdout
        chunks, left = [], size
        while left:
            chunk = stream.read(left)
            if not chunk:
                raise OSError("the sender worker stopped")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        """Stop the worker (for good: later calls recover nothing)."""
        self._broken = True
        self._tickets.clear()
        process, self._process = self._process, None
        if process is not None:
            try:
                process.stdin.close()
            except OSError:
                pass
            process.kill()
            process.wait()


_shared: SenderWorker | None = None


def shared_worker() -> SenderWorker | None:
    """The process's SenderWorker, or None on a single CPU (nothing to gain)."""
    global _shared
    if (os.cpu_count() or 1) < 2:
        return None
    if _shared is None:
        _shared = SenderWorker()
        atexit.register(_shared.close)
    return _shared
