"""Robust accuracy of a deployed model (a ``.tflite`` run by its interpreter), attacked as deployed.

A transferred attack (examples crafted on the Keras model, replayed on the ``.tflite``) is only an
upper bound on the deployed model's robust accuracy: quantization moves decision boundaries and
hides gradients, so int8 models look "more robust" than they are (Costa & Pinto 2024). Here the
deployed decision function itself judges every step of every attack.
"""

from __future__ import annotations

import contextlib
import math
import time

import numpy as np
import tensorflow as tf

from tfrobust import _validate as V
from tfrobust import attacks
from tfrobust._version import __version__
from tfrobust.attacks import shared as C
from tfrobust.evaluation._robust import RobustnessReport, robust_accuracy
from tfrobust.tflite_tools import BinaryCProgram, BitpackRunner

COMPONENTS = ("transfer", "apgd-ce", "apgd-dlr", "apgd-t", "square")


def _call_source(source, x):
    """Logits of the source model (Keras models in inference mode; any other callable as is)."""
    if hasattr(source, "layers") and hasattr(source, "predict"):
        return C.as_logits(source(x, training=False))
    return C.as_logits(source(x))


class ThroughInterpreter:
    """A ``model_fn`` whose value is the deployed model's and whose gradient is the source model's.

    Backward Pass Differentiable Approximation (Athalye et al. 2018) with the source (float or QAT)
    Keras model as the differentiable approximation of the deployed file::

        forward:  f(x) = deployed(x)                 (the interpreter's dequantized logits)
        backward: df/dx := d source(x) / dx          (vector-Jacobian product of the source)

    A gradient attack run on it (:func:`tfrobust.attacks.apgd`) steps along the source model's
    gradients, but every loss value, every "fooled" decision and every checkpoint is the deployed
    file's. Inside a graph the interpreter runs through ``tf.numpy_function`` (a
    :class:`~tfrobust.tflite_tools.TFLiteModel` does this itself).

    Args:
      deployed: callable float images -> logits (e.g. a ``TFLiteModel``); needs no gradient.
      source: the differentiable model the file came from (a Keras model or any ``model_fn``).

    Example:
      >>> fn = ThroughInterpreter(TFLiteModel("model_int8.tflite"), keras_model)  # doctest: +SKIP
      >>> x_adv = attacks.apgd(fn, x, y, eps=0.1)  # judged by the interpreter at every step
    """

    def __init__(self, deployed, source):
        self.deployed = C.check_model_fn(deployed)
        self.source = C.check_model_fn(source)

    def __call__(self, x):
        deployed, source = self.deployed, self.source

        @tf.custom_gradient
        def through(z):
            value = C.as_logits(deployed(z))

            def grad(upstream):
                with tf.GradientTape() as tape:
                    tape.watch(z)
                    s = _call_source(source, z)
                return tape.gradient(s, z, output_gradients=tf.cast(upstream, s.dtype))

            return tf.identity(value), grad

        return through(tf.convert_to_tensor(x, tf.float32))

    def __repr__(self):
        return f"ThroughInterpreter({self.deployed!r}, source={getattr(self.source, 'name', self.source)!r})"


def _deployed_logits(deployed, x, batch_size):
    outs = [np.asarray(C.as_logits(deployed(x[s:s + batch_size]))) for s in range(0, len(x), batch_size)]
    return np.concatenate(outs, 0)


def _project(x, x_adv, eps, norm, lo, hi):
    """Project candidates onto the eps-ball around ``x`` and the clip range (float32, NumPy)."""
    d = x_adv.astype(np.float32) - x
    if norm == "linf":
        d = np.clip(d, -eps, eps)
    else:
        n = np.sqrt(np.sum(d.reshape(len(d), -1).astype(np.float64) ** 2, axis=1))
        factor = np.minimum(1.0, eps / np.maximum(n, 1e-12)).astype(np.float32)
        d = d * factor.reshape(-1, *([1] * (d.ndim - 1)))
    return np.clip(x + d, lo, hi).astype(np.float32)


def _grid_radius(eps, norm, quantization):
    """The radius the attacks search: for L-inf on quantized inputs the whole input steps inside
    ``eps``, ``floor(eps / scale) . scale`` (``eps`` itself when it is below one step); else ``eps``."""
    if quantization is None or norm != "linf" or eps <= 0:
        return eps
    scale = float(quantization[0])
    steps = math.floor(eps / scale + 1e-4)
    return float(steps * scale) if steps >= 1 else eps


def _snap_to_inputs(x, cand, eps, norm, lo, hi, quantization):
    """Move projected candidates onto the deployed model's input grid, inside the ball and clip range.

    A deployed model with quantized inputs (``quantization = (scale, zero_point, qmin, qmax)``, e.g.
    the ``uint8`` pixels of a bit-packed C program) sees ``round(x / scale)``, which may lie half a
    step outside the eps-ball even when the float candidate is inside (eps = 0.1 is 25.5 pixel
    steps of 1/255). Each candidate is replaced by a grid point the model receives unchanged: L-inf,
    the nearest grid value inside ``[x - eps, x + eps]`` and the clip range per pixel (the pixel of
    ``x`` itself where the interval holds no grid value); L2, the nearest grid point, or, when that
    leaves the ball, the grid point rounded towards ``x``. Exact when ``x`` lies on the grid (pixel
    images / 255); the caller's ball check still rejects anything outside.
    """
    scale, zp, qmin, qmax = (float(v) for v in quantization)
    tol = 1e-4  # in grid steps: far below the ball check's own tolerance

    def to_q(v):
        return v.astype(np.float64) / scale + zp

    def from_q(q):
        return ((q - zp) * scale).astype(np.float32)

    def round_half_away(v):
        return np.trunc(v + np.copysign(0.5, v))

    q_lo = max(qmin, math.ceil(lo / scale + zp - tol))
    q_hi = min(qmax, math.floor(hi / scale + zp + tol))
    q = np.clip(round_half_away(to_q(cand)), q_lo, q_hi)
    if norm == "linf":
        a = np.maximum(np.ceil(to_q(x - np.float64(eps)) - tol), q_lo)
        b = np.minimum(np.floor(to_q(x + np.float64(eps)) + tol), q_hi)
        own = np.clip(round_half_away(to_q(x)), q_lo, q_hi)
        return from_q(np.where(a <= b, np.clip(q, a, b), own))
    out = from_q(q)
    size = np.sqrt(np.sum((out.astype(np.float64) - x).reshape(len(x), -1) ** 2, 1))
    over = size > eps * (1 + 1e-5)
    if over.any():
        q_x = np.clip(round_half_away(to_q(x[over])), q_lo, q_hi)
        toward = np.clip(q_x + np.trunc(to_q(cand[over]) - q_x), q_lo, q_hi)
        out[over] = from_q(toward)
    return out


def _in_ball(x, x_adv, eps, norm, lo, hi):
    """Per example: ``|x_adv - x| <= eps`` (float tolerance) and ``x_adv`` inside the clip range."""
    d = (x_adv.astype(np.float64) - x).reshape(len(x), -1)
    size = np.abs(d).max(1) if norm == "linf" else np.sqrt(np.sum(d ** 2, 1))
    inside = (x_adv.reshape(len(x), -1).min(1) >= lo) & (x_adv.reshape(len(x), -1).max(1) <= hi)
    return (size <= eps * (1 + 1e-5) + 1e-6) & inside


def _target_classes(logits, y, k):
    """AutoAttack's APGD-T targets: the ``k`` highest-scoring classes other than ``y``, in order."""
    order = np.argsort(-logits, axis=1, kind="stable")
    others = np.array([row[row != label] for row, label in zip(order, y)])
    return others[:, :k]


def robust_accuracy_deployed(deployed, source_model, x, y, *, eps, norm="linf", steps=100, targets=3,
                             square_queries=5000, source_report=None, transfer_examples=None,
                             batch_size=256, clip_min=0.0, clip_max=1.0, seed=0, cascade=True,
                             verbose=False) -> RobustnessReport:
    """Robust accuracy of a deployed model: the per-example worst case of three kinds of attack.

    Components, each judged by the deployed model itself (``deployed``, e.g. a
    :class:`~tfrobust.tflite_tools.TFLiteModel` of a float, int8 or binary-int8 ``.tflite``):

    The deployed model may also be the bit-packed binary C program, compiled once and called on
    the host (:class:`~tfrobust.tflite_tools._bitpack_runner.BitpackRunner`, or a
    ``BinaryCProgram`` from ``generate_c``, compiled here); its source is the binary Keras model
    (straight-through gradients as the differentiable approximation).

    1. ``transfer``: the source model's ``standard``-preset adversarial examples
       (:func:`robust_accuracy` on ``source_model``, or ``source_report`` / ``transfer_examples``
       when already computed) replayed on the deployed model.
    2. ``apgd-ce``, ``apgd-dlr``, ``apgd-t`` (targeted DLR on the ``targets`` highest other
       classes, as AutoAttack's APGD-T): APGD *through the interpreter* (:class:`ThroughInterpreter`:
       forward = the deployed model's dequantized logits, backward = the source model's gradient,
       BPDA), so every step and every success is the deployed decision's. The source's BPDA
       surrogates are used when it declares ``gradient_masking`` layers.
    3. ``square``: :func:`tfrobust.attacks.square` (``square_queries`` queries, AutoAttack's
       settings) on the deployed model alone, no gradient at all.

    Every counted success is re-checked: the candidate is projected onto the eps-ball and the clip
    range, run once more on ``deployed``, and counted only if the deployed model misclassifies it
    and it lies in the ball. When ``deployed`` declares quantized inputs (an ``input_quantization``
    attribute ``(scale, zero_point, qmin, qmax)``: a full-integer ``TFLiteModel``'s int8 inputs, the
    C program's ``uint8`` pixels), the candidate
    is first moved onto that input grid inside the ball, so the program is confirmed on exactly the
    input it receives; the attacks then search the largest grid-aligned L-inf ball inside the
    eps-ball (``floor(eps / scale)`` steps, ``config["attack_eps"]``), whose iterates the file
    judges unchanged. The robust accuracy is

        ``1/N sum_i 1[d(x_i) = y_i and d(A_k(x_i)) = y_i for every component k]``

    (``d`` = the deployed model's arg-max). ``transfer`` always runs on every point, so the report
    also gives the transfer-only figure and how far it overstates the worst case
    (``config["transfer_only_robust_accuracy"]``, ``config["transfer_overstatement"]``); with
    ``cascade=True`` the other components attack only the points still robust.

    Args:
      deployed: callable float images -> logits of the deployed model (a ``TFLiteModel``; wrap a
        ``.tflite`` path with ``tfrobust.tflite_tools.TFLiteModel(path)``; a bit-packed C program
        with ``BitpackRunner(path_or_program)``), or a ``BinaryCProgram``.
      source_model: the Keras model the file came from (the float or QAT model), for gradients and
        transfer.
      x: float images in ``[clip_min, clip_max]``.
      y: labels [N] or one-hot [N, K].
      eps: perturbation radius (>= 0).
      norm: ``"linf"`` or ``"l2"``.
      steps: APGD iterations per run (AutoAttack: 100).
      targets: APGD-T target classes (AutoAttack: 9; 0 skips APGD-T; needs >= 4 classes).
      square_queries: Square's query budget per example (AutoAttack: 5000; 0 skips Square).
      source_report: a :class:`RobustnessReport` of ``robust_accuracy(source_model, x, y, ...,
        preset="standard")`` on the same ``x`` (reused for the transfer component).
      transfer_examples: adversarial examples to replay instead (same shape as ``x``).
      batch_size: examples per attack batch.
      clip_min: lower bound of valid inputs.
      clip_max: upper bound of valid inputs.
      seed: seed of every attack's randomness.
      cascade: attack only points still robust (same worst case, less work).
      verbose: print one line per component.

    Returns:
      A :class:`RobustnessReport` (``config["preset"] == "deployed"``) whose ``per_attack`` lists
      the components in order, ``adversarial`` holds the confirmed breaking example per broken
      point and ``robust_mask`` the points that survived every component.

    Raises:
      ValueError / TypeError: for bad arguments, naming them.

    Example:
      >>> lite = TFLiteModel("model_int8.tflite")  # doctest: +SKIP
      >>> report = robust_accuracy_deployed(lite, keras_model, x_test[:500], y_test[:500], eps=0.1)
      >>> report.robust_accuracy, report.config["transfer_overstatement"]

    References:
      Croce & Hein, AutoAttack, ICML 2020, https://arxiv.org/abs/2003.01690;
      Andriushchenko et al., Square Attack, ECCV 2020, https://arxiv.org/abs/1912.00049;
      Athalye et al., Obfuscated Gradients, ICML 2018, https://arxiv.org/abs/1802.00420;
      Costa & Pinto, arXiv 2404.05688 (2024)
    """
    if isinstance(deployed, (str, bytes, bytearray)) or hasattr(deployed, "__fspath__"):
        raise TypeError("`deployed` must be a callable model (images -> logits); wrap a .tflite file with "
                        "`tfrobust.tflite_tools.TFLiteModel(path)` and a bit-packed C program (.c) with "
                        "`tfrobust.tflite_tools._bitpack_runner.BitpackRunner(path)`. Received: deployed of "
                        f"type {type(deployed).__name__}")
    if isinstance(deployed, BinaryCProgram):
        deployed = BitpackRunner(deployed)  # compiled once here
    C.check_model_fn(deployed)
    C.check_model_fn(source_model)
    eps = V.number("eps", eps, minimum=0.0)
    norm = V.choice("norm", norm, C.NORMS)
    steps = V.integer("steps", steps, minimum=1)
    targets = V.integer("targets", targets, minimum=0)
    square_queries = V.integer("square_queries", square_queries, minimum=0)
    batch_size = V.integer("batch_size", batch_size, minimum=1)
    lo, hi = V.clip_range(clip_min, clip_max)
    seed = V.seed(seed)
    if seed is None:
        raise ValueError("`seed` must be an int for a reproducible evaluation. Received: seed=None")
    cascade = V.boolean("cascade", cascade)
    verbose = V.boolean("verbose", verbose)
    x_np = V.images(x, clip_min=lo, clip_max=hi)
    y_np = V.labels(y, n=len(x_np))
    if source_report is not None and transfer_examples is not None:
        raise ValueError("Pass `source_report` or `transfer_examples`, not both. Received: both")
    if source_report is not None:
        if not isinstance(source_report, RobustnessReport) or source_report.adversarial is None:
            raise TypeError("`source_report` must be the RobustnessReport of robust_accuracy(source_model, "
                            f"x, y, ...). Received: source_report of type {type(source_report).__name__}")
        rc = source_report.config
        if rc.get("norm") != norm or not math.isclose(rc.get("eps", -1.0), eps):
            raise ValueError("`source_report` must come from the same eps and norm. Received: "
                             f"source_report eps={rc.get('eps')}, norm={rc.get('norm')!r}")
        transfer_examples = source_report.adversarial
    if transfer_examples is not None:
        transfer_examples = V.finite_array("transfer_examples", transfer_examples, dtype=np.float32)
        if transfer_examples.shape != x_np.shape:
            raise ValueError("`transfer_examples` must have the shape of `x`. Received: "
                             f"transfer_examples.shape={transfer_examples.shape}, x.shape={x_np.shape}")

    quantization = getattr(deployed, "input_quantization", None)
    warnings = []
    logits0 = _deployed_logits(deployed, x_np, batch_size)
    num_classes = int(logits0.shape[1])
    V.labels(y_np, num_classes=num_classes)
    clean = np.argmax(logits0, 1) == y_np
    robust = clean.copy()
    adversarial = x_np.copy()
    source_clean = np.argmax(np.concatenate(
        [np.asarray(_call_source(source_model, tf.constant(x_np[s:s + batch_size])))
         for s in range(0, len(x_np), batch_size)]), 1)
    per_attack = {}
    rejected = [0]

    def confirm(idx, candidates):
        """Project, re-run on the deployed model; returns the confirmed-broken mask over ``idx``."""
        cand = _project(x_np[idx], np.asarray(candidates), eps, norm, lo, hi)
        if quantization is not None:
            cand = _snap_to_inputs(x_np[idx], cand, eps, norm, lo, hi, quantization)
        pred = np.argmax(_deployed_logits(deployed, cand, batch_size), 1)
        ok_ball = _in_ball(x_np[idx], cand, eps, norm, lo, hi)
        rejected[0] += int(np.sum(~ok_ball & (pred != y_np[idx])))
        broken = (pred != y_np[idx]) & ok_ball
        return broken, cand

    def record(name, cfg, idx, broken, cand, seconds, alone=None):
        newly = robust[idx] & broken
        adversarial[idx[newly]] = cand[newly]
        robust[idx] &= ~broken
        per_attack[name] = {"config": cfg, "attacked": int(len(idx)), "broken": int(newly.sum()),
                            "robust_accuracy": float(np.mean(robust)), "seconds": round(seconds, 4)}
        if alone is not None:
            per_attack[name]["alone_robust_accuracy"] = alone
        if verbose:
            print(f"{name}: attacked {len(idx)}, broke {int(newly.sum())}, robust accuracy "
                  f"{np.mean(robust):.4f} ({seconds:.1f} s)", flush=True)

    # 1. transfer of the source model's standard-preset examples (always on every point)
    t0 = time.perf_counter()
    source_robust = None
    if transfer_examples is None:
        source_report = robust_accuracy(source_model, x_np, y_np, eps=eps, norm=norm, preset="standard",
                                        batch_size=batch_size, model=source_model, clip_min=lo,
                                        clip_max=hi, seed=seed, checks=False)
        transfer_examples = source_report.adversarial
    if source_report is not None:
        source_robust = source_report.robust_accuracy
    all_idx = np.arange(len(x_np))

    def stage_points():
        """The points a stage attacks (the still-robust ones in a cascade, else every clean one),
        its per-point success flags, its best candidates so far, and its start time."""
        idx = np.flatnonzero(robust) if cascade else np.flatnonzero(clean)
        return idx, np.zeros(len(idx), bool), x_np[idx].copy(), time.perf_counter()

    def alone_accuracy(idx, hit):
        """Robust accuracy under this stage alone (None in a cascade, where it is not measured)."""
        return None if cascade else float(np.mean(clean & ~np.isin(all_idx, idx[hit])))

    broken, cand = confirm(all_idx, transfer_examples)
    transfer_only = float(np.mean(clean & ~broken))
    record("transfer", {"source_preset": "standard", "source_robust_accuracy": source_robust}, all_idx,
           broken, cand, time.perf_counter() - t0, alone=transfer_only)

    # The attacks search the largest grid-aligned L-inf ball inside the eps-ball when the file takes
    # quantized inputs: for x on the grid (pixels / 255), x + delta with |delta| <= k steps rounds
    # to at most k steps away, so the file judges the attack's own iterates inside the ball. With
    # eps itself (25.5 steps at 0.1), an iterate on the boundary reaches the file 26 steps away,
    # and its success is lost when confirm() moves it back inside the ball.
    attack_eps = _grid_radius(eps, norm, quantization)

    # 2. APGD through the interpreter (BPDA with the source's gradients)
    declared = attacks.inspect_model(source_model)
    bpda = bool(declared["gradient_masking"])
    through = ThroughInterpreter(deployed, source_model)
    runs = [("apgd-ce", dict(loss="ce")), ("apgd-dlr", dict(loss="dlr"))]
    skipped = []
    if num_classes < 3:
        runs.pop()
        skipped.append("apgd-dlr (needs >= 3 classes)")
    n_targets = min(targets, num_classes - 1)
    if n_targets and num_classes >= 4:
        runs.append(("apgd-t", dict(loss="dlr", targeted=True)))
    elif targets:
        skipped.append("apgd-t (needs >= 4 classes)")
    if eps == 0:
        runs = []
    for name, kw in runs:
        cfg = dict(steps=steps, norm=norm, backward="source gradient (BPDA)", **kw)
        if name == "apgd-t":
            cfg["targets"] = n_targets
        idx, hit, best, t0 = stage_points()
        for start in range(0, len(idx), batch_size):
            b = idx[start:start + batch_size]
            tgt = _target_classes(logits0[b], y_np[b], n_targets) if name == "apgd-t" else None
            for t in range(tgt.shape[1] if tgt is not None else 1):
                todo = ~hit[start:start + len(b)]
                if not todo.any():
                    break
                bb = b[todo]
                with attacks.bpda_scope() if bpda else contextlib.nullcontext():
                    if tgt is None:
                        xa = attacks.apgd(through, x_np[bb], y_np[bb], eps=attack_eps, steps=steps, norm=norm,
                                          clip_min=lo, clip_max=hi, seed=seed, **kw)
                    else:
                        xa = attacks.apgd(through, x_np[bb], tgt[todo, t], eps=attack_eps, steps=steps,
                                          norm=norm,
                                          clip_min=lo, clip_max=hi, seed=seed + t, **kw)
                ok, c = confirm(bb, xa)
                pos = start + np.flatnonzero(todo)
                best[pos] = np.where(ok.reshape(-1, *([1] * (c.ndim - 1))), c, best[pos])
                hit[pos] |= ok
        alone = alone_accuracy(idx, hit)
        record(name, cfg, idx, hit, best, time.perf_counter() - t0, alone)

    # 3. Square on the deployed model alone
    if square_queries and eps > 0:
        cfg = dict(queries=square_queries, p_init=0.8, norm=norm, loss="margin")
        idx, hit, best, t0 = stage_points()
        for start in range(0, len(idx), batch_size):
            b = idx[start:start + batch_size]
            xa = attacks.square(deployed, x_np[b], y_np[b], eps=attack_eps, norm=norm, queries=square_queries,
                                clip_min=lo, clip_max=hi, seed=seed)
            ok, c = confirm(b, xa)
            hit[start:start + len(b)] = ok
            best[start:start + len(b)] = c
        alone = alone_accuracy(idx, hit)
        gradient_robust = int(len(idx)) if cascade else None
        record("square", cfg, idx, hit, best, time.perf_counter() - t0, alone)
        if cascade and per_attack["square"]["broken"]:
            warnings.append(
                f"Square (no gradients) broke {per_attack['square']['broken']} of the {gradient_robust} "
                "points the transfer and gradient attacks left robust: the source model's gradients are "
                "a poor guide to the deployed decision function (quantization or a changed layer), so "
                "gradient or transfer figures alone overstate its robustness. Fix: quote this worst "
                "case; raise square_queries to check it has converged.")

    worst = float(np.mean(robust))
    overstatement = transfer_only - worst
    if overstatement > 0:
        warnings.append("transfer alone overstates the deployed robust accuracy by "
                        f"{100 * overstatement:.1f} points ({transfer_only:.4f} vs {worst:.4f}): replayed "
                        "examples are an upper bound. "
                        "Fix: report the worst case over attacks run on the deployed file.")
    if rejected[0]:
        warnings.append(f"{rejected[0]} candidate(s) fooled the deployed model only outside the eps-ball or "
                        "clip range and were not counted. Fix: none needed; report it if it persists.")
    config = {
        "preset": "deployed", "deployed": repr(deployed),
        "input_quantization": None if quantization is None else [float(v) for v in quantization],
        "attack_eps": attack_eps,
        "eps": float(eps), "norm": norm, "clip_min": lo, "clip_max": hi,
        "batch_size": batch_size, "seed": seed, "cascade": cascade, "steps": steps, "eot_samples": None,
        "bpda": True, "source_bpda_surrogates": bpda, "declared_layers": declared,
        "attacks": list(per_attack), "num_classes": num_classes, "targets": n_targets,
        "square_queries": square_queries,
        "transfer_only_robust_accuracy": transfer_only, "transfer_overstatement": overstatement,
        "source_clean_accuracy": float(np.mean(source_clean == y_np)),
        "source_agreement": float(np.mean(source_clean == np.argmax(logits0, 1))),
        "source_standard_robust_accuracy": source_robust,
        "versions": {"tfrobust": __version__, "tensorflow": tf.__version__},
    }
    if skipped:
        config["skipped"] = skipped
    return RobustnessReport(clean_accuracy=float(np.mean(clean)), robust_accuracy=worst,
                            per_attack=per_attack, config=config, warnings=warnings,
                            num_examples=int(len(x_np)), robust_mask=robust, adversarial=adversarial)

