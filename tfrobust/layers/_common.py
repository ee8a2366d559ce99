"""Helpers shared by the defense layers: argument checks and per-example top-k masks."""

from __future__ import annotations

import math

import tensorflow as tf


def check_fraction_or_count(name: str, value, *, allow_one: bool = True) -> float | int:
    """A ratio in (0, 1] (float) or a positive count (int)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a float ratio in (0, 1] or a positive int count. "
                        f"Received: {name}={value!r}")
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"`{name}` as a count must be >= 1. Received: {name}={value!r}")
        return value
    if not (0.0 < value <= 1.0) or (value == 1.0 and not allow_one) or math.isnan(value):
        raise ValueError(f"`{name}` as a ratio must be in (0, 1]. Received: {name}={value!r}")
    return float(value)


def resolve_count(value: float | int, n: int, name: str) -> int:
    """Turn a ratio or count into a count in [1, n] for a layer of ``n`` units."""
    if isinstance(value, int):
        if value > n:
            raise ValueError(f"`{name}`={value} is larger than the {n} units it applies to. "
                             f"Received: {name}={value!r}")
        return value
    return max(1, min(n, int(math.ceil(value * n))))


def check_non_negative(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
        raise ValueError(f"`{name}` must be a non-negative number. Received: {name}={value!r}")
    return float(value)


def check_choice(name: str, value, choices) -> str:
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}. Received: {name}={value!r}")
    return value


def topk_mask(flat: tf.Tensor, k: int) -> tf.Tensor:
    """0/1 mask with exactly ``k`` ones per row at the ``k`` largest entries of ``flat`` [B, n].

    Ties are broken towards the lower index (``tf.math.top_k``'s documented order), so the
    result is deterministic and has exactly ``k`` ones per row.
    """
    _, idx = tf.math.top_k(flat, k=k, sorted=True)
    batch = tf.shape(flat)[0]
    rows = tf.broadcast_to(tf.range(batch)[:, None], tf.shape(idx))
    coords = tf.stack([rows, idx], axis=-1)
    return tf.scatter_nd(coords, tf.ones(tf.shape(idx), flat.dtype), tf.shape(flat))


def bisection_threshold(flat: tf.Tensor, k: int, steps: int) -> tf.Tensor:
    """Per-row threshold t with ``count(flat >= t) >= k``, found by ``steps`` bisection steps.

    Uses only MIN/MAX/compare/sum/arithmetic, so it converts to TFLite builtins that TFLite Micro
    has (no TOPK_V2, no SELECT). After ``s`` steps the threshold is within (max - min) / 2^s of the
    k-th largest value; on int8 data 8 steps are exact.
    """
    lo = tf.reduce_min(flat, axis=1, keepdims=True)
    hi = tf.reduce_max(flat, axis=1, keepdims=True)
    kf = tf.cast(k, flat.dtype)
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        count = tf.reduce_sum(tf.cast(flat >= mid, flat.dtype), axis=1, keepdims=True)
        enough = tf.cast(count >= kf, flat.dtype)  # arithmetic blend instead of SELECT (TFLM)
        lo = enough * mid + (1.0 - enough) * lo
        hi = enough * hi + (1.0 - enough) * mid
    return lo


def feature_shape(input_shape) -> tf.TensorShape:
    """The features' shape for layers called on ``features`` or ``[features, labels]``."""
    if isinstance(input_shape, (list, tuple)) and input_shape and isinstance(
            input_shape[0], (list, tuple, tf.TensorShape)):
        return tf.TensorShape(input_shape[0])
    return tf.TensorShape(input_shape)


def check_steps(name: str, value, low: int = 1, high: int = 64) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"`{name}` must be an int in [{low}, {high}]. Received: {name}={value!r}")
    return value
