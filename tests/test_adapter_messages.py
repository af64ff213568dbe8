"""The tables of "derivative not implemented" messages, one real message per row (collected from
torch 2.13, jax 0.10, tensorflow 2.21 and oneflow 0.9), and errors that are not in them."""
from __future__ import annotations

import pytest

from nablafuzz.core.model import Outcome
from nablafuzz.libraries import LIBRARIES, describe
from nablafuzz.libraries.messages import classify_message

MESSAGES = {
    ("torch", "derivative_not_implemented"): "derivative for aten::hardsigmoid_backward is not implemented",
    ("torch", "forward_ad_not_implemented"): "Trying to use forward AD with cholesky that does not support it because "
                                             "it has not been implemented yet. Please file an issue to PyTorch",
    ("torch", "custom_function_without_jvp"): "You must implement the jvp function for custom autograd.Function to use "
                                              "it with forward mode AD.",
    ("torch", "custom_function_in_torch_func"): "In order to use an autograd.Function with functorch transforms (vmap, "
                                                "grad, jvp, jacrev, ...), it must override the setup_context staticmethod.",
    ("torch", "nested_forward_ad"): "Nested forward mode AD is not supported at the moment",
    ("torch", "no_batching_rule"): "Error: aten::as_strided_scatter requires special handling, and does not yet have "
                                   "a batching rule. Feel free to file a github issue!",
    ("tensorflow", "pfor_control_flow"): "ValueError: in user code: ValueError: Required handle data not set for "
                                         "<tf.Tensor 'loop_body/cond/pfor/cond/PartitionedCall:1' shape=() dtype=resource>",
    ("torch", "batching_rule_not_implemented"): "Batching rule not implemented for aten::_neg_view; the fallback path "
                                                "doesn't work on out= or view ops.",
    ("torch", "vmap_randomness"): "vmap: called random operation while in randomness error mode. Please either use the "
                                  "'same' or 'different' randomness flags on vmap or perform the randomness operation "
                                  "out of vmap",
    ("jax", "custom_vjp_forward_mode"): "can't apply forward-mode autodiff (jvp) to a custom_vjp function.",
    ("jax", "while_loop_reverse_mode"): "Reverse-mode differentiation does not work for lax.while_loop or lax.fori_loop "
                                        "with dynamic start/stop values. Try using lax.scan, or using fori_loop with "
                                        "static start/stop.",
    ("jax", "callback_without_jvp"): "Pure callbacks do not support JVP. Please use `jax.custom_jvp` to use callbacks "
                                     "while taking gradients.",
    ("jax", "needs_concrete_value"): "jax.errors.TracerIntegerConversionError: The __index__() method was called on "
                                     "traced array with shape int32[]",
    ("tensorflow", "no_gradient_defined"): "No gradient defined for operation 'IdentityN' (op type: Bucketize).",
    ("tensorflow", "gradient_registry_no_entry"): "gradient registry has no entry for: Bucketize",
    ("oneflow", "gradient_function_not_found"): "The gradient function for op truncdiv_x_grad is not found. Please check "
                                                "whether it has been implemented and registered correctly.",
    ("oneflow", "not_implemented"): "Check failed: backward of op searchsorted is not implemented",
    ("oneflow", "no_backward"): "op fused_scale_tril does not support backward",
}
ROWS = [(lib, name) for lib in LIBRARIES for name, _ in describe(lib).unsupported]


@pytest.mark.parametrize("library, row", ROWS, ids=[f"{lib}-{row}" for lib, row in ROWS])
def test_each_row_classifies_its_message_as_unsupported(library, row):
    assert classify_message(library, MESSAGES[(library, row)]) is Outcome.UNSUPPORTED
    assert classify_message("numpy_ref", MESSAGES[(library, row)]) is Outcome.RAISED  # only its own table


@pytest.mark.parametrize("library, message", [
    ("torch", "Function ScatterAddBackward0 returned an invalid gradient at index 1 - got [3] but expected shape "
              "compatible with [2, 3]"),
    ("jax", "TypeError: mul got incompatible shapes for broadcasting: (3,), (4,)."),
    ("tensorflow", "Incompatible shapes: [2,3] vs. [3,2] [Op:Mul]"),
    ("oneflow", "Check failed: (x->shape()) == (dy->shape())"),
])
def test_internal_errors_of_derivative_code_are_raised(library, message):
    assert classify_message(library, message) is Outcome.RAISED
