"""Which interpreter runs which library: numpy_ref in our own, the rest as `nablafuzz install` recorded.

A release name `LIB@VERSION` (e.g. `jax@0.10.1`) resolves to the venv `nablafuzz install --only
LIB@VERSION` built; its worker still loads LIB's adapter (`Runtime.library`), and the Runtime keeps
the version (`Runtime.release`) so that two releases of one library stay apart.  `split_release`
parses such names (it lives in install.py, which runs before any runtime exists)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from ..core.errors import ConfigError
from ..libraries import known_adapters, out_of_tree
from .install import InstallError, load_registry, split_release
from .process import Runtime


def _install_hint(name: str, release: str | None) -> str:
    hint = f"run `nablafuzz install --only {name}`"
    return hint if release else hint + " (or `nablafuzz install` for all four libraries)"


def resolve_runtime(library: str, python_path: Sequence[str] = (), memory_limit_mb: int = 0) -> Runtime:
    """The runtime of `library`: an adapter name (`jax`) or a release of it (`jax@0.10.1`)."""
    try:
        known = known_adapters()
        adapter, release = split_release(library)
    except (LookupError, InstallError) as exc:
        raise ConfigError(str(exc)) from None
    if adapter not in known:
        raise ConfigError(f"unknown library {adapter!r}{f' in {library!r}' if release else ''}: "
                          f"choose from {', '.join(known)}")
    limit = memory_limit_mb or None
    paths = tuple(str(Path(p).resolve()) for p in python_path)
    if adapter == "numpy_ref" or out_of_tree(adapter):
        if release:
            raise ConfigError(f"{library!r}: {adapter} runs in nablafuzz's own interpreter and has no "
                              f"releases to install; name it without {release!r}")
        return Runtime(library, sys.executable, (), limit, paths)
    try:
        entry = load_registry().get(library)
    except InstallError as exc:
        raise ConfigError(str(exc)) from None
    if not entry or not Path(entry["python"]).exists():
        raise ConfigError(f"no runtime installed for {library}: {_install_hint(library, release)}")
    return Runtime(adapter, entry["python"], tuple(sorted(entry.get("env", {}).items())), limit, paths,
                   release)
