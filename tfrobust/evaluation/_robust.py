"""``robust_accuracy``: presets (data), a cascade runner, and a report that says how far to trust it.

The evaluation is an orchestration of three small parts:

- **specs**: a preset is an ordered tuple of :class:`Stage` (an attack identifier for
  :func:`tfrobust.attacks.get`, without ``eps`` / ``norm``, plus whether it runs under BPDA or
  EOT); :func:`plan` resolves a preset for one model (number of classes, declared layers);
- **a runner**: :func:`run_cascade` runs the stages in order on the points still robust;
- **a report**: :class:`RobustnessReport`.
"""

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
from tfrobust.attacks import shared as C
from tfrobust.evaluation import _checks
from tfrobust.evaluation._accuracy import as_arrays, predict_labels
from tfrobust.utils import markdown_table

#: AutoAttack's rand version for stochastic models: APGD-CE and APGD-DLR, EOT over 20 passes, no
#: restarts (Croce & Hein 2020; auto-attack ``version='rand'``).
RAND_EOT_SAMPLES = 20


@dataclasses.dataclass(frozen=True)
class Stage:
    """One attack of a preset: an :func:`tfrobust.attacks.get` identifier without ``eps`` / ``norm``.

    Attributes:
      attack: e.g. ``{"name": "apgd-t", "steps": 100, "targets": 9}``.
      bpda: run inside :func:`tfrobust.attacks.bpda_scope` (gradient-masking layers' surrogates).
      eot: attack ``eot(model_fn, eot_samples)`` (gradients averaged over a random model's passes).
      restart: 0 for the first run of an attack; ``r > 0`` runs it again with the seed
        ``seed + r * RESTART_SEED_STRIDE`` (other random draws) on the points still robust.
    """

    attack: dict
    bpda: bool = False
    eot: bool = False
    restart: int = 0

    @property
    def label(self) -> str:
        name = self.attack["name"]
        return (name + ("-eot" if self.eot else "") + ("-bpda" if self.bpda else "")
                + (f"-restart{self.restart + 1}" if self.restart else ""))

    def seed(self, seed: int) -> int:
        """The seed this stage's attack runs with, for the evaluation's ``seed`` (itself for a first run)."""
        return seed if not self.restart else (seed + self.restart * RESTART_SEED_STRIDE) % 2**63


#: Seed offset between restarts of a stage (any restart r's draws differ from restart 0's).
RESTART_SEED_STRIDE = 1_000_003

#: Square runs for a model whose layers declare ``gradient_masking`` (``adaptive``): its gradient
#: attacks are unreliable by declaration, so the gradient-free attack gets the 5 restarts of ART's
#: default AutoAttack list (AutoAttack's own standard version runs Square once). Measured on the
#: k-WTA model of benchmarks/evaluation.py: ART's first Square restart alone left 172 of 500
#: points robust where one Square run of ours left 175 (docs/evaluation.md).
MASKING_SQUARE_RESTARTS = 5


#: The presets, as data. ``adaptive`` is resolved per model by :func:`plan`.
PRESETS = {
    # PGD-20 (step 2.5 eps / 20, random start, CE), then a cheap gradient-free check.
    "fast": (Stage({"name": "pgd", "steps": 20}), Stage({"name": "random-search", "samples": 10})),
    # AutoAttack's standard version without FAB-T and with untargeted APGD-DLR (see
    # docs/evaluation.md): APGD-CE, APGD-DLR, APGD-T (9 targets), Square (5000 queries, p_init 0.8).
    # APGD-DLR is the attack of ART's default AutoAttack list that broke the points APGD-CE + APGD-T
    # + Square left robust (benchmarks/evaluation.py); FAB-T broke none there.
    "standard": (Stage({"name": "apgd-ce", "steps": 100}),
                 Stage({"name": "apgd-dlr", "steps": 100}),
                 Stage({"name": "apgd-t", "steps": 100, "targets": 9}),
                 Stage({"name": "square", "queries": 5000, "p_init": 0.8})),
    # AutoAttack's standard version exactly: `standard` with FAB-T (9 targets, 100 steps) before
    # Square. What FAB-T adds to `standard` (points the other three leave robust) is measured by
    # benchmarks/evaluation.py and reported in docs/evaluation.md.
    "autoattack": (Stage({"name": "apgd-ce", "steps": 100}),
                   Stage({"name": "apgd-t", "steps": 100, "targets": 9}),
                   Stage({"name": "fab-t", "steps": 100, "targets": 9}),
                   Stage({"name": "square", "queries": 5000, "p_init": 0.8})),
    # Deterministic model: `standard`, the gradient attacks again under BPDA when a layer declares
    # gradient masking, and then Square with MASKING_SQUARE_RESTARTS restarts. Stochastic model:
    # AutoAttack's rand version (APGD-CE, APGD-DLR, EOT 20), also under BPDA when declared, then
    # random search on the EOT-averaged model.
    "adaptive": (Stage({"name": "apgd-ce", "steps": 100}),
                 Stage({"name": "apgd-dlr", "steps": 100}),
                 Stage({"name": "apgd-t", "steps": 100, "targets": 9}),
                 Stage({"name": "square", "queries": 5000, "p_init": 0.8})),
}
_RAND = (Stage({"name": "apgd-ce", "steps": 100}, eot=True),
         Stage({"name": "apgd-dlr", "steps": 100}, eot=True),
         Stage({"name": "random-search", "samples": 20}, eot=True))


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
        table = markdown_table(
            ["attack", "points attacked", "newly broken", "robust accuracy after", "seconds", "settings"],
            [[name, r["attacked"], r["broken"], f"{r['robust_accuracy']:.4f}", f"{r['seconds']:.2f}",
              ", ".join(f"{k}={v}" for k, v in r["config"].items())] for name, r in self.per_attack.items()])
        lines = [f"### Robust accuracy ({c['preset']} preset, {c['norm']} eps={c['eps']:g})", "",
                 f"- clean accuracy: **{self.clean_accuracy:.4f}** on {self.num_examples} examples",
                 f"- robust accuracy: **{self.robust_accuracy:.4f}** (correct under every attack below)", "",
                 table]
        lines += ["", f"Configuration: cascade={c['cascade']}, EOT samples={c['eot_samples']}, "
                      f"BPDA={c['bpda']}, clip=[{c['clip_min']:g}, {c['clip_max']:g}], seed={c['seed']}, "
                      f"batch_size={c['batch_size']}."]
        if self.warnings:
            lines += ["", "**Warnings**", ""] + [f"- {w}" for w in self.warnings]
        else:
            lines += ["", "No sanity warning was raised."]
        return "\n".join(lines) + "\n"


def plan(preset, *, num_classes, stochastic=False, gradient_masking=False, steps=None, queries=None,
         random_samples=None):
    """The ordered stages of ``preset`` for one model, with the skips it needs (and why).

    Args:
      preset: a name from :data:`PRESETS` or a sequence of :class:`Stage` / identifier dicts.
      num_classes: the model's number of logits (DLR needs 3, APGD-T 4; targets <= K - 1).
      stochastic: the model is random at inference (``adaptive``: the rand version with EOT).
      gradient_masking: a layer declares ``gradient_masking`` (``adaptive``: gradient attacks
        again under BPDA; the cascade keeps the per-example worst case).
      steps, queries, random_samples: overrides of the stages' ``steps`` / ``queries`` / ``samples``.

    Returns:
      ``(stages, skipped)``: a list of :class:`Stage` and a list of skip reasons.
    """
    if isinstance(preset, str):
        stages = list(_RAND if preset == "adaptive" and stochastic else PRESETS[preset])
        if preset == "adaptive" and gradient_masking:
            gradient = [st for st in stages if not attacks.get(st.attack, eps=0.0).gradient_free]
            free = [st for st in stages if st not in gradient]
            free = [dataclasses.replace(st, restart=r) for st in free
                    for r in range(MASKING_SQUARE_RESTARTS if st.attack["name"] == "square" else 1)]
            stages = gradient + [dataclasses.replace(st, bpda=True) for st in gradient] + free
    else:
        stages = [st if isinstance(st, Stage) else Stage(dict(st)) for st in preset]
    out, skipped = [], []
    for st in stages:
        a = dict(st.attack)
        name = a["name"]
        if name == "apgd-dlr" and num_classes < 3:
            skipped.append("apgd-dlr (needs >= 3 classes)")
            continue
        if name == "apgd-t":
            if num_classes < 4:
                skipped.append("apgd-t (needs >= 4 classes)")
                continue
            a["targets"] = min(a.get("targets", 9), num_classes - 1)
        if name == "fab-t":
            if num_classes < 2:
                skipped.append("fab-t (needs >= 2 classes)")
                continue
            a["targets"] = min(a.get("targets", 9), num_classes - 1)
        overrides = {"steps": steps, "queries": queries, "samples": random_samples}
        for key, value in overrides.items():
            if value is not None and key in a:
                a[key] = value
        if a.get("samples") == 0 or a.get("queries") == 0:  # a gradient-free stage switched off
            continue
        out.append(dataclasses.replace(st, attack=a))
    return out, skipped


@dataclasses.dataclass
class _State:
    """What the cascade carries from stage to stage."""

    x: np.ndarray
    y: np.ndarray
    robust: np.ndarray
    adversarial: np.ndarray


def run_cascade(stages, model_fn, state, *, eps, norm, clip_min, clip_max, seed, batch_size, eot_samples,
                cascade=True, verbose=False):
    """Run ``stages`` in order; each attacks the points every earlier one left robust (``cascade``).

    A point broken by a stage is judged on the model as evaluated (EOT-averaged logits when the
    stage uses EOT); ``state.robust`` and ``state.adversarial`` are updated in place.

    Returns:
      ``per_attack``: stage label -> ``{"config", "attacked", "broken", "robust_accuracy", "seconds"}``.
    """
    per_attack = {}
    for st in stages:
        attack = attacks.get(st.attack, eps=eps, norm=norm)
        fn = attacks.eot(model_fn, eot_samples) if st.eot else model_fn
        idx = np.flatnonzero(state.robust) if cascade else np.arange(len(state.x))
        t0 = time.perf_counter()
        broken_now = 0
        if eps > 0:
            for start in range(0, len(idx), batch_size):
                b = idx[start:start + batch_size]
                with attacks.bpda_scope() if st.bpda else contextlib.nullcontext():
                    xa = attack(fn, tf.constant(state.x[b]), tf.constant(state.y[b]), clip_min=clip_min,
                                clip_max=clip_max, seed=st.seed(seed))
                xa = np.asarray(xa)
                ok = predict_labels(fn, xa, batch_size=batch_size) == state.y[b]
                newly = state.robust[b] & ~ok
                broken_now += int(newly.sum())
                # keep the breaking example for broken points, the latest attempt for robust ones
                update = newly | state.robust[b]
                state.adversarial[b[update]] = xa[update]
                state.robust[b] &= ok
        seconds = time.perf_counter() - t0
        cfg = {k: v for k, v in attack.get_config().items() if k not in ("eps", "norm")}
        if st.eot:
            cfg["eot_samples"] = eot_samples
        if st.restart:
            cfg["restart"], cfg["seed"] = st.restart + 1, st.seed(seed)
        per_attack[st.label] = {"config": cfg, "attacked": int(len(idx)), "broken": broken_now,
                                "robust_accuracy": float(np.mean(state.robust)), "seconds": round(seconds, 4),
                                "gradient_free": attack.gradient_free}
        if verbose:
            print(f"{st.label}: attacked {len(idx)}, broke {broken_now}, robust accuracy "
                  f"{np.mean(state.robust):.4f} ({seconds:.1f} s)", flush=True)
    return per_attack


class _LogOfProbabilities:
    """``log(p)``: the logits of a softmax output up to a per-row constant.

    The conversion of :func:`tfrobust._validate.logits` (``action="convert"``), applied per call
    so that attacks differentiate through it.
    """

    def __init__(self, model_fn):
        self.model_fn = model_fn

    def __call__(self, x):
        return tf.math.log(tf.maximum(C.as_logits(self.model_fn(x)), 1e-30))


def robust_accuracy(model_fn, x, y=None, *, eps, norm="linf", preset="fast", batch_size=256, model=None,
                    clip_min=0.0, clip_max=1.0, steps=None, queries=None, eot_samples=20,
                    random_samples=None, cascade=True, seed=0, checks=True, probabilities="refuse",
                    verbose=False) -> RobustnessReport:
    """Robust accuracy under an attack cascade, with the configuration and sanity warnings.

    Presets (:data:`PRESETS`, next to AutoAttack's versions in ``docs/evaluation.md``):

    - ``"fast"``: PGD-20 (step ``2.5 eps / 20``, random start, CE), then a random search (10).
    - ``"standard"``: APGD-CE (100 steps), APGD-DLR (100 steps, untargeted; skipped with < 3
      classes), APGD-T (100 steps, 9 target classes, at most ``K - 1``; skipped with < 4
      classes), Square (5000 queries): AutoAttack's standard version without FAB-T, plus the
      untargeted APGD-DLR of AutoAttack's original list.
    - ``"autoattack"``: AutoAttack's standard version exactly (APGD-CE, APGD-T, FAB-T, Square).
    - ``"adaptive"``: for a model that is random at inference (declared ``stochastic`` layers, or
      outputs that change between identical calls) AutoAttack's rand version: APGD-CE and
      APGD-DLR with EOT over ``eot_samples`` passes (default 20), no restarts, then a random
      search on the averaged model; otherwise the ``standard`` attacks. When a layer declares
      ``gradient_masking``, the gradient attacks run again under BPDA
      (:func:`tfrobust.attacks.bpda_scope`) and the worst case counts, and Square runs
      :data:`MASKING_SQUARE_RESTARTS` (5) times with other seeds on the points still robust
      (``square``, ``square-restart2``, ...), as in ART's default AutoAttack list: on such a
      model the gradient-free attack is the reliable one.
    - or a sequence of :class:`Stage` / identifier dicts (a custom cascade).

    With ``cascade=True`` each attack only runs on the points every earlier attack left robust
    (the result equals the per-example worst case); ``cascade=False`` attacks every point with
    every attack (same result, more work). The robust accuracy is

        ``1/N sum_i 1[f(x_i) = y_i and f(A_k(x_i)) = y_i for every attack k]``.

    Every attack runs in the data's own range ``[clip_min, clip_max]`` (e.g. ``[0, 255]`` or
    ``[-1, 1]``; ``eps`` is in the same units).

    Sanity checks (``checks=True``), each warning naming its fix: inputs with all-zero gradients,
    outputs that change between identical calls, a gradient-free attack (Square, random search)
    breaking points the gradient attacks left robust, and nothing moving at all.

    Args:
      model_fn: callable mapping float images [N, ...] to logits [N, K].
      x: float images in ``[clip_min, clip_max]`` (NumPy array or tensor), or a ``tf.data.Dataset``
        of ``(images, labels)`` batches (then ``y`` is None).
      y: labels [N] or one-hot [N, K], in ``[0, K)``.
      eps: perturbation radius (0 gives the clean accuracy).
      norm: ``"linf"`` or ``"l2"``.
      preset: ``"fast"``, ``"standard"``, ``"autoattack"``, ``"adaptive"`` or a sequence of stages.
      batch_size: examples per attack batch.
      model: the Keras model / ``tf.Module`` to inspect for ``stochastic`` / ``gradient_masking``
        layers (and whose input shape ``x`` must have) when ``model_fn`` is a wrapper.
      clip_min: lower bound of valid inputs.
      clip_max: upper bound of valid inputs.
      steps: override the gradient attacks' steps.
      queries: override Square's queries.
      eot_samples: forward passes averaged by EOT (adaptive preset, stochastic model).
      random_samples: override the random search's samples (0 drops it).
      cascade: attack only the points still robust.
      seed: seed of the attacks' random starts (reproducible evaluations).
      checks: run the sanity checks.
      probabilities: what to do when the outputs look like probabilities (every row
        non-negative, summing to 1): ``"refuse"`` (default) raises ``ValueError``, because the
        attacks' losses would be meaningless; ``"convert"`` evaluates ``log(p)`` instead (the
        logits up to a per-row constant: same arg-max, CE and DLR losses) and says so in a warning.
      verbose: print one line per stage.

    Returns:
      A :class:`RobustnessReport`.

    Raises:
      ValueError / TypeError: for bad arguments, naming them (images of another shape than the
        model's input, labels outside its classes, probability outputs with ``"refuse"``, ...).

    Example:
      >>> report = robust_accuracy(model, x_test[:1000], y_test[:1000], eps=0.1, preset="standard")
      >>> print(report.robust_accuracy); open("robust.md", "w").write(report.to_markdown())

    References:
      Croce & Hein, Reliable Evaluation of Adversarial Robustness with an Ensemble of Diverse
      Parameter-free Attacks, ICML 2020, https://arxiv.org/abs/2003.01690;
      Athalye et al., Obfuscated Gradients Give a False Sense of Security, ICML 2018,
      https://arxiv.org/abs/1802.00420
    """
    config = _check_arguments(model_fn, eps=eps, norm=norm, preset=preset, batch_size=batch_size,
                              clip_min=clip_min, clip_max=clip_max, steps=steps, queries=queries,
                              eot_samples=eot_samples, random_samples=random_samples, cascade=cascade,
                              seed=seed, checks=checks, probabilities=probabilities)
    eps, clip_min, clip_max = config["eps"], config["clip_min"], config["clip_max"]
    inspect_target = model if model is not None else model_fn
    x_np, y_raw = as_arrays(x, y)
    x_np = V.images(x_np, clip_min=clip_min, clip_max=clip_max, model=C.inner_model(inspect_target))
    probe = x_np[:min(len(x_np), batch_size, 64)]
    probe_logits = C.as_logits(model_fn(tf.constant(probe)))
    num_classes = int(probe_logits.shape[1])
    y_np = V.labels(y_raw, n=len(x_np), num_classes=num_classes)
    warnings = []
    if V.logits(probe_logits, action=probabilities) is not probe_logits:
        model_fn = _LogOfProbabilities(model_fn)
        warnings.append("model outputs look like probabilities; evaluated on their log (the logits up "
                        "to a per-row constant) as probabilities='convert' asked. Fix: return logits.")

    declared = attacks.inspect_model(inspect_target)
    random_warning = _checks.check_randomness(model_fn, probe)[1] if checks else None
    stochastic = bool(declared["stochastic"]) or random_warning is not None
    use_eot = preset == "adaptive" and stochastic
    use_bpda = preset == "adaptive" and bool(declared["gradient_masking"])
    if random_warning and not use_eot:
        warnings.append(random_warning)
    elif random_warning and not declared["stochastic"]:
        warnings.append("model outputs change between identical calls but no layer declares "
                        f"`stochastic = True`; EOT ({eot_samples} samples) was enabled from the observed "
                        "randomness. Fix: declare the random layers `stochastic = True` so every "
                        "evaluation adapts to them.")
    stages, skipped = plan(preset, num_classes=num_classes, stochastic=use_eot, gradient_masking=use_bpda,
                           steps=steps, queries=queries, random_samples=random_samples)
    judge_fn = attacks.eot(model_fn, eot_samples) if use_eot else model_fn
    if checks:
        with attacks.bpda_scope() if use_bpda else contextlib.nullcontext():
            frac = _checks.zero_gradient_fraction(judge_fn, probe, y_np[:len(probe)])
        w = _checks.zero_gradient_warning(frac, use_bpda)
        if w:
            warnings.append(w)
    if preset != "adaptive" and (declared["stochastic"] or declared["gradient_masking"]):
        kinds = [k for k in ("stochastic", "gradient_masking") if declared[k]]
        warnings.append(f"the model declares {' and '.join(kinds)} layers "
                        f"({', '.join(declared['stochastic'] + declared['gradient_masking'])}) but preset="
                        f"'{preset}' does not adapt to them. Fix: use preset='adaptive' (EOT / BPDA).")

    clean_pred = predict_labels(judge_fn, x_np, batch_size=batch_size)
    state = _State(x=x_np, y=y_np, robust=clean_pred == y_np, adversarial=x_np.copy())
    clean_acc = float(np.mean(state.robust))
    per_attack = run_cascade(stages, model_fn, state, eps=eps, norm=norm, clip_min=clip_min,
                             clip_max=clip_max, seed=seed, batch_size=batch_size,
                             eot_samples=eot_samples, cascade=cascade, verbose=verbose)
    robust_acc = float(np.mean(state.robust))
    if checks:
        warnings += _report_warnings(per_attack, eps, clean_acc, robust_acc)
    config.update({
        "preset": preset if isinstance(preset, str) else "custom",
        "eot_samples": eot_samples if use_eot else None,
        "bpda": use_bpda, "declared_layers": declared, "attacks": [st.label for st in stages],
        "stages": [{"attack": st.attack, "bpda": st.bpda, "eot": st.eot} for st in stages],
        "num_classes": num_classes, "versions": {"tfrobust": __version__, "tensorflow": tf.__version__},
    })
    if skipped:
        config["skipped"] = skipped
    return RobustnessReport(clean_accuracy=clean_acc, robust_accuracy=robust_acc, per_attack=per_attack,
                            config=config, warnings=warnings, num_examples=int(len(x_np)),
                            robust_mask=state.robust, adversarial=state.adversarial)


def _check_arguments(model_fn, *, eps, norm, preset, batch_size, clip_min, clip_max, steps, queries,
                     eot_samples, random_samples, cascade, seed, checks, probabilities):
    """Every scalar argument of :func:`robust_accuracy`, checked once; returns the config record."""
    C.check_model_fn(model_fn)
    if isinstance(preset, str):
        V.choice("preset", preset, tuple(PRESETS))
    elif not isinstance(preset, (list, tuple)) or not preset:
        raise TypeError("`preset` must be a preset name or a non-empty sequence of stages. "
                        f"Received: preset={preset!r}")
    clip_min, clip_max = V.clip_range(clip_min, clip_max)
    seed = V.seed(seed)
    if seed is None:
        raise ValueError("`seed` must be an int for a reproducible evaluation. Received: seed=None")
    return {
        "eps": V.number("eps", eps, minimum=0.0), "norm": V.choice("norm", norm, C.NORMS),
        "clip_min": clip_min, "clip_max": clip_max, "seed": seed,
        "batch_size": V.integer("batch_size", batch_size, minimum=1),
        "steps": None if steps is None else V.integer("steps", steps, minimum=1),
        "queries": None if queries is None else V.integer("queries", queries, minimum=0),
        "random_samples": None if random_samples is None else V.integer("random_samples", random_samples,
                                                                        minimum=0),
        "eot_samples_requested": V.integer("eot_samples", eot_samples, minimum=1),
        "cascade": V.boolean("cascade", cascade), "checks": V.boolean("checks", checks),
        "probabilities": V.choice("probabilities", probabilities, ("refuse", "convert")),
    }


def _report_warnings(per_attack, eps, clean_acc, robust_acc):
    """Warnings read off the cascade: gradient-free attacks beating gradient ones; nothing moved."""
    warnings = []
    for name, r in per_attack.items():
        if r["gradient_free"]:
            w = _checks.gradient_free_warning(r["broken"], r["attacked"], name)
            if w:
                warnings.append(w)
    if eps > 0 and clean_acc > 0 and math.isclose(robust_acc, clean_acc):
        warnings.append(f"no attack changed a single prediction at eps={eps:g}: either the model is "
                        "truly robust at this radius or its gradients are unusable. Fix: check eps is in "
                        "the input's scale (images in [0, 1] need eps like 0.03-0.3), and try "
                        "preset='adaptive' or a larger eps to see accuracy drop.")
    return warnings
