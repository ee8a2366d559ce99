"""Accuracy and robust accuracy measured on the deployed .tflite itself."""

from __future__ import annotations

import dataclasses

import numpy as np

from tfrobust import _validate as V


def batched_logits(model_fn, x, batch_size):
    """``model_fn`` over ``x`` in slices of ``batch_size``, as one NumPy array.

    The deployed file's own loop: :func:`tfrobust.evaluation.predict_logits` is the library's, but
    ``tflite_tools`` sits below ``evaluation`` (docs/architecture.md).
    """
    outs = []
    for start in range(0, len(x), batch_size):
        outs.append(np.asarray(model_fn(x[start:start + batch_size])))
    return np.concatenate(outs)


@dataclasses.dataclass
class DeployedEvaluation:
    """Result of :func:`evaluate_deployed` (accuracies in [0, 1]; None when not measured)."""

    examples: int
    clean_accuracy: float
    source_clean_accuracy: float | None
    argmax_agreement: float | None
    transfer_robust_accuracy: float | None
    source_robust_accuracy: float | None
    attack: str | None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def evaluate_deployed(deployed, x, y, *, source_model=None, attack=None, batch_size: int = 256,
                      x_adv=None) -> DeployedEvaluation:
    """Clean and transferred-adversarial accuracy of a deployed model (e.g. a :class:`TFLiteModel`).

    Adversarial examples are crafted white-box on ``source_model`` (the Keras model the .tflite
    was converted from) and replayed on ``deployed``:
    ``transfer_robust_accuracy = mean(argmax deployed(attack(source, x, y)) == y)``. Quantization
    can hide gradients but not this: a transferred attack that works on the Keras model usually
    works on its int8 twin. For an attack run on the interpreter itself, pass ``deployed`` as the
    ``model_fn`` of a gradient-free attack and give its output as ``x_adv``.

    Args:
      deployed: callable float images -> logits (``TFLiteModel``, any ``model_fn``).
      x: float images ``[N, H, W, C]``; y: int labels ``[N]``.
      source_model: the Keras model (needed for ``attack``; also reports its clean accuracy and
        the argmax agreement with ``deployed``).
      attack: callable ``attack(model_fn, x, y) -> x_adv``, e.g.
        ``functools.partial(tfrobust.attacks.pgd, eps=0.1, step_size=0.01, steps=40)``.
      batch_size: evaluation and attack batch size.
      x_adv: precomputed adversarial examples evaluated on ``deployed`` (instead of ``attack``).
    """
    x = np.asarray(x)
    y = np.asarray(y).astype(np.int64)
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"`x` and `y` must be non-empty and of equal length. Received: len(x)={len(x)}, "
                         f"len(y)={len(y)}")
    V.integer("batch_size", batch_size, minimum=1)
    if attack is not None and source_model is None:
        raise ValueError("`attack` crafts examples on `source_model`, which is missing. Received: "
                         "source_model=None")
    pred = batched_logits(deployed, x, batch_size).argmax(-1)
    src_acc = agree = robust = src_robust = None
    if source_model is not None:
        src_pred = batched_logits(lambda b: source_model(b, training=False), x, batch_size).argmax(-1)
        src_acc = float(np.mean(src_pred == y))
        agree = float(np.mean(src_pred == pred))
    if attack is not None:
        advs = [np.asarray(attack(source_model, x[s:s + batch_size], y[s:s + batch_size]))
                for s in range(0, len(x), batch_size)]
        x_adv = np.concatenate(advs)
        src_robust = float(np.mean(
            batched_logits(lambda b: source_model(b, training=False), x_adv, batch_size).argmax(-1) == y))
    if x_adv is not None:
        x_adv = np.asarray(x_adv)
        if x_adv.shape != x.shape:
            raise ValueError(f"`x_adv` must have the shape of `x`. Received: x_adv.shape={x_adv.shape}")
        robust = float(np.mean(batched_logits(deployed, x_adv, batch_size).argmax(-1) == y))
    name = None if attack is None else getattr(attack, "__name__", None) or getattr(
        getattr(attack, "func", None), "__name__", type(attack).__name__)
    return DeployedEvaluation(int(len(x)), float(np.mean(pred == y)), src_acc, agree, robust, src_robust,
                              name)
