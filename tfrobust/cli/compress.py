"""``tfrobust compress``: compress a saved model, write it with a before/after report.

Methods: ``prune`` (TF-MOT magnitude pruning, stripped), ``jp`` (joint weight + activation
pruning), ``deep_compression`` (prune -> cluster -> Huffman; also writes the encoded stream),
``lowrank`` (truncated-SVD factorisation + fine-tuning), ``cluster`` (TF-MOT weight sharing) and
``binarize`` (binary-weight twin of every hidden Dense/Conv2D, first and last kept float, fine-tuned).
Every run reports accuracy and robust accuracy before and after (robust accuracy needs
``tfrobust.evaluation``; without it the report says so).

Python: ``run(Config(model="m.keras", method="prune", out="runs/pruned"))`` returns the report dict.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
import warnings
from pathlib import Path

from tfrobust import compression, data, utils
from tfrobust._keras import keras
from tfrobust.cli import _common
from tfrobust.cli import _flags as F
from tfrobust.cli._flags import setting

METHODS = ["prune", "jp", "deep_compression", "lowrank", "cluster", "binarize"]
#: The settings recorded under "flags" in report.json.
RECORDED = ("epochs", "batch_size", "lr", "sparsity", "structure", "activation_sparsity", "cluster_bits",
            "binary_mode", "energy", "eps", "robust", "seed", "train_subset", "test_subset")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(_common.DataConfig):
    """Settings of ``tfrobust compress`` (each is also a flag of the same name)."""

    model: str = setting(help="Path of the trained tf_keras model (.keras, .h5 or SavedModel folder).")
    method: str = setting(help="Compression method.", choices=METHODS)
    out: str = setting(help="Output folder (model.keras, report.json[, model.tfrdc]).")
    epochs: int = setting(2, "Fine-tuning epochs (deep_compression: pruning epochs; jp: stages).")
    batch_size: int = setting(128, "Batch size.")
    lr: float = setting(5e-4, "Adam learning rate of the fine-tuning.")
    sparsity: float = setting(0.8, "Target weight sparsity (prune, jp, deep_compression).")
    structure: str = setting("none", "Pruning structure (prune).", choices=("none", "2:4"))
    activation_sparsity: float = setting(0.5, "Target activation sparsity per ReLU layer (jp).")
    cluster_bits: int = setting(5, "Index bits per layer, k = 2^bits shared weights (deep_compression, "
                                "cluster).")
    energy: float = setting(0.9, "Fraction of squared singular values kept (lowrank).")
    binary_mode: str = setting("bwn", "Binarization (binarize).", choices=("binaryconnect", "bwn", "xnor"))
    eps: float = setting(0.1, "L-inf radius of the robust-accuracy evaluation.")
    robust: bool = setting(True, "Measure robust accuracy before and after (fast preset).")
    seed: int = setting(0, "Seed for Python, NumPy and TensorFlow.")
    train_subset: int | None = setting(None, "Use only the first N training images.")
    test_subset: int | None = setting(None, "Evaluate on only the first N test images.")

    def __post_init__(self):
        _common.check_choices(self)
        _common.check_bounds(self, epochs=(1, None), batch_size=(1, None), lr=(0.0, None),
                             sparsity=(0.0, 0.999), activation_sparsity=(0.0, 0.999), cluster_bits=(1, 16),
                             energy=(1e-6, 1.0), eps=(0.0, None), seed=(0, None), train_subset=(1, None),
                             test_subset=(1, None))


def _load(path):
    if not Path(path).exists():
        raise FileNotFoundError(f"--model: no such file or folder. Received: model={path!r}")
    with compression.prune_scope():  # a model still holding pruning wrappers loads too
        return utils.load_model(path)


def run(config: Config) -> dict:
    """Compress ``model`` with ``method``; write ``model.keras`` and ``report.json`` (returned)."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    utils.set_seed(config.seed)
    model = _load(config.model)
    x, y = _common.load_split(config, "train", config.train_subset)
    xt, yt = _common.load_split(config, "test", config.test_subset)
    before = keras.models.clone_model(model)
    before.set_weights(model.get_weights())

    def compile_(m):
        m.compile(optimizer=keras.optimizers.Adam(config.lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        return m

    ds = data.as_tf_dataset(x, y, batch_size=config.batch_size, shuffle=True, seed=config.seed)
    steps = math.ceil(len(x) / config.batch_size) * config.epochs
    verbose = 1 if sys.stdout.isatty() else 2
    details = {}
    start = time.perf_counter()
    print(f"compressing {config.model} with {config.method} ({len(x)} train / {len(xt)} test images)",
          flush=True)
    if config.method == "prune":
        pruned = compile_(compression.prune(
            model, config.sparsity, schedule="polynomial", begin_step=0, end_step=max(1, int(0.75 * steps)),
            frequency=max(1, steps // 20),
            structure=None if config.structure == "none" else config.structure))
        pruned.fit(ds, epochs=config.epochs, callbacks=compression.pruning_callbacks(), verbose=verbose)
        result = compression.strip(pruned)
        details["sparsity"] = compression.sparsity_report(result).to_dict()
    elif config.method == "cluster":
        clustered = compile_(compression.cluster(model, 2 ** config.cluster_bits))
        clustered.fit(ds, epochs=config.epochs, verbose=verbose)
        result = compression.strip(clustered)
    elif config.method == "jp":
        jp = compression.joint_prune(model, x, y, weight_sparsity=config.sparsity,
                                     activation_sparsity=config.activation_sparsity, stages=config.epochs,
                                     lr=config.lr, batch_size=config.batch_size, x_test=xt, seed=config.seed)
        result = jp.model
        details["joint_pruning"] = jp.to_dict()
    elif config.method == "deep_compression":
        result = model
        dc = compression.deep_compress(model, x, y, sparsity=config.sparsity,
                                       cluster_bits=config.cluster_bits,
                                       prune_epochs=config.epochs, finetune_epochs=1, lr=config.lr,
                                       batch_size=config.batch_size, seed=config.seed)
        utils.atomic_write_bytes(out / "model.tfrdc", dc.stream)
        details["deep_compression"] = dc.to_dict()
    elif config.method == "binarize":
        kernels = [layer.name for layer in compression.kernel_layers(model)]
        keep = tuple(dict.fromkeys(kernels[:1] + kernels[-1:]))  # first and last layer stay float
        result = compile_(compression.binarize_model(model, config.binary_mode, exclude=keep))
        result.fit(ds, epochs=config.epochs, verbose=verbose)
        details["binarize"] = {"mode": config.binary_mode, "float_layers": list(keep)}
    else:  # lowrank
        result, report = compression.factorize(model, energy=config.energy)
        compile_(result).fit(ds, epochs=config.epochs, verbose=verbose)
        details["lowrank"] = report.to_dict()
    seconds = time.perf_counter() - start
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cmp = compression.compare_before_after(before, result, xt, yt, eps=config.eps, robust=config.robust)
    for w in caught:
        if "robust accuracy not measured" in str(w.message):
            print(f"warning: {w.message}", file=sys.stderr)
    size = compression.save(result, out / "model.keras")
    report = {
        "method": config.method,
        "model": str(config.model),
        "dataset": config.dataset,
        "flags": {name: getattr(config, name) for name in RECORDED},
        "train_examples": int(len(x)),
        "test_examples": int(len(xt)),
        "evaluation": _json_safe(cmp),
        "size": {"model.keras": size, "dense_params": int(before.count_params()),
                 "params_after": int(result.count_params())},
        "details": details,
        "compress_seconds": round(seconds, 2),
        "environment": utils.environment(),
    }
    if config.method == "deep_compression":
        report["size"]["model.tfrdc_bytes"] = len(dc.stream)
    utils.atomic_write_json(out / "report.json", report)
    b, a = cmp["before"], cmp["after"]
    print(f"accuracy: {b['accuracy']:.4f} -> {a['accuracy']:.4f}")
    if a["robust_accuracy"] is not None and b["robust_accuracy"] is not None:
        print(f"robust accuracy (eps={config.eps}): {b['robust_accuracy']:.4f} -> {a['robust_accuracy']:.4f}")
    if config.method == "deep_compression":
        print(f"encoded: {len(dc.stream)} bytes ({dc.compression_ratio:.1f}x smaller than float32)")
    print(f"model: {out / 'model.keras'}")
    print(f"report: {out / 'report.json'}")
    return report


def main(argv=None) -> int:
    """absl layer: the parsed flags become a :class:`Config`."""
    del argv
    run(F.from_flags(Config))
    return 0


def _json_safe(obj):
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        return _json_safe(obj.item())
    return obj if isinstance(obj, (str, int, float, bool)) or obj is None else str(obj)
