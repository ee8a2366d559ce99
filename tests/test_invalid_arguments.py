"""Bad inputs that used to pass silently (issue: every bad input a clear error).

Each test asserts the error type and that the message names the argument. The evaluation-side
cases (wrong image shape, labels >= num_classes, probability outputs) live in
tests/evaluation/test_bad_inputs.py (same rules, evaluation side).
"""

import math

import numpy as np
import pytest
import tensorflow as tf

from tfrobust import keras, layers, losses, models, trainers
from tfrobust.compression.shared import magnitude_masks
from tfrobust.tflite_tools import convert


def _tiny():
    return keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])


def _compiled():
    model = _tiny()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


@pytest.mark.parametrize("eps", [float("nan"), float("inf"), -math.inf])
def test_adversarial_trainer_refuses_non_finite_eps(eps):
    with pytest.raises(ValueError, match=r"`eps` must be a finite number.*Received: eps="):
        trainers.AdversarialTrainer(_compiled(), eps=eps)


@pytest.mark.parametrize("name", ["alpha", "beta", "step_size", "clip_min", "clip_max"])
def test_adversarial_trainer_refuses_nan_in_every_number(name):
    with pytest.raises(ValueError, match=rf"`{name}` must be a finite number"):
        trainers.AdversarialTrainer(_compiled(), **{name: float("nan")})


def test_adversarial_trainer_accepts_numpy_ints_and_refuses_float_steps():
    trainer = trainers.AdversarialTrainer(_compiled(), steps=np.int64(3), seed=np.int32(1))
    assert trainer.steps == 3 and trainer.seed == 1
    with pytest.raises(TypeError, match=r"`steps` must be an int >= 1\. Received: steps=2.5"):
        trainers.AdversarialTrainer(_compiled(), steps=2.5)


def test_adversarial_trainer_refuses_eps_wider_than_the_clip_range():
    with pytest.raises(ValueError, match=r"`eps` must not exceed the clip range"):
        trainers.AdversarialTrainer(_compiled(), eps=2.0)


@pytest.mark.parametrize("as_dataset", [False, True])
def test_int8_calibration_data_with_nan_is_refused(as_dataset):
    x = np.random.default_rng(0).uniform(size=(8, 4, 4, 1)).astype(np.float32)
    x[3, 1, 1, 0] = np.nan
    data = tf.data.Dataset.from_tensor_slices(x).batch(4) if as_dataset else x
    with pytest.raises(Exception, match=r"`representative_data` must be finite.*1 NaN/inf") as info:
        convert(_tiny(), "int8", representative_data=data)
    assert isinstance(info.value, ValueError) or "representative_data" in str(info.value)


def test_layer_and_loss_numbers_share_the_finite_rule():
    with pytest.raises(ValueError, match=r"`beta` must be a finite number"):
        layers.ChannelActivationSuppressing(10, beta=float("nan"))
    with pytest.raises(ValueError, match=r"`m_plus` must be a finite number"):
        losses.MarginLoss(m_plus=float("inf"))
    with pytest.raises(ValueError, match=r"`sparsity` must be >= 0.0 and < 1.0"):
        magnitude_masks(_tiny(), 1.0)


def test_model_builders_refuse_numpy_floats_as_class_counts():
    with pytest.raises(TypeError, match=r"`num_classes` must be an int >= 2"):
        models.get("small_cnn", input_shape=(28, 28, 1), num_classes=10.0)
    model = models.get("small_cnn", input_shape=(28, 28, 1), num_classes=np.int64(10))
    assert model.output_shape[-1] == 10
