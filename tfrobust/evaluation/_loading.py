"""Load a saved model as a ``model_fn`` for attacks and evaluation (used by the CLI)."""

from __future__ import annotations

import importlib
from pathlib import Path

from tfrobust._keras import load_model


def load_model_fn(path):
    """Load a Keras model (``.keras``, ``.h5``) or a SavedModel folder as a differentiable ``model_fn``.

    The format and the Keras that wrote the file are read from the file
    (:func:`tfrobust._keras.file_format`): Keras 3 files load as Keras 3 models, tf_keras ones as
    tf_keras models. tfrobust's serializable layers are registered first, so models with defense
    layers load.
    A SavedModel without Keras metadata is wrapped through its ``serving_default`` signature.
    ``.tflite`` files are refused: gradient attacks need gradients (use
    ``tfrobust.tflite_tools.TFLiteModel`` with a gradient-free attack such as ``one_pixel``).

    Args:
      path: file or folder.

    Returns:
      ``(model_fn, model)``: the callable and the object to inspect for declared layers.

    Raises:
      FileNotFoundError: when ``path`` does not exist.
      ValueError: for a ``.tflite`` file, or a file that cannot be read (the message names the
        detected format, the Keras that wrote it, and why loading failed).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"`model` not found. Received: model={str(path)!r}")
    if path.suffix == ".tflite":
        raise ValueError("`model` is a .tflite file, which has no gradients; gradient attacks and "
                         "evaluation presets need the Keras model (attack a .tflite with "
                         f"tfrobust.attacks.one_pixel on a TFLiteModel). Received: model={str(path)!r}")
    importlib.import_module("tfrobust.layers")  # registers the serializable layers

    if path.is_dir() and not (path / "keras_metadata.pb").exists():
        import tensorflow as tf

        loaded = tf.saved_model.load(str(path))
        signature = loaded.signatures["serving_default"]
        name = next(iter(signature.structured_input_signature[1]))

        def model_fn(x):
            return signature(**{name: x})

        return model_fn, loaded
    model = load_model(path)
    return model, model
