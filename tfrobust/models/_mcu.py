"""A CNN family sized for microcontrollers: int8 weights <= 64 KiB, TFLite Micro arena <= 32 KiB.

The layout was chosen by measuring the deployed file (``tflite_tools.kernel_stats`` for the
weight bytes, ``tflite_tools.tflm_check`` for the arena at batch 1; figures in docs/mcu.md):

- the arena is set by the largest pair of live activations, so the only full-resolution
  tensor is the first conv's output (28 x 28 x 16 int8 = 12,544 bytes) and it is pooled at once;
- the weight bytes are dominated by the dense head, so the last feature map is pooled to 3 x 3
  before the flatten (576 inputs instead of 3,136 at 7 x 7).
"""

from __future__ import annotations

from tfrobust import _validate as V
from tfrobust._keras import keras
from tfrobust.layers import BinaryConv2D, BinaryDense
from tfrobust.models._checks import check_num_classes, model_input
from tfrobust.models._registry import register

layers = keras.layers

#: Channels of the three conv blocks and units of the hidden dense layer at ``width=1.0``.
BASE_CHANNELS = (16, 32, 64)
BASE_DENSE = 64


def _scaled(n: int, width: float) -> int:
    """``n * width`` rounded to a multiple of 4 (int8 kernels vectorize on groups of 4), >= 4."""
    return max(4, int(round(n * width / 4.0)) * 4)


def mcu_channels(width: float = 1.0) -> tuple[int, int, int, int]:
    """``(conv1, conv2, conv3, dense)`` units of :func:`mcu_cnn` at ``width``."""
    width = V.number("width", width, minimum=0.0, open_min=True)
    return (*(_scaled(c, width) for c in BASE_CHANNELS), _scaled(BASE_DENSE, width))


@register("mcu_cnn")
def mcu_cnn(
    input_shape=(28, 28, 1),
    num_classes: int = 10,
    *,
    width: float = 1.0,
    binary: bool = False,
    dropout: float = 0.0,
    bn_momentum: float = 0.9,
    batch_size: int | None = None,
    name: str | None = None,
):
    """Three 3x3 conv blocks (conv -> BN -> ReLU -> 2x2 max-pool) and a small dense head.

    ``conv 16w -> pool -> conv 32w -> pool -> conv 64w -> pool -> flatten -> dense 64w -> logits``
    (channel counts times ``width``, rounded to multiples of 4). At ``width=1.0`` on 28x28x1 it has
    60,906 parameters: about 61 KB of int8 weights and a TFLite Micro arena well under 32 KiB at
    batch 1 (conv1's 28x28x16 output is the largest activation). Convolutions have no bias (the
    BN's shift is folded into the int8 bias at conversion).

    ``binary=True`` makes the hidden layers (conv2, conv3, the hidden dense) binary-weight
    (:class:`tfrobust.layers.BinaryConv2D` / ``BinaryDense``, BWN: ``alpha_j * sign(W)``, real
    activations), keeping the first conv and the logits full precision as in the papers; it
    deploys through ``tflite_tools.convert(model, "binary", ...)`` (+-1 int8 kernels), and the
    two-valued kernels then compress to 1-bit LUT indices with ``tflite_tools.compress_lut``.

    Args:
      input_shape: (H, W, C).
      num_classes: number of logits.
      width: channel multiplier (> 0).
      binary: binary-weight hidden layers.
      dropout: dropout rate before the logits, in [0, 1).
      bn_momentum: BatchNorm moving-average momentum (0.9: the inference statistics follow a short
        training run).
      batch_size: fix the batch dimension (``1`` for microcontroller exports).
      name: model name (default ``mcu_cnn_w<width>`` with ``_bin`` for binary).

    Returns:
      A Keras model returning logits.

    Example:
      >>> model = mcu_cnn(width=0.5)  # doctest: +SKIP
      >>> tflite_tools.tflm_check(convert(model, "int8", x_cal, batch_size=1)).arena_size  # doctest: +SKIP
    """
    num_classes = check_num_classes(num_classes)
    c1, c2, c3, units = mcu_channels(width)
    V.boolean("binary", binary)
    dropout = V.number("dropout", dropout, minimum=0.0, maximum=1.0, open_max=True)
    bn_momentum = V.number("bn_momentum", bn_momentum, minimum=0.0, maximum=1.0, open_max=True)
    inp = model_input(input_shape, batch_size)

    def conv(x, filters, i):
        if binary and i > 1:
            x = BinaryConv2D(filters, 3, padding="same", mode="bwn", use_bias=False, name=f"conv{i}")(x)
        else:
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = layers.BatchNormalization(momentum=bn_momentum, name=f"conv{i}_bn")(x)
        x = layers.Activation("relu", name=f"conv{i}_relu")(x)
        return layers.MaxPooling2D(2, name=f"pool{i}")(x)

    x = conv(inp, c1, 1)
    x = conv(x, c2, 2)
    x = conv(x, c3, 3)
    x = layers.Flatten(name="flatten")(x)
    if binary:
        x = BinaryDense(units, mode="bwn", use_bias=False, name="fc1")(x)
        x = layers.BatchNormalization(momentum=bn_momentum, name="fc1_bn")(x)
        x = layers.Activation("relu", name="fc1_relu")(x)
    else:
        x = layers.Dense(units, activation="relu", name="fc1")(x)
    if dropout > 0:
        x = layers.Dropout(dropout, name="dropout")(x)
    out = layers.Dense(num_classes, name="logits")(x)
    default = f"mcu_cnn_w{width:g}" + ("_bin" if binary else "")
    return keras.Model(inp, out, name=name or default.replace(".", "_"))
