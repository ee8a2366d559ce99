"""Small helpers shared by the architecture-zoo builders (argument checks, conv-BN-ReLU)."""

from __future__ import annotations

import math

from tfrobust import _validate as V
from tfrobust._keras import keras
from tfrobust.models._checks import (  # noqa: F401 - model_input is re-exported for the zoo
    check_input_shape,
    check_num_classes,
    check_positive_int,
    model_input,
)

layers = keras.layers

# BatchNorm moving-average momentum of the zoo: 0.9 (PyTorch's default, momentum=0.1 there). With
# Keras' 0.99 the inference statistics of deep BN nets are still far from the batch statistics
# after the ~100-step budgets used in tests and benchmarks, and eval accuracy sits near chance.
BN_MOMENTUM = 0.9


def check_classes(num_classes):
    return check_num_classes(num_classes)


def check_int(name, value, minimum=1):
    return V.integer(name, value, minimum=minimum)


def check_int_tuple(name, value, minimum=1):
    """A tuple of ints >= ``minimum`` (a single int is accepted where a tuple is expected)."""
    items = (value,) if isinstance(value, int) and not isinstance(value, bool) else value
    try:
        items = tuple(items)
    except TypeError:
        items = ()
    if not items or not all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in items):
        raise ValueError(
            f"`{name}` must be an int >= {minimum} or a non-empty tuple of them. Received: {name}={value!r}"
        )
    return items


def check_float(name, value, *, low=0.0, high=math.inf, low_inclusive=False, high_inclusive=True):
    return V.number(name, value, minimum=low, maximum=None if math.isinf(high) else high,
                    open_min=not low_inclusive, open_max=not high_inclusive)


def scaled(width: float, channels: int, divisor: int = 1) -> int:
    """``channels * width`` rounded to a positive multiple of ``divisor``."""
    return max(divisor, int(round(channels * width / divisor)) * divisor)


def conv_bn_act(
    x, filters, kernel_size, *, strides=1, batch_norm=True, activation="relu", padding="same", name=None
):
    """Conv (no bias when BatchNorm follows) -> optional BatchNorm -> optional activation."""
    x = layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        use_bias=not batch_norm,
        kernel_initializer="he_normal",
        name=None if name is None else f"{name}_conv",
    )(x)
    if batch_norm:
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=None if name is None else f"{name}_bn")(x)
    if activation is not None:
        x = layers.Activation(activation, name=None if name is None else f"{name}_{activation}")(x)
    return x


def logits_head(x, num_classes, *, dropout=0.0, name="logits"):
    """Global average pool -> optional dropout -> Dense logits."""
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    if dropout:
        x = layers.Dropout(dropout, name="head_dropout")(x)
    return layers.Dense(num_classes, name=name)(x)
