"""Our evaluation presets vs ART 1.20's AutoAttack -> docs/evaluation.md and docs/evaluation.json.

Three Fashion-MNIST models (``small_cnn`` width 16: clean-trained; FGSM-RS-trained, Wong et al.
2020; k-WTA + FGSM-RS adversarial training, Xiao et al. 2020), the first 500 test images, L-inf eps
0.1. ART's ``AutoAttack`` runs with its default attack list (APGD-CE and APGD-DLR with 5 random
restarts each, DeepFool, Square with 5000 queries and 5 restarts) on ``TensorFlowV2Classifier``;
ours is ``robust_accuracy(..., preset="standard")`` (``"adaptive"`` for the k-WTA model, which
declares a gradient-masking layer). Per model the row gives both robust accuracies, both wall
times and ``art_only_broken``: the points ART's adversarial example breaks (checked here: inside
the eps-ball and the clip range, misclassified by the model) that ours left robust.

Parts (``--parts``, default all): ``models`` (trained once, cached under ``runs/bench_evaluation/``),
``art`` (ART's result per model cached there too: its run takes most of the time; it checkpoints
after each of AutoAttack's attacks and each Square restart, so an interrupted run resumes), ``ours``
(merged by model into the cached rows, so ``--models=kwta_at`` replaces that row only),
``fab`` (FAB-T on the points ours left robust: does AutoAttack's third attack add anything? with
``ours`` in the same run, or alone after it on the cached rows) and
``docs`` (writes the two files). Usage: ``nice -n 10 python benchmarks/evaluation.py``; ``--quick``
is a smoke run (50 images, short training) that writes to /tmp.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tfrobust import data, evaluation, models, trainers, utils  # noqa: E402
from tfrobust._keras import keras  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EPS = 0.1
MODELS = ("clean", "fgsm_rs", "kwta_at")
PRESET = {"clean": "standard", "fgsm_rs": "standard", "kwta_at": "adaptive"}
DESCRIPTION = {
    "clean": "small_cnn (width 16), clean training",
    "fgsm_rs": "small_cnn (width 16), FGSM-RS adversarial training (eps 0.1, step 1.25 eps)",
    "kwta_at": "k-WTA defended_cnn (width 16), FGSM-RS adversarial training (eps 0.1)",
}


def _log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _versions():
    from importlib import metadata

    out = {"tensorflow": tf.__version__}
    for name in ("tfrobust", "adversarial-robustness-toolbox"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


# ----------------------------------------------------------------------------- models
def _train(name, x, y, epochs):
    keras.utils.set_random_seed(0)
    if name == "kwta_at":
        model = models.defended_cnn("kwta", width=16, dense_units=64)
    else:
        model = models.small_cnn(width=16, dense_units=64)
    ds = data.as_tf_dataset(x, y, batch_size=128, shuffle=True, seed=0)
    if name == "clean":
        model.compile(optimizer=keras.optimizers.Adam(1e-3),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(ds, epochs=epochs, verbose=2)
        return model
    # k-WTA with PGD-7 took ~15 s per batch of 128 here (k-WTA's per-example top-k in 8 passes):
    # FGSM-RS (one pass) keeps the adversarial training affordable on 2 shared cores.
    method, steps = "fgsm_rs", 1
    trainer = trainers.AdversarialTrainer(model, method=method, eps=EPS, steps=steps, seed=0)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    trainer.fit(ds, epochs=epochs, verbose=2)
    return model


def load_models(cache, quick):
    x, y = data.load_dataset("fashion_mnist", "train", limit=2000 if quick else 20000)
    out = {}
    for name in MODELS:
        path = cache / f"{name}.keras"
        if path.exists():
            out[name] = keras.models.load_model(path)
            continue
        t0 = time.perf_counter()
        # k-WTA's per-example top-k makes each step ~10x a plain CNN's: half the images, 2 epochs.
        n = len(x) // 2 if name == "kwta_at" else len(x)
        epochs = 1 if quick else (2 if name == "kwta_at" else 3)
        model = _train(name, x[:n], y[:n], epochs=epochs)
        utils.atomic_save_model(model, path)
        utils.atomic_write_json(cache / f"{name}_training.json",
                                {"description": DESCRIPTION[name], "train_images": n,
                                 "epochs": epochs,
                                 "seconds": round(time.perf_counter() - t0, 1)})
        _log(f"trained {name} in {time.perf_counter() - t0:.0f} s")
        out[name] = keras.models.load_model(path)
    return out


# ----------------------------------------------------------------------------- ART
def _broken(model, x, x_adv, y, eps, clip=(0.0, 1.0)):
    """Points whose ``x_adv`` is a valid adversarial example (eps-ball, clip range, misclassified)."""
    x_adv = np.asarray(x_adv, np.float32)
    flat = x_adv.reshape(len(x), -1)
    inside = np.abs(x_adv - x).reshape(len(x), -1).max(1) <= eps + 1e-5
    inside &= (flat.min(1) >= clip[0] - 1e-6) & (flat.max(1) <= clip[1] + 1e-6)
    pred = evaluation.predict_labels(model, x_adv)
    return inside & (pred != y)


def run_art(name, model, x, y, cache):
    """ART 1.20's ``AutoAttack`` (default attack list) on ``model``, resumable stage by stage.

    ``AutoAttack.generate`` is a loop: for each attack of its list, ``auto_attack.run_attack`` attacks
    the points still robust and keeps the successes (inside the eps-ball, misclassified). This
    runs that same loop over the same attack objects (``AutoAttack(...).attacks``: APGD-CE and
    APGD-DLR with 5 random inits, DeepFool, Square with 5000 queries), with Square's 5 restarts as
    5 stages of one restart each (ART's Square restarts every restart from the clean points still
    robust, so this is the same attack), and checkpoints ``x_adv``, the robust mask and each
    stage's time after every stage: a k-WTA model's run (hours: ART's Square does two forward
    passes per query) survives an interruption. Numpy's global seed is set per stage, so a resumed
    run draws what an uninterrupted one would.
    """
    path = cache / f"art_{name}.json"
    if path.exists():
        return json.loads(path.read_text())
    from art.attacks.evasion import AutoAttack
    from art.attacks.evasion.auto_attack import run_attack
    from art.estimators.classification import TensorFlowV2Classifier

    clf = TensorFlowV2Classifier(model=model, nb_classes=10, input_shape=x.shape[1:],
                                 loss_object=keras.losses.CategoricalCrossentropy(from_logits=True),
                                 clip_values=(0.0, 1.0))
    auto = AutoAttack(clf, norm=np.inf, eps=EPS, batch_size=len(x))  # default attack list
    stages = list(auto.attacks)
    square = stages.pop()
    restarts = square.nb_restarts
    square.set_params(nb_restarts=1)
    stages += [square] * restarts
    labels = [_art_label(a) for a in auto.attacks]
    names = [_art_label(a) for a in stages[:-restarts]]
    names += [f"SquareAttack(restart {i + 1}/{restarts})" for i in range(restarts)]

    y1 = np.eye(10, dtype=np.float32)[y]
    state_path, log_path = cache / f"art_{name}_state.npz", cache / f"art_{name}_stages.json"
    if state_path.exists():
        x_adv, robust, log = _load_checkpoint(cache, name)
        _log(f"ART AutoAttack on {name}: resuming after {len(log)} of {len(stages)} stages")
    else:
        x_adv = x.astype(np.float32).copy()
        robust = np.argmax(clf.predict(x_adv), axis=1) == y
        log = []
        _log(f"ART AutoAttack on {name} ({len(x)} images, {len(stages)} stages)")
    for i in range(len(log), len(stages)):
        if not robust.any():
            break
        np.random.seed(1000 + i)
        before = int(robust.sum())
        t0, c0, load0 = time.perf_counter(), time.process_time(), os.getloadavg()[0]
        x_adv, robust = run_attack(x=x_adv, y=y1, sample_is_robust=robust, attack=stages[i],
                                   estimator_orig=clf, norm=np.inf, eps=EPS)
        log.append({"stage": names[i], "attacked": before, "broken": before - int(robust.sum()),
                    "seconds": round(time.perf_counter() - t0, 1),
                    "cpu_seconds": round(time.process_time() - c0, 1),
                    "load_average": [round(load0, 1), round(os.getloadavg()[0], 1)]})
        _atomic_savez(state_path, x_adv=x_adv, robust=robust, log=np.array(json.dumps(log)))
        utils.atomic_write_json(log_path, log)  # the same log, readable
        _log(f"ART {name} stage {names[i]}: {log[-1]}")
    result = _art_summary(model, x, y, x_adv, log, labels, complete=True)
    utils.atomic_write_json(path, result)
    _log(f"ART {name}: robust {result['robust_accuracy']:.4f} in {result['seconds']:.0f} s")
    return result


def _load_checkpoint(cache, name):
    """``(x_adv, robust, log)`` of ART's checkpoint for ``name``."""
    with np.load(cache / f"art_{name}_state.npz") as state:
        # the stage log is saved with the arrays (one atomic file: they never disagree);
        # checkpoints of the first version of the loop kept it in the JSON only
        log = (json.loads(str(state["log"])) if "log" in state
               else json.loads((cache / f"art_{name}_stages.json").read_text()))
        return state["x_adv"], state["robust"].astype(bool), log


def _art_summary(model, x, y, x_adv, log, labels, *, complete):
    """ART's result from its adversarial examples, each re-checked here (ball, clip range, label)."""
    clean_ok = evaluation.predict_labels(model, x) == y
    robust = clean_ok & ~_broken(model, x, x_adv, y, EPS)
    loads = [v for stage in log for v in stage["load_average"]]
    return {"robust_mask": robust.astype(int).tolist(),
            "seconds": round(sum(stage["seconds"] for stage in log), 1),
            "cpu_seconds": round(sum(stage["cpu_seconds"] for stage in log), 1),
            "load_average": [min(loads), max(loads)] if loads else None,
            "robust_accuracy": float(robust.mean()), "attacks": labels, "stages": log,
            "complete": complete}


def art_result(name, model, x, y, cache):
    """ART's cached result for ``name``: the finished run's; else, when a run was stopped between
    stages, the one its checkpoint gives (``complete`` False: an upper bound on what the whole run
    would report, with the stages it ran); else None."""
    path = cache / f"art_{name}.json"
    if path.exists():
        return {"complete": True, **json.loads(path.read_text())}
    if not (cache / f"art_{name}_state.npz").exists():
        return None
    x_adv, _, log = _load_checkpoint(cache, name)
    labels = list(dict.fromkeys(stage["stage"].split("(restart")[0] for stage in log))
    result = _art_summary(model, x, y, x_adv, log, labels, complete=False)
    square = [stage["stage"] for stage in log if "(restart" in stage["stage"]]
    restarts = int(square[-1].rstrip(")").split("/")[1]) if square else 0
    result["stages_total"] = len(log) - len(square) + restarts if square else None
    return result


def _art_label(attack):
    """``AutoProjectedGradientDescent(cross_entropy)``, ``DeepFool``, ...: an ART attack's name."""
    return type(attack).__name__ + (f"({attack.loss_type})" if hasattr(attack, "loss_type") else "")


def _atomic_savez(path, **arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    utils.atomic_write_bytes(path, buffer.getvalue())


# ----------------------------------------------------------------------------- ours
def run_ours(name, model, x, y):
    preset = PRESET[name]
    _log(f"tfrobust {preset} on {name}")
    t0, c0, load0 = time.perf_counter(), time.process_time(), os.getloadavg()[0]
    report = evaluation.robust_accuracy(model, x, y, eps=EPS, preset=preset, batch_size=len(x), seed=0,
                                        verbose=True)
    seconds = time.perf_counter() - t0
    report.cost = {"cpu_seconds": round(time.process_time() - c0, 1),
                   "load_average": [round(load0, 1), round(os.getloadavg()[0], 1)]}
    return report, seconds


def run_fab(name, model, x, y, robust_mask):
    """FAB-T (9 targets, 100 steps) on the points our preset left robust: what it would add.

    For the k-WTA model (gradient masking declared) FAB-T also runs under BPDA, as the adaptive
    preset runs its gradient attacks. Every break is checked (eps-ball, clip range, misclassified).
    """
    from tfrobust import attacks

    robust = np.asarray(robust_mask, bool)
    idx = np.flatnonzero(robust)
    out = {"attacked": int(len(idx)), "broken": 0, "seconds": 0.0}
    if not len(idx):
        return out
    xs, ys = x[idx], y[idx]
    _log(f"FAB-T on the {len(idx)} points {PRESET[name]} left robust on {name}")
    t0 = time.perf_counter()
    broken = _broken(model, xs, attacks.fab_targeted(model, xs, ys, eps=EPS, steps=100, targets=9).numpy(),
                     ys, EPS)
    if PRESET[name] == "adaptive":
        with attacks.bpda_scope():
            x_adv = attacks.fab_targeted(model, xs, ys, eps=EPS, steps=100, targets=9).numpy()
        broken |= _broken(model, xs, x_adv, ys, EPS)
    out.update(broken=int(broken.sum()), seconds=round(time.perf_counter() - t0, 1))
    _log(f"FAB-T on {name}: {out}")
    return out


def _row(name, report, seconds, n):
    """One model's row of ours; :func:`_join_art` adds ART's columns."""
    ours = np.asarray(report.robust_mask, bool)
    return {
        "model": name, "description": DESCRIPTION[name], "preset": PRESET[name], "n": n, "eps": EPS,
        "clean_accuracy": report.clean_accuracy, "ours_robust": report.robust_accuracy,
        "ours_seconds": round(seconds, 1), "ours_cpu_seconds": report.cost["cpu_seconds"],
        "ours_load_average": report.cost["load_average"],
        "ours_per_attack": {k: {kk: v[kk] for kk in ("attacked", "broken", "seconds")}
                            for k, v in report.per_attack.items()},
        "warnings": list(report.warnings), "ours_robust_mask": ours.astype(int).tolist(),
    }


ART_KEYS = ("art_robust", "art_seconds", "speedup", "art_cpu_seconds", "cpu_speedup", "art_load_average",
            "art_only_broken", "ours_only_broken", "both_robust", "art_attacks", "art_complete", "art_stages",
            "art_per_stage")


def _join_art(row, art):
    """``row`` with ART's columns from ``art`` (None: no ART result; all None), compared per example
    through the stored robust masks, so a finished ART run joins an earlier ``ours`` row. A row
    written before the masks were stored keeps the ART columns it was written with."""
    if "ours_robust_mask" not in row:
        return {**dict.fromkeys(ART_KEYS), "art_complete": row.get("art_robust") is not None, **row}
    row = {**row, **dict.fromkeys(ART_KEYS)}
    if art is None:
        return row
    ours = np.asarray(row["ours_robust_mask"], bool)
    art_mask = np.asarray(art["robust_mask"], bool)
    row.update({
        "art_robust": art["robust_accuracy"], "art_seconds": art["seconds"],
        "speedup": round(art["seconds"] / row["ours_seconds"], 1), "art_cpu_seconds": art.get("cpu_seconds"),
        "cpu_speedup": (round(art["cpu_seconds"] / row["ours_cpu_seconds"], 1)
                        if art.get("cpu_seconds") and row.get("ours_cpu_seconds") else None),
        "art_load_average": art.get("load_average"),
        "art_only_broken": int(np.sum(ours & ~art_mask)),
        "ours_only_broken": int(np.sum(art_mask & ~ours)),
        "both_robust": float(np.mean(ours & art_mask)),  # the per-example worst case over both
        "art_per_stage": [{k: st[k] for k in ("stage", "attacked", "broken", "seconds")}
                          for st in art.get("stages", [])],
        "art_attacks": art["attacks"], "art_complete": art.get("complete", True),
        "art_stages": (None if art.get("complete", True)
                       else f"{len(art['stages'])} of {art['stages_total']}"),
    })
    return row


# ----------------------------------------------------------------------------- docs
BEGIN = "<!-- evaluation-benchmark:begin (generated by benchmarks/evaluation.py) -->"
END = "<!-- evaluation-benchmark:end -->"


def _markdown(rows, meta):
    lines = [BEGIN, "",
             f"Fashion-MNIST, the first {rows[0]['n']} test images, L-inf eps {EPS}; {meta['when']}, "
             f"{meta['machine']}; versions {meta['versions']}. ART's results come from the same script's "
             "`art` part (cached per model under runs/bench_evaluation/), ours from its `ours` part, never "
             "run at the same time as ART's; other engineers' jobs shared the 2 cores (load averages at "
             "start / end of each run in the last column; CPU seconds are the process's own, all threads).",
             "",
             "| model | preset | clean | ours robust | ART AutoAttack robust | art_only_broken | "
             "ours_only_broken | ours s | ART s | speed-up (wall) | ours CPU s | ART CPU s | "
             "speed-up (CPU) | load avg ours / ART |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def _opt(v, fmt, suffix=""):
        return "n/a" if v is None else format(v, fmt) + suffix

    def _partial(r):
        return f" (ART stopped after {r['art_stages']} stages)" if r.get("art_stages") else ""

    for r in rows:
        lines.append(f"| {r['model']} | {r['preset']} | {r['clean_accuracy']:.3f} | {r['ours_robust']:.3f} | "
                     f"{_opt(r['art_robust'], '.3f')}{_partial(r)} | {_opt(r['art_only_broken'], 'd')} | "
                     f"{_opt(r['ours_only_broken'], 'd')} | {r['ours_seconds']:.0f} | "
                     f"{_opt(r['art_seconds'], '.0f')} | {_opt(r['speedup'], '.1f', 'x')} | "
                     f"{_opt(r.get('ours_cpu_seconds'), '.0f')} | {_opt(r.get('art_cpu_seconds'), '.0f')} | "
                     f"{_opt(r.get('cpu_speedup'), '.1f', 'x')} | {r.get('ours_load_average')} / "
                     f"{r.get('art_load_average') or 'not recorded'} |")
    lines += ["", "Targets: ours never higher than ART's; `art_only_broken` <= 0.2% of n "
              f"(= {0.002 * rows[0]['n']:g} points); ours >= 10x faster."]
    verdict = []
    for r in rows:
        if r["art_robust"] is None:
            verdict.append(f"- {r['model']}: NOT COMPARED: no ART AutoAttack result for this model in "
                           "this run (see the note above the table)")
            continue
        misses = []
        if r.get("art_stages"):
            verdict.append(f"- {r['model']}: PARTIAL: ART's run stopped after {r['art_stages']} stages "
                           "(its figure can only go down with the rest), so 'ours not higher' is checked "
                           "against an upper bound of ART's; the speed-up compares ours with part of "
                           "ART's run")
        if r["ours_robust"] > r["art_robust"]:
            misses.append("robust accuracy higher than ART's")
        if r["art_only_broken"] > 0.002 * r["n"]:
            misses.append(f"art_only_broken {r['art_only_broken']} > {0.002 * r['n']:g}")
        if r["speedup"] < 10:
            misses.append(f"speed-up {r['speedup']}x < 10x")
        verdict.append(f"- {r['model']}: "
                       + ("all targets met" if not misses else "MISSED: " + "; ".join(misses)))
    lines += [""] + verdict + ["", "Per model, our cascade in its order "
                               "(points attacked / newly broken / seconds):", ""]
    for r in rows:
        # The JSON keeps the stages by name; a cascade attacks ever fewer points, so sorting by
        # points attacked (stable over names, whose order breaks the BPDA copies' ties rightly)
        # gives the cascade order back.
        order = sorted(r["ours_per_attack"].items(), key=lambda kv: -kv[1]["attacked"])
        stages = ", ".join(f"{k} {v['attacked']}/{v['broken']}/{v['seconds']:.0f}s" for k, v in order)
        lines.append(f"- {r['model']}: {stages}")
    staged = [r for r in rows if r.get("art_per_stage")]
    if staged:
        lines += ["", "ART's AutoAttack stage by stage, where the run recorded it (points attacked / newly "
                  "broken / seconds), and the per-example worst case over both evaluations:", ""]
        for r in staged:
            stages = ", ".join(f"{st['stage']} {st['attacked']}/{st['broken']}/{st['seconds']:.0f}s"
                               for st in r["art_per_stage"])
            lines.append(f"- {r['model']}: {stages}; robust to both: {r['both_robust']:.3f}")
    fab = [r for r in rows if "fab_t_after_ours" in r]
    if fab:
        lines += ["", "FAB-T (AutoAttack's third attack; `preset=\"autoattack\"` runs it) on the points our "
                  "preset left robust, 9 targets x 100 steps (also under BPDA for the k-WTA model): "
                  "points it breaks that ours did not (each checked in the eps-ball, the clip range "
                  "and misclassified):", ""]
        for r in fab:
            f = r["fab_t_after_ours"]
            lines.append(f"- {r['model']}: {f['broken']} of {f['attacked']} robust points broken, "
                         f"{f['seconds']:.0f} s")
        lines += [f"- {r['model']}: not run after this row's ours run (`--parts=fab` runs it on the "
                  "cached rows)" for r in rows if "fab_t_after_ours" not in r]
        added = sum(r["fab_t_after_ours"]["broken"] for r in fab)
        lines += ["", ("FAB-T added no break on any model it ran on: `standard` leaves it out (use "
                       "`preset=\"autoattack\"` to run it)." if added == 0 else
                       f"FAB-T added {added} breaks in total: see the rows above; `autoattack` runs it.")]
    art_lists = [r["art_attacks"] for r in rows if r["art_attacks"]]
    if art_lists:
        lines += ["", f"ART's attack list: {', '.join(art_lists[0])}."]
    lines += ["", END]
    return "\n".join(lines)


def write_docs(rows, meta, out_dir):
    out_dir = Path(out_dir)
    utils.atomic_write_json(out_dir / "evaluation.json", {"rows": rows, "meta": meta})
    doc = out_dir / "evaluation.md"
    text = doc.read_text() if doc.exists() else ""
    block = _markdown(rows, meta)
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n## Against ART's AutoAttack (benchmark)\n\n" + block + "\n"
    utils.atomic_write_text(doc, text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="models,art,ours,fab,docs")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--cache", default=str(ROOT / "runs" / "bench_evaluation"))
    parser.add_argument("--out", default=str(ROOT / "docs"))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    names = [m for m in args.models.split(",") if m]
    unknown = sorted(set(names) - set(MODELS)) + sorted(parts - {"models", "art", "ours", "fab", "docs"})
    if unknown:
        parser.error(f"unknown model or part: {unknown}")
    if args.quick:
        args.n, args.cache, args.out = 50, "/tmp/tfrobust-bench-evaluation", "/tmp/tfrobust-bench-evaluation"
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    x, y = data.load_dataset("fashion_mnist", "test", limit=args.n)
    trained = load_models(cache, args.quick)
    arts = {}
    if "art" in parts:
        for name in names:
            arts[name] = run_art(name, trained[name], x, y, cache)
    if "ours" in parts:
        # Rows are merged by model into the cached rows.json: running one model (``--models=kwta_at``)
        # replaces its row and keeps the others, in MODELS order.
        rows_path = cache / "rows.json"
        previous = {r["model"]: r for r in json.loads(rows_path.read_text())} if rows_path.exists() else {}
        rows = []
        for name in names:
            report, seconds = run_ours(name, trained[name], x, y)
            art = arts.get(name) or art_result(name, trained[name], x, y, cache)
            if art is None:
                _log(f"no ART result for {name}: its row has ours only")
            rows.append(_join_art(_row(name, report, seconds, len(x)), art))
            if "fab" in parts:
                rows[-1]["fab_t_after_ours"] = run_fab(name, trained[name], x, y, report.robust_mask)
            elif ("fab_t_after_ours" in previous.get(name, {})
                  and previous[name].get("ours_robust_mask") == rows[-1]["ours_robust_mask"]):
                # Same robust points as the run FAB-T was measured after: its result still holds.
                rows[-1]["fab_t_after_ours"] = previous[name]["fab_t_after_ours"]
            _log(json.dumps({k: v for k, v in rows[-1].items()
                             if k not in ("ours_per_attack", "warnings", "ours_robust_mask")}))
        merged = {**previous, **{r["model"]: r for r in rows}}
        rows = [merged[m] for m in MODELS if m in merged]
        utils.atomic_write_json(rows_path, rows)
    elif "fab" in parts:
        # FAB-T alone, after the cached ``ours`` rows (on the robust points each row stored).
        rows_path = cache / "rows.json"
        rows = {r["model"]: r for r in json.loads(rows_path.read_text())} if rows_path.exists() else {}
        for name in names:
            if "ours_robust_mask" not in rows.get(name, {}):
                parser.error(f"--parts=fab without ours needs a cached ours row with its robust mask for "
                             f"{name}; run --parts=ours,fab")
            rows[name]["fab_t_after_ours"] = run_fab(name, trained[name], x, y,
                                                     rows[name]["ours_robust_mask"])
        utils.atomic_write_json(rows_path, [rows[m] for m in MODELS if m in rows])
    if "docs" in parts:
        # ART's columns are joined again here: an ART run finished (or resumed further) after the
        # ``ours`` part joins its row without re-running ours.
        rows = [_join_art(r, art_result(r["model"], trained[r["model"]], x, y, cache))
                for r in json.loads((cache / "rows.json").read_text())]
        meta = {"when": time.strftime("%Y-%m-%d"), "machine": f"{os.cpu_count()} shared CPU cores",
                "versions": _versions()}
        write_docs(rows, meta, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
