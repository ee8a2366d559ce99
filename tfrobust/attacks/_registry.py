"""The one attack table: configured attacks and :func:`get` (larq's ``get`` pattern).

Every place that turns a name into an attack call (the evaluation presets, the CLI, the trainers'
``AttackSpec``, the pipeline) goes through :func:`get`, so an attack's defaults are written once,
here, next to the function that implements it.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from tfrobust import _validate as V
from tfrobust.attacks import _common as C
from tfrobust.attacks._apgd import apgd, apgd_targeted
from tfrobust.attacks._fab import fab_targeted
from tfrobust.attacks._pgd import default_step_size, fgsm, pgd
from tfrobust.attacks._random_search import random_search
from tfrobust.attacks._square import square

__all__ = ["APGD", "APGDT", "FABT", "FGSM", "PGD", "Attack", "RandomSearch", "Square", "get", "names"]


@dataclasses.dataclass(frozen=True)
class Attack:
    """A configured attack: ``attack(model_fn, x, y, *, clip_min, clip_max, seed) -> x_adv``.

    Subclasses are frozen dataclasses whose fields are the attack's settings (the perturbation
    radius ``eps`` and ``norm`` included); the data range and the seed are given per call, because
    they belong to the data and to the evaluation, not to the attack. ``get_config()`` returns
    ``{"name": ..., **fields}`` and ``get(config)`` rebuilds an equal attack.

    A subclass names the attack ``function`` it configures; the inherited ``__call__`` passes every
    field to it as a keyword argument, with the call's ``clip_min``, ``clip_max`` and (for a
    ``seeded`` attack) ``seed``. An attack that is not one function call writes its own ``__call__``.

    Example: a new attack is a dataclass with a ``name`` and a ``__call__``; add it to ``_TABLE``::

        @dataclasses.dataclass(frozen=True)
        class Noise(Attack):
            name: ClassVar[str] = "noise"
            eps: float
            norm: str = "linf"

            def __call__(self, model_fn, x, y=None, *, clip_min=0.0, clip_max=1.0, seed=None):
                return tf.clip_by_value(x + self.eps * tf.sign(tf.random.normal(tf.shape(x))),
                                        clip_min, clip_max)
    """

    name: ClassVar[str] = ""
    #: True for attacks that never read a gradient (evaluation: a sign of gradient masking when
    #: they break points the gradient attacks left robust).
    gradient_free: ClassVar[bool] = False
    #: The attack function the fields configure (a ``staticmethod``), called by ``__call__``.
    function: ClassVar = None
    #: False for deterministic functions without a ``seed`` argument (FGSM).
    seeded: ClassVar[bool] = True
    #: The seed passed when the call gives none.
    default_seed: ClassVar = None

    def __post_init__(self):
        V.number("eps", self.eps, minimum=0.0)
        V.choice("norm", self.norm, C.NORMS)
        self._check_params()

    def _check_params(self):
        """Checks of the subclass' own fields (validated once, at construction)."""

    def __call__(self, model_fn, x, y=None, *, clip_min=0.0, clip_max=1.0, seed=None):
        if self.function is None:
            raise NotImplementedError(f"{type(self).__name__} names no attack `function` and has no __call__")
        settings = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if self.seeded:
            settings["seed"] = self.default_seed if seed is None else seed
        return self.function(model_fn, x, y, clip_min=clip_min, clip_max=clip_max, **settings)

    def get_config(self) -> dict:
        return {"name": self.name, **dataclasses.asdict(self)}

    def describe(self) -> str:
        """A one-line summary, e.g. ``pgd(eps=0.1, steps=20, step_size=0.0125)``."""
        cfg = self.get_config()
        cfg.pop("name")
        return f"{self.name}(" + ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                           for k, v in cfg.items()) + ")"


@dataclasses.dataclass(frozen=True)
class FGSM(Attack):
    """:func:`~tfrobust.attacks.fgsm`: one step of size ``eps``."""

    name: ClassVar[str] = "fgsm"
    function: ClassVar = staticmethod(fgsm)
    seeded: ClassVar[bool] = False
    eps: float
    norm: str = "linf"
    loss: str = "ce"

    def _check_params(self):
        V.choice("loss", self.loss, C.LOSSES)


@dataclasses.dataclass(frozen=True)
class PGD(Attack):
    """:func:`~tfrobust.attacks.pgd`; ``step_size=None`` means ``2.5 * eps / steps`` (Madry et al.)."""

    name: ClassVar[str] = "pgd"
    function: ClassVar = staticmethod(pgd)
    eps: float
    norm: str = "linf"
    steps: int = 20
    step_size: float | None = None
    restarts: int = 1
    random_start: bool = True
    loss: str = "ce"

    def _check_params(self):
        V.integer("steps", self.steps, minimum=0)
        if self.step_size is not None:
            V.number("step_size", self.step_size, minimum=0.0)
        V.integer("restarts", self.restarts, minimum=1)
        V.boolean("random_start", self.random_start)
        V.choice("loss", self.loss, C.LOSSES)

    @property
    def effective_step_size(self) -> float:
        return default_step_size(self.eps, self.steps) if self.step_size is None else self.step_size


@dataclasses.dataclass(frozen=True)
class APGD(Attack):
    """:func:`~tfrobust.attacks.apgd`: ``"apgd-ce"`` / ``"apgd-dlr"`` (AutoAttack: 100 steps)."""

    name: ClassVar[str] = "apgd"
    function: ClassVar = staticmethod(apgd)
    eps: float
    norm: str = "linf"
    loss: str = "ce"
    steps: int = 100
    restarts: int = 1

    def _check_params(self):
        V.choice("loss", self.loss, C.LOSSES)
        V.integer("steps", self.steps, minimum=1)
        V.integer("restarts", self.restarts, minimum=1)

    def get_config(self) -> dict:
        return {**super().get_config(), "name": f"apgd-{self.loss}"}


@dataclasses.dataclass(frozen=True)
class APGDT(Attack):
    """:func:`~tfrobust.attacks.apgd_targeted` (APGD-T; AutoAttack: 9 targets, 100 steps)."""

    name: ClassVar[str] = "apgd-t"
    function: ClassVar = staticmethod(apgd_targeted)
    eps: float
    norm: str = "linf"
    steps: int = 100
    targets: int = 9
    restarts: int = 1

    def _check_params(self):
        V.integer("steps", self.steps, minimum=1)
        V.integer("targets", self.targets, minimum=1)
        V.integer("restarts", self.restarts, minimum=1)


@dataclasses.dataclass(frozen=True)
class FABT(Attack):
    """:func:`~tfrobust.attacks.fab_targeted` (FAB-T; AutoAttack: 9 targets, 100 steps, no restarts)."""

    name: ClassVar[str] = "fab-t"
    function: ClassVar = staticmethod(fab_targeted)
    eps: float
    norm: str = "linf"
    steps: int = 100
    targets: int = 9

    def _check_params(self):
        V.integer("steps", self.steps, minimum=1)
        V.integer("targets", self.targets, minimum=1)


@dataclasses.dataclass(frozen=True)
class Square(Attack):
    """:func:`~tfrobust.attacks.square`: score-based, no gradients (AutoAttack: 5000 queries, p_init 0.8)."""

    name: ClassVar[str] = "square"
    function: ClassVar = staticmethod(square)
    gradient_free: ClassVar[bool] = True
    eps: float
    norm: str = "linf"
    queries: int = 5000
    p_init: float = 0.8

    def _check_params(self):
        V.integer("queries", self.queries, minimum=0)
        V.fraction("p_init", self.p_init, open_min=True)


@dataclasses.dataclass(frozen=True)
class RandomSearch(Attack):
    """:func:`~tfrobust.attacks.random_search`: random corners of the ball (a cheap masking check)."""

    name: ClassVar[str] = "random-search"
    function: ClassVar = staticmethod(random_search)
    default_seed: ClassVar = 0
    gradient_free: ClassVar[bool] = True
    eps: float
    norm: str = "linf"
    samples: int = 10

    def _check_params(self):
        V.integer("samples", self.samples, minimum=0)


# name -> (class, fixed settings). "apgd-ce" / "apgd-dlr" are APGD with the loss fixed.
_TABLE = {
    "fgsm": (FGSM, {}),
    "pgd": (PGD, {}),
    "apgd": (APGD, {}),
    "apgd-ce": (APGD, {"loss": "ce"}),
    "apgd-dlr": (APGD, {"loss": "dlr"}),
    "apgd-t": (APGDT, {}),
    "fab-t": (FABT, {}),
    "square": (Square, {}),
    "random-search": (RandomSearch, {}),
}
_BY_CLASS = {cls.__name__: cls for cls, _ in _TABLE.values()}


def names() -> tuple:
    """The attack names :func:`get` knows."""
    return tuple(_TABLE)


def get(identifier, **overrides) -> Attack:
    """A configured attack from a name, a config dict or an :class:`Attack`.

    Args:
      identifier: an :class:`Attack` (returned as is, or with ``overrides`` applied); a name from
        :func:`names` (``"pgd"``, ``"apgd-ce"``, ``"apgd-t"``, ``"square"``, ...); a dict
        ``{"name": ..., **settings}`` (what :meth:`Attack.get_config` returns) or Keras-style
        ``{"class_name": "PGD", "config": {...}}``.
      **overrides: settings that complete or replace the identifier's (e.g. ``eps``).

    Returns:
      An :class:`Attack`; call it as ``attack(model_fn, x, y, clip_min=..., clip_max=..., seed=...)``.

    Raises:
      ValueError: an unknown name (the message lists the known ones) or a bad setting.
      TypeError: an identifier of another type, or a setting the attack does not have.

    Example:
      >>> attack = get({"name": "pgd", "eps": 0.1, "steps": 40})   # step 2.5 * 0.1 / 40
      >>> x_adv = attack(model, x, y, clip_min=0.0, clip_max=1.0, seed=0)
      >>> get("apgd-t", eps=8 / 255).get_config()
      {'name': 'apgd-t', 'eps': 0.031..., 'norm': 'linf', 'steps': 100, 'targets': 9, 'restarts': 1}
    """
    if isinstance(identifier, Attack):
        return dataclasses.replace(identifier, **overrides) if overrides else identifier
    if isinstance(identifier, str):
        name, settings = identifier, {}
    elif isinstance(identifier, dict):
        settings = dict(identifier)
        if "class_name" in settings:
            cls_name = settings.pop("class_name")
            cls = _BY_CLASS.get(cls_name)
            if cls is None:
                raise ValueError(f"Unknown attack class. Known: {', '.join(sorted(_BY_CLASS))}. "
                                 f"Received: class_name={cls_name!r}")
            name, settings = cls.name, dict(settings.pop("config", {}) or {}, **settings)
        else:
            name = settings.pop("name", None)
    else:
        raise TypeError("`identifier` must be an attack name, a config dict or an Attack. "
                        f"Received: identifier of type {type(identifier).__name__}")
    name = V.choice("name", name, _TABLE)
    cls, fixed = _TABLE[name]
    settings = {**settings, **overrides}
    for key, value in fixed.items():
        if settings.setdefault(key, value) != value:
            raise ValueError(f"'{name}' fixes {key}={value!r}. Received: {key}={settings[key]!r}")
    if "eps" not in settings:
        raise ValueError(f"`eps` is required to configure '{name}', e.g. "
                         f"get({{'name': {name!r}, 'eps': 0.1}}). Received: eps missing")
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(settings) - fields)
    if unknown:
        raise TypeError(f"'{name}' has no setting {', '.join(unknown)}; its settings are "
                        f"{', '.join(sorted(fields))}. Received: {unknown}")
    return cls(**settings)
