"""``tfrobust lbfgs``: box-constrained L-BFGS (Szegedy et al.) on a saved model; ``lbfgs.json`` + ``.md``.

Python: ``run(Config(model="m.keras", out="runs/lbfgs", num_examples=20))`` returns the result dict.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from tfrobust import _validate as V
from tfrobust import attacks
from tfrobust.cli import _common
from tfrobust.cli import _flags as F
from tfrobust.cli._flags import setting


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    """Settings of ``tfrobust lbfgs`` (each is also a flag of the same name)."""

    model: str = setting(help="Saved model: .keras, .h5 or a SavedModel folder (gradients are needed).")
    out: str = setting(help="Output folder (lbfgs.json, lbfgs.md).")
    dataset: str = setting("fashion_mnist", "Dataset (its test split).", choices=_common.DATASETS)
    data_dir: str | None = setting(None, "Folder searched first for the dataset's IDX files.")
    num_examples: int = setting(100, "Attack the first N test images (L-BFGS is slow: SciPy per batch).")
    targeted: bool = setting(False, "Targeted: reach class (y + 1) mod K instead of any wrong class.")
    distance: str = setting("l2", "l2 = the paper's c * ||r||_2; l2_squared = CleverHans' c * ||r||_2^2.",
                            choices=("l2", "l2_squared"))
    initial_const: float = setting(1.0, "First c of the line search over c (> 0).")
    search_steps: int = setting(9, "L-BFGS-B runs (search steps over c).")
    max_iterations: int = setting(100, "L-BFGS-B iterations per run.")
    batch_size: int = setting(100, "Images per L-BFGS-B problem.")
    seed: int = setting(0, "Recorded for the report (the attack is deterministic).")

    def __post_init__(self):
        _common.check_common(self)
        V.number("initial_const", self.initial_const, minimum=0.0, open_min=True)
        V.integer("search_steps", self.search_steps, minimum=1)
        V.integer("max_iterations", self.max_iterations, minimum=1)


def run(config: Config) -> dict:
    """Attack the first ``num_examples`` test images; write ``lbfgs.json`` and ``lbfgs.md`` into ``out``."""
    model_fn = _common.oracle_fn(config.model)
    x, y = _common.load_split(config, "test", config.num_examples)
    num_classes = int(np.asarray(model_fn(x[:1])).shape[-1])
    labels = (y + 1) % num_classes if config.targeted else y
    start = time.perf_counter()
    x_adv = attacks.lbfgs(model_fn, x, labels.astype(np.int64), targeted=config.targeted,
                          initial_const=config.initial_const, search_steps=config.search_steps,
                          max_iterations=config.max_iterations, batch_size=config.batch_size,
                          distance=config.distance)
    seconds = time.perf_counter() - start
    summary = _common.attack_summary(model_fn, x, y, x_adv, targets=labels if config.targeted else None)
    result = {**summary, "attack": "lbfgs", "model": config.model, "dataset": config.dataset,
              "config": F.describe(config), "attack_seconds": round(seconds, 3)}
    settings = (f"{'targeted' if config.targeted else 'untargeted'}, {config.distance}, "
                f"{config.search_steps} x {config.max_iterations} iterations")
    print(f"L-BFGS success rate: {summary['success_rate']:.4f}, median L2 of changed images: "
          f"{summary['median_l2_of_changed']} ({summary['num_examples']} images, {seconds:.1f} s)")
    return _common.write_report(config.out, "lbfgs", result,
                                _common.summary_markdown("L-BFGS (Szegedy et al.)", summary, settings))


def main(argv=None) -> int:
    """absl layer: the parsed flags become a :class:`Config`."""
    del argv
    run(F.from_flags(Config))
    return 0
