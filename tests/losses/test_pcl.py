import numpy as np
import pytest

from tfrobust._keras import keras
from tfrobust.losses import PrototypeConformity, prototype_conformity_loss
from tfrobust.testing import layer_test


def pcl_reference(f, y, w, squared, push_weight=1.0):
    def d(a, b):
        v = np.sum((a - b) ** 2)
        return v if squared else np.sqrt(v)
    k = len(w)
    total = 0.0
    for fi, yi in zip(f, y):
        push = sum(d(fi, w[j]) + d(w[yi], w[j]) for j in range(k) if j != yi) / (k - 1)
        total += d(fi, w[yi]) - push_weight * push
    return total / len(f)


@pytest.mark.parametrize("squared, push_weight", [(True, 1.0), (False, 1.0), (True, 1e-4), (False, 0.3)])
def test_pcl_matches_the_paper_formula(rng, squared, push_weight):
    f = rng.normal(size=(6, 4)).astype("float32")
    y = rng.integers(0, 3, size=6)
    w = rng.normal(size=(3, 4)).astype("float32")
    got = float(prototype_conformity_loss(f, y, w, squared=squared, push_weight=push_weight))
    assert got == pytest.approx(pcl_reference(f, y, w, squared, push_weight), rel=1e-4, abs=1e-4)


def test_pcl_layer_adds_weighted_loss_only_in_training(rng):
    f = rng.normal(size=(5, 3)).astype("float32")
    y = np.array([0, 1, 0, 1, 1])
    layer = PrototypeConformity(num_classes=2, weight=0.5, push_weight=0.25)
    out = layer([f, y], training=True)
    np.testing.assert_array_equal(out, f)
    w = layer.get_weights()[0]
    assert float(sum(layer.losses)) == pytest.approx(0.5 * pcl_reference(f, y, w, True, 0.25), rel=1e-4)
    assert PrototypeConformity.from_config(layer.get_config()).push_weight == 0.25
    layer2 = PrototypeConformity(num_classes=2)
    layer2([f, y], training=False)
    assert not layer2.losses


def test_pcl_training_pulls_features_towards_their_centroids(rng):
    x = rng.normal(size=(64, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    feats = keras.layers.Dense(4)
    pcl = PrototypeConformity(2, weight=1.0)
    xi, yi = keras.Input((8,)), keras.Input((), dtype="int32")
    model = keras.Model([xi, yi], keras.layers.Dense(2)(pcl([feats(xi), yi])))
    model.compile(keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = float(prototype_conformity_loss(feats(x), y, pcl.centroids))
    model.fit((x, y), y, epochs=20, batch_size=64, verbose=0)
    after = float(prototype_conformity_loss(feats(x), y, pcl.centroids))
    assert after < before


def test_pcl_layer_passes_the_harness():
    layer_test(PrototypeConformity, {"num_classes": 3}, input_shape=(2, 5))


@pytest.mark.parametrize("kwargs, match", [({"num_classes": 1}, "num_classes"),
                                           ({"num_classes": 3, "weight": -1}, "weight"),
                                           ({"num_classes": 3, "push_weight": -1e-4}, "push_weight"),
                                           ({"num_classes": 3, "push_weight": True}, "push_weight")])
def test_pcl_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PrototypeConformity(**kwargs)
