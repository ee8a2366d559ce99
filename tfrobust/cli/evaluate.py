"""``tfrobust evaluate``: robust accuracy of a saved model with a preset; writes JSON and Markdown."""

from __future__ import annotations

from pathlib import Path

from absl import flags

FLAGS = flags.FLAGS

flags.DEFINE_string("model", None, "Saved model: .keras, .h5 or a SavedModel folder; or a .tflite file "
                    "(then --source is needed and the deployed file is attacked as deployed).")
flags.DEFINE_enum("dataset", "fashion_mnist", ["fashion_mnist", "mnist"], "Dataset (its test split).")
flags.DEFINE_enum("preset", "standard", ["fast", "standard", "adaptive"],
                  "fast = PGD-20; standard = APGD-CE, APGD-T, Square (AutoAttack's standard without FAB-T); "
                  "adaptive = standard + BPDA, or AutoAttack's rand version (EOT) for random models.")
flags.DEFINE_float("eps", 0.1, "Perturbation radius (images are in [0, 1]).", lower_bound=0.0)
flags.DEFINE_enum("norm", "linf", ["linf", "l2"], "Norm of the perturbation ball.")
flags.DEFINE_integer("steps", None, "Override the preset's attack steps.", lower_bound=1)
flags.DEFINE_integer("eot_samples", 20, "EOT forward passes per gradient (adaptive preset).", lower_bound=1)
flags.DEFINE_integer("num_examples", 1000, "Evaluate the first N test images.", lower_bound=1)
flags.DEFINE_integer("batch_size", 256, "Batch size.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of the attacks' random starts.", lower_bound=0)
flags.DEFINE_string("data_dir", None, "Folder searched first for the dataset's IDX files.")
flags.DEFINE_string("out", None, "Output folder (robustness.json, robustness.md).")
flags.DEFINE_string("source", None, "With a .tflite --model: the Keras model it was converted from "
                    "(its gradients drive APGD through the interpreter; its standard examples are replayed).")
flags.DEFINE_integer("square_queries", 5000, "Square's queries per example (0 skips).", lower_bound=0)
flags.DEFINE_integer("targets", 3, "With a .tflite --model: APGD-T target classes (AutoAttack: 9; 0 skips).",
                     lower_bound=0)
flags.mark_flags_as_required(["model", "out"])


def run() -> int:
    from tfrobust import data, evaluation, utils

    if str(FLAGS.model).endswith(".tflite"):
        return _run_deployed()
    model_fn, model = evaluation.load_model_fn(FLAGS.model)
    x, y = data.load_dataset(FLAGS.dataset, "test", data_dir=FLAGS.data_dir, limit=FLAGS.num_examples)
    report = evaluation.robust_accuracy(model_fn, x, y, eps=FLAGS.eps, norm=FLAGS.norm, preset=FLAGS.preset,
                                        batch_size=FLAGS.batch_size, model=model, steps=FLAGS.steps,
                                        queries=FLAGS.square_queries, eot_samples=FLAGS.eot_samples,
                                        seed=FLAGS.seed, verbose=True)
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


def _run_deployed() -> int:
    """``--model=x.tflite --source=x.keras``: the worst case of transfer, APGD through the interpreter
    and Square on it (:func:`tfrobust.evaluation.robust_accuracy_deployed`)."""
    from tfrobust import data, evaluation, tflite_tools, utils
    from tfrobust.compression import quantize_scope

    if not FLAGS.source:
        raise ValueError("--model is a .tflite file: pass --source=<the Keras model it was converted from> "
                         "(its gradients and transferred examples are part of the evaluation)")
    with quantize_scope():  # a QAT source (.h5 from `tfrobust compress`) loads too
        _, source = evaluation.load_model_fn(FLAGS.source)
    deployed = tflite_tools.TFLiteModel(FLAGS.model)
    x, y = data.load_dataset(FLAGS.dataset, "test", data_dir=FLAGS.data_dir, limit=FLAGS.num_examples)
    report = evaluation.robust_accuracy_deployed(
        deployed, source, x, y, eps=FLAGS.eps, norm=FLAGS.norm, steps=FLAGS.steps or 100,
        targets=FLAGS.targets, square_queries=FLAGS.square_queries, batch_size=FLAGS.batch_size,
        seed=FLAGS.seed, verbose=True)
    out = Path(FLAGS.out)
    result = {**report.to_dict(), "model": str(FLAGS.model), "source": str(FLAGS.source),
              "dataset": FLAGS.dataset, "environment": utils.environment()}
    c = report.config
    utils.atomic_write_json(out / "robustness.json", result)
    utils.atomic_write_text(out / "robustness.md", report.to_markdown() + (
        f"\nTransfer alone: {c['transfer_only_robust_accuracy']:.4f} (overstates the worst case by "
        f"{100 * c['transfer_overstatement']:.1f} points).\n"))
    print(f"deployed {FLAGS.model}: clean accuracy {report.clean_accuracy:.4f}, robust accuracy (worst case) "
          f"{report.robust_accuracy:.4f}; transfer alone {c['transfer_only_robust_accuracy']:.4f} "
          f"({report.num_examples} images)")
    for w in report.warnings:
        print(f"warning: {w}")
    print(f"results: {out / 'robustness.json'}, {out / 'robustness.md'}")
    return 0
