"""`tfrobust proactive` / `tfrobust feedback` with `--defense`: CAS, CIFS and PCL train their pair."""

import json
import os
import subprocess
import sys

import pytest

from tfrobust._keras import keras
from tfrobust.cli import feedback, proactive


def _read(out, name):
    assert (out / f"{name}.md").read_text().startswith("###")
    return json.loads((out / f"{name}.json").read_text())


def test_proactive_trains_a_cas_cnn_through_its_label_conditioned_path(tmp_path):
    out = tmp_path / "pro"
    result = proactive.run(proactive.Config(out=str(out), defense="cas", train_subset=256, test_subset=64,
                                            rounds=1, steps=2, batch_size=64))
    saved = _read(out, "proactive")
    assert saved["rounds"] == result["rounds"] and [r["round"] for r in saved["rounds"]] == [0, 1]
    assert saved["config"]["defense"] == "cas" and "defense cas" in (out / "proactive.md").read_text()
    for r in saved["rounds"]:  # round 0 trains the fresh pair too (not a saved --model)
        assert r["train_loss"] is not None and 0.0 <= r["clean_accuracy"] <= 1.0
        assert 0.0 <= r["attack_accuracy"] <= 1.0 and 0.0 <= r["holdout_accuracy"] <= 1.0
    saved_model = keras.models.load_model(out / "model.keras")
    assert len(saved_model.inputs) == 1 and saved_model.get_layer("cas") is not None  # the inference model


def test_feedback_trains_a_pcl_cnn_through_its_label_conditioned_path(tmp_path):
    out = tmp_path / "fb"
    feedback.run(feedback.Config(out=str(out), defense="pcl", train_subset=256, test_subset=64, rounds=1,
                                 eval_attack="fgsm", budget=40, probe_size=4, batch_size=64))
    saved = _read(out, "feedback")
    last = saved["rounds"][-1]
    assert saved["config"]["defense"] == "pcl" and sum(last["allocation"]) == 40
    assert 0.0 <= last["robust_accuracy"] <= 1.0 and len(last["per_class_distance"]) == 10
    assert len(keras.models.load_model(out / "model.keras").inputs) == 1


@pytest.mark.parametrize("command", [proactive, feedback])
def test_a_defense_cannot_continue_a_saved_model(command):
    with pytest.raises(ValueError, match="cannot continue a saved --model"):
        command.Config(out="x", model="m.keras", defense="cifs")
    with pytest.raises(ValueError, match="defense"):
        command.Config(out="x", defense="magic")


@pytest.mark.parametrize("command", ["proactive", "feedback"])
def test_model_with_a_labelled_defense_exits_2_with_one_line(command, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TFROBUST_TF_LOGS"}
    launch = "import tfrobust_launch; tfrobust_launch.main()"
    res = subprocess.run([sys.executable, "-c", launch, command, f"--out={tmp_path}", "--model=m.keras",
                          "--defense=pcl"], capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 2, res.stderr[-2000:]
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"tfrobust: error: {command}:"), res.stderr
    assert "--defense" in lines[0] and "--model" in lines[0]
