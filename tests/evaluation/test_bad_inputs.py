"""Evaluation-side bad inputs (issue 19): each a clear error naming the argument, not a raw TF trace."""

import numpy as np
import pytest
import tensorflow as tf

from tfrobust import attacks, evaluation
from tfrobust._keras import keras


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(4)])


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.uniform(0, 1, (16, 8, 8, 1)).astype(np.float32), rng.integers(0, 4, 16)


def _calls(model, x, y):
    return {
        "robust_accuracy": lambda: evaluation.robust_accuracy(model, x, y, eps=0.1, random_samples=0),
        "accuracy": lambda: evaluation.accuracy(model, x, y),
        "pgd": lambda: attacks.pgd(model, x, y, eps=0.1, steps=1),
        "apgd": lambda: attacks.apgd(model, x, y, eps=0.1, steps=1),
        "apgd_targeted": lambda: attacks.apgd_targeted(model, x, y, eps=0.1, steps=1, targets=1),
        "attacks.get": lambda: attacks.get("pgd", eps=0.1)(model, x, y),
    }


CALLS = ["robust_accuracy", "accuracy", "pgd", "apgd", "apgd_targeted", "attacks.get"]


@pytest.mark.parametrize("call", CALLS)
def test_images_of_the_wrong_shape_raise_a_clear_value_error(model, data, call):
    x, y = data
    wrong = np.zeros((16, 10, 10, 1), np.float32)
    with pytest.raises(ValueError, match=r"`x` must be a batch of the model's input shape") as info:
        _calls(model, wrong, y)[call]()
    assert "Received: x.shape=(16, 10, 10, 1)" in str(info.value)
    assert not isinstance(info.value, tf.errors.OpError)


CALLS = ["robust_accuracy", "accuracy", "pgd", "apgd", "apgd_targeted", "attacks.get"]


@pytest.mark.parametrize("call", CALLS)
def test_labels_beyond_the_model_classes_raise_a_clear_value_error(model, data, call):
    x, y = data
    bad = y.copy()
    bad[3] = 4  # the model has 4 classes: 0..3
    with pytest.raises(ValueError, match=r"`y` must be class indices in \[0, 4\)") as info:
        _calls(model, x, bad)[call]()
    assert not isinstance(info.value, tf.errors.OpError)


def test_probability_outputs_are_refused_by_robust_accuracy(model, data):
    x, y = data
    probs = keras.Sequential([model, keras.layers.Softmax()])
    with pytest.raises(ValueError, match="probabilities") as info:
        evaluation.robust_accuracy(probs, x, y, eps=0.1)
    assert "logits" in str(info.value)
    with pytest.raises(ValueError, match="probabilities"):
        evaluation.robust_accuracy(model, x, y, eps=0.1, probabilities="ignore")


def test_dataset_inputs_refuse_a_separate_y(model, data):
    x, y = data
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    with pytest.raises(ValueError, match="`y` must be None"):
        evaluation.accuracy(model, ds, y)
    with pytest.raises(ValueError, match="`x` must be a tf.data.Dataset of \\(images, labels\\)"):
        evaluation.accuracy(model, tf.data.Dataset.from_tensor_slices(x).batch(4))
    with pytest.raises(ValueError, match="`y`"):
        evaluation.robust_accuracy(model, x, None, eps=0.1)
