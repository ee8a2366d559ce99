"""The ``report`` stage of ``tfrobust pipeline``: report.json, report.md and PNG plots."""

from __future__ import annotations

import io
import json
from pathlib import Path

from tfrobust import utils


def _png(fig, path: Path):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    utils.atomic_write_bytes(path, buf.getvalue())


def _plots(ctx, res) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = {}
    ev, dep = res["evaluate"], res["deploy_eval"]
    fig, ax = plt.subplots(figsize=(5, 3.4))
    c = ev["eps_curve_pgd20"]
    ax.plot([p["eps"] for p in c], [p["accuracy"] for p in c], "o-", label="Keras float (white-box PGD-20)")
    for name, style in (("float", "s--"), ("int8", "^-")):
        c = dep[f"{name}_eps_curve_transfer_pgd20"]
        ax.plot([p["eps"] for p in c], [p["accuracy"] for p in c], style,
                label=f"TFLite {name} (PGD-20 transferred from Keras)")
    ax.set_xlabel("L-inf eps")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    _png(fig, ctx.path("plots/accuracy_vs_eps.png"))
    plt.close(fig)
    plots["accuracy_vs_eps"] = "plots/accuracy_vs_eps.png"

    # Read from the deployed int8 file, not the Keras model (QAT and conversion change the zeros).
    kernels = [k for k in res["tflite_report"].get("kernels") or [] if k["sparsity"] is not None]
    if res["compress"].get("sparsity") and kernels:
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.bar([k["layer"] for k in kernels], [k["sparsity"] for k in kernels],
               label="deployed int8 .tflite")
        ax.axhline(ctx.s.prune_sparsity, color="k", ls="--", lw=1, label="requested")
        ax.set_ylabel("fraction of zero weights")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7)
        ax.tick_params(axis="x", rotation=45)
        _png(fig, ctx.path("plots/layer_sparsity.png"))
        plt.close(fig)
        plots["layer_sparsity"] = "plots/layer_sparsity.png"

    conv, rep = res["convert"], res["tflite_report"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(7, 3))
    names = [n for n in ("float", "int8", "int8_b1", "binary") if n in conv]
    a1.bar(names, [conv[n]["bytes"] / 1024 for n in names])
    a1.set_ylabel("size (KiB)")
    lat = rep.get("latency_ms") or {}
    keys = sorted(lat)
    a2.bar([f"{k} thread(s)" for k in keys], [lat[k]["median_ms"] for k in keys])
    a2.set_ylabel("int8 batch-1 latency (ms, median)")
    a2.tick_params(axis="x", rotation=30)
    _png(fig, ctx.path("plots/size_latency.png"))
    plt.close(fig)
    plots["size_latency"] = "plots/size_latency.png"

    per_class = ev.get("per_class_pgd20")
    if per_class:
        from tfrobust.data import dataset_info

        labels = dataset_info(ctx.s.dataset).class_names
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.bar(range(len(per_class)), [v or 0.0 for v in per_class])
        ax.set_xticks(range(len(per_class)), labels, rotation=45, ha="right", fontsize=7)
        ax.set_ylabel(f"PGD-20 accuracy @ eps {ctx.s.eps}")
        ax.set_ylim(0, 1)
        _png(fig, ctx.path("plots/per_class_robust_accuracy.png"))
        plt.close(fig)
        plots["per_class_robust_accuracy"] = "plots/per_class_robust_accuracy.png"
    return plots


def _pct(v):
    return "-" if v is None else f"{100 * v:.1f}%"


def stage_report(ctx) -> dict:
    from tfrobust import tflite_tools

    res = {name: ctx.stage_result(name) for name in ("train", "evaluate", "compress", "convert",
                                                      "deploy_eval", "export_c")}
    res["tflite_report"] = tflite_tools.model_report(ctx.path("model_int8_b1.tflite").read_bytes(),
                                                     repeats=50, tflm=True)
    plots = _plots(ctx, res)
    s = ctx.s
    ev, comp, conv, dep = res["evaluate"], res["compress"], res["convert"], res["deploy_eval"]
    std = ev["standard"]
    report = {"settings": s.to_dict(), "environment": utils.environment(), "results": res, "plots": plots}
    utils.atomic_write_json(ctx.path("report.json"), report)
    rows = [
        ["train", f"test accuracy (Keras, {ctx.data('test')[1].shape[0]} images)",
         _pct(res["train"]["test_accuracy"])],
        ["evaluate", f"clean / robust accuracy, `standard` preset, eps {s.eps} ({s.eval_subset} images)",
         f"{_pct(std['clean_accuracy'])} / {_pct(std['robust_accuracy'])}"],
    ]
    if "adaptive" in ev:
        rows.append(["evaluate", "robust accuracy, `adaptive` preset",
                     _pct(ev["adaptive"]["robust_accuracy"])])
    for step in comp["steps"]:
        rows.append(["compress", f"{step['step']}: accuracy / robust accuracy (fast preset)",
                     f"{_pct(step['accuracy'])} / {_pct(step['robust_accuracy'])}"])
    if comp.get("sparsity"):
        kernels = res["tflite_report"].get("kernels") or []
        rows.append(["compress", "kernel sparsity per layer, read from the deployed int8 .tflite "
                     f"(requested {_pct(s.prune_sparsity)})",
                     ", ".join(f"{k['layer']} {_pct(k['sparsity'])}" for k in kernels)])
    rows += [
        ["convert", "float / int8 .tflite size",
         f"{conv['float']['bytes']:,} / {conv['int8']['bytes']:,} bytes ({conv['int8_vs_float_size']:.2f}x)"],
        ["deploy", "int8 .tflite test accuracy (LiteRT)", _pct(dep["int8_test_accuracy"])],
    ]
    if "binary" in conv:
        rows.append(["deploy", f"binary-int8 .tflite ({conv['binary']['bytes']:,} bytes) test accuracy "
                     "(LiteRT)", _pct(dep.get("binary_test_accuracy"))])
    at_eps = [p for p in dep["int8_eps_curve_transfer_pgd20"] if p["eps"] == s.eps]
    if at_eps:
        rows.append(["deploy", f"int8 accuracy under PGD-20 transferred from Keras, eps {s.eps}",
                     _pct(at_eps[0]["accuracy"])])
    if "int8_one_pixel" in dep:
        op = dep["int8_one_pixel"]
        rows.append(["deploy", f"int8 accuracy under a {op['pixels']}-pixel attack run on the interpreter "
                     f"({op['examples']} images)",
                     f"{_pct(op['accuracy'])} (clean {_pct(op['clean_accuracy_same_examples'])})"])
    deployed = dep.get("deployed_robustness") or {}
    if deployed:
        rows.append(["deploy", f"compressed Keras model, `standard` preset, eps {s.eps}",
                     _pct(deployed["compressed_standard"]["robust_accuracy"])])
    for name in ("int8", "binary"):
        if name in deployed:
            d = deployed[name]
            parts = ", ".join(f"{k} {_pct(v['robust_accuracy'])}" for k, v in d["per_attack"].items())
            rows.append(["deploy", f"{name} .tflite robust accuracy attacked as deployed (worst case), "
                         f"eps {s.eps}", f"**{_pct(d['robust_accuracy'])}**; transfer alone "
                         f"{_pct(d['config']['transfer_only_robust_accuracy'])}; after each component: "
                         f"{parts}"])
    tflm = res["tflite_report"].get("tflm") or {}
    if tflm.get("supported"):
        tflm_text = f"runs, arena {tflm.get('arena_size')} bytes"
    else:
        tflm_text = "not supported: " + json.dumps(tflm.get("missing_ops"))
    rows += [
        ["export", "C array for TFLite Micro", f"`{res['export_c'].get('header', 'c/model.h')}`"],
        ["export", "TFLite Micro", tflm_text],
    ]
    lines = [
        "# tfrobust pipeline report", "",
        f"Dataset `{s.dataset}`, model `{s.model}`"
        + (f" with defense `{s.defense}`" if s.defense != "none" else "")
        + f", adversarial training `{s.adv}` at eps {s.eps}, seed {s.seed}. Settings and versions: "
        "`report.json`.", "",
        utils.markdown_table(["stage", "figure", "value"], rows),
        "", "## Plots", "",
    ]
    lines += [f"![{name}]({path})" for name, path in plots.items()]
    lines += ["", "## Attack configuration (standard preset)", "", "```json",
              json.dumps(std.get("config", {}), indent=1, sort_keys=True), "```", "",
              tflite_tools.report_markdown(res["tflite_report"], title="Deployed int8 model (batch 1)")]
    utils.atomic_write_text(ctx.path("report.md"), "\n".join(lines) + "\n")
    return {"report": "report.md", "plots": plots}
