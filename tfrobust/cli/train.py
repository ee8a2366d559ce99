"""``tfrobust train``: train a model on a dataset, write ``model.keras`` and ``metrics.json``."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from absl import flags

from tfrobust import models

FLAGS = flags.FLAGS

flags.DEFINE_enum("dataset", "fashion_mnist", ["fashion_mnist", "mnist"], "Dataset to train on.")
flags.DEFINE_enum("model", "small_cnn", models.names(), "Architecture from tfrobust.models.")
flags.DEFINE_integer("epochs", 1, "Training epochs.", lower_bound=1)
flags.DEFINE_integer("batch_size", 128, "Batch size.", lower_bound=1)
flags.DEFINE_float("lr", 1e-3, "Adam learning rate.", lower_bound=0.0)
flags.DEFINE_integer("seed", 0, "Seed for Python, NumPy and TensorFlow.", lower_bound=0)
flags.DEFINE_integer("train_subset", None, "Use only the first N training images.", lower_bound=1)
flags.DEFINE_integer("test_subset", None, "Evaluate on only the first N test images.", lower_bound=1)
flags.DEFINE_string("data_dir", None, "Folder searched first for the dataset's IDX files.")
flags.DEFINE_string("out", None, "Output folder (model.keras, metrics.json, checkpoints).")
flags.mark_flag_as_required("out")


def run() -> int:
    import numpy as np

    from tfrobust import data, utils
    from tfrobust._keras import keras

    out = Path(FLAGS.out)
    out.mkdir(parents=True, exist_ok=True)
    utils.set_seed(FLAGS.seed)
    x_train, y_train = data.load_dataset(FLAGS.dataset, "train", data_dir=FLAGS.data_dir,
                                         limit=FLAGS.train_subset)
    x_test, y_test = data.load_dataset(FLAGS.dataset, "test", data_dir=FLAGS.data_dir,
                                       limit=FLAGS.test_subset)
    info = data.dataset_info(FLAGS.dataset)
    model = models.get(FLAGS.model, input_shape=info.image_shape, num_classes=info.num_classes)
    model.compile(optimizer=keras.optimizers.Adam(FLAGS.lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    train_ds = data.as_tf_dataset(x_train, y_train, batch_size=FLAGS.batch_size, shuffle=True,
                                  seed=FLAGS.seed)
    test_ds = data.as_tf_dataset(x_test, y_test, batch_size=512)
    print(f"training {FLAGS.model} on {FLAGS.dataset}: {len(x_train)} train / {len(x_test)} test "
          f"images, {FLAGS.epochs} epoch(s)", flush=True)
    # BackupAndRestore makes an interrupted run resume at its last finished epoch when re-run
    # with the same --out; the backup is deleted once training completes.
    backup = keras.callbacks.BackupAndRestore(backup_dir=str(out / "backup"))
    start = time.perf_counter()
    history = model.fit(train_ds, epochs=FLAGS.epochs, callbacks=[backup],
                        verbose=1 if sys.stdout.isatty() else 2)
    train_seconds = time.perf_counter() - start
    shutil.rmtree(out / "backup", ignore_errors=True)  # finished: nothing left to resume
    test_loss, test_acc = model.evaluate(test_ds, verbose=0)
    model_path = utils.atomic_save_model(model, out / "model.keras")
    metrics = {
        "dataset": FLAGS.dataset,
        "model": FLAGS.model,
        "params": int(model.count_params()),
        "epochs": FLAGS.epochs,
        "batch_size": FLAGS.batch_size,
        "lr": FLAGS.lr,
        "seed": FLAGS.seed,
        "train_examples": int(len(x_train)),
        "test_examples": int(len(x_test)),
        "history": {k: [float(v) for v in vals] for k, vals in history.history.items()},
        "test_loss": float(test_loss),
        "test_accuracy": float(test_acc),
        "train_seconds": round(train_seconds, 2),
        "environment": utils.environment(),
    }
    if not np.isfinite(metrics["test_loss"]):
        print("warning: test loss is not finite; try a lower --lr", file=sys.stderr)
        metrics["test_loss"] = None
    utils.atomic_write_json(out / "metrics.json", metrics)
    print(f"test accuracy: {test_acc:.4f} ({len(x_test)} images)")
    print(f"model: {model_path}")
    print(f"metrics: {out / 'metrics.json'}")
    return 0
