"""Library error messages that mean "this derivative is not implemented" (Note [undeclared modes]
in compare.py).

Exception types decide first (NotImplementedError is always "unsupported"); the libraries raise
plain errors for several unsupported-derivative cases, so each library's record holds its message
patterns (`Library.unsupported`, one test per row in tests/test_adapter_messages.py).  Any other error in a
derivative mode while the direct call works is a status mismatch, declared or not.  No library
import: the tables are tested without the libraries.
"""
from __future__ import annotations

import re
from typing import Dict, Tuple

from ..core.model import Outcome


def _patterns(library: str) -> Tuple["re.Pattern[str]", ...]:
    from . import describe  # the registry reads the library's record (the package imports base, not this)
    try:
        rows = describe(library).unsupported
    except LookupError:
        rows = ()
    return tuple(re.compile(p, re.IGNORECASE | re.DOTALL) for _, p in rows)


_COMPILED: Dict[str, Tuple["re.Pattern[str]", ...]] = {}


def classify_message(library: str, message: str) -> Outcome:
    """UNSUPPORTED where a row of the library's table matches the message, else RAISED."""
    if library not in _COMPILED:
        _COMPILED[library] = _patterns(library)
    return Outcome.UNSUPPORTED if any(p.search(message) for p in _COMPILED[library]) else Outcome.RAISED
