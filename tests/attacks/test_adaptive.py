import numpy as np
import pytest
import tensorflow as tf

from tfrobust import attacks
from tfrobust._keras import keras


class NoisyLinear(tf.Module):
    """A randomized toy defense: logits = x (W + c R) with fresh Gaussian R at every call.

    Its expected logits are x W, but a single call's gradient is dominated by the noise, so plain
    PGD wanders while EOT (gradients averaged over calls) recovers the true direction.
    """

    stochastic = True

    def __init__(self, w, noise):
        super().__init__()
        self.w = tf.constant(w)
        self.noise = noise

    def __call__(self, x):
        flat = tf.reshape(x, [tf.shape(x)[0], -1])
        return flat @ (self.w + self.noise * tf.random.normal(tf.shape(self.w)))

    def mean_logits(self, x):
        return np.asarray(x).reshape(len(x), -1) @ self.w.numpy()


def test_eot_lowers_robust_accuracy_of_randomized_defense():
    rng = np.random.default_rng(0)
    d = 64
    w1 = rng.permutation(np.repeat([-1.0, 1.0], d // 2)).astype(np.float32)  # sum(w1) = 0
    w = np.stack([w1, -w1], 1) / 2  # z0 - z1 = w1 . x
    eps = 0.05
    # margins between 40% and 90% of what a perfect L-inf attack removes (eps * |w1|_1 = 3.2)
    margins = np.linspace(0.4, 0.9, 64) * eps * d
    base = np.full((64, d), 0.5, np.float32)
    x = (base + (margins / d)[:, None] * w1).astype(np.float32).reshape(64, 8, 8, 1)
    y = np.zeros(64, np.int64)
    model = NoisyLinear(w, noise=3.0)
    assert np.all(np.argmax(model.mean_logits(x), 1) == 0)
    tf.random.set_seed(1)
    kw = dict(eps=eps, step_size=eps / 4, steps=10, random_start=False)
    plain = attacks.pgd(model, x, y, **kw)
    with_eot = attacks.pgd(attacks.eot(model, 64), x, y, **kw)
    acc_plain = np.mean(np.argmax(model.mean_logits(plain.numpy()), 1) == y)
    acc_eot = np.mean(np.argmax(model.mean_logits(with_eot.numpy()), 1) == y)
    assert acc_plain >= 0.9 and acc_eot <= acc_plain - 0.5, (acc_plain, acc_eot)


def test_eot_wrapper_averages_logits_and_validates():
    calls = []

    def fn(x):
        calls.append(1)
        return tf.ones([tf.shape(x)[0], 3]) * float(len(calls))

    out = attacks.eot(fn, 4)(tf.zeros([2, 1]))
    np.testing.assert_allclose(out.numpy(), np.full((2, 3), 2.5))  # mean of 1, 2, 3, 4
    with pytest.raises(ValueError, match="samples"):
        attacks.eot(fn, 0)
    with pytest.raises(TypeError, match="model_fn"):
        attacks.eot(3, 2)


@keras.utils.register_keras_serializable(package="tfrobust_tests")
class HardThreshold(keras.layers.Layer):
    """The docstring example of tfrobust.attacks._adaptive: a step function with a BPDA surrogate."""

    gradient_masking = True

    def call(self, inputs):
        hard = tf.cast(inputs > 0.5, inputs.dtype)
        return attacks.bpda(hard, lambda: tf.sigmoid(10.0 * (inputs - 0.5)))


@pytest.fixture(scope="module")
def thresholded_model(base_seed):
    rng = np.random.default_rng(3)
    x = rng.uniform(0.3, 0.7, size=(128, 4, 4, 1)).astype(np.float32)
    y = (np.round(x).reshape(128, -1)[:, :8].sum(1) > 4).astype(np.int64)
    keras.utils.set_random_seed(base_seed)  # module fixture: runs before the per-test seed
    model = keras.Sequential([keras.Input((4, 4, 1)), HardThreshold(), keras.layers.Flatten(),
                              keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.Adam(0.05),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=40, batch_size=64, verbose=0)
    return model, x, y


def _input_grad(model, x, y):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(y, model(x)))
    g = tape.gradient(loss, x)
    return np.zeros(x.shape) if g is None else g.numpy()


def test_bpda_recovers_gradients_through_hard_threshold(thresholded_model):
    model, x, y = thresholded_model
    assert np.all(_input_grad(model, x, y) == 0)  # the step function masks every gradient
    with attacks.bpda_scope():
        assert attacks.bpda_active()
        grad = _input_grad(model, x, y)
        out_scope = model(x).numpy()
    assert not attacks.bpda_active()
    assert np.count_nonzero(grad) > 0.9 * grad.size
    np.testing.assert_allclose(out_scope, model(x).numpy(), atol=1e-5)  # forward unchanged


def test_pgd_needs_bpda_to_break_the_threshold_model(thresholded_model):
    model, x, y = thresholded_model
    clean = np.argmax(model(x).numpy(), 1) == y
    xs, ys = x[clean], y[clean]
    kw = dict(eps=0.25, step_size=0.05, steps=10, random_start=False)
    acc_plain = np.mean(np.argmax(model(attacks.pgd(model, xs, ys, **kw)).numpy(), 1) == ys)
    with attacks.bpda_scope():
        x_bpda = attacks.pgd(model, xs, ys, **kw)
    acc_bpda = np.mean(np.argmax(model(x_bpda).numpy(), 1) == ys)
    assert acc_plain == 1.0  # zero gradients: PGD without BPDA does not move
    assert acc_bpda < 0.5  # measured at seed 0 (--seed): 0.0 of 118 clean points


def test_bpda_rejects_mismatched_surrogate_shape():
    with attacks.bpda_scope():
        with pytest.raises(ValueError, match="approximation"):
            attacks.bpda(tf.zeros([2, 3]), tf.zeros([2, 4]))
    out = attacks.bpda(tf.zeros([2, 3]), lambda: 1 / 0)  # never evaluated outside the scope
    assert out.shape == (2, 3)


def test_inspect_model_finds_declared_layers(thresholded_model):
    model, _, _ = thresholded_model
    found = attacks.inspect_model(model)
    assert found["gradient_masking"] == [model.layers[0].name] and found["stochastic"] == []
    assert attacks.inspect_model(NoisyLinear(np.zeros((4, 2), np.float32), 1.0))["stochastic"]
    assert attacks.inspect_model(lambda t: t) == {"stochastic": [], "gradient_masking": []}
