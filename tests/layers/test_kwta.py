import numpy as np
import pytest
import tensorflow as tf

from tfrobust.layers import KWinnersTakeAll, WTADropout, bpda_scope, kwta_mask
from tfrobust.layers.shared import bisection_threshold
from tfrobust.testing import layer_test


def kwta_reference(x, k):
    """NumPy k-WTA: keep the k largest per example, ties to the lower flat index."""
    flat = x.reshape(len(x), -1)
    out = np.zeros_like(flat)
    for i, row in enumerate(flat):
        idx = np.argsort(-row, kind="stable")[:k]
        out[i, idx] = row[idx]
    return out.reshape(x.shape)


@pytest.mark.parametrize("implementation", ["topk", "threshold"])
def test_kwta_passes_the_layer_harness(implementation):
    res = layer_test(KWinnersTakeAll, {"k": 0.25, "implementation": implementation},
                     input_shape=(2, 4, 4, 3), expected_output_shape=(2, 4, 4, 3))
    assert ("TOPK_V2" in res.tflite_ops) == (implementation == "topk")
    if implementation == "threshold":
        assert not {"TOPK_V2", "SELECT", "SCATTER_ND"} & set(res.tflite_ops)


@pytest.mark.parametrize("k, count", [(0.1, 5), (7, 7), (1.0, 48)])
def test_kwta_matches_numpy_and_keeps_exactly_k(rng, k, count):
    x = rng.normal(size=(3, 4, 4, 3)).astype("float32")
    out = KWinnersTakeAll(k=k)(x).numpy()
    np.testing.assert_array_equal(out, kwta_reference(x, count))
    assert (np.count_nonzero(out.reshape(3, -1), axis=1) == count).all()


@pytest.mark.parametrize("implementation", ["topk", "threshold"])
def test_kwta_mask_keeps_the_k_largest_of_every_row(rng, implementation):
    scores = rng.normal(size=(5, 12)).astype(np.float32)  # continuous: no ties
    want = np.zeros_like(scores)
    np.put_along_axis(want, np.argsort(-scores, axis=1)[:, :4], 1.0, axis=1)
    got = kwta_mask(tf.constant(scores), 4, implementation=implementation, bisection_steps=40).numpy()
    np.testing.assert_array_equal(got, want)


def test_kwta_ties_are_broken_towards_the_lower_index():
    x = np.ones((2, 10), "float32")
    out = KWinnersTakeAll(k=3)(x).numpy()
    np.testing.assert_array_equal(out, np.array([[1, 1, 1, 0, 0, 0, 0, 0, 0, 0]] * 2, "float32"))


def test_kwta_threshold_implementation_agrees_without_ties(rng):
    x = rng.normal(size=(4, 64)).astype("float32")
    exact = KWinnersTakeAll(k=9)(x).numpy()
    approx = KWinnersTakeAll(k=9, implementation="threshold", bisection_steps=32)(x).numpy()
    np.testing.assert_array_equal(exact, approx)


def np_bisection_threshold(x, k, steps):
    """lo <- lo + w [count(x >= lo + w) >= k], w halving from (max - min), in float32."""
    lo, w = x.min(axis=1, keepdims=True), x.max(axis=1, keepdims=True) - x.min(axis=1, keepdims=True)
    for _ in range(steps):
        w = np.float32(0.5) * w
        enough = (x >= lo + w).sum(axis=1, keepdims=True) >= k
        lo = lo + np.where(enough, w, np.float32(0))
    return lo


@pytest.mark.parametrize("k", [3, 20, 31])  # both sides of n / 2 (the count is read from either)
@pytest.mark.parametrize("steps", [1, 5, 16])
def test_bisection_threshold_matches_numpy_and_brackets_the_kth_value(rng, k, steps):
    x = rng.normal(size=(6, 32)).astype("float32")
    thr = bisection_threshold(tf.constant(x), k, steps).numpy()
    np.testing.assert_array_equal(thr, np_bisection_threshold(x, k, steps))
    v_k = np.sort(x, axis=1)[:, -k][:, None]
    span = x.max(axis=1, keepdims=True) - x.min(axis=1, keepdims=True)
    assert np.all(thr <= v_k) and np.all(v_k - thr <= span / 2 ** steps * (1 + 1e-5))


def test_kwta_gradient_reaches_only_the_winners(rng):
    x = tf.constant(rng.normal(size=(2, 20)).astype("float32"))
    layer = KWinnersTakeAll(k=4)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        total = tf.reduce_sum(y)
    grad = tape.gradient(total, x).numpy()
    np.testing.assert_array_equal(grad, (y.numpy() != 0).astype("float32"))
    assert layer.gradient_masking and not layer.stochastic
    np.testing.assert_array_equal(layer.bpda_approximation(x), x)


@pytest.mark.parametrize("kwargs, err, match", [
    ({"k": 0.0}, ValueError, "k"), ({"k": 1.5}, ValueError, "k"), ({"k": 0}, ValueError, "k"),
    ({"k": "all"}, TypeError, "k"), ({"implementation": "sort"}, ValueError, "implementation"),
    ({"bisection_steps": 0}, ValueError, "bisection_steps"),
])
def test_kwta_bad_arguments(kwargs, err, match):
    with pytest.raises(err, match=match):
        KWinnersTakeAll(**kwargs)


def test_kwta_count_larger_than_layer_is_refused():
    with pytest.raises(ValueError, match="larger than"):
        KWinnersTakeAll(k=100)(np.zeros((1, 10), "float32"))


def test_wta_dropout_channel_structure_zeroes_whole_feature_maps(rng):
    x = rng.uniform(size=(2, 3, 3, 8)).astype("float32")
    layer = WTADropout(keep=0.25)
    out = layer(x).numpy()
    scores = x.mean(axis=(1, 2))
    for i in range(2):
        winners = np.argsort(-scores[i], kind="stable")[:2]
        expected = np.zeros_like(x[i])
        expected[..., winners] = x[i][..., winners]
        np.testing.assert_array_equal(out[i], expected)


def test_wta_dropout_reports_measured_sparsity_as_a_metric(rng):
    from tfrobust._keras import keras

    inp = keras.Input((4, 4, 8))
    model = keras.Model(inp, keras.layers.Flatten()(WTADropout(keep=2, name="wta")(inp)))
    model.compile(loss="mse")
    x = rng.uniform(0.1, 1.0, size=(4, 4, 4, 8)).astype("float32")
    result = model.evaluate(x, np.zeros((4, 128), "float32"), return_dict=True, verbose=0)
    assert result["wta_sparsity"] == pytest.approx(0.75)


def test_wta_dropout_passes_the_layer_harness():
    layer_test(WTADropout, {"keep": 0.5, "implementation": "threshold"}, input_shape=(2, 4, 4, 4))
    layer_test(WTADropout, {"keep": 3, "structure": "element"}, input_shape=(2, 12))


def test_wta_dropout_channel_structure_needs_spatial_axes():
    with pytest.raises(ValueError, match="structure"):
        WTADropout(keep=0.5)(np.zeros((2, 6), "float32"))


def test_kwta_backpropagates_through_the_identity_inside_bpda_scope(rng):
    x = tf.constant(rng.normal(size=(2, 20)).astype("float32"))
    layer = KWinnersTakeAll(k=4)
    plain = layer(x).numpy()
    with bpda_scope(), tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        total = tf.reduce_sum(y * tf.range(20, dtype=tf.float32))
    np.testing.assert_allclose(y.numpy(), plain, atol=1e-6)  # forward unchanged
    np.testing.assert_allclose(tape.gradient(total, x).numpy(), np.tile(np.arange(20.0), (2, 1)))
