"""Argument checks shared by the model builders."""

from __future__ import annotations

from tfrobust import _validate as V
from tfrobust._keras import keras


def check_input_shape(input_shape) -> tuple[int, int, int]:
    try:
        shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or min(shape) <= 0:
        raise ValueError(
            "`input_shape` must be (height, width, channels) with positive sizes (NHWC without the "
            f"batch axis). Received: input_shape={input_shape!r}"
        )
    return shape


def check_num_classes(num_classes) -> int:
    return V.integer("num_classes", num_classes, minimum=2)


def check_positive_int(name: str, value) -> int:
    return V.integer(name, value, minimum=1)


def model_input(input_shape, batch_size):
    """``keras.Input`` for an NHWC image; ``batch_size=1`` for microcontroller exports."""
    if batch_size is not None:
        check_positive_int("batch_size", batch_size)
    return keras.Input(shape=check_input_shape(input_shape), batch_size=batch_size, name="image")
