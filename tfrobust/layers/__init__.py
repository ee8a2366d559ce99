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
    channel_shuffle,
    channel_shuffle_permutation,
    local_response_normalization,
    scaled_weight_standardization,
)
from tfrobust.layers._blocks_capsule import (
    CapsuleLength,
    DynamicRoutingCapsules,
    Squash,
    dynamic_routing,
    squash,
)
from tfrobust.layers._blocks_stn import AffineGridSampler, affine_grid, bilinear_sample
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

__all__ = [
    "ChannelActivationSuppressing",
    "ChannelImportanceFeatureSelection",
    "KWinnersTakeAll",
    "NoisyWeights",
    "PrunedWeights",
    "RandomNoisyActivations",
    "RandomScaledActivations",
    "StochasticActivationPruning",
    "WTADropout",
    "for_keras3",
    "kwta_mask",
    "label_conditioned_pair",
    "stochastic_activation_pruning",
    "BinaryConv2D",
    "BinaryDense",
    "WeightClip",
    "binarize_model",
    "bpda",
    "bpda_active",
    "bpda_scope",
    "bwn_binarize",
    "hard_sigmoid",
    "ste_sign",
    "stochastic_sign",
    "xnor_scaling_map",
    "CBAM",
    "AddPositionEmbedding",
    "AffineGridSampler",
    "CapsuleLength",
    "ChannelShuffle",
    "ClassToken",
    "DynamicRoutingCapsules",
    "GroupConv2D",
    "LocalResponseNormalization",
    "ScaledWSConv2D",
    "SqueezeExcitation",
    "Squash",
    "affine_grid",
    "bilinear_sample",
    "channel_shuffle",
    "channel_shuffle_permutation",
    "dynamic_routing",
    "local_response_normalization",
    "scaled_weight_standardization",
    "squash",
]
