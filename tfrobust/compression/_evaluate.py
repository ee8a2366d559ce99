"""Accuracy *and* robust accuracy before and after a compression step.

Compression can silently destroy robustness (pruning and quantization change the loss surface
an attacker climbs), so every tfrobust compression report carries both numbers. Robust accuracy
comes from ``tfrobust.evaluation.robust_accuracy`` (preset ``"fast"``) by default, or from any
``robust_eval_fn(model, x, y) -> float`` (or an object with ``.robust_accuracy``).
"""

from __future__ import annotations

import numpy as np

from tfrobust import evaluation

__all__ = ["compare_before_after", "evaluate_model"]


def _default_robust_eval(eps, norm, batch_size):
    def fn(model, x, y):
        return evaluation.robust_accuracy(model, x, y, eps=eps, norm=norm, preset="fast",
                                          batch_size=batch_size, model=model)

    return fn


def evaluate_model(model, x, y, *, eps: float = 0.1, norm: str = "linf", robust_eval_fn=None,
                   robust: bool = True, batch_size: int = 256) -> dict:
    """Clean accuracy and robust accuracy of a logits model on ``(x, y)``.

    Args:
      model: a callable model returning logits (tf_keras model, TFLiteModel, ...).
      x, y: images and integer labels.
      eps, norm: threat model of the default robust evaluation.
      robust_eval_fn: ``fn(model, x, y)`` returning a float or a report with ``.robust_accuracy``;
        default ``tfrobust.evaluation.robust_accuracy(..., preset="fast")``.
      robust: set False to skip the robust evaluation on purpose (no warning).
      batch_size: batch size of the clean pass.

    Returns:
      ``{"accuracy", "robust_accuracy" (None when no robust evaluation is available),
      "robust_config", "warnings"}``.
    """
    if not callable(model):
        raise TypeError(f"`model` must be callable. Received: model of type {type(model).__name__}")
    if robust_eval_fn is not None and not callable(robust_eval_fn):
        raise TypeError(f"`robust_eval_fn` must be callable. Received: robust_eval_fn={robust_eval_fn!r}")
    x = np.asarray(x, np.float32)
    y = np.asarray(y)
    acc = float("nan")
    if len(x):
        acc = float(np.mean(evaluation.predict_labels(model, x, batch_size=batch_size) == y))
    out = {"accuracy": acc, "robust_accuracy": None, "robust_config": None, "warnings": []}
    if not robust:
        out["robust_config"] = {"skipped": True}
        return out
    fn = robust_eval_fn or _default_robust_eval(eps, norm, batch_size)
    res = fn(model, x, y)
    if hasattr(res, "robust_accuracy"):
        out["robust_accuracy"] = float(res.robust_accuracy)
        out["robust_config"] = getattr(res, "config", None)
        out["warnings"] += list(getattr(res, "warnings", []) or [])
    else:
        out["robust_accuracy"] = float(res)
        out["robust_config"] = {"robust_eval_fn": getattr(fn, "__name__", type(fn).__name__)}
    if robust_eval_fn is None:
        out["robust_config"] = {"preset": "fast", "eps": eps, "norm": norm, **(out["robust_config"] or {})}
    return out


def compare_before_after(before, after, x, y, **kwargs) -> dict:
    """:func:`evaluate_model` on both models, with the differences (after - before)."""
    b = evaluate_model(before, x, y, **kwargs)
    a = evaluate_model(after, x, y, **kwargs)
    delta_r = (a["robust_accuracy"] - b["robust_accuracy"]
               if a["robust_accuracy"] is not None and b["robust_accuracy"] is not None else None)
    return {"before": b, "after": a, "accuracy_change": a["accuracy"] - b["accuracy"],
            "robust_accuracy_change": delta_r}
