"""Adaptive gradient clipping (AGC) of NFNets: clip each unit's gradient relative to its weights."""

from __future__ import annotations

import tensorflow as tf

from tfrobust import _validate as V


def unitwise_norm(x: tf.Tensor) -> tf.Tensor:
    """Frobenius norm per output unit, broadcastable to ``x``.

    Scalars and vectors (biases, gains) use their whole norm; a Dense kernel ``[in, out]`` reduces
    axis 0 (one norm per output unit); a conv kernel ``[kh, kw, in, out]`` (or a 3-D kernel)
    reduces every axis but the last, matching the NFNet reference code.
    """
    rank = x.shape.rank
    if rank is None:
        raise ValueError(f"`x` must have a known rank. Received: x.shape={x.shape}")
    if rank <= 1:
        return tf.norm(x)
    axes = list(range(rank - 1))
    return tf.sqrt(tf.reduce_sum(tf.square(x), axis=axes, keepdims=True))


def check_agc_args(clipping, eps):
    V.number("clipping", clipping, minimum=0.0, open_min=True)
    V.number("eps", eps, minimum=0.0, open_min=True)


def adaptive_clip_gradients(grads, params, *, clipping: float = 0.01, eps: float = 1e-3):
    """Unit-wise adaptive gradient clipping (Brock et al. 2021).

    For each unit ``i`` of each parameter ``W`` with gradient ``G``::

        G_i <- lambda * max(||W_i||, eps) / ||G_i|| * G_i   if ||G_i|| / max(||W_i||, eps) > lambda
        G_i <- G_i                                          otherwise

    with Frobenius norms over the unit (see :func:`unitwise_norm`), ``lambda = clipping``.
    The paper recommends not clipping the final classifier layer; pass only the parameters to clip.

    Args:
      grads: list of gradients (``None`` entries are passed through).
      params: the matching variables.
      clipping: lambda > 0 (0.01-0.16 in the paper, smaller for larger batches).
      eps: floor on the weight norm, so zero-initialised weights can still move.

    Returns:
      The list of clipped gradients.

    References:
      Brock et al., High-Performance Large-Scale Image Recognition Without Normalization,
      ICML 2021, https://arxiv.org/abs/2102.06171
    """
    check_agc_args(clipping, eps)
    if len(grads) != len(params):
        raise ValueError(f"`grads` and `params` must have the same length. Received: "
                         f"len(grads)={len(grads)}, len(params)={len(params)}")
    out = []
    for g, p in zip(grads, params):
        if g is None:
            out.append(None)
            continue
        if isinstance(g, tf.IndexedSlices):
            g = tf.convert_to_tensor(g)
        p = tf.cast(tf.convert_to_tensor(p), g.dtype)
        max_norm = tf.maximum(unitwise_norm(p), eps) * clipping
        g_norm = unitwise_norm(g)
        clipped = g * (max_norm / tf.maximum(g_norm, 1e-6))
        out.append(tf.where(g_norm > max_norm, clipped, g))
    return out
