"""FAB-T: the targeted Fast Adaptive Boundary attack (Croce & Hein, ICML 2020), L-inf and L2.

FAB looks for the *smallest* perturbation that changes the decision, by repeatedly projecting onto
the linearised decision boundary; AutoAttack's standard version runs its targeted variant (FAB-T,
9 target classes, 100 iterations, one run per target) between APGD-T and Square. Written from the
paper (Algorithm 1) with the official implementation read for its defaults (alpha_max 0.1,
eta 1.05, beta 0.9, no random start for FAB-T); the projection is solved here by bisection on the
multiplier of a closed form instead of the official sort-and-search, which gives the same point.
"""

from __future__ import annotations

import math

import tensorflow as tf

from tfrobust import _validate as V
from tfrobust.attacks import _common as C

__all__ = ["fab_targeted", "project_hyperplane"]

_BISECTION_STEPS = 40


def _norm(v, norm):
    """Per-example norm [B] of ``v`` (any rank)."""
    if norm == "linf":
        return tf.reduce_max(tf.abs(tf.reshape(v, [tf.shape(v)[0], -1])), axis=1)
    return C.l2_norm(v, keepdims=False)


def project_hyperplane(t, w, b, lo, hi, *, norm="linf", steps=_BISECTION_STEPS):
    """Minimal-norm ``d`` per row with ``w . (t + d) = b`` and ``lo <= t + d <= hi`` (flat [B, n]).

    With ``r = b - w . t`` (signs flipped so that ``r >= 0``) the solutions are, for a multiplier
    ``lam >= 0`` (KKT conditions of the two problems),

        L-inf: ``d_i(lam) = clip(lam * sign(w_i), lo_i - t_i, hi_i - t_i)``
        L2:    ``d_i(lam) = clip(lam * w_i,       lo_i - t_i, hi_i - t_i)``

    and ``g(lam) = w . d(lam)`` is continuous and non-decreasing, so the smallest ``lam`` with
    ``g(lam) = r`` is found by bisection (``steps`` halvings; geometric for L2, whose multiplier
    spans many orders of magnitude). When the box does not let ``g`` reach ``r`` the hyperplane
    lies outside it and ``d`` goes as far towards it as the box allows (the largest ``lam``).

    Args:
      t: points [B, n]; w: normals [B, n]; b: offsets [B]; lo / hi: box bounds (broadcastable).
      norm: ``"linf"`` or ``"l2"``.

    Returns:
      ``d`` [B, n].
    """
    t, w, b = tf.convert_to_tensor(t), tf.convert_to_tensor(w), tf.convert_to_tensor(b)
    r = b - tf.reduce_sum(w * t, axis=1)
    sign = tf.where(r >= 0, tf.ones_like(r), -tf.ones_like(r))[:, None]
    w, r = w * sign, tf.abs(r)
    lo_d, hi_d = tf.cast(lo, t.dtype) - t, tf.cast(hi, t.dtype) - t
    direction = tf.sign(w) if norm == "linf" else w

    def d_of(lam):
        return tf.clip_by_value(lam[:, None] * direction, lo_d, hi_d)

    def g(lam):
        return tf.reduce_sum(w * d_of(lam), axis=1)

    # Largest useful multiplier: every coordinate at its box bound.
    room = tf.where(w > 0, hi_d, tf.where(w < 0, -lo_d, tf.zeros_like(w)))
    scale = tf.abs(direction)
    ratio = tf.where(scale > 1e-30, room / tf.maximum(scale, 1e-30), tf.zeros_like(room))
    lam_max = tf.maximum(tf.reduce_max(ratio, axis=1), 1e-30)
    if norm == "linf":
        low, high = tf.zeros_like(lam_max), lam_max
    else:
        # g(lam) <= lam |w|^2, so lam* >= r / |w|^2: a geometric bracket [that, lam_max].
        low = tf.minimum(r / tf.maximum(tf.reduce_sum(w * w, axis=1), 1e-30), lam_max)
        low = tf.maximum(low, lam_max * 1e-30)
        high = lam_max
    for _ in range(steps):
        mid = (low + high) / 2 if norm == "linf" else tf.sqrt(low * high)
        enough = g(mid) >= r
        high = tf.where(enough, mid, high)
        low = tf.where(enough, low, mid)
    return d_of(high)


def _fab_single(model_fn, x0, y, target, steps, clip_min, clip_max, *, norm, alpha_max, eta, beta):
    """One FAB-T run towards ``target`` [B]; returns (best adversarial point, its distance [B])."""
    n = tf.shape(x0)[0]
    shape = tf.shape(x0)
    flat0 = tf.reshape(x0, [n, -1])

    def diff_and_grad(z):
        with tf.GradientTape() as tape:
            tape.watch(z)
            logits = C.as_logits(model_fn(z))
            k = tf.shape(logits)[1]
            diff = tf.reduce_sum(logits * (tf.one_hot(target, k) - tf.one_hot(y, k)), axis=1)
        return diff, tape.gradient(diff, z), logits

    def body(i, x1, best_x, best_d):
        df, dg, _ = diff_and_grad(x1)
        wv = tf.reshape(dg, [n, -1])
        bv = tf.reduce_sum(wv * tf.reshape(x1, [n, -1]), axis=1) - df  # w . z = b on the linearisation
        both = project_hyperplane(tf.concat([tf.reshape(x1, [n, -1]), flat0], 0), tf.concat([wv, wv], 0),
                                  tf.concat([bv, bv], 0), clip_min, clip_max, norm=norm)
        d1, d2 = tf.reshape(both[:n], shape), tf.reshape(both[n:], shape)
        a = tf.maximum(_norm(both, norm), 1e-8)
        a1, a2 = a[:n], a[n:]
        alpha = tf.clip_by_value(a1 / (a1 + a2), 0.0, alpha_max)
        alpha = C.per_example(alpha, x0)
        x1 = tf.clip_by_value((x1 + eta * d1) * (1.0 - alpha) + (x0 + eta * d2) * alpha, clip_min, clip_max)
        pred = tf.argmax(C.as_logits(model_fn(x1)), axis=1, output_type=tf.int32)
        adv = pred != y
        dist = _norm(x1 - x0, norm)
        better = adv & (dist < best_d)
        best_x = tf.where(C.per_example(better, x0), x1, best_x)
        best_d = tf.where(better, dist, best_d)
        # Backward step: an adversarial iterate is pulled towards the original point.
        x1 = tf.where(C.per_example(adv, x0), x0 + (x1 - x0) * beta, x1)
        return i + 1, x1, best_x, best_d

    init = (tf.constant(0), x0, x0, tf.fill([n], math.inf))
    _, _, best_x, best_d = tf.while_loop(lambda i, *_: i < steps, body, init)
    return best_x, best_d


def _fab_t_impl(model_fn, x, y, eps, steps, clip_min, clip_max, seed, *, norm, targets, has_y, alpha_max, eta,
                beta, seed_given, eot_samples):
    del seed, seed_given  # FAB-T (AutoAttack's standard) has no random start: deterministic.
    clean = C.forward(model_fn, x, eot_samples)
    if not has_y:
        y = tf.argmax(clean, axis=1, output_type=tf.int32)
    n = tf.shape(x)[0]
    ranked = tf.math.top_k(clean, k=targets + 1).indices

    def body(t, best_x, best_d):
        target = tf.gather(ranked, t + 1, axis=1)
        run_x, run_d = _fab_single(model_fn, x, y, target, steps, clip_min, clip_max, norm=norm,
                                   alpha_max=alpha_max, eta=eta, beta=beta)
        better = run_d < best_d
        return (t + 1, tf.where(C.per_example(better, x), run_x, best_x), tf.where(better, run_d, best_d))

    def cond(t, best_x, best_d):
        # AutoAttack stops targeting a point once it is broken within eps.
        return tf.logical_and(t < targets, tf.logical_not(tf.reduce_all(best_d <= eps)))

    init = (tf.constant(0), x, tf.fill([n], math.inf))
    _, best_x, _ = tf.while_loop(cond, body, init,
                                 shape_invariants=(tf.TensorShape([]), x.shape, tf.TensorShape([None])))
    return best_x


def fab_targeted(model_fn, x, y=None, *, eps, steps=100, norm="linf", targets=9, alpha_max=0.1, eta=1.05,
                 beta=0.9, clip_min=0.0, clip_max=1.0, seed=None):
    """FAB-T (Croce & Hein 2020): minimal-norm adversarial examples from linearised boundaries.

    For each target ``t`` among the classes with the largest clean logits after the top one
    (AutoAttack's order), starting at ``x_1 = x_0`` (the clean point), each of ``steps`` iterations
    linearises ``f(z) = z_t(z) - z_y(z)`` at ``x_k``: the hyperplane
    ``f(x_k) + grad f(x_k) . (z - x_k) = 0``. With ``d_1``, ``d_2`` the minimal-norm steps from
    ``x_k`` and from ``x_0`` onto it inside the clip box (:func:`project_hyperplane`), and
    ``alpha = min(|d_1| / (|d_1| + |d_2|), alpha_max)``,

        ``x_{k+1} = clip((1 - alpha) (x_k + eta d_1) + alpha (x_0 + eta d_2))``

    (``eta`` > 1 overshoots the boundary). Whenever ``x_{k+1}`` is misclassified it is kept if it is
    the closest to ``x_0`` found so far, and pulled back: ``x_{k+1} <- x_0 + beta (x_{k+1} - x_0)``.
    An example counts as broken when its closest misclassified point lies within ``eps``; targets
    stop once every example is broken. Cost: ``targets * steps`` forward+backward passes plus as
    many forward passes. Runs as one graph like :func:`~tfrobust.attacks.apgd`.

    Args:
      model_fn: callable mapping float images to logits (wrap with :func:`eot` if random).
      x: float images in ``[clip_min, clip_max]``.
      y: true labels [N] (or one-hot); None uses the model's predictions.
      eps: radius of the ball (>= 0); FAB minimises the norm, ``eps`` only decides success.
      steps: iterations per target (int >= 1; AutoAttack: 100).
      norm: ``"linf"`` or ``"l2"``.
      targets: number of target classes (int >= 1, at most ``num_classes - 1``; AutoAttack: 9).
      alpha_max: largest weight of the step from ``x_0`` (in [0, 1]; AutoAttack: 0.1).
      eta: overshoot (>= 1; AutoAttack: 1.05).
      beta: backward-step factor (in (0, 1]; AutoAttack: 0.9).
      clip_min: lower bound of valid inputs.
      clip_max: upper bound of valid inputs.
      seed: accepted for the common attack signature; FAB-T is deterministic (no random start).

    Returns:
      ``x_adv`` with ``x``'s shape and dtype, inside the eps-ball and the clip range (the closest
      misclassified point found, projected onto the ball when it lies outside it).

    Raises:
      ValueError / TypeError: for a bad argument, naming it.

    Example:
      >>> x_adv = fab_targeted(model, x, y, eps=0.1)  # AutoAttack's FAB-T

    References:
      Croce & Hein, Minimally distorted Adversarial Examples with a Fast Adaptive Boundary Attack,
      ICML 2020, https://arxiv.org/abs/1907.02044; AutoAttack, https://arxiv.org/abs/2003.01690
    """
    model_fn = C.check_model_fn(model_fn)
    eps = V.number("eps", eps, minimum=0.0, allow_tensor=True)
    steps = V.integer("steps", steps, minimum=1)
    norm = V.choice("norm", norm, C.NORMS)
    targets = V.integer("targets", targets, minimum=1)
    alpha_max = V.number("alpha_max", alpha_max, minimum=0.0, maximum=1.0)
    eta = V.number("eta", eta, minimum=1.0)
    beta = V.fraction("beta", beta, open_min=True)
    seed = V.seed(seed)
    clip_min, clip_max = V.clip_range(clip_min, clip_max, allow_tensor=True)
    xw, yw, dtype = C.prepare_inputs(x, y, targeted=False, clip_min=clip_min, clip_max=clip_max,
                                     model_fn=model_fn)
    if tf.executing_eagerly():
        k = C.num_classes_of(model_fn, xw)
        V.integer("targets", targets, maximum=k - 1)
    static = dict(norm=norm, targets=targets, has_y=yw is not None, alpha_max=float(alpha_max),
                  eta=float(eta), beta=float(beta), seed_given=seed is not None)
    if yw is None:
        yw = tf.zeros([0], tf.int32)
    args = (xw, yw, tf.cast(eps, tf.float32), tf.constant(steps, tf.int32), tf.cast(clip_min, tf.float32),
            tf.cast(clip_max, tf.float32), tf.constant(seed or 0, tf.int64))
    x_adv = C.run(model_fn, "fab_t", _fab_t_impl, static, args)
    return C.finalize(tf.convert_to_tensor(x), x_adv, eps, norm, clip_min, clip_max, dtype)
