"""One-pixel attack (Su et al. 2019): differential evolution over a few pixels, probabilities only.

A candidate for ``d`` pixels of a ``C``-channel image is the vector
``(row_1, col_1, v_1^1..v_1^C, ..., row_d, col_d, v_d^1..v_d^C)`` (``(x, y, r, g, b)`` per pixel for
RGB, ``(x, y, v)`` for grey). Differential evolution (DE/rand/1, no crossover, as in the paper)
evolves ``population`` candidates per image; the next generation is

    child_i = parent_r1 + F * (parent_r2 - parent_r3),   r1, r2, r3, i distinct,

and a child replaces its parent when its fitness is better. Fitness needs nothing but the predicted
probabilities, so the attack runs against any black box, a TFLite interpreter included.
"""

from __future__ import annotations

import numpy as np

from tfrobust import _validate as V
from tfrobust.attacks._common import as_logits
from tfrobust.attacks._lbfgs import _as_output, _check_images

__all__ = ["one_pixel"]

_OUTPUTS = ("auto", "logits", "probabilities")
_EARLY_STOPS = ("paper", "flip", "none")
#: The paper's stopping thresholds: target probability above 0.9 (targeted), true-class
#: probability below 0.05 (untargeted).
PAPER_TARGET_PROBABILITY = 0.9
PAPER_TRUE_PROBABILITY = 0.05


def _softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _to_probabilities(out, outputs, num_images):
    """Model outputs (tensor or array) -> float64 probabilities [N, K]."""
    if isinstance(out, (dict, list, tuple)):  # e.g. a SavedModel signature's {name: tensor}
        out = as_logits(out)
    out = np.asarray(out, dtype=np.float64)
    if out.ndim != 2 or out.shape[0] != num_images:
        raise ValueError(f"`model_fn` must return an array [N, K] for N={num_images} images. "
                         f"Received: output shape {out.shape}")
    if outputs == "probabilities":
        return out
    if outputs == "auto":
        looks_like_probs = (out.min() >= 0.0 and out.max() <= 1.0
                            and np.allclose(out.sum(axis=-1), 1.0, atol=1e-3))
        if looks_like_probs:
            return out
    return _softmax(out)


def _distinct_indices(rng, rows, population):
    """Three indices per entry of ``[rows, population]``, distinct from each other and from its own."""
    own = np.broadcast_to(np.arange(population), (rows, population))
    picks = rng.integers(0, population, size=(3, rows, population))
    while True:
        a, b, c = picks
        clash = (a == own) | (b == own) | (c == own) | (a == b) | (a == c) | (b == c)
        if not clash.any():
            return a, b, c
        picks[:, clash] = rng.integers(0, population, size=(3, int(clash.sum())))


def one_pixel(model_fn, x, y=None, *, pixels: int = 1, targeted: bool = False, population: int = 400,
              iterations: int = 100, mutation: float = 0.5, clip_min: float = 0.0, clip_max: float = 1.0,
              outputs: str = "auto", early_stop: str | bool = "paper", batch_size: int | None = None,
              seed: int | None = None):
    """One-pixel (or ``pixels``-pixel) attack by differential evolution, using probabilities only.

    Maximises ``f_adv(x + e)`` subject to ``||e||_0 <= d`` pixels, where the fitness is the
    probability of the target class ``t`` (targeted) or minus the probability of the true class
    ``y`` (untargeted), as in the paper's CIFAR-10 and ImageNet experiments. Initial pixel
    positions are uniform over the image and values are drawn from ``N(mu, sigma)`` with
    ``mu = (clip_min + clip_max) / 2`` and ``sigma = (127 / 255) * (clip_max - clip_min)`` (the
    paper's ``N(128, 127)`` on 0..255), clipped to the box. Each generation builds the perturbed
    images of every candidate of every image and evaluates them in **one** model call (split into
    chunks of ``batch_size`` if given). An image stops evolving at the paper's thresholds by
    default (``early_stop="paper"``: a candidate with ``p_target > 0.9`` when targeted, or
    ``p_true < 0.05`` when untargeted), or, with ``early_stop="flip"``, as soon as one candidate is
    adversarial (argmax equals the target / differs from ``y``: fewer queries, lower confidence);
    ``"none"`` runs every iteration. The loop ends when every image is done. Either way the
    returned image is the fittest adversarial (argmax) candidate.

    Images never broken are returned unchanged; broken ones differ from ``x`` in at most ``pixels``
    pixel positions.

    Args:
      model_fn: any callable mapping a float32 batch ``[N, H, W, C]`` (NumPy) to logits or
        probabilities ``[N, K]`` (a ``tf.Tensor`` or a NumPy array) — e.g. a TFLite interpreter
        wrapper. No gradients are used.
      x: images ``[N, H, W, C]``, floats in ``[clip_min, clip_max]``.
      y: int labels ``[N]``: targets when ``targeted``, true classes otherwise; ``None``
        (untargeted only) uses the model's predictions.
      pixels: ``d``, the number of pixels changed, 1 <= d <= H * W.
      targeted: reach class ``y`` instead of leaving it.
      population: candidates per image (paper: 400), >= 4 (DE/rand/1 needs three others).
      iterations: generations (paper: 100), >= 0.
      mutation: the scale ``F`` (paper: 0.5), in (0, 2].
      clip_min: lower bound of pixel values.
      clip_max: upper bound of pixel values.
      outputs: ``"logits"``, ``"probabilities"`` or ``"auto"`` (rows that are non-negative and sum
        to one are taken as probabilities, anything else goes through a softmax).
      early_stop: ``"paper"`` (thresholds above), ``"flip"`` (first argmax flip; ``True`` is
        accepted for it) or ``"none"`` (``False``).
      batch_size: maximum images per model call; ``None`` evaluates a whole generation at once.
      seed: seed of the NumPy generator (reproducible runs).

    Returns:
      ``tf.Tensor`` ``x_adv`` with the shape and float dtype of ``x``.

    Raises:
      TypeError: integer images, non-callable model, non-bool flags.
      ValueError: bad shapes, NaN/inf in ``x``, ``x`` outside the box, ``pixels`` < 1 or larger
        than the image, ``population`` < 4, negative ``iterations``, ``mutation`` outside (0, 2],
        bad ``outputs``, ``clip_min >= clip_max``, targeted without ``y``.

    Example:
      >>> interpreter = tfrobust.tflite_tools.TFLiteModel("model.tflite")  # doctest: +SKIP
      >>> x_adv = one_pixel(interpreter, x, y, pixels=1, seed=0)  # doctest: +SKIP

    References:
      Su, Vargas and Sakurai, One pixel attack for fooling deep neural networks, IEEE TEVC 2019,
      https://arxiv.org/abs/1710.08864
    """
    if not callable(model_fn):
        raise TypeError(f"`model_fn` must be callable. Received: model_fn={model_fn!r}")
    targeted = V.boolean("targeted", targeted)
    if isinstance(early_stop, bool):
        early_stop = "flip" if early_stop else "none"
    elif not isinstance(early_stop, str):
        raise TypeError("`early_stop` must be 'paper', 'flip', 'none' or a bool. "
                        f"Received: early_stop={early_stop!r}")
    early_stop = V.choice("early_stop", early_stop, _EARLY_STOPS)
    pixels = V.integer("pixels", pixels, minimum=1)
    population = V.integer("population", population, minimum=4)
    iterations = V.integer("iterations", iterations, minimum=0)
    if batch_size is not None:
        batch_size = V.integer("batch_size", batch_size, minimum=1)
    mutation = V.number("mutation", mutation, minimum=0.0, maximum=2.0, open_min=True)
    outputs = V.choice("outputs", outputs, _OUTPUTS)
    seed = V.seed(seed)
    clip_min, clip_max = V.clip_range(clip_min, clip_max)
    x0, dtype = _check_images(x, clip_min, clip_max)
    n, height, width, channels = x0.shape
    if pixels > height * width:
        raise ValueError(f"`pixels` must be at most H * W = {height * width}. Received: pixels={pixels}")
    rng = np.random.default_rng(seed)

    def predict(images):
        step = len(images) if batch_size is None else batch_size
        chunks = [images[i:i + step] for i in range(0, len(images), step)]
        return np.concatenate([_to_probabilities(model_fn(c), outputs, len(c)) for c in chunks], axis=0)

    if y is None:
        if targeted:
            raise ValueError("`y` (the target classes) is required when targeted=True. Received: y=None")
        labels = predict(x0).argmax(axis=-1)
    else:
        labels = None  # checked against the model's number of outputs at its first call

    genes = 2 + channels
    lower = np.tile(np.r_[0.0, 0.0, np.full(channels, clip_min)], pixels)
    upper = np.tile(np.r_[height - 1e-6, width - 1e-6, np.full(channels, clip_max)], pixels)

    def clip(cand):
        return np.clip(cand, lower, upper)

    def apply(flat_cand, image_of):
        """Perturbed images ``[M, H, W, C]`` for candidates ``[M, D]`` of images ``image_of`` ``[M]``."""
        imgs = x0[image_of]  # a copy (fancy indexing)
        per_pixel = flat_cand.reshape(len(flat_cand), pixels, genes)
        rows = per_pixel[..., 0].astype(np.int64)  # floor: coordinates live in [0, H)
        cols = per_pixel[..., 1].astype(np.int64)
        imgs[np.arange(len(flat_cand))[:, None], rows, cols] = per_pixel[..., 2:].astype(np.float32)
        return imgs

    def evaluate(cand, images_idx):
        """Fitness (higher is better) and predicted class of every candidate ``[M, P, D]``."""
        m, p, _ = cand.shape
        flat = cand.reshape(m * p, -1)
        image_of = np.repeat(images_idx, p)
        # One model call per generation; with batch_size, images are also built chunk by chunk.
        step = len(flat) if batch_size is None else batch_size
        probs = np.concatenate([predict(apply(flat[i:i + step], image_of[i:i + step]))
                                for i in range(0, len(flat), step)], axis=0).reshape(m, p, -1)
        nonlocal labels
        if labels is None:
            labels = V.labels(y, n=n, num_classes=probs.shape[-1])
        lab = labels[images_idx][:, None]
        p_label = np.take_along_axis(probs, lab[..., None], axis=-1)[..., 0]
        return (p_label if targeted else -p_label), probs.argmax(axis=-1)

    def is_adversarial(pred, images_idx):
        lab = labels[images_idx][:, None]
        return pred == lab if targeted else pred != lab

    # Fitness is p_target (targeted) or -p_true (untargeted): the paper's stop is a fitness threshold.
    stop_fitness = PAPER_TARGET_PROBABILITY if targeted else -PAPER_TRUE_PROBABILITY

    def finished(images_idx):
        if early_stop == "flip":
            return success[images_idx].any(axis=1)
        return (fitness[images_idx] > stop_fitness).any(axis=1)

    sigma = (127.0 / 255.0) * (clip_max - clip_min)
    init = np.empty((n, population, pixels, genes))
    init[..., 0] = rng.uniform(0, height, size=(n, population, pixels))
    init[..., 1] = rng.uniform(0, width, size=(n, population, pixels))
    init[..., 2:] = rng.normal((clip_min + clip_max) / 2.0, sigma, size=(n, population, pixels, channels))
    cand = clip(init.reshape(n, population, pixels * genes))

    all_idx = np.arange(n)
    fitness, pred = evaluate(cand, all_idx)
    success = is_adversarial(pred, all_idx)  # [N, P]
    done = finished(all_idx) if early_stop != "none" else np.zeros(n, dtype=bool)
    for _ in range(iterations):
        active = np.flatnonzero(~done)
        if active.size == 0:
            break
        parents = cand[active]
        r1, r2, r3 = _distinct_indices(rng, active.size, population)
        rows = np.arange(active.size)[:, None]
        children = clip(parents[rows, r1] + mutation * (parents[rows, r2] - parents[rows, r3]))
        child_fit, child_pred = evaluate(children, active)
        better = child_fit > fitness[active]
        cand[active] = np.where(better[..., None], children, parents)
        fitness[active] = np.where(better, child_fit, fitness[active])
        success[active] = np.where(better, is_adversarial(child_pred, active), success[active])
        if early_stop != "none":
            done[active] = finished(active)

    # Per image: the fittest adversarial candidate, else leave the image unchanged.
    masked = np.where(success, fitness, -np.inf)
    best = masked.argmax(axis=1)
    broken = success.any(axis=1)
    best_imgs = apply(cand[all_idx, best], all_idx)
    x_adv = np.where(broken[:, None, None, None], best_imgs, x0)
    return _as_output(x_adv, dtype, x, broken)
