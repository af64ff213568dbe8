"""A live progress bar with counts (rich); a plain line every few seconds when not on a terminal."""
from __future__ import annotations

import time
from typing import Optional

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..core.config import Config
from .stats import Observation


class ProgressView:
    def __init__(self, config: Config):
        self.console = Console(stderr=True)
        self.total = None  # trials are budget-bounded; the bar counts up
        self.counts = {"trials": 0, "valid": 0, "candidates": 0, "findings": 0, "new": 0}
        self.progress: Optional[Progress] = None
        self.task = None
        self.last_line = 0.0

    def __enter__(self) -> "ProgressView":
        if self.console.is_terminal:
            self.progress = Progress(TextColumn("[bold]nablafuzz"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.description}"), TimeElapsedColumn(), console=self.console)
            self.progress.start()
            self.task = self.progress.add_task("", total=None)
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()

    def describe(self) -> str:
        c = self.counts
        return (f"valid {c['valid']}  candidates {c['candidates']}  findings {c['findings']}  "
                f"new reports {c['new']}")

    def update(self, obs: Observation) -> None:
        c = self.counts
        c["trials"] += 1
        c["valid"] += obs.valid
        c["candidates"] += obs.candidates
        c["findings"] += len(obs.findings)
        c["new"] += len(obs.new)
        if self.progress is not None:
            self.progress.update(self.task, completed=c["trials"], description=self.describe())
        elif time.monotonic() - self.last_line > 10:
            self.last_line = time.monotonic()
            self.console.print(f"[{c['trials']} trials] {self.describe()}  (last: {obs.api})", highlight=False)
