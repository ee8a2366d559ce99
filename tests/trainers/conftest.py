import numpy as np
import pytest

from tfrobust import models, utils


@pytest.fixture(scope="module")
def tiny_data(fashion_train):
    x, y = fashion_train
    return x[:192], y[:192]


@pytest.fixture
def tiny_model():
    def build(seed=0):
        utils.set_seed(seed)
        return models.small_cnn(width=4, dense_units=16)

    return build


@pytest.fixture
def batches(tiny_data):
    """Unshuffled tf.data batches: the same order every epoch and every run."""
    from tfrobust.data import as_tf_dataset

    x, y = tiny_data
    return as_tf_dataset(x, y, batch_size=64)


def max_abs_diff(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


@pytest.fixture
def stop_at_epoch():
    """A callback class simulating a crash at the start of an epoch (the previous one is backed up)."""
    from tfrobust._keras import keras

    class StopAtEpoch(keras.callbacks.Callback):
        def __init__(self, epoch):
            super().__init__()
            self.epoch = epoch

        def on_epoch_begin(self, epoch, logs=None):
            if epoch == self.epoch:
                raise RuntimeError("simulated interruption")

    return StopAtEpoch
