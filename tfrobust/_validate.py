"""The one set of argument checks every tfrobust package uses.

Each rule is written once here; packages call these functions at the top of a public function or
in a constructor (STYLE.md: validate once, ``ValueError`` / ``TypeError``, never ``assert``). Every
message names the argument and ends with ``Received: name=value`` (the Keras convention), so a
user reads what was wrong and where.

Rules:

- **numbers** (:func:`number`): a real number (Python or NumPy, not ``bool``), finite, optionally
  inside ``[minimum, maximum]`` (either end open). NaN and inf are always refused.
- **ints** (:func:`integer`): a Python or NumPy integer (not ``bool``, not ``3.0``), optionally
  bounded.
- **probabilities / fractions** (:func:`fraction`): a number in ``[0, 1]`` (ends open on request).
- **seeds** (:func:`seed`): ``None`` or an int in ``[0, 2**63)``.
- **clip ranges** (:func:`clip_range`): two finite numbers with ``clip_min < clip_max``.
- **images** (:func:`images`): a float array or tensor, finite, inside the clip range, of the
  model's input shape when one is given.
- **labels** (:func:`labels`): integer class indices ``[N]`` (or one-hot ``[N, K]``) in
  ``[0, num_classes)``.
- **logits** (:func:`logits`): outputs that are not probabilities (rows of non-negative values
  summing to 1), where a gradient attack's loss would be meaningless on probabilities.

Tensor arguments: :func:`number` accepts a scalar tensor when ``allow_tensor=True`` and checks its
value only when executing eagerly (inside a graph, a check would cost a device sync per call; the
constructor that received the Python value has checked it already).
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import tensorflow as tf

__all__ = [
    "ArgumentTypeError",
    "boolean",
    "choice",
    "clip_range",
    "finite_array",
    "fraction",
    "images",
    "integer",
    "labels",
    "logits",
    "number",
    "seed",
]

_MAX_SEED = 2**63


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type: a ``TypeError`` that is also a ``ValueError``.

    tfrobust's earlier checks disagreed on which of the two a wrong type raised (``steps=1.5``
    was a ``ValueError`` in one package and a ``TypeError`` in the next); raising both keeps every
    caller's ``except`` working (NumPy's ``AxisError`` does the same with ``IndexError``).
    """


def _received(name, value):
    return f"Received: {name}={value!r}"


def _bounds_text(minimum, maximum, open_min, open_max):
    parts = []
    if minimum is not None:
        parts.append(f"> {minimum}" if open_min else f">= {minimum}")
    if maximum is not None:
        parts.append(f"< {maximum}" if open_max else f"<= {maximum}")
    return " and ".join(parts)


def _in_bounds(v, minimum, maximum, open_min, open_max):
    if minimum is not None and (v <= minimum if open_min else v < minimum):
        return False
    if maximum is not None and (v >= maximum if open_max else v > maximum):
        return False
    return True


def number(name, value, *, minimum=None, maximum=None, open_min=False, open_max=False,
           allow_tensor=False):
    """A finite real number, optionally bounded; returns it as a Python ``float``.

    Args:
        name: the argument's name, used in the message.
        value: the value to check (Python or NumPy number; a scalar tensor if ``allow_tensor``).
        minimum, maximum: optional bounds; ``open_min`` / ``open_max`` make them strict.
        allow_tensor: accept a scalar float/int ``tf.Tensor`` (returned unchanged; its value is
            checked only when executing eagerly).

    Raises:
        TypeError: not a number (``bool`` and strings included).
        ValueError: NaN, inf, or outside the bounds.
    """
    if isinstance(value, (tf.Tensor, tf.Variable)):
        if not allow_tensor:
            raise ArgumentTypeError(f"`{name}` must be a Python number. Received: {name} of type "
                                    f"{type(value).__name__}")
        if value.shape.rank not in (None, 0):
            raise ValueError(f"`{name}` must be a scalar. Received: {name} with shape {value.shape}")
        if not (value.dtype.is_floating or value.dtype.is_integer):
            raise ArgumentTypeError(f"`{name}` must be a number. Received: {name} of dtype "
                                    f"{value.dtype.name}")
        if tf.executing_eagerly():
            number(name, float(value), minimum=minimum, maximum=maximum, open_min=open_min,
                   open_max=open_max)
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(f"`{name}` must be a number. {_received(name, value)}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"`{name}` must be a finite number (not NaN or inf). {_received(name, value)}")
    if not _in_bounds(v, minimum, maximum, open_min, open_max):
        raise ValueError(f"`{name}` must be {_bounds_text(minimum, maximum, open_min, open_max)}. "
                         f"{_received(name, value)}")
    return v


def integer(name, value, *, minimum=None, maximum=None):
    """A Python or NumPy integer (not ``bool``), optionally inside ``[minimum, maximum]``.

    Returns a Python ``int``. Raises ``TypeError`` for a non-integer (``3.0`` included) and
    ``ValueError`` outside the bounds.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        bound = _bounds_text(minimum, maximum, False, False)
        raise ArgumentTypeError(f"`{name}` must be an int{' ' + bound if bound else ''}. "
                        f"{_received(name, value)}")
    v = int(value)
    if not _in_bounds(v, minimum, maximum, False, False):
        raise ValueError(f"`{name}` must be an int {_bounds_text(minimum, maximum, False, False)}. "
                         f"{_received(name, value)}")
    return v


def fraction(name, value, *, open_min=False, open_max=False):
    """A number in ``[0, 1]`` (a probability, a sparsity, a rate); ends open on request."""
    return number(name, value, minimum=0.0, maximum=1.0, open_min=open_min, open_max=open_max)


def boolean(name, value):
    """A ``bool`` (NumPy's included); returns a Python ``bool``."""
    if not isinstance(value, (bool, np.bool_)):
        raise ArgumentTypeError(f"`{name}` must be a bool. {_received(name, value)}")
    return bool(value)


def choice(name, value, choices):
    """One of ``choices`` (compared with ``==``; strings are not lower-cased)."""
    choices = tuple(choices)
    if isinstance(value, (list, dict, set)) or value not in choices:
        raise ValueError(f"`{name}` must be one of {', '.join(map(repr, choices))}. "
                         f"{_received(name, value)}")
    return value


def seed(value, name="seed"):
    """``None`` or an int in ``[0, 2**63)``; returns ``None`` or a Python ``int``."""
    if value is None:
        return None
    message = f"`{name}` must be None or an int in [0, 2**63). {_received(name, value)}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ArgumentTypeError(message)
    if not 0 <= int(value) < _MAX_SEED:
        raise ValueError(message)
    return int(value)


def clip_range(clip_min, clip_max, *, allow_tensor=False):
    """Two finite numbers with ``clip_min < clip_max``; returns them as floats.

    With ``allow_tensor``, scalar tensors pass through (their order is checked when eager).
    """
    lo = number("clip_min", clip_min, allow_tensor=allow_tensor)
    hi = number("clip_max", clip_max, allow_tensor=allow_tensor)
    if isinstance(lo, (tf.Tensor, tf.Variable)) or isinstance(hi, (tf.Tensor, tf.Variable)):
        if not tf.executing_eagerly():
            return lo, hi
        lo_v, hi_v = float(lo), float(hi)
    else:
        lo_v, hi_v = lo, hi
    if not lo_v < hi_v:
        raise ValueError("`clip_min` must be smaller than `clip_max`. "
                         f"Received: clip_min={clip_min!r}, clip_max={clip_max!r}")
    return lo, hi


def finite_array(name, value, *, dtype=None):
    """A NumPy array (of ``dtype`` when given) with no NaN or inf entries."""
    try:
        arr = np.asarray(value) if dtype is None else np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise TypeError(f"`{name}` must be an array of numbers. Received: {name} of type "
                        f"{type(value).__name__}") from e
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"`{name}` must be an array of numbers. Received: {name}.dtype={arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.complexfloating):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        if bad:
            raise ValueError(f"`{name}` must be finite. Received: {name} with {bad} NaN/inf values")
    return arr


def _model_input_shape(model):
    """The per-example input shape of a Keras model (either flavour), or None when unknown."""
    shape = getattr(model, "input_shape", None)
    if isinstance(shape, list):  # several inputs: nothing to check against one array
        return None
    if shape is None:
        return None
    try:
        return tuple(shape)[1:]
    except TypeError:
        return None


def images(x, *, clip_min=0.0, clip_max=1.0, name="x", model=None, input_shape=None, min_rank=2):
    """A float batch ``[N, ...]``, finite, inside ``[clip_min, clip_max]``.

    When ``model`` (a Keras model) or ``input_shape`` (per example, ``None`` entries free) is
    given, the batch must match it: a wrong shape is reported here, not as TensorFlow's trace from
    inside the model. Integer images (uint8 pixels) are refused: an ``eps < 1`` perturbation cannot
    be represented in them.

    Returns a float32 NumPy array (tensors are read eagerly).
    """
    if isinstance(x, (tf.Tensor, tf.Variable)):
        dtype = x.dtype
        arr = x.numpy() if hasattr(x, "numpy") else None
        if arr is None:
            raise TypeError(f"`{name}` must be an eager tensor or an array here. Received: {name}={x!r}")
    else:
        try:
            arr = np.asarray(x)
        except (TypeError, ValueError) as e:
            raise TypeError(f"`{name}` must be an array of images. Received: {name} of type "
                            f"{type(x).__name__}") from e
        dtype = None
    kind = dtype.name if dtype is not None else str(arr.dtype)
    is_float = dtype.is_floating if dtype is not None else np.issubdtype(arr.dtype, np.floating)
    if not is_float:
        raise TypeError(f"`{name}` must hold floating-point images in [clip_min, clip_max]; scale "
                        f"integer images first (e.g. x / 255). Received: {name}.dtype={kind}")
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim < min_rank:
        raise ValueError(f"`{name}` must be a batch [N, ...] of rank >= {min_rank}. "
                         f"Received: {name}.shape={arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"`{name}` must hold at least one example. Received: {name}.shape={arr.shape}")
    if input_shape is None and model is not None:
        input_shape = _model_input_shape(model)
    if input_shape is not None:
        want = tuple(input_shape)
        got = arr.shape[1:]
        if len(want) != len(got) or any(w is not None and w != g for w, g in zip(want, got)):
            raise ValueError(f"`{name}` must be a batch of the model's input shape "
                             f"[N, {', '.join('?' if w is None else str(w) for w in want)}]. "
                             f"Received: {name}.shape={arr.shape}")
    finite_array(name, arr)
    lo, hi = clip_range(clip_min, clip_max)
    x_lo, x_hi = float(arr.min()), float(arr.max())
    if x_lo < lo - 1e-6 or x_hi > hi + 1e-6:
        raise ValueError(f"`{name}` must lie in [clip_min, clip_max] = [{lo}, {hi}] (pass the "
                         f"model's own input range as clip_min / clip_max). "
                         f"Received: {name} in [{x_lo}, {x_hi}]")
    return arr


def labels(y, *, n=None, num_classes=None, name="y"):
    """Integer class indices ``[N]`` (one-hot rows ``[N, K]`` are converted) in ``[0, num_classes)``.

    Returns an int64 NumPy array.
    """
    if isinstance(y, (tf.Tensor, tf.Variable)):
        y = y.numpy()
    arr = np.asarray(y)
    if arr.ndim == 2:
        if not (np.issubdtype(arr.dtype, np.number)):
            raise TypeError(f"`{name}` must hold labels. Received: {name}.dtype={arr.dtype}")
        if num_classes is not None and arr.shape[1] != num_classes:
            raise ValueError(f"`{name}` one-hot rows must have num_classes={num_classes} columns. "
                             f"Received: {name}.shape={arr.shape}")
        arr = np.argmax(arr, axis=1)
    elif arr.ndim != 1:
        raise ValueError(f"`{name}` must be class indices [N] or one-hot rows [N, K]. "
                         f"Received: {name}.shape={arr.shape}")
    elif not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"`{name}` must hold integer class indices [N] (or one-hot rows [N, K]). "
                        f"Received: {name}.dtype={arr.dtype}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"`{name}` must have one label per example ({n}). "
                         f"Received: {name}.shape={arr.shape}")
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or (num_classes is not None and hi >= num_classes):
            top = "num_classes" if num_classes is None else str(num_classes)
            raise ValueError(f"`{name}` must be class indices in [0, {top}). "
                             f"Received: {name} in [{lo}, {hi}]")
    return arr.astype(np.int64)


def logits(outputs, *, name="model outputs", action="refuse"):
    """Refuse (or convert) outputs that look like probabilities instead of logits.

    A softmax output gives gradient attacks a saturated loss (CE of a probability treated as a
    logit), so their robust accuracy would be meaningless. Outputs whose every row is
    non-negative and sums to 1 (within 1e-3) are treated as probabilities.

    Args:
        outputs: a ``[N, K]`` array or tensor of a batch's outputs.
        action: ``"refuse"`` raises ``ValueError``; ``"convert"`` returns ``log(p)`` (the
            logits of the same softmax up to a per-row constant, so the arg-max, the CE loss and
            the DLR loss are those of the underlying logits).

    Returns:
        ``outputs`` unchanged when they are logits; their log when converted.
    """
    choice("action", action, ("refuse", "convert"))
    arr = np.asarray(outputs.numpy() if hasattr(outputs, "numpy") else outputs, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise ValueError(f"{name} must be a batch of class scores [N, K] with K >= 2. "
                         f"Received: shape {arr.shape}")
    probs = bool(arr.size) and bool(np.all(arr >= 0)) and bool(np.allclose(arr.sum(axis=1), 1.0, atol=1e-3))
    if not probs:
        return outputs
    if action == "convert":
        return tf.math.log(tf.maximum(tf.convert_to_tensor(outputs, tf.float32), 1e-30))
    raise ValueError(f"{name} look like probabilities (every row is non-negative and sums to 1): "
                     "gradient attacks need logits, so robust accuracy measured on them would be "
                     "meaningless. Remove the final softmax (e.g. build the model with "
                     "`activation=None` on the last layer) or pass a model_fn returning logits.")
