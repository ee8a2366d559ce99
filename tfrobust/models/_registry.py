"""The model registry: ``get(name, **kwargs)`` builds a registered architecture."""

from __future__ import annotations

from collections.abc import Callable

from tfrobust._keras import to_keras3

_BUILDERS: dict[str, Callable] = {}


def register(name: str):
    """Decorator registering a builder ``fn(input_shape=..., num_classes=..., **kw) -> Model``.

    Example:
      >>> @register("tiny_mlp")  # doctest: +SKIP
      ... def tiny_mlp(input_shape=(28, 28, 1), num_classes=10):
      ...     ...
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"`name` must be a non-empty string. Received: name={name!r}")

    def deco(fn):
        if name in _BUILDERS and _BUILDERS[name] is not fn:
            raise ValueError(f"A model named {name!r} is already registered")
        _BUILDERS[name] = fn
        return fn

    return deco


def names() -> list[str]:
    """Sorted names of every registered builder."""
    return sorted(_BUILDERS)


def get(name: str, *, flavour: str = "tf_keras", **kwargs):
    """Build the registered model ``name`` with ``kwargs`` (``input_shape``, ``num_classes``, ...).

    ``flavour="keras3"`` returns the same model (same layers, names, weights) as a Keras 3 model:
    built with the tf_keras builder, then rebuilt by :func:`tfrobust.utils.to_keras3`.

    Raises:
      ValueError: unknown name (the message lists the known ones) or ``flavour``; a Keras 3
        request for a (train_model, model) pair, whose shared weights a rebuild would split.
    """
    if name not in _BUILDERS:
        raise ValueError(f"Unknown model. Expected one of {names()}. Received: name={name!r}")
    if flavour not in ("tf_keras", "keras3"):
        raise ValueError(f"`flavour` must be 'tf_keras' or 'keras3'. Received: flavour={flavour!r}")
    model = _BUILDERS[name](**kwargs)
    if flavour == "tf_keras":
        return model
    if isinstance(model, (tuple, list)):
        raise ValueError(f"{name!r} with these arguments returns a (train_model, model) pair sharing "
                         "weights, which a Keras 3 rebuild would split; build the inference model "
                         f"only for Keras 3. Received: flavour='keras3', {kwargs!r}")
    return to_keras3(model)
