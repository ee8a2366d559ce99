"""Random search: random corners of the L-inf ball (points of the L2 sphere), no gradients."""

from __future__ import annotations

import tensorflow as tf

from tfrobust import _validate as V
from tfrobust.attacks import _common as C


def _random_search_impl(model_fn, x, y, eps, clip_min, clip_max, samples, seed, *, norm, eot_samples):
    """Try ``samples`` random points of the eps-sphere / L-inf corners; keep the first that fools."""
    n = tf.shape(x)[0]

    def body(i, best, fooled):
        s = tf.stack([seed, tf.cast(i, seed.dtype)])
        if norm == "linf":
            delta = eps * tf.sign(tf.random.stateless_uniform(tf.shape(x), s, -1.0, 1.0))
        else:
            d = tf.random.stateless_normal(tf.shape(x), s)
            delta = eps * d / tf.maximum(C.l2_norm(d), 1e-12)
        cand = tf.clip_by_value(x + delta, clip_min, clip_max)
        logits = C.forward(model_fn, cand, eot_samples)
        now = C.fooled(logits, y, False) & ~fooled
        best = tf.where(C.per_example(now, x), cand, best)
        return i + 1, best, fooled | now

    _, best, _ = tf.while_loop(lambda i, b, f: i < samples, body,
                               (tf.constant(0), x, tf.zeros([n], tf.bool)))
    return best


def random_search(model_fn, x, y=None, *, eps, norm="linf", samples=10, clip_min=0.0, clip_max=1.0, seed=0):
    """A gradient-free check: random corners of the L-inf ball (or points of the L2 sphere).

    Each of ``samples`` draws is ``x + eps * sign(u)``, ``u ~ U(-1, 1)`` (L-inf) or
    ``x + eps * d / |d|_2``, ``d ~ N(0, I)`` (L2), clipped to the data range; per example the
    first draw that changes the prediction is kept. Used by the evaluation after the gradient
    attacks: if random noise breaks points that PGD/APGD could not, the gradients are masked.
    Cost: ``samples`` forward passes.

    Args:
      model_fn: callable mapping float images to logits.
      x: float images in ``[clip_min, clip_max]``.
      y: labels [N]; None uses the model's predictions.
      eps: radius (>= 0).
      norm: ``"linf"`` or ``"l2"``.
      samples: number of random draws (int >= 0).
      clip_min: lower bound of valid inputs.
      clip_max: upper bound of valid inputs.
      seed: int seed of the stateless draws.

    Returns:
      ``x_adv`` with ``x``'s shape and dtype.
    """
    model_fn = C.check_model_fn(model_fn)
    eps = V.number("eps", eps, minimum=0.0)
    norm = V.choice("norm", norm, C.NORMS)
    samples = V.integer("samples", samples, minimum=0)
    seed = V.seed(seed, "seed") or 0
    clip_min, clip_max = V.clip_range(clip_min, clip_max)
    xw, yw, dtype = C.prepare_inputs(x, y, targeted=False, clip_min=clip_min, clip_max=clip_max,
                                     model_fn=model_fn)
    if yw is None:
        yw = tf.argmax(C.forward(model_fn, xw), axis=1, output_type=tf.int32)
    args = (xw, yw, tf.constant(eps, tf.float32), tf.constant(clip_min, tf.float32),
            tf.constant(clip_max, tf.float32), tf.constant(samples, tf.int32), tf.constant(seed, tf.int64))
    x_adv = C.run(model_fn, "random_search", _random_search_impl, {"norm": norm}, args)
    return C.finalize(tf.convert_to_tensor(x), x_adv, eps, norm, clip_min, clip_max, dtype)
