"""Test-suite set-up: the legacy-Keras switch must precede TensorFlow's first import (TF-MOT).

Determinism: every test starts from ``utils.set_seed(base_seed)`` (Python, NumPy, TensorFlow and
tf_keras' initializer generator) with op determinism on for the whole session, so a test's result
depends neither on the tests that ran before it in the same process nor on the xdist worker. Fixtures
wider than a function that train (module or session scope) run before the per-test seed and seed
themselves with ``base_seed``. Thresholds on trained models state the margin they were measured
with; re-measure one with ``pytest --seed=N tests/...`` for a few N.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--seed", type=int, default=0,
                     help="base seed of every test and of the trained fixtures (default 0); run a few "
                          "values to re-measure the margin of a threshold on a trained model")


@pytest.fixture(scope="session")
def base_seed(request):
    return request.config.getoption("--seed")


@pytest.fixture(scope="session", autouse=True)
def _op_determinism():
    """Session-wide: the switch cannot be turned off, so one test turning it on would change the
    kernels of every later test in its process (the pipeline CLI turns it on, for instance)."""
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()


@pytest.fixture(autouse=True)
def _seeded(base_seed, _op_determinism):
    from tfrobust import utils

    utils.set_seed(base_seed)


@pytest.fixture(scope="session")
def fashion_train():
    from tfrobust.data import load_dataset

    return load_dataset("fashion_mnist", "train", download=False)


@pytest.fixture(scope="session")
def fashion_test():
    from tfrobust.data import load_dataset

    return load_dataset("fashion_mnist", "test", download=False)


@pytest.fixture(scope="session")
def train_tiny_mlp():
    """Factory: ``train(x, y, seed=...)`` -> the tiny MLP of the attack / evaluation tests, trained.

    Flatten -> Dense(32, ReLU) -> Dense(4) logits on 8x8x1 images, Adam(0.01), 30 epochs of batch
    32, seeded with ``keras.utils.set_random_seed(seed)`` first (module fixtures pass ``base_seed``).
    """
    from tfrobust._keras import keras

    def train(x, y, *, seed):
        keras.utils.set_random_seed(seed)
        model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                  keras.layers.Dense(32, activation="relu"), keras.layers.Dense(4)])
        model.compile(optimizer=keras.optimizers.Adam(0.01),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, y, epochs=30, batch_size=32, verbose=0)
        return model

    return train


@pytest.fixture
def rng(base_seed):
    return np.random.default_rng(base_seed)
