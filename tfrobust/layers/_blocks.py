"""Building-block layers of the architecture zoo: LRN, grouped conv, channel shuffle, SE, CBAM,
scaled weight standardisation and the ViT tokens.

Every layer keeps its maths in a pure function (``local_response_normalization``,
``channel_shuffle``, ``scaled_weight_standardization``, ...) and is a thin Keras class around it,
converts to TFLite with builtin ops only, and round-trips through ``get_config``.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfrobust import _validate as V
from tfrobust._keras import keras

__all__ = [
    "CBAM",
    "AddPositionEmbedding",
    "ChannelShuffle",
    "ClassToken",
    "GroupConv2D",
    "LocalResponseNormalization",
    "ScaledWSConv2D",
    "SqueezeExcitation",
    "channel_shuffle",
    "channel_shuffle_permutation",
    "local_response_normalization",
    "scaled_weight_standardization",
]

_serializable = keras.utils.register_keras_serializable(package="tfrobust")


def _check_int(name, value, minimum=1):
    return V.integer(name, value, minimum=minimum)


def _check_float(name, value, *, positive=False, nonnegative=False):
    bounded = positive or nonnegative
    return V.number(name, value, minimum=0.0 if bounded else None, open_min=positive)


# ---------------------------------------------------------------------------------------------
# Local response normalisation (AlexNet)
# ---------------------------------------------------------------------------------------------


def local_response_normalization(x, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75, implementation="native"):
    """Local response normalisation across channels (Krizhevsky et al. 2012, section 3.3).

    .. math::

        b^i_{x,y} = a^i_{x,y} \\Big/ \\Big(k + \\alpha \\sum_{j=\\max(0, i-n/2)}^{\\min(N-1, i+n/2)}
        (a^j_{x,y})^2\\Big)^{\\beta}

    with ``depth_radius = n // 2`` (AlexNet: k=2, n=5, alpha=1e-4, beta=0.75; alpha is *not*
    divided by n, as in the paper and in ``tf.nn.local_response_normalization``).

    Args:
      x: NHWC float tensor.
      depth_radius: n // 2.
      bias: k.
      alpha: alpha.
      beta: beta.
      implementation: ``"native"`` uses ``tf.nn.local_response_normalization`` (TFLite builtin
        LOCAL_RESPONSE_NORMALIZATION: float only, absent from TFLite Micro); ``"decomposed"``
        computes the window sum as a 1x1 convolution with a constant band matrix and the power as
        ``exp(-beta * log(.))`` — CONV_2D, MUL, ADD, LOG, EXP, all in TFLite Micro and int8-able.

    Returns:
      A tensor like ``x``.

    References:
      Krizhevsky, Sutskever, Hinton, ImageNet Classification with Deep Convolutional Neural
      Networks, NeurIPS 2012.
    """
    if implementation == "native":
        return tf.nn.local_response_normalization(
            x, depth_radius=depth_radius, bias=bias, alpha=alpha, beta=beta
        )
    channels = x.shape[-1]
    idx = np.arange(channels)
    band = (np.abs(idx[:, None] - idx[None, :]) <= depth_radius).astype(np.float32)
    sq_sum = tf.nn.conv2d(
        tf.square(x), tf.constant(band[None, None] * alpha, x.dtype), strides=1, padding="VALID"
    )
    return x * tf.exp(-beta * tf.math.log(bias + sq_sum))


@_serializable
class LocalResponseNormalization(keras.layers.Layer):
    """Keras layer for :func:`local_response_normalization` (defaults: AlexNet's k=2, n=5,
    alpha=1e-4, beta=0.75).

    Example:
      >>> y = LocalResponseNormalization()(tf.ones((1, 4, 4, 8)))  # doctest: +SKIP
    """

    def __init__(self, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75, implementation="native", **kwargs):
        super().__init__(**kwargs)
        self.depth_radius = _check_int("depth_radius", depth_radius, minimum=0)
        self.bias = _check_float("bias", bias, nonnegative=True)
        self.alpha = _check_float("alpha", alpha, nonnegative=True)
        self.beta = _check_float("beta", beta, nonnegative=True)
        if implementation not in ("native", "decomposed"):
            raise ValueError(
                "`implementation` must be 'native' or 'decomposed'. "
                f"Received: implementation={implementation!r}"
            )
        if self.bias == 0 and self.alpha == 0:
            raise ValueError(f"`bias` and `alpha` cannot both be 0. Received: bias={bias!r}")
        self.implementation = implementation

    def call(self, inputs):
        return local_response_normalization(
            inputs, self.depth_radius, self.bias, self.alpha, self.beta, self.implementation
        )

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "depth_radius": self.depth_radius,
            "bias": self.bias,
            "alpha": self.alpha,
            "beta": self.beta,
            "implementation": self.implementation,
        }


# ---------------------------------------------------------------------------------------------
# Grouped convolution and channel shuffle (ResNeXt, ShuffleNet)
# ---------------------------------------------------------------------------------------------


def channel_shuffle_permutation(channels: int, groups: int) -> np.ndarray:
    """The ShuffleNet permutation: output channel ``k`` takes input channel ``perm[k]``.

    Equivalent to reshaping the channels to ``(groups, channels // groups)``, transposing and
    flattening: ``perm[k] = (k % groups) * (channels // groups) + k // groups``.
    """
    _check_int("groups", groups)
    if channels % groups:
        raise ValueError(f"`groups` must divide the channel count {channels}. Received: groups={groups}")
    k = np.arange(channels)
    return (k % groups) * (channels // groups) + k // groups


def channel_shuffle(x, groups: int):
    """Channel shuffle of ShuffleNet, as one GATHER on the channel axis (no 5-D transpose).

    References:
      Zhang et al., ShuffleNet, CVPR 2018, https://arxiv.org/abs/1707.01083
    """
    perm = channel_shuffle_permutation(int(x.shape[-1]), groups)
    return tf.gather(x, tf.constant(perm, tf.int32), axis=-1)


@_serializable
class ChannelShuffle(keras.layers.Layer):
    """Keras layer for :func:`channel_shuffle` with ``groups`` groups."""

    def __init__(self, groups, **kwargs):
        super().__init__(**kwargs)
        self.groups = _check_int("groups", groups)

    def build(self, input_shape):
        channel_shuffle_permutation(int(input_shape[-1]), self.groups)  # validates divisibility
        super().build(input_shape)

    def call(self, inputs):
        return channel_shuffle(inputs, self.groups)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)

    def get_config(self):
        return {**super().get_config(), "groups": self.groups}


@_serializable
class GroupConv2D(keras.layers.Layer):
    """Grouped 2-D convolution implemented as split -> ``groups`` convolutions -> concat.

    Channel group ``g`` of the input (``C_in / groups`` channels) feeds only output group ``g``
    (``filters / groups`` filters), so the kernel is ``(kh, kw, C_in / groups, filters)`` and costs
    ``1 / groups`` of a dense convolution. ``Conv2D(groups=...)`` is avoided on purpose: it lowers
    to a grouped CONV_2D that the TFLite reference kernels and TFLite Micro reject; SPLIT,
    CONV_2D and CONCATENATION run everywhere.

    References:
      Xie et al., Aggregated Residual Transformations (ResNeXt), CVPR 2017,
      https://arxiv.org/abs/1611.05431
    """

    def __init__(
        self,
        filters,
        kernel_size,
        groups=1,
        strides=1,
        padding="same",
        use_bias=True,
        kernel_initializer="he_normal",
        bias_initializer="zeros",
        kernel_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = _check_int("filters", filters)
        self.groups = _check_int("groups", groups)
        if filters % groups:
            raise ValueError(f"`groups` must divide `filters`={filters}. Received: groups={groups}")
        self.kernel_size = _pair("kernel_size", kernel_size)
        self.strides = _pair("strides", strides)
        if padding not in ("same", "valid"):
            raise ValueError(f"`padding` must be 'same' or 'valid'. Received: padding={padding!r}")
        self.padding = padding
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        if channels % self.groups:
            raise ValueError(
                f"`groups` must divide the input channels {channels}. Received: groups={self.groups}"
            )
        self.kernel = self.add_weight(
            name="kernel",
            shape=(*self.kernel_size, channels // self.groups, self.filters),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
        )
        self.bias = (
            self.add_weight(name="bias", shape=(self.filters,), initializer=self.bias_initializer)
            if self.use_bias
            else None
        )
        super().build(input_shape)

    def call(self, inputs):
        pad = self.padding.upper()
        if self.groups == 1:
            y = tf.nn.conv2d(inputs, self.kernel, self.strides, pad)
        else:
            xs = tf.split(inputs, self.groups, axis=-1)
            ks = tf.split(self.kernel, self.groups, axis=-1)
            y = tf.concat([tf.nn.conv2d(xi, ki, self.strides, pad) for xi, ki in zip(xs, ks)], axis=-1)
        if self.use_bias:
            y = tf.nn.bias_add(y, self.bias)
        return y

    def compute_output_shape(self, input_shape):
        shape = tf.TensorShape(input_shape).as_list()
        spatial = []
        for size, k, s in zip(shape[1:3], self.kernel_size, self.strides):
            if size is None:
                spatial.append(None)
            elif self.padding == "same":
                spatial.append(-(-size // s))
            else:
                spatial.append((size - k) // s + 1)
        return tf.TensorShape([shape[0], *spatial, self.filters])

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "groups": self.groups,
            "strides": self.strides,
            "padding": self.padding,
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
        }


def _pair(name, value):
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    try:
        pair = tuple(value)
    except TypeError:
        pair = ()
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair):
        raise ValueError(f"`{name}` must be a positive int or a pair of them. Received: {name}={value!r}")
    return pair


# ---------------------------------------------------------------------------------------------
# Attention blocks: Squeeze-and-Excitation, CBAM
# ---------------------------------------------------------------------------------------------


@_serializable
class SqueezeExcitation(keras.layers.Layer):
    """Squeeze-and-Excitation: ``x * sigmoid(W2 relu(W1 GAP(x)))``, ``W1`` reducing C to C / ratio.

    .. math:: z = \\frac{1}{HW}\\sum_{h,w} x_{h,w},\\quad s = \\sigma(W_2\\,\\delta(W_1 z)),
              \\quad y_{h,w,c} = s_c\\,x_{h,w,c}

    Args:
      ratio: reduction ratio r (the bottleneck has ``max(1, C // r)`` units).

    References:
      Hu, Shen, Sun, Squeeze-and-Excitation Networks, CVPR 2018, https://arxiv.org/abs/1709.01507
    """

    def __init__(self, ratio=16, **kwargs):
        super().__init__(**kwargs)
        self.ratio = _check_int("ratio", ratio)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.reduce = keras.layers.Dense(max(1, channels // self.ratio), activation="relu", name="reduce")
        self.expand = keras.layers.Dense(channels, activation="sigmoid", name="expand")
        self.reduce.build((None, channels))
        self.expand.build((None, self.reduce.units))
        super().build(input_shape)

    def call(self, inputs):
        z = tf.reduce_mean(inputs, axis=[1, 2])
        s = self.expand(self.reduce(z))
        return inputs * s[:, None, None, :]

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)

    def get_config(self):
        return {**super().get_config(), "ratio": self.ratio}


@_serializable
class CBAM(keras.layers.Layer):
    """Convolutional Block Attention Module: channel attention, then spatial attention.

    .. math::

        M_c = \\sigma(\\mathrm{MLP}(\\mathrm{AvgPool}(F)) + \\mathrm{MLP}(\\mathrm{MaxPool}(F))),
        \\quad F' = M_c \\otimes F

        M_s = \\sigma(f^{7\\times 7}([\\mathrm{mean}_c(F'); \\max_c(F')])),\\quad F'' = M_s \\otimes F'

    The MLP is shared between the two pooled descriptors (``C -> C / ratio -> C``).

    References:
      Woo et al., CBAM: Convolutional Block Attention Module, ECCV 2018,
      https://arxiv.org/abs/1807.06521
    """

    def __init__(self, ratio=16, kernel_size=7, **kwargs):
        super().__init__(**kwargs)
        self.ratio = _check_int("ratio", ratio)
        self.kernel_size = _check_int("kernel_size", kernel_size)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.mlp_reduce = keras.layers.Dense(
            max(1, channels // self.ratio), activation="relu", name="mlp_reduce"
        )
        self.mlp_expand = keras.layers.Dense(channels, name="mlp_expand")
        self.spatial_conv = keras.layers.Conv2D(1, self.kernel_size, padding="same", name="spatial_conv")
        self.mlp_reduce.build((None, channels))
        self.mlp_expand.build((None, self.mlp_reduce.units))
        self.spatial_conv.build((None, None, None, 2))
        super().build(input_shape)

    def call(self, inputs):
        avg = tf.reduce_mean(inputs, axis=[1, 2])
        mx = tf.reduce_max(inputs, axis=[1, 2])
        mc = tf.sigmoid(self.mlp_expand(self.mlp_reduce(avg)) + self.mlp_expand(self.mlp_reduce(mx)))
        f = inputs * mc[:, None, None, :]
        desc = tf.concat(
            [tf.reduce_mean(f, axis=-1, keepdims=True), tf.reduce_max(f, axis=-1, keepdims=True)], axis=-1
        )
        return f * tf.sigmoid(self.spatial_conv(desc))

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)

    def get_config(self):
        return {**super().get_config(), "ratio": self.ratio, "kernel_size": self.kernel_size}


# ---------------------------------------------------------------------------------------------
# Scaled weight standardisation (NF-ResNet)
# ---------------------------------------------------------------------------------------------


def scaled_weight_standardization(kernel, gain=None, eps=1e-4):
    """Scaled weight standardisation of a conv kernel ``(kh, kw, C_in, C_out)``.

    .. math:: \\hat W_{ij} = g_i\\,\\frac{W_{ij} - \\mu_i}{\\sigma_i \\sqrt{N}},\\quad
              N = k_h k_w C_{in}

    with per-output-channel mean ``mu_i`` and standard deviation ``sigma_i`` over the fan-in
    (``sigma_i^2`` is floored at ``eps / N`` for numerical safety; the fan-in variance of
    ``W_hat`` is then ``g_i^2 / N``, which keeps the activation variance of a gamma-scaled ReLU).

    References:
      Brock, De, Smith, Characterizing signal propagation to close the performance gap in
      unnormalized ResNets, ICLR 2021, https://arxiv.org/abs/2101.08692
    """
    fan_in = float(np.prod(kernel.shape[:-1]))
    mean, var = tf.nn.moments(kernel, axes=list(range(len(kernel.shape) - 1)), keepdims=True)
    scale = tf.math.rsqrt(tf.maximum(var * fan_in, eps))
    w = (kernel - mean) * scale
    if gain is not None:
        w = w * gain
    return w


@_serializable
class ScaledWSConv2D(keras.layers.Conv2D):
    """``Conv2D`` whose kernel is replaced by :func:`scaled_weight_standardization` at every call,
    with a learnable per-output-channel gain (initialised to 1).

    The standardisation is constant-folded by the TFLite converter (weights are constants there),
    so the exported model holds a plain CONV_2D.
    """

    def __init__(self, filters, kernel_size, eps=1e-4, **kwargs):
        kwargs.setdefault("kernel_initializer", "he_normal")
        super().__init__(filters, kernel_size, **kwargs)
        self.eps = _check_float("eps", eps, positive=True)

    def build(self, input_shape):
        super().build(input_shape)
        self.gain = self.add_weight(name="gain", shape=(self.filters,), initializer="ones")

    def standardized_kernel(self):
        return scaled_weight_standardization(self.kernel, self.gain, self.eps)

    def convolution_op(self, inputs, kernel):
        return super().convolution_op(inputs, scaled_weight_standardization(kernel, self.gain, self.eps))

    def get_config(self):
        return {**super().get_config(), "eps": self.eps}


# ---------------------------------------------------------------------------------------------
# Vision-Transformer tokens
# ---------------------------------------------------------------------------------------------


@_serializable
class ClassToken(keras.layers.Layer):
    """Prepends a learned class token to a token sequence ``(N, T, D) -> (N, T + 1, D)``.

    The token is broadcast as ``0 * x[:, :1] + token`` (no SHAPE/PACK ops, so the TFLite graph
    stays static for a fixed batch and dynamic-batch exports still work).

    References:
      Dosovitskiy et al., An Image is Worth 16x16 Words (ViT), ICLR 2021,
      https://arxiv.org/abs/2010.11929
    """

    def build(self, input_shape):
        self.token = self.add_weight(
            name="token",
            shape=(1, 1, int(input_shape[-1])),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02),
        )
        super().build(input_shape)

    def call(self, inputs):
        cls = inputs[:, :1, :] * 0.0 + self.token
        return tf.concat([cls, inputs], axis=1)

    def compute_output_shape(self, input_shape):
        shape = tf.TensorShape(input_shape).as_list()
        return tf.TensorShape([shape[0], None if shape[1] is None else shape[1] + 1, shape[2]])


@_serializable
class AddPositionEmbedding(keras.layers.Layer):
    """Adds a learned position embedding ``(1, T, D)`` to a token sequence ``(N, T, D)``."""

    def build(self, input_shape):
        if input_shape[1] is None:
            raise ValueError(
                f"AddPositionEmbedding needs a static sequence length. Received: input_shape={input_shape}"
            )
        self.embedding = self.add_weight(
            name="embedding",
            shape=(1, int(input_shape[1]), int(input_shape[2])),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02),
        )
        super().build(input_shape)

    def call(self, inputs):
        return inputs + self.embedding

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)
