"""Honest robustness of every tfrobust defense on Fashion-MNIST -> docs/robustness.md.

For each defense in ``tfrobust.models.DEFENSES`` (the small CNN with the defense inserted):
train normally, and with PGD adversarial training where the defense's paper did (k-WTA, CAS,
CIFS, PCL, and the undefended baseline for reference); then report clean accuracy, PGD-20
accuracy and the ``adaptive``-preset accuracy (APGD-CE -> APGD-DLR -> APGD-T -> Square cascade;
AutoAttack's rand version with EOT for stochastic layers; the gradient attacks again under BPDA for
gradient-masking ones) at eps = 0.1 (L-inf), next to the figure
each paper claims.

Usage:
    .venv/bin/python -m benchmarks.defenses            # full run (~30-60 min on 2 cores)
    .venv/bin/python -m benchmarks.defenses --quick    # smoke run, a few minutes

Results are cached per (defense, training) in ``runs/bench_defenses/`` so an interrupted run
resumes where it stopped; the Markdown and JSON are written atomically at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from tfrobust import data, models, trainers, utils  # noqa: E402
from tfrobust._keras import keras  # noqa: E402
from tfrobust.evaluation import plan, robust_accuracy  # noqa: E402

EPS = 0.1
PGD_AT = ("none", "kwta", "cas", "cifs", "pcl")  # defenses whose papers train adversarially
LABELLED = ("cas", "cifs", "pcl")

#: What each paper claims (its own dataset and threat model) and the adaptive-attack literature.
PAPER = {
    "none": "-",
    "kwta": "CIFAR-10 DenseNet+AT: 52.4% PGD @8/255; AutoAttack 18.5%, Tramer et al. 0.16%",
    "sap": "only single-step attacks evaluated; Athalye et al. EOT: 9% @0.015, 0% @0.031",
    "rna": "SAP paper baseline (no robust figure)",
    "rsa": "SAP paper baseline (no robust figure)",
    "rnw": "SAP paper baseline (no robust figure)",
    "rsw": "SAP paper baseline (no robust figure)",
    "dwp": "SAP paper baseline (no robust figure)",
    "swp": "SAP paper baseline (no robust figure)",
    "wta_dropout": "efficiency method (DASNet), no robustness claim",
    "cas": "CIFAR-10 ResNet-18+AT: PGD-20 @8/255 ~ 51-55%; no adaptive result published",
    "cifs": "CIFAR-10 ResNet-18+PGD-AT: ~82% clean / 51% PGD-20; no adaptive result published",
    "pcl": "CIFAR-10 ResNet-110: PGD 31.1% @8/255; AutoAttack 0.28%",
}


#: Where CAS and CIFS go (``--at_blocks``). The papers put them on the last convolutional blocks of
#: a ResNet-18 trained for 100+ epochs; in this benchmark's 3-epoch budget that placement does not
#: train on small_cnn (measured 2026-12-06, standard training, 10k images, Adam 1e-3, seed 0, 500
#: test images: CAS on conv2 54% clean (70% after 10 epochs), on conv1+conv2 12%; CIFS on conv2
#: 75%, on conv1+conv2 33%; on the dense features CAS 82%). So the default is the dense
#: penultimate features; ``--at_blocks=conv2`` runs the papers' placement.
RECIPE = {"cas": {"at_blocks": ("dense",)}, "cifs": {"at_blocks": ("dense",)}}


def _train(defense, adversarial, x, y, *, epochs, batch_size, seed):
    """Train through the library: ``AdversarialTrainer`` (PGD-7, step 2.5 eps / 7) or ``Trainer``.

    CAS, CIFS and PCL pass their ``(train_model, model)`` pair: the attack runs on the deployed
    (prediction-path) model, the loss on the label-conditioned path including the layers' terms.
    """
    keras.utils.set_random_seed(seed)
    train_model, model = models.defended_cnn(defense, return_train_model=True, **RECIPE.get(defense, {}))
    pair = (train_model, model) if defense in LABELLED else model
    if adversarial:
        trainer = trainers.AdversarialTrainer(pair, method="pgd", eps=EPS, steps=7, seed=seed)
    else:
        trainer = trainers.Trainer(pair)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    ds = data.as_tf_dataset(x, y, batch_size=batch_size, shuffle=True, seed=seed)
    start = time.perf_counter()
    trainer.fit(ds, epochs=epochs, verbose=0)
    return model, time.perf_counter() - start


EOT_SAMPLES = 10


def _evaluate(model, x, y):
    report_fast = robust_accuracy(model, x, y, eps=EPS, preset="fast")
    report_adaptive = robust_accuracy(model, x, y, eps=EPS, preset="adaptive", model=model,
                                      eot_samples=EOT_SAMPLES)
    # The adaptive preset does not include plain PGD; the honest figure is the per-example worst
    # case over both evaluations.
    worst = np.logical_and(np.asarray(report_fast.robust_mask), np.asarray(report_adaptive.robust_mask))
    return {
        "worst_case_accuracy": float(worst.mean()),
        "clean_accuracy": report_fast.clean_accuracy,
        "pgd20_accuracy": report_fast.robust_accuracy,
        "adaptive_accuracy": report_adaptive.robust_accuracy,
        "adaptive_clean_accuracy": report_adaptive.clean_accuracy,
        "fast_config": report_fast.config,
        "adaptive_config": report_adaptive.config,
        "adaptive_per_attack": report_adaptive.per_attack,
        "warnings": list(report_fast.warnings) + list(report_adaptive.warnings),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings (smoke test)")
    parser.add_argument("--out", default="docs/robustness.md")
    parser.add_argument("--cache", default="runs/bench_defenses")
    parser.add_argument("--defenses", default="none,kwta,sap,pcl,cas,cifs,wta_dropout,rna,rsa,rnw,rsw,"
                                              "dwp,swp")
    parser.add_argument("--at_blocks", default="",
                        help="CAS/CIFS placement, e.g. conv2 or conv1,conv2 (default: dense, see RECIPE); "
                             "use its own --cache, rows are cached per defense and training")
    parser.add_argument("--no_eot_check", action="store_true",
                        help="skip the EOT convergence check of stochastic defenses that appear to help")
    parser.add_argument("--render", action="store_true",
                        help="write the page from the cached rows only (no training, no attack); rows "
                             "measured with an older adaptive preset are marked, missing ones listed")
    parser.add_argument("--eot_check_skip", default="sap",
                        help="defenses left out of the EOT check (listed as not checked)")
    args = parser.parse_args(argv)
    if args.at_blocks:
        blocks = tuple(b for b in args.at_blocks.split(",") if b)
        RECIPE.update(cas={"at_blocks": blocks}, cifs={"at_blocks": blocks})
    named = [d for d in args.defenses.split(",") + args.eot_check_skip.split(",") if d]
    unknown = sorted(set(named) - set(models.DEFENSES))
    if unknown:
        parser.error(f"unknown defenses {unknown}; expected some of {sorted(models.DEFENSES)}")
    quick = args.quick
    n_train, epochs, n_eval = (2000, 1, 100) if quick else (10000, 3, 500)
    # --render writes the page from the cached rows: no training data to load
    x_train, y_train = (None, None) if args.render else data.load_dataset("fashion_mnist", "train",
                                                                           limit=n_train)
    x_test, y_test = data.load_dataset("fashion_mnist", "test", limit=n_eval)
    cache = Path(args.cache) / ("quick" if quick else "full")
    cache.mkdir(parents=True, exist_ok=True)
    rows = []
    for defense in args.defenses.split(","):
        for adversarial in ((False, True) if defense in PGD_AT else (False,)):

            def measure(defense=defense, adversarial=adversarial):
                model, train_s = _train(defense, adversarial, x_train, y_train, epochs=epochs,
                                        batch_size=128, seed=0)
                t0 = time.perf_counter()
                row = {"defense": defense, "training": "PGD-7 AT" if adversarial else "standard",
                       "train_seconds": round(train_s, 1),
                       **_evaluate(model, x_test, y_test)}
                row["eval_seconds"] = round(time.perf_counter() - t0, 1)
                print(f"  clean {row['clean_accuracy']:.3f}  pgd20 {row['pgd20_accuracy']:.3f}  "
                      f"adaptive {row['adaptive_accuracy']:.3f}", flush=True)
                return row

            key = _key(defense, adversarial)
            if args.render:
                rows += [row] if (row := _read(cache, key)) is not None else []
                continue
            rows.append(_cached(cache, key, "train", measure, valid=_current))
            _write(rows, args, n_train, epochs, n_eval)  # partial tables survive an interruption
    if args.render:
        _write(rows, args, n_train, epochs, n_eval, _cached_checks(rows, cache) if not args.no_eot_check
               else None)
        return
    checks = None if args.no_eot_check else _eot_check(rows, x_train, y_train, x_test, y_test, cache, epochs,
                                                       skip=[d for d in args.eot_check_skip.split(",") if d])
    _write(rows, args, n_train, epochs, n_eval, checks)


def _key(defense, adversarial):
    return f"{defense}_{'pgdat' if adversarial else 'std'}"


def _adversarial(r):
    return r["training"] != "standard"


def _cached(cache, key, stage, compute, valid=None):
    """The JSON result cached under ``key``, or ``compute()``'s, written atomically (resumable runs).

    A cached result that ``valid`` rejects (a row measured with an older adaptive preset) is
    computed again.
    """
    cached = _read(cache, key)
    if cached is not None:
        if valid is None or valid(cached):
            print(f"[cached] {key}", flush=True)
            return cached
        print(f"[stale] {key}: measured with an older adaptive preset, measuring again", flush=True)
    print(f"[{stage}] {key}", flush=True)
    result = compute()
    utils.atomic_write_json(cache / f"{key}.json", result)
    return result


def _read(cache, key):
    """The JSON result cached under ``key``, or None."""
    path = cache / f"{key}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _current(row):
    """True when ``row``'s adaptive attacks are what the current ``adaptive`` preset plans for it."""
    cfg = row["adaptive_config"]
    stages, _ = plan("adaptive", num_classes=cfg["num_classes"],
                     stochastic=cfg.get("eot_samples") is not None, gradient_masking=bool(cfg["bpda"]))
    return [st.label for st in stages] == list(cfg["attacks"])


def _cached_checks(rows, cache):
    """The cached EOT convergence checks of ``rows`` (``--render``), or None when none was run."""
    checks = [_read(cache, _key(r["defense"], _adversarial(r)) + "_eot") for r in rows]
    return [c for c in checks if c is not None] or None


EOT_CHECK = (10, 40)  # EOT samples compared on the stochastic rows that appear to help
EOT_CHECK_N = 100


def _eot_check(rows, x_train, y_train, x_test, y_test, cache, epochs, skip=()):
    """Does the adaptive figure of a stochastic defense that appears to help hold with more EOT?

    For every row whose model declares stochastic layers and whose worst case beats the
    undefended CNN by more than 2 points, retrain it (same seed) and run the adaptive preset with
    ``EOT_CHECK`` samples on the first ``EOT_CHECK_N`` test images. A figure that keeps falling
    with more samples means EOT had not converged and the gain is (partly) obfuscation.
    Defenses in ``skip`` are listed as not checked (SAP: its EOT x10 evaluation alone takes the
    better part of an hour on 2 cores).
    """
    baseline = _baseline(rows)
    checks = []
    for r in rows:
        gain = _gain(r, baseline)
        if not r["adaptive_config"]["declared_layers"]["stochastic"] or gain is None or gain <= GAIN:
            continue
        if r["defense"] in skip:
            checks.append({"defense": r["defense"], "training": r["training"], "skipped": True})
            continue

        def measure(r=r):
            model, _ = _train(r["defense"], _adversarial(r), x_train, y_train, epochs=epochs,
                              batch_size=128, seed=0)
            xs, ys = x_test[:EOT_CHECK_N], y_test[:EOT_CHECK_N]
            check = {"defense": r["defense"], "training": r["training"], "n": len(xs)}
            for samples in EOT_CHECK:
                t0 = time.perf_counter()
                report = robust_accuracy(model, xs, ys, eps=EPS, preset="adaptive", eot_samples=samples)
                check[f"eot{samples}"] = report.robust_accuracy
                check[f"eot{samples}_seconds"] = round(time.perf_counter() - t0, 1)
                print(f"  EOT x{samples}: {report.robust_accuracy:.3f}", flush=True)
            return check

        checks.append(_cached(cache, _key(r["defense"], _adversarial(r)) + "_eot", "eot check", measure))
    return checks


def _eot_lines(checks):
    lo, hi = EOT_CHECK
    n = next((c["n"] for c in checks if "n" in c), EOT_CHECK_N)
    lines = ["", "## EOT convergence (stochastic defenses that appear to help)", "",
             f"The adaptive preset with EOT x{lo} and x{hi} on the first {n} test images "
             "(retrained with the same seed). A figure that falls with more samples means the "
             "gradient estimate had not converged: the apparent gain is partly obfuscated gradients.", "",
             f"| defense | training | EOT x{lo} | EOT x{hi} | change |", "|---|---|---|---|---|"]
    if not checks:
        lines += ["| (none: no stochastic defense beat the undefended CNN by more than 2 points) | | | | |"]
    for c in checks:
        if c.get("skipped"):
            lines.append(f"| {c['defense']} | {c['training']} | not checked (`--eot_check_skip`) | | |")
            continue
        change = 100 * (c[f"eot{hi}"] - c[f"eot{lo}"])
        lines.append(f"| {c['defense']} | {c['training']} | {100 * c[f'eot{lo}']:.1f}% | "
                     f"{100 * c[f'eot{hi}']:.1f}% | {change:+.1f} points |")
    return lines


BREAKS = 0.05  # PGD-20 minus the worst case at which a defense "breaks under adaptive attack"
GAIN = 0.02  # worst case above the undefended CNN's beyond which a defense counts as a gain


def _worst(r):
    w = r.get("worst_case_accuracy")
    return min(r["pgd20_accuracy"], r["adaptive_accuracy"]) if w is None else w


def _baseline(rows):
    """The undefended CNN's worst case per training."""
    return {r["training"]: _worst(r) for r in rows if r["defense"] == "none"}


def _gain(r, baseline):
    """Worst case minus the undefended CNN's with the same training (None for it or without one)."""
    ref = baseline.get(r["training"])
    return None if r["defense"] == "none" or ref is None else _worst(r) - ref


def _verdict(r, gap, baseline):
    parts = []
    if gap >= BREAKS:
        parts.append("**breaks under adaptive attack**")
    gain = _gain(r, baseline)
    if gain is not None:
        parts.append("no gain over the undefended CNN" if gain <= GAIN else f"+{100 * gain:.1f} points "
                     "over the undefended CNN")
    return "; ".join(parts) or "-"


def _summary(rows, baseline):
    """One generated line per finding: which rows break, which gain, which do not."""
    broken, gains, none = [], [], []
    for r in rows:
        if r["defense"] == "none":
            continue
        label = f"{r['defense']} ({'AT' if _adversarial(r) else 'std'})"
        if r["pgd20_accuracy"] - _worst(r) >= BREAKS:
            broken.append(label)
        gain = _gain(r, baseline)
        if gain is not None:
            (gains if gain > GAIN else none).append(f"{label} {100 * gain:+.1f}")
    return ["", "Summary (generated from the table):", "",
            f"- PGD-20 overstates by 5+ points (adaptive attacks break it): {', '.join(broken) or 'none'}.",
            f"- Worst case more than 2 points above the undefended CNN with the same training: "
            f"{', '.join(gains) or 'none'} (points; see the EOT check below for stochastic ones).",
            f"- No gain: {', '.join(none) or 'none'}."]


def _attacks_cell(r):
    cfg = r["adaptive_config"]
    eot = f", EOT x{cfg['eot_samples']}" if cfg.get("eot_samples") else ""
    return ", ".join(cfg["attacks"]) + eot


def _write(rows, args, n_train, epochs, n_eval, checks=None):
    env = utils.environment()
    now = datetime.now(UTC).isoformat(timespec="minutes")
    lines = [
        "# Robustness of the defenses (Fashion-MNIST, L-inf eps = 0.1)",
        "",
        ("Generated by `benchmarks/defenses.py`" + (" --quick" if args.quick else "") + f" on {now}."
         if not args.render else
         f"Written on {now} by `benchmarks/defenses.py --render` from the rows cached by earlier runs of "
         "the script (each row was measured when first computed; this page's run trained and attacked "
         "nothing)."),
        f"Each model is `tfrobust.models.defended_cnn(defense)` trained on the first {n_train} "
        f"training images for {epochs} epochs (Adam 1e-3, batch 128; PGD-7 adversarial training "
        "with step 2.5 eps / 7 where the paper trained adversarially, through "
        "`trainers.AdversarialTrainer`; CAS and CIFS on the blocks "
        f"{', '.join(RECIPE['cas']['at_blocks'])} (the papers' last-conv-block placement does not "
        "train in this budget: see `RECIPE` in the script), their training loss CE + beta/S sum of "
        "the modules' probe losses on the adversarial batch; PCL with its centroid loss on the "
        "adversarial features). Clean, "
        "PGD-20 (`fast` preset) and `adaptive`-preset accuracy (deterministic models: APGD-CE -> "
        "APGD-DLR -> APGD-T (9 targets) -> Square (5000 queries), 100 steps each, cascade, the three "
        "APGD attacks again under BPDA and Square 5 times for gradient-masking layers; stochastic ones: "
        "APGD-CE and "
        f"APGD-DLR with EOT over {EOT_SAMPLES} samples, then a random search) "
        f"on the same first {n_eval} test images.",
        "",
        "| defense | training | clean | PGD-20 | adaptive preset | worst case (both) "
        "| PGD-20 overstated by | verdict | adaptive attacks | paper's claim |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    baseline = _baseline(rows)
    for r in rows:
        worst = _worst(r)
        # rows cached before per-example masks were recorded only know an upper bound
        worst_cell = f"{'<= ' if r.get('worst_case_accuracy') is None else ''}{100 * worst:.1f}%"
        gap = r["pgd20_accuracy"] - worst
        gap_cell = f"**{100 * gap:.1f} points**" if gap >= BREAKS else f"{100 * gap:.1f} points"
        stale = "" if _current(r) else " (older preset: one Square run, see below)"
        lines.append(f"| {r['defense']}{stale} | {r['training']} | {100 * r['clean_accuracy']:.1f}% | "
                     f"{100 * r['pgd20_accuracy']:.1f}% | {100 * r['adaptive_accuracy']:.1f}% | "
                     f"{worst_cell} | {gap_cell} | {_verdict(r, gap, baseline)} | "
                     f"{_attacks_cell(r)} | {PAPER.get(r['defense'], '-')} |")
    lines += _summary(rows, baseline)
    if any(not _current(r) for r in rows):
        lines += ["", "Rows marked *older preset* were measured before `adaptive` ran Square 5 times on "
                  "gradient-masking models (`evaluation.MASKING_SQUARE_RESTARTS`, 2026-12-06): their "
                  "adaptive figure may be too high; a run without `--render` measures them again."]
    missing = [d for d in models.DEFENSES if d not in {r["defense"] for r in rows}]
    if missing:
        lines += ["", f"Not measured in this run: {', '.join(f'`{d}`' for d in missing)}. Add them with "
                  "`python -m benchmarks.defenses --defenses=<names>` (each row is cached under "
                  "runs/bench_defenses/, so a run resumes and extends)."]
    lines += ["", "Verdict: *breaks under adaptive attack* when the worst case is 5 or more points below "
              "PGD-20; *no gain* when the worst case is within 2 points of (or below) the undefended CNN "
              "with the same training; otherwise the gain over that CNN in points.", "",
              "The worst case counts an image as robust only if it survives every attack of both "
              "evaluations (per-example AND of the robust masks); `<=` marks rows measured before the "
              "masks were recorded, where only the smaller of the two accuracies (an upper bound) is "
              "known. A gap of 5 points or more (bold) means PGD-20 alone would have overstated the "
              "defense.", "", "Defense settings:", ""]
    lines += [f"- `{k}`: {v}" for k, v in models.DEFENSES.items()]
    if checks is not None:
        lines += _eot_lines(checks)
    else:
        lines += ["", "The EOT convergence check (the adaptive preset again with more EOT samples) was "
                  "not run (`--no_eot_check`): the gains of stochastic defenses above are upper bounds "
                  "until it confirms EOT x10 had converged."]
    if rows:
        lines += ["", "Attack configurations (from the evaluation reports):", "",
                  "- fast preset: `" + json.dumps(rows[0]["fast_config"], sort_keys=True) + "`",
                  "- adaptive preset (first row): `" + json.dumps(rows[0]["adaptive_config"], sort_keys=True)
                  + "`"]
    warn = sorted({w for r in rows for w in r["warnings"]})
    if warn:
        lines += ["", "Sanity warnings raised by the evaluator:", ""] + [f"- {w}" for w in warn]
    lines += ["", f"Environment: Python {env['python']}, TF {env['versions']['tensorflow']}, "
              f"{env['cpu_count']} cores, load {env['loadavg_1_5_15']}."]
    utils.atomic_write_text(args.out, "\n".join(lines) + "\n")
    utils.atomic_write_json(Path(args.out).with_suffix(".json"),
                            {"rows": rows, "eot_check": checks, "environment": env})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
