"""``tfrobust proactive``: proactive defense rounds (attack A patches, attack B held out); JSON + Markdown.

Trains ``--arch`` from scratch (or ``--defense``'s defended CNN: CAS, CIFS and PCL train their
label-conditioned path, attacked on the inference model; or continues a saved ``--model``), then
for each round attacks the training set with A, retrains on clean + adversarial images and reports
clean accuracy, accuracy under A and under B (:class:`tfrobust.trainers.ProactiveDefense`). Checkpoints go to
``out/checkpoints``: rerunning with the same ``--out`` resumes after the last finished round.
Python: ``run(Config(out="runs/pro", train_subset=1000, rounds=1))`` returns the result dict.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tfrobust import _validate as V
from tfrobust import models, trainers, utils
from tfrobust.cli import _common
from tfrobust.cli import _flags as F
from tfrobust.cli._flags import setting

ATTACKS = ("fgsm", "pgd")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(_common.DataConfig, _common.DefenseConfig):
    """Settings of ``tfrobust proactive`` (each is also a flag of the same name)."""

    out: str = setting(help="Output folder (proactive.json, proactive.md, model.keras, checkpoints/).")
    model: str | None = setting(None, "Saved model to continue from (.keras/.h5); unset: build --defense "
                                "or --arch.")
    arch: str = setting("small_cnn", "Architecture from tfrobust.models when --model and --defense are "
                        "unset.", choices=models.names())
    train_subset: int | None = setting(10000, "Use the first N training images (unset: all).")
    test_subset: int | None = setting(1000, "Evaluate on the first N test images (unset: all).")
    attack: str = setting("fgsm", "Attack A, used to augment the training set.", choices=ATTACKS)
    holdout_attack: str = setting("pgd", "Attack B, never trained on, only evaluated.", choices=ATTACKS)
    eps: float = setting(0.1, "L-inf radius of both attacks (images in [0, 1]).")
    steps: int = setting(10, "PGD steps (when an attack is pgd).")
    rounds: int = setting(3, "Adversarial rounds T (round 0 is the model before them).")
    epochs: int = setting(1, "fit epochs per round (and of the initial training).")
    batch_size: int = setting(128, "Training batch size.")
    lr: float = setting(1e-3, "Adam learning rate.")
    seed: int = setting(0, "Seed of Python, NumPy and TensorFlow.")

    def __post_init__(self):
        _common.check_common(self)
        _common.check_defense(self)
        V.choice("attack", self.attack, ATTACKS)
        V.choice("holdout_attack", self.holdout_attack, ATTACKS)
        V.integer("steps", self.steps, minimum=1)


def run(config: Config) -> dict:
    """Run (or resume) the rounds; write ``proactive.json``, ``proactive.md`` and ``model.keras``."""
    utils.set_seed(config.seed)
    x, y = _common.load_split(config, "train", config.train_subset)
    x_test, y_test = _common.load_split(config, "test", config.test_subset)
    model, pretrained = _common.trainable_model(config, x.shape[1:])
    loop = trainers.ProactiveDefense(
        model, attack=trainers.AttackSpec(config.attack, eps=config.eps, steps=config.steps),
        holdout_attack=trainers.AttackSpec(config.holdout_attack, eps=config.eps, steps=config.steps),
        rounds=config.rounds, epochs_per_round=config.epochs, batch_size=config.batch_size,
        directory=Path(config.out) / "checkpoints", pretrained=pretrained, seed=config.seed)
    report = loop.run(x, y, x_test, y_test)
    model_path = utils.atomic_save_model(loop.inner, Path(config.out) / "model.keras")
    table = utils.markdown_table(
        ["round", "train loss", "clean accuracy", f"under A ({report['attack']})",
         f"under B ({report['holdout_attack']}, held out)", "seconds"],
        [[r["round"], r["train_loss"], r["clean_accuracy"], r["attack_accuracy"], r["holdout_accuracy"],
          r["seconds"]] for r in report["rounds"]])
    last = report["rounds"][-1]
    print(f"after {config.rounds} rounds: clean {last['clean_accuracy']:.4f}, under A "
          f"{last['attack_accuracy']:.4f}, under B {last['holdout_accuracy']:.4f}")
    result = {**report, "model": str(model_path), "dataset": config.dataset, "config": F.describe(config)}
    defense = "" if config.defense == "none" else f", defense {config.defense}"
    title = f"### Proactive defense ({config.dataset}{defense}, {len(x_test)} test images)"
    return _common.write_report(config.out, "proactive", result, f"{title}\n\n{table}")


def main(argv=None) -> int:
    """absl layer: the parsed flags become a :class:`Config`."""
    del argv
    run(F.from_flags(Config))
    return 0
