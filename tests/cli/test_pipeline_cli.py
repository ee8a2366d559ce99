import json
import os
import subprocess
import sys

import numpy as np
import pytest

TINY = ["--train_subset=1500", "--epochs=1", "--eval_subset=64", "--eps_curve=0,0.1",
        "--finetune_epochs=1", "--gradient_free_examples=4", "--batch_size=64"]


def run_cli(*args, timeout=900):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "tfrobust", "pipeline", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def _figures(report):
    res = report["results"]
    return {
        "train": res["train"]["test_accuracy"],
        "standard": [res["evaluate"]["standard"][k] for k in ("clean_accuracy", "robust_accuracy")],
        "curve": res["evaluate"]["eps_curve_pgd20"],
        "compress": [(s["accuracy"], s["robust_accuracy"]) for s in res["compress"]["steps"]],
        "int8": res["deploy_eval"]["int8_test_accuracy"],
        "int8_curve": res["deploy_eval"]["int8_eps_curve_transfer_pgd20"],
    }


@pytest.fixture(scope="module")
def interrupted_and_resumed(tmp_path_factory):
    out = tmp_path_factory.mktemp("pipe") / "run"
    first = run_cli(*TINY, f"--out={out}", "--stop_after=evaluate")
    assert first.returncode == 0, first.stderr[-3000:]
    assert not (out / "report.md").exists()
    second = run_cli(*TINY, f"--out={out}", "--resume")
    assert second.returncode == 0, second.stderr[-3000:]
    return out, first, second


@pytest.mark.slow
def test_pipeline_resumes_without_repeating_stages(interrupted_and_resumed):
    out, first, second = interrupted_and_resumed
    for stage in ("train", "evaluate"):
        assert f"{stage}: done earlier, skipped" in second.stdout
    log = json.loads((out / "pipeline_state.json").read_text())["log"]
    ran = [e["stage"] for e in log if e["event"] == "ran"]
    assert ran == ["train", "evaluate", "compress", "convert", "deploy_eval", "export_c", "report"]
    assert f"report: {(out / 'report.md').resolve()}" in second.stdout


@pytest.mark.slow
def test_pipeline_artefacts_are_valid(interrupted_and_resumed, fashion_test):
    from tfrobust.tflite_tools import TFLiteModel

    out, _, _ = interrupted_and_resumed
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["seed"] == 0 and report["environment"]["versions"]["tensorflow"]
    for rel in report["plots"].values():
        assert (out / rel).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    x, y = fashion_test
    tfl = TFLiteModel(out / "model_int8.tflite")
    acc = float(np.mean(np.argmax(np.asarray(tfl(x)), 1) == y))
    assert acc == pytest.approx(report["results"]["deploy_eval"]["int8_test_accuracy"], abs=1e-9)
    assert (out / "c" / "model.h").exists() and (out / "c" / "model.cc").exists()
    md = (out / "report.md").read_text()
    assert "int8 .tflite test accuracy" in md and "plots/accuracy_vs_eps.png" in md


@pytest.mark.slow
def test_interrupted_run_gives_the_figures_of_an_uninterrupted_one(interrupted_and_resumed, tmp_path):
    out, _, _ = interrupted_and_resumed
    straight = run_cli(*TINY, f"--out={tmp_path / 'straight'}")
    assert straight.returncode == 0, straight.stderr[-3000:]
    a = _figures(json.loads((out / "report.json").read_text()))
    b = _figures(json.loads((tmp_path / "straight" / "report.json").read_text()))
    assert a == b


def test_resume_with_other_settings_is_refused(interrupted_and_resumed):
    out, _, _ = interrupted_and_resumed
    res = run_cli(*TINY, "--eps=0.2", f"--out={out}", "--resume", timeout=300)
    assert res.returncode == 1 and "--resume needs the settings" in res.stderr


@pytest.mark.parametrize("args, fragment", [(["--eps_curve=a,b"], "eps_curve"),
                                            (["--defense=magic"], "defense"),
                                            (["--prune_sparsity=1.5"], "prune_sparsity"),
                                            (["--binary"], "--model=binary_small_cnn")])
def test_pipeline_bad_flags(args, fragment, tmp_path):
    res = run_cli(*args, f"--out={tmp_path / 'x'}", timeout=300)
    assert res.returncode != 0
    assert fragment in res.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_binary_pipeline_deploys_a_binary_int8_file(tmp_path, fashion_test):
    from tfrobust.tflite_tools import TFLiteModel, binary_weight_report

    out = tmp_path / "bin"
    res = run_cli(*TINY, "--model=binary_small_cnn", "--binary", "--prune_sparsity=0", "--noqat",
                  f"--out={out}")
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    blob = (out / "model_binary.tflite").read_bytes()
    assert all(k["binary"] for k in binary_weight_report(blob))  # two int8 levels per channel
    x, y = fashion_test
    acc = float(np.mean(np.argmax(np.asarray(TFLiteModel(blob)(x)), 1) == y))
    assert acc == pytest.approx(report["results"]["deploy_eval"]["binary_test_accuracy"], abs=1e-9)
    assert "binary-int8 .tflite" in (out / "report.md").read_text()
