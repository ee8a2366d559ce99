"""k-Winners-Take-All (Xiao et al., ICLR 2020) and WTA dropout (DASNet)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfrobust._keras import keras
from tfrobust.layers._bpda import bpda
from tfrobust.layers._common import (
    bisection_threshold,
    check_choice,
    check_fraction_or_count,
    check_steps,
    resolve_count,
    topk_mask,
)


def kwta_mask(scores, k: int, *, implementation: str = "topk", bisection_steps: int = 24):
    """The k-WTA mask: 1 at the ``k`` largest entries of every row of ``scores`` [N, D], else 0.

    ``m_i = [s_i >= s_(k)]`` with ``s_(k)`` the row's k-th largest value: exact with
    ``implementation="topk"``; with ``"threshold"`` ``s_(k)`` is found by ``bisection_steps`` steps
    of bisection (TFLite Micro friendly; ties at the threshold may keep more than k). The mask has
    ``scores``' dtype; both k-WTA layers multiply by it under ``stop_gradient``.
    """
    if implementation == "topk":
        return topk_mask(scores, k)
    thr = bisection_threshold(scores, k, bisection_steps)
    return tf.cast(scores >= thr, scores.dtype)


@keras.utils.register_keras_serializable(package="tfrobust")
class KWinnersTakeAll(keras.layers.Layer):
    r"""k-Winners-Take-All activation: keep the k largest activations of each example, zero the rest.

    For an example's activations :math:`h \in \mathbb{R}^n` (all positions and channels),

    .. math:: \phi_k(h)_j = h_j \text{ if } h_j \in \text{top}_k(h) \text{ else } 0.

    Ties are broken towards the lower flat index, so exactly ``k`` values survive
    (``implementation="topk"``). Gradients flow to the winners only.

    ``implementation="threshold"`` finds the k-th largest value by bisection (``bisection_steps``)
    and keeps every value at or above it: no TOPK_V2, SCATTER_ND or SELECT ops, so it runs under
    TFLite Micro. It keeps at least ``k`` values (more only on ties within the bisection
    resolution, (max - min) / 2^steps). The search is int8-safe (see
    :func:`tfrobust.layers._common.bisection_threshold`): a full-integer model keeps the k largest
    values plus those within (max - min) / 128 of the k-th, whatever its calibration data.

    Robustness note: k-WTA's discontinuities make gradients uninformative (``gradient_masking``);
    it falls to adaptive attacks (Tramer et al. 2020: 0.16% on CIFAR-10). Inside
    ``tfrobust.attacks.bpda_scope()`` (the evaluator's ``adaptive`` preset) the backward pass uses
    :meth:`bpda_approximation`, the identity (the forward value is unchanged).

    Args:
      k: ratio of units kept (float in (0, 1]) or their count (int). The paper uses 0.1-0.2.
      implementation: ``"topk"`` (exact k) or ``"threshold"`` (TFLite-Micro friendly).
      bisection_steps: steps of the threshold search (``implementation="threshold"``).

    References:
      Xiao, Zhong, Zheng. Enhancing Adversarial Defense by k-Winners-Take-All. ICLR 2020.
      https://openreview.net/forum?id=Skgvy64tvr
    """

    stochastic = False
    gradient_masking = True

    def __init__(self, k=0.2, implementation="topk", bisection_steps=24, **kwargs):
        super().__init__(**kwargs)
        self.k = check_fraction_or_count("k", k)
        self.implementation = check_choice("implementation", implementation, ("topk", "threshold"))
        self.bisection_steps = check_steps("bisection_steps", bisection_steps)

    def build(self, input_shape):
        self._n = int(np.prod(input_shape[1:]))
        self._k = resolve_count(self.k, self._n, "k")
        super().build(input_shape)

    def call(self, inputs):
        shape = tf.shape(inputs)
        flat = tf.reshape(inputs, [shape[0], self._n])
        mask = kwta_mask(flat, self._k, implementation=self.implementation,
                         bisection_steps=self.bisection_steps)
        out = tf.reshape(flat * tf.stop_gradient(mask), shape)
        return bpda(out, lambda: self.bpda_approximation(inputs))

    def bpda_approximation(self, inputs):
        """Differentiable stand-in for the backward pass (BPDA): the identity."""
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "k": self.k, "implementation": self.implementation,
                "bisection_steps": self.bisection_steps}


@keras.utils.register_keras_serializable(package="tfrobust")
class WTADropout(keras.layers.Layer):
    r"""Winners-take-all dropout (DASNet): structured dynamic activation sparsity.

    Per example, rank the units by their activation and keep the top ``keep`` fraction:

    - ``structure="channel"`` (structured, the DASNet use): score each channel of an NHWC map by
      its mean activation :math:`s_c = \frac{1}{HW}\sum_{i,j} h_{ijc}` and zero whole feature maps
      outside the top ``keep`` channels — the zeroed maps skip all downstream MACs;
    - ``structure="element"``: keep the top ``keep`` single activations (k-WTA per layer).

    It is active in training and inference (the mask is data-dependent, no extra variables).
    The measured fraction of zeros in the output is reported as the metric
    ``<layer name>_sparsity``, and :attr:`last_sparsity`-style accounting is available through
    ``tfrobust`` evaluation helpers.

    Args:
      keep: ratio (float in (0, 1]) or count (int) of winners.
      structure: ``"channel"`` or ``"element"``.
      implementation: ``"topk"`` or ``"threshold"`` (TFLite Micro friendly, see k-WTA).
      bisection_steps: steps of the threshold search.

    References:
      Yang et al. DASNet: Dynamic Activation Sparsity for Neural Network Efficiency Improvement.
      https://arxiv.org/abs/1909.06964
    """

    stochastic = False
    gradient_masking = True

    def __init__(self, keep=0.5, structure="channel", implementation="topk", bisection_steps=24,
                 **kwargs):
        super().__init__(**kwargs)
        self.keep = check_fraction_or_count("keep", keep)
        self.structure = check_choice("structure", structure, ("channel", "element"))
        self.implementation = check_choice("implementation", implementation, ("topk", "threshold"))
        self.bisection_steps = check_steps("bisection_steps", bisection_steps)

    def build(self, input_shape):
        if self.structure == "channel":
            if len(input_shape) < 3:
                raise ValueError("`structure='channel'` needs NHWC inputs with spatial axes. "
                                 f"Received: input_shape={tuple(input_shape)}")
            n = int(input_shape[-1])
        else:
            n = int(np.prod(input_shape[1:]))
        self._n = n
        self._k = resolve_count(self.keep, n, "keep")
        super().build(input_shape)

    def _mask(self, scores):
        return kwta_mask(scores, self._k, implementation=self.implementation,
                         bisection_steps=self.bisection_steps)

    def call(self, inputs):
        shape = tf.shape(inputs)
        if self.structure == "channel":
            axes = list(range(1, len(inputs.shape) - 1))
            scores = tf.reduce_mean(inputs, axis=axes)  # [B, C]
            mask = self._mask(scores)
            bshape = tf.concat([[shape[0]], tf.ones([len(axes)], tf.int32), [shape[-1]]], 0)
            out = inputs * tf.stop_gradient(tf.reshape(mask, bshape))
        else:
            flat = tf.reshape(inputs, [shape[0], self._n])
            out = tf.reshape(flat * tf.stop_gradient(self._mask(flat)), shape)
        if keras.__name__ == "tf_keras":  # Keras 3 layers have no add_metric (no sparsity log there)
            sparsity = tf.reduce_mean(tf.cast(tf.equal(out, 0.0), tf.float32))
            self.add_metric(sparsity, name=f"{self.name}_sparsity")
        return bpda(out, lambda: self.bpda_approximation(inputs))

    def bpda_approximation(self, inputs):
        """Differentiable stand-in for the backward pass (BPDA): the identity."""
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "keep": self.keep, "structure": self.structure,
                "implementation": self.implementation, "bisection_steps": self.bisection_steps}
