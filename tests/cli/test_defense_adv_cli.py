"""`tfrobust train` and the pipeline's train stage accept --adv with the label-conditioned defenses."""

import json
import os
import subprocess
import sys

import pytest

from tfrobust._keras import keras
from tfrobust.cli import shared as stages


def run_cli(*args, timeout=300):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "tfrobust", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.slow
def test_train_cli_adversarially_trains_cas_with_agc_and_random_erasing(tmp_path):
    out = tmp_path / "cas"
    res = run_cli("train", "--defense=cas", "--adv=pgd", "--adv_steps=2", "--epochs=1", "--train_subset=128",
                  "--test_subset=64", "--batch_size=64", "--agc_clipping=0.04", "--random_erasing=0.5",
                  f"--out={out}")
    assert res.returncode == 0, res.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["trainer"] == "AdversarialTrainer" and metrics["defense"] == "cas"
    assert metrics["agc_clipping"] == 0.04 and metrics["random_erasing"] == 0.5
    assert "adv_accuracy" in metrics["history"] and metrics["robust_accuracy"] is not None
    assert len(keras.models.load_model(out / "model.keras").inputs) == 1  # the inference model


@pytest.mark.parametrize("defense", ["cifs", "pcl"])
def test_pipeline_train_stage_accepts_adv_with_labelled_defenses(defense, tmp_path):
    settings = stages.Settings(defense=defense, adv="fgsm_rs", epochs=1, batch_size=64, train_subset=128)
    result = stages.stage_train(stages.Context(tmp_path, settings))
    assert "adv_accuracy" in result["history"] and 0.0 <= result["test_accuracy"] <= 1.0
    assert (tmp_path / "model.keras").exists()
