"""Box-constrained L-BFGS: minimal perturbations on a linear model, bounds, targets, argument checks."""

import numpy as np
import pytest
import tensorflow as tf

from tfrobust.attacks import fgsm, lbfgs

N, H, W_, C, K = 6, 4, 4, 1, 3
D = H * W_ * C


@pytest.fixture(scope="module")
def linear():
    """A hand-weighted linear classifier z = x W + b with heavy-tailed weights (FGSM's worst case)."""
    rng = np.random.default_rng(1)
    w = (rng.normal(size=(D, K)) ** 3).astype(np.float32)
    b = np.zeros(K, np.float32)
    w_t, b_t = tf.constant(w), tf.constant(b)

    def model_fn(x):
        return tf.matmul(tf.reshape(x, [-1, D]), w_t) + b_t

    x = rng.uniform(0.35, 0.65, size=(N, H, W_, C)).astype(np.float32)
    return model_fn, w, b, x


def _l2(a, b):
    return np.linalg.norm((np.asarray(a) - np.asarray(b)).reshape(len(b), -1), axis=1)


def _min_l2_to_boundary(w, b, x, labels):
    """Exact smallest L2 distance from x to a point where some other class ties the label (no box)."""
    z = x.reshape(len(x), -1) @ w + b
    out = []
    for i, y in enumerate(labels):
        out.append(min((z[i, y] - z[i, j]) / np.linalg.norm(w[:, y] - w[:, j]) for j in range(K) if j != y))
    return np.array(out)


def test_lbfgs_untargeted_is_near_minimal_and_smaller_than_fgsm(linear):
    model_fn, w, b, x = linear
    labels = np.argmax(model_fn(x).numpy(), axis=1)
    x_adv = lbfgs(model_fn, x).numpy()
    assert np.all(np.argmax(model_fn(x_adv).numpy(), axis=1) != labels)
    dist = _l2(x_adv, x)
    optimum = _min_l2_to_boundary(w, b, x, labels)
    assert np.all(dist >= optimum * (1 - 1e-3))  # nothing beats the exact projection
    assert np.all(dist <= optimum * 1.15)

    # FGSM's smallest successful eps on a fine grid, per example, and the L2 size of that step. On a
    # linear model the FGSM direction s = sign(grad at x) does not depend on eps, so one call gives it
    # (x +- 0.3 stays inside [0, 1] here, so nothing is clipped).
    s = np.sign(fgsm(model_fn, x, labels, eps=0.3).numpy() - x)
    fgsm_dist = np.full(N, np.inf)
    for eps in np.arange(0.002, 0.3, 0.002):
        x_f = np.clip(x + eps * s, 0.0, 1.0).astype(np.float32)
        ok = (np.argmax(model_fn(x_f).numpy(), axis=1) != labels) & ~np.isfinite(fgsm_dist)
        fgsm_dist[ok] = _l2(x_f, x)[ok]
    assert np.all(np.isfinite(fgsm_dist))
    assert np.all(dist < fgsm_dist)


def test_lbfgs_targeted_reaches_every_target_in_chunks(linear):
    model_fn, _, _, x = linear
    labels = np.argmax(model_fn(x).numpy(), axis=1)
    targets = (labels + 1) % K
    x_adv = lbfgs(model_fn, x, targets, targeted=True, batch_size=4).numpy()  # chunks of 4 and 2
    np.testing.assert_array_equal(np.argmax(model_fn(x_adv).numpy(), axis=1), targets)


def test_lbfgs_respects_box_and_dtype():
    rng = np.random.default_rng(3)
    w = tf.constant(rng.normal(size=(D, K)).astype(np.float32))

    def model_fn(x):
        return tf.matmul(tf.reshape(tf.cast(x, tf.float32), [-1, D]), w)

    # Pixels on the box faces: the unconstrained step would leave [-1, 1].
    x = rng.choice([-1.0, 1.0], size=(N, H, W_, C))
    x_adv = lbfgs(model_fn, x, clip_min=-1.0, clip_max=1.0, search_steps=4)
    assert x_adv.dtype == tf.float64
    assert np.all(np.argmax(model_fn(x_adv).numpy(), axis=1) != np.argmax(model_fn(x).numpy(), axis=1))
    assert float(tf.reduce_min(x_adv)) >= -1.0 and float(tf.reduce_max(x_adv)) <= 1.0


def test_lbfgs_returns_x_where_attack_fails():
    def constant_model(x):
        return tf.zeros([tf.shape(x)[0], K]) + tf.constant([1.0, 0.0, 0.0]) + 0.0 * tf.reduce_sum(x)

    x = np.full((2, H, W_, C), 0.1, np.float64)  # 0.1 is not a float32: returned bit for bit anyway
    x_adv = lbfgs(constant_model, x, search_steps=2, max_iterations=5)
    assert x_adv.dtype == tf.float64
    np.testing.assert_array_equal(x_adv.numpy(), x)


@pytest.mark.parametrize("kwargs, match", [
    ({"initial_const": 0.0}, "initial_const"),
    ({"initial_const": float("nan")}, "initial_const"),
    ({"search_steps": 0}, "search_steps"),
    ({"max_iterations": 1.5}, "max_iterations"),
    ({"clip_min": 1.0, "clip_max": 0.0}, "clip_min"),
    ({"clip_max": float("inf")}, "clip_max"),
    ({"batch_size": 0}, "batch_size"),
])
def test_lbfgs_bad_arguments_raise(linear, kwargs, match):
    model_fn, _, _, x = linear
    with pytest.raises(ValueError, match=match):
        lbfgs(model_fn, x, **kwargs)


def test_lbfgs_bad_inputs_raise(linear):
    model_fn, _, _, x = linear
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="x"):
        lbfgs(model_fn, bad)
    with pytest.raises(ValueError, match=r"x must lie|`x` must lie"):
        lbfgs(model_fn, x + 2.0)
    with pytest.raises(TypeError, match="x.dtype"):
        lbfgs(model_fn, (x * 255).astype(np.uint8))
    with pytest.raises(ValueError, match="x.shape"):
        lbfgs(model_fn, x[0, 0, 0])
    with pytest.raises(ValueError, match="y"):
        lbfgs(model_fn, x, targeted=True)
    with pytest.raises(ValueError, match="y"):
        lbfgs(model_fn, x, np.zeros(N + 1, np.int64))
    with pytest.raises(ValueError, match="y"):
        lbfgs(model_fn, x, np.full(N, K), targeted=True)  # class K does not exist
    with pytest.raises(ValueError, match="y"):
        lbfgs(model_fn, x, np.full(N, -1))
    with pytest.raises(TypeError, match="targeted"):
        lbfgs(model_fn, x, targeted=1)
    with pytest.raises(TypeError, match="model_fn"):
        lbfgs("model", x)


def test_lbfgs_refuses_graph_mode(linear):
    model_fn, _, _, x = linear

    @tf.function
    def attack(images):
        return lbfgs(model_fn, images)

    with pytest.raises(RuntimeError, match="eagerly"):
        attack(tf.constant(x))
