"""The papers' choices are the defaults (L-BFGS: c * ||r||_2; one-pixel: the 0.9 / 0.05 stops)."""

import numpy as np
import pytest
import tensorflow as tf

from tfrobust.attacks import lbfgs, one_pixel
from tfrobust.attacks.shared import LBFGS_NORM_SMOOTHING, lbfgs_value_and_grad_fn


def _pixel_model(images):
    """Two classes; class 1's logit grows with pixel (0, 0): 10 * (v - 0.5)."""
    z = 10.0 * (tf.convert_to_tensor(images, tf.float32)[:, 0, 0, 0] - 0.5)
    return tf.stack([tf.zeros_like(z), z], axis=1)


@pytest.mark.parametrize("distance, power", [("l2", 0.5), ("l2_squared", 1.0)])
def test_lbfgs_objective_is_c_times_the_l2_norm_by_default(distance, power):
    x0 = tf.fill([2, 2, 2, 1], 0.3)
    w = x0 + tf.constant(np.random.default_rng(0).uniform(-0.1, 0.1, (2, 2, 2, 1)), tf.float32)
    labels, const = tf.constant([0, 0], tf.int64), tf.constant([0.5, 2.0])
    total, *_ = lbfgs_value_and_grad_fn(_pixel_model, False, distance)(w, x0, labels, const)
    sq = np.sum(np.square((w - x0).numpy()).reshape(2, -1), axis=1)
    p_y = tf.nn.softmax(_pixel_model(w)).numpy()[:, 0]
    penalty = np.sqrt(sq + LBFGS_NORM_SMOOTHING) if power == 0.5 else sq
    np.testing.assert_allclose(float(total), np.sum(const.numpy() * penalty - np.log(1.0 - p_y)), rtol=1e-5)


def test_lbfgs_default_signature_is_the_papers_norm():
    import inspect

    assert inspect.signature(lbfgs).parameters["distance"].default == "l2"
    with pytest.raises(ValueError, match="distance"):
        lbfgs(_pixel_model, np.full((1, 2, 2, 1), 0.3, np.float32), distance="l1")


@pytest.mark.parametrize("distance", ["l2", "l2_squared"])
def test_lbfgs_breaks_the_pixel_model_with_either_distance(distance):
    x = np.full((2, 2, 2, 1), 0.3, np.float32)
    x_adv = lbfgs(_pixel_model, x, np.zeros(2, np.int64), distance=distance, search_steps=4,
                  max_iterations=50).numpy()
    assert np.all(np.argmax(_pixel_model(x_adv).numpy(), axis=1) == 1)
    assert np.all(x_adv >= 0.0) and np.all(x_adv <= 1.0)


class _Oracle:
    """Probabilities only; p(class 1) = sigmoid(10 * (pixel (3, 4) - 0.5)). Counts its queries."""

    def __init__(self):
        self.queries = 0

    def __call__(self, images):
        self.queries += len(images)
        p1 = 1.0 / (1.0 + np.exp(-10.0 * (np.asarray(images)[:, 3, 4, 0] - 0.5)))
        return np.stack([1.0 - p1, p1], axis=1)


def _images():
    return np.random.default_rng(0).uniform(0.0, 0.3, size=(4, 8, 8, 1)).astype(np.float32)


def test_one_pixel_default_stops_at_the_papers_untargeted_threshold():
    oracle = _Oracle()
    x_adv = one_pixel(oracle, _images(), np.zeros(4, np.int64), population=20, iterations=200, seed=0)
    p_true = oracle(x_adv.numpy())[:, 0]
    assert np.all(p_true < 0.05), p_true  # the paper: true-class probability below 0.05


def test_one_pixel_default_stops_at_the_papers_targeted_threshold():
    oracle = _Oracle()
    x_adv = one_pixel(oracle, _images(), np.ones(4, np.int64), targeted=True, population=20,
                      iterations=200, seed=0)
    assert np.all(oracle(x_adv.numpy())[:, 1] > 0.9)  # the paper: target probability above 0.9


def test_one_pixel_flip_option_stops_earlier_at_lower_confidence():
    x, y = _images(), np.zeros(4, np.int64)
    paper, flip = _Oracle(), _Oracle()
    x_paper = one_pixel(paper, x, y, population=20, iterations=200, seed=0).numpy()
    x_flip = one_pixel(flip, x, y, population=20, iterations=200, seed=0, early_stop="flip").numpy()
    assert np.all(flip(x_flip).argmax(axis=1) == 1)  # adversarial, the flip's only promise
    assert flip.queries < paper.queries
    assert flip(x_flip)[:, 0].max() > paper(x_paper)[:, 0].max()
    # Booleans keep their old meaning: True is the first flip, False runs every iteration.
    np.testing.assert_array_equal(one_pixel(_Oracle(), x, y, population=20, iterations=200, seed=0,
                                            early_stop=True).numpy(), x_flip)
    with pytest.raises(ValueError, match="early_stop"):
        one_pixel(_Oracle(), x, y, early_stop="sometimes")
