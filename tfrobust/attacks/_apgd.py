"""APGD-CE and APGD-DLR (Croce & Hein 2020): step-size-free PGD with momentum and checkpoints."""

from __future__ import annotations

import math

import tensorflow as tf

from tfrobust import _validate as V
from tfrobust.attacks import _common as C

_ALPHA = 0.75  # momentum weight of the new step
_RHO = 0.75  # fraction of successful steps below which the step size is halved


def checkpoints(steps: int) -> list[int]:
    """The iterations ``w_j = ceil(p_j * steps)`` at which APGD may halve its step size.

    ``p_0 = 0``, ``p_1 = 0.22``, ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``.
    """
    p = [0.0, 0.22]
    while p[-1] < 1.0:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    w = sorted({math.ceil(v * steps - 1e-9) for v in p if v <= 1.0})
    return [v for v in w if 0 < v < steps]


def _apgd_single(model_fn, x, y, target, eps, steps, clip_min, clip_max, rseed, *, norm, loss, targeted,
                 n_steps, eot_samples):
    """One APGD run from a random start; returns ``(x_out, fooled, obj_max)`` per example."""
    n = tf.shape(x)[0]
    shape_x = x.shape
    ckpt = tf.constant(checkpoints(n_steps) or [n_steps + 1], tf.int32)
    shape_n = tf.TensorShape([None])

    def clip_project(z):
        return tf.clip_by_value(x + C.project(z - x, eps, norm), clip_min, clip_max)

    def loss_and_grad(z):
        return C.loss_and_grad(model_fn, z, y, loss, targeted, eot_samples, target)

    x0 = tf.clip_by_value(x + C.random_delta(x, eps, norm, rseed), clip_min, clip_max)
    obj0, grad0, logits0 = loss_and_grad(x0)
    fooled0 = C.fooled(logits0, y, targeted)
    eta0 = tf.fill([n], 2.0) * eps  # initial step size 2 * eps

    state = dict(
        i=tf.constant(0), x_adv=x0, x_old=x0, grad=grad0, eta=eta0,
        x_max=x0, grad_max=grad0, obj_max=obj0, obj_prev=obj0,
        x_adv_best=x0, fooled=fooled0,
        increases=tf.zeros([n]), since_ckpt=tf.constant(0), last_ckpt=tf.constant(0),
        obj_max_at_ckpt=obj0, reduced_at_ckpt=tf.ones([n], tf.bool),
    )
    invariants = {k: (tf.TensorShape([]) if v.shape.rank == 0 else
                      (shape_x if v.shape.rank == shape_x.rank and k not in ("eta",) else shape_n))
                  for k, v in state.items()}

    def body(s):
        s = dict(s)
        i = s["i"]
        # Momentum step: z = P(x_k + eta dir(g)); x_{k+1} = P(x_k + a(z - x_k) + (1 - a)(x_k - x_{k-1}))
        a = tf.where(i > 0, _ALPHA, 1.0)
        eta_b = C.per_example(s["eta"], x)
        z = clip_project(s["x_adv"] + eta_b * C.ascent_direction(s["grad"], norm))
        x_new = clip_project(s["x_adv"] + a * (z - s["x_adv"]) + (1.0 - a) * (s["x_adv"] - s["x_old"]))
        obj, grad, logits = loss_and_grad(x_new)
        is_fooled = C.fooled(logits, y, targeted)
        newly = is_fooled & ~s["fooled"]
        s["x_adv_best"] = tf.where(C.per_example(newly, x), x_new, s["x_adv_best"])
        s["fooled"] = s["fooled"] | is_fooled
        s["increases"] = s["increases"] + tf.cast(obj > s["obj_prev"], tf.float32)
        improved = obj > s["obj_max"]
        imp_b = C.per_example(improved, x)
        s["x_max"] = tf.where(imp_b, x_new, s["x_max"])
        s["grad_max"] = tf.where(imp_b, grad, s["grad_max"])
        s["obj_max"] = tf.where(improved, obj, s["obj_max"])
        s["obj_prev"] = obj
        s["x_old"] = s["x_adv"]
        s["x_adv"] = x_new
        s["grad"] = grad
        step = i + 1
        at_ckpt = tf.reduce_any(tf.equal(ckpt, step))

        def checkpoint():
            window = tf.cast(step - s["last_ckpt"], tf.float32)
            cond1 = s["increases"] < _RHO * window
            cond2 = ~s["reduced_at_ckpt"] & (s["obj_max_at_ckpt"] >= s["obj_max"])
            halve = cond1 | cond2
            h_b = C.per_example(halve, x)
            return (tf.where(halve, s["eta"] / 2.0, s["eta"]),
                    tf.where(h_b, s["x_max"], s["x_adv"]),
                    tf.where(h_b, s["grad_max"], s["grad"]),
                    tf.zeros_like(s["increases"]), step, s["obj_max"], halve)

        def keep():
            return (s["eta"], s["x_adv"], s["grad"], s["increases"], s["last_ckpt"],
                    s["obj_max_at_ckpt"], s["reduced_at_ckpt"])

        (s["eta"], s["x_adv"], s["grad"], s["increases"], s["last_ckpt"], s["obj_max_at_ckpt"],
         s["reduced_at_ckpt"]) = tf.cond(at_ckpt, checkpoint, keep)
        s["i"] = step
        return (s,)

    (final,) = tf.while_loop(lambda s: s["i"] < steps, body, (state,), shape_invariants=(invariants,))
    # Per example: a misclassified iterate if one was found, else the highest-loss point.
    x_out = tf.where(C.per_example(final["fooled"], x), final["x_adv_best"], final["x_max"])
    return x_out, final["fooled"], final["obj_max"]


def _merge(best, run):
    """Keep per example the run that fools the model, else the one with the higher objective."""
    (b_x, b_fooled, b_obj), (r_x, r_fooled, r_obj) = best, run
    better = (r_fooled & ~b_fooled) | ((r_fooled == b_fooled) & (r_obj > b_obj))
    return (tf.where(C.per_example(better, b_x), r_x, b_x), b_fooled | r_fooled,
            tf.where(better, r_obj, b_obj))


def _restart_seed(seed, seed_given, index):
    return tf.stack([seed, tf.constant(1000 + index, seed.dtype)]) if seed_given else None


def _apgd_impl(model_fn, x, y, eps, steps, clip_min, clip_max, seed, *, norm, loss, targeted, restarts,
               has_y, seed_given, n_steps, eot_samples):
    if not has_y:
        y = tf.argmax(C.forward(model_fn, x, eot_samples), axis=1, output_type=tf.int32)
    n = tf.shape(x)[0]
    best = (x, tf.zeros([n], tf.bool), tf.fill([n], -math.inf))
    for r in range(restarts):
        run = _apgd_single(model_fn, x, y, None, eps, steps, clip_min, clip_max,
                           _restart_seed(seed, seed_given, r), norm=norm, loss=loss, targeted=targeted,
                           n_steps=n_steps, eot_samples=eot_samples)
        if restarts == 1:
            return run[0]
        best = _merge(best, run)
    return best[0]


def _apgd_t_impl(model_fn, x, y, eps, steps, clip_min, clip_max, seed, *, norm, targets, restarts, has_y,
                 seed_given, n_steps, eot_samples):
    clean = C.forward(model_fn, x, eot_samples)
    if not has_y:
        y = tf.argmax(clean, axis=1, output_type=tf.int32)
    n = tf.shape(x)[0]
    # Targets: the classes of the 2nd, 3rd, ... largest clean logits (AutoAttack's order).
    ranked = tf.math.top_k(clean, k=targets + 1).indices

    # One graph loop over the targets (not unrolled: a small graph that traces fast), which ends
    # early once every example is broken.
    def body(t, best_x, best_fooled, best_obj):
        best = (best_x, best_fooled, best_obj)
        for r in range(restarts):
            rseed = (tf.stack([seed, tf.cast(1000 + t * restarts + r, seed.dtype)]) if seed_given else None)
            run = _apgd_single(model_fn, x, y, tf.gather(ranked, t + 1, axis=1), eps, steps, clip_min,
                               clip_max, rseed, norm=norm, loss="dlr-targeted", targeted=False,
                               n_steps=n_steps, eot_samples=eot_samples)
            best = _merge(best, run)
        return (t + 1, *best)

    def cond(t, best_x, best_fooled, best_obj):
        return tf.logical_and(t < targets, tf.logical_not(tf.reduce_all(best_fooled)))

    best = (tf.constant(0), x, tf.zeros([n], tf.bool), tf.fill([n], -math.inf))
    per_example = tf.TensorShape([None])
    best = tf.while_loop(cond, body, best,
                         shape_invariants=(tf.TensorShape([]), x.shape, per_example, per_example))[1:]
    return best[0]


def _check_common(model_fn, eps, steps, norm, restarts, seed, clip_min, clip_max):
    """The argument checks APGD and APGD-T share (each validates its own extras after these)."""
    return (C.check_model_fn(model_fn), V.number("eps", eps, minimum=0.0, allow_tensor=True),
            V.integer("steps", steps, minimum=1), V.choice("norm", norm, C.NORMS),
            V.integer("restarts", restarts, minimum=1), V.seed(seed),
            *V.clip_range(clip_min, clip_max, allow_tensor=True))


def _launch(model_fn, name, impl, x, xw, yw, dtype, eps, steps, norm, restarts, seed, clip_min, clip_max,
            **static):
    """Run ``impl`` as one compiled graph (:func:`tfrobust.attacks._common.run`) and finalize."""
    static = dict(norm=norm, restarts=restarts, has_y=yw is not None, seed_given=seed is not None,
                  n_steps=steps, **static)
    if yw is None:
        yw = tf.zeros([0], tf.int32)
    args = (xw, yw, tf.cast(eps, tf.float32), tf.constant(steps, tf.int32), tf.cast(clip_min, tf.float32),
            tf.cast(clip_max, tf.float32), tf.constant(seed or 0, tf.int64))
    x_adv = C.run(model_fn, name, impl, static, args)
    return C.finalize(tf.convert_to_tensor(x), x_adv, eps, norm, clip_min, clip_max, dtype)


def apgd(model_fn, x, y=None, *, eps, steps=100, norm="linf", loss="ce", restarts=1, targeted=False,
         clip_min=0.0, clip_max=1.0, seed=None):
    """Auto-PGD (Croce & Hein 2020): PGD with momentum and an automatic step-size schedule.

    From a random start ``x_0`` and ``eta = 2 eps``, each iteration takes
    ``z = P(x_k + eta * sign(grad L(x_k)))`` (``g / |g|_2`` for L2) and
    ``x_{k+1} = P(x_k + 0.75 (z - x_k) + 0.25 (x_k - x_{k-1}))`` (no momentum on the first step),
    where ``P`` projects onto the eps-ball and the clip range. At the checkpoints
    ``w_j = ceil(p_j N)``, ``p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``,
    the per-example step size is halved and the iterate restarted from the best point found so far
    when (1) the loss increased in fewer than ``0.75 (w_j - w_{j-1})`` of the last steps, or (2)
    the step size was not halved at the previous checkpoint and the best loss has not improved
    since. With ``loss="ce"`` this is APGD-CE; with ``loss="dlr"`` APGD-DLR, whose loss
    ``-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)`` is invariant to shifts and rescaling of the
    logits. Returns per example the first misclassified iterate found, else the highest-loss one.

    Like :func:`~tfrobust.attacks.pgd` it is one ``tf.while_loop`` (cached ``tf.function`` when
    eager, inlined in a graph). Cost: ``steps + 1`` forward+backward passes per restart.

    Args:
      model_fn: callable mapping float images to logits (wrap with :func:`eot` if random).
      x: float images in ``[clip_min, clip_max]``.
      y: labels [N] (or one-hot); None uses the model's predictions; target classes if targeted.
      eps: radius of the ball (>= 0).
      steps: iterations N (int >= 1; AutoAttack uses 100).
      norm: ``"linf"`` or ``"l2"``.
      loss: ``"ce"`` or ``"dlr"`` (``"margin"`` also accepted).
      restarts: random restarts (int >= 1); per example the worst case is kept.
      targeted: make the model predict ``y``.
      clip_min: lower bound of valid inputs.
      clip_max: upper bound of valid inputs.
      seed: int for a reproducible random start, None for TF's global RNG.

    Returns:
      ``x_adv`` with ``x``'s shape and dtype, inside the eps-ball and the clip range.

    Raises:
      ValueError / TypeError: for a bad argument, naming it.

    Example:
      >>> x_adv = apgd(model, x, y, eps=8 / 255, loss="dlr")

    References:
      Croce & Hein, Reliable Evaluation of Adversarial Robustness with an Ensemble of Diverse
      Parameter-free Attacks, ICML 2020, https://arxiv.org/abs/2003.01690
    """
    model_fn, eps, steps, norm, restarts, seed, clip_min, clip_max = _check_common(
        model_fn, eps, steps, norm, restarts, seed, clip_min, clip_max)
    loss = V.choice("loss", loss, C.LOSSES)
    targeted = V.boolean("targeted", targeted)
    xw, yw, dtype = C.prepare_inputs(x, y, targeted=targeted, clip_min=clip_min, clip_max=clip_max,
                                     model_fn=model_fn)
    return _launch(model_fn, "apgd", _apgd_impl, x, xw, yw, dtype, eps, steps, norm, restarts, seed,
                   clip_min, clip_max, loss=loss, targeted=targeted)


def apgd_targeted(model_fn, x, y=None, *, eps, steps=100, norm="linf", targets=9, restarts=1,
                  clip_min=0.0, clip_max=1.0, seed=None):
    """APGD-T (Croce & Hein 2020): APGD on the targeted DLR loss, one run per target class.

    For each of the ``targets`` classes ``t`` with the largest clean logits after the top one
    (AutoAttack's order: 2nd, 3rd, ... largest), APGD (:func:`apgd`'s momentum and step-size
    schedule, ``steps`` iterations, random start) maximises

        ``L_T(x) = -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)``

    (``z_pi`` the logits sorted descending), which pushes the logit of ``t`` above that of the
    true class ``y`` and is invariant to shifts and positive rescaling of the logits. The attack
    itself is untargeted: an example counts as broken as soon as ``argmax z != y`` for any target.
    Per example the first run that misclassifies it is kept, else the one with the highest loss.
    This is the second attack of AutoAttack's standard version (9 targets, 100 steps, 1 restart).

    Cost: ``targets * restarts * (steps + 1)`` forward+backward passes plus one forward pass.
    Runs as one graph like :func:`apgd` (cached ``tf.function`` when eager, inlined in a graph).

    Args:
      model_fn: callable mapping float images to logits (wrap with :func:`eot` if random).
      x: float images in ``[clip_min, clip_max]``.
      y: true labels [N] (or one-hot); None uses the model's predictions.
      eps: radius of the ball (>= 0).
      steps: iterations per target (int >= 1; AutoAttack: 100).
      norm: ``"linf"`` or ``"l2"``.
      targets: number of target classes (int >= 1, at most ``num_classes - 1``; AutoAttack: 9).
        The targeted DLR loss needs at least 4 classes.
      restarts: random restarts per target (int >= 1).
      clip_min: lower bound of valid inputs.
      clip_max: upper bound of valid inputs.
      seed: int for reproducible random starts, None for TF's global RNG.

    Returns:
      ``x_adv`` with ``x``'s shape and dtype, inside the eps-ball and the clip range.

    Raises:
      ValueError / TypeError: for a bad argument, naming it (``targets >= num_classes``, fewer
        than 4 classes, ...).

    Example:
      >>> x_adv = apgd_targeted(model, x, y, eps=8 / 255)  # AutoAttack's APGD-T

    References:
      Croce & Hein, Reliable Evaluation of Adversarial Robustness with an Ensemble of Diverse
      Parameter-free Attacks, ICML 2020, https://arxiv.org/abs/2003.01690
    """
    model_fn, eps, steps, norm, restarts, seed, clip_min, clip_max = _check_common(
        model_fn, eps, steps, norm, restarts, seed, clip_min, clip_max)
    targets = V.integer("targets", targets, minimum=1)
    xw, yw, dtype = C.prepare_inputs(x, y, targeted=False, clip_min=clip_min, clip_max=clip_max,
                                     model_fn=model_fn)
    if tf.executing_eagerly():
        k = C.num_classes_of(model_fn, xw)
        if k < 4:
            raise ValueError(f"apgd_targeted's targeted DLR loss needs at least 4 classes. Received: "
                             f"a model with {k} logits")
        V.integer("targets", targets, maximum=k - 1)
    return _launch(model_fn, "apgd_t", _apgd_t_impl, x, xw, yw, dtype, eps, steps, norm, restarts, seed,
                   clip_min, clip_max, targets=targets)
