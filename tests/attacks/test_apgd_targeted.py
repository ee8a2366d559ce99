"""APGD-T (targeted DLR, AutoAttack's second attack) by its properties."""

import numpy as np
import pytest
import tensorflow as tf

from tfrobust import attacks
from tfrobust._keras import keras

K = 5


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 1, size=(64, 6, 6, 1)).astype(np.float32)
    y = np.argmax(x.reshape(64, -1)[:, :30].reshape(64, K, 6).mean(2), 1)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(32, activation="relu"), keras.layers.Dense(K)])
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=40, batch_size=32, verbose=0)
    return model, x, y


def _pred(model, x):
    return np.argmax(model(x).numpy(), 1)


@pytest.mark.parametrize("norm, eps", [("linf", 0.05), ("l2", 0.5)])
def test_apgd_t_stays_in_ball_and_clip_range_and_lowers_accuracy(problem, norm, eps):
    model, x, y = problem
    x_adv = attacks.apgd_targeted(model, x, y, eps=eps, norm=norm, steps=10, targets=3, seed=0).numpy()
    delta = (x_adv - x).reshape(len(x), -1)
    size = np.abs(delta).max(1) if norm == "linf" else np.linalg.norm(delta, axis=1)
    assert size.max() <= eps + 1e-5
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert np.mean(_pred(model, x_adv) == y) < np.mean(_pred(model, x) == y)


def test_apgd_t_respects_another_clip_range(problem):
    model, x, y = problem
    shifted = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Rescaling(0.5, offset=0.5), model])
    x_pm = 2.0 * x - 1.0  # the same images in [-1, 1]
    x_adv = attacks.apgd_targeted(shifted, x_pm, y, eps=0.1, steps=10, targets=2, clip_min=-1.0,
                                  clip_max=1.0, seed=0).numpy()
    assert x_adv.min() >= -1.0 and x_adv.max() <= 1.0 and np.abs(x_adv - x_pm).max() <= 0.1 + 1e-6
    # the same attack in [0, 1] with eps / 2 finds the same points (the model is the same function)
    x01 = attacks.apgd_targeted(model, x, y, eps=0.05, steps=10, targets=2, seed=0).numpy()
    np.testing.assert_array_equal(_pred(shifted, x_adv) == y, _pred(model, x01) == y)


def test_apgd_t_eps_zero_returns_x(problem):
    model, x, y = problem
    np.testing.assert_array_equal(attacks.apgd_targeted(model, x, y, eps=0.0, steps=3, targets=2).numpy(), x)


def test_more_targets_never_break_fewer_points(problem):
    model, x, y = problem
    one = attacks.apgd_targeted(model, x, y, eps=0.04, steps=10, targets=1, seed=3).numpy()
    four = attacks.apgd_targeted(model, x, y, eps=0.04, steps=10, targets=4, seed=3).numpy()
    broken_one, broken_four = _pred(model, one) != y, _pred(model, four) != y
    assert np.all(broken_four[broken_one]) and broken_four.sum() >= broken_one.sum()


def test_apgd_t_breaks_a_hand_weighted_linear_model():
    # logits z_k = 10 * (x_k - 0.5): class k wins where pixel k is largest; eps 0.3 swaps any two
    # pixels 0.5 +- 0.1 apart, so every point is provably breakable.
    w = np.zeros((4, K), np.float32)
    w[np.arange(4), np.arange(4)] = 10.0

    def model_fn(t):
        return tf.concat([tf.reshape(t, [-1, 4]) @ w[:, :4] - 5.0, tf.fill([tf.shape(t)[0], 1], -50.0)], 1)

    rng = np.random.default_rng(0)
    x = rng.uniform(0.4, 0.6, size=(32, 2, 2, 1)).astype(np.float32)
    y = np.argmax(x.reshape(32, 4), 1)
    x_adv = attacks.apgd_targeted(model_fn, x, y, eps=0.3, steps=5, targets=2, seed=0).numpy()
    assert np.all(np.argmax(model_fn(x_adv).numpy(), 1) != y)


def test_apgd_t_inside_tf_function(problem):
    model, x, y = problem
    fn = tf.function(lambda a, b: attacks.apgd_targeted(model, a, b, eps=0.05, steps=5, targets=2, seed=0))
    x_adv = fn(tf.constant(x), tf.constant(y)).numpy()
    assert np.abs(x_adv - x).max() <= 0.05 + 1e-6


@pytest.mark.parametrize("kwargs, error, fragment", [
    (dict(eps=-1.0), ValueError, "eps"),
    (dict(steps=0), ValueError, "steps"),
    (dict(targets=0), ValueError, "targets"),
    (dict(targets=K), ValueError, "targets"),
    (dict(norm="l1"), ValueError, "norm"),
    (dict(restarts=0), ValueError, "restarts"),
    (dict(seed=-2), ValueError, "seed"),
    (dict(clip_min=0.5, clip_max=0.4), ValueError, "clip_min"),
    (dict(targets=2.0), TypeError, "targets"),
])
def test_apgd_t_bad_arguments_raise_naming_them(problem, kwargs, error, fragment):
    model, x, y = problem
    with pytest.raises(error, match=fragment):
        attacks.apgd_targeted(model, x, y, **{"eps": 0.1, "steps": 2, **kwargs})


def test_apgd_t_needs_four_classes_and_valid_labels(problem):
    model, x, y = problem
    three = keras.Sequential([model, keras.layers.Lambda(lambda z: z[:, :3])])
    with pytest.raises(ValueError, match="4 classes"):
        attacks.apgd_targeted(three, x, y % 3, eps=0.1, steps=2, targets=1)
    with pytest.raises(ValueError, match="y"):
        attacks.apgd_targeted(model, x, np.full(len(x), K), eps=0.1, steps=2)
