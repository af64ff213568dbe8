"""The signatures whose eager first trial found nothing, kept from one campaign to the next.

Note [eager checks kept]
A staged campaign runs the first trial of each signature eagerly where the library's eager path
differs (Note [eager first] in loop.py): what it checks follows the signature, not the values.
The same release, spec, scenarios and signature would check the same thing again, and a
signature pool keeps its first generation for KEEP nights (specs/pool.py), so on TensorFlow the
next night paid again for every eager first trial of the night before (on this machine kind
the largest share of a 20-minute campaign, 1.4 s each).  So a campaign directory keeps the keys
of the eager first trials that were valid, found nothing and lost no worker (`eager-checked.txt`,
one key a line, appended as they pass): a later campaign there, a resumed one included, runs those
signatures staged from their first trial.  A key is a digest of the worker's library versions,
the whole spec, the scenarios and the trial with its tensors' values left out (dtypes, shapes,
Python values): a new release, an edited spec or more scenarios check again.  An eager first
trial that found something is not kept, so its signature is checked eagerly every night.
Worker-thread-safe.
"""
from __future__ import annotations

import os
import threading
from dataclasses import replace
from pathlib import Path
from typing import Sequence, Set

from ..core.codec import digest
from ..core.model import ApiSpec, InputValue, TensorRecord, Trial
from ..reports.store import write_atomic

FILE = "eager-checked.txt"
LIMIT = 200_000  # keys kept; beyond, the older half is dropped when a campaign starts


def check_key(spec: ApiSpec, trial: Trial, scenarios: Sequence[str], versions: Sequence[str]) -> str:
    """What an eager first trial of `trial`'s signature checks (Note [eager checks kept])."""
    signature = replace(trial, seed=0, regime="", inputs=tuple(_without_values(i) for i in trial.inputs))
    return digest((tuple(versions), spec, tuple(scenarios), signature), 32)


def _without_values(value: InputValue) -> InputValue:
    v = value.value
    if isinstance(v, TensorRecord):
        return replace(value, value=replace(v, values=()))
    if isinstance(v, tuple) and any(isinstance(t, TensorRecord) for t in v):
        return replace(value, value=tuple(replace(t, values=()) if isinstance(t, TensorRecord) else t for t in v))
    return value


class EagerChecks:
    """The keys of a campaign directory's passed eager first trials."""

    def __init__(self, directory: Path):
        self.path = directory / FILE
        self.lock = threading.Lock()
        lines = self.path.read_text(errors="replace").split() if self.path.is_file() else []
        if len(lines) > LIMIT:
            lines = lines[-LIMIT // 2:]
            write_atomic(self.path, "".join(k + "\n" for k in lines))
        self.keys: Set[str] = set(lines)

    def __contains__(self, key: str) -> bool:
        with self.lock:
            return key in self.keys

    def add(self, key: str) -> None:
        """Keeps `key`: one line appended (a line this short is written whole, whoever else appends)."""
        with self.lock:
            if key in self.keys:
                return
            self.keys.add(key)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, (key + "\n").encode())
            finally:
                os.close(fd)
