import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tfrobust import models
from tfrobust._keras import keras


def run_cli(*args, timeout=600):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "tfrobust", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture(scope="module")
def trained_lenet(tmp_path_factory, fashion_train, base_seed):
    x, y = fashion_train[0][:1024], fashion_train[1][:1024]
    keras.utils.set_random_seed(base_seed)  # module fixture: runs before the per-test seed
    model = models.lenet_300_100()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=128, epochs=1, verbose=0)
    path = tmp_path_factory.mktemp("cli") / "lenet.keras"
    model.save(path)
    return path


@pytest.mark.slow
def test_compress_prune_writes_sparse_model_and_before_after_report(tmp_path, trained_lenet):
    out = tmp_path / "pruned"
    res = run_cli("compress", f"--model={trained_lenet}", "--method=prune", "--sparsity=0.75", "--epochs=1",
                  "--train_subset=256", "--test_subset=64", f"--out={out}")
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["method"] == "prune"
    ev = report["evaluation"]
    assert 0 <= ev["before"]["accuracy"] <= 1 and 0 <= ev["after"]["accuracy"] <= 1
    assert ev["after"]["robust_accuracy"] is not None  # tfrobust.evaluation, fast preset
    assert ev["after"]["robust_accuracy"] <= ev["after"]["accuracy"]
    model = keras.models.load_model(out / "model.keras")
    for name in ("fc1", "fc2", "logits"):
        assert np.mean(model.get_layer(name).kernel.numpy() == 0) == pytest.approx(0.75, abs=0.01)
    assert report["size"]["model.keras"]["wrapped_layers"] == []


@pytest.mark.slow
def test_compress_deep_compression_writes_a_decodable_stream(tmp_path, trained_lenet):
    from tfrobust.compression import decode_stream

    out = tmp_path / "dc"
    res = run_cli("compress", f"--model={trained_lenet}", "--method=deep_compression", "--sparsity=0.9",
                  "--epochs=1", "--train_subset=256", "--test_subset=64", "--norobust", f"--out={out}")
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    stream = (out / "model.tfrdc").read_bytes()
    assert report["size"]["model.tfrdc_bytes"] == len(stream)
    model = keras.models.load_model(out / "model.keras")
    for name, weights in decode_stream(stream).items():
        for got, want in zip(weights, model.get_layer(name).get_weights()):
            np.testing.assert_array_equal(got, want)
    assert report["evaluation"]["after"]["robust_accuracy"] is None
    assert "encoded:" in res.stdout


@pytest.mark.parametrize("args, fragment", [
    (["compress", "--model=m.keras", "--method=squeeze", "--out=x"], "method"),
])
def test_bad_flags_exit_non_zero_with_one_line(args, fragment):
    res = run_cli(*args, timeout=120)
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.startswith("tfrobust: error")]
    assert len(lines) == 1 and fragment in lines[0], res.stderr

