"""The first builders: a small CNN, the MNIST-challenge CNN (Madry et al.) and LeNet-300-100.

All return *logits* (no softmax): attacks and losses need them, and a softmax output is the
classic cause of vanishing gradients in robustness evaluations.
"""

from __future__ import annotations

from tfrobust._keras import keras
from tfrobust.models._checks import check_num_classes, check_positive_int, model_input
from tfrobust.models._registry import register

layers = keras.layers


def small_cnn_trunk(x, num_classes, width, dense_units):
    """The layers of ``small_cnn`` applied to ``x`` (shared by ``stn``): returns the logits."""
    x = layers.Conv2D(width, 3, padding="same", activation="relu", name="conv1")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(2 * width, 3, padding="same", activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(dense_units, activation="relu", name="fc1")(x)
    return layers.Dense(num_classes, name="logits")(x)


@register("small_cnn")
def small_cnn(
    input_shape=(28, 28, 1),
    num_classes: int = 10,
    *,
    width: int = 32,
    dense_units: int = 128,
    batch_size: int | None = None,
    name: str = "small_cnn",
):
    """Two 3x3 conv blocks (``width``, ``2 * width`` filters, ReLU, 2x2 max-pool) and a dense layer.

    About 0.23M parameters at the defaults on 28x28x1; trains to ~85% on Fashion-MNIST in
    one epoch on 10k images.

    Args:
      input_shape: (H, W, C).
      num_classes: number of logits.
      width: filters of the first conv (the second has twice as many).
      dense_units: units of the hidden dense layer.
      batch_size: fix the batch dimension (``1`` for microcontroller exports, which avoids
        dynamic-shape ops).
      name: model name.
    """
    num_classes = check_num_classes(num_classes)
    check_positive_int("width", width)
    check_positive_int("dense_units", dense_units)
    inp = model_input(input_shape, batch_size)
    return keras.Model(inp, small_cnn_trunk(inp, num_classes, width, dense_units), name=name)


@register("madry_cnn")
def madry_cnn(
    input_shape=(28, 28, 1),
    num_classes: int = 10,
    *,
    padding: str = "same",
    batch_size: int | None = None,
    name: str = "madry_cnn",
):
    """The MNIST-challenge CNN of Madry et al. (2018): conv 32 5x5, pool, conv 64 5x5, pool, fc 1024.

    With ``padding="same"`` (the challenge code) it has 3.27M parameters on 28x28x1; with
    ``padding="valid"`` 1.1M.

    References:
      Madry et al., Towards Deep Learning Models Resistant to Adversarial Attacks, ICLR 2018,
      https://arxiv.org/abs/1706.06083
    """
    num_classes = check_num_classes(num_classes)
    if padding not in ("same", "valid"):
        raise ValueError(f"`padding` must be 'same' or 'valid'. Received: padding={padding!r}")
    inp = model_input(input_shape, batch_size)
    x = layers.Conv2D(32, 5, padding=padding, activation="relu", name="conv1")(inp)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(64, 5, padding=padding, activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(1024, activation="relu", name="fc1")(x)
    out = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inp, out, name=name)


@register("lenet_300_100")
def lenet_300_100(
    input_shape=(28, 28, 1),
    num_classes: int = 10,
    *,
    batch_size: int | None = None,
    name: str = "lenet_300_100",
):
    """LeNet-300-100: the fully connected MNIST net of LeCun et al., used by Deep Compression.

    266,610 parameters on 28x28x1.

    References:
      Han et al., Deep Compression, ICLR 2016, https://arxiv.org/abs/1510.00149
    """
    num_classes = check_num_classes(num_classes)
    inp = model_input(input_shape, batch_size)
    x = layers.Flatten(name="flatten")(inp)
    x = layers.Dense(300, activation="relu", name="fc1")(x)
    x = layers.Dense(100, activation="relu", name="fc2")(x)
    out = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inp, out, name=name)
