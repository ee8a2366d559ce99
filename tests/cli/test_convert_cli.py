import os
import subprocess
import sys

import numpy as np
import pytest

from tfrobust._keras import keras


def run_cli(*args, timeout=300):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "tfrobust", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory, base_seed):
    from tfrobust import models

    keras.utils.set_random_seed(base_seed)  # module fixture: runs before the per-test seed
    path = tmp_path_factory.mktemp("cli") / "cnn.keras"
    models.small_cnn(width=4, dense_units=8).save(path)
    return path


@pytest.mark.slow
def test_convert_int8_then_export_c(tmp_path, saved_model, fashion_test):
    from tfrobust.tflite_tools import TFLiteModel

    out = tmp_path / "model.tflite"
    res = run_cli("convert", f"--model={saved_model}", "--mode=int8", f"--out={out}",
                  "--dataset=fashion_mnist", "--calibration_size=50", "--batch_size=1")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "wrote" in res.stdout
    lite = TFLiteModel(out)
    assert lite.input_dtype == np.int8 and lite.input_shape == (1, 28, 28, 1)
    keras_pred = keras.models.load_model(saved_model).predict(fashion_test[0][:100], verbose=0).argmax(1)
    # untrained model (seeded by the fixture): measured at seed 0 (--seed): 0.98
    assert np.mean(lite.predict(fashion_test[0][:100]).argmax(1) == keras_pred) >= 0.9

    res = run_cli("export-c", f"--tflite={out}", f"--out={tmp_path / 'c' / 'net'}", "--name=net_model")
    assert res.returncode == 0, res.stderr[-2000:]
    header = (tmp_path / "c" / "net.h").read_text()
    assert "net_model_arena_size" in header and f"{out.stat().st_size:,} bytes" in res.stdout
    assert "alignas(16)" in (tmp_path / "c" / "net.cc").read_text()


@pytest.mark.parametrize("args, fragment", [
    (["convert", "--model=m.keras", "--mode=int4", "--out=x"], "mode"),
    (["convert", "--model=m.keras", "--mode=int8", "--out=x"], "dataset"),
    (["convert", "--model=m.keras"], "out"),
    (["export-c", "--tflite=m.tflite", "--out=x", "--name=1x"], "name"),
])
def test_bad_flags_exit_2_with_one_line(args, fragment):
    res = run_cli(*args, timeout=120)
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.startswith("tfrobust: error")]
    assert len(lines) == 1 and fragment in lines[0], res.stderr
