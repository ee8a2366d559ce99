"""The single place where tfrobust imports Keras.

tfrobust uses the Keras 2 API through the ``tf_keras`` package: TF-MOT 0.8.x and the TFLite
deployment tool chain only accept tf_keras models (see ``docs/architecture.md``). Every other module
does ``from tfrobust._keras import keras``; a future Keras 3 port then touches this file only.

Importing this module never mutates the environment (no ``TF_USE_LEGACY_KERAS`` here); the
CLI entry point and the test suite set it before TensorFlow is imported, because TF-MOT needs it.
"""

from __future__ import annotations

import tf_keras as keras

__all__ = ["keras", "is_keras3_object", "check_tf_keras_model"]


def is_keras3_object(obj) -> bool:
    """True when ``obj`` is a Keras 3 (``keras`` package) layer or model, not a tf_keras one."""
    for cls in type(obj).__mro__:
        module = cls.__module__ or ""
        if module == "keras" or module.startswith("keras."):
            return True
    return False


def check_tf_keras_model(model, *, argument: str = "model") -> None:
    """Raise a clear ``TypeError`` unless ``model`` is a tf_keras ``Model``.

    Args:
      model: the object to check.
      argument: the argument name used in the error message.

    Raises:
      TypeError: for a Keras 3 model (the most common mistake: ``import keras`` under TF >= 2.16
        gives Keras 3) or any other object.
    """
    if isinstance(model, keras.Model):
        return
    if is_keras3_object(model):
        raise TypeError(
            f"`{argument}` is a Keras 3 model, but this function needs a tf_keras (Keras 2 API) "
            "model because TF-MOT and the TFLite tool chain only accept those. Build it with "
            "`from tfrobust._keras import keras` (or `import tf_keras as keras`), or rebuild it "
            "with a tfrobust.models builder. Received: "
            f"{argument}={type(model).__module__}.{type(model).__name__}"
        )
    raise TypeError(
        f"`{argument}` must be a tf_keras Model. Received: {argument} of type "
        f"{type(model).__module__}.{type(model).__name__}"
    )
