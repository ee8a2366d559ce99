"""Attacks: pure functions over a ``model_fn`` (any callable mapping float images to logits).

One table: :func:`get` turns a name or a config dict into a configured :class:`Attack`
(``get({"name": "apgd-t", "eps": 8 / 255})``); :func:`names` lists the known names.
White-box: :func:`fgsm`, :func:`pgd` (L-inf / L2, restarts, early stop, targeted), :func:`apgd`
(APGD-CE / APGD-DLR), :func:`apgd_targeted` (APGD-T), :func:`fab_targeted` (FAB-T),
:func:`lbfgs` (box-constrained L-BFGS).
Gradient-free / black-box: :func:`random_search`,
:func:`one_pixel`, :func:`square` (score-based, also on a TFLite interpreter),
:func:`substitute_attack`. Adaptive: :func:`eot` for randomized models and
:func:`bpda` / :func:`bpda_scope` for gradient-masking layers (the layer-declaration protocol is
documented in ``tfrobust/attacks/_adaptive.py`` and ``docs/attacks.md``). The gradient attacks
run as one compiled loop and can be called inside a ``tf.function`` train step.
"""

from tfrobust.attacks._adaptive import EOT, bpda, bpda_active, bpda_scope, eot, inspect_model
from tfrobust.attacks._apgd import apgd, apgd_targeted
from tfrobust.attacks._fab import fab_targeted
from tfrobust.attacks._lbfgs import lbfgs
from tfrobust.attacks._one_pixel import one_pixel
from tfrobust.attacks._pgd import default_step_size, fgsm, pgd
from tfrobust.attacks._random_search import random_search
from tfrobust.attacks._registry import Attack, get, names
from tfrobust.attacks._square import square
from tfrobust.attacks._substitute import SubstituteResult, substitute_attack

__all__ = [
    "EOT",
    "Attack",
    "SubstituteResult",
    "apgd",
    "apgd_targeted",
    "bpda",
    "bpda_active",
    "bpda_scope",
    "default_step_size",
    "eot",
    "fab_targeted",
    "fgsm",
    "get",
    "inspect_model",
    "lbfgs",
    "names",
    "one_pixel",
    "pgd",
    "random_search",
    "square",
    "substitute_attack",
]
