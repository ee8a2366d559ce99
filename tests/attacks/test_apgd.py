import numpy as np
import pytest
import tensorflow as tf

from tfrobust import attacks
from tfrobust.attacks.shared import apgd_checkpoints as checkpoints


@pytest.fixture(scope="module")
def mlp_problem(base_seed, train_tiny_mlp):
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 1, size=(96, 8, 8, 1)).astype(np.float32)
    y = np.argmax(x.reshape(96, 4, 16).mean(2), 1)
    return train_tiny_mlp(x, y, seed=base_seed), x, y


def _acc(model, x, y):
    return float(np.mean(np.argmax(np.asarray(model(x)), 1) == y))


def test_checkpoints_follow_the_paper_schedule():
    # p = 0, 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99 -> w_j = ceil(p_j * N)
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(10) == [3, 5, 6, 7, 8, 9]
    assert all(0 < w < 20 for w in checkpoints(20))


@pytest.mark.parametrize("norm, eps, loss", [("linf", 0.05, "ce"), ("l2", 0.5, "dlr")])
def test_apgd_stays_in_ball_and_lowers_accuracy(mlp_problem, norm, eps, loss):
    model, x, y = mlp_problem
    x_adv = attacks.apgd(model, x, y, eps=eps, steps=20, norm=norm, loss=loss, seed=0).numpy()
    delta = (x_adv - x).reshape(len(x), -1)
    bound = np.abs(delta).max(1) if norm == "linf" else np.linalg.norm(delta, axis=1)
    assert bound.max() <= eps * (1 + 1e-5) + 1e-7
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert _acc(model, x_adv, y) < _acc(model, x, y) - 0.2


def test_apgd_eps_zero_returns_x(mlp_problem):
    model, x, y = mlp_problem
    np.testing.assert_array_equal(attacks.apgd(model, x, y, eps=0.0, steps=5), x)


def test_apgd_is_at_least_as_strong_as_pgd_with_the_same_budget(mlp_problem):
    model, x, y = mlp_problem
    eps = 0.03
    pgd_acc = _acc(model, attacks.pgd(model, x, y, eps=eps, step_size=eps / 4, steps=20, seed=0), y)
    apgd_acc = _acc(model, attacks.apgd(model, x, y, eps=eps, steps=20, seed=0), y)
    assert apgd_acc <= pgd_acc + 1 / len(x)


def test_apgd_restarts_never_raise_robust_accuracy(mlp_problem):
    model, x, y = mlp_problem
    one = np.argmax(model(attacks.apgd(model, x, y, eps=0.02, steps=10, seed=4)).numpy(), 1) != y
    two = np.argmax(model(attacks.apgd(model, x, y, eps=0.02, steps=10, restarts=3, seed=4)).numpy(), 1) != y
    assert np.all(two[one])


def test_apgd_dlr_is_invariant_to_logit_shift_and_scale(mlp_problem):
    model, x, y = mlp_problem

    def scaled(t):
        return 7.0 * model(t) + 3.0

    a = attacks.apgd(model, x, y, eps=0.03, steps=10, loss="dlr", seed=1).numpy()
    b = attacks.apgd(scaled, x, y, eps=0.03, steps=10, loss="dlr", seed=1).numpy()
    same = np.all(np.isclose(a, b, atol=1e-4).reshape(len(x), -1), axis=1)
    # measured at seed 0 (--seed): 1.0
    assert same.mean() > 0.9  # sign() of tiny gradient components may flip on float rounding


def test_apgd_targeted_reaches_target_on_linear_model():
    w = np.zeros((16, 4), np.float32)
    for k in range(4):
        w[4 * k:4 * k + 4, k] = 1.0

    def model(t):
        return tf.reshape(t, [-1, 16]) @ w

    x = np.full((8, 4, 4, 1), 0.5, np.float32)
    x.reshape(8, 16)[:, :4] += 0.05  # class 0 by a margin of 0.2 in logit space
    target = np.full(8, 2, np.int64)
    x_adv = attacks.apgd(model, x, target, eps=0.1, steps=10, targeted=True).numpy()
    assert np.all(np.argmax(model(x_adv).numpy(), 1) == 2)
    x_dlr = attacks.apgd(model, x, target, eps=0.1, steps=10, targeted=True, loss="dlr").numpy()
    assert np.all(np.argmax(model(x_dlr).numpy(), 1) == 2)


def test_apgd_inside_tf_function(mlp_problem):
    model, x, y = mlp_problem
    fn = tf.function(lambda a, b: attacks.apgd(model, a, b, eps=0.05, steps=5))
    x_adv = fn(tf.constant(x), tf.constant(y)).numpy()
    assert np.abs(x_adv - x).max() <= 0.05 + 1e-6 and _acc(model, x_adv, y) < _acc(model, x, y)


@pytest.mark.parametrize("kwargs, error, fragment", [
    (dict(eps=-1.0), ValueError, "eps"),
    (dict(steps=0), ValueError, "steps"),
    (dict(norm="l1"), ValueError, "norm"),
    (dict(loss="xent"), ValueError, "loss"),
    (dict(restarts=0), ValueError, "restarts"),
    (dict(clip_min=0.5, clip_max=0.4), ValueError, "clip_min"),
    (dict(targeted="no"), TypeError, "targeted"),
])
def test_apgd_bad_arguments_raise(mlp_problem, kwargs, error, fragment):
    model, x, y = mlp_problem
    with pytest.raises(error, match=fragment):
        attacks.apgd(model, x, y, **{"eps": 0.1, "steps": 2, **kwargs})


def test_apgd_dlr_needs_three_classes():
    def two_class(t):
        return tf.reshape(t, [-1, 4])[:, :2]

    x = np.full((2, 2, 2, 1), 0.5, np.float32)
    with pytest.raises(ValueError, match="dlr"):
        attacks.apgd(two_class, x, np.zeros(2, np.int64), eps=0.1, steps=2, loss="dlr")
    with pytest.raises(TypeError, match="uint8"):
        attacks.apgd(two_class, x.astype(np.uint8), None, eps=0.1, steps=2)
