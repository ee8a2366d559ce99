"""Losses: prototype conformity, distillation, TRADES' KL and the capsule margin loss.

The CAS and CIFS losses are not here: those layers add them themselves with ``add_loss``
(:class:`tfrobust.layers.ChannelActivationSuppressing`,
:class:`tfrobust.layers.ChannelImportanceFeatureSelection`), so any ``fit`` picks them up.

Keras 3: ``for_keras3(MarginLoss)`` is the Keras 3 class (same arguments, same ``call``);
the loss functions are plain TensorFlow and serve both Keras (docs/keras3.md).
"""

from tfrobust._keras import for_keras3
from tfrobust.losses._capsule import MarginLoss, margin_loss
from tfrobust.losses._distillation import distillation_loss, kl_divergence, soft_targets
from tfrobust.losses._pcl import PrototypeConformity, prototype_conformity_loss

__all__ = [
    "MarginLoss",
    "PrototypeConformity",
    "distillation_loss",
    "for_keras3",
    "kl_divergence",
    "margin_loss",
    "prototype_conformity_loss",
    "soft_targets",
]
