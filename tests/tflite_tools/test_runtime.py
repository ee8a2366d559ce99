import numpy as np
import pytest
import tensorflow as tf

from tfrobust._keras import keras
from tfrobust.tflite_tools import TFLiteModel, convert, evaluate_deployed


@pytest.fixture(scope="module")
def int8_dynamic(trained_cnn, calibration):
    return convert(trained_cnn, "int8", calibration)


def test_quantization_follows_the_affine_formula(int8_batch1, small_images):
    lite = TFLiteModel(int8_batch1)
    scale, zp = lite.input_details["quantization"]
    q = lite.quantize_input(small_images)
    v = small_images.astype(np.float64) / scale
    expected = np.clip(np.sign(v) * np.floor(np.abs(v) + 0.5) + zp, -128, 127).astype(np.int8)
    np.testing.assert_array_equal(q, expected)
    raw = lite.run_raw(q)
    oscale, ozp = lite.output_details["quantization"]
    np.testing.assert_allclose(lite.predict(small_images), (raw.astype(np.float32) - ozp) * oscale, rtol=1e-6)


def test_fixed_batch_loop_equals_dynamic_batch_resize(int8_batch1, int8_dynamic, fashion_test):
    x = fashion_test[0][:37]  # not a multiple of anything: the last chunk is partial
    fixed, dynamic = TFLiteModel(int8_batch1), TFLiteModel(int8_dynamic, batch_size=16)
    assert not fixed.dynamic_batch and dynamic.dynamic_batch
    np.testing.assert_array_equal(fixed.predict(x), dynamic.predict(x))
    np.testing.assert_array_equal(fixed.predict(x[:1]), fixed.predict(x)[:1])


def test_threads_do_not_change_outputs(int8_dynamic, small_images):
    one = TFLiteModel(int8_dynamic, num_threads=1).predict(small_images)
    two = TFLiteModel(int8_dynamic, num_threads=2).predict(small_images)
    np.testing.assert_array_equal(one, two)


def test_reference_kernels_compute_the_same_classifier(int8_dynamic, small_images):
    # int8 reference and optimized kernels round some intermediates differently by an LSB; through
    # a few layers that stays within a couple of output LSBs (1 on 9% of outputs, measured here).
    fast = TFLiteModel(int8_dynamic)
    ref = TFLiteModel(int8_dynamic, reference_kernels=True)
    q = fast.quantize_input(small_images)
    diff = np.abs(fast.run_raw(q).astype(int) - ref.run_raw(q).astype(int))
    assert ref.reference_kernels and diff.max() <= 2


def test_usable_as_model_fn_inside_tf_function(int8_dynamic, small_images):
    lite = TFLiteModel(int8_dynamic)

    @tf.function
    def predicted_labels(x):
        return tf.argmax(lite(x), axis=-1)

    got = predicted_labels(tf.constant(small_images)).numpy()
    np.testing.assert_array_equal(got, lite.predict(small_images).argmax(-1))


def test_loads_from_a_path(tmp_path, int8_dynamic, small_images):
    path = tmp_path / "m.tflite"
    path.write_bytes(int8_dynamic)
    np.testing.assert_array_equal(TFLiteModel(path).predict(small_images),
                                  TFLiteModel(int8_dynamic).predict(small_images))


@pytest.mark.parametrize("arg, error, fragment", [
    (b"not a model at all", ValueError, "TFL3"),
    (3.0, TypeError, "path_or_bytes"),
    ("/nonexistent/m.tflite", FileNotFoundError, "nonexistent"),
])
def test_bad_model_argument_raises(arg, error, fragment):
    with pytest.raises(error, match=fragment):
        TFLiteModel(arg)


def test_bad_inputs_raise(int8_dynamic):
    lite = TFLiteModel(int8_dynamic)
    with pytest.raises(TypeError, match="x.dtype=uint8"):
        lite(np.zeros((2, 28, 28, 1), np.uint8))
    with pytest.raises(ValueError, match="x.shape"):
        lite(np.zeros((2, 28, 28), np.float32))
    with pytest.raises(ValueError, match="num_threads"):
        TFLiteModel(int8_dynamic, num_threads=0)
    with pytest.raises(TypeError, match="reference_kernels"):
        TFLiteModel(int8_dynamic, reference_kernels="yes")


def test_evaluate_deployed_measures_clean_and_transferred_accuracy(trained_cnn, int8_dynamic, fashion_test):
    x, y = fashion_test[0][:200], fashion_test[1][:200]
    lite = TFLiteModel(int8_dynamic)
    seen = []

    def invert(model_fn, xb, yb):  # a deterministic "attack" so the reference is exact
        seen.append(model_fn)
        return 1.0 - xb

    res = evaluate_deployed(lite, x, y, source_model=trained_cnn, attack=invert, batch_size=64)
    assert all(m is trained_cnn for m in seen) and len(seen) == 4
    assert res.examples == 200 and res.attack == "invert"
    assert res.clean_accuracy == pytest.approx(np.mean(lite.predict(x).argmax(1) == y))
    assert res.transfer_robust_accuracy == pytest.approx(np.mean(lite.predict(1.0 - x).argmax(1) == y))
    keras_pred = trained_cnn.predict(x, verbose=0).argmax(1)
    assert res.source_clean_accuracy == pytest.approx(np.mean(keras_pred == y))
    assert res.argmax_agreement == pytest.approx(np.mean(keras_pred == lite.predict(x).argmax(1)))
    with pytest.raises(ValueError, match="source_model"):
        evaluate_deployed(lite, x, y, attack=invert)


def test_float_model_matches_keras_exactly_enough(small_images):
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(4, 3), keras.layers.Flatten(),
                              keras.layers.Dense(5)])
    lite = TFLiteModel(convert(model, "float"))
    np.testing.assert_allclose(lite.predict(small_images), model(small_images).numpy(), atol=1e-5)
