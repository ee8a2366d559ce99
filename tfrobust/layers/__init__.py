"""Keras layers: defenses and the building blocks of the architecture zoo.

Every layer is registered for serialization (package ``tfrobust``), round-trips through
``get_config`` and converts to TFLite with builtin ops.

The classes here are tf_keras layers; ``for_keras3(KWinnersTakeAll)`` is the same layer for
Keras 3 (``import keras``; TensorFlow backend), built from the same methods and registered under
the same name, so ``.keras`` files of either Keras load (docs/keras3.md).
"""

from tfrobust._keras import for_keras3
from tfrobust.layers._binary import (
    BinaryConv2D,
    BinaryDense,
    WeightClip,
    binarize_model,
    bwn_binarize,
    hard_sigmoid,
    ste_sign,
    stochastic_sign,
    xnor_scaling_map,
)
from tfrobust.layers._blocks import (
    CBAM,
    AddPositionEmbedding,
    ChannelShuffle,
    ClassToken,
    GroupConv2D,
    LocalResponseNormalization,
    ScaledWSConv2D,
    SqueezeExcitation,
)
from tfrobust.layers._blocks_capsule import CapsuleLength, DynamicRoutingCapsules, Squash
from tfrobust.layers._blocks_stn import AffineGridSampler
from tfrobust.layers._bpda import bpda, bpda_active, bpda_scope
from tfrobust.layers._channel import (
    ChannelActivationSuppressing,
    ChannelImportanceFeatureSelection,
    label_conditioned_pair,
)
from tfrobust.layers._kwta import KWinnersTakeAll, WTADropout, kwta_mask
from tfrobust.layers._stochastic import (
    NoisyWeights,
    PrunedWeights,
    RandomNoisyActivations,
    RandomScaledActivations,
    StochasticActivationPruning,
    stochastic_activation_pruning,
)

# What a user calls: the defenses (and the pure functions of k-WTA and SAP), BPDA for one's own
# layers, the binary layers and quantizers (docs/binary.md), the building blocks of the model zoo
# (docs/models.md). The blocks' inner functions stay in their modules (tests reach them through
# tfrobust.layers.shared).
__all__ = [
    # defenses (docs/defenses.md)
    "KWinnersTakeAll",
    "WTADropout",
    "kwta_mask",
    "StochasticActivationPruning",
    "stochastic_activation_pruning",
    "RandomNoisyActivations",
    "RandomScaledActivations",
    "NoisyWeights",
    "PrunedWeights",
    "ChannelActivationSuppressing",
    "ChannelImportanceFeatureSelection",
    "label_conditioned_pair",
    # BPDA for gradient-masking layers (docs/attacks.md)
    "bpda",
    "bpda_active",
    "bpda_scope",
    # binary networks (docs/binary.md)
    "BinaryConv2D",
    "BinaryDense",
    "WeightClip",
    "binarize_model",
    "bwn_binarize",
    "hard_sigmoid",
    "ste_sign",
    "stochastic_sign",
    "xnor_scaling_map",
    # building blocks of the model zoo (docs/models.md)
    "AddPositionEmbedding",
    "AffineGridSampler",
    "CBAM",
    "CapsuleLength",
    "ChannelShuffle",
    "ClassToken",
    "DynamicRoutingCapsules",
    "GroupConv2D",
    "LocalResponseNormalization",
    "ScaledWSConv2D",
    "SqueezeExcitation",
    "Squash",
    # Keras 3 classes of the layers above (docs/keras3.md)
    "for_keras3",
]
