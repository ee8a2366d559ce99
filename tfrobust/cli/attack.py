"""``tfrobust attack``: run one attack on a saved model, write ``attack.json`` and ``attack.md``."""

from __future__ import annotations

import time
from pathlib import Path

from absl import flags

FLAGS = flags.FLAGS

flags.DEFINE_string("model", None, "Saved model: .keras, .h5 or a SavedModel folder.")
flags.DEFINE_enum("dataset", "fashion_mnist", ["fashion_mnist", "mnist"], "Dataset (its test split).")
flags.DEFINE_enum("attack", "pgd", ["fgsm", "pgd", "apgd-ce", "apgd-dlr", "apgd-t", "square"],
                  "Attack to run (tfrobust.attacks.get names).")
flags.DEFINE_float("eps", None, "Perturbation radius (images are in [0, 1]).", lower_bound=0.0)
flags.DEFINE_enum("norm", "linf", ["linf", "l2"], "Norm of the perturbation ball.")
flags.DEFINE_integer("steps", 20, "Attack steps (pgd, apgd-*).", lower_bound=1)
flags.DEFINE_float("step_size", None, "PGD step size (default 2.5 * eps / steps).", lower_bound=0.0)
flags.DEFINE_integer("restarts", 1, "Random restarts (pgd, apgd-*).", lower_bound=1)
flags.DEFINE_integer("queries", 5000, "Queries per example (square).", lower_bound=0)
flags.DEFINE_integer("num_examples", 1000, "Attack the first N test images.", lower_bound=1)
flags.DEFINE_integer("batch_size", 256, "Batch size.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of the random start.", lower_bound=0)
flags.DEFINE_string("data_dir", None, "Folder searched first for the dataset's IDX files.")
flags.DEFINE_string("out", None, "Output folder (attack.json, attack.md).")
flags.mark_flags_as_required(["model", "eps", "out"])


def _config():
    """The attack's full configuration from the flags: its own settings only, defaults from attacks.get."""
    from tfrobust import attacks

    flag_values = {"norm": FLAGS.norm, "steps": FLAGS.steps, "step_size": FLAGS.step_size,
                   "restarts": FLAGS.restarts, "queries": FLAGS.queries}
    settings = attacks.get(FLAGS.attack, eps=FLAGS.eps).get_config()
    settings.update({k: v for k, v in flag_values.items() if k in settings})
    return {"attack": settings, "seed": FLAGS.seed, "batch_size": FLAGS.batch_size}


def run() -> int:
    return execute(_config(), model_path=FLAGS.model, dataset=FLAGS.dataset, data_dir=FLAGS.data_dir,
                   num_examples=FLAGS.num_examples, out=FLAGS.out)


def execute(cfg, *, model_path, dataset, data_dir, num_examples, out) -> int:
    """Run ``cfg["attack"]`` (an :func:`tfrobust.attacks.get` config) on a saved model's test images."""
    import numpy as np
    import tensorflow as tf

    from tfrobust import attacks, data, evaluation, utils

    model_fn, _ = evaluation.load_model_fn(model_path)
    x, y = data.load_dataset(dataset, "test", data_dir=data_dir, limit=num_examples)
    attack = attacks.get(cfg["attack"])
    bs = cfg["batch_size"]

    start = time.perf_counter()
    adv = np.concatenate([np.asarray(attack(model_fn, tf.constant(x[i:i + bs]), tf.constant(y[i:i + bs]),
                                            seed=cfg["seed"]))
                          for i in range(0, len(x), bs)])
    seconds = time.perf_counter() - start
    clean = evaluation.accuracy(model_fn, x, y, batch_size=bs)
    adv_acc = evaluation.accuracy(model_fn, adv, y, batch_size=bs)
    delta = (adv - x).reshape(len(x), -1)
    result = {
        "model": str(model_path), "dataset": dataset, "num_examples": int(len(x)), "config": cfg,
        "clean_accuracy": clean, "adversarial_accuracy": adv_acc, "attack_seconds": round(seconds, 3),
        "max_linf": float(np.abs(delta).max()), "max_l2": float(np.linalg.norm(delta, axis=1).max()),
        "environment": utils.environment(),
    }
    out = Path(out)
    utils.atomic_write_json(out / "attack.json", result)
    settings = attack.describe()
    utils.atomic_write_text(out / "attack.md", "\n".join([
        f"### {attack.name} on {Path(model_path).name} ({dataset}, {len(x)} test images)", "",
        "| clean accuracy | adversarial accuracy | attack seconds | settings |", "|---|---|---|---|",
        f"| {clean:.4f} | {adv_acc:.4f} | {seconds:.2f} | {settings} |", ""]))
    print(f"clean accuracy: {clean:.4f}, adversarial accuracy: {adv_acc:.4f} ({len(x)} images, "
          f"{seconds:.1f} s)")
    print(f"results: {out / 'attack.json'}, {out / 'attack.md'}")
    return 0
