import numpy as np
import pytest
import tensorflow as tf

from tfrobust._keras import keras
from tfrobust.testing import layer_test


@keras.utils.register_keras_serializable(package="tfrobust_tests")
class ScaledTanh(keras.layers.Layer):
    """y = a * tanh(x) with a trainable scalar a."""

    def __init__(self, init_scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.init_scale = init_scale

    def build(self, input_shape):
        init = keras.initializers.Constant(self.init_scale)
        self.scale = self.add_weight(name="scale", shape=(), initializer=init)
        super().build(input_shape)

    def call(self, x):
        return self.scale * tf.tanh(x)

    def get_config(self):
        return {**super().get_config(), "init_scale": self.init_scale}


@keras.utils.register_keras_serializable(package="tfrobust_tests")
class ForgetfulScale(keras.layers.Layer):
    """Broken on purpose: ``factor`` is not in its config, so a round trip changes the output."""

    def __init__(self, factor=1.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return self.factor * x

    def get_config(self):  # overrides Keras' automatic config and forgets `factor`
        return super().get_config()


@keras.utils.register_keras_serializable(package="tfrobust_tests")
class NeedsSelectOps(keras.layers.Layer):
    """Uses an op with no TFLite builtin kernel."""

    def call(self, x):
        return tf.strings.to_number(tf.strings.as_string(x))


FLAVOURS = pytest.mark.parametrize("flavour", ["tf_keras", "keras3"])


@FLAVOURS
def test_harness_passes_a_keras_builtin_layer(flavour):
    res = layer_test(keras.layers.Dense, {"units": 3}, input_shape=(4, 5), expected_output_shape=(None, 3),
                     expected_output_dtype="float32", flavour=flavour)
    assert res.saved_formats == ["keras", "h5", "savedmodel"]
    assert res.tflite_max_abs_diff is not None and res.tflite_max_abs_diff <= 1e-5
    assert "FULLY_CONNECTED" in res.tflite_ops


@FLAVOURS
def test_harness_passes_a_small_custom_layer(flavour):
    res = layer_test(ScaledTanh, {"init_scale": 2.0}, input_shape=(2, 3, 3, 1),
                     expected_output_shape=(2, 3, 3, 1), flavour=flavour)
    np.testing.assert_allclose(res.output, 2.0 * np.tanh(res.output * 0 + np.arctanh(res.output / 2.0)),
                               atol=1e-5)
    assert "TANH" in res.tflite_ops


@FLAVOURS
def test_harness_catches_a_config_that_forgets_an_argument(flavour):
    with pytest.raises(AssertionError, match="config round trip"):
        layer_test(ForgetfulScale, {"factor": 3.0}, input_shape=(2, 4), check_tflite=False,
                   flavour=flavour)


@FLAVOURS
def test_harness_catches_a_wrong_output_shape(flavour):
    with pytest.raises(AssertionError, match="output shape"):
        layer_test(keras.layers.Dense, {"units": 3}, input_shape=(4, 5), expected_output_shape=(None, 4),
                   flavour=flavour)


@FLAVOURS
def test_harness_catches_non_builtin_tflite_ops(flavour):
    with pytest.raises(AssertionError, match="tflite"):
        layer_test(NeedsSelectOps, {}, input_shape=(2, 3), check_fit=False, check_save=False,
                   flavour=flavour)


def test_harness_refuses_an_unknown_flavour():
    with pytest.raises(ValueError, match="flavour"):
        layer_test(ScaledTanh, {}, input_shape=(2, 3), flavour="jax")
