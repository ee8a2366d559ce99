import numpy as np
import pytest
import tensorflow as tf

from tfrobust._keras import keras
from tfrobust.attacks import bpda_scope
from tfrobust.layers import (
    ChannelActivationSuppressing,
    ChannelImportanceFeatureSelection,
    label_conditioned_pair,
)
from tfrobust.testing import layer_test


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_cas_uses_the_label_in_training_and_the_prediction_at_test(rng):
    f = rng.uniform(size=(3, 2, 2, 4)).astype("float32")
    y = np.array([0, 1, 2])
    layer = ChannelActivationSuppressing(num_classes=3, beta=2.0)
    layer.build(f.shape)
    m = rng.normal(size=(4, 3)).astype("float32")
    layer.set_weights([m])
    gap = f.mean(axis=(1, 2))
    logits = gap @ m
    pred = logits.argmax(axis=1)
    train_out = layer([f, y], training=True).numpy()
    np.testing.assert_allclose(train_out, f * m.T[y][:, None, None, :], rtol=1e-5)
    ce = -np.log(softmax(logits)[np.arange(3), y]).mean()
    assert float(sum(layer.losses)) == pytest.approx(2.0 * ce, rel=1e-5)
    test_out = layer(f, training=False).numpy()
    np.testing.assert_allclose(test_out, f * m.T[pred][:, None, None, :], rtol=1e-5)
    # Labels given at inference are ignored: the defense never sees the truth at test time.
    np.testing.assert_allclose(layer([f, y], training=False).numpy(), test_out, rtol=1e-6)


def test_cifs_mask_is_softmax_of_top2_probe_gradients(rng):
    f = rng.uniform(size=(2, 3, 3, 5)).astype("float32")
    layer = ChannelImportanceFeatureSelection(num_classes=4, mask_scale=2.0)
    layer.build(f.shape)
    m = rng.normal(size=(5, 4)).astype("float32")
    b = rng.normal(size=(4,)).astype("float32")
    layer.set_weights([m, b])
    logits = f.mean(axis=(1, 2)) @ m + b
    top2 = np.argsort(-logits, axis=1)[:, :2]
    # Linear probe on GAP: d logit_c / d f_k(i,j) = M[k, c] / HW, summed over positions -> M[k, c].
    relevance = m.T[top2[:, 0]] + m.T[top2[:, 1]]
    expected = f * (2.0 * softmax(relevance))[:, None, None, :]
    np.testing.assert_allclose(layer(f, training=False).numpy(), expected, rtol=1e-4, atol=1e-6)
    y = np.array([3, 3])
    second = np.argsort(-(logits - 1e9 * np.eye(4)[y]), axis=1)[:, 0]
    relevance_train = m.T[y] + m.T[second]
    expected_train = f * (2.0 * softmax(relevance_train))[:, None, None, :]
    np.testing.assert_allclose(layer([f, y], training=True).numpy(), expected_train, rtol=1e-4, atol=1e-6)
    assert len(layer.losses) == 1


def test_cifs_nonlinear_probe_relevance_is_its_input_gradient(rng):
    # A(z) = softplus(5 (z H + b_h)) / 5 . W + b, so dA_c/dz_k = sum_h H_kh sigmoid(5 u_h) W_hc.
    f = rng.uniform(size=(3, 4, 4, 5)).astype("float32")
    layer = ChannelImportanceFeatureSelection(num_classes=4, probe="nonlinear", hidden=6)
    layer.build(f.shape)
    h, bh = rng.normal(size=(5, 6)).astype("float32"), rng.normal(size=(6,)).astype("float32")
    w, b = rng.normal(size=(6, 4)).astype("float32"), rng.normal(size=(4,)).astype("float32")
    layer.set_weights([h, bh, w, b])
    z = f.mean(axis=(1, 2))
    u = z @ h + bh
    logits = np.logaddexp(0.0, 5 * u) / 5 @ w + b
    top2 = np.argsort(-logits, axis=1, kind="stable")[:, :2]
    picked = np.eye(4)[top2[:, 0]] + np.eye(4)[top2[:, 1]]
    relevance = ((picked @ w.T) / (1 + np.exp(-5 * u))) @ h.T
    expected = f * (2.0 * softmax(relevance))[:, None, None, :]
    np.testing.assert_allclose(layer(f, training=False).numpy(), expected, rtol=1e-4, atol=1e-6)
    with tf.GradientTape() as tape:  # the same relevance as a gradient tape gives
        zt = tf.constant(z)
        tape.watch(zt)
        score = tf.reduce_sum(layer._probe_on_gap(zt) * picked.astype("float32"))
    np.testing.assert_allclose(layer.relevance(zt, picked.astype("float32")), tape.gradient(score, zt),
                               rtol=1e-5, atol=1e-6)


def test_cifs_top2_breaks_ties_towards_the_lower_class_like_argmax():
    layer = ChannelImportanceFeatureSelection(num_classes=5)
    logits = tf.constant([[1.0, 3.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0, 2.0], [0.0, 1.0, 2.0, 3.0, 4.0]])
    np.testing.assert_array_equal(layer._top2(logits).numpy(),
                                  [[0, 1, 1, 0, 0], [1, 1, 0, 0, 0], [0, 0, 0, 1, 1]])


@pytest.mark.parametrize("cls, kwargs", [
    (ChannelActivationSuppressing, {"num_classes": 3}),
    (ChannelImportanceFeatureSelection, {"num_classes": 3, "probe": "nonlinear", "hidden": 4}),
])
def test_channel_layers_pass_the_harness(cls, kwargs):
    res = layer_test(cls, kwargs, input_shape=(2, 4, 4, 6), tflite_atol=1e-4)
    assert "TOPK_V2" not in res.tflite_ops


def test_label_conditioned_pair_shares_weights_and_trains(fashion_test):
    x, y = fashion_test[0][:256], fashion_test[1][:256]
    conv = keras.layers.Conv2D(8, 3, activation="relu")
    cas = ChannelActivationSuppressing(10, beta=1.0)
    pool, head = keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)

    def build(inp, labels):
        h = conv(inp)
        h = cas([h, labels]) if labels is not None else cas(h)
        return head(pool(h))

    train_model, model = label_conditioned_pair(build, (28, 28, 1))
    train_model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    hist = train_model.fit((x, y), y, epochs=2, batch_size=64, verbose=0)
    assert hist.history["loss"][1] < hist.history["loss"][0]
    assert {id(w) for w in model.weights} == {id(w) for w in train_model.weights}
    assert model(x[:4]).shape == (4, 10)


@pytest.mark.parametrize("make, match", [
    (lambda: ChannelActivationSuppressing(num_classes=1), "num_classes"),
    (lambda: ChannelActivationSuppressing(10, beta=-1.0), "beta"),
    (lambda: ChannelImportanceFeatureSelection(10, probe="mlp"), "probe"),
    (lambda: ChannelImportanceFeatureSelection(10, hidden=0), "hidden"),
])
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_three_inputs_are_refused():
    layer = ChannelActivationSuppressing(3)
    with pytest.raises(ValueError, match="features"):
        layer.call([tf.zeros((1, 2, 2, 3))] * 3)


@pytest.mark.parametrize("make", [lambda: ChannelActivationSuppressing(4),
                                  lambda: ChannelImportanceFeatureSelection(4),
                                  lambda: ChannelImportanceFeatureSelection(4, probe="nonlinear", hidden=8)])
@pytest.mark.parametrize("shape", [(3, 5, 5, 6), (3, 6)])
def test_bpda_keeps_the_forward_value_and_backpropagates_through_the_surrogate(rng, make, shape):
    layer = make()
    assert layer.gradient_masking  # the arg-max / top-2 selection is invisible to gradients
    f = tf.constant(rng.normal(size=shape).astype("float32"))
    plain = layer(f)
    weights = tf.constant(rng.normal(size=shape).astype("float32"))
    with bpda_scope():
        with tf.GradientTape() as tape:
            tape.watch(f)
            out = layer(f)
            loss = tf.reduce_sum(out * weights)
        grad = tape.gradient(loss, f)
    np.testing.assert_allclose(out, plain, atol=1e-6)
    with tf.GradientTape() as tape:
        tape.watch(f)
        surrogate = tf.reduce_sum(layer.bpda_approximation(f) * weights)
    np.testing.assert_allclose(grad, tape.gradient(surrogate, f), rtol=1e-5, atol=1e-6)
    with tf.GradientTape() as tape:  # outside the scope the masked gradient is different
        tape.watch(f)
        loss = tf.reduce_sum(layer(f) * weights)
    assert np.max(np.abs(tape.gradient(loss, f) - grad)) > 1e-3


def test_cas_bpda_surrogate_is_the_probability_weighted_mask(rng):
    layer = ChannelActivationSuppressing(3)
    f = rng.uniform(size=(2, 4, 4, 5)).astype("float32")
    layer(f)
    m = layer.get_weights()[0]  # [K, C]
    probs = softmax(f.mean(axis=(1, 2)) @ m)
    expected = f * (probs @ m.T)[:, None, None, :]
    np.testing.assert_allclose(layer.bpda_approximation(tf.constant(f)), expected, rtol=1e-5, atol=1e-6)
