"""``tfrobust feedback``: feedback learning (per-class robustness steers adversarial examples); JSON + MD.

Each round measures every class's mean minimal perturbation ``d_c``, spends the adversarial budget
on the weakest classes, retrains, and reports per-class robust accuracy and its inequality
(:class:`tfrobust.trainers.FeedbackLearning`, arXiv:1909.05443). ``--defense`` trains the defended
CNN instead of ``--arch`` (CAS, CIFS and PCL through their label-conditioned path). Checkpoints go to
``out/checkpoints``; rerunning with the same ``--out`` resumes.
Python: ``run(Config(out="runs/fb", train_subset=1000, rounds=1))`` returns the result dict.
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
    """Settings of ``tfrobust feedback`` (each is also a flag of the same name)."""

    out: str = setting(help="Output folder (feedback.json, feedback.md, model.keras, checkpoints/).")
    model: str | None = setting(None, "Saved model to continue from (.keras/.h5); unset: build --defense "
                                "or --arch.")
    arch: str = setting("small_cnn", "Architecture from tfrobust.models when --model and --defense are "
                        "unset.", choices=models.names())
    train_subset: int | None = setting(10000, "Use the first N training images (unset: all).")
    test_subset: int | None = setting(1000, "Evaluate on the first N test images (unset: all).")
    attack: str = setting("fgsm", "Attack generating the training examples.", choices=ATTACKS)
    eval_attack: str = setting("pgd", "Attack of the per-class robust accuracy.", choices=ATTACKS)
    eps: float = setting(0.1, "L-inf radius of both attacks (images in [0, 1]).")
    steps: int = setting(10, "PGD steps (when an attack is pgd).")
    eps_max: float = setting(0.2, "Largest radius of the minimal-perturbation search.")
    distance: str = setting("fgsm", "Minimal perturbation: fgsm = exact bisection along FGSM's direction, "
                            "pgd = a grid of PGD radii.", choices=("fgsm", "pgd"))
    budget: int | None = setting(None, "Adversarial examples per round (unset: the training set size).")
    probe_size: int = setting(100, "Training images per class used to measure d_c.")
    proportional: bool = setting(True, "Class-proportion compensation (off: the uniform baseline).")
    rounds: int = setting(2, "Feedback rounds (round 0 is the model before them).")
    epochs: int = setting(1, "fit epochs per round (and of the initial training).")
    batch_size: int = setting(128, "Training batch size.")
    lr: float = setting(1e-3, "Adam learning rate.")
    seed: int = setting(0, "Seed of Python, NumPy and TensorFlow.")

    def __post_init__(self):
        _common.check_common(self)
        _common.check_defense(self)
        V.choice("attack", self.attack, ATTACKS)
        V.choice("eval_attack", self.eval_attack, ATTACKS)
        V.integer("steps", self.steps, minimum=1)
        V.number("eps_max", self.eps_max, minimum=0.0, open_min=True, maximum=1.0)
        V.integer("probe_size", self.probe_size, minimum=1)
        if self.budget is not None:
            V.integer("budget", self.budget, minimum=1)


def run(config: Config) -> dict:
    """Run (or resume) the rounds; write ``feedback.json``, ``feedback.md`` and ``model.keras``."""
    utils.set_seed(config.seed)
    x, y = _common.load_split(config, "train", config.train_subset)
    x_test, y_test = _common.load_split(config, "test", config.test_subset)
    model, pretrained = _common.trainable_model(config, x.shape[1:])
    loop = trainers.FeedbackLearning(
        model, attack=trainers.AttackSpec(config.attack, eps=config.eps, steps=config.steps),
        eval_attack=trainers.AttackSpec(config.eval_attack, eps=config.eps, steps=config.steps),
        eps_max=config.eps_max, distance=config.distance, rounds=config.rounds,
        epochs_per_round=config.epochs, batch_size=config.batch_size, budget=config.budget,
        probe_size=config.probe_size, proportional=config.proportional,
        directory=Path(config.out) / "checkpoints", pretrained=pretrained, seed=config.seed)
    report = loop.run(x, y, x_test, y_test)
    model_path = utils.atomic_save_model(loop.inner, Path(config.out) / "model.keras")
    table = utils.markdown_table(
        ["round", "clean accuracy", f"robust accuracy ({report['eval_attack']})", "Gini (robust per class)",
         "worst class robust", "mean d_c", "seconds"],
        [[r["round"], r["clean_accuracy"], r["robust_accuracy"], r["inequality_robust"]["gini"],
          min(a for a in r["per_class_robust"] if a is not None), r["inequality_distance"]["mean"],
          r["seconds"]] for r in report["rounds"]])
    last = report["rounds"][-1]
    print(f"after {config.rounds} rounds: clean {last['clean_accuracy']:.4f}, robust "
          f"{last['robust_accuracy']:.4f}, Gini of per-class robust accuracy "
          f"{last['inequality_robust']['gini']:.4f}")
    result = {**report, "model": str(model_path), "dataset": config.dataset, "config": F.describe(config)}
    defense = "" if config.defense == "none" else f", defense {config.defense}"
    title = f"### Feedback learning ({config.dataset}{defense}, {len(x_test)} test images)"
    return _common.write_report(config.out, "feedback", result, f"{title}\n\n{table}")


def main(argv=None) -> int:
    """absl layer: the parsed flags become a :class:`Config`."""
    del argv
    run(F.from_flags(Config))
    return 0
