"""TensorFlow functions with planted AD behaviour (named `helper_tf_ops:NAME`)."""
import tensorflow as tf


def half_stopped(x):
    """2x, of which AD sees only x: both AD modes say 1, finite differences 2."""
    return x + tf.stop_gradient(x)


def leaves_recording_stopped(x):
    """sin that stops gradient recording on this thread and never restarts it."""
    from tensorflow.python import pywrap_tfe
    y = tf.sin(x)
    pywrap_tfe.TFE_Py_TapeSetStopOnThread()
    return y


def reads_a_value(x):
    """sin or cos by the sign of sum(x), read as a Python float: fine eagerly, and no graph can
    (a symbolic tensor has no value)."""
    return tf.sin(x) if float(tf.reduce_sum(x)) > 0 else tf.cos(x)
