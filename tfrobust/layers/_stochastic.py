"""Stochastic Activation Pruning (Dhillon et al., ICLR 2018) and its comparison family.

Activations: SAP, RNA (random noisy activations), RSA (randomly scaled activations).
Weights (wrappers around Dense / Conv2D): RNW, RSW (:class:`NoisyWeights`), DWP, SWP
(:class:`PrunedWeights`).

All random layers are ``stochastic = True``: the evaluator's ``adaptive`` preset attacks them
with EOT (gradients averaged over many forward passes), which is how Athalye et al. (2018)
brought SAP to 9% at eps 0.015 and 0% at 0.031 on CIFAR-10.

Export: random ops (MULTINOMIAL, RANDOM_STANDARD_NORMAL) are TFLite builtins but TFLite Micro
has none of them. ``inference_mode="expectation"`` replaces each layer by its expectation at
inference: SAP, RNA and RSA are unbiased (E[layer(h)] = h), so the expectation is the identity;
SWP's expectation is the unpruned kernel and RNW / RSW's is the clean kernel.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfrobust import _validate as V
from tfrobust._keras import keras
from tfrobust.layers._common import (
    check_choice,
    check_fraction_or_count,
    check_non_negative,
    resolve_count,
    topk_mask,
)

_MODES = ("stochastic", "expectation")


def sap_keep_probability(p: tf.Tensor, r: int) -> tf.Tensor:
    """P(unit j survives r draws with replacement) = 1 - (1 - p_j)^r, computed stably."""
    return -tf.math.expm1(tf.cast(r, p.dtype) * tf.math.log1p(-tf.minimum(p, 1.0 - 1e-7)))


def stochastic_activation_pruning(h: tf.Tensor, r: int, *, seed=None) -> tf.Tensor:
    r"""SAP on a batch ``h`` [B, ...] (pure function behind :class:`StochasticActivationPruning`).

    For each example with activations :math:`h \in \mathbb{R}^n`:

    .. math::
        p_j = \frac{|h_j|}{\sum_k |h_k|},\quad
        s_1..s_r \sim \text{Categorical}(p),\quad
        \text{SAP}(h)_j = \frac{h_j \, \mathbb{1}[j \in \{s_i\}]}{1 - (1 - p_j)^r}.

    Each survivor is scaled by its inverse keep probability, so :math:`E[\text{SAP}(h)] = h`.
    The sampled mask and the scale are constants for differentiation.
    """
    shape = tf.shape(h)
    flat = tf.reshape(h, [shape[0], -1])
    mag = tf.abs(flat)
    total = tf.reduce_sum(mag, axis=1, keepdims=True)
    safe_total = tf.where(total > 0, total, tf.ones_like(total))
    p = mag / safe_total
    # An all-zero example has nothing to keep; sample uniformly there (the output stays zero).
    logits = tf.where(total > 0, tf.math.log(p), tf.zeros_like(p))
    draws = tf.random.categorical(logits, r, dtype=tf.int32, seed=seed)  # [B, r]
    rows = tf.broadcast_to(tf.range(shape[0])[:, None], tf.shape(draws))
    counts = tf.scatter_nd(tf.stack([rows, draws], -1), tf.ones(tf.shape(draws), flat.dtype),
                           tf.shape(flat))
    keep = tf.logical_and(counts > 0, p > 0)  # p = 0 only drawn for all-zero rows
    prob = sap_keep_probability(p, r)
    scale = tf.where(keep, 1.0 / tf.where(keep, prob, tf.ones_like(prob)), tf.zeros_like(prob))
    return tf.reshape(flat * tf.stop_gradient(scale), shape)


def _check_mode(mode):
    return check_choice("inference_mode", mode, _MODES)


def _check_seed(seed):
    return V.seed(seed)


@keras.utils.register_keras_serializable(package="tfrobust")
class StochasticActivationPruning(keras.layers.Layer):
    r"""SAP: keep activations sampled with probability proportional to magnitude, rescale survivors.

    See :func:`stochastic_activation_pruning` for the formula. SAP is an inference-time defense:
    by default it samples at inference only and is the identity in training, as in the paper
    (applied post hoc to a network trained without it). ``apply_in_training=True`` samples in
    training too (it is unbiased, so training through it is sound, and the network gets used to
    the pruning).

    Args:
      ratio: number of draws r as a ratio of the layer's units n (float, r = ceil(ratio * n)) or a
        count (int). The paper sweeps r; 100% of n keeps ~63% of mass-weighted units.
      apply_in_training: sample in training too (default False: the paper's inference-only use).
      inference_mode: ``"stochastic"`` or ``"expectation"`` (identity: E[SAP(h)] = h; use it for
        TFLite Micro exports, and say so next to any robustness figure).
      seed: op-level seed.

    References:
      Dhillon et al. Stochastic Activation Pruning for Robust Adversarial Defense. ICLR 2018.
      https://arxiv.org/abs/1803.01442
    """

    stochastic = True
    gradient_masking = False

    def __init__(self, ratio=1.0, apply_in_training=False, inference_mode="stochastic", seed=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.ratio = check_fraction_or_count("ratio", ratio)
        self.apply_in_training = bool(apply_in_training)
        self.inference_mode = _check_mode(inference_mode)
        self.seed = _check_seed(seed)

    def build(self, input_shape):
        n = int(np.prod(input_shape[1:]))
        self._r = self.ratio if isinstance(self.ratio, int) else max(1, int(np.ceil(self.ratio * n)))
        super().build(input_shape)

    def call(self, inputs, training=None):
        if training and not self.apply_in_training:
            return inputs
        if not training and self.inference_mode == "expectation":
            return inputs
        return stochastic_activation_pruning(inputs, self._r, seed=self.seed)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "ratio": self.ratio,
                "apply_in_training": self.apply_in_training, "inference_mode": self.inference_mode,
                "seed": self.seed}


class _NoiseBase(keras.layers.Layer):
    stochastic = True
    gradient_masking = False

    def __init__(self, stddev=0.1, apply_in_training=True, inference_mode="stochastic", seed=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.stddev = check_non_negative("stddev", stddev)
        self.apply_in_training = bool(apply_in_training)
        self.inference_mode = _check_mode(inference_mode)
        self.seed = _check_seed(seed)

    def call(self, inputs, training=None):
        if training and not self.apply_in_training:
            return inputs
        if not training and self.inference_mode == "expectation":
            return inputs
        noise = tf.random.normal(tf.shape(inputs), stddev=self.stddev, dtype=inputs.dtype,
                                 seed=self.seed)
        return self._apply(inputs, noise)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev,
                "apply_in_training": self.apply_in_training, "inference_mode": self.inference_mode,
                "seed": self.seed}


@keras.utils.register_keras_serializable(package="tfrobust")
class RandomNoisyActivations(_NoiseBase):
    r"""RNA: :math:`M(h)_j = h_j + \eta,\ \eta \sim N(0, s^2)` (SAP paper's baseline, Dhillon et al. 2018).

    Args:
      stddev: s. apply_in_training, inference_mode, seed: as in :class:`StochasticActivationPruning`.
    """

    def _apply(self, h, noise):
        return h + noise


@keras.utils.register_keras_serializable(package="tfrobust")
class RandomScaledActivations(_NoiseBase):
    r"""RSA: :math:`M(h)_j = \eta h_j,\ \eta \sim N(1, s^2)` (SAP paper's baseline, Dhillon et al. 2018).

    Args:
      stddev: s. apply_in_training, inference_mode, seed: as in :class:`StochasticActivationPruning`.
    """

    def _apply(self, h, noise):
        return h * (1.0 + noise)


class _KernelTransformWrapper(keras.layers.Wrapper):
    """Runs a Dense or Conv2D with a transformed kernel W' = T(W) (bias and activation unchanged)."""

    def __init__(self, layer, **kwargs):
        if not isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D)) or isinstance(
                layer, (keras.layers.Conv2DTranspose, keras.layers.DepthwiseConv2D)):
            raise TypeError("`layer` must be a tf_keras Dense or Conv2D layer. Received: "
                            f"layer={type(layer).__module__}.{type(layer).__name__}")
        super().__init__(layer, **kwargs)

    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build(input_shape)
        super().build(input_shape)

    def _transform(self, kernel, training):
        raise TypeError(f"{type(self).__name__} must define _transform")

    def call(self, inputs, training=None):
        kernel = self._transform(self.layer.kernel, training)
        if isinstance(self.layer, keras.layers.Dense):
            out = tf.tensordot(inputs, kernel, [[inputs.shape.rank - 1], [0]])
        else:
            out = self.layer.convolution_op(inputs, kernel)
        if self.layer.use_bias:
            out = tf.nn.bias_add(out, self.layer.bias)
        return self.layer.activation(out)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)


@keras.utils.register_keras_serializable(package="tfrobust")
class NoisyWeights(_KernelTransformWrapper):
    r"""RNW / RSW: noise on the kernel of a Dense or Conv2D, resampled at every call.

    - ``mode="additive"`` (RNW): :math:`M(W)_j = W_j + \eta,\ \eta \sim N(0, s^2)`;
    - ``mode="multiplicative"`` (RSW): :math:`M(W)_j = \eta W_j,\ \eta \sim N(1, s^2)`.

    Args:
      layer: the wrapped ``Dense`` or ``Conv2D``.
      mode: ``"additive"`` or ``"multiplicative"``.
      stddev: s.
      apply_in_training, inference_mode, seed: as in :class:`StochasticActivationPruning`.

    References:
      Dhillon et al. ICLR 2018, Section 5 baselines. https://arxiv.org/abs/1803.01442
    """

    stochastic = True
    gradient_masking = False

    def __init__(self, layer, mode="additive", stddev=0.1, apply_in_training=True,
                 inference_mode="stochastic", seed=None, **kwargs):
        super().__init__(layer, **kwargs)
        self.mode = check_choice("mode", mode, ("additive", "multiplicative"))
        self.stddev = check_non_negative("stddev", stddev)
        self.apply_in_training = bool(apply_in_training)
        self.inference_mode = _check_mode(inference_mode)
        self.seed = _check_seed(seed)

    def _transform(self, kernel, training):
        if training and not self.apply_in_training:
            return kernel
        if not training and self.inference_mode == "expectation":
            return kernel
        noise = tf.random.normal(tf.shape(kernel), stddev=self.stddev, dtype=kernel.dtype,
                                 seed=self.seed)
        return kernel + noise if self.mode == "additive" else kernel * (1.0 + noise)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "stddev": self.stddev,
                "apply_in_training": self.apply_in_training, "inference_mode": self.inference_mode,
                "seed": self.seed}


@keras.utils.register_keras_serializable(package="tfrobust")
class PrunedWeights(_KernelTransformWrapper):
    r"""DWP / SWP: prune the kernel of a Dense or Conv2D at every call.

    - ``mode="deterministic"`` (DWP, Han et al. 2015): keep the ``keep`` largest :math:`|W_j|`
      (exactly ``k`` of them, ties towards the lower flat index), zero the rest.
    - ``mode="stochastic"`` (SWP): SAP on the flattened kernel — draw r indices with
      :math:`p_j = |W_j| / \sum_k |W_k|`, keep the drawn ones and scale them by
      :math:`1 / (1 - (1 - p_j)^r)`; random (``stochastic``), unbiased.

    Args:
      layer: the wrapped ``Dense`` or ``Conv2D``.
      mode: ``"deterministic"`` or ``"stochastic"``.
      keep: DWP's kept ratio (float) or count (int) of weights; SWP's number of draws r as a
        ratio of the kernel size or a count.
      inference_mode, seed: as in :class:`StochasticActivationPruning` (SWP only).

    References:
      Dhillon et al. ICLR 2018, Section 5 baselines. https://arxiv.org/abs/1803.01442
    """

    gradient_masking = False

    def __init__(self, layer, mode="deterministic", keep=0.5, inference_mode="stochastic", seed=None,
                 **kwargs):
        super().__init__(layer, **kwargs)
        self.mode = check_choice("mode", mode, ("deterministic", "stochastic"))
        self.keep = check_fraction_or_count("keep", keep)
        self.inference_mode = _check_mode(inference_mode)
        self.seed = _check_seed(seed)

    @property
    def stochastic(self):  # DWP is deterministic, SWP is random
        return self.mode == "stochastic"

    def build(self, input_shape):
        super().build(input_shape)
        self._k = resolve_count(self.keep, int(np.prod(self.layer.kernel.shape)), "keep")

    def _transform(self, kernel, training):
        flat = tf.reshape(kernel, [1, -1])
        if self.mode == "deterministic":
            pruned = flat * tf.stop_gradient(topk_mask(tf.abs(flat), self._k))
        elif not training and self.inference_mode == "expectation":
            return kernel
        else:
            pruned = stochastic_activation_pruning(flat, self._k, seed=self.seed)
        return tf.reshape(pruned, tf.shape(kernel))

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "keep": self.keep,
                "inference_mode": self.inference_mode, "seed": self.seed}
