"""Seeding for reproducible runs."""

from __future__ import annotations


def set_seed(seed: int) -> None:
    """Seed Python, NumPy, TensorFlow and tf_keras' own initializer generator in one call.

    ``tf.random.set_seed`` alone is not enough: once anything has called
    ``keras.utils.set_random_seed``, tf_keras draws unseeded initializers from its own generator,
    which only ``keras.utils.set_random_seed`` resets.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative int. Received: seed={seed!r}")
    from tfrobust._keras import keras

    keras.utils.set_random_seed(seed)
