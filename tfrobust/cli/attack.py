"""``tfrobust attack``: run one attack on a saved model, write ``attack.json`` and ``attack.md``.

Python: ``run(Config(model="m.keras", eps=0.1, out="runs/attack"))`` returns the result dict.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path

import numpy as np

from tfrobust import attacks, evaluation, utils
from tfrobust.cli import _common
from tfrobust.cli import _flags as F
from tfrobust.cli._flags import setting

ATTACKS = ("fgsm", "pgd", "apgd-ce", "apgd-dlr", "apgd-t", "square")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(_common.DataConfig):
    """Settings of ``tfrobust attack`` (each is also a flag of the same name)."""

    model: str = setting(help="Saved model: .keras, .h5 or a SavedModel folder.")
    eps: float = setting(help="Perturbation radius (images are in [0, 1]).")
    out: str = setting(help="Output folder (attack.json, attack.md).")
    attack: str = setting("pgd", "Attack to run (tfrobust.attacks.get names).", choices=ATTACKS)
    norm: str = setting("linf", "Norm of the perturbation ball.", choices=("linf", "l2"))
    steps: int = setting(20, "Attack steps (pgd, apgd-*).")
    step_size: float | None = setting(None, "PGD step size (default 2.5 * eps / steps).")
    restarts: int = setting(1, "Random restarts (pgd, apgd-*).")
    queries: int = setting(5000, "Queries per example (square).")
    num_examples: int = setting(1000, "Attack the first N test images.")
    batch_size: int = setting(256, "Batch size.")
    seed: int = setting(0, "Seed of the random start.")

    def __post_init__(self):
        _common.check_choices(self)
        _common.check_bounds(self, eps=(0.0, None), steps=(1, None), step_size=(0.0, None),
                             restarts=(1, None), queries=(0, None), num_examples=(1, None),
                             batch_size=(1, None), seed=(0, None))

    def attack_config(self) -> dict:
        """The attack's full configuration: its own settings only, defaults from ``attacks.get``."""
        given = {"norm": self.norm, "steps": self.steps, "step_size": self.step_size,
                 "restarts": self.restarts, "queries": self.queries}
        settings = attacks.get(self.attack, eps=self.eps).get_config()
        settings.update({k: v for k, v in given.items() if k in settings})
        return settings


def run(config: Config) -> dict:
    """Run the attack on the first ``num_examples`` test images; write ``attack.json`` / ``attack.md``."""
    cfg = {"attack": config.attack_config(), "seed": config.seed, "batch_size": config.batch_size}
    model_fn, _ = evaluation.load_model_fn(config.model)
    x, y = _common.load_split(config, "test", config.num_examples)
    attack = attacks.get(cfg["attack"])
    bs = config.batch_size

    start = time.perf_counter()
    adv = evaluation.attack_dataset(functools.partial(attack, seed=config.seed), model_fn, x, y,
                                    batch_size=bs)
    seconds = time.perf_counter() - start
    clean = evaluation.accuracy(model_fn, x, y, batch_size=bs)
    adv_acc = evaluation.accuracy(model_fn, adv, y, batch_size=bs)
    delta = (adv - x).reshape(len(x), -1)
    result = {
        "model": str(config.model), "dataset": config.dataset, "num_examples": int(len(x)), "config": cfg,
        "clean_accuracy": clean, "adversarial_accuracy": adv_acc, "attack_seconds": round(seconds, 3),
        "max_linf": float(np.abs(delta).max()), "max_l2": float(np.linalg.norm(delta, axis=1).max()),
        "environment": utils.environment(),
    }
    out = Path(config.out)
    utils.atomic_write_json(out / "attack.json", result)
    table = utils.markdown_table(["clean accuracy", "adversarial accuracy", "attack seconds", "settings"],
                                 [[f"{clean:.4f}", f"{adv_acc:.4f}", f"{seconds:.2f}", attack.describe()]])
    utils.atomic_write_text(out / "attack.md", "\n".join([
        f"### {attack.name} on {Path(config.model).name} ({config.dataset}, {len(x)} test images)", "",
        table.rstrip("\n"), ""]))
    print(f"clean accuracy: {clean:.4f}, adversarial accuracy: {adv_acc:.4f} ({len(x)} images, "
          f"{seconds:.1f} s)")
    print(f"results: {out / 'attack.json'}, {out / 'attack.md'}")
    return result


def main(argv=None) -> int:
    """absl layer: the parsed flags become a :class:`Config`."""
    del argv
    run(F.from_flags(Config))
    return 0
