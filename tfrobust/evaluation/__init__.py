"""Robustness evaluation you can trust: presets, attack cascades, sanity checks, reports.

:func:`robust_accuracy` runs a preset (``"fast"`` PGD, ``"standard"`` APGD-CE + APGD-DLR,
``"adaptive"`` + EOT/BPDA where the model needs them) as a cascade and returns a
:class:`RobustnessReport` (JSON / Markdown) with per-attack figures, the full configuration and
warnings that name their fix. :func:`accuracy` and :func:`predict_logits` are the batched helpers.
"""

from tfrobust.evaluation._accuracy import accuracy, predict_labels, predict_logits
from tfrobust.evaluation._checks import random_search
from tfrobust.evaluation._deployed import robust_accuracy_deployed
from tfrobust.evaluation._loading import load_model_fn
from tfrobust.evaluation._robust import PRESETS, RobustnessReport, robust_accuracy

__all__ = [
    "PRESETS",
    "RobustnessReport",
    "accuracy",
    "load_model_fn",
    "predict_labels",
    "predict_logits",
    "random_search",
    "robust_accuracy",
    "robust_accuracy_deployed",
]
