"""Which interpreter runs which library: numpy_ref in our own, the rest as `nablafuzz install` recorded."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from ..core.errors import ConfigError
from ..libraries import known_adapters, out_of_tree
from .install import InstallError, load_registry
from .process import Runtime


def resolve_runtime(library: str, python_path: Sequence[str] = (), memory_limit_mb: int = 0) -> Runtime:
    try:
        known = known_adapters()
    except LookupError as exc:
        raise ConfigError(str(exc)) from None
    if library not in known:
        raise ConfigError(f"unknown library {library!r}: choose from {', '.join(known)}")
    limit = memory_limit_mb or None
    paths = tuple(str(Path(p).resolve()) for p in python_path)
    if library == "numpy_ref" or out_of_tree(library):
        return Runtime(library, sys.executable, (), limit, paths)
    try:
        entry = load_registry().get(library)
    except InstallError as exc:
        raise ConfigError(str(exc)) from None
    if not entry or not Path(entry["python"]).exists():
        raise ConfigError(f"no runtime installed for {library}: run `nablafuzz install --only {library}` "
                          "(or `nablafuzz install` for all four libraries)")
    return Runtime(library, entry["python"], tuple(sorted(entry.get("env", {}).items())), limit, paths)
