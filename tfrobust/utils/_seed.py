"""Seeding for reproducible runs."""

from __future__ import annotations

import random

import numpy as np
import tensorflow as tf


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow (``tf.random.set_seed``) in one call."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative int. Received: seed={seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    tf.random.set_seed(seed)
