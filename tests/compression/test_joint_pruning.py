import numpy as np
import pytest

from tfrobust import models
from tfrobust._keras import keras
from tfrobust.compression import ActivationThreshold, count_macs, joint_prune

# Building blocks tested where they are defined (not part of the public compression API).
from tfrobust.compression.shared import insert_activation_thresholds, magnitude_masks
from tfrobust.testing import layer_test


def _numpy_conv_macs(x, w, stride, padding):
    """Loop over every output position / channel and every kernel tap."""
    n, h, wd, cin = x.shape
    kh, kw, _, cout = w.shape
    if padding == "same":
        oh, ow = -(-h // stride), -(-wd // stride)
        ph = max((oh - 1) * stride + kh - h, 0)
        pw = max((ow - 1) * stride + kw - wd, 0)
        x = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    else:
        oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
    dense = eff = 0
    for b in range(n):
        for i in range(oh):
            for j in range(ow):
                patch = x[b, i * stride:i * stride + kh, j * stride:j * stride + kw, :]
                for o in range(cout):
                    dense += kh * kw * cin
                    eff += int(np.sum((patch != 0) & (w[..., o] != 0)))
    return dense, eff


def _numpy_dense_macs(x, w):
    dense = eff = 0
    for row in x.reshape(-1, w.shape[0]):
        for i in range(w.shape[0]):
            for o in range(w.shape[1]):
                dense += 1
                eff += int(row[i] != 0 and w[i, o] != 0)
    return dense, eff


def test_mac_count_equals_a_numpy_count(rng):
    inp = keras.Input((9, 9, 2))
    a = keras.layers.Conv2D(3, 3, strides=2, padding="same", activation="relu", name="c_same")(inp)
    b = keras.layers.Conv2D(4, 2, padding="valid", activation="relu", name="c_valid")(a)
    f = keras.layers.Flatten()(b)
    d = keras.layers.Dense(5, activation="relu", name="d1")(f)
    out = keras.layers.Dense(3, name="d2")(d)
    model = keras.Model(inp, out)
    for layer in model.layers:
        if layer.weights:
            k = layer.kernel.numpy()
            layer.kernel.assign(k * (rng.random(k.shape) > 0.5))
    x = rng.normal(size=(3, 9, 9, 2)).astype(np.float32)
    x[x < 0.3] = 0.0  # sparse input
    report = count_macs(model, x, batch_size=2)
    probe = keras.Model(model.inputs, [model.get_layer(n).input for n in ("c_same", "c_valid", "d1", "d2")])
    acts = [t.numpy() for t in probe(x)]
    ref = [
        _numpy_conv_macs(acts[0], model.get_layer("c_same").kernel.numpy(), 2, "same"),
        _numpy_conv_macs(acts[1], model.get_layer("c_valid").kernel.numpy(), 1, "valid"),
        _numpy_dense_macs(acts[2], model.get_layer("d1").kernel.numpy()),
        _numpy_dense_macs(acts[3], model.get_layer("d2").kernel.numpy()),
    ]
    for row, (dense, eff) in zip(report.layers, ref):
        assert (row.dense, row.effective) == (dense, eff), row.layer
    assert report.effective == sum(e for _, e in ref) and report.dense == sum(d for d, _ in ref)
    assert 0 < report.saved < 1


def test_activation_threshold_layer_passes_the_harness_and_matches_numpy(rng):
    layer_test(ActivationThreshold, {"threshold": 0.25}, input_shape=(2, 6, 6, 3))
    x = rng.normal(size=(4, 5)).astype(np.float32)
    out = ActivationThreshold(0.25)(x).numpy()
    np.testing.assert_array_equal(out, np.where(x > 0.25, x, 0.0))
    with pytest.raises(ValueError, match="threshold"):
        ActivationThreshold(-1.0)


def test_inserting_thresholds_keeps_the_function(rng):
    model = models.small_cnn(width=4, dense_units=16)
    jp, names = insert_activation_thresholds(model)
    assert names == {"conv1": "conv1_jp_threshold", "conv2": "conv2_jp_threshold", "fc1": "fc1_jp_threshold"}
    x = rng.random((4, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(jp(x).numpy(), model(x).numpy(), atol=1e-6)


def test_joint_pruning_prunes_weights_and_activations(small_data, fashion_test):
    x, y = small_data
    keras.utils.set_random_seed(0)
    model = models.small_cnn(width=8, dense_units=32)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    dense_macs = count_macs(model, fashion_test[0][:64])
    # ReLU alone zeroes about half the activations: a target of 80% needs thresholds above 0
    res = joint_prune(model, x, y, weight_sparsity=0.6, activation_sparsity=0.8, stages=2,
                      x_test=fashion_test[0][:64])
    by_layer = {r.layer: r for r in res.macs.layers}
    for name in ("conv1", "conv2", "fc1"):
        assert by_layer[name].weight_sparsity == pytest.approx(0.6, abs=0.01)
        assert res.masks[name].mean() == pytest.approx(0.4, abs=0.01)
    assert by_layer["logits"].weight_sparsity == 0.0  # skip_last
    assert all(t >= 0 for t in res.thresholds.values()) and max(res.thresholds.values()) > 0
    assert res.macs.effective < 0.7 * dense_macs.effective
    assert res.macs.dense == dense_macs.dense
    with pytest.raises(ValueError, match="activation_sparsity"):
        joint_prune(model, x, y, activation_sparsity={"nope": 0.5})


def test_magnitude_masks_keep_the_largest_weights(rng):
    model = models.lenet_300_100(input_shape=(4, 4, 1))
    masks = magnitude_masks(model, 0.75)
    w = np.abs(model.get_layer("fc1").kernel.numpy())
    kept = w[masks["fc1"]]
    assert masks["fc1"].mean() == pytest.approx(0.25, abs=1e-3)
    assert kept.min() >= w[~masks["fc1"]].max()
    again = magnitude_masks(model, {"fc1": 0.5}, previous=masks, of_remaining=True)
    assert again["fc1"].mean() == pytest.approx(0.125, abs=1e-3)
    assert not np.any(again["fc1"] & ~masks["fc1"])  # pruned weights stay pruned
    with pytest.raises(ValueError, match="sparsity"):
        magnitude_masks(model, 1.0)


def test_wta_dropout_sparsity_is_counted_the_same_way(rng):
    from tfrobust.layers import WTADropout

    inp = keras.Input((10, 10, 1))
    a = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c1")(inp)
    a = WTADropout(keep=0.25, structure="channel", name="wta")(a)
    out = keras.layers.Conv2D(4, 3, padding="same", name="c2")(a)
    model = keras.Model(inp, out)
    x = rng.random((2, 10, 10, 1)).astype(np.float32)
    report = {r.layer: r for r in count_macs(model, x).layers}
    assert report["c2"].input_sparsity >= 0.75  # 6 of 8 feature maps zeroed per example
    acts = keras.Model(inp, model.get_layer("c2").input)(x).numpy()
    dense, eff = _numpy_conv_macs(acts, model.get_layer("c2").kernel.numpy(), 1, "same")
    assert (report["c2"].dense, report["c2"].effective) == (dense, eff)
    assert report["c2"].saved >= 0.7
