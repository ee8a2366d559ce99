"""The older commands called from Python: ``run(Config(...))`` without absl flags, one tiny run each.

The absl layer of the same commands (flags, exit codes, the console script) stays tested in the
``test_*_cli.py`` modules; here each ``Config`` is built directly and ``run`` returns its result.
"""

import json
import math

import pytest

from tfrobust.cli import attack, compress, convert, evaluate, export_c, train


def test_attack_run_returns_what_it_writes(tmp_path, saved_model):
    result = attack.run(attack.Config(model=saved_model, eps=0.05, steps=3, num_examples=40,
                                      out=str(tmp_path)))
    assert result == json.loads((tmp_path / "attack.json").read_text())
    assert result["config"]["attack"]["steps"] == 3 and result["num_examples"] == 40
    assert result["adversarial_accuracy"] <= result["clean_accuracy"]
    assert result["max_linf"] <= 0.05 + 1e-6
    assert (tmp_path / "attack.md").read_text().startswith("### pgd")


def test_evaluate_run_fast_preset(tmp_path, saved_model):
    result = evaluate.run(evaluate.Config(model=saved_model, preset="fast", eps=0.05, steps=3,
                                          num_examples=40, out=str(tmp_path)))
    assert result["config"]["preset"] == "fast" and result["robust_accuracy"] <= result["clean_accuracy"]
    saved = json.loads((tmp_path / "robustness.json").read_text())
    assert saved["robust_accuracy"] == result["robust_accuracy"]


def test_train_run_writes_model_and_metrics(tmp_path):
    metrics = train.run(train.Config(model="lenet_300_100", out=str(tmp_path), train_subset=256,
                                     test_subset=64, batch_size=64))
    assert metrics["train_examples"] == 256 and metrics["test_examples"] == 64
    assert metrics["trainer"] == "Trainer" and 0.0 <= metrics["test_accuracy"] <= 1.0
    assert (tmp_path / "model.keras").exists()
    assert json.loads((tmp_path / "metrics.json").read_text())["test_accuracy"] == metrics["test_accuracy"]


def test_compress_run_prunes_to_the_requested_sparsity(tmp_path, saved_model):
    report = compress.run(compress.Config(model=saved_model, method="prune", sparsity=0.5, epochs=1,
                                          robust=False, train_subset=128, test_subset=64, out=str(tmp_path)))
    assert report["flags"]["sparsity"] == 0.5 and report["method"] == "prune"
    assert math.isclose(report["details"]["sparsity"]["overall"], 0.5, abs_tol=0.05)
    assert (tmp_path / "model.keras").exists() and (tmp_path / "report.json").exists()


def test_convert_then_export_c_from_python(tmp_path, saved_model):
    out = tmp_path / "m.tflite"
    res = convert.run(convert.Config(model=saved_model, mode="int8", dataset="fashion_mnist",
                                     calibration_size=30, batch_size=1, out=str(out)))
    assert res["bytes"] == out.stat().st_size and res["int8_agreement"] >= 0.9
    c = export_c.run(export_c.Config(tflite=str(out), out=str(tmp_path / "c" / "net"), name="net"))
    assert c["length"] == out.stat().st_size and (tmp_path / "c" / "net.h").exists()


@pytest.mark.parametrize("make, fragment", [
    (lambda: attack.Config(model="m.keras", eps=-0.1, out="x"), "eps"),
    (lambda: attack.Config(model="m.keras", eps=0.1, attack="cw", out="x"), "attack"),
    (lambda: evaluate.Config(model="m.keras", out="x", preset="slow"), "preset"),
    (lambda: train.Config(out="x", epochs=0), "epochs"),
    (lambda: train.Config(out="x", distill_alpha=1.5), "distill_alpha"),
    (lambda: compress.Config(model="m.keras", method="squeeze", out="x"), "method"),
    (lambda: convert.Config(model="m.keras", mode="int8", out="x"), "dataset"),
    (lambda: convert.Config(model="m.keras", mode="int8", dataset="mnist", lut_bits=4, out="x"), "lut_bits"),
    (lambda: export_c.Config(tflite="m.tflite", out="x", name="1x"), "name"),
])
def test_configs_refuse_bad_values(make, fragment):
    with pytest.raises((ValueError, TypeError), match=fragment):
        make()
