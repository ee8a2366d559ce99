"""Compression on Fashion-MNIST -> the generated section of docs/compression.md.

Parts (``--parts``, comma-separated; each part's result is cached in ``--cache`` so an interrupted
run resumes at the first unfinished part):

- ``dc``: Deep Compression of LeNet-300-100 (prune -> cluster -> Huffman); sizes are the length
  of the real encoded byte stream (which :func:`tfrobust.compression.decode_stream` turns back into
  the exact weights, checked here) against 4 bytes per parameter.
- ``prune``: TF-MOT magnitude pruning of the small CNN to 90% (polynomial schedule), stripped;
  per-layer sparsity, raw / gzip size.
- ``jp``: JPnet joint weight + activation pruning of the same small CNN; MACs counted exactly
  on the test set.
- ``lottery``: iterative magnitude pruning with rewinding to init vs random re-init (Scratch-E /
  Scratch-B) on LeNet-300-100.
- ``structured``: structured (unit) pruning of the small CNN -- APoZ-ranked channels / neurons
  removed in rounds with fine-tuning, the narrow model's int8 .tflite bytes and accuracy, the same
  with a robustness-aware score and FGSM-RS adversarial fine-tuning (robust accuracy: preset
  ``standard``, L-inf ``--st_eps``), and Scratch-E / Scratch-B on the pruned architecture. Run it
  alone with ``--parts structured`` (the other parts stay cached).

Every part reports clean accuracy on the full test set and robust accuracy before/after with
``tfrobust.evaluation.robust_accuracy`` (``fast`` preset: PGD-20, L-inf eps ``--eps``) on the
first ``--robust_n`` test images. The models are *not* adversarially trained, so robust accuracy
is low at any eps; it is reported to show what compression does to it, not as a defense figure.

Usage:
    .venv/bin/python -m benchmarks.compression            # the documented run (~30-60 min, 2 busy cores)
    .venv/bin/python -m benchmarks.compression --quick    # smoke run, writes to /tmp
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from tfrobust import compression, data, models, trainers, utils  # noqa: E402
from tfrobust._keras import keras  # noqa: E402

START = "<!-- benchmarks/compression.py: generated section start -->"
END = "<!-- benchmarks/compression.py: generated section end -->"


def _compile(model, lr=1e-3):
    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


def _acc(model, x, y):
    preds = []
    for s in range(0, len(x), 1000):
        preds.append(np.argmax(model(x[s:s + 1000], training=False).numpy(), 1))
    return float(np.mean(np.concatenate(preds) == y))


def _eval(model, ctx):
    from tfrobust.evaluation import robust_accuracy

    xt, yt = ctx["test"]
    n = ctx["args"].robust_n
    rep = robust_accuracy(model, xt[:n], yt[:n], eps=ctx["args"].eps, preset="fast", batch_size=250,
                          model=model)
    return {"accuracy": _acc(model, xt, yt), "robust_accuracy": float(rep.robust_accuracy),
            "robust_n": int(n), "robust_warnings": list(rep.warnings)}


def _train_dense(builder, ctx, epochs, seed):
    utils.set_seed(seed)
    model = _compile(builder())
    x, y = ctx["train"]
    t0 = time.perf_counter()
    model.fit(data.as_tf_dataset(x, y, batch_size=128, shuffle=True, seed=seed), epochs=epochs, verbose=0)
    return model, time.perf_counter() - t0


def part_dc(ctx):
    a = ctx["args"]
    dense, secs = _train_dense(models.lenet_300_100, ctx, a.dense_epochs, 0)
    before = _eval(dense, ctx)
    x, y = ctx["train"]
    sparsity = {"fc1": 0.93, "fc2": 0.91, "logits": 0.75}
    bits = {"fc1": 4, "fc2": 5, "logits": 5}
    t0 = time.perf_counter()
    res = compression.deep_compress(dense, x, y, sparsity=sparsity, cluster_bits=bits, gap_bits=5,
                                     prune_epochs=a.prune_epochs, finetune_epochs=a.finetune_epochs,
                                     lr=5e-4, finetune_lr=1e-4)
    dc_secs = time.perf_counter() - t0
    fresh = models.lenet_300_100()
    compression.load_stream_weights(fresh, res.stream)  # evaluate the model rebuilt from the bytes
    exact = all(np.array_equal(u, v) for u, v in zip(fresh.get_weights(), dense.get_weights()))
    after = _eval(fresh, ctx)
    return {"before": before, "after": after, "dense_train_seconds": secs, "compress_seconds": dc_secs,
            "decode_exact": bool(exact), "sparsity": sparsity, "cluster_bits": bits, "gap_bits": 5,
            "report": res.to_dict(), "markdown": res.to_markdown()}


def part_prune(ctx):
    a = ctx["args"]
    dense, secs = ctx["small_cnn"]()
    before = _eval(dense, ctx)
    x, y = ctx["train"]
    steps = int(np.ceil(len(x) / 128)) * a.finetune_cnn_epochs
    pruned = _compile(compression.prune(dense, 0.9, schedule="polynomial", begin_step=0,
                                        end_step=int(0.6 * steps), frequency=max(1, steps // 30)), 5e-4)
    t0 = time.perf_counter()
    pruned.fit(data.as_tf_dataset(x, y, batch_size=128, shuffle=True, seed=1), epochs=a.finetune_cnn_epochs,
               callbacks=compression.pruning_callbacks(), verbose=0)
    ft = time.perf_counter() - t0
    stripped = compression.strip(pruned)
    after = _eval(stripped, ctx)
    return {"before": before, "after": after, "finetune_seconds": ft,
            "sparsity": compression.sparsity_report(stripped).to_dict(),
            "sparsity_markdown": compression.sparsity_report(stripped).to_markdown(),
            "size_dense": compression.model_size(dense), "size_pruned": compression.model_size(stripped)}


def part_binary(ctx):
    """Binary-weight twins of the small CNN (same layout, BN after each layer) vs the float model,
    same epochs, data and optimiser."""
    a = ctx["args"]
    dense, dense_secs = ctx["small_cnn"]()
    out = {"float": {**_eval(dense, ctx), "train_seconds": dense_secs, "params": int(dense.count_params())}}
    for mode in ("bwn", "binaryconnect"):
        builder = functools.partial(models.binary_small_cnn, mode=mode)
        model, secs = _train_dense(builder, ctx, a.cnn_epochs, 0)
        out[mode] = {**_eval(model, ctx), "train_seconds": secs, "params": int(model.count_params())}
    return out


def part_jp(ctx):
    a = ctx["args"]
    dense, _ = ctx["small_cnn"]()
    before = _eval(dense, ctx)
    x, y = ctx["train"]
    xt, _ = ctx["test"]
    dense_macs = compression.count_macs(dense, xt)
    t0 = time.perf_counter()
    res = compression.joint_prune(dense, x, y, weight_sparsity=0.8, activation_sparsity=0.6,
                                  stages=a.jp_stages, epochs_per_stage=1, lr=5e-4, x_test=xt)
    secs = time.perf_counter() - t0
    after = _eval(res.model, ctx)
    return {"before": before, "after": after, "seconds": secs, "weight_sparsity": 0.8,
            "activation_sparsity_target": 0.6, "stages": a.jp_stages,
            "dense_model_macs": dense_macs.to_dict(), "macs": res.macs.to_dict(),
            "macs_markdown": res.macs.to_markdown(), "dense_macs_markdown": dense_macs.to_markdown(),
            "thresholds": res.thresholds, "activation_sparsity": res.activation_sparsity}


def part_lottery(ctx):
    a = ctx["args"]
    x, y = ctx["train"]
    xt, yt = ctx["test"]
    n = a.lottery_train
    utils.set_seed(0)
    model = models.lenet_300_100()
    t0 = time.perf_counter()
    res = compression.lottery_ticket(model, x[:n], y[:n], xt, yt, rounds=a.lottery_rounds, prune_rate=0.5,
                                     epochs=a.lottery_epochs, seed=0)
    return {"seconds": time.perf_counter() - t0, **res.to_dict(), "markdown": res.to_markdown()}


ST_AMOUNT = {"conv1": 0.5, "conv2": 0.625, "fc1": 0.5}  # small_cnn 32/64/128 -> 16/24/64 units


def _int8(model, ctx):
    """int8 .tflite bytes of ``model`` and the deployed file's accuracy on the whole test set."""
    from tfrobust import tflite_tools

    x, _ = ctx["train"]
    xt, yt = ctx["test"]
    blob = tflite_tools.convert(model, "int8", representative_data=x[:500])
    logits = tflite_tools.TFLiteModel(blob).predict(xt)
    return {"int8_bytes": len(blob), "int8_accuracy": float(np.mean(np.argmax(logits, 1) == yt))}


def _st_eval(model, ctx, preset):
    from tfrobust.evaluation import robust_accuracy

    a = ctx["args"]
    xt, yt = ctx["test"]
    rep = robust_accuracy(model, xt[:a.st_robust_n], yt[:a.st_robust_n], eps=a.st_eps, preset=preset,
                          batch_size=250, model=model)
    return {"accuracy": _acc(model, xt, yt), "robust_accuracy": float(rep.robust_accuracy),
            "robust_preset": preset, "robust_attacks": list(rep.per_attack), "robust_n": int(a.st_robust_n),
            "robust_warnings": list(rep.warnings), "params": int(model.count_params())}


def part_structured(ctx):
    """Structured pruning of the small CNN: clean fine-tuning, adversarial fine-tuning, Scratch-E/B."""
    a = ctx["args"]
    x, y = ctx["train"]
    xt, yt = ctx["test"]
    out = {"amount": ST_AMOUNT, "rounds": a.st_rounds, "epochs_per_round": 1,
           "final_epochs": a.st_final_epochs, "cnn_epochs": a.cnn_epochs}
    dense, dense_secs = ctx["small_cnn"]()
    out["dense"] = {**_st_eval(dense, ctx, "fast"), **_int8(dense, ctx), "train_seconds": dense_secs}
    t0 = time.perf_counter()
    res = compression.prune_units_iteratively(dense, ST_AMOUNT, x, y, rounds=a.st_rounds, epochs=1,
                                              final_epochs=a.st_final_epochs, score="apoz", lr=5e-4,
                                              seed=0)
    out["pruned"] = {**_st_eval(res.model, ctx, "fast"), **_int8(res.model, ctx),
                     "seconds": time.perf_counter() - t0, "rounds_table": res.to_dict()["rows"],
                     "rounds_markdown": res.to_markdown()}
    # Scratch-E / Scratch-B: the pruned architecture from a fresh init (Liu et al. 2019).
    scratch = compression.scratch_baselines(res.model, dense, x, y, xt, yt, epochs=a.cnn_epochs, seed=1)
    out["scratch"] = scratch.to_dict()
    for row in scratch.rows:
        row.update(_st_eval(scratch.models[row["name"]], ctx, "fast"))
    # Robust: FGSM-RS fine-tuning of the dense model, then robustness-aware pruning (APoZ on PGD
    # examples) with FGSM-RS fine-tuning; both evaluated with the `standard` preset.
    adv = {"method": "fgsm_rs", "eps": a.st_eps}
    robust = keras.models.clone_model(dense)
    robust.set_weights(dense.get_weights())
    trainer = trainers.AdversarialTrainer(robust, **adv)
    trainer.compile(optimizer=keras.optimizers.Adam(5e-4), metrics=["accuracy"])
    t0 = time.perf_counter()
    trainer.fit(data.as_tf_dataset(x, y, batch_size=128, shuffle=True, seed=2), epochs=a.st_adv_epochs,
                verbose=0)
    out["robust_dense"] = {**_st_eval(robust, ctx, "standard"), **_int8(robust, ctx),
                           "adv_seconds": time.perf_counter() - t0, "adv_epochs": a.st_adv_epochs}
    t0 = time.perf_counter()
    rres = compression.prune_units_iteratively(robust, ST_AMOUNT, x, y, rounds=a.st_rounds, epochs=1,
                                               final_epochs=a.st_final_epochs, score="apoz", eps=a.st_eps,
                                               adversarial=adv, lr=5e-4, seed=3)
    out["robust_pruned"] = {**_st_eval(rres.model, ctx, "standard"), **_int8(rres.model, ctx),
                            "seconds": time.perf_counter() - t0, "rounds_table": rres.to_dict()["rows"],
                            "rounds_markdown": rres.to_markdown()}
    out["adversarial"] = adv
    return out


PARTS = {"dc": part_dc, "prune": part_prune, "jp": part_jp, "lottery": part_lottery, "binary": part_binary,
         "structured": part_structured}


def _ev_row(name, r):
    b, a = r["before"], r["after"]
    change = 100 * (a["accuracy"] - b["accuracy"])
    return (f"| {name} | {b['accuracy']:.4f} | {a['accuracy']:.4f} | {change:+.2f} | "
            f"{b['robust_accuracy']:.4f} | {a['robust_accuracy']:.4f} |")


def render(results, args) -> str:
    env = results.get("environment", {})
    v = env.get("versions", {})
    stamps = ", ".join(f"{k} {r['measured_at']} (load {r['load'][0]:.1f})"
                       for k, r in results["parts"].items() if "measured_at" in r)
    lines = [START, "", f"## Measured results (last part: {results.get('measured_at', '?')})", "",
             f"When each part was measured: {stamps}." if stamps else "", "",
             f"Fashion-MNIST, {results['train_examples']} training / {results['test_examples']} test images; "
             f"Python {env.get('python')}, TF {v.get('tensorflow')}, tf_keras {v.get('tf-keras')}, "
             f"TF-MOT {v.get('tensorflow-model-optimization')}, {env.get('cpu_count')} shared cores "
             f"(load {env.get('loadavg_1_5_15')}). Robust accuracy: `tfrobust.evaluation.robust_accuracy`, "
             f"preset `fast` (PGD-20), L-inf eps {args.eps}, first {args.robust_n} test images; the "
             "models are not adversarially trained. Raw JSON: `docs/compression_results.json`. Re-run: "
             "`.venv/bin/python -m benchmarks.compression`.", "",
             "| step | accuracy before | after | change (points) | robust acc. before | after |",
             "|---|---|---|---|---|---|"]
    names = {"dc": "Deep Compression, LeNet-300-100", "prune": "TF-MOT 90% pruning, small CNN",
             "jp": "JPnet joint pruning, small CNN"}
    for key, name in names.items():
        if key in results["parts"]:
            lines.append(_ev_row(name, results["parts"][key]))
    lines.append("")
    if "dc" in results["parts"]:
        r = results["parts"]["dc"]
        rep = r["report"]
        loss = 100 * (r["before"]["accuracy"] - r["after"]["accuracy"])
        ok = rep["compression_ratio"] >= 40 and loss <= 1.0
        lines += ["### Deep Compression (LeNet-300-100)", "",
                  f"Dense training {args.dense_epochs} epochs; pruning {args.prune_epochs} epochs (cubic "
                  f"ramp to per-layer sparsity {r['sparsity']}); k-means with linear init, index bits "
                  f"{r['cluster_bits']}; "
                  f"centroid fine-tuning {args.finetune_epochs} epoch(s); relative-index span "
                  f"{r['gap_bits']} bits. The accuracy after is measured on a fresh model loaded from the "
                  f"byte stream (decode exact: {r['decode_exact']}).", "",
                  r["markdown"],
                  f"Target >= 40x with <= 1 point loss: **{'met' if ok else 'missed'}** "
                  f"({rep['compression_ratio']:.1f}x, {loss:+.2f} points lost).", ""]
    if "prune" in results["parts"]:
        r = results["parts"]["prune"]
        loss = 100 * (r["before"]["accuracy"] - r["after"]["accuracy"])
        sd, sp = r["size_dense"], r["size_pruned"]
        st = r.get("settings", vars(args))
        lines += ["### Magnitude pruning to 90% (small CNN, TF-MOT)", "",
                  f"Dense small CNN trained {st['cnn_epochs']} epochs, then pruned with a polynomial "
                  "schedule "
                  f"(0 -> 90% over the first 60% of {st['finetune_cnn_epochs']} fine-tuning epochs, Adam "
                  f"5e-4; measured {r.get('measured_at', results.get('measured_at'))}), "
                  "stripped. "
                  "Sparsity measured on the stripped kernels:", "", r["sparsity_markdown"],
                  f"Size (.h5): dense {sd['raw_bytes']:,} B raw / {sd['gzip_bytes']:,} B gzip; pruned "
                  f"{sp['raw_bytes']:,} B raw / {sp['gzip_bytes']:,} B gzip "
                  f"({sd['gzip_bytes'] / sp['gzip_bytes']:.2f}x smaller gzipped; the raw file does not "
                  "shrink).", "",
                  f"Target <= 1 point loss: **{'met' if loss <= 1.0 else 'missed'}** "
                  f"({loss:+.2f} points lost).", ""]
    if "jp" in results["parts"]:
        r = results["parts"]["jp"]
        loss = 100 * (r["before"]["accuracy"] - r["after"]["accuracy"])
        saved = r["macs"]["saved"]
        lines += ["### JPnet joint pruning (small CNN)", "",
                  f"Weight sparsity 80% (last layer dense), activation-sparsity target 60% per ReLU layer, "
                  f"{r['stages']} stages of 1 fine-tuning epoch. MACs counted exactly on the "
                  f"{results['test_examples']} test images (a MAC counts when both its weight and its input "
                  "activation are non-zero). Dense model (ReLU zeros only):", "", r["dense_macs_markdown"],
                  "Jointly pruned:", "", r["macs_markdown"],
                  f"Thresholds: {', '.join(f'{k} {v:.4f}' for k, v in r['thresholds'].items())}; measured "
                  f"activation sparsity after thresholding on the test set: "
                  f"{', '.join(f'{k} {v:.1%}' for k, v in r['activation_sparsity'].items())}.", "",
                  f"Target >= 70% MACs saved with <= 0.5 point loss: "
                  f"**{'met' if saved >= 0.7 and loss <= 0.5 else 'missed'}** ({saved:.1%} saved, "
                  f"{loss:+.2f} points lost).", ""]
    if "binary" in results["parts"]:
        r = results["parts"]["binary"]
        f = r["float"]
        lines += ["### Binary-weight small CNN vs its float twin", "",
                  f"`models.binary_small_cnn` (every Conv2D/Dense binary, first and last included, "
                  "BatchNorm after each) and the float `small_cnn`, each trained "
                  f"{r.get('settings', {}).get('cnn_epochs', args.cnn_epochs)} epochs with Adam 1e-3, "
                  "batch 128, seed 0, on the same images; binary kernels are `alpha_j . sign(W)` (BWN) or "
                  "`sign(W)` (BinaryConnect) of latent float weights trained through the straight-through "
                  "estimator.", "",
                  "| model | weights | accuracy | change vs float (points) | robust acc. | train s |",
                  "|---|---|---|---|---|---|",
                  f"| small_cnn | float32 | {f['accuracy']:.4f} | - | {f['robust_accuracy']:.4f} | "
                  f"{f['train_seconds']:.0f} |"]
        for mode, label in (("bwn", "BWN, alpha . sign(W)"), ("binaryconnect", "BinaryConnect, sign(W)")):
            b = r[mode]
            lines.append(f"| binary_small_cnn({mode}) | {label} | {b['accuracy']:.4f} | "
                         f"{100 * (b['accuracy'] - f['accuracy']):+.2f} | {b['robust_accuracy']:.4f} | "
                         f"{b['train_seconds']:.0f} |")
        gap = 100 * (f["accuracy"] - r["bwn"]["accuracy"])
        side = "below" if gap >= 0 else "above"
        lines += ["", f"Target: binary-weight (BWN) within 5 points of the float twin: "
                      f"**{'met' if gap <= 5 else 'missed'}** ({abs(gap):.2f} points {side} it).", ""]
    if "lottery" in results["parts"]:
        r = results["parts"]["lottery"]
        c = r["config"]
        lines += ["### Lottery tickets vs random re-initialisation (LeNet-300-100)", "",
                  f"{c['train_examples']} training images, {c['epochs']} epochs per training, {c['rounds']} "
                  f"rounds removing {c['prune_rate']:.0%} of the surviving weights per round (output layer "
                  "half that), rewinding to the original initialisation; test accuracy on the full test set. "
                  "Scratch-E: the same mask, fresh random init, same epochs; Scratch-B: same, "
                  "ceil(E * min(2, 1/density)) epochs (Liu et al.).", "", r["markdown"]]
    if "structured" in results["parts"]:
        lines += _render_structured(results["parts"]["structured"], results)
    lines += [END]
    return "\n".join(lines) + "\n"


def _render_structured(r, results):
    st = r.get("settings", {})
    d, p, rd, rp = r["dense"], r["pruned"], r["robust_dense"], r["robust_pruned"]

    def units(key):
        final = r[key]["rounds_table"][-1]["units"]
        return "/".join(str(final[k]) for k in r["amount"])

    clean_loss = 100 * (d["accuracy"] - p["accuracy"])
    robust_loss = 100 * (rd["robust_accuracy"] - rp["robust_accuracy"])
    clean_delta = 100 * (rp["accuracy"] - rd["accuracy"])
    adv_ft = sum(row["epochs"] for row in rp["rounds_table"])
    # Runs before the preset list was recorded used the `standard` preset of that time.
    attacks = ", ".join(rd.get("robust_attacks") or ["APGD-CE", "APGD-DLR (100 steps each)", "random search"])
    pr, br = d["params"] / p["params"], d["int8_bytes"] / p["int8_bytes"]
    rpr, rbr = rd["params"] / rp["params"], rd["int8_bytes"] / rp["int8_bytes"]
    lines = ["### Structured pruning (small CNN)", "",
             f"`compression.prune_units_iteratively` removes whole channels / neurons of `small_cnn` "
             f"(amounts {r['amount']}: conv1/conv2/fc1 32/64/128 -> {units('pruned')} units; the logits "
             f"are never pruned) in {r['rounds']} rounds ranked by APoZ on 2,000 training images, each "
             f"round followed by 1 fine-tuning epoch (Adam 5e-4), plus {r['final_epochs']} final epoch(s). "
             f"The dense model is trained {r['cnn_epochs']} epochs. Sizes are the bytes of the int8 "
             f".tflite (`tflite_tools.convert(..., 'int8')`), accuracies on the {results['test_examples']:,} "
             "test images, both from Keras and from the int8 file run by LiteRT. Robust accuracy: "
             f"`robust_accuracy`, L-inf eps {st.get('st_eps')}, first {d['robust_n']} test images.", "",
             "| model | params | int8 bytes | accuracy (Keras) | accuracy (int8 file) | robust acc. | "
             "preset |",
             "|---|---|---|---|---|---|---|"]
    for name, m in (("small_cnn, dense", d), ("structured-pruned", p),
                    (f"dense + FGSM-RS ({rd['adv_epochs']} epochs)", rd),
                    ("robust-score pruned + FGSM-RS fine-tuning", rp)):
        lines.append(f"| {name} | {m['params']:,} | {m['int8_bytes']:,} | {m['accuracy']:.4f} | "
                     f"{m['int8_accuracy']:.4f} | {m['robust_accuracy']:.4f} | {m['robust_preset']} |")
    ok_clean = pr >= 4 and br >= 4 and clean_loss <= 1.0
    ok_robust = robust_loss <= 2.0
    lines += ["",
              f"Target >= 4x fewer parameters and a >= 4x smaller int8 file at <= 1 point clean accuracy "
              f"loss: **{'met' if ok_clean else 'missed'}** ({pr:.2f}x parameters, {br:.2f}x bytes, "
              f"{clean_loss:+.2f} points lost).", "",
              f"Target with adversarial fine-tuning: <= 2 points loss of `standard` robust accuracy "
              f"against the adversarially fine-tuned dense model: **{'met' if ok_robust else 'missed'}** "
              f"(robust accuracy {-robust_loss:+.2f} points, clean {clean_delta:+.2f} points, at "
              f"{rpr:.2f}x fewer parameters and a {rbr:.2f}x smaller int8 file). Attacks of the "
              f"`standard` preset in this run: {attacks}. The robust dense model is the clean one "
              f"fine-tuned {rd['adv_epochs']} epochs with FGSM-RS (eps {r['adversarial']['eps']}, step "
              f"1.25 eps); the pruned one starts from it, is pruned by APoZ measured on PGD-10 examples "
              f"and gets {adv_ft} more FGSM-RS epochs, so part of any gain is that extra adversarial "
              "training, not the pruning.", "",
              "Rounds (clean):", "", p["rounds_markdown"], "Rounds (robust):", "", rp["rounds_markdown"],
              "Scratch-E / Scratch-B on the pruned architecture (fresh random initialisation, Adam 1e-3; "
              f"Scratch-E trains the {r['cnn_epochs']} epochs of the dense model, Scratch-B "
              f"ceil(E min(2, MACs_dense / MACs_pruned)) epochs, MAC ratio "
              f"{r['scratch']['config']['mac_ratio']:.2f}; Liu et al. 2019). Robust accuracy: preset "
              "`fast`; none of these is adversarially trained.", "",
              "| training of the pruned architecture | epochs | accuracy | robust acc. (fast) |",
              "|---|---|---|---|",
              f"| dense (unpruned reference) | {r['cnn_epochs']} | {d['accuracy']:.4f} | "
              f"{d['robust_accuracy']:.4f} |",
              f"| pruned + fine-tuned (inherited weights) | {r['cnn_epochs']} + "
              f"{sum(row['epochs'] for row in p['rounds_table'])} | {p['accuracy']:.4f} | "
              f"{p['robust_accuracy']:.4f} |"]
    for row in r["scratch"]["rows"]:
        label = {"scratch_e": "Scratch-E", "scratch_b": "Scratch-B"}[row["name"]]
        lines.append(f"| {label} | {row['epochs']} | {row['accuracy']:.4f} | {row['robust_accuracy']:.4f} |")
    return lines + [""]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="dc,prune,jp,lottery,binary,structured")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run writing to /tmp")
    parser.add_argument("--train_n", type=int, default=None)
    parser.add_argument("--eps", type=float, default=0.05)
    parser.add_argument("--robust_n", type=int, default=500)
    parser.add_argument("--dense_epochs", type=int, default=6)
    parser.add_argument("--prune_epochs", type=int, default=4)
    parser.add_argument("--finetune_epochs", type=int, default=2)
    parser.add_argument("--cnn_epochs", type=int, default=4)
    parser.add_argument("--finetune_cnn_epochs", type=int, default=8)
    parser.add_argument("--jp_stages", type=int, default=3)
    parser.add_argument("--lottery_train", type=int, default=10000)
    parser.add_argument("--lottery_epochs", type=int, default=3)
    parser.add_argument("--lottery_rounds", type=int, default=4)
    parser.add_argument("--st_rounds", type=int, default=2, help="structured: pruning rounds")
    parser.add_argument("--st_final_epochs", type=int, default=1, help="structured: extra final epochs")
    parser.add_argument("--st_adv_epochs", type=int, default=2, help="structured: FGSM-RS epochs, dense")
    parser.add_argument("--st_eps", type=float, default=0.1, help="structured: L-inf eps (train + eval)")
    parser.add_argument("--st_robust_n", type=int, default=500, help="structured: robust-eval images")
    parser.add_argument("--cache", default="docs/compression_results.json")
    parser.add_argument("--doc", default="docs/compression.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.train_n, args.robust_n, args.dense_epochs, args.prune_epochs = 2000, 100, 1, 1
        args.finetune_epochs = args.cnn_epochs = args.finetune_cnn_epochs = 1
        args.jp_stages, args.lottery_train, args.lottery_epochs, args.lottery_rounds = 1, 1000, 1, 1
        args.st_rounds, args.st_final_epochs, args.st_adv_epochs, args.st_robust_n = 1, 0, 1, 50
        args.cache, args.doc = "/tmp/compression_results.json", "/tmp/compression.md"
    train = data.load_dataset("fashion_mnist", "train", limit=args.train_n)
    test = data.load_dataset("fashion_mnist", "test", limit=2000 if args.quick else None)
    cache = Path(args.cache)
    results = json.loads(cache.read_text()) if cache.exists() else {"parts": {}}
    cnn = {}

    def small_cnn():
        if "model" not in cnn:
            model, secs = _train_dense(models.small_cnn, ctx, args.cnn_epochs, 0)
            cnn["model"], cnn["seconds"] = model, secs
        clone = _compile(keras.models.clone_model(cnn["model"]))
        clone.set_weights(cnn["model"].get_weights())
        return clone, cnn["seconds"]

    ctx = {"args": args, "train": train, "test": test, "small_cnn": small_cnn}
    for r in results["parts"].values():  # parts from before per-part stamps: the run that made them
        if "measured_at" not in r and "measured_at" in results:
            r["measured_at"] = results["measured_at"]
            r["load"] = results["environment"]["loadavg_1_5_15"]
    for part in args.parts.split(","):
        if part in results["parts"]:
            print(f"{part}: cached", flush=True)
            continue
        t0 = time.perf_counter()
        results["parts"][part] = PARTS[part](ctx)
        results["parts"][part]["part_seconds"] = round(time.perf_counter() - t0, 1)
        results["parts"][part]["settings"] = vars(args)  # the settings this part was measured with
        results["parts"][part]["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        results["parts"][part]["load"] = list(os.getloadavg())
        results.update(environment=utils.environment(),
                       measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
                       train_examples=int(len(train[0])), test_examples=int(len(test[0])),
                       settings=vars(args))
        utils.atomic_write_json(cache, results)
        print(f"{part}: done in {results['parts'][part]['part_seconds']} s", flush=True)
    section = render(results, args)
    doc = Path(args.doc)
    text = doc.read_text() if doc.exists() else ""
    if START in text and END in text:
        text = text[:text.index(START)] + section + text[text.index(END) + len(END) + 1:]
    else:
        text = text + ("\n" if text else "") + section
    utils.atomic_write_text(doc, text)
    print(section)


if __name__ == "__main__":
    main()
