"""``tfrobust one-pixel``: the one-pixel attack (Su et al.) on a saved model; ``one_pixel.json`` + ``.md``.

Gradient-free: the model may be a ``.tflite`` file (attacked through LiteRT, as deployed).
Python: ``run(Config(model="m.tflite", out="runs/op", num_examples=20))`` returns the result dict.
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
    """Settings of ``tfrobust one-pixel`` (each is also a flag of the same name); paper defaults."""

    model: str = setting(help="Saved model: .keras, .h5, a SavedModel folder or a .tflite file.")
    out: str = setting(help="Output folder (one_pixel.json, one_pixel.md).")
    dataset: str = setting("fashion_mnist", "Dataset (its test split).", choices=_common.DATASETS)
    data_dir: str | None = setting(None, "Folder searched first for the dataset's IDX files.")
    num_examples: int = setting(100, "Attack the first N test images.")
    pixels: int = setting(1, "Pixels changed per image (d).")
    targeted: bool = setting(False, "Targeted: reach class (y + 1) mod K instead of any wrong class.")
    population: int = setting(400, "Differential-evolution candidates per image (paper: 400).")
    iterations: int = setting(100, "Generations (paper: 100).")
    mutation: float = setting(0.5, "Mutation scale F (paper: 0.5), in (0, 2].")
    early_stop: str = setting("paper", "paper = stop at p_target > 0.9 / p_true < 0.05; flip = at the first "
                              "argmax flip; none = run every generation.", choices=("paper", "flip", "none"))
    batch_size: int = setting(8192, "Largest number of images per model call.")
    seed: int = setting(0, "Seed of the differential evolution.")

    def __post_init__(self):
        _common.check_common(self)
        V.integer("pixels", self.pixels, minimum=1)
        V.integer("population", self.population, minimum=4)
        V.integer("iterations", self.iterations, minimum=0)
        V.number("mutation", self.mutation, minimum=0.0, maximum=2.0, open_min=True)


def run(config: Config) -> dict:
    """Attack the first ``num_examples`` test images; write ``one_pixel.json`` and ``.md`` into ``out``."""
    model_fn = _common.oracle_fn(config.model)
    x, y = _common.load_split(config, "test", config.num_examples)
    num_classes = int(np.asarray(model_fn(x[:1])).shape[-1])
    labels = (y + 1) % num_classes if config.targeted else y
    start = time.perf_counter()
    x_adv = np.asarray(attacks.one_pixel(
        model_fn, x, labels.astype(np.int64), pixels=config.pixels, targeted=config.targeted,
        population=config.population, iterations=config.iterations, mutation=config.mutation,
        early_stop=config.early_stop, batch_size=config.batch_size, seed=config.seed))
    seconds = time.perf_counter() - start
    summary = _common.attack_summary(model_fn, x, y, x_adv, targets=labels if config.targeted else None)
    changed_pixels = np.any(x_adv != x, axis=-1).reshape(len(x), -1).sum(axis=1)
    result = {**summary, "attack": "one_pixel", "model": config.model, "dataset": config.dataset,
              "max_pixels_changed": int(changed_pixels.max()) if len(x) else 0,
              "config": F.describe(config), "attack_seconds": round(seconds, 3)}
    settings = (f"{config.pixels} pixel(s), {'targeted' if config.targeted else 'untargeted'}, "
                f"population {config.population}, {config.iterations} generations, stop {config.early_stop}")
    print(f"one-pixel success rate: {summary['success_rate']:.4f} ({summary['num_examples']} images, "
          f"{seconds:.1f} s)")
    return _common.write_report(config.out, "one_pixel", result,
                                _common.summary_markdown("One-pixel attack (Su et al.)", summary, settings))


def main(argv=None) -> int:
    """absl layer: the parsed flags become a :class:`Config`."""
    del argv
    run(F.from_flags(Config))
    return 0
