"""Cython core of attribution v1: see ``_core.pyx`` and docs/attribution.md."""
