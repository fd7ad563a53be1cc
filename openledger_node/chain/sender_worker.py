"""The sender-recovery worker process (``chain.senders.SenderWorker`` starts it).

Protocol, on stdin and stdout, both binary:
- A request is a 4-byte big-endian count n, then n records of 97 bytes: a 32-byte message
  hash and a 65-byte signature (r, s, y_parity).
- The answer is n records of 25 bytes: the first 4 bytes of the hash (so the caller can
  check alignment), a flag byte (1 if a key was recovered), and the 20-byte address
  (zeros if not).

A count of 0, or the end of stdin, ends the process. It imports only coincurve and
eth-hash, so that it starts in a fraction of a second.
"""
from __future__ import annotations

import sys

from coincurve import PublicKey
from eth_hash.auto import keccak

REQUEST = 97
ANSWER = 25


def address(digest: bytes, signature: bytes) -> bytes | None:
    """The address whose key made ``signature`` (r, s, y_parity) over ``digest``, or None."""
    try:
        public_key = PublicKey.from_signature_and_message(signature, digest, hasher=None)
    except Exception:  # no key recovers
        return None
    return keccak(public_key.format(compressed=False)[1:])[12:]


def answer(record: bytes) -> bytes:
    digest = record[:32]
    sender = address(digest, record[32:])
    return digest[:4] + (b"\x00" + bytes(20) if sender is None else b"\x01" + sender)


def main() -> None:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        header = stdin.read(4)
        if len(header) < 4:
            return
        count = int.from_bytes(header, "big")
        if count == 0:
            return
        body = stdin.read(count * REQUEST)
        if len(body) < count * REQUEST:
            return
        stdout.write(b"".join(answer(body[i:i + REQUEST]) for i in range(0, len(body), REQUEST)))
        stdout.flush()


if __name__ == "__main__":
    main()
