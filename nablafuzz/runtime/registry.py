"""Which interpreter runs which library: numpy_ref in our own, the rest as `nablafuzz install` recorded.

A release name `LIB@VERSION` (e.g. `jax@0.10.1`) resolves to the venv `nablafuzz install --only
LIB@VERSION` built; its worker still loads LIB's adapter (`Runtime.library`), and the Runtime keeps
the version (`Runtime.release`) so that two releases of one library stay apart.  `split_release`
parses such names (it lives in install.py, which runs before any runtime exists)."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Sequence, Set, Tuple

from ..core.errors import ConfigError
from ..libraries import known_adapters, out_of_tree
from .install import InstallError, load_registry, split_release, state_dir
from .process import Runtime


def _install_hint(name: str, release: str | None) -> str:
    hint = f"run `nablafuzz install --only {name}`"
    return hint if release else hint + " (or `nablafuzz install` for all four libraries)"


# Note [persistent compilation cache]
# A JAX worker compiles each staged scenario once per (API, signature), and loses them all when
# it restarts (a confirmation, a timeout, a crash); a nightly campaign compiles the same programs
# every night.  JAX's persistent compilation cache keeps compiled executables on disk, keyed by
# the program, the backend and the jax / jaxlib versions, so a worker loads what any earlier
# worker compiled.  Every compilation is cached (JAX's default skips those under a second, which
# is nearly all of ours), in `$NABLAFUZZ_HOME/jax-compilation-cache/<runtime>` (one per release).
# The cache is bounded here, not by JAX: with a maximum size set, JAX takes a file lock and
# reads every entry's access time on each write (to find what to evict), so a write cost grew
# with the cache, and a 20-minute campaign filled it with 12,000 entries (its next night's first
# trials ran 2.3x slower than the first night's).  So JAX runs without a bound, and each
# campaign (one process) prunes the directory to CACHE_BYTES once, before its first JAX worker
# starts: least recently used first, by the files' access or modification time, whichever is
# later.  A user's own setting of the directory or the minimum compile time wins (an empty
# JAX_COMPILATION_CACHE_DIR turns the cache off), as does a maximum size (JAX then evicts).
# JAX's cache key holds the compile options, and by default these name a directory inside the
# cache (GPU autotuning results, `jax_persistent_cache_enable_xla_caches`): a cache moved or
# copied elsewhere (another NABLAFUZZ_HOME, a CI cache restored to a new path) missed on every
# entry.  The workers compile for CPU, so those GPU caches are off and the key is the same
# wherever the cache lies.  Measured (bench/results/throughput-same-machine.md).
CACHE_BYTES = 2 << 30
_pruned: Set[Path] = set()


def compilation_cache_env(adapter: str, name: str) -> Tuple[Tuple[str, str], ...]:
    """The environment that gives runtime `name` (of `adapter`) its persistent compilation
    cache (Note [persistent compilation cache]), the cache pruned once per process; () where
    it has none."""
    if adapter != "jax":
        return ()
    cache = state_dir() / "jax-compilation-cache" / name
    ours = (("JAX_COMPILATION_CACHE_DIR", str(cache)), ("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0"),
            ("JAX_PERSISTENT_CACHE_ENABLE_XLA_CACHES", "none"))
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ and cache not in _pruned:
        _pruned.add(cache)
        prune(cache, CACHE_BYTES)
    return tuple((k, v) for k, v in ours if k not in os.environ)


def prune(directory: Path, limit: int) -> int:
    """Deletes the least recently used files of `directory` (by access or modification time,
    the later) until the rest hold at most `limit` bytes; returns how many it deleted.  A file
    another process deletes meanwhile is skipped."""
    files = []
    for entry in os.scandir(directory) if directory.is_dir() else ():
        try:
            st = entry.stat()
        except FileNotFoundError:
            continue
        if entry.is_file():
            files.append((max(st.st_atime, st.st_mtime), st.st_size, entry.path))
    total, deleted = sum(size for _, size, _ in files), 0
    for _, size, path in sorted(files):
        if total <= limit:
            break
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        total, deleted = total - size, deleted + 1
    return deleted


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
    env = tuple(sorted(entry.get("env", {}).items())) + compilation_cache_env(adapter, library)
    return Runtime(adapter, entry["python"], env, limit, paths, release)
