"""Test-suite set-up: the legacy-Keras switch must precede TensorFlow's first import (TF-MOT)."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def fashion_train():
    from tfrobust.data import load_dataset

    return load_dataset("fashion_mnist", "train", download=False)


@pytest.fixture(scope="session")
def fashion_test():
    from tfrobust.data import load_dataset

    return load_dataset("fashion_mnist", "test", download=False)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
