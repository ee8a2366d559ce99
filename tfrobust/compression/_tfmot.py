"""Guarded access to TensorFlow Model Optimization (TF-MOT).

TF-MOT 0.8.x sets ``os.environ["TF_USE_LEGACY_KERAS"] = "1"`` when it is imported. If TensorFlow was
imported before without that switch, ``tf.keras`` is then whatever was touched first: Keras 3 if
the user's code had already used it, tf_keras otherwise -- so one process can silently hold both
Keras versions, and ``tf.keras`` changes meaning depending on import order. tfrobust never mutates
the environment; instead, :func:`tfmot` refuses to import TF-MOT unless the switch was already set,
with a message that says exactly where to set it.
"""

from __future__ import annotations

import os
import sys

_TRUE = ("1", "true", "True", "TRUE", "yes")

_MESSAGE = (
    "TF-MOT (tensorflow_model_optimization) needs the environment variable TF_USE_LEGACY_KERAS=1 set "
    "*before TensorFlow is first imported*; otherwise importing TF-MOT flips it mid-process and "
    "`tf.keras` may refer to Keras 3 in one place and tf_keras in another. Fix: start the process "
    "with `TF_USE_LEGACY_KERAS=1 python ...`, or put `import os; "
    "os.environ['TF_USE_LEGACY_KERAS'] = '1'` at the very top of your entry script, before any "
    "`import tensorflow` (the `tfrobust` CLI and the test suite already do this). "
    "Received: TF_USE_LEGACY_KERAS={value!r}"
)


def legacy_keras_enabled() -> bool:
    """True when ``TF_USE_LEGACY_KERAS`` is set to a true value in this process."""
    return os.environ.get("TF_USE_LEGACY_KERAS", "") in _TRUE


def tfmot():
    """Import and return ``tensorflow_model_optimization``, refusing a mixed-Keras process.

    Returns:
      The ``tensorflow_model_optimization`` module.

    Raises:
      RuntimeError: when TF-MOT is not imported yet and ``TF_USE_LEGACY_KERAS`` is not set (it
        must precede the first ``import tensorflow``). When TF-MOT was already imported by the
        user, it is returned as is: the switch has been flipped by then and cannot be checked.
    """
    module = sys.modules.get("tensorflow_model_optimization")
    if module is not None:
        return module
    if not legacy_keras_enabled():
        raise RuntimeError(_MESSAGE.format(value=os.environ.get("TF_USE_LEGACY_KERAS")))
    import tensorflow_model_optimization as module

    return module
