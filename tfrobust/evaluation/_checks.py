"""Sanity checks that tell when a robustness figure cannot be trusted (in the AutoAttack spirit).

Each check returns a warning string that names the fix, or None.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfrobust.attacks import _common as C
from tfrobust.attacks._adaptive import EOT


def check_probabilities(logits: np.ndarray):
    """Warn when every output row is non-negative and sums to 1: a softmax output, not logits."""
    if logits.size == 0:
        return None
    if logits.min() >= 0.0 and logits.max() <= 1.0 and np.allclose(logits.sum(1), 1.0, atol=1e-3):
        return ("model outputs look like probabilities (every row is in [0, 1] and sums to 1), so the "
                "cross-entropy gradients saturate and attacks under-report success. Fix: pass logits — "
                "drop the final softmax (build the last Dense layer with activation=None, or use "
                "keras.Model(model.input, model.layers[-1].input) when the softmax is a separate layer).")
    return None


def check_randomness(model_fn, x: np.ndarray):
    """Warn when two identical calls give different outputs (randomness at inference)."""
    inner = model_fn.model_fn if isinstance(model_fn, EOT) else model_fn
    xb = tf.constant(x, tf.float32)
    a = C.as_logits(inner(xb)).numpy()
    b = C.as_logits(inner(xb)).numpy()
    scale = max(1.0, float(np.abs(a).max()))
    diff = float(np.abs(a - b).max())
    if diff > 1e-5 * scale:
        return diff, ("model outputs change between two identical calls (max difference "
                      f"{diff:.3g}): the model is random at inference, and single-sample gradients "
                      "under-estimate its weakness. Fix: evaluate with preset='adaptive' (EOT averages "
                      "gradients over samples) and declare the random layers with `stochastic = True`.")
    return diff, None


def zero_gradient_fraction(model_fn, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of examples whose cross-entropy input gradient is exactly zero everywhere."""
    xb = tf.constant(x, tf.float32)
    yb = tf.constant(y, tf.int32)
    samples = model_fn.samples if isinstance(model_fn, EOT) else 1
    inner = model_fn.model_fn if isinstance(model_fn, EOT) else model_fn
    _, grad, _ = C.loss_and_grad(inner, xb, yb, "ce", False, samples)
    flat = tf.reshape(tf.abs(grad), [tf.shape(grad)[0], -1])
    return float(np.mean(tf.reduce_max(flat, axis=1).numpy() == 0.0))


def zero_gradient_warning(fraction: float, bpda_used: bool):
    if fraction <= 0.0:
        return None
    where = "even with BPDA active" if bpda_used else "at the clean inputs"
    return (f"{fraction:.1%} of the examples have an all-zero input gradient {where}: the model masks "
            "gradients (hard thresholds, rounding, argmax, saturated softmax), so gradient attacks "
            "cannot move those points. Fix: give the non-differentiable layer `gradient_masking = True` "
            "and a BPDA surrogate through tfrobust.attacks.bpda (see docs/attacks.md), then use "
            "preset='adaptive'; also check the model returns logits.")


def gradient_free_warning(broken: int, attacked: int, name: str):
    if broken <= 0:
        return None
    return (f"the gradient-free attack '{name}' broke {broken} of the {attacked} points that every "
            "gradient attack left robust: a sign of gradient masking, so the gradient attacks are "
            "unreliable on this model. Fix: use preset='adaptive' (EOT for randomness, BPDA for "
            "non-differentiable layers), more steps/restarts, and check for gradient-masking layers.")


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


def random_search(model_fn, x, y, *, eps, norm="linf", samples=10, clip_min=0.0, clip_max=1.0, seed=0):
    """A gradient-free check: random corners of the L-inf ball (or points of the L2 sphere).

    Used by the evaluator after the gradient attacks: if random noise breaks points that PGD/APGD
    could not, the gradients are masked.
    """
    xw, yw, dtype = C.prepare_inputs(x, y, targeted=False, clip_min=clip_min, clip_max=clip_max)
    args = (xw, yw, tf.constant(eps, tf.float32), tf.constant(clip_min, tf.float32),
            tf.constant(clip_max, tf.float32), tf.constant(samples, tf.int32), tf.constant(seed, tf.int64))
    return C.run(model_fn, "random_search", _random_search_impl, {"norm": norm}, args)
