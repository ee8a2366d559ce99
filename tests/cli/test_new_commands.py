"""The ``Config`` + ``run(config)`` commands: a tiny run from Python each, and their absl layer.

Every run writes its JSON and Markdown; the absl tests check ``--helpfull`` (exit 0) and one bad
flag (exit 2, one line) per command in a subprocess, as the console script runs.
"""

import json
import os
import subprocess
import sys

import pytest

COMMANDS = ["lbfgs", "one-pixel", "substitute", "proactive", "feedback", "lottery"]


def run_cli(*args, timeout=120):
    """The console script's way in (``tfrobust_launch``), so stderr holds only what the command wrote."""
    env = {k: v for k, v in os.environ.items() if k != "TFROBUST_TF_LOGS"}
    launch = "import tfrobust_launch; tfrobust_launch.main()"
    return subprocess.run([sys.executable, "-c", launch, *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def read(out, name):
    assert (out / f"{name}.md").read_text().startswith("###")
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # atomic writes left no temp file
    return json.loads((out / f"{name}.json").read_text())


def test_lbfgs_run_writes_success_rate_and_small_perturbations(tmp_path, saved_model):
    from tfrobust.cli import lbfgs

    out = tmp_path / "lbfgs"
    result = lbfgs.run(lbfgs.Config(model=saved_model, out=str(out), num_examples=10, search_steps=3,
                                    max_iterations=20))
    saved = read(out, "lbfgs")
    assert saved["success_rate"] == result["success_rate"]
    assert 0.0 <= saved["success_rate"] <= 1.0 and saved["clean_accuracy"] > 0.0
    assert saved["num_examples"] == 10 and saved["config"]["distance"] == "l2"
    assert 0.0 < saved["max_l2"] < 10.0 and saved["max_linf"] <= 1.0


def test_lbfgs_config_refuses_bad_values():
    from tfrobust.cli import lbfgs

    with pytest.raises(ValueError, match="initial_const"):
        lbfgs.Config(model="m.keras", out="x", initial_const=0.0)
    with pytest.raises(ValueError, match="num_examples"):
        lbfgs.Config(model="m.keras", out="x", num_examples=0)


def test_one_pixel_run_changes_at_most_one_pixel(tmp_path, saved_model):
    from tfrobust.cli import one_pixel

    out = tmp_path / "op"
    result = one_pixel.run(one_pixel.Config(model=saved_model, out=str(out), num_examples=10, population=20,
                                            iterations=5, early_stop="flip"))
    saved = read(out, "one_pixel")
    assert saved["success_rate"] == result["success_rate"] and 0.0 <= saved["success_rate"] <= 1.0
    assert saved["max_pixels_changed"] <= 1 and saved["config"]["population"] == 20
    assert saved["adversarial_accuracy"] <= saved["clean_accuracy"]


def test_substitute_run_reports_queries_and_transfer(tmp_path, saved_model):
    from tfrobust.cli import substitute

    out = tmp_path / "sub"
    substitute.run(substitute.Config(model=saved_model, out=str(out), initial_size=30, num_examples=60,
                                     arch="lenet_300_100", rounds=2, epochs=1, eps=0.2))
    saved = read(out, "substitute")
    assert saved["training_queries"] == 30 * 2 and saved["oracle_queries"] == 60 + 2 * 60
    assert 0.0 <= saved["transfer_success_rate"] <= 1.0 and 0.0 <= saved["success_rate"] <= 1.0
    assert saved["max_linf"] <= 0.2 + 1e-6 and saved["num_examples"] == 60
    assert len(saved["history"]) == 2


def test_proactive_run_reports_every_round(tmp_path, saved_model):
    from tfrobust.cli import proactive

    out = tmp_path / "pro"
    proactive.run(proactive.Config(out=str(out), model=saved_model, train_subset=200, test_subset=100,
                                   rounds=1, eps=0.1, steps=2, batch_size=32))
    saved = read(out, "proactive")
    assert [r["round"] for r in saved["rounds"]] == [0, 1]
    for r in saved["rounds"]:
        assert 0.0 <= r["attack_accuracy"] <= r["clean_accuracy"] + 0.05
        assert 0.0 <= r["holdout_accuracy"] <= 1.0
    assert saved["rounds"][0]["train_loss"] is None  # a saved --model is not retrained in round 0
    assert saved["attack"].startswith("FGSM") and saved["holdout_attack"].startswith("PGD-2")
    assert (out / "model.keras").exists()


def test_feedback_run_allocates_the_budget_by_class(tmp_path, saved_model):
    from tfrobust.cli import feedback

    out = tmp_path / "fb"
    feedback.run(feedback.Config(out=str(out), model=saved_model, train_subset=200, test_subset=100, rounds=1,
                                 eval_attack="fgsm", budget=50, probe_size=5, batch_size=32))
    saved = read(out, "feedback")
    last = saved["rounds"][-1]
    assert sum(last["allocation"]) == 50 and len(last["per_class_distance"]) == 10
    assert 0.0 <= last["robust_accuracy"] <= 1.0 and 0.0 <= last["inequality_robust"]["gini"] <= 1.0
    assert all(0.0 <= d <= 0.2 for d in last["per_class_distance"])


def test_lottery_run_prunes_and_reports_baselines(tmp_path):
    from tfrobust.cli import lottery

    out = tmp_path / "lt"
    lottery.run(lottery.Config(out=str(out), arch="lenet_300_100", train_subset=200, test_subset=100,
                               rounds=1, epochs=1, batch_size=32))
    saved = read(out, "lottery")
    dense, ticket = saved["rows"]
    assert dense["sparsity"] == 0.0 and 0.15 < ticket["sparsity"] < 0.25
    assert 0.0 <= ticket["ticket"] <= 1.0 and 0.0 <= ticket["scratch_e"] <= 1.0
    assert saved["settings"]["prune_rate"] == 0.2


@pytest.mark.parametrize("command", COMMANDS)
def test_helpfull_exits_0(command):
    res = run_cli(command, "--helpfull")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "--out" in res.stdout


BAD_FLAGS = {
    "lbfgs": (["--model=m.keras", "--out=x", "--search_steps=0"], "search_steps"),
    "one-pixel": (["--model=m.keras", "--out=x", "--early_stop=sometimes"], "early_stop"),
    "substitute": (["--model=m.keras", "--out=x", "--eps=-0.1"], "eps"),
    "proactive": (["--out=x", "--attack=cw"], "attack"),
    "feedback": (["--out=x", "--probe_size=0"], "probe_size"),
    "lottery": (["--out=x", "--prune_rate=1.5"], "prune_rate"),
}


@pytest.mark.parametrize("command", COMMANDS)
def test_bad_flag_exits_2_with_one_line(command):
    args, fragment = BAD_FLAGS[command]
    res = run_cli(command, *args)
    assert res.returncode == 2, res.stderr[-2000:]
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("tfrobust: error") and fragment in lines[0], res.stderr


def test_version_prints_the_version():
    from tfrobust._version import __version__

    res = run_cli("lbfgs", "--version")
    assert res.returncode == 0 and res.stdout.strip() == f"tfrobust {__version__}"
    assert res.stderr.strip() == ""
