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

from tfrobust import _validate as V

# The switch itself lives with the layers (dependencies flow layers -> attacks, and layers must
# read it); it is re-exported here as part of the attack API.
from tfrobust.layers._bpda import bpda, bpda_active, bpda_scope

__all__ = ["EOT", "bpda", "bpda_active", "bpda_scope", "eot", "inspect_model"]


class EOT:
    """Expectation over Transformation: a ``model_fn`` for attacking a randomized model.

    Called directly, it returns the logits averaged over ``samples`` forward passes
    (``mean_s f_s(x)``). Passed to :func:`~tfrobust.attacks.fgsm`, :func:`~tfrobust.attacks.pgd` or
    :func:`~tfrobust.attacks.apgd`, the attack averages the per-example *loss gradients* over the
    samples, ``grad = 1/S sum_s grad_x L(f_s(x), y)`` (the EOT estimator of
    ``grad_x E[L(f(x), y)]``). Each sample is a separate forward pass, so randomness drawn once per
    batch is re-drawn per sample. Cost: ``samples`` forward+backward passes per attack step.

    Args:
      model_fn: the randomized model (callable: images -> logits).
      samples: number of forward passes averaged (int >= 1).

    References:
      Athalye et al., Synthesizing Robust Adversarial Examples, ICML 2018,
      https://arxiv.org/abs/1707.07397
    """

    def __init__(self, model_fn, samples: int):
        if not callable(model_fn):
            raise TypeError("`model_fn` must be callable. "
                            f"Received: model_fn of type {type(model_fn).__name__}")
        self.model_fn = model_fn
        self.samples = V.integer("samples", samples, minimum=1)

    def __call__(self, x):
        from tfrobust.attacks._common import forward

        return forward(self.model_fn, x, self.samples)

    def __repr__(self):
        return f"EOT({self.model_fn!r}, samples={self.samples})"


def eot(model_fn, samples: int) -> EOT:
    """Wrap a randomized ``model_fn`` for Expectation over Transformation; see :class:`EOT`.

    Example:
      >>> x_adv = pgd(eot(model, samples=10), x, y, eps=0.1, step_size=0.01, steps=40)
    """
    return EOT(model_fn, samples)


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
