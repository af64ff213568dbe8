"""Library adapters, registered by import string and loaded lazily.

Only `adapters/<library>.py` imports a deep-learning library, and only inside the worker
process of that library's runtime, so `nablafuzz --help` works with none installed.
Adding a library: one adapter file, one line here, and the shared conformance tests.
"""
from __future__ import annotations

import importlib

ADAPTERS = {
    "numpy_ref": "nablafuzz.adapters.numpy_ref:make_adapter",
    "torch": "nablafuzz.adapters.torch:make_adapter",
    "jax": "nablafuzz.adapters.jax:make_adapter",
    "tensorflow": "nablafuzz.adapters.tensorflow:make_adapter",
    "oneflow": "nablafuzz.adapters.oneflow:make_adapter",
}


def load_adapter(library: str):
    """Import and build the adapter for `library` (call only inside its worker)."""
    try:
        target = ADAPTERS[library]
    except KeyError:
        raise LookupError(f"unknown library {library!r}; known: {', '.join(ADAPTERS)}") from None
    module, _, factory = target.partition(":")
    return getattr(importlib.import_module(module), factory)()
