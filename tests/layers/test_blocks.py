"""Building-block layers of the model zoo against NumPy references of their paper formulas."""

import numpy as np
import pytest
import tensorflow as tf

from tfrobust import layers as L
from tfrobust._keras import keras
from tfrobust.layers import shared
from tfrobust.testing import layer_test


def _np_lrn(x, r, k, alpha, beta):
    c = x.shape[-1]
    out = np.empty_like(x)
    for i in range(c):
        lo, hi = max(0, i - r), min(c - 1, i + r)
        out[..., i] = x[..., i] / (k + alpha * np.sum(x[..., lo : hi + 1] ** 2, axis=-1)) ** beta
    return out


@pytest.mark.parametrize("implementation", ["native", "decomposed"])
def test_lrn_matches_the_alexnet_formula(implementation, rng):
    x = rng.normal(scale=30.0, size=(2, 3, 3, 7)).astype("float32")  # large enough for alpha=1e-4 to matter
    got = L.LocalResponseNormalization(implementation=implementation)(x).numpy()
    np.testing.assert_allclose(got, _np_lrn(x, 2, 2.0, 1e-4, 0.75), rtol=1e-5, atol=1e-5)
    assert not np.allclose(got, x / 2.0**0.75, rtol=1e-3)  # the window sum really contributes


@pytest.mark.parametrize("implementation", ["native", "decomposed"])
def test_lrn_layer_harness(implementation):
    res = layer_test(
        L.LocalResponseNormalization,
        {"implementation": implementation, "alpha": 0.01},
        input_shape=(2, 4, 4, 6),
        check_save=implementation == "native",
    )
    expected = "LOCAL_RESPONSE_NORMALIZATION" if implementation == "native" else "CONV_2D"
    assert expected in res.tflite_ops
    if implementation == "decomposed":
        assert "LOCAL_RESPONSE_NORMALIZATION" not in res.tflite_ops


def test_channel_shuffle_is_the_reshape_transpose_permutation(rng):
    x = rng.normal(size=(2, 3, 3, 12)).astype("float32")
    ref = x.reshape(2, 3, 3, 3, 4).transpose(0, 1, 2, 4, 3).reshape(2, 3, 3, 12)
    np.testing.assert_array_equal(L.ChannelShuffle(3)(x).numpy(), ref)
    perm = shared.channel_shuffle_permutation(12, 3)
    assert sorted(perm) == list(range(12))
    res = layer_test(L.ChannelShuffle, {"groups": 3}, input_shape=(2, 3, 3, 12), check_save=False)
    assert "GATHER" in res.tflite_ops and "TRANSPOSE" not in res.tflite_ops


def test_channel_shuffle_rejects_indivisible_channels():
    with pytest.raises(ValueError, match="groups"):
        L.ChannelShuffle(5)(np.zeros((1, 2, 2, 12), np.float32))
    with pytest.raises(ValueError, match="groups"):
        L.ChannelShuffle(0)


def _np_conv_same(x, k):
    n, h, w, _ = x.shape
    kh, kw, _, co = k.shape
    pad = np.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    out = np.zeros((n, h, w, co), np.float64)
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("nhwc,co->nhwo", pad[:, i : i + h, j : j + w, :], k[i, j])
    return out


def test_group_conv_matches_independent_per_group_convolutions(rng):
    layer = L.GroupConv2D(6, 3, groups=3, use_bias=False)
    x = rng.normal(size=(2, 5, 5, 9)).astype("float32")
    got = layer(x).numpy()
    k = layer.kernel.numpy()
    assert k.shape == (3, 3, 3, 6)  # C_in / groups input channels per filter
    ref = np.concatenate(
        [_np_conv_same(x[..., 3 * g : 3 * g + 3], k[..., 2 * g : 2 * g + 2]) for g in range(3)], axis=-1
    )
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_group_conv_harness_uses_split_and_plain_conv():
    res = layer_test(
        L.GroupConv2D,
        {"filters": 4, "kernel_size": 3, "groups": 2, "strides": 2},
        input_shape=(2, 6, 6, 4),
        expected_output_shape=(2, 3, 3, 4),
        tflite_atol=1e-4,
    )
    assert {"CONV_2D", "CONCATENATION"} <= set(res.tflite_ops)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"filters": 5, "kernel_size": 1, "groups": 2}, "groups"),
        ({"filters": 4, "kernel_size": 0}, "kernel_size"),
        ({"filters": 4, "kernel_size": 1, "padding": "full"}, "padding"),
    ],
)
def test_group_conv_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        L.GroupConv2D(**kwargs)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def test_squeeze_excitation_matches_formula(rng):
    layer = L.SqueezeExcitation(ratio=4)
    x = rng.normal(size=(2, 4, 4, 8)).astype("float32")
    got = layer(x).numpy()
    w1, b1, w2, b2 = layer.get_weights()
    assert w1.shape == (8, 2)
    s = _sigmoid(np.maximum(x.mean(axis=(1, 2)) @ w1 + b1, 0) @ w2 + b2)
    np.testing.assert_allclose(got, x * s[:, None, None, :], rtol=1e-5, atol=1e-6)
    layer_test(L.SqueezeExcitation, {"ratio": 4}, input_shape=(2, 4, 4, 8), check_save=False)


def test_cbam_matches_formula(rng):
    layer = L.CBAM(ratio=2, kernel_size=3)
    x = rng.normal(size=(2, 5, 5, 4)).astype("float32")
    got = layer(x).numpy()
    w1, b1, w2, b2, wc, bc = layer.get_weights()

    def mlp(v):
        return np.maximum(v @ w1 + b1, 0) @ w2 + b2

    f = x * _sigmoid(mlp(x.mean(axis=(1, 2))) + mlp(x.max(axis=(1, 2))))[:, None, None, :]
    desc = np.concatenate([f.mean(-1, keepdims=True), f.max(-1, keepdims=True)], axis=-1)
    ms = _sigmoid(_np_conv_same(desc, wc) + bc)
    np.testing.assert_allclose(got, f * ms, rtol=1e-4, atol=1e-5)
    layer_test(L.CBAM, {"ratio": 2, "kernel_size": 3}, input_shape=(2, 5, 5, 4), check_save=False)


def test_scaled_weight_standardization_statistics(rng):
    kernel = rng.normal(loc=0.3, scale=2.0, size=(3, 3, 8, 5)).astype("float32")
    gain = np.array([1.0, 2.0, 0.5, 1.0, 3.0], np.float32)
    w = shared.scaled_weight_standardization(tf.constant(kernel), tf.constant(gain)).numpy()
    fan_in = 3 * 3 * 8
    flat = w.reshape(fan_in, 5)
    np.testing.assert_allclose(flat.mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(flat.var(axis=0) * fan_in, gain**2, rtol=1e-3)
    ref = (
        (kernel - kernel.reshape(fan_in, 5).mean(0))
        / (kernel.reshape(fan_in, 5).std(0) * np.sqrt(fan_in))
        * gain
    )
    np.testing.assert_allclose(w, ref, rtol=1e-4, atol=1e-6)


def test_scaled_ws_conv_uses_the_standardized_kernel_and_converts(rng):
    layer = L.ScaledWSConv2D(4, 3, padding="same", use_bias=False)
    x = rng.normal(size=(2, 5, 5, 3)).astype("float32")
    got = layer(x).numpy()
    np.testing.assert_allclose(
        got, _np_conv_same(x, layer.standardized_kernel().numpy()), rtol=1e-4, atol=1e-4
    )
    res = layer_test(
        L.ScaledWSConv2D,
        {"filters": 4, "kernel_size": 3, "padding": "same"},
        input_shape=(2, 5, 5, 3),
        tflite_atol=1e-4,
        check_save=False,
    )
    assert "CONV_2D" in res.tflite_ops


def _np_squash(s):
    n = np.linalg.norm(s, axis=-1, keepdims=True)
    return (n**2 / (1 + n**2)) * s / n


def test_squash_matches_formula_and_bounds_length(rng):
    s = rng.normal(scale=3.0, size=(4, 6, 8)).astype("float32")
    v = shared.squash(tf.constant(s)).numpy()
    np.testing.assert_allclose(v, _np_squash(s), rtol=1e-5, atol=1e-6)
    assert np.all(np.linalg.norm(v, axis=-1) < 1)
    assert np.all(np.isfinite(shared.squash(tf.zeros((1, 3))).numpy()))
    layer_test(L.Squash, input_shape=(2, 6, 8), check_save=False)


def _np_routing(u_hat, r):
    b = np.zeros(u_hat.shape[:3])
    for it in range(r):
        c = np.exp(b) / np.exp(b).sum(-1, keepdims=True)
        v = _np_squash((c[..., None] * u_hat).sum(1))
        if it < r - 1:
            b = b + (u_hat * v[:, None]).sum(-1)
    return v, c


@pytest.mark.parametrize("routings", [1, 3])
def test_dynamic_routing_matches_reference_and_coefficients_sum_to_one(routings, rng):
    u_hat = rng.normal(size=(2, 12, 5, 4)).astype("float32")
    v, c = shared.dynamic_routing(tf.constant(u_hat), routings)
    np.testing.assert_allclose(c.numpy().sum(-1), 1.0, atol=1e-6)
    v_ref, c_ref = _np_routing(u_hat.astype(np.float64), routings)
    np.testing.assert_allclose(v.numpy(), v_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(c.numpy(), c_ref, rtol=1e-4, atol=1e-6)
    if routings == 1:  # no agreement step: uniform coupling
        np.testing.assert_allclose(c.numpy(), 1 / 5, atol=1e-7)
    else:
        assert np.ptp(c.numpy(), axis=-1).max() > 1e-3


def test_routing_capsules_layer_harness(rng):
    layer_test(
        L.DynamicRoutingCapsules,
        {"num_capsules": 3, "dim_capsule": 4, "routings": 2},
        input_shape=(2, 6, 5),
        expected_output_shape=(2, 3, 4),
        tflite_atol=1e-5,
    )
    x = rng.normal(size=(2, 6, 5)).astype("float32")
    layer = L.DynamicRoutingCapsules(3, 4, routings=2)
    w = None
    out = layer(x).numpy()
    w = layer.kernel.numpy().reshape(6, 5, 3, 4)
    u_hat = np.einsum("nid,idje->nije", x, w)
    np.testing.assert_allclose(out, _np_routing(u_hat, 2)[0], rtol=1e-4, atol=1e-5)


def test_capsule_length(rng):
    v = rng.normal(size=(2, 3, 4)).astype("float32")
    np.testing.assert_allclose(L.CapsuleLength()(v).numpy(), np.linalg.norm(v, axis=-1), rtol=1e-5)
    layer_test(L.CapsuleLength, input_shape=(2, 3, 4), expected_output_shape=(2, 3), check_save=False)


def _identity_theta(n):
    return np.tile(np.array([[1, 0, 0, 0, 1, 0]], np.float32), (n, 1))


def test_bilinear_sampler_identity_returns_the_input(rng):
    img = rng.normal(size=(2, 7, 9, 3)).astype("float32")
    out = L.AffineGridSampler()([img, _identity_theta(2)]).numpy()
    np.testing.assert_allclose(out, img, atol=1e-5)


def test_bilinear_sampler_shift_and_half_pixel_interpolation(rng):
    img = rng.normal(size=(1, 6, 6, 2)).astype("float32")
    step = 2.0 / (6 - 1)  # one pixel in normalised coordinates
    theta = np.array([[1, 0, step, 0, 1, 0]], np.float32)  # sample at x + 1
    out = L.AffineGridSampler()([img, theta]).numpy()
    np.testing.assert_allclose(out[:, :, :-1], img[:, :, 1:], atol=1e-5)
    np.testing.assert_allclose(out[:, :, -1], 0.0, atol=1e-5)  # outside the image reads zeros
    theta = np.array([[1, 0, 0, 0, 1, step / 2]], np.float32)  # half a pixel down: average of rows
    out = L.AffineGridSampler()([img, theta]).numpy()
    np.testing.assert_allclose(out[:, :-1], (img[:, :-1] + img[:, 1:]) / 2, atol=1e-5)


def test_affine_sampler_in_a_model_round_trips_and_converts(rng, tmp_path):
    img_in = keras.Input((6, 6, 1))
    theta_in = keras.Input((6,))
    model = keras.Model([img_in, theta_in], L.AffineGridSampler(output_size=(4, 5))([img_in, theta_in]))
    img = rng.normal(size=(2, 6, 6, 1)).astype("float32")
    theta = (_identity_theta(2) + rng.normal(scale=0.1, size=(2, 6))).astype("float32")
    out = model([img, theta]).numpy()
    assert out.shape == (2, 4, 5, 1)
    model.save(tmp_path / "m.keras")
    np.testing.assert_allclose(
        keras.models.load_model(tmp_path / "m.keras")([img, theta]).numpy(), out, atol=1e-6
    )
    fn = tf.function(
        lambda a, b: model([a, b]), input_signature=[tf.TensorSpec((2, 6, 6, 1)), tf.TensorSpec((2, 6))]
    )
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()])
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=conv.convert())
    interp.allocate_tensors()
    for d in interp.get_input_details():
        interp.set_tensor(d["index"], img if len(d["shape"]) == 4 else theta)
    interp.invoke()
    np.testing.assert_allclose(interp.get_tensor(interp.get_output_details()[0]["index"]), out, atol=1e-5)


def test_class_token_and_position_embedding():
    res = layer_test(L.ClassToken, input_shape=(2, 5, 4), expected_output_shape=(2, 6, 4), check_save=False)
    np.testing.assert_allclose(res.output[0, 0], res.output[1, 0])  # the same learned token for every example
    layer = L.AddPositionEmbedding()
    x = np.zeros((2, 5, 4), np.float32)
    out = layer(x).numpy()
    np.testing.assert_allclose(out[0], layer.embedding.numpy()[0])
    layer_test(L.AddPositionEmbedding, input_shape=(2, 5, 4), check_save=False)


@pytest.mark.parametrize(
    "cls, kwargs, match",
    [
        (L.LocalResponseNormalization, {"depth_radius": -1}, "depth_radius"),
        (L.LocalResponseNormalization, {"implementation": "fast"}, "implementation"),
        (L.LocalResponseNormalization, {"beta": float("nan")}, "beta"),
        (L.SqueezeExcitation, {"ratio": 0}, "ratio"),
        (L.CBAM, {"kernel_size": 0}, "kernel_size"),
        (L.DynamicRoutingCapsules, {"num_capsules": 0, "dim_capsule": 4}, "num_capsules"),
        (L.DynamicRoutingCapsules, {"num_capsules": 2, "dim_capsule": 4, "routings": 0}, "routings"),
        (L.AffineGridSampler, {"output_size": (4,)}, "output_size"),
        (L.ScaledWSConv2D, {"filters": 2, "kernel_size": 3, "eps": 0.0}, "eps"),
    ],
)
def test_bad_layer_arguments(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)
