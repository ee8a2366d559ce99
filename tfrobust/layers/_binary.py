"""Binary layers: BinaryConnect, binary-weight networks (BWN) and XNOR-Net, with straight-through estimators.

The math lives in pure functions (larq style), the layers are thin wrappers around them:

* :func:`ste_sign` -- ``sign(x)`` forward (with ``sign(0) = +1``), gradient ``dy * 1_{|x| <= clip}``
  backward (the straight-through estimator with the "cancel" of Hubara et al.).
* :func:`stochastic_sign` -- BinaryConnect's stochastic binarization: ``+1`` with probability
  ``hard_sigmoid(x) = clip((x + 1) / 2, 0, 1)``, ``-1`` otherwise; same STE backward.
* :func:`bwn_binarize` -- ``alpha * sign(W)`` with ``alpha = mean |W|`` per output channel, the
  least-squares optimum of ``||W - alpha B||^2`` (Rastegari et al.).
* :func:`xnor_scaling_map` -- XNOR-Net's ``K``: the mean over channels of ``|I|``, convolved with a
  ``kh x kw`` box filter of value ``1 / (kh kw)`` (zero padded), so
  ``I * W ~= (sign(I) * sign(W)) . K . alpha``.

:class:`BinaryDense` and :class:`BinaryConv2D` keep float "latent" weights, clipped to ``[-1, 1]`` by
:class:`WeightClip`, and binarize them in every forward pass. Stochastic binarization is used only in
training; inference always uses the deterministic sign, so a trained layer is deployable as a binary
layer (method 1 of BinaryConnect, Section 2.6).

References:
  Courbariaux, Bengio, David. BinaryConnect: Training Deep Neural Networks with binary weights
  during propagations. NeurIPS 2015. https://arxiv.org/abs/1511.00363
  Hubara, Courbariaux, Soudry, El-Yaniv, Bengio. Binarized Neural Networks. NeurIPS 2016.
  https://arxiv.org/abs/1602.02830
  Rastegari, Ordonez, Redmon, Farhadi. XNOR-Net: ImageNet Classification Using Binary
  Convolutional Neural Networks. ECCV 2016. https://arxiv.org/abs/1603.05279
"""

from __future__ import annotations

import math

import tensorflow as tf

from tfrobust import _validate as V
from tfrobust._keras import check_tf_keras_model, keras

__all__ = [
    "BINARY_MODES",
    "BinaryConv2D",
    "BinaryDense",
    "WeightClip",
    "binarize_model",
    "bwn_binarize",
    "hard_sigmoid",
    "stochastic_sign",
    "ste_sign",
    "xnor_scaling_map",
]

BINARY_MODES = ("binaryconnect", "bwn", "xnor")


def _check_clip(clip_value):
    return V.number("clip_value", clip_value, minimum=0.0, open_min=True)


def _sign(x):
    # sign with sign(0) = +1, so every output is exactly +-1; tf.where with scalar branches lowers to
    # the builtin SELECT_V2 (present in TFLite Micro), unlike tf.sign(0) = 0.
    return tf.where(x >= 0, tf.ones_like(x), -tf.ones_like(x))


def ste_sign(x, clip_value: float = 1.0):
    """Binarize to ``{-1, +1}`` with a straight-through estimator.

    Forward: ``q(x) = +1 if x >= 0 else -1``. Backward: ``dq/dx = 1_{|x| <= clip_value}`` (the
    identity inside the clip range, zero outside, which cancels the gradient of saturated units).

    Args:
      x: a float tensor.
      clip_value: half-width of the range where the gradient passes (``> 0``).

    Returns:
      A tensor of ``x``'s shape and dtype with values in ``{-1, +1}``.

    References:
      Hubara et al., Binarized Neural Networks, https://arxiv.org/abs/1602.02830 (Eq. 4).
    """
    clip_value = _check_clip(clip_value)
    x = tf.convert_to_tensor(x)

    @tf.custom_gradient
    def _ste(t):
        def grad(dy):
            return dy * tf.cast(tf.abs(t) <= clip_value, dy.dtype)

        return _sign(t), grad

    return _ste(x)


def hard_sigmoid(x):
    """``hard_sigmoid(x) = clip((x + 1) / 2, 0, 1)``, BinaryConnect's binarization probability."""
    x = tf.convert_to_tensor(x)
    return tf.clip_by_value((x + 1.0) / 2.0, 0.0, 1.0)


def stochastic_sign(x, clip_value: float = 1.0, seed: int | None = None):
    """BinaryConnect's stochastic binarization with a straight-through estimator.

    Forward: ``+1`` with probability ``p = hard_sigmoid(x) = clip((x + 1) / 2, 0, 1)``, else ``-1``
    (so ``E[q(x)] = 2p - 1 = clip(x, -1, 1)``). Backward: ``dq/dx = 1_{|x| <= clip_value}``.

    Args:
      x: a float tensor.
      clip_value: half-width of the range where the gradient passes.
      seed: optional op seed for ``tf.random.uniform``.

    Returns:
      A tensor of ``x``'s shape and dtype with values in ``{-1, +1}``.

    References:
      Courbariaux et al., BinaryConnect, https://arxiv.org/abs/1511.00363 (Eqs. 2-3).
    """
    clip_value = _check_clip(clip_value)
    seed = V.seed(seed)
    x = tf.convert_to_tensor(x)

    @tf.custom_gradient
    def _stoch(t):
        p = hard_sigmoid(t)
        u = tf.random.uniform(tf.shape(t), dtype=t.dtype, seed=seed)
        out = tf.where(u < p, tf.ones_like(t), -tf.ones_like(t))

        def grad(dy):
            return dy * tf.cast(tf.abs(t) <= clip_value, dy.dtype)

        return out, grad

    return _stoch(x)


def bwn_binarize(kernel, binary=None, clip_value: float = 1.0):
    """Binary-weight-network weights ``alpha * sign(W)``, one ``alpha`` per output channel.

    ``alpha_j = mean_i |W_ij|`` over every axis but the last (the output channel), the closed-form
    minimiser of ``||W_j - alpha_j B_j||^2`` over ``B_j in {-1, +1}^n``. The gradient flows through
    both factors: ``dL/dW = g . alpha . 1_{|W| <= clip} + sign(W) / n . sum_i (g . sign(W))``.

    Args:
      kernel: weights with the output channel last (Dense ``[in, out]``, Conv ``[kh, kw, in, out]``).
      binary: optional precomputed ``{-1, +1}`` tensor (e.g. from :func:`stochastic_sign`); default
        ``ste_sign(kernel)``.
      clip_value: STE clip range.

    Returns:
      ``alpha * binary`` with ``kernel``'s shape.

    References:
      Rastegari et al., XNOR-Net, https://arxiv.org/abs/1603.05279 (Section 3.1).
    """
    kernel = tf.convert_to_tensor(kernel)
    if kernel.shape.rank is None or kernel.shape.rank < 2:
        raise ValueError(f"`kernel` must have rank >= 2 (output channel last). Received: kernel.shape="
                         f"{kernel.shape}")
    if binary is None:
        binary = ste_sign(kernel, clip_value)
    alpha = tf.reduce_mean(tf.abs(kernel), axis=list(range(kernel.shape.rank - 1)), keepdims=True)
    return alpha * binary


def _check_conv_args(kernel_size, strides, padding):
    def pair(name, v):
        if isinstance(v, int) and not isinstance(v, bool):
            v = (v, v)
        try:
            v = tuple(v)
        except TypeError:
            v = ()
        if len(v) != 2 or not all(isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in v):
            raise ValueError(f"`{name}` must be a positive int or a pair of them. Received: {name}={v!r}")
        return v

    kernel_size = pair("kernel_size", kernel_size)
    strides = pair("strides", strides)
    if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
        raise ValueError(f"`padding` must be 'valid' or 'same'. Received: padding={padding!r}")
    return kernel_size, strides, padding.lower()


def xnor_scaling_map(inputs, kernel_size, strides=1, padding="valid"):
    """XNOR-Net's input scaling map ``K = A * k``.

    ``A = mean_c |I|`` (per pixel, over channels) and ``k`` is the ``kh x kw`` box filter with
    ``k_ij = 1 / (kh kw)``; the convolution uses the layer's strides and padding (zero padding, so a
    border pixel's ``K`` averages over the full window including the zeros, as in the paper).

    Args:
      inputs: ``[N, H, W, C]`` float tensor.
      kernel_size, strides, padding: those of the binary convolution.

    Returns:
      ``[N, H', W', 1]``, broadcastable against the convolution output.

    References:
      Rastegari et al., XNOR-Net, https://arxiv.org/abs/1603.05279 (Section 3.2, Fig. 2).
    """
    kernel_size, strides, padding = _check_conv_args(kernel_size, strides, padding)
    inputs = tf.convert_to_tensor(inputs)
    if inputs.shape.rank != 4:
        raise ValueError(f"`inputs` must be [N, H, W, C]. Received: inputs.shape={inputs.shape}")
    a = tf.reduce_mean(tf.abs(inputs), axis=-1, keepdims=True)
    kh, kw = kernel_size
    box = tf.fill([kh, kw, 1, 1], tf.constant(1.0 / (kh * kw), inputs.dtype))
    return tf.nn.conv2d(a, box, strides=strides, padding=padding.upper())


@keras.utils.register_keras_serializable(package="tfrobust")
class WeightClip(keras.constraints.Constraint):
    """Clip latent weights to ``[-clip_value, clip_value]`` after each update (BinaryConnect)."""

    def __init__(self, clip_value: float = 1.0):
        self.clip_value = _check_clip(clip_value)

    def __call__(self, w):
        return tf.clip_by_value(w, -self.clip_value, self.clip_value)

    def get_config(self):
        return {"clip_value": self.clip_value}


class _BinaryBase(keras.layers.Layer):
    """Shared argument checks and weight binarization of BinaryDense and BinaryConv2D."""

    # Random only in training (stochastic BinaryConnect); inference is deterministic, so attacks
    # do not need EOT. The constructor flag is stored as `stochastic_binarization`.
    stochastic = False

    def _init_binary(self, mode, stochastic, binary_inputs, activation, use_bias, kernel_initializer,
                     bias_initializer):
        if mode not in BINARY_MODES:
            raise ValueError(f"`mode` must be one of {BINARY_MODES}. Received: mode={mode!r}")
        if not isinstance(stochastic, bool):
            raise TypeError(f"`stochastic` must be a bool. Received: stochastic={stochastic!r}")
        if binary_inputs is None:
            binary_inputs = mode == "xnor"
        if not isinstance(binary_inputs, bool):
            raise TypeError("`binary_inputs` must be a bool or None. Received: "
                            f"binary_inputs={binary_inputs!r}")
        if mode == "xnor" and not binary_inputs:
            raise ValueError("mode='xnor' binarizes its inputs by definition; use mode='bwn' for real "
                             "inputs. Received: binary_inputs=False")
        if not isinstance(use_bias, bool):
            raise TypeError(f"`use_bias` must be a bool. Received: use_bias={use_bias!r}")
        self.mode = mode
        self.stochastic_binarization = stochastic
        self.binary_inputs = binary_inputs
        self.activation = keras.activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def _add_kernel_and_bias(self, kernel_shape, units):
        self.kernel = self.add_weight(name="kernel", shape=kernel_shape, initializer=self.kernel_initializer,
                                      constraint=WeightClip(1.0), trainable=True)
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(units,), initializer=self.bias_initializer,
                                        trainable=True)

    def binary_kernel(self, training=None):
        """The kernel used in the forward pass: ``sign(W)`` or ``alpha * sign(W)`` (see ``mode``)."""
        kernel = tf.convert_to_tensor(self.kernel)
        if training is None:
            training = False
        if isinstance(training, int):  # bool, or Keras' 0/1 learning phase
            training = bool(training)
        if self.stochastic_binarization and training is not False:
            if isinstance(training, bool):  # a tensor `training` is resolved in the graph
                binary = stochastic_sign(kernel)
            else:
                binary = tf.cond(tf.cast(training, tf.bool), lambda: stochastic_sign(kernel),
                                 lambda: ste_sign(kernel))
        else:
            binary = ste_sign(kernel)
        if self.mode == "binaryconnect":
            return binary
        return bwn_binarize(kernel, binary)

    def _finish(self, outputs):
        if self.use_bias:
            outputs = tf.nn.bias_add(outputs, self.bias)
        return self.activation(outputs)

    def _binary_config(self):
        return {
            "mode": self.mode,
            "stochastic": self.stochastic_binarization,
            "binary_inputs": self.binary_inputs,
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }


@keras.utils.register_keras_serializable(package="tfrobust")
class BinaryDense(_BinaryBase):
    """A Dense layer with binary weights (and, in ``"xnor"`` mode, binary inputs).

    With latent weights ``W`` (clipped to ``[-1, 1]``) and ``B = sign(W)``:

    * ``"binaryconnect"``: ``y = x B + b``;
    * ``"bwn"``: ``y = x (alpha . B) + b`` with ``alpha_j = mean_i |W_ij|``;
    * ``"xnor"``: ``y = (sign(x) B) . beta . alpha + b`` with ``beta = mean_i |x_i|`` per example
      (the Dense case of the ``K`` map: the "kernel window" is the whole input).

    ``binary_inputs=True`` with ``"binaryconnect"`` or ``"bwn"`` binarizes the inputs without the
    ``beta`` factor (the BNN layer of Hubara et al.); this is the layer the bit-packed C export runs
    with pure integer XNOR/popcount arithmetic.

    Args:
      units: output size.
      mode: ``"binaryconnect"``, ``"bwn"`` or ``"xnor"``.
      stochastic: sample the binary weights with BinaryConnect's hard-sigmoid probabilities in
        training (inference always uses ``sign``).
      binary_inputs: binarize inputs with :func:`ste_sign`; ``None`` means ``mode == "xnor"``.
      activation, use_bias, kernel_initializer, bias_initializer: as in ``keras.layers.Dense``.

    Example:
      >>> layer = BinaryDense(4, mode="bwn")
      >>> layer(tf.ones((2, 3))).shape
      TensorShape([2, 4])

    References:
      https://arxiv.org/abs/1511.00363, https://arxiv.org/abs/1603.05279
    """

    def __init__(self, units, mode="bwn", stochastic=False, binary_inputs=None, activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.units = V.integer("units", units, minimum=1)
        self._init_binary(mode, stochastic, binary_inputs, activation, use_bias, kernel_initializer,
                          bias_initializer)

    def build(self, input_shape):
        input_shape = tf.TensorShape(input_shape)
        last = input_shape[-1]
        if last is None:
            raise ValueError(f"BinaryDense needs a known last input dimension. Received: input_shape="
                             f"{input_shape}")
        self._add_kernel_and_bias((int(last), self.units), self.units)
        super().build(input_shape)

    def call(self, inputs, training=None):
        x = tf.cast(inputs, self.compute_dtype)
        beta = None
        if self.binary_inputs:
            if self.mode == "xnor":
                beta = tf.reduce_mean(tf.abs(x), axis=-1, keepdims=True)
            x = ste_sign(x)
        kernel = self.binary_kernel(training)
        if x.shape.rank == 2:
            y = tf.matmul(x, kernel)
        else:
            y = tf.tensordot(x, kernel, [[x.shape.rank - 1], [0]])
        if beta is not None:
            y = y * beta
        return self._finish(y)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)[:-1].concatenate([self.units])

    def get_config(self):
        return {**super().get_config(), "units": self.units, **self._binary_config()}


def _conv_out_len(n, k, s, padding):
    if n is None:
        return None
    return math.ceil(n / s) if padding == "same" else (n - k) // s + 1


@keras.utils.register_keras_serializable(package="tfrobust")
class BinaryConv2D(_BinaryBase):
    """A 2-D convolution (NHWC) with binary weights (and, in ``"xnor"`` mode, binary inputs).

    * ``"binaryconnect"``: ``y = x * B + b``;
    * ``"bwn"``: ``y = x * (alpha . B) + b``, ``alpha_j = mean |W_:,:,:,j|``;
    * ``"xnor"``: ``y = (sign(x) * B) . K . alpha + b`` with ``K = xnor_scaling_map(x)``.

    ``binary_inputs=True`` with ``"binaryconnect"``/``"bwn"`` binarizes inputs without ``K`` (the
    integer-exact layer of the bit-packed C export). With ``padding="same"`` the padded border of
    ``sign(x)`` is 0, not -1, as in every BNN framework.

    Args:
      filters: output channels.
      kernel_size, strides: int or pair.
      padding: ``"valid"`` or ``"same"``.
      mode, stochastic, binary_inputs, activation, use_bias, kernel_initializer, bias_initializer:
        see :class:`BinaryDense`.

    Example:
      >>> layer = BinaryConv2D(8, 3, mode="xnor", padding="same")
      >>> layer(tf.ones((1, 5, 5, 2))).shape
      TensorShape([1, 5, 5, 8])

    References:
      https://arxiv.org/abs/1511.00363, https://arxiv.org/abs/1603.05279
    """

    def __init__(self, filters, kernel_size, strides=1, padding="valid", mode="bwn", stochastic=False,
                 binary_inputs=None, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.filters = V.integer("filters", filters, minimum=1)
        self.kernel_size, self.strides, self.padding = _check_conv_args(kernel_size, strides, padding)
        self._init_binary(mode, stochastic, binary_inputs, activation, use_bias, kernel_initializer,
                          bias_initializer)

    def build(self, input_shape):
        input_shape = tf.TensorShape(input_shape)
        if input_shape.rank != 4 or input_shape[-1] is None:
            raise ValueError(f"BinaryConv2D needs [N, H, W, C] inputs with known C. Received: "
                             f"input_shape={input_shape}")
        self._add_kernel_and_bias((*self.kernel_size, int(input_shape[-1]), self.filters), self.filters)
        super().build(input_shape)

    def call(self, inputs, training=None):
        x = tf.cast(inputs, self.compute_dtype)
        k_map = None
        if self.binary_inputs:
            if self.mode == "xnor":
                k_map = xnor_scaling_map(x, self.kernel_size, self.strides, self.padding)
            x = ste_sign(x)
        kernel = self.binary_kernel(training)
        y = tf.nn.conv2d(x, kernel, strides=self.strides, padding=self.padding.upper())
        if k_map is not None:
            y = y * k_map
        return self._finish(y)

    def compute_output_shape(self, input_shape):
        s = tf.TensorShape(input_shape).as_list()
        return tf.TensorShape([
            s[0],
            _conv_out_len(s[1], self.kernel_size[0], self.strides[0], self.padding),
            _conv_out_len(s[2], self.kernel_size[1], self.strides[1], self.padding),
            self.filters,
        ])

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            **self._binary_config(),
        }


def binarize_model(model, mode: str = "bwn", *, stochastic: bool = False, exclude=()):
    """Return a copy of ``model`` with every ``Dense``/``Conv2D`` replaced by its binary twin.

    Each replaced layer keeps its name, activation and bias; its kernel becomes the latent weights
    of a :class:`BinaryDense`/:class:`BinaryConv2D` (clipped to ``[-1, 1]``), ready for fine-tuning
    or training from the float initialisation. Other layers are copied with their weights.

    Args:
      model: a tf_keras functional or Sequential model.
      mode: ``"binaryconnect"``, ``"bwn"`` or ``"xnor"`` for every replaced layer.
      stochastic: stochastic weight binarization in training.
      exclude: names of ``Dense``/``Conv2D`` layers to keep in float (commonly the first and the
        last layer, which binary networks usually leave at higher precision).

    Returns:
      The new model (the input model is not modified).

    Raises:
      ValueError: bad ``mode``, unknown names in ``exclude``, or a convolution with dilation,
        groups or ``channels_first`` (named in the message).

    Example:
      >>> from tfrobust.models import small_cnn
      >>> twin = binarize_model(small_cnn(), "bwn", exclude=("conv1", "logits"))
      >>> type(twin.get_layer("conv2")).__name__
      'BinaryConv2D'
    """
    check_tf_keras_model(model)
    if mode not in BINARY_MODES:
        raise ValueError(f"`mode` must be one of {BINARY_MODES}. Received: mode={mode!r}")
    if not isinstance(stochastic, bool):
        raise TypeError(f"`stochastic` must be a bool. Received: stochastic={stochastic!r}")
    exclude = (exclude,) if isinstance(exclude, str) else tuple(exclude)
    names = {layer.name for layer in model.layers}
    unknown = sorted(set(exclude) - names)
    if unknown:
        raise ValueError(f"`exclude` names layers the model does not have. Received: exclude={unknown}")

    def replace(layer):
        config = layer.get_config()
        if layer.name in exclude or type(layer) not in (keras.layers.Dense, keras.layers.Conv2D):
            return layer.__class__.from_config(config)
        common = dict(mode=mode, stochastic=stochastic, activation=config["activation"],
                      use_bias=config["use_bias"], name=layer.name)
        if type(layer) is keras.layers.Dense:
            return BinaryDense(config["units"], **common)
        if (tuple(config["dilation_rate"]) != (1, 1) or config.get("groups", 1) != 1
                or config["data_format"] != "channels_last"):
            raise ValueError(f"Layer '{layer.name}': only channels-last convolutions without dilation or "
                             f"groups can be binarized. Received: layer={layer.name!r}")
        return BinaryConv2D(config["filters"], config["kernel_size"], strides=config["strides"],
                            padding=config["padding"], **common)

    twin = keras.models.clone_model(model, clone_function=replace)
    for old, new in zip(model.layers, twin.layers):
        weights = old.get_weights()
        if isinstance(new, _BinaryBase) and weights:
            weights[0] = weights[0].clip(-1.0, 1.0)
        new.set_weights(weights)
    return twin
