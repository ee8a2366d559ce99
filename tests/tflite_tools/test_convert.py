import numpy as np
import pytest
import tensorflow as tf

from tfrobust._keras import keras
from tfrobust.tflite_tools import TFLiteModel, UnsupportedOpsError, convert


class SvdLayer(keras.layers.Layer):
    """Singular values: a TF op that is neither a TFLite builtin nor a Select TF op."""

    def call(self, x):
        return tf.linalg.svd(tf.reshape(x, (-1, 6, 24)), compute_uv=False)


def _svd_model():
    inp = keras.Input((8, 8, 2))
    h = keras.layers.Conv2D(4, 3, name="conv")(inp)
    h = SvdLayer(name="singular_values")(h)
    return keras.Model(inp, keras.layers.Dense(3, name="head")(h), name="svd_net")


@pytest.fixture(scope="module")
def float_size(trained_cnn):
    return len(convert(trained_cnn, "float"))


@pytest.mark.slow
@pytest.mark.parametrize("mode, atol, max_size_ratio", [
    ("float", 1e-4, 1.01), ("float16", 0.05, 0.51), ("dynamic", None, 0.27), ("int8", None, 0.27),
])
def test_each_mode_converts_a_cnn_that_runs(trained_cnn, calibration, fashion_test, float_size, mode, atol,
                                            max_size_ratio):
    x = fashion_test[0][:300]
    data = convert(trained_cnn, mode, calibration if mode == "int8" else None)
    lite = TFLiteModel(data)
    out = lite(x)
    assert isinstance(out, tf.Tensor) and out.dtype == tf.float32 and out.shape == (300, 10)
    ref = trained_cnn.predict(x, verbose=0)
    if atol is not None:
        np.testing.assert_allclose(out.numpy(), ref, atol=atol)
    agree = np.mean(out.numpy().argmax(1) == ref.argmax(1))
    # Margin measured over seeds (pytest --seed=0/1/2 on trained_cnn): 1.0 for float, float16 and
    # dynamic, 0.983-0.99 for int8 (5/300 flips at worst, all near-ties); was >= 0.98.
    assert agree >= 0.97, f"{mode}: argmax agreement {agree}"
    assert len(data) <= max_size_ratio * float_size
    assert lite.input_dtype == (np.int8 if mode == "int8" else np.float32)


@pytest.mark.slow
def test_int8_matches_keras_argmax_on_99_percent_of_fashion_mnist_test(trained_cnn, calibration,
                                                                        fashion_test):
    x, y = fashion_test
    lite = TFLiteModel(convert(trained_cnn, "int8", calibration))
    assert lite.dynamic_batch and lite.input_dtype == np.int8 and lite.output_dtype == np.int8
    logits = trained_cnn.predict(x, batch_size=1000, verbose=0)
    ref, got = logits.argmax(1), lite.predict(x).argmax(1)
    assert len(got) == 10000
    # Margins measured over seeds 0-2 (trained_cnn with --seed=N), LSB = the int8 output scale:
    # int8 flips only near-ties (largest Keras top-2 margin at a flip: 1.07-1.26 LSB), so every
    # image above 5 LSB must agree; those are 0.84-0.88 of the test set. The overall rate was
    # 0.9888-0.9919 (the old ">= 0.99" failed at seed 2); Keras accuracy 0.769-0.803.
    lsb = float(lite.output_details["quantization"][0])
    top2 = np.sort(logits, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 5 * lsb
    assert np.mean(clear) >= 0.75
    np.testing.assert_array_equal(got[clear], ref[clear])
    assert np.mean(got == ref) >= 0.98
    assert np.mean(ref == y) > 0.7  # the model did learn: agreement is not trivial


def test_path_is_written_atomically_and_equals_the_bytes(tmp_path, small_images):
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    path = tmp_path / "sub" / "m.tflite"
    data = convert(model, "float", path=path)
    assert path.read_bytes() == data
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.tflite"]  # no temp file left


def test_batch_size_fixes_the_input_shape(small_images):
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    fixed = TFLiteModel(convert(model, "float", batch_size=1))
    dynamic = TFLiteModel(convert(model, "float"))
    assert not fixed.dynamic_batch and fixed.input_shape == (1, 28, 28, 1)
    assert dynamic.dynamic_batch
    np.testing.assert_allclose(fixed.predict(small_images), dynamic.predict(small_images), atol=1e-6)


def test_unsupported_op_error_names_the_layer_and_the_op():
    with pytest.raises(UnsupportedOpsError, match="layer 'singular_values' uses TF op 'Svd'") as info:
        convert(_svd_model(), "float")
    assert [(u.op, u.layer) for u in info.value.ops] == [("Svd", "singular_values")]
    assert "allow_select_ops=False" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_select_ops_are_opt_in():
    class Det(keras.layers.Layer):
        def call(self, x):
            return tf.linalg.det(tf.reshape(x, (-1, 3, 3)))[:, None]

    inp = keras.Input((9,))
    model = keras.Model(inp, Det(name="determinant")(inp))
    with pytest.raises(UnsupportedOpsError, match="determinant.*MatrixDeterminant"):
        convert(model, "float")
    assert convert(model, "float", allow_select_ops=True)[4:8] == b"TFL3"


@pytest.mark.parametrize("kwargs, error, fragment", [
    ({"mode": "int4"}, ValueError, "mode"),
    ({"mode": "int8"}, ValueError, "representative_data"),
    ({"mode": "float", "representative_data": np.zeros((2, 28, 28, 1), np.float32)}, ValueError,
     "representative_data"),
    ({"mode": "int8", "representative_data": np.zeros((2, 28, 28, 1), np.uint8)}, TypeError,
     "representative_data.dtype"),
    ({"mode": "int8", "representative_data": np.zeros((2, 14, 14, 1), np.float32)}, ValueError,
     "representative_data.shape"),
    ({"mode": "float", "allow_select_ops": 1}, TypeError, "allow_select_ops"),
    ({"mode": "float", "batch_size": 0}, ValueError, "batch_size"),
])
def test_bad_arguments_raise(kwargs, error, fragment):
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    with pytest.raises(error, match=fragment):
        convert(model, **kwargs)


@pytest.mark.parametrize("mode", ["float", "dynamic", "int8"])
def test_keras3_model_converts_and_matches_keras3(mode):
    import keras as keras3

    keras3.utils.set_random_seed(0)
    model3 = keras3.Sequential([keras3.Input((6, 6, 1)), keras3.layers.Conv2D(3, 3, activation="relu"),
                                keras3.layers.Flatten(), keras3.layers.Dense(2)])
    x = np.random.default_rng(0).uniform(size=(16, 6, 6, 1)).astype("float32")
    data = convert(model3, mode, representative_data=x if mode == "int8" else None)
    got, want = TFLiteModel(data).predict(x), model3.predict(x, verbose=0)
    # float: float32 rounding; dynamic: int8 weights; int8: weights and activations on the int8 grid
    tolerance = {"float": 1e-5, "dynamic": 0.02, "int8": 0.05}[mode] * max(1.0, np.abs(want).max())
    assert np.abs(got - want).max() <= tolerance


def test_something_that_is_no_keras_model_is_refused():
    with pytest.raises(TypeError, match="must be a Keras model"):
        convert(object(), "float")


def test_binary_mode_needs_representative_data():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="binary.*representative_data"):
        convert(model, "binary")
