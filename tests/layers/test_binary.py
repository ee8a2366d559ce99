import numpy as np
import pytest
import tensorflow as tf

from tfrobust._keras import keras
from tfrobust.layers import (
    BinaryConv2D,
    BinaryDense,
    WeightClip,
    binarize_model,
    bwn_binarize,
    hard_sigmoid,
    ste_sign,
    stochastic_sign,
    xnor_scaling_map,
)
from tfrobust.testing import layer_test


def np_sign(x):
    return np.where(x >= 0, 1.0, -1.0)


def np_conv2d(x, w, stride, padding):
    """Direct NHWC convolution (cross-correlation, Keras' 'same' padding split)."""
    n, h, wd, _ = x.shape
    kh, kw, _, f = w.shape
    if padding == "same":
        oh, ow = -(-h // stride), -(-wd // stride)
        ph, pw = max((oh - 1) * stride + kh - h, 0), max((ow - 1) * stride + kw - wd, 0)
        x = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    else:
        oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
    out = np.zeros((n, oh, ow, f))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]
            out[:, i, j, :] = np.einsum("nhwc,hwcf->nf", patch, w)
    return out


def grad_of(fn, x, upstream):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
        loss = tf.reduce_sum(y * upstream)
    return y.numpy(), tape.gradient(loss, x).numpy()


def test_ste_sign_forward_and_gradient_match_numpy(rng):
    x = np.concatenate([rng.uniform(-2, 2, 200), [0.0, 1.0, -1.0, 1.0001, -1.0001]]).astype("float32")
    g = rng.normal(size=x.shape).astype("float32")
    y, dx = grad_of(ste_sign, x, g)
    np.testing.assert_array_equal(y, np_sign(x))
    np.testing.assert_array_equal(dx, g * (np.abs(x) <= 1.0))
    _, dx2 = grad_of(lambda t: ste_sign(t, clip_value=0.5), x, g)
    np.testing.assert_array_equal(dx2, g * (np.abs(x) <= 0.5))


def test_ste_sign_rejects_bad_clip_value():
    with pytest.raises(ValueError, match="clip_value"):
        ste_sign(tf.ones(3), clip_value=0.0)


def test_stochastic_sign_mean_is_twice_hard_sigmoid_minus_one():
    tf.random.set_seed(0)
    levels = np.array([-1.5, -0.6, -0.2, 0.0, 0.3, 0.8, 1.2], "float32")
    x = np.repeat(levels[None, :], 20000, axis=0)
    y = stochastic_sign(tf.constant(x)).numpy()
    assert set(np.unique(y)) <= {-1.0, 1.0}
    expected = 2 * np.clip((levels + 1) / 2, 0, 1) - 1
    np.testing.assert_allclose(y.mean(axis=0), expected, atol=0.03)
    np.testing.assert_allclose(hard_sigmoid(levels).numpy(), np.clip((levels + 1) / 2, 0, 1))
    # saturated inputs are deterministic
    assert np.all(y[:, 0] == -1) and np.all(y[:, -1] == 1)


def test_stochastic_sign_gradient_is_straight_through(rng):
    x = rng.uniform(-2, 2, 100).astype("float32")
    g = rng.normal(size=x.shape).astype("float32")
    _, dx = grad_of(stochastic_sign, x, g)
    np.testing.assert_array_equal(dx, g * (np.abs(x) <= 1.0))


def test_bwn_binarize_forward_and_gradient_match_numpy(rng):
    w = rng.normal(scale=0.6, size=(3, 3, 4, 5)).astype("float32")
    g = rng.normal(size=w.shape).astype("float32")
    y, dw = grad_of(bwn_binarize, w, g)
    n = 3 * 3 * 4
    alpha = np.abs(w).reshape(n, 5).mean(axis=0)
    np.testing.assert_allclose(y, alpha * np_sign(w), rtol=1e-6)
    # d/dW [alpha(W) sign(W)]: the STE term plus the gradient through alpha = mean |W|.
    ref = g * alpha * (np.abs(w) <= 1) + np.sign(w) / n * (g * np_sign(w)).reshape(n, 5).sum(axis=0)
    np.testing.assert_allclose(dw, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("stride,padding", [(1, "same"), (2, "valid"), (2, "same")])
def test_xnor_scaling_map_matches_numpy(rng, stride, padding):
    x = rng.normal(size=(2, 7, 6, 3)).astype("float32")
    k = xnor_scaling_map(x, (3, 2), stride, padding).numpy()
    a = np.abs(x).mean(axis=-1, keepdims=True)
    ref = np_conv2d(a, np.full((3, 2, 1, 1), 1 / 6), stride, padding)
    np.testing.assert_allclose(k, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["binaryconnect", "bwn", "xnor"])
def test_binary_dense_matches_numpy(rng, mode):
    x = rng.normal(size=(4, 6)).astype("float32")
    layer = BinaryDense(3, mode=mode, bias_initializer="ones")
    y = layer(x).numpy()
    w = layer.kernel.numpy()
    wb = np_sign(w) if mode == "binaryconnect" else np_sign(w) * np.abs(w).mean(axis=0)
    if mode == "xnor":
        ref = (np_sign(x) @ wb) * np.abs(x).mean(axis=1, keepdims=True) + 1.0
    else:
        ref = x @ wb + 1.0
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode,binary_inputs", [("bwn", False), ("bwn", True), ("xnor", True)])
def test_binary_conv2d_matches_numpy(rng, mode, binary_inputs):
    x = rng.normal(size=(2, 6, 5, 3)).astype("float32")
    layer = BinaryConv2D(4, 3, strides=2, padding="same", mode=mode, binary_inputs=binary_inputs,
                         use_bias=False)
    y = layer(x).numpy()
    w = layer.kernel.numpy()
    wb = np_sign(w) * np.abs(w).reshape(-1, 4).mean(axis=0)
    xin = np_sign(x) if binary_inputs else x
    ref = np_conv2d(xin, wb, 2, "same")
    if mode == "xnor":
        ref = ref * np_conv2d(np.abs(x).mean(axis=-1, keepdims=True), np.full((3, 3, 1, 1), 1 / 9), 2, "same")
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


# layer_test takes ~5-10 s per call on the shared CI machine: three calls cover every code path
# (deterministic and stochastic weights, real and binary inputs, the Dense beta and the conv K map).
@pytest.mark.parametrize("kwargs", [
    {"units": 3, "mode": "binaryconnect", "stochastic": True},
    {"units": 3, "mode": "xnor", "activation": "relu"},
])
def test_binary_dense_passes_layer_test(kwargs):
    res = layer_test(BinaryDense, kwargs, input_shape=(4, 5), expected_output_shape=(None, 3),
                     tflite_atol=1e-4)
    assert res.tflite_max_abs_diff is not None


def test_binary_conv2d_passes_layer_test():
    kwargs = {"filters": 3, "kernel_size": (3, 2), "strides": 2, "padding": "same", "mode": "xnor",
              "stochastic": True}
    res = layer_test(BinaryConv2D, kwargs, input_shape=(2, 7, 7, 2), expected_output_shape=(None, 4, 4, 3),
                     tflite_atol=1e-4)
    assert "CONV_2D" in res.tflite_ops


def test_stochastic_binarization_only_in_training():
    tf.random.set_seed(1)
    layer = BinaryDense(64, mode="binaryconnect", stochastic=True, use_bias=False,
                        kernel_initializer=keras.initializers.RandomUniform(-0.5, 0.5))
    x = np.eye(32, dtype="float32")
    inference = [layer(x, training=False).numpy() for _ in range(2)]
    np.testing.assert_array_equal(inference[0], inference[1])
    np.testing.assert_array_equal(inference[0], np_sign(layer.kernel.numpy()))
    train = [layer(x, training=True).numpy() for _ in range(2)]
    assert not np.array_equal(train[0], train[1])
    assert not np.array_equal(layer(x, training=tf.constant(True)).numpy(), inference[0])
    assert layer.stochastic is False  # deterministic at inference: no EOT needed


def test_latent_weights_stay_clipped_after_large_updates(rng):
    inp = keras.Input((8,))
    model = keras.Model(inp, BinaryDense(4, mode="bwn")(inp))
    model.compile(keras.optimizers.SGD(50.0), loss="mse")
    model.fit(rng.normal(size=(32, 8)), rng.normal(size=(32, 4)), epochs=2, verbose=0)
    kernel = model.layers[-1].kernel.numpy()
    assert np.max(np.abs(kernel)) <= 1.0
    assert np.max(np.abs(kernel)) == 1.0  # the clip was actually active
    assert WeightClip(0.5)(tf.constant([2.0, -3.0])).numpy().tolist() == [0.5, -0.5]


@pytest.mark.parametrize("cls,kwargs,match", [
    (BinaryDense, {"units": 0}, "units"),
    (BinaryDense, {"units": 2, "mode": "xor"}, "mode"),
    (BinaryDense, {"units": 2, "mode": "xnor", "binary_inputs": False}, "binary_inputs"),
    (BinaryConv2D, {"filters": 2, "kernel_size": 0}, "kernel_size"),
    (BinaryConv2D, {"filters": 2, "kernel_size": 3, "padding": "full"}, "padding"),
    (BinaryConv2D, {"filters": 2, "kernel_size": 3, "strides": (1,)}, "strides"),
])
def test_bad_arguments_raise_value_error(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_bad_argument_types_raise_type_error():
    with pytest.raises(TypeError, match="stochastic"):
        BinaryDense(2, stochastic="yes")
    with pytest.raises(TypeError, match="binary_inputs"):
        BinaryDense(2, binary_inputs=1)


def test_binarize_model_replaces_dense_and_conv_and_keeps_excluded_layers(rng):
    from tfrobust.models import small_cnn

    model = small_cnn(width=4, dense_units=8)
    twin = binarize_model(model, "bwn", exclude=("conv1", "logits"))
    kinds = {layer.name: type(layer).__name__ for layer in twin.layers}
    assert kinds["conv1"] == "Conv2D" and kinds["logits"] == "Dense"
    assert kinds["conv2"] == "BinaryConv2D" and kinds["fc1"] == "BinaryDense"
    conv2 = twin.get_layer("conv2")
    assert conv2.padding == "same" and conv2.activation is keras.activations.relu
    latent = np.clip(model.get_layer("conv2").kernel.numpy(), -1, 1)
    np.testing.assert_array_equal(conv2.kernel.numpy(), latent)
    # The twin computes conv2 with alpha * sign(W): check one layer's output against NumPy.
    x = rng.uniform(size=(2, 28, 28, 1)).astype("float32")
    h = keras.Model(twin.inputs, twin.get_layer("pool1").output)(x).numpy()
    w = conv2.kernel.numpy()
    ref = np.maximum(np_conv2d(h, np_sign(w) * np.abs(w).reshape(-1, 8).mean(axis=0), 1, "same")
                     + conv2.bias.numpy(), 0)
    np.testing.assert_allclose(keras.Model(twin.inputs, conv2.output)(x).numpy(), ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="exclude"):
        binarize_model(model, exclude=("nope",))
    with pytest.raises(ValueError, match="mode"):
        binarize_model(model, mode="ternary")
