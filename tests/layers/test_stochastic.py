import numpy as np
import pytest
import tensorflow as tf

from tfrobust._keras import keras
from tfrobust.layers import (
    NoisyWeights,
    PrunedWeights,
    RandomNoisyActivations,
    RandomScaledActivations,
    StochasticActivationPruning,
    stochastic_activation_pruning,
)
from tfrobust.testing import layer_test


def sap_keep_reference(h, r):
    p = np.abs(h) / np.abs(h).sum()
    return 1.0 - (1.0 - p) ** r


def test_sap_keep_probabilities_and_rescaling_match_the_formula():
    h = np.array([[4.0, -2.0, 1.0, 0.5, 0.5, 0.0]], "float32")
    r, draws = 3, 20000
    batch = tf.constant(np.repeat(h, draws, axis=0))
    tf.random.set_seed(1)
    out = stochastic_activation_pruning(batch, r).numpy()
    keep = sap_keep_reference(h[0], r)
    empirical = (out != 0).mean(axis=0)
    np.testing.assert_allclose(empirical[:5], keep[:5], atol=0.01)  # 3 sigma ~ 0.01
    assert empirical[5] == 0.0  # a zero activation is never drawn
    survivors = out[:, 0][out[:, 0] != 0]
    np.testing.assert_allclose(survivors, h[0, 0] / keep[0], rtol=1e-5)  # scaled by 1/P(keep)
    np.testing.assert_allclose(out.mean(axis=0), h[0], atol=0.06)  # unbiased: E[SAP(h)] = h


def test_sap_never_keeps_more_than_r_distinct_units(rng):
    h = rng.normal(size=(50, 40)).astype("float32")
    out = stochastic_activation_pruning(tf.constant(h), 5).numpy()
    assert (np.count_nonzero(out, axis=1) <= 5).all()


def test_sap_handles_all_zero_examples():
    out = stochastic_activation_pruning(tf.zeros((2, 8)), 4).numpy()
    np.testing.assert_array_equal(out, np.zeros((2, 8)))


def test_sap_layer_is_random_at_inference_and_identity_in_expectation_mode(rng):
    x = rng.uniform(size=(2, 30)).astype("float32")
    layer = StochasticActivationPruning(ratio=0.2)
    assert layer.stochastic
    a, b = layer(x, training=False).numpy(), layer(x, training=False).numpy()
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(StochasticActivationPruning(inference_mode="expectation")(x), x)
    np.testing.assert_array_equal(StochasticActivationPruning(apply_in_training=False)(x, training=True), x)


@pytest.mark.parametrize("cls, kwargs", [
    (StochasticActivationPruning, {"ratio": 0.5, "seed": 3}),
    (RandomNoisyActivations, {"stddev": 0.2}),
    (RandomScaledActivations, {"stddev": 0.2}),
])
def test_stochastic_activation_layers_pass_the_harness(cls, kwargs):
    res = layer_test(cls, kwargs, input_shape=(2, 4, 4, 2), deterministic=False)
    assert res.tflite_output.shape == (2, 4, 4, 2)


def test_expectation_mode_exports_to_builtin_tflite_deterministically():
    # RNA / RSA share the same expectation branch (_NoiseBase), checked on RNA.
    for cls in (StochasticActivationPruning, RandomNoisyActivations):
        layer_test(cls, {"inference_mode": "expectation"}, input_shape=(2, 6), check_save=False)


def test_rna_and_rsa_noise_statistics(rng):
    h = np.full((20000, 1), 2.0, "float32")
    rna = RandomNoisyActivations(stddev=0.5)(h, training=False).numpy() - 2.0
    rsa = RandomScaledActivations(stddev=0.5)(h, training=False).numpy() / 2.0
    # Bounds from the sample size, not measurements: n = 20000 draws of sd 0.5 give a standard
    # error of 0.0035 on the mean and 0.0025 on the sd, so 0.02 is >= 5.7 standard errors.
    assert abs(rna.mean()) < 0.02 and abs(rna.std() - 0.5) < 0.02
    assert abs(rsa.mean() - 1.0) < 0.02 and abs(rsa.std() - 0.5) < 0.02


def _dense(x_dim=5, units=3):
    d = keras.layers.Dense(units, activation="relu")
    d.build((None, x_dim))
    return d


def test_noisy_weights_zero_noise_equals_the_wrapped_layer(rng):
    x = rng.normal(size=(4, 5)).astype("float32")
    inner = _dense()
    for mode in ("additive", "multiplicative"):
        np.testing.assert_allclose(NoisyWeights(inner, mode=mode, stddev=0.0)(x), inner(x), atol=1e-6)


def test_rnw_output_variance_matches_the_formula(rng):
    # y = x (W + E) with E ~ N(0, s^2): Var(y_j) = s^2 * ||x||^2.
    inner = keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")
    layer = NoisyWeights(inner, mode="additive", stddev=0.3)
    x = np.array([[1.0, 2.0, 2.0]], "float32")
    ys = np.concatenate([layer(x).numpy() for _ in range(3000)])
    # Bound from the sample size: the sd of 3000 normal draws has a standard error of
    # 0.9 / sqrt(2 * 3000) = 0.0116, so 0.05 is 4.3 standard errors (two-sided p ~ 2e-5).
    assert abs(ys.std() - 0.3 * 3.0) < 0.05


def test_noisy_weights_pass_the_harness_for_conv_and_dense():
    layer_test(NoisyWeights, {"layer": keras.layers.Conv2D(2, 3, padding="same"), "mode": "additive"},
               input_shape=(2, 5, 5, 1), deterministic=False)
    layer_test(NoisyWeights, {"layer": keras.layers.Dense(3), "mode": "multiplicative",
                              "inference_mode": "expectation"}, input_shape=(2, 4))


def test_dwp_keeps_exactly_k_largest_weights(rng):
    inner = _dense(6, 4)
    layer = PrunedWeights(inner, mode="deterministic", keep=5)
    x = rng.normal(size=(3, 6)).astype("float32")
    w, b = inner.get_weights()
    flat = np.abs(w).ravel()
    mask = np.zeros_like(flat)
    mask[np.argsort(-flat, kind="stable")[:5]] = 1
    expected = np.maximum(x @ (w * mask.reshape(w.shape)) + b, 0)
    np.testing.assert_allclose(layer(x).numpy(), expected, atol=1e-5)
    assert not layer.stochastic


def test_swp_is_unbiased_over_draws(rng):
    inner = keras.layers.Dense(2, use_bias=False)
    layer = PrunedWeights(inner, mode="stochastic", keep=0.5)
    x = rng.normal(size=(1, 6)).astype("float32")
    mean = np.mean([layer(x).numpy() for _ in range(4000)], axis=0)
    np.testing.assert_allclose(mean, inner(x).numpy(), atol=0.08 * np.abs(inner(x).numpy()).max() + 0.02)
    assert layer.stochastic


def test_pruned_weights_pass_the_harness():
    layer_test(PrunedWeights, {"layer": keras.layers.Conv2D(3, 3), "keep": 0.3}, input_shape=(2, 6, 6, 2))
    layer_test(PrunedWeights, {"layer": keras.layers.Dense(3), "mode": "stochastic"}, input_shape=(2, 4),
               deterministic=False)


@pytest.mark.parametrize("make, err, match", [
    (lambda: StochasticActivationPruning(ratio=-0.1), ValueError, "ratio"),
    (lambda: StochasticActivationPruning(inference_mode="mean"), ValueError, "inference_mode"),
    (lambda: StochasticActivationPruning(seed=1.5), TypeError, "seed"),
    (lambda: RandomNoisyActivations(stddev=-1.0), ValueError, "stddev"),
    (lambda: NoisyWeights(keras.layers.Dense(2), mode="gaussian"), ValueError, "mode"),
    (lambda: NoisyWeights(keras.layers.LSTM(2)), TypeError, "layer"),
    (lambda: PrunedWeights(keras.layers.Dense(2), keep=2.0), ValueError, "keep"),
])
def test_bad_arguments(make, err, match):
    with pytest.raises(err, match=match):
        make()
