"""``robust_accuracy``: presets, an attack cascade, and a report that says how far to trust it."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time

import numpy as np
import tensorflow as tf

from tfrobust import _validate as V
from tfrobust import attacks
from tfrobust._version import __version__
from tfrobust.attacks import _common as C
from tfrobust.evaluation import _checks
from tfrobust.evaluation._accuracy import _check_batch_size, predict_labels

PRESETS = ("fast", "standard", "adaptive")


@dataclasses.dataclass
class RobustnessReport:
    """The outcome of :func:`robust_accuracy`.

    Attributes:
      clean_accuracy: accuracy on the unperturbed inputs.
      robust_accuracy: fraction of inputs classified correctly under *every* attack run.
      per_attack: attack name -> ``{"config", "attacked", "broken", "robust_accuracy", "seconds"}``
        where ``robust_accuracy`` is the cumulative value after that stage of the cascade.
      config: the full evaluation configuration (preset, eps, norm, adaptive choices, ...).
      warnings: sanity warnings, each naming its fix.
      num_examples: number of evaluated inputs.
      robust_mask: bool [N], True where the input survived every attack (not serialized).
      adversarial: the adversarial example found per input (the last attack's output for robust
        ones), as a NumPy array (not serialized).
    """

    clean_accuracy: float
    robust_accuracy: float
    per_attack: dict
    config: dict
    warnings: list
    num_examples: int
    robust_mask: np.ndarray = dataclasses.field(repr=False, default=None)
    adversarial: np.ndarray = dataclasses.field(repr=False, default=None)

    def to_dict(self) -> dict:
        """JSON-ready dict (no arrays)."""
        return {"clean_accuracy": self.clean_accuracy, "robust_accuracy": self.robust_accuracy,
                "num_examples": self.num_examples, "per_attack": self.per_attack, "config": self.config,
                "warnings": list(self.warnings)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False)

    def to_markdown(self) -> str:
        """A Markdown section: accuracies, the per-attack cascade table, configuration, warnings."""
        c = self.config
        lines = [f"### Robust accuracy ({c['preset']} preset, {c['norm']} eps={c['eps']:g})", "",
                 f"- clean accuracy: **{self.clean_accuracy:.4f}** on {self.num_examples} examples",
                 f"- robust accuracy: **{self.robust_accuracy:.4f}** (correct under every attack below)", "",
                 "| attack | points attacked | newly broken | robust accuracy after | seconds | settings |",
                 "|---|---|---|---|---|---|"]
        for name, r in self.per_attack.items():
            settings = ", ".join(f"{k}={v}" for k, v in r["config"].items())
            lines.append(f"| {name} | {r['attacked']} | {r['broken']} | {r['robust_accuracy']:.4f} | "
                         f"{r['seconds']:.2f} | {settings} |")
        lines += ["", f"Configuration: cascade={c['cascade']}, EOT samples={c['eot_samples']}, "
                      f"BPDA={c['bpda']}, clip=[{c['clip_min']:g}, {c['clip_max']:g}], seed={c['seed']}, "
                      f"batch_size={c['batch_size']}."]
        if self.warnings:
            lines += ["", "**Warnings**", ""] + [f"- {w}" for w in self.warnings]
        else:
            lines += ["", "No sanity warning was raised."]
        return "\n".join(lines) + "\n"


def _plan(preset, eps, norm, steps, num_classes, eot_samples, random_samples, use_bpda=False):
    """The attack sequence of a preset: (name, callable(model_fn, x, y, seed), config, bpda).

    With ``use_bpda`` (adaptive preset, gradient-masking layers declared) the APGD attacks run
    twice: first on the model's own gradients, then with BPDA's backward approximations. Neither
    is always the stronger (BPDA's straight-through gradient can be a worse ascent direction
    than a layer's true, sparse gradient), and the cascade keeps the per-example worst case.
    """
    if preset == "fast":
        n = steps or 20
        cfg = dict(steps=n, step_size=2.5 * eps / n, random_start=True, restarts=1, loss="ce")
        plan = [("pgd", lambda m, x, y, s, c=cfg: attacks.pgd(m, x, y, eps=eps, norm=norm, seed=s, **c), cfg,
                 False)]
    else:
        n = steps or 100
        plan = []
        for bpda in ((False, True) if use_bpda else (False,)):
            for loss in ("ce", "dlr"):
                if loss == "dlr" and num_classes < 3:
                    continue  # DLR needs three logits; the report's config records the skip
                cfg = dict(steps=n, loss=loss, restarts=1)
                plan.append((f"apgd-{loss}" + ("-bpda" if bpda else ""),
                             lambda m, x, y, s, c=cfg: attacks.apgd(m, x, y, eps=eps, norm=norm, seed=s, **c),
                             cfg, bpda))
    rs_cfg = dict(samples=random_samples)
    plan.append(("random-search", None, rs_cfg, False))
    return plan


def robust_accuracy(model_fn, x, y, *, eps, norm="linf", preset="fast", batch_size=256, model=None,
                    clip_min=0.0, clip_max=1.0, steps=None, eot_samples=20, random_samples=None,
                    cascade=True, seed=0, checks=True, verbose=False) -> RobustnessReport:
    """Robust accuracy under an attack cascade, with the configuration and sanity warnings.

    Presets:

    - ``"fast"``: PGD-20 (L-inf or L2, step ``2.5 eps / steps``, random start, CE loss).
    - ``"standard"``: APGD-CE then APGD-DLR, 100 steps each (Croce & Hein 2020; DLR is skipped
      with fewer than 3 classes).
    - ``"adaptive"``: the standard attacks, plus EOT (``eot_samples`` forward passes per
      gradient) when the model declares ``stochastic`` layers or its outputs change between
      identical calls; when it declares ``gradient_masking`` layers, the standard attacks run
      on its own gradients and then again under BPDA (:func:`tfrobust.attacks.bpda_scope`),
      as ``apgd-ce-bpda`` / ``apgd-dlr-bpda``, and the worst case counts.

    Every preset ends with a cheap gradient-free random search on the points still robust; if
    it breaks any, the gradient attacks were fooled (gradient masking) and a warning says so.
    With ``cascade=True`` each attack only runs on the points every earlier attack left
    robust (an input counts as robust only if it survives all of them, so the result equals the
    per-example worst case); ``cascade=False`` attacks every point with every attack (same result,
    more work; useful to measure the saving). The robust accuracy is

        ``1/N sum_i 1[f(x_i) = y_i and f(A_k(x_i)) = y_i for every attack k]``.

    For a stochastic model (EOT active) predictions are the argmax of the logits averaged over
    ``eot_samples`` passes.

    Sanity checks (``checks=True``), each warning naming its fix: outputs that look like
    probabilities, inputs with all-zero gradients, outputs that change between identical calls,
    and a gradient-free attack beating the gradient attacks.

    Args:
      model_fn: callable mapping float images [N, ...] to logits [N, K].
      x: float images in ``[clip_min, clip_max]`` (NumPy array or tensor).
      y: labels [N] or one-hot [N, K].
      eps: perturbation radius (> 0 for a meaningful evaluation; 0 gives the clean accuracy).
      norm: ``"linf"`` or ``"l2"``.
      preset: ``"fast"``, ``"standard"`` or ``"adaptive"``.
      batch_size: examples per attack batch.
      model: the Keras model / ``tf.Module`` to inspect for ``stochastic`` / ``gradient_masking``
        layers when ``model_fn`` is a wrapper (defaults to ``model_fn`` itself).
      clip_min: lower bound of valid inputs.
      clip_max: upper bound of valid inputs.
      steps: override the preset's number of attack steps.
      eot_samples: forward passes averaged by EOT in the adaptive preset.
      random_samples: samples of the final random search (default 10 for fast, 20 otherwise).
      cascade: attack only the points still robust.
      seed: seed of the attacks' random starts (reproducible evaluations).
      checks: run the sanity checks.
      verbose: print one line per stage.

    Returns:
      A :class:`RobustnessReport`.

    Raises:
      ValueError / TypeError: for bad arguments, naming them.

    Example:
      >>> report = robust_accuracy(model, x_test[:1000], y_test[:1000], eps=0.1, preset="standard")
      >>> print(report.robust_accuracy); open("robust.md", "w").write(report.to_markdown())

    References:
      Croce & Hein, Reliable Evaluation of Adversarial Robustness with an Ensemble of Diverse
      Parameter-free Attacks, ICML 2020, https://arxiv.org/abs/2003.01690;
      Athalye et al., Obfuscated Gradients Give a False Sense of Security, ICML 2018,
      https://arxiv.org/abs/1802.00420
    """
    C.check_model_fn(model_fn)
    eps = V.number("eps", eps, minimum=0.0)
    norm = V.choice("norm", norm, C.NORMS)
    preset = V.choice("preset", preset, PRESETS)
    _check_batch_size(batch_size)
    clip_min, clip_max = V.clip_range(clip_min, clip_max)
    clip_min, clip_max = float(clip_min), float(clip_max)
    if steps is not None:
        steps = V.integer("steps", steps, minimum=1)
    eot_samples = V.integer("eot_samples", eot_samples, minimum=1)
    if random_samples is None:
        random_samples = 10 if preset == "fast" else 20
    random_samples = V.integer("random_samples", random_samples, minimum=0)
    cascade = V.boolean("cascade", cascade)
    seed = V.seed(seed)
    if seed is None:
        raise ValueError("`seed` must be an int for a reproducible evaluation. Received: seed=None")
    checks = V.boolean("checks", checks)

    x_np = np.asarray(x)
    y_np = np.asarray(y)
    if y_np.ndim == 2:
        y_np = np.argmax(y_np, 1)
    if y_np.ndim != 1 or not np.issubdtype(y_np.dtype, np.integer):
        raise ValueError(f"`y` must hold integer labels [N] or one-hot rows [N, K]. Received: y.shape="
                         f"{y_np.shape}, y.dtype={y_np.dtype}")
    if len(x_np) != len(y_np) or len(x_np) == 0:
        raise ValueError(f"`x` and `y` must hold the same, non-zero number of examples. Received: "
                         f"len(x)={len(x_np)}, len(y)={len(y_np)}")
    # Same input checks as the attacks (dtype, NaN, range), on a small slice and once on the min/max.
    C.prepare_inputs(x_np[:1], y_np[:1], targeted=False, clip_min=clip_min, clip_max=clip_max)
    if not np.all(np.isfinite(x_np)):
        raise ValueError("`x` contains NaN or Inf values. Received: x with non-finite entries")
    if x_np.min() < clip_min - 1e-6 or x_np.max() > clip_max + 1e-6:
        raise ValueError(f"`x` must lie in [clip_min, clip_max] = [{clip_min}, {clip_max}]. Received: x in "
                         f"[{float(x_np.min())}, {float(x_np.max())}]")
    x_np = x_np.astype(np.float32, copy=False)
    y_np = y_np.astype(np.int64)

    warnings = []
    inspect_target = model if model is not None else model_fn
    declared = attacks.inspect_model(inspect_target)
    probe = x_np[:min(len(x_np), batch_size, 64)]
    probe_y = y_np[:len(probe)]
    random_warning = None
    if checks:
        _, random_warning = _checks.check_randomness(model_fn, probe)
    use_eot = preset == "adaptive" and (bool(declared["stochastic"]) or random_warning is not None)
    if random_warning and not use_eot:
        warnings.append(random_warning)
    elif random_warning and not declared["stochastic"]:
        warnings.append("model outputs change between identical calls but no layer declares "
                        f"`stochastic = True`; EOT ({eot_samples} samples) was enabled from the observed "
                        "randomness. Fix: declare the random layers `stochastic = True` so every "
                        "evaluation adapts to them.")
    use_bpda = preset == "adaptive" and bool(declared["gradient_masking"])
    attack_fn = attacks.eot(model_fn, eot_samples) if use_eot else model_fn

    def scope(bpda=use_bpda):
        return attacks.bpda_scope() if bpda else contextlib.nullcontext()

    clean_pred = predict_labels(attack_fn, x_np, batch_size=batch_size)
    robust = clean_pred == y_np
    clean_acc = float(np.mean(robust))
    adversarial = x_np.copy()
    num_classes = int(C.as_logits(attack_fn(tf.constant(probe[:1]))).shape[1])

    if checks:
        from tfrobust.evaluation._accuracy import predict_logits

        w = _checks.check_probabilities(predict_logits(model_fn, probe, batch_size=batch_size))
        if w:
            warnings.append(w)
        with scope():
            frac = _checks.zero_gradient_fraction(attack_fn, probe, probe_y)
        w = _checks.zero_gradient_warning(frac, use_bpda)
        if w:
            warnings.append(w)
    if preset != "adaptive" and (declared["stochastic"] or declared["gradient_masking"]):
        kinds = [k for k in ("stochastic", "gradient_masking") if declared[k]]
        warnings.append(f"the model declares {' and '.join(kinds)} layers "
                        f"({', '.join(declared['stochastic'] + declared['gradient_masking'])}) but preset="
                        f"'{preset}' does not adapt to them. Fix: use preset='adaptive' (EOT / BPDA).")

    plan = _plan(preset, eps, norm, steps, num_classes, eot_samples, random_samples, use_bpda)
    per_attack = {}
    gradient_robust = None
    for name, fn, cfg, bpda in plan:
        if name == "random-search":
            gradient_robust = robust.copy()
        idx = np.flatnonzero(robust) if cascade else np.arange(len(x_np))
        t0 = time.perf_counter()
        broken_now = 0
        if eps > 0 and len(idx) and not (name == "random-search" and cfg["samples"] == 0):
            for start in range(0, len(idx), batch_size):
                b = idx[start:start + batch_size]
                xb = tf.constant(x_np[b])
                yb = tf.constant(y_np[b])
                with scope(bpda):
                    if fn is None:
                        xa = _checks.random_search(attack_fn, xb, yb, eps=eps, norm=norm,
                                                   samples=cfg["samples"], clip_min=clip_min,
                                                   clip_max=clip_max, seed=seed)
                    else:
                        xa = fn(attack_fn, xb, yb, seed)
                xa = xa.numpy()
                pred = predict_labels(attack_fn, xa, batch_size=batch_size)
                ok = pred == y_np[b]
                newly = robust[b] & ~ok
                broken_now += int(newly.sum())
                # keep the breaking example for broken points, the latest attempt for robust ones
                update = newly | robust[b]
                adversarial[b[update]] = xa[update]
                robust[b] &= ok
        seconds = time.perf_counter() - t0
        per_attack[name] = {"config": cfg, "attacked": int(len(idx)), "broken": broken_now,
                            "robust_accuracy": float(np.mean(robust)), "seconds": round(seconds, 4)}
        if verbose:
            print(f"{name}: attacked {len(idx)}, broke {broken_now}, robust accuracy "
                  f"{np.mean(robust):.4f} ({seconds:.1f} s)", flush=True)
        if name == "random-search" and checks:
            broken_by_noise = int(np.sum(gradient_robust & ~robust))
            w = _checks.gradient_free_warning(broken_by_noise, int(gradient_robust.sum()), name)
            if w:
                warnings.append(w)
    if checks and eps > 0 and clean_acc > 0 and math.isclose(float(np.mean(robust)), clean_acc) and \
            not per_attack.get("random-search", {}).get("broken"):
        warnings.append(f"no attack changed a single prediction at eps={eps:g}: either the model is "
                        "truly robust at this radius or its gradients are unusable. Fix: check eps is in "
                        "the input's scale (images in [0, 1] need eps like 0.03-0.3), and try "
                        "preset='adaptive' or a larger eps to see accuracy drop.")

    config = {
        "preset": preset, "eps": float(eps), "norm": norm, "clip_min": clip_min, "clip_max": clip_max,
        "batch_size": batch_size, "seed": seed, "cascade": cascade, "steps": steps,
        "eot_samples": eot_samples if use_eot else None, "bpda": use_bpda,
        "declared_layers": declared, "attacks": [name for name, _, _, _ in plan],
        "num_classes": num_classes,
        "versions": {"tfrobust": _version(), "tensorflow": tf.__version__},
    }
    if preset != "fast" and num_classes < 3:
        config["skipped"] = ["apgd-dlr (needs >= 3 classes)"]
    return RobustnessReport(clean_accuracy=clean_acc, robust_accuracy=float(np.mean(robust)),
                            per_attack=per_attack, config=config, warnings=warnings,
                            num_examples=int(len(x_np)), robust_mask=robust, adversarial=adversarial)


def _version():
    return __version__

