"""Binary-weight / XNOR variant of a small VGG-style CNN, built from the compression layers."""

from __future__ import annotations

from tfrobust._keras import keras
from tfrobust.layers import BinaryConv2D
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
