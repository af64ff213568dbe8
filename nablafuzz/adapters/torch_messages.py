"""PyTorch error messages that mean "this derivative is not implemented".

Exception types decide first (NotImplementedError is always "unsupported"); PyTorch raises a
plain RuntimeError for several unsupported-derivative cases, so those few message patterns
live here, in one table with one test per row (tests/test_adapter_torch.py).  No torch import:
the table is tested without the library.
"""
from __future__ import annotations

import re
from typing import Tuple

from ..model import Outcome

UNSUPPORTED_PATTERNS: Tuple[Tuple[str, str], ...] = (
    ("derivative_not_implemented", r"derivative for .* is not implemented"),
    ("forward_ad_not_implemented", r"Trying to use forward AD with .* that does not support it"),
    ("custom_function_without_jvp", r"must implement the jvp function for custom autograd\.Function"),
    ("custom_function_in_torch_func", r"autograd\.Function with functorch transforms .* must override the setup_context"),
)
_UNSUPPORTED = [re.compile(p, re.IGNORECASE | re.DOTALL) for _, p in UNSUPPORTED_PATTERNS]


def classify_message(message: str) -> Outcome:
    return Outcome.UNSUPPORTED if any(p.search(message) for p in _UNSUPPORTED) else Outcome.RAISED



