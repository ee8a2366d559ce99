"""Adaptive attacks (Athalye et al. 2018): EOT for randomized defenses, BPDA for masked gradients.

The layer-declaration protocol
==============================

Defense layers tell the evaluator what they are with two class attributes, so that
``tfrobust.evaluation.robust_accuracy(..., preset="adaptive")`` can pick the adaptive attack
itself (see :func:`inspect_model`):

``stochastic = True``
    The layer is random at inference (SAP, random noise, random resizing, ...). Attacks then
    average gradients over several forward passes (:func:`eot`).

``gradient_masking = True``
    The layer's forward pass is non-differentiable or has useless gradients (hard thresholds,
    quantization, k-WTA's discontinuous top-k, input purification, ...). Such a layer must
    provide a differentiable approximation ``g`` of its forward function ``f`` and route its
    output through :func:`bpda`::

        outputs = bpda(f(inputs), lambda: g(inputs))

    Outside a :func:`bpda_scope` this returns ``f(inputs)`` unchanged (normal training and
    inference, zero cost). Inside the scope it still *returns* ``f(inputs)`` on the forward pass,
    but its gradient is that of ``g`` (Backward Pass Differentiable Approximation): the value
    computed is ``g + stop_gradient(f - g)``. The usual choices are ``g(x) = x`` (straight-through,
    when ``f(x) ~ x``) or a smooth surrogate (a sigmoid for a step, a softmax-weighted sum for
    top-k). The layer reads the scope *when its ``call`` runs* (at trace time under
    ``tf.function``); attacks key their compiled functions on the scope, so a model attacked
    inside and outside the scope gets two separate traces.

Worked example: a hard-threshold layer that declares itself and its BPDA surrogate::

    import tensorflow as tf
    from tfrobust import attacks
    from tfrobust._keras import keras

    @keras.utils.register_keras_serializable(package="tfrobust")
    class HardThreshold(keras.layers.Layer):
        gradient_masking = True  # forward is a step function: zero gradients almost everywhere

        def call(self, inputs):
            hard = tf.cast(inputs > 0.5, inputs.dtype)
            # BPDA surrogate: a steep sigmoid has the same forward shape and useful gradients.
            return attacks.bpda(hard, lambda: tf.sigmoid(10.0 * (inputs - 0.5)))

    model = keras.Sequential([HardThreshold(), keras.layers.Flatten(), keras.layers.Dense(10)])
    with attacks.bpda_scope():            # gradients now flow through the sigmoid
        x_adv = attacks.pgd(model, x, y, eps=0.1, step_size=0.01, steps=20)
    # or let the evaluator do it: robust_accuracy(model, x, y, eps=0.1, preset="adaptive")

A stochastic layer only sets ``stochastic = True`` (and is random in ``call`` when
``training`` is False); nothing else is needed: the evaluator wraps the model with :func:`eot`.
"""

from __future__ import annotations

from tfrobust.attacks._common import EOT, eot

# The switch itself lives with the layers (dependencies flow layers -> attacks, and layers must
# read it); it is re-exported here as part of the attack API.
from tfrobust.layers import bpda, bpda_active, bpda_scope

__all__ = ["EOT", "bpda", "bpda_active", "bpda_scope", "eot", "inspect_model"]


def _layers_of(model):
    seen, stack, out = set(), [model], []
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        out.append(obj)
        submodules = getattr(obj, "submodules", None)
        if submodules is not None:
            try:
                stack.extend(list(submodules))
            except TypeError:
                pass
        stack.extend(getattr(obj, "layers", []) or [])
    return out


def inspect_model(model) -> dict:
    """Find the layers (any depth) that declare ``stochastic`` or ``gradient_masking``.

    Args:
      model: a Keras model, ``tf.Module`` or any object; objects without sub-layers yield empty lists.

    Returns:
      ``{"stochastic": [layer names], "gradient_masking": [layer names]}``.
    """
    found = {"stochastic": [], "gradient_masking": []}
    for obj in _layers_of(model):
        name = getattr(obj, "name", type(obj).__name__)
        for attr in found:
            if getattr(type(obj), attr, False) is True or getattr(obj, attr, False) is True:
                found[attr].append(name)
    return found
