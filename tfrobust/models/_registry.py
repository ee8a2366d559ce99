"""The model registry: ``get(name, **kwargs)`` builds a registered architecture."""

from __future__ import annotations

from collections.abc import Callable

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


def get(name: str, **kwargs):
    """Build the registered model ``name`` with ``kwargs`` (``input_shape``, ``num_classes``, ...).

    Raises:
      ValueError: unknown name (the message lists the known ones).
    """
    if name not in _BUILDERS:
        raise ValueError(f"Unknown model. Expected one of {names()}. Received: name={name!r}")
    return _BUILDERS[name](**kwargs)
