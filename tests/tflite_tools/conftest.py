"""Shared fixtures: one small CNN trained briefly on Fashion-MNIST and its int8 export."""

import numpy as np
import pytest


@pytest.fixture(scope="session")
def trained_cnn(fashion_train, base_seed):
    from tfrobust import data, models, utils
    from tfrobust._keras import keras

    utils.set_seed(base_seed)  # session fixture: runs before the per-test seed
    x, y = fashion_train[0][:10000], fashion_train[1][:10000]
    model = models.small_cnn(width=16, dense_units=64)
    model.compile(optimizer=keras.optimizers.Adam(2e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(data.as_tf_dataset(x, y, batch_size=128, shuffle=True, seed=0), epochs=1, verbose=0)
    return model


@pytest.fixture(scope="session")
def calibration(fashion_train):
    return fashion_train[0][-300:]


@pytest.fixture(scope="session")
def int8_batch1(trained_cnn, calibration):
    """Full-integer export with a batch-1 input, as for a microcontroller."""
    from tfrobust.tflite_tools import convert

    return convert(trained_cnn, "int8", calibration, batch_size=1)


@pytest.fixture
def small_images(rng):
    return rng.uniform(0.0, 1.0, size=(8, 28, 28, 1)).astype(np.float32)
