"""FGSM (Goodfellow et al. 2015) and PGD (Madry et al. 2018), L-inf and L2."""

from __future__ import annotations

import math

import tensorflow as tf

from tfrobust import _validate as V
from tfrobust.attacks import _common as C

#: Madry et al.'s step rule: ``steps`` steps of this size cover 2.5 eps, enough to cross the ball
#: from a random start and still move along its boundary.
STEP_SIZE_FACTOR = 2.5


def default_step_size(eps, steps):
    """PGD's default step ``2.5 * eps / steps`` (Madry et al. 2018); ``eps`` may be a tensor."""
    if isinstance(steps, (tf.Tensor, tf.Variable)) or isinstance(eps, (tf.Tensor, tf.Variable)):
        return STEP_SIZE_FACTOR * tf.cast(eps, tf.float32) / tf.cast(tf.maximum(steps, 1), tf.float32)
    return STEP_SIZE_FACTOR * eps / max(steps, 1)


def _pgd_impl(model_fn, x, y, eps, step_size, steps, clip_min, clip_max, seed, *, norm, random_start,
              restarts, targeted, early_stop, loss, has_y, eot_samples):
    """The attack loop on float32 tensors; pure TF ops, safe inside any ``tf.function``."""
    if not has_y:
        y = tf.argmax(C.forward(model_fn, x, eot_samples), axis=1, output_type=tf.int32)
    n = tf.shape(x)[0]
    best_x = x
    best_fooled = tf.zeros([n], tf.bool)
    best_obj = tf.fill([n], -math.inf)
    for r in range(restarts):
        if random_start:
            rseed = None if seed is None else tf.stack([seed, tf.constant(r, seed.dtype)])
            x_start = tf.clip_by_value(x + C.random_delta(x, eps, norm, rseed), clip_min, clip_max)
        else:
            x_start = x

        def body(i, x_adv, frozen, done):
            _, grad, logits = C.loss_and_grad(model_fn, x_adv, y, loss, targeted, eot_samples)
            step = step_size * C.ascent_direction(grad, norm)
            x_new = x + C.project(x_adv + step - x, eps, norm)
            x_new = tf.clip_by_value(x_new, clip_min, clip_max)
            if early_stop:
                # An example stops moving once it is fooled; the loop ends when all are.
                frozen = frozen | C.fooled(logits, y, targeted)
                x_new = tf.where(C.per_example(frozen, x), x_adv, x_new)
                done = tf.reduce_all(frozen)
            return i + 1, x_new, frozen, done

        def cond(i, x_adv, frozen, done):
            return tf.logical_and(i < steps, tf.logical_not(done))

        frozen0 = best_fooled if early_stop else tf.zeros([n], tf.bool)
        done0 = tf.reduce_all(frozen0) if early_stop else tf.constant(False)
        _, x_adv, _, _ = tf.while_loop(
            cond, body, (tf.constant(0), x_start, frozen0, done0),
            shape_invariants=(tf.TensorShape([]), x.shape, tf.TensorShape([None]), tf.TensorShape([])))
        if restarts == 1:
            return x_adv
        # Keep, per example, the restart that fools the model, else the one with the highest loss.
        logits = C.forward(model_fn, x_adv, eot_samples)
        obj = C.objective(loss, logits, y, targeted)
        is_fooled = C.fooled(logits, y, targeted)
        better = (is_fooled & ~best_fooled) | ((is_fooled == best_fooled) & (obj > best_obj))
        best_x = tf.where(C.per_example(better, x), x_adv, best_x)
        best_obj = tf.where(better, obj, best_obj)
        best_fooled = best_fooled | is_fooled
    return best_x


def pgd(model_fn, x, y=None, *, eps, step_size=None, steps=20, norm="linf", random_start=True, restarts=1,
        targeted=False, clip_min=0.0, clip_max=1.0, early_stop=False, loss="ce", seed=None):
    """Projected gradient descent (Madry et al. 2018): iterated signed/normalised gradient steps.

    Each step, for the per-example objective ``L`` (cross-entropy by default) summed over the batch:

    - L-inf: ``x_{t+1} = clip(P_eps(x_t + alpha * sign(grad_x L(x_t, y))), clip_min, clip_max)``
    - L2: ``x_{t+1} = clip(P_eps(x_t + alpha * g / |g|_2), clip_min, clip_max)``

    where ``P_eps`` projects ``x_t - x`` onto the eps-ball (``clip(., -eps, eps)`` for L-inf,
    ``delta * min(1, eps / |delta|_2)`` for L2). A random start draws ``x_0`` uniformly in the
    ball. With ``restarts > 1`` the attack is repeated from new random starts and, per example,
    the first restart that fools the model is kept (else the one with the highest loss). Targeted
    attacks minimise ``CE(z, target)`` instead.

    The whole loop is a ``tf.while_loop``: eagerly it runs through a ``tf.function`` cached per
    ``model_fn`` (pass the same callable object to avoid retracing); inside a ``tf.function``
    (e.g. an adversarial train step, also under ``tf.distribute`` strategies) it is inlined with
    no Python-side state. Cost: ``steps`` forward+backward passes per restart (plus one forward
    per restart when ``restarts > 1`` and one when ``y`` is None).

    Args:
      model_fn: callable mapping float images [N, ...] to logits [N, K] (a Keras model, a
        ``tf.Module``, a SavedModel signature, ...). Wrap a stochastic model with
        :func:`tfrobust.attacks.eot` to average gradients over its randomness.
      x: float images [N, ...] inside ``[clip_min, clip_max]``. Float16/64 inputs are attacked in
        float32 and returned in their own dtype; integer (uint8) inputs are refused.
      y: true labels [N] (ints) or one-hot [N, K]; None uses the model's own predictions (no
        label leaking). With ``targeted=True``: the target classes (required).
      eps: radius of the perturbation ball (>= 0); a Python number or a scalar tensor.
      step_size: step ``alpha`` (>= 0); None (default) uses Madry et al.'s ``2.5 * eps / steps``
        (:func:`default_step_size`).
      steps: number of gradient steps (int >= 0; default 20).
      norm: ``"linf"`` or ``"l2"``.
      random_start: start from a uniform random point of the ball.
      restarts: number of independent runs (int >= 1); per example the worst case is kept.
      targeted: make the model predict ``y`` instead of moving away from it.
      clip_min: lower bound of valid inputs.
      clip_max: upper bound of valid inputs.
      early_stop: freeze each example once it is fooled and stop when all are (saves time; the
        returned point is then the first one found, not the highest-loss one).
      loss: objective: ``"ce"`` (cross-entropy), ``"margin"`` (Carlini-Wagner) or ``"dlr"``.
      seed: int for a reproducible random start (stateless RNG), None for TF's global RNG.

    Returns:
      ``x_adv``, a tensor of ``x``'s shape and dtype with ``|x_adv - x| <= eps`` in the chosen
      norm and ``clip_min <= x_adv <= clip_max``.

    Raises:
      ValueError / TypeError: for a bad argument, naming it (``eps < 0``, ``clip_min > clip_max``,
        NaN or out-of-range ``x``, ``y`` of the wrong shape, integer ``x``, ...). Value checks on
        ``x`` run only eagerly.

    Example:
      >>> x_adv = pgd(model, x, y, eps=0.1, steps=20)  # step 2.5 * 0.1 / 20

    References:
      Madry et al., Towards Deep Learning Models Resistant to Adversarial Attacks, ICLR 2018,
      https://arxiv.org/abs/1706.06083
    """
    model_fn = C.check_model_fn(model_fn)
    eps = V.number("eps", eps, minimum=0.0, allow_tensor=True)
    if isinstance(steps, (tf.Tensor, tf.Variable)):
        V.number("steps", steps, minimum=0, allow_tensor=True)
    else:
        steps = V.integer("steps", steps, minimum=0)
    if step_size is None:
        step_size = default_step_size(eps, steps)
    step_size = V.number("step_size", step_size, minimum=0.0, allow_tensor=True)
    norm = V.choice("norm", norm, C.NORMS)
    random_start = V.boolean("random_start", random_start)
    restarts = V.integer("restarts", restarts, minimum=1)
    targeted = V.boolean("targeted", targeted)
    early_stop = V.boolean("early_stop", early_stop)
    loss = V.choice("loss", loss, C.LOSSES)
    seed = V.seed(seed)
    clip_min, clip_max = V.clip_range(clip_min, clip_max, allow_tensor=True)
    return _attack(model_fn, x, y, eps, step_size, steps, clip_min, clip_max, seed, norm=norm,
                   random_start=random_start, restarts=restarts, targeted=targeted,
                   early_stop=early_stop, loss=loss, name="pgd")


def fgsm(model_fn, x, y=None, *, eps, norm="linf", targeted=False, clip_min=0.0, clip_max=1.0,
         loss="ce"):
    """Fast gradient sign method (Goodfellow et al. 2015): one step of size eps.

    ``x_adv = clip(x + eps * sign(grad_x L(x, y)), clip_min, clip_max)`` for L-inf, and
    ``x + eps * g / |g|_2`` (the fast gradient method) for L2. Targeted: step against the
    gradient of ``CE(z, target)``. Same calling conventions as :func:`pgd` (usable inside a
    ``tf.function``; ``y=None`` attacks the model's own predictions). Cost: one forward+backward.

    Args:
      model_fn: callable mapping float images to logits.
      x: float images in ``[clip_min, clip_max]``.
      y: labels [N] or one-hot, None for the model's predictions; target classes if targeted.
      eps: step size = radius of the ball (>= 0).
      norm: ``"linf"`` or ``"l2"``.
      targeted: move towards ``y``.
      clip_min: lower bound of valid inputs.
      clip_max: upper bound of valid inputs.
      loss: ``"ce"``, ``"margin"`` or ``"dlr"``.

    Returns:
      ``x_adv`` with ``x``'s shape and dtype.

    Example:
      >>> x_adv = fgsm(model, x, y, eps=0.1)

    References:
      Goodfellow et al., Explaining and Harnessing Adversarial Examples, ICLR 2015,
      https://arxiv.org/abs/1412.6572
    """
    model_fn = C.check_model_fn(model_fn)
    eps = V.number("eps", eps, minimum=0.0, allow_tensor=True)
    norm = V.choice("norm", norm, C.NORMS)
    targeted = V.boolean("targeted", targeted)
    loss = V.choice("loss", loss, C.LOSSES)
    clip_min, clip_max = V.clip_range(clip_min, clip_max, allow_tensor=True)
    return _attack(model_fn, x, y, eps, eps, 1, clip_min, clip_max, None, norm=norm, random_start=False,
                   restarts=1, targeted=targeted, early_stop=False, loss=loss, name="fgsm")


def _attack(model_fn, x, y, eps, step_size, steps, clip_min, clip_max, seed, *, name, **static):
    xw, yw, dtype = C.prepare_inputs(x, y, targeted=static["targeted"], clip_min=clip_min,
                                     clip_max=clip_max, model_fn=model_fn)
    static["has_y"] = yw is not None
    if yw is None:
        yw = tf.zeros([0], tf.int32)  # placeholder; the labels are predicted inside the loop
    static["seed_given"] = seed is not None
    args = (xw, yw, tf.cast(eps, tf.float32), tf.cast(step_size, tf.float32), tf.cast(steps, tf.int32),
            tf.cast(clip_min, tf.float32), tf.cast(clip_max, tf.float32),
            tf.constant(seed if seed is not None else 0, tf.int64))
    x_adv = C.run(model_fn, name, _impl_with_seed, static, args)
    return C.finalize(x if dtype == tf.float32 else tf.convert_to_tensor(x), x_adv, eps,
                      static["norm"], clip_min, clip_max, dtype)


def _impl_with_seed(model_fn, x, y, eps, step_size, steps, clip_min, clip_max, seed, *, seed_given,
                    **static):
    return _pgd_impl(model_fn, x, y, eps, step_size, steps, clip_min, clip_max,
                     seed if seed_given else None, **static)
