"""Capsule layers (Sabour et al. 2017): squash, dynamic routing, capsule lengths.

References:
  Sabour, Frosst, Hinton, Dynamic Routing Between Capsules, NeurIPS 2017,
  https://arxiv.org/abs/1710.09829
"""

from __future__ import annotations

import tensorflow as tf

from tfrobust._keras import keras
from tfrobust.layers._blocks import _check_float, _check_int

__all__ = ["CapsuleLength", "DynamicRoutingCapsules", "Squash", "dynamic_routing", "squash"]

_serializable = keras.utils.register_keras_serializable(package="tfrobust")


def squash(s, axis=-1, eps=1e-7):
    """The capsule non-linearity (Sabour et al. 2017, Eq. 1).

    .. math:: v = \\frac{\\|s\\|^2}{1 + \\|s\\|^2}\\,\\frac{s}{\\|s\\|}

    computed as ``s * n2 * rsqrt(n2 + eps) * rsqrt(1 + n2)^2`` with ``n2 = ||s||^2``: finite at
    s = 0, and free of DIV, whose int8 TFLite kernel aborts when a divisor quantizes to zero.
    """
    n2 = tf.reduce_sum(tf.square(s), axis=axis, keepdims=True)
    return s * (n2 * tf.math.rsqrt(n2 + eps) * tf.square(tf.math.rsqrt(1.0 + n2)))


def dynamic_routing(u_hat, routings=3, eps=1e-7):
    """Routing-by-agreement (Sabour et al. 2017, Procedure 1).

    .. math::

        b_{ij} \\leftarrow 0;\\quad \\text{repeat } r \\text{ times: }
        c_{ij} = \\mathrm{softmax}_j(b_{ij}),\\; s_j = \\sum_i c_{ij}\\hat u_{j|i},\\;
        v_j = \\mathrm{squash}(s_j),\\; b_{ij} \\mathrel{+}= \\hat u_{j|i}\\cdot v_j

    (the logits are not updated after the last iteration). The loop is unrolled (``routings`` is
    a Python int), so it converts to plain TFLite ops.

    Args:
      u_hat: predictions ``(N, I, J, D)`` of each input capsule ``i`` for each output capsule ``j``.
      routings: number of iterations r >= 1.
      eps: squash epsilon.

    Returns:
      ``(v, c)``: output capsules ``(N, J, D)`` and the last coupling coefficients ``(N, I, J)``
      (each row sums to 1 over ``j``).
    """
    _check_int("routings", routings)
    b = tf.reduce_sum(u_hat, axis=-1) * 0.0  # zeros (N, I, J) without dynamic-shape ops
    v = c = None
    for r in range(routings):
        c = tf.nn.softmax(b, axis=-1)
        s = tf.reduce_sum(c[..., None] * u_hat, axis=1)
        v = squash(s, eps=eps)
        if r < routings - 1:
            b = b + tf.reduce_sum(u_hat * v[:, None], axis=-1)
    return v, c


@_serializable
class Squash(keras.layers.Layer):
    """Keras layer for :func:`squash` over the last axis."""

    def __init__(self, eps=1e-7, **kwargs):
        super().__init__(**kwargs)
        self.eps = _check_float("eps", eps, positive=True)

    def call(self, inputs):
        return squash(inputs, eps=self.eps)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)

    def get_config(self):
        return {**super().get_config(), "eps": self.eps}


@_serializable
class DynamicRoutingCapsules(keras.layers.Layer):
    """A fully connected capsule layer with dynamic routing: ``(N, I, D_in) -> (N, J, D_out)``.

    Each pair ``(i, j)`` has its own transform ``W_ij`` (``D_in x D_out``); the predictions
    ``u_hat_{j|i} = W_ij u_i`` are computed as one broadcast BATCH_MATMUL, then routed by
    :func:`dynamic_routing` for ``routings`` iterations.
    """

    def __init__(self, num_capsules, dim_capsule, routings=3, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.num_capsules = _check_int("num_capsules", num_capsules)
        self.dim_capsule = _check_int("dim_capsule", dim_capsule)
        self.routings = _check_int("routings", routings)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[1] is None or input_shape[2] is None:
            raise ValueError(
                "DynamicRoutingCapsules needs inputs (batch, num_in_capsules, dim) with "
                f"static sizes. Received: input_shape={input_shape}"
            )
        self.num_in, self.dim_in = int(input_shape[1]), int(input_shape[2])
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.num_in, self.dim_in, self.num_capsules * self.dim_capsule),
            initializer=self.kernel_initializer,
        )
        super().build(input_shape)

    def predictions(self, inputs):
        """``u_hat`` of shape ``(N, I, J, D_out)``."""
        u_hat = tf.matmul(inputs[:, :, None, :], self.kernel)  # (N, I, 1, J * D_out)
        return tf.reshape(u_hat, (-1, self.num_in, self.num_capsules, self.dim_capsule))

    def call(self, inputs):
        v, _ = dynamic_routing(self.predictions(inputs), self.routings)
        return v

    def compute_output_shape(self, input_shape):
        return tf.TensorShape([input_shape[0], self.num_capsules, self.dim_capsule])

    def get_config(self):
        return {
            **super().get_config(),
            "num_capsules": self.num_capsules,
            "dim_capsule": self.dim_capsule,
            "routings": self.routings,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        }


@_serializable
class CapsuleLength(keras.layers.Layer):
    """Capsule lengths ``sqrt(sum v^2 + eps)``: ``(N, J, D) -> (N, J)``, the class scores of a CapsNet."""

    def __init__(self, eps=1e-7, **kwargs):
        super().__init__(**kwargs)
        self.eps = _check_float("eps", eps, positive=True)

    def call(self, inputs):
        return tf.sqrt(tf.reduce_sum(tf.square(inputs), axis=-1) + self.eps)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape[:-1])

    def get_config(self):
        return {**super().get_config(), "eps": self.eps}
