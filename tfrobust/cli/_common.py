"""What the ``Config`` + ``run(config)`` commands share: data, models, checks and the report files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tfrobust import _validate as V
from tfrobust import data, evaluation, models, utils
from tfrobust._keras import keras
from tfrobust.cli._flags import kind_of, setting

DATASETS = ("fashion_mnist", "mnist")


@dataclasses.dataclass(frozen=True, kw_only=True)
class DataConfig:
    """The dataset settings every command that reads a dataset shares (declared here once).

    A command's ``Config`` subclasses it; ``tfrobust convert`` overrides ``dataset`` (optional there:
    only int8 / binary conversions calibrate).
    """

    dataset: str = setting("fashion_mnist", "Dataset (tfrobust.data).", choices=DATASETS)
    data_dir: str | None = setting(None, "Folder searched first for the dataset's IDX files.")


#: The defenses of ``models.defended_cnn`` whose training path takes the labels (``[x, y] -> logits``).
LABELLED = ("cas", "cifs", "pcl")


@dataclasses.dataclass(frozen=True, kw_only=True)
class DefenseConfig:
    """The ``defense`` setting of the commands that train a model (``train``, ``proactive``, ``feedback``).

    A set defense builds ``models.defended_cnn`` fresh, in place of the command's architecture
    setting; CAS, CIFS and PCL then train their label-conditioned path (:func:`defended_pair`).
    """

    defense: str = setting("none", "Defense inserted in the small CNN (tfrobust.models.defended_cnn), "
                           "built fresh in place of the architecture setting; CAS, CIFS and PCL train "
                           "their label-conditioned path.", choices=sorted(models.DEFENSES))


def check_defense(config) -> None:
    """``config.defense`` is one of ``models.DEFENSES``; a set one builds a fresh model, so it cannot
    continue a saved ``config.model`` (the commands whose ``model`` is a file)."""
    V.choice("defense", config.defense, sorted(models.DEFENSES))
    if config.defense != "none" and config.model:
        raise ValueError("--defense builds a fresh defended CNN and cannot continue a saved --model (a "
                         "saved file holds only the inference model, without the label-conditioned "
                         "training path of CAS/CIFS/PCL); drop one of them. "
                         f"Received: model={config.model!r}, defense={config.defense!r}")


def defended_pair(defense: str, input_shape, num_classes: int):
    """``models.defended_cnn(defense)`` as ``(train_model, model)``; ``train_model`` is None unless
    the defense is label-conditioned (CAS, CIFS, PCL), i.e. unless it differs from ``model``."""
    train_model, model = models.defended_cnn(defense, input_shape=tuple(input_shape),
                                             num_classes=num_classes, return_train_model=True)
    return (None if train_model is model else train_model), model


def check_choices(config) -> None:
    """Every field declared with ``choices`` (:func:`tfrobust.cli._flags.setting`) holds one of them."""
    for f in dataclasses.fields(config):
        choices = f.metadata.get("choices")
        if choices and getattr(config, f.name) is not None:
            V.choice(f.name, getattr(config, f.name), choices)


def check_bounds(config, **bounds) -> None:
    """Range checks of numeric fields: ``name=(minimum, maximum)`` (None: unbounded); None values pass.

    ``int`` fields are checked as integers, ``float`` ones as numbers (closed bounds, as absl's).
    """
    kinds = {f.name: kind_of(f) for f in dataclasses.fields(config)}
    for name, (lo, hi) in bounds.items():
        value = getattr(config, name)
        if value is None:
            continue
        if kinds[name] == "int":
            V.integer(name, value, minimum=lo, maximum=hi)
        else:
            V.number(name, value, minimum=lo, maximum=hi)


def check_common(config) -> None:
    """The checks every command's config shares (the fields it has)."""
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    if "dataset" in fields:
        V.choice("dataset", config.dataset, DATASETS)
    for name in ("train_subset", "test_subset", "num_examples"):
        if fields.get(name) is not None:
            V.integer(name, fields[name], minimum=1)
    for name in ("batch_size", "epochs", "rounds"):
        if name in fields:
            V.integer(name, fields[name], minimum=1)
    if "seed" in fields:
        V.integer("seed", config.seed, minimum=0)
    if "lr" in fields:
        V.number("lr", config.lr, minimum=0.0, open_min=True)
    if "eps" in fields:
        V.number("eps", config.eps, minimum=0.0, open_min=True, maximum=1.0)
    if "arch" in fields and fields.get("arch") is not None:
        V.choice("arch", config.arch, models.names())
    if not fields.get("out"):
        raise ValueError(f"`out` (the output folder) is required. Received: out={fields.get('out')!r}")


def load_split(config, split: str, limit: int | None):
    """``(x, y)`` of ``config.dataset``'s ``split``, the first ``limit`` images."""
    return data.load_dataset(config.dataset, split, data_dir=config.data_dir, limit=limit)


def trainable_model(config, input_shape, num_classes: int = 10):
    """A compiled model: ``config.model`` loaded (trained weights kept), ``config.defense`` (when the
    config has one and it is set) or ``config.arch`` built fresh.

    Returns ``(model, pretrained)``; for a label-conditioned defense (CAS, CIFS, PCL) ``model`` is
    the ``(train_model, model)`` pair the trainers accept, its inference model compiled.
    """
    train_model = None
    if config.model:
        _, model = evaluation.load_model_fn(config.model)
        pretrained = True
    elif getattr(config, "defense", "none") != "none":
        train_model, model = defended_pair(config.defense, input_shape, num_classes)
        pretrained = False
    else:
        model = models.get(config.arch, input_shape=tuple(input_shape), num_classes=num_classes)
        pretrained = False
    model.compile(optimizer=keras.optimizers.Adam(config.lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return (model if train_model is None else (train_model, model)), pretrained


def oracle_fn(path):
    """A saved model as a forward function: Keras/SavedModel (differentiable) or ``.tflite`` (LiteRT)."""
    if str(path).endswith(".tflite"):
        from tfrobust import tflite_tools  # LiteRT's interpreter is needed only for a .tflite model

        if not Path(path).exists():
            raise FileNotFoundError(f"`model` not found. Received: model={str(path)!r}")
        return tflite_tools.TFLiteModel(str(path))
    return evaluation.load_model_fn(path)[0]


def write_report(out, name: str, result: dict, markdown: str) -> dict:
    """Write ``out/<name>.json`` and ``out/<name>.md`` atomically; returns ``result``."""
    out = Path(out)
    result = {**result, "environment": utils.environment()}
    utils.atomic_write_json(out / f"{name}.json", result)
    utils.atomic_write_text(out / f"{name}.md", markdown.rstrip("\n") + "\n")
    print(f"results: {out / (name + '.json')}, {out / (name + '.md')}")
    return result


def attack_summary(model_fn, x, y, x_adv, *, targets=None, batch_size: int = 256) -> dict:
    """Accuracies, success rate and perturbation sizes of an attack's output.

    The success rate counts, among the images the model classifies correctly, those whose
    prediction on ``x_adv`` is wrong (untargeted) or equals ``targets`` (targeted).
    """
    import numpy as np

    x, x_adv, y = np.asarray(x), np.asarray(x_adv), np.asarray(y)
    clean_pred = evaluation.predict_labels(model_fn, x, batch_size=batch_size)
    adv_pred = evaluation.predict_labels(model_fn, x_adv, batch_size=batch_size)
    correct = clean_pred == y
    broken = adv_pred != y if targets is None else adv_pred == np.asarray(targets)
    delta = (x_adv - x).reshape(len(x), -1)
    l2 = np.linalg.norm(delta, axis=1)
    changed = l2 > 0
    return {
        "num_examples": int(len(x)),
        "clean_accuracy": float(correct.mean()),
        "adversarial_accuracy": float((adv_pred == y).mean()),
        "success_rate": float((broken & correct).sum() / max(int(correct.sum()), 1)),
        "max_linf": float(np.abs(delta).max()) if delta.size else 0.0,
        "max_l2": float(l2.max()) if len(l2) else 0.0,
        "median_l2_of_changed": float(np.median(l2[changed])) if changed.any() else None,
    }


def summary_markdown(title: str, summary: dict, settings: str) -> str:
    """A one-row table of :func:`attack_summary` under a heading."""
    table = utils.markdown_table(
        ["images", "clean accuracy", "adversarial accuracy", "success rate", "max L-inf", "max L2",
         "settings"],
        [[summary["num_examples"], summary["clean_accuracy"], summary["adversarial_accuracy"],
          summary["success_rate"], summary["max_linf"], summary["max_l2"], settings]])
    return f"### {title}\n\n{table}\n"
