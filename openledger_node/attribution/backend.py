"""Which implementation of the hot paths to use: the Cython core (``"native"``, the
default) or the pure-Python reference (``"reference"``, only when asked for)."""

from __future__ import annotations

from types import ModuleType

IMPLEMENTATIONS = ("native", "reference")


def get(implementation: str) -> ModuleType:
    """The module holding ``pack_bits``, ``unpack_bits``, ``bucket_starts``, ``minhash_signatures`` and
    ``find_spans`` for ``implementation``. Never falls back silently."""
    if implementation == "native":
        try:
            from attribution_native import _core
        except ImportError as exc:
            raise RuntimeError(
                "the Cython attribution core (attribution_native._core) is not built: run scripts/setup.sh, "
                "or pass implementation='reference' for the pure-Python one"
            ) from exc
        return _core
    if implementation == "reference":
        from . import reference

        return reference
    raise ValueError(f"unknown attribution implementation {implementation!r}; one of {IMPLEMENTATIONS}")
