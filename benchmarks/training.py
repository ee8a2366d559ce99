"""Adversarial, proactive and feedback training on Fashion-MNIST -> docs/training.md.

Parts (``--parts``, comma-separated; each part's result is cached in ``--cache`` so an interrupted
run resumes at the first unfinished part, and ``full`` resumes mid-training via BackupAndRestore):

- ``ratios``: epoch-time ratios vs a clean ``fit`` of the same model in the same run (madry_cnn,
  batch 128, a fixed number of batches per "epoch"): tfrobust FGSM-RS, tfrobust PGD-7 and ART
  1.20's ``AdversarialTrainerMadryPGD`` (its defaults: batch 128, 7 iterations, one random
  start; eps 0.1, eps_step 0.01 for [0, 1] images), timed with the shared harness (alternating
  rounds, warm-up discarded, ratios per round).
- ``small``: a short comparison on the small CNN: clean, FGSM-RS and PGD-7 training for a few
  epochs, robust accuracy by :func:`tfrobust.evaluation.robust_accuracy` (``standard`` preset:
  APGD-CE then APGD-DLR, 100 steps each) at eps 0.1.
- ``proactive``: :class:`tfrobust.trainers.ProactiveDefense` per-round table (attack A = FGSM,
  unseen attack B = PGD-10).
- ``feedback``: :class:`tfrobust.trainers.FeedbackLearning` per-class table, class-proportional
  generation vs the uniform baseline.
- ``full`` (not in the default set; hours on 2 cores): madry_cnn PGD-7 AT and FGSM-RS to the
  issue's targets (>= 78% robust / >= 85% clean under the ``standard`` preset), full training set.

Usage:
    .venv/bin/python -m benchmarks.training                       # reduced run, ~10 min on 2 cores
    .venv/bin/python -m benchmarks.training --parts full --full_epochs 30   # the long measurement
    .venv/bin/python -m benchmarks.training --parts small --rerun small     # measure a part again
    .venv/bin/python -m benchmarks.training --quick               # smoke run, writes to /tmp

A cached ``full`` part is reused only if it was measured with the same ``--full_epochs`` and
``--full_padding``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks._harness import compare, markdown_table  # noqa: E402
from tfrobust import attacks, data, models, utils  # noqa: E402
from tfrobust._keras import keras  # noqa: E402
from tfrobust.evaluation import accuracy_under, robust_accuracy  # noqa: E402
from tfrobust.trainers import (  # noqa: E402
    AdversarialTrainer,
    AttackSpec,
    FeedbackLearning,
    ProactiveDefense,
)

EPS = 0.1
START = "<!-- benchmarks/training.py: generated section start -->"
END = "<!-- benchmarks/training.py: generated section end -->"


def _ce():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _pgd20_accuracy(model, x, y):
    """Accuracy under PGD-20 (step 0.01, random start) at eps 0.1."""
    pgd20 = functools.partial(attacks.pgd, eps=EPS, step_size=0.01, steps=20, seed=0)
    return accuracy_under(pgd20, model, x, y, batch_size=500)


def _robust(model, x, y, preset):
    rep = robust_accuracy(model, x, y, eps=EPS, preset=preset, seed=0)
    return {"clean": float(rep.clean_accuracy), "robust": float(rep.robust_accuracy),
            "warnings": list(rep.warnings), "preset": preset}


# ----------------------------------------------------------------------------- ratios
def part_ratios(args):
    x, y = data.load_dataset("fashion_mnist", "train", limit=args.ratio_batches * 128)
    ds = data.as_tf_dataset(x, y, batch_size=128).cache()
    utils.set_seed(0)
    clean = models.madry_cnn()
    clean.compile(optimizer=keras.optimizers.Adam(1e-3), loss=_ce(), metrics=["accuracy"])
    trainers = {}
    for name, kw in (("fgsm_rs", {"method": "fgsm_rs"}), ("pgd7", {"method": "pgd", "steps": 7})):
        t = AdversarialTrainer(models.madry_cnn(), eps=EPS, **kw)
        t.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
        trainers[name] = t

    def fit(m):
        return lambda: float(m.fit(ds, epochs=1, verbose=0).history["loss"][-1])

    # The reference the issue quotes: a straightforward PGD-7 train step in one tf.function (a
    # Python-unrolled attack loop, then one training step), no Keras fit machinery.
    plain = models.madry_cnn()
    plain_opt = keras.optimizers.Adam(1e-3)
    ce = _ce()

    @tf.function
    def plain_pgd7_step(xb, yb):
        xa = tf.clip_by_value(xb + tf.random.uniform(tf.shape(xb), -EPS, EPS), 0.0, 1.0)
        for _ in range(7):
            with tf.GradientTape() as tape:
                tape.watch(xa)
                loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(
                    tf.cast(yb, tf.int32), plain(xa, training=False)))
            grad = tape.gradient(loss, xa)
            step = attacks.default_step_size(EPS, 7)
            xa = tf.clip_by_value(xb + tf.clip_by_value(xa + step * tf.sign(grad) - xb, -EPS, EPS), 0.0, 1.0)
        with tf.GradientTape() as tape:
            loss = ce(yb, plain(tf.stop_gradient(xa), training=True))
        weights = plain.trainable_variables
        plain_opt.apply_gradients(zip(tape.gradient(loss, weights), weights))
        return loss

    def plain_epoch():
        for xb, yb in ds:
            loss = plain_pgd7_step(xb, yb)
        return float(loss)

    variants = {"clean fit": fit(clean), "tfrobust FGSM-RS": fit(trainers["fgsm_rs"]),
                "tfrobust PGD-7": fit(trainers["pgd7"]),
                "plain tf.function PGD-7 step (reference)": plain_epoch}
    art_note = None
    if not args.no_art:
        try:
            from art.defences.trainer import AdversarialTrainerMadryPGD
            from art.estimators.classification import TensorFlowV2Classifier

            art_model = models.madry_cnn()
            opt = keras.optimizers.Adam(1e-3)
            loss_obj = keras.losses.CategoricalCrossentropy(from_logits=True)

            @tf.function
            def train_step(model, images, labels):
                with tf.GradientTape() as tape:
                    loss = loss_obj(labels, model(images, training=True))
                opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                        model.trainable_variables))

            clf = TensorFlowV2Classifier(model=art_model, nb_classes=10, input_shape=(28, 28, 1),
                                         loss_object=loss_obj, train_step=train_step, clip_values=(0.0, 1.0))
            art = AdversarialTrainerMadryPGD(clf, nb_epochs=1, eps=EPS, eps_step=0.01)
            y1 = np.eye(10, dtype=np.float32)[y]
            variants["ART 1.20 AdversarialTrainerMadryPGD"] = lambda: art.fit(x, y1)
            art_note = ("ART: `AdversarialTrainerMadryPGD(clf, nb_epochs=1, eps=0.1, eps_step=0.01)`, "
                        "other arguments at their defaults (batch 128, max_iter 7, one random init); "
                        "`TensorFlowV2Classifier` with a `tf.function` train step.")
        except ImportError as e:  # ART is a bench-only dependency
            art_note = f"ART not measured: {e}"
    res = compare(variants, baseline="clean fit", rounds=args.rounds, warmup=1)
    res["settings"] = {"model": "madry_cnn (3.27M params)", "batch_size": 128,
                       "batches_per_epoch": args.ratio_batches,
                       "eps": EPS, "art_note": art_note}
    return res


# ----------------------------------------------------------------------------- small CNN comparison
def part_small(args):
    x, y = data.load_dataset("fashion_mnist", "train", limit=args.small_train)
    xt, yt = data.load_dataset("fashion_mnist", "test", limit=args.eval_n)
    ds = data.as_tf_dataset(x, y, batch_size=128, shuffle=True, seed=0)
    rows = []
    for name, kw in (("clean", None), ("FGSM-RS", {"method": "fgsm_rs"}),
                     ("PGD-7 (Madry)", {"method": "pgd", "steps": 7}),
                     ("TRADES (beta 6, 7 steps)", {"method": "trades", "steps": 7, "step_size": 0.025})):
        if kw and kw["method"] == "trades" and not args.trades:
            continue
        utils.set_seed(0)
        model = models.small_cnn()
        if kw is None:
            trainer = model
            trainer.compile(optimizer=keras.optimizers.Adam(1e-3), loss=_ce(), metrics=["accuracy"])
        else:
            trainer = AdversarialTrainer(model, eps=EPS, eps_warmup_steps=len(ds), **kw)
            trainer.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
        t0 = time.perf_counter()
        trainer.fit(ds, epochs=args.small_epochs, verbose=0)
        seconds = time.perf_counter() - t0
        ev = _robust(model, xt, yt, "standard")
        rows.append({"training": name, "epochs": args.small_epochs, "train_seconds": round(seconds, 1), **ev})
        print(rows[-1], flush=True)
    return {"rows": rows, "settings": {"model": "small_cnn (0.23M params)", "train_examples": len(x),
                                       "test_examples": len(xt), "eps": EPS, "batch_size": 128,
                                       "eps_warmup": "linear over the first epoch", "optimizer": "Adam 1e-3"}}


# ----------------------------------------------------------------------------- proactive / feedback
def _compiled_small(seed=0):
    utils.set_seed(seed)
    m = models.small_cnn()
    m.compile(optimizer=keras.optimizers.Adam(1e-3), loss=_ce(), metrics=["accuracy"])
    return m


def part_proactive(args):
    x, y = data.load_dataset("fashion_mnist", "train", limit=args.loop_train)
    xt, yt = data.load_dataset("fashion_mnist", "test", limit=args.eval_n)
    loop = ProactiveDefense(_compiled_small(), attack=AttackSpec("fgsm", eps=EPS),
                            holdout_attack=AttackSpec("pgd", eps=EPS, steps=10), rounds=args.rounds_loop,
                            epochs_per_round=args.loop_epochs, directory=Path(args.cache) / "proactive")
    rep = loop.run(x, y, xt, yt)
    rep["settings"] = {"model": "small_cnn", "train_examples": len(x), "test_examples": len(xt),
                       "epochs_per_round": args.loop_epochs}
    return rep


def part_feedback(args):
    x, y = data.load_dataset("fashion_mnist", "train", limit=args.loop_train)
    xt, yt = data.load_dataset("fashion_mnist", "test", limit=args.eval_n)
    out = {}
    for label, proportional in (("proportional", True), ("uniform", False)):
        loop = FeedbackLearning(_compiled_small(), attack=AttackSpec("pgd", eps=EPS, steps=7),
                                eval_attack=AttackSpec("pgd", eps=EPS, steps=10), eps_max=0.2,
                                distance="fgsm",
                                rounds=args.rounds_loop, epochs_per_round=args.loop_epochs,
                                probe_size=args.probe, proportional=proportional,
                                directory=Path(args.cache) / f"feedback_{label}")
        out[label] = loop.run(x, y, xt, yt)
    out["settings"] = {"model": "small_cnn", "train_examples": len(x), "test_examples": len(xt),
                       "epochs_per_round": args.loop_epochs, "probe_per_class": args.probe,
                       "budget": "= training-set size per round"}
    return out


# ----------------------------------------------------------------------------- full (long) run
class _EpochTimes(keras.callbacks.Callback):
    """Wall-clock seconds of every finished epoch, kept in a JSON file across resumed sessions."""

    def __init__(self, path):
        super().__init__()
        self.path = Path(path)

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        times = json.loads(self.path.read_text()) if self.path.exists() else {}
        times[str(epoch)] = round(time.perf_counter() - self._t0, 1)
        utils.atomic_write_json(self.path, times)


def part_full(args):
    x, y = data.load_dataset("fashion_mnist", "train", limit=args.full_train)
    xt, yt = data.load_dataset("fashion_mnist", "test", limit=args.full_eval_n)
    ds = data.as_tf_dataset(x, y, batch_size=128, shuffle=True, seed=0)
    rows = []
    for name, kw in (("PGD-7 AT", {"method": "pgd", "steps": 7}), ("FGSM-RS", {"method": "fgsm_rs"})):
        utils.set_seed(0)
        model = models.madry_cnn(padding=args.full_padding)
        trainer = AdversarialTrainer(model, eps=EPS, eps_warmup_steps=2 * len(ds), **kw)
        schedule = keras.optimizers.schedules.CosineDecay(1e-3, args.full_epochs * len(ds))
        trainer.compile(optimizer=keras.optimizers.Adam(schedule), metrics=["accuracy"])
        work = Path(args.cache) / f"full_{kw['method']}_{args.full_padding}_e{args.full_epochs}"
        t0 = time.perf_counter()
        if (work / "model.keras").exists():  # finished in an earlier session
            model = keras.models.load_model(work / "model.keras")
        else:  # BackupAndRestore resumes an interrupted session at its last finished epoch
            trainer.fit(ds, epochs=args.full_epochs, verbose=2,
                        callbacks=[keras.callbacks.BackupAndRestore(str(work / "backup")),
                                   _EpochTimes(work / "epoch_seconds.json")])
            trainer.save_inner(work / "model.keras")
        seconds = time.perf_counter() - t0
        epoch_seconds = json.loads((work / "epoch_seconds.json").read_text())
        rows.append({"training": name, "epochs": args.full_epochs,
                     "train_seconds_this_session": round(seconds, 1),
                     "train_seconds_total": round(sum(epoch_seconds.values()), 1),
                     "epoch_seconds_median": round(float(np.median(list(epoch_seconds.values()))), 1),
                     **_robust(model, xt, yt, "standard"),
                     # robust generalisation: the same attack on test and on training images
                     "pgd20_test": _pgd20_accuracy(model, xt, yt),
                     "pgd20_train": _pgd20_accuracy(model, x[:len(xt)], y[:len(xt)])})
    return {"rows": rows, "settings": {"model": f"madry_cnn(padding={args.full_padding!r}), "
                                                f"{model.count_params():,} params", "train_examples": len(x),
                                       "test_examples": len(xt), "eps": EPS,
                                       "schedule": "Adam 1e-3 cosine decay, eps warm-up 2 epochs"}}


def _same_settings(part, result, args):
    """Whether a cached part was measured with this run's settings (only ``full`` has costly ones)."""
    if part != "full":
        return True
    rows, model = result.get("rows") or [{}], result.get("settings", {}).get("model", "")
    return rows[0].get("epochs") == args.full_epochs and f"padding={args.full_padding!r}" in model


PARTS = {"ratios": part_ratios, "small": part_small, "proactive": part_proactive,
         "feedback": part_feedback, "full": part_full}


# ----------------------------------------------------------------------------- Markdown
def _pct(v):
    return "-" if v is None else f"{100 * v:.1f}%"


def _header(dates) -> list[str]:
    """The generated section's opening lines; ``dates`` maps each part shown to when it was measured."""
    when = ", ".join(f"{part} {date}" for part, date in dates.items())
    return [START, "", "## Measured results", "",
            f"Generated by `benchmarks/training.py`; each part and the date it was measured: {when}. "
            f"Fashion-MNIST, L-inf eps = {EPS}. The machine is a shared 2-core CPU (other jobs were "
            "running: see the load figures), so absolute seconds are inflated; ratios are taken within "
            "each round.", ""]


def render(results, args) -> str:
    lines = _header({part: _measured_on(result) for part, result in results.items()})
    if "ratios" in results:
        r = results["ratios"]
        s = r["settings"]
        title = (f"Epoch time vs clean fit ({s['model']}, batch {s['batch_size']}, "
                 f"{s['batches_per_epoch']} batches per epoch)")
        lines.append(markdown_table(r, title=title, value_name="last loss"))
        if s.get("art_note"):
            lines += [s["art_note"], ""]
        v = r["variants"]

        def fastest(name):
            return v[name]["seconds"]["min"]

        base = fastest("clean fit")

        def median_ratio(name):
            m = v[name]["ratio"]["median"]
            return "no round without a stall" if m is None else f"{m:.2f}x"

        lines += [
            "Earlier runs stalled until about the next multiple of 5.1 s: deleting a `tf.data` "
            "iterator waited for TF's autotune thread, which misses its cancellation wake-up and sleeps "
            "out its period (5.1, 10.2, 20.5 s ... after the iterator was made; see "
            "`tfrobust.data.as_tf_dataset`, which now turns autotuning off). The harness records the "
            "process CPU time of every round and leaves out, with the reason, any round more than "
            f"{r.get('stall_factor', 1.5):g}x its variant's fastest (a leftover stall or other jobs "
            "holding the cores).", "",
            f"Targets: FGSM-RS <= 1.9x clean: **{median_ratio('tfrobust FGSM-RS')}** (median of "
            f"per-round ratios; fastest rounds {fastest('tfrobust FGSM-RS') / base:.2f}x); PGD-7 <= 6.3x "
            f"clean: **{median_ratio('tfrobust PGD-7')}** (fastest rounds "
            f"{fastest('tfrobust PGD-7') / base:.2f}x)."]
        if all(x.get("cpu_seconds", {}).get("median") for x in v.values()):
            cpu0 = v["clean fit"]["cpu_seconds"]["median"]
            cpu = [f"{name} {x['cpu_seconds']['median'] / cpu0:.2f}x"
                   for name, x in v.items() if name != "clean fit"]
            lines.append(" By process CPU time (the work itself, which other jobs' load barely moves): "
                         + ", ".join(cpu) + " clean fit's (medians over the rounds kept).")
        ref = v.get("plain tf.function PGD-7 step (reference)")
        if ref:
            lines.append(f" The plain `tf.function` PGD-7 step (no Keras machinery) in the same rounds: "
                         f"{median_ratio('plain tf.function PGD-7 step (reference)')} (fastest rounds "
                         f"{ref['seconds']['min'] / base:.2f}x); the trainer's fastest epoch is "
                         f"{100 * (fastest('tfrobust PGD-7') / ref['seconds']['min'] - 1):+.1f}% of its time "
                         "away from it.")
        art = v.get("ART 1.20 AdversarialTrainerMadryPGD")
        if art:
            pgd_r = v["tfrobust PGD-7"]
            stalled = set(art.get("stalled", {})) | set(pgd_r.get("stalled", {}))
            speedup = [f"{a / p:.2f}" + ("*" if str(i) in stalled else "")
                       for i, (a, p) in enumerate(zip(art["seconds"]["values"], pgd_r["seconds"]["values"]))]
            art_x = art["seconds"]["min"] / fastest("tfrobust PGD-7")
            lines.append(f" PGD-7 vs ART's trainer: tfrobust is **{art_x:.2f}x "
                         f"faster** (fastest rounds; per-round {', '.join(speedup)}, * = a stalled round; "
                         "target >= 2.5x).")
        lines.append("")
    if "small" in results:
        r = results["small"]
        s = r["settings"]
        lines += [f"### Short comparison: {s['model']}, {s['train_examples']} training images", "",
                  "Robust accuracy: `tfrobust.evaluation.robust_accuracy(preset=\"standard\")` (APGD-CE "
                  f"then APGD-DLR, 100 steps each, cascade) on the first {s['test_examples']} test images. "
                  f"Adam 1e-3, batch 128, {s['eps_warmup']}.", "",
                  "| training | epochs | train s | clean | robust (standard) |", "|---|---|---|---|---|"]
        for row in r["rows"]:
            lines.append(f"| {row['training']} | {row['epochs']} | {row['train_seconds']} | "
                         f"{_pct(row['clean'])} | {_pct(row['robust'])} |")
        lines.append("")
    if "full" in results:
        r = results["full"]
        st = r["settings"]
        lines += ["### madry_cnn, full training set (the issue's accuracy targets)", "",
                  f"{st['model']}, {st['train_examples']} training images, batch 128, {st['schedule']}; "
                  f"robust accuracy with `robust_accuracy(preset=\"standard\")` (APGD-CE -> APGD-DLR, "
                  f"100 steps each, cascade, then random search) at eps {st['eps']} on the first "
                  f"{st['test_examples']} test images.", "",
                  "| training | epochs | clean | robust (standard) | PGD-20 test | PGD-20 training images "
                  "| training time (sum of epochs) | median epoch |", "|---|---|---|---|---|---|---|---|"]
        for row in r["rows"]:
            total = row.get("train_seconds_total")
            pgd_cells = " | ".join(_pct(row[k]) if k in row else "-" for k in ("pgd20_test", "pgd20_train"))
            lines.append(f"| {row['training']} | {row['epochs']} | {_pct(row['clean'])} | "
                         f"{_pct(row['robust'])} | {pgd_cells} | "
                         f"{'-' if total is None else f'{total / 60:.1f} min'} | "
                         f"{row.get('epoch_seconds_median', '-')} s |")
        pgd = next((row for row in r["rows"] if row["training"].startswith("PGD")), None)
        fast = next((row for row in r["rows"] if row["training"].startswith("FGSM")), None)
        if pgd:
            ok = pgd["robust"] >= 0.78 and pgd["clean"] >= 0.85
            lines += ["", f"Target PGD-AT >= 78% robust and >= 85% clean: **{'met' if ok else 'missed'}** "
                          f"({_pct(pgd['robust'])} / {_pct(pgd['clean'])})."]
            if "pgd20_train" in pgd:
                gap = 100 * (pgd["pgd20_train"] - pgd["pgd20_test"])
                lines += ["", f"PGD-20 accuracy on {st['test_examples']} training images is {gap:.1f} points "
                              "above the test figure: " + (
                                  "the robust generalisation gap is small, so the model *underfits* the "
                                  "adversarial objective; more epochs (or capacity) is what would raise it."
                                  if gap < 5 else "robust overfitting; early stopping on a robust "
                                  "validation metric is what helps.")]
        if pgd and fast:
            gap = 100 * (pgd["robust"] - fast["robust"])
            lines += ["", f"Target FGSM-RS within 3 points of PGD-AT: **{'met' if gap <= 3 else 'missed'}** "
                          f"({gap:+.1f} points)."]
        lines.append("")
    if "proactive" in results:
        r = results["proactive"]
        s = r["settings"]
        lines += [f"### ProactiveDefense ({s['model']}, {s['train_examples']} training / "
                  f"{s['test_examples']} test images, {s['epochs_per_round']} epoch(s) per round)", "",
                  f"Attack A (augments training): {r['attack']}; attack B (never trained on): "
                  f"{r['holdout_attack']}. Round 0 is plain training.", "",
                  "| round | clean | accuracy under A | accuracy under B (unseen) | seconds |",
                  "|---|---|---|---|---|"]
        for row in r["rounds"]:
            lines.append(f"| {row['round']} | {_pct(row['clean_accuracy'])} | "
                         f"{_pct(row['attack_accuracy'])} | {_pct(row['holdout_accuracy'])} | "
                         f"{row['seconds']} |")
        lines.append("")
    if "feedback" in results:
        r = results["feedback"]
        s = r["settings"]
        lines += [f"### Feedback learning ({s['model']}, {s['train_examples']} training / "
                  f"{s['test_examples']} test images)", "",
                  f"Generation attack: {r['proportional']['attack']}; per-class robust accuracy under "
                  f"{r['proportional']['eval_attack']}; class distance d_c = mean minimal L-inf perturbation "
                  f"that flips the class (exact bisection along the FGSM direction, eps_max 0.2, "
                  f"{s['probe_per_class']} training images per class). `proportional` generates adversarial "
                  "examples in proportion to 1/d_c, `uniform` the same number for every class.", "",
                  "| run | round | clean | robust | per-class robust min / max | std | Gini | allocation |",
                  "|---|---|---|---|---|---|---|---|"]
        for label in ("proportional", "uniform"):
            for row in r[label]["rounds"]:
                pc = [v for v in row["per_class_robust"] if v is not None]
                ineq = row["inequality_robust"]
                alloc = "-" if row["allocation"] is None else " ".join(str(a) for a in row["allocation"])
                lines.append(f"| {label} | {row['round']} | {_pct(row['clean_accuracy'])} | "
                             f"{_pct(row['robust_accuracy'])} | {_pct(min(pc))} / {_pct(max(pc))} | "
                             f"{ineq['std']:.3f} | {ineq['gini']:.3f} | {alloc} |")
        lines += ["", "Per-class robust accuracy (classes 0-9: T-shirt, Trouser, Pullover, Dress, Coat, "
                  "Sandal, Shirt, Sneaker, Bag, Ankle boot):", "",
                  "| run | round | " + " | ".join(str(c) for c in range(10)) + " |",
                  "|---|---|" + "---|" * 10]
        for label in ("proportional", "uniform"):
            for row in r[label]["rounds"]:
                lines.append(f"| {label} | {row['round']} | "
                             + " | ".join(_pct(v) for v in row["per_class_robust"]) + " |")
        lines.append("")
    lines += [END]
    return "\n".join(lines) + "\n"


# Each part's block in the generated section starts with one of these headings (render's order).
_HEADINGS = {"ratios": "### Epoch time vs clean fit", "small": "### Short comparison",
             "full": "### madry_cnn, full training set", "proactive": "### ProactiveDefense",
             "feedback": "### Feedback learning"}


def _measured_on(result) -> str:
    return result.get("measured_on") or result.get("measured_at", "")[:10] or "date not recorded"


def _part_blocks(section: str) -> dict[str, str]:
    """Split a generated section into ``{part: text}`` at the parts' ``### `` headings."""
    blocks, current = {}, None
    for line in section.splitlines(keepends=True):
        if line.startswith("### "):
            current = next((p for p, h in _HEADINGS.items() if line.startswith(h)), None)
        if current and not line.startswith(END):
            blocks[current] = blocks.get(current, "") + line
    return blocks


def _part_dates(section: str) -> dict[str, str]:
    """When each part of an existing generated section was measured (both header formats)."""
    head = section.split("### ", 1)[0]
    old = re.search(r"on (\d{4}-\d{2}-\d{2}) \(parts: ([^)]*)\)", head)
    if old:
        return {p.strip(): old.group(1) for p in old.group(2).split(",")}
    return dict(re.findall(r"\b(" + "|".join(PARTS) + r") (\d{4}-\d{2}-\d{2}|date not recorded)", head))


def write_doc(path, results, args):
    """Rewrite the generated section: parts in ``results`` re-rendered, the others' blocks kept as they are.

    Another section of the file (before or after the markers) is never touched, and a part measured
    in an earlier run whose cache is gone keeps its table and its date instead of vanishing.
    """
    path = Path(path)
    text = path.read_text() if path.exists() else ""
    has = START in text and END in text
    old = text[text.index(START):text.index(END)] if has else ""
    old_blocks, old_dates = _part_blocks(old), _part_dates(old)
    new_blocks = _part_blocks(render(results, args))
    blocks, dates = {}, {}
    for part in _HEADINGS:
        if part in new_blocks:
            blocks[part], dates[part] = new_blocks[part], _measured_on(results[part])
        elif part in old_blocks:
            blocks[part], dates[part] = old_blocks[part], old_dates.get(part, "date not recorded")
    section = "\n".join(_header(dates)) + "\n" + "".join(blocks.values()).rstrip("\n") + "\n\n" + END + "\n"
    if has:
        text = text[:text.index(START)] + section + text[text.index(END) + len(END) + 1:]
    else:
        text = text.rstrip() + "\n\n" + section
    utils.atomic_write_text(path, text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="ratios,small,proactive,feedback")
    parser.add_argument("--quick", action="store_true", help="tiny settings, writes to /tmp")
    parser.add_argument("--out", default="docs/training.md")
    parser.add_argument("--cache", default="runs/bench_training")
    parser.add_argument("--rounds", type=int, default=3, help="harness rounds of the ratio part")
    parser.add_argument("--ratio_batches", type=int, default=10)
    parser.add_argument("--no_art", action="store_true")
    parser.add_argument("--small_train", type=int, default=10000)
    parser.add_argument("--small_epochs", type=int, default=2)
    parser.add_argument("--trades", action="store_true", help="add TRADES to the small comparison")
    parser.add_argument("--eval_n", type=int, default=500)
    parser.add_argument("--loop_train", type=int, default=4000)
    parser.add_argument("--loop_epochs", type=int, default=1)
    parser.add_argument("--rounds_loop", type=int, default=2)
    parser.add_argument("--probe", type=int, default=30)
    parser.add_argument("--rerun", default="", help="comma-separated parts to measure again even if cached")
    parser.add_argument("--full_epochs", type=int, default=30)
    parser.add_argument("--full_eval_n", type=int, default=1000)
    parser.add_argument("--full_padding", default="same", choices=("same", "valid"),
                        help="madry_cnn padding: 'same' (3.27M params, the challenge code) or 'valid' (1.1M)")
    parser.add_argument("--full_train", type=int, default=None, help="limit (smoke runs); default all 60k")
    args = parser.parse_args(argv)
    if args.quick:
        args.out, args.cache = "/tmp/tfrobust_training.md", "/tmp/tfrobust_bench_training"
        args.rounds, args.ratio_batches, args.small_train, args.small_epochs = 1, 2, 1000, 1
        args.eval_n, args.loop_train, args.rounds_loop, args.probe, args.full_epochs = 100, 500, 1, 5, 1
        args.full_train, args.full_eval_n = 256, 100
    parts = [p for p in args.parts.split(",") if p]
    rerun = {p for p in args.rerun.split(",") if p}
    unknown = sorted((set(parts) | rerun) - set(PARTS))
    if unknown:
        raise SystemExit(f"unknown parts {unknown}; expected some of {sorted(PARTS)}")
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    results_path = cache / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for part in parts:
        if part in results and part not in rerun and _same_settings(part, results[part], args):
            print(f"[{part}] cached in {results_path}", flush=True)
            continue
        t0 = time.perf_counter()
        print(f"[{part}] running", flush=True)
        results[part] = PARTS[part](args)
        results[part]["part_seconds"] = round(time.perf_counter() - t0, 1)
        results[part]["measured_on"] = datetime.now(UTC).date().isoformat()
        # the harness (ratios) records the environment before and after; keep that one
        results[part].setdefault("environment", utils.environment(("adversarial-robustness-toolbox",)))
        utils.atomic_write_json(results_path, results)
        print(f"[{part}] done in {results[part]['part_seconds']} s", flush=True)
    write_doc(args.out, {k: results[k] for k in PARTS if k in results}, args)
    print(f"wrote {args.out} and {results_path}")


if __name__ == "__main__":
    main()
