"""Channel statistics (CAS/CIFS motivation): counts, the 1%-of-the-largest-count rule, magnitudes."""

import numpy as np
import pytest
import tensorflow as tf

from tfrobust import evaluation, keras
from tfrobust.evaluation.shared import normalized_entropy


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((6, 6, 1))
    h = keras.layers.Conv2D(5, 3, padding="same", activation="relu", name="conv")(inp)
    g = keras.layers.GlobalAveragePooling2D()(h)
    d = keras.layers.Dense(7, activation="relu", name="feat")(g)
    out = keras.layers.Dense(3, name="logits")(d)
    return keras.Model(inp, out)


def _numpy_stats(features, labels, num_classes, threshold, relative):
    flat = features.reshape(len(features), -1, features.shape[-1])  # [N, positions, K]
    gap = flat.mean(axis=1)
    counts = np.zeros((num_classes, gap.shape[1]), np.int64)
    magnitude = np.zeros((num_classes, gap.shape[1]))
    for c in range(num_classes):
        counts[c] = (flat[labels == c] > threshold).sum(axis=(0, 1))
        if (labels == c).any():
            magnitude[c] = gap[labels == c].mean(axis=0)
    largest = counts.max(axis=1, keepdims=True)
    activated = (counts > relative * largest) & (largest > 0)
    return counts, magnitude, activated


@pytest.mark.parametrize("threshold", [0.0, 0.05])
def test_counts_magnitudes_and_one_percent_rule_match_numpy(threshold):
    model = _model()
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(40, 6, 6, 1)).astype(np.float32)
    y = rng.integers(0, 3, size=40)
    stats = evaluation.channel_statistics(model, x, y, layers=["conv", "feat"], threshold=threshold,
                                          batch_size=16)
    conv = keras.Model(model.inputs, model.get_layer("conv").output)(x).numpy()
    feat = keras.Model(model.inputs, model.get_layer("feat").output)(x).numpy()
    for name, f in (("conv", conv), ("feat", feat)):
        counts, magnitude, activated = _numpy_stats(f.astype(np.float64), y, 3, threshold, 0.01)
        np.testing.assert_array_equal(stats[name].counts, counts)
        np.testing.assert_allclose(stats[name].magnitude, magnitude, rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(stats[name].activated, activated)
        np.testing.assert_array_equal(stats[name].images_per_class, np.bincount(y, minlength=3))


def test_one_percent_rule_on_hand_made_counts():
    # Counts 1000, 10, 11, 0: 1% of the largest is 10, so only counts > 10 are activated.
    gap = np.zeros((1000, 4))
    gap[:, 0] = 1.0
    gap[:10, 1] = 1.0
    gap[:11, 2] = 1.0
    inp = keras.Input((4,))
    feat = keras.layers.Activation("linear", name="f")(inp)
    model = keras.Model(inp, keras.layers.Dense(2, name="logits")(feat))
    stats = evaluation.channel_statistics(model, gap.astype(np.float32), np.zeros(1000, np.int64),
                                          layers="f")["f"]
    np.testing.assert_array_equal(stats.counts[0], [1000, 10, 11, 0])
    np.testing.assert_array_equal(stats.activated[0], [True, False, True, False])
    assert stats.images_per_class.tolist() == [1000, 0]
    assert not stats.activated[1].any()


def test_normalized_entropy_bounds():
    ent = normalized_entropy(np.array([[5, 5, 5, 5], [20, 0, 0, 0], [0, 0, 0, 0]]))
    np.testing.assert_allclose(ent[:2], [1.0, 0.0], atol=1e-12)
    assert np.isnan(ent[2])


def test_default_layer_is_the_classifier_input_and_comparison_runs(tmp_path):
    model = _model()
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(24, 6, 6, 1)).astype(np.float32)
    y = rng.integers(0, 3, size=24)
    comp = evaluation.compare_channel_statistics(model, x, y, eps=0.1, steps=3, seed=0)
    assert list(comp["natural"]) == ["feat"]
    assert set(comp["summary"]["feat"]) == {"natural", "adversarial"}
    # eps = 0 reproduces the natural statistics exactly.
    same = evaluation.compare_channel_statistics(model, x, y, eps=0.0, steps=2)
    np.testing.assert_array_equal(same["natural"]["feat"].counts, same["adversarial"]["feat"].counts)
    import matplotlib

    backend = matplotlib.get_backend()
    png = evaluation.plot_channel_statistics(comp, tmp_path / "channels.png", title="test")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
    assert matplotlib.get_backend() == backend  # no global backend switch (a notebook's inline plots)
    assert [p.name for p in tmp_path.iterdir()] == ["channels.png"]  # atomic: no temp file left


def test_bad_arguments_name_the_argument():
    model = _model()
    x = np.zeros((4, 6, 6, 1), np.float32)
    with pytest.raises(ValueError, match="`layers` names a layer"):
        evaluation.channel_statistics(model, x, [0, 1, 2, 0], layers=["nope"])
    with pytest.raises(ValueError, match=r"`y` must be class indices in \[0, 3\)"):
        evaluation.channel_statistics(model, x, [0, 1, 2, 3])
    with pytest.raises(ValueError, match="`x` must be a batch of the model's input shape"):
        evaluation.channel_statistics(model, np.zeros((4, 5, 5, 1), np.float32), [0, 1, 2, 0])
    with pytest.raises(ValueError, match="`relative` must be"):
        evaluation.channel_statistics(model, x, [0, 1, 2, 0], relative=1.5)
    with pytest.raises(ValueError, match="`x` must be finite"):
        evaluation.channel_statistics(model, np.full((4, 6, 6, 1), np.nan, np.float32), [0, 1, 2, 0])
    with pytest.raises(TypeError, match="`model` must be a built functional"):
        evaluation.channel_statistics(lambda t: t, x, [0, 1, 2, 0])
    assert tf.executing_eagerly()
