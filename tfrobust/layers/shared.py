"""The layers' helpers shared beyond :mod:`tfrobust.layers` (an explicitly shared module).

Not the user-facing layer API (that is :mod:`tfrobust.layers`): the label-conditioned layers'
input convention, which :class:`tfrobust.losses.PrototypeConformity` follows too, and the pure
functions inside the building blocks and k-WTA, which their tests check against NumPy.
"""

from tfrobust.layers._blocks import channel_shuffle_permutation, scaled_weight_standardization
from tfrobust.layers._blocks_capsule import dynamic_routing, squash
from tfrobust.layers._common import bisection_threshold, feature_shape

__all__ = ["bisection_threshold", "channel_shuffle_permutation", "dynamic_routing", "feature_shape",
           "scaled_weight_standardization", "squash"]
