import numpy as np
import pytest
import tensorflow as tf

from tfrobust import attacks
from tfrobust.attacks.shared import square_eta, square_side


@pytest.fixture(scope="module")
def mlp_problem(base_seed, train_tiny_mlp):
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 1, size=(48, 8, 8, 1)).astype(np.float32)
    y = np.argmax(x.reshape(48, 4, 16).mean(2), 1)
    return train_tiny_mlp(x, y, seed=base_seed), x, y


def _acc(model_fn, x, y):
    return float(np.mean(np.argmax(np.asarray(model_fn(x)), 1) == y))


def _masked_counter(x):
    """Logits decided by how many pixels round to 1: a hard, gradient-free step everywhere.

    ``count = sum(round(x))`` behind ``stop_gradient``; class 1 wins when ``count > 40``. Every
    gradient is exactly zero, so gradient attacks are left with their random start, which flips
    pixels independently and almost never reaches 40 of 64.
    """
    count = tf.reduce_sum(tf.stop_gradient(tf.round(tf.reshape(x, [tf.shape(x)[0], -1]))), axis=1)
    return tf.stack([40.0 - count, count - 40.0], axis=1)


def _masked_problem():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.42, 0.48, size=(32, 8, 8, 1)).astype(np.float32)
    return x, np.zeros(32, np.int64)


@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("l2", 0.5)])
def test_square_stays_in_ball_and_clip_range_and_lowers_accuracy(mlp_problem, norm, eps):
    model, x, y = mlp_problem
    x_adv = attacks.square(model, x, y, eps=eps, norm=norm, queries=1000, seed=0).numpy()
    delta = (x_adv - x).reshape(len(x), -1)
    bound = np.abs(delta).max(1) if norm == "linf" else np.linalg.norm(delta, axis=1)
    assert bound.max() <= eps * (1 + 1e-5) + 1e-7
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert _acc(model, x_adv, y) < _acc(model, x, y) - 0.2


@pytest.mark.parametrize("norm, eps", [("linf", 0.3), ("l2", 3.0)])
def test_square_respects_a_custom_clip_range(norm, eps):
    rng = np.random.default_rng(1)
    x = rng.uniform(-1.0, 1.0, size=(16, 6, 6, 2)).astype(np.float32)
    y = rng.integers(0, 3, size=16)
    w = tf.constant(rng.normal(size=(72, 3)).astype(np.float32))

    def linear(z):
        return tf.reshape(z, [-1, 72]) @ w

    x_adv = attacks.square(linear, x, y, eps=eps, norm=norm, queries=100, clip_min=-1.0, clip_max=1.0,
                           seed=3).numpy()
    assert x_adv.min() >= -1.0 and x_adv.max() <= 1.0
    delta = (x_adv - x).reshape(len(x), -1)
    bound = np.abs(delta).max(1) if norm == "linf" else np.linalg.norm(delta, axis=1)
    assert bound.max() <= eps * (1 + 1e-5) + 1e-6


def test_square_eps_zero_returns_x_without_a_query(mlp_problem):
    model, x, y = mlp_problem
    x_adv, q = attacks.square(model, x, y, eps=0.0, queries=50, return_queries=True)
    np.testing.assert_array_equal(x_adv.numpy(), x)
    assert int(np.max(q)) == 0


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_square_respects_the_query_budget(mlp_problem, norm):
    model, x, y = mlp_problem
    rows = []

    def counting(z):  # counts the rows the search really evaluates
        def f(a):
            rows.append(len(a))
            return np.asarray(model(a))

        out = tf.numpy_function(f, [z], tf.float32)
        out.set_shape([None, 4])
        return out

    budget = 37
    x_adv, q = attacks.square(counting, x, y, eps=0.03 if norm == "linf" else 0.3, norm=norm, queries=budget,
                              seed=0, return_queries=True)
    q = q.numpy()
    assert q.max() <= budget and q.min() >= 1
    assert sum(rows) == int(q.sum())  # every row the model saw is counted in some example's budget
    fooled = np.argmax(np.asarray(model(x_adv)), 1) != y
    assert np.all(q[~fooled] == budget)  # a robust example spends the whole budget


def test_square_stops_querying_an_example_once_it_is_misclassified():
    x, y = _masked_problem()
    x_adv, q = attacks.square(_masked_counter, x, y, eps=0.1, queries=2000, seed=0, return_queries=True)
    assert _acc(_masked_counter, x_adv.numpy(), y) == 0.0
    assert q.numpy().max() < 2000


def test_square_breaks_a_zero_gradient_model_where_apgd_cannot():
    x, y = _masked_problem()
    assert _acc(_masked_counter, x, y) == 1.0
    with tf.GradientTape() as tape:
        xt = tf.constant(x)
        tape.watch(xt)
        loss = tf.reduce_sum(_masked_counter(xt)[:, 1])
    grad = tape.gradient(loss, xt)
    assert grad is None or not np.any(grad.numpy())  # no gradient signal at all
    x_apgd = attacks.apgd(_masked_counter, x, y, eps=0.1, steps=50, seed=0).numpy()
    apgd_acc = _acc(_masked_counter, x_apgd, y)
    square_acc = _acc(_masked_counter, attacks.square(_masked_counter, x, y, eps=0.1, queries=2000,
                                                      seed=0).numpy(), y)
    assert apgd_acc == 1.0
    assert square_acc == 0.0


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_square_is_deterministic_with_a_seed(mlp_problem, norm):
    model, x, y = mlp_problem
    kw = dict(eps=0.05 if norm == "linf" else 0.5, norm=norm, queries=60)
    a = attacks.square(model, x, y, seed=7, **kw).numpy()
    b = attacks.square(model, x, y, seed=7, **kw).numpy()
    c = attacks.square(model, x, y, seed=8, **kw).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_square_batches_and_flat_inputs(mlp_problem):
    model, x, y = mlp_problem
    flat = x.reshape(len(x), 64)

    def flat_model(z):
        return model(tf.reshape(z, [-1, 8, 8, 1]))

    x_adv = attacks.square(flat_model, flat, y, eps=0.05, queries=50, seed=0, batch_size=20).numpy()
    assert x_adv.shape == flat.shape
    assert np.abs(x_adv - flat).max() <= 0.05 + 1e-6


def test_square_runs_inside_tf_function(mlp_problem):
    model, x, y = mlp_problem

    @tf.function
    def attack(xb, yb):
        return attacks.square(model, xb, yb, eps=0.05, queries=20, seed=1)

    x_adv = attack(tf.constant(x), tf.constant(y)).numpy()
    assert np.abs(x_adv - x).max() <= 0.05 + 1e-6


def test_square_attacks_a_litert_interpreter(mlp_problem):
    from tfrobust.tflite_tools import TFLiteModel, convert

    model, x, y = mlp_problem
    lite = TFLiteModel(convert(model, "float"))
    x_adv = attacks.square(lite, x[:16], y[:16], eps=0.1, queries=300, seed=0).numpy()
    assert np.abs(x_adv - x[:16]).max() <= 0.1 + 1e-6
    assert _acc(lite, x_adv, y[:16]) < _acc(lite, x[:16], y[:16]) - 0.2


def test_square_schedule_tables_follow_autoattack():
    # p = 0.8 on a 28x28 image: side round(sqrt(0.8 * 784)) = 25; L2 sides are odd and >= 3
    assert square_side(0.8, 28, 28, "linf") == 25
    assert square_side(0.8 / 512, 28, 28, "linf") == 1
    assert square_side(0.8 / 512, 28, 28, "l2") == 3
    assert square_side(0.1, 28, 28, "l2") % 2 == 1
    e = square_eta(5)
    assert np.isclose(np.sum(e ** 2), 1.0)
    assert np.all(e[:2] > 0) and np.all(e[2:] < 0)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(eps=-0.1), ValueError, "eps"),
    (dict(eps=float("nan")), ValueError, "eps"),
    (dict(eps=0.1, norm="l1"), ValueError, "norm"),
    (dict(eps=0.1, queries=0), ValueError, "queries"),
    (dict(eps=0.1, queries=2.5), TypeError, "queries"),
    (dict(eps=0.1, p_init=0.0), ValueError, "p_init"),
    (dict(eps=0.1, p_init=1.5), ValueError, "p_init"),
    (dict(eps=0.1, seed=-1), ValueError, "seed"),
    (dict(eps=0.1, clip_min=1.0, clip_max=0.0), ValueError, "clip_min"),
    (dict(eps=0.1, batch_size=0), ValueError, "batch_size"),
    (dict(eps=0.1, rescale_schedule="yes"), TypeError, "rescale_schedule"),
])
def test_square_bad_arguments_raise(mlp_problem, kwargs, error, match):
    model, x, y = mlp_problem
    with pytest.raises(error, match=match):
        attacks.square(model, x, y, **kwargs)


def test_square_bad_inputs_raise(mlp_problem):
    model, x, y = mlp_problem
    with pytest.raises(TypeError, match="x"):
        attacks.square(model, (x * 255).astype(np.uint8), y, eps=0.1)
    with pytest.raises(ValueError, match="clip_min"):
        attacks.square(model, x * 2.0, y, eps=0.1)
    with pytest.raises(TypeError, match="model_fn"):
        attacks.square("model", x, y, eps=0.1)
