"""Benchmark of the architecture zoo -> docs/models.md (between the benchmark markers).

For every registered model at its default (CPU-cheap) size on 28x28x1, 10 classes:
parameters; MACs (multiply-accumulates of the CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED and
BATCH_MATMUL ops of the batch-1 float TFLite graph, counted from their tensor shapes; element-wise
ops excluded); float and int8 TFLite size; whether full-int8 conversion (builtin int8 ops) works,
with the converter's reason when not; TFLite Micro support and the smallest arena (int8 model,
else float), with the missing kernels when not; test accuracy after a short fixed training budget
on Fashion-MNIST (Keras and the int8 .tflite).

Run: ``TF_USE_LEGACY_KERAS=1 python -m benchmarks.models [--train 10000] [--epochs 1] [--only a,b]``.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfrobust import data, losses, models, tflite_tools  # noqa: E402
from tfrobust._keras import keras  # noqa: E402
from tfrobust.utils import atomic_write_json, atomic_write_text, environment  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "models.md"
JSON = ROOT / "benchmarks" / "results" / "models.json"
START, END = "<!-- benchmark:models start -->", "<!-- benchmark:models end -->"

# The same budget for every model: Adam(LR), batch BATCH, the first --train training images.
LR, BATCH = 1e-3, 32

# Extra rows: microcontroller-friendly variants of registered models (label -> (name, kwargs)).
VARIANTS = {
    "alexnet (decomposed LRN)": ("alexnet", {"lrn_implementation": "decomposed"}),
    "vit (ReLU MLP)": ("vit", {"activation": "relu"}),
    "mlp_mixer (ReLU MLP)": ("mlp_mixer", {"activation": "relu"}),
}


def count_macs(model_bytes: bytes) -> int:
    """Multiply-accumulates of one batch-1 inference, from the TFLite graph's op and tensor shapes."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=model_bytes)
    interp.allocate_tensors()
    shapes = {t["index"]: tuple(int(d) for d in t["shape"]) for t in interp.get_tensor_details()}
    total = 0
    for op in interp._get_ops_details():  # noqa: SLF001 - LiteRT's only op-level introspection
        name, ins, outs = op["op_name"], list(op["inputs"]), list(op["outputs"])
        if not outs or outs[0] < 0:
            continue
        out = shapes[outs[0]]
        if name == "CONV_2D":
            filt = shapes[ins[1]]  # (O, kh, kw, I / groups)
            total += int(np.prod(out)) * filt[1] * filt[2] * filt[3]
        elif name == "DEPTHWISE_CONV_2D":
            filt = shapes[ins[1]]  # (1, kh, kw, O)
            total += int(np.prod(out)) * filt[1] * filt[2]
        elif name == "FULLY_CONNECTED":
            total += int(np.prod(out)) * shapes[ins[1]][-1]
        elif name == "BATCH_MATMUL":
            lhs, rhs = shapes[ins[0]], shapes[ins[1]]
            k = lhs[-1] if lhs[-1] in (rhs[-2], rhs[-1]) else lhs[-2]
            total += int(np.prod(out)) * k
    return total


def _first_line(err: Exception) -> str:
    text = str(err).strip().replace("|", "/")
    for line in text.splitlines():
        line = line.strip()
        if "error:" in line or "no kernel" in line or "cannot" in line:
            return line[:220]
    return text.splitlines()[0][:220] if text else type(err).__name__


def _predict_reference_kernels(model_bytes, x):
    """int8 .tflite predictions with LiteRT's builtin kernels only (no default delegates)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(
        model_content=model_bytes,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    (s_in, z_in), (s_out, z_out) = inp["quantization"], out["quantization"]
    preds = []
    for xi in x:
        q = np.clip(np.round(xi[None] / s_in + z_in), -128, 127).astype(inp["dtype"])
        interp.set_tensor(inp["index"], q)
        interp.invoke()
        preds.append((interp.get_tensor(out["index"]).astype(np.float32) - z_out) * s_out)
    return np.concatenate(preds)


def _loss(name):
    return (
        losses.MarginLoss()
        if name == "capsnet"
        else keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )


def bench_model(label, train, test, calib, *, epochs, int8_eval):
    name, kwargs = VARIANTS.get(label, (label, {}))
    keras.utils.set_random_seed(0)
    model = models.get(name, **kwargs)
    model.compile(keras.optimizers.Adam(LR), _loss(name), metrics=["accuracy"])
    train_ds = data.as_tf_dataset(*train, batch_size=BATCH, shuffle=True, seed=0)
    t0 = time.perf_counter()
    model.fit(train_ds, epochs=epochs, verbose=0)
    train_s = time.perf_counter() - t0
    _, acc = model.evaluate(data.as_tf_dataset(*test, batch_size=500), verbose=0)
    row = {
        "name": label,
        "params": int(model.count_params()),
        "train_seconds": round(train_s, 1),
        "test_accuracy": float(acc),
    }

    export = models.get(name, batch_size=1, **kwargs)
    export.set_weights(model.get_weights())
    float_bytes = tflite_tools.convert(export, "float")
    row["macs"] = count_macs(float_bytes)
    row["float_bytes"] = len(float_bytes)
    row.update(int8_bytes=None, int8_error=None, int8_accuracy=None, int8_runtime_note=None)
    try:
        int8_bytes = tflite_tools.convert(export, "int8", representative_data=calib)
        row["int8_bytes"] = len(int8_bytes)
    except Exception as e:  # noqa: BLE001 - the reason goes into the table
        int8_bytes = None
        row["int8_error"] = "conversion: " + _first_line(e)
    if int8_bytes is not None:
        x, y = test[0][:int8_eval], test[1][:int8_eval]
        try:
            pred = tflite_tools.TFLiteModel(int8_bytes).predict(x)
        except Exception as e:  # noqa: BLE001 - XNNPACK refuses some int8 graphs: use the reference kernels
            row["int8_runtime_note"] = "LiteRT default (XNNPACK) run failed: " + _first_line(e)
            pred = _predict_reference_kernels(int8_bytes, x)
        row["int8_accuracy"] = float(np.mean(np.argmax(pred, -1) == y))
    # TFLM: the int8 model (what ships to a microcontroller); the float one only when int8 failed.
    for kind, blob in (("int8", int8_bytes), ("float", None if int8_bytes else float_bytes)):
        if blob is None:
            continue
        try:
            check = tflite_tools.tflm_check(blob, model=export, x=test[0][:2])
        except Exception as e:  # noqa: BLE001
            if "XNNPACK" not in str(e):
                row[f"tflm_{kind}"] = {"supported": False, "reason": _first_line(e)}
                continue
            # The parity step runs LiteRT with XNNPACK, which refuses some int8 graphs: check TFLM alone.
            check = tflite_tools.tflm_check(blob, model=export)
        row[f"tflm_{kind}"] = {
            "supported": check.supported,
            "arena": check.arena_size,
            "reason": None if check.supported else check.message(),
            "argmax_agreement": (check.parity or {}).get("argmax_agreement"),
        }
    return row


def _kb(n):
    return "—" if n is None else f"{n / 1024:.1f}"


def _tflm_cell(row):
    parts = []
    for kind in ("int8", "float"):
        t = row.get(f"tflm_{kind}")
        if t is None:
            continue
        if t["supported"]:
            parts.append(f"{kind}: {t['arena'] / 1024:.1f} KB")
        else:
            parts.append(f"{kind}: no — {t['reason']}")
    return "; ".join(parts) or "—"


def render(rows, settings) -> str:
    env = settings["environment"]
    lines = [
        START,
        "## Benchmark (generated by `benchmarks/models.py`)",
        "",
        f"Every model at its **default size** on 28x28x1, 10 classes. Training budget: "
        f"{settings['epochs']} epoch on the first {settings['train']} Fashion-MNIST training images, "
        f"Adam(lr={LR}), batch {BATCH}, seed 0 (CapsNet: margin loss; all others: cross-entropy on "
        f"logits); accuracy on the {settings['test']} test images. Chance is 10%. int8: full-integer "
        f"post-training quantization (builtin int8 ops, int8 input/output, "
        f"{settings['calibration']} calibration images), accuracy of the .tflite on the first "
        f"{settings['int8_eval']} test images. MACs: multiply-accumulates of the CONV_2D, "
        f"DEPTHWISE_CONV_2D, FULLY_CONNECTED and BATCH_MATMUL ops of the batch-1 float TFLite graph "
        f"(element-wise ops not counted). TFLM: `tfrobust.tflite_tools.tflm_check` of the int8 model "
        f"(of the float model when int8 conversion failed), smallest working arena on this "
        f"machine's 64-bit TFLM build. Training seconds are wall-clock on a "
        f"shared 2-core machine (load {env['loadavg_1_5_15']}), so they rank models only roughly.",
        "",
        "| model | params | MACs | float KB | int8 KB | test acc | int8 acc | train s | TFLM (arena) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for r in rows:
        if "error" in r:
            lines.append(f"| `{r['name']}` | — | — | — | — | — | — | — | benchmark failed: {r['error']} |")
            continue
        int8_acc = "—" if r["int8_accuracy"] is None else f"{100 * r['int8_accuracy']:.1f}%"
        lines.append(
            f"| `{r['name']}` | {r['params']:,} | {r['macs'] / 1e6:.2f}M | {_kb(r['float_bytes'])} | "
            f"{_kb(r['int8_bytes']) if r['int8_bytes'] else 'fails¹'} | {100 * r['test_accuracy']:.1f}% | "
            f"{int8_acc} | {r['train_seconds']} | {_tflm_cell(r)} |"
        )
        if r["int8_error"]:
            notes.append(f"- `{r['name']}` int8 {r['int8_error']}")
        if r.get("int8_runtime_note"):
            notes.append(
                f"- `{r['name']}` int8 accuracy measured with LiteRT's reference kernels: "
                f"{r['int8_runtime_note']}"
            )
    if notes:
        lines += ["", "¹ int8 notes (converter / runtime messages):", "", *notes]
    lines += [
        "",
        f"Measured {settings['measured_at']}: TF {env['versions'].get('tensorflow')}, "
        f"tf_keras {env['versions'].get('tf-keras')}, Python {env['python']}, "
        f"{env['cpu_count']} cores; raw results in `benchmarks/results/models.json`.",
        END,
    ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=10000)
    parser.add_argument("--test", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--calibration", type=int, default=200)
    parser.add_argument("--int8-eval", type=int, default=2000)
    parser.add_argument("--only", default="", help="comma-separated model names (default: all)")
    parser.add_argument("--no-write", action="store_true", help="print instead of writing docs/")
    parser.add_argument(
        "--partial",
        default=str(JSON.with_suffix(".partial.json")),
        help="where the rows are saved after each model",
    )
    parser.add_argument(
        "--from-partials",
        default="",
        help="comma-separated partial files of parallel runs with these settings: "
        "render them instead of measuring",
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the other models' rows of the last run (benchmarks/results/models.json)",
    )
    args = parser.parse_args(argv)
    train = data.load_dataset("fashion_mnist", "train", limit=args.train)
    test = data.load_dataset("fashion_mnist", "test", limit=args.test)
    calib = train[0][: args.calibration]
    names = [n for n in args.only.split(",") if n] or [*models.names(), *VARIANTS]
    rows = []
    if args.from_partials:
        import json

        by_name = {}
        for path in args.from_partials.split(","):
            for r in json.loads(Path(path).read_text())["rows"]:
                by_name[r["name"]] = r
        rows = [by_name[n] for n in names if n in by_name]
        names = []
    for name in names:
        t0 = time.perf_counter()
        try:
            row = bench_model(name, train, test, calib, epochs=args.epochs, int8_eval=args.int8_eval)
        except Exception as e:  # noqa: BLE001 - one broken model must not hide the others
            row = {"name": name, "error": _first_line(e)}
        rows.append(row)
        if not args.no_write:  # partial results survive an interrupted run
            atomic_write_json(args.partial, {"rows": rows})
        print(f"{name}: {row} ({time.perf_counter() - t0:.0f} s)", flush=True)
    settings = {
        "train": len(train[0]),
        "test": len(test[0]),
        "epochs": args.epochs,
        "calibration": len(calib),
        "int8_eval": min(args.int8_eval, len(test[0])),
        "environment": environment(),
        "lr": LR,
        "batch": BATCH,
        "variants": VARIANTS,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if args.merge and JSON.exists():
        import json

        done = {r["name"] for r in rows}
        previous = json.loads(JSON.read_text())
        rows = [r for r in previous["rows"] if r["name"] not in done] + rows
        settings["merged_with"] = previous["settings"]["measured_at"]
    markdown = render(rows, settings)
    if args.no_write:
        print(markdown)
        return
    atomic_write_json(JSON, {"settings": settings, "rows": rows})
    doc = DOC.read_text()
    if START in doc and END in doc:
        doc = doc[: doc.index(START)] + markdown + doc[doc.index(END) + len(END) + 1 :]
    else:
        doc = doc.rstrip("\n") + "\n\n" + markdown
    atomic_write_text(DOC, doc)
    print(f"wrote {DOC} and {JSON}")


if __name__ == "__main__":
    tf.get_logger().setLevel("ERROR")
    main()
