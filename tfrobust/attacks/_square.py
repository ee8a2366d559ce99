"""Square Attack (Andriushchenko et al. 2020): score-based random search, no gradients."""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from tfrobust import _validate as V
from tfrobust.attacks import _common as C

# AutoAttack's piece-wise constant schedule of p (fraction of pixels a square covers): p_init is
# halved after each of these iteration counts (of a 10,000-query budget; see ``rescale_schedule``).
_P_BOUNDS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


# ----------------------------------------------------------------------------- static tables
def _side(p, h, w, norm):
    """Side of the square for a fraction ``p``: ``round(sqrt(p h w))``, >= 1 (L-inf), odd >= 3 (L2)."""
    s = int(round(math.sqrt(p * h * w)))
    if norm == "linf":
        s = max(s, 1)
    else:
        s = max(s, 3)
        s += 1 - s % 2
    return max(1, min(s, h, w))


def _eta_rect(a, b):
    """Nested centred rectangles of weight ``1/(k+1)^2`` (the L2 update's building block), unit norm."""
    d = np.zeros((a, b))
    if a == 0 or b == 0:
        return d
    ca, cb = a // 2, b // 2
    for k in range(max(ca, cb) + 1):
        d[max(ca - k, 0):min(ca + k + 1, a), max(cb - k, 0):min(cb + k + 1, b)] += 1.0 / (k + 1) ** 2
    return d / np.sqrt(np.sum(d ** 2))


def _eta(s):
    """The L2 square update ``eta(s)``: ``+eta_rect`` on the top half, ``-eta_rect`` below, unit norm."""
    d = np.zeros((s, s))
    d[: s // 2] = _eta_rect(s // 2, s)
    d[s // 2:] = -_eta_rect(s - s // 2, s)
    return d / np.sqrt(np.sum(d ** 2))


def _tables(h, w, norm, p_init):
    """Per schedule level: the square side and (L2) the padded ``eta`` pattern."""
    sides = [_side(p_init / 2 ** j, h, w, norm) for j in range(len(_P_BOUNDS) + 1)]
    smax = max(sides)
    etas = np.zeros((len(sides), smax, smax), np.float32)
    if norm == "l2":
        for j, s in enumerate(sides):
            etas[j, :s, :s] = _eta(s)
    return sides, etas


def _l2_init_tiles(h, w):
    """The L2 start: a grid of ``eta`` tiles of side ``min(h, w) // 5`` (maps of pattern and tile id)."""
    s = max(min(h, w) // 5, 1)
    nh, nw = h // s, w // s
    oh, ow = (h - s * nh) // 2, (w - s * nw) // 2
    e = _eta(s) if s >= 2 else np.ones((1, 1))
    pattern = np.zeros((h, w), np.float32)
    pattern_t = np.zeros((h, w), np.float32)
    tile = np.full((h, w), -1, np.int32)
    for i in range(nh):
        for j in range(nw):
            rows, cols = slice(oh + i * s, oh + (i + 1) * s), slice(ow + j * s, ow + (j + 1) * s)
            pattern[rows, cols] = e
            pattern_t[rows, cols] = e.T
            tile[rows, cols] = i * nw + j
    return pattern, pattern_t, tile, nh * nw


# ----------------------------------------------------------------------------- random draws
def _seed(seed, i, k):
    return None if seed is None else tf.stack([seed, tf.cast(i, tf.int64) * 16 + k])


def _randint(shape, maxval, seed):
    """Uniform ints in ``[0, maxval)``."""
    if seed is None:
        return tf.random.uniform(shape, 0, maxval, dtype=tf.int32)
    return tf.random.stateless_uniform(shape, seed, 0, maxval, dtype=tf.int32)


def _signs(shape, seed):
    """Uniform random signs in {-1, +1}."""
    u = tf.random.uniform(shape) if seed is None else tf.random.stateless_uniform(shape, seed)
    return tf.where(u < 0.5, -1.0, 1.0)


def _coins(shape, seed):
    u = tf.random.uniform(shape) if seed is None else tf.random.stateless_uniform(shape, seed)
    return u < 0.5


# ----------------------------------------------------------------------------- geometry
def _window(vh, vw, s, h, w):
    """Row mask [m, H], column mask [m, W] and offsets of per-example squares of side ``s``."""
    ri = tf.range(h)[None, :] - vh[:, None]
    ci = tf.range(w)[None, :] - vw[:, None]
    return ri, ci, (ri >= 0) & (ri < s), (ci >= 0) & (ci < s)


def _mask(rows, cols):
    return tf.cast(rows[:, :, None, None] & cols[:, None, :, None], tf.float32)  # [m, H, W, 1]


def _place(pattern, transpose, ri, ci, rows, cols):
    """Per example, ``pattern`` (or its transpose) placed at the square's offset; [m, H, W, 1]."""
    smax = pattern.shape[0]
    pb = tf.where(transpose[:, None, None], tf.transpose(pattern)[None], pattern[None])
    r = tf.gather(pb, tf.clip_by_value(ri, 0, smax - 1), axis=1, batch_dims=1)  # [m, H, Smax]
    full = tf.gather(r, tf.clip_by_value(ci, 0, smax - 1), axis=2, batch_dims=1)  # [m, H, W]
    return full[..., None] * _mask(rows, cols)


def _norm2(v, axes=(1, 2, 3)):
    return tf.sqrt(tf.reduce_sum(tf.square(v), axis=list(axes), keepdims=True))


def _margin(logits, y):
    """``z_y - max_{i != y} z_i``: positive while the example is classified correctly."""
    z_y = tf.gather(logits, y, axis=1, batch_dims=1)
    k = tf.shape(logits)[1]
    others = tf.where(tf.one_hot(y, k, on_value=True, off_value=False), -math.inf, logits)
    return z_y - tf.reduce_max(others, axis=1)


# ----------------------------------------------------------------------------- the loop
def _square_impl(model_fn, x, y, eps, clip_min, clip_max, seed, *, norm, iterations, p_init, rescale,
                 has_y, seed_given, shape, eot_samples):
    """Random search on float32 NHWC tensors; pure TF ops (a ``tf.while_loop``)."""
    seed = seed if seed_given else None
    h, w, c = (int(d) for d in x.shape[1:])

    def logits_of(z):
        return C.forward(model_fn, tf.reshape(z, [-1, *shape]), eot_samples)

    if not has_y:
        y = tf.argmax(logits_of(x), axis=1, output_type=tf.int32)
    n = tf.shape(x)[0]
    sides, etas = _tables(h, w, norm, p_init)
    side_table = tf.constant(sides, tf.int32)
    eta_table = tf.constant(etas)

    # Start: vertical stripes of +-eps (L-inf); a grid of +-eta tiles scaled to norm eps (L2).
    if norm == "linf":
        x0 = x + eps * _signs(tf.stack([n, 1, w, c]), _seed(seed, -1, 0))
    else:
        pattern, pattern_t, tile, tiles = _l2_init_tiles(h, w)
        sgn = _signs(tf.stack([n, tiles, c]), _seed(seed, -1, 0))
        flip = _coins(tf.stack([n, tiles]), _seed(seed, -1, 1))
        tid = tf.constant(np.maximum(tile, 0).reshape(-1))
        inside = tf.constant((tile >= 0).astype(np.float32).reshape(1, h, w, 1))
        pat = tf.where(tf.gather(flip, tid, axis=1)[..., None],
                       tf.constant(pattern_t.reshape(1, -1, 1)), tf.constant(pattern.reshape(1, -1, 1)))
        d0 = tf.reshape(pat * tf.gather(sgn, tid, axis=1), [n, h, w, c]) * inside
        x0 = x + eps * d0 / tf.maximum(_norm2(d0), 1e-12)
    x0 = tf.clip_by_value(x0, clip_min, clip_max)
    logits0 = logits_of(x0)
    margin0 = _margin(logits0, y)
    # Success is the arg-max decision (a tie z_y = max_{i != y} z_i can go either way).
    done0 = tf.not_equal(tf.argmax(logits0, axis=1, output_type=tf.int32), y)

    def body(i, x_best, margin_min, done, queries):
        it = i
        if rescale:  # the schedule's marks are for 10,000 queries
            it = tf.cast(tf.math.floor(tf.cast(i, tf.float64) / iterations * 10000), tf.int32)
        level = tf.reduce_sum(tf.cast(it > tf.constant(_P_BOUNDS), tf.int32))
        s = side_table[level]
        idx = tf.where(~done)  # [m, 1]: only examples not yet misclassified are queried
        xc = tf.gather_nd(x, idx)
        xb = tf.gather_nd(x_best, idx)
        yc = tf.gather_nd(y, idx)
        # Draws for all n examples, then gathered: the result does not depend on who is still active.
        vh = tf.gather_nd(_randint([n], h - s + 1, _seed(seed, i, 0)), idx)
        vw = tf.gather_nd(_randint([n], w - s + 1, _seed(seed, i, 1)), idx)
        sgn = tf.gather_nd(_signs(tf.stack([n, 1, 1, c]), _seed(seed, i, 2)), idx)
        ri, ci, rows, cols = _window(vh, vw, s, h, w)
        if norm == "linf":
            # The square takes the values x +- eps (one sign per channel); the rest stays x_best.
            cand = xb + _mask(rows, cols) * (2.0 * eps) * sgn
            cand = tf.clip_by_value(tf.clip_by_value(cand, xc - eps, xc + eps), clip_min, clip_max)
        else:
            vh2 = tf.gather_nd(_randint([n], h - s + 1, _seed(seed, i, 3)), idx)
            vw2 = tf.gather_nd(_randint([n], w - s + 1, _seed(seed, i, 4)), idx)
            flip = tf.gather_nd(_coins([n], _seed(seed, i, 5)), idx)
            _, _, rows2, cols2 = _window(vh2, vw2, s, h, w)
            m1, m2 = _mask(rows, cols), _mask(rows2, cols2)
            delta = xb - xc
            # Move the mass of window 2 into window 1, keep the total norm at eps.
            old = delta * m1 / (1e-12 + _norm2(delta * m1, (1, 2)))
            new = _place(eta_table[level], flip, ri, ci, rows, cols) * sgn + old
            budget = tf.sqrt(tf.maximum(eps ** 2 - tf.square(_norm2(delta)), 0.0) / c
                             + tf.square(_norm2(delta * tf.maximum(m1, m2))))
            new = new / (1e-12 + _norm2(new, (1, 2))) * budget
            delta = delta * (1.0 - tf.maximum(m1, m2)) + new
            cand = tf.clip_by_value(xc + eps * delta / tf.maximum(_norm2(delta), 1e-12), clip_min, clip_max)
        logits = logits_of(cand)
        margin = _margin(logits, yc)
        fooled = tf.not_equal(tf.argmax(logits, axis=1, output_type=tf.int32), yc)
        old_margin = tf.gather_nd(margin_min, idx)
        better = (margin < old_margin) | fooled
        x_best = tf.tensor_scatter_nd_update(x_best, idx, tf.where(better[:, None, None, None], cand, xb))
        margin_min = tf.tensor_scatter_nd_update(margin_min, idx, tf.minimum(margin, old_margin))
        done = tf.tensor_scatter_nd_update(done, idx, fooled)
        queries = tf.tensor_scatter_nd_add(queries, idx, tf.ones_like(yc))
        return i + 1, x_best, margin_min, done, queries

    def cond(i, x_best, margin_min, done, queries):
        return (i < iterations) & ~tf.reduce_all(done)

    vec = tf.TensorShape([None])
    _, x_best, _, _, queries = tf.while_loop(
        cond, body, (tf.constant(0), x0, margin0, done0, tf.ones([n], tf.int32)),
        shape_invariants=(tf.TensorShape([]), x.shape, vec, vec, vec))
    return x_best, queries


def _as_nhwc(shape):
    """Per-example shape -> (H, W, C) the search works on: images, grey images or flat vectors."""
    if len(shape) == 3:
        return tuple(shape)
    if len(shape) == 2:
        return (*shape, 1)
    return (1, int(np.prod(shape)), 1)


def square(model_fn, x, y=None, *, eps, norm="linf", queries=5000, p_init=0.8, rescale_schedule=False,
           clip_min=0.0, clip_max=1.0, seed=None, batch_size=None, return_queries=False):
    """Square Attack (Andriushchenko et al. 2020): score-based random search, no gradients at all.

    Each iteration proposes, for every example not yet misclassified, one change localised in a
    random square window of side ``s = round(sqrt(p H W))`` and keeps it if it lowers the margin
    loss

        ``L(x) = z_y(x) - max_{i != y} z_i(x)``

    (or makes the arg-max differ from ``y``, which ends the search for that example).

    - **L-inf**: start from vertical stripes ``x + eps * sign`` (one random sign per column and
      channel); a proposal sets the window to ``x + eps * sigma_c`` (one random sign per channel),
      projected onto the ball and clipped.
    - **L2**: start from a grid of ``+-eta`` tiles scaled to ``|delta|_2 = eps``, where ``eta`` is
      a pattern of nested rectangles with weights ``1/(k+1)^2`` (``+`` on one half, ``-`` on the
      other). A proposal moves the perturbation's mass of a second random window into the first,
      adds ``+-eta`` there, rescales the window so the total norm stays ``eps`` (budget
      ``sqrt(max(eps^2 - |delta|^2, 0) / C + |delta_{W1 u W2}|^2)``), then clips.

    The fraction ``p`` follows AutoAttack's schedule: ``p_init`` halved after iterations 10, 50,
    200, 500, 1000, 2000, 4000, 6000 and 8000 (``rescale_schedule=True`` stretches these marks to
    the query budget, as the original code does). Examples stop being queried as soon as they are
    misclassified. The model is only ever called forward, so it works on anything that returns
    logits: a Keras model, a SavedModel, a :class:`~tfrobust.tflite_tools.TFLiteModel` (through
    ``tf.numpy_function``), a model whose gradients are masked or zero.

    The loop is one ``tf.while_loop`` (compiled and cached per ``model_fn`` when called eagerly,
    inlined inside a caller's ``tf.function``). Cost: at most ``queries`` forward passes per
    example (the start counts as one), on the still-robust examples only.

    Args:
      model_fn: callable mapping float images to logits (no gradients needed).
      x: float images ``[N, ...]`` in ``[clip_min, clip_max]`` (NHWC, ``[N, H, W]`` or ``[N, D]``).
      y: labels ``[N]`` (or one-hot); None uses the model's predictions.
      eps: radius of the ball (>= 0).
      norm: ``"linf"`` or ``"l2"``.
      queries: model evaluations per example, including the start (int >= 1; AutoAttack: 5000).
      p_init: initial fraction of pixels in a square, in (0, 1] (AutoAttack: 0.8 for both norms).
      rescale_schedule: stretch the schedule to ``queries`` (AutoAttack's standard run: False).
      clip_min: lower bound of valid inputs.
      clip_max: upper bound of valid inputs.
      seed: int for a reproducible search, None for TF's global RNG.
      batch_size: examples per search when eager (None: all at once); ignored inside a graph.
      return_queries: also return the queries spent per example (int32 ``[N]``).

    Returns:
      ``x_adv`` with ``x``'s shape and dtype, inside the eps-ball and the clip range; with
      ``return_queries``, ``(x_adv, queries)``.

    Raises:
      ValueError / TypeError: for a bad argument, naming it.

    Example:
      >>> x_adv = square(TFLiteModel("model_int8.tflite"), x, y, eps=0.1, queries=1000, seed=0)

    References:
      Andriushchenko, Croce, Flammarion & Hein, Square Attack: a query-efficient black-box
      adversarial attack via random search, ECCV 2020, https://arxiv.org/abs/1912.00049;
      Croce & Hein, AutoAttack, ICML 2020, https://arxiv.org/abs/2003.01690
    """
    model_fn = C.check_model_fn(model_fn)
    eps = V.number("eps", eps, minimum=0.0, allow_tensor=True)
    norm = V.choice("norm", norm, C.NORMS)
    queries = V.integer("queries", queries, minimum=1)
    p_init = V.number("p_init", p_init, minimum=0.0, maximum=1.0, open_min=True)
    rescale_schedule = V.boolean("rescale_schedule", rescale_schedule)
    clip_min, clip_max = V.clip_range(clip_min, clip_max, allow_tensor=True)
    seed = V.seed(seed)
    if batch_size is not None:
        batch_size = V.integer("batch_size", batch_size, minimum=1)
    return_queries = V.boolean("return_queries", return_queries)
    xw, yw, dtype = C.prepare_inputs(x, y, targeted=False, clip_min=clip_min, clip_max=clip_max)
    x_in = tf.convert_to_tensor(x)
    shape = tuple(int(d) if d is not None else None for d in xw.shape[1:])
    if None in shape:
        raise ValueError(f"`x` must have a fully known per-example shape. Received: x.shape={xw.shape}")
    n_static = xw.shape[0]
    if isinstance(eps, float) and eps == 0.0:  # nothing to search: no query spent
        q = tf.zeros([tf.shape(xw)[0]], tf.int32)
        return (x_in, q) if return_queries else x_in
    static = dict(norm=norm, iterations=queries - 1, p_init=float(p_init), rescale=rescale_schedule,
                  has_y=yw is not None, seed_given=seed is not None, shape=shape)
    nhwc = _as_nhwc(shape)
    x4 = tf.reshape(xw, [-1, *nhwc])
    if yw is None:
        yw = tf.zeros([0], tf.int32)
    consts = (tf.cast(eps, tf.float32), tf.cast(clip_min, tf.float32), tf.cast(clip_max, tf.float32))
    if not tf.executing_eagerly() or batch_size is None or (n_static is not None and n_static <= batch_size):
        chunks = [(x4, yw, seed or 0)]
    else:
        n = int(n_static)
        chunks = [(x4[s:s + batch_size], yw[s:s + batch_size] if yw.shape[0] else yw,
                   ((seed or 0) + 7919 * (s // batch_size)) % 2**63) for s in range(0, n, batch_size)]
    outs, qs = [], []
    for xc, yc, sc in chunks:
        xa, q = C.run(model_fn, "square", _square_impl, static, (xc, yc, *consts, tf.constant(sc, tf.int64)))
        outs.append(xa)
        qs.append(q)
    x_adv = tf.reshape(outs[0] if len(outs) == 1 else tf.concat(outs, 0), tf.shape(xw))
    x_adv = C.finalize(x_in, x_adv, eps, norm, clip_min, clip_max, dtype)
    q = qs[0] if len(qs) == 1 else tf.concat(qs, 0)
    return (x_adv, q) if return_queries else x_adv
