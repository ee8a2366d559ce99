import json
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


@pytest.mark.slow
def test_train_writes_model_and_metrics(tmp_path, fashion_test):
    out = tmp_path / "run"
    res = run_cli("train", "--dataset=fashion_mnist", "--model=lenet_300_100", "--epochs=1",
                  "--train_subset=2000", "--test_subset=500", f"--out={out}")
    assert res.returncode == 0, res.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_examples"] == 2000 and metrics["test_examples"] == 500
    assert 0.5 < metrics["test_accuracy"] <= 1.0
    assert "test accuracy:" in res.stdout
    assert not (out / "backup").exists()  # the resume checkpoint is removed after success
    model = keras.models.load_model(out / "model.keras")
    x, y = fashion_test[0][:500], fashion_test[1][:500]
    acc = float(np.mean(np.argmax(model.predict(x, verbose=0), axis=1) == y))
    assert abs(acc - metrics["test_accuracy"]) < 1e-6


@pytest.mark.parametrize("args, fragment", [
    (["train", "--epochs=0", "--out=x"], "epochs"),
    (["train", "--model=resnet9000", "--out=x"], "model"),
    (["train", "--bogus=1", "--out=x"], "bogus"),
    (["train"], "out"),
    (["train", "--out=x", "extra"], "positional"),
    (["fly"], "unknown command"),
])
def test_bad_flags_exit_non_zero_with_one_line(args, fragment):
    res = run_cli(*args, timeout=120)
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.startswith("tfrobust: error")]
    assert len(lines) == 1 and fragment in lines[0], res.stderr


def test_help_lists_commands_and_flags():
    res = run_cli("--help", timeout=120)
    assert res.returncode == 0 and "train" in res.stdout
    res = run_cli("train", "--help", timeout=120)
    assert res.returncode == 0 and "--epochs" in res.stdout


@pytest.mark.slow
def test_train_adversarial_then_distil_with_mixup_and_label_smoothing(tmp_path, fashion_test):
    teacher_dir = tmp_path / "teacher"
    res = run_cli("train", "--model=small_cnn", "--epochs=1", "--train_subset=512", "--test_subset=128",
                  "--adv=fgsm_rs", "--eps=0.1", "--eps_warmup_epochs=1", f"--out={teacher_dir}")
    assert res.returncode == 0, res.stderr[-2000:]
    metrics = json.loads((teacher_dir / "metrics.json").read_text())
    assert metrics["trainer"] == "AdversarialTrainer" and metrics["adv"] == "fgsm_rs"
    assert "adv_accuracy" in metrics["history"]
    assert 0.0 <= metrics["robust_accuracy"] <= metrics["test_accuracy"]
    assert metrics["robust_evaluation"]["config"]["preset"] == "fast"
    assert "robust accuracy:" in res.stdout

    student_dir = tmp_path / "student"
    res = run_cli("train", "--model=lenet_300_100", "--epochs=1", "--train_subset=512", "--test_subset=128",
                  f"--distill_from={teacher_dir / 'model.keras'}", "--distill_temperature=3",
                  "--distill_alpha=0.5", "--mixup=0.2", "--label_smoothing=0.1", f"--out={student_dir}")
    assert res.returncode == 0, res.stderr[-2000:]
    metrics = json.loads((student_dir / "metrics.json").read_text())
    assert metrics["trainer"] == "Distiller" and metrics["mixup"] == 0.2
    assert metrics["robust_accuracy"] is None
    assert "distill_loss" in metrics["history"]
    model = keras.models.load_model(student_dir / "model.keras")  # the plain student, not the trainer
    x, y = fashion_test[0][:128], fashion_test[1][:128]
    acc = float(np.mean(np.argmax(model.predict(x, verbose=0), axis=1) == y))
    assert abs(acc - metrics["test_accuracy"]) < 1e-6


@pytest.mark.parametrize("args, fragment", [
    (["train", "--adv=free", "--out=x"], "adv"),
    (["train", "--distill_alpha=1.5", "--out=x"], "distill_alpha"),
    (["train", "--defense=moat", "--out=x"], "defense"),
])
def test_bad_training_flags_exit_non_zero_with_one_line(args, fragment):
    res = run_cli(*args, timeout=120)
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.startswith("tfrobust: error")]
    assert len(lines) == 1 and fragment in lines[0], res.stderr

