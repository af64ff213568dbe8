"""The registry of libraries: one line per library, naming its folder.

A library is a folder here (`libraries/<lib>/`): its `Library` record in `__init__.py`
(descriptor.py: the adapter's import string, its repro-script text, its messages, its
defaults) and its adapter, the only module that imports the deep-learning library, and only
inside that library's worker process, so `nablafuzz --help` works with none installed.
Adding a library: one folder, one line here, its install plan (runtime/install.py), and the
shared conformance tests.  Out-of-tree libraries are folders of the same shape named in
`NABLAFUZZ_LIBRARIES` as `library=package,...`; out-of-tree adapters alone (a library's own
backend, the tests' planted one) in `NABLAFUZZ_ADAPTERS` as `library=module:factory,...`.
Both run in the orchestrator's own interpreter, as numpy_ref does.
"""
from __future__ import annotations

import functools
import importlib
import os
from typing import Any, Dict, Sequence, Tuple

from ..core.quantities import ALL as ALL_SCENARIOS
from ..core.quantities import COMPILED, ENTRY, KERNELS, SECOND_ORDER, THIRD_ORDER
from .descriptor import Library

LIBRARIES = {
    "numpy_ref": "nablafuzz.libraries.numpy_ref",
    "torch": "nablafuzz.libraries.torch",
    "jax": "nablafuzz.libraries.jax",
    "tensorflow": "nablafuzz.libraries.tensorflow",
    "oneflow": "nablafuzz.libraries.oneflow",
}

ENV = "NABLAFUZZ_ADAPTERS"
LIBRARIES_ENV = "NABLAFUZZ_LIBRARIES"


def _pairs(env: str, shape: str, ok) -> Dict[str, str]:
    out = {}
    for item in filter(None, (x.strip() for x in os.environ.get(env, "").split(","))):
        library, _, target = item.partition("=")
        if not library or not ok(target):
            raise LookupError(f"{env}: {item!r} is not {shape}")
        out[library] = target
    return out


def extra_adapters() -> Dict[str, str]:
    """The out-of-tree adapters named in NABLAFUZZ_ADAPTERS (read when asked, never at import)."""
    return _pairs(ENV, "library=module:factory", lambda t: ":" in t)


def extra_libraries() -> Dict[str, str]:
    """The out-of-tree library folders named in NABLAFUZZ_LIBRARIES (importable packages)."""
    return _pairs(LIBRARIES_ENV, "library=package", lambda t: bool(t) and ":" not in t)


def out_of_tree(library: str) -> bool:
    """Whether the library runs in this interpreter because it was named in the environment."""
    return library in extra_adapters() or library in extra_libraries()


def known_libraries() -> Tuple[str, ...]:
    return tuple(dict.fromkeys(list(LIBRARIES) + list(extra_libraries()) + list(extra_adapters())))


@functools.lru_cache(maxsize=None)
def _described(library: str, package: str, adapter: str) -> Library:
    if not package:
        return Library(library, adapter)
    try:
        return importlib.import_module(package).LIBRARY
    except (ImportError, AttributeError) as exc:
        raise LookupError(f"library {library!r}: cannot read its record {package}.LIBRARY ({exc}); "
                          f"fix {LIBRARIES_ENV} or the folder") from None


def describe(library: str) -> Library:
    """The library's record (an adapter named in NABLAFUZZ_ADAPTERS gets a bare one)."""
    packages = {**LIBRARIES, **extra_libraries()}
    adapters = extra_adapters()
    if library not in packages and library not in adapters:
        raise LookupError(f"unknown library {library!r}; known: {', '.join(known_libraries())}")
    return _described(library, "" if library in adapters else packages[library], adapters.get(library, ""))


def record(library: str) -> Library:
    """The library's record, or a bare one (every default: no `where`, no other kernels, ...) for a
    name nothing registers (the cross-library pseudo-library, a report's unknown library)."""
    return describe(library) if library in known_libraries() else Library(library, "")


def known_adapters() -> Dict[str, str]:
    """library -> its adapter's import string."""
    return {lib: describe(lib).adapter for lib in known_libraries()}


def load_adapter(library: str):
    """Import and build the adapter for `library` (call only inside its worker)."""
    module, _, factory = describe(library).adapter.partition(":")
    return getattr(importlib.import_module(module), factory)()


def scenarios_for(config: Any, library: str, capabilities: Sequence[str] = SECOND_ORDER) -> Tuple[str, ...]:
    """The scenarios a trial of `library` runs under `config` (a core.config.Config): the configured ones, with `jit` when compiled is
    on, without it when off; unset, `jit` runs when listed, or by default for a library that
    compiles cheaply unless the scenarios were narrowed.  Entry points and third order when
    switched on (or listed); third order only for a spec whose `capabilities` have second order."""
    lib = record(library)
    want = config.compiled
    if want is None:
        want = COMPILED in config.scenarios or (lib.compiled_by_default and config.scenarios == ALL_SCENARIOS)
    base = tuple(s for s in config.scenarios if s not in (COMPILED, KERNELS) + ENTRY + THIRD_ORDER)
    kernels = (KERNELS,) if config.kernels or KERNELS in config.scenarios else ()
    entry = tuple(s for s in ENTRY if (config.entry_points or s in config.scenarios) and lib.entry_points)
    third = tuple(s for s in THIRD_ORDER if (config.third_order or s in config.scenarios)
                  and any(c in SECOND_ORDER for c in capabilities))
    return base + ((COMPILED,) if want else ()) + kernels + entry + third


def staged_for(config: Any, library: str) -> bool:
    """Whether `library`'s trials under `config` (a core.config.Config) are staged: compiled
    scenario kernels and pooled signatures (Note [staged scenarios]); unset, the library's default."""
    return record(library).staged if config.staged is None else bool(config.staged)
