"""``tfrobust evaluate``: robust accuracy of a saved model with a preset; writes JSON and Markdown.

Python: ``run(Config(model="m.keras", out="runs/eval", preset="fast"))`` returns the report dict.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tfrobust import evaluation, tflite_tools, utils
from tfrobust.cli import _common
from tfrobust.cli import _flags as F
from tfrobust.cli._flags import setting


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(_common.DataConfig):
    """Settings of ``tfrobust evaluate`` (each is also a flag of the same name)."""

    model: str = setting(help="Saved model: .keras, .h5 or a SavedModel folder; or a .tflite file or a "
                         "bit-packed binary C program (.c from export_binary_c, compiled once on the host) "
                         "(then --source is needed and the deployed file is attacked as deployed).")
    out: str = setting(help="Output folder (robustness.json, robustness.md).")
    preset: str = setting("standard", "fast = PGD-20; standard = APGD-CE, APGD-DLR, APGD-T (9 "
                          "targets), Square (AutoAttack's standard without FAB-T, plus untargeted "
                          "APGD-DLR); autoattack = AutoAttack's standard (with FAB-T); "
                          "adaptive = standard + BPDA and 5 Square runs for gradient-masking layers, or "
                          "AutoAttack's rand version (EOT) for random models.",
                          choices=tuple(evaluation.PRESETS))
    eps: float = setting(0.1, "Perturbation radius (images are in [0, 1]).")
    norm: str = setting("linf", "Norm of the perturbation ball.", choices=("linf", "l2"))
    steps: int | None = setting(None, "Override the preset's attack steps.")
    eot_samples: int = setting(20, "EOT forward passes per gradient (adaptive preset).")
    num_examples: int = setting(1000, "Evaluate the first N test images.")
    batch_size: int = setting(256, "Batch size.")
    seed: int = setting(0, "Seed of the attacks' random starts.")
    source: str | None = setting(None, "With a .tflite --model: the Keras model it was converted from (its "
                                 "gradients drive APGD through the interpreter; its standard examples "
                                 "are replayed).")
    square_queries: int = setting(5000, "Square's queries per example (0 skips).")
    targets: int = setting(3, "With a .tflite --model: APGD-T target classes (AutoAttack: 9; 0 skips).")

    def __post_init__(self):
        _common.check_choices(self)
        _common.check_bounds(self, eps=(0.0, None), steps=(1, None), eot_samples=(1, None),
                             num_examples=(1, None), batch_size=(1, None), seed=(0, None),
                             square_queries=(0, None), targets=(0, None))


def _finish(config, report, result, markdown) -> dict:
    out = Path(config.out)
    utils.atomic_write_json(out / "robustness.json", result)
    utils.atomic_write_text(out / "robustness.md", markdown)
    for w in report.warnings:
        print(f"warning: {w}")
    print(f"results: {out / 'robustness.json'}, {out / 'robustness.md'}")
    return result


def run(config: Config) -> dict:
    """Evaluate the first ``num_examples`` test images; write ``robustness.json`` / ``robustness.md``."""
    if str(config.model).endswith((".tflite", ".c")):
        return _run_deployed(config)
    model_fn, model = evaluation.load_model_fn(config.model)
    x, y = _common.load_split(config, "test", config.num_examples)
    report = evaluation.robust_accuracy(model_fn, x, y, eps=config.eps, norm=config.norm,
                                        preset=config.preset, batch_size=config.batch_size, model=model,
                                        steps=config.steps, queries=config.square_queries,
                                        eot_samples=config.eot_samples, seed=config.seed, verbose=True)
    result = {**report.to_dict(), "model": str(config.model), "dataset": config.dataset,
              "environment": utils.environment()}
    print(f"clean accuracy: {report.clean_accuracy:.4f}, robust accuracy: {report.robust_accuracy:.4f} "
          f"({report.num_examples} images, preset {config.preset})")
    return _finish(config, report, result, report.to_markdown())


def _run_deployed(config: Config) -> dict:
    """``model=x.tflite, source=x.keras``: the worst case of transfer, APGD through the interpreter
    and Square on it (:func:`tfrobust.evaluation.robust_accuracy_deployed`)."""
    # TF-MOT is imported only for a .tflite evaluation (its source may be a QAT .h5).
    from tfrobust.compression import quantize_scope

    if not config.source:
        raise ValueError("--model is a deployed file: pass --source=<the Keras model it was converted from> "
                         "(its gradients and transferred examples are part of the evaluation)")
    with quantize_scope():  # a QAT source (.h5 from `tfrobust compress`) loads too
        _, source = evaluation.load_model_fn(config.source)
    if str(config.model).endswith(".c"):  # a bit-packed binary C program: gcc once, called via ctypes
        deployed = tflite_tools.BitpackRunner(config.model)
    else:
        deployed = tflite_tools.TFLiteModel(config.model)
    x, y = _common.load_split(config, "test", config.num_examples)
    report = evaluation.robust_accuracy_deployed(
        deployed, source, x, y, eps=config.eps, norm=config.norm, steps=config.steps or 100,
        targets=config.targets, square_queries=config.square_queries, batch_size=config.batch_size,
        seed=config.seed, verbose=True)
    result = {**report.to_dict(), "model": str(config.model), "source": str(config.source),
              "dataset": config.dataset, "environment": utils.environment()}
    c = report.config
    print(f"deployed {config.model}: clean accuracy {report.clean_accuracy:.4f}, robust accuracy (worst "
          f"case) {report.robust_accuracy:.4f}; transfer alone {c['transfer_only_robust_accuracy']:.4f} "
          f"({report.num_examples} images)")
    return _finish(config, report, result, report.to_markdown() + (
        f"\nTransfer alone: {c['transfer_only_robust_accuracy']:.4f} (overstates the worst case by "
        f"{100 * c['transfer_overstatement']:.1f} points).\n"))


def main(argv=None) -> int:
    """absl layer: the parsed flags become a :class:`Config`."""
    del argv
    run(F.from_flags(Config))
    return 0
