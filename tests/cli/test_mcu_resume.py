"""``tfrobust pipeline --target=mcu --resume``: finished stages are not recomputed, same figures."""

import json
import os
import subprocess
import sys

import pytest

# A narrow model, two training steps, a tiny evaluation: the stages, not the figures, are tested
# (three pipeline processes, about 50 CPU-seconds in all, most of it TensorFlow's start-up and tracing).
TINY = ["--target=mcu", "--width=0.25", "--train_subset=128", "--epochs=1", "--batch_size=64",
        "--eval_subset=8", "--apgd_steps=1", "--square_queries=4", "--guard_examples=16", "--seed=1"]
STAGES = ["choose", "train", "compress", "convert", "deploy_eval", "frontier", "export_c", "report"]


def run_cli(*args, timeout=300):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "tfrobust", "pipeline", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("mcu_resume")
    resumed, straight = base / "resumed", base / "straight"
    first = run_cli(*TINY, f"--out={resumed}", "--stop_after=train")
    assert first.returncode == 0, first.stderr[-3000:]
    assert not (resumed / "report.md").exists()
    trained = {name: (resumed / name).stat().st_mtime_ns for name in ("model.keras", "stages/train.json")}
    second = run_cli(*TINY, f"--out={resumed}", "--resume")
    assert second.returncode == 0, second.stderr[-3000:]
    third = run_cli(*TINY, f"--out={straight}")
    assert third.returncode == 0, third.stderr[-3000:]
    return resumed, straight, trained, second


@pytest.mark.slow
def test_mcu_resume_skips_the_finished_stages(runs):
    resumed, _, trained, second = runs
    assert "choose: done earlier, skipped" in second.stdout
    assert "train: done earlier, skipped" in second.stdout
    log = json.loads((resumed / "pipeline_state.json").read_text())["log"]
    assert [e["stage"] for e in log if e["event"] == "ran"] == STAGES
    assert [e["stage"] for e in log if e["event"] == "skipped"] == ["choose", "train"]
    # The trained model was not written again.
    assert {name: (resumed / name).stat().st_mtime_ns for name in trained} == trained


@pytest.mark.slow
def test_mcu_resumed_run_gives_the_figures_of_a_straight_one(runs):
    resumed, straight, _, _ = runs
    a, b = (json.loads((out / "report.json").read_text())["results"] for out in (resumed, straight))
    untimed = [[{k: v for k, v in h.items() if "seconds" not in k} for h in r["train"]["history"]]
               for r in (a, b)]
    assert untimed[0] == untimed[1]
    assert a["train"]["test_accuracy"] == b["train"]["test_accuracy"]
    assert a["convert"]["budget"] == b["convert"]["budget"]
    for key in ("test_accuracy", "clean", "robust", "robust_mask"):
        assert a["deploy_eval"][key] == b["deploy_eval"][key], key
    assert (resumed / "model_int8_b1.tflite").read_bytes() == (straight / "model_int8_b1.tflite").read_bytes()
