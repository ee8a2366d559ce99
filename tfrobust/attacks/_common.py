"""Shared machinery of the gradient attacks: argument checks, losses, projections, compiled-loop cache.

Every attack is written once as a graph-friendly function of tensors (``tf.while_loop``, no NumPy,
no Python state). Called eagerly, the attack runs that function through a ``tf.function`` cached
per ``model_fn`` and static configuration, so repeated calls never retrace; called inside a
user's ``tf.function`` (an adversarial train step, a ``tf.distribute`` replica function) the same
ops are simply inlined into the caller's graph.
"""

from __future__ import annotations

import math
import weakref

import tensorflow as tf

from tfrobust import _validate as V
from tfrobust.layers import bpda_active

NORMS = ("linf", "l2")
LOSSES = ("ce", "dlr", "margin")

# ----------------------------------------------------------------------------- argument checks
# The rules live in tfrobust._validate; this module only adds what attacks need on top of them:
# inputs that may be symbolic tensors inside a user's tf.function.
def _static_dummy(t, fill_batch=1):
    """An eager zero array of ``t``'s dtype and static rank (unknown dims -> 1).

    Inside a graph the values of ``t`` are unknown, but the static part of a rule (dtype, rank)
    still applies: checking this stand-in with the same ``_validate`` rule keeps the rule in one
    place.
    """
    dims = [fill_batch] + [1 if d is None else d for d in t.shape[1:]] if t.shape.rank else [1, 1]
    with tf.init_scope():
        return tf.zeros(dims, t.dtype)


def inner_model(model_fn):
    """The object whose ``input_shape`` describes ``model_fn``'s inputs (an EOT wrapper's inner model)."""
    return unwrap_eot(model_fn)[0]


def num_classes_of(model_fn, x):
    """Number of logits of ``model_fn``, from one eager forward pass on ``x[:1]``."""
    return int(as_logits(inner_model(model_fn)(x[:1])).shape[1])


def prepare_inputs(x, y, *, targeted, clip_min, clip_max, model_fn=None):
    """Validate and convert ``x`` (float images) and ``y`` (int labels [N] or one-hot [N, K]).

    Eagerly every rule of :func:`tfrobust._validate.images` / :func:`~tfrobust._validate.labels`
    applies (dtype, rank, the model's input shape when ``model_fn`` is a Keras model, finite values,
    the clip range; labels against the model's number of classes, found with one forward pass of
    one image). Inside a graph only their static part can run (dtype and rank).

    Returns ``(x_work, y_work, x_dtype)`` with ``x_work`` float32 and ``y_work`` int32 or None.
    """
    if not isinstance(x, (tf.Tensor, tf.Variable)):
        try:
            x = tf.convert_to_tensor(x)
        except (ValueError, TypeError) as e:
            raise TypeError(f"`x` must be a tensor or array of images. Received: x of type "
                            f"{type(x).__name__}") from e
    dtype = x.dtype
    eager = tf.executing_eagerly()
    if eager:
        model = inner_model(model_fn) if model_fn is not None else None
        V.images(x, clip_min=float(clip_min), clip_max=float(clip_max), model=model)
    else:
        V.images(_static_dummy(x), clip_min=0.0, clip_max=1.0)
    xw = tf.cast(x, tf.float32) if dtype != tf.float32 else x
    if y is None:
        if targeted:
            raise ValueError("`y` must give the target classes when targeted=True. Received: y=None")
        return xw, None, dtype
    if eager:
        k = num_classes_of(model_fn, xw) if model_fn is not None else None
        y = tf.constant(V.labels(y, n=int(xw.shape[0]), num_classes=k), tf.int32)
        return xw, y, dtype
    y = tf.convert_to_tensor(y)
    V.labels(_static_dummy(y).numpy())
    y = tf.argmax(y, axis=1, output_type=tf.int32) if y.shape.rank == 2 else tf.cast(y, tf.int32)
    return xw, y, dtype


def finalize(x_orig, x_adv, eps, norm, clip_min, clip_max, dtype):
    """Project once more in the caller's dtype, so the eps-ball and clip range hold exactly there."""
    x_orig = tf.convert_to_tensor(x_orig)
    if dtype != tf.float32:
        x_adv = tf.cast(x_adv, dtype)
    delta = project(x_adv - x_orig, _in_dtype(eps, dtype), norm)
    return tf.clip_by_value(x_orig + delta, _in_dtype(clip_min, dtype), _in_dtype(clip_max, dtype))


def _in_dtype(v, dtype):
    # tf.cast(0.05, tf.float64) would round through float32 first; convert Python numbers directly.
    return tf.cast(v, dtype) if isinstance(v, (tf.Tensor, tf.Variable)) else tf.constant(v, dtype)


# ----------------------------------------------------------------------------- math helpers
def _batch_shape(x):
    """Shape [N, 1, 1, ...] to broadcast a per-example vector against ``x``."""
    rank = x.shape.rank
    if rank is not None:
        return [-1] + [1] * (rank - 1)
    return tf.concat([[-1], tf.ones([tf.rank(x) - 1], tf.int32)], 0)


def per_example(v, x):
    return tf.reshape(v, _batch_shape(x))


def l2_norm(x, keepdims=True):
    axes = list(range(1, x.shape.rank)) if x.shape.rank is not None else tf.range(1, tf.rank(x))
    return tf.sqrt(tf.reduce_sum(tf.square(x), axis=axes, keepdims=keepdims))


def project(delta, eps, norm):
    """Project onto the eps-ball: ``clip(delta, -eps, eps)`` or ``delta * min(1, eps / |delta|_2)``."""
    if norm == "linf":
        return tf.clip_by_value(delta, -eps, eps)
    n = l2_norm(delta)
    factor = tf.minimum(tf.ones_like(n), eps / tf.maximum(n, 1e-12))
    return delta * factor


def ascent_direction(grad, norm):
    """Steepest ascent direction of unit norm: ``sign(g)`` (L-inf) or ``g / |g|_2`` (L2)."""
    if norm == "linf":
        return tf.sign(grad)
    return grad / tf.maximum(l2_norm(grad), 1e-12)


def random_delta(x, eps, norm, seed):
    """A random start: uniform in the L-inf ball, or uniform in the L2 ball (direction x radius)."""
    shape = tf.shape(x)
    if norm == "linf":
        if seed is None:
            u = tf.random.uniform(shape, -1.0, 1.0)
        else:
            u = tf.random.stateless_uniform(shape, seed, -1.0, 1.0)
        return eps * u
    if seed is None:
        d = tf.random.normal(shape)
        r = tf.random.uniform(shape[:1])
    else:
        d = tf.random.stateless_normal(shape, seed)
        r = tf.random.stateless_uniform(shape[:1], seed + tf.constant([0, 7919], seed.dtype))
    dim = tf.cast(tf.reduce_prod(shape[1:]), tf.float32)
    radius = eps * tf.pow(r, 1.0 / dim)
    return d / tf.maximum(l2_norm(d), 1e-12) * per_example(radius, x)


# ----------------------------------------------------------------------------- losses
def as_logits(out):
    """Accept a tensor, or a 1-element list/tuple/dict (SavedModel signatures return dicts)."""
    if isinstance(out, dict):
        if len(out) != 1:
            raise ValueError("`model_fn` must return a logits tensor [N, K]; it returned a dict with "
                             f"keys {sorted(out)}. Received: model_fn output keys={sorted(out)}")
        out = next(iter(out.values()))
    if isinstance(out, (list, tuple)):
        if len(out) != 1:
            raise ValueError("`model_fn` must return one logits tensor [N, K]. "
                             f"Received: model_fn output with {len(out)} tensors")
        out = out[0]
    out = tf.convert_to_tensor(out)
    if out.shape.rank is not None and out.shape.rank != 2:
        raise ValueError(f"`model_fn` must return logits of shape [N, K]. Received: output shape {out.shape}")
    return tf.cast(out, tf.float32)


def _top_other(logits, y):
    """Largest logit among the classes other than ``y``."""
    k = tf.shape(logits)[1]
    mask = tf.one_hot(y, k, on_value=True, off_value=False)
    return tf.reduce_max(tf.where(mask, tf.fill(tf.shape(logits), -math.inf), logits), axis=1)


def _dlr_denominator(logits, targeted):
    k = logits.shape[1]
    need = 4 if targeted else 3
    if k is not None and k < need:
        raise ValueError(f"loss='dlr' needs at least {need} classes{' when targeted' if targeted else ''}. "
                         f"Received: {k} logits")
    top = tf.math.top_k(logits, k=need).values
    if targeted:
        return top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12
    return top[:, 0] - top[:, 2] + 1e-12


def objective(loss, logits, y, targeted, target=None):
    """Per-example objective the attack *maximises*.

    - ``ce``: ``CE(z, y)`` untargeted, ``-CE(z, t)`` targeted.
    - ``margin`` (Carlini-Wagner): ``max_{i != y} z_i - z_y``; targeted ``z_t - max_{i != t} z_i``.
    - ``dlr`` (Croce & Hein 2020): ``-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)``; targeted
      ``-(max_{i != t} z_i - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)`` with ``z_pi`` sorted descending.
    - ``dlr-targeted`` (APGD-T; ``y`` the true classes, ``target`` the class to reach):
      ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)``; success is still ``argmax z != y``.
    """
    if loss == "dlr-targeted":
        z_y = tf.gather(logits, y, axis=1, batch_dims=1)
        z_t = tf.gather(logits, target, axis=1, batch_dims=1)
        return (z_t - z_y) / _dlr_denominator(logits, True)
    if loss == "ce":
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
        return -ce if targeted else ce
    z_y = tf.gather(logits, y, axis=1, batch_dims=1)
    other = _top_other(logits, y)
    margin = (z_y - other) if targeted else (other - z_y)
    if loss == "margin":
        return margin
    return margin / _dlr_denominator(logits, targeted)


def fooled(logits, y, targeted):
    pred = tf.argmax(logits, axis=1, output_type=tf.int32)
    return tf.equal(pred, y) if targeted else tf.not_equal(pred, y)


def predict_labels(model_fn, x):
    return tf.argmax(as_logits(model_fn(x)), axis=1, output_type=tf.int32)


def loss_and_grad(model_fn, x, y, loss, targeted, eot_samples=1, target=None):
    """Per-example objective, its gradient w.r.t. ``x`` (of the batch sum) and the logits.

    With ``eot_samples > 1`` (a stochastic model under :func:`tfrobust.attacks.eot`) the objective
    and the gradient are averages over that many forward passes (Athalye et al. 2018), and the
    logits are averaged too.
    """
    with tf.GradientTape() as tape:
        tape.watch(x)
        total, logits_sum = None, None
        for _ in range(eot_samples):
            logits = as_logits(model_fn(x))
            obj = objective(loss, logits, y, targeted, target)
            total = obj if total is None else total + obj
            logits_sum = logits if logits_sum is None else logits_sum + logits
        if eot_samples > 1:
            total = total / eot_samples
            logits_sum = logits_sum / eot_samples
        summed = tf.reduce_sum(total)
    grad = tape.gradient(summed, x)
    if grad is None:  # the output does not depend on x at all (e.g. a stop_gradient)
        grad = tf.zeros_like(x)
    return total, grad, logits_sum


# ----------------------------------------------------------------------------- compiled-loop cache
class _Cache:
    """``tf.function``s per (model_fn, static config), held without keeping ``model_fn`` alive."""

    def __init__(self):
        self._by_owner = weakref.WeakKeyDictionary()

    @staticmethod
    def _owner_and_caller(model_fn):
        owner = getattr(model_fn, "__self__", None)
        func = getattr(model_fn, "__func__", None)
        if owner is not None and func is not None:  # a bound method: key on its instance
            ref = weakref.ref(owner)
            return owner, func, (lambda x: func(ref(), x))
        ref = weakref.ref(model_fn)
        return model_fn, None, (lambda x: ref()(x))

    def get(self, model_fn, key, build):
        try:
            owner, func, caller = self._owner_and_caller(model_fn)
            table = self._by_owner.setdefault(owner, {})
        except TypeError:  # not weak-referenceable: compile without caching
            return build(model_fn)
        full_key = (func, key)
        fn = table.get(full_key)
        if fn is None:
            fn = build(caller)
            table[full_key] = fn
        return fn

    def clear(self):
        self._by_owner = weakref.WeakKeyDictionary()


CACHE = _Cache()
_BUILT = [0]


def forward(model_fn, x, eot_samples=1):
    """Logits, averaged over ``eot_samples`` forward passes for a stochastic model."""
    logits = as_logits(model_fn(x))
    for _ in range(eot_samples - 1):
        logits = logits + as_logits(model_fn(x))
    return logits / eot_samples if eot_samples > 1 else logits


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
        self.model_fn = check_model_fn(model_fn)
        self.samples = V.integer("samples", samples, minimum=1)

    def __call__(self, x):
        return forward(self.model_fn, x, self.samples)

    def __repr__(self):
        return f"EOT({self.model_fn!r}, samples={self.samples})"


def eot(model_fn, samples: int) -> EOT:
    """Wrap a randomized ``model_fn`` for Expectation over Transformation; see :class:`EOT`.

    Example:
      >>> x_adv = pgd(eot(model, samples=10), x, y, eps=0.1, step_size=0.01, steps=40)
    """
    return EOT(model_fn, samples)


def unwrap_eot(model_fn):
    """``(inner model_fn, samples)`` of an :class:`EOT` wrapper, or ``(model_fn, 1)``."""
    if isinstance(model_fn, EOT):
        return model_fn.model_fn, model_fn.samples
    return model_fn, 1


def run(model_fn, name, impl, static, args):
    """Run ``impl(model_fn, *args, eot_samples=..., **static)`` compiled (eager) or inlined (graph).

    An :class:`~tfrobust.attacks.EOT` wrapper is unwrapped here: the attack sees the inner model
    and the number of samples, and averages objectives and gradients over the samples itself.
    """
    static = dict(static)
    model_fn, static["eot_samples"] = unwrap_eot(model_fn)
    if not tf.executing_eagerly():
        return impl(model_fn, *args, **static)
    # The batch dimension is left free in the signature: a smaller last batch never retraces.
    signature = tuple(tf.TensorSpec([None, *a.shape[1:]] if a.shape.rank else [], a.dtype) for a in args)
    key = (name, tuple(sorted(static.items())), bpda_active(), signature)

    def build(caller):
        def compiled(*a):
            return impl(caller, *a, **static)

        # tf.function counts traces per code object; a distinct one per configuration keeps its
        # "frequent retracing" warning for real retracing, not for one trace of each configuration.
        _BUILT[0] += 1
        compiled.__code__ = compiled.__code__.replace(co_name=f"tfrobust_{name}_{_BUILT[0]}")
        return tf.function(compiled, input_signature=signature)

    return CACHE.get(model_fn, key, build)(*args)


def check_model_fn(model_fn):
    if not callable(model_fn):
        raise TypeError("`model_fn` must be a callable mapping images [N, ...] to logits [N, K]. "
                        f"Received: model_fn of type {type(model_fn).__name__}")
    return model_fn
