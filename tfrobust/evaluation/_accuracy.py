"""Batched predictions and accuracy for any ``model_fn`` (compiled once per callable)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfrobust.attacks import _common as C


def _forward_impl(model_fn, x, *, eot_samples):
    return C.forward(model_fn, x, eot_samples)


def _check_batch_size(batch_size):
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive int. Received: batch_size={batch_size!r}")
    return batch_size


def predict_logits(model_fn, x, *, batch_size: int = 256) -> np.ndarray:
    """Logits of ``model_fn`` on ``x`` computed in batches, as a float32 NumPy array [N, K].

    The forward pass runs in a ``tf.function`` cached per ``model_fn`` (no retracing for the last,
    smaller batch). An :func:`tfrobust.attacks.eot` wrapper gives logits averaged over its samples.

    Args:
      model_fn: callable mapping float images to logits.
      x: float images [N, ...] (array or tensor).
      batch_size: images per forward pass.

    Returns:
      ``np.ndarray`` of shape [N, K].
    """
    C.check_model_fn(model_fn)
    _check_batch_size(batch_size)
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"`x` must hold float images. Received: x.dtype={x.dtype}")
    outs = []
    for start in range(0, len(x), batch_size):
        xb = tf.constant(x[start:start + batch_size], tf.float32)
        outs.append(C.run(model_fn, "forward", _forward_impl, {}, (xb,)).numpy())
    if not outs:
        return np.zeros((0, 0), np.float32)
    return np.concatenate(outs, 0)


def predict_labels(model_fn, x, *, batch_size: int = 256) -> np.ndarray:
    """``argmax`` of :func:`predict_logits` (int64 [N])."""
    logits = predict_logits(model_fn, x, batch_size=batch_size)
    return np.argmax(logits, axis=1) if logits.size else np.zeros(len(x), np.int64)


def accuracy(model_fn, x, y, *, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model_fn`` on ``(x, y)``; ``y`` holds class indices [N] or one-hot rows.

    Example:
      >>> accuracy(model, x_test, y_test)
      0.91
    """
    y = np.asarray(y)
    if y.ndim == 2:
        y = np.argmax(y, 1)
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"`y` must hold one label per image. Received: y.shape={y.shape} for "
                         f"{len(x)} images")
    if len(y) == 0:
        raise ValueError("`x` must hold at least one image. Received: x of length 0")
    return float(np.mean(predict_labels(model_fn, x, batch_size=batch_size) == y))
