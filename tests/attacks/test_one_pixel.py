"""One-pixel attack: at most d pixels change, values stay in range, DE succeeds, black boxes work."""

import numpy as np
import pytest
import tensorflow as tf

from tfrobust._keras import keras
from tfrobust.attacks import one_pixel


def _changed_pixels(x_adv, x):
    """Number of pixel positions (any channel) that differ, per image."""
    diff = np.any(np.asarray(x_adv) != np.asarray(x), axis=-1)
    return diff.reshape(len(x), -1).sum(axis=1)


class _CountingPixelOracle:
    """A NumPy black box returning probabilities: class 1 iff pixel (3, 4) is brighter than 0.8."""

    def __init__(self):
        self.calls = []

    def __call__(self, images):
        assert isinstance(images, np.ndarray)
        self.calls.append(len(images))
        z = 20.0 * (images[:, 3, 4, 0] - 0.8)
        p1 = 1.0 / (1.0 + np.exp(-z))
        return np.stack([1.0 - p1, p1], axis=1)


def test_one_pixel_breaks_model_decided_by_one_pixel_with_paper_defaults():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 0.5, size=(5, 8, 8, 1)).astype(np.float32)
    oracle = _CountingPixelOracle()
    x_adv = one_pixel(oracle, x, seed=0)  # d=1, population 400, 100 iterations, F=0.5
    assert np.all(oracle(x_adv.numpy()).argmax(axis=1) == 1)
    np.testing.assert_array_equal(_changed_pixels(x_adv, x), 1)
    assert np.all(x_adv.numpy()[:, 3, 4, 0] > 0.8)


def test_one_pixel_evaluates_one_generation_per_model_call():
    rng = np.random.default_rng(1)
    x = rng.uniform(0.0, 0.5, size=(3, 8, 8, 1)).astype(np.float32)
    oracle = _CountingPixelOracle()
    one_pixel(oracle, x, np.zeros(3, np.int64), population=16, iterations=7, early_stop=False, seed=0)
    # One initial and one call per generation, each holding every candidate of every image.
    assert oracle.calls == [3 * 16] * 8


def test_one_pixel_changes_at_most_d_pixels_and_stays_in_range():
    rng = np.random.default_rng(2)
    w = tf.constant(rng.normal(size=(6 * 6 * 3, 4)).astype(np.float32))

    def model_fn(x):
        return tf.matmul(tf.reshape(tf.convert_to_tensor(x), [-1, 6 * 6 * 3]), w)

    x = rng.uniform(-1.0, 1.0, size=(6, 6, 6, 3)).astype(np.float32)
    for d in (1, 3):
        x_adv = one_pixel(model_fn, x, pixels=d, population=20, iterations=10, clip_min=-1.0,
                          clip_max=1.0, seed=d).numpy()
        assert np.all(_changed_pixels(x_adv, x) <= d)
        assert x_adv.min() >= -1.0 and x_adv.max() <= 1.0
        broken = np.argmax(model_fn(x_adv).numpy(), 1) != np.argmax(model_fn(x).numpy(), 1)
        # Unbroken images come back untouched; broken ones really changed.
        assert np.all(_changed_pixels(x_adv, x)[~broken] == 0)
        assert np.all(_changed_pixels(x_adv, x)[broken] >= 1)


def test_one_pixel_returns_unbreakable_images_unchanged():
    def constant(images):
        return np.tile([[0.9, 0.1]], (len(images), 1))

    x = np.random.default_rng(6).uniform(0, 1, size=(3, 5, 5, 3)).astype(np.float32)
    np.testing.assert_array_equal(one_pixel(constant, x, population=10, iterations=3, seed=0).numpy(), x)


def test_one_pixel_evolution_beats_its_random_initial_population():
    """Targeted attack on a smooth 'bright spot' detector: DE climbs where random sampling rarely lands."""
    rng = np.random.default_rng(3)
    rows, cols = np.mgrid[0:16, 0:16]
    bump = np.exp(-((rows - 11) ** 2 + (cols - 3) ** 2) / 2.0)

    def detector(images):
        s = (np.asarray(images)[..., 0] * bump).sum(axis=(1, 2))
        return np.stack([np.zeros_like(s), 10.0 * (s - 0.8)], axis=1)  # logits

    x = rng.uniform(0.0, 0.1, size=(20, 16, 16, 1)).astype(np.float32)
    target = np.ones(20, np.int64)
    assert np.all(detector(x).argmax(axis=1) == 0)
    rates = {}
    for iterations in (0, 40):
        x_adv = one_pixel(detector, x, target, targeted=True, population=8, iterations=iterations, seed=0)
        rates[iterations] = np.mean(detector(x_adv.numpy()).argmax(axis=1) == 1)
    assert rates[0] <= 0.2
    assert rates[40] >= 0.6


def test_one_pixel_is_deterministic_and_chunking_does_not_change_results():
    rng = np.random.default_rng(4)
    x = rng.uniform(0.0, 0.5, size=(4, 8, 8, 1)).astype(np.float32)
    a = one_pixel(_CountingPixelOracle(), x, population=12, iterations=5, seed=7).numpy()
    b = one_pixel(_CountingPixelOracle(), x, population=12, iterations=5, seed=7, batch_size=5).numpy()
    np.testing.assert_array_equal(a, b)


def test_one_pixel_attacks_a_litert_interpreter():
    """Gradient-free: the model is a .tflite flatbuffer run by LiteRT, seen as a NumPy callable."""
    from ai_edge_litert.interpreter import Interpreter

    inp = keras.Input((8, 8, 1))
    dense = keras.layers.Dense(2)
    model = keras.Model(inp, dense(keras.layers.Flatten()(inp)))
    kernel = np.zeros((64, 2), np.float32)
    kernel[3 * 8 + 4, 1] = 20.0  # class 1 iff pixel (3, 4) > 0.8
    dense.set_weights([kernel, np.array([0.0, -16.0], np.float32)])
    fn = tf.function(lambda x: model(x, training=False), input_signature=[tf.TensorSpec((None, 8, 8, 1))])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], model)
    interpreter = Interpreter(model_content=converter.convert())
    inp_idx = interpreter.get_input_details()[0]["index"]
    out_idx = interpreter.get_output_details()[0]["index"]

    def tflite_fn(images):
        interpreter.resize_tensor_input(inp_idx, images.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp_idx, images)
        interpreter.invoke()
        return interpreter.get_tensor(out_idx)

    x = np.random.default_rng(5).uniform(0, 0.5, size=(4, 8, 8, 1)).astype(np.float32)
    x_adv = one_pixel(tflite_fn, x, population=100, iterations=20, seed=0).numpy()
    assert np.all(tflite_fn(x).argmax(axis=1) == 0)
    assert np.all(tflite_fn(x_adv).argmax(axis=1) == 1)
    np.testing.assert_array_equal(_changed_pixels(x_adv, x), 1)
    np.testing.assert_allclose(tflite_fn(x), model(x).numpy(), atol=1e-5)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"pixels": 0}, ValueError, "pixels"),
    ({"pixels": 65}, ValueError, "pixels"),
    ({"population": 3}, ValueError, "population"),
    ({"iterations": -1}, ValueError, "iterations"),
    ({"mutation": 0.0}, ValueError, "mutation"),
    ({"mutation": 2.5}, ValueError, "mutation"),
    ({"outputs": "softmax"}, ValueError, "outputs"),
    ({"clip_min": 0.5, "clip_max": 0.5}, ValueError, "clip_min"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"seed": -1}, ValueError, "seed"),
    ({"targeted": "yes"}, TypeError, "targeted"),
    ({"early_stop": None}, TypeError, "early_stop"),
])
def test_one_pixel_bad_arguments_raise(kwargs, error, match):
    x = np.full((2, 8, 8, 1), 0.3, np.float32)
    with pytest.raises(error, match=match):
        one_pixel(_CountingPixelOracle(), x, **kwargs)


def test_one_pixel_bad_inputs_raise():
    oracle = _CountingPixelOracle()
    x = np.full((2, 8, 8, 1), 0.3, np.float32)
    bad = x.copy()
    bad[1, 2, 2, 0] = np.nan
    with pytest.raises(ValueError, match="x"):
        one_pixel(oracle, bad)
    with pytest.raises(ValueError, match="x.shape"):
        one_pixel(oracle, x[0])
    with pytest.raises(TypeError, match="x.dtype"):
        one_pixel(oracle, (x * 255).astype(np.uint8))
    with pytest.raises(ValueError, match="clip_max"):
        one_pixel(oracle, x * 4)
    with pytest.raises(ValueError, match="y"):
        one_pixel(oracle, x, targeted=True)
    with pytest.raises(ValueError, match="y"):
        one_pixel(oracle, x, np.zeros((2, 1), np.int64))
    with pytest.raises(ValueError, match="y"):
        one_pixel(oracle, x, np.array([0, 2]), targeted=True)  # the oracle has 2 classes
    with pytest.raises(ValueError, match="model_fn"):
        one_pixel(lambda images: np.zeros(len(images)), x)
    with pytest.raises(TypeError, match="model_fn"):
        one_pixel(None, x)
