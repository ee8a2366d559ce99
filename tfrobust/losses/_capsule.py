"""The CapsNet margin loss (Sabour et al. 2017, Eq. 4).

References:
  Sabour, Frosst, Hinton, Dynamic Routing Between Capsules, NeurIPS 2017,
  https://arxiv.org/abs/1710.09829
"""

from __future__ import annotations

import tensorflow as tf

from tfrobust import _validate as V
from tfrobust._keras import keras

__all__ = ["MarginLoss", "margin_loss"]


def _check_params(m_plus, m_minus, lam):
    for name, value in (("m_plus", m_plus), ("m_minus", m_minus), ("lam", lam)):
        V.number(name, value, minimum=0.0)
    if m_minus >= m_plus:
        raise ValueError(f"`m_minus` must be smaller than `m_plus`={m_plus}. Received: m_minus={m_minus!r}")


def margin_loss(y_true, lengths, m_plus=0.9, m_minus=0.1, lam=0.5):
    """Per-example margin loss on capsule lengths.

    .. math:: L = \\sum_k T_k \\max(0, m^+ - \\|v_k\\|)^2
              + \\lambda (1 - T_k) \\max(0, \\|v_k\\| - m^-)^2

    Args:
      y_true: integer labels ``(N,)`` / ``(N, 1)``, or one-hot ``(N, K)``.
      lengths: capsule lengths ``(N, K)`` (the CapsNet scores).
      m_plus, m_minus, lam: the margins and the down-weighting of absent classes
        (paper: 0.9, 0.1, 0.5).

    Returns:
      ``(N,)`` losses.
    """
    _check_params(m_plus, m_minus, lam)
    lengths = tf.convert_to_tensor(lengths)
    y_true = tf.convert_to_tensor(y_true)
    num_classes = lengths.shape[-1]
    if y_true.shape.rank == lengths.shape.rank and y_true.shape[-1] == num_classes and num_classes != 1:
        t = tf.cast(y_true, lengths.dtype)
    else:
        t = tf.one_hot(tf.cast(tf.reshape(y_true, [-1]), tf.int32), num_classes, dtype=lengths.dtype)
    present = t * tf.square(tf.nn.relu(m_plus - lengths))
    absent = lam * (1.0 - t) * tf.square(tf.nn.relu(lengths - m_minus))
    return tf.reduce_sum(present + absent, axis=-1)


@keras.utils.register_keras_serializable(package="tfrobust")
class MarginLoss(keras.losses.Loss):
    """Keras loss for :func:`margin_loss` (sparse or one-hot labels, capsule lengths as scores).

    Example:
      >>> model.compile("adam", loss=MarginLoss())  # doctest: +SKIP
    """

    def __init__(self, m_plus=0.9, m_minus=0.1, lam=0.5, name="margin_loss", **kwargs):
        _check_params(m_plus, m_minus, lam)
        super().__init__(name=name, **kwargs)
        self.m_plus, self.m_minus, self.lam = float(m_plus), float(m_minus), float(lam)

    def call(self, y_true, y_pred):
        return margin_loss(y_true, y_pred, self.m_plus, self.m_minus, self.lam)

    def get_config(self):
        return {**super().get_config(), "m_plus": self.m_plus, "m_minus": self.m_minus, "lam": self.lam}
