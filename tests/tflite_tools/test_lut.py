"""TFLite Micro LUT weight compression: smaller kernels in the file, bit-identical TFLM outputs."""

import json
import os
import subprocess
import sys

import pytest

from tfrobust import utils
from tfrobust._keras import keras
from tfrobust.compression import cluster, quantize, strip
from tfrobust.tflite_tools import (
    compress_lut,
    convert,
    kernel_stats,
    lut_parity,
    model_report,
    report_markdown,
)


def _compile(model):
    model.compile(optimizer=keras.optimizers.Adam(2e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _cqat_int8(model, data, k=16):
    """Train briefly, cluster to k values, keep them through QAT (CQAT), convert to batch-1 int8."""
    utils.set_seed(0)
    x, y = data[0][:512], data[1][:512]
    _compile(model).fit(x, y, batch_size=64, epochs=1, verbose=0)
    clustered = _compile(cluster(model, k))
    clustered.fit(x, y, batch_size=64, epochs=1, verbose=0)
    qat = _compile(quantize(strip(clustered), preserve="clusters"))
    qat.fit(x[:256], y[:256], batch_size=32, epochs=1, verbose=0)
    return convert(qat, "int8", x[:100], batch_size=1)


@pytest.fixture(scope="module")
def mlp_int8(fashion_train):
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(name="flat"),
                              keras.layers.Dense(64, activation="relu", name="fc1"),
                              keras.layers.Dense(10, name="logits")], name="mlp")
    return _cqat_int8(model, fashion_train)


@pytest.fixture(scope="module")
def cnn_int8(fashion_train):
    inp = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv1")(inp)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv2")(x)
    x = keras.layers.Flatten(name="flat")(x)
    out = keras.layers.Dense(10, name="logits")(x)
    return _cqat_int8(keras.Model(inp, out, name="cnn"), fashion_train)


def test_lut_16_values_per_tensor_halves_weight_bytes_and_is_bit_exact_in_tflm(mlp_int8, fashion_test):
    small = compress_lut(mlp_int8, bits=4)  # QAT quantizes Dense kernels per tensor: one table each
    kernels = kernel_stats(small)
    assert [(k.layer, k.lut_bits) for k in kernels] == [("fc1", 4), ("logits", 4)]
    assert all(k.unique_values <= 16 for k in kernels)
    parity = lut_parity(mlp_int8, small, fashion_test[0][:32])
    assert parity["identical"] and parity["max_abs_diff"] == 0.0
    assert parity["compressed_weight_bytes"] <= 0.55 * parity["weight_bytes"]
    assert parity["compressed_file_bytes"] == len(small) < len(mlp_int8)


def test_lut_decoded_kernels_match_the_uncompressed_file(cnn_int8):
    small = compress_lut(cnn_int8, bits=4)
    before, after = kernel_stats(cnn_int8), kernel_stats(small)
    for b, a in zip(before, after, strict=True):
        assert (a.layer, a.shape, a.sparsity, a.unique_values, a.max_unique_per_channel) == \
            (b.layer, b.shape, b.sparsity, b.unique_values, b.max_unique_per_channel)
        if a.lut_bits is not None:
            assert a.nbytes < b.nbytes


def test_lut_per_channel_quantized_convs_get_one_table_per_channel(cnn_int8, fashion_test):
    conv = [k for k in kernel_stats(cnn_int8) if k.layer == "conv2"][0]
    assert conv.unique_values > 16 >= conv.max_unique_per_channel  # one scale per output channel
    small = compress_lut(cnn_int8, bits=4)
    assert [k.lut_bits for k in kernel_stats(small) if k.layer == "conv2"] == [4]
    assert lut_parity(cnn_int8, small, fashion_test[0][:16])["identical"]


def _clustered_float_model():
    """Clustered without fine-tuning and converted post-training: Dense kernels are per-channel."""
    from tfrobust import models

    utils.set_seed(0)
    return strip(cluster(models.small_cnn(width=4, dense_units=8), 16))


def test_lut_post_training_int8_of_a_clustered_model(calibration, fashion_test):
    plain = convert(_clustered_float_model(), "int8", calibration[:50], batch_size=1)
    fc1 = [k for k in kernel_stats(plain) if k.layer == "fc1"][0]
    assert fc1.max_unique_per_channel <= 16  # post-training int8 quantizes it per channel
    small = compress_lut(plain, bits=4)
    assert lut_parity(plain, small, fashion_test[0][:16])["identical"]


@pytest.mark.slow
def test_convert_cli_lut_bits(tmp_path):
    path = tmp_path / "clustered.keras"
    _clustered_float_model().save(path)
    out, report = tmp_path / "m.tflite", tmp_path / "m.json"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    res = subprocess.run([sys.executable, "-m", "tfrobust", "convert", f"--model={path}", "--mode=int8",
                          "--dataset=fashion_mnist", "--calibration_size=50", "--batch_size=1",
                          "--lut_bits=4", f"--out={out}", f"--report={report}"],
                         capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "TFLite Micro outputs identical on 20 images" in res.stdout
    rep = json.loads(report.read_text())
    assert rep["lut_bits"] == 4 and rep["size_bytes"] == out.stat().st_size
    assert any(k["lut_bits"] for k in rep["kernels"])


def test_lut_report_reads_the_compressed_file(mlp_int8):
    small = compress_lut(mlp_int8, bits=4)
    rep = model_report(small, latency=True, tflm=True)
    assert rep["latency_ms"] is None  # LiteRT cannot run TFLM_DECODE
    assert rep["input"]["dtype"] == "int8" and rep["input"]["shape"] == [1, 28, 28, 1]
    assert rep["tflm"]["supported"] and rep["tflm"]["arena_size"] > 0
    assert rep["op_counts"]["TFLM_DECODE"] == 2
    assert "| LUT index bits |" in report_markdown(rep)


def test_lut_refuses_unclustered_kernels_naming_the_layer(calibration):
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(name="flat"),
                              keras.layers.Dense(32, name="dense_a"), keras.layers.Dense(10, name="out")])
    data = convert(model, "int8", calibration[:20], batch_size=1)
    with pytest.raises(ValueError, match="'dense_a' has .* distinct values.*preserve='clusters'"):
        compress_lut(data, bits=4)


def test_lut_refuses_a_compressed_model(mlp_int8):
    with pytest.raises(ValueError, match="already LUT-compressed"):
        compress_lut(compress_lut(mlp_int8), bits=4)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"bits": 0}, ValueError, "bits"), ({"bits": 8}, ValueError, "bits"),
    ({"bits": 2.5}, TypeError, "bits"), ({"min_saving": -1}, ValueError, "min_saving"),
])
def test_lut_bad_arguments(mlp_int8, kwargs, error, match):
    with pytest.raises(error, match=match):
        compress_lut(mlp_int8, **kwargs)


def test_lut_refuses_bytes_that_are_not_a_tflite():
    with pytest.raises(TypeError, match="model_bytes"):
        compress_lut(b"not a model")
