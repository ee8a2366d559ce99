"""Deployment of the small CNN and the Madry CNN on Fashion-MNIST -> docs/deployment.md.

For each architecture: train briefly (budget below), convert to float / dynamic-range / int8
TFLite, and measure on the full test set (10,000 images) the accuracy of every file, the robust
accuracy of the int8 file against PGD examples transferred from the Keras model and against a
gradient-free attack (one-pixel differential evolution) run on the int8 interpreter itself, the
TFLite Micro arena and LiteRT/TFLM parity of the batch-1 int8 export, and batch-1 latency of
LiteRT against Keras ``predict`` on one example (``benchmarks/_harness.py``: alternating rounds).

Part ``lut``: TFLite Micro look-up-table weight compression of a clustered small CNN (cluster to
k values, cluster-preserving QAT, int8, ``tflite_tools.compress_lut``): weight bytes read from the
files against the plain int8 model, TFLM outputs against the same clustered model uncompressed,
accuracy and TFLM arena of each file.

Usage:
    .venv/bin/python -m benchmarks.tflite            # full run (~15-25 min on 2 busy cores)
    .venv/bin/python -m benchmarks.tflite --quick    # smoke run, a couple of minutes
    .venv/bin/python -m benchmarks.tflite --part=lut # only the LUT part, merged into the saved JSON

Trained models and finished per-model results are cached in ``runs/bench_tflite/`` so a re-run
resumes; the Markdown and JSON are written atomically at the end.
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

from benchmarks._harness import compare  # noqa: E402
from tfrobust import attacks, data, models, tflite_tools, utils  # noqa: E402
from tfrobust._keras import keras  # noqa: E402

EPS = 0.1
PGD = {"eps": EPS, "step_size": 0.01, "steps": 40, "random_start": True, "seed": 0}
#: architecture -> (epochs, training images: the first N of the 60k). The Madry CNN (3.3M
#: parameters) gets a third of the set so the whole run fits in well under an hour on 2 busy cores.
BUDGET = {"small_cnn": (2, 60000), "madry_cnn": (1, 20000)}
CALLS_PER_ROUND = 10


def _train(name, x, y, *, epochs, cache: Path, seed=0, tag="", **kwargs):
    path = cache / f"{name}{tag}_e{epochs}_n{len(x)}.keras"
    if path.exists():
        return keras.models.load_model(path), None
    utils.set_seed(seed)
    model = models.get(name, **kwargs)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    start = time.perf_counter()
    model.fit(data.as_tf_dataset(x, y, batch_size=128, shuffle=True, seed=seed), epochs=epochs, verbose=2)
    seconds = time.perf_counter() - start
    utils.atomic_save_model(model, path)
    return model, seconds


def _accuracy(fn, x, y, batch=1000):
    preds = [np.asarray(fn(x[s:s + batch])).argmax(-1) for s in range(0, len(x), batch)]
    return float(np.mean(np.concatenate(preds) == y))


def _latency(model, files, x1, rounds):
    lites = {f"LiteRT {mode}, {t} thread{'s' if t > 1 else ''}":
             tflite_tools.TFLiteModel(files[mode], num_threads=t)
             for mode in ("float", "int8") for t in (1, 2)}

    def keras_predict():
        for _ in range(CALLS_PER_ROUND):
            model.predict(x1, verbose=0)

    def lite_predict(lite):
        for _ in range(CALLS_PER_ROUND):
            lite.predict(x1)

    def keras_call():  # context: the eager __call__ skips predict's per-call set-up
        for _ in range(CALLS_PER_ROUND):
            model(x1, training=False)

    variants = {"Keras predict": keras_predict, "Keras model(x) (eager call, context)": keras_call}
    for name, lite in lites.items():
        variants[name] = functools.partial(lite_predict, lite)
    return compare(variants, baseline="Keras predict", rounds=rounds, warmup=2)


def run_arch(name, splits, args, cache):
    (x_train, y_train), (x_test, y_test) = splits
    epochs, n_train = (1, len(x_train)) if args.quick else BUDGET[name]
    x_train, y_train = x_train[:n_train], y_train[:n_train]
    model, train_seconds = _train(name, x_train, y_train, epochs=epochs, cache=cache)
    cal = x_train[-300:]  # inside the training subset
    files = {mode: tflite_tools.convert(model, mode, cal if mode == "int8" else None)
             for mode in ("float", "dynamic", "int8")}
    int8_b1 = tflite_tools.convert(model, "int8", cal, batch_size=1)
    row = {"model": name, "params": int(model.count_params()), "epochs": epochs,
           "train_images": int(len(x_train)), "train_seconds": train_seconds,
           "test_images": int(len(x_test)), "keras_accuracy": _accuracy(lambda b: model(b, training=False),
                                                                        x_test, y_test)}
    row["files"] = {}
    for mode, blob in files.items():
        lite = tflite_tools.TFLiteModel(blob, batch_size=1000)
        row["files"][mode] = {"bytes": len(blob), "accuracy": _accuracy(lite.predict, x_test, y_test)}
    float_bytes = row["files"]["float"]["bytes"]
    for mode in row["files"]:
        row["files"][mode]["size_ratio"] = row["files"][mode]["bytes"] / float_bytes

    int8 = tflite_tools.TFLiteModel(files["int8"], batch_size=1000)
    n_adv = args.pgd_images
    pgd = functools.partial(attacks.pgd, **PGD)
    ev = tflite_tools.evaluate_deployed(int8, x_test[:n_adv], y_test[:n_adv], source_model=model, attack=pgd,
                                        batch_size=250)
    row["pgd"] = {"images": n_adv, "config": PGD, **ev.to_dict()}

    n_op = args.one_pixel_images
    op_cfg = {"pixels": 1, "population": args.population, "iterations": args.iterations, "seed": 0}
    start = time.perf_counter()
    x_op = np.asarray(attacks.one_pixel(int8, x_test[:n_op], y_test[:n_op], **op_cfg))
    op_seconds = time.perf_counter() - start
    ev_op = tflite_tools.evaluate_deployed(int8, x_test[:n_op], y_test[:n_op], x_adv=x_op)
    row["one_pixel"] = {"images": n_op, "config": op_cfg, "seconds": op_seconds,
                        "clean_accuracy": ev_op.clean_accuracy,
                        "robust_accuracy": ev_op.transfer_robust_accuracy}

    check = tflite_tools.tflm_check(int8_b1, model=model, x=x_test[:args.parity_images])
    row["tflm"] = check.to_dict()
    row["int8_batch1_bytes"] = len(int8_b1)
    row["int8_report"] = tflite_tools.model_report(int8_b1, model=model, tflm=False, repeats=200)
    row["latency"] = _latency(model, files, x_test[:1], rounds=args.rounds)
    return row


def run_binary(name, splits, args, cache, float_row):
    """The binary twins of ``name`` with the float model's budget: (a) binary weights, real
    activations, baked to int8 +-1 for the stock runtimes; (b) binary weights and activations,
    bit-packed C99 compiled with gcc and run on all test images."""
    from tfrobust.tflite_tools import binary_weight_report, generate_c, run_on_host

    (x_train, y_train), (x_test, y_test) = splits
    epochs, n_train = (1, len(x_train)) if args.quick else BUDGET[name]
    x_train, y_train = x_train[:n_train], y_train[:n_train]
    cal = x_train[-300:]
    out = {"epochs": epochs, "train_images": int(len(x_train))}
    bwn, seconds = _train(f"binary_{name}", x_train, y_train, epochs=epochs, cache=cache)
    blob = tflite_tools.convert(bwn, "binary", cal)
    lite = tflite_tools.TFLiteModel(blob, batch_size=1000)
    kernels = binary_weight_report(blob)
    out["binary_int8"] = {
        "model": bwn.name, "params": int(bwn.count_params()), "train_seconds": seconds,
        "keras_accuracy": _accuracy(lambda b: bwn(b, training=False), x_test, y_test),
        "bytes": len(blob), "size_ratio": len(blob) / float_row["files"]["float"]["bytes"],
        "accuracy": _accuracy(lite.predict, x_test, y_test),
        "binary_kernels": sum(k["binary"] for k in kernels), "kernels": len(kernels)}
    bnn, seconds = _train(f"binary_{name}", x_train, y_train, epochs=epochs, cache=cache, tag="_bnn",
                          binary_activations=True)
    prog = generate_c(bnn, name=f"{name}_bnn")
    pixels = np.round(x_test * 255).astype(np.uint8)  # the dataset's own uint8 pixels
    run = run_on_host(prog, pixels)
    keras_pred = np.concatenate([np.asarray(bnn(x_test[i:i + 1000], training=False)).argmax(-1)
                                 for i in range(0, len(x_test), 1000)])
    rep = prog.report
    total = rep["packed_weight_bytes"] + rep["param_bytes"]
    out["bitpacked"] = {
        "model": bnn.name, "params": int(bnn.count_params()), "train_seconds": seconds,
        "keras_accuracy": float(np.mean(keras_pred == y_test)),
        "accuracy": float(np.mean(run.argmax == y_test)),
        "argmax_agreement_with_keras": float(np.mean(run.argmax == keras_pred)),
        "bytes": total, "packed_weight_bytes": rep["packed_weight_bytes"], "param_bytes": rep["param_bytes"],
        "ram_bytes": rep["ram_bytes"], "size_ratio": total / float_row["files"]["float"]["bytes"],
        "float_model_weight_bytes": 4 * float_row["params"],
        "weight_ratio": total / (4 * float_row["params"])}
    return out


#: LUT part: clusters per kernel -> index bits; fine-tuning budget of each clustering step.
LUT_CLUSTERS = (16, 8, 4)
LUT_BUDGET = {"base_epochs": 2, "finetune_epochs": 1, "finetune_images": 20000}


def _fit(model, x, y, epochs, lr):
    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(data.as_tf_dataset(x, y, batch_size=128, shuffle=True, seed=0), epochs=epochs, verbose=2)
    return model


def run_lut(splits, args, cache):
    """small_cnn -> cluster(k) -> CQAT -> int8 (batch 1) -> compress_lut, for each k."""
    from tfrobust import compression

    (x_train, y_train), (x_test, y_test) = splits
    b = dict(LUT_BUDGET, base_epochs=1, finetune_images=2000) if args.quick else LUT_BUDGET
    model, _ = _train("small_cnn", x_train, y_train, epochs=b["base_epochs"], cache=cache)
    cal = x_train[-300:]
    xf, yf = x_train[: b["finetune_images"]], y_train[: b["finetune_images"]]
    n_tflm = args.parity_images
    plain = tflite_tools.convert(model, "int8", cal, batch_size=1)
    plain_stats = {"bytes": len(plain), "weight_bytes": tflite_tools.model_report(
        plain, latency=False, tflm=False)["weight_bytes"],
        "accuracy": _accuracy(tflite_tools.TFLiteModel(plain).predict, x_test, y_test),
        "arena_bytes": tflite_tools.find_arena_size(plain).arena_size}
    out = {"model": "small_cnn", "params": int(model.count_params()), "budget": b,
           "test_images": int(len(x_test)), "tflm_images": n_tflm,
           "keras_accuracy": _accuracy(lambda v: model(v, training=False), x_test, y_test),
           "plain_int8": plain_stats, "rows": []}
    for k in LUT_CLUSTERS:
        print(f"== LUT: {k} clusters", flush=True)
        utils.set_seed(0)
        start = time.perf_counter()
        clustered = _fit(compression.cluster(model, k), xf, yf, b["finetune_epochs"], 2e-4)
        qat = _fit(compression.quantize(compression.strip(clustered), preserve="clusters"), xf, yf,
                   b["finetune_epochs"], 1e-4)
        seconds = time.perf_counter() - start
        cqat = tflite_tools.convert(qat, "int8", cal, batch_size=1)
        small = tflite_tools.compress_lut(cqat, bits=max(1, (k - 1).bit_length()))
        parity = tflite_tools.lut_parity(cqat, small, x_test[:n_tflm])
        lite = tflite_tools.TFLiteModel(cqat)
        q = lite.quantize_input(x_test[:n_tflm])
        tflm_pred = tflite_tools.run_tflm(small, q).reshape(n_tflm, -1).argmax(-1)
        out["rows"].append({
            "clusters": k, "finetune_seconds": seconds, **parity,
            "cqat_int8_accuracy": _accuracy(lite.predict, x_test, y_test),
            "lut_tflm_accuracy": float(np.mean(tflm_pred == y_test[:n_tflm])),
            "weight_ratio_vs_plain_int8": parity["compressed_weight_bytes"] / plain_stats["weight_bytes"],
            "cqat_arena_bytes": tflite_tools.find_arena_size(cqat).arena_size,
            "lut_arena_bytes": tflite_tools.find_arena_size(small).arena_size,
            "kernels": [kk.to_dict() for kk in tflite_tools.kernel_stats(small)]})
    return out


def _lut_markdown(lut):
    p = lut["plain_int8"]
    b = lut["budget"]
    lines = [
        "### TFLite Micro LUT weight compression (clustered small CNN)",
        "",
        "`tflite_tools.compress_lut` stores each clustered kernel as `b`-bit indices plus a value "
        "table (per tensor for QAT's per-tensor Dense kernels, per output channel for per-channel "
        "convolutions); TFLite Micro's `TFLM_DECODE` op expands it into the arena before the layer "
        "runs. Recipe per row: the trained small CNN -> `compression.cluster(model, k)` fine-tuned "
        f"{b['finetune_epochs']} epoch on {b['finetune_images']:,} images -> `strip` -> "
        "`compression.quantize(..., preserve=\"clusters\")` (CQAT) fine-tuned the same -> int8 batch 1 "
        "-> `compress_lut(bits=ceil(log2 k))`. Bytes are read from the files (constant buffers: "
        "kernels or indices + tables, biases); the plain int8 file is the unclustered model "
        f"({p['weight_bytes']:,} weight bytes, {p['bytes']:,} bytes, {_pct(p['accuracy'])} on "
        f"{lut['test_images']:,} test images, TFLM arena {p['arena_bytes']:,} B; Keras "
        f"{_pct(lut['keras_accuracy'])}).",
        "",
        "| clusters (index bits) | weight bytes: CQAT int8 -> LUT | x plain int8 | file bytes | "
        "CQAT int8 accuracy (LiteRT, all test images) | LUT accuracy (TFLM) | TFLM outputs vs "
        "uncompressed | TFLM arena: uncompressed -> LUT |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in lut["rows"]:
        same = "identical" if r["identical"] else f"differ (max {r['max_abs_diff']:.0f} LSB)"
        lines.append(
            f"| {r['clusters']} ({max(1, (r['clusters'] - 1).bit_length())}) | {r['weight_bytes']:,} -> "
            f"{r['compressed_weight_bytes']:,} | {r['weight_ratio_vs_plain_int8']:.3f} | "
            f"{r['file_bytes']:,} -> {r['compressed_file_bytes']:,} | {_pct(r['cqat_int8_accuracy'])} | "
            f"{_pct(r['lut_tflm_accuracy'])} ({r['examples']:,} images) | {same} ({r['examples']:,} "
            f"images) | {r['cqat_arena_bytes']:,} -> {r['lut_arena_bytes']:,} B |")
    r16 = next((r for r in lut["rows"] if r["clusters"] == 16), None)
    if r16 is not None:
        met = r16["weight_ratio_vs_plain_int8"] <= 0.55 and r16["identical"]
        lines += ["", f"Target: 16 values per kernel at most 0.55x the plain int8 weight bytes with TFLM "
                  f"outputs identical to the uncompressed clustered model: "
                  f"{r16['weight_ratio_vs_plain_int8']:.3f}x, "
                  f"{'identical' if r16['identical'] else 'NOT identical'} ({'met' if met else 'MISSED'})."]
    lines += ["", "The cost is RAM: the decoded kernel lives in the arena while its layer runs "
              "(TFLite Micro's planner reuses the space between layers), so the arena grows by about "
              "the largest decoded kernel -- here the 3136x128 `fc1` -- and flash shrinks by the same "
              "kernels' `1 - b/8`. It pays where flash, not RAM, is the limit, or on models whose "
              "largest kernel is small next to the activations.", ""]
    return lines


def _binary_verdict(r):
    b = r["binary"]["bitpacked"]
    met = "met" if b["weight_ratio"] <= 1 / 25 else "MISSED"
    return f"{r['model']}: 1/{1 / b['weight_ratio']:.1f} ({met})."


def _size_verdict(r):
    f = r["files"]
    ratio, loss = f["int8"]["size_ratio"], f["float"]["accuracy"] - f["int8"]["accuracy"]
    met = "met" if ratio <= 0.27 and loss <= 0.005 else "MISSED"
    return f"{r['model']}: int8 {ratio:.3f}x, {-100 * loss:+.2f} pt vs float ({met})."


def _latency_verdict(r):
    speed = 1 / r["latency"]["variants"]["LiteRT int8, 1 thread"]["ratio"]["median"]
    return f"{r['model']}: int8 1 thread {speed:.0f}x ({'met' if speed >= 10 else 'MISSED'})."


def _pct(v):
    return "-" if v is None else f"{100 * v:.2f}%"


def _markdown(rows, quick, env, measured_at, lut=None):
    lines = [
        "# Deployment: TFLite, TFLite Micro and robustness on the deployed model",
        "",
        "`tfrobust.tflite_tools` converts a tf_keras model to TFLite, runs the .tflite with LiteRT and",
        "TFLite Micro, exports it as C arrays and measures accuracy and robust accuracy on the file that",
        "ships, not on the Keras model it came from.",
        "",
        "```python",
        "from tfrobust import tflite_tools",
        "",
        "blob = tflite_tools.convert(model, \"int8\", representative_data=x_train[:300], path=\"m.tflite\")",
        "lite = tflite_tools.TFLiteModel(blob)            # float images in, float logits (tf.Tensor) out",
        "logits = lite(x_test[:8]); logits_np = lite.predict(x_test)  # predict(): NumPy",
        "ev = tflite_tools.evaluate_deployed(lite, x_test, y_test, source_model=model,",
        "                                    attack=functools.partial(tfrobust.attacks.pgd, eps=0.1,",
        "                                                             step_size=0.01, steps=40))",
        "mcu = tflite_tools.convert(model, \"int8\", x_train[:300], batch_size=1)  # no dynamic shapes",
        "check = tflite_tools.tflm_check(mcu, model=model, x=x_test[:200])  # missing ops, arena, parity",
        "tflite_tools.export_c(mcu, \"firmware/model\")      # model.h / model.cc, arena size included",
        "report = tflite_tools.model_report(mcu)            # size, gzip, tensors, ops, arena, latency",
        "tflite_tools.kernel_stats(mcu)                     # per layer: bytes, sparsity, distinct values",
        "# clustered + compression.quantize(..., preserve=\"clusters\") model: 4-bit indices + tables",
        "lut = tflite_tools.compress_lut(mcu, bits=4, path=\"m_lut.tflite\")  # runs in TFLM only",
        "tflite_tools.lut_parity(mcu, lut, x_test[:200])    # identical TFLM outputs? bytes before/after",
        "```",
        "",
        "From the shell: `tfrobust convert --model=run/model.keras --mode=int8 --dataset=fashion_mnist "
        "--batch_size=1 --out=model.tflite [--report=report.json]` and "
        "`tfrobust export-c --tflite=model.tflite --out=firmware/model`; add `--lut_bits=4` to "
        "`convert` for a clustered model (`tfrobust compress --method=cluster --cluster_bits=4`): the "
        "kernels are LUT-compressed and TFLM's outputs checked identical on 20 calibration images.",
        "",
        "## What each piece does",
        "",
        "- **Modes.** `float` (float32), `float16` (weights stored as float16), `dynamic` (int8 weights,",
        "  float activations), `int8` (full integer with int8 input and output; calibration images",
        "  required) and `binary` (binary-weight layers baked to int8 +-1 weights; provided by the",
        "  binary-layer module, refused with an explanation when it is absent). Only TFLite builtin ops",
        "  are allowed unless `allow_select_ops=True`; a model needing anything else fails with",
        "  `UnsupportedOpsError` naming each layer and TensorFlow op (e.g. `layer 'singular_values' uses",
        "  TF op 'Svd'`).",
        "- **`TFLiteModel`** quantizes inputs (`q = clip(round(x / s) + z)`, round half away from zero as",
        "  TFLite does) and dequantizes outputs, batches by resizing a dynamic-batch input or by looping",
        "  over a fixed-batch (batch-1) model, and returns a `tf.Tensor` (it also works inside",
        "  `tf.function` through `tf.numpy_function`). It has no gradient: use it with gradient-free",
        "  attacks (`tfrobust.attacks.one_pixel`) or with examples transferred from the Keras model.",
        "- **TFLite Micro.** `tflm_check` loads the file in the `tflite-micro` runtime. TFLM stops at the",
        "  first op without a kernel; tfrobust patches that opcode and reloads until every lookup",
        "  succeeds, so the list of missing ops (TOPK_V2, SELECT, LOCAL_RESPONSE_NORMALIZATION, ...) is",
        "  complete and each comes with the Keras layer that produced it (from the tensor names). The",
        "  smallest arena is found by bisection (16-byte steps) with one real `invoke` per probe, run in",
        "  a child process because TFLM's Python binding can crash on a far-too-small arena. Sizes are",
        "  those of this 64-bit host build. `tflm_parity` (run by `tflm_check` when given `x`) compares",
        "  TFLM's outputs with LiteRT's default kernels (`max_abs_diff`) and with LiteRT's reference",
        "  kernels (`reference_max_abs_diff`, `TFLiteModel(..., reference_kernels=True)`), which TFLM",
        "  ports and must match bit for bit; the optimized int8 kernels can differ by an LSB.",
        "- **`export_c`** writes `<name>.h` / `<name>.cc` with `alignas(16) const unsigned char g_model[]`,",
        "  `g_model_len` and `g_model_arena_size`; the tests compile them with `g++`.",
        "",
        "## Results on Fashion-MNIST",
        "",
        f"Measured {measured_at} by `benchmarks/tflite.py{' --quick' if quick else ''}`: Python "
        f"{env['python']}, TF {env['versions'].get('tensorflow')}, ai-edge-litert "
        f"{env['versions'].get('ai-edge-litert')}, tflite-micro {env['versions'].get('tflite-micro')}, "
        f"{env['cpu_count']} cores shared with other jobs (load {env['loadavg_1_5_15']}).",
        "",
        "Training budget (plain training, no adversarial training): Adam 1e-3, batch 128, seed 0, "
        + ", ".join(f"{r['model']} {r['epochs']} epoch(s) on {r['train_images']:,} images" for r in rows)
        + ". Calibration: the last 300 images of each training subset. Accuracy on all "
        f"{rows[0]['test_images']:,} test images.",
        "",
        "### Size and accuracy",
        "",
        "| model | file | bytes | x float | accuracy | change vs Keras |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | Keras (float32) | - | - | {_pct(r['keras_accuracy'])} | - |")
        for mode in ("float", "dynamic", "int8"):  # JSON sorts keys: keep the reading order
            f = r["files"][mode]
            delta = 100 * (f["accuracy"] - r["keras_accuracy"])
            lines.append(f"| {r['model']} | {mode} .tflite | {f['bytes']:,} | {f['size_ratio']:.3f} | "
                         f"{_pct(f['accuracy'])} | {delta:+.2f} pt |")
    lines += [
        "",
        "Targets: int8 at most 0.27x the float file with at most 0.5 point accuracy loss. "
        + " ".join(_size_verdict(r) for r in rows),
        "",
        "### Binary twins",
        "",
        "Each architecture rebuilt from binary layers (`models.binary_small_cnn` / "
        "`models.binary_madry_cnn`: same kernels, BatchNorm after each, every Conv2D/Dense binary, "
        "first and last included) and trained with the float model's budget. **binary-int8**: binary "
        "weights (BWN, `alpha_j . sign(W)`), real ReLU activations, converted with `mode=\"binary\"` "
        "(kernels baked to int8 +-127 per channel) and run in LiteRT. **bit-packed**: binary weights "
        "*and* activations (`binary_activations=True`), exported by `generate_c` as C99 (32 weights "
        "per word, XNOR + popcount), compiled with gcc and run on the test images as uint8 pixels; "
        "its bytes are the packed kernels plus the per-channel thresholds and logit scales.",
        "",
        "| model | variant | bytes | x float .tflite | x float weight bytes | accuracy (deployed) "
        "| its Keras twin | float Keras model |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "binary" not in r:
            continue
        fw = 4 * r["params"]
        for key, label in (("binary_int8", "binary-int8 .tflite (BWN twin)"),
                           ("bitpacked", "bit-packed C (binarized twin)")):
            b = r["binary"][key]
            lines.append(f"| {r['model']} | {label} | {b['bytes']:,} | {b['size_ratio']:.3f} | "
                         f"1/{fw / b['bytes']:.1f} | {_pct(b['accuracy'])} | {_pct(b['keras_accuracy'])} | "
                         f"{_pct(r['keras_accuracy'])} |")
    binary_rows = [r for r in rows if "binary" in r]
    if binary_rows:
        lines += [
            "",
            "Target: bit-packed binary weights at most 1/25 of the float model's weight bytes "
            "(4 bytes per parameter). " + " ".join(_binary_verdict(r) for r in binary_rows),
            "",
            "Agreement of the compiled C with its Keras model (argmax, all test images): "
            + ", ".join(f"{r['model']} {_pct(r['binary']['bitpacked']['argmax_agreement_with_keras'])}"
                        for r in binary_rows)
            + ". Binary kernels in the binary-int8 files (two int8 levels per channel): "
            + ", ".join(f"{r['model']} {r['binary']['binary_int8']['binary_kernels']} of "
                        f"{r['binary']['binary_int8']['kernels']}" for r in binary_rows) + ".",
            "",
            "Accuracy of the deployed bit-packed twin minus the float Keras model: "
            + ", ".join(f"{r['model']} "
                        f"{100 * (r['binary']['bitpacked']['accuracy'] - r['keras_accuracy']):+.2f} points"
                        for r in binary_rows)
            + " (same short budget for both; binary activations usually need far longer training, the "
            "papers train for hundreds of epochs). Every accuracy in this table is measured on the "
            "deployed artefact (LiteRT, or the compiled C), never on the Keras model.",
        ]
    lines += [
        "",
        "### Robust accuracy of the int8 file",
        "",
        f"L-inf eps = {EPS}. PGD: crafted white-box on the Keras model (`tfrobust.attacks.pgd`, "
        f"{PGD['steps']} steps of {PGD['step_size']}, random start), replayed on the int8 .tflite. "
        "One-pixel: `tfrobust.attacks.one_pixel` run directly on the int8 interpreter (probabilities "
        "only, no gradients). These models were not adversarially trained, so low figures are expected;"
        " the point is that the deployed file is measured.",
        "",
        "| model | attack | images | Keras clean | int8 clean | Keras under attack | int8 under attack |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        p = r["pgd"]
        lines.append(f"| {r['model']} | PGD-{PGD['steps']} transferred from Keras | {p['examples']:,} | "
                     f"{_pct(p['source_clean_accuracy'])} | {_pct(p['clean_accuracy'])} | "
                     f"{_pct(p['source_robust_accuracy'])} | {_pct(p['transfer_robust_accuracy'])} |")
        o = r["one_pixel"]
        c = o["config"]
        lines.append(f"| {r['model']} | one-pixel DE on the interpreter (pop {c['population']}, "
                     f"{c['iterations']} gens) | {o['images']:,} | - | {_pct(o['clean_accuracy'])} | - | "
                     f"{_pct(o['robust_accuracy'])} |")
    lines += [
        "",
        "### TFLite Micro (batch-1 int8 export)",
        "",
        "| model | .tflite bytes | gzipped | ops | smallest arena | recorded by TFLM "
        "| TFLM vs LiteRT (max LSB, images) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t, rep = r["tflm"], r["int8_report"]
        ops = ", ".join(f"{k} x{v}" for k, v in rep["op_counts"].items())
        par = t["parity"] or {}
        lines.append(f"| {r['model']} | {rep['size_bytes']:,} | {rep['gzip_bytes']:,} | {ops} | "
                     f"{t['arena_size']:,} B | {t['recorded_arena']:,} B | "
                     f"{par.get('max_abs_diff', float('nan')):.0f} ({par.get('examples', 0)}) |")
    if lut:
        lines += [""] + _lut_markdown(lut)
    lines += [
        "",
        "### Batch-1 latency",
        "",
        f"One image per call, {CALLS_PER_ROUND} calls per round, {rows[0]['latency']['rounds']} rounds "
        "after 2 warm-up rounds, "
        "variants alternating (`benchmarks/_harness.py`); ms per call (median [min-max] over rounds) "
        "and the per-round speed-up over Keras `predict`. Absolute times carry the machine's load (see "
        "above: other jobs shared the 2 cores); the within-round ratios are the stable figure.",
        "",
        "| model | variant | ms per call | speed-up vs Keras predict |",
        "|---|---|---|---|",
    ]
    for r in rows:
        lat = r["latency"]["variants"]
        for name in sorted(lat, key=lambda n: (n != r["latency"]["baseline"], n)):
            v = lat[name]
            s = v["seconds"]
            ms = [1e3 * s[k] / CALLS_PER_ROUND for k in ("median", "min", "max")]
            speed = "1 (baseline)" if v["ratio"] is None else (
                f"{1 / v['ratio']['median']:.0f}x [{1 / v['ratio']['max']:.0f}-{1 / v['ratio']['min']:.0f}]")
            lines.append(f"| {r['model']} | {name} | {ms[0]:.3f} [{ms[1]:.3f}-{ms[2]:.3f}] | {speed} |")
    lines += ["", "Target: LiteRT batch-1 latency at least 10x lower than Keras `predict` on one example. "
              + " ".join(_latency_verdict(r) for r in rows), "",
              "Keras `predict` pays a per-call set-up (building a data adapter and a step function call) "
              "that dominates on one image; the eager `model(x)` row shows how much of the gap that is.", "",
              "## Reports of the batch-1 int8 files", "",
              "`tflite_tools.model_report(blob)` (JSON) rendered by `tflite_tools.report_markdown`; the "
              "latency rows here are plain medians of 200 `predict` calls on one image.", ""]
    for r in rows:
        report = dict(r["int8_report"], tflm=r["tflm"])
        lines.append(tflite_tools.report_markdown(report, title=f"{r['model']}, int8, batch 1"))
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke run")
    parser.add_argument("--out", default="docs/deployment.md")
    parser.add_argument("--cache", default="runs/bench_tflite")
    parser.add_argument("--render", action="store_true",
                        help="only re-render the Markdown from the JSON beside --out (no measuring)")
    parser.add_argument("--part", choices=["all", "lut"], default="all",
                        help="lut: measure only the LUT part and merge it into the saved JSON")
    args = parser.parse_args()
    if args.render:
        saved = json.loads(Path(args.out).with_suffix(".json").read_text())
        utils.atomic_write_text(args.out, _markdown(saved["rows"], saved["quick"], saved["environment"],
                                                    saved["measured_at"], saved.get("lut")))
        print(f"wrote {args.out}")
        return
    args.rounds = 5 if args.quick else 30
    args.pgd_images = 250 if args.quick else 500
    args.one_pixel_images = 20 if args.quick else 100
    args.population = 50 if args.quick else 100
    args.iterations = 5 if args.quick else 20
    args.parity_images = 50 if args.quick else 500
    cache = Path(args.cache) / ("quick" if args.quick else "full")
    cache.mkdir(parents=True, exist_ok=True)
    x_train, y_train = data.load_dataset("fashion_mnist", "train", limit=5000 if args.quick else None)
    x_test, y_test = data.load_dataset("fashion_mnist", "test")
    splits = ((x_train, y_train), (x_test, y_test))
    lut_path = cache / "lut_row.json"
    if args.part == "lut":
        saved = json.loads(Path(args.out).with_suffix(".json").read_text())
        saved["lut"] = run_lut(splits, args, cache)
        saved["lut"]["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        saved["lut"]["environment"] = utils.environment()
        utils.atomic_write_json(lut_path, saved["lut"])
        utils.atomic_write_json(Path(args.out).with_suffix(".json"), saved)
        utils.atomic_write_text(args.out, _markdown(saved["rows"], saved["quick"], saved["environment"],
                                                    saved["measured_at"], saved["lut"]))
        print(f"wrote {args.out}")
        return
    rows = []
    for name in BUDGET:
        print(f"== {name}", flush=True)
        row_path = cache / f"{name}_row.json"  # a finished architecture is not measured again
        if row_path.exists():
            rows.append(json.loads(row_path.read_text()))
        else:
            rows.append(run_arch(name, splits, args, cache))
            utils.atomic_write_json(row_path, rows[-1])
        if "binary" not in rows[-1]:
            rows[-1]["binary"] = run_binary(name, splits, args, cache, rows[-1])
            utils.atomic_write_json(row_path, rows[-1])
    lut = json.loads(lut_path.read_text()) if lut_path.exists() else run_lut(splits, args, cache)
    utils.atomic_write_json(lut_path, lut)
    env = utils.environment()
    measured_at = datetime.now(UTC).isoformat(timespec="seconds")
    utils.atomic_write_json(Path(args.out).with_suffix(".json"),
                            {"rows": rows, "environment": env, "measured_at": measured_at,
                             "quick": args.quick, "lut": lut})
    utils.atomic_write_text(args.out, _markdown(rows, args.quick, env, measured_at, lut))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
