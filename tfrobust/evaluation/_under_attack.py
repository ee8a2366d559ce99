"""Accuracy under a fixed attack, per-class robustness and the minimal flipping perturbation.

The measurements the round-based training loops (:class:`tfrobust.trainers.ProactiveDefense`,
:class:`tfrobust.trainers.FeedbackLearning`) report after every round; any attack callable
``attack(model, x, y) -> x_adv`` works (``functools.partial(attacks.pgd, eps=...)``,
``attacks.get(...)``, ``trainers.AttackSpec``).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfrobust import _validate as V
from tfrobust import attacks
from tfrobust.evaluation._accuracy import predict_labels


def attack_dataset(attack, model, x, y, *, batch_size: int = 256) -> np.ndarray:
    """Run ``attack`` over arrays ``(x, y)`` in batches; returns the adversarial images (NumPy)."""
    out = []
    for i in range(0, len(x), batch_size):
        xb = tf.convert_to_tensor(x[i:i + batch_size])
        yb = tf.convert_to_tensor(np.asarray(y[i:i + batch_size]).astype(np.int32))
        out.append(attack(model, xb, yb).numpy())
    return np.concatenate(out, axis=0) if out else np.zeros_like(x)


def _predict(model, x, batch_size=512):
    """Predicted classes through the one batched-prediction helper (:func:`predict_labels`)."""
    if len(x) == 0:
        return np.zeros([0], np.int64)
    return predict_labels(model, x, batch_size=batch_size)


def accuracy_under(attack, model, x, y, *, batch_size: int = 256) -> float:
    """Accuracy of ``model`` on ``attack``'s examples of ``(x, y)`` (clean accuracy when attack is None)."""
    x_eval = x if attack is None else attack_dataset(attack, model, x, y, batch_size=batch_size)
    return float(np.mean(_predict(model, x_eval) == np.asarray(y)))


def per_class_accuracy(attack, model, x, y, num_classes: int, *, batch_size: int = 256):
    """``(overall accuracy, [accuracy of class c])`` on ``attack``'s examples (clean when None).

    A class absent from ``y`` has no accuracy (None); :func:`inequality` leaves it out.
    """
    x_eval = x if attack is None else attack_dataset(attack, model, x, y, batch_size=batch_size)
    pred = _predict(model, x_eval)
    per_class = [float(np.mean(pred[y == c] == c)) if np.any(y == c) else None
                 for c in range(num_classes)]
    return float(np.mean(pred == y)), per_class


def minimal_perturbation(model, x, y, *, eps_max: float, method: str = "fgsm", search_steps: int = 8,
                         pgd_steps: int = 10, batch_size: int = 256) -> np.ndarray:
    """Per-example smallest L-inf eps in ``[0, eps_max]`` that changes the prediction.

    - ``"fgsm"``: exact bisection along the FGSM direction: for one image,
      ``x_adv(e) = clip(x + e * sign(grad), 0, 1)``, so the direction is taken once from
      :func:`tfrobust.attacks.fgsm` and each example is bisected on its own ``e``.
    - ``"pgd"``: :func:`tfrobust.attacks.pgd` (``pgd_steps`` steps) at each radius of the grid
      ``eps_max * k / G``, ``k = 1..G``, ``G = min(16, 2**search_steps)``; the distance is the
      first radius that flips the example (a grid, because the attack takes one eps per call).

    Misclassified examples get 0; examples that resist ``eps_max`` get ``eps_max`` (censored).

    Returns:
      float array ``[N]``.
    """

    V.choice("method", method, ("fgsm", "pgd"))
    V.number("eps_max", eps_max, minimum=0.0, open_min=True)
    y = np.asarray(y).astype(np.int64)
    out = np.empty(len(x), np.float64)
    for i in range(0, len(x), batch_size):
        xb = tf.convert_to_tensor(x[i:i + batch_size])
        yb = y[i:i + batch_size]
        wrong = _predict(model, xb.numpy()) != yb
        if method == "fgsm":
            direction = tf.sign(attacks.fgsm(model, xb, yb.astype(np.int32), eps=1.0) - xb)
            lo = np.zeros(len(yb))
            hi = np.full(len(yb), float(eps_max))

            def flips(e, xb=xb, direction=direction, yb=yb):
                e_t = tf.reshape(tf.constant(e, tf.float32), [-1] + [1] * (xb.shape.rank - 1))
                return _predict(model, tf.clip_by_value(xb + e_t * direction, 0.0, 1.0).numpy()) != yb

            ok_at_max = ~flips(hi)
            for _ in range(search_steps):
                mid = (lo + hi) / 2
                f = flips(mid)
                hi = np.where(f, mid, hi)
                lo = np.where(f, lo, mid)
            dist = np.where(ok_at_max, float(eps_max), hi)
        else:
            grid = min(16, 2 ** search_steps)
            dist = np.full(len(yb), float(eps_max))
            found = np.zeros(len(yb), bool)
            for k in range(1, grid + 1):
                e = eps_max * k / grid
                x_adv = attacks.pgd(model, xb, yb.astype(np.int32), eps=e, steps=pgd_steps)
                f = (_predict(model, x_adv.numpy()) != yb) & ~found
                dist = np.where(f, e, dist)
                found |= f
                if found.all():
                    break
        out[i:i + len(yb)] = np.where(wrong, 0.0, dist)
    return out


def inequality(values) -> dict:
    """Spread of per-class figures: standard deviation, max - min and the Gini coefficient.

    ``Gini = sum_ij |v_i - v_j| / (2 K^2 mean(v))`` (0 = all classes equal).
    """
    v = np.asarray([a for a in values if a is not None], np.float64)
    mean = float(v.mean())
    gini = float(np.abs(v[:, None] - v[None, :]).sum() / (2 * len(v) ** 2 * mean)) if mean > 0 else 0.0
    return {"std": float(v.std()), "range": float(v.max() - v.min()), "gini": gini, "mean": mean}
