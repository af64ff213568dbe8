"""Library adapters, registered by import string and loaded lazily.

Only `adapters/<library>.py` imports a deep-learning library, and only inside the worker
process of that library's runtime, so `nablafuzz --help` works with none installed.
Adding a library: one adapter file, one line here, and the shared conformance tests.
Out-of-tree adapters (a library's own backend, or the tests' planted one) are named in
`NABLAFUZZ_ADAPTERS` as `library=module:factory,...`; they run in the orchestrator's own
interpreter, as numpy_ref does.
"""
from __future__ import annotations

import importlib
import os
from typing import Dict

ADAPTERS = {
    "numpy_ref": "nablafuzz.libraries.numpy_ref.adapter:make_adapter",
    "torch": "nablafuzz.libraries.torch.adapter:make_adapter",
    "jax": "nablafuzz.libraries.jax.adapter:make_adapter",
    "tensorflow": "nablafuzz.libraries.tensorflow.adapter:make_adapter",
    "oneflow": "nablafuzz.libraries.oneflow.adapter:make_adapter",
}


ENV = "NABLAFUZZ_ADAPTERS"


def extra_adapters() -> Dict[str, str]:
    """The out-of-tree adapters named in NABLAFUZZ_ADAPTERS (read when asked, never at import)."""
    out = {}
    for item in filter(None, (x.strip() for x in os.environ.get(ENV, "").split(","))):
        library, _, target = item.partition("=")
        if not library or ":" not in target:
            raise LookupError(f"{ENV}: {item!r} is not library=module:factory")
        out[library] = target
    return out


def known_adapters() -> Dict[str, str]:
    return {**ADAPTERS, **extra_adapters()}


def load_adapter(library: str):
    """Import and build the adapter for `library` (call only inside its worker)."""
    known = known_adapters()
    try:
        target = known[library]
    except KeyError:
        raise LookupError(f"unknown library {library!r}; known: {', '.join(known)}") from None
    module, _, factory = target.partition(":")
    return getattr(importlib.import_module(module), factory)()
