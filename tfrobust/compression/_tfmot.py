"""Guarded access to TensorFlow Model Optimization (TF-MOT).

TF-MOT 0.8.x sets ``os.environ["TF_USE_LEGACY_KERAS"] = "1"`` when it is imported. If TensorFlow was
imported before without that switch, ``tf.keras`` is then whatever was touched first: Keras 3 if
the user's code had already used it, tf_keras otherwise -- so one process can silently hold both
Keras versions, and ``tf.keras`` changes meaning depending on import order. tfrobust never mutates
the environment for the user. :func:`tfmot` imports TF-MOT

* as is when the switch was set before TensorFlow's first import (``tf.keras`` is tf_keras);
* otherwise (a Keras 3 process) after resolving ``tf.keras`` to what this process already uses
  (Keras 3), so TF-MOT's own check sees Keras 3 and takes ``tf_keras`` directly; the switch TF-MOT
  sets is then removed again. The process keeps ``tf.keras`` and its environment as they were, and
  TF-MOT works on tf_keras models (Keras 3 ones go through ``tfrobust.utils.to_tf_keras``).
  If TF-MOT still ends up on anything but tf_keras, the import is refused with a message that
  says where to set the switch instead.
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
    """Import and return ``tensorflow_model_optimization`` working on tf_keras, environment intact.

    Returns:
      The ``tensorflow_model_optimization`` module.

    Raises:
      RuntimeError: when TF-MOT would not run on tf_keras in this process (the message says to set
        ``TF_USE_LEGACY_KERAS=1`` before the first ``import tensorflow``). When TF-MOT was already
        imported by the user, it is returned as is.
    """
    module = sys.modules.get("tensorflow_model_optimization")
    if module is not None:
        return module
    if legacy_keras_enabled():
        import tensorflow_model_optimization as module

        return module
    import tensorflow as tf
    import tf_keras

    previous = os.environ.get("TF_USE_LEGACY_KERAS")
    version = getattr(tf.keras, "version", None)  # resolves tf.keras now, without the switch
    try:
        import tensorflow_model_optimization as module  # sets the switch (TF-MOT's compat module)
        from tensorflow_model_optimization.python.core.keras import compat
    finally:
        if previous is None:
            os.environ.pop("TF_USE_LEGACY_KERAS", None)
        else:
            os.environ["TF_USE_LEGACY_KERAS"] = previous
    if compat.keras is not tf_keras:
        raise RuntimeError(_MESSAGE.format(value=previous) + f" (tf.keras here is "
                           f"{version() if callable(version) else 'unknown'}, and TF-MOT took it)")
    return module
