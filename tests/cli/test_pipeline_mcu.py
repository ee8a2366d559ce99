import json
import os
import subprocess
import sys

import pytest

# A few hundred images, one epoch, a narrow model, a small evaluation and query budget.
TINY = ["--target=mcu", "--train_subset=400", "--epochs=1", "--batch_size=64", "--eval_subset=24",
        "--apgd_steps=3", "--square_queries=20", "--guard_examples=64", "--frontier=prune0.5",
        "--frontier_subset=12", "--seed=1"]


def run_cli(*args, timeout=600):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "tfrobust", "pipeline", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mcu") / "run"
    res = run_cli(*TINY, "--width=0.25", f"--out={out}")
    assert res.returncode == 0, res.stderr[-3000:]
    return out, res


def test_mcu_pipeline_checks_the_budget_on_the_deployed_file(tiny_run):
    from tfrobust import tflite_tools

    out, _ = tiny_run
    report = json.loads((out / "report.json").read_text())
    res = report["results"]
    budget = res["convert"]["budget"]
    shipped = (out / "model_int8_b1.tflite").read_bytes()
    assert budget["ok"] and budget["max_weight_bytes"] == 65536 and budget["max_arena_bytes"] == 32768
    assert budget["weight_bytes"] == tflite_tools.weight_bytes(shipped) <= 65536
    assert budget["file_bytes"] == len(shipped)
    assert 0 < budget["arena_bytes"] <= 32768
    assert res["export_c"]["arena_size"] == budget["arena_bytes"]
    assert f"g_model_arena_size = {budget['arena_bytes']}" in (out / "c/model.h").read_text()


def test_mcu_pipeline_report_gives_budget_figures_and_the_deployed_evaluation(tiny_run):
    out, _ = tiny_run
    res = json.loads((out / "report.json").read_text())["results"]
    dep = res["deploy_eval"]
    assert dep["n"] == 24 and 0 <= dep["robust"] <= dep["clean"] <= 1
    assert "robust_accuracy_deployed" in dep["robust_method"]
    assert {"transfer", "square"} <= set(dep["report"]["per_attack"])
    points = res["frontier"]["points"]
    assert len(points) == 2 and points[1]["weight_bytes"] < points[0]["weight_bytes"]
    md = (out / "report.md").read_text()
    budget = res["convert"]["budget"]
    assert f"**{budget['weight_bytes']:,} B** (budget 65,536 B)" in md
    assert f"**{budget['arena_bytes']:,} B** (budget 32,768 B)" in md
    assert "![frontier](plots/frontier.png)" in md
    assert (out / "plots/frontier.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("args, fragment", [
    (["--target=mcu", "--defense=kwta"], "do(es) not apply to --target=mcu"),
    (["--target=mcu", "--width=-1"], "--width"),
    (["--target=mcu", "--frontier=half"], "--frontier"),
    (["--width=0.5"], "need(s) --target=mcu"),
    (["--target=mcu", "--stop_after=evaluate"], "--stop_after"),
    (["--target=mcu", "--max_weight_bytes=0"], "max_weight_bytes"),
])
def test_mcu_pipeline_bad_flags(args, fragment, tmp_path):
    res = run_cli(*args, f"--out={tmp_path / 'x'}", timeout=300)
    assert res.returncode != 0
    assert fragment in res.stderr.strip().splitlines()[-1]


def test_mcu_pipeline_refuses_a_budget_no_width_fits_with_the_numbers(tmp_path):
    res = run_cli("--target=mcu", "--max_weight_bytes=2000", "--max_arena_bytes=4000",
                  f"--out={tmp_path / 'x'}", timeout=300)
    assert res.returncode != 0
    last = res.stderr.strip().splitlines()[-1]
    assert "no mcu_cnn width" in last and "over by" in last and "2,000 B budget" in last
