"""``tfrobust train``: train a model on a dataset, write ``model.keras`` and ``metrics.json``.

Training goes through :mod:`tfrobust.trainers`: ``--adv`` selects adversarial training (with any
``--defense``: CAS, CIFS and PCL train their label-conditioned path on the adversarial examples,
which are crafted on the inference model), ``--distill_from`` distils a saved teacher (or a
comma-separated ensemble of them, soft targets averaged) into the chosen model, ``--mixup``,
``--label_smoothing`` and ``--random_erasing`` transform the training batches and
``--agc_clipping`` turns on adaptive gradient clipping. The saved model is always the plain
(wrapped) inference model.

Python: ``run(Config(out="runs/m", epochs=1, train_subset=2000))`` returns the metrics dict.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from tfrobust import data, evaluation, models, trainers, utils
from tfrobust._keras import keras
from tfrobust.cli import _common
from tfrobust.cli import _flags as F
from tfrobust.cli._flags import setting

ADV = ("none", "fgsm", "fgsm_rs", "pgd", "trades")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(_common.DataConfig, _common.DefenseConfig):
    """Settings of ``tfrobust train`` (each is also a flag of the same name; ``--defense`` replaces
    ``--model``)."""

    out: str = setting(help="Output folder (model.keras, metrics.json, checkpoints).")
    model: str = setting("small_cnn", "Architecture from tfrobust.models (unless --defense is set).",
                         choices=models.names())
    epochs: int = setting(1, "Training epochs.")
    batch_size: int = setting(128, "Batch size.")
    lr: float = setting(1e-3, "Adam learning rate.")
    seed: int = setting(0, "Seed for Python, NumPy and TensorFlow.")
    train_subset: int | None = setting(None, "Use only the first N training images.")
    test_subset: int | None = setting(None, "Evaluate on only the first N test images.")
    adv: str = setting("none", "Adversarial training method (tfrobust.trainers.AdversarialTrainer).",
                       choices=ADV)
    eps: float = setting(0.1, "L-inf radius of adversarial training (images in [0, 1]).")
    adv_steps: int = setting(7, "Attack steps for --adv=pgd/trades.")
    eps_warmup_epochs: int = setting(0, "Epochs of linear eps warm-up.")
    distill_from: str | None = setting(None, "Saved teacher model (.keras/.h5/SavedModel) to distil from, "
                                       "or a comma-separated list of them (an ensemble: soft targets "
                                       "averaged).")
    distill_temperature: float = setting(4.0, "Distillation temperature T.")
    distill_alpha: float = setting(0.1, "Weight of the hard-label loss in distillation.")
    mixup: float = setting(0.0, "mixup Beta(alpha, alpha) parameter; 0 disables mixup.")
    label_smoothing: float = setting(0.0, "Label smoothing epsilon; 0 disables it.")
    random_erasing: float = setting(0.0, "Random erasing probability p (Zhong et al.); 0 disables it.")
    agc_clipping: float | None = setting(None, "Adaptive gradient clipping lambda (Brock et al.; e.g. "
                                         "0.04); unset disables AGC. The logits layer is excluded, as "
                                         "in the paper.")
    robust_preset: str = setting("fast", "With --adv: tfrobust.evaluation preset of the robust accuracy "
                                 "in metrics.json (fast = PGD-20, standard = APGD-CE + APGD-DLR).",
                                 choices=("fast", "standard"))

    def __post_init__(self):
        _common.check_choices(self)
        _common.check_bounds(self, epochs=(1, None), batch_size=(1, None), lr=(0.0, None), seed=(0, None),
                             train_subset=(1, None), test_subset=(1, None), eps=(0.0, None),
                             adv_steps=(1, None), eps_warmup_epochs=(0, None),
                             distill_temperature=(1e-6, None), distill_alpha=(0.0, 1.0), mixup=(0.0, None),
                             label_smoothing=(0.0, 0.999), random_erasing=(0.0, 1.0),
                             agc_clipping=(0.0, None))
        if not self.out:
            raise ValueError(f"`out` (the output folder) is required. Received: out={self.out!r}")

    def teacher_paths(self) -> list:
        paths = [p.strip() for p in (self.distill_from or "").split(",") if p.strip()]
        for p in paths:
            if not Path(p).exists():
                raise FileNotFoundError(f"teacher model not found: {p}. "
                                        f"Received: distill_from={self.distill_from!r}")
        return paths


def _make_trainer(config, model, steps_per_epoch, train_model=None):
    """The trainer of the run; ``train_model`` is the label-conditioned path of CAS/CIFS/PCL."""
    if config.adv != "none" and config.distill_from:
        raise ValueError("--adv and --distill_from cannot be combined in one run; train the robust "
                         f"teacher first, then distil it. Received: adv={config.adv!r}, "
                         f"distill_from={config.distill_from!r}")
    common = {"agc_clipping": config.agc_clipping, "agc_exclude": ("logits",)}
    if config.adv != "none":
        return trainers.AdversarialTrainer(model, train_model=train_model, method=config.adv, eps=config.eps,
                                           steps=config.adv_steps,
                                           eps_warmup_steps=config.eps_warmup_epochs * steps_per_epoch,
                                           seed=config.seed, **common)
    if config.distill_from:
        if train_model is not None:
            raise ValueError("distilling into a label-conditioned defense is not supported; pick "
                             "another --defense or drop --distill_from. "
                             f"Received: defense={config.defense!r}")
        teachers = [utils.load_model(p) for p in config.teacher_paths()]
        return trainers.Distiller(model, teacher=teachers if len(teachers) > 1 else teachers[0],
                                  temperature=config.distill_temperature, alpha=config.distill_alpha,
                                  **common)
    return trainers.Trainer(model, train_model=train_model, **common)


def run(config: Config) -> dict:
    """Train and evaluate (with ``adv``: robust accuracy too); write ``model.keras`` and ``metrics.json``."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    utils.set_seed(config.seed)
    x_train, y_train = _common.load_split(config, "train", config.train_subset)
    x_test, y_test = _common.load_split(config, "test", config.test_subset)
    info = data.dataset_info(config.dataset)
    train_model = None
    if config.defense == "none":
        model = models.get(config.model, input_shape=info.image_shape, num_classes=info.num_classes)
    else:
        train_model, model = _common.defended_pair(config.defense, info.image_shape, info.num_classes)
    train_ds = data.as_tf_dataset(x_train, y_train, batch_size=config.batch_size, shuffle=True,
                                  seed=config.seed)
    if config.random_erasing > 0:
        train_ds = train_ds.map(trainers.random_erasing_fn(config.random_erasing, seed=config.seed))
    soft_labels = config.mixup > 0 or config.label_smoothing > 0
    if config.mixup > 0:
        train_ds = train_ds.map(trainers.mixup_fn(config.mixup, num_classes=info.num_classes,
                                                  seed=config.seed))
    if config.label_smoothing > 0:
        train_ds = train_ds.map(trainers.label_smoothing_fn(config.label_smoothing,
                                                            num_classes=info.num_classes))
    steps_per_epoch = -(-len(x_train) // config.batch_size)
    trainer = _make_trainer(config, model, steps_per_epoch, train_model)
    # Soft (mixup / smoothed) training labels need the categorical accuracy; the test labels are
    # then one-hot too, so the same metric serves both.
    accuracy = keras.metrics.CategoricalAccuracy(name="accuracy") if soft_labels else "accuracy"
    trainer.compile(optimizer=keras.optimizers.Adam(config.lr), metrics=[accuracy])
    y_eval = np.eye(info.num_classes, dtype=np.float32)[y_test] if soft_labels else y_test
    test_ds = data.as_tf_dataset(x_test, y_eval, batch_size=512)
    print(f"training {config.model} on {config.dataset}: {len(x_train)} train / {len(x_test)} test "
          f"images, {config.epochs} epoch(s), trainer {type(trainer).__name__}", flush=True)
    # BackupAndRestore makes an interrupted run resume at its last finished epoch when re-run
    # with the same --out; the backup is deleted once training completes.
    backup = keras.callbacks.BackupAndRestore(backup_dir=str(out / "backup"))
    start = time.perf_counter()
    history = trainer.fit(train_ds, epochs=config.epochs, callbacks=[backup],
                          verbose=1 if sys.stdout.isatty() else 2)
    train_seconds = time.perf_counter() - start
    shutil.rmtree(out / "backup", ignore_errors=True)  # finished: nothing left to resume
    test_loss = trainer.evaluate(test_ds, verbose=0, return_dict=True)["loss"]
    test_acc = evaluation.accuracy(model, x_test, y_test, batch_size=512)
    robust = None
    robust_config = None
    if config.adv != "none":
        report = evaluation.robust_accuracy(model, x_test, y_test, eps=config.eps,
                                            preset=config.robust_preset, seed=config.seed)
        robust, robust_config = float(report.robust_accuracy), report.to_dict()
    model_path = trainer.save_inner(out / "model.keras")
    distilled = bool(config.distill_from)
    metrics = {
        "dataset": config.dataset,
        "model": config.model if config.defense == "none" else model.name,
        "defense": config.defense,
        "params": int(model.count_params()),
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "lr": config.lr,
        "seed": config.seed,
        "train_examples": int(len(x_train)),
        "test_examples": int(len(x_test)),
        "history": {k: [float(v) for v in vals] for k, vals in history.history.items()},
        "test_loss": float(test_loss),
        "test_accuracy": float(test_acc),
        "trainer": type(trainer).__name__,
        "adv": config.adv,
        "eps": config.eps if config.adv != "none" else None,
        "adv_steps": config.adv_steps if config.adv in ("pgd", "trades") else None,
        "robust_accuracy": robust,
        "robust_evaluation": robust_config,
        "distill_from": config.teacher_paths() or None,
        "distill_temperature": config.distill_temperature if distilled else None,
        "distill_alpha": config.distill_alpha if distilled else None,
        "mixup": config.mixup,
        "label_smoothing": config.label_smoothing,
        "random_erasing": config.random_erasing,
        "agc_clipping": config.agc_clipping,
        "train_seconds": round(train_seconds, 2),
        "environment": utils.environment(),
    }
    if not np.isfinite(metrics["test_loss"]):
        print("warning: test loss is not finite; try a lower --lr", file=sys.stderr)
        metrics["test_loss"] = None
    utils.atomic_write_json(out / "metrics.json", metrics)
    print(f"test accuracy: {test_acc:.4f} ({len(x_test)} images)")
    if robust is not None:
        print(f"robust accuracy: {robust:.4f} (tfrobust.evaluation preset {config.robust_preset!r}, "
              f"eps {config.eps})")
    print(f"model: {model_path}")
    print(f"metrics: {out / 'metrics.json'}")
    return metrics


def main(argv=None) -> int:
    """absl layer: the parsed flags become a :class:`Config`."""
    del argv
    run(F.from_flags(Config))
    return 0
