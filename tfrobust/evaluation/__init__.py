"""Robustness evaluation you can trust: presets, attack cascades, sanity checks, reports.

:func:`robust_accuracy` runs a preset (``"fast"`` PGD-20, ``"standard"`` APGD-CE + APGD-T + Square,
``"adaptive"`` + EOT/BPDA and AutoAttack's rand version where the model needs them; presets are
data, :data:`PRESETS`, resolved per model by :func:`plan`) as a cascade and returns a
:class:`RobustnessReport` (JSON / Markdown) with per-attack figures, the full configuration and
warnings that name their fix. :func:`accuracy` and :func:`predict_logits` are the batched helpers;
:func:`accuracy_under`, :func:`minimal_perturbation` and :func:`inequality` are what the
round-based training loops measure.
"""

from tfrobust.attacks import random_search
from tfrobust.evaluation._accuracy import accuracy, predict_labels, predict_logits
from tfrobust.evaluation._channels import (
    ChannelStats,
    channel_statistics,
    compare_channel_statistics,
    plot_channel_statistics,
)
from tfrobust.evaluation._deployed import robust_accuracy_deployed
from tfrobust.evaluation._loading import load_model_fn
from tfrobust.evaluation._robust import (
    MASKING_SQUARE_RESTARTS,
    PRESETS,
    RESTART_SEED_STRIDE,
    RobustnessReport,
    Stage,
    plan,
    robust_accuracy,
)
from tfrobust.evaluation._under_attack import (
    accuracy_under,
    attack_dataset,
    inequality,
    minimal_perturbation,
    per_class_accuracy,
)

__all__ = [
    "ChannelStats",
    "channel_statistics",
    "compare_channel_statistics",
    "plot_channel_statistics",
    "MASKING_SQUARE_RESTARTS",
    "PRESETS",
    "RESTART_SEED_STRIDE",
    "RobustnessReport",
    "Stage",
    "accuracy",
    "accuracy_under",
    "attack_dataset",
    "inequality",
    "load_model_fn",
    "minimal_perturbation",
    "per_class_accuracy",
    "predict_labels",
    "predict_logits",
    "plan",
    "random_search",
    "robust_accuracy",
    "robust_accuracy_deployed",
]
