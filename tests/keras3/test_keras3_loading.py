"""One loader for every saved format: the Keras that wrote a file loads it (and the CLI uses it)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tfrobust import tflite_tools
from tfrobust._keras import file_format, for_keras3, keras, keras3, load_model
from tfrobust.layers import KWinnersTakeAll


def _keras3_cnn():
    keras3.utils.set_random_seed(0)
    return keras3.Sequential([keras3.Input((28, 28, 1)), keras3.layers.Conv2D(4, 3, strides=2),
                              for_keras3(KWinnersTakeAll)(0.25), keras3.layers.Flatten(),
                              keras3.layers.Dense(10)])


def test_each_format_loads_with_the_keras_that_wrote_it(tmp_path):
    x = np.random.default_rng(0).uniform(size=(2, 28, 28, 1)).astype("float32")
    model3 = _keras3_cnn()
    model2 = keras.Sequential([keras.Input((28, 28, 1)), KWinnersTakeAll(0.25), keras.layers.Flatten()])
    for model, name, which in ((model3, "k3", "keras3"), (model2, "k2", "tf_keras")):
        for suffix in (".keras", ".h5"):
            path = tmp_path / f"{name}{suffix}"
            model.save(path)
            assert file_format(path) == (suffix[1:], which)
            loaded = load_model(path)
            assert isinstance(loaded, keras3.Model if which == "keras3" else keras.Model)
            np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), atol=1e-6)
    model2.save(tmp_path / "sm", save_format="tf")
    assert file_format(tmp_path / "sm") == ("savedmodel", "tf_keras")


def test_unreadable_files_are_refused_naming_the_format(tmp_path):
    model3 = _keras3_cnn()
    (tmp_path / "m.tflite").write_bytes(tflite_tools.convert(model3, "float"))
    with pytest.raises(ValueError, match="tflite file.*TFLiteModel"):
        load_model(tmp_path / "m.tflite")
    model3.export(str(tmp_path / "exported"), verbose=False)
    with pytest.raises(ValueError, match="SavedModel without Keras metadata"):
        load_model(tmp_path / "exported")
    (tmp_path / "notes.keras").write_text("not a model")
    with pytest.raises(ValueError, match="not a Keras model file"):
        load_model(tmp_path / "notes.keras")
    model3.save(tmp_path / "m.keras")
    unregistered = keras3.Sequential([keras3.Input((2,)), keras3.layers.Lambda(lambda t: t * 2)])
    unregistered.save(tmp_path / "lambda.keras")
    with pytest.raises(ValueError, match="keras file written by Keras 3 and keras.models.load_model"):
        load_model(tmp_path / "lambda.keras")  # Keras 3 refuses to deserialize a lambda (safe_mode)


def test_cli_evaluates_a_keras3_file(tmp_path):
    model3 = _keras3_cnn()
    model3.save(tmp_path / "keras3_model.keras")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    res = subprocess.run([sys.executable, "-m", "tfrobust", "evaluate",
                          f"--model={tmp_path / 'keras3_model.keras'}", "--preset=standard",
                          "--eps=0.05", "--steps=2", "--square_queries=10", "--num_examples=16",
                          f"--out={tmp_path / 'eval'}"], capture_output=True, text=True, timeout=600,
                         env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads((tmp_path / "eval" / "robustness.json").read_text())
    assert report["num_examples"] == 16 and report["config"]["preset"] == "standard"
