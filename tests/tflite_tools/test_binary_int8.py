import numpy as np
import pytest

from tfrobust import utils
from tfrobust._keras import keras
from tfrobust.data import as_tf_dataset
from tfrobust.layers import BinaryConv2D, BinaryDense
from tfrobust.tflite_tools import (
    TFLiteModel,
    bake_binary_to_int8,
    binary_weight_report,
    convert,
    unit_binary_weights,
)

L = keras.layers


@pytest.fixture(scope="module")
def binary_cnn(base_seed):
    from tfrobust.data import load_dataset

    x, y = load_dataset("fashion_mnist", "train", limit=3000, download=False)
    # utils.set_seed, not tf.random.set_seed: tf_keras draws unseeded initializers from Python's
    # `random` (or its own generator once anything called keras.utils.set_random_seed), so
    # tf.random.set_seed(0) alone left the initial weights, and the agreement figures, to chance.
    utils.set_seed(base_seed)
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


def _top2_margin(logits):
    top2 = np.sort(logits, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def test_int8_model_has_binary_kernels_and_agrees_with_keras(binary_cnn, fashion_test):
    """Argmax agreement is asserted where the top-2 margin exceeds the logit error, not as a rate.

    An agreement *rate* counts near-ties, whose number moves with training noise (the old
    ``>= 0.99`` failed at 0.986 in a fresh clone). Thresholds are margins measured over 8 seeds
    (``utils.set_seed(s)`` for s in 0..7 with op determinism on, this fixture, 2000 test images;
    LSB = the int8 output scale, 0.086-0.114):

    * Keras vs int8: the largest Keras top-2 margin at a disagreement was 0.81-1.33 LSB; we require
      100% agreement above 5 LSB (>= 3.7x headroom). Examples above 5 LSB: 0.83-0.88 of the batch
      (asserted >= 0.7, so the check is not empty). Overall agreement 0.9895-0.9945 (asserted
      >= 0.98).
    * int8 (+-127) vs the same weights as int8 +-1: max |logit difference| 1-2 LSB (bias rounding on
      the coarser accumulator scale flips a requantization rounding; asserted <= 3 LSB), which
      makes argmax agree wherever the int8 margin exceeds 2 x 3 LSB (asserted, 100%; those are
      0.79-0.85 of the batch, asserted >= 0.7).
    * Keras accuracy 0.78-0.82 (asserted > 0.7).
    """
    model, calib = binary_cnn
    tflite = convert(model, "binary", calib)
    report = binary_weight_report(tflite)
    assert len(report) == 4
    for row in report:  # every baked kernel: two int8 levels +-q per output channel, per-channel scales
        assert row["binary"] and row["per_channel"] and row["max_levels_per_channel"] == 2, row
    x, y = fashion_test[0][:2000], fashion_test[1][:2000]
    keras_logits = np.asarray(model(x, training=False))
    lite = TFLiteModel(tflite)
    lsb = float(lite.output_details["quantization"][0])
    int8_logits = np.asarray(lite(x))
    keras_pred, int8_pred = keras_logits.argmax(axis=1), int8_logits.argmax(axis=1)
    clear = _top2_margin(keras_logits) > 5 * lsb
    assert np.mean(clear) >= 0.7
    np.testing.assert_array_equal(int8_pred[clear], keras_pred[clear])
    assert np.mean(int8_pred == keras_pred) >= 0.98
    assert np.mean(keras_pred == y) > 0.7
    # The same real weights stored as int8 +-1 with scale alpha_j: the same logits up to a few LSB.
    unit = unit_binary_weights(tflite)
    assert all(row["levels"] == [-1, 1] and row["binary"] for row in binary_weight_report(unit))
    unit_logits = np.asarray(TFLiteModel(unit)(x))
    assert np.max(np.abs(unit_logits - int8_logits)) <= 3 * lsb * (1 + 1e-5)
    clear = _top2_margin(int8_logits) > 6 * lsb * (1 + 1e-5)
    assert np.mean(clear) >= 0.7
    np.testing.assert_array_equal(unit_logits[clear].argmax(axis=1), int8_pred[clear])


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
