import numpy as np
import pytest
import tensorflow as tf

from tfrobust._keras import keras


@keras.utils.register_keras_serializable(package="tfrobust_tests")
class TopHalf(keras.layers.Layer):
    """k-WTA-like test layer (no tfrobust defense layer existed when these tests were written):
    keeps the largest half of each example's activations, zeroes the rest."""

    def __init__(self, ratio=0.5, **kwargs):
        super().__init__(**kwargs)
        self.ratio = ratio

    def call(self, x):
        n = int(np.prod(x.shape[1:]))
        flat = tf.reshape(x, [-1, n])
        kth = tf.math.top_k(flat, max(1, int(self.ratio * n))).values[:, -1:]
        return tf.reshape(tf.where(flat >= kth, flat, 0.0), tf.shape(x))

    def get_config(self):
        return {**super().get_config(), "ratio": self.ratio}


@keras.utils.register_keras_serializable(package="tfrobust_tests")
class Scale(keras.layers.Layer):
    """A custom layer with a weight and no PrunableLayer/QuantizeConfig: must be skipped, not crash."""

    def build(self, input_shape):
        self.gain = self.add_weight(name="gain", shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.gain


def tiny_cnn(custom=None, width=8):
    inp = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(width, 3, activation="relu", name="conv1")(inp)
    if custom is not None:
        x = custom(x)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Conv2D(2 * width, 3, activation="relu", name="conv2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(32, activation="relu", name="fc1")(x)
    out = keras.layers.Dense(10, name="logits")(x)
    return keras.Model(inp, out)


def compile_logits(model, lr=1e-3):
    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


@pytest.fixture(scope="session")
def small_data(fashion_train):
    x, y = fashion_train
    return x[:512], y[:512]
