"""Helpers shared by the defense layers: argument checks and per-example top-k masks."""

from __future__ import annotations

import math

import tensorflow as tf

from tfrobust import _validate as V


def check_fraction_or_count(name: str, value, *, allow_one: bool = True) -> float | int:
    """A ratio in (0, 1] (float) or a positive count (int)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a float ratio in (0, 1] or a positive int count. "
                        f"Received: {name}={value!r}")
    if isinstance(value, int):
        return V.integer(name, value, minimum=1)
    return V.fraction(name, value, open_min=True, open_max=not allow_one)


def resolve_count(value: float | int, n: int, name: str) -> int:
    """Turn a ratio or count into a count in [1, n] for a layer of ``n`` units."""
    if isinstance(value, int):
        if value > n:
            raise ValueError(f"`{name}`={value} is larger than the {n} units it applies to. "
                             f"Received: {name}={value!r}")
        return value
    return max(1, min(n, int(math.ceil(value * n))))


def check_non_negative(name: str, value) -> float:
    return V.number(name, value, minimum=0.0)


check_choice = V.choice


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


def _at_least(flat: tf.Tensor, thr: tf.Tensor, k: int) -> tf.Tensor:
    """``count(flat >= thr) >= k`` per row [B, 1], in a form int8 conversion keeps exact.

    The counts are computed as the pair ``[c, n - c] / n`` in one tensor (so its calibrated range
    always covers ``k`` from one side or the other) with half-count margins against rounding;
    MEAN, not SUM, because TFLite Micro's int8 SUM aborts on this reduction.
    """
    n = int(flat.shape[-1])
    above = tf.cast(flat >= thr, flat.dtype)  # [B, n]
    both = tf.concat([above, 1.0 - above], axis=1)  # one tensor holds 0s and 1s for every input
    shares = tf.reduce_mean(tf.reshape(both, [-1, 2, n]), axis=2)  # [B, 2]
    if 2 * k <= n:
        return shares[:, :1] > (k - 0.5) / n
    return shares[:, 1:] < (n - k + 0.5) / n


def _times(flag: tf.Tensor, value: tf.Tensor) -> tf.Tensor:
    """``flag * value`` for a bool flag [B, 1] and a non-negative value [B, 1], int8-safe.

    ``[flag, not flag] * value`` is one tensor whose calibrated range always covers ``value``;
    the slice keeps that quantization (a plain product would get a zero-width range whenever
    the flag never fired during calibration). Arithmetic instead of SELECT, which TFLM lacks.
    """
    pair = tf.concat([tf.cast(flag, value.dtype),  # TFLM concatenates no bools
                      tf.cast(tf.logical_not(flag), value.dtype)], axis=1)
    return (pair * value)[:, :1]


def _first(pinned: tf.Tensor) -> tf.Tensor:
    return pinned[:, :1]


def _pad_like(value: tf.Tensor, pinned: tf.Tensor) -> tf.Tensor:
    """``[value, 0, ...]`` with the width of ``pinned``, to add to its first column only."""
    return tf.pad(value, [[0, 0], [0, int(pinned.shape[-1]) - 1]])


def bisection_threshold(flat: tf.Tensor, k: int, steps: int, repair_steps: int = 2) -> tf.Tensor:
    """Per-row threshold t with ``count(flat >= t) >= k``, found by ``steps`` bisection steps.

    Uses only MIN/MAX/compare/mean/pad/arithmetic, so it converts to TFLite builtins that TFLite
    Micro has (no TOPK_V2, no SELECT). After ``s`` steps the threshold is within
    (max - min) / 2^s of the k-th largest value.

    Each step halves the bracket ``[lo, lo + 2w]``: ``lo <- lo + w * [count(flat >= lo + w) >= k]``.
    In float the invariant ``count(flat >= lo) >= k`` holds exactly. A full-integer (int8) model
    needs more, all of it exact no-ops in float:

    * post-training quantization calibrates every intermediate tensor's range on the
      representative data, so a tensor whose values during calibration did not cover those of a
      later input (a decision that was always "no", a threshold that always sat low) saturates.
      Every data-dependent tensor therefore carries values that pin its range: the counts as the
      pair ``[c, n - c] / n`` (:func:`_at_least`), the decisions as ``[d, 1 - d]``
      (:func:`_times`), the threshold as ``[lo, min, max]`` of its row and the step as
      ``[w, max - min]``;
    * each ADD rounds ``lo`` to its own int8 grid, which can lift it just above the k-th value;
      ``repair_steps`` final checks lower it by ``(max - min) / 128`` while the invariant fails.
      An int8 model therefore keeps at least ``k`` values, plus those within that margin.
    """
    lo = tf.reduce_min(flat, axis=1, keepdims=True)
    hi = tf.reduce_max(flat, axis=1, keepdims=True)
    state = tf.concat([lo, lo, hi], axis=1)  # [lo, min, max]: lo's int8 range covers its row's
    span = hi - lo
    pinned_span = tf.concat([span, span], axis=1)  # [x, max - min]: x's int8 range covers the span
    width = pinned_span  # [w, max - min]
    for _ in range(steps):
        width = width * tf.constant([[0.5, 1.0]], flat.dtype)
        w = _first(width)
        enough = _at_least(flat, _first(state + _pad_like(w, state)), k)
        state = state + _pad_like(_times(enough, w), state)
    margin = _first(pinned_span * tf.constant([[1.0 / 128.0, 1.0]], flat.dtype))
    for _ in range(repair_steps):
        short = tf.logical_not(_at_least(flat, _first(state), k))
        state = state - _pad_like(_times(short, margin), state)
    return _first(state)


def feature_shape(input_shape) -> tf.TensorShape:
    """The features' shape for layers called on ``features`` or ``[features, labels]``."""
    if isinstance(input_shape, (list, tuple)) and input_shape and isinstance(
            input_shape[0], (list, tuple, tf.TensorShape)):
        return tf.TensorShape(input_shape[0])
    return tf.TensorShape(input_shape)


def check_steps(name: str, value, low: int = 1, high: int = 64) -> int:
    return V.integer(name, value, minimum=low, maximum=high)
