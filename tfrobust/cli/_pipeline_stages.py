"""The stages of ``tfrobust pipeline``: train -> evaluate -> compress -> convert -> deploy_eval ->
export_c -> report. Each stage reads the artefacts of earlier stages from the run folder and writes
its own atomically, plus ``stages/<name>.json`` with its figures; the driver in
``tfrobust/cli/pipeline.py`` skips finished stages on ``--resume``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from pathlib import Path

import numpy as np

from tfrobust import attacks, data, evaluation, models, utils
from tfrobust._keras import keras
from tfrobust.cli import _common

STAGES = ("train", "evaluate", "compress", "convert", "deploy_eval", "export_c", "report")
#: Expected share of the total run time per stage (for the first ETA; refined as stages finish).
WEIGHTS = {"train": 0.35, "evaluate": 0.2, "compress": 0.2, "convert": 0.05, "deploy_eval": 0.12,
           "export_c": 0.05, "report": 0.03}
LABELLED = _common.LABELLED


@dataclasses.dataclass
class Settings:
    """Every setting of a run (recorded in the report; a resumed run must match it exactly)."""

    dataset: str = "fashion_mnist"
    model: str = "small_cnn"
    defense: str = "none"
    adv: str = "fgsm_rs"
    eps: float = 0.1
    epochs: int = 3
    batch_size: int = 128
    lr: float = 1e-3
    train_subset: int | None = None
    eval_subset: int = 1000
    eps_curve: tuple = (0.0, 0.025, 0.05, 0.075, 0.1, 0.15)
    prune_sparsity: float = 0.5
    finetune_epochs: int = 1
    qat: bool = True
    binary: bool = False
    gradient_free_examples: int = 20
    seed: int = 0
    data_dir: str | None = None

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["eps_curve"] = list(self.eps_curve)
        return d


class Context:
    """Paths and lazily loaded data shared by the stages."""

    def __init__(self, out: Path, settings: Settings):
        self.out = out
        self.s = settings
        self._data = {}

    def path(self, name) -> Path:
        return self.out / name

    def data(self, split):
        if split not in self._data:
            limit = self.s.train_subset if split == "train" else None
            self._data[split] = data.load_dataset(self.s.dataset, split, data_dir=self.s.data_dir,
                                                  limit=limit)
        return self._data[split]

    def eval_set(self):
        x, y = self.data("test")
        return x[: self.s.eval_subset], y[: self.s.eval_subset]

    def stage_result(self, name) -> dict:
        return json.loads(self.path(f"stages/{name}.json").read_text())


def _compile(model, lr):
    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])


def _accuracy(fn, x, y):
    return evaluation.accuracy(fn, x, y, batch_size=500)


def _pgd20(model, x, y, eps, seed):
    if eps == 0:
        return np.asarray(x)
    pgd20 = attacks.get("pgd", eps=eps, steps=20)  # the `fast` preset's attack (step 2.5 eps / 20)
    return evaluation.attack_dataset(functools.partial(pgd20, seed=seed), model, x, y, batch_size=500)


def _fit(s: Settings, model, ds, *, lr, epochs, callbacks=(), train_model=None):
    """Train ``model`` the way the run trains: through ``AdversarialTrainer`` unless ``--adv=none``.

    Used by the train stage and by every fine-tuning of the compress stage: fine-tuning a robust
    model on clean images alone undoes its adversarial training. ``train_model`` is the
    label-conditioned training path of CAS/CIFS/PCL (the attack still runs on ``model``).
    """
    if s.adv == "none":
        _compile(model, lr)
        return model.fit(ds, epochs=epochs, callbacks=list(callbacks), verbose=2)
    from tfrobust.trainers import AdversarialTrainer

    steps = {"pgd": 7, "trades": 7}.get(s.adv, 1)
    trainer = AdversarialTrainer(model, train_model=train_model, method=s.adv, eps=s.eps, steps=steps,
                                 seed=s.seed)
    trainer.compile(optimizer=keras.optimizers.Adam(lr), metrics=["accuracy"])
    return trainer.fit(ds, epochs=epochs, callbacks=list(callbacks), verbose=2)


def load_model(path):
    """A run folder's model (``.keras``, or the QAT ``compressed.h5``) through
    :func:`tfrobust.utils.load_model` (uncompiled), with TF-MOT's quantization wrappers known."""
    from tfrobust.compression import quantize_scope  # TF-MOT is imported when a stage loads a model

    with quantize_scope():
        return utils.load_model(path)


# ---------------------------------------------------------------------------------------------
def stage_train(ctx: Context) -> dict:
    s = ctx.s
    utils.set_seed(s.seed)
    info = data.dataset_info(s.dataset)
    x, y = ctx.data("train")
    ds = data.as_tf_dataset(x, y, batch_size=s.batch_size, shuffle=True, seed=s.seed)
    backup = keras.callbacks.BackupAndRestore(str(ctx.path("checkpoints/train")))
    start = time.perf_counter()
    if s.defense != "none":
        train_model, model = models.defended_cnn(s.defense, info.image_shape, info.num_classes,
                                                 return_train_model=True)
    else:
        model = train_model = models.get(s.model, input_shape=info.image_shape, num_classes=info.num_classes)
    if s.defense in LABELLED and s.adv != "none":
        history = _fit(s, model, ds, lr=s.lr, epochs=s.epochs, callbacks=[backup], train_model=train_model)
    elif s.defense in LABELLED:
        _compile(train_model, s.lr)
        ds_xy = ds.map(lambda a, b: ((a, b), b))
        history = train_model.fit(ds_xy, epochs=s.epochs, callbacks=[backup], verbose=2)
    elif s.adv == "none":
        _compile(model, s.lr)
        history = model.fit(ds, epochs=s.epochs, callbacks=[backup], verbose=2)
    else:
        history = _fit(s, model, ds, lr=s.lr, epochs=s.epochs, callbacks=[backup])
    seconds = time.perf_counter() - start
    utils.atomic_save_model(model, ctx.path("model.keras"))
    x_test, y_test = ctx.data("test")
    return {"test_accuracy": _accuracy(model, x_test, y_test), "train_seconds": round(seconds, 1),
            "params": int(model.count_params()),
            "history": {k: [float(v) for v in vals] for k, vals in history.history.items()}}


def stage_evaluate(ctx: Context) -> dict:
    s = ctx.s
    model = load_model(ctx.path("model.keras"))
    x, y = ctx.eval_set()
    nature = attacks.inspect_model(model)
    standard = evaluation.robust_accuracy(model, x, y, eps=s.eps, preset="standard", model=model)
    result = {"standard": standard.to_dict(), "nature": nature}
    if nature["stochastic"] or nature["gradient_masking"]:
        result["adaptive"] = evaluation.robust_accuracy(model, x, y, eps=s.eps, preset="adaptive",
                                                        model=model).to_dict()
    curve = []
    for eps in s.eps_curve:
        x_adv = _pgd20(model, x, y, eps, s.seed)
        curve.append({"eps": eps, "accuracy": _accuracy(model, x_adv, y)})
        if eps == s.eps:
            num_classes = data.dataset_info(s.dataset).num_classes
            result["per_class_pgd20"] = evaluation.per_class_accuracy(
                None, model, x_adv, y, num_classes, batch_size=500)[1]
    result["eps_curve_pgd20"] = curve
    return result


def stage_compress(ctx: Context) -> dict:
    from tfrobust import compression

    s = ctx.s
    model = load_model(ctx.path("model.keras"))
    x, y = ctx.data("train")
    x_eval, y_eval = ctx.eval_set()
    before = compression.evaluate_model(model, x_eval, y_eval, eps=s.eps)
    ds = data.as_tf_dataset(x, y, batch_size=s.batch_size, shuffle=True, seed=s.seed)
    result = {"before": before, "steps": []}
    current = model
    if s.prune_sparsity > 0:
        steps = -(-len(x) // s.batch_size) * s.finetune_epochs
        # Update the masks a few times during fine-tuning (TF-MOT's default of 100 steps can be
        # more than a short fine-tune lasts, which would leave the model dense).
        pruned = compression.prune(current, s.prune_sparsity, schedule="constant",
                                   frequency=max(1, min(100, steps // 5)))
        _fit(s, pruned, ds, lr=s.lr / 2, epochs=s.finetune_epochs, callbacks=compression.pruning_callbacks())
        current = compression.strip(pruned)
        report = compression.sparsity_report(current)
        result["sparsity"] = report.to_dict() if hasattr(report, "to_dict") else dataclasses.asdict(report)
        result["steps"].append({"step": f"prune {s.prune_sparsity:.0%}",
                                **compression.evaluate_model(current, x_eval, y_eval, eps=s.eps)})
        utils.atomic_save_model(current, ctx.path("pruned.keras"))
    if s.qat:
        # PQAT after pruning: plain QAT would regrow the pruned weights (the deployed kernels kept
        # 4-38% zeros of the requested 50%).
        qat = compression.quantize(current, preserve="sparsity" if s.prune_sparsity > 0 else None)
        _fit(s, qat, ds, lr=s.lr / 4, epochs=s.finetune_epochs)
        after = compression.evaluate_model(qat, x_eval, y_eval, eps=s.eps)
        result["steps"].append({"step": "QAT int8", **after})
        current = qat
    utils.atomic_save_model(current, ctx.path("compressed.h5"))
    result["after"] = result["steps"][-1] if result["steps"] else before
    return result


def stage_convert(ctx: Context) -> dict:
    from tfrobust import tflite_tools

    s = ctx.s
    keras_model = load_model(ctx.path("model.keras"))
    compressed = load_model(ctx.path("compressed.h5"))
    x, _ = ctx.data("train")
    cal = x[:500]
    files = {}
    for name, model, mode, batch in (("float", keras_model, "float", None),
                                     ("int8", compressed, "int8", None),
                                     ("int8_b1", compressed, "int8", 1)):
        path = ctx.path(f"model_{name}.tflite")
        tflite_tools.convert(model, mode, representative_data=cal if mode == "int8" else None, path=path,
                             batch_size=batch)
        files[name] = {"path": path.name, "bytes": path.stat().st_size}
    if s.binary:
        # QAT leaves binary layers float (no QuantizeConfig) and its wrappers do not clone; bake the
        # binary kernels of the pruned (or trained) model instead.
        source = ctx.path("pruned.keras") if s.prune_sparsity > 0 else ctx.path("model.keras")
        path = ctx.path("model_binary.tflite")
        tflite_tools.convert(load_model(source), "binary", representative_data=cal, path=path)
        files["binary"] = {"path": path.name, "bytes": path.stat().st_size, "source": source.name}
    files["int8_vs_float_size"] = files["int8"]["bytes"] / files["float"]["bytes"]
    return files


def stage_deploy_eval(ctx: Context) -> dict:
    from tfrobust import tflite_tools
    from tfrobust.attacks import one_pixel

    s = ctx.s
    source = load_model(ctx.path("model.keras"))
    x_test, y_test = ctx.data("test")
    x, y = ctx.eval_set()
    result = {}
    for name in ("float", "int8"):
        tfl = tflite_tools.TFLiteModel(ctx.path(f"model_{name}.tflite"))
        result[f"{name}_test_accuracy"] = _accuracy(tfl, x_test, y_test)
        curve = []
        for eps in s.eps_curve:
            x_adv = _pgd20(source, x, y, eps, s.seed)
            curve.append({"eps": eps, "accuracy": _accuracy(tfl, x_adv, y)})
        result[f"{name}_eps_curve_transfer_pgd20"] = curve
    if s.binary:
        tfl = tflite_tools.TFLiteModel(ctx.path("model_binary.tflite"))
        result["binary_test_accuracy"] = _accuracy(tfl, x_test, y_test)
    tfl = tflite_tools.TFLiteModel(ctx.path("model_int8.tflite"))
    n = min(s.gradient_free_examples, len(x))
    if n:
        x_gf = one_pixel(tfl, x[:n], y[:n], pixels=3, population=100, iterations=20, seed=s.seed,
                         early_stop="flip")  # robust accuracy needs the flip only
        result["int8_one_pixel"] = {"examples": n, "pixels": 3, "population": 100, "iterations": 20,
                                    "accuracy": _accuracy(tfl, np.asarray(x_gf), y[:n]),
                                    "clean_accuracy_same_examples": _accuracy(tfl, x[:n], y[:n])}
    result["deployed_robustness"] = _deployed_robustness(ctx, x, y)
    return result


def _deployed_robustness(ctx: Context, x, y) -> dict:
    """The deployed files attacked as deployed (worst case of transfer, APGD through the interpreter
    and Square on it): the int8 file with the compressed model as source, the binary file (when
    built) with its own source; plus the ``standard`` figure of the compressed Keras model."""
    from tfrobust import tflite_tools
    s = ctx.s
    compressed = load_model(ctx.path("compressed.h5"))
    standard = evaluation.robust_accuracy(compressed, x, y, eps=s.eps, preset="standard", model=compressed,
                                          seed=s.seed)
    out = {"compressed_standard": standard.to_dict()}
    files = [("int8", compressed, standard)]
    if s.binary:
        files.append(("binary", load_model(ctx.path(ctx.stage_result("convert")["binary"]["source"])), None))
    for name, source, report in files:
        deployed = tflite_tools.TFLiteModel(ctx.path(f"model_{name}.tflite"))
        out[name] = evaluation.robust_accuracy_deployed(deployed, source, x, y, eps=s.eps,
                                                        source_report=report, seed=s.seed,
                                                        verbose=True).to_dict()
    return out


def stage_export_c(ctx: Context) -> dict:
    from tfrobust import tflite_tools

    info = tflite_tools.export_c(ctx.path("model_int8_b1.tflite").read_bytes(), ctx.path("c/model"))
    out = {}
    for key, value in info.items():  # paths relative to the run folder, so the run can move
        if key in ("header", "source"):
            value = str(Path(value).resolve().relative_to(ctx.out.resolve()))
        out[key] = value
    return out


STAGE_FUNCTIONS = {
    "train": stage_train,
    "evaluate": stage_evaluate,
    "compress": stage_compress,
    "convert": stage_convert,
    "deploy_eval": stage_deploy_eval,
    "export_c": stage_export_c,
}
