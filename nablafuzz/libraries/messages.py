"""Library error messages that mean "this derivative is not implemented" (Note [undeclared modes]
in compare.py).

Exception types decide first (NotImplementedError is always "unsupported"); the libraries raise
plain errors for several unsupported-derivative cases, so each library's record holds its message
patterns (`Library.unsupported`, one test per row in tests/test_adapter_messages.py).  Any other error in a
derivative mode while the direct call works is a status mismatch, declared or not.  No library
import: the tables are tested without the libraries.
"""
from __future__ import annotations

import functools
import re
from typing import Tuple

from ..core.model import Outcome


@functools.lru_cache(maxsize=None)
def _patterns(library: str) -> Tuple["re.Pattern[str]", ...]:
    from . import record  # the registry reads the library's record (the package imports base, not this)
    return tuple(re.compile(p, re.IGNORECASE | re.DOTALL) for _, p in record(library).unsupported)


def classify_message(library: str, message: str) -> Outcome:
    """UNSUPPORTED where a row of the library's table matches the message, else RAISED."""
    return Outcome.UNSUPPORTED if any(p.search(message) for p in _patterns(library)) else Outcome.RAISED
