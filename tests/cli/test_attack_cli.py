import json
import os
import subprocess
import sys

import pytest

from tfrobust import models, utils
from tfrobust._keras import keras


def run_cli(*args, timeout=300):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "tfrobust", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory, fashion_train, base_seed):
    x, y = fashion_train[0][:2000], fashion_train[1][:2000]
    keras.utils.set_random_seed(base_seed)
    model = models.lenet_300_100()
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=1, batch_size=128, verbose=0)
    return utils.atomic_save_model(model, tmp_path_factory.mktemp("m") / "model.keras")


@pytest.mark.slow
def test_attack_and_evaluate_write_json_and_markdown(tmp_path, saved_model):
    out = tmp_path / "attack"
    res = run_cli("attack", f"--model={saved_model}", "--attack=pgd", "--eps=0.05", "--steps=5",
                  "--num_examples=200", f"--out={out}")
    assert res.returncode == 0, res.stderr[-2000:]
    result = json.loads((out / "attack.json").read_text())
    assert result["num_examples"] == 200 and result["config"]["attack"]["steps"] == 5
    assert result["config"]["attack"]["name"] == "pgd" and result["config"]["attack"]["step_size"] is None
    assert result["adversarial_accuracy"] < result["clean_accuracy"]
    assert result["max_linf"] <= 0.05 + 1e-6
    assert "| clean accuracy |" in (out / "attack.md").read_text()

    out = tmp_path / "eval"
    res = run_cli("evaluate", f"--model={saved_model}", "--preset=standard", "--eps=0.05", "--steps=5",
                  "--square_queries=100", "--num_examples=200", f"--out={out}")
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads((out / "robustness.json").read_text())
    assert report["config"]["preset"] == "standard"
    assert list(report["per_attack"]) == ["apgd-ce", "apgd-dlr", "apgd-t", "square"]
    assert report["robust_accuracy"] <= result["adversarial_accuracy"] + 0.05
    assert "### Robust accuracy" in (out / "robustness.md").read_text()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # atomic writes left no temp file


@pytest.mark.parametrize("args, fragment", [
    (["attack", "--model=m.keras", "--out=x"], "eps"),
    (["attack", "--model=m.keras", "--eps=0.1", "--attack=cw", "--out=x"], "attack"),
    (["evaluate", "--model=m.keras", "--eps=-1", "--out=x"], "eps"),
])
def test_bad_flags_exit_2_with_one_line(args, fragment):
    res = run_cli(*args, timeout=120)
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.startswith("tfrobust: error")]
    assert len(lines) == 1 and fragment in lines[0], res.stderr


def test_missing_model_is_one_line_error(tmp_path):
    res = run_cli("evaluate", f"--model={tmp_path / 'nope.keras'}", f"--out={tmp_path}", timeout=120)
    assert res.returncode == 1
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.startswith("tfrobust: error")]
    assert len(lines) == 1 and "model" in lines[0] and "nope.keras" in lines[0]
