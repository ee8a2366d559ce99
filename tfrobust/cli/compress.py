"""``tfrobust compress``: compress a saved model, write it with a before/after report.

Methods: ``prune`` (TF-MOT magnitude pruning, stripped), ``jp`` (joint weight + activation
pruning), ``deep_compression`` (prune -> cluster -> Huffman; also writes the encoded stream),
``lowrank`` (truncated-SVD factorisation + fine-tuning), ``cluster`` (TF-MOT weight sharing) and
``binarize`` (binary-weight twin of every hidden Dense/Conv2D, first and last kept float, fine-tuned).
Every run reports accuracy and robust accuracy before and after (robust accuracy needs
``tfrobust.evaluation``; without it the report says so).
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from pathlib import Path

from absl import flags

FLAGS = flags.FLAGS

METHODS = ["prune", "jp", "deep_compression", "lowrank", "cluster", "binarize"]

flags.DEFINE_string("model", None, "Path of the trained tf_keras model (.keras, .h5 or SavedModel folder).")
flags.DEFINE_enum("method", None, METHODS, "Compression method.")
flags.DEFINE_enum("dataset", "fashion_mnist", ["fashion_mnist", "mnist"],
                  "Dataset for fine-tuning and evaluation.")
flags.DEFINE_integer("epochs", 2, "Fine-tuning epochs (deep_compression: pruning epochs; jp: stages).",
                     lower_bound=1)
flags.DEFINE_integer("batch_size", 128, "Batch size.", lower_bound=1)
flags.DEFINE_float("lr", 5e-4, "Adam learning rate of the fine-tuning.", lower_bound=0.0)
flags.DEFINE_float("sparsity", 0.8, "Target weight sparsity (prune, jp, deep_compression).",
                   lower_bound=0.0, upper_bound=0.999)
flags.DEFINE_enum("structure", "none", ["none", "2:4"], "Pruning structure (prune).")
flags.DEFINE_float("activation_sparsity", 0.5, "Target activation sparsity per ReLU layer (jp).",
                   lower_bound=0.0, upper_bound=0.999)
flags.DEFINE_integer("cluster_bits", 5, "Index bits per layer, k = 2^bits shared weights (deep_compression, "
                     "cluster).", lower_bound=1, upper_bound=16)
flags.DEFINE_float("energy", 0.9, "Fraction of squared singular values kept (lowrank).",
                   lower_bound=1e-6, upper_bound=1.0)
flags.DEFINE_enum("binary_mode", "bwn", ["binaryconnect", "bwn", "xnor"], "Binarization (binarize).")
flags.DEFINE_float("eps", 0.1, "L-inf radius of the robust-accuracy evaluation.", lower_bound=0.0)
flags.DEFINE_bool("robust", True, "Measure robust accuracy before and after (fast preset).")
flags.DEFINE_integer("seed", 0, "Seed for Python, NumPy and TensorFlow.", lower_bound=0)
flags.DEFINE_integer("train_subset", None, "Use only the first N training images.", lower_bound=1)
flags.DEFINE_integer("test_subset", None, "Evaluate on only the first N test images.", lower_bound=1)
flags.DEFINE_string("data_dir", None, "Folder searched first for the dataset's IDX files.")
flags.DEFINE_string("out", None, "Output folder (model.keras, report.json[, model.tfrdc]).")
flags.mark_flags_as_required(["model", "method", "out"])


def _load(path):
    from tfrobust._keras import keras
    from tfrobust.compression import tfmot

    if not Path(path).exists():
        raise FileNotFoundError(f"--model: no such file or folder. Received: model={path!r}")
    with tfmot().sparsity.keras.prune_scope():
        return keras.models.load_model(path)


def run() -> int:
    from tfrobust import compression, data, utils
    from tfrobust._keras import keras

    out = Path(FLAGS.out)
    out.mkdir(parents=True, exist_ok=True)
    utils.set_seed(FLAGS.seed)
    model = _load(FLAGS.model)
    x, y = data.load_dataset(FLAGS.dataset, "train", data_dir=FLAGS.data_dir, limit=FLAGS.train_subset)
    xt, yt = data.load_dataset(FLAGS.dataset, "test", data_dir=FLAGS.data_dir, limit=FLAGS.test_subset)
    before = keras.models.clone_model(model)
    before.set_weights(model.get_weights())

    def compile_(m):
        m.compile(optimizer=keras.optimizers.Adam(FLAGS.lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        return m

    ds = data.as_tf_dataset(x, y, batch_size=FLAGS.batch_size, shuffle=True, seed=FLAGS.seed)
    steps = math.ceil(len(x) / FLAGS.batch_size) * FLAGS.epochs
    verbose = 1 if sys.stdout.isatty() else 2
    details = {}
    start = time.perf_counter()
    print(f"compressing {FLAGS.model} with {FLAGS.method} ({len(x)} train / {len(xt)} test images)",
          flush=True)
    if FLAGS.method == "prune":
        pruned = compile_(compression.prune(
            model, FLAGS.sparsity, schedule="polynomial", begin_step=0, end_step=max(1, int(0.75 * steps)),
            frequency=max(1, steps // 20), structure=None if FLAGS.structure == "none" else FLAGS.structure))
        pruned.fit(ds, epochs=FLAGS.epochs, callbacks=compression.pruning_callbacks(), verbose=verbose)
        result = compression.strip(pruned)
        details["sparsity"] = compression.sparsity_report(result).to_dict()
    elif FLAGS.method == "cluster":
        clustered = compile_(compression.cluster(model, 2 ** FLAGS.cluster_bits))
        clustered.fit(ds, epochs=FLAGS.epochs, verbose=verbose)
        result = compression.strip(clustered)
    elif FLAGS.method == "jp":
        jp = compression.joint_prune(model, x, y, weight_sparsity=FLAGS.sparsity,
                                     activation_sparsity=FLAGS.activation_sparsity, stages=FLAGS.epochs,
                                     lr=FLAGS.lr, batch_size=FLAGS.batch_size, x_test=xt, seed=FLAGS.seed)
        result = jp.model
        details["joint_pruning"] = jp.to_dict()
    elif FLAGS.method == "deep_compression":
        result = model
        dc = compression.deep_compress(model, x, y, sparsity=FLAGS.sparsity, cluster_bits=FLAGS.cluster_bits,
                                       prune_epochs=FLAGS.epochs, finetune_epochs=1, lr=FLAGS.lr,
                                       batch_size=FLAGS.batch_size, seed=FLAGS.seed)
        utils.atomic_write_bytes(out / "model.tfrdc", dc.stream)
        details["deep_compression"] = dc.to_dict()
    elif FLAGS.method == "binarize":
        kernels = [layer.name for layer in compression.kernel_layers(model)]
        keep = tuple(dict.fromkeys(kernels[:1] + kernels[-1:]))  # first and last layer stay float
        result = compile_(compression.binarize_model(model, FLAGS.binary_mode, exclude=keep))
        result.fit(ds, epochs=FLAGS.epochs, verbose=verbose)
        details["binarize"] = {"mode": FLAGS.binary_mode, "float_layers": list(keep)}
    else:  # lowrank
        result, report = compression.factorize(model, energy=FLAGS.energy)
        compile_(result).fit(ds, epochs=FLAGS.epochs, verbose=verbose)
        details["lowrank"] = report.to_dict()
    seconds = time.perf_counter() - start
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cmp = compression.compare_before_after(before, result, xt, yt, eps=FLAGS.eps, robust=FLAGS.robust)
    for w in caught:
        if "robust accuracy not measured" in str(w.message):
            print(f"warning: {w.message}", file=sys.stderr)
    size = compression.save(result, out / "model.keras")
    report = {
        "method": FLAGS.method,
        "model": str(FLAGS.model),
        "dataset": FLAGS.dataset,
        "flags": {name: FLAGS[name].value for name in (
            "epochs", "batch_size", "lr", "sparsity", "structure", "activation_sparsity", "cluster_bits",
            "binary_mode", "energy", "eps", "robust", "seed", "train_subset", "test_subset")},
        "train_examples": int(len(x)),
        "test_examples": int(len(xt)),
        "evaluation": _json_safe(cmp),
        "size": {"model.keras": size, "dense_params": int(before.count_params()),
                 "params_after": int(result.count_params())},
        "details": details,
        "compress_seconds": round(seconds, 2),
        "environment": utils.environment(),
    }
    if FLAGS.method == "deep_compression":
        report["size"]["model.tfrdc_bytes"] = len(dc.stream)
    utils.atomic_write_json(out / "report.json", report)
    b, a = cmp["before"], cmp["after"]
    print(f"accuracy: {b['accuracy']:.4f} -> {a['accuracy']:.4f}")
    if a["robust_accuracy"] is not None and b["robust_accuracy"] is not None:
        print(f"robust accuracy (eps={FLAGS.eps}): {b['robust_accuracy']:.4f} -> {a['robust_accuracy']:.4f}")
    if FLAGS.method == "deep_compression":
        print(f"encoded: {len(dc.stream)} bytes ({dc.compression_ratio:.1f}x smaller than float32)")
    print(f"model: {out / 'model.keras'}")
    print(f"report: {out / 'report.json'}")
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
