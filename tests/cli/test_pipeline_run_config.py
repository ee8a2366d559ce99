"""``tfrobust pipeline`` called from Python: ``run(Config(...))`` without absl flags.

The absl layer (flags, exit codes, whole runs, --resume figures) stays tested in
``test_pipeline_cli.py``, ``test_pipeline_mcu.py`` and ``test_mcu_resume.py``; here the ``Config``
is built directly: its refusals, the target defaults it resolves, the flags it declares, a tiny run
of each target stopped early (the MCU one then resumed).
"""

import dataclasses
import json

import pytest
from absl import flags

from tfrobust.cli import pipeline as P
from tfrobust.cli import shared
from tfrobust.cli.shared import MCUSettings, Settings

# One FGSM-RS epoch of small_cnn on 256 images; the train stage also scores the 10,000 test images.
TINY = {"train_subset": 256, "epochs": 1, "batch_size": 64, "eval_subset": 16, "eps_curve": (0.0, 0.1)}


def test_default_config_resolves_to_the_stage_defaults():
    assert P.Config().settings() == Settings()
    mcu = P.Config(target="mcu").settings()
    assert isinstance(mcu, MCUSettings)
    assert (mcu.model, mcu.epochs, mcu.lr, mcu.qat, mcu.eps_curve) == ("mcu_cnn", 12, 2e-3, False, (0.1,))
    assert (mcu.max_weight_bytes, mcu.max_arena_bytes, mcu.frontier) == (65536, 32768, ())


def test_given_settings_win_and_the_eps_joins_the_curve():
    s = P.Config(eps=0.2, eps_curve="0,0.1", epochs=2).settings()
    assert s.eps_curve == (0.0, 0.1, 0.2) and s.epochs == 2
    m = P.Config(target="mcu", epochs=3, qat=True, frontier=" prune0.5, ", width=1).settings()
    assert (m.epochs, m.qat, m.frontier, m.width) == (3, True, ("prune0.5",), 1.0)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"eps_curve": ["a", "b"]}, "--eps_curve must be comma-separated numbers"),
    ({"eps_curve": (0.1, -0.1)}, "--eps_curve values must be >= 0"),
    ({"target": "mcu", "defense": "kwta"}, r"do\(es\) not apply to --target=mcu"),
    ({"target": "mcu", "width": -1}, "--width"),
    ({"target": "mcu", "frontier": ("half",)}, "--frontier items"),
    ({"width": 0.5}, r"--width need\(s\) --target=mcu"),
    ({"target": "mcu", "stop_after": "evaluate"}, "--stop_after must be one of the stages"),
    ({"target": "mcu", "max_weight_bytes": 0}, "max_weight_bytes"),
    ({"prune_sparsity": 1.5}, "prune_sparsity"),
    ({"defense": "magic"}, "defense"),
    ({"target": "phone"}, "target"),
])
def test_config_refuses_bad_values(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        P.Config(**kwargs)


def test_flags_are_declared_from_the_config_once():
    fv = flags.FlagValues()
    shared.define(P.Config, "tfrobust.cli.pipeline", flag_values=fv)
    assert {f.name for f in dataclasses.fields(P.Config)} <= set(fv)
    fv(["tfrobust pipeline", "--eps_curve=0,0.05", "--noqat", "--out=/tmp/x"])
    config = shared.from_flags(P.Config, fv)
    assert config.eps_curve == (0.0, 0.05) and config.qat is False and config.model is None
    fv.unparse_flags()
    fv(["tfrobust pipeline", "--target=mcu", "--frontier=prune0.25,prune0.5"])
    assert shared.from_flags(P.Config, fv).settings().frontier == ("prune0.25", "prune0.5")
    fv.unparse_flags()
    fv(["tfrobust pipeline", "--target=mcu", "--model=small_cnn"])
    with pytest.raises(shared.ConfigError, match=r"--model do\(es\) not apply"):
        shared.from_flags(P.Config, fv)


def test_run_stops_after_train_and_refuses_a_second_run_in_the_folder(tmp_path):
    out = tmp_path / "run"
    config = P.Config(out=str(out), stop_after="train", **TINY)
    result = P.run(config)
    assert result["finished"] is False and result["stopped_after"] == "train" and result["report"] is None
    assert list(result["results"]) == ["train"] and (out / "model.keras").exists()
    assert 0.0 <= result["results"]["train"]["test_accuracy"] <= 1.0
    assert result["results"]["train"] == json.loads((out / "stages/train.json").read_text())
    state = json.loads((out / "pipeline_state.json").read_text())
    assert state["settings"] == result["settings"] == config.settings().to_dict()
    with pytest.raises(ValueError, match="already holds a pipeline run"):
        P.run(config)
    with pytest.raises(ValueError, match="--resume needs the settings"):
        P.run(dataclasses.replace(config, eps=0.2, resume=True))


def test_mcu_run_resumes_from_python_without_repeating_a_stage(tmp_path):
    config = P.Config(target="mcu", width=0.25, train_subset=128, epochs=1, batch_size=64, eval_subset=8,
                      guard_examples=16, seed=1, out=str(tmp_path), stop_after="choose")
    first = P.run(config)
    assert list(first["results"]) == ["choose"] and first["results"]["choose"]["width"] == 0.25
    second = P.run(dataclasses.replace(config, resume=True, stop_after="train"))
    assert second["stopped_after"] == "train" and second["results"]["choose"] == first["results"]["choose"]
    assert second["results"]["train"]["width"] == 0.25 and len(second["results"]["train"]["history"]) == 1
    log = json.loads((tmp_path / "pipeline_state.json").read_text())["log"]
    assert [(e["stage"], e["event"]) for e in log] == [("choose", "ran"), ("choose", "skipped"),
                                                       ("train", "ran")]
