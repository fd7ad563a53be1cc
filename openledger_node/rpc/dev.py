"""Unlocked dev accounts (``--dev``): placeholder until the signing namespace lands."""
from __future__ import annotations

from eth_account import Account


class DevSigner:
    def __init__(self, keys: list[str]) -> None:
        self._accounts = [Account.from_key(k) for k in keys]

    def addresses(self) -> list[str]:
        return [a.address.lower() for a in self._accounts]


def register(dispatcher, node) -> None:
    return None
