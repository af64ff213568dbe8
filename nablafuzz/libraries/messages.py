"""Library error messages that mean "this derivative is not implemented" (Note [undeclared modes]
in compare.py).

Exception types decide first (NotImplementedError is always "unsupported"); the libraries raise
plain errors for several unsupported-derivative cases, so those message patterns live here, one
table per library with one test per row (tests/test_adapter_messages.py).  Any other error in a
derivative mode while the direct call works is a status mismatch, declared or not.  No library
import: the tables are tested without the libraries.
"""
from __future__ import annotations

import re
from typing import Dict, Tuple

from ..core.model import Outcome

Rows = Tuple[Tuple[str, str], ...]  # (row name, regular expression)
UNSUPPORTED_PATTERNS: Dict[str, Rows] = {
    "torch": (
        ("derivative_not_implemented", r"derivative for .* is not implemented"),
        ("forward_ad_not_implemented", r"Trying to use forward AD with .* that does not support it"),
        ("custom_function_without_jvp", r"must implement the jvp function for custom autograd\.Function"),
        ("custom_function_in_torch_func", r"autograd\.Function with functorch transforms .* must override the setup_context"),
        ("nested_forward_ad", r"Nested forward mode AD is not supported"),
        ("no_batching_rule", r"does not yet have a batching rule"),
        ("batching_rule_not_implemented", r"Batching rule not implemented for"),
        # vmap's default randomness="error" refuses a random op by design (torch.func docs)
        ("vmap_randomness", r"called random operation while in randomness error mode"),
    ),
    "jax": (
        ("custom_vjp_forward_mode", r"can't apply forward-mode autodiff \(jvp\) to a custom_vjp"),
        ("while_loop_reverse_mode", r"Reverse-mode differentiation does not work for lax\.while_loop"),
        ("callback_without_jvp", r"Pure callbacks do not support JVP"),
        # jit traces array arguments: an API that needs a concrete value (an index, a shape)
        # cannot be compiled so, which is the compiled scenario's limit, not a derivative bug
        ("needs_concrete_value", r"TracerIntegerConversionError|ConcretizationTypeError|TracerBoolConversionError"),
    ),
    "tensorflow": (
        ("no_gradient_defined", r"No gradient defined for operation"),
        ("gradient_registry_no_entry", r"gradient registry has no entry"),
        # vectorized_map (pfor) of a function with tf.cond: documented as unsupported control flow
        ("pfor_control_flow", r"Required handle data not set for <tf\.Tensor 'loop_body/"),
    ),
    "oneflow": (
        ("gradient_function_not_found", r"gradient function for op \S+ is not found"),
        ("not_implemented", r"not implemented"),
        ("no_backward", r"does not support (backward|grad)"),
    ),
}
_COMPILED = {lib: [re.compile(p, re.IGNORECASE | re.DOTALL) for _, p in rows]
             for lib, rows in UNSUPPORTED_PATTERNS.items()}


def classify_message(library: str, message: str) -> Outcome:
    """UNSUPPORTED where a row of the library's table matches the message, else RAISED."""
    return Outcome.UNSUPPORTED if any(p.search(message) for p in _COMPILED.get(library, ())) else Outcome.RAISED
