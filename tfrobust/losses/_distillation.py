"""KL losses between two predictive distributions: knowledge distillation and TRADES' robust term."""

from __future__ import annotations

import tensorflow as tf

from tfrobust import _validate as V


def _check_temperature(temperature):
    return V.number("temperature", temperature, minimum=0.0, open_min=True)


def soft_targets(teacher_logits, temperature: float) -> tf.Tensor:
    """Teacher probabilities at temperature T; an ensemble averages its members' probabilities.

    ``p_i = mean_k softmax(z^(k) / T)_i`` over the teachers ``k``.
    """
    temperature = _check_temperature(temperature)
    if isinstance(teacher_logits, (list, tuple)):
        if not teacher_logits:
            raise ValueError("`teacher_logits` must hold at least one tensor. Received: teacher_logits=[]")
        probs = [tf.nn.softmax(tf.cast(z, tf.float32) / temperature) for z in teacher_logits]
        return tf.add_n(probs) / float(len(probs))
    return tf.nn.softmax(tf.cast(teacher_logits, tf.float32) / temperature)


def distillation_loss(teacher_logits, student_logits, temperature: float) -> tf.Tensor:
    """Per-example soft-target loss ``T^2 * KL(p_T || q_T)``.

    ``p_T`` are the teacher's (or the ensemble's averaged) probabilities at temperature ``T``,
    ``q_T = softmax(z_student / T)``. The ``T^2`` factor keeps the soft-target gradients on the
    same scale as the hard-label ones when ``T`` changes (Hinton et al., section 2). KL and the
    soft-target cross-entropy differ by the teacher's entropy, a constant for the student.

    Args:
      teacher_logits: ``[N, K]`` logits, or a list of them for an ensemble.
      student_logits: ``[N, K]`` logits.
      temperature: T > 0.

    Returns:
      ``[N]`` float32 losses.

    References:
      Hinton et al., Distilling the Knowledge in a Neural Network, 2015, https://arxiv.org/abs/1503.02531
    """
    temperature = _check_temperature(temperature)
    p = soft_targets(teacher_logits, temperature)
    log_q = tf.nn.log_softmax(tf.cast(student_logits, tf.float32) / temperature)
    log_p = tf.math.log(tf.maximum(p, 1e-30))
    kl = tf.reduce_sum(p * (log_p - log_q), axis=-1)
    return (temperature ** 2) * kl


def kl_divergence(p_logits, q_logits):
    """Per-example ``KL(softmax(p_logits) || softmax(q_logits))`` (TRADES' robust term)."""
    log_p = tf.nn.log_softmax(p_logits)
    log_q = tf.nn.log_softmax(q_logits)
    return tf.reduce_sum(tf.exp(log_p) * (log_p - log_q), axis=-1)
