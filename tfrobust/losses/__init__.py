"""Losses: prototype conformity, distillation, TRADES' KL and the capsule margin loss.

The CAS and CIFS losses are not here: those layers add them themselves with ``add_loss``
(:class:`tfrobust.layers.ChannelActivationSuppressing`,
:class:`tfrobust.layers.ChannelImportanceFeatureSelection`), so any ``fit`` picks them up.
"""

from tfrobust.losses._capsule import MarginLoss, margin_loss
from tfrobust.losses._distillation import distillation_loss, kl_divergence, soft_targets
from tfrobust.losses._pcl import PrototypeConformity, prototype_conformity_loss

__all__ = [
    "MarginLoss",
    "PrototypeConformity",
    "distillation_loss",
    "kl_divergence",
    "margin_loss",
    "prototype_conformity_loss",
    "soft_targets",
]
