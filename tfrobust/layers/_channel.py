"""Channel-wise activation suppressing (CAS, Bai et al. ICLR 2021) and CIFS (Yan et al. ICML 2021).

Both are *label-conditioned* in training: call them on ``[features, labels]`` and they use the
true label to pick the channel mask, and add their probe's cross-entropy (weighted by ``beta``)
to the model's losses. Called on ``features`` alone (or with ``training=False``) they use the
probe's own prediction, as at test time. A typical model therefore has two entry points that
share every layer::

    x = keras.Input((28, 28, 1)); y = keras.Input((), dtype="int32")
    conv, cas, head = Conv2D(32, 3), ChannelActivationSuppressing(10), Dense(10)
    train_model = keras.Model([x, y], head(GlobalAveragePooling2D()(cas([conv(x), y]))))
    model = keras.Model(x, head(GlobalAveragePooling2D()(cas(conv(x)))))   # attack / deploy this

``tfrobust.layers.label_conditioned_pair`` builds both from one function.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfrobust import _validate as V
from tfrobust._keras import keras
from tfrobust.layers._bpda import bpda
from tfrobust.layers._common import check_choice, check_non_negative, feature_shape


def _split(inputs):
    if isinstance(inputs, (list, tuple)):
        if len(inputs) != 2:
            raise ValueError("Label-conditioned layers take `features` or `[features, labels]`. "
                             f"Received: {len(inputs)} inputs")
        return inputs[0], inputs[1]
    return inputs, None


def _gap(f):
    axes = list(range(1, f.shape.rank - 1))
    return tf.reduce_mean(f, axis=axes) if axes else f


def _broadcast_channels(mask, f):
    return tf.reshape(mask, tf.concat([[tf.shape(f)[0]], tf.ones([f.shape.rank - 2], tf.int32),
                                       [tf.shape(f)[-1]]], 0))


def _check_classes(num_classes):
    return V.integer("num_classes", num_classes, minimum=2)


@keras.utils.register_keras_serializable(package="tfrobust")
class ChannelActivationSuppressing(keras.layers.Layer):
    r"""CAS: reweight the channels of a block's output by the class's row of a learned matrix.

    For features :math:`f \in \mathbb{R}^{H \times W \times K}` and
    :math:`M = [M_1, \dots, M_C] \in \mathbb{R}^{K \times C}`:

    .. math::
        \hat f_k = \frac{1}{HW}\sum_{i,j} f_k(i, j),\quad
        \hat p = \mathrm{softmax}(\hat f^\top M),\quad
        \tilde f = f \otimes M_{y}\ \text{(training)},\quad
        \tilde f = f \otimes M_{\hat y},\ \hat y = \arg\max_c \hat f^\top M_c\ \text{(test)},

    and in training the loss :math:`\beta \cdot \mathcal{L}_{CAS} = -\beta \log \hat p_y` is added.

    Robustness note: at test time the channel mask is picked by an arg-max, a step function of
    the input whose effect gradients never see (the mask switches class and the output jumps), so
    the layer declares ``gradient_masking``. Under ``tfrobust.attacks.bpda_scope()`` (the
    ``adaptive`` preset) its backward pass uses :meth:`bpda_approximation`, the probability-
    weighted mask :math:`f \otimes (M\,\hat p)`; the forward value is unchanged.

    Args:
      num_classes: C.
      beta: weight of the CAS loss (the paper uses 2).
      use_labels_in_training: use the true label when given (the paper); False always uses the
        prediction (for a TRADES-style inner maximisation).

    References:
      Bai et al. Improving Adversarial Robustness via Channel-wise Activation Suppressing.
      ICLR 2021. https://openreview.net/forum?id=zQTezqCCtNx
    """

    stochastic = False
    gradient_masking = True

    def __init__(self, num_classes, beta=2.0, use_labels_in_training=True, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = _check_classes(num_classes)
        self.beta = check_non_negative("beta", beta)
        self.use_labels_in_training = bool(use_labels_in_training)

    def build(self, input_shape):
        f_shape = feature_shape(input_shape)
        channels = int(f_shape[-1])
        self.kernel = self.add_weight(name="kernel", shape=(channels, self.num_classes),
                                      initializer="glorot_uniform", trainable=True)
        super().build(input_shape)

    def probe_logits(self, features):
        """:math:`\\hat f^\\top M` — the CAS probe's class scores."""
        return tf.matmul(_gap(features), self.kernel)

    def call(self, inputs, training=None):
        f, labels = _split(inputs)
        logits = self.probe_logits(f)
        if training and labels is not None and self.use_labels_in_training:
            cls = tf.cast(tf.reshape(labels, [-1]), tf.int32)
        else:
            cls = tf.argmax(logits, axis=-1, output_type=tf.int32)
        if training and labels is not None and self.beta > 0:
            ce = keras.losses.sparse_categorical_crossentropy(tf.reshape(labels, [-1]), logits,
                                                              from_logits=True)
            self.add_loss(self.beta * tf.reduce_mean(ce))
        mask = tf.gather(tf.transpose(self.kernel), cls)  # M_y: [B, K]
        out = f * _broadcast_channels(mask, f)
        if training and labels is not None and self.use_labels_in_training:
            return out  # the label path is not what an attacker differentiates
        return bpda(out, lambda: self.bpda_approximation(f))

    def bpda_approximation(self, features):
        """BPDA stand-in: the mask weighted by the probe's probabilities, ``f * (M softmax(z))``."""
        probs = tf.nn.softmax(self.probe_logits(features), axis=-1)
        return features * _broadcast_channels(tf.matmul(probs, self.kernel, transpose_b=True), features)

    def compute_output_shape(self, input_shape):
        return feature_shape(input_shape)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "beta": self.beta,
                "use_labels_in_training": self.use_labels_in_training}


@keras.utils.register_keras_serializable(package="tfrobust")
class ChannelImportanceFeatureSelection(keras.layers.Layer):
    r"""CIFS: channel importance from a probe's gradients, turned into a mask.

    A probe :math:`A` (GAP then a linear layer, or GAP -> FC(hidden) -> softplus(beta=5) -> FC)
    predicts :math:`p = A(f)`. The relevance of channel k is the gradient of the top-2 logits
    (in training the first is the true class) with respect to the channel's map, summed over
    positions, with the features detached (the mask does not backpropagate into ``f``):

    .. math::
        g_k = \sum_{i,j} \frac{\partial (A(f)_{t_1} + A(f)_{t_2})}{\partial f_k(i, j)},\qquad
        m = \mathrm{softmax}(g) \cdot \gamma,\qquad \tilde f = f \otimes m,

    with :math:`\gamma` = ``mask_scale`` (2 in the official code). In training the probe's
    cross-entropy times ``beta`` is added to the losses.

    Robustness note: the mask depends on the input through a top-2 selection and through the
    probe's gradients on *detached* features, neither of which gradients see, so the layer
    declares ``gradient_masking``. Under ``tfrobust.attacks.bpda_scope()`` (the ``adaptive``
    preset) its backward pass uses :meth:`bpda_approximation`: the same mask with the top-2
    one-hot replaced by ``2 * softmax(A(f))`` and the features not detached.

    Args:
      num_classes: number of classes.
      probe: ``"linear"`` or ``"nonlinear"``.
      hidden: hidden units of the non-linear probe.
      beta: weight of the probe loss.
      mask_scale: :math:`\gamma`.

    References:
      Yan et al. CIFS: Improving Adversarial Robustness of CNNs via Channel-wise Importance-based
      Feature Selection. ICML 2021. https://arxiv.org/abs/2102.05311
    """

    stochastic = False
    gradient_masking = True

    def __init__(self, num_classes, probe="linear", hidden=128, beta=2.0, mask_scale=2.0, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = _check_classes(num_classes)
        self.probe = check_choice("probe", probe, ("linear", "nonlinear"))
        self.hidden = V.integer("hidden", hidden, minimum=1)
        self.beta = check_non_negative("beta", beta)
        self.mask_scale = check_non_negative("mask_scale", mask_scale)

    def build(self, input_shape):
        f_shape = feature_shape(input_shape)
        channels = int(f_shape[-1])
        if self.probe == "nonlinear":
            self.hidden_kernel = self.add_weight(name="hidden_kernel", shape=(channels, self.hidden))
            self.hidden_bias = self.add_weight(name="hidden_bias", shape=(self.hidden,), initializer="zeros")
            width = self.hidden
        else:
            width = channels
        self.kernel = self.add_weight(name="kernel", shape=(width, self.num_classes))
        self.bias = self.add_weight(name="bias", shape=(self.num_classes,), initializer="zeros")
        super().build(input_shape)

    def probe_logits(self, features):
        """The probe's class scores :math:`A(f)`."""
        return self._probe_on_gap(_gap(features))

    def _probe_on_gap(self, z):
        if self.probe == "nonlinear":
            z = tf.nn.softplus(5.0 * (tf.matmul(z, self.hidden_kernel) + self.hidden_bias)) / 5.0
        return tf.matmul(z, self.kernel) + self.bias

    def relevance(self, gap, weights):
        r"""Channel relevance :math:`\sum_c w_c\, \partial A_c / \partial \hat f` for class weights ``w``.

        The probe sees ``f`` only through its global average :math:`\hat f`, so the spatial sum of
        :math:`\partial A_c / \partial f_k(i, j)` is :math:`\partial A_c / \partial \hat f_k`:
        :math:`W_{k c}` for the linear probe and
        :math:`\sum_h H_{k h}\, \sigma(5 u_h) W_{h c}` (:math:`u = \hat f H + b_h`) for the
        non-linear one. Written out rather than taken with a gradient tape, so the exported
        graph is a few matmuls (no gradient ops, which convert to TILE and friends).
        """
        v = tf.matmul(weights, self.kernel, transpose_b=True)  # [B, width]
        if self.probe == "nonlinear":
            v = v * tf.sigmoid(5.0 * (tf.matmul(gap, self.hidden_kernel) + self.hidden_bias))
            v = tf.matmul(v, self.hidden_kernel, transpose_b=True)
        return v

    def _top2(self, logits):
        """0/1 [B, C]: the two largest logits, ties to the lower index (as arg-max twice).

        Pairwise ranks (``rank_c = #{c' beating c}``) need only compares, a mean and a cast: no
        TOPK_V2 or ONE_HOT, which TFLite Micro lacks, and nothing int8 calibration can break.
        """
        c = self.num_classes
        lower = tf.constant(np.tril(np.ones((c, c), bool), -1))  # [c, c']: c' < c
        li, lj = logits[:, :, None], logits[:, None, :]
        beats = tf.logical_or(lj > li, tf.logical_and(tf.equal(lj, li), lower))
        share = tf.reduce_mean(tf.cast(beats, logits.dtype), axis=2)  # rank / C (MEAN: TFLM int8)
        return tf.cast(share < 1.5 / c, logits.dtype)

    def call(self, inputs, training=None):
        f, labels = _split(inputs)
        gap = tf.stop_gradient(_gap(f))  # the mask does not backpropagate into f
        logits = self._probe_on_gap(gap)
        if training and labels is not None:
            # First: the true class; second: the arg-max once it is masked out.
            first_hot = tf.one_hot(tf.cast(tf.reshape(labels, [-1]), tf.int32), self.num_classes,
                                   dtype=logits.dtype)
            second = tf.argmax(logits - 1e9 * first_hot, axis=-1, output_type=tf.int32)
            picked = first_hot + tf.one_hot(second, self.num_classes, dtype=logits.dtype)
        else:
            picked = self._top2(logits)
        relevance = self.relevance(gap, picked)  # picked is a one-hot sum: no gradient to stop
        mask = tf.nn.softmax(relevance, axis=-1) * self.mask_scale  # trains the probe, as before
        if training and labels is not None and self.beta > 0:
            ce = keras.losses.sparse_categorical_crossentropy(
                tf.reshape(labels, [-1]), self.probe_logits(f), from_logits=True)
            self.add_loss(self.beta * tf.reduce_mean(ce))
        out = f * _broadcast_channels(mask, f)
        if training and labels is not None:
            return out
        return bpda(out, lambda: self.bpda_approximation(f))

    def bpda_approximation(self, features):
        r"""BPDA stand-in: relevance ``sum_c 2 softmax(A(f))_c dA_c/dGAP(f)``, features not detached."""
        g = _gap(features)
        relevance = self.relevance(g, 2.0 * tf.nn.softmax(self._probe_on_gap(g), axis=-1))
        mask = tf.nn.softmax(relevance, axis=-1) * self.mask_scale
        return features * _broadcast_channels(mask, features)

    def compute_output_shape(self, input_shape):
        return feature_shape(input_shape)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "probe": self.probe,
                "hidden": self.hidden, "beta": self.beta, "mask_scale": self.mask_scale}


def label_conditioned_pair(build_fn, input_shape, *, label_dtype="int32", name="model"):
    """Build the training model ``[x, y] -> logits`` and the inference model ``x -> logits``.

    ``build_fn(x, y)`` builds the network on the symbolic image ``x``; wherever it uses a
    label-conditioned layer it calls it on ``[h, y]`` when ``y`` is not None and on ``h`` when it
    is. It is called twice — first with ``y``, then with ``y=None`` — and must create its layers
    once (e.g. as a closure over pre-built layers) so the two models share weights.

    Returns:
      ``(train_model, model)``: fit ``train_model`` on ``((x, y), y)``; attack, evaluate, save and
      deploy ``model``.
    """
    x = keras.Input(input_shape, name="image")
    y = keras.Input((), dtype=label_dtype, name="label")
    train_model = keras.Model([x, y], build_fn(x, y), name=f"{name}_train")
    x2 = keras.Input(input_shape, name="image")
    model = keras.Model(x2, build_fn(x2, None), name=name)
    return train_model, model
