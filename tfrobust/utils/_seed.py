"""Seeding for reproducible runs."""

from __future__ import annotations

from tfrobust import _validate as V
from tfrobust._keras import keras


def set_seed(seed: int) -> None:
    """Seed Python, NumPy, TensorFlow and tf_keras' own initializer generator in one call.

    ``tf.random.set_seed`` alone is not enough: once anything has called
    ``keras.utils.set_random_seed``, tf_keras draws unseeded initializers from its own generator,
    which only ``keras.utils.set_random_seed`` resets.
    """
    keras.utils.set_random_seed(V.integer("seed", seed, minimum=0))
