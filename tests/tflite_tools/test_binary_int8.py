import numpy as np
import pytest
import tensorflow as tf

from tfrobust._keras import keras
from tfrobust.data import as_tf_dataset
from tfrobust.layers import BinaryConv2D, BinaryDense
from tfrobust.tflite_tools import TFLiteModel, convert
from tfrobust.tflite_tools._binary_int8 import bake_binary_to_int8, binary_weight_report, unit_binary_weights

L = keras.layers


@pytest.fixture(scope="module")
def binary_cnn():
    from tfrobust.data import load_dataset

    x, y = load_dataset("fashion_mnist", "train", limit=3000, download=False)
    tf.random.set_seed(0)
    inp = keras.Input((28, 28, 1))
    h = BinaryConv2D(16, 3, padding="same", mode="bwn", activation="relu", name="bconv1")(inp)
    h = L.MaxPooling2D(2)(h)
    h = BinaryConv2D(32, 3, padding="same", mode="binaryconnect", use_bias=False, name="bconv2")(h)
    h = L.BatchNormalization(momentum=0.9)(h)
    h = L.ReLU()(h)
    h = L.MaxPooling2D(2)(h)
    h = L.Flatten()(h)
    h = BinaryDense(64, mode="bwn", activation="relu", name="bfc1")(h)
    out = BinaryDense(10, mode="bwn", name="logits")(h)
    model = keras.Model(inp, out)
    model.compile(keras.optimizers.Adam(2e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(as_tf_dataset(x, y, batch_size=64, shuffle=True, seed=0), epochs=2, verbose=0)
    return model, x[-300:]


def test_baked_model_is_standard_layers_with_the_same_function(binary_cnn):
    model, calib = binary_cnn
    baked = bake_binary_to_int8(model, calib)
    assert [layer.name for layer in baked.layers] == [layer.name for layer in model.layers]
    assert not any(isinstance(layer, (BinaryDense, BinaryConv2D)) for layer in baked.layers)
    assert isinstance(baked.get_layer("bconv1"), L.Conv2D) and isinstance(baked.get_layer("logits"), L.Dense)
    # BWN kernels: alpha_j * sign(W) per output channel; BinaryConnect kernels: exactly +-1.
    w = model.get_layer("bconv1").kernel.numpy()
    alpha = np.abs(w).reshape(-1, 16).mean(axis=0)
    np.testing.assert_allclose(baked.get_layer("bconv1").kernel.numpy(), alpha * np.where(w >= 0, 1, -1),
                               rtol=1e-6)
    assert set(np.unique(baked.get_layer("bconv2").kernel.numpy())) == {-1.0, 1.0}
    np.testing.assert_allclose(baked(calib), model(calib), atol=1e-4)


def test_int8_model_has_binary_kernels_and_agrees_with_keras(binary_cnn, fashion_test):
    model, calib = binary_cnn
    tflite = convert(model, "binary", calib)
    report = binary_weight_report(tflite)
    assert len(report) == 4
    for row in report:  # every baked kernel: two int8 levels +-q per output channel, per-channel scales
        assert row["binary"] and row["per_channel"] and row["max_levels_per_channel"] == 2, row
    x, y = fashion_test[0][:2000], fashion_test[1][:2000]
    keras_pred = np.asarray(model(x, training=False)).argmax(axis=1)
    int8_pred = np.asarray(TFLiteModel(tflite)(x)).argmax(axis=1)
    assert np.mean(int8_pred == keras_pred) >= 0.98
    assert np.mean(keras_pred == y) > 0.7
    # The same real weights stored as int8 +-1 with scale alpha_j: same predictions.
    unit = unit_binary_weights(tflite)
    assert all(row["levels"] == [-1, 1] and row["binary"] for row in binary_weight_report(unit))
    unit_logits = np.asarray(TFLiteModel(unit)(x[:500]))
    int8_logits = np.asarray(TFLiteModel(tflite)(x[:500]))
    assert np.mean(unit_logits.argmax(axis=1) == int8_logits.argmax(axis=1)) >= 0.99


def test_binary_weight_report_flags_ordinary_int8_kernels(binary_cnn, rng):
    _, calib = binary_cnn
    inp = keras.Input((28, 28, 1))
    plain = keras.Model(inp, L.Dense(3)(L.Flatten()(inp)))
    rows = binary_weight_report(convert(plain, "int8", calib))
    assert len(rows) == 1 and not rows[0]["binary"] and rows[0]["max_levels_per_channel"] > 2


def test_layers_with_binary_inputs_are_refused_naming_the_layer():
    inp = keras.Input((8,))
    model = keras.Model(inp, BinaryDense(2, mode="xnor", name="xnor_fc")(BinaryDense(4)(inp)))
    with pytest.raises(ValueError, match="xnor_fc"):
        bake_binary_to_int8(model)


def test_model_without_binary_layers_is_refused():
    inp = keras.Input((8,))
    with pytest.raises(ValueError, match="no BinaryDense"):
        bake_binary_to_int8(keras.Model(inp, L.Dense(2)(inp)))
    with pytest.raises(TypeError, match="model"):
        bake_binary_to_int8("model.keras")


def test_sequential_model_bakes_to_the_same_function(rng):
    model = keras.Sequential([keras.Input((6, 6, 2)),
                              BinaryConv2D(4, 3, mode="binaryconnect", padding="same"),
                              L.Flatten(), L.Dropout(0.5), BinaryDense(3, mode="bwn", activation="tanh")])
    x = rng.uniform(size=(5, 6, 6, 2)).astype("float32")
    baked = bake_binary_to_int8(model, x)
    assert isinstance(baked, keras.Sequential)
    assert [type(layer).__name__ for layer in baked.layers] == ["Conv2D", "Flatten", "Dropout", "Dense"]
    np.testing.assert_allclose(baked(x), model(x), atol=1e-5)
