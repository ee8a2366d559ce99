"""Structured (unit) pruning: removal is exact for dead units, scores match NumPy, errors are clear."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tfrobust import compression, tflite_tools
from tfrobust._keras import keras

# Building blocks tested where they are defined (not part of the public compression API).
from tfrobust.compression.shared import adjust_dropout_rate, apoz, unit_importance
from tfrobust.layers import ChannelActivationSuppressing, KWinnersTakeAll, ScaledWSConv2D

L = keras.layers


@pytest.fixture(autouse=True)
def _seed():
    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(0)


def _images(n=32, shape=(8, 8, 2), seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n, *shape)).astype(np.float32)


def _kill(layer, units, *, bias=-100.0):
    """Make ``units`` of a Dense/Conv layer output a constant ``bias`` (dead after a ReLU if < 0)."""
    w = layer.get_weights()
    w[0][..., units] = 0.0
    w[1][units] = bias
    layer.set_weights(w)


def _assert_same_outputs(before, after, x):
    np.testing.assert_allclose(after(x, training=False).numpy(), before(x, training=False).numpy(),
                               rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ exactness on dead units


def test_removing_dead_dense_units_keeps_outputs():
    model = keras.Sequential([keras.Input((6,)), L.Dense(8, activation="relu", name="fc1"),
                              L.Dense(5, activation="relu", name="fc2"), L.Dense(3, name="logits")])
    _kill(model.get_layer("fc1"), [1, 4])
    _kill(model.get_layer("fc2"), [0])
    x = np.random.default_rng(0).normal(size=(64, 6)).astype(np.float32)
    res = compression.prune_units(model, {"fc1": 2, "fc2": 1}, score="apoz", x=x)
    assert res.kept["fc1"].tolist() == [0, 2, 3, 5, 6, 7]
    assert res.kept["fc2"].tolist() == [1, 2, 3, 4]
    assert res.units == {"fc1": (8, 6), "fc2": (5, 4), "logits": (3, 3)}
    _assert_same_outputs(model, res.model, x)


def _conv_bn_model():
    inp = keras.Input((8, 8, 2))
    x = L.Conv2D(6, 3, padding="same", name="conv1")(inp)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU(name="relu1")(x)
    x = L.MaxPooling2D(2, name="pool")(x)
    x = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, use_bias=False, name="dw")(x)
    x = L.Conv2D(5, 3, padding="same", activation="relu", name="conv2")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(7, activation="relu", name="fc1")(x)
    return keras.Model(inp, L.Dense(3, name="logits")(x))


def test_removing_dead_channels_through_bn_depthwise_and_flatten_keeps_outputs():
    model = _conv_bn_model()
    rng = np.random.default_rng(1)
    bn = model.get_layer("bn1")
    gamma, beta, mean, var = (rng.uniform(0.5, 1.5, 6), rng.normal(size=6), rng.normal(size=6),
                              rng.uniform(0.5, 2.0, 6))
    beta[[0, 3]] = -100.0  # BN output -100 on channels 0 and 3 -> ReLU zero everywhere
    bn.set_weights([gamma, beta, mean, var])
    _kill(model.get_layer("conv2"), [2])
    _kill(model.get_layer("fc1"), [6])
    x = _images()
    res = compression.prune_units(model, {"conv1": 2, "conv2": 1, "fc1": 1}, score="apoz", x=x)
    assert res.kept["conv1"].tolist() == [1, 2, 4, 5]
    assert res.kept["conv2"].tolist() == [0, 1, 3, 4]
    new = res.model
    assert new.get_layer("dw").output_shape[-1] == 8  # 4 channels x depth multiplier 2
    np.testing.assert_allclose(new.get_layer("bn1").get_weights()[2], mean[[1, 2, 4, 5]])
    assert new.get_layer("fc1").kernel.shape == (4 * 4 * 4, 6)
    _assert_same_outputs(model, new, x)


def _residual_model():
    inp = keras.Input((8, 8, 2))
    stem = L.Conv2D(6, 3, padding="same", activation="relu", name="stem")(inp)
    a = L.Conv2D(4, 3, padding="same", activation="relu", name="a")(stem)
    b = L.Conv2D(6, 3, padding="same", name="b")(a)
    x = L.ReLU(name="relu1")(L.Add(name="add1")([stem, b]))
    c = L.Conv2D(6, 1, activation="relu", name="c")(x)
    x = L.ReLU(name="relu2")(L.Add(name="add2")([x, c]))
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, L.Dense(3, name="logits")(x))


def test_residual_group_is_pruned_together_and_dead_channels_keep_outputs():
    model = _residual_model()
    for name, bias in (("stem", -100.0), ("b", 0.0), ("c", -100.0)):
        _kill(model.get_layer(name), [1, 4], bias=bias)
    _kill(model.get_layer("a"), [2])
    x = _images()
    res = compression.prune_units(model, {"b": 2, "a": 1}, score="apoz", x=x)
    for name in ("stem", "b", "c"):
        assert res.kept[name].tolist() == [0, 2, 3, 5], name
    assert res.kept["a"].tolist() == [0, 1, 3]
    _assert_same_outputs(model, res.model, x)
    scores = unit_importance(model, "l1")
    np.testing.assert_array_equal(scores["stem"], scores["c"])  # one score per group


def test_concatenate_offsets_the_kept_channels():
    inp = keras.Input((6, 6, 2))
    p = L.Conv2D(3, 3, padding="same", activation="relu", name="p")(inp)
    q = L.Conv2D(4, 3, padding="same", activation="relu", name="q")(inp)
    x = L.Concatenate(name="cat")([p, q])
    x = L.Conv2D(5, 3, activation="relu", name="mix")(x)
    model = keras.Model(inp, L.Dense(2, name="logits")(L.Flatten()(x)))
    _kill(model.get_layer("p"), [0])
    _kill(model.get_layer("q"), [1, 3])
    x_in = _images(shape=(6, 6, 2))
    res = compression.prune_units(model, {"p": 1, "q": 2}, score="apoz", x=x_in)
    assert res.model.get_layer("mix").kernel.shape[2] == 4
    _assert_same_outputs(model, res.model, x_in)


# ------------------------------------------------------------------ scores against NumPy


def test_l1_ranking_removes_the_smallest_norm_filters():
    model = keras.Sequential([keras.Input((5, 5, 3)), L.Conv2D(6, 3, activation="relu", name="conv"),
                              L.Flatten(), L.Dense(2, name="logits")])
    conv = model.get_layer("conv")
    w = np.random.default_rng(0).normal(size=(3, 3, 3, 6)).astype(np.float32)
    w *= np.array([5.0, 0.1, 3.0, 0.2, 4.0, 0.3], np.float32)
    conv.set_weights([w, np.zeros(6, np.float32)])
    l1 = unit_importance(model, "l1")["conv"]
    l2 = unit_importance(model, "l2")["conv"]
    np.testing.assert_allclose(l1, np.abs(w).sum((0, 1, 2)), rtol=1e-6)
    np.testing.assert_allclose(l2, np.sqrt((w ** 2).sum((0, 1, 2))), rtol=1e-6)
    res = compression.prune_units(model, {"conv": 0.5}, score="l1")
    assert res.kept["conv"].tolist() == [0, 2, 4]


def test_apoz_matches_numpy():
    model = keras.Sequential([keras.Input((8, 8, 2)), L.Conv2D(5, 3, activation="relu", name="conv"),
                              L.Flatten(), L.Dense(6, activation="relu", name="fc"),
                              L.Dense(2, name="logits")])
    x = _images(40) - 0.5
    got = apoz(model, x)
    conv_out = keras.Model(model.inputs, model.get_layer("conv").output)(x).numpy()
    fc_out = keras.Model(model.inputs, model.get_layer("fc").output)(x).numpy()
    np.testing.assert_allclose(got["conv"], np.mean(conv_out == 0, axis=(0, 1, 2)))
    np.testing.assert_allclose(got["fc"], np.mean(fc_out == 0, axis=0))
    act = unit_importance(model, "activation", x)["fc"]
    np.testing.assert_allclose(act, np.abs(fc_out).mean(0), rtol=1e-5)


def test_robust_score_is_measured_on_adversarial_examples():
    model = keras.Sequential([keras.Input((8, 8, 2)), L.Conv2D(5, 3, activation="relu", name="conv"),
                              L.Flatten(), L.Dense(3, name="logits")])
    x = _images(16)
    y = np.arange(16) % 3
    clean = unit_importance(model, "activation", x, y)["conv"]
    robust = unit_importance(model, "activation", x, y, eps=0.1, steps=3)["conv"]
    assert robust.shape == clean.shape == (5,)
    assert not np.allclose(robust, clean)
    with pytest.raises(ValueError, match="eps"):
        unit_importance(model, "l1", eps=0.1)


# ------------------------------------------------------------------ dropout and sizes


def test_dropout_rate_adjustment_matches_numpy():
    rng = np.random.default_rng(0)
    for _ in range(20):
        d_o, c_o = rng.uniform(0, 0.9), int(rng.integers(1, 10_000))
        c_r = int(rng.integers(0, c_o + 1))
        assert adjust_dropout_rate(d_o, c_o, c_r) == pytest.approx(d_o * np.sqrt(c_r / c_o))
    model = keras.Sequential([keras.Input((10,)), L.Dense(12, activation="relu", name="fc1"),
                              L.Dropout(0.5, name="drop"), L.Dense(3, name="logits")])
    res = compression.prune_units(model, {"fc1": 4}, score="l1")
    expected = 0.5 * np.sqrt((10 * 8) / (10 * 12))
    assert res.model.get_layer("drop").rate == pytest.approx(expected)
    assert res.dropout == {"drop": (0.5, pytest.approx(expected))}
    kept = compression.prune_units(model, {"fc1": 4}, score="l1", adjust_dropout=False)
    assert kept.model.get_layer("drop").rate == 0.5
    with pytest.raises(ValueError, match="rate"):
        adjust_dropout_rate(1.0, 10, 5)
    with pytest.raises(ValueError, match="connections_pruned"):
        adjust_dropout_rate(0.5, 10, 11)


def test_parameter_count_drops_by_the_removed_rows_and_columns():
    model = keras.Sequential([keras.Input((6, 6, 3)), L.Conv2D(8, 3, activation="relu", name="conv"),
                              L.Flatten(), L.Dense(10, activation="relu", name="fc"),
                              L.Dense(4, name="logits")])
    res = compression.prune_units(model, {"conv": 3, "fc": 2}, score="l1")
    positions = 4 * 4
    conv_saved = 3 * (3 * 3 * 3 + 1)
    fc_saved = 3 * positions * 10 + 2 * (5 * positions + 1)  # rows of removed channels, then columns
    logits_saved = 2 * 4
    assert res.params == (model.count_params(), model.count_params() - conv_saved - fc_saved - logits_saved)
    assert res.macs[1] == positions * 27 * 5 + 5 * positions * 8 + 8 * 4
    assert "fewer" in res.to_markdown()


def test_pruned_model_converts_to_a_smaller_int8_tflite_that_agrees_with_keras():
    model = keras.Sequential([keras.Input((12, 12, 1)), L.Conv2D(16, 3, activation="relu", name="conv1"),
                              L.MaxPooling2D(2), L.Conv2D(32, 3, activation="relu", name="conv2"),
                              L.Flatten(), L.Dense(64, activation="relu", name="fc1"),
                              L.Dense(4, name="logits")])
    x = _images(64, (12, 12, 1))
    res = compression.prune_units(model, 0.75, score="l1")
    dense = tflite_tools.convert(model, "int8", representative_data=x)
    small = tflite_tools.convert(res.model, "int8", representative_data=x)
    assert len(small) < len(dense) / 4
    ref = res.model(x, training=False).numpy()
    got = tflite_tools.TFLiteModel(small)(x).numpy()
    assert np.max(np.abs(got - ref)) <= 0.05 * (ref.max() - ref.min())


def test_sequential_and_scalar_amount_skip_the_logits():
    model = keras.Sequential([keras.Input((6,)), L.Dense(8, activation="relu", name="fc1"),
                              L.Dense(3, name="logits")])
    res = compression.prune_units(model, 0.5)
    assert res.units == {"fc1": (8, 4), "logits": (3, 3)}
    assert res.model.output_shape == (None, 3)


# ------------------------------------------------------------------ errors


def test_bad_amounts_and_layers_raise_clear_errors():
    model = keras.Sequential([keras.Input((6,)), L.Dense(8, activation="relu", name="fc1"),
                              L.Flatten(name="flat"), L.Dense(3, name="logits")])
    for bad in (1.0, -0.1, True, "half", 8, -1, float("nan")):
        with pytest.raises(ValueError, match="amount"):
            compression.prune_units(model, {"fc1": bad})
    with pytest.raises(ValueError, match="amount"):
        compression.prune_units(model, 1.5)
    with pytest.raises(ValueError, match="not a layer"):
        compression.prune_units(model, {"fc9": 0.5})
    with pytest.raises(ValueError, match="'flat'.*no units"):
        compression.prune_units(model, {"flat": 0.5})
    with pytest.raises(ValueError, match="'logits'.*model output"):
        compression.prune_units(model, {"logits": 1})
    with pytest.raises(ValueError, match="score"):
        compression.prune_units(model, 0.5, score="taylor")
    with pytest.raises(ValueError, match="x=None"):
        compression.prune_units(model, 0.5, score="apoz")
    with pytest.raises(TypeError, match="float"):
        compression.prune_units(model, 0.5, score="apoz", x=np.zeros((4, 6), np.uint8))


def test_subclassed_and_keras_objects_are_refused():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.fc = L.Dense(3)

        def call(self, x):
            return self.fc(x)

    net = Net()
    net(np.zeros((1, 4), np.float32))
    with pytest.raises(ValueError, match="subclassed"):
        compression.prune_units(net, 0.5)
    with pytest.raises(TypeError, match="tf_keras"):
        compression.prune_units(object(), 0.5)


def test_layers_that_mix_channels_are_refused_by_name():
    inp = keras.Input((6, 6, 2))
    x = L.Conv2D(8, 3, activation="relu", name="conv")(inp)
    x = KWinnersTakeAll(0.5, name="kwta")(x)
    model = keras.Model(inp, L.Dense(2, name="logits")(L.Flatten()(x)))
    with pytest.raises(ValueError, match="'kwta'.*KWinnersTakeAll"):
        compression.prune_units(model, {"conv": 2})
    x = L.Reshape((-1,), name="reshape")(L.Conv2D(8, 3, activation="relu", name="conv")(inp))
    model = keras.Model(inp, L.Dense(2, name="logits")(x))
    with pytest.raises(ValueError, match="'reshape'"):
        compression.prune_units(model, {"conv": 2})


def test_residual_groups_refuse_inconsistent_or_unprunable_members():
    model = _residual_model()
    with pytest.raises(ValueError, match="add1.*same amount|same amount"):
        compression.prune_units(model, {"stem": 1, "b": 2})
    inp = keras.Input((6, 6, 3))
    a = L.Conv2D(3, 3, padding="same", name="a")(inp)
    x = L.Add(name="skip")([inp, a])
    free = L.Conv2D(4, 3, activation="relu", name="free")(x)
    model = keras.Model(inp, L.Dense(2, name="logits")(L.Flatten()(free)))
    with pytest.raises(ValueError, match="'a'.*skip.*model input"):
        compression.prune_units(model, {"a": 1})
    res = compression.prune_units(model, 0.5)  # the scalar form skips the tied group
    assert res.units["a"] == (3, 3) and res.units["free"] == (4, 2)


# ------------------------------------------------------------------ retraining helpers


def _tiny_cnn():
    inp = keras.Input((28, 28, 1))
    x = L.Conv2D(8, 3, activation="relu", name="conv1")(inp)
    x = L.MaxPooling2D(2)(x)
    x = L.Conv2D(16, 3, activation="relu", name="conv2")(x)
    x = L.Flatten()(x)
    x = L.Dense(32, activation="relu", name="fc1")(x)
    x = L.Dropout(0.4, name="drop")(x)
    return keras.Model(inp, L.Dense(10, name="logits")(x))


def test_iterative_pruning_with_adversarial_finetuning_and_scratch_baselines(small_data):
    x, y = small_data
    x, y = x[:256], y[:256]
    model = _tiny_cnn()
    res = compression.prune_units_iteratively(
        model, {"conv2": 0.5, "fc1": 0.75}, x, y, rounds=2, epochs=1, score="apoz", score_examples=64,
        adversarial={"method": "fgsm_rs", "eps": 0.1}, x_val=x[:64], y_val=y[:64])
    assert [r["units"]["fc1"] for r in res.rows] == [32, 16, 8]
    assert [r["units"]["conv2"] for r in res.rows] == [16, 11, 8]
    assert res.rows[-1]["params"] < res.rows[0]["params"]
    # dropout against the *original* fc1: C = flattened rows (11 x 11 x channels) x units
    c_o, c_r = 11 * 11 * 16 * 32, 11 * 11 * 8 * 8
    assert res.model.get_layer("drop").rate == pytest.approx(0.4 * math.sqrt(c_r / c_o))
    assert "val. accuracy" in res.to_markdown()
    scratch = compression.scratch_baselines(res.model, model, x, y, x[:64], y[:64], epochs=1)
    rows = {r["name"]: r for r in scratch.rows}
    ratio = scratch.config["mac_ratio"]
    assert ratio == pytest.approx(scratch.config["macs_original"] / scratch.config["macs_pruned"])
    assert ratio > 1 and rows["scratch_e"]["epochs"] == 1
    assert rows["scratch_b"]["epochs"] == math.ceil(min(2.0, ratio))  # budget from FLOPs, at most 2x
    assert 0.0 <= rows["scratch_b"]["accuracy"] <= 1.0
    with pytest.raises(TypeError, match="adversarial"):
        compression.prune_units_iteratively(model, 0.5, x, y, adversarial="pgd")
    with pytest.raises(ValueError, match="rounds"):
        compression.prune_units_iteratively(model, 0.5, x, y, rounds=0)


def test_tfrobust_per_channel_layers_are_sliced_or_refused():
    inp = keras.Input((6, 6, 2))
    x = ScaledWSConv2D(6, 3, padding="same", activation="relu", name="ws")(inp)
    x = ChannelActivationSuppressing(3, name="cas")(x)
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, L.Dense(3, name="logits")(x))
    ws = model.get_layer("ws")
    w = ws.get_weights()  # kernel, bias, gain: standardisation is per filter, so bias -100 kills it
    w[1][[1, 4]] = -100.0
    ws.set_weights(w)
    x_in = _images(16, (6, 6, 2))
    res = compression.prune_units(model, {"ws": 2}, score="apoz", x=x_in)
    assert res.kept["ws"].tolist() == [0, 2, 3, 5]
    assert res.model.get_layer("cas").kernel.shape == (4, 3)
    assert res.model.get_layer("ws").gain.shape == (4,)
    _assert_same_outputs(model, res.model, x_in)
    inp = keras.Input((6, 6, 2))
    x = L.Conv2D(4, 3, activation="relu", name="conv")(inp)
    x = ScaledWSConv2D(3, 3, name="ws")(x)
    model = keras.Model(inp, L.Dense(2, name="logits")(L.Flatten()(x)))
    with pytest.raises(ValueError, match="'ws'.*standardises"):
        compression.prune_units(model, {"conv": 1})
