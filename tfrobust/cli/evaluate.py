"""``tfrobust evaluate``: robust accuracy of a saved model with a preset; writes JSON and Markdown."""

from __future__ import annotations

from pathlib import Path

from absl import flags

FLAGS = flags.FLAGS

flags.DEFINE_string("model", None, "Saved model: .keras, .h5 or a SavedModel folder.")
flags.DEFINE_enum("dataset", "fashion_mnist", ["fashion_mnist", "mnist"], "Dataset (its test split).")
flags.DEFINE_enum("preset", "standard", ["fast", "standard", "adaptive"],
                  "fast = PGD-20; standard = APGD-CE + APGD-DLR cascade; adaptive = standard + EOT/BPDA.")
flags.DEFINE_float("eps", 0.1, "Perturbation radius (images are in [0, 1]).", lower_bound=0.0)
flags.DEFINE_enum("norm", "linf", ["linf", "l2"], "Norm of the perturbation ball.")
flags.DEFINE_integer("steps", None, "Override the preset's attack steps.", lower_bound=1)
flags.DEFINE_integer("eot_samples", 20, "EOT forward passes per gradient (adaptive preset).", lower_bound=1)
flags.DEFINE_integer("num_examples", 1000, "Evaluate the first N test images.", lower_bound=1)
flags.DEFINE_integer("batch_size", 256, "Batch size.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of the attacks' random starts.", lower_bound=0)
flags.DEFINE_string("data_dir", None, "Folder searched first for the dataset's IDX files.")
flags.DEFINE_string("out", None, "Output folder (robustness.json, robustness.md).")
flags.mark_flags_as_required(["model", "out"])


def run() -> int:
    from tfrobust import data, evaluation, utils

    model_fn, model = evaluation.load_model_fn(FLAGS.model)
    x, y = data.load_dataset(FLAGS.dataset, "test", data_dir=FLAGS.data_dir, limit=FLAGS.num_examples)
    report = evaluation.robust_accuracy(model_fn, x, y, eps=FLAGS.eps, norm=FLAGS.norm, preset=FLAGS.preset,
                                        batch_size=FLAGS.batch_size, model=model, steps=FLAGS.steps,
                                        eot_samples=FLAGS.eot_samples, seed=FLAGS.seed, verbose=True)
    out = Path(FLAGS.out)
    result = {**report.to_dict(), "model": str(FLAGS.model), "dataset": FLAGS.dataset,
              "environment": utils.environment()}
    utils.atomic_write_json(out / "robustness.json", result)
    utils.atomic_write_text(out / "robustness.md", report.to_markdown())
    print(f"clean accuracy: {report.clean_accuracy:.4f}, robust accuracy: {report.robust_accuracy:.4f} "
          f"({report.num_examples} images, preset {FLAGS.preset})")
    for w in report.warnings:
        print(f"warning: {w}")
    print(f"results: {out / 'robustness.json'}, {out / 'robustness.md'}")
    return 0
