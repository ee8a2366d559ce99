"""``tfrobust pipeline --target=mcu``: a robust model inside a microcontroller budget.

choose -> train -> compress -> convert (+ budget check on the deployed file) -> deploy_eval ->
frontier -> export_c -> report. The frontier's pruned variants (``--frontier=prune0.25,...``) are
off by default: each costs a fine-tuning epoch and a deployed attack (about 1.5 CPU-min), so
the default run keeps the shipped point only and ``benchmarks/mcu.py`` measures the variants
apart. Same driver, run folder layout and ``--resume`` rules as the default target
(``tfrobust/cli/pipeline.py``); the stages read and write through the shared
:class:`~tfrobust.cli._pipeline_stages.Context`.

The recipe (measured in docs/mcu.md): the widest :func:`tfrobust.models.mcu_cnn` whose int8
batch-1 file fits both budgets, trained with FGSM-RS (Wong et al. 2020) under a linear eps
warm-up and a cosine learning rate, guarded against catastrophic overfitting by PGD-10 on a
held-out slice of the training set after each epoch (a collapse restores the best weights and
finishes with PGD-3 training); the weights with the best held-out PGD accuracy are kept
(early stopping, Rice et al. 2020). The deployed int8 file is attacked as deployed
(:func:`tfrobust.evaluation.robust_accuracy_deployed`).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from tfrobust import attacks, data, evaluation, models, utils
from tfrobust._keras import keras
from tfrobust.cli._pipeline_stages import Context, Settings, load_model

STAGES = ("choose", "train", "compress", "convert", "deploy_eval", "frontier", "export_c", "report")
#: Shares of the default run's time (ETA of the progress lines); the frontier is off by default.
WEIGHTS = {"choose": 0.01, "train": 0.5, "compress": 0.01, "convert": 0.02, "deploy_eval": 0.42,
           "frontier": 0.01, "export_c": 0.01, "report": 0.02}
#: Widths tried by ``choose``, widest first.
WIDTHS = (2.0, 1.75, 1.5, 1.25, 1.0, 0.75, 0.5, 0.25)
ROBUST_METHOD = ("robust_accuracy_deployed: per-example worst case of transfer (the Keras source's "
                 "APGD-CE + APGD-T (3 targets) examples replayed), APGD-CE / APGD-DLR / APGD-T (3 targets) "
                 "through the int8 interpreter (forward = the file, backward = the source's gradient, "
                 "every success re-checked on the file) and Square on the interpreter")


def SOURCE_PRESET(steps):  # noqa: N802 - a preset, named like the evaluation's PRESETS
    """The transfer component's attacks on the Keras source (the ``standard`` preset's gradient
    stages; its Square runs on the deployed file instead)."""
    return [{"name": "apgd-ce", "steps": steps}, {"name": "apgd-t", "steps": steps, "targets": 3}]


@dataclasses.dataclass
class MCUSettings(Settings):
    """The default target's settings plus the microcontroller ones (recorded in the report).

    The defaults are ``tfrobust pipeline --target=mcu``'s (epochs, learning rate and QAT measured in
    docs/mcu.md).
    """

    epochs: int = 12
    lr: float = 2e-3
    qat: bool = False
    target: str = "mcu"
    max_weight_bytes: int = 65536
    max_arena_bytes: int = 32768
    width: float | None = None  # None: the widest that fits (``choose``)
    guard_examples: int = 500
    apgd_steps: int = 100
    square_queries: int = 5000
    frontier: tuple = ()  # e.g. ("prune0.25", "prune0.5", "prune0.75"): benchmarks/mcu.py
    frontier_subset: int = 500


def _cal(ctx):
    return ctx.data("train")[0][:500]


def _mode(s):
    return "binary" if s.binary else "int8"


def _convert(s, model, cal, batch_size):
    from tfrobust import tflite_tools

    return tflite_tools.convert(model, _mode(s), representative_data=cal, batch_size=batch_size)


def _maybe_lut(s, data_b1):
    """Binary kernels hold two values per channel: store them as 1-bit LUT indices (TFLite Micro
    decodes them in the kernels). Layers too small to save 1 KiB (the real-valued first conv and
    logits) stay plain int8."""
    if not s.binary:
        return data_b1
    from tfrobust import tflite_tools

    return tflite_tools.compress_lut(data_b1, bits=1, min_saving=1024)


# ---------------------------------------------------------------------------------------------
def stage_choose(ctx: Context) -> dict:
    """The widest ``mcu_cnn`` whose int8 batch-1 file fits both budgets (weights and arena do not
    depend on training, so an untrained model measures them)."""
    from tfrobust import tflite_tools

    s = ctx.s
    info = data.dataset_info(s.dataset)
    cal = _cal(ctx)
    widths = (s.width,) if s.width is not None else WIDTHS
    tried = []
    for width in widths:
        model = models.mcu_cnn(info.image_shape, info.num_classes, width=width, binary=s.binary)
        params = int(model.count_params())
        if s.width is None and not s.binary and params > s.max_weight_bytes and width != widths[-1]:
            # int8 stores at least one byte per parameter: no need to convert to know it is over
            tried.append({"width": width, "params": int(model.count_params()), "ok": False,
                          "weight_bytes": None, "arena_bytes": None, "over": ["parameters > weight budget"]})
            continue
        b1 = _maybe_lut(s, _convert(s, model, cal[:50], 1))
        budget = tflite_tools.check_budget(b1, max_weight_bytes=s.max_weight_bytes,
                                           max_arena_bytes=s.max_arena_bytes, raise_error=False)
        tried.append({"width": width, "params": int(model.count_params()), **budget.to_dict()})
        print(f"  mcu_cnn width {width:g}: {budget.weight_bytes:,} B weights, {budget.arena_bytes:,} B "
              f"arena -> {'fits' if budget.ok else 'over'}", flush=True)
        if budget.ok:
            return {"width": width, "tried": tried}
        if s.width is not None:
            raise tflite_tools.BudgetError(
                f"--width={width:g} does not fit: " + "; ".join(budget.over) + ". Fix: a smaller --width "
                "or drop --width to let the pipeline choose. Received: "
                f"--max_weight_bytes={s.max_weight_bytes} --max_arena_bytes={s.max_arena_bytes}", budget)
    raise tflite_tools.BudgetError(
        f"no mcu_cnn width in {list(widths)} fits the budget; the narrowest: " + "; ".join(budget.over)
        + f". Received: --max_weight_bytes={s.max_weight_bytes} --max_arena_bytes={s.max_arena_bytes}",
        budget)


def _pgd_accuracy(model, x, y, eps, seed):
    x_adv = attacks.pgd(model, x, y, eps=eps, step_size=attacks.default_step_size(eps, 10), steps=10,
                        seed=seed)
    return float(np.mean(np.argmax(np.asarray(model(x_adv, training=False)), 1) == y))


@dataclasses.dataclass
class OverfittingGuard:
    """The decision rule of :func:`train_guarded`, apart from the training so it can be checked alone.

    FGSM-RS's catastrophic overfitting (Wong et al. 2020): the single step stops finding the loss
    maximum and multi-step PGD accuracy collapses within an epoch while the training accuracy
    climbs. After each epoch :meth:`update` gets the held-out PGD accuracy ``r`` and the weights:

    - ``r > best``: a new best epoch, its weights are kept (early stopping, Rice et al. 2020);
    - ``best - r > max_drop`` while training FGSM-RS: a collapse (restore the best weights, switch
      to multi-step PGD);
    - otherwise: keep training.

    Args:
      max_drop: the fall of held-out PGD accuracy below the best epoch's that counts as a collapse
        (0.2: a collapse takes PGD accuracy to near zero; ordinary epoch-to-epoch noise on 500
        held-out images is a few points).
      best: best held-out PGD accuracy so far (-1: none yet).
      best_weights: the weights of that epoch.

    Example:
      >>> g = OverfittingGuard()
      >>> [g.update(r, weights=[r], method="fgsm_rs") for r in (0.5, 0.6, 0.55, 0.3)]
      ['best', 'best', 'keep', 'collapse']
      >>> g.best_weights
      [0.6]
    """

    max_drop: float = 0.2
    best: float = -1.0
    best_weights: list | None = None

    def update(self, robust: float, weights, method: str) -> str:
        """Record one epoch; returns ``"best"``, ``"collapse"`` or ``"keep"``."""
        if robust > self.best:
            self.best, self.best_weights = robust, weights
            return "best"
        if method == "fgsm_rs" and self.best - robust > self.max_drop:
            return "collapse"
        return "keep"


def train_guarded(s, model, x, y, x_guard, y_guard, *, epochs, lr, guard=None, log=print):
    """FGSM-RS training with a catastrophic-overfitting guard; returns the per-epoch history.

    After each epoch, PGD-10 accuracy on the held-out ``(x_guard, y_guard)`` goes to ``guard``
    (an :class:`OverfittingGuard`; default a new one): on a collapse the best weights are restored
    and the remaining epochs train with PGD-3. The weights of the epoch with the best held-out PGD
    accuracy are kept.
    """
    from tfrobust.trainers import AdversarialTrainer

    guard = OverfittingGuard() if guard is None else guard
    method = s.adv if s.adv != "none" else "fgsm_rs"
    steps_per_epoch = -(-len(x) // s.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(lr, steps_per_epoch * epochs)
    optimizer = keras.optimizers.Adam(schedule)

    def trainer_for(m, steps):
        t = AdversarialTrainer(model, method=m, eps=s.eps, steps=steps, seed=s.seed,
                               eps_warmup_steps=min(steps_per_epoch, 400))
        t.compile(optimizer=optimizer, metrics=["accuracy"])
        return t

    steps = {"pgd": 7, "trades": 5}.get(method, 1)
    trainer = trainer_for(method, steps)
    ds = data.as_tf_dataset(x, y, batch_size=s.batch_size, shuffle=True, seed=s.seed)
    history = []
    for epoch in range(epochs):
        t0, c0 = time.perf_counter(), time.process_time()
        fit = trainer.fit(ds, epochs=1, verbose=0)
        clean = float(np.mean(np.argmax(np.asarray(model(x_guard, training=False)), 1) == y_guard))
        robust = _pgd_accuracy(model, x_guard, y_guard, s.eps, s.seed)
        entry = {"epoch": epoch + 1, "method": trainer.method, "steps": trainer.steps,
                 "train_loss": float(fit.history["loss"][-1]), "guard_clean": clean, "guard_pgd10": robust,
                 "seconds": round(time.perf_counter() - t0, 1),
                 "cpu_seconds": round(time.process_time() - c0, 1)}
        log(f"  epoch {epoch + 1}/{epochs} ({trainer.method}): held-out clean {clean:.3f}, PGD-10 "
            f"{robust:.3f} ({entry['seconds']:.0f} s)")
        if guard.update(robust, model.get_weights(), trainer.method) == "collapse":
            entry["guard"] = "catastrophic overfitting: best weights restored, PGD-3 from here"
            log("  " + entry["guard"])
            model.set_weights(guard.best_weights)
            trainer = trainer_for("pgd", 3)
        history.append(entry)
    model.set_weights(guard.best_weights)
    return history


def stage_train(ctx: Context) -> dict:
    s = ctx.s
    utils.set_seed(s.seed)
    info = data.dataset_info(s.dataset)
    width = ctx.stage_result("choose")["width"]
    x, y = ctx.data("train")
    n_guard = min(s.guard_examples, len(x) // 5)
    x_guard, y_guard, x, y = x[-n_guard:], y[-n_guard:], x[:-n_guard], y[:-n_guard]
    model = models.mcu_cnn(info.image_shape, info.num_classes, width=width, binary=s.binary)
    t0, c0 = time.perf_counter(), time.process_time()
    history = train_guarded(s, model, x, y, x_guard, y_guard, epochs=s.epochs, lr=s.lr,
                            log=lambda m: print(m, flush=True))
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    utils.atomic_save_model(model, ctx.path("model.keras"))
    x_test, y_test = ctx.data("test")
    acc = evaluation.accuracy(model, x_test, y_test, batch_size=500)
    return {"width": width, "binary": s.binary, "params": int(model.count_params()), "test_accuracy": acc,
            "train_seconds": round(seconds, 1), "train_cpu_seconds": round(cpu, 1),
            "guard_examples": int(n_guard), "history": history}


def stage_compress(ctx: Context) -> dict:
    """The chosen width fits as trained: measured on the default run, PTQ int8 agrees with the
    Keras model and structured pruning / LUT would only trade accuracy for bytes the budget does
    not need. QAT (``--qat``) is available for widths where PTQ loses accuracy."""
    from tfrobust import compression

    s = ctx.s
    model = load_model(ctx.path("model.keras"))
    steps = []
    if s.qat and not s.binary:
        from tfrobust.cli._pipeline_stages import _fit

        x, y = ctx.data("train")
        ds = data.as_tf_dataset(x, y, batch_size=s.batch_size, shuffle=True, seed=s.seed)
        model = compression.quantize(model)
        _fit(s, model, ds, lr=s.lr / 10, epochs=s.finetune_epochs)
        steps.append(f"QAT int8, {s.finetune_epochs} epoch(s) of {s.adv}")
    utils.atomic_save_model(model, ctx.path("compressed.h5"))
    return {"steps": steps or ["none: the trained model fits the budget as post-training int8"]}


def stage_convert(ctx: Context) -> dict:
    """int8 files (batch 1 for the device, any batch for evaluation); the budget is checked on the
    batch-1 file, which is the one that ships."""
    from tfrobust import tflite_tools

    s = ctx.s
    model = load_model(ctx.path("compressed.h5"))
    cal = _cal(ctx)
    b1 = _convert(s, model, cal, 1)
    utils.atomic_write_bytes(ctx.path("model_int8_b1_plain.tflite"), b1)
    shipped = _maybe_lut(s, b1)
    utils.atomic_write_bytes(ctx.path("model_int8_b1.tflite"), shipped)
    batch = _convert(s, model, cal, None)
    utils.atomic_write_bytes(ctx.path("model_int8.tflite"), batch)
    budget = tflite_tools.check_budget(shipped, max_weight_bytes=s.max_weight_bytes,
                                       max_arena_bytes=s.max_arena_bytes)
    out = {"mode": _mode(s), "lut": s.binary, "budget": budget.to_dict(),
           "kernels": [dataclasses.asdict(k) for k in tflite_tools.kernel_stats(shipped)]}
    x_test, _ = ctx.data("test")
    # Why no QAT by default: post-training int8 already predicts what the Keras model does.
    out["int8_agreement"] = tflite_tools.int8_agreement(model, batch, x_test[:1000])
    if s.binary:
        out["lut_parity"] = tflite_tools.lut_parity(b1, shipped, x_test[:20])
    for k in out["kernels"]:
        k["shape"] = list(k["shape"])
    print(f"  deployed file: {budget.weight_bytes:,} B weights (budget {s.max_weight_bytes:,}), "
          f"{budget.arena_bytes:,} B TFLM arena (budget {s.max_arena_bytes:,})", flush=True)
    return out


def deployed_figures(s, deployed, source, x, y, x_test, y_test, *, verbose=True) -> dict:
    """Clean accuracy of ``deployed`` on the whole test set and its robust accuracy attacked as
    deployed on ``x, y``."""
    preds = evaluation.predict_labels(deployed, x_test, batch_size=1000)
    t0, c0 = time.perf_counter(), time.process_time()
    # Transfer examples from the source's gradient attacks only: Square runs on the deployed file
    # itself below, where its queries see the int8 decision (on the Keras model they cost as much
    # and only transfer).
    source_report = evaluation.robust_accuracy(source, x, y, eps=s.eps, preset=SOURCE_PRESET(s.apgd_steps),
                                               seed=s.seed, model=source)
    rep = evaluation.robust_accuracy_deployed(deployed, source, x, y, eps=s.eps, steps=s.apgd_steps,
                                              square_queries=s.square_queries, source_report=source_report,
                                              seed=s.seed, verbose=verbose)
    return {"test_accuracy": float(np.mean(preds == y_test)), "clean": rep.clean_accuracy,
            "robust": rep.robust_accuracy, "n": int(rep.num_examples),
            "eval_seconds": round(time.perf_counter() - t0, 1),
            "eval_cpu_seconds": round(time.process_time() - c0, 1), "report": rep.to_dict(),
            "clean_mask": [bool(v) for v in evaluation.predict_labels(deployed, x, batch_size=1000) == y],
            "robust_mask": [bool(v) for v in rep.robust_mask]}


def stage_deploy_eval(ctx: Context) -> dict:
    from tfrobust import tflite_tools

    s = ctx.s
    source = load_model(ctx.path("compressed.h5"))
    x, y = ctx.eval_set()
    x_test, y_test = ctx.data("test")
    deployed = tflite_tools.TFLiteModel(ctx.path("model_int8.tflite"))
    out = deployed_figures(s, deployed, source, x, y, x_test, y_test)
    out["robust_method"] = ROBUST_METHOD
    out["eps"] = s.eps
    print(f"  deployed int8: clean {out['clean']:.3f}, robust {out['robust']:.3f} at eps {s.eps} "
          f"({out['n']} images)", flush=True)
    return out


def _variant(ctx, name, model, x, y):
    """Fine-tune, convert and measure one frontier variant (``prune<f>``: f of every hidden
    layer's units removed by filter L1 norm, then ``finetune_epochs`` of the run's adversarial
    training)."""
    from tfrobust import compression, tflite_tools

    s = ctx.s
    if not name.startswith("prune"):
        raise ValueError(f"unknown frontier variant {name!r}; expected prune<fraction>. Received: "
                         f"--frontier={','.join(s.frontier)}")
    fraction = float(name[len("prune"):])
    narrow = compression.prune_units(model, fraction, score="l1").model
    n_guard = min(s.guard_examples, len(x) // 5)
    train_guarded(s, narrow, x[:-n_guard], y[:-n_guard], x[-n_guard:], y[-n_guard:],
                  epochs=s.finetune_epochs, lr=s.lr / 4, log=lambda m: print(m, flush=True))
    cal = _cal(ctx)
    b1 = _maybe_lut(s, _convert(s, narrow, cal, 1))
    budget = tflite_tools.check_budget(b1, max_weight_bytes=None, max_arena_bytes=None)
    return narrow, tflite_tools.TFLiteModel(_convert(s, narrow, cal, None)), budget


def stage_frontier(ctx: Context) -> dict:
    """Size / robustness points: the shipped file plus narrower structurally pruned variants of the
    trained model, each deployed and attacked as deployed on the first ``frontier_subset`` images
    of the evaluation set (the shipped file's point re-uses its figures on those images)."""
    s = ctx.s
    x_all, y_all = ctx.eval_set()
    n = min(s.frontier_subset, len(x_all))
    x, y = x_all[:n], y_all[:n]
    dep, conv = ctx.stage_result("deploy_eval"), ctx.stage_result("convert")
    points = [{"name": f"mcu_cnn w{ctx.stage_result('choose')['width']:g} {conv['mode']}"
               + (" + LUT" if conv["lut"] else "") + " (shipped)",
               "weight_bytes": conv["budget"]["weight_bytes"], "arena_bytes": conv["budget"]["arena_bytes"],
               "clean": float(np.mean(dep["clean_mask"][:n])),
               "robust": float(np.mean(dep["robust_mask"][:n])),
               "n": n, "test_accuracy": dep["test_accuracy"]}]
    if s.frontier and s.binary:
        print("  frontier: structured pruning of binary layers is not supported; shipped point only",
              flush=True)
    elif s.frontier:
        model = load_model(ctx.path("model.keras"))
        xt, yt = ctx.data("train")
        x_test, y_test = ctx.data("test")
        for name in s.frontier:
            narrow, deployed, budget = _variant(ctx, name, model, xt, yt)
            fig = deployed_figures(s, deployed, narrow, x, y, x_test, y_test)
            points.append({"name": f"{name} of the shipped model, {conv['mode']}",
                           "weight_bytes": budget.weight_bytes, "arena_bytes": budget.arena_bytes,
                           "clean": fig["clean"], "robust": fig["robust"], "n": fig["n"],
                           "test_accuracy": fig["test_accuracy"], "params": int(narrow.count_params())})
            print(f"  frontier {name}: {budget.weight_bytes:,} B, clean {fig['clean']:.3f}, robust "
                  f"{fig['robust']:.3f} ({fig['n']} images)", flush=True)
    return {"points": points}


def stage_export_c(ctx: Context) -> dict:
    from tfrobust import tflite_tools

    arena = ctx.stage_result("convert")["budget"]["arena_bytes"]
    info = tflite_tools.export_c(ctx.path("model_int8_b1.tflite").read_bytes(), ctx.path("c/model"),
                                 arena_size=arena)
    return {"header": "c/model.h", "source": "c/model.cc", "length": info["length"],
            "arena_size": info["arena_size"]}


STAGE_FUNCTIONS = {
    "choose": stage_choose,
    "train": stage_train,
    "compress": stage_compress,
    "convert": stage_convert,
    "deploy_eval": stage_deploy_eval,
    "frontier": stage_frontier,
    "export_c": stage_export_c,
}


def frontier_plot(points, path, *, max_weight_bytes=None, eps=None, title=None):
    """Deployed weight bytes against deployed clean and robust accuracy, one marker per point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tfrobust.cli._pipeline_report import _png

    fig, ax = plt.subplots(figsize=(6, 3.8))
    kb = [p["weight_bytes"] / 1024 for p in points]
    ax.scatter(kb, [p["clean"] for p in points], marker="o", label="clean (deployed file)")
    ax.scatter(kb, [p["robust"] for p in points], marker="^",
               label=f"robust, attacked as deployed{f' (eps {eps:g})' if eps is not None else ''}")
    for k, p in zip(kb, points):
        ax.annotate(p["name"], (k, p["robust"]), fontsize=6, xytext=(-4, -10), textcoords="offset points",
                    ha="right" if k > 0.5 * max(kb) else "left")
    if max_weight_bytes:
        ax.axvline(max_weight_bytes / 1024, color="k", ls="--", lw=1, label="weight budget")
    ax.set_xlim(0, 1.15 * max([*kb, (max_weight_bytes or 0) / 1024]))
    ax.set_xlabel("deployed weight bytes (KiB, read from the .tflite)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    if title:
        ax.set_title(title, fontsize=8)
    _png(fig, path)
    plt.close(fig)


def _pct(v):
    return "-" if v is None else f"{100 * v:.1f}%"


def _tried(t):
    sizes = (f"{t['weight_bytes']:,} / {t['arena_bytes']:,} B" if t["weight_bytes"] is not None
             else f"{t['params']:,} parameters")
    return f"{t['width']:g}: {sizes}" + ("" if t["ok"] else " (over)")


def stage_report_mcu(ctx: Context) -> dict:
    s = ctx.s
    names = [n for n in STAGES if n != "report"]
    res = {name: ctx.stage_result(name) for name in names}
    choose, train, conv, dep = res["choose"], res["train"], res["convert"], res["deploy_eval"]
    points = res["frontier"]["points"]
    frontier_plot(points, ctx.path("plots/frontier.png"), max_weight_bytes=s.max_weight_bytes, eps=s.eps,
                  title=f"first {points[0]['n']} test images")
    plots = {"frontier": "plots/frontier.png"}
    budget = conv["budget"]
    utils.atomic_write_json(ctx.path("report.json"), {"settings": s.to_dict(), "results": res, "plots": plots,
                                                        "environment": utils.environment()})
    per = ", ".join(f"{k} {_pct(v['robust_accuracy'])}" for k, v in dep["report"]["per_attack"].items())
    lines = [
        "# tfrobust pipeline report (--target=mcu)", "",
        f"Dataset `{s.dataset}`, `mcu_cnn` width {choose['width']:g}{' (binary)' if s.binary else ''}, "
        f"adversarial training `{s.adv}` at eps {s.eps} with the PGD-10 guard, {s.epochs} epochs, "
        f"seed {s.seed}. "
        "Every figure below is read from or measured on the deployed file. Settings and versions: "
        "`report.json`.", "",
        utils.markdown_table(["stage", "figure", "value"], [
            ["choose", "widths tried (weights / arena of the int8 batch-1 file)",
             ", ".join(_tried(t) for t in choose["tried"])],
            ["train", "parameters; Keras test accuracy",
             f"{train['params']:,}; {_pct(train['test_accuracy'])}"],
            ["train", "held-out PGD-10 per epoch",
             ", ".join(f"{h['guard_pgd10']:.3f}" + (" (guard)" if "guard" in h else "")
                       for h in train["history"])],
            ["compress", "steps", "; ".join(res["compress"]["steps"])],
            ["convert", "deployed weights (every constant buffer)",
             f"**{budget['weight_bytes']:,} B** (budget {budget['max_weight_bytes']:,} B)"],
            ["convert", "TFLite Micro arena, batch 1",
             f"**{budget['arena_bytes']:,} B** (budget {budget['max_arena_bytes']:,} B)"],
            ["convert", ".tflite file",
             f"{budget['file_bytes']:,} B ({conv['mode']}{', 1-bit LUT' if conv['lut'] else ''})"],
            ["convert", "int8 file predicts the Keras model's class (first 1000 test images)",
             _pct(conv.get("int8_agreement"))],
            ["deploy", f"int8 test accuracy (LiteRT, {len(ctx.data('test')[1]):,} images)",
             _pct(dep["test_accuracy"])],
            ["deploy", f"clean / robust accuracy of the int8 file attacked as deployed, eps {s.eps} "
             f"({dep['n']} images)", f"{_pct(dep['clean'])} / **{_pct(dep['robust'])}**"],
            ["deploy", "robust accuracy after each component", per],
            ["deploy", "method",
             f"{dep['robust_method']}; APGD {s.apgd_steps} steps, Square {s.square_queries} queries"],
            ["export", "C array for TFLite Micro",
             f"`{res['export_c']['header']}` (arena constant {res['export_c']['arena_size']} B)"],
        ]),
        "", "## Size / robustness frontier", "",
        utils.markdown_table(
            ["configuration", "weight bytes", "arena bytes", "clean", "robust", "images"],
            [[p["name"], f"{p['weight_bytes']:,}", f"{p['arena_bytes']:,}", _pct(p["clean"]),
              _pct(p["robust"]), p["n"]] for p in points]),
    ]
    if len(points) == 1:
        lines += ["", "The shipped point only: `--frontier=prune0.25,prune0.5,prune0.75` adds structurally "
                  "pruned variants (docs/mcu.md has them for the default run)."]
    lines += ["", "![frontier](plots/frontier.png)", ""]
    utils.atomic_write_text(ctx.path("report.md"), "\n".join(lines) + "\n")
    return {"report": "report.md", "plots": plots}
