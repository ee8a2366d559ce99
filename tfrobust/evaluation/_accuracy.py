"""Batched predictions and accuracy for any ``model_fn`` (compiled once per callable)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfrobust import _validate as V
from tfrobust.attacks import shared as C


def _forward_impl(model_fn, x, *, eot_samples):
    return C.forward(model_fn, x, eot_samples)


def as_arrays(x, y):
    """``(x, y)`` as NumPy arrays; ``x`` may be a ``tf.data.Dataset`` of ``(images, labels)`` batches."""
    if isinstance(x, tf.data.Dataset):
        if y is not None:
            raise ValueError("`y` must be None when `x` is a tf.data.Dataset of (images, labels) batches. "
                             "Received: y of type " + type(y).__name__)
        xs, ys = [], []
        for element in x:
            if not isinstance(element, (tuple, list)) or len(element) != 2:
                raise ValueError("`x` must be a tf.data.Dataset of (images, labels) batches. Received: "
                                 f"elements of type {type(element).__name__}")
            xs.append(np.asarray(element[0]))
            ys.append(np.asarray(element[1]))
        if not xs:
            raise ValueError("`x` must hold at least one batch. Received: an empty tf.data.Dataset")
        return np.concatenate(xs), np.concatenate(ys)
    if y is None:
        raise ValueError("`y` (labels) is required when `x` is an array. Received: y=None")
    return (x.numpy() if isinstance(x, (tf.Tensor, tf.Variable)) else np.asarray(x)), y


def check_images(x, model_fn, *, clip_min=None, clip_max=None):
    """:func:`tfrobust._validate.images` against ``model_fn``'s input shape (when it has one).

    Without a clip range (accuracy, predictions) only the range part of the rule is vacuous: the
    batch's own finite range is passed.
    """
    if clip_min is None:
        arr = np.asarray(x.numpy() if isinstance(x, (tf.Tensor, tf.Variable)) else x)
        if np.issubdtype(arr.dtype, np.floating):
            finite = arr[np.isfinite(arr)]
            clip_min = min(float(finite.min()), 0.0) - 1.0 if finite.size else -1.0
            clip_max = max(float(finite.max()), 1.0) + 1.0 if finite.size else 1.0
        else:
            clip_min, clip_max = 0.0, 1.0  # integer images are refused by the dtype rule first
    return V.images(x, clip_min=clip_min, clip_max=clip_max, model=C.inner_model(model_fn))


def _logits(model_fn, x, batch_size):
    outs = []
    for start in range(0, len(x), batch_size):
        xb = tf.constant(x[start:start + batch_size], tf.float32)
        outs.append(C.run(model_fn, "forward", _forward_impl, {}, (xb,)).numpy())
    return np.concatenate(outs, 0)


def predict_logits(model_fn, x, *, batch_size: int = 256) -> np.ndarray:
    """Logits of ``model_fn`` on ``x`` computed in batches, as a float32 NumPy array [N, K].

    The forward pass runs in a ``tf.function`` cached per ``model_fn`` (no retracing for the last,
    smaller batch). An :func:`tfrobust.attacks.eot` wrapper gives logits averaged over its samples.

    Args:
      model_fn: callable mapping float images to logits.
      x: float images [N, ...] (array or tensor) of the model's input shape.
      batch_size: images per forward pass.

    Returns:
      ``np.ndarray`` of shape [N, K].

    Raises:
      ValueError / TypeError: a bad argument, ``x`` of another shape than a Keras model's input.
    """
    C.check_model_fn(model_fn)
    V.integer("batch_size", batch_size, minimum=1)
    return _logits(model_fn, check_images(x, model_fn), batch_size)


def predict_labels(model_fn, x, *, batch_size: int = 256) -> np.ndarray:
    """``argmax`` of :func:`predict_logits` (int64 [N])."""
    return np.argmax(predict_logits(model_fn, x, batch_size=batch_size), axis=1)


def accuracy(model_fn, x, y=None, *, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model_fn`` on ``(x, y)``.

    Args:
      model_fn: callable mapping float images to logits.
      x: float images [N, ...], or a ``tf.data.Dataset`` of ``(images, labels)`` batches (then
        ``y`` is None).
      y: class indices [N] or one-hot rows [N, K], in ``[0, num_classes)``.
      batch_size: images per forward pass.

    Raises:
      ValueError / TypeError: bad arguments, images of another shape than a Keras model's input,
        labels outside the model's classes.

    Example:
      >>> accuracy(model, x_test, y_test)
      0.91
    """
    C.check_model_fn(model_fn)
    V.integer("batch_size", batch_size, minimum=1)
    x, y = as_arrays(x, y)
    x = check_images(x, model_fn)
    logits = _logits(model_fn, x, batch_size)
    y = V.labels(y, n=len(x), num_classes=logits.shape[1])
    return float(np.mean(np.argmax(logits, axis=1) == y))
