"""Several runtimes at once: one runner per library, started on first use (a cross-library
trial, the equivalence-map derivation, replays of cross reports)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, Sequence, Tuple

from ..core.errors import ConfigError
from .process import Runtime
from .registry import resolve_runtime
from .runner import Runner, versions_of


@dataclass
class Members:
    """The runners of one worker thread, one per member library (started on first use)."""

    start: Callable[[str], Runner]
    runners: Dict[str, Runner] = field(default_factory=dict)
    stopped: Dict[str, str] = field(default_factory=dict)  # library -> why its runtime was given up

    def __getitem__(self, library: str) -> Runner:
        if library not in self.runners:
            self.runners[library] = self.start(library)
        return self.runners[library]

    def close(self) -> None:
        for r in self.runners.values():
            r.close()

    def versions(self, libraries: Sequence[str]) -> Tuple[str, ...]:
        """The versions the named members' workers report, sorted, each once (two releases share numpy)."""
        return tuple(sorted({v for lib in libraries for v in versions_of(self[lib])}))


def runners_of(runners: Dict[str, Any]) -> Iterator[Runner]:
    """Every runner of a thread's set (library or key -> Runner or Members), members included."""
    for r in runners.values():
        yield from r.runners.values() if isinstance(r, Members) else (r,)


def installed_runtimes(libraries: Sequence[str], python_path: Sequence[str] = ()) -> Dict[str, Runtime]:
    """The runtimes of those `libraries` that are installed (the others are left out)."""
    out = {}
    for library in libraries:
        try:
            out[library] = resolve_runtime(library, python_path)
        except ConfigError:
            continue
    return out
