"""``tfrobust train``: train a model on a dataset, write ``model.keras`` and ``metrics.json``.

Training goes through :mod:`tfrobust.trainers`: ``--adv`` selects adversarial training (with any
``--defense``: CAS, CIFS and PCL train their label-conditioned path on the adversarial examples,
which are crafted on the inference model), ``--distill_from`` distils a saved teacher (or a
comma-separated ensemble of them, soft targets averaged) into the chosen model, ``--mixup``,
``--label_smoothing`` and ``--random_erasing`` transform the training batches and
``--agc_clipping`` turns on adaptive gradient clipping. The saved model is always the plain
(wrapped) inference model.
"""

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
flags.DEFINE_enum("defense", "none", sorted(models.DEFENSES),
                  "Defense inserted in the small CNN (tfrobust.models.defended_cnn); replaces --model.")
flags.DEFINE_integer("epochs", 1, "Training epochs.", lower_bound=1)
flags.DEFINE_integer("batch_size", 128, "Batch size.", lower_bound=1)
flags.DEFINE_float("lr", 1e-3, "Adam learning rate.", lower_bound=0.0)
flags.DEFINE_integer("seed", 0, "Seed for Python, NumPy and TensorFlow.", lower_bound=0)
flags.DEFINE_integer("train_subset", None, "Use only the first N training images.", lower_bound=1)
flags.DEFINE_integer("test_subset", None, "Evaluate on only the first N test images.", lower_bound=1)
flags.DEFINE_string("data_dir", None, "Folder searched first for the dataset's IDX files.")
flags.DEFINE_string("out", None, "Output folder (model.keras, metrics.json, checkpoints).")
flags.DEFINE_enum("adv", "none", ["none", "fgsm", "fgsm_rs", "pgd", "trades"],
                  "Adversarial training method (tfrobust.trainers.AdversarialTrainer).")
flags.DEFINE_float("eps", 0.1, "L-inf radius of adversarial training (images in [0, 1]).", lower_bound=0.0)
flags.DEFINE_integer("adv_steps", 7, "Attack steps for --adv=pgd/trades.", lower_bound=1)
flags.DEFINE_integer("eps_warmup_epochs", 0, "Epochs of linear eps warm-up.", lower_bound=0)
flags.DEFINE_string("distill_from", None, "Saved teacher model (.keras/.h5/SavedModel) to distil from, "
                    "or a comma-separated list of them (an ensemble: soft targets averaged).")
flags.DEFINE_float("distill_temperature", 4.0, "Distillation temperature T.", lower_bound=1e-6)
flags.DEFINE_float("distill_alpha", 0.1, "Weight of the hard-label loss in distillation.",
                   lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_float("mixup", 0.0, "mixup Beta(alpha, alpha) parameter; 0 disables mixup.", lower_bound=0.0)
flags.DEFINE_float("label_smoothing", 0.0, "Label smoothing epsilon; 0 disables it.",
                   lower_bound=0.0, upper_bound=0.999)
flags.DEFINE_float("random_erasing", 0.0, "Random erasing probability p (Zhong et al.); 0 disables it.",
                   lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_float("agc_clipping", None, "Adaptive gradient clipping lambda (Brock et al.; e.g. 0.04); "
                   "unset disables AGC. The logits layer is excluded, as in the paper.", lower_bound=0.0)
flags.DEFINE_enum("robust_preset", "fast", ["fast", "standard"],
                  "With --adv: tfrobust.evaluation preset of the robust accuracy in metrics.json "
                  "(fast = PGD-20, standard = APGD-CE + APGD-DLR).")
flags.mark_flag_as_required("out")


def _teacher_paths():
    paths = [p.strip() for p in (FLAGS.distill_from or "").split(",") if p.strip()]
    for p in paths:
        if not Path(p).exists():
            raise FileNotFoundError(f"teacher model not found: {p}. "
                                    f"Received: distill_from={FLAGS.distill_from!r}")
    return paths


def _make_trainer(model, steps_per_epoch, train_model=None):
    """The trainer of the run; ``train_model`` is the label-conditioned path of CAS/CIFS/PCL."""
    from tfrobust import trainers
    from tfrobust._keras import keras

    if FLAGS.adv != "none" and FLAGS.distill_from:
        raise ValueError("--adv and --distill_from cannot be combined in one run; train the robust "
                         f"teacher first, then distil it. Received: adv={FLAGS.adv!r}, "
                         f"distill_from={FLAGS.distill_from!r}")
    common = {"agc_clipping": FLAGS.agc_clipping, "agc_exclude": ("logits",)}
    if FLAGS.adv != "none":
        return trainers.AdversarialTrainer(model, train_model=train_model, method=FLAGS.adv, eps=FLAGS.eps,
                                           steps=FLAGS.adv_steps,
                                           eps_warmup_steps=FLAGS.eps_warmup_epochs * steps_per_epoch,
                                           seed=FLAGS.seed, **common)
    if FLAGS.distill_from:
        if train_model is not None:
            raise ValueError("distilling into a label-conditioned defense is not supported; pick "
                             f"another --defense or drop --distill_from. Received: defense={FLAGS.defense!r}")
        teachers = [keras.models.load_model(p, compile=False) for p in _teacher_paths()]
        return trainers.Distiller(model, teacher=teachers if len(teachers) > 1 else teachers[0],
                                  temperature=FLAGS.distill_temperature, alpha=FLAGS.distill_alpha,
                                  **common)
    return trainers.Trainer(model, train_model=train_model, **common)


def run() -> int:
    import numpy as np

    from tfrobust import data, trainers, utils
    from tfrobust._keras import keras

    out = Path(FLAGS.out)
    out.mkdir(parents=True, exist_ok=True)
    utils.set_seed(FLAGS.seed)
    x_train, y_train = data.load_dataset(FLAGS.dataset, "train", data_dir=FLAGS.data_dir,
                                         limit=FLAGS.train_subset)
    x_test, y_test = data.load_dataset(FLAGS.dataset, "test", data_dir=FLAGS.data_dir,
                                       limit=FLAGS.test_subset)
    info = data.dataset_info(FLAGS.dataset)
    train_model = None
    if FLAGS.defense == "none":
        model = models.get(FLAGS.model, input_shape=info.image_shape, num_classes=info.num_classes)
    else:
        train_model, model = models.defended_cnn(FLAGS.defense, input_shape=info.image_shape,
                                                 num_classes=info.num_classes, return_train_model=True)
        if train_model is model:  # not label-conditioned
            train_model = None
    train_ds = data.as_tf_dataset(x_train, y_train, batch_size=FLAGS.batch_size, shuffle=True,
                                  seed=FLAGS.seed)
    if FLAGS.random_erasing > 0:
        train_ds = train_ds.map(trainers.random_erasing_fn(FLAGS.random_erasing, seed=FLAGS.seed))
    soft_labels = FLAGS.mixup > 0 or FLAGS.label_smoothing > 0
    if FLAGS.mixup > 0:
        train_ds = train_ds.map(trainers.mixup_fn(FLAGS.mixup, num_classes=info.num_classes,
                                                  seed=FLAGS.seed))
    if FLAGS.label_smoothing > 0:
        train_ds = train_ds.map(trainers.label_smoothing_fn(FLAGS.label_smoothing,
                                                            num_classes=info.num_classes))
    steps_per_epoch = -(-len(x_train) // FLAGS.batch_size)
    trainer = _make_trainer(model, steps_per_epoch, train_model)
    # Soft (mixup / smoothed) training labels need the categorical accuracy; the test labels are
    # then one-hot too, so the same metric serves both.
    accuracy = keras.metrics.CategoricalAccuracy(name="accuracy") if soft_labels else "accuracy"
    trainer.compile(optimizer=keras.optimizers.Adam(FLAGS.lr), metrics=[accuracy])
    y_eval = np.eye(info.num_classes, dtype=np.float32)[y_test] if soft_labels else y_test
    test_ds = data.as_tf_dataset(x_test, y_eval, batch_size=512)
    print(f"training {FLAGS.model} on {FLAGS.dataset}: {len(x_train)} train / {len(x_test)} test "
          f"images, {FLAGS.epochs} epoch(s), trainer {type(trainer).__name__}", flush=True)
    # BackupAndRestore makes an interrupted run resume at its last finished epoch when re-run
    # with the same --out; the backup is deleted once training completes.
    backup = keras.callbacks.BackupAndRestore(backup_dir=str(out / "backup"))
    start = time.perf_counter()
    history = trainer.fit(train_ds, epochs=FLAGS.epochs, callbacks=[backup],
                          verbose=1 if sys.stdout.isatty() else 2)
    train_seconds = time.perf_counter() - start
    shutil.rmtree(out / "backup", ignore_errors=True)  # finished: nothing left to resume
    test_loss = trainer.evaluate(test_ds, verbose=0, return_dict=True)["loss"]
    test_acc = float(np.mean(np.argmax(model.predict(data.as_tf_dataset(x_test, batch_size=512), verbose=0),
                                       axis=1) == y_test))
    robust = None
    robust_config = None
    if FLAGS.adv != "none":
        from tfrobust import evaluation

        report = evaluation.robust_accuracy(model, x_test, y_test, eps=FLAGS.eps, preset=FLAGS.robust_preset,
                                            seed=FLAGS.seed)
        robust, robust_config = float(report.robust_accuracy), report.to_dict()
    model_path = trainer.save_inner(out / "model.keras")
    metrics = {
        "dataset": FLAGS.dataset,
        "model": FLAGS.model if FLAGS.defense == "none" else model.name,
        "defense": FLAGS.defense,
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
        "trainer": type(trainer).__name__,
        "adv": FLAGS.adv,
        "eps": FLAGS.eps if FLAGS.adv != "none" else None,
        "adv_steps": FLAGS.adv_steps if FLAGS.adv in ("pgd", "trades") else None,
        "robust_accuracy": robust,
        "robust_evaluation": robust_config,
        "distill_from": _teacher_paths() or None,
        "distill_temperature": FLAGS.distill_temperature if FLAGS.distill_from else None,
        "distill_alpha": FLAGS.distill_alpha if FLAGS.distill_from else None,
        "mixup": FLAGS.mixup,
        "label_smoothing": FLAGS.label_smoothing,
        "random_erasing": FLAGS.random_erasing,
        "agc_clipping": FLAGS.agc_clipping,
        "train_seconds": round(train_seconds, 2),
        "environment": utils.environment(),
    }
    if not np.isfinite(metrics["test_loss"]):
        print("warning: test loss is not finite; try a lower --lr", file=sys.stderr)
        metrics["test_loss"] = None
    utils.atomic_write_json(out / "metrics.json", metrics)
    print(f"test accuracy: {test_acc:.4f} ({len(x_test)} images)")
    if robust is not None:
        print(f"robust accuracy: {robust:.4f} (tfrobust.evaluation preset {FLAGS.robust_preset!r}, "
              f"eps {FLAGS.eps})")
    print(f"model: {model_path}")
    print(f"metrics: {out / 'metrics.json'}")
    return 0
