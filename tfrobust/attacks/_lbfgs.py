"""Box-constrained L-BFGS attack (Szegedy et al. 2014), the first optimisation-based attack.

For every example the attack solves

    minimise_r   c * ||r||_2 + loss(x + r, l)   subject to   x + r in [clip_min, clip_max]^m

(the paper's ``c|r|``, with ``|r|`` the L2 norm of its problem statement; ``distance="l2_squared"``
gives the ``c * ||r||_2^2`` variant CleverHans uses)

with SciPy's L-BFGS-B (TensorFlow supplies the gradients), and searches per example for the
*largest* weight ``c`` whose minimiser still reaches the goal: a larger ``c`` puts more weight on the
size of ``r``, so it gives a smaller successful perturbation. The search multiplies ``c`` by 10 until
it brackets the boundary between success and failure, then bisects geometrically.
"""

from __future__ import annotations

import numpy as np
import scipy.optimize
import tensorflow as tf

from tfrobust import _validate as V
from tfrobust.attacks._common import as_logits

__all__ = ["lbfgs"]


def _check_images(x, clip_min, clip_max, *, image_batch=True, name="x"):
    """:func:`tfrobust._validate.images` (an NHWC batch when ``image_batch``), plus the input dtype.

    Returns ``(x_float32, dtype)``: a float32 NumPy copy clipped to the box (what models are
    fed) and the input's ``tf.DType`` (results are returned in that dtype, see :func:`_as_output`).
    """
    arr = V.images(x, clip_min=clip_min, clip_max=clip_max, name=name,
                   input_shape=(None, None, None) if image_batch else None)
    dtype = x.dtype if isinstance(x, (tf.Tensor, tf.Variable)) else tf.as_dtype(np.asarray(x).dtype)
    return np.clip(arr, clip_min, clip_max), dtype


def _as_output(x_adv, dtype, x, changed):
    """``x_adv`` in the caller's dtype; examples not ``changed`` are the caller's ``x`` bit for bit."""
    x_adv = tf.cast(tf.convert_to_tensor(np.asarray(x_adv, dtype=np.float32)), dtype)
    x = tf.convert_to_tensor(x, dtype=dtype)
    keep = tf.reshape(tf.constant(np.asarray(changed, dtype=bool)), [-1] + [1] * (len(x.shape) - 1))
    return tf.where(keep, x_adv, x)


DISTANCES = ("l2", "l2_squared")
#: Smoothing of ``||r||_2 = sqrt(||r||^2 + NORM_SMOOTHING)``: finite gradient (zero) at ``r = 0``.
NORM_SMOOTHING = 1e-12


def _value_and_grad_fn(model_fn, targeted, distance="l2"):
    """A compiled ``(w, x0, labels, c) -> (sum_i f_c(w_i), grad, ||w_i - x0_i||^2, argmax)``."""

    @tf.function(reduce_retracing=True, autograph=False)
    def value_and_grad(w, x0, labels, const):
        with tf.GradientTape() as tape:
            tape.watch(w)
            logits = as_logits(model_fn(w))
            if targeted:
                loss = -tf.gather(tf.nn.log_softmax(logits, axis=-1), labels, axis=1, batch_dims=1)
            else:
                # log(1 - p_y) = logsumexp_{j != y} z_j - logsumexp_j z_j, stable for p_y -> 1.
                mask = tf.one_hot(labels, tf.shape(logits)[-1], on_value=-np.inf, off_value=0.0)
                loss = -(tf.reduce_logsumexp(logits + mask, axis=-1) - tf.reduce_logsumexp(logits, axis=-1))
            dist = tf.reduce_sum(tf.reshape(tf.square(w - x0), [tf.shape(w)[0], -1]), axis=1)
            penalty = tf.sqrt(dist + NORM_SMOOTHING) if distance == "l2" else dist
            total = tf.reduce_sum(const * penalty + loss)
        grad = tape.gradient(total, w)
        if grad is None:  # the output does not depend on the input at all
            grad = tf.zeros_like(w)
        return total, grad, dist, tf.argmax(logits, axis=-1, output_type=tf.int64)

    return value_and_grad


def _solve(value_and_grad, x0, labels, targeted, initial_const, search_steps, max_iterations,
           clip_min, clip_max):
    """The line search over ``c`` for one chunk; returns the best adversarial points and distances."""
    n, shape = len(x0), x0.shape
    x0_t, labels_t = tf.constant(x0), tf.constant(labels)
    best_dist = np.full(n, np.inf)
    best_adv = x0.copy()
    lower = np.zeros(n)  # largest c known to succeed (0: none yet)
    upper = np.full(n, np.inf)  # smallest c known to fail
    const = np.full(n, initial_const)
    bounds = scipy.optimize.Bounds(np.full(x0.size, clip_min), np.full(x0.size, clip_max))

    def success(pred):
        return pred == labels if targeted else pred != labels

    def fun(flat, const_t):
        w = tf.constant(flat.reshape(shape), tf.float32)
        total, grad, dist, pred = value_and_grad(w, x0_t, labels_t, const_t)
        dist, pred = dist.numpy(), pred.numpy()
        # Keep the smallest successful point seen at any evaluation, not only the final one.
        better = success(pred) & (dist < best_dist)
        if better.any():
            best_dist[better] = dist[better]
            best_adv[better] = flat.reshape(shape)[better]
        return float(total), grad.numpy().astype(np.float64).ravel()

    for _ in range(search_steps):
        const_t = tf.constant(const, tf.float32)
        res = scipy.optimize.minimize(fun, x0.astype(np.float64).ravel(), args=(const_t,), jac=True,
                                      method="L-BFGS-B", bounds=bounds, options={"maxiter": max_iterations})
        # Judge c by the minimiser the optimiser returned, as the paper's line search does.
        pred = value_and_grad(tf.constant(res.x.reshape(shape), tf.float32), x0_t, labels_t, const_t)[3]
        ok = success(pred.numpy())
        lower = np.where(ok, np.maximum(lower, const), lower)
        upper = np.where(ok, upper, np.minimum(upper, const))
        bracketed = (lower > 0) & np.isfinite(upper)
        const = np.where(bracketed, np.sqrt(np.maximum(lower, 1e-30) * upper),
                         np.where(ok, const * 10.0, const / 10.0))
    return best_adv, best_dist


def lbfgs(model_fn, x, y=None, *, targeted: bool = False, initial_const: float = 1.0,
          search_steps: int = 9, max_iterations: int = 100, clip_min: float = 0.0,
          clip_max: float = 1.0, batch_size: int | None = None, distance: str = "l2"):
    """Box-constrained L-BFGS attack: the smallest L2 perturbation reaching a target (or any error).

    For each example it minimises, over ``x' = x + r`` in the box,

        f_c(x') = c * ||x' - x||_2 + loss(x')        (distance="l2", the paper's c|r|)
        f_c(x') = c * ||x' - x||_2^2 + loss(x')      (distance="l2_squared")

    with ``loss(x') = -log softmax(z(x'))_t`` (cross-entropy to the target ``t``) when
    ``targeted``, and ``loss(x') = -log(1 - softmax(z(x'))_y)`` (the probability mass *off* the label
    ``y``; zero exactly when ``y`` has no mass) when untargeted. The default is the paper's
    ``c|r|`` with ``|r| = ||r||_2`` (smoothed as ``sqrt(||r||^2 + 1e-12)`` so its gradient at
    ``r = 0`` is zero); ``distance="l2_squared"`` is the squared norm CleverHans uses, smooth at
    ``r = 0``. Both search ``c`` the same way and return the smallest successful ``||r||_2``.

    The batch (or each chunk of ``batch_size``) is optimised as one flat vector: the objective is a
    sum of per-example terms, each with its own ``c``, so one L-BFGS-B run per search step serves
    every example of the chunk. A line
    search over ``c`` runs per example: start at ``initial_const``; after a run whose minimiser
    succeeds, raise ``c`` (x10 until a failure is seen, then the geometric midpoint of the
    bracket), after a failure lower it likewise. The returned example is the successful iterate of
    smallest ``||r||_2`` seen at any function evaluation; examples never broken are returned as
    ``x`` unchanged.

    This attack calls SciPy, so it runs eagerly (not inside ``tf.function``).

    Args:
      model_fn: callable mapping a float32 batch ``[N, H, W, C]`` to logits ``[N, K]``;
        differentiable with TensorFlow.
      x: inputs ``[N, ...]`` (images ``[N, H, W, C]``), floats in ``[clip_min, clip_max]``.
      y: int labels ``[N]``: the target classes when ``targeted``, the true classes otherwise.
        ``None`` (untargeted only) uses the model's own predictions.
      targeted: reach class ``y`` instead of leaving it.
      initial_const: first ``c`` of the search, > 0.
      search_steps: L-BFGS-B runs (search steps over ``c``), >= 1.
      max_iterations: L-BFGS-B iterations per run, >= 1.
      clip_min: lower bound of the box.
      clip_max: upper bound of the box.
      batch_size: examples per L-BFGS-B problem; ``None`` solves the whole batch at once. Smaller
        chunks cost more Python overhead but keep one slow example from shortening the shared
        line-search steps of many.
      distance: ``"l2"`` (the paper's ``c * ||r||_2``) or ``"l2_squared"`` (``c * ||r||_2^2``).

    Returns:
      ``tf.Tensor`` ``x_adv`` with the shape and float dtype of ``x``.

    Raises:
      RuntimeError: when called inside a ``tf.function``.
      TypeError: integer images (scale them to floats first).
      ValueError: bad shapes, NaN/inf in ``x``, ``x`` outside the box, non-positive
        ``initial_const``, ``search_steps`` or ``max_iterations``, ``clip_min >= clip_max``,
        targeted without ``y``.

    Example:
      >>> x_adv = lbfgs(model, x, tf.fill([len(x)], 3), targeted=True)  # doctest: +SKIP

    References:
      Szegedy et al., Intriguing properties of neural networks, ICLR 2014,
      https://arxiv.org/abs/1312.6199
    """
    if not callable(model_fn):
        raise TypeError(f"`model_fn` must be callable. Received: model_fn={model_fn!r}")
    if not tf.executing_eagerly():
        raise RuntimeError("lbfgs drives SciPy's L-BFGS-B, so it runs eagerly: call it outside "
                           "tf.function (use pgd inside a train step).")
    targeted = V.boolean("targeted", targeted)
    distance = V.choice("distance", distance, DISTANCES)
    initial_const = V.number("initial_const", initial_const, minimum=0.0, open_min=True)
    search_steps = V.integer("search_steps", search_steps, minimum=1)
    max_iterations = V.integer("max_iterations", max_iterations, minimum=1)
    if batch_size is not None:
        batch_size = V.integer("batch_size", batch_size, minimum=1)
    clip_min, clip_max = V.clip_range(clip_min, clip_max)
    x0, dtype = _check_images(x, clip_min, clip_max, image_batch=False)
    n = x0.shape[0]
    if y is None:
        if targeted:
            raise ValueError("`y` (the target classes) is required when targeted=True. Received: y=None")
        labels = np.argmax(as_logits(model_fn(tf.constant(x0))).numpy(), axis=-1).astype(np.int64)
    else:
        num_classes = as_logits(model_fn(tf.constant(x0[:1]))).shape[-1]
        labels = V.labels(y, n=n, num_classes=num_classes)

    value_and_grad = _value_and_grad_fn(model_fn, targeted, distance)
    step = n if batch_size is None else batch_size
    best_adv, best_dist = x0.copy(), np.full(n, np.inf)
    for start in range(0, n, step):
        sl = slice(start, start + step)
        best_adv[sl], best_dist[sl] = _solve(value_and_grad, x0[sl], labels[sl], targeted, initial_const,
                                             search_steps, max_iterations, clip_min, clip_max)
    return _as_output(np.clip(best_adv, clip_min, clip_max), dtype, x, np.isfinite(best_dist))
