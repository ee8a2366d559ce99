"""The BPDA switch read by gradient-masking layers (re-exported by :mod:`tfrobust.attacks`).

It lives with the layers because layers must not import attacks (dependencies flow
layers -> attacks). See :mod:`tfrobust.attacks._adaptive` for the protocol and a worked example.
"""

from __future__ import annotations

import contextlib

import tensorflow as tf

_BPDA_DEPTH = [0]  # process-wide (not thread-local): tf.distribute replicas run in other threads


def bpda_active() -> bool:
    """True inside a :func:`bpda_scope` (read by gradient-masking layers when their ``call`` runs)."""
    return _BPDA_DEPTH[0] > 0


@contextlib.contextmanager
def bpda_scope():
    """Within this context, layers routed through :func:`bpda` back-propagate through their surrogate.

    Example:
      >>> with bpda_scope():  # doctest: +SKIP
      ...     x_adv = pgd(model, x, y, eps=0.1, step_size=0.01, steps=20)
    """
    _BPDA_DEPTH[0] += 1
    try:
        yield
    finally:
        _BPDA_DEPTH[0] -= 1


def bpda(outputs, approximation):
    """Backward Pass Differentiable Approximation for one non-differentiable step.

    Inside :func:`bpda_scope` returns ``g + stop_gradient(f - g)``: the forward value is the true
    output ``f`` (up to float rounding), the gradient is that of the surrogate ``g``. Outside the
    scope returns ``outputs`` and never evaluates ``approximation``.

    Args:
      outputs: the true (non-differentiable) output ``f(x)``.
      approximation: the surrogate ``g(x)``, same shape as ``outputs``: a tensor, or a zero-argument
        callable (preferred: then it is only computed inside the scope).

    Returns:
      A tensor equal to ``outputs`` whose gradient, inside the scope, is that of ``approximation``.

    References:
      Athalye, Carlini & Wagner, Obfuscated Gradients Give a False Sense of Security, ICML 2018,
      https://arxiv.org/abs/1802.00420
    """
    if not bpda_active():
        return outputs
    approx = approximation() if callable(approximation) else approximation
    approx = tf.cast(tf.convert_to_tensor(approx), outputs.dtype)
    if approx.shape.is_fully_defined() and outputs.shape.is_fully_defined() and approx.shape != outputs.shape:
        raise ValueError("`approximation` must have the shape of `outputs`. Received: "
                         f"approximation.shape={approx.shape}, outputs.shape={outputs.shape}")
    return approx + tf.stop_gradient(outputs - approx)
