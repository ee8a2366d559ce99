"""Compression: TF-MOT pruning / QAT / clustering made safe, JPnet, Deep Compression, lottery
tickets, structured (unit) pruning with Scratch-E/B baselines, low-rank factorisation, and
(re-exported from ``tfrobust.layers``) binarization -- each reporting accuracy and robust
accuracy before and after.

TF-MOT is imported lazily and only in a process started with ``TF_USE_LEGACY_KERAS=1`` (see
:func:`tfrobust.compression.tfmot`); the other techniques do not need it.
"""

from tfrobust.compression._deep_compression import (
    Codebook,
    DeepCompressionResult,
    decode,
    deep_compress,
    encode,
    kmeans_1d,
    load_stream_weights,
)
from tfrobust.compression._evaluate import compare_before_after, evaluate_model
from tfrobust.compression._huffman import huffman_code_lengths, huffman_decode, huffman_encode
from tfrobust.compression._joint_pruning import (
    ActivationThreshold,
    JointPruningResult,
    LayerMACs,
    MACReport,
    count_macs,
    insert_activation_thresholds,
    joint_prune,
)
from tfrobust.compression._lottery import LotteryResult, lottery_ticket
from tfrobust.compression._lowrank import FactorizationReport, choose_rank, factorize
from tfrobust.compression._masks import (
    MaskCallback,
    apply_masks,
    kernel_layers,
    magnitude_masks,
    mask_sparsity,
)
from tfrobust.compression._pruning import (
    LayerSparsity,
    SparsityReport,
    model_size,
    prune,
    pruning_callbacks,
    save,
    sparsity_report,
    strip,
    wrapped_layers,
)
from tfrobust.compression._quantization import (
    cluster,
    output_quantize_config_class,
    quantize,
    quantize_config_for,
    quantize_scope,
    register_quantize_config,
    registered_quantize_configs,
)
from tfrobust.compression._structured import (
    IterativePruningResult,
    ScratchResult,
    UnitPruningResult,
    adjust_dropout_rate,
    apoz,
    prune_units,
    prune_units_iteratively,
    scratch_baselines,
    unit_importance,
)
from tfrobust.compression._tfmot import legacy_keras_enabled, tfmot
from tfrobust.layers import BinaryConv2D, BinaryDense, binarize_model  # binarization (helper "binary")

__all__ = [
    "ActivationThreshold",
    "BinaryConv2D",
    "BinaryDense",
    "Codebook",
    "DeepCompressionResult",
    "FactorizationReport",
    "IterativePruningResult",
    "JointPruningResult",
    "LayerMACs",
    "LayerSparsity",
    "LotteryResult",
    "MACReport",
    "MaskCallback",
    "ScratchResult",
    "SparsityReport",
    "UnitPruningResult",
    "adjust_dropout_rate",
    "apoz",
    "apply_masks",
    "binarize_model",
    "choose_rank",
    "cluster",
    "compare_before_after",
    "count_macs",
    "decode",
    "deep_compress",
    "encode",
    "evaluate_model",
    "factorize",
    "huffman_code_lengths",
    "huffman_decode",
    "huffman_encode",
    "insert_activation_thresholds",
    "joint_prune",
    "kernel_layers",
    "kmeans_1d",
    "legacy_keras_enabled",
    "load_stream_weights",
    "lottery_ticket",
    "magnitude_masks",
    "mask_sparsity",
    "model_size",
    "output_quantize_config_class",
    "prune",
    "prune_units",
    "prune_units_iteratively",
    "pruning_callbacks",
    "quantize",
    "quantize_config_for",
    "quantize_scope",
    "register_quantize_config",
    "registered_quantize_configs",
    "save",
    "scratch_baselines",
    "sparsity_report",
    "strip",
    "tfmot",
    "unit_importance",
    "wrapped_layers",
]
