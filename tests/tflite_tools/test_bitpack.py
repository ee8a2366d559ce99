import shutil

import numpy as np
import pytest
import tensorflow as tf

from tfrobust._keras import keras
from tfrobust.data import as_tf_dataset
from tfrobust.layers import BinaryConv2D, BinaryDense
from tfrobust.tflite_tools import export_binary_c, generate_c, pack_bits, run_on_host, unpack_bits

L = keras.layers

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
CFLAGS = ("-std=c99", "-O2", "-Wall", "-Werror")


def np_sign(x):
    return np.where(x >= 0, 1, -1).astype(np.int64)


def as_pixels(x):
    return np.round(x * 255).astype(np.uint8)


def run_keras(model, x):
    """Eager inference (cheaper than ``predict``'s tracing for a few hundred images)."""
    return np.asarray(model(tf.constant(x), training=False))


def keras_last_preact(model, pixels):
    """The last binary layer's integer pre-activation from Keras: sign(its input) . sign(W)."""
    last = [layer for layer in model.layers if isinstance(layer, (BinaryDense, BinaryConv2D))][-1]
    probe = keras.Model(model.inputs, last.input)
    h = run_keras(probe, pixels.astype("float32") / 255.0)
    return np_sign(h.reshape(len(h), -1)) @ np_sign(last.kernel.numpy())


def train(model, data, epochs):
    x, y = data
    tf.random.set_seed(0)
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(as_tf_dataset(x, y, batch_size=64, shuffle=True, seed=0), epochs=epochs, verbose=0)
    return model


@pytest.fixture(scope="module")
def data():
    from tfrobust.data import load_dataset

    x, y = load_dataset("fashion_mnist", "train", limit=3000, download=False)
    xt, yt = load_dataset("fashion_mnist", "test", limit=1000, download=False)
    return (x, y), (as_pixels(xt), yt)


@pytest.fixture(scope="module")
def mlp(data, base_seed):
    keras.utils.set_random_seed(base_seed)  # module fixture: runs before the per-test seed
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        L.Flatten(),
        BinaryDense(256, mode="bwn", use_bias=False),
        L.BatchNormalization(momentum=0.9),
        BinaryDense(256, mode="bwn", binary_inputs=True, use_bias=False),
        L.BatchNormalization(momentum=0.9),
        BinaryDense(10, mode="binaryconnect", binary_inputs=True),
        L.BatchNormalization(momentum=0.9),
    ])
    return train(model, data[0], epochs=2)


def test_pack_unpack_round_trip_and_popcount_identity(rng):
    for n in (1, 31, 32, 33, 100):
        a = np.where(rng.random((5, n)) < 0.5, -1, 1)
        b = np.where(rng.random((5, n)) < 0.5, -1, 1)
        pa, pb = pack_bits(a), pack_bits(b)
        assert pa.dtype == np.uint32 and pa.shape == (5, -(-n // 32))
        np.testing.assert_array_equal(unpack_bits(pa, n), a)
        popcount = np.array([sum(bin(int(v)).count("1") for v in row) for row in pa ^ pb])
        np.testing.assert_array_equal(n - 2 * popcount, np.sum(a * b, axis=1))


def test_pack_bits_rejects_non_binary_values():
    with pytest.raises(ValueError, match="signs"):
        pack_bits(np.array([1, 0, -1]))
    with pytest.raises(ValueError, match="`n`"):
        unpack_bits(np.zeros(2, np.uint32), 65)


def test_mlp_c_matches_keras_exactly_on_the_integer_path(mlp, data):
    pixels, labels = data[1]
    prog = generate_c(mlp, name="fmnist_mlp")
    assert prog.integer_preact
    run = run_on_host(prog, pixels, cflags=CFLAGS)
    logits = run_keras(mlp, pixels.astype("float32") / 255.0)
    np.testing.assert_array_equal(run.preact, keras_last_preact(mlp, pixels))
    np.testing.assert_array_equal(run.argmax, logits.argmax(axis=1))
    np.testing.assert_allclose(run.logits, logits, rtol=1e-4, atol=1e-4)
    assert np.mean(run.argmax == labels) > 0.7  # measured over seeds 0-1 (--seed): 0.77, 0.789
    # 1 bit per weight: at most 1/25 of the float model's weight bytes, thresholds included.
    assert prog.report["ratio"] <= 1 / 25
    assert prog.report["packed_weight_bytes"] == 4 * (784 * 256 // 32 + 256 * 8 + 10 * 8)


def test_portable_popcount_gives_the_same_result(mlp, data):
    pixels = data[1][0][:200]
    prog = generate_c(mlp, name="fmnist_mlp")
    a = run_on_host(prog, pixels, cflags=CFLAGS)
    b = run_on_host(prog, pixels, cflags=(*CFLAGS, "-DTFR_PORTABLE_POPCOUNT"))
    np.testing.assert_array_equal(a.preact, b.preact)


def test_float_input_path_agrees_with_keras_except_at_first_layer_ties(mlp, data):
    pixels = data[1][0][:300]
    x = pixels.astype("float32") / 255.0
    prog = generate_c(mlp, name="mlp_f32", input_dtype="float32")
    assert prog.integer_preact  # only the first layer sums floats; later layers are XNOR/popcount
    run = run_on_host(prog, x, cflags=CFLAGS)
    logits = run_keras(mlp, x)
    # C sums the first layer's floats in another order than Keras, so a unit whose BatchNorm
    # input is within the two sums' rounding error (bounded by n * 2^-24 * sum_i |x_i w_ij|
    # each) of its threshold may take the other sign. Nothing else may differ.
    dense, bn = mlp.layers[1], mlp.layers[2]
    flat = x.reshape(len(x), -1).astype(np.float64)
    bound = 2 * flat.shape[1] * 2.0 ** -24 * (flat @ np.abs(dense.binary_kernel(False).numpy()))
    gain = np.abs(bn.gamma.numpy()) / np.sqrt(bn.moving_variance.numpy() + bn.epsilon)
    bn1 = run_keras(keras.Model(mlp.inputs, bn.output), x)
    tie = np.any(np.abs(bn1) <= bound * gain, axis=1)
    # measured over seeds 0-1: 0.21, 0.23 of the images sit on a tie
    assert tie.mean() < 0.5, f"{tie.mean():.0%} of the images sit on a tie: the check would be empty"
    np.testing.assert_array_equal(run.preact[~tie], keras_last_preact(mlp, pixels)[~tie])
    np.testing.assert_array_equal(run.argmax[~tie], logits.argmax(axis=1)[~tie])


def test_cnn_with_pooling_matches_keras_exactly_also_with_negative_batchnorm_scales(data):
    # Untrained binary weights; BatchNorm statistics calibrated on real images (momentum 0: one
    # training-mode call sets them), so thresholds sit where trained ones do. Training is covered
    # by the MLP test; exactness does not depend on it.
    tf.random.set_seed(1)
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        BinaryConv2D(16, 3, padding="same", mode="bwn", use_bias=False),
        L.MaxPooling2D(2),
        L.BatchNormalization(momentum=0.0),
        BinaryConv2D(32, 3, padding="same", mode="bwn", binary_inputs=True),
        L.BatchNormalization(momentum=0.0),
        L.MaxPooling2D(2),
        BinaryConv2D(32, 3, strides=2, mode="binaryconnect", binary_inputs=True, use_bias=False),
        L.BatchNormalization(momentum=0.0),
        L.Flatten(),
        BinaryDense(10, mode="bwn", binary_inputs=True),
    ])
    model(data[0][0][:1000], training=True)
    pixels = data[1][0][:500]
    for flip in (False, True):
        if flip:  # negative BN scales turn max-pooling into min-pooling and flip thresholds
            for layer in model.layers:
                if isinstance(layer, L.BatchNormalization):
                    gamma = layer.gamma.numpy()
                    gamma[::2] *= -1
                    layer.gamma.assign(gamma)
        prog = generate_c(model, name="fmnist_cnn")
        run = run_on_host(prog, pixels, cflags=CFLAGS)
        logits = run_keras(model, pixels.astype("float32") / 255.0)
        np.testing.assert_array_equal(run.preact, keras_last_preact(model, pixels))
        np.testing.assert_allclose(run.logits, logits, rtol=1e-4, atol=1e-4)
        # The integer pre-activations are equal, so the float logits differ only by rounding of the
        # last layer's scale and bias (<= 1e-4 above): the arg-max must agree wherever the top two
        # logits are further apart than that (an untrained net has exact integer-sum ties).
        top2 = np.sort(logits, axis=1)[:, -2:]
        clear = top2[:, 1] - top2[:, 0] > 2e-3
        assert clear.mean() > 0.8, f"only {clear.mean():.0%} of the images have a clear top class"
        np.testing.assert_array_equal(run.argmax[clear], logits.argmax(axis=1)[clear])
    assert prog.report["kernel_ratio"] < 1 / 25
    # Sums, pooling and thresholds are fused: only bit maps (and the 10 logit sums) are stored.
    assert prog.report["ram_bytes"] == 4 * (14 * 14 * 1 + 7 * 7 * 1 + 10)


def test_pooled_last_layer_and_random_batchnorm_match_keras(rng):
    model = keras.Sequential([
        keras.Input((6, 6, 2)),
        BinaryConv2D(40, 3, mode="bwn", use_bias=False),
        L.BatchNormalization(),
        BinaryConv2D(10, 3, mode="binaryconnect", binary_inputs=True, use_bias=False),
        L.MaxPooling2D(2),
        L.Flatten(),
        L.BatchNormalization(),
    ])
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.normal(size=n), rng.normal(size=n), rng.normal(scale=20, size=n),
                               rng.uniform(1, 400, size=n)])
    pixels = rng.integers(0, 256, size=(300, 6, 6, 2)).astype(np.uint8)
    prog = generate_c(model, name="tiny")
    run = run_on_host(prog, pixels, cflags=CFLAGS)
    x = pixels.astype("float32") / 255.0
    pooled = run_keras(keras.Model(model.inputs, model.get_layer(index=3).output), x)
    np.testing.assert_array_equal(run.preact, pooled.reshape(300, 10))  # binaryconnect: the sums are d
    logits = run_keras(model, x)
    np.testing.assert_array_equal(run.argmax, logits.argmax(axis=1))
    np.testing.assert_allclose(run.logits, logits, rtol=1e-4, atol=1e-3)


def test_export_writes_header_and_source(mlp, tmp_path):
    prog = export_binary_c(mlp, tmp_path / "out", name="net")
    header = (tmp_path / "out" / "net.h").read_text()
    assert "int net_predict(const uint8_t *input, float *logits, int32_t *preact);" in header
    assert "#define NET_NUM_CLASSES 10" in header
    assert (tmp_path / "out" / "net.c").read_text() == prog.source


@pytest.mark.parametrize("layers,match", [
    ([L.Flatten(), BinaryDense(8, mode="xnor"), BinaryDense(2, binary_inputs=True)], "xnor"),
    ([L.Flatten(), BinaryDense(8, activation="relu"), BinaryDense(2, binary_inputs=True)], "activation"),
    ([L.Flatten(), BinaryDense(8), L.Dense(2)], "dense"),
    ([L.Flatten(), BinaryDense(8), BinaryDense(2)], "binary_inputs=True"),
])
def test_unsupported_models_are_refused_naming_the_layer(layers, match):
    model = keras.Sequential([keras.Input((4, 4, 1)), *layers])
    with pytest.raises(ValueError, match=match):
        generate_c(model)


def test_bad_arguments_raise(mlp):
    with pytest.raises(ValueError, match="name"):
        generate_c(mlp, name="not an identifier")
    with pytest.raises(ValueError, match="input_dtype"):
        generate_c(mlp, input_dtype="int16")
    with pytest.raises(ValueError, match="input_scale"):
        generate_c(mlp, input_scale=0)
