"""Losses: prototype conformity, CAS, distillation and the capsule margin loss."""

from tfrobust.losses._capsule import MarginLoss, margin_loss
from tfrobust.losses._pcl import PrototypeConformity, prototype_conformity_loss

__all__ = ["MarginLoss", "PrototypeConformity", "margin_loss", "prototype_conformity_loss"]
