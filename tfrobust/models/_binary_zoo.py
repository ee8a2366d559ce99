"""Binary-weight / XNOR variant of a small VGG-style CNN, built from the compression layers."""

from __future__ import annotations

from tfrobust._keras import keras
from tfrobust.layers import BinaryConv2D, BinaryDense
from tfrobust.models._registry import register
from tfrobust.models._zoo_utils import check_classes, check_float, check_int, model_input

layers = keras.layers

_MODES = ("bwn", "binaryconnect", "xnor")


@register("binary_cnn")
def binary_cnn(
    input_shape=(28, 28, 1),
    num_classes: int = 10,
    *,
    mode: str = "xnor",
    width: int = 16,
    bn_momentum: float = 0.9,
    batch_size: int | None = None,
    name: str | None = None,
):
    """A VGG-style CNN whose hidden convolutions are binary (:class:`tfrobust.layers.BinaryConv2D`).

    Layout (XNOR-Net block order BN -> binary conv -> pool; ReLU after the BN for the
    real-input modes): a full-precision 3x3 conv
    (``width``), then binary 3x3 convs with ``width``, ``2 * width`` (pool), ``2 * width``,
    ``4 * width`` (pool), BatchNorm, global average pool and a full-precision Dense for the logits.
    As in the papers, the first and last layers stay full precision.

    Args:
      mode: ``"xnor"`` (binary weights and inputs, XNOR-Net), ``"bwn"`` (binary weights with a
        per-channel scale) or ``"binaryconnect"`` (plain +-1 weights).
      width: channels of the first conv.
      bn_momentum: BatchNorm moving-average momentum. Binary convolutions produce activations
        far from BatchNorm's initial moving statistics (mean 0, variance 1); the 0.9 default lets
        the inference statistics catch up within a short training budget (Keras' 0.99 left the
        model at chance after 100 steps).

    References:
      Rastegari et al., XNOR-Net, ECCV 2016, https://arxiv.org/abs/1603.05279;
      Courbariaux et al., BinaryConnect, NeurIPS 2015, https://arxiv.org/abs/1511.00363
    """
    num_classes = check_classes(num_classes)
    if mode not in _MODES:
        raise ValueError(f"`mode` must be one of {_MODES}. Received: mode={mode!r}")
    check_int("width", width)
    check_float("bn_momentum", bn_momentum, low_inclusive=True, high=1.0, high_inclusive=False)
    inp = model_input(input_shape, batch_size)
    x = layers.Conv2D(width, 3, padding="same", use_bias=False, name="conv1")(inp)
    x = layers.BatchNormalization(momentum=bn_momentum, name="conv1_bn")(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    for i, (filters, pool) in enumerate(
        [(width, False), (2 * width, True), (2 * width, False), (4 * width, True)], start=2
    ):
        x = layers.BatchNormalization(momentum=bn_momentum, name=f"bconv{i}_bn")(x)
        if mode != "xnor":  # XNOR binarizes its inputs (sign is the non-linearity); the others need one
            x = layers.Activation("relu", name=f"bconv{i}_relu")(x)
        x = BinaryConv2D(filters, 3, padding="same", mode=mode, use_bias=False, name=f"bconv{i}")(x)
        if pool:
            x = layers.MaxPooling2D(2, padding="same", name=f"pool{i}")(x)
    x = layers.BatchNormalization(momentum=bn_momentum, name="final_bn")(x)
    x = layers.Activation("relu", name="final_relu")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    out = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inp, out, name=name or f"{mode}_cnn")


def _binary_twin(base, layout, *, input_shape, batch_size, mode, binary_activations, bn_momentum, padding,
                 name):
    """Build the binary twin of ``base``: ``layout`` rebuilt from binary layers, each followed by BN.

    ``layout`` items: ``("conv", name, filters, kernel)``, ``("pool", name)``, ``("flatten",)``,
    ``("dense", name, units)``; the last item is the logits layer.
    """
    if mode not in ("bwn", "binaryconnect"):
        raise ValueError("`mode` must be 'bwn' or 'binaryconnect' (XNOR-Net's K map is not part of the "
                         f"deployable twins; see binary_cnn). Received: mode={mode!r}")
    if not isinstance(binary_activations, bool):
        raise TypeError("`binary_activations` must be a bool. Received: "
                        f"binary_activations={binary_activations!r}")
    check_float("bn_momentum", bn_momentum, low_inclusive=True, high=1.0, high_inclusive=False)
    inp = model_input(input_shape, batch_size)
    x = inp
    first = True
    for item in layout:
        kind = item[0]
        if kind == "pool":
            x = layers.MaxPooling2D(2, name=item[1])(x)
            continue
        if kind == "flatten":
            x = layers.Flatten(name="flatten")(x)
            continue
        # the first layer sees real pixels; later ones see the sign of the previous BN output
        common = dict(mode=mode, binary_inputs=binary_activations and not first, use_bias=False, name=item[1])
        if kind == "conv":
            x = BinaryConv2D(item[2], item[3], padding=padding, **common)(x)
        else:
            x = BinaryDense(item[2], **common)(x)
        x = layers.BatchNormalization(momentum=bn_momentum, name=f"{item[1]}_bn")(x)
        if not binary_activations and item is not layout[-1]:
            x = layers.Activation("relu", name=f"{item[1]}_relu")(x)
        first = False
    kind = "bnn" if binary_activations else mode
    return keras.Model(inp, x, name=name or f"{base}_{kind}")


@register("binary_small_cnn")
def binary_small_cnn(
    input_shape=(28, 28, 1),
    num_classes: int = 10,
    *,
    mode: str = "bwn",
    binary_activations: bool = False,
    width: int = 32,
    dense_units: int = 128,
    bn_momentum: float = 0.9,
    batch_size: int | None = None,
    name: str | None = None,
):
    """The binary twin of :func:`small_cnn`: same layout, every Conv2D/Dense binary, BN after each.

    conv ``width`` 3x3 -> BN -> ReLU -> pool -> conv ``2 width`` 3x3 -> BN -> ReLU -> pool ->
    dense ``dense_units`` -> BN -> ReLU -> dense ``num_classes`` -> BN (logits). Weights are
    ``alpha_j . sign(W)`` (``"bwn"``) or ``sign(W)`` (``"binaryconnect"``), trained through the
    straight-through estimator on latent float weights.

    - ``binary_activations=False`` (binary-weight network): activations stay real (ReLU). Deploys
      with the stock int8 runtimes: ``tflite_tools.convert(model, "binary", ...)`` bakes each
      binary kernel into int8 +-1 weights with a per-channel scale.
    - ``binary_activations=True`` (binarized network): every layer after the first takes the sign
      of the previous BN output (``binary_inputs=True``; no ReLU). Deploys as bit-packed C99 with
      XNOR + popcount (``tflite_tools.generate_c`` / ``export_binary_c``); all weights are bits.

    First and last layers are binary too (the papers often keep them in full precision; binarizing
    them is what lets the bit-packed export store every kernel at 1 bit).

    References:
      Courbariaux et al., BinaryConnect, https://arxiv.org/abs/1511.00363;
      Rastegari et al., XNOR-Net, https://arxiv.org/abs/1603.05279;
      Hubara et al., Binarized Neural Networks, https://arxiv.org/abs/1602.02830
    """
    num_classes = check_classes(num_classes)
    check_int("width", width)
    check_int("dense_units", dense_units)
    layout = [("conv", "conv1", width, 3), ("pool", "pool1"), ("conv", "conv2", 2 * width, 3),
              ("pool", "pool2"), ("flatten",), ("dense", "fc1", dense_units),
              ("dense", "logits", num_classes)]
    return _binary_twin("small_cnn", layout, input_shape=input_shape, batch_size=batch_size, mode=mode,
                        binary_activations=binary_activations, bn_momentum=bn_momentum, padding="same",
                        name=name)


@register("binary_madry_cnn")
def binary_madry_cnn(
    input_shape=(28, 28, 1),
    num_classes: int = 10,
    *,
    mode: str = "bwn",
    binary_activations: bool = False,
    padding: str = "same",
    bn_momentum: float = 0.9,
    batch_size: int | None = None,
    name: str | None = None,
):
    """The binary twin of :func:`madry_cnn` (conv 32 5x5, pool, conv 64 5x5, pool, fc 1024, logits).

    Same construction and deployment paths as :func:`binary_small_cnn`.
    """
    num_classes = check_classes(num_classes)
    if padding not in ("same", "valid"):
        raise ValueError(f"`padding` must be 'same' or 'valid'. Received: padding={padding!r}")
    layout = [("conv", "conv1", 32, 5), ("pool", "pool1"), ("conv", "conv2", 64, 5), ("pool", "pool2"),
              ("flatten",), ("dense", "fc1", 1024), ("dense", "logits", num_classes)]
    return _binary_twin("madry_cnn", layout, input_shape=input_shape, batch_size=batch_size, mode=mode,
                        binary_activations=binary_activations, bn_momentum=bn_momentum, padding=padding,
                        name=name)
