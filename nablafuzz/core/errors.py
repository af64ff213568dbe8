"""Errors the user can act on.  Each message names the file or object, the field and the fix."""
from __future__ import annotations


class NablaError(Exception):
    """Base class: the CLI prints the message (no stack trace) and exits with status 2."""


class ConfigError(NablaError):
    pass


class SpecError(NablaError):
    def __init__(self, source: str, api: str, field: str, problem: str, fix: str):
        self.source, self.api, self.field = source, api, field
        where = f"{source}: {api}" if api else source
        super().__init__(f"{where}: field '{field}': {problem} (fix: {fix})")


class ReportError(NablaError):
    pass


class WorkerError(NablaError):
    pass


class RefusedError(NablaError):
    """A report or request names something no loaded spec declares."""


class BudgetExhausted(Exception):
    """The campaign's budget ran out during a request: the trial is abandoned, not judged."""
