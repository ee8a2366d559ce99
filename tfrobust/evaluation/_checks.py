"""Sanity checks that tell when a robustness figure cannot be trusted (in the AutoAttack spirit).

Each check returns a warning string that names the fix, or None.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfrobust.attacks import shared as C


def check_randomness(model_fn, x: np.ndarray):
    """Warn when two identical calls give different outputs (randomness at inference)."""
    inner, _ = C.unwrap_eot(model_fn)
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
    inner, samples = C.unwrap_eot(model_fn)
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
