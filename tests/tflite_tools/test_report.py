import gzip

import numpy as np

from tfrobust._keras import keras
from tfrobust.tflite_tools import TFLiteModel, convert, model_report, report_markdown


def _half_zero_model():
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(name="flat"),
                              keras.layers.Dense(64, name="fc"), keras.layers.Dense(10, name="out")],
                             name="sparse_net")
    kernel, bias = model.get_layer("fc").get_weights()
    kernel[:, ::2] = 0.0  # exactly half of the kernel is zero
    model.get_layer("fc").set_weights([kernel, bias])
    return model


def test_report_sizes_tensors_ops_and_latency():
    data = convert(_half_zero_model(), "float", batch_size=1)
    rep = model_report(data, repeats=5)
    assert rep["size_bytes"] == len(data)
    assert rep["gzip_bytes"] == len(gzip.compress(data, compresslevel=9, mtime=0)) < len(data)
    lite = TFLiteModel(data)
    ops = [op["op_name"] for op in lite._interp._get_ops_details() if op["op_name"] != "DELEGATE"]
    assert rep["ops"] == ops == ["RESHAPE", "FULLY_CONNECTED", "FULLY_CONNECTED"]
    fc = [t for t in rep["tensors"] if t["constant"] and t["shape"] == [64, 784]]
    assert len(fc) == 1 and fc[0]["dtype"] == "FLOAT32" and fc[0]["bytes"] == 64 * 784 * 4
    assert fc[0]["sparsity"] == 0.5
    assert rep["weight_bytes"] >= (64 * 784 + 10 * 64) * 4  # kernels (zero biases may be dropped)
    assert set(rep["latency_ms"]) == {"1", "2"}
    assert all(v["median_ms"] > 0 and v["repeats"] == 5 for v in rep["latency_ms"].values())
    assert rep["tflm"]["supported"] and rep["tflm"]["arena_size"] > 0
    md = report_markdown(rep, title="sparse")
    assert md.startswith("### sparse") and "| gzipped |" in md and "0.500" in md


def test_int8_report_counts_zero_points_as_zeros(calibration):
    model = _half_zero_model()
    data = convert(model, "int8", calibration[:50], batch_size=1)
    rep = model_report(data, latency=False, tflm=False)
    assert rep["input"]["dtype"] == "int8" and rep["input"]["scale"] > 0
    fc = [t for t in rep["tensors"] if t["constant"] and t["shape"] == [64, 784]]
    assert fc[0]["dtype"] == "INT8" and fc[0]["per_channel"]
    # Per-channel symmetric int8 keeps exact zeros at q == 0; a few tiny weights may round to 0 too.
    assert 0.5 <= fc[0]["sparsity"] < 0.52
    assert rep["latency_ms"] is None and rep["tflm"] is None
    assert np.isclose(rep["weight_bytes"] / rep["size_bytes"], 1.0, atol=0.05)
