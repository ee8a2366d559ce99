"""Batch augmentations used by the design-note architectures: mixup, random erasing, label smoothing.

All three are pure TensorFlow functions of a batch, so they run inside ``tf.data`` (``ds.map``), a
``tf.function`` train step or eagerly. The ``*_fn`` factories return ``(x, y) -> (x, y)`` callables
ready for ``Dataset.map`` on *batched* datasets.
"""

from __future__ import annotations

import tensorflow as tf

from tfrobust import _validate as V


def _check_prob(name, value, *, low_open=False):
    return V.fraction(name, value, open_min=low_open)


def _check_positive(name, value):
    return V.number(name, value, minimum=0.0, open_min=True)


def _check_num_classes(num_classes):
    return None if num_classes is None else V.integer("num_classes", num_classes, minimum=2)


def _as_onehot(y, num_classes, dtype):
    """Sparse labels ``[N]`` -> one-hot ``[N, K]``; rank-2 labels pass through (already soft/one-hot)."""
    y = tf.convert_to_tensor(y)
    if y.shape.rank == 2:
        return tf.cast(y, dtype)
    if num_classes is None:
        raise ValueError("`num_classes` is required for sparse (integer) labels. Received: num_classes=None")
    return tf.one_hot(tf.cast(y, tf.int32), num_classes, dtype=dtype)


def sample_beta(alpha: float, shape=(), *, seed=None) -> tf.Tensor:
    """Draw ``Beta(alpha, alpha)`` samples as ``G1 / (G1 + G2)`` with ``G1, G2 ~ Gamma(alpha, 1)``."""
    _check_positive("alpha", alpha)
    seed2 = None if seed is None else seed + 1
    g1 = tf.random.gamma(shape, alpha, dtype=tf.float32, seed=seed)
    g2 = tf.random.gamma(shape, alpha, dtype=tf.float32, seed=seed2)
    return g1 / tf.maximum(g1 + g2, 1e-12)


def mixup(x, y, *, alpha: float = 0.2, num_classes: int | None = None, seed: int | None = None):
    """mixup on one batch: convex combinations of image pairs and of their one-hot labels.

    ``lam ~ Beta(alpha, alpha)`` (one value per batch, as in the reference code), ``j`` a random
    permutation of the batch::

        x~_i = lam * x_i + (1 - lam) * x_j(i)
        y~_i = lam * onehot(y_i) + (1 - lam) * onehot(y_j(i))

    Train with a *categorical* cross-entropy on the soft labels (the trainers pick it
    automatically when the labels have rank 2).

    Args:
      x: images ``[N, H, W, C]`` (float).
      y: sparse labels ``[N]`` or one-hot/soft labels ``[N, K]``.
      alpha: the Beta parameter (> 0); small values (0.1-0.4) mix little most of the time.
      num_classes: K, required when ``y`` is sparse.
      seed: op seed (with the global seed) for reproducible draws.

    Returns:
      ``(x_mixed, y_mixed)`` with ``y_mixed`` float ``[N, K]``.

    References:
      Zhang et al., mixup: Beyond Empirical Risk Minimization, ICLR 2018,
      https://arxiv.org/abs/1710.09412
    """
    _check_positive("alpha", alpha)
    _check_num_classes(num_classes)
    x = tf.convert_to_tensor(x)
    if not x.dtype.is_floating:
        raise TypeError("`x` must be floating point (scale images to [0, 1] first). "
                        f"Received: x.dtype={x.dtype}")
    y1 = _as_onehot(y, num_classes, x.dtype)
    lam = tf.cast(sample_beta(alpha, (), seed=seed), x.dtype)
    perm = tf.random.shuffle(tf.range(tf.shape(x)[0]), seed=seed)
    x_mix = lam * x + (1.0 - lam) * tf.gather(x, perm)
    y_mix = lam * y1 + (1.0 - lam) * tf.gather(y1, perm)
    return x_mix, y_mix


def mixup_fn(alpha: float = 0.2, *, num_classes: int | None = None, seed: int | None = None):
    """A ``Dataset.map`` function applying :func:`mixup` to each *batch*."""
    _check_positive("alpha", alpha)
    _check_num_classes(num_classes)

    def fn(x, y):
        return mixup(x, y, alpha=alpha, num_classes=num_classes, seed=seed)

    return fn


def random_erasing(x, *, p: float = 0.5, sl: float = 0.02, sh: float = 0.4, r1: float = 0.3,
                   value_range=(0.0, 1.0), max_attempts: int = 100, seed: int | None = None):
    """Random Erasing (Zhong et al., Algorithm 1) on a batch or a single image.

    For each image, with probability ``p``: repeat ``S_e = U(sl, sh) * H * W``,
    ``r_e = U(r1, 1 / r1)``, ``H_e = round(sqrt(S_e * r_e))``, ``W_e = round(sqrt(S_e / r_e))``,
    ``x_e = U[0, W)``, ``y_e = U[0, H)`` until the rectangle fits (``x_e + W_e <= W`` and
    ``y_e + H_e <= H``), then fill it with uniform random values in ``value_range`` (the paper's
    ``Rand(0, 255)`` for images scaled to [0, 1]). The paper's ``while True`` is bounded by
    ``max_attempts`` candidates (the reference code uses 100); an image with no fitting candidate is
    left unchanged. All candidates are drawn at once, so the op is vectorised over the batch.

    Args:
      x: float images ``[N, H, W, C]`` or ``[H, W, C]``.
      p: erasing probability in [0, 1].
      sl, sh: erased-area fraction range, ``0 < sl <= sh <= 1``.
      r1: aspect ratio range is ``[r1, 1 / r1]``, ``0 < r1 <= 1``.
      value_range: ``(low, high)`` of the random fill values.
      max_attempts: candidate rectangles per image.
      seed: op seed.

    Returns:
      The erased images, same shape and dtype as ``x``.

    References:
      Zhong et al., Random Erasing Data Augmentation, AAAI 2020, https://arxiv.org/abs/1708.04896
    """
    _check_prob("p", p)
    _check_prob("sl", sl, low_open=True)
    _check_prob("sh", sh, low_open=True)
    if sl > sh:
        raise ValueError(f"`sl` must be <= `sh`. Received: sl={sl!r}, sh={sh!r}")
    _check_prob("r1", r1, low_open=True)
    V.integer("max_attempts", max_attempts, minimum=1)
    lo, hi = value_range
    V.number("value_range[0]", lo)
    V.number("value_range[1]", hi)
    if not lo <= hi:
        raise ValueError("`value_range` must be (low, high) with low <= high. "
                         f"Received: value_range={value_range!r}")
    x = tf.convert_to_tensor(x)
    if not x.dtype.is_floating:
        raise TypeError(f"`x` must be floating point. Received: x.dtype={x.dtype}")
    single = x.shape.rank == 3
    if single:
        x = x[None]
    if x.shape.rank != 4:
        raise ValueError(f"`x` must have rank 3 or 4. Received: x.shape={x.shape}")
    seeds = [None] * 6 if seed is None else [seed + i for i in range(6)]
    shape = tf.shape(x)
    n, h, w = shape[0], shape[1], shape[2]
    hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
    cand = (n, max_attempts)
    area = tf.random.uniform(cand, sl, sh, seed=seeds[0]) * hf * wf
    # Aspect ratio drawn uniformly in [r1, 1/r1], as in Algorithm 1 (r2 = 1 / r1).
    ratio = tf.random.uniform(cand, r1, 1.0 / r1, seed=seeds[1])
    he = tf.cast(tf.round(tf.sqrt(area * ratio)), tf.int32)
    we = tf.cast(tf.round(tf.sqrt(area / ratio)), tf.int32)
    xe = tf.random.uniform(cand, 0, w, dtype=tf.int32, seed=seeds[2])
    ye = tf.random.uniform(cand, 0, h, dtype=tf.int32, seed=seeds[3])
    fits = (xe + we <= w) & (ye + he <= h) & (he > 0) & (we > 0)
    first = tf.argmax(tf.cast(fits, tf.int32), axis=1, output_type=tf.int32)
    any_fit = tf.reduce_any(fits, axis=1)
    apply = (tf.random.uniform((n,), seed=seeds[4]) < p) & any_fit

    def pick(t):
        return tf.gather(t, first, axis=1, batch_dims=1)

    he, we, xe, ye = pick(he), pick(we), pick(xe), pick(ye)
    rows = tf.range(h)[None, :]
    cols = tf.range(w)[None, :]
    in_rows = (rows >= ye[:, None]) & (rows < (ye + he)[:, None])
    in_cols = (cols >= xe[:, None]) & (cols < (xe + we)[:, None])
    mask = in_rows[:, :, None] & in_cols[:, None, :] & apply[:, None, None]
    noise = tf.random.uniform(shape, lo, hi, dtype=x.dtype, seed=seeds[5])
    out = tf.where(mask[..., None], noise, x)
    return out[0] if single else out


def random_erasing_fn(p: float = 0.5, *, sl: float = 0.02, sh: float = 0.4, r1: float = 0.3,
                      value_range=(0.0, 1.0), seed: int | None = None):
    """A ``Dataset.map`` function ``(x, y) -> (random_erasing(x), y)``; arguments checked now."""
    random_erasing(tf.zeros((1, 4, 4, 1)), p=p, sl=sl, sh=sh, r1=r1, value_range=value_range)

    def fn(x, y):
        return random_erasing(x, p=p, sl=sl, sh=sh, r1=r1, value_range=value_range, seed=seed), y

    return fn


def smooth_labels(y, *, smoothing: float, num_classes: int | None = None):
    """Label smoothing: ``q~(k) = (1 - smoothing) * q(k) + smoothing / K``.

    Args:
      y: sparse labels ``[N]`` or one-hot/soft labels ``[N, K]``.
      smoothing: the epsilon of Szegedy et al., in [0, 1].
      num_classes: K, required for sparse labels.

    References:
      Szegedy et al., Rethinking the Inception Architecture, CVPR 2016, https://arxiv.org/abs/1512.00567
    """
    _check_prob("smoothing", smoothing)
    _check_num_classes(num_classes)
    y1 = _as_onehot(y, num_classes, tf.float32)
    k = tf.cast(tf.shape(y1)[-1], y1.dtype)
    return (1.0 - smoothing) * y1 + smoothing / k


def label_smoothing_fn(smoothing: float, *, num_classes: int | None = None):
    """A ``Dataset.map`` function ``(x, y) -> (x, smooth_labels(y))``."""
    _check_prob("smoothing", smoothing)
    _check_num_classes(num_classes)

    def fn(x, y):
        return x, smooth_labels(y, smoothing=smoothing, num_classes=num_classes)

    return fn
