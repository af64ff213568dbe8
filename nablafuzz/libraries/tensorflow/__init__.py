"""TensorFlow: what nablafuzz knows about it (the adapter is adapter.py, run in its worker)."""
from __future__ import annotations

from ..descriptor import Library, Renderer
from ..entry_points import tensorflow_transforms
from ..scripts import COMPOSED, JVP_OF_JVP
from .script import TEXT

LIBRARY = Library(
    "tensorflow", "nablafuzz.libraries.tensorflow.adapter:make_adapter",
    Renderer(("import tensorflow as tf",), (("tf", "tf"), ("tensorflow", "tf")),
             TEXT + JVP_OF_JVP + COMPOSED, compiler="tf.function(jit_compile=True)",
             permute="tf.transpose({x}, {p})",
             triangle=("tf.linalg.band_part({x}, -1, 0)", "tf.linalg.band_part({x}, 0, -1)"),
             dtype="tf.as_dtype({name!r})", entry="tensorflow_transforms(tf, to_numpy)",
             entry_helpers=(tensorflow_transforms,)),
    unsupported=(
        ("no_gradient_defined", r"No gradient defined for operation"),
        ("gradient_registry_no_entry", r"gradient registry has no entry"),
        # vectorized_map (pfor) of a function with tf.cond: documented as unsupported control flow
        ("pfor_control_flow", r"Required handle data not set for <tf\.Tensor 'loop_body/"),
    ),
    numpy_prefixes=("tf.experimental.numpy.",),
    where="tf.where",
    # its workers run oneDNN off for reproducible numerics; users run it on: the other kernels
    kernels_env=(("TF_ENABLE_ONEDNN_OPTS", "1"),),
    env_report="`tf.sysconfig.get_build_info()`",
    entry_points=True,
    staged=True,
    eager_differs=True,
    namespaces=("tf.math.", "tf.", "tf.nn.", "tf.linalg.", "tf.signal.", "tf.keras.activations.",
                "tf.experimental.numpy.", "tf.raw_ops."),
)
