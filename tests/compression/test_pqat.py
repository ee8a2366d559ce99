"""Collaborative QAT: pruning masks and clusters survive quantize(preserve=...) and conversion,
measured on the deployed .tflite."""

import numpy as np
import pytest
from conftest import compile_logits, tiny_cnn

from tfrobust import utils
from tfrobust.compression import cluster, prune, pruning_callbacks, quantize, strip
from tfrobust.tflite_tools import TFLiteModel, convert, kernel_stats

LAYERS = ["conv1", "conv2", "fc1", "logits"]


def _trained(small_data):
    utils.set_seed(0)
    x, y = small_data
    model = compile_logits(tiny_cnn())
    model.fit(x, y, batch_size=64, epochs=1, verbose=0)
    return model


def _pruned(small_data, sparsity=0.5):
    x, y = small_data
    pruned = compile_logits(prune(_trained(small_data), sparsity, schedule="constant", frequency=1))
    pruned.fit(x, y, batch_size=64, epochs=1, verbose=0, callbacks=pruning_callbacks())
    return strip(pruned)


def _qat_tflite(model, small_data, preserve):
    x, y = small_data
    qat = compile_logits(quantize(model, preserve=preserve))
    qat.fit(x[:256], y[:256], batch_size=32, epochs=1, verbose=0)  # 8 steps
    return qat, convert(qat, "int8", x[:100])


@pytest.fixture(scope="module")
def pruned(small_data):
    return _pruned(small_data)


def test_pqat_keeps_pruning_masks_through_int8_conversion(pruned, small_data):
    qat, data = _qat_tflite(pruned, small_data, "sparsity")
    kernels = kernel_stats(data)
    assert [k.layer for k in kernels] == LAYERS
    for k in kernels:  # zeros read from the deployed int8 file, per layer
        assert k.dtype == "INT8"
        assert abs(k.sparsity - 0.5) <= 0.01, (k.layer, k.sparsity)
    # TFLite parity: the int8 file computes what the QAT model computes.
    x = small_data[0][:200]
    keras_pred = np.argmax(qat.predict(x, verbose=0), 1)
    lite_pred = np.argmax(np.asarray(TFLiteModel(data)(x)), 1)
    assert np.mean(keras_pred == lite_pred) >= 0.95


def test_plain_qat_regrows_pruned_weights(pruned, small_data):
    _, data = _qat_tflite(pruned, small_data, None)
    assert min(k.sparsity for k in kernel_stats(data)) < 0.45  # why preserve="sparsity" exists


def test_cqat_keeps_at_most_k_values_per_kernel(small_data):
    x, y = small_data
    clustered = compile_logits(cluster(_trained(small_data), 16))
    clustered.fit(x, y, batch_size=64, epochs=1, verbose=0)
    _, data = _qat_tflite(strip(clustered), small_data, "clusters")
    for k in kernel_stats(data):
        # conv kernels are per-channel int8: one shared float value maps to one int8 value per channel
        limit = k.max_unique_per_channel if k.op == "CONV_2D" else k.unique_values
        assert limit <= 16, (k.layer, k.unique_values, k.max_unique_per_channel)


def test_pcqat_keeps_zeros_and_clusters(pruned, small_data):
    x, y = small_data
    clustered = compile_logits(cluster(pruned, 8, preserve_sparsity=True))
    clustered.fit(x, y, batch_size=64, epochs=1, verbose=0)
    _, data = _qat_tflite(strip(clustered), small_data, "sparsity_and_clusters")
    for k in kernel_stats(data):
        assert k.sparsity >= 0.49, (k.layer, k.sparsity)
        assert (k.max_unique_per_channel if k.op == "CONV_2D" else k.unique_values) <= 8 + 1  # + zero


def test_quantize_preserve_rejects_unknown_value():
    with pytest.raises(ValueError, match="preserve"):
        quantize(tiny_cnn(), preserve="masks")


def test_quantize_preserve_refuses_unstripped_model():
    with pytest.raises(ValueError, match="strip"):
        quantize(prune(tiny_cnn(), 0.5), preserve="sparsity")


def test_quantize_preserve_clusters_refuses_unclustered_kernel():
    with pytest.raises(ValueError, match="distinct values"):
        quantize(tiny_cnn(), preserve="clusters")
